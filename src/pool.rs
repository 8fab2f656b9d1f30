//! The bounded, resizable worker pool: `GreenPool(size)` on native threads.
//!
//! A `Pool<S>` owns `min..=max` threads named `worker-N`. Each loops on its
//! [`Source`]'s `wait` (for the server: the lot, where threads take turns waiting on
//! the readiness of parked connections) and runs one handler on each job it gets. The
//! pool holds no jobs itself and knows nothing of sockets, which is why it can be
//! unit-tested on plain values.
//!
//! - **Growth on blocking, not on busyness.** A thread added to a CPU-bound pool only
//!   adds contention (measured: the first design grew to 64 threads under `wrk -c50`
//!   on `hello` and lost a third of its throughput). So the pool grows only on
//!   evidence that busy threads are *asleep* inside a job: `sample_blocked` looks at
//!   each busy thread's `/proc/self/task/TID/syscall` (runnable, asleep on another
//!   thread in `futex(2)`, or asleep on the world) and counts those asleep on the world
//!   at two looks in a row. The acceptor asks when no thread is free, and calls `grow`
//!   with what it found, or with 1 when every busy thread sleeps and none has finished
//!   a job since the last look.
//! - A thread above `min` retires after `idle_timeout` without a job.
//! - `resize` changes `min`/`max` at run time; a lowered count retires threads as they
//!   finish their current job, never in the middle of one.
//! - A panicking job is caught and logged; the thread carries on.
//! - `shutdown(deadline)` wakes every thread through the source, joins every thread
//!   that exits before the deadline and names the ones that did not. It may be called
//!   again (after the caller has cut the sockets the stragglers block on).
//!
//! Threads are spawned and joined outside the pool's lock, and nothing is logged
//! under it.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Sizing of a pool; see `config::PoolConfig` for the user-facing form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    /// Threads always running.
    pub min: usize,
    /// Hard cap on threads.
    pub max: usize,
    /// A thread above `min` retires after this long without work; `None`: never.
    pub idle_timeout: Option<Duration>,
}

/// A point-in-time view of the pool, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Threads alive.
    pub threads: usize,
    /// Threads running a job.
    pub busy: usize,
    /// Current minimum.
    pub min: usize,
    /// Current maximum.
    pub max: usize,
    /// Panicking jobs caught since start.
    pub panics: u64,
}

/// What `shutdown` achieved by its deadline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Threads joined by this call.
    pub joined: usize,
    /// Names of threads still running at the deadline (not joined yet).
    pub missed: Vec<String>,
}

/// Error starting a pool: the operating system refused a thread.
#[derive(Debug)]
pub struct SpawnError(pub std::io::Error);

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot start a worker thread: {}", self.0)
    }
}

impl std::error::Error for SpawnError {}

/// What a worker's wait on the source produced.
pub(crate) enum Take<J> {
    /// A job to run.
    Job(J),
    /// Nothing within the timeout.
    Idle,
    /// The source is closed: exit.
    Closed,
}

/// Where workers wait for jobs.
pub(crate) trait Source: Send + Sync + 'static {
    /// What a job is.
    type Job: Send + 'static;
    /// Waits up to `timeout` for a job.
    fn wait(&self, timeout: Duration) -> Take<Self::Job>;
    /// Closes the source: every `wait`, now and later, answers `Closed` promptly.
    fn close(&self);
}

/// Longest single wait, so that a lowered `max` or an idle timeout is noticed.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// The pool.
pub(crate) struct Pool<S: Source> {
    inner: Arc<Inner<S>>,
}

type Handler<J> = Box<dyn Fn(J) + Send + Sync>;

/// Runs a worker thread's whole loop (the argument), for per-thread setup around it:
/// see `ServerBuilder::wrap_worker_threads`.
pub(crate) type ThreadWrap = Arc<dyn Fn(&mut (dyn FnMut() + Send)) + Send + Sync>;

