"""`%%gemini` options: the magic_arguments decorator and PURE parsing into a Request.

The options themselves (flags, help, defaults, settings, checks) are rows of the table in
options.py. The decorator `cell_arguments` is applied both to the magic (so `%%gemini?` prints
the help, with the magic's line commands) and to a stand-in whose parser `parse()` uses; nothing
here touches IPython state, the network or the SDK, so every option can be tested as plain data.
"""
from __future__ import annotations

import argparse
import difflib
import re
import shlex
import textwrap
from dataclasses import replace
from typing import Any, Mapping, Optional

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, kwds, magic_arguments

from . import options
from .request import Request

__all__ = [
    "ArgsError", "cell_arguments", "help_description", "help_epilog", "EXAMPLES",
    "parse", "parse_line", "parse_options", "with_parts",
]


class ArgsError(ValueError):
    """Bad options or an empty prompt; the message is one sentence saying how to fix it."""


# -- the help `%%gemini?` prints (and `%gemini help`) ----------------------------------------------
# Plain text: it is shown in a pager, so no Markdown or reST markup.

HELP_WIDTH = 90

_USAGE = """\
Usage:
  %%gemini [options]          the prompt is the cell below this line
  %gemini [options] PROMPT    a one-line prompt
  %gemini COMMAND             one of the line magics listed at the end"""

_ABOUT = ("Sends the prompt to Gemini (the Interactions API) and streams the answer in as "
          "Markdown, which the saved notebook keeps. Each cell continues the conversation; "
          "re-running a cell replaces its turn. {name}, {obj.attr}, {In[3]} and {Out[2]} in the "
          "prompt are filled in from your variables ({{ and }} keep braces). The result goes to "
          "_gemini and to -o VAR. Without GEMINI_API_KEY the answers come from a small local "
          "offline model.")

# (what it shows, the cell as typed)
EXAMPLES = (
    ("A question; the answer streams in and continues the conversation:",
     "%%gemini\nExplain how AI works in a few words"),
    ("Let the model call get_weather, a function of the notebook; the result goes to r:",
     "%%gemini --functions get_weather -o r\nShould I take an umbrella in Paris today?"),
    ("Draw a wide picture with an image model and save it in images/:",
     "%%gemini -m gemini-3.1-flash-image --aspect 16:9 --save images/\n"
     "A lighthouse at dawn, in watercolour"),
)

def _rows(rows: tuple, indent: int = 2) -> str:
    """Two columns, the second wrapped under itself."""
    left = max((len(a) for a, _ in rows), default=0) + indent + 2
    return "\n".join(textwrap.fill(b, HELP_WIDTH, subsequent_indent=" " * left,
                                   initial_indent=(" " * indent + a).ljust(left))
                     for a, b in rows)


def help_description() -> str:
    """What `%%gemini?` shows above the options: the usage lines and what the magic does."""
    return _USAGE + "\n\n" + textwrap.fill(_ABOUT, HELP_WIDTH)


def help_epilog(line_magics: tuple) -> str:
    """What `%%gemini?` shows below the options: examples, the line magics ((usage, what it
    does) rows: the magic's command table), the settings."""
    examples = "\n\n".join(f"  {what}\n" + textwrap.indent(cell, "    ")
                           for what, cell in EXAMPLES)
    settings = textwrap.fill(", ".join(options.SETTINGS), HELP_WIDTH, initial_indent="  ",
                             subsequent_indent="  ")
    return (f"Examples:\n{examples}\n\nLine magics:\n{_rows(line_magics)}\n\n"
            f"Settings (%gemini NAME VALUE, or %config GeminiMagics.NAME = VALUE):\n{settings}")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help as plain text: "-m, --model NAME", a fixed width, no usage block (the
    description has its own usage lines)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=HELP_WIDTH, max_help_position=30)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        names = ", ".join(action.option_strings)
        if action.nargs == 0:
            return names
        return f"{names} {self._format_args(action, action.dest.upper())}"


def cell_arguments(line_magics: tuple = ()) -> Any:
    """A decorator attaching the `%%gemini` options to a function (IPython magic_arguments
    decorators): the help text around them (with `line_magics`, (usage, what it does) rows),
    the line magic's prompt words, then every cell option of the table under its group
    heading. IPython makes the help (`%%gemini?`, `func.__doc__`) from these."""
    decorators = [
        magic_arguments(),
        kwds(description=help_description(), epilog=help_epilog(line_magics),
             usage=argparse.SUPPRESS, formatter_class=_HelpFormatter),
        argument("words", nargs="*", help=argparse.SUPPRESS),  # the prompt of %gemini PROMPT
        *options.arguments(),
    ]

    def decorate(func: Any) -> Any:
        for deco in reversed(decorators):
            func = deco(func)
        return func
    return decorate


