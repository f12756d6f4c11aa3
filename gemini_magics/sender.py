"""The one sender: a create request sent, its answer read as events, a dropped stream resumed.

Used by the runner (cells, `--ui`, the panel), the rows (`--over`) and, for their polling
policy, background jobs and batches. Why this shape:

- The SDK builds the request (auth, base URL, retries); we read the raw HTTP stream it opened
  (`compat.raw_sse_lines`) with `stream.iter_sse_events` (microseconds per event, against ~1.7 ms for the SDK's pydantic
  event models). If a google-genai keeps that response elsewhere, the SDK's own iterator
  answers instead and `on_fallback` is told once per answer, so the caller can say it.
- A stream cut mid-answer (a proxy reset, a Wi-Fi blip, a server restarting on a persistent
  store) is resumed from the last event it delivered (`GET interactions/{id}?stream=true&
  last_event_id=...`, through the SDK), at most `MAX_RESUMES` times an answer: nothing is lost
  or repeated, and `Link.resumed` says how often it happened (`resumed_note`). Without an event
  id (a server that sends none) or when the GET fails, the drop is reported as before.
- Rows (`RowSender`): building each request through the SDK costs more client CPU than the
  whole rest of a row (it builds pydantic models per call). So the first row goes through the
  SDK, which shows the URL and headers it sent; the other rows are posted with the SDK's own
  HTTP client (its cassette transport included) to that URL with those headers. If our JSON
  body is not byte-for-byte what the SDK sent, or the SDK hides its response, every row goes
  through the SDK.
- Pollers (`PollPolicy`): one rule for background jobs and batches: a 404 ends the polling at
  once, other failures are tolerated `failures` times in a row, and nothing is polled longer
  than `deadline`.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any, Callable, Iterator, Optional

from .compat import raw_sse_lines, sdk_http_client, sdk_sent_request
from .errors import is_connection_error, status_code
from .stream import StreamProtocolError, interaction_events, iter_sse_events, sdk_event_to_dict

__all__ = ["Sender", "RowSender", "Link", "PollPolicy", "PollTimeout", "HttpError",
           "FALLBACK_NOTE", "MAX_RESUMES", "MAX_CONTINUATION_HOPS", "resumed_note",
           "interaction_dict", "is_stream"]

MAX_RESUMES = 3             # reopenings of one answer's stream after it dropped
RESUME_WAITS_S = (0.0, 0.5, 1.0)  # before each reopening: a restarting server needs a moment
MAX_CONTINUATION_HOPS = 32
MAX_POLL_FAILURES = 5       # failed polls in a row before a poller stops (a 404 stops it at once)
# Fields google-genai computes on its Interaction objects, never sent by servers.
SDK_COMPUTED = ("output_text", "output_image", "output_audio", "output_video", "continuation_ids")
FALLBACK_NOTE = ("This google-genai version does not expose the raw HTTP stream where "
                 "gemini-magics reads it, so answers stream through the SDK's own (slower) "
                 "iterator.")


def resumed_note(times: int) -> str:
    """The one line under an answer whose stream was resumed `times` times."""
    said = {1: "once", 2: "twice"}.get(times, f"{times} times")
    return f"The connection dropped {said}; the answer was resumed from where it stopped."


class Link:
    """What reading one answer shares with its caller and the caller's cancel thread: the open
    stream (closing it ends the read), whether the caller cancelled (then a broken read is the
    cancel, not a drop to resume), and how often the stream was resumed."""

    def __init__(self) -> None:
        self.stream: Any = None
        self.cancelled = False
        self.resumed = 0

    def close_stream(self) -> None:
        stream = self.stream
        if stream is not None:
            try:
                stream.close()
            except BaseException:  # noqa: BLE001 - closing is best effort
                pass


def is_stream(answer: Any) -> bool:
    """Whether create() handed back an event stream rather than an Interaction: the SDK's
    Stream (or anything iterated with next()); an Interaction (pydantic) and JSON are not."""
    return hasattr(type(answer), "__next__") and not hasattr(answer, "model_dump")


def interaction_dict(interaction: Any) -> dict:
    """A non-streamed answer as its wire dict; StreamProtocolError if it is no interaction."""
    if not hasattr(interaction, "model_dump"):  # the SDK hands back whatever JSON it got
        got = {list: "a JSON list", str: "text", dict: "a JSON object"}.get(type(interaction),
                                                                           "something else")
        raise StreamProtocolError(f"The server answered with {got}, not an interaction")
    data = interaction.model_dump(mode="json", exclude_none=True, by_alias=True)
    for key in SDK_COMPUTED:
        data.pop(key, None)
    return data


class _Seen:
    """What the reader saw of one hop: enough to resume it and to continue the next."""

    __slots__ = ("id", "last_event_id", "ended", "status", "token")

    def __init__(self) -> None:
        self.id: Optional[str] = None
        self.last_event_id: Optional[str] = None
        self.ended = False
        self.status: Optional[str] = None
        self.token: Optional[str] = None

    def note(self, event: dict) -> None:
        ident = event.get("event_id")
        if ident:
            self.last_event_id = ident
        kind = event.get("event_type")
        if kind == "interaction.created":
            inter = event.get("interaction")
            if isinstance(inter, dict) and inter.get("id"):
                self.id = inter["id"]
        elif kind == "interaction.completed":
            inter = event.get("interaction")
            inter = inter if isinstance(inter, dict) else {}
            self.ended = True
            self.status = inter.get("status")
            self.token = inter.get("continuation_token")
            self.id = inter.get("id") or self.id
        elif kind == "error":
            self.ended = True


class Sender:
    """Sends create requests for one client and yields their answers' events (wire dicts).

    `fast=False` reads every answer with the SDK's own iterator and lets the SDK follow
    continuation hops (the reference the fast path is tested against). `on_fallback(link)` is
    called when the raw stream is not there and the SDK's iterator answers instead."""

    def __init__(self, client: Any, *, fast: bool = True,
                 on_fallback: Optional[Callable[[Link], None]] = None,
                 resumes: int = MAX_RESUMES):
        self.client = client
        self.fast = fast
        self.on_fallback = on_fallback
        self.resumes = resumes

    # -- streaming ---------------------------------------------------------------------------
    def stream(self, body: dict, link: Link) -> Iterator[dict]:
        """A streamed answer's events, continuation hops followed, a dropped stream resumed."""
        hops = 0
        while True:
            hops += 1
            opened = (self.client.interactions.create(**body, stream=True,
                                                      automatic_continuation=False)
                      if self.fast else self.client.interactions.create(**body, stream=True))
            if not is_stream(opened):  # a JSON Interaction answered the stream request
                yield from interaction_events(interaction_dict(opened))
                return
            seen = _Seen()
            yield from self.follow(opened, link, seen)
            if (not self.fast or seen.status != "requires_continuation" or not seen.token
                    or hops >= MAX_CONTINUATION_HOPS or link.cancelled):
                return
            body = dict(body)
            body["continuation_token"] = seen.token
            if body.get("store") is not False:
                body.pop("input", None)
                body["previous_interaction_id"] = seen.id

    def answer(self, body: dict, link: Link) -> tuple[Iterator[dict], Any]:
        """A non-streamed create: (its events, the SDK's Interaction or None). A server that
        streams anyway is read like a stream."""
        answer = self.client.interactions.create(**body)
        if is_stream(answer):
            return self.follow(answer, link, _Seen()), None
        return interaction_events(interaction_dict(answer)), answer

    def follow(self, stream: Any, link: Link, seen: _Seen) -> Iterator[dict]:
        """The events of an opened stream; when it drops before its end, the rest of them from
        a stream reopened after the last event delivered (at most `self.resumes` times)."""
        attempts = 0
        while True:
            drop: Optional[BaseException] = None
            link.stream = stream
            try:
                for event in self._read(stream, link):
                    seen.note(event)
                    yield event
            except Exception as exc:  # noqa: BLE001 - a drop is resumed, anything else raised
                if link.cancelled or not is_connection_error(exc):
                    raise
                drop = exc
            finally:
                link.close_stream()
                link.stream = None
            if seen.ended or link.cancelled:
                return
            stream = None
            while stream is None and attempts < self.resumes and seen.id and seen.last_event_id:
                time.sleep(RESUME_WAITS_S[min(attempts, len(RESUME_WAITS_S) - 1)])
                attempts += 1
                stream = self._reopen(seen)
            if stream is None:  # not resumable: the drop is the caller's to explain
                if drop is not None:
                    raise drop
                return  # a stream that just ended early: the caller's accumulator says so
            link.resumed += 1

    def _reopen(self, seen: _Seen) -> Any:
        """The stream of `seen.id` after its last delivered event, or None if it cannot be."""
        try:
            stream = self.client.interactions.get(seen.id, stream=True,
                                                  last_event_id=seen.last_event_id)
        except Exception:  # noqa: BLE001 - gone (store=false, deleted) or still unreachable
            return None
        if not is_stream(stream):
            return None
        return stream

    def _read(self, stream: Any, link: Link) -> Iterator[dict]:
        lines = raw_sse_lines(stream) if self.fast else None
        if lines is not None:
            return _events_to_the_end(iter(lines))
        if self.fast and self.on_fallback is not None:
            self.on_fallback(link)
        return (sdk_event_to_dict(event) for event in stream)


