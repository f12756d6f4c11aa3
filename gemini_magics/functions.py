"""Python callables as Gemini function tools: declare them, call them safely, report results.

The magic's `--functions f,g` turns notebook callables into `{"type": "function", ...}` tools and
runs the call loop itself. Everything here is pure and SDK-free so it can be tested on its own:
pydantic builds the parameter schema and validates the model's arguments (one code path for
declaring and calling, so what we promise the model is what we accept), and a worker thread
bounds each call so a hanging function cannot freeze the kernel.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
import threading
import typing
from typing import Any, Callable, Optional

import pydantic
import pydantic_core

from .compat import raise_in_thread

__all__ = [
    "FunctionTimeout",
    "call_function",
    "declared_name",
    "function_declaration",
    "function_result_step",
    "resolve_functions",
]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
_VAR_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


class FunctionTimeout(BaseException):
    """Raised inside a function's worker thread when its time is up (best effort).

    A BaseException, like KeyboardInterrupt, so the function's own `except Exception` cannot
    swallow it.
    """


# --------------------------------------------------------------------------------------------
# Declarations
# --------------------------------------------------------------------------------------------

def declared_name(fn: Callable) -> str:
    """The name the model sees: the callable's own `__name__`."""
    return getattr(fn, "__name__", type(fn).__name__)


def function_declaration(fn: Callable) -> dict:
    """`{"type":"function","name","description","parameters"}` for a Python callable.

    The description is the docstring's text before any Args/Parameters section; per-parameter
    descriptions come from that section (Google or Sphinx style) or from
    `Annotated[T, Field(description=...)]`. Parameters without defaults are required.
    Raises ValueError (one sentence) when a parameter's type has no JSON schema.
    """
    name = declared_name(fn)
    if not _NAME_RE.match(name):
        raise ValueError(
            f"The function name {name!r} cannot be declared to the model; give it a plain "
            "identifier name (for a lambda, assign it with `def` instead)."
        )
    summary, _ = _parse_docstring(inspect.getdoc(fn) or "")
    model = _arguments_model(fn)
    try:
        parameters = model.model_json_schema(by_alias=True)
    except pydantic.PydanticUserError as exc:  # pragma: no cover - surfaced by _arguments_model
        raise ValueError(f"Cannot describe the parameters of {name}: {exc}.") from None
    parameters = _strip_titles(parameters)
    parameters.setdefault("properties", {})
    parameters.pop("additionalProperties", None)
    if not parameters.get("required"):
        parameters.pop("required", None)
    decl = {"type": "function", "name": name}
    if summary:
        decl["description"] = summary
    decl["parameters"] = parameters
    return decl


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a docstring into (summary, {param: description}) for Google and Sphinx styles."""
    params: dict[str, str] = {}
    summary_lines: list[str] = []
    lines = doc.splitlines()
    section: Optional[str] = None
    current: Optional[str] = None
    for line in lines:
        stripped = line.strip()
        sphinx = re.match(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$", stripped)
        if sphinx:
            current, section = sphinx.group(1), "sphinx"
            params[current] = sphinx.group(2).strip()
            continue
        if re.match(r"^:(returns?|rtype|raises?)\b", stripped):
            section, current = "other", None
            continue
        header = re.match(r"^(Args|Arguments|Parameters|Params|Returns|Return|Raises|Yields|"
                          r"Examples?|Notes?)\s*:?\s*$", stripped)
        if header and not line.startswith((" ", "\t")):
            section = "args" if header.group(1).lower().startswith(("arg", "param")) else "other"
            current = None
            continue
        if section in ("args", "sphinx"):
            if section == "args" and (m := re.match(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$",
                                                    stripped)):
                current = m.group(1).lstrip("*")
                params[current] = m.group(3).strip()
            elif stripped.startswith("---") or (section == "args" and stripped == ""):
                continue
            elif current and stripped:
                params[current] = (params[current] + " " + stripped).strip()
            continue
        if section is None:
            summary_lines.append(line)
    summary = "\n".join(summary_lines).strip()
    return summary, params


def _arguments_model(fn: Callable) -> type[pydantic.BaseModel]:
    """A pydantic model of `fn`'s parameters, cached per callable when it is hashable."""
    try:
        return _cached_arguments_model(fn)
    except TypeError:  # unhashable callable object
        return _build_arguments_model(fn)


@functools.lru_cache(maxsize=256)
def _cached_arguments_model(fn: Callable) -> type[pydantic.BaseModel]:
    return _build_arguments_model(fn)


