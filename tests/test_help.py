"""`%%gemini?` reads as plain text: usage lines, the options under group headings, examples, the
line magics and the settings, all made from the options table and the magic's own commands, and
nothing of IPython's inspector frame ("Docstring:", "File:") around it: in the terminal pager, in
a kernel's help payload (what JupyterLab and Notebook 7 show) and in the contextual help."""
import re

import pytest

from gemini_magics import magics
from gemini_magics.args import EXAMPLES, parse
from gemini_magics.options import OPTIONS, SETTINGS, groups

from kernel_fixtures import KERNEL_TIMEOUT, Kernel, kernel_env  # noqa: F401
from magics_fixtures import run_cell, shell  # noqa: F401

HEADINGS = ["Model & generation", "Conversation", "Output", "Media & images", "Tools & functions",
            "Background & agents", "Live view", "Rows (a prompt over every row)"]


@pytest.fixture()
def help_text(shell):
    cap = run_cell(shell, "%%gemini?")
    assert cap.error is None
    return cap.stdout.strip("\n")


FRAME = ("Docstring", "File:", "Signature", "\x1b[")


def test_the_help_is_ours_alone_without_the_inspectors_frame(shell, help_text):
    assert not any(word in help_text for word in FRAME)
    for name in ("%%gemini", "%gemini", "gemini"):  # the contextual help (Shift+Tab, Ctrl+I)
        bundle = shell.object_inspect_mime(name)
        assert bundle["text/plain"].strip("\n") == help_text
        assert bundle["text/html"].startswith("<pre>Usage:") and "<h1>" not in bundle["text/html"]
    other = shell.object_inspect_mime("len")  # everything else is the inspector's as before
    assert "Docstring" in re.sub(r"\x1b\[[0-9;]*m", "", other["text/plain"])
    source = run_cell(shell, "%%gemini??").stdout  # ?? still shows the source
    assert "Source:" in source and "self._ask(line, cell)" in source


@pytest.mark.slow
def test_a_kernel_pages_the_help_without_the_frame(kernel_env):
    """What JupyterLab and Notebook 7 show for `%%gemini?`: the execute reply's page payload."""
    kernel = Kernel()
    try:
        kernel.run_ok("%load_ext gemini_magics")
        reply = kernel.kc.execute_interactive("%%gemini?", timeout=KERNEL_TIMEOUT)
        (page,) = [p for p in reply["content"]["payload"] if p["source"] == "page"]
        text = page["data"]["text/plain"]
        assert text.startswith("Usage:\n  %%gemini [options]")
        assert not any(word in text for word in FRAME)
        assert "\nRows (a prompt over every row):\n" in text
    finally:
        kernel.close()


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
