//! The embedding API with apps written in the test: blocking apps and overload,
//! failing and panicking apps, responses an app must not send.

mod util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use spindle::http::{AppResult, Request, Response};
use spindle::{App, Config, Server, ServerHandle};
use util::*;

/// Starts an embedded server with `app` at "/" on 127.0.0.1:0.
fn serve(pool: &str, app: impl App) -> (SocketAddr, ServerHandle, thread::JoinHandle<spindle::StopSummary>) {
    let text = format!(
        "[pool]\n{pool}\n[server]\ngraceful_timeout = \"5s\"\n\
         [[listener]]\nname = \"http\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n[listener.apps]\n\"/healthz\" = \"healthz\"\n"
    );
    let config = Config::parse(&text, "<test>").unwrap();
    let server = Server::builder(config).mount("/", app).build().unwrap();
    let addr = server.local_addrs()[0].1;
    let handle = server.handle();
    let runner = thread::spawn(move || server.run().unwrap());
    (addr, handle, runner)
}

/// Sends one request and reads the whole response (the server closes or it is framed
/// by Content-Length); returns (status, head, body).
fn request(addr: SocketAddr, raw: &str) -> (u16, String, Vec<u8>) {
    let mut s = connect(addr);
    s.write_all(raw.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}; so far {:?}", String::from_utf8_lossy(&got)),
        }
        if let Some(end) = find(&got, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(len) = len {
                if got.len() >= end + 4 + len {
                    break;
                }
            }
        }
    }
    let end = find(&got, b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8_lossy(&got[..end]).to_string();
    let status = head[9..12].parse().unwrap();
    (status, head, got[end + 4..].to_vec())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

const GET: &str = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// Blocks each call until the test releases it.
struct Gate {
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl App for Gate {
    fn call<'a>(&self, _req: Request<'a>) -> AppResult {
        let _ = self.entered.lock().unwrap().send(());
        let _ = self.release.lock().unwrap().recv_timeout(Duration::from_secs(10));
        Ok(Response::text(200, "released\n"))
    }
}

#[test]
fn with_the_queue_full_further_requests_get_503_at_once() {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let gate = Gate { entered: Mutex::new(entered_tx), release: Mutex::new(release_rx) };
    let (addr, handle, runner) = serve("min_threads = 1\nmax_threads = 1\nqueue_capacity = 1", gate);
    // One request holds the only worker, one waits in the queue.
    let busy = thread::spawn(move || request(addr, GET));
    entered.recv_timeout(Duration::from_secs(5)).expect("first request reached the app");
    let mut queued = connect(addr);
    queued.write_all(GET.as_bytes()).unwrap();
    // The queue (capacity 1) fills once the acceptor has dispatched it; then requests
    // are shed without waiting for a worker.
    let mut shed = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while shed < 3 && Instant::now() < deadline {
        let (status, head, _) = request(addr, GET);
        // The gate holds the only worker until after this loop: a 503 arriving at all
        // shows it did not wait for a worker (no wall-clock bound needed).
        if status == 503 {
            assert!(head.contains("Retry-After: 1"), "{head}");
            assert!(head.contains("Connection: close"), "{head}");
            shed += 1;
        }
    }
    assert_eq!(shed, 3, "requests beyond the queue were not shed");
    release.send(()).unwrap();
    release.send(()).unwrap();
    assert_eq!(busy.join().unwrap().0, 200);
    let mut rest = Vec::new();
    queued.read_to_end(&mut rest).unwrap();
    assert!(rest.starts_with(b"HTTP/1.1 200"), "the queued request is served: {:?}", String::from_utf8_lossy(&rest));
    handle.stop();
    let summary = runner.join().unwrap();
    assert!(summary.missed.is_empty());
}

struct Faulty;

impl App for Faulty {
    fn call<'a>(&self, req: Request<'a>) -> AppResult {
        match req.path() {
            "/panic" => panic!("the app panics on purpose"),
            "/fail" => Err("the app fails on purpose".into()),
            "/split" => Ok(Response::text(200, "x").with_header("X-Evil", "a\r\nSet-Cookie: pwned=1")),
            "/hop" => Ok(Response::text(200, "x").with_header("Transfer-Encoding", "chunked")),
            _ => Ok(Response::text(200, "fine\n")),
        }
    }
}

