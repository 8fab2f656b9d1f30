//! Writing responses: the server's half of the WSGI contract. The app says status,
//! headers and body; this module decides the framing (RFC 9112 §6): `Content-Length`
//! when the length is known, chunked on HTTP/1.1 otherwise, close-delimited on
//! HTTP/1.0; no body for `HEAD`, 1xx, 204 and 304. It adds `Date` (RFC 9110 §6.6.1),
//! `Server` and `Connection`, and refuses what an app must not send: hop-by-hop headers
//! and names or values with CR, LF or NUL (response splitting), which become a 500.
//!
//! The head and a small body go out in one `write` (one syscall, one TCP segment).
//! Runs on worker threads; writes wait for the client at most the given timeout.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::net::TcpStream;

use mio::Interest;

use crate::http::{FileBody, Response, ResponseBody, Version};
use crate::sock::wait_ready;

/// How the response must be framed, from the request.
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    /// The request's version.
    pub version: Version,
    /// The request was `HEAD`: headers only.
    pub head_only: bool,
    /// Whether the connection may stay open after this response.
    pub keep_alive: KeepAlive,
}

/// Whether a connection stays open after the response: the one keep-alive decision,
/// carried from the request to the last byte of its response. It starts on, and every
/// reason to close turns it off for good (hyper's `KA::disable`); nothing turns it on
/// again. The first reason is kept for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeepAlive(Option<&'static str>);

impl KeepAlive {
    /// The connection may stay open.
    pub(crate) const ON: KeepAlive = KeepAlive(None);

    /// Closed from the start, for `reason`.
    pub(crate) const fn off(reason: &'static str) -> KeepAlive {
        KeepAlive(Some(reason))
    }

    /// The connection closes after this response, for `reason` (unless it already
    /// closes for an earlier one).
    pub(crate) fn disable(&mut self, reason: &'static str) {
        if self.0.is_none() {
            self.0 = Some(reason);
        }
    }

    /// Whether the connection stays open.
    pub(crate) fn is_on(self) -> bool {
        self.0.is_none()
    }

    /// Why it closes, if it does.
    pub(crate) fn reason(self) -> Option<&'static str> {
        self.0
    }
}

