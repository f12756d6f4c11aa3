"""What the screen does while `%%gemini` streams: still time, message rate, bytes, CPU.

    python benchmarks/bench_screen.py [--pace 0.02] [--burst 20000] [--before dbeb65c]

Runs `%%gemini /words N delay=S` in a real InteractiveShell (display captured at IPython's own
display publisher, with the time of each message) against the echo server in a child process:
one paragraph of 600 and of 2,000 words at ~50 words/s (delay 0.02 s), and a burst of 20,000
deltas (no delay) for the CPU cost against iterating the raw SDK stream (as bench_stream.py).

Figures, for the current display and, side by side, for the display before this scheme (the
doubling rule: the growing block re-sent once it has doubled), loaded from git at `--before`:
- longest still screen: the longest wait from text arriving (an event that grew the answer)
  to the visible answer changing, up to the last word; goal <= 0.25 s;
- messages/s while streaming (all of them, and the busiest one-second window); goal <= 20;
- the messages written when the answer ended (cut blocks re-joined, footer);
- display bytes (JSON of the data bundles), 2,000 words over 600 words; goal <= 3.6x (linear:
  3.33x the words and the time, 3.77x the characters);
- the largest message re-sent while streaming (Markdown only: the growing block);
- CPU of the 20k-delta burst through %%gemini over the SDK iterator; goal <= 0.1x.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path

from bench_stream import bench_sdk, start_echo_server, stop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def display_before(rev: str):
    """The display module as it was at git revision `rev` (None if git cannot show it)."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:gemini_magics/display.py"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("gemini_magics._display_before")
    module.__package__ = "gemini_magics"
    exec(compile(source, f"{rev}:gemini_magics/display.py", "exec"), module.__dict__)
    return module


class Screen:
    """Display messages with their times, and when the answer ended (on_done)."""

    def __init__(self):
        self.messages = []  # (time, data, display id)
        self.arrivals = []  # when the answer text grew (the display saw an event with text)
        self.done_at = None

    def longest_still(self):
        """The longest wait from text arriving to the screen showing a change."""
        changes = self.visible_changes(self.done_at) + [self.done_at]
        longest, i = 0.0, 0
        for t in changes:
            if i < len(self.arrivals) and self.arrivals[i] < t:
                longest = max(longest, t - self.arrivals[i])
            while i < len(self.arrivals) and self.arrivals[i] <= t:
                i += 1
        return longest

    def busiest_second(self, until):
        times, busiest, j = [m[0] for m in self.messages if m[0] <= until], 0, 0
        for k in range(len(times)):
            while times[k] - times[j] >= 1.0:
                j += 1
            busiest = max(busiest, k - j + 1)
        return busiest

    def visible_changes(self, until):
        shown, changes, before = {}, [], None
        for t, data, display_id in self.messages:
            if t > until:
                break
            shown[display_id] = data.get("text/markdown", "")
            answer = " ".join(v for v in shown.values() if not v.startswith("<details>"))
            answer = re.sub(r"\s+", " ", answer).strip()
            if answer and answer != before:
                changes.append(t)
            before = answer
        return changes


def run_cell(ip, screen, source, display_cls):
    """Run one cell with `display_cls` as the notebook display; (CPU s, wall s, result)."""
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.utils.capture import capture_output
    from gemini_magics import magics

    original_publish = CapturingDisplayPublisher.publish
    original_cls = magics.NotebookDisplay

    def publish(self, data, *args, **kwargs):
        display_id = (kwargs.get("transient") or {}).get("display_id")
        screen.messages.append((time.perf_counter(), dict(data), display_id))
        return original_publish(self, data, *args, **kwargs)

    class Timed(display_cls):
        seen = 0

        def on_update(self, acc):
            if acc.answer_length > self.seen:
                self.seen = acc.answer_length
                screen.arrivals.append(time.perf_counter())
            super().on_update(acc)

        def on_done(self, result):
            screen.done_at = time.perf_counter()
            super().on_done(result)

    CapturingDisplayPublisher.publish = publish
    magics.NotebookDisplay = Timed
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with capture_output():
            res = ip.run_cell(source)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        CapturingDisplayPublisher.publish = original_publish
        magics.NotebookDisplay = original_cls
    if res.error_in_exec:
        raise SystemExit(f"the cell failed: {res.error_in_exec}")
    return cpu, wall, ip.user_ns["r"]


