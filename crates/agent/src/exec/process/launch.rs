//! How a task is launched: its argv, environment, directory, user, stop signal and host
//! ports, derived from the spec.

use std::path::PathBuf;
use std::str::FromStr;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Group, Uid, User};

use super::DEFAULT_PATH;
use crate::exec::{BoundPort, ExecError, Protocol, TaskRuntime, files};

/// How to launch the task, derived from the spec at prepare/start time.
pub(super) struct LaunchPlan {
    pub(super) argv: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) dir: Option<PathBuf>,
    pub(super) user: Option<(Uid, Gid)>,
}

pub(super) fn task_argv(rt: &TaskRuntime) -> Result<Vec<String>, ExecError> {
    let argv: Vec<String> = rt
        .spec
        .command
        .iter()
        .flatten()
        .chain(rt.spec.args.iter().flatten())
        .cloned()
        .collect();
    if argv.is_empty() {
        return Err(ExecError::NoCommand);
    }
    Ok(argv)
}

/// Resolves `user`, `uid`, `user:group` or `uid:gid` (Docker's `--user` forms).
pub(super) fn resolve_user(spec: &str) -> Result<Option<(Uid, Gid)>, ExecError> {
    if spec.is_empty() {
        return Ok(None);
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, primary_gid) = if let Ok(n) = u.parse::<u32>() {
        let uid = Uid::from_raw(n);
        let gid = User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.gid)
            .unwrap_or(Gid::from_raw(0));
        (uid, gid)
    } else {
        match User::from_name(u) {
            Ok(Some(user)) => (user.uid, user.gid),
            _ => {
                return Err(ExecError::InvalidSpec(format!(
                    "unable to find user {u}: no matching entries in passwd file"
                )));
            }
        }
    };
    let gid = match g {
        None | Some("") => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => match Group::from_name(g) {
                Ok(Some(group)) => group.gid,
                _ => {
                    return Err(ExecError::InvalidSpec(format!(
                        "unable to find group {g}: no matching entries in group file"
                    )));
                }
            },
        },
    };
    Ok(Some((uid, gid)))
}

