"""The teacher's console (`serve --keys FILE --teacher-key-env VAR`), batches owned per key, TLS.

Through a real server on a real socket (`start_server`, or `gemini-magics serve` as a child
process): the students use the real google-genai SDK, the teacher raw HTTP as a script (the
`x-goog-api-key` header) or as a browser would (the login form's cookie, an Origin header).
The echo engine answers.
"""
from __future__ import annotations

import base64
import datetime
import html
import io
import ipaddress
import logging
import os
import ssl
import subprocess
import sys
import time

import httpx
import pytest
from conftest import ROOT, sdk_env
from google import genai
from google.genai import _interactions as errors
from PIL import Image
from test_server_cli import Served, _fails

from gemini_magics.server import KeyRing, start_server

ALICE = "alice-7Qm2Vx9Lp4Rt8Kw3Zb6N"
BOB = "bob-Hq8sLd0Vn4Ue6WjA1fRo"
TEACHER = "teacher-Zx8Qw2Er5Ty7Ui9Op3Lk"
KEYS_TEXT = f"alice: {ALICE}\nbob: {BOB}\n"
TEACHER_ENV = "GM_TEST_TEACHER_KEY"
SLOW = "/words 300 delay=0.02"  # ~6 s unless cancelled


def ring(**quotas) -> KeyRing:
    return KeyRing.from_text(KEYS_TEXT, **quotas)


def sdk(srv, key):
    """A real google-genai client with a student's key (keep it in a variable)."""
    return genai.Client(api_key=key, http_options={"base_url": srv.base_url})


def as_(key):
    return {"x-goog-api-key": key}


def teacher(srv) -> httpx.Client:
    """A script of the teacher's: the key in the header."""
    return httpx.Client(base_url=srv.base_url, headers=as_(TEACHER), timeout=10)


def usage_of(console, label) -> dict:
    r = console.get("/teacher/api/usage")
    assert r.status_code == 200, r.text
    return next(s for s in r.json()["students"] if s["label"] == label)


def _one_sentence(message: str) -> None:
    assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message, message


def _png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture()
def classroom():
    with start_server(engine="echo", keys=ring(), teacher_key=TEACHER) as srv:
        yield srv


# -- what the teacher sees ---------------------------------------------------------------------

def test_the_teacher_sees_both_students_usage_and_transcripts(classroom):
    alice, bob = sdk(classroom, ALICE), sdk(classroom, BOB)
    first = alice.interactions.create(model="m", input="my first question")
    image = [{"type": "text", "text": "what is in this picture"},
             {"type": "image", "data": _png(), "mime_type": "image/png"}]
    second = alice.interactions.create(model="m", input=image, previous_interaction_id=first.id)
    bobs = bob.interactions.create(model="m", input="bob asks something")
    console = teacher(classroom)
    a, b = usage_of(console, "alice"), usage_of(console, "bob")
    assert a["requests"] == 2
    assert a["tokens"] == first.usage.total_tokens + second.usage.total_tokens
    assert b["requests"] == 1 and b["tokens"] == bobs.usage.total_tokens
    assert a["last_active"] and a["answering"] == 0 and not a["disabled"]
    assert a["cost"] is None and a["unpriced_tokens"] == a["tokens"]  # "m" has no known price
    assert a["fingerprint"] and a["fingerprint"] not in ALICE

    r = console.get("/teacher/api/students/alice/interactions")
    assert r.status_code == 200
    got = r.json()["interactions"]
    assert [i["id"] for i in got] == [second.id, first.id]  # newest first
    prompt = got[0]["steps"][0]
    assert prompt["type"] == "user_input" and prompt["content"][1]["data"] == image[1]["data"]
    assert got[0]["steps"][-1]["content"][0]["text"] == second.output_text
    assert got[1]["steps"][0]["content"][0]["text"] == "my first question"
    r = console.get("/teacher/api/students/bob/interactions")
    assert [i["id"] for i in r.json()["interactions"]] == [bobs.id]
    assert "my first question" not in r.text

    csv_text = console.get("/teacher/api/usage.csv").text.splitlines()
    assert csv_text[0].startswith("label,fingerprint,requests,tokens,cost,unpriced_tokens,"
                                  "token_budget")
    assert csv_text[1].startswith(f"alice,{a['fingerprint']},2,{a['tokens']},")


