"""`%%gemini --agent NAME [--environment remote]`: managed agents, their steps and environment.

Through the real SDK against the local echo server, which emulates agents offline: a thought
saying so, code really run in a local sandbox, an answer, and an environment id when the
request asks for an environment.
"""
import pytest

from conftest import make_client
from magics_fixtures import magics_of, run_cell, shell  # noqa: F401

AGENT = "antigravity-preview-05-2026"


def ok(cap):
    assert cap.error is None, (cap.stdout, cap.stderr)
    return cap


def markdowns(cap):
    return [d.get("text/markdown", "") for d in cap.final]


@pytest.mark.parametrize("stream", ["", "--no-stream"])
def test_an_agent_shows_its_steps_and_environment(shell, stream):
    magics_of(shell).temperature = 0.3  # a model setting: not sent to agents
    cap = ok(run_cell(shell, f"%%gemini --agent {AGENT} --environment remote {stream} -o r\n"
                             "Print the first 10 Fibonacci numbers."))
    r = shell.user_ns["r"]
    assert r.ok and r.environment_id.startswith("env_") and r.model == AGENT
    shown = markdowns(cap)
    assert shown[0].startswith("> *Thinking*\n> [offline] The agent " + AGENT)
    assert shown[1].startswith("**Code execution** (python)")
    assert shown[2] == "**Output**\n\n```text\n0 1 1 2 3 5 8 13 21 34\n```"  # really ran
    assert shown[3].startswith("Echo: ")
    footer = shown[-1]
    assert f"- agent: `{AGENT}`" in footer and f"- environment id: `{r.environment_id}`" in footer
    api = make_client(magics_of(shell).base_url)
    sent = api.interactions.get(r.id)
    assert sent.agent == AGENT and sent.model is None and sent.environment == "remote"
    assert sent.generation_config is None


def test_the_next_turn_reuses_the_environment_and_continues_the_conversation(shell):
    ok(run_cell(shell, f"%%gemini --agent {AGENT} --environment remote -o r\nCompute 2+2."))
    env = shell.user_ns["r"].environment_id
    cap = ok(run_cell(shell, f"%%gemini --agent {AGENT} --environment {env} -o s\nAnd 3*3?"))
    s = shell.user_ns["s"]
    assert s.environment_id == env
    assert "I saw 3 user turns and 2 model turns" in cap.markdown  # continued the conversation
    assert "```text\n9\n```" in cap.markdown


def test_an_agent_without_environment_has_no_environment_id(shell):
    ok(run_cell(shell, f"%%gemini --agent {AGENT} -o r\nhello"))
    assert shell.user_ns["r"].environment_id is None


def test_the_terminal_shows_steps_and_the_environment(shell):
    magics_of(shell).display = "terminal"
    out = ok(run_cell(shell, f"%%gemini --agent {AGENT} --environment remote\n6*7")).stdout
    r = shell.user_ns["_gemini"]
    assert "[offline] The agent" in out and "```text\n42\n```" in out
    assert out.rstrip().endswith(f"{r.id} · environment {r.environment_id}")


@pytest.mark.parametrize("options, words", [
    (f"--agent {AGENT} -m gemini-3.5-flash", "Give either -m/--model or --agent, not both"),
    (f"--agent {AGENT} --temperature 0.2 --max-tokens 5",
     "--temperature, --max-tokens cannot be used with --agent"),
    ("--agent ''", "Agent name '' is not valid"),
    (f"--agent {AGENT} --environment ''", "--environment needs 'remote' or an environment id"),
])
def test_agent_options_that_cannot_work_are_one_sentence(shell, options, words):
    cap = run_cell(shell, f"%%gemini {options}\nhello")
    assert cap.error.__class__.__name__ == "GeminiError" and words in str(cap.error)
    assert shell.user_ns.get("_gemini") is None
