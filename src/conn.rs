//! A client connection and the registry of every open one.
//!
//! A `Conn` is owned by exactly one thread at a time and moves by value: the acceptor
//! accepts it and parks it in the lot, a worker takes it for a turn and hands it back
//! (`Next::Park`, with its `Phase` and deadline set by `Conn::park`) or drops it. The
//! socket is non-blocking for its whole life, and a turn never waits on it: what would
//! block is parked with the connection (`Phase` carries what each wait needs).
//!
//! The `Registry` holds a second `Arc` of every open socket, so that shutdown can cut
//! sockets owned by workers blocked in I/O (`graceful_timeout`, immediate stop) and the
//! acceptor can count open connections for `max_connections`. A `Conn` leaves the
//! registry when it is dropped, which also closes the socket.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::Waker;

use crate::config::Protocol;
use crate::http::outgoing::Outgoing;
use crate::http::receive::Incoming;
use crate::listener::ListenerCtx;
use crate::lot::{Parked, Wants};
use crate::sock;

/// What a parked connection is waiting for, and so what its deadline means.
#[derive(Debug)]
pub(crate) enum Phase {
    /// A connection on a `proxy_protocol` listener waiting for (the rest of) its PROXY
    /// header; deadline: `header_timeout` (close, unanswered).
    Proxy,
    /// Echo session waiting for bytes; deadline: `echo_idle_timeout` (close).
    Echo,
    /// Echo session with output the client has not taken yet; waits for writability.
    EchoFlush,
    /// HTTP connection waiting for (more of) a request head. Deadline: `header_timeout`
    /// for a first or partial head (408 if some bytes came), `keepalive_timeout` between
    /// requests (silent close).
    HttpHead,
    /// HTTP request whose head is here and whose body is still arriving (it is received
    /// whole before the app runs). Deadline: `body_timeout` after the last bytes (408).
    HttpBody,
    /// HTTP request body that found no room in the memory or disk budget: not read
    /// (parked without read interest, so TCP pushes back on the client) until room
    /// frees. `epoch`: the lot's room epoch read before the body's last try, so room
    /// freed since is not missed (`Lot::park`). Deadline: `body_timeout` from the
    /// stall's start; then `503` with `Retry-After`.
    HttpStalled { epoch: u64 },
    /// HTTP response on its way out (`http::outgoing`): output the client has not
    /// taken yet, and the body's source (the app's stream, a file) still to pull from.
    /// Waits for writability. Deadline: what the client's pace allows
    /// (`body_timeout` per wait, `min_send_rate` on average); then it is cut off.
    HttpSend(Box<Outgoing>),
    /// Has a complete request buffered already (a turn yielded on its budget): it goes
    /// on the run queue instead of waiting for the socket.
    Ready,
    /// Write side shut down; input is read and discarded until EOF or the deadline, so
    /// that unread client bytes do not turn our close into a reset that destroys the
    /// last response or echo bytes in flight (RFC 9112 §9.6, "lingering close").
    Closing,
    /// Cut off (its deadline passed) while it held an app's body source: it goes on the
    /// run queue so that a worker drops it, because dropping the source may run the
    /// app's code (a WSGI iterable's `close()`, under the GIL) and the acceptor must
    /// never wait for an app.
    Abandoned(Box<Outgoing>),
}

/// What a worker's turn decided.
// `Conn` moves by value through every turn and park; boxing it to even the variants
// would cost an allocation per park.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Next {
    /// Park the connection in the lot (its phase and deadline set).
    Park(Conn),
    /// The connection is finished; it has been (or is being) dropped.
    Done,
}

impl Next {
    /// The connection to park, if the turn kept it.
    pub fn parked(self) -> Option<Conn> {
        match self {
            Next::Park(conn) => Some(conn),
            Next::Done => None,
        }
    }
}

/// How long a closing connection lingers to read the client's leftovers.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// The most a lingering connection's leftovers are read per readiness event: a client
/// uploading at line rate after its 413 must not keep a thread busy.
const DISCARD_PER_CALL: usize = 64 * 1024;

/// One client connection.
pub(crate) struct Conn {
    /// Unique for the process lifetime; also the epoll event data while parked.
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
    /// Output accepted but not yet written (echo bytes or a response the client has
    /// not taken yet).
    pub output: Vec<u8>,
    /// Requests served on this connection (HTTP).
    pub requests: usize,
    /// When the current request head began arriving (HTTP).
    pub head_started: Option<Instant>,
    /// The HTTP request being received (head parsed, body arriving), while parked.
    pub incoming: Option<Box<Incoming>>,
    /// Whether the socket is in the lot's epoll (it stays there once parked).
    pub registered: bool,
    /// When it was accepted.
    pub accepted: Instant,
    /// Whether the client has sent anything yet.
    pub heard: bool,
    registry: Arc<Registry>,
}

