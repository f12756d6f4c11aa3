"""What an answer costs: its usage priced with genai-prices, or with the price_override setting.

Prices come from `genai-prices` (pydantic's maintained price data, bundled with the package: no
network), through its own `calc_price`, so a figure here is the package's figure. Google bills
thinking tokens and tool-use prompt tokens as output and input, cached input at its cache rate,
image output at its image rate and Google Search queries per thousand where a model lists them;
`genai_usage` says how an Interactions `usage` maps onto that. Batch and flex answers use the
model's batch or flex price when genai-prices lists one; when it lists none the standard price is
used and the detail says so (an upper bound, never a made-up discount). A model genai-prices does
not know has no price: `CostDetail.total` is None and the footer says "price unknown".

`genai_prices` takes a third of a second to import, so it is imported on the first price asked
for, never by `%load_ext`. Whether an answer is billed (offline answers are not) is decided by
the caller (spend.py) and only recorded here.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any, Mapping, Optional

from .compat import install_provider_prices
from .rowcache import cache_dir

__all__ = ["CostDetail", "TIERS", "parse_override", "genai_usage", "price_usage", "price",
           "cost_of", "tokens_in", "money", "footer_piece", "footer_line", "source", "prices_text",
           "tier_of"]

PROVIDER = "google"
# The tiers an answer can be billed at, and the genai-prices request context selecting each.
TIERS = {"standard": None, "flex": {"service_tier": "flex"},
         "priority": {"service_tier": "priority"}, "batch": {"processing": "batch"}}
_OVERRIDE_KEYS = ("input", "output", "cached")
_MODALITIES = {"text": "text", "image": "image", "document": "image", "audio": "audio",
               "video": "video"}  # Interactions modality -> genai-prices usage key part
_PER = 1_000_000  # prices are USD per million tokens


@dataclass
class CostDetail:
    """One answer's price in USD, split the way Google bills it (`result.cost_detail`)."""

    total: Optional[float]            # None: the price is unknown
    input: float = 0.0                # prompt tokens not read from the cache
    cached: float = 0.0               # prompt tokens read from the cache (the cache rate)
    output: float = 0.0               # answer tokens, images included
    thinking: float = 0.0             # thought tokens (billed as output)
    tools: float = 0.0                # e.g. Google Search queries, where the model lists a price
    tier: str = "standard"
    model: Optional[str] = None       # the model genai-prices matched (its id)
    source: str = ""                  # "genai-prices 0.2.5 (data of 2026-12-01)" or the override
    billed: bool = True               # False: offline or replayed, priced as if on the model
    estimated: bool = False           # tokens estimated from text (a stop before usage arrived)
    note: str = ""                    # e.g. "no batch price listed: standard price"
    counted: bool = field(default=False, repr=False)  # spend.py: already in the session's usage

    @property
    def known(self) -> bool:
        return self.total is not None


def parse_override(text: Optional[str]) -> Optional[dict]:
    """The price_override setting ("input=1.25,output=10[,cached=0.125]", USD per 1M tokens) as
    {input, output, cached} rates; None when unset. ValueError (one sentence) when malformed."""
    if text is None or not str(text).strip():
        return None
    rates: dict = {}
    for part in str(text).split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        try:
            rate = float(value) if sep and key in _OVERRIDE_KEYS else -1.0
        except ValueError:
            rate = -1.0
        if rate < 0 or not math.isfinite(rate) or key in rates:
            raise ValueError(f"price_override takes USD per million tokens as "
                             f"input=N,output=N[,cached=N], e.g. input=1.25,output=10, "
                             f"not {str(text).strip()!r}")
        rates[key] = rate
    if "input" not in rates or "output" not in rates:
        raise ValueError("price_override needs both input=N and output=N (USD per million "
                         "tokens), e.g. input=1.25,output=10")
    rates.setdefault("cached", rates["input"])
    return rates


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    return int(value) if isinstance(value, (int, float)) and value > 0 else 0


