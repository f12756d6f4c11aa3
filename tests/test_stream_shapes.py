"""The client reads both stream shapes the server can send: content in step.delta events (as
Google's published streams, the default) and the first content inside step.start (the other
shape the real API sends). A cell's answer, thoughts and saved outputs are the same either way.
"""
from __future__ import annotations

import pytest
from magics_fixtures import magics_of, run_cell, shell  # noqa: F401 - the fixture

from gemini_magics.server.turns import STREAM_SHAPE_ENV

CELLS = [
    "%%gemini -o r\nExplain how AI works",
    "%%gemini --agent antigravity-preview-05-2026 --show-thoughts -o r\nCompute 2+2.",
]


def _run(shell, monkeypatch, shape: str, cell: str):
    monkeypatch.setenv(STREAM_SHAPE_ENV, shape)
    magics_of(shell).session.conversation.reset()
    cap = run_cell(shell, cell)
    assert cap.error is None, cap.stderr
    r = shell.user_ns["r"]
    shown = [d.get("text/markdown", "") for d in cap.final]
    return r.text, [s["type"] for s in r.steps], shown[:-1]  # the footer has the id and time


@pytest.mark.parametrize("cell", CELLS)
def test_both_shapes_give_the_same_answer_and_outputs(shell, monkeypatch, cell):
    delta = _run(shell, monkeypatch, "delta", cell)
    start = _run(shell, monkeypatch, "start", cell)
    assert delta == start
    text, kinds, shown = delta
    assert text.startswith("Echo: ")  # the first word is there
    if "--agent" in cell:
        assert shown[0].startswith("> *Thinking*\n> [offline] The agent ")
