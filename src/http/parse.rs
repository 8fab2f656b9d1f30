//! Request-head parsing: turns the bytes of an HTTP/1.1 request line and header
//! section into a [`Head`], or says why the request must be refused. It owns the
//! framing decisions that request smuggling lives on — `Content-Length` versus
//! `Transfer-Encoding`, line terminators, obs-fold, `Host` — and makes each of them
//! strictly, per RFC 9112, so that no proxy in front of us can disagree with us
//! about where a request ends. It is sans-IO like httparse, which does the
//! byte-level tokenising underneath: a worker thread calls [`parse_head`] on its
//! read buffer after every read; [`Parsed::Partial`] means "read more", never an
//! error, and there is nothing to stop because it never touches a socket.
//!
//! ```text
//! HTTP-message   = start-line CRLF
//!                  *( field-line CRLF )
//!                  CRLF
//!                  [ message-body ]
//! request-line   = method SP request-target SP HTTP-version
//! field-line     = field-name ":" OWS field-value OWS
//! ```

use std::fmt;

/// Size limits applied while parsing a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest request head in bytes, request line and final empty line included (431 above it).
    pub max_header_bytes: usize,
    /// Most header field lines in one request (431 above it).
    pub max_headers: usize,
    /// Longest request-target in bytes (414 above it).
    pub max_uri_bytes: usize,
    /// Largest `Content-Length` accepted, in bytes (413 above it).
    pub max_body_bytes: u64,
}

/// The protocol version of a request; only HTTP/1.0 and HTTP/1.1 are spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`
    Http10,
    /// `HTTP/1.1`
    Http11,
}

/// How the message body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: neither framing header, or `Content-Length: 0`.
    Empty,
    /// Exactly this many bytes follow the head (never 0: that is [`BodyKind::Empty`]).
    Length(u64),
    /// `Transfer-Encoding: chunked`; decode with [`super::body::ChunkedDecoder`].
    Chunked,
}

/// A parsed and validated request head.
#[derive(Debug, Clone)]
pub struct Head {
    /// The method token as sent (case-sensitive, RFC 9110 §9.1).
    pub method: String,
    /// The raw request-target as sent.
    pub target: String,
    /// The percent-decoded path: for absolute-form the path part of the URL
    /// (`/` if empty), `*` for `OPTIONS *`. Decoded bytes that are not UTF-8 are
    /// replaced with U+FFFD.
    pub path: String,
    /// The path as sent, not decoded.
    pub raw_path: String,
    /// Everything after the first `?`, raw; empty if there is none.
    pub query: String,
    /// The protocol version.
    pub version: Version,
    /// Header fields in order, names as sent, values trimmed of OWS. A value that
    /// is not UTF-8 (obs-text) is its lossy decoding; see [`Head::header_bytes`].
    pub headers: Vec<(String, String)>,
    /// The exact bytes of the values in `headers` that are not UTF-8, by index
    /// (usually empty: then nothing is allocated).
    pub raw_values: Vec<(usize, Vec<u8>)>,
    /// How the body is framed.
    pub body: BodyKind,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// HTTP/1.1 with `Expect: 100-continue`: send `100 Continue` before reading the body.
    pub expect_continue: bool,
    /// The authority the request is for: from an absolute-form target if there is
    /// one (RFC 9112 §3.2.2), else the `Host` header; `None` if absent or empty.
    pub host: Option<String>,
}

impl Head {
    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The values of every header named `name` (ASCII case-insensitive), in order.
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The exact bytes of the first header named `name` (ASCII case-insensitive),
    /// OWS trimmed: the same as [`Head::header`] for a UTF-8 value, the bytes as
    /// sent for one with obs-text.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        let i = self.headers.iter().position(|(n, _)| n.eq_ignore_ascii_case(name))?;
        match self.raw_values.iter().find(|(at, _)| *at == i) {
            Some((_, raw)) => Some(raw),
            None => Some(self.headers[i].1.as_bytes()),
        }
    }
}

/// The outcome of [`parse_head`] on a buffer that is not (yet) refused.
// `Complete` is a few hundred bytes and `Partial` none; boxing the head would cost
// an allocation per request to save a stack copy per call: not worth it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Parsed {
    /// The head is incomplete: read more and call again with the longer buffer.
    Partial,
    /// A complete head.
    Complete {
        /// The parsed head.
        head: Head,
        /// Bytes of the buffer it took, leading empty lines and the final empty
        /// line included; the body (if any) starts here.
        len: usize,
    },
}

/// Why a request was refused; each carries its own HTTP status. The connection
/// should be closed after the response, since framing can no longer be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// 400: the head is malformed; the text names what was wrong.
    BadRequest(&'static str),
    /// 414: the request-target is longer than `max_uri_bytes`.
    UriTooLong,
    /// 431: the head is larger than `max_header_bytes` or has more than `max_headers` fields.
    HeaderFieldsTooLarge,
    /// 413: `Content-Length` is larger than `max_body_bytes`.
    PayloadTooLarge,
    /// 417: an `Expect` other than `100-continue`.
    ExpectationFailed,
    /// 501: a method or transfer-coding we do not implement.
    NotImplemented(&'static str),
    /// 505: a well-formed `HTTP/x.y` other than 1.0 and 1.1.
    VersionNotSupported,
}

impl Error {
    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::UriTooLong => 414,
            Error::HeaderFieldsTooLarge => 431,
            Error::PayloadTooLarge => 413,
            Error::ExpectationFailed => 417,
            Error::NotImplemented(_) => 501,
            Error::VersionNotSupported => 505,
        }
    }

    /// Short lower-case text for logs and the response body.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::BadRequest(why) | Error::NotImplemented(why) => why,
            Error::UriTooLong => "request-target too long",
            Error::HeaderFieldsTooLarge => "request header fields too large",
            Error::PayloadTooLarge => "content-length exceeds the body limit",
            Error::ExpectationFailed => "unsupported expectation",
            Error::VersionNotSupported => "http version not supported",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest(why) => write!(f, "bad request: {why}"),
            Error::NotImplemented(why) => write!(f, "not implemented: {why}"),
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for Error {}

