"""The streaming display: bounded update rate, bytes linear in the answer, Markdown that
survives saving (finished outputs are text/markdown + text/plain), a folded footer.

Driven with a simulated clock so rates are measured in simulated seconds (no timing in tests).
"""
import io
import json

from gemini_magics.display import MAX_BLOCK, NotebookDisplay, TerminalDisplay
from gemini_magics.result import GeminiResult
from gemini_magics.stream import Accumulator

from magics_fixtures import final_outputs, magics_of, run_cell, scripted, shell, sse_events_for  # noqa: F401


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class Recorder:
    """Records what is published, and when (on `clock`, if given)."""

    def __init__(self, clock=None):
        self.outputs = []
        self.clock = clock

    def __call__(self, data, display_id, update):
        self.outputs.append({"data": dict(data), "transient": {"display_id": display_id},
                             "update": update, "t": self.clock() if self.clock else 0.0})

    @property
    def bytes(self):
        return sum(len(json.dumps(o["data"])) for o in self.outputs)

    @property
    def final(self):
        return final_outputs(self.outputs)


def stream_through(chunks, *, dt=0.001, **kw):
    """Feed text chunks as events (one every `dt` simulated seconds) into a NotebookDisplay."""
    clock = Clock()
    rec = Recorder(clock)
    disp = NotebookDisplay(publish=rec, clock=clock, **kw)
    acc = Accumulator()
    for ev in sse_events_for(chunks):
        clock.t += dt
        acc.feed(ev)
        disp.on_update(acc)
    result = GeminiResult(text=acc.text, answer=acc.answer_text(), steps=acc.step_list(),
                          usage=acc.usage, id=acc.id,
                          status=acc.status, model="gemini-test", elapsed=clock.t)
    rec.streamed = len(rec.outputs)  # what was sent while the answer streamed
    disp.on_done(result)
    return rec, clock, result


def answer_outputs(rec):
    return rec.final[:-1]  # the last output is the footer


def test_long_paragraph_stream_is_bounded_in_rate_and_bytes():
    words = [f"w{i} " for i in range(1, 20001)]
    rec, clock, result = stream_through(words, dt=0.001)
    text = result.answer
    assert len(rec.outputs) <= 20 * clock.t + 5            # ≤ 20 messages per (simulated) second
    assert rec.bytes <= 4 * len(text)                       # linear, not quadratic
    # what a saved notebook keeps: the whole answer, as Markdown + plain text
    outs = answer_outputs(rec)
    assert "".join(o["text/markdown"] for o in outs) == text
    assert all(o["text/plain"] == o["text/markdown"] for o in outs)


def test_bytes_stay_linear_in_the_answer_whatever_the_speed():
    # Fast: few ticks, so bytes are a small multiple of the text. Slow: the growing block (at
    # most ~max_block) is re-sent every tick, so bytes grow with the answer's length (and time),
    # never with its square: 4x the words is about 4x the bytes.
    for dt in (0.0001, 0.01):
        short, _, _ = stream_through([f"w{i} " for i in range(1, 5001)], dt=dt)
        rec, clock, result = stream_through([f"w{i} " for i in range(1, 20001)], dt=dt)
        assert rec.bytes <= 4 * len(result.answer) + (clock.t / 0.1) * 1.5 * MAX_BLOCK
        assert rec.bytes <= 4.6 * short.bytes
        assert len(rec.outputs) <= 20 * clock.t + 25


def test_finished_blocks_are_sent_once_and_only_the_growing_block_again():
    paragraphs = [f"Paragraph {i} " + "word " * 40 + "\n\n" for i in range(30)]
    chunks = [w for p in paragraphs for w in p.split(" ") for w in (w + " ",)]
    rec, clock, result = stream_through(chunks, dt=0.02)
    finals = [o for o in rec.outputs if "text/plain" in o["data"]]
    ids = [o["transient"]["display_id"] for o in finals]
    assert len(ids) == len(set(ids))                       # each final output sent once
    streaming = [o for o in rec.outputs if "text/plain" not in o["data"]]
    for o in streaming:                                     # re-sends hold only the open block
        assert o["data"]["text/markdown"].count("Paragraph") <= 1
    assert "".join(o["text/markdown"] for o in answer_outputs(rec)).rstrip() == result.answer.rstrip()
    assert len(answer_outputs(rec)) > 5


