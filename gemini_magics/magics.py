"""The `%%gemini` cell magic and `%gemini` line magic: thin glue over cell.py and the runner.

The GeminiMagics traitlets hold the settings: `%config GeminiMagics.model = ...`, `%gemini model
NAME` and the widgets panel all read and write them. They are made from the settings rows of
the options table (options.py), where each setting is declared once. Everything else the kernel
keeps (the conversation, clients, cassette, jobs...) is in the magics' Session (session.py).
The line commands are one table, `LINE_COMMANDS`, which `%%gemini?` lists.
"""
from __future__ import annotations

import html
import shlex
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional

from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display
from traitlets import Float, Int, TraitError

from . import options, pricing, render, spend
from .agents_cmd import agents_table
from .args import ArgsError, cell_arguments, parse, parse_line
from .cell import backend_failure, complete, finish, resolve_names, warn_unknown_name
from .client import answers_offline, get_client, resolve_backend
from .conversation import Conversation, current_cell_id
from .display import NotebookDisplay, TerminalDisplay
from .errors import GeminiError, explain
from .options import REQUEST_DEFAULTS, SETTINGS
from .session import Session

__all__ = ["GeminiMagics", "LineCommand", "LINE_COMMANDS"]


def _is_terminal(shell: Any) -> bool:
    names = {c.__name__ for c in type(shell).__mro__}
    return "TerminalInteractiveShell" in names and getattr(shell, "kernel", None) is None


# -- the line commands -------------------------------------------------------------------------

@dataclass(frozen=True)
class LineCommand:
    """One row of `%gemini`'s commands: how the help lists it and what runs it.

    `run(magics, rest)` gets the text after the command word (None when there is none); a row
    without `run` only documents a form (`%gemini PROMPT`, a second usage of a command)."""

    usage: str                        # as the help lists it, e.g. "%gemini wait ID"
    help: str
    run: Optional[Callable[[Any, Optional[str]], Any]] = None
    takes_words: bool = False         # False: the word alone; followed by text it is a prompt

    @property
    def word(self) -> str:
        return self.usage.split()[1]


def _print(text_of: Callable[[Any], str]) -> Callable[[Any, Optional[str]], None]:
    """A command that prints one text made from the magics."""
    def run(m: Any, rest: Optional[str]) -> None:
        print(text_of(m))
    return run


def _reset(m: Any, rest: Optional[str]) -> None:
    m.session.conversation.reset()
    print("Conversation cleared: the next %%gemini cell starts a new one.")


def _widgets(word: str) -> Callable[[Any, Optional[str]], Any]:
    """`%gemini ui` and `%gemini stop` (widgets.py)."""
    def run(m: Any, rest: Optional[str]) -> Any:
        from .widgets import line_command  # deferred: ipywidgets

        return line_command(m, word)
    return run


def _usage(m: Any, rest: Optional[str]) -> Any:
    """`%gemini usage [reset]`: this session's calls, tokens and cost per model, and the total."""
    words = _split_words(rest or "")
    if words and [w.lower() for w in words] != ["reset"]:
        raise GeminiError("Use %gemini usage to see this session's usage and cost, or %gemini "
                          "usage reset to start counting again.")
    if words:
        spend.ledger(m.session).reset()
        print("Usage cleared: this session's calls, tokens and cost start again from zero "
              "(the budget counts from zero too).")
        return None
    print(spend.budget_line(m.session))
    return spend.usage_table(m.session)


def _prices(m: Any, rest: Optional[str]) -> None:
    """`%gemini prices [MODEL]`: the prices used, with their source and date."""
    words = _split_words(rest or "")
    if len(words) > 1:
        raise GeminiError("Give one model name, e.g. %gemini prices gemini-3.5-flash, or none "
                          "for the models of this session.")
    book = spend.ledger(m.session)
    with book.lock:
        used = [name for name, _ in book.lines]
    models = words or list(dict.fromkeys([m.model, *used]))
    try:
        override = pricing.parse_override(m.price_override)
    except ValueError:
        override = None
    print("\n".join(pricing.prices_text(name, override) for name in models))


def _jobs(m: Any, rest: Optional[str]) -> None:
    from . import jobs  # deferred: jobs loads the runner, whose function loop loads pydantic

    print(jobs.jobs_table(m.session))


def _agents_table(m: Any) -> str:
    return agents_table(m.session)


