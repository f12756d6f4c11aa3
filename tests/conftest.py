"""Shared fixtures: a local Interactions server (echo engine, once per session) and SDK clients.

Every test talks to a real server over a real loopback socket through the real google-genai
SDK (or raw httpx for wire-level checks); nothing is mocked. The local-engine fixtures skip
cleanly when the model or xllamacpp is not installed.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests that use the default offline backend get the embedded server, one per process as they
# always had: a shared per-user server would outlive the test run and carry state between runs.
# tests/test_shared_server.py opts in, with its own runtime and data dirs.
os.environ.setdefault("GEMINI_MAGICS_SERVER", "inprocess")

# Variables that would make the SDK or a child process talk to something else than our server.
_SDK_ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI",
            "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "GOOGLE_GENAI_API_VERSION")


def make_client(base_url: str, **http_options):
    """A real google-genai Client on `base_url`. Keep it in a variable: the SDK closes its HTTP
    client when the Client object is garbage-collected, even mid-expression."""
    from google import genai

    return genai.Client(api_key="dummy", http_options={"base_url": base_url, **http_options})


def sdk_env(base_url: str) -> dict:
    """Environment for a child process: only GOOGLE_GEMINI_BASE_URL and a dummy key set."""
    env = {k: v for k, v in os.environ.items() if k not in _SDK_ENV}
    env["GOOGLE_GEMINI_BASE_URL"] = base_url
    env["GEMINI_API_KEY"] = "dummy"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


SEED_EXAMPLES = ROOT / "tests" / "server" / "seed_examples"


def run_seed(name: str, base_url: str, cwd=None, timeout: float = 120) -> str:
    """Run one of the quickstart's Python examples unchanged in a child process; return stdout."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, str(SEED_EXAMPLES / name)], env=sdk_env(base_url), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="session")
def echo_server():
    from gemini_magics.server import start_server

    srv = start_server(engine="echo")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def base_url(echo_server) -> str:
    return echo_server.base_url


@pytest.fixture(scope="session")
def client(base_url):
    """A google-genai Client pointed at the echo server."""
    return make_client(base_url)


@pytest.fixture()
def http(base_url):
    """Raw httpx client on the echo server, for wire-level checks."""
    import httpx

    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c


def _local_engine_or_skip():
    try:
        from gemini_magics.server.engines.local import LocalEngine, find_model
    except ImportError as e:
        pytest.skip(f"local engine not importable: {e}")
    try:
        find_model()
    except (OSError, ValueError) as e:
        pytest.skip(f"no local model: {e}")
    return LocalEngine


@pytest.fixture(scope="session")
def local_server():
    """A server backed by the real local LLM (slow tests only)."""
    _local_engine_or_skip()
    from gemini_magics.server import start_server

    srv = start_server(engine="local")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def local_client(local_server):
    return make_client(local_server.base_url)
