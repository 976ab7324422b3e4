//! A second "machine" for end-to-end tests whose traffic must really cross between hosts
//! (the overlay's VXLAN): a network namespace with a Docker Engine of its own, linked to the
//! host by a veth pair on private addresses.
//!
//! ```text
//!  host (test process, manager, host engine)        namespace swm-xxxx ("machine")
//!  swmh-xxxx 10.77.B.4C+1/30  <---- veth ---->  eth0 10.77.B.4C+2/30
//!                                                dockerd + its containerd, -H unix:///tmp/...
//!                                                swarmd started with Daemon::builder().netns()
//! ```
//!
//! The recipe is `scripts/bench-failover`'s (DockerLab): Debian's `/usr/sbin/dockerd` started
//! through `nsenter --net=/run/netns/NS unshare --mount --uts`, with its own hostname and a
//! private mount namespace (a sysfs of its network namespace, so the engine sees its own
//! interfaces, with the host's cgroup hierarchies bound back in; private `/run/containerd`,
//! `/run/docker` and `/etc/docker`), its own `--data-root`, `--exec-root`, `--pidfile`, API
//! socket and `--cgroup-parent`, and its own managed containerd (dockerd's default, under the
//! exec root). `--bridge none` by default: no `docker0` (tasks only join the per-overlay
//! bridges the docker executor makes). The storage driver is the host engine's (what works
//! on this file system).
//!
//! No registry is reachable, so the test image is the one the suite made locally
//! (`scripts/ci-setup.sh`: `busybox:latest` imported from Debian's busybox-static), copied
//! from the host engine with `docker save` / `docker load`: both machines run the same image.
//!
//! Nothing leaves the machine: the only route into the namespace is the veth's /30, and the
//! namespace has no default route. Names and addresses are random per machine (a netns name
//! from [`crate::unique_name`], a /30 in 10.77.1.0–10.77.254.255 not used on the host nor
//! held by another machine of the process: `machine/slash30.rs`), so parallel tests do not
//! collide. Dropping a [`Machine`] (also during a panic) kills every process of the
//! namespace and of its containers' cgroups, removes the cgroups, the veth, the namespace
//! and the directories.
//!
//! One overlay machine at a time per host: the tests run a node on the host too, whose VXLAN
//! device for a network gets the swarm's VNI (4097 for every swarm's first network), and
//! the kernel allows one VXLAN device per VNI and UDP port in a network namespace ("A
//! VXLAN device with the specified VNI already exists"). Two tests' host nodes would take
//! turns anyway, through failed links and retries that eat their waits; an exclusive lock
//! on a file in /tmp, held while the [`Machine`] lives, makes the turns explicit.
//!
//! [`Machine::builder`] makes the other kind, for classic Swarm's pools of engines
//! ([`crate::EnginePool`]): a chosen hostname (the engine's `Name`), daemon labels, a TCP
//! listener on the machine's address, the default bridge (`docker0` inside the namespace),
//! a registry to pull from (`registry.rs`), and no host-wide lock. Any machine can be
//! crashed and its engine restarted on the same data root, or hung (`machine/lifecycle.rs`).

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::cmd::{
    CmdOutput, DEFAULT_CMD_TIMEOUT, LOG_TAIL_LINES, docker_cli, log_tail_section, run_inner,
};
use crate::engine::{engine_docker, isolate_cli};
use crate::http::unix_http;
use crate::registry::{Content, REGISTRY_ADDR, RegistryServer};

mod builder;
mod lifecycle;
mod slash30;

pub use builder::{ENGINE_TCP_PORT, ENGINE_TLS_PORT, MachineBuilder};
use slash30::Slash30;

/// The image every test task uses; loaded into each machine's engine.
const IMAGE: &str = "busybox:latest";
/// How long the machine's dockerd gets to answer.
const ENGINE_START: Duration = Duration::from_secs(60);
/// The host-wide lock of [`Machine`]s (see the module doc).
const LOCK_FILE: &str = "/tmp/swarmd-test-machine.lock";
/// How long a test waits for another test's machine to go.
const LOCK_WAIT: Duration = Duration::from_secs(300);

