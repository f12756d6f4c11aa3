"""Classroom mode: one API key per student, each with its own interactions and quotas.

`gemini-magics serve --keys FILE [--key-rate N] [--key-tokens N]`. The keys file is UTF-8 text,
one key a line; blank lines and lines starting with `#` are skipped; a key may carry a label
(who it is for) before a colon:

    # period 3
    alice: 5mQ1v9wKp3TgX2rB7yZc
    bob:   Hq8sLd0Vn4Ue6WjA1fRo
    Yt3kP9bN2cM7xQ5zR8wD        <- no label: it is called "line 4"

A key is at least 16 characters, without whitespace or `:`; a label is at most 64 letters,
digits or `_ . @ -`. Keys and labels must each be unique. `gemini-magics keys alice bob` prints
such lines with fresh random keys.

Only each key's SHA-256 digest is kept (its `id`; a fast hash is enough for random keys of this
length): the file's text is dropped once read, a request's key is hashed and looked up, and no
key is ever logged. The digest is what the store records as an interaction's owner.

A request sends its key as `x-goog-api-key` (the SDKs, the magics) or `?key=`; none, or an
unknown one, is a 401. Per key:
- `rate`: at most N creates (requests to start a turn, counted before their body is read) in
  any 60 s; the next one is a 429
  `RESOURCE_EXHAUSTED` with `Retry-After` and a `google.rpc.RetryInfo` detail. Reads (get,
  stream again, cancel, delete) are not counted: they cost no tokens.
- `tokens`: a budget of total tokens (`usage.total_tokens` of its finished turns, cancelled
  and failed ones included); once used up every create is a 429. A turn started under budget
  runs to its end, so the budget can be overrun by the turns in flight at that moment. With a
  `--db` file the tokens used are stored there and survive a restart. A turn that fails is
  charged what its engine had already spent (`turns.MeteredEngine`).
- storage: a share of the store (`--key-storage-mb`, `--key-items`; by default the store's
  bounds divided by the number of keys). A key over its share loses its own least recently
  updated interactions, never another key's; one interaction bigger than the share is refused
  in one sentence (a 413 when its input alone is too big). The store enforces it (`store.py`).

The teacher's console (`teacher.py`) changes a key at runtime: its own token budget (instead of
`--key-tokens`), disabled (its next request is a 401), or a new student with a fresh key
(`add`). Each change takes effect at once; the store keeps it (`students` table, digests only).
"""
from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections import deque
from typing import Callable, Iterable, Optional

from .protocol import ApiError

__all__ = ["KeyRing", "Student", "QuotaError", "new_keys_text", "RATE_WINDOW_SECONDS"]

RATE_WINDOW_SECONDS = 60.0
MIN_KEY_CHARS = 16
_LABEL = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def key_id(key: str) -> str:
    """The digest a key is known by (hex SHA-256)."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


class QuotaError(ApiError):
    """A 429 RESOURCE_EXHAUSTED; with `retry_after` (seconds) also a Retry-After header and a
    google.rpc.RetryInfo detail, as Google sends them."""

    def __init__(self, message: str, retry_after: Optional[float] = None):
        super().__init__(429, message, status="RESOURCE_EXHAUSTED")
        self.retry_after = None if retry_after is None else max(1, math.ceil(retry_after))

    def body(self) -> dict:
        body = super().body()
        if self.retry_after is not None:
            body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                         "retryDelay": f"{self.retry_after}s"}]
        return body

    @property
    def headers(self) -> dict:
        return {} if self.retry_after is None else {"retry-after": str(self.retry_after)}


class Student:
    """One key's identity and quota state (never the key itself)."""

    __slots__ = ("id", "label", "used", "requests", "last_active", "budget", "disabled",
                 "added", "cost", "unpriced", "_recent")

    def __init__(self, ident: str, label: str):
        self.id = ident
        self.label = label
        self.used = 0                  # total tokens of its finished turns
        self.requests = 0              # its turns (and batch requests) that ended
        self.last_active: Optional[float] = None  # wall time of its last create or ended turn
        self.budget: Optional[int] = None  # its own token budget (None: the class's)
        self.disabled = False
        self.added = False             # added at runtime (the console), not from the keys file
        self.cost: Optional[float] = None  # USD of its priced tokens (costs.py; None: none yet)
        self.unpriced = 0              # its tokens at no known price (costs.py)
        self._recent: deque = deque()  # monotonic times of its creates in the rate window

    @property
    def fingerprint(self) -> str:
        """What the console shows for a key: a short prefix of its digest, never the key."""
        return self.id[:8]

    def __repr__(self) -> str:
        return f"<Student {self.label} used={self.used}>"


