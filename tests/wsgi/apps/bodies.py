"""Reading a request body in chunks, as the test apps' upload routes do."""

import hashlib


def digest_stream(read, size=65536):
    """Calls read(size) until it returns b""; returns {"len": bytes, "sha256": hex}."""
    h, n = hashlib.sha256(), 0
    while True:
        chunk = read(size)
        if not chunk:
            return {"len": n, "sha256": h.hexdigest()}
        h.update(chunk)
        n += len(chunk)
