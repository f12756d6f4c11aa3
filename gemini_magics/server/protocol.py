"""Request validation and Google-style errors for the Interactions wire protocol.

Bad input must become one clear 4xx sentence naming the field (never a 500, never a hang), so
every request body goes through `parse_create` before anything else touches it. Inputs are
normalised here into a list of steps, the one shape the rest of the server handles.
Reference: shared/interactions-protocol.md (sections 2, 4, 5 and 9).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlsplit

from ..catalog import (ASPECT_RATIOS, BUILTIN_TOOLS, IMAGE_SIZES, is_loopback, normalize_aspect_ratio,
                       normalize_image_size)
from .json_schema import check_schema, local_lookup
from .mcp_tools import tool_problem
from .planning import close_schema

MAX_BODY_BYTES = 32 * 1024 * 1024
# Arrays and objects inside each other, counted from the body (the real API decodes into
# protobufs, whose recursion limit is 100). Everything downstream of parse_json_body may recurse.
MAX_JSON_DEPTH = 100
INT64 = 2 ** 63  # integer settings must fit an int64, as in the real API

CONTENT_TYPES = {"text", "image", "audio", "video", "document"}
# Media parts one request may carry: Gemini's own limit of images per request. Each is described
# for the text model (describe.py: linear in its bytes, pixels decoded only for small images), so
# this bounds the CPU one request can ask for (issue #18).
MAX_MEDIA_PARTS = 3000
# Top-level create fields the SDKs can send (protocol doc section 2.1). Anything else is a typo
# the real API would reject too, so we name it instead of silently ignoring it.
KNOWN_FIELDS = {
    "model", "agent", "agent_config", "input", "system_instruction", "tools", "generation_config",
    "response_format", "stream", "store", "background", "previous_interaction_id",
    "continuation_token", "service_tier", "labels", "webhook_config", "environment",
    "safety_settings", "cached_content", "response_mime_type", "response_modalities",
}
# Request fields echoed back on the Interaction resource.
ECHOED_FIELDS = (
    "agent", "agent_config", "system_instruction", "tools", "generation_config", "response_format",
    "environment", "service_tier", "labels", "webhook_config", "safety_settings",
)

SERVICE_TIERS = ("standard", "flex", "priority", "deferred")  # google-genai 3.6's ServiceTier
# webhook_config.uris: loopback hosts only (an offline server does not reach out), unless the
# server runs with this set to "any" (webhooks.py delivers them).
WEBHOOK_HOSTS_ENV = "GEMINI_MAGICS_WEBHOOK_HOSTS"
MAX_WEBHOOK_URIS = 10

_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 405: "INVALID_ARGUMENT", 408: "DEADLINE_EXCEEDED",
                 413: "INVALID_ARGUMENT", 500: "INTERNAL", 501: "UNIMPLEMENTED"}
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# JSON-schema keywords whose value names another schema: one outside the request (a file, a URL)
# is never followed (json_schema.py), and a request naming one is refused (check_refs).
REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")

log = logging.getLogger(__name__)
# The deprecation note for generation_config.image_config is logged once per process: it is
# still honoured (the SDKs send it), but the API moved image settings to response_format.
image_config_noted = threading.Event()
IMAGE_CONFIG_NOTE = ("generation_config.image_config is deprecated: the Interactions API takes "
                     "image settings in a response_format entry, e.g. {\"type\": \"image\", "
                     "\"aspect_ratio\": \"16:9\", \"image_size\": \"1K\"}; it is still honoured "
                     "(response_format wins where both are given).")


class ApiError(Exception):
    """An error answered as `{"error": {"code", "message", "status"}}` with that HTTP code.

    `close`: also close the connection (the rest of the request cannot be trusted)."""

    def __init__(self, code: int, message: str, status: Optional[str] = None,
                 close: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or _STATUS_NAMES.get(code, "INVALID_ARGUMENT")
        self.close = close

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def bad(message: str) -> ApiError:
    return ApiError(400, message)


def shown(value: Any, limit: int = 80) -> str:
    """`value` quoted for an error message, cut to about `limit` characters (ids and field
    names come from the client and may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


@dataclass
class CreateRequest:
    """A validated create body. `input_steps` is the input normalised to a list of steps."""

    model: Optional[str]
    agent: Optional[str]
    input_steps: list[dict]
    system_instruction: Optional[str] = None
    generation_config: dict = field(default_factory=dict)
    response_format: Any = None
    tools: list = field(default_factory=list)
    stream: bool = False
    store: bool = True
    background: bool = False
    previous_interaction_id: Optional[str] = None
    echo: dict = field(default_factory=dict)  # request fields to echo on the resource
    client: str = ""  # who asked (set by the server from the key and peer): turns share fairly
    custom_agent: Optional[dict] = None  # the custom agent `agent` names (agents.py), if any

    @property
    def name(self) -> str:
        return self.model or self.agent or ""

    def json_schema(self) -> Optional[dict]:
        """The schema the engine decodes against, if `response_format` asks for JSON: the
        request's schema tightened (closed objects, bounded strings and arrays, as for function
        arguments) so a small model cannot ramble into the token limit; whatever it allows is
        valid for the original schema."""
        schema = self._requested_schema()
        return close_schema(schema) if schema is not None else None

    def _requested_schema(self) -> Optional[dict]:
        for _, fmt in response_formats(self.response_format):
            if not isinstance(fmt, dict):
                continue
            if fmt.get("type") == "text" and isinstance(fmt.get("schema"), dict):
                return fmt["schema"]
            if fmt.get("type") == "text" and fmt.get("mime_type") == "application/json":
                return {"type": "object"}
            if fmt.get("type") not in {"text", "image", "audio", "video"}:
                return fmt  # a bare JSON schema
        return None


def parse_json_body(raw: bytes) -> dict:
    if not raw.strip():
        raise bad("The request body is empty; send a JSON object such as "
                  '{"model": "gemini-3.5-flash", "input": "Hello"}.')
    try:
        body = json.loads(raw)
    except RecursionError:
        raise _too_deep(_deep_field(raw)) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"The request body is not valid JSON ({e}); send a JSON object.") from None
    if not isinstance(body, dict):
        raise bad(f"The request body must be a JSON object, not a {_kind(body)}.")
    check_json_values(body)
    return body


