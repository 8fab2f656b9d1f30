//! The `signals` thread: turns Unix signals into actions on the running server.
//!
//! | signal          | action                                                        |
//! |-----------------|---------------------------------------------------------------|
//! | SIGTERM, SIGINT | graceful stop; a second one during the drain: immediate stop  |
//! | SIGQUIT         | immediate stop                                                |
//! | SIGHUP          | re-read the config file: pool sizes, limits, log level         |
//! | SIGTTIN         | one more worker thread (min and max + 1)                       |
//! | SIGTTOU         | one fewer worker thread (min and max − 1, never below 1)        |
//! | SIGUSR2         | upgrade: start the binary now at this one's path on the same   |
//! |                 | listening sockets; once it is ready, drain and exit            |
//!
//! signal-hook's handler only writes to a pipe; everything here runs on an ordinary
//! thread, so it may lock, allocate and log. Stops are sent to the acceptor as
//! `Control` messages (with a wake); resizing and reloading act on the pool and the
//! shared config directly. The thread ends when `Server::run` closes the iterator's
//! handle, and is joined there.

use std::io;
use std::path::PathBuf;
use std::thread::{self, JoinHandle};

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR2};
use signal_hook::iterator::{Handle, Signals};

use crate::config::Config;
use crate::control::{Control, ServerHandle};
use crate::shared::pool_size;

/// Called with the new log level after a reload.
pub type LogLevelHook = Box<dyn Fn(&str) + Send + Sync>;

/// What the signal thread acts on.
pub struct SignalCtx {
    /// The server to stop and resize.
    pub handle: ServerHandle,
    /// The config file SIGHUP re-reads (`None`: the embedded default, nothing to re-read).
    pub config_path: Option<PathBuf>,
    /// Applies a new log level.
    pub on_log_level: Option<LogLevelHook>,
    /// What SIGUSR2 starts (`None`: upgrades are off, as for an embedded server).
    pub upgrade: Option<crate::upgrade::Plan>,
}

/// The running signal thread.
pub struct SignalThread {
    handle: Handle,
    thread: JoinHandle<()>,
}

impl SignalThread {
    /// Ends the thread and joins it; returns whether it was joined cleanly.
    pub fn stop_and_join(self) -> bool {
        self.handle.close();
        self.thread.join().is_ok()
    }
}

/// Installs the handlers and starts the `signals` thread.
pub fn spawn(ctx: SignalCtx) -> io::Result<SignalThread> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR2])?;
    let handle = signals.handle();
    let thread = thread::Builder::new().name("signals".into()).spawn(move || {
        let mut stopping = false;
        for signal in signals.forever() {
            act(signal, &ctx, &mut stopping);
        }
    })?;
    Ok(SignalThread { handle, thread })
}

fn act(signal: i32, ctx: &SignalCtx, stopping: &mut bool) {
    let name = signal_name(signal);
    match signal {
        SIGTERM | SIGINT if !*stopping => {
            *stopping = true;
            tracing::info!(signal = %name, "graceful stop (send it again, or SIGQUIT, to stop at once)");
            ctx.handle.send(Control::Graceful);
        }
        SIGTERM | SIGINT | SIGQUIT => {
            *stopping = true;
            tracing::warn!(signal = %name, "immediate stop");
            ctx.handle.send(Control::Immediate);
        }
        SIGTTIN | SIGTTOU => {
            let Some(pool) = ctx.handle.shared().pool() else { return };
            let size = pool.size();
            let (min, max) = if signal == SIGTTIN {
                (size.min + 1, size.max + 1)
            } else {
                (size.min.saturating_sub(1).max(1), size.max.saturating_sub(1).max(1))
            };
            pool.resize(min, max);
            tracing::info!(signal = %name, min_threads = min, max_threads = max, "pool resized");
        }
        SIGHUP => reload(ctx),
        SIGUSR2 if *stopping => tracing::warn!(signal = "SIGUSR2", "already stopping; no upgrade"),
        SIGUSR2 if upgrade(ctx) => *stopping = true,
        _ => {}
    }
}

/// SIGUSR2 (see `upgrade`): returns whether a successor took over (this process is
/// draining).
fn upgrade(ctx: &SignalCtx) -> bool {
    let Some(plan) = &ctx.upgrade else {
        tracing::warn!(signal = "SIGUSR2", "upgrades are off for this server");
        return false;
    };
    tracing::info!(signal = "SIGUSR2", exe = %plan.exe().display(), "upgrade: starting the new binary on the listening sockets");
    match plan.run() {
        Ok(pid) => {
            tracing::info!(signal = "SIGUSR2", successor = pid, "upgrade: the new process is ready; draining this one");
            ctx.handle.shared().notifier.hand_over(pid);
            ctx.handle.send(Control::Graceful);
            true
        }
        Err(e) => {
            tracing::error!(signal = "SIGUSR2", "upgrade failed, still serving: {e}");
            false
        }
    }
}

fn reload(ctx: &SignalCtx) {
    let Some(path) = &ctx.config_path else {
        tracing::warn!(signal = "SIGHUP", "running on the embedded default config; there is no file to re-read");
        return;
    };
    let shared = ctx.handle.shared();
    shared.notifier.reloading();
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(signal = "SIGHUP", "reload failed, keeping the running config: {e}");
            shared.set_reload_error(Some(e.to_string().replace('\n', " ")));
            shared.notifier.ready(&shared.status_line());
            return;
        }
    };
    let old = shared.config();
    if old.listeners != new.listeners {
        tracing::warn!(signal = "SIGHUP", "[[listener]] changes need a restart; the listeners stay as they are");
    }
    let mut applied = new.clone();
    applied.listeners = old.listeners.clone();
    if let Some(pool) = shared.pool() {
        pool.reconfigure(pool_size(&applied));
    }
    if let Some(hook) = &ctx.on_log_level {
        hook(&applied.log.level);
    }
    tracing::info!(
        signal = "SIGHUP",
        path = %path.display(),
        min_threads = applied.pool.min_threads,
        max_threads = applied.pool.max_threads,
        queue_capacity = applied.pool.queue_capacity,
        "reloaded: pool, limits and log level applied"
    );
    shared.set_config(applied);
    shared.set_reload_error(None);
    shared.notifier.ready(&shared.status_line());
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGQUIT => "SIGQUIT",
        SIGHUP => "SIGHUP",
        SIGTTIN => "SIGTTIN",
        SIGTTOU => "SIGTTOU",
        SIGUSR2 => "SIGUSR2",
        _ => "signal",
    }
}
