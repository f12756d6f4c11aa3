"""`%gemini agents`: the custom agents the backend keeps (google-genai's `client.agents`).

A custom agent is created with the SDK (`client.agents.create(id=..., system_instruction=...,
tools=...)`) and used by its id: `%%gemini --agent NAME`. This lists them, one line each, so a
notebook can see what it may name; the offline server keeps them per key, as Google does.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional

from .client import get_client, resolve_backend
from .errors import GeminiError, explain
from .session import Session

__all__ = ["agents_table", "MAX_PAGES"]

MAX_PAGES = 50  # a listing stops here (50 pages of 100), whatever the server says next


def agents_table(session: Session) -> str:
    """The backend's custom agents as text lines (or the one sentence saying there are none);
    a GeminiError with one sentence when they cannot be listed."""
    backend, _ = resolve_backend(session.settings(), session)
    try:
        agents = _all_agents(get_client(backend, session))
    except Exception as exc:  # noqa: BLE001 - any failure is one sentence
        raise GeminiError(f"Could not list the custom agents on {backend.label} "
                          f"({explain(exc).rstrip('.')}).") from None
    if not agents:
        return (f"No custom agents on {backend.label}; create one with client.agents.create("
                f"id=\"NAME\", system_instruction=..., tools=[...]), then use %%gemini --agent "
                f"NAME.")
    noun = "agent" if len(agents) == 1 else "agents"
    lines = [f"{len(agents)} custom {noun} on {backend.label} (use one with %%gemini --agent "
             f"NAME):"]
    lines += [_line(agent) for agent in agents]
    return "\n".join(lines)


def _all_agents(client: Any) -> list:
    """Every page of `client.agents.list()`, at most MAX_PAGES."""
    agents: list = []
    token: Optional[str] = None
    with warnings.catch_warnings():  # "Agents usage is experimental": the SDK's, not the user's
        warnings.simplefilter("ignore")
        for _ in range(MAX_PAGES):
            page = client.agents.list(page_size=100, page_token=token)
            agents += list(page.agents or [])
            token = page.next_page_token
            if not token:
                break
    return agents


def _line(agent: Any) -> str:
    """`- poet: over antigravity-preview-05-2026; tools google_search; "Rhymes"`."""
    parts = []
    if agent.base_agent:
        parts.append(f"over {agent.base_agent}")
    tools = [getattr(t, "type", None) or "?" for t in agent.tools or []]
    if tools:
        parts.append("tools " + ", ".join(tools))
    if agent.description:
        parts.append(f'"{agent.description}"')
    return f"- {agent.id}" + (": " + "; ".join(parts) if parts else "")
