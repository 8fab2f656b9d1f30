//! Process-wide byte budgets: how many bytes of request bodies the whole
//! process may hold in memory, and how many bytes of spilled request
//! bodies it may hold in temporary files (issue 16, "Budgets").
//!
//! A [`Budget`] is a limit and a running total, shared as `Arc<Budget>` through
//! `Shared::budgets`. Whatever buffers bytes on a connection's behalf does so through a
//! [`Held`]: it asks for room with [`Held::grow`] *before* it buffers, and gives bytes
//! back with [`Held::shrink`] or by being dropped, so a connection closed for any
//! reason (a reset, a deadline, a panic in its turn, a stop) returns what it held.
//! Workers grow and shrink holdings during turns; the acceptor drops connections (and
//! with them their holdings) at deadlines and at a stop; the signal thread changes the
//! limits on SIGHUP; `/metrics` and `/status` read the figures. Nothing here blocks or
//! owns a thread: every operation is a few atomics, apart from the mutex of a
//! rate-limited warning, taken only when a connection has to wait.
//!
//! The model is Envoy's overload manager: a resource monitor (the total) and an action
//! when it reaches its limit. The action is the caller's: a connection that finds no
//! room is not read (it parks without read interest, so TCP pushes back on its
//! sender) until room frees. For that, the budget counts its waiters and, when bytes
//! come back while anyone waits, calls the one notification installed with
//! [`Budget::on_room`] (the acceptor's waker), so stalled connections are tried again.
//!
//! **No lost wake-up.** A waiter calls [`Budget::wait_begin`] first, *then* tries
//! [`Held::grow`] once more, and parks only if that fails as well. A giver subtracts its
//! bytes and *then* reads the waiter count, both `SeqCst`: of the two orders in which
//! these four steps can interleave, either the waiter's second try sees the freed bytes
//! or the giver sees the waiter and notifies. When nobody waits, giving back costs the
//! subtraction and one load.
//!
//! **A limit of 0 holds nothing**; it does not mean "unlimited". A zero that lifted
//! the cap would turn a typo, or a size computed as zero, into exactly the unbounded
//! growth a budget exists to stop (the config cannot write one where it matters
//! anyway: see `limits.memory_budget`). A budget nothing should stop is given a limit
//! nothing reaches, such as `u64::MAX`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::Limits;

/// At most one "budget full" warning this often per budget: under a flood of uploads
/// every stalled connection would otherwise log one. Ten seconds, not the acceptor's
/// one, because a full budget is a state that lasts (each connection waits up to
/// `body_timeout`), not an event; the count of waits is in the metrics.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A process-wide cap on bytes of one kind, and how many are held now.
pub(crate) struct Budget {
    /// `"memory"` or `"disk"`: the metrics' label and the warning's.
    name: &'static str,
    /// Replaced on SIGHUP; bytes already held stay held.
    limit: AtomicU64,
    used: AtomicU64,
    /// Times a connection found no room (a counter).
    waits: AtomicU64,
    /// Connections waiting for room now (a gauge).
    waiting: AtomicU64,
    /// Called when bytes come back while `waiting > 0`.
    on_room: OnceLock<Box<dyn Fn() + Send + Sync>>,
    warned: Mutex<Warned>,
}

