"""Widgets: the `%gemini ui` panel and the `%%gemini --ui` live view.

Why they are built this way:
- The request runs in a worker thread, so the kernel stays free to handle widget messages and
  Stop works (while a cell is busy, widget messages wait: ipywidgets #3468). Stop sets the
  runner's cancel event, which cancels the interaction on the server and keeps the partial text.
- Widgets are updated by a ticker thread at a fixed pace, never per event: at most
  `MAX_MESSAGES_PER_S` widget state messages a second however fast the deltas come, and the live
  text is capped to its last `LIVE_CHARS` characters so each message stays small.
- Output widgets are not saved with the notebook (ipywidgets #2279), so every finished answer is
  also written as an ordinary display output (display_id + update_display of Markdown with a
  text/plain copy), which renders on GitHub and in nbconvert without a kernel.
- Settings live in the `GeminiMagics` traitlets: the panel writes and observes them, so
  `%config`, `%gemini NAME VALUE`, `%%gemini` options' defaults and the panel always agree.
"""
from __future__ import annotations

import html
import inspect
import re
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Optional

import ipywidgets as W

from .display import publish_bundle as _publish  # a module attribute: tests record it
from .result import GeminiResult, footer_markdown, footer_text

__all__ = [
    "StreamJob", "LiveView", "Panel", "run_live", "show_panel", "stop_all", "line_command",
    "live_markdown", "image_bundles", "user_functions", "MODEL_CHOICES", "TOOL_CHOICES", "LOCAL_MODEL",
]

MAX_MESSAGES_PER_S = 20
# A tick sends at most two widget messages (the live text and the status line); the margin
# leaves room for the few messages of starting and finishing within the same second.
TICK_S = 2 / MAX_MESSAGES_PER_S * 1.5
LIVE_CHARS = 12_000

TEXT_MODELS = (
    "gemini-3.5-flash", "gemini-3.5-flash-lite", "gemini-3.1-pro-preview", "gemini-3-flash-preview",
    "gemini-3.1-flash-lite", "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite",
)
IMAGE_MODELS = ("gemini-3.1-flash-image", "gemini-3-pro-image", "gemini-2.5-flash-image",
                "gemini-3.1-flash-lite-image")
# Picking this model also sets GeminiMagics.offline: answers come from the embedded local server.
LOCAL_MODEL = "local-offline"
MODEL_CHOICES = TEXT_MODELS + IMAGE_MODELS + (LOCAL_MODEL,)
TOOL_CHOICES = ("google_search", "code_execution", "url_context", "google_maps", "file_search")
_FN_PREFIX = "fn:"
_SYNCED_SETTINGS = ["model", "system", "temperature", "tools"]  # GeminiMagics traits the panel shows

_LIVE_PLACEHOLDER = ("*The answer is streaming in the live view above; it is written here "
                     "when it ends.*")
_STATES = {
    "sending": "⏳ sending", "streaming": "● streaming", "stopping": "■ stopping",
    "stopped": "■ stopped", "done": "✓ done", "error": "⚠ error", "idle": "○ ready",
}

# Jobs that have not finished showing their answer (for `%gemini stop`).
_RUNNING: "weakref.WeakSet[StreamJob]" = weakref.WeakSet()
# The running --ui answer of each cell id: re-running the cell stops it (its output is gone).
_BY_CELL: "weakref.WeakValueDictionary[str, StreamJob]" = weakref.WeakValueDictionary()
# One panel per magics instance, so `%gemini ui` reopens it with its turns and running answer.
_PANELS: "weakref.WeakKeyDictionary[Any, Panel]" = weakref.WeakKeyDictionary()


# --------------------------------------------------------------------------------------------
# The job: one request in a worker thread, shown by a ticker thread
# --------------------------------------------------------------------------------------------

