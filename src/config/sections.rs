//! The `[server]`, `[pool]`, `[limits]` and `[log]` tables: every key, once.
//!
//! Each entry is the whole definition of a setting — field, type, what the file may
//! write ([`Kind`](super::keys::Kind)) and default — and [`section!`] turns it into
//! the struct, its `Default`, the parser's and `to_toml`'s key table. What each key
//! means to an operator, with its unit and default, is written in
//! `config/spindle.toml`; a unit test keeps the two in step. Rules that relate two
//! keys (`pool.min_threads` against `pool.max_threads`) are the `finish` functions
//! here.

use std::time::Duration;

use super::keys::{count, named, section, size, Kind, Written, DURATION, POSITIVE_DURATION};
use super::locate::Ctx;
use super::{log_level, Error};

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

section! {
    /// `[server]` settings.
    pub struct ServerConfig in "server" {
        /// How long a graceful shutdown waits for connections; zero closes at once.
        pub graceful_timeout: Duration = DURATION => secs(30);
        /// How long to keep accepting after a shutdown signal.
        pub drain_delay: Duration = DURATION => Duration::ZERO;
        /// The `Server:` header value; `None` (written `""`) sends none.
        pub server_header: Option<String> = Kind::Text(header_value) => Some("spindle".to_string());
    }
}

/// A header value may not hold CR, LF or other controls (RFC 9110 §5.5); letting one
/// through would let the config inject headers into every response.
fn header_value(s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return Err("must not contain control characters".to_string());
    }
    Ok(())
}

/// The default `pool.min_threads`: the number of CPUs this process may run on (cgroup
/// quotas included), at least 1 and at most the default `max_threads`. A CPU-bound load
/// is served best by one running worker per CPU (measured on 2 CPUs under `wrk -c50` on
/// hello: a floor of 2 gave 1.18x the requests per second of a floor of 4, and 1.3x per
/// CPU-second); a blocking one grows the pool from there (`pool.rs`).
///
/// An embedder whose apps cannot run in parallel changes it with
/// [`set_default_min_threads`].
pub fn default_min_threads() -> usize {
    match MIN_THREADS_DEFAULT.load(std::sync::atomic::Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(4, |n| n.get()).clamp(1, 256),
        n => n,
    }
}

/// 0: the CPU count.
static MIN_THREADS_DEFAULT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sets the `pool.min_threads` that configs parsed from now on get when they do not set
/// it (a SIGHUP reload included); `None` restores the CPU count. For an embedder whose
/// apps run one at a time whatever the threads, such as Python with its GIL (the
/// WSGI bridge sets 1): more running threads would only hand the lock back and forth.
/// Blocking apps still grow the pool from there.
pub fn set_default_min_threads(n: Option<usize>) {
    MIN_THREADS_DEFAULT.store(n.map_or(0, |n| n.max(1)), std::sync::atomic::Ordering::Relaxed);
}

section! {
    /// `[pool]` settings.
    pub struct PoolConfig in "pool" finish pool_finish {
        /// Workers kept even when idle; at least 1.
        pub min_threads: usize = count(1) => default_min_threads();
        /// Most workers; at least `min_threads`. The pool grows only while workers are
        /// blocked in their jobs, so this bounds what a blocking app may use, not what a
        /// CPU-bound one gets: 256 threads serve a 20 ms backend at up to 12,800 req/s
        /// (64, the first default, capped it at 3,200, below eventlet's 1,000 green
        /// threads on the same Flask app).
        pub max_threads: usize = count(1) => 256;
        /// Jobs that may wait for a worker; at least 1.
        pub queue_capacity: usize = count(1) => 1024;
        /// Idle time after which a worker above `min_threads` exits; `None`
        /// (written `"0s"`) means never.
        pub idle_timeout: Option<Duration> = DURATION => Some(secs(60));
        /// Longest wait on the run queue: work that waited longer is answered 503
        /// (HTTP) or reset (echo) instead of run; more than zero.
        pub queue_timeout: Duration = POSITIVE_DURATION => secs(10);
    }
}

fn pool_finish(pool: &mut PoolConfig, ctx: &Ctx, written: &Written) -> Result<(), Error> {
    match written.span("min_threads") {
        // Unset, the minimum is the CPU count, capped by a maximum the operator wrote.
        None => pool.min_threads = pool.min_threads.min(pool.max_threads),
        Some(span) if pool.min_threads > pool.max_threads => {
            return Err(ctx.bad(
                span,
                "pool.min_threads",
                format_args!("({}) is above pool.max_threads ({})", pool.min_threads, pool.max_threads),
            ));
        }
        Some(_) => {}
    }
    Ok(())
}