/// The rate limit of the "budget full" warning.
#[derive(Default)]
struct Warned {
    last: Option<Instant>,
    /// Waits not logged since `last`.
    suppressed: u64,
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("name", &self.name)
            .field("limit", &self.limit())
            .field("used", &self.used())
            .field("waiting", &self.waiting())
            .field("waits", &self.waits_total())
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// A budget called `name` (`"memory"`, `"disk"`) of `limit` bytes, nothing held.
    pub(crate) fn new(name: &'static str, limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            name,
            limit: AtomicU64::new(limit),
            used: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            on_room: OnceLock::new(),
            warned: Mutex::new(Warned::default()),
        })
    }

    /// Its name, as the metrics label it.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The most bytes that may be held.
    pub(crate) fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Times a connection found no room, since start.
    pub(crate) fn waits_total(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Connections waiting for room now.
    pub(crate) fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Changes the limit (SIGHUP). Bytes already held stay held, even above a lowered
    /// limit: taking them back would lose data already accepted. New room is refused
    /// until the total falls below the new limit. A raised limit wakes the waiters.
    pub(crate) fn set_limit(&self, limit: u64) {
        let old = self.limit.swap(limit, Ordering::SeqCst);
        if limit > old {
            self.room_freed();
        }
    }

    /// Installs the "room freed" notification (once; `false` if one was installed).
    /// It runs on whichever thread gives bytes back, so it must be quick and must not
    /// take locks a holder may hold: waking a `mio::Waker` is the intended use.
    pub(crate) fn on_room(&self, notify: impl Fn() + Send + Sync + 'static) -> bool {
        self.on_room.set(Box::new(notify)).is_ok()
    }

    /// A holding of 0 bytes in this budget.
    pub(crate) fn hold(self: &Arc<Self>) -> Held {
        Held { budget: Arc::clone(self), bytes: 0 }
    }

    /// A connection begins to wait for room: counts the wait, raises the waiting gauge
    /// until the returned guard is dropped, and logs a rate-limited warning. Try
    /// [`Held::grow`] again *after* this, and park only if that fails too (see the
    /// module doc): room freed in between would otherwise wake no one.
    pub(crate) fn wait_begin(self: &Arc<Self>) -> Waiting {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.note_wait();
        Waiting { budget: Arc::clone(self) }
    }

    /// Counts one wait for room, and logs the "budget full" warning on
    /// `spindle::saturation` if none was logged in the last 10 s (with how many waits
    /// went unlogged since). Returns whether it logged. [`wait_begin`](Self::wait_begin)
    /// calls it; call it alone for a refusal that does not wait.
    pub(crate) fn note_wait(&self) -> bool {
        let Some(suppressed) = self.note_wait_at(Instant::now()) else { return false };
        tracing::warn!(
            target: "spindle::saturation",
            budget = self.name,
            used = self.used(),
            limit = self.limit(),
            waiting = self.waiting(),
            suppressed,
            "the {} budget is full; connections that need more room are not read until some frees \
             (raise limits.{}_budget if this is normal load)",
            self.name,
            self.name,
        );
        true
    }

    /// [`note_wait`](Self::note_wait) at `now`, without logging: `Some(suppressed)`
    /// when a warning is due.
    fn note_wait_at(&self, now: Instant) -> Option<u64> {
        self.waits.fetch_add(1, Ordering::Relaxed);
        let mut w = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if w.last.is_none_or(|t| now.saturating_duration_since(t) >= WARN_EVERY) {
            w.last = Some(now);
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }

    /// Reserves `n` bytes if the total stays within the limit.
    fn take(&self, n: u64) -> bool {
        // SeqCst: a waiter's retry must see a limit raised before the raise's wake-up
        // looked for waiters (`set_limit`).
        let limit = self.limit.load(Ordering::SeqCst);
        // A compare-exchange loop rather than add-then-undo: a fetch_add that overshot
        // would, for an instant, show others a total above the limit and refuse them.
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(n).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    /// Gives `n` bytes back, waking the waiters if there are any.
    fn give(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.used.fetch_sub(n, Ordering::SeqCst);
        self.room_freed();
    }

    fn room_freed(&self) {
        // The one load a give costs when nobody waits; SeqCst pairs with
        // `wait_begin`'s increment (module doc).
        if self.waiting.load(Ordering::SeqCst) > 0 {
            if let Some(notify) = self.on_room.get() {
                notify();
            }
        }
    }
}

/// Bytes reserved in a [`Budget`] on one connection's behalf; given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Held {
    /// Reserves `n` more bytes. `false` (and nothing reserved) if the budget's total
    /// would pass its limit: the caller does not buffer, and waits for room.
    pub(crate) fn grow(&mut self, n: u64) -> bool {
        if n == 0 {
            return true;
        }
        if !self.budget.take(n) {
            return false;
        }
        self.bytes += n;
        true
    }

    /// Gives back `n` bytes (at most what is held).
    pub(crate) fn shrink(&mut self, n: u64) {
        let n = n.min(self.bytes);
        self.bytes -= n;
        self.budget.give(n);
    }

    /// Gives back everything held; the holding stays usable, at 0 bytes.
    pub(crate) fn release_all(&mut self) {
        self.shrink(self.bytes);
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The budget this holds bytes of.
    pub(crate) fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Gives back what is held beyond `n` bytes.
    pub(crate) fn keep(&mut self, n: u64) {
        self.shrink(self.bytes.saturating_sub(n));
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release_all();
    }
}

/// A connection waiting for room in a budget (from [`Budget::wait_begin`]); the
/// waiting gauge falls when it is dropped. A guard rather than a `wait_end` call, so
/// a connection dropped while it waits (a timeout, a reset, a stop) cannot leave the
/// gauge raised, and every later give calling the notification for nobody.
#[derive(Debug)]
pub(crate) struct Waiting {
    budget: Arc<Budget>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.budget.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The process's budgets, built from `[limits]` at start.
#[derive(Debug, Clone)]
pub(crate) struct Budgets {
    /// Request bodies held in memory
    /// (`limits.memory_budget`).
    pub memory: Arc<Budget>,
    /// Request bodies spilled to temporary files (`limits.disk_budget`).
    pub disk: Arc<Budget>,
}

impl Budgets {
    /// Budgets with the limits of `limits`, nothing held.
    pub(crate) fn new(limits: &Limits) -> Budgets {
        Budgets { memory: Budget::new("memory", limits.memory_budget), disk: Budget::new("disk", limits.disk_budget) }
    }

    /// Applies a reloaded config's limits ([`Budget::set_limit`]).
    pub(crate) fn set_limits(&self, limits: &Limits) {
        self.memory.set_limit(limits.memory_budget);
        self.disk.set_limit(limits.disk_budget);
    }

    /// Both, in the order the figures list them.
    pub(crate) fn all(&self) -> [&Arc<Budget>; 2] {
        [&self.memory, &self.disk]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn grow_within_the_limit_and_refuse_past_it() {
        // (limit, grows asked in order, expected results, bytes held after)
        let cases: &[(u64, &[u64], &[bool], u64)] = &[
            (100, &[40, 60], &[true, true], 100),
            (100, &[40, 61], &[true, false], 40),
            (100, &[101], &[false], 0),
            (100, &[0, 100, 0], &[true, true, true], 100),
            (0, &[1], &[false], 0),
            (0, &[0], &[true], 0),
            (u64::MAX, &[u64::MAX, 1], &[true, false], u64::MAX),
        ];
        for (limit, asks, expected, after) in cases {
            let b = Budget::new("t", *limit);
            let mut h = b.hold();
            let got: Vec<bool> = asks.iter().map(|&n| h.grow(n)).collect();
            assert_eq!(&got, expected, "limit {limit}, asks {asks:?}");
            assert_eq!((h.bytes(), b.used()), (*after, *after), "limit {limit}, asks {asks:?}");
        }
    }

    #[test]
    fn shrink_release_and_drop_give_back() {
        let b = Budget::new("t", 100);
        let mut a = b.hold();
        let mut c = b.hold();
        assert!(a.grow(30) && c.grow(50));
        a.shrink(10);
        assert_eq!((a.bytes(), b.used()), (20, 70));
        // More than held gives back only what is held.
        a.shrink(1000);
        assert_eq!((a.bytes(), b.used()), (0, 50));
        assert!(a.grow(50));
        assert!(!a.grow(1), "full");
        c.release_all();
        assert_eq!((c.bytes(), b.used()), (0, 50));
        assert!(c.grow(20), "usable after release_all");
        drop(a);
        drop(c);
        assert_eq!(b.used(), 0);
    }

    /// Eight threads grow and shrink at random sizes; the total, sampled by a
    /// watcher throughout, never passes the limit, and ends at zero.
    #[test]
    fn concurrent_grows_never_exceed_the_limit() {
        let b = Budget::new("t", 10_000);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (b, stop) = (Arc::clone(&b), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut peak = 0;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(b.used());
                }
                peak
            })
        };
        let workers: Vec<_> = (0..8u64)
            .map(|t| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    let mut held = b.hold();
                    let mut refused = 0;
                    // A small xorshift: sizes differ between threads and rounds.
                    let mut x = t * 2_654_435_761 + 1;
                    for _ in 0..20_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let n = x % 3_000;
                        if !held.grow(n) {
                            refused += 1;
                            held.shrink(n);
                        }
                        assert!(held.bytes() <= 10_000);
                    }
                    refused
                })
            })
            .collect();
        let refused: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        stop.store(true, Ordering::Relaxed);
        let peak = watcher.join().unwrap();
        assert!(peak <= 10_000, "peak {peak}");
        assert!(refused > 0, "the test never filled the budget");
        assert_eq!(b.used(), 0, "every holding dropped gave back");
    }

    #[test]
    fn room_is_announced_only_while_someone_waits() {
        let b = Budget::new("t", 100);
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        assert!(b.on_room(move || {
            seen.fetch_add(1, Ordering::SeqCst);
        }));
        assert!(!b.on_room(|| {}), "one notification");
        let called = || calls.load(Ordering::SeqCst);

        let mut h = b.hold();
        assert!(h.grow(100));
        h.shrink(10);
        assert_eq!(called(), 0, "nobody waits");

        let mut other = b.hold();
        assert!(other.grow(10));
        assert!(!other.grow(1));
        let waiting = b.wait_begin();
        assert_eq!((b.waiting(), b.waits_total()), (1, 1));
        h.shrink(10);
        assert_eq!(called(), 1, "shrink while one waits");
        h.shrink(0);
        assert_eq!(called(), 1, "giving back nothing frees nothing");
        drop(h);
        assert_eq!(called(), 2, "drop while one waits");
        b.set_limit(50);
        assert_eq!(called(), 2, "a lowered limit frees nothing");
        b.set_limit(200);
        assert_eq!(called(), 3, "a raised limit frees room");

        drop(waiting);
        assert_eq!((b.waiting(), b.waits_total()), (0, 1));
        other.release_all();
        assert_eq!(called(), 3, "nobody waits any more");
    }

    #[test]
    fn a_lowered_limit_keeps_what_is_held_and_refuses_more() {
        let b = Budget::new("t", 100);
        let mut h = b.hold();
        assert!(h.grow(80));
        b.set_limit(50);
        assert_eq!((b.used(), b.limit()), (80, 50));
        assert!(!h.grow(1));
        h.shrink(40);
        assert!(h.grow(10) && !h.grow(1));
    }

    #[test]
    fn the_full_warning_is_due_once_per_ten_seconds_with_the_count_left_out() {
        let b = Budget::new("t", 0);
        let t0 = Instant::now();
        // (seconds after t0, expected)
        let steps: &[(u64, Option<u64>)] =
            &[(0, Some(0)), (1, None), (9, None), (10, Some(2)), (11, None), (25, Some(1)), (26, None)];
        for (secs, expected) in steps {
            assert_eq!(b.note_wait_at(t0 + Duration::from_secs(*secs)), *expected, "at {secs}s");
        }
        assert_eq!(b.waits_total(), steps.len() as u64, "every wait is counted");
    }
}
