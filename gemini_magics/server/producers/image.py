"""The image-model producer: answers image requests with a picture drawn offline.

No text-to-image weights exist offline, so an image model (`"image"` in the model name, or a
`response_format` entry of type image) is answered by `draw.render_image`: a deterministic
Pillow drawing stamped "OFFLINE", honouring the aspect ratio, size and mime type the request
asks for. An input image in the turn (or, failing that, the latest image of the conversation)
is edited instead, so chat-style editing works. The turn looks like a real one: a thought step,
then one model_output with a short text and the image, the text streamed in its step.start and
the image as an image delta.
"""
from __future__ import annotations

import base64
import re
from typing import Optional

from ..protocol import CreateRequest, response_formats
from ..turns import Outcome, TurnContext, emit_thought

__all__ = ["wants_image", "image_settings", "image_producer", "IMAGE_TOKENS"]

# Gemini bills an image output of up to 1024x1024 as 1290 tokens; we report that figure for
# every offline image (an estimate: the real count depends on model and size).
IMAGE_TOKENS = 1290
_PROMPT_SHOWN = 200
# A follow-up that talks about the picture already in the chat ("make it brighter", "now flip
# the image") edits it; any other prompt draws a new one, as a real image model would decide.
_REFERS_BACK = re.compile(
    r"^\s*(make|change|edit|turn|convert|add|remove|replace|apply|now|flip|mirror|invert|blur|"
    r"sharpen|crop|rotate|recolou?r|colou?ri[sz]e|darken|brighten|try again)\b"
    r"|\b(it|this|that|them|same|again)\b"
    r"|\b(the|previous|last|your)\s+(\w+\s+)?(image|picture|photo|drawing|one|version)\b",
    re.IGNORECASE)


def _image_formats(request: CreateRequest) -> list[dict]:
    return [fmt for _, fmt in response_formats(request.response_format)
            if isinstance(fmt, dict) and fmt.get("type") == "image"]


def wants_image(request: CreateRequest) -> bool:
    """True for image models ("image" in the name) and requests asking for an image output."""
    return "image" in (request.model or "").lower() or bool(_image_formats(request))


def image_settings(request: CreateRequest) -> dict:
    """aspect_ratio, image_size and mime_type from image_config and the image response_format
    (the latter wins: image_config is the deprecated spelling). Values are already validated."""
    config = dict(request.generation_config.get("image_config") or {})
    for fmt in _image_formats(request):
        config.update({k: v for k, v in fmt.items() if k != "type"})
    return {"aspect_ratio": config.get("aspect_ratio"), "image_size": config.get("image_size"),
            "mime_type": config.get("mime_type") or "image/png"}


def _last_user_content(steps: list[dict]) -> list:
    for step in reversed(steps):
        if step.get("type") == "user_input":
            return [c for c in step.get("content") or [] if isinstance(c, dict)]
    return []


def _latest_image(items: list) -> Optional[bytes]:
    from ..describe import part_bytes  # deferred: describe imports PIL

    for item in reversed(items):
        if isinstance(item, dict) and item.get("type") == "image":
            raw = part_bytes(item)
            if raw:
                return raw
    return None


def edit_source(ctx: TurnContext, prompt: str) -> Optional[bytes]:
    """The image to edit: the last inline image of this turn's message; else, when the prompt
    refers back to it ("make it ..."), the conversation's latest image (given or generated).
    URLs are never fetched, so `uri` images are skipped."""
    current = _last_user_content(ctx.request.input_steps)
    found = _latest_image(current)
    if found is not None or not _REFERS_BACK.search(prompt):
        return found
    earlier: list = []
    for step in ctx.all_steps:
        if step.get("type") in ("user_input", "model_output"):
            earlier.extend(step.get("content") or [])
    return _latest_image(earlier)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _PROMPT_SHOWN else text[:_PROMPT_SHOWN - 1] + "…"


def image_producer(ctx: TurnContext) -> Outcome:
    """A thought, then a model_output holding a short text and one offline-rendered image."""
    from ..draw import PROMPT_CHARS, RenderError, render_image  # deferred: draw imports PIL

    rec, req = ctx.recorder, ctx.request
    prompt = "\n".join(c.get("text") or "" for c in _last_user_content(req.input_steps)
                       if c.get("type") == "text").strip()
    words = prompt[:PROMPT_CHARS]  # all that is searched: a huge prompt costs no more
    settings = image_settings(req)
    source = edit_source(ctx, words)
    input_tokens = ctx.engine.count_tokens(prompt)
    emit_thought(rec)
    verb = "edit of the image" if source is not None else "rendering"
    note = {"type": "text", "text": f"Offline {verb} (drawn locally, no image model was used): "
                                    f"{_clip(words) or '(no prompt)'}"}
    output_tokens = 0
    # the note is the step's first content: streamed in its step.start, as the real API does
    out = rec.start_step({"type": "model_output", "content": [note]},
                         announce={"type": "model_output", "content": [dict(note)]})
    try:
        if rec.cancelled:
            return Outcome("cancelled", input_tokens, 0)
        try:
            data, mime = render_image(prompt, source=source, **settings)
        except RenderError as exc:
            return Outcome("failed", input_tokens, 0,
                           errors=[{"code": "invalid_argument", "message": str(exc)}])
        if rec.cancelled:
            return Outcome("cancelled", input_tokens, 0)
        image = {"type": "image", "data": base64.b64encode(data).decode("ascii"), "mime_type": mime}
        del data  # only the base64 text stays alive
        rec.delta(out, image, update={"content": [note, image]})
        output_tokens = ctx.engine.count_tokens(note["text"]) + IMAGE_TOKENS
    finally:
        rec.stop_step(out, input_tokens, output_tokens)
    return Outcome("completed", input_tokens, output_tokens)
