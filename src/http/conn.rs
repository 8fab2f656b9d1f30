//! One HTTP turn: what a worker does with an HTTP connection that has bytes to read.
//!
//! A turn runs on a worker thread and serves requests while complete heads are at hand:
//! it reads without blocking, and when a head is incomplete it hands the connection back
//! to the acceptor with its buffer and deadline (`Phase::HttpHead`), so a slow or silent
//! client costs no thread. Between requests it tries one more non-blocking read before
//! parking, so a keep-alive client that already sent its next request (or pipelined
//! several) is served without a round trip through the acceptor. A turn serves at most
//! `TURN_REQUESTS` before yielding the thread.
//!
//! Per request: parse the head (strict, `parse.rs`), route it, call the app with the
//! body as a `Read` (`BodyReader`: Content-Length or de-chunked, capped, `100 Continue`
//! on first read), write the response (`response.rs`), log one access line. Any framing
//! error is answered with its status and `Connection: close`, and the connection closes
//! (lingering, so the answer is not destroyed by a reset): after a framing error the
//! byte stream cannot be trusted, which is the whole lesson of request smuggling.

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::net::TcpStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Limits;
use mio::Interest;

use crate::conn::{read_some, wait_ready, write_all, Conn, Next, Phase};
use crate::http::body::{ChunkedDecoder, ChunkedLimits};
use crate::http::parse::{self, BodyKind, HeadLimits, Parsed};
use crate::http::response::{self, Framing};
use crate::http::{Body, Request, Response, ResponseBody, Version};
use crate::pool::panic_message;
use crate::server::Shared;

/// Requests one turn may serve before the thread goes back to the queue.
const TURN_REQUESTS: usize = 32;
/// Read size for request heads.
const READ_CHUNK: usize = 16 * 1024;
/// Read size for chunked request bodies.
const BODY_CHUNK: usize = 64 * 1024;
/// An unread body up to this size is read and discarded so the connection can be
/// reused; a larger one closes the connection instead.
const DRAIN_LIMIT: u64 = 64 * 1024;
/// How much of a streamed response is read before its head is written.
const PREFETCH: usize = 32 * 1024;

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// Runs one HTTP turn on `conn`.
pub fn turn(mut conn: Conn, shared: &Shared) -> Next {
    let config = shared.config();
    let limits = &config.limits;
    let head_limits = HeadLimits {
        max_header_bytes: limits.max_header_bytes,
        max_headers: limits.max_headers,
        max_uri_bytes: limits.max_uri_bytes,
        max_body_bytes: limits.max_body_bytes,
    };
    let server = config.server.server_header.as_deref();
    let mut served = 0;
    loop {
        if served >= TURN_REQUESTS {
            // Budget spent: yield the thread to other connections. Requests already
            // buffered (pipelined) must not wait for the socket to turn readable.
            if conn.input.is_empty() {
                return park_for_head(conn, shared, limits);
            }
            conn.phase = Phase::Ready;
            conn.deadline = None;
            return Next::Park(conn);
        }
        // A complete head, or park until there is one.
        let (head, len) = loop {
            if conn.head_started.is_none() && !conn.input.is_empty() {
                conn.head_started = Some(Instant::now());
            }
            match parse::parse_head(&conn.input, &head_limits) {
                Ok(Parsed::Complete { head, len }) => break (head, len),
                Ok(Parsed::Partial) => {}
                Err(e) => {
                    tracing::debug!(conn = conn.id, peer = %conn.peer, error = %e, "rejected request head");
                    let resp = response::error(e.status(), e.reason());
                    return reject(conn, shared, resp, server, limits);
                }
            }
            match read_more(&mut conn) {
                Ok(0) => return Next::Done, // the client closed; nothing half-answered
                Ok(n) => shared.metrics.bytes_in.add(n as u64),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Between requests, with threads to spare: wait a moment for the
                    // next one on this thread rather than park (see conn::STICKY).
                    if served > 0 && conn.input.is_empty() && shared.may_linger() && conn.wait_for_more() {
                        continue;
                    }
                    return park_for_head(conn, shared, limits);
                }
                Err(e) => {
                    tracing::debug!(conn = conn.id, peer = %conn.peer, error = %e, "client gone");
                    return Next::Done;
                }
            }
        };
        let started = conn.head_started.take().unwrap_or_else(Instant::now);
        conn.input.drain(..len);
        served += 1;
        conn.requests += 1;
        match serve(&mut conn, shared, head, limits, server, started) {
            Some(true) => continue,
            Some(false) => return conn.close_gracefully(),
            None => return Next::Done,
        }
    }
}

