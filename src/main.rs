//! The `spindle` command: run the daemon, check or print a config.
//!
//! Exit status: 0 after a requested stop, 2 for a bad config or a listener that
//! cannot bind (nothing was started), 1 for anything else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer};

use spindle::config::{Config, LogConfig, LogFormat, Protocol, DEFAULT_TOML};
use spindle::server::StartError;
use spindle::Server;

#[derive(Parser)]
#[command(name = "spindle", version, about = "A threaded TCP (echo) and HTTP/1.1 server daemon")]
struct Cli {
    /// Config file (TOML). Without it, the embedded default (`spindle print-config`).
    #[arg(short, long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Once serving, write `pid N` and a `listener NAME ADDRESS` line per listener
    /// (the real port for a `:0` bind) to FILE, atomically; removed at exit. For
    /// scripts and tests that need the ports without reading the log.
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the config, bind and release every listener (as `nginx -t` does), and
    /// print the config as it will be used; exit 2 if it cannot start.
    Check {
        /// Validate only; do not bind. For a running daemon's file (ExecReload), or
        /// when a systemd .socket unit holds the ports.
        #[arg(long)]
        no_bind: bool,
        /// Print nothing on success.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print the documented default config.
    PrintConfig,
    /// GET a URL (default: the first HTTP listener's /healthz); exit 0 on 200 within 2 s.
    /// For container HEALTHCHECKs: the image needs no curl.
    Healthcheck {
        /// `http://HOST:PORT/PATH` (HOST an IP address or localhost).
        #[arg(long)]
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let load = || match &cli.config {
        Some(path) => Config::load(path),
        None => Ok(Config::embedded_default()),
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::PrintConfig => {
            print!("{DEFAULT_TOML}");
            ExitCode::SUCCESS
        }
        Command::Check { no_bind, quiet } => {
            let config = match load() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("spindle: {e}");
                    return ExitCode::from(2);
                }
            };
            // Warnings go to stderr even with --quiet: the journal keeps them.
            for warning in config.warnings() {
                eprintln!("spindle: warning: {warning}");
            }
            if !no_bind {
                // The same binding the daemon does, released at once: a port in use or
                // a privileged port for this user fails here, not at the next start.
                if let Err(e) = Server::builder(config.clone()).build() {
                    eprintln!("spindle: {e}");
                    if let StartError::Bind(b) = &e {
                        if b.source.kind() == std::io::ErrorKind::AddrInUse {
                            eprintln!("spindle: if a running spindle or a systemd .socket unit holds that port, check the file with --no-bind");
                        }
                    }
                    return ExitCode::from(2);
                }
            }
            if !quiet {
                print!("{}", config.to_toml());
            }
            ExitCode::SUCCESS
        }
        Command::Healthcheck { url } => {
            let target = match url {
                Some(url) => url,
                None => match load().map_err(|e| e.to_string()).and_then(|c| default_health_url(&c)) {
                    Ok(u) => u,
                    Err(e) => {
                        eprintln!("spindle healthcheck: {e}");
                        return ExitCode::from(2);
                    }
                },
            };
            match health::check(&target, Duration::from_secs(2)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("spindle healthcheck: {target}: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Run => {
            let config = match load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("spindle: {e}");
                    return ExitCode::from(2);
                }
            };
            run(config, cli.config, cli.ready_file)
        }
    }
}

fn run(config: Config, path: Option<PathBuf>, ready_file: Option<PathBuf>) -> ExitCode {
    let set_level = match init_logging(&config.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("spindle: cannot start logging: {e}");
            return ExitCode::from(2);
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
    let mut builder = Server::builder(config).signals(true).systemd(true).config_path(path).on_log_level(set_level);
    if let Some(file) = ready_file.clone() {
        builder = builder.on_ready(move |addrs| write_ready_file(&file, addrs));
    }
    let server = match builder.build() {
        Ok(s) => s,
        Err(e) => {
            // Once, through the log (the journal or a terminal alike), in its format.
            tracing::error!("{e}");
            return ExitCode::from(match e {
                StartError::Bind(_) | StartError::Activation(_) => 2,
                _ => 1,
            });
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
        Ok(summary) if summary.missed.is_empty() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
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

/// `http://ADDR/healthz` for the first HTTP listener; a wildcard bind is asked on the
/// loopback address of its family.
fn default_health_url(config: &Config) -> Result<String, String> {
    let listener = config
        .listeners
        .iter()
        .find(|l| l.protocol == Protocol::Http)
        .ok_or("the config has no HTTP listener; pass --url")?;
    let mut addr = listener.bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    Ok(format!("http://{addr}/healthz"))
}

mod health {
    //! A minimal HTTP/1.1 GET for `spindle healthcheck`.
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    /// GETs `url`; `Ok` on a 200 within `budget`, else why not.
    pub fn check(url: &str, budget: Duration) -> Result<(), String> {
        let deadline = Instant::now() + budget;
        let rest = url.strip_prefix("http://").ok_or("only http:// URLs are supported")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        // "localhost" without a lookup: the container image is a static binary on
        // scratch, where glibc's resolver (NSS) is not available.
        let with_port = match with_port.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => with_port,
        };
        let addr: SocketAddr =
            with_port.parse().map_err(|_| format!("{authority:?} is not an IP address (or localhost) and port"))?;
        let left = |d: Instant| d.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let mut s = TcpStream::connect_timeout(&addr, left(deadline)).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(left(deadline))).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(left(deadline))).map_err(|e| e.to_string())?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: spindle-healthcheck\r\nConnection: close\r\n\r\n"
        );
        s.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.windows(2).any(|w| w == b"\r\n") {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("no answer within {budget:?}: {e}")),
            }
        }
        let line = String::from_utf8_lossy(&head);
        let status_line = line.lines().next().unwrap_or("").trim();
        match status_line.split_whitespace().nth(1) {
            Some("200") => Ok(()),
            Some(_) => Err(format!("answered {status_line:?}")),
            None => Err("no HTTP response".into()),
        }
    }
}

type SetLevel = Box<dyn Fn(&str) + Send + Sync>;

/// stderr logging, text or JSON; `RUST_LOG` overrides `log.level` (also on reload).
/// Under systemd (`JOURNAL_STREAM` set) lines carry no timestamp or colour: journald
/// adds its own.
fn init_logging(cfg: &LogConfig) -> Result<SetLevel, String> {
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
