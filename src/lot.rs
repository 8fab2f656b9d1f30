//! The lot: every connection that no thread is serving, the workers' shared epoll
//! they are registered in, the run queue, and every deadline.
//!
//! This is the engine's meeting point (see `docs/engine.md` for the protocol and its
//! proof sketch). Workers take turns waiting on the lot's epoll (`wait`): it holds every
//! parked connection with `EPOLLONESHOT`, so the kernel hands one ready connection to
//! one waiting thread, which serves it on its own stack and parks it again (`release`).
//! That is Leader/Followers (Schmidt et al., 2000) with the kernel as the promoter:
//! `epoll_wait` waiters sleep exclusively, last-in first-out, and one readiness event
//! wakes one of them. No queue, no futex hand-off, no acceptor on the hot path.
//!
//! The acceptor thread parks new connections here, sweeps deadlines (`expired`), and
//! when every worker is stuck it `steal`s ready connections into the bounded run queue
//! (or sheds them); workers serve the queue first, through the `BELL` eventfd.
//!
//! Every change to a parked connection happens under the lock of its shard (the map is
//! split in sixteen by id). That includes `epoll_ctl`: a connection is re-armed only
//! while it is in the map and its shard's lock is held, so no other thread can have
//! taken it out and closed its descriptor (whose number the kernel may already have
//! given to a new connection) between the insert and the re-arm. `docs/engine.md` has
//! the whole protocol.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::Waker;
use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags, Timespec};

use crate::conn::{Conn, Next, Phase};

/// Event data of the run-queue bell (armed one-shot while the queue is not empty).
const BELL: u64 = u64::MAX;
/// Event data of the shutdown bell (level-triggered: wakes every waiter, in turn).
const SHUTDOWN: u64 = u64::MAX - 1;

/// What a worker's wait produced.
#[allow(clippy::large_enum_variant)] // a `Conn` moves by value, never boxed
pub(crate) enum Wait {
    /// A connection to serve; `Some(t)` if it waited in the run queue since `t`.
    Conn(Conn, Option<Instant>),
    /// Nothing within the timeout (or a wake-up that found nothing).
    Idle,
    /// The lot is shut: the worker should exit.
    Shutdown,
}

/// What `steal` found: connections the acceptor must queue or shed.
pub(crate) type Stolen = Vec<Conn>;

/// Parked connections, the workers' epoll and the run queue.
pub(crate) struct Lot {
    epoll: OwnedFd,
    bell: OwnedFd,
    shutdown_bell: OwnedFd,
    /// Parked connections by `id % SHARDS`, each shard under its own lock.
    shards: Vec<Mutex<Shard>>,
    queue: Mutex<Queue>,
    /// Set (before the sweep) by the stop sweep: idle connections are closed instead of
    /// parked. Read under a shard's lock, so a park cannot slip past the sweep.
    closing: AtomicBool,
    /// Set when the acceptor has returned: nothing sweeps the lot any more, so a
    /// connection parked now would never be closed. It is dropped instead.
    gone: AtomicBool,
    waker: Arc<Waker>,
    epoch: Instant,
    /// When the acceptor's current poll ends, in ns since `epoch`; 0 while it is awake
    /// (it recomputes before sleeping), `u64::MAX` while it sleeps without a deadline.
    wake_at: AtomicU64,
    /// Workers inside `wait` now.
    idle: AtomicUsize,
    /// `queue.items.len()`, written under the queue's lock, read without it by `wait`.
    queued: AtomicUsize,
    /// Turns finished since start: the acceptor's evidence that workers make progress.
    finished: AtomicU64,
    /// Ids of request bodies parked for room in a budget (`Phase::HttpStalled`), oldest
    /// first; an id may be stale (the connection left by a deadline or a hang-up).
    /// Locked before a shard's lock, never after.
    stalled: Mutex<VecDeque<u64>>,
    /// Bumped each time a budget gives bytes back while someone waits.
    room_epoch: AtomicU64,
    /// Set with each bump, taken by the acceptor's `resume_stalled`.
    room: AtomicBool,
}

