//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1 and 2): the
//! few bytes a load balancer such as HAProxy or an AWS/GCP network load balancer
//! puts before a connection's first byte to say who the client really was. This
//! module only parses; it is sans-IO like `http::parse`: the acceptor calls
//! [`parse`] on what it has read so far, [`Parsed::Incomplete`] means "read more"
//! (the spec recommends tolerating a header split across segments), and nothing
//! here touches a socket, so there is nothing to stop.
//!
//! The receiver "MUST NOT try to guess whether the protocol header is present"
//! (spec §2), so there is no "no header" outcome: bytes that cannot start an
//! accepted signature are an error at the first such byte, which lets the caller
//! drop a plain HTTP request sent to a PROXY listener without waiting for more.
//! Errors are decided as early as the bytes allow (a v2 version nibble at byte 13,
//! a v1 protocol word as it arrives), never later than the spec's bounds: 107
//! bytes for a v1 line, [`V2_MAX`] for a v2 header.
//!
//! ```text
//! v1: "PROXY" SP ( "TCP4" | "TCP6" ) SP src SP dst SP sport SP dport CRLF
//!   | "PROXY" SP "UNKNOWN" [ SP <anything but CR and LF> ] CRLF        (≤ 107 bytes)
//! v2: \r\n\r\n\0\r\nQUIT\n  ver_cmd(0x2_)  fam_proto  len(u16, BE)  len bytes
//! ```
//!
//! Choices the spec leaves open, made here:
//! - v2 `PROXY` with family `AF_UNSPEC`/`AF_UNIX`, protocol `UNSPEC`, or UDP
//!   (`DGRAM`) gives [`Header::Local`]: the spec lets a receiver that does not
//!   support a valid combination "fall back to the UNSPEC mode", that is, use the
//!   socket's own addresses. spindle serves TCP only; a UDP or UNIX-socket client
//!   address would be meaningless as `REMOTE_ADDR`. The address block must still
//!   be as long as its family's addresses (12, 36 or 216 bytes).
//! - v2 TLVs are skipped, but must tile the rest of the header exactly (a TLV whose
//!   length runs past the end is an error, as in HAProxy). `PP2_TYPE_CRC32C` is not
//!   verified: the spec requires that only of receivers that support it.
//! - v2 `LOCAL` discards the whole block (addresses and TLVs) unread, as the spec
//!   says; the family byte's nibbles must still be assigned values.
//! - v1 addresses are parsed by `std`'s strict parsers: IPv4 is four decimal octets
//!   without leading zeros (`std` refuses `010.0.0.1`); IPv6 also accepts the
//!   embedded-IPv4 form (`::ffff:192.0.2.1`), which `inet_ntop` senders write for
//!   mapped addresses. Ports are 1 to 5 digits, no leading zero, at most 65535.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 line, CRLF included (spec §2.1: `PROXY UNKNOWN` with two full
/// IPv6 addresses and two 5-digit ports).
pub const V1_MAX: usize = 107;

/// The largest v2 header accepted, the 16 fixed bytes included. The spec allows up
/// to 16 + 65535; real senders stay far below (the largest blocks in use are AF_UNIX
/// addresses, 216 bytes, and TLVs such as HAProxy's SSL/SNI/unique-ID or an AWS VPC
/// endpoint ID, a few hundred bytes in all), and this bounds what a connection can
/// make the acceptor buffer before it is judged.
pub const V2_MAX: usize = 4096;

/// The most bytes [`parse`] can need before it answers `Complete` or an error: size
/// the acceptor's header buffer with this.
pub const MAX_HEADER: usize = V2_MAX;

const V1_SIG: &[u8] = b"PROXY ";
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v2 fixed part: signature, version/command, family/protocol, length.
const V2_FIXED: usize = 16;

/// Which header versions a listener accepts (`proxy_protocol = "v1" | "v2" | "any"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// The text header only.
    V1,
    /// The binary header only.
    V2,
    /// Either (the spec recommends v2 receivers also take v1).
    Any,
}

