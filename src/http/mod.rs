//! HTTP/1.1: the WSGI-like `App` interface, mounting apps on path prefixes, and the
//! pieces of a turn (`conn` runs one on a worker; `parse` and `body` are sans-IO;
//! `response` writes; `apps` holds the built-in apps).
//!
//! An [`App`] is the Rust shape of a WSGI callable: a `Send + Sync` value called on a
//! worker thread with a [`Request`] (the environ and the body as a `Read`) that returns a
//! [`Response`] (status, headers, and a body of bytes or a `Read` stream) or an error.
//! The server owns framing (`Content-Length` or chunked, `HEAD`, `100-continue`,
//! keep-alive, `Date`), limits and error answers; the app never sees the socket.
//!
//! ```
//! use spindle::http::{app_fn, App, AppResult, Request, Response};
//!
//! struct Hello;
//! impl App for Hello {
//!     fn call<'a>(&self, req: Request<'a>) -> AppResult {
//!         Ok(Response::text(200, format!("hello from {}\n", req.path())))
//!     }
//! }
//!
//! // The same as a closure, and called without a socket, as a unit test would:
//! let hello = app_fn(|req| Ok(Response::text(200, format!("hello from {}\n", req.path()))));
//! let req = Request::builder().target("/x").build().unwrap();
//! assert_eq!(hello.call(req).unwrap().status, 200);
//! ```

pub(crate) mod apps;
pub(crate) mod body;
pub(crate) mod conn;
pub(crate) mod early;
pub(crate) mod forwarded;
pub(crate) mod outgoing;
pub(crate) mod parse;
pub(crate) mod receive;
pub(crate) mod response;

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Cursor, Read};
use std::marker::PhantomData;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Weak};

use receive::ReceivedBody;

pub use early::EarlyResponse;
pub use parse::Version;

/// What an app returns: a response, or an error the server answers with 500 (or with
/// the body's own status when the error came from reading a malformed body).
pub type AppResult = Result<Response, AppError>;

/// An app's failure; logged with the request id, answered with 500.
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// A WSGI-like application, called on a worker thread once per request.
///
/// `call` may block (it runs on a pool thread, not on an event loop) and may panic: a
/// panic is caught, answered with 500, logged with the request id, and the worker
/// carries on. The body has been received whole before `call` (in memory, or in a
/// temporary file when large), so reading it never waits on the client. The response
/// owns what it sends (`Response::stream(req.into_body())` streams the body back): the
/// server sends it after `call` has returned, from whichever worker finds the client
/// ready for more.
pub trait App: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, req: Request<'_>) -> AppResult;
}

/// A shared app is an app: one instance mounted at several prefixes or listeners.
impl<A: App + ?Sized> App for Arc<A> {
    fn call<'a>(&self, req: Request<'a>) -> AppResult {
        (**self).call(req)
    }
}

/// Makes an [`App`] of a closure (hyper's `service_fn`): per-mount state is whatever
/// the closure captures.
///
/// ```
/// use spindle::http::{app_fn, Response};
/// let greeting = String::from("hi");
/// let app = app_fn(move |_req| Ok(Response::text(200, greeting.clone())));
/// # let _ = spindle::Server::builder(spindle::Config::embedded_default()).mount("/hi", app);
/// ```
pub fn app_fn<F>(f: F) -> AppFn<F>
where
    F: Fn(Request<'_>) -> AppResult + Send + Sync + 'static,
{
    AppFn(f)
}

/// A closure as an [`App`]; made by [`app_fn`].
pub struct AppFn<F>(F);

impl<F> App for AppFn<F>
where
    F: Fn(Request<'_>) -> AppResult + Send + Sync + 'static,
{
    fn call<'a>(&self, req: Request<'a>) -> AppResult {
        (self.0)(req)
    }
}

/// A request as an app sees it.
pub struct Request<'a> {
    pub(crate) head: parse::Head,
    pub(crate) peer: SocketAddr,
    pub(crate) scheme: &'static str,
    pub(crate) local: SocketAddr,
    pub(crate) listener: Cow<'a, str>,
    pub(crate) script_name: Cow<'a, str>,
    pub(crate) id: u64,
    pub(crate) body: Body<'a>,
    pub(crate) probe: DisconnectProbe,
    /// `None` for a request built without a socket.
    pub(crate) early: Option<early::Seed<'a>>,
}

