"""pytest fixtures for the WSGI suite: one server per app per session, plus a log check.

`WSGI_SERVER` picks the server under test (see servers.py); the suite's header names
it. `pep_server` serves apps/pep3333_app.py and `flask_server` apps/flask_app.py on it;
`ref_flask_server` is gunicorn (gthread 1x4) serving the same Flask app, the reference of
the differential test.

Every test that uses a server fixture has that server's log checked afterwards for
`AssertionError` and `WSGIWarning` (what wsgiref.validate raises on a PEP 3333
violation), naming the test that caused it; the whole log is checked again when the
server stops (the validator's "iterator garbage collected without being closed" can
come late), and the stop itself must be a clean exit 0.
"""

import re

import pytest

import servers

VIOLATION = re.compile(r"AssertionError|WSGIWarning")


def pytest_report_header(config):
    kind = servers.under_test()
    extra = f" ({servers.spindle_command()})" if kind == "spindle" else ""
    return f"WSGI server under test: {kind}{extra}"


@pytest.fixture(scope="session")
def kind():
    return servers.under_test()


def _serve(kind, app):
    srv = servers.Server(kind, app).start()
    yield srv
    code = srv.stop()
    # A graceful stop of an idle server is exit 0 (waitress has no SIGTERM handler).
    assert code == 0 or (kind == "waitress" and code == -15), f"{kind} exited {code} on SIGTERM:\n{srv.log()[-2000:]}"
    m = VIOLATION.search(srv.log())
    assert not m, f"{kind} log has a PEP 3333 validator error:\n{srv.log()[max(0, m.start() - 1500):][:3000]}"


@pytest.fixture(scope="session")
def pep_server(kind):
    yield from _serve(kind, "pep3333_app:application")


@pytest.fixture(scope="session")
def flask_server(kind):
    yield from _serve(kind, "flask_app:application")


@pytest.fixture(scope="session")
def ref_flask_server():
    yield from _serve("gunicorn", "flask_app:application")


@pytest.fixture(autouse=True)
def _no_validator_errors(request):
    """Fails the test if a server it used logged a validator error during it."""
    used = [request.getfixturevalue(n) for n in ("pep_server", "flask_server", "ref_flask_server")
            if n in request.fixturenames]
    marks = {srv.log_path: len(srv.log()) for srv in used}
    yield
    for srv in used:
        new = srv.log()[marks[srv.log_path]:]
        m = VIOLATION.search(new)
        assert not m, (f"{srv.kind} log has a PEP 3333 validator error during this test:\n"
                       f"{new[max(0, m.start() - 1500):m.end() + 500]}")