impl Versions {
    fn v1(self) -> bool {
        matches!(self, Versions::V1 | Versions::Any)
    }
    fn v2(self) -> bool {
        matches!(self, Versions::V2 | Versions::Any)
    }
}

/// What a complete header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A relayed TCP connection: the client's address and the address it connected to.
    Proxied {
        /// The client (becomes `REMOTE_ADDR`/`REMOTE_PORT`).
        source: SocketAddr,
        /// The address the client connected to on the proxy.
        destination: SocketAddr,
    },
    /// Use the socket's own addresses: a v2 `LOCAL` (the proxy's health check), a v1
    /// `PROXY UNKNOWN`, or a v2 family/protocol that is not TCP over IP (see the
    /// module notes).
    Local,
}

/// The outcome of [`parse`] on the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// So far a valid prefix of a header: read more and call again with all of it.
    Incomplete,
    /// A whole, valid header in the first `consumed` bytes; what follows is the
    /// client's own data.
    Complete {
        /// The header's length in bytes.
        consumed: usize,
        /// What it says.
        header: Header,
    },
}

/// Why a connection's first bytes are not an acceptable PROXY header. The spec's
/// answer to every one of them is to close the connection without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// The bytes cannot start the signature of an accepted version.
    Signature,
    /// A complete signature of a version this listener does not accept (1 or 2).
    VersionNotAccepted(u8),
    /// v1: no CRLF within the first 107 bytes.
    V1TooLong,
    /// v1: a CR not followed by LF, or an LF not preceded by CR.
    V1LineEnding,
    /// v1: the protocol is not `TCP4`, `TCP6` or `UNKNOWN`.
    V1Protocol,
    /// v1: not five fields after `PROXY` separated by single spaces, or a byte that
    /// cannot appear in addresses and ports.
    V1Syntax,
    /// v1: the named address (`source`/`destination`) is not one of the family's.
    V1Address(&'static str),
    /// v1: the named port is not decimal 0..=65535 without leading zeros.
    V1Port(&'static str),
    /// v2: the version nibble is not 2.
    V2Version(u8),
    /// v2: the command nibble is neither LOCAL (0) nor PROXY (1).
    V2Command(u8),
    /// v2: an unassigned family or protocol nibble (the whole byte).
    V2Family(u8),
    /// v2: the length is shorter than the family's addresses.
    V2AddressLength {
        /// The family/protocol byte.
        family: u8,
        /// The header's length field.
        len: u16,
    },
    /// v2: the whole header would be this many bytes, over [`V2_MAX`].
    V2TooLong(usize),
    /// v2: a TLV's length runs past the end of the header.
    V2Tlv,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Signature => f.write_str("not a proxy protocol header"),
            ProxyError::VersionNotAccepted(v) => {
                write!(f, "proxy protocol v{v} header on a listener that does not accept v{v}")
            }
            ProxyError::V1TooLong => write!(f, "proxy protocol v1: no crlf within {V1_MAX} bytes"),
            ProxyError::V1LineEnding => f.write_str("proxy protocol v1: a cr or lf that is not part of crlf"),
            ProxyError::V1Protocol => f.write_str("proxy protocol v1: protocol is not tcp4, tcp6 or unknown"),
            ProxyError::V1Syntax => f.write_str("proxy protocol v1: malformed line"),
            ProxyError::V1Address(which) => write!(f, "proxy protocol v1: bad {which} address"),
            ProxyError::V1Port(which) => write!(f, "proxy protocol v1: bad {which} port"),
            ProxyError::V2Version(v) => write!(f, "proxy protocol v2: version {v}, not 2"),
            ProxyError::V2Command(c) => write!(f, "proxy protocol v2: unknown command {c:#x}"),
            ProxyError::V2Family(b) => write!(f, "proxy protocol v2: unknown family/protocol {b:#04x}"),
            ProxyError::V2AddressLength { family, len } => write!(
                f,
                "proxy protocol v2: length {len} is shorter than the {} address bytes of family {family:#04x}",
                address_len(*family)
            ),
            ProxyError::V2TooLong(n) => {
                write!(f, "proxy protocol v2: header of {n} bytes is over the {V2_MAX}-byte limit")
            }
            ProxyError::V2Tlv => f.write_str("proxy protocol v2: a tlv runs past the end of the header"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Parses a PROXY header from the start of `buf` (everything read so far).
///
/// Returns [`Parsed::Incomplete`] while `buf` is a valid prefix of a header of an
/// accepted version, [`Parsed::Complete`] once a whole valid header is there, and an
/// error as soon as the bytes cannot become one. An empty `buf` is `Incomplete`.
pub fn parse(buf: &[u8], accept: Versions) -> Result<Parsed, ProxyError> {
    if buf.is_empty() {
        return Ok(Parsed::Incomplete);
    }
    // The two signatures differ in their first byte, so at most one can match.
    if accept.v2() && starts_like(buf, V2_SIG) {
        parse_v2(buf)
    } else if accept.v1() && starts_like(buf, V1_SIG) {
        parse_v1(buf)
    } else if buf.starts_with(V2_SIG) {
        Err(ProxyError::VersionNotAccepted(2))
    } else if buf.starts_with(V1_SIG) {
        Err(ProxyError::VersionNotAccepted(1))
    } else {
        Err(ProxyError::Signature)
    }
}

/// Whether `buf` and `sig` agree on their common length.
fn starts_like(buf: &[u8], sig: &[u8]) -> bool {
    let n = buf.len().min(sig.len());
    buf[..n] == sig[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        // "The receiver must not tolerate a single CR or LF character to end the line."
        Some(i) if window[i] == b'\n' => Err(ProxyError::V1LineEnding),
        Some(i) => {
            check_v1_prefix(&window[..i])?;
            if i + 2 > V1_MAX {
                // The CR is the 107th byte: its LF would make the line 108.
                Err(ProxyError::V1TooLong)
            } else if i + 1 == buf.len() {
                Ok(Parsed::Incomplete)
            } else if buf[i + 1] != b'\n' {
                Err(ProxyError::V1LineEnding)
            } else {
                let header = parse_v1_line(&buf[V1_SIG.len().min(i)..i])?;
                Ok(Parsed::Complete { consumed: i + 2, header })
            }
        }
        None if window.len() == V1_MAX => Err(ProxyError::V1TooLong),
        None => check_v1_prefix(window).map(|()| Parsed::Incomplete),
    }
}

/// Refuses an unfinished v1 line as soon as its protocol word or a byte in the
/// address part shows it cannot become valid (`line` holds no CR or LF).
fn check_v1_prefix(line: &[u8]) -> Result<(), ProxyError> {
    let Some(rest) = line.get(V1_SIG.len()..) else { return Ok(()) };
    if starts_like(rest, b"UNKNOWN") {
        // Anything may follow "UNKNOWN " ("the receiver must ignore anything
        // presented before the CRLF"), but the word itself must end there.
        return match rest.get(7) {
            Some(b' ') | None => Ok(()),
            Some(_) => Err(ProxyError::V1Protocol),
        };
    }
    if !(starts_like(rest, b"TCP4 ") || starts_like(rest, b"TCP6 ")) {
        return Err(ProxyError::V1Protocol);
    }
    let fields = rest.get(5..).unwrap_or(&[]);
    if fields.iter().all(|&b| b.is_ascii_hexdigit() || b == b'.' || b == b':' || b == b' ') {
        Ok(())
    } else {
        Err(ProxyError::V1Syntax)
    }
}

/// Parses a whole v1 line after `"PROXY "`, without its CRLF (its bytes have passed
/// [`check_v1_prefix`], so they are ASCII).
fn parse_v1_line(rest: &[u8]) -> Result<Header, ProxyError> {
    if rest == b"UNKNOWN" || rest.starts_with(b"UNKNOWN ") {
        return Ok(Header::Local);
    }
    let text = std::str::from_utf8(rest).map_err(|_| ProxyError::V1Syntax)?;
    let fields: Vec<&str> = text.split(' ').collect();
    if !matches!(fields[0], "TCP4" | "TCP6") {
        return Err(ProxyError::V1Protocol);
    }
    let [proto, src, dst, sport, dport] = fields[..] else { return Err(ProxyError::V1Syntax) };
    if fields.iter().any(|f| f.is_empty()) {
        return Err(ProxyError::V1Syntax);
    }
    // `proto` is TCP4 or TCP6 (checked above); each address must be of its family.
    let addr = |s: &str, which| {
        let ip = if proto == "TCP6" {
            s.parse::<Ipv6Addr>().map(IpAddr::from)
        } else {
            s.parse::<Ipv4Addr>().map(IpAddr::from)
        };
        ip.map_err(|_| ProxyError::V1Address(which))
    };
    let (src, dst) = (addr(src, "source")?, addr(dst, "destination")?);
    let sport = v1_port(sport).ok_or(ProxyError::V1Port("source"))?;
    let dport = v1_port(dport).ok_or(ProxyError::V1Port("destination"))?;
    Ok(Header::Proxied { source: SocketAddr::new(src, sport), destination: SocketAddr::new(dst, dport) })
}

/// A v1 port: 1 to 5 decimal digits, no leading zero ("in order to avoid any
/// possible confusion with octal numbers"), at most 65535.
fn v1_port(s: &str) -> Option<u16> {
    let digits = s.bytes().all(|b| b.is_ascii_digit());
    if !digits || s.is_empty() || s.len() > 5 || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// The address bytes of a v2 family/protocol byte whose addresses we can size
/// (0 for the UNSPEC ones, whose address information the spec says to ignore).
fn address_len(family: u8) -> usize {
    match family {
        0x11 | 0x12 => 12,
        0x21 | 0x22 => 36,
        0x31 | 0x32 => 216,
        _ => 0,
    }
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    // Judge each fixed byte as soon as it is here, so garbage fails without waiting.
    if let Some(&ver_cmd) = buf.get(12) {
        if ver_cmd >> 4 != 2 {
            return Err(ProxyError::V2Version(ver_cmd >> 4));
        }
        if ver_cmd & 0x0f > 1 {
            return Err(ProxyError::V2Command(ver_cmd & 0x0f));
        }
    }
    if let Some(&family) = buf.get(13) {
        // Families 0..=3 (UNSPEC, INET, INET6, UNIX), protocols 0..=2 (UNSPEC,
        // STREAM, DGRAM); anything else "must be rejected as invalid".
        if family >> 4 > 3 || family & 0x0f > 2 {
            return Err(ProxyError::V2Family(family));
        }
    }
    let (Some(&ver_cmd), Some(&family), Some(len)) = (buf.get(12), buf.get(13), buf.get(14..V2_FIXED)) else {
        return Ok(Parsed::Incomplete);
    };
    let len = u16::from_be_bytes([len[0], len[1]]);
    let total = V2_FIXED + usize::from(len);
    if total > V2_MAX {
        return Err(ProxyError::V2TooLong(total));
    }
    let local = ver_cmd & 0x0f == 0;
    let addr_len = address_len(family);
    if !local && usize::from(len) < addr_len {
        return Err(ProxyError::V2AddressLength { family, len });
    }
    let Some(block) = buf.get(V2_FIXED..total) else { return Ok(Parsed::Incomplete) };
    if local {
        // "The receiver must ... discard the protocol block including the family."
        return Ok(Parsed::Complete { consumed: total, header: Header::Local });
    }
    if addr_len > 0 {
        skip_tlvs(&block[addr_len..])?;
    }
    let header = match family {
        0x11 => {
            let ip = |at: usize| IpAddr::from([block[at], block[at + 1], block[at + 2], block[at + 3]]);
            Header::Proxied {
                source: SocketAddr::new(ip(0), port(block, 8)),
                destination: SocketAddr::new(ip(4), port(block, 10)),
            }
        }
        0x21 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&block[at..at + 16]);
                IpAddr::from(octets)
            };
            Header::Proxied {
                source: SocketAddr::new(ip(0), port(block, 32)),
                destination: SocketAddr::new(ip(16), port(block, 34)),
            }
        }
        // UNSPEC, UDP, UNIX: fall back to the socket's addresses (module notes).
        _ => Header::Local,
    };
    Ok(Parsed::Complete { consumed: total, header })
}

/// A big-endian port at `at` (the caller has checked the block's length).
fn port(block: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([block[at], block[at + 1]])
}

/// Walks the TLVs after the addresses: each is a type byte, a 16-bit big-endian
/// length, and that many bytes; together they must end exactly at the header's end.
fn skip_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let Some(&[_, hi, lo]) = tlvs.get(..3) else { return Err(ProxyError::V2Tlv) };
        let end = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = tlvs.get(end..).ok_or(ProxyError::V2Tlv)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn proxied(src: &str, dst: &str) -> Header {
        Header::Proxied { source: sa(src), destination: sa(dst) }
    }

    /// A v2 header: signature, `ver_cmd`, `family`, the length of `block`, `block`.
    fn v2(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIG.to_vec();
        h.push(ver_cmd);
        h.push(family);
        h.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    /// TCP over IPv4 from 192.0.2.1:56324 to 198.51.100.2:443, then `tail`.
    fn v4_block(tail: &[u8]) -> Vec<u8> {
        let mut b = vec![192, 0, 2, 1, 198, 51, 100, 2];
        b.extend_from_slice(&56324u16.to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b.extend_from_slice(tail);
        b
    }

    fn v6_block() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        b.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        b.extend_from_slice(&[0xa6, 0x52, 0x01, 0xbb]);
        b
    }

    /// Every valid header in the tables below, with what it must parse to.
    fn valid() -> Vec<(Vec<u8>, Versions, Header)> {
        let ipv6_max = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        vec![
            // spec §2.1's example line
            (
                b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec(),
                Versions::V1,
                proxied("192.168.0.1:56324", "192.168.0.11:443"),
            ),
            // spec §2.1's longest lines: 56, 104 and 107 bytes
            (
                b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n".to_vec(),
                Versions::Any,
                proxied("255.255.255.255:65535", "255.255.255.255:65535"),
            ),
            (
                format!("PROXY TCP6 {ipv6_max} {ipv6_max} 65535 65535\r\n").into_bytes(),
                Versions::V1,
                proxied(&format!("[{ipv6_max}]:65535"), &format!("[{ipv6_max}]:65535")),
            ),
            (format!("PROXY UNKNOWN {ipv6_max} {ipv6_max} 65535 65535\r\n").into_bytes(), Versions::V1, Header::Local),
            (b"PROXY UNKNOWN\r\n".to_vec(), Versions::V1, Header::Local),
            (b"PROXY UNKNOWN whatever \x01\xff\r\n".to_vec(), Versions::Any, Header::Local),
            (
                b"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 0 80\r\n".to_vec(),
                Versions::Any,
                proxied("[2001:db8::1]:0", "[::ffff:192.0.2.1]:80"),
            ),
            (b"PROXY TCP4 0.0.0.0 10.0.0.1 1 0\r\n".to_vec(), Versions::V1, proxied("0.0.0.0:1", "10.0.0.1:0")),
            // what HAProxy's send-proxy-v2 wrote in a capture: 172.19.0.1:42578 -> 172.19.0.3:80
            (
                b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xac\x13\x00\x01\xac\x13\x00\x03\xa6\x52\x00\x50".to_vec(),
                Versions::V2,
                proxied("172.19.0.1:42578", "172.19.0.3:80"),
            ),
            (v2(0x21, 0x11, &v4_block(&[])), Versions::Any, proxied("192.0.2.1:56324", "198.51.100.2:443")),
            (v2(0x21, 0x21, &v6_block()), Versions::V2, proxied("[2001:db8::1]:42578", "[2001:db8::2]:443")),
            // TLVs skipped: an ALPN "h2", a NOOP of 0 bytes, a unique ID
            (
                v2(0x21, 0x11, &v4_block(b"\x01\x00\x02h2\x04\x00\x00\x05\x00\x03abc")),
                Versions::V2,
                proxied("192.0.2.1:56324", "198.51.100.2:443"),
            ),
            // LOCAL: health checks; the block is discarded unread, whatever it holds
            (v2(0x20, 0x00, &[]), Versions::V2, Header::Local),
            (v2(0x20, 0x11, &v4_block(&[])), Versions::V2, Header::Local),
            (v2(0x20, 0x00, b"\x01\x02\x03"), Versions::Any, Header::Local),
            // PROXY with what spindle does not serve falls back to the socket's addresses
            (v2(0x21, 0x00, &[]), Versions::V2, Header::Local),
            (v2(0x21, 0x00, b"ignored"), Versions::V2, Header::Local),
            (v2(0x21, 0x10, b""), Versions::V2, Header::Local),
            (v2(0x21, 0x12, &v4_block(&[])), Versions::V2, Header::Local),
            (v2(0x21, 0x22, &v6_block()), Versions::V2, Header::Local),
            (v2(0x21, 0x31, &[0; 216]), Versions::V2, Header::Local),
            (v2(0x21, 0x32, &[0; 216]), Versions::V2, Header::Local),
            // the largest accepted header
            (
                v2(0x21, 0x11, &v4_block(&[&[0x04, 0x0f, 0xe1][..], &[0; 0x0fe1]].concat())),
                Versions::V2,
                proxied("192.0.2.1:56324", "198.51.100.2:443"),
            ),
        ]
    }

    #[test]
    fn valid_headers_parse_and_consume_exactly_their_bytes() {
        for (header, accept, expected) in valid() {
            let mut with_request = header.clone();
            with_request.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            for buf in [&header, &with_request] {
                assert_eq!(
                    parse(buf, accept),
                    Ok(Parsed::Complete { consumed: header.len(), header: expected }),
                    "{:?}",
                    String::from_utf8_lossy(buf)
                );
            }
        }
        assert!(v2(0x21, 0x11, &v4_block(&[&[0x04, 0x0f, 0xe1][..], &[0; 0x0fe1]].concat())).len() == V2_MAX);
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        // Also feeding byte by byte, as a header split over many segments arrives.
        for (header, accept, expected) in valid() {
            for end in 0..header.len() {
                assert_eq!(
                    parse(&header[..end], accept),
                    Ok(Parsed::Incomplete),
                    "{:?}[..{end}]",
                    String::from_utf8_lossy(&header)
                );
            }
            assert_eq!(parse(&header, accept), Ok(Parsed::Complete { consumed: header.len(), header: expected }));
        }
    }

    #[test]
    fn invalid_headers_are_refused() {
        let long_unknown = format!("PROXY UNKNOWN {}\r\n", "f".repeat(V1_MAX - 15));
        assert_eq!(long_unknown.len(), V1_MAX + 1);
        let cases: Vec<(Vec<u8>, Versions, ProxyError)> = vec![
            // bad signatures; a plain request is refused at its first byte
            (b"GET / HTTP/1.1\r\n\r\n".to_vec(), Versions::Any, ProxyError::Signature),
            (b"G".to_vec(), Versions::Any, ProxyError::Signature),
            (b"\x16\x03\x01".to_vec(), Versions::Any, ProxyError::Signature),
            (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), Versions::Any, ProxyError::Signature),
            (b"PROXY\tTCP4".to_vec(), Versions::V1, ProxyError::Signature),
            (b"\r\n\r\n\0\r\nQUIX".to_vec(), Versions::V2, ProxyError::Signature),
            (b"\r\n\r\nGET".to_vec(), Versions::Any, ProxyError::Signature),
            // a version the listener does not take
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), Versions::V2, ProxyError::VersionNotAccepted(1)),
            (b"P".to_vec(), Versions::V2, ProxyError::Signature),
            (v2(0x21, 0x11, &v4_block(&[])), Versions::V1, ProxyError::VersionNotAccepted(2)),
            // v1 over 107 bytes, with or without a CRLF after
            (long_unknown.clone().into_bytes(), Versions::V1, ProxyError::V1TooLong),
            (long_unknown.as_bytes()[..V1_MAX].to_vec(), Versions::V1, ProxyError::V1TooLong),
            (format!("PROXY UNKNOWN {}", "f".repeat(200)).into_bytes(), Versions::V1, ProxyError::V1TooLong),
            // line endings
            (b"PROXY UNKNOWN\n".to_vec(), Versions::V1, ProxyError::V1LineEnding),
            (b"PROXY UNKNOWN\rX\r\n".to_vec(), Versions::V1, ProxyError::V1LineEnding),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r".to_vec(), Versions::V1, ProxyError::V1LineEnding),
            (b"PROXY TCP4 1.2.3.4\n".to_vec(), Versions::V1, ProxyError::V1LineEnding),
            // unknown protocol, decided before the line ends
            (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), Versions::V1, ProxyError::V1Protocol),
            (b"PROXY TCP5".to_vec(), Versions::V1, ProxyError::V1Protocol),
            (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), Versions::V1, ProxyError::V1Protocol),
            (b"PROXY UNKNOWNX\r\n".to_vec(), Versions::V1, ProxyError::V1Protocol),
            (b"PROXY \r\n".to_vec(), Versions::V1, ProxyError::V1Protocol),
            (b"PROXY TCP4\r\n".to_vec(), Versions::V1, ProxyError::V1Syntax),
            // fields: count, spacing, characters
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n".to_vec(), Versions::V1, ProxyError::V1Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n".to_vec(), Versions::V1, ProxyError::V1Syntax),
            (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), Versions::V1, ProxyError::V1Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n".to_vec(), Versions::V1, ProxyError::V1Syntax),
            (b"PROXY TCP4 \r\n".to_vec(), Versions::V1, ProxyError::V1Syntax),
            (b"PROXY TCP4 1.2.3.4\t5.6.7.8".to_vec(), Versions::V1, ProxyError::V1Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n".to_vec(), Versions::V1, ProxyError::V1Syntax),
            (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n".to_vec(), Versions::V1, ProxyError::V1Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x00\r\n".to_vec(), Versions::V1, ProxyError::V1Syntax),
            // addresses that do not parse for their family
            (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n".to_vec(), Versions::V1, ProxyError::V1Address("source")),
            (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n".to_vec(), Versions::V1, ProxyError::V1Address("destination")),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n".to_vec(), Versions::V1, ProxyError::V1Address("source")),
            (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n".to_vec(), Versions::V1, ProxyError::V1Address("source")),
            (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n".to_vec(), Versions::V1, ProxyError::V1Address("source")),
            (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n".to_vec(), Versions::V1, ProxyError::V1Address("source")),
            (b"PROXY TCP6 ::1 1::2::3 1 2\r\n".to_vec(), Versions::V1, ProxyError::V1Address("destination")),
            (b"PROXY TCP6 ::1 12345::1 1 2\r\n".to_vec(), Versions::V1, ProxyError::V1Address("destination")),
            // ports: range, leading zeros, hex
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n".to_vec(), Versions::V1, ProxyError::V1Port("source")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n".to_vec(), Versions::V1, ProxyError::V1Port("destination")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n".to_vec(), Versions::V1, ProxyError::V1Port("source")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n".to_vec(), Versions::V1, ProxyError::V1Port("destination")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 000001\r\n".to_vec(), Versions::V1, ProxyError::V1Port("destination")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 a 2\r\n".to_vec(), Versions::V1, ProxyError::V1Port("source")),
            // v2: version, command, family/protocol, judged at their byte
            (v2(0x11, 0x11, &v4_block(&[])), Versions::V2, ProxyError::V2Version(1)),
            (v2(0x31, 0x11, &v4_block(&[])), Versions::V2, ProxyError::V2Version(3)),
            (b"\r\n\r\n\0\r\nQUIT\n\x10".to_vec(), Versions::V2, ProxyError::V2Version(1)),
            (v2(0x22, 0x11, &v4_block(&[])), Versions::V2, ProxyError::V2Command(2)),
            (b"\r\n\r\n\0\r\nQUIT\n\x2f".to_vec(), Versions::Any, ProxyError::V2Command(0xf)),
            (v2(0x21, 0x41, &v4_block(&[])), Versions::V2, ProxyError::V2Family(0x41)),
            (v2(0x21, 0x13, &v4_block(&[])), Versions::V2, ProxyError::V2Family(0x13)),
            (v2(0x20, 0x13, &[]), Versions::V2, ProxyError::V2Family(0x13)),
            (b"\r\n\r\n\0\r\nQUIT\n\x21\xff".to_vec(), Versions::V2, ProxyError::V2Family(0xff)),
            // a length too short for the family's addresses, judged at byte 16
            (v2(0x21, 0x11, &[0; 11]), Versions::V2, ProxyError::V2AddressLength { family: 0x11, len: 11 }),
            (v2(0x21, 0x21, &v4_block(&[])), Versions::V2, ProxyError::V2AddressLength { family: 0x21, len: 12 }),
            (v2(0x21, 0x12, &[]), Versions::V2, ProxyError::V2AddressLength { family: 0x12, len: 0 }),
            (v2(0x21, 0x31, &[0; 108]), Versions::V2, ProxyError::V2AddressLength { family: 0x31, len: 108 }),
            (
                b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x0c".to_vec(),
                Versions::V2,
                ProxyError::V2AddressLength { family: 0x21, len: 12 },
            ),
            // over the size bound, judged from the length field alone
            (b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec(), Versions::V2, ProxyError::V2TooLong(16 + 0xffff)),
            (v2(0x20, 0x00, &[0; V2_MAX - 15]), Versions::V2, ProxyError::V2TooLong(V2_MAX + 1)),
            // TLVs that do not tile the rest of the header
            (v2(0x21, 0x11, &v4_block(b"\x01")), Versions::V2, ProxyError::V2Tlv),
            (v2(0x21, 0x11, &v4_block(b"\x01\x00")), Versions::V2, ProxyError::V2Tlv),
            (v2(0x21, 0x11, &v4_block(b"\x01\x00\x03h2")), Versions::V2, ProxyError::V2Tlv),
            (v2(0x21, 0x11, &v4_block(b"\x01\x00\x02h2\x04")), Versions::V2, ProxyError::V2Tlv),
        ];
        for (buf, accept, expected) in cases {
            assert_eq!(parse(&buf, accept), Err(expected), "{:?} as {accept:?}", String::from_utf8_lossy(&buf));
        }
    }

    #[test]
    fn errors_read_as_lower_case_sentences() {
        for (err, text) in [
            (ProxyError::Signature, "not a proxy protocol header"),
            (ProxyError::VersionNotAccepted(1), "proxy protocol v1 header on a listener that does not accept v1"),
            (ProxyError::V1TooLong, "proxy protocol v1: no crlf within 107 bytes"),
            (ProxyError::V1Port("source"), "proxy protocol v1: bad source port"),
            (ProxyError::V2Command(2), "proxy protocol v2: unknown command 0x2"),
            (ProxyError::V2Family(0x41), "proxy protocol v2: unknown family/protocol 0x41"),
            (
                ProxyError::V2AddressLength { family: 0x21, len: 12 },
                "proxy protocol v2: length 12 is shorter than the 36 address bytes of family 0x21",
            ),
            (ProxyError::V2TooLong(5000), "proxy protocol v2: header of 5000 bytes is over the 4096-byte limit"),
        ] {
            assert_eq!(err.to_string(), text);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_within_bounds() {
        // A cheap stand-in for the fuzz target: every 1- and 2-byte mutation of each
        // valid header either parses within its length, waits, or is refused.
        for (header, accept, _) in valid() {
            for i in 0..header.len() {
                for b in [0x00, 0x0a, 0x0d, 0x20, 0x30, 0x3a, 0xff] {
                    let mut m = header.clone();
                    m[i] = b;
                    if let Ok(Parsed::Complete { consumed, .. }) = parse(&m, accept) {
                        assert!(consumed <= m.len() && consumed <= MAX_HEADER);
                    }
                }
            }
        }
    }
}
