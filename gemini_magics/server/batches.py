"""The local server's Batch API routes and the engine's admission gate on every POST.

`add_routes(routes, service)` is what `create_app` calls: it adds the Batch API routes the
google-genai SDK's `client.batches` calls use, and puts an engine's `admit()` in front of every
request that starts work (an interactions create, a batch create), so the echo engine's
`rps` / `fail_first` knobs answer a real HTTP 429 (with Retry-After and a RetryInfo detail, as
Google sends them) or 503 before a turn is started. Engines without `admit` are not gated.
"""
from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["add_routes", "refusal"]


def refusal(code: int, wait: float) -> Response:
    """The Google-shaped answer to a request the engine did not admit."""
    if code == 429:
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


def add_routes(routes: list, service) -> list:
    """`routes` with every POST gated by the engine's admission, plus the Batch API routes."""
    gated = []
    for r in routes:
        if "POST" in (r.methods or ()) and not r.path.endswith("/cancel"):
            r = Route(r.path, _admitted(r.endpoint, service), methods=sorted(r.methods))
        gated.append(r)
    return gated
