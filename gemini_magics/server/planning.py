"""Constrained function-call planning: the engine picks a declared function, or answers.

The engine is asked, with a JSON schema (constrained decoding), to pick one declared function
with arguments valid against that function's own parameter schema, or to answer directly; so
the arguments always validate. `close_schema` tightens a schema for decoding the same way for
function arguments and for `response_format` schemas.
"""
from __future__ import annotations

import copy
import json
import re
from typing import Any, Callable, Optional

from .engines.base import Engine, EngineRequest, GenerationParams
from .json_schema import validator

__all__ = ["close_schema", "function_call_schema", "plan_function_call", "pin_numbers",
           "question_numbers", "MAX_ITEMS", "MAX_STRING"]

_ANSWER_KEY = "answer"


def function_call_schema(function_tools: list[dict], allow_answer: bool = True) -> dict:
    """A JSON schema whose instances are `{"name": f, "arguments": {...}}` for one declared f
    (arguments valid against f's `parameters`), or `{"answer": true}` when `allow_answer`.

    Each function's `$defs` are hoisted to the root under `<function>__<Name>` (refs rewritten),
    and the copy is tightened (closed objects, bounded arrays and strings) so a small model
    cannot ramble; anything the tightened schema allows is valid for the original.
    """
    options: list[dict] = []
    defs: dict[str, Any] = {}
    for tool in function_tools:
        name = tool["name"]
        params = copy.deepcopy(tool.get("parameters") or {"type": "object", "properties": {}})
        local = {**params.pop("definitions", {}), **params.pop("$defs", {})}
        prefix = re.sub(r"[^A-Za-z0-9_]", "_", name)
        renames = {k: f"{prefix}__{k}" for k in local}
        params = close_schema(_rename_refs(params, renames))
        for k, v in local.items():
            defs[renames[k]] = close_schema(_rename_refs(v, renames))
        options.append({
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": params},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
    if allow_answer:
        options.append({"type": "object", "properties": {_ANSWER_KEY: {"const": True}},
                        "required": [_ANSWER_KEY], "additionalProperties": False})
    schema: dict[str, Any] = {"anyOf": options} if len(options) > 1 else options[0]
    if defs:
        schema["$defs"] = defs
    return schema


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                m = re.match(r"^#/(?:\$defs|definitions)/(.+)$", v)
                if m and m.group(1) in renames:
                    v = f"#/$defs/{renames[m.group(1)]}"
            out[k] = _rename_refs(v, renames)
        return out
    if isinstance(node, list):
        return [_rename_refs(v, renames) for v in node]
    return node


# Bounds close_schema adds where a schema sets none (what they allow still validates against
# the original schema): a 135M model otherwise fills arrays and strings until max tokens.
MAX_ITEMS = 8
MAX_STRING = 200


def close_schema(node: Any) -> Any:
    """Tighten a copy of a schema for decoding: close objects that have properties and set no
    `additionalProperties`, and bound arrays and strings that have no limit.

    Walks the schema's structure (not every dict), so a property named "properties" is safe.
    """
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        if isinstance(out.get(key), dict):
            out[key] = {k: close_schema(v) for k, v in out[key].items()}
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(out.get(key), list):
            out[key] = [close_schema(v) for v in out[key]]
    for key in ("items", "additionalProperties", "not", "contains"):
        if isinstance(out.get(key), dict):
            out[key] = close_schema(out[key])
    if isinstance(out.get("properties"), dict) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    kind = out.get("type")
    if (kind == "array" or "items" in out) and "maxItems" not in out:
        out["maxItems"] = max(MAX_ITEMS, out.get("minItems", 0))
    if kind == "string" and not ({"maxLength", "enum", "const", "format", "pattern"} & set(out)):
        out["maxLength"] = max(MAX_STRING, out.get("minLength", 0))
    return out


def _allowed(function_tools: list[dict], tool_choice: Any) -> tuple[list[dict], bool]:
    """Apply generation_config.tool_choice: (functions the model may call, may it answer instead)."""
    if isinstance(tool_choice, dict):
        allowed = tool_choice.get("allowed_tools") or {}
        names = set(allowed.get("tools") or [t["name"] for t in function_tools])
        mode = allowed.get("mode") or "auto"
        return [t for t in function_tools if t["name"] in names], mode not in ("any", "validated")
    mode = tool_choice or "auto"
    if mode == "none":
        return [], True
    return list(function_tools), mode not in ("any", "validated")


_WORD = re.compile(r"[a-z]{4,}")
_COMMON = set("""about also been could does from give have into just like make more most much
need only over please should show some such tell than that their them then there they this
very want were what when where which will with would your
based current given information list name number result return specified type using value
""".split())  # the last line: words of many function descriptions, saying nothing of the topic


def _stems(text: str) -> set[str]:
    """Content words of `text` (4+ letters, common words dropped), lightly stemmed."""
    words = _WORD.findall(re.sub(r"([a-z])([A-Z])", r"\1 \2", text).replace("_", " ").lower())
    return {re.sub(r"(ing|ed|es|s)$", "", w) for w in words if w not in _COMMON}


def _asked_for(function_tools: list[dict], messages: list[dict]) -> bool:
    """Whether the user's last message is about one of the functions (shares a content word
    with its name or description), as "What is the temperature in London?" is about
    get_current_temperature. A 135M model's call-or-answer choice is a coin flip; a real model
    calls the function the question is about, so then the answer option is withheld."""
    last = _question(messages)
    if not last:
        return False
    asked = _stems(last)
    return any(asked & _stems(f"{t['name']} {t.get('description') or ''}") for t in function_tools)


_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w.]*\d)")


