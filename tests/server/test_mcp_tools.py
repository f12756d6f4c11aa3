"""`mcp_server` tools for real: the local server lists and calls an MCP server (issue #22).

A small MCP server from the `mcp` package runs on a loopback port (streamable HTTP, uvicorn on
a thread) and records every call it gets. Requests go through the real google-genai SDK to the
echo-engine server, whose planner deterministically calls the first tool it is offered (number
arguments from the question's numbers), so the assertions are about plumbing: the call the MCP
server saw, the steps recorded, the sentence of a failure, never what a model writes.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest
from magics_fixtures import run_cell, shell  # noqa: F401
from strict import parse_sse, strict_event, strict_interaction

from gemini_magics.server import mcp_tools
from gemini_magics.server.mcp_tools import McpFailure, McpServer, call_tool, list_tools

pytest.importorskip("mcp")


@dataclass
class RunningMcp:
    """An MCP server on a loopback port: its URL and the calls its tools received."""

    url: str
    calls: list = field(default_factory=list)
    tokens: list = field(default_factory=list)  # the Authorization header of each request
    release: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)  # the slow tool runs


def _serve(mcp_server, tokens=None) -> tuple:
    """Run an MCPServer's streamable-HTTP app on a free loopback port (uvicorn, a thread);
    each request's Authorization header goes to `tokens`."""
    import uvicorn

    inner = mcp_server.streamable_http_app()

    async def app(scope, receive, send):
        if scope["type"] == "http" and tokens is not None:
            tokens.extend(v.decode() for k, v in scope["headers"] if k == b"authorization")
        await inner(scope, receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the MCP test server did not start"
    return f"http://127.0.0.1:{port}/mcp", server, thread


@pytest.fixture(scope="module")
def calc():
    from mcp.server.mcpserver import MCPServer

    srv = MCPServer("calc")
    running = RunningMcp(url="")

    @srv.tool()
    def add(a: int, b: int) -> int:
        """Add two whole numbers."""
        running.calls.append(("add", {"a": a, "b": b}))
        return a + b

    @srv.tool()
    def shout(text: str) -> str:
        """Upper-case a text."""
        running.calls.append(("shout", {"text": text}))
        return text.upper()

    @srv.tool()
    def slow() -> str:
        """Answer only when the test releases it."""
        running.entered.set()
        running.release.wait(30)
        return "late"

    @srv.tool()
    def huge() -> str:
        """A result over the size cap."""
        return "x" * (mcp_tools.MAX_RESULT_CHARS + 10)

    running.url, server, thread = _serve(srv, running.tokens)
    yield running
    running.release.set()
    server.should_exit = True
    thread.join(15)


@pytest.fixture(scope="module")
def remote_ref_server():
    """An MCP server whose only tool's inputSchema refers to a schema on another host."""
    from mcp.server.mcpserver import MCPServer

    srv = MCPServer("refs")

    @srv.tool()
    def lookup(key: str) -> str:
        """Look a key up."""
        return key

    srv._tool_manager.get_tool("lookup").parameters = {  # what a hostile server could list
        "type": "object", "properties": {"key": {"$ref": "http://10.255.255.1/schema.json"}}}
    url, server, thread = _serve(srv)
    yield url
    server.should_exit = True
    thread.join(15)


def mcp_tool(url: str, name: str = "calc", **extra) -> dict:
    return {"type": "mcp_server", "name": name, "url": url, **extra}


def steps_of(interaction) -> list[dict]:
    return [s.model_dump(mode="json", exclude_none=True, by_alias=True) for s in interaction.steps]


def result_text(step: dict) -> str:
    result = step["result"]
    return result if isinstance(result, str) else "".join(c.get("text", "") for c in result)


@pytest.fixture()
def connects(monkeypatch) -> list:
    """Every address a socket of this process connects to while the test runs."""
    seen: list = []
    original = socket.socket.connect

    def connect(self, address):
        seen.append(address)
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


# --------------------------------------------------------------------------------------------
# Through the SDK: the call reaches the MCP server, the steps hold its real result
# --------------------------------------------------------------------------------------------

def test_an_mcp_tool_call_reaches_the_server_and_its_result_is_recorded(client, calc, http):
    before = len(calc.calls)
    i = client.interactions.create(model="gemini-3.5-flash", input="add 2 and 3",
                                   tools=[mcp_tool(calc.url, allowed_tools=[{"tools": ["add"]}])])
    assert i.status == "completed"
    steps = steps_of(i)
    assert [s["type"] for s in steps] == ["mcp_server_tool_call", "mcp_server_tool_result",
                                          "model_output"]
    call, result, answer = steps
    assert calc.calls[before:] == [("add", call["arguments"])]  # the server saw this call
    a, b = call["arguments"]["a"], call["arguments"]["b"]
    assert {a, b} <= {2, 3}  # the question's numbers
    assert call["name"] == "add" and call["server_name"] == "calc"
    assert result["call_id"] == call["id"] and result["name"] == "add"
    assert result_text(result) == str(a + b)  # the MCP server's own answer
    # the model answered from the result (the echo engine quotes what it was given)
    assert f'"text": "{a + b}"' in answer["content"][0]["text"]
    # the stored turn is the same, and valid for the SDK's strict models
    raw = http.get(f"/v1beta/interactions/{i.id}").json()
    strict_interaction(raw)
    assert [s["type"] for s in raw["steps"]][1:] == [s["type"] for s in steps]


def test_a_streamed_mcp_turn_has_strictly_valid_events(calc, http):
    body = {"model": "m", "input": "shout hello", "stream": True,
            "tools": [mcp_tool(calc.url, allowed_tools=[{"tools": ["shout"]}])]}
    r = http.post("/v1beta/interactions", json=body)
    events = parse_sse(r.text)
    for kind, data in events:
        strict_event(kind, data)  # MCPServerToolCallDelta needs name and server_name too
    deltas = [json.loads(d)["delta"] for k, d in events if k == "step.delta"]
    call = next(d for d in deltas if d["type"] == "mcp_server_tool_call")
    result = next(d for d in deltas if d["type"] == "mcp_server_tool_result")
    assert call["name"] == "shout" and call["server_name"] == "calc"
    assert result_text(result) == call["arguments"]["text"].upper()


def test_the_sdk_stream_builds_the_same_steps(client, calc):
    stream = client.interactions.create(model="m", input="add 2 and 3", stream=True,
                                        tools=[mcp_tool(calc.url)])
    kinds = [e.step.type for e in stream if e.event_type == "step.start"]
    assert kinds == ["mcp_server_tool_call", "mcp_server_tool_result", "model_output"]


def test_functions_and_mcp_tools_are_planned_together(client, calc):
    """The planner sees both; a declared function picked ends the turn in requires_action as
    always, with no MCP call made."""
    before = len(calc.calls)
    weather = {"type": "function", "name": "get_weather", "description": "Weather of a city.",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    i = client.interactions.create(model="m", input="weather in Oslo",
                                   tools=[weather, mcp_tool(calc.url)])
    assert i.status == "requires_action" and [s.type for s in i.steps] == ["function_call"]
    assert calc.calls[before:] == []


# --------------------------------------------------------------------------------------------
# What may be reached, and failures as one sentence
# --------------------------------------------------------------------------------------------

def test_a_non_loopback_url_is_refused_without_any_connection(client, connects):
    i = client.interactions.create(model="m", input="add 2 and 3",
                                   tools=[mcp_tool("http://10.255.255.1/mcp")])
    assert i.status == "completed"
    steps = steps_of(i)
    assert [s["type"] for s in steps][:2] == ["mcp_server_tool_call", "mcp_server_tool_result"]
    assert steps[0]["name"] == "tools/list" and steps[1]["is_error"] is True
    sentence = result_text(steps[1])
    assert sentence == ("The MCP server 'calc' (10.255.255.1:80) was not called: this server "
                        "calls only MCP servers on its own machine (127.0.0.1, ::1, localhost) "
                        "unless it is started to allow other hosts.")
    assert not [a for a in connects if isinstance(a, tuple) and a[0] == "10.255.255.1"]


def test_a_host_name_is_refused_before_any_lookup(monkeypatch):
    looked_up = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: looked_up.append(a) or [])
    with pytest.raises(McpFailure, match=r"^The MCP server 'x' \(example\.com:443\) was not "):
        list_tools(McpServer.from_tool(mcp_tool("https://example.com/mcp", name="x")))
    assert looked_up == []


def test_an_unreachable_server_is_one_sentence_and_the_turn_completes(client):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    i = client.interactions.create(model="m", input="add 2 and 3",
                                   tools=[mcp_tool(f"http://127.0.0.1:{port}/mcp")])
    assert i.status == "completed"
    sentence = result_text(steps_of(i)[1])
    assert sentence == (f"The MCP server 'calc' (127.0.0.1:{port}) could not be reached "
                        f"(nothing accepted the connection).")


def test_a_url_that_is_not_mcp_says_so_without_the_servers_text(client, base_url):
    """Our own Interactions server is not an MCP server: its error text stays out."""
    i = client.interactions.create(model="m", input="hi",
                                   tools=[mcp_tool(base_url + "/mcp", name="wrong")])
    sentence = result_text(steps_of(i)[1])
    assert sentence.startswith(f"The MCP server 'wrong' ({base_url[len('http://'):]}) ")
    assert sentence.count(". ") == 0 and sentence.endswith(".")
    assert "Traceback" not in sentence and "404" not in sentence


def test_a_tool_error_is_the_tools_result(calc):
    """A tool that reports an error (here: arguments it rejects) is a result, not a failure."""
    tools = {t.name: t for t in list_tools(McpServer.from_tool(mcp_tool(calc.url)))}
    content, is_error = call_tool(tools["add"], {"a": 1})
    assert is_error is True and "Error executing tool add" in content[0]["text"]


def test_a_slow_tool_times_out_in_one_sentence(calc):
    tools = {t.name: t for t in list_tools(McpServer.from_tool(mcp_tool(calc.url)))}
    started = time.monotonic()
    with pytest.raises(McpFailure) as e:
        call_tool(tools["slow"], {}, timeout=0.5)
    assert time.monotonic() - started < 10
    assert str(e.value).endswith(") did not answer within 0.5 s.")


def test_a_stopped_turn_stops_its_mcp_call(calc):
    tools = {t.name: t for t in list_tools(McpServer.from_tool(mcp_tool(calc.url)))}
    with pytest.raises(McpFailure, match="the turn was stopped"):
        call_tool(tools["slow"], {}, should_stop=lambda: True)


def test_cancelling_a_turn_stops_its_mcp_call_at_once(client, calc):
    calc.entered.clear()
    i = client.interactions.create(model="m", input="wait", background=True,
                                   tools=[mcp_tool(calc.url, allowed_tools=[{"tools": ["slow"]}])])
    assert calc.entered.wait(30), "the slow tool was never called"
    started = time.monotonic()
    cancelled = client.interactions.cancel(i.id)  # returns once the turn has ended
    assert cancelled.status == "cancelled"
    assert time.monotonic() - started < 10  # not the 30 s MCP timeout
    assert client.interactions.get(i.id).status == "cancelled"


def test_a_large_result_is_cut_and_says_so(calc):
    tools = {t.name: t for t in list_tools(McpServer.from_tool(mcp_tool(calc.url)))}
    content, is_error = call_tool(tools["huge"], {})
    text = content[0]["text"]
    assert not is_error and text.startswith("x" * mcp_tools.MAX_RESULT_CHARS)
    assert text.endswith("[cut: the result had more than 65,536 characters of text]")


def test_allowed_tools_limit_what_is_offered(calc):
    server = McpServer.from_tool(mcp_tool(calc.url, allowed_tools=[{"tools": ["shout"]}]))
    assert [t.name for t in list_tools(server)] == ["shout"]


def test_a_remote_ref_in_an_input_schema_is_refused(client, remote_ref_server, connects):
    i = client.interactions.create(model="m", input="look up k",
                                   tools=[mcp_tool(remote_ref_server, name="refs")])
    steps = steps_of(i)
    assert steps[0]["name"] == "tools/list" and steps[1]["is_error"] is True
    assert result_text(steps[1]) == (
        f"The MCP server 'refs' ({remote_ref_server[7:-4]}) was not used, for a tool it lists: "
        f"lookup.inputSchema.properties.key.$ref: only local references ('#/...') "
        f"are allowed, not 'http://10.255.255.1/schema.json'; put the schema under '$defs' and "
        f"refer to it as '#/$defs/Name'.")
    assert not [a for a in connects if isinstance(a, tuple) and a[0] == "10.255.255.1"]


@pytest.mark.parametrize("tool, words", [
    ({"type": "mcp_server", "name": "x"}, "'tools[0].url' is required for an mcp_server tool"),
    (mcp_tool("ftp://127.0.0.1/mcp"), "'tools[0].url' must be an http:// or https:// URL"),
    (mcp_tool("http://user:secret@127.0.0.1/mcp"), "'tools[0].url' must not carry credentials"),
    (mcp_tool("http://127.0.0.1/mcp", headers={"a": 1}), "'tools[0].headers' must map header"),
    (mcp_tool("http://127.0.0.1/mcp", allowed_tools=["add"]), "'tools[0].allowed_tools[0]'"),
])
def test_a_malformed_mcp_tool_is_a_400(http, tool, words):
    r = http.post("/v1beta/interactions", json={"model": "m", "input": "x", "tools": [tool]})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert message.startswith(words) and "secret" not in message


def test_headers_reach_the_mcp_server(client, calc):
    """The tool's `headers` (a bearer token, say) are sent with every MCP request."""
    before = len(calc.tokens)
    client.interactions.create(model="m", input="add 2 and 3", tools=[
        mcp_tool(calc.url, headers={"Authorization": "Bearer t0ken"})])
    assert calc.tokens[before:] and set(calc.tokens[before:]) == {"Bearer t0ken"}


# --------------------------------------------------------------------------------------------
# A %%gemini cell
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["", "--no-stream"])
def test_a_cell_shows_the_mcp_call_and_its_result(shell, calc, stream):
    before = len(calc.calls)
    cap = run_cell(shell, f"%%gemini --tools mcp:calc={calc.url} {stream}\nadd 2 and 3")
    assert cap.error is None, (cap.stdout, cap.stderr)
    (_, args), = calc.calls[before:]
    shown = [d.get("text/markdown", "") for d in cap.final]
    assert shown[0] == f"**Call** on calc `add(a={args['a']}, b={args['b']})`"
    assert shown[1] == f"→ `add` **returned**\n\n```json\n{args['a'] + args['b']}\n```"
    assert shown[2].startswith("Echo: ")
    r = shell.user_ns["_gemini"]
    assert [s["type"] for s in r.steps] == ["mcp_server_tool_call", "mcp_server_tool_result",
                                            "model_output"]


