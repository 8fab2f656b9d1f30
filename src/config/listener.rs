//! `[[listener]]` tables: their keys, the apps an HTTP listener mounts, and the rules
//! across listeners (unique names and addresses).
//!
//! A listener's keys are [`Key`] rows like a section's, read by the same code; what
//! is special here is that `name`, `bind` and `protocol` are required, that `apps`
//! is a sub-table of path prefix = built-in app, and what an HTTP listener mounts
//! when the file names no apps: the [`DEFAULT_APPS`] (the embedded default config's
//! own table), because an operator expects a fresh server to answer `/` and the
//! `/healthz` that `spindle healthcheck` asks, as nginx's default server serves its
//! default root. An explicitly empty table mounts nothing (for a program that mounts
//! its own apps with `ServerBuilder::mount`). Listener indexes in key names count
//! from 0, in file order. Pure code, run while a config is loaded.

use std::net::SocketAddr;

use crate::net::Network;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::keys::{count_in, in_file_order, key, named, quote, read_table, Key, Kind, Val};
use super::locate::{describe, did_you_mean, Ctx};
use super::Error;

/// Names of the built-in HTTP apps a `[listener.apps]` table may mount.
pub const BUILTIN_APPS: &[&str] = &["hello", "echo", "environ", "healthz", "readyz", "metrics", "status", "sleep"];

/// What an HTTP listener mounts when its table has no `apps` key: every built-in app
/// but `sleep` (a benchmarking tool), as the embedded default config mounts them.
pub const DEFAULT_APPS: &[(&str, &str)] = &[
    ("/", "hello"),
    ("/echo", "echo"),
    ("/environ", "environ"),
    ("/healthz", "healthz"),
    ("/readyz", "readyz"),
    ("/metrics", "metrics"),
    ("/status", "status"),
];

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
    /// Whether each connection starts with a PROXY protocol header (HAProxy's), and
    /// which versions are accepted.
    pub proxy_protocol: ProxyProtocol,
    /// Networks a PROXY header is accepted from; a connection from elsewhere is
    /// closed unanswered. Required when `proxy_protocol` is on.
    pub proxy_trusted: Vec<Network>,
    /// Networks whose `Forwarded` / `X-Forwarded-For` / `X-Forwarded-Proto` headers
    /// are believed (HTTP); from anyone else they are passed on untouched.
    pub forwarded_trusted: Vec<Network>,
    /// `(path prefix, built-in app name)` pairs in file order; HTTP only.
    /// Every prefix starts with `/`; every name is in [`BUILTIN_APPS`].
    pub apps: Vec<(String, String)>,
    /// `(path prefix, "MODULE:CALLABLE")` of the Python WSGI apps the `apps` table
    /// mounts (`"/api" = { wsgi = "myproject.wsgi:application" }`), in file order.
    /// `spindle-wsgi` serves them; the `spindle` command refuses a config with any.
    pub wsgi: Vec<(String, String)>,
    /// The file gave this HTTP listener no `apps` key, so `apps` is [`DEFAULT_APPS`].
    /// A program that mounts its own apps (`ServerBuilder::mount`) gets only its own
    /// on such a listener: the defaults stand in for "nothing configured".
    pub default_apps: bool,
}

/// Listener protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Bytes are sent back as they arrive (`"echo"`).
    Echo,
    /// HTTP/1.1 (`"http"`).
    Http,
}

named!(Protocol { Echo => "echo", Http => "http" });

/// Listener `proxy_protocol`: whether connections start with a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// No header (`"off"`).
    Off,
    /// Version 1, text (`"v1"`).
    V1,
    /// Version 2, binary (`"v2"`).
    V2,
    /// Either (`"any"`).
    Any,
}

named!(ProxyProtocol { Off => "off", V1 => "v1", V2 => "v2", Any => "any" });

/// Every key of a `[[listener]]` table, in the order `to_toml` writes them.
pub(super) const KEYS: &[Key<ListenerConfig>] = &[
    key!(ListenerConfig, name: Kind::Text(non_empty), required),
    key!(ListenerConfig, bind: Kind::Addr, required),
    key!(ListenerConfig, protocol: Kind::Choice(Protocol::NAMES), required),
    key!(ListenerConfig, backlog: count_in(1, 65535)),
    key!(ListenerConfig, reuse_port: Kind::Bool),
    key!(ListenerConfig, proxy_protocol: Kind::Choice(ProxyProtocol::NAMES)),
    key!(ListenerConfig, proxy_trusted: Kind::Networks),
    key!(ListenerConfig, forwarded_trusted: Kind::Networks),
    key!(ListenerConfig, apps: Kind::Table(read_apps)),
];

