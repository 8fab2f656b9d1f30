//! The echo baseline: a plain thread-per-connection, blocking RFC 862 echo server.
//!
//! This is what spindle's echo service is measured against: the simplest correct design,
//! one OS thread per client, blocking `read` then `write_all`. No crates, so the bench
//! builds it with `rustc -O` alone.
//!
//! Usage: `echo_threads [ADDR]` (default `127.0.0.1:0`). Prints `listening ADDR` on stdout
//! once bound, then serves until killed (SIGTERM ends the process; the bench owns it).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A reset or broken pipe from the load client is the normal end of a run.
            Err(_) => return,
        }
    }
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_string());
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo_threads: cannot bind {addr}: {e}");
            std::process::exit(2);
        }
    };
    match listener.local_addr() {
        Ok(a) => println!("listening {a}"),
        Err(e) => {
            eprintln!("echo_threads: local_addr: {e}");
            std::process::exit(2);
        }
    }
    let _ = std::io::stdout().flush();
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                let _ = thread::Builder::new()
                    .name("conn".into())
                    .stack_size(256 * 1024)
                    .spawn(move || serve(s));
            }
            // EMFILE and friends: keep accepting; the next accept may succeed.
            Err(_) => continue,
        }
    }
}
