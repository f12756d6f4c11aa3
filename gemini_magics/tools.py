"""Built-in tools on the client side: `--tools` parsing, step rendering and numbered citations.

The model's tool work (searches, code runs, URL reads, places, function calls) arrives as steps;
users should see each one as it happens, in Markdown that works in notebooks and terminals.
Steps may be plain dicts (raw JSON, our accumulator) or the SDK's pydantic objects.
Citation offsets are UTF-8 *byte* offsets (the SDK documents `start_index` "measured in bytes").
"""
from __future__ import annotations

import difflib
import json
import re
from html.parser import HTMLParser
from typing import Any, Iterable, Optional, Union
from urllib.parse import quote

from .catalog import BUILTIN_TOOLS, COMPUTER_ENVIRONMENTS
from .markdown_text import code_block

__all__ = ["cite", "parse_tools", "render_step_markdown", "step_dict"]


# --------------------------------------------------------------------------------------------
# --tools
# --------------------------------------------------------------------------------------------

def parse_tools(spec: Union[str, Iterable[str], None]) -> list[dict]:
    """`"google_search,code_execution"` → `[{"type": "google_search"}, {"type": "code_execution"}]`.

    Options after a colon: `file_search:STORE[+STORE...]` (file search store names) and
    `computer_use:browser|mobile|desktop` (default browser). `mcp:NAME=URL` (or `mcp:URL`) is an
    MCP server the model may use (`{"type": "mcp_server", "name": NAME, "url": URL}`).
    Duplicates are dropped. An unknown name raises ValueError with one sentence listing the
    valid ones.
    """
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    tools: list[dict] = []
    seen: set[str] = set()
    for item in (i.strip() for i in items):
        if not item:
            continue
        name, _, option = (s.strip() for s in item.partition(":"))
        key = name.lower().replace("-", "_")
        if key in ("mcp", "mcp_server"):
            key = f"mcp:{option}"
            if key not in seen:
                seen.add(key)
                tools.append(_mcp_tool(option))
            continue
        if key not in BUILTIN_TOOLS:
            close = difflib.get_close_matches(key, BUILTIN_TOOLS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"Unknown tool {name!r}{hint}; valid tools are: "
                             f"{', '.join(BUILTIN_TOOLS)}, {MCP_SPEC}.")
        if key in seen:
            continue
        seen.add(key)
        tool: dict = {"type": key}
        if key == "file_search":
            stores = [s.strip() for s in option.split("+") if s.strip()]
            if stores:
                tool["file_search_store_names"] = stores
        elif key == "computer_use":
            env = option.lower() or "browser"
            if env not in COMPUTER_ENVIRONMENTS:
                raise ValueError(f"computer_use:{option} is not an environment; use one of "
                                 f"{', '.join(COMPUTER_ENVIRONMENTS)}.")
            tool["environment"] = env
        elif option:
            raise ValueError(f"The tool {key} takes no option; write just {key}.")
        tools.append(tool)
    return tools


MCP_SPEC = "mcp:NAME=URL"


def _mcp_tool(option: str) -> dict:
    """`calc=http://127.0.0.1:8000/mcp`, or just the URL, as an `mcp_server` tool."""
    name, sep, url = option.partition("=")
    if not sep or "://" in name:
        name, url = "", option
    url = url.strip()
    if not re.match(r"^https?://[^\s/]+\S*$", url):
        raise ValueError(f"--tools {MCP_SPEC} needs the MCP server's http(s) URL, e.g. "
                         f"mcp:calc=http://127.0.0.1:8000/mcp, not {option!r}.")
    return {"type": "mcp_server", **({"name": name.strip()} if name.strip() else {}), "url": url}


# --------------------------------------------------------------------------------------------
# Steps as Markdown
# --------------------------------------------------------------------------------------------