def test_a_student_answering_now_shows_as_answering(classroom):
    alice = sdk(classroom, ALICE)
    live = alice.interactions.create(model="m", input=SLOW, background=True)
    console = teacher(classroom)
    assert usage_of(console, "alice")["answering"] == 1
    assert usage_of(console, "bob")["answering"] == 0
    shown = console.get("/teacher/api/students/alice/interactions").json()["interactions"]
    assert shown[0]["id"] == live.id and shown[0]["status"] == "in_progress"
    alice.interactions.cancel(live.id)
    assert usage_of(console, "alice")["answering"] == 0


ROUTES = [("GET", "/teacher"), ("GET", "/teacher/"), ("GET", "/teacher/console.js"),
          ("GET", "/teacher/console.css"), ("GET", "/teacher/api/usage"),
          ("GET", "/teacher/api/usage.csv"), ("GET", "/teacher/api/students/alice/interactions"),
          ("PATCH", "/teacher/api/students/alice"), ("POST", "/teacher/api/students"),
          ("POST", "/teacher/logout"), ("GET", "/teacher/nothing-here")]


def test_every_console_route_is_401_without_the_teachers_key_and_403_to_a_student(classroom):
    alice = sdk(classroom, ALICE)
    alice.interactions.create(model="m", input="a secret of alice")
    body = {"token_budget": 1, "label": "eve"}
    for method, path in ROUTES:
        for how, code in [({}, 401), ({"headers": as_("an-unknown-key-1234567890")}, 401),
                          ({"headers": as_(ALICE)}, 403), ({"params": {"key": BOB}}, 403),
                          ({"cookies": {"gm_teacher": "made-up-session"}}, 401)]:
            r = httpx.request(method, classroom.base_url + path, json=body, timeout=10, **how)
            assert r.status_code == code, (method, path, how, r.text)
            assert "a secret of alice" not in r.text and "fingerprint" not in r.text
    # the page itself answers its 401 with the login form
    page = httpx.get(classroom.base_url + "/teacher", timeout=10)
    assert page.status_code == 401 and '<form method="post" action="/teacher/login">' in page.text
    assert httpx.get(classroom.base_url + "/teacher/api/usage", timeout=10).json()["error"][
        "status"] == "UNAUTHENTICATED"
    # nothing changed
    console = teacher(classroom)
    assert [s["label"] for s in console.get("/teacher/api/usage").json()["students"]] == \
        ["alice", "bob"]
    assert usage_of(console, "alice")["token_budget"] is None


def test_without_a_teachers_key_there_is_no_console():
    with start_server(engine="echo", keys=ring()) as srv:
        assert httpx.get(srv.base_url + "/teacher/api/usage", timeout=10).status_code == 401
        assert httpx.get(srv.base_url + "/teacher/api/usage", headers=as_(ALICE),
                         timeout=10).status_code == 404
    with pytest.raises(ValueError, match="goes with --keys"):
        start_server(engine="echo", teacher_key=TEACHER)
    for bad, words in [("short-key", "at least 16"), (ALICE, "also a student's key")]:
        with pytest.raises(ValueError, match=words):
            start_server(engine="echo", keys=ring(), teacher_key=bad)


# -- actions -----------------------------------------------------------------------------------

def test_a_budget_raised_in_the_console_lets_a_refused_student_continue_at_once():
    with start_server(engine="echo", keys=ring(tokens=20), teacher_key=TEACHER) as srv:
        alice = sdk(srv, ALICE)
        alice.interactions.create(model="m", input="hi there")
        alice.interactions.create(model="m", input="once more")
        with pytest.raises(errors.RateLimitError):
            alice.interactions.create(model="m", input="refused")
        console = teacher(srv)
        r = console.patch("/teacher/api/students/alice", json={"token_budget": 1000})
        assert r.status_code == 200 and r.json()["token_budget"] == 1000
        assert alice.interactions.create(model="m", input="go on").status == "completed"
        used = usage_of(console, "alice")["tokens"]
        assert usage_of(console, "alice")["budget_left"] == 1000 - used
        # lowered below what was used: refused again; null: back to the class budget
        console.patch("/teacher/api/students/alice", json={"token_budget": 5})
        with pytest.raises(errors.RateLimitError):
            alice.interactions.create(model="m", input="refused again")
        r = console.patch("/teacher/api/students/alice", json={"token_budget": None})
        assert r.json()["token_budget"] == 20 and not r.json()["own_budget"]
        assert usage_of(console, "bob")["token_budget"] == 20  # only alice's changed


