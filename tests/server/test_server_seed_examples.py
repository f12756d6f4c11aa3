"""The quickstart's own Python code runs unchanged against the local server."""
from __future__ import annotations


import pytest
from conftest import run_seed

from gemini_magics.server.turns import STREAM_SHAPE_ENV


def test_text(base_url):
    out = run_seed("text.py", base_url)
    assert out.strip().endswith("You said: Explain how AI works in a few words")


@pytest.mark.parametrize("shape", ["delta", "start"])
def test_streaming(base_url, shape, monkeypatch):
    monkeypatch.setenv(STREAM_SHAPE_ENV, shape)
    out = run_seed("streaming.py", base_url)
    kinds = [line.rsplit("event_type=", 1)[-1].split()[0] for line in out.splitlines()]
    assert kinds[:3] == ["'interaction.created'", "'interaction.status_update'", "'step.start'"]
    assert kinds[-1] == "'interaction.completed'"
    if shape == "start":
        # the signature in the thought's step.start, the first text in the model_output's
        # step.start, the rest as text deltas
        assert "ThoughtStep(signature='" in out and "TextDelta(text=" in out
        assert "ModelOutputStep(content=[TextContent(text=" in out
    else:
        # as Google's published streams: bare starts, the signature and every word in deltas
        assert "ThoughtStep(signature=None" in out and "ThoughtSignatureDelta(signature='" in out
        assert "ModelOutputStep(content=None" in out and "TextDelta(text='Echo: '" in out
    assert "UNKNOWN" not in out and "'error'" not in out


def test_stateful(base_url):
    out = run_seed("stateful.py", base_url)
    assert "Response 2: Echo: I saw 2 user turns and 1 model turn." in out


def test_stateless(base_url):
    out = run_seed("stateless.py", base_url)
    assert "Response 2: Echo: I saw 2 user turns and 1 model turn." in out


def test_background(base_url):
    out = run_seed("background.py", base_url)
    assert "Started background task: v1_" in out
    assert "Status: in_progress" in out
    assert "Result:\nEcho: I saw 1 user turn" in out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_text_with_the_local_engine(local_server):
    # No max_output_tokens in the seed: the small model may write up to the engine's default
    # cap, which takes minutes on a busy 2-core machine; one example is enough here.
    out = run_seed("text.py", local_server.base_url, timeout=800)
    assert out.strip()
