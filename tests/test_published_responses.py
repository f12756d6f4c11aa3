"""Published Interactions API responses (#13): our parsers against google-genai's own.

Every file in tests/data/published/ is a response body or SSE stream that Google published
(sources in SOURCES.md). Each test reads the same bytes twice: once with our code
(`stream.iter_sse_events` -> `Accumulator`, or `Accumulator.from_interaction`) and once with
the SDK's own parser (its SSE framing and event models, its `Interaction` and `Step` models),
read the straightforward way; the two readings must agree.
"""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from google.genai._gaos.types import interactions as T
from google.genai._gaos.utils import eventstreaming
from google.genai._gaos.utils.serializers import unmarshal_json
from google.genai._gaos.utils.unmarshal_json_response import unmarshal_json_response

from gemini_magics.stream import Accumulator, iter_sse_events

DATA = Path(__file__).parent / "data" / "published"
STEP_EXAMPLES = "api_step_examples.json"
MEDIA = ("image", "audio", "video", "document")

# migration_google_search.json publishes google_search_result.result as an object; the SDK's
# model expects a list and warns when dumping it back.
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")

# Published responses the accumulator reads differently from the SDK: name -> what differs.
XFAIL: dict[str, str] = {}
# By design the accumulator leaves out a `user_input` step the server lists (a GET's timeline
# starts with the prompt): it holds the model's turn, so the prompt is never shown as answer.
# The SDK keeps it; the comparisons drop it from the SDK's side.
_NOT_OURS = ("user_input",)


def _cases(pattern: str) -> list:
    return [pytest.param(p, id=p.name, marks=[pytest.mark.xfail(strict=True, reason=XFAIL[p.name])]
                         if p.name in XFAIL else [])
            for p in sorted(DATA.glob(pattern)) if p.name != STEP_EXAMPLES]


def _dump(model):
    return None if model is None else model.model_dump(mode="json", exclude_none=True, by_alias=True)


def _response(raw: bytes, content_type: str) -> httpx.Response:
    return httpx.Response(200, content=raw, headers={"content-type": content_type},
                          request=httpx.Request("POST", "https://example.invalid/v1beta/interactions"))


# -- the SDK's parsers, as interactions.create wires them (google/genai/_gaos/interactions.py) --

def sdk_events(raw: bytes) -> list:
    response = _response(raw, "text/event-stream")
    decode = lambda text: unmarshal_json_response(  # noqa: E731
        T.InteractionSSEStreamEvent, response, text, validate=False).data
    return list(eventstreaming.stream_events(response, decode, sentinel="[DONE]"))


def sdk_interaction(raw: bytes) -> T.Interaction:
    return unmarshal_json_response(T.Interaction, _response(raw, "application/json"), raw.decode(),
                                   validate=False)


# -- one comparable view of steps, from wire dicts -------------------------------------------

def _content(items) -> list:
    """Content items as (type, text or data), consecutive text items joined."""
    out: list = []
    for item in items or []:
        kind = item.get("type")
        value = item.get("text") if kind == "text" else item.get("data") or item.get("uri")
        if kind == "text" and out and out[-1][0] == "text":
            out[-1] = ("text", out[-1][1] + (value or ""))
        else:
            out.append((kind, value))
    return out


def step_view(step: dict) -> dict:
    view = {k: step.get(k) for k in ("type", "id", "name", "call_id", "signature", "arguments")}
    view["content"] = _content(step.get("content"))
    view["summary"] = "".join(i.get("text") or "" for i in step.get("summary") or []
                              if i.get("type") == "text")
    return view


def answer_of(views: list) -> str:
    """All model_output text, steps separated by a blank line (the accumulator's display rule)."""
    texts = ["".join(v for k, v in s["content"] if k == "text") for s in views
             if s["type"] == "model_output"]
    return "\n\n".join(t for t in texts if t)


# -- SSE: the SDK's events read the straightforward way --------------------------------------

def sdk_stream_view(events: list) -> dict:
    steps: dict[int, dict] = {}
    args: dict[int, str] = {}
    out = {"id": None, "status": None, "usage": None, "errors": [], "unreadable": 0}
    for ev in events:
        if isinstance(ev, str):  # a data: payload that is not JSON
            out["unreadable"] += 1
            continue
        kind = ev.event_type
        if kind == "step.start":
            steps[ev.index] = step_view(_dump(ev.step))
        elif kind == "step.delta":
            st, d = steps.setdefault(ev.index, step_view({"type": "model_output"})), ev.delta
            if d.type == "text":
                if st["content"] and st["content"][-1][0] == "text":
                    st["content"][-1] = ("text", st["content"][-1][1] + d.text)
                else:
                    st["content"].append(("text", d.text))
            elif d.type in MEDIA:
                st["content"].append((d.type, d.data or d.uri))
            elif d.type == "thought_summary":
                if getattr(d.content, "type", None) == "text":
                    st["summary"] += d.content.text or ""
            elif d.type == "arguments_delta" and st["type"] == "function_call":
                args[ev.index] = args.get(ev.index, "") + (d.arguments or "")
            else:  # thought_signature and the tool deltas carry the step's own fields
                for key in ("signature", "arguments", "name", "call_id"):
                    if getattr(d, key, None) is not None:
                        st[key] = _dump(getattr(d, key)) if key == "arguments" else getattr(d, key)
        elif kind == "step.stop":
            out["usage"] = _dump(ev.usage) or out["usage"]
        elif kind in ("interaction.created", "interaction.completed"):
            out["id"] = ev.interaction.id or out["id"]
            out["status"] = ev.interaction.status or out["status"]
            out["usage"] = _dump(ev.interaction.usage) or out["usage"]
        elif kind == "interaction.status_update":
            out["status"] = ev.status
        elif kind == "error":
            out["errors"].append(_dump(ev.error))
    for index, text in args.items():
        steps[index]["arguments"] = json.loads(text) if text.strip() else {}
    out["steps"] = [steps[i] for i in sorted(steps)]
    return out


