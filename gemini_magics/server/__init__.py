"""The local Interactions API server: the offline default of the magics and the test backend.

Public face:
    srv = start_server(engine="echo" | "local" | Engine, db=None | path, host="127.0.0.1",
                       port=0, api_key=None, allow_code_execution=False)
    srv.base_url   # "http://127.0.0.1:PORT" (the SDKs append /v1/interactions themselves)
    srv.api_key    # what clients must send as x-goog-api-key (None: anything goes)
    srv.stop()     # also a context manager
    start_server(..., keys=KeyRing.from_file(PATH, rate=N, tokens=N))  # classroom mode:
                   # one key per student, isolated interactions, per-key quotas (classroom.py)
    start_server(..., keys=..., teacher_key=KEY)  # and the teacher's console (teacher.py)
    start_server(..., certfile=PEM, keyfile=PEM)  # HTTPS (a warning when keys go over plain
                   # HTTP to a host other machines reach)
    start_server(..., storage_mb=256, max_items=10_000,     # the store's bounds, and in
                 key_storage_mb=None, key_items=None)       # classroom mode each key's share
                   # (default: the bounds / the number of keys; store.py)
    default_server()  # one lazily started server per process, used when no API key is set;
                      # locked with a random key (new_api_key()) that only this process holds
    sandbox_refusal()  # None if code execution can run here, else the sentence saying why not

Code execution (`sandbox`) runs on loopback servers; one that other machines can reach runs no
code unless started with `allow_code_execution=True` (`serve --allow-code-execution`): a request
that would run code there (the code_execution tool, or any agent) gets a 400 saying so.

Why a background thread of the calling process and not a child process: nothing to manage
(no pid files, no orphan when a kernel is killed: the thread dies with it), the store stays an
in-memory SQLite, and startup costs no second interpreter. Several kernels still do not each pay
for the model in RAM: the local engine's GGUF weights are mmapped read-only, so every process
maps the same page-cache pages and only its small KV cache is private.
"""
from __future__ import annotations

import atexit
import logging
import math
import os
import re
import secrets
import socket
import ssl
import threading
import time
from typing import Any, Optional, Union

from ..catalog import is_loopback
from .app import InteractionService
from .classroom import KeyRing
from .engines import Engine, make_engine
from .http_guard import http_protocol, server_class
from .producers.agent import runs_code
from .protocol import ApiError, CreateRequest
from .routes import create_app
from .sandbox import sandbox_refusal
from .store import DEFAULT_MAX_BYTES, DEFAULT_MAX_ITEMS, Store, TooBig, size_at_least

log = logging.getLogger(__name__)
# Library code: stay silent unless the application configures logging (a kernel would otherwise
# print our warnings into cell output). The CLI configures it for the terminal.
log.addHandler(logging.NullHandler())

START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 15
ENGINE_ENV = "GEMINI_MAGICS_ENGINE"


def new_api_key() -> str:
    """A random key for a server that only its starter may use (the magics' embedded one)."""
    return secrets.token_urlsafe(32)


def _calls_mcp(req: CreateRequest) -> bool:
    return any(isinstance(t, dict) and t.get("type") == "mcp_server" for t in req.tools or [])