class StreamJob:
    """Runs one request with `runner.run` in a worker thread. A ticker thread calls
    `on_tick(job)` every `tick` seconds while it runs and `on_finish(job)` once at the end, so
    views are refreshed at a bounded rate whatever the event rate. `stop()` cancels for real."""

    def __init__(self, request: Any, *, settings: Optional[dict] = None, backend: Any = None,
                 conversation: Any = None, cell_id: Optional[str] = None, fast_stream: bool = True,
                 on_tick: Optional[Callable] = None, on_finish: Optional[Callable] = None,
                 tick: float = TICK_S):
        self.request = request
        self.settings = dict(settings or {})
        self.backend = backend
        self.conversation = conversation
        self.cell_id = cell_id
        self.fast_stream = fast_stream
        self.on_tick = on_tick
        self.on_finish = on_finish
        self.tick = tick
        self.cancel_event = threading.Event()
        self.finished = threading.Event()   # run() returned: `result` is set
        self.closed = threading.Event()     # on_finish ran: the answer is shown and saved
        self.result: Optional[GeminiResult] = None
        self.notice: Optional[str] = None
        self.view_errors: list = []
        self.acc: Any = None
        self.snapshot = ""                  # answer text so far, taken on the worker thread
        self._snap_at = float("-inf")
        self._snap_len = -1
        self.started: Optional[float] = None
        self.ended: Optional[float] = None
        self._worker = threading.Thread(target=self._work, name="gemini-widgets-run", daemon=True)
        self._ticker = threading.Thread(target=self._pump, name="gemini-widgets-tick", daemon=True)

    # -- runner observer (called on the worker thread) -------------------------------------
    def on_start(self, acc: Any) -> None:
        self.acc = acc

    def on_update(self, acc: Any) -> None:
        # Accumulator.answer_text() compacts its chunk list, which is only safe on the thread
        # that feeds it: snapshot here, at most twice a tick, and let the ticker read the str.
        now = time.monotonic()
        if now - self._snap_at >= self.tick / 2 and acc.answer_length != self._snap_len:
            self._snap_at = now
            self._snap_len = acc.answer_length
            self.snapshot = acc.answer_text()

    def on_done(self, result: GeminiResult) -> None:
        self.snapshot = result.answer

    # -- control ---------------------------------------------------------------------------
    def start(self) -> "StreamJob":
        self.started = time.monotonic()
        _RUNNING.add(self)
        self._worker.start()
        self._ticker.start()
        return self

    @property
    def running(self) -> bool:
        """True until the answer has ended and been shown."""
        return self.started is not None and not self.closed.is_set()

    def stop(self) -> str:
        """Cancel the interaction (server side too); returns a sentence for the status line."""
        if self.finished.is_set():
            return "Nothing to stop: this answer has already ended."
        if self.cancel_event.is_set():
            return "Already stopping: the interaction is being cancelled on the server."
        self.cancel_event.set()
        return "Stopping: cancelling the interaction on the server; the partial answer is kept."

    def wait(self, timeout: Optional[float] = None) -> Optional[GeminiResult]:
        """Wait (at most `timeout` seconds) until the answer has ended and been shown."""
        self.closed.wait(timeout)
        return self.result

    # -- what the status line shows -------------------------------------------------------------
    @property
    def state(self) -> str:
        r = self.result
        if r is not None:
            return "stopped" if r.stopped else ("error" if r.error else "done")
        if self.started is None:
            return "idle"
        if self.cancel_event.is_set():
            return "stopping"
        acc = self.acc
        return "streaming" if acc is not None and acc.events else "sending"

    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        end = self.ended if self.ended is not None else time.monotonic()
        return end - self.started

    def tokens(self) -> tuple[int, bool]:
        """(output tokens, exact): the server's count when it sent one, else ~4 characters each."""
        usage = self.result.usage if self.result is not None else (
            getattr(self.acc, "usage", None) or {})
        out = usage.get("total_output_tokens") if usage else None
        if isinstance(out, int):
            return out, True
        length = self.acc.answer_length if self.acc is not None else 0
        return (max(1, round(length / 4)) if length else 0), False

    def status_text(self, note: str = "") -> str:
        """One line: state · elapsed · tokens · tokens/s — then the error or a note."""
        state = self.state
        parts = [_STATES[state], f"{self.elapsed():.1f} s"]
        n, exact = self.tokens()
        if n:
            parts.append(f"{'' if exact else '≈'}{n} tokens")
            secs = self.elapsed()
            if secs > 0:
                parts.append(f"{n / secs:.0f} tokens/s")
        line = " · ".join(parts)
        r = self.result
        if r is not None and r.error:
            return f"{line} — {r.error}"
        if state == "stopped":
            kept = "the partial answer is kept" if r is not None and r.answer else "nothing had arrived yet"
            return f"{line} — stopped and cancelled on the server; {kept}."
        if self.notice and state in ("sending", "streaming", "done"):
            note = note or self.notice
        return f"{line} — {note}" if note else line

    # -- threads -----------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            self.result = self._run()
        except BaseException as exc:  # noqa: BLE001 - run() explains failures; this is a bug
            self.result = self._failed(exc)
        finally:
            self.ended = time.monotonic()
            self.finished.set()

    def _run(self) -> GeminiResult:
        from .client import resolve_backend
        from .runner import run

        backend = self.backend
        if backend is None:
            try:
                backend, self.notice = resolve_backend(self.settings)
            except Exception as exc:  # noqa: BLE001 - e.g. the local model cannot start
                return self._failed(exc, starting=True)
        return run(self.request, backend=backend, observers=[self],
                   cancel_event=self.cancel_event, conversation=self.conversation,
                   cell_id=self.cell_id, fast_stream=self.fast_stream)

    def _failed(self, exc: BaseException, starting: bool = False) -> GeminiResult:
        from .errors import explain
        from .magics import backend_failure

        why = backend_failure(exc) if starting else explain(exc)
        return GeminiResult(answer=self.snapshot, text=self.snapshot, model=self.request.model,
                            elapsed=self.elapsed(), error=why)

    def _pump(self) -> None:
        try:
            while not self.finished.wait(self.tick):
                self._call(self.on_tick)
            self._call(self.on_finish)
        finally:
            _RUNNING.discard(self)
            self.closed.set()

    def _call(self, fn: Optional[Callable]) -> None:
        if fn is None:
            return
        try:
            fn(self)
        except Exception as exc:  # noqa: BLE001 - a view failing must not stop the answer
            self.view_errors.append(exc)