def test_blank_lines_inside_code_fences_do_not_split_blocks():
    text = "Intro\n\n```python\ndef f():\n\n    return 1\n\n\nx = 2\n```\n\nAfter the code.\n"
    rec, _, _ = stream_through(list(text), dt=0.2)
    outs = [o["text/markdown"] for o in answer_outputs(rec)]
    fence = [o for o in outs if "```python" in o]
    assert len(fence) == 1 and "return 1" in fence[0] and "x = 2" in fence[0]
    assert fence[0].rstrip().endswith("```")


def test_an_overlong_code_block_streams_as_valid_fences_and_is_saved_whole():
    code = "".join(f"line_{i} = {i}\n" for i in range(2000))
    text = "```python\n" + code + "```\n\nDone.\n"
    rec, _, result = stream_through([text[i:i + 50] for i in range(0, len(text), 50)],
                                    dt=0.05, max_block=2000)
    # while it streams, the block is cut into pieces, each a fence of its own (closed, reopened)
    last_shown = {}
    for o in rec.outputs:
        if "text/plain" not in o["data"] and "line_" in o["data"]["text/markdown"]:
            last_shown[o["transient"]["display_id"]] = o["data"]["text/markdown"]
    pieces = list(last_shown.values())[:-1]
    assert len(pieces) > 3
    for piece in pieces:
        assert piece.startswith("```python\n") and piece.rstrip().endswith("```")
        assert len(piece) <= 2 * 2000
    # the saved notebook keeps it as one code block, exactly as the model wrote it
    outs = [o["text/markdown"] for o in answer_outputs(rec) if o["text/markdown"]]
    assert outs == ["```python\n" + code + "```\n\n", "Done.\n"]


def test_footer_is_folded_with_model_tokens_time_and_id():
    rec, _, result = stream_through(["Hello ", "world"])
    foot = rec.final[-1]
    md = foot["text/markdown"]
    assert md.startswith("<details><summary>") and md.rstrip().endswith("</details>")
    for fact in ("gemini-test", "7 tokens", "v1_scripted", " s"):
        assert fact in md
    assert "v1_scripted" in foot["text/plain"]
    assert rec.final[0]["text/markdown"] == "Hello world"


def test_thoughts_fold_above_the_answer_when_asked():
    clock, rec = Clock(), Recorder()
    disp = NotebookDisplay(publish=rec, clock=clock, show_thoughts=True)
    acc = Accumulator()
    events = sse_events_for(["The answer."])
    events[2:2] = [
        {"event_type": "step.start", "index": 5, "step": {"type": "thought"}},
        {"event_type": "step.delta", "index": 5,
         "delta": {"type": "thought_summary", "content": {"type": "text", "text": "Let me think."}}},
        {"event_type": "step.stop", "index": 5},
    ]
    for ev in events:
        clock.t += 0.2
        acc.feed(ev)
        disp.on_update(acc)
    disp.on_done(GeminiResult(answer=acc.answer_text(), thoughts=acc.thought_text(), model="m"))
    final = rec.final
    assert final[0]["text/markdown"].startswith("<details><summary>Thoughts</summary>")
    assert "Let me think." in final[0]["text/markdown"]
    assert final[1]["text/markdown"] == "The answer."


def test_terminal_prints_the_stream_as_text():
    out = io.StringIO()
    clock = Clock()
    disp = TerminalDisplay(out, clock=clock)
    acc = Accumulator()
    for ev in sse_events_for(["Hello ", "**world**"]):
        clock.t += 1
        acc.feed(ev)
        disp.on_update(acc)
    disp.on_done(GeminiResult(answer=acc.answer_text(), model="m", id="v1_t", usage={"total_tokens": 3}))
    text = out.getvalue()
    assert text.startswith("Hello **world**\n")
    assert "— m · 3 tokens" in text and "v1_t" in text


