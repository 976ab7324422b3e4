//! One tunnel call's frames as a byte stream: [`Tunnel`] reads the call's incoming
//! `TunnelFrame`s and writes outgoing ones, so an engine connection and a gRPC call can be
//! spliced with `tokio::io` (see [`splice`]).
//!
//! End of file and failure stay apart in both directions: a shut-down writer ends its side
//! of the call (the far end reads EOF); a writer dropped without a shutdown ends it with an
//! error (a server with a gRPC status, a client with a last frame carrying `error`), so a
//! cut stream is never taken for a complete one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, PollSender};
use tonic::{Code, Status};

use crate::pb;

/// Any bidirectional byte stream a tunnel can carry (an engine connection, a [`Tunnel`]).
pub trait TunnelIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> TunnelIo for T {}

/// A boxed [`TunnelIo`].
pub type Upstream = Box<dyn TunnelIo>;

/// Largest data frame a tunnel writes (a write of more is split).
pub const MAX_FRAME: usize = 64 * 1024;
/// Frames queued per direction before a writer waits (with HTTP/2's own flow control
/// behind them).
const QUEUE: usize = 8;

/// The byte stream of one tunnel call (either side of it).
pub struct Tunnel {
    inbound: BoxStream<'static, io::Result<Bytes>>,
    leftover: Bytes,
    outbound: PollSender<Bytes>,
    clean: Arc<AtomicBool>,
}

/// The writing half of a [`Tunnel`] before its call has answered (a client sends its
/// first frames before it has the response stream).
pub(crate) struct Outbound {
    tx: PollSender<Bytes>,
    clean: Arc<AtomicBool>,
}

/// A channel for a tunnel's outgoing bytes, and the stream of call items it becomes:
/// `first` if given, one `data` item per write, then, if the writer was dropped without a
/// shutdown, `failed`.
pub(crate) fn outbound<O>(
    first: Option<O>,
    data: fn(Bytes) -> O,
    failed: fn(String) -> O,
) -> (Outbound, Outgoing<O>) {
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
    let clean = Arc::new(AtomicBool::new(false));
    let items = Outgoing {
        first,
        rx,
        data,
        failed,
        clean: clean.clone(),
        done: false,
    };
    (
        Outbound {
            tx: PollSender::new(tx),
            clean,
        },
        items,
    )
}

/// The items a tunnel sends on its call (see [`outbound`]). A named type, not a boxed
/// stream: tonic's client futures are `Send` only for concrete request streams.
pub(crate) struct Outgoing<O> {
    first: Option<O>,
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    data: fn(Bytes) -> O,
    failed: fn(String) -> O,
    clean: Arc<AtomicBool>,
    done: bool,
}

impl<O: Unpin> Stream for Outgoing<O> {
    type Item = O;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<O>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(first));
        }
        if this.done {
            return Poll::Ready(None);
        }
        match ready!(this.rx.poll_recv(cx)) {
            Some(bytes) => Poll::Ready(Some((this.data)(bytes))),
            None => {
                this.done = true;
                let clean = this.clean.load(Ordering::SeqCst);
                Poll::Ready((!clean).then(|| (this.failed)("the tunnel's far end failed".into())))
            }
        }
    }
}

impl Tunnel {
    /// A tunnel reading the frames of `inbound` and writing through `outbound`.
    pub(crate) fn join<S>(inbound: S, outbound: Outbound) -> Tunnel
    where
        S: Stream<Item = Result<pb::TunnelFrame, Status>> + Send + 'static,
    {
        let inbound = inbound
            .map(|item| match item {
                Ok(frame) if !frame.error.is_empty() => Err(io::Error::other(format!(
                    "the tunnel's far end failed: {}",
                    frame.error
                ))),
                Ok(frame) => Ok(frame.data),
                Err(status) => Err(status_io_error(&status)),
            })
            .fuse()
            .boxed();
        Tunnel {
            inbound,
            leftover: Bytes::new(),
            outbound: outbound.tx,
            clean: outbound.clean,
        }
    }
}

/// A failed call as an I/O error of the stream it carried.
fn status_io_error(status: &Status) -> io::Error {
    let kind = match status.code() {
        Code::Cancelled | Code::Aborted => io::ErrorKind::ConnectionAborted,
        Code::Unavailable => io::ErrorKind::ConnectionReset,
        Code::PermissionDenied | Code::Unauthenticated => io::ErrorKind::PermissionDenied,
        Code::DeadlineExceeded => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("tunnel: {}", status.message()))
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the tunnel is closed")
}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.leftover.is_empty() {
            match ready!(this.inbound.poll_next_unpin(cx)) {
                Some(Ok(bytes)) => this.leftover = bytes,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(this.leftover.len());
        buf.put_slice(&this.leftover.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.outbound.poll_reserve(cx)).map_err(|_| closed())?;
        let n = buf.len().min(MAX_FRAME);
        this.outbound
            .send_item(Bytes::copy_from_slice(&buf[..n]))
            .map_err(|_| closed())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // What is written is queued for the call already.
        Poll::Ready(Ok(()))
    }

    /// End of file for the far end: its side of the call ends without an error.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.clean.store(true, Ordering::SeqCst);
        this.outbound.close();
        Poll::Ready(Ok(()))
    }
}

/// Copies both ways between `a` and `b` until both directions reached their end of file
/// (each forwarded as a shutdown of the other's writer), one side fails, or `cancel`
/// fires. On a failure or cancellation both are dropped unfinished, so a [`Tunnel`] among
/// them ends its call with an error.
pub async fn splice<A, B>(mut a: A, mut b: B, cancel: CancellationToken) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut a, &mut b) => r,
        () = cancel.cancelled() => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the tunnel was cancelled",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Both sides of an in-memory "call": what one writes the other reads, as the frames
    /// would travel.
    fn pair() -> (Tunnel, Tunnel) {
        let ok = |d: Bytes| -> Result<pb::TunnelFrame, Status> {
            Ok(pb::TunnelFrame {
                data: d,
                ..Default::default()
            })
        };
        let failed = |m: String| -> Result<pb::TunnelFrame, Status> { Err(Status::aborted(m)) };
        let (out_a, items_a) = outbound(None, ok, failed);
        let (out_b, items_b) = outbound(None, ok, failed);
        (Tunnel::join(items_b, out_a), Tunnel::join(items_a, out_b))
    }

    #[tokio::test]
    async fn bytes_cross_split_into_frames_and_shutdown_is_end_of_file() {
        let (mut a, mut b) = pair();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&sent).await.unwrap();
            a.shutdown().await.unwrap();
            a
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
        // Half-closed: the other direction still works.
        let mut a = writer.await.unwrap();
        b.write_all(b"back").await.unwrap();
        b.shutdown().await.unwrap();
        let mut back = Vec::new();
        a.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"back");
    }

    #[tokio::test]
    async fn a_writer_dropped_without_shutdown_is_an_error_not_an_end_of_file() {
        let (mut a, mut b) = pair();
        a.write_all(b"partial").await.unwrap();
        drop(a);
        let mut got = Vec::new();
        let err = b.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(got, b"partial");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted, "{err}");
        // And writing to a gone peer fails rather than queueing forever.
        let mut failed = false;
        for _ in 0..QUEUE + 2 {
            if b.write_all(b"x").await.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "writes to a dropped tunnel kept succeeding");
    }
}
