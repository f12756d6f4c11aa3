"""What this session spent, and the budget that stops it: the usage ledger (`%gemini usage`),
the budget check before anything is sent, the observer that stops a stream crossing the cap,
and `--estimate` (the price of a cell or of every row, before anything is generated).

The ledger lives in the Session (`session.ledger`, made on first use). Every answer is priced
once (pricing.py) and added once: a stopped or failed answer for the tokens it used, a row from
the row cache not at all (it costs nothing now). Offline answers (the local server, a loopback
base_url, a replayed cassette) are priced as if on the named model and shown, but they are not
billed, so they do not count toward the budget unless the `budget_offline` setting says so
(for trying a budget without a key).
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional
from urllib.parse import urlsplit

from . import pricing
from .catalog import is_loopback
from .client import answers_offline
from .errors import GeminiError
from .session import Session, current

__all__ = ["Ledger", "ledger", "billed", "record", "row_cost", "refusal", "check_before", "after_row",
           "BudgetReached", "Guard", "usage_table", "budget_line", "Estimate", "estimate",
           "api_counter", "prompt_text"]

_CHECK_EVERY = 64  # characters of new answer text between two budget checks of a stream


@dataclass
class _Line:
    """One model's usage (billed or not) in the ledger."""

    calls: int = 0
    input: int = 0
    output: int = 0
    thinking: int = 0
    cached: int = 0
    cost: float = 0.0
    unknown: int = 0   # calls whose price is unknown (not in `cost`)


class Ledger:
    """This session's calls, tokens and cost per (model, billed); thread-safe (rows and live
    answers record from their threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lines: dict = {}

    def add(self, result: Any, detail: pricing.CostDetail) -> bool:
        """Count `result` once (its CostDetail remembers it was counted); True if it was new."""
        usage = result.usage or {}
        with self.lock:
            if detail.counted:
                return False
            detail.counted = True
            line = self.lines.setdefault((result.model or "?", detail.billed), _Line())
            line.calls += 1
            line.input += int(usage.get("total_input_tokens") or 0)
            line.output += int(usage.get("total_output_tokens") or 0)
            line.thinking += int(usage.get("total_thought_tokens") or 0)
            line.cached += int(usage.get("total_cached_tokens") or 0)
            if detail.known:
                line.cost += detail.total
            else:
                line.unknown += 1
        return True

    def spent(self, offline_too: bool = False) -> float:
        """USD counted toward the budget: billed answers (and offline ones if asked)."""
        with self.lock:
            return sum(line.cost for (_, paid), line in self.lines.items()
                       if paid or offline_too)

    def reset(self) -> None:
        with self.lock:
            self.lines.clear()


def ledger(session: Optional[Session] = None) -> Ledger:
    """The session's ledger, made on first use."""
    return (session or current()).own("ledger", Ledger)


def billed(settings: Mapping[str, Any], session: Optional[Session] = None) -> bool:
    """Whether answers under these settings are billed by Google: not from the local server,
    not replayed from a cassette, not from a base_url on this machine (loopback)."""
    session = session or current()
    if answers_offline(settings, session):
        return False
    try:
        cassette = session.current_cassette()
    except Exception:  # noqa: BLE001 - a bad cassette setting: the backend says it
        cassette = None
    if cassette is not None and cassette.mode == "replay":
        return False
    base_url = (settings.get("base_url") or "").strip()
    return not base_url or not _loopback(base_url)


def _loopback(url: str) -> bool:
    return is_loopback(urlsplit(url if "//" in url else "//" + url).hostname)


def _override(settings: Mapping[str, Any]) -> Optional[dict]:
    try:
        return pricing.parse_override(settings.get("price_override"))
    except ValueError:  # the setting's validator refuses it first; never fail an answer here
        return None


