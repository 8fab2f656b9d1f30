//! Fuzz target: the request-head parser (`src/http/parse.rs`), fed the bytes a
//! client could send.
//!
//! Beyond "never panics", for a head that parses complete:
//! - `len` is within the input, the head alone parses to the same head, and bytes
//!   after it change nothing (a pipelined request cannot change the one before);
//! - every strict prefix is `Partial`: a read may split the head anywhere, and
//!   whether a request is accepted must not depend on where;
//! - what was accepted obeys the framing rules: a target of allowed bytes only,
//!   values without CR/LF/NUL, one `Content-Length` of digits within the limit,
//!   chunked only on HTTP/1.1 and never with `Content-Length`.
//!
//! An error must carry a status the server answers with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spindle::fuzzing::{parse_head, BodyKind, Head, HeadLimits, Parsed};

/// Small limits, so that the fuzzer reaches every limit with short inputs.
const LIMITS: HeadLimits =
    HeadLimits { max_header_bytes: 2048, max_headers: 16, max_uri_bytes: 128, max_body_bytes: 1 << 20 };

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    let (head, len) = match parse_head(data, &LIMITS) {
        Ok(Parsed::Partial) => return,
        Ok(Parsed::Complete { head, len }) => (head, len),
        Err(e) => {
            assert!(matches!(e.status(), 400 | 413 | 414 | 417 | 431 | 501 | 505), "status {} for {e}", e.status());
            return;
        }
    };
    assert!(len > 0 && len <= data.len(), "len {len} of {}", data.len());
    let shown = format!("{head:?}");

    // The head alone, and the head with other bytes after it: the same head.
    match parse_head(&data[..len], &LIMITS) {
        Ok(Parsed::Complete { head: again, len: len2 }) => {
            assert_eq!(len2, len);
            assert_eq!(format!("{again:?}"), shown);
        }
        other => panic!("the head alone parsed as {other:?}"),
    }
    let mut longer = data[..len].to_vec();
    longer.extend_from_slice(b"\r\nGET /x HTTP/1.1\r\nHost: b\r\n\r\n");
    match parse_head(&longer, &LIMITS) {
        Ok(Parsed::Complete { head: again, len: len2 }) => {
            assert_eq!(len2, len);
            assert_eq!(format!("{again:?}"), shown);
        }
        other => panic!("the head with bytes after it parsed as {other:?}"),
    }

    // Every strict prefix is Partial (all of them for short heads, a spread of them
    // and the last few for long ones, to keep an execution linear-ish).
    let step = (len / 64).max(1);
    for cut in (0..len).step_by(step).chain(len.saturating_sub(4)..len) {
        match parse_head(&data[..cut], &LIMITS) {
            Ok(Parsed::Partial) => {}
            other => panic!("prefix {cut} of an accepted {len}-byte head: {other:?}"),
        }
    }

    check_accepted(&head);
}

fn check_accepted(head: &Head) {
    assert!(!head.target.is_empty() && head.target.len() <= LIMITS.max_uri_bytes);
    assert!(
        head.target.bytes().all(|b| (0x21..=0x7e).contains(&b) && !b"#\"<>".contains(&b)),
        "target {:?}",
        head.target
    );
    assert!(head.headers.len() <= LIMITS.max_headers);
    for (name, value) in &head.headers {
        assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'), "name {name:?}");
        assert!(!value.contains(['\r', '\n', '\0']), "value {value:?}");
        assert!(!value.starts_with([' ', '\t']) && !value.ends_with([' ', '\t']), "untrimmed {value:?}");
    }
    for (i, raw) in &head.raw_values {
        assert!(std::str::from_utf8(raw).is_err(), "raw bytes kept for a UTF-8 value");
        assert_eq!(head.headers[*i].1, String::from_utf8_lossy(raw));
    }
    let count = |name: &str| head.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count();
    let (cl, te) = (count("content-length"), count("transfer-encoding"));
    assert!(cl <= 1, "{cl} content-length fields accepted");
    assert!(cl == 0 || te == 0, "content-length with transfer-encoding accepted");
    assert!(count("host") <= 1);
    match head.body {
        BodyKind::Length(n) => {
            assert!(n > 0 && n <= LIMITS.max_body_bytes);
            let v = head.header("content-length").unwrap_or_default();
            assert!(!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()), "content-length {v:?}");
            assert_eq!(v.parse::<u64>().ok(), Some(n));
        }
        BodyKind::Chunked => {
            assert_eq!(head.version, spindle::http::Version::Http11);
            assert!(head.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")));
        }
        BodyKind::Empty => assert!(te == 0),
    }
}
