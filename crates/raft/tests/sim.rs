//! Seeded fault simulation of 3 or 5 managers: random partitions, isolated nodes, lossy and
//! slow links, crashes and restarts, demotions (the leader too) and promotions (sometimes
//! of a wiped manager), interleaved with writes and task state updates — some faults land
//! while writes are in flight; after each run the Raft invariants are checked.
//!
//! ## Why not turmoil
//! This is a seeded scheduler over the in-process [`Router`] on tokio's paused clock, not a
//! turmoil simulation, because turmoil cannot carry this stack as it is:
//! - the production transport is tonic over our own rustls connector (`swarmd_rpc`), which
//!   dials real sockets; turmoil only simulates its own `turmoil::net` types, so we would
//!   need a second wire protocol just for the simulation — the router instead carries the
//!   production payloads to the production `RaftRpcHandler`;
//! - storage is real redb with fsync on tokio's blocking pool. turmoil advances simulated
//!   time by fixed steps no matter what blocking work is in flight, so a slow fsync turns
//!   into arbitrary simulated time and fires elections spuriously; tokio's paused clock does
//!   not auto-advance while a `spawn_blocking` task runs.
//!
//! ## What the seed fixes
//! The seed fixes the cluster size, snapshot interval, the fault schedule (which links,
//! nodes, when, for how long in virtual time), the router's random loss and the workload.
//! It does not make a run bit-for-bit reproducible: openraft draws election timeouts from
//! its own unseeded RNG and fsyncs finish in real time. A failing seed is printed and can
//! be rerun alone (`SIM_SEED=<seed>`); `SIM_SEEDS=<n>` runs more seeds, from
//! `SIM_FIRST_SEED` (default 1).
//!
//! ## Invariants checked after every run (after healing and restarting everything)
//! 1. At most one leader per term (every node's metrics, watched for the whole run).
//! 2. No acknowledged write lost: every `Ok(index)` write is on every replica, created at
//!    exactly that index.
//! 3. A certainly failed write (`Unavailable`, `NotLeader`) is on no replica.
//! 4. Replicas are identical: same objects at the same versions, same applied index.
//! 5. (During the run) a linearizable read that succeeds sees every write acknowledged
//!    before it began.
//! 6. A task's state never goes backwards on any replica (every applied change watched),
//!    and ends at least at the last acknowledged state.
//! 7. Nothing panicked, spawned tasks included (a crashed Raft core is a failure even if
//!    the cluster recovered around it).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use swarmd_raft::NodeId;
use swarmd_raft::testing::Router;
use swarmd_store::{EventBatch, MemoryStore, ProposeError, Proposer};
use swarmd_types::models::TaskState;
use swarmd_types::{Object, Task, TaskStatus};
use tokio::task::JoinHandle;

/// Seeds run by default: enough variety for CI within its time budget.
const DEFAULT_SEEDS: u64 = 12;
/// Fault/workload steps per run.
const STEPS: usize = 60;
const TASKS: usize = 3;
/// Upper bound on a membership change (two proposals, or a learner's catch-up, each bounded).
const MEMBERSHIP_BOUND: Duration = Duration::from_secs(30);
/// The forward path a simulated agent walks a task through.
const TASK_PATH: [TaskState; 8] = [
    TaskState::NEW,
    TaskState::PENDING,
    TaskState::ASSIGNED,
    TaskState::ACCEPTED,
    TaskState::PREPARING,
    TaskState::STARTING,
    TaskState::RUNNING,
    TaskState::COMPLETE,
];

/// SplitMix64: the simulation's only source of randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Task states each replica applied, in order, checked as they arrive.
#[derive(Default)]
struct TaskMonitor {
    violations: Mutex<Vec<String>>,
}

