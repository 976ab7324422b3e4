//! Tunnels to the nodes' engines through their agents (issue 17), in an in-process swarm
//! over real mTLS on loopback: three managers and a worker, each node's engine socket a
//! fake engine (a tiny HTTP server on a unix socket, named so) that answers `GET /_ping`
//! with its node's name and echoes raw bytes after an upgrade.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Member, POLL, WAIT, three_managers_with, wait_leader};
use swarmd_engine_api::backend::{Backend, JoinRequest};
use swarmd_engine_api::dial::{Dialer, EngineStream};
use swarmd_node::cluster::NodeCerts;
use swarmd_rpc::{ClientOptions, EnginesClient, RpcChannel, TunnelError};
use swarmd_testkit::{unique_loopback, wait_for_async};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// A fake engine: answers `GET /_ping` with `name`, and `POST /echo` by switching
/// protocols and echoing bytes until the client's end of file, then closing its side.
fn fake_engine(socket: &Path, name: String) {
    let listener = UnixListener::bind(socket).expect("binding the fake engine's socket");
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve_fake(conn, name.clone()));
        }
    });
}

/// Reads an HTTP request head; returns its first line.
async fn request_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> std::io::Result<String> {
    let mut first = String::new();
    r.read_line(&mut first).await?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 || line == "\r\n" {
            return Ok(first);
        }
    }
}

async fn serve_fake(conn: tokio::net::UnixStream, name: String) -> std::io::Result<()> {
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    let line = request_line(&mut r).await?;
    if line.starts_with("GET /_ping ") {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            name.len()
        );
        w.write_all(head.as_bytes()).await?;
        w.write_all(name.as_bytes()).await?;
    } else if line.starts_with("POST /echo ") {
        w.write_all(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
            .await?;
        tokio::io::copy(&mut r, &mut w).await?;
    } else {
        w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .await?;
    }
    w.shutdown().await
}

/// A pool API handler as the lead registers one: answers any request with `pool-<name>`.
fn pool_api(name: String) -> swarmd_node::engines::PoolApiHandler {
    Arc::new(move |stream: EngineStream| {
        let body = format!("pool-{name}");
        tokio::spawn(async move {
            let (r, mut w) = tokio::io::split(stream);
            request_line(&mut BufReader::new(r)).await?;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            w.write_all(head.as_bytes()).await?;
            w.write_all(body.as_bytes()).await?;
            w.shutdown().await
        });
    })
}

/// The body of `GET /_ping` through a stream from `dialer`.
async fn get_ping(dialer: &Arc<dyn Dialer>, upstream: &str) -> anyhow::Result<String> {
    let mut s = dialer.dial(upstream).await?;
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: engine\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await??;
    let text = String::from_utf8(out)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "answer: {text:?}");
    Ok(body.to_string())
}

/// Sends `data` after an upgrade and reads all that comes back, the two at once (so neither
/// side's buffers fill), ending the sending side with an end of file.
async fn echo_through(dialer: &Arc<dyn Dialer>, upstream: &str, data: Vec<u8>) -> Vec<u8> {
    let s = dialer.dial(upstream).await.expect("dial");
    let (r, mut w) = tokio::io::split(s);
    w.write_all(b"POST /echo HTTP/1.1\r\nHost: engine\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut r = BufReader::new(r);
    let status = request_line(&mut r).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status:?}");
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut back = Vec::new();
    tokio::time::timeout(WAIT, r.read_to_end(&mut back))
        .await
        .expect("the echo ends")
        .unwrap();
    writer.await.unwrap();
    back
}

/// `m` joins `leader`'s swarm with the worker `token`.
async fn join_as_worker(m: &Member, leader: &Member, token: &str) {
    m.api
        .swarm_join(JoinRequest {
            listen_addr: Some(m.cluster_addr()),
            advertise_addr: Some(m.cluster_addr()),
            remote_addrs: Some(vec![leader.cluster_addr()]),
            join_token: Some(token.to_string()),
            ..Default::default()
        })
        .await
        .expect("swarm join as a worker");
}

/// The Engines service on `to`'s cluster port, called with `from`'s certificate.
fn engines_client(from: &Member, to: &Member) -> EnginesClient {
    let certs = NodeCerts::load(&from.root.join("swarm"), None).expect("certificates");
    let options = ClientOptions {
        server_name: Some(swarmd_pki::manager_server_name()),
        ..ClientOptions::default()
    };
    let tls = certs.client_config().unwrap();
    EnginesClient::new(RpcChannel::new(&to.cluster_addr(), tls, options).unwrap())
}

fn engine_socket(root: &Path) -> Option<String> {
    std::fs::create_dir_all(root).unwrap();
    Some(root.join("engine.sock").display().to_string())
}

