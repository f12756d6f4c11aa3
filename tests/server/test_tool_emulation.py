"""Offline built-in tools and constrained function calls for the local server.

The emulated steps and events are served over a real socket and parsed by the real SDK, and
also checked strictly against the SDK's own models (the SDK alone would accept them leniently).
The engine used for planning function calls is a deterministic fake LLM (a test double for the
model, not for the SDK); one slow test uses the real local model.
"""
from __future__ import annotations

import enum
import itertools
import json
import socket
from typing import Literal, Optional
from urllib.parse import urlparse

import jsonschema
import pytest
from pydantic import BaseModel, create_model
from strict import strict_event, streamed_text, strict_interaction
from test_tools import interaction, scripted_server, sdk_client

from gemini_magics.catalog import BUILTIN_TOOLS
from gemini_magics.functions import call_function, function_declaration, function_result_step
from gemini_magics.server.emulate import (OFFLINE_URL, describe_for_model, emulate_builtin_tool,
                                          offline_annotations)
from gemini_magics.server.engines.base import Engine, EngineRequest, EngineResult, GenerationParams
from gemini_magics.server.planning import function_call_schema, plan_function_call
from gemini_magics.server.sandbox import run_python_offline
from gemini_magics.server.turns import function_call_events, function_call_step, wire_events
from gemini_magics.tools import cite, parse_tools, render_step_markdown

PROMPT = "Who won the euro 2024? Check https://www.uefa.com/euro2024 and compute 12*7+3."


def ids():
    counter = itertools.count(1)
    return lambda: f"call_{next(counter)}"


def answer_with(steps: list[dict], text: str = "Spain won Euro 2024 (offline answer).") -> list[dict]:
    return steps + [{"type": "model_output", "content": [
        {"type": "text", "text": text, "annotations": offline_annotations(steps, text)}]}]


# --------------------------------------------------------------------------------------------
# Built-in tools
# --------------------------------------------------------------------------------------------

def test_google_search_emulation_matches_the_quickstart_shape():
    steps = emulate_builtin_tool("google_search", PROMPT, ids())
    assert steps[0] == {"type": "google_search_call", "id": "call_1",
                        "arguments": {"queries": ["Who won the euro 2024"]}}
    assert steps[1]["type"] == "google_search_result" and steps[1]["call_id"] == "call_1"
    assert "Offline emulation: no web search was made" in steps[1]["result"][0]["search_suggestions"]
    notes = offline_annotations(steps, "Spain won.")
    assert notes == [{"type": "url_citation", "url": "https://offline.invalid/search?q=Who+won+the+euro+2024",
                      "title": "Offline search (no network): Who won the euro 2024",
                      "start_index": 0, "end_index": 10}]


@pytest.mark.parametrize("tool", BUILTIN_TOOLS)
def test_every_tool_is_served_in_shapes_the_sdk_parses_strictly(tool):
    steps = answer_with(emulate_builtin_tool(tool, PROMPT, ids(), {"type": tool}))
    raw = interaction(steps)
    strict_interaction(raw)
    with scripted_server(lambda body: raw) as (url, bodies):
        c = sdk_client(url)
        i = c.interactions.create(model="gemini-3.5-flash", input=PROMPT, tools=[{"type": tool}])
    assert i.output_text == "Spain won Euro 2024 (offline answer)."
    assert [s.type for s in i.steps] == [s["type"] for s in steps]
    calls = [s for s in steps if s["type"].endswith("_call")]
    results = [s for s in steps if s["type"].endswith("_result")]
    assert [r["call_id"] for r in results] == [c["id"] for c in calls]
    for note in steps[-1]["content"][0]["annotations"]:
        assert urlparse(note.get("url") or note.get("document_uri")).hostname == "offline.invalid"
    shown = "\n".join(render_step_markdown(s) for s in i.steps)
    assert "offline" in shown.lower()


