//! The acceptor thread: one `mio::Poll` that owns every listener; the lot's clock and
//! the server's overload valve.
//!
//! It runs on the thread named `acceptor` and does only non-blocking work:
//! - accepts until `WouldBlock` and parks each new connection in the lot (`lot.rs`),
//!   where the first worker to see it readable serves it; the acceptor never hands a
//!   connection to a thread itself;
//! - expires deadlines (echo idle, keep-alive, `header_timeout` and `body_timeout` →
//!   408, linger end), through `service::expired`;
//! - watches the load every `TICK` while connections are open: when no worker is free
//!   it asks the pool how many busy workers are asleep in their job, and grows the
//!   pool by that many (growth on blocking, not on busyness); when no worker has
//!   finished a turn for a whole tick, it takes the ready connections out of the lot
//!   onto the bounded run queue, and sheds what does not fit (HTTP: a canned `503`
//!   with `Retry-After`; echo: reset), so memory stays bounded and a shed client learns
//!   it at once instead of after a request's worth of waiting;
//! - pauses accepting at `max_connections` (the kernel backlog holds the rest) and
//!   resumes when a connection closes;
//! - runs the stop: on `Control::Graceful` readiness turns 503 at once, after
//!   `drain_delay` the listeners close and idle connections close gracefully, and the
//!   loop lasts until every connection in progress is finished (the lot is drained) or
//!   `graceful_timeout` passes (then every socket is cut). `Control::Immediate` cuts
//!   everything at once. The loop then returns its report to `Server::run`, which
//!   shuts the lot and joins the pool.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use crate::config::fmt_duration;
use crate::conn::{Conn, Next, Phase};
use crate::control::Control;
use crate::listener::ListenerCtx;
use crate::service;
use crate::shared::{Shared, WorkerPool};

/// Stalled request bodies one wake-up resumes: enough to use the room a finished
/// upload frees, few enough that bodies which still find none cost little.
const STALL_BATCH: usize = 32;

