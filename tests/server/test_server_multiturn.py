"""Multi-turn: stored chains by previous_interaction_id, stateless history, get/replay/delete."""
from __future__ import annotations

import pytest
from google.genai import _interactions as errors
from strict import parse_sse, strict_event, streamed_text, strict_interaction


def test_stateful_chain_sees_earlier_turns(client):
    i1 = client.interactions.create(model="m", input="I have 2 dogs in my house.")
    i2 = client.interactions.create(model="m", input="How many paws?", previous_interaction_id=i1.id)
    i3 = client.interactions.create(model="m", input="And cats?", previous_interaction_id=i2.id)
    assert i2.output_text == "Echo: I saw 2 user turns and 1 model turn. You said: How many paws?"
    assert i3.output_text.startswith("Echo: I saw 3 user turns and 2 model turns.")
    assert i3.previous_interaction_id == i2.id
    # steps are this turn's only
    assert [s.type for s in i3.steps] == ["thought", "model_output"]
    # a client can walk the chain back
    chain, cur = [], i3.id
    while cur:
        got = client.interactions.get(cur)
        chain.append(got.id)
        cur = got.previous_interaction_id
    assert chain == [i3.id, i2.id, i1.id]


def test_a_branch_does_not_see_its_siblings(client):
    root = client.interactions.create(model="m", input="root")
    client.interactions.create(model="m", input="branch a", previous_interaction_id=root.id)
    b = client.interactions.create(model="m", input="branch b", previous_interaction_id=root.id)
    assert b.output_text.startswith("Echo: I saw 2 user turns and 1 model turn.")


def test_stateful_chain_from_a_stream(client):
    events = list(client.interactions.create(model="m", input="first", stream=True))
    first_id = events[0].interaction.id
    events2 = list(client.interactions.create(model="m", input="second", stream=True,
                                              previous_interaction_id=first_id))
    assert streamed_text(events2).startswith("Echo: I saw 2 user turns and 1 model turn.")


def test_unknown_previous_id_is_404(client):
    with pytest.raises(errors.NotFoundError) as exc:
        client.interactions.create(model="m", input="x", previous_interaction_id="v1_nope")
    assert "previous_interaction_id" in str(exc.value)


def test_store_false_is_not_kept(client):
    i = client.interactions.create(model="m", input="secret", store=False)
    assert i.status == "completed"
    with pytest.raises(errors.NotFoundError):
        client.interactions.get(i.id)
    with pytest.raises(errors.NotFoundError):
        client.interactions.create(model="m", input="x", previous_interaction_id=i.id)


def test_stateless_history_with_model_dump_round_trip(client):
    history = [{"type": "user_input", "content": [{"type": "text", "text": "I have 2 dogs."}]}]
    i1 = client.interactions.create(model="m", store=False, input=history)
    for step in i1.steps:
        dumped = step.model_dump()  # as the quickstart does
        # Some SDK versions dump unset fields as explicit nulls: send them that way too.
        dumped.update({k: None for k in type(step).model_fields if k not in dumped})
        history.append(dumped)
    assert any(v is None for s in history[1:] for v in s.values())
    history.append({"type": "user_input", "content": [{"type": "text", "text": "How many paws?"}]})
    i2 = client.interactions.create(model="m", store=False, input=history)
    assert i2.steps[-1].content[0].text == \
        "Echo: I saw 2 user turns and 1 model turn. You said: How many paws?"


def test_stateless_history_with_function_call_steps(client):
    history = [
        {"type": "user_input", "content": [{"type": "text", "text": "Weather in London?"}]},
        {"type": "thought", "signature": "c2ln", "summary": None},
        {"type": "function_call", "id": "call_1", "name": "get_weather",
         "arguments": {"city": "London"}, "signature": None},
        {"type": "function_result", "call_id": "call_1", "name": "get_weather",
         "result": [{"type": "text", "text": '{"temp": 22}'}], "is_error": None},
    ]
    i = client.interactions.create(model="m", store=False, input=history)
    assert i.status == "completed"
    assert "2 user turns and 1 model turn" in i.output_text  # the call and its result were seen


def test_get_returns_the_whole_timeline_and_create_the_outputs(client, http):
    """As the real API: create answers with the output steps, get with the whole turn, its
    user_input first; the SDK's output_text is the same for both."""
    i = client.interactions.create(model="m", input="show my input")
    assert [s.type for s in i.steps] == ["thought", "model_output"]
    plain = client.interactions.get(i.id)
    assert [s.type for s in plain.steps] == ["user_input", "thought", "model_output"]
    assert plain.steps[0].content[0].text == "show my input"
    assert plain.output_text == i.output_text
    assert plain.input is None
    raw = http.get(f"/v1beta/interactions/{i.id}").json()
    strict_interaction(raw)
    assert raw["service_tier"] == "standard" and i.service_tier == "standard"
    flex = client.interactions.create(model="m", input="cheap", service_tier="flex")
    assert flex.service_tier == "flex"  # the tier asked for is the tier reported
    later = client.interactions.create(model="m", input="next", previous_interaction_id=i.id)
    got = client.interactions.get(later.id)  # this turn's input only, not the chain
    assert [s.type for s in got.steps] == ["user_input", "thought", "model_output"]
    assert got.steps[0].content[0].text == "next"
    assert client.interactions.cancel(later.id).steps[0].type == "thought"  # outputs only


def test_include_input(client, http):
    i = client.interactions.create(model="m", input="show my input")
    full = client.interactions.get(i.id, include_input=True)
    assert [s.type for s in full.steps] == ["user_input", "thought", "model_output"]
    assert full.output_text == i.output_text
    raw = http.get(f"/v1/interactions/{i.id}", params={"include_input": "true"}).json()
    strict_interaction(raw)
    assert raw["input"][0]["content"][0]["text"] == "show my input"


def test_get_stream_replays_stored_events(client, http):
    original = list(client.interactions.create(model="m", input="/words 10", stream=True))
    iid = original[0].interaction.id
    replay = list(client.interactions.get(iid, stream=True))
    assert [e.event_id for e in replay] == [e.event_id for e in original]
    assert [e.event_type for e in replay] == [e.event_type for e in original]
    cut = original[5].event_id
    rest = list(client.interactions.get(iid, stream=True, last_event_id=cut))
    assert [e.event_id for e in rest] == [e.event_id for e in original[6:]]

    with http.stream("GET", f"/v1beta/interactions/{iid}", params={"stream": "true"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for event_type, data in parse_sse(r.read().decode()):
            strict_event(event_type, data)


def test_delete(client, http):
    i = client.interactions.create(model="m", input="forget me")
    assert client.interactions.delete(i.id) is None
    with pytest.raises(errors.NotFoundError):
        client.interactions.get(i.id)
    with pytest.raises(errors.NotFoundError):
        client.interactions.delete(i.id)
    r = http.delete(f"/v1beta/interactions/{client.interactions.create(model='m', input='x').id}")
    assert r.status_code == 200 and r.json() == {}


def test_cancel_of_a_finished_interaction_returns_it_unchanged(client):
    i = client.interactions.create(model="m", input="done already")
    c = client.interactions.cancel(i.id)
    assert c.status == "completed" and c.output_text == i.output_text
    with pytest.raises(errors.NotFoundError):
        client.interactions.cancel("v1_unknown")