def step_dict(step: Any) -> dict:
    """A plain dict for a step given as a dict or an SDK pydantic object."""
    if isinstance(step, dict):
        return step
    dump = getattr(step, "model_dump", None)
    if dump is not None:
        return dump(mode="json", exclude_none=True, by_alias=True)
    raise TypeError(f"Cannot render a {type(step).__name__} as a step.")


# Each step starts with a bold label ("**Search:** `query`"); the only marks are glyphs of common
# text fonts (DejaVu Sans, Liberation...), never emoji, which show as empty boxes without an
# emoji font. U+26A0 is written without the emoji variation selector (U+FE0F).
_WARN = "\u26a0"


def render_step_markdown(step: Any) -> str:
    """Markdown for one step: what a tool was asked and what it returned ('' if nothing to show)."""
    s = step_dict(step)
    kind = s.get("type", "")
    render = _RENDERERS.get(kind)
    if render is not None:
        return render(s)
    if kind in ("user_input",):
        return ""
    body = {k: v for k, v in s.items() if k != "type"}
    return f"**{_esc(kind or 'step')}**\n\n{code_block(json.dumps(body, indent=2, ensure_ascii=False), 'json')}"


def _thought(s: dict) -> str:
    texts = [c.get("text", "") for c in s.get("summary") or [] if isinstance(c, dict)]
    text = "\n".join(t for t in texts if t).strip()
    return "\n".join("> " + line for line in ["*Thinking*", *text.splitlines()]) if text else ""


def _model_output(s: dict) -> str:
    parts = []
    for c in s.get("content") or []:
        if c.get("type") == "text":
            parts.append(cite(c.get("text", ""), c.get("annotations") or []))
        elif c.get("type"):
            parts.append(f"*[{_esc(c['type'])}]*")
    return "\n\n".join(p for p in parts if p)


def _search_call(s: dict) -> str:
    queries = (s.get("arguments") or {}).get("queries") or []
    qs = " · ".join(_code(q) for q in queries) or "*(no query)*"
    kind = f" ({_esc(s['search_type'])})" if s.get("search_type") else ""
    return f"**Search{kind}:** {qs}"


def _search_result(s: dict) -> str:
    if s.get("is_error"):
        return f"{_WARN} **Search failed.**"
    # The real API streams this step without its `result` list: then there is no count to give.
    results = s.get("result")
    results = results if isinstance(results, list) else []
    texts = [_visible_text(r.get("search_suggestions", "")) for r in results if isinstance(r, dict)]
    texts = [t for t in texts if t]
    head = f"**Search results:** {len(results)} received" if results else "**Search results received**"
    return head + ("\n\n" + "\n".join(f"> {_esc(t[:300])}" for t in texts) if texts else "")


def _code_call(s: dict) -> str:
    args = s.get("arguments") or {}
    lang = args.get("language") or "python"
    return f"**Code execution** ({_esc(lang)})\n\n{code_block(args.get('code', ''), lang)}"


def _code_result(s: dict) -> str:
    out = _content_text(s.get("result"))
    label = f"{_WARN} **Code error**" if s.get("is_error") else "**Output**"
    return f"{label}\n\n{code_block(out or '(no output)', 'text')}"


def _url_call(s: dict) -> str:
    urls = (s.get("arguments") or {}).get("urls") or []
    lines = "\n".join(f"- {_link(u, u)}" for u in urls) or "- *(no URL)*"
    return f"**Reading URLs:**\n{lines}"


def _url_result(s: dict) -> str:
    rows = [r for r in s.get("result") or [] if isinstance(r, dict)]
    lines = "\n".join(f"- {_link(r.get('url', ''), r.get('url', ''))}: {_esc(r.get('status', '?'))}"
                      for r in rows) or "- *(nothing read)*"
    return f"**URL context:**\n{lines}"


def _maps_call(s: dict) -> str:
    queries = (s.get("arguments") or {}).get("queries") or []
    return "**Maps search:** " + (" · ".join(_code(q) for q in queries) or "*(no query)*")


