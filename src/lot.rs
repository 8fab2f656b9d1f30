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
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::Waker;
use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags, Timespec};

/// What the lot needs of what it parks: a socket, an id, what it waits for, a deadline,
/// and, for the stop, whether it is idle. The lot knows no protocol (as the pool knows
/// no sockets, through `pool::Source`); `conn::Conn` is the one implementation that
/// ships, and the lot's tests park a bare socket.
pub(crate) trait Parked: Send + 'static {
    /// Unique for the process's lifetime; the epoll event's data.
    fn id(&self) -> u64;
    /// The socket to watch.
    fn socket(&self) -> BorrowedFd<'_>;
    /// What it waits for now.
    fn wants(&self) -> Wants;
    /// When its wait ends (the acceptor takes it out then: `expired`).
    fn deadline(&self) -> Option<Instant>;
    /// Changes when its wait ends.
    fn set_deadline(&mut self, deadline: Option<Instant>);
    /// Whether its socket is in the lot's epoll already (it stays there once added).
    fn registered(&self) -> bool;
    /// Records that its socket is in the lot's epoll.
    fn set_registered(&mut self);
    /// Whether a stop may close it without losing anything.
    fn is_idle(&self) -> bool;
    /// Whether its socket has bytes (or an EOF) to read now.
    fn readable(&self) -> bool;
    /// Until when a stop should wait for an idle one's first bytes (`None`: close now).
    fn fresh_until(&self) -> Option<Instant>;
    /// Frees buffer space it does not need while parked.
    fn release_buffers(&mut self);
    /// Closes it at a stop (it is idle).
    fn close_idle(self);
}

/// What a parked connection waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wants {
    /// Bytes (or a hang-up) to read.
    Read,
    /// Room to write.
    Write,
    /// Room in a budget (nothing from the socket but a hang-up): listed for
    /// `resume_stalled`; `epoch`: `room_epoch` as it read it before its last try.
    Room { epoch: u64 },
    /// A thread, not the socket: it goes on the run queue.
    Thread,
}

/// Event data of the run-queue bell (armed one-shot while the queue is not empty).
const BELL: u64 = u64::MAX;
/// Event data of the shutdown bell (level-triggered: wakes every waiter, in turn).
const SHUTDOWN: u64 = u64::MAX - 1;

/// What a worker's wait produced.
#[allow(clippy::large_enum_variant)] // a connection moves by value, never boxed
pub(crate) enum Wait<C> {
    /// A connection to serve; `Some(t)` if it waited in the run queue since `t`.
    Conn(C, Option<Instant>),
    /// Nothing within the timeout (or a wake-up that found nothing).
    Idle,
    /// The lot is shut: the worker should exit.
    Shutdown,
}

/// What `steal` found: connections the acceptor must queue or shed.
pub(crate) type Stolen<C> = Vec<C>;

/// Parked connections, the workers' epoll and the run queue.
pub(crate) struct Lot<C> {
    epoll: OwnedFd,
    bell: OwnedFd,
    shutdown_bell: OwnedFd,
    /// Parked connections by `id % SHARDS`, each shard under its own lock.
    shards: Vec<Mutex<Shard<C>>>,
    queue: Mutex<Queue<C>>,
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

struct Shard<C> {
    conns: HashMap<u64, C>,
    timers: BTreeSet<(Instant, u64)>,
}

impl<C> Default for Shard<C> {
    fn default() -> Self {
        Shard { conns: HashMap::new(), timers: BTreeSet::new() }
    }
}

struct Queue<C> {
    /// Connections with work that wait for a thread, oldest first.
    items: VecDeque<(C, Instant)>,
    bell_armed: bool,
}

impl<C> Default for Queue<C> {
    fn default() -> Self {
        Queue { items: VecDeque::new(), bell_armed: false }
    }
}

impl<C: Parked> Shard<C> {
    /// Takes a parked connection out, with its deadline.
    fn remove(&mut self, id: u64) -> Option<C> {
        let conn = self.conns.remove(&id)?;
        if let Some(d) = conn.deadline() {
            self.timers.remove(&(d, id));
        }
        Some(conn)
    }
}

fn flags_for(wants: Wants) -> EventFlags {
    match wants {
        // Not read until the budget has room; HUP and ERR (a reset) are still reported.
        Wants::Room { .. } | Wants::Thread => EventFlags::ONESHOT,
        // Not RDHUP: a client that half-closes and stops reading would make every re-arm
        // fire at once, and a worker would spin on a flush that writes nothing. HUP and
        // ERR (a reset) are reported regardless.
        Wants::Write => EventFlags::ONESHOT | EventFlags::OUT,
        Wants::Read => EventFlags::ONESHOT | EventFlags::RDHUP | EventFlags::IN,
    }
}

/// Caps `conn`'s deadline at `until`.
fn deadline_at_most(conn: &mut impl Parked, until: Instant) {
    let d = conn.deadline().map_or(until, |d| d.min(until));
    conn.set_deadline(Some(d));
}

fn timespec(d: Duration) -> Timespec {
    Timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as i64, tv_nsec: i64::from(d.subsec_nanos()) }
}

