"""Text generation through the real SDK: the resource shape, input forms and generation options."""
from __future__ import annotations

import json

import pytest
from conftest import make_client
from strict import strict_interaction


def test_create_returns_a_strict_interaction_with_text(client, http):
    i = client.interactions.create(model="gemini-3.5-flash", input="Explain AI briefly")
    assert isinstance(i.output_text, str)
    assert i.output_text == "Echo: I saw 1 user turn and 0 model turns. You said: Explain AI briefly"
    assert i.status == "completed"
    assert i.model == "gemini-3.5-flash"
    assert i.id.startswith("v1_")
    assert [s.type for s in i.steps] == ["thought", "model_output"]
    assert i.steps[0].signature
    assert i.usage.total_output_tokens == len(i.output_text.split())
    assert i.usage.total_tokens == i.usage.total_input_tokens + i.usage.total_output_tokens

    raw = http.post("/v1beta/interactions", json={"model": "m", "input": "hi"})
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("application/json")
    body = raw.json()
    strict_interaction(body)
    assert body["object"] == "interaction"
    assert "previous_interaction_id" not in body
    assert "user_input" not in [s["type"] for s in body["steps"]]


@pytest.mark.parametrize("value, expected", [
    ("plain string", "plain string"),
    ({"type": "text", "text": "one content"}, "one content"),
    ([{"type": "text", "text": "two"}, {"type": "text", "text": "parts"}], "two\nparts"),
    ([{"type": "user_input", "content": [{"type": "text", "text": "a step"}]}], "a step"),
    ([{"type": "user_input", "content": "string content"}], "string content"),
    ([{"role": "user", "content": "a turn"}], "a turn"),
    ([{"role": "user", "content": "q1"}, {"role": "model", "content": "a1"},
      {"role": "user", "content": [{"type": "text", "text": "q2"}]}], "q2"),
])
def test_every_input_form_reaches_the_engine(http, value, expected):
    # Raw HTTP: the Python SDK refuses the [{role, content}] form locally, the JS SDK does not.
    r = http.post("/v1/interactions", json={"model": "m", "input": value})
    assert r.status_code == 200, r.text
    text = r.json()["steps"][-1]["content"][0]["text"]
    assert text.endswith("You said: " + expected)


def test_sdk_input_forms(client):
    for value in ("s", {"type": "text", "text": "s"}, [{"type": "text", "text": "s"}],
                  [{"type": "user_input", "content": [{"type": "text", "text": "s"}]}]):
        assert client.interactions.create(model="m", input=value).output_text.endswith("said: s")


def test_media_input_is_described_to_the_engine(client):
    i = client.interactions.create(model="m", input=[
        {"type": "text", "text": "What is this?"},
        {"type": "image", "data": "iVBORw0KGgo=", "mime_type": "image/png"},
    ])
    assert "What is this?" in i.output_text
    assert "[image/png image]" in i.output_text or "image" in i.output_text.lower()


def test_system_instruction_reaches_the_engine(client):
    i = client.interactions.create(model="m", input="hi", system_instruction="Be terse.")
    assert i.output_text.startswith('[system: "Be terse."]')
    assert i.system_instruction == "Be terse."


def test_max_output_tokens_ends_incomplete(client):
    i = client.interactions.create(model="m", input="/words 50",
                                   generation_config={"max_output_tokens": 5})
    assert i.status == "incomplete"
    assert i.output_text.split() == ["w1", "w2", "w3", "w4", "w5"]
    assert i.usage.total_output_tokens == 5


def test_stop_sequences_cut_the_reply(client):
    i = client.interactions.create(model="m", input="/words 50",
                                   generation_config={"stop_sequences": ["w4"]})
    assert i.status == "completed"
    assert i.output_text == "w1 w2 w3 "


def test_generation_parameters_reach_the_engine(client):
    i = client.interactions.create(model="m", input="/params", generation_config={
        "temperature": 0.3, "top_p": 0.8, "seed": 7, "max_output_tokens": 99})
    # (stop_sequences reach the engine too: test_stop_sequences_cut_the_reply)
    assert json.loads(i.output_text) == {"temperature": 0.3, "top_p": 0.8, "seed": 7,
                                         "max_output_tokens": 99, "stop_sequences": []}
    assert i.generation_config.seed == 7


def test_response_format_schema_gives_parsable_json(client):
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                                "items": {"type": "array",
                                                          "items": {"type": "string"}}},
              "required": ["name", "items"]}
    i = client.interactions.create(model="m", input="banana bread", response_format={
        "type": "text", "mime_type": "application/json", "schema": schema})
    data = json.loads(i.output_text)
    assert set(data) == {"name", "items"} and isinstance(data["items"], list)


def test_any_version_and_prefix(base_url):
    beta = make_client(base_url, api_version="v1beta")
    assert beta.interactions.create(model="m", input="x").output_text.endswith("said: x")
    prefixed = make_client(base_url + "/some/proxy/")
    assert prefixed.interactions.create(model="m", input="y").output_text.endswith("said: y")


def test_agent_is_echoed_instead_of_model(http):
    r = http.post("/v1beta/interactions", json={"agent": "my-agent", "input": "hello"})
    assert r.status_code == 200
    body = r.json()
    strict_interaction(body)
    assert body["agent"] == "my-agent" and "model" not in body


def test_echoed_request_fields_parse_strictly(http):
    r = http.post("/v1beta/interactions", json={
        "model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}],
        "labels": {"team": "a"}, "service_tier": "flex",
        "response_format": {"type": "text", "mime_type": "text/plain"}})
    assert r.status_code == 200
    strict_interaction(r.json())
