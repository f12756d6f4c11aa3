"""Offline answers a newcomer can read (issue #22), with the echo engine for exact answers.

- An answer cut by the offline model's own default cap (the cell set no --max-tokens) says so
  in its footer, with the cap and how to get more, instead of a footer that reads as a normal
  finish; the turn is still `completed` (the quickstart's background poll waits for that), and
  the interaction tells any client the cap it reached.
- A --max-tokens the user set is reported as before (incomplete, stopped at max tokens).
- The offline notice is said once per kernel, as a note like the others (Markdown in a
  notebook), and not again in the panel.
"""
from __future__ import annotations

import time

import pytest

from gemini_magics.client import OFFLINE_NOTICE
from magics_fixtures import magics_of, run_cell, shell  # noqa: F401
from test_widgets import panel, published  # noqa: F401  (the panel fixture)

CAP = 20
NOTE = f"offline model stops at {CAP} tokens; --max-tokens N for more"


@pytest.fixture(scope="module")
def capped_server():
    """An echo server whose engine caps replies at CAP words when a request sets no limit,
    as the local engine does at 512 tokens."""
    from gemini_magics.server import start_server
    from gemini_magics.server.engines.echo import EchoEngine

    srv = start_server(engine=EchoEngine(cap=CAP))
    yield srv
    srv.stop()


def ok(cap):
    assert cap.error is None, cap.error
    return cap


@pytest.mark.parametrize("flags", ["", "--no-stream"])
def test_an_answer_cut_at_the_offline_default_cap_says_so_in_its_footer(shell, capped_server,
                                                                         flags):
    magics_of(shell).base_url = capped_server.base_url
    cap = ok(run_cell(shell, f"%%gemini {flags}\n/words 600"))
    assert cap.final[0]["text/markdown"].split()[-1] == f"w{CAP}"
    foot = cap.final[-1]
    summary = foot["text/markdown"].split("</summary>")[0]
    assert summary.endswith(NOTE)
    assert f"- status: completed ({NOTE})" in foot["text/markdown"]
    assert NOTE in foot["text/plain"]
    result = shell.user_ns["_gemini"]
    assert result.status == "completed" and result.ok


def test_a_limit_the_user_set_or_a_short_answer_has_no_cap_note(shell, capped_server):
    magics_of(shell).base_url = capped_server.base_url
    limited = ok(run_cell(shell, "%%gemini --max-tokens 30\n/words 600"))
    assert "incomplete: stopped at max tokens" in limited.final[-1]["text/markdown"]
    assert "offline model stops" not in limited.markdown
    short = ok(run_cell(shell, "%%gemini\n/words 5"))
    assert "offline model stops" not in short.markdown
    assert short.final[0]["text/markdown"].split()[-1] == "w5"


def test_a_background_job_cut_at_the_cap_completes_and_names_the_cap(capped_server):
    """The quickstart's own poll (status == "completed") ends; the interaction says which cap
    cut it, for any client."""
    import httpx

    from conftest import make_client
    from server.strict import strict_interaction

    client = make_client(capped_server.base_url)
    job = client.interactions.create(model="gemini-3.5-flash", input="/words 600",
                                     background=True)
    deadline = time.monotonic() + 30
    while client.interactions.get(job.id).status not in ("completed", "incomplete", "failed"):
        assert time.monotonic() < deadline, "the background job never finished"
        time.sleep(0.05)
    assert client.interactions.get(job.id).status == "completed"
    got = httpx.get(f"{capped_server.base_url}/v1/interactions/{job.id}", timeout=10).json()
    assert got["default_max_output_tokens_reached"] == CAP
    strict_interaction(got)  # the SDK's own models take the extra field as it is
    limited = client.interactions.create(model="gemini-3.5-flash", input="/words 600",
                                         generation_config={"max_output_tokens": 30})
    assert limited.status == "incomplete"
    assert "default_max_output_tokens_reached" not in (limited.model_extra or {})


# -- the offline notice -------------------------------------------------------------------------

def _offline(shell):
    m = magics_of(shell)
    m.base_url = ""  # no key, no base_url: the embedded server, with its notice
    m.engine = "echo"
    m.session.warned.discard(OFFLINE_NOTICE)
    return m


def _notices(cap) -> list:
    return [o for o in cap.final if "GEMINI" in o.get("text/plain", "")
            and "local offline model" in o["text/plain"]]


def test_the_offline_notice_is_a_note_said_once_per_kernel(shell):
    _offline(shell)
    first = ok(run_cell(shell, "%%gemini\nhello offline"))
    second = ok(run_cell(shell, "%%gemini\nagain"))
    (notice,) = _notices(first)
    assert notice["text/plain"] == OFFLINE_NOTICE
    # a Markdown note in italics, like the other notes, not a stdout line in another font
    assert notice["text/markdown"].startswith("*") and notice["text/markdown"].endswith("*")
    assert "GEMINI\\_API\\_KEY" in notice["text/markdown"]
    assert first.stdout == ""
    assert _notices(second) == [] and "local offline model" not in second.stdout
    assert "You said: hello offline" in first.markdown


def test_a_panel_opened_after_an_offline_cell_does_not_say_the_notice_again(shell, panel):
    _offline(shell)
    assert _notices(ok(run_cell(shell, "%%gemini\nfirst"))) != []
    panel.prompt._handle_custom_msg({"event": "submit", "value": "from the panel"}, [])
    result = panel.wait(60)
    assert result.ok, result.error
    assert panel.notice_line == "" and "GEMINI_API_KEY" not in panel.info.value


def test_a_cell_after_the_panel_said_the_notice_does_not_say_it_again(shell, panel):
    _offline(shell)
    panel.prompt._handle_custom_msg({"event": "submit", "value": "from the panel"}, [])
    assert panel.wait(60).ok
    assert panel.notice_line == OFFLINE_NOTICE
    cap = ok(run_cell(shell, "%%gemini\nthen a cell"))
    assert _notices(cap) == [] and "local offline model" not in cap.stdout
