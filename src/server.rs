//! `Server`: binds the listeners, starts the pool, the acceptor and (optionally) the
//! signal thread, and runs the stop to its end — every thread it started is joined
//! before `run` returns.
//!
//! The main thread (whoever calls `run`) does the joining: it waits for the acceptor to
//! finish its drain (which happens when the shared `StopEvent` has been set and every
//! connection is back or cut), then shuts the pool down with a deadline, cutting the
//! sockets of any worker that misses it, then stops and joins the signal thread.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Poll, Waker};

use crate::acceptor::{self, Acceptor, Control, StopReport};
use crate::config::{Config, Limits, Protocol};
use crate::conn::{Conn, Next, Phase, Registry};
use crate::http::{self, App, Router};
use crate::listener::{self, BindError, ListenerCtx};
use crate::lot::Lot;
use crate::metrics::Metrics;
use crate::pool::{Pool, PoolSize, SpawnError};
use crate::signals;
use crate::stop::StopEvent;
use crate::systemd::{self, ActivationError, Notifier};
use crate::{echo, pool};

/// After the acceptor is done, how long the pool gets to finish before sockets are cut.
const POOL_JOIN: Duration = Duration::from_secs(5);

/// State every thread shares.
pub struct Shared {
    /// Set when the listeners close: workers stop parking connections and answer with
    /// `Connection: close`.
    pub stop: StopEvent,
    /// Set the moment a stop is requested: readiness answers 503 (before `stop`, during
    /// `drain_delay`).
    pub draining: AtomicBool,
    /// Process figures.
    pub metrics: Metrics,
    /// Connections submitted to the pool and not yet back (queued or in a turn).
    pub in_flight: AtomicUsize,
    /// Every open socket.
    pub registry: Arc<Registry>,
    config: RwLock<Arc<Config>>,
    pool: OnceLock<Weak<Pool<Conn>>>,
    /// When the server started, for `status`.
    pub started: Instant,
    /// sd_notify (silent unless enabled and `NOTIFY_SOCKET` is set).
    pub notifier: Notifier,
    /// Idle connections, parked by the acceptor and by workers.
    pub lot: Lot,
}

impl Shared {
    /// The running config (replaced on SIGHUP).
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The running limits.
    pub fn limits(&self) -> Limits {
        self.config().limits.clone()
    }

    /// Installs a reloaded config. Listeners are not rebound: changes to them are logged
    /// and need a restart.
    pub fn set_config(&self, new: Config) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
    }

    /// The pool's figures (zeros before it starts).
    pub fn pool_stats(&self) -> pool::PoolStats {
        self.pool.get().and_then(Weak::upgrade).map(|p| p.stats()).unwrap_or_default()
    }

    /// The pool, while it runs.
    pub fn pool(&self) -> Option<Arc<Pool<Conn>>> {
        self.pool.get().and_then(Weak::upgrade)
    }

    /// Whether a worker that just found its connection empty may wait a moment for
    /// the client's next bytes instead of parking it: only while no job waits for a
    /// thread and no stop is under way.
    pub fn may_linger(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
            && self.pool.get().and_then(Weak::upgrade).is_some_and(|p| p.queued_now() == 0)
    }

    /// One line of live figures, for systemd's `STATUS=`.
    pub fn status_line(&self) -> String {
        let pool = self.pool_stats();
        format!(
            "{} connections ({} parked), {}/{} threads busy, queue {}/{}, shed {}",
            self.registry.open(),
            self.metrics.parked.get(),
            pool.busy,
            pool.threads,
            pool.queued,
            pool.capacity,
            self.metrics.shed.get()
        )
    }
}

