"""`%%gemini --schema NAME`: structured output from a pydantic model, dataclass, TypedDict or
JSON-schema dict; the parsed value goes to --out and the answer is shown as pretty JSON.

Through the real SDK against the echo server (which answers a schema with a small instance of
it), a scripted loopback server for answers that do not validate, and the local model (slow).
"""
import json

import pytest

from conftest import make_client
from magics_fixtures import magics_of, run_cell, scripted, shell, sse_events_for  # noqa: F401

SCHEMAS = '''
import dataclasses
from typing import Optional, TypedDict
from pydantic import BaseModel, Field

class Recipe(BaseModel):
    recipe_name: str = Field(description="Name of the recipe.")
    ingredients: list[str]
    prep_time_minutes: Optional[int] = None

@dataclasses.dataclass
class Point:
    x: int
    label: str

class Movie(TypedDict):
    title: str
    year: int

city_schema = {"type": "object", "properties": {"name": {"type": "string"},
               "tags": {"type": "array", "items": {"enum": ["big", "old"]}}},
               "required": ["name"]}
'''
NAMES = ("Recipe", "Point", "Movie", "city_schema", "dataclasses", "Optional", "TypedDict",
         "BaseModel", "Field", "value")


def ok(cap):
    assert cap.error is None, (cap.stdout, cap.stderr)
    return cap


@pytest.fixture()
def schemas(shell):
    ok(run_cell(shell, SCHEMAS))
    yield shell.user_ns
    for name in NAMES:
        shell.user_ns.pop(name, None)


def answer_outputs(cap):
    return [d["text/markdown"] for d in cap.final
            if d.get("text/markdown") and not d["text/markdown"].startswith("<details>")]


@pytest.mark.parametrize("stream", ["", "--no-stream"])
def test_a_pydantic_schema_gives_a_model_instance_and_pretty_json(shell, schemas, stream):
    cap = ok(run_cell(shell, f"%%gemini --schema Recipe -o value {stream}\nbanana bread"))
    value = shell.user_ns["value"]
    assert type(value).__name__ == "Recipe" and value.recipe_name == "banana bread"
    assert value.ingredients == ["banana bread"]
    shown = answer_outputs(cap)
    assert shown == ["```json\n" + json.dumps(value.model_dump(), indent=2) + "\n```"]
    r = shell.user_ns["_gemini"]
    assert r.value is value and json.loads(r.text) == value.model_dump()
    api = make_client(magics_of(shell).base_url)
    sent = api.interactions.get(r.id).response_format
    assert sent.mime_type == "application/json" and "recipe_name" in json.dumps(sent.schema_)


@pytest.mark.parametrize("name, check", [
    ("Point", lambda v: type(v).__name__ == "Point" and v.x == 0 and v.label == "go"),
    ("Movie", lambda v: v == {"title": "go", "year": 0}),
    ("city_schema", lambda v: v == {"name": "go", "tags": ["big"]}),
])
def test_dataclasses_typeddicts_and_json_schemas(shell, schemas, name, check):
    ok(run_cell(shell, f"%%gemini --schema {name} -o value\ngo"))
    assert check(shell.user_ns["value"])


def test_the_terminal_prints_the_json_once_pretty(shell, schemas):
    magics_of(shell).display = "terminal"
    cap = ok(run_cell(shell, "%%gemini --schema Movie\nAlien"))
    assert cap.stdout.startswith('{\n  "title": "Alien",\n  "year": 0\n}\n— ')


@pytest.mark.parametrize("cell, words", [
    ("%%gemini --schema missing\nx", "--schema: 'missing' is not defined in the notebook"),
    ("%%gemini --schema recipe\nx", "recipe is an instance of Recipe, not a schema; pass the class"),
    ("%%gemini --schema data\nx", "data is a dict without any JSON-schema keyword"),
    ("%%gemini --schema bad\nx", "bad is not a valid JSON schema"),
    ("%%gemini --schema 'a b'\nx", "--schema needs the name of a schema in the notebook"),
])
def test_something_that_is_not_a_schema_is_one_sentence_and_nothing_is_sent(shell, schemas,
                                                                           scripted, cell, words):
    magics_of(shell).base_url = scripted.base_url
    ok(run_cell(shell, "recipe = Recipe(recipe_name='x', ingredients=[])\n"
                       "data = {'name': 'Ann'}\nbad = {'type': 12}"))
    cap = run_cell(shell, cell)
    assert cap.error.__class__.__name__ == "GeminiError" and words in str(cap.error)
    assert scripted.requests == []
    for var in ("recipe", "data", "bad"):
        shell.user_ns.pop(var, None)


@pytest.mark.parametrize("text, words", [
    ('{"recipe_name": "x"}', "The model's answer does not match Recipe: ingredients: Field required"),
    ("Sorry, I cannot.", "The model's answer is not valid JSON"),
])
def test_an_answer_that_does_not_validate_is_one_sentence_and_kept(shell, schemas, scripted,
                                                                  text, words):
    magics_of(shell).base_url = scripted.base_url
    scripted.script = [{"sse": sse_events_for([text])}]
    cap = run_cell(shell, "%%gemini --schema Recipe -o value\nbread")
    assert cap.error.__class__.__name__ == "GeminiError"
    message = str(cap.error)
    assert message.startswith(words) and "raw answer is in .text" in message
    assert "value" not in shell.user_ns
    assert shell.user_ns["_gemini"].text == text  # nothing lost
    assert text.strip("{}").split(":")[0] in cap.markdown  # and it was shown
    assert "No conversation yet" in run_cell(shell, "%gemini history").stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_local_model_always_fits_the_schema(shell, schemas, local_server):
    magics_of(shell).base_url = local_server.base_url
    ok(run_cell(shell, "class Step(BaseModel):\n    action: str\n    minutes: Optional[int] = None\n"
                       "class Plan(BaseModel):\n    title: str\n    steps: list[Step] = Field(max_length=3)\n"
                       "    level: Optional[str] = Field(None, json_schema_extra={'enum': ['easy', 'hard']})"))
    for prompt in ("Plan banana bread.", "How do I fix a bike tyre?"):
        ok(run_cell(shell, f"%%gemini --schema Plan --max-tokens 300 -o value\n{prompt}"))
        assert type(shell.user_ns["value"]).__name__ == "Plan"
    for var in ("Step", "Plan"):
        shell.user_ns.pop(var, None)
