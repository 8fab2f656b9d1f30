//! Fuzz target: a round trip through the chunked decoder. The input describes a
//! payload and how a (well-behaved) client frames it — chunk sizes, hex case,
//! leading zeros, extensions, trailers; the target encodes it and checks that the
//! decoder gives back exactly the payload, consumes exactly the encoding, and
//! leaves the bytes after it (a pipelined request) alone.
//!
//! Input layout: a sequence of `control, data…` pieces. The low 6 bits of `control`
//! are the chunk length (0 ends the chunks, the rest of the input becomes a
//! trailer value); bit 6 writes the size upper-case with leading zeros; bit 7 adds
//! a chunk extension.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spindle::fuzzing::{decode_all, ChunkedLimits};

fuzz_target!(|data: &[u8]| {
    let mut encoded = Vec::new();
    let mut payload = Vec::new();
    let mut rest = data;
    while let [control, tail @ ..] = rest {
        let n = usize::from(control & 0x3f).min(tail.len());
        if n == 0 {
            rest = tail;
            break;
        }
        let size = if control & 0x40 != 0 { format!("00{n:X}") } else { format!("{n:x}") };
        encoded.extend_from_slice(size.as_bytes());
        if control & 0x80 != 0 {
            encoded.extend_from_slice(b";name=\"v a;l\"; flag");
        }
        encoded.extend_from_slice(b"\r\n");
        encoded.extend_from_slice(&tail[..n]);
        encoded.extend_from_slice(b"\r\n");
        payload.extend_from_slice(&tail[..n]);
        rest = &tail[n..];
    }
    encoded.extend_from_slice(b"0\r\n");
    if !rest.is_empty() {
        // field-vchar only: map each byte into VCHAR / obs-text.
        let value: Vec<u8> = rest.iter().map(|&b| if b < 0x21 || b == 0x7f { b'a' + b % 26 } else { b }).collect();
        encoded.extend_from_slice(b"X-Trailer: ");
        encoded.extend_from_slice(&value);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"\r\n");
    let body_len = encoded.len();
    encoded.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");

    let limits = ChunkedLimits { max_body_bytes: payload.len() as u64, ..ChunkedLimits::default() };
    match decode_all(&encoded, limits) {
        Ok((decoded, used)) => {
            assert_eq!(decoded, payload);
            assert_eq!(used, body_len);
        }
        Err(e) => panic!("a well-formed body was refused: {e}: {:?}", String::from_utf8_lossy(&encoded)),
    }
    // One byte less of limit: refused as too large, unless the payload is empty.
    if let Some(smaller) = (payload.len() as u64).checked_sub(1) {
        let limits = ChunkedLimits { max_body_bytes: smaller, ..limits };
        assert!(decode_all(&encoded, limits).is_err());
    }
});
