"""Custom agents (`client.agents`, google-genai 3.6): kept per key, used by name in
`interactions.create(agent=...)` with their instructions and tools applied.

Through the real SDK and raw httpx against a real server; the echo engine marks a system
instruction (`[system: "..."]`), so a test sees the agent's instructions reach the engine.
"""
from __future__ import annotations

import warnings

import httpx
import pytest
from google import genai
from google.genai import _interactions as errors

from gemini_magics.server import KeyRing, start_server

ALICE = "alice-7Qm2Vx9Lp4Rt8Kw3Zb6N"
BOB = "bob-Hq8sLd0Vn4Ue6WjA1fRo"
BASE = "antigravity-preview-05-2026"

pytestmark = pytest.mark.filterwarnings("ignore:Agents usage is experimental")


def sdk(srv, key="dummy"):
    """A real google-genai client (keep it in a variable: the SDK closes it when collected)."""
    return genai.Client(api_key=key, http_options={"base_url": srv.base_url})


@pytest.fixture()
def srv():
    with start_server(engine="echo") as server:
        yield server


def _answer(interaction) -> str:
    return interaction.steps[-1].content[0].text


def test_an_agent_is_created_used_listed_fetched_and_deleted(srv):
    client = sdk(srv)
    made = client.agents.create(id="poet", base_agent=BASE, description="Rhymes",
                                system_instruction="Answer in rhymes.",
                                tools=[{"type": "code_execution"}])
    assert made.id == "poet" and made.base_agent == BASE and made.description == "Rhymes"
    got = client.agents.get("poet")
    assert got.system_instruction == "Answer in rhymes." and got.tools[0].type == "code_execution"
    assert [a.id for a in client.agents.list().agents] == ["poet"]

    turn = client.interactions.create(agent="poet", input="hello there")
    assert turn.agent == "poet" and turn.status == "completed"
    assert _answer(turn).startswith('[system: "Answer in rhymes."] Echo:')
    assert "The agent poet (a custom agent over " + BASE in turn.steps[0].summary[0].text
    # the request's own instruction comes after the agent's
    both = client.interactions.create(agent="poet", input="hi", system_instruction="Be brief.")
    assert _answer(both).startswith('[system: "Answer in rhymes.\n\nBe brief."]')

    assert client.agents.delete("poet") is not None
    with pytest.raises(errors.NotFoundError) as exc:
        client.agents.get("poet")
    assert "Agent 'poet' was not found" in str(exc.value)
    assert client.agents.list().agents == []
    plain = client.interactions.create(agent="poet", input="hello there")
    assert "[system:" not in _answer(plain)  # a managed agent's name again, no instructions


def test_an_agents_tools_and_environment_apply(srv):
    client = sdk(srv)
    client.agents.create(id="searcher", tools=[{"type": "google_search"}],
                         base_environment="remote")
    turn = client.interactions.create(agent="searcher", input="largest mountain in Europe")
    kinds = [s.type for s in turn.steps]
    assert "google_search_call" in kinds and "google_search_result" in kinds
    assert turn.environment_id and turn.environment_id.startswith("env_")


def test_another_key_cannot_see_use_or_delete_an_agent():
    with start_server(engine="echo", keys=KeyRing.from_text(f"a: {ALICE}\nb: {BOB}\n")) as srv:
        alice, bob = sdk(srv, ALICE), sdk(srv, BOB)
        alice.agents.create(id="tutor", system_instruction="Explain like a tutor.")
        with pytest.raises(errors.NotFoundError):
            bob.agents.get("tutor")
        with pytest.raises(errors.NotFoundError):
            bob.agents.delete("tutor")
        assert bob.agents.list().agents == []
        assert "[system:" not in _answer(bob.interactions.create(agent="tutor", input="x"))
        # bob may use the same name for his own agent
        bob.agents.create(id="tutor", system_instruction="Bob's tutor.")
        assert _answer(alice.interactions.create(agent="tutor", input="x")).startswith(
            '[system: "Explain like a tutor."]')
        assert _answer(bob.interactions.create(agent="tutor", input="x")).startswith(
            '[system: "Bob\'s tutor."]')
        assert [a.system_instruction for a in alice.agents.list().agents] == [
            "Explain like a tutor."]
        r = httpx.get(srv.base_url + "/v1beta/agents")
        assert r.status_code == 401  # no key: nothing is said


