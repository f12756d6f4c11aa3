"""Offline tools for the local server: emulated built-in tools and constrained function calls.

Built-in tools (Google Search, Maps, URL context, file search, computer use) need Google's
services, so the local server *emulates* them: it emits the same call and result steps as the
real API (protocol doc §4), derived deterministically from the prompt, and every result and
citation says it is offline (citations point at `https://offline.invalid/...`, a reserved domain
that never resolves). Nothing here opens a network connection.

Code execution is the one tool we can really run: the code is a template derived from the prompt
(the user's own fenced Python if the prompt has some, else an arithmetic expression, else a
word count), never the 135M model's unreliable code, and it runs in a subprocess with a timeout,
CPU/memory limits, no inherited environment and no network (a fresh network namespace when
`unshare` allows it, plus socket functions disabled in-process).

Function calls: the engine is asked, with a JSON schema (constrained decoding), to pick one
declared function with arguments valid against that function's own parameter schema, or to
answer directly; so the arguments always validate.

`tool_producer` puts it together as a step producer for `turns.pick_producer`.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Callable, Iterable, Optional
from urllib.parse import quote, quote_plus

from .engines.base import Engine, EngineRequest, GenerationParams

__all__ = [
    "EMULATED_TOOLS",
    "OFFLINE_URL",
    "describe_for_model",
    "emulate_builtin_tool",
    "function_call_events",
    "function_call_schema",
    "function_call_step",
    "offline_annotations",
    "plan_function_call",
    "record_step",
    "run_python_offline",
    "step_events",
    "tool_producer",
    "wants_tools",
]

OFFLINE_URL = "https://offline.invalid"
EMULATED_TOOLS = ("google_search", "code_execution", "url_context", "google_maps", "file_search",
                  "computer_use")
CODE_TIMEOUT = 10.0
_MAX_OUTPUT = 8000
_URL_RE = re.compile(r"https?://[^\s<>\"'`)\]]+")
_FENCED_PY = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.S | re.I)
_NUM = r"\d+(?:\.\d+)?"
_OPERAND = rf"[-+(\s]*{_NUM}[\s)]*"
_ARITH_RE = re.compile(rf"(?<![\w.]){_OPERAND}(?:(?:\*\*|[-+*/%]){_OPERAND})+")


# --------------------------------------------------------------------------------------------
# Built-in tool emulation
# --------------------------------------------------------------------------------------------

def emulate_builtin_tool(tool_type: str, prompt: str, call_id_factory: Callable[[], str],
                         tool: Optional[dict] = None) -> list[dict]:
    """The call and result steps an offline `tool_type` produces for `prompt`.

    `call_id_factory()` returns a fresh step id. `tool` is the request's tool dict (e.g.
    file_search store names). Raises ValueError (one sentence) for a tool we cannot emulate.
    """
    emulate = _EMULATORS.get(tool_type)
    if emulate is None:
        raise ValueError(f"The local server cannot emulate the tool {tool_type!r} offline; it "
                         f"emulates {', '.join(EMULATED_TOOLS)} (set GEMINI_API_KEY for the real API).")
    return emulate(prompt or "", call_id_factory, tool or {})


def _query(prompt: str, max_words: int = 12) -> str:
    """A search query from the prompt: its first sentence, without URLs and trailing '?'."""
    text = _URL_RE.sub(" ", prompt)
    first = re.split(r"(?<=[.?!。？！])\s+|\n", text.strip(), maxsplit=1)[0]
    words = first.strip(" ?!.。？！").split()
    return " ".join(words[:max_words]) or "offline search"


def _slug(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _search(prompt, new_id, tool):
    q = _query(prompt)
    cid = new_id()
    html = ('<div class="gemini-magics-offline-search">Offline emulation: no web search was made '
            f'for &ldquo;{_html(q)}&rdquo; (the local server never uses the network).</div>')
    return [
        {"type": "google_search_call", "id": cid, "arguments": {"queries": [q]}},
        {"type": "google_search_result", "call_id": cid, "result": [{"search_suggestions": html}]},
    ]


def _maps(prompt, new_id, tool):
    q = _query(prompt)
    cid = new_id()
    place = {
        "place_id": f"offline-{_slug(q)}",
        "name": f"{q} (offline placeholder)",
        "url": f"{OFFLINE_URL}/maps/place/{quote(q)}",
        "review_snippets": [],
    }
    return [
        {"type": "google_maps_call", "id": cid, "arguments": {"queries": [q]}},
        {"type": "google_maps_result", "call_id": cid,
         "result": [{"places": [place], "widget_context_token": "offline"}]},
    ]


def _url_context(prompt, new_id, tool):
    urls = list(dict.fromkeys(u.rstrip(".,;:!?") for u in _URL_RE.findall(prompt)))
    cid = new_id()
    return [
        {"type": "url_context_call", "id": cid, "arguments": {"urls": urls}},
        # "error": the page was not fetched, because the local server is offline.
        {"type": "url_context_result", "call_id": cid,
         "result": [{"url": u, "status": "error"} for u in urls]},
    ]


def _file_search(prompt, new_id, tool):
    cid = new_id()
    stores = tool.get("file_search_store_names") or []
    note = ("Offline emulation: no file search store was queried"
            + (f" ({', '.join(stores)})" if stores else "") + ".")
    return [
        {"type": "file_search_call", "id": cid},
        {"type": "file_search_result", "call_id": cid,
         "result": [{"title": "offline", "text": note, "source": "offline"}]},
    ]


def _computer_use(prompt, new_id, tool):
    # The API has no computer-use step type: the real model asks the client to act through
    # function calls (and screenshots). Offline there is no screen, so we only say so.
    env = tool.get("environment") or "browser"
    text = (f"[offline] computer_use is emulated: no {env}, screen, keyboard or mouse was "
            "controlled.")
    return [{"type": "thought", "summary": [{"type": "text", "text": text}]}]


def _code_execution(prompt, new_id, tool):
    code = code_for_prompt(prompt)
    output, is_error = run_python_offline(code)
    cid = new_id()
    result = {"type": "code_execution_result", "call_id": cid, "result": output}
    if is_error:
        result["is_error"] = True
    return [
        {"type": "code_execution_call", "id": cid, "arguments": {"code": code, "language": "python"}},
        result,
    ]


_EMULATORS = {
    "google_search": _search,
    "google_maps": _maps,
    "url_context": _url_context,
    "file_search": _file_search,
    "computer_use": _computer_use,
    "code_execution": _code_execution,
}


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def offline_annotations(steps: Iterable[dict], text: str) -> list[dict]:
    """Citations for the final answer `text`, one per emulated source, spanning the whole text.

    Offsets are UTF-8 byte offsets, as in the API. Search → url_citation, Maps → place_citation,
    URL context → url_citation (to an offline URL: the page was not read), file search →
    file_citation. Code execution and computer use cite nothing.
    """
    end = len((text or "").encode("utf-8"))
    if end == 0:
        return []
    span = {"start_index": 0, "end_index": end}
    out: list[dict] = []
    for step in steps:
        kind = step.get("type")
        if kind == "google_search_call":
            for q in step.get("arguments", {}).get("queries", []):
                out.append({"type": "url_citation", "url": f"{OFFLINE_URL}/search?q={quote_plus(q)}",
                            "title": f"Offline search (no network): {q}", **span})
        elif kind == "url_context_call":
            for u in step.get("arguments", {}).get("urls", []):
                out.append({"type": "url_citation", "url": f"{OFFLINE_URL}/url-context?url={quote_plus(u)}",
                            "title": f"Not fetched (offline): {u}", **span})
        elif kind == "google_maps_result":
            for r in step.get("result", []):
                for p in r.get("places", []):
                    out.append({"type": "place_citation", "place_id": p.get("place_id"),
                                "name": p.get("name"), "url": p.get("url"), **span})
        elif kind == "file_search_call":
            out.append({"type": "file_citation", "document_uri": f"{OFFLINE_URL}/file-search",
                        "file_name": "offline (no store searched)", "source": "offline", **span})
    return out


def describe_for_model(steps: Iterable[dict]) -> str:
    """A short plain-text account of emulated tool results, to put in the engine's prompt."""
    lines = []
    for step in steps:
        kind = step.get("type")
        if kind == "google_search_call":
            lines.append(f"Web search for {step['arguments']['queries']}: offline, no results.")
        elif kind == "url_context_result":
            urls = [r.get("url") for r in step.get("result", [])]
            lines.append(f"URLs {urls}: not fetched (offline)." if urls else "No URL was given.")
        elif kind == "google_maps_call":
            lines.append(f"Maps search for {step.get('arguments', {}).get('queries')}: offline, "
                         "no real places.")
        elif kind == "file_search_call":
            lines.append("File search: offline, no documents.")
        elif kind == "code_execution_call":
            lines.append("Ran this Python code:\n" + step["arguments"]["code"])
        elif kind == "code_execution_result":
            what = "It failed with" if step.get("is_error") else "Its output was"
            lines.append(f"{what}:\n{step.get('result', '')}")
        elif kind == "thought":
            lines.extend(c.get("text", "") for c in step.get("summary", []))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Offline code execution