/// Shards of the map: with one lock, four workers queued on it twice a request
/// (measured under `wrk -c50` on hello: 2.6 `futex` calls and 0.3 context switches per
/// request). Connection ids are sequential, so `id % SHARDS` spreads them evenly.
const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    conns: HashMap<u64, Conn>,
    timers: BTreeSet<(Instant, u64)>,
}

#[derive(Default)]
struct Queue {
    /// Connections with work that wait for a thread, oldest first.
    items: VecDeque<(Conn, Instant)>,
    bell_armed: bool,
}

impl Shard {
    /// Takes a parked connection out, with its deadline.
    fn remove(&mut self, id: u64) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        if let Some(d) = conn.deadline {
            self.timers.remove(&(d, id));
        }
        Some(conn)
    }
}

fn flags_for(conn: &Conn) -> EventFlags {
    if matches!(conn.phase, Phase::HttpStalled { .. }) {
        // Not read until the budget has room; HUP and ERR (a reset) are still reported.
        return EventFlags::ONESHOT;
    }
    if conn.wants_write() {
        // Not RDHUP: a client that half-closes and stops reading would make every re-arm
        // fire at once, and a worker would spin on a flush that writes nothing. HUP and
        // ERR (a reset) are reported regardless.
        EventFlags::ONESHOT | EventFlags::OUT
    } else {
        EventFlags::ONESHOT | EventFlags::RDHUP | EventFlags::IN
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as i64, tv_nsec: i64::from(d.subsec_nanos()) }
}

impl Lot {
    /// A lot whose early deadlines wake the acceptor through `waker`.
    pub(crate) fn new(waker: Arc<Waker>) -> io::Result<Lot> {
        let epoll = epoll::create(CreateFlags::CLOEXEC)?;
        // The bell's counter is 1 for ever: it is "ready" exactly while it is armed.
        let bell = eventfd(1, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(&epoll, &bell, EventData::new_u64(BELL), EventFlags::ONESHOT)?;
        let shutdown_bell = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(&epoll, &shutdown_bell, EventData::new_u64(SHUTDOWN), EventFlags::IN)?;
        Ok(Lot {
            epoll,
            bell,
            shutdown_bell,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            queue: Mutex::default(),
            closing: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            waker,
            epoch: Instant::now(),
            wake_at: AtomicU64::new(0),
            idle: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            finished: AtomicU64::new(0),
            stalled: Mutex::default(),
            room_epoch: AtomicU64::new(0),
            room: AtomicBool::new(false),
        })
    }

    fn shard(&self, id: u64) -> MutexGuard<'_, Shard> {
        self.shards[(id % SHARDS as u64) as usize].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos().min(u64::MAX as u128 - 1) as u64
    }

    // ---- parking (any thread) --------------------------------------------------------

    /// Parks `conn`: armed in the workers' epoll for its phase's interest, with its
    /// deadline. During a stop, an idle connection is closed gracefully instead. The
    /// `closing` check and the insert happen under one hold of the shard's lock, and
    /// the sweep sets `closing` before it takes each shard's lock, so a park cannot
    /// slip past the sweep.
    pub(crate) fn park(&self, mut conn: Conn) {
        // Work for a thread, not for the socket: the run queue.
        if conn.phase.runnable() {
            return self.enqueue(conn);
        }
        // A body waiting for budget room is listed for `resume_stalled`, under the
        // list's lock held across the shard's insert (so a resume cannot look for it
        // in between). Room freed since its last try (the epoch moved) would wake no
        // one: it tries again now instead.
        let mut stalled = None;
        if let Phase::HttpStalled { epoch } = conn.phase {
            let list = self.stalled.lock().unwrap_or_else(|e| e.into_inner());
            if self.room_epoch.load(Ordering::SeqCst) != epoch {
                drop(list);
                return self.enqueue(conn);
            }
            stalled = Some(list);
        }
        let mut shard = self.shard(conn.id);
        if self.gone.load(Ordering::SeqCst) {
            return; // dropping closes it
        }
        if let Some(list) = &mut stalled {
            list.push_back(conn.id);
        }
        if self.closing.load(Ordering::SeqCst) && conn.is_idle() && !conn.readable() {
            match conn.fresh_until() {
                Some(until) => conn.deadline_at_most(until),
                None => {
                    drop(shard);
                    let _ = conn.close_idle();
                    return;
                }
            }
        }
        conn.release_buffers();
        let data = EventData::new_u64(conn.id);
        let armed = if conn.registered {
            epoll::modify(&self.epoll, conn.stream.as_fd(), data, flags_for(&conn))
        } else {
            epoll::add(&self.epoll, conn.stream.as_fd(), data, flags_for(&conn))
        };
        if let Err(e) = armed {
            drop(shard);
            tracing::warn!(conn = conn.id, error = %e, "cannot park connection; closing it");
            return;
        }
        conn.registered = true;
        if let Some(d) = conn.deadline {
            shard.timers.insert((d, conn.id));
            // The acceptor sleeps past this deadline: wake it to recompute.
            if self.nanos(d) < self.wake_at.load(Ordering::SeqCst) {
                let _ = self.waker.wake();
            }
        }
        shard.conns.insert(conn.id, conn);
    }

