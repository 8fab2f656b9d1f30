//! The one place that knows which protocol a connection speaks: what a new connection
//! waits for, its turn, how it is shed, what its expired deadline means, and whether
//! work that waited on the run queue is still worth doing. The acceptor, the lot and
//! the server call these and never match on the protocol themselves.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::config::Protocol;
use crate::conn::{Conn, Next, Phase};
use crate::http::response::canned;
use crate::shared::Shared;
use crate::{echo, http};

/// Sets up a freshly accepted connection to wait (parked) for its first bytes: no
/// thread is spent on a client that connects and says nothing.
pub(crate) fn opened(conn: &mut Conn, shared: &Shared, now: Instant) {
    let limits = shared.limits();
    match conn.listener.protocol {
        Protocol::Echo => {
            conn.phase = Phase::Echo;
            conn.deadline = limits.echo_idle_timeout.map(|d| now + d);
            // Echo bytes that arrive once the server has decided to close were never
            // echoed: the client gets a reset, not a clean close.
            conn.reset_on_late_input = true;
        }
        Protocol::Http => {
            // The first head's header_timeout runs from the connection's accept.
            conn.phase = Phase::HttpHead;
            conn.head_started = Some(now);
            conn.deadline = Some(now + limits.header_timeout);
        }
    }
}

/// One turn of the connection's protocol, on a worker thread.
pub(crate) fn turn(conn: Conn, shared: &Shared) -> Next {
    if conn.phase == Phase::Closing {
        return conn.linger();
    }
    match conn.listener.protocol {
        Protocol::Echo => echo::turn(conn, shared),
        Protocol::Http => http::conn::turn(conn, shared),
    }
}

/// Whether shedding may turn this connection away: only work not yet begun (a new
/// request or echo bytes), never a request half received or a response half sent.
pub(crate) fn sheddable(conn: &Conn) -> bool {
    match conn.phase {
        Phase::Echo => conn.output.is_empty(),
        Phase::HttpHead => conn.incoming.is_none(),
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
pub(crate) fn expired(conn: Conn, shared: &Shared) -> Next {
    let partial_head = conn.phase == Phase::HttpHead && (!conn.input.is_empty() || conn.incoming.is_some());
    if partial_head || conn.phase == Phase::HttpBody {
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
#[allow(clippy::result_large_err)] // a `Conn` moves by value (see `http::conn::receive`)
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
