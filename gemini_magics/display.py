"""Observers that show an answer as it streams: notebook Markdown, or plain terminal text.

Observers only read the accumulator (`on_update(acc)`, many times) and the result
(`on_done(result)`, once); they never change what is being built.

The notebook display keeps the screen moving, at a bounded message rate and with what is sent
linear in the answer's length:
- every `interval` seconds (the `update_interval` setting, 0.1 s) the block still growing is
  re-sent if it changed, so the visible answer grows every ~0.1 s while text arrives; never
  more than `MAX_RATE` (20) display messages in any one second, whatever the interval;
- finished Markdown blocks (up to a blank line outside code fences) become their own final
  outputs and are not re-sent; a growing block longer than `MAX_BLOCK` (600) characters is cut
  at its latest line end or sentence end past half of it (a word break if it has neither; in
  code or a table only at a line end, or anywhere past 4x the bound), and its first part is
  shown as a finished piece. Pieces of code are closed and reopened fences, pieces of a table
  repeat its header rows, so each piece renders on its own. A re-send is thus at most a few
  hundred characters and costs O(total) overall;
- a block that was cut is written back as ONE output when it ends (its first output gets the
  whole block, the others are emptied; deferred to the end of the answer if that would exceed
  the message rate), so the saved notebook holds the answer's blocks exactly as the model
  wrote them, as `render.markdown()` does for `--ui`, panel and background answers;
- while streaming only `text/markdown` is sent; each finished output is sent once more as
  `text/markdown` (with `render.hard_breaks`: single line breaks kept) + `text/plain` (the text
  as written), which is what a saved notebook keeps, so it renders on GitHub and in nbconvert
  without a kernel.
Why these constants (`benchmarks/bench_screen.py`: one paragraph at 50 words/s, 2 cores): the
old rule (re-send once doubled) left the screen still for up to 5.4 s while words arrived;
re-sending every 0.1 s leaves at most 0.09 s between text arriving and the screen changing, at
~10 messages a second (in JupyterLab, sampled in Chromium: 0.11 s median, 0.23 s at most,
against 1.1 s and 3.9 s before). MAX_BLOCK trades bytes against pieces: the growing block is
re-sent ~10 times a second, so bytes per answer character grow with it (simulated 50 words/s:
8x at 200, 12x at 400, 16x at 600, 26x at 1,200; ~4.5 KB/s at 600, far below what a kernel
connection carries), while a long paragraph is cut every MAX_BLOCK / 2..MAX_BLOCK characters
(a visible paragraph gap until it is joined, one more message when it is). 600 keeps ordinary
paragraphs whole while they stream and the bytes linear: 2,000 words / 600 words is 3.5x the
bytes for 3.33x the words and time and 3.77x the characters (1,200 already gives 3.7x). A burst
(20k deltas in under a second) has few ticks: 2.9x the text in bytes, 7 messages.
A folded footer (model, tokens, elapsed, interaction id) follows the answer.

Images in the answer (image deltas, or image items of a finished interaction) are looked for on
every update, not only on throttled ticks, so they land in answer order: the text so far is
finished first, then the image is displayed once as its original PNG/JPEG data (no decode, no
re-encode) in an output the saved notebook keeps. The terminal prints a one-line placeholder.

Tool work (searches, code and its output, URLs, places, function calls and results, and with
`inline_thoughts` an agent's thoughts) is shown as each step finishes (`StepWatch`), as its own
Markdown output between the answer's text blocks. When the answer is done, its last text is
rewritten in place (`update_display` of the blocks it was streamed into) with numbered
citations (`tools.cite`) or, for `--schema` answers (`structured`), as pretty JSON. Thoughts
(`--show-thoughts`) are re-sent whole once they have doubled (they arrive in large chunks).
"""
from __future__ import annotations

import re
import sys
import time
import uuid
from collections import deque
from typing import Any, Callable, Optional

from IPython.display import display, update_display

from .client import redact, redact_live
from .render import (fence_closes, fence_open, final_rewrite, footer_markdown, footer_text,
                     hard_breaks, image_bundle, notes_markdown, table_delimiter, thoughts_markdown)
from .result import GeminiResult
from .tools import render_step_markdown

__all__ = ["NotebookDisplay", "TerminalDisplay", "ImageWatch", "StepWatch", "publish_bundle"]

