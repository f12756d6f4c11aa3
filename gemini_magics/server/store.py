"""Stored interactions in SQLite (stdlib `sqlite3`), so `previous_interaction_id` chains work.

`:memory:` for the in-process server (dies with the kernel); a file with `--db PATH`, so chains
survive a restart. Bounded, checked on every write (the least recently updated go first):
- at most `max_items` interactions (default 10,000);
- at most `max_bytes` of stored JSON (default 256 MiB; a `/words 20000` stream is ~2.5 MB);
- interactions not updated for `ttl_seconds` (default 7 days) are dropped.
A stored row holds the interaction resource (without steps), this turn's input steps, its
output steps and its SSE events (for `GET ...?stream=true` replay), each as JSON text.
One connection guarded by a lock: the server calls it from the event loop and worker threads.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Optional

DEFAULT_MAX_ITEMS = 10_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_TTL_SECONDS = 7 * 24 * 3600
MAX_CHAIN = 10_000  # a previous_interaction_id chain longer than this is cut (guards cycles)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS interactions (
    id TEXT PRIMARY KEY,
    previous_id TEXT,
    updated_at REAL NOT NULL,
    size INTEGER NOT NULL,
    resource TEXT NOT NULL,
    input TEXT NOT NULL,
    steps TEXT NOT NULL,
    events TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS interactions_updated ON interactions(updated_at);
"""


class Store:
    """Interactions by id; see the module docstring for the bounds."""

    def __init__(self, path: Optional[str] = None, max_items: int = DEFAULT_MAX_ITEMS,
                 ttl_seconds: float = DEFAULT_TTL_SECONDS, max_bytes: int = DEFAULT_MAX_BYTES):
        self.path = path or ":memory:"
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            count, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM interactions").fetchone()
        except sqlite3.Error as e:
            raise ValueError(f"Cannot open the interaction database {self.path!r} ({e}); "
                             f"give a writable SQLite file path with --db.") from None
        self._count, self._bytes = count, size

    def put(self, resource: dict, input_steps: list, steps: list, events: list) -> None:
        """Insert or replace one interaction, then enforce the bounds."""
        now = time.time()
        texts = [_dumps(resource), _dumps(input_steps), _dumps(steps), _dumps(events)]
        size = sum(len(t) for t in texts)
        iid = resource["id"]
        with self._lock:
            self._remove("id = ?", (iid,))
            self._db.execute("INSERT INTO interactions VALUES (?,?,?,?,?,?,?,?)",
                             (iid, resource.get("previous_interaction_id"), now, size, *texts))
            self._count += 1
            self._bytes += size
            self._remove("updated_at < ?", (now - self.ttl_seconds,))
            while self._count > 1 and (self._count > self.max_items
                                       or self._bytes > self.max_bytes):
                excess = max(1, self._count - self.max_items)
                self._remove("id IN (SELECT id FROM interactions ORDER BY updated_at LIMIT ?)",
                             (excess,))

    def _remove(self, where: str, args: tuple) -> None:
        """Delete matching rows, keeping the count and byte totals right (lock held)."""
        n, size = self._db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM interactions WHERE {where}",
            args).fetchone()
        if n:
            self._db.execute(f"DELETE FROM interactions WHERE {where}", args)
            self._count -= n
            self._bytes -= size

    def get(self, interaction_id: str, with_events: bool = False) -> Optional[dict]:
        """{"resource", "input", "steps"[, "events"]} or None when unknown or expired."""
        cols = "resource, input, steps" + (", events" if with_events else "")
        with self._lock:
            row = self._db.execute(
                f"SELECT {cols} FROM interactions WHERE id = ? AND updated_at >= ?",
                (interaction_id, time.time() - self.ttl_seconds)).fetchone()
        if row is None:
            return None
        out = {"resource": json.loads(row[0]), "input": json.loads(row[1]),
               "steps": json.loads(row[2])}
        if with_events:
            out["events"] = json.loads(row[3])
        return out

    def history(self, interaction_id: str) -> Optional[list[dict]]:
        """Every step of the chain ending at `interaction_id`, oldest first (inputs and outputs).

        None if `interaction_id` itself is unknown; a missing older link ends the walk.
        """
        chain = []
        seen = set()
        current: Optional[str] = interaction_id
        while current and current not in seen and len(chain) < MAX_CHAIN:
            seen.add(current)
            item = self.get(current)
            if item is None:
                if not chain:
                    return None
                break
            chain.append(item)
            current = item["resource"].get("previous_interaction_id")
        steps: list[dict] = []
        for item in reversed(chain):
            steps.extend(item["input"])
            steps.extend(item["steps"])
        return steps

    def delete(self, interaction_id: str) -> bool:
        with self._lock:
            before = self._count
            self._remove("id = ?", (interaction_id,))
            return self._count < before

    def count(self) -> int:
        with self._lock:
            return self._count

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