def check_json_values(body: dict) -> None:
    """What JSON allows but nothing after it can handle, as a 400 naming where it is: nesting
    deeper than MAX_JSON_DEPTH, strings with lone UTF-16 surrogates ("\\ud800", which cannot be
    encoded, stored or streamed) and non-finite numbers (NaN, Infinity, 1e400: not JSON, so
    they could never be answered). One walk without recursion over every value."""
    stack: list[tuple[Any, int, Any]] = [(body, 1, None)]  # (container, depth, path)
    while stack:
        container, depth, path = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in items:
            if isinstance(key, str) and not key.isascii() and _SURROGATE.search(key):
                raise _surrogate(_where(path, key), key=True)
            if isinstance(value, str):
                if not value.isascii() and _SURROGATE.search(value):
                    raise _surrogate(_where(path, key))
            elif isinstance(value, float):
                if not math.isfinite(value):
                    raise bad(f"'{_where(path, key)}' is not a finite number (NaN, Infinity and "
                              f"numbers beyond 1.8e308 such as 1e400 are not JSON); send a "
                              f"finite number.")
            elif isinstance(value, (dict, list)) and value:
                if depth >= MAX_JSON_DEPTH:
                    raise _too_deep(_where(path, key).split(".")[0].split("[")[0])
                stack.append((value, depth + 1, (path, key)))


def _where(path: Any, key: Any) -> str:
    """A field path such as `input[0].content[1].text` from the walk's (parent, key) links."""
    parts = [key]
    while path is not None:
        path, k = path
        parts.append(k)
    out = ""
    for k in reversed(parts):
        if isinstance(k, int):
            out += f"[{k}]"
        else:
            k = k if len(k) <= 40 and k.isascii() and k.isprintable() else shown(k, 40)
            out += f".{k}" if out else k
    return out


def _too_deep(field_name: Optional[str]) -> ApiError:
    where = f"'{field_name}'" if field_name else "The request body"
    return bad(f"{where} nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; "
               f"send flatter JSON.")


def _surrogate(where: str, key: bool = False) -> ApiError:
    what = f"A key in '{where.rsplit('.', 1)[0]}'" if key and "." in where else (
        "A field name" if key else f"'{where}'")
    return bad(f"{what} contains a lone UTF-16 surrogate (such as \\ud800), which is not "
               f"valid Unicode; send valid UTF-8 text.")


