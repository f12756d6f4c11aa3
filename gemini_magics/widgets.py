"""Widgets: the `%gemini ui` panel and the `%%gemini --ui` live view (views only).

- The answer runs in a `live.StreamJob` (worker + ticker threads); these classes are its two
  callbacks: `_tick` shows the live text and status, `_finish` writes the answer out.
- Output widgets are not saved with the notebook (ipywidgets #2279), so every finished answer is
  also written as an ordinary display output (display_id + update_display of Markdown with a
  text/plain copy) rendered by `render` exactly as a plain cell renders it.
- Settings live in the `GeminiMagics` traitlets: the panel writes and observes them, so
  `%config`, `%gemini NAME VALUE`, `%%gemini` options' defaults and the panel always agree.
"""
from __future__ import annotations

import html
import inspect
import uuid
import weakref
from typing import Any, Callable, Optional

import ipywidgets as W
from IPython.display import display

from . import render
from .catalog import LOCAL_MODEL, PANEL_TOOLS, model_choices
from .cell import finish, prepare, resolve_names
from .display import publish_bundle
from .errors import GeminiError
from .live import STATES, StreamJob, live_markdown, stop_all
from .options import PANEL_SETTINGS
from .result import GeminiResult
from .tools import parse_tools

__all__ = ["LiveView", "Panel", "run_live", "show_panel", "line_command", "user_functions"]

_FN_PREFIX = "fn:"

_LIVE_PLACEHOLDER = ("*The answer is streaming in the live view above; it is written here "
                     "when it ends.*")

# The running --ui answer of each cell id: re-running the cell stops it (its output is gone).
_BY_CELL: "weakref.WeakValueDictionary[str, StreamJob]" = weakref.WeakValueDictionary()
# One panel per magics instance, so `%gemini ui` reopens it with its turns and running answer.
_PANELS: "weakref.WeakKeyDictionary[Any, Panel]" = weakref.WeakKeyDictionary()


def _md_output(markdown: str) -> tuple:
    """Output-widget outputs showing one Markdown text (the live text while streaming)."""
    return _outputs([{"text/markdown": markdown}])


def _outputs(bundles: list) -> tuple:
    return tuple({"output_type": "display_data", "data": d, "metadata": {}} for d in bundles)


def _answer_outputs(result: GeminiResult, style: render.Style) -> tuple:
    """A finished answer in an Output widget: its Markdown (`render`) first, then its images
    as real image outputs."""
    bundles = render.pieces(result, style)
    images = [b for b in bundles if render.is_image(b)]
    markdown, plain = render.join([b for b in bundles if not render.is_image(b)])
    return _outputs([{"text/markdown": markdown, "text/plain": plain}] + images)


def _status_html(text: str) -> str:
    return f'<span style="font-size: 0.9em">{html.escape(text, quote=False)}</span>'


def _show_widget(widget: Any, plain: str) -> None:
    """Display `widget` with a readable text/plain fallback for kernel-less renderers."""
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
    """The plain cell's bookkeeping (`cell.finish`: `_gemini`, `--out`, `%gemini last`,
    `--save`); returns a sentence for the status line ('' if there is nothing to say)."""
    shell = getattr(magics, "shell", None)
    try:
        return finish(request, result, shell.user_ns if shell is not None else {}, magics)
    except GeminiError as exc:  # the images could not be written: one sentence already
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
        self.status = W.HTML(value=_status_html(STATES["sending"]))
        self.widget = W.VBox([self.answer, W.HBox([self.stop_button, self.status])])
        self.display_id = uuid.uuid4().hex
        self.media_id = uuid.uuid4().hex      # an output kept for the answer's first image
        self.job: Optional[StreamJob] = None
        self.note = ""
        self.status_line = STATES["sending"]
        self._publish = publish or publish_bundle
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
        bundles = render.pieces(result, render.style_for(job.request))
        first = next((b for b in bundles if render.is_image(b)), None)
        markdown, plain = render.join([b for b in bundles if b is not first])
        self._publish({"text/markdown": markdown, "text/plain": plain}, self.display_id, True)
        if first is not None:  # the first image keeps a real PNG/JPEG output of its own
            self._publish(first, self.media_id, True)
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
        self._publish = publish or publish_bundle
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
        self.model = W.Combobox(value=m.model, options=list(model_choices()), ensure_option=False,
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
            self.magics.observe(self._from_trait, names=list(PANEL_SETTINGS))
            self._observing = True
        elif not on and self._observing:
            self.magics.unobserve(self._from_trait, names=list(PANEL_SETTINGS))
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
        return [(t, t) for t in PANEL_TOOLS] + fns

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
                 if n.strip() in PANEL_TOOLS]
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
        except (GeminiError, ValueError) as exc:  # one sentence: bad prompt, media or tools
            self._say(str(exc))
            return None
        turn = {"prompt": text, "result": None, "style": render.style_for(request)}
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
        """The prompt box as a cell would send it (cell.prepare), with the panel's tools."""
        shell = getattr(self.magics, "shell", None)
        ns = shell.user_ns if shell is not None else {}
        request = prepare("", text, self.magics.settings(), ns)
        builtins, fns = self._picked_tools()
        request.tools = parse_tools(builtins)
        if fns:  # the magic's own lookup: the runner then calls them in its function loop
            request.functions = list(fns)
            try:
                resolve_names(request, ns)
            except ValueError as exc:
                raise GeminiError(str(exc)) from None
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
        return f"{STATES['idle']} · model {self.magics.model}"

    def _set_status(self, text: str) -> None:
        self.status_line = text
        if not self.closed and self.status.value != _status_html(text):
            self.status.value = _status_html(text)

    def _turn_widget(self, turn: dict) -> Any:
        you = W.HTML(f'<div style="white-space: pre-wrap"><b>You:</b> '
                     f'{html.escape(turn["prompt"], quote=False)}</div>')
        out = W.Output()
        if turn["result"] is not None:
            out.outputs = _answer_outputs(turn["result"], turn["style"])
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
            out.outputs = _answer_outputs(result, self.turns[-1]["style"])
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
            answer_md, answer_plain = render.markdown(t["result"], t["style"])
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



def line_command(magics: Any, word: str) -> Any:
    """`%gemini ui` and `%gemini stop`."""
    if word == "ui":
        show_panel(magics)
        return None
    if word == "stop":
        print(stop_all())
        return None
    raise ValueError(f"Unknown widgets command {word!r}; use %gemini ui or %gemini stop.")
