"""SSE event ids: opaque tokens, as the real API sends, that still say where a stream resumes.

The real API's `event_id`s are opaque strings (clients are only meant to send one back as
`last_event_id`), so ours are too: URL-safe base64 of a version byte, a tag of the interaction
and the event's 1-based position. The tag makes an id from another interaction's stream a 400
instead of a resume at some unrelated position. Plain digits are still read as positions: they
are what streams stored by earlier versions of this server carry.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import struct
from typing import Optional

from .protocol import bad, shown

_VERSION = b"\x01"
_TAG_BYTES = 6
_MAX_DIGITS = 12


@functools.lru_cache(maxsize=1024)  # a stream asks once per event
def _tag(interaction_id: str) -> bytes:
    return hashlib.blake2b(interaction_id.encode("utf-8", "replace"),
                           digest_size=_TAG_BYTES).digest()


def event_id(interaction_id: str, position: int) -> str:
    """The id of the `position`-th event (1-based) of `interaction_id`'s stream."""
    raw = _VERSION + _tag(interaction_id) + struct.pack(">I", position)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def resume_position(value: Optional[str], interaction_id: str) -> int:
    """How many events `last_event_id` says the reader already has (0: none), or a 400."""
    if value is None or value == "":
        return 0
    # ASCII digits only (str.isdigit also takes "²", which int() refuses).
    if value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS:
        return int(value)
    raw = _decode(value)
    if raw is None or raw[:1] != _VERSION or len(raw) != 1 + _TAG_BYTES + 4:
        raise bad(f"Query parameter 'last_event_id' must be an event_id from this "
                  f"interaction's stream, not {shown(value)}.")
    if raw[1:1 + _TAG_BYTES] != _tag(interaction_id):
        raise bad(f"'last_event_id' {shown(value)} belongs to another interaction's stream; "
                  f"send an event_id from the stream of {shown(interaction_id)}.")
    return struct.unpack(">I", raw[1 + _TAG_BYTES:])[0]


def _decode(value: str) -> Optional[bytes]:
    if not value.isascii() or len(value) > 64:
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None
