"""Structured output: a Python type or JSON-schema dict in, `response_format` out, parsed value back.

`--schema NAME` accepts what notebooks already have: a pydantic model (the quickstart's way), a
dataclass, a TypedDict, any type pydantic can describe (e.g. `list[Recipe]`), or a JSON-schema
dict. pydantic produces and checks the schema for Python types, jsonschema for dicts, so the
value handed to `--out` is exactly what the schema promised, or a one-sentence `SchemaError`
that keeps the model's raw answer.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import typing
from typing import Any, Optional

import pydantic
import typing_extensions
from typing_extensions import is_typeddict

from .markdown_text import unfenced

__all__ = ["SchemaError", "is_schema", "parse_structured", "response_format_for"]

# Keywords that make a dict a JSON schema rather than a piece of data.
_SCHEMA_KEYWORDS = {
    "type", "properties", "items", "$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf",
    "enum", "const", "not", "prefixItems", "additionalProperties", "required", "$schema",
}


class SchemaError(ValueError):
    """A schema that is not a schema, or a model answer that does not fit it.

    `raw` holds the model's answer text (None when the schema itself was the problem).
    """

    def __init__(self, message: str, raw: Optional[str] = None):
        super().__init__(message)
        self.raw = raw


def _kind(obj: Any) -> str:
    """Classify a schema source: 'pydantic', 'dataclass', 'typeddict', 'format', 'dict', 'type'."""
    if isinstance(obj, type) and issubclass(obj, pydantic.BaseModel):
        return "pydantic"
    if isinstance(obj, type) and dataclasses.is_dataclass(obj):
        return "dataclass"
    if is_typeddict(obj):
        return "typeddict"
    if isinstance(obj, dict):
        if isinstance(obj.get("schema"), dict) and "mime_type" in obj:
            return "format"
        return "dict"
    if isinstance(obj, type) or typing.get_origin(obj) is not None:  # int, list[Recipe], ...
        return "type"
    return ""


def _label(obj: Any, name: Optional[str]) -> str:
    return name or getattr(obj, "__name__", None) or "the schema"


def is_schema(obj: Any) -> bool:
    """True if `response_format_for(obj)` would accept it."""
    try:
        response_format_for(obj)
    except SchemaError:
        return False
    return True


def response_format_for(obj: Any, name: Optional[str] = None) -> dict:
    """`{"type":"text","mime_type":"application/json","schema":{...}}` for a schema source.

    `name` is how the user referred to it (for messages). Raises SchemaError (one sentence)
    for anything that is not a schema, e.g. a model *instance*, a string or a data dict.
    """
    label = _label(obj, name)
    kind = _kind(obj)
    if kind == "pydantic":
        schema = obj.model_json_schema()
    elif kind == "format":
        _check_json_schema(obj["schema"], label)
        return dict(obj)
    elif kind == "dict":
        _check_json_schema(obj, label)
        schema = obj
    elif kind in ("dataclass", "typeddict", "type"):
        schema = _adapter(obj, label).json_schema()
    else:
        raise SchemaError(_not_a_schema(obj, label))
    return {"type": "text", "mime_type": "application/json", "schema": schema}


def _adapter(obj: Any, label: str) -> pydantic.TypeAdapter:
    """A pydantic TypeAdapter, accepting `typing.TypedDict` on Python < 3.12 too."""
    try:
        return pydantic.TypeAdapter(_portable_typeddict(obj))
    except Exception as exc:
        hint = ""
        if "typing_extensions" in str(exc):
            hint = " (on Python < 3.12 nested TypedDicts must come from typing_extensions)"
        raise SchemaError(
            f"{label} cannot be used as a schema: pydantic cannot describe it as JSON{hint}; use a "
            "pydantic model, dataclass, TypedDict or JSON-schema dict.") from None


def _portable_typeddict(obj: Any) -> Any:
    """Re-create a `typing.TypedDict` with typing_extensions, which pydantic needs before 3.12."""
    if sys.version_info >= (3, 12) or not is_typeddict(obj) or type(obj).__module__ != "typing":
        return obj
    hints = typing.get_type_hints(obj, include_extras=True)
    marks = (typing_extensions.Required, typing_extensions.NotRequired)
    fields = {
        k: v if (typing.get_origin(v) in marks or k in obj.__required_keys__)
        else typing_extensions.NotRequired[v]
        for k, v in hints.items()
    }
    new = typing_extensions.TypedDict(obj.__name__, fields)
    new.__doc__, new.__module__ = obj.__doc__, obj.__module__
    return new


def _not_a_schema(obj: Any, label: str) -> str:
    cls = type(obj)
    if isinstance(obj, pydantic.BaseModel) or dataclasses.is_dataclass(obj):
        return (f"{label} is an instance of {cls.__name__}, not a schema; pass the class "
                f"{cls.__name__} itself.")
    return (f"{label} is a value of type {cls.__name__}, not a schema; use a pydantic model, dataclass, "
            "TypedDict or JSON-schema dict.")


def _check_json_schema(schema: dict, label: str) -> None:
    import jsonschema  # deferred: jsonschema

    if not _SCHEMA_KEYWORDS & set(schema):
        raise SchemaError(
            f"{label} is a dict without any JSON-schema keyword (type, properties, items, $ref, "
            "anyOf, enum...), so it looks like data, not a schema.")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        raise SchemaError(f"{label} is not a valid JSON schema at {where}: {exc.message}.") from None


def parse_structured(text: Optional[str], obj: Any, name: Optional[str] = None) -> Any:
    """Parse the model's JSON answer into the schema's Python value, validating it.

    Returns a model instance (pydantic), a dataclass instance, the validated value for other
    types, or a dict/list for TypedDicts and JSON-schema dicts. A ```json fence around the
    answer is tolerated. Raises SchemaError (with `.raw` = the answer) if it does not fit.
    """
    label = _label(obj, name)
    kind = _kind(obj)
    if not kind:
        raise SchemaError(_not_a_schema(obj, label))
    raw = text if text is not None else ""
    body = unfenced(raw).strip()
    if not body:
        raise SchemaError(f"The model's answer is empty, so there is nothing to parse as {label}.",
                          raw=raw)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise SchemaError(
            f"The model's answer is not valid JSON ({exc.msg} at line {exc.lineno} column "
            f"{exc.colno}), so it cannot be parsed as {label}; the raw text is in the error's "
            "`raw`.", raw=raw) from None
    if kind in ("dict", "format"):
        schema = obj["schema"] if kind == "format" else obj
        _check_json_schema(schema, label)
        _validate_json_schema(data, schema, label, raw)
        return data
    try:
        if kind == "pydantic":
            return obj.model_validate(data)
        return _adapter(obj, label).validate_python(data)
    except pydantic.ValidationError as exc:
        raise SchemaError(
            f"The model's answer does not match {label}: {_pydantic_reason(exc)}; the raw text is "
            "in the error's `raw`.", raw=raw) from None


def _validate_json_schema(data: Any, schema: dict, label: str, raw: str) -> None:
    import jsonschema  # deferred: jsonschema

    cls = jsonschema.validators.validator_for(schema)
    error = jsonschema.exceptions.best_match(cls(schema).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        raise SchemaError(
            f"The model's answer does not match {label} at {where}: {error.message}; the raw text "
            "is in the error's `raw`.", raw=raw)


def _pydantic_reason(exc: pydantic.ValidationError) -> str:
    errs = exc.errors()
    parts = []
    for err in errs[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else err.get("msg", "invalid"))
    if len(errs) > 3:
        parts.append(f"and {len(errs) - 3} more")
    return "; ".join(parts)