/// Parses a stop signal as Docker accepts it: `SIGTERM`, `TERM`, `15`.
pub(super) fn parse_signal(s: Option<&str>) -> Result<Signal, ExecError> {
    let s = s.map(str::trim).unwrap_or_default();
    if s.is_empty() {
        return Ok(Signal::SIGTERM);
    }
    let bad = || ExecError::InvalidSpec(format!("invalid stop signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| bad())
}

pub(super) fn check_dir(rt: &TaskRuntime) -> Result<Option<PathBuf>, ExecError> {
    match rt.spec.dir.as_deref() {
        None | Some("") => Ok(None),
        Some(d) => {
            let p = PathBuf::from(d);
            if p.is_dir() {
                Ok(Some(p))
            } else {
                Err(ExecError::InvalidSpec(format!(
                    "working directory {d} does not exist"
                )))
            }
        }
    }
}

impl LaunchPlan {
    /// Checks the spec against this host (directory, user) and writes the task's secret
    /// and config files; the environment itself is [`task_env`].
    pub(super) fn build(rt: &TaskRuntime, ports: &[BoundPort]) -> Result<Self, ExecError> {
        let argv = task_argv(rt)?;
        let dir = check_dir(rt)?;
        let user = resolve_user(rt.spec.user.as_deref().unwrap_or_default())?;
        let mut host = HostEnv {
            path: std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into()),
            home: std::env::var("HOME").unwrap_or_else(|_| "/".into()),
            secrets_dir: None,
            configs_dir: None,
        };
        if !rt.files.is_empty() {
            let (secrets, configs) = files::write(&rt.task_id, &rt.files, files::Layout::ByTarget)?;
            let (sdir, cdir) = files::dirs(&rt.task_id);
            host.secrets_dir = (!secrets.is_empty()).then_some(sdir);
            host.configs_dir = (!configs.is_empty()).then_some(cdir);
        }
        Ok(LaunchPlan {
            argv,
            env: task_env(rt, ports, &host),
            dir,
            user,
        })
    }
}

/// What the task's environment takes from the agent's host rather than from the spec.
pub(super) struct HostEnv {
    pub(super) path: String,
    pub(super) home: String,
    /// Set when the task has secrets (configs) written under this directory.
    pub(super) secrets_dir: Option<PathBuf>,
    pub(super) configs_dir: Option<PathBuf>,
}

/// The task's environment. A clean one, as a container gets: PATH and HOME from the
/// agent, then the spec's variables, then what swarmd provides (ports, files, identity);
/// a later entry of a name overrides an earlier one in its place.
pub(super) fn task_env(
    rt: &TaskRuntime,
    ports: &[BoundPort],
    host: &HostEnv,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), host.path.clone()),
        ("HOME".into(), host.home.clone()),
    ];
    if let Some(h) = rt.spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        env.push(("HOSTNAME".into(), h.into()));
    }
    for kv in rt.spec.env.iter().flatten() {
        if let Some((k, v)) = kv.split_once('=')
            && !k.is_empty()
        {
            env.push((k.into(), v.into()));
        }
    }
    if let Some(first) = ports.first() {
        env.push(("PORT".into(), first.host_port.to_string()));
    }
    for p in ports.iter().rev() {
        // Reverse so the first binding of a target (tcp before udp) wins below.
        env.push((format!("SWARMD_PORT_{}", p.target), p.host_port.to_string()));
    }
    if let Some(d) = &host.secrets_dir {
        env.push(("SWARMD_SECRETS_DIR".into(), d.to_string_lossy().into()));
    }
    if let Some(d) = &host.configs_dir {
        env.push(("SWARMD_CONFIGS_DIR".into(), d.to_string_lossy().into()));
    }
    env.push(("SWARMD_NODE_ADDR".into(), rt.node_addr.clone()));
    env.push(("SWARMD_TASK_ID".into(), rt.task_id.clone()));
    env.push(("SWARMD_TASK_NAME".into(), rt.task_name.clone()));
    env.push(("SWARMD_SERVICE_NAME".into(), rt.service_name.clone()));
    override_later(env)
}

/// Keeps each name once, at its first position, with its last value.
fn override_later(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in env {
        if let Some(e) = out.iter_mut().find(|(k2, _)| *k2 == k) {
            e.1 = v;
        } else {
            out.push((k, v));
        }
    }
    out
}

