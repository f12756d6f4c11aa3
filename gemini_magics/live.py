"""The threaded stream job behind `%%gemini --ui` and the `%gemini ui` panel.

Why threads: the request runs in a worker thread, so the kernel stays free to handle widget
messages and Stop works (while a cell is busy, widget messages wait: ipywidgets #3468). Stop
sets the runner's cancel event, which cancels the interaction on the server and keeps the
partial text. A ticker thread calls the view's `on_tick(job)` at a fixed pace, never per
event: at most `MAX_MESSAGES_PER_S` widget messages a second however fast the deltas come.
Nothing here knows about widgets: views (widgets.py) are handed in as two callbacks.

The job's result is a `result.LiveResult` from the start (`job.live`): it fills in while the
answer streams and becomes the finished result at the end, so `--ui -o VAR` can bind it at once.
The status line says what it waits for: "sending", then after `WAITING_AFTER_S` without any
output "waiting for the model…" (and, with the local model, how many answers are ahead).
Its glyphs are in DejaVu Sans and other common text fonts: no emoji font is needed.
"""
from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Callable, Optional

from . import spend
from .cell import backend_failure
from .client import redact_live, resolve_backend
from .errors import explain
from .markdown_text import open_fence
from .result import GeminiResult, LiveResult
from .runner import run
from .session import Session, current

__all__ = ["StreamJob", "LiveJobs", "jobs_of", "live_markdown", "MAX_MESSAGES_PER_S",
           "TICK_S", "LIVE_CHARS", "STATES", "WAITING_AFTER_S"]

MAX_MESSAGES_PER_S = 20
# A tick sends at most two widget messages (the live text and the status line); the margin
# leaves room for the few messages of starting and finishing within the same second.
TICK_S = 2 / MAX_MESSAGES_PER_S * 1.5
LIVE_CHARS = 12_000
# Without any output for this long, "sending" becomes "waiting for the model…".
WAITING_AFTER_S = 1.0
# Text glyphs only (no emoji presentation, no variation selector 16): DejaVu Sans has them all.
STATES = {
    "sending": "○ sending", "waiting": "○ waiting for the model…", "streaming": "● streaming",
    "stopping": "■ stopping", "stopped": "■ stopped", "done": "✓ done", "error": "⚠ error",
    "idle": "○ ready",
}


class LiveJobs:
    """The answers of one kernel still streaming into a live view or the panel: `%gemini stop`
    stops them all, and an answer waiting for the local model counts those ahead of it. Jobs
    are held weakly: a view that is gone does not keep its job listed."""

    def __init__(self) -> None:
        self._jobs: "weakref.WeakSet[StreamJob]" = weakref.WeakSet()

    def add(self, job: "StreamJob") -> None:
        self._jobs.add(job)

    def discard(self, job: "StreamJob") -> None:
        self._jobs.discard(job)

    def running(self) -> list:
        """The jobs whose request has not ended yet."""
        return [j for j in list(self._jobs) if not j.finished.is_set()]

    def ahead(self, job: "StreamJob") -> int:
        """How many answers started before `job` on the same local server are still running:
        the local model answers one request at a time, so `job` waits for them (0 otherwise)."""
        backend = job.backend
        if backend is None or getattr(backend, "kind", None) != "local" or job.started is None:
            return 0
        return sum(1 for j in self.running()
                   if j is not job and j.started is not None and j.started < job.started
                   and j.backend is not None
                   and getattr(j.backend, "base_url", None) == backend.base_url)

    def stop_all(self) -> str:
        """`%gemini stop`: stop every answer streaming in a live view or the panel."""
        jobs = self.running()
        if not jobs:
            return "Nothing to stop: no answer is streaming."
        for job in jobs:
            job.stop()
        n = len(jobs)
        return (f"Stopping {n} answer{'s' if n != 1 else ''}: cancelled on the server; the "
                f"partial text is kept.")


def jobs_of(session: Session) -> LiveJobs:
    """The session's LiveJobs, made on first use."""
    return session.own("live_jobs", LiveJobs)


