"""The `%%gemini` cell magic and `%gemini` line magic: thin glue over args, prompt and runner.

The traitlets here are the ONE source of truth for settings: `%config GeminiMagics.model = ...`,
`%gemini model NAME` and (later) the widgets panel all read and write them.
"""
from __future__ import annotations

import threading
from typing import Any, Optional

from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Enum, Float, Int, TraitError, Unicode

from . import args as _args
from .args import DEFAULT_MODEL, ArgsError, cell_arguments
from .conversation import Conversation, current_cell_id
from .errors import GeminiError, explain
from .prompt import PromptError, interpolate_parts

__all__ = ["GeminiMagics"]

# Settings that `%gemini NAME [VALUE]` may show or change (also `%config GeminiMagics.NAME`).
SETTINGS = (
    "model", "system", "temperature", "max_tokens", "thinking", "show_thoughts", "stream",
    "stateless", "offline", "base_url", "engine", "fast_stream", "display", "update_interval",
    "retries", "timeout",
)
# The subset that `args.parse` merges into a request as option defaults.
_REQUEST_DEFAULTS = ("model", "system", "temperature", "max_tokens", "thinking",
                     "show_thoughts", "stream", "stateless")
_COMMANDS = ("history", "reset", "settings", "last", "help")
_CASSETTE_COMMANDS = ("record", "replay", "cassette")


def _is_terminal(shell: Any) -> bool:
    names = {c.__name__ for c in type(shell).__mro__}
    return "TerminalInteractiveShell" in names and getattr(shell, "kernel", None) is None


