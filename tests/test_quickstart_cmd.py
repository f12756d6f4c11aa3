"""`gemini-magics quickstart`: the README's main command, run as a new user would run it.

- It runs the quickstart headless with the real local model, offline whatever keys or cassettes
  the shell has set, prints one ok line per section and writes the executed copy (slow).
- A failing cell makes its section's line say FAILED with the cell's one sentence, later
  sections still run, the exit status is 1 and the executed copy is still written.
- Bad options end with one sentence on stderr and exit status 2, before any kernel starts.
- `--lab` opens JupyterLab on the notebook, served on loopback (slow).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "notebooks" / "quickstart.ipynb"
FAKE_KEY = "AIza" + "Q" * 35          # shaped like a real key; must never be shown
CMD = [sys.executable, "-m", "gemini_magics", "quickstart"]


def _model_or_skip():
    try:
        from gemini_magics.server.engines.local import find_model

        find_model()
    except (ImportError, OSError, ValueError) as exc:
        pytest.skip(f"no local model: {exc}")


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def _run(args: list, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(CMD + args, env=_env(**env), text=True, capture_output=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the local model on a busy 2-core machine
def test_quickstart_runs_offline_with_the_local_model_and_reports_each_section(tmp_path):
    _model_or_skip()
    notebook = tmp_path / "quickstart.ipynb"
    shutil.copy(QUICKSTART, notebook)  # the kernel writes sample.jpg etc. next to it
    output = tmp_path / "ran.ipynb"
    # A key and a replay cassette in the shell must not change the offline default.
    done = _run(["--notebook", str(notebook), "--output", str(output)], timeout=1500,
                GEMINI_API_KEY=FAKE_KEY, GEMINI_MAGICS_CASSETTE=str(tmp_path / "none.json"),
                GEMINI_MAGICS_RECORD_MODE="replay")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    oks = re.findall(r"^  ok      (\d+)\. ", done.stdout, flags=re.M)
    assert oks == [str(n) for n in range(1, 12)], done.stdout
    assert "FAILED" not in done.stdout
    assert done.stdout.rstrip().endswith(str(output))
    assert "offline" in done.stdout.splitlines()[0]
    assert done.stderr == ""  # the kernel's own warnings stay out of the report
    assert FAKE_KEY not in out

    nb = nbformat.read(output, 4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    saved = output.read_text(encoding="utf-8")
    assert FAKE_KEY not in saved
    # answered live by the local model: the offline notice, not a replay
    assert "answers come from the local offline model" in saved
    assert not (tmp_path / "none.json").exists()
    # the notebook itself is left as it was
    assert nbformat.read(notebook, 4) == nbformat.read(QUICKSTART, 4)


def _broken_notebook(path: Path) -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [
        new_markdown_cell("## 1. Load"), new_code_cell("%load_ext gemini_magics"),
        new_markdown_cell("## 2. A bad option"), new_code_cell("%%gemini --bogus\nHello"),
        new_markdown_cell("Text between cells\n\n## 3. A Python error"), new_code_cell("1 / 0"),
        new_markdown_cell("## 4. Still runs"), new_code_cell("print('after the failures')"),
    ]
    nbformat.write(nb, path)
    return path


def test_failed_cells_are_reported_per_section_and_the_run_goes_on(tmp_path):
    _model_or_skip()
    notebook = _broken_notebook(tmp_path / "broken.ipynb")
    done = _run(["--notebook", str(notebook)], timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("  ok      1. Load")
    assert lines[2] == ("  FAILED  2. A bad option: Unknown option --bogus for %%gemini; run "
                        "%%gemini? to see the options (the prompt goes in the cell below the "
                        "%%gemini line).")
    assert lines[3] == "  FAILED  3. A Python error: ZeroDivisionError: division by zero"
    assert lines[4].startswith("  ok      4. Still runs")
    assert lines[5].startswith("gemini-magics: 2 of 4 sections failed")
    assert "Traceback" not in done.stdout + done.stderr
    written = tmp_path / "broken.out.ipynb"
    assert lines[5].endswith(str(written))
    ran = nbformat.read(written, 4)
    assert ran.cells[-1].outputs[0].text == "after the failures\n"


@pytest.mark.parametrize("args, env, sentence", [
    (["--notebook", "nowhere/missing.ipynb"], {},
     "Notebook 'nowhere/missing.ipynb' not found; check the path"),
    (["--online"], {}, "--online needs GEMINI_API_KEY set in the environment"),
    (["--output", "no-such-folder/out.ipynb"], {},
     "--output folder 'no-such-folder' does not exist; create it or pick another path."),
    (["--timeout", "0"], {}, "--timeout must be a positive number of seconds, not 0."),
    (["--record", "--online"], {"GEMINI_API_KEY": FAKE_KEY},
     "--record always records from the local model"),
    ([], {"GEMINI_MAGICS_MODEL": "/nonexistent/model.gguf"},
     "is not a file"),
])
def test_bad_input_is_one_sentence_and_exit_2(args, env, sentence):
    done = _run(args, **env)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gemini-magics: error: "), done.stderr
    assert sentence in lines[0]
    assert FAKE_KEY not in done.stderr


def test_the_default_notebook_is_the_repositorys_quickstart():
    from gemini_magics.quickstart import QUICKSTART as default

    assert default == QUICKSTART and default.is_file()


def _get_json(req: urllib.request.Request, within: float) -> dict:
    """GET a JSON document; the server prints its URL a moment before it listens."""
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 200
                return json.loads(r.read())
        except urllib.error.URLError as exc:
            if isinstance(exc, urllib.error.HTTPError) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.slow
def test_lab_opens_jupyterlab_on_the_notebook(tmp_path):
    notebook = tmp_path / "quickstart.ipynb"
    shutil.copy(QUICKSTART, notebook)
    env = _env(BROWSER="true", JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               GEMINI_API_KEY=FAKE_KEY)
    proc = subprocess.Popen(CMD + ["--lab", "--notebook", str(notebook)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen = []
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+)/lab\S*\?token=(\w+)", line)
            if m:
                url = m.groups()
        assert url, "".join(seen)
        base, token = url
        req = urllib.request.Request(f"{base}/api/contents/quickstart.ipynb?content=0",
                                     headers={"Authorization": f"token {token}"})
        info = _get_json(req, within=60)
        assert info["name"] == "quickstart.ipynb" and info["type"] == "notebook"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert "offline: answers from the local model" in seen[0]
    assert FAKE_KEY not in "".join(seen)


def test_refresh_rewrites_a_notebooks_outputs_from_its_cassette_without_a_model(tmp_path):
    committed = nbformat.read(QUICKSTART, 4)
    nb = nbformat.read(QUICKSTART, 4)
    nb.cells = nb.cells[:7]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    notebook = tmp_path / "quickstart.ipynb"
    nbformat.write(nb, notebook)
    shutil.copy(QUICKSTART.with_name("quickstart.cassette.json"), tmp_path)

    done = _run(["--refresh", "--notebook", str(notebook)],
                GEMINI_MAGICS_MODEL="/nonexistent/model.gguf")  # proves no model is loaded
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.findall(r"^  ok      (\d+)\. ", done.stdout, flags=re.M) == ["1", "2"]
    refreshed = nbformat.read(notebook, 4)
    first = next(i for i, c in enumerate(refreshed.cells) if c.source.startswith("%%gemini"))
    assert (refreshed.cells[first].outputs[0].data["text/markdown"]
            == committed.cells[first].outputs[0].data["text/markdown"])
