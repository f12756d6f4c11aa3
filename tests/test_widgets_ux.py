"""What a JupyterLab user notices about the panel and the `--ui` view, driven programmatically.

The panel is chat-like: Enter in the prompt box sends (the box's frontend sends a `submit`
message, tested here at the Python end of that message), the conversation scrolls inside a
fixed-height box with the newest turn in view, Stop is enabled only while an answer runs, the
buttons keep their size, the offline notice is said once, and a pick that changes later cells'
defaults says so in a line of its own. A `--ui` view is replaced by its answer; a stop is a
plain note; a request waiting for the model says so; `-o VAR` is bound at once.
Waits are bounded waits for a condition, never sleeps.
"""
import time

import pytest

from gemini_magics import live, widgets
from gemini_magics.args import parse
from gemini_magics.client import OFFLINE_NOTICE, Backend
from gemini_magics.result import GeminiResult, LiveResult
from gemini_magics.session import Session
from magics_fixtures import magics_of, run_cell, scripted, sse_events_for, shell  # noqa: F401
from test_widgets import panel, published, saved, wait_for  # noqa: F401  (fixtures and helpers)

WAIT = 60  # seconds: the bound of every wait for an answer
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def saved_outputs(calls, *display_ids):
    """The final bundle of each display id, in order (what the saved notebook holds)."""
    return [saved(calls, did) for did in display_ids]


def press_enter(p, text):
    """What the prompt box's frontend sends when Enter is pressed with `text` in the box."""
    p.prompt._handle_custom_msg({"event": "submit", "value": text}, [])


# -- the panel ----------------------------------------------------------------------------------

def test_enter_in_the_prompt_box_sends_and_shift_enter_newlines_are_kept(panel, monkeypatch):
    to_browser = []  # custom messages the kernel sends to the box's frontend
    monkeypatch.setattr(panel.prompt, "send", lambda content, buffers=None:
                        to_browser.append(content))
    assert isinstance(panel.prompt, widgets.PromptBox)
    assert "gemini-prompt-box" in panel.prompt._dom_classes
    assert "Enter sends" in panel.prompt.placeholder
    press_enter(panel, "first line\nsecond line")  # Shift+Enter put the newline there
    result = panel.wait(WAIT)
    assert result.ok, result.error
    assert panel.turns[-1]["prompt"] == "first line\nsecond line"
    assert "You said: first line\nsecond line" in result.text
    # the box is emptied for the next prompt, in the browser too
    assert panel.prompt.value == "" and to_browser == [{"event": "clear"}]
    press_enter(panel, "   ")
    assert "prompt is empty" in panel.status_line and len(panel.turns) == 1
    assert to_browser == [{"event": "clear"}]  # what was typed stays in the box


def test_the_prompt_box_frontend_sends_on_enter_but_not_on_shift_enter():
    esm = widgets.PromptBox._esm
    assert 'e.key === "Enter" && !e.shiftKey' in esm
    assert 'model.send({ event: "submit", value: box.value })' in esm
    assert 'box.className = "gemini-prompt"' in esm
    assert 'msg.event === "clear"' in esm


def test_the_conversation_scrolls_in_a_fixed_box_with_the_newest_turn_in_view(panel):
    box = panel.conversation
    assert box.layout.height == widgets.CONVERSATION_HEIGHT
    assert "auto" in box.layout.overflow
    assert box.layout.flex_flow == "column-reverse"  # the scroll stays at the newest turn
    for prompt in ("one", "two", "three"):
        press_enter(panel, prompt)
        assert panel.wait(WAIT).ok
    turns = [c for c in box.children if "gemini-turn" in c._dom_classes]
    assert len(turns) == 3
    # column-reverse: the first child is drawn at the bottom, in view
    assert "three" in turns[0].children[0].value and "one" in turns[-1].children[0].value
    assert all(t.layout.flex == "0 0 auto" for t in turns)  # turns overflow, never squeeze
    # the prompt box comes after the conversation box, so it does not move as turns are added
    children = list(panel.widget.children)
    assert children.index(box) < children.index(panel.prompt)


