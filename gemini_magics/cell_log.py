"""What each cell ran and showed, recorded as it runs: for `--context` and `%gemini fix`.

The kernel never sees the notebook's layout, only the cells it is asked to run, in the order
they run. So the log is the kernel's history: IPython's `pre_run_cell` event opens a record
(the cell's source), and until `post_run_cell` closes it (with its error and its `Out` value)
the record collects what the cell showed: text printed to stdout/stderr (through a tee that
forwards everything, put in front of `sys.stdout`/`sys.stderr` for the cell's duration) and
what it displayed (text, Markdown, PNG/JPEG, through a wrapper on the shell's display
publisher). Each record is bounded; the log keeps the latest `KEEP` cells.

`load_ipython_extension` attaches a log to the shell (`attach`), `unload_ipython_extension`
detaches it; the magics find it through the session (`session.cell_log`).
"""
from __future__ import annotations

import collections
import os
import sys
import threading
import traceback
import weakref
from dataclasses import dataclass, field
from typing import Any, Optional

from .redact import redact

__all__ = ["CellLog", "CellRecord", "is_gemini_cell"]

KEEP = 200               # cells kept
IMAGE_CELLS = 20         # the latest cells whose images are kept (older ones keep their text)
MAX_SOURCE = 8000        # characters of a cell's source kept
MAX_TEXT = 4000          # characters of printed text kept per cell (the end is kept)
MAX_OUTPUTS = 20         # displayed outputs kept per cell
MAX_IMAGE_B64 = 1_500_000  # base64 characters of one image kept (about 1 MB)
MAX_TRACEBACK = 4000     # characters of a traceback kept (its end)
TRACEBACK_FRAMES = 8     # the innermost frames of a traceback
_IPYTHON_DIR = os.sep + "IPython" + os.sep


def is_gemini_cell(source: str) -> bool:
    """A `%%gemini` / `%gemini` cell: its exchange is in the conversation already."""
    return source.lstrip().startswith(("%%gemini", "%gemini"))


@dataclass
class CellRecord:
    """One cell as it ran: source, execution count, what it showed, its error."""

    source: str
    number: Optional[int] = None
    printed: list = field(default_factory=list)    # text written to stdout/stderr
    outputs: list = field(default_factory=list)    # {"kind": text|markdown|image, ...}
    error: Optional[dict] = None                   # {"type", "message", "traceback"}
    done: bool = False

    @property
    def text(self) -> str:
        """What the cell printed, its end kept when it printed a lot."""
        text = "".join(self.printed)
        return text if len(text) <= MAX_TEXT else "…" + text[-MAX_TEXT:]

    def _printed(self, s: str) -> None:
        self.printed.append(s)
        if sum(len(p) for p in self.printed) > 2 * MAX_TEXT:
            joined = "".join(self.printed)
            self.printed[:] = [joined[-MAX_TEXT:]]

    def add_bundle(self, data: dict, display_id: Any = None, update: bool = False) -> None:
        """A displayed MIME bundle; an update replaces the output of its display id."""
        out = _output(data)
        if out is None:
            return
        out["display_id"] = display_id
        if update:
            for i, old in enumerate(self.outputs):
                if display_id is not None and old.get("display_id") == display_id:
                    self.outputs[i] = out
            return
        if len(self.outputs) < MAX_OUTPUTS:
            self.outputs.append(out)


def _output(data: dict) -> Optional[dict]:
    """The part of a MIME bundle a prompt can use: an image, else Markdown, else plain text."""
    for mime in ("image/png", "image/jpeg"):
        b64 = data.get(mime)
        if isinstance(b64, str) and len(b64) <= MAX_IMAGE_B64:
            return {"kind": "image", "mime_type": mime, "data": b64.replace("\n", "")}
    if isinstance(data.get("text/markdown"), str):
        return {"kind": "markdown", "text": data["text/markdown"][:MAX_TEXT]}
    if isinstance(data.get("text/plain"), str):
        return {"kind": "text", "text": data["text/plain"][:MAX_TEXT]}
    return None


