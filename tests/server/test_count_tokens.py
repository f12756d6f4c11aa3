"""countTokens on the local server (server/counting.py): the count it gives for a prompt is the
input a turn with that prompt then reports, through google-genai's own `models.count_tokens`
(what `--estimate` calls, gemini_magics/spend.py) and raw HTTP; bad bodies are one sentence."""
from __future__ import annotations

import base64
import io

import pytest
from conftest import make_client
from PIL import Image

from gemini_magics import spend

PROMPT = "Explain how AI works in a few words, then give one example from daily life."
MODEL = "gemini-2.5-flash"


def _png() -> str:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def _count(http, contents) -> int:
    r = http.post(f"/v1beta/models/{MODEL}:countTokens", json={"contents": contents})
    assert r.status_code == 200, r.text
    return r.json()["totalTokens"]


def _input_tokens(http, input_) -> int:
    r = http.post("/v1beta/interactions", json={"model": MODEL, "input": input_, "store": False})
    assert r.status_code == 200, r.text
    return r.json()["usage"]["total_input_tokens"]


def test_the_sdk_count_is_the_input_the_turn_then_reports(client):
    counted = client.models.count_tokens(model=MODEL, contents=PROMPT).total_tokens
    turn = client.interactions.create(model=MODEL, input=PROMPT)
    assert counted == turn.usage.total_input_tokens > 10  # the echo engine: exactly


def test_a_conversation_and_an_image_are_counted_as_a_turn_sees_them(http):
    png = _png()
    contents = [{"role": "user", "parts": [{"text": "Hello there"}]},
                {"role": "model", "parts": [{"text": "Hi, how can I help?"}]},
                {"role": "user", "parts": [{"text": "What is in this picture?"},
                                           {"inlineData": {"mimeType": "image/png", "data": png}}]}]
    turns = [{"role": "user", "content": "Hello there"},
             {"role": "model", "content": "Hi, how can I help?"},
             {"role": "user", "content": [{"type": "text", "text": "What is in this picture?"},
                                          {"type": "image", "mime_type": "image/png",
                                           "data": png}]}]
    counted = _count(http, contents)
    assert counted == _input_tokens(http, turns)
    without_image = contents[:2] + [{"role": "user", "parts": contents[2]["parts"][:1]}]
    assert counted > _count(http, without_image) + 3  # the picture described in words


def test_estimate_counts_rows_with_the_server_instead_of_guessing(client):
    counts, how = spend.api_counter(client, MODEL)(["one two three", PROMPT])
    assert counts == [3, len(PROMPT.split())] and how == "counted by the API (countTokens)"


@pytest.mark.parametrize("body, says", [
    ({"contents": "hello"}, "'contents' must be a non-empty list of contents"),
    ({"contents": [{"parts": [{"blob": 1}]}]}, "'contents[0].parts[0]' has no 'text'"),
    ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "'contents[0].role' must be"),
    ({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png"}}]}]},
     "'contents[0].parts[0].inlineData' needs a string 'mimeType' and a string 'data'"),
])
def test_a_bad_count_body_is_one_sentence(http, body, says):
    r = http.post(f"/v1beta/models/{MODEL}:countTokens", json=body)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith(says), r.text


@pytest.mark.slow
def test_the_local_models_count_is_its_own_tokenizer(local_server):
    client = make_client(local_server.base_url)
    counted = client.models.count_tokens(model=MODEL, contents=PROMPT).total_tokens
    turn = client.interactions.create(model=MODEL, input=PROMPT,
                                      generation_config={"max_output_tokens": 2})
    reported = turn.usage.total_input_tokens
    assert abs(counted - reported) <= 0.05 * reported, (counted, reported)
    assert counted != len(PROMPT.split())  # not the word count a guess would give
