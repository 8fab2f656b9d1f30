//! A request as an app sees it: [`Request`] (the parsed head, the client's and the
//! server's addresses, the mount), its [`Body`] (received whole before the app runs),
//! a [`DisconnectProbe`], and [`RequestBuilder`] for unit tests of an app (a request
//! made without a socket, through the server's own parser). Built by the HTTP turn on
//! a worker thread; owns no socket (the probe and an early response hold weak ones).

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Cursor, Read};
use std::marker::PhantomData;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Weak};

use super::receive::ReceivedBody;
use super::{early, parse, EarlyResponse, FileBody, ResponseBody, Version};

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
            Probe::Socket(weak) => weak.upgrade().is_none_or(|stream| crate::sock::hung_up(&stream)),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
