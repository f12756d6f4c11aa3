"""`--over NAME` and `gemini_magics.map`: one prompt template, one independent turn per row.

The rows (a DataFrame, Series, list/tuple or dict) are read once (`read_rows`), every row's
request is rendered before anything is sent (`render_rows`: a bad field is one sentence, not a
half-done run), then worker threads send them (`send_rows`): at most `concurrency` at once,
fewer while the server answers 429 (the `Gate`: halve, wait what Retry-After / RetryInfo says,
grow back one at a time), each row retried on 5xx, timeouts and dropped connections (a stream
that drops is first resumed while the server still has it: `sender.RowSender`). A failing
row keeps its sentence and never stops the others; a stop (KeyboardInterrupt) returns the rows
done. Every finished row goes to the row cache (rowcache.py) as it ends, so a re-run sends only
the rows not done. `assemble` puts the answers back in input order: for a DataFrame a new
DataFrame (the input, then `gemini` or one column per --schema field, `gemini_error` and token
columns), for a list a list of results, for a dict a dict of results.

Rows are independent turns: `store=false`, never added to the conversation. pandas is only
needed for DataFrame/Series input (and for the preview of a list).
"""
from __future__ import annotations

import copy
import dataclasses
import html
import os
import queue
import random
import re
import threading
import time
from collections import ChainMap
from typing import Any, Callable, Mapping, NamedTuple, Optional

from .args import ArgsError, parse
from .cell import build_parts, lookup_dotted, resolve_names
from .client import Backend, get_client, resolve_backend
from .conversation import user_step
from . import spend
from .errors import GeminiError, explain, is_connection_error, status_code
from .media import MediaError
from .options import SETTINGS
from .prompt import PromptError
from .request import Request
from .result import GeminiResult
from .rowcache import DefaultCache, open_cache, request_key
from .runner import build_result, structured_value
from .sender import Link, RowSender, resumed_note
from .session import current
from .stream import Accumulator

__all__ = ["read_rows", "render_rows", "send_rows", "assemble", "run_over", "map_rows",
           "check_row_options", "summary", "Rows", "RowRun", "Gate", "cache_value", "cached_result",
           "take_cached", "preview", "lookup_rows", "backend_id", "row_cache"]

ROW_RETRIES = 3            # attempts after the first for 5xx, timeouts, dropped connections
MAX_RATE_WAITS = 30        # 429s one row waits out before it fails with the 429 sentence
BACKOFF_S = (0.5, 1.0, 2.0, 4.0)
DEFAULT_429_WAIT_S = 1.0   # a 429 without Retry-After or RetryInfo
MAX_WAIT_S = 60.0
STOPPED = ("Not sent: the run was stopped; re-run the cell to send the rest (finished rows come "
           "from the cache).")
_MISSING = re.compile(r"there is no variable named '([^']+)'")


class Rows(NamedTuple):
    """The input, read once: its kind, each row's label and template fields."""

    kind: str          # "frame", "list" or "dict"
    source: Any        # the DataFrame (a Series made into one), the list, the dict
    labels: list       # {index} of each row
    fields: list       # each row's {column}s (and {item})
    names: tuple       # the field names, for messages


def _is_frame(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "itertuples")


def _is_series(obj: Any) -> bool:
    return type(obj).__name__ == "Series" and hasattr(obj, "to_frame")


def read_rows(obj: Any, name: str = "the rows") -> Rows:
    """The rows of a DataFrame, Series, list/tuple or dict; GeminiError for anything else."""
    if _is_series(obj):
        col = obj.name if isinstance(obj.name, str) and obj.name else "item"
        frame = obj.to_frame(name=col)
        rows = read_rows(frame, name)
        for f in rows.fields:
            f["item"] = f[col]
        return rows._replace(names=tuple(dict.fromkeys(rows.names + ("item",))))
    if _is_frame(obj):
        cols = [str(c) for c in obj.columns]
        labels = list(obj.index)
        fields = [dict(zip(cols, values)) for values in obj.itertuples(index=False, name=None)]
        return Rows("frame", obj, labels, fields, tuple(cols))
    if isinstance(obj, (list, tuple)):
        fields = [dict(item, item=item) if isinstance(item, Mapping) else {"item": item}
                  for item in obj]
        return Rows("list", list(obj), list(range(len(obj))), fields, _names_of(fields))
    if isinstance(obj, Mapping):
        fields = [dict(v, item=v) if isinstance(v, Mapping) else {"item": v} for v in obj.values()]
        return Rows("dict", dict(obj), list(obj.keys()), fields, _names_of(fields))
    raise GeminiError(f"--over {name} needs a DataFrame, Series, list, tuple or dict, not "
                      f"{type(obj).__name__}; pass the rows to prompt over.")


