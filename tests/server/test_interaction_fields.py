"""google-genai 3.6's other interaction fields on the local server: `webhook_config` (the
finished interaction POSTed to a loopback listener), `service_tier` (reported as asked), the
usage on `interaction.status_update`.

Through the real SDK and a real loopback HTTP listener (stdlib http.server on a thread).
"""
from __future__ import annotations

import json
import queue
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gemini_magics.server.protocol import WEBHOOK_HOSTS_ENV


@pytest.fixture()
def listener():
    """A loopback HTTP server; yields (url, queue of (path, headers, JSON body) it received)."""
    got: queue.Queue = queue.Queue()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            got.put((self.path, dict(self.headers), json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", got
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("stream", [False, True])
def test_the_finished_interaction_is_posted_to_a_loopback_webhook(client, listener, stream):
    url, got = listener
    config = {"uris": [url + "/hook"], "user_metadata": {"lesson": 3}}
    if stream:
        events = list(client.interactions.create(model="m", input="ping", stream=True,
                                                 webhook_config=config))
        iid = events[0].interaction.id
    else:
        iid = client.interactions.create(model="m", input="ping", webhook_config=config).id
    path, headers, event = got.get(timeout=10)
    assert path == "/hook" and headers["Content-Type"] == "application/json"
    assert event["type"] == "interaction.completed" and event["id"] == iid
    assert event["user_metadata"] == {"lesson": 3} and event["timestamp"]
    sent = event["interaction"]
    assert sent["id"] == iid and sent["status"] == "completed"
    assert sent["steps"][-1]["content"][0]["text"].endswith("You said: ping")
    assert sent["webhook_config"] == config
    assert got.empty()  # one try, one POST


def test_webhooks_off_loopback_are_refused_unless_allowed(http, monkeypatch):
    body = {"model": "m", "input": "x", "webhook_config": {"uris": ["https://example.com/h"]}}
    r = http.post("/v1beta/interactions", json=body)
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "'webhook_config.uris[0]'" in message and "loopback addresses only" in message
    for bad_uri, words in (("ftp://127.0.0.1/x", "not an http(s) URL"),
                           ("http://[::1/x", "not an http(s) URL"),
                           ("http://127.0.0.1:99999/x", "not an http(s) URL")):
        r = http.post("/v1beta/interactions", json={**body, "webhook_config": {"uris": [bad_uri]}})
        assert r.status_code == 400 and words in r.json()["error"]["message"]
    r = http.post("/v1beta/interactions", json={**body, "webhook_config": {"uris": "http://x"}})
    assert r.status_code == 400 and "must be a list" in r.json()["error"]["message"]
    monkeypatch.setenv(WEBHOOK_HOSTS_ENV, "any")
    body["webhook_config"] = {"uris": ["http://nonexistent.invalid/h"]}
    r = http.post("/v1beta/interactions", json=body)
    assert r.status_code == 200 and r.json()["status"] == "completed"


def test_a_dead_webhook_does_not_change_the_turn(client):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/h"
    i = client.interactions.create(model="m", input="still fine", webhook_config={"uris": [dead]})
    assert i.status == "completed" and i.output_text.endswith("You said: still fine")


@pytest.mark.parametrize("tier", ["flex", "deferred", "priority"])
def test_the_service_tier_asked_for_is_reported(client, tier):
    i = client.interactions.create(model="m", input="x", service_tier=tier)
    assert i.service_tier == tier
    assert client.interactions.get(i.id).service_tier == tier
    events = list(client.interactions.create(model="m", input="x", service_tier=tier, stream=True))
    assert events[0].interaction.service_tier == events[-1].interaction.service_tier == tier


def test_an_unknown_service_tier_is_one_sentence(http):
    r = http.post("/v1beta/interactions", json={"model": "m", "input": "x", "service_tier": "gold"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == ("'service_tier' is 'gold'; use one of standard, flex, "
                                            "priority, deferred.")


def test_the_status_update_carries_usage(client):
    events = list(client.interactions.create(model="m", input="x", stream=True))
    update = events[1]
    assert update.event_type == "interaction.status_update" and update.status == "in_progress"
    assert update.usage is not None and update.usage.total_tokens == 0
