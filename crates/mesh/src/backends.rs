//! The backends of one published port, shared by its listener and its connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::balancer;

/// One backend and how many connections (or UDP flows) it holds now.
#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    active: Arc<AtomicUsize>,
}

/// Counts a connection against its backend while it lives.
#[derive(Debug)]
pub struct Lease {
    pub addr: SocketAddr,
    active: Arc<AtomicUsize>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The backend set of a port; replaced whole when the table changes (counts carried over
/// for backends that stay).
#[derive(Debug, Default)]
pub struct Backends {
    list: RwLock<Arc<Vec<Backend>>>,
    cursor: AtomicUsize,
}

impl Backends {
    fn current(&self) -> Arc<Vec<Backend>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_empty(&self) -> bool {
        self.current().is_empty()
    }

    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.current().iter().any(|b| b.addr == addr)
    }

    /// Replaces the set; returns whether it changed.
    pub fn set(&self, addrs: &[SocketAddr]) -> bool {
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        if list.iter().map(|b| b.addr).eq(addrs.iter().copied()) {
            return false;
        }
        let next: Vec<Backend> = addrs
            .iter()
            .map(|a| {
                list.iter()
                    .find(|b| b.addr == *a)
                    .cloned()
                    .unwrap_or_else(|| Backend {
                        addr: *a,
                        active: Arc::default(),
                    })
            })
            .collect();
        *list = Arc::new(next);
        true
    }

    /// Chooses a backend (see [`balancer::pick`]), skipping the addresses in `failed`,
    /// and counts the caller's connection against it.
    pub fn lease(&self, failed: &[SocketAddr]) -> Option<Lease> {
        let list = self.current();
        let active: Vec<usize> = list
            .iter()
            .map(|b| b.active.load(Ordering::Relaxed))
            .collect();
        let exclude: Vec<usize> = list
            .iter()
            .enumerate()
            .filter(|(_, b)| failed.contains(&b.addr))
            .map(|(i, _)| i)
            .collect();
        let cursor = self.cursor.fetch_add(1, Ordering::Relaxed);
        let b = &list[balancer::pick(&active, cursor, &exclude)?];
        b.active.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            addr: b.addr,
            active: b.active.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn leases_spread_and_counts_survive_a_table_change() {
        let b = Backends::default();
        assert!(b.lease(&[]).is_none());
        assert!(b.set(&[a("127.0.0.2:1"), a("127.0.0.3:1")]));
        assert!(!b.set(&[a("127.0.0.2:1"), a("127.0.0.3:1")]));
        let first = b.lease(&[]).unwrap();
        let second = b.lease(&[]).unwrap();
        assert_ne!(first.addr, second.addr, "both backends used");
        // .2 keeps its open connection across the change; the new one is idle, so wins.
        b.set(&[a("127.0.0.2:1"), a("127.0.0.4:1")]);
        let _keep = first;
        drop(second);
        assert_eq!(b.lease(&[]).unwrap().addr, a("127.0.0.4:1"));
        assert_eq!(b.lease(&[a("127.0.0.4:1")]).unwrap().addr, a("127.0.0.2:1"));
    }
}