# --------------------------------------------------------------------------------------------

# Small sequence templates, so prompts like the quickstart's agent example ("the first 20
# Fibonacci numbers ... saves them to fibonacci.txt") run real, relevant code offline.
_SEQUENCES = {
    "fibonacci": "values = []\na, b = 0, 1\nfor _ in range(n):\n    values.append(a)\n    a, b = b, a + b\n",
    "prime": ("values = []\ncandidate = 2\nwhile len(values) < n:\n"
              "    if all(candidate % p for p in values if p * p <= candidate):\n"
              "        values.append(candidate)\n    candidate += 1\n"),
    "factorial": "values = [1]\nfor i in range(1, n):\n    values.append(values[-1] * i)\n",
    "square": "values = [i * i for i in range(1, n + 1)]\n",
}
_FILE_RE = re.compile(r"\b([\w-]+\.(?:txt|csv|json|md))\b")


def code_for_prompt(prompt: str) -> str:
    """Deterministic Python for a prompt: its fenced code, else its arithmetic, else a small
    sequence (Fibonacci, primes, factorials, squares; saved to a file if one is named), else a
    word count."""
    header = "# offline emulation: code from a template derived from the prompt, not by a model\n"
    prompt = prompt or ""
    fenced = _FENCED_PY.search(prompt)
    if fenced and fenced.group(1).strip():
        return fenced.group(1).rstrip() + "\n"
    for m in _ARITH_RE.finditer(prompt):
        expr = " ".join(m.group(0).split()).strip()
        if expr.count("(") == expr.count(")") and not re.fullmatch(r"\d+(?:-\d+)+", expr):
            # (a bare "2024-2025" or "555-1234" is a range or a number, not a subtraction)
            return f"{header}print({expr})\n"
    lower = prompt.lower()
    for word, body in _SEQUENCES.items():
        if word in lower:
            count = re.search(r"\b(\d{1,4})\b", prompt)
            n = min(int(count.group(1)) if count else 10, 1000)
            code = f"{header}n = {n}\n{body}"
            file = _FILE_RE.search(prompt)
            if file:
                name = file.group(1)
                return (code + f"with open({name!r}, 'w') as f:\n"
                        "    f.write('\\n'.join(map(str, values)) + '\\n')\n"
                        f"with open({name!r}) as f:\n    print(f.read(), end='')\n")
            return code + "print(*values)\n"
    return (f"{header}text = {prompt!r}\nwords = text.split()\n"
            'print(f"{len(words)} words, {len(text)} characters")\n')


