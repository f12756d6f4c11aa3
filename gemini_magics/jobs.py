"""Background jobs (`%%gemini --background`): the server runs the turn, a poller thread shows it.

Why this shape:
- The request is created with `background=true`, so the server keeps working whatever the
  kernel does; the cell returns at once. The interaction id is all that is needed to follow
  it, so `%gemini wait ID` picks a job up again after a kernel restart (with the real API; the
  embedded offline server lives in the kernel process and restarts empty).
- The status output is created by the cell itself and then only *updated* (`update_display`)
  by a daemon poller thread, once per `poll_interval`: an update carries its display id, so it
  lands in the right cell while other cells run, and the saved notebook keeps its last state.
  When the job ends, the whole answer (tool steps, text, footer) replaces the status there and
  `--out` is filled.
- Every wait is bounded (`MAX_JOB_S`), and polling failures become one sentence in the status
  output instead of a thread traceback.
- A kernel's jobs are its Session's (`session.jobs`, interaction id -> job): `%gemini jobs`
  lists them, `%gemini wait ID` follows one through its own poller.
"""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Optional

from . import spend
from . import render
from .display import publish_bundle
from .errors import explain, status_code
from .result import GeminiResult, LiveResult
from .runner import build_result, turn_start
from .sender import PollPolicy, PollTimeout
from .session import Session, current
from .stream import Accumulator

__all__ = ["BackgroundJob", "start_job", "find_job", "jobs_table", "wait_job", "cancel_job",
           "TERMINAL_STATUSES"]

# `idle` (google-genai 3.5+) is the end of all processing too: such a job is shown, not polled on.
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "incomplete",
                               "requires_action", "budget_exceeded", "idle"})
MAX_JOB_S = 6 * 3600          # a poller gives up after this long
DEFAULT_POLL_S = 1.0

Publish = Callable[[dict, str, bool], None]