/// How worker threads are made: an optional wrapper around each one's loop, and a
/// stack size (`None`: Rust's default, 2 MiB).
#[derive(Clone, Default)]
pub(crate) struct ThreadSpec {
    pub(crate) wrap: Option<ThreadWrap>,
    pub(crate) stack_size: Option<usize>,
}

struct Inner<S: Source> {
    source: Arc<S>,
    handler: Handler<S::Job>,
    threads_spec: ThreadSpec,
    state: Mutex<State>,
    exited: Condvar,
    /// Mirrors of the sizing, read by workers without the lock.
    threads: AtomicUsize,
    max: AtomicUsize,
    min: AtomicUsize,
    idle_timeout_ms: AtomicU64,
    shutdown: AtomicBool,
    panics: AtomicU64,
    /// Previous `sample_blocked` readings, by worker id.
    samples: Mutex<HashMap<usize, Sample>>,
}

struct State {
    next_id: usize,
    handles: Vec<Worker>,
    /// Ids of threads that have left their loop and can be joined without waiting.
    done: Vec<usize>,
}

struct Worker {
    id: usize,
    name: String,
    handle: JoinHandle<()>,
    slot: Arc<Slot>,
}

/// What the monitor can see of one worker.
#[derive(Default)]
struct Slot {
    tid: AtomicI32,
    /// `/proc/self/task/TID/syscall`, opened by the first sample and re-read from
    /// offset 0 by each later one (an open and a path walk less per look).
    syscall_file: Mutex<Option<std::fs::File>>,
    busy: AtomicBool,
}

#[derive(Clone, Copy)]
struct Sample {
    seen: Seen,
}

/// What a look at a busy worker found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Seen {
    /// Runnable: on a CPU or waiting for one.
    Running,
    /// Asleep in `futex(2)`: waiting for another thread (a lock, a condvar, the GIL).
    OnAThread,
    /// Asleep in any other call: I/O, a sleep.
    OnTheWorld,
}

/// What `sample_blocked` found, over its last two looks.
#[derive(Default, Debug, PartialEq, Eq)]
pub(crate) struct Blocked {
    /// Busy workers asleep on the world at both looks.
    pub(crate) on_the_world: usize,
    /// Every busy worker was asleep (futex included) at both looks, and there was one:
    /// nobody is running a job. Waiting on a lock that only a request not yet taken
    /// would release (a long poll waiting for an event that another request sets) is
    /// cured by one more thread; contention on a lock or the GIL always has a runner.
    pub(crate) all_asleep: bool,
}

impl<S: Source> Pool<S> {
    /// Starts `size.min` threads that take jobs from `source` and run `handler`.
    #[cfg(test)]
    pub(crate) fn new(
        size: PoolSize,
        source: Arc<S>,
        handler: impl Fn(S::Job) + Send + Sync + 'static,
    ) -> Result<Self, SpawnError> {
        Self::with_threads(size, source, handler, ThreadSpec::default())
    }

    /// As `new`, each thread made as `spec` says.
    pub(crate) fn with_threads(
        size: PoolSize,
        source: Arc<S>,
        handler: impl Fn(S::Job) + Send + Sync + 'static,
        spec: ThreadSpec,
    ) -> Result<Self, SpawnError> {
        let size = sanitize(size);
        let inner = Arc::new(Inner {
            source,
            handler: Box::new(handler),
            threads_spec: spec,
            state: Mutex::new(State { next_id: 1, handles: Vec::new(), done: Vec::new() }),
            exited: Condvar::new(),
            threads: AtomicUsize::new(0),
            max: AtomicUsize::new(size.max),
            min: AtomicUsize::new(size.min),
            idle_timeout_ms: AtomicU64::new(idle_ms(size.idle_timeout)),
            shutdown: AtomicBool::new(false),
            panics: AtomicU64::new(0),
            samples: Mutex::new(HashMap::new()),
        });
        let pool = Pool { inner };
        while pool.inner.threads.load(Ordering::SeqCst) < size.min {
            if let Err(e) = spawn(&pool.inner) {
                pool.inner.shutdown.store(true, Ordering::SeqCst);
                pool.inner.source.close();
                return Err(SpawnError(e));
            }
        }
        Ok(pool)
    }