def our_stream_view(raw: bytes) -> tuple[Accumulator, dict]:
    acc = Accumulator()
    for event in iter_sse_events(raw.decode().splitlines()):
        acc.feed(event)
    return acc, {"id": acc.id, "status": acc.status, "usage": acc.usage or None,
                 "steps": [step_view(s) for s in acc.step_list()]}


# Where we read MORE than the SDK, on purpose: Google's deep-research stream sends a text delta
# without its `type` and a thought summary whose content has no `type`; google-genai 3.x mistypes them (as an
# ArgumentsDelta and AudioContent) and loses both texts; we type them by what they hold.
# For these files the SDK's view is corrected to what the page shows before comparing.
READ_MORE = {"docs_streaming_agent.sse": (
    "# The Quantum Inflection Point", "***Generating research plan***")}


def _with_untyped_texts(raw: bytes, sdk: dict) -> dict:
    """The SDK's stream view with the untyped text and summary deltas read as the page means."""
    for line in raw.decode().splitlines():
        if not line.startswith("data:"):
            continue
        try:
            event = json.loads(line[5:])
        except ValueError:
            continue
        delta = event.get("delta") if isinstance(event, dict) else None
        if not isinstance(delta, dict):
            continue
        step = sdk["steps"][event.get("index")]
        content = delta.get("content")
        if "type" not in delta and isinstance(delta.get("text"), str):
            kind, text = step["content"][-1] if step["content"] else ("text", "")
            step["content"][-1:] = [(kind, text + delta["text"])]
        elif (delta.get("type") == "thought_summary" and isinstance(content, dict)
              and "type" not in content and isinstance(content.get("text"), str)):
            step["summary"] += content["text"]
    return sdk


@pytest.mark.parametrize("path", _cases("*.sse"))
def test_published_stream_reads_like_the_sdk(path):
    raw = path.read_bytes()
    sdk = sdk_stream_view(sdk_events(raw))
    acc, ours = our_stream_view(raw)
    if path.name in READ_MORE:
        sdk = _with_untyped_texts(raw, sdk)
        answer_start, thought_start = READ_MORE[path.name]
        assert acc.answer_text().startswith(answer_start)
        assert acc.thought_text().startswith(thought_start)
    assert [s["type"] for s in ours["steps"]] == [s["type"] for s in sdk["steps"]]
    assert ours["steps"] == sdk["steps"]
    assert acc.answer_text() == answer_of(sdk["steps"])
    assert acc.thought_text() == "".join(s["summary"] for s in sdk["steps"])
    assert (ours["id"], ours["status"], ours["usage"]) == (sdk["id"], sdk["status"], sdk["usage"])
    assert (acc.error is not None) == bool(sdk["errors"])
    for error in filter(None, sdk["errors"][-1:]):  # an error event with an error object
        assert {k: acc.error.get(k) for k in error} == error
    assert (acc.unreadable is not None) == bool(sdk["unreadable"])


# -- JSON bodies: the SDK's Interaction model against Accumulator.from_interaction -----------

@pytest.mark.parametrize("path", _cases("*.json"))
def test_published_body_reads_like_the_sdk(path):
    raw = path.read_bytes()
    sdk = sdk_interaction(raw)
    acc = Accumulator.from_interaction(json.loads(raw))
    sdk_steps = [_dump(s) for s in sdk.steps or [] if s.type not in _NOT_OURS]
    assert acc.step_list() == sdk_steps
    assert [step_view(s) for s in acc.step_list()] == [step_view(s) for s in sdk_steps]
    # A body the SDK only builds leniently (no status) gets no output_text; apply its own rule.
    sdk_text = sdk.output_text if sdk.output_text is not None else \
        sdk._populate_output_helpers().output_text
    assert acc.text == sdk_text
    assert acc.answer_text() == answer_of([step_view(s) for s in sdk_steps])
    assert acc.thought_text() == "".join(step_view(s)["summary"] for s in sdk_steps
                                         if s["type"] == "thought")
    assert (acc.usage or None) == _dump(sdk.usage)
    assert (acc.id, acc.status) == (sdk.id or None, sdk.status)


# -- the reference page's Step examples, one step each ----------------------------------------

STEPS = json.loads((DATA / STEP_EXAMPLES).read_text())


@pytest.mark.parametrize("name", list(STEPS), ids=[f"{STEP_EXAMPLES}:{n}" for n in STEPS])
def test_published_step_example_reads_like_the_sdk(name):
    step = STEPS[name]
    sdk = unmarshal_json(json.dumps(step), T.Step)
    acc = Accumulator()
    acc.add_step(step)
    if sdk.type in _NOT_OURS:
        assert acc.step_list() == [] and acc.answer_text() == ""
        return
    assert acc.step_list() == [_dump(sdk)]
    assert step_view(acc.step_list()[0]) == step_view(_dump(sdk))
