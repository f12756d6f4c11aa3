"""Are the local model's answers after a function result right? (issue #15)

    python benchmarks/bench_function_answers.py [--seeds 10] [--stateless]

For the notebooks' function examples (the quickstart's weather, the teaching notebook's
calculator, a letter grade) and seeds 0..N-1, runs the quickstart's function loop through the
real SDK against a local server with the real model (SmolLM2-135M): the model calls the
function (tool_choice "any", so every seed reaches the answer), the function runs on the
arguments the model chose, its result goes back, the model answers. An answer is right when it
contains the result's value (any common rendering: 7006652, 7,006,652) and no `[function`
marker. Prints a table: right answers per example; "as fact": answers that are the bare fact
sentence `name(args) returned value.` (the server's fallback when the model's sentence breaks
the constraint, or the model copying the fact; see server/producers/function_answer.py);
seconds per loop (two model turns). Goal: >= 9 of 10 right for each example.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def get_current_temperature(location: str) -> dict:
    """Gets the current temperature for a given location.

    Args:
        location: The city name, e.g. San Francisco
    """
    return {"location": location, "temperature": "22", "unit": "celsius"}


def multiply(a: float, b: float) -> float:
    """Multiplies two numbers exactly."""
    return a * b


def grade_to_letter(score: int) -> str:
    """Converts a numeric score from 0 to 100 to a letter grade."""
    return "A" if score >= 90 else "B" if score >= 80 else "C" if score >= 70 else "D" if score >= 60 else "F"


EXAMPLES = [  # (label, function, prompt, the value of a result)
    ("weather", get_current_temperature, "What is the temperature in London?",
     lambda r: r["temperature"]),
    ("multiply", multiply, "What is 1234 times 5678?", lambda r: r),
    ("grade", grade_to_letter, "What letter grade is a score of 84?", lambda r: r),
]


def renderings(value) -> list[str]:
    """The ways an answer may write a value: 7006652.0 as 7006652 or 7,006,652."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    out = [str(value)]
    if isinstance(value, int) and abs(value) >= 1000:
        out.append(f"{value:,}")
    return out


def contains_value(text: str, value) -> bool:
    return any(re.search(rf"(?<![0-9A-Za-z]){re.escape(r)}(?![0-9A-Za-z])", text)
               for r in renderings(value))


def run_example(client, fn, prompt, value_of, seed, stateless=False):
    """One function loop: (answer text, the result's value, the call's arguments), or
    (None, None, None) when the model called nothing."""
    from gemini_magics.functions import call_function, function_declaration, function_result_step

    tools = [function_declaration(fn)]
    first = client.interactions.create(model="gemini-3.5-flash", input=prompt, tools=tools,
                                       store=not stateless,
                                       generation_config={"seed": seed, "tool_choice": "any"})
    calls = [s for s in first.steps if s.type == "function_call"]
    if not calls:
        return None, None, None
    result, is_error = call_function(fn, calls[0].arguments, timeout=10)
    step = function_result_step(calls[0], result, is_error)
    config = {"seed": seed, "max_output_tokens": 60}
    if stateless:
        history = [{"type": "user_input", "content": [{"type": "text", "text": prompt}]}]
        history += [s.model_dump(exclude_none=True) for s in first.steps] + [step]
        final = client.interactions.create(model="gemini-3.5-flash", input=history, tools=tools,
                                           store=False, generation_config=config)
    else:
        final = client.interactions.create(model="gemini-3.5-flash", input=[step], tools=tools,
                                           previous_interaction_id=first.id,
                                           generation_config=config)
    return (final.output_text or "", None if is_error else value_of(result),
            calls[0].arguments)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--stateless", action="store_true", help="send the whole history instead")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every answer")
    ap.add_argument("--only", help="one example: weather, multiply or grade")
    args = ap.parse_args()

    from google import genai

    from gemini_magics.server import start_server

    srv = start_server(engine="local")
    client = genai.Client(api_key="dummy", http_options={"base_url": srv.base_url})
    rows = []
    try:
        for label, fn, prompt, value_of in EXAMPLES:
            if args.only and label != args.only:
                continue
            right = fallback = 0
            spent = 0.0
            for seed in range(args.seeds):
                t = time.perf_counter()
                text, value, arguments = run_example(client, fn, prompt, value_of, seed, args.stateless)
                spent += time.perf_counter() - t
                ok = text is not None and value is not None and contains_value(text, value) \
                    and "[function" not in text
                right += ok
                fallback += bool(text) and bool(re.match(rf"{fn.__name__}\(.*\) returned ", text))
                if args.verbose:
                    print(f"  {label} seed {seed}: {'ok ' if ok else 'BAD'} {arguments} {text!r}",
                          flush=True)
            rows.append((label, right, fallback, spent / args.seeds))
    finally:
        srv.stop()
    mode = "stateless" if args.stateless else "stateful"
    print(f"\n{mode}, {args.seeds} seeds\n{'example':10} {'right':>8} {'as fact':>8} {'s/loop':>7}")
    for label, right, fallback, per in rows:
        print(f"{label:10} {right:>4}/{args.seeds:<3} {fallback:>8} {per:>7.1f}")


if __name__ == "__main__":
    main()
