"""The Session: one kernel's state in one object, owned by its GeminiMagics.

What a user notices: the magics' conversation, last result and cassette are the session's, and
code given no session (gemini_magics.map, the runner) uses the kernel's; a second session in the
same process (the plain one `gemini_magics.map` uses outside a kernel) sees none of them, so a
cassette recording in the kernel records only the kernel's requests.
"""
import subprocess
import sys

from gemini_magics import jobs, live
from gemini_magics.client import get_client, resolve_backend
from gemini_magics.request import Request
from gemini_magics.session import Session, current

from magics_fixtures import ROOT_DIR, magics_of, run_cell, shell  # noqa: F401

WAIT = 30


def test_the_kernel_state_is_the_magics_session(shell):
    m = magics_of(shell)
    assert current() is m.session  # what calls given no session use
    cap = run_cell(shell, "%%gemini\nhello session")
    assert cap.error is None
    assert [t.prompt for t in m.session.conversation.chain()] == ["hello session"]
    assert m.session.last_result is shell.user_ns["_gemini"] is shell.run_line_magic("gemini", "last")
    m.temperature = 0.5  # settings are read from the traitlets when asked, never copied
    assert m.session.settings()["temperature"] == 0.5


def test_a_cassette_recording_in_the_kernel_records_no_other_sessions_requests(shell, tmp_path,
                                                                               echo_server):
    path = tmp_path / "kernel.json"
    kernel = magics_of(shell).session
    other = Session(read_settings=lambda: {"base_url": echo_server.base_url, "retries": 0})
    try:
        assert run_cell(shell, f"%gemini record {path}").error is None
        backend, _ = resolve_backend(other.settings(), other)
        client = get_client(backend, other)
        assert client.interactions.create(model="m", input="from elsewhere").output_text \
            .endswith("from elsewhere")
        assert run_cell(shell, "%%gemini\nfrom the kernel").error is None
        assert client is get_client(backend, other)  # each session reuses its own clients
        assert client is not get_client(backend, kernel)
    finally:
        kernel.eject()
    recorded = path.read_text(encoding="utf-8")
    assert "from the kernel" in recorded and "from elsewhere" not in recorded
    assert other.conversation.chain() == [] and other.cassette is None


def test_outside_a_kernel_there_is_one_plain_session():
    code = ("import sys\n"
            "from gemini_magics.session import current\n"
            "assert current() is current() and current().conversation.chain() == []\n"
            "assert 'IPython' not in sys.modules\n"  # finding no kernel loads no IPython
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT_DIR, timeout=120)  # this checkout's package first
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_the_kernels_jobs_and_stop_are_its_own(shell, echo_server):
    """A background job or a streaming answer of another session (another kernel's, or
    gemini_magics.map's) is neither listed by the kernel's `%gemini jobs` nor stopped by its
    `%gemini stop`; its own session lists and stops it."""
    other = Session(read_settings=lambda: {"base_url": echo_server.base_url, "retries": 0})
    backend, _ = resolve_backend(other.settings(), other)
    slow = Request(text="/words 200 delay=0.05", parts=["/words 200 delay=0.05"])
    job = jobs.start_job(Request(text="/words 5", parts=["/words 5"]),
                         client=get_client(backend, other), backend_label="echo",
                         poll_interval=0.05, show=False, session=other)
    answer = live.StreamJob(slow, backend=backend, jobs=live.jobs_of(other)).start()
    try:
        assert job.id not in run_cell(shell, "%gemini jobs").stdout
        assert jobs.find_job(job.id, other) is job and job.id in jobs.jobs_table(other)
        assert run_cell(shell, "%gemini stop").stdout.startswith("Nothing to stop")
        assert answer.running and live.jobs_of(other).running() == [answer]
        assert live.jobs_of(other).stop_all().startswith("Stopping 1 answer")
        assert answer.wait(WAIT).stopped
    finally:
        answer.stop()
        answer.wait(WAIT)
        job.stop_polling()
