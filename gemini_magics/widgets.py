"""Widgets: the `%gemini ui` panel and the `%%gemini --ui` live view (views only).

- The answer runs in a `live.StreamJob` (worker + ticker threads); these classes are its two
  callbacks: `_tick` shows the live text and status, `_finish` writes the answer out.
- Widget outputs are not saved usefully with the notebook (ipywidgets #2279: a reopened
  notebook without a kernel shows "model not found"), so the `--ui` view is itself displayed
  under a display_id and REPLACED by the answer (`update_display`) when it ends: the saved
  notebook holds only the answer, rendered by `render` exactly as a plain cell renders it. The
  panel writes a transcript output under itself the same way.
- The panel is a view plus `SettingsPickers`: settings live in the `GeminiMagics` traitlets,
  which the pickers write and observe, so `%config`, `%gemini NAME VALUE`, `%%gemini` options'
  defaults and the panel always agree; a pick says in a line of its own that later cells use
  it. A panel turn's request comes from the cell pipeline (`cell.prepare`), as a cell's does.
- The widget outputs carry metadata `{"gemini_magics": {"kind": "panel" | "live view"}}`, by
  which the JupyterLab extension shows a saved one's text when its kernel is gone.
- A kernel's widget state (its panel, the `--ui` answer of each cell) is a `Panels` its
  Session owns (`panels_of(magics.session)`), with the session's live jobs (`live.jobs_of`).
- The panel's prompt box is a small anywidget textarea (`PromptBox`): Enter sends, Shift+Enter
  inserts a newline. Without anywidget installed it is a plain Textarea (Send button only).
- CSS classes for tests and styling: `gemini-panel`, `gemini-conversation`, `gemini-turn`,
  `gemini-prompt-box` (with the `textarea.gemini-prompt` inside), `gemini-send`, `gemini-stop`,
  `gemini-status`, `gemini-panel-info`; the live view is `gemini-live`.
"""
from __future__ import annotations

import copy
import html
import inspect
import uuid
import weakref
from typing import Any, Callable, Optional

import ipywidgets as W
from IPython.display import display

from . import spend
from . import render
from .catalog import LOCAL_MODEL, PANEL_TOOLS, model_choices, unknown_name_warning
from .cell import finish, prepare
from .client import answers_offline
from .display import publish_bundle
from .errors import GeminiError
from .live import STATES, LiveJobs, StreamJob, jobs_of, live_markdown
from .options import PANEL_SETTINGS
from .result import GeminiResult
from .session import Session

try:  # the prompt box's Enter-to-send is a few lines of frontend code, run by anywidget
    import anywidget
    import traitlets
except ImportError:  # pragma: no cover - anywidget is a dependency; a plain Textarea then
    anywidget = None

__all__ = ["LiveView", "Panel", "SettingsPickers", "Panels", "panels_of", "PromptBox", "run_live",
           "show_panel", "line_command", "user_functions"]

_FN_PREFIX = "fn:"

# Sizes that do not change with what the status line says (buttons never shrink or grow).
_BUTTON = dict(width="7em", min_width="7em", flex="0 0 auto")
_STATUS = dict(flex="1 1 auto", min_width="0", margin="0 0 0 0.6em")
CONVERSATION_HEIGHT = "22em"  # the panel's conversation scrolls inside this; the prompt stays put
_EMPTY_CONVERSATION = ("<i style='opacity: 0.7'>The conversation shows here; the newest turn "
                       "stays in view.</i>")

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


def _widget_bundle(widget: Any, plain: str) -> dict:
    """`widget`'s display bundle with a readable text/plain fallback for kernel-less renderers."""
    bundle = dict(widget._repr_mimebundle_() or {})
    bundle["text/plain"] = plain
    return bundle


def _kind(kind: str) -> dict:
    """Output metadata naming one of our widget outputs ("panel", "live view"): the JupyterLab
    extension shows a dead one's text/plain by it (widget state is not saved with notebooks)."""
    return {"gemini_magics": {"kind": kind}}


