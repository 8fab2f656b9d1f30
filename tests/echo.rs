//! The echo service and the core daemon under it: concurrency, idle sessions parked
//! without threads, and the shutdown contract (nothing read is lost).

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use util::*;

const MIB: usize = 1 << 20;

#[test]
fn fifty_clients_each_echo_one_mib_of_random_bytes_intact() {
    let daemon = Daemon::start(&echo_config("min_threads = 4\nmax_threads = 8", ""));
    let addr = daemon.addr("echo");
    let start = Arc::new(Barrier::new(50));
    let clients: Vec<_> = (0..50u64)
        .map(|i| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                let mut data = vec![0; MIB];
                Bytes::new(i + 1).fill(&mut data);
                let sent_hash = hash(&data);
                let mut s = connect(addr);
                let mut writer = s.try_clone().unwrap();
                start.wait();
                let w = thread::spawn(move || {
                    writer.write_all(&data).unwrap();
                    // Half-close: the server finishes echoing, then closes.
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                let mut back = Vec::with_capacity(MIB);
                s.read_to_end(&mut back).expect("read until the server's EOF");
                w.join().unwrap();
                (back.len(), hash(&back), sent_hash)
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let (len, got, want) = c.join().unwrap();
        assert_eq!(len, MIB, "client {i} got {len} bytes back");
        assert_eq!(got, want, "client {i}: echoed bytes differ");
    }
}

#[test]
fn a_thousand_idle_sessions_hold_no_threads_and_a_new_one_is_served_at_once() {
    raise_nofile();
    let daemon = Daemon::start(&echo_config("min_threads = 2\nmax_threads = 2", ""));
    let addr = daemon.addr("echo");
    let baseline = round_trip_median(addr);
    let mut idle = Vec::with_capacity(1000);
    for i in 0..1000u32 {
        let mut s = connect(addr);
        // Each session is live (echoed once), then falls silent.
        assert_eq!(echo_once(&mut s, &i.to_le_bytes()), i.to_le_bytes());
        idle.push(s);
    }
    // Relative to the same daemon before the idle sessions, so a busy machine slows
    // both: a session that had to wait for a thread held by an idle one would wait
    // for echo_idle_timeout (minutes), not a few times the baseline.
    let took = round_trip_median(addr);
    assert!(
        took < baseline * 20 + Duration::from_millis(20),
        "a new session took {took:?} behind 1000 idle ones (baseline {baseline:?})"
    );
    let threads = daemon.thread_names();
    // main + acceptor + signals + 2 workers.
    assert!(threads.len() <= 2 + 4, "{} threads for 1001 sessions: {threads:?}", threads.len());
    // The idle sessions still work.
    assert_eq!(echo_once(&mut idle[500], b"x"), b"x");
}

/// One streaming client: a writer thread sends a deterministic stream until the
/// server stops it; the reader collects everything echoed until EOF.
struct Streamer {
    reader: thread::JoinHandle<Result<Vec<u8>, std::io::Error>>,
    writer: thread::JoinHandle<usize>,
    seed: u64,
    received: Arc<AtomicUsize>,
}

fn stream(addr: std::net::SocketAddr, seed: u64) -> Streamer {
    let s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let mut gen = Bytes::new(seed);
        let mut buf = vec![0; 16 * 1024];
        let mut sent = 0;
        loop {
            gen.fill(&mut buf);
            match w.write(&buf) {
                // A short write breaks the deterministic stream: account for it.
                Ok(n) if n == buf.len() => sent += n,
                Ok(n) => {
                    sent += n;
                    let _ = w.write_all(&buf[n..]).map(|_| sent += buf.len() - n);
                }
                Err(_) => return sent,
            }
            if sent > 256 * MIB {
                return sent;
            }
        }
    });
    let mut r = s;
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) => {
                    // Tell the server we are done: its linger ends, and so does the writer.
                    let _ = r.shutdown(Shutdown::Both);
                    return Ok(got);
                }
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    counter.fetch_add(n, Ordering::SeqCst);
                }
                // This client never stops sending: bytes that reach the server after its
                // FIN are answered with a reset (they will not be echoed; the client must
                // be able to tell). What it got before is still checked as a prefix.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(got),
                Err(e) => return Err(e),
            }
        }
    });
    Streamer { reader, writer, seed, received }
}

