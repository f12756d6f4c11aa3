"""Record every exchange with the Interactions API to a cassette file, and replay it offline.

Why: notebooks that call an LLM cannot be tested, because answers change from run to run.
Record the real answers once (from Google or from the local server), commit the cassette next
to the notebook, and replay them byte for byte in CI with no network and no model.

How it plugs in: google-genai 3.4 sends `client.interactions` (and every other resource)
through one httpx client built from `HttpOptions.client_args` / `async_client_args`, so a
cassette is an httpx *transport*: `Client(http_options=cassette.http_options())`.
In record mode the transport forwards to the real upstream and tees the bytes (streams keep
streaming); in replay mode it answers from the file and never opens a socket.

The cassette is one pretty-printed JSON document, meant to be read in a code review:
JSON bodies are stored as JSON objects and SSE bodies as a list of events, each checked at
record time to re-serialise to the exact bytes received (otherwise the raw text lines are kept).
API keys and bearer tokens are never written.
"""
from __future__ import annotations

import base64
import json
import os
import re
import tempfile
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Optional

import httpx

from .redact import redact

__all__ = [
    "Cassette",
    "CassetteError",
    "CassetteMiss",
    "ENV_CASSETTE",
    "ENV_MODE",
    "MODES",
    "cassette_from_env",
    "wrap_http_options",
]

ENV_CASSETTE = "GEMINI_MAGICS_CASSETTE"
ENV_MODE = "GEMINI_MAGICS_RECORD_MODE"
#: "auto" replays when the file exists and records when it does not.
MODES = ("record", "replay", "auto")

FORMAT = "gemini-magics cassette"
VERSION = 1
REDACTED = "REDACTED"
_SECRET_HEADERS = ("x-goog-api-key", "authorization", "x-goog-user-project", "proxy-authorization")
_SECRET_QUERY = ("key", "access_token")
# Transient answers the SDK retries on its own; a later success for the same request replaces them.
_RETRYABLE = {408, 409, 429} | set(range(500, 600))
_KEPT_RESPONSE_HEADERS = ("content-type", "content-encoding", "retry-after")
_VERSION_SEGMENT = re.compile(r"^(?:.*?)/v\d+(?:alpha|beta)?\d*(/.*)?$")

# json.dumps settings tried, in order, to store a JSON body as an object and still replay it
# byte for byte. Starlette uses "compact"; Google pretty-prints with two spaces.
_JSON_STYLES: dict[str, dict[str, Any]] = {
    "compact": {"ensure_ascii": False, "separators": (",", ":")},
    "compact-ascii": {"ensure_ascii": True, "separators": (",", ":")},
    "python": {"ensure_ascii": True},
    "python-utf8": {"ensure_ascii": False},
    "indent2": {"ensure_ascii": False, "indent": 2},
    "indent2-ascii": {"ensure_ascii": True, "indent": 2},
}


class CassetteError(RuntimeError):
    """A cassette cannot be used; the message is one sentence saying what to do."""


class CassetteMiss(CassetteError):
    """Replay was asked for a request the cassette does not hold."""


# --------------------------------------------------------------------------------------------
# Body encoding: exact bytes <-> reviewable JSON
# --------------------------------------------------------------------------------------------

def _dumps(obj: Any, style: str) -> str:
    return json.dumps(obj, **_JSON_STYLES[style])


def _json_style(text: str, obj: Any) -> Optional[str]:
    """The first style that re-serialises `obj` to exactly `text`, if any."""
    for style in _JSON_STYLES:
        dumped = _dumps(obj, style)
        if dumped == text:
            return style
        if dumped + "\n" == text:
            return style + "+nl"
    return None


def _dumps_styled(obj: Any, style: str) -> str:
    if style.endswith("+nl"):
        return _dumps(obj, style[:-3]) + "\n"
    return _dumps(obj, style)


def _encode_json_text(text: str) -> Optional[dict]:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    style = _json_style(text, obj)
    if style is None:
        return None
    return {"json": obj, "json_style": style}


