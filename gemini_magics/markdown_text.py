"""Markdown as text: the ONE place that knows where code fences open and close, where a table
starts, and how single line breaks are kept. The streaming block splitter (`blocks`), the live
view's tail (`live.live_markdown`), saved answers (`render`) and `--schema` answers (`schema`) all
read fences with these functions, so they never disagree about what is code.

Fences follow CommonMark: up to three spaces, then three or more backticks or tildes; a backtick
fence's info string has no backtick (```` ```inline``` ```` is inline code, not a fence); it is
closed by a line of the same character, at least as long, with nothing after it.

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

import re
from typing import Optional

__all__ = ["fence_open", "fence_closes", "open_fence", "unfenced", "code_block",
           "table_delimiter", "hard_breaks"]

# -- code fences ------------------------------------------------------------------------------
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})([^\n]*)")


def fence_open(line: str) -> Optional[str]:
    """The marker (e.g. "```") when `line` opens a fenced code block, else None."""
    m = _FENCE.match(line)
    if m is None or (m.group(1)[0] == "`" and "`" in m.group(2)):
        return None
    return m.group(1)


def fence_closes(line: str, marker: str) -> bool:
    """Whether `line` closes the code block `marker` opened."""
    m = _FENCE.match(line)
    return (m is not None and m.group(1)[0] == marker[0] and len(m.group(1)) >= len(marker)
            and not m.group(2).strip())


def open_fence(text: str) -> Optional[str]:
    """The line that opened a code fence still open at the end of `text` (None if none is),
    to reopen it where `text` is cut."""
    opener = marker = None
    for line in text.splitlines():
        if marker is None:
            marker = fence_open(line)
            opener = line.strip() if marker else None
        elif fence_closes(line, marker):
            opener = marker = None
    return opener


def unfenced(text: str) -> str:
    """What is inside a code fence that wraps all of `text` (a model's ```json answer), else
    `text`. A closing marker glued to the last line (`{...}```) is tolerated: models write it."""
    lines = text.strip().splitlines()
    marker = fence_open(lines[0]) if lines else None
    if marker is None or len(lines) < 2:
        return text
    last = lines[-1]
    if fence_closes(last, marker):
        return "\n".join(lines[1:-1])
    if last.rstrip().endswith(marker):
        return "\n".join(lines[1:-1] + [last.rstrip()[:-len(marker)]])
    return text


def code_block(text: str, lang: str = "") -> str:
    """`text` as a fenced code block whose fence is longer than any backtick run inside it."""
    ticks = max(3, max((len(m) for m in re.findall(r"`{3,}", text)), default=0) + 1)
    return f"{'`' * ticks}{lang}\n{text.rstrip()}\n{'`' * ticks}"


# -- tables -----------------------------------------------------------------------------------
def table_delimiter(line: str) -> bool:
    """Whether `line` is a table's delimiter row (`|---|:--:|`), which makes the line before it
    a header row."""
    stripped = line.strip()
    return "|" in stripped and "-" in stripped and not stripped.strip("|:- \t")


# -- hard line breaks -------------------------------------------------------------------------
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