/// The poll token of the waker.
pub const WAKER: Token = Token(usize::MAX);
/// After an accept error such as EMFILE, wait this long before accepting again, so the
/// loop does not spin on a listener that stays ready.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// After cutting sockets at `graceful_timeout`, how long workers get to notice.
const CUT_GRACE: Duration = Duration::from_secs(2);
/// How often the load is looked at while connections are open.
const TICK: Duration = Duration::from_millis(5);
/// ... and while every worker is stuck, so a shed client hears at once.
const FAST_TICK: Duration = Duration::from_millis(1);
/// The most connections one look takes out of the lot.
const STEAL_BATCH: usize = 64;

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
    pool: Arc<WorkerPool>,
    shared: Arc<Shared>,
    /// When the load is next looked at, and what was seen last time.
    next_tick: Instant,
    finished_at_tick: u64,
    saturated: bool,
    stopping: Option<Stopping>,
    last_saturation_warning: Option<Instant>,
    /// Saturation warnings not logged since the last one (rate limit).
    suppressed_warnings: u64,
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
        pool: Arc<WorkerPool>,
        shared: Arc<Shared>,
    ) -> io::Result<Acceptor> {
        let mut acceptor = Acceptor {
            poll,
            listeners,
            listening: false,
            accept_resume_at: None,
            control,
            pool,
            shared,
            next_tick: Instant::now(),
            finished_at_tick: 0,
            saturated: false,
            stopping: None,
            last_saturation_warning: None,
            suppressed_warnings: 0,
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
                    Token(i) => self.accept(i),
                }
            }
            while let Ok(control) = self.control.try_recv() {
                match control {
                    Control::Graceful if self.stopping.is_none() => self.begin_stop(),
                    _ => return self.stop_now(),
                }
            }
            let now = Instant::now();
            self.expire(now);
            // Room freed in a budget: stalled request bodies try again.
            self.shared.lot.resume_stalled(STALL_BATCH);
            if now >= self.next_tick {
                self.watch_load(now);
            }
            self.maybe_resume_accepting();
            self.tell_systemd(now);
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
        if self.shared.registry.open() > 0 {
            consider(Some(self.next_tick));
        }
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
                self.warn_saturated(|suppressed| {
                    tracing::warn!(target: "spindle::saturation", max_connections = max, suppressed, "max_connections reached; accepting paused")
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
                    self.shared.metrics.accept_errors.inc();
                    self.warn_saturated(|suppressed| {
                        tracing::warn!(target: "spindle::saturation", error = %e, suppressed, "accept failed; pausing accepts for {ACCEPT_BACKOFF:?}")
                    });
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

    /// A new connection waits parked for its first bytes; while every worker is stuck
    /// and the run queue is full, it is shed at once instead.
    fn park_new(&mut self, mut conn: Conn) {
        if !service::opened(&mut conn, &self.shared, Instant::now()) {
            return; // dropped: closed unanswered
        }
        if self.saturated && self.shared.lot.queue_len() >= self.shared.config().pool.queue_capacity {
            self.shed(conn);
        } else {
            self.shared.lot.park(conn);
        }
    }

    // ---- the load ----------------------------------------------------------------------

    /// Looks at the workers: grows the pool if busy ones are blocked, and relieves the
    /// lot if none has finished a turn since the last look.
    fn watch_load(&mut self, now: Instant) {
        let lot = &self.shared.lot;
        let finished = lot.finished_turns();
        let progressed = finished != self.finished_at_tick;
        self.finished_at_tick = finished;
        if lot.idle_workers() > 0 {
            self.saturated = false;
            self.next_tick = now + TICK;
            return;
        }
        let sample = self.pool.sample_blocked();
        // Nobody running and nothing finished since the last look: one more thread
        // for whatever the sleepers wait for (see `Blocked::all_asleep`).
        let blocked = if sample.all_asleep && !progressed { sample.on_the_world.max(1) } else { sample.on_the_world };
        if blocked > 0 {
            let added = self.pool.grow(blocked);
            if added > 0 {
                tracing::debug!(target: "spindle::saturation", added, blocked, "workers blocked in their jobs; pool grown");
            }
        }
        self.saturated = !progressed;
        if self.saturated {
            self.relieve();
        }
        self.next_tick = now + if self.saturated { FAST_TICK } else { TICK };
    }

    /// Every worker is stuck: ready connections move to the run queue (oldest first)
    /// up to `queue_capacity`; new work beyond it is shed.
    fn relieve(&mut self) {
        let capacity = self.shared.config().pool.queue_capacity;
        for conn in self.shared.lot.steal(STEAL_BATCH) {
            if matches!(conn.phase, Phase::Closing) {
                if let Next::Park(conn) = conn.linger() {
                    self.shared.lot.park(conn);
                }
            } else if service::sheddable(&conn) && self.shared.lot.queue_len() >= capacity {
                self.shed(conn);
            } else {
                self.shared.lot.enqueue(conn);
            }
        }
    }

    fn shed(&mut self, conn: Conn) {
        let stats = self.shared.stats();
        let shed_total = self.shared.metrics.shed.get() + 1;
        self.warn_saturated(|suppressed| {
            tracing::warn!(target: "spindle::saturation", queued = stats.queued, threads = stats.threads, shed_total, suppressed, "every worker busy and the run queue full; shedding")
        });
        if let Next::Park(conn) = service::shed(conn, &self.shared) {
            self.shared.lot.park(conn);
        }
    }

    /// Saturation warnings (max_connections, shedding, failed accepts), at most one a
    /// second: at the limit they would otherwise come once per connection, or every
    /// accept back-off. `log` gets how many were left out since the last one; the
    /// metrics count every occurrence.
    fn warn_saturated(&mut self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self.last_saturation_warning.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            self.last_saturation_warning = Some(now);
            log(std::mem::take(&mut self.suppressed_warnings));
        } else {
            self.suppressed_warnings += 1;
        }
    }

    fn expire(&mut self, now: Instant) {
        for conn in self.shared.lot.expired(now) {
            if let Next::Park(conn) = service::expired(conn, &self.shared) {
                self.shared.lot.park(conn);
            }
        }
    }

    // ---- stopping --------------------------------------------------------------

    fn begin_stop(&mut self) {
        let now = Instant::now();
        let drain_delay = self.shared.config().server.drain_delay;
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.notifier.stopping("graceful stop: draining");
        tracing::info!(drain_delay = %fmt_duration(drain_delay), "graceful stop: readiness now 503; listeners close after drain_delay");
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
        // Every connection, parked, queued, lingering or with a worker, is in the
        // registry until it is dropped: none left means the drain is complete. (Each
        // close wakes this loop while accepting is paused, as it is during a stop.)
        let finished = self.shared.registry.open() == 0;
        let stopping = self.stopping.as_mut()?;
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
        // Connections the kernel has already completed are waiting in the accept
        // queues: take them (they are served, with `Connection: close`) rather than
        // let the close reset them. What arrives after this is refused, or, on a
        // SO_REUSEPORT listener with net.ipv4.tcp_migrate_req = 1, moved by the kernel
        // to another process's listener on the same port.
        for i in 0..self.listeners.len() {
            self.accept(i);
        }
        // Dropping the sockets closes them: new connections are refused from here on.
        self.listeners.clear();
        self.accept_resume_at = None;
        self.shared.listeners_closed.set();
        let open = self.shared.registry.open();
        let timeout = self.shared.config().server.graceful_timeout;
        for conn in self.shared.lot.close_idle() {
            let _ = conn.close_idle();
        }
        if let Some(s) = self.stopping.as_mut() {
            s.deadline = Some(Instant::now() + timeout);
            s.open_at_close = open;
        }
        tracing::info!(open, graceful_timeout = %fmt_duration(timeout), "listeners closed; draining");
    }

    fn stop_now(mut self) -> StopReport {
        let started = self.stopping.as_ref().map_or_else(Instant::now, |s| s.started);
        self.shared.notifier.stopping("immediate stop");
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.listeners_closed.set();
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