def _names_of(fields: list) -> tuple:
    return tuple(dict.fromkeys(k for f in fields for k in f if isinstance(k, str)))


class Rendered(NamedTuple):
    request: Any       # the row's Request (parts filled, stateless)
    body: dict         # its create() arguments
    key: str           # its cache key


def render_rows(base: Any, rows: Rows, user_ns: Mapping[str, Any]) -> list:
    """Every row's request, rendered before anything is sent: row fields first, then `{index}`,
    then the notebook's variables. GeminiError (one sentence naming the row) on a bad field."""
    if not rows.labels:
        raise GeminiError(f"--over {base.over or 'rows'} has no rows; give it at least one row "
                          f"to prompt over.")
    base = dataclasses.replace(base, stateless=True, new=True)
    out = []
    for label, fields in zip(rows.labels, rows.fields):
        ns = ChainMap({k: v for k, v in fields.items() if isinstance(k, str)},
                      {"index": label}, user_ns)
        try:
            parts = list(build_parts(base, ns))
        except PromptError as exc:
            raise GeminiError(_field_sentence(str(exc), rows, label)) from None
        except MediaError as exc:
            raise GeminiError(f"Row {label!r}: {exc}") from None
        request = copy.copy(base)  # a fifth of dataclasses.replace's cost: 1,000 rows feel it
        request.parts = parts
        body = request.body(user_step(request.parts or [request.text]))
        out.append(Rendered(request, body, ""))
    return out


def _field_sentence(message: str, rows: Rows, label: Any) -> str:
    m = _MISSING.search(message)
    if not m:
        return f"Row {label!r}: {message}"
    fields = ", ".join(list(rows.names[:12]) + ["index"])
    return (f"The template refers to {{{m.group(1)}}}, which is neither a field of the rows "
            f"({fields}) nor a notebook variable; fix the name, or write {{{{{m.group(1)}}}}} "
            f"to keep the braces as text.")


# -- sending ----------------------------------------------------------------------------------

class Stopped(Exception):
    """The run was stopped while a row waited for its turn."""