impl ListenerConfig {
    /// The defaults of the optional keys; the required ones are placeholders that
    /// [`read_table`] always overwrites (or refuses the table).
    pub(super) fn blank() -> ListenerConfig {
        ListenerConfig {
            name: String::new(),
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            protocol: Protocol::Echo,
            backlog: 1024,
            reuse_port: false,
            proxy_protocol: ProxyProtocol::Off,
            proxy_trusted: Vec::new(),
            forwarded_trusted: Vec::new(),
            apps: Vec::new(),
            wsgi: Vec::new(),
            default_apps: false,
        }
    }

    /// The `[listener.apps]` table as `to_toml` writes it, after the listener's keys.
    pub(super) fn apps_toml(&self) -> String {
        if self.protocol != Protocol::Http {
            return String::new();
        }
        let mut out = String::from("\n");
        if self.default_apps {
            out.push_str("# no apps in the file: the default mount table\n");
        } else if self.apps.is_empty() && self.wsgi.is_empty() {
            out.push_str("# empty: nothing is mounted, every request is answered 404\n");
        }
        // `[listener.apps]` after `[[listener]]` belongs to that (the last)
        // listener, so file order keeps them paired.
        out.push_str("[listener.apps]\n");
        for (prefix, app) in &self.apps {
            super::keys::kv(&mut out, &quote(prefix), &quote(app));
        }
        for (prefix, spec) in &self.wsgi {
            super::keys::kv(&mut out, &quote(prefix), &format!("{{ wsgi = {} }}", quote(spec)));
        }
        out
    }
}

fn non_empty(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("must not be empty".to_string());
    }
    Ok(())
}

/// Reads a `[listener.apps]` table: `"/prefix" = "app"` in file order.
fn read_apps(ctx: &Ctx, key: &str, table: &DeTable) -> Result<Val, Error> {
    let mut apps = Vec::new();
    for (prefix, app) in in_file_order(table) {
        let p = prefix.get_ref();
        let app_key = format!("{key}.{:?}", p.as_ref());
        // Request paths never contain these once the target is split, so such a
        // prefix could never match.
        if !p.starts_with('/') || p.chars().any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
            return Err(ctx.bad(
                prefix.span(),
                &app_key,
                "is not a path prefix: it must start with \"/\" and hold no spaces, '?' or '#'",
            ));
        }
        let name = match app.get_ref() {
            DeValue::String(s) => s.as_ref(),
            // `{ wsgi = "MODULE:CALLABLE" }`: checked here, collected by `wsgi_apps`.
            DeValue::Table(t) => {
                wsgi_spec(ctx, &app_key, app.span(), t)?;
                continue;
            }
            other => {
                return Err(ctx.err(
                    Some(app.span()),
                    &app_key,
                    format!(
                        "{app_key}: invalid type: {}, expected an app name or {{ wsgi = \"MODULE:CALLABLE\" }}",
                        describe(other)
                    ),
                ))
            }
        };
        if !BUILTIN_APPS.contains(&name) {
            let hint = did_you_mean(name, BUILTIN_APPS.iter().copied())
                .map(|n| format!("; did you mean {n:?}?"))
                .unwrap_or_default();
            return Err(ctx.bad(
                app.span(),
                &app_key,
                format_args!("names unknown app {name:?} (built-in apps: {}){hint}", BUILTIN_APPS.join(", ")),
            ));
        }
        apps.push((p.to_string(), name.to_string()));
    }
    Ok(Val::Apps(apps))
}

/// The `MODULE:CALLABLE` of an `apps` entry written `{ wsgi = "..." }`.
fn wsgi_spec(ctx: &Ctx, app_key: &str, span: std::ops::Range<usize>, t: &DeTable) -> Result<String, Error> {
    const SHAPE: &str = "must be { wsgi = \"MODULE:CALLABLE\" }";
    let mut entries = in_file_order(t).into_iter();
    let (Some((key, value)), None) = (entries.next(), entries.next()) else {
        return Err(ctx.bad(span, app_key, SHAPE));
    };
    let key_name = format!("{app_key}.{}", key.get_ref());
    if key.get_ref() != "wsgi" {
        return Err(ctx.bad(key.span(), &key_name, format_args!("is not a known app kind; {SHAPE}")));
    }
    let DeValue::String(spec) = value.get_ref() else {
        return Err(ctx.bad(value.span(), &key_name, SHAPE));
    };
    let valid = spec
        .split_once(':')
        .is_some_and(|(module, name)| !module.is_empty() && !name.is_empty() && !spec.contains(char::is_whitespace));
    if !valid {
        return Err(ctx.bad(
            value.span(),
            &key_name,
            format_args!(
                "{:?} is not MODULE:CALLABLE (as gunicorn takes it: \"myproject.wsgi:application\")",
                spec.as_ref()
            ),
        ));
    }
    Ok(spec.to_string())
}

