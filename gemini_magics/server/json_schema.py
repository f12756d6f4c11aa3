"""jsonschema validators for the schemas requests carry, which never fetch a reference.

Without a registry, jsonschema resolves a `$ref` it does not hold by fetching it (its deprecated
default: `urlopen`, so `file://` and `http://` alike) and quotes what it fetched in its errors:
a function's `parameters` could read the server's files or reach its network. Every validator
the server makes comes from here, with a registry whose retrieval refuses; `protocol` also
refuses non-local references before any schema is used, so this is the second wall, and
asks `local_lookup` whether each local one points at something.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

__all__ = ["validator", "check_schema", "local_lookup"]


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


def local_lookup(schema: dict) -> Optional[Callable[[str], bool]]:
    """`resolves(ref)`: whether a local reference ("#/$defs/City", "#anchor") points at a part
    of `schema`, so a dangling one is a 400 and not a failed turn. None when that cannot be told
    from the root: a nested `$id` moves the base of the references under it."""
    import referencing.jsonschema  # deferred: ~35 ms cold, only schemas need it
    from referencing.exceptions import Unresolvable  # deferred: as above

    if _has_nested_id(schema):
        return None
    try:
        resource = referencing.Resource.from_contents(
            schema, default_specification=referencing.jsonschema.DRAFT202012)
    except referencing.exceptions.CannotDetermineSpecification:  # a `$schema` it cannot place
        return None
    resolver = _registry().resolver_with_root(resource)

    def resolves(ref: str) -> bool:
        try:
            resolver.lookup(ref)
        except Unresolvable:
            return False
        return True
    return resolves


def _has_nested_id(schema: dict) -> bool:
    """Whether an object below the root has a string `$id` (or draft 4's `id`)."""
    stack = [v for v in schema.values() if isinstance(v, (dict, list))]
    while stack:
        node = stack.pop()
        values = node.values() if isinstance(node, dict) else node
        if isinstance(node, dict) and any(isinstance(node.get(k), str) for k in ("$id", "id")):
            return True
        stack.extend(v for v in values if isinstance(v, (dict, list)))
    return False
