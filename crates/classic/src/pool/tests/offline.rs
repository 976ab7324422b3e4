//! Engines that are dead, silent or hang up: errors within the timeout, counted failures.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use super::tcp;
use crate::discovery::EngineState;
use crate::pool::{Engine, EngineError};

#[tokio::test]
async fn dead_address_fails_within_the_timeout_and_counts_a_failure() {
    let mut engine = Engine::new(tcp(1), Duration::from_secs(2), 3).unwrap();
    let start = Instant::now();
    let err = engine.refresh().await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(err.is_connection_error(), "{err:?}");
    assert_eq!(engine.health().failures(), 1);
    assert_eq!(engine.health().state(), EngineState::Pending);
    assert_eq!(engine.node().health, 0);
    engine.refresh().await.unwrap_err();
    assert_eq!(engine.health().failures(), 2);
}

#[tokio::test]
async fn silent_engine_times_out() {
    // Accepted by the kernel's backlog, never answered.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut engine = Engine::new(tcp(port), Duration::from_millis(300), 3).unwrap();
    let start = Instant::now();
    let err = engine.refresh().await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(err, EngineError::Timeout { .. }), "{err:?}");
    assert_eq!(engine.health().failures(), 1);
}

/// Watches the events of the "engine" at 127.0.0.1:`port` (with call timeout `timeout`)
/// until the watch ends, which must be within 5 s and with an error.
async fn watch_until_it_ends(port: u16, timeout: Duration) -> (EngineError, Engine) {
    let mut engine = Engine::new(tcp(port), timeout, 3).unwrap();
    let watch = engine.watch_events(None, None, |_, _| ControlFlow::Continue(()));
    let err = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the watch ends on its own, its opening bounded by the timeout")
        .unwrap_err();
    (err, engine)
}

#[tokio::test]
async fn watch_on_a_dead_address_ends_with_an_error() {
    let (err, engine) = watch_until_it_ends(1, Duration::from_secs(2)).await;
    assert!(err.is_connection_error(), "{err:?}");
    assert_eq!(engine.health().failures(), 1);
}

#[tokio::test]
async fn watch_on_a_silent_engine_ends_with_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (err, engine) = watch_until_it_ends(port, Duration::from_millis(300)).await;
    assert!(err.is_connection_error(), "{err:?}");
    assert_eq!(engine.health().failures(), 1);
}

/// An "engine" that opens the event stream, sends `body`, then hangs up.
fn one_shot_events(body: &'static str) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(body.as_bytes());
    });
    port
}

#[tokio::test]
async fn engine_lost_mid_stream_ends_the_watch_with_a_counted_failure() {
    // A chunk announced but never sent in full: the connection breaks mid-body.
    let port = one_shot_events("10\r\n{\"Type\":");
    let (err, engine) = watch_until_it_ends(port, Duration::from_secs(2)).await;
    assert!(err.is_connection_error(), "{err:?}");
    assert_eq!(engine.health().failures(), 1);
}

#[tokio::test]
async fn engine_closing_the_stream_ends_the_watch_with_a_counted_failure() {
    let port = one_shot_events("0\r\n\r\n");
    let (err, engine) = watch_until_it_ends(port, Duration::from_secs(2)).await;
    assert!(
        matches!(&err, EngineError::Connection { message, .. } if message.contains("closed")),
        "{err:?}"
    );
    assert_eq!(engine.health().failures(), 1);
}
