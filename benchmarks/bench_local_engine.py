"""Local engine speed: xllamacpp called directly vs our LocalEngine vs our server over the real SDK.

    python benchmarks/bench_local_engine.py [--tokens 200] [--rounds 5]

Same prompt, max tokens, seed and temperature in every column, all on the one loaded model
(interleaved rounds after a warm-up, medians reported). tokens/s = output tokens / wall time from
the call to the end of the stream, as a user sees it (prompt processing included, prompt cache
warm in every column). The server column runs uvicorn and the google-genai client in this
process, as the magics do. Also prints RSS after the model is loaded, and CPU time per token,
which shows our overhead even when other programs make wall-clock figures noisy.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gemini_magics.server.engines.base import EngineRequest, GenerationParams  # noqa: E402
from gemini_magics.server.engines.local import LocalEngine  # noqa: E402

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
SEED = 7
TEMPERATURE = 0.8


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_direct(server, tokens: int) -> tuple[float, int, str, float]:
    """xllamacpp's own streaming call: the baseline."""
    parts: list[str] = []
    usage: dict = {}
    first = [0.0]
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": tokens,
            "seed": SEED, "temperature": TEMPERATURE, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()

    def on_chunk(data: dict) -> bool:
        for choice in data.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if text:
                if not parts:
                    first[0] = time.perf_counter() - t0
                parts.append(text)
        usage.update(data.get("usage") or {})
        return False

    server.handle_chat_completions(body, on_chunk)
    wall = time.perf_counter() - t0
    return wall, int(usage.get("completion_tokens", len(parts))), "".join(parts), first[0]


def run_engine(engine: LocalEngine, tokens: int) -> tuple[float, int, str, float]:
    first = [0.0]
    seen = [0]
    t0 = time.perf_counter()

    def on_text(chunk: str) -> bool:
        if not seen[0]:
            first[0] = time.perf_counter() - t0
        seen[0] += 1
        return True

    result = engine.generate(EngineRequest(
        model="bench", messages=[{"role": "user", "content": PROMPT}],
        params=GenerationParams(max_output_tokens=tokens, seed=SEED, temperature=TEMPERATURE)),
        on_text)
    return time.perf_counter() - t0, result.output_tokens, result.text, first[0]


def run_server(client, tokens: int) -> tuple[float, int, str, float]:
    parts: list[str] = []
    out_tokens = 0
    first = 0.0
    t0 = time.perf_counter()
    stream = client.interactions.create(
        model="gemini-3.5-flash", input=PROMPT, stream=True,
        generation_config={"max_output_tokens": tokens, "seed": SEED, "temperature": TEMPERATURE})
    for event in stream:
        kind = getattr(event, "event_type", None)
        if kind == "step.delta":
            text = getattr(event.delta, "text", None)
            if text:
                if not parts:
                    first = time.perf_counter() - t0
                parts.append(text)
        elif kind == "interaction.completed":
            usage = event.interaction.usage
            out_tokens = (usage.total_output_tokens if usage else 0) or 0
        elif kind == "error":
            raise RuntimeError(f"server error event: {event}")
    return time.perf_counter() - t0, out_tokens, "".join(parts), first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=200, help="max output tokens per call")
    ap.add_argument("--rounds", type=int, default=5, help="measured rounds per column")
    ap.add_argument("--threads", type=int, default=None,
                    help="llama.cpp threads (default: the engine's default)")
    args = ap.parse_args()

    rss0 = rss_mb()
    t = time.perf_counter()
    engine = LocalEngine(n_threads=args.threads)
    raw = engine.load()
    load_s = time.perf_counter() - t
    rss_loaded = rss_mb()

    columns = {"xllamacpp direct": lambda: run_direct(raw, args.tokens),
               "LocalEngine.generate": lambda: run_engine(engine, args.tokens)}
    srv = None
    try:
        from gemini_magics.server import start_server
        from google import genai
        from google.genai import types

        srv = start_server(engine=engine)
        client = genai.Client(api_key="bench-dummy-key",
                              http_options=types.HttpOptions(base_url=srv.base_url))
        columns["server + google-genai SSE"] = lambda: run_server(client, args.tokens)
    except ImportError as e:
        print(f"(server column skipped: {e})")

    try:
        for run in columns.values():  # warm-up: prompt cache, SDK imports, first connection
            run()
        samples: dict[str, list] = {name: [] for name in columns}
        for _ in range(args.rounds):
            for name, run in columns.items():
                cpu0 = time.process_time()
                sample = run()
                samples[name].append(sample + (time.process_time() - cpu0,))
    finally:
        if srv is not None:
            srv.stop()

    base = statistics.median(s[1] / s[0] for s in samples["xllamacpp direct"])
    texts = {name: {s[2] for s in runs} for name, runs in samples.items()}
    print(f"model: {os.path.basename(engine.model_path)}  load {load_s:.2f} s  "
          f"RSS before load {rss0:.0f} MB, after load {rss_loaded:.0f} MB, at end {rss_mb():.0f} MB")
    print(f"prompt: {PROMPT!r}  max tokens {args.tokens}  seed {SEED}  temperature {TEMPERATURE}"
          f"  rounds {args.rounds}  cpus {os.cpu_count()}  threads {args.threads or 'default'}")
    print()
    print(f"{'path':<28}{'out tokens':>11}{'tokens/s':>10}{'vs direct':>11}{'first token':>13}"
          f"{'CPU/token':>12}")
    for name, runs in samples.items():
        rate = statistics.median(s[1] / s[0] for s in runs)
        ttft = statistics.median(s[3] for s in runs)
        toks = statistics.median(s[1] for s in runs)
        cpu = statistics.median(s[4] / max(1, s[1]) for s in runs)
        print(f"{name:<28}{toks:>11.0f}{rate:>10.1f}{rate / base:>10.2f}x{ttft * 1000:>10.0f} ms"
              f"{cpu * 1000:>9.1f} ms")
    print("\n(CPU/token: this process's CPU time over all its threads, per output token; it\n"
          " shows our overhead even when other programs make the wall-clock figures noisy)")
    same = len(set().union(*texts.values())) == 1
    print(f"\nsame text in every run and column (same seed): {'yes' if same else 'NO'}")
    engine.close()


if __name__ == "__main__":
    main()
