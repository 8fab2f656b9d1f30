//! The idle-connection holder for workload 3: N keep-alive HTTP clients that each send
//! one request, read the response, and then sit silent.
//!
//! Usage: `idle_conns ADDR N HOLD_SECS`. Opens N connections to ADDR (127.0.0.1 only),
//! one after another, each with a 2 s connect/read timeout; sends `GET / HTTP/1.1` and
//! reads until the response head and a body byte have arrived. Then prints one line,
//! `held=… failed=… open_ms=…`, and holds every socket open until HOLD_SECS have passed
//! since start or the bench kills it. A server that falls over shows up as `failed`,
//! never as a hang: the whole open phase stops at HOLD_SECS too. No crates.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const REQ: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
const IO_TIMEOUT: Duration = Duration::from_secs(2);

fn one(addr: &SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect_timeout(addr, IO_TIMEOUT).ok()?;
    s.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    s.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
    s.write_all(REQ).ok()?;
    // Read until the blank line after the head and at least one body byte: "Hello" is
    // small enough to arrive in the same segment.
    let mut got = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") || got.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got.starts_with(b"HTTP/1.1 200").then_some(s)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (addr, n, hold) = match (
        args.get(1).and_then(|a| a.parse::<SocketAddr>().ok()),
        args.get(2).and_then(|a| a.parse::<usize>().ok()),
        args.get(3).and_then(|a| a.parse::<f64>().ok()),
    ) {
        (Some(a), Some(n), Some(h)) => (a, n, h),
        _ => {
            eprintln!("usage: idle_conns ADDR N HOLD_SECS");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(hold);
    let mut held = Vec::with_capacity(n);
    let mut failed = 0usize;
    for _ in 0..n {
        if Instant::now() >= end {
            failed += 1;
            continue;
        }
        match one(&addr) {
            Some(s) => held.push(s),
            None => failed += 1,
        }
    }
    println!(
        "held={} failed={} open_ms={}",
        held.len(),
        failed,
        start.elapsed().as_millis()
    );
    let _ = std::io::stdout().flush();
    let now = Instant::now();
    if now < end {
        std::thread::sleep(end - now);
    }
}
