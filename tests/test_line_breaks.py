"""Hard line breaks: an answer's single line breaks stay line breaks in saved Markdown.

`markdown_text.hard_breaks` ends a line of paragraph text with two spaces when another line of the
same paragraph follows; everything whose line structure already means something (code, tables,
lists, headings, block quotes, HTML, math) renders as before. Checked on the text, and with
nbconvert's own Markdown renderer (mistune): the HTML gains `<br />`s and nothing else.
"""
import re

import pytest

from gemini_magics.markdown_text import hard_breaks
from gemini_magics.render import Style, pieces
from gemini_magics.result import GeminiResult

POEM = "Roses are red,\nviolets are blue,\nsugar is sweet,\nand so are you."


def test_a_poem_keeps_its_lines():
    assert hard_breaks(POEM) == ("Roses are red,  \nviolets are blue,  \nsugar is sweet,  \n"
                                 "and so are you.")


def test_stanzas_and_the_last_line_of_each_get_no_marker():
    text = POEM + "\n\n" + POEM + "\n"
    out = hard_breaks(text)
    assert out.count("  \n") == 6
    assert "you.\n\nRoses" in out and out.endswith("you.\n")


def test_text_without_line_breaks_is_returned_as_is():
    for text in ("", "one line", "one line\n", "a\n\nb"):
        assert hard_breaks(text) == text


def test_lists_keep_their_items_and_break_inside_an_item():
    text = "Steps:\n- first\n- second\n  still the second\n  - nested\n1. one\n2) two"
    assert hard_breaks(text) == ("Steps:\n- first\n- second  \n  still the second\n  - nested\n"
                                 "1. one\n2) two")


def test_tables_are_untouched():
    table = "| a | b |\n|---|:-:|\n| 1 | 2 |\nno pipe row\n\nAfter\nthe table"
    assert hard_breaks(table) == table.replace("After\n", "After  \n")
    assert hard_breaks("a | b\n--|--\n1 | 2") == "a | b\n--|--\n1 | 2"


@pytest.mark.parametrize("fence", ["```", "~~~", "````"])
def test_fenced_code_is_untouched(fence):
    code = f"Look:\n{fence}python\nx = 1\ny = 2\n{fence}\nafter\nmore"
    assert hard_breaks(code) == code.replace("after\n", "after  \n")


def test_a_fence_closes_only_with_its_own_marker_and_an_unclosed_one_runs_to_the_end():
    text = "````\n```\nstill code\n````\nout\nside"
    assert hard_breaks(text) == text.replace("out\n", "out  \n")
    unclosed = "```\ncode\nmore code"
    assert hard_breaks(unclosed) == unclosed
    inline = "```inline``` code\nnext"  # backticks in the info string: not a fence
    assert hard_breaks(inline) == "```inline``` code  \nnext"


def test_indented_code_is_untouched_but_an_indented_continuation_breaks():
    code = "Code:\n\n    x = 1\n    y = 2\n\n\ty = 3\n\tz = 4\n"
    assert hard_breaks(code) == code
    assert hard_breaks("text\n    more") == "text  \n    more"


def test_a_line_already_ending_in_a_hard_break_is_kept():
    assert hard_breaks("two  \nspaces") == "two  \nspaces"
    assert hard_breaks("three   \nspaces") == "three   \nspaces"
    assert hard_breaks("one \nspace") == "one  \nspace"
    assert hard_breaks("back\\\nslash") == "back\\\nslash"
    assert hard_breaks("escaped\\\\\nbackslash") == "escaped\\\\  \nbackslash"


def test_crlf_and_cr_line_ends_are_kept():
    assert hard_breaks("a\r\nb\r\nc\r\n") == "a  \r\nb  \r\nc\r\n"
    assert hard_breaks("a\rb") == "a  \rb"
    assert hard_breaks("```\r\nx\r\ny\r\n```\r\n") == "```\r\nx\r\ny\r\n```\r\n"


def test_headings_rules_and_setext_underlines_are_untouched():
    text = "# Title\ntext\nmore\n\nSub\n---\nx\n***\ny\n\nBig\n===\nz"
    assert hard_breaks(text) == text.replace("text\n", "text  \n")


def test_block_quotes_break_inside_and_lazy_lines_do_not():
    assert hard_breaks("> one\n> two\nlazy") == "> one  \n> two\nlazy"
    assert hard_breaks("> > deep\n> > er\n> shallow") == "> > deep  \n> > er\n> shallow"
    quoted_code = "> ```\n> a\n> b\n> ```"
    assert hard_breaks(quoted_code) == quoted_code


def test_html_blocks_and_math_are_untouched():
    html = "<details>\n<summary>More</summary>\nhidden\ntext\n</details>\n\nafter\nit"
    assert hard_breaks(html) == html.replace("after\n", "after  \n")
    comment = "<!--\na\n\nb\n-->\nc\nd"
    assert hard_breaks(comment) == comment.replace("c\n", "c  \n")
    pre = "<pre>\nx\n\ny\n</pre>\np\nq"
    assert hard_breaks(pre) == pre.replace("p\n", "p  \n")
    math = "$$\na = b\nc = d\n$$\n\\begin{align}\nx &= y \\\\\n\\end{align}\ntext\nmore"
    assert hard_breaks(math) == math.replace("text\n", "text  \n")


def _html(markdown: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return markdown2html_mistune(markdown)


def test_nbconvert_renders_the_breaks_and_nothing_else_changes():
    assert _html(hard_breaks(POEM)).count("<br />") == 3
    documents = [
        "Intro\n- a\n- b\n  c\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\n# H\ntext\nmore",
        "```\ncode\nlines\n```\n\n    indented\n    code\n\n> q\n> r",
        "<div>\n*a*\nb\n</div>\n\nSetext\n---\n1. one\n2. two\n\nend\\\nhere",
    ]
    for doc in documents:
        before, after = _html(doc), _html(hard_breaks(doc))

        def norm(html):
            return re.sub(r"\s+", " ", html.replace("<br />", " ")).strip()

        assert norm(after) == norm(before)
        assert after.count("<br />") >= before.count("<br />")


def test_render_pieces_keep_line_breaks_in_markdown_and_the_text_in_plain():
    result = GeminiResult(answer=POEM, model="m", steps=[
        {"type": "model_output", "content": [{"type": "text", "text": POEM}]}])
    answer = pieces(result, Style())[0]
    assert answer == {"text/markdown": hard_breaks(POEM), "text/plain": POEM}
