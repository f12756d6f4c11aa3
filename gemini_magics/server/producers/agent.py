"""The agent producer: managed agents (`agent=` instead of `model=`), played offline.

Agents have no remote sandbox offline, so the local server plays one: the turn opens with a
thought saying it is an offline emulation, gets an `environment_id` when the request sets
`environment` (as the API does), and runs like a tool turn with code execution added, so the
agent's steps (code and its output) are visible and really ran, in the offline `sandbox`.
"""
from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any, Optional

from ..protocol import CreateRequest
from ..turns import Outcome, TurnContext, record_step
from .tool_use import tools_producer

__all__ = ["wants_agent", "agent_producer", "environment_id", "runs_code"]

REMOTE = "remote"


def wants_agent(request: CreateRequest) -> bool:
    return bool(request.agent)


def runs_code(request: CreateRequest) -> bool:
    """True if the turn would run code in the sandbox: the code_execution tool, or any agent
    (an agent turn always has code execution, see `agent_producer`)."""
    return wants_agent(request) or _has_code_execution(request.tools or [])


def _has_code_execution(tools: list) -> bool:
    return any(isinstance(t, dict) and t.get("type") == "code_execution" for t in tools)


def environment_id(environment: Any) -> Optional[str]:
    """The id the interaction reports for its `environment` request field: a new one for
    `"remote"` or a remote-environment object, the given one for an existing id (a string, or
    an object's `environment_id`), None when no environment was asked for."""
    if environment is None:
        return None
    if isinstance(environment, str) and environment.strip() and environment != REMOTE:
        return environment
    if isinstance(environment, dict) and isinstance(environment.get("environment_id"), str):
        return environment["environment_id"]
    return "env_offline_" + secrets.token_hex(8)


def agent_producer(ctx: TurnContext) -> Outcome:
    """An agent turn: an offline-emulation thought, then code execution (and any tools the
    request or its custom agent declared) in the local sandbox, then the answer (a custom
    agent's instructions are already the request's, `agents.with_custom_agent`)."""
    rec, req = ctx.recorder, ctx.request
    env = environment_id(req.echo.get("environment"))
    if env:
        rec.resource["environment_id"] = env
    where = f"environment {env}" if env else "a throwaway local sandbox"
    custom = req.custom_agent
    kind = "" if custom is None else (
        f" (a custom agent over {custom['base_agent']})" if custom.get("base_agent")
        else " (a custom agent)")
    note = (f"[offline] The agent {req.agent}{kind} is emulated by the local server: its steps run in "
            f"{where} on this machine, with no network, and a small local model writes the "
            f"answer.")
    record_step(rec, {"type": "thought", "summary": [{"type": "text", "text": note}]})
    tools = [t for t in req.tools if isinstance(t, dict)]
    if not _has_code_execution(tools):
        tools.append({"type": "code_execution"})
    agent_ctx = TurnContext(request=replace(req, tools=tools), history=ctx.history,
                            engine=ctx.engine, recorder=rec)
    return tools_producer(agent_ctx)
