"""The per-user offline server process that every kernel shares.

Why: a server embedded in each kernel loads the model in each kernel (~300 MB apiece) and loses
its store, and so its background jobs and chains, when the kernel restarts. Instead the first
kernel that needs the offline backend starts `gemini-magics serve` detached (its own session, so
it outlives the kernel), with a random key and a per-user SQLite store; the server writes a
discovery file (URL, pid, key; mode 0600) in the user's Jupyter runtime dir once it listens.
Later kernels read that file and make the server prove it holds that key before they send it
anything keyed (`_proves`: it answers a fresh random nonce with an HMAC under the key, so a
process that took over a dead server's port learns no key and no prompt); then they reuse it.
The server exits after `IDLE_EXIT_SECONDS` with no request and no turn running; the next
kernel that needs it starts a new one. A file lock keeps two kernels starting at once from
starting two servers. What it keeps is the user's only: the server runs with umask 077, its dirs are 0700 and its
log 0600 (the store makes its own files 0600).

`GEMINI_MAGICS_SERVER=inprocess` (or the `server` setting) keeps the old embedded server, for
tests and for places where a child process cannot run. Paths: $GEMINI_MAGICS_RUNTIME_DIR and
$GEMINI_MAGICS_DATA_DIR override the Jupyter runtime and data dirs.
"""
from __future__ import annotations

import contextlib
import fcntl
import hmac
import http.client
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urlsplit

from .catalog import PROOF_PATH, key_proof

try:  # where Jupyter keeps per-user runtime files; not a dependency of ours, so optional
    from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir
except ImportError:  # pragma: no cover - plain IPython without Jupyter
    jupyter_data_dir = jupyter_runtime_dir = None

__all__ = ["SharedServer", "shared_server", "discover", "write_discovery", "remove_discovery",
           "server_mode", "MODE_ENV", "IDLE_EXIT_SECONDS"]

MODE_ENV = "GEMINI_MAGICS_SERVER"          # "shared" (default) or "inprocess"
RUNTIME_ENV = "GEMINI_MAGICS_RUNTIME_DIR"
DATA_ENV = "GEMINI_MAGICS_DATA_DIR"
IDLE_ENV = "GEMINI_MAGICS_IDLE_EXIT"       # seconds; default IDLE_EXIT_SECONDS
KEY_ENV = "GEMINI_MAGICS_SERVER_API_KEY"   # how the key reaches the server (never argv: ps shows it)
IDLE_EXIT_SECONDS = 1800
START_TIMEOUT_SECONDS = 60.0
PROOF_MAX_BYTES = 4096  # more than a proof's JSON: whoever answers more is not our server


@dataclass(frozen=True)
class SharedServer:
    base_url: str
    api_key: str
    pid: int
    engine: str

    @property
    def running(self) -> bool:
        return _proves(self.base_url, self.api_key)

    def __repr__(self) -> str:  # never show the key
        return f"<SharedServer {self.base_url} pid={self.pid} engine={self.engine}>"


def server_mode(setting: Optional[str] = None) -> str:
    """"shared" or "inprocess": the setting, else $GEMINI_MAGICS_SERVER, else shared."""
    mode = (setting or os.environ.get(MODE_ENV) or "shared").strip().lower().replace("-", "")
    if mode not in ("shared", "inprocess"):
        raise ValueError(f"{MODE_ENV} must be 'shared' or 'inprocess', not {mode!r}.")
    return mode


def _runtime_dir() -> Path:
    env = os.environ.get(RUNTIME_ENV, "").strip()
    if env:
        return Path(env)
    if jupyter_runtime_dir is not None:
        return Path(jupyter_runtime_dir())
    return Path.home() / ".local" / "share" / "jupyter" / "runtime"


def _data_dir() -> Path:
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env)
    if jupyter_data_dir is not None:
        return Path(jupyter_data_dir()) / "gemini-magics"
    return Path.home() / ".local" / "share" / "jupyter" / "gemini-magics"


def discovery_path(engine: str) -> Path:
    return _runtime_dir() / f"gemini-magics-server-{engine}.json"