impl Request<'static> {
    /// Builds a request without a socket, for unit tests of an app (tiny-http's
    /// `TestRequest`).
    pub fn builder() -> RequestBuilder {
        RequestBuilder::default()
    }
}

impl<'a> Request<'a> {
    /// The method, as sent (`GET`).
    pub fn method(&self) -> &str {
        &self.head.method
    }
    /// The request-target as sent (`/a%20b?x=1`, or absolute-form).
    pub fn target(&self) -> &str {
        &self.head.target
    }
    /// The percent-decoded path (`/a b`).
    pub fn path(&self) -> &str {
        &self.head.path
    }
    /// The path as sent, not percent-decoded (`/a%20b`; WSGI servers' `RAW_URI`).
    pub fn raw_path(&self) -> &str {
        &self.head.raw_path
    }
    /// The query string, raw (`x=1`), empty if none.
    pub fn query(&self) -> &str {
        &self.head.query
    }
    /// HTTP/1.0 or HTTP/1.1.
    pub fn version(&self) -> Version {
        self.head.version
    }
    /// All headers in order, names as sent; repeated headers are kept. Values that
    /// are not UTF-8 are lossy here; see [`Request::header_bytes`].
    pub fn headers(&self) -> &[(String, String)] {
        &self.head.headers
    }
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }
    /// The exact bytes of the first header named `name` (case-insensitive), OWS
    /// trimmed. [`Request::header`] and [`Request::headers`] give values as `&str`:
    /// a value with obs-text that is not UTF-8 (RFC 9110 §5.5 allows bytes
    /// 0x80–0xFF) is accepted and given there as its lossy decoding, each invalid
    /// sequence as U+FFFD (the rule [`Request::path`] follows too); this gives the
    /// bytes as sent.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.head.header_bytes(name)
    }
    /// Every header named `name` (case-insensitive), in order.
    pub fn headers_all<'b>(&'b self, name: &'b str) -> impl Iterator<Item = &'b str> + 'b {
        self.head.headers_all(name)
    }
    /// The client's address: the socket's peer, or the client a PROXY header (on a
    /// `proxy_protocol` listener) or a trusted proxy's forwarding headers (from
    /// `forwarded_trusted`) named.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
    /// `"http"`, or `"https"` when a trusted proxy said the client used it
    /// (`Forwarded: proto=` or `X-Forwarded-Proto`): `wsgi.url_scheme`.
    pub fn scheme(&self) -> &str {
        self.scheme
    }
    /// The local address the client connected to.
    pub fn local(&self) -> SocketAddr {
        self.local
    }
    /// The listener's name from the config.
    pub fn listener(&self) -> &str {
        &self.listener
    }
    /// The mount prefix this app is served under (WSGI `SCRIPT_NAME`; "" at "/").
    pub fn script_name(&self) -> &str {
        &self.script_name
    }
    /// The path below the mount prefix (WSGI `PATH_INFO`).
    pub fn path_info(&self) -> &str {
        &self.head.path[self.script_name.len().min(self.head.path.len())..]
    }
    /// Every header in order with its value's exact bytes (OWS trimmed): what
    /// [`Request::headers`] gives, without the lossy decoding of obs-text (a WSGI
    /// server hands these on as latin-1).
    pub fn header_fields(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.head.headers.iter().enumerate().map(|(i, (name, value))| {
            let raw = self.head.raw_values.iter().find(|(at, _)| *at == i).map(|(_, raw)| raw.as_slice());
            (name.as_str(), raw.unwrap_or(value.as_bytes()))
        })
    }
    /// A handle that tells whether this request's client has gone (closed or reset
    /// its connection) while the app works: a long-running app can poll it and give
    /// up (waitress's `waitress.client_disconnected`). `Send + 'static`; it does not
    /// keep the connection open.
    pub fn disconnect_probe(&self) -> DisconnectProbe {
        self.probe.clone()
    }
    /// A handle to send the response's head and body bytes before `call` returns
    /// (PEP 3333's `write()`, progress output): see [`EarlyResponse`]. `None` for a
    /// request built without a socket ([`Request::builder`]).
    pub fn early_response(&self) -> Option<EarlyResponse> {
        self.early.as_ref().map(early::Seed::handle)
    }
    /// A process-unique id, also in the access log line.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The request body (complete, de-chunked, at most `max_body_bytes`).
    pub fn body(&mut self) -> &mut Body<'a> {
        &mut self.body
    }
    /// The body, by value (to stream it into a response): it owns what the server
    /// received, so it may outlive the request.
    pub fn into_body(self) -> Body<'static> {
        self.body.into_owned()
    }
    /// Takes the body out, leaving an empty one: an owned `Read + Send + 'static`
    /// that may outlive the request (a bridge hands it to another runtime).
    pub fn take_body(&mut self) -> Body<'static> {
        std::mem::replace(&mut self.body, Body::from_bytes(Vec::new())).into_owned()
    }

    /// The CGI/WSGI environ: `REQUEST_METHOD`, `SCRIPT_NAME`, `PATH_INFO`,
    /// `QUERY_STRING`, `CONTENT_TYPE`, `CONTENT_LENGTH`, `SERVER_NAME`, `SERVER_PORT`,
    /// `SERVER_PROTOCOL`, `REMOTE_ADDR`, `REMOTE_PORT`, and `HTTP_*` for the other
    /// headers (repeated ones joined with ", ", as WSGI servers do).
    pub fn environ(&self) -> Vec<(String, String)> {
        let server_name = self
            .head
            .host
            .as_deref()
            .map(|h| h.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())).map_or(h, |(n, _)| n))
            .unwrap_or("")
            .to_string();
        let mut env = vec![
            ("REQUEST_METHOD".to_string(), self.method().to_string()),
            ("SCRIPT_NAME".to_string(), self.script_name().to_string()),
            ("PATH_INFO".to_string(), self.path_info().to_string()),
            ("QUERY_STRING".to_string(), self.query().to_string()),
            ("CONTENT_TYPE".to_string(), self.header("content-type").unwrap_or("").to_string()),
            ("CONTENT_LENGTH".to_string(), self.header("content-length").unwrap_or("").to_string()),
            ("SERVER_NAME".to_string(), if server_name.is_empty() { self.local.ip().to_string() } else { server_name }),
            ("SERVER_PORT".to_string(), self.local.port().to_string()),
            (
                "SERVER_PROTOCOL".to_string(),
                match self.version() {
                    Version::Http10 => "HTTP/1.0",
                    Version::Http11 => "HTTP/1.1",
                }
                .to_string(),
            ),
            ("REMOTE_ADDR".to_string(), self.peer.ip().to_string()),
            ("REMOTE_PORT".to_string(), self.peer.port().to_string()),
            ("wsgi.url_scheme".to_string(), self.scheme.to_string()),
        ];
        for (name, value) in &self.head.headers {
            let key = name.to_ascii_uppercase().replace('-', "_");
            if key == "CONTENT_TYPE" || key == "CONTENT_LENGTH" {
                continue;
            }
            let key = format!("HTTP_{key}");
            match env.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => {
                    v.push_str(", ");
                    v.push_str(value);
                }
                None => env.push((key, value.clone())),
            }
        }
        env
    }
}