def _encode_sse(text: str) -> Optional[list]:
    """SSE text as a list of events `{"event", "data"}` (or `{"raw"}`), if it round-trips."""
    blocks = text.split("\n\n")
    tail = blocks.pop()
    events: list = []
    for block in blocks:
        lines = block.split("\n")
        name, data_line = None, None
        if len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "):
            name, data_line = lines[0][len("event: "):], lines[1][len("data: "):]
        elif len(lines) == 1 and lines[0].startswith("data: "):
            data_line = lines[0][len("data: "):]
        encoded = _encode_json_text(data_line) if data_line is not None else None
        if encoded is None:
            events.append({"raw": block})
            continue
        event: dict = {} if name is None else {"event": name}
        event["data"] = encoded["json"]
        if encoded["json_style"] != "compact":
            event["json_style"] = encoded["json_style"]
        events.append(event)
    if tail:
        events.append({"tail": tail})
    if _decode_sse(events) != text:
        return None
    return events


def _hoist_style(events: list) -> tuple[list, Optional[str]]:
    """Store a JSON style shared by every event once, on the response, instead of per event."""
    styles = {e.get("json_style", "compact") for e in events if "data" in e}
    if len(styles) != 1 or styles == {"compact"}:
        return events, None
    style = styles.pop()
    return [{k: v for k, v in e.items() if k != "json_style"} for e in events], style


def _sse_event_text(event: Mapping, style: str = "compact") -> str:
    if "tail" in event:
        return event["tail"]
    if "raw" in event:
        return event["raw"] + "\n\n"
    data = _dumps_styled(event["data"], event.get("json_style", style))
    head = f"event: {event['event']}\n" if "event" in event else ""
    return f"{head}data: {data}\n\n"


def _decode_sse(events: Iterable[Mapping]) -> str:
    return "".join(_sse_event_text(e) for e in events)


def _encode_body(raw: bytes, content_type: str, content_encoding: str) -> dict:
    """Choose the most readable exact representation of a response body."""
    if content_encoding and content_encoding != "identity":
        return {"base64": base64.b64encode(raw).decode("ascii")}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}
    if not text:
        return {"text": []}
    if "event-stream" in content_type:
        events = _encode_sse(text)
        if events is not None:
            events, style = _hoist_style(events)
            return {"sse": events, "json_style": style} if style else {"sse": events}
    elif "json" in content_type:
        encoded = _encode_json_text(text)
        if encoded is not None:
            return encoded
    return {"text": text.split("\n")}


def _body_chunks(response: Mapping) -> list[bytes]:
    """The recorded body as the chunks replay yields: one per SSE event, else one."""
    if "sse" in response:
        style = response.get("json_style", "compact")
        return [_sse_event_text(e, style).encode("utf-8") for e in response["sse"]]
    if "json" in response:
        return [_dumps_styled(response["json"], response["json_style"]).encode("utf-8")]
    if "base64" in response:
        return [base64.b64decode(response["base64"])]
    text = "\n".join(response.get("text", []))
    return [text.encode("utf-8")] if text else []


# --------------------------------------------------------------------------------------------
# Requests: secrets and the matching key
# --------------------------------------------------------------------------------------------

def _request_secrets(request: httpx.Request) -> set[str]:
    found = set()
    for name in _SECRET_HEADERS:
        value = request.headers.get(name)
        if value:
            found.add(value)
            if " " in value:  # "Bearer <token>"
                found.add(value.split(" ", 1)[1].strip())
    for name, value in request.url.params.multi_items():
        if name in _SECRET_QUERY and value:
            found.add(value)
    return found


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """The one redaction rule (redact.py), with REDACTED for the reviewer of the file."""
    return redact(text, secrets, mask=REDACTED)


def _delta_text_holder(event: Mapping) -> Optional[tuple]:
    """(group, dict holding the text) of a streamed text or thought-summary delta."""
    data = event.get("data")
    if not isinstance(data, dict) or data.get("event_type") != "step.delta":
        return None
    delta = data.get("delta")
    if not isinstance(delta, dict):
        return None
    holder = delta if isinstance(delta.get("text"), str) else delta.get("content")
    if not isinstance(holder, dict) or not isinstance(holder.get("text"), str):
        return None
    return (data.get("index"), delta.get("type")), holder