@cell_arguments()
def _options(line, cell=None):
    """%%gemini [options]: the stand-in whose parser `parse()` uses (no help is shown)."""


_ARG_RE = re.compile(r"argument (\S+?)(?:/\S+)?: (.*)")


def _explain_usage(msg: str) -> str:
    m = re.match(r"unrecognized arguments: (.*)", msg)
    if m:
        close = _closest_flag(m.group(1))
        if close:
            return f"Unknown option {m.group(1)} for %%gemini; did you mean {close}?"
        return (f"Unknown option {m.group(1)} for %%gemini; run %%gemini? to see the options "
                f"(the prompt goes in the cell below the %%gemini line).")
    m = _ARG_RE.match(msg)
    if m:
        opt, why = m.groups()
        if "expected one argument" in why:
            return f"Option {opt} needs a value, e.g. {opt} VALUE."
        v = re.search(r"invalid (\w+) value: (.*)", why)
        if v:
            kind = "a number" if v.group(1) == "float" else "a whole number"
            return f"Option {opt} needs {kind}, not {v.group(2)}."
        return f"Option {opt}: {why}."
    if "No closing quotation" in msg:
        return "The %%gemini line has an unclosed quote; close it or drop the quote."
    return f"Bad %%gemini options ({msg}); run %%gemini? to see the options."


def _closest_flag(given: str) -> str:
    """The flag closest to the first unknown one in `given` (a typo: --temprature), or ""."""
    flag = next((w for w in given.split() if w.startswith("--")), "")
    known = [n for o in options.OPTIONS for f in o.flags for n in f.names if n.startswith("--")]
    close = difflib.get_close_matches(flag.split("=", 1)[0], known, n=1, cutoff=0.75)
    return close[0] if close else ""


def parse_options(line: str, prompt_words: bool = False) -> Any:
    """The argparse namespace for a magic line; ArgsError with one sentence on bad input.
    `prompt_words`: the line's words are a prompt (`%gemini --code write a parser`)."""
    try:
        # POSIX shell quoting, so --system "Be brief." arrives without its quotes.
        words = _code_language(shlex.split(line), prompt_words)
        return _options.parser.parse_args(words)
    except (UsageError, ValueError) as exc:  # argparse's, and shlex's unclosed quotes
        raise ArgsError(_explain_usage(str(exc))) from None


# `--code LANG` in a one-line prompt: a word after --code is its language only if it is one of
# these (`%gemini --code sort a list` asks for Python); on a %%gemini line any word is.
_LANGUAGES = frozenset((
    "python", "py", "sql", "bash", "sh", "shell", "r", "julia", "javascript", "js",
    "typescript", "ts", "java", "c", "cpp", "c++", "csharp", "go", "rust", "html", "css",
    "json", "yaml", "toml", "latex", "markdown", "regex", "scala", "kotlin", "swift", "ruby",
    "php", "perl", "lua", "haskell", "matlab", "powershell", "dockerfile", "makefile",
))


def _code_language(words: list, prompt_words: bool) -> list:
    """`--code` takes an optional language: give argparse `python` when none follows."""
    out = list(words)
    for i, w in enumerate(out):
        if w != "--code":
            continue
        nxt = out[i + 1] if i + 1 < len(out) else None
        is_lang = nxt is not None and not nxt.startswith("-") and (
            not prompt_words or nxt.lower() in _LANGUAGES)
        if not is_lang:
            out.insert(i + 1, "python")
    return out


def _merge(opts: Any, settings: Mapping[str, Any]) -> dict:
    """The Request's option fields: each cell option given wins, else its setting, else its
    default (options.Option.value)."""
    return {o.name: o.value(getattr(opts, o.name, None), settings)
            for o in options.request_options()}


def _validate(values: dict, functions_given: bool = False) -> None:
    """Each option's own check (options.Option.check, which may normalise the value), then the
    combinations that cannot work."""
    for o in options.request_options():
        if o.check is not None:
            try:
                values[o.name] = o.check(values[o.name])
            except ValueError as exc:
                raise ArgsError(str(exc)) from None
    _validate_combinations(values, functions_given)