def measure_paragraph(ip, words, pace, display_cls) -> dict:
    screen = Screen()
    _, _, r = run_cell(ip, screen, f"%%gemini --new -o r\n/words {words} delay={pace}", display_cls)
    assert len(r.answer.split()) == words, "incomplete answer"
    first, end = screen.messages[0][0], screen.done_at
    streaming = [m for m in screen.messages if m[0] <= end]
    resent = [len(m[1]["text/markdown"]) for m in streaming if "text/plain" not in m[1]]
    return {"still": screen.longest_still(), "rate": len(streaming) / (end - first),
            "busiest": screen.busiest_second(end),
            "at_end": len(screen.messages) - len(streaming), "messages": len(screen.messages),
            "bytes": sum(len(json.dumps(m[1])) for m in screen.messages),
            "largest": max(resent or [0]), "text": len(r.answer), "seconds": end - first}


def measure_burst(ip, words, display_cls) -> dict:
    screen = Screen()
    cpu, wall, r = run_cell(ip, screen, f"%%gemini --new -o r\n/words {words}", display_cls)
    assert len(r.answer.split()) == words, "incomplete answer"
    return {"cpu": cpu, "wall": wall, "messages": len(screen.messages),
            "busiest": screen.busiest_second(screen.done_at),
            "bytes": sum(len(json.dumps(m[1])) for m in screen.messages), "text": len(r.answer)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pace", type=float, default=0.02, help="seconds per word (default 0.02)")
    ap.add_argument("--burst", type=int, default=20000, help="deltas in the burst (default 20000)")
    ap.add_argument("--before", default="dbeb65c",
                    help="git revision of the display to compare with (default dbeb65c)")
    args = ap.parse_args()
    os.environ.pop("GEMINI_API_KEY", None)
    os.environ.pop("GOOGLE_API_KEY", None)
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from gemini_magics.display import NotebookDisplay

    schemes = [("now", NotebookDisplay)]
    before = display_before(args.before)
    if before is not None:
        schemes.append((f"before ({args.before})", before.NotebookDisplay))
    proc, base_url = start_echo_server()
    try:
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "gemini_magics")
        m = ip.magics_manager.registry["GeminiMagics"]
        m.base_url, m.retries = base_url, 0
        with capture_output():
            ip.run_cell("%%gemini\nwarm up")  # imports google.genai and builds the client once
        rows = {}
        for name, cls in schemes:
            rows[name] = {"p600": measure_paragraph(ip, 600, args.pace, cls),
                          "p2000": measure_paragraph(ip, 2000, args.pace, cls),
                          "burst": measure_burst(ip, args.burst, cls)}
        sdk = bench_sdk(base_url, args.burst)
    finally:
        stop(proc)

    names = list(rows)
    print(f"One paragraph at {1 / args.pace:.0f} words/s, and a {args.burst}-delta burst "
          f"(echo server in a child process)\n")
    print(f"{'measure':<52}" + "".join(f"{n:>18}" for n in names) + f"{'goal':>10}")

    def row(label, fmt, value, goal=""):
        print(f"{label:<52}" + "".join(f"{format(value(rows[n]), fmt):>18}" for n in names)
              + f"{goal:>10}")

    for key, words in (("p600", 600), ("p2000", 2000)):
        row(f"{words} words: longest still screen (s)", ".2f", lambda r: r[key]["still"], "<= 0.25")
        row(f"{words} words: messages/s while streaming", ".1f", lambda r: r[key]["rate"], "<= 20")
        row(f"{words} words: busiest second while streaming", "d", lambda r: r[key]["busiest"],
            "<= 20")
        row(f"{words} words: messages when it ended", "d", lambda r: r[key]["at_end"])
        row(f"{words} words: largest re-send (chars)", "d", lambda r: r[key]["largest"])
        row(f"{words} words: display bytes", "d", lambda r: r[key]["bytes"])
        row(f"{words} words: display bytes / answer chars", ".1f",
            lambda r: r[key]["bytes"] / r[key]["text"])
    row("display bytes, 2000 words / 600 words", ".2f",
        lambda r: r["p2000"]["bytes"] / r["p600"]["bytes"], "<= 3.6")
    row("answer chars, 2000 words / 600 words", ".2f",
        lambda r: r["p2000"]["text"] / r["p600"]["text"])
    row("burst: CPU %%gemini (s)", ".2f", lambda r: r["burst"]["cpu"])
    row(f"burst: CPU %%gemini / CPU SDK iterator ({sdk['cpu']:.1f} s)", ".3f",
        lambda r: r["burst"]["cpu"] / sdk["cpu"], "<= 0.1")
    row("burst: display messages", "d", lambda r: r["burst"]["messages"])
    row("burst: busiest second while streaming", "d", lambda r: r["burst"]["busiest"], "<= 20")
    row("burst: display bytes / answer chars", ".2f",
        lambda r: r["burst"]["bytes"] / r["burst"]["text"], "<= 4")


if __name__ == "__main__":
    main()