#[test]
fn a_panicking_or_failing_app_gets_500_and_a_closed_connection_and_the_worker_lives_on() {
    let (addr, handle, runner) = serve("min_threads = 1\nmax_threads = 1", Faulty);
    for path in ["/panic", "/fail", "/split", "/hop"] {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        let (status, head, _) = request(addr, &raw);
        assert_eq!(status, 500, "{path}: {head}");
        assert!(head.contains("Connection: close"), "{path}: {head}");
        assert!(!head.contains("pwned"), "{path}: a header value with CRLF was written: {head}");
        // The one worker is still there.
        let (status, _, body) = request(addr, GET);
        assert_eq!((status, body.as_slice()), (200, &b"fine\n"[..]), "after {path}");
    }
    handle.stop();
    let summary = runner.join().unwrap();
    assert!(summary.missed.is_empty());
}

struct Upper;

impl App for Upper {
    fn call<'a>(&self, mut req: Request<'a>) -> AppResult {
        let mut body = Vec::new();
        req.body().read_to_end(&mut body)?;
        Ok(Response::bytes(200, "text/plain", body.to_ascii_uppercase()))
    }
}

#[test]
fn an_app_reads_the_body_and_a_bad_body_gets_its_own_status_not_500() {
    let (addr, handle, runner) = serve("", Upper);
    let ok = "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    assert_eq!(request(addr, ok).2, b"ABCDE");
    let bad = "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n";
    let (status, head, _) = request(addr, bad);
    assert_eq!(status, 400, "{head}");
    assert!(head.contains("Connection: close"));
    handle.stop();
    runner.join().unwrap();
}

#[test]
fn a_stop_while_idle_keep_alive_connections_are_parked_closes_them_and_returns() {
    let (addr, handle, runner) = serve("", Upper);
    let mut idle = connect(addr);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = [0; 512];
    assert!(idle.read(&mut buf).unwrap() > 0);
    let started = Instant::now();
    handle.stop();
    let summary = runner.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "stop took {:?}", started.elapsed());
    assert_eq!(summary.report.cut, 0);
    // The parked connection was closed cleanly: EOF, not a reset.
    assert_eq!(idle.read(&mut buf).unwrap(), 0);
}

#[test]
fn work_that_outlives_graceful_timeout_is_cut_and_every_thread_still_joins() {
    let text = "[server]\ngraceful_timeout = \"300ms\"\n[[listener]]\nname = \"http\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n";
    let (entered_tx, entered) = mpsc::sync_channel(1);
    let server = Server::builder(Config::parse(text, "<test>").unwrap())
        .mount("/", SlowApp { entered: entered_tx, body: "too late\n" })
        .build()
        .unwrap();
    let addr = server.local_addrs()[0].1;
    let handle = server.handle();
    let runner = thread::spawn(move || server.run().unwrap());
    let mut client = connect(addr);
    client.write_all(GET.as_bytes()).unwrap();
    entered.recv_timeout(Duration::from_secs(5)).expect("the request reached the app");
    let started = Instant::now();
    handle.stop();
    // The socket is cut at graceful_timeout: the client sees the end, not a response.
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    assert!(!got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "cut after {:?}, not at graceful_timeout",
        started.elapsed()
    );
    let summary = runner.join().unwrap();
    assert_eq!(summary.report.cut, 1, "{summary:?}");
    assert!(summary.missed.is_empty(), "the worker returned once its app did, and was joined: {summary:?}");
}

