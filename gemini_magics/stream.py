"""Events → interaction: the ONE accumulator, and the fast raw-SSE event source.

Streaming and non-streaming answers take the same path: a finished Interaction is replayed
through `Accumulator.feed_interaction` as the events that would have produced it, so display,
results and conversation code only ever read an accumulator.

google-genai (3.4 to 3.6) builds a pydantic model class for every SSE event it parses (~1.7 ms
each); `iter_sse_events` reads the SDK's raw HTTP response instead and checks each event's
required fields with a table built once, which costs microseconds per event.

A `user_input` step the server lists (the real API's GET and non-streamed answers do) is the
request, not the answer: the accumulator leaves it out, so it is never shown, recorded in the
conversation or re-sent twice by a stateless turn.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, Optional

__all__ = [
    "Accumulator", "StreamProtocolError", "iter_sse_events", "sdk_event_to_dict",
    "interaction_events", "step_events", "split_start", "output_text", "ADVANCING_STATUSES",
    "check_shape",
]

# Statuses that mean "the turn happened" and may be continued by a later turn. `idle` (google-genai
# 3.5+): "the server has completed all processing and background reasoning".
ADVANCING_STATUSES = frozenset({"completed", "incomplete", "requires_action", "idle"})

# Required fields per event type (what google-genai's models require), checked per event.
_REQUIRED = {
    "interaction.created": ("interaction",),
    "interaction.completed": ("interaction",),
    "interaction.status_update": ("interaction_id", "status"),
    "step.start": ("index", "step"),
    "step.delta": ("index", "delta"),
    "step.stop": ("index",),
    "error": (),
}
# Content-carrying delta types: each becomes (or extends) a content item of the step.
_MEDIA_DELTAS = frozenset({"image", "audio", "video", "document"})


class StreamProtocolError(ValueError):
    """The server sent an event that does not follow the Interactions wire protocol."""


def _check(event: Any, raw: str) -> dict:
    if not isinstance(event, dict):
        raise StreamProtocolError(f"The server sent an event that is not a JSON object: {raw[:80]!r}.")
    kind = event.get("event_type")
    if kind is None:
        # google-genai treats JSON without event_type as an error event; so do we.
        return {"event_type": "error", "error": event.get("error") or {"message": raw[:200]}}
    required = _REQUIRED.get(kind)
    if required:
        for key in required:
            if key not in event:
                raise StreamProtocolError(
                    f"The server sent a {kind!r} event without its required {key!r} field."
                )
    return event


# The types of the fields the accumulator reads, per event type: (path, types, what it is).
# A server that sends, say, a number where the text goes gets one sentence naming the field,
# not a TypeError from deep inside the accumulator.
_OBJ, _STR, _LIST, _INT = (dict,), (str,), (list,), (int,)
_SHAPES = {
    "interaction.created": (("interaction", _OBJ),),
    "interaction.completed": (("interaction", _OBJ),),
    "interaction.status_update": (("status", _STR), ("usage", _OBJ)),
    "step.start": (("index", _INT), ("step", _OBJ)),
    "step.delta": (("index", _INT), ("delta", _OBJ), ("metadata", _OBJ)),
    "step.stop": (("index", _INT), ("usage", _OBJ)),
}
_INTERACTION_SHAPE = (("id", _STR), ("status", _STR), ("model", _STR), ("steps", _LIST),
                      ("usage", _OBJ))
_DELTA_SHAPES = {
    "text": (("text", _STR),),
    "thought_summary": (("content", _OBJ),),
    "arguments_delta": (("arguments", _STR),),
    "text_annotation_delta": (("annotations", _LIST),),
}
_TYPE_NAMES = {dict: "an object", str: "a string", list: "a list", int: "a whole number"}


def _misfit(kind: str, where: str, value: Any, types: tuple) -> StreamProtocolError:
    got = {dict: "an object", list: "a list", str: "a string", bool: "true/false",
           int: "a number", float: "a number", type(None): "null"}.get(type(value), "a value")
    return StreamProtocolError(f"The server sent an event of type {kind!r} whose {where!r} is {got}, "
                               f"not {_TYPE_NAMES[types[0]]}")


def _fits(value: Any, types: tuple) -> bool:
    return isinstance(value, types) and not (types is _INT and isinstance(value, bool))


def _check_fields(kind: str, obj: dict, table: tuple, prefix: str = "") -> None:
    """Each (field, types) of `table` that `obj` holds (not null) must have one of `types`."""
    for key, types in table:
        value = obj.get(key)
        if value is not None and not _fits(value, types):
            raise _misfit(kind, prefix + key, value, types)


def check_shape(event: dict) -> None:
    """Raise StreamProtocolError if a field the accumulator reads has the wrong type (absent
    optional fields and null are fine); microseconds per event."""
    kind = event.get("event_type")
    if not isinstance(kind, str):
        raise _misfit("?", "event_type", kind, _STR)
    _check_fields(kind, event, _SHAPES.get(kind, ()))
    if kind in ("interaction.created", "interaction.completed"):
        _check_fields(kind, event["interaction"], _INTERACTION_SHAPE, "interaction.")
    elif kind == "step.start":
        step = event["step"]
        if not isinstance(step, dict):
            raise _misfit(kind, "step", step, _OBJ)
        step_type = step.get("type")
        if step_type is not None and not isinstance(step_type, str):
            raise _misfit(kind, "step.type", step_type, _STR)
        for key in ("content", "summary"):
            value = step.get(key)
            if value is not None and not (isinstance(value, list)
                                          and all(isinstance(v, dict) for v in value)):
                raise StreamProtocolError(f"The server sent an event of type {kind!r} whose "
                                          f"'step.{key}' is not a list of objects")
    elif kind == "step.delta":
        delta = event["delta"]
        if not isinstance(delta, dict):
            raise _misfit(kind, "delta", delta, _OBJ)
        dtype = delta.get("type")
        if dtype is not None and not isinstance(dtype, str):
            raise _misfit(kind, "delta.type", dtype, _STR)
        _check_fields(kind, delta, _DELTA_SHAPES.get(dtype, ()), "delta.")
        if dtype == "thought_summary":
            text = (delta.get("content") or {}).get("text")
            if text is not None and not isinstance(text, str):
                raise _misfit(kind, "delta.content.text", text, _STR)
        usage = (event.get("metadata") or {}).get("total_usage")
        if usage is not None and not isinstance(usage, dict):
            raise _misfit(kind, "metadata.total_usage", usage, _OBJ)


# What a `data:` payload that is not JSON becomes: both SDKs skip such a payload and read on, so
# do we; the accumulator keeps the first one to explain a stream that then breaks off.
UNREADABLE = "unreadable"


def _decode(payload: str) -> dict:
    try:
        event = json.loads(payload)
    except ValueError:
        return {"event_type": UNREADABLE, "data": payload[:80]}
    return _check(event, payload)


def iter_sse_events(lines: Iterable[str]) -> Iterator[dict]:
    """Parse server-sent-event lines into event dicts (dispatching on the JSON `event_type`,
    like both SDKs do); `data: [DONE]` or the end of the lines ends the stream."""
    data: list[str] = []
    for line in lines:
        if line:
            if line.startswith("data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(" ") else value)
            continue  # event:, id:, retry: and ": comments" are not used
        if not data:
            continue
        payload = data[0] if len(data) == 1 else "\n".join(data)
        data = []
        if payload == "[DONE]":
            return
        yield _decode(payload)
    if data:  # a last event without its blank line
        payload = "\n".join(data)
        if payload != "[DONE]":
            yield _decode(payload)


def sdk_event_to_dict(event: Any) -> dict:
    """An SDK SSE event model as the wire dict it was parsed from (for the SDK-iterator path)."""
    if isinstance(event, dict):
        return event
    if isinstance(event, str):  # google-genai hands back a data: payload that is not JSON as is
        return {"event_type": UNREADABLE, "data": event[:80]}
    raw = getattr(event, "raw", None)
    if isinstance(raw, dict):
        return raw
    # A required field the server left out dumps as null (exclude_none spares required fields):
    # e.g. the `result` of the real API's streamed google_search_result step. The wire had none.
    return _without_none(event.model_dump(mode="json", exclude_none=True, by_alias=True))


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


class _Step:
    """One step being assembled. Text arrives as many small chunks: they are kept in a list and
    joined only when the step is read, so a long answer costs linear time."""

    __slots__ = ("data", "content", "chunks", "summary", "args")

    def __init__(self, data: dict):
        self.data = data
        content = data.pop("content", None)
        self.content: Optional[list] = ([dict(c) for c in content] if isinstance(content, list)
                                        else None)
        self.chunks: Optional[list] = None  # open text item's chunks (last item of content)
        if self.content and self.content[-1].get("type") == "text":
            # text sent in step.start: the step's text deltas go on with it (one text item)
            self.chunks = [self.content[-1].get("text") or ""]
        summary = data.pop("summary", None)
        self.summary: Optional[list] = list(summary) if isinstance(summary, list) else None
        self.args: Optional[list] = None  # function_call arguments_delta fragments

    def _close_text(self) -> None:
        if self.chunks is not None:
            self.content[-1]["text"] = "".join(self.chunks)
            self.chunks = None

    def add_text(self, text: str) -> None:
        if self.chunks is None:
            if self.content is None:
                self.content = []
            self.content.append({"type": "text", "text": ""})
            self.chunks = []
        self.chunks.append(text)

    def add_content(self, item: dict) -> None:
        self._close_text()
        if self.content is None:
            self.content = []
        self.content.append(item)

    def add_annotations(self, annotations: list) -> None:
        self._close_text()
        if self.content and self.content[-1].get("type") == "text":
            self.content[-1].setdefault("annotations", []).extend(annotations)
            self.chunks = [self.content[-1]["text"]]  # later text still extends this item

    def apply(self, kind: str, delta: dict) -> Optional[str]:
        """A delta of this step other than answer text; returns the thought text it carried
        (None if it carried none), which the accumulator also keeps in arrival order."""
        if kind == "text":  # some servers stream a thought's text as plain text deltas
            text = delta.get("text") or ""
            if self.summary is None:
                self.summary = []
            self.summary.append({"type": "text", "text": text})
            return text
        if kind == "thought_summary":
            return self._add_summary(delta.get("content") or {})
        if kind == "thought_signature":
            self.data["signature"] = delta.get("signature")
        elif kind == "arguments_delta":
            if self.args is None:
                self.args = []
            self.args.append(delta.get("arguments") or "")
        elif kind == "text_annotation_delta":
            self.add_annotations(list(delta.get("annotations") or []))
        elif kind in _MEDIA_DELTAS:
            self.add_content(dict(delta))
        else:
            # Tool call/result deltas carry the step's own fields (arguments, result, ...).
            for k, v in delta.items():
                if k != "type":
                    self.data[k] = v
        return None

    def _add_summary(self, item: dict) -> Optional[str]:
        """A thought summary item; text extends the summary's last text item."""
        if "type" not in item and isinstance(item.get("text"), str):
            item = {"type": "text", **item}
        if self.summary is None:
            self.summary = []
        if self.summary and item.get("type") == "text" and self.summary[-1].get("type") == "text":
            self.summary[-1] = {**self.summary[-1],
                                "text": self.summary[-1]["text"] + (item.get("text") or "")}
        else:
            self.summary.append(dict(item))
        return (item.get("text") or "") if item.get("type") == "text" else None

    def materialize(self) -> dict:
        self._close_text()
        out = dict(self.data)
        if self.args is not None:
            joined = "".join(self.args)
            try:
                out["arguments"] = json.loads(joined) if joined.strip() else {}
            except ValueError:
                out["arguments"] = joined  # keep what came; the caller reports it
        if self.content is not None:
            out["content"] = [dict(c) for c in self.content]
        if self.summary is not None:
            out["summary"] = [dict(c) for c in self.summary]
        return out


