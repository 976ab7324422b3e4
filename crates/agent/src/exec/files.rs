//! Secret and config files of a task, on a tmpfs of the node.
//!
//! The worker resolves a task's secret/config references against what the dispatcher
//! delivered (kept in memory only) into [`TaskFile`]s; the executor writes them under
//! `<root>/<task id>/` on a tmpfs (by default `/dev/shm/swarmd`, never the data root, so
//! the plaintext never reaches a disk) and removes the directory as soon as the task has
//! ended. The docker executor bind-mounts each file read-only at its target; the process
//! executor hands the task the directories in `SWARMD_SECRETS_DIR` / `SWARMD_CONFIGS_DIR`.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bollard_stubs::models::TaskSpecContainerSpec;
use swarmd_types::dispatcher::Assignment;
use swarmd_types::{Config, Secret};

use super::template::{PayloadFiles, TemplateContext};
use super::{ExecError, memfs};

/// Where task directories live unless `SWARMD_SECRETS_ROOT` says otherwise (it must be a
/// tmpfs or ramfs: the point is that the plaintext never touches a disk; [`write`] refuses
/// to write a secret anywhere else).
pub const DEFAULT_ROOT: &str = "/dev/shm/swarmd";

/// Docker's in-container directory for secrets with a relative target.
pub const SECRETS_MOUNT: &str = "/run/secrets";

