"""Streaming: the full event sequence, typed by the SDK, framed as the real API frames it."""
from __future__ import annotations

import pytest
from strict import parse_sse, strict_event

EXPECTED_ORDER = [
    ("interaction.created", None), ("interaction.status_update", None),
    ("step.start", "thought"), ("step.delta", "thought_signature"), ("step.stop", None),
    ("step.start", "model_output"),
]


def _shape(ev):
    kind = ev.event_type
    if kind == "step.start":
        return (kind, ev.step.type)
    if kind == "step.delta":
        return (kind, ev.delta.type)
    return (kind, None)


def test_sdk_stream_has_the_full_typed_sequence(client):
    events = list(client.interactions.create(model="gemini-3.5-flash", input="Explain how AI works",
                                             stream=True))
    names = {type(e).__name__ for e in events}
    assert not any(n.startswith("Unknown") or n == "ErrorEvent" for n in names), names
    shapes = [_shape(e) for e in events]
    assert shapes[:6] == EXPECTED_ORDER
    assert shapes[-2:] == [("step.stop", None), ("interaction.completed", None)]
    assert set(shapes[6:-2]) == {("step.delta", "text")}
    ids = [e.event_id for e in events]
    assert all(ids) and len(set(ids)) == len(ids)
    assert [e.index for e in events if e.event_type.startswith("step.")] == [0, 0, 0] + [1] * (len(events) - 6)

    text = "".join(e.delta.text for e in events if _shape(e) == ("step.delta", "text"))
    assert text == "Echo: I saw 1 user turn and 0 model turns. You said: Explain how AI works"
    done = events[-1].interaction
    assert done.status == "completed"
    assert done.usage.total_output_tokens == len(text.split())
    created = events[0].interaction
    assert created.id == done.id and created.status == "in_progress" and created.model == "gemini-3.5-flash"


def test_each_word_is_one_delta(client):
    events = list(client.interactions.create(model="m", input="/words 30", stream=True))
    deltas = [e.delta.text for e in events if _shape(e) == ("step.delta", "text")]
    assert deltas == [f"w{i} " for i in range(1, 30)] + ["w30"]


def test_streamed_interaction_is_stored_with_the_same_text(client):
    events = list(client.interactions.create(model="m", input="remember me", stream=True))
    text = "".join(e.delta.text for e in events if _shape(e) == ("step.delta", "text"))
    got = client.interactions.get(events[0].interaction.id)
    assert got.output_text == text
    assert got.status == "completed"


def test_stream_max_output_tokens_completes_as_incomplete(client):
    events = list(client.interactions.create(model="m", input="/words 40", stream=True,
                                             generation_config={"max_output_tokens": 3}))
    assert events[-1].interaction.status == "incomplete"
    assert sum(1 for e in events if _shape(e) == ("step.delta", "text")) == 3


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
    assert sum(1 for e in events if _shape(e) == ("step.delta", "text")) == 5