MAX_BLOCK = 600   # chars: a longer growing block is cut (see the module docstring)
MAX_RATE = 20.0   # display messages per second while streaming, at most
# Where a sentence ends: after its punctuation (and closing quotes, brackets, emphasis) and
# the spaces that follow; CJK full stops need no space.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]*_]*[ \t]+|[。！？]")
_BLANK = {"text/markdown": "", "text/plain": ""}


def publish_bundle(data: dict, display_id: str, update: bool) -> None:
    """Show a raw MIME bundle under `display_id`, or replace what that id shows: the one way
    answers, job statuses and live views write the outputs a saved notebook keeps. Text is
    redacted here (`client.redact`), so an API key a server reflects is shown nowhere."""
    data = {mime: redact(v) if isinstance(v, str) and mime.startswith("text/") else v
            for mime, v in data.items()}
    if update:
        update_display(data, raw=True, display_id=display_id)
    else:
        display(data, raw=True, display_id=display_id)


class ImageWatch:
    """Finds the image items an accumulator gained since the last call.

    Cheap enough to run on every event: per step it only looks at content items it has not
    seen (content lists only grow), and a text answer has one or two steps.
    """

    def __init__(self) -> None:
        self._seen: dict = {}
        self.count = 0

    def new(self, acc: Any) -> list:
        found = []
        for index in acc.order:
            step = acc.steps[index]
            content = step.content
            seen = self._seen.get(index, 0)
            if not content or len(content) <= seen:
                continue
            self._seen[index] = len(content)
            if step.data.get("type") != "model_output":
                continue
            found.extend(item for item in content[seen:] if item.get("type") == "image")
        self.count += len(found)
        return found


class StepWatch:
    """Reports, in order, the steps an accumulator finished since the last call.

    Tool steps are reported once finished (a later step started, or the turn ended) as
    ("step", markdown); model_output steps as ("answer", index) when they start (their text is
    the answer display's job). Cheap on every event: it stops at the first unfinished step.
    """

    def __init__(self, inline_thoughts: bool = False) -> None:
        self.inline_thoughts = inline_thoughts
        self.pos = 0

    def new(self, acc: Any) -> list:
        found = []
        order = acc.order
        while self.pos < len(order):
            step = acc.steps[order[self.pos]]
            kind = step.data.get("type")
            if kind == "model_output":
                found.append(("answer", order[self.pos]))
            elif self.pos == len(order) - 1 and not acc.done:
                break  # still arriving
            elif kind != "user_input" and (kind != "thought" or self.inline_thoughts):
                try:
                    markdown = render_step_markdown(step.materialize())
                except Exception:  # noqa: BLE001 - an odd step must not break the answer
                    markdown = ""
                if markdown:
                    found.append(("step", markdown))
            self.pos += 1
        return found


def _label(bundle: dict) -> str:
    """'PNG image 1024x576' from a bundle's text/plain."""
    return bundle.get("text/plain", "image").strip("<>")


