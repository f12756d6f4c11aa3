"""Bad input: a Google-style 4xx naming the field; never a 500, never a hung connection."""
from __future__ import annotations

import socket

import httpx
import pytest
from google.genai import _interactions as errors


def _error(r, code=400):
    assert r.status_code == code, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == code and isinstance(err["message"], str) and err["status"]
    assert "Traceback" not in err["message"]
    return err["message"]


@pytest.mark.parametrize("body, field", [
    ({"model": 5, "input": "x"}, "'model'"),
    ({"model": "m", "input": 5}, "'input'"),
    ({"model": "m", "input": "x", "stream": "yes"}, "'stream'"),
    ({"model": "m", "input": "x", "store": 1}, "'store'"),
    ({"model": "m", "input": "x", "generation_config": {"temperature": "hot"}},
     "generation_config.temperature"),
    ({"model": "m", "input": "x", "generation_config": {"max_output_tokens": 2.5}},
     "generation_config.max_output_tokens"),
    ({"model": "m", "input": "x", "generation_config": {"stop_sequences": "STOP"}},
     "generation_config.stop_sequences"),
    ({"model": "m", "input": "x", "generation_config": []}, "'generation_config'"),
    ({"model": "m", "input": "x", "system_instruction": ["a"]}, "'system_instruction'"),
    ({"model": "m", "input": "x", "tools": {"type": "function"}}, "'tools'"),
    ({"model": "m", "input": "x", "previous_interaction_id": 3}, "'previous_interaction_id'"),
    ({"model": "m", "input": "x", "temprature": 0.5}, "'temprature'"),
    ({"model": "m", "agent": "a", "input": "x"}, "'model' or 'agent'"),
    ({"input": "x"}, "'model'"),
    ({"model": "m"}, "'input'"),
    ({"model": "m", "input": []}, "'input'"),
    ({"model": "m", "input": [{"type": "text"}]}, "input[0].text"),
    ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"model": "m", "input": [{"type": "function_call", "name": "f"}]}, "input[0].id"),
    ({"model": "m", "input": [{"type": "image", "mime_type": "image/png"}]}, "input[0]"),
])
def test_wrong_fields_are_named(http, body, field):
    assert field in _error(http.post("/v1beta/interactions", json=body))


@pytest.mark.parametrize("raw, words", [
    (b"{not json", "not valid JSON"),
    (b"", "empty"),
    (b"[1, 2]", "JSON object"),
    (b'"text"', "JSON object"),
    (b"\xff\xfe\x00", "not valid JSON"),
])
def test_malformed_bodies(http, raw, words):
    r = http.post("/v1/interactions", content=raw, headers={"content-type": "application/json"})
    assert words in _error(r)


def test_oversized_body_is_413_and_the_connection_is_not_hung(http):
    big = b'{"model":"m","input":"' + b"a" * (33 * 1024 * 1024) + b'"}'
    r = http.post("/v1/interactions", content=big)
    assert "32 MiB" in _error(r, 413)
    assert http.post("/v1/interactions", json={"model": "m", "input": "still alive"}).status_code == 200


def test_truncated_body_does_not_hang(base_url):
    """A client that promises more body than it sends and hangs up gets no hung server."""
    host, port = base_url.replace("http://", "").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/interactions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                  b"Content-Type: application/json\r\n\r\n{\"model\":")
    with httpx.Client(base_url=base_url, timeout=10) as c:
        assert c.post("/v1/interactions", json={"model": "m", "input": "ok"}).status_code == 200


def test_unknown_ids_and_routes(http):
    assert "v1_missing" in _error(http.get("/v1/interactions/v1_missing"), 404)
    assert "v1_missing" in _error(http.post("/v1/interactions/v1_missing/cancel"), 404)
    assert "v1_missing" in _error(http.delete("/v1/interactions/v1_missing"), 404)
    assert "/{version}/interactions" in _error(http.get("/nothing/here"), 404)
    assert "listing" in _error(http.get("/v1beta/interactions"), 405)


def test_bad_query_parameters(http, client):
    iid = client.interactions.create(model="m", input="x").id
    assert "'stream'" in _error(http.get(f"/v1/interactions/{iid}", params={"stream": "maybe"}))
    assert "'last_event_id'" in _error(
        http.get(f"/v1/interactions/{iid}", params={"stream": "true", "last_event_id": "abc"}))
    assert "'include_input'" in _error(
        http.get(f"/v1/interactions/{iid}", params={"include_input": "2"}))


def test_sdk_raises_its_typed_errors_with_the_message(client):
    with pytest.raises(errors.BadRequestError) as exc:
        client.interactions.create(model="m", input="x", extra_body={"stream": "yes"})
    assert exc.value.status_code == 400 and "'stream'" in str(exc.value)
    with pytest.raises(errors.NotFoundError):
        client.interactions.get("v1_missing")


def test_api_key_is_required_when_set_and_never_echoed():
    from conftest import make_client

    from gemini_magics.server import start_server

    key = "sekrit-key-123"
    with start_server(engine="echo", api_key=key) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=10) as h:
            no_key = h.post("/v1/interactions", json={"model": "m", "input": "x"})
            msg = _error(no_key, 401)
            bad = h.post("/v1/interactions", json={"model": "m", "input": "x"},
                         headers={"x-goog-api-key": "guess-42"})
            assert key not in msg and key not in bad.text and "guess-42" not in bad.text
            _error(bad, 401)
            _error(h.get("/v1/interactions/v1_x"), 401)
        from google import genai

        ok = genai.Client(api_key=key, http_options={"base_url": srv.base_url})
        assert ok.interactions.create(model="m", input="x").status == "completed"
        dummy = make_client(srv.base_url)  # keep a reference: the SDK closes a dropped client
        with pytest.raises(errors.AuthenticationError):
            dummy.interactions.create(model="m", input="x")


def test_non_loopback_host_needs_a_key():
    from gemini_magics.server import start_server

    with pytest.raises(ValueError, match="api"):
        start_server(engine="echo", host="0.0.0.0")
