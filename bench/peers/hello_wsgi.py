"""The WSGI apps the Python peers serve.

`/` (every path but /sleep): 200 text/plain "Hello, World!\n", the same bytes spindle's
built-in `hello` app and the bench's nginx config answer with, so every server in
bench/run.sh does the same work per request.

`/sleep?ms=N`: sleeps N milliseconds (0..10000, default 20) in the handling thread, then
answers 200 "slept N ms\n": the blocking workload, the WSGI equivalent of spindle's
built-in `sleep` app.
"""

import time
from urllib.parse import parse_qs

BODY = b"Hello, World!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def sleep_app(environ, start_response):
    try:
        ms = int(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["20"])[0])
    except ValueError:
        ms = -1
    if not 0 <= ms <= 10000:
        body = b"ms must be 0..10000\n"
        start_response("400 Bad Request",
                       [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    time.sleep(ms / 1000)
    body = b"slept %d ms\n" % ms
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/sleep":
        return sleep_app(environ, start_response)
    start_response("200 OK", HEADERS)
    return [BODY]
