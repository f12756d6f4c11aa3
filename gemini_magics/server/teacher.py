"""The teacher's console: a page at `/teacher` and its JSON API, behind the teacher's key.

`gemini-magics serve --keys FILE --teacher-key-env VAR` (classroom mode; the key is read from
that environment variable, never the command line). Every `/teacher` route takes the teacher's
key as `x-goog-api-key` (scripts) or the session cookie the login form sets (HttpOnly,
SameSite=Strict, Path=/teacher, Secure under TLS). No key, or an unknown one, is a 401 (the page
answers it with the login form); a student's key is a 403. With the cookie, a request that
changes something must come from the console's own origin (its `Origin` header), so another
site cannot make the teacher's browser act. `routes._App` sends `/teacher` requests through
`Console.serve`, which refuses them or adds the console's headers (no caching, no framing).

    GET   /teacher/api/usage                          one entry per student (label)
    GET   /teacher/api/usage.csv                      the same as CSV
    GET   /teacher/api/students/{label}/interactions  transcripts, newest first (?limit=N)
    PATCH /teacher/api/students/{label}               {"token_budget": N | null, "disabled": B}
    POST  /teacher/api/students                       {"label": "dana"} -> its key, shown once

A change takes effect at once (the key ring is what the gate and the quotas read) and is kept
in the store, so a `--db` keeps it across restarts. The console never shows a key after it was
created: only labels and fingerprints (a prefix of the key's digest). `cost` is USD at each
turn's model's standard price (`costs.py`), null while none of the key's tokens had a known price;
`unpriced_tokens` are the tokens of models with no known price, which no cost includes.
"""
from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import html
import io
import secrets
import time
from collections import Counter
from importlib import resources
from typing import Optional
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .classroom import KeyRing, Student, key_id
from .http_guard import read_body
from .protocol import ApiError, parse_json_body
from .responses import Json, _guard
from .store import StoreError
from .turns import resource_with_steps

__all__ = ["Console", "PREFIX"]

PREFIX = "/teacher"
COOKIE = "gm_teacher"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 64            # the oldest session goes first past this many logins
DEFAULT_TRANSCRIPTS, MAX_TRANSCRIPTS = 20, 200
MAX_BUDGET = 10 ** 12
_SAFE = ("GET", "HEAD")
# "same-origin", not "no-referrer": that would send `Origin: null` with the page's own changes
_HEADERS = {"cache-control": "no-store", "x-frame-options": "DENY",
            "x-content-type-options": "nosniff", "referrer-policy": "same-origin"}
_PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
             "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_LOGIN_CSP = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
              "base-uri 'none'; frame-ancestors 'none'")
COST_NOTE = ("cost: USD at each model's standard price (genai-prices), what the same tokens "
             "would cost on Google's API; null until a key used a model with a known price. "
             "unpriced_tokens: tokens of models with no known price, in no cost.")
_ASSETS = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}


def _page(name: str) -> str:
    return resources.files(__package__).joinpath("teacher_page", name).read_text("utf-8")


