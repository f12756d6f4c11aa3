"""The answer after function results: one sentence that states the result, constrained.

A 135M model shown `[function result multiply: 7006652.0]` echoes the marker, or ignores the
result and does its own (wrong) arithmetic. So the turn that answers after `function_result`
steps is built differently from other turns:

- The prompt states each result as a plain fact, with no bracketed marker to copy:
  "What is 1234 times 5678?  Result: multiply(a=1234, b=5678) returned 7006652.  Answer the
  question in one sentence using this result."
- The reply is constrained (a JSON-schema string `pattern`, which the engine decodes with its
  grammar) to one sentence that contains the result's value (`7006652` or `7,006,652`) as a
  word of its own, and no number but those of the call's arguments before it and none after:
  the model words the sentence, but cannot leave the value out, put another number in, or
  write square brackets, braces, quotes or a second sentence.
- The reply is checked against the same pattern; if it does not keep it (cut off by
  `max_output_tokens`, an engine that ignores schemas), the answer is the fact itself:
  "multiply(a=1234, b=5678) returned 7006652." Offline, a right answer matters more than a
  fluent one.
- Number arguments are the question's numbers (`planning.pin_numbers`), so the call itself
  multiplies 1234 and 5678, not 123 and 5678.

Engines whose reply describes their input (`describes_input`, the echo engine) still get the
plain conversation, so tests can see exactly what reached the engine.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Optional

from ..engines.base import EngineRequest
from ..turns import (FINISH_STATUS, Outcome, TurnContext, content_text, generation_params,
                     history_to_messages)

__all__ = ["answers_function_results", "function_answer", "Fact", "facts_of", "answer_pattern",
           "answer_messages", "checked_answer", "INSTRUCTION"]

INSTRUCTION = "Answer the question in one sentence using this result."
# Characters of the words around the value: letters (Latin-1 ones too), spaces and a little
# punctuation; no digits (numbers come only from the allowed list), no square brackets,
# braces, quotes or backslashes (no marker, no JSON), no sentence end (one sentence).
_FREE = "[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff ,':()%\u00b0/*\u00d7=+-]"
# The character just before and just after a value, so "Celsius22" or "ABC" cannot pass for 22
# or B.
_BEFORE = "[ :'=]"
_AFTER = "[ ,'):%\u00b0]"
LEAD_CHARS = 100   # at most this many characters before the first value
TAIL_CHARS = 60    # ... and after the last
MAX_PIECES = 3     # values a reply must contain, at most
MAX_VALUE_CHARS = 60
DEFAULT_MAX_TOKENS = 120


def answers_function_results(ctx: TurnContext) -> bool:
    """True when this turn answers after function results (its last input is one) and the
    engine generates text (not one that describes its input, as the echo engine does)."""
    last = ctx.request.input_steps[-1] if ctx.request.input_steps else {}
    return (last.get("type") == "function_result"
            and not getattr(ctx.engine, "describes_input", False))


@dataclass
class Fact:
    """One function result in words, and the values an answer must contain."""

    sentence: str                 # "multiply(a=1234, b=5678) returned 7006652."
    pieces: list[list[str]]       # each value's accepted renderings: [["7006652", "7,006,652"]]
    numbers: list[str]            # numbers of the call's arguments (an answer may repeat them)


# --------------------------------------------------------------------------------------------
# Results in words
# --------------------------------------------------------------------------------------------

def _number(value: Any) -> Optional[float]:
    """A result value as a number, if it is one (numeric strings such as "22" too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and re.fullmatch(r"-?\d+(?:\.\d+)?", value.strip()):
        return float(value) if "." in value else int(value)
    return None


def _renderings(value: Any) -> list[str]:
    """How an answer may write a value: 7006652.0 as "7006652" or "7,006,652"; "B" as B."""
    n = _number(value)
    if n is not None:
        if isinstance(n, float) and n.is_integer() and abs(n) < 1e15:
            n = int(n)
        out = [str(n)]
        if isinstance(n, int) and abs(n) >= 1000:
            out.append(f"{n:,}")
        elif isinstance(n, float) and abs(n) >= 1000:
            out.append(f"{n:,}")
        return out
    if isinstance(value, str):
        text = value.strip()
        if text and len(text) <= MAX_VALUE_CHARS and not re.search(r'["\\\n\r\[\]{}]', text):
            return [text]
    return []


def _plain(value: Any, quote: bool = True) -> str:
    """A value in a fact sentence: numbers as their first rendering, a string quoted (not
    inside an object), an object as "key value" pairs: `location London, temperature 22`."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v, False)}" for k, v in value.items()) or "nothing"
    if isinstance(value, list):
        return ", ".join(_plain(v, quote) for v in value) or "nothing"
    if _number(value) is not None:
        return _renderings(value)[0]
    if isinstance(value, str) and not quote and _renderings(value):
        return value.strip()
    return json.dumps(value, ensure_ascii=False)


def _arguments(arguments: dict) -> str:
    parts = []
    for k, v in (arguments or {}).items():
        n = _number(v) if not isinstance(v, str) else None
        parts.append(f"{k}={_renderings(v)[0] if n is not None else json.dumps(v, ensure_ascii=False)}")
    return ", ".join(parts)


def _result_value(step: dict) -> Any:
    result = step.get("result")
    text = content_text(result) if isinstance(result, list) else result
    if isinstance(text, str):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _pieces(value: Any, known: str) -> list[list[str]]:
    """The values an answer must contain: a scalar result itself; of an object, its numbers
    (or else its first string) that the question and arguments do not already hold (the
    weather's 22, not its "London"); of a short list, its items."""
    if isinstance(value, dict):
        fresh = {k: v for k, v in value.items()
                 if _renderings(v) and _renderings(v)[0].lower() not in known.lower()}
        numbers = [v for v in fresh.values() if _number(v) is not None]
        chosen = numbers or list(fresh.values())[:1]
        return [_renderings(v) for v in chosen][:MAX_PIECES]
    if isinstance(value, list):
        if len(value) <= MAX_PIECES and all(_renderings(v) for v in value):
            return [_renderings(v) for v in value]
        return []
    r = _renderings(value)
    return [r] if r else []


def facts_of(steps: list[dict], question: str) -> list[Fact]:
    """The function results among `steps` (those after the question), as facts."""
    calls = {s.get("id"): s for s in steps if s.get("type") == "function_call"}
    facts = []
    for step in steps:
        if step.get("type") != "function_result":
            continue
        call = calls.get(step.get("call_id")) or {}
        name = step.get("name") or call.get("name") or "the function"
        args = _arguments(call.get("arguments") or {})
        value = _result_value(step)
        numbers = re.findall(r"\d+(?:\.\d+)?", args)
        if step.get("is_error"):
            message = value.get("error") if isinstance(value, dict) else value
            facts.append(Fact(f"{name}({args}) failed: {_plain(message)}.", [], numbers))
            continue
        facts.append(Fact(f"{name}({args}) returned {_plain(value)}.",
                          _pieces(value, f"{question} {args}"), numbers))
    return facts


# --------------------------------------------------------------------------------------------
# The constraint
# --------------------------------------------------------------------------------------------

def _escape(text: str) -> str:
    """A literal for the pattern (only the metacharacters escaped: every regex dialect the
    engines use accepts these escapes)."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)


def answer_pattern(pieces: list[list[str]], numbers: list[str]) -> str:
    """The regex of an answer: a letter (or allowed number) and up to LEAD_CHARS of words (and the allowed `numbers`), each
    value in turn (one of its renderings, set apart from the words around it), then up to
    TAIL_CHARS of words with no number at all, and an optional full stop."""
    allowed = sorted({n for n in numbers if n}, key=len, reverse=True)
    word = "(?:" + "|".join([_escape(n) for n in allowed] + [_FREE]) + ")" if allowed else _FREE
    if not pieces:
        return f"^{word}{{1,{LEAD_CHARS + TAIL_CHARS}}}[.!]?$"
    first = "(?:" + "|".join([_escape(n) for n in allowed] + ["[A-Za-z]"]) + ")"
    out = [f"^{first}{word}{{0,{LEAD_CHARS}}}{_BEFORE}"]
    for i, renderings in enumerate(pieces):
        if i:
            out.append(f"{_AFTER}{word}{{0,{TAIL_CHARS}}}{_BEFORE}")
        out.append("(?:" + "|".join(_escape(r) for r in renderings) + ")")
    out.append(f"(?:{_AFTER}{_FREE}{{0,{TAIL_CHARS}}})?[.!]?$")
    return "".join(out)


def _holds(answer: str, pieces: list[list[str]]) -> bool:
    """Whether an answer contains every value, as a word of its own, and no marker."""
    if not answer.strip() or "[function" in answer:
        return False
    for renderings in pieces:
        if not any(re.search(rf"(?<![0-9A-Za-z]){re.escape(r)}(?![0-9A-Za-z])", answer)
                   or (not r[-1:].isalnum() and r in answer) for r in renderings):
            return False
    return True


def checked_answer(reply: str, pattern: str, pieces: list[list[str]], facts: list[Fact]) -> str:
    """The model's sentence if it keeps the constraint (checked here too, for engines that
    ignore schemas), else the facts themselves."""
    try:
        answer = json.loads(reply)
    except (TypeError, ValueError):
        answer = reply  # not a JSON string: an engine that ignored the schema
    if isinstance(answer, str):
        answer = answer.strip()
        if re.match(pattern, answer) and _holds(answer, pieces):
            return answer
    return " ".join(f.sentence for f in facts) or "The function returned nothing."


# --------------------------------------------------------------------------------------------
# The turn
# --------------------------------------------------------------------------------------------

def answer_messages(ctx: TurnContext) -> tuple[list[dict], list[Fact], str]:
    """The chat messages of the answering turn: the conversation before the question as
    usual, then the question with the facts and the instruction; the facts; the question."""
    steps = ctx.all_steps
    asked = max((i for i, s in enumerate(steps) if s.get("type") == "user_input"), default=-1)
    question = content_text(steps[asked].get("content")) if asked >= 0 else ""
    facts = facts_of(steps[asked + 1:], question)
    messages = history_to_messages(ctx.request.system_instruction, steps[:max(asked, 0)])
    results = "\n".join(f"Result: {f.sentence}" for f in facts)
    prompt = "\n\n".join(p for p in (question, results, INSTRUCTION) if p)
    if messages and messages[-1]["role"] == "user":
        messages[-1] = {"role": "user", "content": messages[-1]["content"] + "\n\n" + prompt}
    else:
        messages.append({"role": "user", "content": prompt})
    return messages, facts, question


def function_answer(ctx: TurnContext) -> Outcome:
    """Answer after function results: a constrained sentence holding each result's value,
    or the facts themselves (see the module docstring); streamed as one model_output."""
    rec, req = ctx.recorder, ctx.request
    messages, facts, question = answer_messages(ctx)
    pieces = [p for f in facts for p in f.pieces][:MAX_PIECES]
    # only the call's own numbers: "1234 times 5678 is 698394" must not pair the question's
    # numbers with the result of a call the model made with others
    numbers = [n for f in facts for n in f.numbers]
    params = generation_params(req.generation_config)
    if params.max_output_tokens is None:
        params.max_output_tokens = DEFAULT_MAX_TOKENS
    pattern = answer_pattern(pieces, numbers)
    request = EngineRequest(model=req.name, messages=messages, params=params,
                            json_schema={"type": "string", "pattern": pattern})
    out = rec.start_step({"type": "model_output"}, wait_for_content=True)
    result = None
    try:
        # buffered, not streamed: the reply is checked before anyone sees it (a sentence, ~1 s)
        try:
            result = ctx.engine.generate(request, lambda _chunk: not rec.cancelled)
        except ValueError:  # an engine that cannot take the pattern: ask plainly, check below
            request.json_schema = None
            result = ctx.engine.generate(request, lambda _chunk: not rec.cancelled)
        if rec.cancelled or result.finish == "cancelled":
            return Outcome("cancelled", result.input_tokens, result.output_tokens)
        rec.text(out, checked_answer(result.text, pattern, pieces, facts))
    finally:
        if result is None:
            rec.stop_step(out)
        else:
            rec.stop_step(out, result.input_tokens, result.output_tokens)
    status = FINISH_STATUS.get(result.finish, "completed")
    return Outcome("completed" if status == "incomplete" else status,
                   result.input_tokens, result.output_tokens)