/// The request body as a `Read`: complete (the server receives it whole before the
/// app is called, so reading it never waits on the network), de-chunked, at most
/// `max_body_bytes`. It owns what the server received (memory, or an unnamed
/// temporary file for a large body); the lifetime only ties it to its request by
/// default, and [`Body::into_owned`] drops even that.
pub struct Body<'a> {
    inner: ReceivedBody,
    len: u64,
    /// Its bytes' share of the process's memory or disk budget, given back when the
    /// body is dropped (or, sent back as a file, when that response ends).
    held: Vec<crate::budget::Held>,
    _request: PhantomData<&'a ()>,
}

impl Body<'_> {
    pub(crate) fn received(inner: ReceivedBody, len: u64, held: Vec<crate::budget::Held>) -> Body<'static> {
        Body { inner, len, held, _request: PhantomData }
    }

    /// A body of these bytes (for requests built in tests).
    pub fn from_bytes(bytes: Vec<u8>) -> Body<'static> {
        let len = bytes.len() as u64;
        Body::received(ReceivedBody::Memory(Cursor::new(bytes)), len, Vec::new())
    }

    /// The body's length in bytes (de-chunked).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the request has no body.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The same body, unbound from its request: `Read + Send + 'static`.
    pub fn into_owned(self) -> Body<'static> {
        Body { inner: self.inner, len: self.len, held: self.held, _request: PhantomData }
    }

    /// The body as a response body, without copying: a body the server spilled to a
    /// temporary file goes out with `sendfile(2)`, one held in memory as bytes.
    pub(crate) fn into_response_body(self) -> ResponseBody {
        match self.inner {
            ReceivedBody::Memory(c) => {
                let pos = c.position() as usize;
                let mut bytes = c.into_inner();
                bytes.drain(..pos.min(bytes.len()));
                ResponseBody::Bytes(bytes)
            }
            ReceivedBody::File(mut f) => {
                use std::io::Seek;
                let at = f.stream_position().unwrap_or(0).min(self.len);
                let held = self.held;
                ResponseBody::File(FileBody::new(f, at..self.len).on_end(move || drop(held)))
            }
        }
    }
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// Tells whether a request's client has gone; made by [`Request::disconnect_probe`].
#[derive(Clone, Debug)]
pub struct DisconnectProbe(Probe);