    /// Puts a connection that has work at hand (requests already buffered, or stolen
    /// from the epoll by the acceptor) on the run queue. Never refuses: bounding it is
    /// the caller's decision (`queue_len`).
    pub(crate) fn enqueue(&self, conn: Conn) {
        let mut q = self.lock_queue();
        if self.gone.load(Ordering::SeqCst) {
            return;
        }
        q.items.push_back((conn, Instant::now()));
        self.queued.store(q.items.len(), Ordering::SeqCst);
        self.arm_bell(&mut q);
    }

    fn arm_bell(&self, q: &mut Queue) {
        if q.bell_armed || q.items.is_empty() {
            return;
        }
        match epoll::modify(&self.epoll, &self.bell, EventData::new_u64(BELL), EventFlags::IN | EventFlags::ONESHOT) {
            Ok(()) => q.bell_armed = true,
            // Cannot happen for a descriptor we own; if it did, the queue would wait
            // for the next `enqueue`.
            Err(e) => tracing::error!(error = %e, "cannot arm the run-queue bell"),
        }
    }

    /// Connections waiting on the run queue now.
    pub(crate) fn queue_len(&self) -> usize {
        self.lock_queue().items.len()
    }

    /// The oldest queued connection, if any.
    fn pop(&self, q: &mut Queue) -> Option<(Conn, Instant)> {
        let popped = q.items.pop_front();
        self.queued.store(q.items.len(), Ordering::SeqCst);
        popped
    }

    /// Silences an armed bell (the queue was emptied without it): an empty mask, so
    /// even an event already on the ready list is not delivered.
    fn disarm_bell(&self, q: &mut Queue) {
        if q.bell_armed && q.items.is_empty() {
            match epoll::modify(&self.epoll, &self.bell, EventData::new_u64(BELL), EventFlags::ONESHOT) {
                Ok(()) => q.bell_armed = false,
                // A worker would be woken once for an empty queue, harmlessly.
                Err(e) => tracing::error!(error = %e, "cannot disarm the run-queue bell"),
            }
        }
    }

    // ---- workers -------------------------------------------------------------------

