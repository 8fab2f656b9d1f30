"""A real Flask application, for tests/wsgi/test_flask.py, the differential test and the
benchmark (bench/wsgi.sh).

`app` is the plain Flask app (the benchmark serves it, so the validator's own cost is not
measured); `application` is the same app under wsgiref.validate.validator, which the
tests serve. Routes cover what Flask apps do in practice: text, JSON, a streamed
generator, a form POST, file uploads (request.files, and wsgi.input read in chunks), an
unhandled exception (Flask answers 500), abort(404), a redirect, cookies, a non-ASCII
path, and the benchmark's hello and blocking routes.
"""

import hashlib
import os
import threading
import time
import warnings
from wsgi_validator import WSGIWarning, validator

from bodies import digest_stream
from flask import Flask, Response, abort, jsonify, redirect, request, stream_with_context

warnings.simplefilter("error", WSGIWarning)

app = Flask(__name__)
EVENTS = os.environ.get("WSGI_TEST_CLOSE_LOG")  # the SIGTERM test's event file
EVENTS_LOCK = threading.Lock()


def event(what, token):
    if EVENTS and token:
        with EVENTS_LOCK, open(EVENTS, "a") as f:
            f.write(f"{what} {token}\n")


def sha(data):
    return hashlib.sha256(data).hexdigest()


@app.route("/")
def hello():
    return "Hello, World!\n", 200, {"Content-Type": "text/plain"}


@app.route("/sleep")
def sleep():
    # The blocking route of the benchmark: the thread waits, as on a database call.
    ms = request.args.get("ms", 20, type=int)
    token = request.args.get("token", "")
    event("started", token)
    time.sleep(ms / 1000)
    resp = Response(f"slept {ms} ms\n", mimetype="text/plain")
    if token:
        # Runs when the server calls close() on the response iterable.
        resp.call_on_close(lambda: event("closed", token))
    return resp


@app.route("/json")
def json_route():
    return jsonify(name="spindle", items=[1, 2, 3], nested={"ok": True}, text="caf\u00e9 \u20ac")


@app.route("/stream")
def stream():
    n = request.args.get("n", 5, type=int)

    def gen():
        for i in range(n):
            yield f"line {i} of {n} for {request.args.get('who', 'you')}\n"

    return Response(stream_with_context(gen()), mimetype="text/plain")


@app.route("/form", methods=["POST"])
def form():
    return jsonify(fields={k: request.form.getlist(k) for k in sorted(request.form)},
                   content_type=request.content_type)


@app.route("/upload", methods=["POST"])
def upload():
    out = {}
    for name in sorted(request.files):
        f = request.files[name]
        out[name] = {"filename": f.filename, "mimetype": f.mimetype,
                     **digest_stream(f.read, 8192)}
    return jsonify(files=out, fields={k: request.form[k] for k in sorted(request.form)})


@app.route("/upload-raw", methods=["POST", "PUT"])
def upload_raw():
    # Read the body from wsgi.input in chunks, as a proxying or storing app would.
    return jsonify(digest_stream(request.environ["wsgi.input"].read))


@app.route("/data", methods=["POST"])
def data():
    # request.get_data(): werkzeug's whole-body read (read() without a size when the
    # server sets wsgi.input_terminated, as it must for chunked uploads).
    body = request.get_data()
    return jsonify(len=len(body), sha256=sha(body))


@app.route("/error")
def error():
    raise RuntimeError("flask route failed on purpose")


@app.route("/missing")
def missing():
    abort(404)


@app.route("/redirect")
def redirect_route():
    return redirect("/json")


@app.route("/redirect-abs")
def redirect_abs():
    return redirect("http://example.invalid/elsewhere", code=301)


@app.route("/cookie")
def cookie():
    resp = jsonify(ok=True)
    resp.set_cookie("session", "abc123", httponly=True, path="/")
    resp.set_cookie("theme", "dark", max_age=3600)
    return resp


@app.route("/echo/<path:rest>")
def echo(rest):
    return jsonify(rest=rest, path=request.path, script_root=request.script_root,
                   args={k: request.args.getlist(k) for k in sorted(request.args)},
                   method=request.method,
                   headers={k: v for k, v in request.headers.items()
                            if k.lower().startswith("x-")})


@app.route("/big")
def big():
    return b"0123456789abcdef" * 65536, 200, {"Content-Type": "application/octet-stream"}


@app.route("/empty", methods=["GET", "DELETE"])
def empty():
    resp = Response(status=204)
    del resp.headers["Content-Type"]  # a 204 has no content, so no type (the validator checks)
    return resp


@app.route("/etag")
def etag():
    resp = Response("versioned body\n", mimetype="text/plain")
    resp.set_etag("v42")
    return resp.make_conditional(request)


application = validator(app)
