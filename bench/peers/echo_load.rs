//! The echo load client: throughput and round-trip latency against any RFC 862 server.
//!
//! Two modes, both bounded in time and meant for 127.0.0.1 only:
//!
//! * `echo_load tput ADDR CONNS SECS` opens CONNS connections; each one, on its own
//!   thread, writes a 64 KiB block and reads the 64 KiB back, again and again, for SECS
//!   seconds. Prints `mbps=… bytes=… conns=… errors=…` (MB = 10^6 bytes, counted once:
//!   bytes echoed back).
//! * `echo_load lat ADDR SECS` opens one connection (TCP_NODELAY) and plays 64-byte
//!   ping-pong for SECS seconds after a short warm-up. Prints `p50_us=… p99_us=… count=…`.
//!
//! Every socket has a read and write timeout, so a server that stops answering ends the
//! run with an error count instead of a hang. No crates: `rustc -O` builds it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const BLOCK: usize = 64 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

fn usage() -> ! {
    eprintln!("usage: echo_load tput ADDR CONNS SECS | echo_load lat ADDR SECS");
    std::process::exit(2);
}

fn parse<T: std::str::FromStr>(s: Option<&String>) -> T {
    s.and_then(|v| v.parse().ok()).unwrap_or_else(|| usage())
}

/// One throughput connection: returns (bytes echoed, error seen).
fn tput_conn(addr: String, secs: f64, start: Arc<Barrier>) -> (u64, bool) {
    let conn = connect(&addr);
    start.wait();
    let mut s = match conn {
        Ok(s) => s,
        Err(_) => return (0, true),
    };
    let out = vec![0x5au8; BLOCK];
    let mut back = vec![0u8; BLOCK];
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut bytes = 0u64;
    while Instant::now() < deadline {
        if s.write_all(&out).is_err() || s.read_exact(&mut back).is_err() {
            return (bytes, true);
        }
        bytes += BLOCK as u64;
    }
    (bytes, false)
}

fn tput(addr: &str, conns: usize, secs: f64) {
    let start = Arc::new(Barrier::new(conns + 1));
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let (a, b) = (addr.to_string(), start.clone());
            thread::spawn(move || tput_conn(a, secs, b))
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let (mut bytes, mut errors) = (0u64, 0usize);
    for h in handles {
        match h.join() {
            Ok((b, e)) => {
                bytes += b;
                errors += e as usize;
            }
            Err(_) => errors += 1,
        }
    }
    let el = t0.elapsed().as_secs_f64();
    println!(
        "mbps={:.1} bytes={} conns={} errors={} secs={:.2}",
        bytes as f64 / el / 1e6,
        bytes,
        conns,
        errors,
        el
    );
}

fn lat(addr: &str, secs: f64) {
    let mut s = match connect(addr) {
        Ok(s) => s,
        Err(e) => {
            println!("p50_us=NA p99_us=NA count=0 errors=1 error={e}");
            return;
        }
    };
    let _ = s.set_nodelay(true);
    let ping = [0x61u8; 64];
    let mut pong = [0u8; 64];
    let mut samples: Vec<u64> = Vec::with_capacity(1 << 20);
    let mut errors = 0;
    for _ in 0..200 {
        if s.write_all(&ping).is_err() || s.read_exact(&mut pong).is_err() {
            errors += 1;
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while errors == 0 && Instant::now() < deadline && samples.len() < 5_000_000 {
        let t = Instant::now();
        if s.write_all(&ping).is_err() || s.read_exact(&mut pong).is_err() {
            errors += 1;
            break;
        }
        samples.push(t.elapsed().as_nanos() as u64);
    }
    if samples.is_empty() {
        println!("p50_us=NA p99_us=NA count=0 errors={errors}");
        return;
    }
    samples.sort_unstable();
    let q = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize] as f64 / 1e3;
    println!(
        "p50_us={:.1} p99_us={:.1} count={} errors={}",
        q(0.50),
        q(0.99),
        samples.len(),
        errors
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("tput") => tput(
            args.get(2).unwrap_or_else(|| usage()),
            parse(args.get(3)),
            parse(args.get(4)),
        ),
        Some("lat") => lat(args.get(2).unwrap_or_else(|| usage()), parse(args.get(3))),
        _ => usage(),
    }
}
