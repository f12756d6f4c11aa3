"""The `%%gemini` cell magic and `%gemini` line magic: thin glue over cell.py and the runner.

The GeminiMagics traitlets hold the settings: `%config GeminiMagics.model = ...`, `%gemini model
NAME` and the widgets panel all read and write them. They are made from the settings rows of
the options table (options.py), where each setting is declared once.
"""
from __future__ import annotations

import shlex
import threading
from typing import Any, Optional

from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display
from traitlets import TraitError

from . import options, render
from .args import ArgsError, cell_arguments, parse, parse_line
from .cell import backend_failure, finish, prepare, resolve_names
from .client import get_client, resolve_backend
from .conversation import Conversation, current_cell_id
from .display import NotebookDisplay, TerminalDisplay
from .errors import GeminiError, explain
from .options import REQUEST_DEFAULTS, SETTINGS

__all__ = ["GeminiMagics"]

_COMMANDS = ("history", "reset", "settings", "last", "help", "jobs")
_JOB_COMMANDS = ("wait", "cancel")  # followed by an interaction id
_CASSETTE_COMMANDS = ("record", "replay", "cassette")


def _is_terminal(shell: Any) -> bool:
    names = {c.__name__ for c in type(shell).__mro__}
    return "TerminalInteractiveShell" in names and getattr(shell, "kernel", None) is None


