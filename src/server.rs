//! `Server`: binds the listeners, starts the pool, the acceptor and (optionally) the
//! signal thread, and runs the stop to its end — every thread it started is joined
//! before `run` returns.
//!
//! The main thread (whoever calls `run`) does the joining: it waits for the acceptor to
//! finish its drain (which happens when a stop has been asked for and every connection
//! is finished, or cut), shuts the lot (waking every worker) and joins the pool with a
//! deadline, cutting the sockets of any worker that misses it, then stops and joins the
//! signal thread.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::{Poll, Waker};

use crate::acceptor::{self, Acceptor, StopReport};
use crate::config::{Config, Protocol};
use crate::conn::{Conn, Registry};
use crate::control::{Control, ServerHandle};
use crate::http::{App, Router};
use crate::listener::{self, BindError, ListenerCtx};
use crate::lot::Lot;
use crate::pool::{Pool, SpawnError, ThreadSpec};
use crate::shared::{pool_size, Shared};
use crate::signals;
use crate::systemd::{self, ActivationError, Notifier};
use crate::{service, upgrade};

/// After the acceptor is done, how long the pool gets to finish before sockets are cut.
const POOL_JOIN: Duration = Duration::from_secs(5);

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

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind(e) => Some(e),
            StartError::Io(e) => Some(e),
            StartError::Spawn(e) => Some(e),
            StartError::Activation(e) => Some(e),
        }
    }
}

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
    /// `(listener name or every HTTP listener, prefix, app)`.
    apps: Vec<(Option<String>, String, Arc<dyn App>)>,
    signals: bool,
    config_path: Option<PathBuf>,
    on_log_level: Option<signals::LogLevelHook>,
    on_ready: Option<ReadyHook>,
    worker_threads: ThreadSpec,
    upgrade_command: Option<(PathBuf, Vec<std::ffi::OsString>)>,
    systemd: bool,
}

/// Called once the server serves, with each listener's name and bound address.
type ReadyHook = Box<dyn FnOnce(&[(String, SocketAddr)]) + Send>;

impl ServerBuilder {
    /// Speaks sd_notify (`NOTIFY_SOCKET`, `WATCHDOG_USEC`) and adopts socket-activated
    /// listeners (`LISTEN_FDS`). Off by default for embedding; the daemon turns it on.
    pub fn systemd(mut self, on: bool) -> Self {
        self.systemd = on;
        self
    }

    /// Mounts `app` at path `prefix` on every HTTP listener (longest prefix wins; it
    /// replaces a built-in app configured at the same prefix). A listener whose config
    /// names no apps then serves only the mounted apps, not the default table.
    pub fn mount(mut self, prefix: &str, app: impl App) -> Self {
        self.apps.push((None, prefix.to_string(), Arc::new(app)));
        self
    }