impl<C: Parked> Lot<C> {
    /// A lot whose early deadlines wake the acceptor through `waker`.
    pub(crate) fn new(waker: Arc<Waker>) -> io::Result<Lot<C>> {
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

    fn shard(&self, id: u64) -> MutexGuard<'_, Shard<C>> {
        self.shards[(id % SHARDS as u64) as usize].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue<C>> {
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
    pub(crate) fn park(&self, mut conn: C) {
        let wants = conn.wants();
        // Work for a thread, not for the socket: the run queue.
        if wants == Wants::Thread {
            return self.enqueue(conn);
        }
        // A body waiting for budget room is listed for `resume_stalled`, under the
        // list's lock held across the shard's insert (so a resume cannot look for it
        // in between). Room freed since its last try (the epoch moved) would wake no
        // one: it tries again now instead.
        let mut stalled = None;
        if let Wants::Room { epoch } = wants {
            let list = self.stalled.lock().unwrap_or_else(|e| e.into_inner());
            if self.room_epoch.load(Ordering::SeqCst) != epoch {
                drop(list);
                return self.enqueue(conn);
            }
            stalled = Some(list);
        }
        let id = conn.id();
        let mut shard = self.shard(id);
        if self.gone.load(Ordering::SeqCst) {
            return; // dropping closes it
        }
        if let Some(list) = &mut stalled {
            list.push_back(id);
        }
        if self.closing.load(Ordering::SeqCst) && conn.is_idle() && !conn.readable() {
            match conn.fresh_until() {
                Some(until) => deadline_at_most(&mut conn, until),
                None => {
                    drop(shard);
                    conn.close_idle();
                    return;
                }
            }
        }
        conn.release_buffers();
        let data = EventData::new_u64(id);
        let armed = if conn.registered() {
            epoll::modify(&self.epoll, conn.socket(), data, flags_for(wants))
        } else {
            epoll::add(&self.epoll, conn.socket(), data, flags_for(wants))
        };
        if let Err(e) = armed {
            drop(shard);
            tracing::warn!(conn = id, error = %e, "cannot park connection; closing it");
            return;
        }
        conn.set_registered();
        if let Some(d) = conn.deadline() {
            shard.timers.insert((d, id));
            // The acceptor sleeps past this deadline: wake it to recompute.
            if self.nanos(d) < self.wake_at.load(Ordering::SeqCst) {
                let _ = self.waker.wake();
            }
        }
        shard.conns.insert(id, conn);
    }

    /// Puts a connection that has work at hand (requests already buffered, or stolen
    /// from the epoll by the acceptor) on the run queue. Never refuses: bounding it is
    /// the caller's decision (`queue_len`).
    pub(crate) fn enqueue(&self, conn: C) {
        let mut q = self.lock_queue();
        if self.gone.load(Ordering::SeqCst) {
            return;
        }
        q.items.push_back((conn, Instant::now()));
        self.queued.store(q.items.len(), Ordering::SeqCst);
        self.arm_bell(&mut q);
    }

    fn arm_bell(&self, q: &mut Queue<C>) {
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
    fn pop(&self, q: &mut Queue<C>) -> Option<(C, Instant)> {
        let popped = q.items.pop_front();
        self.queued.store(q.items.len(), Ordering::SeqCst);
        popped
    }

    /// Silences an armed bell (the queue was emptied without it): an empty mask, so
    /// even an event already on the ready list is not delivered.
    fn disarm_bell(&self, q: &mut Queue<C>) {
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
    pub(crate) fn wait(&self, timeout: Duration) -> Wait<C> {
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

    /// A worker is done with a connection it took: parks it (or queues it, if it wants
    /// a thread), or, `None`, has let it go.
    pub(crate) fn release(&self, next: Option<C>) {
        if let Some(conn) = next {
            self.park(conn);
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
    pub(crate) fn steal(&self, max: usize) -> Stolen<C> {
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
                if shard.conns.get(&id).is_some_and(|c| matches!(c.wants(), Wants::Room { .. })) {
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
    pub(crate) fn expired(&self, now: Instant) -> Vec<C> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            while let Some(&(t, id)) = shard.timers.first() {
                if t > now {
                    break;
                }
                shard.timers.pop_first();
                if let Some(mut conn) = shard.conns.remove(&id) {
                    conn.set_deadline(None);
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
    pub(crate) fn close_idle(&self) -> Vec<C> {
        self.closing.store(true, Ordering::SeqCst);
        let mut out = Vec::new();
        let mut serve = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<u64> = shard.conns.values().filter(|c| c.is_idle()).map(Parked::id).collect();
            for id in ids {
                let Some(mut conn) = shard.remove(id) else { continue };
                // A request (or echo bytes) that arrived just before the stop is answered
                // (with `Connection: close`) rather than discarded by the close.
                if conn.readable() {
                    serve.push(conn);
                } else if let Some(until) = conn.fresh_until() {
                    // Accepted just before the stop: parked again, briefly, for its
                    // first bytes (still armed in the epoll; only the timer changes).
                    deadline_at_most(&mut conn, until);
                    if let Some(d) = conn.deadline() {
                        shard.timers.insert((d, id));
                    }
                    shard.conns.insert(id, conn);
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

    /// The acceptor has returned: what is parked goes to the workers to be dropped,
    /// and from now on what is parked is dropped; every worker is woken to exit once
    /// the run queue is empty.
    pub(crate) fn shut(&self) {
        self.clear();
        self.gone.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    /// Hands every parked connection to the run queue (after their sockets were cut):
    /// a worker's turn finds its socket closed and drops it there. Not dropped here,
    /// on the acceptor: a connection may hold an app's body source, and dropping one
    /// may run app code (a WSGI `close()` under the GIL) that the acceptor must never
    /// wait for. Once the lot is `gone`, `enqueue` drops instead: no worker is left.
    pub(crate) fn clear(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for shard in &self.shards {
            let taken = {
                let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                shard.timers.clear();
                std::mem::take(&mut shard.conns)
            };
            for (_, conn) in taken {
                self.enqueue(conn);
            }
        }
    }
}

impl<C: Parked> crate::pool::Source for Lot<C> {
    type Job = (C, Option<Instant>);

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
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::sync::atomic::AtomicU64;

    /// What the lot parks in these tests: a bare socket with the figures `Parked`
    /// asks for (no protocol, no listener).
    struct Sock {
        id: u64,
        stream: TcpStream,
        wants: Wants,
        deadline: Option<Instant>,
        registered: bool,
        accepted: Instant,
        heard: bool,
    }

    /// As the server's own connections: one accepted less than this ago that has sent
    /// nothing is given the rest of it at a stop.
    const FRESH_GRACE: Duration = Duration::from_secs(1);

    impl Parked for Sock {
        fn id(&self) -> u64 {
            self.id
        }
        fn socket(&self) -> BorrowedFd<'_> {
            self.stream.as_fd()
        }
        fn wants(&self) -> Wants {
            self.wants
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
            self.wants == Wants::Read
        }
        fn readable(&self) -> bool {
            crate::sock::readable(&self.stream)
        }
        fn fresh_until(&self) -> Option<Instant> {
            let until = self.accepted + FRESH_GRACE;
            (!self.heard && Instant::now() < until).then_some(until)
        }
        fn release_buffers(&mut self) {}
        fn close_idle(self) {
            let _ = self.stream.shutdown(Shutdown::Write);
        }
    }

    struct Rig {
        _poll: mio::Poll,
        lot: Lot<Sock>,
        listener: TcpListener,
        next_id: AtomicU64,
    }

    fn rig() -> Rig {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Rig { _poll: poll, lot: Lot::new(waker).unwrap(), listener, next_id: AtomicU64::new(0) }
    }

    impl Rig {
        /// A server-side connection waiting for `wants` until `deadline`, and the
        /// client's end.
        fn conn(&self, wants: Wants, deadline: Option<Instant>) -> (Sock, TcpStream) {
            let client = TcpStream::connect(self.listener.local_addr().unwrap()).unwrap();
            let (stream, _) = self.listener.accept().unwrap();
            stream.set_nonblocking(true).unwrap();
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let sock = Sock { id, stream, wants, deadline, registered: false, accepted: Instant::now(), heard: false };
            (sock, client)
        }
    }

    fn id_of(w: Wait<Sock>) -> Option<(u64, bool)> {
        match w {
            Wait::Conn(c, queued) => Some((c.id, queued.is_some())),
            _ => None,
        }
    }

    const SHORT: Duration = Duration::from_millis(50);

    #[test]
    fn a_parked_connection_goes_to_one_waiter_once_per_arming() {
        let r = rig();
        let (conn, mut client) = r.conn(Wants::Read, None);
        let id = conn.id;
        r.lot.park(conn);
        assert!(id_of(r.lot.wait(SHORT)).is_none(), "nothing to read yet: no wake-up");
        client.write_all(b"x").unwrap();
        let Wait::Conn(conn, None) = r.lot.wait(Duration::from_secs(5)) else { panic!("readable: handed out") };
        assert_eq!(conn.id, id);
        client.write_all(b"y").unwrap();
        assert!(id_of(r.lot.wait(SHORT)).is_none(), "one-shot: not handed out again while a worker has it");
        r.lot.release(Some(conn));
        assert_eq!(id_of(r.lot.wait(Duration::from_secs(5))), Some((id, false)), "re-armed: the unread bytes wake it");
    }

    #[test]
    fn queued_work_is_served_before_connections_that_turned_ready_later() {
        // The acceptor steals ready connections to the queue while every worker is
        // stuck; when workers come back, those are the oldest work there is. Served
        // only through the bell, at the back of a long ready list, they waited seconds.
        let r = rig();
        let (parked, mut client) = r.conn(Wants::Read, None);
        let parked_id = parked.id;
        r.lot.park(parked);
        client.write_all(b"x").unwrap();
        let (queued, _cq) = r.conn(Wants::Read, None);
        let queued_id = queued.id;
        let (later, _cl) = r.conn(Wants::Read, None);
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
        let (a, _ca) = r.conn(Wants::Read, None);
        let (b, _cb) = r.conn(Wants::Read, None);
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
        let (conn, mut client) = r.conn(Wants::Read, Some(past));
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
        let (mut idle, _c1) = r.conn(Wants::Read, None);
        let (flushing, _c2) = r.conn(Wants::Write, None);
        let (mut late, mut c3) = r.conn(Wants::Read, None);
        let (fresh, _c4) = r.conn(Wants::Read, None);
        (idle.heard, late.heard) = (true, true);
        let fresh_id = fresh.id;
        r.lot.park(idle);
        r.lot.park(flushing);
        r.lot.park(fresh);
        let swept = r.lot.close_idle();
        assert_eq!(swept.len(), 1, "only the idle one; work in progress stays");
        assert_eq!(r.lot.parked(), 2, "and a connection that has not spoken yet, for FRESH_GRACE");
        let grace = Instant::now() + FRESH_GRACE;
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
        let (conn, mut client) = r.conn(Wants::Read, None);
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

    #[test]
    fn room_freed_after_a_bodys_last_try_is_not_missed() {
        let r = rig();
        // Parked with the epoch it read: room freed since then sends it to the queue
        // at once instead of listing it to wait for a wake-up that already happened.
        let epoch = r.lot.room_epoch();
        r.lot.room_freed();
        let (late, _c) = r.conn(Wants::Room { epoch }, None);
        let id = late.id;
        r.lot.park(late);
        assert_eq!(id_of(r.lot.wait(SHORT)), Some((id, true)), "re-tried, not parked");
        assert_eq!(r.lot.parked(), 0);
    }

    #[test]
    fn stalled_connections_wait_unread_until_room_frees_then_resume_oldest_first() {
        let r = rig();
        let epoch = r.lot.room_epoch();
        let (a, mut ca) = r.conn(Wants::Room { epoch }, None);
        let (b, _cb) = r.conn(Wants::Room { epoch }, None);
        let (gone, _cg) = r.conn(Wants::Room { epoch }, Some(Instant::now() - Duration::from_millis(1)));
        let (ida, idb) = (a.id, b.id);
        r.lot.park(a);
        r.lot.park(gone);
        r.lot.park(b);
        // Bytes arrive, but a stalled connection is not read: no wake-up.
        ca.write_all(b"more body").unwrap();
        assert!(id_of(r.lot.wait(SHORT)).is_none(), "a stalled connection is not handed out for input");
        // Without room freed, the acceptor's resume does nothing.
        r.lot.resume_stalled(8);
        assert_eq!(r.lot.parked(), 3);
        // One left by its deadline: its id is stale in the list and skipped.
        assert_eq!(r.lot.expired(Instant::now()).len(), 1);
        r.lot.room_freed();
        r.lot.resume_stalled(1);
        assert_eq!(id_of(r.lot.wait(SHORT)), Some((ida, true)), "the oldest first, one per the batch");
        assert_eq!(r.lot.parked(), 1);
        // More were waiting: the next pass takes them without a new give.
        r.lot.resume_stalled(1);
        assert_eq!(id_of(r.lot.wait(SHORT)), Some((idb, true)));
        assert_eq!(r.lot.parked(), 0);
    }
}
