//! The /30 that links a [`super::Machine`] to the host. Random, so test processes running
//! side by side rarely collide, and checked against the host's addresses, so a collision
//! with a live machine of another process is skipped. Within one process the draws are
//! also recorded until the machine goes: an engine pool starts its machines on parallel
//! threads, and two of them may draw the same /30 before either has put it on the host.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, bail};

/// The /30s (network address as u32) held by this process's machines.
static HELD: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// A /30 held for one machine; released (for this process's next machines) on drop.
#[derive(Debug)]
pub(super) struct Slash30 {
    base: u32,
}

impl Slash30 {
    /// Draws a random /30 in 10.77.1.0–10.77.254.255 that no interface of the host has an
    /// address in and that no other machine of this process holds.
    pub(super) fn reserve() -> anyhow::Result<Slash30> {
        let out = Command::new("ip")
            .args(["-4", "-o", "addr", "show"])
            .output()
            .context("running ip (iproute2)")?;
        let used: Vec<u32> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|w| w.split('/').next()?.parse::<Ipv4Addr>().ok())
            .map(|a| u32::from(a) & !3)
            .collect();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..256 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let r = RandomState::new().hash_one((std::process::id(), n, "slash30"));
            let (host, _) = slash30_of(r);
            let base = u32::from(host) & !3;
            if !used.contains(&base) && held.insert(base) {
                return Ok(Slash30 { base });
            }
        }
        bail!("no free /30 in 10.77.0.0/16 on this host")
    }

    /// The host's end: 10.77.B.4C+1.
    pub(super) fn host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// The machine's end: 10.77.B.4C+2.
    pub(super) fn machine(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 2)
    }
}

impl Drop for Slash30 {
    fn drop(&mut self) {
        HELD.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.base);
    }
}

/// The /30 a random number picks: 10.77.B.4C+1 (host end) and +2 (the machine).
fn slash30_of(r: u64) -> (Ipv4Addr, Ipv4Addr) {
    let b = 1 + (r % 254) as u8;
    let c = ((r >> 8) % 64) as u8;
    (
        Ipv4Addr::new(10, 77, b, 4 * c + 1),
        Ipv4Addr::new(10, 77, b, 4 * c + 2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash30s_stay_in_10_77_and_off_its_first_block() {
        for r in [
            0u64,
            1,
            253,
            254,
            255,
            256,
            0xffff,
            u64::MAX,
            0x1234_5678_9abc,
        ] {
            let (h, n) = slash30_of(r);
            let (ho, no) = (h.octets(), n.octets());
            assert_eq!(&ho[..2], &[10, 77]);
            assert!((1..=254).contains(&ho[2]), "{h}");
            assert_eq!(ho[3] % 4, 1, "{h}: the first usable address of a /30");
            assert_eq!(u32::from(n), u32::from(h) + 1);
            assert_eq!(no[2], ho[2]);
        }
    }

    /// Many machines of one process at once never share a /30, and a released one can be
    /// drawn again.
    #[test]
    fn reservations_within_a_process_are_distinct_until_released() {
        let held: Vec<Slash30> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..64)
                            .map(|_| Slash30::reserve().unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let bases: BTreeSet<u32> = held.iter().map(|s| s.base).collect();
        assert_eq!(bases.len(), held.len(), "two machines drew the same /30");
        for s in &held {
            assert_eq!(u32::from(s.machine()), u32::from(s.host()) + 1);
            assert!(HELD.lock().unwrap().contains(&s.base));
        }
        let first = held[0].base;
        drop(held);
        assert!(!HELD.lock().unwrap().contains(&first), "released on drop");
    }
}
