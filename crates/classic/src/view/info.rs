//! `GET /info` of the virtual host (classic's `getInfo` and `Cluster.Info`): pool totals,
//! and in `SystemStatus` the manager's role, strategy, filters and a block per engine,
//! which is what `docker info` against classic Swarm showed.
//!
//! Only the fields a client reads are filled; the rest are Docker's zero values, as
//! classic's Go struct sent them. `Swarm.LocalNodeState` is `inactive` (classic sent an
//! empty state, which makes today's CLI print swarm-mode details of nothing). `OSType` is
//! left empty as classic did: with `linux` the CLI prints init/runc/containerd versions
//! the manager does not have.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::sort::natural_cmp;
use super::units::bytes_size;
use crate::discovery::EngineState;
use crate::scheduler::model::Node;
use crate::scheduler::select::Scheduler;

/// What the manager knows of one engine of the pool, for `docker info`.
#[derive(Debug, Clone, Copy)]
pub struct EngineSnapshot<'a> {
    /// The scheduler's view (identity, capacity, labels, containers, images).
    pub node: &'a Node,
    pub state: EngineState,
    /// The last connection error, trimmed, or empty.
    pub last_error: &'a str,
    /// When the engine was last refreshed or failed; `None` if never.
    pub updated_at: Option<SystemTime>,
    /// The engine's `/version` Version (e.g. `20.10.24+dfsg1`).
    pub server_version: &'a str,
}

/// The manager itself, for `/info` and `/version`: values the caller reads from the
/// host and the build, so these functions stay pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagerHost {
    /// The manager's host name (`<unknown>` if it cannot be read, as classic).
    pub hostname: String,
    /// The manager host's kernel (`<unknown>` if it cannot be read, as classic).
    pub kernel_version: String,
    /// `linux`, `amd64`... (classic showed Go's GOOS and GOARCH).
    pub os: String,
    pub arch: String,
    /// swarmd's version; shown as `swarm/<version>` like classic's.
    pub version: String,
    pub git_commit: String,
    /// The API versions swarmd speaks (swarmd_engine_api::version's constants).
    pub api_version: String,
    pub min_api_version: String,
    pub debug: bool,
    /// The manager's `http_proxy`, `https_proxy`, `no_proxy`.
    pub http_proxy: String,
    pub https_proxy: String,
    pub no_proxy: String,
}

/// This manager's place among replicated managers (`--replication`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagerRole {
    Primary,
    /// A replica forwarding to the primary at this address.
    Replica {
        primary: String,
    },
}

