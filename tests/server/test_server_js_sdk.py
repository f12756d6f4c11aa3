"""Both JS SDK lines (@google/genai 2.32 in tests/js, the newest 3.x in tests/js3, from npm)
can create, stream and get against the server: 2.x calls /v1beta, 3.x /v1."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import sdk_env

TESTS = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("folder, version", [("js", "v1beta"), ("js3", "v1")])
def test_js_sdk_create_stream_get(base_url, folder, version):
    node = shutil.which("node")
    where = TESTS / folder
    if node is None or not (where / "node_modules" / "@google" / "genai").is_dir():
        pytest.skip(f"node or tests/{folder}/node_modules missing (run `npm ci` in tests/{folder})")
    proc = subprocess.run([node, "sdk_check.mjs"], cwd=where, env=sdk_env(base_url),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    assert out["paths"] == [f"GET /{version}/interactions/ID", f"POST /{version}/interactions"]
    assert out["create"]["status"] == "completed"
    assert out["create"]["output_text"] == \
        "Echo: I saw 1 user turn and 0 model turns. You said: Explain how AI works in a few words"
    # the real API also lists the user_input step; the answer's steps follow it
    assert [s for s in out["create"]["steps"] if s != "user_input"] == ["thought", "model_output"]
    assert out["create"]["model"] == "gemini-3.5-flash"

    types = out["stream"]["types"]
    assert types[:2] == ["interaction.created", "interaction.status_update"]
    assert types[-1] == "interaction.completed" and out["stream"]["final_status"] == "completed"
    assert {"step.start", "step.delta", "step.stop"} <= set(types)
    assert all(out["stream"]["ids"])
    assert out["stream"]["text"].endswith("You said: Explain how AI works")

    assert out["get"] == {"id": out["create"]["id"], "status": "completed",
                          "output_text": out["create"]["output_text"]}
    assert out["stateful"]["previous"] == out["create"]["id"]
    assert out["stateful"]["output_text"].startswith("Echo: I saw 2 user turns and 1 model turn.")
    assert out["not_found"]["status"] == 404
