"""The openai engine: any OpenAI-compatible `/v1/chat/completions` server behind our API.

Why: one model per kernel does not scale to a classroom or a GPU box. Engines built for serving
(llama.cpp's `llama-server`, vLLM, Ollama) batch many users on one model; this engine lets
`gemini-magics serve --engine openai --engine-url URL` put the Interactions API (streaming,
stateful chains, stateless history, function calling, `--schema`) in front of one of them.
Everything above the engine (history → messages, tools, planning of function calls through a
JSON schema, storage) is the same code the local engine uses; this module only moves the chat
body (`chat.chat_body`) over HTTP and reads the streamed chunks (`chat.ChunkStream`).

Choices: function calls are planned with `response_format` JSON schemas (as with the local
model), not the engine's own `tools`, because schema-constrained output is what llama.cpp,
vLLM and Ollama all support alike; images are not sent (the chat messages are text). The key
is read from an environment variable named on the command line, never from the command line.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Optional

from .base import Engine, EngineFailed, EngineRequest, EngineResult, OnText, own_cap
from .chat import ChunkStream, chat_body

DEFAULT_MAX_OUTPUT_TOKENS = 1024
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 300.0  # between chunks: a busy engine may queue a request for a while


def chat_url(url: str) -> str:
    """`.../v1/chat/completions` from a base URL given with or without `/v1`."""
    base = url.strip().rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


class OpenAIEngine(Engine):
    """Streams chat completions from `url`. Thread-safe: one pooled HTTP client, and the engine
    server does its own queueing or batching."""

    name = "openai"

    def __init__(self, url: str, model: Optional[str] = None, api_key: Optional[str] = None):
        if not url or not url.strip().lower().startswith(("http://", "https://")):
            raise ValueError(f"--engine-url must be an http(s) URL such as http://127.0.0.1:8080, "
                             f"not {url!r}.")
        self.url = chat_url(url)
        self.models_url = self.url[: -len("/chat/completions")] + "/models"
        self.model = model or None
        self._api_key = api_key or None
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<OpenAIEngine {self.url} model={self.model or '(the server default)'}>"

    def _http(self) -> Any:
        with self._lock:
            if self._client is None:
                import httpx  # deferred: only engines that talk HTTP need it

                headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
                self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(
                    READ_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS))
            return self._client

    def engine_model(self) -> str:
        """The model name sent to the engine: --engine-model, else the first the engine lists
        (vLLM needs a real name; llama.cpp and Ollama accept their loaded one)."""
        if self.model is None:
            try:
                r = self._http().get(self.models_url)
                data = r.json().get("data") if r.status_code == 200 else None
                self.model = (data[0].get("id") if data else None) or "default"
            except Exception:  # noqa: BLE001 - any engine without /v1/models: use a placeholder
                self.model = "default"
        return self.model

    def generate(self, request: EngineRequest, on_text: OnText) -> EngineResult:
        import httpx  # deferred: only engines that talk HTTP need it

        body = chat_body(request, DEFAULT_MAX_OUTPUT_TOKENS)
        body["model"] = self.engine_model()
        state = ChunkStream(on_text, who=f"The engine at {self.url}")
        try:
            with self._http().stream("POST", self.url, json=body) as r:
                if r.status_code != 200:
                    raise state.error_exception(_error_body(r), r.status_code)
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    try:
                        chunk = json.loads(payload)
                    except ValueError:
                        continue  # like the SDKs: a line that is not JSON is skipped
                    if state.on_chunk(chunk):
                        break  # cancelled or an error chunk: closing the stream stops the engine
        except httpx.TransportError as e:
            raise EngineFailed(f"The engine at {self.url} could not be reached or stopped "
                               f"answering ({type(e).__name__}: {e}); check that it runs and "
                               f"--engine-url.") from None
        return own_cap(state.result(), request, DEFAULT_MAX_OUTPUT_TOKENS)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _error_body(response: Any) -> dict:
    response.read()
    try:
        err = response.json().get("error")
    except (ValueError, AttributeError):
        err = None
    if isinstance(err, dict):
        return err
    text = " ".join(response.text.split())[:200] or f"HTTP {response.status_code}"
    return {"message": err if isinstance(err, str) else text, "code": response.status_code}
