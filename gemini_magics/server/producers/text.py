"""The plain text producer: a turn with no tools, agent or image output."""
from __future__ import annotations

from ..turns import Outcome, TurnContext, emit_thought, stream_model_output

__all__ = ["text_producer"]


def text_producer(ctx: TurnContext) -> Outcome:
    """A thought step (signature only), then the engine's reply streamed as a model_output."""
    emit_thought(ctx.recorder)
    return stream_model_output(ctx)
