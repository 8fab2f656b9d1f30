//! One HTTP turn: what a worker does with an HTTP connection that turned ready.
//!
//! A turn never waits on the client. It runs four steps per request, each of which
//! either finishes or parks the connection in the lot with what it has so far:
//!
//! 1. **send**: a response a previous turn left on its way out (`HttpSend`: the client
//!    was not taking it) goes on first, pulled from its source as the socket takes it
//!    (`outgoing.rs`); if the socket still will not take more, park again.
//! 2. **receive**: read the head (park on a partial one: `HttpHead`, `header_timeout`
//!    then 408), then the whole body (`receive.rs`: memory, then a temporary file; park
//!    between segments: `HttpBody`, `body_timeout` then 408). Framing errors are
//!    answered with their status and the connection closes: after one, the byte stream
//!    cannot be trusted (the lesson of request smuggling).
//! 3. **call**: route, call the app with the complete body, check what it returns.
//! 4. **send**: encode the response and write what the socket takes now; the rest (of
//!    a buffered response, a streamed body, a file) waits on the connection with its
//!    source (step 1 of a later turn). No thread waits for a slow reader.
//!
//! One keep-alive decision per request (`encode::KeepAlive`), on at first and turned
//! off, for good, by each reason to close as it comes (the client's request, the
//! request limit, a failed app, a stop that began while the app ran, a body that can
//! only end with the close, a body shorter than its framing). A turn serves at most `TURN_REQUESTS` requests (and reads at
//! most `TURN_BYTES` of body) before it yields the thread to other connections.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::config::Limits;
use crate::conn::{Conn, Next, Phase};
use crate::http::early::{self, EarlyResponse};
use crate::http::encode::{self, Encoded, Framing, KeepAlive, Pace};
use crate::http::forwarded;
use crate::http::outgoing::{Line, Outgoing, Pumped, Then};
use crate::http::parse::{self, BodyKind, HeadLimits, Parsed};
use crate::http::receive::{Incoming, Progress};
use crate::http::{Body, DisconnectProbe, Request, Response, Version};
use crate::pool::panic_message;
use crate::shared::Shared;
use crate::sock::{limit_unsent, write_now};

/// Requests one turn may serve before the thread goes to other connections.
const TURN_REQUESTS: usize = 32;
/// Body bytes one turn may receive before the thread goes to other connections.
const TURN_BYTES: usize = 1 << 20;
/// Response bytes one turn may send before the thread goes to other connections: a
/// sendfile of this much costs the thread little (nginx's `sendfile_max_chunk` is 2m),
/// and a larger share halves the re-parks of a fast download.
const SEND_TURN_BYTES: usize = 2 << 20;
/// Read size for request heads and bodies.
const READ_CHUNK: usize = 64 * 1024;

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// What one turn works with.
struct Ctx<'a> {
    shared: &'a Shared,
    limits: &'a Limits,
    head_limits: HeadLimits,
    server: Option<&'a str>,
    body_buffer: usize,
}

/// How a request's response went out.
enum Sent {
    /// Whole; the connection stays open or closes as the decision says.
    Done(KeepAlive),
    /// Not whole yet: the rest goes out from the event side (`drive`).
    Pending(Box<Outgoing>),
    /// The connection broke.
    Broken,
}