/// The root of the per-task directories.
pub fn root() -> PathBuf {
    std::env::var_os("SWARMD_SECRETS_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

/// A task's directory under [`root`].
pub fn task_dir(task_id: &str) -> PathBuf {
    root().join(task_id)
}

/// One file a task gets. `Debug` leaves the data out.
#[derive(Clone, PartialEq)]
pub struct TaskFile {
    /// The object's name (error messages).
    pub name: String,
    /// The path the task sees: absolute for the docker executor (`/run/secrets/<target>`
    /// or the config's target), as given otherwise.
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for TaskFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskFile")
            .field("name", &self.name)
            .field("target", &self.target)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// A task's files, resolved by the worker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFiles {
    pub secrets: Vec<TaskFile>,
    pub configs: Vec<TaskFile>,
    /// References the node holds no object for (e.g. an adopted task after a restart,
    /// before the session delivered its secrets). A task that must be prepared with
    /// missing files fails, as swarmkit's "secret not found" does.
    pub missing: Vec<String>,
    /// A template that failed to expand (in the spec or in a templated secret/config):
    /// preparing the task fails with it.
    pub error: Option<String>,
}

impl TaskFiles {
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
            && self.configs.is_empty()
            && self.missing.is_empty()
            && self.error.is_none()
    }
}

/// The secrets and configs a node holds: delivered by the dispatcher, in memory only.
#[derive(Default)]
pub struct Dependencies {
    secrets: HashMap<String, Secret>,
    configs: HashMap<String, Config>,
}

impl Dependencies {
    /// Applies one assignment change for a secret or config (tasks are ignored).
    pub fn apply(&mut self, remove: bool, a: &Assignment) {
        match a {
            Assignment::Secret(s) if remove => {
                self.secrets.remove(&s.id);
            }
            Assignment::Secret(s) => {
                self.secrets.insert(s.id.clone(), s.clone());
            }
            Assignment::Config(c) if remove => {
                self.configs.remove(&c.id);
            }
            Assignment::Config(c) => {
                self.configs.insert(c.id.clone(), c.clone());
            }
            Assignment::Task(_) => {}
        }
    }

    pub fn clear(&mut self) {
        self.secrets.clear();
        self.configs.clear();
    }

    pub fn has_secret(&self, id: &str) -> bool {
        self.secrets.contains_key(id)
    }

    pub fn has_config(&self, id: &str) -> bool {
        self.configs.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.secrets.len() + self.configs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The files of a task's container spec; the data of templated secrets and configs
    /// (`--template-driver golang`) is expanded with `templates`.
    pub fn resolve(&self, spec: &TaskSpecContainerSpec, templates: &TemplateContext) -> TaskFiles {
        let mut out = TaskFiles::default();
        // Indexes into out.secrets / out.configs of the templated ones, and every file's
        // target as the spec names it (what `secret "target"` looks up).
        let mut templated_secrets = Vec::new();
        let mut templated_configs = Vec::new();
        let mut secret_targets = Vec::new();
        let mut config_targets = Vec::new();
        for r in spec.secrets.iter().flatten() {
            let name = r.secret_name.clone().unwrap_or_default();
            let id = r.secret_id.as_deref().unwrap_or("");
            let Some(s) = self.secrets.get(id) else {
                out.missing.push(format!("secret {name}"));
                continue;
            };
            let f = r.file.clone().unwrap_or_default();
            let target = f.name.unwrap_or_else(|| name.clone());
            if s.templating.is_some() {
                templated_secrets.push(out.secrets.len());
            }
            secret_targets.push(target.clone());
            out.secrets.push(TaskFile {
                target: absolute(SECRETS_MOUNT, &target),
                uid: parse_id(f.uid.as_deref()),
                gid: parse_id(f.gid.as_deref()),
                mode: f.mode.unwrap_or(0o444),
                data: s.data.clone(),
                name,
            });
        }
        for r in spec.configs.iter().flatten() {
            let name = r.config_name.clone().unwrap_or_default();
            let id = r.config_id.as_deref().unwrap_or("");
            // A runtime config (credential spec) is not a file.
            let Some(f) = r.file.clone() else { continue };
            let Some(c) = self.configs.get(id) else {
                out.missing.push(format!("config {name}"));
                continue;
            };
            let target = f.name.unwrap_or_else(|| name.clone());
            if c.templating.is_some() {
                templated_configs.push(out.configs.len());
            }
            config_targets.push(target.clone());
            out.configs.push(TaskFile {
                target: absolute("/", &target),
                uid: parse_id(f.uid.as_deref()),
                gid: parse_id(f.gid.as_deref()),
                mode: f.mode.unwrap_or(0o444),
                data: c.data.clone(),
                name,
            });
        }
        if !templated_secrets.is_empty() || !templated_configs.is_empty() {
            // Built only when a file is templated: no extra copies of plaintext otherwise.
            let by_target = |targets: Vec<String>, files: &[TaskFile]| {
                targets
                    .into_iter()
                    .zip(files.iter().map(|f| f.data.clone()))
                    .collect()
            };
            let payload = PayloadFiles {
                env: spec.env.clone().unwrap_or_default(),
                secrets: by_target(secret_targets, &out.secrets),
                configs: by_target(config_targets, &out.configs),
            };
            expand_templated(
                &mut out,
                payload,
                templates,
                &templated_secrets,
                &templated_configs,
            );
        }
        out
    }
}

/// Expands the templated files of `out` in place. Templates see the task's other files as
/// delivered (unexpanded), by the target the spec gives them, like swarmkit's getters.
fn expand_templated(
    out: &mut TaskFiles,
    payload: PayloadFiles,
    templates: &TemplateContext,
    secrets: &[usize],
    configs: &[usize],
) {
    for (kind, list, idx) in [
        ("secret", &mut out.secrets, secrets),
        ("config", &mut out.configs, configs),
    ] {
        for &i in idx {
            let f = &mut list[i];
            match templates.expand_payload(&f.data, payload.clone()) {
                Ok(data) => f.data = data,
                Err(e) => {
                    out.error
                        .get_or_insert(format!("expanding templated {kind} {}: {e}", f.name));
                }
            }
        }
    }
}

/// Docker's `getSecretTargetPath` / `getConfigTargetPath`: an absolute target as is, a
/// relative one under `base`.
fn absolute(base: &str, target: &str) -> String {
    if target.starts_with('/') {
        target.to_string()
    } else {
        Path::new(base).join(target).to_string_lossy().into_owned()
    }
}

/// A numeric uid/gid; Docker's CLI sends "0" by default. Names are not resolved (the
/// container's passwd is not the host's).
fn parse_id(s: Option<&str>) -> u32 {
    s.and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Where each file was written: `(host path, file)`.
pub type Written<'a> = Vec<(PathBuf, &'a TaskFile)>;

/// How files are named in the task's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `secrets/<n>`: each file is bind-mounted at its target (docker executor).
    Indexed,
    /// The target's path inside the directory (`/run/secrets/pw` → `secrets/pw`,
    /// `/etc/app.conf` → `configs/etc/app.conf`): the task reads the directory itself
    /// (process executor).
    ByTarget,
}

/// The directories the task sees with [`Layout::ByTarget`].
pub fn dirs(task_id: &str) -> (PathBuf, PathBuf) {
    let d = task_dir(task_id);
    (d.join("secrets"), d.join("configs"))
}

/// Writes the task's files under its directory, with the requested mode and, when swarmd
/// runs as root, owner. Returns the host paths.
pub fn write<'a>(
    task_id: &str,
    files: &'a TaskFiles,
    layout: Layout,
) -> Result<(Written<'a>, Written<'a>), ExecError> {
    if let Some(e) = &files.error {
        return Err(ExecError::InvalidSpec(e.clone()));
    }
    if let Some(first) = files.missing.first() {
        return Err(ExecError::InvalidSpec(format!(
            "{first} is not available on this node"
        )));
    }
    let (sdir, cdir) = dirs(task_id);
    let secrets = write_set(&sdir, &files.secrets, layout, SECRETS_MOUNT, true)?;
    let configs = write_set(&cdir, &files.configs, layout, "/", false)?;
    Ok((secrets, configs))
}

