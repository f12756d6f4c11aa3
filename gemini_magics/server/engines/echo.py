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

Knobs for tests and benchmarks (`EchoEngine(delay=, rps=, fail_first=, cap=)`, or
env GEMINI_MAGICS_ECHO="delay=0.05 rps=20 fail_first=2 cap=20" for an engine made by name):
`cap` is a default reply cap for requests that set no max_output_tokens, as the local engine's
512 tokens, so a test sees what a reply cut there looks like (`/words 600` with `cap=20`);
`delay` sleeps S seconds once per request before replying; `rps` admits at most that many
requests per second (bursts up to `rps`), the others get a 429 with Retry-After (the server asks `admit()` before a
turn starts); `fail_first` answers the first N requests with a 503. `requests` counts the
requests that were answered, so a test can count what reached the server; with `rps`,
`arrivals` holds when each request came and the wait its 429 asked for.
"""
from __future__ import annotations

import collections
import json
import os
import re
import threading
import time
from typing import Optional

from .base import Engine, EngineRequest, EngineResult, OnText, own_cap

_CHUNK = re.compile(r"\S+\s*")  # one word and the whitespace after it = one token, one chunk
_WORDS = re.compile(r"^/words\s+(\d+)(?:\s+delay=([0-9.]+))?\s*$")
MAX_WORDS = 1_000_000
MAX_DELAY_S = 5.0
KNOBS_ENV = "GEMINI_MAGICS_ECHO"
_KNOBS = {"delay": float, "rps": float, "fail_first": int, "cap": int}


def knobs_from_env() -> dict:
    """The knobs in GEMINI_MAGICS_ECHO ("delay=0.05 rps=20"); ValueError naming a bad one."""
    out: dict = {}
    for word in os.environ.get(KNOBS_ENV, "").replace(",", " ").split():
        name, _, value = word.partition("=")
        if name not in _KNOBS:
            raise ValueError(f"{KNOBS_ENV}: unknown knob {name!r}; use "
                             f"{', '.join(k + '=N' for k in _KNOBS)}.")
        try:
            out[name] = _KNOBS[name](value)
        except ValueError:
            raise ValueError(f"{KNOBS_ENV}: {name} needs a number, not {value!r}.") from None
    return out


class EchoEngine(Engine):
    """Replies by describing the conversation it received; see the module docstring."""

    name = "echo"
    # Its reply describes what it received, so the server passes it the plain conversation
    # even where a generating engine gets a constrained prompt (producers.function_answer).
    describes_input = True

    def __init__(self, delay: Optional[float] = None, rps: Optional[float] = None,
                 fail_first: Optional[int] = None, cap: Optional[int] = None):
        given = (delay, rps, fail_first, cap)
        env = knobs_from_env() if all(k is None for k in given) else {}
        self.delay = min(float(delay if delay is not None else env.get("delay", 0.0)), MAX_DELAY_S)
        self.rps = rps if rps is not None else env.get("rps")
        self.fail_first = int(fail_first if fail_first is not None else env.get("fail_first", 0))
        self.cap = cap if cap is not None else env.get("cap")  # None: no default cap
        self.requests = 0        # answered requests (generate calls)
        self.refused = 0         # requests refused by admit() (429 or 503)
        self._lock = threading.Lock()
        # with rps: (time.monotonic(), the Retry-After it got or None) of the latest requests
        self.arrivals: collections.deque = collections.deque(maxlen=10_000)
        self._tokens = 0.0       # the rate limit's token bucket
        self._filled: Optional[float] = None

    def admit(self) -> Optional[tuple]:
        """None to serve a request now, or (HTTP status, seconds to wait) to refuse it: a 503
        for the first `fail_first` requests, a 429 over `rps` requests a second (a token
        bucket holding one second of requests, so a burst up to `rps` passes)."""
        with self._lock:
            if self.fail_first > 0:
                self.fail_first -= 1
                self.refused += 1
                return 503, 0.0
            if not self.rps:
                return None
            now = time.monotonic()
            if self._filled is None:
                self._tokens, self._filled = float(self.rps), now
            self._tokens = min(float(self.rps), self._tokens + (now - self._filled) * self.rps)
            self._filled = now
            if self._tokens < 1.0:
                self.refused += 1
                wait = (1.0 - self._tokens) / self.rps
                self.arrivals.append((now, wait))
                return 429, wait
            self._tokens -= 1.0
            self.arrivals.append((now, None))
            return None

    def generate(self, request: EngineRequest, on_text: OnText) -> EngineResult:
        with self._lock:
            self.requests += 1
        if self.delay:
            threading.Event().wait(self.delay)
        messages = request.messages
        input_tokens = sum(self.count_tokens(m.get("content") or "") for m in messages)
        words, delay = self._reply_words(request)
        params = request.params
        limit = params.max_output_tokens if params.max_output_tokens is not None else self.cap
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
        result = EngineResult(text=text, input_tokens=input_tokens,
                              output_tokens=len(produced), finish=finish)
        return own_cap(result, request, self.cap) if self.cap is not None else result

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
