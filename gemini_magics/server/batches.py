"""The local server's Batch API routes and the engine's admission gate on every POST.

`add_routes(routes, service)` is what `create_app` calls: it adds the Batch API routes the
google-genai SDK's `client.batches` calls use, and puts an engine's `admit()` in front of every
request that starts work (an interactions create, a batch create), so the echo engine's
`rps` / `fail_first` knobs answer a real HTTP 429 (with Retry-After and a RetryInfo detail, as
Google sends them) or 503 before a turn is started. Engines without `admit` are not gated.

In classroom mode each batch belongs to the key that created it: any other key gets 404 for it
and never sees it listed; creating one counts against the key's rate, and each of its requests
is charged to the key's token budget as it is answered (once the budget is used up, the rest
are answered with a 429 error each instead of running).
"""
from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from collections import Counter

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .costs import price
from .engines.base import EngineRequest, GenerationParams
from .protocol import check_refs
from .turns import public_message

log = logging.getLogger(__name__)

__all__ = ["add_routes", "refusal", "BatchStore"]

MAX_BATCH_REQUESTS = 10_000
_TERMINAL = ("BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED")


def refusal(code: int, wait: float) -> Response:
    """The Google-shaped answer to a request the engine did not admit."""
    if code == 429:
        wait = math.ceil(wait * 1000) / 1000  # never ask for less than the limiter needs
        message = (f"Resource has been exhausted (the local echo engine's rate limit); retry in "
                   f"{wait:.3f}s.")
        body = {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED",
                          "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                       "retryDelay": f"{wait:.3f}s"}]}}
        return JSONResponse(body, status_code=429,
                            headers={"retry-after": str(max(1, math.ceil(wait)))})
    body = {"error": {"code": code, "message": "The local echo engine is unavailable (its "
                                               "fail_first knob); retry in a moment.",
                      "status": "UNAVAILABLE"}}
    return JSONResponse(body, status_code=code)


def _admitted(endpoint, service):
    async def gated(request: Request) -> Response:
        admit = getattr(service.engine, "admit", None)
        refused = admit() if admit is not None else None
        if refused is not None:
            return refusal(*refused)
        return await endpoint(request)
    return gated


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _error(code: int, message: str, status: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message, "status": status}},
                        status_code=code)


class _Batch:
    def __init__(self, name: str, model: str, display_name: str, requests: list, owner=None):
        self.name, self.model, self.display_name = name, model, display_name
        self.owner = owner  # the classroom.Student who made it (None: anyone's)
        self.requests = requests
        self.state = "BATCH_STATE_PENDING"
        self.responses: list = []
        self.created = self.updated = _now()
        self.ended = None
        self.cancel = threading.Event()

    def resource(self) -> dict:
        meta = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main."
                         "GenerateContentBatch",
                "model": self.model, "displayName": self.display_name, "state": self.state,
                "createTime": self.created, "updateTime": self.updated,
                "batchStats": {"requestCount": str(len(self.requests)),
                               "successfulRequestCount": str(sum("response" in r
                                                                 for r in self.responses))}}
        if self.ended:
            meta["endTime"] = self.ended
        if self.state == "BATCH_STATE_SUCCEEDED":
            meta["output"] = {"inlinedResponses": {"inlinedResponses": list(self.responses)}}
        return {"name": self.name, "metadata": meta, "done": self.state in _TERMINAL}


def _text_of(content) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    return "".join(p.get("text", "") for p in parts or [] if isinstance(p, dict))


