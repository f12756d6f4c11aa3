"""countTokens: how many input tokens a prompt is, counted by the engine that would answer it.

`POST /{version}/models/{model}:countTokens` with Google's generateContent-style body
(`{"contents": [...]}`, or `{"generateContentRequest": {"contents", "systemInstruction"}}`)
answers `{"totalTokens": N}`, as google-genai's `client.models.count_tokens` expects; that is
what `%%gemini --estimate` calls for every row. The contents become the messages a turn with
that input would send the engine (`turns.history_to_messages`, media described in words), and
the engine counts them with its own tokenizer (`Engine.count_input`), so an estimate made
offline is the input a turn then reports. Nothing is generated or charged, and the engine's
admission gate (batches.py) is not asked: counting is free on the real API too.
"""
from __future__ import annotations

import asyncio
from typing import Any, Optional

from starlette.requests import Request
from starlette.routing import Route

from .engines.base import EngineError, EngineRequest
from .http_guard import read_body
from .protocol import ApiError, bad, check_media_parts, parse_json_body
from .responses import Json
from .turns import history_to_messages

__all__ = ["add_routes", "count_request"]

_SHAPE = ('send {"contents": [{"role": "user", "parts": [{"text": "..."}]}]}, as '
          "client.models.count_tokens does")
_MEDIA_KINDS = ("image", "audio", "video")


def count_request(body: dict) -> tuple[Optional[str], list[dict]]:
    """A countTokens body -> (system instruction, input steps); a 400 naming a wrong field."""
    where = "contents"
    request = body
    if "generateContentRequest" in body:
        request, where = body["generateContentRequest"], "generateContentRequest.contents"
        if not isinstance(request, dict):
            raise bad(f"'generateContentRequest' must be an object; {_SHAPE}.")
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents:
        raise bad(f"'{where}' must be a non-empty list of contents; {_SHAPE}.")
    steps = [_step(c, f"{where}[{i}]") for i, c in enumerate(contents)]
    check_media_parts(steps, where)
    system = request.get("systemInstruction") or request.get("system_instruction")
    if system is not None:
        system = "\n".join(item.get("text") or "" for item in
                           _step(system, "systemInstruction")["content"]) or None
    return system, steps


def _step(content: Any, where: str) -> dict:
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        raise bad(f"'{where}' must be an object with a list of 'parts'; {_SHAPE}.")
    role = content.get("role") or "user"
    if role not in ("user", "model"):
        raise bad(f"'{where}.role' must be \"user\" or \"model\", not {role!r:.40}.")
    items = [_part(p, f"{where}.parts[{j}]") for j, p in enumerate(content["parts"])]
    return {"type": "user_input" if role == "user" else "model_output", "content": items}


def _part(part: Any, where: str) -> dict:
    """One generateContent part as an Interactions content item (text, or media by kind)."""
    if not isinstance(part, dict):
        raise bad(f"'{where}' must be an object such as {{\"text\": \"...\"}}.")
    if "text" in part:
        if not isinstance(part["text"], str):
            raise bad(f"'{where}.text' must be a string.")
        return {"type": "text", "text": part["text"]}
    for name, source, field in (("inlineData", "data", "data"), ("inline_data", "data", "data"),
                                ("fileData", "uri", "fileUri"), ("file_data", "uri", "file_uri")):
        media = part.get(name)
        if media is None:
            continue
        mime = media.get("mimeType", media.get("mime_type")) if isinstance(media, dict) else None
        value = media.get(field) if isinstance(media, dict) else None
        if not isinstance(mime, str) or not isinstance(value, str):
            raise bad(f"'{where}.{name}' needs a string 'mimeType' and a string '{field}'.")
        kind = mime.split("/", 1)[0].lower()
        return {"type": kind if kind in _MEDIA_KINDS else "document", "mime_type": mime,
                source: value}
    raise bad(f"'{where}' has no 'text', 'inlineData' or 'fileData'; the local server counts "
              f"text and media parts.")


def add_routes(routes: list, service, guard) -> list:
    """`routes` behind the countTokens route (so it comes before unsupported.py's 501 for
    `/models/...`); it counts with `service.engine`."""
    async def count(request: Request) -> Json:
        raw = await read_body(request, service.read_timeout)
        model = request.path_params["model"]

        def counted() -> int:
            system, steps = count_request(parse_json_body(raw))
            messages = history_to_messages(system, steps)
            if not messages:  # only empty texts
                return 0
            try:
                return service.engine.count_input(EngineRequest(model=model, messages=messages))
            except EngineError as e:
                raise ApiError(503, str(e), status="UNAVAILABLE") from None

        return Json({"totalTokens": await asyncio.to_thread(counted)})

    return [Route("/{prefix:path}/models/{model}:countTokens", guard(count),
                  methods=["POST"])] + routes
