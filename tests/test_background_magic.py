"""`%%gemini --background`, `%gemini jobs`, `%gemini wait ID`, `%gemini cancel ID`.

The job runs on the server (`background=true`); the cell returns at once with a status output
that a poller thread updates. Fast tests use the echo server (`/words N delay=S` makes a slow
answer) in an IPython shell and record what the poller publishes; the slow tests use real
kernels: the status output is updated while another cell runs, a saved notebook keeps the final
answer in the job's cell, and after a kernel restart the id alone picks the job up again.
"""
import threading
import time

import pytest

from conftest import make_client
from gemini_magics import jobs
from gemini_magics.server.engines.base import Engine, EngineRequest, EngineResult
from kernel_fixtures import Kernel, kernel_env, run_notebook, setup_source, stream_text  # noqa: F401
from magics_fixtures import magics_of, record_publishes, run_cell, shell  # noqa: F401

WAIT = 30


def ok(cap):
    assert cap.error is None, (cap.stdout, cap.stderr)
    return cap


@pytest.fixture()
def published(monkeypatch):
    """What the jobs publish (the status outputs), in order; display ids as keys."""
    return record_publishes(monkeypatch)


@pytest.fixture()
def bg(shell, published):
    m = magics_of(shell)
    m.poll_interval = 0.1
    m.session.jobs.clear()
    yield shell
    for job in list(m.session.jobs.values()):
        job.stop_polling()
    m.session.jobs.clear()
    for name in ("_gemini_job", "out"):
        shell.user_ns.pop(name, None)


def final(calls, display_id):
    return [c["data"] for c in calls if c["display_id"] == display_id][-1]


def test_the_cell_returns_at_once_and_the_status_output_is_updated_live(bg, published):
    started = time.monotonic()
    ok(run_cell(bg, "%%gemini --background -o out\n/words 80 delay=0.05"))
    returned = time.monotonic() - started
    job = bg.user_ns["_gemini_job"]
    assert job.running, f"the answer takes ~4 s, the cell returned after {returned:.2f} s"
    assert bg.user_ns["out"] is job.live and not job.live.done  # bound at once (#19), still running
    assert job.wait(WAIT) is not None
    mine = [c for c in published if c["display_id"] == job.display_id]
    assert mine[0]["update"] is False and all(c["update"] for c in mine[1:])
    statuses = [c["data"]["text/markdown"] for c in mine[:-1]]
    assert len(statuses) >= 3 and all("**in_progress**" in s for s in statuses[1:])
    assert f"`%gemini wait {job.id}`" in statuses[0]
    end = mine[-1]["data"]
    assert end["text/markdown"].startswith("w1 w2 w3") and "w80" in end["text/markdown"]
    assert "<details>" in end["text/markdown"] and "w80" in end["text/plain"]
    r = bg.user_ns["out"]
    assert r is bg.user_ns["_gemini"] and r.ok and r.text.split()[-1] == "w80"
    assert "/words 80" in run_cell(bg, "%gemini history").stdout  # added to the conversation


def test_jobs_wait_and_cancel(bg, published):
    ok(run_cell(bg, "%%gemini --background\n/words 20 delay=0.02"))
    first = bg.user_ns["_gemini_job"]
    ok(run_cell(bg, "%%gemini --background\n/words 2000 delay=0.05"))
    second = bg.user_ns["_gemini_job"]
    table = ok(run_cell(bg, "%gemini jobs")).stdout
    assert first.id in table and second.id in table and "Background jobs (2)" in table

    ok(run_cell(bg, f"%gemini wait {first.id}"))
    assert bg.user_ns["_gemini"].text.split()[-1] == "w20"

    assert ok(run_cell(bg, f"%gemini cancel {second.id}")).stdout.strip() == (
        f"Cancelled background job {second.id}.")
    second.wait(WAIT)
    assert second.result.stopped and second.status == "cancelled"
    assert "stopped" in final(published, second.display_id)["text/markdown"]
    again = ok(run_cell(bg, f"%gemini cancel {first.id}")).stdout
    assert "had already ended (completed); nothing to cancel" in again


def test_after_a_kernel_restart_the_id_alone_is_enough(bg, published, base_url):
    api = make_client(base_url)  # a job started by an earlier kernel
    started = api.interactions.create(model="m", input="/words 15 delay=0.05", background=True)
    assert jobs.find_job(started.id) is None
    ok(run_cell(bg, f"%gemini wait {started.id}"))
    r = bg.user_ns["_gemini"]
    assert r.ok and r.id == started.id and r.text.split()[-1] == "w15"
    assert started.id in run_cell(bg, "%gemini jobs").stdout


