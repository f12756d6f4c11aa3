"""The key server checks again with the real local LLM (slow). Never asserts what the model says."""
from __future__ import annotations

import time

import httpx
import pytest
from strict import parse_sse, streamed_text, strict_event, strict_interaction

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SHORT = {"max_output_tokens": 12}
STORY = "Write a long story about a dragon who learns to bake bread."


def test_create_is_strict_and_has_text(local_server):
    with httpx.Client(base_url=local_server.base_url, timeout=300) as h:
        r = h.post("/v1beta/interactions", json={"model": "gemini-3.5-flash", "input": "Say hello.",
                                                 "generation_config": SHORT})
    assert r.status_code == 200
    body = r.json()
    i = strict_interaction(body)
    assert i.status in ("completed", "incomplete")
    assert isinstance(i.output_text, str) and i.output_text.strip()
    assert 0 < body["usage"]["total_output_tokens"] <= 12


def test_stream_sequence_and_stored_text(local_client):
    events = list(local_client.interactions.create(model="m", input="Name three colours.",
                                                   stream=True, generation_config=SHORT))
    names = {type(e).__name__ for e in events}
    assert not any(n.startswith("Unknown") or n == "ErrorEvent" for n in names)
    kinds = [e.event_type for e in events]
    assert kinds[:3] == ["interaction.created", "interaction.status_update", "step.start"]
    assert kinds[-2:] == ["step.stop", "interaction.completed"]
    text = streamed_text(events)
    assert text.strip()
    stored = local_client.interactions.get(events[0].interaction.id)
    assert stored.output_text == text


def test_raw_stream_events_are_strict(local_server):
    with httpx.Client(base_url=local_server.base_url, timeout=300) as h:
        with h.stream("POST", "/v1/interactions", json={
                "model": "m", "input": "Hi", "stream": True, "generation_config": SHORT}) as r:
            for event_type, data in parse_sse(r.read().decode()):
                strict_event(event_type, data)


def test_stateful_turns_reach_the_model(local_client):
    first = local_client.interactions.create(model="m", input="My name is Ada.",
                                             generation_config=SHORT)
    second = local_client.interactions.create(model="m", input="What is my name?",
                                              previous_interaction_id=first.id,
                                              generation_config=SHORT)
    alone = local_client.interactions.create(model="m", input="What is my name?",
                                             generation_config=SHORT)
    # The second prompt carries the first turn (input and reply): it is longer than alone.
    assert second.usage.total_input_tokens > alone.usage.total_input_tokens
    assert second.output_text.strip()


def test_stateless_history_reaches_the_model(local_client):
    history = [{"type": "user_input", "content": [{"type": "text", "text": "I have 2 dogs."}]}]
    first = local_client.interactions.create(model="m", store=False, input=history,
                                             generation_config=SHORT)
    history += [s.model_dump() for s in first.steps]
    history.append({"type": "user_input", "content": [{"type": "text", "text": "How many paws?"}]})
    second = local_client.interactions.create(model="m", store=False, input=history,
                                              generation_config=SHORT)
    assert second.steps[-1].content[0].text.strip()
    assert second.usage.total_input_tokens > first.usage.total_input_tokens


def test_max_output_tokens_and_seed(local_client):
    cfg = {"max_output_tokens": 6, "temperature": 0.9, "seed": 42}
    a = local_client.interactions.create(model="m", input=STORY, generation_config=cfg,
                                         system_instruction="You are a storyteller.")
    b = local_client.interactions.create(model="m", input=STORY, generation_config=cfg,
                                         system_instruction="You are a storyteller.")
    assert a.status == "incomplete"
    assert a.usage.total_output_tokens == 6
    assert a.output_text == b.output_text  # same seed, same text


def test_background_cancel_keeps_partial_output(local_client):
    i = local_client.interactions.create(model="m", input=STORY, background=True,
                                         generation_config={"max_output_tokens": 400})
    assert i.status == "in_progress"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        got = local_client.interactions.get(i.id)
        if got.output_text.strip() or got.status != "in_progress":
            break
        time.sleep(0.1)
    cancelled = local_client.interactions.cancel(i.id)
    if got.status == "in_progress":
        assert cancelled.status == "cancelled"
        assert cancelled.output_text.startswith(got.output_text)
        assert cancelled.usage.total_output_tokens < 400