def test_stop_is_enabled_only_while_an_answer_runs_and_buttons_keep_their_size(panel):
    sizes = (panel.send_button.layout.width, panel.stop_button.layout.width)
    assert panel.stop_button.disabled and not panel.send_button.disabled  # idle
    press_enter(panel, "/words 3000 delay=0.01")
    wait_for(lambda: "w3 " in panel.job.snapshot, what="the first words")
    assert not panel.stop_button.disabled and panel.send_button.disabled
    panel.stop_button.click()
    assert panel.stop_button.disabled  # stopping: a second press has nothing to do
    assert panel.wait(WAIT).stopped
    assert panel.stop_button.disabled and not panel.send_button.disabled
    assert (panel.send_button.layout.width, panel.stop_button.layout.width) == sizes
    for button in (panel.send_button, panel.stop_button):
        assert button.layout.flex == "0 0 auto" and button.layout.min_width == button.layout.width


def test_a_stop_you_asked_for_is_a_plain_note_not_an_error(panel, published):
    press_enter(panel, "/words 3000 delay=0.01")
    wait_for(lambda: "w3 " in panel.job.snapshot, what="the first words")
    panel.stop()
    result = panel.wait(WAIT)
    assert result.stopped and result.error is None
    assert panel.status_line.startswith(live.STATES["stopped"])
    assert "you stopped it; the partial answer is kept" in panel.status_line
    shown = widgets._answer_outputs(result, panel.turns[-1]["style"])[0]["data"]["text/markdown"]
    transcript = saved_outputs(published, panel.transcript_id)[0]["text/markdown"]
    for text in (panel.status_line, shown, transcript):
        assert "⚠" not in text and "error" not in text.lower()
    assert "Stopped" in shown and "Stopped" in transcript


def test_a_pick_that_changes_later_cells_says_so(panel, shell):
    m = magics_of(shell)
    panel.pickers.model.value = "gemini-2.5-pro"
    assert m.model == "gemini-2.5-pro"
    line = "Later %%gemini cells now use model gemini-2.5-pro (GeminiMagics.model)."
    assert panel.defaults_line == line and line in panel.info.value.replace("&quot;", '"')
    panel.pickers.use_temperature.value = True
    panel.pickers.temperature.value = 0.5
    assert "temperature 0.50 (GeminiMagics.temperature)" in panel.info.value
    panel.pickers.tools.value = ("google_search",)
    assert "the tools google_search (GeminiMagics.tools)" in panel.info.value
    panel.pickers.system.value = "Be brief."
    assert "the system instruction “Be brief.” (GeminiMagics.system)" in panel.info.value
    panel.pickers.model.value = "local-offline"
    assert "GeminiMagics.offline is on" in panel.info.value and m.offline is True
    # a change made in a cell is only mirrored: the panel does not claim it
    panel.defaults_line = ""
    run_cell(shell, "%config GeminiMagics.model = 'gemini-2.5-flash'")
    assert panel.pickers.model.value == "gemini-2.5-flash" and panel.defaults_line == ""
    # the cell really uses what the panel said
    panel.pickers.model.value = "gemini-3-flash-preview"
    assert run_cell(shell, "%%gemini\nhello").error is None
    assert shell.user_ns["_gemini"].model == "gemini-3-flash-preview"


def test_the_status_line_names_the_model_the_next_turn_uses(panel, shell):
    assert panel.status_line == f"{live.STATES['idle']} · model {magics_of(shell).model}"
    panel.pickers.model.value = "gemini-2.5-pro"  # typed in the panel
    assert panel.status_line == f"{live.STATES['idle']} · model gemini-2.5-pro"
    run_cell(shell, "%gemini model gemini-3-flash-preview")  # or set from a cell
    assert panel.status_line == f"{live.STATES['idle']} · model gemini-3-flash-preview"
    assert panel.status.value.endswith("model gemini-3-flash-preview</span>")


def test_the_offline_notice_is_shown_once_not_in_every_status_line(panel, shell):
    m = magics_of(shell)
    m.base_url = ""      # no key, no base_url: the embedded server, with its notice
    m.engine = "echo"
    m.session.warned.discard(OFFLINE_NOTICE)  # not said yet in this kernel
    lines = []
    for prompt in ("one", "two"):
        press_enter(panel, prompt)
        job = panel.job
        while not job.closed.wait(0.01):
            lines.append(panel.status_line)
        lines.append(panel.status_line)
        assert job.result.ok, job.result.error
    assert panel.notice_line.startswith("Note: no GEMINI_API_KEY is set")
    assert panel.info.value.count("no GEMINI_API_KEY") == 1
    assert not any("GEMINI_API_KEY" in line for line in lines)


