//! Who the client is when a trusted HTTP proxy stands in front of us: the
//! `Forwarded` header (RFC 7239) and the de-facto `X-Forwarded-For` /
//! `X-Forwarded-Proto`, believed only from peers in `forwarded_trusted`. Pure
//! logic: a worker calls [`resolve`] once per request with the peer address, the
//! trusted networks and the request's headers; nothing here blocks or stops.
//!
//! These headers are written by whoever sends them, so a client can put anything
//! in them; only the entries appended by proxies we trust mean something. Each
//! proxy appends the address it received the connection from (to the right), so
//! the list is walked **from the right**: starting at the peer (trusted), each
//! entry that is itself a trusted proxy is stepped over, and the first untrusted
//! entry is the client. Entries further left were written by that client or by
//! proxies we do not know, and are never read. If every entry is a trusted proxy,
//! the leftmost one is the client (nginx's `real_ip_recursive` does the same).
//! Where the walk cannot go on, the address stays the last trusted hop reached
//! (the peer, or the trusted proxy whose entry it was): `for=unknown` or an
//! obfuscated `for=_hidden` (RFC 7239 §6.2, §6.3), a missing `for=`, an entry that
//! does not parse, or a `Forwarded` line that does not parse at all (a quote
//! opened by the client may swallow the elements the proxy appended to the same
//! line, so nothing in a malformed line is believed).
//!
//! Which header: `Forwarded` if only it is present, the `X-Forwarded-*` pair if
//! only they are. If both `Forwarded` and `X-Forwarded-For` are present, they must
//! agree on the client's IP address, or neither is believed: a proxy that maintains
//! one of them leaves the other to the client, and "prefer `Forwarded`" would let a
//! client behind an `X-Forwarded-For`-only proxy (HAProxy's `option forwardfor`,
//! most nginx setups) choose its own address by sending a `Forwarded` header.
//!
//! The scheme: from `Forwarded`, the `proto=` of the element that named the client;
//! from `X-Forwarded-Proto`, the rightmost value (the one the nearest, trusted, proxy
//! set). Only `http` and `https` (any case) are believed. Whether a proxy strips a
//! client's own `X-Forwarded-Proto` is the proxy's business (it should set, not
//! append): this is the same trust gunicorn's `forwarded_allow_ips` places.
//!
//! A forwarded address without a port gets port 0 (uvicorn's proxy-headers middleware
//! does the same): the proxy's port would be a lie, and there is no client port to
//! report. From an untrusted peer, nothing changes and the headers reach the app as
//! sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::net::{any_contains, Network};

/// The scheme the client used to reach the first proxy (`wsgi.url_scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `http`
    Http,
    /// `https`
    Https,
}

impl Scheme {
    /// The scheme as `wsgi.url_scheme` spells it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn parse(s: &str) -> Option<Scheme> {
        if s.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else if s.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }
}

/// The client as far as the trusted proxies say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Client {
    /// The client's address (`REMOTE_ADDR`/`REMOTE_PORT`): the peer's own when nothing
    /// is believed; port 0 when the proxies gave none.
    pub(crate) addr: SocketAddr,
    /// The scheme the proxies reported, if any was believed; `None` means "the
    /// listener's own".
    pub(crate) scheme: Option<Scheme>,
}

/// Works out the client's address and scheme from the forwarding headers, believed
/// only when `peer` is in `trusted` (see the module notes for the rules).
pub(crate) fn resolve(peer: SocketAddr, trusted: &[Network], headers: &[(String, String)]) -> Client {
    let nothing = Client { addr: peer, scheme: None };
    if !any_contains(trusted, &peer.ip()) {
        return nothing;
    }
    let named = |name: &'static str| headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v);
    let has_forwarded = named("forwarded").next().is_some();
    let has_xff = named("x-forwarded-for").next().is_some();

    let from_forwarded = || {
        let mut hops = Vec::new();
        for line in named("forwarded") {
            match parse_forwarded(line) {
                Some(elements) => hops.extend(elements.into_iter().map(Some)),
                None => hops.push(None),
            }
        }
        walk(peer, trusted, &hops)
    };
    let from_x_forwarded = || {
        let hops: Vec<Option<Hop>> = named("x-forwarded-for")
            .flat_map(|line| line.split(','))
            .map(|entry| parse_node(entry.trim_matches([' ', '\t'])).map(|node| Hop { node: Some(node), proto: None }))
            .collect();
        let addr = walk(peer, trusted, &hops).addr;
        let scheme = named("x-forwarded-proto")
            .next_back()
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| Scheme::parse(v.trim_matches([' ', '\t'])));
        Client { addr, scheme }
    };

    match (has_forwarded, has_xff) {
        (true, true) => {
            let (f, x) = (from_forwarded(), from_x_forwarded());
            if f.addr.ip() == x.addr.ip() {
                Client { addr: f.addr, scheme: f.scheme.or(x.scheme) }
            } else {
                nothing
            }
        }
        (true, false) => from_forwarded(),
        (false, _) => from_x_forwarded(),
    }
}

