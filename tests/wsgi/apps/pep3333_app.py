"""WSGI test apps that exercise each part of PEP 3333, for tests/wsgi/test_pep3333.py.

`application` routes every path to `validated` (the app below wrapped in the standard
library's `wsgiref.validate.validator`, which raises AssertionError on any server-side
PEP 3333 violation, and WSGIWarning, made an error here, on the softer ones) except
/raw/..., which goes to `raw`: calls the validator itself forbids the *app* to make but
that real frameworks make anyway (werkzeug calls `wsgi.input.read()` without a size when
`wsgi.input_terminated` is set; Django iterates the input object directly).

Facts the tests need from inside the server process (was close() called, did
start_response re-raise) are kept in RECORD, keyed by a token the test chose, and read
back with GET /record?token=T. The SIGTERM test cannot ask a server that has exited, so
every record is also appended to the file named by $WSGI_TEST_CLOSE_LOG when it is set.
"""

import contextvars
import hashlib
import io
import json
import os
import sys
import threading
import time
import warnings
from urllib.parse import parse_qs
from wsgiref.validate import WSGIWarning, validator

warnings.simplefilter("error", WSGIWarning)

RECORD = {}
CTX = contextvars.ContextVar("wsgi_test_ctx")
LOCAL = threading.local()
LOCK = threading.Lock()
CLOSE_LOG = os.environ.get("WSGI_TEST_CLOSE_LOG")
THIS_FILE = os.path.abspath(__file__)


def record(token, what):
    if not token:
        return
    with LOCK:
        RECORD.setdefault(token, []).append(what)
    if CLOSE_LOG:
        with LOCK, open(CLOSE_LOG, "a") as f:
            f.write(f"{what} {token}\n")


def query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def respond(start_response, body, status="200 OK", ctype="application/json", extra=()):
    if not isinstance(body, bytes):
        body = json.dumps(body, sort_keys=True).encode()
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))]
                   + list(extra))
    return [body]


def describe_environ(environ):
    """Every CGI-style key with its value and type, and the wsgi.* facts."""
    out = {"cgi": {}, "types": {}}
    for k, v in environ.items():
        if "." not in k:
            out["cgi"][k] = v
            out["types"][k] = type(v).__name__
    out["wsgi.version"] = list(environ["wsgi.version"])
    out["wsgi.version_type"] = type(environ["wsgi.version"]).__name__
    for k in ("wsgi.url_scheme", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once",
              "wsgi.input_terminated"):
        out[k] = environ.get(k, "<missing>")
    out["wsgi.file_wrapper"] = callable(environ.get("wsgi.file_wrapper"))
    inp = environ["wsgi.input"]
    inner = getattr(inp, "input", inp)  # the server's object under validator's wrapper
    out["input_attrs"] = [a for a in ("read", "readline", "readlines", "__iter__")
                          if hasattr(inner, a)]
    errs = getattr(environ["wsgi.errors"], "errors", environ["wsgi.errors"])
    out["errors_attrs"] = [a for a in ("write", "writelines", "flush") if hasattr(errs, a)]
    # PATH_INFO/SCRIPT_NAME must be latin-1 "bytes as str": encoding them back gives the
    # raw (percent-decoded) bytes; a server that decoded UTF-8 fails here or above.
    for k in ("PATH_INFO", "SCRIPT_NAME"):
        try:
            out[k + "_bytes"] = environ.get(k, "").encode("latin-1").hex()
        except UnicodeEncodeError:
            out[k + "_bytes"] = "<not latin-1>"
    return out


def digest(chunks):
    h = hashlib.sha256()
    n = 0
    for c in chunks:
        h.update(c)
        n += len(c)
    return {"len": n, "sha256": h.hexdigest()}


def until_empty(call, limit=None, name=""):
    """Calls `call()` until it returns b""; each piece at most `limit` bytes."""
    pieces = []
    while True:
        c = call()
        assert limit is None or len(c) <= limit, f"{name}({limit}) returned {len(c)} bytes"
        if not c:
            return pieces
        pieces.append(c)


def read_input(environ, mode, n):
    """Reads wsgi.input the way `mode` says; returns (pieces, facts)."""
    inp = environ["wsgi.input"]
    pieces = []
    if mode == "read_n":
        pieces = until_empty(lambda: inp.read(n), n, "read")
    elif mode == "readline":
        pieces = until_empty(inp.readline)
    elif mode == "readline_n":
        pieces = until_empty(lambda: inp.readline(n), n, "readline")
    elif mode == "readlines":
        pieces = inp.readlines()
    elif mode == "readlines_hint":
        while True:
            got = inp.readlines(n)
            if not got:
                break
            pieces.extend(got)
    elif mode == "iter":
        pieces = list(inp)
    elif mode == "read_all":
        pieces = [inp.read()]
        assert inp.read() == b"" and inp.read(10) == b"", "input not at EOF after read()"
    elif mode == "ignore":
        pass
    else:
        raise ValueError(f"unknown mode {mode}")
    facts = digest(pieces)
    facts["pieces"] = len(pieces)
    # A line-reading mode must split exactly after each b"\n".
    if mode in ("readline", "readlines", "iter", "readlines_hint"):
        facts["lines_ok"] = all(p.endswith(b"\n") for p in pieces[:-1]) and all(
            b"\n" not in p[:-1] for p in pieces)
    if mode == "readline_n":
        facts["lines_ok"] = all(b"\n" not in p[:-1] for p in pieces)
    return pieces, facts


