"""Every failure is one clear sentence with the fix; partial answers stay; keys never show.

HTTP failures come from a scripted loopback server (the local server never sends them); the
stop button is a real SIGINT delivered while the echo server streams slowly, and a stop is not
a failure: it ends the cell with a neutral note.
"""
import os
import re
import signal
import threading
import time

import pytest

from gemini_magics.request import Request
from gemini_magics.client import Backend, redact
from gemini_magics.runner import run

from magics_fixtures import magics_of, run_cell, scripted, shell, sse_events_for  # noqa: F401

FAKE_KEY = "AIzaSyD-fake-key-0123456789abcdefghijklm"


STOP_NOTE = "■ Stopped: the partial answer is kept; this turn was not added to the conversation."
STOP_NOTE_MD = f"*{STOP_NOTE}*"


def failed(cap, *words):
    """The cell failed with one line (no traceback) containing `words`."""
    assert cap.error is not None, cap.markdown
    text = cap.stdout + cap.stderr
    lines = [ln for ln in text.splitlines() if ln.startswith("GeminiError:")]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def err(status, message, **extra):
    return {"status": status, "json": {"error": {"code": status, "message": message, **extra}},
            "headers": {"Retry-After": "0"}}


# -- bad input: nothing is sent --------------------------------------------------------------------

@pytest.mark.parametrize("source, words", [
    ("%%gemini --bogus\nhi", ["Unknown option --bogus", "%%gemini?"]),
    ("%%gemini\nTell me about {undefined_thing}", ["'undefined_thing'", "{{undefined_thing}}"]),
    ("%%gemini\n\n   \n", ["The prompt is empty"]),
    ("%%gemini --temperature 9\nhi", ["between 0 and 2"]),
    ("%%gemini --temprature 0.3\nhi", ["Unknown option --temprature", "did you mean --temperature?"]),
    ("%%gemini -m ''\nhi", ["Model name '' is not valid"]),
    ("%gemini -m '' hi", ["Model name '' is not valid"]),
    ("%gemini", []),  # not an error: shows the settings
])
def test_bad_input_sends_nothing(shell, scripted, source, words):
    magics_of(shell).base_url = scripted.base_url
    cap = run_cell(shell, source)
    if words:
        failed(cap, *words)
    else:
        assert cap.error is None and "settings" in cap.stdout
    assert scripted.requests == []


# -- HTTP failures -------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, words", [
    (err(400, "Invalid value at 'generation_config.temperature'"),
     ["rejected as invalid (400", "temperature", "options"]),
    (err(401, "API key not valid. Please pass a valid API key."),
     ["API key was not accepted (401)", "GEMINI_API_KEY"]),
    (err(403, "Permission denied on resource project"), ["Access was denied (403", "-m"]),
    (err(404, "models/gemini-nope is not found for API version v1beta"),
     ["Model 'gemini-nope' was not found (404", "-m", "%gemini model"]),
    (err(429, "Resource has been exhausted (e.g. check quota)."),
     ["Too many requests or quota exhausted (429", "wait a minute"]),
    (err(500, "Internal error encountered."), ["internal error (500", "re-run"]),
    (err(503, "The model is overloaded."), ["internal error (503", "re-run"]),
])
def test_http_errors_are_one_sentence(shell, scripted, spec, words):
    magics_of(shell).base_url = scripted.base_url
    scripted.script = [spec]
    cap = run_cell(shell, "%%gemini -m gemini-nope -o r\nhello")
    failed(cap, *words)
    assert len(scripted.requests) == 1          # retries=0 in tests
    r = shell.user_ns["r"]
    assert r.error and not r.ok and magics_of(shell).conversation.chain() == []


def test_retries_setting_retries_429_and_5xx(shell, scripted):
    magics_of(shell).base_url = scripted.base_url
    magics_of(shell).retries = 2
    scripted.script = [err(429, "slow down"), err(503, "busy"), {"sse": sse_events_for(["made it"])}]
    cap = run_cell(shell, "%%gemini\nhello")
    assert cap.error is None and cap.final[0]["text/markdown"] == "made it"
    assert len(scripted.requests) == 3


def test_continuing_a_vanished_interaction_says_reset(shell, echo_server):
    from gemini_magics.server import start_server

    assert run_cell(shell, "%%gemini\nfirst").error is None
    other = start_server(engine="echo")
    try:
        magics_of(shell).base_url = other.base_url  # it has never seen our previous turn
        failed(run_cell(shell, "%%gemini\nsecond"), "no longer exists", "%gemini reset", "--new")
        assert run_cell(shell, "%%gemini --new\nthird").error is None
    finally:
        other.stop()


