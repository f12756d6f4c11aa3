"""A server that lists the request's `user_input` step among the interaction's steps (the real
API's GET and non-streamed answers do): the prompt is never shown as part of the answer, and the
turn is recorded without it, so a later stateless turn re-sends it once, not twice.

The real API's `idle` status (google-genai 3.5+) ends a background job like `completed`.
"""
import json

import pytest

from magics_fixtures import (ScriptedServer, _Handler, _Server, magics_of, record_publishes,  # noqa: F401
                             run_cell, scripted, shell)

PROMPT = "Which river flows through Paris?"
USER = {"type": "user_input", "content": [{"type": "text", "text": PROMPT}]}
ANSWER = {"type": "model_output", "content": [{"type": "text", "text": "The Seine."}]}


def interaction(ident, status="completed", steps=(USER, ANSWER)):
    return {"id": ident, "status": status, "object": "interaction", "model": "m",
            "steps": list(steps), "usage": {"total_tokens": 9}}


class _GetHandler(_Handler):
    def do_GET(self):  # the interaction as the real API's GET lists it
        self.server.owner.record(self, b"")
        self._json(200, self.server.owner.got)


class GettableServer(ScriptedServer):
    """ScriptedServer whose GET answers with `got` (ScriptedServer's GET is a 404)."""

    def __post_init__(self):
        super().__post_init__()
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(5)
        self.got = {}
        self._srv = _Server(("127.0.0.1", 0), _GetHandler)
        self._srv.owner = self
        import threading
        self._thread = threading.Thread(target=self._srv.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()


def test_a_listed_prompt_is_not_in_the_answer_nor_sent_twice(shell, scripted):
    magics_of(shell).base_url = scripted.base_url
    scripted.script = [{"json": interaction("v1_a")},
                       {"json": interaction("v1_b", steps=[ANSWER])}]
    cap = run_cell(shell, f"%%gemini --stateless --no-stream\n{PROMPT}")
    assert cap.error is None, cap.stderr
    assert "The Seine." in cap.markdown and PROMPT not in cap.markdown
    assert [s["type"] for s in shell.user_ns["_gemini"].steps] == ["model_output"]
    assert run_cell(shell, "%%gemini --stateless --no-stream\nAnd Rome?").error is None
    assert scripted.requests[-1]["body"]["input"] == [
        USER, ANSWER, {"type": "user_input", "content": [{"type": "text", "text": "And Rome?"}]}]


@pytest.fixture()
def gettable():
    srv = GettableServer()
    yield srv
    srv.stop()


def test_a_background_job_ending_idle_shows_its_answer_without_the_prompt(shell, gettable,
                                                                          monkeypatch):
    published = record_publishes(monkeypatch)
    m = magics_of(shell)
    m.base_url, m.poll_interval = gettable.base_url, 0.05
    m.session.jobs.clear()
    gettable.script = [{"json": interaction("v1_bg", status="in_progress", steps=[])},
                       {"json": interaction("v1_next", steps=[ANSWER])}]
    gettable.got = interaction("v1_bg", status="idle")
    try:
        assert run_cell(shell, f"%%gemini --background\n{PROMPT}").error is None
        job = shell.user_ns["_gemini_job"]
        result = job.wait(30)
        assert result is not None and result.ok and job.status == "idle"
        shown = [c["data"]["text/markdown"] for c in published if c["display_id"] == job.display_id]
        assert "The Seine." in shown[-1] and PROMPT not in shown[-1]
        assert shown[-1].startswith("The Seine.")
        # the recorded turn holds the model's steps only: a stateless follow-up sends the prompt once
        assert run_cell(shell, "%%gemini --stateless --no-stream\nAnd Rome?").error is None
        sent = json.dumps(gettable.requests[-1]["body"]["input"])
        assert sent.count(PROMPT) == 1
    finally:
        for job in list(m.session.jobs.values()):
            job.stop_polling()
        m.session.jobs.clear()
