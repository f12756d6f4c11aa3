"""API-key redaction: the one rule for everything we print, record or log.

A leaf module (it imports nothing of the package), so the client, the errors, the display and
the cassette all hide keys the same way: the secrets this process knows (the environment's keys
and the keys of the servers it started) replaced wherever they appear, then anything shaped
like a Google API key, a key header, a `?key=` parameter or a bearer token.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Any, Iterable

__all__ = ["MASK", "KEY_ENV_VARS", "remember", "secrets", "redact", "redact_live", "redact_tree"]

MASK = "***"
KEY_ENV_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
# A shorter "secret" (a placeholder key such as "local") would corrupt unrelated text.
MIN_SECRET_LEN = 8

# Any Google API key ("AIza" and 35 more characters), also one cut short or run on.
_GOOGLE_KEY = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")
# The start of a Google key at the end of a growing text: it may go on in the next chunk.
_PARTIAL_GOOGLE_KEY = re.compile(r"AIza[0-9A-Za-z_\-]{0,34}$")
# Secrets known by where they stand (group 1 is kept).
_SECRET_PLACES = (
    re.compile(r"(?i)(x-goog-api-key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),  # header dumps
    re.compile(r"(?i)([?&]key=)[^&\s'\"]+"),                              # ?key=... in URLs
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{12,}"),
)

# Process-wide on purpose, not session state: a key is secret everywhere in the process, and
# the errors and displays that redact have no session at hand. Only ever grows.
_remembered: set = set()
_lock = threading.Lock()


def remember(secret: Any) -> None:
    """Hide `secret` from now on wherever text is redacted (a server's random key, a key used)."""
    if isinstance(secret, str) and len(secret.strip()) >= MIN_SECRET_LEN:
        with _lock:
            _remembered.add(secret.strip())


def secrets(extra: Iterable[str] = ()) -> set:
    """Every secret known now: the remembered ones, the environment's keys and `extra`."""
    with _lock:
        found = set(_remembered)
    found.update(os.environ.get(name, "").strip() for name in KEY_ENV_VARS)
    found.update(s.strip() for s in extra if isinstance(s, str))
    return {s for s in found if len(s) >= MIN_SECRET_LEN}


def redact(text: Any, extra: Iterable[str] = (), mask: str = MASK) -> str:
    """`text` with every known secret (and `extra`) and anything shaped like a key replaced by
    `mask`."""
    return _redact(str(text), secrets(extra), mask)


def redact_live(text: Any) -> str:
    """`redact(text)` for text that is still growing: a tail that may be the start of a key
    (of a known key, or of a Google key still under its 39 characters) is held back until the
    next chunk shows what it is, so a key streamed in pieces never shows for a moment."""
    s = str(text)
    keys = secrets()
    cut = len(s)
    m = _PARTIAL_GOOGLE_KEY.search(s)
    if m:
        cut = m.start()
    for k in keys:
        for j in range(min(len(k) - 1, len(s)), 3, -1):
            if s.endswith(k[:j]):
                cut = min(cut, len(s) - j)
                break
    return _redact(s[:cut], keys, MASK)


def _redact(s: str, keys: set, mask: str) -> str:
    for k in sorted(keys, key=len, reverse=True):
        s = s.replace(k, mask)
    s = _GOOGLE_KEY.sub(mask, s)
    for pattern in _SECRET_PLACES:
        s = pattern.sub(lambda m: m.group(1) + mask, s)
    return s


def redact_tree(value: Any) -> Any:
    """`value` (wire dicts and lists) with every string redacted, media data left as it is.
    One redact over all its strings joined first: almost always nothing needs hiding, and one
    call costs a twentieth of one per string (it matters for 1,000 rows). Any match in one
    string is a match in the joined text too."""
    strings: list = []
    _strings(value, strings)
    joined = "\n".join(strings)
    if redact(joined) == joined:
        return value
    return _redact_each(value)


def _strings(value: Any, out: list) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k != "data":
                _strings(v, out)


def _redact_each(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_each(v) for v in value]
    if isinstance(value, dict):
        return {k: v if k == "data" else _redact_each(v) for k, v in value.items()}
    return value
