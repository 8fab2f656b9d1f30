//! The command line and config errors: a bad file or a busy port gets one message
//! naming the file, the key and the line, exit status 2, and nothing starts.

mod util;

use std::net::TcpListener;
use std::process::{Command, Output};

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