def test_api_key_never_appears(shell, scripted, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)
    magics_of(shell).base_url = scripted.base_url
    scripted.script = [err(400, f"API key {FAKE_KEY} is malformed; got key={FAKE_KEY}")]
    cap = run_cell(shell, "%%gemini -o r\nhello")
    failed(cap, "400")
    assert scripted.requests[0]["headers"].get("x-goog-api-key") == FAKE_KEY  # it was sent...
    everything = cap.stdout + cap.stderr + repr(cap.outputs) + repr(shell.user_ns["r"])
    everything += str(shell.user_ns["r"].error)
    assert FAKE_KEY not in everything                                           # ...never shown
    assert FAKE_KEY not in redact(f"x-goog-api-key: {FAKE_KEY}") and "AIza" not in redact("AIza" + "x" * 35)
    assert FAKE_KEY not in repr(Backend("api", None, FAKE_KEY, 1, None))


# -- failures mid-stream ----------------------------------------------------------------------------

def test_network_loss_mid_stream_keeps_the_partial_answer(shell, scripted):
    magics_of(shell).base_url = scripted.base_url
    events = sse_events_for(["Partial ", "answer "], complete=False)
    scripted.script = [{"sse": events, "drop": "reset"}]
    cap = run_cell(shell, "%%gemini -o r\nhello")
    failed(cap, "lost in the middle of the answer", "partial answer above is kept", "re-run")
    assert cap.final[0]["text/markdown"] == "Partial answer "
    r = shell.user_ns["r"]
    assert r.answer == "Partial answer " and r.error and magics_of(shell).conversation.chain() == []


def test_stream_that_ends_without_completion(shell, scripted):
    magics_of(shell).base_url = scripted.base_url
    scripted.script = [{"sse": sse_events_for(["Half"], complete=False), "drop": "eof"}]
    cap = run_cell(shell, "%%gemini\nhello")
    failed(cap, "stopped before the server said it was complete", "re-run")
    assert cap.final[0]["text/markdown"] == "Half"


def test_error_event_mid_stream(shell, scripted):
    magics_of(shell).base_url = scripted.base_url
    events = sse_events_for(["So far "], complete=False)
    events.append({"event_type": "error", "error": {"code": "resource_exhausted", "message": "Out of capacity."}})
    scripted.script = [{"sse": events}]
    cap = run_cell(shell, "%%gemini\nhello")
    failed(cap, "The model stopped with an error (resource_exhausted): Out of capacity",
           "partial answer above is kept")
    assert cap.final[0]["text/markdown"] == "So far "


def test_failed_interaction_status(shell, scripted):
    magics_of(shell).base_url = scripted.base_url
    scripted.script = [{"sse": sse_events_for(["x"], status="failed",
                                              extra_completed={"errors": [{"code": "internal", "message": "Model crashed"}]})}]
    failed(run_cell(shell, "%%gemini\nhello"), "Model crashed")


def test_malformed_stream(shell, scripted):
    magics_of(shell).base_url = scripted.base_url
    scripted.script = [{"sse": ["this is not json"]}]
    failed(run_cell(shell, "%%gemini\nhello"), "not JSON", "base_url")


_CREATED = {"event_type": "interaction.created",
            "interaction": {"id": "v1_x", "status": "in_progress", "model": "m"}}


@pytest.mark.parametrize("spec, words", [
    ({"body": "<html><body><h1>Sign in to continue</h1></body></html>"},
     ["sent a text/html answer that is not the Gemini Interactions API", "Sign in to continue",
      "base_url"]),
    ({"json": [1, 2, 3]}, ["answered with a JSON list, not an interaction", "base_url"]),
    ({"sse": [_CREATED, {"event_type": "step.start", "index": 0, "step": {"type": "model_output"}},
              {"event_type": "step.delta", "index": 0, "delta": {"type": "text", "text": 5}}]},
     ["'step.delta' whose 'delta.text' is a number, not a string", "base_url"]),
    ({"sse": [_CREATED, {"event_type": "step.start", "index": "first", "step": {}}]},
     ["'step.start' whose 'index' is a string, not a whole number"]),
    ({"sse": [{"event_type": "interaction.created", "interaction": "v1_x"}]},
     ["'interaction.created' whose 'interaction' is a string, not an object"]),
    ({"json": {"id": "v1_x", "status": "completed", "model": "m", "steps": [
        {"type": "model_output", "content": [{"type": "text", "text": ["a", "b"]}]}]}},
     ["'delta.text' is a list, not a string"]),
])
@pytest.mark.parametrize("stream", ["", "--no-stream"])
def test_an_answer_that_is_not_the_api_is_one_sentence(shell, scripted, spec, words, stream):
    """A proxy's sign-in page, a JSON list, fields of the wrong type: one sentence naming
    what was wrong, not "Unexpected …; please report this"."""
    magics_of(shell).base_url = scripted.base_url
    scripted.script = [spec]
    line = failed(run_cell(shell, f"%%gemini {stream}\nhello"), *words)
    assert "Unexpected" not in line and "report" not in line


