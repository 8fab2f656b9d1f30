//! Request-body decoding for `Transfer-Encoding: chunked` (RFC 9112 §7.1). It owns
//! the chunk framing — sizes, extensions, the CRLF after each chunk's data, the
//! trailer section — and decides it strictly, because every lenient reading of a
//! chunk line has been a request-smuggling bug somewhere (puma CVE-2023-40175,
//! gunicorn CVE-2024-6827, waitress CVE-2019-16786). [`ChunkedDecoder`] is a
//! sans-IO state machine: the worker thread that parsed the head feeds it whatever
//! bytes it has read, split anywhere, and gets payload bytes back; it never touches
//! a socket, and it stops consuming at the end of the trailer section so that a
//! pipelined request after the body is left in the caller's buffer.
//!
//! ```text
//! chunked-body   = *chunk
//!                  last-chunk
//!                  trailer-section
//!                  CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF
//!                  chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name
//!                     [ BWS "=" BWS chunk-ext-val ] )
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! Unlike the head parser, every line here must end in CRLF: a bare LF is refused
//! as firmly as a bare CR. RFC 9112 §2.2 lets a recipient accept a bare LF, but the
//! head is a place where every proxy does the same thing with one, while chunk lines
//! are not: some proxies end a chunk-size line at a bare LF and some read the LF as
//! part of the line, so accepting it lets a client make us and a proxy disagree on
//! where the body ends — a smuggled request (the "chunk-size LF" class of
//! desyncs, e.g. the 2023 "funky chunks" findings). RFC 9112 §7.1 grammar has CRLF
//! only, so refusing is plain conformance.
//!
//! The payload is bounded here too ([`ChunkedLimits::max_body_bytes`]): a chunk-size
//! that would take the body past the limit is refused as soon as its digits say so,
//! before a byte of its data is read or stored.

use std::fmt;

/// Bounds on a chunked body: its framing bytes and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedLimits {
    /// Most payload bytes in the whole body (`limits.max_body_bytes`); a chunk-size
    /// that would pass it is [`ChunkedError::TooLarge`] before its data is read.
    pub max_body_bytes: u64,
    /// Most hex digits in a chunk-size, leading zeros included (16 fits any `u64`).
    pub max_chunk_size_digits: usize,
    /// Most bytes of chunk extensions on one chunk line, from the first `;`.
    pub max_extension_bytes: usize,
    /// Most bytes of trailer field lines in total, terminators included.
    pub max_trailer_bytes: usize,
}

impl Default for ChunkedLimits {
    /// No payload limit, 16 digits, 4 KiB of extensions per chunk line, 16 KiB of trailers.
    fn default() -> Self {
        ChunkedLimits {
            max_body_bytes: u64::MAX,
            max_chunk_size_digits: 16,
            max_extension_bytes: 4096,
            max_trailer_bytes: 16384,
        }
    }
}

/// Why a chunked body was refused. All of them mean the body cannot be taken and
/// the rest of the byte stream cannot be trusted: answer [`ChunkedError::status`]
/// and close the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkedError {
    /// A chunk line that is not `1*HEXDIG [ chunk-ext ] CRLF`.
    BadChunkSize,
    /// A chunk-size with more than `max_chunk_size_digits` digits.
    ChunkSizeTooLong,
    /// A chunk-size that would take the body past `max_body_bytes` (or past
    /// `u64::MAX`): 413, decided from the digits alone.
    TooLarge,
    /// A line in the chunked framing ended by LF without CR.
    BareLf,
    /// Chunk data not followed by CRLF.
    BadChunkEnd,
    /// More than `max_extension_bytes` of extensions on one chunk line.
    ExtensionTooLong,
    /// More than `max_trailer_bytes` of trailer fields.
    TrailerTooLarge,
    /// A trailer line that is not a field line.
    BadTrailer,
    /// Only from [`decode_all`] (tests and fuzzing): the input ended before the body did.
    Incomplete,
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkedError::BadChunkSize => "invalid chunk size line",
            ChunkedError::ChunkSizeTooLong => "chunk size too long",
            ChunkedError::TooLarge => "chunked body exceeds the body limit",
            ChunkedError::BareLf => "bare lf in chunked framing",
            ChunkedError::BadChunkEnd => "chunk data not followed by crlf",
            ChunkedError::ExtensionTooLong => "chunk extension too long",
            ChunkedError::TrailerTooLarge => "trailer section too large",
            ChunkedError::BadTrailer => "invalid trailer field line",
            ChunkedError::Incomplete => "chunked body ended early",
        })
    }
}

