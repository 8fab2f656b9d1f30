//! The echo service (RFC 862 over TCP): one worker turn on an echo connection.
//!
//! Runs on a worker thread. A turn reads what is ready without blocking and writes it
//! straight back; it ends when the socket would block (the connection is parked in the
//! lot, costing no thread), when the client half-closes (everything read has been
//! written back: close), or when the turn's byte budget is spent (parked while still
//! readable, so the lot hands it out again behind the connections already waiting):
//! one flooding client cannot starve the others.
//!
//! Bytes read are always written back before the socket closes: output the client is
//! not taking yet is kept on the connection (`Phase::EchoFlush`) and the connection is
//! parked until it becomes writable, so a slow reader costs no thread either. On a stop,
//! a turn finishes writing what it read and then closes gracefully; bytes that arrive
//! after that get a reset, never a silent discard (`Conn::discard_input`).

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::Shutdown;
use std::time::Instant;

use crate::conn::{Conn, Next, Phase};
use crate::shared::Shared;
use crate::sock::write_now;

/// Bytes one turn may echo before yielding the thread.
const TURN_BUDGET: usize = 1 << 20;
/// Read size; also the most output one read can leave pending.
const CHUNK: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; CHUNK]);
}

/// Runs one echo turn on `conn`.
pub(crate) fn turn(mut conn: Conn, shared: &Shared) -> Next {
    let idle = shared.limits().echo_idle_timeout;
    let park = |conn: Conn, phase: Phase| conn.park(phase, idle.map(|d| Instant::now() + d));

    match conn.flush() {
        Ok(true) => {}
        Ok(false) => return park(conn, Phase::EchoFlush),
        Err(e) => return gone(conn, &e),
    }

    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let mut budget = TURN_BUDGET;
        loop {
            if budget == 0 {
                // During a stop a client that never pauses would never let the read
                // reach WouldBlock: everything read has been echoed, so close now
                // (later bytes get a reset, never a silent discard). Seen in CI under
                // load: twenty streaming clients held the drain until graceful_timeout.
                if shared.listeners_closed.is_set() {
                    return conn.close_gracefully();
                }
                return park(conn, Phase::Echo);
            }
            let n = match (&*conn.stream).read(&mut scratch[..]) {
                Ok(0) => {
                    // Half-close from the client: all it sent has been echoed.
                    let _ = conn.stream.shutdown(Shutdown::Write);
                    return Next::Done;
                }
                Ok(n) => {
                    conn.heard = true;
                    n
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // During a stop, close once everything that had arrived is echoed;
                    // what comes after the FIN is answered with a reset.
                    if shared.listeners_closed.is_set() {
                        return conn.close_gracefully();
                    }
                    return park(conn, Phase::Echo);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return gone(conn, &e),
            };
            budget = budget.saturating_sub(n);
            shared.metrics.echo_bytes.add(n as u64);
            // Straight back from the read buffer; only what the client does not take
            // now is copied onto the connection.
            match write_now(&conn.stream, &scratch[..n]) {
                Ok(written) if written == n => {}
                Ok(written) => {
                    conn.output.extend_from_slice(&scratch[written..n]);
                    return park(conn, Phase::EchoFlush);
                }
                Err(e) => return gone(conn, &e),
            }
        }
    })
}

/// The client went away (reset, broken pipe): normal flow, logged at debug.
fn gone(conn: Conn, e: &io::Error) -> Next {
    tracing::debug!(conn = conn.id, peer = %conn.peer, error = %e, "echo client gone");
    Next::Done
}
