"""The notebooks in CI: nbval replays each one from its cassette and compares every output.

- The nbval command below (the one the README and .ci/run use) passes on both notebooks,
  answered from the committed cassettes with no key, no network and no model.
- nbval really compares: a changed answer in a saved notebook fails it, and a prompt its
  cassette does not hold fails with the replay's one sentence on how to re-record.
- A cassette recorded from the local server replays the quickstart with identical outputs
  (slow: it records with the real local model).
- The committed notebooks are what people read on GitHub: every quickstart section, run, no
  errors, and each cell nbval does not compare says why in its metadata.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SANITIZE = NOTEBOOKS / "nbval_sanitize.cfg"
# The exact invocation (run from the repository root).
NBVAL_ARGS = ["-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval", "--nbval-current-env",
              "--nbval-sanitize-with", "notebooks/nbval_sanitize.cfg", "notebooks/"]
NBVAL_TIMEOUT = 600


def _env(**extra: str) -> dict:
    """This environment, minus anything that could reach a real backend; a model path that
    does not exist, so a replay that tried to start the local model would fail loudly."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL",
                        "GEMINI_MAGICS_CASSETTE", "GEMINI_MAGICS_RECORD_MODE")}
    env["GEMINI_MAGICS_MODEL"] = str(ROOT / "no-such-model.gguf")
    env.update(extra)
    return env


def _nbval(args: list, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(**env), text=True,
                          capture_output=True, timeout=NBVAL_TIMEOUT)


@pytest.mark.timeout(NBVAL_TIMEOUT + 60)
def test_nbval_replays_the_notebooks_with_identical_outputs():
    done = _nbval(NBVAL_ARGS, ROOT)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    code_cells = sum(1 for name in ("quickstart", "teaching", "rows")
                     for c in nbformat.read(NOTEBOOKS / f"{name}.ipynb", 4).cells
                     if c.cell_type == "code")
    assert re.search(rf"\b{code_cells} passed\b", out), out[-2000:]


def _trimmed_copy(tmp_path: Path, cells: int = 7) -> Path:
    """The quickstart's first cells (load, first call, result) with its cassette, in tmp_path."""
    nb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", 4)
    nb.cells = nb.cells[:cells]
    for name in ("quickstart.cassette.json", "conftest.py", "nbval_sanitize.cfg"):
        shutil.copy(NOTEBOOKS / name, tmp_path / name)
    path = tmp_path / "quickstart.ipynb"
    nbformat.write(nb, path)
    return path


def _first_gemini_cell(nb) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%gemini"))


TMP_ARGS = ["-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval", "--nbval-current-env",
            "--nbval-sanitize-with", "nbval_sanitize.cfg", "quickstart.ipynb"]