    /// Adds up to `n` threads, never above `max`. Returns how many started.
    pub(crate) fn grow(&self, n: usize) -> usize {
        let mut started = 0;
        while started < n && !self.inner.shutdown.load(Ordering::SeqCst) {
            if self.inner.threads.load(Ordering::SeqCst) >= self.inner.max.load(Ordering::SeqCst) {
                break;
            }
            match spawn(&self.inner) {
                Ok(()) => started += 1,
                Err(e) => {
                    tracing::warn!(target: "spindle::saturation", error = %e, "cannot add a worker thread");
                    break;
                }
            }
        }
        self.reap();
        started
    }

    /// How many busy workers are blocked on the world: a worker counts if it was in a
    /// job and asleep, not on a futex, at this call and the previous one. 0 for a
    /// CPU-bound load; about N while N workers spend their jobs waiting on I/O or a
    /// sleep. The two looks need not fall in the same job: requiring that (the first
    /// design) never counted jobs shorter than the 5 ms between looks, so an app that
    /// waits 2 ms on its database stayed on `min_threads` (951 req/s on 2 threads at
    /// `wrk -c50`, p50 52 ms, the CPU nearly idle).
    pub(crate) fn sample_blocked(&self) -> Blocked {
        let mut samples = self.inner.samples.lock().unwrap_or_else(|e| e.into_inner());
        // At the bound nothing could grow: no /proc reads (with 200 workers asleep in
        // their jobs, they cost the acceptor a tenth of a CPU).
        if self.inner.threads.load(Ordering::SeqCst) >= self.inner.max.load(Ordering::SeqCst) {
            samples.clear();
            return Blocked::default();
        }
        let slots: Vec<(usize, Arc<Slot>)> =
            self.inner.lock().handles.iter().map(|w| (w.id, Arc::clone(&w.slot))).collect();
        let mut out = Blocked { on_the_world: 0, all_asleep: true };
        let mut busy = 0;
        let mut fresh = HashMap::with_capacity(slots.len());
        for (id, slot) in slots {
            if !slot.busy.load(Ordering::SeqCst) {
                continue;
            }
            busy += 1;
            let now = look(&slot);
            let before = samples.get(&id).map(|p| p.seen);
            if now == Seen::OnTheWorld && before == Some(Seen::OnTheWorld) {
                out.on_the_world += 1;
            }
            out.all_asleep &= now != Seen::Running && before.is_some_and(|b| b != Seen::Running);
            fresh.insert(id, Sample { seen: now });
        }
        out.all_asleep &= busy > 0;
        *samples = fresh;
        out
    }

    /// Changes the thread bounds at run time. Threads above the new `max` retire when
    /// they finish their current job; missing threads up to the new `min` start now.
    pub(crate) fn resize(&self, min: usize, max: usize) {
        let new = sanitize(PoolSize { min, max, idle_timeout: None });
        self.inner.min.store(new.min, Ordering::SeqCst);
        self.inner.max.store(new.max, Ordering::SeqCst);
        while !self.inner.shutdown.load(Ordering::SeqCst) && self.inner.threads.load(Ordering::SeqCst) < new.min {
            if let Err(e) = spawn(&self.inner) {
                tracing::warn!(target: "spindle::saturation", error = %e, "cannot add a worker thread");
                break;
            }
        }
        self.reap();
    }

    /// Applies a whole new sizing (SIGHUP): bounds and idle timeout.
    pub(crate) fn reconfigure(&self, size: PoolSize) {
        self.inner.idle_timeout_ms.store(idle_ms(size.idle_timeout), Ordering::SeqCst);
        self.resize(size.min, size.max);
    }

