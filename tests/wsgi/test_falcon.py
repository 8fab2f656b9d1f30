"""A Falcon app (apps/falcon_app.py, under wsgiref.validate) on the server under test,
each case also checked against gunicorn (same status, Content-Type, Location, body)."""

import hashlib
import json

import pytest

import servers
from rawhttp import Conn
from flask_cases import RAW_1M, split

CASES = [
    ("get", "GET", "/items/42?q=caf%C3%A9&t=a&t=b", None, None),
    ("put-json", "PUT", "/items/7", json.dumps({"name": "x", "n": [1, 2]}).encode(), None),
    ("upload", "POST", "/upload", RAW_1M, None),
    ("upload-chunked", "POST", "/upload", None, split(RAW_1M, 40000)),
    ("stream", "GET", "/stream?n=25", None, None),
    ("forbidden", "GET", "/forbidden", None, None),
    ("not-found", "GET", "/nowhere", None, None),
    ("method-not-allowed", "POST", "/stream", b"", None),
    ("empty-204", "DELETE", "/empty", None, None),
]


@pytest.fixture(scope="module")
def falcon_pair(kind):
    sut = servers.Server(kind, "falcon_app:application").start()
    ref = servers.Server("gunicorn", "falcon_app:application").start()
    yield sut, ref
    for srv in (sut, ref):
        srv.stop()
        assert "AssertionError" not in srv.log() and "WSGIWarning" not in srv.log(), srv.log()[-3000:]


def send(port, case):
    _, method, target, body, chunks = case
    headers = [("Content-Type", "application/json")] if method == "PUT" else []
    with Conn(port) as c:
        return c.request(method, target, headers, body, chunks=chunks)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_falcon_case(falcon_pair, case):
    sut, ref = falcon_pair
    got, want = send(sut.port, case), send(ref.port, case)
    assert got.status == want.status and got.body == want.body, (got, want)
    for name in ("Content-Type", "Location"):
        assert got.header(name) == want.header(name), (name, got, want)
    if case[0] == "get":
        assert json.loads(got.body) == {"id": "42", "q": "caf\u00e9", "tags": ["a", "b"]}
    if case[0].startswith("upload"):
        assert json.loads(got.body) == {"len": len(RAW_1M), "sha256": hashlib.sha256(RAW_1M).hexdigest()}
    if case[0] == "stream":
        assert got.body == b"".join(f"row {i}\n".encode() for i in range(25))
    if case[0] == "put-json":
        assert got.status == 201 and got.header("Location") == "/items/7"
    if case[0] == "forbidden":
        assert got.status == 403
