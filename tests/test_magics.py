"""`%%gemini` end to end in a real IPython shell, through the real SDK, over real sockets.

Behaviour is checked on the echo server (its answers show what it received); the exact
request bodies are checked on a scripted loopback server.
"""
import json
import os
import subprocess
import sys

import pytest

from gemini_magics.result import GeminiResult

from magics_fixtures import (ROOT_DIR, magics_of, run_cell, scripted, shell,  # noqa: F401
                             sse_events_for)


def ok(cap):
    assert cap.error is None, (cap.stdout, cap.stderr)
    return cap


# -- loading -----------------------------------------------------------------------------------

def test_load_ext_registers_both_magics_without_importing_the_sdk():
    code = (
        "import sys, IPython\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'gemini_magics')\n"
        "assert 'gemini' in ip.magics_manager.magics['cell']\n"
        "assert 'gemini' in ip.magics_manager.magics['line']\n"
        "assert not [m for m in sys.modules if m.startswith('google.genai')], 'SDK imported'\n"
        "assert 'gemini_magics.server' not in sys.modules\n"
        "ip.run_line_magic('unload_ext', 'gemini_magics')\n"
        "assert 'gemini' not in ip.magics_manager.magics['cell']\n"
        "print('fine')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT_DIR))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.stdout.strip() == "fine", out.stderr


def test_help_lists_every_option(shell):
    cap = run_cell(shell, "%%gemini?")
    for opt in ("--model", "--system", "--temperature", "--max-tokens", "--thinking",
                "--show-thoughts", "--no-stream", "--new", "--stateless", "--out"):
        assert opt in cap.stdout


# -- answers and results -------------------------------------------------------------------------

def test_answer_streams_as_markdown_and_lands_in_the_result(shell):
    shell.user_ns["x"] = 42
    cap = ok(run_cell(shell, '%%gemini -o r\nHello {x} and {"a": 1}'))
    final = cap.final
    answer, footer = final[0], final[-1]
    assert answer["text/markdown"].startswith("Echo: I saw 1 user turn")
    assert 'You said: Hello 42 and {"a": 1}' in answer["text/markdown"]
    assert answer["text/plain"] == answer["text/markdown"]
    assert footer["text/markdown"].startswith("<details>")
    r = shell.user_ns["r"]
    assert isinstance(r, GeminiResult) and shell.user_ns["_gemini"] is r
    assert r.text == answer["text/markdown"].strip() or r.text in answer["text/markdown"]
    assert r.id and r.id in footer["text/markdown"]
    assert r.usage["total_tokens"] > 0 and r.status == "completed" and r.ok
    assert r.steps[-1]["type"] == "model_output"
    assert type(r.interaction).__name__ == "Interaction" and r.interaction.output_text == r.text
    assert r.text in r._repr_markdown_()
    assert magics_of(shell).last_result is r
    assert shell.run_line_magic("gemini", "last") is r


def test_no_stream_gives_the_same_answer(shell):
    a = ok(run_cell(shell, "%%gemini --new -o a\nsame words"))
    b = ok(run_cell(shell, "%%gemini --new --no-stream -o b\nsame words"))
    assert shell.user_ns["a"].text == shell.user_ns["b"].text
    assert b.final[0]["text/markdown"] == a.final[0]["text/markdown"]


def test_options_change_what_the_server_does(shell):
    cap = ok(run_cell(shell, "%%gemini --system 'Talk like a pirate.'\nhello"))
    assert '[system: "Talk like a pirate."]' in cap.markdown
    ok(run_cell(shell, "%%gemini --new --temperature 0.25 --max-tokens 50 -o p\n/params"))
    params = json.loads(shell.user_ns["p"].text)
    assert params["temperature"] == 0.25 and params["max_output_tokens"] == 50
    ok(run_cell(shell, "%%gemini --new --max-tokens 3 -o short\n/words 10"))
    short = shell.user_ns["short"]
    assert short.text.split() == ["w1", "w2", "w3"] and short.status == "incomplete"


def test_every_option_reaches_the_request_body(shell, scripted):
    scripted.script = [{"sse": sse_events_for(["ok"])}]
    magics_of(shell).base_url = scripted.base_url
    ok(run_cell(shell, "%%gemini -m gemini-other --system S --temperature 0.5 --max-tokens 9 "
                       "--thinking high --show-thoughts\nquestion"))
    req = scripted.requests[-1]
    assert req["path"].endswith("/interactions") and req["body"] == {
        "model": "gemini-other", "input": "question", "system_instruction": "S", "stream": True,
        "generation_config": {"temperature": 0.5, "max_output_tokens": 9,
                              "thinking_level": "high", "thinking_summaries": "auto"},
    }
    ok(run_cell(shell, "%%gemini\nnext"))
    assert scripted.requests[-1]["body"]["previous_interaction_id"] == "v1_scripted"
    ok(run_cell(shell, "%%gemini --new --stateless\nalone"))
    body = scripted.requests[-1]["body"]
    assert body["store"] is False and "previous_interaction_id" not in body
    interaction = {"id": "v1_json", "status": "completed", "object": "interaction", "model": "m",
                   "steps": [{"type": "model_output", "content": [{"type": "text", "text": "whole"}]}]}
    scripted.script = [{"json": interaction}]
    cap = ok(run_cell(shell, "%%gemini --no-stream\nno stream please"))
    req = scripted.requests[-1]
    assert "stream" not in req["body"] and "json" in req["headers"].get("Accept", req["headers"].get("accept"))
    assert cap.final[0]["text/markdown"] == "whole"


# -- settings --------------------------------------------------------------------------------------

def test_settings_are_traitlets_shared_by_config_and_line_magic(shell, scripted):
    scripted.script = [{"sse": sse_events_for(["ok"])}]
    m = magics_of(shell)
    m.base_url = scripted.base_url
    shell.run_line_magic("config", "GeminiMagics.model = 'from-config'")
    ok(run_cell(shell, "%%gemini\nq1"))
    assert scripted.requests[-1]["body"]["model"] == "from-config"
    cap = ok(run_cell(shell, "%gemini model from-line"))
    assert "from-line" in cap.stdout and m.model == "from-line"
    cap = ok(run_cell(shell, "%gemini temperature 0.7"))
    ok(run_cell(shell, "%gemini system Be terse."))
    ok(run_cell(shell, "%gemini stream False"))
    ok(run_cell(shell, "%%gemini\nq2"))
    body = scripted.requests[-1]["body"]
    assert (body["model"], body["generation_config"]["temperature"], body["system_instruction"]) == \
        ("from-line", 0.7, "Be terse.")
    assert "stream" not in body
    cap = ok(run_cell(shell, "%gemini settings"))
    assert "model = 'from-line'" in cap.stdout and "temperature = 0.7" in cap.stdout
    cap = ok(run_cell(shell, "%gemini model"))
    assert cap.stdout.strip() == "model = 'from-line'"
    ok(run_cell(shell, "%gemini model default"))
    assert m.model == "gemini-3.5-flash"


@pytest.mark.parametrize("line, words", [
    ("%gemini temperature 5", "between 0 and 2"),
    ("%gemini temperature warm", "a number is needed"),
    ("%gemini display sideways", "use one of auto, notebook, terminal"),
    ("%gemini thinking ultra", "Unknown thinking level"),
])
def test_bad_settings_are_one_sentence_and_not_applied(shell, line, words):
    before = magics_of(shell).settings()
    cap = run_cell(shell, line)
    assert cap.error is not None and words in cap.stdout and "Traceback" not in cap.stdout
    assert magics_of(shell).settings() == before


def test_line_magic_asks_a_one_line_question(shell):
    ok(run_cell(shell, "%gemini what's 2+2? {\"braces\": true}"))
    assert "You said: what's 2+2? {\"braces\": true}" in shell.user_ns["_gemini"].text


def test_terminal_display_prints_the_answer(shell):
    magics_of(shell).display = "terminal"
    cap = ok(run_cell(shell, "%%gemini\n/words 5"))
    assert cap.stdout.startswith("w1 w2 w3 w4 w5\n— gemini-3.5-flash")
    assert cap.outputs == []


def test_show_thoughts_folds_them_above_the_answer(shell, scripted):
    events = sse_events_for(["Answer."])
    events[2:2] = [
        {"event_type": "step.start", "index": 0, "step": {"type": "thought"}},
        {"event_type": "step.delta", "index": 0,
         "delta": {"type": "thought_summary", "content": {"type": "text", "text": "Pondering."}}},
        {"event_type": "step.stop", "index": 0},
    ]
    for ev in events[5:]:
        if "index" in ev:
            ev["index"] = 1
    scripted.script = [{"sse": events}]
    magics_of(shell).base_url = scripted.base_url
    cap = ok(run_cell(shell, "%%gemini --show-thoughts\nthink"))
    assert cap.final[0]["text/markdown"].startswith("<details><summary>Thoughts")
    assert "Pondering." in cap.final[0]["text/markdown"]
    assert cap.final[1]["text/markdown"] == "Answer."
    cap = ok(run_cell(shell, "%%gemini\nthink"))
    assert "Pondering" not in cap.markdown


# The offline notice said once per kernel: tests/test_offline_answers.py.


def test_offline_setting_wins_over_an_api_key(shell, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaSy-not-a-real-key-000000000000000000")
    m = magics_of(shell)
    m.base_url = None
    m.engine = "echo"
    m.offline = True
    cap = ok(run_cell(shell, "%%gemini\nstay local"))
    assert "You said: stay local" in cap.markdown
    # asked for explicitly: no notice
    assert "local offline model" not in cap.stdout + cap.markdown


def test_default_local_server_follows_the_engine_environment(shell, monkeypatch):
    import gemini_magics.server as server

    existing = server._default
    if existing is not None and existing.running and existing.engine.name != "echo":
        pytest.skip("this process already runs a default server with another engine")
    monkeypatch.setenv("GEMINI_MAGICS_ENGINE", "echo")
    m = magics_of(shell)
    m.base_url = None
    m.engine = None
    cap = ok(run_cell(shell, "%%gemini\nwho answers?"))
    assert "You said: who answers?" in cap.markdown
    assert server._default is not None and server._default.engine.name == "echo"


def test_plain_terminal_ipython_prints_text(echo_server):
    code = (
        "ip = get_ipython()\n"
        "ip.run_line_magic('load_ext', 'gemini_magics')\n"
        f"ip.run_line_magic('config', \"GeminiMagics.base_url = '{echo_server.base_url}'\")\n"
        "ip.run_cell('%%gemini\\n/words 5')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env["PYTHONPATH"] = str(ROOT_DIR)
    out = subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--colors=nocolor",
                          "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "w1 w2 w3 w4 w5\n— gemini-3.5-flash" in out.stdout, (out.stdout, out.stderr)
    assert "Markdown object" not in out.stdout and "<details>" not in out.stdout
