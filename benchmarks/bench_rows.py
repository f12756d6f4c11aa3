"""`gemini_magics.map` over many rows: wall time against the ideal and a plain-httpx baseline,
client CPU, the cached re-run.

    python benchmarks/bench_rows.py [--rows 1000] [--delay 0.05] [--concurrency 16] [--rps 0]
                                    [--repeat 1]

The server is a child process (`python -m gemini_magics serve --engine echo`) whose echo engine
waits `--delay` seconds per request (GEMINI_MAGICS_ECHO="delay=..."), so the ideal wall time is
rows x delay / concurrency; `--rps N` also limits it to N requests a second (429 + Retry-After
beyond), to measure the backoff. CPU is this process's (the client: SDK, threads, cache), per
row. The cached re-run sends nothing and reads every row from the SQLite cache. The baseline,
measured in the same run against the same server: the same rows posted with plain httpx on 16
threads and read with our SSE reader (what the rows would cost without the SDK's request
building, which makes pydantic models on every create() call).
"""
from __future__ import annotations

import argparse
import os
from concurrent.futures import ThreadPoolExecutor
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def raw_rows(url: str, rows: list, concurrency: int) -> tuple:
    """(wall, CPU) of the same rows without the SDK: httpx POSTs, our SSE reader."""
    import httpx

    from gemini_magics.stream import Accumulator, iter_sse_events

    limits = httpx.Limits(max_connections=concurrency * 2)
    with httpx.Client(base_url=url, timeout=60, limits=limits) as c:
        def one(text: str) -> str:
            body = {"model": "bench", "input": text, "store": False, "stream": True}
            with c.stream("POST", "/v1beta/interactions?alt=sse", json=body,
                          headers={"x-goog-api-key": "bench"}) as r:
                acc = Accumulator()
                for event in iter_sse_events(r.iter_lines()):
                    acc.feed(event)
            return acc.text

        one("warm up")
        c0, t0 = time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, [f"Echo {r}" for r in rows]))
        return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--delay", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rps", type=float, default=0)
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of ours and the baseline, interleaved; the best of each is shown")
    args = ap.parse_args()
    knobs = f"delay={args.delay}" + (f" rps={args.rps}" if args.rps else "")
    os.environ["GEMINI_MAGICS_ECHO"] = knobs
    os.environ["GEMINI_MAGICS_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-rows-")
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        os.environ.pop(var, None)
    from bench_server import start_server  # the same child-process echo server

    proc, url = start_server()
    ours, raw, failed = [], [], 0
    try:
        import gemini_magics

        gemini_magics.map("{item}", ["warm up"], base_url=url, retries=0, progress=False,
                          cache=False)
        opts = dict(base_url=url, retries=0, progress=False, concurrency=args.concurrency)
        for k in range(args.repeat):
            rows = [f"row {k} {i}" for i in range(args.rows)]  # new rows: nothing cached
            c0, t0 = time.process_time(), time.perf_counter()
            out = gemini_magics.map("Echo {item}", rows, **opts)
            ours.append((time.perf_counter() - t0, time.process_time() - c0))
            failed += sum(1 for r in out if not r.ok)
            if not args.rps:  # the baseline does not wait out 429s: only without a rate limit
                raw.append(raw_rows(url, rows, args.concurrency))
        c1, t1 = time.process_time(), time.perf_counter()
        again = gemini_magics.map("Echo {item}", rows, **opts)
        cached_wall, cached_cpu = time.perf_counter() - t1, time.process_time() - c1
        assert [r.text for r in again] == [r.text for r in out]
    finally:
        proc.kill()
    ideal = max(args.rows * args.delay / args.concurrency,
                (args.rows - args.rps) / args.rps if args.rps else 0)
    n = args.rows
    print(f"{n} rows, echo {knobs}, concurrency {args.concurrency}, best of {args.repeat}; "
          f"{failed} failed")
    print(f"{'':<40} {'wall':>8} {'x ideal':>8} {'CPU/row':>9}")
    print(f"{'ideal (rows x delay / concurrency)':<40} {ideal:>7.2f}s {1:>8.2f} {'':>9}")
    wall, cpu = min(ours)[0], min(c for _, c in ours)
    print(f"{'ours: gemini_magics.map':<40} {wall:>7.2f}s {wall / ideal:>8.2f} "
          f"{cpu / n * 1000:>7.2f}ms")
    if raw:
        raw_wall, raw_cpu = min(raw)[0], min(c for _, c in raw)
        print(f"{'baseline: httpx + our SSE reader':<40} {raw_wall:>7.2f}s "
              f"{raw_wall / ideal:>8.2f} {raw_cpu / n * 1000:>7.2f}ms")
        print(f"ours / baseline: wall {wall / raw_wall:.2f}x, CPU {cpu / raw_cpu:.2f}x; "
              f"goal: <= 1.15x ideal and <= 1 ms CPU a row")
    else:  # the baseline would not wait out the 429s
        print(f"ideal with --rps: rows beyond the first second at {args.rps:g}/s")
    print(f"{'cached re-run':<40} {cached_wall:>7.3f}s {'':>8} "
          f"{cached_cpu / n * 1e6:>6.0f} us")


if __name__ == "__main__":
    main()