# --------------------------------------------------------------------------------------------
# Markdown helpers
# --------------------------------------------------------------------------------------------

_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$", re.M)


def _open_fence(text: str) -> Optional[str]:
    """The line opening a code fence still open at the end of `text` (None if none is)."""
    opener: Optional[str] = None
    marker = ""
    for m in _FENCE_LINE.finditer(text):
        fence, rest = m.group(1), m.group(2)
        if opener is None:
            opener, marker = m.group(0).strip(), fence
        elif fence[0] == marker[0] and len(fence) >= len(marker) and not rest.strip():
            opener, marker = None, ""
    return opener


def live_markdown(text: str, limit: int = LIVE_CHARS) -> str:
    """What the live view shows while streaming: all of `text`, or its last `limit` characters
    (cut at a line break, an open code fence reopened) after a note saying what is hidden."""
    if len(text) <= limit:
        return text
    start = len(text) - limit
    nl = text.find("\n", start)
    if 0 <= nl < start + limit // 2:
        start = nl + 1
    fence = _open_fence(text[:start])
    note = (f"*… {start:,} earlier characters are hidden while streaming; the whole answer is "
            f"written out when it ends.*\n\n")
    return note + (fence + "\n" if fence else "") + text[start:]


def _final_parts(result: GeminiResult, show_thoughts: bool = False,
                 images: tuple = ()) -> tuple[str, str]:
    """(markdown, plain text) of a finished answer: thoughts, answer, `images` (bundles, shown
    inline as data URIs), stop/error note, footer."""
    md: list[str] = []
    plain: list[str] = []
    if show_thoughts and result.thoughts:
        md.append("<details><summary>Thoughts</summary>\n\n" + result.thoughts.strip()
                  + "\n\n</details>")
    if result.answer:
        md.append(result.answer)
        plain.append(result.answer)
    for bundle in images:
        md.append(_md_image(bundle))
        plain.append(bundle.get("text/plain", "(image)"))
    if result.stopped:
        note = ("Stopped: the partial answer is kept; this turn was not added to the conversation."
                if result.answer else "Stopped before any text arrived.")
        md.append(f"*■ {note}*")
        plain.append(f"■ {note}")
    if result.error:
        md.append(f"**⚠ {_md_escape(result.error)}**")
        plain.append(f"⚠ {result.error}")
    if not md:
        md.append("*(no text in the answer)*")
    md.append(footer_markdown(result))
    plain.append(footer_text(result))
    return "\n\n".join(md), "\n\n".join(plain)


def image_bundles(result: GeminiResult) -> list[dict]:
    """Display bundles (`image/png` or `image/jpeg` + `text/plain`) of the answer's images, in
    order; the original bytes pass through (no decode, no re-encode)."""
    from .images import image_mimebundle

    bundles = []
    for part in getattr(result, "image_parts", None) or ():
        if not part.get("data"):
            where = part.get("uri")
            bundles.append({"text/plain": f"(an image at {where})" if where else "(an empty image)"})
            continue
        try:
            bundles.append(image_mimebundle(part))
        except Exception as exc:  # noqa: BLE001 - a broken image must not hide the answer
            bundles.append({"text/plain": f"(an image that could not be shown: {exc})"})
    return bundles


