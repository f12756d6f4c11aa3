"""The notebook's stop button during a plain `%%gemini` cell, in a real kernel run by nbclient.

A stop the user asked for is not a failure: the cell keeps its partial answer, then one neutral
note and the footer, as `--ui` and the panel write them (no error output, so the saved notebook
shows no red box), the result is
still in `-o VAR` / `_gemini` with `.stopped`, the interaction is cancelled on the server, and the
turn is not added to the conversation.
"""
import asyncio

import pytest

from kernel_fixtures import kernel_env, run_notebook, setup_source  # noqa: F401

pytestmark = pytest.mark.slow

NOTE = "■ Stopped: the partial answer is kept; this turn was not added to the conversation."


def test_the_stop_button_ends_the_cell_with_a_note_not_an_error(echo_server, kernel_env, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    from conftest import make_client

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(setup_source(echo_server.base_url)),
        nbformat.v4.new_code_cell("%%gemini -o r\n/words 400 delay=0.05"),
        nbformat.v4.new_code_cell("print(r.stopped, _gemini is r, len(r.answer.split()), r.id)"),
        nbformat.v4.new_code_cell("%gemini history"),
    ]
    pressed = []

    class StopButton(NotebookClient):
        """Interrupts the kernel, as the notebook's stop button does, once w3 is on screen."""

        def process_message(self, msg, cell, cell_index):
            if (cell_index == 1 and not pressed
                    and msg["msg_type"] in ("display_data", "update_display_data")
                    and "w3" in msg["content"]["data"].get("text/markdown", "")):
                pressed.append(asyncio.ensure_future(self.km.interrupt_kernel()))
            return super().process_message(msg, cell, cell_index)

    # nbclient raises CellExecutionError for a cell with an error output: none must come
    saved = run_notebook(nb, tmp_path / "stopped.ipynb", StopButton)

    assert pressed
    outputs = saved.cells[1].outputs
    assert [o.output_type for o in outputs if o.output_type not in ("display_data", "stream")] == []
    assert outputs[0].data["text/markdown"].startswith("w1 w2 w3")       # the partial answer
    assert outputs[-2].data == {"text/markdown": f"*{NOTE}*", "text/plain": NOTE}
    assert outputs[-1].data["text/markdown"].startswith("<details>")      # its footer
    assert "stopped" in outputs[-1].data["text/markdown"]

    stopped, same, n, ident = saved.cells[2].outputs[0].text.split()
    assert stopped == "True" and same == "True" and 3 <= int(n) < 400
    assert make_client(echo_server.base_url).interactions.get(ident).status == "cancelled"
    history = "".join(o.get("text", "") for o in saved.cells[3].outputs)
    assert history.startswith("No conversation yet")                     # the turn was not kept