/// Parse a request head from the start of `buf`.
///
/// Returns [`Parsed::Partial`] while the head is incomplete and within limits,
/// [`Parsed::Complete`] with the number of bytes consumed once the final empty line
/// has arrived, or the [`Error`] to answer with. Bytes after the head (body,
/// pipelined requests) are not looked at.
///
/// Line terminators: CRLF or a bare LF, consistently for every line (RFC 9112
/// §2.2 allows a recipient to accept LF; we do so everywhere so that no line can
/// end for one party and not the other). A CR not followed by LF is refused.
pub fn parse_head(buf: &[u8], limits: &HeadLimits) -> Result<Parsed, Error> {
    // RFC 9112 §2.2: "a server that is expecting to receive and parse a
    // request-line SHOULD ignore at least one empty line (CRLF) received prior to
    // the request-line". They stay part of `len` so the caller drains them.
    let mut pos = 0;
    loop {
        match &buf[pos..] {
            [b'\r', b'\n', ..] => pos += 2,
            [b'\n', ..] => pos += 1,
            _ => break,
        }
    }

    // Split the head into lines ourselves before httparse sees it: this is where
    // the limits, the bare-CR rule and obs-fold are decided, and where we learn
    // how many header slots httparse needs.
    let mut request_line_done = false;
    let mut header_lines = 0usize;
    let head_end = loop {
        let rest = &buf[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            // A CR with a byte after it that is not LF can never become a valid
            // line end; refuse now rather than buffer up to the limit.
            if let Some(cr) = rest.iter().position(|&b| b == b'\r') {
                if cr + 1 < rest.len() {
                    return Err(Error::BadRequest("bare cr in request head"));
                }
            }
            // An unfinished request line is refused as soon as its target alone is
            // over the limit: the target so far (after the first SP, up to the
            // next) only grows, and the complete line would be refused too, so
            // where a read splits the line cannot change whether it is accepted.
            // (Measuring the whole line, as this once did, counted the method:
            // a long method with a short target was accepted in one read and 414
            // when split — found by fuzz/fuzz_targets/head.rs.)
            if !request_line_done {
                let target_so_far = rest.splitn(3, |&b| b == b' ').nth(1).map_or(0, <[u8]>::len);
                if target_so_far > limits.max_uri_bytes {
                    return Err(Error::UriTooLong);
                }
            }
            if buf.len() > limits.max_header_bytes {
                return Err(Error::HeaderFieldsTooLarge);
            }
            return Ok(Parsed::Partial);
        };
        let line = &rest[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // RFC 9112 §2.2: "A sender MUST NOT generate a bare CR ... a recipient of
        // such a bare CR MUST consider that element to be invalid".
        if line.contains(&b'\r') {
            return Err(Error::BadRequest("bare cr in request head"));
        }
        pos += nl + 1;
        if !request_line_done {
            // Checked as soon as it is complete, so a bad version or a huge
            // target is refused without waiting for the rest of the head.
            check_request_line(line, limits)?;
            request_line_done = true;
            continue;
        }
        if line.is_empty() {
            break pos;
        }
        // RFC 9112 §5.2: obs-fold is deprecated; a server "MUST either reject the
        // message by sending a 400 (Bad Request) ... or replace each received
        // obs-fold with one or more SP". Unfolding is how waitress got
        // CVE-2019-16789, so we refuse. RFC 9112 §2.2 says the same of whitespace
        // before the first field line.
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(Error::BadRequest("obs-fold or leading whitespace in header line"));
        }
        header_lines += 1;
        if header_lines > limits.max_headers {
            return Err(Error::HeaderFieldsTooLarge);
        }
    };
    if head_end > limits.max_header_bytes {
        return Err(Error::HeaderFieldsTooLarge);
    }

    // Exactly as many slots as lines: httparse then never runs out, and an
    // attacker cannot make us allocate more than `max_headers`.
    let mut slots = vec![httparse::EMPTY_HEADER; header_lines];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(&buf[..head_end]) {
        Ok(httparse::Status::Complete(n)) if n == head_end => {}
        // Our line splitter and httparse must agree on where the head ends; if
        // they ever do not, that disagreement is itself a smuggling risk.
        Ok(_) => return Err(Error::BadRequest("inconsistent head framing")),
        Err(e) => return Err(map_httparse(e)),
    }

    let method = req.method.unwrap_or_default().to_owned();
    let target = req.path.unwrap_or_default().to_owned();
    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(Error::VersionNotSupported),
    };
    let mut headers = Vec::with_capacity(req.headers.len());
    let mut raw_values = Vec::new();
    for h in req.headers.iter() {
        let (value, raw) = header_value(h.value)?;
        if let Some(raw) = raw {
            raw_values.push((headers.len(), raw));
        }
        headers.push((h.name.to_owned(), value));
    }
    let mut head = build_head(method, target, version, headers, limits)?;
    head.raw_values = raw_values;
    Ok(Parsed::Complete { head, len: head_end })
}

/// Pre-scan the request line so a well-formed but unsupported version gets 505
/// and garbage gets 400 (httparse reports both as `Error::Version`), and so an
/// over-long target gets 414.
///
/// ```text
/// request-line = method SP request-target SP HTTP-version
/// HTTP-version = HTTP-name "/" DIGIT "." DIGIT
/// HTTP-name    = %s"HTTP"
/// ```
fn check_request_line(line: &[u8], limits: &HeadLimits) -> Result<(), Error> {
    let mut parts = line.split(|&b| b == b' ');
    // Exactly two single SPs (RFC 9112 §3: no other whitespace is a delimiter);
    // an HTTP/0.9 "GET /" has no version and lands here too.
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::BadRequest("malformed request line"));
    };
    match version {
        b"HTTP/1.1" | b"HTTP/1.0" => {}
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            return Err(Error::VersionNotSupported)
        }
        _ => return Err(Error::BadRequest("malformed http version")),
    }
    if method.is_empty() || !method.iter().copied().all(is_tchar) {
        return Err(Error::BadRequest("method is not a token"));
    }
    if target.is_empty() {
        return Err(Error::BadRequest("empty request-target"));
    }
    if target.len() > limits.max_uri_bytes {
        return Err(Error::UriTooLong);
    }
    if !target.iter().all(|&b| is_target_byte(b)) {
        return Err(Error::BadRequest("invalid byte in request-target"));
    }
    Ok(())
}

