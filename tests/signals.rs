//! Run-time control by signal: SIGTTIN/SIGTTOU resize the pool, SIGHUP re-reads the
//! config file (a broken file is logged and the daemon keeps serving).

mod util;

use std::time::Duration;

use util::*;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn sigttin_and_sigttou_add_and_remove_worker_threads() {
    let daemon = Daemon::start(&echo_config("min_threads = 2\nmax_threads = 2", ""));
    assert!(daemon.eventually(WAIT, |d| d.workers() == 2), "{:?}", daemon.thread_names());
    // One signal at a time, each waited for: two pending signals of a kind merge.
    let resized = |n: usize| daemon.eventually(WAIT, |d| d.log.count("pool resized") == n);
    daemon.signal("TTIN");
    assert!(resized(1) && daemon.eventually(WAIT, |d| d.workers() == 3), "TTIN: {:?}", daemon.thread_names());
    daemon.signal("TTOU");
    assert!(resized(2));
    daemon.signal("TTOU");
    assert!(resized(3) && daemon.eventually(WAIT, |d| d.workers() == 1), "TTOU x2: {:?}", daemon.thread_names());
    daemon.signal("TTOU");
    assert!(resized(4), "{}", daemon.log.text());
    assert_eq!(daemon.log.count("pool resized signal=SIGTTOU min_threads=1 max_threads=1"), 2, "{}", daemon.log.text());
    assert_eq!(daemon.workers(), 1, "never below one worker");
    // Still serving.
    let mut s = connect(daemon.addr("echo"));
    assert_eq!(echo_once(&mut s, b"one thread"), b"one thread");
}

#[test]
fn sighup_applies_a_new_pool_size_and_keeps_connections() {
    let daemon = Daemon::start(&echo_config("min_threads = 2\nmax_threads = 2", ""));
    let mut before = connect(daemon.addr("echo"));
    assert_eq!(echo_once(&mut before, b"before"), b"before");
    std::fs::write(&daemon.config, echo_config("min_threads = 5\nmax_threads = 6", "")).unwrap();
    daemon.signal("HUP");
    assert!(
        daemon.eventually(WAIT, |d| d.workers() == 5),
        "after SIGHUP: {:?}\n{}",
        daemon.thread_names(),
        daemon.log.text()
    );
    daemon.log.wait_for("reloaded: pool", WAIT).unwrap();
    assert_eq!(echo_once(&mut before, b"after"), b"after", "a connection survives the reload");
}

#[test]
fn sighup_with_a_broken_file_keeps_the_running_config_and_serving() {
    let daemon = Daemon::start(&echo_config("min_threads = 2\nmax_threads = 2", ""));
    std::fs::write(&daemon.config, "[pool]\nmin_threads = 9\nmax_threads = 2\n").unwrap();
    daemon.signal("HUP");
    let log = daemon.log.wait_for("keeping the running config", WAIT).unwrap();
    assert!(log.contains("pool.min_threads"), "the error names the key:\n{log}");
    // (A new thread names itself once it runs: count until the names settle.)
    assert!(daemon.eventually(WAIT, |d| d.workers() == 2), "{:?}", daemon.thread_names());
    let mut s = connect(daemon.addr("echo"));
    assert_eq!(echo_once(&mut s, b"alive"), b"alive");
}

#[test]
fn sighup_applies_a_new_log_level() {
    let http = |level: &str| {
        format!(
            "[log]\nlevel = \"{level}\"\n[[listener]]\nname = \"http\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n[listener.apps]\n\"/\" = \"hello\"\n"
        )
    };
    let daemon = Daemon::start(&http("info,spindle::access=off"));
    let get = || {
        use std::io::{Read, Write};
        let mut s = connect(daemon.addr("http"));
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    };
    get(); // not logged: access lines are off
    std::fs::write(&daemon.config, http("info")).unwrap();
    daemon.signal("HUP");
    daemon.log.wait_for("reloaded: pool", WAIT).unwrap();
    get(); // logged
    daemon.log.wait_for("spindle::access", WAIT).unwrap();
    assert_eq!(
        daemon.log.count("spindle::access"),
        1,
        "only the request after the reload is logged:\n{}",
        daemon.log.text()
    );
}