class Accumulator:
    """Builds an interaction (as the wire dict) from Interactions SSE events.

    `feed(event)` accepts event dicts; readers use `.status`, `.id`, `.usage`, `.done`,
    `answer_text()` (all model text so far, for display), `thought_text()`, `text` (the SDK's
    `output_text` rule) and `interaction_dict()`.
    """

    def __init__(self) -> None:
        self.meta: dict = {}
        self.steps: dict[int, _Step] = {}
        self.order: list[int] = []
        self.usage: dict = {}
        self.error: Optional[dict] = None
        self.unreadable: Optional[str] = None  # the first data: payload that was not JSON
        self.skipped = 0  # data: payloads that were not JSON, skipped (the footer says so)
        self._inputs: set = set()  # indices of user_input steps the server listed (left out)
        self.done = False
        self.events = 0
        self.hops = 0
        self._offset = 0  # step index offset of the current continuation hop
        self._prev_usage: dict = {}  # usage summed over earlier continuation hops
        self._answer: list[str] = []  # model text chunks in arrival order
        self._answer_len = 0
        self._answer_cache = ("", 0)
        self._last_text_index: Optional[int] = None
        self._thoughts: list[str] = []

    # -- reading ---------------------------------------------------------------------------
    @property
    def id(self) -> Optional[str]:
        return self.meta.get("id")

    @property
    def status(self) -> Optional[str]:
        return self.meta.get("status")

    @property
    def model(self) -> Optional[str]:
        return self.meta.get("model")

    @property
    def continuation_token(self) -> Optional[str]:
        return self.meta.get("continuation_token")

    @property
    def needs_continuation(self) -> bool:
        return self.status == "requires_continuation" and bool(self.continuation_token)

    @property
    def answer_length(self) -> int:
        return self._answer_len

    def answer_text(self) -> str:
        """All model_output text so far, in order (steps separated by a blank line)."""
        text, n = self._answer_cache
        if n != len(self._answer):
            text = "".join(self._answer)
            self._answer = [text] if text else []
            self._answer_cache = (text, len(self._answer))
        return text

    def thought_text(self) -> str:
        return "".join(self._thoughts)

    @property
    def text(self) -> str:
        """The SDK's `output_text`: the trailing run of text of this turn."""
        return output_text(self.step_list())

    def step_list(self) -> list[dict]:
        return [self.steps[i].materialize() for i in self.order]

    def interaction_dict(self) -> dict:
        out = dict(self.meta)
        out["steps"] = self.step_list()
        if self.usage:
            out["usage"] = dict(self.usage)
        return out

    # -- feeding ---------------------------------------------------------------------------
    def feed(self, event: dict) -> None:
        check_shape(event)
        self.events += 1
        kind = event.get("event_type")
        if kind == "step.delta":
            self._delta(event)
        elif kind == "step.start":
            self._start(event)
        elif kind == "step.stop":
            self._stop(event)
        elif kind == "interaction.created":
            self._created(event["interaction"])
        elif kind == "interaction.status_update":
            self.meta["status"] = event.get("status")
            if event.get("usage"):
                self._set_usage(event["usage"])
        elif kind == "interaction.completed":
            self._completed(event["interaction"])
        elif kind == "error":
            self.error = event.get("error") or {"message": "unknown error"}
            self.done = True
        elif kind == UNREADABLE:
            self.skipped += 1
            if self.unreadable is None:
                self.unreadable = event.get("data") or ""
        # Unknown event types are ignored, as the SDKs do.

    def _created(self, inter: dict) -> None:
        self.hops += 1
        if self.hops > 1:
            self._offset = self._next_index()
            self._prev_usage = dict(self.usage)
            self.meta.pop("continuation_token", None)
        self._merge(inter)

    def _completed(self, inter: dict) -> None:
        self._merge(inter)
        steps = inter.get("steps")
        if isinstance(steps, list) and steps and not self.steps:
            # A server that sends the finished steps only here: take them as they are.
            for i, step in enumerate(steps):
                if isinstance(step, dict):
                    for event in step_events(i, step):
                        self.feed(event)
        if not self.needs_continuation:
            self.done = True

    def _merge(self, inter: dict) -> None:
        """An interaction head's fields into `meta` (a continuation hop keeps the first hop's
        previous_interaction_id and created), and its usage."""
        for k, v in inter.items():
            if k in ("steps", "usage") or v is None:
                continue
            if self.hops > 1 and k in ("previous_interaction_id", "created"):
                continue
            self.meta[k] = v
        if inter.get("usage"):
            self._set_usage(inter["usage"])

    def _set_usage(self, usage: dict) -> None:
        if self.hops > 1 and self._prev_usage:
            merged = dict(usage)
            for k, v in self._prev_usage.items():
                if isinstance(v, int) and isinstance(merged.get(k), int) and k != "initial_input_tokens":
                    merged[k] = merged[k] + v
                elif k not in merged:
                    merged[k] = v
            self.usage = merged
        else:
            self.usage = dict(usage)

    def _next_index(self) -> int:
        return max(max(self.steps, default=-1), max(self._inputs, default=-1)) + 1

    def _start(self, event: dict) -> None:
        index = event["index"] + self._offset
        step = event["step"]
        if step.get("type") == "user_input":  # the request echoed back: not part of the answer
            self._inputs.add(index)
            return
        st = _Step(dict(step))
        if index not in self.steps:
            self.order.append(index)
        self.steps[index] = st
        if st.summary and st.data.get("type") == "thought":  # summaries sent in step.start
            self._thoughts.extend(item.get("text") or "" for item in st.summary
                                  if isinstance(item, dict) and item.get("type") == "text")
        if st.content:
            for item in st.content:
                if item.get("type") == "text" and st.data.get("type") == "model_output":
                    self._answer_add(index, item.get("text") or "")

    def _get(self, event: dict) -> Optional[_Step]:
        index = event["index"] + self._offset
        st = self.steps.get(index)
        if st is None and index in self._inputs:
            return None
        if st is None:  # a delta without step.start: infer a model_output step
            st = _Step({"type": "model_output"})
            self.steps[index] = st
            self.order.append(index)
        return st

    def _answer_add(self, index: int, text: str) -> None:
        if not text:
            return
        if self._last_text_index is not None and self._last_text_index != index and self._answer_len:
            self._answer.append("\n\n")
            self._answer_len += 2
        self._last_text_index = index
        self._answer.append(text)
        self._answer_len += len(text)

    def _delta(self, event: dict) -> None:
        delta = event["delta"]
        usage = (event.get("metadata") or {}).get("total_usage")
        if usage:  # the interaction's usage so far (google-genai's StepDelta.metadata)
            self._set_usage(usage)
        st = self._get(event)
        if st is None:
            return
        kind = delta.get("type")
        if kind is None:  # Google's published deep-research stream leaves delta types out
            delta, kind = _typed_delta(delta)
        if kind == "text" and st.data.get("type") != "thought":
            text = delta.get("text") or ""
            st.add_text(text)
            self._answer_add(event["index"] + self._offset, text)
            return
        thought = st.apply(kind, delta)
        if thought is not None:
            self._thoughts.append(thought)

    def _stop(self, event: dict) -> None:
        st = self.steps.get(event["index"] + self._offset)
        if st is not None:
            st._close_text()
        if event.get("usage"):
            self._set_usage(event["usage"])

    # -- non-streaming ---------------------------------------------------------------------
    def feed_interaction(self, interaction: dict) -> None:
        """Replay a finished Interaction (wire dict) as the events that would have built it."""
        for event in interaction_events(interaction):
            self.feed(event)

    def add_step(self, step: dict) -> None:
        """Append a complete step (e.g. a function_result we sent) after every step so far, as
        the events that would have carried it."""
        index = self._next_index() - self._offset
        for event in step_events(index, step):
            self.feed(event)

    @classmethod
    def from_interaction(cls, interaction: dict) -> "Accumulator":
        acc = cls()
        acc.feed_interaction(interaction)
        return acc


