"""Run one request end to end: request → client → events → accumulator → observers → result.

`run()` never raises for a failed request: the result carries `.error` (one sentence) or
`.stopped`, and the partial answer. It can run off the main thread: setting `cancel_event`
stops reading, cancels the interaction on the server and keeps the partial text; a
KeyboardInterrupt on the main thread (the notebook's stop button) does the same.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Optional

from .args import Request
from .client import Backend, get_client, redact, resolve_backend
from .conversation import Conversation, user_step
from .errors import KEPT, explain, failed_sentence, stream_error_sentence
from .loop import ROUNDS_SENTENCE, FunctionLoop
from .result import GeminiResult
from .stream import (ADVANCING_STATUSES, Accumulator, interaction_events, iter_sse_events,
                     sdk_event_to_dict)

__all__ = ["run", "Observer"]

MAX_CONTINUATION_HOPS = 32
CANCEL_TIMEOUT_S = 5.0
# Fields google-genai computes on its Interaction objects, never sent by servers.
_SDK_COMPUTED = ("output_text", "output_image", "output_audio", "output_video", "continuation_ids")


class Observer:
    """What the runner calls; subclass or duck-type. `on_update` runs after every event, so it
    must be cheap (throttle inside)."""

    def on_start(self, acc: Accumulator) -> None: ...
    def on_update(self, acc: Accumulator) -> None: ...
    def on_done(self, result: GeminiResult) -> None: ...


class _Run:
    """Mutable state shared with the cancel watcher thread."""

    def __init__(self) -> None:
        self.acc = Accumulator()
        self.stream: Any = None
        self.client: Any = None
        self.cancelled = False
        self.server_cancelled = False
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
            self.client.interactions.cancel(ident, timeout=CANCEL_TIMEOUT_S)
        except BaseException:  # noqa: BLE001 - best effort: the stream is closed anyway
            pass

    def close_stream(self) -> None:
        stream = self.stream
        if stream is not None:
            try:
                stream.close()
            except BaseException:  # noqa: BLE001
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


def _fast_events(client: Any, body: dict, state: _Run) -> Iterator[dict]:
    """Events read straight from the HTTP response the SDK opened (the SDK still builds the
    request, authenticates and retries); continuation hops are followed like the SDK does."""
    from google.genai._gaos.lib.compat_errors import is_stream

    hops = 0
    while True:
        hops += 1
        stream = client.interactions.create(**body, stream=True, automatic_continuation=False)
        if not is_stream(stream):  # a JSON Interaction answered the stream request
            yield from interaction_events(_interaction_dict(stream))
            return
        state.stream = stream
        try:
            yield from iter_sse_events(stream.response.iter_lines())
        finally:
            stream.close()
            state.stream = None
        acc = state.acc
        if not acc.needs_continuation or hops >= MAX_CONTINUATION_HOPS or state.cancelled:
            return
        body = dict(body)
        body["continuation_token"] = acc.continuation_token
        if body.get("store") is not False:
            body.pop("input", None)
            body["previous_interaction_id"] = acc.id


def _sdk_events(client: Any, body: dict, state: _Run) -> Iterator[dict]:
    """The plain SDK iterator (one pydantic model per event): the reference the fast path is
    tested against, and a fallback setting."""
    from google.genai._gaos.lib.compat_errors import is_stream

    stream = client.interactions.create(**body, stream=True)
    if not is_stream(stream):
        yield from interaction_events(_interaction_dict(stream))
        return
    state.stream = stream
    try:
        for event in stream:
            yield sdk_event_to_dict(event)
    finally:
        stream.close()
        state.stream = None


def structured_value(result: GeminiResult, schema_obj: Any, name: Optional[str]) -> Optional[str]:
    """--schema: parse the answer into `result.value`; the error sentence if it does not fit."""
    from .schema import SchemaError, parse_structured

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


def _round(client: Any, body: dict, request: Request, state: _Run, observers: list,
           cancel_event: Optional[threading.Event], fast_stream: bool) -> Any:
    """Send one create request and feed its events to the accumulator and the observers.
    Returns the SDK's Interaction for a non-streaming answer (else None)."""
    acc = state.acc
    if request.stream:
        source = _fast_events if fast_stream else _sdk_events
        for event in source(client, body, state):
            acc.feed(event)
            for o in observers:
                o.on_update(acc)
            if cancel_event is not None and cancel_event.is_set():
                state.cancelled = True
                break
        return None
    from google.genai._gaos.lib.compat_errors import is_stream

    sdk_object = None
    answer = client.interactions.create(**body)
    if is_stream(answer):  # a server that streams anyway: read it like a stream
        state.stream = answer
        events: Iterable[dict] = iter_sse_events(answer.response.iter_lines())
    else:
        sdk_object = answer
        events = interaction_events(_interaction_dict(answer))
    try:
        for event in events:
            acc.feed(event)
            for o in observers:
                o.on_update(acc)
    finally:  # like the streaming paths: never leave the connection open
        state.close_stream()
        state.stream = None
    return sdk_object