/// The WSGI entries of a listener table's `apps`, already checked by `read_apps`.
fn wsgi_apps(table: &Spanned<DeValue>) -> Vec<(String, String)> {
    let DeValue::Table(table) = table.get_ref() else { return Vec::new() };
    let Some(DeValue::Table(apps)) = table.get("apps").map(|v| v.get_ref()) else { return Vec::new() };
    in_file_order(apps)
        .into_iter()
        .filter_map(|(prefix, app)| match app.get_ref() {
            DeValue::Table(t) => match t.get("wsgi").map(|v| v.get_ref()) {
                Some(DeValue::String(spec)) => Some((prefix.get_ref().to_string(), spec.to_string())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Reads the `listener` array of tables: at least one, names and addresses unique.
pub(super) fn read_listeners(ctx: &Ctx, value: Option<&Spanned<DeValue>>) -> Result<Vec<ListenerConfig>, Error> {
    const REQUIRED: &str = "at least one [[listener]] is required";
    let Some(value) = value else {
        return Err(ctx.err(None, "listener", REQUIRED.to_string()));
    };
    let tables = match value.get_ref() {
        DeValue::Array(tables) if tables.iter().next().is_some() => tables,
        DeValue::Array(_) => return Err(ctx.err(Some(value.span()), "listener", REQUIRED.to_string())),
        other => {
            return Err(ctx.err(
                Some(value.span()),
                "listener",
                format!(
                    "listener: invalid type: {}, expected an array of tables (write [[listener]])",
                    describe(other)
                ),
            ))
        }
    };
    let mut out: Vec<ListenerConfig> = Vec::new();
    // (name line, bind line) of each accepted listener, for duplicate messages.
    let mut lines: Vec<(usize, usize)> = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let path = format!("listener[{i}]");
        let mut l = ListenerConfig::blank();
        let written = read_table(ctx, &path, KEYS, table, &mut l)?;
        l.wsgi = wsgi_apps(table);
        let span = |name: &str| written.span(name).unwrap_or_else(|| table.span());

        match written.span("apps") {
            Some(apps) if l.protocol != Protocol::Http => {
                return Err(ctx.bad(
                    apps,
                    &format!("{path}.apps"),
                    "is only allowed on a listener with protocol = \"http\"",
                ));
            }
            None if l.protocol == Protocol::Http => {
                l.apps = DEFAULT_APPS.iter().map(|(p, a)| (p.to_string(), a.to_string())).collect();
                l.default_apps = true;
            }
            _ => {}
        }

        // A PROXY header says who the client is; believing it from anyone would let
        // any client choose its own address (the spec's own rule).
        if l.proxy_protocol != ProxyProtocol::Off && l.proxy_trusted.is_empty() {
            return Err(ctx.bad(
                span("proxy_protocol"),
                &format!("{path}.proxy_protocol"),
                format_args!(
                    "(\"{}\") needs proxy_trusted: the networks the proxies connect from, e.g. [\"127.0.0.1/32\"]",
                    l.proxy_protocol
                ),
            ));
        }
        if !l.forwarded_trusted.is_empty() && l.protocol != Protocol::Http {
            return Err(ctx.bad(
                span("forwarded_trusted"),
                &format!("{path}.forwarded_trusted"),
                "is only allowed on a listener with protocol = \"http\" (echo has no headers)",
            ));
        }
        if let Some(j) = out.iter().position(|o| o.name == l.name) {
            return Err(ctx.bad(
                span("name"),
                &format!("{path}.name"),
                format_args!("{:?} is already used by listener[{j}] (line {})", l.name, lines[j].0),
            ));
        }
        // Port 0 asks the kernel for any free port, so it may repeat.
        if l.bind.port() != 0 {
            if let Some(j) = out.iter().position(|o| o.bind == l.bind) {
                return Err(ctx.bad(
                    span("bind"),
                    &format!("{path}.bind"),
                    format_args!("({}) is already used by listener[{j}] (line {})", l.bind, lines[j].1),
                ));
            }
        }
        lines.push((ctx.line_of(span("name").start), ctx.line_of(span("bind").start)));
        out.push(l);
    }
    Ok(out)
}
