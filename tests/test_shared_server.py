"""The per-user offline server that every kernel shares (server_process.py, issue #15).

What a user notices: two notebooks answer offline through ONE server process (the kernels never
load the model, so each stays small); a background job outlives the kernel that started it and
`%gemini wait ID` in a new kernel returns its answer; a server that died leaves a stale discovery
file that the next kernel replaces; an idle server goes away by itself. Each test has its own
runtime and data dirs, and stops the servers it started.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from kernel_fixtures import Kernel, kernel_env, stream_text  # noqa: F401

from gemini_magics import server_process


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _wait_for(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a child of ours that exited is a zombie until reaped: count it as gone
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


@pytest.fixture()
def shared(tmp_path, monkeypatch):
    """Shared mode, with this test's own dirs; stops every server that wrote a discovery file."""
    runtime, data = tmp_path / "runtime", tmp_path / "data"
    monkeypatch.setenv(server_process.MODE_ENV, "shared")
    monkeypatch.setenv(server_process.RUNTIME_ENV, str(runtime))
    monkeypatch.setenv(server_process.DATA_ENV, str(data))
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    yield runtime
    for f in runtime.glob("gemini-magics-server-*.json"):
        try:
            os.kill(json.loads(f.read_text())["pid"], signal.SIGTERM)
        except (OSError, ValueError, KeyError):
            pass


def _pids(runtime: Path) -> set:
    return {json.loads(f.read_text())["pid"] for f in runtime.glob("gemini-magics-server-*.json")}


SETUP = "%load_ext gemini_magics\n%config GeminiMagics.retries = 0"


@pytest.mark.slow
def test_two_kernels_answer_through_one_server_process_and_stay_small(shared, kernel_env,
                                                                     monkeypatch):
    monkeypatch.setenv("GEMINI_MAGICS_ENGINE", "local")  # the real model: in the server only
    kernels = [Kernel(), Kernel()]
    try:
        seen = []
        for k in kernels:
            k.run_ok(SETUP)
            k.run_ok("%%gemini --max-tokens 5\nSay hi.\n")
            seen.append(k.stdout("import os\nprint(_gemini.ok, os.getpid())").split())
        assert all(ok == "True" for ok, _ in seen), seen
        (pid,) = _pids(shared)  # one server, holding the model
        kernel_pids = {int(kp) for _, kp in seen}
        assert pid not in kernel_pids and _alive(pid)
        for kp in kernel_pids:
            assert _rss_kib(kp) <= 120 * 1024, f"a kernel holds {_rss_kib(kp) // 1024} MB"
            assert "xllamacpp" not in Path(f"/proc/{kp}/maps").read_text()
        assert "xllamacpp" in Path(f"/proc/{pid}/maps").read_text()
    finally:
        for k in kernels:
            k.close()


@pytest.mark.slow
def test_a_background_job_outlives_its_kernel(shared, kernel_env, monkeypatch):
    monkeypatch.setenv("GEMINI_MAGICS_ENGINE", "echo")
    first = Kernel()
    first.run_ok(SETUP)
    first.run_ok("%%gemini --background\n/words 40 delay=0.05")
    job_id = first.stdout("print(_gemini_job.id)").strip()
    first.km.shutdown_kernel(now=True)  # killed mid-job
    first.kc.stop_channels()
    second = Kernel()
    try:
        second.run_ok(SETUP)
        out = second.stdout(f"%gemini wait {job_id}\nprint(_gemini.status, _gemini.text.split()[-1])")
        assert out.strip().splitlines()[-1] == "completed w40"
    finally:
        second.close()


def test_a_stale_discovery_file_is_replaced(shared, monkeypatch):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    shared.mkdir(parents=True)
    stale = server_process.discovery_path("echo")
    stale.write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": gone.pid, "engine": "echo",
                                 "key": "old"}))
    srv = server_process.shared_server("echo")
    assert srv.pid != gone.pid and srv.running
    info = json.loads(stale.read_text())
    assert info["pid"] == srv.pid and info["url"] == srv.base_url
    assert stale.stat().st_mode & 0o077 == 0, "the discovery file holds a key: owner only"
    # the same server is found again, and a request without its key is refused
    assert server_process.shared_server("echo").pid == srv.pid
    assert not server_process._proves(srv.base_url, "not-the-key")