def _md_image(bundle: dict) -> str:
    """An image as Markdown with a data URI (for outputs that must stay a single Markdown)."""
    for mime in ("image/png", "image/jpeg"):
        if mime in bundle:
            return f"![{_md_escape(bundle.get('text/plain', 'image'))}](data:{mime};base64,{bundle[mime]})"
    return f"*{_md_escape(bundle.get('text/plain', '(image)'))}*"


def _md_escape(text: str) -> str:
    return re.sub(r"([\\`*_\[\]<>])", r"\\\1", text)


def _md_output(markdown: str, plain: Optional[str] = None, images: list = ()) -> tuple:
    data = {"text/markdown": markdown}
    if plain is not None:
        data["text/plain"] = plain
    return tuple({"output_type": "display_data", "data": d, "metadata": {}}
                 for d in [data, *images])


def _status_html(text: str) -> str:
    return f'<span style="font-size: 0.9em">{html.escape(text, quote=False)}</span>'


def _publish_now(data: dict, display_id: str, update: bool) -> None:
    _publish(data, display_id, update)  # looked up at call time, so tests can record it


def _show_widget(widget: Any, plain: str) -> None:
    """Display `widget` with a readable text/plain fallback for kernel-less renderers."""
    from IPython.display import display

    bundle = dict(widget._repr_mimebundle_() or {})
    bundle["text/plain"] = plain
    display(bundle, raw=True)


def user_functions(namespace: dict, hidden: Optional[dict] = None) -> list[str]:
    """Names of the functions the user defined in the notebook (candidates for function tools)."""
    hidden = hidden or {}
    names = []
    for name, value in list(namespace.items()):
        if name.startswith("_") or name in hidden:
            continue
        if inspect.isfunction(value) and getattr(value, "__module__", None) == "__main__":
            names.append(name)
    return sorted(names)


def _finish_bookkeeping(magics: Any, request: Any, result: GeminiResult) -> str:
    """What the magic does after a run: `_gemini`, `--out VAR`, `%gemini last`, `--save`.
    Returns a sentence for the status line ('' if there is nothing to say)."""
    magics.last_result = result
    shell = getattr(magics, "shell", None)
    ns = shell.user_ns if shell is not None else {}
    ns["_gemini"] = result
    from .magics import assign_out

    assign_out(ns, request, result)  # the same rule as a plain cell (--schema: the parsed value)
    target = getattr(request, "save", None)
    if not target or not result.ok:
        return ""
    if not result.image_parts:
        return "Nothing saved: the answer has no images."
    from .magics import save_images_line

    try:
        return save_images_line(result, target)
    except ValueError as exc:  # ImageError: one sentence already
        return str(exc)


# --------------------------------------------------------------------------------------------
# %%gemini --ui: the compact live view
# --------------------------------------------------------------------------------------------

