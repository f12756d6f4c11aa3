"""Starlette routes for the Interactions API: create, get, cancel, delete under any version.

`/{prefix}/interactions[/{id}[/cancel]]` with any prefix (`v1`, `v1beta`, `proxy/v1beta`), as the
SDKs build it from `base_url`; the SDKs' routes we cannot serve answer 501 (`unsupported`). Every failure is a Google-style JSON error (`protocol.ApiError`):
bad input is a 4xx, an internal fault a failed turn (or, for a store that cannot be read, a 500
saying so). Turns run on a `FairPool` (engines block); readers follow them through `sse.follow`.
Parsing, chain reads and store lookups run off the event loop, so one large request does not
stall the others.

Connections: a request body must keep arriving (`read_timeout` between pieces, and 64 KiB/s after
the first `read_timeout`), TCP_NODELAY is set on every connection (responses are two writes; with
Nagle the second waited ~40 ms for a delayed ACK). `http_protocol()` is the uvicorn protocol that
adds what uvicorn lacks: a deadline for a request head, idle and stalled-write deadlines, JSON
400s for malformed HTTP, and room made near the file-descriptor limit.

Classroom mode (`keys`, a `classroom.KeyRing`): every request needs one of the keys; each
interaction belongs to the key that created it, and any other key is answered 404 for it, as if
it did not exist (so ids cannot be probed); creates are held to the key's rate and token budget
(429); fair slots are per key; the Batch API is off (its batches are not kept per key).
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import secrets
import socket
import struct
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import sse, unsupported
from .batches import add_routes
from .classroom import KeyRing, Student
from .engines.base import Engine
from .event_ids import resume_position
from .protocol import (MAX_BODY_BYTES, ApiError, CreateRequest, bad, parse_bool_param,
                       parse_create, parse_json_body, shown)
from .producers import pick_producer
from .store import Store, StoreError
from .turns import (TurnContext, TurnRecorder, begin, make_usage, not_run, now_iso,
                    resource_with_steps, run_turn)

try:
    import resource as _resource_limits
except ImportError:  # Windows: no file-descriptor limit to watch
    _resource_limits = None

log = logging.getLogger(__name__)

MAX_WORKERS = 64          # concurrent turns, a quarter of them per client (FairPool); more wait
CANCEL_WAIT_SECONDS = 30  # how long cancel/delete wait for a running engine to stop
DRAIN_LIMIT = 4 * MAX_BODY_BYTES  # an oversized body is read (and dropped) up to this much
READ_TIMEOUT_SECONDS = 10.0   # for a request head, and for each gap in a request body
IDLE_TIMEOUT_SECONDS = 5.0    # a kept-alive connection with no new request is closed
WRITE_TIMEOUT_SECONDS = 60.0  # a client that reads nothing of its response this long is dropped
MIN_BODY_RATE = 64 * 1024     # bytes/s a body must keep up after its first READ_TIMEOUT
DEFAULT_SERVICE_TIER = "standard"  # what the real API reports when none was asked for


class EventStream(StreamingResponse):
    """An SSE response that runs `on_close` however it ends (done, error or disconnect)."""

    def __init__(self, content, on_close=None):
        super().__init__(content, media_type=sse.MEDIA_TYPE, headers=sse.SSE_HEADERS)
        self.on_close = on_close

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.on_close is not None:
                self.on_close()


class _Json(JSONResponse):
    def render(self, content) -> bytes:
        # "replace": a lone surrogate from an engine must not turn an answer into a 500.
        return json.dumps(content, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode("utf-8", "replace")


class Job:
    """One turn's work for a FairPool: `fn()` runs it; `fn(not_run)` ends it cancelled."""

    __slots__ = ("client", "fn", "started")

    def __init__(self, client: str, fn: Callable):
        self.client, self.fn, self.started = client, fn, False


