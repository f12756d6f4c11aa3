"""Background interactions, progress, cancel (background and streaming) and disconnects.

The echo engine's `/words N delay=S` makes a turn slow enough to watch; every wait is bounded.
"""
from __future__ import annotations

import time

import httpx
import pytest
from google.genai import _interactions as errors
from strict import streamed_text

from gemini_magics.server.event_ids import resume_position

SLOW = "/words 400 delay=0.01"  # ~4 s if nobody cancels it
WAIT_S = 30


def _poll(client, iid, until):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        got = client.interactions.get(iid)
        if until(got):
            return got
        time.sleep(0.02)
    raise AssertionError(f"interaction {iid} never reached the expected state")


def _words(text):
    return text.split()


def test_background_answers_at_once_then_completes(client):
    i = client.interactions.create(model="m", input="/words 30 delay=0.01", background=True)
    assert i.status == "in_progress"
    assert isinstance(i.output_text, str)
    done = _poll(client, i.id, lambda g: g.status != "in_progress")
    assert done.status == "completed"
    assert _words(done.output_text) == [f"w{k}" for k in range(1, 31)]


def test_background_response_is_strict(http):
    from strict import strict_interaction

    r = http.post("/v1/interactions", json={"model": "m", "input": "/words 5 delay=0.01",
                                            "background": True})
    body = r.json()
    assert body["status"] == "in_progress"
    strict_interaction(body)
    r = http.get(f"/v1/interactions/{body['id']}")
    strict_interaction(r.json())


def test_background_progress_then_cancel_keeps_partial_output(client):
    i = client.interactions.create(model="m", input=SLOW, background=True)
    partial = _poll(client, i.id, lambda g: len(_words(g.output_text)) >= 3)
    assert partial.status == "in_progress"
    cancelled = client.interactions.cancel(i.id)
    assert cancelled.status == "cancelled"
    words = _words(cancelled.output_text)
    assert 3 <= len(words) < 400
    assert words == [f"w{k}" for k in range(1, len(words) + 1)]
    stored = client.interactions.get(i.id)
    assert stored.status == "cancelled" and stored.output_text == cancelled.output_text


def test_cancel_stops_a_stream_from_another_request(client):
    stream = client.interactions.create(model="m", input=SLOW, stream=True)
    iid, deltas, last = None, 0, None
    for ev in stream:
        if ev.event_type == "interaction.created":
            iid = ev.interaction.id
        if ev.event_type == "step.delta" and ev.delta.type == "text":
            deltas += 1
            if deltas == 3:
                assert client.interactions.cancel(iid).status == "cancelled"
        last = ev
    assert last.event_type == "interaction.completed"
    assert last.interaction.status == "cancelled"
    assert 3 <= deltas < 400
    assert client.interactions.get(iid).status == "cancelled"


def test_client_disconnect_cancels_a_stream_after_the_resume_grace(client, http, echo_server,
                                                                   monkeypatch):
    """Nobody resumes it (tests/server/test_resume_grace.py has the resumes)."""
    import json

    monkeypatch.setattr(echo_server.service.resumes, "seconds", 0.5)

    with http.stream("POST", "/v1/interactions",
                     json={"model": "m", "input": SLOW, "stream": True}) as r:
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        iid = json.loads(first[len("data: "):])["interaction"]["id"]
    got = _poll(client, iid, lambda g: g.status != "in_progress")
    assert got.status == "cancelled"
    assert len(_words(got.output_text)) < 400


def test_get_stream_follows_a_running_interaction(client):
    i = client.interactions.create(model="m", input="/words 50 delay=0.005", background=True)
    events = list(client.interactions.get(i.id, stream=True))
    assert events[0].event_type == "interaction.created"
    assert events[-1].event_type == "interaction.completed"
    assert events[-1].interaction.status == "completed"
    assert _words(streamed_text(events)) == [f"w{k}" for k in range(1, 51)]
    ids = [resume_position(e.event_id, i.id) for e in events]
    assert ids == list(range(1, len(ids) + 1))


def test_previous_id_still_running_is_refused(client):
    i = client.interactions.create(model="m", input=SLOW, background=True)
    try:
        with pytest.raises(errors.BadRequestError) as exc:
            client.interactions.create(model="m", input="next", previous_interaction_id=i.id)
        assert "in progress" in str(exc.value)
    finally:
        client.interactions.cancel(i.id)


def test_background_needs_store(client):
    with pytest.raises(errors.BadRequestError) as exc:
        client.interactions.create(model="m", input="x", background=True, store=False)
    assert "store" in str(exc.value)


def test_delete_stops_a_running_interaction(client):
    i = client.interactions.create(model="m", input=SLOW, background=True)
    client.interactions.delete(i.id)
    with pytest.raises(errors.NotFoundError):
        client.interactions.get(i.id)


def test_background_stream_survives_disconnect(base_url, client):
    """A background stream is not cancelled when its reader leaves."""
    with httpx.Client(base_url=base_url, timeout=30) as h:
        with h.stream("POST", "/v1/interactions", json={
                "model": "m", "input": "/words 20 delay=0.01", "stream": True,
                "background": True}) as r:
            import json
            first = next(line for line in r.iter_lines() if line.startswith("data: "))
            iid = json.loads(first[len("data: "):])["interaction"]["id"]
    done = _poll(client, iid, lambda g: g.status != "in_progress")
    assert done.status == "completed"
