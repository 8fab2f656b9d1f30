"""The requests sent to apps/flask_app.py, shared by test_flask.py and test_differential.py.

Each case is (id, method, target, headers, body, chunks, version): `body` goes with a
Content-Length, `chunks` with Transfer-Encoding: chunked. `send()` runs one case on a
fresh connection and returns the rawhttp.Response.
"""

import hashlib

from rawhttp import Conn

BOUNDARY = "----spindle-wsgi-test-boundary"


def multipart(fields, files):
    """A multipart/form-data body: fields {name: value}, files {name: (filename, bytes, type)}."""
    out = bytearray()
    for name, value in fields.items():
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                ).encode() + value.encode() + b"\r\n"
    for name, (filename, data, ctype) in files.items():
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f"filename=\"{filename}\"\r\nContent-Type: {ctype}\r\n\r\n").encode()
        out += data + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


def blob(n, seed=0):
    """n deterministic bytes covering every byte value."""
    return bytes((i * 131 + seed + (i >> 8)) & 0xFF for i in range(n))


UPLOAD_A = blob(300 * 1024, 7)
UPLOAD_B = "naïve text file\n".encode() * 100
RAW_1M = blob(1 << 20, 3)
MULTIPART = multipart({"title": "caf\u00e9", "n": "42"},
                      {"big": ("big.bin", UPLOAD_A, "application/octet-stream"),
                       "small": ("small.txt", UPLOAD_B, "text/plain")})
FORM_URLENCODED = b"a=1&a=2&b=caf%C3%A9+au+lait&empty="
MULTIPART_TYPE = [("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")]
URLENCODED_TYPE = [("Content-Type", "application/x-www-form-urlencoded")]


def split(data, step):
    return [data[i:i + step] for i in range(0, len(data), step)]


CASES = [
    ("hello", "GET", "/", [], None, None, "HTTP/1.1"),
    ("json", "GET", "/json", [], None, None, "HTTP/1.1"),
    ("json-head", "HEAD", "/json", [], None, None, "HTTP/1.1"),
    ("json-post-405", "POST", "/json", [], b"", None, "HTTP/1.1"),
    ("stream", "GET", "/stream?n=50&who=tester", [], None, None, "HTTP/1.1"),
    ("stream-http10", "GET", "/stream?n=7", [], None, None, "HTTP/1.0"),
    ("form-urlencoded", "POST", "/form", URLENCODED_TYPE, FORM_URLENCODED, None, "HTTP/1.1"),
    ("form-multipart", "POST", "/form", MULTIPART_TYPE, multipart({"x": "1", "y": "\u20ac"}, {}),
     None, "HTTP/1.1"),
    ("upload-files", "POST", "/upload", MULTIPART_TYPE, MULTIPART, None, "HTTP/1.1"),
    ("upload-files-chunked", "POST", "/upload", MULTIPART_TYPE, None, split(MULTIPART, 10000),
     "HTTP/1.1"),
    ("upload-raw", "POST", "/upload-raw", [("Content-Type", "application/octet-stream")], RAW_1M,
     None, "HTTP/1.1"),
    ("upload-raw-chunked", "PUT", "/upload-raw", [], None, split(RAW_1M, 50000), "HTTP/1.1"),
    ("data", "POST", "/data", [], RAW_1M[:5000], None, "HTTP/1.1"),
    ("data-chunked", "POST", "/data", [], None, split(RAW_1M, 33333), "HTTP/1.1"),
    ("error-500", "GET", "/error", [], None, None, "HTTP/1.1"),
    ("abort-404", "GET", "/missing", [], None, None, "HTTP/1.1"),
    ("no-route-404", "GET", "/no/such/route", [], None, None, "HTTP/1.1"),
    ("redirect", "GET", "/redirect", [], None, None, "HTTP/1.1"),
    ("redirect-abs", "GET", "/redirect-abs", [], None, None, "HTTP/1.1"),
    ("cookie", "GET", "/cookie", [], None, None, "HTTP/1.1"),
    ("echo-unicode-path", "GET", "/echo/caf%C3%A9/x%20y?a=1&a=2&b=%E2%82%AC",
     [("X-Trace", "t-1"), ("X-Latin", "caf\u00e9")], None, None, "HTTP/1.1"),
    ("big", "GET", "/big", [], None, None, "HTTP/1.1"),
    ("empty-204", "DELETE", "/empty", [], None, None, "HTTP/1.1"),
    ("etag-200", "GET", "/etag", [], None, None, "HTTP/1.1"),
    ("etag-304", "GET", "/etag", [("If-None-Match", '"v42"')], None, None, "HTTP/1.1"),
    ("sleep", "GET", "/sleep?ms=1", [], None, None, "HTTP/1.1"),
]

CASE_IDS = [c[0] for c in CASES]
BY_ID = {c[0]: c for c in CASES}


def send(port, case):
    _, method, target, headers, body, chunks, version = case
    with Conn(port) as c:
        return c.request(method, target, headers, body, version, chunks)


def sha(data):
    return hashlib.sha256(data).hexdigest()
