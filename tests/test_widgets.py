"""Widgets driven programmatically (set values, `button.click()`) against the echo server.

Every request goes through the real google-genai SDK over a loopback socket; what the server
received is checked by GETting the interaction back. Streaming runs in the widgets' worker
thread, so tests wait on it with a timeout, as a notebook user would wait for the answer.
"""
import re
import socket
import time

import ipywidgets
import pytest

from conftest import make_client
from gemini_magics import live, widgets
from gemini_magics.catalog import LOCAL_MODEL
from magics_fixtures import magics_of, record_publishes, run_cell, scripted, shell  # noqa: F401

WAIT = 60


def wait_for(predicate, timeout=WAIT, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def published(monkeypatch):
    """Every display output the widgets write (the part that is saved in the notebook)."""
    return record_publishes(monkeypatch)


def saved(calls, display_id):
    """The final bundle of a display id, as the saved notebook holds it."""
    bundles = [c["data"] for c in calls if c["display_id"] == display_id]
    assert bundles, f"nothing was published for {display_id}"
    return bundles[-1]


@pytest.fixture()
def panel(shell, published):
    m = magics_of(shell)
    widgets.panels_of(m.session).forget()
    run_cell(shell, "%gemini ui")
    p = shell.user_ns["_gemini_panel"]
    yield p
    if p.job is not None:
        p.job.stop()
        p.job.wait(WAIT)
    p.close()
    widgets.panels_of(m.session).forget()


@pytest.fixture()
def api(base_url):
    return make_client(base_url)


def last_turn_markdown(p):
    return p.turns[-1]["out"].outputs[0]["data"]["text/markdown"]


# -- the panel: settings and requests ---------------------------------------------------------

def test_panel_lists_models_tools_and_the_users_functions(shell, published):
    run_cell(shell, "def lookup_price(item: str) -> float:\n    return 1.0\n_private = lambda: 0")
    m = magics_of(shell)
    widgets.panels_of(m.session).forget()
    cap = run_cell(shell, "%gemini ui")
    assert cap.error is None
    p = shell.user_ns["_gemini_panel"]
    try:
        assert {"gemini-3.5-flash", "gemini-3.1-flash-image", LOCAL_MODEL} <= set(p.pickers.model.options)
        values = [v for _, v in p.pickers.tools.options]
        assert values[:5] == ["google_search", "code_execution", "url_context", "google_maps",
                              "file_search"]
        assert "fn:lookup_price" in values and not any("_private" in v for v in values)
        # the widget has a readable fallback, and the transcript output is written under it
        widget_out = [o for o in cap.outputs if "application/vnd.jupyter.widget-view+json" in o["data"]]
        assert widget_out and "Gemini panel" in widget_out[0]["data"]["text/plain"]
        assert saved(published, p.transcript_id)["text/plain"].startswith("Gemini panel")
    finally:
        p.close()
        widgets.panels_of(m.session).forget()
        shell.user_ns.pop("lookup_price", None)


def test_choosing_a_model_changes_the_request(panel, shell, api):
    panel.pickers.model.value = "gemini-2.5-pro"
    assert magics_of(shell).model == "gemini-2.5-pro"
    panel.prompt.value = "Which model are you?"
    panel.send_button.click()
    result = panel.wait(WAIT)
    assert result.ok, result.error
    assert api.interactions.get(result.id).model == "gemini-2.5-pro"
    assert "You said: Which model are you?" in last_turn_markdown(panel)
    assert panel.prompt.value == ""
    assert "done" in panel.status_line and "tokens" in panel.status_line


def test_choosing_tools_changes_the_request(panel, shell, api):
    run_cell(shell, "def my_helper(x: int) -> int:\n    return x")
    try:
        panel.close()
        run_cell(shell, "%gemini ui")  # reopening lists the functions defined since
        panel.pickers.tools.value = ("google_search", "code_execution", "fn:my_helper")
        panel.prompt.value = "Find it."
        panel.send_button.click()
        result = panel.wait(WAIT)
        assert result.id, result.error
        tools = api.interactions.get(result.id).tools
        assert [t.type for t in tools] == ["google_search", "code_execution", "function"]
        assert tools[2].name == "my_helper"
        # the picked function really ran: the magic's function loop called it and sent the result
        assert [c["name"] for c in result.function_calls] == ["my_helper"]
        assert result.function_results and not result.function_results[0].get("is_error")
        panel.pickers.tools.value = ()
        panel.prompt.value = "And now?"
        panel.send_button.click()
        result = panel.wait(WAIT)
        assert not api.interactions.get(result.id).tools
    finally:
        shell.user_ns.pop("my_helper", None)


def test_a_panel_turn_sends_what_a_cell_would(panel, shell, api):
    """The panel's request comes from the cell pipeline: a tool setting the pickers cannot show
    (a file_search store) is sent as a cell sends it, with the picked function added."""
    run_cell(shell, "def my_helper(x: int) -> int:\n    return x")
    try:
        run_cell(shell, "%gemini tools file_search:store1")
        cap = run_cell(shell, "%%gemini -o cell_result\nFind it.")
        assert cap.error is None, cap.error
        cell_tools = api.interactions.get(shell.user_ns["cell_result"].id).tools
        panel.pickers.list_functions()
        panel.pickers.tools.value = panel.pickers.tools.value + ("fn:my_helper",)
        panel.prompt.value = "Find it."
        panel.send_button.click()
        result = panel.wait(WAIT)
        assert result.id, result.error
        tools = api.interactions.get(result.id).tools
        assert [t.type for t in tools] == [t.type for t in cell_tools] + ["function"]
        assert tools[0].file_search_store_names == ["store1"] and tools[1].name == "my_helper"
    finally:
        for name in ("my_helper", "cell_result"):
            shell.user_ns.pop(name, None)


def test_panel_and_magic_share_settings(panel, shell):
    m = magics_of(shell)
    run_cell(shell, "%config GeminiMagics.model = 'gemini-2.5-pro'")
    assert panel.pickers.model.value == "gemini-2.5-pro"
    run_cell(shell, "%gemini temperature 0.5")
    assert panel.pickers.use_temperature.value is True and panel.pickers.temperature.value == 0.5
    run_cell(shell, "%gemini system Be brief.")
    assert panel.pickers.system.value == "Be brief."

    panel.pickers.model.value = "gemini-3-flash-preview"
    panel.pickers.system.value = "Talk like a pirate."
    panel.pickers.use_temperature.value = False
    assert (m.model, m.system, m.temperature) == ("gemini-3-flash-preview", "Talk like a pirate.", None)
    cap = run_cell(shell, "%%gemini\nhello")
    assert cap.error is None
    assert '[system: "Talk like a pirate."]' in cap.markdown
    assert shell.user_ns["_gemini"].model == "gemini-3-flash-preview"

    panel.pickers.system.value = ""
    assert m.system is None


def test_panel_turns_continue_the_magic_conversation_and_are_saved(panel, shell, published):
    assert run_cell(shell, "%%gemini\nfirst question").error is None
    panel.prompt.value = "second question"
    panel.send_button.click()
    result = panel.wait(WAIT)
    assert "I saw 2 user turns" in result.text
    assert shell.user_ns["_gemini"] is result
    cap = run_cell(shell, "%%gemini\nthird question")
    assert "I saw 3 user turns" in cap.markdown
    # the transcript under the panel is an ordinary Markdown + text output
    bundle = saved(published, panel.transcript_id)
    assert "> second question" in bundle["text/markdown"]
    assert "I saw 2 user turns" in bundle["text/markdown"]
    assert "You: second question" in bundle["text/plain"]
    assert "I saw 2 user turns" in bundle["text/plain"]


# -- the panel: stop and failures -------------------------------------------------------------

def test_stop_mid_stream_cancels_on_the_server_and_keeps_the_text(panel, shell, api):
    chain = len(magics_of(shell).conversation.chain())
    panel.prompt.value = "/words 3000 delay=0.01"
    job = panel.send()
    wait_for(lambda: "w3 " in job.snapshot, what="the first words")
    assert panel.busy and panel.send_button.disabled
    panel.stop_button.click()
    again = panel.stop()
    assert "Already stopping" in again
    result = panel.wait(WAIT)
    assert result.stopped and result.answer.startswith("w1 w2 w3")
    assert len(result.answer.split()) < 3000
    assert api.interactions.get(result.id).status == "cancelled"
    md = last_turn_markdown(panel)
    assert md.startswith("w1 w2 w3") and "Stopped" in md
    assert "stopped" in panel.status_line and "partial answer is kept" in panel.status_line
    assert not panel.busy and not panel.send_button.disabled
    assert "Nothing to stop" in panel.stop()
    assert len(magics_of(shell).conversation.chain()) == chain  # the stopped turn is not kept


def test_empty_prompt_and_sending_while_busy_say_what_to_do(panel):
    panel.prompt.value = "   "
    assert panel.send() is None
    assert "prompt is empty" in panel.status_line
    assert "Nothing to stop" in panel.stop()
    panel.prompt.value = "/words 3000 delay=0.01"
    job = panel.send()
    panel.prompt.value = "another"
    assert panel.send() is None
    assert "Still answering" in panel.status_line
    assert panel.prompt.value == "another"  # the typed text is not lost
    job.stop()
    panel.wait(WAIT)
    assert not panel.busy


def test_a_model_the_backend_rejects_is_a_status_message(panel, shell, scripted):
    magics_of(shell).base_url = scripted.base_url
    scripted.script = [{"status": 404, "json": {"error": {
        "code": 404, "message": "models/gemini-0-nope is not found", "status": "NOT_FOUND"}}}]
    panel.pickers.model.value = "gemini-0-nope"
    panel.prompt.value = "hello"
    panel.send_button.click()
    result = panel.wait(WAIT)
    assert result.error and "'gemini-0-nope' was not found" in panel.status_line
    assert "error" in panel.status_line and not panel.busy
    assert panel.turns[-1]["prompt"] == "hello"
    assert "was not found" in last_turn_markdown(panel)


def test_an_invalid_model_name_is_refused_in_the_picker(panel, shell):
    before = magics_of(shell).model
    panel.pickers.model.value = "my model"
    assert magics_of(shell).model == before
    assert "not valid" in panel.status_line


def test_a_network_error_is_a_status_message(panel, shell):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    magics_of(shell).base_url = f"http://127.0.0.1:{port}"
    panel.prompt.value = "hello"
    panel.send_button.click()
    result = panel.wait(WAIT)
    assert result.error and "Could not reach" in panel.status_line
    assert not panel.busy and not panel.send_button.disabled


def test_closing_and_reopening_the_panel_mid_stream_loses_nothing(panel, shell):
    panel.prompt.value = "/words 300 delay=0.01"
    job = panel.send()
    wait_for(lambda: "w3 " in job.snapshot, what="the first words")
    panel.close()
    assert panel.closed
    run_cell(shell, "%gemini ui")
    assert shell.user_ns["_gemini_panel"] is panel and not panel.closed
    result = panel.wait(WAIT)
    assert result.ok and len(result.answer.split()) == 300
    md = last_turn_markdown(panel)
    assert md.startswith("w1 w2") and "w300" in md
    assert "done" in panel.status_line and not panel.send_button.disabled


def test_picking_the_local_model_switches_to_offline(panel, shell):
    m = magics_of(shell)
    panel.pickers.model.value = LOCAL_MODEL
    assert m.offline is True and m.model == LOCAL_MODEL
    panel.pickers.model.value = "gemini-3.5-flash"
    assert m.offline is False


# -- %%gemini --ui ------------------------------------------------------------------------------

def test_ui_cell_returns_while_streaming_and_writes_the_answer_out(shell, published):
    m = magics_of(shell)
    chain = len(m.conversation.chain())
    cap = run_cell(shell, "%%gemini --ui -o r\n/words 200 delay=0.01")
    assert cap.error is None
    view = shell.user_ns["_gemini_live"]
    assert view.job.running  # the cell returned; the answer is still streaming
    widget_out = [o for o in cap.outputs if "application/vnd.jupyter.widget-view+json" in o["data"]]
    assert widget_out and "live view" in widget_out[0]["data"]["text/plain"]
    result = view.wait(WAIT)
    assert result.ok and shell.user_ns["r"] is result and shell.user_ns["_gemini"] is result
    bundle = saved(published, view.display_id)
    words = " ".join(f"w{i}" for i in range(1, 201))
    assert bundle["text/markdown"].startswith(words)
    assert bundle["text/plain"].startswith(words)
    assert "<details>" in bundle["text/markdown"]
    # the view itself was that output: the answer replaced it, so only the answer is saved
    first = [c for c in published if c["display_id"] == view.display_id][0]
    assert first["update"] is False
    assert "application/vnd.jupyter.widget-view+json" in first["data"]
    assert "application/vnd.jupyter.widget-view+json" not in bundle
    assert view.media_id is None  # a text model's answer needs no second output
    assert view.widget.comm is None  # the view's widgets are closed: nothing of them is saved
    assert "done" in view.status_line and view.stop_button.disabled
    assert len(m.conversation.chain()) == chain + 1


def test_ui_cell_with_a_schema_puts_the_parsed_value_in_out(shell, published):
    run_cell(shell, "from pydantic import BaseModel\nclass City(BaseModel):\n    name: str")
    try:
        assert run_cell(shell, "%%gemini --ui --schema City -o city\nParis").error is None
        result = shell.user_ns["_gemini_live"].wait(WAIT)
        assert result.ok, result.error
        city = shell.user_ns["city"]  # like a plain cell: the parsed value, not the result object
        assert type(city).__name__ == "City" and city.name == "Paris"
        assert shell.user_ns["_gemini"] is result
    finally:
        for name in ("City", "city", "BaseModel"):
            shell.user_ns.pop(name, None)


def test_stop_from_a_later_cell(shell, published, api):
    assert run_cell(shell, "%%gemini --ui -o r\n/words 3000 delay=0.01").error is None
    view = shell.user_ns["_gemini_live"]
    wait_for(lambda: "w3 " in view.text, what="the first words")
    cap = run_cell(shell, "%gemini stop")
    assert "Stopping 1 answer" in cap.stdout
    result = view.wait(WAIT)
    assert result.stopped and result.answer.startswith("w1 w2 w3")
    assert api.interactions.get(result.id).status == "cancelled"
    bundle = saved(published, view.display_id)
    assert bundle["text/markdown"].startswith("w1 w2 w3") and "Stopped" in bundle["text/markdown"]
    assert "stopped" in view.status_line
    assert "Nothing to stop" in run_cell(shell, "%gemini stop").stdout
    assert "Nothing to stop" in view.stop()


def test_ui_cell_with_a_bad_option_is_one_sentence(shell):
    cap = run_cell(shell, "%%gemini --ui --temperature 9\nhello")
    assert "Temperature must be between 0 and 2" in str(cap.error)
    assert "_gemini_live" not in shell.user_ns or shell.user_ns["_gemini_live"].job is None \
        or not shell.user_ns["_gemini_live"].job.running


def test_a_fast_stream_sends_few_widget_messages_and_the_whole_text(shell, published, monkeypatch):
    sends = []
    original = ipywidgets.Widget._send

    def counting(self, msg, buffers=None):
        sends.append(time.monotonic())
        return original(self, msg, buffers)

    monkeypatch.setattr(ipywidgets.Widget, "_send", counting)
    start = time.monotonic()
    assert run_cell(shell, "%%gemini --ui\n/words 5000").error is None
    view = shell.user_ns["_gemini_live"]
    result = view.wait(WAIT)
    span = time.monotonic() - start
    assert result.ok and len(result.answer.split()) == 5000
    assert saved(published, view.display_id)["text/plain"].split()[4999] == "w5000"
    # widget state messages: bounded by the ticker's pace, not by the 5000 deltas
    assert len(sends) <= 2 * (span / live.TICK_S + 1) + 12
    assert len(sends) < 500


# -- helpers ------------------------------------------------------------------------------------

def test_live_markdown_keeps_the_tail_and_reopens_a_code_fence():
    assert live.live_markdown("short") == "short"
    code = "intro\n\n```python\n" + "".join(f"x = {i}\n" for i in range(3000))
    shown = live.live_markdown(code, limit=2000)
    assert len(shown) < 2300
    assert shown.startswith("*… ") and "\n```python\n" in shown
    assert shown.endswith("x = 2999\n")
    closed = "```\ncode\n```\n" + "word " * 1000
    assert "```" not in live.live_markdown(closed, limit=500)


def test_status_line_counts_tokens_and_rate(panel):
    panel.prompt.value = "/words 50"
    job = panel.send()
    panel.wait(WAIT)
    assert re.search(r"✓ done · \d+\.\d s · 50 tokens · \d+ tokens/s", job.status_text())


def test_widgets_in_a_terminal_say_what_to_use_instead(shell):
    magics_of(shell).display = "terminal"
    cap = run_cell(shell, "%gemini ui")
    assert "needs a Jupyter notebook" in str(cap.error) and "%%gemini cells" in str(cap.error)
    cap = run_cell(shell, "%%gemini --ui\nhello")
    assert "needs a Jupyter notebook" in str(cap.error) and "drop --ui" in str(cap.error)


def test_picked_tools_survive_closing_and_reopening(panel, shell):
    panel.pickers.tools.value = ("url_context",)
    panel.close()
    run_cell(shell, "%gemini ui")
    assert panel.pickers.tools.value == ("url_context",)
    run_cell(shell, "%gemini ui")  # shown again while open: same picks
    assert panel.pickers.tools.value == ("url_context",)


def test_an_image_model_answer_shows_and_saves_the_image(panel, shell, published):
    panel.pickers.model.value = "gemini-3.1-flash-image"
    panel.prompt.value = "a red circle"
    panel.send_button.click()
    result = panel.wait(WAIT)
    assert result.ok, result.error
    outputs = panel.turns[-1]["out"].outputs
    assert any("image/png" in o["data"] for o in outputs)
    bundle = saved(published, panel.transcript_id)
    assert "](data:image/png;base64,iVBOR" in bundle["text/markdown"]
    assert "PNG" in bundle["text/plain"]

    cap = run_cell(shell, "%%gemini --ui -m gemini-3.1-flash-image\na blue square")
    assert cap.error is None
    view = shell.user_ns["_gemini_live"]
    assert view.wait(WAIT).ok
    image = saved(published, view.media_id)
    assert image["image/png"].startswith("iVBOR") and "PNG" in image["text/plain"]
    assert "a blue square" in saved(published, view.display_id)["text/markdown"]


def test_ui_cell_saves_images_with_save(shell, published, tmp_path):
    target = tmp_path / "drawn.png"
    cap = run_cell(shell, f"%%gemini --ui -m gemini-3.1-flash-image --save {target}\na green star")
    assert cap.error is None
    view = shell.user_ns["_gemini_live"]
    assert view.wait(WAIT).ok
    assert target.read_bytes().startswith(b"\x89PNG")
    assert "Saved 1 image" in view.status_line


def test_rerunning_a_ui_cell_stops_its_previous_answer(shell, published, api):
    from gemini_magics.args import parse

    m = magics_of(shell)
    first = widgets.run_live(m, parse("", "/words 3000 delay=0.01", m.settings()), cell_id="cell-x")
    wait_for(lambda: "w3 " in first.text, what="the first words")
    second = widgets.run_live(m, parse("", "again", m.settings()), cell_id="cell-x")
    old = first.wait(WAIT)
    assert old.stopped and api.interactions.get(old.id).status == "cancelled"
    assert second.wait(WAIT).ok