/// What a proxy said about the hop before it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hop {
    /// `for=`: `None` if absent.
    node: Option<Node>,
    /// `proto=`: `None` if absent or not http/https.
    proto: Option<Scheme>,
}

/// A `for=` node (RFC 7239 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// An address, port 0 when none (or an obfuscated one) was given.
    Addr(SocketAddr),
    /// `unknown` or an obfuscated identifier (`_hidden`).
    Unknown,
}

/// Walks `hops` from the right (module notes); `None` is an entry that did not parse.
fn walk(peer: SocketAddr, trusted: &[Network], hops: &[Option<Hop>]) -> Client {
    let mut client = Client { addr: peer, scheme: None };
    for hop in hops.iter().rev() {
        let Some(hop) = hop else { return Client { addr: client.addr, scheme: None } };
        client.scheme = hop.proto;
        match hop.node {
            Some(Node::Addr(addr)) if any_contains(trusted, &addr.ip()) => client.addr = addr,
            Some(Node::Addr(addr)) => return Client { addr, scheme: hop.proto },
            Some(Node::Unknown) | None => return client,
        }
    }
    client
}

/// Parses one `Forwarded` field line into its elements, or `None` if any of it is
/// malformed.
///
/// ```text
/// Forwarded         = 1#forwarded-element
/// forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
/// forwarded-pair    = token "=" value
/// value             = token / quoted-string
/// ```
///
/// Whitespace is allowed around `,` (the list rule) and, leniently, around `;`.
/// Empty list elements are skipped (RFC 9110 §5.6.1.2). A parameter twice in one
/// element is malformed (RFC 7239 §4: it "MUST NOT occur more than once").
fn parse_forwarded(line: &str) -> Option<Vec<Hop>> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut elements = Vec::new();
    let mut hop = Hop { node: None, proto: None };
    let mut seen: Vec<String> = Vec::new();
    loop {
        skip_ows(b, &mut i);
        if b.get(i).is_some_and(|&c| is_tchar(c)) {
            let name = token(b, &mut i).to_ascii_lowercase();
            if b.get(i) != Some(&b'=') {
                return None;
            }
            i += 1;
            let value = if b.get(i) == Some(&b'"') { quoted(b, &mut i)? } else { token(b, &mut i).to_string() };
            if seen.contains(&name) {
                return None;
            }
            match name.as_str() {
                "for" => hop.node = Some(parse_node(&value)?),
                "proto" => hop.proto = Scheme::parse(&value),
                _ => {}
            }
            seen.push(name);
            skip_ows(b, &mut i);
        }
        match b.get(i) {
            Some(b';') => i += 1,
            Some(b',') | None => {
                if !seen.is_empty() {
                    elements.push(std::mem::replace(&mut hop, Hop { node: None, proto: None }));
                    seen.clear();
                }
                if b.get(i).is_none() {
                    return Some(elements);
                }
                i += 1;
            }
            Some(_) => return None,
        }
    }
}

fn skip_ows(b: &[u8], i: &mut usize) {
    while matches!(b.get(*i), Some(b' ' | b'\t')) {
        *i += 1;
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// A token (possibly empty: the caller's next check fails on an empty value).
fn token<'a>(b: &'a [u8], i: &mut usize) -> &'a str {
    let start = *i;
    while b.get(*i).is_some_and(|&c| is_tchar(c)) {
        *i += 1;
    }
    // tchars are ASCII, so this slice is on character boundaries.
    std::str::from_utf8(&b[start..*i]).unwrap_or("")
}

/// A quoted-string starting at the `"` at `*i`, unescaped; `None` if unterminated or
/// holding a control character.
fn quoted(b: &[u8], i: &mut usize) -> Option<String> {
    let mut out = Vec::new();
    *i += 1;
    loop {
        match *b.get(*i)? {
            b'"' => {
                *i += 1;
                return String::from_utf8(out).ok();
            }
            b'\\' => {
                let c = *b.get(*i + 1)?;
                if c != b'\t' && (c < 0x20 || c == 0x7f) {
                    return None;
                }
                out.push(c);
                *i += 2;
            }
            c if c != b'\t' && (c < 0x20 || c == 0x7f) => return None,
            c => {
                out.push(c);
                *i += 1;
            }
        }
    }
}