#[test]
fn worker_threads_run_inside_the_embedders_wrapper_and_closures_are_apps() {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    thread_local! {
        static WRAPPED: Cell<bool> = const { Cell::new(false) };
    }
    let wrapped_threads = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&wrapped_threads);
    let text = "[pool]\nmin_threads = 2\nmax_threads = 2\n[[listener]]\nname = \"http\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n[listener.apps]\n";
    let config = Config::parse(text, "<test>").unwrap();
    let app = spindle::http::app_fn(|req| {
        let wrapped = WRAPPED.with(Cell::get);
        Ok(Response::text(200, format!("{} wrapped={wrapped}", req.path())))
    });
    let server = Server::builder(config)
        .wrap_worker_threads(move |run| {
            counter.fetch_add(1, Ordering::SeqCst);
            WRAPPED.with(|w| w.set(true));
            run();
        })
        .mount("/", app)
        .build()
        .unwrap();
    let addr = server.local_addrs()[0].1;
    let handle = server.handle();
    let runner = thread::spawn(move || server.run().unwrap());
    let (status, _, body) = request(addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!((status, body.as_slice()), (200, &b"/x wrapped=true"[..]));
    handle.stop();
    let summary = runner.join().unwrap();
    assert!(summary.missed.is_empty());
    assert_eq!(wrapped_threads.load(Ordering::SeqCst), 2);
}

#[test]
fn mount_on_serves_an_app_on_one_listener_only_and_an_unknown_name_fails_the_build() {
    use std::sync::Arc;
    let listener = |name: &str| {
        format!("[[listener]]\nname = \"{name}\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n[listener.apps]\n")
    };
    let config = Config::parse(&format!("{}{}", listener("a"), listener("b")), "<test>").unwrap();
    let named = |text: &'static str| -> Arc<dyn App> {
        Arc::new(spindle::http::app_fn(move |_| Ok(Response::text(200, text))))
    };
    let server = Server::builder(config.clone())
        .mount("/", named("everywhere"))
        .mount_on("b", "/", named("only b"))
        .build()
        .unwrap();
    let addrs = server.local_addrs();
    let handle = server.handle();
    let runner = thread::spawn(move || server.run().unwrap());
    let get = |addr| request(addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").2;
    assert_eq!(get(addrs[0].1), b"everywhere");
    assert_eq!(get(addrs[1].1), b"only b");
    handle.stop();
    runner.join().unwrap();
    let err = Server::builder(config).mount_on("c", "/", named("nowhere")).build().err().expect("no listener c");
    assert!(err.to_string().contains("\"c\""), "{err}");
}

/// Reads from `s` until `want` has arrived (or the read timeout fails the test).
fn read_until(s: &mut std::net::TcpStream, got: &mut Vec<u8>, want: &[u8]) {
    let mut buf = [0; 4096];
    while find(got, want).is_none() {
        match s.read(&mut buf) {
            Ok(0) => {
                panic!("closed before {:?}; got {:?}", String::from_utf8_lossy(want), String::from_utf8_lossy(got))
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}; got {:?}", String::from_utf8_lossy(got)),
        }
    }
}

#[test]
fn an_early_response_reaches_the_client_while_the_app_runs_and_the_returned_body_follows() {
    // The app sends its head and a first chunk, then waits until the test has read
    // them: only a server that sends at once lets it go on.
    let (seen_tx, seen_rx) = mpsc::channel::<()>();
    let seen_rx = Mutex::new(seen_rx);
    let app = spindle::http::app_fn(move |req| {
        let early = req.early_response().ok_or("no socket")?;
        if req.path() == "/plain" {
            return Ok(Response::text(200, "not started\n"));
        }
        early.start(200, None, vec![("Content-Type".into(), "text/plain".into())])?;
        early.write(b"first;")?;
        seen_rx.lock().unwrap().recv_timeout(Duration::from_secs(10))?;
        early.write(b"")?;
        early.write(b"second;")?;
        // Status and headers returned after a start are not sent; the body follows.
        Ok(Response::text(500, "returned"))
    });
    let (addr, handle, runner) = serve("min_threads = 2", app);
    let mut s = connect(addr);
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"first;\r\n");
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Transfer-Encoding: chunked\r\n") && text.contains("Content-Type: text/plain\r\n"), "{text}");
    seen_tx.send(()).unwrap();
    read_until(&mut s, &mut got, b"0\r\n\r\n");
    let text = String::from_utf8_lossy(&got).to_string();
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(body, "6\r\nfirst;\r\n7\r\nsecond;\r\n8\r\nreturned\r\n0\r\n\r\n");
    // Kept alive: the next request on the same connection is answered as usual.
    s.write_all(b"GET /plain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n") && rest.ends_with("\r\n\r\nnot started\n"), "{rest}");
    handle.stop();
    runner.join().unwrap();
}