/// Runs one HTTP turn on `conn`.
pub(crate) fn turn(mut conn: Conn, shared: &Shared) -> Next {
    let config = shared.config();
    let limits = &config.limits;
    let ctx = Ctx {
        shared,
        limits,
        head_limits: HeadLimits {
            max_header_bytes: limits.max_header_bytes,
            max_headers: limits.max_headers,
            max_uri_bytes: limits.max_uri_bytes,
            max_body_bytes: limits.max_body_bytes,
        },
        server: config.server.server_header.as_deref(),
        body_buffer: limits.body_buffer_bytes,
    };
    // A body stalled for budget room whose client left: it would be reported ready
    // again at every re-park.
    if matches!(conn.phase, Phase::HttpStalled { .. }) && conn.hung_up() {
        return Next::Done;
    }
    // 1. send what a previous turn could not
    if matches!(conn.phase, Phase::HttpSend(_)) {
        let Phase::HttpSend(out) = std::mem::replace(&mut conn.phase, Phase::HttpHead) else { return Next::Done };
        conn = match drive(conn, &ctx, out) {
            Ok(conn) => conn,
            Err(next) => return next,
        };
    }
    let mut served = 0;
    let mut budget = TURN_BYTES;
    loop {
        if served >= TURN_REQUESTS {
            // Budget spent: yield. Requests already buffered (pipelined) must not wait
            // for the socket to turn readable: they go on the run queue.
            if conn.input.is_empty() {
                return park_for_head(conn, &ctx);
            }
            return conn.park(Phase::Ready, None);
        }
        // 2. receive
        let incoming;
        (conn, incoming) = match receive(conn, &ctx, &mut budget) {
            Ok(received) => received,
            Err(next) => return next,
        };
        served += 1;
        conn.requests += 1;
        // 3. call, 4. send
        let sent = respond(&mut conn, &ctx, *incoming, served);
        let sent = match sent {
            Sent::Pending(out) => match drive(conn, &ctx, out) {
                Ok(c) => {
                    conn = c;
                    Sent::Done(KeepAlive::ON)
                }
                Err(next) => return next,
            },
            other => other,
        };
        match sent {
            // Nothing more buffered: park at once rather than try a read that a
            // request-response client cannot have answered yet (it is still reading
            // our response). The re-arm reports bytes that did arrive meanwhile.
            Sent::Done(ka) if !ka.is_on() => return close_after_response(conn, ka),
            Sent::Done(_) if conn.input.is_empty() && served < TURN_REQUESTS => {
                conn.head_started = None;
                return park_for_head(conn, &ctx);
            }
            Sent::Done(_) | Sent::Pending(_) => continue,
            Sent::Broken => return Next::Done,
        }
    }
}

/// Sends what it can of a response from the event side (`outgoing.rs`): finished, the
/// connection goes on (`Ok`: keep-alive, or the request whose `100 Continue` this was);
/// else it is parked until the client takes more, closed, or cut off for being too
/// slow (`Err`).
#[allow(clippy::result_large_err)] // a `Conn` moves by value (see `receive`)
fn drive(mut conn: Conn, ctx: &Ctx<'_>, mut out: Box<Outgoing>) -> Result<Conn, Next> {
    match out.pump(&conn.stream, &mut conn.output, SEND_TURN_BYTES) {
        Ok(Pumped::Done) => {
            out.account(&ctx.shared.metrics);
            match out.then() {
                Then::Next(ka) if !ka.is_on() => Err(close_after_response(conn, ka)),
                Then::Next(_) | Then::Receive => Ok(conn),
            }
        }
        Ok(Pumped::Blocked | Pumped::Yield) => {
            let wait = out.allowed_wait();
            if wait.is_zero() {
                let e = encode::too_slow();
                tracing::debug!(conn = conn.id, peer = %conn.peer, error = %e, "response cut off");
                ctx.shared.metrics.send_cut.inc();
                out.account(&ctx.shared.metrics);
                return Err(Next::Done);
            }
            Err(conn.park(Phase::HttpSend(out), Some(Instant::now() + wait)))
        }
        Err(e) => {
            tracing::debug!(conn = conn.id, peer = %conn.peer, error = %e, "response not completed; closing");
            out.account(&ctx.shared.metrics);
            Err(Next::Done)
        }
    }
}

// ---- 2. receive ------------------------------------------------------------------------