def _result(**kw):
    return GeminiResult(answer="w1 w2", model="m", id="v1_x", elapsed=1.0,
                        usage={"total_tokens": 7, "total_output_tokens": 5}, **kw)


def test_an_incomplete_answer_says_why_in_its_footer():
    from gemini_magics.render import footer_markdown, footer_text

    echoed = _result(status="incomplete",
                     interaction_data={"generation_config": {"max_output_tokens": 400}})
    assert "· incomplete: stopped at max tokens (400)</summary>" in footer_markdown(echoed)
    assert "- status: incomplete, stopped at max tokens (400)" in footer_markdown(echoed)
    assert "incomplete: stopped at max tokens (400) · v1_x" in footer_text(echoed)
    # a stream that does not echo its generation_config: the reason without the number
    streamed = _result(status="incomplete")
    assert "· incomplete: stopped at max tokens</summary>" in footer_markdown(streamed)
    # a stop stays a stop, a completed answer names no status
    stopped = _result(status="cancelled", stopped=True)
    assert "1.0 s · stopped</summary>" in footer_markdown(stopped)
    assert "1.0 s</summary>" in footer_markdown(_result(status="completed"))


def test_the_error_sign_is_the_text_warning_sign():
    from gemini_magics.render import outcome_markdown

    sentence = outcome_markdown(_result(error="The model stopped."))
    assert sentence == "\u26a0 The model stopped."  # no VS16: no emoji font needed


def test_a_skipped_unreadable_event_is_noted_in_the_footer(shell, scripted):
    """A data: line that is not JSON is skipped (as the SDKs do); the answer goes on, and the
    footer says one was skipped, in the notebook and in the terminal text."""
    events = sse_events_for(["Hello ", "world"])
    events.insert(4, "{not json")
    scripted.script = [{"sse": events}]
    magics_of(shell).base_url = scripted.base_url
    cap = run_cell(shell, "%%gemini\nhi")
    assert cap.error is None and cap.final[0]["text/markdown"] == "Hello world"
    foot = cap.final[-1]
    assert "1 unreadable event skipped" in foot["text/markdown"]
    assert "1 unreadable event skipped" in foot["text/plain"]


def test_a_code_block_arriving_with_the_paragraph_before_it_is_saved_once():
    # The blank line and the fence that follows it arrive in one chunk: the block after the
    # blank line starts with the fence as written, not with a second copy of it.
    text = "Here is the code:\n\n```python\nx = 1\ny = 2\n```\n\nDone.\n"
    rec, _, _ = stream_through([text[:30], text[30:]], dt=0.2)
    kept = [o["text/plain"] for o in answer_outputs(rec) if o["text/plain"]]
    assert kept == ["Here is the code:\n\n", "```python\nx = 1\ny = 2\n```\n\n", "Done.\n"]


def test_a_stopped_answer_says_so_before_its_footer_as_every_driver_does():
    from gemini_magics.render import ending

    clock, rec = Clock(), Recorder()
    disp = NotebookDisplay(publish=rec, clock=clock)
    acc = Accumulator()
    for ev in sse_events_for(["w1 ", "w2 "], complete=False):
        clock.t += 0.2
        acc.feed(ev)
        disp.on_update(acc)
    stopped = GeminiResult(answer=acc.answer_text(), steps=acc.step_list(), model="m",
                           stopped=True, status="cancelled", notes=["A note."])
    disp.on_done(stopped)
    after = rec.final[1:]
    assert after == ending(stopped)  # the stop sentence, the note, the footer: --ui's order
    assert after[0]["text/plain"].startswith("■ Stopped: the partial answer is kept")
    assert after[1] == {"text/markdown": "*A note.*", "text/plain": "A note."}
    assert after[-1]["text/markdown"].startswith("<details>")
    # an error is not written: a plain cell raises it as its error instead
    failed = GeminiResult(answer="", model="m", error="It broke.")
    rec.outputs.clear()
    NotebookDisplay(publish=rec, clock=clock).on_done(failed)
    assert [o["text/plain"] for o in rec.final][:-1] == []
