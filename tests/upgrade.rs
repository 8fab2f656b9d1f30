//! SIGUSR2: the binary at the daemon's path is started on the same listening sockets,
//! and the old process drains and exits once the new one is ready; a new binary that
//! fails leaves the old one serving.

mod util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use util::*;

const WAIT: Duration = Duration::from_secs(20);

const CONFIG: &str = "[server]\ngraceful_timeout = \"10s\"\n[[listener]]\nname = \"http\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n\
    [listener.apps]\n\"/\" = \"hello\"\n";

/// A copy of the binary in a directory of its own, to be replaced by the test.
fn copied_binary() -> PathBuf {
    let path = temp_dir().join("spindle");
    std::fs::copy(bin(), &path).unwrap();
    path
}

/// Replaces the file at `path` the way a package manager does: a new file renamed
/// over the old one (the running process keeps its own inode).
fn replace(path: &Path, with: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, with).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn ready_pid(daemon: &Daemon) -> Option<u32> {
    let text = std::fs::read_to_string(daemon.config.with_file_name("ready")).ok()?;
    text.lines().next()?.strip_prefix("pid ")?.parse().ok()
}

/// One request on a new connection; whether it got a 200.
fn hello(addr: SocketAddr) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else { return false };
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).is_ok() && out.starts_with(b"HTTP/1.1 200") && out.ends_with(b"Hello, World!\n")
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn sigusr2_under_load_hands_the_sockets_to_the_new_binary_without_a_failed_request() {
    let exe = copied_binary();
    let mut daemon = Daemon::start_exe(&exe, CONFIG);
    let addr = daemon.addr("http");
    let old = daemon.pid();
    // Four clients, each a new connection per request, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let counter = if hello(addr) { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    assert!(daemon.eventually(WAIT, |_| ok.load(Ordering::SeqCst) >= 100), "the load never got going");
    replace(&exe, &std::fs::read(bin()).unwrap());
    daemon.signal("USR2");
    assert!(daemon.eventually(WAIT, |d| ready_pid(d).is_some_and(|p| p != old)), "{}", daemon.log.text());
    let new = ready_pid(&daemon).unwrap();
    let status = daemon.wait_exit(WAIT).expect("the old process exits after its drain");
    assert_eq!(status.code(), Some(0), "{}", daemon.log.text());
    // Served by the new process alone for a while.
    let after = ok.load(Ordering::SeqCst);
    let more = Instant::now();
    while ok.load(Ordering::SeqCst) < after + 100 && more.elapsed() < WAIT {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let log = daemon.log.text();
    let _ = std::process::Command::new("kill").args(["-TERM", &new.to_string()]).status();
    let gone = Instant::now();
    while alive(new) && gone.elapsed() < WAIT {
        thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(new), "the new process did not stop on SIGTERM");
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "{} ok, {} failed\n{log}",
        ok.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst)
    );
    assert!(ok.load(Ordering::SeqCst) >= after + 100, "the new process served too little");
    assert!(log.contains("the new process is ready") && log.contains("stopped drained="), "{log}");
}

#[test]
fn a_new_binary_that_fails_to_start_leaves_the_old_one_serving() {
    let exe = copied_binary();
    let daemon = Daemon::start_exe(&exe, CONFIG);
    let addr = daemon.addr("http");
    replace(&exe, b"#!/bin/sh\necho 'broken build' >&2\nexit 3\n");
    daemon.signal("USR2");
    let log = daemon.log.wait_for("upgrade failed", WAIT).unwrap();
    assert!(log.contains("exited before it was ready") && log.contains("3"), "{log}");
    assert_eq!(ready_pid(&daemon), Some(daemon.pid()));
    assert!(hello(addr), "the old process still serves");
    // And a later upgrade, with a working binary, still works.
    replace(&exe, &std::fs::read(bin()).unwrap());
    daemon.signal("USR2");
    assert!(daemon.eventually(WAIT, |d| ready_pid(d).is_some_and(|p| p != d.pid())), "{}", daemon.log.text());
    let new = ready_pid(&daemon).unwrap();
    assert!(hello(addr));
    let _ = std::process::Command::new("kill").args(["-TERM", &new.to_string()]).status();
    let gone = Instant::now();
    while alive(new) && gone.elapsed() < WAIT {
        thread::sleep(Duration::from_millis(10));
    }
}
