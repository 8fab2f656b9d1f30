//! The acceptor thread: one `mio::Poll` that owns every listener, watches every idle
//! connection, and feeds the worker pool.
//!
//! It runs on the thread named `acceptor` and does only non-blocking work:
//! - accepts until `WouldBlock` and parks the new connection in the lot (`lot.rs`);
//! - when a parked connection becomes ready, takes it out of the lot and submits it to
//!   the pool as a job; a full queue sheds it on the spot (HTTP: a canned `503` with
//!   `Retry-After`, echo: closed), so memory stays bounded under any load;
//! - expires deadlines (echo idle, keep-alive, `header_timeout` → 408, linger end);
//! - pauses accepting at `max_connections` (the kernel backlog holds the rest) and
//!   resumes when a connection closes;
//! - runs the stop: on `Control::Graceful` readiness turns 503 at once, after
//!   `drain_delay` the listeners close and parked idle connections close gracefully,
//!   and the loop lasts until every connection out with a worker is finished or parked
//!   and gone, or `graceful_timeout` passes (then every socket is cut).
//!   `Control::Immediate` cuts everything at once. The loop then returns its report to
//!   `Server::run`, which joins the pool.
//!
//! Workers park connections in the lot themselves (no wake-up of this thread); only a
//! connection with requests already buffered comes back over the channel, to be
//! queued again at once (`Phase::Ready`).

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use crate::config::Protocol;
use crate::conn::{Conn, Next, Phase};
use crate::http;
use crate::listener::ListenerCtx;
use crate::lot::FIRST_CONN;
use crate::pool::Pool;
use crate::server::Shared;

/// The poll token of the waker.
pub const WAKER: Token = Token(usize::MAX);
/// After an accept error such as EMFILE, wait this long before accepting again, so the
/// loop does not spin on a listener that stays ready.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// After cutting sockets at `graceful_timeout`, how long workers get to notice.
const CUT_GRACE: Duration = Duration::from_secs(2);

/// Messages to the acceptor (sent with a wake of its `Waker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Begin a graceful stop (a second one means immediate).
    Graceful,
    /// Stop now: cut every socket.
    Immediate,
}

/// How a stop went, for the summary line.
#[derive(Debug, Clone, Default)]
pub struct StopReport {
    /// Whether the stop was immediate.
    pub immediate: bool,
    /// Connections that were open when the listeners closed and ended cleanly.
    pub drained: usize,
    /// Connections cut (shut down) at `graceful_timeout` or by an immediate stop.
    pub cut: usize,
    /// When the stop was requested.
    pub started: Option<Instant>,
}

struct Stopping {
    started: Instant,
    close_listeners_at: Instant,
    /// Set when the listeners have closed: `graceful_timeout` runs from then.
    deadline: Option<Instant>,
    open_at_close: usize,
    /// Set once sockets were cut: the loop ends when workers are back or at this time.
    cut_until: Option<Instant>,
    cut: usize,
}

/// The acceptor's state; `run` consumes it on the acceptor thread.
pub struct Acceptor {
    poll: Poll,
    listeners: Vec<(TcpListener, Arc<ListenerCtx>)>,
    listening: bool,
    accept_resume_at: Option<Instant>,
    control: Receiver<Control>,
    handback: Receiver<Conn>,
    pool: Arc<Pool<Conn>>,
    shared: Arc<Shared>,
    stopping: Option<Stopping>,
    last_saturation_warning: Option<Instant>,
    /// `WATCHDOG=1` interval and next due time (sent from this loop on purpose).
    watchdog: Option<(Duration, Instant)>,
    /// Next `STATUS=` update for systemd.
    next_status: Option<Instant>,
}

/// How often the acceptor refreshes systemd's `STATUS=` line.
const STATUS_EVERY: Duration = Duration::from_secs(5);