#[test]
fn an_early_response_is_framed_by_the_apps_content_length_and_cut_when_the_app_fails() {
    let app = spindle::http::app_fn(|req| {
        let early = req.early_response().ok_or("no socket")?;
        let exact = req.path() == "/exact";
        let headers = if exact { vec![("Content-Length".into(), "10".into())] } else { Vec::new() };
        early.start(201, Some("Made".into()), headers)?;
        early.write(b"12345")?;
        if exact {
            assert!(early.write(b"123456").is_err(), "more than Content-Length is refused");
            return Ok(Response::text(200, "67890"));
        }
        Err("failed after starting".into())
    });
    let (addr, handle, runner) = serve("min_threads = 1", app);
    let (status, head, body) = request(addr, "GET /exact HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 201, "{head}");
    assert!(head.starts_with("HTTP/1.1 201 Made\r\n") && head.contains("Content-Length: 10"), "{head}");
    assert_eq!(body, b"1234567890");
    // A HEAD gets the head only, the app's writes discarded.
    let (status, head, body) = request(addr, "HEAD /exact HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!((status, body.len()), (201, 0), "{head}");
    // Failing after the head went out: no 500 can be sent; the chunked body is never
    // ended, and the connection closes.
    let mut s = connect(addr);
    s.write_all(b"GET /fail HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 201 Made\r\n") && text.ends_with("5\r\n12345\r\n"), "{text}");
    handle.stop();
    runner.join().unwrap();
}

#[test]
fn a_request_built_without_a_socket_has_no_early_response() {
    let req = Request::builder().build().unwrap();
    assert!(req.early_response().is_none());
}

#[test]
fn a_request_waiting_on_a_lock_that_a_later_request_releases_gets_a_thread_for_it() {
    // A long poll: /wait blocks on a channel (a futex wait, which alone never counted
    // as blocked) until /release is served. With one thread and nobody running, the
    // pool must add one, or /wait only ends when it gives up after 5 s.
    let (tx, rx) = mpsc::channel::<()>();
    let (tx, rx) = (Mutex::new(tx), Mutex::new(rx));
    let (entered_tx, entered) = mpsc::channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let app = spindle::http::app_fn(move |req| {
        if req.path() == "/release" {
            let _ = tx.lock().unwrap().send(());
            return Ok(Response::text(200, "sent\n"));
        }
        let _ = entered_tx.lock().unwrap().send(());
        let got = rx.lock().unwrap().recv_timeout(Duration::from_secs(5));
        Ok(Response::text(200, if got.is_ok() { "released\n" } else { "gave up\n" }))
    });
    let (addr, handle, runner) = serve("min_threads = 1\nmax_threads = 4", app);
    let waiter = thread::spawn(move || request(addr, "GET /wait HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
    // The release is sent once /wait is in the app; if it came first the channel would
    // hold it and prove nothing.
    entered.recv_timeout(Duration::from_secs(5)).expect("/wait reached the app");
    let (status, _, body) = request(addr, "GET /release HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!((status, body.as_slice()), (200, &b"sent\n"[..]));
    let (status, _, body) = waiter.join().unwrap();
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (200, "released\n"));
    handle.stop();
    runner.join().unwrap();
}
