"""Observers that show an answer as it streams: notebook Markdown, or plain terminal text.

Observers only read the accumulator (`on_update(acc)`, many times) and the result
(`on_done(result)`, once); they never change what is being built.

The notebook display keeps the screen moving, at a bounded message rate and with what is sent
linear in the answer's length. Three small parts: `blocks.BlockSplitter` (pure: the answer
text in, what each output shows out), `RateLimit` (the pace), and `Output`s that own their
display ids.
- every `interval` seconds (the `update_interval` setting, 0.1 s) the block still growing is
  re-sent if it changed, so the visible answer grows every ~0.1 s while text arrives; never
  more than `MAX_RATE` (20) display messages in any one second, whatever the interval;
- finished Markdown blocks become their own final outputs and are not re-sent; a growing block
  longer than `MAX_BLOCK` (600) characters is cut into pieces (`blocks`), so a re-send is at
  most a few hundred characters and costs O(total) overall;
- a block that was cut is written back as ONE output when it ends (its first output gets the
  whole block, the others are emptied; deferred to the end of the answer if that would exceed
  the message rate), so the saved notebook holds the answer's blocks exactly as the model
  wrote them, as `render.markdown()` does for `--ui`, panel and background answers;
- while streaming only `text/markdown` is sent; each finished output is sent once more as
  `text/markdown` (with `hard_breaks`: single line breaks kept) + `text/plain` (the text
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
After the answer come, in this order (`render.ending`, as in every driver): a stop sentence,
notes, and a folded footer (model, tokens, elapsed, interaction id).

Before anything is sent, the media the cell sends (--image, --file, `{var}`) are shown as one
output above the answer: a thumbnail per image, a chip per other file (`media.sent_bundle`).
Images in the answer (image deltas, or image items of a finished interaction) are looked for on
every update, not only on throttled ticks, so they land in answer order: the text so far is
finished first, then the image is displayed once as its original PNG/JPEG data (no decode, no
re-encode) in an output the saved notebook keeps, at most 512 px wide on screen (the output's
metadata, `images.display_metadata`). The terminal prints a one-line placeholder.

Tool work (searches, code and its output, URLs, places, function calls and results, and with
`inline_thoughts` an agent's thoughts) is shown as each step finishes (`StepWatch`), as its own
Markdown output between the answer's text blocks. When the answer is done, its last text is
rewritten in place (the outputs it was streamed into) with numbered citations (`tools.cite`)
or, for `--schema` answers (`structured`), as pretty JSON. Thoughts (`--show-thoughts`) are
re-sent whole once they have doubled (they arrive in large chunks).
"""
from __future__ import annotations

import sys
import time
import uuid
from collections import deque
from typing import Any, Callable, Optional

from IPython.display import display, update_display

from .blocks import MAX_BLOCK, BlockSplitter, Cut, End, Show
from .client import redact, redact_live
from .markdown_text import hard_breaks
from .media import sent_bundle
from .render import ending, final_rewrite, image_bundle, thoughts_markdown
from .result import GeminiResult
from .tools import render_step_markdown

__all__ = ["NotebookDisplay", "TerminalDisplay", "RateLimit", "Output", "ImageWatch", "StepWatch",
           "publish_bundle", "MAX_BLOCK", "MAX_RATE"]

MAX_RATE = 20.0   # display messages per second while streaming, at most
_BLANK = {"text/markdown": "", "text/plain": ""}


def publish_bundle(data: dict, display_id: str, update: bool,
                   metadata: Optional[dict] = None) -> None:
    """Show a raw MIME bundle under `display_id`, or replace what that id shows: the one way
    answers, job statuses and live views write the outputs a saved notebook keeps. Text is
    redacted here (`client.redact`), so an API key a server reflects is shown nowhere.
    `metadata` is the output's metadata (the widgets mark theirs for the JupyterLab extension);
    an image gets its display width there (`images.display_metadata`)."""
    data = {mime: redact(v) if isinstance(v, str) and mime.startswith("text/") else v
            for mime, v in data.items()}
    if metadata is None and ("image/png" in data or "image/jpeg" in data):
        from .images import display_metadata  # deferred: PIL

        metadata = display_metadata(data)
    if update:
        update_display(data, raw=True, display_id=display_id, metadata=metadata)
    else:
        display(data, raw=True, display_id=display_id, metadata=metadata)


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


