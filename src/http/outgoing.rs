//! A response on its way to the client, sent from the event side: no thread waits for
//! a slow reader.
//!
//! When a response does not go out whole at once (a buffered one the socket did not
//! take, a streamed body, a file), the turn keeps an [`Outgoing`] in the connection's
//! phase (`Phase::HttpSend`) and parks the connection for writability. Whichever
//! worker next finds it writable calls [`Outgoing::pump`]: it writes what is pending,
//! pulls the next chunk from the body's source (the app's `Read`, a WSGI iterable, a
//! file with `sendfile(2)`), and writes again, until the socket would block, the turn's
//! share is spent, or the body ends. A source is therefore pulled only as fast as the
//! client takes bytes, at most one chunk ahead of it: a slow reader costs a descriptor
//! and one chunk of memory, not a thread.
//!
//! The client must keep a pace (`Pace`: `body_timeout` per wait, `min_send_rate` on
//! average after a grace period). The park's deadline is what the pace allows; past
//! it the connection is cut and the source dropped — on a worker (`Phase::Abandoned`),
//! because dropping a source may run app code (a WSGI iterable's `close()`, which
//! needs the GIL) that the acceptor must never wait for.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::http::encode::{KeepAlive, Pace, StreamMode};
use crate::http::{FileBody, ResponseBody};
use crate::metrics::Metrics;
use crate::pool::panic_message;
use crate::sock::write_now;

/// The most one pull takes from a body source: also the most a slow reader's
/// connection holds in memory beyond what the kernel's socket buffer took.
const CHUNK: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; CHUNK]);
}

/// What happens once the response is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// The next request, or the close, as the keep-alive decision says.
    Next(KeepAlive),
    /// The request whose body is still to come continues (an interim `100 Continue`
    /// went out).
    Receive,
}

/// A request's figures for its metrics and its access line, logged when its response
/// has gone out (or was cut off).
pub(crate) struct Line {
    pub id: u64,
    pub peer: SocketAddr,
    pub method: String,
    pub path: String,
    pub started: Instant,
    pub status: u16,
}

impl Line {
    /// Counts the response in the metrics and writes its access line.
    pub(crate) fn account(&self, metrics: &Metrics, bytes: u64) {
        metrics.response(self.status, self.started.elapsed());
        tracing::info!(
            target: "spindle::access",
            request = self.id,
            peer = %self.peer,
            method = %self.method,
            path = %self.path,
            status = self.status,
            bytes,
            us = self.started.elapsed().as_micros() as u64,
        );
    }
}

/// Where the rest of the body comes from.
enum Source {
    /// Nothing more than what is pending on the connection.
    Done,
    /// The app's stream, framed by `mode` (`Exact` counts down what is left).
    Stream(Box<dyn Read + Send>, StreamMode),
    /// A file range, sent with `sendfile(2)` (`Content-Length` framing).
    File(FileBody),
}

/// How far a pump got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pumped {
    /// The socket will not take more now: park for writability.
    Blocked,
    /// The turn's share is spent and the socket still takes more: park (it is
    /// writable, so the lot hands it out again, behind the connections already ready).
    Yield,
    /// Everything went out.
    Done,
}

/// A response being sent (see the module docs).
pub(crate) struct Outgoing {
    source: Source,
    pace: Pace,
    then: Then,
    /// Whether the body came out as framed (an app that promised more than it had
    /// leaves the client unable to find the next response: the connection must end).
    whole: bool,
    /// The access line, for a response not yet accounted.
    line: Option<Line>,
    /// Bytes written so far (head included), for the access line.
    wire: u64,
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Done => "done",
            Source::Stream(..) => "stream",
            Source::File(_) => "file",
        };
        f.debug_struct("Outgoing").field("source", &source).field("then", &self.then).field("wire", &self.wire).finish()
    }
}

impl Outgoing {
    /// The rest of a response already on the connection's output, already accounted.
    pub(crate) fn pending(then: Then, pace: Pace) -> Outgoing {
        Outgoing { source: Source::Done, pace, then, whole: true, line: None, wire: 0 }
    }

    /// A streamed body after its head (on the connection's output).
    pub(crate) fn stream(reader: Box<dyn Read + Send>, mode: StreamMode, then: Then, pace: Pace, line: Line) -> Self {
        Outgoing { source: Source::Stream(reader, mode), pace, then, whole: true, line: Some(line), wire: 0 }
    }

    /// A file body after its head (on the connection's output).
    pub(crate) fn file(file: FileBody, then: Then, pace: Pace, line: Line) -> Self {
        Outgoing { source: Source::File(file), pace, then, whole: true, line: Some(line), wire: 0 }
    }