def _button(description: str, icon: str, style: str, css: str, **kw: Any) -> Any:
    button = W.Button(description=description, icon=icon, button_style=style,
                      layout=W.Layout(**_BUTTON), **kw)
    button.add_class(css)
    return button


def _stop_button() -> Any:
    return _button("Stop", "stop", "warning", "gemini-stop",
                   tooltip="Stop the answer and cancel it on the server")


def _status_widget(text: str = "") -> Any:
    status = W.HTML(value=_status_html(text) if text else "", layout=W.Layout(**_STATUS))
    status.add_class("gemini-status")
    return status


def _tool_name(entry: str) -> str:
    """'file_search' from a tools setting entry such as 'file_search:store1'."""
    return entry.split(":", 1)[0].strip()


def _may_draw(request: Any) -> bool:
    """Whether the answer may hold images: an image model, or image settings given."""
    return ("image" in (getattr(request, "model", None) or "").lower()
            or bool(getattr(request, "aspect", None) or getattr(request, "size", None)))


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
# The panel's prompt box: Enter sends, Shift+Enter inserts a newline
# --------------------------------------------------------------------------------------------

_PROMPT_ESM = r"""
function render({ model, el }) {
  el.classList.add("gemini-prompt-box");
  const box = document.createElement("textarea");
  box.className = "gemini-prompt";
  box.rows = 4;
  box.setAttribute("aria-label", "Prompt (Enter sends, Shift+Enter adds a line)");
  box.setAttribute("data-lm-suppress-shortcuts", "true");
  const show = () => {
    box.placeholder = model.get("placeholder");
    box.disabled = model.get("disabled");
    if (box.value !== model.get("value")) box.value = model.get("value");
  };
  const push = () => { model.set("value", box.value); model.save_changes(); };
  show();
  box.addEventListener("input", push);
  box.addEventListener("keydown", (e) => {
    e.stopPropagation();  // keep the notebook's shortcuts (Shift+Enter runs the cell) out
    if (e.key === "Enter" && !e.shiftKey && !e.ctrlKey && !e.altKey && !e.metaKey
        && !e.isComposing) {
      e.preventDefault();  // Enter sends; Shift+Enter keeps the default: a new line
      push();
      model.send({ event: "submit", value: box.value });
    }
  });
  // The kernel took the prompt: empty the box here. (A plain value update from the kernel
  // can lose to keystrokes this page has not sent yet; this message cannot.)
  const clear = (msg) => {
    if (msg && msg.event === "clear") { box.value = ""; push(); }
  };
  model.on("change:value", show);
  model.on("change:placeholder", show);
  model.on("change:disabled", show);
  model.on("msg:custom", clear);
  el.appendChild(box);
  return () => {
    model.off("change:value", show);
    model.off("change:placeholder", show);
    model.off("change:disabled", show);
    model.off("msg:custom", clear);
  };
}
export default { render };
"""

_PROMPT_CSS = """
.gemini-prompt-box { width: 100%; }
.gemini-prompt-box textarea.gemini-prompt {
  width: 100%; box-sizing: border-box; min-height: 5em; resize: vertical; padding: 4px 6px;
  font-family: var(--jp-ui-font-family, sans-serif); font-size: var(--jp-ui-font-size1, 13px);
  color: var(--jp-ui-font-color1, inherit); background: var(--jp-layout-color1, white);
  border: var(--jp-border-width, 1px) solid var(--jp-border-color1, #bdbdbd);
}
.gemini-prompt-box textarea.gemini-prompt:focus {
  outline: none; border-color: var(--jp-brand-color1, #1976d2);
}
"""