def _events_to_the_end(lines: Iterator[str]) -> Iterator[dict]:
    """The events, then the few bytes after `data: [DONE]` (the body's end): a response read to
    its end gives its connection back to the pool; one closed before is dropped, and the next
    request pays for a new connection."""
    yield from iter_sse_events(lines)
    for _ in itertools.islice(lines, 4):
        pass


class HttpError(Exception):
    """An HTTP error answer to a row posted directly, shaped as the SDK's errors are read
    (`status_code`, `body`, `response`), so `errors.explain` and the 429 policy read it alike."""

    def __init__(self, response: Any):
        self.response = response
        self.status_code = response.status_code
        text = response.read().decode("utf-8", "replace")
        try:
            self.body: Any = json.loads(text)
        except ValueError:
            self.body = text
        super().__init__(f"HTTP {self.status_code}")


class _Direct:
    """A row posted with the SDK's own HTTP client, URL and headers (learnt from a request the
    SDK sent); closable like an SDK stream."""

    def __init__(self, http: Any, url: Any, headers: dict, timeout: Any):
        self.http, self.url, self.headers, self.timeout = http, url, headers, timeout

    def open(self, body: dict) -> Any:
        data = json.dumps({**body, "stream": True}, separators=(",", ":")).encode()
        request = self.http.build_request("POST", self.url, content=data, headers=self.headers)
        if self.timeout is not None:
            request.extensions["timeout"] = self.timeout
        response = self.http.send(request, stream=True)
        if response.status_code >= 400:
            try:
                raise HttpError(response)
            finally:
                response.close()
        return response


