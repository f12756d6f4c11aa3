"""Brace-safe interpolation: references expand, everything else in braces stays as typed."""
import pytest

from gemini_magics.prompt import PromptError, interpolate, interpolate_parts


class Obj:
    attr = "A"

    class inner:
        deep = "D"


NS = {
    "x": 42, "name": "Ada", "obj": Obj(), "d": {"k": [10, 20], "s": {"t": "T"}},
    "In": ["", "a = 1", "print(a)"], "Out": {2: "two"}, "lst": [1, 2, 3],
}


@pytest.mark.parametrize("text, expected", [
    ("{x}", "42"),
    ("Hi {name}!", "Hi Ada!"),
    ("{obj.attr}", "A"),
    ("{obj.inner.deep}", "D"),
    ("{In[2]}", "print(a)"),
    ("{Out[2]}", "two"),
    ("{lst[-1]}", "3"),
    ('{d["k"][1]}', "20"),
    ("{d['s']['t']}", "T"),
    ("{{x}}", "{x}"),
    ("{{{x}}}", "{42}"),
    ("{{literal}} and {x}", "{literal} and 42"),
])
def test_references_expand(text, expected):
    assert interpolate(text, NS) == expected


@pytest.mark.parametrize("text", [
    '{"k": 1}',
    '{"a": {"b": 1}}',                 # nested JSON keeps its closing braces
    "{a, b}",                           # set literal
    "{1, 2, 3}",
    "{}",
    "{ x }",                            # spaces: not a reference
    "def f():\n    return {k: v for k, v in d.items()}",
    'print(f"{x:>3}")',                 # format spec: not a reference
    "x}}",                              # unpaired escapes stay
    "{{y",
    "function f() { return 1; }",
    "{x + 1}",
    "a {", "} b",
])
def test_other_braces_stay_as_typed(text):
    assert interpolate(text, NS) == text


def test_json_block_with_reference_inside():
    text = 'Fill this: {"user": "{name}", "age": 36}'
    assert interpolate(text, NS) == 'Fill this: {"user": "Ada", "age": 36}'


@pytest.mark.parametrize("text, words", [
    ("{missing}", ["'missing'", "{{missing}}"]),
    ("{obj.nope}", ["obj has no 'nope'", "{{obj.nope}}"]),
    ("{Out[7]}", ["cell 7 has no output", "{{Out[7]}}"]),
    ("{In[99]}", ["no input cell 99", "{{In[99]}}"]),
    ("{lst[10]}", ["lst has no '[10]'"]),
])
def test_missing_reference_is_one_clear_sentence(text, words):
    with pytest.raises(PromptError) as info:
        interpolate(text, NS)
    msg = str(info.value)
    assert msg.count("\n") == 0 and msg.endswith(".")
    for w in words:
        assert w in msg


def test_values_can_be_kept_as_separate_parts():
    marker = object()
    prompt = interpolate_parts("before {m} after {x}", {"m": marker, "x": 1},
                               keep=lambda v: v is marker)
    assert prompt.parts == ["before ", marker, " after 1"]
    assert prompt.objects == [marker]


def test_unicode_identifiers():
    assert interpolate("數量: {數量}", {"數量": 3}) == "數量: 3"


def test_non_string_values_use_str():
    assert interpolate("{lst}", NS) == "[1, 2, 3]"


class _Touchy:
    @property
    def total(self):
        raise ValueError("the table is empty")

    def __getitem__(self, key):
        raise RuntimeError("no rows\nat all")

    def __str__(self):
        raise OSError("cannot render")


@pytest.mark.parametrize("ref, words", [
    ("{t.total}", "reading t.total raised ValueError: the table is empty"),
    ("{t[0]}", "reading t[0] raised RuntimeError: no rows at all"),
    ("{t}", "turning it into text raised OSError: cannot render"),
])
def test_an_exception_in_the_users_own_code_is_one_sentence(ref, words):
    with pytest.raises(PromptError) as err:
        interpolate(f"Sum {ref} please", {"t": _Touchy()})
    message = str(err.value)
    assert words in message and "\n" not in message
    assert message.endswith("to keep the braces as text.")
