//! The command line and config errors: a bad file or a busy port gets one message
//! naming the file, the key and the line, exit status 2, and nothing starts.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use util::*;

fn spindle(args: &[&str]) -> Output {
    Command::new(bin()).args(args).env_remove("RUST_LOG").output().expect("run spindle")
}

#[test]
fn bad_configs_exit_2_naming_the_file_key_and_line() {
    let cases: &[(&str, &str, &str)] = &[
        // (file, the key named, the line)
        ("[pool]\nmni_threads = 4\n", "pool.mni_threads", ":2:"),
        ("[pool]\nmin_threads = \"four\"\n", "pool.min_threads", ":2:"),
        ("[limits]\nheader_timeout = \"10 parsecs\"\n", "limits.header_timeout", ":2:"),
        ("[limits]\n\nheader_timeout = 10\n", "limits.header_timeout", ":3:"),
        ("[pool]\nmin_threads = 9\nmax_threads = 2\n", "pool.min_threads (9) is above pool.max_threads (2)", ":2:"),
        ("[pool]\nqueue_capacity = 0\n", "pool.queue_capacity", ":2:"),
        (
            "[limits]\nmemory_budget = \"16KiB\"\n",
            "limits.memory_budget (16384) is below limits.body_buffer_bytes (65536)",
            ":2:",
        ),
        ("[limits]\n\ndisk_budget = \"1MiB\"\n", "limits.disk_budget (1048576) is below limits.max_body_bytes", ":3:"),
        (
            "[limits]\nmax_body_bytes = \"1GiB\"\ndisk_budget = \"512MiB\"\n",
            "limits.disk_budget (536870912) is below limits.max_body_bytes (1073741824)",
            ":3:",
        ),
        ("[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:99999\"\nprotocol = \"echo\"\n", "listener[0].bind", ":3:"),
        ("[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:0\"\nprotocol = \"gopher\"\n", "listener[0].protocol", ":4:"),
    ];
    for (text, key, line) in cases {
        let path = write_config(text);
        let path_str = path.to_str().unwrap();
        for args in [vec!["check", "--config", path_str], vec!["--config", path_str]] {
            let out = spindle(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} on {text:?}: {err}");
            assert!(err.contains(key), "{text:?}: message does not name {key}: {err}");
            assert!(
                err.contains(&format!("{path_str}{line}")),
                "{text:?}: message does not give {path_str}{line}: {err}"
            );
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
            assert!(!err.contains("listening"), "nothing started: {err}");
        }
    }
}

#[test]
fn a_port_in_use_exits_2_naming_the_listener_and_address() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let path = write_config(&format!("[[listener]]\nname = \"front\"\nbind = \"{addr}\"\nprotocol = \"echo\"\n"));
    let out = spindle(&["--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"front\"") && err.contains(&addr.to_string()) && err.contains("in use"), "{err}");
    assert!(!err.contains(" ready"), "nothing started: {err}");
}

