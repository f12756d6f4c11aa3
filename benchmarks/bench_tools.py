"""Cost of the issue-6 features on the client: the function loop, tool steps, background polling.

    python benchmarks/bench_tools.py [--cells 20]

The echo server runs in a child process (so its CPU is not counted here). Rows:
- `--functions` cells (2 model rounds, 1 call each), stateful and stateless, streamed and not:
  wall time and client CPU per cell, against a plain cell for reference.
- `--tools google_search,code_execution` cells: the same, with the display messages per cell
  (tool steps are one output each, plus the answer and footer).
- `--background`: the cell's own wall time (it must return at once), and the poller's CPU per
  poll and updates per second while a 5-second job runs, at the default 1 s poll and at 0.1 s.
Goal: the loop adds well under 100 ms per round on loopback; a background cell returns in
tens of milliseconds; polling costs a few ms of CPU per poll.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_stream import start_echo_server, stop  # noqa: E402

FUNCTIONS = '''
def get_weather(city: str) -> dict:
    """Current weather for a city."""
    return {"city": city, "temp": 21}
'''


def shell(base_url: str):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "gemini_magics")
    m = ip.magics_manager.registry["GeminiMagics"]
    m.base_url = base_url
    m.retries = 0
    ip.run_cell(FUNCTIONS)
    with capture_output():
        ip.run_cell("%%gemini\nwarm up")  # imports google.genai and builds the client once
    return ip, m


def cells(ip, source: str, n: int) -> dict:
    from IPython.utils.capture import capture_output

    outputs = 0
    with capture_output():
        ip.run_cell(source)  # first use: imports (jsonschema, pydantic models) on both sides
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        with capture_output() as cap:
            res = ip.run_cell(source)
        if res.error_in_exec:
            raise SystemExit(f"{source.splitlines()[0]} failed: {res.error_in_exec}")
        outputs += len(cap.outputs)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"wall_ms": 1000 * wall / n, "cpu_ms": 1000 * cpu / n, "outputs": outputs / n}


def bench_background(ip, m, poll: float) -> dict:
    updates = []
    ip.display_pub.publish = lambda data, *args, **kwargs: updates.append(time.monotonic())
    m.poll_interval = poll
    t0 = time.perf_counter()
    ip.run_cell("%%gemini --new --background\n/words 100 delay=0.05")
    returned_ms = 1000 * (time.perf_counter() - t0)
    job = ip.user_ns["_gemini_job"]
    thread = job._thread
    cpu0 = time.process_time()
    job.wait(60)
    thread.join(5)
    cpu = time.process_time() - cpu0
    return {"poll_s": poll, "returned_ms": returned_ms, "polls": job.polls,
            "cpu_ms_per_poll": 1000 * cpu / max(1, job.polls),
            "updates_per_s": len(updates) / max(job.elapsed, 1e-9), "elapsed_s": job.elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=20)
    args = parser.parse_args()
    proc, base_url = start_echo_server()
    try:
        ip, m = shell(base_url)
        rows = [
            ("plain cell", "%%gemini --new\nhello"),
            ("--functions, stateful, stream", "%%gemini --new --functions get_weather\nParis"),
            ("--functions, stateful, no stream",
             "%%gemini --new --functions get_weather --no-stream\nParis"),
            ("--functions, stateless, stream",
             "%%gemini --new --functions get_weather --stateless\nParis"),
            ("--tools search+code, stream",
             "%%gemini --new --tools google_search,code_execution\nWhat is 6*7?"),
        ]
        print(f"{'cells of ' + str(args.cells):<36}{'wall ms':>10}{'client CPU ms':>15}{'outputs':>9}")
        for label, source in rows:
            r = cells(ip, source, args.cells)
            print(f"{label:<36}{r['wall_ms']:>10.1f}{r['cpu_ms']:>15.1f}{r['outputs']:>9.1f}")
        print()
        print(f"{'background, 5 s job':<22}{'poll s':>8}{'cell ms':>9}{'polls':>7}"
              f"{'CPU ms/poll':>13}{'updates/s':>11}")
        for poll in (1.0, 0.1):
            b = bench_background(ip, m, poll)
            print(f"{'':<22}{b['poll_s']:>8.1f}{b['returned_ms']:>9.1f}{b['polls']:>7}"
                  f"{b['cpu_ms_per_poll']:>13.2f}{b['updates_per_s']:>11.1f}")
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
