"""`%%gemini --background -o job`: the job's result exists from the start (`job.live`), like
`--ui -o VAR`'s: it follows the job's status and becomes the finished result, the same object."""
import pytest

from gemini_magics import jobs
from gemini_magics.client import Backend, get_client
from gemini_magics.request import Request
from gemini_magics.session import Session

from magics_fixtures import magics_of, run_cell, shell  # noqa: F401

WAIT = 30


@pytest.fixture()
def session():
    """A session of the test's own; its jobs' pollers are stopped after the test."""
    own = Session()
    yield own
    for job in list(own.jobs.values()):
        job.stop_polling()


def test_a_job_has_a_live_result_from_the_start_that_becomes_the_answer(echo_server, session):
    client = get_client(Backend("custom", echo_server.base_url, "k", 1, None))
    request = Request(text="/words 30 delay=0.05", parts=["/words 30 delay=0.05"])
    job = jobs.start_job(request, client=client, backend_label="echo", poll_interval=0.05,
                         show=False, session=session)
    live = job.live
    assert not live.done and not live.ok and live.id == job.id
    assert live.status == "in_progress" and "streaming" in repr(live)
    assert live.wait(WAIT) is live and live.done and live.ok
    assert job.result is live and live.text == " ".join(f"w{i}" for i in range(1, 31))


def test_a_job_that_cannot_be_followed_fills_its_live_result_with_the_sentence(echo_server):
    client = get_client(Backend("custom", echo_server.base_url, "k", 1, None))
    job = jobs.BackgroundJob("v1_not_there", client=client, backend_label="echo",
                             poll_interval=0.05, show=False).start()
    assert job.live.wait(WAIT).done and not job.live.ok
    assert job.live.error.startswith("Background job v1_not_there not found on echo")


def test_the_cells_out_variable_is_bound_at_once(shell):
    magics_of(shell).poll_interval = 0.05
    shell.user_ns.pop("job", None)
    try:
        cap = run_cell(shell, "%%gemini --background -o job\n/words 30 delay=0.05")
        assert cap.error is None, (cap.stdout, cap.stderr)
        live = shell.user_ns["job"]  # no NameError while the job runs
        assert live is shell.user_ns["_gemini_job"].live and not live.done
        assert live.wait(WAIT).text.split()[-1] == "w30"
        assert shell.user_ns["job"] is live
    finally:
        shell.user_ns.pop("job", None)
        magics_of(shell).session.jobs.clear()
