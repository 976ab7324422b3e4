//! IPv4 address management for swarm networks: subnets from the cluster's default address
//! pool (Docker's 10.0.0.0/8 in /24s), and addresses inside a subnet for service VIPs and
//! task attachments.
//!
//! Pure functions over what is in use, so the callers (control for subnets and VIPs, the
//! allocator for tasks) decide inside one store transaction and nothing is handed out twice.
//! Layout as Docker's: the gateway is the subnet's first host address unless given, and
//! addresses are handed out from the low end of the subnet (or of `--ip-range`), skipping
//! the network and broadcast addresses.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// An IPv4 prefix, normalised to its network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub base: u32,
    pub len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`; host bits are cleared (Go's `net.ParseCIDR` network).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, len) = s.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let len: u8 = len.parse().ok()?;
        if len > 32 {
            return None;
        }
        Some(Cidr {
            base: u32::from(addr) & mask(len),
            len,
        })
    }

    /// Parses `a.b.c.d/n` keeping the address (for `10.0.1.3/24` attachments).
    pub fn parse_addr(s: &str) -> Option<Ipv4Addr> {
        s.split_once('/').map_or(s, |(a, _)| a).parse().ok()
    }

    pub fn size(self) -> u64 {
        1u64 << (32 - self.len)
    }

    pub fn last(self) -> u32 {
        (self.base as u64 + self.size() - 1) as u32
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == self.base
    }

    pub fn overlaps(self, other: Cidr) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }

    /// The first host address (Docker's default gateway).
    pub fn first_host(self) -> Ipv4Addr {
        Ipv4Addr::from(if self.len >= 31 {
            self.base
        } else {
            self.base + 1
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.len)
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

/// The first `size`-long subnet of `pools` that overlaps none of `used` (Docker walks the
/// default pool in order, so the first overlay after ingress gets 10.0.1.0/24).
pub fn pick_subnet(pools: &[Cidr], size: u8, used: &[Cidr]) -> Option<Cidr> {
    for pool in pools {
        if size < pool.len || size > 32 {
            continue;
        }
        let step = 1u64 << (32 - size);
        let mut base = pool.base as u64;
        while base + step - 1 <= pool.last() as u64 {
            let c = Cidr {
                base: base as u32,
                len: size,
            };
            match used
                .iter()
                .filter(|u| u.overlaps(c))
                .map(|u| u.last())
                .max()
            {
                None => return Some(c),
                // Skip past everything the overlapping subnet covers.
                Some(last) => {
                    let next = (last as u64 + 1).div_ceil(step) * step;
                    base = next.max(base + step);
                }
            }
        }
    }
    None
}

/// The lowest free host address of `subnet` (within `range` when given), skipping the
/// network and broadcast addresses and everything in `used`.
pub fn next_address(subnet: Cidr, range: Option<Cidr>, used: &BTreeSet<u32>) -> Option<Ipv4Addr> {
    let span = range.unwrap_or(subnet);
    let (lo, hi) = if subnet.len >= 31 {
        (subnet.base, subnet.last())
    } else {
        (subnet.base + 1, subnet.last() - 1)
    };
    let start = span.base.max(lo);
    let end = span.last().min(hi);
    (start..=end)
        .find(|a| !used.contains(a))
        .map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(c("10.0.1.7/24").to_string(), "10.0.1.0/24");
        assert!(Cidr::parse("10.0.0.0").is_none());
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("fe80::/64").is_none());
        assert!(c("10.0.0.0/8").overlaps(c("10.3.0.0/16")));
        assert!(!c("10.0.0.0/24").overlaps(c("10.0.1.0/24")));
        assert_eq!(c("10.0.1.0/24").first_host().to_string(), "10.0.1.1");
    }

    #[test]
    fn subnets_come_from_the_pool_in_order_skipping_used_ones() {
        let pool = [c("10.0.0.0/8")];
        assert_eq!(pick_subnet(&pool, 24, &[]), Some(c("10.0.0.0/24")));
        let used = [c("10.0.0.0/24"), c("10.0.1.0/24")];
        assert_eq!(pick_subnet(&pool, 24, &used), Some(c("10.0.2.0/24")));
        // A big --subnet inside the pool is skipped as a whole.
        let used = [c("10.0.0.0/24"), c("10.0.0.0/16")];
        assert_eq!(pick_subnet(&pool, 24, &used), Some(c("10.1.0.0/24")));
        // An engine network overlapping part of the pool.
        let used = [c("10.0.0.0/23")];
        assert_eq!(pick_subnet(&pool, 24, &used), Some(c("10.0.2.0/24")));
        let full = [c("10.0.0.0/8")];
        assert_eq!(pick_subnet(&pool, 24, &full), None);
    }

    #[test]
    fn addresses_skip_network_gateway_and_broadcast() {
        let s = c("10.0.1.0/30");
        let mut used = BTreeSet::from([u32::from(s.first_host())]);
        let a = next_address(s, None, &used).unwrap();
        assert_eq!(a.to_string(), "10.0.1.2");
        used.insert(u32::from(a));
        assert_eq!(next_address(s, None, &used), None, "10.0.1.3 is broadcast");
        let r = c("10.0.1.128/25");
        let a = next_address(c("10.0.1.0/24"), Some(r), &BTreeSet::new()).unwrap();
        assert_eq!(a.to_string(), "10.0.1.128");
    }

    proptest! {
        /// Handing out addresses one by one, each time marking the last as used, never
        /// repeats one, never leaves the subnet and never gives the network/broadcast address.
        #[test]
        fn no_address_is_handed_out_twice(
            len in 22u8..=30,
            third in 0u32..=255,
            taken in proptest::collection::vec(0u32..1024, 0..40),
            n in 0usize..300,
        ) {
            let subnet = Cidr { base: (10 << 24) | (third << 8) & mask(len), len };
            let mut used: BTreeSet<u32> =
                taken.iter().map(|o| subnet.base + o % subnet.size() as u32).collect();
            let pre = used.clone();
            let mut given = BTreeSet::new();
            for _ in 0..n {
                let Some(a) = next_address(subnet, None, &used) else { break };
                let a = u32::from(a);
                prop_assert!(subnet.contains(Ipv4Addr::from(a)));
                prop_assert!(a != subnet.base && a != subnet.last());
                prop_assert!(!pre.contains(&a));
                prop_assert!(given.insert(a), "address {} given twice", Ipv4Addr::from(a));
                used.insert(a);
            }
        }

        /// A picked subnet overlaps nothing in use and lies in the pool.
        #[test]
        fn picked_subnets_never_overlap(
            used in proptest::collection::vec((0u32..64, 16u8..=26), 0..20),
        ) {
            let pool = [Cidr::parse("10.0.0.0/8").unwrap()];
            let mut used: Vec<Cidr> = used
                .iter()
                .map(|(o, l)| Cidr { base: (10 << 24) | ((o << 10) & mask(*l)), len: *l })
                .collect();
            for _ in 0..5 {
                let s = pick_subnet(&pool, 24, &used).unwrap();
                prop_assert!(used.iter().all(|u| !u.overlaps(s)));
                prop_assert!(pool[0].overlaps(s));
                used.push(s);
            }
        }
    }
}
