//! `GET /info` of the virtual host (classic's `getInfo`): pool totals and the
//! [`super::status`] lines.
//!
//! Only the fields a client reads are filled; the rest are Docker's zero values, as
//! classic's Go struct sent them. `Swarm.LocalNodeState` is `inactive` (classic sent an
//! empty state, which makes today's CLI print swarm-mode details of nothing). `OSType` is
//! left empty as classic did: with `linux` the CLI prints init/runc/containerd versions
//! the manager does not have.

use serde_json::{Value, json};

use super::ManagerHost;
use super::status::{EngineSnapshot, ManagerRole, StateCounts, system_status, validated};
use crate::scheduler::select::Scheduler;

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

#[cfg(test)]
#[path = "info_tests.rs"]
mod tests;
