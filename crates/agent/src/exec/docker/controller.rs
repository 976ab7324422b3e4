//! The controller of one task run as a container: the container's create body from the
//! spec, and the executor steps against the engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    LogsOptions as EngineLogsOptions, RemoveContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use bollard_stubs::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum,
    HostConfig, HostConfigIsolationEnum, Mount, MountType, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum, TaskSpecContainerSpec,
};
use bytes::Bytes;
use futures::StreamExt;

use crate::health::Health;

use super::engine_error::{map_err, status_code};
use super::events::EngineEvents;
use super::{REQUEST_TIMEOUT_SECS, overlay};
use crate::exec::{
    BoundPort, Controller, ExecError, ExitStatus, LABEL_TASK_ID, LogEntry, LogOptions, LogStream,
    LogStreamBox, Protocol, RuntimeStatus, TaskRuntime, entry_matches, files, host_opts,
    unix_seconds,
};

/// The controller of one task run as a container.
pub struct DockerController {
    docker: Docker,
    events: Arc<EngineEvents>,
    rt: TaskRuntime,
    /// The container ID once found or created.
    id: Mutex<Option<String>>,
}

impl DockerController {
    pub(super) fn new(docker: Docker, events: Arc<EngineEvents>, rt: TaskRuntime) -> Self {
        DockerController {
            docker,
            events,
            rt,
            id: Mutex::new(None),
        }
    }

