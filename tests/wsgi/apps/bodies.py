"""Reading a request body in chunks, as the test apps' upload routes do; the pattern of
the streamed test bodies."""

import functools
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


@functools.lru_cache(maxsize=256)
def pattern_chunk(i, size=65536):
    """Chunk `i` of a streamed test body: `size` bytes that differ from chunk to chunk
    and within the chunk, so a lost, repeated or reordered piece changes the digest."""
    head = b"%08d:" % i
    unit = bytes((i * 7 + k) % 251 for k in range(251))
    body = (unit * (size // len(unit) + 1))[: max(0, size - len(head))]
    return (head + body)[:size]
