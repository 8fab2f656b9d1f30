"""The server around the app: mounts (SCRIPT_NAME), misbehaving apps, SIGTERM with
requests in flight, clients that hold no thread, and startup errors.

Each test here starts its own server (servers.Server), so a test that breaks or stops a
server cannot disturb the others. Expectations that are spindle's own contract (issue
10) rather than PEP 3333's are xfail on the other servers, which is what they show.
"""

import os
import re
import resource
import socket
import threading
import time

import pytest

import servers
from rawhttp import Conn, Incomplete, get
from test_pep3333 import four_sleeps_at_once, ok_json, wait_record

APP = "pep3333_app:application"


def only_spindle(kind, why):
    if kind != "spindle":
        pytest.xfail(f"{kind}: {why}")


# --- SCRIPT_NAME / PATH_INFO split at a mount point ---------------------------------------

MOUNT_CONFIG = servers.SPINDLE_CONFIG + '"/mnt" = { wsgi = "pep3333_app:application" }\n'


def test_mount_point_splits_script_name_and_path_info(kind):
    if kind == "spindle":
        srv = servers.Server(kind, APP, config=MOUNT_CONFIG)
    elif kind == "gunicorn":
        srv = servers.Server(kind, APP, env={"SCRIPT_NAME": "/mnt"})
    else:
        srv = servers.Server(kind, APP, args=["--url-prefix=/mnt"])
    try:
        srv.start()
    except servers.StartError:
        if kind == "spindle" and srv.returncode == 2:
            last = [line for line in srv.log().splitlines() if line.strip()][-1:]
            pytest.skip(f"this spindle-wsgi does not take the issue's mount form: {last}")
        raise
    # Started above (not `with srv`, whose __enter__ starts it again and left the
    # first server running after the test).
    try:
        env = ok_json(get(srv.port, "/mnt/env/caf%C3%A9?x=1"))
        assert env["cgi"]["SCRIPT_NAME"] == "/mnt"
        assert env["PATH_INFO_bytes"] == b"/env/caf\xc3\xa9".hex()
        assert env["cgi"]["QUERY_STRING"] == "x=1"
        if kind == "spindle":
            # A prefix matches whole path segments only: /mntx is not under /mnt.
            env = ok_json(get(srv.port, "/mntx/env"))
            assert env["cgi"].get("SCRIPT_NAME", "") == ""
            assert env["cgi"]["PATH_INFO"] == "/mntx/env"
    finally:
        srv.stop()


# --- apps that break the protocol ---------------------------------------------------------

BAD = ["none", "no-start", "str-body", "header-injection", "bad-status", "iter-raises",
       "close-raises", "double-start"]


@pytest.fixture(scope="module")
def rough_server(kind):
    srv = servers.Server(kind, APP).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("bad", BAD)
def test_misbehaving_app_gets_500_or_close_and_server_survives(rough_server, bad, kind):
    if kind == "waitress" and bad == "bad-status":
        pytest.xfail("waitress 3.0.2 writes the status line 'HTTP/1.1 OK'")
    port = rough_server.port
    with Conn(port) as c:
        try:
            resp = c.request("GET", f"/raw/bad/{bad}?token=t-{bad}")
        except (Incomplete, ConnectionResetError):
            resp = None  # closed without a (complete) response: allowed
    if resp is not None:
        # Never the app's broken response passed through as if valid.
        assert resp.header("X-Injected") is None, resp
        if bad == "close-raises":
            assert resp.status == 200  # the body was fine; only close() failed
        else:
            assert resp.status == 500, resp
    if bad == "close-raises":
        assert "closed" in wait_record(port, "t-close-raises", ["closed"])
    assert rough_server.alive(), rough_server.log()[-2000:]
    assert get(port, "/hello").body == b"Hello, World!\n"


# --- SIGTERM with requests in flight -----------------------------------------------------

@pytest.mark.parametrize("app", [APP, "flask_app:application"])
def test_sigterm_answers_in_flight_requests_and_closes_every_iterable(kind, tmp_path, app):
    if kind == "waitress":
        pytest.xfail("waitress has no SIGTERM handler: it dies at once")
    events = tmp_path / "events"
    srv = servers.Server(kind, app, env={"WSGI_TEST_CLOSE_LOG": str(events)}).start()
    n = servers.THREADS  # every request on a thread of its own, for every server
    results = [None] * n

    def one(i):
        try:
            results[i] = get(srv.port, f"/sleep?ms=1500&token=s{i}")
        except Exception as e:  # reported below, per request
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            text = events.read_text() if events.exists() else ""
            if text.count("started") == n:
                break
            time.sleep(0.02)
        assert text.count("started") == n, f"requests never started: {text!r}"
    finally:
        code = srv.stop(timeout=40)
        for t in threads:
            t.join(timeout=20)
    for i, r in enumerate(results):
        assert not isinstance(r, Exception) and r is not None, f"request {i}: {r!r}"
        assert r.status == 200 and r.body == b"slept 1500 ms\n", r
    closed = sorted(re.findall(r"^closed (\S+)$", events.read_text(), re.M))
    assert closed == sorted(f"s{i}" for i in range(n)), events.read_text()
    assert code == 0, srv.log()[-2000:]


