"""`%%gemini --over NAME --batch` and `%gemini wait batches/ID`, through the real SDK's
`client.batches` against the local server's batch endpoints (echo engine)."""
import pandas as pd
import pytest

from gemini_magics.server import start_server
from gemini_magics.server.engines.echo import EchoEngine

from magics_fixtures import magics_of, run_cell, shell  # noqa: F401


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_MAGICS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture()
def engine(shell):
    eng = EchoEngine()
    srv = start_server(engine=eng)
    magics_of(shell).base_url = srv.base_url
    magics_of(shell).poll_interval = 0.05
    yield eng
    srv.stop()


def ok(cap):
    assert cap.error is None, (cap.error, cap.stdout, cap.stderr)
    return cap


def echoed(prompt):
    return f"Echo: I saw 1 user turn and 0 model turns. You said: {prompt}"


def test_a_batch_returns_at_once_and_fills_out_when_it_ends(shell, engine):
    shell.user_ns["df"] = pd.DataFrame({"w": ["a", "b", "c"]})
    ok(run_cell(shell, "%%gemini --over df --batch --system 'Be brief.' -o out\nSay {w}"))
    job = shell.user_ns["_gemini_batch"]
    assert job.name.startswith("batches/")
    assert job.ended.wait(30) and job.problem is None
    out = shell.user_ns["out"]
    assert list(out["gemini"]) == [f'[system: "Be brief."] {echoed("Say " + w)}' for w in "abc"]
    assert list(out["gemini_error"]) == ["", "", ""]
    assert engine.requests == 3
    # the answers are in the row cache: the same cell again sends nothing
    ok(run_cell(shell, "%%gemini --over df --batch --system 'Be brief.' -o again\nSay {w}"))
    assert engine.requests == 3
    pd.testing.assert_frame_equal(shell.user_ns["again"], out)


def test_wait_picks_a_batch_up_after_a_restart_and_fills_the_cache(shell, engine):
    shell.user_ns["words"] = ["x", "y"]
    ok(run_cell(shell, "%%gemini --over words --batch\nHi {item}"))
    job = shell.user_ns["_gemini_batch"]
    job.ended.wait(30)
    magics_of(shell).session.batches.clear()  # what a kernel restart forgets
    shell.user_ns.pop("_gemini", None)
    ok(run_cell(shell, f"%gemini wait {job.name}"))
    assert [r.text for r in shell.user_ns["_gemini"]] == [echoed("Hi x"), echoed("Hi y")]
    before = engine.requests
    ok(run_cell(shell, "%%gemini --over words -o out\nHi {item}"))  # from the cache
    assert engine.requests == before
    assert [r.text for r in shell.user_ns["out"]] == [echoed("Hi x"), echoed("Hi y")]


def test_what_a_batch_cannot_carry_is_one_sentence(shell, engine):
    shell.user_ns["words"] = ["x"]
    cap = run_cell(shell, "%%gemini --over words --batch --tools google_search\nHi {item}")
    assert str(cap.error) == ("--batch cannot carry --tools (a batch request is a generateContent "
                              "request, not an interaction); drop it or run without --batch.")
    assert engine.requests == 0


