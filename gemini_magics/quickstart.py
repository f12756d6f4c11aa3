"""`gemini-magics quickstart`: run the quickstart notebook headless, or open it in JupyterLab.

Why: this is the README's first command, the one a new user runs to see everything work on
their own machine. It runs offline by default (the local model answers: no key, cassette or
network needed), prints one line per quickstart section as it finishes (ok, or the failed
cell's one-sentence error), writes the executed copy and exits non-zero if a cell failed.

The same runner keeps the committed notebooks honest (`--record`): it records a notebook's
cassette from the local model, then replays it to write the outputs nbval compares against.
"""
from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from .client import find_local_model

__all__ = [
    "NOTEBOOKS_DIR", "QUICKSTART", "REPLAY_KERNEL_CONFIG", "Section", "QuickstartError",
    "cassette_path", "kernel_env", "replay_ipython_dir", "sections", "run_notebook", "record_notebook",
    "replay_notebook", "refresh_notebook", "main",
]

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"  # a checkout's
# A wheel has no checkout: pyproject's data-files install the quickstart under this, in the
# install's data folder (the venv, or ~/.local for `pip install --user`).
INSTALLED_NOTEBOOK = Path("share", "gemini-magics", "notebooks", "quickstart.ipynb")


def _quickstart() -> Path:
    """The checkout's quickstart (a clone or an editable install), else the installed copy."""
    candidates = [NOTEBOOKS_DIR / "quickstart.ipynb"] + [
        Path(sysconfig.get_path("data", scheme)) / INSTALLED_NOTEBOOK
        for scheme in (sysconfig.get_default_scheme(), f"{os.name}_user")]
    return next((path for path in candidates if path.is_file()), candidates[0])


QUICKSTART = _quickstart()
CASSETTE_SUFFIX = ".cassette.json"
# Replayed answers arrive all at once. With one display tick per answer, a replayed cell's
# outputs are the same on a busy machine as on an idle one: nbval compares them exactly, and it
# only sees the first version of an output that is later updated in place. Set through the
# kernel's IPython config (IPYTHONDIR) so nbval's kernels get it too.
REPLAY_KERNEL_CONFIG = "c.GeminiMagics.update_interval = 3600.0\n"
DEFAULT_CELL_TIMEOUT = 600.0

# Variables that pick a backend or a cassette: cleared so the run is what the mode says.
_KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
_BACKEND_VARS = ("GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI", "GEMINI_MAGICS_ENGINE",
                 "GEMINI_MAGICS_CASSETTE", "GEMINI_MAGICS_RECORD_MODE")


class QuickstartError(Exception):
    """The run cannot start; the message is one sentence saying how to fix it."""


@dataclass
class Section:
    """One `## N. Title` part of a notebook and how its code cells went."""

    title: str
    cells: list = field(default_factory=list)   # indexes of its code cells
    done: int = 0
    error: Optional[str] = None                 # the first failed cell's one sentence
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.done == len(self.cells)


def cassette_path(notebook: os.PathLike | str) -> Path:
    """`notebooks/quickstart.ipynb` -> `notebooks/quickstart.cassette.json` (next to it)."""
    path = Path(notebook)
    return path.with_name(path.stem + CASSETTE_SUFFIX)


def kernel_env(mode: str = "offline", notebook: Any = None,
               base: Optional[Mapping[str, str]] = None) -> dict:
    """The kernel's environment for a run mode.

    offline: the local model, whatever keys or cassettes the caller's shell has set;
    online: Google with the caller's GEMINI_API_KEY; record/replay: the notebook's cassette
    (recorded from the local model, so no key ever reaches a cassette).
    """
    env = dict(os.environ if base is None else base)
    for name in _BACKEND_VARS:
        env.pop(name, None)
    if mode != "online":
        for name in _KEY_VARS:
            env.pop(name, None)
    if mode in ("record", "replay"):
        env["GEMINI_MAGICS_CASSETTE"] = str(cassette_path(notebook).resolve())
        env["GEMINI_MAGICS_RECORD_MODE"] = mode
    if mode == "replay":
        env["IPYTHONDIR"] = replay_ipython_dir()
    return env