_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"\s*:?|[\[\]{}]')
_SCAN_BYTES = 1024 * 1024


def _deep_field(raw: bytes) -> Optional[str]:
    """The top-level field whose value is nested too deeply for json.loads, from a scan of the
    body's first MiB (None when not found there: the message then names the body)."""
    depth, key = 0, None
    for m in _TOKEN.finditer(raw, 0, _SCAN_BYTES):
        tok = m.group()
        if tok in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return key
        elif tok in (b"]", b"}"):
            depth -= 1
        elif depth == 1 and tok.endswith(b":"):
            try:
                name = json.loads(tok[:-1].strip())
            except ValueError:
                return None
            key = name if isinstance(name, str) and len(name) <= 40 else None
    return None


def parse_create(body: dict, query_stream: bool = False) -> CreateRequest:
    """Validate a create body; raise ApiError naming the first wrong field."""
    unknown = sorted(k for k in body if k not in KNOWN_FIELDS)
    if unknown:
        raise bad(f"Unknown field {shown(unknown[0])} in the request body; known fields are "
                  f"{', '.join(sorted(KNOWN_FIELDS))}.")
    model = _opt(body, "model", str)
    agent = _opt(body, "agent", str)
    if model and agent:
        raise bad("Give either 'model' or 'agent', not both.")
    if not model and not agent:
        raise bad("'model' is required (for example \"gemini-3.5-flash\").")
    if "input" not in body or body["input"] is None:
        raise bad("'input' is required: a string, a content object, or a list of content or steps.")
    gen = _opt(body, "generation_config", dict) or {}
    _check_generation_config(gen)
    system = _opt(body, "system_instruction", str)
    tools = _opt(body, "tools", list) or []
    rf = body.get("response_format")
    if rf is not None and not isinstance(rf, (dict, list)):
        raise bad(f"'response_format' must be an object or a list of objects, not a {_kind(rf)}.")
    for name in ("tools", "response_format", "generation_config"):  # where schemas can be
        check_refs(body.get(name), name)
    check_tools(tools)
    _check_response_schema(rf)
    env = body.get("environment")
    if env is not None and not isinstance(env, (str, dict)):
        raise bad(f"'environment' must be \"remote\", an environment id or an object, not a "
                  f"{_kind(env)}.")
    _check_image_options(gen, rf)
    stream = _opt(body, "stream", bool)
    store = _opt(body, "store", bool)
    background = _opt(body, "background", bool) or False
    prev = _opt(body, "previous_interaction_id", str)
    for name, kind in (("labels", dict), ("agent_config", dict), ("webhook_config", dict),
                       ("safety_settings", list), ("service_tier", str)):
        _opt(body, name, kind)
    tier = body.get("service_tier")
    if tier is not None and tier not in SERVICE_TIERS:
        raise bad(f"'service_tier' is {shown(tier)}; use one of {', '.join(SERVICE_TIERS)}.")
    check_webhook_config(body.get("webhook_config") or {})
    store = True if store is None else store
    if background and not store:
        raise bad("'background': true needs 'store': true, so the result can be fetched later.")
    steps = normalise_input(body["input"])
    check_media_parts(steps, "input")
    return CreateRequest(
        model=model, agent=agent, input_steps=steps, system_instruction=system,
        generation_config=gen, response_format=rf, tools=tools,
        stream=bool(stream) or query_stream, store=store, background=background,
        previous_interaction_id=prev or None,
        echo={k: body[k] for k in ECHOED_FIELDS if body.get(k) is not None},
    )