def _typed_delta(delta: dict) -> tuple:
    """A delta without its `type`, typed by what it holds: `text` is answer text, `content`
    with text a thought summary (both as Google's docs stream them for agents)."""
    if isinstance(delta.get("text"), str):
        return {**delta, "type": "text"}, "text"
    content = delta.get("content")
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return {**delta, "type": "thought_summary",
                "content": {"type": "text", **content}}, "thought_summary"
    return delta, None


def split_start(event: dict) -> list:
    """A `step.start` that carries its first content or summary (as the real API sends them) as
    the bare start followed by the deltas that carry them; any other event as it is. Drivers
    feed these one by one, so observers see a new step before its text: the display finishes
    the earlier steps' text at that boundary, and must not take the new step's first words
    with it."""
    step = event.get("step") if event.get("event_type") == "step.start" else None
    if not isinstance(step, dict) or not (step.get("content") or step.get("summary")):
        return [event]
    if not isinstance(step.get("content") or [], list) or \
            not isinstance(step.get("summary") or [], list):
        return [event]  # not the shape we split; check_shape or the accumulator decide
    parts = list(step_events(event.get("index"), step))[:-1]  # without the step.stop
    parts[0] = {**event, "step": parts[0]["step"]}  # keep the event's other fields (event_id)
    return parts


