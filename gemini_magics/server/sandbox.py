"""The code-execution sandbox: runs Python offline for emulated code execution and agents.

Code execution is the one built-in tool the local server really runs, and the code comes from
whoever sends a request, so it runs in a real sandbox or not at all. The sandbox is bubblewrap
(`bwrap`, Debian package `bubblewrap`), the unprivileged sandbox Flatpak uses, and not one of
our own: namespaces and mounts are the kernel's isolation, while an in-process patch (such as
replacing `socket.socket`) is undone by `import _socket`. Each run is

    bwrap --unshare-all --die-with-parent --new-session --cap-drop ALL --hostname sandbox
          --ro-bind /usr /usr  --symlink usr/lib /lib (/bin, /sbin, /lib64 ...: as on the host)
          --ro-bind-try /etc/ld.so.cache /etc/ld.so.cache
          --ro-bind PREFIX PREFIX   (the interpreter: sys.prefix, sys.base_prefix, ... not under /usr)
          --proc /proc --dev /dev --size 16MiB --tmpfs /dev/shm --remount-ro /dev
          --size 64MiB --tmpfs /sandbox  --size 64MiB --tmpfs /tmp
          --chdir /sandbox --remount-ro /  -- PYTHON -I -c BOOTSTRAP   (the code on stdin)

so the code sees an empty, read-only root holding only the runtime (read-only) and two fresh,
size-limited tmpfs directories: no host file outside them can be read or written (the home
directory, /etc, the project, the notebook's files), there is no network (a new, empty network
namespace), no other process (a new pid namespace, which also ends every process the code
started when the run ends), no capability even when the server runs as root, and an
environment holding only PATH, HOME, TMPDIR and locale variables (no API key). The working
directory is a tmpfs rather than a bound host directory so that nothing on the host is
writable at all and the code cannot fill the host's disk. Inside, the bootstrap sets the same
limits as before: as many CPU seconds as the wall-clock timeout, 1 GiB of address space.

bwrap is probed once (it must really start the interpreter with these options: inside a
container without user namespaces it exists but cannot sandbox; without a fresh /proc it is
tried once more without one). Where no probe succeeds the code is NOT run: the result is one
sentence saying code execution is off and why, never an unsandboxed fallback.
`GEMINI_MAGICS_BWRAP` (or `bwrap=`) names another bwrap binary, for tests and odd installs.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from typing import Optional

__all__ = ["run_python_offline", "sandbox_refusal", "CODE_TIMEOUT", "BWRAP_ENV"]

log = logging.getLogger(__name__)

CODE_TIMEOUT = 10.0
BWRAP_ENV = "GEMINI_MAGICS_BWRAP"
WORKDIR = "/sandbox"
TMPFS_BYTES = 64 << 20   # each of /sandbox and /tmp
SHM_BYTES = 16 << 20     # /dev/shm
MEMORY_BYTES = 1 << 30   # RLIMIT_AS
PROBE_TIMEOUT = 30.0
_MAX_OUTPUT = 8000

NO_BWRAP = ("Code execution is off: no sandbox on this machine (install bubblewrap, the `bwrap` "
            "command, e.g. `apt-get install bubblewrap`), so the code was not run.")
BWRAP_REFUSED = ("Code execution is off: no sandbox on this machine (bwrap is installed but "
                 "could not create one here, e.g. user namespaces are disabled in this "
                 "container; see the server log), so the code was not run.")

# The code arrives on stdin (an argument is limited to 128 KiB) and becomes main.py, so
# tracebacks name main.py and show its lines.
_BOOTSTRAP = r"""
import os, resource, runpy, sys
with open("main.py", "wb") as _f:
    _f.write(sys.stdin.buffer.read())
sys.stdin = open(os.devnull)
for _limit, _value in ((resource.RLIMIT_CPU, %(cpu)d), (resource.RLIMIT_AS, %(mem)d)):
    try:
        resource.setrlimit(_limit, (_value, _value))
    except (ValueError, OSError):
        pass
