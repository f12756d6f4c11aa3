"""`%load_ext gemini_magics` time vs. `import google.genai`, each in fresh subprocesses.

    python benchmarks/bench_load.py [--runs 5]

Each run is a new interpreter, so nothing is cached in memory (the OS file cache is warm after
the first run, for both). The load is timed after IPython and a shell already exist, which is
the situation in a notebook; the import is timed on its own. Goal: load <= 0.1x import.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOAD = (
    "import time\n"
    "from IPython.core.interactiveshell import InteractiveShell\n"
    "ip = InteractiveShell.instance()\n"
    "t = time.perf_counter()\n"
    "ip.run_line_magic('load_ext', 'gemini_magics')\n"
    "dt = time.perf_counter() - t\n"
    "import sys\n"
    "assert not any(m.startswith('google.genai') for m in sys.modules)\n"
    "print(dt)\n"
)
IMPORT = (
    "import time\n"
    "t = time.perf_counter()\n"
    "import google.genai\n"
    "print(time.perf_counter() - t)\n"
)


def timed(code: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    timed(LOAD), timed(IMPORT)  # warm the OS file cache for both
    loads = [timed(LOAD) for _ in range(args.runs)]
    imports = [timed(IMPORT) for _ in range(args.runs)]
    load, imp = statistics.median(loads), statistics.median(imports)
    print(f"Median of {args.runs} fresh subprocesses each\n")
    print(f"{'step':<36}{'median ms':>12}{'min ms':>10}{'max ms':>10}")
    print(f"{'%load_ext gemini_magics':<36}{load * 1e3:>12.1f}{min(loads) * 1e3:>10.1f}{max(loads) * 1e3:>10.1f}")
    print(f"{'import google.genai':<36}{imp * 1e3:>12.1f}{min(imports) * 1e3:>10.1f}{max(imports) * 1e3:>10.1f}")
    print(f"\n{'load / import':<36}{load / imp:>12.3f}{'goal <= 0.1':>20}")


if __name__ == "__main__":
    main()