/// The relative name of `target` inside the directory for [`Layout::ByTarget`]; `None`
/// for a target that would escape it.
fn relative_name(target: &str, base: &str) -> Option<PathBuf> {
    let rel = target
        .strip_prefix(base)
        .unwrap_or(target)
        .trim_start_matches('/');
    let path = Path::new(rel);
    let ok = !rel.is_empty()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    ok.then(|| path.to_path_buf())
}

/// Writes `files` into `dir`. `memory_only` (secrets): refuse, before any file is written,
/// unless `dir` is on a tmpfs or ramfs.
fn write_set<'a>(
    dir: &Path,
    files: &'a [TaskFile],
    layout: Layout,
    base: &str,
    memory_only: bool,
) -> Result<Written<'a>, ExecError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).map_err(|e| ExecError::io(dir.display(), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| ExecError::io(dir.display(), e))?;
    if memory_only {
        memfs::ensure_memory_backed(dir)?;
    }
    let root = nix::unistd::geteuid().is_root();
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let path = match layout {
            Layout::Indexed => dir.join(i.to_string()),
            Layout::ByTarget => {
                let Some(rel) = relative_name(&f.target, base) else {
                    return Err(ExecError::InvalidSpec(format!(
                        "invalid target {} for {}",
                        f.target, f.name
                    )));
                };
                let path = dir.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| ExecError::io(parent.display(), e))?;
                }
                path
            }
        };
        // Written owner-only first, then given the requested mode: the data is never
        // readable by anyone else in between.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| ExecError::io(path.display(), e))?;
        file.write_all(&f.data)
            .map_err(|e| ExecError::io(path.display(), e))?;
        drop(file);
        if root {
            std::os::unix::fs::chown(&path, Some(f.uid), Some(f.gid))
                .map_err(|e| ExecError::io(path.display(), e))?;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode & 0o7777))
            .map_err(|e| ExecError::io(path.display(), e))?;
        out.push((path, f));
    }
    Ok(out)
}