    /// Current figures.
    pub(crate) fn stats(&self) -> PoolStats {
        let busy = self.inner.lock().handles.iter().filter(|w| w.slot.busy.load(Ordering::Relaxed)).count();
        PoolStats {
            threads: self.inner.threads.load(Ordering::SeqCst),
            busy,
            min: self.inner.min.load(Ordering::SeqCst),
            max: self.inner.max.load(Ordering::SeqCst),
            panics: self.inner.panics.load(Ordering::Relaxed),
        }
    }

    /// Current sizing.
    pub(crate) fn size(&self) -> PoolSize {
        let ms = self.inner.idle_timeout_ms.load(Ordering::SeqCst);
        PoolSize {
            min: self.inner.min.load(Ordering::SeqCst),
            max: self.inner.max.load(Ordering::SeqCst),
            idle_timeout: (ms > 0).then(|| Duration::from_millis(ms)),
        }
    }

    /// Joins threads that have exited (retired), without waiting.
    pub(crate) fn reap(&self) {
        let done = take_done(&mut self.inner.lock());
        join_all(done);
    }

    /// Closes the source, lets the threads finish their current jobs, and joins every
    /// thread that exits before `deadline`. Threads still running then are named in
    /// the report; calling `shutdown` again later joins them if they have exited since.
    pub(crate) fn shutdown(&self, deadline: Instant) -> ShutdownReport {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        self.inner.source.close();
        let (reap, missed) = {
            let mut st = self.inner.lock();
            while self.inner.threads.load(Ordering::SeqCst) > 0 {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                st = match self.inner.exited.wait_timeout(st, deadline - now) {
                    Ok((g, _)) => g,
                    Err(e) => e.into_inner().0,
                };
            }
            let reap = take_done(&mut st);
            (reap, st.handles.iter().map(|w| w.name.clone()).collect())
        };
        let joined = reap.len();
        join_all(reap);
        ShutdownReport { joined, missed }
    }
}