def test_a_disabled_key_gets_401_at_its_next_request_and_works_again_when_enabled(classroom):
    alice = sdk(classroom, ALICE)
    made = alice.interactions.create(model="m", input="before")
    console = teacher(classroom)
    assert console.patch("/teacher/api/students/alice", json={"disabled": True}).json()["disabled"]
    with pytest.raises(errors.AuthenticationError) as exc:
        alice.interactions.get(made.id)
    assert "disabled" in str(exc.value)
    r = httpx.post(classroom.base_url + "/v1beta/interactions", json={"model": "m", "input": "x"},
                   headers=as_(ALICE), timeout=10)
    assert r.status_code == 401
    _one_sentence(r.json()["error"]["message"])
    bob = sdk(classroom, BOB)
    assert bob.interactions.create(model="m", input="bob is fine").status == "completed"
    console.patch("/teacher/api/students/alice", json={"disabled": False})
    assert alice.interactions.get(made.id).id == made.id


def test_a_new_students_key_works_at_once_and_is_shown_only_once(classroom):
    console = teacher(classroom)
    r = console.post("/teacher/api/students", json={"label": "dana"})
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    assert len(key) >= 16 and r.json()["label"] == "dana"
    dana = sdk(classroom, key)
    made = dana.interactions.create(model="m", input="dana's first")
    assert made.status == "completed"
    entry = usage_of(console, "dana")
    assert entry["requests"] == 1 and entry["added"] and "key" not in entry
    seen = "".join(console.get(p).text for p in (
        "/teacher/api/usage", "/teacher/api/usage.csv", "/teacher/api/students/dana/interactions"))
    assert key not in seen and key[:10] not in seen
    alice = sdk(classroom, ALICE)
    with pytest.raises(errors.NotFoundError):  # her own, like everyone's
        alice.interactions.get(made.id)
    for body, words in [({"label": "dana"}, "taken"), ({"label": "no spaces"}, "label"),
                        ({"label": 7}, "label"), ({}, "label"), ([], "JSON object")]:
        r = console.post("/teacher/api/students", json=body)
        assert r.status_code == 400 and words in r.json()["error"]["message"], (body, r.text)
        _one_sentence(r.json()["error"]["message"])


def test_bad_console_requests_get_one_sentence(classroom):
    console = teacher(classroom)
    for body in [{}, {"token_budget": -1}, {"token_budget": 1.5}, {"token_budget": True},
                 {"token_budget": "10"}, {"disabled": "yes"}, {"colour": "red"}, [1]]:
        r = console.patch("/teacher/api/students/alice", json=body)
        assert r.status_code == 400, (body, r.text)
        _one_sentence(r.json()["error"]["message"])
    r = console.patch("/teacher/api/students/alice", content=b"{not json")
    assert r.status_code == 400
    r = console.patch("/teacher/api/students/nobody", json={"disabled": True})
    assert r.status_code == 404 and "nobody" in r.json()["error"]["message"]
    for limit in ("0", "x", "1000", "-1"):
        r = console.get("/teacher/api/students/alice/interactions", params={"limit": limit})
        assert r.status_code == 400
        _one_sentence(r.json()["error"]["message"])
    assert usage_of(console, "alice")["token_budget"] is None  # nothing was changed


# -- the browser's way in: the login form, the cookie, same-origin changes ---------------------

def test_login_sets_a_strict_httponly_cookie_and_changes_need_the_consoles_origin(classroom):
    url = classroom.base_url
    browser = httpx.Client(base_url=url, timeout=10)
    for key, code, words in [("wrong-key-1234567890", 401, "not the teacher's key"),
                             (ALICE, 403, "a student's key")]:
        r = browser.post("/teacher/login", data={"key": key}, headers={"origin": url})
        assert r.status_code == code and "set-cookie" not in r.headers
        assert words in html.unescape(r.text)
    r = browser.post("/teacher/login", data={"key": TEACHER},
                     headers={"origin": "https://evil.example"})
    assert r.status_code == 403 and "set-cookie" not in r.headers
    r = browser.post("/teacher/login", data={"key": TEACHER}, headers={"origin": url})
    assert r.status_code == 303 and r.headers["location"] == "/teacher"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/teacher" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the TLS test
    page = browser.get("/teacher")
    assert page.status_code == 200 and "/teacher/console.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert browser.get("/teacher/api/usage").status_code == 200
    assert browser.get("/teacher/console.js").headers["content-type"].startswith("text/javascript")
    # a change with the cookie alone (another site's form or fetch) is refused
    for headers in ({}, {"origin": "https://evil.example"}, {"origin": "null"}):
        r = browser.patch("/teacher/api/students/alice", json={"disabled": True}, headers=headers)
        assert r.status_code == 403, r.text
        r = browser.post("/teacher/api/students", json={"label": "mallory"}, headers=headers)
        assert r.status_code == 403
    assert not usage_of(teacher(classroom), "alice")["disabled"]
    r = browser.patch("/teacher/api/students/alice", json={"disabled": True},
                      headers={"origin": url})
    assert r.status_code == 200 and r.json()["disabled"]
    browser.post("/teacher/logout", headers={"origin": url})
    assert browser.get("/teacher/api/usage").status_code == 401
    stale = httpx.get(url + "/teacher/api/usage", cookies={"gm_teacher": cookie.split(";")[0]
                                                           .split("=", 1)[1]}, timeout=10)
    assert stale.status_code == 401  # the logged-out session is gone on the server too


