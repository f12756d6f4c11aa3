"""Offline emulation of the built-in tools (search, maps, URL context, file search, computer
use, code execution).

They need Google's services, so the local server *emulates* them: it emits the same call and
result steps as the real API (protocol doc §4), derived deterministically from the prompt, and
every result and citation says it is offline (citations point at `https://offline.invalid/...`,
a reserved domain that never resolves). Nothing here opens a network connection. For code
execution the code is a template derived from the prompt (the user's own fenced Python if the
prompt has some, else an arithmetic expression, else a word count), never the 135M model's
unreliable code, run in the bubblewrap `sandbox` (where there is none, the result says that code
execution is off and nothing runs).
"""
from __future__ import annotations

import hashlib
import re
from typing import Callable, Iterable, Optional
from urllib.parse import quote, quote_plus

from ..catalog import BUILTIN_TOOLS
from .sandbox import run_python_offline

__all__ = ["OFFLINE_URL", "code_for_prompt", "describe_for_model", "emulate_builtin_tool",
           "offline_annotations"]

OFFLINE_URL = "https://offline.invalid"
_URL_RE = re.compile(r"https?://[^\s<>\"'`)\]]+")
_FENCED_PY = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.S | re.I)
_NUM = r"\d+(?:\.\d+)?"
_OPERAND = rf"[-+(\s]*{_NUM}[\s)]*"
_ARITH_RE = re.compile(rf"(?<![\w.]){_OPERAND}(?:(?:\*\*|[-+*/%]){_OPERAND})+")


def emulate_builtin_tool(tool_type: str, prompt: str, call_id_factory: Callable[[], str],
                         tool: Optional[dict] = None) -> list[dict]:
    """The call and result steps an offline `tool_type` produces for `prompt`.

    `call_id_factory()` returns a fresh step id. `tool` is the request's tool dict (e.g.
    file_search store names). Raises ValueError (one sentence) for a tool we cannot emulate.
    """
    emulate = _EMULATORS.get(tool_type)
    if emulate is None:
        raise ValueError(f"The local server cannot emulate the tool {tool_type!r} offline; it "
                         f"emulates {', '.join(BUILTIN_TOOLS)} (set GEMINI_API_KEY for the real API).")
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
_RANGE_RE = re.compile(r"\b(\d{1,4})\s*(?:to|through|thru|-|–|\.\.)\s*(\d{1,4})\b")
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
            span = _RANGE_RE.search(prompt)  # "squares of 1 to 10": the range, not its first number
            count = re.search(r"\b(\d{1,4})\b", prompt)
            if span and word == "square":
                low, high = sorted(int(x) for x in span.groups())
                code = f"{header}values = [i * i for i in range({low}, {min(high, low + 1000)} + 1)]\n"
            else:
                n = min(int(span.group(2)) if span else int(count.group(1)) if count else 10, 1000)
                code = f"{header}n = {n}\n{body}"
            file = _FILE_RE.search(prompt)
            if file:
                name = file.group(1)
                return (code + f"with open({name!r}, 'w') as f:\n"
                        "    f.write('\\n'.join(map(str, values)) + '\\n')\n"
                        f"with open({name!r}) as f:\n    print(f.read(), end='')\n")
            total = re.search(r"\b(sum|total|add(?:ed)? up)\b", lower)
            return code + ("print(sum(values))\n" if total else "print(*values)\n")
    return (f"{header}text = {prompt!r}\nwords = text.split()\n"
            'print(f"{len(words)} words, {len(text)} characters")\n')
