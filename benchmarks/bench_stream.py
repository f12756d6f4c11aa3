"""Streaming cost of `%%gemini` vs. iterating the raw google-genai stream, side by side.

    python benchmarks/bench_stream.py [--words 20000]

The echo server runs in a child process, so the CPU time measured here is the client's alone.
Rows:
- magic: `%%gemini /words N` in a real InteractiveShell (display captured, as in a notebook):
  request, fast SSE path, accumulator, throttled Markdown display, result object;
- SDK iterator: `for event in client.interactions.create(..., stream=True)` and nothing else
  (google-genai 3.4 builds a pydantic model class per event).
Display traffic: display messages, their rate and their bytes (JSON of the data bundles)
relative to the final answer. Goals: CPU ratio <= 0.1, <= 20 messages/s, bytes <= 4x text.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVER_CODE = (
    "import sys\n"
    "from gemini_magics.server import start_server\n"
    "srv = start_server(engine='echo')\n"
    "print(srv.base_url, flush=True)\n"
    "sys.stdin.read()\n"
    "srv.stop()\n"
)


def start_echo_server():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", SERVER_CODE], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline().strip()
    if not line.startswith("http"):
        proc.kill()
        raise SystemExit("The echo server did not start.")
    return proc, line


def stop(proc):
    try:
        proc.stdin.close()
        proc.wait(timeout=20)
    except Exception:  # noqa: BLE001
        proc.kill()


def bench_magic(base_url: str, words: int) -> dict:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "gemini_magics")
    m = ip.magics_manager.registry["GeminiMagics"]
    m.base_url = base_url
    m.retries = 0
    with capture_output():
        ip.run_cell("%%gemini\nwarm up")  # imports google.genai and builds the client once
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with capture_output() as cap:
        res = ip.run_cell(f"%%gemini --new -o r\n/words {words}")
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if res.error_in_exec:
        raise SystemExit(f"magic failed: {res.error_in_exec}")
    r = ip.user_ns["r"]
    assert len(r.text.split()) == words, "incomplete answer"
    sizes = [len(json.dumps(o.data)) for o in cap.outputs]
    return {"cpu": cpu, "wall": wall, "messages": len(sizes), "bytes": sum(sizes),
            "text": len(r.answer)}


def bench_sdk(base_url: str, words: int) -> dict:
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="bench", http_options=types.HttpOptions(
        base_url=base_url, retry_options=types.HttpRetryOptions(attempts=1)))
    for _ in client.interactions.create(model="gemini-3.5-flash", input="warm up", stream=True):
        pass
    cpu0, wall0 = time.process_time(), time.perf_counter()
    n = 0
    for _ in client.interactions.create(model="gemini-3.5-flash", input=f"/words {words}",
                                        stream=True):
        n += 1
    return {"cpu": time.process_time() - cpu0, "wall": time.perf_counter() - wall0, "events": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=int, default=20000, help="deltas to stream (default 20000)")
    args = ap.parse_args()
    os.environ.pop("GEMINI_API_KEY", None)
    os.environ.pop("GOOGLE_API_KEY", None)
    proc, base_url = start_echo_server()
    try:
        magic = bench_magic(base_url, args.words)
        sdk = bench_sdk(base_url, args.words)
    finally:
        stop(proc)
    ratio = magic["cpu"] / sdk["cpu"] if sdk["cpu"] else float("nan")
    rate = magic["messages"] / magic["wall"] if magic["wall"] else float("nan")
    per_text = magic["bytes"] / magic["text"] if magic["text"] else float("nan")
    print(f"Streaming {args.words} deltas (echo server in a child process; client CPU only)\n")
    print(f"{'path':<34}{'CPU s':>10}{'wall s':>10}{'CPU/delta':>12}")
    print(f"{'%%gemini (fast SSE + display)':<34}{magic['cpu']:>10.2f}{magic['wall']:>10.2f}"
          f"{magic['cpu'] / args.words * 1e6:>10.0f}µs")
    print(f"{'raw SDK stream iterator':<34}{sdk['cpu']:>10.2f}{sdk['wall']:>10.2f}"
          f"{sdk['cpu'] / args.words * 1e6:>10.0f}µs")
    print()
    print(f"{'measure':<40}{'value':>12}{'goal':>10}")
    print(f"{'CPU magic / CPU SDK iterator':<40}{ratio:>12.3f}{'<= 0.1':>10}")
    print(f"{'display messages':<40}{magic['messages']:>12d}")
    print(f"{'display messages per second':<40}{rate:>12.1f}{'<= 20':>10}")
    print(f"{'display bytes':<40}{magic['bytes']:>12d}")
    print(f"{'display bytes / answer length':<40}{per_text:>12.2f}{'<= 4':>10}")
    print(f"{'answer length (chars)':<40}{magic['text']:>12d}")


if __name__ == "__main__":
    main()