def test_streamed_tool_steps_are_strict_sdk_events():
    steps = answer_with([s for t in BUILTIN_TOOLS for s in emulate_builtin_tool(t, PROMPT, ids())])
    events = [{"event_type": "interaction.created",
               "interaction": {"id": "v1_s", "status": "in_progress", "object": "interaction", "model": "m"}}]
    for index, step in enumerate(steps[:-1]):
        events += wire_events(index, step)
    text = steps[-1]["content"][0]
    n = len(steps) - 1
    events += [{"event_type": "step.start", "index": n, "step": {"type": "model_output"}},
               {"event_type": "step.delta", "index": n, "delta": {"type": "text", "text": text["text"]}},
               {"event_type": "step.delta", "index": n,
                "delta": {"type": "text_annotation_delta", "annotations": text["annotations"]}},
               {"event_type": "step.stop", "index": n},
               {"event_type": "interaction.completed",
                "interaction": {"id": "v1_s", "status": "completed", "object": "interaction", "model": "m"}}]
    for k, e in enumerate(events):
        strict_event(e["event_type"], json.dumps({**e, "event_id": f"e{k}"}))
    with scripted_server(lambda body: events) as (url, _):
        c = sdk_client(url)
        got = list(c.interactions.create(model="gemini-3.5-flash", input=PROMPT, stream=True,
                                         tools=[{"type": t} for t in BUILTIN_TOOLS]))
    assert [e.event_type for e in got] == [e["event_type"] for e in events]
    deltas = [e.delta.type for e in got if e.event_type == "step.delta"]
    assert "google_search_call" in deltas and "code_execution_result" in deltas
    assert "google_search_result" not in deltas  # the real API streams no search result
    thoughts = [e.step for e in got if e.event_type == "step.start" and e.step.type == "thought"]
    assert "offline" in thoughts[0].summary[0].text  # computer use says so, in step.start
    signed = wire_events(3, {"type": "thought", "signature": "c2ln"})
    assert signed == [{"event_type": "step.start", "index": 3,
                       "step": {"type": "thought", "signature": "c2ln"}},
                      {"event_type": "step.stop", "index": 3}]


def test_code_execution_really_runs_a_template_from_the_prompt():
    call, result = emulate_builtin_tool("code_execution", "What is 12*7+3?", ids())
    assert call["arguments"]["language"] == "python"
    assert call["arguments"]["code"].endswith("print(12*7+3)\n")
    assert call["arguments"]["code"].startswith("# offline emulation")
    assert result == {"type": "code_execution_result", "call_id": call["id"], "result": "87\n"}
    assert "Its output was:\n87" in describe_for_model([call, result])

    _, words = emulate_builtin_tool("code_execution", "Say hello to the world", ids())
    assert words["result"] == "5 words, 22 characters\n"


def test_the_quickstart_agent_prompt_runs_a_fibonacci_template_that_writes_its_file():
    prompt = ("Write a Python script that generates the first 20 Fibonacci numbers and saves them to "
              "fibonacci.txt. Then read the file and print its contents.")
    call, result = emulate_builtin_tool("code_execution", prompt, ids())
    assert "open('fibonacci.txt', 'w')" in call["arguments"]["code"]
    numbers = [int(x) for x in result["result"].split()]
    assert numbers[:8] == [0, 1, 1, 2, 3, 5, 8, 13] and len(numbers) == 20 and numbers[-1] == 4181
    assert "is_error" not in result


@pytest.mark.parametrize("prompt, printed", [
    ("What is the sum of the squares of 1 to 10?", "385"),  # was `n = 1`, printing 1
    ("List the squares from 3 to 5", "9 16 25"),
    ("Add up the first 10 primes", "129"),
])
def test_code_templates_use_the_numbers_and_the_question_the_prompt_gives(prompt, printed):
    call, result = emulate_builtin_tool("code_execution", prompt, ids())
    assert result["result"].strip() == printed, call["arguments"]["code"]


def test_code_from_a_fenced_block_runs_and_errors_are_results():
    prompt = "Run this:\n```python\nprint(sum(range(10)))\nraise ValueError('boom')\n```"
    call, result = emulate_builtin_tool("code_execution", prompt, ids())
    assert call["arguments"]["code"] == "print(sum(range(10)))\nraise ValueError('boom')\n"
    assert result["is_error"] is True
    assert result["result"].startswith("45\nTraceback (most recent call last):\n  File \"main.py\", line 2")
    assert result["result"].endswith("ValueError: boom\n")