/// How long a stop waits for the first bytes of a connection accepted just before it.
pub(crate) const FRESH_GRACE: Duration = Duration::from_secs(1);

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
            incoming: None,
            registered: false,
            accepted: Instant::now(),
            heard: false,
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

    /// Hands the connection back to the lot to wait in `phase` until `deadline` (see
    /// `Phase` for what each waits for and what its deadline means): the one place a
    /// phase and its deadline are set together.
    pub fn park(mut self, phase: Phase, deadline: Option<Instant>) -> Next {
        self.set_wait(phase, deadline);
        Next::Park(self)
    }

    /// Sets what the connection will wait for and until when (see [`Conn::park`]), for
    /// a connection its caller parks itself (a new one, from the acceptor).
    pub fn set_wait(&mut self, phase: Phase, deadline: Option<Instant>) {
        self.phase = phase;
        self.deadline = deadline;
    }

    /// Bytes that arrive while an echo connection lingers were never echoed: it is
    /// reset instead of their being discarded, so the peer can tell.
    fn resets_on_late_input(&self) -> bool {
        self.listener.protocol == Protocol::Echo
    }

    /// Whether nothing is in progress: a stop may close it without losing anything
    /// (an echo session with nothing pending, an HTTP connection between requests).
    pub fn is_idle(&self) -> bool {
        match self.phase {
            Phase::Echo => self.output.is_empty(),
            Phase::HttpHead | Phase::Proxy => self.input.is_empty(),
            _ => false,
        }
    }

    /// Until when a stop should wait for this idle connection's first bytes: a client
    /// that connected just before the stop has not had time to send its request (a
    /// `systemctl restart` under socket activation lost such requests), so a
    /// connection accepted less than [`FRESH_GRACE`] ago that has sent nothing yet is
    /// given the rest of it, and served (with `Connection: close`) if its request
    /// comes. `None`: close it now (a keep-alive connection between requests, an echo
    /// session that has spoken).
    pub fn fresh_until(&self) -> Option<Instant> {
        let until = self.accepted + FRESH_GRACE;
        (!self.heard && Instant::now() < until).then_some(until)
    }

    /// Whether the socket has bytes (or an EOF) to read now, without reading them.
    pub fn readable(&self) -> bool {
        sock::readable(&self.stream)
    }

    /// Whether the peer has closed or reset the connection (without reading from it).
    pub fn hung_up(&self) -> bool {
        sock::hung_up(&self.stream)
    }

    /// Starts a lingering close: sends FIN after everything written so far, then parks
    /// to discard what the client still sends, for at most `LINGER`.
    pub fn close_gracefully(mut self) -> Next {
        match self.stream.shutdown(Shutdown::Write) {
            Ok(()) => {
                self.input = Vec::new();
                self.incoming = None;
                self.park(Phase::Closing, Some(Instant::now() + LINGER))
            }
            // Already reset by the peer: nothing left to protect.
            Err(_) => Next::Done,
        }
    }

    /// A lingering connection turned readable: discard what came (keep lingering), or
    /// end at EOF (or, on an echo connection, at any byte).
    pub fn linger(mut self) -> Next {
        if self.discard_input() {
            Next::Park(self)
        } else {
            Next::Done
        }
    }

    /// Closes an idle connection at a stop, at once. Lingering protects a response in
    /// flight from a reset caused by unread client bytes; an idle connection has none
    /// (its last response was answered, and the sweep serves one that became readable),
    /// so waiting for the client's FIN would only hold the stop for `LINGER` per idle
    /// client that never sends one (a browser or a pooled keep-alive client). nginx
    /// closes idle keep-alive connections the same way when it stops. Bytes that race
    /// in after the close get a reset from the kernel: an echo client learns its late
    /// bytes were not taken, an HTTP client retries on a new connection.
    pub fn close_idle(self) -> Next {
        let _ = self.stream.shutdown(Shutdown::Write);
        Next::Done
    }

    /// Closes with a reset (RST) instead of a FIN: for a connection that holds client
    /// bytes the server will never act on, so the peer learns they were not taken.
    pub fn reset(self) -> Next {
        let _ = socket2::SockRef::from(&*self.stream).set_linger(Some(Duration::ZERO));
        Next::Done
    }

    /// Reads and discards input while lingering, at most `DISCARD_PER_CALL` bytes.
    /// Returns whether to keep lingering (no EOF or error yet). On an echo connection,
    /// any byte ends it with a reset instead.
    pub fn discard_input(&mut self) -> bool {
        let mut scratch = [0u8; 4096];
        let mut discarded = 0;
        loop {
            if discarded >= DISCARD_PER_CALL {
                return true;
            }
            match (&*self.stream).read(&mut scratch) {
                Ok(0) => return false,
                Ok(_) if self.resets_on_late_input() => {
                    let _ = socket2::SockRef::from(&*self.stream).set_linger(Some(Duration::ZERO));
                    return false;
                }
                Ok(n) => discarded += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }

    /// Writes as much of `output` as the socket takes now. `Ok(true)`: all of it.
    pub fn flush(&mut self) -> io::Result<bool> {
        let written = sock::write_now(&self.stream, &self.output)?;
        self.output.drain(..written);
        Ok(self.output.is_empty())
    }
}

/// The lot parks a `Conn` by what its phase waits for; it knows no protocol.
impl Parked for Conn {
    fn id(&self) -> u64 {
        self.id
    }
    fn socket(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
    fn wants(&self) -> Wants {
        match self.phase {
            Phase::EchoFlush | Phase::HttpSend(_) => Wants::Write,
            Phase::HttpStalled { epoch } => Wants::Room { epoch },
            Phase::Ready | Phase::Abandoned(_) => Wants::Thread,
            Phase::Proxy | Phase::Echo | Phase::HttpHead | Phase::HttpBody | Phase::Closing => Wants::Read,
        }
    }
    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
    fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }
    fn registered(&self) -> bool {
        self.registered
    }
    fn set_registered(&mut self) {
        self.registered = true;
    }
    fn is_idle(&self) -> bool {
        Conn::is_idle(self)
    }
    fn readable(&self) -> bool {
        Conn::readable(self)
    }
    fn fresh_until(&self) -> Option<Instant> {
        Conn::fresh_until(self)
    }
    fn release_buffers(&mut self) {
        Conn::release_buffers(self);
    }
    fn close_idle(self) {
        let _ = Conn::close_idle(self);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// Every open connection's socket, by id.
pub(crate) struct Registry {
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
