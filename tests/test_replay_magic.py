"""Record/replay through the magic: `%gemini record PATH`, `%gemini replay PATH`, `%gemini cassette`.

What a user notices: cells recorded in one IPython session (against the local echo server) show
the same outputs when the notebook is replayed in a fresh session where no server runs and no
socket may be opened; a cell that was never recorded fails with one sentence, not a traceback.

Each session is a child process (a really fresh interpreter: no server thread, no cached client)
running a real IPython shell and the real google-genai SDK.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, _SDK_ENV
from magics_fixtures import magics_of, run_cell, shell  # noqa: F401 - the shell fixture

CHILD_TIMEOUT_S = 120

# The child: a fresh IPython shell runs the cells and prints what a notebook would keep, as JSON.
# With BLOCK_SOCKETS set, any socket connection raises and is counted, so a replay that tried
# to reach a server fails the comparison.
CHILD = textwrap.dedent(r'''
    import json, os, socket, sys, threading

    attempts = []
    if os.environ.get("BLOCK_SOCKETS"):
        def _blocked(self, address, *a, **k):
            attempts.append(repr(address))
            raise OSError("socket connections are blocked in this replay test")
        socket.socket.connect = _blocked
        socket.socket.connect_ex = _blocked

    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "gemini_magics")
    cells = json.loads(sys.stdin.read())
    report = {"cells": []}
    for source in cells:
        with capture_output() as cap:
            result = ip.run_cell(source)
        final, index = [], {}
        for o in cap.outputs:  # fold display updates like a notebook frontend
            did = (o.transient or {}).get("display_id")
            if o.update:
                for i in index.get(did, []):
                    final[i] = o.data
                continue
            if did is not None:
                index.setdefault(did, []).append(len(final))
            final.append(o.data)
        error = result.error_in_exec or result.error_before_exec
        report["cells"].append({"stdout": cap.stdout, "stderr": cap.stderr, "outputs": final,
                                "error": type(error).__name__ if error else None})
    report["threads"] = [t.name for t in threading.enumerate()]
    report["connect_attempts"] = attempts
    print("REPORT " + json.dumps(report))
''')

# A short notebook: streamed and non-streamed answers, a conversation, an image, a result var.
CELLS = [
    "%%gemini\nHello, cassette",
    "%%gemini --no-stream\nAnd a second turn, not streamed",
    "%%gemini\n/words 40",
    "%%gemini -m gemini-3.1-flash-image\nA red circle on a white background",
    "%%gemini -o r --no-stream\nA last question",
    "print(r.text, r.id)",
    "%gemini history",
]
# The footer shows the wall-clock time a request took: the one thing a replay cannot repeat.
_ELAPSED = re.compile(r"\b\d+\.\d+ s\b")


def _session(cells: list, *, block_sockets: bool = False, extra_env: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _SDK_ENV}
    env.update({"GEMINI_MAGICS_ENGINE": "echo", "PYTHONPATH": str(ROOT)})
    for name in ("GEMINI_MAGICS_CASSETTE", "GEMINI_MAGICS_RECORD_MODE", "BLOCK_SOCKETS"):
        env.pop(name, None)
    if block_sockets:
        env["BLOCK_SOCKETS"] = "1"
    env.update(extra_env or {})
    proc = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(cells), env=env,
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, cwd=str(ROOT))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert lines, f"child failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1][len("REPORT "):])


def _shown(cell: dict) -> dict:
    """What the user sees in a cell, with the elapsed time masked, minus the offline notice
    that a live run's first answer shows and a replay (no offline model) does not."""
    from gemini_magics.client import OFFLINE_NOTICE

    def mask(value):
        if isinstance(value, str):
            return _ELAPSED.sub("<elapsed> s", value)
        if isinstance(value, dict):
            return {k: mask(v) for k, v in value.items()}
        return value
    return {"stdout": mask(cell["stdout"]),
            "outputs": [mask(o) for o in cell["outputs"] if o.get("text/plain") != OFFLINE_NOTICE],
            "error": cell["error"]}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    path = tmp_path_factory.mktemp("magic-cassette") / "notebook.cassette.json"
    report = _session([f"%gemini record {path}"] + CELLS)
    for cell in report["cells"]:
        assert cell["error"] is None, cell
    return path, report


def test_record_line_magic_says_where_and_writes_a_reviewable_file(recorded):
    path, report = recorded
    said = report["cells"][0]["stdout"]
    assert "Recording" in said and str(path) in said and "%gemini cassette off" in said
    document = json.loads(path.read_text(encoding="utf-8"))
    bodies = [e["request"].get("body", {}) for e in document["exchanges"]]
    inputs = json.dumps(bodies)
    for prompt in ("Hello, cassette", "And a second turn", "/words 40", "A red circle"):
        assert prompt in inputs
    # the recording session's answers really came from the local server
    assert any(t.startswith("gemini-magics-server-") for t in report["threads"])


