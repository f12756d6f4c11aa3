"""Run one request end to end: request → client → events → accumulator → observers → result.

`run()` never raises for a failed request: the result carries `.error` (one sentence) or
`.stopped`, and the partial answer. It can run off the main thread: setting `cancel_event`
stops reading, cancels the interaction on the server and keeps the partial text; a
KeyboardInterrupt on the main thread (the notebook's stop button) does the same.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Optional

from .client import Backend, get_client, resolve_backend
from .conversation import Conversation, user_step
from .errors import KEPT, explain, outcome_sentence
from .loop import ROUNDS_SENTENCE, FunctionLoop
from .redact import redact, redact_tree
from .request import Request
from .result import GeminiResult
from .sender import FALLBACK_NOTE, Link, Sender, resumed_note
from .session import Session, current
from .stream import Accumulator, output_text, split_start

__all__ = ["run", "rounds", "build_result", "turn_start", "Observer"]

CANCEL_TIMEOUT_S = 5.0


class Observer:
    """What the runner calls; subclass or duck-type. `on_update` runs after every event, so it
    must be cheap (throttle inside)."""

    def on_start(self, acc: Accumulator) -> None: ...
    def on_update(self, acc: Accumulator) -> None: ...
    def on_done(self, result: GeminiResult) -> None: ...


class _Run(Link):
    """Mutable state shared with the cancel watcher thread (the open stream, the cancel)."""

    def __init__(self, session: Optional[Session] = None) -> None:
        super().__init__()
        self.session = session                 # whose notes are said once (None: current())
        self.acc = Accumulator()
        self.client: Any = None
        self.server_cancelled = False
        self.cancel_answer: Any = None         # what the server said to the cancel
        self.notes: list = []                  # remarks shown under the answer (--no-auto)
        self.loop_error: Optional[str] = None  # why the function loop stopped (--max-rounds)
        self.lock = threading.Lock()

    def cancel_on_server(self) -> None:
        with self.lock:
            if self.server_cancelled or self.client is None:
                return
            ident = self.acc.id
            if not ident or self.acc.done:
                return
            self.server_cancelled = True
        try:
            self.cancel_answer = self.client.interactions.cancel(ident, timeout=CANCEL_TIMEOUT_S)
        except BaseException:  # noqa: BLE001 - best effort: the stream is closed anyway
            pass


def _watch(cancel_event: threading.Event, finished: threading.Event, state: _Run) -> None:
    while not finished.is_set():
        if cancel_event.wait(0.05):
            if finished.is_set():
                return
            state.cancelled = True
            state.cancel_on_server()
            state.close_stream()
            return


def _note_fallback(state: _Run) -> None:
    """Say once per session that the SDK's raw stream is missing (a fact about the installed
    google-genai: repeating it under every answer would be noise). The Sender hands back the
    link it streamed for: the run's state."""
    if (state.session or current()).once(FALLBACK_NOTE):
        state.notes.append(FALLBACK_NOTE)


def structured_value(result: GeminiResult, schema_obj: Any, name: Optional[str]) -> Optional[str]:
    """--schema: parse the answer into `result.value`; the error sentence if it does not fit."""
    from .schema import SchemaError, parse_structured  # deferred: pydantic

    if result.status not in ("completed", "incomplete"):
        return None
    try:
        result.value = parse_structured(result.text, schema_obj, name)
    except SchemaError as exc:
        if result.status == "incomplete":
            return ("The answer reached the token limit before its JSON was complete; raise "
                    "--max-tokens and re-run (the raw answer is in .text of the result, _gemini).")
        return (f"{str(exc).rstrip('.')}; the raw answer is in .text of the result (_gemini), "
                f"and this turn was not added to the conversation.")
    return None


def _round(sender: Sender, body: dict, request: Request, state: _Run, observers: list,
           cancel_event: Optional[threading.Event]) -> Any:
    """Send one create request and feed its events to the accumulator and the observers.
    Returns the SDK's Interaction for a non-streaming answer (else None)."""
    acc = state.acc
    sdk_object = None
    if request.stream:
        events = sender.stream(body, state)
    else:
        events, sdk_object = sender.answer(body, state)
    try:
        for whole in events:
            for event in split_start(whole):
                acc.feed(event)
                for o in observers:
                    o.on_update(acc)
            if cancel_event is not None and cancel_event.is_set():
                state.cancelled = True
                break
    finally:  # never leave the connection open
        close = getattr(events, "close", None)
        if close is not None:
            close()
    return sdk_object


class TurnStart(NamedTuple):
    """Where a request joins the conversation, and the create() arguments that put it there."""

    parent: Any                # the Turn it continues (None: a new conversation)
    prev_id: Optional[str]
    history: list              # earlier steps re-sent by a stateless request
    ustep: dict                # this turn's user_input step
    body: dict
    prompt: str                # the prompt's text, as the conversation records it