# -- what is kept ------------------------------------------------------------------------------

def test_console_changes_survive_a_restart_with_the_same_db(tmp_path):
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(KEYS_TEXT)
    db = tmp_path / "class.sqlite"
    args = ("--engine", "echo", "--port", "0", "--keys", str(keys_file), "--db", str(db),
            "--key-tokens", "1000", "--teacher-key-env", TEACHER_ENV)
    os.environ[TEACHER_ENV] = TEACHER  # Served's child inherits it
    try:
        s = Served(*args)
        try:
            console = httpx.Client(base_url=s.url, headers=as_(TEACHER), timeout=10)
            assert console.patch("/teacher/api/students/alice",
                                 json={"token_budget": 5000}).status_code == 200
            assert console.patch("/teacher/api/students/bob",
                                 json={"disabled": True}).status_code == 200
            dana_key = console.post("/teacher/api/students", json={"label": "dana"}).json()["key"]
            r = httpx.post(s.url + "/v1beta/interactions", json={"model": "m", "input": "hello"},
                           headers=as_(dana_key), timeout=10)
            assert r.status_code == 200
            dana_tokens = r.json()["usage"]["total_tokens"]
            code, out, err = s.stop()
            assert code == 0, err
            assert f"the teacher's console is at {s.url}/teacher" in err
            assert TEACHER not in out + err and dana_key not in out + err
        finally:
            s.kill()
        s = Served(*args)
        try:
            console = httpx.Client(base_url=s.url, headers=as_(TEACHER), timeout=10)
            students = {e["label"]: e for e in console.get("/teacher/api/usage").json()["students"]}
            assert students["alice"]["token_budget"] == 5000
            assert students["bob"]["disabled"] and students["dana"]["added"]
            assert students["dana"]["requests"] == 1 and students["dana"]["tokens"] == dana_tokens
            r = httpx.post(s.url + "/v1beta/interactions", json={"model": "m", "input": "again"},
                           headers=as_(dana_key), timeout=10)
            assert r.status_code == 200
            r = httpx.post(s.url + "/v1beta/interactions", json={"model": "m", "input": "x"},
                           headers=as_(BOB), timeout=10)
            assert r.status_code == 401
        finally:
            s.kill()
    finally:
        del os.environ[TEACHER_ENV]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("class"))
    assert dana_key.encode() not in raw and TEACHER.encode() not in raw


def test_serve_refuses_a_bad_teacher_key_or_tls_setup_in_one_sentence(tmp_path):
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(KEYS_TEXT)
    assert "goes with --keys" in _fails("--engine", "echo", "--teacher-key-env", "X")
    assert "not set" in _fails("--engine", "echo", "--keys", str(keys_file),
                               "--teacher-key-env", "GM_TEST_SURELY_UNSET_VAR")
    assert "both --certfile and --keyfile" in _fails("--engine", "echo", "--certfile", "c.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    assert "give a PEM certificate" in _fails("--engine", "echo", "--certfile", str(junk),
                                              "--keyfile", str(junk))
    assert "give a PEM certificate" in _fails("--engine", "echo", "--certfile",
                                              str(tmp_path / "missing.pem"), "--keyfile",
                                              str(junk))


# -- batches in classroom mode -----------------------------------------------------------------

def _ended(client, name):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = client.batches.get(name=name)
        if job.state.name in ("JOB_STATE_SUCCEEDED", "JOB_STATE_CANCELLED", "JOB_STATE_FAILED"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"{name} never ended")


def _rows(n):
    return [{"contents": [{"role": "user", "parts": [{"text": f"question {i}"}]}]}
            for i in range(n)]


