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
writable at all and the code cannot fill the host's disk. Inside, the bootstrap sets as many CPU
seconds as the wall-clock timeout and 1 GiB of address space for each process.

Limits hold for the whole run, not one process (a run that forks 4 children of 800 MB must not
use 3.2 GB): at most MAX_TASKS processes and threads, and MEMORY_BYTES of memory in all.
  * Processes: RLIMIT_NPROC, which the kernel counts per user in each user namespace, so the
    run's own fresh namespace makes the count the run's own. Root is exempt from RLIMIT_NPROC,
    so a server running as root has bwrap keep CAP_SETUID/SETGID/CHOWN without a user
    namespace, and the bootstrap hands its tmpfs directories to SANDBOX_UID (nobody), becomes
    it, unshares a user namespace mapping only that uid and re-executes itself, which clears
    every capability (bwrap's own --uid cannot do this: it switches uid before mounting, and
    the interpreter may live under /root).
  * Memory, and processes where the kernel does not hold them: a watcher thread sums the run's
    process tree from the host's /proc (PSS, so pages shared after a fork count once) every
    WATCH_INTERVAL and kills the run when it passes a limit; the result says which, in one
    sentence.
  * cgroup v2 (memory.max, pids.max) would be exact, but it needs a delegated, writable
    subtree with the memory and pids controllers (a systemd scope of the server's own, which
    a plain process does not have), and this project's CI host has none (cgroup v1: its v2
    hierarchy holds no controller), while v1 cgroups belong to whoever runs the machine. The
    tmpfs directories (144 MiB at most) are bounded by their size, not by the watcher.

bwrap is probed once (it must really start the interpreter with these options: inside a
container without user namespaces it exists but cannot sandbox; without a fresh /proc it is
tried once more without one; as root, the setup that switches to SANDBOX_UID is tried first,
then the plain one, where only the watcher holds the process count). Where no probe succeeds the
code is NOT run: the result is one sentence saying code execution is off and why, never an
unsandboxed fallback. `GEMINI_MAGICS_BWRAP` (or `bwrap=`) names another bwrap binary, for tests
and odd installs.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from typing import NamedTuple, Optional

__all__ = ["run_python_offline", "sandbox_refusal", "CODE_TIMEOUT", "BWRAP_ENV"]

log = logging.getLogger(__name__)

CODE_TIMEOUT = 10.0
BWRAP_ENV = "GEMINI_MAGICS_BWRAP"
WORKDIR = "/sandbox"
TMPFS_BYTES = 64 << 20   # each of /sandbox and /tmp
SHM_BYTES = 16 << 20     # /dev/shm
MEMORY_BYTES = 1 << 30   # the whole run's memory, and each process's RLIMIT_AS
MAX_TASKS = 64           # the whole run's processes and threads
SANDBOX_UID = 65534      # nobody: whom a root server's runs become
WATCH_INTERVAL = 0.05    # seconds between the watcher's looks at the run
PROBE_TIMEOUT = 30.0
_MAX_OUTPUT = 8000

NO_BWRAP = ("Code execution is off: no sandbox on this machine (install bubblewrap, the `bwrap` "
            "command, e.g. `apt-get install bubblewrap`), so the code was not run.")
BWRAP_REFUSED = ("Code execution is off: no sandbox on this machine (bwrap is installed but "
                 "could not create one here, e.g. user namespaces are disabled in this "
                 "container; see the server log), so the code was not run.")
OVER_MEMORY = (f"Execution stopped: the run used more than {MEMORY_BYTES >> 30} GiB of memory "
               "(offline sandbox memory limit).")
AT_TASKS = (f"The run reached the limit of {MAX_TASKS} processes and threads (offline sandbox "
            "process limit).")
OVER_TASKS = (f"Execution stopped: the run had more than {MAX_TASKS} processes and threads "
              "(offline sandbox process limit).")

# The code arrives on stdin (an argument is limited to 128 KiB) and becomes main.py, so
# tracebacks name main.py and show its lines.
_BOOTSTRAP = r"""
import os, resource, runpy, sys
with open("main.py", "wb") as _f:
    _f.write(sys.stdin.buffer.read())
sys.stdin = open(os.devnull)
_limits = [(resource.RLIMIT_CPU, %(cpu)d), (resource.RLIMIT_AS, %(mem)d)]
try:  # in a user namespace of its own, the run's processes are counted apart from the host's
    if open("/proc/self/uid_map").read().split() != ["0", "0", "4294967295"]:
        _limits.append((resource.RLIMIT_NPROC, %(tasks)d))
except OSError:
    pass
for _limit, _value in _limits:
    try:
        resource.setrlimit(_limit, (_value, _value))
    except (ValueError, OSError):
        pass
del _f, _limit, _value, _limits
sys.argv = ["main.py"]
runpy.run_path("main.py", run_name="__main__")
"""