def _build_arguments_model(fn: Callable) -> type[pydantic.BaseModel]:
    """Fields are named p0, p1... and aliased to the real names, so any name is allowed."""
    name = declared_name(fn)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        raise ValueError(f"Cannot read the signature of {name}; wrap it in a plain `def`.") from None
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # an unresolvable forward reference: use the raw annotations
        hints = {}
    _, docs = _parse_docstring(inspect.getdoc(fn) or "")
    fields: dict[str, Any] = {}
    accepts_kwargs = False
    for i, p in enumerate(sig.parameters.values()):
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            accepts_kwargs = True
            continue
        if p.kind in _VAR_KINDS:
            continue
        ann = hints.get(p.name, p.annotation)
        if ann is inspect.Parameter.empty:
            ann = Any
        default = ... if p.default is inspect.Parameter.empty else p.default
        extra = {"description": docs[p.name]} if docs.get(p.name) else {}  # keep Annotated's own
        field = pydantic.Field(default, alias=p.name, **extra)
        fields[f"p{i}"] = (ann, field)
    config = pydantic.ConfigDict(
        extra="allow" if accepts_kwargs else "forbid",
        arbitrary_types_allowed=False,
        populate_by_name=False,
    )
    try:
        model = pydantic.create_model(f"{name}_arguments", __config__=config, **fields)
        model.model_json_schema(by_alias=True)
    except Exception:
        bad = _first_bad_parameter(sig, fields)
        ann = next((f[0] for f in fields.values() if f[1].alias == bad), None)
        if isinstance(ann, str):
            raise ValueError(
                f"Cannot resolve the type {ann!r} of parameter {bad!r} of {name}; define that type "
                "at the top level of the notebook or module, before the function."
            ) from None
        raise ValueError(
            f"Cannot describe parameter {bad!r} of {name} to the model: its type has no JSON "
            "schema; use str, int, float, bool, list, dict, Literal, an Enum, a dataclass or a "
            "pydantic model."
        ) from None
    return model


def _first_bad_parameter(sig: inspect.Signature, fields: dict) -> str:
    for key, (ann, field) in fields.items():
        try:
            pydantic.TypeAdapter(ann).json_schema()
        except Exception:
            return field.alias
    return next(iter(sig.parameters), "?")


_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "contains")


def _strip_titles(schema: Any) -> Any:
    """Drop pydantic's auto-generated `title`s (noise for the model), walking schema structure."""
    if not isinstance(schema, dict):
        return schema
    out = {k: v for k, v in schema.items() if k != "title"}
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_strip_titles(s) for s in out[key]]
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {k: _strip_titles(s) for k, s in out[key].items()}
    for key in _SCHEMA_ONE:
        if isinstance(out.get(key), dict):
            out[key] = _strip_titles(out[key])
    return out


# --------------------------------------------------------------------------------------------
# Resolving names from the notebook
# --------------------------------------------------------------------------------------------

def resolve_functions(names: str, user_ns: dict) -> list[Callable]:
    """Look up `"f,g"` (dotted names allowed) in the notebook namespace.

    Returns callables whose `__name__` is a valid function name: a lambda or callable object is
    wrapped under the name it has in the namespace. Raises ValueError with one sentence for an
    empty list, a missing name, a non-callable value or two functions with the same name.
    """
    parts = [n.strip() for n in (names or "").split(",") if n.strip()]
    if not parts:
        raise ValueError("--functions needs at least one name, e.g. --functions get_weather,convert.")
    found: list[Callable] = []
    seen: dict[str, str] = {}
    for ref in dict.fromkeys(parts):
        head, *rest = ref.split(".")
        if head not in user_ns:
            raise ValueError(
                f"--functions: {head!r} is not defined in the notebook; run the cell that defines "
                "it or fix the name."
            )
        obj = user_ns[head]
        for i, attr in enumerate(rest):
            if not hasattr(obj, attr):
                where = ".".join([head, *rest[:i]])
                raise ValueError(f"--functions: {where!r} has no attribute {attr!r}; fix the name {ref!r}.")
            obj = getattr(obj, attr)
        if not callable(obj):
            raise ValueError(
                f"--functions: {ref!r} is a {type(obj).__name__}, not a function; pass the name of "
                "a callable."
            )
        fn = obj
        if not _NAME_RE.match(getattr(fn, "__name__", "") or ""):
            fn = _named(fn, ref.split(".")[-1])
        name = declared_name(fn)
        if name in seen:
            raise ValueError(
                f"--functions: {seen[name]!r} and {ref!r} are both named {name!r}; the model needs "
                "distinct function names."
            )
        seen[name] = ref
        found.append(fn)
    return found