    /// Mounts `app` at path `prefix` on the HTTP listener named `listener` only; at
    /// the same prefix it wins over an app [`mount`](Self::mount)ed on every listener.
    /// `build` fails if no HTTP listener has that name.
    pub fn mount_on(mut self, listener: &str, prefix: &str, app: impl App) -> Self {
        self.apps.push((Some(listener.to_string()), prefix.to_string(), Arc::new(app)));
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

    /// Runs every worker thread's loop inside `wrap`, called once on the new thread
    /// with the loop (which it must call; it is run after `wrap` returns if it did
    /// not). For per-thread state an app's runtime needs for the thread's whole life
    /// rather than per request (tokio's `on_thread_start`): the WSGI bridge keeps one
    /// Python thread state per worker this way, so `threading.local` data (database
    /// connections) lasts across requests.
    pub fn wrap_worker_threads(mut self, wrap: impl Fn(&mut (dyn FnMut() + Send)) + Send + Sync + 'static) -> Self {
        self.worker_threads.wrap = Some(Arc::new(wrap));
        self
    }

    /// Each worker thread's stack size in bytes (at least 64 KiB); by default Rust's
    /// 2 MiB, ample for Rust apps. An embedded interpreter may need more: C code under
    /// a deep Python recursion is what the WSGI bridge gives 8 MiB for (the stack of
    /// the threads Python starts itself, from `ulimit -s`).
    pub fn worker_stack_size(mut self, bytes: usize) -> Self {
        self.worker_threads.stack_size = Some(bytes.max(64 * 1024));
        self
    }

    /// The command a SIGUSR2 upgrade starts (program, arguments); by default this
    /// process's own binary and arguments. For a daemon run by an interpreter: the
    /// `spindle-wsgi` console script sets its Python's `sys.executable` and `sys.argv`,
    /// since the binary of the process (`/proc/self/exe`) is the interpreter with a
    /// virtualenv's symlink resolved, which would start outside the virtualenv.
    pub fn upgrade_command(mut self, program: PathBuf, args: Vec<std::ffi::OsString>) -> Self {
        self.upgrade_command = Some((program, args));
        self
    }

    /// Called once, from `run`, when the server serves: every listener bound, the
    /// workers, the acceptor and (if on) the signal thread running. Gets each
    /// listener's name and bound address (the real port for a `:0` bind). The daemon's
    /// `--ready-file` is written here; an embedder can start its clients here.
    pub fn on_ready(mut self, hook: impl FnOnce(&[(String, SocketAddr)]) + Send + 'static) -> Self {
        self.on_ready = Some(Box::new(hook));
        self
    }

    /// Binds every listener. Nothing runs yet; a bind error means nothing started.
    pub fn build(self) -> Result<Server, StartError> {
        let http_names: Vec<&str> =
            self.config.listeners.iter().filter(|l| l.protocol == Protocol::Http).map(|l| l.name.as_str()).collect();
        if let Some((Some(name), prefix, _)) =
            self.apps.iter().find(|(on, _, _)| on.as_deref().is_some_and(|n| !http_names.contains(&n)))
        {
            return Err(StartError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("an app is mounted at {prefix:?} on listener {name:?}, but no HTTP listener has that name"),
            )));
        }
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), acceptor::WAKER)?);
        let registry = Arc::new(Registry::new(Arc::clone(&waker)));
        let lot = Arc::new(Lot::new(Arc::clone(&waker))?);
        let notifier = if self.systemd { Notifier::from_env() } else { Notifier::disabled() };
        let shared = Arc::new(Shared::new(self.config.clone(), registry, lot, notifier));
        for budget in shared.budgets.all() {
            let lot = Arc::clone(&shared.lot);
            budget.on_room(move || lot.room_freed());
        }
        let mut activated = if self.systemd {
            systemd::take_activated(&self.config.listeners).map_err(StartError::Activation)?
        } else {
            None
        };
        if activated.is_some() {
            tracing::info!(
                "adopting the listening sockets passed in LISTEN_FDS (systemd socket activation, or a SIGUSR2 upgrade)"
            );
        }
        let mut listeners = Vec::new();
        // Duplicates of the listening sockets for a SIGUSR2 successor (the daemon only:
        // its successor adopts them the way it adopts systemd's).
        let upgrades = self.systemd && self.signals;
        let mut inheritable = Vec::new();
        for (i, cfg) in self.config.listeners.iter().enumerate() {
            let passed = activated.as_mut().and_then(|a| a.get_mut(i)).and_then(Option::take);
            let std_listener = match passed {
                Some(l) => l,
                None => {
                    let l = listener::bind(cfg).map_err(StartError::Bind)?;
                    if activated.is_some() {
                        tracing::warn!(
                            listener = %cfg.name,
                            addr = %cfg.bind,
                            "systemd passed no socket of this name; bound it here (start its .socket unit to have systemd hold the port)"
                        );
                    }
                    l
                }
            };
            let addr = std_listener.local_addr()?;
            if upgrades {
                inheritable.push((cfg.name.clone(), std_listener.try_clone()?));
            }
            let router = match cfg.protocol {
                Protocol::Http => {
                    // This program's mounts for this listener: on every listener first,
                    // then on this one by name (so those win at the same prefix).
                    let mut mounted: Vec<(String, Arc<dyn App>)> = Vec::new();
                    for specific in [false, true] {
                        for (on, prefix, app) in &self.apps {
                            if on.is_some() == specific && on.as_ref().is_none_or(|n| *n == cfg.name) {
                                mounted.push((prefix.clone(), Arc::clone(app)));
                            }
                        }
                    }
                    // A listener the file gave no apps gets the default table, unless
                    // this program mounts its own: then it serves only those.
                    let configured = if cfg.default_apps && !mounted.is_empty() { &[][..] } else { &cfg.apps[..] };
                    let builtin = configured.iter().filter_map(|(prefix, name)| {
                        crate::apps::builtin(name, &shared).map(|app| (prefix.clone(), app))
                    });
                    Router::new(builtin.chain(mounted).collect())
                }
                Protocol::Echo => Router::default(),
            };
            let ctx = Arc::new(ListenerCtx {
                name: cfg.name.clone(),
                addr,
                protocol: cfg.protocol,
                router: Arc::new(router),
                proxy: listener::proxy_versions(cfg),
                forwarded_trusted: cfg.forwarded_trusted.clone(),
            });
            listeners.push((mio::net::TcpListener::from_std(std_listener), ctx));
        }
        warn_reuse_port_resets(&self.config);
        let upgrade = if upgrades {
            upgrade::Plan::capture(inheritable, self.upgrade_command)
                .map_err(|e| tracing::warn!(error = %e, "SIGUSR2 upgrades are off: cannot tell this binary's path"))
                .ok()
        } else {
            None
        };
        let (control_tx, control_rx) = mpsc::channel();
        Ok(Server {
            upgrade,
            poll,
            waker,
            listeners,
            shared,
            control_tx,
            control_rx,
            signals: self.signals,
            config_path: self.config_path,
            on_log_level: self.on_log_level,
            on_ready: self.on_ready,
            worker_threads: self.worker_threads,
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
    on_ready: Option<ReadyHook>,
    worker_threads: ThreadSpec,
    upgrade: Option<upgrade::Plan>,
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
            on_ready: None,
            worker_threads: ThreadSpec::default(),
            upgrade_command: None,
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
    pub fn run(mut self) -> Result<StopSummary, StartError> {
        let handle = self.handle();
        let addrs = self.local_addrs();
        let on_ready = self.on_ready.take();
        let shared = Arc::clone(&self.shared);
        let config = shared.config();
        let pool = {
            let for_workers = Arc::clone(&shared);
            Arc::new(
                Pool::with_threads(
                    pool_size(&config),
                    Arc::clone(&shared.lot),
                    move |job| serve(job, &for_workers),
                    std::mem::take(&mut self.worker_threads),
                )
                .map_err(StartError::Spawn)?,
            )
        };
        shared.set_pool(&pool);

        for (_, ctx) in &self.listeners {
            tracing::info!(listener = %ctx.name, addr = %ctx.addr, protocol = %ctx.protocol, "listening");
        }
        let acceptor =
            Acceptor::new(self.poll, self.listeners, self.control_rx, Arc::clone(&pool), Arc::clone(&shared))
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
                upgrade: self.upgrade,
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
        let stats = shared.stats();
        tracing::info!(
            min_threads = stats.min_threads,
            max_threads = stats.max_threads,
            queue_capacity = stats.queue_capacity,
            "ready"
        );
        // The hook (the daemon's ready file) runs before READY=1: a SIGUSR2
        // predecessor drains and removes its own ready file once it hears READY, and
        // must find this process's file there by then, not remove it.
        if let Some(hook) = on_ready {
            hook(&addrs);
        }
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
        // Nothing sweeps the lot from here on: what workers still park is closed, and
        // every worker waiting on it is woken to exit.
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
            "stopped"
        );
        if !summary.missed.is_empty() {
            tracing::error!(missed = ?summary.missed, "worker threads stuck in an app could not be joined");
        }
        Ok(summary)
    }
}