class RateLimit:
    """The display's pace: a tick at most every `interval` seconds, and never more than
    `max_rate` messages in any one second."""

    def __init__(self, interval: float, max_rate: float, clock: Callable[[], float]):
        self.interval = interval
        self.max_rate = max_rate
        self._clock = clock
        self._last = float("-inf")
        self._recent: deque = deque()  # when the messages of the last second were sent

    def sent(self) -> None:
        self._recent.append(self._clock())

    def busy(self, messages: int = 2) -> bool:
        """True when `messages` more (a tick sends at most two) would make more than
        `max_rate` in the last second."""
        now, recent = self._clock(), self._recent
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        return len(recent) + messages > self.max_rate

    def tick_due(self) -> bool:
        """Whether a tick may run now; counts it if so. Attempts are counted, not only sends:
        reading the text costs O(length), so it must not happen on every event."""
        # 1% slack: events that arrive exactly one interval apart must each get a tick.
        if self._clock() - self._last < 0.99 * self.interval or self.busy():
            return False
        self._last = self._clock()
        return True


class Output:
    """One output of the answer: it owns its display id; the first `show` displays it, later
    ones replace what it shows."""

    __slots__ = ("display_id", "_send", "_shown")

    def __init__(self, send: Callable[[dict, str, bool], None]):
        self.display_id = uuid.uuid4().hex
        self._send = send
        self._shown = False

    def show(self, data: dict) -> "Output":
        self._send(data, self.display_id, self._shown)
        self._shown = True
        return self