def turn_start(request: Request, conversation: Optional[Conversation],
               cell_id: Optional[str]) -> TurnStart:
    """The one way a foreground run and a background job pick their parent turn and body."""
    parent = conversation.parent_for(cell_id, request.new) if conversation is not None else None
    prev_id, history = (conversation.context(parent, request.stateless)
                        if conversation is not None else (None, []))
    parts = request.parts or [request.text]
    ustep = user_step(parts)
    return TurnStart(parent, prev_id, history, ustep, request.body(ustep, prev_id, history),
                     "".join(p for p in parts if isinstance(p, str)))


def _call(observers: Iterable[Any], name: str, arg: Any) -> None:
    for o in observers:
        fn = getattr(o, name, None)
        if fn is not None:
            fn(arg)


NO_AUTO_NOTE = ("Stopped at the model's function call (--no-auto): the function was not run "
                "and this turn was not added to the conversation.")


def rounds(sender: Sender, body: dict, request: Request, state: _Run, observers: list,
           cancel_event: Optional[threading.Event], prefix: list) -> Iterator[Any]:
    """The model rounds of one turn, as a generator the drivers consume: each item is a
    finished round (the SDK's Interaction for a non-streaming answer, else None). Between
    rounds it answers the model's function calls (`--functions`); it ends when the model
    answers, a round fails or is stopped, `--no-auto` stops at a call, or `--max-rounds` is
    reached (then `state.notes` / `state.loop_error` say why). `prefix` is what a stateless
    request re-sends before this turn's model steps."""
    acc = state.acc
    loop = (FunctionLoop(request.callables, timeout=request.function_timeout,
                         stateless=request.stateless) if request.callables else None)
    n = 0
    while True:
        n += 1
        first = len(acc.order)
        if n > 1:
            acc.done = False  # this round must finish on its own
        yield _round(sender, body, request, state, observers, cancel_event)
        if state.cancelled or acc.error is not None or not acc.done:
            return
        if loop is None or acc.status != "requires_action":
            return
        calls = loop.pending(acc, first)
        if not calls:
            return
        if not request.auto:
            state.notes.append(NO_AUTO_NOTE)
            return
        if n >= request.max_rounds:
            state.loop_error = ROUNDS_SENTENCE.format(n=n, s="s" if n != 1 else "")
            return
        results = loop.answer(calls, acc, observers)
        if cancel_event is not None and cancel_event.is_set():
            state.cancelled = True
            return
        body = loop.next_body(body, acc, results, prefix)


def build_result(acc: Accumulator, request: Any, *, elapsed: float, cancelled: bool = False,
                 error: Optional[str] = None, notes: Iterable[str] = (), sdk_object: Any = None,
                 background: bool = False) -> GeminiResult:
    """The one way a finished turn becomes a GeminiResult, for foreground runs and background
    jobs: the status policy (errors.outcome_sentence), the stop, and the `--schema` value."""
    status = acc.status
    stopped = cancelled or status == "cancelled"
    if stopped:
        error = None
    elif error is None and not acc.done and acc.unreadable is not None:
        kept = KEPT if acc.answer_length else ""
        error = (f"The server sent an event that is not JSON ({acc.unreadable!r}) and the answer "
                 f"broke off{kept}; check that GeminiMagics.base_url points at a Gemini "
                 f"Interactions endpoint.")
    elif error is None:
        error = outcome_sentence(status, done=acc.done, stream_error=acc.error,
                                 errors=acc.meta.get("errors"), partial=acc.answer_length > 0,
                                 background=background)
    # A server may reflect the API key into what it answers: nothing we show or keep holds it.
    original = acc.interaction_dict()
    data = redact_tree(original)
    steps = data.get("steps") or []
    answer = redact(acc.answer_text())
    result = GeminiResult(
        text=output_text(steps), answer=answer, steps=steps, usage=dict(acc.usage),
        id=acc.id, status="cancelled" if stopped else status,
        model=acc.model or getattr(request, "agent", None) or getattr(request, "model", None),
        elapsed=elapsed, stopped=stopped, error=redact(error) if error else None,
        thoughts=redact(acc.thought_text()), interaction_data=data,
        # the SDK object is rebuilt from the redacted data when it held a key
        _interaction=sdk_object if data == original else None, notes=list(notes),
        skipped_events=acc.skipped,
    )
    schema_obj = getattr(request, "schema_obj", None)
    if result.ok and schema_obj is not None:
        result.error = structured_value(result, schema_obj, request.schema)
    return result


