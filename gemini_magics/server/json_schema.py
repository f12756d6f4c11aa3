"""jsonschema validators for the schemas requests carry, which never fetch a reference.

Without a registry, jsonschema resolves a `$ref` it does not hold by fetching it (its deprecated
default: `urlopen`, so `file://` and `http://` alike) and quotes what it fetched in its errors:
a function's `parameters` could read the server's files or reach its network. Every validator
the server makes comes from here, with a registry whose retrieval refuses; `protocol` also
refuses non-local references before any schema is used, so this is the second wall.
"""
from __future__ import annotations

from typing import Any

__all__ = ["validator", "check_schema"]


def _refuse(uri: str):
    """The registry's retrieval: nothing outside the schema itself is ever read."""
    # deferred: ~35 ms cold, only schemas need it
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)


def _registry():
    import referencing  # deferred: ~35 ms cold, only schemas need it

    return referencing.Registry(retrieve=_refuse)


def validator(schema: dict) -> Any:
    """A validator for `schema` (its `$schema`'s draft, else the latest) that retrieves nothing."""
    import jsonschema  # deferred: slow to import (~1.5 s cold), only requests with schemas need it

    return jsonschema.validators.validator_for(schema)(schema, registry=_registry())


def check_schema(schema: dict) -> None:
    """Raise jsonschema's SchemaError if `schema` is not valid against its draft's metaschema
    (as `Validator.check_schema`, with a registry that retrieves nothing)."""
    import jsonschema  # deferred: slow to import (~1.5 s cold), only requests with schemas need it

    cls = jsonschema.validators.validator_for(schema)
    meta = jsonschema.validators.validator_for(cls.META_SCHEMA, default=cls)
    checker = meta(cls.META_SCHEMA, registry=_registry(), format_checker=meta.FORMAT_CHECKER)
    for error in checker.iter_errors(schema):
        raise jsonschema.exceptions.SchemaError.create_from(error)
