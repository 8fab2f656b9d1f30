//! Receiving a request body before the app runs: the connection engine's rule that no
//! thread waits on a client.
//!
//! A request whose head has arrived becomes an [`Incoming`]: the parsed head and its
//! body as it arrives, de-chunked, in memory up to `body_buffer_bytes` and spilled to
//! an anonymous temporary file beyond that, up to `max_body_bytes` (nginx's
//! `client_body_buffer_size` and `client_body_temp_path`, waitress's `inbuf_overflow`).
//! Between segments the connection is parked (`Phase::HttpBody`), costing no thread.
//!
//! This module is sans-IO apart from the spill file: `feed` consumes bytes the turn has
//! read onto the connection's input buffer and says whether the body is complete, needs
//! more, or is refused (400 malformed chunking, 413 too large). The app then reads the
//! complete body through [`ReceivedBody`].

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::Instant;

use crate::budget::{Budget, Budgets, Held, Waiting};
use crate::http::body::{ChunkedDecoder, ChunkedLimits};
use crate::http::parse::{BodyKind, Head};

/// How far a body has come.
#[derive(Debug)]
pub(crate) enum Progress {
    /// Every byte is here.
    Complete,
    /// More is to come from the client.
    NeedMore,
    /// The body cannot be accepted: answer with this status and close.
    Refused(u16, String),
}

enum Framing {
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    Done,
}

/// A request being received: head parsed, body arriving.
pub(crate) struct Incoming {
    /// The parsed head.
    pub head: Head,
    /// When its first byte arrived (for the access log's duration).
    pub started: Instant,
    framing: Framing,
    sink: Sink,
    /// Set while the body waits for room in a budget.
    stall: Option<Stall>,
}

/// A body waiting for room in a budget: its place in the waiting gauge, and since
/// when (`body_timeout` runs from then: a `503` if no room comes).
struct Stall {
    _waiting: Waiting,
    since: Instant,
}

/// Where body bytes go: memory up to a threshold, then an unnamed temporary file. Every
/// byte stored is covered by a holding in the process's memory or disk budget,
/// reserved before it is read off the socket (`Incoming::make_room`).
struct Sink {
    memory: Vec<u8>,
    file: Option<File>,
    len: u64,
    threshold: usize,
    /// Covers `memory`, and the next read while the body stays in memory.
    mem: Option<Held>,
    /// Covers the file, and the next read once spilled.
    disk: Option<Held>,
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.file.is_none() && self.memory.len() + bytes.len() > self.threshold {
            self.spill()?;
        }
        match &mut self.file {
            Some(f) => f.write_all(bytes)?,
            None => self.memory.extend_from_slice(bytes),
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Moves what is in memory to a new temporary file (its disk room reserved by the
    /// caller), and gives the memory back.
    fn spill(&mut self) -> io::Result<()> {
        let mut file = temp_file()?;
        file.write_all(&self.memory)?;
        self.memory = Vec::new();
        self.file = Some(file);
        if let Some(mem) = &mut self.mem {
            mem.release_all();
        }
        Ok(())
    }

    /// Reserves room for `need` more bytes (the next read) where they will go; `rest`:
    /// all the bytes still to come, when the framing says (`Content-Length`).
    /// `Err(budget)`: the budget that has no room.
    ///
    /// A body that will spill reserves its whole declared rest on disk at once, not
    /// read by read: uploads that each held part of the disk budget and waited for the
    /// rest would wait for each other for ever (four 1 MiB uploads against a 1 MiB
    /// budget did). A chunked body can only reserve as it goes; if it cannot finish,
    /// `body_timeout` answers it 503 and frees what it held.
    fn reserve(&mut self, need: u64, rest: Option<u64>) -> Result<(), Arc<Budget>> {
        let in_memory = self.file.is_none()
            && match rest {
                Some(rest) => self.len + rest <= self.threshold as u64,
                None => self.memory.len() as u64 + need <= self.threshold as u64,
            };
        let (held, want) = if in_memory {
            (&mut self.mem, self.memory.len() as u64 + need)
        } else {
            (&mut self.disk, self.len + rest.unwrap_or(need))
        };
        let Some(held) = held else { return Ok(()) };
        if want > held.bytes() && !held.grow(want - held.bytes()) {
            return Err(Arc::clone(held.budget()));
        }
        if !in_memory && self.file.is_none() {
            // Spill now, so that the bytes read next cannot stay in memory uncovered.
            // A spill that fails here fails again in `write`, which answers 500.
            let _ = self.spill();
        }
        Ok(())
    }
}

/// An anonymous file in the temporary directory: `O_TMPFILE` where the file system has
/// it (no name ever exists), else a file that is unlinked as soon as it is open.
fn temp_file() -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let dir = std::env::temp_dir();
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    match rustix::fs::open(&dir, flags, Mode::from_raw_mode(0o600)) {
        Ok(fd) => Ok(File::from(fd)),
        Err(_) => {
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!(".spindle-body-{}-{n}", std::process::id()));
            let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
            let _ = std::fs::remove_file(&path);
            Ok(file)
        }
    }
}

