"""Record/replay cassettes, end to end: the real google-genai SDK, a real local server (echo
engine) over a real loopback socket while recording, and no server at all while replaying.

What a user notices: a replayed notebook gets the same interaction ids, text and stream events
as the recorded one, byte for byte; replay never opens a socket; a request that was not recorded
fails with one sentence saying how to re-record; the API key never lands in the cassette file.
"""
from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import pytest

from gemini_magics import replay
from gemini_magics.replay import Cassette, CassetteError, CassetteMiss
from gemini_magics.session import Session

KEY = "sk-test-SECRET-key-0123456789"
BEARER = "ya29.secret-bearer-token-abcdef"
GOOGLE_SHAPED = "AIza" + "Sy" + "0123456789abcdefghijklmnopqrstuvw"  # looks like a Google key
MODEL = "gemini-3-flash-preview"
DEAD_URL = "http://127.0.0.1:9"  # nothing listens here: replay must not need a server


def _client(cassette: Cassette, base_url: str, **options):
    from google import genai

    opts = {"base_url": base_url, "headers": {"Authorization": f"Bearer {BEARER}"}, **options}
    return genai.Client(api_key=KEY, http_options=cassette.http_options(opts))


def _dump(obj) -> dict:
    return obj.model_dump(mode="json")


def scenario(client) -> dict:
    """The calls a notebook makes; run once while recording and once while replaying."""
    from google.genai._interactions import NotFoundError

    out: dict = {}
    first = client.interactions.create(model=MODEL, input="Hello, cassette")
    out["create"] = _dump(first)
    out["create_text"] = first.output_text
    out["stream"] = [_dump(e) for e in
                     client.interactions.create(model=MODEL, input="/words 5", stream=True)]
    out["get"] = _dump(client.interactions.get(first.id))
    second = client.interactions.create(model=MODEL, input="A second turn",
                                        previous_interaction_id=first.id)
    third = client.interactions.create(model=MODEL, input="A third turn",
                                       previous_interaction_id=second.id)
    out["chain"] = [(t.id, t.previous_interaction_id, t.output_text) for t in (second, third)]
    out["repeat"] = [client.interactions.create(model=MODEL, input="Same again").id
                     for _ in range(2)]
    try:
        client.interactions.get("v1_does_not_exist")
    except NotFoundError as e:
        out["error"] = (e.status_code, str(e))
    raw = client.interactions.with_raw_response.create(model=MODEL, input="/words 3", stream=True)
    out["raw_stream"] = (raw.status_code, raw.headers["content-type"], raw.read())
    raw = client.interactions.with_raw_response.create(model=MODEL, input="raw json")
    out["raw_json"] = (raw.status_code, raw.headers["content-type"], raw.read())
    out["query_key"] = client.interactions.create(model=MODEL, input="key in the query",
                                                  extra_query={"key": KEY}).output_text
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Record the scenario from a fresh echo server, then stop the server."""
    from gemini_magics.server import start_server

    path = tmp_path_factory.mktemp("cassettes") / "session.json"
    srv = start_server(engine="echo", api_key=KEY)
    try:
        cassette = Cassette(path, "record")
        out = scenario(_client(cassette, srv.base_url))
    finally:
        srv.stop()
    return path, out


@pytest.fixture()
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(self, *args, **kwargs):
        raise AssertionError(f"replay opened a connection to {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def test_replay_gives_identical_outputs_without_a_server(recorded, offline):
    path, recorded_out = recorded
    replayed = scenario(_client(Cassette(path, "replay"), DEAD_URL))
    assert replayed == recorded_out
    # The scenario really exercised what it claims to.
    assert recorded_out["create_text"].startswith("Echo:")
    types = [e["event_type"] for e in recorded_out["stream"]]
    assert types[0] == "interaction.created" and types[-1] == "interaction.completed"
    assert types.count("step.delta") >= 4  # "/words 5": the first word comes in step.start
    assert recorded_out["chain"][1][1] == recorded_out["chain"][0][0]
    assert recorded_out["repeat"][0] != recorded_out["repeat"][1]
    assert recorded_out["error"][0] == 404


def test_replay_is_byte_for_byte(recorded, offline):
    path, recorded_out = recorded
    replayed = scenario(_client(Cassette(path, "replay"), DEAD_URL))
    status, content_type, body = replayed["raw_stream"]
    assert (status, content_type, body) == recorded_out["raw_stream"]
    assert content_type.startswith("text/event-stream") and body.count(b"\n\n") >= 5
    assert replayed["raw_json"] == recorded_out["raw_json"]


def test_api_key_and_tokens_never_reach_the_cassette(recorded):
    path, _ = recorded
    text = path.read_text(encoding="utf-8")
    assert KEY not in text
    assert BEARER not in text
    assert "x-goog-api-key" not in text.lower()
    assert "authorization" not in text.lower()


def test_cassette_is_plain_reviewable_json(recorded):
    path, recorded_out = recorded
    document = json.loads(path.read_text(encoding="utf-8"))
    exchanges = document["exchanges"]
    first = exchanges[0]
    assert first["request"]["method"] == "POST"
    assert first["request"]["body"] == {"model": MODEL, "input": "Hello, cassette"}
    # JSON bodies are stored as JSON, not as an escaped string: the answer is readable.
    assert first["response"]["json"]["id"] == recorded_out["create"]["id"]
    # SSE bodies are stored as a list of events, in order.
    stream = exchanges[1]["response"]
    assert [e["event"] for e in stream["sse"] if "event" in e] == \
        [e["event_type"] for e in recorded_out["stream"]]
    assert stream["sse"][-1] == {"raw": "data: [DONE]"}  # the stream's end, kept as it came


def test_unknown_request_fails_with_one_clear_sentence(recorded, offline):
    path, _ = recorded
    client = _client(Cassette(path, "replay"), DEAD_URL)
    with pytest.raises(CassetteMiss) as info:
        client.interactions.create(model=MODEL, input="never recorded")
    message = str(info.value)
    assert "POST /v1/interactions" in message
    assert "GEMINI_MAGICS_RECORD_MODE=record" in message
    assert str(path) in message
    assert "\n" not in message and message.endswith(".") and ". " not in message
    with pytest.raises(CassetteMiss, match=r"GET /v1/interactions/v1_other is not in it"):
        client.interactions.get("v1_other")


def test_identical_requests_replay_in_recorded_order_then_repeat(recorded, offline):
    path, recorded_out = recorded
    client = _client(Cassette(path, "replay"), DEAD_URL)
    ids = [client.interactions.create(model=MODEL, input="Same again").id for _ in range(3)]
    first, second = recorded_out["repeat"]
    assert ids == [first, second, second]
    strict = _client(Cassette(path, "replay", strict=True), DEAD_URL)
    for _ in range(2):
        strict.interactions.create(model=MODEL, input="Same again")
    with pytest.raises(CassetteMiss, match="recorded fewer times"):
        strict.interactions.create(model=MODEL, input="Same again")


def test_api_version_does_not_matter_for_matching(recorded, offline):
    path, recorded_out = recorded
    client = _client(Cassette(path, "replay"), DEAD_URL, api_version="v1beta")
    answer = client.interactions.create(model=MODEL, input="Hello, cassette")
    assert answer.id == recorded_out["create"]["id"]


def test_streaming_still_streams_while_recording(tmp_path):
    """The first event reaches the caller while the server is still generating."""
    from gemini_magics.server import start_server

    from google import genai

    srv = start_server(engine="echo", api_key=KEY)
    try:
        cassette = Cassette(tmp_path / "stream.json", "record")
        client = _client(cassette, srv.base_url)
        plain = genai.Client(api_key=KEY, http_options={"base_url": srv.base_url})
        seen_status = None
        for event in client.interactions.create(model=MODEL, input="/words 3 delay=0.3",
                                                stream=True):
            if event.event_type == "step.delta" and seen_status is None:
                seen_status = plain.interactions.get(interaction_id).status
                assert cassette.exchange_count == 0  # not written before the stream ends
            if event.event_type == "interaction.created":
                interaction_id = event.interaction.id
        assert seen_status == "in_progress"
        assert cassette.exchange_count == 1
    finally:
        srv.stop()


def test_secret_in_a_body_is_redacted(tmp_path):
    from gemini_magics.server import start_server

    path = tmp_path / "body.json"
    srv = start_server(engine="echo", api_key=KEY)
    try:
        live = _client(Cassette(path, "record"), srv.base_url)
        said = live.interactions.create(model=MODEL, input=f"my key is {KEY}").output_text
        other = live.interactions.create(model=MODEL, input=f"and {GOOGLE_SHAPED}").output_text
    finally:
        srv.stop()
    assert KEY in said and GOOGLE_SHAPED in other
    text = path.read_text(encoding="utf-8")
    assert KEY not in text and GOOGLE_SHAPED not in text
    # Replay still matches the request (scrubbed the same way) and answers with the redaction.
    replayed = _client(Cassette(path, "replay"), DEAD_URL)
    again = replayed.interactions.create(model=MODEL, input=f"my key is {KEY}").output_text
    assert again == said.replace(KEY, replay.REDACTED)


@pytest.mark.parametrize("shaped", [GOOGLE_SHAPED[:30], GOOGLE_SHAPED + "RunOnTail"],
                         ids=["cut short", "run on"])
def test_the_cassette_hides_every_key_the_output_hides(tmp_path, shaped):
    """One redaction rule: a Google-shaped key of another length, which the answer on screen
    hides, is not left in the cassette (in part or whole) either."""
    from gemini_magics.client import redact
    from gemini_magics.server import start_server

    path = tmp_path / "shaped.json"
    srv = start_server(engine="echo", api_key=KEY)
    try:
        live = _client(Cassette(path, "record"), srv.base_url)
        said = live.interactions.create(model=MODEL, input=f"and {shaped}").output_text
    finally:
        srv.stop()
    pieces = (shaped[:24], shaped[-12:])
    assert shaped in said and not any(p in redact(said) for p in pieces)  # the output
    recorded = path.read_text(encoding="utf-8")
    assert not any(p in recorded for p in pieces)


def test_async_client_records_and_replays(tmp_path):
    from gemini_magics.server import start_server

    path = tmp_path / "aio.json"

    async def run(client):
        one = await client.aio.interactions.create(model=MODEL, input="async hello")
        events = [e.event_type async for e in
                  await client.aio.interactions.create(model=MODEL, input="/words 3",
                                                       stream=True)]
        return one.id, one.output_text, events

    srv = start_server(engine="echo", api_key=KEY)
    try:
        recorded_out = asyncio.run(run(_client(Cassette(path, "record"), srv.base_url)))
    finally:
        srv.stop()
    replayed = asyncio.run(run(_client(Cassette(path, "replay"), DEAD_URL)))
    assert replayed == recorded_out
    assert recorded_out[2][-1] == "interaction.completed"


def test_environment_variables_choose_the_cassette(tmp_path):
    from gemini_magics.server import start_server

    path = tmp_path / "env.json"
    env = {replay.ENV_CASSETTE: str(path), replay.ENV_MODE: "record"}
    opened = Session().env_cassettes
    srv = start_server(engine="echo", api_key=KEY)
    try:
        from google import genai

        options = replay.wrap_http_options({"base_url": srv.base_url}, env, opened)
        client = genai.Client(api_key=KEY, http_options=options)
        recorded_id = client.interactions.create(model=MODEL, input="from env").id
    finally:
        srv.stop()
    # The same (path, mode) gives the same cassette, so rebuilding a client per cell is fine.
    assert replay.cassette_from_env(env, opened) is replay.cassette_from_env(env, opened)
    env[replay.ENV_MODE] = "replay"
    options = replay.wrap_http_options({"base_url": DEAD_URL}, env, opened)
    from google import genai

    client = genai.Client(api_key=KEY, http_options=options)
    replayed = client.interactions.create(model=MODEL, input="from env")
    assert replayed.id == recorded_id
    assert replay.wrap_http_options("unchanged", {}) == "unchanged"


def test_an_active_cassette_wins_over_the_environment_until_ejected(tmp_path):
    env = {replay.ENV_CASSETTE: str(tmp_path / "from_env.json"), replay.ENV_MODE: "record"}
    session = Session()
    try:
        active = session.use_cassette(tmp_path / "active.json", "record")
        assert session.current_cassette(env) is active
        assert session.use_cassette(tmp_path / "active.json", "record") is not active  # fresh
    finally:
        session.eject()
    assert session.current_cassette(env).path == env[replay.ENV_CASSETTE]
    assert session.current_cassette({}) is None


def test_auto_mode_records_when_missing_and_replays_when_present(tmp_path):
    path = tmp_path / "auto.json"
    assert Cassette(path, "auto").mode == "record"
    assert not path.exists()  # nothing recorded, nothing written
    path.write_text('{"format": "gemini-magics cassette", "version": 1, "exchanges": []}',
                    encoding="utf-8")
    assert Cassette(path, "auto").mode == "replay"


def test_unwritable_cassette_path_is_one_clear_sentence(tmp_path):
    with pytest.raises(CassetteError, match="Cannot write cassette .*: choose a writable"):
        Cassette(tmp_path, "record")  # a folder, not a file


@pytest.mark.parametrize("env, words", [
    ({replay.ENV_CASSETTE: "x.json", replay.ENV_MODE: "rewind"}, ["rewind", "record", "replay"]),
    ({replay.ENV_MODE: "replay"}, [replay.ENV_CASSETTE]),
])
def test_bad_environment_is_one_clear_sentence(env, words):
    with pytest.raises(CassetteError) as info:
        replay.cassette_from_env(env)
    message = str(info.value)
    assert all(w in message for w in words) and "\n" not in message


def test_missing_or_corrupt_cassette_is_one_clear_sentence(tmp_path):
    with pytest.raises(CassetteError, match="does not exist: record it first"):
        Cassette(tmp_path / "nope.json", "replay")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(CassetteError, match="not a readable JSON cassette"):
        Cassette(bad, "replay")
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(CassetteError, match="not a gemini-magics cassette"):
        Cassette(other, "replay")


class BusyOnce(httpx.BaseTransport):
    """An upstream that answers 503 once (as Google does when overloaded), then forwards."""

    def __init__(self):
        self.inner, self.busy = httpx.HTTPTransport(), True

    def handle_request(self, request):
        if self.busy:
            self.busy = False
            return httpx.Response(503, json={"error": {
                "code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})
        return self.inner.handle_request(request)


def test_a_retried_transient_error_is_not_kept(tmp_path):
    """The SDK retries a 503 by itself; the cassette keeps only the answer that counted."""
    from gemini_magics.server import start_server

    from google import genai

    path = tmp_path / "retry.json"
    srv = start_server(engine="echo", api_key=KEY)
    try:
        options = Cassette(path, "record").http_options({
            "base_url": srv.base_url, "client_args": {"transport": BusyOnce()},
            "retry_options": {"initial_delay": 0.01, "max_delay": 0.01}})
        client = genai.Client(api_key=KEY, http_options=options)
        answer = client.interactions.create(model=MODEL, input="after a retry")
    finally:
        srv.stop()
    document = json.loads(path.read_text(encoding="utf-8"))
    assert [e["response"]["status"] for e in document["exchanges"]] == [200]
    replayed = _client(Cassette(path, "replay", strict=True), DEAD_URL)
    assert replayed.interactions.create(model=MODEL, input="after a retry").id == answer.id


def test_a_stream_stopped_early_replays_what_was_received(tmp_path):
    from gemini_magics.server import start_server

    path = tmp_path / "stopped.json"
    srv = start_server(engine="echo", api_key=KEY)
    try:
        client = _client(Cassette(path, "record"), srv.base_url)
        stream = client.interactions.create(model=MODEL, input="/words 50 delay=0.05",
                                            stream=True)
        first = [e.event_type for _, e in zip(range(4), stream)]
        stream.close()
    finally:
        srv.stop()
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["exchanges"][0]["response"]["incomplete"] is True
    replayed = _client(Cassette(path, "replay"), DEAD_URL)
    again = [e.event_type for e in replayed.interactions.create(
        model=MODEL, input="/words 50 delay=0.05", stream=True)]
    assert again[:4] == first and "interaction.completed" not in again


# A committed cassette: proves files already next to notebooks keep replaying as the code
# changes. Re-record it with `python tests/test_replay.py` (echo engine, deterministic prompts).
FIXTURE = Path(__file__).parent / "data" / "cassettes" / "echo_basics.json"


def fixture_scenario(client) -> list:
    first = client.interactions.create(model=MODEL, input="What is a cassette?")
    events = [e.event_type for e in client.interactions.create(
        model=MODEL, input="/words 4", stream=True)]
    follow = client.interactions.create(model=MODEL, input="And a follow-up?",
                                        previous_interaction_id=first.id)
    return [first.id, first.output_text, events, follow.id, follow.output_text]


def test_committed_cassette_still_replays(offline):
    document = json.loads(FIXTURE.read_text(encoding="utf-8"))
    first_json = document["exchanges"][0]["response"]["json"]
    out = fixture_scenario(_client(Cassette(FIXTURE, "replay", strict=True), DEAD_URL))
    assert out[0] == first_json["id"]
    assert out[1] == first_json["steps"][-1]["content"][0]["text"]
    assert out[2][0] == "interaction.created" and out[2][-1] == "interaction.completed"
    assert "1 model turn" in out[4]


if __name__ == "__main__":
    from gemini_magics.server import start_server

    with start_server(engine="echo") as server:
        print(fixture_scenario(_client(Cassette(FIXTURE, "record"), server.base_url)))