section! {
    /// `[limits]` settings.
    pub struct Limits in "limits" finish limits_finish {
        /// Open connections across all listeners; at least 1.
        pub max_connections: usize = count(1) => 10_000;
        /// Idle time after which an echo connection is closed; `None` means never.
        pub echo_idle_timeout: Option<Duration> = DURATION => Some(secs(300));
        /// Idle time between HTTP requests on a keep-alive connection; `None`
        /// means never.
        pub keepalive_timeout: Option<Duration> = DURATION => Some(secs(15));
        /// Time to receive a complete request head; more than zero.
        pub header_timeout: Duration = POSITIVE_DURATION => secs(10);
        /// Time to receive a request body; more than zero.
        pub body_timeout: Duration = POSITIVE_DURATION => secs(30);
        /// Largest request head in bytes; at least 256 (below that not even a request
        /// line with a few ordinary headers fits, so the server could answer nothing).
        pub max_header_bytes: usize = size(256) => 16 * 1024;
        /// Most header fields per request; at least 1.
        pub max_headers: usize = count(1) => 100;
        /// Longest request target in bytes; at least 16.
        pub max_uri_bytes: usize = size(16) => 8192;
        /// Largest request body in bytes.
        pub max_body_bytes: u64 = Kind::Size { min: 0, max: u64::MAX } => 16 * 1024 * 1024;
        /// A request body up to this size is held in memory; a larger one is spilled to
        /// an unnamed temporary file. At least 1024.
        pub body_buffer_bytes: usize = size(1024) => 64 * 1024;
        /// Bytes of request bodies held in memory plus response output pending on
        /// connections, process-wide; at least `body_buffer_bytes` (raised to it when the
        /// file leaves the key out, refused when the file sets less). 128 MiB: with the
        /// disk budget, 640 MiB, which a 1 GiB container holds with room for the process
        /// even when `$TMPDIR` is a tmpfs (whose pages are memory).
        pub memory_budget: u64 = Kind::Size { min: 0, max: u64::MAX } => 128 * 1024 * 1024;
        /// Bytes of request bodies spilled to temporary files, process-wide; at least
        /// `max_body_bytes` where bodies can spill (raised or refused as
        /// `memory_budget` is). 512 MiB: 32 uploads of the default `max_body_bytes` at
        /// once.
        pub disk_budget: u64 = Kind::Size { min: 0, max: u64::MAX } => 512 * 1024 * 1024;
        /// Slowest average pace, in bytes per second after a 5 s grace, at which a client
        /// may take a streamed response before the connection is closed; 0: no floor.
        pub min_send_rate: usize = count(0) => 240;
        /// Requests per keep-alive connection; at least 1.
        pub max_requests_per_connection: usize = count(1) => 1000;
    }
}

/// The budgets against the per-connection sizes they must be able to hold: a memory
/// budget below one connection's body buffer, or a disk budget below one body of the
/// largest size allowed, would let a request wait for room that can never free, and
/// end in 503 every time. A budget the file sets that small is refused; one it leaves
/// out is raised to fit (as an unset `pool.min_threads` is capped), so a file written
/// before the budgets existed, with a larger `max_body_bytes`, still loads and means
/// what it meant.
fn limits_finish(limits: &mut Limits, ctx: &Ctx, written: &Written) -> Result<(), Error> {
    let buffer = limits.body_buffer_bytes as u64;
    let why = "one connection's buffer";
    fit_budget(ctx, written, &mut limits.memory_budget, "memory_budget", (buffer, "body_buffer_bytes"), why)?;
    // A body larger than the buffer is spilled whole (receive.rs), so the disk must
    // hold one of max_body_bytes; when no body can pass the buffer, none spills.
    let largest_spill = if limits.max_body_bytes > buffer { limits.max_body_bytes } else { 0 };
    let why = "one connection's body, or an upload of the largest size allowed could never complete \
               (bodies over limits.body_buffer_bytes are spilled to disk)";
    fit_budget(ctx, written, &mut limits.disk_budget, "disk_budget", (largest_spill, "max_body_bytes"), why)
}

/// Checks the budget `limits.<key>` against `need`, the bytes one connection may have
/// to hold in it (the size of the key `need_key`): refused, naming both keys and
/// `why`, when the file set it lower; raised to `need` when the file left it out.
fn fit_budget(
    ctx: &Ctx,
    written: &Written,
    budget: &mut u64,
    key: &str,
    (need, need_key): (u64, &str),
    why: &str,
) -> Result<(), Error> {
    match written.span(key) {
        None => *budget = (*budget).max(need),
        Some(span) if *budget < need => {
            let what = format!("({budget}) is below limits.{need_key} ({need}): it must hold at least {why}");
            return Err(ctx.bad(span, &format!("limits.{key}"), what));
        }
        Some(_) => {}
    }
    Ok(())
}

section! {
    /// `[log]` settings.
    pub struct LogConfig in "log" {
        /// Which lines are written: a level (`"info"`) or `target=level` directives
        /// joined by commas, checked at load time (see `log_level.rs`).
        pub level: String = Kind::Text(log_level::check) => "info".to_string();
        /// Line format.
        pub format: LogFormat = Kind::Choice(LogFormat::NAMES) => LogFormat::Text;
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (`"text"`).
    Text,
    /// One JSON object per line (`"json"`).
    Json,
}

named!(LogFormat { Text => "text", Json => "json" });
