//! IP networks in CIDR notation, for the trusted-proxy lists (`proxy_trusted`,
//! `forwarded_trusted`). Pure values: parsed once when the config loads, then read
//! by the acceptor (is this peer allowed to send a PROXY header?) and by workers
//! (does this peer's `Forwarded` count?). Nothing here runs or stops.
//!
//! Parsing is strict, like Python's `ipaddress.ip_network(strict=True)`: a network
//! whose address has bits set below the prefix (`10.0.0.1/8`) is refused with the
//! network it probably meant, because the two readings ("the host 10.0.0.1" and
//! "all of 10/8") trust very different sets of machines and a config file should
//! not leave us to guess. A bare address is a single host (`/32` or `/128`).
//!
//! Matching treats an IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, what a dual-stack
//! `[::]` listener reports for an IPv4 client) as the IPv4 address it carries, so
//! `10.0.0.0/8` trusts that client whichever socket it came in on. An IPv6 network
//! matches IPv4 addresses through their mapped form, so `::/0` is everyone and
//! `::ffff:0:0/96` is every IPv4 client.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network: an address and a prefix length, host bits all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network string was refused; the text quotes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    Address(String),
    /// The part after `/` is not a decimal prefix length within the family's width.
    Prefix(String),
    /// Bits are set below the prefix; carries the input and the network it masks to.
    HostBits(String, Network),
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkError::Address(s) => write!(f, "{s:?} is not an IP address or network"),
            NetworkError::Prefix(s) => {
                write!(f, "{s:?} has a bad prefix length (0-32 for IPv4, 0-128 for IPv6)")
            }
            NetworkError::HostBits(s, net) => {
                write!(f, "{s:?} has host bits set (did you mean {net}, or {}?)", s.split('/').next().unwrap_or(s))
            }
        }
    }
}

impl std::error::Error for NetworkError {}

impl Network {
    /// The network's width in bits for its family.
    fn width(addr: IpAddr) -> u8 {
        match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    /// Whether `ip` is in this network. IPv4-mapped IPv6 addresses count as the IPv4
    /// address they carry; an IPv6 network sees IPv4 addresses in their mapped form.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        // `to_ipv4_mapped`, not `to_ipv4`: the latter also turns the deprecated
        // IPv4-compatible form into IPv4, so `::1` would match `0.0.0.0/8`.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
            IpAddr::V4(_) => *ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net).into(), u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(u128::from(net), u128::from(ip), 128, self.prefix),
            (IpAddr::V6(net), IpAddr::V4(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip.to_ipv6_mapped()), 128, self.prefix)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

/// Whether the top `prefix` bits of two `width`-bit numbers (held in u128) agree.
fn prefix_eq(a: u128, b: u128, width: u8, prefix: u8) -> bool {
    mask(width, prefix) & (a ^ b) == 0
}

/// The mask of the top `prefix` bits of a `width`-bit number (`width` 32 or 128).
fn mask(width: u8, prefix: u8) -> u128 {
    let full = if width == 128 { u128::MAX } else { (1u128 << width) - 1 };
    if prefix == 0 {
        // A shift by the full width would overflow: /0 masks nothing.
        return 0;
    }
    (full << (width - prefix.min(width))) & full
}

impl FromStr for Network {
    type Err = NetworkError;

    /// `10.0.0.0/8`, `fd00::/8`, or a bare address (one host).
    fn from_str(s: &str) -> Result<Network, NetworkError> {
        let (addr_part, prefix_part) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_part.parse().map_err(|_| NetworkError::Address(s.to_string()))?;
        let width = Network::width(addr);
        let prefix = match prefix_part {
            None => width,
            Some(p) => {
                // Digits only (no sign, no spaces) and no leading zero, so `/08` or
                // `/+8` cannot be read two ways.
                let ok = !p.is_empty()
                    && p.len() <= 3
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (p == "0" || !p.starts_with('0'));
                match p.parse::<u8>() {
                    Ok(n) if ok && n <= width => n,
                    _ => return Err(NetworkError::Prefix(s.to_string())),
                }
            }
        };
        let masked = match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from((u128::from(u32::from(v4)) & mask(32, prefix)) as u32)),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask(128, prefix))),
        };
        let net = Network { addr: masked, prefix };
        if masked != addr {
            return Err(NetworkError::HostBits(s.to_string(), net));
        }
        Ok(net)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Whether any network in `nets` contains `ip`.