#[derive(Clone, Debug)]
enum Probe {
    /// The connection's socket; once the connection is closed, the client is gone.
    Socket(Weak<TcpStream>),
    /// A request built without a socket: a fixed answer.
    Fixed(bool),
}

impl DisconnectProbe {
    pub(crate) fn socket(stream: &Arc<TcpStream>) -> DisconnectProbe {
        DisconnectProbe(Probe::Socket(Arc::downgrade(stream)))
    }

    /// Whether the client has closed or reset its connection (or the server has
    /// closed it). Asks the socket without reading from it (`poll(2)` for RDHUP/HUP;
    /// a few microseconds). A client that only half-closed its sending side after the
    /// request (`shutdown(SHUT_WR)`) counts as gone too, as in waitress.
    pub fn is_gone(&self) -> bool {
        match &self.0 {
            Probe::Socket(weak) => weak.upgrade().is_none_or(|stream| crate::conn::hung_up(&stream)),
            Probe::Fixed(gone) => *gone,
        }
    }
}

/// Builds a [`Request`] without a socket (see [`Request::builder`]). Defaults:
/// `GET / HTTP/1.1`, `Host: localhost`, no body, peer `127.0.0.1:40000`, local
/// `127.0.0.1:8080`, listener `"http"`, mounted at "/". The head is run through the
/// server's own parser, so the request is exactly what a client sending it would
/// make.
pub struct RequestBuilder {
    method: String,
    target: String,
    version: Version,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    peer: SocketAddr,
    local: SocketAddr,
    listener: String,
    script_name: String,
    gone: bool,
}

impl Default for RequestBuilder {
    fn default() -> Self {
        RequestBuilder {
            method: "GET".into(),
            target: "/".into(),
            version: Version::Http11,
            headers: Vec::new(),
            body: Vec::new(),
            peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
            local: SocketAddr::from(([127, 0, 0, 1], 8080)),
            listener: "http".into(),
            script_name: String::new(),
            gone: false,
        }
    }
}

/// Why [`RequestBuilder::build`] could not make a request: what a server would have
/// answered with a 4xx.
#[derive(Debug)]
pub struct BuildError(String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid test request: {}", self.0)
    }
}

impl std::error::Error for BuildError {}