class _Service(InteractionService):
    """The routes' service, refusing turns that would run code when this server may not."""

    def __init__(self, *args, code_execution: bool = True, host: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.code_execution = code_execution
        self._host = host

    def start(self, req: CreateRequest, history: list[dict], student=None):
        # A 400 and not a failed tool step: this is the server's policy, known before the turn
        # starts, so nothing is stored and no model answers around a tool that never ran.
        if not self.code_execution and runs_code(req):
            raise ApiError(400, f"This server runs no code: it listens on {self._host}, which "
                                f"other machines can reach, and was started without "
                                f"--allow-code-execution; drop the code_execution tool (agents "
                                f"always run code) or restart the server with that flag.")
        if not is_loopback(self._host) and _calls_mcp(req):
            # An MCP call is an HTTP request from this machine to one of its loopback ports: from
            # a server other machines reach, that would let any client knock on them.
            raise ApiError(400, f"This server calls no MCP servers: it listens on {self._host}, "
                                f"which other machines can reach; drop the mcp_server tool, or run "
                                f"the MCP server and gemini-magics serve on your own machine.")
        if req.store:  # an input that alone cannot be kept is refused before it runs
            try:
                self.store.check_size(size_at_least(req.input_steps),
                                      None if student is None else student.id)
            except TooBig as e:
                raise ApiError(413, str(e)) from None
        return super().start(req, history, student=student)


class _Activity:
    """ASGI wrapper counting HTTP requests in flight and when the last one ended (all on the
    server's one event loop thread). `state` is the app's, which the HTTP protocol reads."""

    def __init__(self, app: Any):
        self.app = app
        self.state = app.state
        self.inflight = 0
        self.last = time.monotonic()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
            self.last = time.monotonic()


class LocalServer:
    """A uvicorn server on a background thread; `base_url` is set once it accepts connections.

    Code (in the sandbox) runs on a loopback host, and on another only with
    `allow_code_execution=True`.
    """

    def __init__(self, engine: Union[str, Engine] = "local", db: Optional[str] = None,
                 host: str = "127.0.0.1", port: int = 0, api_key: Optional[str] = None,
                 model_path: Optional[str] = None, allow_code_execution: bool = False,
                 keys: Optional[KeyRing] = None, storage_mb: Optional[float] = None,
                 max_items: Optional[int] = None, key_storage_mb: Optional[float] = None,
                 key_items: Optional[int] = None, teacher_key: Optional[str] = None,
                 certfile: Optional[str] = None, keyfile: Optional[str] = None):
        import uvicorn  # deferred: ~0.1 s, paid only by code that starts a server

        limits = _store_limits(keys, storage_mb, max_items, key_storage_mb, key_items)

        if keys is not None and api_key:
            raise ValueError("Give either --keys (a key per student) or --api-key (one key for "
                             "everyone), not both.")
        if not is_loopback(host) and not api_key and keys is None:
            raise ValueError(f"Host {host!r} is reachable from other machines: give an API key "
                             f"(--api-key) that clients must send, or bind to 127.0.0.1.")
        if teacher_key is not None and keys is None:
            raise ValueError("The teacher's console (--teacher-key-env) goes with --keys FILE "
                             "(classroom mode).")
        tls = _tls_files(certfile, keyfile)
        if not tls and not is_loopback(host) and (api_key or keys is not None):
            log.warning("keys are sent in plain HTTP to %s, which other machines can reach: "
                        "anyone on the network can read them; serve with --certfile and "
                        "--keyfile (TLS)", host)
        sock = _bind(host, port)
        self.host = host
        self.port = sock.getsockname()[1]
        self.base_url = f"{'https' if tls else 'http'}://{_url_host(host)}:{self.port}"
        self._owns_engine = not isinstance(engine, Engine)
        try:
            self.engine = make_engine(engine, model_path=model_path)
            self.store = Store(db, **limits)
        except BaseException:
            sock.close()
            raise
        self._api_key = api_key or None
        self.code_execution = is_loopback(host) or bool(allow_code_execution)
        self.keys = keys
        try:
            self.service = _Service(self.engine, self.store, api_key=self._api_key,
                                    code_execution=self.code_execution, host=host, keys=keys)
        except BaseException:
            sock.close()
            self.store.close()
            if self._owns_engine:
                self.engine.close()
            raise
        # log_config=None: do not let uvicorn reconfigure the host process's logging (a kernel's).
        # No access log: request lines are noise, and a key sent as ?key= must never be logged.
        # http_protocol(): deadlines for heads, idle and stalled readers, JSON 400s (http_guard.py).
        try:
            self._activity = _Activity(create_app(self.service, teacher_key=teacher_key))
        except ValueError:
            sock.close()
            self.service.shutdown()
            self.store.close()
            if self._owns_engine:
                self.engine.close()
            raise
        config = uvicorn.Config(self._activity, http=http_protocol(), log_config=None,
                                log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=3, **tls)
        self._server = server_class()(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"gemini-magics-server-{self.port}", daemon=True)
        self._stopped = False
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"The local server did not start on {self.base_url}; "
                                   f"see the log above.")
            time.sleep(0.01)

    def stop(self) -> None:
        """Cancel running turns, stop serving, release the engine (if we made it) and store."""
        if self._stopped:
            return
        self._stopped = True
        for rec in list(self.service.live.values()):
            rec.cancel_requested.set()
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT_SECONDS)
        self.service.shutdown()
        if self._owns_engine:
            self.engine.close()
        self.store.close()

    def idle_seconds(self) -> float:
        """Seconds since the last request ended, with no request and no turn running (0 while
        busy): a shared server exits after a long idle time (`serve --idle-exit`)."""
        if self._activity.inflight or self.service.live:
            return 0.0
        return time.monotonic() - self._activity.last

    @property
    def api_key(self) -> Optional[str]:
        """The x-goog-api-key clients must send (None: any). Never part of repr or errors."""
        return self._api_key

    @property
    def running(self) -> bool:
        return not self._stopped and self._thread.is_alive()

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LocalServer {self.base_url} engine={self.engine.name}>"