pub(crate) fn any_contains(nets: &[Network], ip: &IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_bare_addresses() {
        for (input, shown) in [
            ("127.0.0.1/32", "127.0.0.1/32"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::1/128", "::1/128"),
            ("fd00::/8", "fd00::/8"),
            ("::/0", "::/0"),
            ("192.168.1.7", "192.168.1.7/32"),
            ("2001:db8::1", "2001:db8::1/128"),
            ("::ffff:0:0/96", "::ffff:0.0.0.0/96"),
        ] {
            let net: Network = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(net.to_string(), shown, "{input}");
        }
    }

    #[test]
    fn refuses_bad_networks_with_a_message() {
        for (input, message) in [
            ("10.0.0.1/8", r#""10.0.0.1/8" has host bits set (did you mean 10.0.0.0/8, or 10.0.0.1?)"#),
            ("fd00::1/8", r#""fd00::1/8" has host bits set (did you mean fd00::/8, or fd00::1?)"#),
            ("10.0.0.0/33", r#""10.0.0.0/33" has a bad prefix length (0-32 for IPv4, 0-128 for IPv6)"#),
            ("::/129", r#""::/129" has a bad prefix length (0-32 for IPv4, 0-128 for IPv6)"#),
            ("10.0.0.0/", r#""10.0.0.0/" has a bad prefix length (0-32 for IPv4, 0-128 for IPv6)"#),
            ("10.0.0.0/08", r#""10.0.0.0/08" has a bad prefix length (0-32 for IPv4, 0-128 for IPv6)"#),
            ("10.0.0.0/+8", r#""10.0.0.0/+8" has a bad prefix length (0-32 for IPv4, 0-128 for IPv6)"#),
            ("10.0.0.0/8/8", r#""10.0.0.0/8/8" has a bad prefix length (0-32 for IPv4, 0-128 for IPv6)"#),
            ("10.0.0.0/ 8", r#""10.0.0.0/ 8" has a bad prefix length (0-32 for IPv4, 0-128 for IPv6)"#),
            ("10.0.0/8", r#""10.0.0/8" is not an IP address or network"#),
            ("010.0.0.0/8", r#""010.0.0.0/8" is not an IP address or network"#),
            (" 10.0.0.0/8", r#"" 10.0.0.0/8" is not an IP address or network"#),
            ("localhost", r#""localhost" is not an IP address or network"#),
            ("fe80::1%eth0", r#""fe80::1%eth0" is not an IP address or network"#),
            ("", r#""" is not an IP address or network"#),
        ] {
            match input.parse::<Network>() {
                Ok(net) => panic!("{input:?} parsed as {net}"),
                Err(e) => assert_eq!(e.to_string(), message, "{input:?}"),
            }
        }
    }

    #[test]
    fn contains_matches_prefixes_and_mapped_addresses() {
        for (net, addr, inside) in [
            ("127.0.0.1/32", "127.0.0.1", true),
            ("127.0.0.1/32", "127.0.0.2", false),
            ("10.0.0.0/8", "10.255.255.255", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "9.255.255.255", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("192.168.0.0/23", "192.168.1.200", true),
            ("192.168.0.0/23", "192.168.2.1", false),
            // A dual-stack listener reports IPv4 clients as mapped IPv6.
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("10.0.0.0/8", "::ffff:11.1.2.3", false),
            // IPv4-compatible (deprecated) is not IPv4: ::1 is not 0.0.0.1.
            ("0.0.0.0/8", "::1", false),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("::1/128", "::1", true),
            ("::1/128", "127.0.0.1", false),
            ("fd00::/8", "fdff:1::2", true),
            ("fd00::/8", "fe00::1", false),
            ("::/0", "2001:db8::1", true),
            ("::/0", "10.0.0.1", true),
            ("::ffff:0:0/96", "10.0.0.1", true),
            ("::ffff:10.0.0.0/104", "10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "11.9.9.9", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
        ] {
            let network: Network = net.parse().unwrap();
            assert_eq!(network.contains(&ip(addr)), inside, "{net} contains {addr}");
        }
        let nets: Vec<Network> = ["127.0.0.1", "10.0.0.0/8"].iter().map(|s| s.parse().unwrap()).collect();
        assert!(any_contains(&nets, &ip("10.2.3.4")));
        assert!(!any_contains(&nets, &ip("192.0.2.1")));
        assert!(!any_contains(&[], &ip("127.0.0.1")));
    }
}
