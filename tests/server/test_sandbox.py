"""Code execution is really sandboxed, refused without a sandbox, and the embedded server is
locked with a key only its process holds.

Code goes to a real server over a real socket through the real google-genai SDK, as a fenced
Python block with the code_execution tool (the emulator runs a prompt's own fenced code), and
the tests read the code_execution_result step the SDK parsed. Nothing is mocked: "no bwrap" is
a missing binary named by GEMINI_MAGICS_BWRAP.
"""
from __future__ import annotations

import os
import secrets
import socket
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from conftest import make_client
from google import genai
from google.genai import _interactions as errors
from test_server_cli import Served

from gemini_magics import client as gm_client
from gemini_magics.server import default_server, start_server
from gemini_magics.server.sandbox import (BWRAP_ENV, BWRAP_REFUSED, NO_BWRAP,
                                          run_python_offline, sandbox_refusal)

CODE = [{"type": "code_execution"}]


def keyed_client(port: int, key: str):
    """A real SDK client sending `key` (keep it in a variable, see conftest.make_client)."""
    return genai.Client(api_key=key, http_options={"base_url": f"http://127.0.0.1:{port}"})


def run(client, code: str):
    """Send `code` as fenced Python with the code_execution tool: (output, is_error)."""
    i = client.interactions.create(model="m", tools=CODE,
                                   input=f"```python\n{textwrap.dedent(code)}\n```")
    result = next(s for s in i.steps if s.type == "code_execution_result")
    return result.result, bool(result.is_error)


@pytest.fixture()
def canaries(tmp_path):
    """Secret files where the server's user can read them: under tmp_path, /root and /etc."""
    secret, tag = "canary-" + secrets.token_hex(8), secrets.token_hex(4)  # content, names
    paths = [tmp_path / "canary.txt", Path.home() / f".gm-canary-{tag}",
             Path("/etc") / f"gm-canary-{tag}"]
    made = []
    for p in paths:
        try:
            p.write_text(secret)
            made.append(p)
        except OSError:
            pass
    assert made
    yield secret, made
    for p in made:
        p.unlink(missing_ok=True)


def test_sandbox_is_available_here():
    # .ci/setup installs bubblewrap; every test of running code below needs it.
    assert sandbox_refusal() is None


def test_code_cannot_read_host_files(client, canaries):
    secret, paths = canaries
    out, is_error = run(client, f"""
        import os
        for p in {[str(p) for p in paths]!r} + ["/etc/hostname", "/etc/passwd"]:
            try:
                print(open(p).read())
            except OSError as e:
                print(type(e).__name__, p)
        print(os.listdir("/"), os.listdir(os.path.expanduser("~")))
        """)
    assert not is_error, out
    assert secret not in out
    assert out.count("FileNotFoundError") == len(paths) + 2


def test_code_cannot_write_outside_its_directory(client, tmp_path):
    targets = [tmp_path / "written.txt", Path.home() / f".gm-written-{secrets.token_hex(4)}",
               Path("/tmp") / f"gm-written-{secrets.token_hex(4)}"]
    out, is_error = run(client, f"""
        for p in {[str(p) for p in targets]!r} + ["/usr/gm-written", "/written", "/dev/written"]:
            try:
                with open(p, "w") as f:
                    f.write("escaped")
                print("wrote", p)
            except OSError as e:
                print(type(e).__name__)
        with open("mine.txt", "w") as f:
            f.write("kept")
        print(open("mine.txt").read())
        """)
    assert not is_error, out
    assert out.rstrip().endswith("kept")  # its own working directory is writable
    assert out.count("Error\n") == 5 and f"wrote {targets[2]}" in out  # all but its own /tmp
    for p in targets:
        assert not p.exists(), out  # /tmp inside is a fresh tmpfs, not the host's
    assert not Path("/usr/gm-written").exists() and not Path("/written").exists()


def test_code_cannot_reach_the_network(client):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        out, is_error = run(client, f"""
            import socket, _socket
            for make in (lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM),
                         lambda: _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)):
                for where in (("127.0.0.1", {port}), ("1.1.1.1", 53)):
                    s = make()
                    s.settimeout(3)
                    try:
                        s.connect(where)
                        print("connected", where)
                    except OSError as e:
                        print("refused", type(e).__name__)
                    finally:
                        s.close()
            try:
                socket.getaddrinfo("example.com", 443)
                print("resolved")
            except OSError:
                print("no dns")
            """)
        with pytest.raises(socket.timeout):
            listener.accept()  # nothing from the sandbox ever arrived
    finally:
        listener.close()
    assert not is_error, out
    assert "connected" not in out and "resolved" not in out
    assert out.count("refused") == 4 and "no dns" in out


def test_code_sees_none_of_the_servers_environment(client, monkeypatch):
    monkeypatch.setenv("GM_TEST_SECRET_TOKEN", "sk-sandbox-" + "x" * 20)
    out, is_error = run(client, """
        import os
        print(sorted(os.environ))
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    print(open(f"/proc/{pid}/environ").read())
                except OSError:
                    pass
        """)
    assert not is_error, out
    assert "GM_TEST_SECRET_TOKEN" not in out and "sk-sandbox-" not in out
    assert "GEMINI" not in out and "GOOGLE" not in out