impl std::error::Error for ChunkedError {}

impl ChunkedError {
    /// The HTTP status to answer with: 413 for [`ChunkedError::TooLarge`], else 400.
    pub fn status(&self) -> u16 {
        match self {
            ChunkedError::TooLarge => 413,
            _ => 400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading chunk-size hex digits.
    Size { digits: usize, size: u64 },
    /// Inside `chunk-ext`, `len` bytes of it so far.
    Ext { size: u64, len: usize },
    /// Saw CR ending a chunk line; LF must follow.
    SizeLf { size: u64 },
    /// Copying chunk-data.
    Data { remaining: u64 },
    /// Chunk-data done; CRLF or LF must follow.
    DataEnd,
    /// Saw CR after chunk-data; LF must follow.
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    /// In a trailer field-name.
    TrailerName,
    /// In a trailer field-value.
    TrailerValue,
    /// Saw CR ending a trailer field line; LF must follow.
    TrailerLf,
    /// Saw CR at the start of a line: the final CRLF; LF must follow.
    EndLf,
    /// The whole body, trailer section included, has been consumed.
    Done,
    /// Refused; every later call returns the same error.
    Failed(ChunkedError),
}

/// Incremental decoder for one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    limits: ChunkedLimits,
    state: State,
    trailer_bytes: usize,
    total: u64,
}

impl ChunkedDecoder {
    /// A decoder positioned at the first chunk line.
    pub fn new(limits: ChunkedLimits) -> Self {
        ChunkedDecoder { limits, state: State::Size { digits: 0, size: 0 }, trailer_bytes: 0, total: 0 }
    }

    /// Decode from `src` into `dst`. Returns (consumed from `src`, written to `dst`).
    ///
    /// Input may be split at any byte; call again with the unconsumed rest plus
    /// newly read bytes. Returns `(0, 0)` only if `src` is empty, the body is done,
    /// or chunk data is next and `dst` is empty. Never consumes past the end of the
    /// body. After an error, every later call returns the same error.
    pub fn decode(&mut self, src: &[u8], dst: &mut [u8]) -> Result<(usize, usize), ChunkedError> {
        let (mut read, mut written) = (0, 0);
        while read < src.len() {
            match self.state {
                State::Done => break,
                State::Failed(ref e) => return Err(e.clone()),
                State::Data { remaining } => {
                    let room = dst.len() - written;
                    if room == 0 {
                        break;
                    }
                    // min() in u64 first: `remaining` may exceed usize on 32-bit.
                    let n = remaining.min((src.len() - read) as u64).min(room as u64) as usize;
                    dst[written..written + n].copy_from_slice(&src[read..read + n]);
                    read += n;
                    written += n;
                    self.total += n as u64;
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 { State::DataEnd } else { State::Data { remaining } };
                }
                _ => {
                    let b = src[read];
                    read += 1;
                    if let Err(e) = self.step(b) {
                        self.state = State::Failed(e.clone());
                        return Err(e);
                    }
                }
            }
        }
        if let State::Failed(ref e) = self.state {
            return Err(e.clone());
        }
        Ok((read, written))
    }

    /// Whether the last chunk and the trailer section (final empty line) are consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes produced so far.
    pub fn decoded_total(&self) -> u64 {
        self.total
    }