def test_a_turn_waiting_for_the_model_says_so(panel, shell, scripted, monkeypatch):
    monkeypatch.setattr(live, "WAITING_AFTER_S", 0.2)
    magics_of(shell).base_url = scripted.base_url
    events = sse_events_for(["late ", "answer"])
    scripted.script = [{"sse": events[:3] + [3.0] + events[3:]}]  # created, then a long pause
    press_enter(panel, "hello")
    assert panel.status_line.startswith(live.STATES["sending"])
    wait_for(lambda: panel.status_line.startswith(live.STATES["waiting"]),
             what="the waiting status")
    result = panel.wait(WAIT)
    assert result.ok and result.text == "late answer"
    assert panel.status_line.startswith(live.STATES["done"])


def test_waiting_behind_another_answer_of_the_local_model_says_how_many(shell, scripted,
                                                                        monkeypatch):
    monkeypatch.setattr(live, "WAITING_AFTER_S", 0.2)
    events = sse_events_for(["slow"])
    scripted.script = [{"sse": events[:1] + [3.0] + events[1:]}]
    local = Backend("local", scripted.base_url, "k", 1, None)  # as the embedded server is labelled
    m = magics_of(shell)
    jobs = live.jobs_of(m.session)  # the kernel's own, its Session's
    first = live.StreamJob(parse("", "first", m.settings()), backend=local, jobs=jobs).start()
    second = live.StreamJob(parse("", "second", m.settings()), backend=local, jobs=jobs).start()
    try:
        wait_for(lambda: "1 earlier answer is still running; the local model answers one "
                         "request at a time" in second.status_text(), what="the queue note")
        assert jobs.ahead(first) == 0
        assert live.jobs_of(Session()).ahead(second) == 0  # another session's see none of them
    finally:
        for job in (first, second):
            job.stop()
            job.wait(WAIT)


# -- %%gemini --ui --------------------------------------------------------------------------------

def test_the_live_view_text_is_above_stop_and_the_answer_replaces_the_view(shell, published):
    assert run_cell(shell, "%%gemini --ui\n/words 40 delay=0.01").error is None
    view = shell.user_ns["_gemini_live"]
    text, bar = view.widget.children
    assert text is view.answer and view.stop_button in bar.children and view.status in bar.children
    assert "gemini-live" in view.widget._dom_classes
    assert not view.stop_button.disabled  # enabled while the answer runs
    assert view.wait(WAIT).ok
    calls = [c for c in published if c["display_id"] == view.display_id]
    assert WIDGET_MIME in calls[0]["data"] and not calls[0]["update"]
    assert [c["update"] for c in calls[1:]] == [True]  # one replacement, by the answer
    answer = calls[-1]["data"]
    assert set(answer) == {"text/markdown", "text/plain"}
    assert answer["text/markdown"].startswith("w1 w2") and "<details>" in answer["text/markdown"]
    # no other output was made: no empty placeholder
    assert {c["display_id"] for c in published} == {view.display_id}


def test_widget_outputs_say_what_they_are_in_their_metadata(shell, published):
    """The JupyterLab extension finds our dead widget outputs by this metadata."""
    m = magics_of(shell)
    widgets.panels_of(m.session).forget()
    cap = run_cell(shell, "%gemini ui")
    panel_out = [o for o in cap.outputs if WIDGET_MIME in o["data"]]
    assert [o["metadata"] for o in panel_out] == [{"gemini_magics": {"kind": "panel"}}]
    transcript_id = shell.user_ns["_gemini_panel"].transcript_id
    transcript = [c for c in published if c["display_id"] == transcript_id]
    assert transcript and transcript[0]["metadata"] == {}  # ordinary Markdown, not a widget
    widgets.panels_of(m.session).forget()

    assert run_cell(shell, "%%gemini --ui\nhello").error is None
    view = shell.user_ns["_gemini_live"]
    assert view.wait(WAIT).ok
    calls = [c for c in published if c["display_id"] == view.display_id]
    assert WIDGET_MIME in calls[0]["data"]
    assert calls[0]["metadata"] == {"gemini_magics": {"kind": "live view"}}
    assert calls[-1]["update"] and calls[-1]["metadata"] == {}  # the answer that replaced it


