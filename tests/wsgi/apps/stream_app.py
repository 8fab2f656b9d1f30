"""Large streamed and file responses, for tests/wsgi/test_streaming.py: a Flask app, not
under wsgiref.validate (its validator wraps every response iterable, so the server would
never see the `wsgi.file_wrapper` that Flask's `send_file` returns as it is, which is the
case under test), with a few bare WSGI routes under /raw/ for what Flask never returns.

Every response iterable's `close()` is recorded as a line `close TOKEN`, followed by
`on TOKEN THREAD` (the name of the native thread it ran on, `worker-N` for spindle's
workers), and every request that started streaming as `start TOKEN`, in the file named
by $STREAM_TEST_EVENTS, which the tests read, also after the server has exited. Files
handed to `send_file` are kept referenced in OPEN for the life of the process: a file
object that nobody closed is then never closed by the garbage collector either, so a
recorded `close` is always the server's (through the wrapper's close()) and a missing
one shows.

Routes:
- `/` — hello.
- `/gen?n=128&size=65536&token=T` — `Response(generator)`: n chunks of `size` bytes,
  `bodies.pattern_chunk(i, size)` each; close() recorded by `call_on_close`.
- `/file?token=T` — `send_file` of an open file object ($STREAM_TEST_FILE) that records
  close(), with Content-Length set (what `send_file(path)` gives).
- `/file-path` — `send_file($STREAM_TEST_FILE, conditional=True)`: ETag, ranges.
- `/ctx-stream?n=64&token=T` — a `stream_with_context` generator that reads `request`
  in every chunk.
- `/raw/file?token=T&status=200&offset=0&cl=N&kind=file|bytesio|pipe` — the bare
  `environ['wsgi.file_wrapper']` over a recording file seeked to `offset`, with the
  app's Content-Length `cl` if given, as a plain WSGI app returns it.
"""

import io
import os
import threading

from bodies import pattern_chunk
from flask import Flask, Response, request, send_file, stream_with_context

app = Flask(__name__)
EVENTS = os.environ.get("STREAM_TEST_EVENTS")
FILE = os.environ.get("STREAM_TEST_FILE")
LOCK = threading.Lock()
OPEN = []  # every recording file, so that only an explicit close() closes one


def event(what, token):
    if EVENTS and token:
        with LOCK, open(EVENTS, "a") as f:
            f.write(f"{what} {token}\n")


def thread_name():
    """The name of the native thread this runs on (`worker-3` on spindle)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def closed(token):
    """Records a close() call, and the native thread it ran on (`on TOKEN worker-3`)."""
    event("close", token)
    event("on", f"{token} {thread_name()}")


class RecordingFile(io.FileIO):
    """A real file (its fileno() works) whose every close() call is recorded."""

    def __init__(self, path, token):
        super().__init__(path, "rb")
        self.token = token
        with LOCK:
            OPEN.append(self)

    def close(self):
        closed(self.token)
        super().close()


class RecordingBytesIO(io.BytesIO):
    def __init__(self, data, token):
        super().__init__(data)
        self.token = token
        with LOCK:
            OPEN.append(self)

    def close(self):
        closed(self.token)
        super().close()


class RecordingPipe(io.FileIO):
    """The read end of a pipe holding `data` (its fileno() works; not a regular file)."""

    def __init__(self, data, token):
        r, w = os.pipe()
        writer = threading.Thread(target=self._fill, args=(w, data), daemon=True)
        writer.start()
        super().__init__(r, "rb")
        self.token = token
        with LOCK:
            OPEN.append(self)

    @staticmethod
    def _fill(w, data):
        with open(w, "wb") as f:
            f.write(data)

    def close(self):
        closed(self.token)
        super().close()


@app.route("/")
def hello():
    return "Hello, World!\n", 200, {"Content-Type": "text/plain"}


@app.route("/gen")
def gen():
    n = request.args.get("n", 128, type=int)
    size = request.args.get("size", 65536, type=int)
    token = request.args.get("token", "")
    event("start", token)

    def chunks():
        for i in range(n):
            yield pattern_chunk(i, size)

    resp = Response(chunks(), mimetype="application/octet-stream")
    resp.call_on_close(lambda: closed(token))
    return resp


@app.route("/ctx-stream")
def ctx_stream():
    """n chunks of 64 KiB, each made from Flask's `request` under stream_with_context:
    the request context must be there for every chunk, on whatever thread pulls it.
    Records `threads TOKEN a,b` (the threads that pulled chunks) at close."""
    token = request.args.get("token", "")
    n = request.args.get("n", 64, type=int)
    pulled_on = set()

    @stream_with_context
    def chunks():
        for i in range(n):
            pulled_on.add(thread_name())
            yield (b"%d %s " % (i, request.args["token"].encode())).ljust(65536, b".")

    def done():
        event("threads", f"{token} {','.join(sorted(pulled_on))}")
        closed(token)

    resp = Response(chunks(), mimetype="application/octet-stream")
    resp.call_on_close(done)
    return resp


@app.route("/file", methods=["GET", "HEAD"])
def file():
    token = request.args.get("token", "")
    event("start", token)
    f = RecordingFile(FILE, token)
    resp = send_file(f, mimetype="application/octet-stream")
    resp.content_length = os.fstat(f.fileno()).st_size
    return resp


@app.route("/file-path")
def file_path():
    return send_file(FILE, mimetype="application/octet-stream", conditional=True)


def raw_file(environ, start_response):
    q = dict(p.partition("=")[::2] for p in environ.get("QUERY_STRING", "").split("&") if p)
    token = q.get("token", "")
    event("start", token)
    kind = q.get("kind", "file")
    if kind == "bytesio":
        with open(FILE, "rb") as f:
            f = RecordingBytesIO(f.read(), token)
    elif kind == "pipe":
        with open(FILE, "rb") as f:
            f = RecordingPipe(f.read(1 << 20), token)
    else:
        f = RecordingFile(FILE, token)
    if int(q.get("offset", "0")):
        f.seek(int(q["offset"]))
    status = {"200": "200 OK", "204": "204 No Content", "304": "304 Not Modified"}[q.get("status", "200")]
    headers = [] if status[:3] in ("204", "304") else [("Content-Type", "application/octet-stream")]
    if "cl" in q:
        headers.append(("Content-Length", q["cl"]))
    start_response(status, headers)
    return environ["wsgi.file_wrapper"](f, 65536)


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/raw/file":
        return raw_file(environ, start_response)
    return app(environ, start_response)