LINE_COMMANDS: tuple = (
    LineCommand("%gemini PROMPT", "ask in one line"),
    LineCommand("%gemini history", "the turns of the conversation so far",
                _print(lambda m: m.session.conversation.history_text())),
    LineCommand("%gemini reset", "start a new conversation", _reset),
    LineCommand("%gemini last", "the last result", lambda m, rest: m.session.last_result),
    LineCommand("%gemini settings", "every setting and its value", _print(lambda m: m._status())),
    LineCommand("%gemini NAME [VALUE]", "show or set a setting, the same as %config "
                "GeminiMagics.NAME = VALUE (%gemini NAME default restores it)"),
    LineCommand("%gemini ui", "a panel to pick the model and tools, ask, and stop",
                _widgets("ui")),
    LineCommand("%gemini stop", "stop the --ui answers still streaming",
                _widgets("stop")),
    LineCommand("%gemini jobs", "this kernel's --background jobs", _jobs),
    LineCommand("%gemini agents", "the custom agents on the backend (use one with "
                "%%gemini --agent NAME)", lambda m, rest: print(_agents_table(m))),
    LineCommand("%gemini wait ID", "follow a background job in this cell (also after a restart)",
                lambda m, rest: _job_command(m, "wait", rest), takes_words=True),
    LineCommand("%gemini wait batches/ID",
                "follow a --batch job of a --over cell (also after a restart)"),
    LineCommand("%gemini cancel ID", "cancel a background job on the server",
                lambda m, rest: _job_command(m, "cancel", rest), takes_words=True),
    LineCommand("%gemini record PATH", "record every request and answer to a cassette file",
                lambda m, rest: print(_cassette_command(m, "record", rest)), takes_words=True),
    LineCommand("%gemini replay PATH", "answer from a cassette file: no network, server or key",
                lambda m, rest: print(_cassette_command(m, "replay", rest)), takes_words=True),
    LineCommand("%gemini cassette [off]", "which cassette is in use; off stops using it",
                lambda m, rest: print(_cassette_command(m, "cassette", rest)), takes_words=True),
    LineCommand("%gemini usage [reset]", "this session's calls, tokens and cost per model; "
                "reset starts counting again", _usage, takes_words=True),
    LineCommand("%gemini budget USD|off", "a hard cap on what this session spends (the budget "
                "setting); off removes it"),
    LineCommand("%gemini prices [MODEL]", "the prices answers are priced at, their source and "
                "date", _prices, takes_words=True),
    LineCommand("%gemini help", "this help", _print(lambda m: m.gemini.__doc__)),
)
# -- #20 companion: %gemini fix, %gemini export (companion.py, export.py) -----------------------
from . import export as _export  # noqa: E402 - kept inside this block

LINE_COMMANDS = LINE_COMMANDS + (
    LineCommand("%gemini fix [WORDS]", "explain the last failing cell and put the corrected "
                "code into a new cell below (not run); %%gemini fix adds the cell's words",
                lambda m, rest: m._ask("--fix", rest) if rest and not rest.startswith("-")
                else m._ask(f"--fix {rest or ''}".strip(), None), takes_words=True),
    LineCommand("%gemini export PATH", "write the conversation to a .md, .ipynb or .json file",
                lambda m, rest: print(_export.command(m, rest)), takes_words=True),
)
# -- end #20 companion -------------------------------------------------------------------------
_RUNS = {c.word: c for c in LINE_COMMANDS if c.run is not None}