    /// The rest of a response an app started itself (`EarlyResponse`): `wire` bytes
    /// are out already; `rest` follows, framed by `mode`.
    pub(crate) fn rest(rest: ResponseBody, mode: StreamMode, then: Then, pace: Pace, wire: u64) -> Self {
        let reader: Box<dyn Read + Send> = match rest {
            ResponseBody::Empty => Box::new(io::empty()),
            ResponseBody::Bytes(b) => Box::new(io::Cursor::new(b)),
            ResponseBody::Stream(r, _) => r,
            ResponseBody::File(f) => Box::new(f),
        };
        Outgoing { source: Source::Stream(reader, mode), pace, then, whole: true, line: None, wire }
    }

    /// Sets the access line to write when the response is out.
    pub(crate) fn with_line(mut self, line: Line) -> Self {
        self.line = Some(line);
        self
    }

    /// What happens after the response: the connection closes if the body could not
    /// be sent as framed.
    pub(crate) fn then(&self) -> Then {
        match self.then {
            Then::Next(mut ka) if !self.whole => {
                ka.disable("the body ended short of its Content-Length");
                Then::Next(ka)
            }
            then => then,
        }
    }

    /// How long the client may take before it must have taken more; zero: it is too
    /// slow already.
    pub(crate) fn allowed_wait(&self) -> Duration {
        self.pace.budget()
    }

    /// Counts the response (once) in the metrics and the access log, with the bytes
    /// that went out.
    pub(crate) fn account(&mut self, metrics: &Metrics) {
        if let Some(line) = self.line.take() {
            metrics.bytes_out.add(self.wire);
            line.account(metrics, self.wire);
        }
    }

    /// Writes what `output` holds and pulls more from the source, without blocking,
    /// until the socket would block, `max` bytes went out, or the body ended.
    /// `Err`: the connection broke, or the app's stream failed (the client cannot be
    /// told: the connection must end).
    pub(crate) fn pump(&mut self, socket: &TcpStream, output: &mut Vec<u8>, max: usize) -> io::Result<Pumped> {
        let mut moved = 0usize;
        loop {
            if !output.is_empty() {
                let n = write_now(socket, output)?;
                output.drain(..n);
                self.took(n);
                moved += n;
                if !output.is_empty() {
                    return Ok(Pumped::Blocked);
                }
            }
            if matches!(self.source, Source::Done) {
                return Ok(Pumped::Done);
            }
            if moved >= max {
                return Ok(Pumped::Yield);
            }
            match &mut self.source {
                Source::Done => {}
                Source::File(file) => {
                    if file.is_empty() {
                        self.source = Source::Done;
                        continue;
                    }
                    match file.send_to(socket, (max - moved).max(CHUNK)) {
                        Ok(0) => {
                            // The file is shorter than the range its Content-Length
                            // announced (truncated meanwhile).
                            self.whole = false;
                            self.source = Source::Done;
                        }
                        Ok(n) => {
                            self.took(n);
                            moved += n;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Pumped::Blocked),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Source::Stream(reader, mode) => {
                    if pull(reader, mode, output, &mut self.whole)? {
                        self.source = Source::Done;
                    }
                }
            }
        }
    }

    fn took(&mut self, n: usize) {
        self.pace.sent(n);
        self.wire += n as u64;
    }
}

/// Pulls the next piece of a streamed body onto `output`, framed. Returns whether the
/// body has ended (its last framing included).
fn pull(
    reader: &mut Box<dyn Read + Send>,
    mode: &mut StreamMode,
    output: &mut Vec<u8>,
    whole: &mut bool,
) -> io::Result<bool> {
    let room = match mode {
        StreamMode::Exact(0) => return Ok(true),
        StreamMode::Exact(left) => (*left).min(CHUNK as u64) as usize,
        _ => CHUNK,
    };
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let n = loop {
            // The app's code runs here (a Rust `Read`, a WSGI iterable's `next()`): a
            // panic ends this response, not the worker.
            match catch_unwind(AssertUnwindSafe(|| reader.read(&mut scratch[..room]))) {
                Ok(Ok(n)) => break n,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(panic) => {
                    return Err(io::Error::other(format!("the app's body stream panicked: {}", panic_message(&*panic))))
                }
            }
        };
        if n == 0 {
            match mode {
                StreamMode::Chunked => output.extend_from_slice(b"0\r\n\r\n"),
                // Less than the Content-Length announced.
                StreamMode::Exact(_) => *whole = false,
                StreamMode::UntilClose => {}
            }
            return Ok(true);
        }
        match mode {
            StreamMode::Exact(left) => {
                *left -= n as u64;
                output.extend_from_slice(&scratch[..n]);
            }
            StreamMode::Chunked => {
                output.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                output.extend_from_slice(&scratch[..n]);
                output.extend_from_slice(b"\r\n");
            }
            StreamMode::UntilClose => output.extend_from_slice(&scratch[..n]),
        }
        Ok(matches!(mode, StreamMode::Exact(0)))
    })
}