def check_webhook_config(config: dict) -> None:
    """A 400 naming the first field of `webhook_config` the server cannot honour."""
    uris = config.get("uris")
    if uris is None:
        return
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        raise bad("'webhook_config.uris' must be a list of URLs (strings).")
    if len(uris) > MAX_WEBHOOK_URIS:
        raise bad(f"'webhook_config.uris' has {len(uris)} URLs; give at most {MAX_WEBHOOK_URIS}.")
    metadata = config.get("user_metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise bad("'webhook_config.user_metadata' must be an object.")
    anywhere = os.environ.get(WEBHOOK_HOSTS_ENV, "").strip().lower() == "any"
    for i, uri in enumerate(uris):
        try:
            parts = urlsplit(uri)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError for a port that is not one
        except ValueError:
            host = None
        if host is None or parts.scheme not in ("http", "https"):
            raise bad(f"'webhook_config.uris[{i}]' is {shown(uri)}, not an http(s) URL.")
        if not anywhere and not is_loopback(host):
            raise bad(f"'webhook_config.uris[{i}]' is {shown(uri)}: the local server delivers "
                      f"webhooks to loopback addresses only (127.0.0.1, ::1, localhost); start "
                      f"it with {WEBHOOK_HOSTS_ENV}=any to allow other hosts.")


def check_refs(value: Any, where: str) -> None:
    """A 400 for a schema reference (`$ref`...) anywhere in `value` that is not local ('#...'):
    following one would read a file or fetch a URL from the server."""
    for field, ref in _refs(value, where):
        if not ref.startswith("#"):
            raise bad(f"{field}: only local references ('#/...') are allowed, not {shown(ref)}; "
                      f"put the schema under '$defs' and refer to it as '#/$defs/Name'.")


def _refs(value: Any, where: str):
    """(field path, reference) for each string under a REF_KEYWORDS key anywhere in `value`
    (`where`): every nested object and list is walked (`if`, `allOf`, `$defs`...), without
    recursion."""
    stack: list[tuple[Any, Any]] = [(value, (None, where))] if value else []
    while stack:
        container, path = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, child in items:
            if key in REF_KEYWORDS and isinstance(child, str):
                yield _where(path, key), child
            elif isinstance(child, (dict, list)):
                stack.append((child, (path, key)))


def check_tools(tools: list) -> None:
    """Tools the local server can honour: function declarations with a valid parameter schema
    (their arguments are decoded against it), the built-in tools it emulates, and MCP servers
    it calls (`mcp_tools`)."""
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise bad(f"'tools[{i}]' must be an object with a string 'type' such as \"function\".")
        kind = tool["type"]
        if kind == "function":
            name = tool.get("name")
            if not isinstance(name, str) or not name.strip():
                raise bad(f"'tools[{i}].name' is required for a function tool (a string).")
            params = tool.get("parameters")
            if params is not None:
                _check_schema(params, f"tools[{i}].parameters")
        elif kind == "mcp_server":
            problem = tool_problem(tool, f"tools[{i}]")
            if problem:
                raise bad(problem)
        elif kind not in BUILTIN_TOOLS:
            raise bad(f"'tools[{i}]' has type {json.dumps(kind)}, which the local server cannot "
                      f"emulate offline; use \"function\", \"mcp_server\" or one of "
                      f"{', '.join(BUILTIN_TOOLS)} (set GEMINI_API_KEY to use the real API).")


def response_formats(rf: Any) -> list[tuple[str, Any]]:
    """(where, entry) for each entry of `response_format`: one object, or a list of them."""
    if rf is None:
        return []
    if isinstance(rf, list):
        return [(f"response_format[{i}]", fmt) for i, fmt in enumerate(rf)]
    return [("response_format", rf)]


def _check_response_schema(rf: Any) -> None:
    for where, fmt in response_formats(rf):
        if not isinstance(fmt, dict):
            continue
        if fmt.get("type") == "text" and fmt.get("schema") is not None:
            _check_schema(fmt["schema"], where + ".schema")
        elif fmt.get("type") not in {"text", "image", "audio", "video"}:
            _check_schema(fmt, where)  # a bare JSON schema


def _check_schema(schema: Any, where: str) -> None:
    """A JSON schema the engine can decode against, or a 400 naming what is wrong."""
    import jsonschema  # deferred: slow to import (~1.5 s cold), only requests with schemas need it

    if not isinstance(schema, dict):
        raise bad(f"'{where}' must be a JSON schema object, not a {_kind(schema)}.")
    try:
        check_schema(schema)
    except jsonschema.exceptions.SchemaError as e:
        path = "/".join(str(p) for p in e.absolute_path) or "its top level"
        raise bad(f"'{where}' is not a valid JSON schema at {path}: {_cut(e.message)}.") from None
    resolves = local_lookup(schema)
    for field, ref in _refs(schema, where) if resolves is not None else ():
        if not resolves(ref):
            raise bad(f"{field} is {shown(ref)}, which points at nothing in '{where}'; define "
                      f"that schema (e.g. under '$defs') or fix the reference.")


def _check_generation_config(gen: dict) -> None:
    for name in ("temperature", "top_p"):
        v = gen.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise bad(f"'generation_config.{name}' must be a number, not a {_kind(v)}.")
    for name in ("max_output_tokens", "seed"):
        v = gen.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise bad(f"'generation_config.{name}' must be an integer, not a {_kind(v)}.")
        if v is not None and not -INT64 <= v < INT64:
            raise bad(f"'generation_config.{name}' is out of range; it must fit a 64-bit "
                      f"integer.")
    mot = gen.get("max_output_tokens")
    if mot is not None and mot < 1:
        raise bad("'generation_config.max_output_tokens' must be at least 1.")
    stops = gen.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list)
                              or not all(isinstance(s, str) for s in stops)):
        raise bad("'generation_config.stop_sequences' must be a list of strings.")


