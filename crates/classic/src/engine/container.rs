//! `GET /containers/json?all=1` summaries plus inspects -> the node's containers (classic's
//! `RefreshContainers`/`updateContainer`). The summary carries what changes often (names,
//! state, labels, image); the inspect carries the reservations and ports the filters need,
//! and is only redone when classic would: for a new container, on a full refresh, or on a
//! state-changing event (see [`super::event`]).

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::{ContainerInspectResponse, ContainerSummary, PortMap};

use crate::reschedule::policy::has_reschedule_policy;
use crate::scheduler::cpu::shares_to_cpus;
use crate::scheduler::model::{Container, Node, PortBinding};

impl Node {
    /// IDs among `summaries` to inspect before [`Node::merge_containers`]: all of them on
    /// a full refresh, else those the node does not know yet and those it last saw
    /// restarting (the engine does not always send an event when that state ends).
    pub fn to_inspect(&self, summaries: &[ContainerSummary], full: bool) -> Vec<String> {
        summaries
            .iter()
            .filter_map(|s| s.id.clone())
            .filter(|id| {
                full || self
                    .containers
                    .iter()
                    .find(|c| c.id == *id)
                    .is_none_or(|c| c.state == "restarting")
            })
            .collect()
    }

    /// Replaces the node's containers with the listed ones. A listed container uses its
    /// inspect when given, else keeps what the node knew from an earlier inspect; a new
    /// container without an inspect (it failed or vanished) is left out, as classic logs
    /// and skips it. Pending containers are dropped: the scheduler adds them afresh.
    pub fn merge_containers(
        &mut self,
        summaries: &[ContainerSummary],
        inspects: &HashMap<String, ContainerInspectResponse>,
    ) {
        let merged = summaries
            .iter()
            .filter_map(|s| self.updated(s, inspects.get(s.id.as_deref()?)))
            .collect();
        self.containers = merged;
    }

    /// Classic's `refreshContainer` with the engine's answer to
    /// `/containers/json?all=1&filters={"id":[id]}`: no match removes the container, one
    /// match updates or adds it. More than one match means the filter matched by prefix;
    /// classic then refreshes everything, so this returns `false` and changes nothing.
    pub fn refresh_container(
        &mut self,
        id: &str,
        summaries: &[ContainerSummary],
        inspect: Option<&ContainerInspectResponse>,
    ) -> bool {
        match summaries {
            [] => {
                self.containers.retain(|c| c.id != id);
                true
            }
            [s] => {
                if let Some(c) = self.updated(s, inspect) {
                    match self.containers.iter_mut().find(|k| k.id == c.id) {
                        Some(slot) => *slot = c,
                        None => self.containers.push(c),
                    }
                }
                true
            }
            _ => false,
        }
    }

    fn updated(
        &self,
        s: &ContainerSummary,
        inspect: Option<&ContainerInspectResponse>,
    ) -> Option<Container> {
        let id = s.id.as_deref()?;
        let mut c = match inspect {
            Some(i) => from_inspect(i, self.cpus),
            None => self.containers.iter().find(|c| c.id == id)?.clone(),
        };
        apply_summary(&mut c, s);
        Some(c)
    }
}

/// The fields classic reads from `/containers/json`.
fn apply_summary(c: &mut Container, s: &ContainerSummary) {
    c.id = s.id.clone().unwrap_or_default();
    c.names = s.names.clone().unwrap_or_default();
    c.image = s.image.clone().unwrap_or_default();
    c.labels = s.labels.clone().unwrap_or_default();
    c.state = s.state.map(|st| st.to_string()).unwrap_or_default();
    c.summary = Some(Arc::new(s.clone()));
}

/// The fields classic reads from an inspect. CPU shares become CPUs on this engine
/// (`shares * NCPU / 1024`); memory is HostConfig.Memory, the limit classic reserves.
/// A container with a reschedule policy keeps the whole inspect, to be recreated from.
pub fn from_inspect(i: &ContainerInspectResponse, ncpu: i64) -> Container {
    let host = i.host_config.as_ref();
    let config = i.config.as_ref();
    let labels = config.and_then(|c| c.labels.as_ref());
    let inspect = labels
        .filter(|l| has_reschedule_policy(l))
        .and_then(|_| serde_json::to_value(i).ok())
        .map(Arc::new);
    Container {
        id: i.id.clone().unwrap_or_default(),
        names: i.name.iter().cloned().collect(),
        image: config.and_then(|c| c.image.clone()).unwrap_or_default(),
        labels: config.and_then(|c| c.labels.clone()).unwrap_or_default(),
        cpu_shares: shares_to_cpus(host.and_then(|h| h.cpu_shares).unwrap_or(0), ncpu),
        memory: host.and_then(|h| h.memory).unwrap_or(0),
        port_bindings: bindings(host.and_then(|h| h.port_bindings.as_ref())),
        published: bindings(i.network_settings.as_ref().and_then(|n| n.ports.as_ref())),
        exposed_ports: {
            let mut p = config
                .and_then(|c| c.exposed_ports.clone())
                .unwrap_or_default();
            p.sort();
            p
        },
        network_mode: host
            .and_then(|h| h.network_mode.clone())
            .unwrap_or_default(),
        state: i
            .state
            .as_ref()
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        inspect,
        summary: None,
        state_detail: i.state.clone().map(Arc::new),
    }
}

/// A PortMap flattened, sorted by container port for stable comparisons. A port exposed
/// but not published (`null`) holds no host port and is left out.
fn bindings(map: Option<&PortMap>) -> Vec<PortBinding> {
    let mut out: Vec<PortBinding> = map
        .into_iter()
        .flatten()
        .flat_map(|(port, bs)| {
            bs.iter().flatten().map(move |b| PortBinding {
                container_port: port.clone(),
                host_ip: b.host_ip.clone().unwrap_or_default(),
                host_port: b.host_port.clone().unwrap_or_default(),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.container_port, &a.host_ip, &a.host_port).cmp(&(
            &b.container_port,
            &b.host_ip,
            &b.host_port,
        ))
    });
    out
}

#[cfg(test)]
#[path = "container_tests.rs"]
mod tests;
