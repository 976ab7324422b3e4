//! The lab: N swarmd managers (plus workers), each in its own network namespace, its swarm
//! state on a small disk of its own (`disk.rs`: fills up, slows down), its wall clock under
//! the harness's control (libfaketime). Dropping it kills the daemons and removes
//! namespaces, mounts and loop devices.

mod disk;
mod net;
mod sweep;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use swarmd_testkit::{Daemon, Executor};

use disk::{Backing, Disk};
pub use net::{Net, run};

/// libfaketime from Debian's `faketime` package (scripts/ci-setup.sh installs it).
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// How long an API call of the harness's own (setup, not the workload) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// One node of the lab.
pub struct Node {
    pub name: String,
    pub daemon: Daemon,
    /// The file libfaketime reads this node's clock offset from (`+0s`, `-30s`, ...).
    clock_file: PathBuf,
    /// Dropped after the daemon (field order): unmounted once nothing uses it.
    disk: Disk,
    pub manager: bool,
    /// Whether the harness paused it (SIGSTOP) and has not resumed it yet.
    pub paused: bool,
}

impl Node {
    pub fn socket(&self) -> PathBuf {
        self.daemon.socket_path().to_path_buf()
    }
}

/// The whole lab; see the module doc.
pub struct Lab {
    pub nodes: Vec<Node>,
    pub net: Net,
    dir: PathBuf,
    /// The disks' backing files; unmounted after every node's disk (field order).
    backing: Backing,
    /// Last: its file goes once everything above is clean.
    _owner: sweep::Owner,
}

