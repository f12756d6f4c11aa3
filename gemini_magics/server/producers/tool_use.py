"""The producer for turns with tools: declared functions, MCP servers and emulated built-in tools.

A function call is planned with JSON-schema-constrained decoding (`planning`), streamed as
`arguments_delta` fragments, and ends the turn in `requires_action`. An MCP server's tools are
listed (`mcp_tools`) and planned the same way, as functions; a call to one really happens here,
its `mcp_server_tool_call` and `mcp_server_tool_result` steps are recorded, and the model
answers from the result as it does after function results (`function_answer`). Built-in tools
are emulated offline (`emulate`): their call and result steps, then the model's answer with
citations.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from ...catalog import BUILTIN_TOOLS
from ..emulate import describe_for_model, emulate_builtin_tool, offline_annotations
from ..mcp_tools import McpFailure, McpServer, McpTool, call_tool, list_tools
from ..planning import plan_function_call
from ..protocol import ApiError, CreateRequest, _check_schema, check_refs
from .function_answer import answers_function_results, function_answer
from ..turns import (Outcome, TurnContext, content_text, function_call_step, generation_params,
                     history_to_messages, record_step, step_signature, stream_model_output)

__all__ = ["wants_tools", "tools_producer", "SIGNED_STEPS"]

# Built-in tool steps that carry a `signature` (the SDK types that have the field); function
# calls have none (the API signs the thought before them).
SIGNED_STEPS = {f"{tool}_{end}" for tool in ("google_search", "google_maps", "url_context",
                                             "file_search", "code_execution")
                for end in ("call", "result")}


def wants_tools(request: CreateRequest) -> bool:
    """True if the request's tools need `tools_producer` (function, MCP server or emulated
    built-in tools)."""
    return any(isinstance(t, dict) and (t.get("type") in ("function", "mcp_server")
                                        or t.get("type") in BUILTIN_TOOLS)
               for t in request.tools or [])


def new_call_id() -> str:
    return "call_" + os.urandom(6).hex()


def tools_producer(ctx: TurnContext) -> Outcome:
    """Produce a turn that has tools: a function call (ending in requires_action), an MCP
    tool call and its result followed by an answer from it, or emulated built-in tool steps
    followed by a cited text answer.

    After the client sends `function_result`s, the model answers in text (it is not asked to
    call again in the same round), so a small model cannot loop forever; that answer is
    constrained to state the results (`function_answer`). The same holds after an MCP result:
    one MCP call per turn. Built-in tools and MCP servers run only on a fresh user prompt.
    """
    req, rec = ctx.request, ctx.recorder
    functions = [t for t in req.tools if isinstance(t, dict) and t.get("type") == "function"]
    servers = [McpServer.from_tool(t) for t in req.tools
               if isinstance(t, dict) and t.get("type") == "mcp_server"]
    builtins = [t for t in req.tools if isinstance(t, dict) and t.get("type") in BUILTIN_TOOLS]
    last = req.input_steps[-1] if req.input_steps else {}
    answering = last.get("type") == "function_result"
    if answering and answers_function_results(ctx):
        return function_answer(ctx)
    messages = history_to_messages(req.system_instruction, ctx.all_steps)
    params = generation_params(req.generation_config)
    usage: dict = {}

    mcp_steps: list[dict] = []  # this turn's MCP steps, for the answer's prompt
    if (functions or servers) and not answering:
        offered = _list_mcp_tools(ctx, servers, mcp_steps)
        if rec.cancelled:
            return Outcome("cancelled")
        names = _planner_names(offered, {f["name"] for f in functions})
        declared = functions + [{"type": "function", "name": name, "description": t.description,
                                 "parameters": t.schema} for name, t in names.items()]
        call = plan_function_call(ctx.engine, messages, declared, model=req.name, params=params,
                                  tool_choice=req.generation_config.get("tool_choice"),
                                  on_text=lambda _chunk: not rec.cancelled, usage=usage)
        if rec.cancelled:
            return Outcome("cancelled", usage.get("input_tokens", 0), usage.get("output_tokens", 0))
        if call is not None and call["name"] in names:
            return _mcp_call_and_answer(ctx, names[call["name"]], call["arguments"], usage,
                                        mcp_steps)
        if call is not None:
            record_step(rec, function_call_step(new_call_id(), call["name"], call["arguments"]),
                        usage.get("input_tokens", 0), usage.get("output_tokens", 0))
            return Outcome("requires_action", usage.get("input_tokens", 0),
                           usage.get("output_tokens", 0))
        rec.add_usage(usage.get("input_tokens", 0), usage.get("output_tokens", 0))
        if mcp_steps:  # the servers that failed, so the answer does not pretend they answered
            messages = history_to_messages(req.system_instruction, ctx.all_steps + mcp_steps)

    emulated: list[dict] = []
    if builtins and not answering:
        prompt = next((content_text(s.get("content")) for s in reversed(req.input_steps)
                       if s.get("type") == "user_input"), "")
        for tool in builtins:
            for step in emulate_builtin_tool(tool["type"], prompt, new_call_id, tool):
                if step["type"] in SIGNED_STEPS:  # as the real API signs its tool steps
                    step = {**step, "signature": step_signature(rec, rec.next_index())}
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
                   usage.get("output_tokens", 0) + answer.output_tokens,
                   capped_at=getattr(answer, "capped_at", None))


# --------------------------------------------------------------------------------------------
# MCP servers
# --------------------------------------------------------------------------------------------

def _allow_remote_mcp(ctx: TurnContext) -> bool:
    """Whether this server may call MCP servers on other hosts: off unless the server that
    runs the turn sets `allow_remote_mcp` on its TurnContext (a serve flag)."""
    return bool(getattr(ctx, "allow_remote_mcp", False))


def _list_mcp_tools(ctx: TurnContext, servers: list[McpServer],
                    failed: list[dict]) -> list[McpTool]:
    """Every server's tools. A server that cannot be listed (refused, unreachable, a schema
    we do not follow) is recorded as a failed `tools/list` call and result, one sentence, and
    added to `failed`; the others' tools are offered."""
    rec = ctx.recorder
    offered: list[McpTool] = []
    for server in servers:
        if rec.cancelled:
            break
        try:
            tools = list_tools(server, allow_remote=_allow_remote_mcp(ctx),
                               should_stop=lambda: rec.cancelled)
            for tool in tools:
                _check_input_schema(tool)
        except McpFailure as e:
            if rec.cancelled:
                break
            failed.extend(_record_mcp_call(rec, server, "tools/list", {}, str(e), True))
            continue
        offered.extend(tools)
    return offered


