"""Server benchmark: SSE events/s of the echo engine, and 200 concurrent streams checked for loss.

    python benchmarks/bench_server.py [--words 20000] [--sdk-words 2000] [--streams 200]

The server runs as a child process (`python -m gemini_magics serve --engine echo`), as a user
runs it, so the client's parsing does not share a GIL with it. Rows:
- raw httpx: one `/words N` stream read line by line and JSON-decoded (the server's ceiling);
- google-genai SDK: the same kind of stream through `client.interactions.create(stream=True)`,
  which builds a pydantic model per event (~1.7 ms each here), so it is far slower;
- N concurrent raw streams at once: every stream must get every event, in order, once.
Echo-engine figures only; the local engine's tokens/s is measured by bench_local_engine.py.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def start_server() -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "gemini_magics", "serve", "--engine", "echo",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env, cwd=ROOT)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        return proc, lines.get(timeout=60).strip()
    except queue.Empty:
        proc.kill()
        raise SystemExit("the server did not start within 60 s")


def raw_stream(url: str, words: int) -> tuple[int, float]:
    body = {"model": "bench", "input": f"/words {words}", "stream": True}
    n = 0
    t0 = time.perf_counter()
    with httpx.Client(timeout=120) as c, c.stream("POST", url + "/v1/interactions", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                json.loads(line[6:])
                n += 1
    return n, time.perf_counter() - t0


def sdk_stream(url: str, words: int) -> tuple[int, float]:
    from google import genai

    client = genai.Client(api_key="dummy", http_options={"base_url": url})
    t0 = time.perf_counter()
    n = sum(1 for _ in client.interactions.create(model="bench", input=f"/words {words}",
                                                  stream=True))
    return n, time.perf_counter() - t0


async def _checked_stream(c: httpx.AsyncClient, words: int) -> tuple[int, bool]:
    body = {"model": "bench", "input": f"/words {words}", "stream": True}
    ids, texts = [], []
    async with c.stream("POST", "/v1/interactions", json=body) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                ev = json.loads(line[6:])
                ids.append(int(ev["event_id"]))
                if ev["event_type"] == "step.delta" and ev["delta"]["type"] == "text":
                    texts.append(ev["delta"]["text"])
    ok = (ids == list(range(1, len(ids) + 1))
          and "".join(texts) == " ".join(f"w{i}" for i in range(1, words + 1))
          and ids and len(ids) == words + 8)
    return len(ids), ok


def concurrent_streams(url: str, streams: int, words: int) -> tuple[int, int, float]:
    async def run():
        limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as c:
            return await asyncio.gather(*(_checked_stream(c, words) for _ in range(streams)))

    t0 = time.perf_counter()
    results = asyncio.run(run())
    elapsed = time.perf_counter() - t0
    return sum(n for n, _ in results), sum(1 for _, ok in results if not ok), elapsed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--words", type=int, default=20000, help="words in the raw stream")
    p.add_argument("--sdk-words", type=int, default=2000, help="words in the SDK stream")
    p.add_argument("--streams", type=int, default=200, help="concurrent streams")
    p.add_argument("--stream-words", type=int, default=100, help="words per concurrent stream")
    args = p.parse_args(argv)

    proc, url = start_server()
    try:
        raw_stream(url, 100)  # warm up
        rows = []
        n, dt = raw_stream(url, args.words)
        rows.append((f"raw httpx, 1 stream of {args.words} words", n, dt, ""))
        n, dt = sdk_stream(url, args.sdk_words)
        rows.append((f"google-genai SDK, 1 stream of {args.sdk_words} words", n, dt, ""))
        n, lost, dt = concurrent_streams(url, args.streams, args.stream_words)
        verdict = "all complete, in order" if lost == 0 else f"{lost} streams lost/reordered"
        rows.append((f"raw httpx, {args.streams} concurrent streams x {args.stream_words} words",
                     n, dt, verdict))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()

    print(f"\nLocal server, echo engine ({os.cpu_count()} cores)\n")
    print(f"| {'case':<52} | {'events':>7} | {'seconds':>7} | {'events/s':>8} | check")
    print(f"|{'-' * 54}|{'-' * 9}|{'-' * 9}|{'-' * 10}|{'-' * 24}")
    for name, n, dt, check in rows:
        print(f"| {name:<52} | {n:>7} | {dt:>7.2f} | {n / dt:>8.0f} | {check}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
