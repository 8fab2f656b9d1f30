"""eventlet.wsgi.server on a GreenPool, serving hello_wsgi.app: the green-thread peer.

Usage: eventlet_server.py PORT. Binds 127.0.0.1:PORT, prints `listening 127.0.0.1:PORT`,
serves until SIGTERM (the bench owns the process). The pool is sized above any
connection count the bench opens so the pool, not the load, is never the limit.
"""

import sys

import eventlet

eventlet.monkey_patch()

import eventlet.wsgi  # noqa: E402

from hello_wsgi import app  # noqa: E402


def main():
    port = int(sys.argv[1])
    sock = eventlet.listen(("127.0.0.1", port), backlog=1024)
    print(f"listening 127.0.0.1:{port}", flush=True)
    pool = eventlet.GreenPool(20000)
    eventlet.wsgi.server(sock, app, custom_pool=pool, log_output=False, keepalive=True)


if __name__ == "__main__":
    main()