    /// Waits up to `timeout` for work: the run queue first, else the first parked
    /// connection that turns ready (or the queue's bell). The connection is out of the
    /// lot until it is `release`d.
    ///
    /// Queued work is taken before the epoll is asked: it is older than anything ready
    /// there (the acceptor stole it from the ready list, or a turn queued a request
    /// already buffered). Served only through the bell, which re-arms to the back of
    /// the ready list after every pop, a queue of N waited N passes over every ready
    /// connection: with 200 keep-alive clients on 64 sleeping workers, a few clients
    /// waited 2 s and more while the median was 45 ms. The bell stays armed after such
    /// a pop. The bell keeps its invariant: the pop that empties the queue disarms it.
    pub(crate) fn wait(&self, timeout: Duration) -> Wait {
        if self.queued.load(Ordering::SeqCst) > 0 {
            let mut q = self.lock_queue();
            let popped = self.pop(&mut q);
            self.disarm_bell(&mut q);
            if let Some((conn, since)) = popped {
                return Wait::Conn(conn, Some(since));
            }
        }
        let mut events = [MaybeUninit::<epoll::Event>::uninit(); 1];
        self.idle.fetch_add(1, Ordering::SeqCst);
        let waited = epoll::wait(&self.epoll, &mut events, Some(&timespec(timeout)));
        self.idle.fetch_sub(1, Ordering::SeqCst);
        let data = match waited {
            Ok((ready, _)) if !ready.is_empty() => ready[0].data.u64(),
            Ok(_) => return Wait::Idle,
            Err(rustix::io::Errno::INTR) => return Wait::Idle,
            Err(e) => {
                tracing::error!(error = %e, "worker epoll_wait failed");
                std::thread::sleep(Duration::from_millis(10));
                return Wait::Idle;
            }
        };
        match data {
            SHUTDOWN => Wait::Shutdown,
            BELL => {
                let mut q = self.lock_queue();
                q.bell_armed = false;
                let popped = self.pop(&mut q);
                self.arm_bell(&mut q);
                match popped {
                    Some((conn, since)) => Wait::Conn(conn, Some(since)),
                    None => Wait::Idle,
                }
            }
            id => match self.shard(id).remove(id) {
                Some(conn) => Wait::Conn(conn, None),
                // Expired or stolen by the acceptor meanwhile: ids are never reused,
                // so this event can only have been that connection's.
                None => Wait::Idle,
            },
        }
    }

    /// A worker is done with a connection it took: parks it, queues it (`Ready`), or
    /// (`Done`) lets it go.
    pub(crate) fn release(&self, next: Next) {
        match next {
            Next::Park(conn) => self.park(conn),
            Next::Done => {}
        }
        self.finished.fetch_add(1, Ordering::Relaxed);
    }

    /// Workers inside `wait` now.
    pub(crate) fn idle_workers(&self) -> usize {
        self.idle.load(Ordering::SeqCst)
    }

    /// Turns finished since start.
    pub(crate) fn finished_turns(&self) -> u64 {
        self.finished.load(Ordering::Relaxed)
    }

    /// Wakes every waiting worker, for good: `wait` answers `Shutdown` from now on.
    pub(crate) fn wake_all(&self) {
        let _ = rustix::io::write(&self.shutdown_bell, &1u64.to_ne_bytes());
    }

    // ---- the acceptor ----------------------------------------------------------------

    /// Takes up to `max` ready connections out of the epoll without waiting, for the
    /// acceptor to queue or shed while every worker is stuck.
    pub(crate) fn steal(&self, max: usize) -> Stolen {
        let mut events = [MaybeUninit::<epoll::Event>::uninit(); 64];
        let max = max.clamp(1, events.len());
        let ready: Vec<u64> = match epoll::wait(&self.epoll, &mut events[..max], Some(&timespec(Duration::ZERO))) {
            Ok((ready, _)) => ready.iter().map(|e| e.data.u64()).collect(),
            Err(_) => return Vec::new(),
        };
        let mut out = Vec::with_capacity(ready.len());
        for data in ready {
            match data {
                SHUTDOWN => {}
                BELL => {
                    let mut q = self.lock_queue();
                    q.bell_armed = false;
                    self.arm_bell(&mut q);
                }
                id => out.extend(self.shard(id).remove(id)),
            }
        }
        out
    }