class StreamJob:
    """Runs one request with `runner.run` in a worker thread. A ticker thread calls
    `on_tick(job)` every `tick` seconds while it runs and `on_finish(job)` once at the end, so
    views are refreshed at a bounded rate whatever the event rate. `stop()` cancels for real.
    `session` is whose answer it is (its usage and budget; default: the current one), `jobs`
    the LiveJobs it is listed in (default: that session's)."""

    def __init__(self, request: Any, *, settings: Optional[dict] = None, backend: Any = None,
                 conversation: Any = None, cell_id: Optional[str] = None, fast_stream: bool = True,
                 on_tick: Optional[Callable] = None, on_finish: Optional[Callable] = None,
                 tick: float = TICK_S, jobs: Optional[LiveJobs] = None,
                 session: Optional[Session] = None):
        self.request = request
        self.session = session or current()
        self.jobs = jobs if jobs is not None else jobs_of(self.session)
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
        # The result from the start: filled in while streaming, the finished result at the end.
        self.live = LiveResult(model=getattr(request, "model", None), ended=self.closed)
        self.result: Optional[GeminiResult] = None   # `live`, once it is the finished result
        self.notice: Optional[str] = None
        self.view_errors: list = []
        self.acc: Any = None
        self.snapshot = ""                  # answer text so far, taken on the worker thread
        self._snap_at = float("-inf")
        self._snap_len = -1
        self.started: Optional[float] = None
        self.ended: Optional[float] = None
        self.first_output: Optional[float] = None  # when the first text, thought or tool step came
        self._worker = threading.Thread(target=self._work, name="gemini-widgets-run", daemon=True)
        self._ticker = threading.Thread(target=self._pump, name="gemini-widgets-tick", daemon=True)

    # -- runner observer (called on the worker thread) -------------------------------------
    def on_start(self, acc: Any) -> None:
        self.acc = acc

    def on_update(self, acc: Any) -> None:
        # Accumulator.answer_text() compacts its chunk list, which is only safe on the thread
        # that feeds it: snapshot here, at most twice a tick, and let the ticker read the str.
        now = time.monotonic()
        if self.first_output is None and _has_output(acc):
            self.first_output = now
        if now - self._snap_at >= self.tick / 2 and acc.answer_length != self._snap_len:
            self._snap_at = now
            self._snap_len = acc.answer_length
            self.snapshot = redact_live(acc.answer_text())
            self.live.show_progress(self.snapshot, acc.id)

    def on_done(self, result: GeminiResult) -> None:
        self.snapshot = result.answer
        self.live.show_progress(result.answer, result.id)

    # -- control ---------------------------------------------------------------------------
    def start(self) -> "StreamJob":
        self.started = time.monotonic()
        self.jobs.add(self)
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
        if self.first_output is not None:
            return "streaming"
        return "waiting" if self.elapsed() >= WAITING_AFTER_S else "sending"

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
        """One line: state · elapsed · tokens · tokens/s — then the error or a note. A stop is
        a plain note (you asked for it), not an error."""
        state = self.state
        parts = [STATES[state], f"{self.elapsed():.1f} s"]
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
            kept = ("the partial answer is kept" if r is not None and r.answer
                    else "nothing had arrived yet")
            return f"{line} — you stopped it; {kept}."
        if state == "waiting" and not note:
            n = self.jobs.ahead(self)
            if n:
                note = (f"{n} earlier answer{'s are' if n != 1 else ' is'} still running; the "
                        f"local model answers one request at a time.")
        return f"{line} — {note}" if note else line

    # -- threads -----------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            try:
                final = self._run()
            except BaseException as exc:  # noqa: BLE001 - run() explains failures; this is a bug
                final = self._failed(exc)
            self.ended = time.monotonic()
            self.result = self.live.fill(final)
        finally:
            if self.ended is None:
                self.ended = time.monotonic()
            self.finished.set()

    def _run(self) -> GeminiResult:
        if self.backend is None:
            try:
                self.backend, self.notice = resolve_backend(self.settings)
            except Exception as exc:  # noqa: BLE001 - e.g. the local model cannot start
                return self._failed(exc, starting=True)
        return run(self.request, backend=self.backend,
                   observers=[spend.Guard(self.session, self.request, self.cancel_event), self],
                   cancel_event=self.cancel_event, conversation=self.conversation,
                   cell_id=self.cell_id, fast_stream=self.fast_stream, session=self.session)

    def _failed(self, exc: BaseException, starting: bool = False) -> GeminiResult:
        why = backend_failure(exc) if starting else explain(exc)
        return GeminiResult(answer=self.snapshot, text=self.snapshot, model=self.request.model,
                            elapsed=self.elapsed(), error=why)

    def _pump(self) -> None:
        try:
            while not self.finished.wait(self.tick):
                self._call(self.on_tick)
            self._call(self.on_finish)
        finally:
            self.jobs.discard(self)
            self.closed.set()

    def _call(self, fn: Optional[Callable]) -> None:
        if fn is None:
            return
        try:
            fn(self)
        except Exception as exc:  # noqa: BLE001 - a view failing must not stop the answer
            self.view_errors.append(exc)


def _has_output(acc: Any) -> bool:
    """True once the answer shows something: text, thoughts, or a step that is not an empty
    answer step (a tool call). A server queueing the request may have sent events before."""
    if acc.answer_length or acc.thought_text():
        return True
    return any(acc.steps[i].data.get("type") not in ("model_output", "thought", "user_input")
               for i in acc.order)


def live_markdown(text: str, limit: int = LIVE_CHARS) -> str:
    """What the live view shows while streaming: all of `text`, or its last `limit` characters
    (cut at a line break, an open code fence reopened) after a note saying what is hidden."""
    if len(text) <= limit:
        return text
    start = len(text) - limit
    nl = text.find("\n", start)
    if 0 <= nl < start + limit // 2:
        start = nl + 1
    fence = open_fence(text[:start])
    note = (f"*… {start:,} earlier characters are hidden while streaming; the whole answer is "
            f"written out when it ends.*\n\n")
    return note + (fence + "\n" if fence else "") + text[start:]