class FailingEngine(Engine):
    """A model that breaks mid-answer (a test double for the model, not for the SDK)."""

    name = "failing"

    def generate(self, request: EngineRequest, on_text) -> EngineResult:
        on_text("Half an ans")
        raise RuntimeError("out of memory")


def test_a_failed_job_is_one_sentence_in_its_output_and_on_wait(bg, published):
    from gemini_magics.server import start_server

    srv = start_server(engine=FailingEngine())
    try:
        magics_of(bg).base_url = srv.base_url
        ok(run_cell(bg, "%%gemini --background -o out\nhello"))
        job = bg.user_ns["_gemini_job"]
        job.wait(WAIT)
        shown = final(published, job.display_id)["text/markdown"]
        assert "⚠ The model stopped with an error (internal): The local server failed" in shown
        assert "out of memory" not in shown  # the exception's text stays in the server's log
        assert "Half an ans" in shown  # nothing lost
        cap = run_cell(bg, f"%gemini wait {job.id}")
        assert cap.error.__class__.__name__ == "GeminiError"
        assert str(cap.error).startswith("The model stopped with an error (internal)")
    finally:
        srv.stop()


def test_unknown_ids_and_bad_commands_are_one_sentence(bg, published):
    cap = run_cell(bg, "%gemini wait v1_nope")
    assert str(cap.error).startswith("Background job v1_nope not found on ")
    assert "check the id" in str(cap.error)
    out = ok(run_cell(bg, "%gemini cancel v1_nope")).stdout
    assert out.startswith("No background job v1_nope on ")
    cap = run_cell(bg, "%gemini wait")
    assert str(cap.error) == "Give one background job id, e.g. %gemini wait v1_abc (%gemini jobs lists them)."


@pytest.mark.parametrize("options, words", [
    ("--stateless", "--background needs the server to keep the interaction"),
    ("--functions f", "--background cannot run your --functions"),
    ("--ui", "Use either --background (a server-side job) or --ui"),
])
def test_options_that_cannot_run_in_the_background(bg, options, words):
    cap = run_cell(bg, f"%%gemini --background {options}\nhello")
    assert cap.error.__class__.__name__ == "GeminiError" and words in str(cap.error)
    assert not magics_of(bg).session.jobs


def test_background_schema_and_agent(bg, published):
    ok(run_cell(bg, "from pydantic import BaseModel\nclass City(BaseModel):\n    name: str"))
    ok(run_cell(bg, "%%gemini --background --schema City -o out\nOslo"))
    bg.user_ns["_gemini_job"].wait(WAIT)
    assert type(bg.user_ns["out"]).__name__ == "City" and bg.user_ns["out"].name == "Oslo"
    job = bg.user_ns["_gemini_job"]
    assert final(published, job.display_id)["text/markdown"].startswith('```json\n{\n  "name": "Oslo"')

    ok(run_cell(bg, "%%gemini --background --agent antigravity-preview-05-2026 --environment "
                    "remote\nWhat is 6*7?"))
    job = bg.user_ns["_gemini_job"]
    job.wait(WAIT)
    shown = final(published, job.display_id)["text/markdown"]
    assert "[offline] The agent antigravity-preview-05-2026" in shown
    assert "```text\n42\n```" in shown and "- environment id: `env_" in shown
    for name in ("City", "BaseModel"):
        bg.user_ns.pop(name, None)


def test_terminal_mode_prints_the_id_and_wait_prints_the_answer(bg, published):
    magics_of(bg).display = "terminal"
    out = ok(run_cell(bg, "%%gemini --background\n/words 5")).stdout
    job = bg.user_ns["_gemini_job"]
    assert out.strip() == (f"Started background job {job.id}; %gemini wait {job.id} shows the "
                           f"answer, %gemini cancel {job.id} stops it.")
    out = ok(run_cell(bg, f"%gemini wait {job.id}")).stdout
    assert out.startswith("w1 w2 w3 w4 w5\n\n— ")
    assert not published


# --------------------------------------------------------------------------------------------
# Real kernels
# --------------------------------------------------------------------------------------------

def _setup(base_url: str) -> str:
    return setup_source(base_url, poll_interval=0.2)