if anywidget is not None:
    class PromptBox(anywidget.AnyWidget):
        """A textarea where Enter sends and Shift+Enter inserts a newline. `value` follows what
        is typed; pressing Enter sends `{"event": "submit", "value": text}` from the frontend,
        which sets `value` and calls the `on_submit` callbacks with the box."""

        _esm = _PROMPT_ESM
        _css = _PROMPT_CSS
        value = traitlets.Unicode("").tag(sync=True)
        placeholder = traitlets.Unicode("").tag(sync=True)
        disabled = traitlets.Bool(False).tag(sync=True)

        def __init__(self, **kwargs: Any):
            super().__init__(**kwargs)
            self._on_submit: list = []
            self.on_msg(self._frontend_message)

        def on_submit(self, callback: Callable[[Any], None]) -> None:
            self._on_submit.append(callback)

        def clear(self) -> None:
            """Empty the box, here and in the browser. The browser is told with a `clear`
            message and then sends the empty value itself: a value update from here could be
            undone by keystrokes the browser still holds back (ipywidgets throttles them, and
            `submit` overtakes them)."""
            self._set_here("")
            self.send({"event": "clear"})

        def _set_here(self, value: str) -> None:
            """Set `value` without sending it to the browser (which has it, or is told)."""
            with self._lock_property(value=value):
                self.value = value

        def _frontend_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
            if isinstance(content, dict) and content.get("event") == "submit":
                if isinstance(content.get("value"), str):
                    self._set_here(content["value"])  # what was in the box at Enter
                for callback in list(self._on_submit):
                    callback(self)
else:  # pragma: no cover
    PromptBox = None


def _prompt_box(placeholder: str) -> Any:
    if PromptBox is None:
        box = W.Textarea(value="", placeholder=placeholder,
                         layout=W.Layout(width="auto", height="5em"))
    else:
        box = PromptBox(placeholder=placeholder, layout=W.Layout(width="auto"))
    box.add_class("gemini-prompt-box")
    return box


# --------------------------------------------------------------------------------------------
# %%gemini --ui: the compact live view
# --------------------------------------------------------------------------------------------

class LiveView:
    """One `%%gemini --ui` answer: live text, then Stop and a status line under it. The view is
    displayed under `display_id`; when the answer ends that same output is replaced by the
    answer (text, then its footer where the status line was), so nothing jumps and the saved
    notebook holds the answer, not a widget. An image model's answer keeps its first image as
    a real PNG/JPEG output (`media_id`, made only for requests that may draw)."""

    def __init__(self, *, publish: Optional[Callable[..., None]] = None,
                 media: bool = False):
        self.answer = W.Output()
        self.stop_button = _stop_button()
        self.status = _status_widget(STATES["sending"])
        bar = W.HBox([self.stop_button, self.status], layout=W.Layout(align_items="center"))
        self.widget = W.VBox([self.answer, bar])
        self.widget.add_class("gemini-live")
        self.display_id = uuid.uuid4().hex
        self.media_id: Optional[str] = uuid.uuid4().hex if media else None
        self.job: Optional[StreamJob] = None
        self.note = ""
        self.status_line = STATES["sending"]
        self._publish = publish or publish_bundle
        self._shown_len = -1
        self.stop_button.on_click(lambda _b: self.stop())

    def show(self) -> None:
        self._publish(_widget_bundle(self.widget, "Gemini live view (interactive while the "
                                                  "kernel runs; the answer replaces it when it "
                                                  "ends)."), self.display_id, False,
                      _kind("live view"))
        if self.media_id:
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
            if self.job.cancel_event.is_set() and not self.job.finished.is_set():
                self.stop_button.disabled = True
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
        return self.job.live.answer if self.job is not None else ""

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
        """Replace the view by the answer; the widgets are closed (nothing of them is saved)."""
        result = job.result
        bundles = render.pieces(result, render.style_for(job.request))
        if self.note:  # what --save did (a plain cell prints it), just above the footer
            bundles.insert(len(bundles) - 1, {"text/markdown": f"*{render.md_escape(self.note)}*",
                                              "text/plain": self.note})
        media = None
        if self.media_id:
            media = next((b for b in bundles if render.is_image(b)), None)
            if media is None:  # no image: the footer takes the output kept for it
                media = bundles[-1]
            bundles = [b for b in bundles if b is not media]
        markdown, plain = (render.join(bundles) if bundles else
                           ("*(no text in the answer)*", "(no text in the answer)"))
        self._publish({"text/markdown": markdown, "text/plain": plain}, self.display_id, True)
        if media is not None:
            self._publish(media, self.media_id, True)
        self.stop_button.disabled = True
        self.status_line = job.status_text(self.note)
        _close_tree(self.widget)


