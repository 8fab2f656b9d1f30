//! The WSGI bridge (PEP 3333): a Python callable as a spindle [`App`].
//!
//! `call` runs on a pool thread. It builds the environ's strings without the GIL,
//! then takes the GIL to call the app and to iterate its result until the first
//! non-empty chunk (or the end), so that a `start_response` called late, from inside a
//! generator, or again with `exc_info`, still decides the status and headers. Then
//! the headers count as sent and the response goes back to the server: a whole body
//! when it is known (a list or tuple, or a first chunk as long as the app's
//! `Content-Length`), else a stream ([`WsgiBody`]) that takes the GIL once per further
//! chunk. Writing to the client happens with the GIL released, on the server's side.
//!
//! A `wsgi.file_wrapper` the app returns as it is (Flask's `send_file`) over a regular
//! file is not iterated: the server sends the file from its `tell()` with `sendfile(2)`
//! ([`ResponseBody::File`]), from the event side, without the GIL; the wrapper is closed
//! when the server is done with the body. A file-like without a working `fileno()`
//! (`io.BytesIO`), a pipe or a socket is iterated like any iterable.
//!
//! `close()` of the app's iterable is called exactly once: when the iterable ends,
//! when the response is complete, or when the server drops the stream or the file
//! body (the client went away or was too slow, a `HEAD` request, a failure, a stop),
//! from `Drop`, with the GIL, on whichever thread drops it.
//!
//! Failures: an exception before the response starts is a 500 with the traceback in
//! the log under the request id; after it started, the stream returns an error and
//! the server closes the connection. No exception or Python misuse reaches a panic.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyAssertionError, PyStopIteration, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyIterator, PyList, PyString, PyTuple};
use spindle::http::{App, AppResult, EarlyResponse, FileBody, Request, Response, ResponseBody, Version};

use crate::io::{Errors, FileWrapper, Input};

/// Headers the server owns (RFC 9110 §7.6.1); PEP 3333 forbids them to apps, and, as
/// gunicorn does, the bridge drops them rather than fail the response.
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "proxy-connection"];

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A loaded WSGI callable.
pub struct WsgiApp {
    app: Py<PyAny>,
    /// The entries every environ has, copied for each request (one C-level copy
    /// instead of ten insertions, as gunicorn and waitress keep a base environ).
    template: Py<PyDict>,
    spec: String,
}

impl WsgiApp {
    /// Imports `MODULE:NAME` (gunicorn's form: `NAME` may be dotted or `factory()`;
    /// `MODULE` alone means `MODULE:application`) and logs which Python runs it. The
    /// error names the spec and ends with the traceback's last line.
    pub fn load(py: Python<'_>, spec: &str) -> Result<WsgiApp, String> {
        let (module, name) = spec.split_once(':').unwrap_or((spec, "application"));
        let failed = |e: PyErr| {
            let (last, traceback) = describe(py, &e);
            tracing::debug!(target: "spindle::wsgi", traceback = %traceback, "import traceback");
            format!("cannot load the WSGI app {spec:?} (module {module:?}): {last}")
        };
        if module.is_empty() || name.is_empty() {
            return Err(format!("{spec:?} is not MODULE:CALLABLE"));
        }
        let mut obj = py.import(module).map_err(failed)?.into_any();
        let (path, call) = match name.strip_suffix("()") {
            Some(factory) => (factory, true),
            None => (name, false),
        };
        for attr in path.split('.') {
            obj = obj.getattr(attr).map_err(failed)?;
        }
        if call {
            obj = obj.call0().map_err(failed)?;
        }
        if !obj.is_callable() {
            return Err(format!("cannot load the WSGI app {spec:?}: {name} in module {module:?} is not callable"));
        }
        let sys = py.import("sys").map_err(failed)?;
        let version: String = sys
            .getattr("version")
            .and_then(|v| v.extract::<String>())
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_default();
        // `sys._is_gil_enabled` exists from 3.13; before, the GIL is always on.
        let gil = match sys.getattr("_is_gil_enabled") {
            Ok(f) => f.call0().and_then(|v| v.extract::<bool>()).unwrap_or(true),
            Err(_) => true,
        };
        let free_threaded_build = crate::free_threaded_build(py);
        tracing::info!(
            target: "spindle::wsgi",
            app = spec,
            python = %version,
            free_threaded_build,
            gil = if gil { "enabled" } else { "disabled" },
            "{}",
            match (gil, free_threaded_build) {
                (false, _) => "WSGI app loaded; free-threaded Python: app threads run in parallel",
                // The GIL is back on: PYTHON_GIL=1 (or -X gil=1), or a C extension
                // imported so far (the app's or its dependencies') that does not declare
                // free-threading support; Python names it in a RuntimeWarning on stderr,
                // and PYTHON_GIL=0 keeps the GIL off anyway.
                (true, true) => {
                    "WSGI app loaded; free-threaded Python build but the GIL is enabled (PYTHON_GIL=1, or a module that needs it re-enabled it at import: see the RuntimeWarning above; PYTHON_GIL=0 forces it off): app threads run one at a time"
                }
                (true, false) => {
                    "WSGI app loaded; Python runs one app thread at a time (the GIL), every socket read and write happens without it"
                }
            }
        );
        let template = base_environ(py).map_err(failed)?;
        Ok(WsgiApp { app: obj.unbind(), template: template.unbind(), spec: spec.to_string() })
    }
}