class LiveView:
    """One `%%gemini --ui` answer: live text, Stop and a status line in a widget; when the
    answer ends it is written to an ordinary display output below the widget (saved with the
    notebook) and the widget keeps only the final status line."""

    def __init__(self, *, publish: Optional[Callable[[dict, str, bool], None]] = None):
        self.answer = W.Output()
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="warning",
                                    tooltip="Stop the answer and cancel it on the server")
        self.status = W.HTML(value=_status_html(_STATES["sending"]))
        self.widget = W.VBox([self.answer, W.HBox([self.stop_button, self.status])])
        self.display_id = uuid.uuid4().hex
        self.media_id = uuid.uuid4().hex      # an output kept for the answer's first image
        self.job: Optional[StreamJob] = None
        self.note = ""
        self.status_line = _STATES["sending"]
        self._publish = publish or _publish_now
        self._shown_len = -1
        self.stop_button.on_click(lambda _b: self.stop())

    def show(self) -> None:
        _show_widget(self.widget, "Gemini live view (interactive while the kernel runs; "
                                  "the answer is saved below).")
        self._publish({"text/markdown": _LIVE_PLACEHOLDER, "text/plain": _LIVE_PLACEHOLDER},
                      self.display_id, False)
        self._publish({"text/plain": ""}, self.media_id, False)

    def attach(self, job: StreamJob) -> StreamJob:
        self.job = job
        job.on_tick = self._tick
        job.on_finish = self._finish
        return job

    # -- user actions ------------------------------------------------------------------------
    def stop(self) -> str:
        """Stop the answer (also cancels it on the server); returns what the status line says."""
        if self.job is None:
            self.note = "Nothing to stop: the answer has not started."
        else:
            self.note = self.job.stop()
            self._set_status(self.job.status_text(self.note))
        return self.note

    def wait(self, timeout: Optional[float] = None) -> Optional[GeminiResult]:
        """Wait until the answer has ended and been written out; returns the result."""
        return self.job.wait(timeout) if self.job is not None else None

    @property
    def result(self) -> Optional[GeminiResult]:
        return self.job.result if self.job is not None else None

    @property
    def text(self) -> str:
        """The answer so far (the whole answer once it has ended)."""
        if self.job is None:
            return ""
        return self.job.result.answer if self.job.result is not None else self.job.snapshot

    # -- called by the job's ticker ------------------------------------------------------------
    def _set_status(self, text: str) -> None:
        if text != self.status_line:
            self.status_line = text
            self.status.value = _status_html(text)

    def _tick(self, job: StreamJob) -> None:
        text = job.snapshot
        if len(text) != self._shown_len:
            self._shown_len = len(text)
            self.answer.outputs = _md_output(live_markdown(text))
        self._set_status(job.status_text(self.note if job.cancel_event.is_set() else ""))

    def _finish(self, job: StreamJob) -> None:
        result = job.result
        images = image_bundles(result)
        markdown, plain = _final_parts(result, getattr(job.request, "show_thoughts", False),
                                       images=tuple(images[1:]))
        self._publish({"text/markdown": markdown, "text/plain": plain}, self.display_id, True)
        if images:
            self._publish(images[0], self.media_id, True)
        self.answer.outputs = ()
        self.stop_button.disabled = True
        line = job.status_text()
        if not (result.error or result.stopped):
            line += " — the answer is written below." + (f" {self.note}" if self.note else "")
        self._set_status(line)


def run_live(magics: Any, request: Any, backend: Any = None, *, cell_id: Optional[str] = None,
             publish: Optional[Callable[[dict, str, bool], None]] = None) -> LiveView:
    """Start `request` in the background with a live view, and return at once (the kernel stays
    free). The view is `_gemini_live`; the result goes to `_gemini` (and `--out`) at the end."""
    _require_notebook(magics, "--ui (a live view with a Stop button)", "drop --ui")
    previous = _BY_CELL.get(cell_id) if cell_id else None
    if previous is not None and not previous.finished.is_set():
        previous.stop()  # its outputs were cleared by the re-run: do not leave it streaming
    view = LiveView(publish=publish)
    view.show()
    job = StreamJob(request, settings=magics.settings(), backend=backend,
                    conversation=magics.conversation, cell_id=cell_id,
                    fast_stream=getattr(magics, "fast_stream", True))
    view.attach(job)
    finish = view._finish

    def on_finish(j: StreamJob) -> None:
        view.note = _finish_bookkeeping(magics, request, j.result)
        finish(j)

    job.on_finish = on_finish
    shell = getattr(magics, "shell", None)
    if shell is not None:
        shell.user_ns["_gemini_live"] = view
    if cell_id:
        _BY_CELL[cell_id] = job
    job.start()
    return view


# --------------------------------------------------------------------------------------------
# %gemini ui: the panel
# --------------------------------------------------------------------------------------------

