"""The magics in a real JupyterLab 4 and Notebook 7, driven in Debian's Chromium (headless) by
Playwright.

What a user sees, checked in the browser, in each frontend: a streaming `%%gemini` answer grows
on screen over several moments, a model picked in the `%gemini ui` panel is the one that answers
(the server echoes it back into the footer), an image model's answer shows as an `<img>`, the
panel's prompt box sends on Enter, a `%%gemini` cell's text is highlighted as Markdown (an
apostrophe does not open a Python string; adding `#` before the magic makes it Python again),
the saved notebook, reopened after its kernel is gone, shows no "Error displaying widget", and
(last) `%gemini fix` after a failing cell and a `%%gemini --code` cell each put their code into a
new cell below, and a cell sending an image and a file shows a 96 px thumbnail and a chip above
its answer (`fix-lab.png`, `code-nb7.png`, `thumb-lab.png`...).

One Jupyter server on 127.0.0.1 (with a token, in a temporary root) serves both frontends: it
is JupyterLab's, and Notebook 7's server extension adds `/notebooks/`. Each frontend opens its
own copy of `fixture.ipynb`; the kernels use the echo engine (`GEMINI_MAGICS_ENGINE=echo`) so
answers are fast and predictable; one last cell uses the real local model (JupyterLab only) when
it is installed. The gemini-magics JupyterLab extension (`gemini_magics/labextension/`, built by
`.ci/setup`) must be visible to the server. Screenshots go to `tests/artifacts/` (gitignored; CI
keeps the workspace): `browser-*.png` for JupyterLab, `browser-nb7-*.png` for Notebook 7.
Playwright never downloads a browser here: it launches `/usr/bin/chromium`.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
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
HIGHLIGHT_TIMEOUT_S = 10    # the editor's language follows an edit of the magic line
REOPEN_SETTLE_S = 1.5       # after the reopened page has settled, nothing may change for this long
# Variables that would send the kernel's requests somewhere else than its local server.
_SDK_ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI",
            "GEMINI_MAGICS_CASSETTE", "GEMINI_MAGICS_RECORD_MODE")
# The fixture notebook's cells (see fixture.ipynb).
LOAD, STREAM, PANEL, AFTER_PANEL, IMAGE, UI, ENGINE_LOCAL, LOCAL = 1, 2, 3, 4, 5, 6, 7, 8
# ... and the companion cells, run last (each answer's code goes into a new cell below it).
ECHO_AGAIN, FAILING, FIX, CODE, SENT = 9, 10, 11, 12, 13
FAILING_CODE = 'total = sum([1, 2, "3"])'
TIDIED_CODE = "def add(a,b): return a+b"   # the --code cell's fenced code, quoted back by echo
IMAGE_WIDTH = 512          # generated images are shown at most this wide (images.DISPLAY_WIDTH)
THUMB_HEIGHT = 96          # the thumbnail of a sent image (media.THUMB_HEIGHT)
# the files the SENT cell attaches, copied next to the notebooks
ATTACHED = (ROOT / "notebooks" / "sample.jpg", ROOT / "tests" / "data" / "table.csv")
PICKED_MODEL = "gemini-2.5-flash-lite"
APOSTROPHE_LINE = "Tell me about the robot's day"   # the `%%gemini --ui` cell's prompt
ENTER_PROMPT = "Sent with the Enter key"
WIDGET_ERROR = "Error displaying widget"
# frontend -> (page path of its notebook copy, screenshot prefix)
FRONTENDS = {"lab": ("lab/tree/fixture.ipynb", ""),
             "notebook": ("notebooks/fixture-nb7.ipynb", "nb7-")}
SHOT_SUFFIX = {"lab": "lab", "notebook": "nb7"}  # fix-lab.png, fix-nb7.png, ...
EXTENSION = "gemini-magics"  # the JupyterLab extension's name (gemini_magics/labextension)

# JupyterLab's own network chatter (news, update checks) off, so the page never waits on it.
_NOTIFICATION_SETTINGS = '{"fetchNews": "false", "checkForUpdates": false, "doNotDisturbMode": true}'

# The colour of a string token in the cell editor, and the text runs of one editor line with
# the colour and classes of the element around each run (CodeMirror 6 token spans).
_LINE_RUNS_JS = """([cellIndex, needle]) => {
  const probe = document.createElement('span');
  probe.style.color = 'var(--jp-mirror-editor-string-color)';
  document.body.appendChild(probe);
  const stringColor = getComputedStyle(probe).color;
  probe.remove();
  const cells = document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell');
  const line = [...cells[cellIndex].querySelectorAll('.cm-content .cm-line')]
    .find(l => l.textContent.replace(/^#/, '').includes(needle));
  if (!line) return { stringColor, runs: null };
  const runs = [];
  const walk = document.createTreeWalker(line, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const el = walk.currentNode.parentElement;
    runs.push({ text: walk.currentNode.textContent, cls: el === line ? '' : el.className,
                color: getComputedStyle(el).color });
  }
  return { stringColor, runs };
}"""


@dataclass
class Front:
    """One frontend's page: the Playwright page, its name and its notebook's file name."""
    pg: object
    name: str
    notebook: str
    prefix: str


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


def _extension_installed() -> bool:
    from jupyter_core.paths import jupyter_path

    return any((Path(d) / EXTENSION / "package.json").exists()
               for d in jupyter_path("labextensions"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A Jupyter server (JupyterLab + Notebook 7) on loopback: (base URL, token, root dir)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the browser test "
                    f"needs Debian's Chromium")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed")
    if not _extension_installed():
        pytest.fail(f"the {EXTENSION} JupyterLab extension is not installed: run `bash .ci/setup` "
                    f"(it builds gemini_magics/labextension with npm and links it into the venv)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    root.mkdir()
    for path, _prefix in FRONTENDS.values():
        shutil.copy(HERE / "fixture.ipynb", root / path.rsplit("/", 1)[1])
    for attached in ATTACHED:
        shutil.copy(attached, root / attached.name)
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


@pytest.fixture(scope="module", params=list(FRONTENDS), ids=["jupyterlab", "notebook7"])
def page(request, lab, tmp_path_factory):
    """A Chromium page with this frontend's copy of the fixture notebook open, kernel idle."""
    from playwright.sync_api import sync_playwright

    name = request.param
    if name == "notebook":
        pytest.importorskip("notebook", reason="Notebook 7 is not installed (pip install notebook)")
    path, prefix = FRONTENDS[name]
    url, token, _ = lab
    profile = tmp_path_factory.mktemp(f"chromium-profile-{name}")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900}, timeout=UI_TIMEOUT_MS)
        front = None
        try:
            context.set_default_timeout(UI_TIMEOUT_MS)
            pg = context.pages[0] if context.pages else context.new_page()
            console: list = []
            pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            pg.goto(f"{url}/{path}?token={token}")
            front = Front(pg, name, path.rsplit("/", 1)[1], prefix)
            _wait_loaded(pg)
            yield front
        finally:  # what the page looked like at the end, to diagnose a failure in CI
            try:
                (ARTIFACTS / f"browser-{prefix}console.log").write_text("\n".join(console))
                (ARTIFACTS / f"browser-{prefix}last-page.html").write_text(pg.content())
                _shot(front or Front(pg, name, "", prefix), "last-page")
            except Exception:  # noqa: BLE001 - diagnostics only
                pass
            context.close()


