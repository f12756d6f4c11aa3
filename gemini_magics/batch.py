"""`%%gemini --over NAME --batch`: the rows not in the cache go to the Gemini Batch API as one
job of inline generateContent requests (`client.batches.create(model=, src=[...])`).

The cell returns at once with a status line that a poller thread updates; when the job ends its
answers go to the row cache (keyed like `--over` rows, the key travels in each request's
metadata), and `-o OUT` / `_gemini` get the same DataFrame / list / dict as a plain `--over`
run. `%gemini wait batches/ID` picks a job up (also after a kernel restart: then `_gemini` is
the list of results, and re-running the `--batch` cell assembles them from the cache).

A batch request is a generateContent request, not an interaction: it carries the prompt (text
and inline media), the system instruction, temperature, max tokens and a --schema; it cannot
carry --tools, --thinking, --show-thoughts, --aspect/--size or media given by URL (those are
refused with one sentence), and no interaction ids exist.
"""
from __future__ import annotations

import html
import threading
import time
from typing import Any, Callable, Mapping, Optional

from . import spend
from .client import Backend, get_client
from .errors import GeminiError, explain, server_message, status_code
from .result import GeminiResult
from .rowcache import open_cache, request_key
from .rows import RowRun, Rows, assemble, backend_id, cache_value, take_cached
from .runner import structured_value
from .sender import PollPolicy, PollTimeout
from .session import Session, current

__all__ = ["check_batch", "inline_request", "start_batch", "wait_batch", "BatchRun",
           "UNSUPPORTED"]

UNSUPPORTED = (("--tools", "tools"), ("--thinking", "thinking"),
               ("--show-thoughts", "show_thoughts"), ("--aspect", "aspect"), ("--size", "size"))
_ENDED = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")
MAX_BATCH_S = 48 * 3600   # the Batch API expires a job after 48 hours


def check_batch(request: Any, rendered: list) -> None:
    """GeminiError (one sentence) for what a generateContent batch request cannot carry."""
    given = [flag for flag, name in UNSUPPORTED if getattr(request, name, None)]
    if given:
        raise GeminiError(f"--batch cannot carry {', '.join(given)} (a batch request is a "
                          f"generateContent request, not an interaction); drop "
                          f"{'them' if len(given) > 1 else 'it'} or run without --batch.")
    for row in rendered:
        for part in row.request.parts:
            if isinstance(part, dict) and not part.get("data"):
                raise GeminiError("--batch sends media inline only; give the file itself, not "
                                  "a URL, or run without --batch.")


def inline_request(row: Any, position: int) -> dict:
    """One row as an inline request of `client.batches.create` (the SDK's snake_case form)."""
    request = row.request
    parts = []
    for p in request.parts or [request.text]:
        if isinstance(p, str):
            parts.append({"text": p})
        else:
            parts.append({"inline_data": {"mime_type": p.get("mime_type"), "data": p["data"]}})
    config: dict = {}
    if request.system:
        config["system_instruction"] = request.system
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.max_tokens is not None:
        config["max_output_tokens"] = request.max_tokens
    if request.response_format:
        config["response_mime_type"] = "application/json"
        config["response_json_schema"] = request.response_format.get("schema")
    out: dict = {"contents": [{"role": "user", "parts": parts}],
                 "metadata": {"row": str(position), "key": row.key}}
    if config:
        out["config"] = config
    return out


