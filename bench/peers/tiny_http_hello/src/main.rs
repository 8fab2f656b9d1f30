//! tiny_http with 4 threads each calling `recv()` on one shared server (the crate's
//! documented multi-threaded pattern): "Hello, World!\n" with 200 text/plain to every
//! request, keep-alive (tiny_http's default for HTTP/1.1).
//!
//! Usage: `tiny_http_hello PORT [THREADS]` (THREADS default 4). Binds 127.0.0.1:PORT,
//! prints `listening 127.0.0.1:PORT`, serves until killed.

use std::io::Write;
use std::sync::Arc;
use std::thread;

use tiny_http::{Header, Response, Server};

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: tiny_http_hello PORT [THREADS]");
        std::process::exit(2);
    });
    let threads: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(4);
    let server = Arc::new(Server::http(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("tiny_http_hello: cannot bind 127.0.0.1:{port}: {e}");
        std::process::exit(2);
    }));
    println!("listening 127.0.0.1:{port}");
    let _ = std::io::stdout().flush();
    let ctype = Header::from_bytes(&b"Content-Type"[..], &b"text/plain"[..]).unwrap();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (server, ctype) = (server.clone(), ctype.clone());
            thread::spawn(move || loop {
                let req = match server.recv() {
                    Ok(r) => r,
                    Err(_) => continue,
                };
                let resp = Response::from_string("Hello, World!\n").with_header(ctype.clone());
                let _ = req.respond(resp);
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}