/// The environ's strings, made before the GIL is taken. Values are latin-1
/// "bytes-as-str" (PEP 3333): each byte one code point.
struct Environ {
    method: String,
    script_name: String,
    path_info: String,
    query: String,
    raw_uri: String,
    http10: bool,
    remote_addr: String,
    remote_port: u16,
    server_port: u16,
    server_name: String,
    /// `HTTP_*`, `CONTENT_TYPE` and `CONTENT_LENGTH`.
    headers: Vec<(String, String)>,
    /// `wsgi.url_scheme`: "https" only when a trusted proxy said so.
    https: bool,
}

/// Bytes as a latin-1 `str`.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// `%XX` decoded, bytes as they come (PATH_INFO is the decoded path, RFC 3875 §4.1.5).
fn percent_decode(raw: &str) -> Vec<u8> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

impl Environ {
    fn of(req: &Request<'_>, body_len: u64) -> Environ {
        let script = req.script_name().as_bytes();
        let path = percent_decode(req.raw_path());
        // The router matched the prefix on the decoded path, so it is there.
        let path_info = path.strip_prefix(script).unwrap_or(&path);
        let host = req.header("host").filter(|h| !h.is_empty());
        let server_name = host
            .map(|h| match h.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|c| c.is_ascii_digit()) => name,
                _ => h,
            })
            .map_or_else(|| req.local().ip().to_string(), str::to_string);
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut content_length = false;
        for (name, value) in req.header_fields() {
            // A header with `_` would collide with a `-` one in the environ (header
            // spoofing past a proxy that checks one spelling): dropped, as gunicorn
            // (CVE-2024-1135 era) and nginx do.
            if name.contains('_') {
                continue;
            }
            let key = match name.to_ascii_uppercase().replace('-', "_") {
                k if k == "CONTENT_TYPE" || k == "CONTENT_LENGTH" => {
                    content_length |= k == "CONTENT_LENGTH";
                    k
                }
                k => format!("HTTP_{k}"),
            };
            let value = latin1(value);
            match headers.iter_mut().find(|(k, _)| *k == key) {
                // Repeated: joined (RFC 9110 §5.3); a cookie header with "; ".
                Some((k, v)) => {
                    v.push_str(if k == "HTTP_COOKIE" { "; " } else { ", " });
                    v.push_str(&value);
                }
                None => headers.push((key, value)),
            }
        }
        // A chunked body was de-chunked: its length is known now, and apps that do
        // not honour wsgi.input_terminated (Django) need it.
        if !content_length && body_len > 0 {
            headers.push(("CONTENT_LENGTH".to_string(), body_len.to_string()));
        }
        Environ {
            method: req.method().to_string(),
            script_name: latin1(script),
            path_info: latin1(path_info),
            query: req.query().to_string(),
            raw_uri: req.target().to_string(),
            http10: req.version() == Version::Http10,
            remote_addr: req.peer().ip().to_string(),
            remote_port: req.peer().port(),
            server_port: req.local().port(),
            server_name,
            headers,
            https: req.scheme() == "https",
        }
    }
}

