//! The process-wide budgets for buffered request bodies: when the memory or disk budget
//! is full, uploads that need more room are not read (TCP pushes back on their
//! senders) and continue when room frees; nothing accepted is lost, and a body that
//! finds no room within `body_timeout` is answered `503` with `Retry-After`.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use util::*;

const KIB: usize = 1024;

fn config(limits: &str) -> String {
    format!(
        "[server]\ngraceful_timeout = \"10s\"\n[pool]\nmin_threads = 1\nmax_threads = 4\n[limits]\n{limits}\n\
         [log]\nlevel = \"info,spindle::access=off\"\n\
         [[listener]]\nname = \"http\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n\
         [listener.apps]\n\"/\" = \"hello\"\n\"/echo\" = \"echo\"\n\"/metrics\" = \"metrics\"\n"
    )
}

/// One request on a fresh connection; the whole response (the server closes).
fn get(addr: SocketAddr, target: &str) -> String {
    let mut s = connect(addr);
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A value of the `/metrics` series `name` (with its labels), as a number.
fn metric(addr: SocketAddr, series: &str) -> u64 {
    let text = get(addr, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

fn upload(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    Bytes::new(seed).fill(&mut v);
    v
}

#[test]
fn uploads_past_the_disk_budget_wait_unread_and_all_complete_when_room_frees() {
    // Room for one 1 MiB body on disk at a time; four uploads of 1 MiB.
    let daemon = Daemon::start(&config(
        "max_body_bytes = \"1MiB\"\ndisk_budget = \"1MiB\"\nbody_buffer_bytes = \"64KiB\"\nbody_timeout = \"30s\"",
    ));
    let addr = daemon.addr("http");
    let len = 1024 * KIB;
    let mut clients = Vec::new();
    for i in 0..4u64 {
        let mut s = connect(addr);
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = upload(i, len);
        s.write_all(format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n").as_bytes()).unwrap();
        // The first half now; a socket the server does not read takes only what the
        // kernel buffers, so this write is bounded by the timeout, not the server.
        s.write_all(&body[..300 * KIB]).unwrap();
        clients.push((s, body));
    }
    // Readiness: the server reports uploads waiting for disk room.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(addr, "spindle_budget_waiting_connections{budget=\"disk\"}") == 0 {
        assert!(Instant::now() < deadline, "no upload waited for the disk budget");
        thread::sleep(Duration::from_millis(20));
    }
    let used = metric(addr, "spindle_budget_used_bytes{budget=\"disk\"}");
    assert!(used <= 1024 * 1024, "disk budget over its limit: {used}");
    // Meanwhile, others are served.
    assert!(get(addr, "/").starts_with("HTTP/1.1 200"), "GET / during the stall");
    // The senders go on: every upload completes and comes back intact.
    let done: Vec<_> = clients
        .into_iter()
        .map(|(mut s, body)| {
            thread::spawn(move || {
                s.write_all(&body[300 * KIB..]).unwrap();
                let mut got = Vec::new();
                s.shutdown(std::net::Shutdown::Write).unwrap();
                s.read_to_end(&mut got).unwrap();
                let end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
                let head = String::from_utf8_lossy(&got[..end]).to_string();
                (head, got[end..] == body[..])
            })
        })
        .collect();
    for d in done {
        let (head, intact) = d.join().unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(intact, "an echoed upload differs from what was sent");
    }
    assert!(metric(addr, "spindle_budget_waits_total{budget=\"disk\"}") >= 1);
    assert_eq!(metric(addr, "spindle_budget_used_bytes{budget=\"disk\"}"), 0, "every holding given back");
}

#[test]
fn an_upload_that_finds_no_room_within_body_timeout_gets_503_with_retry_after() {
    let daemon = Daemon::start(&config(
        "max_body_bytes = \"1MiB\"\ndisk_budget = \"1MiB\"\nbody_buffer_bytes = \"64KiB\"\nbody_timeout = \"2s\"",
    ));
    let addr = daemon.addr("http");
    let len = 1024 * KIB;
    // The holder takes most of the disk budget and then keeps sending, slowly enough
    // to keep it but never finishing within the test.
    let mut holder = connect(addr);
    holder.write_all(format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n").as_bytes()).unwrap();
    holder.write_all(&upload(1, 700 * KIB)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(addr, "spindle_budget_used_bytes{budget=\"disk\"}") < 600 * 1024 {
        assert!(Instant::now() < deadline, "the holder's body did not reach the disk");
        thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let mut waiter: TcpStream = connect(addr);
    waiter.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    waiter.write_all(format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n").as_bytes()).unwrap();
    waiter.write_all(&upload(2, 200 * KIB)).unwrap();
    let keep_alive = thread::spawn(move || {
        // The holder trickles on, so it is not the one that times out.
        for _ in 0..8 {
            if holder.write_all(&[b'x'; 16]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(500));
        }
        holder
    });
    let mut got = Vec::new();
    let _ = waiter.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("Retry-After: "), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(1500), "503 before body_timeout: {:?}", started.elapsed());
    drop(keep_alive.join());
}
