//! The `spindle` command: run the daemon, check or print a config.
//!
//! Exit status: 0 after a requested stop, 2 for a bad config or a listener that
//! cannot bind (nothing was started), 1 for anything else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use spindle::config::{Config, Protocol, DEFAULT_TOML};
use spindle::server::StartError;
use spindle::{daemon, Server};

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
            // A WSGI app needs the Python interpreter that only the spindle-wsgi
            // command (the Python package in python/) runs in.
            let wsgi = config.listeners.iter().enumerate().find_map(|(i, l)| l.wsgi.first().map(|w| (i, w)));
            if let Some((i, (prefix, spec))) = wsgi {
                let origin = config.source.as_ref().map_or("<default>".into(), |p| p.display().to_string());
                eprintln!(
                    "spindle: {origin}: listener[{i}].apps.{prefix:?} = {{ wsgi = {spec:?} }}: wsgi apps need spindle-wsgi \
                     (pip install ./python; run `spindle-wsgi --config {origin}`)"
                );
                return ExitCode::from(2);
            }
            let options =
                daemon::Options { config, config_path: cli.config, ready_file: cli.ready_file, name: "spindle" };
            ExitCode::from(daemon::run(options, Ok))
        }
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
