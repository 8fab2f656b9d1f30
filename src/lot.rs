//! The parking lot: every idle connection and its deadline, registered in the
//! acceptor's poll.
//!
//! Owned jointly by the acceptor and the workers. A worker whose turn ends with the
//! socket empty parks the connection here itself: it moves the `Conn` in and re-arms
//! its registration in the acceptor's epoll (`EPOLL_CTL_MOD`, which reports readiness
//! that already exists, so nothing that arrived meanwhile is missed). The acceptor is
//! not woken for that; it learns of the connection when it becomes readable. This
//! replaced handing every connection back over a channel plus a `Waker`: measured
//! under `wrk -c50` keep-alive, that cost the acceptor a wake-up and two `epoll_ctl`
//! calls per request.
//!
//! A connection stays registered while a worker has it, but deaf (see `disarm`), and
//! the next park re-arms it. The
//! descriptor leaves the epoll set when the connection is dropped (closing the only
//! descriptor removes it).
//!
//! Every change happens under one lock, which also orders parks against the acceptor's
//! stop sweep (`close_idle`): a park after the sweep sees `closing` and closes the
//! connection instead of parking it idle.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token, Waker};

use crate::conn::{Conn, Next, Phase};

/// Tokens below this are listeners (by index) and the waker; a connection's token is
/// this plus its id.
pub const FIRST_CONN: usize = 1 << 16;

/// Parked connections, shared by the acceptor and the workers.
pub struct Lot {
    state: Mutex<State>,
    registry: Registry,
    waker: Arc<Waker>,
    epoch: Instant,
    /// When the acceptor's current poll ends, in ns since `epoch`; 0 while it is awake
    /// (it recomputes before sleeping), `u64::MAX` while it sleeps without a deadline.
    wake_at: AtomicU64,
}

#[derive(Default)]
struct State {
    conns: HashMap<u64, Conn>,
    timers: BTreeSet<(Instant, u64)>,
    /// Set by the stop sweep: idle connections are closed instead of parked.
    closing: bool,
    /// Set when the acceptor has returned: nothing polls the lot any more, so a
    /// connection parked now would never be served or closed. It is dropped instead.
    gone: bool,
}

impl State {
    /// Takes a connection out, with its deadline.
    fn remove(&mut self, id: u64) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        if let Some(d) = conn.deadline {
            self.timers.remove(&(d, id));
        }
        Some(conn)
    }
}