def _by_modality(usage: Mapping[str, Any], key: str) -> dict:
    out: dict = {}
    for item in usage.get(key) or []:
        if isinstance(item, Mapping) and item.get("modality") in _MODALITIES:
            part = _MODALITIES[item["modality"]]
            out[part] = out.get(part, 0) + _count(item, "tokens")
    return out


def genai_usage(usage: Mapping[str, Any]) -> dict:
    """An Interactions `usage` as genai-prices usage keys, as Google bills it: tool-use prompt
    tokens are input, thought tokens are output, cached tokens are part of the input; the
    modality breakdowns price audio and image where a model lists those rates."""
    thought = _count(usage, "total_thought_tokens")
    values = {"input_tokens": _count(usage, "total_input_tokens")
              + _count(usage, "total_tool_use_tokens"),
              "output_tokens": _count(usage, "total_output_tokens") + thought}
    cached = _count(usage, "total_cached_tokens")
    if cached:
        values["cache_read_tokens"] = min(cached, values["input_tokens"])
    inputs = _by_modality(usage, "input_tokens_by_modality")
    if inputs:  # every modality given, so genai-prices never has to guess a missing one
        for part in ("text", "image", "audio", "video"):
            values[f"input_{part}_tokens"] = inputs.get(part, 0)
            if cached:
                got = _by_modality(usage, "cached_tokens_by_modality").get(part, 0)
                values[f"cache_{part}_read_tokens"] = min(got, inputs.get(part, 0))
    for part, n in _by_modality(usage, "output_tokens_by_modality").items():
        if part != "text":  # text is the rest of the output (thoughts included)
            values[f"output_{part}_tokens"] = n
    searches = sum(_count(t, "count") for t in usage.get("grounding_tool_count") or []
                   if isinstance(t, Mapping) and t.get("type") == "google_search")
    if searches:
        values["web_searches"] = searches
    return values


@lru_cache(maxsize=1)
def _prices() -> Any:
    """genai_prices, with only Google's price table loaded (a kernel stays ~4 MB smaller;
    compat.install_provider_prices, which falls back to the whole table)."""
    import genai_prices  # deferred: genai_prices (pydantic, 0.3 s)

    install_provider_prices(PROVIDER, cache_dir())
    return genai_prices


@lru_cache(maxsize=1)
def source() -> str:
    """Where the prices come from: the genai-prices version and the newest date its Google
    price data says it was checked or changed (not after today)."""
    genai_prices = _prices()
    import genai_prices.data_snapshot as snap  # deferred: genai_prices (pydantic, 0.3 s)

    today = date.today().isoformat()
    dates = set()
    for provider in snap.get_snapshot().providers:
        if provider.id == PROVIDER:
            for m in provider.models:
                dates.update(re.findall(r"\b20\d\d-\d\d-\d\d\b", m.price_comments or ""))
    checked = max((d for d in dates if d <= today), default="")
    return f"genai-prices {genai_prices.__version__}" + (f" (data of {checked})" if checked else "")


def _model_info(model: str) -> Any:
    """genai-prices' ModelInfo for a Gemini model name, or None when it lists no price."""
    _prices()
    import genai_prices.data_snapshot as snap  # deferred: genai_prices (pydantic, 0.3 s)

    try:
        return snap.get_snapshot().find_provider_model(_plain_name(model), None, PROVIDER, None)[1]
    except LookupError:
        return None


def _plain_name(model: str) -> str:
    return model.split("/", 1)[1] if model.startswith("models/") else model


def _has_variant(info: Any, context: Mapping[str, str], when: datetime) -> bool:
    """Whether the model lists its own price for `context` (batch, flex...) at `when`."""
    return any(dict(v.when) == dict(context)
               and (v.constraint is None or v.constraint.active(when))
               for v in info.price_variants or ())


def _rate(price: Any, input_tokens: int) -> float:
    """A per-million rate at this prompt size (genai-prices' long-context tiers: crossing a
    tier's start prices every token at the tier's rate)."""
    if price is None:
        return 0.0
    tiers = getattr(price, "tiers", None)
    if tiers is None:
        return float(price)
    rate = price.base
    for tier in tiers:
        if input_tokens > tier.start:
            rate = tier.price
    return float(rate)


