"""`%%gemini --functions`: the magic runs the quickstart's function-calling loop itself.

Through the real SDK: against the local echo server (which calls the first declared function,
with the prompt as its string arguments, and answers once it gets the result) for the loop in
stateful and stateless mode, streaming and not; against a scripted loopback server for a model
that never stops calling or calls a function that does not exist; one slow test with the real
local model.
"""
import json

import pytest

from conftest import make_client
from magics_fixtures import magics_of, run_cell, scripted, shell  # noqa: F401

FUNCTIONS = '''
calls = []

def get_weather(city: str) -> dict:
    """Current weather for a city."""
    calls.append(city)
    return {"city": city, "temp": 21, "unit": "celsius"}

def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError("the sensor is broken")

def slow(seconds: int) -> str:
    """Never finishes in time."""
    import time
    while True:
        time.sleep(0.01)
'''


def ok(cap):
    assert cap.error is None, (cap.stdout, cap.stderr)
    return cap


@pytest.fixture()
def fns(shell):
    ok(run_cell(shell, FUNCTIONS))
    yield shell.user_ns
    for name in ("calls", "get_weather", "explode", "slow"):
        shell.user_ns.pop(name, None)


def markdowns(cap):
    return [d.get("text/markdown", "") for d in cap.final]


@pytest.mark.parametrize("options", ["", "--no-stream", "--stateless", "--stateless --no-stream"])
def test_the_loop_calls_the_function_sends_the_result_and_shows_each_step(shell, fns, options):
    cap = ok(run_cell(shell, f"%%gemini --functions get_weather {options} -o r\nParis"))
    shown = markdowns(cap)
    assert shown[0] == '**Call** `get_weather(city="Paris")`'
    assert shown[1].startswith("→ `get_weather` **returned**\n\n```json\n")
    assert json.loads(shown[1].split("```json\n")[1].split("\n```")[0]) == {
        "city": "Paris", "temp": 21, "unit": "celsius"}
    assert shown[2] == ('Echo: I saw 2 user turns and 1 model turn. You said: [function result '
                        'get_weather: {"city": "Paris", "temp": 21, "unit": "celsius"}]')
    assert fns["calls"] == ["Paris"]
    r = shell.user_ns["r"]
    assert r.ok and r.status == "completed" and r.text == shown[2]
    assert [s["type"] for s in r.steps] == ["function_call", "function_result", "model_output"]
    assert r.function_calls[0]["arguments"] == {"city": "Paris"}
    assert r.function_results[0]["call_id"] == r.function_calls[0]["id"]
    if "--stateless" not in options:  # the server chained the two rounds
        api = make_client(magics_of(shell).base_url)
        second = api.interactions.get(r.id, include_input=True)
        first = api.interactions.get(second.previous_interaction_id)
        assert first.status == "requires_action" and first.steps[-1].type == "function_call"
        assert second.steps[0].type == "function_result"


@pytest.mark.parametrize("stateless", ["", "--stateless"])
def test_the_next_cell_continues_after_the_whole_exchange(shell, fns, stateless):
    ok(run_cell(shell, f"%%gemini --functions get_weather {stateless}\nParis"))
    cap = ok(run_cell(shell, f"%%gemini {stateless}\nAnd tomorrow?"))
    # user: prompt, function result, new prompt; model: call, answer (tool steps as text)
    assert "Echo: I saw 3 user turns and 2 model turns. You said: And tomorrow?" in cap.markdown
    history = run_cell(shell, "%gemini history").stdout
    assert "'Paris'" in history and "'And tomorrow?'" in history


def test_an_exception_goes_back_to_the_model_as_an_error_result_and_is_shown(shell, fns):
    cap = ok(run_cell(shell, "%%gemini --functions explode,get_weather -o r\nWhy?"))
    shown = markdowns(cap)
    assert shown[0] == '**Call** `explode(reason="Why?")`'
    assert shown[1].startswith("⚠ `explode` **failed**")
    assert "explode raised RuntimeError: the sensor is broken" in shown[1]
    assert "the sensor is broken" in shown[2]  # the model got the error and answered
    r = shell.user_ns["r"]
    assert r.ok and r.function_results[0]["is_error"] is True


def test_a_hanging_function_is_stopped_and_reported(shell, fns):
    magics_of(shell).function_timeout = 0.5
    cap = ok(run_cell(shell, "%%gemini --functions slow -o r\nWait"))
    assert "slow did not finish within 0.5 seconds and was stopped" in markdowns(cap)[1]
    assert shell.user_ns["r"].function_results[0]["is_error"] is True


def test_no_auto_stops_at_the_first_call_without_running_it(shell, fns):
    cap = ok(run_cell(shell, "%%gemini --functions get_weather --no-auto -o r\nParis"))
    shown = markdowns(cap)
    assert shown[0] == '**Call** `get_weather(city="Paris")`'
    assert "Stopped at the model's function call (--no-auto)" in shown[1]
    assert fns["calls"] == []
    r = shell.user_ns["r"]
    assert r.status == "requires_action" and r.function_calls and not r.function_results
    assert "No conversation yet" in run_cell(shell, "%gemini history").stdout