/// The environ entries that are the same for every request.
fn base_environ(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let env = PyDict::new(py);
    env.set_item("wsgi.version", (1, 0))?;
    env.set_item("wsgi.url_scheme", "http")?;
    env.set_item("wsgi.multithread", true)?;
    env.set_item("wsgi.multiprocess", false)?;
    env.set_item("wsgi.run_once", false)?;
    env.set_item("wsgi.input_terminated", true)?;
    env.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
    env.set_item("SERVER_SOFTWARE", concat!("spindle-wsgi/", env!("CARGO_PKG_VERSION")))?;
    Ok(env)
}

/// A `start_response` call: status code, reason phrase, headers.
type Started = (u16, Option<String>, Vec<(String, String)>);

/// What `start_response` and `write` record, shared with the response stream.
#[derive(Default)]
struct Status {
    /// What the latest `start_response` said.
    started: Option<Started>,
    /// The status and headers have gone to the server (no more changes).
    sent: bool,
    /// Bytes given to `write()`, not yet sent: they go before the iterable's (only
    /// without an early response, i.e. a request that has no connection).
    written: Vec<u8>,
}

/// The `start_response` callable; `write` is its method, returned by each call.
#[pyclass(module = "spindle_wsgi", frozen)]
pub struct StartResponse {
    status: Arc<Mutex<Status>>,
    /// Sends `write()` data as it comes: the first non-empty write sends the head.
    early: Option<EarlyResponse>,
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let state = lock(&this.status);
            match exc_info {
                // PEP 3333: with exc_info after the headers went out, re-raise.
                Some(info) if state.sent => {
                    let value = info.get_item(1)?;
                    return Err(PyErr::from_value(value));
                }
                Some(_) => {}
                None if state.started.is_some() => {
                    return Err(PyAssertionError::new_err(
                        "start_response called a second time without exc_info (PEP 3333)",
                    ))
                }
                None => {}
            }
        }
        let status: String = status
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("status must be a str, not {}", type_name(status))))?;
        let code = status
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|_| status.as_bytes().get(3).is_none_or(|&b| b == b' '))
            .ok_or_else(|| PyAssertionError::new_err(format!("status {status:?} is not \"NNN reason\"")))?;
        let headers = headers
            .cast::<PyList>()
            .map_err(|_| PyTypeError::new_err(format!("headers must be a list, not {}", type_name(headers))))?;
        let mut list = Vec::with_capacity(headers.len());
        for item in headers.iter() {
            let pair = item.cast::<PyTuple>().map_err(|_| {
                PyTypeError::new_err(format!("each header must be a (name, value) tuple, not {}", type_name(&item)))
            })?;
            let (name, value): (String, String) =
                pair.extract().map_err(|_| PyTypeError::new_err(format!("header {pair} is not a pair of str")))?;
            if HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
                tracing::debug!(target: "spindle::wsgi", header = %name, "hop-by-hop header from the app dropped");
                continue;
            }
            list.push((name, value));
        }
        let reason = status.get(4..).filter(|r| !r.is_empty()).map(str::to_string);
        lock(&this.status).started = Some((code, reason, list));
        slf.getattr("write")
    }

    /// PEP 3333's `write(data)`: the bytes are sent before it returns (the first
    /// non-empty call sends the status and headers first), without the GIL. A client
    /// that went away is an `OSError` (`BrokenPipeError`) in the app, as on gunicorn.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err(format!("write() takes bytes, not {}", type_name(data))))?;
        let mut state = lock(&self.status);
        if state.started.is_none() {
            return Err(PyAssertionError::new_err("write() called before start_response()"));
        }
        let Some(early) = &self.early else {
            state.written.extend_from_slice(bytes.as_bytes());
            return Ok(());
        };
        if bytes.as_bytes().is_empty() {
            return Ok(());
        }
        // The head goes with the first write only: the status and headers are copied
        // out then, not at every write.
        let head = if state.sent { None } else { state.started.clone() };
        state.sent = true;
        drop(state);
        let data = bytes.as_bytes().to_vec();
        py.detach(|| {
            if let Some((code, reason, headers)) = head {
                early.start(code, reason, headers)?;
            }
            early.write(&data)
        })
        .map_err(PyErr::from)
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// An exception's last traceback line (`KeyError: 'x'`) and the whole traceback.
fn describe(py: Python<'_>, e: &PyErr) -> (String, String) {
    let whole = py
        .import("traceback")
        .and_then(|tb| tb.call_method1("format_exception", (e.get_type(py), e.value(py), e.traceback(py))))
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|lines| lines.concat())
        .unwrap_or_else(|_| e.to_string());
    let last = whole.trim_end().lines().last().unwrap_or("").to_string();
    (last, whole)
}

