"""Routes the SDKs have and the local server does not serve answer 501 UNIMPLEMENTED, in
Google's error shape, with a sentence naming what is not supported (not a 404, 405 or 403)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import make_client, sdk_env
from google.genai import errors

JS = Path(__file__).resolve().parents[1] / "js"
WS_HEADERS = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def _unimplemented(r, what: str) -> str:
    assert r.status_code == 501, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body["error"]) == {"code", "message", "status"}
    assert body["error"]["code"] == 501 and body["error"]["status"] == "UNIMPLEMENTED"
    message = body["error"]["message"]
    assert what in message and "is not supported by the local gemini-magics server" in message
    return message


def test_python_sdk_auth_tokens_and_generate_content_get_501(base_url):
    client = make_client(base_url, api_version="v1alpha")
    with pytest.warns(Warning):  # the SDK marks token creation experimental
        with pytest.raises(errors.ServerError) as exc:
            client.auth_tokens.create(config={"uses": 1})
    assert exc.value.code == 501 and exc.value.status == "UNIMPLEMENTED"
    assert "ephemeral auth tokens" in exc.value.message
    with pytest.raises(errors.ServerError) as exc:
        client.models.generate_content(model="gemini-3.5-flash", contents="hi")
    assert exc.value.code == 501 and "client.interactions" in exc.value.message


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_interaction_auth_tokens_and_live_paths_get_501(http, client, method):
    iid = client.interactions.create(model="m", input="x").id
    _unimplemented(http.request(method, f"/v1beta/interactions/{iid}/auth_tokens"),
                   "auth tokens for an interaction")
    _unimplemented(http.request(method, "/v1/interactions/live"), "The Live API")
    # the Live WebSocket handshake (the upgrade is refused; the answer is the 501)
    path = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    _unimplemented(http.get(path, params={"key": "k"}, headers=WS_HEADERS), "The Live API")
    base = str(http.base_url).rstrip("/")
    _unimplemented(http.get(base + "/" + path), "The Live API")  # JS's base URL ends in "/"


def test_501s_leave_the_served_routes_alone(http, client):
    i = client.interactions.create(model="m", input="still served")
    assert http.get(f"/v1beta/interactions/{i.id}").status_code == 200
    assert http.get("/v1beta/interactions/v1_nope").status_code == 404
    assert http.get("/v1beta/batches").status_code != 501  # batches are served, not refused
    _unimplemented(http.get("/v1beta/files"), "The Files API")
    _unimplemented(http.post("/upload/v1beta/files", content=b"x"), "The Files API")


def test_js_sdk_auth_tokens_and_live_get_501(base_url):
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@google" / "genai").is_dir():
        pytest.skip("node or tests/js/node_modules missing (run `npm install` in tests/js)")
    script = """
import { GoogleGenAI } from "@google/genai";
const ai = new GoogleGenAI({httpOptions: {apiVersion: "v1alpha"}});
const out = {};
try { await ai.authTokens.create({config: {uses: 1}}); out.auth = "no error"; }
catch (e) { out.auth = {status: e.status, message: String(e.message)}; }
await new Promise((resolve) => {
  ai.live.connect({model: "gemini-live", callbacks: {
    onerror: (e) => { out.live = String(e.message || e); resolve(); }, onclose: () => resolve()}})
    .catch((e) => { out.live = String(e.message || e); resolve(); });
  setTimeout(resolve, 10000);
});
console.log(JSON.stringify(out));
"""
    proc = subprocess.run([node, "--input-type=module", "-e", script], cwd=JS,
                          env=sdk_env(base_url), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["auth"]["status"] == 501 and "UNIMPLEMENTED" in out["auth"]["message"]
    assert out["live"] == "Unexpected server response: 501"
