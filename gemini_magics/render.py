"""A finished answer as the outputs a notebook keeps: the ONE renderer.

A plain cell streams its answer block by block (display.NotebookDisplay) and asks this module
for everything else; a `--ui` cell, a panel turn and a `--background` job write the whole
answer at once with `markdown()`. Both read the same `pieces()`, so the same prompt saves the
same Markdown whichever way it ran: thoughts (folded), tool steps in order, each answer step's
text (the last one with numbered citations, or as pretty JSON for `--schema`), images, the
stop or error sentence, notes (`--no-auto`), and the folded footer.

It only reads a result (duck-typed: `.steps .answer .thoughts .notes .error .stopped`...), so
result.py can import its footers without a cycle.

Hard line breaks (`hard_breaks`). Models write poems, addresses and step lists with single line
breaks and expect them kept, as chat UIs show them; CommonMark makes a single line break a soft
break (a space), so a saved notebook would show one run-on paragraph. Every answer text that
becomes saved Markdown goes through `hard_breaks`, which ends such lines with two spaces. Two
trailing spaces, not a trailing backslash: both are CommonMark and render as `<br>` in
JupyterLab's marked, nbconvert's mistune 3 and GitHub, but only two spaces work in older
renderers too (Markdown.pl's original rule; mistune 0.8 of older nbconvert, old marked), and
where no break is possible (the end of a block, a heading, a table row, a code span) two spaces
are ignored while a backslash would show as a stray backslash. `text/plain` keeps the text as
written.
"""
from __future__ import annotations

import json
import re
from typing import Any, NamedTuple, Optional

from .tools import cite, render_step_markdown

__all__ = ["Style", "style_for", "pieces", "markdown", "join", "is_image", "thoughts_markdown", "final_rewrite",
           "pretty_json", "image_bundle", "notes_markdown", "outcome_markdown",
           "footer_markdown", "footer_text", "md_escape", "hard_breaks", "fence_open",
           "fence_closes", "table_delimiter", "incomplete_reason"]


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


def pieces(result: Any, style: Style = Style(), *, outcome: bool = True) -> list[dict]:
    """The answer's outputs in order, each a MIME bundle. `outcome=False` leaves out the stop and
    error sentences (a plain cell raises them as its error instead)."""
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
    if outcome:
        sentence = outcome_markdown(result)
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
        return f"```json\n{pretty}\n```" if markdown else pretty
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


# -- hard line breaks -------------------------------------------------------------------------
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")


def fence_open(line: str) -> Optional[str]:
    """The marker (e.g. "```") when `line` opens a fenced code block, else None."""
    m = _FENCE.match(line)
    if m is None or (m.group(1)[0] == "`" and "`" in m.group(2)):
        return None
    return m.group(1)


def fence_closes(line: str, marker: str) -> bool:
    """Whether `line` closes the code block `marker` opened."""
    stripped = line.strip()
    return (len(stripped) >= len(marker) and stripped[0] == marker[0]
            and not stripped.strip(marker[0]) and len(line) - len(line.lstrip(" ")) < 4)


_EOL = re.compile(r"(\r\n|\r|\n)")
_QUOTE = re.compile(r" {0,3}> ?")
_LIST_ITEM = re.compile(r"[ \t]*(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)")
# Lines that are not paragraph text: ATX headings, thematic breaks, setext underlines.
_NOT_TEXT = re.compile(r" {0,3}(?:#{1,6}(?:[ \t]|$)|(?:[*_-][ \t]*){3,}$|(?:=+|-+)[ \t]*$)")
_HTML_START = re.compile(
    r" {0,3}<(?:(?P<raw>script|pre|style|textarea)(?:[\s>]|$)|(?P<comment>!--)|(?P<pi>\?)"
    r"|(?P<cdata>!\[CDATA\[)|(?P<decl>![A-Za-z])|/?[A-Za-z][A-Za-z0-9-]*(?:[\s/>]|$))",
    re.IGNORECASE)
_HTML_END = {"comment": "-->", "pi": "?>", "cdata": "]]>", "decl": ">"}
_MATH_OPEN = (("$$", "$$"), ("\\[", "\\]"), ("\\begin{", "\\end{"))
_TEXT, _OTHER, _BLANK = 0, 1, 2


def table_delimiter(line: str) -> bool:
    """Whether `line` is a table's delimiter row (`|---|:--:|`), which makes the line before it
    a header row."""
    stripped = line.strip()
    return "|" in stripped and "-" in stripped and not stripped.strip("|:- \t")