/// Removes a task's files; idempotent. Called whenever the task is known to have ended.
pub fn remove(task_id: &str) {
    if task_id.is_empty() {
        return;
    }
    let dir = task_dir(task_id);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => tracing::debug!(task.id = %task_id, "task files removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(task.id = %task_id, error = %e, "cannot remove task files"),
    }
}

/// After a step that ends the task (shutdown, terminate, remove): its files go once the
/// step succeeded. Passes the step's result on.
pub fn remove_after<T>(task_id: &str, res: Result<T, ExecError>) -> Result<T, ExecError> {
    if res.is_ok() {
        remove(task_id);
    }
    res
}

/// After `wait`: the task has ended however it ended (its files go at once, not when the
/// task is removed with the history), unless it never started or the runtime could not
/// be asked. Passes the result on.
pub fn remove_after_wait<T>(task_id: &str, res: Result<T, ExecError>) -> Result<T, ExecError> {
    if !matches!(
        res,
        Err(ExecError::NotStarted(_) | ExecError::Unavailable(_))
    ) {
        remove(task_id);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::{
        TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1,
        TaskSpecContainerSpecSecrets,
    };

    fn deps() -> Dependencies {
        let mut d = Dependencies::default();
        d.apply(
            false,
            &Assignment::Secret(Secret {
                id: "s1".into(),
                name: "pw".into(),
                data: b"hunter2".to_vec(),
                ..Default::default()
            }),
        );
        d.apply(
            false,
            &Assignment::Config(Config {
                id: "c1".into(),
                name: "conf".into(),
                data: b"x=1".to_vec(),
                ..Default::default()
            }),
        );
        d
    }

    fn spec(target: Option<&str>) -> TaskSpecContainerSpec {
        TaskSpecContainerSpec {
            secrets: Some(vec![TaskSpecContainerSpecSecrets {
                secret_id: Some("s1".into()),
                secret_name: Some("pw".into()),
                file: Some(TaskSpecContainerSpecFile {
                    name: target.map(String::from),
                    uid: Some("1000".into()),
                    gid: Some("0".into()),
                    mode: Some(0o400),
                }),
            }]),
            configs: Some(vec![TaskSpecContainerSpecConfigs {
                config_id: Some("c1".into()),
                config_name: Some("conf".into()),
                file: Some(TaskSpecContainerSpecFile1 {
                    name: Some("etc/app.conf".into()),
                    ..Default::default()
                }),
                runtime: None,
            }]),
            ..Default::default()
        }
    }

    fn no_templates() -> TemplateContext {
        TemplateContext::new(&swarmd_types::Task::default(), None)
    }

    #[test]
    fn templated_files_are_expanded_and_bad_ones_fail_the_task() {
        let mut d = deps();
        d.apply(
            false,
            &Assignment::Config(Config {
                id: "c1".into(),
                name: "conf".into(),
                data: b"svc={{.Service.Name}} pw={{secret \"db_pw\"}} mode={{env \"MODE\"}}"
                    .to_vec(),
                templating: Some("golang".into()),
                ..Default::default()
            }),
        );
        let task = swarmd_types::Task {
            service_name: "web".into(),
            ..Default::default()
        };
        let ctx = TemplateContext::new(&task, None);
        let mut sp = spec(Some("db_pw"));
        sp.env = Some(vec!["MODE=blue".into()]);
        let f = d.resolve(&sp, &ctx);
        assert_eq!(f.error, None);
        assert_eq!(f.configs[0].data, b"svc=web pw=hunter2 mode=blue".to_vec());
        // The secret itself is not templated: its data stays as delivered.
        assert_eq!(f.secrets[0].data, b"hunter2".to_vec());

        // A reference to a file the task does not have: the task cannot be prepared.
        let f = d.resolve(&spec(Some("other_target")), &ctx);
        let err = f.error.clone().expect("expansion fails");
        assert!(
            err.contains("templated config conf") && err.contains("secret target db_pw not found"),
            "{err}"
        );
        assert!(matches!(
            write("t-templ", &f, Layout::Indexed),
            Err(ExecError::InvalidSpec(_))
        ));
    }

    #[test]
    fn resolves_targets_like_docker() {
        let f = deps().resolve(&spec(Some("db_pw")), &no_templates());
        assert_eq!(f.secrets[0].target, "/run/secrets/db_pw");
        assert_eq!((f.secrets[0].uid, f.secrets[0].mode), (1000, 0o400));
        assert_eq!(f.configs[0].target, "/etc/app.conf");
        assert_eq!(f.configs[0].mode, 0o444);
        assert!(f.missing.is_empty());
        let f = deps().resolve(&spec(Some("/abs/pw")), &no_templates());
        assert_eq!(f.secrets[0].target, "/abs/pw");
        let f = deps().resolve(&spec(None), &no_templates());
        assert_eq!(f.secrets[0].target, "/run/secrets/pw");
    }

    #[test]
    fn missing_and_withdrawn_objects_are_reported() {
        let mut d = deps();
        d.apply(
            true,
            &Assignment::Secret(Secret {
                id: "s1".into(),
                ..Default::default()
            }),
        );
        assert!(!d.has_secret("s1"));
        let f = d.resolve(&spec(None), &no_templates());
        assert_eq!(f.missing, vec!["secret pw".to_string()]);
    }

    #[test]
    fn by_target_names_stay_inside() {
        assert_eq!(
            relative_name("/run/secrets/pw", SECRETS_MOUNT),
            Some(PathBuf::from("pw"))
        );
        assert_eq!(
            relative_name("/etc/app.conf", "/"),
            Some(PathBuf::from("etc/app.conf"))
        );
        assert_eq!(relative_name("/run/secrets/../../x", SECRETS_MOUNT), None);
        assert_eq!(relative_name("/", "/"), None);
    }

    #[test]
    fn secrets_are_written_only_to_a_memory_backed_directory() {
        let files = [TaskFile {
            name: "db_pw".into(),
            target: "/run/secrets/db_pw".into(),
            uid: 0,
            gid: 0,
            mode: 0o400,
            data: b"hunter2".to_vec(),
        }];
        let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        assert!(
            !memfs::is_memory_backed(memfs::fs_type(disk.path()).unwrap()),
            "the test needs the source tree on a disk filesystem"
        );
        let sdir = disk.path().join("secrets");
        let err = write_set(&sdir, &files, Layout::Indexed, SECRETS_MOUNT, true).unwrap_err();
        assert!(
            matches!(err, ExecError::SecretsNotInMemory { .. }),
            "{err:?}"
        );
        assert_eq!(
            std::fs::read_dir(&sdir).unwrap().count(),
            0,
            "nothing written"
        );
        // Configs are not secret: they may live anywhere.
        let cdir = disk.path().join("configs");
        assert_eq!(
            write_set(&cdir, &files, Layout::Indexed, "/", false)
                .unwrap()
                .len(),
            1
        );

        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let written = write_set(
            &shm.path().join("secrets"),
            &files,
            Layout::Indexed,
            SECRETS_MOUNT,
            true,
        )
        .unwrap();
        assert_eq!(std::fs::read(&written[0].0).unwrap(), b"hunter2");
    }

    #[test]
    fn debug_never_shows_data() {
        let f = deps().resolve(&spec(None), &no_templates());
        let s = format!("{f:?}");
        // b"hunter2" as `Vec<u8>`'s Debug would print it.
        assert!(
            s.contains("data_len") && !s.contains("104, 117, 110"),
            "{s}"
        );
        let secret = Secret {
            data: b"hunter2".to_vec(),
            ..Default::default()
        };
        assert!(!format!("{secret:?}").contains("104, 117, 110"));
    }
}