/// Parks the connection until more of a head arrives (or closes it during a stop).
fn park_for_head(mut conn: Conn, shared: &Shared, limits: &Limits) -> Next {
    if shared.stop.is_set() && conn.input.is_empty() {
        return conn.close_gracefully();
    }
    let now = Instant::now();
    conn.phase = Phase::HttpHead;
    conn.deadline = match conn.head_started {
        // Part of a head is here (or this is a new connection): header_timeout, 408.
        Some(t) => Some(t + limits.header_timeout),
        // Between requests: keepalive_timeout, silent close.
        None => limits.keepalive_timeout.map(|d| now + d),
    };
    Next::Park(conn)
}

thread_local! {
    /// Per-worker read buffer: heads are read here and only the bytes that came are
    /// copied onto the connection, so a read costs neither a 16 KiB memset nor, for a
    /// connection whose buffers were released while parked, a fresh allocation.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; BODY_CHUNK]);
}

/// Reads once, without blocking, onto the end of `input` (at most `max` bytes).
fn read_into(stream: &TcpStream, input: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    READ_BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let max = max.min(buf.len());
        loop {
            match (&*stream).read(&mut buf[..max]) {
                Ok(n) => {
                    input.extend_from_slice(&buf[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    })
}

/// Reads once, without blocking, onto the end of `conn.input`.
fn read_more(conn: &mut Conn) -> io::Result<usize> {
    read_into(&conn.stream, &mut conn.input, READ_CHUNK)
}

/// Answers a request that cannot be served, then closes.
fn reject(conn: Conn, shared: &Shared, resp: Response<'static>, server: Option<&str>, limits: &Limits) -> Next {
    let status = resp.status;
    let framing = Framing { version: Version::Http11, head_only: false, keep_alive: false };
    match response::write(&conn.stream, resp, framing, server, limits.body_timeout) {
        Ok(w) => {
            shared.metrics.bytes_out.add(w.bytes);
            shared.metrics.response(status, Duration::ZERO);
            tracing::info!(target: "spindle::access", peer = %conn.peer, status, bytes = w.bytes, "rejected request");
            conn.close_gracefully()
        }
        Err(_) => Next::Done,
    }
}

/// Serves one parsed request. `Some(keep_alive)`, or `None` if the connection broke.
fn serve(
    conn: &mut Conn,
    shared: &Shared,
    head: parse::Head,
    limits: &Limits,
    server: Option<&str>,
    started: Instant,
) -> Option<bool> {
    let id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    let ctx = Arc::clone(&conn.listener);
    let method = head.method.clone();
    let path = head.path.clone();
    let version = head.version;
    let head_only = head.method == "HEAD";
    let mut keep_alive = head.keep_alive && conn.requests < limits.max_requests_per_connection;
    let progress = Progress::default();
    let expect = head.expect_continue && head.body != BodyKind::Empty;
    progress.expect.set(if expect { Continue::Pending } else { Continue::NotAsked });
    let mut reader = BodyReader::new(&conn.stream, &mut conn.input, &head, limits, &progress);
    let stream: &TcpStream = &conn.stream;

    // The app's response borrows the body reader; it ends inside this block.
    let mut keep_alive = {
        let outcome = if head.method == "OPTIONS" && head.target == "*" {
            Outcome::Respond(Response::empty(200).with_header("Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS"))
        } else {
            match ctx.router.route(&head.path) {
                None => Outcome::Respond(response::error(404, "")),
                Some((script_name, app)) => {
                    let req = Request {
                        head,
                        peer: conn.peer,
                        local: conn.local,
                        listener: &ctx.name,
                        script_name,
                        id,
                        body: Body { inner: &mut reader },
                    };
                    match catch_unwind(AssertUnwindSafe(|| app.call(req))) {
                        Ok(Ok(resp)) => Outcome::Respond(resp),
                        Ok(Err(e)) => Outcome::Failed(e.to_string()),
                        Err(panic) => Outcome::Failed(format!("panicked: {}", panic_message(&*panic))),
                    }
                }
            }
        };
        let mut resp = match outcome {
            Outcome::Respond(mut resp) => match (progress.error.get(), response::check(&mut resp)) {
                // The app read a malformed or oversized body and answered anyway: the
                // body's error is the answer.
                (Some(status), _) => {
                    keep_alive = false;
                    response::error(status, "")
                }
                (None, Ok(())) => resp,
                (None, Err(refused)) => {
                    tracing::error!(request = id, method = %method, path = %path, problem = %refused.0, "the app's response was refused; answering 500");
                    keep_alive = false;
                    response::error(500, "")
                }
            },
            Outcome::Failed(why) => {
                keep_alive = false;
                match progress.error.get() {
                    Some(status) => response::error(status, ""),
                    None => {
                        tracing::error!(request = id, method = %method, path = %path, error = %why, "the app failed; answering 500");
                        response::error(500, "")
                    }
                }
            }
        };
        let streaming = matches!(resp.body, ResponseBody::Stream(..));
        if progress.expect.get() == Continue::Pending {
            if streaming && !head_only {
                // A streamed response may read the body as it goes: the client must be
                // told to send it before the final head goes out (RFC 9110 §10.1.1).
                if write_all(stream, b"HTTP/1.1 100 Continue\r\n\r\n", limits.body_timeout).is_err() {
                    return None;
                }
                progress.expect.set(Continue::Sent);
            } else {
                // Final answer without the body: the client may not send it at all.
                progress.expect.set(Continue::Refused);
                keep_alive = false;
            }
        }
        if streaming && !head_only {
            match prefetch(resp, &progress) {
                Ok(r) => resp = r,
                Err(e) => {
                    // Nothing is sent yet, so a malformed or oversized body still gets
                    // its own status; another failure (timeout, client gone) closes.
                    let Some(status) = progress.error.get() else {
                        tracing::debug!(request = id, peer = %conn.peer, error = %e, "body stream failed before the head; closing");
                        return None;
                    };
                    keep_alive = false;
                    resp = response::error(status, "");
                }
            }
        }
        if !matches!(resp.body, ResponseBody::Stream(..)) && !progress.complete.get() && !progress.drainable.get() {
            keep_alive = false;
        }
        // Decided now, not before the app ran: a stop that began meanwhile is told to
        // this client with `Connection: close` (it should reconnect elsewhere).
        let keep_alive = keep_alive && !shared.draining.load(Ordering::SeqCst);
        let framing = Framing { version, head_only, keep_alive };
        let status = resp.status;
        resp.headers.shrink_to_fit();
        let written =
            catch_unwind(AssertUnwindSafe(|| response::write(stream, resp, framing, server, limits.body_timeout)));
        match written {
            Ok(Ok(w)) => {
                shared.metrics.bytes_out.add(w.bytes);
                shared.metrics.response(w.status, started.elapsed());
                tracing::info!(
                    target: "spindle::access",
                    request = id,
                    peer = %conn.peer,
                    method = %method,
                    path = %path,
                    status = w.status,
                    bytes = w.bytes,
                    us = started.elapsed().as_micros() as u64,
                );
                w.keep_alive
            }
            Ok(Err(e)) => {
                tracing::debug!(request = id, peer = %conn.peer, status, error = %e, "response not completed; closing");
                return None;
            }
            Err(panic) => {
                tracing::error!(request = id, method = %method, path = %path, panic = %panic_message(&*panic), "the app's body stream panicked; closing");
                return None;
            }
        }
    };
    shared.metrics.bytes_in.add(progress.body_bytes.get());
    if keep_alive && !progress.complete.get() {
        // The app left part of the body unread: skip it if it is small, else close.
        keep_alive = progress.drainable.get() && reader.drain().is_ok() && progress.complete.get();
    }
    Some(keep_alive && !shared.draining.load(Ordering::SeqCst))
}

/// Reads the first block of a streamed body before the head is written, so that (1) a
/// request-body error in it (the echo app streams the request body) is answered with
/// its status instead of a truncated 200, and (2) a body that ends within it is sent
/// with `Content-Length` rather than chunked. Reads once (a stream that produces slowly,
/// such as server-sent events or an interactive chunked upload, is not held back), and
/// on only while the stream is the request body and that body is complete or short.
fn prefetch<'a>(mut resp: Response<'a>, progress: &Progress) -> io::Result<Response<'a>> {
    let ResponseBody::Stream(stream, None) = &mut resp.body else { return Ok(resp) };
    let mut buf = vec![0u8; PREFETCH];
    let mut filled = 0;
    let mut eof = false;
    while filled < buf.len() {
        let body_before = progress.body_bytes.get();
        match stream.read(&mut buf[filled..]) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        // Read on only while that cannot hold back a stream: the stream is the request
        // body, and either that body is complete (the next read is EOF) or it is a
        // short one of known length, worth having whole before answering.
        let from_body = progress.body_bytes.get() > body_before;
        if !(from_body && (progress.complete.get() || progress.short.get())) {
            break;
        }
    }
    buf.truncate(filled);
    let body = std::mem::replace(&mut resp.body, ResponseBody::Empty);
    resp.body = match body {
        _ if eof => ResponseBody::Bytes(buf),
        ResponseBody::Stream(rest, None) => ResponseBody::Stream(Box::new(io::Cursor::new(buf).chain(rest)), None),
        other => other,
    };
    Ok(resp)
}

enum Outcome<'a> {
    Respond(Response<'a>),
    Failed(String),
}

/// Where the `100 Continue` interim response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continue {
    NotAsked,
    Pending,
    Sent,
    Refused,
}

