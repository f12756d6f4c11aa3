"""The local server's Batch API (what google-genai's `client.batches` calls) and the echo
engine's admission knobs answering real 429/503s, through the real SDK."""
import time

import pytest

from gemini_magics.server import start_server
from gemini_magics.server.engines.echo import EchoEngine
from conftest import make_client


@pytest.fixture()
def served():
    engine = EchoEngine()
    srv = start_server(engine=engine)
    yield engine, make_client(srv.base_url, retry_options={"attempts": 1})  # no SDK retries
    srv.stop()


def _ended(client, name):
    deadline = time.monotonic() + 30
    while True:
        job = client.batches.get(name=name)
        if job.state.name in ("JOB_STATE_SUCCEEDED", "JOB_STATE_CANCELLED", "JOB_STATE_FAILED"):
            return job
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_batch_of_inline_requests_is_answered_in_order_with_metadata(served):
    engine, client = served
    src = [{"contents": [{"role": "user", "parts": [{"text": f"q{i}"}]}],
            "config": {"max_output_tokens": 3}, "metadata": {"row": str(i)}} for i in range(3)]
    job = client.batches.create(model="gemini-3.5-flash", src=src, config={"display_name": "t"})
    assert job.name.startswith("batches/")
    done = _ended(client, job.name)
    answers = done.dest.inlined_responses
    assert [a.metadata["row"] for a in answers] == ["0", "1", "2"]
    assert [a.response.text for a in answers] == ["Echo: I saw "] * 3
    assert answers[0].response.usage_metadata.candidates_token_count == 3
    assert job.name in [b.name for b in client.batches.list()]
    client.batches.delete(name=job.name)
    assert job.name not in [b.name for b in client.batches.list()]
    assert engine.requests == 3


def test_the_rate_knob_answers_429_with_retry_after_and_retry_info(served):
    engine, client = served
    engine.rps = 1
    client.interactions.create(model="m", input="hi", store=False)
    with pytest.raises(Exception) as info:
        client.interactions.create(model="m", input="hi", store=False)
    exc = info.value
    assert exc.status_code == 429
    assert int(exc.response.headers["retry-after"]) >= 1
    details = exc.body["error"]["details"]
    assert details[0]["@type"].endswith("RetryInfo") and details[0]["retryDelay"].endswith("s")
    assert engine.requests == 1 and engine.refused == 1


def test_a_cancelled_batch_stops_before_its_remaining_requests():
    engine = EchoEngine(delay=0.3)
    srv = start_server(engine=engine)
    try:
        client = make_client(srv.base_url, retry_options={"attempts": 1})
        src = [{"contents": [{"role": "user", "parts": [{"text": f"q{i}"}]}]} for i in range(20)]
        job = client.batches.create(model="gemini-3.5-flash", src=src)
        client.batches.cancel(name=job.name)
        done = _ended(client, job.name)
        assert done.state.name == "JOB_STATE_CANCELLED"
        assert engine.requests < 20
    finally:
        srv.stop()
