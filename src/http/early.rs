//! Starting a response while the app is still running: [`EarlyResponse`].
//!
//! An app normally returns its whole [`Response`](super::Response) and the server writes
//! it. Some cannot: a WSGI app's `write()` callable must send its bytes as it is called
//! (PEP 3333), and a long loop that reports progress wants each line out as it is made.
//! [`Request::early_response`](super::Request::early_response) gives such an app a
//! handle: `start` writes the status line and headers now (framed as the server frames
//! any streamed body: `Content-Length` if the app gave one, else chunked on HTTP/1.1 or
//! close-delimited on 1.0), and `write` sends body bytes at once. When the app then
//! returns, the server sends the returned response's *body* after what was written
//! (its status and headers are not sent again) and ends the body.
//!
//! `start` and `write` run inside the app, on its worker, so they write at once and,
//! when the client is not taking bytes, wait for it there (`body_timeout` per wait,
//! `min_send_rate` on average): the one place left where a worker waits on a client,
//! and only while the app itself is writing. What the app *returns* after starting is
//! sent from the event side like any streamed body (`outgoing.rs`). An app that fails
//! after `start` cannot be answered 500: the connection is closed, as for a streamed
//! body that fails.

use std::io;
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::encode::{self, Encoded, Framing, KeepAlive, Pace, StreamMode};
use super::outgoing::{Outgoing, Then};
use super::{Response, ResponseBody};

/// What the server knows when it hands a request to an app; turned into an
/// [`EarlyResponse`] only if the app asks for one.
pub(crate) struct Seed<'a> {
    pub(crate) stream: &'a Arc<TcpStream>,
    /// Version and `HEAD` of the request; `keep_alive`: whether the connection may stay
    /// open after the response, as known when the app is called.
    pub(crate) framing: Framing,
    pub(crate) server: Option<&'a str>,
    pub(crate) min_send_rate: usize,
    pub(crate) body_timeout: Duration,
    /// Where the handle is kept for the server to find after the app returns.
    pub(crate) slot: &'a std::sync::OnceLock<EarlyResponse>,
}

impl Seed<'_> {
    pub(crate) fn handle(&self) -> EarlyResponse {
        self.slot
            .get_or_init(|| {
                EarlyResponse(Arc::new(Mutex::new(Early {
                    stream: Arc::downgrade(self.stream),
                    framing: self.framing,
                    server: self.server.map(str::to_string),
                    pace: Pace::new(self.min_send_rate, self.body_timeout),
                    state: State::NotStarted,
                })))
            })
            .clone()
    }
}

/// A handle to start a response before the app returns (see the module docs). `Send`,
/// `Sync` and `'static`: an app may keep it in a callback object, as the WSGI bridge's
/// `write` does. Cloning gives another handle to the same response.
#[derive(Clone)]
pub struct EarlyResponse(Arc<Mutex<Early>>);

struct Early {
    /// Weak: a handle the app keeps (a Python object awaiting its garbage collector)
    /// must not keep the socket open after the server closed the connection.
    stream: Weak<TcpStream>,
    framing: Framing,
    server: Option<String>,
    pace: Pace,
    state: State,
}

enum State {
    NotStarted,
    Started(Started),
    /// A write failed (the client went away or was too slow): the connection ends.
    Broken,
    /// The server has taken the connection back (the app returned): the handle is dead,
    /// so an app thread that kept a clone cannot write into the next response.
    Done,
}

/// A response whose head went out.
pub(crate) struct Started {
    pub(crate) status: u16,
    /// `None`: a response without a body (`HEAD`, 204, 304): writes are discarded.
    mode: Option<StreamMode>,
    pub(crate) keep_alive: KeepAlive,
    /// Body bytes written (for `Content-Length`).
    body: u64,
    /// Bytes written to the socket, framing included.
    pub(crate) wire: u64,
}

