"""`gemini-magics serve` / `python -m gemini_magics serve` as a user runs it in a terminal."""
from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, make_client, sdk_env

STARTUP_S = 60


class Served:
    """A `serve` child process; `url` is the first line it prints."""

    def __init__(self, *args, command=None):
        cmd = command or [sys.executable, "-m", "gemini_magics"]
        self.proc = subprocess.Popen([*cmd, "serve", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                     env=sdk_env("http://unused"))
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            self.url = lines.get(timeout=STARTUP_S).strip()
        except queue.Empty:
            self.proc.kill()
            raise AssertionError("serve printed no URL")

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


def _fails(*args):
    proc = subprocess.run([sys.executable, "-m", "gemini_magics", "serve", *args], cwd=ROOT,
                          env=sdk_env("http://unused"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("gemini-magics: error: ")
    assert len(proc.stderr.strip().splitlines()) == 1
    return proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_url_serves_and_stops_cleanly(sig):
    s = Served("--engine", "echo", "--port", "0")
    try:
        assert s.url.startswith("http://127.0.0.1:")
        c = make_client(s.url)
        assert c.interactions.create(model="m", input="cli").output_text.endswith("said: cli")
        code, out, err = s.stop(sig)
        assert code == 0, err
        assert "stopped" in err and "Traceback" not in err
    finally:
        s.kill()


def test_db_file_keeps_chains_across_restarts(tmp_path):
    db = str(tmp_path / "chats.sqlite")
    s = Served("--engine", "echo", "--port", "0", "--db", db)
    try:
        c = make_client(s.url)  # keep a reference: the SDK closes a dropped client
        first = c.interactions.create(model="m", input="remember the dogs")
        assert s.stop()[0] == 0
    finally:
        s.kill()
    s = Served("--engine", "echo", "--port", "0", "--db", db)
    try:
        c = make_client(s.url)
        again = c.interactions.get(first.id)
        assert again.output_text == first.output_text
        nxt = c.interactions.create(model="m", input="and now?", previous_interaction_id=first.id)
        assert nxt.output_text.startswith("Echo: I saw 2 user turns and 1 model turn.")
    finally:
        s.stop()
        s.kill()


def test_api_key_is_enforced_and_never_printed():
    key = "cli-secret-987"
    s = Served("--engine", "echo", "--port", "0", "--api-key", key)
    try:
        r = httpx.post(s.url + "/v1/interactions", json={"model": "m", "input": "x"}, timeout=10)
        assert r.status_code == 401
        r = httpx.post(s.url + "/v1/interactions", json={"model": "m", "input": "x"},
                       headers={"x-goog-api-key": key}, timeout=10)
        assert r.status_code == 200
        code, out, err = s.stop()
        assert key not in out and key not in err
    finally:
        s.kill()


def test_bad_options_say_what_to_fix(tmp_path):
    assert "--api-key" in _fails("--engine", "echo", "--host", "0.0.0.0")
    assert "--model-path" in _fails("--model-path", str(tmp_path / "missing.gguf"))
    assert "--port" in _fails("--engine", "echo", "--port", "70000")
    s = Served("--engine", "echo", "--port", "0")
    try:
        port = s.url.rsplit(":", 1)[1]
        assert "already in use" in _fails("--engine", "echo", "--port", port)
    finally:
        s.stop()
        s.kill()
    proc = subprocess.run([sys.executable, "-m", "gemini_magics", "serve", "--engine", "gpt"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_console_script():
    exe = shutil.which("gemini-magics", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the package is not installed (pip install -e .)")
    s = Served("--engine", "echo", "--port", "0", command=[exe])
    try:
        assert s.url.startswith("http://127.0.0.1:")
        assert s.stop()[0] == 0
    finally:
        s.kill()
