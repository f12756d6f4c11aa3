"""A streamed turn whose client drops keeps running for a grace period (server/resume.py): the
client resumes it from its last event id and gets the rest, nothing lost or repeated; with no
reader back by the end of the grace it ends cancelled. A real echo server, raw httpx streams
whose connections are really closed."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from gemini_magics.server import start_server

PROMPT = "/words 200 delay=0.02"  # ~4 s of words, one word per text delta
WORDS = [f"w{i}" for i in range(1, 201)]
GRACE_S = 1.0
DEADLINE_S = 30  # every wait below ends well before this, or the test fails


@pytest.fixture(scope="module")
def server():
    srv = start_server(engine="echo")
    srv.service.resumes.seconds = GRACE_S  # read on every drop, like the other timeouts
    yield srv
    srv.stop()


def _events(response: httpx.Response, limit: int = 0):
    """The SSE events of `response` (dicts), at most `limit` of them when given."""
    count = 0
    for line in response.iter_lines():
        if line.startswith("data: {"):
            yield json.loads(line[6:])
            count += 1
            if count == limit:
                return


def _text(events: list) -> str:
    return "".join((e.get("delta") or {}).get("text") or "" for e in events)


def _dropped(base_url: str, store: bool = True, events: int = 25) -> list:
    """Start a streamed turn, read its first `events` events, then close the connection."""
    body = {"model": "m", "input": PROMPT, "stream": True, "store": store}
    with httpx.Client(base_url=base_url, timeout=DEADLINE_S) as c:
        with c.stream("POST", "/v1beta/interactions", json=body) as r:
            assert r.status_code == 200
            read = list(_events(r, events))
    assert len(read) == events  # the client is closed: its socket too
    return read


def _resume(base_url: str, read: list, iid: str = "") -> list:
    """GET the rest of the turn's stream after the last of the events `read`."""
    iid = iid or read[0]["interaction"]["id"]
    with httpx.Client(base_url=base_url, timeout=DEADLINE_S) as c:
        with c.stream("GET", f"/v1beta/interactions/{iid}",
                      params={"stream": "true", "last_event_id": read[-1]["event_id"]}) as r:
            assert r.status_code == 200, r.read()
            return list(_events(r))


def _whole(first: list, rest: list) -> None:
    """The two reads are the whole stream once: every event id once, every word in order."""
    ids = [e["event_id"] for e in first + rest]
    assert len(ids) == len(set(ids))
    assert _text(first + rest).split() == WORDS
    assert rest[-1]["event_type"] == "interaction.completed"
    assert rest[-1]["interaction"]["status"] == "completed"


def _status_when_ended(base_url: str, iid: str) -> dict:
    """GET the turn (JSON, not a reader) until it is no longer in progress."""
    deadline = time.monotonic() + DEADLINE_S
    with httpx.Client(base_url=base_url, timeout=DEADLINE_S) as c:
        while time.monotonic() < deadline:
            r = c.get(f"/v1beta/interactions/{iid}")
            assert r.status_code == 200, r.text
            if r.json()["status"] != "in_progress":
                return r.json()
            time.sleep(0.05)
    raise AssertionError(f"the turn was still in progress after {DEADLINE_S} s")


@pytest.mark.parametrize("store", [True, False], ids=["stored", "store=false"])
def test_a_dropped_stream_is_resumed_from_its_last_event(server, store):
    first = _dropped(server.base_url, store)
    assert 0 < len(_text(first).split()) < 50
    _whole(first, _resume(server.base_url, first))


def test_without_a_reader_the_turn_ends_cancelled_after_the_grace(server):
    first = _dropped(server.base_url)
    read = len(_text(first).split())
    final = _status_when_ended(server.base_url, first[0]["interaction"]["id"])
    assert final["status"] == "cancelled"
    made = len(_text([{"delta": c} for s in final["steps"] for c in s.get("content") or []
                      if s["type"] == "model_output"]).split())
    # it went on for the grace (~50 words at 0.02 s a word), then stopped short of the end
    assert read + 10 < made < len(WORDS)


def test_an_unstored_turn_that_ended_unread_is_still_resumable_within_the_grace(server):
    server.service.resumes.seconds = DEADLINE_S  # this one ends unread first: ~4 s of words
    try:
        first = _dropped(server.base_url, store=False)
        assert _status_when_ended(server.base_url,
                                  first[0]["interaction"]["id"])["status"] == "completed"
        _whole(first, _resume(server.base_url, first))
    finally:
        server.service.resumes.seconds = GRACE_S


def test_a_resumed_stream_can_drop_and_be_resumed_again(server):
    first = _dropped(server.base_url)
    iid = first[0]["interaction"]["id"]
    with httpx.Client(base_url=server.base_url, timeout=DEADLINE_S) as c:
        with c.stream("GET", f"/v1beta/interactions/{iid}",
                      params={"stream": "true", "last_event_id": first[-1]["event_id"]}) as r:
            second = list(_events(r, 25))
    _whole(first + second, _resume(server.base_url, second, iid))


def test_streams_read_to_the_end_leave_nothing_behind(server):
    """A stream read whole is not held for a resume (a held turn would stay for the grace, made
    longer than this test's wait here), whether its turn ended before the stream started or
    after."""
    ids = []
    server.service.resumes.seconds = 2 * DEADLINE_S
    try:
        with httpx.Client(base_url=server.base_url, timeout=DEADLINE_S) as c:
            for store, prompt in [(s, p) for s in (True, False)
                                  for p in ("/words 3", "/words 20 delay=0.01")] * 3:
                with c.stream("POST", "/v1beta/interactions",
                              json={"model": "m", "input": prompt, "stream": True,
                                    "store": store}) as r:
                    events = list(_events(r))
                assert events[-1]["interaction"]["status"] == "completed"
                ids.append(events[0]["interaction"]["id"])
        deadline = time.monotonic() + DEADLINE_S  # the workers forget a turn just after its end
        while any(i in server.service.live for i in ids) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not [i for i in ids
                    if i in server.service.live or i in server.service.resumes._turns]
    finally:
        server.service.resumes.seconds = GRACE_S
