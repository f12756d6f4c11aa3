"""Which backend answers, the lazily built google-genai client, and the door to the server.

`import google.genai` costs about a second, so nothing here imports it until the first
request. With GEMINI_API_KEY or GOOGLE_API_KEY set, requests go to the real API; without one
(or with the `offline` setting), to the local offline server, announced once by a notice.
The embedded server is locked with a random key that only this process knows (other local
processes or users cannot make it run code); the client sends it, `redact` hides it.
The clients and embedded servers belong to a Session (session.py): the caller's, else the
current one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from .compat import reuse_sdk_model_classes
from .redact import KEY_ENV_VARS, redact, redact_live, remember
from .server_process import server_mode, shared_server
from .session import Session, current

ENGINE_ENV = "GEMINI_MAGICS_ENGINE"  # the offline engine when no setting names one

__all__ = [
    "Backend", "resolve_backend", "answers_offline", "get_client", "redact", "redact_live",
    "OFFLINE_NOTICE", "LOCAL_API_KEY", "REPLAY_BASE_URL",
]

# redact and redact_live live in redact.py; they are named here too because display.py and
# runner.py still import them from this module.

# For servers that need no key (replay, `gemini-magics serve` on loopback); the SDK insists on one.
LOCAL_API_KEY = "local-offline-no-key"
OFFLINE_NOTICE = (
    "Note: no GEMINI_API_KEY is set, so answers come from the local offline model "
    "(a small model running here, not Gemini); set GEMINI_API_KEY and re-run to use the real API."
)

# Replay answers from the cassette and never connects; the host is ignored when matching.
REPLAY_BASE_URL = "http://replay.invalid"


@dataclass(frozen=True)
class Backend:
    kind: str                  # "api" (Google), "local" (embedded server), "custom" (base_url)
                               # or "replay" (answers from a cassette, no network)
    base_url: Optional[str]    # None: the SDK's default (Google)
    api_key: str
    attempts: int              # HTTP attempts per request, retries included
    timeout: Optional[float]   # seconds per HTTP request, None: the SDK default

    @property
    def label(self) -> str:
        if self.kind == "api":
            return "Gemini API"
        if self.kind == "local":
            return f"local offline server at {self.base_url}"
        if self.kind == "replay":
            return "the replay cassette"
        return self.base_url or "custom endpoint"

    def __repr__(self) -> str:  # never show the key
        return f"Backend(kind={self.kind!r}, base_url={self.base_url!r}, api_key='***')"


def env_api_key() -> Optional[str]:
    for name in KEY_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _local_server(engine: Optional[str], mode: Optional[str], session: Session) -> Any:
    """The offline server for `engine`: the user's shared server process (server_process.py),
    or with mode "inprocess" one embedded in this process; locked with a random key either way
    (only this user's kernels, or only this process, hold it), which redaction then hides."""
    if server_mode(mode) == "shared":
        server = shared_server(engine or os.environ.get(ENGINE_ENV, "").strip() or "local")
        remember(server.api_key)
        return server
    # deferred: starlette, uvicorn; only without a key
    from .server import default_server, new_api_key, start_server

    if not engine:
        server = default_server()
    else:
        with session.lock:
            server = session.servers.get(engine)
            if server is None or not server.running:
                server = start_server(engine=engine, api_key=new_api_key())
                session.servers[engine] = server
    remember(server.api_key)
    return server


def find_local_model() -> str:
    """The local model's weights file (ImportError when the local runtime is not installed);
    the magics know the server only through this module."""
    # deferred: starlette, uvicorn (the server package); only for the offline backend
    from .server.engines.local import find_model

    return find_model()


def resolve_backend(settings: Mapping[str, Any],
                    session: Optional[Session] = None) -> tuple[Backend, Optional[str]]:
    """(backend, notice): the notice is set when answers come from the local offline model
    and `session` has not said it yet (once per kernel, whichever shows it first: a cell or
    the panel).

    A cassette in replay mode wins over everything: no key, server or base_url is needed,
    so a replayed notebook runs on a machine with no network and no model.
    """
    session = session or current()
    attempts = int(settings.get("retries") or 0) + 1
    timeout = settings.get("timeout") or None
    cassette = session.current_cassette()
    if cassette is not None and cassette.mode == "replay":
        return Backend("replay", REPLAY_BASE_URL, LOCAL_API_KEY, 1, timeout), None
    key = env_api_key()
    remember(key)
    base_url = (settings.get("base_url") or "").strip() or None
    if base_url:
        return Backend("custom", base_url.rstrip("/"), key or LOCAL_API_KEY, attempts, timeout), None
    if key and not settings.get("offline"):
        return Backend("api", None, key, attempts, timeout), None
    server = _local_server(settings.get("engine") or None, settings.get("server") or None, session)
    said = settings.get("offline") or not session.once(OFFLINE_NOTICE)
    notice = None if said else OFFLINE_NOTICE
    # A local server does not fail transiently: one attempt, no backoff waits.
    return Backend("local", server.base_url.rstrip("/"), server.api_key or LOCAL_API_KEY, 1,
                   timeout), notice


def answers_offline(settings: Mapping[str, Any], session: Optional[Session] = None) -> bool:
    """Whether `resolve_backend(settings)` picks the embedded local server (no key or the
    `offline` setting; no base_url, no replay), told without starting it."""
    try:
        cassette = (session or current()).current_cassette()
    except Exception:  # noqa: BLE001 - a bad cassette setting: resolve_backend says it
        return False
    if cassette is not None and cassette.mode == "replay":
        return False
    if (settings.get("base_url") or "").strip():
        return False
    return bool(settings.get("offline")) or env_api_key() is None


def get_client(backend: Backend, session: Optional[Session] = None) -> Any:
    """A `google.genai.Client` for `backend` (through the session's cassette, if any), built
    on first use and then reused by the session."""
    session = session or current()
    cassette = session.current_cassette()
    cache_key = (backend.base_url, backend.api_key, backend.attempts, backend.timeout,
                 id(cassette) if cassette is not None else None)
    with session.lock:
        client = session.clients.get(cache_key)
        if client is not None:
            return client
    from google import genai  # deferred: google.genai
    from google.genai import types  # deferred: google.genai

    reuse_sdk_model_classes()
    options: dict = {"retry_options": types.HttpRetryOptions(attempts=backend.attempts)}
    if backend.base_url:
        options["base_url"] = backend.base_url
    if backend.timeout:
        options["timeout"] = int(backend.timeout * 1000)
    http_options = types.HttpOptions(**options)
    if cassette is not None:
        http_options = cassette.http_options(http_options)
    client = genai.Client(api_key=backend.api_key, http_options=http_options)
    with session.lock:
        return session.clients.setdefault(cache_key, client)