impl EarlyResponse {
    fn lock(&self) -> MutexGuard<'_, Early> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends the status line and headers now. The headers are checked as those of a
    /// returned response are (an error here sends nothing: the app may still return a
    /// response, or fail and be answered 500); the app's `Content-Length`, if any, is
    /// the framing and `write` may not exceed it. Starting twice is an error.
    pub fn start(&self, status: u16, reason: Option<String>, headers: Vec<(String, String)>) -> io::Result<()> {
        let mut early = self.lock();
        match early.state {
            State::NotStarted => {}
            State::Done => return Err(done()),
            _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "the response has already started")),
        }
        let mut resp = Response { status, reason, headers, body: ResponseBody::Stream(Box::new(io::empty()), None) };
        encode::check(&mut resp).map_err(|refused| io::Error::new(io::ErrorKind::InvalidData, refused.0))?;
        let (encoded, keep_alive) = encode::encode(resp, early.framing, early.server.as_deref());
        let (head, mode) = match encoded {
            Encoded::Streamed(head, _, mode) => (head, Some(mode)),
            Encoded::Buffered(head) | Encoded::File(head, _) => (head, None),
        };
        let early = &mut *early;
        let stream = early.stream.upgrade().ok_or_else(closed)?;
        if let Err(e) = early.pace.write_all(&stream, &head) {
            early.state = State::Broken;
            return Err(e);
        }
        early.state = State::Started(Started { status, mode, keep_alive, body: 0, wire: head.len() as u64 });
        Ok(())
    }

    /// Whether `start` has sent the head.
    pub fn is_started(&self) -> bool {
        matches!(self.lock().state, State::Started(_) | State::Broken)
    }

    /// Sends body bytes now (one chunk when chunked; an empty write sends nothing).
    pub fn write(&self, data: &[u8]) -> io::Result<()> {
        let mut early = self.lock();
        let early = &mut *early;
        let State::Started(started) = &mut early.state else {
            return Err(match early.state {
                State::Broken => io::Error::new(io::ErrorKind::BrokenPipe, "the response was cut off"),
                State::Done => done(),
                _ => io::Error::new(io::ErrorKind::InvalidInput, "write before start"),
            });
        };
        let stream = early.stream.upgrade().ok_or_else(closed)?;
        let written = match &started.mode {
            None => return Ok(()),
            _ if data.is_empty() => return Ok(()),
            Some(StreamMode::Exact(n)) if started.body + data.len() as u64 > *n => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("more than the Content-Length of {n} bytes"),
                ))
            }
            Some(StreamMode::Chunked) => {
                let mut framed = format!("{:x}\r\n", data.len()).into_bytes();
                framed.extend_from_slice(data);
                framed.extend_from_slice(b"\r\n");
                early.pace.write_all(&stream, &framed).map(|()| framed.len())
            }
            Some(_) => early.pace.write_all(&stream, data).map(|()| data.len()),
        };
        match written {
            Ok(n) => {
                started.body += data.len() as u64;
                started.wire += n as u64;
                Ok(())
            }
            Err(e) => {
                early.state = State::Broken;
                Err(e)
            }
        }
    }

    /// Called when the app has returned: whether it started the response. If not, the
    /// handle is dead from now on and the server answers as usual.
    pub(crate) fn take_back(&self) -> bool {
        let mut early = self.lock();
        if matches!(early.state, State::NotStarted) {
            early.state = State::Done;
        }
        !matches!(early.state, State::Done)
    }

    /// After `take_back` said the response started: the rest of the body (`rest`, from
    /// what the app returned; `None` if it failed, and then the connection closes
    /// without ending the body, the one way left to tell the client) as an
    /// [`Outgoing`] that the turn sends from the event side, and the status for the
    /// access line. `Err` if the connection broke while the app wrote.
    pub(crate) fn finish(&self, rest: Option<ResponseBody>) -> io::Result<(u16, Outgoing)> {
        let mut early = self.lock();
        let early = &mut *early;
        let started = match std::mem::replace(&mut early.state, State::Done) {
            State::Started(started) => started,
            _ => return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the early response was cut off")),
        };
        let pace = std::mem::replace(&mut early.pace, Pace::new(0, Duration::ZERO));
        let then = Then::Next(started.keep_alive);
        let out = match (rest, started.mode) {
            // The app failed after starting: nothing can tell the client but the close.
            (None, _) => {
                let failed = Then::Next(KeepAlive::off("the app failed after starting its response"));
                Outgoing::rest(ResponseBody::Empty, StreamMode::UntilClose, failed, pace, started.wire)
            }
            // No body (HEAD, 204, 304): what the app returns is not sent.
            (Some(_), None) => Outgoing::rest(ResponseBody::Empty, StreamMode::UntilClose, then, pace, started.wire),
            (Some(rest), Some(StreamMode::Exact(total))) => {
                let left = StreamMode::Exact(total.saturating_sub(started.body));
                Outgoing::rest(rest, left, then, pace, started.wire)
            }
            (Some(rest), Some(mode)) => Outgoing::rest(rest, mode, then, pace, started.wire),
        };
        Ok((started.status, out))
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the connection is closed")
}

fn done() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "the app has returned: its early response is over")
}
