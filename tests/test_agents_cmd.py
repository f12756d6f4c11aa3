"""`%gemini agents` (agents_cmd.py): the backend's custom agents, listed for a notebook.

The handler runs against the session's backend (the echo server here) through the real SDK;
agents are made with the SDK, as a notebook would.
"""
from __future__ import annotations

import socket

import pytest
from conftest import make_client
from magics_fixtures import magics_of, run_cell, shell  # noqa: F401 - the fixture

from gemini_magics.agents_cmd import agents_table
from gemini_magics.errors import GeminiError

pytestmark = pytest.mark.filterwarnings("ignore:Agents usage is experimental")


@pytest.fixture()
def api(shell):
    """The SDK on the shell's server; the agents it made are deleted afterwards."""
    client = make_client(magics_of(shell).base_url)
    made = []
    yield client, made
    for name in made:
        client.agents.delete(name)


def test_agents_are_listed_one_line_each_and_usable_from_a_cell(shell, api):
    client, made = api
    session = magics_of(shell).session
    assert agents_table(session).startswith("No custom agents on ")
    client.agents.create(id="cmd-poet", base_agent="antigravity-preview-05-2026",
                         description="Rhymes", system_instruction="Answer in rhymes.",
                         tools=[{"type": "google_search"}])
    client.agents.create(id="cmd-plain")
    made += ["cmd-poet", "cmd-plain"]
    table = agents_table(session).splitlines()
    assert table[0].startswith("2 custom agents on ") and "--agent NAME" in table[0]
    assert table[1:] == ["- cmd-plain",
                         '- cmd-poet: over antigravity-preview-05-2026; tools google_search; '
                         '"Rhymes"']
    cap = run_cell(shell, "%%gemini --agent cmd-poet -o r\nhello")
    assert cap.error is None, cap.stderr
    assert '[system: "Answer in rhymes."] Echo:' in shell.user_ns["r"].text


def test_an_unreachable_backend_is_one_sentence(shell):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    magics_of(shell).base_url = f"http://127.0.0.1:{port}"
    with pytest.raises(GeminiError) as exc:
        agents_table(magics_of(shell).session)
    message = str(exc.value)
    assert message.startswith(f"Could not list the custom agents on http://127.0.0.1:{port} (")
    assert "Traceback" not in message and message.count("\n") == 0
