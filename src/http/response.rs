//! What an app returns: a [`Response`] (status, reason, headers) and its
//! [`ResponseBody`]: bytes, a stream pulled as the client takes it, or a file range
//! sent with `sendfile(2)` ([`FileBody`]). The server frames and sends it
//! (`encode.rs`, `outgoing.rs`); these types only carry it.

use std::io::{self, Read};
use std::net::TcpStream;

/// A response body.
pub enum ResponseBody {
    /// No body.
    Empty,
    /// A body whose length is known: sent with `Content-Length`.
    Bytes(Vec<u8>),
    /// A streamed body: chunked on HTTP/1.1 (or `Content-Length` when the length is
    /// given), close-delimited on HTTP/1.0. The server pulls it a chunk at a time from
    /// whichever worker finds the client ready for more, so a slow reader holds no
    /// thread: `read` is called only when the client has taken what came before, and it
    /// may be called on a different thread each time (hence `Send + 'static`).
    Stream(Box<dyn Read + Send>, Option<u64>),
    /// A range of a file, sent with `sendfile(2)`: from the page cache to the socket,
    /// no copy through user space, and no thread while the client is slow.
    File(FileBody),
}

/// A range of an open file as a response body (see [`Response::file`]): the file is
/// sent with `sendfile(2)` from the event side, and closed when the response ends.
pub struct FileBody {
    file: std::fs::File,
    /// The next byte to send.
    offset: u64,
    /// One past the last byte to send.
    end: u64,
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

impl FileBody {
    /// The bytes `range` of `file` (not checked against its length: a file that turns
    /// out shorter ends the connection, as a short streamed body does).
    pub fn new(file: std::fs::File, range: std::ops::Range<u64>) -> FileBody {
        FileBody { file, offset: range.start, end: range.end.max(range.start), on_end: None }
    }

    /// Runs `f` once when the server is done with the body, however the response ended
    /// (sent, cut off, the client gone, the server stopping): what a WSGI
    /// `file_wrapper`'s `close()` needs.
    pub fn on_end(mut self, f: impl FnOnce() + Send + 'static) -> FileBody {
        self.on_end = Some(Box::new(f));
        self
    }

    /// Bytes left to send.
    pub fn len(&self) -> u64 {
        self.end - self.offset
    }

    /// Whether nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.offset >= self.end
    }

    /// Sends what the socket takes now with `sendfile(2)`, at most `max` bytes.
    /// `Ok(0)` with bytes left means the file is shorter than the range.
    pub(crate) fn send_to(&mut self, socket: &TcpStream, max: usize) -> io::Result<usize> {
        let count = self.len().min(max as u64) as usize;
        if count == 0 {
            return Ok(0);
        }
        let mut offset = self.offset;
        let n = rustix::fs::sendfile(socket, &self.file, Some(&mut offset), count)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Reads the rest of the range (with `pread`, leaving the file's position alone): for
/// the framings `sendfile` cannot do (a chunked body after an early response).
impl Read for FileBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = self.len().min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        if let Some(f) = self.on_end.take() {
            f();
        }
    }
}

/// A response as an app returns it. The server adds `Date`, `Server`, framing and
/// `Connection`; an app that sets a hop-by-hop header, or a header with CR, LF or NUL,
/// gets a 500 instead (and its mistake is logged).
pub struct Response {
    /// Status code (100..=999).
    pub status: u16,
    /// The reason phrase; `None`: the standard one for the status (`Not Found`). A
    /// WSGI app's own (`404 NOT FOUND` from Werkzeug) is sent as it gave it.
    pub reason: Option<String>,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: ResponseBody,
}

impl Response {
    /// A response with no body.
    pub fn empty(status: u16) -> Self {
        Response { status, reason: None, headers: Vec::new(), body: ResponseBody::Empty }
    }
    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::bytes(status, "text/plain; charset=utf-8", body.into().into_bytes())
    }
    /// A response with a known-length body of `content_type`.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Response {
            status,
            reason: None,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: ResponseBody::Bytes(body),
        }
    }
    /// A streamed response of unknown length, pulled from `body` as the client takes
    /// it (see [`ResponseBody::Stream`]).
    pub fn stream(status: u16, body: impl Read + Send + 'static) -> Self {
        Response { status, reason: None, headers: Vec::new(), body: ResponseBody::Stream(Box::new(body), None) }
    }
    /// A response of `range` of `file` (`..` for all of it), sent with `sendfile(2)`
    /// and `Content-Length`. Fails if the file's length cannot be read or the range
    /// does not fit in it. The app sets `Content-Type` (and, for a part, `206` and
    /// `Content-Range`) itself.
    ///
    /// ```no_run
    /// # fn f() -> std::io::Result<spindle::http::Response> {
    /// let file = std::fs::File::open("/srv/www/video.mp4")?;
    /// Ok(spindle::http::Response::file(200, file, ..)?.with_header("Content-Type", "video/mp4"))
    /// # }
    /// ```
    pub fn file(status: u16, file: std::fs::File, range: impl std::ops::RangeBounds<u64>) -> io::Result<Self> {
        use std::ops::Bound;
        let size = file.metadata()?.len();
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => size,
        };
        if start > end || end > size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("range {start}..{end} does not fit a file of {size} bytes"),
            ));
        }
        Ok(Response {
            status,
            reason: None,
            headers: Vec::new(),
            body: ResponseBody::File(FileBody::new(file, start..end)),
        })
    }
    /// Sets the reason phrase (tab, space, visible ASCII and obs-text only, RFC 9112
    /// §4; anything else is the app's mistake, answered 500).
    pub fn with_reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_string());
        self
    }
    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}