/// Whether `b` may appear unencoded in a request-target. httparse passes any byte
/// from `!` to `~` and 0x80–0xFF, which let `GET /<> HTTP/1.1` through; we refuse
/// controls, SP, DEL, raw non-ASCII, `#` (a fragment is never sent, RFC 9112 §3.2)
/// and `"`, `<`, `>`.
///
/// RFC 3986 also leaves out `[ ] \ ^ ` { | }`, but those are accepted here: every
/// browser sends them raw in a query (the WHATWG URL standard's query
/// percent-encode set is only C0, SP, `"`, `#`, `<`, `>`), APIs take
/// `?filter[name]=x` in the wild, and nginx serves them; refusing them would 400
/// real clients for no framing gain — a request-target cannot hide a delimiter,
/// since SP ends it and controls are refused. `"`, `<`, `>` are never sent raw by
/// a conforming client (every URL component percent-encodes them), and they are the
/// bytes that turn a path echoed into a page or a log into markup.
fn is_target_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !matches!(b, b'#' | b'"' | b'<' | b'>')
}

fn map_httparse(e: httparse::Error) -> Error {
    match e {
        httparse::Error::HeaderName => Error::BadRequest("invalid header name"),
        httparse::Error::HeaderValue => Error::BadRequest("invalid header value"),
        httparse::Error::NewLine => Error::BadRequest("invalid line ending"),
        httparse::Error::TooManyHeaders => Error::HeaderFieldsTooLarge,
        httparse::Error::Version => Error::BadRequest("malformed http version"),
        _ => Error::BadRequest("malformed request line"),
    }
}

/// ```text
/// token = 1*tchar
/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
///         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
/// ```
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// ```text
/// field-value = *field-content
/// field-vchar = VCHAR / obs-text
/// OWS         = *( SP / HTAB )
/// ```
/// NUL, CR, LF and other CTLs are refused (RFC 9110 §5.5: "a recipient of CR, LF,
/// or NUL within a field value MUST either reject the message or replace each of
/// those characters with SP").
///
/// obs-text (0x80–0xFF) is allowed by RFC 9110 §5.5 and accepted. Values are
/// bytes on the wire but `String` in [`Head::headers`] (and `&str` in the app's
/// `Request`), so a value that is not UTF-8 is given as its lossy decoding — each
/// invalid sequence becomes U+FFFD, the same rule as [`Head::path`] — and its exact
/// bytes are returned as well, for [`Head::header_bytes`]. Framing never looks at
/// such a value: `Content-Length`, `Transfer-Encoding`, `Host` and the rest are
/// ASCII grammars, and a U+FFFD in one fails them.
fn header_value(raw: &[u8]) -> Result<(String, Option<Vec<u8>>), Error> {
    if !raw.iter().all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80) {
        return Err(Error::BadRequest("control character in header value"));
    }
    let raw = trim_ows_bytes(raw);
    match std::str::from_utf8(raw) {
        Ok(v) => Ok((v.to_owned(), None)),
        Err(_) => Ok((String::from_utf8_lossy(raw).into_owned(), Some(raw.to_vec()))),
    }
}

fn trim_ows_bytes(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// Comma-separated list elements across every field line named `name`, OWS
/// trimmed (RFC 9110 §5.6.1). Empty elements are kept so callers can refuse them.
fn list_elements<'a>(headers: &'a [(String, String)], name: &'a str) -> Vec<&'a str> {
    headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).flat_map(|(_, v)| v.split(',')).map(trim_ows).collect()
}

fn build_head(
    method: String,
    target: String,
    version: Version,
    headers: Vec<(String, String)>,
    limits: &HeadLimits,
) -> Result<Head, Error> {
    // CONNECT makes us a tunnel; we are an origin server, not a proxy.
    if method == "CONNECT" {
        return Err(Error::NotImplemented("connect method"));
    }

    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code
    // to any HTTP/1.1 request message that lacks a Host header field and to any
    // request message that contains more than one Host header field line or a
    // Host header field with an invalid field value."
    let mut hosts = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("host"));
    let host_header = match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::Http11 => return Err(Error::BadRequest("missing host header")),
        (None, _) => None,
        (Some(_), Some(_)) => return Err(Error::BadRequest("more than one host header")),
        (Some((_, v)), None) => Some(v.as_str()),
    };
    if let Some(h) = host_header {
        check_authority(h)?;
    }

    let (raw_path, query, host) = if target == "*" {
        // RFC 9112 §3.2.4: asterisk-form is only used for a server-wide OPTIONS.
        if method != "OPTIONS" {
            return Err(Error::BadRequest("asterisk-form target without options"));
        }
        ("*", "", host_header)
    } else if target.starts_with('/') {
        // origin-form = absolute-path [ "?" query ]
        let (p, q) = target.split_once('?').unwrap_or((&target, ""));
        (p, q, host_header)
    } else if let Some((authority, rest)) = split_absolute_form(&target) {
        // RFC 9112 §3.2.2: a server MUST accept absolute-form, and "MUST ignore the
        // received Host header field (if any) and instead use the host information
        // of the request-target".
        check_authority(authority)?;
        let (p, q) = rest.split_once('?').unwrap_or((rest, ""));
        (if p.is_empty() { "/" } else { p }, q, Some(authority))
    } else {
        // authority-form is only for CONNECT, refused above; anything else is
        // not a request-target at all.
        return Err(Error::BadRequest("invalid request-target form"));
    };
    let path = if raw_path == "*" { "*".to_owned() } else { percent_decode(raw_path)? };

    let body = body_kind(&headers, version, limits)?;

    // RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an
    // HTTP/1.0 request MUST ignore that expectation"; any other expectation on
    // 1.1 "MAY respond with a 417".
    let mut expect_continue = false;
    if version == Version::Http11 && headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("expect")) {
        if list_elements(&headers, "expect").iter().all(|e| e.eq_ignore_ascii_case("100-continue")) {
            expect_continue = true;
        } else {
            return Err(Error::ExpectationFailed);
        }
    }

    // RFC 9112 §9.3: 1.1 is persistent unless "close"; 1.0 only with "keep-alive".
    let connection = list_elements(&headers, "connection");
    let close = connection.iter().any(|t| t.eq_ignore_ascii_case("close"));
    let keep = connection.iter().any(|t| t.eq_ignore_ascii_case("keep-alive"));
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep && !close,
    };

    let raw_path = raw_path.to_owned();
    let query = query.to_owned();
    let host = host.filter(|h| !h.is_empty()).map(str::to_owned);
    Ok(Head {
        method,
        target,
        path,
        raw_path,
        query,
        version,
        headers,
        raw_values: Vec::new(),
        body,
        keep_alive,
        expect_continue,
        host,
    })
}