def run_live(magics: Any, request: Any, backend: Any = None, *, cell_id: Optional[str] = None,
             publish: Optional[Callable[..., None]] = None) -> LiveView:
    """Start `request` in the background with a live view, and return at once (the kernel stays
    free). The view is `_gemini_live`; `--out VAR` is bound at once to the live result (it
    fills in as the answer streams; `VAR.wait()` returns when it has ended), and at the end
    `_gemini` gets the result and `--out` follows `cell.assign_out` (with --schema: the parsed
    value) — unless VAR was bound to something else meanwhile."""
    _require_notebook(magics, "--ui (a live view with a Stop button)", "drop --ui")
    panels = panels_of(magics.session)
    view = LiveView(publish=publish, media=_may_draw(request))
    view.show()
    job = StreamJob(request, settings=magics.settings(), backend=backend,
                    conversation=magics.conversation, cell_id=cell_id,
                    fast_stream=getattr(magics, "fast_stream", True), jobs=panels.jobs,
                    session=magics.session)
    view.attach(job)
    finish_view = view._finish
    shell = getattr(magics, "shell", None)
    ns = shell.user_ns if shell is not None else None

    def on_finish(j: StreamJob) -> None:
        req = request
        if request.out and ns is not None and ns.get(request.out) is not j.live:
            req = copy.copy(request)  # VAR was rebound (e.g. the cell ran again): leave it
            req.out = None
        view.note = _finish_bookkeeping(magics, req, j.result)
        finish_view(j)

    job.on_finish = on_finish
    if ns is not None:
        ns["_gemini_live"] = view
        if request.out:
            ns[request.out] = job.live
    panels.started_in_cell(cell_id, job)
    job.start()
    return view


# --------------------------------------------------------------------------------------------
# %gemini ui: the panel's pickers, bound to the settings
# --------------------------------------------------------------------------------------------

