//! The engine's life for health tests: crashed, started again on the same data root, hung
//! and woken. What a manager must survive: a host that vanishes, comes back with its
//! containers, or accepts connections and never answers.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::Machine;

/// How long a SIGSTOP or SIGCONT gets to reach every thread of dockerd.
const SIGNAL_TAKES: Duration = Duration::from_secs(5);

impl Machine {
    /// Whether the machine's dockerd runs (a frozen one counts: it is there, just silent).
    pub fn engine_running(&self) -> bool {
        self.dockerd.is_some()
    }

    /// Crashes the machine: SIGKILL to every process in it (dockerd, its containerd, the
    /// shims, the containers, a node started in its namespace), so its API goes away as
    /// with a host that lost power. Only the disk survives: [`Machine::start_engine`]
    /// brings the engine back on the same data root, with the containers made before
    /// (exited). Returns once they are all gone.
    ///
    /// Not dockerd alone: its containers would keep running, and the restarted engine
    /// would stop each of them gracefully (10 s for a `sleep`) before answering.
    pub fn stop_engine(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.dockerd.take() else {
            bail!("the engine of machine {} is not running", self.name);
        };
        let survivors = self.kill_everything();
        let _ = child.kill();
        child.wait()?;
        if !survivors.is_empty() {
            bail!(
                "machine {}: processes survive SIGKILL: {survivors:?}",
                self.name
            );
        }
        tracing::debug!(machine = %self.name, "machine crashed");
        Ok(())
    }

    /// Starts the engine again after [`Machine::stop_engine`], on the same data root: the
    /// containers made before are there again. Waits until it answers.
    pub fn start_engine(&mut self) -> anyhow::Result<()> {
        if self.dockerd.is_some() {
            bail!("the engine of machine {} already runs", self.name);
        }
        // dockerd trusts a pid file whose pid is alive: after a kill, a recycled pid would
        // make it believe containerd (or itself) still ran, and it would wait for a
        // containerd that never answers. Both processes are known dead here.
        for stale in ["exec/containerd/containerd.pid", "dockerd.pid"] {
            match std::fs::remove_file(self.dir.path().join(stale)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {stale}")),
            }
        }
        self.launch_engine()
    }

    /// Hangs the engine (SIGSTOP dockerd): connections to its API are accepted by the
    /// kernel and never answered, the way a wedged host behaves. Returns once every thread
    /// of dockerd has stopped (the signal alone only starts that). [`Machine::thaw_engine`]
    /// wakes it; dropping the machine removes it frozen or not.
    pub fn freeze_engine(&self) -> anyhow::Result<()> {
        self.signal_dockerd(Signal::SIGSTOP, true)
    }

    /// Wakes an engine hung by [`Machine::freeze_engine`]; returns once it runs again.
    pub fn thaw_engine(&self) -> anyhow::Result<()> {
        self.signal_dockerd(Signal::SIGCONT, false)
    }

    fn signal_dockerd(&self, signal: Signal, stopped: bool) -> anyhow::Result<()> {
        let Some(child) = &self.dockerd else {
            bail!("the engine of machine {} is not running", self.name);
        };
        let pid = i32::try_from(child.id())?;
        kill(Pid::from_raw(pid), signal)
            .with_context(|| format!("{signal} to dockerd of {}", self.name))?;
        let deadline = Instant::now() + SIGNAL_TAKES;
        while all_threads_stopped(pid) != stopped {
            if Instant::now() >= deadline {
                bail!(
                    "dockerd {pid} of machine {} not {} {SIGNAL_TAKES:?} after {signal}",
                    self.name,
                    if stopped { "stopped" } else { "running" },
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::debug!(machine = %self.name, %signal, "engine signalled");
        Ok(())
    }
}

/// Whether every thread of `pid` is stopped (state `T`): a group stop reaches the threads
/// one by one, and a running one may still answer a request meanwhile.
fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        })
    })
}