impl RequestBuilder {
    /// The method (`POST`).
    pub fn method(mut self, method: &str) -> Self {
        self.method = method.into();
        self
    }
    /// The request-target (`/a%20b?x=1`).
    pub fn target(mut self, target: &str) -> Self {
        self.target = target.into();
        self
    }
    /// HTTP/1.0 or HTTP/1.1.
    pub fn version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }
    /// Adds a header (`Host: localhost` is added unless one is given).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// The body; `Content-Length` is added unless a framing header is given.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    /// The client's address.
    pub fn peer(mut self, peer: SocketAddr) -> Self {
        self.peer = peer;
        self
    }
    /// The local address the client connected to.
    pub fn local(mut self, local: SocketAddr) -> Self {
        self.local = local;
        self
    }
    /// The listener's name.
    pub fn listener(mut self, name: &str) -> Self {
        self.listener = name.into();
        self
    }
    /// The mount prefix (`SCRIPT_NAME`), which the path must start with.
    pub fn script_name(mut self, prefix: &str) -> Self {
        self.script_name = prefix.trim_end_matches('/').into();
        self
    }
    /// What the request's [`DisconnectProbe`] answers.
    pub fn client_gone(mut self, gone: bool) -> Self {
        self.gone = gone;
        self
    }

    /// Parses the head as the server would and makes the request.
    pub fn build(self) -> Result<Request<'static>, BuildError> {
        let has = |name: &str| self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let version = match self.version {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        };
        let mut text = format!("{} {} {version}\r\n", self.method, self.target);
        if !has("host") {
            text.push_str("Host: localhost\r\n");
        }
        for (name, value) in &self.headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() && !has("content-length") && !has("transfer-encoding") {
            text.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        text.push_str("\r\n");
        let limits = parse::HeadLimits {
            max_header_bytes: usize::MAX,
            max_headers: usize::MAX,
            max_uri_bytes: usize::MAX,
            max_body_bytes: u64::MAX,
        };
        let head = match parse::parse_head(text.as_bytes(), &limits) {
            Ok(parse::Parsed::Complete { head, .. }) => head,
            Ok(parse::Parsed::Partial) => return Err(BuildError("incomplete head".into())),
            Err(e) => return Err(BuildError(format!("{} ({})", e.reason(), e.status()))),
        };
        let under = head.path.strip_prefix(self.script_name.as_str());
        if !under.is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) {
            return Err(BuildError(format!("path {:?} is not under script_name {:?}", head.path, self.script_name)));
        }
        Ok(Request {
            head,
            peer: self.peer,
            scheme: "http",
            local: self.local,
            listener: Cow::Owned(self.listener),
            script_name: Cow::Owned(self.script_name),
            id: 0,
            body: Body::from_bytes(self.body),
            probe: DisconnectProbe(Probe::Fixed(self.gone)),
            early: None,
        })
    }
}

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

/// Apps mounted on path prefixes: the longest prefix that matches on a segment
/// boundary wins (WSGI `URLMap`): `/echo` serves `/echo` and `/echo/x`, not `/echoes`.
#[derive(Default)]
pub struct Router {
    /// `(prefix without trailing slash, app)`, longest first; "/" is stored as "".
    mounts: Vec<(String, Arc<dyn App>)>,
}

