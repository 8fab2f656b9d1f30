//! The daemon: what the `spindle` command (and `spindle-wsgi`, the Python package's
//! command) runs once the config is loaded. It starts logging (text or JSON on stderr;
//! `RUST_LOG` overrides `log.level`), routes panics into the log, raises the
//! open-files limit, builds the [`Server`] with signals and systemd on, lets the
//! caller mount its own apps, writes and removes the `--ready-file`, and runs the
//! server on the calling thread until a stop; then it returns the exit status.
//!
//! Exit status: 0 after a requested stop, 2 for a config the caller's setup refused
//! or a listener that cannot bind (nothing was started), 1 for anything else.

use std::path::PathBuf;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer};

use crate::config::{Config, LogConfig, LogFormat};
use crate::server::{ServerBuilder, StartError};
use crate::Server;

/// Exit status for a bad config, an app that cannot be loaded, or a listener that
/// cannot bind: nothing was started.
pub const EXIT_CONFIG: u8 = 2;
/// Exit status for any other failure.
pub const EXIT_FAILURE: u8 = 1;

/// What the daemon runs with.
pub struct Options {
    /// The loaded config.
    pub config: Config,
    /// The file SIGHUP re-reads (`None`: the embedded default, nothing to re-read).
    pub config_path: Option<PathBuf>,
    /// `--ready-file`: once serving, `pid N` and a `listener NAME ADDRESS` line per
    /// listener are written to it (atomically); it is removed at exit.
    pub ready_file: Option<PathBuf>,
    /// The command's name, for the few messages printed before logging is up.
    pub name: &'static str,
}

/// Runs the daemon to its end and returns the exit status. `setup` is called with the
/// configured builder once logging is up, and returns it with the caller's apps
/// mounted (`Ok(b)` unchanged for none); its `Err` is logged and is exit status 2.
pub fn run(options: Options, setup: impl FnOnce(ServerBuilder) -> Result<ServerBuilder, String>) -> u8 {
    let Options { config, config_path: path, ready_file, name } = options;
    let set_level = match init_logging(&config.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{name}: cannot start logging: {e}");
            return EXIT_CONFIG;
        }
    };
    // A panicking app is caught and answered with 500; its message goes through the
    // log like everything else (one JSON object a line with log.format = "json").
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into());
        tracing::error!(target: "spindle::panic", thread, location, "panic: {message}");
    }));
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    open_files_limit(&config);
    let builder = Server::builder(config).signals(true).systemd(true).config_path(path).on_log_level(set_level);
    // What the embedding command mounts (spindle-wsgi: the Python app), after logging
    // is up so that what it does at startup is logged like the rest.
    let mut builder = match setup(builder) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("{e}");
            return EXIT_CONFIG;
        }
    };
    if let Some(file) = ready_file.clone() {
        builder = builder.on_ready(move |addrs| write_ready_file(&file, addrs));
    }
    let server = match builder.build() {
        Ok(s) => s,
        Err(e) => {
            // Once, through the log (the journal or a terminal alike), in its format.
            tracing::error!("{e}");
            return match e {
                StartError::Bind(_) | StartError::Activation(_) => EXIT_CONFIG,
                _ => EXIT_FAILURE,
            };
        }
    };
    let outcome = server.run();
    if let Some(file) = &ready_file {
        // Only our own: after a SIGUSR2 upgrade the file is the successor's.
        let ours = format!("pid {}\n", std::process::id());
        if std::fs::read_to_string(file).is_ok_and(|text| text.starts_with(&ours)) {
            let _ = std::fs::remove_file(file);
        }
    }
    match outcome {
        Ok(summary) if summary.missed.is_empty() => 0,
        Ok(_) => EXIT_FAILURE,
        Err(e) => {
            tracing::error!("{e}");
            EXIT_FAILURE
        }
    }
}

/// `--ready-file`: written to a temporary name and renamed, so a reader never sees
/// half of it.
fn write_ready_file(file: &std::path::Path, addrs: &[(String, std::net::SocketAddr)]) {
    let mut text = format!("pid {}\n", std::process::id());
    for (name, addr) in addrs {
        text.push_str(&format!("listener {name} {addr}\n"));
    }
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, file));
    if let Err(e) = written {
        tracing::error!(path = %file.display(), "cannot write the ready file: {e}");
    }
}

/// Raises the soft open-files limit to the hard one (one descriptor per connection),
/// says so only if it changed, and warns when `max_connections` cannot be reached under
/// it: accepts would then fail with EMFILE long before the configured cap.
fn open_files_limit(config: &Config) {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).ok();
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => {
            if let Some((soft, _)) = before.filter(|(soft, _)| *soft != n) {
                tracing::info!(from = soft, to = n, "open-files limit (RLIMIT_NOFILE) raised to the hard limit");
            }
            n
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
            match before {
                Some((soft, _)) => soft,
                None => return,
            }
        }
    };
    // Besides one per connection: stdio, the listeners, epoll and eventfds, and a
    // temporary file per large request body being received.
    let reserve = 32 + config.listeners.len() as u64;
    let wanted = config.limits.max_connections as u64 + reserve;
    if limit < wanted {
        tracing::warn!(
            max_connections = config.limits.max_connections,
            nofile = limit,
            "limits.max_connections needs more open files than RLIMIT_NOFILE allows: accepts will fail (EMFILE) at about {} connections; raise LimitNOFILE= or `ulimit -n`, or lower max_connections",
            limit.saturating_sub(reserve)
        );
    }
}

type SetLevel = Box<dyn Fn(&str) + Send + Sync>;

/// stderr logging, text or JSON; `RUST_LOG` overrides `log.level` (also on reload).
/// Under systemd (`JOURNAL_STREAM` set) lines carry no timestamp or colour: journald
/// adds its own.
pub(crate) fn init_logging(cfg: &LogConfig) -> Result<SetLevel, String> {
    let env = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty());
    let filter = EnvFilter::try_new(env.as_deref().unwrap_or(&cfg.level)).map_err(|e| e.to_string())?;
    let (filter, handle) = reload::Layer::new(filter);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = !journald && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let base = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = match (cfg.format, journald) {
        (LogFormat::Json, _) => base.json().boxed(),
        (LogFormat::Text, true) => base.without_time().boxed(),
        (LogFormat::Text, false) => base.boxed(),
    };
    tracing_subscriber::registry().with(filter).with(fmt).try_init().map_err(|e| e.to_string())?;
    Ok(Box::new(move |level: &str| {
        if env.is_some() {
            tracing::info!("RUST_LOG is set; it keeps overriding log.level");
            return;
        }
        match EnvFilter::try_new(level) {
            Ok(f) => {
                if let Err(e) = handle.reload(f) {
                    tracing::warn!(error = %e, "cannot apply the new log level");
                }
            }
            Err(e) => tracing::warn!(error = %e, "invalid log level {level:?}"),
        }
    }))
}