class SettingsPickers:
    """The panel's pickers (model, tools, system, temperature), bound both ways to the magics'
    settings (`GeminiMagics` traitlets): a pick sets the setting, and `%config` or
    `%gemini NAME VALUE` moves the picker. The panel hands in three callbacks: `say(text)` for
    its status line, `changed(what, traits)` for what later cells now use, and `on_model()`
    when the model setting changed (either way)."""

    def __init__(self, magics: Any, *, say: Callable[[str], None],
                 changed: Callable[[str, str], None], on_model: Callable[[], None]):
        self.magics = magics
        self._say = say
        self._changed = changed
        self._on_model = on_model
        self.picked: tuple = ()   # tool values picked, kept across close/reopen
        self._syncing = False
        self._observing = False

    def build(self) -> list:
        """New picker widgets (the panel is built or rebuilt), as the panel's first rows."""
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
        self.model.observe(self._model_picked, names="value")
        self.system.observe(self._system_picked, names="value")
        self.use_temperature.observe(self._temperature_picked, names="value")
        self.temperature.observe(self._temperature_picked, names="value")
        self.tools.observe(self._tools_picked, names="value")
        self._from_trait_tools()
        self.observe_magics(True)
        return [W.HBox([self.model, W.HBox([self.use_temperature, self.temperature])]),
                W.HBox([self.tools, self.system])]

    def list_functions(self) -> None:
        """List the notebook functions defined since, keeping what was picked."""
        options = self._tool_options()
        self._syncing, was = True, self._syncing
        try:
            self.tools.options = options
            self.tools.value = self._kept_tools(options)
        finally:
            self._syncing = was

    def functions(self) -> list[str]:
        """The notebook functions picked as tools."""
        return [v[len(_FN_PREFIX):] for v in self.tools.value if v.startswith(_FN_PREFIX)]

    def observe_magics(self, on: bool) -> None:
        if on and not self._observing:
            self.magics.observe(self._from_trait, names=list(PANEL_SETTINGS))
            self._observing = True
        elif not on and self._observing:
            self.magics.unobserve(self._from_trait, names=list(PANEL_SETTINGS))
            self._observing = False

    # -- settings -> pickers --------------------------------------------------------------------
    def _from_trait(self, change: dict) -> None:
        if self._syncing:
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
        if change["name"] == "model":
            self._on_model()

    def _setting_tools(self) -> list[str]:
        """The tools setting's entries as written (`file_search:STORE` included)."""
        return [n.strip() for n in (self.magics.tools or "").split(",") if n.strip()]

    def _from_trait_tools(self) -> None:
        names = [_tool_name(n) for n in self._setting_tools() if _tool_name(n) in PANEL_TOOLS]
        was, self._syncing = self._syncing, True
        try:
            keep = [v for v in self.tools.value if v.startswith(_FN_PREFIX)]
            self.tools.value = self.picked = tuple(names + keep)
        finally:
            self._syncing = was

    # -- pickers -> settings --------------------------------------------------------------------
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
        if name == old or not self._set_trait("model", name):
            return
        traits = "GeminiMagics.model"
        if name == LOCAL_MODEL:
            self._set_trait("offline", True)
            traits += ", and GeminiMagics.offline is on"
        elif old == LOCAL_MODEL:
            self._set_trait("offline", False)
            traits += ", and GeminiMagics.offline is off again"
        self._changed(f"model {name}", traits)
        self._on_model()
        warning = unknown_name_warning(name) if answers_offline(self.magics.settings()) else None
        if warning:  # a typed name the API does not know: the local model would hide the typo
            self._say(warning)

    def _system_picked(self, change: dict) -> None:
        if self._syncing:
            return
        value = change["new"].strip() or None
        if value != self.magics.system and self._set_trait("system", value):
            short = value if value is None or len(value) <= 60 else value[:59] + "…"
            self._changed("no system instruction" if value is None
                          else f"the system instruction “{short}”", "GeminiMagics.system")

    def _temperature_picked(self, change: dict) -> None:
        if self._syncing:
            return
        on = self.use_temperature.value
        self.temperature.disabled = not on
        value = float(self.temperature.value) if on else None
        if value != self.magics.temperature and self._set_trait("temperature", value):
            self._changed("the model's default temperature" if value is None
                          else f"temperature {value:.2f}", "GeminiMagics.temperature")

    def _tool_options(self) -> list:
        shell = getattr(self.magics, "shell", None)
        ns = shell.user_ns if shell is not None else {}
        hidden = getattr(shell, "user_ns_hidden", {}) if shell is not None else {}
        fns = [(f"{name}() · your function", _FN_PREFIX + name) for name in user_functions(ns, hidden)]
        return [(t, t) for t in PANEL_TOOLS] + fns

    def _kept_tools(self, options: list) -> tuple:
        values = {v for _, v in options}
        return tuple(v for v in self.picked if v in values)

    def _tools_picked(self, change: dict) -> None:
        if self._syncing:
            return
        self.picked = tuple(change["new"])
        builtins = [v for v in self.tools.value if not v.startswith(_FN_PREFIX)]
        # An entry the pickers show by its name keeps its spelling (file_search:STORE); one
        # they cannot show (computer_use:desktop) stays as it is.
        setting = {_tool_name(n): n for n in self._setting_tools()}
        kept = [n for name, n in setting.items() if name not in PANEL_TOOLS]
        value = ",".join([setting.get(b, b) for b in builtins] + kept) or None
        if value != (self.magics.tools or None) and self._set_trait("tools", value):
            self._changed("no built-in tools" if value is None
                          else "the tools " + ", ".join(builtins), "GeminiMagics.tools")


