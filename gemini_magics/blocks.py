"""The streaming block splitter: a growing answer text in, Markdown blocks out.

Pure (no IPython, no clock, no display ids): `update(text)` and `finish(text)` take the whole
answer so far and return what its outputs should show, as `Show`, `Cut` and `End` events;
`display.NotebookDisplay` owns the outputs, their display ids and the message rate.

The scheme (why these numbers: `display`'s docstring):
- a block ends at a blank line outside code fences; a finished block is not shown again;
- a growing block longer than `max_block` characters is cut at its latest line end or sentence
  end past half of it (a word break if it has neither; in code or a table only at a line end,
  or anywhere past 4x the bound), and its first part becomes a finished piece. Pieces of code
  are closed and reopened fences, pieces of a table repeat its header rows, so each piece
  renders on its own;
- a block that was cut ends as ONE Markdown text (`End.cut`): the block as the model wrote it.
Fences and table rows are read with `markdown_text`, the one place that knows them.
"""
from __future__ import annotations

import re
from typing import NamedTuple, Optional, Union

from .markdown_text import fence_closes, fence_open, table_delimiter

__all__ = ["BlockSplitter", "Show", "Cut", "End", "MAX_BLOCK"]

MAX_BLOCK = 600   # chars: a longer growing block is cut
# Where a sentence ends: after its punctuation (and closing quotes, brackets, emphasis) and
# the spaces that follow; CJK full stops need no space.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]*_]*[ \t]+|[。！？]")


class Show(NamedTuple):
    """The growing block's output (a new one if there is none) shows `markdown`."""

    markdown: str


class Cut(NamedTuple):
    """The growing block's output (a new one if there is none) shows `markdown` and is done:
    it is a finished piece of a block that goes on in a new output."""

    markdown: str


class End(NamedTuple):
    """The growing block ended. `markdown` is all of it as the model wrote it (its first
    output keeps that); `tail` what its last part shows on its own, `text` that part's
    answer text; `cut`: it was cut into pieces, whose outputs become one again."""

    markdown: str
    tail: str
    text: str
    cut: bool


Event = Union[Show, Cut, End]


class BlockSplitter:
    """Splits an answer that grows into Markdown blocks as it streams (see the module)."""

    def __init__(self, max_block: int = MAX_BLOCK):
        self.max_block = max_block
        self.committed = 0       # chars of the text in finished blocks and pieces
        self._scan = 0           # chars scanned for line structure
        self._boundary = 0       # where the last blank line ends
        self._fence: Optional[str] = None   # the open fence's marker, e.g. "```"
        self._fence_line = ""    # the line that opened it (to reopen after a cut) ...
        self._fence_at = 0       # ... and where that line starts
        self._prev_line = ""     # the last complete line (a table's header row?)
        self._table_head: Optional[str] = None  # header + delimiter rows of an open table
        self._prefix = ""        # reopened fence or repeated table head before the growing text
        self._block_prefix = ""  # what the block's first piece started with
        self._pieces: list = []  # the block's finished pieces, as the model wrote them
        self._growing = False    # an output shows the growing text ...
        self._shown = 0          # ... this many characters of it

    def settled(self, length: int) -> bool:
        """Whether the first `length` characters are all in finished blocks."""
        return length <= self.committed and not self._growing and not self._pieces

    def update(self, text: str) -> list:
        """A tick: end the blocks finished by a blank line, cut an over-long growing block,
        show the growing text if it changed."""
        self._scan_lines(text)
        events: list = []
        if self._boundary > self.committed:
            events += self._end(text, self._boundary)
        elif len(text) - self.committed > self.max_block:
            events += self._cut(text)
        growing = text[self.committed:]
        if growing.strip() and (not self._growing or len(growing) != self._shown):
            events.append(Show(self._prefix + growing))
            self._growing, self._shown = True, len(growing)
        return events

    def finish(self, text: str, close_fence: bool = False) -> list:
        """All of `text` is finished (a step or an image follows it, or the answer ended):
        the blocks up to its last blank line, then the rest. With `close_fence` an open code
        fence is closed here and reopened before the text that follows."""
        self._scan_lines(text)
        events: list = []
        if self.committed < self._boundary < len(text):
            events += self._end(text, self._boundary)
        return events + self._end(text, len(text), close_fence)

    def _scan_lines(self, text: str) -> None:
        """Advance over complete lines, tracking code fences, table heads and blank lines."""
        pos = self._scan
        find = text.find
        while True:
            nl = find("\n", pos)
            if nl < 0:
                break
            line = text[pos:nl]
            if self._fence is not None:
                if fence_closes(line, self._fence):
                    self._fence = None
            else:
                marker = fence_open(line)
                if marker:
                    self._fence, self._fence_line, self._table_head = marker, line, None
                    self._fence_at = pos
                elif not line.strip():
                    self._boundary = nl + 1
                    self._table_head = None
                elif (self._table_head is None and "|" in self._prev_line
                      and table_delimiter(line)):
                    self._table_head = self._prev_line + "\n" + line + "\n"
            self._prev_line = line
            pos = nl + 1
        self._scan = pos

    def _end(self, text: str, end: int, close_fence: bool = False) -> list:
        """The growing block ends at `end`."""
        raw = text[self.committed:end]
        suffix = ""
        if close_fence and self._fence is not None:
            suffix = ("" if (self._prefix + raw).endswith("\n") else "\n") + self._fence + "\n"
        tail = self._prefix + raw + suffix
        events: list = []
        if self._pieces:
            whole = self._block_prefix + "".join(self._pieces) + raw + suffix
            events.append(End(whole, tail, raw, True))
        elif raw.strip() or self._growing:
            events.append(End(tail, tail, raw, False))
        self.committed = end
        self._growing, self._shown = False, 0
        self._pieces = []
        # Reopen a fence open at `end`; one opened after it starts the text that follows.
        open_at_end = self._fence is not None and self._fence_at < end
        self._prefix = self._fence_line + "\n" if open_at_end else ""
        self._block_prefix = self._prefix
        if close_fence:
            self._table_head = None
        return events

    def _cut(self, text: str) -> list:
        """Finish the first part of an over-long growing block as a piece of its own, at the
        latest line end or sentence end in its second half (a word break if there is none; in
        code or a table only a line end), so that what is re-sent every tick stays short."""
        start = self.committed
        cut = self._cut_at(text)
        if cut is None or cut <= start:
            return []
        raw = text[start:cut]
        piece = self._prefix + raw
        code = self._fence is not None
        if code:
            piece += ("" if piece.endswith("\n") else "\n") + self._fence + "\n"
        self._pieces.append(raw)
        self.committed = cut
        self._growing, self._shown = False, 0
        self._prefix = self._fence_line + "\n" if code else self._table_head or ""
        return [Cut(piece)]

    def _cut_at(self, text: str) -> Optional[int]:
        """Where to cut the growing block (None: not yet)."""
        start = self.committed
        low = start + self.max_block // 2
        cut = self._scan if self._scan > low else None
        if self._fence is None and self._table_head is None:
            tail = max(low, self._scan)
            line_end = text.find("\n", self._scan)
            if fence_open(text[self._scan:line_end if line_end >= 0 else len(text)]) is None:
                ends = [m.end() for m in _SENTENCE_END.finditer(text, tail)]
                if ends:
                    cut = ends[-1]
                elif cut is None:
                    space = text.rfind(" ", tail)
                    cut = space + 1 if space >= 0 else None
        if cut is None and len(text) - start > 4 * self.max_block:
            cut = len(text)  # one line of code or a word this long: cut it anyway
        return cut