/// One job on a worker: a turn of the connection's protocol, then back to the lot.
fn serve((conn, queued): (Conn, Option<Instant>), shared: &Shared) {
    // Returns the connection's outcome to the lot however the turn ends (a panic
    // included: then the connection is dropped), so a stop never waits for a
    // connection that no thread holds.
    struct Release<'a>(&'a Shared, Option<crate::conn::Next>);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.lot.release(self.1.take().and_then(crate::conn::Next::parked));
        }
    }
    let mut release = Release(shared, None);
    let next = match queued {
        Some(since) => match service::admit(conn, since, shared) {
            Ok(conn) => service::turn(conn, shared),
            Err(next) => next,
        },
        None => service::turn(conn, shared),
    };
    release.1 = Some(next);
}

/// Apps by name, as the config's `[listener.apps]` refers to them.
pub type AppTable = HashMap<String, Arc<dyn App>>;

/// Linux resets the connections still queued on a SO_REUSEPORT listener when it
/// closes, unless `net.ipv4.tcp_migrate_req` (5.14+, per network namespace) tells it to
/// move them to another listener of the group: without it, stopping one of several
/// processes sharing a port fails the clients that were waiting for it.
fn warn_reuse_port_resets(config: &Config) {
    let Some(l) = config.listeners.iter().find(|l| l.reuse_port) else { return };
    // A kernel without the setting (before 5.14) resets them just as "0" does.
    let migrate = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").map(|s| s.trim().to_string());
    if migrate.as_deref().map_or(true, |v| v == "0") {
        tracing::warn!(
            listener = %l.name,
            "reuse_port is on but net.ipv4.tcp_migrate_req is 0 or missing (Linux before 5.14): when this process stops, connections still queued on its listening socket are reset instead of moved to another process on the port; set it to 1 (sysctl), where the kernel has it"
        );
    }
}
