"""Every `%%gemini` option and `GeminiMagics` setting, declared once, in one table.

Each row of `OPTIONS` says what one name is: a setting (a `GeminiMagics` traitlet that
`%gemini NAME [VALUE]`, `%config GeminiMagics.NAME` and the `%gemini ui` panel read and write),
a cell option (its `%%gemini` flags and their help), a `Request` field the two fill (the cell's
value wins, then the setting, then the default), or several of these. Everything else is
derived from the table: the traitlets and their validators (`traits()`), the settings lists
(`SETTINGS`, `REQUEST_DEFAULTS`, `PANEL_SETTINGS`), the argparse arguments under their `group`
headings (`arguments()`, as `%%gemini?` lists them), the merge of a cell's options with the
settings (`Option.value`), the per-option checks of a request (`Option.check`) and the
Request's option fields (`request_fields()`).

Pure data and small pure functions: no IPython state, no network, no SDK.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from IPython.core.magic_arguments import argument, argument_group
from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, validate

from .catalog import (ASPECT_RATIOS, BUILTIN_TOOLS, DEFAULT_MODEL, IMAGE_SIZES, THINKING_LEVELS,
                      normalize_aspect_ratio, normalize_image_size)
from .pricing import parse_override
from .tools import parse_tools

__all__ = ["Flag", "Option", "SettingError", "OPTIONS", "SETTINGS", "REQUEST_DEFAULTS", "PANEL_SETTINGS",
           "option", "traits", "groups", "arguments", "request_options", "request_fields"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Flag:
    """One `%%gemini` flag of a cell option, as `%%gemini?` lists it."""

    names: tuple                      # e.g. ("-m", "--model")
    help: str
    action: Optional[str] = None      # "store_true", "store_false" or "append"; None: takes a value
    metavar: Optional[str] = None
    optional: Any = None              # not None: the value may be left out, and is then this


@dataclass(frozen=True)
class Option:
    """One row of the table: a setting, a cell option and/or a Request field, all called `name`."""

    name: str                         # the traitlet, the argparse dest and the Request field
    kind: Any = str                   # str, int, float, bool, or a tuple of choices (an Enum)
    default: Any = None               # the setting's default, and the request's without one
    setting: str = ""                 # help of the GeminiMagics traitlet; "" = not a setting
    flags: tuple = ()                 # Flag rows of the cell option; () = not a cell option
    group: str = ""                   # the heading `%%gemini?` lists the flags under
    request: bool = True              # fills Request.<name>; False: read by the magic/client
    many: bool = False                # the Request field holds a list (default [])
    allow_none: bool = False          # the traitlet takes None (always so when default is None)
    convert: Optional[Callable] = None   # merged value -> Request value; never fails
    check: Optional[Callable] = None     # Request value -> value, or ValueError (one sentence)
    validate: Optional[Callable] = None  # traitlet value -> value, or ValueError (one sentence)
    panel: bool = False               # shown and set by the %gemini ui panel
    example: str = ""                 # a value as a user types it (the tests use it)
    needs: str = ""                   # the options a line with this one must also give (tests)

    def value(self, given: Any, settings: Any) -> Any:
        """The Request value: the cell's option if given, else the setting, else the default."""
        if given is not None:
            v = given
        elif self.setting:
            v = settings.get(self.name, self.default)
        else:
            v = self.default
        if self.kind is bool:
            v = bool(v)
        return self.convert(v) if self.convert is not None else v

    def trait(self) -> Any:
        """The GeminiMagics traitlet of a setting row."""
        nullable = self.allow_none or self.default is None
        if isinstance(self.kind, tuple):
            trait = Enum(list(self.kind), self.default, allow_none=nullable, help=self.setting)
        else:
            trait = _TRAITS[self.kind](self.default, allow_none=nullable, help=self.setting)
        return trait.tag(config=True)

    def arguments(self) -> list:
        """The magic_arguments `argument(...)` decorators of a cell option, one per flag."""
        out = []
        for f in self.flags:
            kw: dict = {"dest": self.name, "default": None, "help": f.help}
            if f.action:
                kw["action"] = f.action
            elif self.kind in (int, float):
                kw["type"] = self.kind
            if f.metavar:
                kw["metavar"] = f.metavar
            if f.optional is not None:
                kw.update(nargs="?", const=f.optional)
            out.append(argument(*f.names, **kw))
        return out