    /// Advance by one framing byte (everything but chunk data).
    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        self.state = match self.state {
            State::Size { digits, size } => match b {
                // chunk-size = 1*HEXDIG, and nothing else: no "0x", no sign, no
                // whitespace (puma CVE-2023-40175, gunicorn CVE-2024-6827, waitress
                // CVE-2019-16786 each accepted one of those).
                _ if b.is_ascii_hexdigit() => {
                    if digits == self.limits.max_chunk_size_digits {
                        return Err(ChunkedError::ChunkSizeTooLong);
                    }
                    let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                    let size = size.checked_mul(16).and_then(|s| s.checked_add(digit)).ok_or(ChunkedError::TooLarge)?;
                    // A size only grows with more digits, so once it passes what is
                    // left of the limit the answer is 413 whatever follows: refuse
                    // now, before the line ends and long before any of the data is
                    // read. `total <= max_body_bytes` always holds (every earlier
                    // chunk passed this check), so the subtraction cannot wrap.
                    if size > self.limits.max_body_bytes - self.total {
                        return Err(ChunkedError::TooLarge);
                    }
                    State::Size { digits: digits + 1, size }
                }
                _ if digits == 0 => return Err(ChunkedError::BadChunkSize),
                b';' => self.ext_byte(b, size, 0)?,
                b'\r' => State::SizeLf { size },
                // See the module comment: in chunked framing a bare LF is refused.
                b'\n' => return Err(ChunkedError::BareLf),
                _ => return Err(ChunkedError::BadChunkSize),
            },
            State::Ext { size, len } => match b {
                b'\r' => State::SizeLf { size },
                b'\n' => return Err(ChunkedError::BareLf),
                _ => self.ext_byte(b, size, len)?,
            },
            State::SizeLf { size } => match b {
                b'\n' => self.chunk_line_done(size),
                _ => return Err(ChunkedError::BadChunkSize),
            },
            // puma CVE-2024-21647 (and others) took any two bytes, or none, after
            // the chunk data; RFC 9112 §7.1 requires CRLF there.
            State::DataEnd => match b {
                b'\r' => State::DataLf,
                b'\n' => return Err(ChunkedError::BareLf),
                _ => return Err(ChunkedError::BadChunkEnd),
            },
            State::DataLf => match b {
                b'\n' => State::Size { digits: 0, size: 0 },
                _ => return Err(ChunkedError::BadChunkEnd),
            },
            State::TrailerStart => match b {
                b'\r' => State::EndLf,
                b'\n' => return Err(ChunkedError::BareLf),
                // A field-name is a token: this refuses obs-fold (leading
                // whitespace) and an empty name (":x") alike.
                _ if is_tchar(b) => {
                    self.count_trailer()?;
                    State::TrailerName
                }
                _ => return Err(ChunkedError::BadTrailer),
            },
            State::TrailerName => {
                self.count_trailer()?;
                match b {
                    b':' => State::TrailerValue,
                    b'\n' => return Err(ChunkedError::BareLf),
                    // Includes whitespace before the colon (RFC 9112 §5.1) and a
                    // line ending with no colon at all.
                    _ if is_tchar(b) => State::TrailerName,
                    _ => return Err(ChunkedError::BadTrailer),
                }
            }
            State::TrailerValue => {
                self.count_trailer()?;
                match b {
                    b'\r' => State::TrailerLf,
                    b'\n' => return Err(ChunkedError::BareLf),
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => State::TrailerValue,
                    _ => return Err(ChunkedError::BadTrailer),
                }
            }
            State::TrailerLf => {
                self.count_trailer()?;
                match b {
                    b'\n' => State::TrailerStart,
                    _ => return Err(ChunkedError::BadTrailer),
                }
            }
            State::EndLf => match b {
                b'\n' => State::Done,
                _ => return Err(ChunkedError::BadTrailer),
            },
            // decode() handles these without calling step().
            State::Data { .. } | State::Done | State::Failed(_) => self.state.clone(),
        };
        Ok(())
    }

    /// One more byte of chunk-ext (the `;` included). The grammar is not checked
    /// beyond refusing control bytes — we ignore every extension — but the length
    /// is, since extensions are otherwise an unbounded sink of unread bytes.
    fn ext_byte(&self, b: u8, size: u64, len: usize) -> Result<State, ChunkedError> {
        if !matches!(b, b'\t' | 0x20..=0x7e | 0x80..=0xff) {
            return Err(ChunkedError::BadChunkSize);
        }
        if len >= self.limits.max_extension_bytes {
            return Err(ChunkedError::ExtensionTooLong);
        }
        Ok(State::Ext { size, len: len + 1 })
    }

    fn chunk_line_done(&self, size: u64) -> State {
        if size == 0 {
            State::TrailerStart
        } else {
            State::Data { remaining: size }
        }
    }

    fn count_trailer(&mut self) -> Result<(), ChunkedError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.limits.max_trailer_bytes {
            return Err(ChunkedError::TrailerTooLarge);
        }
        Ok(())
    }
}