class Gate:
    """At most `limit` requests at once. A 429 halves the limit (once per pause) and holds every
    new request until its Retry-After has passed; each `limit` successes in a row add one back,
    up to `ceiling`."""

    def __init__(self, ceiling: int):
        self.ceiling = self.limit = max(1, int(ceiling))
        self.active = 0
        self.resume_at = 0.0
        self.throttles = 0      # 429s seen
        self.lowest = self.limit
        self._streak = 0
        self._cond = threading.Condition()

    def acquire(self, stop: threading.Event) -> None:
        with self._cond:
            while True:
                if stop.is_set():
                    raise Stopped()
                wait = self.resume_at - time.monotonic()
                if wait <= 0 and self.active < self.limit:
                    self.active += 1
                    return
                self._cond.wait(min(wait, 0.1) if wait > 0 else 0.1)

    def release(self, ok: bool) -> None:
        with self._cond:
            self.active -= 1
            if ok:
                self._streak += 1
                if self._streak >= self.limit and self.limit < self.ceiling:
                    self.limit += 1
                    self._streak = 0
            self._cond.notify_all()

    def throttled(self, wait: float) -> None:
        with self._cond:
            now = time.monotonic()
            self.throttles += 1
            if now >= self.resume_at:  # the first 429 of this pause
                self.limit = max(1, self.limit // 2)
                self.lowest = min(self.lowest, self.limit)
            self._streak = 0
            self.resume_at = max(self.resume_at, now + wait)
            self._cond.notify_all()


def retry_delay(exc: BaseException, attempt: int) -> float:
    """Seconds a 429 asks to wait: RetryInfo's retryDelay (precise), else Retry-After, else a
    growing default."""
    body = getattr(exc, "body", None)
    err = body.get("error") if isinstance(body, dict) else None
    for d in (err.get("details") or []) if isinstance(err, dict) else []:
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("RetryInfo"):
            m = re.match(r"^\s*([0-9.]+)s\s*$", str(d.get("retryDelay", "")))
            if m:
                return min(float(m.group(1)), MAX_WAIT_S)
    response = getattr(exc, "response", None)
    header = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    if header:
        try:
            return min(float(header), MAX_WAIT_S)
        except ValueError:
            pass
    return min(DEFAULT_429_WAIT_S * 2 ** min(attempt, 5), MAX_WAIT_S)


def _transient(exc: BaseException, code: Optional[int]) -> bool:
    if code is not None:
        return code >= 500 or code == 408
    return is_connection_error(exc)


def _send_once(sender: RowSender, row: Rendered) -> GeminiResult:
    """One row through the run's sender (a dropped stream is resumed while the server still
    has it; else it raises and the row is retried)."""
    start = time.monotonic()
    acc = Accumulator()
    link = Link()
    for event in sender.stream(row.body, link):
        acc.feed(event)
    if not acc.done and acc.error is None and acc.unreadable is None:
        raise ConnectionResetError("the stream ended before the interaction completed")
    return build_result(acc, row.request, elapsed=time.monotonic() - start,
                        notes=[resumed_note(link.resumed)] if link.resumed else [])


def _failed(sentence: str, request: Any, stopped: bool = False) -> GeminiResult:
    return GeminiResult(error=sentence, stopped=stopped, status="not sent" if stopped else "failed",
                        model=getattr(request, "model", None))


def cached_result(value: Mapping[str, Any], request: Any) -> GeminiResult:
    result = GeminiResult(text=value.get("text", ""), answer=value.get("answer", ""),
                          steps=value.get("steps") or [], usage=value.get("usage") or {},
                          id=value.get("id"), status=value.get("status", "completed"),
                          model=value.get("model"), elapsed=0.0,
                          interaction_data=value.get("interaction") or {})
    if request.schema_obj is not None:
        result.error = structured_value(result, request.schema_obj, request.schema)
    return result


def cache_value(result: GeminiResult) -> dict:
    return {"text": result.text, "answer": result.answer, "steps": result.steps,
            "usage": result.usage, "id": result.id, "status": result.status,
            "model": result.model, "interaction": result.interaction_data}


class RowRun:
    """What a run did, for the summary line and the progress bar."""

    def __init__(self, total: int):
        self.total = total
        self.results: list = [None] * total
        self.cached: set = set()
        self.ok = self.failed = self.tokens = 0
        self.stopped = False
        self.elapsed = 0.0
        self.gate: Optional[Gate] = None
        self.first_failure: Optional[tuple] = None

    def add(self, i: int, result: GeminiResult, cached: bool, label: Any) -> None:
        self.results[i] = result
        if cached:
            self.cached.add(i)
        if result.ok:
            self.ok += 1
        else:
            self.failed += 1
            if self.first_failure is None or i < self.first_failure[0]:
                self.first_failure = (i, label, result.error)
        self.tokens += int((result.usage or {}).get("total_tokens") or 0)

    def postfix(self) -> str:
        return (f"ok={self.ok} failed={self.failed} cached={len(self.cached)} "
                f"tokens={self.tokens}")


def _row_worker(sender: RowSender, todo: "queue.Queue", done: "queue.Queue", gate: Gate,
                stop: threading.Event, cache: Any, where: str) -> None:
    while not stop.is_set():
        try:
            i, row = todo.get_nowait()
        except queue.Empty:
            return
        try:
            result = _send_row(sender, row, gate, stop, where)
        except Stopped:
            return
        if cache is not None and result.ok:
            try:
                cache.put(row.key, cache_value(result))
            except Exception:  # noqa: BLE001 - a full disk must not lose the answer
                pass
        done.put((i, result))


def _send_row(sender: RowSender, row: Rendered, gate: Gate, stop: threading.Event,
              where: str) -> GeminiResult:
    """One row with its retries; never raises but Stopped (before it was sent)."""
    attempt = waits = 0
    while True:
        gate.acquire(stop)
        try:
            result = _send_once(sender, row)
        except Exception as exc:  # noqa: BLE001 - every failure is the row's sentence
            gate.release(ok=False)
            code = status_code(exc)
            if code == 429 and waits < MAX_RATE_WAITS:
                gate.throttled(retry_delay(exc, waits))
                waits += 1
                continue
            if _transient(exc, code) and attempt < ROW_RETRIES:
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)] * (0.5 + random.random())
                attempt += 1
                if stop.wait(delay):
                    raise Stopped() from None
                continue
            return _failed(explain(exc, model=row.request.model, where=where), row.request)
        gate.release(ok=True)
        return result


