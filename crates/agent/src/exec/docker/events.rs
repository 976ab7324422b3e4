//! One engine event stream per docker executor, fanned out to the tasks waiting on their
//! containers.
//!
//! A long-poll `POST /containers/{id}/wait` per running task costs one engine connection
//! (and its buffers) per container; with a hundred tasks that was ~3 MB of swarmd's heap.
//! Instead the executor keeps a single `GET /events` stream (this node's containers; `die`,
//! `destroy`, `health_status`) and wakes the waiters of the container an event names. A
//! wake-up only says "look again": waiters inspect the container, so the scheme is
//! level-triggered. When the stream breaks it is reopened with `since` set to the last
//! event seen (the engine replays what happened meanwhile, as far as its event buffer
//! reaches) and every waiter is woken to inspect once more, so no exit is missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use bollard_stubs::models::EventMessage;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::exec::{ExecError, LABEL_NODE_ID};

/// Pause before reopening a broken event stream (the engine may be restarting).
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// What a waiter learns from a wake-up beyond "look again".
#[derive(Debug, Clone, Default)]
struct Signal {
    /// The exit code of the container's last `die` event: the answer when the container
    /// was removed before the waiter could inspect it.
    exit_code: Option<i64>,
    /// The executor is gone; nothing will wake this waiter again.
    closed: bool,
}

/// The executor's event stream and who waits on which container.
pub(super) struct EngineEvents {
    docker: Docker,
    node_id: String,
    state: Mutex<State>,
    stop: CancellationToken,
}

#[derive(Default)]
struct State {
    /// Container ID -> the waiters' channel.
    watches: HashMap<String, watch::Sender<Signal>>,
    /// Whether the stream task was spawned (lazily: the executor may be built outside a
    /// runtime, and a node without tasks needs no stream).
    started: bool,
    closed: bool,
}

impl EngineEvents {
    pub(super) fn new(docker: Docker, node_id: String) -> Arc<Self> {
        Arc::new(EngineEvents {
            docker,
            node_id,
            state: Mutex::new(State::default()),
            stop: CancellationToken::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to the events of container `id`. Subscribe *before* inspecting the
    /// container: an event between the inspect and the first [`Watch::changed`] then
    /// still wakes the waiter.
    pub(super) fn watch(self: &Arc<Self>, id: &str) -> Watch {
        let mut st = self.lock();
        if !st.started && !st.closed {
            st.started = true;
            // Events from now on (minus a second for clock granularity) are replayed if
            // the stream connects after a waiter's first inspect.
            let since = unix_nanos(SystemTime::now()) - 1_000_000_000;
            tokio::spawn(Arc::clone(self).run(since));
        }
        let closed = st.closed;
        let rx = st
            .watches
            .entry(id.to_string())
            .or_insert_with(|| {
                watch::channel(Signal {
                    exit_code: None,
                    closed,
                })
                .0
            })
            .subscribe();
        Watch {
            events: Arc::clone(self),
            id: id.to_string(),
            rx: Some(rx),
        }
    }

    pub(super) fn watched(&self) -> usize {
        self.lock().watches.len()
    }

    /// Stops the stream and wakes every waiter with "closed".
    pub(super) fn close(&self) {
        self.stop.cancel();
        let mut st = self.lock();
        st.closed = true;
        for tx in st.watches.values() {
            tx.send_modify(|s| s.closed = true);
        }
    }

    fn filters(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![format!("{LABEL_NODE_ID}={}", self.node_id)],
            ),
            (
                "event".to_string(),
                // Older engines (20.10) match health events only by their full action.
                [
                    "die",
                    "destroy",
                    "health_status",
                    "health_status: healthy",
                    "health_status: unhealthy",
                    "health_status: starting",
                ]
                .map(String::from)
                .to_vec(),
            ),
        ])
    }

    /// The stream task: reads events until the executor goes, reopening the stream after
    /// each break.
    async fn run(self: Arc<Self>, mut since: i64) {
        let mut reopened = false;
        loop {
            let mut stream = self.docker.events(Some(EventsOptions {
                since: Some(format_since(since)),
                until: None,
                filters: Some(self.filters()),
            }));
            if reopened {
                // Whatever fell out of the engine's replay buffer is found by looking again.
                self.wake_all();
            }
            tracing::debug!(since, reopened, "engine event stream opened");
            let end = loop {
                let item = tokio::select! {
                    _ = self.stop.cancelled() => return,
                    item = stream.next() => item,
                };
                match item {
                    Some(Ok(ev)) => {
                        if let Some(t) = ev.time_nano {
                            since = since.max(t);
                        }
                        self.dispatch(&ev);
                    }
                    Some(Err(e)) => break e.to_string(),
                    None => break "the engine closed the stream".to_string(),
                }
            };
            tracing::warn!(error = %end, "engine event stream lost; reopening");
            reopened = true;
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(RECONNECT_DELAY) => {}
            }
        }
    }

    fn dispatch(&self, ev: &EventMessage) {
        let Some(actor) = ev.actor.as_ref() else {
            return;
        };
        let Some(id) = actor.id.as_deref() else {
            return;
        };
        let st = self.lock();
        let Some(tx) = st.watches.get(id) else {
            return;
        };
        let exit_code = (ev.action.as_deref() == Some("die"))
            .then(|| {
                actor
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get("exitCode"))
                    .and_then(|c| c.parse::<i64>().ok())
            })
            .flatten();
        tracing::trace!(container.id = id, action = ?ev.action, ?exit_code, "engine event");
        tx.send_modify(|s| {
            if exit_code.is_some() {
                s.exit_code = exit_code;
            }
        });
    }

    fn wake_all(&self) {
        for tx in self.lock().watches.values() {
            tx.send_modify(|_| {});
        }
    }

    /// Drops `rx` and forgets the container when it was its last waiter (under the lock,
    /// so a concurrent [`EngineEvents::watch`] of the same container keeps its channel).
    fn unwatch(&self, id: &str, rx: watch::Receiver<Signal>) {
        let mut st = self.lock();
        drop(rx);
        if st
            .watches
            .get(id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            st.watches.remove(id);
        }
    }
}

