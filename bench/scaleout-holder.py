#!/usr/bin/env python3
"""bench/scaleout-holder.py: what systemd's socket unit does, for bench/scaleout.sh.

Binds and listens on 127.0.0.1:PORT itself, then runs the command given with that
socket passed the way systemd passes it (fd 3, LISTEN_FDS=1, LISTEN_FDNAMES=NAME,
LISTEN_PID=the child's PID), and starts it again each time it exits, as
`Restart=always` does, until SIGTERM. Since this process keeps the socket open, a
connection made while no child runs waits in the kernel's queue instead of being
refused: the `systemctl restart` of a socket-activated service.

Usage: scaleout-holder.py PORT NAME COMMAND [ARGS...]
Stops: on SIGTERM it sends SIGTERM to the running child, waits for it and exits.
"""

import os
import signal
import socket
import sys


def main():
    port, name, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    stopping = False
    child = 0

    def on_term(_sig, _frame):
        nonlocal stopping
        stopping = True
        if child:
            os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    while not stopping:
        child = os.fork()
        if child == 0:
            if sock.fileno() != 3:
                os.dup2(sock.fileno(), 3)
            os.set_inheritable(3, True)  # Python's sockets are close-on-exec
            env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES=name, LISTEN_PID=str(os.getpid()))
            os.execvpe(argv[0], argv, env)
        while True:
            try:
                os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        child = 0


if __name__ == "__main__":
    main()
