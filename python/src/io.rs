//! The file-like objects of a WSGI environ: `wsgi.input` (the request body),
//! `wsgi.errors` (into the log) and `wsgi.file_wrapper`.
//!
//! They are called from the app, on the pool thread that runs it, with the GIL held.
//! The body was received whole by the server before the app was called (memory, or an
//! unnamed temporary file when large), so a read never waits on the client; a read
//! from a body large enough to have been spilled to a file releases the GIL while the
//! file is read. Every class is `Sync` (a `Mutex` inside) for free-threaded builds.

use std::io::Read;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use spindle::http::Body;

/// Bodies above this were spilled to a file by the server (its default
/// `body_buffer_bytes`): reading those is file I/O, done without the GIL. Smaller
/// ones are a memory copy, not worth handing the GIL to another thread and waiting
/// (up to the 5 ms switch interval) to get it back.
const DETACH_ABOVE: u64 = 64 * 1024;
/// Read size from the body into the line buffer.
const BLOCK: usize = 64 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `wsgi.input`: `read(size=-1)`, `readline(size=-1)`, `readlines(hint=-1)`,
/// iteration by lines (PEP 3333). Reading past the end returns `b""`.
#[pyclass(module = "spindle_wsgi", frozen)]
pub struct Input {
    state: Mutex<InputState>,
    detach: bool,
}

struct InputState {
    body: Body<'static>,
    /// Read from the body, not yet given to the app: `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl InputState {
    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads one more block onto the buffer; false at the end of the body.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let start = self.buf.len();
        self.buf.resize(start + BLOCK, 0);
        let n = loop {
            match self.body.read(&mut self.buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(start + n);
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// Takes `n` buffered bytes.
    fn take(&mut self, n: usize) -> Vec<u8> {
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        out
    }

    /// Up to `size` bytes (all with `None`).
    fn read(&mut self, size: Option<usize>) -> std::io::Result<Vec<u8>> {
        match size {
            None => {
                let mut out = self.take(self.buffered().len());
                self.body.read_to_end(&mut out)?;
                self.eof = true;
                Ok(out)
            }
            Some(size) => {
                while self.buffered().len() < size && self.fill()? {}
                Ok(self.take(size.min(self.buffered().len())))
            }
        }
    }

    /// One line, its `\n` included, at most `size` bytes.
    fn readline(&mut self, size: Option<usize>) -> std::io::Result<Vec<u8>> {
        let limit = size.unwrap_or(usize::MAX);
        let mut scanned = 0;
        loop {
            let have = self.buffered();
            if let Some(i) = have[scanned..].iter().position(|&b| b == b'\n') {
                return Ok(self.take((scanned + i + 1).min(limit)));
            }
            scanned = have.len();
            if scanned >= limit || !self.fill()? {
                return Ok(self.take(scanned.min(limit)));
            }
        }
    }
}

impl Input {
    pub fn new(body: Body<'static>) -> Input {
        let detach = body.len() > DETACH_ABOVE;
        Input { state: Mutex::new(InputState { body, buf: Vec::new(), pos: 0, eof: false }), detach }
    }

    /// Runs `f` on the body, without the GIL when the body is in a file.
    fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut InputState) -> std::io::Result<R> + Send,
    ) -> PyResult<R> {
        // The lock is taken and released inside the detached section, so a thread
        // waiting for it never holds the GIL that the reader needs back.
        let run = || f(&mut lock(&self.state));
        let out = if self.detach { py.detach(run) } else { run() };
        out.map_err(PyErr::from)
    }
}

/// Python's `-1`/`None` for "no limit" to `None`.
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size = None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.with(py, |s| s.read(limit(size)))?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.with(py, |s| s.readline(limit(size)))?;
        Ok(PyBytes::new(py, &data))
    }

    /// Lines until the end, or until `hint` bytes have been read.
    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|&h| h > 0);
        let lines = self.with(py, |s| {
            let mut lines = Vec::new();
            let mut total = 0;
            loop {
                let line = s.readline(None)?;
                if line.is_empty() {
                    break;
                }
                total += line.len();
                lines.push(line);
                if hint.is_some_and(|h| total >= h) {
                    break;
                }
            }
            Ok(lines)
        })?;
        PyList::new(py, lines.iter().map(|l| PyBytes::new(py, l)))
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.with(py, |s| s.readline(None))?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }
}

/// `wsgi.errors`: what the app writes goes to the log (target `spindle::wsgi`, level
/// warn), one event a line, with the request id.
#[pyclass(module = "spindle_wsgi", frozen)]
pub struct Errors {
    request: u64,
    /// A line not yet ended by `\n`.
    partial: Mutex<String>,
}

impl Errors {
    pub fn new(request: u64) -> Errors {
        Errors { request, partial: Mutex::new(String::new()) }
    }

    fn emit(&self, line: &str) {
        let line = line.trim_end_matches(['\r', '\n']);
        if !line.trim().is_empty() {
            tracing::warn!(target: "spindle::wsgi", request = self.request, "wsgi.errors: {line}");
        }
    }
}

#[pymethods]
impl Errors {
    fn write(&self, text: &str) {
        let mut partial = lock(&self.partial);
        partial.push_str(text);
        while let Some(i) = partial.find('\n') {
            let line: String = partial.drain(..=i).collect();
            self.emit(&line);
        }
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?.extract::<String>()?);
        }
        Ok(())
    }

    fn flush(&self) {
        let line = std::mem::take(&mut *lock(&self.partial));
        self.emit(&line);
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        let line = std::mem::take(&mut *lock(&self.partial));
        self.emit(&line);
    }
}

/// `wsgi.file_wrapper(filelike, blksize=8192)`: an iterable of `filelike.read(blksize)`
/// blocks, whose `close()` closes the file. Returned by the app as it is (Flask's
/// `send_file`), a wrapper over a regular file (a working `fileno()`) is sent with
/// `sendfile(2)` from the file's `tell()` by the server (`wsgi.rs`), without the GIL and
/// without a thread while the client is slow; anything else is iterated. `seekable()`,
/// `seek()` and `tell()` pass through to the file, as on Werkzeug's own wrapper, so that
/// Werkzeug's range requests seek instead of reading up to the range.
#[pyclass(module = "spindle_wsgi", frozen)]
pub struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

impl FileWrapper {
    /// The wrapped file-like object.
    pub(crate) fn filelike(&self) -> &Py<PyAny> {
        &self.filelike
    }
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: isize) -> PyResult<FileWrapper> {
        let blksize = usize::try_from(blksize)
            .ok()
            .filter(|&b| b > 0)
            .ok_or_else(|| PyValueError::new_err(format!("blksize must be positive, not {blksize}")))?;
        Ok(FileWrapper { filelike, blksize })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = self.filelike.bind(py).call_method1("read", (self.blksize,))?;
        Ok((block.len()? > 0).then_some(block))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("close")? {
            filelike.call_method0("close")?;
        }
        Ok(())
    }

    fn seekable(&self, py: Python<'_>) -> PyResult<bool> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("seekable")? {
            return filelike.call_method0("seekable")?.is_truthy();
        }
        filelike.hasattr("seek")
    }

    #[pyo3(signature = (*args))]
    fn seek(&self, py: Python<'_>, args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("seek")? {
            filelike.call_method1("seek", args)?;
        }
        Ok(())
    }

    fn tell<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("tell")? {
            return filelike.call_method0("tell").map(Some);
        }
        Ok(None)
    }
}