@magics_class
class GeminiMagics(Magics):
    """Gemini Interactions API in notebook cells (`%%gemini`) and lines (`%gemini`)."""

    # The settings: one traitlet per setting row of the options table (model, system, ...,
    # poll_interval), with the validators of its rows; put in the class body so that they are
    # GeminiMagics' own traits, as `%config GeminiMagics` lists them.
    locals().update(options.traits())

    def __init__(self, shell: Any = None, **kwargs: Any):
        super().__init__(shell=shell, **kwargs)
        self.session = Session(read_settings=self.settings, read_namespace=self._ns)
        _own_help(shell)
        # Set by a caller (the widgets panel) to stop the running cell from another thread.
        self.cancel_event: Optional[threading.Event] = None

    # widgets.py reads these two through the magics; they are the session's.
    @property
    def conversation(self) -> Conversation:
        return self.session.conversation

    @property
    def last_result(self) -> Any:
        return self.session.last_result

    @last_result.setter
    def last_result(self, value: Any) -> None:
        self.session.last_result = value

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
            elif value.strip().lower() in ("off", "none") and isinstance(trait, (Float, Int)):
                new = None  # e.g. %gemini budget off (traitlets refuse it unless allow_none)
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

    def _status(self) -> str:
        lines = ["gemini-magics settings (change with %gemini NAME VALUE or %config GeminiMagics.NAME):"]
        for name in SETTINGS:
            lines.append(f"  {name} = {getattr(self, name)!r}")
        lines.append("  " + _cassette_state(self.session, short=True))
        turns = len(self.session.conversation.chain())
        lines.append(f"  conversation: {turns} turn{'s' if turns != 1 else ''} (%gemini history)")
        return "\n".join(lines)

    # -- the magic -------------------------------------------------------------------------------
    @line_cell_magic
    @cell_arguments(tuple((c.usage, c.help) for c in LINE_COMMANDS))
    def gemini(self, line: str, cell: Optional[str] = None) -> None:
        """Ask Gemini: the cell (or the rest of the line) is the prompt.

        IPython replaces this docstring with the help that `%%gemini?` and `%gemini help`
        show, made by args.cell_arguments from the options table and LINE_COMMANDS.
        """
        if cell is None:
            return self._line(line)
        return self._ask(line, cell)

    def _line(self, line: str) -> Any:
        """A line command of LINE_COMMANDS, a setting (`%gemini NAME [VALUE]`) or a prompt."""
        words = line.strip().split(None, 1)
        if not words:
            print(self._status())
            return None
        head = words[0].lower().replace("-", "_")
        rest = words[1] if len(words) > 1 else None
        command = _RUNS.get(head)
        if command is not None and (rest is None or command.takes_words):
            return command.run(self, rest)
        if head in SETTINGS:
            print(f"{head} = {getattr(self, head)!r}" if rest is None else self._set(head, rest))
            return None
        return self._ask(line, None)

    def _ask(self, line: str, cell: Optional[str]) -> None:
        """A prompt: parsed once into a Request, which every path below is given."""
        from .runner import run  # deferred: the runner's function loop loads pydantic

        ns = self._ns()
        settings = self.session.settings()
        try:  # --over first: its template's {column}s are not notebook variables
            request = parse_line(line, settings) if cell is None else parse(line, cell, settings)
        except ArgsError as exc:
            raise GeminiError(str(exc)) from None
        if request.over or request.batch or not request.cache:
            return _over(self, request, ns)
        request = complete(request, ns)
        warn_unknown_name(request, answers_offline(settings, self.session), self.session)
        if request.estimate is not None:  # nothing is generated
            return _estimate(self, request, [request])
        spend.check_before(self.session, request)
        backend = self._backend()
        if request.background:  # a server-side job, followed by a poller thread (jobs.py)
            return _background(self, request, backend)
        if request.ui:  # stream in the background into a live widget view (widgets.py)
            from .widgets import run_live  # deferred: ipywidgets

            run_live(self, request, backend, cell_id=current_cell_id(self.shell))
            return None
        # The guard first: it prices the answer (and stops it at the budget) before the
        # display writes the footer.
        guard = spend.Guard(self.session, request, self.cancel_event)
        result = run(
            request, backend=backend, observers=[guard, *self._observers(request)],
            cancel_event=guard.cancel_event, conversation=self.session.conversation,
            cell_id=current_cell_id(self.shell), fast_stream=self.fast_stream,
            session=self.session,
        )
        self._finish(request, result, ns)
        if result.error:  # a stop asked for is no error: the display said so above the footer
            raise GeminiError(result.error, result=result)
        return None

    # -- what the commands and paths share ---------------------------------------------------------
    def _ns(self) -> Any:
        """The notebook's variables ({} without a shell)."""
        return self.shell.user_ns if self.shell is not None else {}

    def display_mode(self) -> str:
        """The display setting as "notebook" or "terminal" ("auto": decided by the shell)."""
        mode = self.display
        if mode == "auto":
            mode = "terminal" if _is_terminal(self.shell) else "notebook"
        return mode

    def _observers(self, request: Any) -> list:
        style = render.style_for(request)._asdict()  # the same style every driver renders with
        if self.display_mode() == "terminal":
            return [TerminalDisplay(sent=request, **style)]
        return [NotebookDisplay(interval=self.update_interval, sent=request, **style)]

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
            backend, notice = resolve_backend(self.session.settings(), self.session)
        except Exception as exc:  # noqa: BLE001 - e.g. the local model cannot start
            if _is_cassette_error(exc):  # e.g. a bad GEMINI_MAGICS_RECORD_MODE
                raise GeminiError(str(exc)) from None
            raise GeminiError(backend_failure(exc)) from None
        if notice:  # said once per session (resolve_backend), as a note like the others
            self._note(notice)
        return backend

    def _finish(self, request: Any, result: Any, ns: Any) -> None:
        """`_gemini`, `%gemini last`, `--out` (the parsed value with --schema), `--save`."""
        saved = finish(request, result, ns, self.session)
        if saved:
            print(saved)

    def _took(self, value: Any) -> None:
        """`value` is the newest result: `%gemini last` and `_gemini`."""
        self.session.last_result = value
        self._ns()["_gemini"] = value