class FairPool:
    """Worker threads shared fairly between clients.

    At most `workers` turns run at once and at most `per_client` of them for one client, so one
    client cannot take every slot; the others wait in their client's queue, and a freed slot
    goes to the next client in turn (round robin). A queued job can be taken back (`cancel`) at
    once, without waiting for a slot.
    """

    def __init__(self, workers: int = MAX_WORKERS, per_client: Optional[int] = None):
        self.workers = workers
        self.per_client = per_client or max(1, workers // 4)  # 16 of the 64 by default
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gm-turn")
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._queues: dict[str, deque] = {}  # insertion order is the round-robin order
        self._busy = 0
        self._closed = False

    def submit(self, job: Job) -> None:
        """Run `job` now if its client has a free slot, else queue it."""
        client = job.client
        with self._lock:
            if self._closed:
                raise ApiError(503, "The local server is stopping; retry in a moment.",
                               status="UNAVAILABLE")
            if self._busy < self.workers and self._running.get(client, 0) < self.per_client:
                self._launch(job)
            else:
                self._queues.setdefault(client, deque()).append(job)

    def cancel(self, job: Job) -> bool:
        """Take back a job that has not started: True if it will never run."""
        with self._lock:
            queue = self._queues.get(job.client)
            if job.started or queue is None or job not in queue:
                return False
            queue.remove(job)
            if not queue:
                del self._queues[job.client]
            return True

    def queued(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues.values())

    def close(self) -> list[Job]:
        """Accept no more jobs; the queued ones, which will never run."""
        with self._lock:
            self._closed = True
            jobs = [job for q in self._queues.values() for job in q]
            self._queues.clear()
        return jobs

    def shutdown(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)

    def _launch(self, job: Job) -> None:  # lock held
        job.started = True
        self._busy += 1
        self._running[job.client] = self._running.get(job.client, 0) + 1
        self._threads.submit(self._run, job)

    def _run(self, job: Job) -> None:
        try:
            job.fn()
        except Exception:  # work() ends every turn itself; this is a bug in the pool's caller
            log.exception("a turn's job failed")
        finally:
            with self._lock:
                self._busy -= 1
                left = self._running[job.client] - 1
                if left:
                    self._running[job.client] = left
                else:
                    del self._running[job.client]
                self._next()

    def _next(self) -> None:  # lock held: start queued jobs while slots allow, client by client
        for client in list(self._queues):
            if self._busy >= self.workers:
                return
            if self._running.get(client, 0) >= self.per_client:
                continue
            queue = self._queues.pop(client)
            job = queue.popleft()
            if queue:
                self._queues[client] = queue  # to the back of the round
            self._launch(job)


class InteractionService:
    """Live turns, the store and the engine behind the routes.

    `read_timeout`, `idle_timeout` and `write_timeout` are read per connection (tests shorten
    them on a running server)."""

    def __init__(self, engine: Engine, store: Store, api_key: Optional[str] = None,
                 max_workers: int = MAX_WORKERS, per_client: Optional[int] = None,
                 read_timeout: float = READ_TIMEOUT_SECONDS,
                 idle_timeout: float = IDLE_TIMEOUT_SECONDS,
                 write_timeout: float = WRITE_TIMEOUT_SECONDS,
                 keys: Optional[KeyRing] = None):
        self.engine = engine
        self.store = store
        self._api_key = api_key
        self.keys = keys
        if keys is not None:
            keys.load_usage(store.key_usage())
        self.live: dict[str, TurnRecorder] = {}
        self._owners: dict[str, str] = {}  # live turn id -> its key's id (classroom mode)
        self._jobs: dict[str, Job] = {}
        self.pool = FairPool(max_workers, per_client)
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout

    # -- plumbing ------------------------------------------------------------------------
    def check_key(self, request: Request) -> Optional[Student]:
        """Refuse a request without the right key (401); in classroom mode, whose key it is."""
        if self.keys is not None:
            student = self.keys.identify(_key_of(request))
            if student is None:
                raise ApiError(401, "Missing or unknown API key: send your own key from the "
                                    "server's keys file in the x-goog-api-key header "
                                    "(GEMINI_API_KEY for the SDKs and the magics).",
                               status="UNAUTHENTICATED")
            return student
        if self._api_key is None:
            return None
        given = request.headers.get("x-goog-api-key", "")
        if not hmac.compare_digest(given.encode(), self._api_key.encode()):
            raise ApiError(401, "Missing or wrong API key: send the server's key in the "
                                "x-goog-api-key header (GEMINI_API_KEY for the SDKs).")

    async def read_body(self, request: Request) -> bytes:
        """The body, or a 413 (too large), a 408 (stalled, or slower than MIN_BODY_RATE after
        the first `read_timeout`), ClientDisconnect (the client went away)."""
        declared = request.headers.get("content-length", "")
        too_big = declared.isdigit() and (len(declared) > 15 or int(declared) > MAX_BODY_BYTES)
        loop = asyncio.get_running_loop()
        started = loop.time()
        chunks, size, more = [], 0, True
        while more:
            allowed = min(self.read_timeout,
                          started + self.read_timeout + size / MIN_BODY_RATE - loop.time())
            try:
                message = await asyncio.wait_for(request.receive(), max(allowed, 0.001))
            except asyncio.TimeoutError:
                raise ApiError(408, f"The request body stopped arriving (nothing for "
                                    f"{self.read_timeout:g} s, or slower than "
                                    f"{MIN_BODY_RATE // 1024} KiB/s); send the whole body "
                                    f"promptly and retry.", close=True) from None
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                too_big = True
            if too_big:
                chunks = []
                if size > DRAIN_LIMIT:
                    break
            elif chunk:
                chunks.append(chunk)
        if too_big:
            mib = MAX_BODY_BYTES // (1024 * 1024)
            raise ApiError(413, f"The request body is larger than {mib} MiB; send large media "
                                f"by 'uri' or split the request.", close=more)
        return b"".join(chunks)

    def shutdown(self) -> None:
        for rec in list(self.live.values()):
            rec.cancel_requested.set()
        for job in self.pool.close():
            job.fn(not_run)  # queued turns end cancelled (and stored), not hanging their readers
        self.pool.shutdown()

    # -- create --------------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        student = self.check_key(request)
        if student is not None:
            self.keys.admit(student)
        query_stream = _query_stream(request)
        raw = await self.read_body(request)
        req, history = await asyncio.to_thread(self._prepare, raw, query_stream,
                                               _client_of(request, student), _id(student))
        rec = self.start(req, history, student=student)
        if req.stream:
            on_close = None if req.background else functools.partial(self._abandon, rec)
            return EventStream(sse.frames(sse.follow(rec)), on_close=on_close)
        if req.background:
            return _Json(rec.snapshot())
        if not await self._wait_or_disconnect(request, rec):
            self._abandon(rec)
            return Response(status_code=499)  # nobody is listening any more
        return _Json(rec.snapshot())

    def _prepare(self, raw: bytes, query_stream: bool, client: str,
                 owner: Optional[str] = None) -> tuple[CreateRequest, list[dict]]:
        """Parse and validate the body, then read the conversation it continues (a thread)."""
        req = parse_create(parse_json_body(raw), query_stream)
        req.client = client
        return req, self._history(req, owner)

    def _history(self, req: CreateRequest, owner: Optional[str] = None) -> list[dict]:
        prev = req.previous_interaction_id
        if not prev:
            return []
        rec = self._live(prev, owner)
        if rec is not None and not rec.done.is_set():
            raise bad(f"'previous_interaction_id' {shown(prev)} is still in progress; wait until "
                      f"it completes (poll it with get) or cancel it first.")
        history = self.store.history(prev, owner)
        if history is None:
            raise ApiError(404, f"'previous_interaction_id' {shown(prev)} was not found: it does "
                                f"not exist, was created with store=false, was deleted or "
                                f"expired.")
        return history

    def start(self, req: CreateRequest, history: list[dict],
              student: Optional[Student] = None) -> TurnRecorder:
        """Register a new turn and queue it on the pool (under `req.client`), owned by
        `student` (classroom mode); returns at once."""
        now = now_iso()
        resource = {"id": "v1_" + secrets.token_urlsafe(24), "object": "interaction",
                    "status": "in_progress", "created": now, "updated": now,
                    "usage": make_usage(0, 0)}
        if req.model:
            resource["model"] = req.model
        if req.agent:
            resource["agent"] = req.agent
        if req.previous_interaction_id:
            resource["previous_interaction_id"] = req.previous_interaction_id
        resource.update(req.echo)
        resource.setdefault("service_tier", DEFAULT_SERVICE_TIER)
        rec = TurnRecorder(resource, req.input_steps)
        begin(rec)
        ctx = TurnContext(request=req, history=history, engine=self.engine, recorder=rec)
        producer = pick_producer(req, history)
        owner = _id(student)
        keep = functools.partial(self.store.put, owner=owner) if req.store else None
        if student is not None:  # charged as it ends, before anyone can see it end
            keep = functools.partial(self._charge_and_keep, student, keep)

        def work(run=producer) -> None:
            try:
                run_turn(ctx, run, keep)
            finally:
                self.live.pop(rec.id, None)
                self._jobs.pop(rec.id, None)
                self._owners.pop(rec.id, None)

        self.live[rec.id] = rec
        if owner is not None:
            self._owners[rec.id] = owner
        self._jobs[rec.id] = job = Job(req.client, work)  # before it can run (and end)
        try:
            self.pool.submit(job)
        except ApiError:
            self.live.pop(rec.id, None)
            self._jobs.pop(rec.id, None)
            self._owners.pop(rec.id, None)
            raise
        return rec

    def _charge_and_keep(self, student: Student, keep: Optional[Callable], resource: dict,
                         *rest) -> None:
        """A classroom turn's `keep`: count its tokens against its key's budget (and in the
        store), then store it (`keep`, None for store=false)."""
        tokens = int((resource.get("usage") or {}).get("total_tokens") or 0)
        self.keys.charge(student, tokens)
        if tokens:
            try:
                self.store.add_key_usage(student.id, tokens)
            except StoreError as e:  # the budget still holds until a restart
                log.warning("token usage of key %s not stored: %s", student.label, e)
        if keep is not None:
            keep(resource, *rest)

    def _live(self, interaction_id: str, owner: Optional[str]) -> Optional[TurnRecorder]:
        """The running turn with this id, if any (and, in classroom mode, `owner`'s)."""
        rec = self.live.get(interaction_id)
        if rec is not None and owner is not None and self._owners.get(interaction_id) != owner:
            return None
        return rec

    async def _wait_or_disconnect(self, request: Request, rec: TurnRecorder) -> bool:
        """Wait for the turn; False if the client went away first."""
        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        done = asyncio.ensure_future(sse.wait_done(rec))
        gone = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            gone.cancel()
        return rec.done.is_set()

    # -- get / cancel / delete -----------------------------------------------------------
    async def get(self, request: Request) -> Response:
        owner = _id(self.check_key(request))
        interaction_id = request.path_params["id"]
        q = request.query_params
        stream = _query_stream(request)
        include_input = parse_bool_param(q.get("include_input"), "include_input")
        start = resume_position(q.get("last_event_id"), interaction_id)
        rec = self._live(interaction_id, owner)
        if rec is not None:
            if stream:
                return EventStream(sse.frames(sse.follow(rec, start)))
            return _Json(rec.snapshot(include_input, timeline=True))
        stored = await asyncio.to_thread(self.store.get, interaction_id, stream, owner)
        if stored is None:
            raise _not_found(interaction_id)
        if stream:
            return EventStream(sse.replay(stored["events"][start:]))
        return _Json(_resource(stored, include_input, timeline=True))

    async def cancel(self, request: Request) -> Response:
        owner = _id(self.check_key(request))
        interaction_id = request.path_params["id"]
        rec = self._live(interaction_id, owner)
        if rec is not None:
            await self._stop(rec)
            return _Json(rec.snapshot())
        stored = await asyncio.to_thread(self.store.get, interaction_id, False, owner)
        if stored is None:
            raise _not_found(interaction_id)
        return _Json(_resource(stored, False))  # already finished: unchanged

    async def delete(self, request: Request) -> Response:
        owner = _id(self.check_key(request))
        interaction_id = request.path_params["id"]
        rec = self._live(interaction_id, owner)
        if rec is not None:
            await self._stop(rec)
        if not await asyncio.to_thread(self.store.delete, interaction_id, owner) and rec is None:
            raise _not_found(interaction_id)
        return _Json({})

    async def _stop(self, rec: TurnRecorder) -> None:
        """Cancel a turn and wait until it has ended: at once if it was still queued."""
        rec.cancel_requested.set()
        job = self._jobs.get(rec.id)
        if job is not None and self.pool.cancel(job):
            await asyncio.to_thread(job.fn, not_run)
            return
        try:
            await asyncio.wait_for(sse.wait_done(rec), CANCEL_WAIT_SECONDS)
        except asyncio.TimeoutError:
            log.warning("interaction %s did not stop within %ss", rec.id, CANCEL_WAIT_SECONDS)

    def _abandon(self, rec: TurnRecorder) -> None:
        """Its client went away: cancel the turn without waiting (on the event loop)."""
        rec.cancel_requested.set()
        job = self._jobs.get(rec.id)
        if job is not None and self.pool.cancel(job):
            try:
                asyncio.get_running_loop().run_in_executor(None, job.fn, not_run)
            except RuntimeError:  # the server is stopping: end it here
                job.fn(not_run)


def _key_of(request: Request) -> str:
    """The API key a request sends: the x-goog-api-key header, else the `key` query parameter."""
    return request.headers.get("x-goog-api-key") or request.query_params.get("key") or ""


def _id(student: Optional[Student]) -> Optional[str]:
    return None if student is None else student.id


def _client_of(request: Request, student: Optional[Student] = None) -> str:
    """Who is asking, for fair slots: in classroom mode the key (wherever it connects from),
    else the peer's address and (a digest of) its API key."""
    if student is not None:
        return "key " + student.id
    key = request.headers.get("x-goog-api-key", "")
    digest = hashlib.blake2b(key.encode(), digest_size=8).hexdigest() if key else "-"
    host = request.client.host if request.client else "?"
    return f"{host} {digest}"


def _resource(stored: dict, include_input: bool, timeline: bool = False) -> dict:
    return resource_with_steps(stored["resource"], stored["input"], stored["steps"], include_input,
                               timeline)


def _query_stream(request: Request) -> bool:
    """Whether the query asks for SSE: `alt=sse` (the SDKs) or `stream=true`."""
    q = request.query_params
    return q.get("alt") == "sse" or parse_bool_param(q.get("stream"), "stream")


def _not_found(interaction_id: str) -> ApiError:
    return ApiError(404, f"Interaction {shown(interaction_id)} was not found: it does not "
                         f"exist, was created with store=false, was deleted or expired.")


def _error(err: ApiError) -> Response:
    headers = dict(getattr(err, "headers", None) or {})
    if err.close:
        headers["connection"] = "close"
    return _Json(err.body(), status_code=err.code, headers=headers or None)


def _guard(handler):
    """Turn ApiError, a store fault and any bug into a Google-style error body; a client that
    went away is normal (no log, no answer anyone reads)."""
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as e:
            return _error(e)
        except ClientDisconnect:
            return Response(status_code=499)
        except StoreError as e:
            log.warning("%s %s: %s", request.method, shown(request.url.path), e)
            return _error(ApiError(500, str(e)))
        except Exception:
            log.exception("unexpected error on %s %s", request.method, shown(request.url.path))
            return _error(ApiError(500, "Internal error in the local server; see its log."))
    return endpoint


async def _http_error(request: Request, exc: HTTPException) -> Response:
    path = shown(request.url.path)
    if exc.status_code == 404:
        err = ApiError(404, f"No such endpoint {path}; the Interactions API is served at "
                            f"/{{version}}/interactions.")
    elif exc.status_code == 405:
        err = ApiError(405, f"{shown(request.method, 20)} is not allowed on {path} (listing "
                            f"interactions is not supported; use create, get, cancel or delete).")
    else:
        err = ApiError(exc.status_code, str(exc.detail))
    return _error(err)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """Whatever escapes a route (starlette logs it): still the Google shape."""
    return _error(ApiError(500, "Internal error in the local server; see its log."))


def _is_batch_route(route: Route) -> bool:
    return "/batches" in route.path or ":batchGenerateContent" in route.path


def _no_batches(route: Route, service: InteractionService) -> Route:
    """A Batch API route of a classroom server: a 501 (for a known key), as its batches would
    not be kept per key."""
    async def refuse(request: Request) -> Response:
        service.check_key(request)
        raise ApiError(501, "The Batch API is off on this classroom server (batches are not "
                            "kept per key); send each request to interactions.create instead.",
                       status="UNIMPLEMENTED")
    return Route(route.path, _guard(refuse), methods=sorted(route.methods or ()))


def set_nodelay(transport) -> None:
    """TCP_NODELAY on a connection (our listening socket has proto 0, so asyncio skips it)."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class _App(Starlette):
    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            # uvicorn's receive is a method of the request cycle, which holds the transport.
            set_nodelay(getattr(getattr(receive, "__self__", None), "transport", None))
        await super().__call__(scope, receive, send)


def create_app(service: InteractionService) -> Starlette:
    p = "/{prefix:path}/interactions"
    routes = [
        *unsupported.priority_routes(_guard, p), *unsupported.routes(_guard),  # 501s
        Route(p, _guard(service.create), methods=["POST"]),
        Route(p + "/{id}", _guard(service.get), methods=["GET"]),
        Route(p + "/{id}", _guard(service.delete), methods=["DELETE"]),
        Route(p + "/{id}/cancel", _guard(service.cancel), methods=["POST"]),
    ]
    routes = add_routes(routes, service)  # the Batch API, and the engine's admit() on POSTs
    if getattr(service, "keys", None) is not None:
        routes = [_no_batches(r, service) if _is_batch_route(r) else r for r in routes]
    app = _App(routes=routes, exception_handlers={HTTPException: _http_error,
                                                  Exception: _internal_error})
    app.state.service = service
    return app


# --------------------------------------------------------------------------------------------
# Connections: the uvicorn protocol
# --------------------------------------------------------------------------------------------

_HTTP_LOG = logging.getLogger(__name__ + ".http")
# A malformed request is the client's error and is answered with a 400: not worth a log line.
_HTTP_LOG.addFilter(lambda record: not record.getMessage().startswith("Invalid HTTP request"))


@functools.lru_cache(maxsize=None)
def http_protocol() -> type:
    """The uvicorn HTTP protocol to serve with: `uvicorn.Config(app, http=http_protocol())`.

    uvicorn's h11 protocol waits forever for a request head (a fresh connection, or bytes after
    a keep-alive response, cancel its only timer), answers malformed HTTP in plain text and logs
    each one. This one adds: a `read_timeout` deadline for every request head (then a 408, or a
    silent close if nothing came), `idle_timeout` between requests, `write_timeout` for a client
    that stops reading, TCP_NODELAY, JSON 400s, no WebSocket upgrades, and, when the process
    nears its file-descriptor limit, the longest-idle connection closed for each new one (so a
    flood of stalled connections cannot lock out real clients).
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol  # deferred: uvicorn, only for serving

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.logger = _HTTP_LOG
            service = getattr(getattr(self.config.app, "state", None), "service", None)
            self._read_timeout = getattr(service, "read_timeout", READ_TIMEOUT_SECONDS)
            self._write_timeout = getattr(service, "write_timeout", WRITE_TIMEOUT_SECONDS)
            self.timeout_keep_alive = getattr(service, "idle_timeout", IDLE_TIMEOUT_SECONDS)
            self._head_timer: Optional[asyncio.TimerHandle] = None
            self._write_timer: Optional[asyncio.TimerHandle] = None
            self.idle_since = self.loop.time()
            set_nodelay(transport)
            self._arm_head()
            _make_room(self, transport)

        def connection_lost(self, exc) -> None:
            for timer in (self._head_timer, self._write_timer):
                if timer is not None:
                    timer.cancel()
            self._head_timer = self._write_timer = None
            super().connection_lost(exc)

        def waiting(self) -> bool:
            """Between requests: none read yet, or the last one answered."""
            return self.cycle is None or self.cycle.response_complete

        def data_received(self, data: bytes) -> None:
            try:
                super().data_received(data)
            except Exception as e:  # a request uvicorn cannot decode
                _HTTP_LOG.debug("undecodable request: %s", e)
                self.send_400_response("")
                return
            if self.waiting():
                self._arm_head()  # a partial head (uvicorn just cancelled its keep-alive timer)
            elif self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def on_response_complete(self) -> None:
            super().on_response_complete()  # arms the idle (keep-alive) timer
            self.idle_since = self.loop.time()
            if self.waiting() and self._head_timer is not None:
                self._head_timer.cancel()  # idle now; the next byte re-arms the head deadline
                self._head_timer = None

        def _arm_head(self) -> None:
            if self._head_timer is None and not self.transport.is_closing():
                self._head_timer = self.loop.call_later(self._read_timeout, self._head_late)

        def _head_late(self) -> None:
            self._head_timer = None
            if not self.waiting() or self.transport.is_closing():
                return
            if self.conn.trailing_data[0]:
                _write_error(self.transport, 408, "Request Timeout", ApiError(
                    408, f"The request head did not arrive within {self._read_timeout:g} s; "
                         f"send the whole request promptly."))
            self.transport.close()

        def send_400_response(self, msg: str) -> None:
            _write_error(self.transport, 400, "Bad Request", ApiError(
                400, "The request is not valid HTTP/1.1 (its request line or headers could not "
                     "be parsed); send a well-formed request."))
            self.transport.close()

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._write_timer is None:
                self._write_timer = self.loop.call_later(self._write_timeout, self._write_late)

        def _write_late(self) -> None:
            """The client read nothing for `write_timeout`: reset the connection, dropping what
            the kernel still holds for it (a plain close would trickle it out for minutes)."""
            self._write_timer = None
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            self.transport.abort()

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None

        def _should_upgrade_to_ws(self) -> bool:
            return False  # no WebSocket routes: an Upgrade header is ignored

        def _unsupported_upgrade_warning(self) -> None:
            pass

    return GuardedH11Protocol