def test_a_batch_is_404_for_another_key_and_counted_in_its_owners_budget():
    with start_server(engine="echo", keys=ring(tokens=60), teacher_key=TEACHER) as srv:
        alice, bob = sdk(srv, ALICE), sdk(srv, BOB)
        job = alice.batches.create(model="gemini-3.5-flash", src=_rows(2))
        done = _ended(alice, job.name)
        tokens = sum(a.response.usage_metadata.total_token_count
                     for a in done.dest.inlined_responses)
        assert tokens > 0
        for call in (lambda: bob.batches.get(name=job.name),
                     lambda: bob.batches.cancel(name=job.name),
                     lambda: bob.batches.delete(name=job.name)):
            with pytest.raises(Exception) as exc:
                call()
            assert getattr(exc.value, "code", None) == 404 or "404" in str(exc.value)
        assert job.name not in [b.name for b in bob.batches.list()]
        assert job.name in [b.name for b in alice.batches.list()]
        entry = usage_of(teacher(srv), "alice")
        assert entry["tokens"] == tokens and entry["requests"] == 2
        assert usage_of(teacher(srv), "bob")["tokens"] == 0
        # past the budget the rest of a batch is refused, one 429 error per request
        big = _ended(alice, alice.batches.create(model="gemini-3.5-flash", src=_rows(6)).name)
        answers = big.dest.inlined_responses
        refused = [a for a in answers if a.error is not None]
        assert refused and all(a.error.code == 429 for a in refused)
        assert answers[0].error is None and answers[-1].error is not None
        # and a new batch is refused at once, like a turn
        r = httpx.post(srv.base_url + "/v1beta/models/m:batchGenerateContent", headers=as_(ALICE),
                       json={"batch": {"inputConfig": {"requests": {"requests": [
                           {"request": {"contents": [{"parts": [{"text": "x"}]}]}}]}}}},
                       timeout=10)
        assert r.status_code == 429 and "token budget" in r.json()["error"]["message"]
        assert httpx.get(srv.base_url + "/v1beta/batches", timeout=10).status_code == 401


# -- TLS ---------------------------------------------------------------------------------------

def _certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gemini-magics test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem, key_pem = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(cert_pem), str(key_pem)


SDK_SCRIPT = """
import os
import ssl
from google import genai
client = genai.Client()
made = client.interactions.create(model="m", input="over tls")
print(made.output_text)
text = "".join(getattr(getattr(e, "delta", None), "text", None) or ""
               for e in client.interactions.create(model="m", input="/words 3", stream=True))
print(text)
"""


def _sdk_child(base_url, key, cert=None):
    env = sdk_env(base_url)
    env["GEMINI_API_KEY"] = key
    env.pop("SSL_CERT_FILE", None)
    if cert:
        env["SSL_CERT_FILE"] = cert
    return subprocess.run([sys.executable, "-c", SDK_SCRIPT], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_tls_serves_the_sdk_and_marks_the_cookie_secure(tmp_path):
    cert, key = _certificate(tmp_path)
    with start_server(engine="echo", keys=ring(), teacher_key=TEACHER, certfile=cert,
                      keyfile=key) as srv:
        assert srv.base_url.startswith("https://127.0.0.1:")
        ok = _sdk_child(srv.base_url, ALICE, cert)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.splitlines()[0].endswith("said: over tls")
        assert ok.stdout.splitlines()[1].endswith("w2 w3")  # streamed (w1 came in step.start)
        untrusted = _sdk_child(srv.base_url, ALICE)  # without the certificate: refused
        assert untrusted.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        with pytest.raises(httpx.HTTPError):  # and nothing is served in plain HTTP
            httpx.get(srv.base_url.replace("https", "http") + "/teacher/api/usage",
                      headers=as_(TEACHER), timeout=5)
        trusted = ssl.create_default_context(cafile=cert)
        browser = httpx.Client(base_url=srv.base_url, verify=trusted, timeout=10)
        r = browser.post("/teacher/login", data={"key": TEACHER}, headers={"origin": srv.base_url})
        assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]
        assert usage_of(browser, "alice")["requests"] == 2


def test_keys_over_plain_http_to_other_machines_get_a_one_line_warning(tmp_path, caplog):
    cert, key = _certificate(tmp_path)
    caplog.set_level(logging.WARNING, logger="gemini_magics.server")
    with start_server(engine="echo", host="0.0.0.0", keys=ring()):
        pass
    warned = [r.getMessage() for r in caplog.records if "plain HTTP" in r.getMessage()]
    assert len(warned) == 1 and "\n" not in warned[0] and "--certfile" in warned[0]
    caplog.clear()
    with start_server(engine="echo", host="0.0.0.0", keys=ring(), certfile=cert, keyfile=key):
        pass
    with start_server(engine="echo", keys=ring()):  # loopback
        pass
    assert not [r for r in caplog.records if "plain HTTP" in r.getMessage()]
