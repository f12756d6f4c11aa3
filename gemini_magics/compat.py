"""Every reach into a third-party internal, in one place, each behind one small function.

We patch or read things google-genai, uvicorn and CPython do not promise to keep: the SDK's
per-call pydantic classes, its raw HTTP stream, its lenient parser and its HTTP client;
uvicorn's H11 protocol and its request cycle's transport; asyncio's socket and its report of
an accept() out of descriptors; `PyThreadState_SetAsyncExc`. Each function's docstring names
the library, the internal, the versions checked and what happens when it moves (the fallback:
the slower or plainer public path, never a crash).
`tests/test_compat.py` checks every one on the installed versions and fails naming the library
and what moved. Heavy libraries are imported only inside the functions, and nothing of the
package is imported, so `server/` may use this module too (tests/test_layout.py).
"""
from __future__ import annotations

import codecs
import ctypes
import logging
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

__all__ = ["install_provider_prices", "reuse_sdk_model_classes", "sdk_interaction_from_dict", "raw_sse_lines",
           "split_sse_lines", "sdk_sent_request", "sdk_http_client", "guarded_h11_protocol",
           "H11_METHODS", "H11_SILENCED", "H11_ATTRIBUTES", "request_transport", "set_nodelay",
           "is_accept_exhaustion", "raise_in_thread"]

log = logging.getLogger(__name__)

# -- google-genai ------------------------------------------------------------------------------

_MODEL_CLASSES_MAX = 512


def reuse_sdk_model_classes() -> bool:
    """Make google-genai reuse the pydantic model classes it builds per call.

    Internal: `google.genai._gaos.utils.serializers.create_model` (pydantic's, imported into
    that module), replaced by a memo; checked on google-genai 3.4.0 and 3.6.1. The SDK builds a
    throwaway class with it for every request body it marshals and every response it
    unmarshals: ~12 ms of CPU each, ~25 ms a request (measured: 31.6 ms of client CPU per
    streamed create, 6.9 ms with classes reused). A notebook does not feel it; 1,000 rows
    (`--over`) do: the client, not the server, becomes the bottleneck. The classes depend only
    on their name, fields and config, so the same arguments get the same class.
    When it moves (no such module or function): nothing is patched, every call builds its class
    as before (slower rows, same answers). Returns True when the reuse is in place."""
    try:
        from google.genai._gaos.utils import serializers  # deferred: google.genai
    except ImportError:
        return False
    original = getattr(serializers, "create_model", None)
    if original is None or getattr(original, "reuses_classes", False):
        return original is not None
    classes: dict = {}

    def create_model(name, *args, **fields):
        try:
            key = (name, args, tuple(sorted(
                (k, tuple(sorted(v.items())) if isinstance(v, dict) else v)
                for k, v in fields.items())))
            hash(key)
        except TypeError:  # an unhashable field spec: build it as the SDK would
            return original(name, *args, **fields)
        model = classes.get(key)
        if model is None:
            model = original(name, *args, **fields)
            if len(classes) < _MODEL_CLASSES_MAX:
                classes[key] = model
        return model

    create_model.reuses_classes = True
    create_model.classes = classes
    serializers.create_model = create_model
    return True


def sdk_interaction_from_dict(data: Any) -> Any:
    """The SDK's Interaction object for a wire dict, as lenient as the SDK's own reading.

    Public first: `google.genai.interactions.Interaction.model_validate`. Data it rejects (a
    server's odd field) goes where the SDK's own client sends it, its internals
    `google.genai._gaos.utils.serializers.construct_unvalidated(value, typ)` and
    `google.genai._gaos.google_genai._add_output_properties_if_interaction(value)` (which fills
    `output_text`); checked on google-genai 3.4.0 and 3.6.1. When they move: pydantic's
    `Interaction.model_construct(**data)`, the same fields without `output_text`."""
    from google.genai import interactions  # deferred: google.genai

    data = dict(data)
    try:
        return interactions.Interaction.model_validate(data)
    except Exception:  # noqa: BLE001 - lenient like the SDK: never fail on odd server data
        pass
    try:
        # deferred: google.genai
        from google.genai._gaos.google_genai import _add_output_properties_if_interaction
        # deferred: google.genai
        from google.genai._gaos.utils.serializers import construct_unvalidated

        return _add_output_properties_if_interaction(
            construct_unvalidated(data, interactions.Interaction))
    except (ImportError, TypeError):
        return interactions.Interaction.model_construct(**data)


