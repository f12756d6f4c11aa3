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
    """(event line, data line) pairs of an SSE body; asserts the framing we promise: two lines
    per event, and `data: [DONE]` after the last one (as the real API ends its streams)."""
    out = []
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert blocks and blocks[-1] == "data: [DONE]", blocks[-1:]
    for block in blocks[:-1]:
        lines = block.split("\n")
        assert lines[0].startswith("event: "), block
        assert lines[1].startswith("data: "), block
        assert len(lines) == 2, block
        out.append((lines[0][len("event: "):], lines[1][len("data: "):]))
    return out


def _get(obj, name):
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def streamed_text(events) -> str:
    """The model_output text of a stream (SDK event models or wire dicts): the first piece
    comes in the step's `step.start` content, the rest in text deltas, as in the real API."""
    out, outputs = [], set()
    for e in events:
        kind = _get(e, "event_type")
        if kind == "step.start" and _get(_get(e, "step"), "type") == "model_output":
            outputs.add(_get(e, "index"))
            for c in _get(_get(e, "step"), "content") or []:
                if _get(c, "type") == "text":
                    out.append(_get(c, "text"))
        elif kind == "step.delta" and _get(e, "index") in outputs:
            delta = _get(e, "delta")
            if _get(delta, "type") == "text":
                out.append(_get(delta, "text"))
    return "".join(out)


def text_pieces(events) -> list[str]:
    """Each streamed piece of model_output text, in order (see `streamed_text`)."""
    pieces = []
    for e in events:
        kind = _get(e, "event_type")
        if kind == "step.start" and _get(_get(e, "step"), "type") == "model_output":
            pieces += [_get(c, "text") for c in _get(_get(e, "step"), "content") or []
                       if _get(c, "type") == "text"]
        elif kind == "step.delta" and _get(_get(e, "delta"), "type") == "text":
            pieces.append(_get(_get(e, "delta"), "text"))
    return pieces
