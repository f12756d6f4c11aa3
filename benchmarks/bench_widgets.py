"""Widget traffic of a fast stream: the `%%gemini --ui` live view and the `%gemini ui` panel.

    python benchmarks/bench_widgets.py [--words 20000]

The echo server (in a child process) streams `/words N`: N one-word deltas, as fast as it can.
Each row counts the widget state messages (`Widget._send` calls, i.e. comm messages to the
frontend) and their bytes while the answer streams, their rate over the whole stream and in the
busiest one-second window, and checks that the text written out at the end is complete.
Goal: at most 20 widget messages a second, whatever the delta rate; the whole text at the end.
The last row is what updating the widget on every delta would send, for comparison.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_stream import start_echo_server, stop  # noqa: E402

GOAL_PER_S = 20
TIMEOUT_S = 600


class Traffic:
    """Counts widget comm messages (and their JSON bytes) while installed."""

    def __init__(self):
        import ipywidgets

        self.times: list = []
        self.bytes = 0
        self._cls = ipywidgets.Widget
        self._orig = ipywidgets.Widget._send
        traffic = self

        def counting(widget, msg, buffers=None):
            traffic.times.append(time.monotonic())
            traffic.bytes += len(json.dumps(msg, default=str))
            return traffic._orig(widget, msg, buffers)

        self._cls._send = counting

    def close(self):
        self._cls._send = self._orig

    def busiest_second(self) -> int:
        best, j = 0, 0
        for i, t in enumerate(self.times):
            while self.times[j] < t - 1.0:
                j += 1
            best = max(best, i - j + 1)
        return best


def shell_for(base_url: str):
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    if "GeminiMagics" not in ip.magics_manager.registry:
        ip.run_line_magic("load_ext", "gemini_magics")
    m = ip.magics_manager.registry["GeminiMagics"]
    m.base_url = base_url
    m.retries = 0
    return ip, m


def keep_outputs(ip) -> dict:
    """The last bundle published under each display id (the live view writes its answer from
    its own thread, after the cell has returned, through the shell's display publisher)."""
    saved: dict = {}

    def publish(data, *args, **kwargs):
        did = (kwargs.get("transient") or {}).get("display_id")
        if did is not None:
            saved[did] = data

    ip.display_pub.publish = publish
    return saved


def expected_text(words: int) -> str:
    return " ".join(f"w{i}" for i in range(1, words + 1))


def bench_live_view(base_url: str, words: int) -> dict:
    from IPython.utils.capture import capture_output

    ip, m = shell_for(base_url)
    saved = keep_outputs(ip)
    m.conversation.reset()
    traffic = Traffic()
    try:
        start = time.monotonic()
        with capture_output():
            ip.run_cell(f"%%gemini --ui\n/words {words}")
        view = ip.user_ns["_gemini_live"]
        result = view.wait(TIMEOUT_S)
        span = time.monotonic() - start
    finally:
        traffic.close()
    text = saved[view.display_id]["text/plain"]
    complete = result is not None and result.ok and text.startswith(expected_text(words))
    return row("%%gemini --ui live view", words, span, traffic, complete)


def bench_panel(base_url: str, words: int) -> dict:
    from IPython.utils.capture import capture_output

    from gemini_magics import widgets

    ip, m = shell_for(base_url)
    saved: dict = {}
    m.conversation.reset()
    with capture_output():
        panel = widgets.show_panel(m, publish=lambda data, did, update: saved.__setitem__(did, data))
    traffic = Traffic()
    try:
        start = time.monotonic()
        panel.prompt.value = f"/words {words}"
        panel.send_button.click()
        result = panel.wait(TIMEOUT_S)
        span = time.monotonic() - start
    finally:
        traffic.close()
    transcript = saved[panel.transcript_id]["text/plain"]
    complete = (result is not None and result.ok
                and expected_text(words) in transcript
                and result.answer == expected_text(words))
    panel.close()
    return row("%gemini ui panel", words, span, traffic, complete)


def row(name: str, words: int, span: float, traffic: Traffic, complete: bool) -> dict:
    n = len(traffic.times)
    return {"name": name, "deltas": words, "seconds": span, "messages": n,
            "per_s": n / span if span else float("nan"), "busiest": traffic.busiest_second(),
            "kb": traffic.bytes / 1024, "complete": complete}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--words", type=int, default=20000)
    opts = parser.parse_args()
    proc, base_url = start_echo_server()
    try:
        rows = [bench_live_view(base_url, opts.words), bench_panel(base_url, opts.words)]
    finally:
        stop(proc)
    head = (f"{'view':<26} {'deltas':>7} {'seconds':>8} {'widget msgs':>11} {'msgs/s':>7} "
            f"{'busiest 1 s':>11} {'KB sent':>8} {'text complete':>13}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['name']:<26} {r['deltas']:>7} {r['seconds']:>8.2f} {r['messages']:>11} "
              f"{r['per_s']:>7.1f} {r['busiest']:>11} {r['kb']:>8.0f} {str(r['complete']):>13}")
    naive = rows[0]
    print(f"{'(update on every delta)':<26} {opts.words:>7} {naive['seconds']:>8.2f} "
          f"{opts.words:>11} {opts.words / naive['seconds']:>7.0f} {'':>11} {'':>8} {'':>13}")
    ok = all(r["complete"] and r["busiest"] <= GOAL_PER_S for r in rows)
    print(f"\ngoal: <= {GOAL_PER_S} widget messages in any second, whole text at the end: "
          f"{'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
