"""`mcp_server` tools for real: list a remote MCP server's tools and call one (streamable HTTP).

The real API, given `{"type": "mcp_server", "name": "calc", "url": ...}`, lists that server's
tools, lets the model pick one, calls it and records `mcp_server_tool_call` and
`mcp_server_tool_result` steps. The local server does the same with the `mcp` package's
client (imported only by turns that have such a tool); `producers.tool_use` plans the call.

What a request may make this server reach is the point of this module:
- Only loopback hosts (127.0.0.0/8, ::1, localhost), unless the server was started to allow
  others (`allow_remote`); decided from the URL's literal host before any connection or DNS
  look-up, and again by the HTTP transport for every request it sends, so neither a redirect
  nor a proxy from the environment (ignored: `trust_env=False`) can reach another host.
- Each connection (tools/list, then tools/call) has `TIMEOUT_S` for everything, and stops
  when the turn is cancelled; a response body may be at most `MAX_RESPONSE_BYTES`, a kept
  result at most `MAX_RESULT_CHARS` of text and `MAX_MEDIA_CHARS` of base64 media.
- A failure is one sentence naming the server (its name, host and port) and the kind of
  failure (`McpFailure`), never the exception's own text: that comes from the other side of a
  connection, or from our stack, and may carry paths, hosts or headers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import urlsplit

import anyio

from ..catalog import is_loopback

__all__ = ["McpFailure", "McpServer", "McpTool", "TIMEOUT_S", "MAX_RESULT_CHARS",
           "MAX_RESPONSE_BYTES", "call_tool", "list_tools", "tool_problem"]

TIMEOUT_S = 30.0
MAX_RESPONSE_BYTES = 8 * 1024 * 1024   # one HTTP response body, as read off the socket
MAX_RESULT_CHARS = 64 * 1024           # text kept of one tool result
MAX_MEDIA_CHARS = 4 * 1024 * 1024      # base64 media kept of one tool result
MAX_TOOLS = 64                         # tools of one server offered to the model
_WATCH_S = 0.1                         # how often a connection looks at the turn's Stop


class McpFailure(Exception):
    """An MCP server could not be used; `str()` is one sentence for the user and the model."""


@dataclass(frozen=True)
class McpServer:
    """One `mcp_server` tool of a request (google-genai's `MCPServer`)."""

    name: str                      # the steps' `server_name`
    url: str
    headers: dict
    allowed: Optional[frozenset]   # tool names from `allowed_tools`, None: all

    @classmethod
    def from_tool(cls, tool: dict) -> "McpServer":
        """From a tool that passed `tool_problem`."""
        names = [n for entry in tool.get("allowed_tools") or [] for n in entry.get("tools") or []]
        parts = urlsplit(tool["url"])
        return cls(name=tool.get("name") or parts.hostname or "mcp", url=tool["url"],
                   headers=dict(tool.get("headers") or {}),
                   allowed=frozenset(names) if names else None)

    @property
    def where(self) -> str:
        """How sentences name the server: its name and host:port, never the path, query or
        credentials of its URL."""
        parts = urlsplit(self.url)
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"The MCP server {self.name!r} ({host}:{port})"


@dataclass(frozen=True)
class McpTool:
    """A tool an MCP server listed: what the planner sees as a function declaration."""

    server: McpServer
    name: str
    description: str
    schema: dict                   # its inputSchema: the function's `parameters`


def tool_problem(tool: dict, where: str) -> Optional[str]:
    """None if `tool` (at `where` in the request) is an `mcp_server` tool the local server can
    call, else one sentence saying what is wrong; the request's 400."""
    url = tool.get("url")
    if not isinstance(url, str) or not url.strip():
        return f"'{where}.url' is required for an mcp_server tool (the server's http(s) URL)."
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        return f"'{where}.url' is not a valid URL."
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"'{where}.url' must be an http:// or https:// URL with a host."
    if parts.username is not None or parts.password is not None:
        return f"'{where}.url' must not carry credentials; send them in '{where}.headers'."
    for key, kind, noun in (("name", str, "a string"), ("headers", dict, "an object"),
                            ("allowed_tools", list, "a list")):
        if tool.get(key) is not None and not isinstance(tool[key], kind):
            return f"'{where}.{key}' must be {noun}."
    if not all(isinstance(v, str) for v in (tool.get("headers") or {}).values()):
        return f"'{where}.headers' must map header names to string values."
    for i, entry in enumerate(tool.get("allowed_tools") or []):
        names = entry.get("tools") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not all(isinstance(n, str) for n in names or []):
            return f"'{where}.allowed_tools[{i}]' must be an object whose 'tools' lists tool names."
    return None


def _host_allowed(host: Optional[str], allow_remote: bool) -> bool:
    """Whether a connection to `host` (a URL's literal host, never resolved) may be made."""
    if allow_remote:
        return True
    return is_loopback(host)  # a name is never resolved: that could already reach the network


def _refusal(server: McpServer) -> str:
    return (f"{server.where} was not called: this server calls only MCP servers on its own "
            f"machine (127.0.0.1, ::1, localhost) unless it is started to allow other hosts.")


# --------------------------------------------------------------------------------------------
# The two calls
# --------------------------------------------------------------------------------------------

def list_tools(server: McpServer, *, allow_remote: bool = False, timeout: float = TIMEOUT_S,
               should_stop: Callable[[], bool] = lambda: False) -> list[McpTool]:
    """The server's tools (tools/list, every page), those `allowed_tools` names only, at most
    MAX_TOOLS. Raises McpFailure."""
    async def work(client) -> list[McpTool]:
        tools, cursor = [], None
        for _ in range(MAX_TOOLS):  # pages; a server paging forever cannot hold the turn
            page = await client.list_tools(cursor=cursor)
            for t in page.tools:
                if server.allowed is None or t.name in server.allowed:
                    schema = t.input_schema if isinstance(t.input_schema, dict) else {}
                    tools.append(McpTool(server, t.name, t.description or "", dict(schema)))
            cursor = page.next_cursor
            if cursor is None or len(tools) >= MAX_TOOLS:
                break
        return tools[:MAX_TOOLS]

    return _connected(server, work, allow_remote, timeout, should_stop)


def call_tool(tool: McpTool, arguments: dict, *, allow_remote: bool = False,
              timeout: float = TIMEOUT_S,
              should_stop: Callable[[], bool] = lambda: False) -> tuple[list[dict], bool]:
    """Call `tool` (tools/call): its result as content items ([{"type": "text", ...}, ...],
    capped) and whether the tool reported an error. Raises McpFailure."""
    async def work(client):
        return await client.call_tool(tool.name, arguments)

    result = _connected(tool.server, work, allow_remote, timeout, should_stop)
    content = [_item(c) for c in result.content or []]
    if not content and result.structured_content is not None:
        content = [{"type": "text", "text": json.dumps(result.structured_content,
                                                       ensure_ascii=False)}]
    return _capped(content), bool(result.is_error)


def _item(block: Any) -> dict:
    """An MCP content block as an Interactions content item (text, image or audio); anything
    else (resources, links) as its JSON text."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return {"type": "text", "text": block.text}
    if kind in ("image", "audio"):
        return {"type": kind, "data": block.data, "mime_type": block.mime_type}
    return {"type": "text", "text": block.model_dump_json(by_alias=True, exclude_none=True)}


def _capped(content: list[dict]) -> list[dict]:
    """At most MAX_RESULT_CHARS of text and MAX_MEDIA_CHARS of media; what is cut says so."""
    out, text_left, media_left = [], MAX_RESULT_CHARS, MAX_MEDIA_CHARS
    for item in content:
        if item["type"] == "text":
            text = item["text"]
            if len(text) > text_left:
                text = text[:text_left] + (f"\n[cut: the result had more than "
                                           f"{MAX_RESULT_CHARS:,} characters of text]")
            text_left = max(0, text_left - len(item["text"]))
            out.append({"type": "text", "text": text})
            if text_left == 0:
                break
        elif len(item["data"]) <= media_left:
            media_left -= len(item["data"])
            out.append(item)
        else:
            out.append({"type": "text", "text": f"[{item['type']} left out: over "
                                                 f"{MAX_MEDIA_CHARS // 2**20} MiB]"})
    return out


# --------------------------------------------------------------------------------------------
# One connection: guarded, bounded, stoppable, failures as sentences
# --------------------------------------------------------------------------------------------

def _connected(server: McpServer, work: Callable[[Any], Awaitable[Any]], allow_remote: bool,
               timeout: float, should_stop: Callable[[], bool]) -> Any:
    """Run `work(client)` on a fresh MCP session with `server`, in this (worker) thread's own
    event loop; raises McpFailure (refused, unreachable, timed out, stopped, failed)."""
    if not _host_allowed(urlsplit(server.url).hostname, allow_remote):
        raise McpFailure(_refusal(server))  # before any connection or DNS look-up
    try:
        # deferred: the mcp client (~1 s to import), needed only by turns with an mcp_server tool
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client  # deferred: as above
        import httpx2  # deferred: its HTTP client (~0.1 s), loaded by mcp anyway
    except ImportError:
        raise McpFailure(f"{server.where} was not called: the local server needs the 'mcp' "
                         f"package for that (pip install mcp).") from None

    stopped = []
    done: list = []

    async def main() -> None:
        with anyio.fail_after(timeout):
            async with anyio.create_task_group() as tg:
                async def watch() -> None:
                    while not should_stop():
                        await anyio.sleep(_WATCH_S)
                    stopped.append(True)
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                transport = _guarded_transport(allow_remote)
                async with httpx2.AsyncClient(headers=server.headers, transport=transport,
                                              timeout=httpx2.Timeout(timeout),
                                              trust_env=False, follow_redirects=False) as http:
                    async with Client(streamable_http_client(server.url, http_client=http),
                                      cache=None) as client:
                        done.append(await work(client))
                tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    except BaseException as e:  # noqa: BLE001 (anyio groups; KeyboardInterrupt is re-raised)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise McpFailure(f"{server.where} {_what_failed(e, timeout)}.") from None
    if stopped or not done:
        raise McpFailure(f"{server.where} was not answered: the turn was stopped.")
    return done[0]


def _leaf(e: BaseException) -> BaseException:
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


def _what_failed(e: BaseException, timeout: float) -> str:
    """The kind of failure, in words: never the exception's text (see the module docstring)."""
    import httpx2  # deferred: see _connected (loaded already by the failed call)
    from mcp.shared.exceptions import MCPError  # deferred: as httpx2

    e = _leaf(e)
    if isinstance(e, _Refused):
        return ("was left: its answer pointed at another host, and this server calls only MCP "
                "servers on its own machine")
    if isinstance(e, _TooLarge):
        return f"sent an answer over {MAX_RESPONSE_BYTES // 2**20} MiB, which was not read"
    if isinstance(e, (TimeoutError, httpx2.TimeoutException)):
        return f"did not answer within {timeout:g} s"
    if isinstance(e, (httpx2.ConnectError, ConnectionError)):
        return "could not be reached (nothing accepted the connection)"
    if isinstance(e, MCPError):
        code = getattr(getattr(e, "error", None), "code", None)
        return ("answered with an MCP error" + (f" (code {code})" if isinstance(code, int) else "")
                + "; check its URL and that it speaks MCP over streamable HTTP")
    if isinstance(e, httpx2.HTTPError):
        return "failed at the HTTP level (the connection broke or the answer was not MCP)"
    return f"failed ({type(e).__name__})"


class _Refused(Exception):
    """A request to a host this server may not reach."""


class _TooLarge(Exception):
    """A response body over MAX_RESPONSE_BYTES."""


def _guarded_transport(allow_remote: bool):
    """An httpx2 transport that refuses hosts the rule refuses and counts response bytes."""
    import httpx2  # deferred: see _connected

    class Counted(httpx2.AsyncByteStream):
        def __init__(self, stream):
            self._stream = stream

        async def __aiter__(self):
            seen = 0
            async for chunk in self._stream:
                seen += len(chunk)
                if seen > MAX_RESPONSE_BYTES:
                    raise _TooLarge()
                yield chunk

        async def aclose(self) -> None:
            await self._stream.aclose()

    class Guarded(httpx2.AsyncBaseTransport):
        def __init__(self, allow_remote: bool):
            self._allow_remote = allow_remote
            self._inner = httpx2.AsyncHTTPTransport(trust_env=False)

        async def handle_async_request(self, request):
            if not _host_allowed(request.url.host, self._allow_remote):
                raise _Refused()
            response = await self._inner.handle_async_request(request)
            return httpx2.Response(response.status_code, headers=response.headers,
                                   stream=Counted(response.stream),
                                   extensions=response.extensions)

        async def aclose(self) -> None:
            await self._inner.aclose()

    return Guarded(allow_remote)