# A root server's runs start here: the run's directories go to SANDBOX_UID, which it becomes in a
# user namespace of its own (RLIMIT_NPROC then counts only the run), and the re-executed
# interpreter holds no capability.
_BECOME_SANDBOX_UID = r"""
import ctypes, os, sys
for _d in ("%(workdir)s", "/tmp", "/dev/shm"):
    os.chown(_d, %(uid)d, %(uid)d)
os.setgroups([]); os.setgid(%(uid)d); os.setuid(%(uid)d)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE, so that /proc/self/uid_map is ours to write
if _libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER) failed")
for _f, _v in (("uid_map", "%(uid)d %(uid)d 1"), ("setgroups", "deny"),
               ("gid_map", "%(uid)d %(uid)d 1")):
    with open("/proc/self/" + _f, "w") as _h:
        _h.write(_v)
os.execv(sys.executable, [sys.executable, "-I", "-c", %(then)r])
"""


class _Recipe(NamedTuple):
    """How runs start on this machine: the bwrap command, and whether the run first becomes
    SANDBOX_UID (a root server's runs, see _BECOME_SANDBOX_UID)."""
    prefix: tuple[str, ...]
    become_uid: bool

    def argv(self, bootstrap: str) -> list[str]:
        if self.become_uid:
            bootstrap = _BECOME_SANDBOX_UID % {"workdir": WORKDIR, "uid": SANDBOX_UID,
                                               "then": bootstrap}
        return [*self.prefix, sys.executable, "-I", "-c", bootstrap]

    def nproc(self) -> int:
        """RLIMIT_NPROC for the run: bwrap's own user namespace also counts its init process."""
        return MAX_TASKS if self.become_uid else MAX_TASKS + 1


_lock = threading.Lock()
_working: dict[str, _Recipe] = {}  # bwrap path -> the recipe that ran
_warned: set = set()