/// Why a server could not start.
#[derive(Debug)]
pub enum StartError {
    /// A listener could not be opened (exit status 2).
    Bind(BindError),
    /// The OS refused a thread, an epoll instance or the like.
    Io(std::io::Error),
    /// The pool could not start its threads.
    Spawn(SpawnError),
    /// The sockets systemd passed do not fit the config (exit status 2).
    Activation(ActivationError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind(e) => e.fmt(f),
            StartError::Io(e) => write!(f, "cannot start: {e}"),
            StartError::Spawn(e) => e.fmt(f),
            StartError::Activation(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StartError {}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> Self {
        StartError::Io(e)
    }
}

/// What `run` reports when the server has stopped.
#[derive(Debug, Clone)]
pub struct StopSummary {
    /// The acceptor's account of the stop.
    pub report: StopReport,
    /// Threads joined (workers, acceptor, signals).
    pub threads_joined: usize,
    /// Worker threads that could not be joined (stuck in an app).
    pub missed: Vec<String>,
    /// Time from the stop request to the end of `run`.
    pub elapsed: Duration,
}

/// Configures a `Server`: the config, the apps an embedding program mounts, signals.
pub struct ServerBuilder {
    config: Config,
    apps: Vec<(String, Arc<dyn App>)>,
    signals: bool,
    config_path: Option<PathBuf>,
    on_log_level: Option<signals::LogLevelHook>,
    systemd: bool,
}

impl ServerBuilder {
    /// Speaks sd_notify (`NOTIFY_SOCKET`, `WATCHDOG_USEC`) and adopts socket-activated
    /// listeners (`LISTEN_FDS`). Off by default for embedding; the daemon turns it on.
    pub fn systemd(mut self, on: bool) -> Self {
        self.systemd = on;
        self
    }

    /// Mounts `app` at path `prefix` on every HTTP listener (longest prefix wins; it
    /// replaces a built-in app configured at the same prefix).
    pub fn mount(mut self, prefix: &str, app: impl App) -> Self {
        self.apps.push((prefix.to_string(), Arc::new(app)));
        self
    }

    /// Handles SIGTERM/SIGINT/SIGQUIT/SIGHUP/SIGTTIN/SIGTTOU on a `signals` thread
    /// (see the README's table). Off by default for embedding.
    pub fn signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// The file SIGHUP re-reads.
    pub fn config_path(mut self, path: Option<PathBuf>) -> Self {
        self.config_path = path;
        self
    }

    /// Called with the new `log.level` after a SIGHUP reload.
    pub fn on_log_level(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_log_level = Some(Box::new(hook));
        self
    }

    /// Binds every listener. Nothing runs yet; a bind error means nothing started.
    pub fn build(self) -> Result<Server, StartError> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), acceptor::WAKER)?);
        let registry = Arc::new(Registry::new(Arc::clone(&waker)));
        let shared = Arc::new(Shared {
            stop: StopEvent::new(),
            draining: AtomicBool::new(false),
            metrics: Metrics::default(),
            in_flight: AtomicUsize::new(0),
            registry,
            config: RwLock::new(Arc::new(self.config.clone())),
            pool: OnceLock::new(),
            started: Instant::now(),
            notifier: if self.systemd { Notifier::from_env() } else { Notifier::disabled() },
            lot: Lot::new(poll.registry().try_clone()?, Arc::clone(&waker)),
        });
        let mut activated = if self.systemd {
            systemd::take_activated(&self.config.listeners).map_err(StartError::Activation)?
        } else {
            None
        };
        if activated.is_some() {
            tracing::info!("socket-activated: adopting the listening sockets systemd passed");
        }
        let mut listeners = Vec::new();
        for (i, cfg) in self.config.listeners.iter().enumerate() {
            let passed = activated.as_mut().and_then(|a| a.get_mut(i)).map(|l| l.try_clone());
            let std_listener = match passed {
                Some(Ok(l)) => l,
                Some(Err(e)) => return Err(StartError::Io(e)),
                None => listener::bind(cfg).map_err(StartError::Bind)?,
            };
            let addr = std_listener.local_addr()?;
            let router = match cfg.protocol {
                Protocol::Http => Router::new(&cfg.apps, &self.apps, &shared),
                Protocol::Echo => Router::default(),
            };
            let ctx = Arc::new(ListenerCtx {
                name: cfg.name.clone(),
                addr,
                protocol: cfg.protocol,
                router: Arc::new(router),
            });
            listeners.push((mio::net::TcpListener::from_std(std_listener), ctx));
        }
        let (control_tx, control_rx) = mpsc::channel();
        Ok(Server {
            poll,
            waker,
            listeners,
            shared,
            control_tx,
            control_rx,
            signals: self.signals,
            config_path: self.config_path,
            on_log_level: self.on_log_level,
        })
    }
}

