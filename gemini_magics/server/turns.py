"""What every step producer shares for one turn: the recorder, the engine call and the events.

A *step producer* (chosen by `producers.pick_producer`) is a blocking function that emits this
turn's steps through a `TurnRecorder` and returns an `Outcome`. This module holds what they all
use and nothing producer-specific: streaming the engine's reply (`stream_model_output`),
recording complete steps with their wire events (`record_step`), and the one conversion of
history, media and tool steps for the text engine (`history_to_messages`).

Payloads are plain dicts serialised once with `json.dumps` (running every event through the
SDK's pydantic models costs ~1.7 ms each). Producers run on a worker thread; the recorder is
the only thing they share with the event loop (`listeners` wake async readers).
"""
from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional

from .engines.base import (Engine, EngineError, EngineRequest, EngineResult, GenerationParams,
                           OnText)
from .event_ids import event_id
from .protocol import CreateRequest
from .store import StoreError
from .webhooks import deliver

log = logging.getLogger(__name__)

FINISH_STATUS = {"stop": "completed", "length": "incomplete", "cancelled": "cancelled"}
# How streams open a thought or model_output step. "delta" (the default): a bare step.start and
# every piece of content in step.delta events, as Google's published streams show and its
# published samples read (they print only `step.delta` text, so a first word sent in the start
# would be lost). "start": the first text or summary and a thought's signature inside
# step.start, the other shape the real API also sends (the client reads both; tests use it).
STREAM_SHAPE_ENV = "GEMINI_MAGICS_STREAM_SHAPE"
STREAM_SHAPES = ("delta", "start")
# What a client is told when a producer raises (`public_message`): never the text of an
# exception that is not ours, which may quote anything it touched (a jsonschema error quotes the
# whole schema); the details go to the log.
FAILED_SENTENCE = ("The local server failed while producing this answer (the details are in "
                   "its log); try again, and report it if it keeps happening.")


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_usage(input_tokens: int, output_tokens: int, thought_tokens: int = 0) -> dict:
    return {
        "total_input_tokens": input_tokens,
        "total_output_tokens": output_tokens,
        "total_thought_tokens": thought_tokens,
        "total_cached_tokens": 0,
        "total_tool_use_tokens": 0,
        "total_tokens": input_tokens + output_tokens + thought_tokens,
        "input_tokens_by_modality": [{"modality": "text", "tokens": input_tokens}],
        "output_tokens_by_modality": [{"modality": "text", "tokens": output_tokens}],
    }