def _check_input_schema(tool: McpTool) -> None:
    """Raise McpFailure unless `tool`'s inputSchema is one we plan against, by the rules for a
    function's parameters: a valid schema whose references are all local ('#/...')."""
    try:
        check_refs(tool.schema, f"{tool.name}.inputSchema")
        _check_schema(tool.schema, f"{tool.name}.inputSchema")
    except ApiError as e:
        raise McpFailure(f"{tool.server.where} was not used, for a tool it lists: "
                         f"{e.message}") from None


def _planner_names(tools: list[McpTool], taken: set) -> dict[str, McpTool]:
    """The name each MCP tool is planned under: its own, or `server.tool` when a function or
    another server's tool has that name."""
    out: dict[str, McpTool] = {}
    for tool in tools:
        name = tool.name
        if name in taken or name in out:
            name = f"{tool.server.name}.{tool.name}"
        out.setdefault(name, tool)
    return out


def _record_mcp_call(rec, server: McpServer, name: str, arguments: dict, result: Any,
                     is_error: bool) -> list[dict]:
    """Record an MCP call and its result as the real API's two steps; the steps."""
    call_id = new_call_id()
    call = {"type": "mcp_server_tool_call", "id": call_id, "name": name,
            "server_name": server.name, "arguments": arguments}
    done = {"type": "mcp_server_tool_result", "call_id": call_id, "name": name,
            "server_name": server.name, "result": result}
    if is_error:
        done["is_error"] = True
    for step, key, empty in ((call, "id", {}), (done, "call_id", "")):
        # as google-genai's MCPServerTool*Step and *Delta: step.start holds the whole step with
        # an empty payload, the delta the payload with the tool's and the server's names again
        delta = {k: v for k, v in step.items() if k != key}
        start = {**step, **{k: empty for k in ("arguments", "result") if k in step}}
        start.pop("is_error", None)
        index = rec.start_step(step, announce=start)
        rec.delta(index, delta)
        rec.stop_step(index)
    return [call, done]


def _mcp_call_and_answer(ctx: TurnContext, tool: McpTool, arguments: dict, usage: dict,
                         steps: list[dict]) -> Outcome:
    """Call the planned MCP tool, record its steps, then answer from its result: with the
    constrained one-sentence answer of `function_answer` (the call and result given to it as a
    function call and result), or, for an engine that describes its input, the conversation."""
    rec, req = ctx.recorder, ctx.request
    rec.add_usage(usage.get("input_tokens", 0), usage.get("output_tokens", 0))
    try:
        result, is_error = call_tool(tool, arguments, allow_remote=_allow_remote_mcp(ctx),
                                     should_stop=lambda: rec.cancelled)
    except McpFailure as e:
        result, is_error = str(e), True
    if rec.cancelled:
        return Outcome("cancelled", usage.get("input_tokens", 0), usage.get("output_tokens", 0))
    steps = steps + _record_mcp_call(rec, tool.server, tool.name, arguments, result, is_error)
    call, done = steps[-2:]
    as_function = [{**call, "type": "function_call"}, {**done, "type": "function_result"}]
    answering = replace(ctx, request=replace(req, input_steps=req.input_steps + as_function))
    if answers_function_results(answering):
        answer = function_answer(answering)
    else:
        answer = stream_model_output(ctx, history_to_messages(req.system_instruction,
                                                              ctx.all_steps + steps))
    return Outcome(answer.status, usage.get("input_tokens", 0) + answer.input_tokens,
                   usage.get("output_tokens", 0) + answer.output_tokens,
                   capped_at=getattr(answer, "capped_at", None))
