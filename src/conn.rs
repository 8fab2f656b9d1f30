//! A client connection, the registry of every open one, and the wait helper workers
//! use when a socket would block.
//!
//! A `Conn` is owned by exactly one thread at a time and moves by value: the acceptor
//! parks it (registered in its poll), a worker takes it for a turn, and hands it back
//! (`Next::Park`) or drops it. The socket is non-blocking for its whole life; a worker
//! that must wait (a response write, a body read) waits on its own small thread-local
//! poll with a timeout, so no wait is unbounded.
//!
//! The `Registry` holds a second `Arc` of every open socket, so that shutdown can cut
//! sockets owned by workers blocked in I/O (`graceful_timeout`, immediate stop) and the
//! acceptor can count open connections for `max_connections`. A `Conn` leaves the
//! registry when it is dropped, which also closes the socket.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::listener::ListenerCtx;

/// What a parked connection is waiting for, and so what its deadline means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Echo session waiting for bytes; deadline: `echo_idle_timeout` (close).
    Echo,
    /// Echo session with output the client has not taken yet; waits for writability.
    EchoFlush,
    /// HTTP connection waiting for (more of) a request head. Deadline: `header_timeout`
    /// for a first or partial head (408 if some bytes came), `keepalive_timeout` between
    /// requests (silent close).
    HttpHead,
    /// Has a complete request buffered already (a turn yielded on its budget): the
    /// acceptor puts it straight back on the queue instead of waiting for the socket.
    Ready,
    /// Write side shut down; input is read and discarded until EOF or the deadline, so
    /// that unread client bytes do not turn our close into a reset that destroys the
    /// last response or echo bytes in flight (RFC 9112 §9.6, "lingering close").
    Closing,
}

/// What a worker's turn decided.
pub enum Next {
    /// Hand the connection back to the acceptor to park (its phase and deadline set).
    Park(Conn),
    /// The connection is finished; it has been (or is being) dropped.
    Done,
}

/// How long a closing connection lingers to read the client's leftovers.
pub const LINGER: Duration = Duration::from_secs(2);

/// The most a lingering connection's leftovers are read per readiness event: a client
/// uploading at line rate after its 413 must not keep the acceptor thread busy.
const DISCARD_PER_CALL: usize = 64 * 1024;

/// How long a worker that found its connection empty waits for the client's next bytes
/// before parking it, when no other job waits for a thread. A busy keep-alive client
/// sends its next request within microseconds of the response; serving it on the same
/// thread saves the park, the acceptor's wake-up and the hand-off to a worker.
/// Measured with wrk -t1 -c50 on hello: 0.57x -> 0.61x nginx with 4 threads, and
/// voluntary context switches per request 1.01 -> 0.55. Bounded, so a slow or idle
/// client holds a thread for at most this long.
pub const STICKY: Duration = Duration::from_millis(1);

/// One client connection.
pub struct Conn {
    /// Unique for the process lifetime; also the poll token while parked.
    pub id: u64,
    /// The non-blocking socket, shared with the registry (for cutting).
    pub stream: Arc<TcpStream>,
    /// Remote address.
    pub peer: SocketAddr,
    /// Local address the client connected to.
    pub local: SocketAddr,
    /// The listener this connection came from.
    pub listener: Arc<ListenerCtx>,
    /// What it waits for while parked.
    pub phase: Phase,
    /// When the parked wait ends (see `Phase`); `None`: never.
    pub deadline: Option<Instant>,
    /// Input read but not consumed yet (a partial request head, pipelined bytes).
    pub input: Vec<u8>,
    /// Output accepted but not yet written (echo bytes the client has not taken).
    pub output: Vec<u8>,
    /// Requests served on this connection (HTTP).
    pub requests: usize,
    /// When the current request head began arriving (HTTP).
    pub head_started: Option<Instant>,
    /// Whether the socket is in the acceptor's poll (it stays there once parked).
    pub registered: bool,
    registry: Arc<Registry>,
}

impl Conn {
    /// Registers a freshly accepted socket.
    pub fn new(stream: TcpStream, peer: SocketAddr, listener: Arc<ListenerCtx>, registry: &Arc<Registry>) -> Conn {
        let local = stream.local_addr().unwrap_or(listener.addr);
        let stream = Arc::new(stream);
        let id = registry.insert(Arc::clone(&stream));
        Conn {
            id,
            stream,
            peer,
            local,
            listener,
            phase: Phase::HttpHead,
            deadline: None,
            input: Vec::new(),
            output: Vec::new(),
            requests: 0,
            head_started: None,
            registered: false,
            registry: Arc::clone(registry),
        }
    }

    /// Frees buffer space an idle connection does not need: ten thousand parked
    /// keep-alive clients should cost descriptors, not 16 KiB each.
    pub fn release_buffers(&mut self) {
        if self.input.is_empty() {
            self.input = Vec::new();
        }
        if self.output.is_empty() {
            self.output = Vec::new();
        }
    }

    /// The poll interest for the current phase.
    pub fn interest(&self) -> Interest {
        match self.phase {
            Phase::EchoFlush => Interest::WRITABLE,
            _ => Interest::READABLE,
        }
    }

    /// Starts a lingering close: sends FIN after everything written so far, then parks
    /// to discard what the client still sends, for at most `LINGER`.
    pub fn close_gracefully(mut self) -> Next {
        match self.stream.shutdown(Shutdown::Write) {
            Ok(()) => {
                self.phase = Phase::Closing;
                self.deadline = Some(Instant::now() + LINGER);
                self.input = Vec::new();
                Next::Park(self)
            }
            // Already reset by the peer: nothing left to protect.
            Err(_) => Next::Done,
        }
    }

