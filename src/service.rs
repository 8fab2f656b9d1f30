//! The one place that knows which protocol a connection speaks: what a new connection
//! waits for, its turn, how it is shed, what its expired deadline means, and whether
//! work that waited on the run queue is still worth doing. The acceptor, the lot and
//! the server call these and never match on the protocol themselves.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::config::Protocol;
use crate::conn::{Conn, Next, Phase};
use crate::http::encode::canned;
use crate::shared::Shared;
use crate::{echo, http_turn, net, proxy};

/// Sets up a freshly accepted connection to wait (parked) for its first bytes: no
/// thread is spent on a client that connects and says nothing. On a `proxy_protocol`
/// listener it waits for the PROXY header first, and a connection from outside
/// `proxy_trusted` is refused here (`false`: close it, unanswered, as the PROXY spec
/// says a receiver must).
pub(crate) fn opened(conn: &mut Conn, shared: &Shared, now: Instant) -> bool {
    let Some((_, trusted)) = &conn.listener.proxy else {
        start(conn, shared, now);
        return true;
    };
    if !net::any_contains(trusted, &conn.peer.ip()) {
        shared.metrics.proxy_rejected.inc();
        tracing::debug!(conn = conn.id, peer = %conn.peer, "not a proxy_trusted address; closed unanswered");
        return false;
    }
    conn.set_wait(Phase::Proxy, Some(now + shared.limits().header_timeout));
    true
}

/// The protocol's own start, once the connection (and its PROXY header) is here.
fn start(conn: &mut Conn, shared: &Shared, now: Instant) {
    let limits = shared.limits();
    match conn.listener.protocol {
        Protocol::Echo => conn.set_wait(Phase::Echo, limits.echo_idle_timeout.map(|d| now + d)),
        Protocol::Http => {
            // The first head's header_timeout runs from the connection's accept.
            conn.head_started = Some(now);
            conn.set_wait(Phase::HttpHead, Some(now + limits.header_timeout));
        }
    }
}

/// One turn of the connection's protocol, on a worker thread.
pub(crate) fn turn(mut conn: Conn, shared: &Shared) -> Next {
    match conn.phase {
        Phase::Closing => return conn.linger(),
        Phase::Proxy => return proxy_header(conn, shared),
        Phase::Abandoned(_) => {
            // Dropped here, on a worker: its body source may run app code as it goes.
            if let Phase::Abandoned(mut out) = std::mem::replace(&mut conn.phase, Phase::Closing) {
                out.account(&shared.metrics);
            }
            return Next::Done;
        }
        _ => {}
    }
    match conn.listener.protocol {
        Protocol::Echo => echo::turn(conn, shared),
        Protocol::Http => http_turn::turn(conn, shared),
    }
}

/// Whether shedding may turn this connection away: only work not yet begun (a new
/// request or echo bytes), never a request half received or a response half sent.
pub(crate) fn sheddable(conn: &Conn) -> bool {
    match conn.phase {
        Phase::Echo => conn.output.is_empty(),
        Phase::HttpHead => conn.incoming.is_none(),
        Phase::Proxy => conn.input.is_empty(),
        _ => false,
    }
}

/// Turns a connection away without a worker: HTTP gets a canned `503` with
/// `Retry-After` and `Connection: close`, echo is closed.
pub(crate) fn shed(conn: Conn, shared: &Shared) -> Next {
    shared.metrics.shed.inc();
    match conn.listener.protocol {
        Protocol::Echo => conn.reset(),
        Protocol::Http => {
            // One non-blocking write of a small response: a socket buffer with room
            // takes it whole; if not, the client gets the close alone.
            let _ = (&*conn.stream).write(&canned(503, shared.config().server.server_header.as_deref()));
            conn.close_gracefully()
        }
    }
}

