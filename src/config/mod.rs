//! Configuration: the TOML file format, its defaults, and its validation.
//!
//! This module owns turning text (a file named with `--config`, or the embedded
//! [`DEFAULT_TOML`]) into a checked [`Config`], and turning a [`Config`] back into
//! TOML for `spindle check`. It is pure: it runs on the main thread at start-up,
//! before any socket is opened or thread started (and on the signal thread when
//! SIGHUP re-reads the file), and holds no state afterwards. Every rejection is a
//! [`config::Error`](Error) whose one-line message names the file, the line and the
//! dotted key (`pool.min_threads`, `listener[1].bind`), because the operator reading
//! it is usually looking at that file in another window.
//!
//! The parts, by concern:
//! - `keys.rs`: what a key accepts (`Kind`), and the one reader and writer every key
//!   goes through;
//! - `sections.rs`: `[server]`, `[pool]`, `[limits]`, `[log]`, each key defined once
//!   (field, type, kind, default);
//! - `listener.rs`: `[[listener]]` tables and the apps an HTTP listener mounts;
//! - `log_level.rs`: the `log.level` filters a file may give;
//! - `units.rs`: durations and sizes; `locate.rs`: spans to lines and keys.
//!
//! The file is parsed into a spanned TOML tree, then each table is read through its
//! key table, defaults filling what the file leaves out. `config/spindle.toml`
//! documents every key; a unit test below fails when the code and that reference
//! disagree.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

mod keys;
mod listener;
mod locate;
mod log_level;
mod sections;
mod units;

pub use crate::net::{Network, NetworkError};
use keys::{in_file_order, unknown, write_keys, Section};
pub use listener::{ListenerConfig, Protocol, ProxyProtocol, BUILTIN_APPS, DEFAULT_APPS};
use locate::Ctx;
pub use sections::{
    default_min_threads, set_default_min_threads, Limits, LogConfig, LogFormat, PoolConfig, ServerConfig,
};
pub use units::fmt_duration;

/// The embedded default configuration, also the documented reference that
/// `spindle print-config` prints verbatim.
pub const DEFAULT_TOML: &str = include_str!("../../config/spindle.toml");

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

/// The top-level tables, in the order `to_toml` writes them.
const TABLES: &[&str] = &[ServerConfig::NAME, PoolConfig::NAME, Limits::NAME, LogConfig::NAME, "listener"];

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
        let root = DeTable::parse(text).map_err(|e| ctx.syntax_error(&e))?;
        let root = root.get_ref();
        for (name, _) in in_file_order(root) {
            if !TABLES.contains(&name.get_ref().as_ref()) {
                return Err(unknown(&ctx, "", name.get_ref(), name.span(), TABLES));
            }
        }
        let table = |name: &str| root.iter().find(|(k, _)| k.get_ref() == name).map(|(_, v)| v);
        Ok(Config {
            server: section(&ctx, table(ServerConfig::NAME))?,
            pool: section(&ctx, table(PoolConfig::NAME))?,
            limits: section(&ctx, table(Limits::NAME))?,
            log: section(&ctx, table(LogConfig::NAME))?,
            listeners: listener::read_listeners(&ctx, table("listener"))?,
            source: None,
        })
    }

    /// The configuration in [`DEFAULT_TOML`].
    pub fn embedded_default() -> Config {
        // Compiled in and covered by a unit test, so failure is a build bug.
        Config::parse(DEFAULT_TOML, "<default>").expect("embedded config/spindle.toml is valid")
    }

    /// The effective configuration as TOML that [`Config::parse`] accepts and
    /// turns back into an equal `Config` (apart from `source`, and an HTTP
    /// listener's default apps, which it writes out).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        write_section(&mut out, &self.server);
        write_section(&mut out, &self.pool);
        write_section(&mut out, &self.limits);
        write_section(&mut out, &self.log);
        for listener in &self.listeners {
            out.push_str("\n[[listener]]\n");
            write_keys(&mut out, listener::KEYS, listener);
            out.push_str(&listener.apps_toml());
        }
        out
    }

    /// What is valid but probably not meant, one line each, for `spindle check` to
    /// print: an HTTP listener with an empty `[listener.apps]` answers every request
    /// 404 (unless a program mounts its own apps on it).
    pub fn warnings(&self) -> Vec<String> {
        let origin = self.source.as_ref().map_or_else(|| "<config>".to_string(), |p| p.display().to_string());
        self.listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| l.protocol == Protocol::Http && l.apps.is_empty() && l.wsgi.is_empty())
            .map(|(i, l)| {
                format!(
                    "{origin}: listener[{i}].apps is empty: nothing is mounted on {:?}, so every request to it \
                     is answered 404 (remove the key to mount the default apps)",
                    l.name
                )
            })
            .collect()
    }
}

