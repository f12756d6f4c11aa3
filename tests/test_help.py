"""`%%gemini?` reads as plain text: usage lines, the options under group headings, examples, the
line magics and the settings, all made from the options table and the magic's own commands."""
import re

import pytest

from gemini_magics import magics
from gemini_magics.args import EXAMPLES, parse
from gemini_magics.options import OPTIONS, SETTINGS, groups

from magics_fixtures import run_cell, shell  # noqa: F401

HEADINGS = ["Model & generation", "Conversation", "Output", "Media & images", "Tools & functions",
            "Background & agents", "Live view", "Rows (a prompt over every row)"]


@pytest.fixture()
def help_text(shell):
    cap = run_cell(shell, "%%gemini?")
    assert cap.error is None
    text = re.sub(r"\x1b\[[0-9;]*m", "", cap.stdout)  # the inspector colours its own headers
    return text.split("Docstring:", 1)[1].split("\nFile:", 1)[0].strip("\n")


def test_the_help_starts_with_usage_and_has_no_markup(help_text):
    lines = help_text.splitlines()
    assert lines[0] == "Usage:"
    assert lines[1].split()[:2] == ["%%gemini", "[options]"]
    assert lines[2].split()[:3] == ["%gemini", "[options]", "PROMPT"]
    assert "::" not in help_text and "`" not in help_text and "**" not in help_text
    assert max(len(line) for line in lines) <= 90


def test_the_options_are_listed_under_their_group_headings(help_text):
    assert list(groups()) == HEADINGS
    at = [help_text.index(f"\n{h}:\n") for h in HEADINGS]
    assert at == sorted(at)
    ends = at[1:] + [help_text.index("\nExamples:\n")]
    for (heading, rows), start, end in zip(groups().items(), at, ends):
        section = help_text[start:end]
        for o in rows:
            for f in o.flags:
                assert re.search(rf"^  {re.escape(', '.join(f.names))}\b", section, re.M), f.names
                assert f.help.replace("%%", "%").split()[0] in section, f.names
    assert "-m, --model NAME" in help_text and "--image PATH|URL|VAR" in help_text
    assert all(o.group for o in OPTIONS if o.flags)


def test_the_examples_are_cells_that_parse(help_text):
    assert len(EXAMPLES) == 3
    for what, cell in EXAMPLES:
        assert what in help_text and cell.replace("\n", "\n    ") in help_text
        line, prompt = cell.split("\n", 1)
        assert parse(line.removeprefix("%%gemini"), prompt).text == prompt


def test_every_line_command_and_setting_is_in_the_help(help_text):
    section = help_text.split("\nLine magics:\n", 1)[1]
    listed = {c.usage.split()[1] for c in magics.LINE_COMMANDS}
    commands = {c.word for c in magics.LINE_COMMANDS if c.run is not None}
    assert commands <= listed
    for usage in (c.usage for c in magics.LINE_COMMANDS):
        assert f"  {usage} " in section
    settings = section.split("\nSettings", 1)[1]
    assert all(re.search(rf"\b{name}\b", settings) for name in SETTINGS)


def test_gemini_help_prints_the_same_help(shell, help_text):
    cap = run_cell(shell, "%gemini help")
    assert cap.error is None and cap.stdout.strip("\n") == help_text