def test_an_image_model_that_draws_nothing_leaves_no_empty_output(shell, published, scripted):
    magics_of(shell).base_url = scripted.base_url
    scripted.script = [{"status": 500, "json": {"error": {"code": 500, "message": "boom"}}}]
    assert run_cell(shell, "%%gemini --ui -m gemini-3.1-flash-image\na cat").error is None
    view = shell.user_ns["_gemini_live"]
    assert view.wait(WAIT).error
    answer, media = saved_outputs(published, view.display_id, view.media_id)
    assert "⚠" in answer["text/markdown"]
    assert media["text/plain"].strip() and "<details>" in media["text/markdown"]  # the footer


def test_a_stopped_ui_answer_is_a_plain_note(shell, published):
    assert run_cell(shell, "%%gemini --ui\n/words 3000 delay=0.01").error is None
    view = shell.user_ns["_gemini_live"]
    wait_for(lambda: "w3 " in view.text, what="the first words")
    view.stop_button.click()
    assert view.stop_button.disabled
    result = view.wait(WAIT)
    assert result.stopped
    answer = saved_outputs(published, view.display_id)[0]
    assert "Stopped" in answer["text/markdown"]
    for text in (answer["text/markdown"], view.status_line):
        assert "⚠" not in text and "error" not in text.lower()
    assert "you stopped it" in view.status_line


def test_out_is_bound_at_once_and_fills_in_while_streaming(shell, published):
    shell.user_ns.pop("w", None)
    assert run_cell(shell, "%%gemini --ui -o w\n/words 400 delay=0.01").error is None
    w = shell.user_ns["w"]
    assert isinstance(w, LiveResult) and isinstance(w, GeminiResult)
    assert not w.done and not w.ok and "streaming" in repr(w)
    wait_for(lambda: "w3 " in w.text, what="the first words in w.text")
    assert w.answer.startswith("w1 w2 w3") and not w.done
    assert w.wait(WAIT) is w and w.done and w.ok
    assert shell.user_ns["w"] is w and shell.user_ns["_gemini"] is w
    assert w is shell.user_ns["_gemini_live"].result
    assert len(w.text.split()) == 400 and w.id and w.usage and w.steps
    assert w.status == "completed" and "done" not in repr(w) and "GeminiResult(id=" in repr(w)
    plain = GeminiResult()
    assert plain.wait() is plain and plain.done  # the same calls work on any result


def test_out_with_a_schema_becomes_the_parsed_value_at_the_end(shell, published):
    run_cell(shell, "from pydantic import BaseModel\nclass City(BaseModel):\n    name: str")
    try:
        assert run_cell(shell, "%%gemini --ui --schema City -o city\nParis").error is None
        early = shell.user_ns["city"]
        assert isinstance(early, LiveResult)  # bound at once to the live result
        result = early.wait(WAIT)
        assert result is early and result.ok, result.error
        city = shell.user_ns["city"]  # then, as a plain cell: the parsed value
        assert type(city).__name__ == "City" and city.name == "Paris" and result.value is city
    finally:
        for name in ("City", "city", "BaseModel"):
            shell.user_ns.pop(name, None)


def test_rerunning_a_ui_cell_leaves_out_to_the_new_answer(shell, published):
    m = magics_of(shell)
    first = widgets.run_live(m, parse("-o w", "/words 3000 delay=0.01", m.settings()),
                             cell_id="cell-w")
    wait_for(lambda: "w3 " in first.text, what="the first words")
    second = widgets.run_live(m, parse("-o w", "/words 5", m.settings()), cell_id="cell-w")
    assert first.wait(WAIT).stopped and second.wait(WAIT).ok
    assert shell.user_ns["w"] is second.result  # the stopped first run did not take it back


def test_status_glyphs_need_no_emoji_font():
    from pathlib import Path

    font = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    for line in live.STATES.values():
        assert "\ufe0f" not in line  # no emoji presentation selector
    if not font.exists():
        pytest.skip("DejaVu Sans is not installed")
    from PIL import ImageFont

    face = ImageFont.truetype(str(font), 24)
    missing = bytes(face.getmask("\ue000"))  # a private-use code point: the .notdef box
    glyphs = {ch for line in live.STATES.values() for ch in line if not ch.isascii()}
    assert glyphs and all(bytes(face.getmask(ch)) != missing for ch in glyphs), glyphs
    assert bytes(face.getmask("⏳")) == missing  # the check can tell: the old glyph is not there