/// A parked connection's deadline passed (see `Phase`).
pub(crate) fn expired(mut conn: Conn, shared: &Shared) -> Next {
    if matches!(conn.phase, Phase::HttpSend(_)) {
        let Phase::HttpSend(out) = std::mem::replace(&mut conn.phase, Phase::Closing) else { return Next::Done };
        // Slower than `body_timeout` or `min_send_rate` allow: cut off. The response's
        // source is dropped by a worker (see `Phase::Abandoned`).
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        tracing::debug!(conn = conn.id, peer = %conn.peer, "client took the response too slowly; cut off");
        shared.metrics.send_cut.inc();
        return conn.park(Phase::Abandoned(out), None);
    }
    if matches!(conn.phase, Phase::Proxy) {
        shared.metrics.proxy_rejected.inc();
        tracing::debug!(conn = conn.id, peer = %conn.peer, "no PROXY header within header_timeout; closed unanswered");
        return Next::Done;
    }
    if matches!(conn.phase, Phase::HttpStalled { .. }) {
        // No room in the budgets came within body_timeout. Not 408: the client was not
        // slow, the server would not read. Not 413: the body is not too large for
        // this server, only for this moment. 503 with Retry-After says "try again".
        tracing::debug!(conn = conn.id, peer = %conn.peer, "no budget room for the request body within body_timeout: 503");
        shared.metrics.response(503, Duration::ZERO);
        let _ = (&*conn.stream).write(&canned(503, shared.config().server.server_header.as_deref()));
        return conn.close_gracefully();
    }
    let partial_head = matches!(conn.phase, Phase::HttpHead) && (!conn.input.is_empty() || conn.incoming.is_some());
    if partial_head || matches!(conn.phase, Phase::HttpBody) {
        // Part of a request came, the rest did not: RFC 9110 §15.5.9.
        tracing::debug!(conn = conn.id, peer = %conn.peer, phase = ?conn.phase, "request timed out: 408");
        shared.metrics.response(408, Duration::ZERO);
        let _ = (&*conn.stream).write(&canned(408, shared.config().server.server_header.as_deref()));
        return conn.close_gracefully();
    }
    tracing::debug!(conn = conn.id, peer = %conn.peer, phase = ?conn.phase, "idle deadline passed; closing");
    Next::Done
}

/// Work that waited on the run queue since `since`: still worth a thread? Work that
/// waited past `queue_timeout` is shed; an HTTP client that has hung up meanwhile is
/// dropped (counted), its request not run. Echo half-closes are normal and are served.
#[allow(clippy::result_large_err)] // a `Conn` moves by value (see `http_turn::receive`)
pub(crate) fn admit(conn: Conn, since: Instant, shared: &Shared) -> Result<Conn, Next> {
    if !sheddable(&conn) {
        return Ok(conn);
    }
    if since.elapsed() > shared.config().pool.queue_timeout {
        return Err(shed(conn, shared));
    }
    if conn.listener.protocol == Protocol::Http && conn.hung_up() {
        shared.metrics.dropped.inc();
        tracing::debug!(conn = conn.id, peer = %conn.peer, "client left while queued; its request is not run");
        return Err(Next::Done);
    }
    Ok(conn)
}

/// Reads (more of) a PROXY header. Complete: the header's source becomes the peer
/// (its destination the local address; a `LOCAL` header keeps the socket's own), the
/// bytes after it are the protocol's first, and the protocol's turn follows at once.
/// Invalid: closed unanswered. Partial: parked again, with the same deadline.
fn proxy_header(mut conn: Conn, shared: &Shared) -> Next {
    let Some((versions, _)) = conn.listener.proxy.clone() else { return Next::Done };
    let mut buf = [0u8; proxy::MAX_HEADER];
    loop {
        match proxy::parse(&conn.input, versions) {
            Ok(proxy::Parsed::Complete { consumed, header }) => {
                if let proxy::Header::Proxied { source, destination } = header {
                    conn.peer = source;
                    conn.local = destination;
                }
                conn.input.drain(..consumed);
                start(&mut conn, shared, Instant::now());
                if conn.listener.protocol == Protocol::Echo {
                    // Echo bytes that came with the header are echoed first.
                    conn.output = std::mem::take(&mut conn.input);
                }
                return turn(conn, shared);
            }
            Ok(proxy::Parsed::Incomplete) => {}
            Err(e) => {
                shared.metrics.proxy_rejected.inc();
                tracing::debug!(conn = conn.id, peer = %conn.peer, error = %e, "invalid PROXY header; closed unanswered");
                return Next::Done;
            }
        }
        // Never past the header's longest form: what follows it is the protocol's.
        let room = proxy::MAX_HEADER.saturating_sub(conn.input.len()).max(1);
        match (&*conn.stream).read(&mut buf[..room]) {
            Ok(0) => return Next::Done,
            Ok(n) => {
                conn.heard = true;
                conn.input.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Next::Park(conn),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Next::Done,
        }
    }
}