# --------------------------------------------------------------------------------------------
# %gemini ui: the panel (a view: its requests are cells' requests, its settings the magics')
# --------------------------------------------------------------------------------------------

class Panel:
    """The `%gemini ui` panel: a view of turns that continue the same conversation as
    `%%gemini` cells, plus `SettingsPickers` that ARE the magics' settings. A turn's request is
    the one a cell with the prompt as its text would send (`cell.prepare`, the picked functions
    as `--functions`). Closing and reopening keeps turns and a running answer.

    Layout, top to bottom: pickers; a line saying what later cells now use and the offline
    notice (`info`, each said once); the conversation, a fixed-height box that scrolls with the
    newest turn in view; the prompt box (Enter sends); Send, Stop (enabled only while an answer
    runs) and the status line."""

    def __init__(self, magics: Any, *, publish: Optional[Callable[..., None]] = None,
                 jobs: Optional[LiveJobs] = None):
        self.magics = magics
        self._publish = publish or publish_bundle
        self._jobs = jobs if jobs is not None else jobs_of(magics.session)
        self.pickers = SettingsPickers(magics, say=self._say, changed=self._later_cells,
                                       on_model=self._model_changed)
        self.turns: list[dict] = []       # {"prompt", "result", "style"}; result None while running
        self.job: Optional[StreamJob] = None
        self.note = ""
        self.status_line = ""
        self.notice_line = ""             # the offline notice, shown once it is known
        self.defaults_line = ""           # what the last pick changed for later cells
        self.transcript_id = uuid.uuid4().hex
        self.widget: Any = None
        self._shown_len = -1
        self._build()

    def _build(self) -> None:
        self.info = W.HTML()
        self.info.add_class("gemini-panel-info")
        self.conversation = W.Box(layout=W.Layout(
            display="flex", flex_flow="column-reverse", height=CONVERSATION_HEIGHT,
            overflow="hidden auto", border="1px solid var(--jp-border-color2, #e0e0e0)",
            padding="0 0.5em", margin="0.4em 0"))
        self.conversation.add_class("gemini-conversation")
        self._show_turns([self._turn_widget(t) for t in reversed(self.turns)])
        self.prompt = _prompt_box("Ask Gemini… Enter sends, Shift+Enter adds a line "
                                  "({name} fills in a variable)")
        self.send_button = _button("Send", "paper-plane", "primary", "gemini-send",
                                   tooltip="Send the prompt (or press Enter in the box)")
        self.stop_button = _stop_button()
        self.status = _status_widget()
        self.send_button.on_click(lambda _b: self.send())
        self.stop_button.on_click(lambda _b: self.stop())
        if hasattr(self.prompt, "on_submit"):
            self.prompt.on_submit(lambda _box: self.send())
        self.widget = W.VBox(self.pickers.build() + [
            self.info, self.conversation, self.prompt,
            W.HBox([self.send_button, self.stop_button, self.status],
                   layout=W.Layout(align_items="center")),
        ])
        self.widget.add_class("gemini-panel")
        self._shown_len = -1
        self._show_info()
        running = self.busy
        self.send_button.disabled = running
        self.stop_button.disabled = not running or self.job.cancel_event.is_set()
        if running:
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
        else:
            self.pickers.list_functions()
        display(_widget_bundle(self.widget, "Gemini panel (interactive while the kernel runs; "
                                            "the conversation is saved below)."),
                raw=True, metadata=_kind("panel"))
        md, plain = _transcript(self.turns)
        self._publish({"text/markdown": md, "text/plain": plain}, self.transcript_id, False)

    def close(self) -> None:
        """Close the panel's widgets; a running answer continues and shows on reopening."""
        if self.closed:
            return
        self.pickers.observe_magics(False)
        widget, self.widget = self.widget, None
        _close_tree(widget)

    # -- asking ------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.running

    def send(self) -> Optional[StreamJob]:
        """Send the prompt box as the next turn (the Send button, or Enter in the box); returns
        the job, or None (the status line says why)."""
        if self.busy:
            self._say("Still answering the last prompt; press Stop first, or wait for it to end.")
            return None
        text = self.prompt.value if not self.closed else ""
        if not text.strip():
            self._say("The prompt is empty; type a question in the box, then press Enter or Send.")
            return None
        try:
            request = self._request(text)
        except (GeminiError, ValueError) as exc:  # one sentence: bad prompt, media, functions
            self._say(str(exc))
            return None
        refused = spend.refusal(self.magics.session, request)
        if refused:
            self._say(refused)
            return None
        turn = {"prompt": text, "result": None, "style": render.style_for(request)}
        self.turns.append(turn)
        self._show_turns([self._turn_widget(turn)] + [c for c in self.conversation.children
                                                       if "gemini-turn" in c._dom_classes])
        if hasattr(self.prompt, "clear"):
            self.prompt.clear()
        else:
            self.prompt.value = ""
        self.note = ""
        self._shown_len = -1
        self.job = StreamJob(request, settings=self.magics.settings(),
                             conversation=self.magics.conversation,
                             fast_stream=getattr(self.magics, "fast_stream", True),
                             on_tick=self._tick, on_finish=self._finish, jobs=self._jobs,
                             session=getattr(self.magics, "session", None))
        self.send_button.disabled = True
        self.stop_button.disabled = False
        self.job.start()
        self._set_status(self.job.status_text())  # "sending" at once, not at the first tick
        return self.job

    def _request(self, text: str) -> Any:
        """The request of a `%%gemini` cell holding `text`, with the panel's settings (they are
        the magics') and the picked functions as `--functions`: the cell pipeline, not a copy."""
        shell = getattr(self.magics, "shell", None)
        fns = self.pickers.functions()
        line = f"--functions {','.join(fns)}" if fns else ""
        ns = shell.user_ns if shell is not None else {}
        return prepare(line, text, self.magics.settings(), ns)

    def stop(self) -> str:
        """Stop the running answer (also on the server); returns what the status line says."""
        if self.job is None:
            msg = "Nothing to stop: no answer is streaming."
        else:
            msg = self.job.stop()
            if not self.closed and self.job.cancel_event.is_set():
                self.stop_button.disabled = True
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

    def _model_changed(self) -> None:
        """The status line names the model the next turn uses (unless an answer is running)."""
        if not self.busy and not self.closed:
            self._set_status(self._idle_status())

    def _later_cells(self, what: str, traits: str) -> None:
        """Say, in the panel's info line, that a pick changed the defaults of later cells."""
        self.defaults_line = f"Later %%gemini cells now use {what} ({traits})."
        self._show_info()

    def _set_status(self, text: str) -> None:
        self.status_line = text
        if not self.closed and self.status.value != _status_html(text):
            self.status.value = _status_html(text)

    def _show_info(self) -> None:
        if self.closed:
            return
        lines = [line for line in (self.notice_line, self.defaults_line) if line]
        value = ('<div style="font-size: 0.9em; line-height: 1.4">' + "<br>".join(
            html.escape(line, quote=False) for line in lines) + "</div>") if lines else ""
        if self.info.value != value:
            self.info.value = value

    def _notice(self, job: StreamJob) -> None:
        """The offline notice, once, in the info line (not in every turn's status)."""
        if job.notice and not self.notice_line:
            self.notice_line = job.notice
            self._show_info()

    def _show_turns(self, newest_first: list) -> None:
        """The conversation box, newest turn first: its column-reverse flow shows the newest at
        the bottom and keeps the scroll there as the answer grows."""
        self.conversation.children = tuple(newest_first) or (W.HTML(_EMPTY_CONVERSATION),)

    def _turn_widget(self, turn: dict) -> Any:
        you = W.HTML(f'<div style="white-space: pre-wrap"><b>You:</b> '
                     f'{html.escape(turn["prompt"], quote=False)}</div>')
        out = W.Output()
        if turn["result"] is not None:
            out.outputs = _answer_outputs(turn["result"], turn["style"])
        turn["out"] = out
        box = W.VBox([you, out], layout=W.Layout(flex="0 0 auto"))
        box.add_class("gemini-turn")
        return box

    def _tick(self, job: StreamJob) -> None:
        if self.closed or job is not self.job:
            return
        self._notice(job)
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
        md, plain = _transcript(self.turns)
        self._publish({"text/markdown": md, "text/plain": plain}, self.transcript_id, True)
        self.note = ""
        if job.notice and not self.notice_line:
            self.notice_line = job.notice
        if self.closed:
            self.status_line = job.status_text()
            return
        self._show_info()
        out = self.turns[-1].get("out")
        if out is not None:
            out.outputs = _answer_outputs(result, self.turns[-1]["style"])
        self.send_button.disabled = False
        self.stop_button.disabled = True
        self._set_status(job.status_text())


