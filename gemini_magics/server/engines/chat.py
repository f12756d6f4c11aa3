"""OpenAI-style chat completions: the request body and the streamed chunks.

Both engines that run a real model speak this dialect: the local engine hands the body to
llama.cpp in-process (xllamacpp), the openai engine posts it to any `/v1/chat/completions`
server (llama.cpp's server, vLLM, Ollama). One body builder and one chunk reader keep the two
answering alike: same stops, seeds, length caps, JSON-schema constraint, usage and errors.
"""
from __future__ import annotations

from typing import Any, Optional

from .base import EngineFailed, EngineRejected, EngineRequest, EngineResult, OnText

ROLES = {"system": "system", "user": "user", "assistant": "assistant", "model": "assistant"}


def chat_body(request: EngineRequest, default_max_tokens: int, *,
              extra: Optional[dict] = None) -> dict:
    """The streaming chat-completions body for `request` (`extra`: engine-specific fields)."""
    messages = [{"role": ROLES.get(m.get("role"), "user"), "content": m.get("content") or ""}
                for m in request.messages]
    if not messages:
        raise EngineRejected("The request has no messages; give the model at least one user turn.")
    p = request.params
    body: dict[str, Any] = {
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": p.max_output_tokens or default_max_tokens,
    }
    body.update(extra or {})
    if p.temperature is not None:
        body["temperature"] = p.temperature
    if p.top_p is not None:
        body["top_p"] = p.top_p
    if p.seed is not None:
        body["seed"] = p.seed & 0xFFFFFFFF  # llama.cpp seeds are uint32
    stops = [s for s in (p.stop_sequences or []) if s]
    if stops:
        body["stop"] = stops
    if request.json_schema is not None:
        if not isinstance(request.json_schema, dict):
            raise EngineRejected("The response JSON schema must be a JSON object.")
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": request.json_schema},
        }
    return body


class ChunkStream:
    """Collects one streamed chat completion and relays its text to `on_text`.

    `on_chunk(data)` takes each decoded chunk and returns True when the stream should stop
    (cancelled, or an error chunk). `n_ctx` only words the context-overflow sentence.
    """

    def __init__(self, on_text: OnText, n_ctx: Optional[int] = None, *,
                 who: str = "The local model"):
        self.on_text = on_text
        self.n_ctx = n_ctx
        self.who = who
        self.parts: list[str] = []
        self.finish = "stop"
        self.cancelled = False
        self.input_tokens: Optional[int] = None
        self.output_tokens: Optional[int] = None
        self.error: Optional[dict] = None
        self.raised: Optional[BaseException] = None

    def on_chunk(self, data: dict) -> bool:
        """xllamacpp's callback: returning True stops the stream and cancels the llama.cpp task."""
        try:
            return self._handle(data)
        except BaseException as e:  # xllamacpp would swallow it: keep it for the caller
            self.raised = e
            return True

    def _handle(self, data: dict) -> bool:
        if not isinstance(data, dict):
            raise EngineFailed(f"{self.who} sent a chunk that is not a JSON object.")
        if "error" in data:
            self.error = data["error"] if isinstance(data["error"], dict) else {"message": str(data["error"])}
            return True
        timings = data.get("timings")
        if timings:
            self.input_tokens = int(timings.get("prompt_n", 0)) + int(timings.get("cache_n", 0))
            self.output_tokens = int(timings.get("predicted_n", 0))
        usage = data.get("usage")
        if usage:
            self.input_tokens = usage.get("prompt_tokens", self.input_tokens)
            self.output_tokens = usage.get("completion_tokens", self.output_tokens)
        for choice in data.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if text:
                self.parts.append(text)
                if self.on_text(text) is False:
                    self.cancelled = True
                    return True
            reason = choice.get("finish_reason")
            if reason:
                self.finish = "length" if reason == "length" else "stop"
        return False

    def result(self) -> EngineResult:
        if self.raised is not None:
            raise self.raised
        if self.error is not None:
            raise self.error_exception(self.error)
        text = "".join(self.parts)
        return EngineResult(
            text=text,
            input_tokens=self.input_tokens or 0,
            output_tokens=self.output_tokens if self.output_tokens is not None else len(self.parts),
            finish="cancelled" if self.cancelled else self.finish,
        )

    def error_exception(self, err: dict, status: Optional[int] = None) -> Exception:
        """An error body as one sentence: EngineRejected if the caller can fix it."""
        if err.get("type") == "exceed_context_size_error":
            return EngineRejected(
                f"The conversation is {err.get('n_prompt_tokens', '?')} tokens but "
                f"{self.who.lower() if self.who.startswith('The ') else self.who} holds "
                f"{err.get('n_ctx', self.n_ctx or '?')}; shorten the input or start a new "
                f"conversation.")
        message = err.get("message") or "unknown error"
        code = err.get("code")
        code = code if isinstance(code, int) else (status or 500)
        if code < 500:
            return EngineRejected(f"{self.who} rejected the request: {message}")
        return EngineFailed(f"{self.who} failed: {message}")