/// Picks host ports for the task's targets: the fixed one for `mode=host` publications,
/// otherwise an ephemeral port found by binding port 0 on the node address. The probe
/// socket is closed before the task binds the port, so another process could take it in
/// between; the kernel hands out ephemeral ports round-robin, which makes that unlikely.
pub(super) fn allocate_ports(rt: &TaskRuntime) -> Result<Vec<BoundPort>, ExecError> {
    if rt.ports.is_empty() {
        return Ok(Vec::new());
    }
    let ip = rt.node_ip()?;
    let mut out = Vec::new();
    for p in &rt.ports {
        let host_port = match (p.fixed_host_port, p.protocol) {
            (Some(h), _) => h,
            (None, Protocol::Tcp) => std::net::TcpListener::bind((ip, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| ExecError::io(format!("binding a port on {ip}"), e))?
                .port(),
            (None, Protocol::Udp) => std::net::UdpSocket::bind((ip, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| ExecError::io(format!("binding a port on {ip}"), e))?
                .port(),
            (None, Protocol::Sctp) => {
                return Err(ExecError::InvalidSpec(
                    "sctp ports are not supported by the process executor".into(),
                ));
            }
        };
        out.push(BoundPort {
            target: p.target,
            protocol: p.protocol,
            host_ip: rt.node_addr.clone(),
            host_port,
        });
    }
    Ok(out)
}

/// Exit code as a shell reports it: the code, or 128 + signal.
pub(super) fn exit_code(status: std::process::ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => i64::from(c),
        (None, Some(s)) => 128 + i64::from(s),
        (None, None) => 255,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn parses_users_and_signals() {
        assert_eq!(resolve_user("").unwrap(), None);
        assert_eq!(
            resolve_user("1234:5678").unwrap(),
            Some((Uid::from_raw(1234), Gid::from_raw(5678)))
        );
        assert_eq!(
            resolve_user("root").unwrap(),
            Some((Uid::from_raw(0), Gid::from_raw(0)))
        );
        assert!(resolve_user("no-such-user-xyz").is_err());
        assert!(resolve_user("0:no-such-group-xyz").is_err());
        assert_eq!(parse_signal(None).unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal(Some("SIGINT")).unwrap(), Signal::SIGINT);
        assert_eq!(parse_signal(Some("hup")).unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal(Some("9")).unwrap(), Signal::SIGKILL);
        assert!(parse_signal(Some("SIGNOPE")).is_err());
    }

    #[test]
    fn exit_codes_read_as_a_shell_reports_them() {
        use std::os::unix::process::ExitStatusExt;
        // Raw wait statuses: exit code in the high byte, terminating signal in the low.
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), 137);
    }

    fn host() -> HostEnv {
        HostEnv {
            path: "/bin".into(),
            home: "/root".into(),
            secrets_dir: None,
            configs_dir: None,
        }
    }

    fn port(target: u16, protocol: Protocol, host_port: u16) -> BoundPort {
        BoundPort {
            target,
            protocol,
            host_ip: "127.0.0.1".into(),
            host_port,
        }
    }

    fn value<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(k2, _)| k2 == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn env_is_clean_and_spec_overrides_the_host() {
        let mut rt = TaskRuntime::for_existing("t1", "10.0.0.5");
        rt.task_name = "web.1".into();
        rt.service_name = "web".into();
        rt.spec.hostname = Some("box".into());
        rt.spec.env = Some(vec![
            "HOME=/srv".into(),
            "A=1".into(),
            "A=2".into(),
            "=x".into(),
        ]);
        let env = task_env(&rt, &[], &host());
        let names: Vec<_> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "HOME",
                "HOSTNAME",
                "A",
                "SWARMD_NODE_ADDR",
                "SWARMD_TASK_ID",
                "SWARMD_TASK_NAME",
                "SWARMD_SERVICE_NAME"
            ]
        );
        assert_eq!(value(&env, "HOME"), Some("/srv"));
        assert_eq!(value(&env, "A"), Some("2"));
        assert_eq!(value(&env, "HOSTNAME"), Some("box"));
        assert_eq!(value(&env, "SWARMD_NODE_ADDR"), Some("10.0.0.5"));
        assert_eq!(value(&env, "SWARMD_SERVICE_NAME"), Some("web"));
        assert_eq!(value(&env, "PORT"), None);
        assert_eq!(value(&env, "SWARMD_SECRETS_DIR"), None);
    }

    #[test]
    fn env_names_ports_and_file_dirs() {
        let rt = TaskRuntime::for_existing("t1", "127.0.0.1");
        let ports = [
            port(80, Protocol::Tcp, 30001),
            port(80, Protocol::Udp, 30002),
            port(53, Protocol::Udp, 30003),
        ];
        let mut h = host();
        h.secrets_dir = Some("/run/t1/secrets".into());
        let env = task_env(&rt, &ports, &h);
        assert_eq!(value(&env, "PORT"), Some("30001"));
        // The first binding of a target wins (tcp before udp).
        assert_eq!(value(&env, "SWARMD_PORT_80"), Some("30001"));
        assert_eq!(value(&env, "SWARMD_PORT_53"), Some("30003"));
        assert_eq!(value(&env, "SWARMD_SECRETS_DIR"), Some("/run/t1/secrets"));
        assert_eq!(value(&env, "SWARMD_CONFIGS_DIR"), None);
    }
}
