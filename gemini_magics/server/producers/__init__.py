"""Which step producer answers a turn: the one place that knows every producer.

Each producer is a `turns.StepProducer`: a blocking function that emits the turn's steps through
its `TurnRecorder` and returns how the turn ended. A new kind of turn is a new module here and
one more line in `pick_producer`.
"""
from __future__ import annotations

from ..protocol import CreateRequest
from ..turns import StepProducer
from .agent import agent_producer, wants_agent
from .image import image_producer, wants_image
from .text import text_producer
from .tool_use import tools_producer, wants_tools

__all__ = ["pick_producer"]


def pick_producer(request: CreateRequest, history: list[dict]) -> StepProducer:
    """Choose what produces this turn's steps: agents, then tools (function calls, emulated
    built-in tools), then image models, then plain text."""
    if wants_agent(request):
        return agent_producer
    if wants_tools(request):
        return tools_producer
    if wants_image(request):
        return image_producer
    return text_producer
