//! The allocator: moves new tasks to PENDING once their service's resources are
//! allocated. Published ports are allocated with the service spec by the control API
//! (so conflicts are refused at create time, as Docker does); the task gets a copy.
//! Each task gets an address on every network its service joins ([`plan_attachments`]);
//! the address is free again once the task is terminal or removed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use swarmd_store::{Event, ReadTx, Tables};
use swarmd_types::models::TaskState;
use swarmd_types::{NetworkAttachment, Object, Task, timefmt};

use crate::control::networks::{attached_network, service_networks, take_address, used_addresses};
use crate::reconcile::{Plan, ReconcileError, Reconciler, Scope, Touch};

/// Most tasks one allocator pass moves on (see [`crate::scheduler::MAX_WRITES_PER_PASS`]).
pub const MAX_WRITES_PER_PASS: usize = crate::scheduler::MAX_WRITES_PER_PASS;

/// The allocator reconciler: NEW tasks that are still wanted become PENDING, oldest first,
/// at most [`MAX_WRITES_PER_PASS`] of them a pass (from the store's index of NEW tasks: no
/// scan).
pub struct Allocator;

impl Reconciler for Allocator {
    type Then = ();
    const NAME: &'static str = "allocator";

    fn touch(e: &Event) -> Touch<'_> {
        Touch::all_if(matches!(e.object, Object::Task(_) | Object::Service(_)))
    }

    /// Runs again at once when it left NEW tasks for the next pass.
    fn plan(&self, tables: &ReadTx<'_>, _: &Scope) -> Result<Plan, ReconcileError> {
        let now = timefmt::now();
        let mut plan = Plan::idle();
        let mut n = 0;
        let mut used = BTreeMap::new();
        for t in tables.new_tasks() {
            if n >= MAX_WRITES_PER_PASS {
                plan.wake = Some(Duration::ZERO);
                break;
            }
            // Job tasks are desired COMPLETE; anything past that is being stopped.
            if t.status.state != TaskState::NEW || t.desired_state > TaskState::COMPLETE {
                continue;
            }
            let Some(service) = tables.services.get(&t.service_id) else {
                continue;
            };
            let Some(networks) = plan_attachments(tables, t, &mut used) else {
                tracing::warn!(task = %t.id, "no free address on a network of the task; it stays NEW");
                continue;
            };
            let mut t = t.clone();
            t.networks = networks;
            t.endpoint_ports = service.endpoint.ports.clone();
            t.status.state = TaskState::PENDING;
            t.status.message = "pending task scheduling".into();
            t.status.timestamp = now.clone();
            plan.writes.update(t);
            n += 1;
        }
        Ok(plan)
    }
}

/// Whether tasks of this service need anything allocated before they can be scheduled: an
/// address on a network of the service (its own networks, ingress when it publishes ports).
pub fn needs_allocation(tables: &Tables, service_id: &str) -> bool {
    tables
        .services
        .get(service_id)
        .is_none_or(|s| !service_networks(tables, &s.spec).is_empty())
}

/// Makes a task being created PENDING at once when its service needs nothing allocated
/// ([`needs_allocation`] is false for it): the allocator's pass would only change its state,
/// at the cost of a store write per task, a quarter of the Raft traffic of a large `service
/// create`. A task that needs addresses stays NEW for the allocator.
pub fn pending_at_creation(t: &mut Task, needs_allocation: bool) {
    if needs_allocation
        || t.status.state != TaskState::NEW
        || t.desired_state > TaskState::COMPLETE
        || !t.networks.is_empty()
    {
        return;
    }
    t.status.state = TaskState::PENDING;
    t.status.message = "pending task scheduling".into();
}

/// Addresses handed out during one allocation pass, per network ID (filled lazily from the
/// store, then kept up to date as tasks take addresses).
pub type UsedAddresses = BTreeMap<String, BTreeSet<u32>>;