class Panel:
    """The `%gemini ui` panel. Its pickers ARE the magics' settings (model, system,
    temperature, tools); its turns continue the same
    conversation as `%%gemini` cells. Closing and reopening keeps turns and a running answer."""

    def __init__(self, magics: Any, *, publish: Optional[Callable[[dict, str, bool], None]] = None):
        self.magics = magics
        self._publish = publish or _publish_now
        self.turns: list[dict] = []       # {"prompt", "result"}; result None while running
        self.job: Optional[StreamJob] = None
        self.note = ""
        self.status_line = ""
        self.transcript_id = uuid.uuid4().hex
        self.widget: Any = None
        self._syncing = False
        self._observing = False
        self._shown_len = -1
        self.picked: tuple = ()           # tool values picked, kept across close/reopen
        self._build()

    # -- building ----------------------------------------------------------------------------
    def _build(self) -> None:
        m = self.magics
        self.model = W.Combobox(value=m.model, options=list(MODEL_CHOICES), ensure_option=False,
                                continuous_update=False, description="Model",
                                placeholder="pick or type a model name")
        options = self._tool_options()
        self.tools = W.SelectMultiple(options=options, rows=6, description="Tools",
                                      value=self._kept_tools(options))
        self.system = W.Textarea(value=m.system or "", continuous_update=False,
                                 description="System", placeholder="system instruction (optional)",
                                 layout=W.Layout(width="auto"))
        self.use_temperature = W.Checkbox(value=m.temperature is not None, description="Temperature",
                                          indent=False, layout=W.Layout(width="auto"))
        self.temperature = W.FloatSlider(value=1.0 if m.temperature is None else m.temperature,
                                         min=0.0, max=2.0, step=0.05, continuous_update=False,
                                         disabled=m.temperature is None, readout_format=".2f")
        self.conversation = W.VBox([self._turn_widget(t) for t in self.turns])
        self.prompt = W.Textarea(value="", placeholder="Ask Gemini… ({name} fills in a variable)",
                                 layout=W.Layout(width="auto", height="5em"))
        self.send_button = W.Button(description="Send", icon="paper-plane", button_style="primary")
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="warning",
                                    tooltip="Stop the answer and cancel it on the server")
        self.status = W.HTML()
        self.send_button.on_click(lambda _b: self.send())
        self.stop_button.on_click(lambda _b: self.stop())
        self.widget = W.VBox([
            W.HBox([self.model, W.HBox([self.use_temperature, self.temperature])]),
            W.HBox([self.tools, self.system]),
            self.conversation,
            self.prompt, W.HBox([self.send_button, self.stop_button, self.status]),
        ])
        self.model.observe(self._model_picked, names="value")
        self.system.observe(self._system_picked, names="value")
        self.use_temperature.observe(self._temperature_picked, names="value")
        self.temperature.observe(self._temperature_picked, names="value")
        self.tools.observe(self._tools_picked, names="value")
        self._from_trait_tools()
        self._observe_magics(True)
        self._shown_len = -1
        if self.job is not None and self.job.running:
            self.send_button.disabled = True
            self._tick(self.job)
        else:
            self._set_status(self.status_line or self._idle_status())

    @property
    def closed(self) -> bool:
        return self.widget is None

    def show(self) -> None:
        """Display the panel (rebuilt if it was closed) and the saved transcript under it."""
        if self.closed:
            self._build()
        else:  # list the functions defined since, keeping what was picked
            options = self._tool_options()
            self._syncing, was = True, self._syncing
            try:
                self.tools.options = options
                self.tools.value = self._kept_tools(options)
            finally:
                self._syncing = was
        _show_widget(self.widget, "Gemini panel (interactive while the kernel runs; the "
                                  "conversation is saved below).")
        md, plain = self._transcript()
        self._publish({"text/markdown": md, "text/plain": plain}, self.transcript_id, False)

    def close(self) -> None:
        """Close the panel's widgets; a running answer continues and shows on reopening."""
        if self.closed:
            return
        self._observe_magics(False)
        widget, self.widget = self.widget, None
        _close_tree(widget)

    # -- settings: widgets <-> traitlets ------------------------------------------------------------
    def _observe_magics(self, on: bool) -> None:
        if on and not self._observing:
            self.magics.observe(self._from_trait, names=_SYNCED_SETTINGS)
            self._observing = True
        elif not on and self._observing:
            self.magics.unobserve(self._from_trait, names=_SYNCED_SETTINGS)
            self._observing = False

    def _from_trait(self, change: dict) -> None:
        if self._syncing or self.closed:
            return
        self._syncing = True
        try:
            name, new = change["name"], change["new"]
            if name == "model":
                self.model.value = new or ""
            elif name == "system":
                self.system.value = new or ""
            elif name == "temperature":
                self.use_temperature.value = new is not None
                self.temperature.disabled = new is None
                if new is not None:
                    self.temperature.value = new
            elif name == "tools":
                self._from_trait_tools()
        finally:
            self._syncing = False

    def _set_trait(self, name: str, value: Any) -> bool:
        self._syncing = True
        try:
            setattr(self.magics, name, value)
            return True
        except Exception as exc:  # noqa: BLE001 - a TraitError: say so, keep the old value
            self._say(f"Cannot set {name} to {value!r} ({str(exc).splitlines()[0]}).")
            return False
        finally:
            self._syncing = False

    def _model_picked(self, change: dict) -> None:
        if self._syncing:
            return
        name = (change["new"] or "").strip()
        if not name or any(c.isspace() for c in name):
            self._say(f"Model name {change['new']!r} is not valid; pick one from the list or type "
                      f"a name without spaces, e.g. gemini-3.5-flash.")
            return
        old = self.magics.model
        if self._set_trait("model", name):
            if name == LOCAL_MODEL:
                self._set_trait("offline", True)
            elif old == LOCAL_MODEL:
                self._set_trait("offline", False)
            self._say(f"Model: {name} (also the default for %%gemini cells).")

    def _system_picked(self, change: dict) -> None:
        if not self._syncing:
            self._set_trait("system", change["new"].strip() or None)

    def _temperature_picked(self, change: dict) -> None:
        if self._syncing:
            return
        on = self.use_temperature.value
        self.temperature.disabled = not on
        self._set_trait("temperature", float(self.temperature.value) if on else None)

    def _tool_options(self) -> list:
        shell = getattr(self.magics, "shell", None)
        ns = shell.user_ns if shell is not None else {}
        hidden = getattr(shell, "user_ns_hidden", {}) if shell is not None else {}
        fns = [(f"{name}() · your function", _FN_PREFIX + name) for name in user_functions(ns, hidden)]
        return [(t, t) for t in TOOL_CHOICES] + fns

    def _kept_tools(self, options: list) -> tuple:
        values = {v for _, v in options}
        return tuple(v for v in self.picked if v in values)

    def _picked_tools(self) -> tuple[list[str], list[str]]:
        builtins = [v for v in self.tools.value if not v.startswith(_FN_PREFIX)]
        fns = [v[len(_FN_PREFIX):] for v in self.tools.value if v.startswith(_FN_PREFIX)]
        return builtins, fns

    def _tools_picked(self, change: dict) -> None:
        if self._syncing:
            return
        self.picked = tuple(change["new"])
        builtins, _ = self._picked_tools()
        self._set_trait("tools", ",".join(builtins) or None)

    def _from_trait_tools(self) -> None:
        names = [n.strip() for n in (self.magics.tools or "").split(",")
                 if n.strip() in TOOL_CHOICES]
        was, self._syncing = self._syncing, True
        try:
            keep = [v for v in self.tools.value if v.startswith(_FN_PREFIX)]
            self.tools.value = self.picked = tuple(names + keep)
        finally:
            self._syncing = was

    # -- asking ------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.running

    def send(self) -> Optional[StreamJob]:
        """Send the prompt box as the next turn; returns the job, or None (status says why)."""
        if self.busy:
            self._say("Still answering the last prompt; press Stop first, or wait for it to end.")
            return None
        text = self.prompt.value if not self.closed else ""
        if not text.strip():
            self._say("The prompt is empty; type a question in the box, then press Send.")
            return None
        try:
            request = self._request(text)
        except ValueError as exc:  # ArgsError, PromptError and tool errors are ValueErrors
            self._say(str(exc))
            return None
        turn = {"prompt": text, "result": None}
        self.turns.append(turn)
        self.conversation.children = tuple(self.conversation.children) + (
            self._turn_widget(turn),)
        self.prompt.value = ""
        self.note = ""
        self._shown_len = -1
        self.job = StreamJob(request, settings=self.magics.settings(),
                             conversation=self.magics.conversation,
                             fast_stream=getattr(self.magics, "fast_stream", True),
                             on_tick=self._tick, on_finish=self._finish)
        self.send_button.disabled = True
        self.job.start()
        return self.job

    def _request(self, text: str) -> Any:
        from . import args as _args
        from .magics import build_parts, resolve_names
        from .tools import parse_tools

        request = _args.parse("", text, self.magics.settings())
        shell = getattr(self.magics, "shell", None)
        ns = shell.user_ns if shell is not None else {}
        # The magic's prompt building: {var} text, and media values as content.
        request = _args.with_parts(request, build_parts(request, ns))
        builtins, fns = self._picked_tools()
        request.tools = parse_tools(builtins)
        if fns:  # the magic's own lookup: the runner then calls them in its function loop
            request.functions = list(fns)
            resolve_names(request, ns)
        return request

    def stop(self) -> str:
        """Stop the running answer (also on the server); returns what the status line says."""
        if self.job is None:
            msg = "Nothing to stop: no answer is streaming."
        else:
            msg = self.job.stop()
        self.note = msg
        self._set_status(self.job.status_text(msg) if self.job is not None else msg)
        return msg

    def wait(self, timeout: Optional[float] = None) -> Optional[GeminiResult]:
        return self.job.wait(timeout) if self.job is not None else None

    # -- showing -----------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.note = text
        self._set_status(self.job.status_text(text) if self.busy else text)

    def _idle_status(self) -> str:
        return f"{_STATES['idle']} · model {self.magics.model}"

    def _set_status(self, text: str) -> None:
        self.status_line = text
        if not self.closed and self.status.value != _status_html(text):
            self.status.value = _status_html(text)

    def _turn_widget(self, turn: dict) -> Any:
        you = W.HTML(f'<div style="white-space: pre-wrap"><b>You:</b> '
                     f'{html.escape(turn["prompt"], quote=False)}</div>')
        out = W.Output()
        if turn["result"] is not None:
            out.outputs = _md_output(_final_parts(turn["result"])[0],
                                     images=image_bundles(turn["result"]))
        turn["out"] = out
        return W.VBox([you, out])

    def _tick(self, job: StreamJob) -> None:
        if self.closed or job is not self.job:
            return
        text = job.snapshot
        out = self.turns[-1].get("out") if self.turns else None
        if out is not None and len(text) != self._shown_len:
            self._shown_len = len(text)
            out.outputs = _md_output(live_markdown(text))
        self._set_status(job.status_text(self.note))

    def _finish(self, job: StreamJob) -> None:
        result = job.result
        self.turns[-1]["result"] = result
        _finish_bookkeeping(self.magics, job.request, result)
        md, plain = self._transcript()
        self._publish({"text/markdown": md, "text/plain": plain}, self.transcript_id, True)
        if self.closed:
            self.status_line = job.status_text()
            return
        out = self.turns[-1].get("out")
        if out is not None:
            out.outputs = _md_output(_final_parts(result)[0], images=image_bundles(result))
        self.send_button.disabled = False
        self._set_status(job.status_text(self.note if not (result.error or result.stopped) else ""))

    def _transcript(self) -> tuple[str, str]:
        """The panel's conversation as Markdown (folded) and text, for the saved notebook."""
        done = [t for t in self.turns if t["result"] is not None]
        if not done:
            text = "Gemini panel: the conversation is saved here as it goes."
            return f"*{text}*", text
        md, plain = [], []
        for t in done:
            quoted = "\n".join("> " + line for line in t["prompt"].splitlines())
            answer_md, answer_plain = _final_parts(t["result"],
                                                   images=tuple(image_bundles(t["result"])))
            md.append(f"**You:**\n\n{quoted}\n\n{answer_md}")
            plain.append(f"You: {t['prompt']}\n\n{answer_plain}")
        n = len(done)
        summary = f"Gemini panel: {n} turn{'s' if n != 1 else ''} (saved with the notebook)"
        return (f"<details><summary>{summary}</summary>\n\n" + "\n\n---\n\n".join(md)
                + "\n\n</details>", summary + "\n\n" + "\n\n---\n\n".join(plain))