_BOOTSTRAP = r"""
import resource, runpy, socket, sys
def _no_network(*a, **k):
    raise OSError("network access is disabled in the offline code sandbox")
class _NoSocket(socket.socket):
    def __init__(self, *a, **k):
        _no_network()
socket.socket = _NoSocket
socket.create_connection = socket.getaddrinfo = socket.socketpair = _no_network
for _limit, _value in ((resource.RLIMIT_CPU, %(cpu)d), (resource.RLIMIT_AS, %(mem)d)):
    try:
        resource.setrlimit(_limit, (_value, _value))
    except (ValueError, OSError):
        pass
del _limit, _value
sys.argv = ["main.py"]
runpy.run_path("main.py", run_name="__main__")
"""


@functools.lru_cache(maxsize=1)
def _netns_prefix() -> tuple[str, ...]:
    """`unshare -rn` (a new, empty network namespace) if this machine allows it, else nothing."""
    exe = shutil.which("unshare")
    if not exe:
        return ()
    try:
        ok = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return (exe, "-rn") if ok else ()


def run_python_offline(code: str, timeout: float = CODE_TIMEOUT) -> tuple[str, bool]:
    """Run `code` in a throwaway subprocess without network; return (stdout+stderr, is_error).

    Limits: `timeout` seconds of wall time, as much CPU time, 1 GiB of address space, a private
    temporary directory as cwd, and an environment holding only PATH/LANG (so no API key).
    """
    with tempfile.TemporaryDirectory(prefix="gemini-magics-code-") as tmp:
        with open(os.path.join(tmp, "main.py"), "w", encoding="utf-8") as f:
            f.write(code)
        bootstrap = _BOOTSTRAP % {"cpu": max(1, int(timeout) + 1), "mem": 1 << 30}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}
        cmd = [*_netns_prefix(), sys.executable, "-I", "-c", bootstrap]
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"Execution stopped after {timeout:g} seconds (offline sandbox time limit).", True
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    out = _clean_traceback(out)
    if len(out) > _MAX_OUTPUT:
        out = out[:_MAX_OUTPUT] + f"\n... (output cut at {_MAX_OUTPUT} characters)"
    return out, proc.returncode != 0