def _own_help(shell: Any) -> None:
    """`%%gemini?` shows our help as written, without the inspector's "Docstring:" and "File:"
    frame: IPython's pager (`?`), JupyterLab's and Notebook 7's help payload and the contextual
    help all come from `shell.inspector._get_info`, which this wraps once per shell (`??`
    still shows the source)."""
    inspector = getattr(shell, "inspector", None)
    if inspector is None or getattr(inspector._get_info, "gemini_help", False):
        return
    original = inspector._get_info

    def get_info(obj: Any, oname: str = "", formatter: Any = None, info: Any = None,
                 detail_level: int = 0, omit_sections: Any = ()) -> dict:
        owner = getattr(obj, "__self__", None)
        if (not detail_level and getattr(obj, "__name__", "") == "gemini"
                and type(owner).__name__ == "GeminiMagics" and obj.__doc__):
            return {"text/plain": obj.__doc__, "text/html": f"<pre>{html.escape(obj.__doc__)}</pre>"}
        return original(obj, oname, formatter, info, detail_level, omit_sections=omit_sections)

    get_info.gemini_help = True  # type: ignore[attr-defined]
    inspector._get_info = get_info


# -- background jobs ---------------------------------------------------------------------------

def _background(m: GeminiMagics, request: Any, backend: Any) -> None:
    """--background: create the job, show its live status, return at once."""
    from . import jobs  # deferred: jobs loads the runner, whose function loop loads pydantic

    ns = m._ns()
    notebook = m.display_mode() == "notebook"

    def on_result(result: Any) -> None:  # on the poller thread, when the job ends
        spend.record(m.session, result)
        m._finish(request, result, ns)

    try:
        job = jobs.start_job(request, client=get_client(backend, m.session),
                             backend_label=backend.label, conversation=m.session.conversation,
                             cell_id=current_cell_id(m.shell), poll_interval=m.poll_interval,
                             on_result=on_result, show=notebook, session=m.session)
    except Exception as exc:  # noqa: BLE001 - one sentence, nothing was started
        raise GeminiError(f"The background job was not started: "
                          f"{explain(exc, model=request.model, where=backend.label)}") from None
    ns["_gemini_job"] = job
    if request.out:  # bound at once to the live result (it becomes the answer)
        ns[request.out] = job.live
    if not notebook:
        print(f"Started background job {job.id}; %gemini wait {job.id} shows the answer, "
              f"%gemini cancel {job.id} stops it.")
    return None


def _job_command(m: GeminiMagics, head: str, rest: Optional[str]) -> Any:
    """`%gemini wait ID`, `%gemini cancel ID` (background jobs; `wait batches/ID`: a batch)."""
    from . import jobs  # deferred: jobs loads the runner, whose function loop loads pydantic

    words = _split_words(rest or "")
    if len(words) != 1:
        raise GeminiError(f"Give one background job id, e.g. %gemini {head} v1_abc "
                          f"(%gemini jobs lists them).")
    ident = words[0]
    if ident.startswith("batches/") and head == "wait":
        return _wait_batch(m, ident)
    known = jobs.find_job(ident, m.session)
    try:
        backend, _ = resolve_backend(m.session.settings(), m.session)
        client = get_client(backend, m.session)
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
                            poll_interval=m.poll_interval, show=m.display_mode() == "notebook",
                            session=m.session)
    except KeyboardInterrupt:  # the stop button stops the waiting, not the job
        m._note(f"Stopped waiting; background job {ident} goes on on the server "
                f"(%gemini wait {ident} follows it again).")
        return None
    if job.problem:
        raise GeminiError(f"Background job {ident} {job.problem}")
    result = job.result
    if result is None:
        return None
    m._took(result)
    if m.display_mode() == "terminal":
        structured = render.Style(structured=bool(getattr(job.request, "schema", None)))
        print(render.markdown(result, structured)[1])
    if result.error:
        raise GeminiError(result.error, result=result)
    return None


