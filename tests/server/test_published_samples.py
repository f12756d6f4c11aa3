"""Google's published Interactions API Python samples, run unchanged against the local server.

The samples are copied as published into tests/data/published/samples/ (sources in
tests/data/published/SOURCES.md) and run in a child process with only GOOGLE_GEMINI_BASE_URL
and a dummy key set, as a user would run them; the echo engine answers. Most read only
`step.delta` events, so they print an answer's first word only when the server streams it in a
delta, as Google's published streams do (the default); the "start" shape, which puts it in the
step.start, shows what they would lose.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, sdk_env

from gemini_magics.server.turns import STREAM_SHAPE_ENV

SAMPLES = ROOT / "tests" / "data" / "published" / "samples"
ECHO_COUNT = "Echo: I saw 1 user turn and 0 model turns. You said: Count from 1 to 25."


def run_sample(name: str, base_url: str) -> str:
    proc = subprocess.run([sys.executable, str(SAMPLES / name)], env=sdk_env(base_url),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_streaming_sample_prints_the_first_word(base_url):
    assert run_sample("streaming_text.py", base_url) == ECHO_COUNT


def test_with_the_first_word_in_step_start_the_sample_would_lose_it(base_url, monkeypatch):
    monkeypatch.setenv(STREAM_SHAPE_ENV, "start")
    assert run_sample("streaming_text.py", base_url) == ECHO_COUNT[len("Echo: "):]


def test_the_streaming_function_calling_sample_answers_after_the_result(base_url):
    out = run_sample("streaming_function_calling.py", base_url)
    assert out.startswith("Echo: I saw 2 user turns and 1 model turn. You said: "
                          "[function result get_weather: ")
    assert "Sunny and 22" in out


def test_the_multiple_tools_sample_stops_for_the_function_call(base_url):
    out = run_sample("streaming_multiple_tools.py", base_url)
    assert "--- Step 0: function_call ---\n  Function: get_weather({})\n  Args chunk: " in out
    assert out.endswith("Status: requires_action\nAction required: provide function call "
                        "results to continue.\n")


def test_the_thinking_sample_prints_the_whole_answer(base_url):
    out = run_sample("thinking_stream.py", base_url)
    assert out.startswith("\nAnswer:\nEcho: I saw 1 user turn and 0 model turns. You said: \n"
                          "Alice, Bob, and Carol")


@pytest.mark.parametrize("shape", ["delta", "start"])
def test_the_streaming_agent_sample_prints_its_thoughts_and_answer(base_url, monkeypatch, shape):
    monkeypatch.setenv(STREAM_SHAPE_ENV, shape)
    out = run_sample("streaming_agent.py", base_url)
    assert out.startswith("\n--- Step: thought ---\n")
    # the offline-emulation thought is a summary: read from thought_summary deltas only
    note = "[offline] The agent deep-research-preview-04-2026 is emulated by the local server"
    assert (note in out) == (shape == "delta")
    first = "Echo: " if shape == "delta" else ""  # the start shape loses the first word
    assert f"--- Step: model_output ---\n{first}I saw 1 user turn" in out
    assert "\n\nTotal Tokens: " in out