    /// Reads and discards input while lingering, at most `DISCARD_PER_CALL` bytes.
    /// Returns whether to keep lingering (no EOF or error yet).
    pub fn discard_input(&mut self) -> bool {
        let mut scratch = [0u8; 4096];
        let mut discarded = 0;
        loop {
            if discarded >= DISCARD_PER_CALL {
                return true;
            }
            match (&*self.stream).read(&mut scratch) {
                Ok(0) => return false,
                Ok(n) => discarded += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }

    /// Waits up to `STICKY` for the socket to become readable; see `STICKY`.
    pub fn wait_for_more(&self) -> bool {
        wait_ready_as(Some(self.id), &self.stream, Interest::READABLE, STICKY).unwrap_or(false)
    }

    /// Writes all of `buf`; see [`write_all`].
    pub fn write_all_timeout(&self, buf: &[u8], timeout: Duration) -> io::Result<()> {
        write_all(&self.stream, buf, timeout)
    }
}

/// Writes all of `buf` to a non-blocking socket, waiting for writability up to
/// `timeout` each time it would block. A timeout is `ErrorKind::TimedOut`.
pub fn write_all(stream: &TcpStream, mut buf: &[u8], timeout: Duration) -> io::Result<()> {
    while !buf.is_empty() {
        match (&*stream).write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !wait_ready(stream, Interest::WRITABLE, timeout)? {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "client did not take the response in time"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what is available from a non-blocking socket, waiting for readability up to
/// `timeout` if nothing is. A timeout is `ErrorKind::TimedOut`; `Ok(0)` is EOF.
pub fn read_some(stream: &TcpStream, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
    loop {
        match (&*stream).read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !wait_ready(stream, Interest::READABLE, timeout)? {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "client sent nothing in time"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// A worker's own small poll, for the moments it waits on one socket.
struct Waiter {
    poll: Poll,
    events: Events,
    /// The connection whose socket stays registered between waits, so a worker
    /// waiting on the same client again (sticky keep-alive, a streaming echo) pays
    /// one `epoll_wait`, not add + wait + delete. Keyed by connection id: ids are never
    /// reused, so a recycled descriptor number cannot be mistaken for it.
    held: Option<(u64, RawFd, Interest)>,
}

thread_local! {
    static WAITER: RefCell<Option<Waiter>> = const { RefCell::new(None) };
}

/// Waits until `stream` is ready for `interest` or `timeout` passes, on this thread's
/// own poll (created on first use). Returns whether it became ready. A socket cut by
/// shutdown reports ready (HUP), so a blocked worker returns promptly.
pub fn wait_ready(stream: &TcpStream, interest: Interest, timeout: Duration) -> io::Result<bool> {
    wait_ready_as(None, stream, interest, timeout)
}

/// `wait_ready` for connection `id`, whose registration is kept for the next wait.
fn wait_ready_as(id: Option<u64>, stream: &TcpStream, interest: Interest, timeout: Duration) -> io::Result<bool> {
    WAITER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Waiter { poll: Poll::new()?, events: Events::with_capacity(4), held: None });
        }
        let Some(w) = slot.as_mut() else {
            return Err(io::Error::other("waiter unavailable"));
        };
        let fd = stream.as_raw_fd();
        let token = Token(0);
        match w.held {
            Some((held_id, held_fd, held_interest)) if Some(held_id) == id && held_fd == fd => {
                if held_interest != interest {
                    w.poll.registry().reregister(&mut SourceFd(&fd), token, interest)?;
                }
            }
            Some((_, held_fd, _)) => {
                // Another connection's (or a closed one's: then the kernel already
                // removed it and this fails harmlessly).
                let _ = w.poll.registry().deregister(&mut SourceFd(&held_fd));
                w.held = None;
                w.poll.registry().register(&mut SourceFd(&fd), token, interest)?;
            }
            None => w.poll.registry().register(&mut SourceFd(&fd), token, interest)?,
        }
        w.held = id.map(|id| (id, fd, interest));
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
        if w.held.is_none() {
            let _ = w.poll.registry().deregister(&mut SourceFd(&fd));
        }
        result
    })
}

/// Every open connection's socket, by id.
pub struct Registry {
    streams: Mutex<HashMap<u64, Arc<TcpStream>>>,
    open: AtomicUsize,
    next_id: AtomicU64,
    /// Set by the acceptor while accepting is paused at `max_connections`: a close
    /// then wakes it so it can resume.
    pub paused: AtomicBool,
    waker: Arc<Waker>,
}

impl Registry {
    /// An empty registry that wakes the acceptor through `waker`.
    pub fn new(waker: Arc<Waker>) -> Self {
        Registry {
            streams: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            waker,
        }
    }

    fn insert(&self, stream: Arc<TcpStream>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, stream);
        self.open.fetch_add(1, Ordering::SeqCst);
        id
    }

    fn remove(&self, id: u64) {
        if self.lock().remove(&id).is_some() {
            self.open.fetch_sub(1, Ordering::SeqCst);
        }
        if self.paused.load(Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }

    /// Connections open now, parked ones included.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Shuts down both directions of every open socket, so that every thread blocked
    /// on one returns. The owners still drop them. Returns how many were cut.
    pub fn cut_all(&self) -> usize {
        let streams = self.lock();
        for s in streams.values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        streams.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<TcpStream>>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}
