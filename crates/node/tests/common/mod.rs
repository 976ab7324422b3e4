//! The in-process swarm the node tests share: [`SwarmNode`]s on their own loopback
//! addresses, joined over real mTLS, each running its tasks on the agent's fake executor.

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use swarmd_agent::exec::fake::FakeExecutor;
use swarmd_engine_api::backend::{Backend, InitRequest, JoinRequest};
use swarmd_node::{ExecutorKind, NodeBackend, NodeConfig, SwarmNode};
use swarmd_testkit::{unique_loopback, wait_until_async};

/// Long enough for an election and a catch-up on a loaded machine; conditions usually
/// hold well within a second.
pub const WAIT: Duration = Duration::from_secs(30);
pub const POLL: Duration = Duration::from_millis(50);

/// One node of the test swarm and the API over it.
pub struct Member {
    pub addr: IpAddr,
    pub root: PathBuf,
    pub node: Arc<SwarmNode>,
    pub api: NodeBackend,
}

impl Member {
    /// Starts a node on `addr` with its state in `root` (rejoining the swarm recorded there,
    /// if any).
    pub async fn start(root: &Path, addr: IpAddr) -> Member {
        Member::start_with(root, addr, None).await
    }

    /// [`Member::start`], its engine (for tunnels to it) at `engine_socket`.
    pub async fn start_with(root: &Path, addr: IpAddr, engine_socket: Option<String>) -> Member {
        let node = SwarmNode::start(NodeConfig {
            data_root: root.to_path_buf(),
            executor: ExecutorKind::Given(Arc::new(FakeExecutor::default())),
            engine_socket,
            node_addr: addr,
            hostname: Some(format!("node-{addr}")),
            userland_mesh: true,
        })
        .await
        .expect("node starts");
        let api = NodeBackend {
            node: node.clone(),
            daemon_id: format!("daemon-{addr}"),
        };
        Member {
            addr,
            root: root.to_path_buf(),
            node,
            api,
        }
    }

    /// Stops the node as SIGTERM would (its state stays on disk).
    pub async fn stop(self) -> (PathBuf, IpAddr) {
        self.node.shutdown().await;
        (self.root, self.addr)
    }

    pub fn cluster_addr(&self) -> String {
        format!("{}:2377", self.addr)
    }

    pub fn node_id(&self) -> String {
        self.node
            .active()
            .expect("in a swarm")
            .state
            .node_id
            .clone()
    }

    /// This manager's Raft: whether it leads, and its voters.
    pub fn raft(&self) -> Option<(bool, usize)> {
        let a = self.node.active()?;
        let m = a.mgr.as_ref()?;
        let leads = m.raft.leader().map(|(id, _)| id) == Some(m.raft.node_id());
        let voters = m.raft.members().iter().filter(|(_, _, v)| *v).count();
        Some((leads, voters))
    }

    pub fn is_leader(&self) -> bool {
        self.raft().is_some_and(|(leads, _)| leads)
    }

    /// The names of the services this node's replica holds (empty off a manager).
    pub async fn service_names(&self) -> Vec<String> {
        let mut names: Vec<String> = (self.api.services().await)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| s.spec.name)
            .collect();
        names.sort();
        names
    }
}

/// Three managers: the first inits, the other two join it with the manager token.
pub async fn three_managers(dir: &Path) -> Vec<Member> {
    three_managers_with(dir, |_| None).await
}

/// [`three_managers`], each one's engine socket `engine(<its data root>)`.
pub async fn three_managers_with(
    dir: &Path,
    engine: impl Fn(&Path) -> Option<String>,
) -> Vec<Member> {
    swarmd_pki::install_crypto_provider();
    let root = dir.join("m0");
    let first = Member::start_with(&root, unique_loopback(), engine(&root)).await;
    first
        .api
        .swarm_init(InitRequest {
            listen_addr: Some(first.cluster_addr()),
            advertise_addr: Some(first.cluster_addr()),
            ..Default::default()
        })
        .await
        .expect("swarm init");
    let token = first
        .api
        .swarm_inspect()
        .await
        .expect("swarm inspect")
        .join_tokens
        .manager;
    let mut members = vec![first];
    for i in 1..3 {
        let root = dir.join(format!("m{i}"));
        let m = Member::start_with(&root, unique_loopback(), engine(&root)).await;
        m.api
            .swarm_join(JoinRequest {
                listen_addr: Some(m.cluster_addr()),
                advertise_addr: Some(m.cluster_addr()),
                remote_addrs: Some(vec![members[0].cluster_addr()]),
                join_token: Some(token.clone()),
                ..Default::default()
            })
            .await
            .expect("swarm join as a manager");
        members.push(m);
    }
    for m in &members {
        wait_until_async(WAIT, POLL, "every manager sees 3 voters", || async {
            m.raft().is_some_and(|(_, voters)| voters == 3)
        })
        .await;
    }
    members
}

pub fn leader(members: &[Member]) -> usize {
    members
        .iter()
        .position(Member::is_leader)
        .expect("a leader among the managers")
}

pub async fn wait_leader(members: &[Member]) -> usize {
    wait_until_async(WAIT, POLL, "a leader", || async {
        members.iter().any(Member::is_leader)
    })
    .await;
    leader(members)
}