impl Lot {
    /// A lot registering in the poll behind `registry`, waking it with `waker`.
    pub fn new(registry: Registry, waker: Arc<Waker>) -> Lot {
        Lot { state: Mutex::default(), registry, waker, epoch: Instant::now(), wake_at: AtomicU64::new(0) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos().min(u64::MAX as u128 - 1) as u64
    }

    /// Parks `conn` (from any thread): registered for its phase's interest, with its
    /// deadline. During a stop, an idle connection is closed gracefully instead.
    pub fn park(&self, mut conn: Conn) {
        let mut st = self.lock();
        if st.gone {
            drop(st);
            return; // dropping closes it
        }
        if st.closing && matches!(conn.phase, Phase::Echo | Phase::HttpHead) {
            drop(st);
            match conn.close_gracefully() {
                Next::Park(mut c) => {
                    // Read what raced in before the FIN; EOF already means done.
                    if !c.discard_input() {
                        return;
                    }
                    conn = c;
                }
                Next::Done => return,
            }
            st = self.lock();
        }
        conn.release_buffers();
        let fd = conn.stream.as_raw_fd();
        let token = Token(FIRST_CONN + conn.id as usize);
        let registered = if conn.registered {
            self.registry.reregister(&mut SourceFd(&fd), token, conn.interest())
        } else {
            self.registry.register(&mut SourceFd(&fd), token, conn.interest())
        };
        if let Err(e) = registered {
            drop(st);
            tracing::warn!(conn = conn.id, error = %e, "cannot park connection; closing it");
            return;
        }
        conn.registered = true;
        if let Some(d) = conn.deadline {
            st.timers.insert((d, conn.id));
            // The acceptor sleeps past this deadline: wake it to recompute.
            if self.nanos(d) < self.wake_at.load(Ordering::SeqCst) {
                let _ = self.waker.wake();
            }
        }
        st.conns.insert(conn.id, conn);
    }

    /// Handles readiness of a parked connection. A lingering (`Closing`) one is dealt
    /// with here: input read and discarded, dropped at EOF, else parked again. Any other
    /// is taken out (it stays registered; see the module note) and returned for a
    /// worker.
    pub fn ready(&self, id: u64) -> Option<Conn> {
        let mut conn = self.lock().remove(id)?;
        if conn.phase != Phase::Closing {
            self.disarm(&conn);
            return Some(conn);
        }
        // Discarding happens outside the lock and a bounded amount at a time, so a
        // client that keeps sending after its answer cannot hold the lot (or this
        // thread) for long; its LINGER deadline still ends it.
        if conn.discard_input() {
            self.park(conn);
        }
        None
    }

    /// Leaves a connection going to a worker registered but deaf until it is parked
    /// again (`park` re-arms it with `EPOLL_CTL_MOD`): otherwise edge-triggered
    /// readiness wakes this thread for every segment the worker is reading itself.
    /// EPOLLPRI (urgent data) is the one interest TCP never signals here. Measured on
    /// a streaming echo client (one connection, 64 KiB blocks): the acceptor was woken
    /// about 20,000 times a second for nothing; for keep-alive HTTP, where a turn is
    /// one request, the `epoll_ctl` costs about what the wake-up did.
    fn disarm(&self, conn: &Conn) {
        let fd = conn.stream.as_raw_fd();
        let token = Token(FIRST_CONN + conn.id as usize);
        let _ = self.registry.reregister(&mut SourceFd(&fd), token, Interest::PRIORITY);
    }

    /// Connections whose deadline has passed, taken out.
    pub fn expired(&self, now: Instant) -> Vec<Conn> {
        let mut st = self.lock();
        let mut out = Vec::new();
        while let Some(&(t, id)) = st.timers.first() {
            if t > now {
                break;
            }
            st.timers.pop_first();
            if let Some(mut conn) = st.conns.remove(&id) {
                conn.deadline = None;
                out.push(conn);
            }
        }
        out
    }

    /// Called by the acceptor before it polls: the earliest parked deadline (or
    /// `other`, whichever is first), also published so a park with an earlier deadline
    /// wakes it.
    pub fn prepare_sleep(&self, other: Option<Instant>) -> Option<Instant> {
        let st = self.lock();
        let next = match (st.timers.first().map(|(t, _)| *t), other) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.wake_at.store(next.map_or(u64::MAX, |t| self.nanos(t)), Ordering::SeqCst);
        next
    }

    /// Called by the acceptor when its poll returns.
    pub fn awake(&self) {
        self.wake_at.store(0, Ordering::SeqCst);
    }

    /// Connections parked now.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    /// Whether nothing is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stop sweep: from now on idle connections are not parked, and the idle ones
    /// parked now are taken out (to be closed gracefully by the caller).
    pub fn close_idle(&self) -> Vec<Conn> {
        let mut st = self.lock();
        st.closing = true;
        let ids: Vec<u64> =
            st.conns.values().filter(|c| matches!(c.phase, Phase::Echo | Phase::HttpHead)).map(|c| c.id).collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(st.remove(id));
        }
        out
    }

    /// The acceptor has returned: drop what is parked, and from now on what is parked.
    pub fn shut(&self) {
        self.lock().gone = true;
        self.clear();
    }

    /// Drops every parked connection (after their sockets were cut).
    pub fn clear(&self) {
        let (conns, _timers) = {
            let mut st = self.lock();
            st.closing = true;
            (std::mem::take(&mut st.conns), std::mem::take(&mut st.timers))
        };
        drop(conns);
    }
}
