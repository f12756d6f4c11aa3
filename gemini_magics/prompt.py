"""Brace-safe interpolation of the user's namespace into a prompt.

Prompts are full of braces that are not placeholders (JSON, code, set literals), and
`str.format` crashes on them (jupyter-ai #967). So only a brace pair whose inside is a
*reference* — a name followed by `.attr`, `[int]` or `['key']` parts, e.g. `{df}`, `{obj.attr}`,
`{In[3]}`, `{Out[2]}`, `{cfg["k"]}` — is expanded; `{{`/`}}` escape to single braces (when they pair up); every
other brace stays exactly as typed.

A DataFrame, Series, numpy array, large container or very long text becomes a bounded
description (variables.describe: shape, columns and dtypes, a few head rows), so `{df}` of a
10,000-row table costs a few hundred tokens; `{df!s}` sends `str(df)` in full.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from .variables import describe

__all__ = ["Prompt", "PromptError", "interpolate", "interpolate_parts"]

# A reference: identifier, then any number of .identifier / [int] / ['str'] / ["str"].
_IDENT = r"[^\W\d]\w*"  # a Python identifier (Unicode letters allowed, as in Python)
_PART = rf"(?:\.{_IDENT}|\[\s*-?\d+\s*\]|\[\s*'[^'\]]*'\s*\]|\[\s*\"[^\"\]]*\"\s*\])"
_REF = re.compile(rf"{_IDENT}{_PART}*")
_PART_RE = re.compile(rf"\.({_IDENT})|\[\s*(-?\d+)\s*\]|\[\s*'([^'\]]*)'\s*\]|\[\s*\"([^\"\]]*)\"\s*\]")
# One scanner over the text: escapes, a candidate {reference}, or anything else.
# `!s` after a reference asks for the whole str() instead of a description.
_TOKEN = re.compile(r"\{\{|\}\}|\{(" + _REF.pattern + r")(!s)?\}")


class PromptError(ValueError):
    """A `{reference}` in the prompt could not be resolved; the message says how to fix it."""


@dataclass
class Prompt:
    """The interpolated prompt: `parts` alternate text (str) and kept objects (e.g. images)."""

    parts: list = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(p if isinstance(p, str) else str(p) for p in self.parts)

    @property
    def objects(self) -> list:
        return [p for p in self.parts if not isinstance(p, str)]


def _resolve(ref: str, namespace: Mapping[str, Any]) -> Any:
    name = re.match(_IDENT, ref).group(0)
    if name not in namespace:
        raise PromptError(
            f"The prompt refers to {{{ref}}} but there is no variable named '{name}'; "
            f"define it first, or write {{{{{ref}}}}} to keep the braces as text."
        )
    value = namespace[name]
    where = name
    for m in _PART_RE.finditer(ref, len(name)):
        attr, index, key1, key2 = m.groups()
        try:
            if attr is not None:
                value = getattr(value, attr)
            elif index is not None:
                value = value[int(index)]
            else:
                value = value[key1 if key1 is not None else key2]
        except (AttributeError, LookupError, TypeError) as exc:
            if name == "Out" and index is not None:
                hint = f"cell {index} has no output; run that cell first"
            elif name == "In" and index is not None:
                hint = f"there is no input cell {index} yet; use an earlier cell number"
            else:
                hint = f"{where} has no {m.group(0).lstrip('.')!r}; fix the reference"
            raise PromptError(
                f"The prompt refers to {{{ref}}} but {hint}, "
                f"or write {{{{{ref}}}}} to keep the braces as text."
            ) from None
        except Exception as exc:  # noqa: BLE001 - a property or __getitem__ of the user's own
            raise _raised(ref, f"reading {where}{m.group(0)}", exc) from None
        where += m.group(0)
    return value


def _raised(ref: str, doing: str, exc: BaseException) -> PromptError:
    """One sentence for the user's own code failing while the prompt is filled in."""
    msg = " ".join(str(exc).split())
    msg = msg if len(msg) <= 200 else msg[:199] + "…"
    return PromptError(f"The prompt refers to {{{ref}}} but {doing} raised "
                       f"{type(exc).__name__}{': ' + msg if msg else ''}; fix that, or write "
                       f"{{{{{ref}}}}} to keep the braces as text.")


def _text_of(ref: str, value: Any, full: bool = False) -> str:
    """The text a value stands for in the prompt: a bounded description, or with `full`
    (`{ref!s}`) its whole str()."""
    if isinstance(value, str):
        return value
    try:
        return (None if full else describe(value)) or str(value)
    except Exception as exc:  # noqa: BLE001 - the user's own __str__
        raise _raised(ref, "turning it into text", exc) from None


def _tokens(text: str) -> list:
    """Split into literal text, references and brace escapes; `{{` and `}}` are escapes only
    when they pair up (so `{"a": {"b": 1}}` keeps its closing braces)."""
    toks: list = []
    opens: list[int] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() > pos:
            toks.append(("text", text[pos:m.start()]))
        pos = m.end()
        tok = m.group(0)
        if tok == "{{":
            opens.append(len(toks))
            toks.append(("text", "{{"))
        elif tok == "}}":
            if opens:
                toks[opens.pop()] = ("text", "{")
                toks.append(("text", "}"))
            else:
                toks.append(("text", "}}"))
        else:
            toks.append(("full" if m.group(2) else "ref", m.group(1)))
    if pos < len(text):
        toks.append(("text", text[pos:]))
    return toks


def interpolate_parts(
    text: str,
    namespace: Mapping[str, Any],
    keep: Optional[Callable[[Any], bool]] = None,
) -> Prompt:
    """Expand `{reference}`s from `namespace`; values for which `keep(value)` is true (images,
    for instance) are returned as separate parts instead of being turned into text."""
    parts: list = []
    buf: list[str] = []
    for kind, val in _tokens(text):
        if kind == "text":
            buf.append(val)
            continue
        value = _resolve(val, namespace)
        if keep is not None and keep(value):
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(value)
        else:
            buf.append(_text_of(val, value, full=kind == "full"))
    if buf:
        parts.append("".join(buf))
    return Prompt([p for p in parts if not (isinstance(p, str) and p == "")] or [""])


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Expand `{reference}`s in `text` from `namespace` and return the prompt as a string."""
    return interpolate_parts(text, namespace).text
