"""Starlette routes for the Interactions API: create, get, cancel, delete under any version.

`/{prefix}/interactions[/{id}[/cancel]]` with any prefix (`v1`, `v1beta`, `proxy/v1beta`), as the
SDKs build it from `base_url`. Every failure is a Google-style JSON error (`protocol.ApiError`).
Turns run on a thread pool (engines block); readers follow them through `sse.follow`.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import sse
from .engines.base import Engine
from .protocol import (MAX_BODY_BYTES, ApiError, CreateRequest, bad, parse_bool_param,
                       parse_create, parse_json_body)
from .producers import pick_producer
from .store import Store
from .turns import (TurnContext, TurnRecorder, begin, make_usage, now_iso, resource_with_steps,
                    run_turn)

log = logging.getLogger(__name__)

MAX_WORKERS = 64          # concurrent turns; more wait in the pool's queue
CANCEL_WAIT_SECONDS = 30  # how long cancel/delete wait for a running engine to stop
DRAIN_LIMIT = 4 * MAX_BODY_BYTES  # an oversized body is read (and dropped) up to this much


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


class InteractionService:
    """Live turns, the store and the engine behind the routes."""

    def __init__(self, engine: Engine, store: Store, api_key: Optional[str] = None,
                 max_workers: int = MAX_WORKERS):
        self.engine = engine
        self.store = store
        self._api_key = api_key
        self.live: dict[str, TurnRecorder] = {}
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="gm-turn")

    # -- plumbing ------------------------------------------------------------------------
    def check_key(self, request: Request) -> None:
        if self._api_key is None:
            return
        given = request.headers.get("x-goog-api-key", "")
        if not hmac.compare_digest(given.encode(), self._api_key.encode()):
            raise ApiError(401, "Missing or wrong API key: send the server's key in the "
                                "x-goog-api-key header (GEMINI_API_KEY for the SDKs).")

    async def read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        too_big = declared.isdigit() and int(declared) > MAX_BODY_BYTES
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                too_big = True
            if too_big:
                chunks = []
                if size > DRAIN_LIMIT:
                    break
            else:
                chunks.append(chunk)
        if too_big:
            mib = MAX_BODY_BYTES // (1024 * 1024)
            raise ApiError(413, f"The request body is larger than {mib} MiB; send large media "
                                f"by 'uri' or split the request.")
        return b"".join(chunks)

    def shutdown(self) -> None:
        for rec in list(self.live.values()):
            rec.cancel_requested.set()
        self.pool.shutdown(wait=True, cancel_futures=True)

    # -- create --------------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        self.check_key(request)
        query_stream = _query_stream(request)
        req = parse_create(parse_json_body(await self.read_body(request)), query_stream)
        history = self._history(req)
        rec = self.start(req, history)
        if req.stream:
            on_close = None if req.background else rec.cancel_requested.set
            return EventStream(sse.frames(sse.follow(rec)), on_close=on_close)
        if req.background:
            return JSONResponse(rec.snapshot())
        if not await self._wait_or_disconnect(request, rec):
            rec.cancel_requested.set()
            return Response(status_code=499)  # nobody is listening any more
        return JSONResponse(rec.snapshot())

    def _history(self, req: CreateRequest) -> list[dict]:
        prev = req.previous_interaction_id
        if not prev:
            return []
        rec = self.live.get(prev)
        if rec is not None and not rec.done.is_set():
            raise bad(f"'previous_interaction_id' {prev!r} is still in progress; wait until it "
                      f"completes (poll it with get) or cancel it first.")
        history = self.store.history(prev)
        if history is None:
            raise ApiError(404, f"'previous_interaction_id' {prev!r} was not found: it does not "
                                f"exist, was created with store=false, was deleted or expired.")
        return history

    def start(self, req: CreateRequest, history: list[dict]) -> TurnRecorder:
        """Register a new turn and run it on the pool; returns at once."""
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
        rec = TurnRecorder(resource, req.input_steps)
        begin(rec)
        self.live[rec.id] = rec
        ctx = TurnContext(request=req, history=history, engine=self.engine, recorder=rec)
        producer = pick_producer(req, history)

        def on_finish(done: TurnRecorder) -> None:
            if req.store:
                self.store.put(done.resource, done.input_steps, done.steps(), done.events)

        def work() -> None:
            try:
                run_turn(ctx, producer, on_finish)
            finally:
                self.live.pop(rec.id, None)

        self.pool.submit(work)
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
        self.check_key(request)
        interaction_id = request.path_params["id"]
        q = request.query_params
        stream = _query_stream(request)
        include_input = parse_bool_param(q.get("include_input"), "include_input")
        start = _event_position(q.get("last_event_id"))
        rec = self.live.get(interaction_id)
        if rec is not None:
            if stream:
                return EventStream(sse.frames(sse.follow(rec, start)))
            return JSONResponse(rec.snapshot(include_input))
        stored = self.store.get(interaction_id, with_events=stream)
        if stored is None:
            raise _not_found(interaction_id)
        if stream:
            return EventStream(sse.replay(stored["events"][start:]))
        return JSONResponse(_resource(stored, include_input))

    async def cancel(self, request: Request) -> Response:
        self.check_key(request)
        interaction_id = request.path_params["id"]
        rec = self.live.get(interaction_id)
        if rec is not None:
            await self._stop(rec)
            return JSONResponse(rec.snapshot())
        stored = self.store.get(interaction_id)
        if stored is None:
            raise _not_found(interaction_id)
        return JSONResponse(_resource(stored, False))  # already finished: unchanged

    async def delete(self, request: Request) -> Response:
        self.check_key(request)
        interaction_id = request.path_params["id"]
        rec = self.live.get(interaction_id)
        if rec is not None:
            await self._stop(rec)
        if not self.store.delete(interaction_id) and rec is None:
            raise _not_found(interaction_id)
        return JSONResponse({})

    async def _stop(self, rec: TurnRecorder) -> None:
        rec.cancel_requested.set()
        try:
            await asyncio.wait_for(sse.wait_done(rec), CANCEL_WAIT_SECONDS)
        except asyncio.TimeoutError:
            log.warning("interaction %s did not stop within %ss", rec.id, CANCEL_WAIT_SECONDS)


def _resource(stored: dict, include_input: bool) -> dict:
    return resource_with_steps(stored["resource"], stored["input"], stored["steps"], include_input)


def _query_stream(request: Request) -> bool:
    """Whether the query asks for SSE: `alt=sse` (the SDKs) or `stream=true`."""
    q = request.query_params
    return q.get("alt") == "sse" or parse_bool_param(q.get("stream"), "stream")


def _event_position(value: Optional[str]) -> int:
    """Events after `last_event_id` (ids are 1-based positions)."""
    if value is None or value == "":
        return 0
    if not value.isdigit():
        raise bad(f"Query parameter 'last_event_id' must be an event_id from this interaction's "
                  f"stream (a number), not {value!r}.")
    return int(value)


def _not_found(interaction_id: str) -> ApiError:
    return ApiError(404, f"Interaction {interaction_id!r} was not found: it does not exist, was "
                         f"created with store=false, was deleted or expired.")


def _guard(handler):
    """Turn ApiError (and any bug) into a Google-style error body."""
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as e:
            return JSONResponse(e.body(), status_code=e.code)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return JSONResponse(ApiError(500, "Internal error in the local server; see its log."
                                         ).body(), status_code=500)
    return endpoint


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        err = ApiError(404, f"No such endpoint {request.url.path!r}; the Interactions API is "
                            f"served at /{{version}}/interactions.")
    elif exc.status_code == 405:
        err = ApiError(405, f"{request.method} is not allowed on {request.url.path!r} (listing "
                            f"interactions is not supported; use create, get, cancel or delete).")
    else:
        err = ApiError(exc.status_code, str(exc.detail))
    return JSONResponse(err.body(), status_code=err.code)


def create_app(service: InteractionService) -> Starlette:
    p = "/{prefix:path}/interactions"
    routes = [
        Route(p, _guard(service.create), methods=["POST"]),
        Route(p + "/{id}", _guard(service.get), methods=["GET"]),
        Route(p + "/{id}", _guard(service.delete), methods=["DELETE"]),
        Route(p + "/{id}/cancel", _guard(service.cancel), methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.service = service
    return app
