//! Is a directory memory-backed? Secrets are written only where the answer is yes.
//!
//! A task's secret files exist in plaintext for as long as the task runs. On a tmpfs or
//! ramfs they live in memory (and at worst swap) and vanish with the node; on any other
//! filesystem they would reach a disk and outlive the task in its blocks. The secrets root
//! is configurable (`SWARMD_SECRETS_ROOT`), so it is checked where it matters: right
//! before a secret is written.

use std::path::Path;

use super::ExecError;

/// `statfs` `f_type` of a tmpfs (linux/magic.h `TMPFS_MAGIC`).
pub const TMPFS_MAGIC: u32 = 0x0102_1994;
/// `statfs` `f_type` of a ramfs (linux/magic.h `RAMFS_MAGIC`).
pub const RAMFS_MAGIC: u32 = 0x8584_58f6;

/// The filesystem type (`statfs` `f_type`) of the filesystem `dir` is on.
pub fn fs_type(dir: &Path) -> Result<u32, ExecError> {
    let st = nix::sys::statfs::statfs(dir).map_err(|e| ExecError::io(dir.display(), e))?;
    // `f_type` is a signed word of platform width; the magic numbers are 32-bit values
    // (RAMFS_MAGIC has the top bit set, so it is negative where the word is 32 bits).
    Ok(st.filesystem_type().0 as u32)
}

/// Whether a filesystem of type `f_type` keeps its files in memory only.
pub fn is_memory_backed(f_type: u32) -> bool {
    matches!(f_type, TMPFS_MAGIC | RAMFS_MAGIC)
}

/// Fails unless `dir` is on a tmpfs or ramfs.
pub fn ensure_memory_backed(dir: &Path) -> Result<(), ExecError> {
    let f_type = fs_type(dir)?;
    if is_memory_backed(f_type) {
        return Ok(());
    }
    tracing::warn!(
        dir = %dir.display(),
        fs_type = format_args!("{f_type:#x}"),
        "refusing to write secrets to a directory that is not on a tmpfs"
    );
    Err(ExecError::SecretsNotInMemory {
        dir: dir.display().to_string(),
        fs_type: f_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory on a disk filesystem: /var/tmp, else this crate's source tree. A machine
    /// where both are memory-backed cannot run the test, and says so by failing.
    fn on_disk() -> tempfile::TempDir {
        let candidates = [Path::new("/var/tmp"), Path::new(env!("CARGO_MANIFEST_DIR"))];
        let dir = candidates
            .into_iter()
            .find(|d| fs_type(d).is_ok_and(|t| !is_memory_backed(t)))
            .expect("a directory on a disk filesystem (/var/tmp or the source tree)");
        tempfile::tempdir_in(dir).unwrap()
    }

    #[test]
    fn a_disk_directory_is_refused_with_the_reason() {
        let dir = on_disk();
        let err = ensure_memory_backed(dir.path()).unwrap_err();
        assert!(
            matches!(&err, ExecError::SecretsNotInMemory { dir: d, .. } if d == &dir.path().display().to_string()),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("not on a tmpfs or ramfs"), "{msg}");
        assert!(msg.contains("SWARMD_SECRETS_ROOT"), "{msg}");
    }

    #[test]
    fn dev_shm_is_accepted() {
        let dir = tempfile::tempdir_in("/dev/shm").expect("/dev/shm exists");
        ensure_memory_backed(dir.path()).unwrap();
        assert_eq!(fs_type(dir.path()).unwrap(), TMPFS_MAGIC);
    }

    #[test]
    fn a_missing_directory_is_an_io_error() {
        let err = ensure_memory_backed(Path::new("/nonexistent/swarmd-secrets")).unwrap_err();
        assert!(matches!(err, ExecError::Io(_)), "{err:?}");
    }
}