    fn cached(&self) -> Option<String> {
        self.id.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_cached(&self, id: Option<String>) {
        *self.id.lock().unwrap_or_else(|e| e.into_inner()) = id;
    }

    /// The task's container ID, found by its task ID label (cached).
    async fn find(&self) -> Result<Option<String>, ExecError> {
        if let Some(id) = self.cached() {
            return Ok(Some(id));
        }
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_TASK_ID}={}", self.rt.task_id)],
        )]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(map_err)?;
        let id = list.into_iter().find_map(|c| c.id);
        if id.is_some() {
            self.set_cached(id.clone());
        }
        Ok(id)
    }

    async fn inspect(&self) -> Result<Option<ContainerInspectResponse>, ExecError> {
        let Some(id) = self.find().await? else {
            return Ok(None);
        };
        match self.docker.inspect_container(&id, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if status_code(&e) == Some(404) => {
                self.set_cached(None);
                Ok(None)
            }
            Err(e) => Err(map_err(e)),
        }
    }

    /// Makes sure the image is local: use it if present, else try a pull; a failed pull of
    /// an image that is still not local is "No such image".
    async fn ensure_image(&self, image: &str) -> Result<(), ExecError> {
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let (repo, tag) = split_tag(image);
        let mut pull = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(repo.to_string()),
                tag: Some(tag.to_string()),
                ..Default::default()
            }),
            None,
            None,
        );
        let mut pull_err = None;
        while let Some(item) = pull.next().await {
            if let Err(e) = item {
                pull_err = Some(e);
                break;
            }
        }
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => {
                if let Some(pe) = pull_err {
                    tracing::info!(image, error = %pe, "image pull failed");
                }
                Err(ExecError::NoSuchImage(image.to_string()))
            }
            Err(e) => Err(map_err(e)),
        }
    }

    /// Read-only bind mounts of the task's secret and config files (written on the node's
    /// tmpfs by [`files::write`]) at their targets, as Docker mounts them.
    fn file_mounts(written: &[(std::path::PathBuf, &files::TaskFile)]) -> Vec<Mount> {
        written
            .iter()
            .map(|(host, f)| Mount {
                target: Some(f.target.clone()),
                source: Some(host.to_string_lossy().into_owned()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            })
            .collect()
    }

    /// The engine's create body for the task, as Docker's swarm executor builds it.
    ///
    /// The container spec is taken apart field by field with no `..`: a field added to
    /// the model does not compile until it is mapped here or its handling elsewhere is
    /// named, so none can be dropped silently (docs/COMPATIBILITY.md lists each).
    fn create_body(
        &self,
        image: &str,
        extra_mounts: Vec<Mount>,
    ) -> Result<ContainerCreateBody, ExecError> {
        let TaskSpecContainerSpec {
            // The image as given, less any digest: `image` (see `TaskRuntime::image`).
            image: _,
            // Merged with the swarm labels by `TaskRuntime::labels`.
            labels: _,
            command,
            args,
            hostname,
            env,
            dir,
            user,
            groups,
            privileges,
            tty,
            open_stdin,
            read_only,
            mounts,
            stop_signal,
            // `TaskRuntime::stop_grace`, as the stop timeout.
            stop_grace_period: _,
            health_check,
            hosts,
            dns_config,
            // Written as files and bind-mounted: `extra_mounts` (see `files::write`).
            secrets: _,
            oom_score_adj,
            configs: _,
            isolation,
            init,
            sysctls,
            capability_add,
            capability_drop,
            ulimits,
        } = &self.rt.spec;
        let mut mounts = mounts.clone().unwrap_or_default();
        mounts.extend(extra_mounts);
        let non_empty = |v: &Option<Vec<String>>| v.clone().filter(|v| !v.is_empty());
        let limits = self.rt.resources.as_ref().and_then(|r| r.limits.clone());
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = self
            .rt
            .ports
            .iter()
            .map(|p| {
                (
                    port_key(p.target, p.protocol),
                    Some(vec![PortBinding {
                        host_ip: Some(self.rt.node_addr.clone()),
                        host_port: Some(
                            p.fixed_host_port.map(|h| h.to_string()).unwrap_or_default(),
                        ),
                    }]),
                )
            })
            .collect();
        let exposed: Vec<String> = self
            .rt
            .ports
            .iter()
            .map(|p| port_key(p.target, p.protocol))
            .collect();
        let dns = dns_config.as_ref();
        // On overlay networks the node's DNS server (at the gateway) resolves service names,
        // unless the service names its own servers.
        let overlay_dns = self.rt.networks.first().map(|a| vec![a.gateway.clone()]);
        let security_opt = host_opts::security_opts(privileges.as_ref())?;
        let host_config = HostConfig {
            nano_cpus: limits.as_ref().and_then(|l| l.nano_cpus).filter(|n| *n > 0),
            memory: limits
                .as_ref()
                .and_then(|l| l.memory_bytes)
                .filter(|n| *n > 0),
            pids_limit: limits.as_ref().and_then(|l| l.pids).filter(|n| *n > 0),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            mounts: (!mounts.is_empty()).then_some(mounts),
            init: *init,
            readonly_rootfs: *read_only,
            cap_add: non_empty(capability_add),
            cap_drop: non_empty(capability_drop),
            sysctls: sysctls.clone().filter(|s| !s.is_empty()),
            oom_score_adj: *oom_score_adj,
            ulimits: ulimits.clone().filter(|u| !u.is_empty()),
            group_add: non_empty(groups),
            extra_hosts: hosts.as_ref().map(|h| extra_hosts(h)),
            dns: dns.and_then(|d| non_empty(&d.nameservers)).or(overlay_dns),
            network_mode: self.rt.networks.first().map(overlay::engine_network_name),
            dns_search: dns.and_then(|d| non_empty(&d.search)),
            dns_options: dns.and_then(|d| non_empty(&d.options)),
            security_opt: (!security_opt.is_empty()).then_some(security_opt),
            log_config: host_opts::log_config(self.rt.log_driver.as_ref()),
            // The engine refuses what its platform cannot do, as under Docker.
            isolation: isolation
                .as_ref()
                .and_then(|i| i.as_ref().parse::<HostConfigIsolationEnum>().ok())
                .filter(|i| *i != HostConfigIsolationEnum::EMPTY),
            // Restarts are the orchestrator's business, never the engine's.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        Ok(ContainerCreateBody {
            image: Some(image.to_string()),
            // Docker semantics: Command replaces the image's ENTRYPOINT, Args is CMD.
            entrypoint: non_empty(command),
            cmd: non_empty(args),
            env: non_empty(env),
            working_dir: dir.clone().filter(|d| !d.is_empty()),
            user: user.clone().filter(|u| !u.is_empty()),
            hostname: hostname.clone().filter(|h| !h.is_empty()),
            labels: Some(self.rt.labels()),
            stop_signal: stop_signal.clone().filter(|s| !s.is_empty()),
            stop_timeout: Some(self.rt.stop_grace().as_secs() as i64),
            tty: *tty,
            open_stdin: *open_stdin,
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            healthcheck: health_check.clone(),
            host_config: Some(host_config),
            networking_config: self.rt.networks.first().map(|a| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    overlay::engine_network_name(a),
                    overlay::endpoint_settings(a),
                )])),
            }),
            ..Default::default()
        })
    }

    /// The container of this task if it exists and belongs to this task on this node.
    async fn adopt_by_name(&self) -> Result<Option<String>, ExecError> {
        match self
            .docker
            .inspect_container(&self.rt.container_name, None)
            .await
        {
            Ok(c) => {
                let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
                if labels.get(LABEL_TASK_ID) == Some(&self.rt.task_id) {
                    Ok(c.id)
                } else {
                    Err(ExecError::Engine(format!(
                        "container name {} is in use by another container",
                        self.rt.container_name
                    )))
                }
            }
            Err(e) if status_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }
}