def _scrub_split_secrets(events: list, secrets: Iterable[str]) -> None:
    """A secret streamed in pieces (a server reflecting the key, a few characters per delta)
    survives scrubbing each event alone. Per step, the text deltas are joined and scrubbed;
    where that finds more, the step's first delta gets the whole scrubbed text and the others
    become empty, so replay shows the same answer, without the key, in one piece."""
    groups: dict = {}
    for event in events:
        found = _delta_text_holder(event)
        if found is not None:
            groups.setdefault(found[0], []).append(found[1])
    for holders in groups.values():
        joined = "".join(h["text"] for h in holders)
        scrubbed = _scrub(joined, secrets)
        if scrubbed == "".join(_scrub(h["text"], secrets) for h in holders):
            continue
        holders[0]["text"] = scrubbed
        for h in holders[1:]:
            h["text"] = ""


def _describe_request(request: httpx.Request, secrets: set[str]) -> dict:
    """The stored form of a request: what a reviewer needs, nothing secret."""
    query = [[k, _scrub(v, secrets)] for k, v in request.url.params.multi_items()
             if k not in _SECRET_QUERY]
    stored: dict = {"method": request.method, "path": _scrub(request.url.path, secrets)}
    if query:
        stored["query"] = query
    raw = request.content
    if raw:
        text = _scrub(raw.decode("utf-8", errors="replace"), secrets)
        try:
            stored["body"] = json.loads(text)
        except ValueError:
            stored["body_text"] = text
    return stored


def _match_path(path: str) -> str:
    """`/prefix/v1beta/interactions/x` -> `/interactions/x`: the version and prefix don't matter."""
    m = _VERSION_SEGMENT.match(path)
    if m:
        return m.group(1) or "/"
    return path


