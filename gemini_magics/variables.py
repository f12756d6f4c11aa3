"""Notebook values described in words a prompt can afford: `{df}`, and `%gemini fix`'s variables.

`str()` of a 10,000-row DataFrame is either pandas' own truncated repr (rows the model cannot
use, no dtypes) or, for a big list, megabytes of text. So a DataFrame, Series or numpy array,
a large container and any other text over `MAX_TEXT` characters become a bounded description:
the type, the shape, the columns and their dtypes, a few head rows. Strings are sent as they
are (they are the user's words), and `{df!s}` sends `str(df)` in full (prompt.py).

Pure and duck-typed: pandas and numpy are recognised by their type names, never imported.
"""
from __future__ import annotations

import inspect
from typing import Any, Optional

__all__ = ["describe", "short_description", "MAX_TEXT"]

MAX_TEXT = 4000        # characters of str() a value may have before it is described instead
BIG_CONTAINER = 50     # a list, tuple, set or dict with more items is described
HEAD = 5               # rows, items or values shown of a described value
SHORT = 400            # characters of one variable in `short_description`


def _kind(value: Any) -> str:
    """'pandas.DataFrame', 'numpy.ndarray', ...: the top package and the class name."""
    cls = type(value)
    return f"{cls.__module__.split('.')[0]}.{cls.__name__}"


def _n(k: int) -> str:
    return f"{k:,}"


def _frame(df: Any, head: int) -> str:
    rows, cols = df.shape
    columns = ", ".join(f"{c} ({t})" for c, t in list(df.dtypes.items())[:40])
    more = f", … {_n(cols - 40)} more" if cols > 40 else ""
    shown = df if rows <= head * 2 else df.head(head)
    which = f"all {_n(rows)} rows" if rows <= head * 2 else f"first {head} of {_n(rows)} rows"
    table = shown.to_string(max_cols=20, max_colwidth=60)
    return (f"pandas DataFrame, {_n(rows)} rows × {_n(cols)} columns\n"
            f"columns (dtype): {columns}{more}\n{which}:\n{table}")


def _series(s: Any, head: int) -> str:
    name = f" {s.name!r}" if s.name is not None else ""
    n = len(s)
    shown = s if n <= head * 2 else s.head(head)
    which = f"all {_n(n)} values" if n <= head * 2 else f"first {head} of {_n(n)} values"
    return (f"pandas Series{name}, {_n(n)} values, dtype {s.dtype}\n{which}:\n"
            f"{shown.to_string(max_rows=head * 2)}")


def _array(a: Any, head: int) -> str:
    import numpy  # deferred: numpy, only for a value that already is a numpy array

    shape = "×".join(_n(d) for d in a.shape) or "scalar"
    values = numpy.array2string(a, threshold=head * 10, edgeitems=min(head, 3), max_line_width=100)
    return f"numpy array, shape {shape}, dtype {a.dtype}\nvalues:\n{values}"


def _container(value: Any, head: int) -> str:
    n = len(value)
    kind = type(value).__name__
    if isinstance(value, dict):
        items = list(value.items())[:head]
        shown = "{" + ", ".join(f"{k!r}: {_cut(repr(v), 200)}" for k, v in items) + ", …}"
        return f"{kind} of {_n(n)} keys; first {len(items)} items: {shown}"
    items = list(value)[:head]
    types = sorted({type(v).__name__ for v in list(value)[:1000]})
    shown = "[" + ", ".join(_cut(repr(v), 200) for v in items) + ", …]"
    return f"{kind} of {_n(n)} items ({', '.join(types[:5])}); first {len(items)}: {shown}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def describe(value: Any, head: int = HEAD) -> Optional[str]:
    """A bounded description of `value`, or None when `str(value)` reads well as it is (strings,
    numbers, small containers and objects). May raise what the value's own methods raise."""
    if isinstance(value, str):
        return None
    kind = _kind(value)
    if kind == "pandas.DataFrame":
        return _frame(value, head)
    if kind == "pandas.Series":
        return _series(value, head)
    if kind == "numpy.ndarray":
        return _array(value, head)
    if isinstance(value, (list, tuple, set, frozenset, dict)) and len(value) > BIG_CONTAINER:
        return _container(value, head)
    text = str(value)
    if len(text) > MAX_TEXT:
        return (f"{text[:MAX_TEXT]}\n… ({_n(len(text) - MAX_TEXT)} more characters of this "
                f"{type(value).__name__} left out)")
    return None


def short_description(name: str, value: Any) -> str:
    """One variable in a few lines, for `%gemini fix`: `name: type = value` or its description,
    at most about SHORT characters."""
    if inspect.ismodule(value):
        return f"{name}: module {value.__name__}"
    if inspect.isclass(value):
        return f"{name}: class {value.__module__}.{value.__qualname__}"
    if callable(value) and hasattr(value, "__name__"):
        try:
            sig = str(inspect.signature(value))
        except (TypeError, ValueError):
            sig = "(…)"
        return f"{name}: function {value.__name__}{sig}"
    try:
        text = describe(value, head=3) or repr(value)
    except Exception as exc:  # noqa: BLE001 - the user's own __repr__ or property
        text = f"(could not be shown: {type(exc).__name__})"
    return _cut(f"{name}: {type(value).__name__} = {text}", SHORT)
