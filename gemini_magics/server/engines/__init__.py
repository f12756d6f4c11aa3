"""Engine factory: `make_engine("echo" | "local" | "openai" | Engine)`.

The local engine loads xllamacpp and its GGUF file only when it is made (engines/local.py defers
them), which the echo-backed tests and benchmarks never need. The openai engine forwards to an
OpenAI-compatible server named by `engine_url` or $GEMINI_MAGICS_ENGINE_URL (model: `engine_model`
or $GEMINI_MAGICS_ENGINE_MODEL; key: the variable named by `engine_key_env`, default
$GEMINI_MAGICS_ENGINE_KEY), so the magics' embedded server can use one too.
"""
from __future__ import annotations

import os
from typing import Optional, Union

from .base import Engine, EngineRequest, EngineResult, GenerationParams
from .echo import EchoEngine
from .local import LocalEngine
from .openai import OpenAIEngine

ENGINE_NAMES = ("local", "echo", "openai")
ENV_ENGINE_URL = "GEMINI_MAGICS_ENGINE_URL"
ENV_ENGINE_MODEL = "GEMINI_MAGICS_ENGINE_MODEL"
ENV_ENGINE_KEY = "GEMINI_MAGICS_ENGINE_KEY"


def make_engine(engine: Union[str, Engine] = "local", model_path: Optional[str] = None, *,
                engine_url: Optional[str] = None, engine_model: Optional[str] = None,
                engine_key_env: Optional[str] = None, parallel: int = 1) -> Engine:
    """An engine instance from its name (an Engine instance is returned unchanged)."""
    if isinstance(engine, Engine):
        return engine
    name = (engine or "local").strip().lower()
    if name == "echo":
        return EchoEngine()
    if name == "local":
        return LocalEngine(model_path=model_path, n_parallel=parallel)
    if name == "openai":
        url = engine_url or os.environ.get(ENV_ENGINE_URL, "").strip()
        if not url:
            raise ValueError(f"The openai engine needs the URL of an OpenAI-compatible server: "
                             f"--engine-url http://HOST:PORT (or set {ENV_ENGINE_URL}).")
        key_env = engine_key_env or ENV_ENGINE_KEY
        if engine_key_env and not os.environ.get(engine_key_env):
            raise ValueError(f"--engine-key-env names {engine_key_env}, which is not set; set it "
                             f"to the engine's API key, or leave the option out.")
        return OpenAIEngine(url, model=engine_model or os.environ.get(ENV_ENGINE_MODEL) or None,
                            api_key=os.environ.get(key_env) or None)
    raise ValueError(f"Unknown engine {engine!r}; choose one of: {', '.join(ENGINE_NAMES)}.")


__all__ = ["Engine", "EngineRequest", "EngineResult", "GenerationParams", "make_engine",
           "ENGINE_NAMES", "OpenAIEngine"]