def test_unreachable_server(shell):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    magics_of(shell).base_url = f"http://127.0.0.1:{port}"
    failed(run_cell(shell, "%%gemini\nhello"), "Could not reach", f"127.0.0.1:{port}", "base_url")


# -- stopping ------------------------------------------------------------------------------------

def _server_status(base_url, ident):
    from conftest import make_client

    client = make_client(base_url)  # keep a reference: a collected Client closes its connection
    return client.interactions.get(ident).status


def test_stop_button_mid_stream_keeps_partial_and_cancels_on_server(shell, echo_server):
    m = magics_of(shell)
    assert run_cell(shell, "%%gemini\nfirst turn").error is None

    seen = threading.Event()

    def press_stop():  # the notebook's stop button sends SIGINT to the kernel process
        if seen.wait(30):
            os.kill(os.getpid(), signal.SIGINT)

    class Watch:
        def on_update(self, acc):
            if acc.answer_length > 5:
                seen.set()

    original = m._observers
    m._observers = lambda request: original(request) + [Watch()]
    t = threading.Thread(target=press_stop, daemon=True)
    t.start()
    try:
        cap = run_cell(shell, "%%gemini -o r\n/words 400 delay=0.05")
    finally:
        t.join(35)
        del m._observers
    # A stop that was asked for is no error: the partial answer, one neutral note, the footer
    # (the order of --ui and the panel).
    assert cap.error is None and "GeminiError" not in cap.stdout + cap.stderr
    r = shell.user_ns["r"]
    assert r.stopped and not r.ok and r.answer.startswith("w1 w2")
    assert len(r.answer.split()) < 400
    assert cap.final[0]["text/markdown"].startswith("w1 w2")
    assert cap.final[-2] == {"text/markdown": STOP_NOTE_MD, "text/plain": STOP_NOTE}
    assert "stopped" in cap.final[-1]["text/markdown"]                  # the footer
    assert sum(STOP_NOTE in o.get("text/plain", "") for o in cap.final) == 1
    assert len(m.conversation.chain()) == 1                   # not advanced
    assert _server_status(echo_server.base_url, r.id) == "cancelled"


def test_a_stop_before_any_text_is_a_note_in_the_terminal_too(shell):
    m = magics_of(shell)
    m.display = "terminal"
    m.cancel_event = threading.Event()  # as the panel's Stop sets it, here before the cell runs
    m.cancel_event.set()
    cap = run_cell(shell, "%%gemini -o r\n/words 50 delay=0.05")
    assert cap.error is None and "GeminiError" not in cap.stdout
    lines = cap.stdout.splitlines()
    assert lines[-2] == "■ Stopped before any text arrived." and lines[-1].startswith("— ")
    assert cap.stdout.count("■ Stopped") == 1  # said once, then the footer
    r = shell.user_ns["r"]
    assert r.stopped and shell.user_ns["_gemini"] is r and m.last_result is r
    assert not m.conversation.chain()


def test_cancel_event_from_another_thread(base_url):
    """How the widgets' Stop button uses the runner: run in a thread, set the event."""
    cancel = threading.Event()
    seen = threading.Event()
    out = {}

    class Watch:
        def on_update(self, acc):
            if acc.answer_length > 5:
                seen.set()

    backend = Backend("custom", base_url, "k", 1, None)
    req = Request(text="/words 400 delay=0.05", parts=["/words 400 delay=0.05"])
    worker = threading.Thread(target=lambda: out.setdefault(
        "r", run(req, backend=backend, observers=[Watch()], cancel_event=cancel)), daemon=True)
    worker.start()
    assert seen.wait(30)
    cancel.set()
    worker.join(30)
    r = out["r"]
    assert r.stopped and r.error is None and r.answer.startswith("w1")
    assert len(r.answer.split()) < 400
    assert _server_status(base_url, r.id) == "cancelled"