def test_concurrent_starts_make_one_server(shared):
    code = ("from gemini_magics import server_process as s; "
            "print(s.shared_server('echo').pid)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=env) for _ in range(3)]
    pids = {p.communicate(timeout=90)[0].strip() for p in procs}
    assert len(pids) == 1 and _pids(shared) == {int(pids.pop())}


def test_an_idle_server_exits_and_removes_its_discovery_file(shared, monkeypatch):
    monkeypatch.setenv(server_process.IDLE_ENV, "1")
    srv = server_process.shared_server("echo")
    assert srv.running
    _wait_for(lambda: not _alive(srv.pid), "the idle server to exit")
    assert not server_process.discovery_path("echo").exists()
    assert server_process.discover("echo") is None
    again = server_process.shared_server("echo")  # started again on demand
    assert again.pid != srv.pid and again.running


def test_a_server_that_exits_is_reaped_not_left_a_zombie(shared, monkeypatch):
    """The kernel that started the server waits for it: once it exits (here: idle) no zombie
    stays in the process table for the kernel's whole life."""
    monkeypatch.setenv(server_process.IDLE_ENV, "1")
    srv = server_process.shared_server("echo")
    _wait_for(lambda: not _alive(srv.pid), "the idle server to exit")
    _wait_for(lambda: not Path(f"/proc/{srv.pid}").exists(), "the exited server to be reaped")


def test_a_bad_server_mode_is_one_sentence(monkeypatch):
    monkeypatch.setenv(server_process.MODE_ENV, "cloud")
    with pytest.raises(ValueError, match="must be 'shared' or 'inprocess'"):
        server_process.server_mode()


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_shared_servers_files_and_dirs_are_the_users_only(shared):
    data = Path(os.environ[server_process.DATA_ENV])
    data.mkdir(parents=True, mode=0o755)  # as an older version left them
    os.chmod(data, 0o755)
    old_log = data / "server-echo.log"
    old_log.write_text("an earlier run\n")
    os.chmod(old_log, 0o644)
    srv = server_process.shared_server("echo")
    done = httpx.post(srv.base_url + "/v1beta/interactions", json={"model": "m", "input": "hi"},
                      headers={"x-goog-api-key": srv.api_key}, timeout=10)
    assert done.json()["status"] == "completed"
    assert _mode(shared) == 0o700 and _mode(data) == 0o700
    assert _mode(old_log) == 0o600 and _mode(server_process.discovery_path("echo")) == 0o600
    stored = sorted(data.glob("interactions-echo.sqlite*"))
    assert [p.name[-4:] for p in stored] == ["lite", "-shm", "-wal"]
    assert {p.name: _mode(p) for p in stored} == {p.name: 0o600 for p in stored}
    umask = next(ln for ln in Path(f"/proc/{srv.pid}/status").read_text().splitlines()
                 if ln.startswith("Umask:"))
    assert umask.split()[1] == "0077"  # whatever else it writes (sandbox files) is private too


class _Impostor(BaseHTTPRequestHandler):
    """Whatever took a dead server's port: answers every request with one status, and records
    all it was sent."""

    status = 404
    seen: list

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append((self.command, self.path, dict(self.headers), body))
        payload = json.dumps({"proof": "0" * 64, "id": "v1_x", "status": "completed"}).encode()
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("status", [404, 200])
def test_an_impostor_on_a_stale_discovery_files_port_is_sent_nothing_keyed(shared, status):
    seen: list = []
    handler = type("Handler", (_Impostor,), {"status": status, "seen": seen})
    impostor = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    key = "the-old-servers-key-" + "k" * 24
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        shared.mkdir(parents=True)
        server_process.discovery_path("echo").write_text(json.dumps({
            "url": f"http://127.0.0.1:{impostor.server_port}", "pid": alive.pid,
            "engine": "echo", "key": key}))
        srv = server_process.shared_server("echo")
    finally:
        impostor.shutdown()
        impostor.server_close()
        alive.kill()
        alive.wait()
    assert srv.pid != alive.pid and srv.base_url != f"http://127.0.0.1:{impostor.server_port}"
    assert srv.running  # the real one proves its key
    assert seen, "the impostor was never asked"
    for method, path, headers, body in seen:  # only probes, and nothing it could use
        assert method == "GET" and path.startswith("/gemini-magics/proof?nonce=")
        assert "x-goog-api-key" not in {h.lower() for h in headers}
        assert key not in repr((path, headers, body)) and key[:12] not in repr(headers)
    nonces = [path.split("nonce=")[1] for _, path, _, _ in seen]
    assert len(set(nonces)) == len(nonces)  # fresh each time: an answer cannot be replayed


def test_another_users_pid_is_not_a_live_server():
    """os.kill(pid, 0) fails with EPERM for another user's process: not ours, so stale."""
    if os.geteuid() != 0:  # pid 1 is root's
        assert server_process._pid_alive(1) is False
        return
    # as root every kill(pid, 0) succeeds: ask from an unprivileged user about a root pid, with
    # an interpreter that user may run (the package needs only the standard library here)
    python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3")
                   if os.access(p, os.X_OK)), None)
    if python is None:
        pytest.skip("no system python3 to run as another user")
    code = ("import sys; from gemini_magics import server_process as s; "
            "print(s._pid_alive(int(sys.argv[1])))")
    try:
        out = subprocess.run([python, "-c", code, str(os.getpid())], user="nobody", cwd="/",
                             capture_output=True, text=True, timeout=60,
                             env={"PYTHONPATH": str(Path(__file__).parents[1]), "HOME": "/"})
    except (PermissionError, KeyError) as e:
        pytest.skip(f"cannot run a process as nobody here ({e})")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert server_process._pid_alive(os.getpid()) is True  # our own is alive


def test_only_a_server_holding_the_key_can_answer_the_proof():
    from gemini_magics.catalog import PROOF_PATH, key_proof
    from gemini_magics.server import start_server

    nonce = "ab" * 16
    with start_server(engine="echo", api_key="k" * 32) as srv:
        r = httpx.get(srv.base_url + PROOF_PATH, params={"nonce": nonce}, timeout=10)
        assert r.json() == {"proof": key_proof("k" * 32, nonce)}
        assert key_proof("k" * 32, nonce) != key_proof("j" * 32, nonce)
        assert server_process._proves(srv.base_url, "k" * 32)
        assert not server_process._proves(srv.base_url, "j" * 32)
        r = httpx.get(srv.base_url + PROOF_PATH, params={"nonce": "not hex"}, timeout=10)
        assert r.status_code == 400 and "'nonce'" in r.json()["error"]["message"]
    with start_server(engine="echo") as srv:  # open: no key of its own to prove
        r = httpx.get(srv.base_url + PROOF_PATH, params={"nonce": nonce}, timeout=10)
        assert r.status_code == 404 and not server_process._proves(srv.base_url, "")
