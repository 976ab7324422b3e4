//! Service VIPs, balanced in the kernel inside each task's network namespace.
//!
//! Docker balances a VIP with IPVS in the client container's namespace; this kernel has no
//! IPVS, so the same place gets an nftables table instead: in the container's `output`
//! hook, a connection to a VIP (any port, any protocol) is DNATed to one of the service's
//! running tasks, round robin per connection (`numgen inc`; conntrack keeps the choice for
//! the connection's life). The reply comes back to the client's namespace, where conntrack
//! turns its source back into the VIP, so no masquerading is needed and the task sees the
//! client's own address, on this machine or across the VXLAN.
//!
//! A VIP with no running task is answered at once (TCP reset, ICMP unreachable) instead of
//! leaving the client to time out.
//!
//! The whole table is replaced in one nft transaction (level-triggered: the caller states
//! the VIPs it wants, and a failed apply leaves the previous table in force).

use std::net::Ipv4Addr;

use crate::NetplaneError;

/// The nftables table holding a namespace's VIP rules.
pub const TABLE: &str = "swarmd_vips";

/// One VIP and the running tasks behind it (empty: refused at once).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VipRule {
    pub vip: Ipv4Addr,
    pub backends: Vec<Ipv4Addr>,
}

/// The nft script that makes a namespace's VIP table exactly `rules` (one transaction:
/// create the table if missing, delete it, define it anew).
pub fn ruleset(rules: &[VipRule]) -> String {
    let mut nat = String::new();
    let mut refuse = String::new();
    for r in rules {
        match r.backends.as_slice() {
            [] => {
                refuse.push_str(&format!(
                    "    ip daddr {} meta l4proto tcp reject with tcp reset\n    ip daddr {} reject\n",
                    r.vip, r.vip
                ));
            }
            [one] => nat.push_str(&format!("    ip daddr {} dnat to {one}\n", r.vip)),
            many => {
                let map: Vec<String> = many
                    .iter()
                    .enumerate()
                    .map(|(i, b)| format!("{i} : {b}"))
                    .collect();
                nat.push_str(&format!(
                    "    ip daddr {} dnat to numgen inc mod {} map {{ {} }}\n",
                    r.vip,
                    many.len(),
                    map.join(", ")
                ));
            }
        }
    }
    format!(
        "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n  chain dnat_vips {{\n    type nat hook output priority -100; policy accept;\n{nat}  }}\n  chain refuse_vips {{\n    type filter hook output priority 0; policy accept;\n{refuse}  }}\n}}\n"
    )
}

/// Runs `nft -f -` with `script` in the network namespace of process `pid`.
pub async fn apply_in_netns(pid: u32, script: &str) -> Result<(), NetplaneError> {
    crate::nft::run(Some(pid), script).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn one_transaction_with_round_robin_single_and_refused_vips() {
        let s = ruleset(&[
            VipRule {
                vip: ip("10.0.1.2"),
                backends: vec![ip("10.0.1.5"), ip("10.0.1.6")],
            },
            VipRule {
                vip: ip("10.0.1.3"),
                backends: vec![ip("10.0.1.7")],
            },
            VipRule {
                vip: ip("10.0.1.4"),
                backends: vec![],
            },
        ]);
        // Replaced whole: the table is created, deleted and defined in one script.
        assert!(s.starts_with("table ip swarmd_vips\ndelete table ip swarmd_vips\n"));
        assert!(s.contains(
            "ip daddr 10.0.1.2 dnat to numgen inc mod 2 map { 0 : 10.0.1.5, 1 : 10.0.1.6 }"
        ));
        assert!(s.contains("ip daddr 10.0.1.3 dnat to 10.0.1.7\n"));
        assert!(s.contains("ip daddr 10.0.1.4 meta l4proto tcp reject with tcp reset"));
        assert!(!s.contains("ip daddr 10.0.1.4 dnat"));
        assert_eq!(s.matches('{').count(), s.matches('}').count());
    }

    #[test]
    fn no_vips_is_an_empty_table() {
        let s = ruleset(&[]);
        assert!(!s.contains("ip daddr"));
        assert!(s.contains("type nat hook output"));
    }
}
