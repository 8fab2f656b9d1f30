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
//! ```no_run
//! use spindle::http::{App, AppResult, Request, Response};
//!
//! struct Hello;
//! impl App for Hello {
//!     fn call<'a>(&self, req: Request<'a>) -> AppResult<'a> {
//!         Ok(Response::text(200, format!("hello from {}\n", req.path())))
//!     }
//! }
//! ```

pub(crate) mod apps;
pub(crate) mod body;
pub(crate) mod conn;
pub(crate) mod forwarded;
pub(crate) mod parse;
pub(crate) mod receive;
pub(crate) mod response;

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;

pub use parse::Version;

/// What an app returns: a response, or an error the server answers with 500 (or with
/// the body's own status when the error came from reading a malformed body).
pub type AppResult<'a> = Result<Response<'a>, AppError>;

/// An app's failure; logged with the request id, answered with 500.
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// A WSGI-like application, called on a worker thread once per request.
///
/// `call` may block (it runs on a pool thread, not on an event loop) and may panic: a
/// panic is caught, answered with 500, logged with the request id, and the worker
/// carries on. The body has been received whole before `call` (in memory, or in a
/// temporary file when large), so reading it never waits on the client. The response
/// may borrow the request body (`Response::stream(req.into_body())` streams it back,
/// as the built-in `echo` app does).
pub trait App: Send + Sync + 'static {
    /// Handles one request.
    fn call<'a>(&self, req: Request<'a>) -> AppResult<'a>;
}

/// A request as an app sees it.
pub struct Request<'a> {
    pub(crate) head: parse::Head,
    pub(crate) peer: SocketAddr,
    pub(crate) scheme: &'static str,
    pub(crate) local: SocketAddr,
    pub(crate) listener: &'a str,
    pub(crate) script_name: &'a str,
    pub(crate) id: u64,
    pub(crate) body: Body<'a>,
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
        self.listener
    }
    /// The mount prefix this app is served under (WSGI `SCRIPT_NAME`; "" at "/").
    pub fn script_name(&self) -> &str {
        self.script_name
    }
    /// The path below the mount prefix (WSGI `PATH_INFO`).
    pub fn path_info(&self) -> &str {
        &self.head.path[self.script_name.len().min(self.head.path.len())..]
    }
    /// A process-unique id, also in the access log line.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The request body (complete, de-chunked, at most `max_body_bytes`).
    pub fn body(&mut self) -> &mut Body<'a> {
        &mut self.body
    }
    /// The body, by value (to stream it into a response).
    pub fn into_body(self) -> Body<'a> {
        self.body
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
/// `max_body_bytes`.
pub struct Body<'a> {
    pub(crate) inner: &'a mut (dyn Read + 'a),
    pub(crate) len: u64,
}

impl Body<'_> {
    /// The body's length in bytes (de-chunked).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the request has no body.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// A response body.
pub enum ResponseBody<'a> {
    /// No body.
    Empty,
    /// A body whose length is known: sent with `Content-Length`.
    Bytes(Vec<u8>),
    /// A streamed body: chunked on HTTP/1.1 (or `Content-Length` when the length is
    /// given), close-delimited on HTTP/1.0.
    Stream(Box<dyn Read + 'a>, Option<u64>),
}

/// A response as an app returns it. The server adds `Date`, `Server`, framing and
/// `Connection`; an app that sets a hop-by-hop header, or a header with CR, LF or NUL,
/// gets a 500 instead (and its mistake is logged).
pub struct Response<'a> {
    /// Status code (100..=999).
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: ResponseBody<'a>,
}

impl<'a> Response<'a> {
    /// A response with no body.
    pub fn empty(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: ResponseBody::Empty }
    }
    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::bytes(status, "text/plain; charset=utf-8", body.into().into_bytes())
    }
    /// A response with a known-length body of `content_type`.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: ResponseBody::Bytes(body),
        }
    }
    /// A streamed response of unknown length.
    pub fn stream(status: u16, body: impl Read + 'a) -> Self {
        Response { status, headers: Vec::new(), body: ResponseBody::Stream(Box::new(body), None) }
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
        fn call<'a>(&self, _req: Request<'a>) -> AppResult<'a> {
            Ok(Response::empty(204))
        }
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
