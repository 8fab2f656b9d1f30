"""The WSGI hello app the Python peers serve: 200 text/plain "Hello, World!\n".

The same bytes spindle's built-in `hello` app and the bench's nginx config answer with,
so every server in bench/run.sh does the same work per request.
"""

BODY = b"Hello, World!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