def run(
    request: Request,
    *,
    settings: Optional[Mapping[str, Any]] = None,
    backend: Optional[Backend] = None,
    observers: Iterable[Any] = (),
    cancel_event: Optional[threading.Event] = None,
    conversation: Optional[Conversation] = None,
    cell_id: Optional[str] = None,
    fast_stream: bool = True,
    session: Optional[Session] = None,
) -> GeminiResult:
    """Send `request`, feed observers while the answer arrives, and return the result.

    The conversation (if given) supplies the parent turn and records the turn when it
    completed; `cell_id` drives re-run forking. `settings` are used to resolve the backend
    when `backend` is not given. `session` is the one whose notes are said once (default: the
    current one).
    """
    observers = list(observers)
    start = time.monotonic()
    state = _Run(session)
    turn = turn_start(request, conversation, cell_id)
    _call(observers, "on_start", state.acc)
    with _watching(cancel_event, state):
        error, answers = _drive(request, turn, state, observers, backend, settings,
                                cancel_event, fast_stream)
    if state.cancelled:
        _usage_after_stop(state)
    if state.resumed:
        state.notes.append(resumed_note(state.resumed))
    result = build_result(state.acc, request, elapsed=time.monotonic() - start,
                          cancelled=state.cancelled, error=error or state.loop_error,
                          notes=state.notes,
                          # several rounds span several interactions: built from the events
                          sdk_object=answers[0] if len(answers) == 1 else None)
    # A turn left waiting for function results (--no-auto) is not continued by later cells.
    if result.ok and result.status != "requires_action" and conversation is not None:
        conversation.record(
            parent=turn.parent, cell_id=cell_id, interaction_id=result.id,
            stored=not request.stateless, prompt=turn.prompt,
            model=result.model, user_step=turn.ustep, steps=result.steps, text=result.text,
        )
    _call(observers, "on_done", result)
    return result


def _drive(request: Request, turn: TurnStart, state: _Run, observers: list,
           backend: Optional[Backend], settings: Optional[Mapping[str, Any]],
           cancel_event: Optional[threading.Event], fast_stream: bool) -> tuple[Optional[str], list]:
    """Consume the rounds; every failure becomes one sentence (None if there was none) and a
    KeyboardInterrupt (the notebook's stop button) a stop. Returns (error, round answers)."""
    answers: list = []
    where = None
    try:
        if backend is None:
            backend, _ = resolve_backend(settings or {})
        where = backend.label
        state.client = get_client(backend)
        sender = Sender(state.client, fast=fast_stream, on_fallback=_note_fallback)
        prefix = list(turn.history) + [turn.ustep]
        answers.extend(rounds(sender, turn.body, request, state, observers, cancel_event,
                              prefix))
    except KeyboardInterrupt:
        state.cancelled = True
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one sentence
        if not state.cancelled:  # closing the stream from the watcher thread surfaces here
            return explain(exc, model=request.model, where=where,
                           partial=state.acc.answer_length > 0,
                           continued=bool(turn.prev_id)), answers
    return None, answers


def _usage_after_stop(state: _Run) -> None:
    """A stopped answer's tokens: the stream was closed before the server counted them, so
    they are read from the cancel's answer, else from one GET when the cancel was answered
    without them (never when the server did not answer the cancel: a stop must not wait)."""
    acc = state.acc
    answer = state.cancel_answer
    if answer is None or (acc.usage or {}).get("total_output_tokens"):
        return
    usage = _usage_of(answer)
    if not usage.get("total_output_tokens"):
        try:
            usage = _usage_of(state.client.interactions.get(acc.id, timeout=CANCEL_TIMEOUT_S))
        except Exception:  # noqa: BLE001 - the stop stands without its count
            return
    if usage:
        acc.usage = usage


def _usage_of(interaction: Any) -> dict:
    usage = getattr(interaction, "usage", None)
    if usage is not None and hasattr(usage, "model_dump"):
        usage = usage.model_dump(mode="json", exclude_none=True)
    return dict(usage) if isinstance(usage, dict) else {}


@contextmanager
def _watching(cancel_event: Optional[threading.Event], state: _Run) -> Iterator[None]:
    """While the body runs, a watcher thread turns `cancel_event` into a cancel on the server
    and a closed stream; afterwards a stopped run is cancelled there for sure."""
    finished = threading.Event()
    watcher = None
    if cancel_event is not None:
        watcher = threading.Thread(target=_watch, args=(cancel_event, finished, state),
                                   name="gemini-cancel-watch", daemon=True)
        watcher.start()
    try:
        yield
    finally:
        finished.set()
        if state.cancelled:
            state.cancel_on_server()
            state.close_stream()
        if watcher is not None:
            watcher.join(timeout=1.0)
