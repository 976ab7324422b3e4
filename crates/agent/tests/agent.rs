//! The real `Agent` against an in-test fake dispatcher, with the process executor and (when
//! a Docker Engine answers on the local socket) the docker executor.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard_stubs::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    TaskSpec, TaskSpecContainerSpec, TaskState,
};
use futures::StreamExt;
use futures::channel::mpsc as fmpsc;
use swarmd_agent::exec::docker::{DEFAULT_SOCKET, DockerExecutor};
use swarmd_agent::exec::process::ProcessExecutor;
use swarmd_agent::{Agent, AgentConfig, DataKey, Executor, LogOptions};
use swarmd_types::dispatcher::{
    Assignment, AssignmentAction, AssignmentChange, AssignmentsKind, AssignmentsMessage,
    DispatchError, DispatchStream, DispatcherApi, SessionMessage, SessionRequest, TaskStatusUpdate,
};
use swarmd_types::{Node, Task, TaskStatus};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);

/// A stand-in for the manager's dispatcher: keeps the node's tasks, streams assignments
/// (complete set on connect, then incremental changes) and records status reports.
#[derive(Default)]
struct FakeDispatcher {
    state: Mutex<FakeState>,
    /// Bumped on every change, so tests wait on conditions without sleeping.
    version: watch::Sender<u64>,
}

#[derive(Default)]
struct FakeState {
    sessions: u64,
    assignment_streams: u64,
    current: Option<String>,
    tasks: BTreeMap<String, Task>,
    assignments: Option<fmpsc::UnboundedSender<Result<AssignmentsMessage, DispatchError>>>,
    updates: Vec<TaskStatusUpdate>,
}

impl FakeDispatcher {
    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    fn send(&self, st: &mut FakeState, action: AssignmentAction, task: Task) {
        if let Some(tx) = &st.assignments {
            let _ = tx.unbounded_send(Ok(AssignmentsMessage {
                kind: AssignmentsKind::Incremental,
                changes: vec![AssignmentChange {
                    action,
                    assignment: Assignment::Task(task),
                }],
            }));
        }
    }

    fn assign(&self, task: Task) {
        let mut st = self.state.lock().unwrap();
        st.tasks.insert(task.id.clone(), task.clone());
        self.send(&mut st, AssignmentAction::Update, task);
    }

    fn set_desired(&self, id: &str, desired: TaskState) {
        let mut st = self.state.lock().unwrap();
        let Some(t) = st.tasks.get_mut(id) else {
            return;
        };
        t.desired_state = desired;
        let t = t.clone();
        self.send(&mut st, AssignmentAction::Update, t);
    }

    fn withdraw(&self, id: &str) {
        let mut st = self.state.lock().unwrap();
        if let Some(t) = st.tasks.remove(id) {
            self.send(&mut st, AssignmentAction::Remove, t);
        }
    }

    fn sessions(&self) -> u64 {
        self.state.lock().unwrap().sessions
    }

    fn assignment_streams(&self) -> u64 {
        self.state.lock().unwrap().assignment_streams
    }

    /// Forgets the current session, as a restarted or failed-over manager would: the
    /// agent's next heartbeat fails and it must reconnect.
    fn invalidate_session(&self) {
        let mut st = self.state.lock().unwrap();
        st.current = None;
        st.assignments = None;
    }

    /// Every update reported for `id`, in order.
    fn updates_for(&self, id: &str) -> Vec<TaskStatus> {
        let st = self.state.lock().unwrap();
        st.updates
            .iter()
            .filter(|u| u.task_id == id)
            .map(|u| u.status.clone())
            .collect()
    }

    /// Waits until some reported status of `id` satisfies `pred`; returns it.
    async fn wait_status(&self, id: &str, pred: impl Fn(&TaskStatus) -> bool) -> TaskStatus {
        let mut rx = self.version.subscribe();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.updates_for(id).into_iter().find(|s| pred(s)) {
                return s;
            }
            let seen = self.updates_for(id);
            let res = tokio::time::timeout_at(deadline, rx.changed()).await;
            assert!(
                res.is_ok(),
                "timed out waiting for a status of {id}; seen: {seen:#?}"
            );
        }
    }

    async fn wait_state(&self, id: &str, state: TaskState) -> TaskStatus {
        self.wait_status(id, |s| s.state == state).await
    }
}