/// A bound server, ready to `run`.
pub struct Server {
    poll: Poll,
    waker: Arc<Waker>,
    listeners: Vec<(mio::net::TcpListener, Arc<ListenerCtx>)>,
    shared: Arc<Shared>,
    control_tx: Sender<Control>,
    control_rx: mpsc::Receiver<Control>,
    signals: bool,
    config_path: Option<PathBuf>,
    on_log_level: Option<signals::LogLevelHook>,
}

/// Stops or inspects a running server from another thread.
#[derive(Clone)]
pub struct ServerHandle {
    control: Sender<Control>,
    waker: Arc<Waker>,
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Begins a graceful stop (as SIGTERM does); a second call stops immediately.
    pub fn stop(&self) {
        self.send(Control::Graceful);
    }

    /// Stops immediately (as SIGQUIT does).
    pub fn stop_now(&self) {
        self.send(Control::Immediate);
    }

    pub(crate) fn send(&self, control: Control) {
        // The acceptor may already be gone (stopped): nothing left to tell.
        if self.control.send(control).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// The shared state (metrics, config, pool figures).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Server {
    /// Starts configuring a server.
    pub fn builder(config: Config) -> ServerBuilder {
        ServerBuilder {
            config,
            apps: Vec::new(),
            signals: false,
            config_path: None,
            on_log_level: None,
            systemd: false,
        }
    }

    /// The bound address of every listener, by name, in config order.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners.iter().map(|(_, ctx)| (ctx.name.clone(), ctx.addr)).collect()
    }

