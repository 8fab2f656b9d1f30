//! Fuzz target: the PROXY protocol header parser (`src/proxy.rs`), fed what a peer on a
//! `proxy_protocol` listener could send.
//!
//! Beyond "never panics", for every accepted version set:
//! - a complete header consumes at most the input and at most `PROXY_MAX_HEADER`
//!   bytes, and parses the same with nothing after it (bytes after the header, the
//!   protocol's own, cannot change it);
//! - every strict prefix of a complete header is `Incomplete`: the header may arrive
//!   in any number of segments, and whether it is accepted must not depend on where
//!   they were cut;
//! - an input the parser calls `Incomplete` stays within the longest header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spindle::fuzzing::{parse_proxy, ProxyParsed, ProxyVersions, PROXY_MAX_HEADER};

fuzz_target!(|data: &[u8]| {
    for versions in [ProxyVersions::V1, ProxyVersions::V2, ProxyVersions::Any] {
        check(data, versions);
    }
});

fn check(data: &[u8], versions: ProxyVersions) {
    match parse_proxy(data, versions) {
        Ok(ProxyParsed::Complete { consumed, header }) => {
            assert!(consumed <= data.len() && consumed <= PROXY_MAX_HEADER, "consumed {consumed}");
            match parse_proxy(&data[..consumed], versions) {
                Ok(ProxyParsed::Complete { consumed: again, header: same }) => {
                    assert_eq!(again, consumed);
                    assert_eq!(same, header);
                }
                other => panic!("the header alone: {other:?}"),
            }
            for cut in 0..consumed {
                assert!(
                    matches!(parse_proxy(&data[..cut], versions), Ok(ProxyParsed::Incomplete)),
                    "prefix of {cut} bytes of a {consumed}-byte header"
                );
            }
        }
        Ok(ProxyParsed::Incomplete) => assert!(data.len() < PROXY_MAX_HEADER, "{} bytes still incomplete", data.len()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