#[async_trait::async_trait]
impl DispatcherApi for FakeDispatcher {
    async fn session(
        &self,
        req: SessionRequest,
    ) -> Result<DispatchStream<SessionMessage>, DispatchError> {
        let id = {
            let mut st = self.state.lock().unwrap();
            st.sessions += 1;
            let id = format!("session-{}", st.sessions);
            st.current = Some(id.clone());
            id
        };
        self.bump();
        let first = SessionMessage {
            session_id: id,
            node: Node {
                id: req.node_id,
                description: req.description,
                ..Default::default()
            },
            managers: vec![],
            heartbeat_period_ms: 200,
            ingress: None,
            discovery: None,
            trust_roots: None,
        };
        Ok(futures::stream::once(async move { Ok(first) })
            .chain(futures::stream::pending())
            .boxed())
    }

    async fn heartbeat(&self, session_id: &str) -> Result<Duration, DispatchError> {
        let st = self.state.lock().unwrap();
        if st.current.as_deref() == Some(session_id) {
            Ok(Duration::from_millis(200))
        } else {
            Err(DispatchError::SessionInvalid)
        }
    }

    async fn assignments(
        &self,
        session_id: &str,
    ) -> Result<DispatchStream<AssignmentsMessage>, DispatchError> {
        let mut st = self.state.lock().unwrap();
        if st.current.as_deref() != Some(session_id) {
            return Err(DispatchError::SessionInvalid);
        }
        let (tx, rx) = fmpsc::unbounded();
        let complete = AssignmentsMessage {
            kind: AssignmentsKind::Complete,
            changes: st
                .tasks
                .values()
                .map(|t| AssignmentChange {
                    action: AssignmentAction::Update,
                    assignment: Assignment::Task(t.clone()),
                })
                .collect(),
        };
        let _ = tx.unbounded_send(Ok(complete));
        st.assignments = Some(tx);
        st.assignment_streams += 1;
        Ok(rx.boxed())
    }

    async fn update_task_status(
        &self,
        session_id: &str,
        updates: Vec<TaskStatusUpdate>,
    ) -> Result<(), DispatchError> {
        {
            let mut st = self.state.lock().unwrap();
            if st.current.as_deref() != Some(session_id) {
                return Err(DispatchError::SessionInvalid);
            }
            for u in updates {
                if let Some(t) = st.tasks.get_mut(&u.task_id) {
                    t.status = u.status.clone();
                }
                st.updates.push(u);
            }
        }
        self.bump();
        Ok(())
    }
}

const NODE: &str = "node-under-test";

fn task(id: &str, image: &str, command: &[&str]) -> Task {
    Task {
        id: id.into(),
        service_id: "svc-agent-test".into(),
        service_name: "agenttest".into(),
        slot: 1,
        node_id: NODE.into(),
        spec: TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.into()),
                command: Some(command.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into(),
        desired_state: TaskState::RUNNING,
        status: TaskStatus {
            state: TaskState::ASSIGNED,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Polls `cond` until it holds (or fails the test after the deadline).
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    // Re-check every 25 ms: a poll interval, not a guess at how long things take.
    let mut poll = tokio::time::interval(Duration::from_millis(25));
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        poll.tick().await;
    }
}

/// Whether a process with this pid still runs (a zombie does not count).
fn process_alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next())
                .unwrap_or("X");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

async fn log_text(agent: &Agent, id: &str) -> String {
    match agent.task_logs(id, LogOptions::default()).await {
        Ok(s) => {
            let entries: Vec<_> = s.collect().await;
            entries
                .into_iter()
                .flatten()
                .map(|e| String::from_utf8_lossy(&e.line).into_owned())
                .collect()
        }
        Err(_) => String::new(),
    }
}

struct Running {
    agent: Agent,
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), swarmd_agent::AgentError>>,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        let res = tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("agent did not stop");
        res.expect("agent task panicked").expect("agent failed");
    }
}