/// Logs an exception from the app with its traceback, under the request id.
fn log_exception(py: Python<'_>, request: u64, what: &str, e: &PyErr) -> String {
    let (last, traceback) = describe(py, e);
    tracing::error!(target: "spindle::wsgi", request, "{what}: {last}\n{}", traceback.trim_end());
    last
}

/// `contextvars.copy_context` and the builtin `next`, looked up once.
static COPY_CONTEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static NEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A new `contextvars.Context` for a request: a copy of the worker thread's own.
fn new_context(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    COPY_CONTEXT.import(py, "contextvars", "copy_context")?.call0()
}

/// The rest of a response: the app's iterable, pulled a chunk at a time with the GIL.
///
/// The pulls (and `close()`) happen on whichever worker finds the client ready for
/// more, not necessarily the thread that called the app. Each runs in the request's
/// `contextvars.Context`, the one the app was called in, so what the app set in
/// context variables (Flask's request context under `stream_with_context`, asgiref's
/// `Local`) is there in every chunk, on any thread; `threading.local` data is the
/// pulling thread's.
pub struct WsgiBody {
    status: Arc<Mutex<Status>>,
    /// The request's `contextvars.Context`.
    context: Py<PyAny>,
    /// The app's return value, for `close()`; `None` once closed.
    result: Option<Py<PyAny>>,
    /// Its iterator; `None` once exhausted.
    iter: Option<Py<PyIterator>>,
    /// A chunk (or `write()` bytes) pulled, not yet sent: `pending[pos..]`.
    pending: Vec<u8>,
    pos: usize,
    request: u64,
}