def replay_ipython_dir() -> str:
    """A new IPython directory (removed at exit) whose kernel config holds REPLAY_KERNEL_CONFIG;
    a replaying kernel also ignores the user's own IPython profile. One per replay run: a few
    bytes each, and no state shared between runs."""
    root = tempfile.mkdtemp(prefix="gemini-magics-replay-ipython-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    profile = Path(root, "profile_default")
    profile.mkdir()
    (profile / "ipython_kernel_config.py").write_text(REPLAY_KERNEL_CONFIG, encoding="utf-8")
    return root


def sections(nb: Any) -> list[Section]:
    """The notebook's sections: a `## ` heading in a Markdown cell opens one; code cells before
    the first heading form "Setup". Sections without code cells are left out."""
    found = [Section("Setup")]
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            headings = [ln[3:].strip() for ln in cell.source.splitlines() if ln.startswith("## ")]
            if headings:
                found.append(Section(headings[-1]))
        elif cell.cell_type == "code" and cell.source.strip():
            found[-1].cells.append(index)
    return [s for s in found if s.cells]


def _cell_error(cell: Any) -> Optional[str]:
    """The one sentence a failed cell showed (GeminiError already is one)."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            name, value = out.get("ename", "Error"), str(out.get("evalue", "")).strip()
            sentence = value.splitlines()[0] if value else name
            return sentence if name == "GeminiError" else f"{name}: {sentence}"
    return None


def _kernel_manager() -> Any:
    """A kernel of THIS Python (which has gemini_magics), not whatever `python3` kernel spec a
    user's Jupyter directories hold."""
    ksm = KernelSpecManager()
    ksm.kernel_dirs = [os.path.join(sys.prefix, "share", "jupyter", "kernels")]
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ksm)


def run_notebook(path: os.PathLike | str, *, env: Mapping[str, str],
                 timeout: float = DEFAULT_CELL_TIMEOUT,
                 on_section: Optional[Callable[[Section], None]] = None,
                 cwd: Optional[os.PathLike | str] = None) -> tuple[Any, list]:
    """Execute a notebook in a fresh kernel (cwd: `cwd`, default the notebook's folder),
    running every cell even after a failure. Returns (executed notebook, sections);
    `on_section` is called as each section finishes."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    parts = sections(nb)
    owner = {index: s for s in parts for index in s.cells}
    started: dict = {}

    def cell_start(cell, cell_index, **_):
        section = owner.get(cell_index)
        if section is not None and section.done == 0:
            started[id(section)] = time.monotonic()

    def cell_done(cell, cell_index, **_):
        section = owner.get(cell_index)
        if section is None:
            return
        section.done += 1
        section.error = section.error or _cell_error(cell)
        if section.done == len(section.cells):
            section.seconds = time.monotonic() - started.get(id(section), time.monotonic())
            if on_section is not None:
                on_section(section)

    client = NotebookClient(
        nb, timeout=timeout, startup_timeout=120, allow_errors=True, record_timing=False,
        km=_kernel_manager(),
        resources={"metadata": {"path": str(Path(cwd or path.parent).resolve())}},
        on_cell_start=cell_start, on_cell_executed=cell_done,
    )
    # The kernel's own stderr (e.g. ipykernel's TCP notice) would break the one-line-per-section
    # report; it is kept aside and its last line quoted if the kernel dies.
    with tempfile.TemporaryFile() as log:
        try:
            client.execute(env=dict(env), stderr=log)
        except CellTimeoutError:
            _abandon(parts, f"a cell ran longer than {timeout:g} s and was stopped", on_section)
        except DeadKernelError:
            log.seek(0)
            lines = [ln for ln in log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            last = f" (its last words: {lines[-1].strip()[:200]})" if lines else ""
            _abandon(parts, f"the kernel died{last}; run the notebook in JupyterLab to see where",
                     on_section)
    return nb, parts


def _abandon(parts: list, why: str, on_section: Optional[Callable]) -> None:
    for section in parts:
        if section.done < len(section.cells):
            section.error = section.error or why
            if on_section is not None:
                on_section(section)


def record_notebook(path: os.PathLike | str, *, timeout: float = DEFAULT_CELL_TIMEOUT,
                    report: Callable[[str], None] = print) -> list:
    """Re-record `path`'s cassette from the local model, then replay it and save the replayed
    outputs into the notebook itself (what nbval compares). Returns the replay's sections."""
    path = Path(path)
    cassette = cassette_path(path)
    if cassette.exists():
        cassette.unlink()  # record mode starts the file again anyway; no stale exchanges
    report(f"Recording {cassette.name} from the local model...")
    _, parts = run_notebook(path, env=kernel_env("record", path), timeout=timeout)
    failed = [s for s in parts if not s.ok]
    if failed:
        raise QuickstartError(f"Recording failed in section {failed[0].title!r} "
                              f"({failed[0].error}); fix it and record again.")
    report(f"Replaying it into {path.name}...")
    nb, parts = replay_notebook(path, timeout=timeout)
    failed = [s for s in parts if not s.ok]
    if failed:
        raise QuickstartError(f"Replaying the new cassette failed in section "
                              f"{failed[0].title!r} ({failed[0].error}).")
    nbformat.write(nb, path)
    return parts


