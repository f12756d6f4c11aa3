"""The HTTP face of the service: routes, one key gate in front of them all, Google-style errors.

`/{prefix}/interactions[/{id}[/cancel]]` with any prefix (`v1`, `v1beta`, `proxy/v1beta`), as the
SDKs build it from `base_url`; the SDKs' routes we cannot serve answer 501 (`unsupported`), the
Batch API is `batches.py`'s. Every failure is a Google-style JSON error (`protocol.ApiError`):
bad input is a 4xx, a store that cannot be read a 500 saying so, a bug a 500 pointing at the log.

The key gate (`_App`): when the server has keys (classroom mode, or one `--api-key`), a request
without a valid one is answered 401 before routing, whatever its path or method, so a 404,
405 or 501 says nothing to a stranger. The request's student (classroom mode) is left in its
scope for the routes (`student_of`). With a teacher's console (`teacher.py`), `/teacher`
requests are the console's to admit instead: the teacher's key or session, never a student's.
"""
from __future__ import annotations

import logging
import re
from typing import Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..catalog import PROOF_PATH, key_proof
from ..compat import request_transport, set_nodelay
from . import agents, counting, unsupported
from .batches import add_routes
from .protocol import ApiError, shown
from .responses import _STUDENT, EventStream, Json, _error, _guard, student_of
from .teacher import Console

__all__ = ["create_app", "EventStream", "Json", "student_of"]

log = logging.getLogger(__name__)

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


class _App(Starlette):
    """The routes behind the key gate (`state.service.check_key`, once per request; the
    console's own gate for its paths)."""

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("path") != PROOF_PATH:  # the proof sends no key
            set_nodelay(request_transport(receive))
            console = self.state.console
            if console is not None and console.owns(scope.get("path", "")):
                await console.serve(scope, receive, send, super().__call__)
                return
            try:
                scope[_STUDENT] = self.state.service.check_key(Request(scope))
            except ApiError as e:
                await _error(e)(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


_NONCE = re.compile(r"[0-9a-f]{32,128}")


def _proof_route(api_key: Optional[str]) -> Route:
    """GET PROOF_PATH?nonce=HEX -> {"proof": key_proof(key, nonce)}: how a kernel checks that
    the server on a discovery file's port holds the file's key without sending it the key
    (server_process). A 404 on a server without one key (open, or classroom mode)."""
    async def prove(request: Request) -> JSONResponse:
        nonce = request.query_params.get("nonce", "")
        if not api_key:
            err = ApiError(404, "This server has no key of its own to prove.")
        elif not _NONCE.fullmatch(nonce):
            err = ApiError(400, "'nonce' must be 32 to 128 lowercase hex digits.")
        else:
            return JSONResponse({"proof": key_proof(api_key, nonce)})
        return JSONResponse(err.body(), status_code=err.code)
    return Route(PROOF_PATH, prove, methods=["GET"])


def create_app(service, teacher_key: Optional[str] = None) -> Starlette:
    """The ASGI app for an `app.InteractionService` (create, get, cancel, delete, what
    `unsupported` and `batches` add, and with `teacher_key` the teacher's console); the gate
    and the HTTP protocol read `state.service`."""
    p = "/{prefix:path}/interactions"
    routes = [
        _proof_route(service.api_key),  # before the gate: it sends no key
        *unsupported.priority_routes(_guard, p), *unsupported.routes(_guard),  # 501s
        Route(p, _guard(service.create), methods=["POST"]),
        Route(p + "/{id}", _guard(service.get), methods=["GET"]),
        Route(p + "/{id}", _guard(service.delete), methods=["DELETE"]),
        Route(p + "/{id}/cancel", _guard(service.cancel), methods=["POST"]),
    ]
    # the Batch API (its batches the key's), and the engine's admit() on POSTs
    routes = add_routes(routes, service, owner_of=student_of)
    routes = agents.add_routes(routes, service, _guard)  # custom agents, ahead of the 501s
    routes = counting.add_routes(routes, service, _guard)  # countTokens, ahead of the 501s
    console = None
    if teacher_key is not None:
        console = Console(service, teacher_key)
        routes = console.routes() + routes
    app = _App(routes=routes, exception_handlers={HTTPException: _http_error,
                                                  Exception: _internal_error})
    app.state.service = service
    app.state.console = console
    return app
