"""The notebook companion (issue #20): what `%gemini fix`, `--context` and `--code` add to a prompt,
and the code an answer offers in a new cell.

- `context_parts`: the cells run before this one (cell_log.py), oldest first, as text and
  images, the oldest left out first when they pass the token budget (chars / 4, an image ~258),
  and the one-line note that says what was sent.
- `fix_text`: the last failing cell's source, its error and innermost traceback frames, and a
  short description of the variables it names, asking for an explanation first and then the
  corrected cell as one code block.
- `code_instruction` / `extract_code` / `offer_code`: `--code` asks for one fenced block, the
  block is taken out of the answer and put into a new cell below (IPython's `set_next_input`,
  not run).

Everything sent is redacted (redact.py) like everything else we send or show.
"""
from __future__ import annotations

import ast
import builtins
import re
import sys
from typing import Any, Mapping, Optional

from .cell_log import CellRecord, is_gemini_cell
from .redact import redact
from .session import current as current_session
from .variables import short_description

__all__ = ["CompanionError", "find_log", "context_parts", "fix_text", "code_instruction",
           "extract_code", "offer_code", "lang_of", "CODE_NOTE"]

IMAGE_TOKENS = 258       # what Gemini counts for one image
CHARS_PER_TOKEN = 4
MAX_NAMES = 20           # variables described by fix
CODE_NOTE = "The code is in a new cell below (not run)."
_PYTHON = ("python", "py", "python3", "ipython", "ipython3")


class CompanionError(ValueError):
    """Nothing to fix (or no log to read); the message is one sentence saying what to do."""


def find_log() -> Any:
    """The cell log of the running kernel's magics (None outside IPython or before load)."""
    return getattr(current_session(), "cell_log", None)


# -- --context -----------------------------------------------------------------------------------

def _fenced(text: str, lang: str = "") -> str:
    """`text` in a code fence longer than any backtick run inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _cell_parts(record: CellRecord, back: int) -> list:
    """One recorded cell as prompt parts: its source and what it showed, images as images.
    `back`: how many cells before the question it ran (1: just before). Not the kernel's
    execution count, which another run of the same notebook numbers differently."""
    label = ("The cell run just before this question" if back == 1
             else f"The cell run {back} before this question")
    text = [f"{label}:\n{_fenced(record.source, 'python')}"]
    parts: list = []
    if record.text.strip():
        text.append(f"It printed:\n{_fenced(redact(record.text))}")
    for out in record.outputs:
        if out["kind"] == "image":
            text.append("It showed this image:")
            parts.append("\n\n".join(text))
            parts.append({"type": "image", "mime_type": out["mime_type"], "data": out["data"]})
            text = []
        elif out["kind"] == "markdown":
            text.append(f"It showed (Markdown):\n{redact(out['text'])}")
        else:
            text.append(f"It showed:\n{_fenced(redact(out['text']))}")
    if record.error is not None:
        text.append(f"It failed: {record.error['type']}: {record.error['message']}")
    if text:
        parts.append("\n\n".join(text))
    return parts


def _tokens(parts: list) -> int:
    return sum(IMAGE_TOKENS if isinstance(p, dict) else -(-len(p) // CHARS_PER_TOKEN)
               for p in parts)


def _amount(tokens: int) -> str:
    return f"~{tokens / 1000:.1f}k tokens" if tokens >= 1000 else f"~{tokens} tokens"


def _fit(cells: list, budget: int) -> tuple:
    """The newest cells that fit in `budget` tokens (the newest cut to fit if it alone does
    not), oldest first; and how many were left out."""
    kept: list = []
    used = 0
    for parts in reversed(cells):
        cost = _tokens(parts)
        if used + cost > budget:
            if not kept:  # the newest cell alone is too big: its text, cut
                text = "\n\n".join(p for p in parts if isinstance(p, str))
                room = max(0, budget * CHARS_PER_TOKEN - 40)
                kept.append([text[:room] + "\n… (the rest of this cell was cut)"])
            break
        kept.append(parts)
        used += cost
    return kept[::-1], len(cells) - len(kept)


def context_parts(log: Any, how: str, budget: int) -> tuple:
    """(prompt parts, note) for `--context how` ("all" or a number of cells) within `budget`
    tokens: the cells run before this one, `%gemini` cells left out (their turns are in the
    conversation)."""
    records = [r for r in (log.before_current() if log is not None else [])
               if r.source.strip() and not is_gemini_cell(r.source)]
    if how != "all":
        records = records[-int(how):]
    cells, dropped = _fit([_cell_parts(r, len(records) - i) for i, r in enumerate(records)],
                          budget)
    if not cells:
        return [], "context: no cells have run before this one"
    head = ("Context: the notebook cells run before this question, oldest first, with what "
            "they showed.")
    parts: list = [head]
    for cell in cells:
        parts.extend(cell)
    parts.append("The question:")
    n = len(cells)
    note = f"context: {n} cell{'s' if n != 1 else ''}, {_amount(_tokens(parts))}"
    if dropped:
        note += (f" ({dropped} older cell{'s' if dropped != 1 else ''} left out: over "
                 f"context_tokens={budget})")
    return [p if isinstance(p, dict) else p + "\n\n" for p in parts], note


# -- %gemini fix ------------------------------------------------------------------------------

def _names(source: str) -> list:
    """The names a cell's source uses, in order of first use (a regex when it does not parse)."""
    try:
        tree = ast.parse(source)
        found = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]
        found.sort(key=lambda name: _first_use(source, name))
    except SyntaxError:
        found = re.findall(r"(?<![\w.])([A-Za-z_]\w*)", source)
    return list(dict.fromkeys(found))