class NotebookDisplay:
    """Streams Markdown through display outputs: `blocks.BlockSplitter` says what the answer's
    outputs show, this class owns them and keeps the pace (see the module docstring)."""

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
        sent: Any = None,
        publish: Optional[Callable[[dict, str, bool], None]] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.structured = structured
        self.sent = sent  # the request: its media are shown above the answer
        self.show_thoughts = show_thoughts
        self.growth = growth      # the thoughts block is re-sent when it has grown this much
        self.min_step = min_step
        self._publish = publish or publish_bundle
        self._rate = RateLimit(interval, max_rate, clock)
        self._splitter = BlockSplitter(max_block)
        self._steps = StepWatch(inline_thoughts)
        self._images = ImageWatch()
        self._segment: list = []  # outputs of the current answer step's text blocks
        self._segment_clean = True  # they hold all of that step's text
        self._growing: Optional[Output] = None  # the output of the growing block
        self._block: list = []    # outputs of the growing block's finished pieces
        self._merges: list = []   # (outputs, Markdown) of cut blocks to join in on_done
        self._thoughts: Optional[Output] = None
        self._thought_sent = 0

    # -- plumbing -----------------------------------------------------------------------------
    def _send(self, data: dict, display_id: str, update: bool) -> None:
        self._rate.sent()
        self._publish(data, display_id, update)

    def _output(self, data: dict, answer: bool = False) -> Output:
        """A new output showing `data`; an answer text output joins the current segment."""
        output = Output(self._send)
        if answer:
            self._segment.append(output)
        return output.show(data)

    def _final(self, markdown: str, output: Optional[Output], answer: bool = True) -> None:
        """A finished output as the saved notebook keeps it: Markdown (answer text with hard
        line breaks) and the text as written."""
        data = {"text/markdown": hard_breaks(markdown) if answer else markdown,
                "text/plain": markdown}
        if output is None:
            self._output(data, answer)
        else:
            output.show(data)

    def _grow(self, markdown: str) -> Output:
        """Show streaming Markdown in the growing block's output (a new one if there is none)."""
        data = {"text/markdown": redact_live(hard_breaks(markdown))}
        if self._growing is None:
            self._growing = self._output(data, answer=True)
        else:
            self._growing.show(data)
        return self._growing

    def _join(self, outputs: list, markdown: str) -> None:
        """A block that was cut while it grew becomes one output again: the whole block in
        its first output, the others emptied."""
        outputs[0].show({"text/markdown": hard_breaks(markdown), "text/plain": markdown})
        for output in outputs[1:]:
            output.show(_BLANK)

    # -- observer API -------------------------------------------------------------------------
    def on_start(self, acc: Any = None) -> None:
        """Before anything is sent: thumbnails and chips of the media the cell sends."""
        shown = sent_bundle(self.sent) if self.sent is not None else None
        if shown is not None:
            self._output(shown)

    def on_update(self, acc: Any) -> None:
        for kind, value in self._steps.new(acc):
            if kind == "answer":  # a new answer step: earlier text is finished
                if not self._splitter.settled(acc.answer_length):
                    self._flush_text(acc.answer_text())
            else:
                self._flush_text(acc.answer_text())
                self._output({"text/markdown": value, "text/plain": value})
            self._segment, self._segment_clean = [], True
        images = self._images.new(acc)
        if images:
            self._flush_text(acc.answer_text())
            self._segment_clean = False
            for part in images:
                self._output(image_bundle(part))
        if self._rate.tick_due():
            self._tick(acc)

    def on_done(self, result: GeminiResult) -> None:
        if self.show_thoughts and result.thoughts:
            self._final(thoughts_markdown(result.thoughts), self._thoughts, answer=False)
        self._apply(self._splitter.finish(result.answer), last=True)
        rewritten = self._rewrite(result)
        for outputs, markdown in self._merges:  # the cut blocks not yet joined
            if rewritten.isdisjoint(outputs):
                self._join(outputs, markdown)
        self._merges = []
        for part in result.image_parts[self._images.count:]:  # never seen in an update
            self._output(image_bundle(part))
        for bundle in ending(result, error=False):  # a plain cell raises its error instead
            self._output(bundle)

    def _rewrite(self, result: GeminiResult) -> set:
        """Citations or pretty JSON: the last answer step's blocks become one final output.
        Returns the outputs rewritten in place."""
        final = final_rewrite(result, self.structured)
        if final is None:
            return set()
        data = {"text/markdown": hard_breaks(final), "text/plain": final}
        if not (self._segment and self._segment_clean):
            self._output(data)  # could not be rewritten in place
            return set()
        self._join(self._segment, final)
        return set(self._segment)

    # -- the scheme ---------------------------------------------------------------------------
    def _tick(self, acc: Any) -> None:
        if self.show_thoughts:
            self._tick_thoughts(acc.thought_text())
        if acc.answer_length > self._splitter.committed:
            self._apply(self._splitter.update(acc.answer_text()))

    def _tick_thoughts(self, thoughts: str) -> None:
        """Thoughts arrive in large chunks: re-sent whole once they have doubled."""
        sent = self._thought_sent
        if thoughts and (self._thoughts is None
                         or len(thoughts) - sent >= max(self.min_step, (self.growth - 1.0) * sent)):
            data = {"text/markdown": "*Thinking…*\n\n" + thoughts}
            if self._thoughts is None:
                self._thoughts = self._output(data)
            else:
                self._thoughts.show(data)
            self._thought_sent = len(thoughts)

    def _flush_text(self, text: str) -> None:
        """Finish the text so far (a step or an image follows it); an open code fence is
        closed and reopened in the next block."""
        self._apply(self._splitter.finish(text, close_fence=True))

    def _apply(self, events: list, last: bool = False) -> None:
        """Show what the splitter says; `last`: the answer ended (cut blocks join in on_done)."""
        for event in events:
            if isinstance(event, Show):
                self._grow(event.markdown)
            elif isinstance(event, Cut):
                self._block.append(self._grow(event.markdown))
                self._growing = None
            else:
                self._end(event, last)

    def _end(self, event: End, last: bool) -> None:
        if not event.cut:
            self._final(event.markdown, self._growing)
        else:
            outputs = self._block + ([self._growing] if self._growing is not None else [])
            if last:  # on_done joins it (unless it rewrites it)
                self._merges.append((outputs, event.markdown))
            elif not self._rate.busy(len(outputs) + 1):  # + the next block's first
                self._join(outputs, event.markdown)
            else:  # joined in on_done, to keep the rate; until then its last part is shown
                if self._growing is not None or event.text.strip():
                    if self._growing is None:
                        outputs.append(self._grow(event.tail))
                    else:
                        self._grow(event.tail)
                self._merges.append((outputs, event.markdown))
        self._growing, self._block = None, []


class TerminalDisplay:
    """Prints the answer as plain text as it arrives (plain terminal IPython), then a footer."""

    def __init__(self, stream: Any = None, *, interval: float = 0.05, show_thoughts: bool = False,
                 structured: bool = False, inline_thoughts: bool = False, sent: Any = None,
                 clock: Callable[[], float] = time.monotonic):
        self.structured = structured  # the JSON answer is printed once, pretty, at the end
        self.sent = sent  # the request: one line names its media first
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
        shown = sent_bundle(self.sent) if self.sent is not None else None
        if shown is not None:
            self._out().write(shown["text/plain"] + "\n\n")
            self._out().flush()

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
        *said, footer = [b["text/plain"] for b in ending(result, error=False)]
        if said:  # the stop sentence and notes, before the footer as everywhere
            out.write(("\n\n" if self._written else "") + "\n".join(said))
        out.write(("\n" if self._written or said else "") + footer + "\n")
        out.flush()