def test_trimmed_copy_passes_so_the_failures_below_are_the_edits(tmp_path):
    _trimmed_copy(tmp_path)
    done = _nbval(TMP_ARGS, tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


def test_a_changed_answer_in_the_saved_notebook_fails_nbval(tmp_path):
    path = _trimmed_copy(tmp_path)
    nb = nbformat.read(path, 4)
    answer = _first_gemini_cell(nb).outputs[0]
    answer.data["text/markdown"] = answer.data["text/plain"] = "A different answer."
    nbformat.write(nb, path)

    done = _nbval(TMP_ARGS, tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Cell outputs differ" in out and "A different answer." in out


def test_a_prompt_not_in_the_cassette_fails_with_the_re_record_sentence(tmp_path):
    path = _trimmed_copy(tmp_path)
    nb = nbformat.read(path, 4)
    cell = _first_gemini_cell(nb)
    cell.source = cell.source.replace("in a few words", "in one word")
    nbformat.write(nb, path)

    done = _nbval(TMP_ARGS, tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "is in it only with a different body" in out
    assert "re-record it with GEMINI_MAGICS_RECORD_MODE=record" in out


def test_a_missing_cassette_says_how_to_record_it(tmp_path):
    _trimmed_copy(tmp_path)
    (tmp_path / "quickstart.cassette.json").unlink()
    done = _nbval(TMP_ARGS, tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "quickstart.cassette.json is missing; record it with gemini-magics quickstart " \
           "--record" in out


# --------------------------------------------------------------------------------------------
# Recorded from the local server, replayed: identical outputs
# --------------------------------------------------------------------------------------------

def _sanitizers() -> list:
    text = SANITIZE.read_text(encoding="utf-8")
    return re.findall(r"^regex: (.*)$\n^replace: (.*)$", text, flags=re.M)


def _comparable(nb) -> list:
    """Each code cell's outputs as nbval compares them (elapsed times sanitized), minus the
    one-line offline notice a live local-model run prints and a replay does not."""
    from gemini_magics.client import OFFLINE_NOTICE

    patterns = _sanitizers()

    def clean(value):
        if isinstance(value, str):
            for regex, replace in patterns:
                value = re.sub(regex, replace, value)
            return value
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outs = []
        for out in cell.outputs:
            out = {k: v for k, v in out.items() if k not in ("execution_count", "metadata")}
            if out.get("data", {}).get("text/plain") == OFFLINE_NOTICE:
                continue
            outs.append(clean(json.loads(json.dumps(out))))
        cells.append((cell.source, outs))
    return cells


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the local model on a busy 2-core machine
def test_a_cassette_recorded_from_the_local_server_replays_the_quickstart_identically(tmp_path):
    pytest.importorskip("xllamacpp")
    from gemini_magics.quickstart import (kernel_env, replay_ipython_dir, replay_notebook,
                                          run_notebook)
    from gemini_magics.server.engines.local import find_model

    try:
        find_model()
    except (OSError, ValueError) as exc:
        pytest.skip(f"no local model: {exc}")
    path = tmp_path / "quickstart.ipynb"
    shutil.copy(NOTEBOOKS / "quickstart.ipynb", path)

    # Record from the local server (the real local model), with the display settings of a
    # replay so both runs split their outputs the same way.
    env = kernel_env("record", path)
    env["IPYTHONDIR"] = replay_ipython_dir()
    recorded, parts = run_notebook(path, env=env, timeout=600)
    assert all(s.ok for s in parts), [(s.title, s.error) for s in parts if not s.ok]
    cassette = json.loads((tmp_path / "quickstart.cassette.json").read_text(encoding="utf-8"))
    assert len(cassette["exchanges"]) >= 15

    replayed, parts = replay_notebook(path, timeout=600)
    assert all(s.ok for s in parts), [(s.title, s.error) for s in parts if not s.ok]

    rec, rep = _comparable(recorded), _comparable(replayed)
    assert len(rec) == len(rep)
    for (source, a), (_, b) in zip(rec, rep):
        assert a == b, f"outputs differ for cell:\n{source}"
    # the local model did answer: the recording is not a pile of empty outputs
    first = _first_gemini_cell(recorded)
    assert any(o.get("data", {}).get("text/markdown", "").strip() for o in first.outputs)


# --------------------------------------------------------------------------------------------
# The committed notebooks
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["quickstart", "teaching", "rows"])
def test_committed_notebook_is_run_without_errors_and_every_answer_is_saved(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", 4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source.strip() == "%load_ext gemini_magics"
    assert all(c.execution_count for c in code), "every cell was run (nbval needs outputs)"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    for cell in code:
        if cell.source.startswith("%%gemini") and "--estimate" not in cell.source.split("\n")[0]:
            shown = [o for o in cell.outputs  # an answer, or (--over) the table of answers
                     if {"text/markdown", "text/html"} & set(o.get("data", {}))]
            assert shown, f"no answer saved under:\n{cell.source}"
            # GitHub and nbconvert render saved outputs without a kernel: text/plain too
            assert all("text/plain" in o.data for o in shown)
    intro = nb.cells[0].source
    assert "GEMINI_API_KEY" in intro and "offline" in intro.lower()


def test_quickstart_has_every_section_of_the_seed_in_order():
    nb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", 4)
    headings = [ln for c in nb.cells if c.cell_type == "markdown"
                for ln in c.source.splitlines() if ln.startswith("## ")]
    numbers = [int(m.group(1)) for h in headings for m in [re.match(r"## (\d+)\. ", h)] if m]
    assert numbers == list(range(1, 12))
    sources = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for needed in ("--stateless", "--image sample.jpg", "--file https://", "gemini-3.1-flash-image",
                   "--save", "--schema Recipe", "--tools google_search",
                   "--functions get_current_temperature", "--agent", "--environment remote",
                   "--background", "%gemini wait"):
        assert needed in sources, needed


@pytest.mark.parametrize("name", ["quickstart", "teaching", "rows"])
def test_cells_nbval_does_not_compare_say_why(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", 4)
    for cell in nb.cells:
        tags = set(cell.metadata.get("tags", []))
        if tags & {"nbval-ignore-output", "nbval-skip"}:
            assert len(cell.metadata.get("nbval_reason", "")) > 20, cell.source


@pytest.mark.parametrize("name", ["quickstart", "teaching", "rows"])
def test_committed_cassettes_hold_no_secret(name):
    text = (NOTEBOOKS / f"{name}.cassette.json").read_text(encoding="utf-8")
    assert not re.search(r"AIza[0-9A-Za-z_\-]{35}", text)
    data = json.loads(text)
    for exchange in data["exchanges"]:
        headers = {k.lower() for k in exchange["request"].get("headers", {})}
        assert not headers & {"x-goog-api-key", "authorization"}