def _wait_loaded(pg) -> None:
    _cell(pg, LOCAL).wait_for()
    _wait_idle(pg)


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


def _notebook_text(pg) -> str:
    return pg.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").inner_text()


def _shot(front: Front, name: str, element=None) -> None:
    (element or front.pg).screenshot(path=str(ARTIFACTS / f"browser-{front.prefix}{name}.png"))


def _api(lab, method: str, path: str):
    import httpx

    url, token, _ = lab
    resp = httpx.request(method, f"{url}{path}", params={"token": token}, timeout=10)
    resp.raise_for_status()
    return resp.json() if resp.content else None


def test_streaming_panel_and_image(page):
    pg = page.pg
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
                _shot(page, "1-streaming")
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
    (ARTIFACTS / f"browser-{page.prefix}stream-samples.txt").write_text(
        f"output text length every {SAMPLE_EVERY_S} s while the cell ran: {samples}; "
        f"final {len(final)}\n")
    _shot(page, "2-streamed")

    # 2. Pick a model in the panel (type it in the Combobox), Send, and see it answer.
    _run(pg, PANEL)
    _wait_done(pg, PANEL)
    panel = _cell(pg, PANEL)
    combo = panel.get_by_label("Model")  # the Combobox: a text input with a datalist
    combo.wait_for()
    combo.fill(PICKED_MODEL)
    combo.press("Enter")  # continuous_update=False: the value is sent on Enter
    # the kernel took it: the panel says so ("Later %%gemini cells now use model X ...")
    panel.get_by_text(re.compile(rf"(Model: |use model ){re.escape(PICKED_MODEL)}")).wait_for()
    panel.get_by_placeholder("Ask Gemini").fill("Which model are you?")
    panel.get_by_role("button", name="Send").click()
    # the echo server's answer, and the footer naming the model that answered
    panel.locator(".widget-output", has_text="You said: Which model are you?").first.wait_for()
    footer = panel.locator(".widget-output summary", has_text=PICKED_MODEL).first
    footer.wait_for()
    panel.get_by_text("✓ done").first.wait_for()  # the status line
    footer.scroll_into_view_if_needed()
    _shot(page, "3-panel")
    _shot(page, "3-panel-cell", panel)

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
    shown = img.evaluate("el => el.getBoundingClientRect().width")
    assert width > IMAGE_WIDTH and 0 < shown <= IMAGE_WIDTH, (width, shown)  # readable, whole
    image_cell.scroll_into_view_if_needed()
    _shot(page, "4-image")
    errors = [_output_text(_cell(pg, i)) for i in (LOAD, STREAM, PANEL, AFTER_PANEL, IMAGE)]
    assert not any("Error" in e or "Traceback" in e for e in errors), errors