def record(session: Optional[Session], result: Any, *, tier: Optional[str] = None,
           paid: Optional[bool] = None, prompt: str = "") -> pricing.CostDetail:
    """Price `result` (once) and add it to the session's usage (once). `paid` is whether it
    was billed (default: what the session's settings say now); `tier` e.g. "batch"; `prompt`
    the text sent, for an answer stopped before its usage arrived."""
    session = session or current()
    settings = session.settings()
    if paid is None:
        paid = billed(settings, session)
    try:
        detail = pricing.price(result, tier=tier, billed=paid, override=_override(settings),
                               prompt=prompt)
    except Exception as exc:  # noqa: BLE001 - never lose an answer to its price
        detail = pricing.CostDetail(None, billed=paid, note=f"could not be priced ({exc})")
        result.cost_detail = detail
    if result.usage or detail.estimated or result.id:  # a request that reached the model
        ledger(session).add(result, detail)
    return detail


def row_cost(result: Any, *, tier: Optional[str] = None,
             session: Optional[Session] = None) -> Optional[float]:
    """A row's `gemini_cost`: its answer's price in USD (None when unknown). A row from the
    cache is priced too (what its answer cost), but not added to this session's usage."""
    session = session or current()
    settings = session.settings()
    try:
        return pricing.price(result, tier=tier, billed=billed(settings, session),
                             override=_override(settings)).total
    except Exception:  # noqa: BLE001 - a price must never fail the rows
        return None


def _counts(settings: Mapping[str, Any], session: Session) -> bool:
    """Whether answers now count toward the budget."""
    return bool(settings.get("budget_offline")) or billed(settings, session)


def _reached(cap: float, spent: float) -> str:
    return (f"The session's budget of {pricing.money(cap)} is reached "
            f"({pricing.money(spent)} spent so far), so nothing more is sent; raise it with "
            f"%gemini budget USD or turn it off with %gemini budget off.")


def refusal(session: Optional[Session] = None, request: Any = None) -> Optional[str]:
    """Why a cell, panel turn or row must not start (one sentence), or None: the budget is
    reached, or the model has no known price so a budget cannot be kept."""
    session = session or current()
    settings = session.settings()
    cap = settings.get("budget")
    if cap is None or not _counts(settings, session):
        return None
    spent = ledger(session).spent(offline_too=bool(settings.get("budget_offline")))
    if spent >= cap:
        return _reached(cap, spent)
    name = getattr(request, "agent", None) or getattr(request, "model", None)
    if name and _override(settings) is None and not pricing.price_usage({}, name).known:
        return (f"{name} has no known price (genai-prices lists none), so the budget of "
                f"{pricing.money(cap)} cannot be kept; set GeminiMagics.price_override or turn "
                f"the budget off with %gemini budget off.")
    return None


def check_before(session: Optional[Session] = None, request: Any = None) -> None:
    """GeminiError (one sentence) when the request must not start (see `refusal`)."""
    sentence = refusal(session, request)
    if sentence:
        raise GeminiError(sentence)


class BudgetReached(Exception):
    """`--over`: the budget was reached while rows were being sent; the rest are not sent."""

    def __init__(self, sentence: str):
        super().__init__(sentence)
        self.sentence = sentence


def after_row(result: Any, *, tier: Optional[str] = None,
              session: Optional[Session] = None) -> None:
    """A row's answer arrived: record it; BudgetReached when the cap is now reached (rows.py
    stops sending and keeps the rows done)."""
    session = session or current()
    record(session, result, tier=tier)
    sentence = refusal(session)
    if sentence:
        raise BudgetReached(sentence)


class Guard:
    """A runner observer, put before the display so the footer shows the price: prices and
    records the answer when it ends, and with a budget stops a stream whose answer would take
    the session past it (the partial answer is kept, as with Stop)."""

    def __init__(self, session: Optional[Session], request: Any,
                 cancel_event: Optional[threading.Event] = None):
        self.session = session or current()
        self.cancel_event = cancel_event if cancel_event is not None else threading.Event()
        settings = self.session.settings()
        self.paid = billed(settings, self.session)
        self.override = _override(settings)
        self.model = getattr(request, "model", None)
        self.prompt = prompt_text(request)
        self.cap = settings.get("budget") if _counts(settings, self.session) else None
        self.spent = (ledger(self.session).spent(bool(settings.get("budget_offline")))
                      if self.cap is not None else 0.0)
        self.reason: Optional[str] = None
        self._checked = 0

    def on_start(self, acc: Any) -> None: ...

    def on_update(self, acc: Any) -> None:
        if self.cap is None or self.reason is not None:
            return
        usage = acc.usage if acc.usage.get("total_output_tokens") else None
        if usage is None:  # no running usage from this server: estimate from the text
            if acc.answer_length - self._checked < _CHECK_EVERY:
                return
            self._checked = acc.answer_length
            usage = {"total_output_tokens": pricing.tokens_in(acc.answer_text())}
        detail = pricing.price_usage(usage, self.model, override=self.override)
        if detail.known and self.spent + detail.total > self.cap:
            self.reason = (f"Stopped at the session's budget of {pricing.money(self.cap)} "
                           f"({pricing.money(self.spent)} spent before this answer); the "
                           f"partial answer is kept.")
            self.cancel_event.set()

    def on_done(self, result: Any) -> None:
        record(self.session, result, paid=self.paid, prompt=self.prompt)
        if self.reason and result.stopped:
            result.notes.append(self.reason)