fn start_agent(
    state_dir: &Path,
    executor: Arc<dyn Executor>,
    dispatcher: Arc<FakeDispatcher>,
) -> Running {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut config = AgentConfig::new(NODE, "127.0.0.1", state_dir, DataKey::from_bytes([9; 32]));
    config.hostname = Some("agent-test-host".into());
    let agent = Agent::new(config, executor).expect("agent");
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(agent.clone().run(dispatcher, cancel.clone()));
    Running {
        agent,
        cancel,
        handle,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_executor_runs_and_withdraws_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = Arc::new(FakeDispatcher::default());
    let exec = Arc::new(ProcessExecutor::new(dir.path()));
    let node = start_agent(dir.path(), exec, dispatcher.clone());

    dispatcher.assign(task(
        "hello1",
        "busybox:latest",
        &["sh", "-c", "echo hello; sleep 30"],
    ));
    dispatcher.assign(task("exit3", "busybox:latest", &["sh", "-c", "exit 3"]));

    let running = dispatcher.wait_state("hello1", TaskState::RUNNING).await;
    let pid = running
        .container
        .as_ref()
        .and_then(|c| c.pid)
        .expect("running status carries the pid");
    assert!(process_alive(pid));
    eventually("hello in the task log", || async {
        log_text(&node.agent, "hello1").await.contains("hello")
    })
    .await;
    let containers = node.agent.containers().await.unwrap();
    let c = containers
        .iter()
        .find(|c| c.names.as_ref().unwrap()[0] == "/agenttest.1.hello1")
        .expect("task listed as a container");
    assert_eq!(
        c.labels.as_ref().unwrap()["com.docker.swarm.task.id"],
        "hello1"
    );

    let failed = dispatcher.wait_state("exit3", TaskState::FAILED).await;
    assert_eq!(failed.err, "task: non-zero exit (3)");

    // The manager loses the session: the agent reconnects and gets a new complete set,
    // and the running task is left alone.
    dispatcher.invalidate_session();
    eventually("a new assignments stream", || async {
        dispatcher.assignment_streams() >= 2
    })
    .await;
    assert!(process_alive(pid));

    // Withdraw: the task is shut down, reported, its process gone and its dir removed.
    dispatcher.withdraw("hello1");
    let shut = dispatcher.wait_state("hello1", TaskState::SHUTDOWN).await;
    assert_eq!(shut.message, "shutdown");
    eventually("the process to be gone", || async { !process_alive(pid) }).await;
    eventually("the task dir to be removed", || async {
        !dir.path().join("tasks/hello1").exists()
    })
    .await;

    // States were reported in order, never backwards.
    let states: Vec<_> = dispatcher
        .updates_for("hello1")
        .iter()
        .map(|s| s.state)
        .collect();
    assert!(states.windows(2).all(|w| w[0] < w[1]), "{states:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_executor_readopts_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("starts");
    let script = format!("echo $$ >> {}; echo up; sleep 30", marker.display());
    let dispatcher = Arc::new(FakeDispatcher::default());
    dispatcher.assign(task("keep1", "busybox:latest", &["sh", "-c", &script]));

    let first = start_agent(
        dir.path(),
        Arc::new(ProcessExecutor::new(dir.path())),
        dispatcher.clone(),
    );
    let running = dispatcher.wait_state("keep1", TaskState::RUNNING).await;
    let pid = running.container.and_then(|c| c.pid).expect("pid");
    first.stop().await;
    // Stopping the agent leaves the task running.
    assert!(process_alive(pid), "task must survive the agent");
    let reported_before = dispatcher.updates_for("keep1").len();

    let second = start_agent(
        dir.path(),
        Arc::new(ProcessExecutor::new(dir.path())),
        dispatcher.clone(),
    );
    eventually("a second session", || async { dispatcher.sessions() >= 2 }).await;
    eventually("the task to be adopted", || async {
        match second.agent.task_status("keep1").await {
            Ok(s) => s.running && s.pid == Some(pid),
            Err(_) => false,
        }
    })
    .await;
    let starts = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(
        starts.lines().count(),
        1,
        "the task was restarted: {starts}"
    );
    // Nothing was reported backwards (or at all) for the adopted task.
    assert_eq!(dispatcher.updates_for("keep1").len(), reported_before);

    // The new agent controls the adopted process.
    dispatcher.withdraw("keep1");
    dispatcher.wait_state("keep1", TaskState::SHUTDOWN).await;
    eventually("the adopted process to be gone", || async {
        !process_alive(pid)
    })
    .await;
    second.stop().await;
}

/// The docker executor against the local engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker Engine with busybox:latest: scripts/test runs it"]
async fn docker_executor_runs_and_removes_containers() {
    let (node_id, exec, docker) =
        docker_executor("docker_executor_runs_and_removes_containers").await;
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = Arc::new(FakeDispatcher::default());
    let id = swarmd_types::ids::new_id();
    let mut t = task(&id, "busybox:latest", &["sh", "-c", "echo hello; sleep 30"]);
    t.node_id = node_id.clone();
    // sh as PID 1 ignores SIGTERM: keep the wait for SIGKILL short.
    if let Some(c) = t.spec.container_spec.as_mut() {
        c.stop_grace_period = Some(1_000_000_000);
    }
    t.endpoint_ports = vec![EndpointPortConfig {
        protocol: Some(EndpointPortConfigProtocolEnum::TCP),
        target_port: Some(80),
        published_port: Some(8080),
        publish_mode: Some(EndpointPortConfigPublishModeEnum::INGRESS),
        name: None,
    }];
    dispatcher.assign(t);
    let failing = swarmd_types::ids::new_id();
    let mut f = task(&failing, "busybox:latest", &["sh", "-c", "exit 3"]);
    f.node_id = node_id.clone();
    dispatcher.assign(f);
    let missing = swarmd_types::ids::new_id();
    let mut m = task(&missing, "no-such-image-swarmd:latest", &["true"]);
    m.node_id = node_id.clone();
    dispatcher.assign(m);

    let mut config = AgentConfig::new(
        node_id.clone(),
        "127.0.0.1",
        dir.path(),
        DataKey::generate(),
    );
    config.hostname = Some("agent-docker-test".into());
    let agent = Agent::new(config, Arc::new(exec)).unwrap();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(agent.clone().run(dispatcher.clone(), cancel.clone()));
    let node = Running {
        agent,
        cancel,
        handle,
    };

    let running = dispatcher.wait_state(&id, TaskState::RUNNING).await;
    let host_port = running
        .ports
        .as_ref()
        .and_then(|p| p.ports.as_ref())
        .and_then(|p| p.first())
        .and_then(|p| p.published_port)
        .expect("bound host port reported");
    assert!(host_port > 0);

    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![format!("com.docker.swarm.task.id={id}")],
    )]);
    let list = || {
        let docker = docker.clone();
        let filters = filters.clone();
        async move {
            docker
                .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                    all: true,
                    filters: Some(filters),
                    ..Default::default()
                }))
                .await
                .unwrap()
        }
    };
    let containers = list().await;
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c.names.as_ref().unwrap()[0], format!("/agenttest.1.{id}"));
    let labels = c.labels.as_ref().unwrap();
    assert_eq!(labels["com.docker.swarm.service.id"], "svc-agent-test");
    assert_eq!(labels["com.docker.swarm.service.name"], "agenttest");
    assert_eq!(labels["com.docker.swarm.task.id"], id);
    assert_eq!(labels["com.docker.swarm.task.name"], "agenttest.1");
    assert_eq!(labels["com.docker.swarm.node.id"], node_id);
    eventually("hello in the container log", || async {
        log_text(&node.agent, &id).await.contains("hello")
    })
    .await;

    let failed = dispatcher.wait_state(&failing, TaskState::FAILED).await;
    assert_eq!(failed.err, "task: non-zero exit (3)");
    let rejected = dispatcher.wait_state(&missing, TaskState::REJECTED).await;
    assert_eq!(rejected.err, "No such image: no-such-image-swarmd:latest");

    // Desired REMOVE: shut down, reported, container removed.
    dispatcher.set_desired(&id, TaskState::REMOVE);
    dispatcher.wait_state(&id, TaskState::SHUTDOWN).await;
    eventually("the container to be removed", || async {
        list().await.is_empty()
    })
    .await;

    // Clean up the failed task's container too.
    dispatcher.withdraw(&failing);
    dispatcher.withdraw(&missing);
    let exec = node.agent.executor().clone();
    eventually("all test containers removed", || async {
        exec.list_tasks()
            .await
            .map(|t| t.is_empty())
            .unwrap_or(false)
    })
    .await;
    node.stop().await;
}