def _check_image_options(gen: dict, rf: Any) -> None:
    """Image settings (image_config, image response_format) -> normalised in place, or a 400."""
    places = []
    config = gen.get("image_config")
    if config is not None:
        if not isinstance(config, dict):
            raise bad(f"'generation_config.image_config' must be an object, not a {_kind(config)}.")
        places.append(("generation_config.image_config", config))
        if not image_config_noted.is_set():
            image_config_noted.set()
            log.warning(IMAGE_CONFIG_NOTE)
    places += [(where, fmt) for where, fmt in response_formats(rf)
               if isinstance(fmt, dict) and fmt.get("type") == "image"]
    if not places:
        return
    for where, spec in places:
        for key, norm, allowed in (("aspect_ratio", normalize_aspect_ratio, ASPECT_RATIOS),
                                   ("image_size", normalize_image_size, IMAGE_SIZES)):
            value = spec.get(key)
            if value is None:
                continue
            try:
                ok = isinstance(value, (str, int)) and not isinstance(value, bool)
                spec[key] = norm(value if ok else "?")
            except ValueError:
                raise bad(f"'{where}.{key}' is {json.dumps(value)}, which is not supported; use "
                          f"one of {', '.join(allowed)}.") from None
        mime = spec.get("mime_type")
        if mime is not None and (not isinstance(mime, str)
                                 or mime.lower() not in ("image/png", "image/jpeg")):
            raise bad(f"'{where}.mime_type' is {json.dumps(mime)}; the local server draws "
                      f"\"image/png\" or \"image/jpeg\" images.")


