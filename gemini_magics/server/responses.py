"""What every route answers with: JSON and SSE responses, Google-style errors, the guard that
turns any failure into one, and the student the key gate found (routes.py, teacher.py, agents.py).
"""
from __future__ import annotations

import json
import logging
from typing import Optional

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from . import sse
from .classroom import Student
from .protocol import ApiError, shown
from .store import StoreError

__all__ = ["EventStream", "Json", "student_of"]

log = logging.getLogger("gemini_magics.server.routes")  # the name these lines always logged under

_STUDENT = "gemini_magics.student"  # the scope key the gate leaves the request's student under


class EventStream(StreamingResponse):
    """An SSE response that runs `on_close(finished)` however it ends (done, error or
    disconnect); `finished`: its whole body was handed to the connection."""

    def __init__(self, content, on_close=None):
        super().__init__(content, media_type=sse.MEDIA_TYPE, headers=sse.SSE_HEADERS)
        self.on_close = on_close
        self.finished = False

    async def stream_response(self, send) -> None:
        await super().stream_response(send)
        self.finished = True

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.on_close is not None:
                self.on_close(self.finished)


class Json(JSONResponse):
    def render(self, content) -> bytes:
        # "replace": a lone surrogate from an engine must not turn an answer into a 500.
        return json.dumps(content, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode("utf-8", "replace")


def student_of(request: Request) -> Optional[Student]:
    """Whose key the request carries (classroom mode; None otherwise), as the gate found it."""
    return request.scope.get(_STUDENT)


def _error(err: ApiError) -> Response:
    headers = dict(getattr(err, "headers", None) or {})
    if err.close:
        headers["connection"] = "close"
    return Json(err.body(), status_code=err.code, headers=headers or None)


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


