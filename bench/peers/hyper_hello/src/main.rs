//! hyper 1.x on tokio (multi_thread runtime, 2 worker threads): "Hello, World!\n" with
//! 200 text/plain to every request, HTTP/1.1 keep-alive (hyper's default).
//!
//! Usage: `hyper_hello PORT`. Binds 127.0.0.1:PORT, prints `listening 127.0.0.1:PORT`,
//! serves until killed (the bench owns the process).

use std::convert::Infallible;
use std::io::Write;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

static BODY: &[u8] = b"Hello, World!\n";

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
    resp.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    Ok(resp)
}

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: hyper_hello PORT");
            std::process::exit(2);
        });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap_or_else(|e| {
            eprintln!("hyper_hello: cannot bind 127.0.0.1:{port}: {e}");
            std::process::exit(2);
        });
        println!("listening {}", listener.local_addr().unwrap());
        let _ = std::io::stdout().flush();
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                // EMFILE and friends: keep accepting.
                Err(_) => continue,
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await;
            });
        }
    });
}