def _match_key(stored: Mapping) -> str:
    body = stored.get("body", stored.get("body_text"))
    query = sorted(tuple(p) for p in stored.get("query", []))
    return json.dumps([stored["method"].upper(), _match_path(stored["path"]), query, body],
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------

class _ReplayStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Yields recorded chunks (one per SSE event) to sync and async clients alike."""

    def __init__(self, chunks: list[bytes]):
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks

    async def __aiter__(self):
        for chunk in self._chunks:
            yield chunk


class _Tee:
    """Collects the chunks of an upstream body and reports them once, when it ends or closes."""

    def __init__(self, inner, on_done):
        self._inner, self._on_done, self._chunks, self._complete = inner, on_done, [], False

    def _finish(self) -> None:
        if self._on_done is not None:
            done, self._on_done = self._on_done, None
            done(b"".join(self._chunks), self._complete)


class _TeeStream(_Tee, httpx.SyncByteStream):
    """Passes the upstream body through chunk by chunk (streams keep streaming) and records it."""

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._chunks.append(chunk)
            yield chunk
        self._complete = True
        self._finish()

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._finish()


class _AsyncTeeStream(_Tee, httpx.AsyncByteStream):
    """Async twin of `_TeeStream`."""

    async def __aiter__(self):
        async for chunk in self._inner:
            self._chunks.append(chunk)
            yield chunk
        self._complete = True
        self._finish()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._finish()


# --------------------------------------------------------------------------------------------
# The cassette
# --------------------------------------------------------------------------------------------

@dataclass(eq=False)
class _Slot:
    """One exchange; recorded ones are filled in when their body has been read to the end."""
    request: dict
    key: str
    response: Optional[dict] = None
    text: str = ""  # the exchange as it appears in the file (recording only)
    dropped: bool = False
    secrets: set = field(default_factory=set)


class Cassette:
    """A cassette file and the httpx transports that record into it or replay from it.

    `mode` is "record" (forward to the real upstream and rewrite the file from scratch),
    "replay" (answer from the file, never touch the network) or "auto" (replay if the file
    exists, otherwise record). Identical requests are answered in recorded order; once they
    are used up the last answer is repeated, so re-running a cell works offline too
    (`strict=True` fails instead).
    """

    def __init__(self, path: str | os.PathLike, mode: str = "auto", *, strict: bool = False,
                 secrets: Iterable[str] = ()):
        mode = (mode or "auto").strip().lower()
        if mode not in MODES:
            raise CassetteError(
                f"Unknown cassette mode {mode!r}: use one of {', '.join(MODES)}.")
        self.path = os.fspath(path)
        if mode == "auto":
            mode = "replay" if os.path.exists(self.path) else "record"
        self.mode = mode
        self.strict = strict
        self._extra_secrets = {s for s in secrets if s}
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []
        self._queues: dict[str, list[_Slot]] = defaultdict(list)
        self._served: dict[str, int] = defaultdict(int)
        if mode == "replay":
            self._load()
        else:
            self._check_writable()

    def __repr__(self) -> str:
        return f"Cassette({self.path!r}, mode={self.mode!r}, exchanges={self.exchange_count})"

    @property
    def exchange_count(self) -> int:
        """Exchanges in the file (recorded so far, or loaded). Not `len()`: an empty cassette
        must stay truthy in `if cassette:`."""
        with self._lock:
            return sum(1 for s in self._slots if s.response is not None and not s.dropped)

    # ---- plugging into google-genai ------------------------------------------------------

    def transport(self, inner: Optional[httpx.BaseTransport] = None) -> httpx.BaseTransport:
        """A sync httpx transport; `inner` is the upstream in record mode (default: HTTP)."""
        return _SyncTransport(self, inner)

    def async_transport(self, inner: Optional[httpx.AsyncBaseTransport] = None
                        ) -> httpx.AsyncBaseTransport:
        """An async httpx transport, for `client.aio`."""
        return _AsyncTransport(self, inner)

    def http_options(self, base: Any = None):
        """`google.genai.types.HttpOptions` that route every request through this cassette.

        `base` (HttpOptions, a dict or None) is kept; its `client_args` / `async_client_args`
        get our transports. Injected `httpx_client`s cannot be wrapped, so they are refused.
        """
        from google.genai import types  # deferred: google.genai

        if base is None:
            options = types.HttpOptions()
        elif isinstance(base, Mapping):
            options = types.HttpOptions(**base)
        else:
            options = base.model_copy(deep=False)
        if options.httpx_client is not None or options.httpx_async_client is not None:
            raise CassetteError(
                "A cassette cannot wrap an injected httpx_client: pass client_args instead.")
        client_args = dict(options.client_args or {})
        async_args = dict(options.async_client_args or {})
        client_args["transport"] = self.transport(client_args.get("transport"))
        async_args["transport"] = self.async_transport(async_args.get("transport"))
        return options.model_copy(update={"client_args": client_args,
                                          "async_client_args": async_args})

    # ---- record --------------------------------------------------------------------------

    def _begin_record(self, request: httpx.Request) -> _Slot:
        secrets = _request_secrets(request) | self._extra_secrets
        stored = _describe_request(request, secrets)
        slot = _Slot(request=stored, key=_match_key(stored), secrets=secrets)
        with self._lock:
            self._slots.append(slot)
        # Bodies must be stored readable, not gzip: ask the upstream for identity encoding.
        request.headers["accept-encoding"] = "identity"
        return slot

    def _finish_record(self, slot: _Slot, response: httpx.Response, raw: bytes,
                       complete: bool) -> None:
        headers = {}
        for name in _KEPT_RESPONSE_HEADERS:
            if name in response.headers:
                headers[name] = response.headers[name]
        raw = _scrub(raw.decode("utf-8"), slot.secrets).encode("utf-8") if _is_utf8(raw) else raw
        stored = {"status": response.status_code, "headers": headers}
        stored.update(_encode_body(raw, headers.get("content-type", ""),
                                   headers.get("content-encoding", "")))
        if "sse" in stored:
            _scrub_split_secrets(stored["sse"], slot.secrets)
        if not complete:
            stored["incomplete"] = True  # the caller stopped reading (e.g. a cancelled stream)
        text = json.dumps({"request": slot.request, "response": stored}, indent=2,
                          ensure_ascii=False)
        with self._lock:
            slot.response, slot.text = stored, text
            if response.status_code not in _RETRYABLE:
                position = next(i for i, s in enumerate(self._slots) if s is slot)
                for earlier in reversed(self._slots[:position]):
                    if earlier.key != slot.key or earlier.response is None:
                        continue
                    if earlier.response["status"] not in _RETRYABLE or earlier.dropped:
                        break
                    earlier.dropped = True
            self._save_locked()

    def _check_writable(self) -> None:
        """Fail now, not after the first answer. The file itself is only written once an
        exchange is recorded, so an aborted session never leaves an empty cassette behind
        (which "auto" would then replay)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise CassetteError(f"Cannot create the folder for cassette {self.path} "
                                f"({exc.strerror or exc}): choose a writable path.") from None
        if not os.access(directory, os.W_OK) or os.path.isdir(self.path):
            raise CassetteError(f"Cannot write cassette {self.path}: choose a writable "
                                f"file path.")

    def _save_locked(self) -> None:
        # Each exchange is serialised once (when it ends) and the file is assembled from those
        # texts: re-serialising a long stream on every save would make recording quadratic.
        secrets = set(self._extra_secrets)
        for slot in self._slots:
            secrets |= slot.secrets
        header = {"format": FORMAT, "version": VERSION,
                  "note": (f"Recorded by gemini_magics.replay; API keys removed. Re-record with "
                           f"{ENV_MODE}=record.")}
        texts = [s.text for s in self._slots if s.response is not None and not s.dropped]
        head = json.dumps(header, indent=2, ensure_ascii=False)[:-2]
        if texts:
            body = ",\n".join("    " + t.replace("\n", "\n    ") for t in texts)
            exchanges = f'"exchanges": [\n{body}\n  ]'
        else:
            exchanges = '"exchanges": []'
        text = _scrub(f"{head},\n  {exchanges}\n}}\n", secrets)
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".cassette-", suffix=".tmp", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.path)  # atomic: a reader never sees half a cassette
        except OSError as exc:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            raise CassetteError(
                f"Cannot write cassette {self.path} ({exc.strerror or exc}): "
                f"choose a writable path.") from None

    # ---- replay --------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                document = json.load(f)
        except FileNotFoundError:
            raise CassetteError(
                f"Cassette {self.path} does not exist: record it first with "
                f"{ENV_MODE}=record.") from None
        except (OSError, ValueError) as exc:
            raise CassetteError(
                f"Cassette {self.path} is not a readable JSON cassette ({exc}): "
                f"re-record it with {ENV_MODE}=record.") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT \
                or not isinstance(document.get("exchanges"), list):
            raise CassetteError(
                f"{self.path} is not a gemini-magics cassette: re-record it with "
                f"{ENV_MODE}=record.")
        if document.get("version") != VERSION:
            raise CassetteError(
                f"Cassette {self.path} has format version {document.get('version')!r}, "
                f"this gemini-magics reads version {VERSION}: re-record it.")
        for exchange in document["exchanges"]:
            try:
                slot = _Slot(request=exchange["request"], key=_match_key(exchange["request"]),
                             response=exchange["response"])
            except (KeyError, TypeError):
                raise CassetteError(
                    f"Cassette {self.path} has a malformed exchange: re-record it with "
                    f"{ENV_MODE}=record.") from None
            self._slots.append(slot)
            self._queues[slot.key].append(slot)

    def _replay(self, request: httpx.Request) -> httpx.Response:
        secrets = _request_secrets(request) | self._extra_secrets
        stored = _describe_request(request, secrets)
        key = _match_key(stored)
        with self._lock:
            queue = self._queues.get(key)
            index = self._served[key]
            if not queue or (self.strict and index >= len(queue)):
                raise CassetteMiss(self._miss_message(stored, bool(queue)))
            slot = queue[min(index, len(queue) - 1)]
            self._served[key] = index + 1
        response = slot.response
        headers = [(k, v) for k, v in response.get("headers", {}).items()]
        return httpx.Response(response["status"], headers=headers,
                              stream=_ReplayStream(_body_chunks(response)), request=request)

    def _miss_message(self, stored: Mapping, used_up: bool) -> str:
        what = f"{stored['method']} {stored['path']}"
        if used_up:
            reason = "was recorded fewer times than it is now being sent"
        elif any(_match_path(s.request["path"]) == _match_path(stored["path"])
                 and s.request["method"] == stored["method"] for s in self._slots):
            reason = "is in it only with a different body or query"
        else:
            reason = "is not in it"
        return (f"Replay: {what} {reason} (cassette {self.path}); re-record it with "
                f"{ENV_MODE}=record.")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _SyncTransport(httpx.BaseTransport):
    """Record: forward and tee. Replay: answer from the cassette."""

    def __init__(self, cassette: Cassette, inner: Optional[httpx.BaseTransport]):
        self._cassette = cassette
        self._inner = inner
        if cassette.mode == "record" and inner is None:
            self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        cassette = self._cassette
        request.read()
        if cassette.mode == "replay":
            return cassette._replay(request)
        slot = cassette._begin_record(request)
        upstream = self._inner.handle_request(request)

        def done(raw: bytes, complete: bool) -> None:
            cassette._finish_record(slot, upstream, raw, complete)

        return httpx.Response(upstream.status_code, headers=upstream.headers,
                              stream=_TeeStream(upstream.stream, done),
                              extensions=upstream.extensions, request=request)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()


