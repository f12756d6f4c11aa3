"""The echo engine: deterministic, instantaneous replies that prove what the server passed in.

Used by the fast tests and the benchmarks, where a real model would be slow and unpredictable.
Every reply shows that the whole conversation reached the engine:

    [system: "<system instruction>"] Echo: I saw 2 user turns and 1 model turn. You said: <last user text>

(the `[system: ...]` marker only when a system instruction is present). One word is one token
and one streamed chunk, so `max_output_tokens` cuts the reply after that many words (finish
"length") and `stop_sequences` cut it before the first match (finish "stop").

Commands, when the last user message starts with one:
- `/words N` replies with N one-word chunks `w1 w2 ... wN` (a long stream for benchmarks);
  `/words N delay=S` sleeps S seconds before each word (for tests of progress and cancel).
- `/params` replies with the generation parameters it received, as JSON.
With a JSON schema (structured output) the reply is a small instance of the schema instead:
the first enum value or anyOf option, strings filled with the last user message, one array
item, 0 for numbers, local `$ref`s (`#/$defs/...`) followed. So a function-planning schema
(tools) makes it call the first allowed function with those arguments.
"""
from __future__ import annotations

import json
import re
import threading
import time

from .base import Engine, EngineRequest, EngineResult, OnText

_CHUNK = re.compile(r"\S+\s*")  # one word and the whitespace after it = one token, one chunk
_WORDS = re.compile(r"^/words\s+(\d+)(?:\s+delay=([0-9.]+))?\s*$")
MAX_WORDS = 1_000_000
MAX_DELAY_S = 5.0


class EchoEngine(Engine):
    """Replies by describing the conversation it received; see the module docstring."""

    name = "echo"

    def generate(self, request: EngineRequest, on_text: OnText) -> EngineResult:
        messages = request.messages
        input_tokens = sum(self.count_tokens(m.get("content") or "") for m in messages)
        words, delay = self._reply_words(request)
        params = request.params
        limit = params.max_output_tokens
        stops = [s for s in (params.stop_sequences or []) if s]
        produced: list[str] = []
        text = ""
        finish = "stop"
        pause = threading.Event()
        for i, word in enumerate(words):
            if limit is not None and i >= limit:
                finish = "length"
                break
            chunk = word
            hit = _first_stop(text + chunk, stops) if stops else None  # no copy per word
            if hit is not None:
                chunk = (text + chunk)[len(text):hit] if hit > len(text) else ""
            if delay:
                pause.wait(delay)
            if chunk:
                produced.append(chunk)
                text += chunk
                if not on_text(chunk):
                    finish = "cancelled"
                    break
            if hit is not None:
                break
        return EngineResult(text=text, input_tokens=input_tokens,
                            output_tokens=len(produced), finish=finish)

    def _reply_words(self, request: EngineRequest) -> tuple[list[str], float]:
        """The reply as chunks (each a word with its trailing whitespace) and a per-chunk delay."""
        messages = request.messages
        users = [m for m in messages if m.get("role") == "user"]
        models = [m for m in messages if m.get("role") == "assistant"]
        systems = [m for m in messages if m.get("role") == "system"]
        last = (users[-1].get("content") or "") if users else ""
        command = last.strip()
        m = _WORDS.match(command)
        if m:
            n = min(int(m.group(1)), MAX_WORDS)
            delay = min(float(m.group(2) or 0), MAX_DELAY_S)
            return [f"w{i} " for i in range(1, n)] + [f"w{n}"] * (n > 0), delay
        if command == "/params":
            p = request.params
            return _CHUNK.findall(json.dumps({
                "temperature": p.temperature, "top_p": p.top_p,
                "max_output_tokens": p.max_output_tokens,
                "stop_sequences": list(p.stop_sequences or []), "seed": p.seed,
            }, sort_keys=True)), 0.0
        if request.json_schema is not None:
            schema = request.json_schema
            return _CHUNK.findall(json.dumps(_instance(schema, last, root=schema))), 0.0
        parts = []
        if systems:
            sys_text = " ".join(s.get("content") or "" for s in systems)
            parts.append(f'[system: "{sys_text}"]')
        parts.append(f"Echo: I saw {_plural(len(users), 'user turn')} and "
                     f"{_plural(len(models), 'model turn')}. You said: {last}")
        return _CHUNK.findall(" ".join(parts)), 0.0


def _first_stop(text: str, stops: list[str]):
    hits = [text.find(s) for s in stops if s in text]
    return min(hits) if hits else None


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _instance(schema, text: str, depth: int = 0, root=None):
    """A small value valid against a simple JSON schema, filled with the user's text."""
    if not isinstance(schema, dict) or depth > 8:
        return text
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and isinstance(root, dict):
        target = root
        for key in ref[2:].split("/"):
            target = target.get(key) if isinstance(target, dict) else None
        return _instance(target, text, depth + 1, root)
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _instance(schema[key][0], text, depth + 1, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: _instance(v, text, depth + 1, root) for k, v in props.items()}
    if kind == "array":
        return [_instance(schema.get("items") or {}, text, depth + 1, root)]
    if kind == "integer":
        return 0
    if kind == "number":
        return 0.0
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text