/// What the turn needs to know about the body while the app holds the reader.
struct Progress {
    expect: Cell<Continue>,
    /// Status owed for a malformed (400) or oversized (413) body.
    error: Cell<Option<u16>>,
    complete: Cell<bool>,
    drainable: Cell<bool>,
    body_bytes: Cell<u64>,
    /// The body has a known length that fits the prefetch block.
    short: Cell<bool>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            expect: Cell::new(Continue::NotAsked),
            error: Cell::new(None),
            complete: Cell::new(false),
            drainable: Cell::new(false),
            body_bytes: Cell::new(0),
            short: Cell::new(false),
        }
    }
}

enum State {
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    Done,
}

/// The request body as a blocking `Read` over the non-blocking socket: bytes already
/// buffered after the head first, then the socket, each wait bounded by `body_timeout`.
struct BodyReader<'a> {
    stream: &'a TcpStream,
    input: &'a mut Vec<u8>,
    state: State,
    limit: u64,
    timeout: Duration,
    progress: &'a Progress,
}

impl<'a> BodyReader<'a> {
    fn new(
        stream: &'a TcpStream,
        input: &'a mut Vec<u8>,
        head: &parse::Head,
        limits: &Limits,
        progress: &'a Progress,
    ) -> Self {
        let state = match head.body {
            BodyKind::Empty => State::Done,
            BodyKind::Length(n) => {
                progress.short.set(n <= PREFETCH as u64);
                State::Length(n)
            }
            BodyKind::Chunked => State::Chunked(Box::new(ChunkedDecoder::new(ChunkedLimits::default()))),
        };
        let reader =
            BodyReader { stream, input, state, limit: limits.max_body_bytes, timeout: limits.body_timeout, progress };
        reader.update();
        reader
    }