/// A network namespace with its own Docker Engine; see the module doc.
pub struct Machine {
    name: String,
    host_if: String,
    host_addr: Ipv4Addr,
    addr: Ipv4Addr,
    /// The cgroup parent of its containers (one directory per hierarchy).
    cgroup: String,
    /// How it was asked for (hostname, labels, listeners, bridge).
    opts: MachineBuilder,
    dir: TempDir,
    dockerd: Option<Child>,
    /// How many times its engine was started (for the log's markers).
    starts: u32,
    /// The registry in its namespace ([`MachineBuilder::registry`]).
    registry: Option<RegistryServer>,
    /// Released once the veth is gone.
    _slash30: Slash30,
    /// Released last, once everything is removed (`None`: see [`MachineBuilder::host_lock`]).
    _turn: Option<Flock<std::fs::File>>,
}

impl Machine {
    /// Makes the namespace and the veth, starts the engine, waits until it answers and loads
    /// the test image. `prefix` starts the namespace's name and hostname. Needs root,
    /// iproute2, util-linux (nsenter, unshare) and docker.io (`scripts/ci-setup.sh`).
    ///
    /// The overlay tests' machine: API on a unix socket only, `--bridge none`, the host-wide
    /// lock held. [`Machine::builder`] makes others.
    pub fn start(prefix: &str) -> anyhow::Result<Machine> {
        Machine::builder(prefix).start()
    }

    /// A machine with other settings (hostname, labels, a TCP listener, the default bridge,
    /// no host-wide lock); `prefix` starts the namespace's name.
    pub fn builder(prefix: &str) -> MachineBuilder {
        MachineBuilder::new(prefix)
    }

    fn start_with(opts: MachineBuilder) -> anyhow::Result<Machine> {
        let turn = if opts.host_lock {
            Some(take_turn()?)
        } else {
            None
        };
        let name = crate::unique_name(&opts.prefix);
        let suffix = name.rsplit('-').next().unwrap_or(&name);
        // IFNAMSIZ: at most 15 bytes.
        let host_if: String = format!("swmh{suffix}").chars().take(15).collect();
        let slash30 = Slash30::reserve()?;
        let (host_addr, addr) = (slash30.host(), slash30.machine());
        // Short: unix socket paths (the engine's, containerd's under the exec root) must fit
        // in 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("swm-")
            .tempdir_in("/tmp")
            .context("creating the machine's directory")?;
        let mut m = Machine {
            cgroup: name.clone(),
            name,
            host_if,
            host_addr,
            addr,
            opts,
            dir,
            dockerd: None,
            starts: 0,
            registry: None,
            _slash30: slash30,
            _turn: turn,
        };
        // From here on, Drop undoes whatever was made.
        m.wire()?;
        m.make_dirs()?;
        m.launch_engine()?;
        m.load_image()?;
        Ok(m)
    }