class KeyRing:
    """The keys a classroom server accepts, by digest, with their quotas.

    `rate`: creates per minute per key (None: no limit); `tokens`: total tokens per key (None:
    no budget). `clock` is for tests.
    """

    def __init__(self, students: Iterable[Student], rate: Optional[int] = None,
                 tokens: Optional[int] = None, clock: Callable[[], float] = time.monotonic):
        if rate is not None and (not isinstance(rate, int) or rate < 1):
            raise ValueError(f"--key-rate must be a whole number of requests per minute of at "
                             f"least 1, not {rate!r}.")
        if tokens is not None and (not isinstance(tokens, int) or tokens < 1):
            raise ValueError(f"--key-tokens must be a whole number of tokens of at least 1, not "
                             f"{tokens!r}.")
        self._by_id = {s.id: s for s in students}
        self.rate = rate
        self.tokens = tokens
        self._clock = clock
        self._lock = threading.Lock()

    # -- building ------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str, **quotas) -> "KeyRing":
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"Cannot read the keys file {path!r} ({e.strerror}); give a "
                             f"readable file with one key a line to --keys.") from None
        except UnicodeDecodeError:
            raise ValueError(f"The keys file {path!r} is not UTF-8 text; write one key a line "
                             f"(optionally 'label: key').") from None
        return cls.from_text(text, where=repr(path), **quotas)

    @classmethod
    def from_text(cls, text: str, where: str = "text", **quotas) -> "KeyRing":
        """Parse a keys file's text (see the module docstring); ValueError names the line,
        never the key."""
        students: list[Student] = []
        seen_ids: dict[str, int] = {}
        seen_labels: dict[str, int] = {}
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            label, colon, key = line.partition(":")
            if colon:
                label, key = label.strip(), key.strip()
                if not _LABEL.fullmatch(label):
                    raise ValueError(f"The keys file {where}, line {n}: a label is 1 to 64 "
                                     f"letters, digits or '_.@-' before the ':'.")
            else:
                label, key = f"line {n}", line
            if len(key) < MIN_KEY_CHARS or any(c.isspace() or c == ":" for c in key):
                raise ValueError(f"The keys file {where}, line {n}: a key is at least "
                                 f"{MIN_KEY_CHARS} characters without spaces or ':' (make "
                                 f"random ones with `gemini-magics keys NAME...`).")
            ident = key_id(key)
            if ident in seen_ids:
                raise ValueError(f"The keys file {where}, line {n} repeats the key of line "
                                 f"{seen_ids[ident]}; give every student their own key.")
            if label in seen_labels:
                raise ValueError(f"The keys file {where}, line {n} repeats the label {label!r} "
                                 f"of line {seen_labels[label]}; labels must be unique.")
            seen_ids[ident], seen_labels[label] = n, n
            students.append(Student(ident, label))
        if not students:
            raise ValueError(f"The keys file {where} holds no keys; write one key a line "
                             f"(optionally 'label: key').")
        return cls(students, **quotas)

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:
        return f"<KeyRing {len(self)} keys rate={self.rate} tokens={self.tokens}>"

    # -- requests ------------------------------------------------------------------------
    def identify(self, key: str) -> Optional[Student]:
        """The student a key belongs to (disabled or not), or None."""
        return self._by_id.get(key_id(key)) if key else None

    def students(self) -> list[Student]:
        return list(self._by_id.values())

    def by_label(self, label: str) -> Optional[Student]:
        return next((s for s in self.students() if s.label == label), None)

    def budget_of(self, student: Student) -> Optional[int]:
        """The tokens `student` may use in all (None: no limit)."""
        return self.tokens if student.budget is None else student.budget

    def over_budget(self, student: Student) -> Optional[QuotaError]:
        """The 429 for a key whose budget is used up, or None."""
        budget = self.budget_of(student)
        if budget is None or student.used < budget:
            return None
        return QuotaError(f"This key has used up its token budget of {budget:,} tokens "
                          f"({student.used:,} used); ask whoever runs this server to raise "
                          f"it (the teacher's console, or --key-tokens).")

    def recent_requests(self, student: Student) -> int:
        """Its creates in the last RATE_WINDOW_SECONDS."""
        with self._lock:
            return len(self._prune(student))

    def _prune(self, student: Student) -> deque:
        now = self._clock()
        recent = student._recent
        while recent and recent[0] <= now - RATE_WINDOW_SECONDS:
            recent.popleft()
        return recent

    def admit(self, student: Student) -> None:
        """Count one create against `student`'s rate, or raise QuotaError (rate or budget)."""
        with self._lock:
            refused = self.over_budget(student)
            if refused is not None:
                raise refused
            student.last_active = time.time()
            now = self._clock()
            recent = self._prune(student)
            if self.rate is None:
                recent.append(now)  # counted for the console's "rate"
                return
            if len(recent) >= self.rate:
                wait = recent[0] + RATE_WINDOW_SECONDS - now
                per = "request" if self.rate == 1 else "requests"
                raise QuotaError(f"This key is over its rate limit of {self.rate} {per} per "
                                 f"minute; retry in {max(1, math.ceil(wait))} s.",
                                 retry_after=wait)
            recent.append(now)

    def charge(self, student: Student, tokens: int, requests: int = 1,
               cost: Optional[float] = None) -> None:
        """Count ended requests: their tokens, and their `cost` in USD (None: no known price,
        so their tokens are unpriced)."""
        tokens = max(0, int(tokens or 0))
        with self._lock:
            student.used += tokens
            student.requests += requests
            student.last_active = time.time()
            if cost is None:
                student.unpriced += tokens
            else:
                student.cost = (student.cost or 0.0) + cost

    def load_usage(self, used: dict) -> None:
        """What each student used so far, by id (from the store): {id: (tokens, requests,
        last_active, cost, unpriced_tokens)}."""
        with self._lock:
            for ident, (tokens, requests, last, cost, unpriced) in used.items():
                student = self._by_id.get(ident)
                if student is not None:
                    student.used, student.requests = int(tokens), int(requests or 0)
                    student.last_active = last
                    student.cost, student.unpriced = cost, int(unpriced or 0)

    def load_settings(self, rows: Iterable[tuple]) -> list[str]:
        """The console's changes kept in the store: (id, label, added, budget, disabled) rows.
        A student added at runtime whose label the keys file now gives another key is left
        out; the labels left out are returned (for a warning)."""
        skipped = []
        with self._lock:
            for ident, label, added, budget, disabled in rows:
                student = self._by_id.get(ident)
                if student is None and added:
                    if any(s.label == label for s in self._by_id.values()):
                        skipped.append(label)
                        continue
                    student = self._by_id[ident] = Student(ident, label)
                    student.added = True
                if student is not None:
                    student.budget = None if budget is None else int(budget)
                    student.disabled = bool(disabled)
        return skipped

    def add(self, label: str) -> tuple[Student, str]:
        """A new student with a fresh random key: (the student, the key, to be shown once).
        ValueError (one sentence) for a bad or taken label."""
        if not isinstance(label, str) or not _LABEL.fullmatch(label):
            raise ValueError("A label is 1 to 64 letters, digits or '_.@-'.")
        key = secrets.token_urlsafe(24)
        student = Student(key_id(key), label)
        student.added = True
        with self._lock:
            if any(s.label == label for s in self._by_id.values()):
                raise ValueError(f"The label {label!r} is taken; pick another.")
            self._by_id = {**self._by_id, student.id: student}  # readers see old or new, whole
        return student, key

    def discard(self, student: Student) -> None:
        """Take back a student just added (its settings could not be stored)."""
        with self._lock:
            self._by_id = {i: s for i, s in self._by_id.items() if s is not student}