/// The attachments of a task leaving NEW: one address on each network of its service
/// (`None` when a network has no free address). A task that has them already keeps them.
pub fn plan_attachments(
    tables: &Tables,
    task: &Task,
    used: &mut UsedAddresses,
) -> Option<Vec<NetworkAttachment>> {
    if !task.networks.is_empty() {
        return Some(task.networks.clone());
    }
    let service = tables.services.get(&task.service_id)?;
    let mut out = Vec::new();
    for (net, aliases) in service_networks(tables, &service.spec) {
        let taken = used
            .entry(net.id.clone())
            .or_insert_with(|| used_addresses(tables, net));
        let addr = take_address(net, taken)?;
        out.push(NetworkAttachment {
            network_id: net.id.clone(),
            addresses: vec![addr],
            aliases,
            network: Some(attached_network(net)),
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::networks::ingress_network;
    use proptest::prelude::*;
    use swarmd_types::models::{EndpointPortConfig, EndpointSpec, ServiceSpec};
    use swarmd_types::{Service, ServiceEndpoint, VirtualIp};

    fn tables_with_service(tasks: usize) -> Tables {
        let mut t = Tables::default();
        let mut ingress = ingress_network(&[], 24);
        ingress.subnet = "10.0.0.0/26".into();
        t.networks.insert(ingress.id.clone(), ingress.clone());
        let spec = ServiceSpec {
            endpoint_spec: Some(EndpointSpec {
                ports: Some(vec![EndpointPortConfig {
                    target_port: Some(80),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        t.services.insert(
            "s".into(),
            Service {
                id: "s".into(),
                spec,
                endpoint: ServiceEndpoint {
                    virtual_ips: vec![VirtualIp {
                        network_id: ingress.id.clone(),
                        addr: "10.0.0.2/26".into(),
                    }],
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        for i in 0..tasks {
            t.tasks.insert(
                format!("t{i:03}"),
                Task {
                    id: format!("t{i:03}"),
                    service_id: "s".into(),
                    ..Default::default()
                },
            );
        }
        t
    }

    #[test]
    fn only_tasks_needing_no_address_are_pending_at_creation() {
        let mut t = tables_with_service(0);
        t.services.insert(
            "plain".into(),
            Service {
                id: "plain".into(),
                ..Default::default()
            },
        );
        // A published port puts the tasks on ingress: the allocator must give them an address.
        assert!(needs_allocation(&t, "s"));
        assert!(!needs_allocation(&t, "plain"));
        assert!(
            needs_allocation(&t, "gone"),
            "unknown service: leave it to the allocator"
        );
        let new = |desired| Task {
            id: "x".into(),
            desired_state: desired,
            ..Default::default()
        };
        let mut task = new(TaskState::RUNNING);
        pending_at_creation(&mut task, needs_allocation(&t, "plain"));
        assert_eq!(task.status.state, TaskState::PENDING);
        assert_eq!(task.status.message, "pending task scheduling");
        let mut task = new(TaskState::RUNNING);
        pending_at_creation(&mut task, needs_allocation(&t, "s"));
        assert_eq!(task.status.state, TaskState::NEW);
        let mut stopping = new(TaskState::SHUTDOWN);
        pending_at_creation(&mut stopping, false);
        assert_eq!(stopping.status.state, TaskState::NEW, "not meant to run");
    }

    #[test]
    fn tasks_get_addresses_after_gateway_and_vip() {
        let t = tables_with_service(2);
        let mut used = UsedAddresses::new();
        let a = plan_attachments(&t, &t.tasks["t000"], &mut used).unwrap();
        let b = plan_attachments(&t, &t.tasks["t001"], &mut used).unwrap();
        assert_eq!(a[0].addresses, vec!["10.0.0.3/26"]);
        assert_eq!(b[0].addresses, vec!["10.0.0.4/26"]);
    }

    proptest! {
        /// However many tasks ask (some already holding an address), no address is given to
        /// two tasks, the gateway and the VIP are never given, and a full subnet says so.
        #[test]
        fn no_address_is_handed_out_twice(n in 1usize..80, held in 0usize..10) {
            let mut t = tables_with_service(n);
            let mut used = UsedAddresses::new();
            // Some tasks were allocated in an earlier pass.
            let ids: Vec<String> = t.tasks.keys().take(held).cloned().collect();
            for id in &ids {
                let att = plan_attachments(&t, &t.tasks[id], &mut used).unwrap();
                t.tasks.get_mut(id).unwrap().networks = att;
            }
            let mut used = UsedAddresses::new();
            let mut seen = BTreeSet::new();
            for task in t.tasks.values() {
                match plan_attachments(&t, task, &mut used) {
                    Some(att) => {
                        let a = att[0].addresses[0].clone();
                        prop_assert!(a != "10.0.0.1/26" && a != "10.0.0.2/26");
                        prop_assert!(seen.insert(a.clone()), "{} twice", a);
                    }
                    // 64 addresses - network, broadcast, gateway, VIP = 60.
                    None => prop_assert!(seen.len() == 60),
                }
            }
        }
    }

    /// A pass moves at most [`MAX_WRITES_PER_PASS`] tasks and asks to run again at once for
    /// the rest.
    #[tokio::test]
    async fn a_capped_pass_runs_again_at_once() {
        use crate::reconcile::{Scope, pass, testing::store_with};
        let mut objects = vec![swarmd_types::Object::from(Service {
            id: "plain".into(),
            ..Default::default()
        })];
        for i in 0..=MAX_WRITES_PER_PASS {
            objects.push(
                Task {
                    id: format!("t{i:05}"),
                    service_id: "plain".into(),
                    desired_state: TaskState::RUNNING,
                    ..Default::default()
                }
                .into(),
            );
        }
        let s = store_with(objects).await;
        let pending = || {
            s.view(|v| {
                v.tasks
                    .values()
                    .filter(|t| t.status.state == TaskState::PENDING)
                    .count()
            })
        };
        let again = pass(&Allocator, &s, &Scope::All).await.unwrap();
        assert_eq!(again, Some(Duration::ZERO));
        assert_eq!(pending(), MAX_WRITES_PER_PASS);
        assert_eq!(pass(&Allocator, &s, &Scope::All).await.unwrap(), None);
        assert_eq!(pending(), MAX_WRITES_PER_PASS + 1);
    }
}