    fn update(&self) {
        let (complete, drainable) = match &self.state {
            State::Done => (true, true),
            State::Length(n) => (false, *n <= DRAIN_LIMIT),
            State::Chunked(_) => (false, true),
        };
        self.progress.complete.set(complete);
        let expect_ok = !matches!(self.progress.expect.get(), Continue::Refused | Continue::Pending);
        self.progress.drainable.set(drainable && self.progress.error.get().is_none() && expect_ok);
    }

    fn fail(&mut self, status: u16, why: &str) -> io::Error {
        self.progress.error.set(Some(status));
        self.state = State::Done;
        self.progress.complete.set(false);
        self.progress.drainable.set(false);
        io::Error::new(io::ErrorKind::InvalidData, format!("request body: {why}"))
    }

    /// Reads more from the socket onto `input`; EOF before the body ends is an error.
    fn fill(&mut self) -> io::Result<()> {
        loop {
            match read_into(self.stream, self.input, BODY_CHUNK) {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the client closed before the body ended"))
                }
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !wait_ready(self.stream, Interest::READABLE, self.timeout)? {
                        return Err(self.fail(408, "no body bytes within body_timeout"));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads more onto `input` only if the socket has bytes now; never waits.
    fn fill_now(&mut self) -> io::Result<bool> {
        match read_into(self.stream, self.input, BODY_CHUNK) {
            Ok(n) => Ok(n > 0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads and discards the rest of a small body.
    fn drain(&mut self) -> io::Result<()> {
        let mut sink = [0u8; 8192];
        let mut total = 0u64;
        while !matches!(self.state, State::Done) {
            let n = self.read(&mut sink)?;
            total += n as u64;
            if total > DRAIN_LIMIT {
                return Err(io::Error::other("unread body too large to skip"));
            }
        }
        Ok(())
    }

    fn send_continue(&mut self) -> io::Result<()> {
        if self.progress.expect.get() == Continue::Pending {
            write_all(self.stream, b"HTTP/1.1 100 Continue\r\n\r\n", self.timeout)?;
            self.progress.expect.set(Continue::Sent);
        }
        Ok(())
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(status) = self.progress.error.get() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("request body already failed ({status})")));
        }
        if out.is_empty() || matches!(self.state, State::Done) {
            return Ok(0);
        }
        self.send_continue()?;
        let n = match &mut self.state {
            State::Done => 0,
            State::Length(remaining) => {
                let want = (*remaining).min(out.len() as u64) as usize;
                let n = if !self.input.is_empty() {
                    let n = want.min(self.input.len());
                    out[..n].copy_from_slice(&self.input[..n]);
                    self.input.drain(..n);
                    n
                } else {
                    // Nothing buffered: read straight into the caller's buffer.
                    let read = read_some(self.stream, &mut out[..want], self.timeout);
                    if read.as_ref().is_err_and(|e| e.kind() == io::ErrorKind::TimedOut) {
                        // A client that stalls mid-body is told so (nginx: client_body_timeout).
                        return Err(self.fail(408, "no body bytes within body_timeout"));
                    }
                    match read? {
                        0 => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the client closed before the body ended",
                            ))
                        }
                        n => n,
                    }
                };
                *remaining -= n as u64;
                if *remaining == 0 {
                    self.state = State::Done;
                }
                n
            }
            State::Chunked(_) => {
                // Decode everything already buffered (up to `out`), and wait on the
                // client only when nothing at all is at hand.
                let mut total = 0;
                while let State::Chunked(decoder) = &mut self.state {
                    if !self.input.is_empty() && total < out.len() {
                        let (used, written) = match decoder.decode(self.input, &mut out[total..]) {
                            Ok(r) => r,
                            Err(e) => return Err(self.fail(400, &e.to_string())),
                        };
                        self.input.drain(..used);
                        total += written;
                        if decoder.decoded_total() > self.limit {
                            return Err(self.fail(413, "larger than max_body_bytes"));
                        }
                        if decoder.is_done() {
                            self.state = State::Done;
                            break;
                        }
                        if used > 0 || written > 0 {
                            continue;
                        }
                    }
                    if total > 0 {
                        if total < out.len() && self.fill_now()? {
                            continue;
                        }
                        break;
                    }
                    self.fill()?;
                }
                total
            }
        };
        self.progress.body_bytes.set(self.progress.body_bytes.get() + n as u64);
        self.update();
        Ok(n)
    }
}
