//! Moving bytes between two TCP sockets: `splice(2)` through a pipe (the data never enters
//! user space) where the kernel allows, a user-space copy otherwise. Half-close is
//! forwarded: when one side stops sending, the other side's write half is shut down and
//! the opposite direction goes on until it ends too.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes moved per splice call at most (and the pipe size asked for).
const CHUNK: usize = 1 << 20;
/// Buffer of the user-space fallback.
const COPY_BUF: usize = 64 * 1024;

/// Forwards both directions until both have ended (or one fails). Returns the bytes moved
/// client→backend and backend→client.
pub async fn forward(client: &TcpStream, backend: &TcpStream) -> io::Result<(u64, u64)> {
    tokio::try_join!(one_way(client, backend), one_way(backend, client))
}

/// One direction, to the end of its input; then the destination's write half is closed.
async fn one_way(src: &TcpStream, dst: &TcpStream) -> io::Result<u64> {
    let moved = match Pipe::new() {
        Ok(pipe) => match splice_loop(src, dst, &pipe).await {
            Err(SpliceError::Unsupported) => copy_loop(src, dst).await?,
            Err(SpliceError::Io(e)) => return Err(e),
            Ok(n) => n,
        },
        Err(e) => {
            tracing::debug!(error = %e, "no pipe for splice; copying in user space");
            copy_loop(src, dst).await?
        }
    };
    // SAFETY: shutdown(2) on a descriptor the stream owns; it stays open.
    let r = unsafe { libc::shutdown(dst.as_raw_fd(), libc::SHUT_WR) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOTCONN) {
            return Err(e);
        }
    }
    Ok(moved)
}

enum SpliceError {
    /// The kernel refuses splice on these descriptors before any byte moved.
    Unsupported,
    Io(io::Error),
}

/// A non-blocking pipe, the kernel-side buffer splice moves pages through.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nothing else.
        let pipe = unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        };
        // A larger pipe means fewer calls; the default (64 KiB) works too, so a refusal
        // (above /proc/sys/fs/pipe-max-size) is fine.
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            libc::fcntl(
                pipe.write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                CHUNK as libc::c_int,
            )
        };
        Ok(pipe)
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice between two descriptors that stay open for the call; no offsets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// socket → pipe, then pipe → socket until the pipe is empty again. Because the pipe is
/// always drained before the next read, EAGAIN on the read means "socket empty" and on the
/// write "socket full", never "pipe full/empty".
async fn splice_loop(src: &TcpStream, dst: &TcpStream, pipe: &Pipe) -> Result<u64, SpliceError> {
    let mut total: u64 = 0;
    loop {
        src.readable().await.map_err(SpliceError::Io)?;
        let n = match src.try_io(Interest::READABLE, || {
            splice(src.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)
        }) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e)
                if total == 0
                    && matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) =>
            {
                return Err(SpliceError::Unsupported);
            }
            Err(e) => return Err(SpliceError::Io(e)),
        };
        let mut left = n;
        while left > 0 {
            dst.writable().await.map_err(SpliceError::Io)?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(pipe.read.as_raw_fd(), dst.as_raw_fd(), left)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(SpliceError::Io(e)),
            }
        }
        total += n as u64;
    }
}

/// The user-space fallback: read into a buffer, write it all out.
async fn copy_loop(src: &TcpStream, dst: &TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut total: u64 = 0;
    loop {
        src.readable().await?;
        let n = match src.try_read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut off = 0;
        while off < n {
            dst.writable().await?;
            match dst.try_write(&buf[off..n]) {
                Ok(m) => off += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    /// The bulk path depends on this: with the default 64 KiB pipe each splice moves at most
    /// 64 KiB. Only checked where the system allows a pipe that large.
    #[test]
    fn pipe_is_enlarged_to_the_chunk_size_when_allowed() {
        let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let pipe = Pipe::new().unwrap();
        // SAFETY: fcntl on a descriptor the pipe owns.
        let size = unsafe { libc::fcntl(pipe.write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        assert!(size > 0);
        if max >= CHUNK {
            assert_eq!(size as usize, CHUNK);
        }
    }

    /// client ⇄ [proxy_front | proxy_back] ⇄ server: bytes arrive intact both ways and a
    /// half-close reaches the other end while the reverse direction still flows.
    #[tokio::test]
    async fn forwards_both_ways_with_half_close() {
        let (mut client, front) = pair().await;
        let (back, mut server) = pair().await;
        let proxy = tokio::spawn(async move { forward(&front, &back).await });

        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, payload, "client → server intact, then EOF");
        // The client's write half is closed; the server can still answer.
        server.write_all(b"reply after half-close").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"reply after half-close");
        let (up, down) = proxy.await.unwrap().unwrap();
        assert_eq!((up, down), (payload.len() as u64, 22));
    }
}
