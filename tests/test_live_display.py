"""The streaming display keeps the screen moving: cadence, message rate and bounded re-sends.

A NotebookDisplay is driven with a simulated clock (`test_display.stream_through`), so every
"second" here is simulated time; no test measures real time. What a user sees is rebuilt from
the published messages: each display id shows its last data, in the order the ids appeared.
The old scheme (re-send the growing block once it has doubled) fails the cadence tests: a
2,000-word paragraph arriving 20 ms a word left the screen still for 5.4 simulated seconds.
"""
import json
import re

import pytest

from gemini_magics.display import MAX_BLOCK, NotebookDisplay
from gemini_magics.markdown_text import hard_breaks
from gemini_magics.result import GeminiResult
from gemini_magics.stream import Accumulator

from magics_fixtures import magics_of, run_cell, shell, sse_events_for  # noqa: F401
from test_display import Clock, Recorder, answer_outputs, stream_through


def words(n):
    return [f"w{i} " for i in range(1, n)] + [f"w{n}"]


def prose(n):
    """n words of sentences of 12 words, a paragraph break every 10 sentences."""
    out = []
    for i in range(1, n + 1):
        word = "streaming" if i % 3 else "text"
        if i % 12 == 0:
            word += ".\n\n" if i % 120 == 0 else "."
        out.append(word + ("" if word.endswith("\n") else " "))
    return out


def visible_changes(rec):
    """Times at which what the user sees of the answer changed (the footer excluded)."""
    shown, order, times, before = {}, [], [], None
    for o in rec.outputs:
        did = o["transient"]["display_id"]
        if did not in shown:
            order.append(did)
        shown[did] = o["data"].get("text/markdown", "")
        now = re.sub(r"\s+", " ", " ".join(shown[d] for d in order
                                           if not shown[d].startswith("<details>"))).strip()
        if now != before:
            times.append(o["t"])
        before = now
    return times


def streaming_messages(rec):
    return rec.outputs[:rec.streamed]


def busiest_second(messages):
    times, most, j = [o["t"] for o in messages], 0, 0
    for k in range(len(times)):
        while times[k] - times[j] >= 1.0:
            j += 1
        most = max(most, k - j + 1)
    return most


@pytest.mark.parametrize("chunks", [words(2000), prose(2000)], ids=["one paragraph", "prose"])
def test_a_slow_answer_grows_on_screen_every_tick(chunks):
    dt = 0.02  # 50 words a second, the pace of the local model and of many real models
    rec, clock, result = stream_through(chunks, dt=dt)
    last_word = clock.t
    changes = [t for t in visible_changes(rec) if t <= last_word]
    gaps = [b - a for a, b in zip([dt] + changes, changes + [last_word])]
    assert max(gaps) <= 0.25                                # the screen never stands still
    streaming = streaming_messages(rec)
    assert busiest_second(streaming) <= 20                  # <= 20 display messages a second
    # what is re-sent while streaming is short: the growing block only (a block that was cut
    # is sent whole once more, with its text/plain, when it ends)
    resent = [o for o in streaming if "text/plain" not in o["data"]]
    assert max(len(o["data"]["text/markdown"]) for o in resent) <= MAX_BLOCK + 200
    # bytes: the re-sent block (<= MAX_BLOCK) at most 10 times a second, plus the text ~3 times
    assert rec.bytes <= 3.5 * len(result.answer) + 10 * last_word * (MAX_BLOCK + 150)


def test_bytes_grow_linearly_with_the_answer_at_a_steady_pace():
    small, _, short = stream_through(words(600), dt=0.02)
    big, _, long = stream_through(words(2000), dt=0.02)
    # 3.33x the words (3.77x the characters, the numbers get longer) and 3.33x the time
    assert big.bytes <= 3.6 * small.bytes


def test_a_fast_interval_setting_still_sends_at_most_20_messages_a_second():
    rec, clock, _ = stream_through(prose(3000), dt=0.002, interval=0.001)
    assert busiest_second(streaming_messages(rec)) <= 20


def test_a_paragraph_cut_while_it_streamed_is_saved_as_one_output():
    text = "".join(prose(240))  # two paragraphs of ~1,600 characters
    rec, _, result = stream_through(list(text), dt=0.01)
    ids_shown = {o["transient"]["display_id"] for o in rec.outputs}
    outs = answer_outputs(rec)
    kept = [o for o in outs if o["text/markdown"]]
    paragraphs = [p + "\n\n" for p in text.split("\n\n") if p]
    assert len(ids_shown) > 2 * len(paragraphs)  # it streamed in pieces ...
    assert [o["text/plain"] for o in kept] == paragraphs  # ... and is saved as the paragraphs
    assert all(o == {"text/markdown": "", "text/plain": ""} for o in outs if o not in kept)