@magics_class
class GeminiMagics(Magics):
    """Gemini Interactions API in notebook cells (`%%gemini`) and lines (`%gemini`)."""

    # The settings: one traitlet per setting row of the options table (model, system, ...,
    # poll_interval), with the validators of its rows; put in the class body so that they are
    # GeminiMagics' own traits, as `%config GeminiMagics` lists them.
    locals().update(options.traits())

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
            raise GeminiError(f"Cannot set {name} to {value.strip()!r} "
                              f"({_trait_hint(trait, exc)}).") from None
        if name in REQUEST_DEFAULTS:
            try:
                parse("", "x", self.settings())
            except ArgsError as exc:
                setattr(self, name, old)
                raise GeminiError(str(exc)) from None
        return f"{name} = {getattr(self, name)!r}"

    # -- the magic -------------------------------------------------------------------------------
    @line_cell_magic
    @cell_arguments
    def gemini(self, line: str, cell: Optional[str] = None) -> None:
        """Ask Gemini: the cell (or the rest of the line) is the prompt.

        IPython replaces this docstring with the help that `%%gemini?` and `%gemini help`
        show, made by args.cell_arguments from the options table.
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
            from .widgets import line_command  # deferred: ipywidgets

            return line_command(self, head)
        if head in _JOB_COMMANDS or (head == "jobs" and rest is None):
            return self._job_command(head, rest)
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
        from . import replay  # deferred: replay loads httpx

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

    def display_mode(self) -> str:
        """The display setting as "notebook" or "terminal" ("auto": decided by the shell)."""
        mode = self.display
        if mode == "auto":
            mode = "terminal" if _is_terminal(self.shell) else "notebook"
        return mode

    def _observers(self, request: Any) -> list:
        style = render.style_for(request)._asdict()  # the same style every driver renders with
        if self.display_mode() == "terminal":
            return [TerminalDisplay(**style)]
        return [NotebookDisplay(interval=self.update_interval, **style)]

    def _job_command(self, head: str, rest: Optional[str]) -> Any:
        """`%gemini jobs`, `%gemini wait ID`, `%gemini cancel ID` (background jobs)."""
        from . import jobs  # deferred: jobs loads the runner, whose function loop loads pydantic

        if head == "jobs":
            print(jobs.jobs_table())
            return None
        words = _split_words(rest or "")
        if len(words) != 1:
            raise GeminiError(f"Give one background job id, e.g. %gemini {head} v1_abc "
                              f"(%gemini jobs lists them).")
        ident = words[0]
        if ident.startswith("batches/") and head == "wait":
            return self._wait_batch(ident)
        known = jobs.find_job(ident)
        try:
            backend, _ = resolve_backend(self.settings())
            client = get_client(backend)
        except Exception as exc:  # noqa: BLE001 - e.g. the local model cannot start
            raise GeminiError(f"Could not reach a backend for job {ident} "
                              f"({explain(exc).rstrip('.')}).") from None
        label = backend.label
        if known is not None:
            client, label = known.client, known.backend_label  # where it was started
        if head == "cancel":
            print(jobs.cancel_job(ident, client=client, backend_label=label))
            return None
        try:
            job = jobs.wait_job(ident, client=client, backend_label=label,
                                poll_interval=self.poll_interval,
                                show=self.display_mode() == "notebook")
        except KeyboardInterrupt:  # the stop button stops the waiting, not the job
            self._note(f"Stopped waiting; background job {ident} goes on on the server "
                       f"(%gemini wait {ident} follows it again).")
            return None
        if job.problem:
            raise GeminiError(f"Background job {ident} {job.problem}")
        result = job.result
        if result is None:
            return None
        self.last_result = result
        if self.shell is not None:
            self.shell.user_ns["_gemini"] = result
        if self.display_mode() == "terminal":
            structured = render.Style(structured=bool(getattr(job.request, "schema", None)))
            print(render.markdown(result, structured)[1])
        if result.error:
            raise GeminiError(result.error, result=result)
        return None

    def _ask(self, line: str, cell: Optional[str]) -> None:
        from .runner import run  # deferred: the runner's function loop loads pydantic

        ns = self.shell.user_ns if self.shell is not None else {}
        try:  # --over first: its template's {column}s are not notebook variables
            parsed = parse_line(line, self.settings()) if cell is None else parse(
                line, cell, self.settings())
        except ArgsError as exc:
            raise GeminiError(str(exc)) from None
        if parsed.over or parsed.batch or not parsed.cache:
            return self._over(parsed, ns)
        request = prepare(line, cell, self.settings(), ns)
        backend = self._backend()
        if request.background:  # a server-side job, followed by a poller thread (jobs.py)
            return self._background(request, backend)
        if request.ui:  # stream in the background into a live widget view (widgets.py)
            from .widgets import run_live  # deferred: ipywidgets

            run_live(self, request, backend, cell_id=current_cell_id(self.shell))
            return None
        result = run(
            request, backend=backend, observers=self._observers(request),
            cancel_event=self.cancel_event, conversation=self.conversation,
            cell_id=current_cell_id(self.shell), fast_stream=self.fast_stream,
        )
        self._finish(request, result, ns)
        if result.error:  # a stop asked for is no error: the display said so above the footer
            raise GeminiError(result.error, result=result)
        return None

    def _over(self, request: Any, ns: Any) -> None:
        """`--over NAME`: the cell is a template run once per row (rows.py); the preview and a
        one-line summary are shown, `_gemini` and `-o` get the DataFrame / list / dict."""
        from . import rows  # deferred: rows loads the runner (pydantic), pandas when given one

        rows.check_row_options(request)
        try:
            resolve_names(request, ns)
        except ArgsError as exc:
            raise GeminiError(str(exc)) from None
        read = rows.read_rows(rows.lookup_rows(request.over, ns), request.over)
        rendered = rows.render_rows(request, read, ns)  # every row, before anything is sent
        backend = self._backend()
        if request.batch:
            return self._batch(request, read, rendered, backend, ns)
        value, run = rows.run_over(request, read, rendered, backend, self.settings(),
                                   progress=self.progress)
        self._rows_done(request, value, run, read, ns)
        return None

    def _rows_done(self, request: Any, value: Any, run: Any, read: Any, ns: Any,
                   handle: Any = None) -> None:
        """An --over run's value to `_gemini` and -o; its preview and summary shown (into
        `handle` when a --batch status line is there)."""
        from . import rows  # deferred: rows loads the runner (pydantic)

        self.last_result = value
        ns["_gemini"] = value
        if request.out:
            ns[request.out] = value
        shown = rows.preview(value, read)
        line = rows.summary(run)
        if handle is not None:
            handle.update({"text/markdown": f"*{render.md_escape(line)}*", "text/plain": line},
                          raw=True)
            display(shown)
            return
        if self.display_mode() == "terminal" or isinstance(shown, str):
            print(shown)
        else:
            display(shown)
        self._note(line)

    def _batch(self, request: Any, read: Any, rendered: list, backend: Any, ns: Any) -> None:
        """--batch: the rows go to the Batch API; a status line follows the job, and when it
        ends -o / _gemini are filled and the preview and summary replace the status."""
        from . import batch  # deferred: batch loads the runner (pydantic)

        notebook = self.display_mode() == "notebook"
        handle = display({"text/plain": "Starting the batch…"}, raw=True,
                         display_id=True) if notebook else None

        def on_status(job: Any) -> None:
            if handle is not None:
                handle.update({"text/plain": job.status_line()}, raw=True)

        def on_done(job: Any) -> None:
            if job.problem:
                if handle is not None:
                    handle.update({"text/plain": f"⚠️ Batch {job.name} {job.problem}"}, raw=True)
                return
            self._rows_done(request, job.value, job.run, read, ns, handle)

        job = batch.start_batch(request, read, rendered, backend, self.settings(),
                                poll_interval=self.poll_interval, on_status=on_status,
                                on_done=on_done)
        if job.client is None:  # every row came from the cache
            from . import rows  # deferred: rows loads the runner (pydantic)

            self._rows_done(request, rows.assemble(read, job.run, request), job.run, read, ns,
                            handle)
            return None
        ns["_gemini_batch"] = job
        on_status(job)
        if not notebook:
            print(f"Started batch {job.name}; %gemini wait {job.name} shows the answers.")
        return None

    def _wait_batch(self, name: str) -> None:
        """`%gemini wait batches/ID`: wait for a --batch job; `_gemini` gets its value."""
        from . import batch  # deferred: batch loads the runner (pydantic)

        try:
            value = batch.wait_batch(name, self._backend(), self.settings(),
                                     poll_interval=self.poll_interval)
        except KeyboardInterrupt:
            self._note(f"Stopped waiting; batch {name} goes on on the server "
                       f"(%gemini wait {name} follows it again).")
            return None
        self.last_result = value
        if self.shell is not None:
            self.shell.user_ns["_gemini"] = value
        n = len(value)
        self._note(f"Batch {name} ended: {n} row{'s' if n != 1 else ''} in _gemini "
                   f"(their answers are in the row cache: re-running the --batch cell uses them).")
        return None

    def _note(self, text: str, markdown: Optional[str] = None) -> None:
        """One neutral line after the cell's output (a stop asked for is not an error): in a
        notebook as Markdown (`markdown`, else `text` in italics), in a terminal as `text`."""
        if self.display_mode() == "terminal":
            print(text)
        else:
            display({"text/markdown": markdown or f"*{render.md_escape(text)}*",
                     "text/plain": text}, raw=True)

    def _backend(self) -> Any:
        """The backend the settings pick (the offline notice once); GeminiError if none starts."""
        try:
            backend, notice = resolve_backend(self.settings())
        except Exception as exc:  # noqa: BLE001 - e.g. the local model cannot start
            if _is_cassette_error(exc):  # e.g. a bad GEMINI_MAGICS_RECORD_MODE
                raise GeminiError(str(exc)) from None
            raise GeminiError(backend_failure(exc)) from None
        if notice and not self._notice_shown:
            self._notice_shown = True
            print(notice)
        return backend

    def _finish(self, request: Any, result: Any, ns: Any) -> None:
        """`_gemini`, `%gemini last`, `--out` (the parsed value with --schema), `--save`."""
        saved = finish(request, result, ns, self)
        if saved:
            print(saved)

    def _background(self, request: Any, backend: Any) -> None:
        """--background: create the job, show its live status, return at once."""
        from . import jobs  # deferred: jobs loads the runner, whose function loop loads pydantic

        ns = self.shell.user_ns if self.shell is not None else {}
        notebook = self.display_mode() == "notebook"

        def on_result(result: Any) -> None:  # on the poller thread, when the job ends
            self._finish(request, result, ns)

        try:
            job = jobs.start_job(request, client=get_client(backend), backend_label=backend.label,
                                 conversation=self.conversation,
                                 cell_id=current_cell_id(self.shell),
                                 poll_interval=self.poll_interval, on_result=on_result,
                                 show=notebook)
        except Exception as exc:  # noqa: BLE001 - one sentence, nothing was started
            raise GeminiError(f"The background job was not started: "
                              f"{explain(exc, model=request.model, where=backend.label)}") from None
        ns["_gemini_job"] = job
        if not notebook:
            print(f"Started background job {job.id}; %gemini wait {job.id} shows the answer, "
                  f"%gemini cancel {job.id} stops it.")
        return None


def _is_cassette_error(exc: BaseException) -> bool:
    # By name: importing replay (httpx) here would slow down %load_ext.
    return any(c.__name__ == "CassetteError" for c in type(exc).__mro__)


def _split_words(text: str) -> list:
    try:
        return shlex.split(text)
    except ValueError:  # an unclosed quote: take the text as typed
        return text.split()


def _cassette_state(short: bool = False) -> str:
    """One line: which cassette requests go through, from `%gemini record/replay` or the env."""
    from . import replay  # deferred: replay loads httpx

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
    """Why a value was refused: the setting's own sentence (its validator in the options
    table), else what its type takes."""
    if isinstance(exc, options.SettingError):
        return str(exc).rstrip(".")
    values = getattr(trait, "values", None)
    if values:
        return "use one of " + ", ".join(str(v) for v in values)
    kind = type(trait).__name__
    return {"Float": "a number is needed", "Int": "a whole number is needed",
            "Bool": "use True or False"}.get(kind, str(exc).split("\n")[0])
