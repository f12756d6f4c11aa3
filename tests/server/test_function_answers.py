"""The answer after a function result states the result (issue #15).

Fast tests: the answering turn's prompt, constraint and fallback (a scripted engine), and the
echo engine's unchanged view. Slow tests: the notebooks' function examples through the real
SDK against a local server with the real model; they assert only that the answer contains the
result's value and no `[function` marker, never anything else the model says.
"""
from __future__ import annotations

import json
import re

import pytest

from gemini_magics.functions import call_function, function_declaration, function_result_step
from gemini_magics.server.engines.base import Engine, EngineRequest, EngineResult
from gemini_magics.server.planning import pin_numbers, plan_function_call, question_numbers
from gemini_magics.server.producers.function_answer import answer_pattern, facts_of


def get_current_temperature(location: str) -> dict:
    """Gets the current temperature for a given location.

    Args:
        location: The city name, e.g. San Francisco
    """
    return {"location": location, "temperature": "22", "unit": "celsius"}


def multiply(a: float, b: float) -> float:
    """Multiplies two numbers exactly."""
    return a * b


def grade_to_letter(score: int) -> str:
    """Converts a numeric score from 0 to 100 to a letter grade."""
    return "A" if score >= 90 else "B" if score >= 80 else "C" if score >= 70 else "F"


