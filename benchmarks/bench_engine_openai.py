"""Our server on `--engine openai` vs the same llama.cpp server called directly, and memory.

    python benchmarks/bench_engine_openai.py [--tokens 48] [--clients 1 4 8] [--memory]

One llama.cpp server (xllamacpp's own OpenAI-compatible HTTP server, SmolLM2-135M, one slot)
runs as its own process; `gemini-magics serve --engine openai` runs in front of it as another.
For 1, 4 and 8 concurrent clients, each asking for exactly `--tokens` tokens (greedy, fixed
seed, `ignore_eos` so every answer is as long), rows side by side in one run:
- direct: streaming `/v1/chat/completions` on the engine;
- ours: streaming `interactions.create` on our server, sent by the google-genai SDK and read by
  our SSE reader (as `%%gemini` reads it);
aggregate tokens/s (goal: ours >= 0.9x direct) and p95 time to first token.
`--memory`: RSS of 3 kernels (each after one offline answer) + the shared server, against one
kernel with the embedded server (today's in-process mode).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-engine-key"
LLAMA = textwrap.dedent("""
    import sys, xllamacpp
    from gemini_magics.server.engines.local import common_params, find_model
    p = common_params(find_model(), int(sys.argv[3]))
    p.port, p.api_keys = int(sys.argv[1]), [sys.argv[2]]
    server = xllamacpp.Server(p)
    print("ready", flush=True)
    sys.stdin.read()