def run_python_offline(code: str, timeout: float = CODE_TIMEOUT,
                       bwrap: Optional[str] = None) -> tuple[str, bool]:
    """Run `code` in the sandbox; return (stdout+stderr, is_error).

    Without a working sandbox, returns (one sentence saying code execution is off, True) and
    runs nothing. `bwrap`: the bwrap binary (default: env GEMINI_MAGICS_BWRAP, else `bwrap`).
    """
    recipe, refusal = _sandbox(bwrap)
    if recipe is None:
        return refusal, True
    bootstrap = _BOOTSTRAP % {"cpu": max(1, int(timeout) + 1), "mem": MEMORY_BYTES,
                              "tasks": recipe.nproc()}
    proc = subprocess.Popen(recipe.argv(bootstrap), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_environment(), cwd="/")
    watch = _Watch(proc)
    watch.start()
    timed_out = False
    try:
        stdout, stderr = proc.communicate(code.encode("utf-8", "replace"), timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()  # bwrap's init dies with it (--die-with-parent), and with it the pid namespace
        proc.communicate()
    finally:
        watch.stop()
    if watch.over:
        return watch.over, True
    if timed_out:
        held = (f"; it was held at the limit of {MAX_TASKS} processes and threads"
                if watch.peak_tasks >= MAX_TASKS else "")
        return f"Execution stopped after {timeout:g} seconds (offline sandbox time limit){held}.", True
    out = (stdout + stderr).decode("utf-8", "replace")
    out = _clean_traceback(out)
    if len(out) > _MAX_OUTPUT:
        out = out[:_MAX_OUTPUT] + f"\n... (output cut at {_MAX_OUTPUT} characters)"
    if proc.returncode != 0 and watch.peak_tasks >= MAX_TASKS:  # most likely a refused fork
        out += ("" if out.endswith("\n") else "\n") + AT_TASKS
    return out, proc.returncode != 0


class _Watch(threading.Thread):
    """Looks at the run every WATCH_INTERVAL and kills it when it passes MEMORY_BYTES or
    MAX_TASKS in all (`over` then holds the sentence saying which); records the most processes
    and threads it saw, to say when a run that failed or timed out had been at the limit (a
    run that hit it and died within one interval goes unremarked)."""

    def __init__(self, proc: subprocess.Popen):
        super().__init__(name="sandbox-watch", daemon=True)
        self.proc, self.over, self.peak_tasks = proc, None, 0
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            tasks, memory = _usage(self.proc.pid)
            self.peak_tasks = max(self.peak_tasks, tasks)
            over = OVER_MEMORY if memory > MEMORY_BYTES else OVER_TASKS if tasks > MAX_TASKS else None
            if over:
                self.over = over
                self.proc.kill()
                return
            if self._done.wait(WATCH_INTERVAL):
                return

    def stop(self) -> None:
        self._done.set()
        self.join()


def _usage(bwrap_pid: int) -> tuple[int, int]:
    """(processes and threads, bytes of memory) of the run under `bwrap_pid`: everything below
    bwrap's init, however deep (orphans are reparented to that init, so none escapes)."""
    children: dict[int, list[tuple[int, int, int]]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            children.setdefault(int(fields[1]), []).append(
                (int(name), int(fields[17]), int(fields[21])))  # pid, threads, rss pages
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    tasks = memory = 0
    todo = [pid for init, _, _ in children.get(bwrap_pid, []) for pid, _, _ in children.get(init, [])]
    found = {pid: (threads, rss) for kids in children.values() for pid, threads, rss in kids}
    seen = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        threads, rss = found[pid]
        tasks += threads
        memory += _pss(pid, rss)
        todo += [kid for kid, _, _ in children.get(pid, [])]
    return tasks, memory


def _pss(pid: int, rss_pages: int) -> int:
    """A process's proportional memory in bytes (its RSS where smaps_rollup cannot be read)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return rss_pages * os.sysconf("SC_PAGE_SIZE")


def sandbox_refusal(bwrap: Optional[str] = None) -> Optional[str]:
    """None if code can run here (in the sandbox), else the sentence a code run would return."""
    recipe, refusal = _sandbox(bwrap)
    return None if recipe is not None else refusal


def _sandbox(bwrap: Optional[str]) -> tuple[Optional[_Recipe], str]:
    """(the recipe, "") once a probe ran the interpreter with it, else (None, why)."""
    name = bwrap or os.environ.get(BWRAP_ENV, "").strip() or "bwrap"
    exe = shutil.which(name)
    if exe is None:
        return None, NO_BWRAP
    with _lock:  # one probe at a time; only a working sandbox is remembered
        if exe in _working:
            return _working[exe], ""
        problems = []
        for become_uid in ((True, False) if os.geteuid() == 0 else (False,)):
            for with_proc in (True, False):
                recipe = _Recipe(tuple(_bwrap_command(exe, with_proc, become_uid)), become_uid)
                problem = _probe(recipe)
                if problem is None:
                    _working[exe] = recipe
                    if os.geteuid() == 0 and not become_uid:
                        log.warning("code runs as root in the sandbox, where only a watcher holds "
                                    "its process count: %s", " / ".join(problems))
                    return recipe, ""
                problems.append(problem)
        if exe not in _warned:
            _warned.add(exe)
            log.warning("code execution is off: %s cannot create a sandbox here: %s", exe,
                        " / ".join(problems))
    return None, BWRAP_REFUSED


def _probe(recipe: _Recipe) -> Optional[str]:
    """None if the interpreter starts with `recipe`, else what went wrong."""
    try:
        proc = subprocess.run(recipe.argv("pass"), env=_environment(), cwd="/",
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    if proc.returncode == 0:
        return None
    return proc.stderr.decode("utf-8", "replace").strip()[-300:] or f"exit {proc.returncode}"


def _bwrap_command(exe: str, with_proc: bool = True, become_uid: bool = False) -> list[str]:
    """The bwrap options: new namespaces, the runtime read-only, two tmpfs, nothing else.
    `become_uid`: no user namespace and the three capabilities _BECOME_SANDBOX_UID needs, and
    the directories leading to the runtime readable by others (bwrap makes them 0700)."""
    if become_uid:
        cmd = [exe, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
               "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        cmd += [arg for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN") for arg in ("--cap-add", cap)]
    else:
        cmd = [exe, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    cmd += ["--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = "/" + name
        if os.path.islink(path):
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            cmd += ["--ro-bind", path, path]
    size = str(TMPFS_BYTES)
    # The tmpfs first, the runtime after: a venv under /tmp (a CI clone) must not be hidden.
    cmd += ["--size", size, "--tmpfs", WORKDIR, "--size", size, "--tmpfs", "/tmp"]
    roots = _python_roots()
    if become_uid:
        parents = dict.fromkeys(p for path in ["/etc/ld.so.cache", *roots] for p in _parents(path))
        cmd += [arg for parent in parents for arg in ("--perms", "0755", "--dir", parent)]
    cmd += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for root in roots:
        cmd += ["--ro-bind", root, root]
    if with_proc:
        cmd += ["--proc", "/proc"]
    # bwrap's /dev is an unbounded tmpfs: read-only but for a small /dev/shm (the devices, such
    # as /dev/null, stay writable on a read-only mount)
    cmd += ["--dev", "/dev", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
            "--chdir", WORKDIR, "--remount-ro", "/", "--"]
    return cmd


def _parents(path: str) -> list[str]:
    """'/a/b/c' -> ['/a', '/a/b']."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


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