/// Classic's `SystemStatus` pairs: role, then the cluster's (`Cluster.Info`).
pub fn system_status(
    role: &ManagerRole,
    scheduler: &Scheduler,
    engines: &[EngineSnapshot<'_>],
) -> Vec<[String; 2]> {
    let pair = |k: &str, v: String| [k.to_string(), v];
    let mut out = match role {
        ManagerRole::Primary => vec![pair("Role", "primary".into())],
        ManagerRole::Replica { primary } => vec![
            pair("Role", "replica".into()),
            pair("Primary", primary.clone()),
        ],
    };
    let filters: Vec<&str> = scheduler.filters.iter().map(|f| f.name()).collect();
    out.push(pair("Strategy", scheduler.strategy.name().into()));
    out.push(pair("Filters", filters.join(", ")));
    let mut listed: Vec<&EngineSnapshot<'_>> = engines.iter().filter(|e| listed(e)).collect();
    out.push(pair("Nodes", listed.len().to_string()));
    listed.sort_by(|a, b| natural_cmp(&a.node.name, &b.node.name));
    for e in listed {
        engine_block(e, scheduler.overcommit_percent, &mut out);
    }
    out
}

/// The pool's `/info`. `events_listeners` is the number of `/events` clients,
/// `system_time` the manager's clock in RFC 3339 with nanoseconds.
///
/// Totals are over validated engines, unhealthy ones included, as classic's: containers
/// by state, images per engine (an image on two engines counts twice; untagged ones not
/// at all: the node keeps no digests, so an image pulled by digest only is missed), and
/// NCPU and MemTotal with the overcommit the scheduler offers.
pub fn info(
    host: &ManagerHost,
    role: &ManagerRole,
    scheduler: &Scheduler,
    engines: &[EngineSnapshot<'_>],
    events_listeners: usize,
    system_time: &str,
) -> Value {
    let mut counts = StateCounts::default();
    let (mut images, mut ncpu, mut mem) = (0usize, 0i64, 0i64);
    let pct = scheduler.overcommit_percent;
    for e in engines.iter().filter(|e| validated(e)) {
        counts.add(e.node);
        images += e
            .node
            .images
            .iter()
            .filter(|i| !i.repo_tags.is_empty())
            .count();
        ncpu += e.node.total_cpus(pct);
        mem += e.node.total_memory(pct);
    }
    let mut v = json!({
        "ID": "",
        "Containers": counts.total,
        "ContainersRunning": counts.running,
        "ContainersPaused": counts.paused,
        "ContainersStopped": counts.stopped,
        "Images": images,
        "Driver": "",
        "DriverStatus": null,
        "SystemStatus": system_status(role, scheduler, engines),
        "NCPU": ncpu,
        "MemTotal": mem,
        "Debug": host.debug,
        "SystemTime": system_time,
        "NEventsListener": events_listeners,
        "KernelVersion": host.kernel_version,
        "OperatingSystem": host.os,
        "Architecture": host.arch,
        "HttpProxy": host.http_proxy,
        "HttpsProxy": host.https_proxy,
        "NoProxy": host.no_proxy,
        "Name": host.hostname,
        "ServerVersion": format!("swarm/{}", host.version),
    });
    if let (Some(out), Value::Object(rest)) = (v.as_object_mut(), constant_fields()) {
        out.extend(rest);
    }
    v
}

/// What classic sent as constants (its capability flags) or left at Go's zero values,
/// present because clients read them without checking.
fn constant_fields() -> Value {
    json!({
        "Plugins": {"Volume": null, "Network": null, "Authorization": null, "Log": null},
        "MemoryLimit": true,
        "SwapLimit": true,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "IPv4Forwarding": true,
        "BridgeNfIptables": true,
        "BridgeNfIp6tables": true,
        "OomKillDisable": true,
        "NFd": 0,
        "NGoroutines": 0,
        "LoggingDriver": "",
        "CgroupDriver": "",
        "OSType": "",
        "IndexServerAddress": "",
        "RegistryConfig": null,
        "DockerRootDir": "",
        "Labels": null,
        "ExperimentalBuild": false,
        "Runtimes": null,
        "DefaultRuntime": "",
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": false,
            "Error": "",
            "RemoteManagers": null
        },
        "LiveRestoreEnabled": false,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": null,
        "Warnings": null
    })
}

/// Engines `docker info` lists: classic's validated and pending engines; a disconnected
/// one has left the pool.
fn listed(e: &EngineSnapshot<'_>) -> bool {
    e.state != EngineState::Disconnected
}

/// Engines the totals count: classic's validated engines (healthy or not).
fn validated(e: &EngineSnapshot<'_>) -> bool {
    matches!(e.state, EngineState::Healthy | EngineState::Unhealthy)
}

fn engine_block(e: &EngineSnapshot<'_>, pct: i64, out: &mut Vec<[String; 2]>) {
    let n = e.node;
    let mut push = |k: &str, v: String| out.push([k.to_string(), v]);
    let name = if n.name.is_empty() {
        "(unknown)"
    } else {
        &n.name
    };
    push(&format!(" {name}"), n.addr.clone());
    push("  └ ID", n.id.clone());
    push("  └ Status", e.state.to_string());
    let mut c = StateCounts::default();
    c.add(n);
    push(
        "  └ Containers",
        if e.state == EngineState::Healthy {
            format!(
                "{} ({} Running, {} Paused, {} Stopped)",
                c.total, c.running, c.paused, c.stopped
            )
        } else {
            c.total.to_string()
        },
    );
    push(
        "  └ Reserved CPUs",
        format!("{} / {}", n.used_cpus(), n.total_cpus(pct)),
    );
    push(
        "  └ Reserved Memory",
        format!(
            "{} / {}",
            bytes_size(n.used_memory()),
            bytes_size(n.total_memory(pct))
        ),
    );
    let labels: Vec<String> = engine_labels(n)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    push("  └ Labels", labels.join(", "));
    if !e.last_error.is_empty() {
        push("  └ Error", e.last_error.to_string());
    }
    push("  └ UpdatedAt", rfc3339(e.updated_at));
    push("  └ ServerVersion", e.server_version.to_string());
}

/// Classic's engine labels: the engine's own plus the constraint keys it reports
/// (storagedriver, kernelversion, operatingsystem, ostype), sorted by key.
pub fn engine_labels(n: &Node) -> BTreeMap<String, String> {
    let special = [
        "storagedriver",
        "kernelversion",
        "operatingsystem",
        "ostype",
    ];
    n.labels
        .keys()
        .map(String::as_str)
        .chain(special)
        .filter_map(|k| n.label(k).map(|v| (k.to_string(), v.to_string())))
        .collect()
}

/// Go's `time.RFC3339` in UTC, whole seconds; Go's zero time when never updated.
fn rfc3339(t: Option<SystemTime>) -> String {
    const FORMAT: &[time::format_description::FormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let secs = t
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    secs.and_then(|s| time::OffsetDateTime::from_unix_timestamp(i64::try_from(s).ok()?).ok())
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string())
}

/// Classic's split of containers: paused, else running (restarting counts: the engine
/// reports it running), else stopped. Pending containers (no ID yet) are not listed.
#[derive(Debug, Default)]
struct StateCounts {
    total: usize,
    running: usize,
    paused: usize,
    stopped: usize,
}

impl StateCounts {
    fn add(&mut self, n: &Node) {
        for c in n.containers.iter().filter(|c| !c.id.is_empty()) {
            self.total += 1;
            match c.state.as_str() {
                "paused" => self.paused += 1,
                "running" | "restarting" => self.running += 1,
                _ => self.stopped += 1,
            }
        }
    }
}

#[cfg(test)]
#[path = "info_tests.rs"]
mod tests;