    /// A budget gave bytes back while connections wait for room (any thread; the
    /// budgets' `on_room`): bumps the epoch and wakes the acceptor to resume them.
    pub(crate) fn room_freed(&self) {
        self.room_epoch.fetch_add(1, Ordering::SeqCst);
        self.room.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    /// The room epoch, read by a body before its last try for room.
    pub(crate) fn room_epoch(&self) -> u64 {
        self.room_epoch.load(Ordering::SeqCst)
    }

    /// After room was freed: moves up to `max` stalled bodies, oldest first, to the run
    /// queue to try again (those that still find none park again, at the back).
    pub(crate) fn resume_stalled(&self, max: usize) {
        if !self.room.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut resumed = Vec::new();
        {
            let mut list = self.stalled.lock().unwrap_or_else(|e| e.into_inner());
            while resumed.len() < max {
                let Some(id) = list.pop_front() else { break };
                let mut shard = self.shard(id);
                if shard.conns.get(&id).is_some_and(|c| matches!(c.phase, Phase::HttpStalled { .. })) {
                    resumed.extend(shard.remove(id));
                }
            }
            if !list.is_empty() {
                // More wait: the next give, or the next pass, takes the next batch.
                self.room.store(true, Ordering::SeqCst);
            }
        }
        for conn in resumed {
            self.enqueue(conn);
        }
    }

    /// Connections whose deadline has passed, taken out.
    pub(crate) fn expired(&self, now: Instant) -> Vec<Conn> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            while let Some(&(t, id)) = shard.timers.first() {
                if t > now {
                    break;
                }
                shard.timers.pop_first();
                if let Some(mut conn) = shard.conns.remove(&id) {
                    conn.deadline = None;
                    out.push(conn);
                }
            }
        }
        out
    }

    /// Called by the acceptor before it polls: the earliest parked deadline (or
    /// `other`, whichever is first), also published so a park with an earlier deadline
    /// wakes it. (A park that races this either is seen here, or sees `wake_at`.)
    pub(crate) fn prepare_sleep(&self, other: Option<Instant>) -> Option<Instant> {
        // Publish "asleep without a deadline" first, so a park that lands after its
        // shard is read below wakes the acceptor rather than being missed.
        self.wake_at.store(u64::MAX, Ordering::SeqCst);
        let mut next = other;
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(&(t, _)) = shard.timers.first() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        self.wake_at.store(next.map_or(u64::MAX, |t| self.nanos(t)), Ordering::SeqCst);
        next
    }

    /// Called by the acceptor when its poll returns.
    pub(crate) fn awake(&self) {
        self.wake_at.store(0, Ordering::SeqCst);
    }

    /// Connections parked now (not counting the run queue).
    pub(crate) fn parked(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).conns.len()).sum()
    }

    /// The stop sweep: from now on idle connections are not parked, and the idle ones
    /// parked now are taken out (to be closed gracefully by the caller).
    pub(crate) fn close_idle(&self) -> Vec<Conn> {
        self.closing.store(true, Ordering::SeqCst);
        let mut out = Vec::new();
        let mut serve = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<u64> = shard.conns.values().filter(|c| c.is_idle()).map(|c| c.id).collect();
            for id in ids {
                let Some(mut conn) = shard.remove(id) else { continue };
                // A request (or echo bytes) that arrived just before the stop is answered
                // (with `Connection: close`) rather than discarded by the close.
                if conn.readable() {
                    serve.push(conn);
                } else if let Some(until) = conn.fresh_until() {
                    // Accepted just before the stop: parked again, briefly, for its
                    // first bytes (still armed in the epoll; only the timer changes).
                    conn.deadline_at_most(until);
                    if let Some(d) = conn.deadline {
                        shard.timers.insert((d, conn.id));
                    }
                    shard.conns.insert(conn.id, conn);
                } else {
                    out.push(conn);
                }
            }
        }
        for conn in serve {
            self.enqueue(conn);
        }
        out
    }

    /// The acceptor has returned: drop what is parked, and from now on what is parked;
    /// wake every worker to exit.
    pub(crate) fn shut(&self) {
        self.gone.store(true, Ordering::SeqCst);
        self.clear();
        self.wake_all();
    }

    /// Drops every parked and queued connection (after their sockets were cut).
    pub(crate) fn clear(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for shard in &self.shards {
            let taken = {
                let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                shard.timers.clear();
                std::mem::take(&mut shard.conns)
            };
            drop(taken);
        }
        let queued = {
            let mut q = self.lock_queue();
            self.queued.store(0, Ordering::SeqCst);
            std::mem::take(&mut q.items)
        };
        drop(queued);
    }
}

