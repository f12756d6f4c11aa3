"""The function-calling loop behind `--functions`: call the model's functions, send the results.

The quickstart's loop, run by the magic (runner.run drives the rounds; this module holds what
happens between them): after a round that ends in `requires_action`, each `function_call`
step is answered by calling the notebook's function (`functions.call_function`: arguments
validated against the declaration, exceptions and timeouts become error results the model can
read), the `function_result` steps are added to the same accumulator (so displays show each
call and result as it happens, and the conversation records the whole exchange), and the next
request continues the interaction: stateful with `previous_interaction_id` and the results as
input, stateless (`store=false`) with the whole history re-sent, as the quickstart does.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Callable, Iterable, Optional

from .functions import call_function, declared_name, function_result_step

__all__ = ["FunctionLoop", "ROUNDS_SENTENCE", "confirming", "ask_user"]

# The attribute that marks a callable to be confirmed before each call (--confirm).
CONFIRM = "gemini_confirm"
_YES = ("y", "yes", "allow", "a", "ok")

ROUNDS_SENTENCE = ("The model was still calling functions after {n} round{s} (the last calls "
                   "are shown above); stopped there: raise --max-rounds, or reword the prompt "
                   "or the functions' docstrings so the model can answer.")


class FunctionLoop:
    """What `runner.run` needs between rounds for a request with `callables`."""

    def __init__(self, callables: Iterable[Callable], *, timeout: Optional[float] = 60.0,
                 stateless: bool = False):
        self.by_name = {declared_name(f): f for f in callables}
        self.timeout = timeout
        self.stateless = stateless

    @staticmethod
    def pending(acc: Any, first: int) -> list[dict]:
        """The function_call steps of the round whose steps start at position `first`."""
        return [acc.steps[i].materialize() for i in acc.order[first:]
                if acc.steps[i].data.get("type") == "function_call"]

    def call(self, step: dict) -> tuple[Any, bool]:
        """(result, is_error) for one function_call step; never raises (but KeyboardInterrupt)."""
        name = step.get("name")
        fn = self.by_name.get(name)
        if fn is None:
            known = ", ".join(sorted(self.by_name)) or "none"
            return (f"There is no function named {name!r}; the functions you can call are: "
                    f"{known}."), True
        if getattr(fn, CONFIRM, False):
            allowed, why = ask_user(name, step.get("arguments"))
            if not allowed:
                return (f"{why}: {name} was not run. Go on without its result, and do not "
                        f"call it again unless the user asks."), True
        return call_function(fn, step.get("arguments"), timeout=self.timeout)

    def answer(self, calls: list[dict], acc: Any, observers: Iterable[Any] = ()) -> list[dict]:
        """Run each call, add its function_result step to `acc` (observers see it at once)."""
        observers = list(observers)
        results = []
        for step in calls:
            result, is_error = self.call(step)
            out = function_result_step(step, result, is_error)
            acc.add_step(out)
            for o in observers:
                o.on_update(acc)
            results.append(out)
        return results

    def next_body(self, body: dict, acc: Any, results: list[dict], prefix: list) -> dict:
        """The next round's create() arguments. `prefix` is what preceded this turn's model
        steps in a stateless request: the earlier history and this turn's user_input step."""
        nxt = dict(body)
        if self.stateless:
            nxt["input"] = list(prefix) + acc.step_list()
            nxt.pop("previous_interaction_id", None)
        else:
            nxt["input"] = list(results)
            nxt["previous_interaction_id"] = acc.id
        nxt.pop("continuation_token", None)
        return nxt


def confirming(fn: Callable) -> Callable:
    """`fn`, to be confirmed by the user before each call (--confirm); declared as `fn` is."""
    @functools.wraps(fn)
    def confirmed(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    setattr(confirmed, CONFIRM, True)
    return confirmed


def ask_user(name: str, arguments: Any) -> tuple[bool, str]:
    """Ask Allow / Deny for one call on stdin: (allowed, why not). A prompt on stdin, not
    buttons: while a cell runs the kernel handles no widget messages, but it does answer
    `input()` (the frontend shows a text box). No way to ask (a frontend without stdin) is
    a Deny."""
    shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}"
                      for k, v in (arguments or {}).items()) if isinstance(arguments, dict) \
        else json.dumps(arguments)
    try:
        answer = input(f"Allow the call {name}({shown})? Type y to allow, anything else to "
                       f"deny: ")
    except KeyboardInterrupt:
        raise
    except Exception:  # noqa: BLE001 - EOFError, or ipykernel's StdinNotImplementedError
        return False, "The call could not be confirmed (this frontend takes no input)"
    if answer.strip().lower() in _YES:
        return True, ""
    return False, "The user declined this call"
