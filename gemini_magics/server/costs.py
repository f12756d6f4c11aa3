"""What a classroom key's turns would cost on Google's API, for the teacher's console.

Each charged turn (and batch request) is priced at its model's standard price by the
third-party `genai_prices` (pydantic's maintained price data, bundled, no network), the package
the client's pricing.py uses too; server/ does not import that module (it imports nothing of
the client). Thinking tokens are billed as output. A model that genai_prices does not know (an
agent, `local-offline`, a typo) has no price: None, never a guess; the key's tokens at no known
price are counted instead (`store.add_key_usage`).
"""
from __future__ import annotations

import threading
from typing import Optional

__all__ = ["usage_cost", "price", "warm"]


def price(model: Optional[str], input_tokens: int, output_tokens: int) -> Optional[float]:
    """USD for these tokens at `model`'s standard price, or None when it has no known price."""
    if not model:
        return None
    import genai_prices  # deferred: pydantic and the price data, ~0.5 s; classroom mode only

    name = model.removeprefix("models/")
    try:
        calc = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=max(0, int(input_tokens or 0)),
                               output_tokens=max(0, int(output_tokens or 0))),
            model_ref=name, provider_id="google")
    except (LookupError, ValueError):
        return None
    return float(calc.total_price)


def usage_cost(model: Optional[str], usage: dict) -> Optional[float]:
    """The price of an Interaction's `usage` (thought tokens billed as output)."""
    return price(model, usage.get("total_input_tokens") or 0,
                 (usage.get("total_output_tokens") or 0) + (usage.get("total_thought_tokens") or 0))


def warm() -> None:
    """Import the price data on a thread now, so the first charged turn does not wait for it."""
    threading.Thread(target=price, args=("gemini-2.5-flash", 0, 0), name="gm-prices",
                     daemon=True).start()
