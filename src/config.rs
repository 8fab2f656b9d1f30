//! Configuration: the TOML file format, its defaults, and its validation.
//!
//! This module owns turning text (a file named with `--config`, or the
//! embedded [`DEFAULT_TOML`]) into a checked [`Config`], and turning a
//! [`Config`] back into TOML for `print-config`. It is pure: it runs once on
//! the main thread at start-up, before any socket is opened or thread
//! started, and holds no state afterwards. Every rejection is a
//! [`config::Error`](Error) whose one-line message names the file, the line
//! and the dotted key (`pool.min_threads`, `listener[1].bind`), because the
//! operator reading it is usually looking at that file in another window.
//!
//! Parsing happens in two steps: serde reads the file into private `Raw*`
//! structs whose fields are all optional and carry their byte span, then
//! [`Config::parse`] applies defaults and every validation rule in one place,
//! using the spans to report line numbers. Listener indexes in key names
//! count from 0, in file order.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::{Spanned, Value};

/// The embedded default configuration, also the documented reference that
/// `spindle print-config` prints verbatim.
pub const DEFAULT_TOML: &str = include_str!("../config/spindle.toml");

/// Names of the built-in HTTP apps a `[listener.apps]` table may mount.
pub const BUILTIN_APPS: &[&str] = &["hello", "echo", "environ", "healthz", "readyz", "metrics", "status", "sleep"];

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[server]`: process-wide behaviour.
    pub server: ServerConfig,
    /// `[pool]`: worker pool sizing.
    pub pool: PoolConfig,
    /// `[limits]`: per-connection and per-request limits.
    pub limits: Limits,
    /// `[log]`: log filter and format.
    pub log: LogConfig,
    /// `[[listener]]`: at least one, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// The file this came from; `None` for the embedded default or text
    /// given to [`Config::parse`].
    pub source: Option<PathBuf>,
}

/// `[server]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// How long a graceful shutdown waits for connections; zero closes at once.
    pub graceful_timeout: Duration,
    /// How long to keep accepting after a shutdown signal.
    pub drain_delay: Duration,
    /// The `Server:` header value; `None` (written `""`) sends none.
    pub server_header: Option<String>,
}

/// The default `pool.min_threads`: the number of CPUs this process may run on (cgroup
/// quotas included), at least 1 and at most the default `max_threads`. A CPU-bound load
/// is served best by one running worker per CPU (measured on 2 CPUs under `wrk -c50` on
/// hello: a floor of 2 gave 1.18x the requests per second of a floor of 4, and 1.3x per
/// CPU-second); a blocking one grows the pool from there (`pool.rs`).
pub fn default_min_threads() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get()).clamp(1, 64)
}

/// `[pool]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Workers kept even when idle; at least 1.
    pub min_threads: usize,
    /// Most workers; at least `min_threads`.
    pub max_threads: usize,
    /// Jobs that may wait for a worker; at least 1.
    pub queue_capacity: usize,
    /// Idle time after which a worker above `min_threads` exits; `None`
    /// (written `"0s"`) means never.
    pub idle_timeout: Option<Duration>,
    /// Longest wait on the run queue: work that waited longer is answered 503
    /// (HTTP) or reset (echo) instead of run; more than zero.
    pub queue_timeout: Duration,
}

/// `[limits]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Open connections across all listeners; at least 1.
    pub max_connections: usize,
    /// Idle time after which an echo connection is closed; `None` means never.
    pub echo_idle_timeout: Option<Duration>,
    /// Idle time between HTTP requests on a keep-alive connection; `None`
    /// means never.
    pub keepalive_timeout: Option<Duration>,
    /// Time to receive a complete request head; more than zero.
    pub header_timeout: Duration,
    /// Time to receive a request body; more than zero.
    pub body_timeout: Duration,
    /// Largest request head in bytes; at least 256.
    pub max_header_bytes: usize,
    /// Most header fields per request; at least 1.
    pub max_headers: usize,
    /// Longest request target in bytes; at least 16.
    pub max_uri_bytes: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: u64,
    /// A request body up to this size is held in memory; a larger one is spilled to
    /// an unnamed temporary file. At least 1024.
    pub body_buffer_bytes: usize,
    /// Slowest average pace, in bytes per second after a 5 s grace, at which a client
    /// may take a streamed response before the connection is closed; 0: no floor.
    pub min_send_rate: usize,
    /// Requests per keep-alive connection; at least 1.
    pub max_requests_per_connection: usize,
}

/// `[log]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive, already checked to parse.
    pub level: String,
    /// Line format.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (`"text"`).
    Text,
    /// One JSON object per line (`"json"`).
    Json,
}

/// One `[[listener]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    /// Label for logs and metrics; unique, non-empty.
    pub name: String,
    /// Address to listen on; unique unless its port is 0.
    pub bind: SocketAddr,
    /// What is spoken on accepted connections.
    pub protocol: Protocol,
    /// `listen(2)` backlog, 1..=65535.
    pub backlog: i32,
    /// Whether to set `SO_REUSEPORT`.
    pub reuse_port: bool,
    /// `(path prefix, built-in app name)` pairs in file order; HTTP only.
    /// Every prefix starts with `/`; every name is in [`BUILTIN_APPS`].
    pub apps: Vec<(String, String)>,
}

/// Listener protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Bytes are sent back as they arrive (`"echo"`).
    Echo,
    /// HTTP/1.1 (`"http"`).
    Http,
}

