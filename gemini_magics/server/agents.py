"""Custom agents (google-genai's `client.agents`): create, get, list, delete, and their use.

An agent is a named set of instructions and tools over a base agent, as google-genai 3.6's
`Agent` type defines it: `id`, `base_agent`, `system_instruction`, `tools`, `base_environment`,
`description`, `agent_config`. They are kept in the server's SQLite database (a table of their
own, through `Store.transact`, so a `--db` keeps them across restarts), per key: in classroom
mode another key gets 404 for an agent and does not list it, as for interactions.

`interactions.create(agent=NAME)` with a custom agent's id runs it (`with_custom_agent`): its
system instruction goes before the request's own, its tools after the request's, its
`base_environment` is the environment when the request names none; the turn is then the
offline agent emulation (`producers/agent.py`) under the agent's name. A name that is no custom
agent of this key stays a managed agent's name, emulated as before.

`add_routes(routes, service, guard)` puts the four routes in front of `routes`, ahead of the
501s `unsupported.py` answers for `/agents`.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import re
import sqlite3
from typing import Any, Optional

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .http_guard import read_body
from .protocol import (ApiError, CreateRequest, bad, check_refs, check_tools, parse_json_body,
                       shown)
from .store import Store

__all__ = ["add_routes", "AgentStore", "parse_agent", "with_custom_agent", "MAX_AGENTS"]

FIELDS = ("id", "base_agent", "system_instruction", "tools", "base_environment", "description",
          "agent_config")
_KINDS = {"id": str, "base_agent": str, "system_instruction": str, "tools": list,
          "description": str, "agent_config": dict}
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Per key (or per server without keys), so agents cannot fill the disk the interactions share.
MAX_AGENTS = 100
MAX_AGENT_CHARS = 1024 * 1024  # the JSON of all of a key's agents together
DEFAULT_PAGE = 50
MAX_PAGE = 1000
NOBODY = ""                    # the owner of an agent on a server without keys

_TABLE = """CREATE TABLE IF NOT EXISTS agents (
    owner TEXT NOT NULL, id TEXT NOT NULL, agent TEXT NOT NULL, PRIMARY KEY (owner, id))"""


def parse_agent(body: dict) -> dict:
    """A create body as the agent to keep, or a 400 naming the first wrong field."""
    unknown = sorted(k for k in body if k not in FIELDS)
    if unknown:
        raise bad(f"Unknown field {shown(unknown[0])} in the agent; known fields are "
                  f"{', '.join(FIELDS)}.")
    agent = {k: v for k, v in body.items() if v is not None}
    for name, kind in _KINDS.items():
        value = agent.get(name)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise bad(f"'{name}' of an agent must be {_KIND_WORDS[kind]}.")
    env = agent.get("base_environment")
    if env is not None and not isinstance(env, (str, dict)):
        raise bad("'base_environment' of an agent must be \"remote\", an environment id or an "
                  "object.")
    if "id" not in agent:
        raise bad("'id' is required: the agent's name, used as interactions.create(agent=...) "
                  "(letters, digits, '.', '_' and '-').")
    if not _ID.fullmatch(agent["id"]):
        raise bad(f"'id' {shown(agent['id'])} is not a usable agent name: use 1 to 128 letters, "
                  f"digits, '.', '_' or '-', starting with a letter or digit.")
    check_refs(agent.get("tools"), "tools")
    check_tools(agent.get("tools") or [])
    return agent


_KIND_WORDS = {str: "a string", list: "a list", dict: "an object"}


class AgentStore:
    """The agents of one server, by owner, in its Store's database."""

    def __init__(self, store: Store):
        self.store = store

    def _run(self, action: str, fn) -> Any:
        def with_table(db: sqlite3.Connection):
            db.execute(_TABLE)
            return fn(db)
        return self.store.transact(action, with_table)

    def create(self, owner: str, agent: dict) -> dict:
        """Keep a new agent: 409 if this owner has one of that id; 413 for one larger than
        MAX_AGENT_CHARS; 400 past MAX_AGENTS or MAX_AGENT_CHARS for all of the owner's."""
        text = json.dumps(agent, separators=(",", ":"), ensure_ascii=False)
        if len(text) > MAX_AGENT_CHARS:
            raise ApiError(413, f"This agent is {len(text):,} characters of JSON, more than the "
                                f"{MAX_AGENT_CHARS:,} the local server keeps for a key's "
                                f"agents; shorten its instructions or tools.")

        def insert(db: sqlite3.Connection) -> Optional[ApiError]:
            count, size = db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(agent)), 0) FROM "
                                     "agents WHERE owner = ?", (owner,)).fetchone()
            if count >= MAX_AGENTS or size + len(text) > MAX_AGENT_CHARS:
                return ApiError(400, f"This key's agents would pass what the local server keeps "
                                     f"for a key ({MAX_AGENTS} agents, {MAX_AGENT_CHARS:,} "
                                     f"characters of JSON); delete some first.",
                                status="FAILED_PRECONDITION")
            try:
                db.execute("INSERT INTO agents VALUES (?, ?, ?)", (owner, agent["id"], text))
            except sqlite3.IntegrityError:
                return ApiError(409, f"An agent {shown(agent['id'])} already exists; delete it "
                                     f"first or pick another id.", status="ALREADY_EXISTS")
            return None

        refused = self._run("keep this agent in", insert)
        if refused is not None:
            raise refused
        return agent

    def get(self, owner: str, agent_id: str) -> Optional[dict]:
        """The owner's agent of that id (None: none, or another owner's)."""
        row = self._run("read", lambda db: db.execute(
            "SELECT agent FROM agents WHERE owner = ? AND id = ?", (owner, agent_id)).fetchone())
        return json.loads(row[0]) if row else None

    def page(self, owner: str, after: str, size: int) -> tuple[list[dict], Optional[str]]:
        """Up to `size` agents after id `after`, by id; and the id to continue after (None:
        that was the last page)."""
        rows = self._run("read", lambda db: db.execute(
            "SELECT id, agent FROM agents WHERE owner = ? AND id > ? ORDER BY id LIMIT ?",
            (owner, after, size + 1)).fetchall())
        last = rows[size - 1][0] if len(rows) > size else None
        return [json.loads(r[1]) for r in rows[:size]], last

    def delete(self, owner: str, agent_id: str) -> bool:
        """Forget the owner's agent of that id; whether there was one."""
        return self._run("delete from", lambda db: db.execute(
            "DELETE FROM agents WHERE owner = ? AND id = ?", (owner, agent_id)).rowcount) > 0


