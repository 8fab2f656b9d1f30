#!/usr/bin/env python3
"""Regenerates the seed corpus in fuzz/corpus/<target>/seed-* from the tests.

Run from the repository root: python3 fuzz/seeds.py. Seeds are small files taken
from the requests and bodies in tests/http_wire.rs and the parser's and decoder's
unit tests, the shipped configs and the bad configs in tests/config.rs. libFuzzer's
own finds go elsewhere (see .ci/fuzz.sh), so only seeds are committed.
"""
import hashlib
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def unescape(s):
    """A Rust string or byte-string literal's body, as bytes."""
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        e = s[i + 1]
        if e == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        elif e == "u":
            end = s.index("}", i)
            out += chr(int(s[i + 3:end], 16)).encode()
            i = end + 1
        elif e == "\n":  # line continuation: skip the newline and leading spaces
            i += 2
            while i < len(s) and s[i] in " \t":
                i += 1
        else:
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\", '"': b'"', "'": b"'"}[e]
            i += 2
    return bytes(out)


LITERAL = re.compile(r'b?"((?:[^"\\]|\\.)*)"', re.S)


def literals(text):
    for m in LITERAL.finditer(text):
        try:
            yield unescape(m.group(1))
        except (KeyError, ValueError, IndexError):
            pass


def write(target, seeds):
    d = os.path.join(ROOT, "fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        if name.startswith("seed-"):
            os.remove(os.path.join(d, name))
    seen = set()
    for s in seeds:
        if s in seen or len(s) > 4096:
            continue
        seen.add(s)
        with open(os.path.join(d, "seed-" + hashlib.sha1(s).hexdigest()[:12]), "wb") as f:
            f.write(s)
    print(f"{target}: {len(seen)} seeds")


METHODS = (b"GET ", b"POST ", b"HEAD ", b"OPTIONS ", b"PUT ", b"CONNECT ", b"G(T", b"GE/T", b"\r\n", b"\n")

sources = read("tests/http_wire.rs") + read("src/http/parse.rs") + read("src/http/receive.rs")
lits = list(literals(sources))
heads = [b for b in lits if b.startswith(METHODS) and b"HTTP/" in b]
heads.append(b"GET /<> HTTP/1.1\r\nHost: a\r\n\r\n")
write("head", heads)

# Chunked bodies: literals that look like one, plus the wire tests' sizes. Each gets
# the target's 4-byte prefix: output buffer size, limit, split seed.
body_src = read("src/http/body.rs") + read("tests/http_wire.rs") + read("src/http/receive.rs")
bodies = [b for b in literals(body_src) if re.match(rb"^[0-9a-fA-F]*[;\r\n]", b) and b"\r\n" in b or b.endswith(b"\r\n\r\n") and re.match(rb"^[0-9a-fA-F]+\r?\n", b)]
bodies += [b"ffffffffffffffff\r\n", b"100001\r\n", b"5\nhello\r\n0\r\n\r\n", b"0\r\nX: \xff\r\n\r\n"]
prefixes = [bytes([64, 0xff, 0, 1]), bytes([1, 4, 0x12, 0x34]), bytes([7, 0x80, 0xab, 0xcd])]
write("chunked", [p + b for b in bodies for p in prefixes])

# Round trip: control bytes and data (see the target's doc).
write("chunked_roundtrip", [
    b"",
    b"\x05hello",
    b"\x45hello\x86 world\x00trailer",
    b"\x01a\x01b\x01c",
    bytes([0x3f]) + bytes(range(63)) + b"\x00\xff\xfe",
])

configs = [read("config/spindle.toml").encode(), read("config/docker.toml").encode()]
configs += [b for b in literals(read("tests/config.rs")) if b.startswith(b"[")]
write("config", configs)

# PROXY headers: the literals of the parser's table tests and of the wire tests.
proxy_src = read("src/proxy.rs") + read("tests/proxy.rs")
headers = [b for b in literals(proxy_src) if b.startswith((b"PROXY ", b"\r\n\r\n\x00\r\nQUIT\n"))]
headers += [
    b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\nGET / HTTP/1.1\r\n\r\n",
    b"PROXY UNKNOWN\r\n",
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc6\x33\x64\x17\x0a\x00\x00\x01\x9c\x40\x1f\x90",
    b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00",
]
write("proxy", headers)