class Closing:
    """An iterable with close(), the way frameworks return streamed bodies."""

    def __init__(self, token, chunks, delay=0.0):
        self.token = token
        self.chunks = chunks
        self.delay = delay

    def __iter__(self):
        for c in self.chunks:
            if self.delay:
                time.sleep(self.delay)
            yield c

    def close(self):
        record(self.token, "closed")


class ContextProbe:
    """Yields n chunks of `size` bytes; close() records whether every chunk saw the
    ContextVar and the threading.local the app set."""

    def __init__(self, token, n, size):
        self.token, self.n, self.size = token, n, size
        self.ctx_ok = self.local_ok = True

    def __iter__(self):
        for i in range(self.n):
            self.ctx_ok &= CTX.get(None) == self.token
            self.local_ok &= getattr(LOCAL, "token", None) == self.token
            yield bytes([48 + i % 10]) * self.size

    def close(self):
        record(self.token, "ctx-ok" if self.ctx_ok else "ctx-lost")
        record(self.token, "local-ok" if self.local_ok else "local-lost")
        record(self.token, "closed")


class RecordingBytesIO(io.BytesIO):
    def __init__(self, data, token):
        super().__init__(data)
        self.token = token

    def close(self):
        record(self.token, "closed")
        super().close()


RELEASE = {}  # token -> threading.Event, set by GET /release?token=T


def release_event(token):
    with LOCK:
        return RELEASE.setdefault(token, threading.Event())