# -- %gemini usage and budget -----------------------------------------------------------------

_COLUMNS = ("model", "billed", "calls", "input tokens", "output tokens", "thinking tokens",
            "cached tokens", "cost USD")


def usage_table(session: Optional[Session] = None) -> Any:
    """`%gemini usage`: calls, tokens and cost per model and the total, as a DataFrame when
    pandas is there, else a text table. Unknown prices are None ("unknown" in text)."""
    book = ledger(session)
    with book.lock:
        items = sorted(book.lines.items(), key=lambda kv: (kv[0][0], not kv[0][1]))
        rows = [[model, "yes" if paid else "no (offline)", ln.calls, ln.input, ln.output,
                 ln.thinking, ln.cached, None if ln.unknown == ln.calls else ln.cost]
                for (model, paid), ln in items]
    total = ["total", "", *(sum(r[i] for r in rows) for i in range(2, 7)),
             sum(r[7] or 0.0 for r in rows)]
    rows.append(total)
    try:
        import pandas as pd  # deferred: pandas
    except ImportError:
        return _text_table(rows)
    return pd.DataFrame(rows, columns=list(_COLUMNS))


def _text_table(rows: list) -> str:
    shown = [list(_COLUMNS)] + [[str(v) if not isinstance(v, float) else f"{v:.6f}"
                                 for v in (r[:7] + ["unknown" if r[7] is None else r[7]])]
                                for r in rows]
    widths = [max(len(r[i]) for r in shown) for i in range(len(_COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in shown)


def budget_line(session: Optional[Session] = None) -> str:
    """One line: the budget and what counts toward it so far."""
    session = session or current()
    settings = session.settings()
    cap = settings.get("budget")
    offline_too = bool(settings.get("budget_offline"))
    spent = ledger(session).spent(offline_too)
    counted = "billed answers" + (" and offline ones" if offline_too else
                                  " (offline answers are not billed and not counted)")
    if cap is None:
        return (f"No budget (%gemini budget USD sets one); {pricing.money(spent)} spent on "
                f"{counted}.")
    return f"Budget {pricing.money(cap)}: {pricing.money(spent)} spent on {counted}."


# -- --estimate ---------------------------------------------------------------------------------

def prompt_text(request: Any) -> str:
    """The text a request sends as input: its system instruction and its text parts (media
    parts are not counted)."""
    parts = [p for p in (getattr(request, "parts", None) or [getattr(request, "text", "")])
             if isinstance(p, str)]
    system = getattr(request, "system", None)
    return "\n".join(([system] if system else []) + parts)


def api_counter(client: Any, model: str, concurrency: int = 8, *, offline: bool = False) -> Callable:
    """A counter for `estimate`: texts -> (token counts, how they were counted), with the API's
    countTokens (free, not charged to the budget; `offline`: the local server's, which counts
    with its model's own tokenizer); where the server cannot count, every count is estimated
    from the text instead, and said so."""
    def count(texts: list) -> tuple:
        def one(text: str) -> int:
            return int(client.models.count_tokens(model=model, contents=text).total_tokens or 0)
        try:
            first = [one(texts[0])] if texts else []
        except Exception:  # noqa: BLE001 - e.g. 501 from the offline server: estimate instead
            return [pricing.tokens_in(t) for t in texts], "estimated from the text (~4 characters a token)"
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, 16))) as pool:
            rest = list(pool.map(one, texts[1:]))
        return first + rest, ("counted by the local server's tokenizer" if offline
                              else "counted by the API (countTokens)")
    return count


