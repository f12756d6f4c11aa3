"""A server that reflects the API key into its answer: the key is in nothing we show or keep.

The key arrives split over several stream chunks with pauses longer than the display tick, so
a display that showed the text as it came would show the key's first half for a moment.
Looked for: every output published while streaming and at the end (plain cell, `--ui` live
view and its answer, `--no-stream`), stdout/stderr, the `-o` result, `%gemini last`, the
cassette, the log, and (kernel test) the saved notebook file.
"""
import json
import logging
import threading
import time

import pytest

from kernel_fixtures import kernel_env, run_notebook, setup_source  # noqa: F401
from magics_fixtures import (magics_of, record_publishes, run_cell, scripted,  # noqa: F401
                             sse_events_for, shell)

FAKE_KEY = "AIzaSyD-fake-key-0123456789abcdefghijklm"
SHOWN_NEVER = (FAKE_KEY, FAKE_KEY[:12], FAKE_KEY[-12:])  # the key, its start, its end
JSON_ANSWER = {"id": "v1_json", "status": "completed", "object": "interaction", "model": "m",
               "steps": [{"type": "model_output", "content": [
                   {"type": "text", "text": f"again {FAKE_KEY}"}]}]}


def _slow_key_stream() -> list:
    """The answer "Your key is <key>, keep it safe." with the key in three chunks, 0.25 s apart."""
    chunks = ["Your key is ", FAKE_KEY[:14], FAKE_KEY[14:27], FAKE_KEY[27:], ", keep it safe."]
    events = sse_events_for(chunks)
    paced = []
    for ev in events:
        paced.append(ev)
        if ev.get("event_type") == "step.delta":
            paced.append(0.25)
    return paced


def _assert_clean(text: str, where: str) -> None:
    for piece in SHOWN_NEVER:
        assert piece not in text, f"{where} shows the key (or part of it): …{piece}…"


def test_a_reflected_key_is_in_no_output_result_cassette_or_log(shell, scripted, monkeypatch,
                                                                 tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)
    published = record_publishes(monkeypatch)
    magics_of(shell).base_url = scripted.base_url
    cassette = tmp_path / "key.json"
    assert run_cell(shell, f"%gemini record {cassette}").error is None
    scripted.script = [{"sse": _slow_key_stream()}, {"json": JSON_ANSWER}]
    seen = []
    for line in ("-o r", "-o r --no-stream"):
        cap = run_cell(shell, f"%%gemini {line}\nwhat is my key?")
        assert cap.error is None, cap.error
        seen.append(cap.stdout + cap.stderr + json.dumps([o["data"] for o in cap.outputs]))
        r = shell.user_ns["r"]
        kept = r.text + r.answer + repr(r) + repr(r.steps) + repr(r.interaction_data)
        kept += r.interaction.model_dump_json()
        _assert_clean(kept, f"the result of `%%gemini {line}`")
        assert "***" in r.answer
    last = run_cell(shell, "%gemini last")
    seen.append(last.stdout + json.dumps([o["data"] for o in last.outputs]))
    assert run_cell(shell, "%gemini cassette off").error is None
    seen.append(cassette.read_text())
    seen.append(json.dumps([c["data"] for c in published]))
    seen.append("\n".join(r.getMessage() for r in caplog.records))
    assert len([c for c in published if c["update"]]) >= 3, "the answer did not stream"
    for where, text in zip(("the plain cell", "the --no-stream cell", "%gemini last",
                            "the cassette", "the published outputs", "the log"), seen):
        _assert_clean(text, where)
    assert "***" in seen[0]


def test_a_reflected_key_is_not_shown_by_the_live_view_while_it_streams(shell, scripted,
                                                                        monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)
    published = record_publishes(monkeypatch)
    magics_of(shell).base_url = scripted.base_url
    scripted.script = [{"sse": _slow_key_stream()}]
    assert run_cell(shell, "%%gemini --ui -o w\nwhat is my key?").error is None
    view, live = shell.user_ns["_gemini_live"], shell.user_ns["w"]
    frames, done = [], threading.Event()

    def sample():  # what the live view and `w.text` show, every 20 ms
        while not done.is_set():
            frames.append(json.dumps(view.answer.outputs) + live.text + view.text)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = view.wait(30)
    done.set()
    sampler.join(5)
    assert result is not None and result.ok
    assert any("Your key is" in f for f in frames), "the live view never showed the answer"
    for frame in frames:
        _assert_clean(frame, "the live view")
    _assert_clean(json.dumps([c["data"] for c in published]), "the --ui answer")
    assert "***" in published[-1]["data"]["text/markdown"]


@pytest.mark.slow
def test_a_reflected_key_is_not_in_the_saved_notebook(kernel_env, scripted, monkeypatch,
                                                      tmp_path):
    import nbformat

    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)
    scripted.script = [{"sse": _slow_key_stream()}, {"sse": _slow_key_stream()},
                       {"json": JSON_ANSWER}]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(setup_source(scripted.base_url)),
                nbformat.v4.new_code_cell("%%gemini -o r\nwhat is my key?"),
                nbformat.v4.new_code_cell("%%gemini --ui\nand again?"),
                nbformat.v4.new_code_cell("_gemini_live.wait(30)"),
                nbformat.v4.new_code_cell("%%gemini --no-stream\nonce more?"),
                nbformat.v4.new_code_cell("%gemini last\nprint(r.text)\nr")]
    path = tmp_path / "saved.ipynb"
    saved = run_notebook(nb, path)
    text = path.read_text()
    _assert_clean(text, "the saved notebook")
    markdown = [o["data"].get("text/markdown", "") for c in saved.cells[1:]
                for o in c.get("outputs", []) if "data" in o]
    assert sum("***" in m for m in markdown) >= 3, markdown