def test_pieces_end_at_sentences_and_lines_when_they_can():
    text = "".join(prose(600)).replace(". ", ".\n", 3)
    rec, _, _ = stream_through(list(text), dt=0.01)
    # a cut: the growing block's output becomes the finished piece, and at the same moment a
    # new output starts with the rest
    outs = rec.outputs
    pieces = [o["data"]["text/markdown"] for o, after in zip(outs, outs[1:])
              if o["update"] and "text/plain" not in o["data"] and not after["update"]
              and after["t"] == o["t"]]
    assert len(pieces) >= 4  # one or two a paragraph of ~1,100 characters
    assert all(p.rstrip().endswith(".") for p in pieces)


def test_a_long_table_streams_with_its_header_and_is_saved_whole():
    rows = "".join(f"| {i} | item number {i} | {i * i} |\n" for i in range(120))
    text = "Squares:\n\n| n | name | square |\n|---|---|---|\n" + rows + "\nThat is all.\n"
    rec, _, _ = stream_through([text[i:i + 20] for i in range(0, len(text), 20)], dt=0.02)
    streamed = [o["data"]["text/markdown"] for o in rec.outputs
                if "text/plain" not in o["data"] and "item number" in o["data"]["text/markdown"]]
    assert len(streamed) > 10
    assert all(m.startswith("| n | name | square |\n|---|---|---|\n") for m in streamed)
    kept = [o["text/markdown"] for o in answer_outputs(rec) if o["text/markdown"]]
    assert kept == ["Squares:\n\n", "| n | name | square |\n|---|---|---|\n" + rows + "\n",
                    "That is all.\n"]


def test_an_image_in_the_middle_of_a_cut_paragraph_keeps_the_order():
    clock, rec = Clock(), Recorder()
    disp = NotebookDisplay(publish=rec, clock=clock)
    acc = Accumulator()
    first = "".join(prose(150)[:-1]).replace("\n\n", " ")
    events = sse_events_for([first[i:i + 5] for i in range(0, len(first), 5)])
    image = {"event_type": "step.delta", "index": 0,
             "delta": {"type": "image", "mime_type": "image/png", "uri": "https://x.invalid/a.png"}}
    events.insert(len(events) - 2, image)
    events.insert(len(events) - 2, {"event_type": "step.delta", "index": 0,
                                    "delta": {"type": "text", "text": "After the image."}})
    for ev in events:
        clock.t += 0.01
        acc.feed(ev)
        disp.on_update(acc)
    disp.on_done(GeminiResult(answer=acc.answer_text(), steps=acc.step_list(), model="m"))
    kept = [o for o in rec.final if o.get("text/markdown")][:-1]
    assert kept[0]["text/plain"] == first
    assert kept[1]["text/markdown"].startswith("[Generated image]")
    assert kept[2]["text/plain"] == "After the image."


def test_a_rewritten_answer_is_not_also_rejoined():
    # --schema: the answer is rewritten as pretty JSON in place of the streamed blocks
    value = json.dumps({"items": [f"entry number {i}" for i in range(200)]})
    rec, _, _ = stream_through([value[i:i + 7] for i in range(0, len(value), 7)], dt=0.01,
                               structured=True)
    kept = [o["text/markdown"] for o in answer_outputs(rec) if o["text/markdown"]]
    assert len(kept) == 1 and kept[0].startswith("```json\n{\n  \"items\"")
    after_rewrite = rec.outputs[[o["data"].get("text/markdown", "").startswith("```json")
                                 for o in rec.outputs].index(True) + 1:]
    assert all(o["data"]["text/markdown"] in ("",) or o["data"]["text/markdown"].startswith(
        "<details>") for o in after_rewrite)


def test_saved_answers_keep_single_line_breaks(shell):
    m = magics_of(shell)
    m.engine = "echo"
    cap = run_cell(shell, "%%gemini\nRoses are red,\nviolets are blue.")
    assert cap.error is None, cap.error
    answer = cap.final[0]
    assert answer["text/markdown"].endswith("Roses are red,  \nviolets are blue.")
    assert answer["text/plain"].endswith("Roses are red,\nviolets are blue.")
    assert answer["text/markdown"] == hard_breaks(answer["text/plain"])