impl TaskMonitor {
    /// Watches one incarnation of node `id`'s store for a task moving backwards.
    fn watch(self: &Arc<Self>, id: NodeId, store: Arc<MemoryStore>) -> JoinHandle<()> {
        let me = self.clone();
        let mut rx = store.watch();
        tokio::spawn(async move {
            let mut seen: BTreeMap<String, TaskState> = BTreeMap::new();
            let mut check = |t: &Task, seen: &mut BTreeMap<String, TaskState>| {
                if let Some(prev) = seen.get(&t.id)
                    && t.status.state < *prev
                {
                    me.violations.lock().unwrap().push(format!(
                        "node {id}: task {} went from {prev:?} back to {:?}",
                        t.id, t.status.state
                    ));
                }
                seen.insert(t.id.clone(), t.status.state);
            };
            let resync =
                |seen: &mut BTreeMap<String, TaskState>,
                 check: &mut dyn FnMut(&Task, &mut BTreeMap<String, TaskState>)| {
                    let tasks: Vec<Task> = store.view(|t| t.tasks.values().cloned().collect());
                    for t in &tasks {
                        check(t, seen);
                    }
                };
            loop {
                match rx.recv().await {
                    Ok(batch) => match &*batch {
                        EventBatch::Commit { events, .. } => {
                            for e in events {
                                if let Object::Task(t) = &e.object
                                    && e.action != swarmd_store::EventAction::Removed
                                {
                                    check(t, &mut seen);
                                }
                            }
                        }
                        EventBatch::Reset { .. } => resync(&mut seen, &mut check),
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        resync(&mut seen, &mut check)
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }
}

fn task(i: usize) -> Task {
    Task {
        id: format!("task-{i}"),
        service_id: "svc".into(),
        service_name: "svc".into(),
        slot: i as u64 + 1,
        status: TaskStatus {
            state: TaskState::NEW,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Outcomes of one run, for the log line.
#[derive(Debug, Default)]
struct Tally {
    acked: usize,
    refused: usize,
    unknown: usize,
    task_moves: usize,
    crashes: usize,
    partitions: usize,
    demotions: usize,
    promotions: usize,
    wipes: usize,
    reads: usize,
    midflight: usize,
}

/// A node to send a client request to: usually one that believes it leads, else any.
fn target(c: &Cluster, rng: &mut Rng) -> Option<NodeId> {
    let running = c.running();
    if running.is_empty() {
        return None;
    }
    let leaders: Vec<_> = running
        .iter()
        .copied()
        .filter(|id| c.node(*id).is_leader())
        .collect();
    if !leaders.is_empty() && rng.below(10) < 8 {
        Some(rng.pick(&leaders))
    } else {
        Some(rng.pick(&running))
    }
}

async fn run(seed: u64) -> Tally {
    let mut rng = Rng(seed);
    let n = if rng.below(2) == 0 { 3 } else { 5 };
    let opts = Options {
        snapshot_every: 15 + rng.below(30),
        keep_logs_after_snapshot: 3,
    };
    let mut c = Cluster::with_options(n, opts, Router::with_seed(seed)).await;
    let monitor = Arc::new(TaskMonitor::default());
    let mut watchers: Vec<JoinHandle<()>> = c
        .ids()
        .into_iter()
        .map(|id| monitor.watch(id, c.store(id)))
        .collect();

    let mut tally = Tally::default();
    let mut acked: Vec<(String, u64)> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut acked_state: BTreeMap<String, TaskState> = BTreeMap::new();
    for i in 0..TASKS {
        let t = task(i);
        let leader = c.wait_leader().await;
        c.propose(leader, create_task(t.clone()))
            .await
            .expect("create task before any fault");
        acked_state.insert(t.id, TaskState::NEW);
    }

    let mut next_key = 0;
    // Managers removed from the membership by a committed change, not yet added back.
    let mut removed: BTreeSet<NodeId> = BTreeSet::new();
    for _step in 0..STEPS {
        let roll = rng.below(100);
        match roll {
            // A linearizable read: once the barrier passes, the node's store holds every
            // write acknowledged before the read began.
            0..=4 => {
                let Some(id) = target(&c, &mut rng) else {
                    continue;
                };
                let before = acked.clone();
                let node = c.node(id);
                let res = tokio::time::timeout(CALL_BOUND, node.ensure_linearizable())
                    .await
                    .expect("a read barrier never hangs");
                if let Ok(at) = res {
                    tally.reads += 1;
                    for (k, index) in &before {
                        assert!(
                            *index <= at,
                            "read on {id} linearized at {at}, before {k}@{index}"
                        );
                        assert_eq!(
                            c.version_of(id, k),
                            Some(*index),
                            "stale linearizable read on node {id}: {k} missing"
                        );
                    }
                }
            }
            // A write (sometimes a burst of concurrent ones) to a likely leader.
            5..=34 => {
                let Some(id) = target(&c, &mut rng) else {
                    continue;
                };
                let burst = 1 + rng.below(3) as usize;
                let keys: Vec<String> = (0..burst)
                    .map(|_| {
                        next_key += 1;
                        format!("w{next_key}")
                    })
                    .collect();
                // The calls hold their own handle on the node, so a fault can land while
                // they are in flight (a partition, isolation, or the node stopping).
                let node = c.node(id);
                let calls = futures::future::join_all(keys.iter().map(|k| {
                    let node = node.clone();
                    let batch = create(k);
                    async move {
                        tokio::time::timeout(CALL_BOUND, node.propose(batch))
                            .await
                            .unwrap_or_else(|_| panic!("a proposal on node {id} hung"))
                    }
                }));
                drop(node);
                let midflight = rng.below(10) < 4;
                let (kind, after) = (rng.below(4), rng.below(300));
                let others: Vec<NodeId> = c.ids().into_iter().filter(|o| *o != id).collect();
                let buddy = rng.pick(&others);
                let fault = async {
                    if !midflight {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(after)).await;
                    tally.midflight += 1;
                    match kind {
                        0 => c.router.isolate(id),
                        1 => {
                            c.router.heal();
                            let rest: Vec<NodeId> =
                                others.iter().copied().filter(|o| *o != buddy).collect();
                            c.router.partition(&[&[id, buddy], &rest]);
                        }
                        2 if c.running().len() > 1 => c.stop(id).await,
                        _ => c.router.heal(),
                    }
                };
                let (results, ()) = tokio::join!(calls, fault);
                for (k, r) in keys.into_iter().zip(results) {
                    match r {
                        Ok(index) => {
                            tally.acked += 1;
                            acked.push((k, index));
                        }
                        Err(ProposeError::Unavailable(_) | ProposeError::NotLeader { .. }) => {
                            tally.refused += 1;
                            refused.push(k);
                        }
                        Err(ProposeError::OutcomeUnknown(_)) => tally.unknown += 1,
                        Err(e @ ProposeError::Store(_)) => panic!("write {k}: {e}"),
                    }
                }
            }
            // A simulated agent moves a task one step forward, from what its node has.
            35..=49 => {
                let Some(id) = target(&c, &mut rng) else {
                    continue;
                };
                let tid = format!("task-{}", rng.below(TASKS as u64));
                let Some(mut t) = c.store(id).view(|v| v.tasks.get(&tid).cloned()) else {
                    continue;
                };
                let pos = TASK_PATH.iter().position(|s| *s == t.status.state).unwrap();
                let Some(next) = TASK_PATH.get(pos + 1) else {
                    continue;
                };
                t.status.state = *next;
                if c.propose(id, update_task(t)).await.is_ok() {
                    tally.task_moves += 1;
                    let a = acked_state.get_mut(&tid).unwrap();
                    if *next > *a {
                        *a = *next;
                    }
                }
            }
            // Split the network in two at random.
            50..=57 => {
                let ids = c.ids();
                let (a, b): (Vec<NodeId>, Vec<NodeId>) =
                    ids.iter().copied().partition(|_| rng.below(2) == 0);
                c.router.heal();
                c.router.partition(&[&a, &b]);
                tally.partitions += 1;
            }
            58..=63 => c.router.isolate(rng.pick(&c.ids())),
            64..=71 => c.router.heal(),
            // Crash a running node (the others may lose their quorum).
            72..=78 => {
                let running = c.running();
                if running.len() > 1 {
                    let id = rng.pick(&running);
                    if rng.below(2) == 0 {
                        c.stop(id).await;
                    } else {
                        c.crash(id);
                    }
                    tally.crashes += 1;
                }
            }
            // Bring a crashed node back.
            79..=85 => {
                let down: Vec<NodeId> = c
                    .ids()
                    .into_iter()
                    .filter(|id| !c.is_running(*id))
                    .collect();
                if !down.is_empty() {
                    let id = rng.pick(&down);
                    c.start(id).await;
                    watchers.push(monitor.watch(id, c.store(id)));
                }
            }
            // Demote: a leader removes a voter (possibly itself).
            86..=89 => {
                let Some(id) = target(&c, &mut rng) else {
                    continue;
                };
                let voters: Vec<NodeId> = c
                    .node(id)
                    .members()
                    .into_iter()
                    .filter(|m| m.2)
                    .map(|m| m.0)
                    .collect();
                if voters.len() <= 2 {
                    continue;
                }
                let victim = rng.pick(&voters);
                let res = tokio::time::timeout(MEMBERSHIP_BOUND, c.node(id).remove_voter(victim))
                    .await
                    .expect("remove_voter is bounded");
                if res.is_ok() {
                    removed.insert(victim);
                    tally.demotions += 1;
                }
            }
            // Promote a removed manager back, sometimes with a wiped disk.
            90..=93 => {
                let Some(id) = target(&c, &mut rng) else {
                    continue;
                };
                let candidates: Vec<NodeId> = removed.iter().copied().collect();
                if candidates.is_empty() {
                    continue;
                }
                let back = rng.pick(&candidates);
                if back == id {
                    continue;
                }
                // Only a node whose removal committed may lose its disk: a voter that
                // forgets its log and votes is outside what Raft tolerates.
                if rng.below(2) == 0 {
                    c.wipe(back).await;
                    tally.wipes += 1;
                }
                if !c.is_running(back) {
                    c.start(back).await;
                    watchers.push(monitor.watch(back, c.store(back)));
                }
                let res =
                    tokio::time::timeout(MEMBERSHIP_BOUND, c.node(id).add_voter(back, addr(back)))
                        .await
                        .expect("add_voter is bounded");
                // Whatever the outcome, it may be a voter now: never wipe it again unless
                // a later removal commits. (The final phase adds back whoever is missing.)
                removed.remove(&back);
                if res.is_ok() {
                    tally.promotions += 1;
                }
            }
            94..=96 => c.router.set_loss(rng.below(25) as f64 / 100.0),
            _ => c
                .router
                .set_default_delay(Duration::from_millis(rng.below(60))),
        }
        // Let virtual time pass: elections, lease expiries, catch-up. Half the steps are
        // short, so faults also land while a cut-off leader still holds its lease and
        // appends entries that will never commit (and must be truncated later).
        let pause = if rng.below(2) == 0 { 200 } else { 1500 };
        tokio::time::sleep(Duration::from_millis(rng.below(pause))).await;
    }

    // Heal everything, bring everyone back, and commit once more in the final term so
    // every replica can apply all that was committed.
    c.router.heal();
    for id in c.ids() {
        if !c.is_running(id) {
            c.start(id).await;
            watchers.push(monitor.watch(id, c.store(id)));
        }
    }
    // Every manager a voter again.
    let start = tokio::time::Instant::now();
    loop {
        let leader = c.wait_leader().await;
        // Its membership view counts only once a quorum confirms it still leads.
        let confirmed = tokio::time::timeout(CALL_BOUND, c.node(leader).ensure_linearizable())
            .await
            .expect("a read barrier never hangs");
        if confirmed.is_err() {
            assert!(
                start.elapsed() < DEADLINE,
                "no confirmed leader: {confirmed:?}"
            );
            // Try again once the cluster has moved (an election, a heartbeat, a commit).
            c.changes()
                .wait(DEADLINE.saturating_sub(start.elapsed()))
                .await;
            continue;
        }
        let voters: BTreeSet<NodeId> = c
            .node(leader)
            .members()
            .into_iter()
            .filter(|m| m.2)
            .map(|m| m.0)
            .collect();
        let Some(missing) = c.ids().into_iter().find(|id| !voters.contains(id)) else {
            break;
        };
        let res = tokio::time::timeout(
            MEMBERSHIP_BOUND,
            c.node(leader).add_voter(missing, addr(missing)),
        )
        .await
        .expect("add_voter is bounded");
        if let Err(e) = res {
            assert!(
                start.elapsed() < DEADLINE,
                "could not add {missing} back: {e}"
            );
            // Try again once the cluster has moved (an election, a heartbeat, a commit).
            c.changes()
                .wait(DEADLINE.saturating_sub(start.elapsed()))
                .await;
        }
    }
    acked.push(("final".into(), c.write("final").await));

    // 1. One leader per term.
    c.assert_one_leader_per_term();
    // 2. Nothing acknowledged lost.
    c.assert_all_present(&acked).await;
    // 4. Identical replicas, once all have applied the same index.
    let leader = c.wait_leader().await;
    c.wait_until("every replica applies the leader's log", || {
        let want = c.store(leader).applied_index();
        c.ids()
            .iter()
            .all(|id| c.store(*id).applied_index() == want)
    })
    .await;
    let reference = serde_json::to_value(c.store(leader).snapshot()).unwrap();
    for id in c.ids() {
        let snap = serde_json::to_value(c.store(id).snapshot()).unwrap();
        assert!(
            snap == reference,
            "replica {id} differs from the leader {leader}'s"
        );
    }
    // 3. Certain failures never applied.
    for id in c.ids() {
        for k in &refused {
            assert_eq!(
                c.version_of(id, k),
                None,
                "node {id}: refused write {k} applied"
            );
        }
    }
    // 5. Tasks only moved forward, and kept every acknowledged move.
    let violations = monitor.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:#?}");
    for id in c.ids() {
        for (tid, want) in &acked_state {
            let got = c
                .store(id)
                .view(|v| v.tasks.get(tid).map(|t| t.status.state))
                .unwrap_or_else(|| panic!("node {id} lost task {tid}"));
            assert!(
                got >= *want,
                "node {id}: task {tid} at {got:?}, acknowledged {want:?}"
            );
        }
    }
    for w in watchers {
        w.abort();
    }
    c.shutdown().await;
    tally
}

/// Prints the seed of a run that panicked, so it can be rerun alone.
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "sim: FAILED with seed {0}; rerun with SIM_SEED={0} cargo nextest run -p swarmd-raft -E 'binary(sim)'",
                self.0
            );
        }
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("SIM_SEED") {
        return vec![s.parse().expect("SIM_SEED is a number")];
    }
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .map(|s| s.parse().expect("SIM_SEEDS is a number"))
        .unwrap_or(DEFAULT_SEEDS);
    let first: u64 = std::env::var("SIM_FIRST_SEED")
        .ok()
        .map(|s| s.parse().expect("SIM_FIRST_SEED is a number"))
        .unwrap_or(1);
    (first..first + n).collect()
}

/// Panics anywhere in the process, spawned tasks included: a Raft core that panics is
/// caught by tokio and would otherwise only show up later as a node that stopped working.
static PANICS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn seeded_faults_keep_raft_invariants() {
    init_tracing();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info)
    }));
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let started = std::time::Instant::now();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let tally = rt.block_on(run(seed));
        drop(rt);
        // 7. Nothing panicked: no Raft core (or other task) crashed during the run.
        assert_eq!(
            PANICS.load(Ordering::SeqCst),
            0,
            "a task panicked (see above)"
        );
        eprintln!(
            "sim seed {seed}: {tally:?} in {:?} (wall clock)",
            started.elapsed()
        );
    }
}
