//! The test transport's fault model, call by call: what a caller sees for a delayed,
//! blocked, isolated, partitioned, lossy or unregistered link, and that healing undoes it.
//! The cluster tests and the simulation rely on exactly this behaviour.

mod common;

use std::time::Duration;

use common::*;
use openraft::errors::RPCError;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::VoteRequest;
use swarmd_raft::testing::RouterStats;
use swarmd_raft::{Member, NetworkFactory, TypeConfig};
use tokio::time::Instant;

/// A sender id that is registered (the router refuses calls from unknown nodes) but is not
/// a Raft member.
const PROBE: u64 = 99;
const TTL: Duration = Duration::from_millis(300);

#[derive(Debug, PartialEq)]
enum Seen {
    Answer,
    Timeout,
    Unreachable,
    Other,
}

#[tokio::test(start_paused = true)]
async fn router_delays_drops_refuses_and_heals_as_documented() {
    init_tracing();
    // One voter: no peer traffic besides the probe's calls, so the counters are exact.
    let c = Cluster::new(1).await;
    let r = c.router.clone();
    r.register(PROBE, c.node(1).rpc_handler());
    let mut client = NetworkFactory::in_process(PROBE, r.clone())
        .new_client(1, &Member { addr: addr(1) })
        .await;

    // A stale (term 0) vote request: node 1 answers it and ignores it.
    let mut call = async || {
        let req = VoteRequest::new(openraft::alias::VoteOf::<TypeConfig>::new(0, PROBE), None);
        let t0 = Instant::now();
        let seen = match client.vote(req, RPCOption::new(TTL)).await {
            Ok(resp) => {
                assert!(!resp.is_granted_to(&openraft::alias::VoteOf::<TypeConfig>::new(0, PROBE)));
                Seen::Answer
            }
            Err(RPCError::Timeout(_)) => Seen::Timeout,
            Err(RPCError::Unreachable(_)) => Seen::Unreachable,
            Err(_) => Seen::Other,
        };
        (seen, t0.elapsed())
    };
    let since = |before: RouterStats| {
        let now = r.stats();
        (
            now.delivered - before.delivered,
            now.dropped - before.dropped,
            now.refused - before.refused,
        )
    };

    // Healthy: answered at once.
    let s = r.stats();
    let (seen, took) = call().await;
    assert_eq!(seen, Seen::Answer);
    assert!(took < Duration::from_millis(5), "{took:?}");
    assert_eq!(since(s), (1, 0, 0));

    // Delay both ways: answered after both delays.
    r.set_delay(PROBE, 1, Duration::from_millis(100));
    r.set_delay(1, PROBE, Duration::from_millis(50));
    let (seen, took) = call().await;
    assert_eq!(seen, Seen::Answer);
    assert!(took >= Duration::from_millis(150) && took < TTL, "{took:?}");

    // A delay past the caller's deadline: a timeout at the deadline.
    r.set_delay(PROBE, 1, Duration::from_millis(400));
    let (seen, took) = call().await;
    assert_eq!(seen, Seen::Timeout);
    assert!(
        took >= TTL && took < TTL + Duration::from_millis(5),
        "{took:?}"
    );
    r.heal();

    // Blocked request: never handled; the caller times out.
    let s = r.stats();
    r.block(PROBE, 1);
    let (seen, took) = call().await;
    assert_eq!((seen, since(s)), (Seen::Timeout, (0, 1, 0)));
    assert!(took >= TTL);
    r.unblock(PROBE, 1);
    assert_eq!(call().await.0, Seen::Answer);

    // Blocked response: handled, but the answer is lost.
    let s = r.stats();
    r.block(1, PROBE);
    let (seen, _) = call().await;
    assert_eq!((seen, since(s)), (Seen::Timeout, (1, 1, 0)));
    r.heal();

    // Isolation, both ways, until reconnected.
    r.isolate(1);
    assert!(!r.can_reach(PROBE, 1) && !r.can_reach(1, PROBE));
    assert_eq!(call().await.0, Seen::Timeout);
    r.reconnect(1);
    assert_eq!(call().await.0, Seen::Answer);

    // A partition between groups, until healed.
    r.partition(&[&[PROBE], &[1]]);
    assert_eq!(call().await.0, Seen::Timeout);
    r.heal();
    assert!(r.can_reach(PROBE, 1));
    assert_eq!(call().await.0, Seen::Answer);

    // Total loss, then none.
    r.set_loss(1.0);
    assert_eq!(call().await.0, Seen::Timeout);
    r.set_loss(0.0);
    assert_eq!(call().await.0, Seen::Answer);

    // An unregistered (crashed) target: refused at once, like a closed port.
    let s = r.stats();
    r.unregister(1);
    let (seen, took) = call().await;
    assert_eq!((seen, since(s)), (Seen::Unreachable, (0, 0, 1)));
    assert!(took < Duration::from_millis(5), "{took:?}");
    r.register(1, c.node(1).rpc_handler());
    assert_eq!(call().await.0, Seen::Answer);
}
