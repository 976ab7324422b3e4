//! Helpers shared by the dispatcher's table tests (unit tests only).

use swarmd_store::{MemoryStore, Snapshot, Tables};
use swarmd_types::{Network, Node, NodeState, NodeStatus, Service, Task};

/// A node in `state` with data-plane address `addr`.
pub fn node(id: &str, addr: &str, state: NodeState) -> Node {
    Node {
        id: id.into(),
        status: NodeStatus {
            state,
            addr: addr.into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A store holding these objects, with its indexes built as a Raft restore builds them.
pub fn store_of(
    networks: Vec<Network>,
    nodes: Vec<Node>,
    services: Vec<Service>,
    tasks: Vec<Task>,
) -> MemoryStore {
    let mut t = Tables::default();
    for n in networks {
        t.networks.insert(n.id.clone(), n);
    }
    for n in nodes {
        t.nodes.insert(n.id.clone(), n);
    }
    for s in services {
        t.services.insert(s.id.clone(), s);
    }
    for task in tasks {
        t.tasks.insert(task.id.clone(), task);
    }
    let mem = MemoryStore::new();
    mem.restore(Snapshot {
        index: 1,
        tables: t,
    });
    mem
}
