"""Structured output: schema sources → response_format → the parsed value, through the real SDK.

The local server (echo engine) answers a JSON-schema request with a small valid instance, so
these tests run the quickstart's section 7 round trip for real, offline.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from typing import List, Optional, TypedDict

import pydantic
import pytest
from pydantic import BaseModel, Field

from gemini_magics.schema import SchemaError, is_schema, parse_structured, response_format_for


class Recipe(BaseModel):  # the quickstart's model, unchanged
    recipe_name: str = Field(description="Name of the recipe.")
    ingredients: List[str] = Field(description="List of ingredients.")
    prep_time_minutes: Optional[int] = Field(description="Prep time in minutes.")


@dataclasses.dataclass
class Book:
    title: str
    pages: int
    tags: list[str] = dataclasses.field(default_factory=list)


class Movie(TypedDict):  # typing.TypedDict: pydantic alone refuses it before Python 3.12
    title: str
    year: int


RECIPE_JSON_SCHEMA = {  # the quickstart's JavaScript/REST schema
    "type": "object",
    "properties": {
        "recipe_name": {"type": "string", "description": "Name of the recipe."},
        "ingredients": {"type": "array", "items": {"type": "string"}, "description": "List of ingredients."},
        "prep_time_minutes": {"type": "integer", "description": "Prep time in minutes."},
    },
    "required": ["recipe_name", "ingredients"],
}


def test_the_quickstart_response_format_comes_from_the_model_class():
    assert response_format_for(Recipe) == {"type": "text", "mime_type": "application/json",
                                           "schema": Recipe.model_json_schema()}
    assert response_format_for(RECIPE_JSON_SCHEMA) == {"type": "text", "mime_type": "application/json",
                                                       "schema": RECIPE_JSON_SCHEMA}
    ready = response_format_for(Recipe)
    assert response_format_for(ready) == ready  # an existing response_format passes through


@pytest.mark.parametrize("source, expected", [
    (Recipe, Recipe(recipe_name="Give me a recipe for banana bread",
                    ingredients=["Give me a recipe for banana bread"], prep_time_minutes=0)),
    (Book, Book(title="Give me a recipe for banana bread", pages=0,
                tags=["Give me a recipe for banana bread"])),
    (Movie, {"title": "Give me a recipe for banana bread", "year": 0}),
    (RECIPE_JSON_SCHEMA, {"recipe_name": "Give me a recipe for banana bread",
                          "ingredients": ["Give me a recipe for banana bread"], "prep_time_minutes": 0}),
])
def test_round_trip_through_the_sdk_and_the_local_server(client, source, expected):
    interaction = client.interactions.create(model="gemini-3.5-flash", input="Give me a recipe for banana bread",
                                             response_format=response_format_for(source))
    value = parse_structured(interaction.output_text, source)
    assert value == expected
    assert type(value) is type(expected)


def test_streamed_answers_parse_the_same(client):
    text = ""
    for event in client.interactions.create(model="gemini-3.5-flash", input="banana bread", stream=True,
                                            response_format=response_format_for(Book)):
        if event.event_type == "step.start":  # the first text may come in the start, as Google's
            text += "".join(c.text for c in (getattr(event.step, "content", None) or [])
                            if getattr(c, "type", None) == "text")
        if event.event_type == "step.delta" and event.delta.type == "text":
            text += event.delta.text
    assert parse_structured(text, Book) == Book(title="banana bread", pages=0, tags=["banana bread"])


def test_an_answer_that_does_not_fit_keeps_the_raw_text(client):
    # The echo engine answers "/params" with its generation parameters, whatever the schema.
    interaction = client.interactions.create(model="gemini-3.5-flash", input="/params",
                                             response_format=response_format_for(Recipe))
    with pytest.raises(SchemaError) as err:
        parse_structured(interaction.output_text, Recipe, name="Recipe")
    assert str(err.value).startswith("The model's answer does not match Recipe: recipe_name: Field required;")
    assert err.value.raw == interaction.output_text
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("text, source, message", [
    ('{"recipe_name": 1, "ingredients": []}', Recipe,
     "The model's answer does not match Recipe: recipe_name: Input should be a valid string; "
     "prep_time_minutes: Field required; the raw text is in the error's `raw`."),
    ('{"recipe_name": "x"}', RECIPE_JSON_SCHEMA,
     "The model's answer does not match the schema at top level: 'ingredients' is a required property; "
     "the raw text is in the error's `raw`."),
    ('{"recipe_name": "x", "ingredients": [3]}', RECIPE_JSON_SCHEMA,
     "The model's answer does not match the schema at ingredients/0: 3 is not of type 'string'; "
     "the raw text is in the error's `raw`."),
    ("Sure! Here is a recipe", Book,
     "The model's answer is not valid JSON (Expecting value at line 1 column 1), so it cannot be parsed "
     "as Book; the raw text is in the error's `raw`."),
    ("   ", Movie, "The model's answer is empty, so there is nothing to parse as Movie."),
])
def test_bad_answers_get_one_sentence(text, source, message):
    with pytest.raises(SchemaError) as err:
        parse_structured(text, source)
    assert str(err.value) == message
    assert err.value.raw == text


def test_a_fenced_answer_is_accepted():
    text = '```json\n{"title": "Dune", "year": 1965}\n```'
    assert parse_structured(text, Movie) == {"title": "Dune", "year": 1965}


class Author(BaseModel):
    name: str
    born: Optional[int] = None


class Library(BaseModel):
    books: list[Book]
    authors: list[Author]


def test_nested_models_use_defs_and_parse_to_instances():
    schema = response_format_for(Library)["schema"]
    assert set(schema["$defs"]) == {"Author", "Book"}
    value = parse_structured('{"books": [{"title": "Dune", "pages": "412"}], "authors": [{"name": "Herbert"}]}',
                             Library)
    assert value.books == [Book(title="Dune", pages=412)]
    assert value.authors[0].born is None
    assert response_format_for(list[Author])["schema"]["type"] == "array"
    assert parse_structured('[{"name": "Le Guin", "born": 1929}]', list[Author]) == [Author(name="Le Guin", born=1929)]


@pytest.mark.parametrize("source, message", [
    (Recipe(recipe_name="x", ingredients=[], prep_time_minutes=None),
     "recipe is an instance of Recipe, not a schema; pass the class Recipe itself."),
    (Book("x", 1), "recipe is an instance of Book, not a schema; pass the class Book itself."),
    ("Recipe", "recipe is a value of type str, not a schema; use a pydantic model, dataclass, TypedDict or "
               "JSON-schema dict."),
    (print, "recipe is a value of type builtin_function_or_method, not a schema; use a pydantic model, "
            "dataclass, TypedDict or JSON-schema dict."),
    ({"recipe_name": "Banana bread"}, "recipe is a dict without any JSON-schema keyword (type, properties, "
                                      "items, $ref, anyOf, enum...), so it looks like data, not a schema."),
    ({"type": "object", "properties": {"a": {"type": "strng"}}},
     "recipe is not a valid JSON schema at properties/a/type: 'strng' is not valid under any of the given "
     "schemas."),
])
def test_things_that_are_not_schemas_get_one_sentence(source, message):
    with pytest.raises(SchemaError) as err:
        response_format_for(source, name="recipe")
    assert str(err.value) == message
    assert err.value.raw is None
    assert not is_schema(source)


def test_a_type_pydantic_cannot_describe_is_refused():
    class Opaque:
        pass

    with pytest.raises(SchemaError, match=r"^Opaque cannot be used as a schema: pydantic cannot describe it"):
        response_format_for(Opaque)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="typing.TypedDict works natively from 3.12")
def test_typing_typeddict_is_accepted_before_3_12():
    with pytest.raises(pydantic.PydanticUserError):
        pydantic.TypeAdapter(Movie)  # what a user would hit without us
    assert response_format_for(Movie)["schema"]["required"] == ["title", "year"]
    assert json.loads(json.dumps(parse_structured('{"title": "Heat", "year": "1995"}', Movie))) == {
        "title": "Heat", "year": 1995}