impl<S: Source> Inner<S> {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run unlocked, so a panic never happens while the lock is held; a
        // poisoned lock must not take the server down with it all the same.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one thread off the count if it is above `floor`; whether it did.
    fn retire_above(&self, floor: usize) -> bool {
        let mut n = self.threads.load(Ordering::SeqCst);
        while n > floor {
            match self.threads.compare_exchange(n, n - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
        false
    }
}

fn idle_ms(t: Option<Duration>) -> u64 {
    t.map_or(0, |d| d.as_millis().clamp(1, u64::MAX as u128) as u64)
}

fn sanitize(mut size: PoolSize) -> PoolSize {
    size.max = size.max.max(1);
    size.min = size.min.clamp(1, size.max);
    size
}

/// Where a worker is (`/proc/self/task/TID/syscall`): runnable, asleep in `futex(2)`
/// (a lock, a condvar, the GIL: waiting for another thread, which more threads do not
/// cure as long as that thread runs; measured, counting those as blocked grew the pool
/// to 43 threads on lot-lock waits under `wrk -c50` on hello), or asleep in another
/// call, on the world. A runnable thread waiting for a CPU is busy, not blocked.
/// Without /proc a busy worker counts as asleep on the world: growth on long jobs, as
/// the first design.
fn look(slot: &Slot) -> Seen {
    #[cfg(target_arch = "x86_64")]
    const FUTEX: &[u8] = b"202";
    #[cfg(target_arch = "aarch64")]
    const FUTEX: &[u8] = b"98";
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    const FUTEX: &[u8] = b"";
    // `syscall` answers both questions at once: "running" for a thread that is
    // runnable (the kernel reads a syscall only off a task that is not), else the
    // number of the call it sleeps in.
    let mut file = slot.syscall_file.lock().unwrap_or_else(|e| e.into_inner());
    if file.is_none() {
        let tid = slot.tid.load(Ordering::SeqCst);
        *file = std::fs::File::open(format!("/proc/self/task/{tid}/syscall")).ok();
    }
    let Some(f) = file.as_ref() else { return Seen::OnTheWorld };
    let mut buf = [0u8; 32];
    let Ok(n) = std::os::unix::fs::FileExt::read_at(f, &mut buf, 0) else { return Seen::OnTheWorld };
    let first = buf[..n].split(|b| b.is_ascii_whitespace()).next().unwrap_or(b"");
    // A number: in that call, and not runnable; -1: asleep outside a call (stopped).
    if first.is_empty() || !first.iter().all(|b| b.is_ascii_digit()) {
        Seen::Running
    } else if !FUTEX.is_empty() && first == FUTEX {
        Seen::OnAThread
    } else {
        Seen::OnTheWorld
    }
}

fn spawn<S: Source>(inner: &Arc<Inner<S>>) -> std::io::Result<()> {
    let id = {
        let mut st = inner.lock();
        st.next_id += 1;
        st.next_id - 1
    };
    let name = format!("worker-{id}");
    let slot = Arc::new(Slot::default());
    inner.threads.fetch_add(1, Ordering::SeqCst);
    let (for_thread, for_slot) = (Arc::clone(inner), Arc::clone(&slot));
    let wrap = inner.threads_spec.wrap.clone();
    let body = move || {
        let mut run = Some(move || worker_loop(for_thread, id, for_slot));
        let mut once = || {
            if let Some(run) = run.take() {
                run();
            }
        };
        if let Some(wrap) = wrap {
            wrap(&mut once);
        }
        // A wrapper that did not run the loop: run it now, or the pool would count a
        // thread that never takes a job and never says it left.
        once();
    };
    let mut builder = thread::Builder::new().name(name.clone());
    if let Some(bytes) = inner.threads_spec.stack_size {
        builder = builder.stack_size(bytes);
    }
    match builder.spawn(body) {
        Ok(handle) => {
            inner.lock().handles.push(Worker { id, name, handle, slot });
            Ok(())
        }
        Err(e) => {
            inner.threads.fetch_sub(1, Ordering::SeqCst);
            Err(e)
        }
    }
}

fn take_done(st: &mut State) -> Vec<Worker> {
    if st.done.is_empty() {
        return Vec::new();
    }
    let done = std::mem::take(&mut st.done);
    let (finished, running): (Vec<Worker>, Vec<Worker>) =
        std::mem::take(&mut st.handles).into_iter().partition(|w| done.contains(&w.id));
    st.handles = running;
    // A thread that exited before `spawn` recorded its handle: keep its id for the
    // next reap, or its handle would never be joined (and be reported as stuck).
    st.done = done.into_iter().filter(|id| !finished.iter().any(|w| w.id == *id)).collect();
    finished
}

fn join_all(workers: Vec<Worker>) {
    for w in workers {
        // The thread has left its loop; join only waits for it to return.
        let _ = w.handle.join();
    }
}

fn worker_loop<S: Source>(inner: Arc<Inner<S>>, id: usize, slot: Arc<Slot>) {
    slot.tid.store(rustix::thread::gettid().as_raw_nonzero().get(), Ordering::SeqCst);
    let mut idle_since = Instant::now();
    let counted = loop {
        if inner.shutdown.load(Ordering::SeqCst) {
            break true;
        }
        // Lowered bounds retire threads between jobs, never during one.
        if inner.threads.load(Ordering::SeqCst) > inner.max.load(Ordering::SeqCst)
            && inner.retire_above(inner.max.load(Ordering::SeqCst))
        {
            break false;
        }
        let idle_ms = inner.idle_timeout_ms.load(Ordering::Relaxed);
        let wait = if idle_ms == 0 { MAX_WAIT } else { Duration::from_millis(idle_ms).min(MAX_WAIT) };
        match inner.source.wait(wait) {
            Take::Job(job) => {
                slot.busy.store(true, Ordering::SeqCst);
                let outcome = catch_unwind(AssertUnwindSafe(|| (inner.handler)(job)));
                slot.busy.store(false, Ordering::SeqCst);
                if let Err(payload) = outcome {
                    inner.panics.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(panic = panic_message(&payload), "a job panicked; the worker thread carries on");
                }
                idle_since = Instant::now();
            }
            Take::Idle => {
                if idle_ms > 0
                    && idle_since.elapsed() >= Duration::from_millis(idle_ms)
                    && inner.retire_above(inner.min.load(Ordering::SeqCst))
                {
                    break false;
                }
            }
            Take::Closed => break true,
        }
    };
    // Recorded as done and uncounted in one hold of the lock: `shutdown` checks the
    // count under the same lock, so when it sees 0 every exited thread is in `done`.
    // (Uncounting first let a descheduled thread be reported stuck, twice in a row
    // under load, and the daemon exit 1 after a clean drain.)
    let mut st = inner.lock();
    st.done.push(id);
    if counted {
        inner.threads.fetch_sub(1, Ordering::SeqCst);
    }
    drop(st);
    inner.exited.notify_all();
}

/// The text of a panic payload (`&str` or `String`), for logs.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A plain queue as the source.
    struct Queue<J> {
        jobs: Mutex<(VecDeque<J>, bool)>,
        cond: Condvar,
    }

    impl<J> Default for Queue<J> {
        fn default() -> Self {
            Queue { jobs: Mutex::new((VecDeque::new(), false)), cond: Condvar::new() }
        }
    }

    impl<J: Send + 'static> Queue<J> {
        fn push(&self, job: J) {
            self.jobs.lock().unwrap().0.push_back(job);
            self.cond.notify_one();
        }
    }

