"""`%gemini export PATH`: the conversation as a Markdown file, a notebook or JSON.

The turns are the chain the next cell would continue (`Conversation.chain`). A stored turn is
read back from the server by id (`interactions.get`, with its input), walking back through
the rounds a `--functions` turn took, so the file holds what the server kept: tool steps,
citations, images, usage. A stateless turn (`store=false`) has nothing on the server: it is
written as this kernel recorded it, and so is a stored turn the server no longer has (with a
note saying so). Answers are rendered by render.pieces, the one renderer, so a turn reads in
the file as it did in the cell.

- `.md`: a heading per prompt and per answer, images as data URIs;
- `.ipynb`: nbformat v4.5, a Markdown cell per prompt and one per answer, images as cell
  attachments, so JupyterLab opens it as a readable transcript;
- `.json`: every turn with its prompt, ids and the interactions as the server returned them.
"""
from __future__ import annotations

import json
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from . import render
from .client import get_client
from .errors import GeminiError, explain
from .redact import redact_tree
from .result import GeminiResult
from .sender import interaction_dict
from .stream import output_text

__all__ = ["command", "turns_of", "write", "FORMATS"]

FORMATS = (".md", ".ipynb", ".json")
MAX_ROUNDS = 64          # rounds of one --functions turn read back


def command(m: Any, rest: Optional[str]) -> str:
    """`%gemini export PATH` for the magics `m`: writes the file, returns the line to print."""
    try:
        words = shlex.split(rest or "")
    except ValueError:
        words = (rest or "").split()
    if len(words) != 1:
        raise GeminiError("Give one file path, e.g. %gemini export chat.md (.md, .ipynb or "
                          ".json; quote it if it has spaces).")
    path = Path(words[0]).expanduser()
    _check_suffix(path)
    chain = m.session.conversation.chain()
    if not chain:
        raise GeminiError("Nothing to export: the conversation has no turns yet.")
    fetch = None
    if any(t.stored and t.interaction_id for t in chain):
        client = get_client(m._backend(), m.session)
        fetch = lambda ident: redact_tree(interaction_dict(  # noqa: E731
            client.interactions.get(ident, include_input=True)))
    turns = turns_of(chain, fetch)
    write(path, turns)
    n = len(turns)
    return f"Exported {n} turn{'s' if n != 1 else ''} to {path}."


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in FORMATS:
        raise GeminiError(f"Cannot export to {str(path)!r}: the file name must end in .md, "
                          f".ipynb or .json.")


# -- the turns -------------------------------------------------------------------------------

def _rounds(turn: Any, parent_id: Optional[str], fetch: Callable) -> list:
    """The interactions of a stored turn, oldest first: its last round, then back through
    `previous_interaction_id` while a round continued a function call of the same turn."""
    rounds = [fetch(turn.interaction_id)]
    while len(rounds) < MAX_ROUNDS:
        first = (rounds[0].get("steps") or [{}])[0]
        prev = rounds[0].get("previous_interaction_id")
        if first.get("type") != "function_result" or not prev or prev == parent_id:
            break
        rounds.insert(0, fetch(prev))
    return rounds


def _own_steps(steps: list) -> tuple:
    """(the turn's user_input step or None, the steps after it) of one round read back."""
    starts = [i for i, s in enumerate(steps) if s.get("type") == "user_input"]
    if not starts:
        return None, list(steps)
    return steps[starts[-1]], steps[starts[-1] + 1:]


