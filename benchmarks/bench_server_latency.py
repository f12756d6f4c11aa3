"""Server latency: a get on a reused connection, and cancelling a queued job under a full pool.

    python benchmarks/bench_server_latency.py [--gets 500] [--chain 1000]

The server runs as a child process (`python -m gemini_magics serve --engine echo`), as a user
runs it. Rows:
- get on a reused keep-alive connection (goal: median <= 10 ms; before TCP_NODELAY every
  response waited ~40 ms for the client's delayed ACK), JSON and an SSE replay;
- cancel of a queued job while every worker slot is busy: 4 clients (API keys) x 16 slots of
  slow background jobs, then one more job that must wait, cancelled (goal: <= 1 s, answered
  `cancelled`; before, the cancel waited the full 30 s and answered in_progress);
- a create continuing a long previous_interaction_id chain (read in one query, off the event
  loop), and a get from another client while it runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

import httpx
from bench_server import start_server  # the same child-process echo server

SLOW = {"model": "bench", "input": "/words 1000 delay=1", "background": True}


def timings(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def row(name: str, ms: list[float], goal: str, ok: bool) -> tuple:
    ms = sorted(ms)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    return name, len(ms), statistics.median(ms), p90, ms[-1], goal, "ok" if ok else "MISSED"


def bench_gets(url: str, n: int) -> list[tuple]:
    with httpx.Client(base_url=url, timeout=30) as c:
        iid = c.post("/v1/interactions", json={"model": "bench", "input": "/words 20"}
                     ).json()["id"]
        timings(lambda: c.get(f"/v1/interactions/{iid}"), 20)  # warm up
        json_ms = timings(lambda: c.get(f"/v1/interactions/{iid}").raise_for_status(), n)
        sse_ms = timings(lambda: c.get(f"/v1/interactions/{iid}?alt=sse").read(), n // 2)
    return [row("get (JSON), reused connection", json_ms, "median <= 10 ms",
                statistics.median(json_ms) <= 10),
            row("get ?alt=sse replay, reused connection", sse_ms, "median <= 10 ms",
                statistics.median(sse_ms) <= 10)]


def bench_cancel(url: str, rounds: int = 5) -> list[tuple]:
    clients = [httpx.Client(base_url=url, timeout=60, headers={"x-goog-api-key": f"key-{k}"})
               for k in range(4)]
    started = []
    try:
        for c in clients:  # 4 x 16 = all 64 slots
            started += [(c, c.post("/v1/interactions", json=SLOW).json()["id"])
                        for _ in range(16)]
        ms, statuses = [], []
        for _ in range(rounds):
            c = clients[0]
            iid = c.post("/v1/interactions", json=SLOW).json()["id"]
            t0 = time.perf_counter()
            statuses.append(c.post(f"/v1/interactions/{iid}/cancel").json()["status"])
            ms.append((time.perf_counter() - t0) * 1000)
        running_ms = []
        for c, iid in started[:3]:  # a running one, for comparison (stops at the next word)
            t0 = time.perf_counter()
            c.post(f"/v1/interactions/{iid}/cancel")
            running_ms.append((time.perf_counter() - t0) * 1000)
    finally:
        for c, iid in started:
            c.delete(f"/v1/interactions/{iid}")
        for c in clients:
            c.close()
    ok = max(ms) <= 1000 and all(s == "cancelled" for s in statuses)
    return [row(f"cancel a queued job, pool full (answered {set(statuses)})", ms, "<= 1 s", ok),
            row("cancel a running job (echo, 1 s per word)", running_ms, "(reference)", True)]


def bench_chain(url: str, depth: int) -> list[tuple]:
    with httpx.Client(base_url=url, timeout=60) as c, \
            httpx.Client(base_url=url, timeout=60, headers={"x-goog-api-key": "other"}) as o:
        prev = None
        for _ in range(depth):
            body = {"model": "bench", "input": "hi"}
            if prev:
                body["previous_interaction_id"] = prev
            prev = c.post("/v1/interactions", json=body).json()["id"]
        probe = o.post("/v1/interactions", json={"model": "bench", "input": "p"}).json()["id"]
        create_ms, get_ms = [], []
        for _ in range(5):
            done = threading.Event()

            def poll():
                while not done.is_set():
                    t0 = time.perf_counter()
                    o.get(f"/v1/interactions/{probe}")
                    get_ms.append((time.perf_counter() - t0) * 1000)

            t = threading.Thread(target=poll)
            t.start()
            t0 = time.perf_counter()
            c.post("/v1/interactions", json={"model": "bench", "input": "more",
                                             "previous_interaction_id": prev, "store": False})
            create_ms.append((time.perf_counter() - t0) * 1000)
            done.set()
            t.join()
    return [row(f"create continuing a {depth}-turn chain", create_ms, "(reference)", True),
            row("  another client's get meanwhile", get_ms, "median <= 10 ms",
                statistics.median(get_ms) <= 10)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gets", type=int, default=500, help="gets to time")
    p.add_argument("--chain", type=int, default=1000, help="turns in the chain (0: skip)")
    args = p.parse_args(argv)
    proc, url = start_server()
    try:
        rows = bench_gets(url, args.gets) + bench_cancel(url)
        rows += bench_chain(url, args.chain) if args.chain else []
    finally:
        proc.terminate()  # SIGTERM: `serve` stops cleanly within seconds
        proc.wait(timeout=30)
    print(f"\nLocal server latency, echo engine ({os.cpu_count()} cores)\n")
    print(f"| {'case':<58} | {'n':>4} | {'median ms':>9} | {'p90 ms':>7} | {'max ms':>7} | "
          f"{'goal':<15} |")
    print(f"|{'-' * 60}|{'-' * 6}|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 17}|")
    for name, n, med, p90, mx, goal, verdict in rows:
        print(f"| {name:<58} | {n:>4} | {med:>9.1f} | {p90:>7.1f} | {mx:>7.1f} | "
              f"{goal:<15} | {verdict}")
    return 0 if all(r[-1] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
