"""Engine factory: `make_engine("echo" | "local" | Engine)`.

The local engine loads xllamacpp and its GGUF file only when it is made (engines/local.py defers
them), which the echo-backed tests and benchmarks never need.
"""
from __future__ import annotations

from typing import Optional, Union

from .base import Engine, EngineRequest, EngineResult, GenerationParams
from .echo import EchoEngine
from .local import LocalEngine

ENGINE_NAMES = ("local", "echo")


def make_engine(engine: Union[str, Engine] = "local", model_path: Optional[str] = None) -> Engine:
    """An engine instance from its name (an Engine instance is returned unchanged)."""
    if isinstance(engine, Engine):
        return engine
    name = (engine or "local").strip().lower()
    if name == "echo":
        return EchoEngine()
    if name == "local":
        return LocalEngine(model_path=model_path)
    raise ValueError(f"Unknown engine {engine!r}; choose one of: {', '.join(ENGINE_NAMES)}.")


__all__ = ["Engine", "EngineRequest", "EngineResult", "GenerationParams", "make_engine",
           "ENGINE_NAMES"]