def test_executed_code_has_no_network_no_secrets_and_a_time_limit(monkeypatch):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        out, is_error = run_python_offline(
            "import _socket\ns = _socket.socket()\ns.settimeout(3)\n"
            f"s.connect(('127.0.0.1', {port}))\nprint('connected')\n")
    finally:
        listener.close()
    # a fresh network namespace: its own loopback, where nothing listens
    assert is_error and out.rstrip().endswith("ConnectionRefusedError: [Errno 111] Connection refused")

    monkeypatch.setenv("GEMINI_API_KEY", "sk-secret-value")
    out, is_error = run_python_offline("import os\nprint(sorted(os.environ))\n")
    assert not is_error and "GEMINI_API_KEY" not in out

    out, is_error = run_python_offline("while True:\n    pass\n", timeout=1)
    assert (out, is_error) == ("Execution stopped after 1 seconds (offline sandbox time limit).", True)


def test_url_context_reports_urls_as_not_fetched():
    call, result = emulate_builtin_tool("url_context", "Summarise https://a.example/x, and http://b.example.", ids())
    assert call["arguments"] == {"urls": ["https://a.example/x", "http://b.example"]}
    assert result["result"] == [{"url": "https://a.example/x", "status": "error"},
                                {"url": "http://b.example", "status": "error"}]
    notes = offline_annotations([call, result], "ok")
    assert [n["title"] for n in notes] == ["Not fetched (offline): https://a.example/x",
                                           "Not fetched (offline): http://b.example"]


def test_offline_citations_use_byte_offsets_and_render_as_numbers():
    steps = emulate_builtin_tool("google_maps", "Best café in Zürich", ids())
    text = "Try Café Sprüngli."
    notes = offline_annotations(steps, text)
    assert notes[0]["type"] == "place_citation" and notes[0]["end_index"] == len(text.encode())
    assert notes[0]["url"].startswith(OFFLINE_URL + "/maps/place/")
    assert cite(text, notes, markdown=False).startswith("Try Café Sprüngli.[1]\n\nSources:\n[1] Best café in Zürich (offline placeholder)")
    assert offline_annotations(steps, "") == []


def test_an_unknown_tool_gets_one_sentence():
    with pytest.raises(ValueError) as err:
        emulate_builtin_tool("mcp_server", "hi", ids())
    assert str(err.value) == (
        "The local server cannot emulate the tool 'mcp_server' offline; it emulates google_search, "
        "code_execution, url_context, google_maps, file_search, computer_use (set GEMINI_API_KEY for the real API).")