def _transcript(turns: list) -> tuple[str, str]:
    """The panel's finished turns as Markdown (folded) and text, for the saved notebook."""
    done = [t for t in turns if t["result"] is not None]
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
# The widgets of a kernel, and the entry points from the magics
# --------------------------------------------------------------------------------------------

class Panels:
    """A kernel's widget state, owned by its Session: its panel (`%gemini ui` shows the same one
    again, turns and all), the running `--ui` answer of each cell id (re-running the cell stops
    it: its output is gone), and the live jobs `%gemini stop` stops (`live.LiveJobs`)."""

    def __init__(self, jobs: LiveJobs):
        self.jobs = jobs
        self._panel: Optional[Panel] = None
        self._by_cell: "weakref.WeakValueDictionary[str, StreamJob]" = weakref.WeakValueDictionary()

    def panel(self, magics: Any, *, publish: Optional[Callable[..., None]] = None) -> Panel:
        """The panel, made on first use."""
        if self._panel is None:
            self._panel = Panel(magics, publish=publish, jobs=self.jobs)
        return self._panel

    def forget(self) -> None:
        """Close and drop the panel (the next `%gemini ui` makes a new one)."""
        panel, self._panel = self._panel, None
        if panel is not None:
            panel.close()

    def started_in_cell(self, cell_id: Optional[str], job: StreamJob) -> None:
        """`job` is the `--ui` answer of `cell_id` now: the cell's previous one is stopped."""
        if not cell_id:
            return
        previous = self._by_cell.get(cell_id)
        if previous is not None and not previous.finished.is_set():
            previous.stop()  # its outputs were cleared by the re-run: do not leave it streaming
        self._by_cell[cell_id] = job


