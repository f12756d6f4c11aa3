"""Engine factory: `make_engine("echo" | "local" | Engine)`.

The local engine is imported lazily: it loads xllamacpp and a GGUF file, which the echo-backed
tests and benchmarks never need.
"""
from __future__ import annotations

from typing import Optional, Union

from .base import Engine, EngineRequest, EngineResult, GenerationParams

ENGINE_NAMES = ("local", "echo")


def make_engine(engine: Union[str, Engine] = "local", model_path: Optional[str] = None) -> Engine:
    """An engine instance from its name (an Engine instance is returned unchanged)."""
    if isinstance(engine, Engine):
        return engine
    name = (engine or "local").strip().lower()
    if name == "echo":
        from .echo import EchoEngine
        return EchoEngine()
    if name == "local":
        try:
            from .local import LocalEngine
        except ImportError as e:
            raise RuntimeError(f"The local engine is not available ({e}); install the package "
                               f"with its dependencies, or use engine 'echo'.") from None
        return LocalEngine(model_path=model_path)
    raise ValueError(f"Unknown engine {engine!r}; choose one of: {', '.join(ENGINE_NAMES)}.")


__all__ = ["Engine", "EngineRequest", "EngineResult", "GenerationParams", "make_engine",
           "ENGINE_NAMES"]
