"""The fast path (raw SSE read from the SDK's HTTP response) against the SDK's own iterator,
over real sockets: the same result from every step and delta kind, on the echo server and on a
scripted server. CI runs this file twice: on the newest google-genai (the venv's) and on the
oldest the package allows (.ci/run), so the fast path stays honest across the range.
"""
import copy

from gemini_magics import render, runner
from gemini_magics.client import Backend, get_client
from gemini_magics.request import Request
from gemini_magics.runner import run
from gemini_magics.session import Session

from magics_fixtures import (ScriptedServer, StreamWithoutResponse, scripted,  # noqa: F401
                             sse_events_for)
from test_stream import RICH, RICH_INTERACTION

# What the real API streams, beyond RICH: its user_input step, a thought summary and answer text
# already in step.start, a search result without `result`, usage in step.delta metadata and in
# step.stop, a data: line that is not JSON, and the `idle` status of google-genai 3.5+.
REAL = [
    {"event_type": "interaction.created",
     "interaction": {"id": "v1_real", "status": "in_progress", "object": "interaction", "model": "m"}},
    {"event_type": "interaction.status_update", "interaction_id": "v1_real", "status": "in_progress"},
    {"event_type": "step.start", "index": 0,
     "step": {"type": "user_input", "content": [{"type": "text", "text": "Who won in 1966?"}]}},
    {"event_type": "step.stop", "index": 0},
    {"event_type": "step.start", "index": 1,
     "step": {"type": "thought", "summary": [{"type": "text", "text": "Football. "}]}},
    {"event_type": "step.delta", "index": 1,
     "delta": {"type": "thought_summary", "content": {"type": "text", "text": "Search it."}}},
    {"event_type": "step.stop", "index": 1},
    {"event_type": "step.start", "index": 2, "step": {
        "type": "google_search_call", "id": "s1", "arguments": {"queries": ["1966 world cup"]}}},
    {"event_type": "step.stop", "index": 2},
    {"event_type": "step.start", "index": 3,
     "step": {"type": "google_search_result", "call_id": "s1", "signature": "c2ln"}},
    {"event_type": "step.stop", "index": 3},
    "{not json",
    {"event_type": "step.start", "index": 4,
     "step": {"type": "model_output", "content": [{"type": "text", "text": "England "}]}},
    {"event_type": "step.delta", "index": 4, "delta": {"type": "text", "text": "won."},
     "metadata": {"total_usage": {"total_tokens": 20, "total_output_tokens": 3}}},
    {"event_type": "step.stop", "index": 4,
     "usage": {"total_tokens": 21, "total_output_tokens": 4},
     "step_usage": {"total_output_tokens": 4}},
    {"event_type": "interaction.status_update", "interaction_id": "v1_real", "status": "idle"},
    {"event_type": "interaction.completed",
     "interaction": {"id": "v1_real", "status": "idle", "object": "interaction", "model": "m"}},
]


def _both(backend, request):
    fast = run(request, backend=backend, fast_stream=True)
    slow = run(request, backend=backend, fast_stream=False)
    return fast, slow


def _same(a, b):
    assert a.error is None and b.error is None
    assert a.interaction_data == b.interaction_data
    assert (a.text, a.answer, a.usage, a.id, a.status, a.thoughts) == \
        (b.text, b.answer, b.usage, b.id, b.status, b.thoughts)
    assert a.interaction.output_text == b.interaction.output_text == a.text

def test_fast_and_sdk_paths_agree_on_every_step_kind(scripted):
    scripted.script = [{"sse": RICH}]
    backend = Backend("custom", scripted.base_url, "k", 1, None)
    fast, slow = _both(backend, Request(text="hi", parts=["hi"]))
    _same(fast, slow)
    assert fast.interaction_data == RICH_INTERACTION


def test_fast_and_sdk_paths_agree_on_the_echo_server(base_url):
    backend = Backend("custom", base_url, "k", 1, None)
    fast, slow = _both(backend, Request(text="/words 300", parts=["/words 300"]))
    assert fast.id != slow.id
    for r in (fast, slow):  # ids, times and id-derived signatures differ between two runs
        for k in ("id", "created", "updated"):
            r.interaction_data.pop(k, None)
        for step in r.interaction_data["steps"]:
            step.pop("signature", None)
    fast.id = slow.id = None
    _same(fast, slow)
    assert fast.text == " ".join(f"w{i}" for i in range(1, 301))


