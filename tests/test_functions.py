"""Python functions as tools: declarations, name lookup, safe calls and the quickstart's loops.

The loops run the quickstart's section 9 code shape through the real SDK: against a scripted
server for the model's function call (the local server's function calling is wired in later)
and against the real local server (echo engine) for the function_result turn.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import threading
import time
from typing import Annotated, Literal, Optional

import jsonschema
import pydantic
import pytest
from test_tools import interaction, scripted_server, sdk_client

from gemini_magics.functions import (
    call_function,
    function_declaration,
    function_result_step,
    resolve_functions,
)

# The quickstart's tool, as written there by hand.
WEATHER_TOOL = {
    "type": "function",
    "name": "get_current_temperature",
    "description": "Gets the current temperature for a given location.",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city name, e.g. San Francisco"}},
        "required": ["location"],
    },
}


def get_current_temperature(location: str) -> dict:
    """Gets the current temperature for a given location.

    Args:
        location: The city name, e.g. San Francisco
    """
    return {"location": location, "temperature": "22", "unit": "celsius"}


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


@dataclasses.dataclass
class Point:
    lat: float
    lng: float = 0.0


class Address(pydantic.BaseModel):
    street: str
    city: str
    postcode: Optional[str] = None


def plan_trip(
    days: int,
    cities: list[str],
    budget: float = 1000.0,
    unit: Unit = Unit.CELSIUS,
    pace: Literal["slow", "fast"] = "slow",
    hotel: Optional[Address] = None,
    start: Optional[Point] = None,
    prefs: Optional[dict] = None,
    rooms: Annotated[int, pydantic.Field(description="Rooms to book", ge=1)] = 1,
    *,
    refundable: bool = False,
):
    """Plan a trip.

    A longer explanation that stays in the description.

    Args:
        days: How many days.
        cities: Cities to visit,
            in order.
    """
    return {"days": days, "cities": cities, "unit": unit, "hotel": hotel, "start": start,
            "rooms": rooms, "refundable": refundable}


# --------------------------------------------------------------------------------------------
# function_declaration
# --------------------------------------------------------------------------------------------

def test_the_quickstart_weather_tool_is_generated_from_the_function():
    assert function_declaration(get_current_temperature) == WEATHER_TOOL


def test_types_defaults_and_docs_become_a_valid_json_schema():
    decl = function_declaration(plan_trip)
    assert decl["description"] == "Plan a trip.\n\nA longer explanation that stays in the description."
    params = decl["parameters"]
    jsonschema.Draft202012Validator.check_schema(params)
    props = params["properties"]
    assert params["required"] == ["days", "cities"]
    assert props["days"] == {"type": "integer", "description": "How many days."}
    assert props["cities"] == {"type": "array", "items": {"type": "string"},
                               "description": "Cities to visit, in order."}
    assert props["budget"] == {"type": "number", "default": 1000.0}
    assert props["pace"] == {"type": "string", "enum": ["slow", "fast"], "default": "slow"}
    assert params["$defs"]["Unit"] == {"type": "string", "enum": ["celsius", "fahrenheit"]}
    assert props["unit"] == {"$ref": "#/$defs/Unit", "default": "celsius"}
    assert props["hotel"]["anyOf"] == [{"$ref": "#/$defs/Address"}, {"type": "null"}]
    assert params["$defs"]["Address"]["required"] == ["street", "city"]
    assert params["$defs"]["Point"]["properties"]["lat"] == {"type": "number"}
    assert props["rooms"] == {"type": "integer", "minimum": 1, "default": 1, "description": "Rooms to book"}
    assert props["refundable"] == {"type": "boolean", "default": False}
    assert "title" not in json.dumps(params)
    # a call the schema allows validates against it
    jsonschema.validate({"days": 2, "cities": ["Rome"], "hotel": {"street": "Via 1", "city": "Rome"},
                         "unit": "fahrenheit"}, params)


def test_sphinx_docstrings_and_functions_without_parameters():
    def ping():
        """Check the service."""

    def shout(text, times: int = 2):
        """Repeat text loudly.

        :param text: what to shout
        :param int times: how often
        :returns: the text
        """

    assert function_declaration(ping) == {"type": "function", "name": "ping", "description": "Check the service.",
                                          "parameters": {"type": "object", "properties": {}}}
    decl = function_declaration(shout)
    assert decl["description"] == "Repeat text loudly."
    assert decl["parameters"]["properties"] == {"text": {"description": "what to shout"},
                                                "times": {"type": "integer", "default": 2,
                                                          "description": "how often"}}


class Connection:
    pass


def test_a_parameter_type_without_json_schema_is_named():
    def query(sql: str, conn: Connection):
        """Run SQL."""

    with pytest.raises(ValueError, match=r"^Cannot describe parameter 'conn' of query to the model: .*pydantic model\.$"):
        function_declaration(query)


def test_an_unresolvable_annotation_is_named():
    def book(room: Suite):  # noqa: F821 - the user forgot to define Suite
        """Book a room."""

    with pytest.raises(ValueError) as err:
        function_declaration(book)
    assert str(err.value) == ("Cannot resolve the type 'Suite' of parameter 'room' of book; define that type "
                              "at the top level of the notebook or module, before the function.")


def test_a_lambda_cannot_be_declared_by_itself():
    with pytest.raises(ValueError, match="cannot be declared to the model"):
        function_declaration(lambda x: x)


# --------------------------------------------------------------------------------------------
# resolve_functions
# --------------------------------------------------------------------------------------------

class Tools:
    def lookup(self, key: str) -> str:
        """Look a key up."""
        return key.upper()


def test_names_resolve_from_the_namespace_including_lambdas_and_methods():
    ns = {"get_current_temperature": get_current_temperature, "tools": Tools(),
          "double": lambda n: n * 2}
    fns = resolve_functions(" get_current_temperature, tools.lookup,double,double", ns)
    assert [f.__name__ for f in fns] == ["get_current_temperature", "lookup", "double"]
    assert fns[0] is get_current_temperature
    assert function_declaration(fns[1])["parameters"]["required"] == ["key"]
    assert call_function(fns[1], {"key": "a"}, timeout=10) == ("A", False)
    assert call_function(fns[2], {"n": 4}, timeout=10) == (8, False)
    assert ns["double"].__name__ == "<lambda>"  # the user's object is untouched


@pytest.mark.parametrize("names, message", [
    ("", "--functions needs at least one name, e.g. --functions get_weather,convert."),
    ("nope", "--functions: 'nope' is not defined in the notebook; run the cell that defines it or fix the name."),
    ("answer", "--functions: 'answer' is a int, not a function; pass the name of a callable."),
    ("tools.missing", "--functions: 'tools' has no attribute 'missing'; fix the name 'tools.missing'."),
    ("f,g", "--functions: 'f' and 'g' are both named 'get_current_temperature'; the model needs distinct function names."),
])
def test_bad_function_names_get_one_sentence(names, message):
    ns = {"answer": 42, "tools": Tools(), "f": get_current_temperature, "g": get_current_temperature}
    with pytest.raises(ValueError) as err:
        resolve_functions(names, ns)
    assert str(err.value) == message


# --------------------------------------------------------------------------------------------
# call_function
# --------------------------------------------------------------------------------------------

def test_arguments_are_validated_and_coerced_to_the_hints():
    result, is_error = call_function(plan_trip, {
        "days": "3", "cities": ["Rome"], "unit": "fahrenheit", "refundable": True,
        "hotel": {"street": "Via 1", "city": "Rome"}, "start": {"lat": 41.9}}, timeout=10)
    assert not is_error
    assert result["days"] == 3
    assert result["unit"] is Unit.FAHRENHEIT
    assert result["hotel"] == Address(street="Via 1", city="Rome")
    assert result["start"] == Point(lat=41.9)
    assert result["refundable"] is True and result["rooms"] == 1


@pytest.mark.parametrize("arguments, message", [
    ({"cities": []}, "Invalid arguments for plan_trip: days: Field required."),
    ({"days": "many", "cities": []}, "Invalid arguments for plan_trip: days: Input should be a valid integer, "
                                     "unable to parse string as an integer."),
    ({"days": 1, "cities": [], "color": "red"}, "Invalid arguments for plan_trip: color: unexpected argument."),
    ({"days": 1, "cities": [], "pace": "run"}, "Invalid arguments for plan_trip: pace: Input should be 'slow' or 'fast'."),
    (["x"], "Arguments for plan_trip must be a JSON object, got list."),
])
def test_invalid_arguments_go_back_as_an_error_result(arguments, message):
    assert call_function(plan_trip, arguments, timeout=10) == (message, True)


def test_an_exception_goes_back_as_an_error_result():
    def divide(a: float, b: float) -> float:
        return a / b

    assert call_function(divide, {"a": 1, "b": 0}, timeout=10) == (
        "divide raised ZeroDivisionError: float division by zero", True)


def test_a_hanging_function_is_stopped_and_does_not_hold_the_kernel():
    progress = []

    def spin(n: int):
        while True:
            try:
                progress.append(n)
            except Exception:  # a careless function must still be stoppable
                pass

    message, is_error = call_function(spin, {"n": 1}, timeout=0.5)
    assert is_error
    assert message == "spin did not finish within 0.5 seconds and was stopped; make it faster or raise the timeout."
    deadline = time.monotonic() + 10
    while any(t.name == "gemini-function-spin" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "gemini-function-spin" for t in threading.enumerate())


def test_async_positional_only_and_kwargs_functions():
    async def fetch(city: str) -> str:
        return f"sunny in {city}"

    def power(base: int, exp: int = 2, /) -> int:
        return base ** exp

    def tagged(name: str, **tags):
        return {"name": name, **tags}

    assert call_function(fetch, {"city": "Oslo"}, timeout=10) == ("sunny in Oslo", False)
    assert call_function(power, {"base": 3}, timeout=10) == (9, False)
    assert call_function(tagged, {"name": "a", "color": "red"}, timeout=10) == (
        {"name": "a", "color": "red"}, False)


# --------------------------------------------------------------------------------------------
# function_result_step
# --------------------------------------------------------------------------------------------

def test_result_steps_have_the_quickstart_shape_for_any_result():
    call = {"type": "function_call", "id": "call_abc123", "name": "get_current_temperature",
            "arguments": {"location": "London"}}
    assert function_result_step(call, get_current_temperature("London")) == {
        "type": "function_result", "name": "get_current_temperature", "call_id": "call_abc123",
        "result": [{"type": "text", "text": json.dumps(get_current_temperature("London"))}]}
    text = function_result_step(call, {"when": dataclasses.replace(Point(1.0)), "unit": Unit.CELSIUS,
                                       "obj": object.__new__(Tools)})["result"][0]["text"]
    data = json.loads(text)
    assert data["when"] == {"lat": 1.0, "lng": 0.0} and data["unit"] == "celsius"
    assert data["obj"].startswith("<test_functions.Tools object")
    error = function_result_step(call, "get_current_temperature raised KeyError: 'x'", is_error=True)
    assert error["is_error"] is True
    assert json.loads(error["result"][0]["text"]) == {"error": "get_current_temperature raised KeyError: 'x'"}


# --------------------------------------------------------------------------------------------
# The quickstart's loops through the real SDK
# --------------------------------------------------------------------------------------------

def _model(body: dict) -> dict:
    """A scripted model: call get_current_temperature first, answer once a result came back."""
    steps = body["input"] if isinstance(body["input"], list) else []
    results = [s for s in steps if s.get("type") == "function_result"]
    if not results:
        return interaction([{"type": "function_call", "id": "call_abc123", "name": "get_current_temperature",
                             "arguments": {"location": "London"}}], status="requires_action", iid="v1_turn1")
    value = json.loads(results[-1]["result"][0]["text"])
    return interaction([{"type": "model_output", "content": [
        {"type": "text", "text": f"The temperature in {value['location']} is {value['temperature']}°C."}]}],
        iid="v1_turn2")


def _run_calls(interaction_obj, functions) -> list[dict]:
    by_name = {f.__name__: f for f in functions}
    out = []
    for step in interaction_obj.steps:
        if step.type == "function_call":
            result, is_error = call_function(by_name[step.name], step.arguments, timeout=10)
            out.append(function_result_step(step, result, is_error))
    return out


def test_stateful_loop_with_previous_interaction_id():
    functions = resolve_functions("get_current_temperature", {"get_current_temperature": get_current_temperature})
    tools = [function_declaration(f) for f in functions]
    with scripted_server(_model) as (url, bodies):
        client = sdk_client(url)
        user_input, previous_id = "What is the temperature in London?", None
        for _round in range(5):
            i = client.interactions.create(model="gemini-3.5-flash", input=user_input, tools=tools,
                                           previous_interaction_id=previous_id)
            results = _run_calls(i, functions)
            if not results:
                break
            user_input, previous_id = results, i.id
    assert i.output_text == "The temperature in London is 22°C."
    assert bodies[0]["tools"] == [WEATHER_TOOL]
    assert bodies[1]["previous_interaction_id"] == "v1_turn1"
    assert bodies[1]["input"] == [{
        "type": "function_result", "name": "get_current_temperature", "call_id": "call_abc123",
        "result": [{"type": "text", "text": json.dumps(get_current_temperature("London"))}]}]


def test_stateless_loop_resends_the_history():
    tools = [function_declaration(get_current_temperature)]
    history = [{"type": "user_input", "content": [{"type": "text", "text": "What is the temperature in London?"}]}]
    with scripted_server(_model) as (url, bodies):
        client = sdk_client(url)
        for _round in range(5):
            i = client.interactions.create(model="gemini-3.5-flash", store=False, input=history, tools=tools)
            history.extend(step.model_dump() for step in i.steps)
            results = _run_calls(i, [get_current_temperature])
            history.extend(results)
            if not results:
                break
    assert i.output_text == "The temperature in London is 22°C."
    assert [s["type"] for s in bodies[1]["input"]] == ["user_input", "function_call", "function_result"]
    assert bodies[1]["store"] is False


def test_the_local_server_reads_our_function_result(client):
    """The real local server (echo engine) receives the result step and passes it to its engine."""
    call = {"type": "function_call", "id": "call_1", "name": "get_current_temperature",
            "arguments": {"location": "London"}}
    result, is_error = call_function(get_current_temperature, call["arguments"], timeout=10)
    history = [{"type": "user_input", "content": [{"type": "text", "text": "Temperature in London?"}]},
               call, function_result_step(call, result, is_error)]
    i = client.interactions.create(model="gemini-3.5-flash", store=False, input=history)
    assert i.status == "completed"
    assert i.output_text.endswith('You said: [function result get_current_temperature: '
                                  '{"location": "London", "temperature": "22", "unit": "celsius"}]')
