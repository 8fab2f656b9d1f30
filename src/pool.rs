//! The bounded, resizable worker pool: `GreenPool(size)` on native threads.
//!
//! A `Pool<T>` owns one bounded FIFO of jobs and `min..=max` threads named
//! `worker-N` that run one handler on each job. It owns nothing else: it does not know
//! about sockets, which is why it can be unit-tested on plain values.
//!
//! - `try_submit` never blocks and never buffers past `capacity`: a full queue hands the
//!   job back, and the caller decides what shedding means (an HTTP 503, a closed echo
//!   session).
//! - Threads are added when a job is queued and no thread is idle to take it (up to
//!   `max`), and a thread above `min` retires after `idle_timeout` without work.
//! - `resize` changes `min`/`max` at run time; a lowered count retires threads as they
//!   finish their current job, never in the middle of one.
//! - A panicking job is caught and logged; the thread carries on.
//! - `shutdown(deadline)` stops intake, lets the threads drain the queue, joins every
//!   thread that exits before the deadline and names the ones that did not. It may be
//!   called again (after the caller has cut the sockets the stragglers block on).
//!
//! The queue is a `Mutex<VecDeque>` + `Condvar` rather than a channel because sizing
//! decisions (idle count, alive count, retirements) need the same lock anyway.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Jobs that may wait for a thread.
    pub capacity: usize,
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
    /// Jobs waiting in the queue.
    pub queued: usize,
    /// Queue capacity.
    pub capacity: usize,
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

type Handler<T> = dyn Fn(T) + Send + Sync;

/// A bounded, resizable pool of named worker threads running one handler.
pub struct Pool<T: Send + 'static> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Mirror of the queue length, readable without the lock (see `queued_now`).
    queued: AtomicUsize,
    /// Workers wait here for jobs (and for retirement or shutdown).
    work: Condvar,
    /// `shutdown` waits here for threads to exit.
    exited: Condvar,
    handler: Arc<Handler<T>>,
}

struct State<T> {
    queue: VecDeque<T>,
    size: PoolSize,
    threads: usize,
    idle: usize,
    busy: usize,
    next_id: usize,
    shutdown: bool,
    panics: u64,
    handles: Vec<Worker>,
    /// Ids of threads that have left their loop and can be joined without waiting.
    done: Vec<usize>,
}

struct Worker {
    id: usize,
    name: String,
    handle: JoinHandle<()>,
}

