"""The Flask app of bench/slow.sh (issue 16), served by spindle-wsgi, waitress and granian.

  GET /      "Hello, World!\\n" (the normal client's request)
  GET /gen   Response(a generator of 128 chunks of 64 KiB): 8 MiB, streamed, no length
  GET /file  send_file() of an 8 MiB file (wsgi.file_wrapper where the server has one)

The file is written when the module is imported, into $SLOW_APP_DIR (bench/slow.sh
gives a directory under its run's temporary directory and removes it), or else into a
new temporary directory removed at exit. A server whose workers import the app each
write their own copy; they are identical.
"""

import atexit
import os
import shutil
import tempfile

from flask import Flask, Response, send_file

CHUNK = 64 * 1024
CHUNKS = 128  # 8 MiB
BLOCK = bytes(range(256)) * (CHUNK // 256)

app = Flask(__name__)


def _make_file():
    base = os.environ.get("SLOW_APP_DIR")
    if base:
        os.makedirs(base, exist_ok=True)
        d = tempfile.mkdtemp(prefix=f"app-{os.getpid()}-", dir=base)
    else:
        d = tempfile.mkdtemp(prefix="slow-app-")
    atexit.register(shutil.rmtree, d, True)
    path = os.path.join(d, "8MiB.bin")
    with open(path, "wb") as f:
        for _ in range(CHUNKS):
            f.write(BLOCK)
    return path


FILE = _make_file()


@app.route("/")
def hello():
    return "Hello, World!\n", 200, {"Content-Type": "text/plain"}


@app.route("/gen")
def gen():
    def chunks():
        for _ in range(CHUNKS):
            yield BLOCK

    return Response(chunks(), mimetype="application/octet-stream")


@app.route("/file")
def file():
    return send_file(FILE, mimetype="application/octet-stream")
