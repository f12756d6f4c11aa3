"""The openai engine against a small `/v1/chat/completions` server on a real socket (fast).

tests/server/test_openai_engine.py runs the same engine against a real llama.cpp server (slow,
and never exact about what the model says). Here the engine server is a few lines of ours that
answer deterministically, so the test can check exactly what the engine was sent (messages, key,
limits) and that every streamed word, the usage and the engine's errors reach the SDK as they
should, through `start_server` and the real google-genai SDK.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import make_client

from gemini_magics.server import start_server
from gemini_magics.server.engines.openai import OpenAIEngine

ENGINE_KEY = "engine-socket-key-3c9d"


class ChatServer(ThreadingHTTPServer):
    """Answers a chat completion by streaming back the last user message's words, then a usage
    chunk (prompt tokens: words of every message; completion tokens: words streamed). Records
    each request's headers and body. `status` other than 200 answers an OpenAI-style error."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list = []
        self.status = 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer

    def do_GET(self):  # /v1/models
        self._json(200, {"data": [{"id": "tiny-chat"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.requests.append({"auth": self.headers.get("authorization"), "body": body})
        if self.server.status != 200:
            self._json(self.server.status, {"error": {"message": "Invalid API Key",
                                                      "code": self.server.status}})
            return
        words = body["messages"][-1]["content"].split()[: body["max_tokens"]]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for i, word in enumerate(words):
            delta = {"content": word if i == 0 else " " + word}
            self._event({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        finish = "length" if len(words) == body["max_tokens"] else "stop"
        self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        prompt = sum(len(m["content"].split()) for m in body["messages"])
        self._event({"choices": [], "usage": {"prompt_tokens": prompt,
                                              "completion_tokens": len(words),
                                              "total_tokens": prompt + len(words)}})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, data: dict) -> None:
        self.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")
        self.wfile.flush()

    def _json(self, status: int, data: dict) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture()
def chat():
    server = ChatServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture()
def ours(chat):
    engine = OpenAIEngine(chat.url, api_key=ENGINE_KEY)
    with start_server(engine=engine) as srv:
        yield srv
    engine.close()


def test_every_streamed_word_and_the_engines_usage_reach_the_sdk(chat, ours):
    client = make_client(ours.base_url)
    events = list(client.interactions.create(model="gemini-3.5-flash", stream=True,
                                             input="one two three four five"))
    text = "".join(e.delta.text for e in events
                   if e.event_type == "step.delta" and getattr(e.delta, "type", "") == "text")
    assert text == "one two three four five"
    final = events[-1].interaction
    assert final.status == "completed"
    assert (final.usage.total_input_tokens, final.usage.total_output_tokens) == (5, 5)


def test_the_engine_gets_the_history_the_system_instruction_the_limit_and_its_key(chat, ours):
    client = make_client(ours.base_url)
    first = client.interactions.create(model="m", input="alpha beta")
    client.interactions.create(model="m", input="gamma", previous_interaction_id=first.id,
                               system_instruction="Be brief.",
                               generation_config={"max_output_tokens": 7})
    sent = chat.requests[-1]
    assert sent["auth"] == f"Bearer {ENGINE_KEY}"
    assert sent["body"]["model"] == "tiny-chat"  # the first model the engine lists
    assert sent["body"]["max_tokens"] == 7 and sent["body"]["stream"] is True
    roles = [(m["role"], m["content"]) for m in sent["body"]["messages"]]
    assert roles == [("system", "Be brief."), ("user", "alpha beta"),
                     ("assistant", "alpha beta"), ("user", "gamma")]


def test_an_engine_that_refuses_the_key_is_one_sentence_naming_the_engine(chat, ours):
    chat.status = 401
    client = make_client(ours.base_url)
    failed = client.interactions.create(model="m", input="hello")
    assert failed.status == "failed"
    message = failed.errors[0].message if failed.errors else ""
    assert chat.url in message and "Invalid API Key" in message
    assert message.count(". ") <= 1 and "Traceback" not in message