/// Why a configuration could not be loaded.
#[derive(Debug)]
pub enum Error {
    /// The file could not be read.
    Io {
        /// The file named by the caller.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The text is not valid TOML, or not a valid configuration.
    Invalid {
        /// Where the text came from: a path, or `<default>`.
        origin: String,
        /// 1-based line of the offending key or value, when there is one.
        line: Option<usize>,
        /// Dotted key, e.g. `pool.min_threads` or `listener[1].bind`; empty
        /// when the error is not about one key (a TOML syntax error).
        key: String,
        /// The whole one-line description, usually starting with `key`;
        /// `Display` prefixes it with `origin:line: `.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => {
                write!(f, "{}: cannot read: {source}", path.display())
            }
            Error::Invalid { origin, line: Some(line), message, .. } => write!(f, "{origin}:{line}: {message}"),
            Error::Invalid { origin, line: None, message, .. } => write!(f, "{origin}: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Invalid { .. } => None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            graceful_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            server_header: Some("spindle".to_string()),
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            min_threads: default_min_threads(),
            max_threads: 64,
            queue_capacity: 1024,
            idle_timeout: Some(Duration::from_secs(60)),
            queue_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            echo_idle_timeout: Some(Duration::from_secs(300)),
            keepalive_timeout: Some(Duration::from_secs(15)),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8192,
            max_body_bytes: 16 * 1024 * 1024,
            body_buffer_bytes: 64 * 1024,
            min_send_rate: 240,
            max_requests_per_connection: 1000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".to_string(), format: LogFormat::Text }
    }
}

impl Config {
    /// Reads and parses the file at `path`; errors name `path`.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates `text`; `origin` (a path, or `<default>`) starts
    /// every error message. The result has `source: None`.
    pub fn parse(text: &str, origin: &str) -> Result<Config, Error> {
        let ctx = Ctx { text, origin };
        let raw: RawFile = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;
        ctx.build(raw)
    }

    /// The configuration in [`DEFAULT_TOML`].
    pub fn embedded_default() -> Config {
        // Compiled in and covered by a unit test, so failure is a build bug.
        Config::parse(DEFAULT_TOML, "<default>").expect("embedded config/spindle.toml is valid")
    }

    /// The effective configuration as TOML that [`Config::parse`] accepts and
    /// turns back into an equal `Config` (apart from `source`).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let s = &self.server;
        out.push_str("[server]\n");
        kv(&mut out, "graceful_timeout", &quote(&format_duration(s.graceful_timeout)));
        kv(&mut out, "drain_delay", &quote(&format_duration(s.drain_delay)));
        kv(&mut out, "server_header", &quote(s.server_header.as_deref().unwrap_or("")));

        let p = &self.pool;
        out.push_str("\n[pool]\n");
        kv(&mut out, "min_threads", &p.min_threads.to_string());
        kv(&mut out, "max_threads", &p.max_threads.to_string());
        kv(&mut out, "queue_capacity", &p.queue_capacity.to_string());
        kv(&mut out, "idle_timeout", &quote(&format_never(p.idle_timeout)));
        kv(&mut out, "queue_timeout", &quote(&format_duration(p.queue_timeout)));

        let l = &self.limits;
        out.push_str("\n[limits]\n");
        kv(&mut out, "max_connections", &l.max_connections.to_string());
        kv(&mut out, "echo_idle_timeout", &quote(&format_never(l.echo_idle_timeout)));
        kv(&mut out, "keepalive_timeout", &quote(&format_never(l.keepalive_timeout)));
        kv(&mut out, "header_timeout", &quote(&format_duration(l.header_timeout)));
        kv(&mut out, "body_timeout", &quote(&format_duration(l.body_timeout)));
        kv(&mut out, "max_header_bytes", &format_size(l.max_header_bytes as u64));
        kv(&mut out, "max_headers", &l.max_headers.to_string());
        kv(&mut out, "max_uri_bytes", &format_size(l.max_uri_bytes as u64));
        kv(&mut out, "max_body_bytes", &format_size(l.max_body_bytes));
        kv(&mut out, "body_buffer_bytes", &format_size(l.body_buffer_bytes as u64));
        kv(&mut out, "min_send_rate", &l.min_send_rate.to_string());
        kv(&mut out, "max_requests_per_connection", &l.max_requests_per_connection.to_string());

        out.push_str("\n[log]\n");
        kv(&mut out, "level", &quote(&self.log.level));
        let format = match self.log.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        kv(&mut out, "format", &quote(format));

        for listener in &self.listeners {
            out.push_str("\n[[listener]]\n");
            kv(&mut out, "name", &quote(&listener.name));
            kv(&mut out, "bind", &quote(&listener.bind.to_string()));
            let protocol = match listener.protocol {
                Protocol::Echo => "echo",
                Protocol::Http => "http",
            };
            kv(&mut out, "protocol", &quote(protocol));
            kv(&mut out, "backlog", &listener.backlog.to_string());
            kv(&mut out, "reuse_port", &listener.reuse_port.to_string());
            if !listener.apps.is_empty() {
                // `[listener.apps]` after `[[listener]]` belongs to that
                // (the last) listener, so file order keeps them paired.
                out.push_str("\n[listener.apps]\n");
                for (prefix, app) in &listener.apps {
                    kv(&mut out, &quote(prefix), &quote(app));
                }
            }
        }
        out
    }
}

fn kv(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str(" = ");
    out.push_str(value);
    out.push('\n');
}

/// A TOML string literal (also usable as a quoted key), escaped by toml itself.
fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn format_never(d: Option<Duration>) -> String {
    format_duration(d.unwrap_or(Duration::ZERO))
}

/// The shortest exact spelling among s, ms, us and ns.
fn format_duration(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        format!("{}s", d.as_secs())
    } else if nanos % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else if nanos % 1_000 == 0 {
        format!("{}us", d.as_micros())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

/// A size as a TOML value: a binary-unit string when exact, else an integer.
fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (factor, unit) in UNITS {
        if bytes != 0 && bytes % factor == 0 {
            return quote(&format!("{}{unit}", bytes / factor));
        }
    }
    // TOML integers are i64; sizes above that cannot be written as one.
    match i64::try_from(bytes) {
        Ok(n) => n.to_string(),
        Err(_) => quote(&format!("{bytes}B")),
    }
}