def test_the_cell_returns_with_a_status_line_that_becomes_the_summary(shell, monkeypatch):
    from magics_fixtures import final_outputs, record_publishes

    published = record_publishes(monkeypatch)
    eng = EchoEngine(delay=1.0)  # 3 rows, one after the other: the batch runs ~3 s
    srv = start_server(engine=eng)
    m = magics_of(shell)
    m.base_url, m.poll_interval = srv.base_url, 0.05
    try:
        shell.user_ns["words"] = ["a", "b", "c"]
        shell.user_ns.pop("out", None)
        ok(run_cell(shell, "%%gemini --over words --batch -o out\nSay {item}"))
        job = shell.user_ns["_gemini_batch"]
        assert "out" not in shell.user_ns and not job.ended.is_set()  # returned at once
        first = published[0]["data"]["text/plain"]
        assert first.startswith(("Starting the batch", f"Batch {job.name}: "))
        running = [p["data"] for p in published if p["data"]["text/plain"].startswith("Batch ")]
        assert running, "the status line was shown while the batch ran"
        for data in running:  # the id whole on each line, never wrapped inside
            assert all(len(line) <= 80 and job.name in line
                       for line in data["text/plain"].splitlines())
            assert f'<code style="white-space:nowrap">{job.name}</code>' in data["text/html"]
            assert f'<code style="white-space:nowrap">%gemini wait {job.name}</code>' in data["text/html"]
        cap = ok(run_cell(shell, f"%gemini wait {job.name}"))  # started here: the cell's own value
        assert shell.user_ns["_gemini"] is shell.user_ns["out"]
        assert [r.text for r in shell.user_ns["out"]] == [echoed(f"Say {w}") for w in "abc"]
        # as in a plain run: the preview (in the status line's place), then the summary line
        status = [p for p in published if p["display_id"] == published[0]["display_id"]][-1]
        assert "<table" in status["data"]["text/html"] and "Echo: I saw" in status["data"]["text/plain"]
        said = [o["data"].get("text/plain", "") for o in cap.outputs]  # the wait cell's
        summary = [i for i, t in enumerate(said) if t.startswith("3 of 3 rows ok, 0 from the cache")]
        ended = [i for i, t in enumerate(said) if t.startswith(f"Batch {job.name} ended")]
        assert summary and ended and summary[0] < ended[0], said
    finally:
        srv.stop()


def test_a_batch_gone_from_the_server_ends_its_poller_with_one_sentence(shell):
    """The poller's error path: the batch is deleted on the server while it runs; the next
    poll's 404 ends the polling at once (no retries), with one sentence in the status line
    and from `%gemini wait`."""
    from gemini_magics.client import get_client

    eng = EchoEngine(delay=2.0)  # long enough to be deleted while it runs
    srv = start_server(engine=eng)
    m = magics_of(shell)
    m.base_url, m.poll_interval = srv.base_url, 0.05
    try:
        shell.user_ns["words"] = ["a", "b"]
        shell.user_ns.pop("out", None)
        ok(run_cell(shell, "%%gemini --over words --batch -o out\nSay {item}"))
        job = shell.user_ns["_gemini_batch"]
        assert not job.ended.is_set()
        get_client(m._backend()).batches.delete(name=job.name)
        assert job.ended.wait(10)
        assert job.problem.startswith("could not be followed (the server no longer has it (404")
        assert "Traceback" not in job.problem and "\n" not in job.problem
        cap = run_cell(shell, f"%gemini wait {job.name}")
        assert str(cap.error).startswith(f"Batch {job.name} could not be followed (")
        assert "out" not in shell.user_ns
    finally:
        srv.stop()


def test_the_poll_policy_tolerates_failures_in_a_row_but_not_a_404():
    """Jobs and batches share it: failed polls are retried up to MAX_POLL_FAILURES in a row
    (a success starts the count again), a 404 ends it at once, a deadline bounds it."""
    from gemini_magics.sender import MAX_POLL_FAILURES, PollPolicy, PollTimeout

    class Failed(Exception):
        def __init__(self, status_code):
            super().__init__(f"HTTP {status_code}")
            self.status_code = status_code

    def script(*answers):
        calls = []

        def poll():
            answer = answers[min(len(calls), len(answers) - 1)]
            calls.append(answer)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return poll, calls

    policy = PollPolicy(0.05)
    flaky = [Failed(503)] * (MAX_POLL_FAILURES - 1)
    poll, calls = script(*flaky, "running", *flaky, "done")
    seen = []
    assert policy.follow(poll, lambda v: v == "done", on_status=seen.append) == "done"
    assert len(calls) == 2 * MAX_POLL_FAILURES and "running" in seen
    poll, calls = script(*[Failed(503)] * MAX_POLL_FAILURES, "done")
    with pytest.raises(Failed):
        policy.follow(poll, lambda v: v == "done")
    assert len(calls) == MAX_POLL_FAILURES
    poll, calls = script(Failed(404), "done")
    with pytest.raises(Failed):
        policy.follow(poll, lambda v: v == "done")
    assert len(calls) == 1
    with pytest.raises(PollTimeout):
        PollPolicy(0.05, deadline=0.1).follow(lambda: "running", lambda v: v == "done")
