//! Socket helpers that know nothing of connections or protocols: a write that never
//! blocks, readiness asked without reading (`poll(2)` with a zero timeout), and the one
//! bounded wait for a socket left in the engine (an app writing its own response while
//! it runs). The leaf of the module graph: the connection, the lot and the protocols
//! all use it, and it uses none of them. Runs on whichever thread calls it.

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

/// Writes as much of `buf` as the socket takes without blocking.
pub(crate) fn write_now(stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < buf.len() {
        match (&*stream).write(&buf[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// A worker's own small poll, for the moments it waits on one socket (a streamed
/// response to a slow reader).
struct Waiter {
    poll: Poll,
    events: Events,
}

thread_local! {
    static WAITER: RefCell<Option<Waiter>> = const { RefCell::new(None) };
}

/// Waits until `stream` is ready for `interest` or `timeout` passes, on this thread's
/// own poll (created on first use). Returns whether it became ready. A socket cut by
/// shutdown reports ready (HUP), so a blocked worker returns promptly.
pub(crate) fn wait_ready(stream: &TcpStream, interest: Interest, timeout: Duration) -> io::Result<bool> {
    WAITER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Waiter { poll: Poll::new()?, events: Events::with_capacity(4) });
        }
        let Some(w) = slot.as_mut() else {
            return Err(io::Error::other("waiter unavailable"));
        };
        let fd = stream.as_raw_fd();
        w.poll.registry().register(&mut SourceFd(&fd), Token(0), interest)?;
        let deadline = Instant::now() + timeout;
        let result = loop {
            let now = Instant::now();
            if now >= deadline {
                break Ok(false);
            }
            match w.poll.poll(&mut w.events, Some(deadline - now)) {
                Ok(()) if !w.events.is_empty() => break Ok(true),
                Ok(()) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        let _ = w.poll.registry().deregister(&mut SourceFd(&fd));
        result
    })
}

/// Whether the peer of `stream` has closed its side or reset the connection, asked
/// without reading (`poll(2)` for RDHUP, HUP, ERR with a zero timeout): bytes the
/// client sent but the server has not read do not hide a close behind them.
pub(crate) fn hung_up(stream: &TcpStream) -> bool {
    use rustix::event::PollFlags;
    poll_now(stream, PollFlags::RDHUP).intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR)
}

/// The socket's readiness for `interest` now (`poll(2)` with a zero timeout).
fn poll_now(stream: &TcpStream, interest: rustix::event::PollFlags) -> rustix::event::PollFlags {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(stream, interest)];
    match poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })) {
        Ok(n) if n > 0 => fds[0].revents(),
        _ => PollFlags::empty(),
    }
}

/// The most unsent bytes the kernel queues on a socket that carries a streamed body
/// (TCP_NOTSENT_LOWAT): past it a write is refused and writability not reported, while
/// bytes in flight stay limited only by the congestion and receive windows, so a fast
/// client's throughput is kept. Without it the send buffer autotunes up to
/// `tcp_wmem`'s 4 MiB, and a client that reads nothing took 2 MiB of a streamed body
/// off its source at once (`ss -tm`: 2.9 MB of kernel memory per such socket): 1,000
/// of them pulled 2 GB from the app and held 2.9 GB of kernel memory, and a normal
/// client waited behind that work (p99 63 ms with `Response::stream`, 526 ms with a
/// Flask generator; with the limit 0.8 ms and 56 ms, `bench/slow.sh`). Files are left
/// alone: sendfile queues page-cache references, not copies, and at `wrk -c50` the
/// limit cost four times the CPU per byte.
const UNSENT_MAX: u32 = 256 * 1024;

/// Limits the unsent bytes queued on `stream` to [`UNSENT_MAX`], before a streamed body
/// is pulled for it.
pub(crate) fn limit_unsent(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_tcp_notsent_lowat(UNSENT_MAX);
}

/// Whether `stream` has bytes (or an EOF) to read now, without reading them.
pub(crate) fn readable(stream: &TcpStream) -> bool {
    use rustix::event::PollFlags;
    poll_now(stream, PollFlags::IN).contains(PollFlags::IN)
}