/// Reads until a request is complete (`Ok`), or decides what happens to the connection
/// meanwhile (`Err`: parked, rejected, or gone).
// A `Conn` moves by value between threads on purpose; boxing it would cost an
// allocation per turn to save a 200-byte move.
#[allow(clippy::result_large_err)]
fn receive(mut conn: Conn, ctx: &Ctx<'_>, budget: &mut usize) -> Result<(Conn, Box<Incoming>), Next> {
    loop {
        if let Some(incoming) = conn.incoming.as_mut() {
            match incoming.feed(&mut conn.input) {
                Progress::Complete => {
                    return match conn.incoming.take() {
                        Some(incoming) => Ok((conn, incoming)),
                        None => Err(Next::Done),
                    }
                }
                Progress::Refused(status, why) => {
                    tracing::debug!(conn = conn.id, peer = %conn.peer, status, reason = %why, "request body refused");
                    return Err(reject(conn, ctx, status, ""));
                }
                Progress::NeedMore => {}
            }
            if *budget == 0 {
                // Yield; the socket still has bytes, so the lot hands it out again.
                return Err(park_body(conn, ctx));
            }
            // Room in the budgets for what the next read may store, or no read: the
            // client waits (TCP pushes back), costing neither memory nor a thread.
            let epoch = ctx.shared.lot.room_epoch();
            let pending = conn.input.len();
            let stalled = match conn.incoming.as_mut() {
                Some(inc) => {
                    if inc.make_room(pending, READ_CHUNK) {
                        None
                    } else {
                        inc.stalled_since()
                    }
                }
                None => None,
            };
            if let Some(since) = stalled {
                let deadline = Some(since + ctx.limits.body_timeout);
                return Err(conn.park(Phase::HttpStalled { epoch }, deadline));
            }
        } else {
            if conn.head_started.is_none() && !conn.input.is_empty() {
                conn.head_started = Some(Instant::now());
            }
            match parse::parse_head(&conn.input, &ctx.head_limits) {
                Ok(Parsed::Complete { head, len }) => {
                    conn.input.drain(..len);
                    let started = conn.head_started.take().unwrap_or_else(Instant::now);
                    let ask = head.expect_continue && head.body != BodyKind::Empty && conn.input.is_empty();
                    conn.incoming = Some(Box::new(Incoming::new(
                        head,
                        started,
                        ctx.body_buffer,
                        ctx.limits.max_body_bytes,
                        Some(&ctx.shared.budgets),
                    )));
                    if ask {
                        // The client waits for this before sending the body (RFC 9110
                        // §10.1.1); the server reads bodies itself, so it asks at once.
                        // Never waiting: what the socket does not take now is flushed
                        // first when the connection turns writable.
                        const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
                        match write_now(&conn.stream, CONTINUE) {
                            Ok(n) if n == CONTINUE.len() => {}
                            Ok(n) => {
                                conn.output.extend_from_slice(&CONTINUE[n..]);
                                let out = Box::new(Outgoing::pending(Then::Receive, pace(ctx.limits)));
                                let wait = out.allowed_wait();
                                return Err(conn.park(Phase::HttpSend(out), Some(Instant::now() + wait)));
                            }
                            Err(_) => return Err(Next::Done),
                        }
                    }
                    continue;
                }
                Ok(Parsed::Partial) => {}
                Err(e) => {
                    tracing::debug!(conn = conn.id, peer = %conn.peer, error = %e, "rejected request head");
                    return Err(reject(conn, ctx, e.status(), e.reason()));
                }
            }
        }
        match read_more(&mut conn) {
            // The client closed: between requests that is the normal end; mid-request
            // nobody is left to answer.
            Ok(0) => return Err(Next::Done),
            Ok(n) => {
                ctx.shared.metrics.bytes_in.add(n as u64);
                *budget = budget.saturating_sub(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(if conn.incoming.is_some() { park_body(conn, ctx) } else { park_for_head(conn, ctx) })
            }
            Err(e) => return Err(gone(conn, &e)),
        }
    }
}

/// Ends a connection after a complete `Connection: close` response (`why`: the
/// keep-alive decision's reason). A lingering close
/// exists to keep unread client bytes from turning the close into a reset that could
/// destroy the response in flight (RFC 9112 §9.6); when nothing is buffered and nothing
/// is waiting in the socket, a plain close is as safe and saves a park, a wake-up and
/// a read per connection (nginx lingers only when the client may still send, too).
fn close_after_response(mut conn: Conn, why: KeepAlive) -> Next {
    tracing::debug!(conn = conn.id, peer = %conn.peer, reason = why.reason().unwrap_or(""), "closing after the response");
    if conn.input.is_empty() {
        let mut probe = [0u8; 1];
        match (&*conn.stream).read(&mut probe) {
            // The client closed too, or has sent nothing more: close now.
            Ok(0) => return Next::Done,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Done,
            // It did send more (a pipelined request after our close): linger.
            Ok(_) => conn.input.push(probe[0]),
            Err(_) => return Next::Done,
        }
    }
    conn.close_gracefully()
}

/// Parks the connection until more of a head arrives (or closes it during a stop).
fn park_for_head(conn: Conn, ctx: &Ctx<'_>) -> Next {
    let deadline = match conn.head_started {
        // Part of a head is here (or this is a new connection): header_timeout, 408.
        Some(t) => Some(t + ctx.limits.header_timeout),
        // Between requests: keepalive_timeout, silent close.
        None => ctx.limits.keepalive_timeout.map(|d| Instant::now() + d),
    };
    conn.park(Phase::HttpHead, deadline)
}

/// Parks the connection until more of a body arrives: `body_timeout` from now.
fn park_body(conn: Conn, ctx: &Ctx<'_>) -> Next {
    let deadline = Some(Instant::now() + ctx.limits.body_timeout);
    conn.park(Phase::HttpBody, deadline)
}

/// The pace a client must keep taking a response (`min_send_rate`, `body_timeout`).
fn pace(limits: &Limits) -> Pace {
    Pace::new(limits.min_send_rate, limits.body_timeout)
}

thread_local! {
    /// Per-worker read buffer: bytes are read here and only what came is copied onto
    /// the connection, so a read costs neither a 64 KiB memset nor, for a connection
    /// whose buffers were released while parked, a fresh allocation.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Reads once, without blocking, onto the end of `conn.input`.
fn read_more(conn: &mut Conn) -> io::Result<usize> {
    READ_BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        loop {
            match (&*conn.stream).read(&mut buf[..]) {
                Ok(n) => {
                    conn.input.extend_from_slice(&buf[..n]);
                    conn.heard |= n > 0;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    })
}

/// Answers a request that cannot be served, then closes.
fn reject(mut conn: Conn, ctx: &Ctx<'_>, status: u16, detail: &str) -> Next {
    let framing = Framing { version: Version::Http11, head_only: false, keep_alive: REFUSED };
    let (Encoded::Buffered(out), _) = encode::encode(encode::error(status, detail), framing, ctx.server) else {
        return Next::Done;
    };
    ctx.shared.metrics.response(status, std::time::Duration::ZERO);
    tracing::info!(target: "spindle::access", peer = %conn.peer, status, bytes = out.len() as u64, "rejected request");
    conn.incoming = None;
    conn.input = Vec::new();
    match send_buffered(&mut conn, ctx, out, REFUSED) {
        Sent::Pending(out) => match drive(conn, ctx, out) {
            Ok(conn) => conn.close_gracefully(),
            Err(next) => next,
        },
        Sent::Broken => Next::Done,
        Sent::Done(_) => conn.close_gracefully(),
    }
}

/// After a framing error the byte stream cannot be trusted (request smuggling).
const REFUSED: KeepAlive = KeepAlive::off("a request the server refused");

fn send_buffered(conn: &mut Conn, ctx: &Ctx<'_>, out: Vec<u8>, keep_alive: KeepAlive) -> Sent {
    ctx.shared.metrics.bytes_out.add(out.len() as u64);
    match write_now(&conn.stream, &out) {
        Ok(n) if n == out.len() => Sent::Done(keep_alive),
        Ok(n) => {
            conn.output = if n == 0 { out } else { out[n..].to_vec() };
            Sent::Pending(Box::new(Outgoing::pending(Then::Next(keep_alive), pace(ctx.limits))))
        }
        Err(e) => {
            tracing::debug!(conn = conn.id, peer = %conn.peer, error = %e, "response not completed; closing");
            Sent::Broken
        }
    }
}

// ---- 3. call and 4. send -----------------------------------------------------------------

/// Calls the app for a complete request and sends its response.
fn respond(conn: &mut Conn, ctx: &Ctx<'_>, incoming: Incoming, served: usize) -> Sent {
    let id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    let (head, started, body, body_len, held) = match incoming.finish() {
        Ok(parts) => parts,
        Err(e) => {
            tracing::error!(request = id, error = %e, "cannot read back the stored request body; answering 500");
            let failed = KeepAlive::off("the request body could not be read back");
            let framing = Framing { version: Version::Http11, head_only: false, keep_alive: failed };
            if let (Encoded::Buffered(out), _) = encode::encode(encode::error(500, ""), framing, ctx.server) {
                return send_buffered(conn, ctx, out, failed);
            }
            return Sent::Broken;
        }
    };
    let listener = std::sync::Arc::clone(&conn.listener);
    let (method, path, version) = (head.method.clone(), head.path.clone(), head.version);
    // The client behind a trusted proxy, from its forwarding headers; anyone else's
    // such headers reach the app untouched and are not believed.
    let (peer, scheme) = if listener.forwarded_trusted.is_empty() {
        (conn.peer, None)
    } else {
        let client = forwarded::resolve(conn.peer, &listener.forwarded_trusted, &head.headers);
        (client.addr, client.scheme)
    };
    let head_only = head.method == "HEAD";
    // The one keep-alive decision for this request, narrowed as reasons to close come.
    let mut keep_alive = KeepAlive::ON;
    if !head.keep_alive {
        keep_alive.disable("the client asked to close");
    }
    if conn.requests >= ctx.limits.max_requests_per_connection {
        keep_alive.disable("max_requests_per_connection");
    }
    let options_star = head.method == "OPTIONS" && head.target == "*";
    let early_slot = std::sync::OnceLock::new();
    // Its own handle on the socket: what the app returns may borrow the request, and
    // must not hold `conn` borrowed while the response is sent.
    let early_stream = std::sync::Arc::clone(&conn.stream);
    let mut early_keep_alive = keep_alive;
    if ctx.shared.draining.load(Ordering::SeqCst) {
        early_keep_alive.disable("the server is stopping");
    }
    let early_framing = Framing { version, head_only, keep_alive: early_keep_alive };

    let (resp, app_failed) = if options_star {
        (Response::empty(200).with_header("Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS"), false)
    } else {
        match listener.router.route(&head.path) {
            None => (encode::error(404, ""), false),
            Some((script_name, app)) => {
                let req = Request {
                    head,
                    peer,
                    scheme: scheme.map_or("http", |s| s.as_str()),
                    local: conn.local,
                    listener: Cow::Borrowed(&listener.name),
                    script_name: Cow::Borrowed(script_name),
                    id,
                    body: Body::received(body, body_len, held),
                    probe: DisconnectProbe::socket(&conn.stream),
                    early: Some(early::Seed {
                        stream: &early_stream,
                        framing: early_framing,
                        server: ctx.server,
                        min_send_rate: ctx.limits.min_send_rate,
                        body_timeout: ctx.limits.body_timeout,
                        slot: &early_slot,
                    }),
                };
                let called = catch_unwind(AssertUnwindSafe(|| app.call(req)));
                // The app started its response itself: the rest of the body follows
                // what it wrote, whatever the status and headers it returned.
                if early_slot.get().is_some_and(EarlyResponse::take_back) {
                    let rest = match called {
                        Ok(Ok(resp)) => Some(resp.body),
                        Ok(Err(e)) => {
                            tracing::error!(request = id, method = %method, path = %path, error = %e, "the app failed after starting its response; closing");
                            None
                        }
                        Err(panic) => {
                            tracing::error!(request = id, method = %method, path = %path, panic = %panic_message(&*panic), "the app panicked after starting its response; closing");
                            None
                        }
                    };
                    let Some(early) = early_slot.get() else { return Sent::Broken };
                    return match early.finish(rest) {
                        Ok((status, out)) => {
                            limit_unsent(&conn.stream);
                            Sent::Pending(Box::new(out.with_line(Line { id, peer, method, path, started, status })))
                        }
                        Err(e) => {
                            tracing::debug!(request = id, peer = %peer, error = %e, "response not completed; closing");
                            Sent::Broken
                        }
                    };
                }
                let failure = match called {
                    Ok(Ok(mut resp)) => match encode::check(&mut resp) {
                        Ok(()) => Ok(resp),
                        Err(refused) => Err(format!("its response was refused: {}", refused.0)),
                    },
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(panic) => Err(format!("panicked: {}", panic_message(&*panic))),
                };
                match failure {
                    Ok(resp) => (resp, false),
                    Err(why) => {
                        tracing::error!(request = id, method = %method, path = %path, error = %why, "the app failed; answering 500");
                        (encode::error(500, ""), true)
                    }
                }
            }
        }
    };

    // A stop that began meanwhile is told to this client (it should reconnect
    // elsewhere), unless it has already pipelined more requests, which are answered
    // first: at most the rest of this turn's budget, so a client that never stops
    // pipelining cannot hold the drain open.
    if app_failed {
        keep_alive.disable("the app failed");
    }
    let pipelined = !conn.input.is_empty() && served < TURN_REQUESTS;
    if ctx.shared.draining.load(Ordering::SeqCst) && !pipelined {
        keep_alive.disable("the server is stopping");
    }
    let framing = Framing { version, head_only, keep_alive };
    let status = resp.status;
    let (encoded, keep_alive) = encode::encode(resp, framing, ctx.server);
    let then = Then::Next(keep_alive);
    let line = Line { id, peer, method, path, started, status };
    match encoded {
        Encoded::Buffered(out) => {
            let bytes = out.len() as u64;
            let sent = send_buffered(conn, ctx, out, keep_alive);
            line.account(&ctx.shared.metrics, bytes);
            sent
        }
        // The head goes out with the first of the body, from the event side.
        Encoded::Streamed(head, stream, mode) => {
            conn.output = head;
            limit_unsent(&conn.stream);
            Sent::Pending(Box::new(Outgoing::stream(stream, mode, then, pace(ctx.limits), line)))
        }
        Encoded::File(head, file) => {
            conn.output = head;
            Sent::Pending(Box::new(Outgoing::file(file, then, pace(ctx.limits), line)))
        }
    }
}

/// The client went away (reset, broken pipe): normal flow, logged at debug.
fn gone(conn: Conn, e: &io::Error) -> Next {
    tracing::debug!(conn = conn.id, peer = %conn.peer, error = %e, "client gone");
    Next::Done
}