_TRAITS = {str: Unicode, float: Float, int: Int, bool: Bool}


# -- conversions, request checks and traitlet validators used by the table ----------------------

def _or_none(value: Any) -> Any:
    return value or None


def _or_default_model(value: Any) -> Any:
    """None (no setting at all) is the default model; an empty name is left for `_model` to
    refuse (`-m ''` must not quietly run the default)."""
    return DEFAULT_MODEL if value is None else value


def _listed(value: Any) -> list:
    return list(value or [])


def _names(spec: Optional[str]) -> list:
    return [n.strip() for n in (spec or "").split(",") if n.strip()]


def _is_word(value: Any) -> bool:
    """A non-empty string without white space (a model, agent or environment name)."""
    return isinstance(value, str) and bool(value.strip()) and not any(c.isspace() for c in value)


def _name_check(what: str) -> Callable:
    """A check that `value` is one word, with the sentence `what.format(value)` otherwise."""
    def check(value: Any) -> Any:
        if value is not None and not _is_word(value):
            raise ValueError(what.format(value))
        return value
    return check


def _model(model: Any) -> Any:
    if not _is_word(model):
        raise ValueError(f"Model name {model!r} is not valid; use e.g. -m {DEFAULT_MODEL}.")
    return model


def _temperature(t: Any) -> Any:
    if t is not None and not (0.0 <= t <= 2.0):
        raise ValueError(f"Temperature must be between 0 and 2, not {t:g}.")
    return t


def _max_tokens(n: Any) -> Any:
    if n is not None and n < 1:
        raise ValueError(f"--max-tokens must be a positive whole number, not {n}.")
    return n


def _thinking(level: Any) -> Any:
    if level is not None and level not in THINKING_LEVELS:
        raise ValueError(f"Unknown thinking level {level!r}; use one of "
                         f"{', '.join(THINKING_LEVELS)}.")
    return level


def _out(out: Any) -> Any:
    if out is not None and not _IDENT.match(out):
        raise ValueError(f"--out needs a Python variable name, not {out!r}.")
    return out


def _normalized(flag: str, norm: Callable, allowed: tuple, what: str) -> Callable:
    def check(value: Any) -> Any:
        try:
            return norm(value)
        except ValueError:
            raise ValueError(f"{flag} {value!r} is not a supported {what}; use one of "
                             f"{', '.join(allowed)}.") from None
    return check


def _save(target: Any) -> Any:
    if target is not None and not str(target).strip():
        raise ValueError("--save needs a file name or a directory, e.g. --save images/.")
    return target


def _tool_list(spec: Any) -> list:
    """--tools (or the tools setting) as declarations; 'none' or '' means no tools."""
    if isinstance(spec, str) and spec.strip().lower() in ("", "none"):
        return []
    return parse_tools(spec)


def _max_rounds(n: int) -> int:
    if n < 1:
        raise ValueError(f"--max-rounds must be at least 1, not {n}.")
    return n


def _schema(schema: Any) -> Any:
    if schema is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", schema):
        raise ValueError(f"--schema needs the name of a schema in the notebook (a pydantic model, "
                         f"dataclass, TypedDict or JSON-schema dict), not {schema!r}.")
    return schema


def _over(name: Any) -> Any:
    if name is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", name):
        raise ValueError(f"--over needs the name of a DataFrame, Series, list or dict in the "
                         f"notebook, not {name!r}.")
    return name


def _concurrency(n: Any) -> Any:
    if n is not None and not 1 <= n <= 256:
        raise ValueError(f"--concurrency must be a whole number from 1 to 256, not {n}.")
    return n


def _tools_setting(value: Any) -> Any:
    """The tools setting, normalised and checked at once, so %config and the panel fail early."""
    if value is None or not str(value).strip() or str(value).strip().lower() == "none":
        return None
    return ",".join(t["type"] + (":" + "+".join(t["file_search_store_names"])
                                 if t.get("file_search_store_names") else "")
                    + (":" + t["environment"] if t["type"] == "computer_use" else "")
                    for t in parse_tools(str(value))) or None


def _at_least(name: str, low: float, unit: str = "") -> Callable:
    """A setting validator: None passes (the default), else a number of at least `low`."""
    def check(value: Any) -> Any:
        if value is not None and value < low:
            raise ValueError(f"{name} must be at least {low:g}{unit}, not {value:g}")
        return value
    return check