# -- rows: --over and --batch ------------------------------------------------------------------

def _over(m: GeminiMagics, request: Any, ns: Any) -> None:
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
    if request.estimate is not None:
        return _estimate(m, request, [r.request for r in rendered], read, rendered)
    spend.check_before(m.session, request)
    backend = m._backend()
    if request.batch:
        return _batch(m, request, read, rendered, backend, ns)
    value, run = rows.run_over(request, read, rendered, backend, m.session.settings(),
                               progress=m.progress)
    _rows_done(m, request, value, run, read, ns)
    return None


def _estimate(m: GeminiMagics, request: Any, requests: list, read: Any = None,
              rendered: Optional[list] = None) -> None:
    """`--estimate [N]`: count the input tokens of the cell (or of every row), run N sample
    rows if asked, and print the expected cost per tier and the time; nothing else is sent."""
    backend = m._backend()
    sample: list = []
    if request.estimate and rendered:  # the sample rows are real answers: they are billed
        from . import rows  # deferred: rows loads the runner (pydantic)

        spend.check_before(m.session, request)
        n = min(request.estimate, len(rendered))
        part = read._replace(labels=read.labels[:n], fields=read.fields[:n],
                             source=read.source.iloc[:n] if read.kind == "frame" else None)
        _, run = rows.run_over(request, part, rendered[:n], backend, m.session.settings(),
                               progress=False)
        _record_rows(m, run)
        sample = [r for r in run.results if r is not None]
    counter = spend.api_counter(get_client(backend, m.session), request.model,
                                request.concurrency or 1, offline=backend.kind == "local")
    try:
        override = pricing.parse_override(m.price_override)
    except ValueError:
        override = None
    found = spend.estimate([spend.prompt_text(r) for r in requests], request.model,
                           concurrency=request.concurrency or 1, counter=counter,
                           sample=sample, max_tokens=request.max_tokens, override=override)
    print(found.text())
    return None


def _rows_done(m: GeminiMagics, request: Any, value: Any, run: Any, read: Any, ns: Any,
               handle: Any = None) -> None:
    """An --over run's value to `_gemini` and -o; its preview, then its summary line, the same
    for --batch (the preview replaces the batch's status line)."""
    from . import rows  # deferred: rows loads the runner (pydantic)

    _record_rows(m, run, "batch" if request.batch else None)
    m.session.last_result = value
    ns["_gemini"] = value
    if request.out:
        ns[request.out] = value
    shown = rows.preview(value, read)
    line = rows.summary(run)
    if handle is not None:  # the preview takes the status line's place: the summary follows
        data, metadata = m.shell.display_formatter.format(shown)
        handle.update(data, metadata=metadata, raw=True)
    elif m.display_mode() == "terminal" or isinstance(shown, str):
        print(shown)
    else:
        display(shown)
    m._note(line)


def _record_rows(m: GeminiMagics, run: Any, tier: Optional[str] = None) -> None:
    """The rows answered now (not those from the cache) into the session's usage (once: rows
    already recorded as they arrived are not counted again)."""
    for i, result in enumerate(run.results):
        if result is not None and i not in run.cached:
            spend.record(m.session, result, tier=tier)


def _batch(m: GeminiMagics, request: Any, read: Any, rendered: list, backend: Any,
           ns: Any) -> None:
    """--batch: the rows go to the Batch API; a status line follows the job, and when it
    ends -o / _gemini are filled and the preview and summary replace the status."""
    from . import batch  # deferred: batch loads the runner (pydantic)

    notebook = m.display_mode() == "notebook"
    handle = display({"text/plain": "Starting the batch…"}, raw=True,
                     display_id=True) if notebook else None

    def on_status(job: Any) -> None:
        if handle is not None:
            handle.update(job.status_bundle(), raw=True)

    def on_done(job: Any) -> None:
        if job.problem:
            if handle is not None:
                handle.update({"text/plain": f"⚠️ Batch {job.name} {job.problem}"}, raw=True)
            return
        _rows_done(m, request, job.value, job.run, read, ns, handle)

    job = batch.start_batch(request, read, rendered, backend, m.session.settings(),
                            poll_interval=m.poll_interval, on_status=on_status, on_done=on_done,
                            session=m.session)
    if job.client is None:  # every row came from the cache
        from . import rows  # deferred: rows loads the runner (pydantic)

        _rows_done(m, request, rows.assemble(read, job.run, request), job.run, read, ns, handle)
        return None
    ns["_gemini_batch"] = job
    on_status(job)
    if not notebook:
        print(f"Started batch {job.name}; %gemini wait {job.name} shows the answers.")
    return None