/// Why an app's response was refused (it becomes a 500; this is logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// The reason phrase for `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A small `Connection: close` response the acceptor writes itself, without a worker:
/// 503 when the queue is full, 408 when a head did not arrive within `header_timeout`.
pub(crate) fn canned(status: u16, server: Option<&str>) -> Vec<u8> {
    let reason = reason(status);
    let body = format!("{}\n", reason.to_ascii_lowercase());
    let mut out = format!("HTTP/1.1 {status} {reason}\r\nDate: {}\r\n", now_imf_fixdate());
    if let Some(server) = server {
        out.push_str(&format!("Server: {server}\r\n"));
    }
    if status == 503 {
        out.push_str("Retry-After: 1\r\n");
    }
    out.push_str(&format!(
        "Connection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    out.into_bytes()
}

/// A plain-text error response: the status line's words as the body.
pub fn error(status: u16, detail: &str) -> Response {
    let body =
        if detail.is_empty() { format!("{}\n", reason(status)) } else { format!("{}: {detail}\n", reason(status)) };
    Response::text(status, body)
}

const HOP_BY_HOP: [&str; 8] =
    ["connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "proxy-connection", "content-length"];

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks an app's response and takes out its `Content-Length` (the server frames).
/// Returns the declared length if the app gave one.
pub fn check(resp: &mut Response) -> Result<(), Refused> {
    if !(200..=999).contains(&resp.status) {
        return Err(Refused(format!("status {} is not a final status code", resp.status)));
    }
    // reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ) (RFC 9112 §4): no CR or LF
    // to split the head with.
    if let Some(r) = &resp.reason {
        if r.is_empty() || r.chars().any(|c| c != '\t' && (c.is_control() || c == '\u{7f}' || u32::from(c) > 0xff)) {
            return Err(Refused(format!(
                "reason phrase {r:?} is empty or has control characters or characters beyond ISO-8859-1"
            )));
        }
    }
    let mut declared = None;
    for (name, value) in &resp.headers {
        if !is_token(name) {
            return Err(Refused(format!("header name {name:?} is not a token")));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(Refused(format!("header {name} has CR, LF or NUL in its value")));
        }
        if let Some(c) = value.chars().find(|c| u32::from(*c) > 0xff) {
            return Err(Refused(format!(
                "header {name} has {c:?} in its value: field values are ISO-8859-1 text (RFC 9110 §5.5), sent one byte a character"
            )));
        }
        let lower = name.to_ascii_lowercase();
        if lower == "content-length" {
            let n = value
                .trim()
                .parse::<u64>()
                .map_err(|_| Refused(format!("Content-Length {value:?} is not a number")))?;
            declared = Some(n);
        } else if HOP_BY_HOP.contains(&lower.as_str()) {
            return Err(Refused(format!("hop-by-hop header {name} is the server's to set")));
        }
    }
    if let Some(n) = declared {
        resp.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
        match &mut resp.body {
            ResponseBody::Bytes(b) if b.len() as u64 != n => {
                return Err(Refused(format!("Content-Length {n} but a body of {} bytes", b.len())));
            }
            ResponseBody::Empty if n != 0 => return Err(Refused(format!("Content-Length {n} but no body"))),
            ResponseBody::Stream(_, len) => *len = Some(n),
            ResponseBody::File(f) if f.len() != n => {
                return Err(Refused(format!("Content-Length {n} but a file range of {} bytes", f.len())));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A response turned into bytes: all of it when its body is in memory, else the head
/// and where the body comes from.
pub(crate) enum Encoded {
    /// Head and body, complete.
    Buffered(Vec<u8>),
    /// The head, then a body read from the app's stream.
    Streamed(Vec<u8>, Box<dyn Read + Send>, StreamMode),
    /// The head, then a file range (always `Content-Length`).
    File(Vec<u8>, FileBody),
}

/// How a streamed body is framed on the wire.
pub(crate) enum StreamMode {
    /// `Content-Length: n`.
    Exact(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Delimited by closing the connection (HTTP/1.0).
    UntilClose,
}

/// Encodes `resp` (already `check`ed). Returns the bytes (or head and stream) and
/// whether the connection may stay open after it (`framing`'s decision, turned off if
/// the body can only be delimited by the close).
pub(crate) fn encode(resp: Response, framing: Framing, server: Option<&str>) -> (Encoded, KeepAlive) {
    let status = resp.status;
    let no_body = framing.head_only || status == 204 || status == 304 || status < 200;
    let mut keep_alive = framing.keep_alive;
    let mut head = String::with_capacity(256);
    let _ = write!(head, "HTTP/1.1 {status} {}\r\n", resp.reason.as_deref().unwrap_or(reason(status)));
    head.push_str("Date: ");
    date(&mut head);
    head.push_str("\r\n");
    if let Some(server) = server {
        let _ = write!(head, "Server: {server}\r\n");
    }
    for (name, value) in &resp.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let mut body = None;
    let mut stream = None;
    let mut file = None;
    match resp.body {
        ResponseBody::Empty => {
            if status != 204 && status != 304 {
                head.push_str("Content-Length: 0\r\n");
            }
        }
        ResponseBody::Bytes(b) => {
            if status != 204 && status != 304 {
                let _ = write!(head, "Content-Length: {}\r\n", b.len());
            }
            if !no_body {
                body = Some(b);
            }
        }
        ResponseBody::Stream(r, Some(n)) => {
            if status != 204 && status != 304 {
                let _ = write!(head, "Content-Length: {n}\r\n");
            }
            if !no_body {
                stream = Some((r, StreamMode::Exact(n)));
            }
        }
        ResponseBody::File(f) => {
            if status != 204 && status != 304 {
                let _ = write!(head, "Content-Length: {}\r\n", f.len());
            }
            if !no_body && !f.is_empty() {
                file = Some(f);
            }
        }
        ResponseBody::Stream(_, None) if no_body => {}
        ResponseBody::Stream(r, None) => match framing.version {
            Version::Http11 => {
                head.push_str("Transfer-Encoding: chunked\r\n");
                stream = Some((r, StreamMode::Chunked));
            }
            Version::Http10 => {
                keep_alive.disable("a body delimited by closing the connection (HTTP/1.0)");
                stream = Some((r, StreamMode::UntilClose));
            }
        },
    }
    if !keep_alive.is_on() {
        head.push_str("Connection: close\r\n");
    } else if framing.version == Version::Http10 {
        head.push_str("Connection: keep-alive\r\n");
    }
    head.push_str("\r\n");
    let mut out = latin1(head);
    if let Some(f) = file {
        return (Encoded::File(out, f), keep_alive);
    }
    match stream {
        Some((r, mode)) => (Encoded::Streamed(out, r, mode), keep_alive),
        None => {
            if let Some(b) = body {
                out.extend_from_slice(&b);
            }
            (Encoded::Buffered(out), keep_alive)
        }
    }
}

/// The pace a client must keep while it is sent a streamed or file body (ASP.NET
/// Kestrel's `MinResponseDataRate`): no single wait for it longer than `stall`
/// (`body_timeout`), and after `GRACE` an average of at least `min_rate` bytes per
/// second (`min_send_rate`). The event side parks the connection until `budget()`
/// from now; an early response's `write` waits that long on its app's thread.
pub(crate) struct Pace {
    started: Instant,
    sent: u64,
    min_rate: u64,
    stall: Duration,
}

/// How long a streamed response may go at any pace before `min_send_rate` applies.
const GRACE: Duration = Duration::from_secs(5);

impl Pace {
    pub(crate) fn new(min_rate: usize, stall: Duration) -> Pace {
        Pace { started: Instant::now(), sent: 0, min_rate: min_rate as u64, stall }
    }

    /// The longest the next wait for the client may be; zero: it is too slow already.
    pub(crate) fn budget(&self) -> Duration {
        if self.min_rate == 0 {
            return self.stall;
        }
        let earned = GRACE + Duration::from_secs_f64(self.sent as f64 / self.min_rate as f64);
        earned.saturating_sub(self.started.elapsed()).min(self.stall)
    }

    /// Counts bytes the client took.
    pub(crate) fn sent(&mut self, n: usize) {
        self.sent += n as u64;
    }

    /// Writes all of `buf`, waiting for the client within the pace, on this thread:
    /// only for an app's own `EarlyResponse::write`, which runs inside the app.
    pub(crate) fn write_all(&mut self, conn: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match (&*conn).write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    self.sent(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let budget = self.budget();
                    if budget.is_zero() || !wait_ready(conn, Interest::WRITABLE, budget)? {
                        return Err(too_slow());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The error of a client cut off for taking a response too slowly.
pub(crate) fn too_slow() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "client took the response slower than min_send_rate or body_timeout allow")
}

thread_local! {
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends the current time as an IMF-fixdate (RFC 9110 §5.6.7), cached per second.
fn date(out: &mut String) {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.0 != secs {
            *cache = (secs, imf_fixdate(secs));
        }
        out.push_str(&cache.1);
    });
}

/// The current time as an IMF-fixdate.
pub fn now_imf_fixdate() -> String {
    let mut s = String::with_capacity(29);
    date(&mut s);
    s
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for seconds since the Unix epoch.
pub fn imf_fixdate(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let weekday = DAYS[((days + 4) % 7) as usize]; // 1970-01-01 was a Thursday
                                                   // Civil date from a day count (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A response head as bytes: each character is one ISO-8859-1 byte (`check` refused
/// any beyond U+00FF). HTTP field values are octets whose historical charset is
/// ISO-8859-1 (RFC 9110 §5.5), and PEP 3333 has WSGI servers send header strings
/// encoded so: `é` in a value is the one byte 0xE9, not UTF-8's two.
fn latin1(head: String) -> Vec<u8> {
    if head.is_ascii() {
        return head.into_bytes();
    }
    head.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imf_fixdate_matches_known_dates() {
        for (secs, want) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"), // RFC 9110's example
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_798_761_599, "Thu, 31 Dec 2026 23:59:59 GMT"),
        ] {
            assert_eq!(imf_fixdate(secs), want, "{secs}");
        }
    }

    #[test]
    fn an_apps_reason_phrase_is_sent_and_the_standard_one_otherwise() {
        let framing = Framing { version: Version::Http11, head_only: false, keep_alive: KeepAlive::ON };
        for (resp, line) in [
            (Response::empty(404).with_reason("NOT FOUND"), &b"HTTP/1.1 404 NOT FOUND\r\n"[..]),
            (Response::empty(404), b"HTTP/1.1 404 Not Found\r\n"),
        ] {
            let (Encoded::Buffered(out), _) = encode(resp, framing, None) else { panic!("buffered") };
            assert!(out.starts_with(line), "{}", String::from_utf8_lossy(&out));
        }
    }

    #[test]
    fn header_values_go_out_as_iso_8859_1() {
        let resp = Response::text(200, "x").with_header("X-Latin", "caf\u{e9}");
        let framing = Framing { version: Version::Http11, head_only: false, keep_alive: KeepAlive::ON };
        let (Encoded::Buffered(out), _) = encode(resp, framing, None) else { panic!("buffered") };
        assert!(out.windows(13).any(|w| w == b"X-Latin: caf\xe9"), "{out:?}");
    }

    #[test]
    fn app_responses_that_would_split_or_reframe_are_refused() {
        let cases: Vec<(Response, bool)> = vec![
            (Response::text(200, "x").with_header("X-Ok", "fine"), true),
            (Response::text(200, "x").with_header("X-Bad", "a\r\nSet-Cookie: evil=1"), false),
            (Response::text(200, "x").with_header("X-Nul", "a\0b"), false),
            (Response::text(200, "x").with_header("Bad Name", "v"), false),
            (Response::text(200, "x").with_header("Transfer-Encoding", "chunked"), false),
            (Response::text(200, "x").with_header("Connection", "close"), false),
            (Response::text(200, "x").with_header("Content-Length", "1"), true),
            (Response::text(200, "x").with_header("Content-Length", "2"), false),
            (Response::empty(101), false),
            (Response::empty(404).with_reason("NOT FOUND"), true),
            (Response::empty(404).with_reason("x\r\nSet-Cookie: a=b"), false),
            (Response::empty(404).with_reason(""), false),
            (Response::text(200, "x").with_header("X-Latin", "caf\u{e9}"), true),
            (Response::text(200, "x").with_header("X-Euro", "\u{20ac}"), false),
        ];
        for (i, (mut resp, ok)) in cases.into_iter().enumerate() {
            assert_eq!(check(&mut resp).is_ok(), ok, "case {i}");
        }
    }
}