def test_code_has_no_privileges_and_its_processes_end_with_it():
    out, is_error = run_python_offline(
        "import os\n"
        "print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1])\n"
        "import subprocess\nsubprocess.Popen(['sleep', '300'])\nwhile True: pass\n", timeout=2)
    assert out == "Execution stopped after 2 seconds (offline sandbox time limit).", out
    out, _ = run_python_offline(
        "print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1])")
    assert out.strip() == "0" * 16
    deadline = time.monotonic() + 5
    while _processes(b"sleep\x00300\x00") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _processes(b"sleep\x00300\x00"), "a process started in the sandbox outlived it"


def _processes(cmdline: bytes) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                found.append(pid)
        except OSError:
            pass
    return found


@pytest.mark.parametrize("binary, sentence", [("missing", NO_BWRAP), ("/bin/false", BWRAP_REFUSED)])
def test_without_a_working_sandbox_code_is_refused_in_one_sentence(client, monkeypatch, tmp_path,
                                                                   binary, sentence):
    marker = tmp_path / "ran.txt"
    monkeypatch.setenv(BWRAP_ENV, str(tmp_path / "no-bwrap") if binary == "missing" else binary)
    out, is_error = run(client, f"open({str(marker)!r}, 'w').write('ran')\nprint('ran')")
    assert (out, is_error) == (sentence, True)
    assert out.startswith("Code execution is off: no sandbox") and out.endswith("was not run.")
    assert "\n" not in out
    assert not marker.exists()  # never an unsandboxed fallback
    i = client.interactions.create(agent="antigravity-preview-05-2026", input="What is 6*7?")
    assert i.status == "completed" and i.steps[2].result == sentence


def test_a_server_other_machines_reach_runs_no_code_unless_allowed():
    key = secrets.token_urlsafe(16)
    with start_server(engine="echo", host="0.0.0.0", api_key=key) as srv:
        c = keyed_client(srv.port, key)
        with pytest.raises(errors.BadRequestError) as err:
            c.interactions.create(model="m", input="What is 6*7?", tools=CODE)
        assert err.value.status_code == 400
        assert "runs no code" in str(err.value) and "--allow-code-execution" in str(err.value)
        with pytest.raises(errors.BadRequestError):
            c.interactions.create(agent="antigravity-preview-05-2026", input="What is 6*7?")
        search = c.interactions.create(model="m", input="hi", tools=[{"type": "google_search"}])
        assert search.status == "completed"
    with start_server(engine="echo", host="0.0.0.0", api_key=key,
                      allow_code_execution=True) as srv:
        c = keyed_client(srv.port, key)
        assert run(c, "print(6 * 7)") == ("42\n", False)


def test_the_embedded_server_needs_its_own_key(monkeypatch):
    import gemini_magics.server as server

    monkeypatch.setenv(server.ENGINE_ENV, "echo")
    monkeypatch.setattr(server, "_default", None)
    srv = default_server()
    try:
        key = srv.api_key
        assert key and len(key) >= 32
        with httpx.Client(base_url=srv.base_url, timeout=10) as h:
            body = {"model": "m", "tools": CODE,
                    "input": "```python\nprint(open('/etc/hostname').read())\n```"}
            for headers in ({}, {"x-goog-api-key": "anything"}):
                r = h.post("/v1beta/interactions", json=body, headers=headers)
                assert r.status_code == 401
                assert r.json()["error"]["status"] == "UNAUTHENTICATED" and key not in r.text
        stranger = make_client(srv.base_url)  # the README's GEMINI_API_KEY=anything
        with pytest.raises(errors.AuthenticationError):
            stranger.interactions.create(model="m", input="hi")

        # the magics' backend holds and sends the key, and never shows it
        backend, _ = gm_client.resolve_backend({"offline": True})
        assert backend.kind == "local" and backend.api_key == key
        assert key not in repr(backend) and key not in repr(srv)
        assert gm_client.redact(f"failed with x-goog-api-key {key}") == \
            "failed with x-goog-api-key ***"
        own = gm_client.get_client(backend)
        assert own.interactions.create(model="m", input="hi").output_text.endswith("said: hi")
    finally:
        srv.stop()


def test_embedded_servers_for_a_named_engine_are_keyed_too():
    from gemini_magics.session import Session

    session = Session()
    backend, _ = gm_client.resolve_backend({"engine": "echo", "offline": True}, session)
    assert backend.kind == "local" and backend.api_key != gm_client.LOCAL_API_KEY
    r = httpx.post(backend.base_url + "/v1/interactions", json={"model": "m", "input": "x"},
                   timeout=10)
    assert r.status_code == 401
    assert backend.api_key not in gm_client.redact(repr(session.servers))


@pytest.mark.parametrize("flag, line", [
    ((), "gemini-magics: code execution is off: this host is reachable from other machines "
         "(--allow-code-execution turns it on).\n"),
    (("--allow-code-execution",), "gemini-magics: code execution runs in a bubblewrap sandbox "
                                  "(no network, no host files).\n")])
def test_serve_says_whether_it_runs_code(flag, line):
    key = secrets.token_urlsafe(16)
    s = Served("--engine", "echo", "--port", "0", "--host", "0.0.0.0", "--api-key", key, *flag)
    try:
        c = keyed_client(int(s.url.rsplit(":", 1)[1]), key)
        if flag:
            assert run(c, "print(6 * 7)") == ("42\n", False)
        else:
            with pytest.raises(errors.BadRequestError):
                c.interactions.create(model="m", input="6*7?", tools=CODE)
        code, out, err = s.stop()
        assert code == 0 and line in err and key not in out + err
    finally:
        s.kill()