impl Router {
    /// Builds a router from `(prefix, app)` pairs; a later pair replaces an earlier one
    /// at the same prefix (so an embedding program's mounts win over built-in ones).
    pub(crate) fn new(pairs: Vec<(String, Arc<dyn App>)>) -> Router {
        let mut mounts: Vec<(String, Arc<dyn App>)> = Vec::new();
        for (prefix, app) in pairs {
            let prefix = prefix.trim_end_matches('/').to_string();
            mounts.retain(|(p, _)| *p != prefix);
            mounts.push((prefix, app));
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
        Router { mounts }
    }

    /// The app for `path` and its `SCRIPT_NAME`.
    pub fn route(&self, path: &str) -> Option<(&str, &Arc<dyn App>)> {
        self.mounts.iter().find_map(|(prefix, app)| {
            let rest = path.strip_prefix(prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((prefix.as_str(), app))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named;
    impl App for Named {
        fn call<'a>(&self, _req: Request<'a>) -> AppResult {
            Ok(Response::empty(204))
        }
    }

    #[test]
    fn a_closure_is_an_app_and_a_request_is_built_without_a_socket() {
        let prefix = String::from("seen");
        let app = app_fn(move |mut req| {
            let mut body = String::new();
            req.body().read_to_string(&mut body)?;
            let text = format!("{prefix} {} {} {} {body}", req.method(), req.script_name(), req.path_info());
            Ok(Response::text(200, text))
        });
        let req = Request::builder()
            .method("POST")
            .target("/api/items?x=1")
            .script_name("/api")
            .header("X-A", "1")
            .body("hello")
            .build()
            .unwrap();
        assert_eq!(req.query(), "x=1");
        assert_eq!(req.header("content-length"), Some("5"));
        assert_eq!(req.header("host"), Some("localhost"));
        let resp = app.call(req).unwrap();
        assert!(matches!(resp.body, ResponseBody::Bytes(ref b) if b == b"seen POST /api /items hello"));

        // What the server's parser refuses, the builder refuses too.
        for bad in [
            Request::builder().target("no-slash").build(),
            Request::builder().header("Bad Name", "v").build(),
            Request::builder().target("/other").script_name("/api").build(),
        ] {
            assert!(bad.is_err());
        }
    }

    #[test]
    fn a_taken_body_is_owned_and_can_go_to_another_thread() {
        let mut req = Request::builder().method("PUT").body(vec![7u8; 100]).build().unwrap();
        let body: Body<'static> = req.take_body();
        assert!(req.body().is_empty());
        let read = std::thread::spawn(move || {
            let mut body = body;
            let mut all = Vec::new();
            body.read_to_end(&mut all).map(|_| all)
        });
        assert_eq!(read.join().unwrap().unwrap(), vec![7u8; 100]);
    }

    #[test]
    fn header_fields_keep_the_bytes_of_obs_text() {
        // Built from raw bytes through the parser: a latin-1 value is not UTF-8.
        let limits = parse::HeadLimits {
            max_header_bytes: 1 << 16,
            max_headers: 100,
            max_uri_bytes: 1 << 16,
            max_body_bytes: 0,
        };
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xe9\r\n\r\n";
        let Ok(parse::Parsed::Complete { head, .. }) = parse::parse_head(raw, &limits) else { panic!("parse") };
        let mut req = Request::builder().build().unwrap();
        req.head = head;
        let fields: Vec<(&str, &[u8])> = req.header_fields().collect();
        assert_eq!(fields, vec![("Host", &b"a"[..]), ("X-Name", &b"caf\xe9"[..])]);
    }

    #[test]
    fn the_disconnect_probe_sees_a_client_close_without_reading() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let server = Arc::new(server);
        let probe = DisconnectProbe::socket(&server);
        // Unread bytes from the client do not look like a close.
        client.write_all(b"pipelined").unwrap();
        assert!(!probe.is_gone());
        drop(client);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !probe.is_gone() {
            assert!(std::time::Instant::now() < deadline, "close not seen");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Once the server has closed the connection, the probe says gone too.
        let server2 = Arc::new(std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap());
        let probe2 = DisconnectProbe::socket(&server2);
        assert!(!probe2.is_gone());
        drop(server2);
        assert!(probe2.is_gone());
        assert!(Request::builder().client_gone(true).build().unwrap().disconnect_probe().is_gone());
        assert!(!Request::builder().build().unwrap().disconnect_probe().is_gone());
    }

    #[test]
    fn longest_prefix_on_a_segment_boundary_wins() {
        let app: Arc<dyn App> = Arc::new(Named);
        let mut mounts: Vec<(String, Arc<dyn App>)> =
            ["", "/echo", "/a/b"].iter().map(|p| (p.to_string(), Arc::clone(&app))).collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
        let router = Router { mounts };
        for (path, script) in [
            ("/", Some("")),
            ("/echo", Some("/echo")),
            ("/echo/x", Some("/echo")),
            ("/echoes", Some("")),
            ("/a/b/c", Some("/a/b")),
            ("/a/bc", Some("")),
        ] {
            assert_eq!(router.route(path).map(|(s, _)| s), script, "{path}");
        }
        let only_echo = Router { mounts: vec![("/echo".into(), app)] };
        assert!(only_echo.route("/").is_none());
        assert!(only_echo.route("/other").is_none());
    }
}