def _clean_traceback(out: str) -> str:
    """Drop the bootstrap's runpy frames so tracebacks start at the user's code."""
    return re.sub(r'(Traceback \(most recent call last\):\n)(?:  File "(?:<string>|<frozen runpy>|'
                  r'[^"]*runpy\.py)".*\n(?:    .*\n)*)+', r"\1", out)


# --------------------------------------------------------------------------------------------
# Function calls with constrained decoding
# --------------------------------------------------------------------------------------------

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
        params = _close(_rename_refs(params, renames))
        for k, v in local.items():
            defs[renames[k]] = _close(_rename_refs(v, renames))
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


# Bounds added to the planning schema only (what they allow still validates against the
# function's own schema): a 135M model otherwise fills arrays and strings until max tokens.
MAX_ITEMS = 8
MAX_STRING = 200


def _close(node: Any) -> Any:
    """Tighten a copy of a schema for decoding: close objects that have properties and set no
    `additionalProperties`, and bound arrays and strings that have no limit.

    Walks the schema's structure (not every dict), so a property named "properties" is safe.
    """
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        if isinstance(out.get(key), dict):
            out[key] = {k: _close(v) for k, v in out[key].items()}
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(out.get(key), list):
            out[key] = [_close(v) for v in out[key]]
    for key in ("items", "additionalProperties", "not", "contains"):
        if isinstance(out.get(key), dict):
            out[key] = _close(out[key])
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
    "none", or the reply was cut off and does not validate). `on_text` sees the raw JSON chunks
    and may return False to cancel. `usage`, if given, receives input_tokens/output_tokens.
    """
    import jsonschema

    tools = [t for t in function_tools if t.get("type", "function") == "function" and t.get("name")]
    tools, allow_answer = _allowed(tools, tool_choice)
    if not tools:
        return None
    schema = function_call_schema(tools, allow_answer=allow_answer)
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
    try:
        jsonschema.validate(choice["arguments"], tool.get("parameters") or {})
    except jsonschema.ValidationError:
        return None
    return {"name": tool["name"], "arguments": choice["arguments"]}


# --------------------------------------------------------------------------------------------
# Wire shapes for function calls and tool steps
# --------------------------------------------------------------------------------------------

def function_call_step(call_id: str, name: str, arguments: dict) -> dict:
    """A complete `function_call` step (non-streaming responses)."""
    return {"type": "function_call", "id": call_id, "name": name, "arguments": arguments}


def _fragments(text: str, size: int) -> list[str]:
    """Split JSON text into fragments of about `size` characters, preferring token boundaries."""
    out, buf = [], ""
    for piece in re.findall(r'"(?:[^"\\]|\\.)*"|\s+|[^"\s]', text):
        if buf and len(buf) + len(piece) > size:
            out.append(buf)
            buf = ""
        while len(piece) > size:  # a long string literal: cut it (deltas are plain text)
            out.append(piece[:size])
            piece = piece[size:]
        buf += piece
    if buf:
        out.append(buf)
    return out or [""]


def function_call_events(index: int, call_id: str, name: str, arguments: dict,
                         fragment_chars: int = 24) -> list[dict]:
    """Streaming events for a function call: `step.start` (empty arguments), `arguments_delta`
    fragments whose concatenation is the arguments' JSON, then `step.stop`.

    Events carry no `event_id`; the server's SSE layer numbers them. After the last one the
    interaction ends with `status: "requires_action"`.
    """
    text = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    events = [{"event_type": "step.start", "index": index,
               "step": {"type": "function_call", "id": call_id, "name": name, "arguments": {}}}]
    for piece in _fragments(text, fragment_chars):
        events.append({"event_type": "step.delta", "index": index,
                       "delta": {"type": "arguments_delta", "arguments": piece}})
    events.append({"event_type": "step.stop", "index": index})
    return events


# Fields a tool step carries in its delta (the rest, identity fields, go in step.start).
_PAYLOAD = {"arguments": {}, "result": [], "is_error": None, "search_type": None}


def step_events(index: int, step: dict) -> list[dict]:
    """Streaming events for any complete step (function calls get `arguments_delta`s).

    Tool steps: `step.start` with the identity fields and empty payload, one `step.delta` of
    the step's own type with the payload (the SDK's `*CallDelta`/`*ResultDelta`), `step.stop`.
    Thoughts stream their summary as `thought_summary` and their signature as
    `thought_signature` deltas, as the real API does.
    """
    kind = step.get("type")
    if kind == "function_call":
        return function_call_events(index, step["id"], step["name"], step.get("arguments") or {})
    if kind == "thought":
        start = {"type": "thought"}
        deltas = [{"type": "thought_summary", "content": c} for c in step.get("summary") or []]
        if step.get("signature"):
            deltas.append({"type": "thought_signature", "signature": step["signature"]})
    else:
        start, payload = {}, {"type": kind}
        for k, v in step.items():
            if k in _PAYLOAD:
                payload[k] = v
                if _PAYLOAD[k] is not None:
                    start[k] = "" if isinstance(v, str) else type(_PAYLOAD[k])()
            else:
                start[k] = v
        deltas = [payload] if len(payload) > 1 else []
    events = [{"event_type": "step.start", "index": index, "step": start}]
    events += [{"event_type": "step.delta", "index": index, "delta": d} for d in deltas]
    events.append({"event_type": "step.stop", "index": index})
    return events


def record_step(recorder: Any, step: dict) -> int:
    """Emit a complete step through a `turns.TurnRecorder` (start, deltas, stop); its index."""
    events = step_events(0, step)
    index = recorder.start_step(step, announce=events[0]["step"])
    for event in events[1:-1]:
        recorder.delta(index, event["delta"])
    recorder.stop_step(index)
    return index


# --------------------------------------------------------------------------------------------
# A step producer for the local server (plugs into turns.pick_producer)
# --------------------------------------------------------------------------------------------

def wants_tools(tools: Iterable[dict]) -> bool:
    """True if a request's tools need `tool_producer` (function or emulated built-in tools)."""
    return any(isinstance(t, dict) and (t.get("type") == "function" or t.get("type") in EMULATED_TOOLS)
               for t in tools or [])


