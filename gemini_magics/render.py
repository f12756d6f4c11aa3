"""A finished answer as the outputs a notebook keeps: the ONE renderer.

A plain cell streams its answer block by block (display.NotebookDisplay) and asks this module
for everything else; a `--ui` cell, a panel turn and a `--background` job write the whole
answer at once with `markdown()`. Both read the same `pieces()`, so the same prompt saves the
same Markdown whichever way it ran: thoughts (folded), tool steps in order, each answer step's
text (the last one with numbered citations, or as pretty JSON for `--schema`), images, the
stop or error sentence, notes (`--no-auto`), and the folded footer.

It only reads a result (duck-typed: `.steps .answer .thoughts .notes .error .stopped`...), so
result.py can import its footers without a cycle.

Answer text becomes saved Markdown through `markdown_text.hard_breaks` (single line breaks
kept); `text/plain` keeps the text as written.
"""
from __future__ import annotations

import json
import re
from typing import Any, NamedTuple, Optional

from . import pricing
from .markdown_text import code_block, hard_breaks
from .tools import cite, render_step_markdown

__all__ = ["Style", "style_for", "pieces", "ending", "markdown", "join", "is_image", "thoughts_markdown", "final_rewrite",
           "pretty_json", "image_bundle", "notes_markdown", "outcome_markdown",
           "footer_markdown", "footer_text", "md_escape", "hard_breaks", "incomplete_reason",
           "cap_note"]


class Style(NamedTuple):
    """How a request wants its answer shown (the same for every driver)."""

    show_thoughts: bool = False    # --show-thoughts: a folded Thoughts block first
    structured: bool = False       # --schema: the JSON answer pretty-printed
    inline_thoughts: bool = False  # --agent: its thought steps are its work, shown in order


def style_for(request: Any) -> Style:
    return Style(show_thoughts=bool(getattr(request, "show_thoughts", False)),
                 structured=bool(getattr(request, "schema", None)),
                 inline_thoughts=bool(getattr(request, "agent", None)))


def _md(text: str) -> dict:
    return {"text/markdown": text, "text/plain": text}


def pieces(result: Any, style: Style = Style()) -> list[dict]:
    """The answer's outputs in order, each a MIME bundle."""
    out: list[dict] = []
    if style.show_thoughts and result.thoughts:
        out.append(_md(thoughts_markdown(result.thoughts)))
    steps = result.steps or []
    last = _last_answer_index(steps)
    for i, step in enumerate(steps):
        kind = step.get("type")
        if kind == "model_output":
            text = "".join(c.get("text") or "" for c in _items(step) if c.get("type") == "text")
            if text.strip():
                final = final_rewrite(result, style.structured) if i == last else None
                plain = final_rewrite(result, style.structured, markdown=False) if final else None
                out.append({"text/markdown": hard_breaks(final or text),
                            "text/plain": plain or text})
            out.extend(image_bundle(c) for c in _items(step) if c.get("type") == "image")
        elif kind != "user_input" and (kind != "thought" or style.inline_thoughts):
            shown = render_step_markdown(step)
            if shown:
                out.append(_md(shown))
    return out + ending(result)


def ending(result: Any, *, error: bool = True) -> list[dict]:
    """What follows the answer, in this order everywhere: the stop (or error) sentence, notes,
    the footer. `error=False` leaves the error sentence out (a plain cell raises it instead)."""
    out = []
    sentence = outcome_markdown(result) if error or result.stopped else ""
    if sentence:
        out.append({"text/markdown": sentence, "text/plain": sentence.strip("*")})
    notes = notes_markdown(result)
    if notes:
        out.append({"text/markdown": notes, "text/plain": "\n".join(result.notes)})
    out.append({"text/markdown": footer_markdown(result), "text/plain": footer_text(result)})
    return out


def markdown(result: Any, style: Style = Style()) -> tuple[str, str]:
    """(Markdown, plain text) of the whole answer as ONE output, for outputs written at once;
    images become data-URI Markdown images there."""
    return join(pieces(result, style))


def is_image(bundle: dict) -> bool:
    return "text/markdown" not in bundle


def join(bundles: list[dict]) -> tuple[str, str]:
    """(Markdown, plain text) of `pieces` as one output."""
    md, plain = [], []
    for bundle in bundles:
        md.append(md_image(bundle) if is_image(bundle) else bundle["text/markdown"])
        plain.append(bundle.get("text/plain", "(image)"))
    if len(md) == 1:  # only the footer
        md.insert(0, "*(no text in the answer)*")
        plain.insert(0, "(no text in the answer)")
    return "\n\n".join(md), "\n\n".join(plain)


def _items(step: dict) -> list:
    return [c for c in step.get("content") or [] if isinstance(c, dict)]


def _last_answer_index(steps: list) -> Optional[int]:
    for i in range(len(steps) - 1, -1, -1):
        if steps[i].get("type") == "model_output":
            return i
    return None


def thoughts_markdown(thoughts: str) -> str:
    return "<details><summary>Thoughts</summary>\n\n" + thoughts.strip() + "\n\n</details>"