def _call_forever(name="get_weather"):
    return {"json": {"id": "v1_loop", "object": "interaction", "status": "requires_action",
                     "model": "m", "created": "2026-01-01T00:00:00Z",
                     "updated": "2026-01-01T00:00:00Z",
                     "steps": [{"type": "function_call", "id": "call_1", "name": name,
                                "arguments": {"city": "Oslo"}}]}}


def test_a_loop_that_will_not_end_stops_at_the_cap_with_one_sentence(shell, fns, scripted):
    magics_of(shell).base_url = scripted.base_url
    scripted.script = [_call_forever()]
    cap = run_cell(shell, "%%gemini --functions get_weather --max-rounds 3 --no-stream\nOslo")
    assert cap.error.__class__.__name__ == "GeminiError"
    assert str(cap.error).startswith("The model was still calling functions after 3 rounds")
    creates = [q for q in scripted.requests if q["path"].endswith("/interactions")]
    assert len(creates) == 3 and fns["calls"] == ["Oslo", "Oslo"]
    second = creates[1]["body"]
    assert second["previous_interaction_id"] == "v1_loop"
    assert second["input"][0]["type"] == "function_result"
    r = shell.user_ns["_gemini"]
    assert not r.ok and len(r.function_results) == 2  # nothing lost
    assert "No conversation yet" in run_cell(shell, "%gemini history").stdout


def test_a_call_to_an_unknown_function_is_answered_with_an_error(shell, fns, scripted):
    magics_of(shell).base_url = scripted.base_url
    done = {"json": {"id": "v1_done", "object": "interaction", "status": "completed",
                     "model": "m", "created": "2026-01-01T00:00:00Z",
                     "updated": "2026-01-01T00:00:00Z",
                     "steps": [{"type": "model_output", "content": [{"type": "text", "text": "ok"}]}]}}
    scripted.script = [_call_forever("get_wether"), done]
    ok(run_cell(shell, "%%gemini --functions get_weather --no-stream\nOslo"))
    sent = scripted.requests[-1]["body"]["input"][0]
    assert sent["is_error"] is True
    assert "There is no function named 'get_wether'" in sent["result"][0]["text"]
    assert fns["calls"] == []


@pytest.mark.parametrize("cell, words", [
    ("x = 5", "--functions: 'x' is a int, not a function"),
    ("", "--functions: 'missing' is not defined in the notebook"),
    ("import socket\ndef needs_socket(s: socket.socket) -> None:\n    'x'",
     "Cannot describe parameter 's' of needs_socket to the model"),
])
def test_bad_function_names_are_one_sentence_and_nothing_is_sent(shell, scripted, cell, words):
    magics_of(shell).base_url = scripted.base_url
    ok(run_cell(shell, cell))
    name = {"x = 5": "x", "": "missing"}.get(cell, "needs_socket")
    cap = run_cell(shell, f"%%gemini --functions {name}\nhello")
    assert cap.error.__class__.__name__ == "GeminiError" and words in str(cap.error)
    assert scripted.requests == []
    for var in ("x", "needs_socket"):
        shell.user_ns.pop(var, None)


def test_lambdas_and_pydantic_parameters_are_declared_and_called(shell):
    ok(run_cell(shell, "from pydantic import BaseModel\n"
                       "class Order(BaseModel):\n    item: str\n    qty: int = 1\n"
                       "def place(order: Order) -> str:\n"
                       "    'Place an order.'\n    return f'{order.qty} x {order.item}'\n"
                       "shout = lambda text: text.upper()"))
    cap = ok(run_cell(shell, "%%gemini --functions place -o r\nbananas"))
    assert '"0 x bananas"' in markdowns(cap)[1]  # echo fills integers with 0
    cap = ok(run_cell(shell, "%%gemini --functions shout -o r\nhello"))
    assert markdowns(cap)[0] == '**Call** `shout(text="hello")`'
    assert '"HELLO"' in markdowns(cap)[1]
    for var in ("Order", "place", "shout", "BaseModel"):
        shell.user_ns.pop(var, None)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_loop_with_the_local_model(shell, fns, local_server):
    magics_of(shell).base_url = local_server.base_url
    cap = ok(run_cell(shell, "%%gemini --functions get_weather --max-tokens 60 --temperature 0 -o r\n"
                             "What is the weather in Paris?"))
    r = shell.user_ns["r"]
    assert r.function_calls, cap.markdown  # the first round always calls (arguments validate)
    assert isinstance(r.function_calls[0]["arguments"]["city"], str)
    assert len(fns["calls"]) == len(r.function_calls)
    assert r.status == "completed"