def _answer(engine, model: str, inline: dict) -> dict:
    """One inline generateContent request, answered by the engine."""
    req = inline.get("request") or {}
    messages = []
    system = _text_of(req.get("systemInstruction") or req.get("system_instruction"))
    if system:
        messages.append({"role": "system", "content": system})
    for c in req.get("contents") or []:
        role = "assistant" if c.get("role") == "model" else "user"
        messages.append({"role": role, "content": _text_of(c)})
    cfg = req.get("generationConfig") or {}
    schema = cfg.get("responseJsonSchema") or cfg.get("responseSchema")
    params = GenerationParams(temperature=cfg.get("temperature"), top_p=cfg.get("topP"),
                              max_output_tokens=cfg.get("maxOutputTokens"),
                              stop_sequences=list(cfg.get("stopSequences") or []),
                              seed=cfg.get("seed"))
    out = engine.generate(EngineRequest(model=model, messages=messages, params=params,
                                        json_schema=schema if isinstance(schema, dict) else None),
                          lambda chunk: True)
    finish = "MAX_TOKENS" if out.finish == "length" else "STOP"
    response = {"candidates": [{"content": {"role": "model", "parts": [{"text": out.text}]},
                                "finishReason": finish, "index": 0}],
                "usageMetadata": {"promptTokenCount": out.input_tokens,
                                  "candidatesTokenCount": out.output_tokens,
                                  "totalTokenCount": out.input_tokens + out.output_tokens},
                "modelVersion": model}
    answer = {"response": response}
    if "metadata" in inline:
        answer["metadata"] = inline["metadata"]
    return answer


class BatchStore:
    """The batches of one server, in memory; each runs on its own thread, one request at a
    time (the engine is the limit anyway)."""

    def __init__(self, service, owner_of=lambda request: None):
        self.service = service
        self.owner_of = owner_of  # a request's classroom.Student (None outside classroom mode)
        self.batches: dict = {}
        self.lock = threading.Lock()

    def _run(self, batch: _Batch) -> None:
        batch.state, batch.updated = "BATCH_STATE_RUNNING", _now()
        try:
            for inline in batch.requests:
                if batch.cancel.is_set():
                    break
                batch.responses.append(self._answer_one(batch, inline))
            batch.state = ("BATCH_STATE_CANCELLED" if batch.cancel.is_set()
                           else "BATCH_STATE_SUCCEEDED")
        except Exception:  # noqa: BLE001
            batch.state = "BATCH_STATE_FAILED"
        batch.updated = batch.ended = _now()

    def _answer_one(self, batch: _Batch, inline: dict) -> dict:
        """One request's answer or error, charged to the batch's owner."""
        meta = {"metadata": inline["metadata"]} if "metadata" in inline else {}
        student, keys = batch.owner, getattr(self.service, "keys", None)
        refused = keys.over_budget(student) if student is not None else None
        if refused is not None:
            return {"error": {"code": 429, "message": refused.message,
                              "status": "RESOURCE_EXHAUSTED"}, **meta}
        try:
            answer = _answer(self.service.engine, batch.model, inline)
        except Exception as e:  # noqa: BLE001 - one request's failure is its error
            log.warning("a request of batch %s failed", batch.name, exc_info=True)
            answer = {"error": {"code": 500, "message": public_message(e)}, **meta}
        if student is not None:
            usage = (answer.get("response") or {}).get("usageMetadata") or {}
            cost = price(batch.model, usage.get("promptTokenCount") or 0,
                         usage.get("candidatesTokenCount") or 0)  # standard price, as turns
            self.service.charge(student, int(usage.get("totalTokenCount") or 0), cost=cost)
        return answer

    def running(self) -> Counter:
        """Pending or running batches by their owner's id (the console's live status)."""
        with self.lock:
            return Counter(j.owner.id for j in self.batches.values()
                           if j.owner is not None and j.state not in _TERMINAL)

    async def create(self, request: Request) -> Response:
        student = self.owner_of(request)
        if student is not None:
            self.service.keys.admit(student)  # a batch is one create for the rate
        model = request.path_params["model"]
        try:
            body = json.loads(await request.body() or b"{}")
            batch = body.get("batch") or {}
            inline = (((batch.get("inputConfig") or {}).get("requests") or {})
                      .get("requests"))
        except (ValueError, AttributeError):
            return _error(400, "The batch body must be a JSON object with "
                               "batch.inputConfig.requests.requests.", "INVALID_ARGUMENT")
        if not isinstance(inline, list) or not inline:
            return _error(400, "This server takes inline requests only "
                               "(batch.inputConfig.requests.requests), at least one.",
                          "INVALID_ARGUMENT")
        if len(inline) > MAX_BATCH_REQUESTS:
            return _error(400, f"At most {MAX_BATCH_REQUESTS} inline requests per batch.",
                          "INVALID_ARGUMENT")
        check_refs(inline, "batch.inputConfig.requests.requests")  # their response schemas
        job = _Batch("batches/" + secrets.token_hex(8), model,
                     str(batch.get("displayName") or ""), inline, owner=student)
        with self.lock:
            self.batches[job.name] = job
        threading.Thread(target=self._run, args=(job,), name="gm-batch", daemon=True).start()
        return JSONResponse(job.resource())

    def _find(self, request: Request):
        """The batch a request names (None if unknown or another key's), and its verb."""
        spec = request.path_params["spec"]
        ident, _, verb = spec.partition(":")
        job = self.batches.get("batches/" + ident)
        if job is not None and job.owner is not self.owner_of(request):
            job = None
        return job, verb

    async def get(self, request: Request) -> Response:
        job, _ = self._find(request)
        if job is None:
            return _error(404, "Batch not found.", "NOT_FOUND")
        return JSONResponse(job.resource())

    async def cancel(self, request: Request) -> Response:
        job, verb = self._find(request)
        if verb != "cancel":
            return _error(404, f"No such endpoint {request.url.path!r}.", "NOT_FOUND")
        if job is None:
            return _error(404, "Batch not found.", "NOT_FOUND")
        job.cancel.set()
        return JSONResponse({})

    async def delete(self, request: Request) -> Response:
        job, _ = self._find(request)
        if job is None:
            return _error(404, "Batch not found.", "NOT_FOUND")
        job.cancel.set()
        with self.lock:
            self.batches.pop(job.name, None)
        return JSONResponse({})

    async def list(self, request: Request) -> Response:
        owner = self.owner_of(request)
        with self.lock:
            jobs = [j for j in self.batches.values() if j.owner is owner]
        return JSONResponse({"operations": [j.resource() for j in reversed(jobs)]})