def test_emulation_never_opens_a_socket(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the emulation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for tool in BUILTIN_TOOLS:
        if tool != "code_execution":  # runs in its own process, checked above
            emulate_builtin_tool(tool, PROMPT, ids())


# --------------------------------------------------------------------------------------------
# Function calls
# --------------------------------------------------------------------------------------------

class ScriptedLLM(Engine):
    """A deterministic stand-in for the model: replies with fixed text, chunk by chunk."""

    name = "scripted"

    def __init__(self, reply: str, finish: str = "stop"):
        self.reply, self.finish, self.requests = reply, finish, []

    def generate(self, request: EngineRequest, on_text) -> EngineResult:
        self.requests.append(request)
        for i in range(0, len(self.reply), 5):
            if on_text(self.reply[i:i + 5]) is False:
                return EngineResult(self.reply[:i], 1, 1, "cancelled")
        return EngineResult(self.reply, 1, 1, self.finish)


def get_current_temperature(location: str, unit: str = "celsius"):
    """Gets the current temperature for a given location."""
    return {"location": location, "temperature": "22", "unit": unit}


def convert(amount: float, currency: str):
    """Convert an amount of money."""


TOOLS = [function_declaration(get_current_temperature), function_declaration(convert)]
MESSAGES = [{"role": "user", "content": "What is the temperature in London?"}]


def test_the_engine_is_asked_with_a_schema_and_its_choice_is_returned():
    llm = ScriptedLLM('{"name": "get_current_temperature", "arguments": {"location": "London"}}')
    chat = [{"role": "user", "content": "Hello, London!"}]  # about no function: may answer
    call = plan_function_call(llm, chat, TOOLS, model="gemini-3.5-flash")
    assert call == {"name": "get_current_temperature", "arguments": {"location": "London"}}
    request = llm.requests[0]
    assert request.model == "gemini-3.5-flash"
    assert request.messages[0]["role"] == "system" and "get_current_temperature" in request.messages[0]["content"]
    assert request.messages[1:] == chat
    assert request.params.max_output_tokens == 512
    options = request.json_schema["anyOf"]
    assert [o["properties"].get("name", {}).get("const") for o in options] == [
        "get_current_temperature", "convert", None]
    assert options[2] == {"type": "object", "properties": {"answer": {"const": True}},
                          "required": ["answer"], "additionalProperties": False}
    jsonschema.validate({"name": "convert", "arguments": {"amount": 3, "currency": "EUR"}}, request.json_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "convert", "arguments": {"amount": 3}}, request.json_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "convert", "arguments": {"amount": 3, "currency": "EUR", "x": 1}},
                            request.json_schema)


@pytest.mark.parametrize("reply, finish", [
    ('{"answer": true}', "stop"),
    ('{"name": "convert", "arguments": {"amount": "lots", "currency": "EUR"}}', "stop"),
    ('{"name": "launch", "arguments": {}}', "stop"),
    ('{"name": "convert", "argu', "length"),
])
def test_answers_and_invalid_replies_mean_no_call(reply, finish):
    assert plan_function_call(ScriptedLLM(reply, finish), MESSAGES, TOOLS) is None


@pytest.mark.parametrize("prompt, may_answer", [
    ("What is the temperature in London?", False), ("Convert 3 euros", False),
    ("Tell me a joke", True), ("What is the current time?", True),
    ("[function result get_current_temperature: 22]", True),
])
def test_a_question_about_a_function_gets_no_option_to_answer_instead(prompt, may_answer):
    """A small model's call-or-answer choice is a coin flip (the quickstart's weather question
    was answered without the function for some seeds); a real model calls the function the
    question is about, so then the schema has no "answer" option."""
    llm = ScriptedLLM('{"answer": true}')
    plan_function_call(llm, [{"role": "user", "content": prompt}], TOOLS)
    options = llm.requests[0].json_schema["anyOf"]
    assert ({"answer": {"const": True}} in [o["properties"] for o in options]) is may_answer


def test_tool_choice_is_respected():
    llm = ScriptedLLM('{"name": "convert", "arguments": {"amount": 1, "currency": "EUR"}}')
    assert plan_function_call(llm, MESSAGES, TOOLS, tool_choice="none") is None
    assert llm.requests == []
    plan_function_call(llm, MESSAGES, TOOLS, tool_choice="any")
    assert len(llm.requests[-1].json_schema["anyOf"]) == 2  # no "answer" option
    plan_function_call(llm, MESSAGES, TOOLS, tool_choice={"allowed_tools": {"mode": "any", "tools": ["convert"]}})
    assert llm.requests[-1].json_schema["properties"]["name"] == {"const": "convert"}


def test_cancel_stops_planning():
    llm = ScriptedLLM('{"name": "convert", "arguments": {"amount": 1, "currency": "EUR"}}')
    assert plan_function_call(llm, MESSAGES, TOOLS, on_text=lambda chunk: False) is None


class Place(BaseModel):
    city: str
    country: Optional[str] = None


PostalPlace = create_model("Place", zip=(int, ...))  # the same $defs name as Place, another shape