def deep(n):
    return 0 if n == 0 else 1 + sum(map(deep, [n - 1]))


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = query(environ)
    token = q.get("token", "")
    if path.startswith(("/env", "/mntx/")):  # /mntx/: the mount test's near miss of /mnt
        return respond(start_response, describe_environ(environ))
    if path == "/record":
        with LOCK:
            return respond(start_response, RECORD.get(token, []))
    if path == "/hello":
        return respond(start_response, b"Hello, World!\n", ctype="text/plain")
    if path == "/deep":
        # Recursion every level of which goes through C (sum, map), so each is a C
        # stack frame too, as in a deep template or serializer; apps that recurse deep
        # raise the interpreter's limit, as this one does.
        depth = int(q.get("depth", "900"))
        sys.setrecursionlimit(max(sys.getrecursionlimit(), depth + 100))
        return respond(start_response, {"depth": deep(depth)})
    if path == "/input":
        mode = q.get("mode", "read_n")
        _, facts = read_input(environ, mode, int(q.get("n", "8192")))
        return respond(start_response, facts)
    if path == "/input-stream":
        # Records after the first n bytes, so a test can hold back the rest of the body
        # and see that the app got to run before the body was complete.
        n = int(q.get("n", "1000"))
        first = environ["wsgi.input"].read(n)
        record(token, f"first {len(first)}")
        rest = until_empty(lambda: environ["wsgi.input"].read(65536))
        return respond(start_response, digest([first] + rest))
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written-1;")
        write(b"")
        write(b"written-2;")
        return [b"returned-3;", b"", b"returned-4"]
    if path == "/write-wait":
        # write() data must reach the client while the app runs: the app waits for
        # the test, which releases it only once it has read the first write.
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"first;")
        release_event(token).wait(10)
        write(b"second;")
        return [b"third"]
    if path == "/release":
        release_event(token).set()
        return respond(start_response, b"released", ctype="text/plain")
    if path == "/gen":
        # A streamed body of unknown length: chunked on 1.1, close-delimited on 1.0.
        n = int(q.get("n", "5"))
        delay = int(q.get("delay_ms", "0")) / 1000
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing(token, (b"chunk %d\n" % i for i in range(n)), delay)
    if path == "/ctx":
        # What the app set while it was called must still be there while its iterable
        # runs: Flask's stream_with_context keeps its request context in ContextVars,
        # and thread-local sessions (SQLAlchemy's scoped_session) assume one thread.
        CTX.set(token)
        LOCAL.token = token
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return ContextProbe(token, int(q.get("n", "64")), int(q.get("size", "65536")))
    if path == "/chunks":
        n = int(q.get("n", "10000"))
        chunks = [b"%d," % i for i in range(n)]
        headers = [("Content-Type", "text/plain")]
        if q.get("cl"):
            headers.append(("Content-Length", str(sum(map(len, chunks)))))
        start_response("200 OK", headers)
        return chunks
    if path == "/file":
        wrapper = environ["wsgi.file_wrapper"]
        if q.get("kind") == "bytesio":
            f = RecordingBytesIO(b"in-memory file body\n" * 1000, token)
        else:
            f = open(THIS_FILE, "rb")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return wrapper(f, 4096)
    if path == "/status":
        code = q.get("code", "204")
        headers = [("ETag", '"v1"')] if code == "304" else [("X-Empty", "yes")]
        start_response({"204": "204 No Content", "304": "304 Not Modified"}[code], headers)
        return []
    if path == "/error-before":
        # Headers set, then an error before any body byte: start_response with
        # exc_info replaces the pending response.
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "yes")])
        try:
            raise RuntimeError("changed my mind")
        except RuntimeError:
            body = b"replaced by the error response\n"
            start_response("503 Service Unavailable",
                           [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
                           sys.exc_info())
        return [body]
    if path == "/error-after":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return error_after(token, start_response)
    if path == "/raise":
        raise RuntimeError("boom-before-start " + token)
    if path == "/cookies":
        return respond(start_response, b"two cookies\n", ctype="text/plain",
                       extra=[("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/")])
    if path == "/latin1-header":
        return respond(start_response, b"ok\n", ctype="text/plain",
                       extra=[("X-Latin", "caf\xe9")])
    if path == "/sleep":
        ms = int(q.get("ms", "20"))
        record(token, "started")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing(token, [b"slept ", str(ms).encode(), b" ms\n"], ms / 1000 / 3)
    return respond(start_response, b"not found\n", status="404 Not Found", ctype="text/plain")


class ErrorAfter:
    """Yields one chunk, then fails; start_response(..., exc_info) must then re-raise
    because the headers are already out (PEP 3333, "the exc_info parameter")."""

    def __init__(self, token, start_response):
        self.token = token
        self.start_response = start_response
        self.i = 0

    def __iter__(self):
        return self

    def __next__(self):
        self.i += 1
        if self.i == 1:
            return b"first chunk, then an error\n"
        try:
            raise RuntimeError("failed mid-body")
        except RuntimeError:
            try:
                self.start_response("500 Internal Server Error",
                                    [("Content-Type", "text/plain")], sys.exc_info())
            except RuntimeError:
                record(self.token, "start_response re-raised")
                raise
            record(self.token, "start_response returned")
            raise

    def close(self):
        record(self.token, "closed")


def error_after(token, start_response):
    return ErrorAfter(token, start_response)


validated = validator(app)


class CloseRaises:
    def __init__(self, token):
        self.token = token

    def __iter__(self):
        return iter([b"body before a failing close\n"])

    def close(self):
        record(self.token, "closed")
        raise RuntimeError("close() failed on purpose")


def misbehave(kind, start_response, token):
    """Apps that break the protocol: the server must answer 500 or close the connection,
    never crash, never put the app's bad bytes on the wire as protocol."""
    text = [("Content-Type", "text/plain")]
    if kind == "none":
        start_response("200 OK", text)
        return None
    if kind == "no-start":
        return [b"body without start_response\n"]
    if kind == "str-body":
        start_response("200 OK", text)
        return ["a str, not bytes\n"]
    if kind == "header-injection":
        start_response("200 OK", text + [("X-Evil", "a\r\nX-Injected: yes")])
        return [b"injected?\n"]
    if kind == "bad-status":
        start_response("OK", text)
        return [b"status without a code\n"]
    if kind == "iter-raises":
        start_response("200 OK", text)

        def gen():
            raise RuntimeError("iterator failed before its first chunk")
            yield b""  # noqa: unreachable: makes this a generator
        return gen()
    if kind == "close-raises":
        start_response("200 OK", text)
        return CloseRaises(token)
    if kind == "double-start":
        start_response("200 OK", text)
        start_response("201 Created", text)  # no exc_info: an error (PEP 3333)
        return [b"second start_response\n"]
    raise ValueError(f"unknown misbehaviour {kind}")


def raw(environ, start_response):
    """Unvalidated: the input calls frameworks make beyond PEP 3333's minimum, and apps
    that break the protocol on purpose."""
    q = query(environ)
    rest = environ["PATH_INFO"][len("/raw/"):]
    if rest.startswith("bad/"):
        return misbehave(rest[len("bad/"):], start_response, q.get("token", ""))
    _, facts = read_input(environ, rest, int(q.get("n", "8192")))
    return respond(start_response, facts)


def application(environ, start_response):
    if environ.get("PATH_INFO", "").startswith("/raw/"):
        return raw(environ, start_response)
    return validated(environ, start_response)