def normalise_input(value: Any, where: str = "input") -> list[dict]:
    """Turn every accepted input form into a list of steps.

    Forms: "text"; a content object; a list of content objects (one user turn); a list of steps;
    a list of {role, content} turns (role "user" or "model"/"assistant"). Explicit nulls, as the
    Python SDK's model_dump() sends them, count as absent.
    """
    if isinstance(value, str):
        return [{"type": "user_input", "content": [{"type": "text", "text": value}]}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise bad(f"'{where}' must be a string, an object or a list, not a {_kind(value)}.")
    if not value:
        raise bad(f"'{where}' is an empty list; give at least one content item or step.")
    steps: list[dict] = []
    pending: list[dict] = []  # consecutive bare content items form one user turn
    for i, item in enumerate(value):
        path = f"{where}[{i}]"
        if isinstance(item, str):
            pending.append({"type": "text", "text": item})
            continue
        if not isinstance(item, dict):
            raise bad(f"'{path}' must be an object or a string, not a {_kind(item)}.")
        item = strip_nulls(item)
        kind = item.get("type")
        if kind is None and "text" in item and "role" not in item:
            kind = "text"
            item = {**item, "type": "text"}
        if kind in CONTENT_TYPES:
            pending.append(_content(item, path))
            continue
        if pending:
            steps.append({"type": "user_input", "content": pending})
            pending = []
        if "role" in item and kind is None:
            steps.append(_turn(item, path))
        elif isinstance(kind, str):
            steps.append(_step(item, path))
        else:
            raise bad(f"'{path}' needs a 'type' (a step type such as \"user_input\" or a content "
                      f"type such as \"text\"), or a 'role' and 'content'.")
    if pending:
        steps.append({"type": "user_input", "content": pending})
    return steps


def check_media_parts(steps: list[dict], where: str) -> None:
    """A 400 for more than MAX_MEDIA_PARTS media parts in `steps` (their content, and the
    content lists tool results carry), before any of them is decoded."""
    count = 0
    for step in steps:
        for name in ("content", "result"):
            items = step.get(name)
            if isinstance(items, list):
                count += sum(1 for c in items if isinstance(c, dict)
                             and c.get("type") in CONTENT_TYPES and c.get("type") != "text")
    if count > MAX_MEDIA_PARTS:
        raise bad(f"'{where}' has {count:,} media parts (images, audio, video, documents); a "
                  f"request may carry at most {MAX_MEDIA_PARTS:,}, as in Gemini's API; send "
                  f"them over several requests.")


def _turn(item: dict, path: str) -> dict:
    role = item.get("role")
    if role not in ("user", "model", "assistant"):
        raise bad(f"'{path}.role' must be \"user\" or \"model\", not {json.dumps(role)}.")
    content = _contents(item.get("content"), f"{path}.content")
    return {"type": "user_input" if role == "user" else "model_output", "content": content}


def _step(item: dict, path: str) -> dict:
    kind = item["type"]
    if kind in ("user_input", "model_output"):
        out = dict(item)
        if "content" in item:
            out["content"] = _contents(item["content"], f"{path}.content")
        return out
    if kind == "function_call":
        for name in ("id", "name"):
            if not isinstance(item.get(name), str):
                raise bad(f"'{path}.{name}' is required for a function_call step (a string).")
        if not isinstance(item.get("arguments", {}), dict):
            raise bad(f"'{path}.arguments' must be an object.")
    elif kind == "function_result":
        if not isinstance(item.get("call_id"), str):
            raise bad(f"'{path}.call_id' is required for a function_result step (a string).")
        if "result" not in item:
            raise bad(f"'{path}.result' is required for a function_result step.")
    elif kind == "thought":
        sig = item.get("signature")
        if sig is not None and not isinstance(sig, str):
            raise bad(f"'{path}.signature' must be a string.")
    return dict(item)  # other step types (tool calls and results) are kept as sent


def _contents(value: Any, path: str) -> list[dict]:
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if isinstance(value, dict):
        value = [value]
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(f"'{path}' must be a string or a list of content objects, not a {_kind(value)}.")
    out = []
    for i, c in enumerate(value):
        if isinstance(c, str):
            out.append({"type": "text", "text": c})
            continue
        if not isinstance(c, dict):
            raise bad(f"'{path}[{i}]' must be a content object, not a {_kind(c)}.")
        c = strip_nulls(c)
        if "type" not in c and "text" in c:
            c["type"] = "text"
        out.append(_content(c, f"{path}[{i}]"))
    return out


def _content(item: dict, path: str) -> dict:
    kind = item.get("type")
    if kind == "text":
        if not isinstance(item.get("text"), str):
            raise bad(f"'{path}.text' is required for a text content item (a string).")
    elif kind in CONTENT_TYPES:
        if item.get("data") is None and item.get("uri") is None:
            raise bad(f"'{path}' ({kind}) needs 'data' (base64) or 'uri'.")
        for name in ("data", "uri", "mime_type"):
            if item.get(name) is not None and not isinstance(item[name], str):
                raise bad(f"'{path}.{name}' must be a string.")
    elif not isinstance(kind, str):
        raise bad(f"'{path}.type' is required (\"text\", \"image\", \"audio\", ...).")
    return item


def strip_nulls(value: Any) -> Any:
    """Drop keys whose value is None, recursively (model_dump() output comes back this way)."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def parse_bool_param(value: Optional[str], name: str) -> bool:
    if value is None or value == "":
        return False
    low = value.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise bad(f"Query parameter '{name}' must be true or false, not {shown(value)}.")


def _opt(body: dict, name: str, kind: type) -> Any:
    v = body.get(name)
    if v is None:
        return None
    if kind is not bool and isinstance(v, bool) or not isinstance(v, kind):
        raise bad(f"'{name}' must be {_expected(kind)}, not a {_kind(v)}.")
    return v


def _expected(kind: type) -> str:
    return {str: "a string", bool: "true or false", dict: "an object", list: "a list",
            int: "an integer"}.get(kind, kind.__name__)


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
