"""`%%gemini` options: IPython magic_arguments definitions and PURE parsing into a Request.

The decorator `cell_arguments` is applied both to the magic (so `%%gemini?` prints the help)
and, on first use, to a stand-in whose parser `parse()` uses; nothing here touches IPython
state, the network or the SDK, so every option can be tested as plain data.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

__all__ = [
    "Request", "ArgsError", "cell_arguments", "parse", "THINKING_LEVELS", "DEFAULT_MODEL",
]

DEFAULT_MODEL = "gemini-3.5-flash"
THINKING_LEVELS = ("minimal", "low", "medium", "high", "xhigh")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ArgsError(ValueError):
    """Bad options or an empty prompt; the message is one sentence saying how to fix it."""


@dataclass
class Request:
    """Everything one `%%gemini` run needs, as plain data (settings already merged in)."""

    text: str = ""                    # the prompt as typed (before interpolation)
    parts: list = field(default_factory=list)  # interpolated prompt: str and content dicts
    model: str = DEFAULT_MODEL
    system: Optional[str] = None
    temperature: Optional[float] = None
    max_tokens: Optional[int] = None
    thinking: Optional[str] = None
    show_thoughts: bool = False
    stream: bool = True
    new: bool = False
    stateless: bool = False
    out: Optional[str] = None
    ui: bool = False                  # --ui: stream into a live widget view in the background
    # Media in, images out (issue #5): --image/--file values as typed (paths, URLs, variable
    # names; resolved into content parts by magics.build_parts), image config and --save target.
    images: list = field(default_factory=list)
    files: list = field(default_factory=list)
    aspect: Optional[str] = None      # normalised, e.g. "16:9"
    size: Optional[str] = None        # normalised: "512", "1K", "2K" or "4K"
    save: Optional[str] = None
    # Room for the widgets/media/tools features: tool declarations, generation_config and
    # top-level body fields merged in as given.
    tools: list = field(default_factory=list)
    generation_extra: dict = field(default_factory=dict)
    body_extra: dict = field(default_factory=dict)
    # Tools, functions, schemas, background jobs and agents (issue #6). `tools` above holds the
    # --tools declarations; the names below are resolved against the notebook by magics.py.
    functions: list = field(default_factory=list)   # --functions names, as typed
    callables: list = field(default_factory=list)   # ...resolved to Python callables
    auto: bool = True                 # run the function-calling loop (--no-auto: stop at a call)
    max_rounds: int = 10              # cap on model rounds of that loop
    function_timeout: Optional[float] = 60.0
    schema: Optional[str] = None      # --schema NAME, as typed
    schema_obj: Any = None            # ...resolved (pydantic model, dataclass, dict, ...)
    response_format: Optional[dict] = None
    background: bool = False
    agent: Optional[str] = None
    environment: Optional[str] = None

    def generation_config(self) -> dict:
        cfg: dict = {}
        if self.temperature is not None:
            cfg["temperature"] = self.temperature
        if self.max_tokens is not None:
            cfg["max_output_tokens"] = self.max_tokens
        if self.thinking:
            cfg["thinking_level"] = self.thinking
        if self.show_thoughts:
            cfg["thinking_summaries"] = "auto"
        if self.aspect or self.size:
            from .images import image_config

            cfg["image_config"] = image_config(self.aspect, self.size)
        cfg.update(self.generation_extra)
        return cfg

    def body(self, user_step: dict, previous_interaction_id: Optional[str] = None,
             history: Optional[list] = None) -> dict:
        """The create() keyword arguments (wire field names) for this request."""
        body: dict[str, Any] = {"agent": self.agent} if self.agent else {"model": self.model}
        if history:
            body["input"] = list(history) + [user_step]
        elif len(user_step["content"]) == 1 and user_step["content"][0].get("type") == "text":
            body["input"] = user_step["content"][0]["text"]
        else:
            body["input"] = [user_step]
        if previous_interaction_id:
            body["previous_interaction_id"] = previous_interaction_id
        if self.system:
            body["system_instruction"] = self.system
        cfg = self.generation_config()
        if cfg and not self.agent:  # agents take no generation_config (the SDK refuses it)
            body["generation_config"] = cfg
        tools = list(self.tools) + [function_tool(f) for f in self.callables]
        if tools:
            body["tools"] = tools
        if self.response_format:
            body["response_format"] = dict(self.response_format)
        if self.environment:
            body["environment"] = self.environment
        if self.stateless:
            body["store"] = False
        body.update(self.body_extra)
        return body


def function_tool(fn: Any) -> dict:
    """The function declaration for a callable (functions.function_declaration, cached)."""
    from .functions import function_declaration

    return function_declaration(fn)


def cell_arguments(func):
    """Attach the `%%gemini` options to `func` (IPython magic_arguments decorators)."""
    decorators = [
        magic_arguments(),
        argument("-m", "--model", default=None,
                 help=f"Model name (default: the GeminiMagics.model setting, {DEFAULT_MODEL})."),
        argument("--system", default=None, help="System instruction for this cell."),
        argument("--temperature", type=float, default=None, help="Sampling temperature, 0 to 2."),
        argument("--max-tokens", type=int, default=None, dest="max_tokens",
                 help="Upper limit on output tokens."),
        argument("--thinking", default=None, metavar="LEVEL",
                 help="Thinking level: " + ", ".join(THINKING_LEVELS) + "."),
        argument("--show-thoughts", action="store_true", default=None, dest="show_thoughts",
                 help="Show the model's thought summaries (folded) above the answer."),
        argument("--no-stream", action="store_false", default=None, dest="stream",
                 help="Wait for the whole answer instead of streaming it."),
        argument("--stream", action="store_true", default=None, dest="stream",
                 help="Stream the answer (the default unless GeminiMagics.stream is off)."),
        argument("--new", action="store_true", default=False,
                 help="Start a new conversation with this cell."),
        argument("--stateless", action="store_true", default=None,
                 help="Do not store the turn on the server (store=false); the history is kept "
                      "here and re-sent each turn."),
        argument("-o", "--out", default=None, metavar="VAR",
                 help="Put the result object (.text, .steps, .usage, .id, .interaction) in VAR."),
        argument("--image", action="append", default=None, dest="images", metavar="PATH|URL|VAR",
                 help="Attach an image: a file path, an http(s)/gs URL, or a variable holding a "
                      "PIL image, bytes or a path (repeatable). {var} in the prompt places a "
                      "PIL image at that point instead."),
        argument("--file", action="append", default=None, dest="files", metavar="PATH|URL|VAR",
                 help="Attach audio, video, a PDF, CSV, text or Office file, found by its type "
                      "(repeatable)."),
        argument("--aspect", default=None, metavar="W:H",
                 help="Aspect ratio of generated images, e.g. 16:9 (image models)."),
        argument("--size", default=None, metavar="SIZE",
                 help="Size of generated images: 512, 1K, 2K or 4K (image models)."),
        argument("--save", default=None, metavar="PATH_OR_DIR",
                 help="Write the generated images to this file (name_1, name_2... for several) "
                      "or directory (gemini_N.png, never overwriting)."),
        argument("--ui", action="store_true", default=False,
                 help="Stream into a live view with a Stop button, in the background (the "
                      "kernel stays free); the answer is written out when it ends."),
        argument("--tools", default=None, metavar="LIST",
                 help="Built-in tools, comma-separated: google_search, code_execution, "
                      "url_context, google_maps, file_search[:STORE+STORE], "
                      "computer_use[:browser|mobile|desktop]; 'none' for no tools (default: the "
                      "GeminiMagics.tools setting)."),
        argument("--functions", default=None, metavar="F,G",
                 help="Your Python functions the model may call (names from the notebook); the "
                      "magic calls them and sends the results back until the model answers."),
        argument("--no-auto", action="store_false", default=True, dest="auto",
                 help="With --functions: stop at the model's first function call and show it, "
                      "without running it."),
        argument("--max-rounds", type=int, default=None, dest="max_rounds", metavar="N",
                 help="With --functions: at most N model rounds (default 10)."),
        argument("--schema", default=None, metavar="NAME",
                 help="Answer as JSON matching NAME (a pydantic model, dataclass, TypedDict or "
                      "JSON-schema dict); --out then gets the parsed value."),
        argument("--background", action="store_true", default=False,
                 help="Run on the server in the background: the cell returns at once with a "
                      "live status; %%gemini jobs, %%gemini wait ID, %%gemini cancel ID."),
        argument("--agent", default=None, metavar="NAME",
                 help="Ask a managed agent (e.g. antigravity-preview-05-2026) instead of a model."),
        argument("--environment", default=None, metavar="ENV",
                 help="Where an agent runs: 'remote' (a new sandbox) or an environment id."),
        argument("words", nargs="*", help="(line magic only) the prompt."),
    ]
    for deco in reversed(decorators):
        func = deco(func)
    return func


_parser_cache: list = []


def _parser() -> Any:
    """The options parser, built on first use (loading the extension stays cheap)."""
    if not _parser_cache:
        @cell_arguments
        def gemini(line, cell=None):
            """%%gemini [options]: send the cell to Gemini and stream the answer as Markdown."""
        _parser_cache.append(gemini.parser)
    return _parser_cache[0]


_ARG_RE = re.compile(r"argument (\S+?)(?:/\S+)?: (.*)")


def _explain_usage(msg: str) -> str:
    m = re.match(r"unrecognized arguments: (.*)", msg)
    if m:
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


def parse_options(line: str) -> Any:
    """The argparse namespace for a magic line; ArgsError with one sentence on bad input."""
    try:
        # POSIX shell quoting, so --system "Be brief." arrives without its quotes.
        return _parser().parse_args(shlex.split(line))
    except (UsageError, ValueError) as exc:  # argparse's, and shlex's unclosed quotes
        raise ArgsError(_explain_usage(str(exc))) from None


def _merge(opts: Any, defaults: Mapping[str, Any]) -> dict:
    def pick(name, fallback=None):
        v = getattr(opts, name, None)
        if v is None:
            v = defaults.get(name, fallback)
        return v

    values = {
        "model": pick("model", DEFAULT_MODEL) or DEFAULT_MODEL,
        "system": pick("system") or None,
        "temperature": pick("temperature"),
        "max_tokens": pick("max_tokens"),
        "thinking": pick("thinking") or None,
        "show_thoughts": bool(pick("show_thoughts", False)),
        "stream": bool(pick("stream", True)),
        "new": bool(getattr(opts, "new", False)),
        "stateless": bool(pick("stateless", False)),
        "out": getattr(opts, "out", None),
        "ui": bool(getattr(opts, "ui", False)),
        "images": list(getattr(opts, "images", None) or []),
        "files": list(getattr(opts, "files", None) or []),
        "aspect": getattr(opts, "aspect", None),
        "size": getattr(opts, "size", None),
        "save": getattr(opts, "save", None),
        "functions": _names(getattr(opts, "functions", None)),
        "auto": bool(getattr(opts, "auto", True)),
        "max_rounds": 10 if getattr(opts, "max_rounds", None) is None else opts.max_rounds,
        "function_timeout": defaults.get("function_timeout", 60.0),
        "schema": getattr(opts, "schema", None),
        "background": bool(getattr(opts, "background", False)),
        "agent": getattr(opts, "agent", None),
        "environment": getattr(opts, "environment", None),
    }
    spec = getattr(opts, "tools", None)
    values["tools"] = spec if spec is not None else (defaults.get("tools") or "")
    return values


def _names(spec: Optional[str]) -> list:
    return [n.strip() for n in (spec or "").split(",") if n.strip()]


def _tool_list(spec: Any) -> list:
    """--tools (or the tools setting) as declarations; 'none' or '' means no tools."""
    from .tools import parse_tools

    if isinstance(spec, str) and spec.strip().lower() in ("", "none"):
        return []
    try:
        return parse_tools(spec)
    except ValueError as exc:
        raise ArgsError(str(exc)) from None


def _validate(values: dict, functions_given: bool = False) -> None:
    t = values["temperature"]
    if t is not None and not (0.0 <= t <= 2.0):
        raise ArgsError(f"Temperature must be between 0 and 2, not {t:g}.")
    n = values["max_tokens"]
    if n is not None and n < 1:
        raise ArgsError(f"--max-tokens must be a positive whole number, not {n}.")
    level = values["thinking"]
    if level is not None and level not in THINKING_LEVELS:
        raise ArgsError(
            f"Unknown thinking level {level!r}; use one of {', '.join(THINKING_LEVELS)}."
        )
    out = values["out"]
    if out is not None and not _IDENT.match(out):
        raise ArgsError(f"--out needs a Python variable name, not {out!r}.")
    model = values["model"]
    if not isinstance(model, str) or not model.strip() or any(c.isspace() for c in model):
        raise ArgsError(f"Model name {model!r} is not valid; use e.g. -m {DEFAULT_MODEL}.")
    if values["aspect"] is not None or values["size"] is not None:
        from .images import (ASPECT_RATIOS, IMAGE_SIZES, ImageError, normalize_aspect_ratio,
                             normalize_image_size)

        for name, norm, allowed, what in (("aspect", normalize_aspect_ratio, ASPECT_RATIOS,
                                           "aspect ratio"),
                                          ("size", normalize_image_size, IMAGE_SIZES, "image size")):
            try:
                values[name] = norm(values[name])
            except ImageError:
                raise ArgsError(f"--{name} {values[name]!r} is not a supported {what}; use one of "
                                f"{', '.join(allowed)}.") from None
    if values["save"] is not None and not str(values["save"]).strip():
        raise ArgsError("--save needs a file name or a directory, e.g. --save images/.")
    values["tools"] = _tool_list(values["tools"])
    _validate_issue6(values, functions_given)


def _validate_issue6(values: dict, functions_given: bool) -> None:
    """Functions, schema, background and agent options: the combinations that cannot work."""
    if values["max_rounds"] < 1:
        raise ArgsError(f"--max-rounds must be at least 1, not {values['max_rounds']}.")
    if not values["functions"] and functions_given:
        raise ArgsError("--functions needs at least one name, e.g. --functions get_weather,convert.")
    if not values["auto"] and not values["functions"]:
        raise ArgsError("--no-auto only applies to --functions; add --functions NAMES or drop it.")
    schema = values["schema"]
    if schema is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", schema):
        raise ArgsError(f"--schema needs the name of a schema in the notebook (a pydantic model, "
                        f"dataclass, TypedDict or JSON-schema dict), not {schema!r}.")
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
    agent = values["agent"]
    if agent is not None and (not agent.strip() or any(c.isspace() for c in agent)):
        raise ArgsError(f"Agent name {agent!r} is not valid; use e.g. --agent "
                        f"antigravity-preview-05-2026.")
    env = values["environment"]
    if env is not None and (not env.strip() or any(c.isspace() for c in env)):
        raise ArgsError(f"--environment needs 'remote' or an environment id, not {env!r}.")


def parse(line: str, cell: Optional[str], defaults: Mapping[str, Any] = {}) -> Request:
    """Parse a `%%gemini` line and cell into a Request, with `defaults` (the settings) filling
    every option not given. Raises ArgsError (one sentence) on bad input or an empty prompt."""
    opts = parse_options(line or "")
    words = list(getattr(opts, "words", None) or [])
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
    if not text or not text.strip():
        raise ArgsError("The prompt is empty; write your question in the cell below %%gemini.")
    return Request(text=text, parts=[text], **values)


def _check_agent_options(opts: Any, values: dict) -> None:
    """--agent replaces the model; options that only models take are refused, not dropped."""
    if not getattr(opts, "agent", None):
        return
    if getattr(opts, "model", None):
        raise ArgsError("Give either -m/--model or --agent, not both (an agent picks its own model).")
    given = [f"--{n.replace('_', '-')}" for n in ("temperature", "max_tokens", "thinking")
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