/// Reads the `[S::NAME]` table (defaults when the file has none).
fn section<S: Section>(ctx: &Ctx, value: Option<&Spanned<DeValue>>) -> Result<S, Error> {
    let mut s = S::default();
    let written = match value {
        Some(v) => keys::read_table(ctx, S::NAME, S::KEYS, v, &mut s)?,
        None => keys::Written::default(),
    };
    s.finish(ctx, &written)?;
    Ok(s)
}

fn write_section<S: Section>(out: &mut String, s: &S) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!("[{}]\n", S::NAME));
    write_keys(out, S::KEYS, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
                proxy_protocol: ProxyProtocol::Off,
                proxy_trusted: vec![],
                forwarded_trusted: vec![],
                apps: vec![],
                wsgi: vec![],
                default_apps: false,
            }
        );
        let http = &c.listeners[1];
        assert_eq!(http.protocol, Protocol::Http);
        assert_eq!(http.bind, "127.0.0.1:8080".parse().unwrap());
        let names: Vec<&str> = http.apps.iter().map(|(_, a)| a.as_str()).collect();
        // Every built-in app but `sleep` (a benchmarking tool, not mounted by default).
        assert_eq!(names, BUILTIN_APPS.iter().copied().filter(|a| *a != "sleep").collect::<Vec<_>>());
        assert_eq!(http.apps[0], ("/".to_string(), "hello".to_string()));
        // The reference writes out exactly the table a listener without apps gets.
        let defaults: Vec<(&str, &str)> = http.apps.iter().map(|(p, a)| (p.as_str(), a.as_str())).collect();
        assert_eq!(defaults, DEFAULT_APPS);
        assert!(!http.default_apps);
    }

    /// The reference's `key = value` and `# key = value` lines: (table, key, line index).
    fn reference_keys(lines: &[&str]) -> Vec<(String, String, usize)> {
        let mut table = String::new();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let header = line.trim_start_matches('[').trim_end_matches(']');
            if line.starts_with('[') && !header.contains(['[', ']', ' ']) {
                table = header.to_string();
                continue;
            }
            let body = line.strip_prefix("# ").unwrap_or(line);
            if let Some((key, _)) = body.split_once(" = ") {
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    out.push((table.clone(), key.to_string(), i));
                }
            }
        }
        out
    }

    /// Every key the code defines is documented in `config/spindle.toml` — with a
    /// comment paragraph that states its default as the code has it — and the
    /// reference documents no key the code does not define.
    #[test]
    fn the_reference_documents_every_key_and_nothing_else() {
        let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
        let documented = reference_keys(&lines);
        // Defaults worked out at load time, which the reference describes in words.
        const COMPUTED: &[&str] = &["pool.min_threads"];

        fn check<S: Section>(lines: &[&str], documented: &[(String, String, usize)]) -> Vec<&'static str> {
            let defaults = S::default();
            for key in S::KEYS {
                let dotted = format!("{}.{}", S::NAME, key.name);
                let Some((_, _, at)) = documented.iter().find(|(t, k, _)| t == S::NAME && k == key.name) else {
                    panic!("{dotted} is not in config/spindle.toml");
                };
                // The comment paragraph right above the key's line.
                let mut paragraph: Vec<&str> = lines[..*at]
                    .iter()
                    .rev()
                    .take_while(|l| l.starts_with('#') && !l.contains(" = "))
                    .copied()
                    .collect();
                paragraph.reverse();
                let text = paragraph.join(" ");
                assert!(!paragraph.is_empty(), "{dotted} has no comment in config/spindle.toml");
                assert!(text.to_lowercase().contains("default"), "{dotted}: its comment states no default: {text}");
                let default = key.toml(&defaults).unwrap_or_default();
                assert!(
                    COMPUTED.contains(&dotted.as_str()) || text.contains(&default),
                    "{dotted}: its comment does not give the default {default}: {text}"
                );
            }
            S::KEYS.iter().map(|k| k.name).collect()
        }
        let tables = [
            (ServerConfig::NAME, check::<ServerConfig>(&lines, &documented)),
            (PoolConfig::NAME, check::<PoolConfig>(&lines, &documented)),
            (Limits::NAME, check::<Limits>(&lines, &documented)),
            (LogConfig::NAME, check::<LogConfig>(&lines, &documented)),
        ];
        for (table, key, at) in &documented {
            if let Some((_, keys)) = tables.iter().find(|(t, _)| t == table) {
                assert!(keys.contains(&key.as_str()), "config/spindle.toml:{}: {table}.{key} is not a key", at + 1);
            }
        }

        // Listener keys are described in one comment block, an entry per key
        // (`#   name        ...`, continuation lines indented further).
        let start = lines.iter().position(|l| l.starts_with("# Listeners:")).expect("a # Listeners: block");
        let block: Vec<&str> = lines[start..].iter().take_while(|l| l.starts_with('#')).copied().collect();
        let mut entries: Vec<(String, String)> = Vec::new();
        for line in &block {
            match line.strip_prefix("#   ") {
                Some(rest) if !rest.starts_with(' ') => {
                    let name = rest.split_whitespace().next().unwrap_or_default();
                    let name = name.strip_prefix("[listener.").and_then(|n| n.strip_suffix(']')).unwrap_or(name);
                    entries.push((name.to_string(), rest.to_string()));
                }
                Some(rest) => {
                    if let Some(last) = entries.last_mut() {
                        last.1.push(' ');
                        last.1.push_str(rest.trim());
                    }
                }
                None => {}
            }
        }
        let blank = ListenerConfig::blank();
        for key in listener::KEYS {
            let Some((_, text)) = entries.iter().find(|(n, _)| n == key.name) else {
                panic!("listener key {} is not in the # Listeners: block of config/spindle.toml", key.name);
            };
            if key.required {
                assert!(text.contains("Required"), "listener {}: not said to be required: {text}", key.name);
            } else {
                assert!(text.contains("default"), "listener {}: states no default: {text}", key.name);
                if let Some(default) = key.toml(&blank) {
                    assert!(
                        text.contains(&default),
                        "listener {}: does not give the default {default}: {text}",
                        key.name
                    );
                }
            }
        }
        let apps = &entries.iter().find(|(n, _)| n == "apps").expect("apps entry").1;
        for app in BUILTIN_APPS {
            assert!(apps.contains(app), "the [listener.apps] entry does not name the built-in app {app}");
        }
        for (name, _) in &entries {
            assert!(listener::KEYS.iter().any(|k| k.name == name), "# Listeners: documents {name}, not a key");
        }
    }

    /// `config/docker.toml` says it is the embedded default but for two things; hold
    /// it to that.
    #[test]
    fn the_docker_config_is_the_default_but_for_its_binds_and_graceful_timeout() {
        let docker = Config::parse(include_str!("../../config/docker.toml"), "config/docker.toml").unwrap();
        let mut want = Config::embedded_default();
        want.server.graceful_timeout = Duration::from_secs(8);
        for l in &mut want.listeners {
            l.bind.set_ip([0, 0, 0, 0].into());
        }
        assert_eq!(docker, want);
    }

    #[test]
    fn to_toml_round_trips() {
        let custom = r#"
[server]
graceful_timeout = "0s"
drain_delay = "1.5s"
server_header = ""
[pool]
min_threads = 61
max_threads = 62
queue_capacity = 7
idle_timeout = "0s"
queue_timeout = "3s"
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
body_buffer_bytes = "1MiB"
memory_budget = "3MiB"
disk_budget = 23456789012
min_send_rate = 0
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
proxy_protocol = "v2"
proxy_trusted = ["10.0.0.0/8", "::1"]
[[listener]]
name = "h"
bind = "0.0.0.0:8080"
protocol = "http"
forwarded_trusted = ["127.0.0.1/32"]
[listener.apps]
"/z" = "status"
"/" = "hello"
[[listener]]
name = "no apps"
bind = "127.0.0.1:0"
protocol = "http"
[[listener]]
name = "nothing mounted"
bind = "127.0.0.1:0"
protocol = "http"
apps = {}
"#;
        let c = parse(custom).unwrap();
        // The custom file gives every key a value other than its default, so the
        // round trip below exercises every key's reader and writer.
        fn differs<S: Section>(s: &S) {
            let d = S::default();
            for key in S::KEYS {
                assert_ne!(key.toml(s), key.toml(&d), "{}.{} is left at its default", S::NAME, key.name);
            }
        }
        differs(&c.server);
        differs(&c.pool);
        differs(&c.limits);
        differs(&c.log);
        for key in listener::KEYS {
            let blank = ListenerConfig::blank();
            assert!(c.listeners.iter().any(|l| key.toml(l) != key.toml(&blank) || key.name == "apps"), "{}", key.name);
        }
        for (name, config) in [("default", Config::embedded_default()), ("custom", c.clone())] {
            let text = config.to_toml();
            let mut back = Config::parse(&text, "<to_toml>").unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            // `check` writes the default apps out, so they come back as written.
            for (b, l) in back.listeners.iter_mut().zip(&config.listeners) {
                assert!(!b.default_apps);
                b.default_apps = l.default_apps;
            }
            assert_eq!(back, config, "{name}:\n{text}");
        }
        assert!(c.listeners[2].default_apps && c.listeners[2].apps.len() == DEFAULT_APPS.len());
        assert!(!c.listeners[3].default_apps && c.listeners[3].apps.is_empty());
        assert_eq!(c.server.server_header, None);
        assert_eq!(c.pool.idle_timeout, None);
        assert_eq!(c.limits.echo_idle_timeout, None);
        assert_eq!(c.limits.max_header_bytes, 1 << 20);
        assert_eq!(c.log.format, LogFormat::Json);
        // Apps keep file order, not sorted order.
        assert_eq!(c.listeners[1].apps[0].0, "/z");
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
    fn budgets_that_hold_one_connection_are_accepted() {
        // (limits table, memory_budget, disk_budget)
        let cases: &[(&str, u64, u64)] = &[
            ("", 128 << 20, 512 << 20),
            ("memory_budget = \"64KiB\"\ndisk_budget = \"16MiB\"\n", 64 << 10, 16 << 20),
            // Bodies that never spill need no disk at all.
            ("max_body_bytes = \"64KiB\"\ndisk_budget = 0\n", 128 << 20, 0),
            ("max_body_bytes = 0\ndisk_budget = 0\n", 128 << 20, 0),
            ("memory_budget = \"16GiB\"\ndisk_budget = \"1024GiB\"\n", 16 << 30, 1 << 40),
            // Unset budgets are raised to hold one buffer, one largest body.
            ("body_buffer_bytes = \"256MiB\"\nmax_body_bytes = \"1GiB\"\n", 256 << 20, 1 << 30),
            ("max_body_bytes = 12345678901\n", 128 << 20, 12_345_678_901),
        ];
        for (table, memory, disk) in cases {
            let c = parse(&format!("[limits]\n{table}{LISTENER}")).unwrap_or_else(|e| panic!("{table:?}: {e}"));
            assert_eq!((c.limits.memory_budget, c.limits.disk_budget), (*memory, *disk), "{table:?}");
            let again = parse(&c.to_toml()).unwrap();
            assert_eq!(again.limits, c.limits, "{table:?} writes back");
        }
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
                "wsgi app without a callable",
                format!("{http}\"/api\" = {{ wsgi = \"myproject\" }}\n"),
                6,
                "listener[0].apps.\"/api\".wsgi",
                "\"myproject\" is not MODULE:CALLABLE",
            ),
            (
                "unknown app kind",
                format!("{http}\"/api\" = {{ asgi = \"m:app\" }}\n"),
                6,
                "listener[0].apps.\"/api\".asgi",
                "is not a known app kind",
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
                "\"[[[\" in \"info,[[[\" is not a log level",
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
                "apps not a table",
                format!("{}apps = \"hello\"\n", http.replace("[listener.apps]\n", "")),
                5,
                "listener[0].apps",
                "invalid type: string \"hello\", expected a table",
            ),
            (
                "memory budget below one buffer",
                format!("[limits]\nmemory_budget = \"32KiB\"\n{LISTENER}"),
                2,
                "limits.memory_budget",
                "limits.memory_budget (32768) is below limits.body_buffer_bytes (65536): it must hold at least one connection's buffer",
            ),
            (
                "disk budget below the largest body",
                format!("[limits]\ndisk_budget = \"1MiB\"\n{LISTENER}"),
                2,
                "limits.disk_budget",
                "limits.disk_budget (1048576) is below limits.max_body_bytes (16777216): it must hold at least one connection's body",
            ),
            (
                "disk budget below a raised largest body",
                format!("[limits]\nmax_body_bytes = \"1GiB\"\n\ndisk_budget = \"512MiB\"\n{LISTENER}"),
                4,
                "limits.disk_budget",
                "limits.disk_budget (536870912) is below limits.max_body_bytes (1073741824)",
            ),
            (
                "negative budget",
                format!("[limits]\nmemory_budget = -1\n{LISTENER}"),
                2,
                "limits.memory_budget",
                "size -1 is negative",
            ),
            (
                "one [listener] table",
                "[listener]\nname = \"a\"\n".to_string(),
                1,
                "listener",
                "expected an array of tables (write [[listener]])",
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

    /// Prefixes of the reference (a file cut short, as an editor's half-saved buffer
    /// would be) either loads or is refused with one line naming a line of the
    /// text: never a panic, never a line past the end.
    #[test]
    fn any_prefix_of_the_reference_loads_or_is_refused_on_one_line() {
        let lines = DEFAULT_TOML.lines().count();
        // Every line end, and every 7th byte (every byte costs seconds in a debug build).
        let cuts = (0..=DEFAULT_TOML.len())
            .filter(|&i| i % 7 == 0 || DEFAULT_TOML.as_bytes().get(i) == Some(&b'\n'))
            .filter(|&i| DEFAULT_TOML.is_char_boundary(i));
        for end in cuts {
            let text = &DEFAULT_TOML[..end];
            match Config::parse(text, "cut.toml") {
                Ok(c) => assert!(!c.listeners.is_empty()),
                Err(e) => {
                    let shown = e.to_string();
                    assert!(!shown.contains('\n'), "cut at {end}: {shown}");
                    if let Error::Invalid { line: Some(line), .. } = e {
                        assert!(line >= 1 && line <= lines + 1, "cut at {end}: {shown}");
                    }
                }
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

    #[test]
    fn wsgi_apps_are_read_apart_from_built_in_ones_and_written_back() {
        let text = "[[listener]]\nname = \"h\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n[listener.apps]\n\
                    \"/healthz\" = \"healthz\"\n\"/api\" = { wsgi = \"myproject.wsgi:application\" }\n\
                    \"/\" = { wsgi = \"site:create_app()\" }\n";
        let c = parse(text).unwrap();
        let l = &c.listeners[0];
        assert_eq!(l.apps, vec![("/healthz".to_string(), "healthz".to_string())]);
        assert_eq!(
            l.wsgi,
            vec![
                ("/api".to_string(), "myproject.wsgi:application".to_string()),
                ("/".to_string(), "site:create_app()".to_string())
            ]
        );
        assert!(!l.default_apps);
        let again = parse(&c.to_toml()).unwrap();
        assert_eq!(again.listeners[0].wsgi, l.wsgi);
        assert_eq!(again.listeners[0].apps, l.apps);
        // Only WSGI apps: not "nothing mounted".
        let only = parse(&text.replace("\"/healthz\" = \"healthz\"\n", "")).unwrap();
        assert!(only.warnings().is_empty(), "{:?}", only.warnings());
    }
}