def with_custom_agent(req: CreateRequest, agents: AgentStore,
                      owner: Optional[str]) -> CreateRequest:
    """The request with its custom agent applied (see the module docstring), or as it is when
    `req.agent` names no agent of `owner`."""
    agent = agents.get(owner or NOBODY, req.agent) if req.agent else None
    if agent is None:
        return req
    system = "\n\n".join(s for s in (agent.get("system_instruction"), req.system_instruction)
                         if s)
    echo = dict(req.echo)
    if agent.get("base_environment") is not None and "environment" not in echo:
        echo["environment"] = agent["base_environment"]
    return dataclasses.replace(req, system_instruction=system or None,
                               tools=list(req.tools) + list(agent.get("tools") or []),
                               echo=echo, custom_agent=agent)


def _not_found(agent_id: str) -> ApiError:
    return ApiError(404, f"Agent {shown(agent_id)} was not found: it does not exist or was "
                         f"deleted.")


def _page_args(request: Request) -> tuple[str, int]:
    q = request.query_params
    size = q.get("page_size") or q.get("pageSize") or str(DEFAULT_PAGE)
    if not size.isascii() or not size.isdigit() or not 1 <= int(size) <= MAX_PAGE:
        raise bad(f"Query parameter 'page_size' must be a whole number from 1 to {MAX_PAGE}, "
                  f"not {shown(size)}.")
    token = q.get("page_token") or q.get("pageToken") or ""
    try:
        after = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_",
                                 validate=True).decode() if token else ""
    except (binascii.Error, ValueError):
        after = None
    if after is None or (after and not _ID.fullmatch(after)):
        raise bad(f"Query parameter 'page_token' {shown(token)} is not a token from an earlier "
                  f"list of agents.")
    return after, int(size)


def add_routes(routes: list, service, guard) -> list:
    """`routes` behind the agents routes (so they come before unsupported.py's 501 for
    `/agents`); `guard` turns ApiErrors and faults into Google-style errors (routes._guard).
    The agents are `service.agents` (an AgentStore), which creates also read."""
    agents = service.agents

    def owner_of(request: Request) -> str:
        student = service.check_key(request)  # the gate already let it in: who it is
        return NOBODY if student is None else student.id

    async def create(request: Request) -> Response:
        raw = await read_body(request, service.read_timeout)
        agent = parse_agent(parse_json_body(raw))
        return JSONResponse(await asyncio.to_thread(agents.create, owner_of(request), agent))

    async def get(request: Request) -> Response:
        agent_id = request.path_params["id"]
        agent = await asyncio.to_thread(agents.get, owner_of(request), agent_id)
        if agent is None:
            raise _not_found(agent_id)
        return JSONResponse(agent)

    async def listing(request: Request) -> Response:
        after, size = _page_args(request)
        found, last = await asyncio.to_thread(agents.page, owner_of(request), after, size)
        body: dict = {"agents": found}
        if last is not None:
            body["next_page_token"] = base64.urlsafe_b64encode(last.encode()).decode().rstrip("=")
        return JSONResponse(body)

    async def delete(request: Request) -> Response:
        agent_id = request.path_params["id"]
        if not await asyncio.to_thread(agents.delete, owner_of(request), agent_id):
            raise _not_found(agent_id)
        return JSONResponse({})

    p = "/{prefix:path}/agents"
    return [Route(p, guard(create), methods=["POST"]),
            Route(p, guard(listing), methods=["GET"]),
            Route(p + "/{id}", guard(get), methods=["GET"]),
            Route(p + "/{id}", guard(delete), methods=["DELETE"])] + routes