def _iso(t: Optional[float]) -> Optional[str]:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Console:
    """The console of one classroom server: the teacher's key (its digest) and the login
    sessions (digests of their random tokens, with their expiry)."""

    def __init__(self, service, teacher_key: str):
        if service.keys is None:
            raise ValueError("The teacher's console goes with --keys FILE (classroom mode).")
        if len(teacher_key) < 16 or any(c.isspace() for c in teacher_key):
            raise ValueError("The teacher's key must be at least 16 characters without spaces "
                             "(make one with `gemini-magics keys teacher`).")
        if service.keys.identify(teacher_key) is not None:
            raise ValueError("The teacher's key is also a student's key in the keys file; give "
                             "the teacher a key of their own.")
        self.service = service
        self.keys: KeyRing = service.keys
        self._key_id = key_id(teacher_key)
        self._sessions: dict[str, float] = {}
        self._files = {name: _page(name) for name in (*_ASSETS, "index.html", "login.html")}

    # -- the gate ------------------------------------------------------------------------
    @staticmethod
    def owns(path: str) -> bool:
        """Whether a request path is the console's (its gate, not the students')."""
        return path == PREFIX or path.startswith(PREFIX + "/")

    async def serve(self, scope, receive, send, app) -> None:
        """Answer a `/teacher` request: refused here, or passed to `app` with the console's
        headers added."""
        request = Request(scope)
        refusal = None if scope["path"] == PREFIX + "/login" else self._refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k.encode(), v.encode()) for k, v in _HEADERS.items() if k.encode() not in have]
            await send(message)

        await app(scope, receive, with_headers)

    def _refusal(self, request: Request) -> Optional[Response]:
        """None for the teacher; else the 401 (the login page, for the page itself) or 403."""
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key") or ""
        if key:
            if self._is_teacher(key):
                return None
            student = self.keys.identify(key) is not None
        else:
            if self._session(request):
                if request.method in _SAFE or self._same_origin(request):
                    return None
                return self._refuse(request, 403, "This change did not come from the console's "
                                                  "own page (its Origin header), so it was "
                                                  "refused; use the console, or send the "
                                                  "teacher's key as x-goog-api-key.")
            student = False
        if student:
            return self._refuse(request, 403, "A student's key cannot open the teacher's "
                                              "console; use the teacher's key.")
        return self._refuse(request, 401, "The teacher's console needs the teacher's key: log "
                                          "in at /teacher, or send it as x-goog-api-key.")

    def _refuse(self, request: Request, code: int, message: str) -> Response:
        if request.url.path in (PREFIX, PREFIX + "/") and request.method in _SAFE:
            return self._login_page(code, message if code == 403 else "")
        status = "UNAUTHENTICATED" if code == 401 else "PERMISSION_DENIED"
        return Json(ApiError(code, message, status=status).body(), status_code=code,
                    headers=_HEADERS)

    def _is_teacher(self, key: str) -> bool:
        return hmac.compare_digest(key_id(key), self._key_id)

    def _session(self, request: Request) -> bool:
        token = request.cookies.get(COOKIE, "")
        expiry = self._sessions.get(_digest(token)) if token else None
        return expiry is not None and expiry > time.monotonic()

    @staticmethod
    def _same_origin(request: Request) -> bool:
        origin = request.headers.get("origin", "")
        return bool(origin) and origin == f"{request.url.scheme}://{request.headers.get('host')}"

    def _login_page(self, code: int, message: str) -> Response:
        note = f'<p class="error">{html.escape(message)}</p>' if message else ""
        body = self._files["login.html"].replace("<!--MESSAGE-->", note)
        return HTMLResponse(body, status_code=code,
                            headers={**_HEADERS, "content-security-policy": _LOGIN_CSP})

    # -- login ---------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        """The login form's POST (key=...): a session cookie and back to the page."""
        if not self._same_origin(request):
            return self._login_page(403, "The login did not come from the console's own page; "
                                         "open /teacher and log in there.")
        raw = await read_body(request, self.service.read_timeout)
        key = (parse_qs(raw.decode("utf-8", "replace")).get("key") or [""])[0].strip()
        if not self._is_teacher(key):
            if self.keys.identify(key) is not None:
                return self._login_page(403, "That is a student's key; the console needs the "
                                             "teacher's key.")
            return self._login_page(401, "That is not the teacher's key; try again.")
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        self._sessions = {d: t for d, t in self._sessions.items() if t > now}
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(min(self._sessions, key=self._sessions.get))
        self._sessions[_digest(token)] = now + SESSION_SECONDS
        response = RedirectResponse(PREFIX, status_code=303)
        response.set_cookie(COOKIE, token, max_age=SESSION_SECONDS, path=PREFIX, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    async def logout(self, request: Request) -> Response:
        self._sessions.pop(_digest(request.cookies.get(COOKIE, "")), None)
        response = RedirectResponse(PREFIX, status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    # -- the page ------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        return HTMLResponse(self._files["index.html"],
                            headers={"content-security-policy": _PAGE_CSP})

    async def asset(self, request: Request) -> Response:
        name = request.url.path.rsplit("/", 1)[-1]
        return Response(self._files[name], media_type=_ASSETS[name])

    # -- the API -------------------------------------------------------------------------
    def entries(self) -> list[dict]:
        """One entry per student: what the class table shows."""
        live = self.service.live  # ended turns kept for a resume (resume.py) are not answering
        answering = Counter(owner for iid, owner in list(self.service._owners.items())
                            if (rec := live.get(iid)) is not None and not rec.done.is_set())
        batches = getattr(self.service, "batches", None)
        if batches is not None:
            answering.update(batches.running())
        return [self._entry(s, answering[s.id]) for s in self.keys.students()]

    def _entry(self, s: Student, answering: int = 0) -> dict:
        budget = self.keys.budget_of(s)
        return {"label": s.label, "fingerprint": s.fingerprint, "requests": s.requests,
                "tokens": s.used, "cost": None if s.cost is None else round(s.cost, 10),
                "unpriced_tokens": s.unpriced, "token_budget": budget,
                "budget_left": None if budget is None else max(0, budget - s.used),
                "own_budget": s.budget is not None, "disabled": s.disabled,
                "last_active": _iso(s.last_active), "rate": self.keys.recent_requests(s),
                "rate_limit": self.keys.rate, "answering": answering, "added": s.added}

    async def usage(self, request: Request) -> Response:
        return Json({"students": self.entries(),
                     "class": {"token_budget": self.keys.tokens, "rate_limit": self.keys.rate},
                     "cost_note": COST_NOTE})

    async def usage_csv(self, request: Request) -> Response:
        fields = ["label", "fingerprint", "requests", "tokens", "cost", "unpriced_tokens",
                  "token_budget", "budget_left", "disabled", "last_active", "added"]
        out = io.StringIO()
        writer = csv.DictWriter(out, fields, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        for entry in self.entries():
            label = entry["label"]  # a spreadsheet must not read a label as a formula
            entry["label"] = "'" + label if label[:1] in "=+-@" else label
            writer.writerow(entry)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": 'attachment; filename="usage.csv"'})

    def _student(self, request: Request) -> Student:
        label = request.path_params["label"]
        student = self.keys.by_label(label)
        if student is None:
            raise ApiError(404, f"No student is labelled {label[:70]!r}.")
        return student

    async def interactions(self, request: Request) -> Response:
        student = self._student(request)
        raw = request.query_params.get("limit", str(DEFAULT_TRANSCRIPTS))
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_TRANSCRIPTS:
            raise ApiError(400, f"'limit' must be a whole number from 1 to {MAX_TRANSCRIPTS}.")
        live = [rec.snapshot(timeline=True) for iid, rec in list(self.service.live.items())
                if self.service._owners.get(iid) == student.id]
        stored = await asyncio.to_thread(self.service.store.interactions_of, student.id,
                                         int(raw))
        done = [resource_with_steps(s["resource"], s["input"], s["steps"], False, True)
                for s in stored]
        return Json({"label": student.label, "interactions": (live + done)[:int(raw)]})

    async def change(self, request: Request) -> Response:
        student = self._student(request)
        body = parse_json_body(await read_body(request, self.service.read_timeout))
        if not isinstance(body, dict) or not body or set(body) - {"token_budget", "disabled"}:
            raise ApiError(400, 'Send a JSON object with "token_budget" (a whole number of '
                                'tokens, or null for the class budget) and/or "disabled" '
                                '(true or false).')
        budget, disabled = student.budget, student.disabled
        if "token_budget" in body:
            budget = body["token_budget"]
            if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)
                                       or not 0 <= budget <= MAX_BUDGET):
                raise ApiError(400, f"'token_budget' must be a whole number from 0 to "
                                    f"{MAX_BUDGET:,}, or null for the class budget.")
        if "disabled" in body:
            disabled = body["disabled"]
            if not isinstance(disabled, bool):
                raise ApiError(400, "'disabled' must be true or false.")
        await asyncio.to_thread(self.service.store.save_student, student.id, student.label,
                                student.added, budget, disabled)
        student.budget, student.disabled = budget, disabled  # only what was kept
        return Json(self._entry(student))

    async def add(self, request: Request) -> Response:
        body = parse_json_body(await read_body(request, self.service.read_timeout))
        label = body.get("label") if isinstance(body, dict) else None
        try:
            student, key = self.keys.add(label)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        try:
            await asyncio.to_thread(self.service.store.save_student, student.id, student.label,
                                    True, None, False)
        except StoreError:
            self.keys.discard(student)
            raise
        return Json({**self._entry(student), "key": key}, status_code=201)

    def routes(self) -> list[Route]:
        api = PREFIX + "/api"
        return [Route(PREFIX, _guard(self.page), methods=["GET"]),
                Route(PREFIX + "/login", _guard(self.login), methods=["POST"]),
                Route(PREFIX + "/logout", _guard(self.logout), methods=["POST"]),
                *(Route(f"{PREFIX}/{name}", _guard(self.asset), methods=["GET"])
                  for name in _ASSETS),
                Route(api + "/usage", _guard(self.usage), methods=["GET"]),
                Route(api + "/usage.csv", _guard(self.usage_csv), methods=["GET"]),
                Route(api + "/students", _guard(self.add), methods=["POST"]),
                Route(api + "/students/{label}", _guard(self.change), methods=["PATCH"]),
                Route(api + "/students/{label}/interactions", _guard(self.interactions),
                      methods=["GET"])]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