@magics_class
class GeminiMagics(Magics):
    """Gemini Interactions API in notebook cells (`%%gemini`) and lines (`%gemini`)."""

    model = Unicode(DEFAULT_MODEL, help="Model used when a cell gives no -m/--model.").tag(config=True)
    system = Unicode(None, allow_none=True, help="Default system instruction.").tag(config=True)
    temperature = Float(None, allow_none=True, help="Default temperature (0-2).").tag(config=True)
    max_tokens = Int(None, allow_none=True, help="Default max output tokens.").tag(config=True)
    thinking = Unicode(None, allow_none=True,
                       help="Default thinking level: minimal, low, medium, high, xhigh.").tag(config=True)
    show_thoughts = Bool(False, help="Show thought summaries above answers.").tag(config=True)
    stream = Bool(True, help="Stream answers as they are generated.").tag(config=True)
    stateless = Bool(False, help="Keep the history here (store=false) instead of on the server.").tag(config=True)
    offline = Bool(False, help="Use the local offline server even when an API key is set.").tag(config=True)
    base_url = Unicode(None, allow_none=True,
                       help="Send requests to this Interactions endpoint instead.").tag(config=True)
    engine = Enum(["local", "echo"], None, allow_none=True,
                  help="Engine of the local server (default: env GEMINI_MAGICS_ENGINE, else local).").tag(config=True)
    fast_stream = Bool(True, help="Read the SSE stream directly (fast); off: the SDK's event iterator.").tag(config=True)
    display = Enum(["auto", "notebook", "terminal"], "auto",
                   help="How answers are shown: notebook Markdown or terminal text.").tag(config=True)
    update_interval = Float(0.1, help="Seconds between display updates while streaming.").tag(config=True)
    retries = Int(2, help="HTTP retries on 429/5xx/network errors for the real API (0: none).").tag(config=True)
    timeout = Float(None, allow_none=True, help="Seconds per HTTP request (None: SDK default).").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any):
        super().__init__(shell=shell, **kwargs)
        self.conversation = Conversation()
        self.last_result: Any = None
        self._notice_shown = False
        # Set by a caller (the widgets panel) to stop the running cell from another thread.
        self.cancel_event: Optional[threading.Event] = None

    # -- settings ------------------------------------------------------------------------------
    def settings(self) -> dict:
        """Current settings as a plain dict (what args.parse and the client read)."""
        return {name: getattr(self, name) for name in SETTINGS}

    def _set(self, name: str, value: str) -> str:
        trait = self.traits()[name]
        old = getattr(self, name)
        try:
            if value.strip().lower() == "default":
                new = trait.default()
            else:
                new = trait.from_string(value.strip())
            setattr(self, name, new)
        except (TraitError, ValueError) as exc:
            raise GeminiError(f"Cannot set {name} to {value.strip()!r} ({_trait_hint(trait, exc)}).")
        if name in _REQUEST_DEFAULTS:
            try:
                _args.parse("", "x", self.settings())
            except ArgsError as exc:
                setattr(self, name, old)
                raise GeminiError(str(exc)) from None
        return f"{name} = {getattr(self, name)!r}"

    # -- the magic -------------------------------------------------------------------------------
    @line_cell_magic
    @cell_arguments
    def gemini(self, line: str, cell: Optional[str] = None) -> None:
        """Ask Gemini: the cell is the prompt; the answer streams in as Markdown.

        `{name}`, `{obj.attr}`, `{In[3]}`, `{Out[2]}` in the prompt are filled in from your
        variables (`{{`/`}}` keep braces); other braces stay as typed. Each cell continues the
        conversation; re-running a cell replaces its turn. The result object (.text, .steps,
        .usage, .id, .interaction, .images, .image) goes to `-o VAR` and to `_gemini`.

        Media: `--image` / `--file` attach a path, URL or variable (repeatable); `{img}` places
        a PIL image where it is written. Image models (e.g. -m gemini-3.1-flash-image) draw
        inline images; `--aspect 16:9`, `--size 1K`, `--save DIR` set and keep them.

        Line magic: `%gemini PROMPT` asks in one line; `%gemini history`, `%gemini reset`,
        `%gemini settings`, `%gemini last`, `%gemini ui` (a panel to pick model and tools),
        `%gemini stop` (stops `--ui` answers), `%gemini record PATH` / `%gemini replay PATH`
        (record answers to a cassette file / answer from it offline), `%gemini cassette [off]`;
        `%gemini NAME [VALUE]` shows or sets a setting
        (model, system, temperature, max_tokens, thinking, show_thoughts, stream, stateless,
        offline, base_url, engine, ...), the same as `%config GeminiMagics.NAME = VALUE`.
        Without GEMINI_API_KEY the answers come from a small local offline model.
        """
        if cell is None:
            return self._line(line)
        return self._ask(line, cell)

    def _line(self, line: str) -> Any:
        words = line.strip().split(None, 1)
        if not words:
            print(self._status())
            return None
        head = words[0].lower().replace("-", "_")
        rest = words[1] if len(words) > 1 else None
        if head in _CASSETTE_COMMANDS:  # record/replay cassettes (replay.py)
            print(self._cassette_command(head, rest))
            return None
        if head in ("ui", "stop") and rest is None:  # the widgets panel; stop --ui answers
            from .widgets import line_command

            return line_command(self, head)
        if head in _COMMANDS and rest is None:
            if head == "history":
                print(self.conversation.history_text())
            elif head == "reset":
                self.conversation.reset()
                print("Conversation cleared: the next %%gemini cell starts a new one.")
            elif head == "settings":
                print(self._status())
            elif head == "last":
                return self.last_result
            else:
                print(self.gemini.__doc__)
            return None
        if head in SETTINGS:
            if rest is None:
                print(f"{head} = {getattr(self, head)!r}")
            else:
                print(self._set(head, rest))
            return None
        return self._ask(line, None)

    def _cassette_command(self, head: str, rest: Optional[str]) -> str:
        """`%gemini record PATH`, `%gemini replay PATH`, `%gemini cassette [PATH|off]`.

        Starting a cassette also starts a new conversation: a recording must not continue
        turns it does not hold, or its replay in a fresh kernel would miss the first request.
        """
        from . import replay

        words = _split_words(rest or "")
        if head == "cassette" and not words:
            return _cassette_state()
        if head == "cassette" and len(words) == 1 and words[0].lower() == "off":
            ejected = replay.eject()
            done = (f"Stopped using cassette {ejected.path}" if ejected is not None
                    else "No cassette was started with %gemini record/replay")
            try:
                env = replay.cassette_from_env()
            except replay.CassetteError as exc:
                return f"{done}; {exc}"
            if env is not None:
                return f"{done}; the {replay.ENV_CASSETTE} cassette {env.path} ({env.mode}) applies."
            return f"{done}: requests go to the backend as usual."
        if len(words) != 1:
            usage = "%gemini cassette off" if head == "cassette" else f"%gemini {head} PATH"
            raise GeminiError(f"Give one cassette file path, e.g. %gemini {head} "
                              f"answers.json (quote it if it has spaces), or use {usage}.")
        mode = "auto" if head == "cassette" else head
        try:
            cassette = replay.use_cassette(words[0], mode)
        except replay.CassetteError as exc:
            raise GeminiError(str(exc)) from None
        self.conversation.reset()
        if cassette.mode == "record":
            return (f"Recording every request and answer to {cassette.path} (API keys removed), "
                    f"starting a new conversation; %gemini cassette off stops recording.")
        n = cassette.exchange_count
        return (f"Replaying answers from {cassette.path} ({n} exchange{'s' if n != 1 else ''}), "
                f"starting a new conversation: no network, server or API key is used; "
                f"%gemini cassette off stops replaying.")

    def _status(self) -> str:
        lines = ["gemini-magics settings (change with %gemini NAME VALUE or %config GeminiMagics.NAME):"]
        for name in SETTINGS:
            lines.append(f"  {name} = {getattr(self, name)!r}")
        lines.append("  " + _cassette_state(short=True))
        turns = len(self.conversation.chain())
        lines.append(f"  conversation: {turns} turn{'s' if turns != 1 else ''} (%gemini history)")
        return "\n".join(lines)

    def _observers(self, request: Any) -> list:
        from .display import NotebookDisplay, TerminalDisplay

        mode = self.display
        if mode == "auto":
            mode = "terminal" if _is_terminal(self.shell) else "notebook"
        if mode == "terminal":
            return [TerminalDisplay(show_thoughts=request.show_thoughts)]
        return [NotebookDisplay(interval=self.update_interval, show_thoughts=request.show_thoughts)]

    def _ask(self, line: str, cell: Optional[str]) -> None:
        from .client import resolve_backend
        from .media import MediaError
        from .runner import run

        ns = self.shell.user_ns if self.shell is not None else {}
        try:
            if cell is None:
                request = _args.parse_line(line, self.settings())
            else:
                request = _args.parse(line, cell, self.settings())
            request = _args.with_parts(request, build_parts(request, ns))
        except (ArgsError, PromptError, MediaError) as exc:
            raise GeminiError(str(exc)) from None
        try:
            backend, notice = resolve_backend(self.settings())
        except Exception as exc:  # noqa: BLE001 - e.g. the local model cannot start
            if _is_cassette_error(exc):  # e.g. a bad GEMINI_MAGICS_RECORD_MODE
                raise GeminiError(str(exc)) from None
            raise GeminiError(
                f"Could not start the local offline server ({explain(exc).rstrip('.')}); set "
                f"GEMINI_API_KEY to use the real API, or %gemini engine echo for a test echo."
            ) from None
        if notice and not self._notice_shown:
            self._notice_shown = True
            print(notice)
        if request.ui:  # stream in the background into a live widget view (widgets.py)
            from .widgets import run_live

            run_live(self, request, backend, cell_id=current_cell_id(self.shell))
            return None
        result = run(
            request, backend=backend, observers=self._observers(request),
            cancel_event=self.cancel_event, conversation=self.conversation,
            cell_id=current_cell_id(self.shell), fast_stream=self.fast_stream,
        )
        self.last_result = result
        ns["_gemini"] = result
        if request.out:
            ns[request.out] = result
        if request.save and result.image_parts:
            _save(result, request.save)
        elif request.save and result.ok:
            print(f"Nothing saved: the answer has no images (image models such as "
                  f"gemini-3.1-flash-image draw them).")
        if result.error:
            raise GeminiError(result.error, result=result)
        if result.stopped:
            kept = " (the partial answer above is kept" if result.answer else " (nothing had arrived yet"
            raise GeminiError(f"Stopped{kept}, and this turn was not added to the "
                              f"conversation); re-run the cell to ask again.", result=result)
        return None


