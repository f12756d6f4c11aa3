"""`%%gemini` in real Jupyter kernels: saved outputs, display traffic, re-run forking, stop.

- nbclient runs a notebook with a long streamed cell (echo `/words 3000`); the saved .ipynb must
  hold the whole answer as text/markdown + text/plain, and the display messages the kernel sent
  on iopub are counted: bounded in number and rate, bytes linear in the answer.
- A kernel client sends execute requests carrying `cellId` metadata, as JupyterLab does, to
  check that re-running a cell forks the conversation instead of stacking turns.
- The kernel is interrupted mid-stream (the notebook's stop button): partial answer kept, a
  neutral note instead of an error, the interaction cancelled on the server.
"""
import json
import re

import pytest

from kernel_fixtures import Kernel, errors_of, kernel_env, run_notebook, setup_source, stream_text  # noqa: F401

pytestmark = pytest.mark.slow


def test_long_stream_in_a_notebook_saves_markdown_and_bounded_traffic(echo_server, kernel_env, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(setup_source(echo_server.base_url)),
        nbformat.v4.new_code_cell("%%gemini -o r\n/words 3000"),
        nbformat.v4.new_code_cell("print(len(r.text.split()), r.status)"),
    ]

    traffic = []

    class Counting(NotebookClient):
        def process_message(self, msg, cell, cell_index):
            if msg["msg_type"] in ("display_data", "update_display_data") and cell_index == 1:
                traffic.append((msg["header"]["date"], len(json.dumps(msg["content"]["data"]))))
            return super().process_message(msg, cell, cell_index)

    saved = run_notebook(nb, tmp_path / "long.ipynb", Counting)

    expected = " ".join(f"w{i}" for i in range(1, 3001))
    outputs = saved.cells[1].outputs
    assert all(o.output_type == "display_data" for o in outputs)
    answer = "".join(o.data["text/markdown"] for o in outputs[:-1])
    assert answer.split() == expected.split()
    assert all(o.data["text/plain"] == o.data["text/markdown"] for o in outputs[:-1])
    assert outputs[-1].data["text/markdown"].startswith("<details>")
    assert saved.cells[2].outputs[0].text.strip() == "3000 completed"

    # the traffic: few messages, at most ~20 a second, bytes linear in the answer
    assert len(traffic) <= 120
    sent = sum(n for _, n in traffic)
    assert sent <= 4 * len(expected) + 200 * len(traffic)
    if len(traffic) > 25:
        span = (traffic[-1][0] - traffic[0][0]).total_seconds()
        assert len(traffic) <= 20 * span + 5


def _markdown(msgs) -> str:
    return "".join(m["content"]["data"].get("text/markdown", "") for m in msgs
                   if m["msg_type"] == "display_data")


@pytest.fixture()
def kernel(echo_server, kernel_env):
    k = Kernel()
    assert not errors_of(k.run(setup_source(echo_server.base_url)))
    yield k
    k.close()


def _turns(msgs):
    m = re.search(r"I saw (\d+) user turns?", _markdown(msgs))
    assert m, msgs
    return int(m.group(1))


def test_rerunning_a_cell_forks_in_a_real_kernel(kernel):
    assert _turns(kernel.run("%%gemini\nfirst", "cell-a")) == 1
    assert _turns(kernel.run("%%gemini\nsecond", "cell-b")) == 2
    assert _turns(kernel.run("%%gemini\nsecond, re-run", "cell-b")) == 2
    assert _turns(kernel.run("%%gemini\nthird", "cell-c")) == 3
    assert _turns(kernel.run("%%gemini\nsecond, once more", "cell-b")) == 2


def test_interrupting_the_kernel_stops_the_stream(kernel, echo_server):
    from conftest import make_client

    msg_id = kernel.send("%%gemini -o r\n/words 400 delay=0.05", "cell-stop")
    interrupted = []

    def on_msg(msg):
        if not interrupted and msg["msg_type"] in ("display_data", "update_display_data"):
            if "w3" in msg["content"]["data"].get("text/markdown", ""):
                interrupted.append(True)
                kernel.km.interrupt_kernel()

    msgs = kernel.collect(msg_id, on_msg=on_msg)
    assert interrupted
    assert not errors_of(msgs)  # a stop asked for: no error, a neutral note, the footer
    finals = [m for m in msgs if m["msg_type"] in ("display_data", "update_display_data")
              and "text/plain" in m["content"]["data"]]
    assert finals[0]["content"]["data"]["text/markdown"].startswith("w1 w2 w3")
    assert finals[-2]["content"]["data"]["text/plain"].startswith("■ Stopped: the partial answer is kept")
    assert finals[-1]["content"]["data"]["text/markdown"].startswith("<details>")
    out = kernel.run("print(r.stopped, r.id, len(r.answer.split()))")
    stopped, ident, n = stream_text(out).split()
    assert stopped == "True" and 3 <= int(n) < 400
    client = make_client(echo_server.base_url)
    assert client.interactions.get(ident).status == "cancelled"