/// Parses `"30s"`, `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`, `"0s"` (units ns, us,
/// ms, s, m, h; optional space before the unit). Exact: `"0.1s"` is 100ms,
/// with no float rounding.
/// The longest duration a config may give.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = s.split_at(split);
    let unit_nanos: u128 = match unit.trim_start() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        _ => return None,
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || (number.contains('.') && !digits(frac)) || frac.len() > 18 {
        return None;
    }
    let mut total = int.parse::<u128>().ok()?.checked_mul(unit_nanos)?;
    if !frac.is_empty() {
        let scale = 10u128.pow(u32::try_from(frac.len()).ok()?);
        total = total.checked_add(frac.parse::<u128>().ok()? * unit_nanos / scale)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Parses `"16384"`, `"512B"`, `"16KiB"`, `"1MiB"`, `"1GiB"` (optional space
/// before the unit). Decimal units like `"16KB"` are refused rather than
/// guessed at, since half the world reads them as 1000 and half as 1024.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let factor: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    if number.is_empty() {
        return None;
    }
    number.parse::<u64>().ok()?.checked_mul(factor)
}

// ---------------------------------------------------------------------------
// Raw file shape: what serde reads, before defaults and validation.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    server: Option<RawServer>,
    pool: Option<RawPool>,
    limits: Option<RawLimits>,
    log: Option<RawLog>,
    listener: Option<Spanned<Vec<Spanned<RawListener>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    graceful_timeout: Option<Spanned<Value>>,
    drain_delay: Option<Spanned<Value>>,
    server_header: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    min_threads: Option<Spanned<i64>>,
    max_threads: Option<Spanned<i64>>,
    queue_capacity: Option<Spanned<i64>>,
    idle_timeout: Option<Spanned<Value>>,
    queue_timeout: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<Spanned<i64>>,
    echo_idle_timeout: Option<Spanned<Value>>,
    keepalive_timeout: Option<Spanned<Value>>,
    header_timeout: Option<Spanned<Value>>,
    body_timeout: Option<Spanned<Value>>,
    max_header_bytes: Option<Spanned<Value>>,
    max_headers: Option<Spanned<i64>>,
    max_uri_bytes: Option<Spanned<Value>>,
    max_body_bytes: Option<Spanned<Value>>,
    body_buffer_bytes: Option<Spanned<Value>>,
    min_send_rate: Option<Spanned<i64>>,
    max_requests_per_connection: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    name: Option<Spanned<String>>,
    bind: Option<Spanned<String>>,
    protocol: Option<Spanned<String>>,
    backlog: Option<Spanned<i64>>,
    reuse_port: Option<Spanned<bool>>,
    apps: Option<Spanned<RawApps>>,
}

/// `[listener.apps]` in file order (a map type would sort it).
struct RawApps(Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for RawApps {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AppsVisitor;
        impl<'de> Visitor<'de> for AppsVisitor {
            type Value = RawApps;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of path prefix = app name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawApps, A::Error> {
                let mut apps: Vec<(Spanned<String>, Spanned<String>)> = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    apps.push(entry);
                }
                // toml hands a table over sorted by key, not in file order;
                // the key spans put it back.
                apps.sort_by_key(|(prefix, _)| prefix.span().start);
                Ok(RawApps(apps))
            }
        }
        deserializer.deserialize_map(AppsVisitor)
    }
}

// ---------------------------------------------------------------------------
// Validation: raw file + spans -> Config, or an error naming key and line.

struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Ctx<'_> {
    /// 1-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn err(&self, span: Option<Range<usize>>, key: &str, message: String) -> Error {
        Error::Invalid {
            origin: self.origin.to_string(),
            line: span.map(|s| self.line_of(s.start)),
            key: key.to_string(),
            message,
        }
    }

    /// `key` was given but is wrong: "`key` `what`" at the value's line.
    fn bad<T>(&self, v: &Spanned<T>, key: &str, what: impl fmt::Display) -> Error {
        self.err(Some(v.span()), key, format!("{key} {what}"))
    }

    /// A serde/toml error, rewritten onto one line with the dotted key
    /// recovered from the text around its span.
    fn toml_error(&self, e: &toml::de::Error) -> Error {
        // Our raw counts are i64 only to report negatives ourselves.
        let message = e.message().trim().replace('\n', "; ").replace("expected i64", "expected an integer");
        let key = e.span().map(|span| key_at(self.text, span.start)).unwrap_or_default();
        let message = if key.is_empty() { message } else { format!("{key}: {message}") };
        self.err(e.span(), &key, message)
    }

    fn duration(&self, v: &Spanned<Value>, key: &str) -> Result<Duration, Error> {
        match v.get_ref() {
            Value::String(s) => match parse_duration(s) {
                // Deadlines are `Instant + duration`: an absurd value would overflow
                // there (a panic on the acceptor thread), so it is refused here.
                Some(d) if d > MAX_DURATION => Err(self.err(
                    Some(v.span()),
                    key,
                    format!("{key}: {s:?} is too long (at most 365 days; \"0s\" means never where allowed)"),
                )),
                Some(d) => Ok(d),
                None => Err(self.err(
                    Some(v.span()),
                    key,
                    format!("{key}: invalid duration {s:?} (use e.g. \"30s\" or \"250ms\")"),
                )),
            },
            Value::Integer(n) => Err(self.err(
                Some(v.span()),
                key,
                format!("{key}: a duration needs a unit: write \"{n}s\" or \"{n}ms\", not {n}"),
            )),
            other => Err(self.err(
                Some(v.span()),
                key,
                format!("{key}: expected a duration string such as \"30s\", found {}", other.type_str()),
            )),
        }
    }

    fn opt_duration(&self, v: &Option<Spanned<Value>>, key: &str, default: Duration) -> Result<Duration, Error> {
        v.as_ref().map_or(Ok(default), |v| self.duration(v, key))
    }

    /// A duration where `"0s"` means never (`None`).
    fn never_duration(
        &self,
        v: &Option<Spanned<Value>>,
        key: &str,
        default: Option<Duration>,
    ) -> Result<Option<Duration>, Error> {
        match v {
            None => Ok(default),
            Some(v) => Ok(Some(self.duration(v, key)?).filter(|d| !d.is_zero())),
        }
    }

    /// A duration that must be more than zero.
    fn positive_duration(&self, v: &Option<Spanned<Value>>, key: &str, default: Duration) -> Result<Duration, Error> {
        let d = self.opt_duration(v, key, default)?;
        match v {
            Some(v) if d.is_zero() => Err(self.bad(v, key, "must be more than 0s")),
            _ => Ok(d),
        }
    }

    fn size(&self, v: &Spanned<Value>, key: &str) -> Result<u64, Error> {
        let hint = "(use a byte count, or e.g. \"16KiB\"; units: B, KiB, MiB, GiB)";
        match v.get_ref() {
            Value::Integer(n) => {
                u64::try_from(*n).map_err(|_| self.err(Some(v.span()), key, format!("{key}: size {n} is negative")))
            }
            Value::String(s) => {
                parse_size(s).ok_or_else(|| self.err(Some(v.span()), key, format!("{key}: invalid size {s:?} {hint}")))
            }
            other => {
                Err(self.err(Some(v.span()), key, format!("{key}: expected a size, found {} {hint}", other.type_str())))
            }
        }
    }

    /// A size of at least `min` bytes that fits in `usize`.
    fn usize_size(&self, v: &Option<Spanned<Value>>, key: &str, default: usize, min: usize) -> Result<usize, Error> {
        let Some(v) = v else { return Ok(default) };
        let n = self.size(v, key)?;
        let n = usize::try_from(n).map_err(|_| self.bad(v, key, format_args!("({n}) is too large")))?;
        if n < min {
            return Err(self.bad(v, key, format_args!("({n}) must be at least {min}")));
        }
        Ok(n)
    }

    /// A count of at least `min`.
    fn count(&self, v: &Option<Spanned<i64>>, key: &str, default: usize, min: usize) -> Result<usize, Error> {
        let Some(v) = v else { return Ok(default) };
        let n = *v.get_ref();
        match usize::try_from(n) {
            Ok(n) if n >= min => Ok(n),
            _ => Err(self.bad(v, key, format_args!("({n}) must be at least {min}"))),
        }
    }

    fn build(&self, raw: RawFile) -> Result<Config, Error> {
        let server = match &raw.server {
            None => ServerConfig::default(),
            Some(r) => self.server(r)?,
        };
        let pool = match &raw.pool {
            None => PoolConfig::default(),
            Some(r) => self.pool(r)?,
        };
        let limits = match &raw.limits {
            None => Limits::default(),
            Some(r) => self.limits(r)?,
        };
        let log = match &raw.log {
            None => LogConfig::default(),
            Some(r) => self.log(r)?,
        };
        let listeners = self.listeners(raw.listener.as_ref())?;
        Ok(Config { server, pool, limits, log, listeners, source: None })
    }

    fn server(&self, r: &RawServer) -> Result<ServerConfig, Error> {
        let d = ServerConfig::default();
        let server_header = match &r.server_header {
            None => d.server_header,
            Some(v) if v.get_ref().is_empty() => None,
            Some(v) => {
                // A header value may not hold CR, LF or other controls
                // (RFC 9110 §5.5); letting one through would let the config
                // inject headers into every response.
                let s = v.get_ref();
                if s.chars().any(|c| c.is_control() && c != '\t') {
                    return Err(self.bad(v, "server.server_header", "must not contain control characters"));
                }
                Some(s.clone())
            }
        };
        Ok(ServerConfig {
            graceful_timeout: self.opt_duration(&r.graceful_timeout, "server.graceful_timeout", d.graceful_timeout)?,
            drain_delay: self.opt_duration(&r.drain_delay, "server.drain_delay", d.drain_delay)?,
            server_header,
        })
    }

    fn pool(&self, r: &RawPool) -> Result<PoolConfig, Error> {
        let d = PoolConfig::default();
        let max_threads = self.count(&r.max_threads, "pool.max_threads", d.max_threads, 1)?;
        // Unset, the minimum is the CPU count, capped by a maximum the operator wrote.
        let min_threads = match &r.min_threads {
            None => d.min_threads.min(max_threads),
            Some(_) => self.count(&r.min_threads, "pool.min_threads", d.min_threads, 1)?,
        };
        if min_threads > max_threads {
            // Only a written minimum can exceed the maximum (an unset one is capped).
            if let Some(v) = &r.min_threads {
                return Err(self.bad(
                    v,
                    "pool.min_threads",
                    format_args!("({min_threads}) is above pool.max_threads ({max_threads})"),
                ));
            }
        }
        Ok(PoolConfig {
            min_threads,
            max_threads,
            queue_capacity: self.count(&r.queue_capacity, "pool.queue_capacity", d.queue_capacity, 1)?,
            idle_timeout: self.never_duration(&r.idle_timeout, "pool.idle_timeout", d.idle_timeout)?,
            queue_timeout: self.positive_duration(&r.queue_timeout, "pool.queue_timeout", d.queue_timeout)?,
        })
    }

    fn limits(&self, r: &RawLimits) -> Result<Limits, Error> {
        let d = Limits::default();
        let max_body_bytes = match &r.max_body_bytes {
            None => d.max_body_bytes,
            Some(v) => self.size(v, "limits.max_body_bytes")?,
        };
        Ok(Limits {
            max_connections: self.count(&r.max_connections, "limits.max_connections", d.max_connections, 1)?,
            echo_idle_timeout: self.never_duration(
                &r.echo_idle_timeout,
                "limits.echo_idle_timeout",
                d.echo_idle_timeout,
            )?,
            keepalive_timeout: self.never_duration(
                &r.keepalive_timeout,
                "limits.keepalive_timeout",
                d.keepalive_timeout,
            )?,
            header_timeout: self.positive_duration(&r.header_timeout, "limits.header_timeout", d.header_timeout)?,
            body_timeout: self.positive_duration(&r.body_timeout, "limits.body_timeout", d.body_timeout)?,
            // 256 bytes: below that not even a request line with a few
            // ordinary headers fits, so the server could answer nothing.
            max_header_bytes: self.usize_size(
                &r.max_header_bytes,
                "limits.max_header_bytes",
                d.max_header_bytes,
                256,
            )?,
            max_headers: self.count(&r.max_headers, "limits.max_headers", d.max_headers, 1)?,
            max_uri_bytes: self.usize_size(&r.max_uri_bytes, "limits.max_uri_bytes", d.max_uri_bytes, 16)?,
            max_body_bytes,
            body_buffer_bytes: self.usize_size(
                &r.body_buffer_bytes,
                "limits.body_buffer_bytes",
                d.body_buffer_bytes,
                1024,
            )?,
            min_send_rate: self.count(&r.min_send_rate, "limits.min_send_rate", d.min_send_rate, 0)?,
            max_requests_per_connection: self.count(
                &r.max_requests_per_connection,
                "limits.max_requests_per_connection",
                d.max_requests_per_connection,
                1,
            )?,
        })
    }

    fn log(&self, r: &RawLog) -> Result<LogConfig, Error> {
        let d = LogConfig::default();
        let level = match &r.level {
            None => d.level,
            Some(v) => {
                if let Err(e) = tracing_subscriber::EnvFilter::try_new(v.get_ref()) {
                    let e = e.to_string().replace('\n', "; ");
                    return Err(self.bad(v, "log.level", format_args!("{:?} is not a valid filter: {e}", v.get_ref())));
                }
                v.get_ref().clone()
            }
        };
        let format = match &r.format {
            None => d.format,
            Some(v) => match v.get_ref().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(self.bad(v, "log.format", format_args!("{other:?} is not \"text\" or \"json\"")));
                }
            },
        };
        Ok(LogConfig { level, format })
    }

    fn listeners(&self, raw: Option<&Spanned<Vec<Spanned<RawListener>>>>) -> Result<Vec<ListenerConfig>, Error> {
        let raw = match raw {
            Some(list) if !list.get_ref().is_empty() => list,
            other => {
                let span = other.map(|l| l.span());
                return Err(self.err(span, "listener", "at least one [[listener]] is required".to_string()));
            }
        };
        let mut out: Vec<ListenerConfig> = Vec::new();
        // (name line, bind line) of each accepted listener, for duplicate messages.
        let mut lines: Vec<(usize, usize)> = Vec::new();
        for (i, table) in raw.get_ref().iter().enumerate() {
            let r = table.get_ref();
            let key = |field: &str| format!("listener[{i}].{field}");
            let required = |field: &str| {
                let k = key(field);
                self.err(Some(table.span()), &k, format!("{k} is required"))
            };

            let name_v = r.name.as_ref().ok_or_else(|| required("name"))?;
            let name = name_v.get_ref().clone();
            if name.trim().is_empty() {
                return Err(self.bad(name_v, &key("name"), "must not be empty"));
            }
            if let Some(j) = out.iter().position(|l| l.name == name) {
                return Err(self.bad(
                    name_v,
                    &key("name"),
                    format_args!("{name:?} is already used by listener[{j}] (line {})", lines[j].0),
                ));
            }

            let bind_v = r.bind.as_ref().ok_or_else(|| required("bind"))?;
            // Host names are refused rather than resolved: loading a config
            // should not depend on DNS, and a name can resolve to several
            // addresses where a listener binds one.
            let bind: SocketAddr = bind_v.get_ref().trim().parse().map_err(|_| {
                self.bad(
                    bind_v,
                    &key("bind"),
                    format_args!(
                        "{:?} is not an ip:port address (e.g. \"127.0.0.1:8080\" or \"[::]:8080\")",
                        bind_v.get_ref()
                    ),
                )
            })?;
            // Port 0 asks the kernel for any free port, so it may repeat.
            if bind.port() != 0 {
                if let Some(j) = out.iter().position(|l| l.bind == bind) {
                    return Err(self.bad(
                        bind_v,
                        &key("bind"),
                        format_args!("({bind}) is already used by listener[{j}] (line {})", lines[j].1),
                    ));
                }
            }

            let protocol_v = r.protocol.as_ref().ok_or_else(|| required("protocol"))?;
            let protocol = match protocol_v.get_ref().as_str() {
                "echo" => Protocol::Echo,
                "http" => Protocol::Http,
                other => {
                    return Err(self.bad(
                        protocol_v,
                        &key("protocol"),
                        format_args!("{other:?} is not \"echo\" or \"http\""),
                    ));
                }
            };

            let backlog = match &r.backlog {
                None => 1024,
                Some(v) => match i32::try_from(*v.get_ref()) {
                    Ok(n) if (1..=65535).contains(&n) => n,
                    _ => {
                        return Err(self.bad(
                            v,
                            &key("backlog"),
                            format_args!("({}) must be from 1 to 65535", v.get_ref()),
                        ));
                    }
                },
            };

            let mut apps = Vec::new();
            if let Some(raw_apps) = &r.apps {
                if protocol != Protocol::Http {
                    return Err(self.bad(
                        raw_apps,
                        &key("apps"),
                        "is only allowed on a listener with protocol = \"http\"",
                    ));
                }
                for (prefix, app) in &raw_apps.get_ref().0 {
                    let app_key = format!("{}.{:?}", key("apps"), prefix.get_ref());
                    // Request paths never contain these once the target is
                    // split, so such a prefix could never match.
                    let p = prefix.get_ref();
                    if !p.starts_with('/')
                        || p.chars().any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
                    {
                        return Err(self.bad(
                            prefix,
                            &app_key,
                            "is not a path prefix: it must start with \"/\" and hold no spaces, '?' or '#'",
                        ));
                    }
                    if !BUILTIN_APPS.contains(&app.get_ref().as_str()) {
                        return Err(self.bad(
                            app,
                            &app_key,
                            format_args!(
                                "names unknown app {:?} (built-in apps: {})",
                                app.get_ref(),
                                BUILTIN_APPS.join(", ")
                            ),
                        ));
                    }
                    apps.push((p.clone(), app.get_ref().clone()));
                }
            }

            lines.push((self.line_of(name_v.span().start), self.line_of(bind_v.span().start)));
            out.push(ListenerConfig {
                name,
                bind,
                protocol,
                backlog,
                reuse_port: r.reuse_port.as_ref().is_some_and(|v| *v.get_ref()),
                apps,
            });
        }
        Ok(out)
    }
}