def _private_dir(path: Path) -> Path:
    """`path`, made if missing, owner-only (it holds the key, the log, the conversations)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_discovery(path: str, *, url: str, engine: str, api_key: Optional[str]) -> None:
    """Write the discovery file atomically, readable by this user only."""
    target = Path(path)
    _private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "pid": os.getpid(), "engine": engine, "key": api_key or "",
                   "started": time.time()}, f)
    os.replace(tmp, target)


def remove_discovery(path: str) -> None:
    """Remove the discovery file if it is still this process's (a newer server may own it)."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(Path(path).read_text()).get("pid") == os.getpid():
            os.unlink(path)


def _proves(url: str, key: str, timeout: float = 3.0) -> bool:
    """True when the server at `url` proves it holds `key`: it answers a fresh random nonce
    with `key_proof(key, nonce)`. The key is never sent, so whatever answers on a stale
    discovery file's port (anything may listen there once our server is gone) learns nothing
    but the nonce, and a 404 or 200 to anything is not a proof."""
    if not key:
        return False
    parts = urlsplit(url)
    nonce = secrets.token_hex(16)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", f"{PROOF_PATH}?nonce={nonce}")
        response = conn.getresponse()
        if response.status != 200:
            return False
        proof = json.loads(response.read(PROOF_MAX_BYTES)).get("proof")
    except (OSError, http.client.HTTPException, ValueError, AttributeError):
        return False
    finally:
        conn.close()
    return isinstance(proof, str) and hmac.compare_digest(proof, key_proof(key, nonce))


def _pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process of this user: another user's (EPERM) is not our
    server, whatever a discovery file says."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def discover(engine: str) -> Optional[SharedServer]:
    """The running shared server for `engine`, if its discovery file is current and it answers."""
    try:
        info = json.loads(discovery_path(engine).read_text())
        found = SharedServer(str(info["url"]), str(info["key"]), int(info["pid"]), engine)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _pid_alive(found.pid) or not found.running:
        return None
    return found


@contextlib.contextmanager
def _start_lock(engine: str) -> Iterator[None]:
    path = _private_dir(_runtime_dir()) / f"gemini-magics-server-{engine}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def shared_server(engine: str = "local") -> SharedServer:
    """The user's shared server for `engine`: found through its discovery file, or started."""
    found = discover(engine)
    if found is not None:
        return found
    with _start_lock(engine):
        found = discover(engine)  # another kernel may have started it while we waited
        if found is not None:
            return found
        return _start(engine)


def _start(engine: str) -> SharedServer:
    path = discovery_path(engine)
    with contextlib.suppress(OSError):
        path.unlink()  # stale: its server is gone or does not answer
    data = _private_dir(_data_dir())
    log_path = data / f"server-{engine}.log"
    key = secrets.token_urlsafe(32)
    env = dict(os.environ, **{KEY_ENV: key})
    idle = os.environ.get(IDLE_ENV, "").strip() or str(IDLE_EXIT_SECONDS)
    cmd = [sys.executable, "-m", "gemini_magics", "serve", "--engine", engine, "--port", "0",
           "--db", str(data / f"interactions-{engine}.sqlite"), "--idle-exit", idle,
           "--discovery-file", str(path)]
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)  # an older log may be readable by others
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log, start_new_session=True, close_fds=True, umask=0o077)
    # Reaped when it exits (idle, or killed), so no zombie is left; a daemon thread per server
    # started, which is one per engine in a kernel's life.
    threading.Thread(target=proc.wait, name=f"gemini-server-reaper-{proc.pid}",
                     daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if proc.returncode == 2:  # serve refused with one sentence (cli._fail)
                raise ServerRefusedError(_last_line(log_path) + ".")
            raise RuntimeError(f"The shared offline server did not start ({_last_line(log_path)}); "
                               f"see {log_path}, or set {MODE_ENV}=inprocess.")
        found = discover(engine)
        if found is not None and found.pid == proc.pid:
            return found
        time.sleep(0.05)
    proc.terminate()
    raise RuntimeError(f"The shared offline server did not answer within "
                       f"{START_TIMEOUT_SECONDS:g} s; see {log_path}, or set {MODE_ENV}=inprocess.")


class ServerRefusedError(RuntimeError):
    """`gemini-magics serve` refused to start with one sentence (e.g. no model installed):
    that sentence is the user's answer."""


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return lines[-1].replace("gemini-magics: error: ", "").rstrip(".")
    return "no log"