impl WsgiBody {
    /// Calls `close()` on the result, once; an exception there is logged.
    fn close(&mut self, py: Python<'_>) {
        self.iter = None;
        if let Some(result) = self.result.take() {
            // One lookup: a missing `close` is the common case for lists.
            let close = match result.bind(py).getattr_opt(intern!(py, "close")) {
                Ok(Some(close)) => self.context.bind(py).call_method1(intern!(py, "run"), (close,)).map(drop),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = close {
                log_exception(py, self.request, "exception in the WSGI iterable's close()", &e);
            }
        }
    }

    /// Moves `write()` bytes into `pending` (they come before the next chunk).
    fn take_written(&mut self) {
        let mut state = lock(&self.status);
        if !state.written.is_empty() {
            self.pending.drain(..self.pos);
            self.pos = 0;
            self.pending.append(&mut state.written);
        }
    }

    /// Pulls the next non-empty chunk into `pending`; `Ok(false)` at the end (then the
    /// iterable has been closed).
    fn pull(&mut self, py: Python<'_>) -> PyResult<bool> {
        loop {
            self.take_written();
            if self.pos < self.pending.len() {
                return Ok(true);
            }
            let Some(iter) = &self.iter else { return Ok(false) };
            let next = NEXT.import(py, "builtins", "next")?;
            match self.context.bind(py).call_method1(intern!(py, "run"), (next, iter.bind(py))) {
                Err(e) if e.is_instance_of::<PyStopIteration>(py) => {
                    self.close(py);
                    self.take_written();
                    return Ok(self.pos < self.pending.len());
                }
                Err(e) => return Err(e),
                Ok(chunk) => {
                    let bytes = chunk.cast::<PyBytes>().map_err(|_| {
                        PyTypeError::new_err(format!(
                            "the WSGI iterable yielded {}; chunks must be bytes (PEP 3333)",
                            type_name(&chunk)
                        ))
                    })?;
                    self.pending.clear();
                    self.pos = 0;
                    self.pending.extend_from_slice(bytes.as_bytes());
                }
            }
        }
    }
}

impl Read for WsgiBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.pending.len() {
            self.pending.clear();
            self.pos = 0;
            let pulled = Python::attach(|py| {
                self.pull(py).map_err(|e| {
                    let last = log_exception(
                        py,
                        self.request,
                        "exception in the WSGI iterable after the response started; closing the connection",
                        &e,
                    );
                    io::Error::other(format!("the WSGI iterable raised {last}"))
                })
            })?;
            if !pulled {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for WsgiBody {
    fn drop(&mut self) {
        if self.result.is_some() {
            // The interpreter outlives the server (the command's main thread joins every
            // worker before returning to Python); try_attach is for an embedder whose
            // does not.
            let _ = Python::try_attach(|py| self.close(py));
        }
    }
}

impl App for WsgiApp {
    fn call<'a>(&self, mut req: Request<'a>) -> AppResult {
        let body = req.take_body();
        let environ = Environ::of(&req, body.len());
        let id = req.id();
        let early = req.early_response();
        drop(req);
        Python::attach(|py| self.call_py(py, environ, body, id, early))
    }
}

impl WsgiApp {
    fn call_py(
        &self,
        py: Python<'_>,
        environ: Environ,
        body: spindle::http::Body<'static>,
        id: u64,
        early: Option<EarlyResponse>,
    ) -> AppResult {
        let fail = |what: &str, e: PyErr| -> spindle::http::AppError {
            let last = log_exception(py, id, what, &e);
            format!("WSGI app {} raised {last} (traceback logged)", self.spec).into()
        };
        let env = self.environ_dict(py, environ, body, id).map_err(|e| fail("cannot build the WSGI environ", e))?;
        let status = Arc::new(Mutex::new(Status::default()));
        let start_response = Bound::new(py, StartResponse { status: Arc::clone(&status), early })
            .map_err(|e| fail("cannot make start_response", e))?;
        // The app, its iterable and close() run in a context of the request's own, on
        // whichever thread they run (see `WsgiBody`).
        let context = new_context(py).map_err(|e| fail("cannot make the request's contextvars.Context", e))?;
        let result = context
            .call_method1(intern!(py, "run"), (self.app.bind(py), env, start_response))
            .map_err(|e| fail("exception in the WSGI app", e))?;
        let mut stream = WsgiBody {
            status: Arc::clone(&status),
            context: context.unbind(),
            result: Some(result.clone().unbind()),
            iter: None,
            pending: Vec::new(),
            pos: 0,
            request: id,
        };
        if lock(&status).sent {
            // write() has sent the head: the iterable is the rest of the body, which
            // the server sends after what was written (status and headers not again).
            return match PyIterator::from_object(&result) {
                Ok(iter) => {
                    stream.iter = Some(iter.unbind());
                    Ok(Response {
                        status: 200,
                        reason: None,
                        headers: Vec::new(),
                        body: ResponseBody::Stream(Box::new(stream), None),
                    })
                }
                Err(e) => {
                    stream.close(py);
                    Err(fail("the WSGI app returned something not iterable", e))
                }
            };
        }
        if let Ok(wrapper) = result.cast::<FileWrapper>() {
            // Cloned, not held: the file's fileno() and tell() are Python code.
            let started = {
                let state = lock(&status);
                if state.written.is_empty() {
                    state.started.clone()
                } else {
                    None
                }
            };
            if let Some((code, reason, headers)) = started {
                match file_range(py, wrapper.get(), content_length(&headers)) {
                    Ok((file, range)) => {
                        tracing::debug!(
                            target: "spindle::wsgi",
                            request = id,
                            offset = range.start,
                            len = range.end - range.start,
                            "wsgi.file_wrapper over a regular file: sent with sendfile"
                        );
                        lock(&status).sent = true;
                        // The wrapper's close() (which closes the app's file) runs when the
                        // server is done with the body, however it ended: `stream` holds
                        // it, and dropping it closes it once, with the GIL.
                        let body = FileBody::new(file, range).on_end(move || drop(stream));
                        return Ok(Response { status: code, reason, headers, body: ResponseBody::File(body) });
                    }
                    Err(why) => {
                        tracing::debug!(target: "spindle::wsgi", request = id, "wsgi.file_wrapper iterated: {why}")
                    }
                }
            }
        }
        // A list or tuple is the whole body: join it (one write, Content-Length).
        let whole = if let Ok(list) = result.cast::<PyList>() {
            Some(join(list.iter()))
        } else if let Ok(tuple) = result.cast::<PyTuple>() {
            Some(join(tuple.iter()))
        } else {
            None
        };
        let mut ended = false;
        match whole {
            Some(Ok(bytes)) => {
                stream.take_written();
                stream.pending.extend_from_slice(&bytes);
                stream.close(py);
                ended = true;
            }
            Some(Err(e)) => {
                stream.close(py);
                return Err(fail("the WSGI app's response", e));
            }
            None => {
                match PyIterator::from_object(&result) {
                    Ok(iter) => stream.iter = Some(iter.unbind()),
                    Err(e) => {
                        stream.close(py);
                        return Err(fail("the WSGI app returned something not iterable", e));
                    }
                }
                // Until a non-empty chunk or the end: start_response may come late.
                if let Err(e) = stream.pull(py) {
                    stream.close(py);
                    return Err(fail("exception in the WSGI app (before the response started)", e));
                }
                if stream.result.is_none() {
                    ended = true;
                }
            }
        }
        let (code, reason, headers) = {
            let mut state = lock(&status);
            state.sent = true;
            match state.started.take() {
                Some(s) => s,
                None => {
                    drop(state);
                    stream.close(py);
                    return Err(format!("WSGI app {} returned without calling start_response", self.spec).into());
                }
            }
        };
        let declared = content_length(&headers);
        let have = (stream.pending.len() - stream.pos) as u64;
        // The whole body is here: the iterable ended, or its first chunk is all that the
        // app's Content-Length announces (stop iterating, PEP 3333 allows it; close).
        let complete = ended || declared == Some(have);
        let body = if complete && declared.is_none_or(|n| n == have) {
            stream.close(py);
            let bytes = stream.pending.split_off(stream.pos);
            ResponseBody::Bytes(bytes)
        } else {
            // The server frames it: the app's Content-Length (checked, and the
            // connection closed if the app gives less), else chunked or
            // close-delimited.
            ResponseBody::Stream(Box::new(stream), None)
        };
        Ok(Response { status: code, reason, headers, body })
    }

