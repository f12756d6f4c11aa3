"""One rule for code fences (`markdown_text`), read the same way by everything that shows or
parses an answer: the streaming blocks, the live view's tail, `--schema` answers and the
line-break rule. Each test is a place where the copies used to disagree.
"""
import pytest
from pydantic import BaseModel

from gemini_magics import live
from gemini_magics.markdown_text import hard_breaks, open_fence
from gemini_magics.schema import parse_structured


class Book(BaseModel):
    title: str
    year: int


def test_the_live_view_reopens_the_fence_that_is_really_open():
    # A line like ```inline``` is inline code (backticks in the info string), not a fence: the
    # python block below it is what is open where the live view cuts the text.
    text = ("```inline``` quotes are for short code.\n\n```python\n"
            + "".join(f"x_{i} = {i}\n" for i in range(2000)))
    shown = live.live_markdown(text, limit=3000)
    hidden_note, rest = shown.split("*\n\n", 1)
    assert rest.startswith("```python\nx_")


@pytest.mark.parametrize("fence", ["```json", "~~~json", "````json", "```"])
def test_a_schema_answer_in_any_code_fence_is_parsed(fence):
    closer = fence.rstrip("json")
    answer = f'{fence}\n{{"title": "Dune", "year": 1965}}\n{closer}\n'
    assert parse_structured(answer, Book) == Book(title="Dune", year=1965)


def test_a_schema_answer_with_its_closing_fence_on_the_last_line_is_parsed():
    assert parse_structured('```json\n{"title": "Dune", "year": 1965}```', Book).year == 1965


def test_hard_breaks_and_the_fence_rule_agree_on_what_is_code():
    text = "````\n```\nstill code\n````\nout\nside"
    assert open_fence(text.split("out")[0]) is None
    assert hard_breaks(text) == text.replace("out\n", "out  \n")
    assert open_fence("````\n```\nstill code\n") == "````"