class BackgroundJob:
    """One background interaction: its status output, its poller and its final result."""

    def __init__(self, interaction_id: str, *, client: Any, backend_label: str = "the server",
                 request: Any = None, prompt: str = "", publish: Optional[Publish] = None,
                 poll_interval: float = DEFAULT_POLL_S, on_done: Optional[Callable] = None,
                 status: str = "in_progress", show: bool = True,
                 session: Optional[Session] = None):
        self.id = interaction_id
        self.session = session  # whose usage its answer counts in (None: the current one)
        self.client = client
        self.backend_label = backend_label
        self.request = request
        self.prompt = prompt
        self.publish = publish if publish is not None else (publish_bundle if show else None)
        self.poll_interval = max(0.05, float(poll_interval or DEFAULT_POLL_S))
        self.on_done = on_done
        self.status = status
        self.started = time.monotonic()
        self.ended: Optional[float] = None
        self.result: Optional[GeminiResult] = None
        self.problem: Optional[str] = None   # a polling failure, one sentence
        self.display_id = uuid.uuid4().hex
        self.done = threading.Event()
        # What `-o VAR` is bound to at once: its status follows the polls, and it becomes the
        # finished result (the same object) when the job ends.
        self.live = LiveResult(model=getattr(request, "model", None), ended=self.done)
        self.live.id, self.live.status = interaction_id, status
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._shown = False

    # -- status ---------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def status_line(self) -> str:
        # Marks in common text fonts (DejaVu Sans...), not emoji: running, completed, ended.
        if self.problem:
            return f"⚠ Background job `{self.id}`: {self.problem}"
        mark = "●" if self.running else ("✓" if self.status in ("completed", "idle") else "■")
        return (f"{mark} Background job `{self.id}`: **{self.status}** · {self.elapsed:.1f} s "
                f"elapsed · `%gemini wait {self.id}` waits for it here, `%gemini cancel "
                f"{self.id}` stops it.")

    def _send(self, markdown: str, plain: Optional[str] = None) -> None:
        if self.publish is None:
            return
        data = {"text/markdown": markdown, "text/plain": plain if plain is not None else markdown}
        self.publish(data, self.display_id, self._shown)
        self._shown = True

    def show(self) -> None:
        """Create the status output (in the calling cell)."""
        self._send(self.status_line())

    # -- polling --------------------------------------------------------------------------------
    def start(self) -> "BackgroundJob":
        self._thread = threading.Thread(target=self._poll_loop, name=f"gemini-job-{self.id[:12]}",
                                        daemon=True)
        self._thread.start()
        return self

    def _poll_loop(self) -> None:
        policy = PollPolicy(self.poll_interval, deadline=MAX_JOB_S)
        try:
            data = policy.follow(lambda: self.poll()[0],
                                 lambda d: d.get("status") in TERMINAL_STATUSES,
                                 on_status=lambda _d: self._send(self.status_line()),
                                 stop=self._stop, started=self.started)
        except PollTimeout:
            self._give_up(f"still {self.status} after {MAX_JOB_S // 3600} hours; stopped "
                          f"watching it (`%gemini wait {self.id}` watches it again).")
            return
        except Exception as exc:  # noqa: BLE001 - one sentence in the status output
            self._give_up(self._poll_error(exc))
            return
        if data is not None:
            self._finish(data, None)

    def poll(self) -> tuple[dict, Any]:
        """GET the interaction once; returns (wire dict, None). The raw response is read, not
        the SDK's pydantic object: half the CPU per poll (the result builds it lazily)."""
        response = self.client.interactions.with_raw_response.get(self.id)
        data = response.json()
        if not isinstance(data, dict):
            raise ValueError(f"the server answered with {type(data).__name__} instead of an "
                             f"interaction")
        self.status = self.live.status = data.get("status") or self.status
        return data, None

    def _poll_error(self, exc: BaseException) -> str:
        if status_code(exc) == 404:
            return (f"not found on {self.backend_label}: check the id (`%gemini jobs` lists this "
                    f"kernel's jobs); the local offline server forgets its interactions when the "
                    f"kernel restarts.")
        return (f"could not be polled ({explain(exc, where=self.backend_label).rstrip('.')}); "
                f"`%gemini wait {self.id}` tries again.")

    def _give_up(self, sentence: str) -> None:
        self.problem = sentence
        self.ended = time.monotonic()
        self.live.fill(GeminiResult(id=self.id, status=self.status,
                                    error=f"Background job {self.id} {sentence}",
                                    model=self.live.model, elapsed=self.elapsed))
        self._send(self.status_line())
        self.done.set()

    def _finish(self, data: dict, sdk_object: Any) -> None:
        self.ended = time.monotonic()
        result = self.live.fill(result_from_interaction(data, self.request, elapsed=self.elapsed,
                                                        sdk_object=sdk_object))
        self.result = result
        spend.record(self.session, result)
        if self.on_done is not None:
            try:
                self.on_done(self)
            except Exception as exc:  # noqa: BLE001 - bookkeeping must not hide the answer
                result.notes.append(f"Could not store the result: {exc}")
        self.show_end()
        self.done.set()

    def show_end(self) -> None:
        """The final state in the status output: the whole answer, or why there is none."""
        if self.result is None:
            self._send(self.status_line())
            return
        self._send(*render.markdown(self.result, render.style_for(self.request)))

    def wait(self, timeout: Optional[float] = None) -> Optional[GeminiResult]:
        """Block until the job ends (KeyboardInterrupt stops waiting, not the job)."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.done.wait(0.1):
            if end is not None and time.monotonic() > end:
                break
        return self.result

    def stop_polling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def result_from_interaction(data: dict, request: Any = None, *, elapsed: float = 0.0,
                            sdk_object: Any = None) -> GeminiResult:
    """A GeminiResult for a finished interaction (wire dict), built as `runner.run` builds one."""
    return build_result(Accumulator.from_interaction(data), request, elapsed=elapsed,
                        sdk_object=sdk_object, background=True)


# --------------------------------------------------------------------------------------------
# What the magic calls
# --------------------------------------------------------------------------------------------

def start_job(request: Any, *, client: Any, backend_label: str, conversation: Any = None,
              cell_id: Optional[str] = None, poll_interval: float = DEFAULT_POLL_S,
              publish: Optional[Publish] = None, on_result: Optional[Callable] = None,
              show: bool = True, session: Optional[Session] = None) -> BackgroundJob:
    """Create the interaction with `background=true`, show its status output, start polling;
    the job is listed in `session` (default: the current one).

    `on_result(result)` runs on the poller thread when the job ends (after the conversation
    records a completed turn). Errors creating the job propagate (the magic explains them).
    """
    parent, _, _, ustep, body, prompt = turn_start(request, conversation, cell_id)
    created = client.interactions.create(**body, background=True)

    def on_done(job: BackgroundJob) -> None:
        result = job.result
        if (result is not None and result.ok and result.status != "requires_action"
                and conversation is not None):
            conversation.record(parent=parent, cell_id=cell_id, interaction_id=result.id,
                                stored=True, prompt=prompt, model=result.model or "",
                                user_step=ustep, steps=result.steps, text=result.text)
        if on_result is not None and result is not None:
            on_result(result)

    session = session or current()
    job = BackgroundJob(created.id, client=client, backend_label=backend_label, request=request,
                        prompt=prompt, publish=publish, poll_interval=poll_interval,
                        on_done=on_done, status=getattr(created, "status", None) or "in_progress",
                        show=show, session=session)
    job.show()
    with session.lock:
        session.jobs[job.id] = job
    return job.start()


def find_job(ident: str, session: Optional[Session] = None) -> Optional[BackgroundJob]:
    """The job `ident` started or followed in `session` (default: the current one), or None."""
    session = session or current()
    with session.lock:
        return session.jobs.get(ident)


def jobs_table(session: Optional[Session] = None) -> str:
    """`%gemini jobs`: one line per background job of this kernel."""
    session = session or current()
    with session.lock:
        jobs = list(session.jobs.values())
    if not jobs:
        return ("No background jobs in this kernel (start one with %%gemini --background; "
                "%gemini wait ID follows a job started elsewhere).")
    lines = [f"Background jobs ({len(jobs)}):"]
    for job in jobs:
        prompt = " ".join(job.prompt.split())
        prompt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
        state = "lost: " + job.problem if job.problem else job.status
        lines.append(f"  {job.id}  {state:<12} {job.elapsed:6.0f} s  {prompt!r}")
    return "\n".join(lines)


def wait_job(ident: str, *, client: Any, backend_label: str, timeout: Optional[float] = None,
             poll_interval: float = DEFAULT_POLL_S, publish: Optional[Publish] = None,
             show: bool = True, session: Optional[Session] = None) -> BackgroundJob:
    """Wait for job `ident` with a status output in the calling cell; returns the job holding
    the result. A job of this kernel is followed through its own poller; a job this kernel
    does not know (e.g. after a restart) is picked up from its id alone (and then listed)."""
    session = session or current()
    known = find_job(ident, session)
    view = BackgroundJob(ident, client=client, backend_label=backend_label,
                         request=known.request if known else None,
                         prompt=known.prompt if known else "", publish=publish,
                         poll_interval=poll_interval, show=show, session=session)
    end = None if timeout is None else time.monotonic() + timeout
    if known is not None:
        view.started, view.status = known.started, known.status
        view.show()
        while not known.done.wait(view.poll_interval):
            if end is not None and time.monotonic() > end:
                break
            view.status = known.status
            view._send(view.status_line())
        if known.done.is_set():
            view.status, view.ended = known.status, known.ended
            view.result, view.problem = known.result, known.problem
            view.show_end()
            view.done.set()
        return view
    view.show()
    with session.lock:
        session.jobs.setdefault(ident, view)
    view._thread = threading.Thread(target=view._poll_loop, name=f"gemini-wait-{ident[:12]}",
                                    daemon=True)
    view._thread.start()
    try:
        view.wait(timeout)
    except KeyboardInterrupt:
        view.stop_polling()
        raise
    return view


def cancel_job(ident: str, *, client: Any, backend_label: str) -> str:
    """Cancel job `ident` on the server; one sentence saying what happened."""
    try:
        interaction = client.interactions.cancel(ident)
    except Exception as exc:  # noqa: BLE001 - one sentence
        if status_code(exc) == 404:
            return (f"No background job {ident} on {backend_label}: check the id (%gemini jobs "
                    f"lists this kernel's jobs).")
        return f"Could not cancel {ident}: {explain(exc, where=backend_label)}"
    status = getattr(interaction, "status", None) or "cancelled"
    if status == "cancelled":
        return f"Cancelled background job {ident}."
    return f"Background job {ident} had already ended ({status}); nothing to cancel."