    /// A handle to stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            control: self.control_tx.clone(),
            waker: Arc::clone(&self.waker),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs until stopped; joins every thread it started before returning.
    pub fn run(self) -> Result<StopSummary, StartError> {
        let handle = self.handle();
        let shared = Arc::clone(&self.shared);
        let config = shared.config();
        let (handback_tx, handback_rx) = mpsc::channel::<Conn>();

        let pool = {
            let shared = Arc::clone(&shared);
            let waker = Arc::clone(&self.waker);
            let size = pool_size(&config);
            Arc::new(
                Pool::new(size, move |conn: Conn| serve(conn, &shared, &handback_tx, &waker))
                    .map_err(StartError::Spawn)?,
            )
        };
        let _ = shared.pool.set(Arc::downgrade(&pool));

        for (_, ctx) in &self.listeners {
            tracing::info!(listener = %ctx.name, addr = %ctx.addr, protocol = ?ctx.protocol, "listening");
        }
        let acceptor = Acceptor::new(
            self.poll,
            self.listeners,
            self.control_rx,
            handback_rx,
            Arc::clone(&pool),
            Arc::clone(&shared),
        )
        .and_then(|a| thread::Builder::new().name("acceptor".into()).spawn(move || a.run()));
        let acceptor = match acceptor {
            Ok(thread) => thread,
            Err(e) => {
                // Nothing runs yet but the pool: join it rather than leave it waiting.
                pool.shutdown(Instant::now() + POOL_JOIN);
                return Err(StartError::Io(e));
            }
        };
        let signals = if self.signals {
            let ctx = signals::SignalCtx {
                handle: handle.clone(),
                config_path: self.config_path,
                on_log_level: self.on_log_level,
            };
            match signals::spawn(ctx) {
                Ok(s) => Some(s),
                Err(e) => {
                    handle.stop_now();
                    let _ = acceptor.join();
                    pool.shutdown(Instant::now() + POOL_JOIN);
                    return Err(StartError::Io(e));
                }
            }
        } else {
            None
        };
        let stats = pool.stats();
        tracing::info!(min_threads = stats.min, max_threads = stats.max, queue_capacity = stats.capacity, "ready");
        shared.notifier.ready(&shared.status_line());

        let mut threads_joined = 0;
        let report = match acceptor.join() {
            Ok(report) => {
                threads_joined += 1;
                report
            }
            Err(_) => {
                tracing::error!("the acceptor thread panicked; stopping now");
                shared.registry.cut_all();
                StopReport { immediate: true, ..StopReport::default() }
            }
        };
        // Nothing polls the lot from here on: what workers still park is closed.
        shared.lot.shut();
        let grace = if report.immediate { Duration::from_secs(1) } else { POOL_JOIN };
        let mut pool_report = pool.shutdown(Instant::now() + grace);
        if !pool_report.missed.is_empty() {
            tracing::warn!(missed = ?pool_report.missed, "workers still busy; cutting their sockets");
            shared.registry.cut_all();
            let again = pool.shutdown(Instant::now() + Duration::from_secs(1));
            pool_report.joined += again.joined;
            pool_report.missed = again.missed;
        }
        threads_joined += pool_report.joined;
        if let Some(s) = signals {
            threads_joined += usize::from(s.stop_and_join());
        }
        let elapsed = report.started.map_or(Duration::ZERO, |t| t.elapsed());
        let summary = StopSummary { report, threads_joined, missed: pool_report.missed, elapsed };
        tracing::info!(
            drained = summary.report.drained,
            cut = summary.report.cut,
            threads_joined = summary.threads_joined,
            ms = summary.elapsed.as_millis() as u64,
            immediate = summary.report.immediate,
            "stopped: {} connections drained, {} cut, {} threads joined in {} ms",
            summary.report.drained,
            summary.report.cut,
            summary.threads_joined,
            summary.elapsed.as_millis()
        );
        if !summary.missed.is_empty() {
            tracing::error!(missed = ?summary.missed, "worker threads stuck in an app could not be joined");
        }
        Ok(summary)
    }
}

/// The pool sizing a config asks for.
pub fn pool_size(config: &Config) -> PoolSize {
    PoolSize {
        min: config.pool.min_threads,
        max: config.pool.max_threads,
        capacity: config.pool.queue_capacity,
        idle_timeout: config.pool.idle_timeout,
    }
}

/// One job on a worker: a turn of the connection's protocol, then hand it back.
fn serve(conn: Conn, shared: &Shared, handback: &Sender<Conn>, waker: &Waker) {
    // Decrements `in_flight` however the turn ends (a panic included), after the
    // handback is sent, so the acceptor never sees zero with a connection in transit.
    struct InFlight<'a>(&'a Shared, &'a Waker);
    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
            if self.0.stop.is_set() {
                let _ = self.1.wake();
            }
        }
    }
    let _guard = InFlight(shared, waker);
    let next = match conn.listener.protocol {
        Protocol::Echo => echo::turn(conn, shared),
        Protocol::Http => http::conn::turn(conn, shared),
    };
    if let Next::Park(conn) = next {
        if conn.phase == Phase::Ready {
            // Requests already buffered: the acceptor re-queues it behind the others.
            if handback.send(conn).is_ok() {
                let _ = waker.wake();
            }
        } else {
            // Parked straight into the acceptor's poll; the acceptor is not woken.
            shared.lot.park(conn);
        }
    }
}

/// Apps by name, as the config's `[listener.apps]` refers to them.
pub type AppTable = HashMap<String, Arc<dyn App>>;
