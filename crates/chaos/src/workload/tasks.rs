//! The task workload (needs workers): replicated services of process-executor tasks, some
//! updated stop-first and some start-first; a driver that scales them and forces updates
//! now and then; an observer that reads nodes and tasks listings, one after another from
//! random managers, for [`crate::check::tasks`].
//!
//! The driver changes a service only once its previous forced update has finished (its
//! `UpdateStatus` started anew and is no longer `updating`): swarmkit restarts a service's
//! updater on every change, and a restarted updater may start a stop-first replacement
//! without waiting for the old task, which the checker would take for a violation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::{Clients, Reply, call};
use crate::check::tasks::{Listing, NodeSeen, Observation, Order, TaskSeen};
use crate::lab::Lab;

/// Task services per run: even ones stop-first, odd ones start-first.
pub const SERVICES: usize = 4;
/// Replicas of a task service, at most.
const MAX_REPLICAS: i64 = 4;
/// How long the driver waits before its next change, at most.
const DRIVER_PAUSE: Duration = Duration::from_secs(3);
/// How long a change with an unknown outcome may still take effect.
const UNKNOWN_SETTLES: Duration = Duration::from_secs(60);
/// Between two listings of the observer: enough to see every step of an update, little
/// load on two cores.
const OBSERVER_PAUSE: Duration = Duration::from_millis(100);

/// A task's process: stops 2 s after SIGTERM, and ends by itself after 5 minutes (the
/// restart policy replaces it) so that none outlives a lab whose teardown missed it.
const TASK_SCRIPT: &str =
    "trap 'sleep 2; exit 0' TERM; i=0; while [ $i -lt 300 ]; do sleep 1; i=$((i+1)); done";

fn service_name(k: usize) -> String {
    format!("chaos-task-{k}")
}

fn order_of(k: usize) -> Order {
    if k.is_multiple_of(2) {
        Order::StopFirst
    } else {
        Order::StartFirst
    }
}

/// The spec of task service `k`, on workers only (the nemesis kills and pauses managers;
/// the tasks' nodes lose their manager, not their processes). A task takes about 2 s to
/// stop on SIGTERM, as a service with a graceful shutdown does: long enough for the
/// observer to see two tasks of a slot run at once if the update order is not kept.
fn service_spec(k: usize) -> Value {
    let order = match order_of(k) {
        Order::StopFirst => "stop-first",
        Order::StartFirst => "start-first",
    };
    json!({
        "Name": service_name(k),
        "Mode": { "Replicated": { "Replicas": 2 } },
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "busybox",
                "Args": ["sh", "-c", TASK_SCRIPT],
                "StopGracePeriod": 10_000_000_000u64,
            },
            "Placement": { "Constraints": ["node.role==worker"] },
            "ForceUpdate": 0,
        },
        // "continue": a failed task does not pause the update, which would stop the
        // driver from changing the service again.
        "UpdateConfig": { "Parallelism": 1, "Order": order, "FailureAction": "continue" },
    })
}

/// Creates the task services; their update orders by service ID.
pub fn create_services(lab: &Lab) -> anyhow::Result<BTreeMap<String, Order>> {
    let mut orders = BTreeMap::new();
    for k in 0..SERVICES {
        let created = lab.call("POST", "/services/create", Some(service_spec(k)))?;
        let id = created["ID"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("service create answered no ID: {created}"))?;
        orders.insert(id.to_string(), order_of(k));
    }
    Ok(orders)
}

/// Starts the driver and the observer; they stop with the clients.
pub fn start(clients: &Arc<Clients>, seed: u64, sockets: Vec<PathBuf>) -> Vec<JoinHandle<()>> {
    let driver = {
        let clients = Arc::clone(clients);
        let sockets = sockets.clone();
        std::thread::spawn(move || drive(&clients, seed, &sockets))
    };
    let observer = {
        let clients = Arc::clone(clients);
        std::thread::spawn(move || observe(&clients, seed + 1, &sockets))
    };
    vec![driver, observer]
}

/// The `UpdateStatus.StartedAt` a service had before a forced update, until a read shows
/// another one that is no longer running; or a time after which a change with an unknown
/// outcome can no longer apply.
#[derive(Default, Clone)]
struct Pending {
    started_before: Option<Option<String>>,
    until: Option<Instant>,
}