/// The dotted key for byte `offset` of `text`, recovered from the text: the
/// nearest table header above (`[pool]`, `[[listener]]` as `listener[i]`)
/// joined with the key on the offset's own line. Best effort: serde errors
/// carry a span but not a path; an empty string means "no idea".
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let lines: Vec<&str> = text.split('\n').collect();
    let line_index = text.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count();
    let Some(line) = lines.get(line_index) else {
        return String::new();
    };

    // Header of the table the line is in, and which [[listener]] it is.
    let mut header: Option<String> = None;
    let mut listener_index: Option<usize> = None;
    for (i, l) in lines[..=line_index].iter().enumerate() {
        if let Some(h) = header_name(l) {
            if h.0 && h.1 == "listener" {
                listener_index = Some(listener_index.map_or(0, |n| n + 1));
            }
            if i < line_index || (i == line_index && !line.contains('=')) {
                header = Some(h.1);
            }
        }
    }
    let path = |name: &str| -> String {
        match (name.strip_prefix("listener"), listener_index) {
            (Some(rest), Some(n)) if rest.is_empty() || rest.starts_with('.') => {
                format!("listener[{n}]{rest}")
            }
            _ => name.to_string(),
        }
    };

    // The error is on a header line itself (e.g. an unknown table).
    if header_name(line).is_some() {
        return header.map(|h| path(&h)).unwrap_or_default();
    }
    let key = line.split_once('=').map(|(k, _)| k.trim()).unwrap_or("");
    if key.is_empty() || key.starts_with('#') {
        return header.map(|h| path(&h)).unwrap_or_default();
    }
    if !is_toml_key(key) {
        // A syntax error on a line that holds no key: naming one would mislead.
        return String::new();
    }
    match header {
        Some(h) => format!("{}.{key}", path(&h)),
        None => path(key),
    }
}