def test_panel_prompt_sends_on_enter(page):
    """Enter in the panel's prompt box sends (Shift+Enter would add a line).

    Needs widgets.py's Enter-to-send prompt box (an anywidget textarea); with a plain
    ipywidgets Textarea, Enter only adds a line and this test times out waiting for the answer.
    """
    pg = page.pg
    panel = _cell(pg, PANEL)
    box = panel.get_by_placeholder("Ask Gemini")
    box.scroll_into_view_if_needed()
    box.click()
    box.press_sequentially(ENTER_PROMPT)
    box.press("Enter")
    panel.locator(".widget-output", has_text=f"You said: {ENTER_PROMPT}").first.wait_for()
    panel.get_by_text("✓ done").first.wait_for()
    assert box.input_value() in ("", ENTER_PROMPT), box.input_value()  # no newline was added
    _shot(page, "5-panel-enter", panel)


def _line_runs(pg, index: int) -> dict:
    return pg.evaluate(_LINE_RUNS_JS, [index, APOSTROPHE_LINE])


def _string_runs(info: dict) -> list:
    """The runs of the apostrophe's line coloured as a Python string."""
    return [r for r in info["runs"] or () if r["color"] == info["stringColor"]]


def _wait_line(pg, index: int, python: bool) -> dict:
    """Wait until the apostrophe's line is (python=True) or is not styled as a Python string."""
    deadline = time.monotonic() + HIGHLIGHT_TIMEOUT_S
    while True:
        info = _line_runs(pg, index)
        if info["runs"] is not None and bool(_string_runs(info)) == python:
            return info
        if time.monotonic() > deadline:
            return info
        time.sleep(0.2)


def test_gemini_cell_is_edited_as_markdown(page):
    """The `%%gemini --ui` cell's prompt is highlighted as Markdown: its apostrophe opens no
    Python string; with `#` typed before the magic the cell is Python (the same line then has a
    string-coloured run, so the check can see one), and deleting the `#` makes it Markdown again."""
    pg = page.pg
    cell = _cell(pg, UI)
    cell.scroll_into_view_if_needed()
    record = {}

    markdown = _wait_line(pg, UI, python=False)
    record["with %%gemini"] = markdown
    assert markdown["runs"], f"no editor line holds {APOSTROPHE_LINE!r}"
    assert not _string_runs(markdown), (
        f"the %%gemini prompt is styled as a Python string (is the {EXTENSION} extension "
        f"loaded?): {markdown}")
    _shot(page, "6-markdown-cell", cell)

    cell.locator(".cm-content").click()
    pg.keyboard.press("Control+Home")
    pg.keyboard.type("#")
    python = _wait_line(pg, UI, python=True)
    record["with #%%gemini"] = python
    strings = _string_runs(python)
    assert strings and any("'" in r["text"] for r in strings), (
        f"with the magic commented out, the line is not highlighted as Python: {python}")

    pg.keyboard.press("Backspace")
    again = _wait_line(pg, UI, python=False)
    record["with %%gemini again"] = again
    (ARTIFACTS / f"browser-{page.prefix}highlight.json").write_text(json.dumps(record, indent=1))
    assert not _string_runs(again), f"removing the # did not bring Markdown back: {again}"
    pg.keyboard.press("Escape")  # command mode: the next steps click and type elsewhere