def _maps_result(s: dict) -> str:
    lines = []
    for r in s.get("result") or []:
        for p in (r or {}).get("places") or []:
            line = f"- {_link(p.get('url', ''), p.get('name') or p.get('place_id') or 'place')}"
            reviews = [_link(rv.get("url", ""), rv.get("title") or "review")
                       for rv in p.get("review_snippets") or []]
            lines.append(line + (f" (reviews: {', '.join(reviews)})" if reviews else ""))
    return "**Places:**\n" + ("\n".join(lines) or "- *(none found)*")


def _file_call(s: dict) -> str:
    return "**File search**"


def _file_result(s: dict) -> str:
    rows = [r for r in s.get("result") or [] if isinstance(r, dict)]
    lines = []
    for r in rows:
        title = r.get("title") or r.get("file_name") or r.get("document_uri") or r.get("source")
        text = r.get("text") or ""
        lines.append(f"- {_esc(title or 'result')}" + (f": {_esc(text[:200])}" if text else ""))
    return f"**File search results:** {len(rows)}" + ("\n" + "\n".join(lines) if lines else "")


def _tool_search_call(s: dict) -> str:
    names = (s.get("arguments") or {}).get("function_names") or []
    return "**Tool search:** " + (", ".join(_code(n) for n in names) or "*(any tool)*")


def _tool_search_result(s: dict) -> str:
    found = [f for f in s.get("result") or [] if isinstance(f, dict)]
    if s.get("is_error"):
        return f"{_WARN} **Tool search failed.**"
    lines = [f"- {_code(f.get('name') or '?')}" + (f": {_esc(f['description'][:200])}"
                                                    if f.get("description") else "")
             for f in found]
    return f"**Tools found:** {len(found)}" + ("\n" + "\n".join(lines) if lines else "")


def _retrieval_call(s: dict) -> str:
    queries = (s.get("arguments") or {}).get("queries") or []
    kind = f" ({_esc(s['retrieval_type'])})" if s.get("retrieval_type") else ""
    return f"**Retrieval{kind}:** " + (" · ".join(_code(q) for q in queries) or "*(no query)*")


def _retrieval_result(s: dict) -> str:
    if s.get("is_error"):
        return f"{_WARN} **Retrieval failed.**"
    return "**Retrieval results received**"


def _function_call(s: dict) -> str:
    args = s.get("arguments") or {}
    shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items())
    where = f" on {_esc(s['server_name'])}" if s.get("server_name") else ""
    call = "{}({})".format(s.get("name", "?"), shown)
    return f"**Call**{where} {_code(call)}"


def _function_result(s: dict) -> str:
    name = _code(s.get("name") or s.get("call_id") or "function")
    text = _content_text(s.get("result"))
    try:
        pretty, lang = json.dumps(json.loads(text), indent=2, ensure_ascii=False), "json"
    except (ValueError, TypeError):
        pretty, lang = text, "text"
    label = f"{_WARN} {name} **failed**" if s.get("is_error") else f"→ {name} **returned**"
    return f"{label}\n\n{code_block(pretty, lang)}"


_RENDERERS = {
    "thought": _thought,
    "model_output": _model_output,
    "google_search_call": _search_call,
    "google_search_result": _search_result,
    "code_execution_call": _code_call,
    "code_execution_result": _code_result,
    "url_context_call": _url_call,
    "url_context_result": _url_result,
    "google_maps_call": _maps_call,
    "google_maps_result": _maps_result,
    "file_search_call": _file_call,
    "file_search_result": _file_result,
    "function_call": _function_call,
    "function_result": _function_result,
    "mcp_server_tool_call": _function_call,
    "mcp_server_tool_result": _function_result,
    "tool_search_call": _tool_search_call,
    "tool_search_result": _tool_search_result,
    "retrieval_call": _retrieval_call,
    "retrieval_result": _retrieval_result,
}


def _content_text(result: Any) -> str:
    """Text of a result that may be a str, a dict, or a list of content items."""
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    if isinstance(result, list) and all(isinstance(c, dict) and "type" in c for c in result):
        return "\n".join(c.get("text", f"[{c['type']}]") for c in result)
    return json.dumps(result, ensure_ascii=False)