impl<T: Send + 'static> Pool<T> {
    /// Starts `size.min` threads running `handler`.
    pub fn new(size: PoolSize, handler: impl Fn(T) + Send + Sync + 'static) -> Result<Self, SpawnError> {
        let size = sanitize(size);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(size.capacity.min(4096)),
                size,
                threads: 0,
                idle: 0,
                busy: 0,
                next_id: 1,
                shutdown: false,
                panics: 0,
                handles: Vec::new(),
                done: Vec::new(),
            }),
            queued: AtomicUsize::new(0),
            work: Condvar::new(),
            exited: Condvar::new(),
            handler: Arc::new(handler),
        });
        let pool = Pool { shared };
        {
            let mut st = pool.shared.lock();
            while st.threads < size.min {
                if let Err(e) = spawn(&pool.shared, &mut st) {
                    st.shutdown = true;
                    pool.shared.work.notify_all();
                    return Err(SpawnError(e));
                }
            }
        }
        Ok(pool)
    }

    /// Queues `job` without blocking. A full queue, or a pool shutting down, hands the
    /// job back so the caller can shed it.
    pub fn try_submit(&self, job: T) -> Result<(), T> {
        let reap;
        {
            let mut st = self.shared.lock();
            if st.shutdown || st.queue.len() >= st.size.capacity {
                return Err(job);
            }
            st.queue.push_back(job);
            self.shared.queued.store(st.queue.len(), Ordering::Relaxed);
            if st.idle > 0 {
                self.shared.work.notify_one();
            }
            // `idle` counts threads that have not yet woken to take a job, so more jobs
            // waiting than idle threads means somebody would wait: grow.
            if st.queue.len() > st.idle && st.threads < st.size.max {
                if let Err(e) = spawn(&self.shared, &mut st) {
                    tracing::warn!(target: "spindle::saturation", error = %e, threads = st.threads, "cannot add a worker thread; the queued job waits for a running one");
                }
            }
            reap = take_done(&mut st);
        }
        join_all(reap);
        Ok(())
    }

    /// Changes the thread bounds at run time. Threads above the new `max` retire when
    /// they finish their current job; missing threads up to the new `min` start now.
    pub fn resize(&self, min: usize, max: usize) {
        let reap;
        {
            let mut st = self.shared.lock();
            let new = sanitize(PoolSize { min, max, ..st.size });
            st.size.min = new.min;
            st.size.max = new.max;
            while !st.shutdown && st.threads < st.size.min {
                if let Err(e) = spawn(&self.shared, &mut st) {
                    tracing::warn!(target: "spindle::saturation", error = %e, "cannot add a worker thread");
                    break;
                }
            }
            if st.threads > st.size.max {
                self.shared.work.notify_all();
            }
            reap = take_done(&mut st);
        }
        join_all(reap);
    }

    /// Applies a whole new sizing (SIGHUP): bounds, queue capacity and idle timeout.
    /// Jobs already queued beyond a lowered capacity stay queued.
    pub fn reconfigure(&self, size: PoolSize) {
        {
            let mut st = self.shared.lock();
            st.size.capacity = size.capacity.max(1);
            st.size.idle_timeout = size.idle_timeout;
        }
        self.resize(size.min, size.max);
    }

    /// Current figures.
    pub fn stats(&self) -> PoolStats {
        let st = self.shared.lock();
        PoolStats {
            threads: st.threads,
            busy: st.busy,
            queued: st.queue.len(),
            capacity: st.size.capacity,
            min: st.size.min,
            max: st.size.max,
            panics: st.panics,
        }
    }

    /// Jobs waiting now, read without taking the pool's lock: a hint for a worker
    /// deciding whether it may spend a moment waiting on its connection.
    pub fn queued_now(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Current sizing.
    pub fn size(&self) -> PoolSize {
        self.shared.lock().size
    }

    /// Stops intake, lets the threads finish the queued jobs, and joins every thread
    /// that exits before `deadline`. Threads still running then are named in the
    /// report; calling `shutdown` again later joins them if they have exited since.
    pub fn shutdown(&self, deadline: Instant) -> ShutdownReport {
        let reap;
        let missed;
        {
            let mut st = self.shared.lock();
            st.shutdown = true;
            self.shared.work.notify_all();
            while st.threads > 0 {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                st = match self.shared.exited.wait_timeout(st, deadline - now) {
                    Ok((g, _)) => g,
                    Err(e) => e.into_inner().0,
                };
            }
            reap = take_done(&mut st);
            missed = st.handles.iter().map(|w| w.name.clone()).collect();
        }
        let joined = reap.len();
        join_all(reap);
        ShutdownReport { joined, missed }
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic never happens while the lock is held (jobs run unlocked), but a
        // poisoned lock must not take the server down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn sanitize(mut size: PoolSize) -> PoolSize {
    size.max = size.max.max(1);
    size.min = size.min.clamp(1, size.max);
    size.capacity = size.capacity.max(1);
    size
}

fn spawn<T: Send + 'static>(shared: &Arc<Shared<T>>, st: &mut State<T>) -> std::io::Result<()> {
    let id = st.next_id;
    let name = format!("worker-{id}");
    let for_thread = Arc::clone(shared);
    let handle = thread::Builder::new().name(name.clone()).spawn(move || worker_loop(for_thread, id))?;
    st.next_id += 1;
    st.threads += 1;
    st.handles.push(Worker { id, name, handle });
    Ok(())
}

fn take_done<T>(st: &mut State<T>) -> Vec<Worker> {
    if st.done.is_empty() {
        return Vec::new();
    }
    let done = std::mem::take(&mut st.done);
    let (finished, running) = std::mem::take(&mut st.handles).into_iter().partition(|w| done.contains(&w.id));
    st.handles = running;
    finished
}

fn join_all(workers: Vec<Worker>) {
    for w in workers {
        // The thread has left its loop; join only waits for it to return. A panic
        // escaping the loop itself would be a bug in this file, and is already logged.
        let _ = w.handle.join();
    }
}

fn worker_loop<T: Send + 'static>(shared: Arc<Shared<T>>, id: usize) {
    let mut st = shared.lock();
    loop {
        // Lowered bounds retire threads between jobs, never during one.
        if st.threads > st.size.max {
            break;
        }
        if let Some(job) = st.queue.pop_front() {
            shared.queued.store(st.queue.len(), Ordering::Relaxed);
            st.busy += 1;
            drop(st);
            let handler = Arc::clone(&shared.handler);
            let outcome = catch_unwind(AssertUnwindSafe(move || handler(job)));
            st = shared.lock();
            st.busy -= 1;
            if let Err(payload) = outcome {
                st.panics += 1;
                tracing::error!(panic = panic_message(&payload), "a job panicked; the worker thread carries on");
            }
            continue;
        }
        if st.shutdown {
            break;
        }
        st.idle += 1;
        let timed_out = match st.size.idle_timeout {
            Some(timeout) => {
                let (g, res) = match shared.work.wait_timeout(st, timeout) {
                    Ok(r) => r,
                    Err(e) => e.into_inner(),
                };
                st = g;
                res.timed_out()
            }
            None => {
                st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
                false
            }
        };
        st.idle -= 1;
        if timed_out && st.queue.is_empty() && st.threads > st.size.min {
            break;
        }
    }
    st.threads -= 1;
    st.done.push(id);
    shared.exited.notify_all();
}