def _interaction_dict(interaction: Any) -> dict:
    data = interaction.model_dump(mode="json", exclude_none=True, by_alias=True)
    for key in _SDK_COMPUTED:
        data.pop(key, None)
    return data


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
) -> GeminiResult:
    """Send `request`, feed observers while the answer arrives, and return the result.

    The conversation (if given) supplies the parent turn and records the turn when it
    completed; `cell_id` drives re-run forking. `settings` are used to resolve the backend
    when `backend` is not given.
    """
    observers = list(observers)
    start = time.monotonic()
    state = _Run()
    acc = state.acc
    parent, prev_id, history, ustep, body, prompt = turn_start(request, conversation, cell_id)
    sdk_object = None
    error: Optional[str] = None
    finished = threading.Event()
    watcher = None
    if cancel_event is not None:
        watcher = threading.Thread(target=_watch, args=(cancel_event, finished, state),
                                   name="gemini-cancel-watch", daemon=True)
        watcher.start()
    _call(observers, "on_start", acc)
    where = None
    notes: list = []
    loop_error: Optional[str] = None
    rounds = 0
    loop = (FunctionLoop(request.callables, timeout=request.function_timeout,
                         stateless=request.stateless)
            if request.callables else None)
    try:
        if backend is None:
            backend, _ = resolve_backend(settings or {})
        where = backend.label
        state.client = client = get_client(backend)
        while True:
            rounds += 1
            first = len(acc.order)
            if rounds > 1:
                acc.done = False  # this round must finish on its own
            sdk_object = _round(client, body, request, state, observers, cancel_event, fast_stream)
            if state.cancelled or acc.error is not None or not acc.done:
                break
            if loop is None or acc.status != "requires_action":
                break
            calls = loop.pending(acc, first)
            if not calls:
                break
            if not request.auto:
                notes.append("Stopped at the model's function call (--no-auto): the function "
                             "was not run and this turn was not added to the conversation.")
                break
            if rounds >= request.max_rounds:
                loop_error = ROUNDS_SENTENCE.format(n=rounds, s="s" if rounds != 1 else "")
                break
            results = loop.answer(calls, acc, observers)
            if cancel_event is not None and cancel_event.is_set():
                state.cancelled = True
                break
            body = loop.next_body(body, acc, results, list(history) + [ustep])
    except KeyboardInterrupt:
        state.cancelled = True
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one sentence
        if state.cancelled:
            pass  # closing the stream from the watcher thread surfaces here
        else:
            error = explain(exc, model=request.model, where=where,
                            partial=acc.answer_length > 0, continued=bool(prev_id))
    finally:
        finished.set()
    if rounds > 1:
        sdk_object = None  # the answer spans several interactions: built from the events
    if state.cancelled:
        state.cancel_on_server()
        state.close_stream()
    if watcher is not None:
        watcher.join(timeout=1.0)

    partial = acc.answer_length > 0
    status = acc.status
    if state.cancelled:
        error = None
    elif error is None and loop_error is not None:
        error = loop_error
    elif error is None:
        if acc.error is not None:
            error = stream_error_sentence(acc.error, partial=partial)
        elif not acc.done:
            kept = KEPT if partial else ""
            error = (f"The answer stopped before the server said it was complete{kept}; the "
                     f"connection was probably lost, so re-run the cell to try again.")
        elif status == "failed":
            error = failed_sentence(acc.meta.get("errors"), partial=partial)
        elif status == "budget_exceeded":
            error = ("The interaction ran out of its budget before finishing; raise the budget "
                     "or simplify the request, then re-run.")
        elif status not in ADVANCING_STATUSES and status != "cancelled":
            error = f"The interaction ended with status {status!r}; re-run the cell."
    stopped = state.cancelled or status == "cancelled"
    if stopped:
        error = None
    steps = acc.step_list()
    data = acc.interaction_dict()
    result = GeminiResult(
        text=acc.text, answer=acc.answer_text(), steps=steps, usage=dict(acc.usage),
        id=acc.id, status="cancelled" if stopped else status,
        model=acc.model or request.agent or request.model, elapsed=time.monotonic() - start,
        stopped=stopped, error=redact(error) if error else None, thoughts=acc.thought_text(),
        interaction_data=data, _interaction=sdk_object, notes=notes,
    )
    if result.ok and request.schema_obj is not None:
        result.error = structured_value(result, request.schema_obj, request.schema)
    # A turn left waiting for function results (--no-auto) is not continued by later cells.
    if result.ok and status != "requires_action" and conversation is not None:
        conversation.record(
            parent=parent, cell_id=cell_id, interaction_id=acc.id,
            stored=not request.stateless, prompt=prompt,
            model=result.model, user_step=ustep, steps=steps, text=result.text,
        )
    _call(observers, "on_done", result)
    return result
