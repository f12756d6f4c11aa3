"""Offline, the local model answers whatever a model or agent is called, so a misspelt name
would only fail once a key is set: one warning line, once per name, names the problem at once.
The names come from one catalogue (catalog.py): ours and the installed SDK's own lists."""
import pytest

from gemini_magics import widgets
from gemini_magics.catalog import sdk_names
from magics_fixtures import magics_of, record_publishes, run_cell, shell  # noqa: F401

WARNING = ("'gemini-3.5-flsh' is not a known Gemini model; the local model answers anyway, but "
           "with a key set it would fail.")


@pytest.fixture()
def offline(shell, monkeypatch):
    """The shell answered by the embedded local server (echo engine), as without a key."""
    m = magics_of(shell)
    m.base_url, m.engine = "", "echo"
    monkeypatch.setattr(m.session, "warned", set())
    return shell


def test_an_unknown_model_is_one_warning_once_and_still_answered(offline):
    first = run_cell(offline, "%%gemini -m gemini-3.5-flsh\nhello")
    assert first.error is None and "You said: hello" in first.markdown
    assert first.stdout.count(WARNING) == 1
    again = run_cell(offline, "%%gemini -m gemini-3.5-flsh\nhello again")
    assert again.error is None and WARNING not in again.stdout
    known = run_cell(offline, "%%gemini -m gemini-3.5-flash\nhello")
    assert known.error is None and "not a known" not in known.stdout


def test_the_sdks_own_names_are_known(offline):
    listed = [n for n in sdk_names("model") if n.startswith("gemma-")]  # not in our own list
    assert listed, "the installed google-genai lists no gemma model"
    cap = run_cell(offline, f"%%gemini -m {listed[0]}\nhello")
    assert cap.error is None and "not a known" not in cap.stdout


def test_an_unknown_agent_is_named_as_an_agent(offline):
    cap = run_cell(offline, "%%gemini --agent antigravity-preview-13-2099\nhello")
    assert ("'antigravity-preview-13-2099' is not a known Gemini agent; the local model answers "
            "anyway, but with a key set it would fail.") in cap.stdout
    assert "not a known" not in run_cell(
        offline, "%%gemini --agent antigravity-preview-05-2026\nhello").stdout


def test_no_warning_for_another_endpoint(shell, monkeypatch):
    monkeypatch.setattr(magics_of(shell).session, "warned", set())  # the shell's base_url: a
    # server of its own
    cap = run_cell(shell, "%%gemini -m gemini-3.5-flsh\nhello")
    assert cap.error is None and "not a known" not in cap.stdout


def test_the_panel_picker_offers_current_models_and_warns_about_a_typed_unknown_one(offline,
                                                                                    monkeypatch):
    record_publishes(monkeypatch)
    m = magics_of(offline)
    widgets.panels_of(m.session).forget()
    run_cell(offline, "%gemini ui")
    panel = offline.user_ns["_gemini_panel"]
    try:
        options = set(panel.pickers.model.options)
        assert "gemini-3.5-flash" in options and "gemini-flash-latest" in options  # the SDK's
        assert not any(n.endswith(("-tts", "-transcribe")) for n in options)
        panel.pickers.model.value = "gemini-3.5-flsh"
        assert m.model == "gemini-3.5-flsh" and panel.status_line == WARNING
    finally:
        panel.close()
        widgets.panels_of(m.session).forget()