/// A docker executor for a fresh node ID, with the engine's client. The tests using it are
/// `#[ignore]`d (scripts/test runs them); asked to run without an engine or without
/// busybox:latest, they fail and say which.
async fn docker_executor(test: &str) -> (String, DockerExecutor, bollard::Docker) {
    let node_id = format!("agent-test-{}", swarmd_types::ids::new_id());
    let exec = match tokio::time::timeout(
        Duration::from_secs(5),
        DockerExecutor::connect(DEFAULT_SOCKET, node_id.clone()),
    )
    .await
    {
        Ok(Ok(exec)) => exec,
        other => panic!(
            "{test} needs a Docker Engine at {DEFAULT_SOCKET} (scripts/ci-setup.sh starts one): {:?}",
            other.map(|r| r.err())
        ),
    };
    let docker = exec.client().clone();
    swarmd_testkit::require(
        "the image busybox:latest",
        docker.inspect_image("busybox:latest").await.is_ok(),
    );
    (node_id, exec, docker)
}

/// The docker executor puts a task on its overlay networks (from the task's attachments, the
/// ingress network left out): the engine bridge of each overlay (shared by every node on the
/// engine), the allocated address, and the gateway as DNS server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker Engine with busybox:latest: scripts/test runs it"]
async fn docker_executor_attaches_tasks_to_overlay_networks() {
    use swarmd_agent::exec::TaskRuntime;
    use swarmd_agent::exec::overlay::{OverlayAttachment, engine_network_name};

    let (node_id, exec, docker) =
        docker_executor("docker_executor_attaches_tasks_to_overlay_networks").await;
    // A subnet of 10.250.0.0/16 no other test uses, picked from the node ID.
    let third = 1 + (node_id.bytes().map(u32::from).sum::<u32>() % 250);
    let net = |name: &str, id: String, third: u32, host: u32| OverlayAttachment {
        network_id: id,
        network_name: name.into(),
        subnet: format!("10.250.{third}.0/24"),
        gateway: format!("10.250.{third}.1"),
        address: format!("10.250.{third}.{host}"),
    };
    // The attachment the manager's allocator writes for `a`.
    let attachment = |a: &OverlayAttachment, ingress: bool| swarmd_types::NetworkAttachment {
        network_id: a.network_id.clone(),
        addresses: vec![format!("{}/24", a.address)],
        aliases: vec!["web".into()],
        network: Some(swarmd_types::AttachedNetwork {
            name: a.network_name.clone(),
            subnet: a.subnet.clone(),
            gateway: a.gateway.clone(),
            vxlan_id: 4097,
            ingress,
        }),
    };
    let front_id = swarmd_types::ids::new_id();
    let back_id = swarmd_types::ids::new_id();
    let back_third = (third % 250) + 1;

    /// Removes the test's containers and engine networks, even when the test fails.
    struct Cleanup(bollard::Docker, Vec<String>, Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let (docker, containers, networks) = (self.0.clone(), self.1.clone(), self.2.clone());
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    for c in containers {
                        let _ = docker
                            .remove_container(
                                &c,
                                Some(bollard::query_parameters::RemoveContainerOptions {
                                    force: true,
                                    ..Default::default()
                                }),
                            )
                            .await;
                    }
                    for n in networks {
                        let _ = docker.remove_network(&n).await;
                    }
                });
            })
            .join();
        }
    }

    let server_id = swarmd_types::ids::new_id();
    let mut server = task(&server_id, "busybox:latest", &["sleep", "60"]);
    server.node_id = node_id.clone();
    let front = net("front", front_id.clone(), third, 10);
    let back = net("back", back_id.clone(), back_third, 20);
    let ingress = net("ingress", swarmd_types::ids::new_id(), 0, 30);
    server.networks = vec![
        attachment(&ingress, true),
        attachment(&front, false),
        attachment(&back, false),
    ];
    let srt = TaskRuntime::from_task(&server, "127.0.0.1");
    assert_eq!(
        srt.networks,
        vec![front.clone(), back.clone()],
        "the overlays in order, without ingress"
    );

    let client_id = swarmd_types::ids::new_id();
    let probe = format!("ping -c1 -W3 10.250.{third}.10 && grep -q 'nameserver' /etc/resolv.conf");
    let mut client = task(&client_id, "busybox:latest", &["sh", "-c", &probe]);
    client.node_id = node_id.clone();
    client.networks = vec![attachment(
        &net("front", front_id.clone(), third, 11),
        false,
    )];
    let crt = TaskRuntime::from_task(&client, "127.0.0.1");

    let _cleanup = Cleanup(
        docker.clone(),
        vec![srt.container_name.clone(), crt.container_name.clone()],
        vec![engine_network_name(&front), engine_network_name(&back)],
    );

    let s = exec.controller(&srt);
    s.prepare().await.unwrap();
    s.start().await.unwrap();
    let ins = docker
        .inspect_container(&srt.container_name, None)
        .await
        .unwrap();
    let nets = ins.network_settings.unwrap().networks.unwrap();
    assert_eq!(
        nets[&engine_network_name(&front)].ip_address.as_deref(),
        Some(format!("10.250.{third}.10").as_str())
    );
    assert_eq!(
        nets[&engine_network_name(&back)].ip_address.as_deref(),
        Some(format!("10.250.{back_third}.20").as_str())
    );
    assert_eq!(
        ins.host_config.unwrap().dns,
        Some(vec![format!("10.250.{third}.1")]),
        "the gateway (the node's DNS server) resolves for the container"
    );

    // A second task on the same overlay reaches the first by address.
    let c = exec.controller(&crt);
    c.prepare().await.unwrap();
    c.start().await.unwrap();
    let exit = tokio::time::timeout(DEADLINE, c.wait())
        .await
        .expect("the probe ends")
        .unwrap();
    assert_eq!(exit.code, 0, "probe failed: {exit:?}");

    // The engine network is shared: preparing again (another node on this engine) is fine.
    swarmd_agent::exec::overlay::ensure_network(&docker, &front)
        .await
        .unwrap();
}