def test_listing_pages_through_every_agent(srv):
    client = sdk(srv)
    for name in ("c", "a", "e", "b", "d"):
        client.agents.create(id=name, description=name.upper())
    seen, token = [], None
    for _ in range(5):  # bounded: 5 agents, 2 a page
        page = client.agents.list(page_size=2, page_token=token)
        seen += [a.id for a in page.agents]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("body, words", [
    ({"id": "x", "colour": "red"}, "Unknown field 'colour'"),
    ({"system_instruction": "hi"}, "'id' is required"),
    ({"id": "no spaces please"}, "is not a usable agent name"),
    ({"id": "x", "tools": "google_search"}, "'tools' of an agent must be a list"),
    ({"id": "x", "tools": [{"type": "teleport"}]}, "cannot emulate offline"),
    ({"id": "x", "system_instruction": 7}, "'system_instruction' of an agent must be a string"),
])
def test_a_bad_agent_is_one_sentence(srv, body, words):
    r = httpx.post(srv.base_url + "/v1beta/agents", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert words in error["message"] and error["status"] == "INVALID_ARGUMENT"
    assert "Traceback" not in r.text


def test_duplicate_ids_and_bad_page_tokens_are_refused(srv):
    url = srv.base_url + "/v1beta/agents"
    assert httpx.post(url, json={"id": "twin"}).status_code == 200
    again = httpx.post(url, json={"id": "twin"})
    assert again.status_code == 409 and again.json()["error"]["status"] == "ALREADY_EXISTS"
    assert "already exists" in again.json()["error"]["message"]
    bad = httpx.get(url, params={"page_token": "!!"})
    assert bad.status_code == 400 and "page_token" in bad.json()["error"]["message"]
    assert httpx.get(url, params={"page_size": "0"}).status_code == 400


def test_agents_survive_a_restart_with_a_db(tmp_path):
    db = str(tmp_path / "class.sqlite")
    with start_server(engine="echo", db=db) as first:
        client = sdk(first)
        client.agents.create(id="keeper", system_instruction="Remember me.")
    with start_server(engine="echo", db=db) as second:
        client = sdk(second)
        assert client.agents.get("keeper").system_instruction == "Remember me."
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            turn = client.interactions.create(agent="keeper", input="hi")
        assert _answer(turn).startswith('[system: "Remember me."]')


def test_a_keys_agents_are_bounded(srv):
    from gemini_magics.server.agents import MAX_AGENT_CHARS, MAX_AGENTS

    url = srv.base_url + "/v1beta/agents"
    huge = httpx.post(url, json={"id": "huge", "system_instruction": "x" * MAX_AGENT_CHARS})
    assert huge.status_code == 413 and "shorten its instructions" in huge.json()["error"]["message"]
    half = "y" * (MAX_AGENT_CHARS // 2)
    assert httpx.post(url, json={"id": "half1", "system_instruction": half}).status_code == 200
    second = httpx.post(url, json={"id": "half2", "system_instruction": half})
    assert second.status_code == 400 and "delete some first" in second.json()["error"]["message"]
    httpx.delete(url + "/half1")
    with httpx.Client() as http:
        codes = {http.post(url, json={"id": f"a{i:03d}"}).status_code
                 for i in range(MAX_AGENTS + 1)}
    assert codes == {200, 400}
    assert len(sdk(srv).agents.list(page_size=1000).agents) == MAX_AGENTS