def refresh_notebook(path: os.PathLike | str, *, timeout: float = DEFAULT_CELL_TIMEOUT) -> list:
    """Replay `path`'s existing cassette and save the outputs into the notebook: after a change
    to how answers are displayed, no model or re-recording needed. Returns the sections."""
    path = Path(path)
    if not cassette_path(path).is_file():
        raise QuickstartError(f"{cassette_path(path)} does not exist; record it first with "
                              f"--record.")
    nb, parts = replay_notebook(path, timeout=timeout)
    failed = [s for s in parts if not s.ok]
    if failed:
        raise QuickstartError(f"Replaying {cassette_path(path).name} failed in section "
                              f"{failed[0].title!r} ({failed[0].error}); if the notebook's "
                              f"requests changed, re-record it with --record.")
    nbformat.write(nb, path)
    return parts


def replay_notebook(path: os.PathLike | str, *, timeout: float = DEFAULT_CELL_TIMEOUT) -> tuple:
    """Execute `path` answering from its cassette (deterministic display settings)."""
    return run_notebook(path, env=kernel_env("replay", path), timeout=timeout)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------

def add_arguments(parser: Any) -> None:
    """The `gemini-magics quickstart` options (cli.py builds the subcommand)."""
    parser.add_argument("--lab", action="store_true",
                        help="open the notebook in JupyterLab instead of running it here")
    parser.add_argument("--output", metavar="PATH",
                        help="where to write the executed notebook "
                             "(default: next to it, NAME.out.ipynb)")
    parser.add_argument("--online", action="store_true",
                        help="use Google's Gemini with your GEMINI_API_KEY instead of the local "
                             "offline model")
    parser.add_argument("--notebook", metavar="PATH", default=None,
                        help="another notebook to run (default: notebooks/quickstart.ipynb)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_CELL_TIMEOUT, metavar="SECONDS",
                        help=f"stop a cell that runs longer than this (default "
                             f"{DEFAULT_CELL_TIMEOUT:g})")
    parser.add_argument("--record", action="store_true",
                        help="maintainers: re-record the notebook's cassette from the local "
                             "model and save the replayed outputs into the notebook")
    parser.add_argument("--refresh", action="store_true",
                        help="maintainers: replay the notebook's cassette and save the outputs "
                             "into the notebook (after a display change; no model needed)")


def _check(args: Any) -> Path:
    notebook = Path(args.notebook) if args.notebook else QUICKSTART
    if not notebook.is_file():
        hint = ("pass --notebook PATH" if args.notebook is None
                else "check the path")
        raise QuickstartError(f"Notebook {str(notebook)!r} not found; {hint} (the quickstart "
                              f"ships in the repository's notebooks/ folder).")
    if args.timeout <= 0:
        raise QuickstartError(f"--timeout must be a positive number of seconds, not "
                              f"{args.timeout:g}.")
    if args.online and not any(os.environ.get(k, "").strip() for k in _KEY_VARS):
        raise QuickstartError("--online needs GEMINI_API_KEY set in the environment (export "
                              "GEMINI_API_KEY=...), or drop --online to use the local model.")
    if args.online and args.record:
        raise QuickstartError("--record always records from the local model (no key goes into "
                              "a cassette); drop --online.")
    picked = [flag for flag, on in (("--lab", args.lab), ("--record", args.record),
                                    ("--refresh", args.refresh)) if on]
    if len(picked) > 1:
        raise QuickstartError(f"{' and '.join(picked)} do different things; use one of them.")
    if args.lab and importlib.util.find_spec("jupyterlab") is None:
        raise QuickstartError("--lab needs JupyterLab, which is not installed: pip install "
                              "jupyterlab (or run the quickstart here, without --lab).")
    if args.refresh:
        return notebook  # replays only: no model needed
    if not args.online:
        try:
            find_local_model()
        except ImportError:
            raise QuickstartError("The local model runtime is not installed; reinstall "
                                  "gemini-magics, or use --online with GEMINI_API_KEY.") from None
        except (OSError, ValueError) as exc:
            raise QuickstartError(str(exc).rstrip(".") + ".") from None
    return notebook