class RowSender:
    """The sender of one `--over` run: rows go through the SDK until one of them has shown the
    URL and headers it sends; from then on they are posted directly (see the module's notes).
    Safe to share between the row threads."""

    def __init__(self, client: Any):
        self.sender = Sender(client)
        self.client = client
        self._direct: Optional[_Direct] = None
        self._checked = False
        self._lock = threading.Lock()

    def stream(self, body: dict, link: Link) -> Iterator[dict]:
        direct = self._direct
        if direct is None:
            return self._through_sdk(body, link)
        return self._posted(direct, body, link)

    def _through_sdk(self, body: dict, link: Link) -> Iterator[dict]:
        opened = self.client.interactions.create(**body, stream=True, automatic_continuation=False)
        if not is_stream(opened):
            return interaction_events(interaction_dict(opened))
        self._learn(opened, body)
        return self.sender.follow(opened, link, _Seen())

    def _posted(self, direct: _Direct, body: dict, link: Link) -> Iterator[dict]:
        response = direct.open(body)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.close()  # not a stream (JSON, a proxy's page): the SDK reads it as usual
            return self._through_sdk(body, link)
        return self.sender.follow(_Response(response), link, _Seen())

    def _learn(self, opened: Any, body: dict) -> None:
        """Take the URL and headers of the request the SDK sent, if our body for it is exactly
        what the SDK serialized (checked once a run)."""
        if self._checked:
            return
        with self._lock:
            if self._checked:
                return
            self._checked = True
            request, http = sdk_sent_request(opened), sdk_http_client(self.client)
            if request is None or http is None:
                return
            try:
                sent = json.loads(request.content)
            except (ValueError, TypeError, AttributeError):
                return
            ours = json.loads(json.dumps({**body, "stream": True}))
            if sent != ours:
                return
            headers = {k: v for k, v in request.headers.items()
                       if k.lower() not in ("content-length", "host")}
            self._direct = _Direct(http, request.url, headers,
                                   request.extensions.get("timeout"))


class _Response:
    """An httpx response wearing the two attributes the sender reads of an SDK stream."""

    def __init__(self, response: Any):
        self.response = response

    def __iter__(self) -> Iterator[Any]:  # never used: the raw lines are always there
        return iter(())

    def close(self) -> None:
        self.response.close()


# -- polling -----------------------------------------------------------------------------------

class PollTimeout(Exception):
    """The polled thing did not end within the policy's deadline."""


class PollPolicy:
    """How background jobs and batches are followed: poll every `interval` seconds until
    `ended(value)`; a failed poll is tolerated `failures - 1` times in a row (not a 404: what
    is polled is gone), and after `deadline` seconds the poller gives up (PollTimeout)."""

    def __init__(self, interval: float, *, failures: int = MAX_POLL_FAILURES,
                 deadline: float = 6 * 3600):
        self.interval = max(0.05, float(interval))
        self.failures = max(1, int(failures))
        self.deadline = deadline

    def follow(self, poll: Callable[[], Any], ended: Callable[[Any], bool], *,
               on_status: Optional[Callable[[Any], None]] = None,
               stop: Optional[threading.Event] = None, first: Any = None,
               started: Optional[float] = None) -> Any:
        """The first value `ended` accepts (`first`, if given, is taken as the first poll's);
        None if `stop` was set. `on_status(last value)` runs after every poll that did not end
        it. Raises the failure that ended the polling, or PollTimeout."""
        stop = stop if stop is not None else threading.Event()
        start = time.monotonic() if started is None else started
        failed = 0
        value = first
        fresh = first is not None  # a value not yet checked
        while not stop.is_set():
            if not fresh:
                try:
                    value = poll()
                    failed, fresh = 0, True
                except Exception as exc:  # noqa: BLE001 - counted; the caller explains the last
                    failed += 1
                    if failed >= self.failures or status_code(exc) == 404:
                        raise
            if fresh and ended(value):
                return value
            fresh = False
            if time.monotonic() - start > self.deadline:
                raise PollTimeout()
            if on_status is not None:
                on_status(value)
            stop.wait(self.interval)
        return None