def take_cached(rendered: list, labels: list, cache: Any) -> tuple:
    """(a RowRun holding the rows `cache` already has, the indices of the rows still to send):
    the one cache lookup of `--over` and `--batch`."""
    run = RowRun(len(rendered))
    found = cache.get_many([r.key for r in rendered]) if cache is not None else {}
    missing = []
    for i, row in enumerate(rendered):
        if row.key in found:
            run.add(i, cached_result(found[row.key], row.request), True, labels[i])
        else:
            missing.append(i)
    return run, missing


def send_rows(rendered: list, labels: list, backend: Backend, *, concurrency: int = 8,
              cache: Any = None, progress: bool = True,
              on_progress: Optional[Callable] = None) -> RowRun:
    """Send every row not in `cache` on `concurrency` worker threads; returns the RowRun with
    each row's result in input order. KeyboardInterrupt stops it: rows not done get the
    STOPPED sentence (the rows in flight still reach the cache when they end)."""
    start = time.monotonic()
    run, missing = take_cached(rendered, labels, cache)
    todo: queue.Queue = queue.Queue()
    for i in missing:
        todo.put((i, rendered[i]))
    pending = todo.qsize()
    run.gate = gate = Gate(concurrency)
    bar = _progress_bar(run, enabled=progress)
    stop = threading.Event()
    done: queue.Queue = queue.Queue()
    if pending:
        # the retries are ours; one sender for the run (see sender.RowSender)
        sender = RowSender(get_client(dataclasses.replace(backend, attempts=1)))
        for _ in range(min(concurrency, pending)):
            threading.Thread(target=_row_worker, name="gemini-row", daemon=True,
                             args=(sender, todo, done, gate, stop, cache, backend.label)).start()
    received = 0
    try:
        while received < pending:
            try:
                i, result = done.get(timeout=0.1)
            except queue.Empty:
                continue
            received += 1
            run.add(i, result, False, labels[i])
            spend.after_row(result)
            if bar is not None:
                bar.set_postfix_str(run.postfix(), refresh=False)
                bar.update(1)
            if on_progress is not None:
                on_progress(run)
    except (KeyboardInterrupt, spend.BudgetReached) as exc:
        stop.set()
        run.stopped = True
        while True:  # what ended meanwhile is kept
            try:
                i, result = done.get_nowait()
            except queue.Empty:
                break
            run.add(i, result, False, labels[i])
        for i, r in enumerate(run.results):
            if r is None:
                run.results[i] = _failed(getattr(exc, "sentence", STOPPED), rendered[i].request,
                                         stopped=True)
    finally:
        stop.set()
        if bar is not None:
            bar.set_postfix_str(run.postfix(), refresh=False)
            bar.close()
    run.elapsed = time.monotonic() - start
    return run


def _progress_bar(run: RowRun, enabled: bool) -> Any:
    if not enabled or run.total == 0:
        return None
    from tqdm.auto import tqdm  # deferred: tqdm (and ipywidgets in a notebook)

    return tqdm(total=run.total, initial=len(run.cached), unit="row", desc="gemini",
                postfix=run.postfix(), leave=True)


# -- the answers back in input order -----------------------------------------------------------

def _as_mapping(value: Any) -> Optional[dict]:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return None


def _schema_fields(request: Any) -> list:
    schema = (request.response_format or {}).get("schema") or {}
    return list((schema.get("properties") or {}).keys())


def _column(values: list) -> Any:
    import pandas as pd  # deferred: pandas

    try:
        return pd.array(values)
    except (TypeError, ValueError):
        return pd.Series(values, dtype=object).array


def assemble(rows: Rows, run: RowRun, request: Any) -> Any:
    """The answers in input order: a DataFrame for frame input, else a list or dict of results."""
    results = run.results
    if rows.kind == "list":
        return list(results)
    if rows.kind == "dict":
        return dict(zip(rows.labels, results))
    frame = rows.source.copy()
    taken = {str(c) for c in frame.columns}
    fields = _schema_fields(request) if request.schema_obj is not None else []
    if fields:
        values = [_as_mapping(r.value) if r.ok else None for r in results]
        for f in fields:
            col = f if f not in taken else f"gemini_{f}"
            frame[col] = _column([v.get(f) if v else None for v in values])
    elif request.schema_obj is not None:
        frame["gemini"] = _column([r.value if r.ok else None for r in results])
    else:
        frame["gemini"] = _column([r.text if r.ok else None for r in results])
    frame["gemini_error"] = _column([r.error or "" for r in results])
    for name, key in (("gemini_input_tokens", "total_input_tokens"),
                      ("gemini_output_tokens", "total_output_tokens")):
        frame[name] = _column([int((r.usage or {}).get(key) or 0) for r in results])
    frame["gemini_cost"] = _column([spend.row_cost(r) for r in results])
    return frame


