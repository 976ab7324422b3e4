//! Each node's data disk: a small ext4 file system on a loop device, so the harness can fill
//! it up ([`Disk::fill`]) and slow it down ([`Disk::throttle`]) without touching the
//! machine's own disk.
//!
//! The loop devices' backing files sit on one tmpfs of the lab's: an unthrottled disk is as
//! fast as memory, and nothing reaches the real disk. A slow disk is the kernel's block
//! throttle (cgroup v1 `blkio.throttle.*` in the root group, per device), which bounds every
//! write to that device, fsyncs included, whoever issues it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::net::run;

/// Size of each node's file system: "disk full" is a file away.
pub const DISK_BYTES: u64 = 256 << 20;
/// Where cgroup v1 keeps the root group's block throttle (Debian's hybrid hierarchy).
pub(super) const THROTTLE_DIR: &str = "/sys/fs/cgroup/blkio";
/// The throttle knobs a slow disk sets (and a heal clears).
pub(super) const THROTTLE_KNOBS: [&str; 2] = [
    "blkio.throttle.write_iops_device",
    "blkio.throttle.read_iops_device",
];

/// The tmpfs holding every node's backing file; unmounted on drop.
pub struct Backing {
    dir: PathBuf,
}

impl Backing {
    /// Mounts a tmpfs at `dir` big enough for `nodes` disks.
    pub fn mount(dir: &Path, nodes: usize) -> anyhow::Result<Backing> {
        std::fs::create_dir_all(dir)?;
        let size = (DISK_BYTES + (16 << 20)) * nodes as u64;
        let mut mount = Command::new("mount");
        mount
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir);
        run(mount)?;
        Ok(Backing {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// One node's disk: a loop device with ext4, mounted at the node's swarm directory.
pub struct Disk {
    /// Where the file system is mounted.
    pub mount: PathBuf,
    device: String,
    /// `major:minor` of the loop device, as the block throttle names it.
    dev_t: String,
}

impl Disk {
    /// Makes `name`'s backing file in `backing`, attaches it to a free loop device, makes an
    /// ext4 file system there (no blocks reserved for root: swarmd runs as root and must
    /// see the disk full) and mounts it at `mount`.
    pub fn create(backing: &Backing, name: &str, mount: &Path) -> anyhow::Result<Disk> {
        let image = backing.dir.join(format!("{name}.img"));
        std::fs::File::create(&image)?.set_len(DISK_BYTES)?;
        let mut losetup = Command::new("losetup");
        losetup.args(["--find", "--show"]).arg(&image);
        let device = run(losetup)
            .context("attaching a loop device (the kernel's loop driver)")?
            .trim()
            .to_string();
        let mut disk = Disk {
            mount: mount.to_path_buf(),
            device: device.clone(),
            dev_t: String::new(),
        };
        let meta = std::fs::metadata(&device)?;
        let rdev = std::os::unix::fs::MetadataExt::rdev(&meta);
        disk.dev_t = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
        let mut mkfs = Command::new("mkfs.ext4");
        mkfs.args(["-q", "-F", "-m", "0", &device]);
        run(mkfs)?;
        std::fs::create_dir_all(mount)?;
        let mut m = Command::new("mount");
        m.arg(&device).arg(mount);
        run(m)?;
        Ok(disk)
    }

    /// Fills the file system to the last byte.
    pub fn fill(&self) -> anyhow::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(self.mount.join("ballast"))?;
        let block = vec![0u8; 1 << 20];
        loop {
            if let Err(e) = f.write_all(&block) {
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    return Ok(());
                }
                return Err(e.into());
            }
        }
    }

    pub fn free(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(self.mount.join("ballast")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Bounds the device to `iops` reads and writes per second (0: no bound).
    pub fn throttle(&self, iops: u64) -> anyhow::Result<()> {
        let dir = Path::new(THROTTLE_DIR);
        if !dir.join(THROTTLE_KNOBS[0]).exists() {
            bail!("a slow disk needs cgroup v1's block throttle ({THROTTLE_DIR})");
        }
        for knob in THROTTLE_KNOBS {
            std::fs::write(dir.join(knob), format!("{} {iops}\n", self.dev_t))
                .with_context(|| format!("{knob} of {}", self.device))?;
        }
        Ok(())
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = self.throttle(0);
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}