/// The name a member's fake engine answers with.
fn name(m: &Member) -> String {
    format!("engine-of-{}", m.node.hostname)
}

/// Pings `target`'s engine through `from` until it answers (agents subscribe on the leader
/// a moment after their sessions open), then checks it is `target`'s.
async fn assert_reaches(from: &Member, target: &Member) {
    let dialer = from.node.engine_dialer();
    let upstream = format!("node://{}", target.node_id());
    let what = format!("{} reaches {upstream}", from.node.hostname);
    let body = wait_for_async(WAIT, POLL, &what, || get_ping(&dialer, &upstream)).await;
    assert_eq!(body, name(target), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn managers_reach_every_nodes_engine_and_the_leaders_pool_api_through_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = three_managers_with(dir.path(), engine_socket).await;
    for m in &members {
        fake_engine(&m.root.join("engine.sock"), name(m));
        m.node.set_pool_api(Some(pool_api(m.node.hostname.clone())));
    }
    let l = wait_leader(&members).await;
    let token = members[l]
        .api
        .swarm_inspect()
        .await
        .unwrap()
        .join_tokens
        .worker;
    let root = dir.path().join("w0");
    let worker = Member::start_with(&root, unique_loopback(), engine_socket(&root)).await;
    fake_engine(&root.join("engine.sock"), name(&worker));
    join_as_worker(&worker, &members[l], &token).await;
    // A node with no engine refuses tunnels, saying why.
    let engineless = Member::start(&dir.path().join("w1"), unique_loopback()).await;
    join_as_worker(&engineless, &members[l], &token).await;

    // From the leader and from a follower: the worker, the leader, and itself.
    let f = (l + 1) % 3;
    for from in [l, f] {
        for target in [&worker, &members[l], &members[from]] {
            assert_reaches(&members[from], target).await;
        }
    }
    // A worker's engine through a follower carries an upgraded stream both ways intact.
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 256) as u8).collect();
    let upstream = format!("node://{}", worker.node_id());
    let back = echo_through(&members[f].node.engine_dialer(), &upstream, data.clone()).await;
    assert!(back == data, "the echo differs ({} bytes back)", back.len());
    // The pool API is the leader's, from a follower too.
    let dialer = members[f].node.engine_dialer();
    let pool = wait_for_async(WAIT, POLL, "the leader's pool API", || {
        get_ping(&dialer, "pool://leader")
    })
    .await;
    assert_eq!(pool, format!("pool-{}", members[l].node.hostname));
    let dialer = members[f].node.engine_dialer();
    let to_engineless = format!("node://{}", engineless.node_id());
    let refusal = wait_for_async(WAIT, POLL, "the engineless node's refusal", || async {
        match dialer.dial(&to_engineless).await {
            Ok(_) => Ok(Err("a tunnel opened to a node without an engine")),
            Err(e) if e.to_string().contains("not connected") => Err(e),
            Err(e) => Ok(Ok(e.to_string())),
        }
    })
    .await
    .unwrap();
    assert!(
        refusal.contains("cannot reach its engine: this node has no engine socket"),
        "{refusal}"
    );
    engineless.stop().await;
    // A worker opens nothing.
    let err = worker
        .node
        .engine_dialer()
        .dial(&upstream)
        .await
        .err()
        .expect("a worker cannot dial");
    assert!(
        err.to_string().contains("not an active swarm manager"),
        "{err}"
    );

    // Straight to the cluster ports with the nodes' own certificates: a follower refuses
    // with where the leader is; the leader refuses a worker's certificate.
    let err = engines_client(&members[f], &members[f])
        .open(&upstream)
        .await
        .err()
        .expect("a follower refuses");
    assert_eq!(
        err,
        TunnelError::NotLeader {
            leader_addr: Some(members[l].cluster_addr())
        }
    );
    let err = engines_client(&worker, &members[l])
        .open(&upstream)
        .await
        .err()
        .expect("a worker is refused");
    assert!(
        matches!(&err, TunnelError::Refused(m) if m.contains("is for managers")),
        "{err:?}"
    );

    // The leader stops: tunnels go through the new one.
    let old = members.remove(l);
    old.stop().await;
    let l = wait_leader(&members).await;
    let f = 1 - l;
    for from in [l, f] {
        for target in [&worker, &members[l], &members[from]] {
            assert_reaches(&members[from], target).await;
        }
    }
    let dialer = members[f].node.engine_dialer();
    let pool = wait_for_async(WAIT, POLL, "the new leader's pool API", || {
        get_ping(&dialer, "pool://leader")
    })
    .await;
    assert_eq!(pool, format!("pool-{}", members[l].node.hostname));
    worker.stop().await;
    for m in members {
        m.stop().await;
    }
}