def price_usage(usage: Mapping[str, Any], model: Optional[str], *, tier: str = "standard",
                override: Optional[Mapping[str, float]] = None, billed: bool = True,
                when: Optional[datetime] = None) -> CostDetail:
    """The price of one answer's `usage` (an Interactions usage dict) on `model` at `tier`."""
    values = genai_usage(usage or {})
    thought = _count(usage or {}, "total_thought_tokens")
    if override is not None:
        return _overridden(values, thought, override, tier=tier, model=model, billed=billed)
    info = _model_info(model) if model else None
    if info is None:
        return CostDetail(None, tier=tier, billed=billed, source=source(),
                          note=f"genai-prices lists no price for {model or 'this model'}")
    genai_prices = _prices()

    when = when or datetime.now(timezone.utc)
    context = TIERS.get(tier)
    note = ""
    if context is not None and not _has_variant(info, context, when):
        note, context = f"genai-prices lists no {tier} price for {info.id}: standard price", None
    try:
        calc = genai_prices.calc_price(genai_prices.Usage(**values), _plain_name(model),
                                       provider_id=PROVIDER, genai_request_timestamp=when,
                                       price_context=context)
    except ValueError:  # a breakdown genai-prices cannot place: the totals alone
        values = {k: v for k, v in values.items()
                  if k in ("input_tokens", "output_tokens", "cache_read_tokens", "web_searches")}
        calc = genai_prices.calc_price(genai_prices.Usage(**values), _plain_name(model),
                                       provider_id=PROVIDER, genai_request_timestamp=when,
                                       price_context=context)
    prices, n_in = calc.model_price, values["input_tokens"]
    cached_rate = _rate(getattr(prices, "cache_read_mtok", None)
                        or getattr(prices, "input_mtok", None), n_in)
    cached = values.get("cache_read_tokens", 0) * cached_rate / _PER
    thinking = thought * _rate(getattr(prices, "output_mtok", None), n_in) / _PER
    inp, out = float(calc.input_price), float(calc.output_price)
    tools = float(calc.total_price - calc.input_price - calc.output_price)  # Decimals: exact
    return CostDetail(float(calc.total_price), input=inp - cached, cached=cached,
                      output=out - thinking, thinking=thinking, tools=tools, tier=tier, model=info.id,
                      source=source(), billed=billed, note=note)


def _overridden(values: Mapping[str, int], thought: int, rates: Mapping[str, float], *,
                tier: str, model: Optional[str], billed: bool) -> CostDetail:
    """The price at the price_override setting's flat rates (every model, every tier)."""
    cached_n = values.get("cache_read_tokens", 0)
    inp = (values["input_tokens"] - cached_n) * rates["input"] / _PER
    cached = cached_n * rates["cached"] / _PER
    output = (values["output_tokens"] - thought) * rates["output"] / _PER
    thinking = thought * rates["output"] / _PER
    return CostDetail(inp + cached + output + thinking, input=inp, cached=cached, output=output,
                      thinking=thinking, tier=tier, model=model, billed=billed,
                      source="the price_override setting")


def tier_of(result: Any) -> str:
    """The tier an answer was served at, as the interaction reports it (standard by default)."""
    data = getattr(result, "interaction_data", None) or {}
    tier = data.get("service_tier") if isinstance(data, Mapping) else None
    return tier if tier in TIERS else "standard"