""")
PROMPT = "Write a long story about a lighthouse keeper and the sea."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                                  "")]))


def wait_http(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def direct_once(engine: str, tokens: int) -> tuple[float, float, int]:
    """(seconds to first token, total seconds, tokens) for one streamed chat completion."""
    body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}], "stream": True,
            "max_tokens": tokens, "temperature": 0, "seed": 1, "ignore_eos": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    first, n = None, 0
    with httpx.stream("POST", engine + "/v1/chat/completions", json=body, timeout=300,
                      headers={"Authorization": f"Bearer {KEY}"}) as r:
        for line in r.iter_lines():
            if not line.startswith("data:") or line.endswith("[DONE]"):
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                n = chunk["usage"]["completion_tokens"]
            if first is None and any((c.get("delta") or {}).get("content")
                                     for c in chunk.get("choices") or ()):
                first = time.perf_counter() - t0
    return first or 0.0, time.perf_counter() - t0, n


def ours_once(client, tokens: int) -> tuple[float, float, int]:
    """The same through our server, read as `%%gemini` reads it: the SDK sends the request and
    our SSE reader reads its raw stream (the SDK's own per-event parsing would cost ~1 ms of
    client CPU per token on these 2 cores, which the direct side does not pay)."""
    from gemini_magics.stream import iter_sse_events

    t0 = time.perf_counter()
    first, n = None, 0
    stream = client.interactions.create(model="m", input=PROMPT, stream=True, generation_config={
        "max_output_tokens": tokens, "temperature": 0, "seed": 1})
    try:
        for e in iter_sse_events(stream.response.iter_lines()):
            if first is None and e.get("event_type") == "step.delta":
                first = time.perf_counter() - t0
            if e.get("event_type") == "interaction.completed":
                n = (e["interaction"].get("usage") or {}).get("total_output_tokens") or 0
    finally:
        stream.close()
    return first or 0.0, time.perf_counter() - t0, n


def concurrent(fn, clients: int, rounds: int) -> tuple[float, float]:
    """(aggregate tokens/s, p95 seconds to first token) with `clients` threads."""
    results: list = []
    lock = threading.Lock()

    def worker():
        for _ in range(rounds):
            r = fn()
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    firsts = sorted(r[0] for r in results)
    p95 = firsts[min(len(firsts) - 1, int(len(firsts) * 0.95))]
    return sum(r[2] for r in results) / wall, p95


def bench_throughput(args) -> None:
    from google import genai

    port, ours_port = free_port(), free_port()
    llama = subprocess.Popen([sys.executable, "-c", LLAMA, str(port), KEY, str(args.threads)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env(), text=True)
    engine = f"http://127.0.0.1:{port}"
    wait_http(engine + "/health")
    srv = subprocess.Popen([sys.executable, "-m", "gemini_magics", "serve", "--engine", "openai",
                            "--engine-url", engine, "--engine-key-env", "BENCH_ENGINE_KEY",
                            "--port", str(ours_port)], env=dict(env(), BENCH_ENGINE_KEY=KEY),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours = f"http://127.0.0.1:{ours_port}"
    wait_http(ours + "/v1beta/interactions/none")
    client = genai.Client(api_key="x", http_options={"base_url": ours})
    try:
        direct_once(engine, 8)
        ours_once(client, 8)  # warm up both paths
        print(f"{args.tokens} tokens per answer, {args.rounds} answers per client, one llama.cpp "
              f"slot, {args.threads} thread(s)")
        print(f"{'clients':>7} | {'direct tok/s':>12} | {'ours tok/s':>10} | {'ratio':>5} | "
              f"{'direct p95 TTFT':>15} | {'ours p95 TTFT':>13}")
        for n in args.clients:
            d_tps, d_p95 = concurrent(lambda: direct_once(engine, args.tokens), n, args.rounds)
            o_tps, o_p95 = concurrent(lambda: ours_once(client, args.tokens), n, args.rounds)
            print(f"{n:>7} | {d_tps:>12.1f} | {o_tps:>10.1f} | {o_tps / d_tps:>5.2f} | "
                  f"{d_p95 * 1000:>12.0f} ms | {o_p95 * 1000:>10.0f} ms")
    finally:
        srv.terminate()
        llama.stdin.close()
        llama.terminate()
        srv.wait(15)
        llama.wait(30)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def kernel_rss(mode: str, count: int, tmp: str) -> tuple[list[float], list[int]]:
    from jupyter_client.manager import start_new_kernel

    os.environ.update({"GEMINI_MAGICS_SERVER": mode, "GEMINI_MAGICS_RUNTIME_DIR": tmp + "/rt",
                       "GEMINI_MAGICS_DATA_DIR": tmp + "/data", "GEMINI_MAGICS_ENGINE": "local"})
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        os.environ.pop(var, None)
    kernels, sizes, pids = [], [], []
    try:
        for _ in range(count):
            km, kc = start_new_kernel(kernel_name="python3")
            kernels.append((km, kc))
            kc.execute_interactive("%load_ext gemini_magics", timeout=300,
                                   output_hook=lambda m: None)
            reply = kc.execute_interactive("%%gemini --max-tokens 5\nSay hi.\n", timeout=300,
                                           output_hook=lambda m: None)
            assert reply["content"]["status"] == "ok", reply["content"]
            pid = km.provisioner.pid if hasattr(km, "provisioner") else km.kernel.pid
            pids.append(pid)
        sizes = [rss_mib(p) for p in pids]
    finally:
        for km, kc in kernels:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    return sizes, pids


def bench_memory() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one, _ = kernel_rss("inprocess", 1, tmp)
        three, _ = kernel_rss("shared", 3, tmp)
        found = list(Path(tmp, "rt").glob("gemini-magics-server-*.json"))
        server_pid = json.loads(found[0].read_text())["pid"] if found else None
        server = rss_mib(server_pid) if server_pid else 0.0
        if server_pid:
            os.kill(server_pid, 15)
    print(f"one kernel, embedded server (in-process): {one[0]:.0f} MiB")
    print(f"three kernels + the shared server: {sum(three):.0f} + {server:.0f} = "
          f"{sum(three) + server:.0f} MiB (kernels {', '.join(f'{s:.0f}' for s in three)})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--memory", action="store_true", help="only the memory rows")
    args = ap.parse_args()
    if args.memory:
        bench_memory()
    else:
        bench_throughput(args)


if __name__ == "__main__":
    main()
