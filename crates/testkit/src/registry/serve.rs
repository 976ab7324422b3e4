//! The registry's server: a thread that enters the machine's network namespace, binds
//! there and serves until the machine goes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{Context as _, anyhow};
use nix::sched::{CloneFlags, setns};
use tokio::sync::oneshot;

use super::{Content, routes};

/// A running registry; dropping it stops it (open connections are cut, not drained: an
/// engine frozen mid-pull must not hold up a machine's removal).
pub(crate) struct RegistryServer {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RegistryServer {
    /// Serves `content` on `addr` inside the network namespace `/run/netns/<netns>`;
    /// returns once it listens.
    pub(crate) fn start(
        netns: &str,
        addr: SocketAddr,
        content: Content,
    ) -> anyhow::Result<RegistryServer> {
        let ns_path = format!("/run/netns/{netns}");
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("registry-{netns}"))
            .spawn(move || {
                let bound = (|| {
                    let ns = std::fs::File::open(&ns_path)
                        .with_context(|| format!("opening {ns_path}"))?;
                    // This thread only: the rest of the test process stays on the host.
                    setns(&ns, CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("entering {ns_path}"))?;
                    let listener = std::net::TcpListener::bind(addr)
                        .with_context(|| format!("binding {addr} in {ns_path}"))?;
                    listener.set_nonblocking(true)?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    Ok::<_, anyhow::Error>((listener, rt))
                })();
                let (listener, rt) = match bound {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let app = routes::router(Arc::new(content));
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    tokio::select! {
                        r = axum::serve(listener, app) => {
                            if let Err(e) = r {
                                tracing::warn!(error = %e, "registry stopped serving");
                            }
                        }
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here cancels the connections still open.
            })
            .context("spawning the registry thread")?;
        let server = RegistryServer {
            stop: Some(stop),
            thread: Some(thread),
        };
        ready_rx
            .recv()
            .map_err(|_| anyhow!("the registry thread ended before listening"))??;
        tracing::debug!(netns, %addr, "registry listening");
        Ok(server)
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
