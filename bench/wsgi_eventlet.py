"""eventlet.wsgi.server serving the benchmark's Flask app, monkey-patched: the green-thread
peer of bench/wsgi.sh, the setup spindle's users are migrating from.

Binds 127.0.0.1 port 0 (the bench finds the port in /proc), serves until SIGTERM. The
green pool is eventlet's default for wsgi.server (1024 simultaneous requests), above the
bench's 200 connections; no access log, as no peer logs access here.
"""

import eventlet

eventlet.monkey_patch()

import eventlet.wsgi  # noqa: E402

from flask_app import app  # noqa: E402


def main():
    sock = eventlet.listen(("127.0.0.1", 0), backlog=1024)
    print(f"listening {sock.getsockname()[0]}:{sock.getsockname()[1]}", flush=True)
    eventlet.wsgi.server(sock, app, log_output=False, keepalive=True)


if __name__ == "__main__":
    main()