impl Incoming {
    /// Starts receiving the body `head` announces.
    pub(crate) fn new(
        head: Head,
        started: Instant,
        threshold: usize,
        limit: u64,
        budgets: Option<&Budgets>,
    ) -> Incoming {
        let framing = match head.body {
            BodyKind::Empty | BodyKind::Length(0) => Framing::Done,
            BodyKind::Length(n) => Framing::Length(n),
            // The decoder gets the body limit so that a chunk-size past it is refused
            // (413) from its digits, before any of that chunk is read or stored.
            BodyKind::Chunked => Framing::Chunked(Box::new(ChunkedDecoder::new(ChunkedLimits {
                max_body_bytes: limit,
                ..ChunkedLimits::default()
            }))),
        };
        let has_body = !matches!(framing, Framing::Done);
        let sink = Sink {
            memory: Vec::new(),
            file: None,
            len: 0,
            threshold,
            // No body, nothing to hold (and no holding to make per request).
            mem: budgets.filter(|_| has_body).map(|b| b.memory.hold()),
            disk: budgets.filter(|_| has_body).map(|b| b.disk.hold()),
        };
        Incoming { head, started, framing, sink, stall: None }
    }

    /// Makes room in the budgets for what the next read may store: `pending` bytes
    /// already read and not yet consumed, plus `read` more. `true`: read on. `false`:
    /// no room; the connection must not be read (it waits, `Phase::HttpStalled`, and
    /// TCP pushes back on the client) until room frees or `stalled_since` plus
    /// `body_timeout` passes. Counts one wait per stall, not per retry; a retry is made
    /// after the wait is registered, so room freed meanwhile is not missed (`budget.rs`).
    pub(crate) fn make_room(&mut self, pending: usize, read: usize) -> bool {
        let (need, rest) = match &self.framing {
            Framing::Done => return true,
            Framing::Length(left) => ((*left).min((pending + read) as u64), Some(*left)),
            Framing::Chunked(_) => ((pending + read) as u64, None),
        };
        let budget = match self.sink.reserve(need, rest) {
            Ok(()) => {
                self.stall = None;
                return true;
            }
            Err(budget) => budget,
        };
        if self.stall.is_none() {
            self.stall = Some(Stall { _waiting: budget.wait_begin(), since: Instant::now() });
            if self.sink.reserve(need, rest).is_ok() {
                self.stall = None;
                return true;
            }
        }
        false
    }

    /// Since when the body has waited for room, if it waits.
    pub(crate) fn stalled_since(&self) -> Option<Instant> {
        self.stall.as_ref().map(|s| s.since)
    }

    /// Consumes body bytes from the front of `input` (leaving any pipelined bytes after
    /// the body there).
    pub(crate) fn feed(&mut self, input: &mut Vec<u8>) -> Progress {
        match self.feed_inner(input) {
            Ok(p) => p,
            Err(e) => Progress::Refused(500, format!("cannot store the request body: {e}")),
        }
    }

    fn feed_inner(&mut self, input: &mut Vec<u8>) -> io::Result<Progress> {
        match &mut self.framing {
            Framing::Done => Ok(Progress::Complete),
            Framing::Length(remaining) => {
                let n = (*remaining).min(input.len() as u64) as usize;
                self.sink.write(&input[..n])?;
                input.drain(..n);
                *remaining -= n as u64;
                if *remaining == 0 {
                    self.framing = Framing::Done;
                    return Ok(Progress::Complete);
                }
                Ok(Progress::NeedMore)
            }
            Framing::Chunked(decoder) => {
                let mut out = [0u8; 16 * 1024];
                let mut consumed = 0;
                loop {
                    let (used, written) = match decoder.decode(&input[consumed..], &mut out) {
                        Ok(r) => r,
                        Err(e) => {
                            input.drain(..consumed);
                            return Ok(Progress::Refused(e.status(), e.to_string()));
                        }
                    };
                    consumed += used;
                    self.sink.write(&out[..written])?;
                    if decoder.is_done() {
                        input.drain(..consumed);
                        self.framing = Framing::Done;
                        return Ok(Progress::Complete);
                    }
                    if used == 0 && written == 0 {
                        input.drain(..consumed);
                        return Ok(Progress::NeedMore);
                    }
                }
            }
        }
    }

