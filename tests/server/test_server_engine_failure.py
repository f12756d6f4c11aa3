"""An engine that crashes fails its turn with a clear error; the server keeps serving."""
from __future__ import annotations

import pytest
from conftest import make_client
from strict import strict_interaction

from gemini_magics.server import start_server
from gemini_magics.server.engines.base import Engine, EngineFailed, EngineResult
from gemini_magics.server.turns import FAILED_SENTENCE


UNPLUGGED = "The engine at http://gpu:8000 could not be reached; check that it runs."


class Broken(Engine):
    name = "broken"

    def generate(self, request, on_text):
        if "crash" in request.messages[-1]["content"]:
            on_text("partial ")
            raise RuntimeError("out of cheese")
        if "unplugged" in request.messages[-1]["content"]:
            raise EngineFailed(UNPLUGGED)
        on_text("fine")
        return EngineResult(text="fine", input_tokens=1, output_tokens=1)


@pytest.fixture(scope="module")
def broken():
    with start_server(engine=Broken()) as srv:
        yield srv


def test_failed_turn_is_reported(broken):
    import httpx

    c = make_client(broken.base_url)
    i = c.interactions.create(model="m", input="please crash")
    assert i.status == "failed"
    # our own sentence: the exception's text (which may quote anything) stays in the log
    assert i.errors[0].message == FAILED_SENTENCE and "cheese" not in i.model_dump_json()
    assert i.output_text == "partial "
    assert i.usage.total_output_tokens == 1 and i.usage.total_input_tokens > 0  # what it cost
    raw = httpx.get(f"{broken.base_url}/v1/interactions/{i.id}", timeout=10).json()
    strict_interaction(raw)
    assert c.interactions.create(model="m", input="hello").output_text == "fine"


def test_failed_stream_ends_with_error_and_completed(broken):
    c = make_client(broken.base_url)
    events = list(c.interactions.create(model="m", input="crash now", stream=True))
    kinds = [e.event_type for e in events]
    assert "error" in kinds
    assert kinds[-1] == "interaction.completed"
    assert events[-1].interaction.status == "failed"
    assert events[-1].interaction.usage.total_output_tokens == 1
    assert "cheese" not in "".join(e.model_dump_json() for e in events)


def test_a_failed_batch_request_says_our_sentence_not_the_exceptions(broken):
    import time

    c = make_client(broken.base_url, retry_options={"attempts": 1})
    src = [{"contents": [{"role": "user", "parts": [{"text": t}]}]} for t in ("crash", "hi")]
    job = c.batches.create(model="gemini-3.5-flash", src=src)
    deadline = time.monotonic() + 30
    while (job := c.batches.get(name=job.name)).state.name != "JOB_STATE_SUCCEEDED":
        assert time.monotonic() < deadline, job.state
        time.sleep(0.02)
    crashed, fine = job.dest.inlined_responses
    assert crashed.error.message == FAILED_SENTENCE and "cheese" not in job.model_dump_json()
    assert fine.response.text == "fine"


def test_an_engines_own_sentence_reaches_the_client(broken):
    c = make_client(broken.base_url)
    i = c.interactions.create(model="m", input="unplugged?")
    assert i.status == "failed" and i.errors[0].message == UNPLUGGED