del _f, _limit, _value
sys.argv = ["main.py"]
runpy.run_path("main.py", run_name="__main__")
"""

_lock = threading.Lock()
_working: dict[str, tuple[str, ...]] = {}  # bwrap path -> the sandbox command prefix that ran
_warned: set = set()


def run_python_offline(code: str, timeout: float = CODE_TIMEOUT,
                       bwrap: Optional[str] = None) -> tuple[str, bool]:
    """Run `code` in the sandbox; return (stdout+stderr, is_error).

    Without a working sandbox, returns (one sentence saying code execution is off, True) and
    runs nothing. `bwrap`: the bwrap binary (default: env GEMINI_MAGICS_BWRAP, else `bwrap`).
    """
    prefix, refusal = _sandbox(bwrap)
    if prefix is None:
        return refusal, True
    bootstrap = _BOOTSTRAP % {"cpu": max(1, int(timeout) + 1), "mem": MEMORY_BYTES}
    try:
        proc = subprocess.run([*prefix, sys.executable, "-I", "-c", bootstrap],
                              input=code.encode("utf-8", "replace"), env=_environment(),
                              cwd="/", capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"Execution stopped after {timeout:g} seconds (offline sandbox time limit).", True
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    out = _clean_traceback(out)
    if len(out) > _MAX_OUTPUT:
        out = out[:_MAX_OUTPUT] + f"\n... (output cut at {_MAX_OUTPUT} characters)"
    return out, proc.returncode != 0


def sandbox_refusal(bwrap: Optional[str] = None) -> Optional[str]:
    """None if code can run here (in the sandbox), else the sentence a code run would return."""
    prefix, refusal = _sandbox(bwrap)
    return None if prefix is not None else refusal


def _sandbox(bwrap: Optional[str]) -> tuple[Optional[tuple[str, ...]], str]:
    """(the bwrap command prefix, "") once a probe ran the interpreter in it, else (None, why)."""
    name = bwrap or os.environ.get(BWRAP_ENV, "").strip() or "bwrap"
    exe = shutil.which(name)
    if exe is None:
        return None, NO_BWRAP
    with _lock:  # one probe at a time; only a working sandbox is remembered
        if exe in _working:
            return _working[exe], ""
        problems = []
        for with_proc in (True, False):
            prefix = tuple(_bwrap_command(exe, with_proc))
            problem = _probe(prefix)
            if problem is None:
                _working[exe] = prefix
                return prefix, ""
            problems.append(problem)
        if exe not in _warned:
            _warned.add(exe)
            log.warning("code execution is off: %s cannot create a sandbox here: %s", exe,
                        " / ".join(problems))
    return None, BWRAP_REFUSED


def _probe(prefix: tuple[str, ...]) -> Optional[str]:
    """None if the interpreter starts inside `prefix`, else what went wrong."""
    try:
        proc = subprocess.run([*prefix, sys.executable, "-I", "-c", "pass"], env=_environment(),
                              cwd="/", capture_output=True, stdin=subprocess.DEVNULL,
                              timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    if proc.returncode == 0:
        return None
    return proc.stderr.decode("utf-8", "replace").strip()[-300:] or f"exit {proc.returncode}"


def _bwrap_command(exe: str, with_proc: bool = True) -> list[str]:
    """The bwrap options: new namespaces, the runtime read-only, two tmpfs, nothing else."""
    cmd = [exe, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
           "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = "/" + name
        if os.path.islink(path):
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            cmd += ["--ro-bind", path, path]
    cmd += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    size = str(TMPFS_BYTES)
    # The tmpfs first, the runtime after: a venv under /tmp (a CI clone) must not be hidden.
    cmd += ["--size", size, "--tmpfs", WORKDIR, "--size", size, "--tmpfs", "/tmp"]
    for root in _python_roots():
        cmd += ["--ro-bind", root, root]
    if with_proc:
        cmd += ["--proc", "/proc"]
    # bwrap's /dev is an unbounded tmpfs: read-only but for a small /dev/shm (the devices, such
    # as /dev/null, stay writable on a read-only mount)
    cmd += ["--dev", "/dev", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
            "--chdir", WORKDIR, "--remount-ro", "/", "--"]
    return cmd


def _python_roots() -> list[str]:
    """The directories the interpreter and its packages live in, outside the bound /usr (a
    venv, pyenv's or uv's Python), each as the interpreter names it and as it really is."""
    exe = sys.executable
    candidates = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
                  os.path.dirname(os.path.dirname(exe)),
                  os.path.dirname(os.path.dirname(os.path.realpath(exe)))}
    paths = {os.path.normpath(p) for c in candidates if c for p in (c, os.path.realpath(c))}
    roots: list[str] = []
    for path in sorted(paths):
        covered = [r for r in roots + ["/usr"] if path == r or path.startswith(r + "/")]
        if path != "/" and os.path.isdir(path) and not covered:
            roots.append(path)
    return roots


def _environment() -> dict:
    """The sandbox's whole environment: nothing of the server's (no API key)."""
    path = os.pathsep.join(dict.fromkeys([os.path.dirname(sys.executable), "/usr/local/bin",
                                          "/usr/bin", "/bin"]))
    return {"PATH": path, "HOME": WORKDIR, "TMPDIR": "/tmp", "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}


def _clean_traceback(out: str) -> str:
    """Drop the bootstrap's runpy frames so tracebacks start at the user's code."""
    return re.sub(r'(Traceback \(most recent call last\):\n)(?:  File "(?:<string>|<frozen runpy>|'
                  r'[^"]*runpy\.py)".*\n(?:    .*\n)*)+', r"\1", out)