impl crate::pool::Source for Lot {
    type Job = (Conn, Option<Instant>);

    fn wait(&self, timeout: Duration) -> crate::pool::Take<Self::Job> {
        match Lot::wait(self, timeout) {
            Wait::Conn(conn, queued) => crate::pool::Take::Job((conn, queued)),
            Wait::Idle => crate::pool::Take::Idle,
            Wait::Shutdown => crate::pool::Take::Closed,
        }
    }

    fn close(&self) {
        self.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;
    use crate::conn::Registry;
    use crate::listener::ListenerCtx;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    struct Rig {
        _poll: mio::Poll,
        lot: Lot,
        registry: Arc<Registry>,
        listener: TcpListener,
        ctx: Arc<ListenerCtx>,
    }

    fn rig() -> Rig {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ctx = Arc::new(ListenerCtx {
            name: "t".into(),
            addr: listener.local_addr().unwrap(),
            protocol: Protocol::Echo,
            router: Arc::default(),
            proxy: None,
            forwarded_trusted: Vec::new(),
        });
        let registry = Arc::new(Registry::new(Arc::clone(&waker)));
        Rig { _poll: poll, lot: Lot::new(waker).unwrap(), registry, listener, ctx }
    }

    impl Rig {
        /// A parked-ready server-side connection and the client's end.
        fn conn(&self, phase: Phase, deadline: Option<Instant>) -> (Conn, TcpStream) {
            let client = TcpStream::connect(self.ctx.addr).unwrap();
            let (server, peer) = self.listener.accept().unwrap();
            server.set_nonblocking(true).unwrap();
            let mut conn = Conn::new(server, peer, Arc::clone(&self.ctx), &self.registry);
            conn.set_wait(phase, deadline);
            (conn, client)
        }
    }

    fn id_of(w: Wait) -> Option<(u64, bool)> {
        match w {
            Wait::Conn(c, queued) => Some((c.id, queued.is_some())),
            _ => None,
        }
    }

    const SHORT: Duration = Duration::from_millis(50);

    #[test]
    fn a_parked_connection_goes_to_one_waiter_once_per_arming() {
        let r = rig();
        let (conn, mut client) = r.conn(Phase::Echo, None);
        let id = conn.id;
        r.lot.park(conn);
        assert!(id_of(r.lot.wait(SHORT)).is_none(), "nothing to read yet: no wake-up");
        client.write_all(b"x").unwrap();
        let Wait::Conn(conn, None) = r.lot.wait(Duration::from_secs(5)) else { panic!("readable: handed out") };
        assert_eq!(conn.id, id);
        client.write_all(b"y").unwrap();
        assert!(id_of(r.lot.wait(SHORT)).is_none(), "one-shot: not handed out again while a worker has it");
        r.lot.release(Next::Park(conn));
        assert_eq!(id_of(r.lot.wait(Duration::from_secs(5))), Some((id, false)), "re-armed: the unread bytes wake it");
    }

    #[test]
    fn queued_work_is_served_before_connections_that_turned_ready_later() {
        // The acceptor steals ready connections to the queue while every worker is
        // stuck; when workers come back, those are the oldest work there is. Served
        // only through the bell, at the back of a long ready list, they waited seconds.
        let r = rig();
        let (parked, mut client) = r.conn(Phase::Echo, None);
        let parked_id = parked.id;
        r.lot.park(parked);
        client.write_all(b"x").unwrap();
        let (queued, _cq) = r.conn(Phase::Echo, None);
        let queued_id = queued.id;
        let (later, _cl) = r.conn(Phase::Echo, None);
        let later_id = later.id;
        r.lot.enqueue(queued);
        r.lot.enqueue(later);
        assert_eq!(id_of(r.lot.wait(SHORT)), Some((queued_id, true)));
        assert_eq!(id_of(r.lot.wait(SHORT)), Some((later_id, true)));
        assert_eq!(id_of(r.lot.wait(Duration::from_secs(5))), Some((parked_id, false)));
        let t = Instant::now();
        assert!(id_of(r.lot.wait(SHORT)).is_none());
        assert!(t.elapsed() >= SHORT / 2, "the emptied queue's bell woke no one");
    }

    #[test]
    fn the_run_queue_is_served_through_its_bell_in_order() {
        let r = rig();
        let (a, _ca) = r.conn(Phase::Echo, None);
        let (b, _cb) = r.conn(Phase::Echo, None);
        let (ida, idb) = (a.id, b.id);
        r.lot.enqueue(a);
        r.lot.enqueue(b);
        assert_eq!(r.lot.queue_len(), 2);
        assert_eq!(id_of(r.lot.wait(SHORT)), Some((ida, true)));
        assert_eq!(id_of(r.lot.wait(SHORT)), Some((idb, true)));
        let t = Instant::now();
        assert!(id_of(r.lot.wait(SHORT)).is_none(), "queue empty");
        assert!(t.elapsed() >= SHORT / 2, "the queue was emptied: its bell woke no one");
    }

    #[test]
    fn an_expired_connection_leaves_and_its_late_event_is_ignored() {
        let r = rig();
        let past = Instant::now() - Duration::from_millis(1);
        let (conn, mut client) = r.conn(Phase::Echo, Some(past));
        let id = conn.id;
        r.lot.park(conn);
        client.write_all(b"x").unwrap();
        let expired = r.lot.expired(Instant::now());
        assert_eq!(expired.iter().map(|c| c.id).collect::<Vec<_>>(), vec![id]);
        // The readiness event may still be delivered: it finds nothing and says so.
        assert!(id_of(r.lot.wait(SHORT)).is_none());
        assert_eq!(r.lot.parked(), 0);
        drop(expired);
    }

    #[test]
    fn the_stop_sweep_takes_idle_connections_and_closes_later_idle_parks() {
        let r = rig();
        let (mut idle, _c1) = r.conn(Phase::Echo, None);
        let (flushing, _c2) = r.conn(Phase::EchoFlush, None);
        let (mut late, mut c3) = r.conn(Phase::Echo, None);
        let (fresh, _c4) = r.conn(Phase::Echo, None);
        (idle.heard, late.heard) = (true, true);
        let fresh_id = fresh.id;
        r.lot.park(idle);
        r.lot.park(flushing);
        r.lot.park(fresh);
        let swept = r.lot.close_idle();
        assert_eq!(swept.len(), 1, "only the idle one; work in progress stays");
        assert_eq!(r.lot.parked(), 2, "and a connection that has not spoken yet, for FRESH_GRACE");
        let grace = Instant::now() + crate::conn::FRESH_GRACE;
        let expired: Vec<u64> = r.lot.expired(grace).iter().map(|c| c.id).collect();
        assert_eq!(expired, vec![fresh_id], "with its deadline cut to the grace");
        // A park after the sweep closes an idle connection (FIN) instead of keeping it.
        r.lot.park(late);
        c3.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut c3, &mut buf).unwrap(), 0, "the late park got a FIN");
    }

    #[test]
    fn steal_takes_ready_connections_out_for_the_acceptor() {
        let r = rig();
        let (conn, mut client) = r.conn(Phase::Echo, None);
        let id = conn.id;
        r.lot.park(conn);
        client.write_all(b"x").unwrap();
        let mut stolen = Vec::new();
        for _ in 0..100 {
            stolen = r.lot.steal(8);
            if !stolen.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(stolen.iter().map(|c| c.id).collect::<Vec<_>>(), vec![id]);
        assert_eq!(r.lot.parked(), 0);
    }

    #[test]
    fn shut_wakes_every_waiter_for_good() {
        let r = Arc::new(rig().lot);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let lot = Arc::clone(&r);
                std::thread::spawn(move || matches!(lot.wait(Duration::from_secs(10)), Wait::Shutdown))
            })
            .collect();
        std::thread::sleep(SHORT); // let them block: pacing, the assertion does not depend on it
        r.shut();
        for w in waiters {
            assert!(w.join().unwrap(), "woken with Shutdown");
        }
        assert!(matches!(r.wait(SHORT), Wait::Shutdown), "and every later wait too");
    }
}