class NotebookDisplay:
    """Streams Markdown through display handles; see the module docstring for the scheme."""

    def __init__(
        self,
        *,
        interval: float = 0.1,
        max_block: int = MAX_BLOCK,
        max_rate: float = MAX_RATE,
        growth: float = 2.0,
        min_step: int = 16,
        show_thoughts: bool = False,
        structured: bool = False,
        inline_thoughts: bool = False,
        publish: Optional[Callable[[dict, str, bool], None]] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.structured = structured
        self._steps = StepWatch(inline_thoughts)
        self._segment: list = []  # display ids of the current answer step's text blocks
        self._segment_clean = True  # those blocks hold all of that step's text
        self.interval = interval
        self.max_block = max_block
        self.max_rate = max_rate
        self.growth = growth      # the thoughts block is re-sent when it has grown this much
        self.min_step = min_step
        self.show_thoughts = show_thoughts
        self._publish = publish or publish_bundle
        self._clock = clock
        self._last = float("-inf")
        self._recent: deque = deque()  # when the messages of the last second were sent
        # answer blocks
        self._committed = 0      # chars of answer text already in finished outputs
        self._scan = 0           # chars scanned for line structure
        self._boundary = 0       # last safe block boundary found
        self._fence: Optional[str] = None   # open fence marker, e.g. "```"
        self._fence_line = ""    # the line that opened it (to reopen after a cut)
        self._prev_line = ""     # the last complete line (a table's header row?)
        self._table_head: Optional[str] = None  # header + delimiter rows of an open table
        self._prefix = ""        # reopened fence or repeated table head before the growing block
        self._live: Optional[str] = None     # display id of the growing block
        self._live_sent = 0
        # a block cut into pieces while it grew, written back as one output when it ends
        self._pieces: list = []  # display ids of its finished pieces
        self._piece_text: list = []  # their text as the model wrote it
        self._block_prefix = ""  # what the block's first piece started with
        self._merges: list = []  # (display ids, Markdown) of cut blocks, for on_done
        # thoughts
        self._thought_id: Optional[str] = None
        self._thought_sent = 0
        self._images = ImageWatch()

    # -- plumbing -----------------------------------------------------------------------------
    @staticmethod
    def _new_id() -> str:
        return uuid.uuid4().hex

    def _send(self, data: dict, display_id: str, update: bool) -> None:
        self._recent.append(self._clock())
        self._publish(data, display_id, update)

    def _busy(self, now: float, messages: int = 2) -> bool:
        """True when `messages` more (a tick sends at most two) would make more than
        `max_rate` in the last second."""
        recent = self._recent
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        return len(recent) + messages > self.max_rate

    def _join(self, ids: list, markdown: str) -> None:
        """A block that was cut while it grew becomes one output again: the whole block in
        its first output, the others emptied."""
        self._send({"text/markdown": hard_breaks(markdown), "text/plain": markdown}, ids[0], True)
        for display_id in ids[1:]:
            self._send(_BLANK, display_id, True)

    def _grown_enough(self, size: int, sent: int) -> bool:
        return size - sent >= max(self.min_step, (self.growth - 1.0) * sent)

    # -- observer API -------------------------------------------------------------------------
    def on_start(self, acc: Any = None) -> None:
        pass

    def on_update(self, acc: Any) -> None:
        for kind, value in self._steps.new(acc):
            if kind == "answer":  # a new answer step: earlier text is finished
                if acc.answer_length > self._committed or self._live is not None or self._pieces:
                    self._flush_text(acc.answer_text())
                self._segment, self._segment_clean = [], True
            else:
                self._flush_text(acc.answer_text())
                self._send({"text/markdown": value, "text/plain": value}, self._new_id(), False)
                self._segment, self._segment_clean = [], True
        images = self._images.new(acc)
        if images:
            self._flush_text(acc.answer_text())
            self._segment_clean = False
            for part in images:
                self._send(image_bundle(part), self._new_id(), False)
        now = self._clock()
        # 1% slack: events that arrive exactly one interval apart must each get a tick.
        if now - self._last < 0.99 * self.interval or self._busy(now):
            return
        # Count attempts, not only sends: reading the text costs O(length), so it must not
        # happen on every event.
        self._last = now
        self._tick(acc)

    def _flush_text(self, text: str) -> None:
        """Finish the text so far (a step or an image follows it); an open code fence is
        closed and reopened in the next block."""
        self._finish_all(text, close_fence=True)

    def _finish_all(self, text: str, close_fence: bool = False, last: bool = False) -> None:
        """Finish all the text: up to its last blank line, then the rest."""
        self._scan_lines(text)
        if self._committed < self._boundary < len(text):
            self._finish(text, self._boundary, last=last)
        self._finish(text, len(text), close_fence=close_fence, last=last)

    def on_done(self, result: GeminiResult) -> None:
        text = result.answer
        if self.show_thoughts and result.thoughts:
            self._final(thoughts_markdown(result.thoughts), self._thought_id, answer=False)
        self._finish_all(text, last=True)
        rewritten = self._rewrite(result)
        for ids, markdown in self._merges:  # the cut blocks not yet joined
            if rewritten.isdisjoint(ids):
                self._join(ids, markdown)
        self._merges = []
        for part in result.image_parts[self._images.count:]:  # never seen in an update
            self._send(image_bundle(part), self._new_id(), False)
        notes = notes_markdown(result)
        if notes:
            self._send({"text/markdown": notes, "text/plain": notes}, self._new_id(), False)
        foot = footer_markdown(result)
        self._send({"text/markdown": foot, "text/plain": footer_text(result)}, self._new_id(),
                   False)

    def _rewrite(self, result: GeminiResult) -> set:
        """Citations or pretty JSON: the last answer step's blocks become one final output.
        Returns the display ids rewritten in place."""
        final = final_rewrite(result, self.structured)
        if final is None:
            return set()
        data = {"text/markdown": hard_breaks(final), "text/plain": final}
        if not (self._segment and self._segment_clean):
            self._send(data, self._new_id(), False)  # could not be rewritten in place
            return set()
        first, *rest = self._segment
        self._send(data, first, True)
        for display_id in rest:
            self._send(_BLANK, display_id, True)
        return set(self._segment)

    # -- the scheme ---------------------------------------------------------------------------
    def _final(self, markdown: str, display_id: Optional[str], answer: bool = True) -> None:
        """A finished output as the saved notebook keeps it: Markdown (answer text with hard
        line breaks) and the text as written."""
        data = {"text/markdown": hard_breaks(markdown) if answer else markdown,
                "text/plain": markdown}
        if display_id is None:
            display_id = self._new_id()
            if answer:
                self._segment.append(display_id)
            self._send(data, display_id, False)
        else:
            self._send(data, display_id, True)

    def _show(self, markdown: str) -> str:
        """Show streaming Markdown in the growing block's output (a new one if there is none)."""
        data = {"text/markdown": redact_live(hard_breaks(markdown))}
        if self._live is None:
            self._live = self._new_id()
            self._segment.append(self._live)
            self._send(data, self._live, False)
        else:
            self._send(data, self._live, True)
        return self._live

    def _scan_lines(self, text: str) -> None:
        """Advance over complete lines, tracking code fences, table heads and blank-line block
        boundaries."""
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
                elif not line.strip():
                    self._boundary = nl + 1
                    self._table_head = None
                elif (self._table_head is None and "|" in self._prev_line
                      and table_delimiter(line)):
                    self._table_head = self._prev_line + "\n" + line + "\n"
            self._prev_line = line
            pos = nl + 1
        self._scan = pos

    def _tick(self, acc: Any) -> None:
        if self.show_thoughts:
            thoughts = acc.thought_text()
            if thoughts and (self._thought_id is None
                             or self._grown_enough(len(thoughts), self._thought_sent)):
                data = {"text/markdown": "*Thinking…*\n\n" + thoughts}
                if self._thought_id is None:
                    self._thought_id = self._new_id()
                    self._send(data, self._thought_id, False)
                else:
                    self._send(data, self._thought_id, True)
                self._thought_sent = len(thoughts)
        if acc.answer_length <= self._committed:
            return
        text = acc.answer_text()
        self._scan_lines(text)
        if self._boundary > self._committed:
            self._finish(text, self._boundary)
        elif len(text) - self._committed > self.max_block:
            self._cut(text)
        growing = text[self._committed:]
        if growing.strip() and (self._live is None or len(growing) != self._live_sent):
            self._show(self._prefix + growing)
            self._live_sent = len(growing)

    def _finish(self, text: str, end: int, close_fence: bool = False,
                last: bool = False) -> None:
        """The growing block ends at `end` (a blank line, a step or image, the answer's end:
        `last`)."""
        raw = text[self._committed:end]
        suffix = ""
        if close_fence and self._fence is not None:
            suffix = ("" if (self._prefix + raw).endswith("\n") else "\n") + self._fence + "\n"
        if self._pieces:  # the block was cut while it grew: one output again
            ids = self._pieces + ([self._live] if self._live is not None else [])
            markdown = self._block_prefix + "".join(self._piece_text) + raw + suffix
            if last:  # on_done joins it (unless it rewrites it)
                self._merges.append((ids, markdown))
            elif not self._busy(self._clock(), len(ids) + 1):  # + the next block's first
                self._join(ids, markdown)
            else:  # joined in on_done, to keep the rate; until then its last piece is shown
                if raw.strip() and self._live is None:
                    ids.append(self._show(self._prefix + raw + suffix))
                elif self._live is not None:
                    self._show(self._prefix + raw + suffix)
                self._merges.append((ids, markdown))
        elif raw.strip() or self._live is not None:
            self._final(self._prefix + raw + suffix, self._live)
        self._committed = end
        self._live, self._live_sent = None, 0
        self._pieces, self._piece_text = [], []
        self._prefix = self._fence_line + "\n" if self._fence is not None else ""
        self._block_prefix = self._prefix
        if close_fence:
            self._table_head = None

    def _cut(self, text: str) -> None:
        """Finish the first part of an over-long growing block as a piece of its own, at the
        latest line end or sentence end in its second half (a word break if there is none; in
        code or a table only a line end), so that what is re-sent every tick stays short."""
        start = self._committed
        low = start + self.max_block // 2
        cut = self._scan if self._scan > low else None
        code, table = self._fence is not None, self._table_head is not None
        if not code and not table:
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
        if cut is None or cut <= start:
            return
        raw = text[start:cut]
        piece = self._prefix + raw
        if code:
            piece += ("" if piece.endswith("\n") else "\n") + self._fence + "\n"
        self._pieces.append(self._show(piece))
        self._piece_text.append(raw)
        self._committed = cut
        self._live, self._live_sent = None, 0
        self._prefix = (self._fence_line + "\n" if code else self._table_head or "")


class TerminalDisplay:
    """Prints the answer as plain text as it arrives (plain terminal IPython), then a footer."""

    def __init__(self, stream: Any = None, *, interval: float = 0.05, show_thoughts: bool = False,
                 structured: bool = False, inline_thoughts: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        self.structured = structured  # the JSON answer is printed once, pretty, at the end
        self._steps = StepWatch(inline_thoughts)
        self._steps_printed = 0
        self.stream = stream
        self.interval = interval
        self.show_thoughts = show_thoughts
        self._clock = clock
        self._last = float("-inf")
        self._written = 0
        self._thought_written = 0
        self._images = ImageWatch()

    def _out(self) -> Any:
        return self.stream if self.stream is not None else sys.stdout

    def on_start(self, acc: Any = None) -> None:
        pass

    def on_update(self, acc: Any) -> None:
        for kind, value in self._steps.new(acc):
            if kind == "step":
                self._catch_up(acc)
                out = self._out()
                sep = "\n\n" if self._written or self._thought_written or self._steps_printed else ""
                out.write(sep + redact(value.rstrip()) + "\n")
                out.flush()
                self._steps_printed += 1
        images = self._images.new(acc)
        if images:
            self._catch_up(acc)
            first = self._images.count - len(images)
            for i, part in enumerate(images):
                self._placeholder(part, first + i)
        now = self._clock()
        if now - self._last < self.interval:
            return
        self._last = now
        self._catch_up(acc)

    def _catch_up(self, acc: Any) -> None:
        """Print what arrived since the last write (thoughts only when shown)."""
        self._write(redact_live(acc.thought_text()) if self.show_thoughts else "",
                    redact_live(acc.answer_text()))

    def _placeholder(self, part: dict, number: int) -> None:
        """One line standing for an image a terminal cannot show."""
        out = self._out()
        if part.get("data"):
            text = f"[{_label(image_bundle(part))}: the result's .images[{number}]]"
        else:
            text = f"[image at {part.get('uri')}]"
        out.write(("\n" if self._written else "") + text + "\n")
        out.flush()

    def _write(self, thoughts: str, text: str) -> None:
        if self.structured:
            text = ""  # printed pretty by on_done
        out = self._out()
        if thoughts and len(thoughts) > self._thought_written and not self._written:
            if not self._thought_written:
                out.write("Thinking: ")
            out.write(thoughts[self._thought_written:])
            self._thought_written = len(thoughts)
        if len(text) > self._written:
            if self._thought_written and not self._written:
                out.write("\n\n")
            out.write(text[self._written:])
            self._written = len(text)
        out.flush()

    def on_done(self, result: GeminiResult) -> None:
        self._write(result.thoughts if self.show_thoughts else "", result.answer)
        out = self._out()
        final = final_rewrite(result, self.structured, markdown=False)
        if self.structured:
            text = final if final is not None else result.answer
            if text:
                out.write(("\n" if self._steps_printed else "") + text)
                self._written = len(text)
        elif final is not None and "\n\nSources:\n" in final:  # the text is out: add sources
            out.write("\n\nSources:\n" + final.rsplit("\n\nSources:\n", 1)[1])
        for i, part in enumerate(result.image_parts[self._images.count:], self._images.count):
            self._placeholder(part, i)
        notes = getattr(result, "notes", None) or []
        if notes:
            out.write(("\n\n" if self._written else "") + "\n".join(notes))
        out.write(("\n" if self._written or notes else "") + footer_text(result) + "\n")
        out.flush()