    /// The head and the complete body (and its length), for the app.
    /// The holdings in the budgets go with the body: they are given back when the app
    /// (or the response that sends the body back) is done with it.
    pub(crate) fn finish(self) -> io::Result<(Head, Instant, ReceivedBody, u64, Vec<Held>)> {
        let Sink { memory, file, len, mut mem, mut disk, .. } = self.sink;
        // Only what covers bytes stored stays held: the room kept for a read that did
        // not come is given back now.
        let stored_on_disk = if file.is_some() { len } else { 0 };
        if let Some(m) = &mut mem {
            m.keep(memory.len() as u64);
        }
        if let Some(d) = &mut disk {
            d.keep(stored_on_disk);
        }
        let body = match file {
            Some(mut f) => {
                f.seek(SeekFrom::Start(0))?;
                ReceivedBody::File(f)
            }
            None => ReceivedBody::Memory(Cursor::new(memory)),
        };
        let held = [mem, disk].into_iter().flatten().filter(|h| h.bytes() > 0).collect();
        Ok((self.head, self.started, body, len, held))
    }
}

/// A complete request body, as the app reads it.
pub(crate) enum ReceivedBody {
    /// Up to `body_buffer_bytes`.
    Memory(Cursor<Vec<u8>>),
    /// Larger: an unnamed temporary file, gone when closed.
    File(File),
}

impl Read for ReceivedBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ReceivedBody::Memory(c) => c.read(buf),
            ReceivedBody::File(f) => f.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{parse_head, HeadLimits, Parsed};

    fn incoming(head: &[u8], threshold: usize, limit: u64) -> Incoming {
        let limits =
            HeadLimits { max_header_bytes: 16384, max_headers: 100, max_uri_bytes: 8192, max_body_bytes: limit };
        let Ok(Parsed::Complete { head, .. }) = parse_head(head, &limits) else { panic!("bad test head") };
        Incoming::new(head, Instant::now(), threshold, limit, None)
    }

    fn body_of(inc: Incoming) -> Vec<u8> {
        let (_, _, mut body, len, _) = inc.finish().unwrap();
        let mut out = Vec::new();
        body.read_to_end(&mut out).unwrap();
        assert_eq!(out.len() as u64, len);
        out
    }

    #[test]
    fn a_length_body_arriving_in_pieces_is_whole_and_leaves_pipelined_bytes() {
        let mut inc = incoming(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", 64, 1 << 20);
        let mut input = b"0123".to_vec();
        assert!(matches!(inc.feed(&mut input), Progress::NeedMore));
        assert!(input.is_empty());
        input.extend_from_slice(b"456789GET / HTTP/1.1\r\n");
        assert!(matches!(inc.feed(&mut input), Progress::Complete));
        assert_eq!(input, b"GET / HTTP/1.1\r\n");
        assert_eq!(body_of(inc), b"0123456789");
    }

    #[test]
    fn a_body_past_the_buffer_spills_to_a_file_and_reads_back_intact() {
        let mut inc = incoming(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 300000\r\n\r\n", 1024, 1 << 20);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(7000) {
            let mut input = piece.to_vec();
            let _ = inc.feed(&mut input);
        }
        assert!(matches!(inc.framing, Framing::Done));
        assert!(inc.sink.file.is_some(), "spilled");
        assert_eq!(body_of(inc), data);
    }

    #[test]
    fn chunked_bodies_are_decoded_and_refused_when_too_large_or_malformed() {
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut inc = incoming(head, 64, 1 << 20);
        let mut input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT".to_vec();
        assert!(matches!(inc.feed(&mut input), Progress::Complete));
        assert_eq!(input, b"NEXT");
        assert_eq!(body_of(inc), b"hello world");

        let mut inc = incoming(head, 64, 8);
        let mut input = b"10\r\n0123456789abcdef\r\n0\r\n\r\n".to_vec();
        assert!(matches!(inc.feed(&mut input), Progress::Refused(413, _)));

        let mut inc = incoming(head, 64, 1 << 20);
        let mut input = b"zz\r\nhello\r\n".to_vec();
        assert!(matches!(inc.feed(&mut input), Progress::Refused(400, _)));
    }

    #[test]
    fn a_chunk_size_past_the_limit_is_413_before_its_data_is_stored() {
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        // (input, limit): the size line alone decides, whatever data follows.
        for (input, limit) in [
            (&b"ffffffffffffffff\r\n"[..], 1 << 20),
            (b"ffffffffffffffff", 1 << 20),
            (b"100001\r\nxxxx", 1 << 20),
            (b"4\r\nabcd\r\n7\r\nxx", 10),
        ] {
            let mut inc = incoming(head, 64, limit);
            let mut input = input.to_vec();
            assert!(matches!(inc.feed(&mut input), Progress::Refused(413, _)), "{:?}", String::from_utf8_lossy(&input));
            assert!(inc.sink.len <= 4, "stored {} bytes", inc.sink.len);
            assert!(inc.sink.file.is_none());
        }
        // A bare LF ending a chunk-size line is 400.
        let mut inc = incoming(head, 64, 1 << 20);
        let mut input = b"5\nhello\r\n0\r\n\r\n".to_vec();
        assert!(matches!(inc.feed(&mut input), Progress::Refused(400, _)));
    }
}