def summary(run: RowRun) -> str:
    """The one-line summary under the preview."""
    n = run.total
    parts = [f"{run.ok} of {n} row{'s' if n != 1 else ''} ok"]
    failed = run.failed  # the rows not sent after a stop are not failures
    if failed:
        parts.append(f"{failed} failed")
    if run.stopped:
        not_sent = sum(1 for r in run.results if r is not None and r.stopped)
        parts.append(f"{not_sent} not sent (stopped)")
    parts.append(f"{len(run.cached)} from the cache")
    # the time before the tokens: "· N.N s ·" is what nbval_sanitize.cfg masks in replays
    line = ", ".join(parts) + f" · {run.elapsed:.1f} s · {run.tokens:,} tokens"
    if run.gate is not None and run.gate.throttles:
        line += (f" · {run.gate.throttles} rate-limit waits (concurrency down to "
                 f"{run.gate.lowest})")
    if run.first_failure is not None and failed:
        _, label, sentence = run.first_failure
        line += f". First failure, row {label!r}: {sentence}"
    return line


def preview(value: Any, rows: Rows, limit: int = 10) -> Any:
    """What the cell shows of the answers: a DataFrame's first rows; for a list or dict a small
    DataFrame (row, answer, error) when pandas is there, else text lines. Answers show on one
    line (a table would print a line break as a literal \\n), and when rows are left out a
    line under the table says how many are shown."""
    total = len(rows.labels)
    if rows.kind == "frame":
        table = value.head(limit)
    else:
        results = list(value.values()) if rows.kind == "dict" else list(value)
        shown = list(zip(rows.labels, results))[:limit]
        try:
            import pandas as pd  # deferred: pandas (optional: lists work without it)
        except ImportError:
            lines = [f"{label!r}: {r.error or _short(r.text)}" for label, r in shown]
            return "\n".join(lines + ([_left_out(len(shown), total)] if len(shown) < total else []))
        table = pd.DataFrame({"index": [lbl for lbl, _ in shown],
                              "gemini": [r.text if r.ok else None for _, r in shown],
                              "gemini_error": [r.error or "" for _, r in shown]})
    table = _one_line(table)
    return table if len(table) == total else Preview(table, _left_out(len(table), total))


def _left_out(shown: int, total: int) -> str:
    return f"{shown} of {total} rows shown; _gemini (and -o) holds all {total}"


def _one_line(table: Any) -> Any:
    """A copy of `table` whose text cells with line breaks or tabs read on one line."""
    table = table.copy()
    for column in table.columns:
        values = table[column]
        if values.dtype == object or str(values.dtype).startswith("str"):
            if values.map(lambda v: isinstance(v, str) and any(c in v for c in "\n\r\t")).any():
                table[column] = values.map(lambda v: _short(v, 10_000) if isinstance(v, str) else v)
    return table


class Preview:
    """The first rows of an --over result and the line saying how many of them are shown: one
    output, an HTML table with the line under it (text/plain the same as text)."""

    def __init__(self, table: Any, caption: str):
        self.table, self.caption = table, caption

    def _repr_html_(self) -> str:
        table = self.table._repr_html_() or self.table.to_html()
        return f"{table}<p><em>{html.escape(self.caption)}</em></p>"

    def __repr__(self) -> str:
        return f"{self.table!r}\n{self.caption}"


def _short(text: str, n: int = 80) -> str:
    """`text` on one line (every run of whitespace one space), cut to `n` characters."""
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[:n - 1] + "…"


# -- the cell and the function -----------------------------------------------------------------