/// A waiter's subscription to one container's events.
pub(super) struct Watch {
    events: Arc<EngineEvents>,
    id: String,
    rx: Option<watch::Receiver<Signal>>,
}

impl Watch {
    /// Waits for the next event of the container or a stream reopen; either way the caller
    /// should look at the container again.
    pub(super) async fn changed(&mut self) -> Result<(), ExecError> {
        let closed = || ExecError::Unavailable("docker executor shut down".into());
        let Some(rx) = self.rx.as_mut() else {
            return Err(closed());
        };
        if rx.borrow().closed {
            return Err(closed());
        }
        rx.changed().await.map_err(|_| closed())?;
        if rx.borrow_and_update().closed {
            return Err(closed());
        }
        Ok(())
    }

    /// The exit code of the container's `die` event, if one was seen while watching.
    pub(super) fn exit_code(&self) -> Option<i64> {
        self.rx.as_ref().and_then(|rx| rx.borrow().exit_code)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            self.events.unwatch(&self.id, rx);
        }
    }
}

fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The engine's `since` format: `seconds.nanoseconds`.
fn format_since(nanos: i64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{UnixListener, UnixStream};

    /// Accepts one engine connection; returns it with the request line.
    async fn accept(l: &UnixListener) -> (BufReader<UnixStream>, String) {
        let (conn, _) = l.accept().await.unwrap();
        let mut conn = BufReader::new(conn);
        let mut request = String::new();
        conn.read_line(&mut request).await.unwrap();
        let mut line = String::new();
        while line != "\r\n" {
            line.clear();
            conn.read_line(&mut line).await.unwrap();
        }
        conn.get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        (conn, request)
    }

    async fn send_event(conn: &mut BufReader<UnixStream>, json: &str) {
        let body = format!("{json}\n");
        let chunk = format!("{:x}\r\n{body}\r\n", body.len());
        conn.get_mut().write_all(chunk.as_bytes()).await.unwrap();
    }

    /// Against a fake engine: a die event wakes the container's waiter with its exit code;
    /// after the stream breaks it is reopened from the last event's time and every waiter
    /// is woken to look again; closing the executor ends the waits.
    #[tokio::test]
    async fn events_wake_waiters_and_a_lost_stream_resyncs() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let docker =
            Docker::connect_with_unix(sock.to_str().unwrap(), 10, bollard::API_DEFAULT_VERSION)
                .unwrap();
        let events = EngineEvents::new(docker, "node1".into());
        let mut w = events.watch("c1");
        let mut other = events.watch("c2");
        let (mut conn, request) = accept(&listener).await;
        assert!(request.starts_with("GET /"), "{request}");
        assert!(request.contains("/events?since="), "{request}");
        assert!(request.contains("node1"), "filters by node: {request}");

        // An event time after the stream's start (the first `since`).
        let t = unix_nanos(SystemTime::now()) + 3_600_000_000_123;
        send_event(
            &mut conn,
            &format!(
                r#"{{"Type":"container","Action":"die","Actor":{{"ID":"c1","Attributes":{{"exitCode":"5"}}}},"time":{},"timeNano":{t}}}"#,
                t / 1_000_000_000
            ),
        )
        .await;
        w.changed().await.unwrap();
        assert_eq!(w.exit_code(), Some(5));
        assert_eq!(other.exit_code(), None);

        // The stream breaks: reopened from the last event, and both waiters look again.
        drop(conn);
        let (_conn, request) = accept(&listener).await;
        assert!(
            request.contains(&format!("since={}", format_since(t))),
            "reopened from the last event: {request}"
        );
        w.changed().await.unwrap();
        other.changed().await.unwrap();

        assert_eq!(events.watched(), 2);
        drop(other);
        assert_eq!(
            events.watched(),
            1,
            "a container without waiters is forgotten"
        );
        events.close();
        assert!(matches!(w.changed().await, Err(ExecError::Unavailable(_))));
    }

    #[test]
    fn since_is_seconds_dot_nanos() {
        assert_eq!(
            format_since(1_700_000_000_000_000_123),
            "1700000000.000000123"
        );
        assert_eq!(format_since(5_500_000_000), "5.500000000");
    }
}
