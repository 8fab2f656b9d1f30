"""A real Flask application (apps/flask_app.py, under wsgiref.validate) over real sockets.

What each route must answer is Flask's and HTTP's behaviour, written out here; the
differential test (test_differential.py) then checks the same cases against gunicorn.
"""

import json
import time

import pytest

from rawhttp import Conn
from flask_cases import BY_ID, RAW_1M, UPLOAD_A, UPLOAD_B, send, sha


def run(server, case_id):
    resp = send(server.port, BY_ID[case_id])
    assert resp.status != 500 or case_id == "error-500", resp
    return resp


def test_hello(flask_server):
    resp = run(flask_server, "hello")
    assert resp.status == 200 and resp.body == b"Hello, World!\n"
    assert resp.header("Content-Type") == "text/plain"
    assert resp.header("Content-Length") == "14"


def test_json(flask_server):
    resp = run(flask_server, "json")
    assert resp.status == 200 and resp.header("Content-Type") == "application/json"
    assert json.loads(resp.body) == {"name": "spindle", "items": [1, 2, 3],
                                     "nested": {"ok": True}, "text": "caf\u00e9 \u20ac"}
    assert resp.header("Content-Length") == str(len(resp.body))


def test_head_has_headers_no_body(flask_server):
    get_resp = run(flask_server, "json")
    head = run(flask_server, "json-head")
    assert head.status == 200 and head.body == b""
    assert head.header("Content-Length") == get_resp.header("Content-Length")


def test_method_not_allowed(flask_server):
    resp = run(flask_server, "json-post-405")
    assert resp.status == 405
    assert set(resp.header("Allow").replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}


@pytest.mark.parametrize("case_id,n,version", [("stream", 50, "1.1"), ("stream-http10", 7, "1.0")])
def test_streamed_generator(flask_server, case_id, n, version):
    resp = run(flask_server, case_id)
    who = "tester" if n == 50 else "you"
    assert resp.status == 200
    assert resp.body == "".join(f"line {i} of {n} for {who}\n" for i in range(n)).encode()
    assert resp.framing == ("chunked" if version == "1.1" else "close")


def test_form_urlencoded(flask_server):
    body = json.loads(run(flask_server, "form-urlencoded").body)
    assert body["fields"] == {"a": ["1", "2"], "b": ["caf\u00e9 au lait"], "empty": [""]}


def test_form_multipart(flask_server):
    body = json.loads(run(flask_server, "form-multipart").body)
    assert body["fields"] == {"x": ["1"], "y": ["\u20ac"]}


@pytest.mark.parametrize("case_id", ["upload-files", "upload-files-chunked"])
def test_file_upload_read_in_chunks(flask_server, case_id):
    resp = run(flask_server, case_id)
    assert resp.status == 200, resp
    got = json.loads(resp.body)
    assert got["fields"] == {"n": "42", "title": "caf\u00e9"}
    assert got["files"]["big"] == {"filename": "big.bin", "len": len(UPLOAD_A),
                                   "sha256": sha(UPLOAD_A), "mimetype": "application/octet-stream"}
    assert got["files"]["small"] == {"filename": "small.txt", "len": len(UPLOAD_B),
                                     "sha256": sha(UPLOAD_B), "mimetype": "text/plain"}


@pytest.mark.parametrize("case_id", ["upload-raw", "upload-raw-chunked"])
def test_upload_read_from_wsgi_input(flask_server, case_id):
    got = json.loads(run(flask_server, case_id).body)
    assert got == {"len": len(RAW_1M), "sha256": sha(RAW_1M)}


@pytest.mark.parametrize("case_id,data", [("data", RAW_1M[:5000]), ("data-chunked", RAW_1M)])
def test_get_data(flask_server, case_id, data):
    got = json.loads(run(flask_server, case_id).body)
    assert got == {"len": len(data), "sha256": sha(data)}


def test_exception_is_500_and_traceback_in_log(flask_server):
    resp = run(flask_server, "error-500")
    assert resp.status == 500
    assert b"Internal Server Error" in resp.body
    # Flask logs the traceback to wsgi.errors: it must reach the server's log.
    deadline = time.monotonic() + 5
    while "flask route failed on purpose" not in flask_server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "flask route failed on purpose" in flask_server.log()


@pytest.mark.parametrize("case_id", ["abort-404", "no-route-404"])
def test_not_found(flask_server, case_id):
    resp = run(flask_server, case_id)
    assert resp.status == 404 and b"Not Found" in resp.body


def test_redirect(flask_server):
    resp = run(flask_server, "redirect")
    assert resp.status == 302 and resp.header("Location") == "/json"
    resp = run(flask_server, "redirect-abs")
    assert resp.status == 301 and resp.header("Location") == "http://example.invalid/elsewhere"


def test_cookies(flask_server):
    cookies = run(flask_server, "cookie").header_all("Set-Cookie")
    assert len(cookies) == 2
    assert cookies[0].startswith("session=abc123;") and "HttpOnly" in cookies[0]
    assert cookies[1].startswith("theme=dark;") and "Max-Age=3600" in cookies[1]


def test_unicode_path_and_query(flask_server):
    got = json.loads(run(flask_server, "echo-unicode-path").body)
    assert got["rest"] == "caf\u00e9/x y"
    assert got["path"] == "/echo/caf\u00e9/x y"
    assert got["script_root"] == ""
    assert got["args"] == {"a": ["1", "2"], "b": ["\u20ac"]}
    assert got["headers"]["X-Trace"] == "t-1"
    assert got["headers"]["X-Latin"] == "caf\u00e9"


def test_big_response(flask_server):
    resp = run(flask_server, "big")
    assert resp.status == 200 and resp.body == b"0123456789abcdef" * 65536
    assert resp.header("Content-Length") == str(1 << 20)


def test_204_and_304(flask_server):
    resp = run(flask_server, "empty-204")
    assert resp.status == 204 and resp.body == b""
    assert run(flask_server, "etag-200").header("ETag") == '"v42"'
    resp = run(flask_server, "etag-304")
    assert resp.status == 304 and resp.body == b""


def test_keep_alive_across_routes(flask_server):
    """Many Flask requests on one connection, body framing intact between them (a server
    may end the connection only by saying `Connection: close`)."""
    c = Conn(flask_server.port)
    reconnects = 0
    try:
        for i in range(60):
            target, body, check = [
                ("/", None, lambda r: r.body == b"Hello, World!\n"),
                ("/stream?n=3", None, lambda r: r.body.count(b"\n") == 3),
                ("/upload-raw", b"x" * 1000, lambda r: json.loads(r.body)["len"] == 1000),
            ][i % 3]
            r = c.request("POST" if body else "GET", target, body=body)
            assert r.status == 200 and check(r), r
            if "close" in (r.header("Connection") or "").lower():
                c.close()
                c = Conn(flask_server.port)
                reconnects += 1
    finally:
        c.close()