class BatchRun:
    """A batch started from a cell: its rows, its job name, and the value once it has ended."""

    def __init__(self, name: str, request: Any, rows: Rows, rendered: list, run: RowRun,
                 todo: list, client: Any):
        self.name, self.request, self.rows, self.rendered = name, request, rows, rendered
        self.run, self.todo, self.client = run, todo, client
        self.state = "JOB_STATE_PENDING"
        self.value: Any = None
        self.problem: Optional[str] = None
        self.ended = threading.Event()

    def status_line(self) -> str:
        """Two short lines, the id whole on each: a text output breaks a long line anywhere."""
        return "\n".join(self._status_parts())

    def status_bundle(self) -> dict:
        """The running batch's status output: HTML whose ids never wrap, and `status_line`."""
        first, second = (html.escape(p) for p in self._status_parts())
        name = html.escape(self.name)
        nowrap = f'<code style="white-space:nowrap">{name}</code>'
        first = first.replace(name, nowrap, 1)
        second = second.replace(f"%gemini wait {name}",
                                f'<code style="white-space:nowrap">%gemini wait {name}</code>', 1)
        return {"text/html": f"<div>{first}<br>{second}</div>", "text/plain": self.status_line()}

    def _status_parts(self) -> tuple:
        state = self.state.replace("JOB_STATE_", "").lower()
        return (f"Batch {self.name}: {state} · {len(self.todo)} rows sent, "
                f"{len(self.run.cached)} from the cache · {self.run.elapsed:.0f} s",
                f"%gemini wait {self.name} follows it (also after a restart)")


def _result_of(inline: Any, request: Any) -> GeminiResult:
    error = getattr(inline, "error", None)
    response = getattr(inline, "response", None)
    if error or response is None:
        msg = (error or {}).get("message") if isinstance(error, dict) else str(error or "")
        return GeminiResult(error=f"The batch request failed ({msg or 'no answer'}); re-run the "
                                  f"cell to send this row again.", status="failed",
                            model=getattr(request, "model", None))
    usage = getattr(response, "usage_metadata", None)
    prompt = int(getattr(usage, "prompt_token_count", 0) or 0)
    output = int(getattr(usage, "candidates_token_count", 0) or 0)
    text = response.text or ""
    result = GeminiResult(text=text, answer=text, status="completed",
                          model=getattr(response, "model_version", None) or request.model,
                          usage={"total_input_tokens": prompt, "total_output_tokens": output,
                                 "total_tokens": prompt + output})
    if request.schema_obj is not None:
        result.error = structured_value(result, request.schema_obj, request.schema)
    return result


def _collect(job: Any, batch: BatchRun, cache: Any) -> None:
    """The ended job's answers into the RowRun (input order) and the cache."""
    by_row: dict = {}
    for inline in (getattr(getattr(job, "dest", None), "inlined_responses", None) or []):
        meta = getattr(inline, "metadata", None) or {}
        by_row[meta.get("row")] = inline
    for position, i in enumerate(batch.todo):
        row = batch.rendered[i]
        inline = by_row.get(str(position))
        if inline is None:
            result = GeminiResult(error=f"The batch ended {batch.state.replace('JOB_STATE_', '').lower()} "
                                        f"without an answer for this row; re-run the cell to "
                                        f"send it again.", status="failed")
        else:
            result = _result_of(inline, row.request)
        if result.ok and cache is not None:
            cache.put(row.key, cache_value(result))
        batch.run.add(i, result, False, batch.rows.labels[i])


