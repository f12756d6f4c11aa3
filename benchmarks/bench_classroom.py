"""A class at once: 100 students (keys) streaming short answers while the teacher's console polls.

    python benchmarks/bench_classroom.py [--students 100] [--streams 5] [--words 20]

`gemini-magics serve --engine echo --keys FILE --teacher-key-env VAR` runs as its own process;
the students run in another (one asyncio loop, one connection each, every stream a real SSE
`POST /v1beta/interactions?alt=sse` with its own key); this process is the teacher, polling
`GET /teacher/api/usage` every 0.1 s while they stream. So neither side's load skews the
other's timing. An answer is lost if its stream fails, ends without `interaction.completed`,
or misses one of its words. Goals: 0 lost answers, console p95 < 100 ms; the console's token
total must equal what the students were told they used.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TEACHER_ENV = "GM_BENCH_TEACHER_KEY"
POLL_EVERY_S = 0.1
_WORD = re.compile(rb"\bw(\d+)\b")


# -- the students (a child process) ------------------------------------------------------------

async def _student(client: httpx.AsyncClient, key: str, streams: int, words: int,
                   delay: float) -> tuple[int, int, int]:
    """(answers complete, answers lost, tokens the server reported)."""
    ok = lost = tokens = 0
    body = {"model": "m", "input": f"/words {words} delay={delay}"}
    for _ in range(streams):
        try:
            raw = b""
            async with client.stream("POST", "/v1beta/interactions", params={"alt": "sse"},
                                     json=body, headers={"x-goog-api-key": key}) as r:
                async for chunk in r.aiter_bytes():
                    raw += chunk
            seen = {int(n) for n in _WORD.findall(raw)}
            complete = (r.status_code == 200 and b"interaction.completed" in raw
                        and seen == set(range(1, words + 1)))
            if complete:
                last = [json.loads(line[6:]) for line in raw.split(b"\n")
                        if line.startswith(b"data: {")][-1]
                tokens += last["interaction"]["usage"]["total_tokens"]
            ok, lost = ok + complete, lost + (not complete)
        except httpx.HTTPError:
            lost += 1
    return ok, lost, tokens


async def _students(url: str, keys: list[str], streams: int, words: int, delay: float) -> dict:
    limits = httpx.Limits(max_connections=len(keys) + 10)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        done = await asyncio.gather(*(_student(client, k, streams, words, delay) for k in keys))
        wall = time.perf_counter() - t0
    return {"ok": sum(d[0] for d in done), "lost": sum(d[1] for d in done),
            "tokens": sum(d[2] for d in done), "wall": wall}


def students_main(args) -> None:
    keys = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(_students(args.url, keys, args.streams, args.words,
                                           args.delay))), flush=True)


# -- the server, and the teacher (this process) ------------------------------------------------

def _serve(keys_file: str, teacher: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{TEACHER_ENV: teacher})
    proc = subprocess.Popen([sys.executable, "-m", "gemini_magics", "serve", "--engine", "echo",
                             "--port", "0", "--keys", keys_file, "--teacher-key-env",
                             TEACHER_ENV], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env, cwd=ROOT)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        return proc, lines.get(timeout=60).strip()
    except queue.Empty:
        proc.kill()
        raise SystemExit("the server printed no URL within 60 s")


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=100)
    ap.add_argument("--streams", type=int, default=5, help="streams per student, one at a time")
    ap.add_argument("--words", type=int, default=20, help="words per answer")
    ap.add_argument("--delay", type=float, default=0.02, help="seconds per word")
    ap.add_argument("--students-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.students_worker:
        students_main(args)
        return

    keys = {f"s{i:03d}": secrets.token_urlsafe(24) for i in range(args.students)}
    teacher = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp:
        keys_file = os.path.join(tmp, "keys.txt")
        with open(keys_file, "w") as f:
            f.writelines(f"{label}: {key}\n" for label, key in keys.items())
        server, url = _serve(keys_file, teacher)
        try:
            worker = subprocess.Popen(
                [sys.executable, __file__, "--students-worker", "--url", url,
                 "--streams", str(args.streams), "--words", str(args.words),
                 "--delay", str(args.delay)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
            worker.stdin.write(json.dumps(list(keys.values())))
            worker.stdin.close()
            latencies, answering_seen = [], 0
            with httpx.Client(base_url=url, headers={"x-goog-api-key": teacher},
                              timeout=10) as console:
                while worker.poll() is None:
                    t0 = time.perf_counter()
                    r = console.get("/teacher/api/usage")
                    latencies.append(time.perf_counter() - t0)
                    r.raise_for_status()
                    answering_seen = max(answering_seen,
                                         sum(bool(s["answering"]) for s in r.json()["students"]))
                    time.sleep(POLL_EVERY_S)
                result = json.loads(worker.stdout.read())
                final = console.get("/teacher/api/usage").json()["students"]
        finally:
            server.terminate()
            server.wait(30)
    total = args.students * args.streams
    counted = sum(s["tokens"] for s in final)
    p50, p95 = _percentile(latencies, 50) * 1e3, _percentile(latencies, 95) * 1e3
    print(f"{args.students} students x {args.streams} streams of {args.words} words "
          f"({args.delay:g} s a word), echo engine, {os.cpu_count()} CPUs\n")
    rows = [("answers", f"{total}", ""),
            ("answers complete", f"{result['ok']}", ""),
            ("answers lost", f"{result['lost']}", "goal 0"),
            ("wall time", f"{result['wall']:.1f} s", ""),
            ("answers per second", f"{result['ok'] / result['wall']:.0f}", ""),
            ("most students answering at once", f"{answering_seen}", "seen by the console"),
            ("console polls", f"{len(latencies)}", f"every {POLL_EVERY_S:g} s"),
            ("console latency p50", f"{p50:.1f} ms", ""),
            ("console latency p95", f"{p95:.1f} ms", "goal < 100 ms"),
            ("console latency max", f"{max(latencies) * 1e3:.1f} ms", ""),
            ("tokens: console / students told", f"{counted} / {result['tokens']}",
             "goal equal")]
    print(f"{'measure':<34}{'value':>16}   note")
    for name, value, note in rows:
        print(f"{name:<34}{value:>16}   {note}")
    ok = result["lost"] == 0 and p95 < 100 and counted == result["tokens"]
    print("\nall goals met" if ok else "\nGOAL MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