    impl<J: Send + 'static> Source for Queue<J> {
        type Job = J;
        fn wait(&self, timeout: Duration) -> Take<J> {
            let mut g = self.jobs.lock().unwrap();
            if g.0.is_empty() && !g.1 {
                g = self.cond.wait_timeout(g, timeout).unwrap().0;
            }
            match g.0.pop_front() {
                Some(j) => Take::Job(j),
                None if g.1 => Take::Closed,
                None => Take::Idle,
            }
        }
        fn close(&self) {
            self.jobs.lock().unwrap().1 = true;
            self.cond.notify_all();
        }
    }

    fn size(min: usize, max: usize, idle_ms: Option<u64>) -> PoolSize {
        PoolSize { min, max, idle_timeout: idle_ms.map(Duration::from_millis) }
    }

    /// Polls `f` until it holds or 5 s pass (thread exits are asynchronous).
    fn eventually(mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if f() {
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        f()
    }

    type Release = std::sync::mpsc::Receiver<()>;

    /// A pool whose jobs block until released: job = a receiver to wait on.
    fn blocking_pool(s: PoolSize) -> (Pool<Queue<Release>>, Arc<Queue<Release>>) {
        let q = Arc::new(Queue::default());
        let pool = Pool::new(s, Arc::clone(&q), |rx: Release| {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        })
        .unwrap();
        (pool, q)
    }

    #[test]
    fn blocked_workers_are_measured_as_blocked_and_spinning_ones_are_not() {
        // Two jobs that sleep, sampled twice across one interval (below max: at it,
        // nothing is sampled, as nothing could grow).
        let q = Arc::new(Queue::default());
        let pool = Pool::new(size(2, 3, None), Arc::clone(&q), |spin: bool| {
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                if !spin {
                    thread::sleep(Duration::from_millis(5));
                }
            }
        })
        .unwrap();
        q.push(false);
        q.push(false);
        assert!(eventually(|| pool.stats().busy == 2));
        // Samples are instants (a thread that just woke is running): the acceptor takes
        // one a tick; so does this test.
        assert!(
            eventually(|| pool.sample_blocked() == Blocked { on_the_world: 2, all_asleep: true }),
            "two sleeping workers measure as 2 blocked threads"
        );
        assert!(eventually(|| pool.stats().busy == 0));
        // One job that spins: on the CPU (or waiting for it), never asleep.
        q.push(true);
        assert!(eventually(|| pool.stats().busy == 1));
        for _ in 0..20 {
            assert_eq!(pool.sample_blocked(), Blocked::default(), "a spinning worker is not blocked");
            thread::sleep(Duration::from_millis(5));
        }
        assert!(pool.shutdown(Instant::now() + Duration::from_secs(5)).missed.is_empty());
    }

    #[test]
    fn grows_to_max_on_request_and_retires_to_min_when_idle() {
        let (pool, q) = blocking_pool(size(1, 4, Some(50)));
        assert_eq!(pool.stats().threads, 1);
        assert_eq!(pool.grow(10), 3, "never above max");
        let mut releases = Vec::new();
        for _ in 0..4 {
            let (t, r) = std::sync::mpsc::channel();
            releases.push(t);
            q.push(r);
        }
        assert!(eventually(|| pool.stats().busy == 4), "{:?}", pool.stats());
        drop(releases);
        assert!(eventually(|| pool.stats().threads == 1), "idle threads retire to min: {:?}", pool.stats());
        assert!(pool.shutdown(Instant::now() + Duration::from_secs(5)).missed.is_empty());
    }

    #[test]
    fn resize_up_starts_threads_and_down_retires_them_after_their_job() {
        let (pool, q) = blocking_pool(size(2, 2, None));
        pool.resize(5, 6);
        assert_eq!(pool.stats().threads, 5);
        let (t, r) = std::sync::mpsc::channel();
        q.push(r);
        assert!(eventually(|| pool.stats().busy == 1));
        pool.resize(1, 1);
        // Idle threads retire within a wait; the busy one finishes its job first.
        assert!(eventually(|| pool.stats().threads == 1), "{:?}", pool.stats());
        assert_eq!(pool.stats().busy, 1, "a running job is never interrupted");
        drop(t);
        assert!(eventually(|| pool.stats().busy == 0));
        assert_eq!(pool.stats().threads, 1);
        // Never below one thread.
        pool.resize(0, 0);
        assert_eq!((pool.stats().min, pool.stats().max), (1, 1));
        assert!(pool.shutdown(Instant::now() + Duration::from_secs(5)).missed.is_empty());
    }

    #[test]
    fn a_panicking_job_is_caught_and_the_thread_lives_on() {
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&ran);
        let q = Arc::new(Queue::default());
        let pool = Pool::new(size(1, 1, None), Arc::clone(&q), move |n: u32| {
            if n == 0 {
                panic!("job zero panics");
            }
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        for n in 0..3 {
            q.push(n);
        }
        assert!(eventually(|| ran.load(Ordering::SeqCst) == 2));
        let stats = pool.stats();
        assert_eq!((stats.threads, stats.panics), (1, 1));
        assert!(pool.shutdown(Instant::now() + Duration::from_secs(5)).missed.is_empty());
    }

    #[test]
    fn shutdown_reports_a_stuck_job_that_misses_the_deadline_and_joins_it_later() {
        let (pool, q) = blocking_pool(size(2, 2, None));
        let (t, r) = std::sync::mpsc::channel();
        q.push(r);
        assert!(eventually(|| pool.stats().busy == 1));
        let started = Instant::now();
        let report = pool.shutdown(Instant::now() + Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(2), "shutdown honours its deadline");
        assert_eq!(report.joined, 1, "the idle thread is joined");
        assert_eq!(report.missed.len(), 1, "the stuck one is named: {report:?}");
        assert!(report.missed[0].starts_with("worker-"));
        drop(t); // the "socket is cut": the job returns
        let again = pool.shutdown(Instant::now() + Duration::from_secs(5));
        assert_eq!(again, ShutdownReport { joined: 1, missed: vec![] });
    }
}
