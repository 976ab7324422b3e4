//! Removes what a lab whose harness died (kill -9, a crash) left behind: its daemons, mounts,
//! loop devices, block throttles and namespaces (its directory stays, with the daemons'
//! logs). A lab cleans up after itself when dropped; this covers the case where its drop
//! never ran. Each lab writes its harness's pid in `<dir>/owner` and removes the file once
//! clean; a lab whose owner file names a dead process is swept at the next start.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Every lab directory lives here, named `swarmd-chaos-<id>`.
pub const PARENT: &str = "/tmp";
const PREFIX: &str = "swarmd-chaos-";
/// The file holding the pid of the harness that owns a lab.
const OWNER: &str = "owner";

/// A lab's claim: `<dir>/owner` holds this process's pid until dropped.
pub struct Owner(PathBuf);

impl Owner {
    pub fn claim(dir: &Path) -> std::io::Result<Owner> {
        let file = dir.join(OWNER);
        std::fs::write(&file, std::process::id().to_string())?;
        Ok(Owner(file))
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sweeps every lab whose owner is no longer alive. Best effort: a sweep that fails leaves
/// the next one to try again.
pub fn sweep_orphans() {
    let Ok(entries) = std::fs::read_dir(PARENT) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let dir = e.path();
        let owner = std::fs::read_to_string(dir.join(OWNER))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        // No owner file: a lab that cleaned up after itself (its logs and history stay for
        // the reader), or one being made right now.
        let Some(pid) = owner else { continue };
        if alive(pid) {
            continue;
        }
        eprintln!(
            "chaos: sweeping the lab left by pid {pid} ({})",
            dir.display()
        );
        sweep(&dir, id);
    }
}

fn alive(pid: i32) -> bool {
    // Signal 0: permission and existence only.
    kill(Pid::from_raw(pid), None).is_ok()
}

fn sweep(dir: &Path, id: &str) {
    let dir_s = dir.to_string_lossy().into_owned();
    // Daemons first: they hold the mounts.
    for pid in processes_mentioning(&dir_s) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    for dev in loop_devices_under(&dir_s) {
        if let Ok(dev_t) = std::fs::read_to_string(format!("/sys/block/{dev}/dev")) {
            for knob in super::disk::THROTTLE_KNOBS {
                let _ = std::fs::write(
                    Path::new(super::disk::THROTTLE_DIR).join(knob),
                    format!("{} 0\n", dev_t.trim()),
                );
            }
        }
    }
    // Deepest mounts first (the nodes' disks sit inside the backing tmpfs's lab).
    let mut mounts = mounts_under(&dir_s);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in mounts {
        let _ = Command::new("umount").arg("-l").arg(&m).status();
    }
    for dev in loop_devices_under(&dir_s) {
        let _ = Command::new("losetup")
            .args(["-d", &format!("/dev/{dev}")])
            .status();
    }
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let ns = line.split_whitespace().next().unwrap_or("");
            if ns.starts_with("sw") && ns.ends_with(&format!("-{id}")) {
                super::net::kill_all_in(ns);
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }
    let _ = std::fs::remove_file(dir.join(OWNER));
}

/// Pids whose command line mentions `dir` (the daemons get `--data-root <dir>/nX`).
fn processes_mentioning(dir: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(dir))
                .unwrap_or(false)
        })
        .collect()
}

fn mounts_under(dir: &str) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(dir))
        .map(PathBuf::from)
        .collect()
}

/// Loop devices (`loopN`) whose backing file is under `dir`.
fn loop_devices_under(dir: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let backing = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            backing.starts_with(dir).then_some(name)
        })
        .collect()
}
