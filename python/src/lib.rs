//! `spindle_wsgi`: the Python extension module behind the `spindle-wsgi` command. It
//! loads a WSGI callable and runs the spindle daemon (the same code as the `spindle`
//! binary: config, pool, signals, systemd, metrics) with the callable mounted at "/" on
//! every HTTP listener.
//!
//! The command runs on Python's main thread: it parses `sys.argv`, imports the app,
//! then releases the GIL for the whole life of the server. Pool threads take the GIL
//! only to call the app and to pull each chunk of its response (`wsgi.rs`); every byte
//! of socket I/O happens without it. `main` returns the exit status once every thread
//! the server started has been joined.

mod io;
mod wsgi;

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use pyo3::prelude::*;

use spindle::config::{Config, Protocol};
use spindle::daemon::{self, EXIT_CONFIG};
use spindle::http::App;
use spindle::ServerBuilder;

/// Each worker thread's stack: see `mount`.
const WORKER_STACK: usize = 8 << 20;

/// The config without `--config`: one HTTP listener on gunicorn's default address,
/// serving only the app.
const DEFAULT_TOML: &str = r#"
[[listener]]
name = "http"
bind = "127.0.0.1:8000"
protocol = "http"
[listener.apps]
"#;

#[derive(Parser)]
#[command(
    name = "spindle-wsgi",
    version,
    about = "Serve a WSGI application on spindle's threads",
    after_help = "Without --config: one HTTP listener on 127.0.0.1:8000 serving only the app. \
                  With it: the spindle daemon's config file; the app is mounted at \"/\" on every HTTP listener."
)]
struct Cli {
    /// The WSGI callable, as gunicorn takes it: `MODULE:NAME` (`NAME` may be dotted,
    /// or `factory()` to call a factory with no arguments); `MODULE` alone means
    /// `MODULE:application`.
    /// Optional when the config mounts WSGI apps itself
    /// (`[listener.apps] "/api" = { wsgi = "myproject.wsgi:application" }`).
    #[arg(value_name = "MODULE:CALLABLE")]
    app: Option<String>,
    /// spindle's config file (TOML, as for the `spindle` command).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on HOST:PORT instead of the first HTTP listener's configured address.
    #[arg(short, long, value_name = "HOST:PORT")]
    bind: Option<String>,
    /// Once serving, write `pid N` and a `listener NAME ADDRESS` line per listener to
    /// FILE (atomically); removed at exit.
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
    /// Change to DIR before loading the app (it is then on `sys.path`).
    #[arg(long, value_name = "DIR")]
    chdir: Option<PathBuf>,
}

/// The console script: runs the server and returns the exit status (0 after a
/// requested stop, 2 for a bad config, an app that cannot be imported, or a listener
/// that cannot bind; 1 for anything else).
#[pyfunction]
fn main(py: Python<'_>) -> PyResult<u8> {
    let argv: Vec<String> = py.import("sys")?.getattr("argv")?.extract()?;
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Ok(if e.use_stderr() { EXIT_CONFIG } else { 0 });
        }
    };
    let fail = |msg: String| {
        eprintln!("spindle-wsgi: {msg}");
        Ok(EXIT_CONFIG)
    };
    if let Some(dir) = &cli.chdir {
        if let Err(e) = std::env::set_current_dir(dir) {
            return fail(format!("--chdir {}: {e}", dir.display()));
        }
    }
    // With the GIL one thread runs Python at a time: an unset pool.min_threads is 1, not
    // the CPU count (Flask hello on 2 CPUs: +6% req/s and -13% CPU against 2 threads,
    // which only hand the GIL back and forth). Blocking apps grow the pool as ever; a
    // free-threaded build keeps one thread per CPU.
    if !free_threaded_build(py) {
        spindle::config::set_default_min_threads(Some(1));
    }
    let loaded = match &cli.config {
        Some(path) => Config::load(path),
        None => Config::parse(DEFAULT_TOML, "<spindle-wsgi default>"),
    };
    let mut config = match loaded {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    if let Some(bind) = &cli.bind {
        let addr = match resolve(bind) {
            Ok(a) => a,
            Err(e) => return fail(format!("--bind {bind}: {e}")),
        };
        match config.listeners.iter_mut().find(|l| l.protocol == Protocol::Http) {
            Some(listener) => listener.bind = addr,
            None => return fail("--bind: the config has no HTTP listener".into()),
        }
    }
    // The working directory is on sys.path, as gunicorn has it, so `myapp:app` finds
    // ./myapp.py.
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| ".".into());
    let path = py.import("sys")?.getattr("path")?;
    if !path.contains(&cwd)? {
        path.call_method1("insert", (0, &cwd))?;
    }
    // SIGINT is the daemon's (a graceful stop, as SIGTERM; see the README's signals), not
    // Python's KeyboardInterrupt: with the default action restored, the daemon's
    // handler does not chain to Python's.
    let signal = py.import("signal")?;
    signal.call_method1("signal", (signal.getattr("SIGINT")?, signal.getattr("SIG_DFL")?))?;

    // (listener, prefix, MODULE:CALLABLE): the command line's app at "/" on every
    // HTTP listener, then the config's own WSGI entries (which win at the same prefix).
    let mut mounts: Vec<(String, String, String)> = Vec::new();
    for l in config.listeners.iter().filter(|l| l.protocol == Protocol::Http) {
        if let Some(spec) = &cli.app {
            mounts.push((l.name.clone(), "/".into(), spec.clone()));
        }
        for (prefix, spec) in &l.wsgi {
            mounts.push((l.name.clone(), prefix.clone(), spec.clone()));
        }
    }
    if mounts.is_empty() {
        return fail(match &cli.app {
            None => "no WSGI app: give MODULE:CALLABLE, or mount one in the config \
                     ([listener.apps] \"/\" = { wsgi = \"MODULE:CALLABLE\" })"
                .into(),
            Some(_) => "the config has no HTTP listener to serve the app on".into(),
        });
    }
    let options = daemon::Options { config, config_path: cli.config, ready_file: cli.ready_file, name: "spindle-wsgi" };
    // A SIGUSR2 upgrade starts this same command: this interpreter as it was invoked
    // (in its virtualenv) with this script and arguments.
    let executable: String = py.import("sys")?.getattr("executable")?.extract()?;
    let upgrade = (!executable.is_empty())
        .then(|| (PathBuf::from(executable), argv.iter().map(std::ffi::OsString::from).collect::<Vec<_>>()));
    let code = py.detach(move || {
        daemon::run(options, move |builder| {
            let builder = match upgrade {
                Some((program, args)) => builder.upgrade_command(program, args),
                None => builder,
            };
            mount(builder, &mounts)
        })
    });
    Ok(code)
}