def error_of(exc: BaseException) -> dict:
    """The error a cell raised: type, message and its innermost frames (IPython's own frames
    left out), redacted, its end kept."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and \
            _IPYTHON_DIR in tb.tb_frame.f_code.co_filename:
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb, limit=-TRACEBACK_FRAMES)
    text = redact("".join(lines).rstrip())
    if len(text) > MAX_TRACEBACK:
        text = "…" + text[-MAX_TRACEBACK:]
    return {"type": type(exc).__name__, "message": redact(str(exc))[:1000], "traceback": text}


class _Tee:
    """Stands in for sys.stdout/stderr while a cell runs: writes go to the stream it replaced
    and, while that cell's record is open, into the record too."""

    def __init__(self, target: Any, log: "CellLog"):
        self._target = target
        self._log = log

    def write(self, s: Any) -> Any:
        record = self._log.current
        if record is not None and isinstance(s, str) and \
                threading.current_thread() is self._log.thread:
            record._printed(s)
        return self._target.write(s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


class CellLog:
    """The cells this kernel ran, newest last (see the module docstring)."""

    def __init__(self, shell: Any, keep: int = KEEP):
        self.shell = shell
        self.records: collections.deque = collections.deque(maxlen=keep)
        self.current: Optional[CellRecord] = None
        self.thread: Optional[threading.Thread] = None     # the thread running the cell
        self._wrapped: weakref.WeakSet = weakref.WeakSet()  # display publishers wrapped
        self._tees: dict = {}                               # "stdout" -> the _Tee put there

    # -- attaching -----------------------------------------------------------------------------
    def attach(self) -> "CellLog":
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)
        return self

    def detach(self) -> None:
        for name, cb in (("pre_run_cell", self.pre_run_cell),
                         ("post_run_cell", self.post_run_cell)):
            try:
                self.shell.events.unregister(name, cb)
            except ValueError:
                pass
        self._untee()
        for pub in list(self._wrapped):
            vars(pub).pop("publish", None)
        self.current = None

    # -- the events ----------------------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        source = getattr(info, "raw_cell", None) or ""
        self.current = CellRecord(source=redact(source[:MAX_SOURCE]))
        self.records.append(self.current)
        if len(self.records) > IMAGE_CELLS:  # bounded memory: old cells' images go
            old = self.records[-IMAGE_CELLS - 1]
            old.outputs = [o for o in old.outputs if o["kind"] != "image"]
        self.thread = threading.current_thread()
        self._wrap_publisher(getattr(self.shell, "display_pub", None))
        self._tee()

    def post_run_cell(self, result: Any) -> None:
        record, self.current = self.current, None
        self._untee()
        if record is None:
            return
        record.number = getattr(result, "execution_count", None)
        exc = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        if exc is not None:
            record.error = error_of(exc)
        value = getattr(result, "result", None)
        if value is not None and exc is None:
            # a terminal shell prints `Out[n]: value` too: kept once, as the Out value
            text = "".join(record.printed)
            cut = text.rfind(f"Out[{record.number}]: ")
            if cut >= 0:
                record.printed[:] = [text[:cut]]
            record.add_bundle(self._formatted(value))
        record.done = True

    def _formatted(self, value: Any) -> dict:
        """The cell's `Out` value as the shell shows it (text, Markdown, images)."""
        try:
            data, _ = self.shell.display_formatter.format(
                value, include={"text/plain", "text/markdown", "image/png", "image/jpeg"})
            return data
        except Exception:  # noqa: BLE001 - a broken _repr_ of the user's: its repr, or nothing
            try:
                return {"text/plain": repr(value)}
            except Exception:  # noqa: BLE001
                return {}

    # -- what the cell shows -------------------------------------------------------------------
    def _wrap_publisher(self, pub: Any) -> None:
        """Record what `pub` publishes while a cell runs (the publisher the shell uses now:
        the kernel's, or a capturing one of `%%capture` or a test)."""
        if pub is None or pub in self._wrapped:
            return
        original = pub.publish

        def publish(data: Any, *args: Any, **kwargs: Any) -> Any:
            record = self.current
            if record is not None and isinstance(data, dict) and \
                    threading.current_thread() is self.thread:
                display_id = (kwargs.get("transient") or {}).get("display_id")
                record.add_bundle(data, display_id, bool(kwargs.get("update")))
            return original(data, *args, **kwargs)

        pub.publish = publish
        self._wrapped.add(pub)

    def _tee(self) -> None:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if not isinstance(stream, _Tee):
                tee = _Tee(stream, self)
                setattr(sys, name, tee)
                self._tees[name] = tee

    def _untee(self) -> None:
        for name, tee in list(self._tees.items()):
            if getattr(sys, name) is tee:
                setattr(sys, name, tee._target)
            del self._tees[name]

    # -- reading -------------------------------------------------------------------------------
    def before_current(self) -> list:
        """The finished cells, oldest first (the cell running now is not among them)."""
        return [r for r in self.records if r.done]

    def last_failure(self) -> Optional[CellRecord]:
        """The newest finished cell that raised, `%gemini` cells left out."""
        for record in reversed(self.before_current()):
            if record.error is not None and not is_gemini_cell(record.source):
                return record
        return None

    def clear(self) -> None:
        self.records.clear()