def start_batch(request: Any, rows: Rows, rendered: list, backend: Backend,
                settings: Mapping[str, Any], *, poll_interval: float = 1.0,
                on_status: Optional[Callable] = None, on_done: Optional[Callable] = None,
                session: Optional[Session] = None) -> BatchRun:
    """Send the rows not cached as one batch job (listed in `session`, default the current
    one) and poll it on a thread: `on_status(batch)` after each poll, `on_done(batch)` once
    `batch.value` is assembled. When every row came from the cache the BatchRun has no client
    and nothing is called: then `rows.assemble` is all there is to do."""
    where = backend_id(backend, settings)
    rendered = [r._replace(key=request_key(r.body, where)) for r in rendered]
    check_batch(request, rendered)
    cache = open_cache(settings.get("cache_dir")) if request.cache else None
    run, todo = take_cached(rendered, rows.labels, cache)
    if not todo:
        return BatchRun("(all rows cached)", request, rows, rendered, run, todo, None)
    client = get_client(backend)
    try:
        job = client.batches.create(
            model=request.model, src=[inline_request(rendered[i], n) for n, i in enumerate(todo)],
            config={"display_name": f"gemini-magics --over {request.over}"})
    except Exception as exc:  # noqa: BLE001 - one sentence, nothing was started
        raise GeminiError(f"The batch was not started: {explain(exc, model=request.model)}") from None
    batch = BatchRun(job.name, request, rows, rendered, run, todo, client)
    session = session or current()
    with session.lock:
        session.batches[job.name] = batch
    started = time.monotonic()

    def ended(current: Any) -> bool:
        batch.state = _state(current)
        batch.run.elapsed = time.monotonic() - started
        return batch.state in _ENDED

    def poll() -> None:
        try:
            current = _policy(poll_interval).follow(
                lambda: client.batches.get(name=job.name), ended, first=job, started=started,
                on_status=(lambda _job: on_status(batch)) if on_status is not None else None)
            _collect(current, batch, cache)
            batch.value = assemble(rows, batch.run, request)
        except Exception as exc:  # noqa: BLE001 - the poller must end with a sentence
            batch.problem = f"could not be followed ({_poll_sentence(exc)})"
        finally:
            try:  # shown before waiters wake: `%gemini wait` ends under the preview and summary
                if on_done is not None:
                    on_done(batch)
            finally:
                batch.ended.set()

    threading.Thread(target=poll, name=f"gemini-batch-{job.name}", daemon=True).start()
    return batch


def wait_batch(name: str, backend: Backend, settings: Mapping[str, Any],
               poll_interval: float = 1.0, session: Optional[Session] = None) -> Any:
    """`%gemini wait batches/ID`: the batch's value when it ends. A batch started in this kernel
    gives what its cell would (DataFrame / list / dict); another (after a restart) a list of
    results in row order, whose answers also go to the cache, so re-running the `--batch`
    cell assembles them without a new batch."""
    session = session or current()
    with session.lock:
        known = session.batches.get(name)
    if known is not None:
        known.ended.wait()
        if known.problem:
            raise GeminiError(f"Batch {name} {known.problem}.")
        return known.value
    client = get_client(backend)
    try:
        job = _policy(poll_interval).follow(lambda: client.batches.get(name=name),
                                            lambda j: _state(j) in _ENDED)
    except Exception as exc:  # noqa: BLE001
        raise GeminiError(f"Batch {name} could not be followed ({_poll_sentence(exc)}).") from None
    inlined = list(getattr(getattr(job, "dest", None), "inlined_responses", None) or [])
    inlined.sort(key=lambda r: int((getattr(r, "metadata", None) or {}).get("row", 0)))
    cache = open_cache(settings.get("cache_dir"))
    out = []
    for inline in inlined:
        result = _result_of(inline, _Plain(job))
        spend.record(session, result, tier="batch")  # (a batch of this kernel: _rows_done does)
        key = (getattr(inline, "metadata", None) or {}).get("key")
        if result.ok and key:
            cache.put(key, cache_value(result))
        out.append(result)
    return out


def _state(job: Any) -> str:
    return getattr(job.state, "name", str(job.state))


def _policy(poll_interval: float) -> PollPolicy:
    """The pollers' one policy (sender.PollPolicy), with the Batch API's own deadline."""
    return PollPolicy(poll_interval, deadline=MAX_BATCH_S)


def _poll_sentence(exc: BaseException) -> str:
    if isinstance(exc, PollTimeout):
        return (f"still running after {MAX_BATCH_S // 3600} hours, when the Batch API expires "
                f"its jobs")
    if status_code(exc) == 404:
        return (f"the server no longer has it (404: {server_message(exc)}): it was deleted or "
                f"has expired; re-run the --batch cell to send the rows not cached")
    return explain(exc).rstrip(".")


class _Plain:
    """The request fields _result_of reads, for a batch whose cell is gone."""

    schema_obj = None
    schema = None

    def __init__(self, job: Any):
        self.model = getattr(job, "model", None)
