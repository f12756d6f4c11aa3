"""The service behind the routes: live turns, the store and the engine.

Create parses and validates a body (`protocol`), reads the conversation it continues and queues
the turn on the `FairPool` (`scheduler`; engines block); readers follow a turn through
`sse.follow` while it runs and the store afterwards. Parsing, chain reads and store lookups run
off the event loop, so one large request does not stall the others. The routes, the key gate
and the error shapes are `routes.py`; the connection limits are `http_guard.py`.

Classroom mode (`keys`, a `classroom.KeyRing`): every request needs one of the keys (the gate
in `routes.py` asks `check_key`); each interaction belongs to the key that created it, and any
other key is answered 404 for it, as if it did not exist (so ids cannot be probed); creates are
held to the key's rate and token budget (429); fair slots are per key; a batch belongs to its
key too (`batches.py`). The teacher's console (`teacher.py`) reads and changes the keys.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
from typing import Callable, Optional

from starlette.requests import Request
from starlette.responses import Response

from . import sse
from .agents import AgentStore, with_custom_agent
from .classroom import KeyRing, Student, key_holder
from .costs import usage_cost
from .costs import warm as warm_prices
from .engines.base import Engine
from .event_ids import resume_position
from .http_guard import (IDLE_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS, WRITE_TIMEOUT_SECONDS,
                         http_protocol, read_body, server_class)
from .producers import pick_producer
from .protocol import (ApiError, CreateRequest, bad, parse_bool_param, parse_create,
                       parse_json_body, shown)
from .responses import EventStream, Json, student_of
from .resume import RESUME_GRACE_S, ResumeGrace
from .routes import create_app
from .scheduler import MAX_WORKERS, FairPool, Job
from .store import Store, StoreError
from .turns import (TurnContext, TurnRecorder, begin, make_usage, not_run, now_iso,
                    resource_with_steps, run_turn)

# create_app, http_protocol and server_class are re-exported: what `server/__init__` and older
# callers import from here.
__all__ = ["InteractionService", "create_app", "http_protocol", "server_class"]

log = logging.getLogger(__name__)

CANCEL_WAIT_SECONDS = 30  # how long cancel/delete wait for a running engine to stop
DEFAULT_SERVICE_TIER = "standard"  # what the real API reports when none was asked for


class InteractionService:
    """Live turns, the store and the engine behind the routes.

    `read_timeout`, `idle_timeout` and `write_timeout` are read per connection (tests shorten
    them on a running server)."""

    def __init__(self, engine: Engine, store: Store, api_key: Optional[str] = None,
                 max_workers: int = MAX_WORKERS, per_client: Optional[int] = None,
                 read_timeout: float = READ_TIMEOUT_SECONDS,
                 idle_timeout: float = IDLE_TIMEOUT_SECONDS,
                 write_timeout: float = WRITE_TIMEOUT_SECONDS,
                 keys: Optional[KeyRing] = None, resume_grace: float = RESUME_GRACE_S):
        self.engine = engine
        self.store = store
        self.agents = AgentStore(store)  # custom agents (agents.py), in the same database
        self.api_key = api_key  # the one key of the server (None: open, or classroom keys)
        self.keys = keys
        if keys is not None:
            for label in keys.load_settings(store.students()):
                log.warning("the student %r added in the console is left out: the keys file "
                            "now gives that label another key", label)
            keys.load_usage(store.key_usage())
            warm_prices()  # the first charged turn must not wait for the price data
        self.live: dict[str, TurnRecorder] = {}
        self._owners: dict[str, str] = {}  # live turn id -> its key's id (classroom mode)
        self._jobs: dict[str, Job] = {}
        self.pool = FairPool(max_workers, per_client)
        self.resumes = ResumeGrace(self._abandon, self._forget, resume_grace)
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout

    # -- plumbing ------------------------------------------------------------------------
    def check_key(self, request: Request) -> Optional[Student]:
        """Refuse a request without the right key (401); in classroom mode, whose key it is.
        The app's gate asks this once per request, before routing (`routes._App`)."""
        return key_holder(self.keys, self.api_key, request.headers.get("x-goog-api-key", ""),
                          _key_of(request))

    def shutdown(self) -> None:
        for rec in list(self.live.values()):
            rec.cancel_requested.set()
        for job in self.pool.close():
            job.fn(not_run)  # queued turns end cancelled (and stored), not hanging their readers
        self.pool.shutdown()

    # -- create --------------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        student = student_of(request)
        if student is not None:
            self.keys.admit(student)
        query_stream = _query_stream(request)
        raw = await read_body(request, self.read_timeout)
        req, history = await asyncio.to_thread(self._prepare, raw, query_stream,
                                               _client_of(request, student), _id(student))
        rec = self.start(req, history, student=student)
        if req.stream:  # a dropped stream's turn runs on for a while, for a resume (resume.py)
            return self.resumes.stream(rec)
        if req.background:
            return Json(rec.snapshot())
        if not await self._wait_or_disconnect(request, rec):
            self._abandon(rec)
            return Response(status_code=499)  # nobody is listening any more
        return Json(rec.snapshot())

    def _prepare(self, raw: bytes, query_stream: bool, client: str,
                 owner: Optional[str] = None) -> tuple[CreateRequest, list[dict]]:
        """Parse and validate the body, then read the conversation it continues (a thread)."""
        req = parse_create(parse_json_body(raw), query_stream)
        req.client = client
        req = with_custom_agent(req, self.agents, owner)
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
                self._jobs.pop(rec.id, None)
                if not self.resumes.ended(rec):
                    self._forget(rec)

        self.live[rec.id] = rec
        if owner is not None:
            self._owners[rec.id] = owner
        if req.stream and not req.background:  # its readers keep it running (resume.py)
            self.resumes.watch(rec, stored=req.store)
        self._jobs[rec.id] = job = Job(req.client, work)  # before it can run (and end)
        try:
            self.pool.submit(job)
        except ApiError:
            self._jobs.pop(rec.id, None)
            self.resumes.ended(rec)
            self._forget(rec)
            raise
        return rec

    def _charge_and_keep(self, student: Student, keep: Optional[Callable], resource: dict,
                         *rest) -> None:
        """A classroom turn's `keep`: count its tokens against its key's budget (and in the
        store, with their cost at the model's price), then store it (`keep`, None for
        store=false)."""
        usage = resource.get("usage") or {}
        self.charge(student, int(usage.get("total_tokens") or 0),
                    cost=usage_cost(resource.get("model"), usage))
        if keep is not None:
            keep(resource, *rest)

    def charge(self, student: Student, tokens: int, requests: int = 1,
               cost: Optional[float] = None) -> None:
        """Count ended requests and their tokens against a key's budget, and in the store
        (the console's usage; the budget across restarts); `cost` in USD, None when their
        model has no known price."""
        self.keys.charge(student, tokens, requests, cost)
        try:
            self.store.add_key_usage(student.id, tokens, requests, cost)
        except StoreError as e:  # the budget still holds until a restart
            log.warning("token usage of key %s not stored: %s", student.label, e)

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
        owner = _id(student_of(request))
        interaction_id = request.path_params["id"]
        q = request.query_params
        stream = _query_stream(request)
        include_input = parse_bool_param(q.get("include_input"), "include_input")
        start = resume_position(q.get("last_event_id"), interaction_id)
        rec = self._live(interaction_id, owner)
        if rec is not None:
            if stream:
                return self.resumes.stream(rec, start)
            return Json(rec.snapshot(include_input, timeline=True))
        stored = await asyncio.to_thread(self.store.get, interaction_id, stream, owner)
        if stored is None:
            raise _not_found(interaction_id)
        if stream:
            return EventStream(sse.replay(stored["events"][start:]))
        return Json(_resource(stored, include_input, timeline=True))

    async def cancel(self, request: Request) -> Response:
        owner = _id(student_of(request))
        interaction_id = request.path_params["id"]
        rec = self._live(interaction_id, owner)
        if rec is not None:
            await self._stop(rec)
            return Json(rec.snapshot())
        stored = await asyncio.to_thread(self.store.get, interaction_id, False, owner)
        if stored is None:
            raise _not_found(interaction_id)
        return Json(_resource(stored, False))  # already finished: unchanged

    async def delete(self, request: Request) -> Response:
        owner = _id(student_of(request))
        interaction_id = request.path_params["id"]
        rec = self._live(interaction_id, owner)
        if rec is not None:
            await self._stop(rec)
        if not await asyncio.to_thread(self.store.delete, interaction_id, owner) and rec is None:
            raise _not_found(interaction_id)
        return Json({})

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

    def _forget(self, rec: TurnRecorder) -> None:
        """An ended turn is no longer live (the store has it, if it was stored)."""
        self.live.pop(rec.id, None)
        self._owners.pop(rec.id, None)

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
