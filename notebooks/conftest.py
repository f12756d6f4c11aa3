"""nbval runs these notebooks in replay: each answers from `<name>.cassette.json` next to it.

Why a conftest:
- nbval starts one kernel per notebook with this process's environment, and one
  GEMINI_MAGICS_CASSETTE cannot name two cassettes. Just before nbval starts a notebook's
  kernel, the environment is pointed at that notebook's cassette in replay mode, with the
  replay display settings (gemini_magics.quickstart.kernel_env): no key, network or model.
- nbval 0.11 ignores `update_display_data` ("unhandled iopub msg"), so it would compare the
  first version of an output that the magic later finishes in place (citations added under an
  answer, the pretty JSON of a --schema answer). Here the updates are applied to the outputs
  nbval collects for the running cell, as every frontend and the saved notebook apply them.
- Executed copies (`*.out.ipynb`, written by `gemini-magics quickstart`) are not collected.
"""
import os

import pytest

collect_ignore_glob = ["*.out.ipynb"]


class DisplayUpdates:
    """Wraps an nbval notebook's `get_kernel_message`: applies display updates to the outputs
    of the cell being checked and hands every other message to nbval unchanged."""

    def __init__(self, get_kernel_message):
        self._get = get_kernel_message
        self._shown = {}     # display id -> the data it shows now
        self.item = None     # the nbval cell being run

    def __call__(self, timeout=None, stream="iopub"):
        while True:
            msg = self._get(timeout=timeout, stream=stream)
            content = msg.get("content") or {}
            display_id = (content.get("transient") or {}).get("display_id")
            if msg.get("msg_type") == "display_data" and display_id:
                self._shown[display_id] = content.get("data")
            elif msg.get("msg_type") == "update_display_data" and display_id:
                self._apply(display_id, content)
                continue
            return msg

    def _apply(self, display_id, content):
        old, new = self._shown.get(display_id), content.get("data") or {}
        self._shown[display_id] = new
        outputs = getattr(self.item, "test_outputs", None) or []
        for out in reversed(outputs):  # an output of an earlier cell was already compared
            if out.get("output_type") == "display_data" and out.get("data") == old:
                out["data"] = new
                out["metadata"] = content.get("metadata") or {}
                return


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """Around nbval's setup of a notebook's first cell, which starts the kernel: the replay
    environment is in place while the kernel starts, and this process's is restored after."""
    path = str(getattr(item, "fspath", ""))
    notebook = getattr(item, "parent", None)
    if not path.endswith(".ipynb") or not hasattr(notebook, "get_kernel_message"):
        yield
        return
    saved = None
    if getattr(notebook, "kernel", None) is None:
        from gemini_magics.quickstart import cassette_path, kernel_env

        if not cassette_path(path).is_file():
            pytest.fail(f"{cassette_path(path)} is missing; record it with gemini-magics "
                        f"quickstart --record --notebook {path}", pytrace=False)
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(kernel_env("replay", path))
        notebook.get_kernel_message = DisplayUpdates(notebook.get_kernel_message)
    if isinstance(notebook.get_kernel_message, DisplayUpdates):
        notebook.get_kernel_message.item = item
    try:
        yield
    finally:
        if saved is not None:
            os.environ.clear()
            os.environ.update(saved)