/// `80/tcp`, the key Docker uses for ports.
fn port_key(target: u16, proto: Protocol) -> String {
    format!("{target}/{}", proto.as_str())
}

/// Splits `repo[:tag]` (a registry port is not a tag); no tag means `latest`.
fn split_tag(image: &str) -> (&str, &str) {
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

/// Swarm's `Hosts` entries are `IP name [aliases...]`; the engine wants `name:IP`.
fn extra_hosts(hosts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for h in hosts {
        let mut parts = h.split_whitespace();
        let Some(ip) = parts.next() else { continue };
        for name in parts {
            out.push(format!("{name}:{ip}"));
        }
    }
    out
}

/// Parses a `PortMap` into bound ports.
fn bound_ports(ins: &ContainerInspectResponse) -> Vec<BoundPort> {
    let Some(ports) = ins.network_settings.as_ref().and_then(|n| n.ports.as_ref()) else {
        return Vec::new();
    };
    let mut out: Vec<BoundPort> = ports
        .iter()
        .filter_map(|(key, bindings)| {
            let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let target: u16 = port.parse().ok()?;
            let protocol = Protocol::parse(proto)?;
            let b = bindings.as_ref()?.iter().find_map(|b| {
                let hp: u16 = b.host_port.as_deref()?.parse().ok()?;
                Some((b.host_ip.clone().unwrap_or_default(), hp))
            })?;
            Some(BoundPort {
                target,
                protocol,
                host_ip: b.0,
                host_port: b.1,
            })
        })
        .collect();
    out.sort_by_key(|b| (b.target, b.protocol));
    out
}

fn is_running(ins: &ContainerInspectResponse) -> bool {
    ins.state
        .as_ref()
        .is_some_and(|s| s.running.unwrap_or(false) || s.restarting.unwrap_or(false))
}

fn state_status(ins: &ContainerInspectResponse) -> Option<ContainerStateStatusEnum> {
    ins.state.as_ref().and_then(|s| s.status)
}

/// The container's health, if it has a health check (its own or the image's: the engine
/// merges them at create).
fn health_of(ins: &ContainerInspectResponse) -> Option<Health> {
    match ins.state.as_ref()?.health.as_ref()?.status? {
        HealthStatusEnum::STARTING => Some(Health::Starting),
        HealthStatusEnum::HEALTHY => Some(Health::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
        _ => None,
    }
}

impl DockerController {
    /// Waits until the container is healthy (`Ok(true)`), unhealthy (`Ok(false)`), has no
    /// health check or stopped running (`Ok(true)`: `wait` reports how it ended). Woken by
    /// the engine's `health_status` and `die` events.
    async fn until_healthy(&self) -> Result<bool, ExecError> {
        let Some(id) = self.find().await? else {
            return Ok(true);
        };
        let mut watch = self.events.watch(&id);
        loop {
            let Some(ins) = self.inspect().await? else {
                return Ok(true);
            };
            if !is_running(&ins) {
                return Ok(true);
            }
            match health_of(&ins) {
                None | Some(Health::Healthy) => return Ok(true),
                Some(Health::Unhealthy) => return Ok(false),
                Some(Health::Starting) => {}
            }
            watch.changed().await?;
        }
    }
}

impl DockerController {
    /// Starts the container unless it runs or ran already.
    async fn start_container(&self) -> Result<(), ExecError> {
        let Some(ins) = self.inspect().await? else {
            return Err(ExecError::NotFound(self.rt.task_id.clone()));
        };
        if is_running(&ins) || state_status(&ins) == Some(ContainerStateStatusEnum::EXITED) {
            return Ok(());
        }
        let id = ins.id.unwrap_or_default();
        // Networks after the first join before the start (idempotent, so a retried start
        // after a failed connect finishes the job).
        if let Some(rest) = self.rt.networks.get(1..) {
            overlay::connect_rest(&self.docker, &id, rest).await?;
        }
        match self
            .docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status_code(&e) == Some(304) => Ok(()),
            Err(e) => Err(match map_err(e) {
                ExecError::Engine(m) => {
                    ExecError::Engine(format!("starting container failed: {m}"))
                }
                other => other,
            }),
        }
    }
}

/// The engine calls behind the controller steps; the steps add the file cleanup.
impl DockerController {
    /// Waits for the container to stop running; its exit code. A container that turns
    /// unhealthy meanwhile is stopped (`UnhealthyExit`). Woken by the executor's event
    /// stream, it re-inspects the container each time (level-triggered).
    async fn wait_exit(&self) -> Result<ExitStatus, ExecError> {
        let Some(id) = self.find().await? else {
            return Err(ExecError::NotFound(self.rt.task_id.clone()));
        };
        // Subscribed before the first look, so an exit right after it still wakes us.
        let mut watch = self.events.watch(&id);
        let mut unhealthy = false;
        loop {
            let ins = match self.docker.inspect_container(&id, None).await {
                Ok(ins) => ins,
                Err(e) if status_code(&e) == Some(404) => {
                    self.set_cached(None);
                    // Removed right after it died: the die event has the code.
                    return match (watch.exit_code(), unhealthy) {
                        (Some(code), false) => Ok(ExitStatus { code }),
                        (code, true) => Err(ExecError::UnhealthyExit(code.unwrap_or(137))),
                        (None, false) => Err(ExecError::NotFound(self.rt.task_id.clone())),
                    };
                }
                Err(e) => return Err(map_err(e)),
            };
            if state_status(&ins) == Some(ContainerStateStatusEnum::CREATED) && !unhealthy {
                return Err(ExecError::NotStarted(self.rt.task_id.clone()));
            }
            if !is_running(&ins) {
                let code = ins.state.and_then(|s| s.exit_code).unwrap_or(0);
                return if unhealthy {
                    Err(ExecError::UnhealthyExit(code))
                } else {
                    Ok(ExitStatus { code })
                };
            }
            if !unhealthy && health_of(&ins) == Some(Health::Unhealthy) {
                tracing::info!(task.id = %self.rt.task_id, "container turned unhealthy; stopping it");
                unhealthy = true;
                self.shutdown(self.rt.stop_grace()).await?;
                continue;
            }
            watch.changed().await?;
        }
    }

    async fn stop(&self, grace: Duration) -> Result<(), ExecError> {
        let Some(ins) = self.inspect().await? else {
            return Ok(());
        };
        if !is_running(&ins) {
            return Ok(());
        }
        let id = ins.id.unwrap_or_default();
        // The stop signal is part of the container config; `t` is the grace in seconds.
        let secs = grace.as_secs().min(i32::MAX as u64) as i32;
        let docker = self
            .docker
            .clone()
            .with_timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS) + grace);
        match docker
            .stop_container(
                &id,
                Some(StopContainerOptions {
                    t: Some(secs),
                    signal: None,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_code(&e), Some(304) | Some(404)) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn kill(&self) -> Result<(), ExecError> {
        let Some(id) = self.find().await? else {
            return Ok(());
        };
        match self
            .docker
            .kill_container(
                &id,
                Some(KillContainerOptions {
                    signal: "SIGKILL".into(),
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            // 409: not running.
            Err(e) if matches!(status_code(&e), Some(404) | Some(409)) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn remove_container(&self) -> Result<(), ExecError> {
        let Some(id) = self.find().await? else {
            return Ok(());
        };
        match self
            .docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => {
                tracing::info!(task.id = %self.rt.task_id, container.id = %id, "container removed");
                self.set_cached(None);
                Ok(())
            }
            Err(e) if status_code(&e) == Some(404) => {
                self.set_cached(None);
                Ok(())
            }
            // "removal already in progress"
            Err(e) if status_code(&e) == Some(409) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }
}

#[async_trait::async_trait]
impl Controller for DockerController {
    async fn prepare(&self) -> Result<(), ExecError> {
        if self.find().await?.is_some() {
            return Ok(()); // adopt
        }
        let image = self.rt.image();
        if image.is_empty() {
            return Err(ExecError::InvalidSpec("no image given".into()));
        }
        self.ensure_image(&image).await?;
        for a in &self.rt.networks {
            overlay::ensure_network(&self.docker, a).await?;
        }
        let (secrets, configs) =
            files::write(&self.rt.task_id, &self.rt.files, files::Layout::Indexed)?;
        let mut mounts = Self::file_mounts(&secrets);
        mounts.extend(Self::file_mounts(&configs));
        let body = self.create_body(&image, mounts)?;
        let res = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(self.rt.container_name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await;
        match res {
            Ok(r) => {
                tracing::info!(task.id = %self.rt.task_id, container.id = %r.id, "container created");
                self.set_cached(Some(r.id));
                Ok(())
            }
            // Lost a race with ourselves (a create that timed out but went through).
            Err(e) if status_code(&e) == Some(409) => match self.adopt_by_name().await? {
                Some(id) => {
                    self.set_cached(Some(id));
                    Ok(())
                }
                None => Err(map_err(e)),
            },
            Err(e) if status_code(&e) == Some(404) => Err(ExecError::NoSuchImage(image)),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn start(&self) -> Result<(), ExecError> {
        self.start_container().await?;
        // As swarmkit's controller: with a health check, started means healthy.
        if !self.until_healthy().await? {
            tracing::info!(task.id = %self.rt.task_id, "container unhealthy before it was ever healthy");
            self.shutdown(self.rt.stop_grace()).await?;
            return Err(ExecError::Unhealthy);
        }
        Ok(())
    }

    async fn wait(&self) -> Result<ExitStatus, ExecError> {
        files::remove_after_wait(&self.rt.task_id, self.wait_exit().await)
    }

    async fn shutdown(&self, grace: Duration) -> Result<(), ExecError> {
        files::remove_after(&self.rt.task_id, self.stop(grace).await)
    }

    async fn terminate(&self) -> Result<(), ExecError> {
        files::remove_after(&self.rt.task_id, self.kill().await)
    }

    async fn remove(&self) -> Result<(), ExecError> {
        files::remove_after(&self.rt.task_id, self.remove_container().await)
    }

    async fn status(&self) -> Result<RuntimeStatus, ExecError> {
        let Some(ins) = self.inspect().await? else {
            return Ok(RuntimeStatus::default());
        };
        let running = is_running(&ins);
        let exited = matches!(
            state_status(&ins),
            Some(ContainerStateStatusEnum::EXITED) | Some(ContainerStateStatusEnum::DEAD)
        );
        let state = ins.state.clone().unwrap_or_default();
        Ok(RuntimeStatus {
            exists: true,
            running,
            exit_code: if exited { state.exit_code } else { None },
            pid: state.pid.filter(|p| *p > 0),
            container_id: ins.id.clone(),
            ports: bound_ports(&ins),
        })
    }

    async fn logs(&self, opts: LogOptions) -> Result<LogStreamBox, ExecError> {
        let Some(id) = self.find().await? else {
            return Err(ExecError::NotFound(self.rt.task_id.clone()));
        };
        let since = opts.since.map(unix_seconds);
        let engine_opts = EngineLogsOptions {
            follow: opts.follow,
            stdout: opts.stdout,
            stderr: opts.stderr,
            // Whole seconds for the engine; the exact cut is made below.
            since: since.map(|s| s.floor().max(0.0) as i32).unwrap_or(0),
            until: 0,
            // Always ask for timestamps: entries carry them, the API layer decides to show.
            timestamps: true,
            tail: opts
                .tail
                .map(|n| n.to_string())
                .unwrap_or_else(|| "all".into()),
        };
        let stream = self
            .docker
            .logs(&id, Some(engine_opts))
            .filter_map(move |item| {
                let opts = opts.clone();
                async move {
                    match item {
                        Ok(out) => {
                            let (stream, msg) = match out {
                                bollard::container::LogOutput::StdErr { message } => {
                                    (LogStream::Stderr, message)
                                }
                                bollard::container::LogOutput::StdOut { message }
                                | bollard::container::LogOutput::Console { message } => {
                                    (LogStream::Stdout, message)
                                }
                                bollard::container::LogOutput::StdIn { .. } => return None,
                            };
                            let entry = split_timestamp(stream, msg);
                            entry_matches(&entry, &opts, since).then_some(Ok(entry))
                        }
                        Err(e) => Some(Err(map_err(e))),
                    }
                }
            });
        Ok(stream.boxed())
    }
}

/// Splits the engine's `<RFC3339Nano> <line>` framing.
fn split_timestamp(stream: LogStream, msg: Bytes) -> LogEntry {
    if let Some(sp) = msg.iter().position(|b| *b == b' ')
        && let Ok(ts) = std::str::from_utf8(&msg[..sp])
        && swarmd_types::timefmt::parse(ts).is_some()
    {
        return LogEntry {
            stream,
            timestamp: ts.to_string(),
            line: msg.slice(sp + 1..),
        };
    }
    LogEntry {
        stream,
        timestamp: swarmd_types::timefmt::now(),
        line: msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::{
        ContainerState, Limit, NetworkSettings, TaskSpecContainerSpec, TaskSpecResources,
    };

    #[test]
    fn tags_and_hosts() {
        assert_eq!(split_tag("busybox"), ("busybox", "latest"));
        assert_eq!(split_tag("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            split_tag("localhost:5000/x/y"),
            ("localhost:5000/x/y", "latest")
        );
        assert_eq!(split_tag("localhost:5000/y:v1"), ("localhost:5000/y", "v1"));
        assert_eq!(
            extra_hosts(&["10.0.0.1 db db.local".into(), "".into()]),
            vec!["db:10.0.0.1", "db.local:10.0.0.1"]
        );
    }

    #[test]
    fn timestamps_are_split() {
        let e = split_timestamp(
            LogStream::Stdout,
            Bytes::from_static(b"2024-05-01T10:00:00.123456789Z hello world\n"),
        );
        assert_eq!(e.timestamp, "2024-05-01T10:00:00.123456789Z");
        assert_eq!(e.line, Bytes::from_static(b"hello world\n"));
        let e = split_timestamp(LogStream::Stderr, Bytes::from_static(b"no-ts here\n"));
        assert_eq!(e.line, Bytes::from_static(b"no-ts here\n"));
    }

    #[test]
    fn create_body_follows_docker_semantics() {
        let mut rt = TaskRuntime::for_existing("t1", "127.0.0.2");
        rt.spec = TaskSpecContainerSpec {
            image: Some("busybox:latest@sha256:00".into()),
            command: Some(vec!["httpd".into()]),
            args: Some(vec!["-f".into(), "-p".into(), "80".into()]),
            env: Some(vec!["A=1".into()]),
            stop_signal: Some("SIGINT".into()),
            stop_grace_period: Some(3_000_000_000),
            privileges: Some(
                serde_json::from_value(serde_json::json!({
                    "NoNewPrivileges": true, "SELinuxContext": {"Type": "spc_t"}
                }))
                .unwrap(),
            ),
            ..Default::default()
        };
        rt.log_driver = Some(bollard_stubs::models::TaskSpecLogDriver {
            name: Some("local".into()),
            options: Some(HashMap::from([("max-size".into(), "1m".into())])),
        });
        rt.resources = Some(TaskSpecResources {
            limits: Some(Limit {
                nano_cpus: Some(500_000_000),
                memory_bytes: Some(64 << 20),
                pids: None,
            }),
            ..Default::default()
        });
        rt.ports = vec![crate::exec::TargetPort {
            target: 80,
            protocol: Protocol::Tcp,
            name: None,
            fixed_host_port: None,
        }];
        let docker =
            Docker::connect_with_http("http://127.0.0.1:1", 1, bollard::API_DEFAULT_VERSION)
                .expect("client");
        let c = DockerController {
            events: EngineEvents::new(docker.clone(), "n1".into()),
            docker,
            rt: rt.clone(),
            id: Mutex::new(None),
        };
        let body = c.create_body(&rt.image(), vec![]).unwrap();
        assert_eq!(body.image.as_deref(), Some("busybox:latest"));
        assert_eq!(body.entrypoint, Some(vec!["httpd".to_string()]));
        assert_eq!(body.cmd.as_ref().map(Vec::len), Some(3));
        assert_eq!(body.stop_timeout, Some(3));
        assert_eq!(body.stop_signal.as_deref(), Some("SIGINT"));
        let hc = body.host_config.unwrap();
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.memory, Some(64 << 20));
        // TaskTemplate.LogDriver and ContainerSpec.Privileges, as Docker's executor maps them.
        let lc = hc.log_config.clone().unwrap();
        assert_eq!(lc.typ.as_deref(), Some("local"));
        assert_eq!(lc.config.unwrap()["max-size"], "1m");
        assert_eq!(
            hc.security_opt.clone().unwrap(),
            ["label=type:spc_t", "no-new-privileges=true"]
        );
        let pb = hc.port_bindings.unwrap();
        let b = pb["80/tcp"].as_ref().unwrap();
        assert_eq!(b[0].host_ip.as_deref(), Some("127.0.0.2"));
        assert_eq!(b[0].host_port.as_deref(), Some(""));
        assert_eq!(body.labels.unwrap()[LABEL_TASK_ID], "t1");
    }

    #[test]
    fn parses_bound_ports() {
        let ins = ContainerInspectResponse {
            state: Some(ContainerState {
                running: Some(true),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                ports: Some(HashMap::from([
                    (
                        "80/tcp".to_string(),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.2".into()),
                            host_port: Some("49153".into()),
                        }]),
                    ),
                    ("81/tcp".to_string(), None),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(is_running(&ins));
        assert_eq!(
            bound_ports(&ins),
            vec![BoundPort {
                target: 80,
                protocol: Protocol::Tcp,
                host_ip: "127.0.0.2".into(),
                host_port: 49153
            }]
        );
    }
}