def _check_companion(values: dict, opts: Any) -> None:
    """--context, --code, --confirm and fix (issue #20): their values, normalised, and the
    options they cannot go with (the answer's code needs the cell to wait for it)."""
    context = values["context"]
    if isinstance(context, str) and context.strip().lower() in ("", "none", "off"):
        context = None
    elif context is not None:
        word = str(context).strip().lower()
        if word != "all" and not (word.isdigit() and int(word) > 0):
            raise ArgsError(f"--context needs a number of cells (1 or more) or all, not "
                            f"{context!r}.")
        context = word if word == "all" else str(int(word))
    values["context"] = context
    code = values["code"]
    if code is not None:
        if not re.match(r"^[A-Za-z][\w+#.-]{0,30}$", code):
            raise ArgsError(f"--code takes a language name such as python or sql, not {code!r}.")
        values["code"] = code.lower()
    if getattr(opts, "confirm_functions", None) and not values["functions"]:
        raise ArgsError("--confirm only applies to --functions; add --functions NAMES or drop it.")
    wants_code = "--code" if values["code"] else ("fix" if values["fix"] else None)
    if wants_code:
        clash = [flag for flag, on in (("--ui", values["ui"]), ("--background",
                 values["background"]), ("--over", values["over"])) if on]
        if clash:
            raise ArgsError(f"{wants_code} puts the answer's code into a new cell, which needs "
                            f"the cell to wait for the answer; drop {clash[0]}.")


def _validate_combinations(values: dict, functions_given: bool) -> None:
    """Functions, background and agent options: the combinations that cannot work."""
    if not values["functions"] and functions_given:
        raise ArgsError("--functions needs at least one name, e.g. --functions get_weather,convert.")
    if not values["auto"] and not values["functions"]:
        raise ArgsError("--no-auto only applies to --functions; add --functions NAMES or drop it.")
    if values["background"]:
        if values["stateless"]:
            raise ArgsError("--background needs the server to keep the interaction; drop "
                            "--stateless (or the stateless setting) for background jobs.")
        if values["functions"]:
            raise ArgsError("--background cannot run your --functions (the loop needs this "
                            "kernel at every call); run the cell without --background.")
        if values["ui"]:
            raise ArgsError("Use either --background (a server-side job) or --ui (a live view), "
                            "not both.")


def parse(line: str, cell: Optional[str], defaults: Mapping[str, Any] = {}) -> Request:
    """Parse a `%%gemini` line and cell into a Request, with `defaults` (the settings) filling
    every option not given. Raises ArgsError (one sentence) on bad input or an empty prompt."""
    opts = parse_options(line or "", prompt_words=cell is None)
    words = list(getattr(opts, "words", None) or [])
    if cell is not None and [w.lower() for w in words] == ["fix"]:  # `%%gemini fix`
        opts.fix, words = True, []
    if cell is not None and words:
        raise ArgsError(
            f"Unexpected text {' '.join(words)!r} on the %%gemini line; options start with "
            f"'-' and the prompt goes in the cell below."
        )
    text = cell if cell is not None else " ".join(words)
    text = text.lstrip("\r\n").rstrip()  # IPython adds a trailing newline to every cell
    values = _merge(opts, defaults)
    _check_agent_options(opts, values)
    _validate(values, functions_given=getattr(opts, "functions", None) is not None)
    _check_companion(values, opts)
    if values["fix"]:  # the prompt is made from the failing cell; the cell's words are extra
        return Request(text=text, parts=[text], **values)
    if not text or not text.strip():
        raise ArgsError("The prompt is empty; write your question in the cell below %%gemini.")
    return Request(text=text, parts=[text], **values)


def _check_agent_options(opts: Any, values: dict) -> None:
    """--agent replaces the model; options that only models take are refused, not dropped."""
    if not getattr(opts, "agent", None):
        return
    if getattr(opts, "model", None):
        raise ArgsError("Give either -m/--model or --agent, not both (an agent picks its own model).")
    given = [options.option(n).flags[0].names[-1] for n in ("temperature", "max_tokens", "thinking")
             if getattr(opts, n, None) is not None]
    if given:
        raise ArgsError(f"{', '.join(given)} cannot be used with --agent (agents take no "
                        f"generation settings); drop {'them' if len(given) > 1 else 'it'}.")


def with_parts(request: Request, parts: list) -> Request:
    """A copy of `request` whose prompt is the interpolated `parts`."""
    return replace(request, parts=list(parts))


def parse_line(line: str, defaults: Mapping[str, Any] = {}) -> Request:
    """A one-line `%gemini PROMPT` (options, if any, come first and start with '-'). A prompt
    without options is taken verbatim, so apostrophes and quotes need no escaping."""
    if not line.lstrip().startswith("-"):
        return parse("", line, defaults)
    return parse(line, None, defaults)
