"""The code-execution sandbox: runs Python offline for emulated code execution and agents.

Code execution is the one built-in tool the local server really runs, so it must not leak: the
code runs in a subprocess with a timeout, CPU/memory limits, no inherited environment and no
network (a fresh network namespace when `unshare` allows it, plus socket functions disabled
in-process).
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile

__all__ = ["run_python_offline", "CODE_TIMEOUT"]

CODE_TIMEOUT = 10.0
_MAX_OUTPUT = 8000

_BOOTSTRAP = r"""
import resource, runpy, socket, sys
def _no_network(*a, **k):
    raise OSError("network access is disabled in the offline code sandbox")
class _NoSocket(socket.socket):
    def __init__(self, *a, **k):
        _no_network()
socket.socket = _NoSocket
socket.create_connection = socket.getaddrinfo = socket.socketpair = _no_network
for _limit, _value in ((resource.RLIMIT_CPU, %(cpu)d), (resource.RLIMIT_AS, %(mem)d)):
    try:
        resource.setrlimit(_limit, (_value, _value))
    except (ValueError, OSError):
        pass
del _limit, _value
sys.argv = ["main.py"]
runpy.run_path("main.py", run_name="__main__")
"""


@functools.lru_cache(maxsize=1)
def _netns_prefix() -> tuple[str, ...]:
    """`unshare -rn` (a new, empty network namespace) if this machine allows it, else nothing."""
    exe = shutil.which("unshare")
    if not exe:
        return ()
    try:
        ok = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return (exe, "-rn") if ok else ()


def run_python_offline(code: str, timeout: float = CODE_TIMEOUT) -> tuple[str, bool]:
    """Run `code` in a throwaway subprocess without network; return (stdout+stderr, is_error).

    Limits: `timeout` seconds of wall time, as much CPU time, 1 GiB of address space, a private
    temporary directory as cwd, and an environment holding only PATH/LANG (so no API key).
    """
    with tempfile.TemporaryDirectory(prefix="gemini-magics-code-") as tmp:
        with open(os.path.join(tmp, "main.py"), "w", encoding="utf-8") as f:
            f.write(code)
        bootstrap = _BOOTSTRAP % {"cpu": max(1, int(timeout) + 1), "mem": 1 << 30}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}
        cmd = [*_netns_prefix(), sys.executable, "-I", "-c", bootstrap]
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"Execution stopped after {timeout:g} seconds (offline sandbox time limit).", True
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    out = _clean_traceback(out)
    if len(out) > _MAX_OUTPUT:
        out = out[:_MAX_OUTPUT] + f"\n... (output cut at {_MAX_OUTPUT} characters)"
    return out, proc.returncode != 0


def _clean_traceback(out: str) -> str:
    """Drop the bootstrap's runpy frames so tracebacks start at the user's code."""
    return re.sub(r'(Traceback \(most recent call last\):\n)(?:  File "(?:<string>|<frozen runpy>|'
                  r'[^"]*runpy\.py)".*\n(?:    .*\n)*)+', r"\1", out)


