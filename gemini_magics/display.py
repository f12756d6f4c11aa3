"""Observers that show an answer as it streams: notebook Markdown, or plain terminal text.

Observers only read the accumulator (`on_update(acc)`, many times) and the result
(`on_done(result)`, once); they never change what is being built.

The notebook display keeps what is sent to the frontend linear in the answer's length:
- finished Markdown blocks (up to a blank line outside code fences) become their own final
  outputs and are never sent again; only the block still growing is re-sent;
- the growing block is re-sent at most every `interval` seconds and only once it has doubled
  since it was last sent (so its re-sends add up to at most twice its length); a block longer
  than `max_block` characters is split at a line or word break (code fences are closed and
  reopened), which bounds the wait between updates of one block;
- while streaming only `text/markdown` is sent; each finished output is sent once more as
  `text/markdown` + `text/plain`, which is what a saved notebook keeps, so it renders on GitHub
  and in nbconvert without a kernel.
In total at most ~4x the answer's length is sent, however fast or slow it streams.
A folded footer (model, tokens, elapsed, interaction id) follows the answer.

Images in the answer (image deltas, or image items of a finished interaction) are looked for on
every update, not only on throttled ticks, so they land in answer order: the text so far is
finished first, then the image is displayed once as its original PNG/JPEG data (no decode, no
re-encode) in an output the saved notebook keeps. The terminal prints a one-line placeholder.

Tool work (searches, code and its output, URLs, places, function calls and results, and with
`inline_thoughts` an agent's thoughts) is shown as each step finishes (`StepWatch`), as its own
Markdown output between the answer's text blocks. When the answer is done, its last text is
rewritten in place (`update_display` of the blocks it was streamed into) with numbered
citations (`tools.cite`) or, for `--schema` answers (`structured`), as pretty JSON.
"""
from __future__ import annotations

import re
import sys
import time
import uuid
from typing import Any, Callable, Optional

from IPython.display import display, update_display

from .render import (final_rewrite, footer_markdown, footer_text, image_bundle, notes_markdown,
                     thoughts_markdown)
from .result import GeminiResult
from .tools import render_step_markdown

