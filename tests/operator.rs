//! What an operator meets before the daemon serves anything: `spindle check` binding
//! every listener as `nginx -t` does (a port in use, a privileged port), `--no-bind`
//! and `--quiet` for ExecReload, and a start-up error said once.

mod util;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use util::*;

fn http_on(addr: &str) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"{addr}\"\nprotocol = \"http\"\n[listener.apps]\n\"/\" = \"hello\"\n"
    )
}

fn spindle(args: &[&str], config: &std::path::Path) -> Output {
    Command::new(bin()).args(args).arg("--config").arg(config).env_remove("RUST_LOG").output().expect("run spindle")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn check_fails_with_exit_2_on_a_port_in_use_and_names_the_listener() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let config = write_config(&http_on(&addr));
    let out = spindle(&["check"], &config);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("listener \"web\"") && stderr.contains(&addr), "{stderr}");
    assert!(stderr.contains("--no-bind"), "the hint for a port a running spindle holds: {stderr}");
    assert!(stdout.is_empty(), "a failed check prints no config: {stdout}");
    // --no-bind validates the file only: what ExecReload runs while the daemon holds it.
    let out = spindle(&["check", "--no-bind", "--quiet"], &config);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "--quiet: {:?}", text(&out));
}

#[test]
fn check_releases_the_ports_it_bound() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = write_config(&http_on(&format!("127.0.0.1:{port}")));
    let out = spindle(&["check"], &config);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("[[listener]]"), "check prints the effective config: {stdout}");
    // The daemon can take the port right after a check.
    let daemon = Daemon::start(&http_on(&format!("127.0.0.1:{port}")));
    assert_eq!(daemon.addr("web").port(), port);
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

#[test]
fn check_fails_on_a_privileged_port_for_an_unprivileged_user() {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap_or_default();
    let first_free: u16 = start.trim().parse().unwrap_or(1024);
    if first_free <= 80 {
        println!("SKIP: net.ipv4.ip_unprivileged_port_start = {first_free}: port 80 is not privileged here");
        return;
    }
    let config = write_config(&http_on("127.0.0.1:80"));
    std::fs::set_permissions(config.parent().unwrap(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = if is_root() {
        // As root the bind would succeed: check as the user the service would run as.
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(bin());
        c
    } else {
        Command::new(bin())
    };
    let out = cmd.args(["check", "--config"]).arg(&config).output().expect("run spindle check");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("127.0.0.1:80") && stderr.to_lowercase().contains("permission denied"), "{stderr}");
}

#[test]
fn a_start_up_error_is_said_once() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let config = write_config(&http_on(&addr));
    let out = Command::new(bin()).arg("--config").arg(&config).env_remove("RUST_LOG").output().expect("run");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.matches("cannot listen on").count(), 1, "{stderr}");
}

#[test]
fn idle_keep_alive_and_echo_clients_do_not_hold_a_stop() {
    // graceful_timeout (1 s) shorter than the lingering close (2 s): before the fix an
    // idle client that never sends its FIN was waited for, then reported "cut".
    let daemon = Daemon::start(
        "[server]\ngraceful_timeout = \"1s\"\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n[listener.apps]\n\"/\" = \"hello\"\n\
         [[listener]]\nname = \"echo\"\nbind = \"127.0.0.1:0\"\nprotocol = \"echo\"\n",
    );
    let mut web = connect(daemon.addr("web"));
    web.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let n = web.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200") && buf[..n].ends_with(b"Hello, World!\n"));
    let mut echo = connect(daemon.addr("echo"));
    assert_eq!(echo_once(&mut echo, b"ping\n"), b"ping\n");
    let mut daemon = daemon;
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)).and_then(|s| s.code()), Some(0));
    let log = daemon.log.text();
    assert!(log.contains("2 connections drained, 0 cut"), "{log}");
    assert!(!log.contains("cutting"), "{log}");
    for (name, client) in [("web", &mut web), ("echo", &mut echo)] {
        assert_eq!(client.read(&mut buf).ok(), Some(0), "{name}: the idle client sees an orderly EOF");
    }
}