def start_server(engine: Union[str, Engine] = "local", db: Optional[str] = None,
                 host: str = "127.0.0.1", port: int = 0, api_key: Optional[str] = None,
                 model_path: Optional[str] = None,
                 allow_code_execution: bool = False,
                 keys: Optional[KeyRing] = None, storage_mb: Optional[float] = None,
                 max_items: Optional[int] = None, key_storage_mb: Optional[float] = None,
                 key_items: Optional[int] = None, teacher_key: Optional[str] = None,
                 certfile: Optional[str] = None, keyfile: Optional[str] = None) -> LocalServer:
    """Start a server on a background thread; returns once its socket accepts connections.

    `api_key=None` serves anyone who reaches the port (allowed on loopback only, as for
    `gemini-magics serve`); a server only its starter should use takes `new_api_key()`.
    `keys` (instead of `api_key`): classroom mode, see `classroom.py`. `storage_mb` and
    `max_items` bound the store (`serve --storage-mb`, `--max-items`); `key_storage_mb` and
    `key_items` give each key its own share of it (`--key-storage-mb`, `--key-items`;
    default: the bounds divided by the number of keys), so no key can erase another's.
    `teacher_key` (with `keys`) opens the teacher's console at `/teacher` (`teacher.py`);
    `certfile` and `keyfile` (PEM) serve HTTPS (`base_url` then starts with https).
    """
    return LocalServer(engine=engine, db=db, host=host, port=port, api_key=api_key,
                       model_path=model_path, allow_code_execution=allow_code_execution,
                       keys=keys, storage_mb=storage_mb, max_items=max_items,
                       key_storage_mb=key_storage_mb, key_items=key_items,
                       teacher_key=teacher_key, certfile=certfile, keyfile=keyfile)


_MIB = 1024 * 1024


def _store_limits(keys: Optional[KeyRing], storage_mb: Optional[float],
                  max_items: Optional[int], key_storage_mb: Optional[float],
                  key_items: Optional[int]) -> dict:
    """The Store's bounds from the server's options (ValueError: one sentence naming one)."""
    for flag, value, whole in (("--storage-mb", storage_mb, False),
                               ("--max-items", max_items, True),
                               ("--key-storage-mb", key_storage_mb, False),
                               ("--key-items", key_items, True)):
        if value is None:
            continue
        kind = int if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not 0 < value < math.inf:
            what = "a whole number of at least 1" if whole else "a number of MiB above 0"
            raise ValueError(f"{flag} must be {what}, not {value!r}.")
    if keys is None and (key_storage_mb is not None or key_items is not None):
        raise ValueError("--key-storage-mb and --key-items go with --keys FILE (classroom mode).")
    limits = {"max_bytes": int(storage_mb * _MIB) if storage_mb else DEFAULT_MAX_BYTES,
              "max_items": max_items or DEFAULT_MAX_ITEMS}
    if keys is not None:
        limits["key_max_bytes"] = (int(key_storage_mb * _MIB) if key_storage_mb
                                   else limits["max_bytes"] // len(keys))
        limits["key_max_items"] = key_items or max(1, limits["max_items"] // len(keys))
    return limits


def _tls_files(certfile: Optional[str], keyfile: Optional[str]) -> dict:
    """uvicorn's TLS settings for a PEM certificate and its key ({}: plain HTTP); ValueError
    (one sentence) when one is missing or unreadable."""
    if certfile is None and keyfile is None:
        return {}
    if not certfile or not keyfile:
        raise ValueError("Give both --certfile and --keyfile (PEM files) to serve HTTPS.")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as e:
        reason = getattr(e, "strerror", None) or getattr(e, "reason", None) or "not PEM"
        raise ValueError(f"Cannot use --certfile {certfile!r} with --keyfile {keyfile!r} "
                         f"({reason}); give a PEM certificate and its private key.") from None
    return {"ssl_certfile": certfile, "ssl_keyfile": keyfile}


_default: Optional[LocalServer] = None
_default_lock = threading.Lock()


def default_server() -> LocalServer:
    """The process-wide server the magics use when no API key is set (started on first use).

    Engine from env GEMINI_MAGICS_ENGINE ("local" by default, or "echo"). Locked with a random
    key (`.api_key`) held only in this process: other local processes and users cannot use it.
    """
    global _default
    with _default_lock:
        if _default is None or not _default.running:
            _default = start_server(engine=os.environ.get(ENGINE_ENV, "local") or "local",
                                    api_key=new_api_key())
            atexit.register(_default.stop)
        return _default


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno in (98, 48):  # EADDRINUSE on Linux / macOS
            raise OSError(e.errno, f"Port {port} on {host} is already in use; pick another "
                                   f"with --port (0 picks a free one) or stop the other "
                                   f"server.") from None
        raise OSError(e.errno, f"Cannot listen on {host}:{port} ({e.strerror}); check --host "
                               f"and --port.") from None
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


__all__ = ["LocalServer", "start_server", "default_server", "is_loopback", "new_api_key",
           "sandbox_refusal", "KeyRing"]
