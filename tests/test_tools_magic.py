"""`%%gemini --tools`: built-in tool steps shown as they happen, numbered citations, the `tools`
setting shared with the widgets panel, and one sentence for a bad tool name.

Through the real SDK against the local echo server (its built-in tools are emulated offline);
the order in which outputs appear is checked on the raw display messages.
"""
import pytest

from conftest import make_client
from magics_fixtures import magics_of, run_cell, shell  # noqa: F401


def ok(cap):
    assert cap.error is None, (cap.stdout, cap.stderr)
    return cap


def sent_tools(shell):
    """The tools the server received for the last cell (read back with the SDK)."""
    api = make_client(magics_of(shell).base_url)  # kept in a variable: see conftest.make_client
    return api.interactions.get(shell.user_ns["_gemini"].id).tools or []


def markdowns(cap):
    return [d.get("text/markdown", "") for d in cap.final]


@pytest.mark.parametrize("stream", ["", "--no-stream"])
def test_search_steps_then_the_answer_with_numbered_citations(shell, stream):
    cap = ok(run_cell(shell, f"%%gemini --tools google_search {stream}\nWho won the euro 2024?"))
    shown = markdowns(cap)
    assert shown[0].startswith("**Search:** `Who won the euro 2024`")
    if stream:  # the whole step: its result list, with the offline note
        assert shown[1].startswith("**Search results:** 1 received")
        assert "Offline emulation: no web search was made" in shown[1]
    else:  # streamed, the result step carries no result list (as the real API streams it)
        assert shown[1] == "**Search results received**"
    answer = shown[2]
    assert answer.startswith("Echo: ")
    assert "[[1]](https://offline.invalid/search?q=Who+won+the+euro+2024)" in answer
    assert answer.endswith("**Sources**\n\n1. [Offline search \\(no network\\): Who won the euro "
                           "2024](https://offline.invalid/search?q=Who+won+the+euro+2024)")
    assert shown[-1].startswith("<details>")  # the footer comes last
    r = shell.user_ns["_gemini"]
    assert [s["type"] for s in r.steps] == ["google_search_call", "google_search_result",
                                            "model_output"]


def test_tool_steps_are_shown_before_the_answer_starts(shell):
    cap = ok(run_cell(shell, "%%gemini --tools code_execution,url_context\n"
                             "Compute 6*7, see https://example.com/x"))
    first_answer = next(i for i, o in enumerate(cap.outputs)
                        if o["data"].get("text/markdown", "").startswith("Echo"))
    steps = [o["data"]["text/markdown"] for o in cap.outputs[:first_answer]]
    assert steps[0].startswith("**Code execution** (python)") and "print(6*7)" in steps[0]
    assert steps[1] == "**Output**\n\n```text\n42\n```"
    assert steps[2].startswith("**Reading URLs:**") and "https://example.com/x" in steps[2]
    assert steps[3].startswith("**URL context:**") and ": error" in steps[3]


def test_every_builtin_tool_is_accepted_and_marked_offline(shell):
    cap = ok(run_cell(shell, "%%gemini --tools google_search,code_execution,url_context,"
                             "google_maps,file_search:store1,computer_use:desktop\n"
                             "Where is the Louvre?"))
    text = "\n".join(markdowns(cap))
    assert "offline" in text.lower()
    for label in ("**Search:**", "**Code execution**", "**Reading URLs:**", "**Maps search:**",
                  "**File search**"):
        assert label in text
    request_tools = sent_tools(shell)
    assert [t.type for t in request_tools] == ["google_search", "code_execution", "url_context",
                                               "google_maps", "file_search", "computer_use"]
    assert request_tools[4].file_search_store_names == ["store1"]


def test_terminal_display_prints_steps_and_sources(shell):
    magics_of(shell).display = "terminal"
    cap = ok(run_cell(shell, "%%gemini --tools google_search\nWho won?"))
    out = cap.stdout
    assert out.index("**Search:** `Who won`") < out.index("Echo: ")
    assert "\n\nSources:\n[1] Offline search (no network): Who won - https://offline.invalid/" in out


@pytest.mark.parametrize("spec, words", [
    ("goggle_search", "Unknown tool 'goggle_search' (did you mean google_search?); valid tools are:"),
    ("computer_use:tv", "computer_use:tv is not an environment"),
    ("code_execution:x", "The tool code_execution takes no option"),
])
def test_a_bad_tool_name_is_one_sentence_and_nothing_is_sent(shell, spec, words):
    cap = run_cell(shell, f"%%gemini --tools {spec}\nhello")
    assert cap.error is not None and cap.error.__class__.__name__ == "GeminiError"
    assert words in str(cap.error)
    assert "Traceback" not in cap.stdout + cap.stderr
    assert shell.user_ns.get("_gemini") is None


def test_the_tools_setting_applies_to_every_cell_and_the_option_overrides_it(shell):
    m = magics_of(shell)
    ok(run_cell(shell, "%gemini tools google_search, code_execution"))
    assert m.tools == "google_search,code_execution"
    ok(run_cell(shell, "%%gemini\nWhat is 2+3?"))
    assert [t.type for t in sent_tools(shell)] == ["google_search", "code_execution"]
    ok(run_cell(shell, "%%gemini --tools none\nAnd now?"))
    assert not sent_tools(shell)
    ok(run_cell(shell, "%%gemini --tools url_context\nAnd https://example.com?"))
    assert [t.type for t in sent_tools(shell)] == ["url_context"]

    cap = run_cell(shell, "%gemini tools gogle_search")
    assert "Unknown tool 'gogle_search'" in str(cap.error)
    assert m.tools == "google_search,code_execution"  # unchanged
    ok(run_cell(shell, "%config GeminiMagics.tools = None"))
    assert m.tools is None


def test_the_widgets_panel_drives_the_tools_setting(shell):
    from gemini_magics import widgets

    m = magics_of(shell)
    panel = widgets.Panel(m, publish=lambda *a: None)
    try:
        panel.pickers.observe_magics(True)
        panel.pickers.tools.value = ("google_search", "url_context")
        assert m.tools == "google_search,url_context"
        ok(run_cell(shell, "%%gemini\nlook it up"))
        assert [t.type for t in sent_tools(shell)] == ["google_search", "url_context"]
        ok(run_cell(shell, "%gemini tools code_execution"))
        assert panel.pickers.tools.value == ("code_execution",)
    finally:
        panel.close()


def test_tool_steps_are_resent_in_a_stateless_conversation(shell):
    ok(run_cell(shell, "%%gemini --stateless --tools google_search,code_execution\nWhat is 6*7?"))
    cap = ok(run_cell(shell, "%%gemini --stateless\nAnd doubled?"))
    # the second request carried the first turn's tool calls and results (the SDK validated
    # them as steps); the echo engine counts tool calls as model turns, results as user turns
    assert "Echo: I saw 4 user turns and 3 model turns. You said: And doubled?" in cap.markdown