def test_replay_in_a_fresh_session_shows_identical_outputs_without_any_socket(recorded):
    path, recorded_report = recorded
    report = _session([f"%gemini replay {path}"] + CELLS, block_sockets=True)
    said = report["cells"][0]["stdout"]
    assert "Replaying" in said and "no network" in said
    assert report["connect_attempts"] == []
    assert not any(t.startswith("gemini-magics-server-") for t in report["threads"])
    for cell in report["cells"][1:]:
        # no offline-model notice either
        assert "no GEMINI_API_KEY" not in cell["stdout"] + json.dumps(cell["outputs"])
    # every cell after the record/replay line shows the same thing
    rec_cells = [_shown(c) for c in recorded_report["cells"][1:]]
    assert [_shown(c) for c in report["cells"][1:]] == rec_cells
    # and the streamed words, the image and the conversation are really there
    shown = json.dumps(rec_cells)
    assert "w40" in shown and "image/png" in shown and "A last question" in shown


def test_replay_via_environment_needs_no_line_magic(recorded):
    path, recorded_report = recorded
    report = _session(CELLS[:2], block_sockets=True,
                      extra_env={"GEMINI_MAGICS_CASSETTE": str(path),
                                 "GEMINI_MAGICS_RECORD_MODE": "replay"})
    assert report["connect_attempts"] == []
    assert [_shown(c)["outputs"] for c in report["cells"]] == \
        [_shown(c)["outputs"] for c in recorded_report["cells"][1:3]]


def test_a_request_not_in_the_cassette_fails_with_one_sentence(recorded):
    path, _ = recorded
    report = _session([f"%gemini replay {path}", "%%gemini\nSomething never recorded",
                       "%gemini cassette", "%gemini cassette off"], block_sockets=True)
    miss = report["cells"][1]
    assert miss["error"] == "GeminiError"
    message = miss["stdout"].strip().splitlines()[-1]
    assert "POST /v1/interactions" in message and "re-record" in message and str(path) in message
    assert "Traceback" not in miss["stdout"] + miss["stderr"]
    assert "report this" not in message  # not presented as a bug in gemini-magics
    assert report["connect_attempts"] == []
    state = report["cells"][2]["stdout"]
    assert "replaying from" in state and str(path) in state
    assert "Stopped using cassette" in report["cells"][3]["stdout"]


def test_cassette_commands_in_the_shell(shell, tmp_path):
    """State, off, bad paths and bad usage: one sentence each, in the test shell."""
    session = magics_of(shell).session
    session.eject()
    try:
        cap = run_cell(shell, "%gemini cassette")
        assert cap.error is None and "No cassette" in cap.stdout
        cap = run_cell(shell, f"%gemini replay {tmp_path / 'missing.json'}")
        assert cap.error is not None and "does not exist" in cap.stdout
        assert "Traceback" not in cap.stdout
        cap = run_cell(shell, "%gemini record")
        assert cap.error is not None and "Give one cassette file path" in cap.stdout
        bad = tmp_path / "not-a-cassette.json"
        bad.write_text("[1, 2]")
        cap = run_cell(shell, f"%gemini replay '{bad}'")
        assert cap.error is not None and "is not a gemini-magics cassette" in cap.stdout
        # recording in the shell, through the echo server, then the state line says so
        rec = tmp_path / "dir with space" / "c.json"
        cap = run_cell(shell, f'%gemini record "{rec}"')
        assert cap.error is None and str(rec) in cap.stdout
        assert run_cell(shell, "%%gemini\nHi").error is None
        cap = run_cell(shell, "%gemini cassette")
        assert "recording to" in cap.stdout and "1 exchange" in cap.stdout
        assert "cassette: recording to" in run_cell(shell, "%gemini settings").stdout
        cap = run_cell(shell, "%gemini cassette off")
        assert "Stopped using cassette" in cap.stdout
        assert rec.exists()
        # `%gemini cassette PATH` replays a file that exists (auto mode), same answer
        first = magics_of(shell).last_result
        cap = run_cell(shell, f'%gemini cassette "{rec}"')
        assert "Replaying answers from" in cap.stdout
        assert run_cell(shell, "%%gemini\nHi").error is None
        again = magics_of(shell).last_result
        assert (again.id, again.text) == (first.id, first.text)
    finally:
        session.eject()


def test_bad_record_mode_in_the_environment_is_one_sentence(shell, monkeypatch, tmp_path):
    magics_of(shell).session.eject()
    monkeypatch.setenv("GEMINI_MAGICS_CASSETTE", str(tmp_path / "c.json"))
    monkeypatch.setenv("GEMINI_MAGICS_RECORD_MODE", "playback")
    cap = run_cell(shell, "%%gemini\nHi")
    assert cap.error is not None and "is not a mode" in cap.stdout
    assert "Traceback" not in cap.stdout and "local offline server" not in cap.stdout