    fn wire(&self) -> anyhow::Result<()> {
        let (ns, hif) = (self.name.as_str(), self.host_if.as_str());
        ip(&["netns", "add", ns])?;
        ip(&[
            "link", "add", hif, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&["addr", "add", &format!("{}/30", self.host_addr), "dev", hif])?;
        ip(&["link", "set", hif, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/30", self.addr),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        Ok(())
    }

    fn make_dirs(&self) -> anyhow::Result<()> {
        let d = self.dir.path();
        for sub in [
            "data",
            "exec",
            "run-containerd",
            "run-docker",
            "etc-docker",
            "cg",
        ] {
            std::fs::create_dir(d.join(sub))?;
        }
        std::fs::write(d.join("daemon.json"), "{}\n")?;
        self.opts.write_tls_files(self.addr, d)?;
        Ok(())
    }

    /// Starts dockerd in the namespace (on the machine's data root, so a restart finds the
    /// containers made before) and waits until it answers.
    fn launch_engine(&mut self) -> anyhow::Result<()> {
        let d = self.dir.path();
        let driver = engine_docker(&["info", "--format", "{{.Driver}}"])
            .ok()
            .stdout_trimmed()
            .to_string();
        let p = |s: &str| d.join(s).display().to_string();
        let mut dockerd = vec![
            "/usr/sbin/dockerd".to_string(),
            format!("-H={}", self.engine_host()),
            format!("--data-root={}", p("data")),
            format!("--exec-root={}", p("exec")),
            format!("--pidfile={}", p("dockerd.pid")),
            format!("--config-file={}", p("daemon.json")),
            format!("--cgroup-parent=/{}", self.cgroup),
            format!("--storage-driver={driver}"),
        ];
        dockerd.extend(self.opts.dockerd_args(self.addr, d));
        let script = [
            format!("mount --rbind /sys/fs/cgroup {}", p("cg")),
            "mount -t sysfs sysfs /sys".to_string(),
            format!("mount --rbind {} /sys/fs/cgroup", p("cg")),
            format!("umount -l {}", p("cg")),
            format!("mount --bind {} /run/containerd", p("run-containerd")),
            format!("mount --bind {} /run/docker", p("run-docker")),
            format!("mount --bind {} /etc/docker", p("etc-docker")),
            // Checked by MachineBuilder::start: no quoting needed.
            format!("hostname {}", self.hostname()),
            // dockerd's arguments come as sh's own ("$@"): labels need no quoting.
            "exec \"$@\"".to_string(),
        ]
        .join(" && ");
        self.starts += 1;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))?;
        writeln!(
            log,
            "=== swarmd-testkit: engine start #{}: {}",
            self.starts,
            dockerd.join(" ")
        )?;
        // nsenter and unshare exec (no fork for these namespaces) and so does `sh -c exec`:
        // the child's pid is dockerd's.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.name))
            .args([
                "--",
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
            ])
            .args(["--", "sh", "-c", &script, "sh"])
            .args(&dockerd)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting dockerd through nsenter/unshare (util-linux)")?;
        self.dockerd = Some(child);
        let sock = self.socket();
        let deadline = Instant::now() + ENGINE_START;
        loop {
            let answered = unix_http(&sock, "GET", "/_ping", None, Duration::from_secs(2))
                .is_ok_and(|r| r.status == 200);
            if answered {
                return Ok(());
            }
            if let Some(status) = self
                .dockerd
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.dockerd = None;
                bail!(
                    "dockerd of machine {} exited ({status})\n{}",
                    self.name,
                    self.engine_log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "dockerd of machine {} did not answer within {ENGINE_START:?}\n{}",
                    self.name,
                    self.engine_log_tail()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Copies the test image from the host engine, and serves it from the machine's
    /// registry if it has one.
    fn load_image(&mut self) -> anyhow::Result<()> {
        let tar = self.dir.path().join("image.tar");
        let saved = engine_docker(&["save", "-o", &tar.display().to_string(), IMAGE]);
        if !saved.success() {
            bail!(
                "{}",
                saved.report("saving the test image from the host engine")
            );
        }
        let loaded = self.docker(&["load", "-q", "-i", &tar.display().to_string()]);
        if !loaded.success() {
            bail!(
                "{}",
                loaded.report("loading the test image into the machine")
            );
        }
        if self.opts.registry {
            let content = Content::from_docker_save(&tar, &self.dir.path().join("registry"))?;
            let addr = REGISTRY_ADDR.parse()?;
            self.registry = Some(RegistryServer::start(&self.name, addr, content)?);
        }
        let _ = std::fs::remove_file(&tar);
        Ok(())
    }

    /// The network namespace's name: pass it to [`crate::DaemonBuilder::netns`].
    pub fn netns(&self) -> &str {
        &self.name
    }

    /// The engine's hostname (its `Name` in `/info`): [`MachineBuilder::hostname`], else the
    /// namespace's name.
    pub fn hostname(&self) -> &str {
        self.opts.hostname.as_deref().unwrap_or(&self.name)
    }

    /// `10.77.B.C:2375` (`:2376` with TLS), where the engine listens for TCP (an entry of
    /// classic Swarm's discovery list), if it was asked to ([`MachineBuilder::tcp`]).
    pub fn tcp_addr(&self) -> Option<String> {
        self.opts
            .tcp
            .then(|| format!("{}:{}", self.addr, self.opts.tcp_port()))
    }

    /// The host's end of the veth: give it to a node on the host as `--node-addr`.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// The machine's own address (its eth0): the `--node-addr` of a node inside it.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// `unix://<socket>` of the machine's engine: a node inside it gets it as
    /// `--engine-host`.
    pub fn engine_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Runs the docker CLI against the machine's engine (through its unix socket).
    #[track_caller]
    pub fn docker(&self, args: &[&str]) -> CmdOutput {
        self.docker_at(&self.engine_host(), args)
    }

    /// Runs the docker CLI against the machine's engine through its TCP listener, the way
    /// classic Swarm reaches it. Panics if the machine has none ([`MachineBuilder::tcp`]).
    #[track_caller]
    pub fn docker_tcp(&self, args: &[&str]) -> CmdOutput {
        let addr = self
            .tcp_addr()
            .unwrap_or_else(|| panic!("machine {} has no TCP listener", self.name));
        self.docker_at(&format!("tcp://{addr}"), args)
    }

    #[track_caller]
    fn docker_at(&self, host: &str, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new(docker_cli());
        cmd.args(["-H", host]).args(args);
        isolate_cli(&mut cmd, &self.config_dir());
        run_inner(
            cmd,
            None,
            DEFAULT_CMD_TIMEOUT,
            Some(&self.dir.path().join("dockerd.log")),
        )
    }

    fn config_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("docker-config");
        let _ = std::fs::create_dir(&dir);
        dir
    }

    /// The last lines of the engine's log, for failure messages.
    pub fn engine_log_tail(&self) -> String {
        log_tail_section(&self.dir.path().join("dockerd.log"), LOG_TAIL_LINES)
    }

    /// Every process of the machine: those in its network namespace (dockerd, containerd,
    /// shims, a node started in it) and those in its containers' cgroups.
    fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for dir in self.cgroup_dirs() {
            for procs in walk(&dir).iter().map(|d| d.join("cgroup.procs")) {
                if let Ok(s) = std::fs::read_to_string(procs) {
                    pids.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
                }
            }
        }
        pids.retain(|p| *p != std::process::id() as i32);
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every process of the machine at once (a graceful engine stop would wait
    /// for each container's stop timeout), again for processes forked meanwhile, for up to
    /// 10 s. Returns the processes still there then.
    fn kill_everything(&self) -> Vec<i32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() >= deadline {
                return pids;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The machine's cgroup in each hierarchy (v1: one per controller; v2: one).
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let base = Path::new("/sys/fs/cgroup");
        let mut roots = vec![base.to_path_buf()];
        if let Ok(entries) = std::fs::read_dir(base) {
            roots.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        roots
            .into_iter()
            .map(|r| r.join(&self.cgroup))
            .filter(|p| p.is_dir())
            .collect()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // Its sockets hold the namespace.
        self.registry.take();
        if thread::panicking() {
            eprintln!(
                "--- machine {} ({}) engine at the failure ---\n{}",
                self.name,
                self.addr,
                self.engine_log_tail()
            );
        }
        let survivors = self.kill_everything();
        if !survivors.is_empty() {
            eprintln!(
                "machine {}: processes survive SIGKILL: {survivors:?}",
                self.name
            );
        }
        if let Some(mut child) = self.dockerd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in self.cgroup_dirs() {
            // Deepest first: a cgroup directory goes only once it has no children.
            let mut dirs = walk(&dir);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in dirs {
                let _ = std::fs::remove_dir(d);
            }
        }
        // Deleting one end of a veth deletes both; the namespace goes with its last user.
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Waits (up to [`LOCK_WAIT`]) for the host-wide machine lock.
fn take_turn() -> anyhow::Result<Flock<std::fs::File>> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .with_context(|| format!("opening {LOCK_FILE}"))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = f;
                thread::sleep(Duration::from_millis(100));
            }
            Err((_, e)) => {
                bail!("locking {LOCK_FILE} (another test's machine for {LOCK_WAIT:?}?): {e}")
            }
        }
    }
}

/// `dir` and every directory under it.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = std::fs::read_dir(&out[i]) {
            out.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        i += 1;
    }
    out
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_lists_the_tree() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        std::fs::write(t.path().join("a/f"), "").unwrap();
        let got = walk(t.path());
        assert_eq!(got.len(), 3, "{got:?}");
    }
}