def renderings(value) -> list[str]:
    """The common ways to write a value: 7006652.0 as 7006652 or 7,006,652; "22" as 22."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    out = [str(value)]
    if isinstance(value, int) and abs(value) >= 1000:
        out.append(f"{value:,}")
    return out


def states(text: str, value) -> bool:
    """The answer holds the value as a word of its own and no internal result marker."""
    return "[function" not in text and any(
        re.search(rf"(?<![0-9A-Za-z]){re.escape(r)}(?![0-9A-Za-z])", text) for r in renderings(value))


# --------------------------------------------------------------------------------------------
# Fast: the answering turn, with a scripted engine
# --------------------------------------------------------------------------------------------

class Scripted(Engine):
    """Replies with fixed text to every request (a planning reply first, if given)."""

    name = "scripted"

    def __init__(self, answer: str, plan: str | None = None):
        self.answer, self.plan, self.requests = answer, plan, []

    def generate(self, request: EngineRequest, on_text) -> EngineResult:
        self.requests.append(request)
        text = self.plan if self.plan and len(self.requests) == 1 else self.answer
        on_text(text)
        return EngineResult(text, 10, 5)


CALL = {"type": "function_call", "id": "call_1", "name": "multiply", "arguments": {"a": 1234, "b": 5678}}
QUESTION = {"type": "user_input", "content": [{"type": "text", "text": "What is 1234 times 5678?"}]}
RESULT = function_result_step(CALL, 7006652.0)


def _answer_with(engine, steps=None, tools=True):
    """One stateless answering turn on a server with `engine`: (answer text, engine)."""
    from google import genai

    from gemini_magics.server import start_server

    srv = start_server(engine=engine)
    try:
        client = genai.Client(api_key="dummy", http_options={"base_url": srv.base_url})
        i = client.interactions.create(model="gemini-3.5-flash", store=False,
                                       input=steps or [QUESTION, CALL, RESULT],
                                       tools=[function_declaration(multiply)] if tools else None)
        assert i.status == "completed"
        return i.output_text, engine
    finally:
        srv.stop()


@pytest.mark.parametrize("tools", [True, False])
def test_the_model_is_told_the_result_as_a_fact_and_must_state_it(tools):
    text, engine = _answer_with(Scripted(json.dumps("1234 times 5678 is 7006652.")), tools=tools)
    assert text == "1234 times 5678 is 7006652."
    (request,) = engine.requests
    prompt = request.messages[-1]["content"]
    assert "[function" not in prompt
    assert prompt.startswith("What is 1234 times 5678?")
    assert "Result: multiply(a=1234, b=5678) returned 7006652." in prompt
    pattern = re.compile(request.json_schema["pattern"])
    assert request.json_schema["type"] == "string"
    for good in ["1234 times 5678 is 7006652.", "The answer is 7,006,652!", "It is 7006652"]:
        assert pattern.match(good), good
    for bad in ["The answer is 213,100.", "1234 times 5678 is 7006652. Or 12", "7006652.0",
                "[function result multiply: 7006652.0]", "It is 70066520.", "It is 700665.",
                'It is "7006652".']:
        assert not pattern.match(bad), bad


@pytest.mark.parametrize("reply", ['"The answer is 213,100."', '"The answer is', "not json",
                                   '"[function result multiply: 7006652.0]"'])
def test_an_answer_without_the_value_becomes_the_fact_itself(reply):
    text, _ = _answer_with(Scripted(reply))
    assert text == "multiply(a=1234, b=5678) returned 7006652."


class NoSchemas(Scripted):
    """An engine that rejects JSON schemas (as some OpenAI-compatible servers do)."""

    def generate(self, request, on_text):
        if request.json_schema is not None:
            self.requests.append(request)
            raise ValueError("response_format is not supported")
        return super().generate(request, on_text)


@pytest.mark.parametrize("engine, expected", [
    (NoSchemas("1234 times 5678 is 7006652."), "1234 times 5678 is 7006652."),
    (NoSchemas("1234 times 5678 is 7006652. Or 1234!"), "multiply(a=1234, b=5678) returned 7006652."),
    (Scripted("The result is 7,006,652."), "The result is 7,006,652."),  # schema ignored
])
def test_an_engine_without_schemas_is_asked_plainly_and_checked_the_same(engine, expected):
    text, _ = _answer_with(engine)
    assert text == expected


def test_facts_name_the_values_an_answer_must_hold():
    weather = {"type": "function_call", "id": "w", "name": "get_current_temperature",
               "arguments": {"location": "London"}}
    (fact,) = facts_of([weather, function_result_step(weather, get_current_temperature("London"))],
                       "What is the temperature in London?")
    assert fact.sentence == ('get_current_temperature(location="London") returned location London, '
                             'temperature 22, unit celsius.')
    assert fact.pieces == [["22"]]  # London is in the question already
    grade = {"type": "function_call", "id": "g", "name": "grade_to_letter", "arguments": {"score": 84}}
    (fact,) = facts_of([grade, function_result_step(grade, "B")], "What letter grade is 84?")
    assert fact.sentence == 'grade_to_letter(score=84) returned "B".' and fact.pieces == [["B"]]
    assert re.match(answer_pattern(fact.pieces, fact.numbers), "84 is a B.")
    assert not re.match(answer_pattern(fact.pieces, fact.numbers), "84 is a Bee.")
    failed = function_result_step(grade, "no such grade", is_error=True)
    (fact,) = facts_of([grade, failed], "What letter grade is 84?")
    assert fact.sentence == 'grade_to_letter(score=84) failed: "no such grade".' and not fact.pieces


def test_the_echo_engine_still_sees_the_plain_conversation():
    """Its reply describes what it received (tests elsewhere read the result marker in it)."""
    from gemini_magics.server.engines.echo import EchoEngine

    text, _ = _answer_with(EchoEngine())
    assert text == ("Echo: I saw 2 user turns and 1 model turn. You said: "
                    "[function result multiply: 7006652.0]")


def test_number_arguments_take_the_numbers_of_the_question():
    assert question_numbers("What is 1,234 times 5678? And 2.5") == [1234, 5678, 2.5]
    (tool,) = pin_numbers([function_declaration(multiply)], [1234, 5678, 2.5])
    assert tool["parameters"]["properties"]["a"]["enum"] == [1234, 5678, 2.5]
    (tool,) = pin_numbers([function_declaration(grade_to_letter)], [84, 2.5])
    assert tool["parameters"]["properties"]["score"]["enum"] == [84]
    llm = Scripted("", plan='{"name": "multiply", "arguments": {"a": 1234, "b": 5678}}')
    call = plan_function_call(llm, [{"role": "user", "content": "What is 1234 times 5678?"}],
                              [function_declaration(multiply)])
    assert call == {"name": "multiply", "arguments": {"a": 1234, "b": 5678}}
    schema = llm.requests[0].json_schema
    args = (schema.get("anyOf") or [schema])[0]["properties"]["arguments"]["properties"]
    assert args["a"]["enum"] == [1234, 5678]
    # no numbers in the question: the parameters are left as they are
    assert pin_numbers([function_declaration(multiply)], []) == [function_declaration(multiply)]


# --------------------------------------------------------------------------------------------
# Slow: the notebooks' examples with the real model
# --------------------------------------------------------------------------------------------

EXAMPLES = [  # quickstart section 9, teaching notebook lesson 6, a letter grade
    pytest.param(get_current_temperature, "What is the temperature in London?",
                 lambda r: r["temperature"], id="weather"),
    pytest.param(multiply, "What is 1234 times 5678?", lambda r: r, id="multiply"),
    pytest.param(grade_to_letter, "What letter grade is a score of 84?", lambda r: r, id="grade"),
]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fn, prompt, value_of", EXAMPLES)
def test_the_answer_after_a_function_result_states_it(local_client, fn, prompt, value_of, seed):
    """The quickstart's stateful loop: call, result, answer. The value is that of the call the
    model made (tool_choice "any", so every seed calls); the answer must contain it."""
    tools = [function_declaration(fn)]
    first = local_client.interactions.create(model="gemini-3.5-flash", input=prompt, tools=tools,
                                             generation_config={"seed": seed, "tool_choice": "any"})
    (call,) = [s for s in first.steps if s.type == "function_call"]
    result, is_error = call_function(fn, call.arguments, timeout=10)
    assert not is_error
    final = local_client.interactions.create(
        model="gemini-3.5-flash", input=[function_result_step(call, result)], tools=tools,
        previous_interaction_id=first.id, generation_config={"seed": seed, "max_output_tokens": 60})
    assert final.status == "completed"
    assert states(final.output_text, value_of(result)), final.output_text


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [0, 1])
def test_the_calculator_multiplies_the_numbers_of_the_question(local_client, seed):
    """The teaching notebook's lesson: the call takes 1234 and 5678, the answer says 7006652."""
    first = local_client.interactions.create(model="gemini-3.5-flash", input="What is 1234 times 5678?",
                                             tools=[function_declaration(multiply)],
                                             generation_config={"seed": seed, "tool_choice": "any"})
    (call,) = [s for s in first.steps if s.type == "function_call"]
    assert sorted(call.arguments.values()) == [1234, 5678]
    history = [QUESTION, call.model_dump(exclude_none=True),
               function_result_step(call, multiply(**call.arguments))]
    final = local_client.interactions.create(model="gemini-3.5-flash", input=history, store=False,
                                             tools=[function_declaration(multiply)],
                                             generation_config={"seed": seed})
    assert states(final.output_text, 7006652), final.output_text