def _checked(handler):
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as e:  # noqa: BLE001 - an ApiError, or a bug
            code = getattr(e, "code", 500)
            body = e.body() if hasattr(e, "body") else {
                "error": {"code": 500, "message": "Internal error in the local server.",
                          "status": "INTERNAL"}}
            return JSONResponse(body, status_code=code if isinstance(code, int) else 500,
                                headers=getattr(e, "headers", None))
    return endpoint


def add_routes(routes: list, service, owner_of=lambda request: None) -> list:
    """`routes` with every POST gated by the engine's admission, plus the Batch API routes;
    `owner_of(request)`: whose batches a request may see (the key gate's student)."""
    store = BatchStore(service, owner_of)
    service.batches = store
    batch_routes = [
        Route("/{prefix:path}/models/{model}:batchGenerateContent", _checked(store.create),
              methods=["POST"]),
        Route("/{prefix:path}/batches", _checked(store.list), methods=["GET"]),
        Route("/{prefix:path}/batches/{spec}", _checked(store.get), methods=["GET"]),
        Route("/{prefix:path}/batches/{spec}", _checked(store.delete), methods=["DELETE"]),
        Route("/{prefix:path}/batches/{spec}", _checked(store.cancel), methods=["POST"]),
    ]
    gated = []
    for r in batch_routes + routes:  # first: the other models/ calls answer 501 (unsupported)
        if "POST" in (r.methods or ()) and not r.path.endswith("/cancel") and "batches" not in r.path:
            r = Route(r.path, _admitted(r.endpoint, service), methods=sorted(r.methods))
        gated.append(r)
    return gated