impl Acceptor {
    /// Builds the acceptor around a poll whose registry already holds the `Waker`
    /// (token `WAKER`), and registers the listeners.
    pub fn new(
        poll: Poll,
        listeners: Vec<(TcpListener, Arc<ListenerCtx>)>,
        control: Receiver<Control>,
        handback: Receiver<Conn>,
        pool: Arc<Pool<Conn>>,
        shared: Arc<Shared>,
    ) -> io::Result<Acceptor> {
        let mut acceptor = Acceptor {
            poll,
            listeners,
            listening: false,
            accept_resume_at: None,
            control,
            handback,
            pool,
            shared,
            stopping: None,
            last_saturation_warning: None,
            watchdog: None,
            next_status: None,
        };
        if acceptor.shared.notifier.enabled() {
            let now = Instant::now();
            acceptor.watchdog = crate::systemd::watchdog_interval().map(|every| (every, now));
            acceptor.next_status = Some(now + STATUS_EVERY);
        }
        acceptor.listen(true)?;
        Ok(acceptor)
    }

    /// Runs the loop until a stop completes.
    pub fn run(mut self) -> StopReport {
        let mut events = Events::with_capacity(1024);
        let mut ready: Vec<Token> = Vec::with_capacity(1024);
        loop {
            let next = self.shared.lot.prepare_sleep(self.next_wakeup());
            let timeout = next.map(|t| t.saturating_duration_since(Instant::now()));
            let polled = self.poll.poll(&mut events, timeout);
            self.shared.lot.awake();
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "acceptor poll failed; stopping now");
                    return self.stop_now();
                }
            }
            ready.clear();
            ready.extend(events.iter().map(|e| e.token()));
            for token in ready.drain(..) {
                match token {
                    WAKER => {}
                    Token(i) if i < FIRST_CONN => self.accept(i),
                    Token(t) => self.ready((t - FIRST_CONN) as u64),
                }
            }
            while let Ok(control) = self.control.try_recv() {
                match control {
                    Control::Graceful if self.stopping.is_none() => self.begin_stop(),
                    _ => return self.stop_now(),
                }
            }
            while let Ok(conn) = self.handback.try_recv() {
                self.take_back(conn);
            }
            self.expire(Instant::now());
            self.maybe_resume_accepting();
            self.shared.metrics.parked.set(self.shared.lot.len() as u64);
            self.tell_systemd(Instant::now());
            if let Some(report) = self.advance_stop() {
                return report;
            }
        }
    }

    fn tell_systemd(&mut self, now: Instant) {
        if let Some((every, due)) = &mut self.watchdog {
            if now >= *due {
                self.shared.notifier.notify("WATCHDOG=1");
                *due = now + *every;
            }
        }
        if let Some(due) = &mut self.next_status {
            if now >= *due {
                self.shared.notifier.notify(&format!("STATUS={}", self.shared.status_line()));
                *due = now + STATUS_EVERY;
            }
        }
    }

    /// The acceptor's own timers (parked connections' deadlines are the lot's).
    fn next_wakeup(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.accept_resume_at);
        consider(self.watchdog.map(|(_, due)| due));
        consider(self.next_status);
        if let Some(s) = &self.stopping {
            if s.deadline.is_none() {
                consider(Some(s.close_listeners_at));
            }
            consider(s.deadline);
            consider(s.cut_until);
        }
        next
    }

    // ---- accepting -------------------------------------------------------------

    fn listen(&mut self, on: bool) -> io::Result<()> {
        if self.listening == on {
            return Ok(());
        }
        let registry = self.poll.registry();
        for i in 0..self.listeners.len() {
            let result = if on {
                registry.register(&mut self.listeners[i].0, Token(i), Interest::READABLE)
            } else {
                // Deregistering cannot meaningfully fail for a registered listener; go on
                // with the others either way.
                let _ = registry.deregister(&mut self.listeners[i].0);
                Ok(())
            };
            if let Err(e) = result {
                // All or none: undo the ones registered, so a later resume starts clean
                // instead of failing forever on EEXIST.
                for (listener, _) in &mut self.listeners[..i] {
                    let _ = registry.deregister(listener);
                }
                return Err(e);
            }
        }
        self.listening = on;
        self.shared.registry.paused.store(!on, Ordering::SeqCst);
        Ok(())
    }

    fn accept(&mut self, i: usize) {
        let max = self.shared.limits().max_connections;
        loop {
            if self.shared.registry.open() >= max {
                self.warn_saturated(|| {
                    tracing::warn!(target: "spindle::saturation", max_connections = max, "max_connections reached; accepting paused")
                });
                let _ = self.listen(false);
                return;
            }
            let Some((listener, ctx)) = self.listeners.get(i) else { return };
            match listener.accept() {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let stream = std::net::TcpStream::from(OwnedFd::from(stream));
                    let ctx = Arc::clone(ctx);
                    self.shared.metrics.accepted.inc();
                    let conn = Conn::new(stream, peer, ctx, &self.shared.registry);
                    self.park_new(conn);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_transient_accept_error(&e) => continue,
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS: back off instead of spinning on a
                    // listener that stays readable.
                    tracing::warn!(target: "spindle::saturation", error = %e, "accept failed; pausing accepts for {ACCEPT_BACKOFF:?}");
                    let _ = self.listen(false);
                    self.accept_resume_at = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn maybe_resume_accepting(&mut self) {
        if self.listening || self.listeners.is_empty() {
            return;
        }
        if let Some(t) = self.accept_resume_at {
            if Instant::now() < t {
                return;
            }
            self.accept_resume_at = None;
        }
        if self.shared.registry.open() < self.shared.limits().max_connections {
            if let Err(e) = self.listen(true) {
                tracing::error!(error = %e, "cannot resume accepting");
            }
        }
    }

    /// A new connection waits parked for its first bytes: no thread is spent on a
    /// client that connects and says nothing.
    fn park_new(&mut self, mut conn: Conn) {
        let limits = self.shared.limits();
        let now = Instant::now();
        match conn.listener.protocol {
            Protocol::Echo => {
                conn.phase = Phase::Echo;
                conn.deadline = limits.echo_idle_timeout.map(|d| now + d);
            }
            Protocol::Http => {
                // The first head's header_timeout runs from the connection's accept.
                conn.phase = Phase::HttpHead;
                conn.head_started = Some(now);
                conn.deadline = Some(now + limits.header_timeout);
            }
        }
        self.park(conn);
    }

    // ---- parking ----------------------------------------------------------------

    fn park(&mut self, conn: Conn) {
        self.shared.lot.park(conn);
    }

    fn ready(&mut self, id: u64) {
        if let Some(conn) = self.shared.lot.ready(id) {
            self.dispatch(conn);
        }
    }

    fn dispatch(&mut self, conn: Conn) {
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        if let Err(conn) = self.pool.try_submit(conn) {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.shed(conn);
        }
    }

    /// The queue is full: answer without a worker and close.
    fn shed(&mut self, conn: Conn) {
        self.shared.metrics.shed.inc();
        let (stats, shed_total) = (self.pool.stats(), self.shared.metrics.shed.get());
        self.warn_saturated(|| {
            tracing::warn!(target: "spindle::saturation", queued = stats.queued, threads = stats.threads, shed_total, "worker queue full; shedding")
        });
        match conn.listener.protocol {
            Protocol::Echo => drop(conn),
            Protocol::Http => {
                // One non-blocking write of a small response: a fresh socket buffer
                // always takes it; if not, the client gets the close alone.
                let _ = (&*conn.stream).write(&http::canned(503, self.shared.config().server.server_header.as_deref()));
                if let Next::Park(conn) = conn.close_gracefully() {
                    self.park(conn);
                }
            }
        }
    }

    /// Saturation warnings, at most one a second: at the limit they would otherwise
    /// come once per connection.
    fn warn_saturated(&mut self, log: impl FnOnce()) {
        let now = Instant::now();
        if self.last_saturation_warning.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            self.last_saturation_warning = Some(now);
            log();
        }
    }

    fn take_back(&mut self, conn: Conn) {
        if conn.phase == Phase::Ready {
            // Its next request is already buffered: back on the queue, behind the others.
            self.dispatch(conn);
        } else {
            self.park(conn);
        }
    }

    fn expire(&mut self, now: Instant) {
        for conn in self.shared.lot.expired(now) {
            match conn.phase {
                Phase::HttpHead if !conn.input.is_empty() => {
                    // Part of a head came, the rest did not: RFC 9110 §15.5.9.
                    tracing::debug!(conn = conn.id, peer = %conn.peer, "request head timed out: 408");
                    let _ =
                        (&*conn.stream).write(&http::canned(408, self.shared.config().server.server_header.as_deref()));
                    if let Next::Park(conn) = conn.close_gracefully() {
                        self.park(conn);
                    }
                }
                phase => {
                    tracing::debug!(conn = conn.id, peer = %conn.peer, ?phase, "idle deadline passed; closing");
                }
            }
        }
    }

    // ---- stopping --------------------------------------------------------------

    fn begin_stop(&mut self) {
        let now = Instant::now();
        let drain_delay = self.shared.config().server.drain_delay;
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.notifier.stopping("graceful stop: draining");
        tracing::info!(drain_delay = ?drain_delay, "graceful stop: readiness now 503; listeners close after drain_delay");
        self.stopping = Some(Stopping {
            started: now,
            close_listeners_at: now + drain_delay,
            deadline: None,
            open_at_close: 0,
            cut_until: None,
            cut: 0,
        });
    }

    /// Moves a graceful stop along; returns the report when it is complete.
    fn advance_stop(&mut self) -> Option<StopReport> {
        let now = Instant::now();
        let stopping = self.stopping.as_ref()?;
        if stopping.deadline.is_none() {
            if now < stopping.close_listeners_at {
                return None;
            }
            self.close_listeners_and_idle();
        }
        // A worker sends a `Ready` connection before it decrements `in_flight`: drain the
        // channel after reading the count, so a connection in transit (with requests
        // already read) is never taken for finished.
        let in_flight = self.shared.in_flight.load(Ordering::SeqCst);
        let mut in_transit = false;
        while let Ok(conn) = self.handback.try_recv() {
            in_transit = true;
            self.take_back(conn);
        }
        let stopping = self.stopping.as_mut()?;
        let finished = in_flight == 0 && !in_transit && self.shared.lot.is_empty();
        if stopping.cut_until.is_none() && !finished && stopping.deadline.is_some_and(|d| now >= d) {
            stopping.cut = self.shared.registry.cut_all();
            stopping.cut_until = Some(now + CUT_GRACE);
            tracing::warn!(cut = stopping.cut, "graceful_timeout passed; cutting the remaining connections");
            self.shared.lot.clear();
            return None;
        }
        let cut_over = stopping.cut_until.is_some_and(|t| now >= t);
        if finished || cut_over {
            let s = self.stopping.take()?;
            return Some(StopReport {
                immediate: false,
                drained: s.open_at_close.saturating_sub(s.cut),
                cut: s.cut,
                started: Some(s.started),
            });
        }
        None
    }

    fn close_listeners_and_idle(&mut self) {
        let _ = self.listen(false);
        // Dropping the sockets closes them: new connections are refused from here on.
        self.listeners.clear();
        self.accept_resume_at = None;
        self.shared.stop.set();
        let open = self.shared.registry.open();
        let timeout = self.shared.config().server.graceful_timeout;
        for conn in self.shared.lot.close_idle() {
            if let Next::Park(mut conn) = conn.close_gracefully() {
                // Read what raced in before the FIN, then wait for the client's EOF.
                if conn.discard_input() {
                    self.park(conn);
                }
            }
        }
        if let Some(s) = self.stopping.as_mut() {
            s.deadline = Some(Instant::now() + timeout);
            s.open_at_close = open;
        }
        tracing::info!(open, in_flight = self.shared.in_flight.load(Ordering::SeqCst), graceful_timeout = ?timeout, "listeners closed; draining");
    }

    fn stop_now(mut self) -> StopReport {
        let started = self.stopping.as_ref().map_or_else(Instant::now, |s| s.started);
        self.shared.notifier.stopping("immediate stop");
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.stop.set();
        let _ = self.listen(false);
        self.listeners.clear();
        let cut = self.shared.registry.cut_all();
        tracing::warn!(cut, "immediate stop: every connection cut");
        self.shared.lot.clear();
        StopReport { immediate: true, drained: 0, cut, started: Some(started) }
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset)
}
