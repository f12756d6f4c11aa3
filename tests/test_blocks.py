"""The block splitter on its own: a growing answer text in, what each output shows out.

No IPython, no clock, no display ids: the text is fed as it would arrive (the whole answer so
far at every tick) and the events are replayed onto a list of outputs the way the notebook
display does. What a user would notice: the saved blocks are the answer exactly as written,
every piece shown while streaming renders on its own (a code piece is a closed fence, a table
piece has its header), and nothing shown while streaming is ever longer than about a block.
"""
import random
import subprocess
import sys
from pathlib import Path

import pytest

from gemini_magics.blocks import MAX_BLOCK, BlockSplitter, Cut, End, Show


class Screen:
    """Outputs as the notebook display keeps them: `Show` and `Cut` write the growing output,
    `End` finishes the block (a cut block becomes one output again: all of it in its first)."""

    def __init__(self):
        self.outputs = []        # [markdown, finished]
        self.growing = None      # index of the growing output
        self.block = []          # indexes of the growing block's pieces
        self.streamed = []       # every Markdown shown while streaming

    def apply(self, events):
        for ev in events:
            if isinstance(ev, (Show, Cut)):
                self.streamed.append(ev.markdown)
                if self.growing is None:
                    self.outputs.append([ev.markdown, False])
                    self.growing = len(self.outputs) - 1
                else:
                    self.outputs[self.growing][0] = ev.markdown
                if isinstance(ev, Cut):
                    self.block.append(self.growing)
                    self.growing = None
            else:
                assert isinstance(ev, End)
                mine = self.block + ([self.growing] if self.growing is not None else [])
                if not mine:
                    self.outputs.append([ev.markdown, True])
                else:
                    assert ev.cut == bool(self.block)
                    self.outputs[mine[0]] = [ev.markdown, True]
                    for i in mine[1:]:
                        self.outputs[i] = ["", True]
                self.growing, self.block = None, []

    @property
    def saved(self):
        assert all(done for _, done in self.outputs)
        return [md for md, _ in self.outputs if md]


def stream(text, chunk, max_block=MAX_BLOCK):
    """Feed `text` `chunk` characters at a time (a tick each), then finish it."""
    splitter, screen = BlockSplitter(max_block), Screen()
    for end in range(chunk, len(text) + chunk, chunk):
        screen.apply(splitter.update(text[:end]))
    screen.apply(splitter.finish(text))
    return screen


def prose(n, seed=0):
    rnd = random.Random(seed)
    words = []
    for i in range(n):
        word = rnd.choice(["alpha", "beta", "gamma", "delta", "a", "the"])
        if rnd.random() < 0.08:
            word += rnd.choice([".", "!", "?", ".\n", ".\n\n"])
        words.append(word)
    return " ".join(words).replace("\n ", "\n")


CODE = ("Code:\n\n```python\n" + "".join(f"value_{i} = {i} * {i}\n" for i in range(300))
        + "```\n\nDone.\n")
TABLE = ("| n | square |\n|---|---|\n" + "".join(f"| {i} | {i * i} |\n" for i in range(200))
         + "\nAfter the table.\n")


@pytest.mark.parametrize("text", [prose(3000), CODE, TABLE, prose(400, seed=1) + CODE + TABLE],
                         ids=["prose", "code", "table", "mixed"])
@pytest.mark.parametrize("chunk", [1, 7, 50, 5000])
def test_the_saved_blocks_are_the_answer_exactly_as_written(text, chunk):
    screen = stream(text, chunk)
    assert "".join(screen.saved) == text


@pytest.mark.parametrize("chunk", [3, 40])
def test_what_is_shown_while_streaming_stays_about_a_block_long(chunk):
    screen = stream(prose(5000, seed=2) + CODE + TABLE, chunk)
    assert max(len(m) for m in screen.streamed) <= MAX_BLOCK + 100


def test_each_streamed_piece_of_a_long_code_block_is_a_closed_fence_of_its_own():
    screen = stream(CODE, 20, max_block=400)
    code_pieces = [m for m in screen.streamed if "value_" in m]
    assert len(code_pieces) > 10
    cuts = [m for m in code_pieces if m.rstrip().endswith("```")]
    assert len(cuts) > 5
    for piece in code_pieces:
        assert piece.startswith("```python\n")
    assert screen.saved[1] == CODE[len("Code:\n\n"):CODE.index("Done.")]


def test_each_streamed_piece_of_a_long_table_repeats_its_header():
    screen = stream(TABLE, 25, max_block=300)
    rows = [m for m in screen.streamed if "| 1" in m or "| 5" in m]
    assert len(rows) > 5
    assert all(m.startswith("| n | square |\n|---|---|\n") for m in rows)


def test_a_finish_before_a_step_closes_an_open_fence_and_reopens_it_after():
    splitter, screen = BlockSplitter(), Screen()
    first = "```python\nx = 1\n"
    screen.apply(splitter.update(first))
    screen.apply(splitter.finish(first, close_fence=True))   # a tool step comes here
    rest = first + "y = 2\n```\n"
    screen.apply(splitter.finish(rest))
    assert screen.saved == ["```python\nx = 1\n```\n", "```python\ny = 2\n```\n"]


def test_backticks_in_an_info_string_are_inline_code_not_a_fence():
    text = "```inline``` is not a fence\n\nso this is a paragraph of its own.\n"
    screen = stream(text, 5)
    assert screen.saved == ["```inline``` is not a fence\n\n",
                            "so this is a paragraph of its own.\n"]


def test_settled_says_whether_text_is_still_open():
    splitter = BlockSplitter()
    assert splitter.settled(0)
    splitter.update("Hello")
    assert not splitter.settled(5)
    splitter.finish("Hello")
    assert splitter.settled(5) and not splitter.settled(6)


def test_the_splitter_needs_no_ipython():
    code = "import sys, gemini_magics.blocks; print('IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"
