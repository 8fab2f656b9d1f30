"""A small HTTP/1.x client over a raw socket, for tests that must see the framing.

http.client hides how a response was delimited (Content-Length, chunked, or the
connection closing) and silently tolerates what a conformance test must flag, so the
WSGI tests talk bytes: `Conn.request()` writes a request exactly as given and
`Conn.read_response()` parses one response, recording its framing, the headers in wire
order (repeats kept), and the body. Every socket operation has a timeout (default 10 s)
so a hung server fails the test instead of blocking it.
"""

import socket

TIMEOUT = 10.0


class Incomplete(Exception):
    """The connection ended before the response's framing said it would."""

    def __init__(self, message, partial):
        super().__init__(message)
        self.partial = partial


class Response:
    def __init__(self, version, status, reason, headers, body, framing):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] as on the wire, latin-1 decoded
        self.body = body
        self.framing = framing  # "length", "chunked", "close" or "none"

    def header(self, name):
        """The first value of header `name` (case-insensitive), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return (f"<Response {self.status} {self.reason} framing={self.framing} "
                f"headers={self.headers} body={self.body[:200]!r}>")


class Conn:
    """One client connection to 127.0.0.1:port."""

    def __init__(self, port, host="127.0.0.1", timeout=TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.file = self.sock.makefile("rb")
        self.port = port

    def close(self):
        try:
            self.file.close()
        finally:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def send_request(self, method, target, headers=(), body=None, version="HTTP/1.1",
                     chunks=None, host=True):
        """Writes one request. `target` is str (sent as latin-1) or bytes; `body` is sent
        with a Content-Length unless the headers already frame it; `chunks` (a list of
        bytes) is sent with Transfer-Encoding: chunked."""
        if isinstance(target, str):
            target = target.encode("latin-1")
        head = [method.encode() + b" " + target + b" " + version.encode()]
        names = {h[0].lower() for h in headers}
        if host and "host" not in names:
            head.append(b"Host: 127.0.0.1:%d" % self.port)
        for k, v in headers:
            head.append(k.encode("latin-1") + b": " + v.encode("latin-1"))
        payload = b""
        if chunks is not None:
            head.append(b"Transfer-Encoding: chunked")
            payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n"
        elif body is not None:
            if "content-length" not in names and "transfer-encoding" not in names:
                head.append(b"Content-Length: %d" % len(body))
            payload = body
        self.send(b"\r\n".join(head) + b"\r\n\r\n" + payload)

    def request(self, method, target, headers=(), body=None, version="HTTP/1.1",
                chunks=None):
        self.send_request(method, target, headers, body, version, chunks)
        return self.read_response(method)

    def _line(self):
        line = self.file.readline(65537)
        if not line:
            raise Incomplete("connection closed before a response line", b"")
        return line

    def read_head(self):
        """Reads a status line and headers: (version, status, reason, headers)."""
        line = self._line()
        parts = line.rstrip(b"\r\n").split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise AssertionError(f"bad status line {line!r}")
        version, status = parts[0].decode(), int(parts[1])
        reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
        headers = []
        while True:
            h = self.file.readline(65537)
            if not h:
                raise Incomplete("connection closed inside the response head", b"")
            if h in (b"\r\n", b"\n"):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        return version, status, reason, headers

    def read_response(self, method="GET", skip_interim=True):
        """Reads one response; 1xx interim responses are skipped unless asked not to."""
        while True:
            version, status, reason, headers = self.read_head()
            if not (skip_interim and 100 <= status < 200 and status != 101):
                break
        resp = Response(version, status, reason, headers, b"", "none")
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return resp
        if "chunked" in te:
            resp.framing = "chunked"
            resp.body = self._read_chunked()
        elif cl is not None:
            resp.framing = "length"
            n = int(cl)
            body = self.file.read(n)
            if len(body) < n:
                raise Incomplete(f"body ended after {len(body)} of {n} bytes", body)
            resp.body = body
        else:
            resp.framing = "close"
            resp.body = self.file.read()
        return resp

    def _read_chunked(self):
        body = bytearray()
        while True:
            line = self.file.readline(4096)
            if not line:
                raise Incomplete("connection closed before the last chunk", bytes(body))
            size = int(line.split(b";")[0].strip() or b"x", 16)
            if size == 0:
                break
            data = self.file.read(size)
            body += data
            if len(data) < size or self.file.read(2) != b"\r\n":
                raise Incomplete("connection closed inside a chunk", bytes(body))
        while True:  # trailers, up to the empty line
            line = self.file.readline(4096)
            if not line:
                raise Incomplete("connection closed inside the trailers", bytes(body))
            if line in (b"\r\n", b"\n"):
                return bytes(body)

    def peer_closed(self, wait=5.0):
        """True if the server closes the connection (EOF or reset) within `wait` s
        without sending anything more."""
        self.sock.settimeout(wait)
        try:
            data = self.file.read1(1) if hasattr(self.file, "read1") else self.file.read(1)
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        finally:
            self.sock.settimeout(TIMEOUT)
        return data == b""


def get(port, target, headers=(), method="GET", body=None, version="HTTP/1.1"):
    """One request on a fresh connection."""
    with Conn(port) as c:
        return c.request(method, target, headers, body, version)