def _save(front: Front, root: Path) -> dict:
    """Save the notebook (Ctrl+S) and return what is on disk once the write has finished.

    The file is read from disk, not through the contents API: a GET of a notebook that is
    being written (atomic writing) can find it unreadable and make the server restore the
    previous version.
    """
    path = root / front.notebook
    intermediate = root / f".~{front.notebook}"
    before = path.stat().st_mtime_ns
    front.pg.keyboard.press("Escape")
    front.pg.keyboard.press("Control+s")
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while True:
        time.sleep(0.2)
        if path.stat().st_mtime_ns != before and not intermediate.exists():
            try:
                return json.loads(path.read_text())
            except ValueError:  # still being written
                pass
        assert time.monotonic() < deadline, "the notebook was not saved (Ctrl+S)"


def _wait_panel_settled(pg) -> bool:
    """After a reload: wait until the panel's output shows the live panel, its text line or an
    error (no "Loading widget..." anywhere); return whether an error was seen meanwhile."""
    panel = _cell(pg, PANEL)
    seen_error = False
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while True:
        text = _notebook_text(pg)
        seen_error = seen_error or WIDGET_ERROR in text
        panel_text = _output_text(panel)
        live = panel.locator(".gemini-panel").count() > 0
        if "Loading widget" not in text and (live or "Gemini panel (" in panel_text
                                             or WIDGET_ERROR in panel_text):
            return seen_error
        assert time.monotonic() < deadline, f"the reopened panel did not settle: {panel_text!r}"
        time.sleep(0.2)


def test_saved_notebook_reopens_without_widget_errors(page, lab):
    """Run the `--ui` cell and save. Reload with the kernel still running: the panel is live.
    Shut the kernel down and reload: no "Error displaying widget" anywhere; the panel shows its
    text line (its widget lived in the kernel that is gone) above its saved transcript, and the
    `--ui` cell shows its answer."""
    pg = page.pg
    root = lab[2]
    _run(pg, UI)
    _wait_done(pg, UI)
    ui = _cell(pg, UI)
    ui.locator(".jp-Cell-outputArea", has_text=f"You said: {APOSTROPHE_LINE}").wait_for()
    ui.locator(".jp-Cell-outputArea summary").first.wait_for()  # the footer: the answer ended
    _shot(page, "7-ui-cell", ui)

    saved = _save(page, root)
    saved_text = json.dumps(saved["cells"][UI]["outputs"])
    assert "You said: Tell me about the robot" in saved_text, saved_text[:2000]

    # The kernel still runs: the reloaded page shows the same live panel (its widgets are in
    # the kernel), which still answers.
    pg.reload()
    _wait_loaded(pg)
    _wait_panel_settled(pg)
    panel = _cell(pg, PANEL)
    assert panel.locator(".gemini-panel").count(), (
        f"after a reload with the kernel running the panel is not live: {_output_text(panel)!r}")

    sessions = [s for s in _api(lab, "GET", "/api/sessions") if s["path"] == page.notebook]
    assert sessions, "no kernel session for the notebook"
    for s in sessions:
        _api(lab, "DELETE", f"/api/sessions/{s['id']}")  # shuts its kernel down

    pg.reload()
    _wait_loaded(pg)  # the same notebook from disk, with a new kernel that knows no widgets
    seen_error = _wait_panel_settled(pg)
    time.sleep(REOPEN_SETTLE_S)
    text = _notebook_text(pg)
    panel.scroll_into_view_if_needed()
    _shot(page, "8-reopened")
    _shot(page, "8-reopened-panel", panel)
    (ARTIFACTS / f"browser-{page.prefix}reopened.txt").write_text(
        f"'{WIDGET_ERROR}' seen at any moment while the page settled: {seen_error}\n\n{text}\n")
    assert WIDGET_ERROR not in text, text
    assert "Gemini panel (" in _output_text(panel), _output_text(panel)  # its text line
    assert "Gemini panel:" in _output_text(panel), _output_text(panel)  # the saved transcript
    assert f"You said: {APOSTROPHE_LINE}" in _output_text(_cell(pg, UI))
    assert "Traceback" not in text