def build_parts(request: Any, user_ns: Any) -> list:
    """The prompt as content: --image and --file attachments first (Gemini's advice for media
    prompts), then the cell text with `{var}` media (PIL images, media bytes) placed where they
    are written. Every part is checked before anything is sent: MediaError on bad input."""
    from .media import check_inline_size, is_media_value, media_part, media_parts

    prompt = interpolate_parts(request.text, user_ns, keep=is_media_value)
    parts: list = []
    if request.images:
        parts += media_parts(request.images, kind="image", user_ns=user_ns)
    if request.files:
        parts += media_parts(request.files, kind="file", user_ns=user_ns)
    for p in prompt.parts:
        parts.append(p if isinstance(p, str) else media_part(p))
    check_inline_size([p for p in parts if isinstance(p, dict)])
    if not any(isinstance(p, dict) for p in parts):
        return prompt.parts
    return parts


def _save(result: Any, target: str) -> None:
    """--save: write the answer's images and say where (one line)."""
    from .images import ImageError

    try:
        paths = result.save_images(target)
    except ImageError as exc:
        raise GeminiError(str(exc), result=result) from None
    shown = ", ".join(str(p) for p in paths)
    print(f"Saved {len(paths)} image{'s' if len(paths) != 1 else ''}: {shown}")


def _is_cassette_error(exc: BaseException) -> bool:
    # By name: importing replay (httpx) here would slow down %load_ext.
    return any(c.__name__ == "CassetteError" for c in type(exc).__mro__)


def _split_words(text: str) -> list:
    import shlex

    try:
        return shlex.split(text)
    except ValueError:  # an unclosed quote: take the text as typed
        return text.split()


def _cassette_state(short: bool = False) -> str:
    """One line: which cassette requests go through, from `%gemini record/replay` or the env."""
    from . import replay

    prefix = "cassette: " if short else ""
    try:
        cassette = replay.current_cassette()
    except replay.CassetteError as exc:
        return f"{prefix}{exc}"
    if cassette is None:
        return (f"{prefix}none" if short else
                "No cassette: requests go to the backend as usual (start one with "
                "%gemini record PATH or %gemini replay PATH)")
    source = "" if replay._active is cassette else f" (from {replay.ENV_CASSETTE})"
    n = cassette.exchange_count
    verb = "recording to" if cassette.mode == "record" else "replaying from"
    line = f"{verb} {cassette.path}{source}, {n} exchange{'s' if n != 1 else ''}"
    return prefix + line if short else "Cassette: " + line


def _trait_hint(trait: Any, exc: Exception) -> str:
    values = getattr(trait, "values", None)
    if values:
        return "use one of " + ", ".join(str(v) for v in values)
    kind = type(trait).__name__
    return {"Float": "a number is needed", "Int": "a whole number is needed",
            "Bool": "use True or False"}.get(kind, str(exc).split("\n")[0])