/// Imports each WSGI app once and mounts it where the command line and config say.
fn mount(mut builder: ServerBuilder, mounts: &[(String, String, String)]) -> Result<ServerBuilder, String> {
    let mut loaded: HashMap<&str, Arc<dyn App>> = HashMap::new();
    for (listener, prefix, spec) in mounts {
        let app = match loaded.get(spec.as_str()) {
            Some(app) => Arc::clone(app),
            None => {
                let app: Arc<dyn App> = Arc::new(Python::attach(|py| wsgi::WsgiApp::load(py, spec))?);
                loaded.insert(spec, Arc::clone(&app));
                app
            }
        };
        builder = builder.mount_on(listener, prefix, app);
    }
    // One Python thread state per worker for the thread's life, detached between
    // requests: attaching for a request then only takes the GIL, and
    // `threading.local` data (a database connection) outlives the request, as on
    // gunicorn's threads. Without it each request would make and destroy one.
    // 8 MiB stacks, as the threads Python starts itself get (`ulimit -s`): C code under
    // a deep Python recursion (the interpreter's limit is 1,000 frames) can overflow
    // Rust's default 2 MiB, and a stack overflow aborts the whole server.
    Ok(builder.worker_stack_size(WORKER_STACK).wrap_worker_threads(|run| Python::attach(|py| py.detach(run))))
}

/// Whether this CPython is a free-threaded build (`Py_GIL_DISABLED`, 3.13t and later).
pub(crate) fn free_threaded_build(py: Python<'_>) -> bool {
    py.import("sysconfig")
        .and_then(|s| s.call_method1("get_config_var", ("Py_GIL_DISABLED",)))
        .and_then(|v| v.extract::<Option<i64>>())
        .ok()
        .flatten()
        .unwrap_or(0)
        == 1
}

/// `HOST:PORT` to an address (`localhost:8000`, `0.0.0.0:80`, `[::1]:8000`).
fn resolve(text: &str) -> Result<SocketAddr, String> {
    let mut addrs = text.to_socket_addrs().map_err(|e| e.to_string())?;
    addrs.next().ok_or_else(|| "resolves to no address".into())
}

/// The extension module. `gil_used = false` (pyo3's default since 0.28, stated here
/// as the module's claim): on a free-threaded CPython, importing it leaves the GIL off.
/// Its classes are `frozen` with a `Mutex` inside (`Sync`), and pool threads share only
/// the app object and `Py` handles, so nothing relies on the GIL for mutual exclusion.
/// With `gil_used = true` the interpreter would turn the GIL back on at import, and
/// every app thread would run one at a time again.
#[pymodule(gil_used = false)]
fn spindle_wsgi(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add_class::<io::FileWrapper>()?;
    m.add_class::<io::Input>()?;
    m.add_class::<io::Errors>()?;
    m.add_class::<wsgi::StartResponse>()?;
    Ok(())
}
