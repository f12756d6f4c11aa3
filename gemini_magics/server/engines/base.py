"""The contract between the local server and its text engines.

The server turns an interaction's history (steps, media, tools) into plain chat messages and
generation parameters; an engine only turns those into text, one chunk at a time. Engines are
blocking and run on a worker thread; `on_text` returning False stops generation (cancel).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class GenerationParams:
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    max_output_tokens: Optional[int] = None
    stop_sequences: list[str] = field(default_factory=list)
    seed: Optional[int] = None


@dataclass
class EngineRequest:
    model: str
    # OpenAI-style chat messages: [{"role": "system"|"user"|"assistant", "content": str}, ...]
    messages: list[dict]
    params: GenerationParams = field(default_factory=GenerationParams)
    # When set, the output must be JSON valid against this schema (constrained decoding).
    json_schema: Optional[dict] = None


@dataclass
class EngineResult:
    text: str
    input_tokens: int
    output_tokens: int
    # "stop" (natural end or stop sequence), "length" (max_output_tokens), "cancelled"
    finish: str = "stop"
    # Set (to the cap) when the engine's own default length cap ended the reply; see own_cap.
    capped_at: Optional[int] = None


def own_cap(result: EngineResult, request: EngineRequest, cap: int) -> EngineResult:
    """`result`, told apart when the engine's own default cap (the request set no
    max_output_tokens) cut it: that is the emulator's budget, not the caller's limit, so it ends
    "stop" (completed; the quickstart's background poll waits for "completed" and would spin
    forever on "incomplete") with `capped_at` set, which the server passes on so the footer can
    say the reply was cut and how to get more."""
    if result.finish == "length" and request.params.max_output_tokens is None:
        result.finish = "stop"
        result.capped_at = cap
    return result


OnText = Callable[[str], bool]


class EngineError(Exception):
    """A failure an engine words as one sentence for the client (a dead engine, a request it
    rejected): the server passes its message on. Any other exception's text may quote anything
    (a file, a schema) and stays in the server's log."""


class EngineRejected(EngineError, ValueError):
    """The engine refused the request as sent: the caller can fix it."""


class EngineFailed(EngineError, RuntimeError):
    """The engine itself failed or could not be reached."""


class Engine(ABC):
    """A text generator. Thread-safe: the server may call `generate` from several threads."""

    name: str = "engine"

    @abstractmethod
    def generate(self, request: EngineRequest, on_text: OnText) -> EngineResult:
        """Generate a reply, calling `on_text(chunk)` as each chunk is produced.

        If `on_text` returns False, stop as soon as possible and return finish="cancelled"
        with the text produced so far.
        """

    def count_tokens(self, text: str) -> int:
        """Approximate token count, for usage figures of inputs."""
        return max(1, len(text.split())) if text else 0

    def count_input(self, request: EngineRequest) -> int:
        """The input tokens `generate` would report for `request` (the server's countTokens).
        By default each message's `count_tokens`, which is what the echo engine reports."""
        return sum(self.count_tokens(m.get("content") or "") for m in request.messages
                   if isinstance(m.get("content"), str))

    def close(self) -> None:
        """Release resources (model memory, threads)."""