/// `tchar` of RFC 9110 §5.6.2, for trailer field names.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Decode a complete chunked body from the start of `input` with default limits.
/// Returns the payload and how many bytes of `input` the body took; bytes after it
/// are left alone. [`ChunkedError::Incomplete`] if `input` ends before the body.
/// For tests and the fuzz targets; the server feeds [`ChunkedDecoder`] itself.
pub fn decode_all(input: &[u8], limits: ChunkedLimits) -> Result<(Vec<u8>, usize), ChunkedError> {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut pos = 0;
    loop {
        let (read, written) = decoder.decode(&input[pos..], &mut buf)?;
        pos += read;
        out.extend_from_slice(&buf[..written]);
        if decoder.is_done() {
            return Ok((out, pos));
        }
        if read == 0 && written == 0 {
            return Err(ChunkedError::Incomplete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in pieces of the sizes `splits` yields (cycled), with a `dst`
    /// of `dst_len` bytes, re-offering unconsumed bytes the way a caller would.
    /// Returns the payload and bytes consumed, or the first error.
    fn feed(
        input: &[u8],
        limits: ChunkedLimits,
        mut next_split: impl FnMut() -> usize,
        dst_len: usize,
    ) -> Result<(Vec<u8>, usize), ChunkedError> {
        let mut decoder = ChunkedDecoder::new(limits);
        let mut out = Vec::new();
        let mut dst = vec![0u8; dst_len];
        let (mut pos, mut avail) = (0, 0);
        while !decoder.is_done() {
            if pos == avail {
                if avail == input.len() {
                    return Err(ChunkedError::Incomplete);
                }
                avail = (avail + next_split().max(1)).min(input.len());
            }
            let (read, written) = decoder.decode(&input[pos..avail], &mut dst)?;
            assert!(read > 0 || written > 0 || decoder.is_done(), "stalled at {pos}");
            pos += read;
            out.extend_from_slice(&dst[..written]);
            assert_eq!(decoder.decoded_total(), out.len() as u64);
        }
        Ok((out, pos))
    }

    /// The same input decoded whole, a byte at a time into a 1-byte buffer, and in
    /// pseudo-random splits, must give the same result every time.
    fn decode_every_way(input: &[u8], limits: ChunkedLimits) -> Result<(Vec<u8>, usize), ChunkedError> {
        let whole = feed(input, limits, || input.len(), 1 << 16);
        assert_eq!(feed(input, limits, || 1, 1), whole, "byte at a time: {:?}", String::from_utf8_lossy(input));
        // xorshift: deterministic, no dependency.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..20 {
            let mut rand = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            let dst_len = 1 + (rand() % 7) as usize;
            let got = feed(input, limits, || 1 + (rand() % 9) as usize, dst_len);
            assert_eq!(got, whole, "round {round}: {:?}", String::from_utf8_lossy(input));
            seed = seed.wrapping_add(round);
        }
        whole
    }

    #[test]
    fn accepted_bodies() {
        // (input, payload, bytes the body takes)
        let cases: &[(&[u8], &[u8], usize)] = &[
            (b"0\r\n\r\n", b"", 5),
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello", 15),
            (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world", 26),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", 20),
            (b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789", 20),
            (b"0005\r\nhello\r\n000\r\n\r\n", b"hello", 20),
            // Data may contain anything, CR and LF included.
            (b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n", 14),
            // Extensions are consumed and ignored.
            (b"5;name=value\r\nhello\r\n0;last\r\n\r\n", b"hello", 31),
            (b"5;a;b=\"q s\"\r\nhello\r\n0\r\n\r\n", b"hello", 25),
            // Trailers are consumed and discarded.
            (b"5\r\nhello\r\n0\r\nX-Sum: abc\r\nY:\r\n\r\n", b"hello", 31),
            (b"0\r\nX: y\r\n\r\n", b"", 11),
            // Bytes after the body (a pipelined request) are left alone.
            (b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n", b"hello", 15),
        ];
        for &(input, payload, used) in cases {
            let got = decode_every_way(input, ChunkedLimits::default());
            assert_eq!(got, Ok((payload.to_vec(), used)), "{:?}", String::from_utf8_lossy(input));
            assert_eq!(decode_all(input, ChunkedLimits::default()), Ok((payload.to_vec(), used)));
        }
    }

    #[test]
    fn refused_bodies() {
        use ChunkedError::*;
        let cases: &[(&str, &[u8], ChunkedError)] = &[
            ("empty size", b"\r\n", BadChunkSize),
            ("empty size before ext", b";x\r\n", BadChunkSize),
            ("0x prefix", b"0x5\r\nhello\r\n0\r\n\r\n", BadChunkSize),
            ("plus sign", b"+5\r\nhello\r\n0\r\n\r\n", BadChunkSize),
            ("minus sign", b"-5\r\nhello\r\n0\r\n\r\n", BadChunkSize),
            ("leading space", b" 5\r\nhello\r\n0\r\n\r\n", BadChunkSize),
            ("trailing space", b"5 \r\nhello\r\n0\r\n\r\n", BadChunkSize),
            ("space before ext", b"5 ;x\r\nhello\r\n0\r\n\r\n", BadChunkSize),
            ("tab before ext", b"5\t;x\r\nhello\r\n0\r\n\r\n", BadChunkSize),
            ("underscore", b"1_0\r\n", BadChunkSize),
            ("not hex", b"g\r\n", BadChunkSize),
            ("bare cr after size", b"5\rhello\r\n0\r\n\r\n", BadChunkSize),
            ("bare cr after ext", b"5;x\rhello\r\n0\r\n\r\n", BadChunkSize),
            ("ctl in ext", b"5;x\x00\r\nhello\r\n0\r\n\r\n", BadChunkSize),
            ("17 digits", b"00000000000000005\r\nhello\r\n0\r\n\r\n", ChunkSizeTooLong),
            ("data too long", b"5\r\nhello!\r\n0\r\n\r\n", BadChunkEnd),
            ("data then bare cr", b"5\r\nhello\rX0\r\n\r\n", BadChunkEnd),
            ("no crlf after data", b"5\r\nhello0\r\n\r\n", BadChunkEnd),
            ("trailer without colon", b"0\r\nNoColon\r\n\r\n", BadTrailer),
            ("trailer obs-fold", b"0\r\nX: a\r\n b\r\n\r\n", BadTrailer),
            ("trailer space before colon", b"0\r\nX : a\r\n\r\n", BadTrailer),
            ("trailer empty name", b"0\r\n: a\r\n\r\n", BadTrailer),
            ("trailer nul", b"0\r\nX: a\x00\r\n\r\n", BadTrailer),
            ("trailer bare cr", b"0\r\nX: a\rb\r\n\r\n", BadTrailer),
            ("final bare cr", b"0\r\n\rX", BadTrailer),
            // Bare LF, everywhere a chunked body has a line end (see the module
            // comment for why the head parser's leniency stops here).
            ("lf after size", b"5\nhello\r\n0\r\n\r\n", BareLf),
            ("lf after ext", b"5;a=b\nhello\r\n0\r\n\r\n", BareLf),
            ("lf after data", b"5\r\nhello\n0\r\n\r\n", BareLf),
            ("lf after last chunk", b"5\r\nhello\r\n0\n\r\n", BareLf),
            ("lf after last chunk ext", b"0;x\n\r\n", BareLf),
            ("lf ending a trailer", b"0\r\nX: y\n\r\n", BareLf),
            ("lf in a trailer name", b"0\r\nX\n\r\n", BareLf),
            ("lf as the final line", b"0\r\n\n", BareLf),
            ("lf after a trailer", b"0\r\nX: y\r\n\n", BareLf),
            ("all lf", b"5\nhello\n0\n\n", BareLf),
        ];
        for (name, input, want) in cases {
            let got = decode_every_way(input, ChunkedLimits::default());
            assert_eq!(got.as_ref().err(), Some(want), "{name}");
        }
    }

    #[test]
    fn puma_cve_2024_21647_chunk_data_must_end_with_crlf() {
        // puma read two bytes after the data without looking at them, so a
        // client could smuggle a request into what a proxy saw as chunk data.
        for input in [&b"5\r\nhelloXX0\r\n\r\n"[..], b"5\r\nhello\r0\r\n\r\n", b"5\r\nhello\nX0\r\n\r\n"] {
            let got = decode_every_way(input, ChunkedLimits::default());
            assert!(
                matches!(got, Err(ChunkedError::BadChunkEnd | ChunkedError::BadChunkSize | ChunkedError::BareLf)),
                "{:?}: {got:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn puma_cve_2023_40175_gunicorn_cve_2024_6827_chunk_size_is_hexdig_only() {
        // Each server read one of these as a valid size that a proxy read differently.
        for size in ["0x10", "+10", "-0", " 10", "10 ", "1 0", "10\t", "0_10"] {
            let input = format!("{size}\r\n0123456789abcdef\r\n0\r\n\r\n");
            assert_eq!(
                decode_every_way(input.as_bytes(), ChunkedLimits::default()),
                Err(ChunkedError::BadChunkSize),
                "{size:?}"
            );
        }
    }

    #[test]
    fn waitress_cve_2019_16786_size_must_fit() {
        let limits = ChunkedLimits { max_chunk_size_digits: 32, ..ChunkedLimits::default() };
        // 16 digits fit any u64; 17 significant digits overflow it: too large (413),
        // like any size past the body limit.
        assert_eq!(decode_every_way(b"FFFFFFFFFFFFFFFF\r\n", limits), Err(ChunkedError::Incomplete));
        assert_eq!(decode_every_way(b"10000000000000000\r\n", limits), Err(ChunkedError::TooLarge));
        // Leading zeros do not overflow, but the digit limit still counts them.
        assert_eq!(decode_every_way(b"00000000000000000000001\r\nx\r\n0\r\n\r\n", limits), Ok((b"x".to_vec(), 33)));
        assert_eq!(
            decode_every_way(b"0000000000000000001\r\nx\r\n0\r\n\r\n", ChunkedLimits::default()),
            Err(ChunkedError::ChunkSizeTooLong)
        );
    }

    #[test]
    fn framing_limits() {
        let limits = ChunkedLimits {
            max_body_bytes: u64::MAX,
            max_chunk_size_digits: 4,
            max_extension_bytes: 8,
            max_trailer_bytes: 12,
        };
        // (name, input, expected)
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, &[u8], Result<(Vec<u8>, usize), ChunkedError>)] = &[
            ("4 digits", b"0001\r\nx\r\n0\r\n\r\n", Ok((b"x".to_vec(), 14))),
            ("5 digits", b"00001\r\nx\r\n0\r\n\r\n", Err(ChunkedError::ChunkSizeTooLong)),
            ("ext at limit", b"1;1234567\r\nx\r\n0\r\n\r\n", Ok((b"x".to_vec(), 19))),
            ("ext over limit", b"1;12345678\r\nx\r\n0\r\n\r\n", Err(ChunkedError::ExtensionTooLong)),
            ("ext on last chunk", b"0;12345678\r\n\r\n", Err(ChunkedError::ExtensionTooLong)),
            // The limit is per chunk line, not per body.
            ("ext per line", b"1;1234567\r\nx\r\n1;1234567\r\ny\r\n0\r\n\r\n", Ok((b"xy".to_vec(), 33))),
            ("trailer at limit", b"0\r\nX: 1234567\r\n\r\n", Ok((Vec::new(), 17))),
            ("trailer over limit", b"0\r\nX: 12345678\r\n\r\n", Err(ChunkedError::TrailerTooLarge)),
            ("trailers add up", b"0\r\nA: 1\r\nB: 22\r\n\r\n", Err(ChunkedError::TrailerTooLarge)),
        ];
        for (name, input, want) in cases {
            assert_eq!(&decode_every_way(input, limits), want, "{name}");
        }
    }

    #[test]
    fn a_chunk_size_past_the_body_limit_is_refused_from_its_digits() {
        let limits = ChunkedLimits { max_body_bytes: 10, ..ChunkedLimits::default() };
        // (name, input, expected)
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, &[u8], Result<(Vec<u8>, usize), ChunkedError>)] = &[
            ("at the limit", b"a\r\n0123456789\r\n0\r\n\r\n", Ok((b"0123456789".to_vec(), 20))),
            ("two chunks at the limit", b"5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n", Ok((b"0123456789".to_vec(), 25))),
            ("leading zeros do not count", b"000a\r\n0123456789\r\n0\r\n\r\n", Ok((b"0123456789".to_vec(), 23))),
            // Refused on the digits: no line end, no data needed.
            ("one over", b"b", Err(ChunkedError::TooLarge)),
            ("u64 max", b"ffffffffffffffff", Err(ChunkedError::TooLarge)),
            ("u64 max, whole line", b"ffffffffffffffff\r\n", Err(ChunkedError::TooLarge)),
            ("second chunk over", b"5\r\n01234\r\n6\r\n", Err(ChunkedError::TooLarge)),
            ("second chunk over, two digits", b"5\r\n01234\r\n10", Err(ChunkedError::TooLarge)),
        ];
        for (name, input, want) in cases {
            assert_eq!(&decode_every_way(input, limits), want, "{name}");
        }
        // Nothing of the oversized chunk is decoded: the refusal comes from the size.
        let mut decoder = ChunkedDecoder::new(limits);
        let mut dst = [0u8; 64];
        assert_eq!(decoder.decode(b"ffffffffffffffff\r\nxxxx", &mut dst), Err(ChunkedError::TooLarge));
        assert_eq!(decoder.decoded_total(), 0);
        assert_eq!(ChunkedError::TooLarge.status(), 413);
        assert_eq!(ChunkedError::BareLf.status(), 400);
        // Without a limit: the default 16-digit cap refuses a 17th digit (400) before
        // it could overflow; with a wider cap the overflow itself is too large (413).
        assert_eq!(
            decode_every_way(b"10000000000000000", ChunkedLimits::default()),
            Err(ChunkedError::ChunkSizeTooLong)
        );
        let wide = ChunkedLimits { max_chunk_size_digits: 32, ..ChunkedLimits::default() };
        assert_eq!(decode_every_way(b"10000000000000000", wide), Err(ChunkedError::TooLarge));
    }

    #[test]
    fn truncated_input_is_incomplete_not_an_error_of_framing() {
        let full = b"5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n";
        for end in 0..full.len() {
            let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
            let mut dst = [0u8; 64];
            let (read, _) = decoder.decode(&full[..end], &mut dst).unwrap();
            assert_eq!(read, end);
            assert!(!decoder.is_done());
            assert_eq!(decode_all(&full[..end], ChunkedLimits::default()), Err(ChunkedError::Incomplete));
        }
    }

    #[test]
    fn decode_contract() {
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        let mut dst = [0u8; 3];
        // Empty src: nothing to do.
        assert_eq!(decoder.decode(b"", &mut dst), Ok((0, 0)));
        // dst smaller than the chunk: the rest waits for the next call.
        assert_eq!(decoder.decode(b"5\r\nhello\r\n0\r\n\r\nrest", &mut dst), Ok((6, 3)));
        assert_eq!(&dst, b"hel");
        assert_eq!(decoder.decode(b"", &mut []), Ok((0, 0)));
        assert_eq!(decoder.decode(b"lo\r\n0\r\n\r\nrest", &mut []), Ok((0, 0)));
        assert_eq!(decoder.decode(b"lo\r\n0\r\n\r\nrest", &mut dst), Ok((9, 2)));
        assert!(decoder.is_done());
        assert_eq!(decoder.decoded_total(), 5);
        // Done: nothing more is consumed.
        assert_eq!(decoder.decode(b"rest", &mut dst), Ok((0, 0)));

        // Errors are sticky.
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        assert_eq!(decoder.decode(b"x", &mut dst), Err(ChunkedError::BadChunkSize));
        assert_eq!(decoder.decode(b"0\r\n\r\n", &mut dst), Err(ChunkedError::BadChunkSize));
        assert!(!decoder.is_done());
    }

    #[test]
    fn large_chunk_streams_through_a_small_buffer() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut input = format!("{:x}\r\n", payload.len()).into_bytes();
        input.extend_from_slice(&payload);
        input.extend_from_slice(b"\r\n0\r\n\r\n");
        let (out, used) = feed(&input, ChunkedLimits::default(), || 4096, 1000).unwrap();
        assert_eq!(out, payload);
        assert_eq!(used, input.len());
        assert_eq!(decode_all(&input, ChunkedLimits::default()), Ok((payload, input.len())));
    }

    #[test]
    fn error_text() {
        assert_eq!(ChunkedError::BadChunkEnd.to_string(), "chunk data not followed by crlf");
        assert_eq!(ChunkedError::Incomplete.to_string(), "chunked body ended early");
    }
}