def _write_error(transport, code: int, reason: str, err: ApiError) -> None:
    """A complete error response written directly (outside h11, which cannot send it here);
    the connection is closed after it."""
    body = json.dumps(err.body(), separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
    if not transport.is_closing():
        transport.write(head + body)


def _make_room(new, transport) -> None:
    """Near the descriptor limit (the new socket's number tells: the kernel gives the lowest
    free one), close the connections that have waited longest between requests: a batch at a
    time, since asyncio accepts a burst before any of it is seen here, and pauses accepting for
    a second when it runs out."""
    if _resource_limits is None:
        return
    sock = transport.get_extra_info("socket")
    soft = _resource_limits.getrlimit(_resource_limits.RLIMIT_NOFILE)[0]
    if sock is None or soft == _resource_limits.RLIM_INFINITY:
        return
    reserve = max(16, soft // 8)
    if sock.fileno() < soft - reserve:
        return
    idle = [p for p in new.connections
            if p is not new and hasattr(p, "idle_since") and p.waiting()
            and not p.transport.is_closing()]
    idle.sort(key=lambda p: p.idle_since)
    for p in idle[:reserve // 2]:
        p.transport.close()


@functools.lru_cache(maxsize=None)
def server_class() -> type:
    """The uvicorn Server to serve with: it quiets accept() errors on its loop before it starts
    listening. (Installed at the first connection, a burst of connections that hits the
    descriptor limit before any of them is set up logs ~2,000 tracebacks in one loop tick:
    asyncio retries accept() up to `backlog` times after EMFILE, logging each.)"""
    import uvicorn  # deferred: uvicorn, only for serving

    class QuietServer(uvicorn.Server):
        async def serve(self, sockets=None) -> None:
            _quiet_accept_errors(asyncio.get_running_loop())
            await super().serve(sockets=sockets)

    return QuietServer


def _quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio logs a traceback for every failed accept() when out of descriptors; one line
    every 10 s says it as well."""
    if loop.get_exception_handler() is not None:
        return
    last = [0.0]

    def handler(loop, context) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            now = time.monotonic()
            if now - last[0] >= 10:
                last[0] = now
                log.warning("out of file descriptors (%s): new connections wait; raise "
                            "`ulimit -n` or close idle clients", context.get("exception"))
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