/// `(is_array_of_tables, name)` when `line` is a `[table]` or `[[table]]` header.
fn header_name(line: &str) -> Option<(bool, String)> {
    let t = line.trim();
    let t = t.split_once('#').map_or(t, |(before, _)| before).trim_end();
    if let Some(inner) = t.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
        return Some((true, normalize_key(inner)));
    }
    let inner = t.strip_prefix('[')?.strip_suffix(']')?;
    Some((false, normalize_key(inner)))
}

/// Whether `key` is a plausible TOML key: dotted bare or quoted parts.
fn is_toml_key(key: &str) -> bool {
    let quoted = |p: &str| {
        p.len() >= 2 && ((p.starts_with('"') && p.ends_with('"')) || (p.starts_with('\'') && p.ends_with('\'')))
    };
    let bare = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    // Quoted parts may hold dots; a single quoted key is the common case here.
    quoted(key) || key.split('.').map(str::trim).all(|p| bare(p) || quoted(p))
}

fn normalize_key(key: &str) -> String {
    key.split('.').map(str::trim).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid file, to which a case appends or prepends.
    const LISTENER: &str = "[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:0\"\nprotocol = \"echo\"\n";

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, "x.toml")
    }

    #[test]
    fn embedded_default_parses_with_echo_and_every_app_on_http() {
        let c = Config::embedded_default();
        assert_eq!(c.source, None);
        assert_eq!(c.server, ServerConfig::default());
        assert_eq!(c.pool, PoolConfig::default());
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.log, LogConfig::default());
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(
            c.listeners[0],
            ListenerConfig {
                name: "echo".into(),
                bind: "127.0.0.1:7007".parse().unwrap(),
                protocol: Protocol::Echo,
                backlog: 1024,
                reuse_port: false,
                apps: vec![],
            }
        );
        let http = &c.listeners[1];
        assert_eq!(http.protocol, Protocol::Http);
        assert_eq!(http.bind, "127.0.0.1:8080".parse().unwrap());
        let names: Vec<&str> = http.apps.iter().map(|(_, a)| a.as_str()).collect();
        // Every built-in app but `sleep` (a benchmarking tool, not mounted by default).
        assert_eq!(names, BUILTIN_APPS.iter().copied().filter(|a| *a != "sleep").collect::<Vec<_>>());
        assert_eq!(http.apps[0], ("/".to_string(), "hello".to_string()));
    }

    #[test]
    fn to_toml_round_trips() {
        let custom = r#"
[server]
graceful_timeout = "0s"
drain_delay = "1.5s"
server_header = ""
[pool]
min_threads = 2
max_threads = 2
queue_capacity = 7
idle_timeout = "0s"
[limits]
max_connections = 3
echo_idle_timeout = "0s"
keepalive_timeout = "250ms"
header_timeout = "2m"
body_timeout = "1h"
max_header_bytes = "1MiB"
max_headers = 5
max_uri_bytes = 1000
max_body_bytes = 12345678901
max_requests_per_connection = 1
[log]
level = "info,spindle=debug"
format = "json"
[[listener]]
name = "e \"quoted\""
bind = "[::1]:7007"
protocol = "echo"
backlog = 1
reuse_port = true
[[listener]]
name = "h"
bind = "0.0.0.0:8080"
protocol = "http"
[listener.apps]
"/z" = "status"
"/" = "hello"
"#;
        for (name, config) in [("default", Config::embedded_default()), ("custom", parse(custom).unwrap())] {
            let text = config.to_toml();
            let back = Config::parse(&text, "<to_toml>").unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            assert_eq!(back, config, "{name}:\n{text}");
        }
        let c = parse(custom).unwrap();
        assert_eq!(c.server.server_header, None);
        assert_eq!(c.pool.idle_timeout, None);
        assert_eq!(c.limits.echo_idle_timeout, None);
        assert_eq!(c.limits.max_header_bytes, 1 << 20);
        assert_eq!(c.log.format, LogFormat::Json);
        // Apps keep file order, not sorted order.
        assert_eq!(c.listeners[1].apps[0].0, "/z");
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("250ms", Some(ms(250))),
            ("1.5s", Some(ms(1500))),
            ("0.1s", Some(ms(100))),
            ("2m", Some(ms(120_000))),
            ("1h", Some(ms(3_600_000))),
            ("30s", Some(ms(30_000))),
            ("10 s", Some(ms(10_000))),
            ("0s", Some(Duration::ZERO)),
            ("5us", Some(Duration::from_micros(5))),
            ("7ns", Some(Duration::from_nanos(7))),
            ("30", None),
            ("s", None),
            (".5s", None),
            ("1.s", None),
            ("1.2.3s", None),
            ("-1s", None),
            ("10 parsecs", None),
            ("", None),
        ] {
            assert_eq!(parse_duration(text), want, "{text:?}");
            if let Some(d) = want {
                assert_eq!(parse_duration(&format_duration(d)), want, "format {text:?}");
            }
        }
    }

    #[test]
    fn sizes() {
        for (text, want) in [
            ("16KiB", Some(16384)),
            ("16 KiB", Some(16384)),
            ("1MiB", Some(1 << 20)),
            ("2GiB", Some(2 << 30)),
            ("512B", Some(512)),
            ("4096", Some(4096)),
            ("2KB", None),
            ("-1", None),
            ("1.5MiB", None),
            ("KiB", None),
            ("", None),
        ] {
            assert_eq!(parse_size(text), want, "{text:?}");
        }
        for n in [0u64, 1, 1000, 16384, 16 << 20, 3 << 30, u64::MAX] {
            let v: Value = format_size(n).parse().unwrap();
            let got = match v {
                Value::Integer(i) => i as u64,
                Value::String(s) => parse_size(&s).unwrap(),
                other => panic!("{other:?}"),
            };
            assert_eq!(got, n);
        }
    }

    #[test]
    fn values_in_files() {
        let c = parse(&format!(
            "[limits]\nmax_header_bytes = \"16KiB\"\nheader_timeout = \"250ms\"\nbody_timeout = \"1.5s\"\nkeepalive_timeout = \"2m\"\n{LISTENER}"
        ))
        .unwrap();
        assert_eq!(c.limits.max_header_bytes, 16384);
        assert_eq!(c.limits.header_timeout, Duration::from_millis(250));
        assert_eq!(c.limits.body_timeout, Duration::from_millis(1500));
        assert_eq!(c.limits.keepalive_timeout, Some(Duration::from_secs(120)));
        // Two port-0 listeners are not duplicates.
        let two = format!("{LISTENER}{}", LISTENER.replace("\"a\"", "\"b\""));
        assert_eq!(parse(&two).unwrap().listeners.len(), 2);
        // A listener with only required keys gets the defaults.
        let l = &parse(LISTENER).unwrap().listeners[0];
        assert_eq!((l.backlog, l.reuse_port), (1024, false));
    }

    #[test]
    fn an_unset_min_threads_is_the_cpu_count_capped_by_a_written_max() {
        let c = Config::parse(&format!("[pool]\nmax_threads = 1\n{LISTENER}"), "x.toml").unwrap();
        assert_eq!((c.pool.min_threads, c.pool.max_threads), (1, 1));
        let c = Config::parse(LISTENER, "x.toml").unwrap();
        assert_eq!(c.pool.min_threads, default_min_threads());
        assert!(c.pool.min_threads >= 1 && c.pool.min_threads <= c.pool.max_threads);
    }

    #[test]
    fn bad_files_name_key_and_line() {
        let http = "[[listener]]\nname = \"h\"\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\n[listener.apps]\n";
        // (case, text, expected line, expected key, text the message must hold)
        let cases: &[(&str, String, usize, &str, &str)] = &[
            (
                "unknown key",
                format!("[pool]\nmin_threads = 1\nmni_threads = 2\n{LISTENER}"),
                3,
                "pool.mni_threads",
                "unknown field `mni_threads`, expected one of",
            ),
            ("unknown table", format!("[serve]\n{LISTENER}"), 1, "serve", "unknown field `serve`"),
            ("unknown listener key", format!("{LISTENER}\nport = 1\n"), 6, "listener[0].port", "unknown field `port`"),
            (
                "wrong type",
                format!("[pool]\nmax_threads = \"8\"\n{LISTENER}"),
                2,
                "pool.max_threads",
                "invalid type: string \"8\", expected an integer",
            ),
            (
                "wrong type listener",
                format!("{LISTENER}reuse_port = 1\n"),
                5,
                "listener[0].reuse_port",
                "invalid type: integer",
            ),
            ("syntax error", format!("[pool\n{LISTENER}"), 1, "", ""),
            ("syntax error on a value", format!("[pool]\nmin_threads = = 4\n{LISTENER}"), 2, "pool.min_threads", ""),
            ("syntax error, no key", format!("[pool]\nthis is not toml\n{LISTENER}"), 2, "pool", "expected `=`"),
            (
                "bad duration",
                format!("[limits]\n\nheader_timeout = \"10 parsecs\"\n{LISTENER}"),
                3,
                "limits.header_timeout",
                "invalid duration \"10 parsecs\" (use e.g. \"30s\" or \"250ms\")",
            ),
            (
                // Regression: accepted, then overflowed Instant + Duration on the
                // acceptor thread at the first connection (a panic).
                "absurd duration",
                format!("[limits]\nheader_timeout = \"10000000000000000000s\"\n{LISTENER}"),
                2,
                "limits.header_timeout",
                "is too long (at most 365 days",
            ),
            (
                "integer duration",
                format!("[server]\ngraceful_timeout = 30\n{LISTENER}"),
                2,
                "server.graceful_timeout",
                "write \"30s\"",
            ),
            (
                "zero header timeout",
                format!("[limits]\nheader_timeout = \"0s\"\n{LISTENER}"),
                2,
                "limits.header_timeout",
                "must be more than 0s",
            ),
            (
                "unparsable bind",
                format!("{LISTENER}{}", LISTENER.replace("127.0.0.1:0", "localhost:80").replace("\"a\"", "\"b\"")),
                7,
                "listener[1].bind",
                "\"localhost:80\" is not an ip:port",
            ),
            (
                "missing bind",
                "[[listener]]\nname = \"a\"\nprotocol = \"echo\"\n".to_string(),
                1,
                "listener[0].bind",
                "listener[0].bind is required",
            ),
            (
                "min above max",
                format!("[pool]\nmin_threads = 9\nmax_threads = 2\n{LISTENER}"),
                2,
                "pool.min_threads",
                "pool.min_threads (9) is above pool.max_threads (2)",
            ),
            (
                "zero queue_capacity",
                format!("[pool]\nqueue_capacity = 0\n{LISTENER}"),
                2,
                "pool.queue_capacity",
                "(0) must be at least 1",
            ),
            (
                "zero max_threads",
                format!("[pool]\nmin_threads = 1\nmax_threads = 0\n{LISTENER}"),
                3,
                "pool.max_threads",
                "(0) must be at least 1",
            ),
            (
                "negative count",
                format!("[limits]\nmax_headers = -1\n{LISTENER}"),
                2,
                "limits.max_headers",
                "(-1) must be at least 1",
            ),
            (
                "tiny header bytes",
                format!("[limits]\nmax_header_bytes = \"128B\"\n{LISTENER}"),
                2,
                "limits.max_header_bytes",
                "(128) must be at least 256",
            ),
            (
                "bad protocol",
                LISTENER.replace("\"echo\"", "\"gopher\""),
                4,
                "listener[0].protocol",
                "\"gopher\" is not \"echo\" or \"http\"",
            ),
            (
                "apps on echo",
                format!("{LISTENER}[listener.apps]\n\"/\" = \"hello\"\n"),
                5,
                "listener[0].apps",
                "only allowed on a listener with protocol = \"http\"",
            ),
            (
                "unknown app",
                format!("{http}\"/\" = \"hello\"\n\"/x\" = \"wiki\"\n"),
                7,
                "listener[0].apps.\"/x\"",
                "unknown app \"wiki\" (built-in apps: hello, echo, environ, healthz, readyz, metrics, status, sleep)",
            ),
            (
                "prefix without slash",
                format!("{http}\"x\" = \"hello\"\n"),
                6,
                "listener[0].apps.\"x\"",
                "must start with \"/\"",
            ),
            (
                "duplicate name",
                format!("{LISTENER}{}", LISTENER.replace(":0", ":1")),
                6,
                "listener[1].name",
                "\"a\" is already used by listener[0] (line 2)",
            ),
            (
                "duplicate bind",
                format!("{http}{}", http.replace("\"h\"", "\"i\""))[..].replace("[listener.apps]\n", ""),
                7,
                "listener[1].bind",
                "(127.0.0.1:8080) is already used by listener[0] (line 3)",
            ),
            (
                "bad log level",
                format!("[log]\nlevel = \"info,[[[\"\n{LISTENER}"),
                2,
                "log.level",
                "is not a valid filter",
            ),
            (
                "bad log format",
                format!("[log]\nformat = \"xml\"\n{LISTENER}"),
                2,
                "log.format",
                "\"xml\" is not \"text\" or \"json\"",
            ),
            (
                "bad size string",
                format!("[limits]\nmax_body_bytes = \"16MB\"\n{LISTENER}"),
                2,
                "limits.max_body_bytes",
                "invalid size \"16MB\"",
            ),
            (
                "negative size",
                format!("[limits]\nmax_body_bytes = -5\n{LISTENER}"),
                2,
                "limits.max_body_bytes",
                "size -5 is negative",
            ),
            (
                "control in server_header",
                format!("[server]\nserver_header = \"a\\r\\nX: y\"\n{LISTENER}"),
                2,
                "server.server_header",
                "control characters",
            ),
            (
                "backlog out of range",
                format!("{LISTENER}backlog = 70000\n"),
                5,
                "listener[0].backlog",
                "(70000) must be from 1 to 65535",
            ),
            (
                "empty listener list",
                "# nothing\nlistener = []\n".to_string(),
                2,
                "listener",
                "at least one [[listener]] is required",
            ),
        ];
        for (case, text, line, key, needle) in cases {
            let err = parse(text).err().unwrap_or_else(|| panic!("{case}: parsed"));
            let shown = err.to_string();
            assert!(!shown.contains('\n'), "{case}: not one line: {shown}");
            assert!(shown.starts_with(&format!("x.toml:{line}: ")), "{case}: {shown}");
            assert!(shown.contains(key), "{case}: {shown}");
            assert!(shown.contains(needle), "{case}: {shown}");
            match err {
                Error::Invalid { line: l, key: k, .. } => {
                    assert_eq!((l, k.as_str()), (Some(*line), *key), "{case}: {shown}")
                }
                Error::Io { .. } => panic!("{case}: {shown}"),
            }
        }
    }

    #[test]
    fn missing_listener_has_no_line() {
        let err = parse("[pool]\nmin_threads = 1\n").unwrap_err();
        assert_eq!(err.to_string(), "x.toml: at least one [[listener]] is required");
    }

    #[test]
    fn load_names_the_path() {
        let err = Config::load(Path::new("/nonexistent/spindle.toml")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        let shown = err.to_string();
        assert!(shown.starts_with("/nonexistent/spindle.toml: cannot read: "), "{shown}");
        assert!(shown.ends_with("(os error 2)"), "{shown}");

        let path = std::env::temp_dir().join(format!("spindle-config-test-{}.toml", std::process::id()));
        std::fs::write(&path, format!("[pool]\nmin_threads = 0\n{LISTENER}")).unwrap();
        let result = Config::load(&path);
        let ok = Config::load(&path.with_extension("missing"));
        std::fs::write(&path, LISTENER).unwrap();
        let loaded = Config::load(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            result.unwrap_err().to_string(),
            format!("{}:2: pool.min_threads (0) must be at least 1", path.display())
        );
        assert!(ok.is_err());
        assert_eq!(loaded.unwrap().source.as_deref(), Some(path.as_path()));
    }
}