def _question(messages: list[dict]) -> str:
    """The user's last message, unless it is a function result."""
    last = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    return "" if not isinstance(last, str) or last.lstrip().startswith("[function result") else last


def question_numbers(text: str) -> list:
    """The numbers a question states, in order, once each: "1,234 times 5678" -> [1234, 5678]."""
    out: list = []
    for m in _NUMBER.finditer(text):
        raw = m.group(0).replace(",", "")
        value = float(raw) if "." in raw else int(raw)
        if value not in out:
            out.append(value)
    return out


def pin_numbers(function_tools: list[dict], numbers: list) -> list[dict]:
    """Copies of the functions whose top-level number and integer parameters (with no enum or
    const of their own) may only take one of `numbers`, the question's (integers for an
    integer parameter). A 135M model copying "1234" into an argument writes 123 or 12340 for
    some seeds, so the teaching notebook's calculator multiplied the wrong numbers; a real
    model takes the numbers the user gave. Parameters no number fits are left as they are."""
    if not numbers:
        return function_tools
    out = []
    for tool in function_tools:
        params = tool.get("parameters")
        props = params.get("properties") if isinstance(params, dict) else None
        if not isinstance(props, dict):
            out.append(tool)
            continue
        pinned = {}
        for name, prop in props.items():
            kind = prop.get("type") if isinstance(prop, dict) else None
            fits = ([n for n in numbers if isinstance(n, int) or n.is_integer()]
                    if kind == "integer" else list(numbers) if kind == "number" else [])
            if fits and not ({"enum", "const", "anyOf", "oneOf"} & set(prop)):
                prop = {**prop, "enum": [int(n) if kind == "integer" else n for n in fits]}
            pinned[name] = prop
        out.append({**tool, "parameters": {**params, "properties": pinned}})
    return out


def _instructions(function_tools: list[dict], allow_answer: bool) -> str:
    lines = ["You can call these functions:"]
    for t in function_tools:
        lines.append(f"- {t['name']}: {t.get('description') or '(no description)'} "
                     f"Parameters: {json.dumps(t.get('parameters') or {}, ensure_ascii=False)}")
    lines.append('To call a function, reply with JSON {"name": <function name>, "arguments": {...}}.')
    if allow_answer:
        lines.append('If no function is needed, or a function result already answers the user, '
                     'reply with {"answer": true}.')
    return "\n".join(lines)


def plan_function_call(engine: Engine, messages: list[dict], function_tools: list[dict], *,
                       model: str = "", params: Optional[GenerationParams] = None,
                       tool_choice: Any = None,
                       on_text: Optional[Callable[[str], bool]] = None,
                       usage: Optional[dict] = None) -> Optional[dict]:
    """Ask `engine` whether to call one of `function_tools` (type "function" tool dicts).

    Returns `{"name": ..., "arguments": {...}}` with arguments valid against that function's
    `parameters` schema, or None when the model chooses to answer in text (or `tool_choice` is
    "none", or the reply was cut off and does not validate). With `tool_choice` "auto", a
    question about one of the functions (`_asked_for`) gets no option to answer instead; the
    number parameters take the numbers the question states (`pin_numbers`). `on_text` sees the
    raw JSON chunks and may return False to cancel. `usage`, if given, receives
    input_tokens/output_tokens. The arguments are checked by a validator that never fetches a
    `$ref` (`json_schema.validator`).
    """
    tools = [t for t in function_tools if t.get("type", "function") == "function" and t.get("name")]
    tools, allow_answer = _allowed(tools, tool_choice)
    if not tools:
        return None
    if allow_answer and _asked_for(tools, messages):
        allow_answer = False
    schema = function_call_schema(pin_numbers(tools, question_numbers(_question(messages))),
                                  allow_answer=allow_answer)
    msgs = [dict(m) for m in messages]
    guide = _instructions(tools, allow_answer)
    if msgs and msgs[0].get("role") == "system":
        msgs[0]["content"] = f"{msgs[0].get('content') or ''}\n\n{guide}".strip()
    else:
        msgs.insert(0, {"role": "system", "content": guide})
    p = copy.copy(params) if params is not None else GenerationParams()
    if p.max_output_tokens is None:
        p.max_output_tokens = 512
    request = EngineRequest(model=model, messages=msgs, params=p, json_schema=schema)
    result = engine.generate(request, on_text or (lambda _chunk: True))
    if usage is not None:
        usage["input_tokens"] = usage.get("input_tokens", 0) + result.input_tokens
        usage["output_tokens"] = usage.get("output_tokens", 0) + result.output_tokens
    if result.finish == "cancelled":
        return None
    try:
        choice = json.loads(result.text)
    except (TypeError, ValueError):
        return None
    if not isinstance(choice, dict) or _ANSWER_KEY in choice:
        return None
    by_name = {t["name"]: t for t in tools}
    tool = by_name.get(choice.get("name"))
    if tool is None or not isinstance(choice.get("arguments"), dict):
        return None
    errors = validator(tool.get("parameters") or {}).iter_errors(choice["arguments"])
    if next(errors, None) is not None:
        return None
    return {"name": tool["name"], "arguments": choice["arguments"]}