def _line(section: Section) -> str:
    if section.ok:
        return f"  ok      {section.title} ({section.seconds:.1f} s)"
    return f"  FAILED  {section.title}: {section.error or 'did not run'}"


def _workdir(notebook: Path) -> Path:
    """Where the kernel runs and the executed copy goes: next to the notebook, except for the
    installed quickstart (data inside the install, maybe read-only), which runs here."""
    installed = notebook.resolve().parts[-4:] == INSTALLED_NOTEBOOK.parts
    return Path.cwd() if installed else notebook.parent


def _lab(notebook: Path, env: dict) -> int:
    """Replace this process with JupyterLab open on the notebook (Ctrl-C stops it); the
    installed quickstart is first copied here (unless a copy is here already), to edit and save."""
    here = _workdir(notebook)
    if here != notebook.parent:
        copy = here / notebook.name
        if not copy.exists():
            shutil.copyfile(notebook, copy)
        notebook = copy
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={notebook.parent}",
            "--ServerApp.ip=127.0.0.1", notebook.name]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")  # containers and CI machines often run as root
    print(f"gemini-magics: opening {notebook} in JupyterLab ({_mode_words(env)}); "
          f"Ctrl-C to stop.", flush=True)
    os.chdir(notebook.parent)
    os.execve(sys.executable, argv, env)
    return 0  # not reached


def _mode_words(env: Mapping[str, str]) -> str:
    if any(env.get(k) for k in _KEY_VARS):
        return "answers from Google's Gemini with your GEMINI_API_KEY"
    return "offline: answers from the local model"


def main(args: Any) -> int:
    """Run `gemini-magics quickstart` with parsed `args`; returns the exit status."""
    try:
        notebook = _check(args)
        if args.record:
            parts = record_notebook(notebook, timeout=args.timeout,
                                    report=lambda s: print("gemini-magics: " + s, flush=True))
            for section in parts:
                print(_line(section), flush=True)
            print(f"gemini-magics: wrote {cassette_path(notebook)} and the replayed outputs "
                  f"into {notebook}.", flush=True)
            return 0
        if args.refresh:
            parts = refresh_notebook(notebook, timeout=args.timeout)
            for section in parts:
                print(_line(section), flush=True)
            print(f"gemini-magics: replayed {cassette_path(notebook).name} into {notebook}.",
                  flush=True)
            return 0
        env = kernel_env("online" if args.online else "offline", notebook)
        if args.lab:
            return _lab(notebook, env)
        workdir = _workdir(notebook)
        output = Path(args.output) if args.output else workdir / (notebook.stem + ".out.ipynb")
        if output.is_dir():
            raise QuickstartError(f"--output {str(output)!r} is a folder; give a file name "
                                  f"ending in .ipynb.")
        if not output.parent.is_dir():
            raise QuickstartError(f"--output folder {str(output.parent)!r} does not exist; "
                                  f"create it or pick another path.")
    except QuickstartError as exc:
        print(f"gemini-magics: error: {exc}", file=sys.stderr, flush=True)
        return 2

    print(f"gemini-magics: running {notebook} ({_mode_words(env)})...", flush=True)
    begin = time.monotonic()
    nb, parts = run_notebook(notebook, env=env, timeout=args.timeout, cwd=workdir,
                             on_section=lambda s: print(_line(s), flush=True))
    nbformat.write(nb, output)
    failed = sum(1 for s in parts if not s.ok)
    took = time.monotonic() - begin
    if failed:
        print(f"gemini-magics: {failed} of {len(parts)} sections failed ({took:.0f} s); "
              f"the executed notebook is {output}", flush=True)
        return 1
    print(f"gemini-magics: all {len(parts)} sections ok ({took:.0f} s); the executed notebook "
          f"is {output}", flush=True)
    return 0
