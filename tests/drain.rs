//! SIGTERM with 50 slow requests in flight, on an embedded server with signals on.
//!
//! Alone in its file on purpose: it sends SIGTERM to its own process, which the
//! server's signal thread handles; another test in the same process would see it too.

mod util;

use std::io::{Read, Write};
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use spindle::{Config, Server};
use util::*;

#[test]
fn sigterm_with_50_slow_requests_in_flight_answers_all_with_connection_close() {
    let text =
        "[pool]\nmin_threads = 50\nmax_threads = 64\n[server]\ndrain_delay = \"500ms\"\ngraceful_timeout = \"20s\"\n\
                [[listener]]\nname = \"http\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n\
                [listener.apps]\n\"/readyz\" = \"readyz\"\n";
    let config = Config::parse(text, "<test>").unwrap();
    let (entered_tx, entered) = mpsc::sync_channel(64);
    let server = Server::builder(config)
        .mount("/slow", SlowApp { entered: entered_tx, body: "slow but complete\n" })
        .signals(true)
        .build()
        .unwrap();
    let addr = server.local_addrs()[0].1;
    let runner = thread::spawn(move || server.run().unwrap());

    // A keep-alive connection to ask readiness on during the drain.
    let mut probe = connect(addr);
    let mut buf = vec![0; 4096];
    probe.write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let n = probe.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));

    let start = Arc::new(Barrier::new(50));
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                let mut s = connect(addr);
                start.wait();
                s.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).expect("a complete response, then EOF");
                String::from_utf8_lossy(&got).to_string()
            })
        })
        .collect();
    for _ in 0..50 {
        entered.recv_timeout(Duration::from_secs(10)).expect("all 50 requests reach the app");
    }
    let pid = std::process::id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());

    // During drain_delay readiness says 503 on the open connection.
    let mut saw_503 = false;
    for _ in 0..50 {
        probe.write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let n = probe.read(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.starts_with("HTTP/1.1 503") {
            saw_503 = true;
            break;
        }
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
    assert!(saw_503, "readyz never said 503 after SIGTERM");

    for c in clients {
        let response = c.join().unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("Connection: close"), "{response}");
        assert!(response.ends_with("slow but complete\n"), "{response}");
    }
    let summary = runner.join().unwrap();
    assert!(summary.missed.is_empty(), "every worker joined: {summary:?}");
    assert_eq!(summary.report.cut, 0, "nothing was cut: {summary:?}");
    assert!(!summary.report.immediate);
}