def _model_setting(value: Any) -> Any:
    if not _is_word(value):
        raise ValueError(f"a model name is one word, e.g. {DEFAULT_MODEL}")
    return value


def _price_override(value: Any) -> Any:
    parse_override(value)  # ValueError: the sentence saying what it takes
    return value


def _estimate(n: Any) -> Any:
    if n is not None and not 0 <= n <= 100:
        raise ValueError(f"--estimate N runs N sample rows to measure their answers (0 to 100; "
                         f"--estimate alone runs none), not {n}.")
    return n


def _poll_interval(value: Any) -> Any:
    if not value or value < 0.05:
        raise ValueError("poll_interval must be at least 0.05 seconds")
    return value


# -- the table ------------------------------------------------------------------------------------
# In the order `%gemini settings` lists the settings and `%%gemini?` lists the flags: under the
# heading of their `group`, the groups in the order they first appear here.

_MODEL, _CONVERSATION, _OUTPUT = "Model & generation", "Conversation", "Output"
_MEDIA, _TOOLS, _JOBS, _LIVE = ("Media & images", "Tools & functions", "Background & agents",
                                "Live view")
_ROWS = "Rows (a prompt over every row)"

OPTIONS: tuple = (
    Option("model", str, DEFAULT_MODEL, setting="Model used when a cell gives no -m/--model.",
           flags=(Flag(("-m", "--model"), f"Model name (default: the GeminiMagics.model setting, "
                                          f"{DEFAULT_MODEL}).", metavar="NAME"),),
           group=_MODEL, convert=_or_default_model, check=_model, validate=_model_setting,
           panel=True, example="gemini-x"),
    Option("system", str, setting="Default system instruction.",
           flags=(Flag(("--system",), "System instruction for this cell.", metavar="TEXT"),),
           group=_MODEL, convert=_or_none, panel=True, example="Be brief."),
    Option("temperature", float, setting="Default temperature (0-2).",
           flags=(Flag(("--temperature",), "Sampling temperature, 0 to 2.", metavar="T"),),
           group=_MODEL, check=_temperature, panel=True, example="0.5"),
    Option("max_tokens", int, setting="Default max output tokens.",
           flags=(Flag(("--max-tokens",), "Upper limit on output tokens.", metavar="N"),),
           group=_MODEL, check=_max_tokens, example="9"),
    Option("thinking", str,
           setting="Default thinking level: " + ", ".join(THINKING_LEVELS) + ".",
           flags=(Flag(("--thinking",), "Thinking level: " + ", ".join(THINKING_LEVELS) + ".",
                       metavar="LEVEL"),),
           group=_MODEL, convert=_or_none, check=_thinking, example="high"),
    Option("show_thoughts", bool, False, setting="Show thought summaries above answers.",
           flags=(Flag(("--show-thoughts",), "Show the model's thought summaries (folded) above "
                                             "the answer.", "store_true"),),
           group=_MODEL, example="True"),
    Option("new", bool, False,
           flags=(Flag(("--new",), "Start a new conversation with this cell.", "store_true"),),
           group=_CONVERSATION),
    Option("stateless", bool, False,
           setting="Keep the history here (store=false) instead of on the server.",
           flags=(Flag(("--stateless",), "Do not store the turn on the server (store=false); the "
                                         "history is kept here and re-sent each turn.",
                       "store_true"),),
           group=_CONVERSATION, example="True"),
    Option("stream", bool, True, setting="Stream answers as they are generated.",
           flags=(Flag(("--no-stream",), "Wait for the whole answer instead of streaming it.",
                       "store_false"),
                  Flag(("--stream",), "Stream the answer (the default unless GeminiMagics.stream "
                                      "is off).", "store_true")),
           group=_OUTPUT, example="False"),
    Option("out", str,
           flags=(Flag(("-o", "--out"), "Put the result object (.text, .steps, .usage, .id, "
                                        ".interaction, .images) in VAR; it is always in _gemini "
                                        "too.", metavar="VAR"),),
           group=_OUTPUT, check=_out, example="r"),
    Option("schema", str,
           flags=(Flag(("--schema",), "Answer as JSON matching NAME (a pydantic model, "
                                      "dataclass, TypedDict or JSON-schema dict); --out then gets "
                                      "the parsed value.", metavar="NAME"),),
           group=_OUTPUT, check=_schema, example="Answer"),
    Option("offline", bool, False, request=False,
           setting="Use the local offline server even when an API key is set.", example="True"),
    Option("base_url", str, request=False,
           setting="Send requests to this Interactions endpoint instead.",
           example="http://127.0.0.1:9"),
    Option("engine", ("local", "echo", "openai"), request=False,
           setting="Engine of the local server (default: env GEMINI_MAGICS_ENGINE, else local; "
                   "openai: the server at env GEMINI_MAGICS_ENGINE_URL).",
           example="echo"),
    Option("server", ("shared", "inprocess"), request=False,
           setting="Where the offline server runs: one process shared by all your kernels "
                   "(default: env GEMINI_MAGICS_SERVER, else shared), or inside this kernel.",
           example="inprocess"),
    Option("fast_stream", bool, True, request=False,
           setting="Read the SSE stream directly (fast); off: the SDK's event iterator.",
           example="False"),
    Option("display", ("auto", "notebook", "terminal"), "auto", request=False,
           setting="How answers are shown: notebook Markdown or terminal text.",
           example="terminal"),
    Option("update_interval", float, 0.1, request=False,
           setting="Seconds between display updates while streaming.",
           validate=_at_least("update_interval", 0.01, " seconds"), example="0.5"),
    Option("retries", int, 2, request=False,
           setting="HTTP retries on 429/5xx/network errors for the real API (0: none).",
           validate=_at_least("retries", 0), example="5"),
    Option("timeout", float, request=False,
           setting="Seconds per HTTP request (None: SDK default).",
           validate=_at_least("timeout", 0.1, " seconds"), example="30"),
    Option("images", str, many=True, convert=_listed,
           flags=(Flag(("--image",), "Attach an image: a file path, an http(s)/gs URL, or a "
                                     "variable holding a PIL image, bytes or a path (repeatable). "
                                     "{var} in the prompt places a PIL image at that point "
                                     "instead.", "append", "PATH|URL|VAR"),),
           group=_MEDIA, example="cat.png"),
    Option("files", str, many=True, convert=_listed,
           flags=(Flag(("--file",), "Attach audio, video, a PDF, CSV, text or Office file, found "
                                    "by its type (repeatable).", "append", "PATH|URL|VAR"),),
           group=_MEDIA, example="notes.pdf"),
    Option("aspect", str,
           flags=(Flag(("--aspect",), "Aspect ratio of generated images, e.g. 16:9 (image "
                                      "models).", metavar="W:H"),),
           group=_MEDIA,
           check=_normalized("--aspect", normalize_aspect_ratio, ASPECT_RATIOS, "aspect ratio"),
           example="16:9"),
    Option("size", str,
           flags=(Flag(("--size",), "Size of generated images: 512, 1K, 2K or 4K (image models).",
                       metavar="SIZE"),),
           group=_MEDIA,
           check=_normalized("--size", normalize_image_size, IMAGE_SIZES, "image size"),
           example="1K"),
    Option("save", str,
           flags=(Flag(("--save",), "Write the generated images to this file (name_1, name_2... "
                                    "for several) or directory (gemini_N.png, never "
                                    "overwriting).", metavar="PATH_OR_DIR"),),
           group=_MEDIA, check=_save, example="images/"),
    Option("tools", str, many=True,
           setting="Built-in tools for every cell, comma-separated ("
                   + ", ".join(BUILTIN_TOOLS) + "); a cell's --tools replaces them.",
           flags=(Flag(("--tools",), "Built-in tools, comma-separated: google_search, "
                                     "code_execution, url_context, google_maps, "
                                     "file_search[:STORE+STORE], "
                                     "computer_use[:browser|mobile|desktop]; 'none' for no tools "
                                     "(default: the GeminiMagics.tools setting).",
                       metavar="LIST"),),
           group=_TOOLS, check=_tool_list, validate=_tools_setting, panel=True,
           example="google_search"),
    Option("functions", str, many=True, convert=_names,
           flags=(Flag(("--functions",), "Your Python functions the model may call (names from "
                                         "the notebook); the magic calls them and sends the "
                                         "results back until the model answers.",
                       metavar="F,G"),),
           group=_TOOLS, example="get_weather"),
    Option("auto", bool, True,
           flags=(Flag(("--no-auto",), "With --functions: stop at the model's first function "
                                       "call and show it, without running it.", "store_false"),),
           group=_TOOLS, needs="--functions get_weather"),
    Option("max_rounds", int, 10,
           flags=(Flag(("--max-rounds",), "With --functions: at most N model rounds (default "
                                          "10).", metavar="N"),),
           group=_TOOLS, check=_max_rounds, example="3"),
    Option("function_timeout", float, 60.0, allow_none=True,
           setting="Seconds one --functions call may run before it is stopped and reported to "
                   "the model as an error.", validate=_at_least("function_timeout", 0.1, " seconds"),
           example="5"),
    Option("background", bool, False,
           flags=(Flag(("--background",), "Run on the server in the background: the cell returns "
                                          "at once with a live status; %%gemini jobs, %%gemini "
                                          "wait ID, %%gemini cancel ID.", "store_true"),),
           group=_JOBS),
    Option("poll_interval", float, 1.0, request=False,
           setting="Seconds between status polls of --background jobs.",
           validate=_poll_interval, example="0.5"),
    Option("agent", str,
           flags=(Flag(("--agent",), "Ask a managed agent (e.g. antigravity-preview-05-2026) "
                                     "instead of a model.", metavar="NAME"),),
           group=_JOBS,
           check=_name_check("Agent name {!r} is not valid; use e.g. --agent "
                             "antigravity-preview-05-2026."),
           example="antigravity-preview-05-2026"),
    Option("environment", str,
           flags=(Flag(("--environment",), "Where an agent runs: 'remote' (a new sandbox) or an "
                                           "environment id.", metavar="ENV"),),
           group=_JOBS,
           check=_name_check("--environment needs 'remote' or an environment id, not {!r}."),
           example="remote"),
    Option("ui", bool, False,
           flags=(Flag(("--ui",), "Stream into a live view with a Stop button, in the background "
                                  "(the kernel stays free); the answer is written out when it "
                                  "ends. %%gemini stop stops it from any cell.", "store_true"),),
           group=_LIVE),
    Option("over", str,
           flags=(Flag(("--over",), "Run the cell once per row of NAME (a DataFrame, Series, "
                                    "list or dict): {column}, {item} and {index} fill the "
                                    "template; -o gets a DataFrame with a gemini column (or one "
                                    "per --schema field), or a list of results.",
                       metavar="NAME"),),
           group=_ROWS, check=_over, example="df"),
    Option("concurrency", int, 8,
           setting="Rows of --over sent at once (fewer while the server answers 429).",
           flags=(Flag(("--concurrency",), "With --over: rows sent at once (default 8); backs "
                                           "off on 429 and grows back.", metavar="N"),),
           group=_ROWS, check=_concurrency, validate=_concurrency, example="16",
           needs="--over df"),
    Option("batch", bool, False,
           flags=(Flag(("--batch",), "With --over: send the rows as one Gemini Batch API job "
                                     "(cheaper, slower); the cell returns at once, -o is filled "
                                     "when the batch ends; %%gemini wait BATCH picks it up.",
                       "store_true"),),
           group=_ROWS, needs="--over df"),
    Option("cache", bool, True,
           flags=(Flag(("--no-cache",), "With --over: neither read nor write the row cache (every "
                                        "row is sent again).", "store_false"),),
           group=_ROWS, needs="--over df"),
    Option("progress", bool, True, request=False,
           setting="Show a progress bar (tqdm: rows done, failed, cached, tokens, ETA) while "
                   "--over rows run.", example="False"),
    Option("cache_dir", str, request=False,
           setting="Folder of the --over row cache (default: env GEMINI_MAGICS_CACHE_DIR, else "
                   "the user's cache folder).", example="/tmp/gemini-rows"),
    Option("estimate", int,
           flags=(Flag(("--estimate",), "Send nothing to generate: count the input tokens (of "
                                        "every row with --over) and print the expected cost for "
                                        "standard, flex and batch, and the time; --estimate N "
                                        "first runs N sample rows to measure the answers.",
                       metavar="N", optional=0),),
           group=_ROWS, check=_estimate, example="3"),
    Option("budget", float, request=False,
           setting="A hard cap in USD on what this session spends (%gemini budget off: none); "
                   "a cell, panel turn or row past it is refused, a stream crossing it stopped.",
           validate=_at_least("budget", 0, " USD"), example="0.5"),
    Option("budget_offline", bool, False, request=False,
           setting="Count offline answers (priced as if on the named model, never billed) "
                   "toward the budget, e.g. to try a budget without a key.", example="True"),
    Option("price_override", str, request=False,
           setting="Price every model at these USD per 1M tokens instead of genai-prices' data, "
                   "e.g. input=1.25,output=10[,cached=0.125] (thinking billed as output).",
           validate=_price_override, example="input=1,output=2"),
    # -- #20 companion: fix, --code, --context, --confirm (their checks: args._check_companion) --
    Option("fix", bool, False,
           flags=(Flag(("--fix",), "Explain and correct the last cell that failed; the corrected "
                                   "code goes into a new cell below, not run (the same as "
                                   "%%%%gemini fix or %%gemini fix; the cell adds your words).",
                       "store_true"),),
           group=_OUTPUT),
    Option("code", str,
           flags=(Flag(("--code",), "Ask for the answer as code (Python unless LANG is given); "
                                    "it is shown and put into a new cell below, not run; -o gets "
                                    "the code text.", metavar="[LANG]"),),
           group=_OUTPUT, example="sql"),
    Option("context", str,
           setting="Cells sent with every prompt: a number of the latest cells, all, or None.",
           flags=(Flag(("--context",), "Send the cells run before this one (source and what they "
                                       "showed), the last N or all, within context_tokens.",
                       metavar="N|all"),),
           group=_CONVERSATION, example="all"),
    Option("context_tokens", int, 8000,
           setting="Token budget of --context (about 4 characters a token); older cells are "
                   "left out first.",
           validate=_at_least("context_tokens", 100), example="2000"),
    Option("confirm_functions", bool, False,
           setting="Ask before each --functions call (Allow / Deny).",
           flags=(Flag(("--confirm",), "With --functions: show each call (name, arguments) and "
                                       "run it only if you allow it; a denied call tells the "
                                       "model you declined.", "store_true"),),
           group=_TOOLS, example="True", needs="--functions get_weather"),
    # -- end #20 companion ----------------------------------------------------------------------
)

