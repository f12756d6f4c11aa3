"""The plain text producer: a turn with no tools, agent or image output."""
from __future__ import annotations

from ..turns import Outcome, TurnContext, emit_thought, stream_model_output
from .function_answer import answers_function_results, function_answer

__all__ = ["text_producer"]


def text_producer(ctx: TurnContext) -> Outcome:
    """A thought step (signature only), then the engine's reply streamed as a model_output
    (after function results sent without their tools: the answer that states them)."""
    emit_thought(ctx.recorder)
    if answers_function_results(ctx):
        return function_answer(ctx)
    return stream_model_output(ctx)
