"""Fixtures and helpers for tests that run `%%gemini` in real Jupyter kernels.

Threads, the busy/idle cycle, comm messages and saved notebooks only behave for real in a
kernel, so these tests start one; the helpers live here so every such test drives it the same way.

- `kernel_env`: the kernel (a child process) sees no API key and imports this checkout.
- `setup_source(base_url, **settings)`: the first cell, loading the extension on the echo server.
- `Kernel`: a real ipykernel plus a client that talks to it like a notebook frontend.
- `run_notebook(nb, path, ...)`: execute with nbclient, save, and read back what the user keeps.
- `stream_text(msgs)`, `errors_of(msgs)`: the printed text and the errors among iopub messages.
"""
from __future__ import annotations

import os
import time

import pytest

from magics_fixtures import ROOT_DIR

__all__ = ["KERNEL_TIMEOUT", "kernel_env", "setup_source", "Kernel", "run_notebook", "stream_text",
           "errors_of"]

KERNEL_TIMEOUT = 120


@pytest.fixture()
def kernel_env(monkeypatch):
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(ROOT_DIR), os.environ.get("PYTHONPATH", "")) if p))


def setup_source(base_url: str, **settings) -> str:
    """Load the extension, point it at `base_url`, no retries; plus any other GeminiMagics settings."""
    lines = ["%load_ext gemini_magics",
             f"%config GeminiMagics.base_url = {base_url!r}",
             "%config GeminiMagics.retries = 0"]
    lines += [f"%config GeminiMagics.{name} = {value!r}" for name, value in settings.items()]
    return "\n".join(lines)


def stream_text(msgs) -> str:
    return "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")


def errors_of(msgs) -> list:
    return [m["content"] for m in msgs if m["msg_type"] == "error"]


class Kernel:
    """A real ipykernel and a client that talks to it like a notebook frontend.

    With `any_parent=True` the client keeps every iopub message until the cell is idle, not only
    the cell's own: display updates published by a background thread belong to an earlier cell.
    """

    def __init__(self, any_parent: bool = False):
        from jupyter_client.manager import start_new_kernel

        self.any_parent = any_parent
        self.km, self.kc = start_new_kernel(kernel_name="python3", startup_timeout=KERNEL_TIMEOUT)

    def send(self, code: str, cell_id: str = None) -> str:
        """An execute request, with the `cellId` metadata JupyterLab adds when given one."""
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}
        msg = self.kc.session.msg("execute_request", content)
        if cell_id:
            msg["metadata"]["cellId"] = cell_id
        self.kc.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def collect(self, msg_id: str, on_msg=None) -> list:
        """iopub messages until the request `msg_id` is done (idle); `on_msg` sees each one."""
        msgs = []
        deadline = time.monotonic() + KERNEL_TIMEOUT
        while time.monotonic() < deadline:
            msg = self.kc.get_iopub_msg(timeout=KERNEL_TIMEOUT)
            mine = msg["parent_header"].get("msg_id") == msg_id
            if not (mine or self.any_parent):
                continue
            msgs.append(msg)
            if on_msg:
                on_msg(msg)
            if mine and msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return msgs
        raise AssertionError("the kernel did not become idle")

    def run(self, code: str, cell_id: str = None) -> list:
        return self.collect(self.send(code, cell_id))

    def run_ok(self, code: str) -> list:
        """`run`, failing the test if the cell itself raised."""
        msg_id = self.send(code)
        msgs = self.collect(msg_id)
        errors = errors_of(m for m in msgs if m["parent_header"].get("msg_id") == msg_id)
        assert not errors, errors
        return msgs

    def stdout(self, code: str) -> str:
        return stream_text(self.run_ok(code))

    def click(self, model_id: str) -> list:
        """What a browser sends when a widget Button is clicked."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": model_id, "data": {
            "method": "custom", "content": {"event": "click"}}})
        self.kc.shell_channel.send(msg)
        return self.collect(msg["header"]["msg_id"])

    def restart(self):
        self.kc.stop_channels()
        self.km.restart_kernel(now=True)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=KERNEL_TIMEOUT)

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def run_notebook(nb, path, client_class=None, **options):
    """Execute `nb` in a new python3 kernel, save it to `path`, and return the notebook read back
    from disk: the saved file is what the user keeps, so that is what tests look at."""
    import nbformat
    from nbclient import NotebookClient

    options.setdefault("timeout", KERNEL_TIMEOUT)
    (client_class or NotebookClient)(nb, kernel_name="python3", **options).execute()
    nbformat.write(nb, path)
    return nbformat.read(path, as_version=4)
