"""`tool_search` and `retrieval` steps (google-genai 3.6) shown like the other tool steps.

A scripted loopback server streams them as the real API streams tool steps (identity in
step.start, payload in a delta of the step's own type); the cell reads them through the real
SDK request path and the fast reader, then the renderer shows each one.
"""
from __future__ import annotations

import pytest
from magics_fixtures import magics_of, run_cell, scripted, shell  # noqa: F401 - fixtures

from gemini_magics.tools import render_step_markdown

STEPS = [
    ({"type": "tool_search_call", "id": "ts1", "signature": ""},
     {"type": "tool_search_call", "arguments": {"function_names": ["get_weather"]},
      "signature": "c2ln"}),
    ({"type": "tool_search_result", "call_id": "ts1", "signature": ""},
     {"type": "tool_search_result", "signature": "c2ln",
      "result": [{"type": "function", "name": "get_weather",
                  "description": "The weather in a city"}]}),
    ({"type": "retrieval_call", "id": "r1", "retrieval_type": "rag_store", "signature": ""},
     {"type": "retrieval_call", "arguments": {"queries": ["lesson plan"]}, "signature": "c2ln"}),
    ({"type": "retrieval_result", "call_id": "r1", "signature": ""},
     {"type": "retrieval_result", "is_error": False, "signature": "c2ln"}),
]
SHOWN = ["**Tool search:** `get_weather`",
         "**Tools found:** 1\n- `get_weather`: The weather in a city",
         "**Retrieval (rag\\_store):** `lesson plan`",
         "**Retrieval results received**"]


def _stream() -> list:
    events = [{"event_type": "interaction.created",
               "interaction": {"id": "v1_ts", "status": "in_progress", "object": "interaction",
                               "model": "m"}}]
    for i, (start, delta) in enumerate(STEPS):
        events += [{"event_type": "step.start", "index": i, "step": start},
                   {"event_type": "step.delta", "index": i, "delta": delta},
                   {"event_type": "step.stop", "index": i}]
    n = len(STEPS)
    events += [{"event_type": "step.start", "index": n, "step": {"type": "model_output"}},
               {"event_type": "step.delta", "index": n, "delta": {"type": "text", "text": "Done."}},
               {"event_type": "step.stop", "index": n},
               {"event_type": "interaction.completed",
                "interaction": {"id": "v1_ts", "status": "completed", "object": "interaction",
                                "model": "m", "usage": {"total_tokens": 3}}}]
    return events


def test_the_steps_are_shown_in_order_before_the_answer(shell, scripted):
    scripted.script = [{"sse": _stream()}]
    magics_of(shell).base_url = scripted.base_url
    cap = run_cell(shell, "%%gemini -o r\nplan my lesson")
    assert cap.error is None, cap.stderr
    shown = [d.get("text/markdown", "") for d in cap.final]
    assert shown[:5] == SHOWN + ["Done."]
    assert [s["type"] for s in shell.user_ns["r"].steps][:4] == [s[0]["type"] for s in STEPS]


@pytest.mark.parametrize("step, words", [
    ({"type": "tool_search_call", "id": "x", "arguments": {}}, "**Tool search:** *(any tool)*"),
    ({"type": "tool_search_result", "call_id": "x", "result": []}, "**Tools found:** 0"),
    ({"type": "retrieval_result", "call_id": "x", "is_error": True}, "**Retrieval failed.**"),
    ({"type": "retrieval_call", "id": "x", "arguments": {"queries": []}},
     "**Retrieval:** *(no query)*"),
])
def test_empty_and_failed_steps_still_say_what_happened(step, words):
    assert render_step_markdown(step).endswith(words)
