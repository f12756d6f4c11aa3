"""The producer for turns with tools: declared functions and emulated built-in tools.

A function call is planned with JSON-schema-constrained decoding (`planning`), streamed as
`arguments_delta` fragments, and ends the turn in `requires_action`; built-in tools are emulated
offline (`emulate`): their call and result steps, then the model's answer with citations.
"""
from __future__ import annotations

import os

from ...catalog import BUILTIN_TOOLS
from ..emulate import describe_for_model, emulate_builtin_tool, offline_annotations
from ..planning import plan_function_call
from ..protocol import CreateRequest
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
    """True if the request's tools need `tools_producer` (function or emulated built-in tools)."""
    return any(isinstance(t, dict) and (t.get("type") == "function" or t.get("type") in BUILTIN_TOOLS)
               for t in request.tools or [])


def new_call_id() -> str:
    return "call_" + os.urandom(6).hex()


def tools_producer(ctx: TurnContext) -> Outcome:
    """Produce a turn that has tools: a function call (ending in requires_action), or emulated
    built-in tool steps followed by a cited text answer.

    After the client sends `function_result`s, the model answers in text (it is not asked to
    call again in the same round), so a small model cannot loop forever; that answer is
    constrained to state the results (`function_answer`). Built-in tools run only on a fresh
    user prompt.
    """
    req, rec = ctx.request, ctx.recorder
    functions = [t for t in req.tools if isinstance(t, dict) and t.get("type") == "function"]
    builtins = [t for t in req.tools if isinstance(t, dict) and t.get("type") in BUILTIN_TOOLS]
    last = req.input_steps[-1] if req.input_steps else {}
    answering = last.get("type") == "function_result"
    if answering and answers_function_results(ctx):
        return function_answer(ctx)
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
            record_step(rec, function_call_step(new_call_id(), call["name"], call["arguments"]),
                        usage.get("input_tokens", 0), usage.get("output_tokens", 0))
            return Outcome("requires_action", usage.get("input_tokens", 0),
                           usage.get("output_tokens", 0))
        rec.add_usage(usage.get("input_tokens", 0), usage.get("output_tokens", 0))

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
                   usage.get("output_tokens", 0) + answer.output_tokens)
