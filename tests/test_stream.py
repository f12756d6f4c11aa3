"""The accumulator and the fast SSE path: the same interaction whatever the event source.

The fast path (raw SSE read from the SDK's HTTP response) is checked against the plain SDK
iterator in tests/test_stream_sdk.py (which CI also runs on the oldest google-genai allowed).
"""
import copy

import pytest

from gemini_magics.stream import Accumulator, StreamProtocolError, iter_sse_events, output_text

from magics_fixtures import sse_events_for

RICH = [
    {"event_type": "interaction.created", "event_id": "e1",
     "interaction": {"id": "v1_r", "status": "in_progress", "object": "interaction", "model": "m",
                     "created": "2026-01-01T00:00:00Z"}},
    {"event_type": "interaction.status_update", "interaction_id": "v1_r", "status": "in_progress"},
    {"event_type": "step.start", "index": 0, "step": {"type": "thought"}},
    {"event_type": "step.delta", "index": 0, "delta": {"type": "thought_signature", "signature": "c2ln"}},
    {"event_type": "step.delta", "index": 0,
     "delta": {"type": "thought_summary", "content": {"type": "text", "text": "Thinking "}}},
    {"event_type": "step.delta", "index": 0,
     "delta": {"type": "thought_summary", "content": {"type": "text", "text": "hard."}}},
    {"event_type": "step.stop", "index": 0},
    {"event_type": "step.start", "index": 1, "step": {"type": "model_output"}},
    {"event_type": "step.delta", "index": 1, "delta": {"type": "text", "text": "Hello "}},
    {"event_type": "step.delta", "index": 1, "delta": {"type": "text", "text": "world"}},
    {"event_type": "step.delta", "index": 1, "delta": {"type": "text_annotation_delta", "annotations": [
        {"type": "url_citation", "url": "https://x.org", "title": "X", "start_index": 0, "end_index": 5}]}},
    {"event_type": "step.delta", "index": 1, "delta": {"type": "image", "data": "aGVsbG8=", "mime_type": "image/png"}},
    {"event_type": "step.delta", "index": 1, "delta": {"type": "text", "text": " after image"}},
    {"event_type": "step.stop", "index": 1},
    {"event_type": "step.start", "index": 2,
     "step": {"type": "function_call", "id": "c1", "name": "f", "arguments": {}}},
    {"event_type": "step.delta", "index": 2, "delta": {"type": "arguments_delta", "arguments": "{\"a\": "}},
    {"event_type": "step.delta", "index": 2, "delta": {"type": "arguments_delta", "arguments": "1}"}},
    {"event_type": "step.stop", "index": 2},
    {"event_type": "step.start", "index": 3, "step": {"type": "code_execution_call", "id": "x1",
                                                      "arguments": {"code": "", "language": "python"}}},
    {"event_type": "step.delta", "index": 3, "delta": {"type": "code_execution_call",
                                                       "arguments": {"code": "print(1)", "language": "python"}}},
    {"event_type": "step.stop", "index": 3},
    {"event_type": "interaction.completed",
     "interaction": {"id": "v1_r", "status": "requires_action", "object": "interaction", "model": "m",
                     "usage": {"total_tokens": 9, "total_input_tokens": 3}}},
]

RICH_INTERACTION = {
    "id": "v1_r", "status": "requires_action", "object": "interaction", "model": "m",
    "created": "2026-01-01T00:00:00Z",
    "steps": [
        {"type": "thought", "signature": "c2ln", "summary": [{"type": "text", "text": "Thinking hard."}]},
        {"type": "model_output", "content": [
            {"type": "text", "text": "Hello world", "annotations": [
                {"type": "url_citation", "url": "https://x.org", "title": "X", "start_index": 0, "end_index": 5}]},
            {"type": "image", "data": "aGVsbG8=", "mime_type": "image/png"},
            {"type": "text", "text": " after image"}]},
        {"type": "function_call", "id": "c1", "name": "f", "arguments": {"a": 1}},
        {"type": "code_execution_call", "id": "x1", "arguments": {"code": "print(1)", "language": "python"}},
    ],
    "usage": {"total_tokens": 9, "total_input_tokens": 3},
}


def feed_all(events):
    acc = Accumulator()
    for e in copy.deepcopy(events):
        acc.feed(e)
    return acc


def test_events_build_the_interaction():
    acc = feed_all(RICH)
    assert acc.done and acc.status == "requires_action"
    assert acc.interaction_dict() == RICH_INTERACTION
    assert acc.answer_text() == "Hello world after image"
    assert acc.text == " after image"  # the SDK's output_text: trailing run of text
    assert acc.thought_text() == "Thinking hard."


def test_a_finished_interaction_replays_to_the_same_thing():
    acc = Accumulator.from_interaction(copy.deepcopy(RICH_INTERACTION))
    assert acc.interaction_dict() == RICH_INTERACTION
    assert acc.done


def test_many_small_deltas_make_one_text_item():
    events = sse_events_for([f"w{i} " for i in range(5000)])
    acc = feed_all(events)
    steps = acc.interaction_dict()["steps"]
    assert len(steps) == 1 and len(steps[0]["content"]) == 1
    assert steps[0]["content"][0]["text"] == "".join(f"w{i} " for i in range(5000))