/// `wait` on a running container learns how it ended from the executor's engine event
/// stream: its own exit code, SIGKILL from outside (137), and removal behind our back (the
/// die event's code, as the container is gone by the time anyone inspects). Several
/// waiters share the one stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker Engine with busybox:latest: scripts/test runs it"]
async fn docker_wait_follows_engine_events() {
    use swarmd_agent::exec::TaskRuntime;

    let (node_id, exec, docker) = docker_executor("docker_wait_follows_engine_events").await;
    // The gate file makes the first container exit only once its waiter is waiting.
    let gate = tempfile::tempdir().unwrap();
    let runtime = |args: &[&str]| {
        let mut t = task(&swarmd_types::ids::new_id(), "busybox:latest", args);
        t.node_id = node_id.clone();
        if let Some(c) = t.spec.container_spec.as_mut() {
            c.mounts = Some(vec![bollard_stubs::models::Mount {
                target: Some("/gate".into()),
                source: Some(gate.path().to_string_lossy().into_owned()),
                typ: Some(bollard_stubs::models::MountType::BIND),
                ..Default::default()
            }]);
        }
        TaskRuntime::from_task(&t, "127.0.0.1")
    };
    let exits = runtime(&[
        "sh",
        "-c",
        "while [ ! -e /gate/go ]; do sleep 0.1; done; exit 7",
    ]);
    let killed = runtime(&["sleep", "60"]);
    let removed = runtime(&["sleep", "60"]);
    let mut waits = Vec::new();
    for rt in [&exits, &killed, &removed] {
        let c = exec.controller(rt);
        c.prepare().await.unwrap();
        c.start().await.unwrap();
        waits.push(tokio::spawn(async move { c.wait().await }));
    }
    // Act only once all three wait on the event stream, so the events decide.
    eventually("three containers watched", || async { exec.watched() == 3 }).await;
    std::fs::write(gate.path().join("go"), b"").unwrap();
    docker
        .kill_container(
            &killed.container_name,
            Some(bollard::query_parameters::KillContainerOptions {
                signal: "SIGKILL".into(),
            }),
        )
        .await
        .unwrap();
    docker
        .remove_container(
            &removed.container_name,
            Some(bollard::query_parameters::RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let mut codes = Vec::new();
    for w in waits {
        let res = tokio::time::timeout(DEADLINE, w)
            .await
            .expect("wait returns after the container ends")
            .unwrap();
        codes.push(res.map(|e| e.code));
    }
    for rt in [&exits, &killed] {
        let _ = exec.controller(rt).remove().await;
    }
    assert_eq!(codes[0], Ok(7), "own exit code");
    assert_eq!(codes[1], Ok(137), "SIGKILL from outside");
    assert_eq!(codes[2], Ok(137), "removed behind our back");
    assert_eq!(exec.watched(), 0, "waiters unsubscribe");
}
