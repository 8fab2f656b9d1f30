//! The `spindle` command: run the daemon, check or print a config.
//!
//! Exit status: 0 after a requested stop, 2 for a bad config or a listener that
//! cannot bind (nothing was started), 1 for anything else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer};

use spindle::config::{Config, LogConfig, LogFormat, DEFAULT_TOML};
use spindle::server::StartError;
use spindle::Server;

#[derive(Parser)]
#[command(name = "spindle", version, about = "A threaded TCP (echo) and HTTP/1.1 server daemon")]
struct Cli {
    /// Config file (TOML). Without it, the embedded default (`spindle print-config`).
    #[arg(short, long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the config and print it as it will be used; exit 2 if it is bad.
    Check,
    /// Print the documented default config.
    PrintConfig,
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
        Command::Check => match load() {
            Ok(config) => {
                print!("{}", config.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("spindle: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run => {
            let config = match load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("spindle: {e}");
                    return ExitCode::from(2);
                }
            };
            run(config, cli.config)
        }
    }
}

fn run(config: Config, path: Option<PathBuf>) -> ExitCode {
    let set_level = match init_logging(&config.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("spindle: cannot start logging: {e}");
            return ExitCode::from(2);
        }
    };
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(nofile = n, "open-files limit (RLIMIT_NOFILE) raised to the hard limit: {n}"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    let server = match Server::builder(config).signals(true).config_path(path).on_log_level(set_level).build() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("spindle: {e}");
            return ExitCode::from(match e {
                StartError::Bind(_) => 2,
                _ => 1,
            });
        }
    };
    match server.run() {
        Ok(summary) if summary.missed.is_empty() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
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