def panels_of(session: Session) -> Panels:
    """The session's Panels, made on first use."""
    return session.own("panels", lambda: Panels(jobs_of(session)))


def _require_notebook(magics: Any, what: str, instead: str) -> None:
    """Widgets need a Jupyter frontend: say so in a terminal instead of printing widget reprs."""
    if magics.display_mode() == "terminal":
        raise GeminiError(f"{what} needs a Jupyter notebook with ipywidgets; in a terminal, "
                          f"{instead}.")


def show_panel(magics: Any, *, publish: Optional[Callable[..., None]] = None) -> Panel:
    """`%gemini ui`: show this session's panel (the same one again, turns and all)."""
    _require_notebook(magics, "The %gemini ui panel",
                      "use %%gemini cells, and %gemini NAME VALUE to change settings")
    panel = panels_of(magics.session).panel(magics, publish=publish)
    panel.show()
    shell = getattr(magics, "shell", None)
    if shell is not None:
        shell.user_ns["_gemini_panel"] = panel
    return panel


def line_command(magics: Any, word: str) -> Any:
    """`%gemini ui` and `%gemini stop` (of the magics' session)."""
    if word == "ui":
        show_panel(magics)
        return None
    if word == "stop":
        print(jobs_of(magics.session).stop_all())
        return None
    raise ValueError(f"Unknown widgets command {word!r}; use %gemini ui or %gemini stop.")