def raw_sse_lines(sdk_stream: Any) -> Optional[Iterable[str]]:
    """The SSE lines of the HTTP response behind an SDK stream, or None when it is not there.

    Internal: the `response` attribute (an httpx response, read with `iter_bytes`) of
    google-genai's `_gaos.utils.eventstreaming.Stream`, what `interactions.create(stream=True)`
    returns; checked on google-genai 3.4.0 and 3.6.1. Reading it ourselves costs microseconds an
    event, against ~1.7 ms for the SDK's pydantic event models. When it moves: None, and the
    caller reads the SDK's own iterator (slower; sender.py says so once, FALLBACK_NOTE)."""
    response = getattr(sdk_stream, "response", None)
    iter_bytes = getattr(response, "iter_bytes", None)
    if callable(iter_bytes):
        return split_sse_lines(iter_bytes())
    iter_lines = getattr(response, "iter_lines", None)
    return iter_lines() if callable(iter_lines) else None


def split_sse_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """SSE lines (ended by CRLF, LF or CR) from body chunks: httpx's own line reader costs a
    fifth of a row's client CPU, str.split a tenth of that. A raw CR can only end a line (JSON
    escapes it inside strings); a CR ending a chunk waits for the next, which may bring its LF."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    rest = ""
    for chunk in chunks:
        text = rest + decoder.decode(chunk)
        if text.endswith("\r"):
            text, rest = text[:-1], "\r"
        else:
            rest = ""
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        rest = lines.pop() + rest
        yield from lines
    rest += decoder.decode(b"", final=True)
    if rest.endswith("\r"):
        rest = rest[:-1]
    if rest:
        yield from rest.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def sdk_sent_request(sdk_stream: Any) -> Any:
    """The httpx request the SDK sent to open `sdk_stream` (its URL, headers, body), or None.

    Internal: `Stream.response.request` (as `raw_sse_lines`); checked on google-genai 3.4.0
    and 3.6.1. When it moves: None, and rows keep going through the SDK (slower, same answers)."""
    return getattr(getattr(sdk_stream, "response", None), "request", None)


def sdk_http_client(client: Any) -> Any:
    """The httpx client google-genai sends Interactions requests with (a cassette's transport
    included), or None.

    Internal: `client.interactions.sdk_configuration.client` (the Speakeasy `BaseSDK`'s
    configuration); checked on google-genai 3.4.0 and 3.6.1. When it moves, or the object found
    cannot `build_request` and `send`: None, and rows keep going through the SDK."""
    interactions = getattr(client, "interactions", None)
    http = getattr(getattr(interactions, "sdk_configuration", None), "client", None)
    usable = all(callable(getattr(http, name, None)) for name in ("build_request", "send"))
    return http if usable else None


# -- uvicorn -----------------------------------------------------------------------------------

# The methods of uvicorn's H11Protocol that server/http_guard.py's mixin overrides and needs
# (it calls them with super(), or uvicorn must call them), the one it overrides only to silence
# (uvicorn 0.30 has none: nothing to silence), and the attributes of a connection it reads
# (`conn` is h11's Connection, `cycle` the request cycle with `response_complete`,
# `connections` the server's set of protocols).
H11_METHODS = ("connection_made", "connection_lost", "data_received", "on_response_complete",
               "send_400_response", "pause_writing", "resume_writing", "_should_upgrade_to_ws")
H11_SILENCED = ("_unsupported_upgrade_warning",)
H11_ATTRIBUTES = ("config", "loop", "conn", "cycle", "transport", "timeout_keep_alive",
                  "connections", "logger")


def guarded_h11_protocol(mixin: type) -> Any:
    """uvicorn's H11 protocol with `mixin` in front of it, for `uvicorn.Config(http=...)`.

    Internal: `uvicorn.protocols.http.h11_impl.H11Protocol`, its methods H11_METHODS (and
    H11_SILENCED) and its connection attributes H11_ATTRIBUTES; checked on uvicorn 0.30.0 and
    0.55.0. When it moves (the module or one of H11_METHODS is gone): one warning in the log and
    uvicorn's own protocol, unguarded (no head/idle/write deadlines, plain-text 400s), rather
    than a server whose every connection fails. The attributes are only there on a live
    connection: tests/test_compat.py checks them on one."""
    try:
        from uvicorn.protocols.http.h11_impl import H11Protocol  # deferred: uvicorn, serving only
    except ImportError as e:
        log.warning("uvicorn has no h11_impl.H11Protocol (%s): serving without the connection "
                    "guards (deadlines, JSON 400s); install uvicorn 0.55 to keep them", e)
        return "auto"
    missing = [name for name in H11_METHODS if not callable(getattr(H11Protocol, name, None))]
    if missing:
        log.warning("uvicorn's H11Protocol no longer has %s: serving without the connection "
                    "guards (deadlines, JSON 400s); install uvicorn 0.55 to keep them",
                    ", ".join(missing))
        return H11Protocol
    return type(f"Guarded{H11Protocol.__name__}", (mixin, H11Protocol), {})


def request_transport(receive: Any) -> Any:
    """The asyncio transport of the connection an ASGI `receive` reads from, or None.

    Internal: uvicorn passes its `RequestResponseCycle.receive` bound method, and that cycle
    holds the `transport`; checked on uvicorn 0.30.0 and 0.55.0 (h11 protocol). When it moves
    (or a middleware wraps `receive`): None, and the caller does without (see `set_nodelay`)."""
    return getattr(getattr(receive, "__self__", None), "transport", None)


def set_nodelay(transport: Any) -> None:
    """TCP_NODELAY on a connection: responses are two writes, and with Nagle the second waited
    ~40 ms for a delayed ACK. asyncio sets it itself only on sockets made with proto
    IPPROTO_TCP, and our listening socket has proto 0.

    Reads the socket through asyncio's `transport.get_extra_info("socket")` (a TransportSocket,
    whose `family` and `setsockopt` we use; checked on CPython 3.11). No transport, no
    socket, or a socket that refuses: nothing is set (answers still arrive, ~40 ms later)."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


