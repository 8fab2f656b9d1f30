//! What every thread shares: the running config, the stop flags, the figures, the
//! process-wide byte budgets, the registry of open sockets, the lot, and a weak handle
//! on the pool.
//!
//! It sits low in the module graph (it imports config, budget, metrics, conn, lot, pool
//! and systemd, and nothing above them), so the acceptor, the protocol turns and the
//! built-in apps can all take a `&Shared` without a cycle through the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Instant;

use crate::budget::Budgets;
use crate::config::{Config, Limits};
use crate::conn::{Conn, Registry};
use crate::lot::Lot;
use crate::metrics::Metrics;
use crate::pool::{Pool, PoolSize};
use crate::stop::StopEvent;
use crate::systemd::Notifier;

/// The server's pool: workers waiting on the lot.
pub(crate) type WorkerPool = Pool<Lot<Conn>>;

/// State every thread shares.
pub(crate) struct Shared {
    /// Set when the listeners have closed (after `drain_delay`): connections are no
    /// longer kept open between requests. Never reset.
    pub listeners_closed: StopEvent,
    /// Set the moment a stop is requested: readiness answers 503, responses say
    /// `Connection: close` (before `listeners_closed`, during `drain_delay`).
    pub draining: AtomicBool,
    /// Process figures.
    pub metrics: Metrics,
    /// Bytes buffered process-wide, in memory and in spilled bodies, against
    /// `limits.memory_budget` and `limits.disk_budget`. Their limits follow the
    /// running config (`set_config`).
    pub budgets: Budgets,
    /// Every open socket.
    pub registry: Arc<Registry>,
    /// Idle connections and the workers' shared epoll.
    pub lot: Arc<Lot<Conn>>,
    config: RwLock<Arc<Config>>,
    pool: OnceLock<Weak<WorkerPool>>,
    /// When the server started, for `status`.
    pub started: Instant,
    /// sd_notify (silent unless enabled and `NOTIFY_SOCKET` is set).
    pub notifier: Notifier,
    /// Why the last SIGHUP reload failed, until one succeeds.
    reload_error: Mutex<Option<String>>,
}

/// A read-only view of the server's figures, for the built-in apps and `STATUS=`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Open connections, parked ones included.
    pub open: usize,
    /// Connections parked (idle, or waiting for a client).
    pub parked: usize,
    /// Connections waiting on the run queue for a thread.
    pub queued: usize,
    /// Most connections the run queue holds before shedding.
    pub queue_capacity: usize,
    /// Worker threads alive.
    pub threads: usize,
    /// Worker threads running a turn.
    pub busy: usize,
    /// Configured bounds.
    pub min_threads: usize,
    /// Configured bounds.
    pub max_threads: usize,
    /// Panics caught in turns.
    pub panics: u64,
}

impl Shared {
    pub(crate) fn new(config: Config, registry: Arc<Registry>, lot: Arc<Lot<Conn>>, notifier: Notifier) -> Shared {
        let budgets = Budgets::new(&config.limits);
        Shared {
            listeners_closed: StopEvent::new(),
            draining: AtomicBool::new(false),
            metrics: Metrics::with_budgets(&budgets),
            budgets,
            registry,
            lot,
            config: RwLock::new(Arc::new(config)),
            pool: OnceLock::new(),
            started: Instant::now(),
            notifier,
            reload_error: Mutex::new(None),
        }
    }

    /// The running config (replaced on SIGHUP).
    pub(crate) fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The running limits.
    pub(crate) fn limits(&self) -> Limits {
        self.config().limits.clone()
    }

    /// Installs a reloaded config. Listeners are not rebound: changes to them are logged
    /// and need a restart. The budgets take the new limits at once (bytes already held
    /// stay held, even above a lowered limit: they belong to requests already accepted).
    pub(crate) fn set_config(&self, new: Config) {
        self.budgets.set_limits(&new.limits);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
    }

    /// Records the pool once it runs.
    pub(crate) fn set_pool(&self, pool: &Arc<WorkerPool>) {
        let _ = self.pool.set(Arc::downgrade(pool));
    }

    /// The pool, while it runs.
    pub(crate) fn pool(&self) -> Option<Arc<WorkerPool>> {
        self.pool.get().and_then(Weak::upgrade)
    }

    /// Whether a stop has been requested.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The figures now.
    pub(crate) fn stats(&self) -> Stats {
        let pool = self.pool().map(|p| p.stats()).unwrap_or_default();
        Stats {
            open: self.registry.open(),
            parked: self.lot.parked(),
            queued: self.lot.queue_len(),
            queue_capacity: self.config().pool.queue_capacity,
            threads: pool.threads,
            busy: pool.busy,
            min_threads: pool.min,
            max_threads: pool.max,
            panics: pool.panics,
        }
    }

    /// Records the outcome of a SIGHUP reload: `Some(why)` if it failed.
    pub(crate) fn set_reload_error(&self, error: Option<String>) {
        *self.reload_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Why the last reload failed, until one succeeds.
    pub(crate) fn reload_error(&self) -> Option<String> {
        self.reload_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// One line of live figures, for systemd's `STATUS=`. A failed reload leads it
    /// until a reload succeeds: the periodic refresh must not hide it within seconds.
    pub(crate) fn status_line(&self) -> String {
        let s = self.stats();
        let reload = match self.reload_error() {
            Some(e) => format!("RELOAD FAILED, running the previous config: {e} | "),
            None => String::new(),
        };
        format!(
            "{reload}{} connections ({} parked), {}/{} threads busy, queue {}/{}, shed {}",
            s.open,
            s.parked,
            s.busy,
            s.threads,
            s.queued,
            s.queue_capacity,
            self.metrics.shed.get()
        )
    }
}

/// The pool sizing a config asks for.
pub(crate) fn pool_size(config: &Config) -> PoolSize {
    PoolSize { min: config.pool.min_threads, max: config.pool.max_threads, idle_timeout: config.pool.idle_timeout }
}
