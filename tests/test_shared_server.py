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
import time
from pathlib import Path

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


def test_a_bad_server_mode_is_one_sentence(monkeypatch):
    monkeypatch.setenv(server_process.MODE_ENV, "cloud")
    with pytest.raises(ValueError, match="must be 'shared' or 'inprocess'"):
        server_process.server_mode()
