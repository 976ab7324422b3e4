//! A pool of Docker Engines for classic Swarm's tests (`swarmd manage` over several hosts):
//! N [`Machine`]s, each its own network namespace with a dockerd reachable over TCP at
//! `10.77.B.C:2375`, hostnames `node-0` .. `node-<N-1>`, per-engine daemon labels, the
//! default bridge (plain `docker run`, `-p`), a registry in each namespace serving
//! [`crate::REGISTRY_IMAGE`] (an image to pull), and no host-wide lock (several pools may live
//! at once). The machines start in parallel; dropping the pool removes them all.
//!
//! ```no_run
//! use swarmd_testkit::EnginePool;
//!
//! let pool = EnginePool::start(&[&[("zone", "a")], &[("zone", "b")]]).unwrap();
//! let discovery = pool.addrs().join(","); // "10.77.12.6:2375,10.77.40.2:2375"
//! pool.machine(1).docker(&["ps"]).ok();
//! ```
//!
//! Measured on the 2-core CI box (dockerd 20.10.24, overlay2, 2026-12): one engine is up
//! (image loaded) in about 2 s, a pool of 3 in about 3 s, 6 in 4 s, 10 in 5 s (the starts
//! overlap: most of one is waiting). Each idle engine (dockerd + containerd) holds about
//! 115 MB. So memory, not CPU, bounds a pool: 10 engines fit with room to spare (1.2 GB,
//! one `docker run` on each in 4 s more), but tests run side by side and share the 2 cores,
//! so keep pools to the 2-4 engines a scenario needs.

use std::thread;

use anyhow::Context as _;

use crate::machine::Machine;

/// The netns prefix of pool engines (the hostname is `node-<i>`).
const PREFIX: &str = "swc";

/// Several engines at once; see the module doc.
pub struct EnginePool {
    machines: Vec<Machine>,
}

impl EnginePool {
    /// Starts one engine per entry of `labels`, engine `i` with hostname `node-<i>` and the
    /// daemon labels `labels[i]`; all of them in parallel. If one fails, the others are
    /// removed again and the error says which one and why.
    pub fn start(labels: &[&[(&str, &str)]]) -> anyhow::Result<EnginePool> {
        let started = std::time::Instant::now();
        let results: Vec<anyhow::Result<Machine>> = thread::scope(|s| {
            let handles: Vec<_> = labels
                .iter()
                .enumerate()
                .map(|(i, labels)| {
                    s.spawn(move || {
                        let mut b = Machine::builder(PREFIX)
                            .hostname(format!("node-{i}"))
                            .tcp(true)
                            .default_bridge(true)
                            .registry(true)
                            .host_lock(false);
                        for (k, v) in labels.iter() {
                            b = b.label(*k, *v);
                        }
                        b.start().with_context(|| format!("engine node-{i}"))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        // Collecting into a Result drops the machines that did start when one failed.
        let machines = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        tracing::info!(engines = machines.len(), elapsed = ?started.elapsed(), "engine pool up");
        Ok(EnginePool { machines })
    }

    /// `n` engines without labels.
    pub fn plain(n: usize) -> anyhow::Result<EnginePool> {
        EnginePool::start(&vec![&[][..]; n])
    }

    /// Each engine's `10.77.B.C:2375`, in order: classic Swarm's discovery list (join with
    /// `,` for `swarmd manage nodes://...` or write one a line to a file).
    pub fn addrs(&self) -> Vec<String> {
        self.machines
            .iter()
            .map(|m| m.tcp_addr().expect("pool engines listen on TCP"))
            .collect()
    }

    /// Engine `i` (hostname `node-<i>`): its docker CLI, address, log.
    pub fn machine(&self, i: usize) -> &Machine {
        &self.machines[i]
    }

    /// Engine `i`, to stop, start, freeze or thaw it.
    pub fn machine_mut(&mut self, i: usize) -> &mut Machine {
        &mut self.machines[i]
    }

    /// All engines, in order.
    pub fn machines(&self) -> &[Machine] {
        &self.machines
    }

    /// How many engines the pool has.
    pub fn len(&self) -> usize {
        self.machines.len()
    }

    /// Whether the pool has no engine (`EnginePool::plain(0)`).
    pub fn is_empty(&self) -> bool {
        self.machines.is_empty()
    }
}
