"""The teacher's console in Debian's Chromium (headless, Playwright; no browser is downloaded).

A classroom server (echo engine) on 127.0.0.1 with two students and the teacher's key: the
teacher logs in through the form, sees the class table update by itself while both students
stream (their rows say "answering now", then their tokens grow, without a reload), opens a
student's conversations (the prompt, the answer, the picture as a thumbnail), changes a budget
and adds a student whose key is shown once and works at once. Screenshots go to
`tests/artifacts/console-*.png`.
"""
from __future__ import annotations

import base64
import io
import os
import threading

import pytest
from google import genai
from google.genai import _interactions as errors
from PIL import Image

from gemini_magics.server import KeyRing, start_server

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
UI_TIMEOUT_MS = 30_000
ALICE = "alice-7Qm2Vx9Lp4Rt8Kw3Zb6N"
BOB = "bob-Hq8sLd0Vn4Ue6WjA1fRo"
TEACHER = "teacher-Zx8Qw2Er5Ty7Ui9Op3Lk"
STREAM = "/words 120 delay=0.05"  # ~6 s: long enough to be seen answering


def _shot(pg, name: str) -> None:
    os.makedirs(ARTIFACTS, exist_ok=True)
    pg.screenshot(path=os.path.join(ARTIFACTS, f"console-{name}.png"), full_page=True)


def _picture() -> str:
    img = Image.new("RGB", (96, 64), "#2b6cb0")
    for x in range(20, 76):
        for y in range(16, 48):
            img.putpixel((x, y), (250, 200, 40))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _row(pg, label):
    return pg.locator(f'#class tbody tr[data-label="{label}"]')


@pytest.fixture()
def classroom():
    keys = KeyRing.from_text(f"alice: {ALICE}\nbob: {BOB}\n", tokens=5000)
    with start_server(engine="echo", keys=keys, teacher_key=TEACHER) as srv:
        yield srv


@pytest.fixture()
def pg(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1480, "height": 900})
            page.set_default_timeout(UI_TIMEOUT_MS)
            problems: list = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            yield page
            assert not [e for e in problems if "401" not in e], problems  # the login page's
        finally:
            browser.close()


def test_the_console_in_a_browser(classroom, pg):
    alice, bob = (genai.Client(api_key=k, http_options={"base_url": classroom.base_url})
                  for k in (ALICE, BOB))
    first = alice.interactions.create(model="m", input=[
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image", "data": _picture(), "mime_type": "image/png"}])
    assert first.status == "completed"

    # log in
    pg.goto(classroom.base_url + "/teacher")
    pg.locator("#key").wait_for()
    _shot(pg, "login")
    pg.fill("#key", TEACHER)
    pg.click("button[type=submit]")
    _row(pg, "alice").wait_for()
    _row(pg, "bob").wait_for()
    assert pg.url.endswith("/teacher")
    pg.evaluate("window.__notReloaded = true")

    # the table updates by itself while both students stream
    def stream(client, model):
        for _ in client.interactions.create(model=model, input=STREAM, stream=True):
            pass

    # bob's model has a known price, alice's ("m") none
    threads = [threading.Thread(target=stream, args=(c, m))
               for c, m in ((alice, "m"), (bob, "gemini-2.5-flash"))]
    for t in threads:
        t.start()
    try:
        pg.wait_for_function("""() => ['alice', 'bob'].every(l =>
            document.querySelector(`#class tr[data-label="${l}"] .status.answering`))""")
        _shot(pg, "streaming")
    finally:
        for t in threads:
            t.join(30)
    pg.wait_for_function("""() => {
        const cell = document.querySelector('#class tr[data-label="bob"] td.col-tokens');
        return cell && Number(cell.textContent.replace(/,/g, '')) > 100
            && !document.querySelector('#class .status.answering'); }""")
    assert pg.evaluate("window.__notReloaded") is True
    tokens = classroom.keys.by_label("bob").used
    assert _row(pg, "bob").locator("td.col-tokens").inner_text().replace(",", "") == str(tokens)
    assert _row(pg, "bob").locator("td.col-cost").inner_text().startswith("$0.000")
    assert _row(pg, "alice").locator("td.col-cost").inner_text().endswith(" tokens unpriced")
    _shot(pg, "after-streams")

    # a student's conversations: the prompt, the picture as a thumbnail, the answer
    _row(pg, "alice").get_by_role("button", name="Conversations").click()
    pg.locator("#transcript-list article").nth(1).wait_for()
    oldest = pg.locator("#transcript-list article").nth(1)
    assert "What is in this picture?" in oldest.inner_text()
    thumb = oldest.locator("img")
    assert thumb.evaluate("i => i.complete && i.naturalWidth") == 96
    assert 0 < thumb.bounding_box()["width"] <= 160
    assert first.output_text[:20] in oldest.inner_text()
    pg.locator("#transcripts").scroll_into_view_if_needed()
    _shot(pg, "transcript")

    # a budget change takes effect at once
    _row(pg, "alice").locator("input.budget").fill("100")
    _row(pg, "alice").get_by_role("button", name="Set").click()
    pg.wait_for_function("""() => document.querySelector(
        '#class tr[data-label="alice"] td.col-meter').textContent.includes('/ 100')""")
    student = classroom.keys.by_label("alice")
    assert classroom.keys.budget_of(student) == 100
    with pytest.raises(errors.RateLimitError):
        alice.interactions.create(model="m", input="over the new budget")

    # a new student: the key is shown once and works at once
    pg.fill("#new-label", "dana")
    pg.click("#add button[type=submit]")
    pg.locator("#new-key code").wait_for()
    key = pg.locator("#new-key code").inner_text()
    _row(pg, "dana").wait_for()
    _shot(pg, "budget-and-new-student")
    dana = genai.Client(api_key=key, http_options={"base_url": classroom.base_url})
    assert dana.interactions.create(model="m", input="hi").status == "completed"
