#!/usr/bin/env python3
"""Open-loop overload of GET PATH on 127.0.0.1:PORT: RATE new connections a second for
SECONDS (each `Connection: close`, 5 s timeout), then every connection still waiting is
closed at once (as wrk does when its run ends), then a probe every 5 ms until one is
answered 200. Prints one line of key=value: offered, 200s, 503s, other, the 503s' and
200s' p50/p99 latency in ms, and recovery_ms: from the moment the load stopped to the
first 200 of a request sent after it.

usage: overload.py PORT PATH RATE SECONDS
Loopback only; bounded by SECONDS + 10 s.
"""
import asyncio
import sys
import time

port, path, rate, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
REQUEST = f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()


async def one(results):
    t0 = time.monotonic()
    status = "error"
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        writer.write(REQUEST)
        line = await asyncio.wait_for(reader.readline(), 5)
        parts = line.split()
        status = parts[1].decode() if len(parts) > 1 else "closed"
        await asyncio.wait_for(reader.read(), 5)
    except asyncio.CancelledError:
        status = "cancelled"
        raise
    except Exception:  # noqa: BLE001 - counted as "other"
        status = "error"
    finally:
        results.append((status, time.monotonic() - t0))
        if writer is not None:
            writer.close()


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000


async def main():
    results = []
    tasks = []
    start = time.monotonic()
    n = int(rate * seconds)
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(results)))
    stopped = time.monotonic()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Probes, one every 5 ms, until one is answered 200: recovery is when that answer
    # arrived, counted from the moment the load stopped.
    recovery = None
    probes = []
    while time.monotonic() < stopped + 10 and recovery is None:
        out = []
        sent = time.monotonic()
        probes.append((sent, out, asyncio.ensure_future(one(out))))
        await asyncio.sleep(0.005)
        answered = [s0 + o[0][1] for s0, o, t in probes if t.done() and o and o[0][0] == "200"]
        if answered:
            recovery = min(answered) - stopped
    for _, _, t in probes:
        t.cancel()
    await asyncio.gather(*(t for _, _, t in probes), return_exceptions=True)
    ok = [d for s, d in results if s == "200"]
    shed = [d for s, d in results if s == "503"]
    cut = sum(1 for s, _ in results if s == "cancelled")
    other = len(results) - len(ok) - len(shed) - cut
    print(
        f"offered={n} ok={len(ok)} shed={len(shed)} cut_at_stop={cut} other={other} "
        f"shed_p50_ms={pct(shed, 50):.1f} shed_p99_ms={pct(shed, 99):.1f} "
        f"ok_p50_ms={pct(ok, 50):.1f} ok_p99_ms={pct(ok, 99):.1f} "
        f"recovery_ms={'NA' if recovery is None else f'{recovery * 1000:.0f}'}"
    )


asyncio.run(main())
