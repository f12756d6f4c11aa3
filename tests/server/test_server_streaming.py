"""Streaming: the full event sequence, typed by the SDK, framed as the real API frames it."""
from __future__ import annotations

import pytest
from strict import parse_sse, strict_event, streamed_text, text_pieces

from gemini_magics.server.event_ids import event_id, resume_position
from gemini_magics.server.turns import STREAM_SHAPE_ENV

# As Google's published streams show (the default, "delta"): a bare thought start, its
# signature in a thought_signature delta, a bare model_output start and every word in a delta.
# The other shape the real API sends ("start", a server option): the thought's signature and the
# answer's first text inside their step.start.
EXPECTED_ORDER = {
    "delta": [("interaction.created", None), ("interaction.status_update", None),
              ("step.start", "thought"), ("step.delta", "thought_signature"),
              ("step.stop", None), ("step.start", "model_output")],
    "start": [("interaction.created", None), ("interaction.status_update", None),
              ("step.start", "thought"), ("step.stop", None),
              ("step.start", "model_output")],
}


@pytest.fixture(params=["delta", "start"])
def shape(request, monkeypatch):
    """Each stream shape the server can send (read per turn from its environment)."""
    monkeypatch.setenv(STREAM_SHAPE_ENV, request.param)
    return request.param


def _shape(ev):
    kind = ev.event_type
    if kind == "step.start":
        return (kind, ev.step.type)
    if kind == "step.delta":
        return (kind, ev.delta.type)
    return (kind, None)


def test_sdk_stream_has_the_full_typed_sequence(client, shape):
    events = list(client.interactions.create(model="gemini-3.5-flash", input="Explain how AI works",
                                             stream=True))
    names = {type(e).__name__ for e in events}
    assert not any(n.startswith("Unknown") or n == "ErrorEvent" for n in names), names
    shapes = [_shape(e) for e in events]
    head = len(EXPECTED_ORDER[shape])
    assert shapes[:head] == EXPECTED_ORDER[shape]
    assert shapes[-2:] == [("step.stop", None), ("interaction.completed", None)]
    assert set(shapes[head:-2]) == {("step.delta", "text")}
    if shape == "start":
        assert events[2].step.signature and events[4].step.content[0].text == "Echo: "
    else:
        assert events[2].step.signature is None and events[3].delta.signature
        assert events[5].step.content is None and events[6].delta.text == "Echo: "
    ids = [e.event_id for e in events]
    assert all(ids) and len(set(ids)) == len(ids)
    thought = head - 3
    assert [e.index for e in events if e.event_type.startswith("step.")] == \
        [0] * thought + [1] * (len(events) - 3 - thought)

    text = streamed_text(events)
    assert text == "Echo: I saw 1 user turn and 0 model turns. You said: Explain how AI works"
    done = events[-1].interaction
    assert done.status == "completed"
    assert done.usage.total_output_tokens == len(text.split())
    created = events[0].interaction
    assert created.id == done.id and created.status == "in_progress" and created.model == "gemini-3.5-flash"


def test_each_word_is_one_delta(client, shape):
    events = list(client.interactions.create(model="m", input="/words 30", stream=True))
    assert text_pieces(events) == [f"w{i} " for i in range(1, 30)] + ["w30"]
    start = next(e for e in events if e.event_type == "step.start" and e.step.type == "model_output")
    if shape == "start":
        assert start.step.content[0].text == "w1 "  # the first word starts the step
    else:
        assert start.step.content is None  # every word, the first too, is a text delta
        deltas = [e.delta.text for e in events if e.event_type == "step.delta"
                  and e.delta.type == "text"]
        assert deltas[0] == "w1 " and len(deltas) == 30


def test_streamed_interaction_is_stored_with_the_same_text(client):
    events = list(client.interactions.create(model="m", input="remember me", stream=True))
    text = streamed_text(events)
    got = client.interactions.get(events[0].interaction.id)
    assert got.output_text == text
    assert got.status == "completed"


def test_stream_max_output_tokens_completes_as_incomplete(client):
    events = list(client.interactions.create(model="m", input="/words 40", stream=True,
                                             generation_config={"max_output_tokens": 3}))
    assert events[-1].interaction.status == "incomplete"
    assert len(text_pieces(events)) == 3


@pytest.mark.parametrize("how", ["body", "alt", "query"])
def test_wire_framing_and_strict_events(http, how):
    body = {"model": "m", "input": "frame me"}
    params = {}
    if how == "body":
        body["stream"] = True
    elif how == "alt":
        params["alt"] = "sse"
    else:
        params["stream"] = "true"
    with http.stream("POST", "/v1beta/interactions", json=body, params=params,
                     headers={"accept": "text/event-stream"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    pairs = parse_sse(text)
    for event_type, data in pairs:
        strict_event(event_type, data)
    assert [p[0] for p in pairs][:2] == ["interaction.created", "interaction.status_update"]
    assert pairs[-1][0] == "interaction.completed"


def test_async_sdk_stream(base_url):
    import asyncio

    from conftest import make_client

    async def run():
        c = make_client(base_url)
        stream = await c.aio.interactions.create(model="m", input="/words 5", stream=True)
        return [e async for e in stream]

    events = asyncio.run(run())
    assert events[-1].event_type == "interaction.completed"
    assert len(text_pieces(events)) == 5


def test_stream_ends_with_done_after_the_last_event(http):
    """Real streams end with `data: [DONE]`; the SDKs (and our client's parser) stop there."""
    from gemini_magics.stream import iter_sse_events

    with http.stream("POST", "/v1beta/interactions", json={"model": "m", "input": "/words 3",
                                                          "stream": True}) as r:
        text = r.read().decode()
    assert text.endswith("\n\ndata: [DONE]\n\n")
    assert text.count("[DONE]") == 1
    events = list(iter_sse_events(text.split("\n")))
    assert events[-1]["event_type"] == "interaction.completed"
    iid = events[0]["interaction"]["id"]
    replay = http.get(f"/v1beta/interactions/{iid}", params={"stream": "true"}).text
    assert replay == text  # a stored stream replays the same bytes, [DONE] included


def test_event_ids_are_opaque_and_resume_after_themselves(client, http):
    events = list(client.interactions.create(model="m", input="/words 6", stream=True))
    iid = events[0].interaction.id
    ids = [e.event_id for e in events]
    assert not any(i.isdigit() for i in ids)  # tokens, not counters
    assert ids == [event_id(iid, k) for k in range(1, len(ids) + 1)]
    cut = ids[4]
    rest = list(client.interactions.get(iid, stream=True, last_event_id=cut))
    assert [e.event_id for e in rest] == ids[5:]
    assert resume_position(cut, iid) == 5
    other = list(client.interactions.create(model="m", input="x", stream=True))
    r = http.get(f"/v1/interactions/{other[0].interaction.id}",
                 params={"stream": "true", "last_event_id": cut})
    assert r.status_code == 400
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "another interaction" in r.json()["error"]["message"]


def test_step_stop_carries_usage_and_the_total_matches(client):
    events = list(client.interactions.create(model="m", input="/words 7", stream=True))
    stops = [e for e in events if e.event_type == "step.stop"]
    assert all(s.usage is not None and s.step_usage is not None for s in stops)
    assert stops[0].step_usage.total_output_tokens == 0  # the thought
    assert stops[-1].step_usage.total_output_tokens == 7
    final = events[-1].interaction.usage
    assert stops[-1].usage.total_output_tokens == final.total_output_tokens == 7
    assert stops[-1].usage.total_input_tokens == final.total_input_tokens