/// The text of a panic payload (`&str` or `String`), for logs.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
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
    use std::sync::mpsc;

    fn size(min: usize, max: usize, capacity: usize, idle_ms: Option<u64>) -> PoolSize {
        PoolSize { min, max, capacity, idle_timeout: idle_ms.map(Duration::from_millis) }
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

    /// A pool whose jobs block until released: job = a receiver to wait on.
    fn blocking_pool(s: PoolSize) -> Pool<mpsc::Receiver<()>> {
        Pool::new(s, |rx: mpsc::Receiver<()>| {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        })
        .unwrap()
    }

    #[test]
    fn full_queue_returns_the_job() {
        let pool = blocking_pool(size(1, 1, 1, None));
        let (t1, r1) = mpsc::channel();
        let (t2, r2) = mpsc::channel();
        let (_t3, r3) = mpsc::channel();
        pool.try_submit(r1).unwrap(); // running
        assert!(eventually(|| pool.stats().busy == 1));
        pool.try_submit(r2).unwrap(); // queued
        let back = pool.try_submit(r3);
        assert!(back.is_err(), "third job must come back: queue capacity 1, one thread");
        drop((t1, t2));
        assert!(pool.shutdown(Instant::now() + Duration::from_secs(5)).missed.is_empty());
    }

    #[test]
    fn grows_to_max_when_jobs_wait_and_retires_to_min_when_idle() {
        let pool = blocking_pool(size(1, 4, 16, Some(50)));
        assert_eq!(pool.stats().threads, 1);
        let mut releases = Vec::new();
        for _ in 0..6 {
            let (t, r) = mpsc::channel();
            releases.push(t);
            pool.try_submit(r).unwrap();
        }
        assert!(eventually(|| pool.stats().busy == 4), "{:?}", pool.stats());
        assert_eq!(pool.stats().threads, 4, "never above max");
        assert_eq!(pool.stats().queued, 2);
        drop(releases);
        assert!(eventually(|| pool.stats().threads == 1), "idle threads retire to min: {:?}", pool.stats());
        assert!(pool.shutdown(Instant::now() + Duration::from_secs(5)).missed.is_empty());
    }

    #[test]
    fn resize_up_starts_threads_and_down_retires_them_after_their_job() {
        let pool = blocking_pool(size(2, 2, 8, None));
        pool.resize(5, 6);
        assert_eq!(pool.stats().threads, 5);
        let (t, r) = mpsc::channel();
        pool.try_submit(r).unwrap();
        assert!(eventually(|| pool.stats().busy == 1));
        pool.resize(1, 1);
        // Idle threads retire at once; the busy one finishes its job first.
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
        let pool = Pool::new(size(1, 1, 8, None), move |n: u32| {
            if n == 0 {
                panic!("job zero panics");
            }
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        pool.try_submit(0).unwrap();
        pool.try_submit(1).unwrap();
        pool.try_submit(2).unwrap();
        assert!(eventually(|| ran.load(Ordering::SeqCst) == 2));
        let stats = pool.stats();
        assert_eq!((stats.threads, stats.panics), (1, 1));
        assert!(pool.shutdown(Instant::now() + Duration::from_secs(5)).missed.is_empty());
    }

    #[test]
    fn shutdown_serves_queued_jobs_then_joins_every_thread() {
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&ran);
        let pool = Pool::new(size(2, 2, 64, None), move |_: ()| {
            thread::sleep(Duration::from_millis(2));
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        for _ in 0..40 {
            pool.try_submit(()).unwrap();
        }
        let report = pool.shutdown(Instant::now() + Duration::from_secs(10));
        assert_eq!(ran.load(Ordering::SeqCst), 40, "queued jobs are served before threads exit");
        assert_eq!(report, ShutdownReport { joined: 2, missed: vec![] });
        assert!(pool.try_submit(()).is_err(), "no intake after shutdown");
    }

    #[test]
    fn shutdown_reports_a_stuck_job_that_misses_the_deadline_and_joins_it_later() {
        let pool = blocking_pool(size(2, 2, 4, None));
        let (t, r) = mpsc::channel();
        pool.try_submit(r).unwrap();
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