@dataclass
class Estimate:
    """What a cell or its rows would cost, before anything is generated."""

    model: str
    rows: int
    input_tokens: int
    how: str                               # how the input tokens were counted
    output_low: Optional[int] = None       # output tokens per row, from a sample or --max-tokens
    output_high: Optional[int] = None
    output_how: str = ""
    seconds_per_row: Optional[float] = None
    concurrency: int = 1
    override: Optional[dict] = None

    def cost(self, tier: str, output_per_row: int) -> Optional[float]:
        usage = {"total_input_tokens": self.input_tokens,
                 "total_output_tokens": output_per_row * self.rows}
        return pricing.price_usage(usage, self.model, tier=tier, override=self.override).total

    def text(self) -> str:
        what = f"{self.rows} row{'s' if self.rows != 1 else ''}" if self.rows > 1 else "this cell"
        lines = [f"Estimate for {what} on {self.model} (nothing was generated): "
                 f"{self.input_tokens:,} input tokens, {self.how}."]
        low = self.output_low or 0
        if self.output_high is None:
            how = "--max-tokens bounds them" if self.rows == 1 else (
                "--estimate N runs N rows to measure them; --max-tokens bounds them")
            lines.append(f"  Output tokens are not estimated ({how}): the costs are for the "
                         f"input alone.")
        else:
            lines.append(f"  Output: {low:,}–{self.output_high:,} tokens a row "
                         f"({self.output_how}).")
        for tier in ("standard", "flex", "batch"):
            lines.append(f"  {tier}: {self._range(tier, low)}")
        lines.append("  " + self._time())
        return "\n".join(lines)

    def _range(self, tier: str, low: int) -> str:
        lo = self.cost(tier, low)
        if lo is None:
            return f"price unknown ({pricing.source()} lists no price for {self.model})"
        hi = self.cost(tier, self.output_high) if self.output_high is not None else lo
        info = pricing.price_usage({"total_input_tokens": 1}, self.model, tier=tier,
                                   override=self.override)
        said = f" ({info.note})" if info.note else ""
        shown = pricing.money(lo) if math.isclose(lo, hi) else (
            f"{pricing.money(lo)} – {pricing.money(hi)}")
        return shown + said

    def _time(self) -> str:
        if self.seconds_per_row is None:
            return "Time: not estimated without a sample (--estimate N)."
        waves = math.ceil(self.rows / max(1, self.concurrency))
        return (f"Time: about {waves * self.seconds_per_row:.1f} s at concurrency "
                f"{self.concurrency} ({self.seconds_per_row:.1f} s a row in the sample); batch "
                f"jobs take up to 24 h.")


def estimate(prompts: list, model: str, *, concurrency: int, counter: Callable,
             sample: Optional[list] = None, max_tokens: Optional[int] = None,
             override: Optional[dict] = None) -> Estimate:
    """The estimate for `prompts` (each row's input text) on `model`: input tokens from
    `counter` (see api_counter), output tokens per row from the `sample` results (rows already
    run) or bounded by `max_tokens`, and the time at `concurrency` from the sample."""
    counts, how = counter(list(prompts))
    out = Estimate(model=model, rows=len(prompts), input_tokens=sum(counts), how=how,
                   concurrency=concurrency, override=override)
    done = [r for r in sample or [] if r.usage]
    if done:
        per = [int(r.usage.get("total_output_tokens") or 0)
               + int(r.usage.get("total_thought_tokens") or 0) for r in done]
        out.output_low, out.output_high = min(per), max(per)
        out.output_how = f"measured on {len(done)} sampled row{'s' if len(done) != 1 else ''}"
        timed = [r.elapsed for r in done if r.elapsed > 0]  # rows from the cache took no time
        out.seconds_per_row = sum(timed) / len(timed) if timed else None
    elif max_tokens:
        out.output_low, out.output_high = 0, max_tokens
        out.output_how = "at most --max-tokens"
    return out