# -- CPython -----------------------------------------------------------------------------------

ACCEPT_EXHAUSTED = "socket.accept() out of system resource"


def is_accept_exhaustion(context: dict) -> bool:
    """Whether an asyncio exception-handler `context` is the selector loop's report of a failed
    accept() (out of file descriptors), which it logs with a traceback for every retry.

    Internal: the message text of `asyncio.selector_events.BaseSelectorEventLoop.
    _accept_connection`; checked on CPython 3.11. When it moves: False, and asyncio logs each
    failed accept() itself (noisy, harmless)."""
    return str(context.get("message", "")).startswith(ACCEPT_EXHAUSTED)


def raise_in_thread(thread_ident: int, exc_type: type) -> bool:
    """Raise `exc_type` inside the thread `thread_ident` at its next Python bytecode (a thread
    blocked in C code sees it only when it returns to Python). True when it was scheduled.

    Internal: CPython's C API `PyThreadState_SetAsyncExc(unsigned long, PyObject *)` through
    `ctypes.pythonapi`; checked on CPython 3.11 (unchanged since 3.7). It returns the number
    of threads it changed: more than one is undone, as its documentation asks. When it is not
    there (PyPy, another runtime) or the thread is gone: False, and the thread runs on to its
    end (the callers' threads are daemons, so none holds the process)."""
    set_async_exc = getattr(getattr(ctypes, "pythonapi", None), "PyThreadState_SetAsyncExc", None)
    if set_async_exc is None:
        return False
    changed = set_async_exc(ctypes.c_ulong(thread_ident), ctypes.py_object(exc_type))
    if changed > 1:
        set_async_exc(ctypes.c_ulong(thread_ident), None)
        return False
    return changed == 1


# -- genai-prices ----------------------------------------------------------------------------------

_DUMP_PROVIDER = ("import pickle, sys\nfrom genai_prices.data import providers\n"
                  "sys.stdout.buffer.write(pickle.dumps([p for p in providers if p.id == sys.argv[1]]))")


def install_provider_prices(provider_id: str, cache_dir: Path) -> bool:
    """Load only one provider's price table into genai-prices; True if it was installed.

    genai-prices (0.2.x) keeps every provider's prices in one module, `genai_prices.data`, which
    costs a kernel ~6 MB once loaded, and we price one provider's models. So a child process
    (which pays for the whole table) pickles that provider's objects once per genai-prices
    version into `cache_dir` (a file only this user can write, like the row cache beside it);
    here they are unpickled (only `genai_prices.types` is needed) and installed with
    genai-prices' public `data_snapshot.set_custom_snapshot`. The internals relied on: the
    module `genai_prices.data` with its `providers` list, and `DataSnapshot(providers=...,
    from_auto_update=False)`. If either moved, or anything else fails, nothing is installed and
    genai-prices loads its whole table as usual: the same prices, only more memory."""
    try:
        import genai_prices  # deferred: genai_prices (pydantic, 0.3 s)
        from genai_prices import data_snapshot  # deferred: genai_prices

        path = Path(cache_dir) / f"genai-prices-{genai_prices.__version__}-{provider_id}.pickle"
        if not path.exists():
            dumped = subprocess.run([sys.executable, "-c", _DUMP_PROVIDER, provider_id],
                                    capture_output=True, timeout=120, check=True).stdout
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(dumped)
            os.replace(tmp, path)
        providers = pickle.loads(path.read_bytes())
        if not providers or any(getattr(p, "id", None) != provider_id for p in providers):
            return False
        data_snapshot.set_custom_snapshot(
            data_snapshot.DataSnapshot(providers=providers, from_auto_update=False))
        return True
    except Exception as exc:  # noqa: BLE001 - the whole table still prices the same
        log.debug("genai-prices: the %s table alone could not be loaded (%s)", provider_id, exc)
        return False
