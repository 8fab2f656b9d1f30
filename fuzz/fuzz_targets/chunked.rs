//! Fuzz target: the chunked body decoder (`src/http/body.rs`), fed in arbitrary
//! splits into an arbitrary-sized output buffer, as the connection feeds it reads.
//!
//! Input layout: byte 0 picks the output buffer size (1..=64), byte 1 the body limit
//! (`max_body_bytes`: unlimited, or a small one so a too-large size is reachable),
//! bytes 2..4 seed the split sizes (1..=16); the rest is the body.
//!
//! Checks: never panics; every call consumes and writes within its buffers and makes
//! progress; `decoded_total` is the bytes written; the payload is never longer than
//! the input consumed nor than the limit; errors are sticky; and the result — the
//! payload and bytes consumed, or the error — is the same whole and split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spindle::fuzzing::{decode_all, ChunkedDecoder, ChunkedError, ChunkedLimits};

fuzz_target!(|data: &[u8]| {
    let [dst, limit, s0, s1, body @ ..] = data else { return };
    let limits = ChunkedLimits {
        max_body_bytes: if limit & 0x80 != 0 { u64::MAX } else { u64::from(*limit) * 4 },
        ..ChunkedLimits::default()
    };
    let whole = decode_all(body, limits);
    let mut seed = u32::from(*s0) << 8 | u32::from(*s1) | 1;
    let split = feed(body, limits, 1 + usize::from(dst % 64), move || {
        // xorshift32: the splits are a function of the input, so a crash replays.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        1 + (seed % 16) as usize
    });
    assert_eq!(split, whole, "split vs whole");
    if let Ok((payload, used)) = &whole {
        assert!(*used <= body.len());
        assert!(payload.len() <= *used, "payload {} from {used} bytes", payload.len());
        assert!(payload.len() as u64 <= limits.max_body_bytes);
    }
});

/// Decodes `input` handed over in pieces of `next_split()` bytes, re-offering what
/// was not consumed, the way `receive.rs` does with its input buffer.
fn feed(
    input: &[u8],
    limits: ChunkedLimits,
    dst_len: usize,
    mut next_split: impl FnMut() -> usize,
) -> Result<(Vec<u8>, usize), ChunkedError> {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut dst = vec![0u8; dst_len];
    let mut out = Vec::new();
    let (mut pos, mut avail) = (0, 0);
    while !decoder.is_done() {
        if pos == avail {
            if avail == input.len() {
                return Err(ChunkedError::Incomplete);
            }
            avail = (avail + next_split()).min(input.len());
        }
        let src = &input[pos..avail];
        match decoder.decode(src, &mut dst) {
            Ok((read, written)) => {
                assert!(read <= src.len() && written <= dst.len());
                assert!(read > 0 || written > 0 || decoder.is_done(), "no progress at {pos}");
                assert!(written <= read, "wrote {written} from {read}");
                pos += read;
                out.extend_from_slice(&dst[..written]);
                assert_eq!(decoder.decoded_total(), out.len() as u64);
            }
            Err(e) => {
                // Sticky: nothing more is taken after a refusal.
                assert_eq!(decoder.decode(b"0\r\n\r\n", &mut dst), Err(e.clone()));
                assert!(!decoder.is_done());
                return Err(e);
            }
        }
    }
    // Done: nothing more is consumed.
    assert_eq!(decoder.decode(b"GET / HTTP/1.1\r\n", &mut dst), Ok((0, 0)));
    Ok((out, pos))
}