def test_real_local_model_answers_in_the_browser(page):
    """One cell with the real local model (skipped when it is not installed), in JupyterLab.

    Runs after the reopen test: its kernel is a fresh one, so the extension is loaded again.
    """
    if page.name != "lab":
        pytest.skip("the local model is checked once, in the JupyterLab page")
    try:
        from gemini_magics.server.engines.local import find_model

        find_model()
    except Exception as exc:  # noqa: BLE001 - no xllamacpp or no weights here
        pytest.skip(f"the local model is not installed: {exc}")
    pg = page.pg
    for index in (LOAD, ENGINE_LOCAL):
        _run(pg, index)
        _wait_done(pg, index)
    _run(pg, LOCAL)
    _wait_done(pg, LOCAL, LOCAL_MODEL_TIMEOUT_MS)
    cell = _cell(pg, LOCAL)
    text = _output_text(cell)
    assert "tokens" in text and "Error" not in text, text
    cell.scroll_into_view_if_needed()
    _shot(page, "9-local-model")



def _editor_text(cell) -> str:
    return cell.locator(".cm-content").inner_text()


def _wait_for_cell(pg, index: int, text: str):
    """The cell at `index` once its editor holds `text` (a cell the kernel adds appears a
    moment after its answer)."""
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while True:
        cells = pg.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")
        if cells.count() > index and text in _editor_text(cells.nth(index)):
            return cells.nth(index)
        assert time.monotonic() < deadline, f"no new cell with {text!r} at {index}"
        time.sleep(0.2)


def _shot_named(front: Front, name: str, element=None) -> Path:
    """fix-lab.png, code-nb7.png, ...: the screenshots the README and reviewers look at."""
    path = ARTIFACTS / f"{name}-{SHOT_SUFFIX[front.name]}.png"
    (element or front.pg).screenshot(path=str(path))
    return path


def test_fix_and_code_put_the_code_in_a_new_cell_below(page):
    """`%gemini fix` after a failing cell and a `%%gemini --code` cell: each answer's code
    appears in a new cell right below, not run; then a cell that sends an image and a file
    shows their thumbnail and chip above the answer. Runs last: its kernel is a fresh one
    (after the reopen test), with the echo engine again."""
    pg = page.pg
    for index in (ECHO_AGAIN, FAILING):
        _run(pg, index)
        _wait_done(pg, index)
    assert "TypeError" in _output_text(_cell(pg, FAILING))

    _run(pg, FIX)
    _wait_done(pg, FIX)
    fixed = _wait_for_cell(pg, FIX + 1, FAILING_CODE)
    assert "explain" in _output_text(_cell(pg, FIX)).lower()  # the answer, above the new cell
    assert not any(ch.isdigit() for ch in _prompt(fixed)), "the new cell was run"
    fixed.scroll_into_view_if_needed()
    _cell(pg, FIX).scroll_into_view_if_needed()
    _shot_named(page, "fix")

    code = CODE + 1  # the fix's new cell is above it now
    _run(pg, code)
    _wait_done(pg, code)
    tidied = _wait_for_cell(pg, code + 1, TIDIED_CODE)
    assert _editor_text(tidied).strip() == TIDIED_CODE
    assert not any(ch.isdigit() for ch in _prompt(tidied)), "the new cell was run"
    tidied.scroll_into_view_if_needed()
    _shot_named(page, "code")

    sent = code + 2
    _run(pg, sent)
    _wait_done(pg, sent)
    cell = _cell(pg, sent)
    thumb = cell.locator(".gemini-sent img").first
    thumb.wait_for()
    size = thumb.evaluate("el => [el.complete ? el.naturalWidth : 0, "
                          "el.clientHeight]")
    assert size[0] > 0 and abs(size[1] - THUMB_HEIGHT) < 2, size
    out = _output_text(cell)
    assert "sample.jpg" in out and "table.csv · CSV ·" in out, out
    assert out.index("sample.jpg · ") < out.index("You said: [Attached image"), out
    cell.scroll_into_view_if_needed()
    _shot_named(page, "thumb", cell)
    assert "GeminiError" not in _notebook_text(pg)  # every %gemini cell answered
