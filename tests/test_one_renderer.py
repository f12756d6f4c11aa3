"""One renderer: the same prompt saves the same answer Markdown whichever way it ran.

A plain `%%gemini` cell streams its answer block by block; `--ui`, a panel turn and
`--background` write the finished answer at once. What the saved notebook keeps must not
depend on that: tool steps, the answer with numbered citations, the Sources list, the footer.
Only what differs between two runs by nature is masked: elapsed times and interaction ids.
"""
import re

from gemini_magics import widgets
from magics_fixtures import magics_of, record_publishes, run_cell, shell  # noqa: F401

WAIT = 60
PROMPT = "Who won the football world cup in 2022?"


def _masked(markdown: str) -> str:
    markdown = re.sub(r"\d+\.\d+ s\b", "N s", markdown)
    # A streamed google_search_result step has no result list (as the real API streams it);
    # a GET (background) has it: the step's line is the one place the ways may differ.
    markdown = re.sub(r"\*\*Search results(:\*\* \d+ received|\s*received\*\*)(\n\n>[^\n]*)?",
                      "SEARCH RESULTS", markdown)
    return re.sub(r"v1_[A-Za-z0-9_-]+", "ID", markdown)


def _blocks(markdown_outputs: list) -> str:
    """Outputs as one Markdown text: each output a block, empty ones (rewritten away) dropped."""
    return "\n\n".join(m.strip() for m in markdown_outputs if m.strip())


def _last(calls: list, display_id: str) -> dict:
    return [c["data"] for c in calls if c["display_id"] == display_id][-1]


def _written_later(shell, published, flag: str, handle: str) -> str:
    """A new conversation's cell run with `flag` (the cell returns at once); the Markdown its
    handle (`_gemini_live`, `_gemini_job`) writes out when the answer ends."""
    run_cell(shell, "%gemini reset")
    cap = run_cell(shell, f"%%gemini {flag}\n{PROMPT}")
    assert cap.error is None, cap.error
    later = shell.user_ns[handle]
    assert later.wait(WAIT) is not None and later.result.ok
    return _blocks([_last(published, later.display_id)["text/markdown"]])


def test_plain_ui_panel_and_background_save_the_same_answer(shell, monkeypatch):
    published = record_publishes(monkeypatch)
    m = magics_of(shell)
    m.tools = "google_search"
    m.poll_interval = 0.1

    cap = run_cell(shell, f"%%gemini --new\n{PROMPT}")
    assert cap.error is None, cap.error
    plain = _blocks([d.get("text/markdown", "") for d in cap.final])

    ui = _written_later(shell, published, "--ui", "_gemini_live")

    run_cell(shell, "%gemini reset")
    widgets.panels_of(m.session).forget()
    run_cell(shell, "%gemini ui")
    panel = shell.user_ns["_gemini_panel"]
    try:
        panel.prompt.value = PROMPT
        assert panel.send() is not None, panel.status_line
        assert panel.wait(WAIT) is not None and panel.turns[-1]["result"].ok
        transcript = _last(published, panel.transcript_id)["text/markdown"]
    finally:
        panel.close()
        widgets.panels_of(m.session).forget()
    quoted = "> " + PROMPT + "\n\n"
    assert quoted in transcript
    turn = transcript.split(quoted, 1)[1].rsplit("\n\n</details>", 1)[0]

    background = _written_later(shell, published, "--background", "_gemini_job")

    # What a user sees in every one of them: the search step, numbered citations, Sources.
    assert "**Search:**" in plain and "[1]" in plain and "Sources" in plain
    assert _masked(ui) == _masked(plain)
    assert _masked(turn) == _masked(plain)
    assert _masked(background) == _masked(plain)