/// Decide the body framing (RFC 9112 §6.3), refusing every ambiguous case: the
/// cases where two parsers can disagree are exactly the request-smuggling ones.
fn body_kind(headers: &[(String, String)], version: Version, limits: &HeadLimits) -> Result<BodyKind, Error> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let has_te = has("transfer-encoding");
    let has_cl = has("content-length");

    if has_te {
        // RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message
        // containing a Transfer-Encoding header field MUST treat the message as if
        // the framing is faulty" (waitress, puma CVE-2024-21647 family).
        if version == Version::Http10 {
            return Err(Error::BadRequest("transfer-encoding in http/1.0 request"));
        }
        // RFC 9112 §6.3 lets a server prefer Transfer-Encoding, but "such a message
        // might indicate an attempt to perform request smuggling"; gunicorn
        // CVE-2024-1135 and waitress were bitten by preferring. We refuse.
        if has_cl {
            return Err(Error::BadRequest("both content-length and transfer-encoding"));
        }
        // transfer-coding list, case-insensitive (RFC 9112 §7). The only coding we
        // decode is chunked, and it must be the final (here: only) one, else the
        // length cannot be determined (RFC 9112 §6.3 item 4).
        let codings = list_elements(headers, "transfer-encoding");
        return match codings.as_slice() {
            [only] if only.eq_ignore_ascii_case("chunked") => Ok(BodyKind::Chunked),
            [.., last] if last.eq_ignore_ascii_case("chunked") => {
                Err(Error::NotImplemented("transfer-coding other than chunked"))
            }
            _ if codings.iter().any(|c| c.eq_ignore_ascii_case("chunked")) => {
                Err(Error::NotImplemented("chunked is not the final transfer-coding"))
            }
            _ => Err(Error::NotImplemented("unsupported transfer-coding")),
        };
    }

    // Content-Length = 1*DIGIT, in exactly one field line. RFC 9112 §6.3 item 5
    // lets a recipient accept a list or repeated fields whose values are all the
    // same ("5, 5"), and RFC 9110 §8.6 lets it reject them instead. We reject:
    // each of those is a message some other hop built or split differently, one
    // rule ("one field, digits only") is easier to state and to check than
    // "identical after list parsing", and it is what nginx does ("client sent
    // duplicate header line") — a proxy in front that merged or kept the
    // duplicates sees a 400, never a different body length.
    let mut values = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    let value = match (values.next(), values.next()) {
        (None, _) => return Ok(BodyKind::Empty),
        (Some(_), Some(_)) => return Err(Error::BadRequest("more than one content-length header")),
        (Some((_, v)), None) => v,
    };
    match parse_content_length(value)? {
        0 => Ok(BodyKind::Empty),
        n if n > limits.max_body_bytes => Err(Error::PayloadTooLarge),
        n => Ok(BodyKind::Length(n)),
    }
}

/// `Content-Length = 1*DIGIT`, and nothing else: waitress CVE-2022-24761 used
/// Python's `int()`, which took "+10", "0x10" and "1_0". At most 19 digits, so the
/// value always fits a `u64` (20 nines would not) without an overflow check.
fn parse_content_length(s: &str) -> Result<u64, Error> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::BadRequest("invalid content-length"));
    }
    s.parse().map_err(|_| Error::BadRequest("invalid content-length"))
}

/// `absolute-form = absolute-URI`, limited to `http` and `https` with a non-empty
/// authority (RFC 9110 §4.2.1: an http URI with an empty host is invalid).
/// Returns the authority and the rest (path-abempty and query).
fn split_absolute_form(target: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = target.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(end);
    if authority.is_empty() {
        return None;
    }
    Some((authority, rest))
}

/// ```text
/// Host      = uri-host [ ":" port ]
/// uri-host  = IP-literal / IPv4address / reg-name
/// reg-name  = *( unreserved / pct-encoded / sub-delims )
/// ```
/// Checked by character class only: enough to refuse whitespace, `/`, `@`
/// (userinfo, which RFC 9110 §4.2.4 says to treat as an error) and the like.
fn check_authority(a: &str) -> Result<(), Error> {
    let ok = a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest("invalid host"))
    }
}