/// A node (RFC 7239 §6): `192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]`,
/// `[2001:db8::1]:8080`, `unknown`, `_obfuscated` (either part may be obfuscated);
/// a bare IPv6 address is accepted too (X-Forwarded-For writes them so). `None` for
/// anything else.
fn parse_node(s: &str) -> Option<Node> {
    if s.eq_ignore_ascii_case("unknown") || s.starts_with('_') {
        return is_obfuscated_or_unknown(s).then_some(Node::Unknown);
    }
    let (ip, port): (IpAddr, &str) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, rest) = rest.split_once(']')?;
        (ip.parse::<Ipv6Addr>().ok()?.into(), if rest.is_empty() { "" } else { rest.strip_prefix(':')? })
    } else if let Ok(ip) = s.parse::<IpAddr>() {
        (ip, "")
    } else {
        let (ip, port) = s.split_once(':')?;
        (ip.parse::<Ipv4Addr>().ok()?.into(), port)
    };
    let port = if port.is_empty() || is_obfuscated_or_unknown(port) {
        0
    } else if port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) {
        port.parse().ok()?
    } else {
        return None;
    };
    Some(Node::Addr(SocketAddr::new(ip, port)))
}

/// `unknown`, or `obfnode = "_" 1*( ALPHA / DIGIT / "." / "_" / "-")` (RFC 7239 §6.3).
fn is_obfuscated_or_unknown(s: &str) -> bool {
    s.eq_ignore_ascii_case("unknown")
        || s.strip_prefix('_').is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "10.0.0.1:5000";

    fn trusted() -> Vec<Network> {
        ["10.0.0.0/8", "127.0.0.1", "fd00::/8"].iter().map(|s| s.parse().unwrap()).collect()
    }

    fn run(peer: &str, headers: &[(&str, &str)]) -> (String, Option<Scheme>) {
        let headers: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        let client = resolve(peer.parse().unwrap(), &trusted(), &headers);
        (client.addr.to_string(), client.scheme)
    }

    #[test]
    fn untrusted_peers_are_never_believed() {
        for headers in [
            &[("X-Forwarded-For", "1.2.3.4")][..],
            &[("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Proto", "https")],
            &[("Forwarded", "for=1.2.3.4;proto=https")],
            &[("X-Forwarded-Proto", "https")],
            &[("X-Forwarded-For", "10.0.0.5")],
        ] {
            for peer in ["203.0.113.7:5000", "[2001:db8::7]:5000", "[::ffff:203.0.113.7]:5000", "[::1]:5000"] {
                assert_eq!(run(peer, headers), (peer.to_string(), None), "{peer} {headers:?}");
            }
        }
        let headers = vec![("X-Forwarded-For".to_string(), "1.2.3.4".to_string())];
        let peer: SocketAddr = PEER.parse().unwrap();
        assert_eq!(
            resolve(peer, &[], &headers),
            Client { addr: peer, scheme: None },
            "an empty trust list trusts nobody"
        );
    }

    #[test]
    fn x_forwarded_for_is_walked_from_the_right() {
        use Scheme::*;
        for (headers, addr, scheme) in [
            (&[][..], PEER, None),
            (&[("X-Forwarded-For", "198.51.100.9")], "198.51.100.9:0", None),
            (&[("x-forwarded-for", "198.51.100.9")], "198.51.100.9:0", None),
            // spoofing: the client's own entry is left of the one the proxy appended
            (&[("X-Forwarded-For", "1.2.3.4, 198.51.100.9")], "198.51.100.9:0", None),
            (&[("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "198.51.100.9")], "198.51.100.9:0", None),
            (&[("X-Forwarded-For", "10.9.9.9, 198.51.100.9")], "198.51.100.9:0", None),
            // a chain of trusted proxies is stepped over
            (&[("X-Forwarded-For", "1.2.3.4, 198.51.100.9, 10.0.0.2")], "198.51.100.9:0", None),
            (
                &[("X-Forwarded-For", "198.51.100.9,10.0.0.3"), ("X-Forwarded-For", "::ffff:10.0.0.2")],
                "198.51.100.9:0",
                None,
            ),
            (&[("X-Forwarded-For", "10.0.0.3, 10.0.0.2")], "10.0.0.3:0", None),
            // ports and IPv6 forms
            (&[("X-Forwarded-For", "2001:db8::7")], "[2001:db8::7]:0", None),
            (&[("X-Forwarded-For", "[2001:db8::7]:4711")], "[2001:db8::7]:4711", None),
            (&[("X-Forwarded-For", "[2001:db8::7]")], "[2001:db8::7]:0", None),
            (&[("X-Forwarded-For", "198.51.100.9:8080")], "198.51.100.9:8080", None),
            (&[("X-Forwarded-For", " \t198.51.100.9\t ")], "198.51.100.9:0", None),
            // garbage stops the walk at the last trusted hop, never goes past it
            (&[("X-Forwarded-For", "garbage")], PEER, None),
            (&[("X-Forwarded-For", "")], PEER, None),
            (&[("X-Forwarded-For", "198.51.100.9, ")], PEER, None),
            (&[("X-Forwarded-For", "1.2.3.4, garbage")], PEER, None),
            (&[("X-Forwarded-For", "1.2.3.4, garbage, 10.0.0.2")], "10.0.0.2:0", None),
            (&[("X-Forwarded-For", "garbage, 198.51.100.9")], "198.51.100.9:0", None),
            (&[("X-Forwarded-For", "198.51.100.9:99999")], PEER, None),
            (&[("X-Forwarded-For", "198.51.100.9:0080x")], PEER, None),
            (&[("X-Forwarded-For", "010.0.0.1")], PEER, None),
            (&[("X-Forwarded-For", "[198.51.100.9]")], PEER, None),
            (&[("X-Forwarded-For", "fe80::1%eth0")], PEER, None),
            (&[("X-Forwarded-For", "unknown")], PEER, None),
            // the scheme: the rightmost X-Forwarded-Proto, http or https only
            (&[("X-Forwarded-For", "198.51.100.9"), ("X-Forwarded-Proto", "https")], "198.51.100.9:0", Some(Https)),
            (&[("X-Forwarded-Proto", "HTTPS")], PEER, Some(Https)),
            (&[("X-Forwarded-Proto", "http")], PEER, Some(Http)),
            (&[("X-Forwarded-Proto", "http, https")], PEER, Some(Https)),
            (&[("X-Forwarded-Proto", "https"), ("X-Forwarded-Proto", "http")], PEER, Some(Http)),
            (&[("X-Forwarded-Proto", "ftp")], PEER, None),
            (&[("X-Forwarded-Proto", "https , ")], PEER, None),
            (&[("X-Forwarded-Proto", "https\u{0}")], PEER, None),
        ] {
            assert_eq!(run(PEER, headers), (addr.to_string(), scheme), "{headers:?}");
        }
        // a mapped IPv4 peer is trusted as its IPv4 address
        assert_eq!(run("[::ffff:127.0.0.1]:9", &[("X-Forwarded-For", "198.51.100.9")]).0, "198.51.100.9:0");
        assert_eq!(run("[fd00::5]:9", &[("X-Forwarded-For", "198.51.100.9")]).0, "198.51.100.9:0");
    }

    #[test]
    fn forwarded_is_parsed_per_rfc_7239() {
        use Scheme::*;
        for (headers, addr, scheme) in [
            // RFC 7239 §4 and §7 examples
            (&[("Forwarded", r#"for="_gazonk""#)][..], PEER, None),
            (&[("Forwarded", r#"For="[2001:db8:cafe::17]:4711""#)], "[2001:db8:cafe::17]:4711", None),
            (&[("Forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")], "192.0.2.60:0", Some(Http)),
            (&[("Forwarded", "for=192.0.2.43, for=198.51.100.17")], "198.51.100.17:0", None),
            (&[("Forwarded", r#"for="192.0.2.60:47011";proto=https"#)], "192.0.2.60:47011", Some(Https)),
            (&[("Forwarded", "for=192.0.2.43,for=\"[2001:db8:cafe::17]\",for=unknown")], PEER, None),
            // spoofing: elements the client wrote are left of the proxy's
            (&[("Forwarded", "for=1.2.3.4;proto=https, for=198.51.100.9;proto=http")], "198.51.100.9:0", Some(Http)),
            (&[("Forwarded", "for=1.2.3.4"), ("Forwarded", "for=198.51.100.9")], "198.51.100.9:0", None),
            // trusted proxies stepped over; the proto is the element that named the client
            (&[("Forwarded", "for=198.51.100.9;proto=https, for=10.0.0.2;proto=http")], "198.51.100.9:0", Some(Https)),
            (&[("Forwarded", "for=10.0.0.3;proto=https, for=10.0.0.2")], "10.0.0.3:0", Some(Https)),
            // unknown/obfuscated: the last trusted hop, with the proto that hop reported
            (&[("Forwarded", "for=unknown;proto=https")], PEER, Some(Https)),
            (&[("Forwarded", "for=_hidden;proto=https, for=10.0.0.2")], "10.0.0.2:0", Some(Https)),
            (&[("Forwarded", "for=1.2.3.4, for=_hidden, for=10.0.0.2")], "10.0.0.2:0", None),
            (&[("Forwarded", "proto=https")], PEER, Some(Https)),
            (&[("Forwarded", r#"for="198.51.100.9:_port""#)], "198.51.100.9:0", None),
            // syntax: case, whitespace, empty elements, quoted-pair, other parameters
            (&[("Forwarded", "FOR=198.51.100.9;PROTO=HTTPS")], "198.51.100.9:0", Some(Https)),
            (&[("Forwarded", " for=198.51.100.9 ; proto=https ")], "198.51.100.9:0", Some(Https)),
            (&[("Forwarded", "for=1.2.3.4,,for=198.51.100.9,")], "198.51.100.9:0", None),
            (&[("Forwarded", r#"for="\1\9\8.51.100.9""#)], "198.51.100.9:0", None),
            (&[("Forwarded", r#"host="a,b;c";for=198.51.100.9;by=_x"#)], "198.51.100.9:0", None),
            (&[("Forwarded", "for=198.51.100.9;proto=gopher")], "198.51.100.9:0", None),
            // malformed lines are not believed at all, and stop the walk
            (&[("Forwarded", "for=")], PEER, None),
            (&[("Forwarded", "for")], PEER, None),
            (&[("Forwarded", "for=198.51.100.9 junk")], PEER, None),
            (&[("Forwarded", "for=198.51.100.9;for=1.2.3.4")], PEER, None),
            (&[("Forwarded", r#"for="1.2.3.4, for=198.51.100.9"#)], PEER, None),
            (&[("Forwarded", "for=[2001:db8::1]")], PEER, None),
            (&[("Forwarded", r#"for="[2001:db8::1""#)], PEER, None),
            (&[("Forwarded", r#"for="[::1]:99999""#)], PEER, None),
            (&[("Forwarded", r#"for="_""#)], PEER, None),
            (&[("Forwarded", "for=\"1.2.3.4\u{1}\"")], PEER, None),
            (&[("Forwarded", "for=1.2.3.4"), ("Forwarded", "garbage")], PEER, None),
            (&[("Forwarded", "garbage"), ("Forwarded", "for=198.51.100.9")], "198.51.100.9:0", None),
            (
                &[("Forwarded", "for=1.2.3.4"), ("Forwarded", "for=\"oops"), ("Forwarded", "for=10.0.0.2")],
                "10.0.0.2:0",
                None,
            ),
            // Forwarded alone: X-Forwarded-Proto is not mixed in
            (&[("Forwarded", "for=198.51.100.9"), ("X-Forwarded-Proto", "https")], "198.51.100.9:0", None),
        ] {
            assert_eq!(run(PEER, headers), (addr.to_string(), scheme), "{headers:?}");
        }
    }

    #[test]
    fn both_headers_must_agree() {
        use Scheme::*;
        for (headers, addr, scheme) in [
            (
                &[("Forwarded", "for=198.51.100.9;proto=https"), ("X-Forwarded-For", "198.51.100.9")][..],
                "198.51.100.9:0",
                Some(Https),
            ),
            (
                &[
                    ("Forwarded", "for=198.51.100.9"),
                    ("X-Forwarded-For", "198.51.100.9"),
                    ("X-Forwarded-Proto", "https"),
                ],
                "198.51.100.9:0",
                Some(Https),
            ),
            (
                &[("Forwarded", r#"for="[2001:db8::7]:4711""#), ("X-Forwarded-For", "2001:db8::7")],
                "[2001:db8::7]:4711",
                None,
            ),
            // behind an X-Forwarded-For-only proxy, a client's own Forwarded is not a way in
            (&[("Forwarded", "for=1.2.3.4;proto=https"), ("X-Forwarded-For", "198.51.100.9")], PEER, None),
            (&[("Forwarded", "for=1.2.3.4"), ("X-Forwarded-For", "1.2.3.4, 198.51.100.9")], PEER, None),
            // and behind a Forwarded-only proxy, nor is its own X-Forwarded-For
            (&[("X-Forwarded-For", "1.2.3.4"), ("Forwarded", "for=198.51.100.9")], PEER, None),
        ] {
            assert_eq!(run(PEER, headers), (addr.to_string(), scheme), "{headers:?}");
        }
    }
}