def check_row_options(request: Any) -> None:
    """The row options only apply with --over, and --over cannot run with the options whose
    turn is not a plain independent answer. GeminiError (one sentence)."""
    if not request.over:
        given = [flag for flag, on in (("--batch", request.batch),
                                       ("--no-cache", not request.cache)) if on]
        if given:
            verb, them = ("apply", "them") if len(given) > 1 else ("applies", "it")
            raise GeminiError(f"{' and '.join(given)} only {verb} with --over NAME (a prompt "
                              f"over every row); add --over or drop {them}.")
        return
    for flag, on in (("--background", request.background), ("--ui", request.ui),
                     ("--functions", bool(request.functions)), ("--save", bool(request.save)),
                     ("--agent", bool(request.agent))):
        if on:
            raise GeminiError(f"--over cannot be combined with {flag}: every row is an "
                              f"independent answer; drop {flag}.")


def backend_id(backend: Backend, settings: Mapping[str, Any]) -> str:
    """Which backend answered, for the cache key: no key, and no port of a local server.
    Under a cassette, recording or replaying, its file name: a replay then sends the same
    --batch bodies (they carry the keys) as its recording did."""
    try:
        cassette = current().current_cassette()
    except Exception:  # noqa: BLE001 - a bad cassette setting: resolve_backend says so
        cassette = None
    if cassette is not None:
        return f"cassette:{os.path.basename(cassette.path)}"
    if backend.kind == "local":
        engine = settings.get("engine") or os.environ.get("GEMINI_MAGICS_ENGINE") or "local"
        return f"local:{engine}"
    return f"{backend.kind}:{backend.base_url or 'google'}"


def lookup_rows(name: str, user_ns: Mapping[str, Any]) -> Any:
    try:
        return lookup_dotted("--over", name, user_ns)
    except ArgsError as e:
        raise GeminiError(str(e)) from None


def run_over(request: Any, rows: Rows, rendered: list, backend: Backend,
             settings: Mapping[str, Any], *, progress: bool = True) -> tuple:
    """Send the rendered rows of a prepared request: (assembled value, RowRun)."""
    where = backend_id(backend, settings)
    rendered = [r._replace(key=request_key(r.body, where)) for r in rendered]
    cache = open_cache(settings.get("cache_dir")) if request.cache else None
    run = send_rows(rendered, rows.labels, backend, concurrency=request.concurrency, cache=cache,
                    progress=progress)
    return assemble(rows, run, request), run


def map_rows(template: str, rows: Any, *, progress: Optional[bool] = None, **options: Any) -> Any:
    """`gemini_magics.map(template, rows, **options)`: the Python form of `%%gemini --over`.

    `options` are the cell options by their Request names (model, system, temperature,
    max_tokens, thinking, tools, images, files, schema, concurrency, cache) and any setting
    (base_url, engine, offline, cache_dir, ...); a `schema` may be the schema object itself. In a kernel with the extension loaded the magics' settings and
    variables apply; elsewhere the defaults (GEMINI_API_KEY, else the local server)."""
    session = current()
    settings, ns = session.settings(), dict(session.read_namespace())
    schema = options.pop("schema", None)
    if schema is not None and not isinstance(schema, str):
        label = getattr(schema, "__name__", None)
        label = label if isinstance(label, str) and label.isidentifier() else "schema"
        ns[label] = schema
        schema = label
    known = ({f.name for f in dataclasses.fields(Request)} - {"text", "parts", "over"}) | set(SETTINGS)
    unknown = sorted(set(options) - known)
    if unknown:
        raise GeminiError(f"gemini_magics.map got unknown option{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(unknown)}; use the cell options and settings by name "
                          f"(model, system, temperature, tools, schema, concurrency, cache, "
                          f"base_url, ...).")
    merged = dict(settings)
    merged.update({k: v for k, v in options.items() if k not in ("images", "files", "cache")})
    try:
        request = parse("", template, merged)
        extra = {k: options[k] for k in ("images", "files") if k in options}
        request = dataclasses.replace(request, over="rows", schema=schema,
                                      cache=bool(options.get("cache", True)), **extra)
        resolve_names(request, ns)
    except ArgsError as exc:
        raise GeminiError(str(exc)) from None
    read = read_rows(rows, "rows")
    rendered = render_rows(request, read, ns)
    backend, _ = resolve_backend(merged, session)
    if progress is None:  # the progress setting (on outside a notebook)
        progress = bool(merged.get("progress", True))
    value, _ = run_over(request, read, rendered, backend, merged, progress=progress)
    return value


def row_cache() -> Any:
    """`gemini_magics.cache`: the cache the next run uses (the magics' cache_dir setting)."""
    return DefaultCache(lambda: current().settings().get("cache_dir"))
