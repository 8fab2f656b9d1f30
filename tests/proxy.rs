//! PROXY protocol v1/v2 on HTTP and echo listeners, and forwarding headers from trusted
//! proxies only: what the app and the access log see as the client, over real sockets.

mod util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use util::*;

fn config(proxy: &str, forwarded: &str, limits: &str) -> String {
    format!(
        "[limits]\n{limits}\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n{proxy}\n{forwarded}\n\
         [listener.apps]\n\"/environ\" = \"environ\"\n\"/metrics\" = \"metrics\"\n\
         [[listener]]\nname = \"echo\"\nbind = \"127.0.0.1:0\"\nprotocol = \"echo\"\n{proxy}\n"
    )
}

const V1_TRUSTED: &str = "proxy_protocol = \"v1\"\nproxy_trusted = [\"127.0.0.1/32\"]";
const ANY_TRUSTED: &str = "proxy_protocol = \"any\"\nproxy_trusted = [\"127.0.0.0/8\", \"::1\"]";

/// Sends `bytes` (a PROXY header and a request) and reads to EOF.
fn exchange(addr: SocketAddr, parts: &[&[u8]]) -> Vec<u8> {
    let mut s = connect(addr);
    for part in parts {
        // A server that refused the first part may have closed already.
        if s.write_all(part).and_then(|()| s.flush()).is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn environ_of(response: &[u8]) -> String {
    let text = String::from_utf8_lossy(response).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

const GET_ENVIRON: &[u8] = b"GET /environ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// A v2 header: PROXY command, TCP over IPv4, `src` → `dst`, plus `tlv` bytes.
fn v2(src: ([u8; 4], u16), dst: ([u8; 4], u16), tlv: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x11); // AF_INET, STREAM
    h.extend_from_slice(&((12 + tlv.len()) as u16).to_be_bytes());
    h.extend_from_slice(&src.0);
    h.extend_from_slice(&dst.0);
    h.extend_from_slice(&src.1.to_be_bytes());
    h.extend_from_slice(&dst.1.to_be_bytes());
    h.extend_from_slice(tlv);
    h
}

#[test]
fn a_v1_header_sets_remote_addr_and_the_access_log_peer() {
    let daemon = Daemon::start(&config(V1_TRUSTED, "", ""));
    let out = exchange(daemon.addr("web"), &[b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n", GET_ENVIRON]);
    let env = environ_of(&out);
    assert!(env.contains("\nREMOTE_ADDR=203.0.113.7\n") && env.contains("\nREMOTE_PORT=51234\n"), "{env}");
    assert!(env.contains("\nSERVER_PORT=443\n"), "the address the client connected to: {env}");
    daemon.log.wait_for("peer=203.0.113.7:51234", Duration::from_secs(10)).unwrap();
}

#[test]
fn a_v2_header_split_across_segments_with_tlvs_and_a_local_header_work() {
    let daemon = Daemon::start(&config(ANY_TRUSTED, "", ""));
    let web = daemon.addr("web");
    // PP2_TYPE_AUTHORITY TLV (0x02), skipped.
    let header = v2(([198, 51, 100, 23], 40000), ([10, 0, 0, 1], 8080), &[0x02, 0x00, 0x03, b'a', b'b', b'c']);
    let (first, rest) = header.split_at(7);
    let env = environ_of(&exchange(web, &[first, rest, GET_ENVIRON]));
    assert!(env.contains("\nREMOTE_ADDR=198.51.100.23\n") && env.contains("\nREMOTE_PORT=40000\n"), "{env}");
    // LOCAL (a health check from the proxy itself): the socket's own addresses.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    let env = environ_of(&exchange(web, &[&local, GET_ENVIRON]));
    assert!(env.contains("\nREMOTE_ADDR=127.0.0.1\n"), "{env}");
}

#[test]
fn connections_without_a_valid_header_or_from_untrusted_networks_are_closed_unanswered() {
    let daemon = Daemon::start(&config(V1_TRUSTED, "", ""));
    let web = daemon.addr("web");
    // A plain request where a header must come first.
    assert_eq!(exchange(web, &[GET_ENVIRON]), b"", "no response to a connection without a PROXY header");
    // A v2 header on a v1-only listener.
    assert_eq!(exchange(web, &[&v2(([1, 2, 3, 4], 1), ([5, 6, 7, 8], 2), b""), GET_ENVIRON]), b"");
    // Garbage in a v1 line.
    assert_eq!(exchange(web, &[b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", GET_ENVIRON]), b"");
    let metrics = exchange(
        web,
        &[
            b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ],
    );
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("\nspindle_proxy_rejected_total 3\n"), "{metrics}");
    drop(daemon);
    let daemon = Daemon::start(&config("proxy_protocol = \"v1\"\nproxy_trusted = [\"10.0.0.0/8\"]", "", ""));
    let out = exchange(daemon.addr("web"), &[b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n", GET_ENVIRON]);
    assert_eq!(out, b"", "a header from outside proxy_trusted is not believed, nor answered");
}

#[test]
fn a_header_that_does_not_come_within_header_timeout_closes_the_connection() {
    let daemon = Daemon::start(&config(V1_TRUSTED, "", "header_timeout = \"300ms\""));
    let mut s = connect(daemon.addr("web"));
    s.write_all(b"PROXY TCP4 ").unwrap();
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    let n = s.read_to_end(&mut out).unwrap_or(0);
    assert_eq!(n, 0, "closed unanswered: {:?}", String::from_utf8_lossy(&out));
    assert!(started.elapsed() < READ_TIMEOUT, "closed by the server, not by the client's timeout");
}

#[test]
fn echo_behind_a_proxy_echoes_the_bytes_that_came_with_the_header() {
    let daemon = Daemon::start(&config(V1_TRUSTED, "", ""));
    let mut s = connect(daemon.addr("echo"));
    s.write_all(b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 7\r\nhello ").unwrap();
    let mut got = vec![0u8; 6];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, b"hello ");
    assert_eq!(echo_once(&mut s, b"world"), b"world");
}

fn plain_http(forwarded: &str) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n{forwarded}\n\
         [listener.apps]\n\"/environ\" = \"environ\"\n"
    )
}

fn get_with(addr: SocketAddr, headers: &str) -> String {
    let request = format!("GET /environ HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n");
    environ_of(&exchange(addr, &[request.as_bytes()]))
}

#[test]
fn forwarding_headers_are_believed_from_trusted_proxies_only() {
    let trusted = Daemon::start(&plain_http("forwarded_trusted = [\"127.0.0.1/32\"]"));
    let env = get_with(trusted.addr("web"), "X-Forwarded-For: 198.51.100.9\r\nX-Forwarded-Proto: https\r\n");
    assert!(env.contains("\nREMOTE_ADDR=198.51.100.9\n") && env.contains("\nwsgi.url_scheme=https\n"), "{env}");
    let env = get_with(trusted.addr("web"), "Forwarded: for=\"[2001:db8::7]:4711\";proto=https\r\n");
    assert!(env.contains("\nREMOTE_ADDR=2001:db8::7\n") && env.contains("\nREMOTE_PORT=4711\n"), "{env}");
    // A client behind the trusted proxy that sends its own X-Forwarded-For: the proxy
    // appends the real address, and the walk from the right stops there.
    let env = get_with(trusted.addr("web"), "X-Forwarded-For: 1.2.3.4, 203.0.113.50\r\n");
    assert!(env.contains("\nREMOTE_ADDR=203.0.113.50\n"), "{env}");

    let untrusted = Daemon::start(&plain_http("forwarded_trusted = [\"10.0.0.0/8\"]"));
    let env = get_with(untrusted.addr("web"), "X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n");
    assert!(env.contains("\nREMOTE_ADDR=127.0.0.1\n"), "a spoofed X-Forwarded-For is not believed: {env}");
    assert!(env.contains("\nwsgi.url_scheme=http\n"), "{env}");
    assert!(env.contains("\nHTTP_X_FORWARDED_FOR=1.2.3.4\n"), "passed to the app untouched: {env}");
    let default = Daemon::start(&plain_http(""));
    let env = get_with(default.addr("web"), "X-Forwarded-For: 1.2.3.4\r\n");
    assert!(env.contains("\nREMOTE_ADDR=127.0.0.1\n"), "nothing is trusted by default: {env}");
}

#[test]
fn proxy_protocol_without_proxy_trusted_is_a_config_error() {
    let path = write_config(&config("proxy_protocol = \"v2\"", "", ""));
    let out = std::process::Command::new(bin()).args(["check", "--no-bind", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("listener[0].proxy_protocol") && stderr.contains("proxy_trusted"), "{stderr}");
}
