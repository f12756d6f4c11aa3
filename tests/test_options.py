"""The options table (gemini_magics/options.py): each option declared once, everything derived.

Every test iterates the table, so a new row is covered without a new test: its setting is set
by `%gemini NAME VALUE` and `%config`, its flags are in `%%gemini?` and fill its Request field,
and no setting, flag or field exists that the table does not declare.
"""
import dataclasses
import shlex

import pytest
from traitlets import TraitError

from gemini_magics import options
from gemini_magics.args import _options, parse
from gemini_magics.cell import prepare
from gemini_magics.magics import GeminiMagics
from gemini_magics.options import OPTIONS, REQUEST_DEFAULTS, SETTINGS
from gemini_magics.request import Request

from magics_fixtures import magics_of, run_cell, shell  # noqa: F401

SETTING_ROWS = [o for o in OPTIONS if o.setting]
CELL_FLAGS = [(o, f, name) for o in OPTIONS for f in o.flags for name in f.names]
# Request fields that no option fills: the prompt and what cell.py resolves from the notebook.
PIPELINE_FIELDS = {"text", "parts", "generation_extra", "body_extra", "callables", "schema_obj",
                   "response_format"}


def ok(cap):
    assert cap.error is None, (cap.stdout, cap.stderr)
    return cap


def _typed(o) -> object:
    """The example as the traitlet holds it."""
    return GeminiMagics.class_traits()[o.name].from_string(o.example)


# -- declared once --------------------------------------------------------------------------------

def test_each_name_flag_and_trait_is_declared_once():
    names = [o.name for o in OPTIONS]
    assert len(names) == len(set(names))
    flags = [name for _, _, name in CELL_FLAGS]
    assert len(flags) == len(set(flags))
    assert all(o.setting or o.flags for o in OPTIONS), "a row that is neither setting nor option"
    # The magic's settings traitlets are exactly the table's, as the table describes them.
    traits = GeminiMagics.class_own_traits(config=True)
    assert set(traits) == set(SETTINGS)
    for o in SETTING_ROWS:
        made = o.trait()
        assert type(traits[o.name]) is type(made) and traits[o.name].help == o.setting
        assert traits[o.name].default_value == made.default_value
        assert traits[o.name].allow_none == made.allow_none
    # The parser's options are exactly the table's cell options (and the line magic's words).
    dests = {a.dest for a in _options.parser._actions} - {"help", "words"}
    assert dests == {o.name for o in OPTIONS if o.flags}
    # The Request's fields are the table's request rows and the pipeline's own.
    fields = {f.name for f in dataclasses.fields(Request)}
    assert fields - PIPELINE_FIELDS == {o.name for o in options.request_options()}
    assert not PIPELINE_FIELDS & set(names)
    assert REQUEST_DEFAULTS == tuple(o.name for o in SETTING_ROWS if o.request)


def test_a_request_with_nothing_given_has_the_table_defaults():
    r = parse("", "q")
    for o in options.request_options():
        assert getattr(r, o.name) == getattr(Request(), o.name), o.name


# -- settings -------------------------------------------------------------------------------------

@pytest.mark.parametrize("o", SETTING_ROWS, ids=lambda o: o.name)
def test_every_setting_is_set_by_the_line_magic_and_by_config(shell, o):
    m = magics_of(shell)
    before = getattr(m, o.name)  # the fixture's base_url and retries are not the defaults
    default = m.traits()[o.name].default()
    value = _typed(o)
    assert value != default, f"the example of {o.name} is its default"
    try:
        cap = ok(run_cell(shell, f"%gemini {o.name} {o.example}"))
        assert cap.stdout.strip() == f"{o.name} = {value!r}"
        assert m.settings()[o.name] == value
        cap = ok(run_cell(shell, f"%gemini {o.name}"))
        assert cap.stdout.strip() == f"{o.name} = {value!r}"
        ok(run_cell(shell, f"%gemini {o.name} default"))
        assert m.settings()[o.name] == default
        shell.run_line_magic("config", f"GeminiMagics.{o.name} = {value!r}")
        assert m.settings()[o.name] == value
        assert f"{o.name} = {value!r}" in ok(run_cell(shell, "%gemini settings")).stdout
    finally:
        setattr(m, o.name, before)


@pytest.mark.parametrize("o", [o for o in SETTING_ROWS if o.request], ids=lambda o: o.name)
def test_every_request_setting_fills_its_request_field(shell, o):
    m = magics_of(shell)
    before = getattr(prepare("", "q", m.settings(), {}), o.name)
    m.set_trait(o.name, _typed(o))
    after = getattr(prepare("", "q", m.settings(), {}), o.name)
    assert after != before and o.example.lower() in repr(after).lower()


def test_a_setting_validator_of_the_table_refuses_a_bad_value(shell):
    m = magics_of(shell)
    with pytest.raises(TraitError, match="poll_interval must be at least 0.05 seconds"):
        m.poll_interval = 0.01
    cap = run_cell(shell, "%gemini poll_interval 0.01")
    assert cap.error is not None  # the validator's own sentence, not "a number is needed"
    assert str(cap.error) == ("Cannot set poll_interval to '0.01' (poll_interval must be at "
                              "least 0.05 seconds).")
    assert m.poll_interval == 1.0
    cap = run_cell(shell, "%gemini poll_interval soon")  # not a number at all: what it takes
    assert str(cap.error) == "Cannot set poll_interval to 'soon' (a number is needed)."


# -- cell options ---------------------------------------------------------------------------------

def test_every_cell_flag_is_in_the_help(shell):
    cap = run_cell(shell, "%%gemini?")
    for o, f, name in CELL_FLAGS:
        assert name in cap.stdout, name
        if f.metavar:
            assert f.metavar in cap.stdout, name
        assert f.help.replace("%%", "%").split()[0] in cap.stdout, name


@pytest.mark.parametrize("o, f, name", CELL_FLAGS, ids=[n for _, _, n in CELL_FLAGS])
def test_every_cell_flag_fills_its_request_field(o, f, name):
    baseline = getattr(parse(o.needs, "q"), o.name)
    if f.action in ("store_true", "store_false"):
        r = parse(f"{o.needs} {name}", "q")
        assert getattr(r, o.name) is (f.action == "store_true")
        return
    assert o.example, f"{name} takes a value: give its row an example"
    r = parse(f"{o.needs} {name} {shlex.quote(o.example)}", "q")
    value = getattr(r, o.name)
    assert value != baseline and o.example in str(value), (name, value)
    if o.setting:  # the cell's option wins over the setting
        r = parse(f"{name} {shlex.quote(o.example)}", "q", {o.name: o.default})
        assert getattr(r, o.name) == value
