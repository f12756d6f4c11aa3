"""Routes the SDKs have and the local server does not serve: a 501 in Google's error shape.

A 404 "no such endpoint" or a 405 would suggest a typo in the URL; these are real API routes
(ephemeral auth tokens, the Live API's WebSocket, the SDKs' other resources) that an offline
emulator of the Interactions API cannot honour, so they answer `501 UNIMPLEMENTED` with one
sentence naming what is not supported and what to do instead. Any method, any API version.
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from .protocol import ApiError, shown

__all__ = ["priority_routes", "routes", "not_supported"]

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_REAL_API = "set GEMINI_API_KEY to use the real API"

# Other SDK resources (google-genai `client.<name>`), by URL segment. `batches` is not here:
# the local server serves it.
_RESOURCES = {
    "auth_tokens": "Creating ephemeral auth tokens (client.auth_tokens)",
    "agents": "Managing agents (client.agents)",
    "environments": "Managing environments (client.environments)",
    "webhooks": "Managing webhooks (client.webhooks)",
    "triggers": "Managing triggers (client.triggers)",
    "credentials": "Managing credentials (client.credentials)",
    "voices": "Managing custom voices (client.voices)",
    "decisions": "The decisions API (client.decisions)",
    "files": "The Files API (client.files; send media inline as base64 'data')",
    "fileSearchStores": "Managing file search stores (client.file_search_stores)",
    "cachedContents": "Context caching (client.caches)",
    "tunedModels": "Model tuning (client.tunings)",
    "models": "The generateContent API (client.models; use client.interactions)",
    "operations": "Polling long-running operations (client.operations)",
}


def not_supported(what: str, method: str, path: str) -> ApiError:
    return ApiError(501, f"{what} is not supported by the local gemini-magics server "
                         f"({method[:20]} {shown(path)}); it serves the Interactions API "
                         f"(create, get, cancel, delete); {_REAL_API}.",
                    status="UNIMPLEMENTED")


def _answer(what: str):
    async def endpoint(request: Request):
        raise not_supported(what, request.method, request.url.path)
    return endpoint


def priority_routes(guard, interactions: str) -> list[Route]:
    """Routes that must come before get's `{interactions}/{id}`, which would take them."""
    live = _answer("The Live API (realtime interactions over a WebSocket)")
    return [
        Route(interactions + "/live", guard(live), methods=_METHODS),
        Route(interactions + "/{id}/auth_tokens", guard(_answer(
            "Creating ephemeral auth tokens for an interaction")), methods=_METHODS),
        # the SDKs' Live client: {base}/ws/google.ai.generativelanguage.{v}.GenerativeService.
        # BidiGenerateContent[Constrained] (the HTTP protocol refuses the upgrade, so it lands
        # here); JS joins it to a base URL ending in "/", hence "//ws/..." (an empty prefix)
        Route("/ws/{rpc:path}", guard(live), methods=_METHODS),
        Route("/{prefix:path}/ws/{rpc:path}", guard(live), methods=_METHODS),
    ]


def routes(guard) -> list[Route]:
    """501s for the SDKs' other resources, under any prefix (`/v1beta/files`, `/upload/...`)."""
    out = []
    for segment, what in _RESOURCES.items():
        endpoint = guard(_answer(what))
        out.append(Route("/{prefix:path}/" + segment, endpoint, methods=_METHODS))
        out.append(Route("/{prefix:path}/" + segment + "/{rest:path}", endpoint, methods=_METHODS))
    return out
