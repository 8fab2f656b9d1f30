"""Differential test: the Flask cases against gunicorn (gthread, 1 worker, 4 threads, the
server the Eventlet migration guide recommends) and against the server under test.

Same status, same headers that matter (Content-Type; Content-Length when the app set it,
i.e. when gunicorn sends one; Location, Set-Cookie, ETag, Vary; Allow as a set), and the bodies byte for
byte. Date, Server, Connection and Transfer-Encoding are the server's own business and
are not compared; nor is a Content-Length a server adds to a response the app streamed.
"""

import pytest

from flask_cases import CASE_IDS, CASES, send

COMPARED = ("Content-Type", "Location", "Set-Cookie", "ETag", "Vary")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_same_as_gunicorn(flask_server, ref_flask_server, case):
    ref = send(ref_flask_server.port, case)
    got = send(flask_server.port, case)
    assert got.status == ref.status, (got, ref)
    for name in COMPARED:
        assert got.header_all(name) == ref.header_all(name), (name, got, ref)
    # werkzeug builds Allow from a set: its order changes with each process's hash seed.
    allow = [{m.strip() for m in r.header("Allow").split(",")} if r.header("Allow") else None
             for r in (got, ref)]
    assert allow[0] == allow[1], (got, ref)
    if ref.header("Content-Length") is not None and ref.header("Transfer-Encoding") is None:
        assert got.header("Content-Length") == ref.header("Content-Length"), (got, ref)
    assert got.body == ref.body, (case[0], got, ref)
