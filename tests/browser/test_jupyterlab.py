"""The magics in a real JupyterLab, driven in Debian's Chromium (headless) by Playwright.

What a user sees, checked in the browser: a streaming `%%gemini` answer grows on screen over
several moments, a model picked in the `%gemini ui` panel is the one that answers (the server
echoes it back into the footer), and an image model's answer shows as an `<img>`.

JupyterLab runs on 127.0.0.1 with a token in a temporary root holding a copy of
`fixture.ipynb`; its kernels use the echo engine (`GEMINI_MAGICS_ENGINE=echo`) so answers are
fast and predictable; one last cell uses the real local model when it is installed.
Screenshots go to `tests/artifacts/` (gitignored; CI keeps the workspace).
Playwright never downloads a browser here: it launches `/usr/bin/chromium`.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

_WORD = re.compile(r"\bw\d+\b")  # the echo engine's /words answer: w1 w2 ...
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
LAB_START_TIMEOUT_S = 90
UI_TIMEOUT_MS = 60_000      # one step in the page (kernel start, one cell, one answer)
LOCAL_MODEL_TIMEOUT_MS = 120_000
SAMPLE_EVERY_S = 0.3
RUN_ATTEMPTS = 4
# Variables that would send the kernel's requests somewhere else than its local server.
_SDK_ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI",
            "GEMINI_MAGICS_CASSETTE", "GEMINI_MAGICS_RECORD_MODE")
# The fixture notebook's cells (see fixture.ipynb).
LOAD, STREAM, PANEL, AFTER_PANEL, IMAGE, ENGINE_LOCAL, LOCAL = 1, 2, 3, 4, 5, 6, 7
PICKED_MODEL = "gemini-2.5-flash-lite"

# JupyterLab's own network chatter (news, update checks) off, so the page never waits on it.
_NOTIFICATION_SETTINGS = '{"fetchNews": "false", "checkForUpdates": false, "doNotDisturbMode": true}'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop a process we started and its children (kernels), by its own process group id."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on loopback: (base URL, token, root dir). Killed at the end."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the browser test "
                    f"needs Debian's Chromium")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    root.mkdir()
    shutil.copy(HERE / "fixture.ipynb", root / "fixture.ipynb")
    settings = base / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(_NOTIFICATION_SETTINGS)
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in _SDK_ENV}
    env.update({
        "GEMINI_MAGICS_ENGINE": "echo",
        "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"), "IPYTHONDIR": str(base / "ipython"),
    })
    log = open(ARTIFACTS / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--ServerApp.terminals_enabled=False", "--ServerApp.allow_root=True",
         "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly"],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        cwd=str(root), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_lab(proc, url, token)
        yield url, token, root
    finally:
        _stop_group(proc)
        log.close()


def _wait_for_lab(proc: subprocess.Popen, url: str, token: str) -> None:
    import httpx

    deadline = time.monotonic() + LAB_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}; see {ARTIFACTS / 'jupyterlab.log'}")
        try:
            if httpx.get(f"{url}/api/status", params={"token": token}, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"jupyter lab did not answer within {LAB_START_TIMEOUT_S} s; see "
                f"{ARTIFACTS / 'jupyterlab.log'}")


@pytest.fixture(scope="module")
def page(lab, tmp_path_factory):
    """A Chromium page with the fixture notebook open and its kernel idle."""
    from playwright.sync_api import sync_playwright

    url, token, _ = lab
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900}, timeout=UI_TIMEOUT_MS)
        try:
            context.set_default_timeout(UI_TIMEOUT_MS)
            pg = context.pages[0] if context.pages else context.new_page()
            console: list = []
            pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            pg.goto(f"{url}/lab/tree/fixture.ipynb?token={token}")
            pg.locator(".jp-Notebook .jp-Cell").nth(LOCAL).wait_for()
            _wait_idle(pg)
            yield pg
        finally:  # what the page looked like at the end, to diagnose a failure in CI
            try:
                (ARTIFACTS / "browser-console.log").write_text("\n".join(console))
                (ARTIFACTS / "browser-last-page.html").write_text(pg.content())
                _shot(pg, "last-page")
            except Exception:  # noqa: BLE001 - diagnostics only
                pass
            context.close()


def _wait_idle(pg) -> None:
    """The kernel has started and is idle (the notebook toolbar's execution indicator)."""
    pg.locator('.jp-NotebookPanel:not(.lm-mod-hidden) '
               '.jp-Notebook-ExecutionIndicator[data-status="idle"]').first.wait_for()


def _cell(pg, index: int):
    return pg.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(index)


def _run(pg, index: int) -> None:
    """Run one cell as a user does: click into it, then the toolbar's Run button.

    Right after the page loads, JupyterLab can still move the focus around and swallow the
    click, so the run is retried until the cell's prompt shows it was queued (`[*]` or a count).
    """
    cell = _cell(pg, index)
    before = _prompt(cell)
    for _attempt in range(RUN_ATTEMPTS):
        cell.scroll_into_view_if_needed()
        cell.locator(".jp-InputArea-editor").click()
        if "jp-mod-active" not in (cell.get_attribute("class") or ""):
            time.sleep(0.5)
            continue
        pg.locator('.jp-NotebookPanel:not(.lm-mod-hidden) '
                   '[data-command="notebook:run-cell-and-select-next"]').first.click()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            now = _prompt(cell)
            if now != before or "*" in now:
                return
            time.sleep(0.1)
    raise AssertionError(f"cell {index} could not be started (prompt stayed {before!r})")


def _prompt(cell) -> str:
    return cell.locator(".jp-InputArea-prompt").inner_text().strip()


def _wait_done(pg, index: int, timeout_ms: int = UI_TIMEOUT_MS) -> None:
    """The cell has an execution count (not `[*]` or `[ ]`)."""
    cell = _cell(pg, index)
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        prompt = _prompt(cell)
        if any(ch.isdigit() for ch in prompt):
            return
        time.sleep(0.2)
    raise AssertionError(f"cell {index} did not finish within {timeout_ms / 1000:.0f} s "
                         f"(prompt {_prompt(cell)!r})")


def _output_text(cell) -> str:
    out = cell.locator(".jp-Cell-outputArea")
    return out.inner_text() if out.count() else ""


def _shot(pg, name: str, element=None) -> None:
    (element or pg).screenshot(path=str(ARTIFACTS / f"browser-{name}.png"))


def test_streaming_panel_and_image_in_jupyterlab(page):
    pg = page
    _run(pg, LOAD)
    _wait_done(pg, LOAD)

    # 1. A streaming answer grows on screen while the cell runs.
    _run(pg, STREAM)
    cell = _cell(pg, STREAM)
    samples: list[int] = []
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    shot_taken = False
    while time.monotonic() < deadline:
        running = "*" in _prompt(cell)
        text = _output_text(cell)
        if running and _WORD.search(text):  # the answer has begun (past the offline notice)
            samples.append(len(text))
            if not shot_taken and len(samples) >= 4:
                _shot(pg, "1-streaming")
                shot_taken = True
        if not running and samples:
            break
        if not running and not samples and any(ch.isdigit() for ch in _prompt(cell)):
            break  # finished before a single sample: the assertion below says so
        time.sleep(SAMPLE_EVERY_S)
    _wait_done(pg, STREAM)
    final = _output_text(cell)
    rises = sum(1 for a, b in zip(samples, samples[1:]) if b > a)
    assert rises >= 2, f"the answer did not visibly grow while streaming: lengths {samples}"
    assert samples == sorted(samples), f"the answer shrank while streaming: {samples}"
    assert "w160" in final and len(final) > samples[0]
    (ARTIFACTS / "browser-stream-samples.txt").write_text(
        f"output text length every {SAMPLE_EVERY_S} s while the cell ran: {samples}; "
        f"final {len(final)}\n")
    _shot(pg, "2-streamed")

    # 2. Pick a model in the panel (type it in the Combobox), Send, and see it answer.
    _run(pg, PANEL)
    _wait_done(pg, PANEL)
    panel = _cell(pg, PANEL)
    combo = panel.get_by_label("Model")  # the Combobox: a text input with a datalist
    combo.wait_for()
    combo.fill(PICKED_MODEL)
    combo.press("Enter")  # continuous_update=False: the value is sent on Enter
    panel.get_by_text(f"Model: {PICKED_MODEL}").wait_for()  # the kernel took it
    panel.get_by_placeholder("Ask Gemini").fill("Which model are you?")
    panel.get_by_role("button", name="Send").click()
    # the echo server's answer, and the footer naming the model that answered
    panel.locator(".widget-output", has_text="You said: Which model are you?").first.wait_for()
    footer = panel.locator(".widget-output summary", has_text=PICKED_MODEL).first
    footer.wait_for()
    panel.get_by_text("✓ done").first.wait_for()  # the status line
    footer.scroll_into_view_if_needed()
    _shot(pg, "3-panel")
    _shot(pg, "3-panel-cell", panel)

    # ... and the picked model is now the default of %%gemini cells as well.
    _run(pg, AFTER_PANEL)
    _wait_done(pg, AFTER_PANEL)
    after = _cell(pg, AFTER_PANEL)
    assert PICKED_MODEL in after.locator(".jp-Cell-outputArea summary").first.inner_text()

    # 3. An image model's answer is an <img> that the browser decoded.
    _run(pg, IMAGE)
    _wait_done(pg, IMAGE)
    image_cell = _cell(pg, IMAGE)
    img = image_cell.locator(".jp-Cell-outputArea img").first
    img.wait_for()
    width = img.evaluate("el => el.complete ? el.naturalWidth : 0")
    assert width > 0, "the image output did not decode in the browser"
    image_cell.scroll_into_view_if_needed()
    _shot(pg, "4-image")
    errors = [_output_text(_cell(pg, i)) for i in (LOAD, STREAM, PANEL, AFTER_PANEL, IMAGE)]
    assert not any("Error" in e or "Traceback" in e for e in errors), errors


def test_real_local_model_answers_in_the_browser(page):
    """One cell with the real local model (skipped when it is not installed)."""
    try:
        from gemini_magics.server.engines.local import find_model

        find_model()
    except Exception as exc:  # noqa: BLE001 - no xllamacpp or no weights here
        pytest.skip(f"the local model is not installed: {exc}")
    pg = page
    if not any(ch.isdigit() for ch in _prompt(_cell(pg, LOAD))):
        _run(pg, LOAD)
        _wait_done(pg, LOAD)
    _run(pg, ENGINE_LOCAL)
    _wait_done(pg, ENGINE_LOCAL)
    _run(pg, LOCAL)
    _wait_done(pg, LOCAL, LOCAL_MODEL_TIMEOUT_MS)
    cell = _cell(pg, LOCAL)
    text = _output_text(cell)
    assert "tokens" in text and "Error" not in text, text
    cell.scroll_into_view_if_needed()
    _shot(pg, "5-local-model")
