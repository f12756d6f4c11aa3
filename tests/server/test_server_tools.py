"""Tools, function calls, structured output and agents on the wired local server (issue #6).

Everything goes through the real google-genai SDK over a real socket. The echo engine answers
the fast tests deterministically: with a JSON schema it replies with a small instance of it, so
a function-planning schema makes it call the first allowed function with its string arguments
set to the user's text. The slow tests use the real local model and check only what constrained
decoding guarantees (valid arguments, valid JSON), never what the model says.
"""
from __future__ import annotations

import json
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Literal, Optional
from urllib.parse import urlparse

import jsonschema
import pytest
from conftest import make_client, sdk_env
from pydantic import BaseModel, Field
from strict import parse_sse, strict_event, strict_interaction, streamed_text

from gemini_magics.functions import call_function, function_declaration, function_result_step

SEEDS = Path(__file__).parent / "seed_examples"

WEATHER = {
    "type": "function", "name": "get_current_temperature",
    "description": "Gets the current temperature for a given location.",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                   "required": ["location"]},
}


def run_seed(name: str, base_url: str, timeout: float = 120) -> str:
    proc = subprocess.run([sys.executable, str(SEEDS / name)], env=sdk_env(base_url),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# --------------------------------------------------------------------------------------------
# The quickstart's sections 7-11, unchanged
# --------------------------------------------------------------------------------------------

def test_quickstart_structured_output(base_url):
    out = run_seed("structured_output.py", base_url)
    assert out.startswith("recipe_name='Give me a recipe for banana bread' ingredients=[")


def test_quickstart_search_prints_offline_citations(base_url):
    out = run_seed("search.py", base_url)
    answer, citations = out.split("\nCitations:\n")
    assert "offline" in answer.lower()
    assert citations.strip() == ("[Offline search (no network): Who won the euro 2024]"
                                 "(https://offline.invalid/search?q=Who+won+the+euro+2024)")


@pytest.mark.parametrize("seed", ["functions_stateful.py", "functions_stateless.py"])
def test_quickstart_function_calling(base_url, seed):
    out = run_seed(seed, base_url).splitlines()
    assert out[0].startswith("Called get_current_temperature({'location': ")
    assert "'temperature': '22', 'unit': 'celsius'}" in out[0]
    assert out[1].startswith("Echo: I saw 2 user turns and 1 model turn. You said: [function "
                             "result get_current_temperature:")


def test_quickstart_agent(base_url):
    out = run_seed("agent.py", base_url)
    assert out.startswith("Environment: env_")
    assert "\n0\n1\n1\n2\n3\n5\n8\n" in out  # the offline sandbox really ran the script
    assert "4181" in out


def test_quickstart_background(base_url):
    out = run_seed("background.py", base_url)
    assert "Status: in_progress" in out and "Result:\nEcho:" in out


# --------------------------------------------------------------------------------------------
# Function calls
# --------------------------------------------------------------------------------------------

def test_function_call_streams_as_arguments_deltas_and_requires_action(client):
    events = list(client.interactions.create(model="m", input="Temperature in London?",
                                             tools=[WEATHER], stream=True))
    starts = [e for e in events if e.event_type == "step.start"]
    assert [s.step.type for s in starts] == ["function_call"]
    call = starts[0].step
    assert call.name == "get_current_temperature" and call.id and call.arguments == {}
    fragments = [e.delta.arguments for e in events if e.event_type == "step.delta"]
    assert all(e.delta.type == "arguments_delta" for e in events if e.event_type == "step.delta")
    assert json.loads("".join(fragments)) == {"location": "Temperature in London?"}
    assert events[-2].event_type == "step.stop"
    assert events[-1].event_type == "interaction.completed"
    assert events[-1].interaction.status == "requires_action"


def test_function_call_events_are_strict(http):
    r = http.post("/v1beta/interactions", json={"model": "m", "input": "London?", "stream": True,
                                                "tools": [WEATHER]})
    for event_type, data in parse_sse(r.text):
        strict_event(event_type, data)


def _answer(call, value):
    return function_result_step(call, value)


def test_function_result_turn_answers_stateful_and_stateless(client):
    first = client.interactions.create(model="m", input="London?", tools=[WEATHER])
    strict_interaction(first.model_dump(mode="json", exclude_none=True))
    assert first.status == "requires_action"
    (call,) = [s for s in first.steps if s.type == "function_call"]
    result = _answer(call, {"temp": 20})

    stateful = client.interactions.create(model="m", input=[result], tools=[WEATHER],
                                          previous_interaction_id=first.id)
    assert stateful.status == "completed"
    assert stateful.output_text.endswith('You said: [function result get_current_temperature: '
                                         '{"temp": 20}]')

    history = [{"type": "user_input", "content": [{"type": "text", "text": "London?"}]}]
    history += [s.model_dump() for s in first.steps] + [result]
    stateless = client.interactions.create(model="m", store=False, input=history, tools=[WEATHER])
    assert stateless.output_text == stateful.output_text
    assert [s.type for s in stateless.steps] == ["model_output"]


def test_tool_choice_none_answers_without_calling(client):
    i = client.interactions.create(model="m", input="London?", tools=[WEATHER],
                                   generation_config={"tool_choice": "none"})
    assert i.status == "completed" and not [s for s in i.steps if s.type == "function_call"]


def test_declarations_from_python_functions_round_trip(client):
    def convert(amount: float, currency: Literal["EUR", "USD"] = "EUR") -> str:
        """Convert an amount."""
        return f"{amount} {currency}"

    decl = function_declaration(convert)
    i = client.interactions.create(model="m", input="100 please", tools=[decl])
    (call,) = [s for s in i.steps if s.type == "function_call"]
    jsonschema.validate(call.arguments, decl["parameters"])
    value, is_error = call_function(convert, call.arguments, timeout=5)
    # a number parameter takes a number the question states (planning.pin_numbers)
    assert not is_error and value.startswith("100.0 ")


# --------------------------------------------------------------------------------------------
# Built-in tools
# --------------------------------------------------------------------------------------------

def test_citations_sit_on_the_text_item_streaming_and_not(client):
    tools = [{"type": "google_search"}, {"type": "url_context"}]
    prompt = "Read https://example.com/a and tell me who won"
    i = client.interactions.create(model="m", input=prompt, tools=tools)
    strict_interaction(i.model_dump(mode="json", exclude_none=True))
    assert [s.type for s in i.steps] == ["google_search_call", "google_search_result",
                                         "url_context_call", "url_context_result", "model_output"]
    text = i.steps[-1].content[0]
    assert [a.type for a in text.annotations] == ["url_citation", "url_citation"]
    assert {urlparse(a.url).hostname for a in text.annotations} == {"offline.invalid"}
    assert text.annotations[0].end_index == len(text.text.encode("utf-8"))
    assert i.steps[3].result[0].status == "error"  # not fetched: offline

    events = list(client.interactions.create(model="m", input=prompt, tools=tools, stream=True))
    notes = [e for e in events if e.event_type == "step.delta"
             and e.delta.type == "text_annotation_delta"]
    assert len(notes) == 1 and len(notes[0].delta.annotations) == 2
    stored = client.interactions.get(events[-1].interaction.id)
    assert stored.steps[-1].content[0].annotations[0].title.startswith("Offline search")


def test_code_execution_really_runs_offline(client):
    i = client.interactions.create(model="m", input="What is 12*7+3?",
                                   tools=[{"type": "code_execution"}])
    call, result = i.steps[0], i.steps[1]
    assert call.type == "code_execution_call" and "print(12*7+3)" in call.arguments.code
    assert result.type == "code_execution_result" and result.result.strip() == "87"


def test_tools_and_functions_together_call_the_function_first(client):
    i = client.interactions.create(model="m", input="London?",
                                   tools=[{"type": "google_search"}, WEATHER])
    assert i.status == "requires_action" and i.steps[-1].type == "function_call"


# --------------------------------------------------------------------------------------------
# Structured output
# --------------------------------------------------------------------------------------------

class Unit(str, Enum):
    celsius = "celsius"
    fahrenheit = "fahrenheit"


class Reading(BaseModel):
    city: str
    unit: Unit
    values: list[float] = Field(max_length=5)
    note: Optional[str] = None


def test_schema_output_validates_streaming_and_not(client):
    rf = {"type": "text", "mime_type": "application/json", "schema": Reading.model_json_schema()}
    i = client.interactions.create(model="m", input="Paris", response_format=rf)
    Reading.model_validate_json(i.output_text)
    events = list(client.interactions.create(model="m", input="Paris", response_format=rf,
                                             stream=True))
    assert Reading.model_validate_json(streamed_text(events)).unit is Unit.celsius


# --------------------------------------------------------------------------------------------
# Agents
# --------------------------------------------------------------------------------------------

def test_agent_gets_an_environment_id_and_shows_steps(client):
    i = client.interactions.create(agent="antigravity-preview-05-2026", input="What is 6*7?",
                                   environment="remote")
    strict_interaction(i.model_dump(mode="json", exclude_none=True))
    assert i.environment_id.startswith("env_") and i.agent == "antigravity-preview-05-2026"
    kinds = [s.type for s in i.steps]
    assert kinds == ["thought", "code_execution_call", "code_execution_result", "model_output"]
    assert "[offline]" in i.steps[0].summary[0].text
    assert i.steps[2].result.strip() == "42"

    again = client.interactions.create(agent="antigravity-preview-05-2026", input="And 7*8?",
                                       environment=i.environment_id,
                                       previous_interaction_id=i.id)
    assert again.environment_id == i.environment_id

    events = list(client.interactions.create(agent="antigravity-preview-05-2026", input="1+1",
                                             environment="remote", stream=True))
    assert events[-1].interaction.environment_id.startswith("env_")


def test_agent_without_environment_has_no_environment_id(client):
    i = client.interactions.create(agent="my-agent", input="hello")
    assert i.environment_id is None and i.status == "completed"


def test_background_agent_is_polled_to_completion(client):
    import time

    i = client.interactions.create(agent="antigravity-preview-05-2026", input="2+2",
                                   environment="remote", background=True)
    deadline = time.monotonic() + 30
    while i.status not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.05)
        i = client.interactions.get(i.id)
    assert i.status == "completed" and i.environment_id.startswith("env_")


