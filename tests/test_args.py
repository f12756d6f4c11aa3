"""Option parsing is pure: a line + cell + settings → a Request, or one clear sentence."""
import pytest

from gemini_magics.args import ArgsError, parse, parse_line
from gemini_magics.request import Request
from gemini_magics.conversation import user_step


def test_every_option_reaches_the_request():
    r = parse("-m gemini-x --system 'Be brief.' --temperature 0.3 --max-tokens 10 "
              "--thinking low --show-thoughts --no-stream --new --stateless -o ans", "hi")
    assert (r.model, r.system, r.temperature, r.max_tokens, r.thinking) == \
        ("gemini-x", "Be brief.", 0.3, 10, "low")
    assert (r.show_thoughts, r.stream, r.new, r.stateless, r.out) == (True, False, True, True, "ans")
    assert r.text == "hi"


def test_long_forms_and_defaults_from_settings():
    defaults = {"model": "m-default", "temperature": 1.0, "stream": False, "system": "S",
                "stateless": True, "max_tokens": 5, "thinking": "high", "show_thoughts": True}
    r = parse("--model other --out x", "q", defaults)
    assert r.model == "other" and r.out == "x"
    assert (r.temperature, r.stream, r.system, r.stateless, r.max_tokens, r.thinking,
            r.show_thoughts) == (1.0, False, "S", True, 5, "high", True)
    assert parse("--stream", "q", defaults).stream is True
    assert parse("", "q").model == "gemini-3.5-flash"


def test_body_has_wire_field_names():
    r = parse("--system S --temperature 0.5 --max-tokens 7 --thinking minimal --show-thoughts "
              "--stateless", "hello")
    body = r.body(user_step(["hello"]), previous_interaction_id=None)
    assert body == {
        "model": "gemini-3.5-flash", "input": "hello", "system_instruction": "S",
        "generation_config": {"temperature": 0.5, "max_output_tokens": 7,
                              "thinking_level": "minimal", "thinking_summaries": "auto"},
        "store": False,
    }
    cont = parse("", "again").body(user_step(["again"]), previous_interaction_id="v1_p")
    assert cont == {"model": "gemini-3.5-flash", "input": "again", "previous_interaction_id": "v1_p"}
    hist = [{"type": "user_input", "content": [{"type": "text", "text": "a"}]},
            {"type": "model_output", "content": [{"type": "text", "text": "b"}]}]
    body = parse("--stateless", "c").body(user_step(["c"]), history=hist)
    assert body["input"] == hist + [{"type": "user_input", "content": [{"type": "text", "text": "c"}]}]


@pytest.mark.parametrize("line, words", [
    ("--foo", ["Unknown option --foo", "%%gemini?"]),
    ("-z 3", ["Unknown option -z "]),
    ("--temperature hot", ["--temperature needs a number", "'hot'"]),
    ("--max-tokens 1.5", ["--max-tokens needs a whole number"]),
    ("--temperature", ["--temperature needs a value"]),
    ("--temperature 2.5", ["between 0 and 2"]),
    ("--max-tokens 0", ["positive"]),
    ("--thinking ultra", ["Unknown thinking level 'ultra'", "minimal"]),
    ("-o 2x", ["--out needs a Python variable name"]),
    ("what is this", ["Unexpected text 'what is this'", "cell below"]),
    ("--system 'unclosed", ["unclosed quote"]),
    ("--temprature 0.3", ["Unknown option --temprature", "did you mean --temperature?"]),
    ("--no-stram", ["did you mean --no-stream?"]),
    ("-m ''", ["Model name '' is not valid", "-m gemini-"]),  # not the default model, quietly
])
def test_bad_options_are_one_sentence(line, words):
    with pytest.raises(ArgsError) as info:
        parse(line, "hi")
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith((".", "?"))
    for w in words:
        assert w in msg


@pytest.mark.parametrize("cell", ["", "   ", "\n\n  \t\n"])
def test_empty_cell(cell):
    with pytest.raises(ArgsError, match="The prompt is empty"):
        parse("", cell)


def test_line_prompt_is_verbatim_unless_options_come_first():
    assert parse_line("what's 2+2? \"quoted\"").text == "what's 2+2? \"quoted\""
    r = parse_line("-m small --temperature 0 what is up")
    assert (r.model, r.temperature, r.text) == ("small", 0.0, "what is up")
    with pytest.raises(ArgsError, match="empty"):
        parse_line("-m small")


def test_request_is_plain_data():
    r = Request(text="t", parts=["t"])
    assert r.generation_config() == {}
    assert r.body(user_step(["t"])) == {"model": "gemini-3.5-flash", "input": "t"}