#[test]
fn print_config_is_the_documented_default_and_check_accepts_it() {
    let out = spindle(&["print-config"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for key in
        ["graceful_timeout", "min_threads", "queue_capacity", "max_connections", "header_timeout", "[[listener]]"]
    {
        assert!(text.contains(key), "print-config lacks {key}");
    }
    let path = write_config(&text);
    let out = spindle(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // `check` prints the effective config, itself a valid config.
    let effective = write_config(&String::from_utf8(out.stdout).unwrap());
    assert!(spindle(&["check", "--config", effective.to_str().unwrap()]).status.success());
}

#[test]
fn version_flag_prints_the_version() {
    let out = spindle(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn json_log_format_writes_one_json_object_per_line_access_lines_included() {
    use std::io::{BufRead, BufReader, Read, Write};
    let path = write_config(
        "[log]\nformat = \"json\"\n[[listener]]\nname = \"http\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n[listener.apps]\n\"/\" = \"hello\"\n",
    );
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut addr = None;
    // Read until the readiness line, collecting the bound address.
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("\"addr\":\"").nth(1) {
            addr = rest.split('"').next().map(str::to_string);
        }
        let ready = line.contains("\"message\":\"ready\"");
        seen.push(line);
        if ready {
            break;
        }
    }
    let addr = addr.expect("a listening line with addr");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    seen.extend(lines.map_while(Result::ok));
    assert_eq!(child.wait().unwrap().code(), Some(0));
    for line in &seen {
        assert!(
            line.starts_with('{') && line.ends_with('}') && line.contains("\"level\":"),
            "not a JSON log line: {line}"
        );
    }
    assert!(
        seen.iter().any(|l| l.contains("\"target\":\"spindle::access\"") && l.contains("\"status\":200")),
        "{seen:#?}"
    );
}

/// Runs spindle with `args` and at most `limit`: a daemon that starts when it should
/// have refused its config is killed (by its PID) and reported, not waited on forever.
fn spindle_within(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run spindle");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!("{args:?} still running after {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("wait")
}

/// `GET path` with `Connection: close`; returns the status code and the whole response.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = connect(addr);
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, response)
}

const HTTP_NO_APPS: &str = "[[listener]]\nname = \"http\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n";

/// Issue 9, item 1: `level = "warning"` passed `check`, then the daemon wrote no log
/// line at all (EnvFilter read the word as a target name).
#[test]
fn a_misspelt_log_level_is_refused_by_check_and_at_start() {
    for (level, hint) in [("warning", "did you mean \"warn\"?"), ("inof", "did you mean \"info\"?"), ("loud", "")] {
        let path = write_config(&format!("[log]\nlevel = \"{level}\"\n{HTTP_NO_APPS}"));
        let path_str = path.to_str().unwrap();
        for args in [vec!["check", "--config", path_str], vec!["--config", path_str]] {
            let out = spindle_within(&args, Duration::from_secs(20));
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} with level {level:?}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
            assert!(err.contains(&format!("{path_str}:2: log.level \"{level}\" is not a log level")), "{err}");
            assert!(err.contains(hint), "{err}");
            assert!(err.contains("trace, debug, info, warn, error, off"), "lists the accepted levels: {err}");
            assert!(!err.contains("listening") && !err.contains("ready"), "nothing started: {err}");
            assert!(out.stdout.is_empty(), "check prints no config for a bad file");
        }
    }
    // Directives with a valid level part are still accepted, any case.
    let path = write_config(&format!("[log]\nlevel = \"WARN,spindle::access=info\"\n{HTTP_NO_APPS}"));
    let out = spindle(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// SIGHUP re-reads the file through the same loader: a misspelt level is refused and
/// the running config, log filter included, is kept.
#[test]
fn sighup_with_a_misspelt_log_level_keeps_logging() {
    let config = |level: &str| format!("[log]\nlevel = \"{level}\"\n{HTTP_NO_APPS}");
    let daemon = Daemon::start(&config("info"));
    std::fs::write(&daemon.config, config("warning")).unwrap();
    daemon.signal("HUP");
    let log = daemon.log.wait_for("keeping the running config", Duration::from_secs(10)).unwrap();
    assert!(log.contains("log.level") && log.contains("is not a log level"), "the error names the key:\n{log}");
    // Still logging at info: the next request gets its access line.
    assert_eq!(get(daemon.addr("http"), "/").0, 200);
    daemon.log.wait_for("spindle::access", Duration::from_secs(10)).unwrap();
}

/// Issue 9, item 6: an HTTP listener without `[listener.apps]` answered 404 to
/// everything, `/healthz` included, so `spindle healthcheck` failed against a healthy
/// server. Without an apps key it now mounts the default table.
#[test]
fn an_http_listener_without_apps_serves_the_default_apps_and_passes_healthcheck() {
    let daemon = Daemon::start(HTTP_NO_APPS);
    let addr = daemon.addr("http");
    let out = spindle_within(&["healthcheck", "--url", &format!("http://{addr}/healthz")], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = get(addr, "/");
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("Hello, World!\n") || body.contains("Hello, World!"), "{body}");
    assert_eq!(get(addr, "/readyz").0, 200);

    // `check` prints the effective table, and no warning.
    let path = write_config(HTTP_NO_APPS);
    let out = spindle(&["check", "--config", path.to_str().unwrap()]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        printed.contains("[listener.apps]\n\"/\" = \"hello\"\n") && printed.contains("\"/healthz\" = \"healthz\""),
        "{printed}"
    );
}

/// An explicitly empty table mounts nothing (for a program that mounts its own
/// apps); `check` accepts it but warns that every request will be answered 404.
#[test]
fn an_empty_apps_table_mounts_nothing_and_check_warns() {
    let text = format!("{HTTP_NO_APPS}apps = {{}}\n");
    let path = write_config(&text);
    let out = spindle(&["check", "--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.starts_with("spindle: warning: ") && err.contains("listener[0].apps is empty"), "{err}");
    assert!(err.contains("404") && err.contains(path.to_str().unwrap()), "{err}");
    let daemon = Daemon::start(&text);
    assert_eq!(get(daemon.addr("http"), "/healthz").0, 404);
}

/// An embedding program that mounts its own apps on a listener the config gave no
/// apps gets only its own: the default table stands in for "nothing configured".
#[test]
fn builder_mounts_replace_the_default_apps() {
    struct Mine;
    impl spindle::App for Mine {
        fn call<'a>(&self, _req: spindle::http::Request<'a>) -> spindle::http::AppResult {
            Ok(spindle::http::Response::text(200, "mine\n"))
        }
    }
    for mount in [false, true] {
        let config = spindle::Config::parse(HTTP_NO_APPS, "<test>").unwrap();
        let builder = spindle::Server::builder(config);
        let builder = if mount { builder.mount("/mine", Mine) } else { builder };
        let server = builder.build().unwrap();
        let addr = server.local_addrs()[0].1;
        let handle = server.handle();
        let runner = std::thread::spawn(move || server.run().unwrap());
        let healthz = get(addr, "/healthz").0;
        let mine = get(addr, "/mine").0;
        handle.stop();
        runner.join().unwrap();
        if mount {
            assert_eq!((healthz, mine), (404, 200), "mounted: only the program's apps");
        } else {
            // "/" = hello answers every path no other prefix claims.
            assert_eq!((healthz, mine), (200, 200), "not mounted: the default apps");
        }
    }
}

/// `{ wsgi = "..." }` apps are spindle-wsgi's: the pure-Rust daemon refuses to run
/// such a config (exit 2, naming the entry and the command to use); `check` accepts it.
#[test]
fn a_wsgi_app_in_the_config_is_refused_by_spindle_with_exit_2() {
    let text = format!("{HTTP_NO_APPS}[listener.apps]\n\"/api\" = {{ wsgi = \"myproject.wsgi:application\" }}\n");
    let path = write_config(&text);
    let out = spindle(&["check", "--no-bind", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"/api\" = { wsgi = \"myproject.wsgi:application\" }"));
    let out = spindle(&["--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("listener[0].apps.\"/api\"") && err.contains("wsgi apps need spindle-wsgi"), "{err}");
    assert!(err.contains(path.to_str().unwrap()), "{err}");
}

/// The byte budgets (issue 16) are in `/metrics` and `/status` from start, and a SIGHUP
/// reload changes their limits in the running process.
#[test]
fn budgets_are_reported_and_a_reload_changes_their_limits() {
    let config = |memory: &str| format!("[limits]\nmemory_budget = \"{memory}\"\n{HTTP_NO_APPS}");
    let daemon = Daemon::start(&config("1MiB"));
    let addr = daemon.addr("http");
    let (status, metrics) = get(addr, "/metrics");
    assert_eq!(status, 200, "{metrics}");
    for line in [
        "# TYPE spindle_budget_used_bytes gauge",
        "spindle_budget_limit_bytes{budget=\"memory\"} 1048576",
        "spindle_budget_limit_bytes{budget=\"disk\"} 536870912",
        "spindle_budget_used_bytes{budget=\"memory\"} 0",
        "spindle_budget_waiting_connections{budget=\"disk\"} 0",
        "# TYPE spindle_budget_waits_total counter",
        "spindle_budget_waits_total{budget=\"memory\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    let (_, status) = get(addr, "/status");
    assert!(
        status.contains("\"budgets\":{\"memory\":{\"used\":0,\"limit\":1048576,\"waiting\":0,\"waits\":0},\"disk\":{"),
        "{status}"
    );

    std::fs::write(&daemon.config, config("2MiB")).unwrap();
    daemon.signal("HUP");
    // The log line comes just before the new config is installed: poll the figure.
    let raised = "spindle_budget_limit_bytes{budget=\"memory\"} 2097152\n";
    let reloaded = daemon.eventually(Duration::from_secs(10), |_| get(addr, "/metrics").1.contains(raised));
    assert!(reloaded, "{}", get(addr, "/metrics").1);
}