def test_defs_of_different_functions_do_not_collide():
    def weather(place: Place):
        """Weather."""

    def post(place: PostalPlace):
        """Post."""

    schema = function_call_schema([function_declaration(weather), function_declaration(post)])
    assert set(schema["$defs"]) == {"weather__Place", "post__Place"}
    jsonschema.validate({"name": "weather", "arguments": {"place": {"city": "Oslo"}}}, schema)
    jsonschema.validate({"name": "post", "arguments": {"place": {"zip": 1}}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "post", "arguments": {"place": {"city": "Oslo"}}}, schema)


def test_the_planning_schema_is_a_bounded_subset_of_each_function_schema():
    def tag(labels: list[str], note: str, level: Literal["a", "b"], extra: Optional[dict] = None):
        """Tag things."""

    params = function_declaration(tag)["parameters"]
    planned = function_call_schema([function_declaration(tag)], allow_answer=False)["properties"]["arguments"]
    assert planned["properties"]["labels"]["maxItems"] == 8
    assert planned["properties"]["labels"]["items"]["maxLength"] == 200
    assert "maxLength" not in planned["properties"]["level"]  # enums are bounded already
    assert planned["additionalProperties"] is False
    assert "maxItems" not in json.dumps(params)  # the declared schema is untouched
    jsonschema.validate({"labels": ["x"] * 8, "note": "n", "level": "a", "extra": {"k": 1}}, planned)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"labels": ["x"] * 9, "note": "n", "level": "a"}, planned)


def test_function_calls_stream_as_arguments_deltas_through_the_sdk():
    arguments = {"location": "São Paulo, \"Brasil\"", "unit": "celsius", "days": [1, 2, 3]}
    events = [{"event_type": "interaction.created",
               "interaction": {"id": "v1_f", "status": "in_progress", "object": "interaction", "model": "m"}}]
    events += function_call_events(0, "call_1", "get_current_temperature", arguments, fragment_chars=8)
    events.append({"event_type": "interaction.completed",
                   "interaction": {"id": "v1_f", "status": "requires_action", "object": "interaction", "model": "m"}})
    for k, e in enumerate(events):
        strict_event(e["event_type"], json.dumps({**e, "event_id": f"e{k}"}))
    with scripted_server(lambda body: events) as (url, _):
        c = sdk_client(url)
        got = list(c.interactions.create(model="gemini-3.5-flash", input="weather?", stream=True,
                                         tools=[function_declaration(get_current_temperature)]))
    start = got[1]
    assert start.event_type == "step.start" and start.step.type == "function_call"
    assert (start.step.id, start.step.name, start.step.arguments) == ("call_1", "get_current_temperature", {})
    fragments = [e.delta.arguments for e in got if e.event_type == "step.delta"]
    assert all(e.delta.type == "arguments_delta" for e in got if e.event_type == "step.delta")
    assert len(fragments) > 3
    assert json.loads("".join(fragments)) == arguments
    assert got[-2].event_type == "step.stop"
    assert got[-1].interaction.status == "requires_action"


def test_a_planned_call_served_whole_runs_with_call_function():
    llm = ScriptedLLM('{"name": "get_current_temperature", "arguments": {"location": "London"}}')
    planned = plan_function_call(llm, MESSAGES, TOOLS)
    raw = interaction([function_call_step("call_9", **planned)], status="requires_action")
    strict_interaction(raw)
    with scripted_server(lambda body: raw) as (url, _):
        c = sdk_client(url)
        i = c.interactions.create(model="gemini-3.5-flash", input="weather?", tools=TOOLS)
    step = i.steps[0]
    assert i.status == "requires_action"
    assert call_function(get_current_temperature, step.arguments, timeout=10) == (
        {"location": "London", "temperature": "22", "unit": "celsius"}, False)


# --------------------------------------------------------------------------------------------
# The real local model (slow)
# --------------------------------------------------------------------------------------------

