"""`--ui -o VAR` and the panel's Enter key in real Jupyter kernels.

- nbclient runs a notebook where the cell after `%%gemini --ui -o w` reads `w` at once (no
  NameError: `w` is the live result), waits with `w.wait()` and prints `w.text`; the saved
  notebook holds the answer in place of the live view: no widget output, no empty output.
- A kernel client sends what the panel's prompt box sends when Enter is pressed (a comm
  message `{"event": "submit", "value": ...}` to the box's widget) and the turn is answered.
"""
import pytest

from kernel_fixtures import Kernel, kernel_env, run_notebook, setup_source  # noqa: F401
from test_widgets_kernel import WIDGET_MIME, _stdout

pytestmark = pytest.mark.slow


def _saved(tmp_path, base_url, *sources):
    """A notebook of the setup cell and `sources`, run with nbclient and read back as saved."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (setup_source(base_url),) + sources]
    return run_notebook(nb, tmp_path / "out.ipynb")


def test_out_is_bound_at_once_and_the_saved_cell_holds_only_the_answer(echo_server, kernel_env,
                                                                         tmp_path):
    saved = _saved(tmp_path, echo_server.base_url,
                   "%%gemini --ui -o w\n/words 120 delay=0.02",
                   "print(type(w).__name__)",  # no NameError: bound while the answer streams
                   "w.wait(60)\nprint(w.done, w.ok, w is _gemini)\nprint(w.text)")

    assert _stdout(saved.cells[2]).strip() == "LiveResult"
    done, ok, same, *words = _stdout(saved.cells[3]).split()
    assert (done, ok, same) == ("True", "True", "True")
    assert words == [f"w{i}" for i in range(1, 121)]

    outputs = saved.cells[1].outputs
    assert len(outputs) == 1, outputs  # the view was replaced by the answer
    answer = outputs[0]
    assert answer.output_type == "display_data" and WIDGET_MIME not in answer.data
    assert set(answer.data) == {"text/markdown", "text/plain"}
    assert answer.data["text/markdown"].startswith("w1 w2 w3")
    assert answer.data["text/plain"].strip()


def test_enter_in_the_panels_prompt_box_sends_the_turn(echo_server, kernel_env):
    k = Kernel()
    try:
        k.run_ok(setup_source(echo_server.base_url))
        k.run_ok("%gemini ui")
        box = k.stdout("print(_gemini_panel.prompt.model_id)").strip()
        msg = k.kc.session.msg("comm_msg", {"comm_id": box, "data": {
            "method": "custom", "content": {"event": "submit", "value": "hi\nthere"}}})
        k.kc.shell_channel.send(msg)
        k.collect(msg["header"]["msg_id"])
        out = k.stdout("r = _gemini_panel.wait(60)\n"
                       "print(r.ok, repr(_gemini_panel.turns[-1]['prompt']), "
                       "repr(_gemini_panel.prompt.value))\nprint(r.text)")
        head, text = out.split("\n", 1)
        assert head == "True 'hi\\nthere' ''"
        assert "You said: hi\nthere" in text
    finally:
        k.close()
