"""Stored interactions in SQLite (stdlib `sqlite3`), so `previous_interaction_id` chains work.

`:memory:` for the in-process server (dies with the kernel); a file with `--db PATH`, so chains
survive a restart. Bounded, checked on every write (the least recently updated go first):
- at most `max_items` interactions (default 10,000);
- at most `max_bytes` of stored JSON (default 256 MiB; a `/words 20000` stream is ~2.5 MB);
- interactions not updated for `ttl_seconds` (default 7 days) are dropped;
- one interaction may take at most a quarter of `max_bytes` (`row_limit`): a larger one is
  refused (`TooBig`) rather than erasing everything else.
With `key_max_items` / `key_max_bytes` (classroom mode), each owner has its own share: a write
that takes an owner over it drops that owner's own least recently updated rows, never another
owner's, and an interaction bigger than the share is refused. The global bounds still apply
last, to every row (they only bite when the shares add up to more than the store, or for rows
without an owner).
A stored row holds the interaction resource (without steps), this turn's input steps, its
output steps and its SSE events (for `GET ...?stream=true` replay), each as JSON text.
In classroom mode (`classroom.py`) each row also records its `owner` (the digest of the key
that created it) and every read, chain and delete is limited to one owner; a file from before
this column gets it added when opened (rows without an owner belong to no key). The tokens each
key has used are kept in `key_usage` (with its request count, last activity, cost in USD and
tokens at no known price; costs.py), the teacher's
console's changes in `students` (a budget, disabled, and the digests of students added at
runtime: never a key).
One connection guarded by a lock: the server calls it from worker threads, never from the event
loop (a large write holds the lock).

Nothing is claimed that was not kept: a write is one transaction, and one that fails (a full disk,
an I/O error) raises `StoreError` with one sentence, so the turn ends `failed` instead of
`completed`. A `--db` file is checked (`PRAGMA quick_check`) when opened; a damaged one is
refused with a sentence saying how to move it aside.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import sqlite3
import threading
import time
from typing import Any, Callable, Optional

from ..catalog import human_size

log = logging.getLogger(__name__)

DEFAULT_MAX_ITEMS = 10_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_TTL_SECONDS = 7 * 24 * 3600
MAX_CHAIN = 10_000  # a previous_interaction_id chain longer than this is cut (guards cycles)
ROW_SHARE = 4      # one interaction may take at most 1/ROW_SHARE of max_bytes
PRIVATE = 0o600    # the database and its -wal/-shm hold conversations: the owner's only

_SCHEMA = """
CREATE TABLE IF NOT EXISTS interactions (
    id TEXT PRIMARY KEY,
    previous_id TEXT,
    updated_at REAL NOT NULL,
    size INTEGER NOT NULL,
    resource TEXT NOT NULL,
    input TEXT NOT NULL,
    steps TEXT NOT NULL,
    events TEXT NOT NULL,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS interactions_updated ON interactions(updated_at);
CREATE TABLE IF NOT EXISTS key_usage (
    owner TEXT PRIMARY KEY,
    tokens INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS students (
    owner TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    added INTEGER NOT NULL,
    token_budget INTEGER,
    disabled INTEGER NOT NULL
);
"""
_COLUMNS = "id, previous_id, updated_at, size, resource, input, steps, events, owner"


_CHAIN_SQL = """
WITH RECURSIVE chain(id, previous_id, depth) AS (
    SELECT id, previous_id, 0 FROM interactions
    WHERE id = :id AND updated_at >= :oldest AND (:owner IS NULL OR owner = :owner)
    UNION ALL
    SELECT i.id, i.previous_id, c.depth + 1 FROM chain c JOIN interactions i ON i.id = c.previous_id
    WHERE c.depth + 1 < :max AND i.updated_at >= :oldest AND (:owner IS NULL OR i.owner = :owner)
)
SELECT i.input, i.steps FROM chain c JOIN interactions i ON i.id = c.id ORDER BY c.depth DESC
"""

# An owner's rows past its share: keeping the newest first (the row just written before all),
# every row from the first one that no longer fits.
_OWN_EXCESS = """
SELECT id FROM (
    SELECT id, SUM(size) OVER newest AS kept_bytes, ROW_NUMBER() OVER newest AS kept_items
    FROM interactions WHERE owner = :owner
    WINDOW newest AS (ORDER BY id = :id DESC, updated_at DESC ROWS UNBOUNDED PRECEDING)
) WHERE kept_bytes > :bytes OR kept_items > :items
"""


class StoreError(Exception):
    """The database failed a read or a write; the message is one sentence for the client."""


class TooBig(StoreError):
    """One interaction larger than what one interaction (of its owner) may store."""


class _ClassRecords:
    """What classroom mode keeps beside the interactions, in the same database and under the
    same lock (a Store is one): each key's usage, the console's students, and one transaction
    for a caller's own table (agents.py)."""

    _db: sqlite3.Connection
    _lock: Any

    def key_usage(self) -> dict[str, tuple]:
        """What each owner used so far (classroom mode): {owner: (tokens, requests,
        last_active, cost, unpriced_tokens)}."""
        return {owner: rest for owner, *rest in self._read(
            "SELECT owner, tokens, requests, last_active, cost, unpriced_tokens FROM key_usage",
            ())}

    def add_key_usage(self, owner: str, tokens: int, requests: int = 1,
                      cost: Optional[float] = None) -> None:
        """Add ended requests to an owner's usage: their tokens and their `cost` in USD, or
        (None: no known price) their tokens to its unpriced tokens."""
        unpriced = tokens if cost is None else 0
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO key_usage (owner, tokens, requests, last_active, cost, "
                    "unpriced_tokens) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(owner) DO UPDATE SET "
                    "tokens = tokens + excluded.tokens, requests = requests + excluded.requests, "
                    "last_active = excluded.last_active, cost = CASE WHEN excluded.cost IS NULL "
                    "THEN cost ELSE COALESCE(cost, 0) + excluded.cost END, "
                    "unpriced_tokens = unpriced_tokens + excluded.unpriced_tokens",
                    (owner, tokens, requests, time.time(), cost, unpriced))
        except sqlite3.Error as e:
            raise self._failed("record token usage in", e) from None

    def students(self) -> list[tuple]:
        """The console's changes: (owner, label, added, token_budget, disabled) rows."""
        return self._read("SELECT owner, label, added, token_budget, disabled FROM students", ())

    def save_student(self, owner: str, label: str, added: bool, token_budget: Optional[int],
                     disabled: bool) -> None:
        """Keep one student's console settings (and, for one added at runtime, its digest)."""
        try:
            with self._lock:
                self._db.execute("INSERT OR REPLACE INTO students VALUES (?, ?, ?, ?, ?)",
                                 (owner, label, int(added), token_budget, int(disabled)))
        except sqlite3.Error as e:
            raise self._failed("save the student's settings in", e) from None

    def transact(self, action: str, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """`fn(db)` in one transaction under the lock, for agents.py's table; StoreError if not."""
        with self._lock:
            try:
                with self._db:  # commits, or rolls back on any exception
                    self._db.execute("BEGIN IMMEDIATE")
                    return fn(self._db)
            except sqlite3.Error as e:
                raise self._failed(action, e) from None


class Store(_ClassRecords):
    """Interactions by id; see the module docstring for the bounds."""

    def __init__(self, path: Optional[str] = None, max_items: int = DEFAULT_MAX_ITEMS,
                 ttl_seconds: float = DEFAULT_TTL_SECONDS, max_bytes: int = DEFAULT_MAX_BYTES,
                 key_max_items: Optional[int] = None, key_max_bytes: Optional[int] = None):
        self.path = path or ":memory:"
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.key_max_items = key_max_items
        self.key_max_bytes = key_max_bytes
        self.ttl_seconds = ttl_seconds
        self._lock = threading.Lock()
        self._db = None
        try:
            if self.path != ":memory:":
                _make_private(self.path)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            if self.path != ":memory:":
                self._check_integrity()
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                for suffix in ("-wal", "-shm"):  # an older run may have left them readable
                    if os.path.exists(self.path + suffix):
                        _make_private(self.path + suffix)
            self._db.executescript(_SCHEMA)
            self._migrate()
            count, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM interactions").fetchone()
        except (sqlite3.Error, ValueError, OSError) as e:
            if self._db is not None:
                self._db.close()
            if isinstance(e, ValueError):
                raise
            if isinstance(e, OSError):
                raise ValueError(f"Cannot open the interaction database {self.path!r} "
                                 f"({e.strerror}); give a writable SQLite file path with "
                                 f"--db.") from None
            if not isinstance(e, sqlite3.OperationalError):  # "file is not a database", ...
                raise self._damaged(str(e)) from None
            raise ValueError(f"Cannot open the interaction database {self.path!r} ({e}); "
                             f"give a writable SQLite file path with --db.") from None
        self._count, self._bytes = count, size

    def _migrate(self) -> None:
        """Bring a file from an older version up to the schema: add the `owner` column (and
        the index each owner's share is counted by) and key_usage's later columns (the
        tokens a key used before costs were kept count as tokens at no known price)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(interactions)")}
        if "owner" not in columns:
            self._db.execute("ALTER TABLE interactions ADD COLUMN owner TEXT")
        self._db.execute("CREATE INDEX IF NOT EXISTS interactions_owner "
                         "ON interactions(owner, updated_at)")
        usage = {row[1] for row in self._db.execute("PRAGMA table_info(key_usage)")}
        for column, kind in (("requests", "INTEGER NOT NULL DEFAULT 0"), ("last_active", "REAL"),
                             ("cost", "REAL"), ("unpriced_tokens", "INTEGER NOT NULL DEFAULT 0")):
            if column not in usage:
                self._db.execute(f"ALTER TABLE key_usage ADD COLUMN {column} {kind}")
                if column == "unpriced_tokens":
                    self._db.execute("UPDATE key_usage SET unpriced_tokens = tokens")

    def _check_integrity(self) -> None:
        """Refuse a damaged file now rather than answer 500s later (quick_check reads every
        page once: ~1 s for a full 256 MiB store)."""
        rows = self._db.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            raise self._damaged(" ".join(str(r[0]) for r in rows[:3]))

    def _damaged(self, detail: str) -> ValueError:
        detail = " ".join(detail.split())
        detail = detail if len(detail) <= 120 else detail[:120] + "..."
        q = shlex.quote(self.path)
        return ValueError(
            f"The interaction database {self.path!r} is damaged ({detail}); move it aside with "
            f"`mv {q} {q}.damaged` (and its -wal and -shm files, if any) and start again for an "
            f"empty one, or give another --db.")

    def _failed(self, action: str, e: Exception) -> StoreError:
        where = "its in-memory database" if self.path == ":memory:" else repr(self.path)
        fix = ("free disk space there or restart the server with another --db"
               if self.path != ":memory:" else "restart the server")
        detail = " ".join(str(e).split())[:160] or type(e).__name__
        if action == "write":
            return StoreError(f"The local server could not store this interaction in {where} "
                              f"({detail}), so it was not kept; {fix}, then re-run.")
        return StoreError(f"The local server could not {action} {where} ({detail}); {fix}, "
                          f"then try again.")

    def put(self, resource: dict, input_steps: list, steps: list, events: list,
            owner: Optional[str] = None) -> None:
        """Insert or replace one interaction (of `owner`, None: nobody's) and enforce the bounds,
        in one transaction: it is stored when this returns, and not at all when it raises
        StoreError."""
        now = time.time()
        try:
            texts = [_dumps(resource), _dumps(input_steps), _dumps(steps), _dumps(events)]
        except ValueError as e:  # NaN from a bug: never store what GET could not send
            raise self._failed("write", e) from None
        size = sum(len(t) for t in texts)
        self.check_size(size, owner)
        iid = resource["id"]
        with self._lock:
            before = self._count, self._bytes
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._remove("id = ?", (iid,))
                self._db.execute(f"INSERT INTO interactions ({_COLUMNS}) VALUES "
                                 f"(?,?,?,?,?,?,?,?,?)",
                                 (iid, resource.get("previous_interaction_id"), now, size, *texts,
                                  owner))
                self._count += 1
                self._bytes += size
                self._remove("updated_at < ?", (now - self.ttl_seconds,))
                if owner is not None and self._shared():
                    self._remove(f"id IN ({_OWN_EXCESS})", {
                        "owner": owner, "id": iid, "bytes": self.key_max_bytes or self.max_bytes,
                        "items": self.key_max_items or self.max_items})
                while self._count > 1 and (self._count > self.max_items
                                           or self._bytes > self.max_bytes):
                    excess = max(1, self._count - self.max_items)
                    self._remove("id IN (SELECT id FROM interactions ORDER BY updated_at "
                                 "LIMIT ?)", (excess,))
                self._db.execute("COMMIT")
            except (sqlite3.Error, UnicodeError) as e:
                self._count, self._bytes = before
                self._rollback()
                raise self._failed("write", e) from None

    def _shared(self) -> bool:
        """Whether owners have shares of their own (classroom mode)."""
        return self.key_max_items is not None or self.key_max_bytes is not None

    def row_limit(self, owner: Optional[str] = None) -> int:
        """The most one interaction (of `owner`) may store, in characters of JSON."""
        limit = self.max_bytes // ROW_SHARE
        if owner is not None and self.key_max_bytes is not None:
            limit = min(limit, self.key_max_bytes)
        return limit

    def check_size(self, size: int, owner: Optional[str] = None) -> None:
        """Raise TooBig (one sentence) if an interaction of `size` cannot be stored at all,
        however many rows were dropped for it."""
        limit = self.row_limit(owner)
        if size <= limit:
            return
        if owner is not None and self.key_max_bytes is not None \
                and self.key_max_bytes <= self.max_bytes // ROW_SHARE:
            whose, fix = ("this key's storage quota", "; send less (large media by 'uri'), use "
                          "store=false, or ask whoever runs this server to raise "
                          "--key-storage-mb")
        else:
            whose, fix = ("what one interaction may take on this server", "; send less (large "
                          "media by 'uri') or use store=false")
        raise TooBig(f"This interaction needs {human_size(size)} of storage, more than "
                     f"{whose} ({human_size(limit)}), so it cannot be kept{fix}.")

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolls back by itself when the transaction cannot continue

    def _remove(self, where: str, args: Any) -> None:
        """Delete matching rows, keeping the count and byte totals right (lock held)."""
        n, size = self._db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM interactions WHERE {where}",
            args).fetchone()
        if n:
            self._db.execute(f"DELETE FROM interactions WHERE {where}", args)
            self._count -= n
            self._bytes -= size

    def get(self, interaction_id: str, with_events: bool = False,
            owner: Optional[str] = None) -> Optional[dict]:
        """{"resource", "input", "steps"[, "events"]} or None when unknown, expired or (with
        `owner`) someone else's."""
        cols = "resource, input, steps" + (", events" if with_events else "")
        mine, args = _owned(owner)
        row = self._read(f"SELECT {cols} FROM interactions WHERE id = ? AND updated_at >= ?"
                         f"{mine}", (interaction_id, time.time() - self.ttl_seconds, *args))
        row = row[0] if row else None
        if row is None:
            return None
        out = {"resource": json.loads(row[0]), "input": json.loads(row[1]),
               "steps": json.loads(row[2])}
        if with_events:
            out["events"] = json.loads(row[3])
        return out

    def history(self, interaction_id: str,
                owner: Optional[str] = None) -> Optional[list[dict]]:
        """Every step of the chain ending at `interaction_id`, oldest first (inputs and outputs).

        None if `interaction_id` itself is unknown (or, with `owner`, someone else's); a
        missing, expired or (with `owner`) foreign older link ends the chain. One query (a
        recursive CTE), at most MAX_CHAIN links (which also ends a cycle).
        """
        oldest = time.time() - self.ttl_seconds
        rows = self._read(_CHAIN_SQL, {"id": interaction_id, "oldest": oldest, "max": MAX_CHAIN,
                                       "owner": owner})
        if not rows:
            return None
        steps: list[dict] = []
        for input_text, steps_text in rows:
            steps.extend(json.loads(input_text))
            steps.extend(json.loads(steps_text))
        return steps

    def _read(self, sql: str, args) -> list:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise self._failed("read", e) from None

    def delete(self, interaction_id: str, owner: Optional[str] = None) -> bool:
        """Remove one interaction (with `owner`: only theirs); whether there was one."""
        mine, args = _owned(owner)
        with self._lock:
            before = self._count, self._bytes
            try:
                self._remove("id = ?" + mine, (interaction_id, *args))
            except sqlite3.Error as e:
                self._count, self._bytes = before
                raise self._failed("delete from", e) from None
            return self._count < before[0]

    def interactions_of(self, owner: str, limit: int) -> list[dict]:
        """One owner's newest `limit` interactions, newest first: {"resource", "input",
        "steps"} each (the teacher's console)."""
        rows = self._read("SELECT resource, input, steps FROM interactions WHERE owner = ? "
                          "AND updated_at >= ? ORDER BY updated_at DESC LIMIT ?",
                          (owner, time.time() - self.ttl_seconds, limit))
        return [{"resource": json.loads(r), "input": json.loads(i), "steps": json.loads(s)}
                for r, i, s in rows]

    def count(self) -> int:
        with self._lock:
            return self._count

    def close(self) -> None:
        with self._lock:
            self._db.close()



def size_at_least(value: Any) -> int:
    """A lower bound of `value`'s size as stored (the characters of its strings), cheap enough
    for the event loop: whether a request's input alone can fit before it runs."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(k) + size_at_least(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(size_at_least(v) for v in value)
    return 0


def _make_private(path: str) -> None:
    """Create the database file owner-only, or make an existing one so (SQLite then creates
    its -wal and -shm files with the same mode)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE)
    try:
        os.fchmod(fd, PRIVATE)
    except PermissionError:  # another user's file we may write: theirs to protect
        log.warning("cannot make %s private (owner only): it belongs to another user", path)
    finally:
        os.close(fd)


def _owned(owner: Optional[str]) -> tuple[str, tuple]:
    """The extra WHERE condition (and its argument) limiting rows to `owner` (None: any)."""
    return ("", ()) if owner is None else (" AND owner = ?", (owner,))


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