@pytest.mark.slow
def test_the_status_output_updates_while_other_cells_run_and_survives_a_restart(echo_server,
                                                                                 kernel_env):
    k = Kernel(any_parent=True)
    try:
        k.run_ok(_setup(echo_server.base_url))
        started = k.run_ok("%%gemini --background -o r\n/words 60 delay=0.05")
        shown = [m for m in started if m["msg_type"] == "display_data"]
        assert len(shown) == 1 and "**in_progress**" in shown[0]["content"]["data"]["text/markdown"]
        display_id = shown[0]["content"]["transient"]["display_id"]

        # another cell keeps the kernel busy; the job's output keeps changing meanwhile
        busy = k.run_ok("import time\ntime.sleep(1.5)\nprint('done sleeping')")
        updates = [m["content"]["data"]["text/markdown"] for m in busy
                   if m["msg_type"] == "update_display_data"
                   and m["content"]["transient"]["display_id"] == display_id]
        assert len(set(updates)) >= 3, updates  # the elapsed time moves on
        assert "done sleeping" in stream_text(busy)

        out = stream_text(k.run_ok("%gemini wait " + "{_gemini_job.id}\n"
                                   "print(r.status, len(r.text.split()), _gemini_job.id)"))
        status, words, ident = out.split()[-3:]
        assert (status, words) == ("completed", "60")

        # a job still running when the kernel restarts is picked up by its id alone
        later = k.run_ok("%%gemini --background\n/words 40 delay=0.05\n")
        later_id = stream_text(k.run_ok("print(_gemini_job.id)")).strip()
        assert later
        k.restart()
        k.run_ok(_setup(echo_server.base_url))
        waited = k.run_ok(f"%gemini wait {later_id}\nprint(_gemini.status, _gemini.text.split()[-1])")
        assert stream_text(waited).split()[-2:] == ["completed", "w40"]
        final = [m for m in waited if m["msg_type"] in ("display_data", "update_display_data")]
        assert final[-1]["content"]["data"]["text/markdown"].startswith("w1 w2")
    finally:
        k.close()


@pytest.mark.slow
def test_a_saved_notebook_keeps_the_final_answer_in_the_jobs_cell(echo_server, kernel_env, tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(_setup(echo_server.base_url)),
        nbformat.v4.new_code_cell("%%gemini --background -o r\n/words 25 delay=0.04"),
        nbformat.v4.new_code_cell("import time\ntime.sleep(0.5)\nprint('meanwhile')"),
        nbformat.v4.new_code_cell("_gemini_job.wait(60)\nprint(r.status)"),
    ]
    saved = run_notebook(nb, tmp_path / "background.ipynb")
    (out,) = [o for o in saved.cells[1].outputs if o.output_type == "display_data"]
    assert out.data["text/markdown"].startswith("w1 w2 w3") and "w25" in out.data["text/plain"]
    assert "<details>" in out.data["text/markdown"]
    assert "completed" in "".join(o.get("text", "") for o in saved.cells[3].outputs)


def test_the_status_line_needs_no_emoji_font():
    """Its marks are glyphs of common text fonts: emoji (and U+FE0F) show as boxes without one."""
    job = jobs.BackgroundJob("v1_x", client=None, show=False)
    lines = {"running": job.status_line()}
    job.done.set()
    for status in ("completed", "cancelled"):
        job.status = status
        lines[status] = job.status_line()
    job.problem = "could not be polled."
    lines["problem"] = job.status_line()
    assert {k: v.split()[0] for k, v in lines.items()} == {
        "running": "●", "completed": "✓", "cancelled": "■", "problem": "\u26a0"}


def test_interrupting_a_wait_stops_waiting_not_the_job(bg, published):
    import _thread

    ok(run_cell(bg, "%%gemini --background -o out\n/words 60 delay=0.05"))
    job = bg.user_ns["_gemini_job"]
    threading.Timer(0.4, _thread.interrupt_main).start()
    cap = run_cell(bg, f"%gemini wait {job.id}")
    assert cap.error is None  # a stop asked for: a neutral note, not an error
    assert cap.final[-1]["text/plain"] == (f"Stopped waiting; background job {job.id} goes on on "
                                           f"the server (%gemini wait {job.id} follows it again).")
    assert job.wait(WAIT).ok and bg.user_ns["out"].text.split()[-1] == "w60"