def _named(fn: Callable, name: str) -> Callable:
    """Wrap a lambda or callable object so it carries `name` (the user's object is untouched)."""
    target = fn if (inspect.isfunction(fn) or inspect.ismethod(fn)) else getattr(fn, "__call__", fn)

    @functools.wraps(target)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    wrapper.__name__ = wrapper.__qualname__ = name
    if target is not fn and inspect.ismethod(target):
        wrapper.__signature__ = inspect.signature(target)  # without `self`
    return wrapper


# --------------------------------------------------------------------------------------------
# Calling
# --------------------------------------------------------------------------------------------

def call_function(fn: Callable, arguments: Optional[dict], timeout: Optional[float] = 60.0):
    """Call `fn` with the model's `arguments`; return `(result, is_error)`, never raise.

    Arguments are validated and coerced with the same pydantic model that produced the
    declaration (so `"3"` becomes 3 for an `int`, a dict becomes a dataclass or model instance).
    Invalid arguments, an exception, or running past `timeout` seconds give `(message, True)`,
    a one-sentence message meant for the model (and shown to the user).

    The call runs on a daemon worker thread that is joined with `timeout`: Python cannot kill a
    thread, so on timeout we inject `FunctionTimeout` into it (this stops pure-Python loops; code
    blocked inside C, e.g. a long `time.sleep`, stops when it next returns to Python) and return
    at once; the kernel is never held past the timeout. Coroutine functions run on a fresh event
    loop in the worker. KeyboardInterrupt (kernel interrupt) stops the worker the same way and
    propagates.
    """
    name = declared_name(fn)
    try:
        args, kwargs = _bind(fn, arguments)
    except ValueError as exc:
        return str(exc), True

    box: dict[str, Any] = {}

    def run():
        try:
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = asyncio.run(_await(value))
            box["value"] = value
        except FunctionTimeout:
            box["timeout"] = True
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the model
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"gemini-function-{name}", daemon=True)
    worker.start()
    try:
        worker.join(timeout)
    except BaseException:
        _interrupt(worker)
        raise
    if worker.is_alive():
        _interrupt(worker)
        return (f"{name} did not finish within {timeout:g} seconds and was stopped; make it faster "
                "or raise the timeout."), True
    if "error" in box:
        exc = box["error"]
        return f"{name} raised {type(exc).__name__}: {exc}", True
    if box.get("timeout"):
        return f"{name} was stopped.", True
    return box.get("value"), False


async def _await(awaitable):
    return await awaitable


def _interrupt(thread: threading.Thread) -> None:
    """Best effort: raise FunctionTimeout inside `thread` at its next Python bytecode."""
    if thread.ident is not None and thread.is_alive():
        raise_in_thread(thread.ident, FunctionTimeout)


def _bind(fn: Callable, arguments: Optional[dict]) -> tuple[list, dict]:
    """Validate the model's arguments against `fn`'s hints and split them into (args, kwargs)."""
    name = declared_name(fn)
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ValueError(f"Arguments for {name} must be a JSON object, got {type(arguments).__name__}.")
    model = _arguments_model(fn)
    try:
        validated = model.model_validate(arguments)
    except pydantic.ValidationError as exc:
        raise ValueError(f"Invalid arguments for {name}: {_describe_errors(exc)}.") from None
    sig = inspect.signature(fn)
    args: list = []
    kwargs: dict = {}
    params = list(sig.parameters.values())
    for i, p in enumerate(params):
        key = f"p{i}"
        if p.kind in _VAR_KINDS or key not in validated.model_fields_set:
            continue
        value = getattr(validated, key)
        if p.kind is inspect.Parameter.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[p.name] = value
    kwargs.update(validated.model_extra or {})
    return args, kwargs


def _describe_errors(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unexpected argument"
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


# --------------------------------------------------------------------------------------------
# Results on the wire
# --------------------------------------------------------------------------------------------

def function_result_step(call_step: Any, result: Any, is_error: bool = False) -> dict:
    """The `function_result` input step answering `call_step`, in the quickstart's shape.

    `call_step` may be a dict or an SDK `FunctionCallStep`. The result is serialised to JSON text
    (pydantic models, dataclasses, datetimes, sets... via pydantic's encoder, anything else as
    its `str`), so the model always receives something it can read; an error becomes
    `{"error": message}` with `is_error: true`.
    """
    get = call_step.get if isinstance(call_step, dict) else (lambda k: getattr(call_step, k, None))
    payload = {"error": str(result)} if is_error else result
    text = json.dumps(pydantic_core.to_jsonable_python(payload, fallback=str), ensure_ascii=False)
    step = {
        "type": "function_result",
        "name": get("name"),
        "call_id": get("id"),
        "result": [{"type": "text", "text": text}],
    }
    if is_error:
        step["is_error"] = True
    return step