def new_keys_text(labels: Iterable[str]) -> str:
    """A keys file with a fresh random key for each label."""
    labels = list(labels)
    lines = []
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise ValueError(f"A label is 1 to 64 letters, digits or '_.@-', not {label[:70]!r}.")
        lines.append(f"{label}: {secrets.token_urlsafe(24)}")
    if len(set(labels)) != len(lines):
        raise ValueError("Labels must be unique.")
    return "\n".join(lines) + "\n"


def key_holder(keys: Optional[KeyRing], api_key: Optional[str], header_key: str,
               any_key: str) -> Optional[Student]:
    """Who a request's key belongs to: in classroom mode its Student (`any_key`: the header or
    the `key` query parameter), else None; an ApiError 401 when the key is missing, unknown,
    disabled or (one `api_key` for the server, header only) wrong."""
    if keys is not None:
        student = keys.identify(any_key)
        if student is None:
            raise ApiError(401, "Missing or unknown API key: send your own key from the "
                                "server's keys file in the x-goog-api-key header "
                                "(GEMINI_API_KEY for the SDKs and the magics).",
                           status="UNAUTHENTICATED")
        if student.disabled:
            raise ApiError(401, "This API key has been disabled by whoever runs this "
                                "server; ask them to enable it again.",
                           status="UNAUTHENTICATED")
        return student
    if api_key is not None and not hmac.compare_digest(header_key.encode(), api_key.encode()):
        raise ApiError(401, "Missing or wrong API key: send the server's key in the "
                            "x-goog-api-key header (GEMINI_API_KEY for the SDKs).")
    return None