fn drive(clients: &Clients, seed: u64, sockets: &[PathBuf]) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pending = vec![Pending::default(); SERVICES];
    while !clients.stop.load(Ordering::Relaxed) {
        // The workload's pace, not a wait for a condition.
        std::thread::sleep(rng.random_range(Duration::ZERO..DRIVER_PAUSE));
        let k = rng.random_range(0..SERVICES);
        let socket = &sockets[rng.random_range(0..sockets.len())];
        let Reply::Ok(v) = call(
            socket,
            "GET",
            &format!("/services/{}", service_name(k)),
            None,
        ) else {
            continue;
        };
        let status = &v["UpdateStatus"];
        let started = status["StartedAt"].as_str().map(str::to_string);
        if matches!(
            status["State"].as_str(),
            Some("updating" | "rollback_started")
        ) {
            continue;
        }
        let p = &mut pending[k];
        if p.until.is_some_and(|t| Instant::now() >= t) {
            *p = Pending::default();
        }
        match &p.started_before {
            Some(before) if *before == started => continue,
            Some(_) => p.started_before = None,
            None if p.until.is_some() => continue,
            None => {}
        }
        let mut spec = v["Spec"].clone();
        let force = rng.random_bool(0.5);
        if force {
            let n = spec["TaskTemplate"]["ForceUpdate"].as_u64().unwrap_or(0);
            spec["TaskTemplate"]["ForceUpdate"] = json!(n + 1);
        } else {
            spec["Mode"]["Replicated"]["Replicas"] = json!(rng.random_range(1..=MAX_REPLICAS));
        }
        let id = v["ID"].as_str().unwrap_or_default();
        let version = v["Version"]["Index"].as_u64().unwrap_or_default();
        let path = format!("/services/{id}/update?version={version}");
        match call(socket, "POST", &path, Some(&spec)) {
            Reply::Ok(_) => {
                clients.lock().tasks.changes += 1;
                if force {
                    *p = Pending {
                        started_before: Some(started),
                        until: None,
                    };
                }
            }
            Reply::Refused(..) => {}
            Reply::Unknown => {
                *p = Pending {
                    started_before: force.then_some(started),
                    until: Some(Instant::now() + UNKNOWN_SETTLES),
                };
            }
        }
    }
}

fn observe(clients: &Clients, seed: u64, sockets: &[PathBuf]) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut nodes_next = true;
    while !clients.stop.load(Ordering::Relaxed) {
        let socket = &sockets[rng.random_range(0..sockets.len())];
        let path = if nodes_next { "/nodes" } else { "/tasks" };
        if let Reply::Ok(v) = call(socket, "GET", path, None) {
            let items = v.as_array().map(Vec::as_slice).unwrap_or_default();
            let listing = if nodes_next {
                Listing::Nodes(items.iter().map(node_seen).collect())
            } else {
                Listing::Tasks(items.iter().map(task_seen).collect())
            };
            let at = clients.now();
            clients
                .lock()
                .tasks
                .observations
                .push(Observation { at, listing });
            nodes_next = !nodes_next;
        }
        // The observer's pace, not a wait for a condition.
        std::thread::sleep(OBSERVER_PAUSE);
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn node_seen(n: &Value) -> NodeSeen {
    NodeSeen {
        id: text(&n["ID"]),
        state: text(&n["Status"]["State"]),
        version: n["Version"]["Index"].as_u64().unwrap_or_default(),
    }
}

fn task_seen(t: &Value) -> TaskSeen {
    TaskSeen {
        id: text(&t["ID"]),
        service: text(&t["ServiceID"]),
        slot: t["Slot"].as_u64().unwrap_or_default(),
        node: text(&t["NodeID"]),
        state: text(&t["Status"]["State"]),
        desired: text(&t["DesiredState"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_are_read_from_the_api_fields() {
        let n = json!({ "ID": "n1", "Version": { "Index": 9 }, "Status": { "State": "ready" } });
        assert_eq!(
            node_seen(&n),
            NodeSeen {
                id: "n1".into(),
                state: "ready".into(),
                version: 9
            }
        );
        let t = json!({
            "ID": "t1", "ServiceID": "s1", "Slot": 2, "NodeID": "n1",
            "Status": { "State": "running" }, "DesiredState": "shutdown",
        });
        assert_eq!(
            task_seen(&t),
            TaskSeen {
                id: "t1".into(),
                service: "s1".into(),
                slot: 2,
                node: "n1".into(),
                state: "running".into(),
                desired: "shutdown".into(),
            }
        );
    }

    #[test]
    fn services_alternate_update_orders() {
        let orders: Vec<&str> = (0..SERVICES)
            .map(|k| {
                service_spec(k)["UpdateConfig"]["Order"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .map(|s| if s == "stop-first" { "stop" } else { "start" })
            .collect();
        assert_eq!(orders, ["stop", "start", "stop", "start"]);
    }
}