    fn environ_dict<'py>(
        &self,
        py: Python<'py>,
        e: Environ,
        body: spindle::http::Body<'static>,
        id: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = self.template.bind(py).copy()?;
        // Keys, and the values most requests share, are interned strings: no
        // allocation or UTF-8 decoding for them per request.
        let method = match e.method.as_str() {
            "GET" => intern!(py, "GET").clone(),
            "POST" => intern!(py, "POST").clone(),
            "HEAD" => intern!(py, "HEAD").clone(),
            other => PyString::new(py, other),
        };
        env.set_item(intern!(py, "REQUEST_METHOD"), method)?;
        if e.script_name.is_empty() {
            env.set_item(intern!(py, "SCRIPT_NAME"), intern!(py, ""))?;
        } else {
            env.set_item(intern!(py, "SCRIPT_NAME"), e.script_name)?;
        }
        env.set_item(intern!(py, "PATH_INFO"), e.path_info)?;
        env.set_item(intern!(py, "QUERY_STRING"), e.query)?;
        env.set_item(intern!(py, "RAW_URI"), e.raw_uri)?;
        let protocol = if e.http10 { intern!(py, "HTTP/1.0") } else { intern!(py, "HTTP/1.1") };
        env.set_item(intern!(py, "SERVER_PROTOCOL"), protocol)?;
        env.set_item(intern!(py, "REMOTE_ADDR"), e.remote_addr)?;
        env.set_item(intern!(py, "REMOTE_PORT"), e.remote_port.to_string())?;
        env.set_item(intern!(py, "SERVER_PORT"), e.server_port.to_string())?;
        env.set_item(intern!(py, "SERVER_NAME"), e.server_name)?;
        for (k, v) in e.headers {
            env.set_item(k, v)?;
        }
        if e.https {
            env.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "https"))?;
        }
        env.set_item(intern!(py, "wsgi.input"), Bound::new(py, Input::new(body))?)?;
        env.set_item(intern!(py, "wsgi.errors"), Bound::new(py, Errors::new(id))?)?;
        env.set_item(intern!(py, "spindle.request_id"), id)?;
        Ok(env)
    }
}