# --------------------------------------------------------------------------------------------
# Bad input: one sentence, 400
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, words", [
    ({"tools": [{"type": "retrieval"}]}, "cannot emulate offline"),
    ({"tools": [{"type": "function"}]}, "'tools[0].name' is required"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {"type": "objekt"}}]},
     "'tools[0].parameters' is not a valid JSON schema"),
    ({"response_format": {"type": "text", "schema": {"type": 5}}},
     "'response_format.schema' is not a valid JSON schema"),
    ({"environment": 3}, "'environment' must be"),
])
def test_bad_tools_schemas_and_environments_are_400(http, body, words):
    r = http.post("/v1beta/interactions", json={"model": "m", "input": "x", **body})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert words in message and message.count(". ") == 0


# --------------------------------------------------------------------------------------------
# The real local model (slow): constrained decoding always validates
# --------------------------------------------------------------------------------------------

class Place(BaseModel):
    name: str
    country: Optional[str] = None


class Trip(BaseModel):
    """A trip plan."""
    destination: Place
    days: int = Field(ge=1, le=14)
    mode: Literal["train", "plane", "car"]
    stops: list[Place] = Field(default_factory=list, max_length=3)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_local_model_schema_output_always_validates(local_client):
    rf = {"type": "text", "mime_type": "application/json", "schema": Trip.model_json_schema()}
    assert "$defs" in rf["schema"]
    for prompt in ("Plan a train trip to Rome.", "Three days by car in Norway, two stops."):
        # Greedy decoding, so whether the JSON closes within the token limit does not depend on
        # sampling (a cut-off answer is incomplete, not invalid, and cannot validate).
        i = local_client.interactions.create(model="m", input=prompt, response_format=rf,
                                             generation_config={"max_output_tokens": 400,
                                                                "temperature": 0})
        Trip.model_validate_json(i.output_text)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_local_model_runs_the_quickstart_function_loop(local_server):
    out = run_seed("functions_stateful.py", local_server.base_url, timeout=800).splitlines()
    called = [line for line in out if line.startswith("Called ")]
    assert called and all("get_current_temperature({'location': " in c for c in called)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_local_model_agent_and_search_run(local_server):
    client = make_client(local_server.base_url)
    i = client.interactions.create(agent="antigravity-preview-05-2026", environment="remote",
                                   input="Compute 2**10 and tell me the result.")
    assert i.environment_id and i.steps[2].result.strip() == "1024"
    s = client.interactions.create(model="m", input="Who won the euro 2024?",
                                   tools=[{"type": "google_search"}],
                                   generation_config={"max_output_tokens": 60})
    assert s.steps[-1].content[0].annotations[0].url.startswith("https://offline.invalid/")