def step_events(index: int, step: dict) -> Iterator[dict]:
    """The step.start / step.delta / step.stop events that carry one finished step."""
    step = dict(step)
    content = step.pop("content", None)
    summary = step.pop("summary", None)
    yield {"event_type": "step.start", "index": index, "step": step}
    for item in summary or []:
        yield {"event_type": "step.delta", "index": index,
               "delta": {"type": "thought_summary", "content": item}}
    for item in content or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "text":
            yield {"event_type": "step.delta", "index": index,
                   "delta": {"type": "text", "text": item.get("text") or ""}}
            if item.get("annotations"):
                yield {"event_type": "step.delta", "index": index,
                       "delta": {"type": "text_annotation_delta",
                                 "annotations": item["annotations"]}}
        else:
            yield {"event_type": "step.delta", "index": index, "delta": dict(item)}
    yield {"event_type": "step.stop", "index": index}


def interaction_events(interaction: dict) -> Iterator[dict]:
    """A finished Interaction (wire dict) as the stream of events that would have built it."""
    head = {k: v for k, v in interaction.items() if k not in ("steps", "usage")}
    yield {"event_type": "interaction.created", "interaction": head}
    for i, step in enumerate(interaction.get("steps") or []):
        if isinstance(step, dict):
            yield from step_events(i, step)
    tail = dict(head)
    if interaction.get("usage") is not None:
        tail["usage"] = interaction["usage"]
    yield {"event_type": "interaction.completed", "interaction": tail}


def output_text(steps: list[dict]) -> str:
    """google-genai's `output_text` rule: walk back from the end to the last user_input, skip
    thoughts, collect the trailing run of text items."""
    collected: list[str] = []
    for step in reversed(steps):
        kind = step.get("type")
        if kind == "user_input":
            break
        if kind == "thought":
            continue
        if kind != "model_output":
            if collected:
                break
            continue
        stop = False
        for item in reversed(step.get("content") or []):
            if item.get("type") == "text":
                collected.append(item.get("text") or "")
            elif collected:
                stop = True
                break
        if stop:
            break
    return "".join(reversed(collected))
