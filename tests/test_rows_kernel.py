"""`%%gemini --over` in a real kernel run by nbclient: the saved notebook keeps the preview and
the summary, the progress bar is a widget, and the stop button keeps the rows done (no error
output); re-running sends only the rest (counted at the server, in this process)."""
import asyncio

import pytest

from gemini_magics.server import start_server
from gemini_magics.server.engines.echo import EchoEngine
from kernel_fixtures import kernel_env, run_notebook, setup_source  # noqa: F401

pytestmark = pytest.mark.slow

SETTLE = """\
import threading, time
deadline = time.monotonic() + 30
while any(t.name == "gemini-row" for t in threading.enumerate()) and time.monotonic() < deadline:
    time.sleep(0.05)
"""


def test_over_in_a_kernel_survives_the_stop_button_and_reruns_the_rest(kernel_env, tmp_path,
                                                                        monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("GEMINI_MAGICS_CACHE_DIR", str(tmp_path / "cache"))
    engine = EchoEngine(delay=0.3)
    srv = start_server(engine=engine)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(setup_source(srv.base_url) + "\nimport pandas as pd\n"
                                  "df = pd.DataFrame({'n': range(12)})"),
        nbformat.v4.new_code_cell("%%gemini --over df --concurrency 2 -o out\nN {n}"),
        nbformat.v4.new_code_cell(SETTLE + "print((out.gemini_error == '').sum())"),
        nbformat.v4.new_code_cell("%%gemini --over df --concurrency 4 -o out\nN {n}"),
        nbformat.v4.new_code_cell("print((out.gemini_error == '').sum(), list(out.gemini)[11])"),
    ]
    pressed = []

    class StopButton(NotebookClient):
        """Interrupts the kernel, as the stop button does, once 4 rows have reached the server."""

        def process_message(self, msg, cell, cell_index):
            if cell_index == 1 and not pressed and engine.requests >= 4:
                pressed.append(asyncio.ensure_future(self.km.interrupt_kernel()))
            return super().process_message(msg, cell, cell_index)

    try:
        saved = run_notebook(nb, tmp_path / "rows.ipynb", StopButton)
    finally:
        srv.stop()
    assert pressed
    outputs = saved.cells[1].outputs
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("text/html" in o.get("data", {}) for o in outputs)            # the preview
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for o in outputs)                                             # tqdm's bar
    note = [o.data["text/plain"] for o in outputs if "text/markdown" in o.get("data", {})][-1]
    assert "of 12 rows ok" in note and "not sent (stopped)" in note
    done_first = int(saved.cells[2].outputs[0].text)
    assert 2 <= done_first < 12
    assert saved.cells[4].outputs[0].text.startswith("12 ")
    assert "You said: N 11" in saved.cells[4].outputs[0].text
    assert engine.requests == 12  # the re-run sent only the rows not done
