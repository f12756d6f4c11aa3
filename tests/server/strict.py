"""Strict checks with the SDK's own pydantic models: would the SDK parse this without falling back?

The SDK parses leniently and silently (then `output_text` is None), so tests validate the raw
JSON strictly themselves.
"""
from __future__ import annotations

import json

from google.genai._gaos.types.interactions.interaction import Interaction
from google.genai._gaos.types.interactions.interactionsseevent import (
    _INTERACTION_SSE_EVENT_VARIANTS as EVENT_MODELS,
)

STATUSES = {"in_progress", "requires_action", "completed", "failed", "cancelled", "incomplete",
            "budget_exceeded", "queued", "requires_continuation"}


def strict_interaction(raw: dict) -> Interaction:
    """Validate an Interaction strictly; also require the fields the emulator promises."""
    for key in ("id", "object", "status", "created", "updated", "steps", "usage"):
        assert key in raw, f"missing {key!r} in {raw}"
    assert raw["status"] in STATUSES
    assert raw.get("model") or raw.get("agent")
    assert all("type" in s for s in raw["steps"])
    return Interaction.model_validate(raw)


def strict_event(event_type: str, data: str):
    payload = json.loads(data)
    assert payload["event_type"] == event_type, (event_type, payload)
    assert isinstance(payload.get("event_id"), str)
    return EVENT_MODELS[event_type].model_validate(payload)


def parse_sse(text: str) -> list[tuple[str, str]]:
    """(event line, data line) pairs of an SSE body; asserts the framing we promise."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert lines[0].startswith("event: "), block
        assert lines[1].startswith("data: "), block
        assert len(lines) == 2, block
        out.append((lines[0][len("event: "):], lines[1][len("data: "):]))
    return out