def _wait_batch(m: GeminiMagics, name: str) -> None:
    """`%gemini wait batches/ID`: wait for a --batch job; `_gemini` gets its value."""
    from . import batch  # deferred: batch loads the runner (pydantic)

    try:
        value = batch.wait_batch(name, m._backend(), m.session.settings(),
                                 poll_interval=m.poll_interval, session=m.session)
    except KeyboardInterrupt:
        m._note(f"Stopped waiting; batch {name} goes on on the server "
                f"(%gemini wait {name} follows it again).")
        return None
    m._took(value)
    n = len(value)
    m._note(f"Batch {name} ended: {n} row{'s' if n != 1 else ''} in _gemini "
            f"(their answers are in the row cache: re-running the --batch cell uses them).")
    return None


# -- cassettes ---------------------------------------------------------------------------------

def _cassette_command(m: GeminiMagics, head: str, rest: Optional[str]) -> str:
    """`%gemini record PATH`, `%gemini replay PATH`, `%gemini cassette [PATH|off]`.

    Starting a cassette also starts a new conversation: a recording must not continue
    turns it does not hold, or its replay in a fresh kernel would miss the first request.
    """
    from . import replay  # deferred: replay loads httpx

    session = m.session
    words = _split_words(rest or "")
    if head == "cassette" and not words:
        return _cassette_state(session)
    if head == "cassette" and len(words) == 1 and words[0].lower() == "off":
        ejected = session.eject()
        done = (f"Stopped using cassette {ejected.path}" if ejected is not None
                else "No cassette was started with %gemini record/replay")
        try:
            env = session.current_cassette()
        except replay.CassetteError as exc:
            return f"{done}; {exc}"
        if env is not None:
            return f"{done}; the {replay.ENV_CASSETTE} cassette {env.path} ({env.mode}) applies."
        return f"{done}: requests go to the backend as usual."
    if len(words) != 1:
        usage = "%gemini cassette off" if head == "cassette" else f"%gemini {head} PATH"
        raise GeminiError(f"Give one cassette file path, e.g. %gemini {head} "
                          f"answers.json (quote it if it has spaces), or use {usage}.")
    try:
        cassette = session.use_cassette(words[0], "auto" if head == "cassette" else head)
    except replay.CassetteError as exc:
        raise GeminiError(str(exc)) from None
    session.conversation.reset()
    if cassette.mode == "record":
        return (f"Recording every request and answer to {cassette.path} (API keys removed), "
                f"starting a new conversation; %gemini cassette off stops recording.")
    n = cassette.exchange_count
    return (f"Replaying answers from {cassette.path} ({n} exchange{'s' if n != 1 else ''}), "
            f"starting a new conversation: no network, server or API key is used; "
            f"%gemini cassette off stops replaying.")


def _cassette_state(session: Session, short: bool = False) -> str:
    """One line: which cassette requests go through, from `%gemini record/replay` or the env."""
    from . import replay  # deferred: replay loads httpx

    prefix = "cassette: " if short else ""
    try:
        cassette = session.current_cassette()
    except replay.CassetteError as exc:
        return f"{prefix}{exc}"
    if cassette is None:
        return (f"{prefix}none" if short else
                "No cassette: requests go to the backend as usual (start one with "
                "%gemini record PATH or %gemini replay PATH)")
    source = "" if session.cassette is cassette else f" (from {replay.ENV_CASSETTE})"
    n = cassette.exchange_count
    verb = "recording to" if cassette.mode == "record" else "replaying from"
    line = f"{verb} {cassette.path}{source}, {n} exchange{'s' if n != 1 else ''}"
    return prefix + line if short else "Cassette: " + line


def _is_cassette_error(exc: BaseException) -> bool:
    # By name: importing replay (httpx) here would slow down %load_ext.
    return any(c.__name__ == "CassetteError" for c in type(exc).__mro__)


def _split_words(text: str) -> list:
    try:
        return shlex.split(text)
    except ValueError:  # an unclosed quote: take the text as typed
        return text.split()


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