def _close_tree(widget: Any) -> None:
    for child in getattr(widget, "children", ()) or ():
        _close_tree(child)
    widget.close()


# --------------------------------------------------------------------------------------------
# Entry points from the magics
# --------------------------------------------------------------------------------------------

def _require_notebook(magics: Any, what: str, instead: str) -> None:
    """Widgets need a Jupyter frontend: say so in a terminal instead of printing widget reprs."""
    from .errors import GeminiError

    if magics.display_mode() == "terminal":
        raise GeminiError(f"{what} needs a Jupyter notebook with ipywidgets; in a terminal, "
                          f"{instead}.")


def show_panel(magics: Any, *, publish: Optional[Callable[[dict, str, bool], None]] = None) -> Panel:
    """`%gemini ui`: show this session's panel (the same one again, turns and all)."""
    _require_notebook(magics, "The %gemini ui panel",
                      "use %%gemini cells, and %gemini NAME VALUE to change settings")
    panel = _PANELS.get(magics)
    if panel is None:
        panel = Panel(magics, publish=publish)
        _PANELS[magics] = panel
    panel.show()
    shell = getattr(magics, "shell", None)
    if shell is not None:
        shell.user_ns["_gemini_panel"] = panel
    return panel


def stop_all() -> str:
    """`%gemini stop`: stop every answer streaming in a live view or the panel."""
    jobs = [j for j in list(_RUNNING) if not j.finished.is_set()]
    if not jobs:
        return "Nothing to stop: no answer is streaming."
    for job in jobs:
        job.stop()
    n = len(jobs)
    return (f"Stopping {n} answer{'s' if n != 1 else ''}: cancelled on the server; the partial "
            f"text is kept.")


def line_command(magics: Any, word: str) -> Any:
    """`%gemini ui` and `%gemini stop`."""
    if word == "ui":
        show_panel(magics)
        return None
    if word == "stop":
        print(stop_all())
        return None
    raise ValueError(f"Unknown widgets command {word!r}; use %gemini ui or %gemini stop.")