fn api(socket: &Path, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let body = body.map(|b| b.to_string());
    let r = swarmd_testkit::unix_http(
        socket,
        method,
        path,
        body.as_deref().map(str::as_bytes),
        SETUP_TIMEOUT,
    )
    .with_context(|| format!("{method} {path}"))?;
    if r.status >= 300 {
        bail!("{method} {path}: {} {}", r.status, r.text());
    }
    Ok(serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

impl Lab {
    /// Starts `managers` managers and `workers` workers in one swarm (the first initialises
    /// it, the others join it), with the `swarmd` binary `bin`.
    pub fn start(bin: &Path, managers: usize, workers: usize) -> anyhow::Result<Lab> {
        if !Path::new(LIBFAKETIME).exists() {
            bail!("{LIBFAKETIME} is missing: install Debian's faketime (scripts/ci-setup.sh)");
        }
        sweep::sweep_orphans();
        let id = format!("{:x}", std::process::id() % 0xfffff);
        let dir = Path::new(sweep::PARENT).join(format!("swarmd-chaos-{id}"));
        std::fs::create_dir_all(&dir)?;
        let owner = sweep::Owner::claim(&dir)?;
        let total = managers + workers;
        let net = Net::create(&id, total)?;
        let backing = Backing::mount(&dir.join("disks"), total)?;
        let mut lab = Lab {
            nodes: Vec::new(),
            net,
            dir,
            backing,
            _owner: owner,
        };
        for i in 1..=total {
            let node = lab.spawn(bin, i, i <= managers)?;
            lab.nodes.push(node);
        }
        lab.form_swarm()?;
        Ok(lab)
    }

    fn spawn(&self, bin: &Path, i: usize, manager: bool) -> anyhow::Result<Node> {
        let name = format!("n{i}");
        // The node's swarm state (Raft log, snapshots, task db, keys) is on its small
        // disk; its log stays on the real disk, readable after a "disk full".
        let root = self.dir.join(&name);
        let disk = Disk::create(&self.backing, &name, &root.join("swarm"))?;
        let clock_file = self.dir.join(format!("{name}.clock"));
        std::fs::write(&clock_file, "+0s\n")?;
        let daemon = Daemon::builder(bin)
            .executor(Executor::Process)
            .netns(self.net.ns(i))
            .node_addr(self.net.addr(i))
            .hostname(&name)
            .data_root(&root)
            .log_level(std::env::var("SWARMD_LAB_LOG").unwrap_or_else(|_| "info".into()))
            .env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", &clock_file)
            .env("FAKETIME_CACHE_DURATION", "1")
            // Only the wall clock jumps, as NTP or an operator would make it; monotonic
            // time never goes backwards on a real machine.
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .start_timeout(Duration::from_secs(60))
            .start()
            .with_context(|| format!("starting {name}"))?;
        Ok(Node {
            name,
            daemon,
            clock_file,
            disk,
            manager,
            paused: false,
        })
    }

    fn form_swarm(&mut self) -> anyhow::Result<()> {
        let first = self.net.addr(1);
        api(
            &self.nodes[0].socket(),
            "POST",
            "/swarm/init",
            Some(json!({
                "ListenAddr": format!("{first}:2377"),
                "AdvertiseAddr": format!("{first}:2377"),
            })),
        )?;
        let swarm = api(&self.nodes[0].socket(), "GET", "/swarm", None)?;
        for i in 2..=self.nodes.len() {
            let token = if self.nodes[i - 1].manager {
                &swarm["JoinTokens"]["Manager"]
            } else {
                &swarm["JoinTokens"]["Worker"]
            };
            let addr = self.net.addr(i);
            api(
                &self.nodes[i - 1].socket(),
                "POST",
                "/swarm/join",
                Some(json!({
                    "ListenAddr": format!("{addr}:2377"),
                    "AdvertiseAddr": format!("{addr}:2377"),
                    "RemoteAddrs": [format!("{first}:2377")],
                    "JoinToken": token,
                })),
            )
            .with_context(|| format!("joining n{i}"))?;
        }
        Ok(())
    }

    /// A setup call on the first node that answers it (any manager serves writes).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut last = None;
        for n in self.nodes.iter().filter(|n| n.manager && !n.paused) {
            match api(&n.socket(), method, path, body.clone()) {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no manager to ask")))
    }

    /// One API call to node `i` (0-based), as a test asks it: the status and the JSON body
    /// (`Null` when not JSON); a call that got no answer is status 0 with the error as a
    /// string. Bounded by 30 s.
    pub fn ask(&self, i: usize, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        match swarmd_testkit::unix_http(
            &self.nodes[i].socket(),
            method,
            path,
            body.as_deref().map(str::as_bytes),
            SETUP_TIMEOUT,
        ) {
            Ok(r) => (
                r.status,
                serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            ),
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    /// kill -9 of node `i` (0-based).
    pub fn crash(&mut self, i: usize) {
        self.resume(i);
        self.nodes[i].daemon.kill9();
    }

    /// Starts a crashed node again on its data root; waits for its API.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].daemon.restart()
    }

    /// SIGSTOP: the process stays, answers nothing (a paused VM, a long GC).
    pub fn pause(&mut self, i: usize) {
        if let Some(pid) = self.nodes[i].daemon.pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGSTOP);
            self.nodes[i].paused = true;
        }
    }

    pub fn resume(&mut self, i: usize) {
        if self.nodes[i].paused {
            if let Some(pid) = self.nodes[i].daemon.pid() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
            }
            self.nodes[i].paused = false;
        }
    }

    /// Moves node `i`'s wall clock by `seconds` from true time (0: back to true time).
    pub fn set_clock(&self, i: usize, seconds: i64) -> anyhow::Result<()> {
        let text = if seconds >= 0 {
            format!("+{seconds}s\n")
        } else {
            format!("{seconds}s\n")
        };
        std::fs::write(&self.nodes[i].clock_file, text)?;
        Ok(())
    }

    /// Fills node `i`'s disk to the last byte.
    pub fn fill_disk(&self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].disk.fill()
    }

    pub fn free_disk(&self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].disk.free()
    }

    /// Slows node `i`'s disk to `iops` reads and writes per second (0: full speed again).
    pub fn slow_disk(&self, i: usize, iops: u64) -> anyhow::Result<()> {
        self.nodes[i].disk.throttle(iops)
    }

    /// The lab's directory (daemons' data roots and logs, history files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.resume(i);
        }
        // Each node drops its daemon (killed) before its disk (unmounted, loop device
        // detached); the backing tmpfs goes last, with the lab's fields.
        for n in self.nodes.drain(..) {
            // Keep the log past the lab, for a failing run's reader.
            let _ = std::fs::copy(
                n.daemon.log_path(),
                self.dir.join(format!("{}.log", n.name)),
            );
        }
    }
}