#[test]
fn sigterm_while_twenty_clients_stream_echoes_everything_read_then_eof_or_reset_and_exits_zero() {
    let mut daemon = Daemon::start(&echo_config("min_threads = 4\nmax_threads = 8", ""));
    let addr = daemon.addr("echo");
    let streams: Vec<_> = (0..20).map(|i| stream(addr, 100 + i)).collect();
    // Every stream is flowing: each client has had 64 KiB echoed.
    let flowing = daemon.eventually(Duration::from_secs(20), |_| {
        streams.iter().all(|s| s.received.load(Ordering::SeqCst) >= 64 * 1024)
    });
    assert!(flowing, "streams never got going");
    daemon.signal("TERM");
    let mut total = 0;
    for (i, s) in streams.into_iter().enumerate() {
        let got = s
            .reader
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("client {i}: the stream ended with {e} instead of EOF or a reset"));
        let _sent = s.writer.join().unwrap();
        let mut want = vec![0; got.len()];
        Bytes::new(s.seed).fill(&mut want);
        assert!(got == want, "client {i}: the {} bytes echoed are not a prefix of what it sent", got.len());
        total += got.len();
    }
    assert!(total > 0, "no client got anything back");
    // New connections are refused once the listeners closed.
    daemon.log.wait_for("listeners closed", Duration::from_secs(5)).unwrap();
    let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(2));
    assert!(
        matches!(&refused, Err(e) if e.kind() == ErrorKind::ConnectionRefused),
        "connect after SIGTERM: {refused:?}"
    );
    let status = daemon.wait_exit(Duration::from_secs(15)).expect("exited");
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log.text());
    let log = daemon.log.text();
    assert!(log.contains("stopped drained=20 cut=0"), "summary line:\n{log}");
}

/// A client that sends and never reads: its echo backs up and the graceful stop must
/// wait for it (up to graceful_timeout) — unless told to stop now.
fn stuck_reader(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    // Fill both directions' buffers until the server stops reading from us.
    while s.write(&chunk).is_ok() {}
    s
}

fn assert_stops_at_once(signals: &[&str]) {
    let mut daemon = Daemon::start(&echo_config("min_threads = 2\nmax_threads = 2", "").replace("\"10s\"", "\"60s\""));
    let _client = stuck_reader(daemon.addr("echo"));
    let started = Instant::now();
    for (i, sig) in signals.iter().enumerate() {
        daemon.signal(sig);
        if i + 1 < signals.len() {
            daemon.log.wait_for("listeners closed", Duration::from_secs(5)).unwrap();
            assert!(daemon.child.try_wait().unwrap().is_none(), "a graceful stop waits for the stuck session");
        }
    }
    let status = daemon
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{signals:?} did not stop the daemon at once"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(status.code().is_some(), "exited by itself, not killed: {status:?}");
    assert!(daemon.log.text().contains("immediate stop"), "{}", daemon.log.text());
}

#[test]
fn a_second_sigterm_stops_at_once_mid_stream() {
    assert_stops_at_once(&["TERM", "TERM"]);
}

#[test]
fn sigquit_stops_at_once_mid_stream() {
    assert_stops_at_once(&["QUIT"]);
}

#[test]
fn silent_echo_sessions_are_closed_after_echo_idle_timeout() {
    let daemon = Daemon::start(&echo_config("", "echo_idle_timeout = \"200ms\""));
    let mut s = connect(daemon.addr("echo"));
    assert_eq!(echo_once(&mut s, b"hi"), b"hi");
    let mut buf = [0; 8];
    let started = Instant::now();
    assert_eq!(s.read(&mut buf).expect("clean close"), 0, "EOF after the idle timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn at_max_connections_accepting_pauses_and_resumes_when_one_closes() {
    let daemon = Daemon::start(&echo_config("", "max_connections = 3"));
    let addr = daemon.addr("echo");
    let mut open: Vec<_> = (0..3).map(|_| connect(addr)).collect();
    for s in &mut open {
        assert_eq!(echo_once(s, b"a"), b"a");
    }
    // The 4th connects (kernel backlog) but is not served while 3 are open.
    let mut fourth = connect(addr);
    fourth.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    fourth.write_all(b"b").unwrap();
    let mut buf = [0; 1];
    let early = fourth.read(&mut buf);
    assert!(early.is_err(), "served beyond max_connections: {early:?}");
    drop(open.pop());
    fourth.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    fourth.read_exact(&mut buf).expect("served once a slot is free");
    assert_eq!(&buf, b"b");
}

/// The median of five connect-and-echo round trips on fresh sessions.
fn round_trip_median(addr: std::net::SocketAddr) -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let mut s = connect(addr);
            assert_eq!(echo_once(&mut s, b"still here?"), b"still here?");
            started.elapsed()
        })
        .collect();
    times.sort();
    times[2]
}