/// Decode `pct-encoded = "%" HEXDIG HEXDIG` (RFC 3986 §2.1). A `%` without two hex
/// digits is refused rather than passed through, and so is a decoded NUL, which
/// would truncate the path for any C API it reaches.
fn percent_decode(raw: &str) -> Result<String, Error> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|&b| hex_value(b));
            let lo = bytes.get(i + 2).and_then(|&b| hex_value(b));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(Error::BadRequest("invalid percent-encoding in path"));
            };
            let b = hi << 4 | lo;
            if b == 0 {
                return Err(Error::BadRequest("encoded nul in path"));
            }
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits =
        HeadLimits { max_header_bytes: 8192, max_headers: 32, max_uri_bytes: 1024, max_body_bytes: 1 << 20 };

    /// Parse a buffer that must hold exactly one complete head.
    fn parse(buf: &[u8]) -> Result<Head, Error> {
        parse_with(buf, &LIMITS)
    }

    fn parse_with(buf: &[u8], limits: &HeadLimits) -> Result<Head, Error> {
        match parse_head(buf, limits)? {
            Parsed::Complete { head, len } => {
                assert_eq!(len, buf.len(), "len for {:?}", String::from_utf8_lossy(buf));
                Ok(head)
            }
            Parsed::Partial => panic!("partial: {:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn bad(why: &'static str) -> Error {
        Error::BadRequest(why)
    }

    /// Every strict prefix of an acceptable head is `Partial`, never an error:
    /// a read that splits the head anywhere must not change the outcome.
    fn assert_prefixes_partial(buf: &[u8]) {
        let end = match parse_head(buf, &LIMITS) {
            Ok(Parsed::Complete { len, .. }) => len,
            other => panic!("not complete: {other:?}"),
        };
        for i in 0..end {
            assert!(
                matches!(parse_head(&buf[..i], &LIMITS), Ok(Parsed::Partial)),
                "prefix {i} of {:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn accepted_heads() {
        // (input, method, path, raw_path, query, version, body, keep_alive, host)
        #[allow(clippy::type_complexity)]
        let cases: &[(&[u8], &str, &str, &str, &str, Version, BodyKind, bool, Option<&str>)] = &[
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET",
                "/",
                "/",
                "",
                Version::Http11,
                BodyKind::Empty,
                true,
                Some("a"),
            ),
            (b"GET / HTTP/1.1\nHost: a\n\n", "GET", "/", "/", "", Version::Http11, BodyKind::Empty, true, Some("a")),
            (
                b"GET /a%20b?x=%20 HTTP/1.1\r\nHost: a:8080\r\n\r\n",
                "GET",
                "/a b",
                "/a%20b",
                "x=%20",
                Version::Http11,
                BodyKind::Empty,
                true,
                Some("a:8080"),
            ),
            (
                b"GET /a?b?c HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET",
                "/a",
                "/a",
                "b?c",
                Version::Http11,
                BodyKind::Empty,
                true,
                Some("a"),
            ),
            (
                b"GET /%C3%A9 HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET",
                "/\u{e9}",
                "/%C3%A9",
                "",
                Version::Http11,
                BodyKind::Empty,
                true,
                Some("a"),
            ),
            (
                b"GET /%FF HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET",
                "/\u{fffd}",
                "/%FF",
                "",
                Version::Http11,
                BodyKind::Empty,
                true,
                Some("a"),
            ),
            (b"GET / HTTP/1.0\r\n\r\n", "GET", "/", "/", "", Version::Http10, BodyKind::Empty, false, None),
            (
                b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                "GET",
                "/",
                "/",
                "",
                Version::Http10,
                BodyKind::Empty,
                true,
                None,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                "GET",
                "/",
                "/",
                "",
                Version::Http10,
                BodyKind::Empty,
                false,
                None,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n",
                "GET",
                "/",
                "/",
                "",
                Version::Http11,
                BodyKind::Empty,
                false,
                Some("a"),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\nConnection: close\r\n\r\n",
                "GET",
                "/",
                "/",
                "",
                Version::Http11,
                BodyKind::Empty,
                false,
                Some("a"),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n",
                "GET",
                "/",
                "/",
                "",
                Version::Http11,
                BodyKind::Empty,
                true,
                Some("a"),
            ),
            (
                b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
                "POST",
                "/p",
                "/p",
                "",
                Version::Http11,
                BodyKind::Length(5),
                true,
                Some("a"),
            ),
            (
                b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                "POST",
                "/p",
                "/p",
                "",
                Version::Http11,
                BodyKind::Empty,
                true,
                Some("a"),
            ),
            (
                b"POST /p HTTP/1.1\r\nHost: a\r\ncontent-length: 005\r\n\r\n",
                "POST",
                "/p",
                "/p",
                "",
                Version::Http11,
                BodyKind::Length(5),
                true,
                Some("a"),
            ),
            (
                b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                "POST",
                "/p",
                "/p",
                "",
                Version::Http11,
                BodyKind::Chunked,
                true,
                Some("a"),
            ),
            (
                b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \tChunked \r\n\r\n",
                "POST",
                "/p",
                "/p",
                "",
                Version::Http11,
                BodyKind::Chunked,
                true,
                Some("a"),
            ),
            (
                b"POST /p HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
                "POST",
                "/p",
                "/p",
                "",
                Version::Http10,
                BodyKind::Length(3),
                false,
                None,
            ),
            // RFC 9112 §3.2.2: absolute-form; the target's authority wins over Host.
            (
                b"GET http://example.com/a?b HTTP/1.1\r\nHost: other\r\n\r\n",
                "GET",
                "/a",
                "/a",
                "b",
                Version::Http11,
                BodyKind::Empty,
                true,
                Some("example.com"),
            ),
            (
                b"GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
                "GET",
                "/",
                "/",
                "",
                Version::Http11,
                BodyKind::Empty,
                true,
                Some("example.com"),
            ),
            (
                b"GET http://example.com?q HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET",
                "/",
                "/",
                "q",
                Version::Http11,
                BodyKind::Empty,
                true,
                Some("example.com"),
            ),
            (
                b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
                "OPTIONS",
                "*",
                "*",
                "",
                Version::Http11,
                BodyKind::Empty,
                true,
                Some("a"),
            ),
            // Empty Host is valid (RFC 9110 §7.2) and reported as None.
            (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", "GET", "/", "/", "", Version::Http11, BodyKind::Empty, true, None),
            (
                b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
                "GET",
                "/",
                "/",
                "",
                Version::Http11,
                BodyKind::Empty,
                true,
                Some("[::1]:80"),
            ),
            // Method tokens are case-sensitive and extensible (RFC 9110 §9.1).
            (
                b"PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n",
                "PURGE",
                "/x",
                "/x",
                "",
                Version::Http11,
                BodyKind::Empty,
                true,
                Some("a"),
            ),
            (
                b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
                "get",
                "/",
                "/",
                "",
                Version::Http11,
                BodyKind::Empty,
                true,
                Some("a"),
            ),
        ];
        for &(input, method, path, raw_path, query, version, body, keep_alive, host) in cases {
            let what = String::from_utf8_lossy(input);
            let h = parse(input).unwrap_or_else(|e| panic!("{what:?}: {e}"));
            assert_eq!(h.method, method, "{what:?}");
            assert_eq!(h.path, path, "{what:?}");
            assert_eq!(h.raw_path, raw_path, "{what:?}");
            assert_eq!(h.query, query, "{what:?}");
            assert_eq!(h.version, version, "{what:?}");
            assert_eq!(h.body, body, "{what:?}");
            assert_eq!(h.keep_alive, keep_alive, "{what:?}");
            assert_eq!(h.host.as_deref(), host, "{what:?}");
            assert!(!h.expect_continue, "{what:?}");
            assert_prefixes_partial(input);
        }
    }

    #[test]
    fn refused_heads() {
        let cases: &[(&str, &[u8], Error)] = &[
            // request line
            ("http/0.9 simple request", b"GET /\r\n\r\n", bad("malformed request line")),
            ("double space", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", bad("malformed request line")),
            ("tab delimiter", b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", bad("malformed request line")),
            ("trailing space", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", bad("malformed request line")),
            ("lower-case version", b"GET / http/1.1\r\nHost: a\r\n\r\n", bad("malformed http version")),
            ("version garbage", b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n", bad("malformed http version")),
            ("version no minor", b"GET / HTTP/2\r\nHost: a\r\n\r\n", bad("malformed http version")),
            ("version two digits", b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", bad("malformed http version")),
            ("http/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Error::VersionNotSupported),
            ("http/1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", Error::VersionNotSupported),
            ("http/0.9 version", b"GET / HTTP/0.9\r\n\r\n", Error::VersionNotSupported),
            ("method not a token", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", bad("method is not a token")),
            ("method with slash", b"GE/T / HTTP/1.1\r\nHost: a\r\n\r\n", bad("method is not a token")),
            ("target with fragment", b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", bad("invalid byte in request-target")),
            (
                "target with raw utf-8",
                "GET /\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes(),
                bad("invalid byte in request-target"),
            ),
            ("target with del", b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", bad("invalid byte in request-target")),
            ("target with nul", b"GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", bad("invalid byte in request-target")),
            ("target with <>", b"GET /<> HTTP/1.1\r\nHost: a\r\n\r\n", bad("invalid byte in request-target")),
            ("target with <", b"GET /a?<script HTTP/1.1\r\nHost: a\r\n\r\n", bad("invalid byte in request-target")),
            ("target with >", b"GET /> HTTP/1.1\r\nHost: a\r\n\r\n", bad("invalid byte in request-target")),
            ("target with quote", b"GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n", bad("invalid byte in request-target")),
            (
                "absolute-form with <",
                b"GET http://a/<b> HTTP/1.1\r\nHost: a\r\n\r\n",
                bad("invalid byte in request-target"),
            ),
            ("raw latin-1 byte", b"GET /\xe9 HTTP/1.1\r\nHost: a\r\n\r\n", bad("invalid byte in request-target")),
            // target forms
            (
                "asterisk without options",
                b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
                bad("asterisk-form target without options"),
            ),
            (
                "authority-form without connect",
                b"GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n",
                bad("invalid request-target form"),
            ),
            ("relative path", b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", bad("invalid request-target form")),
            (
                "connect",
                b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                Error::NotImplemented("connect method"),
            ),
            (
                "absolute-form other scheme",
                b"GET ftp://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n",
                bad("invalid request-target form"),
            ),
            (
                "absolute-form empty authority",
                b"GET http:///a HTTP/1.1\r\nHost: a\r\n\r\n",
                bad("invalid request-target form"),
            ),
            ("absolute-form userinfo", b"GET http://u@example.com/ HTTP/1.1\r\nHost: a\r\n\r\n", bad("invalid host")),
            ("bad percent escape", b"GET /a%2 HTTP/1.1\r\nHost: a\r\n\r\n", bad("invalid percent-encoding in path")),
            ("bad percent hex", b"GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", bad("invalid percent-encoding in path")),
            ("encoded nul", b"GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n", bad("encoded nul in path")),
            // Host, RFC 9112 §3.2
            ("missing host", b"GET / HTTP/1.1\r\n\r\n", bad("missing host header")),
            ("two hosts", b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", bad("more than one host header")),
            ("two hosts on 1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", bad("more than one host header")),
            ("host with space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", bad("invalid host")),
            ("host with slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", bad("invalid host")),
            // header syntax
            (
                "space before colon",
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
                bad("invalid header name"),
            ),
            ("tab before colon", b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", bad("invalid header name")),
            ("empty header name", b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", bad("invalid header name")),
            ("header name not a token", b"GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n", bad("invalid header name")),
            ("header line without colon", b"GET / HTTP/1.1\r\nHost: a\r\nXyz\r\n\r\n", bad("invalid header name")),
            ("nul in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", bad("invalid header value")),
            ("vt in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n", bad("invalid header value")),
            ("del in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", bad("invalid header value")),
            (
                "whitespace before first header",
                b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
                bad("obs-fold or leading whitespace in header line"),
            ),
            // line endings, RFC 9112 §2.2
            ("bare cr in request line", b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", bad("bare cr in request head")),
            ("bare cr ends header", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", bad("bare cr in request head")),
            ("cr cr lf", b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", bad("bare cr in request head")),
            (
                "bare cr as blank line",
                b"GET / HTTP/1.1\r\nHost: a\r\n\rContent-Length: 5\r\n\r\n",
                bad("bare cr in request head"),
            ),
            ("bare cr before request line", b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", bad("bare cr in request head")),
            // Expect, RFC 9110 §10.1.1
            ("expect other", b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", Error::ExpectationFailed),
            ("expect empty", b"GET / HTTP/1.1\r\nHost: a\r\nExpect:\r\n\r\n", Error::ExpectationFailed),
            (
                "expect continue plus other",
                b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n",
                Error::ExpectationFailed,
            ),
            // Content-Length
            ("cl empty", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", bad("invalid content-length")),
            ("cl negative", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", bad("invalid content-length")),
            (
                "cl inner space",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n",
                bad("invalid content-length"),
            ),
            (
                "cl 20 digits",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 00000000000000000001\r\n\r\n",
                bad("invalid content-length"),
            ),
            (
                "cl overflow",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
                bad("invalid content-length"),
            ),
            (
                "cl conflicting headers",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                bad("more than one content-length header"),
            ),
            (
                "cl equal headers",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
                bad("more than one content-length header"),
            ),
            (
                "cl equal headers, one empty",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length:\r\n\r\n",
                bad("more than one content-length header"),
            ),
            (
                "cl conflicting list",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
                bad("invalid content-length"),
            ),
            // RFC 9110 §8.6 allows a list of equal values to be taken; one field of
            // digits only is the rule here (see body_kind).
            (
                "cl equal list",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\n",
                bad("invalid content-length"),
            ),
            (
                "cl equal list ows",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
                bad("invalid content-length"),
            ),
            (
                "cl leading comma",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ,5\r\n\r\n",
                bad("invalid content-length"),
            ),
            (
                "cl obs-text",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\xff\r\n\r\n",
                bad("invalid content-length"),
            ),
            (
                "cl trailing comma",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n",
                bad("invalid content-length"),
            ),
            ("cl too large", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", Error::PayloadTooLarge),
            (
                "cl max 19 digits too large",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999999999999999\r\n\r\n",
                Error::PayloadTooLarge,
            ),
            // Transfer-Encoding
            (
                "te gzip",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                Error::NotImplemented("unsupported transfer-coding"),
            ),
            (
                "te identity",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
                Error::NotImplemented("unsupported transfer-coding"),
            ),
            (
                "te empty",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n",
                Error::NotImplemented("unsupported transfer-coding"),
            ),
            (
                "te gzip, chunked",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Error::NotImplemented("transfer-coding other than chunked"),
            ),
            (
                "te chunked, chunked",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                Error::NotImplemented("transfer-coding other than chunked"),
            ),
            (
                "te chunked twice across headers",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                Error::NotImplemented("transfer-coding other than chunked"),
            ),
            (
                "te leading comma",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n",
                Error::NotImplemented("transfer-coding other than chunked"),
            ),
            (
                "te chunked not last",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                Error::NotImplemented("chunked is not the final transfer-coding"),
            ),
            (
                "te chunked then gzip header",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
                Error::NotImplemented("chunked is not the final transfer-coding"),
            ),
            (
                "te trailing comma",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n",
                Error::NotImplemented("chunked is not the final transfer-coding"),
            ),
            (
                "te xchunked",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
                Error::NotImplemented("unsupported transfer-coding"),
            ),
            (
                "te chunked with params",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
                Error::NotImplemented("unsupported transfer-coding"),
            ),
            // A control byte is refused by the header-value check (400) before
            // the coding is looked at (it would otherwise be 501).
            (
                "te chunked vt",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n",
                bad("invalid header value"),
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(parse(input).err().as_ref(), Some(want), "{name}");
        }
    }

    #[test]
    fn waitress_cve_2019_16789_obs_fold_is_refused() {
        // Unfolding turned "Transfer-Encoding: gzip\r\n ,chunked" into a chunked
        // request for waitress while proxies saw gzip.
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n ,chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n",
            b"POST / HTTP/1.1\nHost: a\nX: a\n b\n\n",
        ];
        for input in cases {
            assert_eq!(
                parse(input).unwrap_err(),
                bad("obs-fold or leading whitespace in header line"),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn waitress_cve_2022_24761_content_length_is_digits_only() {
        // Python's int() accepted all of these.
        for value in ["+10", "0x10", "1_0", "1e3", "10.0", "\u{661}0", "0 x"] {
            let req = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {value}\r\n\r\n");
            assert_eq!(parse(req.as_bytes()).unwrap_err(), bad("invalid content-length"), "{value:?}");
        }
        // OWS around the value is not part of it (RFC 9110 §5.5).
        let h = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10 \r\n\r\n").unwrap();
        assert_eq!(h.body, BodyKind::Length(10));
    }

    #[test]
    fn gunicorn_cve_2024_1135_content_length_with_transfer_encoding_is_refused() {
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: CHUNKED\r\ncontent-length: 5\r\n\r\n",
        ];
        for input in cases {
            assert_eq!(
                parse(input).unwrap_err(),
                bad("both content-length and transfer-encoding"),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn transfer_encoding_on_http10_is_faulty_framing() {
        // RFC 9112 §6.1; puma CVE-2024-21647 family, waitress.
        let input = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(input).unwrap_err(), bad("transfer-encoding in http/1.0 request"));
        let input = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(parse(input).unwrap_err(), bad("transfer-encoding in http/1.0 request"));
    }

    #[test]
    fn mixed_line_endings_cannot_hide_a_header() {
        // A bare LF ends the line for us exactly as it does for httparse, so the
        // empty line "\n" after "Host: a\r\n" ends the head and the would-be
        // Content-Length is body, not a header, and `len` says so.
        let input = b"POST / HTTP/1.1\r\nHost: a\r\n\nContent-Length: 5\r\n\r\nhello";
        match parse_head(input, &LIMITS).unwrap() {
            Parsed::Complete { head, len } => {
                assert_eq!(len, 27);
                assert_eq!(head.body, BodyKind::Empty);
                assert_eq!(head.header("content-length"), None);
            }
            Parsed::Partial => panic!("partial"),
        }
        // LF and CRLF lines mixed freely are all header lines.
        let h = parse(b"POST / HTTP/1.1\nHost: a\r\nContent-Length: 5\nX: y\r\n\n").unwrap();
        assert_eq!(h.body, BodyKind::Length(5));
        assert_eq!(h.headers.len(), 3);
        assert_prefixes_partial(b"POST / HTTP/1.1\nHost: a\r\nContent-Length: 5\nX: y\r\n\n");
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted() {
        // RFC 9112 §2.2.
        for input in [&b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"[..], b"\n\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"] {
            let h = parse(input).unwrap();
            assert_eq!(h.path, "/");
            assert_prefixes_partial(input);
        }
        assert!(matches!(parse_head(b"\r\n\r", &LIMITS), Ok(Parsed::Partial)));
        assert!(matches!(parse_head(b"", &LIMITS), Ok(Parsed::Partial)));
    }

    #[test]
    fn len_stops_at_the_end_of_the_head() {
        let input = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n";
        match parse_head(input, &LIMITS).unwrap() {
            Parsed::Complete { head, len } => {
                assert_eq!(&input[len..len + 5], b"hello");
                assert_eq!(head.body, BodyKind::Length(5));
            }
            Parsed::Partial => panic!("partial"),
        }
        // A bare CR in the body is not the head's business.
        let input = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\na\rb";
        assert!(matches!(parse_head(input, &LIMITS), Ok(Parsed::Complete { len: 47, .. })));
    }

    #[test]
    fn headers_keep_order_and_case_and_are_trimmed() {
        let h =
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-A:  one \t\r\nx-a: two\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\r\n\r\n")
                .unwrap();
        assert_eq!(
            h.headers,
            vec![
                ("Host".to_owned(), "a".to_owned()),
                ("X-A".to_owned(), "one".to_owned()),
                ("x-a".to_owned(), "two".to_owned()),
                ("X-Empty".to_owned(), String::new()),
                ("X-Obs".to_owned(), "caf\u{e9}".to_owned()),
            ]
        );
        assert_eq!(h.header("X-a"), Some("one"));
        assert_eq!(h.header("HOST"), Some("a"));
        assert_eq!(h.header("missing"), None);
        assert_eq!(h.headers_all("x-A").collect::<Vec<_>>(), vec!["one", "two"]);
        assert_eq!(h.target, "/");
    }

    #[test]
    fn obs_text_in_a_value_is_accepted_lossy_as_str_and_exact_as_bytes() {
        // RFC 9110 §5.5: field-vchar = VCHAR / obs-text.
        let h = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX: \xff\r\nY: caf\xe9 \t\r\nZ: caf\xc3\xa9\r\n\r\n").unwrap();
        assert_eq!(h.header("x"), Some("\u{fffd}"));
        assert_eq!(h.header_bytes("x"), Some(&b"\xff"[..]));
        assert_eq!(h.header("y"), Some("caf\u{fffd}"));
        assert_eq!(h.header_bytes("Y"), Some(&b"caf\xe9"[..]));
        // UTF-8 is UTF-8, both ways; nothing raw is kept for it.
        assert_eq!(h.header("z"), Some("caf\u{e9}"));
        assert_eq!(h.header_bytes("z"), Some("caf\u{e9}".as_bytes()));
        assert_eq!(h.header_bytes("host"), Some(&b"a"[..]));
        assert_eq!(h.header_bytes("missing"), None);
        assert_eq!(h.raw_values.len(), 2);
        // A framing header with obs-text is refused by its own grammar.
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\xff\r\n\r\n").unwrap_err(), bad("invalid host"));
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\xff\r\n\r\n").unwrap_err(),
            Error::NotImplemented("unsupported transfer-coding")
        );
    }

    #[test]
    fn targets_with_bytes_browsers_send_raw_are_accepted() {
        // Outside RFC 3986 but sent unencoded by browsers in a query (see
        // is_target_byte); refusing them would break real clients.
        for target in ["/a?filter[name]=x", "/a?q={%22k%22:1}", "/a|b", "/a^b", "/a`b", "/a\\b", "/[x]"] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            let h = parse(req.as_bytes()).unwrap_or_else(|e| panic!("{target}: {e}"));
            assert_eq!(h.target, target);
        }
    }

    #[test]
    fn expect_continue() {
        // (input, expect_continue)
        let cases: &[(&[u8], bool)] = &[
            (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", true),
            (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n", true),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n", false),
            // RFC 9110 §10.1.1: ignored on 1.0, whatever it says.
            (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", false),
            (b"POST / HTTP/1.0\r\nExpect: teapot\r\nContent-Length: 3\r\n\r\n", false),
        ];
        for &(input, want) in cases {
            assert_eq!(parse(input).unwrap().expect_continue, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn size_limits() {
        let small = HeadLimits { max_header_bytes: 64, max_headers: 2, max_uri_bytes: 16, max_body_bytes: 10 };
        // (name, input, expected)
        let cases: &[(&str, &[u8], Result<(), Error>)] = &[
            ("fits", b"GET /0123456789abcde HTTP/1.1\r\nHost: a\r\n\r\n", Ok(())),
            ("target too long", b"GET /0123456789abcdef HTTP/1.1\r\nHost: a\r\n\r\n", Err(Error::UriTooLong)),
            (
                "too many headers",
                b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n",
                Err(Error::HeaderFieldsTooLarge),
            ),
            ("head at limit", b"GET / HTTP/1.1\r\nHost: a\r\nA: 01234567890123456789012345678901\r\n\r\n", Ok(())),
            (
                "head over limit",
                b"GET / HTTP/1.1\r\nHost: a\r\nA: 012345678901234567890123456789012\r\n\r\n",
                Err(Error::HeaderFieldsTooLarge),
            ),
            ("body at limit", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", Ok(())),
            (
                "body over limit",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
                Err(Error::PayloadTooLarge),
            ),
        ];
        for (name, input, want) in cases {
            let got = parse_with(input, &small).map(|_| ());
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn partial_heads_are_refused_once_over_a_limit() {
        let small = HeadLimits { max_header_bytes: 64, max_headers: 2, max_uri_bytes: 16, max_body_bytes: 10 };
        // (name, input, expected)
        let cases: &[(&str, Vec<u8>, Result<(), Error>)] = &[
            ("short partial", b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec(), Ok(())),
            // No newline yet, but the target is already over 16 bytes.
            ("request line without end", [b"GET /".as_slice(), &[b'a'; 44]].concat(), Err(Error::UriTooLong)),
            ("target one over, unfinished", [b"GET /".as_slice(), &[b'a'; 16]].concat(), Err(Error::UriTooLong)),
            ("target at the limit, unfinished", [b"GET /".as_slice(), &[b'a'; 15]].concat(), Ok(())),
            ("target at the limit, sp", [b"GET /".as_slice(), &[b'a'; 15], b" HTTP/1."].concat(), Ok(())),
            // A long method is not a long target: the head below is accepted whole,
            // so no prefix of it may be refused (found by the head fuzz target).
            ("long method, unfinished", [&[b'A'; 40][..], b" /x HTTP/1.0"].concat(), Ok(())),
            ("long method only, unfinished", vec![b'A'; 60], Ok(())),
            // Complete request line with a long target is refused before the head ends.
            ("long target, head unfinished", b"GET /0123456789abcdefg HTTP/1.1\r\n".to_vec(), Err(Error::UriTooLong)),
            ("version refused early", b"GET / HTTP/3.0\r\n".to_vec(), Err(Error::VersionNotSupported)),
            (
                "headers without end",
                [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 60]].concat(),
                Err(Error::HeaderFieldsTooLarge),
            ),
            ("blank lines forever", vec![b'\n'; 65], Err(Error::HeaderFieldsTooLarge)),
            (
                "too many header lines, unfinished",
                b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n".to_vec(),
                Err(Error::HeaderFieldsTooLarge),
            ),
            ("bare cr, unfinished", b"GET / HTTP/1.1\r\nHost: a\rb".to_vec(), Err(bad("bare cr in request head"))),
            ("cr at end, unfinished", b"GET / HTTP/1.1\r\nHost: a\r".to_vec(), Ok(())),
        ];
        for (name, input, want) in cases {
            let got = match parse_head(input, &small) {
                Ok(Parsed::Partial) => Ok(()),
                Ok(Parsed::Complete { .. }) => panic!("{name}: complete"),
                Err(e) => Err(e),
            };
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn a_long_method_with_a_short_target_is_accepted_however_it_is_split() {
        let small = HeadLimits { max_header_bytes: 64, max_headers: 2, max_uri_bytes: 16, max_body_bytes: 10 };
        let input = [&[b'A'; 40][..], b" /x HTTP/1.0\r\n\r\n"].concat();
        assert!(matches!(parse_head(&input, &small), Ok(Parsed::Complete { len: 56, .. })));
        for cut in 0..input.len() {
            assert!(matches!(parse_head(&input[..cut], &small), Ok(Parsed::Partial)), "prefix {cut}");
        }
    }

    #[test]
    fn error_status_and_text() {
        let cases = [
            (bad("x"), 400, "x", "bad request: x"),
            (Error::UriTooLong, 414, "request-target too long", "request-target too long"),
            (Error::HeaderFieldsTooLarge, 431, "request header fields too large", "request header fields too large"),
            (
                Error::PayloadTooLarge,
                413,
                "content-length exceeds the body limit",
                "content-length exceeds the body limit",
            ),
            (Error::ExpectationFailed, 417, "unsupported expectation", "unsupported expectation"),
            (Error::NotImplemented("y"), 501, "y", "not implemented: y"),
            (Error::VersionNotSupported, 505, "http version not supported", "http version not supported"),
        ];
        for (e, status, reason, display) in cases {
            assert_eq!(e.status(), status);
            assert_eq!(e.reason(), reason);
            assert_eq!(e.to_string(), display);
        }
    }
}