# --- clients that should cost the app nothing ---------------------------------------------

def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def hello_p99(port, n=200, tries=3):
    """The lowest of `tries` p99s of n sequential hellos: one noisy neighbour on a
    2-core machine must not decide the comparison."""
    return min(one_p99(port, n) for _ in range(tries))


def one_p99(port, n):
    times = []
    with Conn(port) as c:
        for _ in range(n):
            t0 = time.perf_counter()
            r = c.request("GET", "/hello")
            times.append(time.perf_counter() - t0)
            assert r.status == 200
    times.sort()
    return times[int(n * 0.99) - 1]


def test_idle_and_slowloris_clients_hold_no_thread(kind):
    """1,000 idle keep-alive connections and 200 slowloris connections (a request head
    that never ends): hello must still be answered, its p99 within 1.5x (+5 ms) of the
    same server's before, and four blocking requests must still run at once."""
    only_spindle(kind, "a slow request head holds one of the 4 threads")
    idle_n, slow_n = 1000, 200
    limit = raise_nofile(idle_n + slow_n + 200)
    if limit < idle_n + slow_n + 100:
        pytest.skip(f"RLIMIT_NOFILE {limit} too low for {idle_n + slow_n} client sockets")
    with servers.Server(kind, APP) as srv:
        one_p99(srv.port, 50)  # warm up
        before = hello_p99(srv.port)
        idle, slow = [], []
        try:
            for _ in range(idle_n):
                c = Conn(srv.port)
                idle.append(c)
                assert c.request("GET", "/hello").status == 200
            for _ in range(slow_n):
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                slow.append(s)
            after = hello_p99(srv.port)
            assert after <= 1.5 * before + 0.005, f"hello p99 {before * 1e3:.2f} ms -> {after * 1e3:.2f} ms"
            results, elapsed = four_sleeps_at_once(srv.port)
            assert results == [200] * 4 and elapsed < 1.8, (results, elapsed)
        finally:
            for c in idle:
                c.close()
            for s in slow:
                s.close()


# --- startup errors (spindle's contract: exit 2, the module and the error named) ----------

@pytest.mark.parametrize("target,expect", [
    ("no_such_module_xyz:app", "no_such_module_xyz"),
    ("pep3333_app:no_such_callable", "no_such_callable"),
    ("broken_import:app", "ValueError: broken on purpose at import"),
])
def test_startup_error_is_exit_2_naming_the_problem(kind, tmp_path, target, expect):
    only_spindle(kind, "exit status 2 for a bad app is spindle's contract")
    (tmp_path / "broken_import.py").write_text('raise ValueError("broken on purpose at import")\n')
    srv = servers.Server(kind, target, env={"PYTHONPATH": f"{servers.APPS}{os.pathsep}{tmp_path}"},
                         ready_timeout=30)
    with pytest.raises(servers.StartError):
        srv.start()
    srv.stop()
    assert srv.returncode == 2, srv.log()
    assert expect in srv.log(), srv.log()


# --- the pool's floor ---------------------------------------------------------------------

@pytest.mark.parametrize("pool, floor", [("", 1), ("[pool]\nmin_threads = 3\n", 3)])
def test_with_the_gil_the_pool_floor_is_one_thread_unless_the_config_says(kind, pool, floor):
    """With the GIL one thread runs Python at a time, so an unset pool.min_threads is 1
    (a second running thread only hands the GIL back and forth); a written one is kept.
    Blocking apps still grow the pool (the sleep tests)."""
    only_spindle(kind, "spindle's pool and its /metrics")
    import sysconfig
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip("a free-threaded build keeps one thread per CPU")
    config = pool + servers.SPINDLE_CONFIG + '"/metrics" = "metrics"\n'
    with servers.Server(kind, APP, config=config) as srv:
        text = get(srv.port, "/metrics").body.decode()
    assert f"spindle_pool_min_threads {floor}\n" in text, text