_BY_NAME = {o.name: o for o in OPTIONS}
# What `%gemini NAME [VALUE]` may show or change (also `%config GeminiMagics.NAME`).
SETTINGS: tuple = tuple(o.name for o in OPTIONS if o.setting)
# The settings a request takes as defaults for its options (args.parse merges them).
REQUEST_DEFAULTS: tuple = tuple(o.name for o in OPTIONS if o.setting and o.request)
# The settings the `%gemini ui` panel shows and sets.
PANEL_SETTINGS: tuple = tuple(o.name for o in OPTIONS if o.panel)


def option(name: str) -> Option:
    """The row called `name` (KeyError if there is none)."""
    return _BY_NAME[name]


def request_options() -> tuple:
    """The rows that fill a Request field, in table order."""
    return tuple(o for o in OPTIONS if o.request)


def traits() -> dict:
    """The GeminiMagics class attributes of the settings: one traitlet per setting row, and a
    `@validate` handler for each row with a `validate` entry (ValueError -> SettingError)."""
    out: dict = {}
    for o in OPTIONS:
        if not o.setting:
            continue
        out[o.name] = o.trait()
        if o.validate is not None:
            out[f"_validate_{o.name}"] = validate(o.name)(_trait_validator(o.validate))
    return out


class SettingError(TraitError):
    """A setting's own validator refused a value; the message is the sentence saying why."""


def _trait_validator(check: Callable) -> Callable:
    def _validate(self: Any, proposal: Any) -> Any:
        try:
            return check(proposal["value"])
        except ValueError as exc:
            raise SettingError(str(exc)) from None
    return _validate


def groups() -> dict:
    """{heading: the rows with flags under it}, the headings in the order they first appear."""
    out: dict = {}
    for o in OPTIONS:
        if o.flags:
            out.setdefault(o.group, []).append(o)
    return out


def arguments() -> list:
    """The magic_arguments decorators of every cell option: for each group an
    `argument_group(heading)`, then the `argument(...)` of its rows, in table order."""
    return [d for heading, rows in groups().items()
            for d in [argument_group(heading), *(a for o in rows for a in o.arguments())]]


def request_fields() -> list:
    """(name, type, dataclasses.field) of the Request fields the options fill, in table order,
    for `dataclasses.make_dataclass`."""
    out = []
    for o in request_options():
        if o.many:
            out.append((o.name, list, field(default_factory=list)))
            continue
        kind = str if isinstance(o.kind, tuple) else o.kind
        nullable = o.allow_none or o.default is None
        out.append((o.name, Optional[kind] if nullable else kind, field(default=o.default)))
    return out