class TurnRecorder:
    """The live state of one interaction: its resource, steps so far and SSE events.

    Written by the producer's thread, read by the event loop. `events` is append-only
    (event_type, json_data) pairs; event ids are opaque tokens of their 1-based positions
    (`event_ids`). Every `step.stop` carries the step's `step_usage` and the interaction's
    `usage` so far. `content_in_start` (default: the `STREAM_SHAPE_ENV` setting, read once per
    turn): a step's `step.start` carries its first content (text, thought summary, signature),
    so a streamed step's start waits for it (`_pending`); else starts are bare and content
    comes in deltas (`bare_start`).
    """

    def __init__(self, resource: dict, input_steps: list[dict],
                 content_in_start: Optional[bool] = None):
        self.resource = resource
        self.content_in_start = (stream_shape() == "start" if content_in_start is None
                                 else content_in_start)
        self.input_steps = input_steps
        self.events: list[tuple[str, str]] = []
        self.cancel_requested = threading.Event()
        self.done = threading.Event()
        self.disconnected = False
        self._steps: list[dict] = []
        self._chunks: dict[int, list[str]] = {}
        self._annotations: dict[int, list[dict]] = {}
        self._pending: dict[int, dict] = {}  # step.start payloads waiting for first content
        self._used = [0, 0]  # input and output tokens of the stopped steps
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    @property
    def id(self) -> str:
        return self.resource["id"]

    # -- listeners (async readers) -------------------------------------------------------
    def add_listener(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def _notify(self) -> None:
        for fn in list(self._listeners):
            fn()

    # -- what producers call -------------------------------------------------------------
    def emit(self, event_type: str, payload: dict) -> None:
        with self._lock:
            self.events.append(self._encode(event_type, payload))
        self._notify()

    def _encode(self, event_type: str, payload: dict) -> tuple[str, str]:
        """The next event as (event_type, json data), numbered after the last one."""
        payload["event_type"] = event_type
        payload["event_id"] = event_id(self.id, len(self.events) + 1)
        return event_type, json.dumps(payload, separators=(",", ":"), ensure_ascii=False,
                                      allow_nan=False)

    def closing(self, outcome: Outcome) -> tuple[dict, tuple[str, str]]:
        """The finished resource and its interaction.completed event, not yet published."""
        res = dict(self.resource)
        res["status"] = outcome.status
        res["updated"] = now_iso()
        res["usage"] = make_usage(outcome.input_tokens, outcome.output_tokens)
        if outcome.errors:
            res["errors"] = outcome.errors
        if outcome.capped_at:  # the engine's own default cap ended it (engines.base.own_cap)
            res["default_max_output_tokens_reached"] = outcome.capped_at
        brief = {k: res[k] for k in ("id", "object", "status", "model", "agent", "created",
                                      "updated", "usage", "service_tier",
                                      "previous_interaction_id", "environment_id", "errors",
                                      "default_max_output_tokens_reached")
                 if k in res}
        with self._lock:
            return res, self._encode("interaction.completed", {"interaction": brief})

    def end(self, resource: dict, last_event: tuple[str, str]) -> None:
        """Publish the finished turn at once: its final resource and last event, then done."""
        with self._lock:
            self.resource = resource
            self.events.append(last_event)
        self.done.set()
        self._notify()

    def start_step(self, step: dict, announce: Optional[dict] = None,
                   wait_for_content: bool = False) -> int:
        """Open a step (kept as `step`); stream `announce` (default: just its type) as its
        step.start, at once or, with `wait_for_content`, with the first text of `text()`."""
        with self._lock:
            index = len(self._steps)
            self._steps.append(dict(step))
        announce = announce or {"type": step["type"]}
        if not self.content_in_start:
            announce, deltas = bare_start(announce)
            self.emit("step.start", {"index": index, "step": announce})
            for delta in deltas:
                self.emit("step.delta", {"index": index, "delta": delta})
            return index
        payload = {"index": index, "step": announce}
        if wait_for_content:
            with self._lock:
                self._pending[index] = payload
        else:
            self.emit("step.start", payload)
        return index

    def _flush_start(self, index: int, content: Optional[dict] = None) -> bool:
        """Emit a waiting step.start (with `content` as its first content); False if it was
        already out."""
        with self._lock:
            payload = self._pending.pop(index, None)
        if payload is None:
            return False
        if content is not None:
            payload["step"] = {**payload["step"], "content": [content]}
        self.emit("step.start", payload)
        return True

    def text(self, index: int, text: str) -> None:
        """Append text to a model_output step and stream it: in its step.start if that is
        still waiting, else as a text delta."""
        if not text:
            return
        with self._lock:
            self._chunks.setdefault(index, []).append(text)
        if not self._flush_start(index, {"type": "text", "text": text}):
            self.emit("step.delta", {"index": index, "delta": {"type": "text", "text": text}})

    def delta(self, index: int, delta: dict, update: Optional[dict] = None) -> None:
        """Stream any other delta; `update` is merged into the kept step."""
        if update:
            with self._lock:
                self._steps[index].update(update)
        self._flush_start(index)
        self.emit("step.delta", {"index": index, "delta": delta})

    def annotate(self, index: int, annotations: list[dict]) -> None:
        """Attach citations to a model_output's streamed text (kept on its text item, where the
        SDK and the quickstart read them) and stream them as a text_annotation_delta."""
        if not annotations:
            return
        with self._lock:
            self._annotations.setdefault(index, []).extend(annotations)
        self._flush_start(index)
        self.emit("step.delta", {"index": index, "delta": {"type": "text_annotation_delta",
                                                           "annotations": list(annotations)}})

    def stop_step(self, index: int, input_tokens: int = 0, output_tokens: int = 0) -> None:
        """Close a step; its tokens count towards the `usage` every later step.stop reports."""
        self._flush_start(index)
        with self._lock:
            self._used[0] += input_tokens
            self._used[1] += output_tokens
            used = tuple(self._used)
        self.emit("step.stop", {"index": index,
                                "step_usage": make_usage(input_tokens, output_tokens),
                                "usage": make_usage(*used)})

    def streamed_text(self, index: int) -> str:
        """The text streamed so far into step `index` (by `text`)."""
        with self._lock:
            return "".join(self._chunks.get(index, ()))

    def add_usage(self, input_tokens: int, output_tokens: int) -> None:
        """Count tokens spent outside any step (a planning pass that called no function)."""
        with self._lock:
            self._used[0] += input_tokens
            self._used[1] += output_tokens

    def next_index(self) -> int:
        """The index the next `start_step` gets."""
        with self._lock:
            return len(self._steps)

    @property
    def cancelled(self) -> bool:
        return self.cancel_requested.is_set()

    # -- snapshots -----------------------------------------------------------------------
    def steps(self) -> list[dict]:
        """The steps produced so far, text joined."""
        with self._lock:
            out = []
            for i, step in enumerate(self._steps):
                step = dict(step)
                if i in self._chunks or step.get("type") == "model_output" and "content" not in step:
                    text = {"type": "text", "text": "".join(self._chunks.get(i, ()))}
                    if self._annotations.get(i):
                        text["annotations"] = list(self._annotations[i])
                    step["content"] = list(step.get("content") or []) + [text]
                out.append(step)
            return out

    def snapshot(self, include_input: bool = False, timeline: bool = False) -> dict:
        return resource_with_steps(self.resource, self.input_steps, self.steps(), include_input,
                                   timeline)


def stream_shape() -> str:
    """The configured stream shape (`STREAM_SHAPE_ENV`): "delta" unless set to "start"."""
    value = os.environ.get(STREAM_SHAPE_ENV, "").strip().lower()
    return value if value in STREAM_SHAPES else "delta"


def bare_start(announce: dict) -> tuple[dict, list[dict]]:
    """A thought's or model_output's step.start without content, and the deltas that carry
    it: a model_output's content items as they are (text, image), a thought's summary items
    as `thought_summary` and then its signature as `thought_signature`, in that order, as
    Google's published streams send them. Other steps are unchanged."""
    kind = announce.get("type")
    if kind == "model_output":
        return ({k: v for k, v in announce.items() if k != "content"},
                [dict(c) for c in announce.get("content") or []])
    if kind == "thought":
        deltas = [{"type": "thought_summary", "content": dict(c)}
                  for c in announce.get("summary") or []]
        if announce.get("signature"):
            deltas.append({"type": "thought_signature", "signature": announce["signature"]})
        return ({k: v for k, v in announce.items() if k not in ("summary", "signature")},
                deltas)
    return announce, []


def resource_with_steps(resource: dict, input_steps: list[dict], steps: list[dict],
                        include_input: bool, timeline: bool = False) -> dict:
    """The Interaction resource, live or stored. Create and cancel answer with the output
    `steps` only; get (`timeline`) answers with the whole turn, its input steps (the
    `user_input`) ahead of the outputs, as the real API does. `include_input` also returns the
    input as `input`."""
    res = dict(resource)
    res["steps"] = list(input_steps) + steps if timeline or include_input else steps
    if include_input:
        res["input"] = input_steps
    return res


@dataclass
class TurnContext:
    """Everything a producer needs for one turn."""

    request: CreateRequest
    history: list[dict]  # earlier steps of the conversation (inputs and outputs), oldest first
    engine: Engine
    recorder: TurnRecorder

    @property
    def all_steps(self) -> list[dict]:
        return self.history + self.request.input_steps


@dataclass
class Outcome:
    status: str
    input_tokens: int = 0
    output_tokens: int = 0
    errors: list = field(default_factory=list)
    capped_at: Optional[int] = None  # EngineResult.capped_at of the answer


StepProducer = Callable[[TurnContext], Outcome]


def emit_thought(rec: TurnRecorder) -> None:
    """A thought step carrying only a signature, as Gemini 3 models stream one first (in a
    `thought_signature` delta, or in its step.start: `TurnRecorder.content_in_start`)."""
    record_step(rec, {"type": "thought", "signature": step_signature(rec, rec.next_index())})


def stream_model_output(ctx: TurnContext, messages: Optional[list[dict]] = None,
                        cite: Optional[Callable[[str], list[dict]]] = None) -> Outcome:
    """Ask the engine (with `messages`, default: the whole conversation) and stream its reply
    as one model_output step. Producers that add tool steps first call this for the answer;
    `cite(text)` gives the citations attached to the streamed text before the step stops."""
    rec, req = ctx.recorder, ctx.request
    if messages is None:
        messages = history_to_messages(req.system_instruction, ctx.all_steps)
    out = rec.start_step({"type": "model_output"}, wait_for_content=True)
    engine_request = EngineRequest(model=req.name, messages=messages,
                                   params=generation_params(req.generation_config),
                                   json_schema=req.json_schema())

    def on_text(chunk: str) -> bool:
        if rec.cancelled:
            return False
        rec.text(out, chunk)
        return not rec.cancelled

    result = None
    try:
        result = ctx.engine.generate(engine_request, on_text)
        if cite is not None:
            rec.annotate(out, cite(rec.streamed_text(out)))
    finally:
        if result is None:
            rec.stop_step(out)
        else:
            rec.stop_step(out, result.input_tokens, result.output_tokens)
    status = "cancelled" if rec.cancelled else FINISH_STATUS.get(result.finish, "completed")
    return Outcome(status, result.input_tokens, result.output_tokens, capped_at=result.capped_at)


def generation_params(config: dict) -> GenerationParams:
    return GenerationParams(
        temperature=config.get("temperature"),
        top_p=config.get("top_p"),
        max_output_tokens=config.get("max_output_tokens"),
        stop_sequences=list(config.get("stop_sequences") or []),
        seed=config.get("seed"),
    )


def history_to_messages(system_instruction: Optional[str], steps: list[dict]) -> list[dict]:
    """Interaction steps -> chat messages for a text engine (consecutive roles merged).

    Thoughts are dropped; media become short markers like "[image/png image]"; tool calls and
    results become bracketed text, so a small text model still sees that they happened.
    """
    messages: list[dict] = []
    if system_instruction:
        messages.append({"role": "system", "content": system_instruction})

    def add(role: str, text: str) -> None:
        if not text:
            return
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n\n" + text
        else:
            messages.append({"role": role, "content": text})

    for step in steps:
        kind = step.get("type")
        if kind == "user_input":
            add("user", content_text(step.get("content")))
        elif kind == "model_output":
            add("assistant", content_text(step.get("content"), generated=True))
        elif kind == "thought":
            continue
        elif kind == "function_call":
            add("assistant", f"[function call {step.get('name')}"
                             f"({json.dumps(step.get('arguments') or {})})]")
        elif kind == "function_result":
            result = step.get("result")
            text = content_text(result) if isinstance(result, list) else (
                result if isinstance(result, str) else json.dumps(result))
            add("user", f"[function result {step.get('name') or step.get('call_id')}: {text}]")
        elif isinstance(kind, str) and kind.endswith("_call"):
            add("assistant", f"[{kind} {json.dumps(step.get('arguments') or {})}]")
        elif isinstance(kind, str) and kind.endswith("_result"):
            add("user", f"[{kind}: {_short(json.dumps(step.get('result')))}]")
    return messages


def content_text(content, generated: bool = False) -> str:
    """Text of a content list; media items become one-line descriptions (`media_marker`)."""
    if isinstance(content, str):
        return content
    parts = []
    for item in content or []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "text":
            parts.append(item.get("text") or "")
        elif kind:
            parts.append(media_marker(item, generated))
    return "\n".join(p for p in parts if p)


def media_marker(item: dict, generated: bool = False) -> str:
    """A media part in words for the text model, e.g. "[Attached image: JPEG, 640x480 pixels,
    ...]" (decoded locally; a `uri` is never fetched). `generated`: the model's own output."""
    from .describe import describe_part  # deferred: imports PIL, which text-only turns never need

    label = f"Generated {item.get('type') or 'media'}" if generated else None
    return describe_part(item, label=label)


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------
# Complete steps: their streaming events (the wire shape), and recording them
# --------------------------------------------------------------------------------------------

def function_call_step(call_id: str, name: str, arguments: dict) -> dict:
    """A complete `function_call` step (non-streaming responses)."""
    return {"type": "function_call", "id": call_id, "name": name, "arguments": arguments}


def _fragments(text: str, size: int) -> list[str]:
    """Split JSON text into fragments of about `size` characters, preferring token boundaries."""
    out, buf = [], ""
    for piece in re.findall(r'"(?:[^"\\]|\\.)*"|\s+|[^"\s]', text):
        if buf and len(buf) + len(piece) > size:
            out.append(buf)
            buf = ""
        while len(piece) > size:  # a long string literal: cut it (deltas are plain text)
            out.append(piece[:size])
            piece = piece[size:]
        buf += piece
    if buf:
        out.append(buf)
    return out or [""]


def function_call_events(index: int, call_id: str, name: str, arguments: dict,
                         fragment_chars: int = 24) -> list[dict]:
    """Streaming events for a function call: `step.start` (empty arguments), `arguments_delta`
    fragments whose concatenation is the arguments' JSON, then `step.stop`.

    Events carry no `event_id`; the server's SSE layer numbers them. After the last one the
    interaction ends with `status: "requires_action"`.
    """
    text = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    events = [{"event_type": "step.start", "index": index,
               "step": {"type": "function_call", "id": call_id, "name": name, "arguments": {}}}]
    for piece in _fragments(text, fragment_chars):
        events.append({"event_type": "step.delta", "index": index,
                       "delta": {"type": "arguments_delta", "arguments": piece}})
    events.append({"event_type": "step.stop", "index": index})
    return events


# Fields a tool step carries in its delta (the rest, identity fields, go in step.start, with an
# empty value for the payload fields marked here by one).
_PAYLOAD = {"arguments": {}, "result": [], "is_error": None, "search_type": None,
            "signature": None}
# Tool results the real API does not stream: step.start has an empty `result` (and the step's
# signature), no delta follows; the result is in the stored step (get, non-streaming create).
UNSTREAMED_RESULTS = {"google_search_result"}


def wire_events(index: int, step: dict) -> list[dict]:
    """Streaming events for any complete step (function calls get `arguments_delta`s).

    Tool steps: `step.start` with the identity fields and empty payload, one `step.delta` of
    the step's own type with the payload and signature (the SDK's `*CallDelta` /
    `*ResultDelta`), `step.stop`; `UNSTREAMED_RESULTS` stream no payload. Thoughts put their
    signature and first summary item in `step.start`, as the real API does, and stream any
    further summary items as `thought_summary` deltas.
    """
    kind = step.get("type")
    if kind == "function_call":
        return function_call_events(index, step["id"], step["name"], step.get("arguments") or {})
    if kind == "thought":
        start = {"type": "thought"}
        if step.get("signature"):
            start["signature"] = step["signature"]
        summary = list(step.get("summary") or [])
        if summary:
            start["summary"] = summary[:1]
        deltas = [{"type": "thought_summary", "content": c} for c in summary[1:]]
    elif kind in UNSTREAMED_RESULTS:
        start = {k: v for k, v in step.items() if k != "result"}
        start["result"] = []
        deltas = []
    else:
        start, payload = {}, {"type": kind}
        for k, v in step.items():
            if k in _PAYLOAD:
                payload[k] = v
                if _PAYLOAD[k] is not None:
                    start[k] = "" if isinstance(v, str) else type(_PAYLOAD[k])()
            else:
                start[k] = v
        deltas = [payload] if len(payload) > 1 else []
    events = [{"event_type": "step.start", "index": index, "step": start}]
    events += [{"event_type": "step.delta", "index": index, "delta": d} for d in deltas]
    events.append({"event_type": "step.stop", "index": index})
    return events


def record_step(recorder: TurnRecorder, step: dict, input_tokens: int = 0,
                output_tokens: int = 0) -> int:
    """Emit a complete step through a `TurnRecorder` (start, deltas, stop, the stop counting
    the step's tokens); its index."""
    events = wire_events(0, step)
    announce, deltas = events[0]["step"], [e["delta"] for e in events[1:-1]]
    if step.get("type") == "thought" and not recorder.content_in_start:
        announce, deltas = {**announce, "summary": list(step.get("summary") or [])}, []
        if not announce["summary"]:
            del announce["summary"]
    index = recorder.start_step(step, announce=announce)
    for delta in deltas:
        recorder.delta(index, delta)
    recorder.stop_step(index, input_tokens, output_tokens)
    return index


def step_signature(rec: TurnRecorder, index: int) -> str:
    """An opaque signature for step `index` of this turn (base64, as the real API's thought
    signatures): clients keep it and send it back; the local server does not check it."""
    return base64.b64encode(f"gemini-magics:{rec.id}:{index}".encode()).decode("ascii")


Keep = Callable[[dict, list, list, list], None]  # (resource, input steps, steps, events)


class MeteredEngine(Engine):
    """The turn's engine, counting every token it was asked for and gave: a producer that
    raises after the engine generated (a schema error after planning) loses its own count,
    and a failed turn must still be charged for what it cost. A `generate` that itself raises
    counts its messages and the text it had streamed (the engine's own estimate)."""

    def __init__(self, inner: Engine):
        self.inner = inner
        self.name = inner.name
        self.input_tokens = 0
        self.output_tokens = 0
        self._lock = threading.Lock()

    def __getattr__(self, attr: str):  # the inner engine's knobs (describes_input, url, ...)
        return getattr(self.inner, attr)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def count_input(self, request: EngineRequest) -> int:
        return self.inner.count_input(request)

    def generate(self, request: EngineRequest, on_text: OnText) -> EngineResult:
        streamed: list[str] = []

        def counting(chunk: str) -> bool:
            streamed.append(chunk)
            return on_text(chunk)

        try:
            result = self.inner.generate(request, counting)
        except BaseException:  # the plain rule, not the engine's own (it may be what failed)
            self._add(Engine.count_input(self, request), self.count_tokens("".join(streamed)))
            raise
        self._add(result.input_tokens, result.output_tokens)
        return result

    def _add(self, input_tokens: int, output_tokens: int) -> None:
        with self._lock:
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens


def run_turn(ctx: TurnContext, producer: StepProducer, keep: Optional[Keep]) -> None:
    """Produce the turn, `keep` it (store it; None when store=false), then end it with
    interaction.completed and send it to the request's webhooks (`webhooks.deliver`).

    Kept before anyone can see it end, so no answer claims what was not kept: if `keep` raises,
    the turn ends `failed` with an `error` event carrying the store's one-sentence reason. A
    producer that raises ends the turn `failed` with `public_message`'s sentence and the tokens
    its engine had spent (`MeteredEngine`), so they show in its usage and are charged.
    """
    rec = ctx.recorder
    metered = MeteredEngine(ctx.engine)
    try:
        outcome = producer(dataclasses.replace(ctx, engine=metered))
    except Exception as e:  # an engine bug must end the turn, not hang its readers
        log.warning("turn %s failed: %s: %s", rec.id, type(e).__name__, e,
                    exc_info=not isinstance(e, EngineError))  # a bug: where, in the log
        error = {"code": "internal", "message": public_message(e)}
        outcome = Outcome("failed", metered.input_tokens, metered.output_tokens,
                          errors=[error])
        rec.emit("error", {"error": dict(error)})
    try:
        resource, last = rec.closing(outcome)
        if keep is not None:
            try:
                keep(resource, rec.input_steps, rec.steps(), rec.events + [last])
            except Exception as e:
                log.warning("interaction %s was not stored: %s", rec.id, e)
                error = {"code": "storage", "message": public_message(e)}
                outcome = Outcome("failed", outcome.input_tokens, outcome.output_tokens,
                                  errors=[error])
                rec.emit("error", {"error": dict(error)})
                resource, last = rec.closing(outcome)
        rec.end(resource, last)
        deliver(ctx.request.echo.get("webhook_config"),
                resource_with_steps(resource, rec.input_steps, rec.steps(), False),
                resource["updated"])
    finally:
        if not rec.done.is_set():  # a bug above: readers must still end
            rec.done.set()
            rec._notify()


def public_message(e: BaseException) -> str:
    """A failure as a client may read it: the sentence of an engine or the store (written for
    the client), else FAILED_SENTENCE (the exception's own text stays in the log)."""
    return str(e) if isinstance(e, (EngineError, StoreError)) else FAILED_SENTENCE


def not_run(ctx: TurnContext) -> Outcome:
    """The producer of a turn cancelled before it started: no steps."""
    return Outcome("cancelled")


def begin(rec: TurnRecorder) -> None:
    """The two events every stream starts with."""
    res = rec.resource
    brief = {k: res[k] for k in ("id", "object", "status", "model", "agent", "created",
                                  "updated", "service_tier", "previous_interaction_id",
                                  "environment_id")
             if k in res}
    rec.emit("interaction.created", {"interaction": brief})
    rec.emit("interaction.status_update", {"interaction_id": res["id"], "status": res["status"],
                                           "usage": res.get("usage") or make_usage(0, 0)})