def test_non_streaming_goes_through_the_same_accumulator(base_url):
    backend = Backend("custom", base_url, "k", 1, None)
    streamed = run(Request(text="hello", parts=["hello"]), backend=backend)
    whole = run(Request(text="hello", parts=["hello"], stream=False), backend=backend)
    assert whole.error is None and whole.text == streamed.text
    assert [s["type"] for s in whole.steps] == [s["type"] for s in streamed.steps]
    assert whole.interaction is not None and whole.interaction.output_text == whole.text


def test_continuation_hops_are_followed_like_the_sdk(scripted):
    hop1 = sse_events_for(["Hello "], ident="v1_h1", status="requires_continuation",
                          usage={"total_tokens": 5, "total_output_tokens": 1},
                          extra_completed={"continuation_token": "tok1"})
    hop2 = sse_events_for(["again"], ident="v1_h2",
                          usage={"total_tokens": 6, "total_output_tokens": 1})
    scripted.script = [{"sse": hop1}, {"sse": hop2}, {"sse": hop1}, {"sse": hop2}]
    backend = Backend("custom", scripted.base_url, "k", 1, None)
    fast, slow = _both(backend, Request(text="hi", parts=["hi"]))
    _same(fast, slow)
    assert fast.answer == "Hello \n\nagain" and fast.id == "v1_h2" and fast.status == "completed"
    assert fast.usage["total_tokens"] == 11
    second = scripted.requests[1]["body"]
    assert second["continuation_token"] == "tok1"
    assert second["previous_interaction_id"] == "v1_h1" and "input" not in second


def test_fast_and_sdk_paths_agree_on_what_the_real_api_streams(scripted):
    scripted.script = [{"sse": REAL}]
    backend = Backend("custom", scripted.base_url, "k", 1, None)
    fast, slow = _both(backend, Request(text="Who won in 1966?", parts=["Who won in 1966?"]))
    _same(fast, slow)
    # the prompt is not part of the answer, and `idle` is a finished turn
    assert fast.answer == fast.text == "England won." and fast.ok and fast.status == "idle"
    assert [s["type"] for s in fast.steps] == ["thought", "google_search_call",
                                                "google_search_result", "model_output"]
    assert fast.steps[-1]["content"] == [{"type": "text", "text": "England won."}]
    assert fast.thoughts == "Football. Search it."
    assert fast.usage == {"total_tokens": 21, "total_output_tokens": 4}  # step.stop's
    markdown, plain = render.markdown(fast)
    assert "Who won in 1966?" not in markdown
    assert "**Search results received**" in markdown and "0 received" not in markdown
    assert "1 unreadable event skipped" in markdown and "1 unreadable event skipped" in plain
    assert "1 unreadable event skipped" in render.footer_text(slow)


def test_without_the_raw_response_the_sdk_iterator_answers_with_one_note(base_url, monkeypatch):
    backend = Backend("custom", base_url, "k", 1, None)
    request = Request(text="/words 40", parts=["/words 40"])
    fast = run(request, backend=backend)
    client = get_client(backend)  # the client run() uses: its create() hands back the wrapper
    create = client.interactions.create
    monkeypatch.setattr(client.interactions, "create",
                        lambda **kw: StreamWithoutResponse(create(**kw)))
    session = Session()  # a session that has not said it yet
    first = run(request, backend=backend, session=session)
    second = run(request, backend=backend, session=session)
    assert first.error is None and first.text == fast.text == " ".join(f"w{i}" for i in range(1, 41))
    assert first.notes == [runner.FALLBACK_NOTE] and "\n" not in runner.FALLBACK_NOTE
    assert runner.FALLBACK_NOTE in render.markdown(first)[0]
    assert second.error is None and second.text == fast.text and second.notes == []  # said once


def test_the_sdk_reuses_its_model_classes_and_answers_stay_the_same(base_url):
    """google-genai builds a pydantic class per request and response (~25 ms of CPU per call):
    with the classes reused, a second identical call builds none, and answers are unchanged."""
    from google.genai._gaos.utils import serializers

    client = get_client(Backend("custom", base_url, "local-offline-no-key", 1, None))
    assert getattr(serializers.create_model, "reuses_classes", False)
    first = client.interactions.create(model="m", input="same words")
    events = list(client.interactions.create(model="m", input="same words", stream=True))
    built = len(serializers.create_model.classes)
    assert built >= 1
    second = client.interactions.create(model="m", input="same words")
    again = list(client.interactions.create(model="m", input="same words", stream=True))
    assert len(serializers.create_model.classes) == built  # nothing new for the same calls
    assert first.output_text == second.output_text and first.output_text.startswith("Echo:")
    assert [e.event_type for e in events] == [e.event_type for e in again]
