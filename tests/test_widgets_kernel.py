"""Widgets in real Jupyter kernels, where threads and the busy/idle cycle matter.

- nbclient runs a notebook: a `%%gemini --ui` cell returns while its answer still streams, a
  later cell runs meanwhile, a later cell stops a second answer, and the saved .ipynb holds both
  answers (whole, and partial + stopped) as text/markdown + text/plain, and an image answer as
  an image/png output: the live views were replaced by their answers, so no widget output and
  no empty placeholder is saved; the panel's widget output is saved with its kind in metadata.
- A kernel client clicks the live view's Stop button the way a browser does (a comm message
  to the widget) while the answer streams: the kernel is idle, so it handles the click at once
  and the interaction is cancelled on the server (the bug of ipywidgets #3468 does not apply).
"""
import pytest

from conftest import make_client
from kernel_fixtures import Kernel, kernel_env, run_notebook, setup_source  # noqa: F401

pytestmark = pytest.mark.slow

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


_WAIT_FOR_WORDS = (
    "import time\n"
    "_t = time.monotonic()\n"
    "while 'w3 ' not in _gemini_live.text and time.monotonic() - _t < 60:\n"
    "    time.sleep(0.02)\n"
)


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _answer_output(cell):
    outs = [o for o in cell.outputs if o.output_type == "display_data"
            and "text/markdown" in o.data and WIDGET_MIME not in o.data]
    assert len(outs) == 1, cell.outputs
    return outs[0]


def _no_view_left(cell):
    """The saved cell keeps no widget view and no empty output (the view was replaced)."""
    for o in cell.outputs:
        data = o.get("data", {})
        assert WIDGET_MIME not in data, cell.outputs
        assert any(str(v).strip() for v in data.values()) or o.output_type == "stream", cell.outputs


def test_ui_cells_in_a_notebook_stream_in_the_background_and_are_saved(echo_server, kernel_env,
                                                                        tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(setup_source(echo_server.base_url)),
        nbformat.v4.new_code_cell("%%gemini --ui -o r\n/words 150 delay=0.04"),
        nbformat.v4.new_code_cell("print('streaming:', _gemini_live.job.running)"),
        nbformat.v4.new_code_cell("_gemini_live.wait(60)\nprint(r.status, len(r.text.split()))"),
        nbformat.v4.new_code_cell("%%gemini --ui -o s\n/words 3000 delay=0.02"),
        nbformat.v4.new_code_cell(_WAIT_FOR_WORDS + "%gemini stop\n_gemini_live.wait(60)\n"
                                  "print(s.stopped, s.id, len(s.answer.split()))"),
        nbformat.v4.new_code_cell("%%gemini --ui -m gemini-3.1-flash-image\na red circle"),
        nbformat.v4.new_code_cell("print(_gemini_live.wait(60).ok)"),
        nbformat.v4.new_code_cell("%gemini ui"),
    ]
    saved = run_notebook(nb, tmp_path / "ui.ipynb")

    # the first --ui cell returned while streaming, and a later cell ran meanwhile
    assert _stdout(saved.cells[2]).strip() == "streaming: True"
    assert _stdout(saved.cells[3]).strip() == "completed 150"
    # its answer is saved as ordinary Markdown + text, in place of the (kernel-only) widget
    words = " ".join(f"w{i}" for i in range(1, 151))
    out = _answer_output(saved.cells[1])
    assert out.data["text/markdown"].startswith(words)
    assert out.data["text/plain"].startswith(words)
    assert len(saved.cells[1].outputs) == 1
    for i in (1, 4, 6):
        _no_view_left(saved.cells[i])

    # the second one was stopped from a later cell: cancelled on the server, partial text saved
    stopped, ident, n = _stdout(saved.cells[5]).split()[-3:]
    assert "Stopping 1 answer" in _stdout(saved.cells[5])
    assert stopped == "True" and 3 <= int(n) < 3000
    client = make_client(echo_server.base_url)
    assert client.interactions.get(ident).status == "cancelled"
    out = _answer_output(saved.cells[4])
    assert out.data["text/markdown"].startswith("w1 w2 w3") and "Stopped" in out.data["text/markdown"]
    assert "Stopped" in out.data["text/plain"]

    # an image answer is saved as an ordinary image output
    assert _stdout(saved.cells[7]).strip() == "True"
    images = [o for o in saved.cells[6].outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1 and images[0].data["image/png"].startswith("iVBOR")

    # the panel's widget output says what it is (the JupyterLab extension reads this once its
    # kernel is gone); the transcript under it is ordinary Markdown
    panel, transcript = saved.cells[8].outputs
    assert WIDGET_MIME in panel.data and panel.metadata == {"gemini_magics": {"kind": "panel"}}
    assert transcript.data["text/plain"].startswith("Gemini panel") and not transcript.metadata


def test_clicking_stop_while_streaming_cancels_at_once(echo_server, kernel_env):
    k = Kernel()
    try:
        k.run_ok(setup_source(echo_server.base_url))
        k.run_ok("%%gemini --ui -o r\n/words 3000 delay=0.02")  # returns: the kernel is idle again
        model_id = k.stdout(_WAIT_FOR_WORDS + "print(_gemini_live.stop_button.model_id)").strip()
        k.click(model_id)
        out = k.stdout("_gemini_live.wait(60)\n"
                       "print(r.stopped, r.id, len(r.answer.split()), 'stopped' in _gemini_live.status_line)")
        stopped, ident, n, shown = out.split()
        assert stopped == "True" and shown == "True" and 3 <= int(n) < 3000
        client = make_client(echo_server.base_url)
        assert client.interactions.get(ident).status == "cancelled"
    finally:
        k.close()