class Unit(str, enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


def _local_engine():
    try:
        from gemini_magics.server.engines.local import LocalEngine, find_model
        find_model()
    except (ImportError, OSError, ValueError) as e:
        pytest.skip(f"local model unavailable: {e}")
    return LocalEngine()


@pytest.mark.slow
def test_the_local_model_always_produces_valid_arguments():
    def forecast(place: Place, unit: Unit, days: list[int], detail: Literal["short", "long"] = "short",
                 note: Optional[str] = None):
        """Weather forecast for a place."""
        return "ok"

    def book_hotel(city: str, nights: int, guests: list[Place], breakfast: bool = False):
        """Book a hotel."""
        return "booked"

    functions = {"forecast": forecast, "book_hotel": book_hotel}
    tools = [function_declaration(f) for f in functions.values()]
    assert "$defs" in tools[0]["parameters"] and "anyOf" in json.dumps(tools[0]["parameters"])
    engine = _local_engine()
    prompts = ["What will the weather be in Paris, France for the next 3 days?",
               "Book a hotel in Rome for 2 nights for Ann and Bob.",
               "Forecast for Tokyo in fahrenheit please."]
    calls = 0
    try:
        for seed, prompt in enumerate(prompts):
            call = plan_function_call(engine, [{"role": "user", "content": prompt}], tools,
                                      tool_choice="any", params=GenerationParams(seed=seed, temperature=0.9))
            assert call is not None, "a forced call must always parse and validate"
            decl = next(t for t in tools if t["name"] == call["name"])
            jsonschema.validate(call["arguments"], decl["parameters"])
            result, is_error = call_function(functions[call["name"]], call["arguments"], timeout=30)
            assert not is_error, result
            calls += 1
    finally:
        engine.close()
    assert calls == len(prompts)


# --------------------------------------------------------------------------------------------
# tools_producer inside the real local server (producers.pick_producer picks it for tool requests)
# --------------------------------------------------------------------------------------------

class ToolLLM(Engine):
    """A deterministic model: with a planning schema it calls the first allowed function with
    `{"location": "London"}`; asked to answer after a function result, it repeats the result
    it was given; without a schema, it answers with the last line of the user message."""

    name = "tool-llm"

    def generate(self, request: EngineRequest, on_text) -> EngineResult:
        last = [m["content"] for m in request.messages if m["role"] == "user"][-1]
        if (request.json_schema or {}).get("type") == "string":  # the answer after a result
            facts = [line for line in last.splitlines() if line.startswith("Result: ")]
            text = json.dumps("Answer: " + facts[-1].split(" returned ", 1)[1])
        elif request.json_schema is not None:
            options = request.json_schema.get("anyOf") or [request.json_schema]
            name = options[0]["properties"]["name"]["const"]
            text = json.dumps({"name": name, "arguments": {"location": "London"}})
        else:
            text = "Answer: " + last.splitlines()[-1]
        for i in range(0, len(text), 7):
            if on_text(text[i:i + 7]) is False:
                return EngineResult(text[:i], 1, 1, "cancelled")
        return EngineResult(text, 3, 2)


@pytest.fixture(scope="module")
def tool_server():
    from gemini_magics.server import start_server

    srv = start_server(engine=ToolLLM())
    try:
        yield srv
    finally:
        srv.stop()


WEATHER = [function_declaration(get_current_temperature)]


def _results(i):
    return [function_result_step(s, *call_function(get_current_temperature, s.arguments, timeout=10))
            for s in i.steps if s.type == "function_call"]


def test_quickstart_stateful_function_loop_on_the_local_server(tool_server):
    client = sdk_client(tool_server.base_url)
    user_input, previous_id, statuses = "What is the temperature in London?", None, []
    for _round in range(5):
        i = client.interactions.create(model="gemini-3.5-flash", input=user_input, tools=WEATHER,
                                       previous_interaction_id=previous_id)
        statuses.append(i.status)
        results = _results(i)
        if not results:
            break
        user_input, previous_id = results, i.id
    assert statuses == ["requires_action", "completed"]
    # the result reached the model as a fact, not as a marker to echo (function_answer)
    assert i.output_text == "Answer: location London, temperature 22, unit celsius."


def test_quickstart_stateless_function_loop_on_the_local_server(tool_server):
    client = sdk_client(tool_server.base_url)
    history = [{"type": "user_input", "content": [{"type": "text", "text": "What is the temperature in London?"}]}]
    for _round in range(5):
        i = client.interactions.create(model="gemini-3.5-flash", store=False, input=history, tools=WEATHER)
        results = _results(i)
        history.extend(step.model_dump() for step in i.steps)
        history.extend(results)
        if not results:
            break
    assert [s["type"] for s in history] == ["user_input", "function_call", "function_result", "model_output"]
    assert i.output_text == "Answer: location London, temperature 22, unit celsius."


def test_streamed_function_call_ends_in_requires_action(tool_server):
    client = sdk_client(tool_server.base_url)
    events = list(client.interactions.create(model="gemini-3.5-flash", input="Weather in London?",
                                             tools=WEATHER, stream=True))
    starts = [e for e in events if e.event_type == "step.start"]
    assert [s.step.type for s in starts] == ["function_call"]
    fragments = [e.delta.arguments for e in events if e.event_type == "step.delta"]
    assert json.loads("".join(fragments)) == {"location": "London"}
    assert events[-1].event_type == "interaction.completed"
    assert events[-1].interaction.status == "requires_action"


def test_emulated_search_streams_steps_and_offline_citations(tool_server):
    client = sdk_client(tool_server.base_url)
    events = list(client.interactions.create(model="gemini-3.5-flash", input="Who won the euro 2024?",
                                             tools=parse_tools("google_search,code_execution"), stream=True))
    kinds = [e.step.type for e in events if e.event_type == "step.start"]
    assert kinds == ["google_search_call", "google_search_result", "code_execution_call",
                     "code_execution_result", "model_output"]
    notes = [a for e in events if e.event_type == "step.delta" and e.delta.type == "text_annotation_delta"
             for a in e.delta.annotations]
    assert [urlparse(a.url).hostname for a in notes] == ["offline.invalid"]
    assert streamed_text(events).startswith("Answer: ")
    assert events[-1].interaction.status == "completed"

    i = client.interactions.create(model="gemini-3.5-flash", input="Who won the euro 2024?",
                                   tools=parse_tools("google_search"))
    assert [s.type for s in i.steps] == ["google_search_call", "google_search_result", "model_output"]
    assert i.steps[0].arguments.queries == ["Who won the euro 2024"]
    text = i.steps[-1].content[0]  # where the quickstart's citation loop reads them
    assert [a.url for a in text.annotations] == ["https://offline.invalid/search?q=Who+won+the+euro+2024"]
    assert text.annotations[0].end_index == len(i.output_text.encode())
    assert "[[1]](https://offline.invalid/search?q=Who+won+the+euro+2024)" in render_step_markdown(i.steps[-1])


def test_served_tool_steps_are_signed_and_the_search_result_streams_empty(tool_server):
    """Like the real API: built-in tool steps carry a signature (the call's in its delta), and
    a google_search_result's step.start has an empty result with no delta: its
    search_suggestions come with get (or a non-streaming create)."""
    client = sdk_client(tool_server.base_url)
    events = list(client.interactions.create(model="gemini-3.5-flash", input="Who won the euro 2024?",
                                             tools=parse_tools("google_search,code_execution"), stream=True))
    by_index: dict = {}
    for e in events:
        if e.event_type in ("step.start", "step.delta"):
            by_index.setdefault(e.index, []).append(e)
    search_call, search_result = by_index[0], by_index[1]
    assert search_call[1].delta.type == "google_search_call" and search_call[1].delta.signature
    assert [e.event_type for e in search_result] == ["step.start"]
    assert search_result[0].step.result == [] and search_result[0].step.signature
    code_call = by_index[2]
    assert code_call[1].delta.signature and code_call[1].delta.arguments.code
    got = client.interactions.get(events[0].interaction.id)
    steps = [s for s in got.steps if s.type != "user_input"]
    assert all(s.signature for s in steps[:4])
    assert len({s.signature for s in steps[:4]}) == 4
    assert "Offline emulation" in steps[1].result[0].search_suggestions
    assert steps[1].signature == search_result[0].step.signature