def test_output_text_rule_matches_the_sdk_example():
    def mo(t):
        return {"type": "model_output", "content": [{"type": "text", "text": t}]}
    steps = [{"type": "user_input", "content": []}, mo("A1"),
             {"type": "function_call", "id": "1", "name": "f", "arguments": {}},
             {"type": "function_result", "call_id": "1", "result": "r"}, mo("A2"),
             {"type": "thought"}, mo("A3")]
    assert output_text(steps) == "A2A3"


def test_error_event_and_missing_completion():
    acc = feed_all(sse_events_for(["partial"], complete=False)
                   + [{"event_type": "error", "error": {"code": "overloaded", "message": "busy"}}])
    assert acc.done and acc.error == {"code": "overloaded", "message": "busy"}
    acc = feed_all(sse_events_for(["partial"], complete=False))
    assert not acc.done and acc.answer_text() == "partial"


def test_sse_framing():
    lines = [": comment", "event: ignored-name", 'data: {"event_type": "step.stop",',
             'data:  "index": 0}', "", "id: 7", "retry: 10", "",
             'data: {"event_type": "step.stop", "index": 1}', "", "data: [DONE]", "",
             'data: {"event_type": "step.stop", "index": 2}', ""]
    assert [e["index"] for e in iter_sse_events(lines)] == [0, 1]
    # a last event without its blank line still counts
    assert list(iter_sse_events(['data: {"event_type": "step.stop", "index": 5}'])) == [
        {"event_type": "step.stop", "index": 5}]
    # JSON without event_type is an error event, as in the SDK
    assert list(iter_sse_events(['data: {"error": {"message": "x"}}', ""]))[0]["event_type"] == "error"


def test_a_data_line_that_is_not_json_is_skipped_as_the_sdks_do():
    lines = ['data: {"event_type": "step.stop", "index": 0}', "",
             "data: {half an event", "", 'data: {"event_type": "step.stop", "index": 1}', ""]
    events = list(iter_sse_events(lines))
    assert [e["event_type"] for e in events] == ["step.stop", "unreadable", "step.stop"]
    acc = Accumulator()
    for event in events:
        acc.feed(event)
    assert acc.unreadable == "{half an event" and acc.error is None


def test_thought_summaries_sent_in_step_start_are_thoughts():
    acc = Accumulator()
    acc.feed({"event_type": "step.start", "index": 0,
              "step": {"type": "thought", "summary": [{"type": "text", "text": "Weighing it."}]}})
    acc.feed({"event_type": "step.delta", "index": 0,
              "delta": {"type": "thought_summary", "content": {"type": "text", "text": " Done."}}})
    assert acc.thought_text() == "Weighing it. Done."


@pytest.mark.parametrize("lines, words", [
    (['data: {"event_type": "step.delta", "index": 0}', ""], "'delta'"),
    (['data: {"event_type": "interaction.created"}', ""], "'interaction'"),
    (["data: [1, 2]", ""], "not a JSON object"),
])
def test_sse_protocol_errors_are_one_sentence(lines, words):
    with pytest.raises(StreamProtocolError) as info:
        list(iter_sse_events(lines))
    assert words in str(info.value) and "\n" not in str(info.value)


def test_text_sent_in_step_start_goes_on_with_its_deltas():
    acc = Accumulator()
    acc.feed({"event_type": "step.start", "index": 0,
              "step": {"type": "model_output", "content": [{"type": "text", "text": "Hello "}]}})
    acc.feed({"event_type": "step.delta", "index": 0, "delta": {"type": "text", "text": "world"}})
    acc.feed({"event_type": "step.delta", "index": 0, "delta": {"type": "text_annotation_delta",
              "annotations": [{"type": "url_citation", "url": "https://x.org", "end_index": 11}]}})
    acc.feed({"event_type": "step.stop", "index": 0, "usage": {"total_tokens": 4}})
    # one text item, so the citation covers the whole text (render numbers it)
    assert acc.step_list() == [{"type": "model_output", "content": [
        {"type": "text", "text": "Hello world",
         "annotations": [{"type": "url_citation", "url": "https://x.org", "end_index": 11}]}]}]
    assert acc.answer_text() == "Hello world" and acc.usage == {"total_tokens": 4}


def test_a_listed_user_input_step_is_not_part_of_the_answer():
    acc = Accumulator.from_interaction({
        "id": "v1_u", "status": "completed", "model": "m", "steps": [
            {"type": "user_input", "content": [{"type": "text", "text": "my prompt"}]},
            {"type": "model_output", "content": [{"type": "text", "text": "the answer"}]}]})
    acc.add_step({"type": "function_result", "call_id": "c", "result": "r"})
    assert [s["type"] for s in acc.step_list()] == ["model_output", "function_result"]
    assert acc.answer_text() == acc.text == "the answer"


def test_unreadable_events_are_counted():
    lines = ["data: {half", "", "data: {other half", "",
             'data: {"event_type": "step.stop", "index": 0}', ""]
    acc = Accumulator()
    for event in iter_sse_events(lines):
        acc.feed(event)
    assert acc.skipped == 2 and acc.unreadable == "{half"