__all__ = ["NotebookDisplay", "TerminalDisplay", "ImageWatch", "StepWatch", "publish_bundle"]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def publish_bundle(data: dict, display_id: str, update: bool) -> None:
    """Show a raw MIME bundle under `display_id`, or replace what that id shows: the one way
    answers, job statuses and live views write the outputs a saved notebook keeps."""
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
        max_block: int = 3000,
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
        self.growth = growth
        self.min_step = min_step
        self.show_thoughts = show_thoughts
        self._publish = publish or publish_bundle
        self._clock = clock
        self._last = float("-inf")
        # answer blocks
        self._committed = 0      # chars of answer text already in finished outputs
        self._scan = 0           # chars scanned for line structure
        self._boundary = 0       # last safe block boundary found
        self._fence: Optional[str] = None   # open fence marker, e.g. "```"
        self._fence_line = ""    # the line that opened it (to reopen after a split)
        self._prefix = ""        # reopened fence to prepend to the growing block
        self._live: Optional[str] = None     # display id of the growing block
        self._live_sent = 0
        # thoughts
        self._thought_id: Optional[str] = None
        self._thought_sent = 0
        self._images = ImageWatch()

    # -- plumbing -----------------------------------------------------------------------------
    @staticmethod
    def _new_id() -> str:
        return uuid.uuid4().hex

    def _grown_enough(self, size: int, sent: int) -> bool:
        return size - sent >= max(self.min_step, (self.growth - 1.0) * sent)

    # -- observer API -------------------------------------------------------------------------
    def on_start(self, acc: Any = None) -> None:
        pass

    def on_update(self, acc: Any) -> None:
        for kind, value in self._steps.new(acc):
            if kind == "answer":  # a new answer step: earlier text is finished
                if acc.answer_length > self._committed or self._live is not None:
                    self._flush_text(acc.answer_text())
                self._segment, self._segment_clean = [], True
            else:
                self._flush_text(acc.answer_text())
                self._publish({"text/markdown": value, "text/plain": value}, self._new_id(), False)
                self._segment, self._segment_clean = [], True
        images = self._images.new(acc)
        if images:
            self._flush_text(acc.answer_text())
            self._segment_clean = False
            for part in images:
                self._publish(image_bundle(part), self._new_id(), False)
        now = self._clock()
        if now - self._last < self.interval:
            return
        # Count attempts, not only sends: reading the text costs O(length), so it must not
        # happen on every event.
        self._last = now
        self._tick(acc)

    def _flush_text(self, text: str) -> None:
        """Finish the text so far (an image follows it); an open code fence is closed and
        reopened in the next block."""
        self._scan_lines(text)
        rest = text[self._committed:]
        if rest.strip() or self._live is not None:
            piece = self._prefix + rest
            if self._fence is not None:
                piece += ("" if piece.endswith("\n") else "\n") + self._fence + "\n"
            self._final(piece, self._live)
        self._prefix = self._fence_line + "\n" if self._fence is not None else ""
        self._committed = len(text)
        self._live, self._live_sent = None, 0

    def on_done(self, result: GeminiResult) -> None:
        text = result.answer
        if self.show_thoughts and result.thoughts:
            self._final(thoughts_markdown(result.thoughts), self._thought_id, answer=False)
        self._scan_lines(text)
        rest = text[self._committed:]
        if rest.strip() or self._live is not None:
            self._final(self._prefix + rest, self._live)
        self._committed = len(text)
        self._live = None
        self._rewrite(result)
        for part in result.image_parts[self._images.count:]:  # never seen in an update
            self._publish(image_bundle(part), self._new_id(), False)
        notes = notes_markdown(result)
        if notes:
            self._publish({"text/markdown": notes, "text/plain": notes}, self._new_id(), False)
        foot = footer_markdown(result)
        self._publish({"text/markdown": foot, "text/plain": footer_text(result)}, self._new_id(),
                      False)

    def _rewrite(self, result: GeminiResult) -> None:
        """Citations or pretty JSON: the last answer step's blocks become one final output."""
        final = final_rewrite(result, self.structured)
        if final is None:
            return
        data = {"text/markdown": final, "text/plain": final}
        if not (self._segment and self._segment_clean):
            self._publish(data, self._new_id(), False)  # could not be rewritten in place
            return
        first, *rest = self._segment
        self._publish(data, first, True)
        for display_id in rest:
            self._publish({"text/markdown": "", "text/plain": ""}, display_id, True)

    # -- the scheme ---------------------------------------------------------------------------
    def _final(self, markdown: str, display_id: Optional[str], answer: bool = True) -> None:
        data = {"text/markdown": markdown, "text/plain": markdown}
        if display_id is None:
            display_id = self._new_id()
            if answer:
                self._segment.append(display_id)
            self._publish(data, display_id, False)
        else:
            self._publish(data, display_id, True)

    def _scan_lines(self, text: str) -> None:
        """Advance over complete lines, tracking code fences and blank-line block boundaries."""
        pos = self._scan
        find = text.find
        while True:
            nl = find("\n", pos)
            if nl < 0:
                break
            line = text[pos:nl]
            if self._fence is not None:
                stripped = line.strip()
                if stripped.startswith(self._fence) and set(stripped) == {self._fence[0]}:
                    self._fence = None
            else:
                m = _FENCE.match(line)
                if m:
                    self._fence = m.group(1)
                    self._fence_line = line
                elif not line.strip():
                    self._boundary = nl + 1
            pos = nl + 1
        self._scan = pos

    def _tick(self, acc: Any) -> bool:
        sent = False
        if self.show_thoughts:
            thoughts = acc.thought_text()
            if thoughts and (self._thought_id is None
                             or self._grown_enough(len(thoughts), self._thought_sent)):
                data = {"text/markdown": "*Thinking…*\n\n" + thoughts}
                if self._thought_id is None:
                    self._thought_id = self._new_id()
                    self._publish(data, self._thought_id, False)
                else:
                    self._publish(data, self._thought_id, True)
                self._thought_sent = len(thoughts)
                sent = True
        if acc.answer_length <= self._committed:
            return sent
        text = acc.answer_text()
        self._scan_lines(text)
        if self._boundary > self._committed:
            self._final(self._prefix + text[self._committed:self._boundary], self._live)
            self._committed = self._boundary
            self._prefix = ""
            self._live, self._live_sent = None, 0
            sent = True
        elif len(text) - self._committed > self.max_block:
            if self._split(text):
                sent = True
        growing = text[self._committed:]
        if not growing.strip():
            return sent
        if self._live is None:
            self._live = self._new_id()
            self._segment.append(self._live)
            self._publish({"text/markdown": self._prefix + growing}, self._live, False)
            self._live_sent = len(growing)
            return True
        if self._grown_enough(len(growing), self._live_sent):
            self._publish({"text/markdown": self._prefix + growing}, self._live, True)
            self._live_sent = len(growing)
            return True
        return sent

    def _split(self, text: str) -> bool:
        """Finish an over-long growing block at a line (or word) break."""
        start = self._committed
        low = start + self.max_block // 2
        if self._fence is not None:
            cut = text.rfind("\n", low, self._scan)
            if cut < 0:
                return False
            cut += 1
            piece = self._prefix + text[start:cut] + self._fence + "\n"
            self._final(piece, self._live)
            self._prefix = self._fence_line + "\n"
        else:
            cut = max(text.rfind("\n", low), text.rfind(" ", low))
            if cut < 0:
                return False
            cut += 1
            self._final(self._prefix + text[start:cut], self._live)
            self._prefix = ""
        self._committed = cut
        self._live, self._live_sent = None, 0
        return True


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
                out.write(sep + value.rstrip() + "\n")
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
        self._write(acc.thought_text() if self.show_thoughts else "", acc.answer_text())

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