def _elapsed(data: dict) -> float:
    try:
        start = datetime.fromisoformat(str(data["created"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(data["updated"]).replace("Z", "+00:00"))
        return max(0.0, (end - start).total_seconds())
    except (KeyError, ValueError, TypeError):
        return 0.0


def turns_of(chain: list, fetch: Optional[Callable]) -> list:
    """Each turn of `chain` as a dict: prompt content, steps, the result to render, the
    interactions read back (`fetch(id)` -> wire dict; None: none are)."""
    out = []
    parent_id = None
    for turn in chain:
        rounds, note = [], None
        if turn.stored and turn.interaction_id and fetch is not None:
            try:
                rounds = _rounds(turn, parent_id, fetch)
            except Exception as exc:  # noqa: BLE001 - the file still gets this kernel's record
                note = (f"Interaction {turn.interaction_id} could not be read from the server "
                        f"({explain(exc).rstrip('.')}); written as this kernel recorded it.")
        # a round's input may re-send the history (after a stateless turn): its own part
        # starts at its last user_input step
        own = [_own_steps(r.get("steps") or []) for r in rounds]
        steps = [s for user_and_steps in own for s in user_and_steps[1]]
        user = own[0][0] if own else None
        last = rounds[-1] if rounds else {}
        if not rounds:
            steps = list(turn.steps)
        result = GeminiResult(
            text=output_text(steps), steps=steps, usage=last.get("usage") or {},
            id=turn.interaction_id, status=last.get("status") or "completed",
            model=last.get("model") or last.get("agent") or turn.model,
            elapsed=_elapsed(last), interaction_data=last,
            notes=[note] if note else [])
        result.answer = "".join(c.get("text") or "" for s in steps
                                if s.get("type") == "model_output"
                                for c in s.get("content") or [] if isinstance(c, dict)
                                and c.get("type") == "text")
        out.append({"user": user or turn.user_step, "prompt": turn.prompt, "result": result,
                    "turn": turn, "rounds": rounds})
        parent_id = turn.interaction_id
    return out


# -- the files -------------------------------------------------------------------------------

def _prompt_pieces(user_step: dict) -> list:
    """The prompt's content as render bundles: its text, its images."""
    pieces = []
    for item in user_step.get("content") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "text" and (item.get("text") or "").strip():
            pieces.append({"text/markdown": render.hard_breaks(item["text"]),
                           "text/plain": item["text"]})
        elif item.get("type") == "image":
            pieces.append(render.image_bundle(item))
        elif item.get("type"):
            pieces.append({"text/markdown": f"*({item['type']} attached)*",
                           "text/plain": f"({item['type']} attached)"})
    return pieces


def _markdown(turns: list) -> str:
    lines = [f"# Conversation with Gemini\n\n*{_summary(turns)}*"]
    for i, t in enumerate(turns, 1):
        prompt = "\n\n".join(render.md_image(b) if render.is_image(b) else b["text/markdown"]
                             for b in _prompt_pieces(t["user"]))
        lines.append(f"## {i} · You\n\n{prompt}")
        answer, _ = render.markdown(t["result"])
        lines.append(f"## {i} · Gemini\n\n{answer}")
    return "\n\n".join(lines) + "\n"


def _summary(turns: list) -> str:
    n = len(turns)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"Exported by gemini-magics on {when}: {n} turn{'s' if n != 1 else ''}."


def _cell(ident: str, bundles: list, heading: str) -> dict:
    """A Markdown cell of `bundles`, images as attachments."""
    text, attachments = [heading], {}
    for bundle in bundles:
        if render.is_image(bundle):
            mime = next((k for k in ("image/png", "image/jpeg") if k in bundle), None)
            if mime is None:
                continue
            name = f"image{len(attachments) + 1}.{mime.split('/')[1]}"
            attachments[name] = {mime: bundle[mime]}
            text.append(f"![{name}](attachment:{name})")
        else:
            text.append(bundle["text/markdown"])
    cell = {"cell_type": "markdown", "id": ident, "metadata": {}, "source": "\n\n".join(text)}
    if attachments:
        cell["attachments"] = attachments
    return cell


def _notebook(turns: list) -> dict:
    cells = [{"cell_type": "markdown", "id": "title", "metadata": {},
              "source": f"# Conversation with Gemini\n\n*{_summary(turns)}*"}]
    for i, t in enumerate(turns, 1):
        cells.append(_cell(f"turn-{i}-prompt", _prompt_pieces(t["user"]), f"**{i} · You**"))
        cells.append(_cell(f"turn-{i}-answer", render.pieces(t["result"]), f"**{i} · Gemini**"))
    return {"cells": cells, "metadata": {"gemini_magics": {"export": "conversation"}},
            "nbformat": 4, "nbformat_minor": 5}


def _json(turns: list) -> dict:
    out = []
    for i, t in enumerate(turns, 1):
        turn, result = t["turn"], t["result"]
        out.append({"turn": i, "prompt": t["prompt"], "input": t["user"],
                    "interaction_id": turn.interaction_id, "stored": turn.stored,
                    "model": result.model, "status": result.status, "usage": result.usage,
                    "text": result.text, "steps": result.steps, "notes": result.notes,
                    "interactions": t["rounds"]})
    return {"format": "gemini-magics conversation", "version": 1,
            "exported": datetime.now(timezone.utc).isoformat(), "turns": out}


def write(path: Path, turns: list) -> None:
    """Write `turns` to `path` in the format its suffix names; GeminiError if it cannot."""
    _check_suffix(path)
    suffix = path.suffix.lower()
    if suffix == ".md":
        text = _markdown(turns)
    elif suffix == ".ipynb":
        text = json.dumps(_notebook(turns), indent=1, ensure_ascii=False) + "\n"
    else:
        text = json.dumps(_json(turns), indent=1, ensure_ascii=False) + "\n"
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise GeminiError(f"Cannot write {str(path)!r} ({why}); pick a file in a folder you "
                          f"can write to.") from None