def price(result: Any, *, tier: Optional[str] = None, billed: bool = True,
          override: Optional[Mapping[str, float]] = None, prompt: str = "") -> CostDetail:
    """The result's price, computed once and kept in `result.cost_detail`. A stopped or failed
    answer is priced for the tokens it used; stopped before its usage arrived, for its text and
    the `prompt` sent (estimated: ~4 characters a token)."""
    detail = getattr(result, "cost_detail", None)
    if detail is not None:
        return detail
    usage = dict(result.usage or {})
    used = any(_count(usage, k) for k in ("total_tokens", "total_input_tokens",
                                           "total_output_tokens", "total_thought_tokens"))
    estimated = not used and bool(result.answer or result.thoughts)
    if estimated:
        usage = {"total_input_tokens": tokens_in(prompt),
                 "total_output_tokens": tokens_in(result.answer),
                 "total_thought_tokens": tokens_in(result.thoughts)}
    detail = price_usage(usage, result.model, tier=tier or tier_of(result), override=override,
                         billed=billed)
    detail.estimated = estimated
    result.cost_detail = detail
    return detail


def tokens_in(text: Optional[str]) -> int:
    """Tokens in `text`, estimated: ~4 characters a token, never fewer than its words."""
    text = text or ""
    return max(len(text.split()), math.ceil(len(text) / 4))


def cost_of(result: Any) -> Optional[float]:
    """The result's price in USD (None when unknown or not priced yet): the rows' gemini_cost."""
    detail = getattr(result, "cost_detail", None)
    return detail.total if detail is not None else None


def money(usd: float) -> str:
    """USD for a footer: two significant digits under a dollar ($0.0012), cents above."""
    if usd <= 0:
        return "$0"
    digits = 2 if usd >= 1 else max(2, 1 - math.floor(math.log10(usd)))
    return f"${usd:,.{digits}f}"


def footer_piece(result: Any) -> str:
    """The price beside the tokens in the footer: "≈ $0.0012", "price unknown", marked
    "(offline, not billed)" for answers no one pays for; "" when the answer is not priced."""
    detail = getattr(result, "cost_detail", None)
    if detail is None or (not result.usage and not detail.estimated and detail.known):
        return ""
    piece = f"≈ {money(detail.total)}" if detail.known else "price unknown"
    if detail.estimated:
        piece += " (estimated)"
    return piece + ("" if detail.billed else " (offline, not billed)")


def footer_line(result: Any) -> str:
    """The folded footer's cost line: the parts, the tier and where the prices come from."""
    detail = getattr(result, "cost_detail", None)
    if detail is None:
        return ""
    if not detail.known:
        return f"- cost: price unknown ({detail.note or 'no price listed'}; {detail.source})"
    parts = [f"{name} {money(value)}" for name, value in
             (("input", detail.input), ("cached", detail.cached), ("output", detail.output),
              ("thinking", detail.thinking), ("tools", detail.tools)) if value > 0]
    facts = [", ".join(parts) or "nothing billable", f"{detail.tier} tier"]
    facts += [f for f in (detail.note, "tokens estimated from the text" if detail.estimated
                          else "", "" if detail.billed else "offline, not billed") if f]
    return f"- cost: ≈ {money(detail.total)} ({'; '.join(facts)}; {detail.source})"


def prices_text(model: str, override: Optional[Mapping[str, float]] = None) -> str:
    """`%gemini prices MODEL`: the prices used for `model`, their tiers, source and date."""
    if override is not None:
        return (f"{model}: the price_override setting applies to every model: input "
                f"${override['input']:g}, cached ${override['cached']:g}, output "
                f"${override['output']:g} per 1M tokens (thinking billed as output).")
    info = _model_info(model)
    if info is None:
        return (f"{model}: price unknown: {source()} lists no price for it (answers show "
                f"\"price unknown\"; set GeminiMagics.price_override to price them).")
    now = datetime.now(timezone.utc)
    lines = [f"{model}: priced as {info.name or info.id} ({info.id}), per 1M tokens unless said:",
             f"  standard: {info.get_prices(now)}"]
    for tier in ("flex", "priority", "batch"):
        context = TIERS[tier]
        shown = (info.get_prices(now, context) if _has_variant(info, context, now)
                 else "not listed (the standard price is used)")
        lines.append(f"  {tier}: {shown}")
    lines.append(f"  thinking tokens are billed as output; source: {source()}, "
                 f"https://ai.google.dev/gemini-api/docs/pricing")
    return "\n".join(lines)
