"""`gemini-magics serve --engine openai`: the Interactions API in front of a real llama.cpp server.

The engine server is xllamacpp's own OpenAI-compatible HTTP server (llama.cpp), started as its
own process with the SmolLM2 weights and an API key; our server is `gemini-magics serve`, another
process. Everything goes through the real google-genai SDK. Only plumbing is asserted (what
constrained decoding, token limits and usage guarantee), never what the 135M model says.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import httpx
import jsonschema
import pytest
from conftest import ROOT, make_client

from gemini_magics.server.engines.openai import chat_url

ENGINE_KEY = "engine-test-key-5b1f"
LLAMA_SERVER = textwrap.dedent("""
    import sys, xllamacpp
    from gemini_magics.server.engines.local import common_params, find_model
    p = common_params(find_model(), 1)
    p.port, p.api_keys = int(sys.argv[1]), [sys.argv[2]]
    server = xllamacpp.Server(p)
    print("ready", flush=True)
    sys.stdin.read()  # serve until the test closes our stdin
""")
WEATHER = {
    "type": "function", "name": "get_current_temperature",
    "description": "Gets the current temperature for a given location.",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                   "required": ["location"]},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server process exited while starting"
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                                  "")]))


@pytest.fixture(scope="module")
def llama_server():
    pytest.importorskip("xllamacpp")
    from gemini_magics.server.engines.local import ModelNotFoundError, find_model
    try:
        find_model()
    except ModelNotFoundError as e:
        pytest.skip(str(e))
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", LLAMA_SERVER, str(port), ENGINE_KEY],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_env(), text=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stdin.close()
        proc.terminate()
        proc.wait(30)


def _serve(engine_url: str, *extra: str, key_env: str = "TEST_ENGINE_KEY", key: str = ENGINE_KEY):
    port = _free_port()
    env = dict(_env(), **{key_env: key})
    proc = subprocess.Popen([sys.executable, "-m", "gemini_magics", "serve", "--engine", "openai",
                             "--engine-url", engine_url, "--engine-key-env", key_env,
                             "--port", str(port), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    _wait_http(f"http://127.0.0.1:{port}/v1beta/interactions/none", proc, 60)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def ours(llama_server):
    proc, url = _serve(llama_server)
    yield url
    proc.terminate()
    proc.wait(15)


@pytest.mark.slow
def test_a_stream_comes_through_with_the_engines_token_limit_and_usage(ours):
    client = make_client(ours)
    events = list(client.interactions.create(
        model="gemini-3.5-flash", input="Tell me a story about a lighthouse.", stream=True,
        generation_config={"max_output_tokens": 12, "seed": 7, "temperature": 0}))
    deltas = [e for e in events if e.event_type == "step.delta" and e.delta.type == "text"]
    assert len(deltas) >= 3, "the answer did not stream in pieces"
    done = events[-1]
    assert done.event_type == "interaction.completed"
    assert done.interaction.status == "incomplete"  # stopped at the 12-token limit
    assert done.interaction.usage.total_output_tokens == 12
    assert done.interaction.usage.total_input_tokens > 5


@pytest.mark.slow
def test_a_chain_sends_the_history_to_the_engine(ours):
    client = make_client(ours)
    cfg = {"max_output_tokens": 8, "temperature": 0}
    first = client.interactions.create(model="m", input="My name is Ada.", generation_config=cfg)
    second = client.interactions.create(model="m", input="What is my name?",
                                        previous_interaction_id=first.id, generation_config=cfg)
    alone = client.interactions.create(model="m", input="What is my name?", generation_config=cfg)
    assert second.status in ("completed", "incomplete")
    # the engine saw turn one (its input and its answer) before turn two
    assert (second.usage.total_input_tokens
            >= alone.usage.total_input_tokens + first.usage.total_output_tokens)


@pytest.mark.slow
def test_schema_and_function_calls_are_constrained_through_the_engine(ours):
    client = make_client(ours)
    schema = {"type": "object", "properties": {"city": {"type": "string"},
                                               "days": {"type": "integer"}},
              "required": ["city", "days"]}
    i = client.interactions.create(
        model="m", input="Plan a short trip.", generation_config={"temperature": 0,
                                                                 "max_output_tokens": 200},
        response_format={"type": "text", "mime_type": "application/json", "schema": schema})
    jsonschema.validate(json.loads(i.output_text), schema)

    call = client.interactions.create(model="m", input="What is the temperature in London?",
                                      tools=[WEATHER], generation_config={"tool_choice": "any",
                                                                          "temperature": 0})
    assert call.status == "requires_action"
    (step,) = [s for s in call.steps if s.type == "function_call"]
    assert step.name == "get_current_temperature"
    jsonschema.validate(step.arguments, WEATHER["parameters"])
    answer = client.interactions.create(
        model="m", previous_interaction_id=call.id, tools=[WEATHER],
        input=[{"type": "function_result", "call_id": step.id, "name": step.name,
                "result": {"temperature_c": 22}}],
        generation_config={"tool_choice": "none", "max_output_tokens": 30})
    assert answer.status in ("completed", "incomplete") and answer.output_text


@pytest.mark.slow
def test_a_wrong_engine_key_and_a_dead_engine_are_one_sentence(llama_server):
    proc, url = _serve(llama_server, key="not-the-key")
    try:
        r = httpx.post(url + "/v1beta/interactions", json={"model": "m", "input": "hi"},
                       timeout=60)
        print(r.status_code, r.text)
        assert r.status_code < 500 and "rejected the request" in r.text
    finally:
        proc.terminate()
        proc.wait(15)
    dead = f"http://127.0.0.1:{_free_port()}"
    proc, url = _serve(dead)
    try:
        r = httpx.post(url + "/v1beta/interactions", json={"model": "m", "input": "hi"},
                       timeout=60)
        print(r.status_code, r.text)
        assert r.status_code < 500 and "could not be reached" in r.text
    finally:
        proc.terminate()
        proc.wait(15)


def test_engine_urls_take_any_common_form():
    for given in ("http://h:8080", "http://h:8080/", "http://h:8080/v1",
                  "http://h:8080/v1/chat/completions"):
        assert chat_url(given) == "http://h:8080/v1/chat/completions"


@pytest.mark.parametrize("args, words", [
    (["--engine", "openai"], "--engine-url http://HOST:PORT"),
    (["--engine", "openai", "--engine-url", "localhost:8080"], "must be an http(s) URL"),
    (["--engine", "openai", "--engine-url", "http://h:1", "--engine-key-env", "NOPE_UNSET_VAR"],
     "NOPE_UNSET_VAR, which is not set"),
    (["--engine", "echo", "--engine-url", "http://h:1"], "go with --engine openai"),
    (["--engine", "echo", "--parallel", "2"], "--parallel is for the local"),
    (["--parallel", "0"], "from 1 to 64"),
])
def test_serve_refuses_a_bad_engine_setup_in_one_sentence(args, words):
    env = {k: v for k, v in _env().items() if k != "NOPE_UNSET_VAR"}
    proc = subprocess.run([sys.executable, "-m", "gemini_magics", "serve", "--port", "0", *args],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_parallel_slots_answer_concurrent_streams_with_their_own_context():
    from gemini_magics.server import start_server
    from gemini_magics.server.engines import make_engine
    engine = make_engine("local", parallel=2)
    with start_server(engine=engine) as srv:
        llama = engine.load()
        client = make_client(srv.base_url)
        import concurrent.futures as cf
        with cf.ThreadPoolExecutor(2) as pool:
            done = list(pool.map(lambda p: client.interactions.create(
                model="m", input=p, generation_config={"max_output_tokens": 8}),
                ["Tell me about the sea.", "Tell me about the moon."]))
        assert all(i.usage.total_output_tokens == 8 for i in done)
        # llama.cpp itself reports the slots (its side listener, locked with the engine's key)
        props = httpx.get(f"{llama.listening_address}/props", timeout=10,
                          headers={"Authorization": f"Bearer {_engine_key(engine)}"}).json()
        assert props["total_slots"] == 2
    engine.close()


def _engine_key(engine) -> str:
    from gemini_magics.server.engines import local
    return local._MODELS[(engine.model_path, engine.n_parallel)].key