class _AsyncTransport(httpx.AsyncBaseTransport):
    """Async twin of `_SyncTransport`."""

    def __init__(self, cassette: Cassette, inner: Optional[httpx.AsyncBaseTransport]):
        self._cassette = cassette
        self._inner = inner
        if cassette.mode == "record" and inner is None:
            self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        cassette = self._cassette
        await request.aread()
        if cassette.mode == "replay":
            return cassette._replay(request)
        slot = cassette._begin_record(request)
        upstream = await self._inner.handle_async_request(request)

        def done(raw: bytes, complete: bool) -> None:
            cassette._finish_record(slot, upstream, raw, complete)

        return httpx.Response(upstream.status_code, headers=upstream.headers,
                              stream=_AsyncTeeStream(upstream.stream, done),
                              extensions=upstream.extensions, request=request)

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()


# --------------------------------------------------------------------------------------------
# Environment (notebooks, CI)
# --------------------------------------------------------------------------------------------

def cassette_from_env(environ: Optional[Mapping[str, str]] = None,
                      opened: Optional[dict] = None) -> Optional[Cassette]:
    """The cassette named by GEMINI_MAGICS_CASSETTE (mode GEMINI_MAGICS_RECORD_MODE), or None.

    `opened` (a Session's `env_cassettes`) keeps one Cassette per (path, mode): clients rebuilt
    for every cell then keep the replay order, and a second record-mode Cassette cannot wipe
    what the first recorded. Without it the cassette is opened afresh.
    """
    environ = os.environ if environ is None else environ
    path = (environ.get(ENV_CASSETTE) or "").strip()
    mode = (environ.get(ENV_MODE) or "").strip().lower()
    if not path:
        if mode:
            raise CassetteError(
                f"{ENV_MODE}={mode} is set but {ENV_CASSETTE} is not: set {ENV_CASSETTE} "
                f"to the cassette file path.")
        return None
    if mode and mode not in MODES:
        raise CassetteError(
            f"{ENV_MODE}={mode!r} is not a mode: use one of {', '.join(MODES)}.")
    if opened is None:
        return Cassette(path, mode or "auto")
    key = (os.path.abspath(path), mode or "auto")
    cassette = opened.get(key)
    if cassette is None:  # setdefault: of two threads opening it at once, one Cassette wins
        cassette = opened.setdefault(key, Cassette(path, mode or "auto"))
    return cassette


def wrap_http_options(base: Any = None, environ: Optional[Mapping[str, str]] = None,
                      opened: Optional[dict] = None):
    """`base` routed through the environment's cassette (see `cassette_from_env`), or `base`
    unchanged when there is none."""
    cassette = cassette_from_env(environ, opened)
    if cassette is None:
        return base
    return cassette.http_options(base)