def test_a_cell_shows_a_refused_server_in_one_sentence(shell):
    cap = run_cell(shell, "%%gemini --tools mcp:calc=http://10.255.255.1/mcp\nadd 2 and 3")
    assert cap.error is None, (cap.stdout, cap.stderr)
    shown = [d.get("text/markdown", "") for d in cap.final]
    assert shown[0] == "**Call** on calc `tools/list()`"
    assert shown[1].startswith("\u26a0 `tools/list` **failed**\n\n```text\nThe MCP server 'calc' "
                               "(10.255.255.1:80) was not called:")


def test_tools_option_parses_mcp_servers():
    from gemini_magics.tools import parse_tools

    assert parse_tools("mcp:calc=http://127.0.0.1:8000/mcp,google_search,"
                       "mcp:http://localhost:9/mcp?a=b,mcp:calc=http://127.0.0.1:8000/mcp") == [
        {"type": "mcp_server", "name": "calc", "url": "http://127.0.0.1:8000/mcp"},
        {"type": "google_search"},
        {"type": "mcp_server", "url": "http://localhost:9/mcp?a=b"}]
    with pytest.raises(ValueError, match=r"^--tools mcp:NAME=URL needs the MCP server's http\(s\) "
                                         r"URL, e\.g\. mcp:calc=http://127\.0\.0\.1:8000/mcp, "
                                         r"not 'calc='\.$"):
        parse_tools("mcp:calc=")


def test_an_mcp_turn_continues_stateful_and_stateless(client, calc):
    """The MCP steps are history like any other: a chained turn and a stateless re-send of
    them (as the magics' --stateless does) both answer."""
    tools = [mcp_tool(calc.url)]
    first = client.interactions.create(model="m", input="add 2 and 3", tools=tools)
    chained = client.interactions.create(model="m", input="thanks",
                                         previous_interaction_id=first.id)
    assert chained.status == "completed"
    assert chained.steps[-1].content[0].text.startswith("Echo: I saw 3 user turns")
    history = [{"type": "user_input", "content": [{"type": "text", "text": "add 2 and 3"}]},
               *steps_of(first), {"type": "user_input", "content": [{"type": "text",
                                                                      "text": "thanks"}]}]
    stateless = client.interactions.create(model="m", input=history, store=False)
    assert stateless.steps[-1].content[0].text == chained.steps[-1].content[0].text