def _first_use(source: str, name: str) -> int:
    m = re.search(rf"(?<![\w.]){re.escape(name)}\b", source)
    return m.start() if m else len(source)


def _variables(source: str, ns: Mapping[str, Any]) -> list:
    """Lines describing the variables `source` names: defined ones briefly, missing ones
    as missing; builtins and IPython's `_` names left out."""
    lines = []
    for name in _names(source):
        if name.startswith("_") or name in ("In", "Out", "get_ipython", "exit", "quit"):
            continue
        if name in ns:
            lines.append("- " + redact(short_description(name, ns[name])))
        elif not hasattr(builtins, name):
            lines.append(f"- {name}: not defined in the notebook")
        if len(lines) >= MAX_NAMES:
            break
    return lines


def fix_text(log: Any, ns: Mapping[str, Any], words: str, lang: str = "python") -> str:
    """The prompt of `%gemini fix`; CompanionError (one sentence) when nothing failed."""
    record = log.last_failure() if log is not None else None
    if record is None:
        raise CompanionError("Nothing to fix: no cell has failed since gemini_magics was loaded; "
                             "run the failing cell, then %gemini fix.")
    err = record.error
    where = f"In [{record.number}]" if record.number is not None else "the cell"
    variables = _variables(record.source, ns)
    text = [
        f"This notebook cell ({where}) failed. First explain in a few sentences what went "
        f"wrong, then give the whole corrected cell as one ```{lang} code block.",
        f"The cell:\n{_fenced(record.source, lang)}",
        f"The error: {err['type']}: {err['message']}",
        f"Traceback (innermost frames):\n{_fenced(err['traceback'])}",
    ]
    if variables:
        text.append("Variables the cell names:\n" + "\n".join(variables))
    if words.strip():
        text.append(f"The user adds: {words.strip()}")
    return "\n\n".join(text)


# -- --code -----------------------------------------------------------------------------------

def code_instruction(lang: str) -> str:
    """What `--code LANG` adds after the prompt."""
    name = "Python" if lang in _PYTHON else lang
    return (f"\n\nAnswer with {name} code only: one ```{lang} code block holding the whole "
            f"code, with any explanation as comments in it.")


_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\n`]*)\n(.*?)^[ \t]*\1[`~]*[ \t]*$",
                    re.M | re.S)


def extract_code(text: str, lang: str = "python") -> str:
    """The code of an answer: its last fenced block in `lang` (else its last fenced block,
    else the whole answer)."""
    blocks = [(m.group(2).strip().lower(), m.group(3)) for m in _FENCE.finditer(text or "")]
    same = {lang} | (set(_PYTHON) if lang in _PYTHON else set())
    matching = [code for info, code in blocks if info.split()[:1] and info.split()[0] in same]
    chosen = matching or [code for _, code in blocks]
    return (chosen[-1] if chosen else (text or "")).strip("\n")


def offer_code(code: str) -> bool:
    """Put `code` into a new cell below the running one, not run (the kernel's
    `set_next_input`); False outside IPython."""
    ipython = sys.modules.get("IPython")  # not imported: no shell to offer it in
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not code.strip():
        return False
    shell.set_next_input(code, replace=False)
    return True


def lang_of(request: Any) -> Optional[str]:
    """The language the answer's code is asked in: --code's, python for fix, else None."""
    return getattr(request, "code", None) or ("python" if getattr(request, "fix", False)
                                               else None)
