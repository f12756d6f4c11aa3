"""The `--over` row cache: every finished row on disk, so a re-run sends only the rows not done.

One SQLite file (`rows.sqlite`) in the folder from env GEMINI_MAGICS_CACHE_DIR, else the
`cache_dir` setting, else the user's cache folder (`$XDG_CACHE_HOME/gemini-magics`,
`~/.cache/gemini-magics`). A row is keyed by a digest of its canonical request (`request_key`):
the backend's kind, model, system instruction, generation config, tools, response format and the
rendered prompt, with inline media replaced by their SHA-256; never the API key. Only rows that
completed are kept: a failed row is sent again next time. `gemini_magics.cache` is the default
cache (`len()`, `.path`, `.clear()`).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional

__all__ = ["RowCache", "cache_dir", "open_cache", "request_key", "CACHE_ENV", "DefaultCache"]

CACHE_ENV = "GEMINI_MAGICS_CACHE_DIR"
FILE_NAME = "rows.sqlite"
_SCHEMA = ("CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
           "created REAL NOT NULL)")
# Body fields a row's answer depends on; `store` and the like do not change it.
_KEYED = ("model", "agent", "system_instruction", "generation_config", "tools", "response_format",
          "input")


def cache_dir(setting: Optional[str] = None) -> Path:
    """Where the cache lives: env GEMINI_MAGICS_CACHE_DIR, the setting, the user's cache dir."""
    chosen = os.environ.get(CACHE_ENV, "").strip() or (setting or "").strip()
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "gemini-magics"


def _digested(value: Any) -> Any:
    """`value` with inline media data replaced by its digest (a key stays small)."""
    if isinstance(value, list):
        return [_digested(v) for v in value]
    if isinstance(value, dict):
        return {k: ({"sha256": hashlib.sha256(str(v).encode()).hexdigest()}
                    if k == "data" and isinstance(v, (str, bytes)) else _digested(v))
                for k, v in value.items()}
    return value


def request_key(body: Mapping[str, Any], backend: str) -> str:
    """The cache key of one row: a digest of its canonical request on `backend` (a label
    without secrets, e.g. "local:echo" or the base URL)."""
    canon = {k: _digested(body[k]) for k in _KEYED if k in body}
    canon["backend"] = backend
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class RowCache:
    """One cache file, shared by the worker threads of a run (one connection, one lock)."""

    def __init__(self, path: Any):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: Optional[sqlite3.Connection] = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            db.commit()
            self._db = db
        return self._db

    def get(self, key: str) -> Optional[dict]:
        with self._lock:
            row = self._conn().execute("SELECT value FROM rows WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_many(self, keys: list) -> dict:
        """{key: value} of the keys found (one query per 500 keys)."""
        found: dict = {}
        with self._lock:
            db = self._conn()
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for k, v in db.execute(f"SELECT key, value FROM rows WHERE key IN ({marks})",
                                       chunk):
                    found[k] = json.loads(v)
        return found

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        text = json.dumps(value, separators=(",", ":"), default=str)
        with self._lock:
            db = self._conn()
            db.execute("INSERT OR REPLACE INTO rows (key, value, created) VALUES (?, ?, ?)",
                       (key, text, time.time()))
            db.commit()

    def __len__(self) -> int:
        if not self.path.exists():
            return 0
        with self._lock:
            return self._conn().execute("SELECT COUNT(*) FROM rows").fetchone()[0]

    def clear(self) -> int:
        """Forget every row; returns how many there were."""
        n = len(self)
        if n:
            with self._lock:
                db = self._conn()
                db.execute("DELETE FROM rows")
                db.commit()
                db.execute("VACUUM")
        return n

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __repr__(self) -> str:
        return f"<RowCache {self.path}: {len(self)} rows>"


# A process cache, not session state: the cache is a file shared by every session (and kernel),
# and one RowCache per file keeps its one connection and lock for all the threads writing rows.
_open: dict = {}
_open_lock = threading.Lock()


def open_cache(setting: Optional[str] = None) -> RowCache:
    """The cache of the current folder choice (one object per file in this process)."""
    path = cache_dir(setting) / FILE_NAME
    with _open_lock:
        cache = _open.get(path)
        if cache is None:
            cache = _open[path] = RowCache(path)
        return cache


class DefaultCache:
    """`gemini_magics.cache`: the cache the next `--over` run uses, looked up on every call (so
    a changed GEMINI_MAGICS_CACHE_DIR or cache_dir setting is followed)."""

    def __init__(self, setting: Any = None):
        self._setting = setting  # a callable giving the cache_dir setting, or None

    def _cache(self) -> RowCache:
        return open_cache(self._setting() if callable(self._setting) else None)

    @property
    def path(self) -> Path:
        return self._cache().path

    def __len__(self) -> int:
        return len(self._cache())

    def clear(self) -> int:
        """Forget every cached row; returns how many there were."""
        return self._cache().clear()

    def __repr__(self) -> str:
        return f"<gemini_magics row cache {self.path}: {len(self)} rows>"