def pretty_json(text: str) -> Optional[str]:
    """`text` re-indented as JSON, or None if it is not JSON."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return None


def final_rewrite(result: Any, structured: bool = False, markdown: bool = True) -> Optional[str]:
    """The last answer step's text as it should finally read: with numbered citations when it
    has citation annotations, as pretty JSON for a structured answer; None if as streamed."""
    index = _last_answer_index(result.steps or [])
    if index is None:
        return None
    items = _items(result.steps[index])
    if any(c.get("type") != "text" for c in items):
        return None
    text = "".join(c.get("text") or "" for c in items)
    if structured:
        pretty = pretty_json(text)
        if pretty is None:
            return None
        return code_block(pretty, "json") if markdown else pretty
    annotations = [a for c in items for a in c.get("annotations") or []]
    if not annotations or len(items) != 1:
        return None
    cited = cite(text, annotations, markdown=markdown)
    return cited if cited != text else None


def image_bundle(part: dict) -> dict:
    """The display bundle for an image item (its original PNG/JPEG bytes, no re-encode); a link
    or one sentence when it cannot be shown."""
    from .images import ImageError, image_mimebundle  # deferred: PIL

    if not part.get("data") and part.get("uri"):
        return {"text/markdown": f"[Generated image]({part['uri']})", "text/plain": part["uri"]}
    if not part.get("data"):
        return _md("*(an empty image)*")
    try:
        return image_mimebundle(part)
    except ImageError as exc:
        return {"text/markdown": f"*{exc}*", "text/plain": str(exc)}


def md_image(bundle: dict) -> str:
    """An image bundle as Markdown with a data URI (for outputs that must stay one Markdown)."""
    for mime in ("image/png", "image/jpeg"):
        if mime in bundle:
            label = md_escape(bundle.get("text/plain", "image"))
            return f"![{label}](data:{mime};base64,{bundle[mime]})"
    return f"*{md_escape(bundle.get('text/plain', '(image)'))}*"


def md_escape(text: str) -> str:
    return re.sub(r"([\\`*_\[\]<>])", r"\\\1", text)


def outcome_markdown(result: Any) -> str:
    """The stop or error sentence of an answer ('' when it completed)."""
    if result.stopped:
        note = ("Stopped: the partial answer is kept; this turn was not added to the conversation."
                if result.answer else "Stopped before any text arrived.")
        return f"*■ {note}*"
    if result.error:
        return f"⚠ {result.error}"
    return ""


def notes_markdown(result: Any) -> str:
    return "\n\n".join(f"*{note}*" for note in getattr(result, "notes", None) or [])


# -- the footer: answer first, details folded below -------------------------------------------
def _facts(r: Any) -> list[str]:
    facts = [r.model or "?"]
    if r.usage:
        total = r.usage.get("total_tokens")
        out = r.usage.get("total_output_tokens")
        if total is not None:
            facts.append(f"{total} tokens" + (f" ({out} out)" if out is not None else ""))
    facts += [p for p in [pricing.footer_piece(r)] if p]
    facts.append(f"{r.elapsed:.1f} s")
    if r.stopped:
        facts.append("stopped")
    elif r.error:
        facts.append("error")
    elif r.status == "incomplete":
        facts.append(f"incomplete: {incomplete_reason(r)}")
    elif r.status and r.status != "completed":
        facts.append(r.status)
    elif note := cap_note(r):
        facts.append(note)
    skipped = r.skipped_events
    if skipped:  # data: lines that were not JSON (the answer went on without them)
        facts.append(f"{skipped} unreadable event{'s' if skipped != 1 else ''} skipped")
    return facts


def incomplete_reason(r: Any) -> str:
    """Why an `incomplete` interaction ended: the output token limit, named with its value when
    the interaction echoes its generation_config (the local server's GET and non-streamed
    answers do; its streamed events do not)."""
    config = (getattr(r, "interaction_data", None) or {}).get("generation_config") or {}
    limit = config.get("max_output_tokens") if isinstance(config, dict) else None
    return f"stopped at max tokens ({limit})" if limit else "stopped at max tokens"


def cap_note(r: Any) -> str:
    """Why a completed answer may end mid-sentence: the offline server's model stopped at its
    own default cap (the request set no --max-tokens), which it reports as
    `default_max_output_tokens_reached`; '' otherwise."""
    cap = (getattr(r, "interaction_data", None) or {}).get("default_max_output_tokens_reached")
    if not isinstance(cap, int) or isinstance(cap, bool):
        return ""
    return f"offline model stops at {cap} tokens; --max-tokens N for more"


def footer_markdown(r: Any) -> str:
    """A folded details block: model, tokens, time, interaction id."""
    lines = [f"<details><summary>{' · '.join(_facts(r))}</summary>", ""]
    agent = r.interaction_data.get("agent") if r.interaction_data else None
    lines.append(f"- agent: `{agent}`" if agent else f"- model: `{r.model}`")
    if r.id:
        lines.append(f"- interaction id: `{r.id}`")
    if r.environment_id:
        lines.append(f"- environment id: `{r.environment_id}`")
    if r.status == "incomplete":
        lines.append(f"- status: incomplete, {incomplete_reason(r)}")
    elif r.status == "completed" and (note := cap_note(r)):
        lines.append(f"- status: completed ({note})")
    elif r.status:
        lines.append(f"- status: {r.status}")
    if r.usage:
        keys = ("total_input_tokens", "total_output_tokens", "total_thought_tokens", "total_tokens")
        parts = [f"{k.replace('total_', '').replace('_tokens', '')} {r.usage[k]}"
                 for k in keys if r.usage.get(k) is not None]
        if parts:
            lines.append("- tokens: " + ", ".join(parts))
    lines += [c for c in [pricing.footer_line(r)] if c]
    lines.append(f"- elapsed: {r.elapsed:.2f} s")
    lines += ["", "</details>"]
    return "\n".join(lines)


def footer_text(r: Any) -> str:
    ident = f" · {r.id}" if r.id else ""
    if r.environment_id:
        ident += f" · environment {r.environment_id}"
    return "— " + " · ".join(_facts(r)) + ident
