//! The pool over [`Discovery::Members`], without engines: a FAKE dialer (named so) that
//! counts dials and refuses them. Members come and go with the watch; a member whose facts
//! change keeps its engine task (no new dial) and shows the new facts at once.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use swarmd_engine_api::dial::{Dialer, EngineStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::discovery::{Discovery, EngineAddr, PoolMember, RefreshIntervals};
use crate::pool::{Pool, PoolConfig};

const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(10);

/// Counts dials per upstream and refuses every one.
#[derive(Default)]
struct FakeRefusingDialer {
    dials: Mutex<HashMap<String, usize>>,
}

impl FakeRefusingDialer {
    fn dials(&self, upstream: &str) -> usize {
        self.dials
            .lock()
            .unwrap()
            .get(upstream)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl Dialer for FakeRefusingDialer {
    async fn dial(&self, upstream: &str) -> io::Result<EngineStream> {
        *self
            .dials
            .lock()
            .unwrap()
            .entry(upstream.to_owned())
            .or_default() += 1;
        Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "fake: refused",
        ))
    }
}

fn member(id: &str, name: &str, zone: &str) -> PoolMember {
    PoolMember {
        upstream: EngineAddr::Dialed(format!("node://{id}")),
        name: Some(name.to_owned()),
        labels: BTreeMap::from([("zone".to_owned(), zone.to_owned())]),
        ip: format!("10.0.0.{}", id.len()),
        accepts_new: true,
    }
}

/// `(upstream, zone label)` of every engine in the pool's view, in address order.
fn view(pool: &Pool) -> Vec<(String, String)> {
    pool.engines()
        .into_iter()
        .map(|e| {
            let zone = e.node.labels.get("zone").cloned().unwrap_or_default();
            (e.addr.to_string(), zone)
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, z)| (a.to_string(), z.to_string()))
        .collect()
}

#[tokio::test]
async fn members_follow_the_watch_and_change_in_place() {
    let dialer = Arc::new(FakeRefusingDialer::default());
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let (tx, rx) = watch::channel(vec![member("a", "alpha", "1")]);
    // Refreshed hourly: after its first (refused) dial, an engine's task dials again only
    // after an hour, so a second dial means a new task.
    let pool = hourly_pool(dialer.clone(), None, rx, cancel.clone());
    // Known at start, as a fixed list's engines.
    assert_eq!(view(&pool), pairs(&[("node://a", "1")]));
    swarmd_testkit::wait_until_async(WAIT, POLL, "node://a dialled", || {
        let n = dialer.dials("node://a");
        async move { n == 1 }
    })
    .await;

    // a relabelled and renamed, b added.
    tx.send(vec![member("a", "alpha-2", "2"), member("b", "beta", "9")])
        .unwrap();
    swarmd_testkit::wait_until_async(WAIT, POLL, "node://b dialled", || {
        let n = dialer.dials("node://b");
        async move { n == 1 }
    })
    .await;
    assert_eq!(view(&pool), pairs(&[("node://a", "2"), ("node://b", "9")]));
    let a = &pool.engines()[0];
    assert_eq!(a.node.name, "alpha-2");
    assert_eq!(a.member.as_ref().map(|m| m.ip.as_str()), Some("10.0.0.1"));
    assert!(
        a.last_error
            .as_deref()
            .is_some_and(|e| e.contains("fake: refused")),
        "a's view is the one its first dial wrote: {:?}",
        a.last_error
    );
    assert_eq!(dialer.dials("node://a"), 1, "a kept its task: no new dial");

    // Drained: the scheduler's view has it, marked.
    let mut drained = member("b", "beta", "9");
    drained.accepts_new = false;
    tx.send(vec![member("a", "alpha-2", "2"), drained]).unwrap();
    swarmd_testkit::wait_until_async(WAIT, POLL, "b drained in the view", || {
        let drained = pool
            .nodes()
            .iter()
            .any(|(a, n)| a.to_string() == "node://b" && n.drained);
        async move { drained }
    })
    .await;

    // a removed (b stays drained: taking work again would refresh it at once).
    let mut drained = member("b", "beta", "9");
    drained.accepts_new = false;
    tx.send(vec![drained]).unwrap();
    swarmd_testkit::wait_until_async(WAIT, POLL, "a gone from the pool", || {
        let v = view(&pool);
        async move { v == pairs(&[("node://b", "9")]) }
    })
    .await;
    assert_eq!(dialer.dials("node://b"), 1, "b kept its task throughout");
}

/// A pool whose engines are dialled (and refused) by `dialer`, refreshed only hourly.
fn hourly_pool(
    dialer: Arc<FakeRefusingDialer>,
    unhealthy_retry: Option<Duration>,
    members: watch::Receiver<Vec<PoolMember>>,
    cancel: CancellationToken,
) -> Arc<Pool> {
    Pool::start(
        PoolConfig {
            timeout: Duration::from_secs(1),
            failure_retry: 3,
            refresh: RefreshIntervals {
                min: Duration::from_secs(3600),
                max: Duration::from_secs(3601),
            },
            heartbeat: Duration::from_secs(3600),
            tls: None,
            dialer: Some(dialer),
            unhealthy_retry,
        },
        Discovery::Members(members),
        cancel,
    )
}

/// With `unhealthy_retry` (a swarm's pool), an engine that never answered is tried again
/// within moments, not after the refresh interval: a joining node's agent offers its
/// engine just after the node shows up.
#[tokio::test]
async fn a_pending_engine_is_retried_soon_with_unhealthy_retry() {
    let dialer = Arc::new(FakeRefusingDialer::default());
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let (_tx, rx) = watch::channel(vec![member("a", "alpha", "1")]);
    let _pool = hourly_pool(
        dialer.clone(),
        Some(Duration::from_millis(20)),
        rx,
        cancel.clone(),
    );
    swarmd_testkit::wait_until_async(WAIT, POLL, "node://a dialled three times", || {
        let n = dialer.dials("node://a");
        async move { n >= 3 }
    })
    .await;
}

/// A member taking work again (a swarm node Ready again) whose engine is not healthy is
/// refreshed at once, not after its backoff.
#[tokio::test]
async fn a_member_taking_work_again_is_refreshed_at_once() {
    let dialer = Arc::new(FakeRefusingDialer::default());
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let (tx, rx) = watch::channel(vec![member("a", "alpha", "1")]);
    let pool = hourly_pool(dialer.clone(), None, rx, cancel.clone());
    swarmd_testkit::wait_until_async(WAIT, POLL, "node://a dialled", || {
        let n = dialer.dials("node://a");
        async move { n == 1 }
    })
    .await;
    let mut down = member("a", "alpha", "1");
    down.accepts_new = false;
    tx.send(vec![down]).unwrap();
    swarmd_testkit::wait_until_async(WAIT, POLL, "a drained in the view", || {
        let drained = pool.nodes().iter().any(|(_, n)| n.drained);
        async move { drained }
    })
    .await;
    assert_eq!(dialer.dials("node://a"), 1, "draining does not refresh");
    tx.send(vec![member("a", "alpha", "1")]).unwrap();
    swarmd_testkit::wait_until_async(WAIT, POLL, "node://a dialled again", || {
        let n = dialer.dials("node://a");
        async move { n == 2 }
    })
    .await;
}