class _TextOnly(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "script")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "script") and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _visible_text(html: str) -> str:
    parser = _TextOnly()
    parser.feed(html or "")
    return " ".join(" ".join(parser.parts).split())


# --------------------------------------------------------------------------------------------
# Citations
# --------------------------------------------------------------------------------------------

def _source_of(a: dict) -> Optional[tuple[str, str]]:
    """(url-or-reference, title) for a citation annotation, or None for other annotations."""
    kind = a.get("type")
    if kind == "url_citation" and a.get("url"):
        return a["url"], a.get("title") or a["url"]
    if kind == "place_citation" and (a.get("url") or a.get("place_id")):
        ref = a.get("url") or f"place:{a['place_id']}"
        return ref, a.get("name") or ref
    if kind == "file_citation" and (a.get("document_uri") or a.get("file_name")):
        ref = a.get("document_uri") or a["file_name"]
        title = a.get("file_name") or a.get("source") or ref
        if a.get("page_number"):
            title = f"{title}, page {a['page_number']}"
        return ref, title
    return None


def cite(text: str, annotations: Iterable[Any], markdown: bool = True) -> str:
    """Insert numbered citation markers at each citation's `end_index` and append the sources.

    One number per distinct source, in order of first appearance. With `markdown=True` markers
    are links (`[[1]](url)`) and sources a numbered Markdown list; otherwise `[1]` and a plain
    list for terminals. Indices are UTF-8 byte offsets, clamped to the text.
    """
    data = (text or "").encode("utf-8")
    cites = []
    for a in annotations or []:
        a = step_dict(a)
        src = _source_of(a)
        if src is None:
            continue
        end = a.get("end_index")
        end = len(data) if end is None else max(0, min(int(end), len(data)))
        while 0 < end < len(data) and (data[end] & 0xC0) == 0x80:  # not mid-character
            end += 1
        cites.append((end, int(a.get("start_index") or 0), src))
    if not cites:
        return text or ""
    numbers: dict[str, int] = {}
    titles: dict[str, str] = {}
    at: dict[int, list[int]] = {}
    for end, _start, (ref, title) in sorted(cites, key=lambda c: (c[0], c[1])):
        n = numbers.setdefault(ref, len(numbers) + 1)
        titles.setdefault(ref, title)
        if n not in at.setdefault(end, []):
            at[end].append(n)
    refs = {n: ref for ref, n in numbers.items()}
    out, last = [], 0
    for end in sorted(at):
        out.append(data[last:end].decode("utf-8"))
        out.append("".join(_marker(n, refs[n], markdown) for n in sorted(at[end])))
        last = end
    out.append(data[last:].decode("utf-8"))
    body = "".join(out)
    if markdown:
        sources = "\n".join(f"{n}. {_link(ref, titles[ref])}" for ref, n in numbers.items())
        return f"{body}\n\n**Sources**\n\n{sources}"
    sources = "\n".join(f"[{n}] {titles[ref]} - {ref}" for ref, n in numbers.items())
    return f"{body}\n\nSources:\n{sources}"


def _marker(n: int, ref: str, markdown: bool) -> str:
    if markdown and _is_url(ref):
        return f"[[{n}]]({_url(ref)})"
    return f"[{n}]"


# --------------------------------------------------------------------------------------------
# Markdown helpers
# --------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|])")


def _esc(text: Any) -> str:
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def _is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def _url(url: str) -> str:
    return quote(url, safe=":/?#[]@!$&'*+,;=%~-._")


def _link(url: str, title: Any) -> str:
    return f"[{_esc(title)}]({_url(url)})" if url and _is_url(url) else _esc(title)


def _code(text: str) -> str:
    text = str(text)
    ticks = max((len(m) for m in re.findall(r"`+", text)), default=0) + 1
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{'`' * ticks}{pad}{text}{pad}{'`' * ticks}"
