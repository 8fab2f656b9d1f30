//! astra (hyper on a pool of blocking threads): "Hello, World!\n" with 200 text/plain to
//! every request, keep-alive.
//!
//! Usage: `astra_hello PORT [MAX_WORKERS]`. Binds 127.0.0.1:PORT, prints
//! `listening 127.0.0.1:PORT`, serves until killed. Without MAX_WORKERS astra's own
//! default pool is used (15 threads per CPU core), which is what bench/run.sh runs.

use astra::{Body, Request, ResponseBuilder, Server};

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: astra_hello PORT [MAX_WORKERS]");
        std::process::exit(2);
    });
    let mut server = Server::bind(("127.0.0.1", port));
    if let Some(n) = args.next().and_then(|n| n.parse().ok()) {
        server = server.max_workers(n);
    }
    // Server::bind panics if it cannot bind; binding happened above, so say so now.
    println!("listening 127.0.0.1:{port}");
    server
        .serve(|_req: Request, _info| {
            ResponseBuilder::new()
                .header("Content-Type", "text/plain")
                // Without it astra sends the 14 bytes chunked; the other peers do not.
                .header("Content-Length", "14")
                .body(Body::new("Hello, World!\n"))
                .unwrap()
        })
        .expect("astra server");
}