def new_call_id() -> str:
    return "call_" + os.urandom(6).hex()


def tool_producer(ctx: Any) -> Any:
    """Produce a turn that has tools: a function call (ending in requires_action), or emulated
    built-in tool steps followed by a cited text answer.

    After the client sends `function_result`s, the model answers in text (it is not asked to
    call again in the same round), so a small model cannot loop forever. Built-in tools run
    only on a fresh user prompt.
    """
    from .turns import (Outcome, content_text, generation_params, history_to_messages,
                        stream_model_output)

    req, rec = ctx.request, ctx.recorder
    functions = [t for t in req.tools if isinstance(t, dict) and t.get("type") == "function"]
    builtins = [t for t in req.tools if isinstance(t, dict) and t.get("type") in EMULATED_TOOLS]
    last = req.input_steps[-1] if req.input_steps else {}
    answering = last.get("type") == "function_result"
    messages = history_to_messages(req.system_instruction, ctx.all_steps)
    params = generation_params(req.generation_config)
    usage: dict = {}

    if functions and not answering:
        call = plan_function_call(ctx.engine, messages, functions, model=req.name, params=params,
                                  tool_choice=req.generation_config.get("tool_choice"),
                                  on_text=lambda _chunk: not rec.cancelled, usage=usage)
        if rec.cancelled:
            return Outcome("cancelled", usage.get("input_tokens", 0), usage.get("output_tokens", 0))
        if call is not None:
            record_step(rec, function_call_step(new_call_id(), call["name"], call["arguments"]))
            return Outcome("requires_action", usage.get("input_tokens", 0),
                           usage.get("output_tokens", 0))

    emulated: list[dict] = []
    if builtins and not answering:
        prompt = next((content_text(s.get("content")) for s in reversed(req.input_steps)
                       if s.get("type") == "user_input"), "")
        for tool in builtins:
            for step in emulate_builtin_tool(tool["type"], prompt, new_call_id, tool):
                record_step(rec, step)
                emulated.append(step)
        note = describe_for_model(emulated)
        if note:  # tool results first, then the question, in the same user turn
            note = "[Tool results, offline emulation]\n" + note
            if messages and messages[-1]["role"] == "user":
                messages = messages[:-1] + [{"role": "user",
                                             "content": f"{note}\n\n{messages[-1]['content']}"}]
            else:
                messages = messages + [{"role": "user", "content": note}]

    # citations are kept on the text item, where the quickstart reads them
    answer = stream_model_output(ctx, messages,
                                 cite=lambda text: offline_annotations(emulated, text))
    return Outcome(answer.status, usage.get("input_tokens", 0) + answer.input_tokens,
                   usage.get("output_tokens", 0) + answer.output_tokens)