def hard_breaks(text: str) -> str:
    """`text` with its single line breaks kept as line breaks when rendered: each line of
    paragraph text (also in list items and block quotes) followed by another such line gets two
    trailing spaces. Untouched: fenced and indented code, display math, HTML blocks, tables,
    headings, a line before a new list item, the last line of a block, and a line that already
    ends in a hard break (two spaces or a backslash). CRLF and CR line ends are kept."""
    if "\n" not in text and "\r" not in text:
        return text
    parts = _EOL.split(text)
    lines, ends = parts[0::2], parts[1::2]
    depths, inner = [], []
    for line in lines:
        depth, pos = 0, 0
        while True:
            m = _QUOTE.match(line, pos)
            if not m:
                break
            depth, pos = depth + 1, m.end()
        depths.append(depth)
        inner.append(line[pos:])
    kinds = _line_kinds(depths, inner)
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if i == len(ends):
            break
        if (kinds[i] == _TEXT and i + 1 < len(lines) and kinds[i + 1] == _TEXT
                and depths[i] == depths[i + 1] and not _LIST_ITEM.match(inner[i + 1])):
            spaces = len(line) - len(line.rstrip(" "))
            backslashes = len(line) - len(line.rstrip("\\"))
            if spaces < 2 and not (spaces == 0 and backslashes % 2):
                out.append(" " * (2 - spaces))
        out.append(ends[i])
    return "".join(out)


def _line_kinds(depths: list, inner: list) -> list:
    """Each line as paragraph text, something else, or blank: a small CommonMark block scanner
    (a change of block-quote depth starts afresh)."""
    kinds = []
    fence = math = html = None  # the open fence, math closer, or HTML end ("" = a blank line)
    para = table = False
    prev_depth = 0
    for i, line in enumerate(inner):
        if depths[i] != prev_depth:
            fence = math = html = None
            para = table = False
        prev_depth = depths[i]
        stripped = line.strip()
        kind = _OTHER
        if fence is not None:
            if fence_closes(line, fence):
                fence = None
        elif math is not None:
            if math in stripped:
                math = None
        elif html is not None:
            if html == "" and not stripped:
                html, kind = None, _BLANK
            elif html and html in line.lower():
                html = None
        elif not stripped:
            kind, para, table = _BLANK, False, False
        elif not para and len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip(" ")) >= 4:
            pass  # indented code
        elif fence_open(line):
            fence, para = fence_open(line), False
        elif any(stripped.startswith(o) for o, _ in _MATH_OPEN):
            opener, closer = next(p for p in _MATH_OPEN if stripped.startswith(p[0]))
            if closer not in stripped[len(opener):]:
                math = closer
            para = False
        elif _HTML_START.match(line):
            m = _HTML_START.match(line)
            kind_of = m.lastgroup
            end = f"</{m.group('raw').lower()}>" if kind_of == "raw" else _HTML_END.get(kind_of, "")
            rest = line.lower()[m.end():]
            html = None if end and end in rest else end
            para = False
        elif table:
            pass
        elif para and table_delimiter(line) and "|" in inner[i - 1]:
            table, para = True, False
            kinds[i - 1] = _OTHER  # the header row
        elif _NOT_TEXT.match(line):
            para = False
        else:
            kind, para = _TEXT, True
        kinds.append(kind)
    return kinds


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
    facts.append(f"{r.elapsed:.1f} s")
    if r.stopped:
        facts.append("stopped")
    elif r.error:
        facts.append("error")
    elif r.status == "incomplete":
        facts.append(f"incomplete: {incomplete_reason(r)}")
    elif r.status and r.status != "completed":
        facts.append(r.status)
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
    elif r.status:
        lines.append(f"- status: {r.status}")
    if r.usage:
        keys = ("total_input_tokens", "total_output_tokens", "total_thought_tokens", "total_tokens")
        parts = [f"{k.replace('total_', '').replace('_tokens', '')} {r.usage[k]}"
                 for k in keys if r.usage.get(k) is not None]
        if parts:
            lines.append("- tokens: " + ", ".join(parts))
    lines.append(f"- elapsed: {r.elapsed:.2f} s")
    lines += ["", "</details>"]
    return "\n".join(lines)


def footer_text(r: Any) -> str:
    ident = f" · {r.id}" if r.id else ""
    if r.environment_id:
        ident += f" · environment {r.environment_id}"
    return "— " + " · ".join(_facts(r)) + ident