/// The app's `Content-Length`, if it gave a valid one.
fn content_length(headers: &[(String, String)]) -> Option<u64> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
}

/// The file behind a `wsgi.file_wrapper` and the range of it to send: from the
/// file-like's `tell()` (0 without one) for the app's `Content-Length` (which must fit
/// in the rest of the file) or to the end. The file is opened again, read-only,
/// through `/proc/self/fd/N` (a deleted file too): its own descriptor, closed with the
/// body, while the app's file object is closed by the wrapper's `close()`. `Err` says
/// why it must be iterated instead: no working `fileno()`, not a regular file
/// (checked before the open, which could block on a FIFO), no `/proc`, a `tell()` that
/// fails or is past the end, a `Content-Length` the file cannot give.
fn file_range(py: Python<'_>, wrapper: &FileWrapper, declared: Option<u64>) -> Result<(File, Range<u64>), String> {
    let filelike = wrapper.filelike().bind(py);
    let fd = filelike
        .call_method0(intern!(py, "fileno"))
        .and_then(|n| n.extract::<i32>())
        .map_err(|e| format!("no fileno(): {e}"))?;
    if fd < 0 {
        return Err(format!("fileno() is {fd}"));
    }
    let path = format!("/proc/self/fd/{fd}");
    let meta = std::fs::metadata(&path).map_err(|e| format!("{path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("descriptor {fd} is not a regular file"));
    }
    let file = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let opened = file.metadata().map_err(|e| format!("{path}: {e}"))?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Err(format!("descriptor {fd} changed while it was opened"));
    }
    let offset = match filelike.getattr_opt(intern!(py, "tell")) {
        Ok(None) => 0,
        Ok(Some(tell)) => tell.call0().and_then(|t| t.extract::<u64>()).map_err(|e| format!("tell(): {e}"))?,
        Err(e) => return Err(format!("tell: {e}")),
    };
    let size = opened.len();
    let left = size.checked_sub(offset).ok_or_else(|| format!("tell() {offset} is past the end ({size} bytes)"))?;
    let len = match declared {
        Some(n) if n > left => {
            return Err(format!("Content-Length {n} but {left} bytes from tell() {offset} to the end"));
        }
        Some(n) => n,
        None => left,
    };
    Ok((file, offset..offset + len))
}

/// The items of a list or tuple, which must all be bytes, joined.
fn join<'py>(items: impl Iterator<Item = Bound<'py, PyAny>>) -> PyResult<Vec<u8>> {
    let mut out = Vec::new();
    for item in items {
        let bytes = item.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "the WSGI response contains {}; chunks must be bytes (PEP 3333)",
                type_name(&item)
            ))
        })?;
        out.extend_from_slice(bytes.as_bytes());
    }
    Ok(out)
}
