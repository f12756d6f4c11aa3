"""Line breaks and long paragraphs in a real kernel: what the saved notebook keeps.

nbclient runs a notebook against the echo server: a cell whose answer quotes a poem (the echo
engine repeats the prompt) must be saved with its line breaks as Markdown hard breaks and its
text as written; a paragraph streamed at a pace (cut into pieces on screen while it grew) must
be saved as one Markdown output, emptied pieces aside, like `--ui` or a background job saves it.
"""
import pytest

from kernel_fixtures import kernel_env, run_notebook, setup_source  # noqa: F401

pytestmark = pytest.mark.slow
CELLS = ["%%gemini\nRoses are red,\nviolets are blue.", "%%gemini -o r\n/words 400 delay=0.005"]


def test_saved_notebook_keeps_line_breaks_and_whole_paragraphs(echo_server, kernel_env, tmp_path):
    from nbformat.v4 import new_code_cell, new_notebook

    sources = [setup_source(echo_server.base_url), *CELLS]
    notebook = new_notebook(cells=[new_code_cell(source) for source in sources])
    saved = run_notebook(notebook, tmp_path / "breaks.ipynb")

    poem = saved.cells[1].outputs[0].data
    assert poem["text/markdown"].endswith("Roses are red,  \nviolets are blue.")
    assert poem["text/plain"].endswith("Roses are red,\nviolets are blue.")

    outputs = saved.cells[2].outputs
    assert all(o.output_type == "display_data" for o in outputs)
    kept = [o.data for o in outputs[:-1] if o.data["text/markdown"]]
    expected = " ".join(f"w{i}" for i in range(1, 401))
    assert len(kept) == 1 and kept[0]["text/plain"] == expected
    assert kept[0]["text/markdown"] == expected
    assert outputs[-1].data["text/markdown"].startswith("<details>")
