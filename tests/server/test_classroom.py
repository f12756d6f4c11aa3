"""Classroom mode (`serve --keys FILE`): a key per student, isolated interactions, quotas.

Through a real server (`start_server`, or `gemini-magics serve` as a child process) with the
real google-genai SDK, raw httpx and the `%%gemini` magic; the echo engine answers.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest
from conftest import ROOT, sdk_env
from google import genai
from google.genai import _interactions as errors
from magics_fixtures import magics_of, run_cell, shell  # noqa: F401 - the fixture
from test_server_cli import Served, _fails

from gemini_magics.server import KeyRing, start_server
from gemini_magics.server.classroom import key_id
from gemini_magics.server.store import Store

ALICE = "alice-7Qm2Vx9Lp4Rt8Kw3Zb6N"
BOB = "bob-Hq8sLd0Vn4Ue6WjA1fRo"
CAROL = "Yt3kP9bN2cM7xQ5zR8wDcarol"
KEYS_TEXT = f"# period 3\nalice: {ALICE}\n\nbob:   {BOB}\n{CAROL}\n"
SLOW = "/words 300 delay=0.02"  # ~6 s unless cancelled
RATE_SENTENCE = "This key is over its rate limit of 2 requests per minute"
BUDGET_SENTENCE = "This key has used up its token budget"


def ring(**quotas) -> KeyRing:
    return KeyRing.from_text(KEYS_TEXT, **quotas)


def sdk(srv, key):
    """A real google-genai client with a student's key (keep it in a variable)."""
    return genai.Client(api_key=key, http_options={"base_url": srv.base_url})


def api(srv, path=""):
    return srv.base_url + "/v1beta/interactions" + path


def as_(key):
    return {"x-goog-api-key": key}


@pytest.fixture()
def classroom():
    with start_server(engine="echo", keys=ring()) as srv:
        yield srv


def _poll(client, iid, until, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = client.interactions.get(iid)
        if until(got):
            return got
        time.sleep(0.02)
    raise AssertionError(f"{iid} never reached the state")


# -- keys --------------------------------------------------------------------------------------

def test_missing_or_unknown_key_is_401_and_either_header_or_query_key_works(classroom):
    body = {"model": "m", "input": "hi"}
    for headers in ({}, as_("not-a-classroom-key-at-all"), as_(ALICE + "x")):
        r = httpx.post(api(classroom), json=body, headers=headers, timeout=10)
        assert r.status_code == 401, r.text
        err = r.json()["error"]
        assert err["code"] == 401 and err["status"] == "UNAUTHENTICATED"
        assert "x-goog-api-key" in err["message"]
    assert httpx.get(api(classroom, "/v1_x"), timeout=10).status_code == 401
    made = httpx.post(api(classroom), json=body, headers=as_(ALICE), timeout=10)
    assert made.status_code == 200
    iid = made.json()["id"]
    by_query = httpx.get(api(classroom, f"/{iid}"), params={"key": ALICE}, timeout=10)
    assert by_query.status_code == 200
    unlabelled = httpx.post(api(classroom), params={"key": CAROL}, json=body, timeout=10)
    assert unlabelled.status_code == 200
    with pytest.raises(errors.AuthenticationError):
        stranger = sdk(classroom, "an-unknown-key-1234567890")
        stranger.interactions.create(model="m", input="hi")


def test_another_key_gets_404_for_everything_the_first_made(classroom):
    alice, bob = sdk(classroom, ALICE), sdk(classroom, BOB)
    first = alice.interactions.create(model="m", input="remember the dogs")
    with pytest.raises(errors.NotFoundError):
        bob.interactions.get(first.id)
    with pytest.raises(errors.NotFoundError) as exc:
        bob.interactions.create(model="m", input="and?", previous_interaction_id=first.id)
    assert "previous_interaction_id" in str(exc.value)
    with pytest.raises(errors.NotFoundError):
        bob.interactions.cancel(first.id)
    with pytest.raises(errors.NotFoundError):
        bob.interactions.delete(first.id)
    replay = httpx.get(api(classroom, f"/{first.id}"), params={"stream": "true"},
                       headers=as_(BOB), timeout=10)
    assert replay.status_code == 404
    # Bob's 404 says the same as for an id that never existed (nothing to probe)
    missing = httpx.get(api(classroom, "/v1_never"), headers=as_(BOB), timeout=10)
    assert replay.json()["error"]["message"].replace(first.id, "X") == \
        missing.json()["error"]["message"].replace("v1_never", "X")
    # ... and the owner still has it all
    again = alice.interactions.get(first.id)
    assert again.output_text == first.output_text
    streamed = httpx.get(api(classroom, f"/{first.id}"), params={"stream": "true"},
                         headers=as_(ALICE), timeout=10)
    assert streamed.status_code == 200 and "interaction.completed" in streamed.text
    nxt = alice.interactions.create(model="m", input="and now?", previous_interaction_id=first.id)
    assert nxt.output_text.startswith("Echo: I saw 2 user turns and 1 model turn.")
    alice.interactions.delete(first.id)
    with pytest.raises(errors.NotFoundError):
        alice.interactions.get(first.id)


def test_a_running_turn_is_invisible_to_another_key(classroom):
    alice, bob = sdk(classroom, ALICE), sdk(classroom, BOB)
    live = alice.interactions.create(model="m", input=SLOW, background=True)
    assert live.status == "in_progress"
    for call in (lambda: bob.interactions.get(live.id), lambda: bob.interactions.cancel(live.id),
                 lambda: bob.interactions.delete(live.id)):
        with pytest.raises(errors.NotFoundError):
            call()
    r = httpx.get(api(classroom, f"/{live.id}"), params={"stream": "true"}, headers=as_(BOB),
                  timeout=10)
    assert r.status_code == 404
    assert alice.interactions.get(live.id).status == "in_progress"  # bob stopped nothing
    # fair worker slots go by key, not by connection
    job = classroom.service._jobs[live.id]
    assert job.client == "key " + key_id(ALICE)
    assert alice.interactions.cancel(live.id).status == "cancelled"


# -- quotas ------------------------------------------------------------------------------------

def test_rate_overrun_is_a_429_with_one_sentence_retry_after_and_retry_info():
    with start_server(engine="echo", keys=ring(rate=2)) as srv:
        body = {"model": "m", "input": "hi"}
        made = [httpx.post(api(srv), json=body, headers=as_(ALICE), timeout=10) for _ in range(2)]
        assert [r.status_code for r in made] == [200, 200]
        for _ in range(3):  # reads do not count
            assert httpx.get(api(srv, "/" + made[0].json()["id"]), headers=as_(ALICE),
                             timeout=10).status_code == 200
        r = httpx.post(api(srv), json=body, headers=as_(ALICE), timeout=10)
        assert r.status_code == 429, r.text
        err = r.json()["error"]
        assert err["status"] == "RESOURCE_EXHAUSTED" and err["code"] == 429
        assert err["message"].startswith(RATE_SENTENCE)
        assert err["message"].count(".") == 1 and err["message"].endswith(".")  # one sentence
        wait = int(r.headers["retry-after"])
        assert 1 <= wait <= 60
        assert err["details"] == [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                   "retryDelay": f"{wait}s"}]
        assert f"retry in {wait} s" in err["message"]
        # another key has its own rate
        assert httpx.post(api(srv), json=body, headers=as_(BOB), timeout=10).status_code == 200


def test_the_rate_window_slides():
    now = [1000.0]
    keys = ring(rate=2, clock=lambda: now[0])
    alice = keys.identify(ALICE)
    keys.admit(alice)
    now[0] += 30
    keys.admit(alice)
    with pytest.raises(Exception) as exc:
        keys.admit(alice)
    assert exc.value.code == 429 and exc.value.retry_after == 30
    now[0] += 30.5  # the first has left the window
    keys.admit(alice)


def test_token_budget_overrun_is_a_429_with_one_sentence():
    with start_server(engine="echo", keys=ring(tokens=20)) as srv:
        alice = sdk(srv, ALICE)
        first = alice.interactions.create(model="m", input="hi there")  # ~16 tokens
        assert 0 < first.usage.total_tokens < 20
        second = alice.interactions.create(model="m", input="once more")  # still under: runs
        used = first.usage.total_tokens + second.usage.total_tokens
        r = httpx.post(api(srv), json={"model": "m", "input": "x"}, headers=as_(ALICE), timeout=10)
        assert r.status_code == 429, r.text
        err = r.json()["error"]
        assert err["status"] == "RESOURCE_EXHAUSTED"
        assert err["message"] == (f"{BUDGET_SENTENCE} of 20 tokens ({used} used); ask "
                                  f"whoever runs this server to raise it (the teacher's console, or "
                                  f"--key-tokens).")
        assert "retry-after" not in r.headers and "details" not in err
        # streaming creates are refused the same way, before any stream starts
        r = httpx.post(api(srv), params={"alt": "sse"}, json={"model": "m", "input": "x"},
                       headers=as_(ALICE), timeout=10)
        assert r.status_code == 429 and r.headers["content-type"].startswith("application/json")
        # reading what was made still works, and another key has its own budget
        assert alice.interactions.get(first.id).output_text == first.output_text
        bob = sdk(srv, BOB)
        assert bob.interactions.create(model="m", input="hi").status == "completed"


def test_tokens_used_survive_a_restart_with_a_db(tmp_path):
    db = str(tmp_path / "class.sqlite")
    with start_server(engine="echo", db=db, keys=ring(tokens=10)) as srv:
        alice = sdk(srv, ALICE)
        alice.interactions.create(model="m", input="hi there")
    with start_server(engine="echo", db=db, keys=ring(tokens=10)) as srv:
        r = httpx.post(api(srv), json={"model": "m", "input": "x"}, headers=as_(ALICE), timeout=10)
        assert r.status_code == 429 and BUDGET_SENTENCE in r.text
        assert httpx.post(api(srv), json={"model": "m", "input": "x"}, headers=as_(BOB),
                          timeout=10).status_code == 200


@pytest.mark.parametrize("quota, sentence", [({"rate": 2}, RATE_SENTENCE),
                                              ({"tokens": 20}, BUDGET_SENTENCE)])
def test_a_cell_over_its_quota_says_which_limit(shell, monkeypatch, quota, sentence):  # noqa: F811
    monkeypatch.setenv("GEMINI_API_KEY", ALICE)
    with start_server(engine="echo", keys=ring(**quota)) as srv:
        magics_of(shell).base_url = srv.base_url
        assert run_cell(shell, "%%gemini --new\nhi there").error is None
        assert run_cell(shell, "%%gemini --new\nonce more").error is None
        cap = run_cell(shell, "%%gemini --new\nand again")
        assert cap.error is not None
        lines = [ln for ln in (cap.stdout + cap.stderr).splitlines()
                 if ln.startswith("GeminiError:")]
        assert len(lines) == 1 and sentence in lines[0], cap.stdout + cap.stderr
        assert "429" in lines[0] and ALICE not in cap.stdout + cap.stderr
        assert "more quota using -m" not in lines[0]  # the server's sentence, not the generic one


# -- what is kept ------------------------------------------------------------------------------

def test_keys_are_never_kept_in_plain_text(tmp_path):
    db = tmp_path / "class.sqlite"
    keys = ring(tokens=1000)
    with start_server(engine="echo", db=str(db), keys=keys) as srv:
        alice = sdk(srv, ALICE)
        done = alice.interactions.create(model="m", input="hi")
        alice.interactions.create(model="m", input="hi", previous_interaction_id=done.id)
        bob = sdk(srv, BOB)
        bob.interactions.create(model="m", input="hi")
        held = repr(keys) + repr(keys.students()) + repr(vars(keys))
        held += "".join(repr({k: getattr(s, k) for k in s.__slots__}) for s in keys.students())
        held += repr(vars(srv.service)) + repr(srv.service._owners)
        assert srv.api_key is None
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for key in (ALICE, BOB, CAROL):
        assert key not in held and key.encode() not in raw
        assert key[:12].encode() not in raw
    with sqlite3.connect(db) as con:
        owners = {row[0] for row in con.execute("SELECT owner FROM interactions")}
        assert owners == {key_id(ALICE), key_id(BOB)}
        used = dict(con.execute("SELECT owner, tokens FROM key_usage"))
        assert set(used) == {key_id(ALICE), key_id(BOB)} and all(used.values())


OLD_SCHEMA = """
CREATE TABLE interactions (id TEXT PRIMARY KEY, previous_id TEXT, updated_at REAL NOT NULL,
    size INTEGER NOT NULL, resource TEXT NOT NULL, input TEXT NOT NULL, steps TEXT NOT NULL,
    events TEXT NOT NULL);
CREATE INDEX interactions_updated ON interactions(updated_at);
"""


def _old_db(path):
    with sqlite3.connect(path) as con:
        con.executescript(OLD_SCHEMA)
        con.execute("INSERT INTO interactions VALUES (?,?,?,?,?,?,?,?)",
                    ("v1_old", None, time.time(), 10,
                     '{"id":"v1_old","object":"interaction","status":"completed"}', "[]",
                     '[{"type":"model_output","content":[{"type":"text","text":"old"}]}]', "[]"))
    con.close()


def test_an_existing_db_without_the_owner_column_still_opens(tmp_path):
    db = str(tmp_path / "old.sqlite")
    _old_db(db)
    with start_server(engine="echo", db=db, keys=ring()) as srv:
        alice = sdk(srv, ALICE)
        with pytest.raises(errors.NotFoundError):  # nobody's: no key reads it
            alice.interactions.get("v1_old")
        made = alice.interactions.create(model="m", input="new")
        assert alice.interactions.get(made.id).output_text == made.output_text
    with sqlite3.connect(db) as con:
        assert "owner" in {row[1] for row in con.execute("PRAGMA table_info(interactions)")}
    con.close()
    s = Store(db)  # and without --keys everything reads as before
    try:
        assert s.get("v1_old")["steps"][0]["content"][0]["text"] == "old"
        assert s.get(made.id) is not None and s.get(made.id, owner=key_id(BOB)) is None
    finally:
        s.close()
    with start_server(engine="echo", db=db) as srv:  # a server without --keys: as before
        r = httpx.get(api(srv, "/v1_old"), timeout=10)
        assert r.status_code == 200 and r.json()["id"] == "v1_old"
        nxt = httpx.post(api(srv), json={"model": "m", "input": "more",
                                         "previous_interaction_id": "v1_old"}, timeout=10)
        assert nxt.status_code == 200


# -- the keys file -----------------------------------------------------------------------------

def test_the_keys_file_format():
    keys = ring()
    assert len(keys) == 3
    assert [s.label for s in keys.students()] == ["alice", "bob", "line 5"]
    assert keys.identify(CAROL).label == "line 5" and keys.identify("nope") is None
    assert keys.identify(ALICE).id == key_id(ALICE)
    for text, words in [("", "no keys"), ("# only a comment\n", "no keys"),
                        ("alice: short\n", "line 1: a key is at least 16"),
                        (f"al ice: {ALICE}\n", "line 1: a label"),
                        (f"a: {ALICE}\nb: {ALICE}\n", "line 2 repeats the key of line 1"),
                        (f"a: {ALICE}\na: {BOB}\n", "line 2 repeats the label 'a'"),
                        (f"x: {ALICE} extra\n", "line 1: a key")]:
        with pytest.raises(ValueError) as exc:
            KeyRing.from_text(text, where="'k.txt'")
        assert words in str(exc.value) and ALICE not in str(exc.value)
    with pytest.raises(ValueError, match="--key-rate"):
        ring(rate=0)
    with pytest.raises(ValueError, match="--key-tokens"):
        ring(tokens=-5)
    with pytest.raises(ValueError, match="not both"):
        start_server(engine="echo", keys=ring(), api_key="x" * 20)


def test_serve_with_a_keys_file(tmp_path):
    path = tmp_path / "keys.txt"
    made = subprocess.run([sys.executable, "-m", "gemini_magics", "keys", "alice", "bob"],
                          cwd=ROOT, env=sdk_env("http://unused"), capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["alice", "bob"]
    alice_key, bob_key = (ln.split(": ")[1] for ln in lines)
    path.write_text(made.stdout)
    s = Served("--engine", "echo", "--port", "0", "--keys", str(path), "--key-rate", "5",
               "--key-tokens", "1000", "--host", "0.0.0.0")  # keys are enough off loopback
    try:
        umask = next(ln for ln in open(f"/proc/{s.proc.pid}/status") if ln.startswith("Umask:"))
        assert umask.split()[1] == "0077"  # what a classroom server writes is its user's only
        url = s.url.replace("0.0.0.0", "127.0.0.1")
        body = {"model": "m", "input": "x"}
        assert httpx.post(url + "/v1/interactions", json=body, timeout=10).status_code == 401
        r = httpx.post(url + "/v1/interactions", json=body, headers=as_(alice_key), timeout=10)
        assert r.status_code == 200
        got = httpx.get(url + "/v1/interactions/" + r.json()["id"], headers=as_(bob_key),
                        timeout=10)
        assert got.status_code == 404
        code, out, err = s.stop()
        assert code == 0, err
        assert "classroom mode: 2 keys" in err and "5 requests per minute" in err
        tokens = r.json()["usage"]["total_tokens"]
        assert f"tokens used per key: alice {tokens}, bob 0." in err
        assert alice_key not in out + err and bob_key not in out + err
    finally:
        s.kill()


def test_serve_refuses_a_bad_keys_file_in_one_sentence(tmp_path):
    assert "--keys" in _fails("--engine", "echo", "--keys", str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text("alice: short\n")
    assert "line 1" in _fails("--engine", "echo", "--keys", str(bad))
    good = tmp_path / "good.txt"
    good.write_text(KEYS_TEXT)
    assert "--keys" in _fails("--engine", "echo", "--key-rate", "3")
    assert "not both" in _fails("--engine", "echo", "--keys", str(good), "--api-key", "k" * 20)


# -- storage shares ----------------------------------------------------------------------------
# An input of one long word costs one token but is stored about three times (the echo engine
# repeats it in its answer and that answer's events): big rows for almost no token budget.

LONG_WORD = 100_000  # characters


def _readable(srv, key, iid) -> bool:
    return httpx.get(api(srv, f"/{iid}"), headers=as_(key), timeout=10).status_code == 200


def _one_sentence(message: str) -> None:
    assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message, message


def test_one_key_filling_its_storage_never_erases_another_keys_interactions():
    # 1.5 MiB for the store, shared by 3 keys: 0.5 MiB each, about one of alice's big rows
    with start_server(engine="echo", keys=ring(), storage_mb=1.5) as srv:
        alice, bob = sdk(srv, ALICE), sdk(srv, BOB)
        bobs = [bob.interactions.create(model="m", input=f"my note {i}").id for i in range(3)]
        flood = [alice.interactions.create(model="m", input="x" * LONG_WORD + str(i))
                 for i in range(8)]
        assert all(i.status == "completed" and i.usage.total_tokens < 30 for i in flood)
        assert all(_readable(srv, BOB, iid) for iid in bobs)
        kept = [_readable(srv, ALICE, i.id) for i in flood]
        assert kept[-1] and not kept[0] and kept == sorted(kept), kept  # her oldest went first
        chained = bob.interactions.create(model="m", input="and?", previous_interaction_id=bobs[-1])
        assert chained.output_text.startswith("Echo: I saw 2 user turns and 1 model turn.")


def test_a_key_over_its_count_share_drops_only_its_own_oldest():
    with start_server(engine="echo", keys=ring(), max_items=6) as srv:  # 2 a key
        alice, bob = sdk(srv, ALICE), sdk(srv, BOB)
        bobs = [bob.interactions.create(model="m", input="hi").id for _ in range(2)]
        mine = [alice.interactions.create(model="m", input=f"n{i}").id for i in range(5)]
        assert [_readable(srv, ALICE, iid) for iid in mine] == [False] * 3 + [True] * 2
        assert all(_readable(srv, BOB, iid) for iid in bobs)
    with start_server(engine="echo", keys=ring(), key_items=1) as srv:  # or set per key
        alice = sdk(srv, ALICE)
        first, second = (alice.interactions.create(model="m", input="hi").id for _ in range(2))
        assert not _readable(srv, ALICE, first) and _readable(srv, ALICE, second)


def test_an_interaction_bigger_than_its_keys_share_is_refused_in_one_sentence():
    with start_server(engine="echo", keys=ring(), key_storage_mb=0.25) as srv:  # 262 KB a key
        alice = sdk(srv, ALICE)
        kept = alice.interactions.create(model="m", input="keep me")
        # an input that alone cannot fit: a 413 before anything runs or is charged
        r = httpx.post(api(srv), json={"model": "m", "input": "x" * 300_000}, headers=as_(ALICE),
                       timeout=10)
        assert r.status_code == 413, r.text
        message = r.json()["error"]["message"]
        _one_sentence(message)
        assert "this key's storage quota (262.1 KB)" in message and "--key-storage-mb" in message
        # an input that fits, with an answer that does not: the turn fails, nothing is erased
        big = alice.interactions.create(model="m", input="y" * LONG_WORD)
        assert big.status == "failed" and big.errors[0].code == "storage"
        _one_sentence(big.errors[0].message)
        assert "this key's storage quota" in big.errors[0].message
        assert _readable(srv, ALICE, kept.id) and not _readable(srv, ALICE, big.id)
        # what is not stored is not limited
        r = httpx.post(api(srv), json={"model": "m", "input": "x" * 300_000, "store": False},
                       headers=as_(ALICE), timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "completed"
    for bad, words in [({"key_storage_mb": 0}, "--key-storage-mb must be a number of MiB"),
                       ({"key_items": 1.5}, "--key-items must be a whole number"),
                       ({"storage_mb": float("nan")}, "--storage-mb must be")]:
        with pytest.raises(ValueError, match=words):
            start_server(engine="echo", keys=ring(), **bad)
    with pytest.raises(ValueError, match="go with --keys"):
        start_server(engine="echo", key_items=3)


# -- failed turns are charged ------------------------------------------------------------------
# A function whose schema the plan cannot meet: check_schema accepts the dangling $ref, the
# engine plans a call, then validating its arguments raises (after the engine generated).
# A dangling local $ref is a 400 at parsing, except under a nested $id (whose base the parser
# cannot follow): then the plan's validation fails after the engine generated.
UNMEETABLE = {"type": "function", "name": "lookup_thing", "description": "Look up a thing.",
              "parameters": {"type": "object", "required": ["thing"],
                             "properties": {"thing": {"$id": "urn:thing",
                                                      "$ref": "#/$defs/missing"}}}}


def test_a_turn_that_fails_after_the_engine_generated_is_charged_and_shows_its_usage():
    keys = ring(tokens=20)
    with start_server(engine="echo", keys=keys) as srv:
        alice = sdk(srv, ALICE)
        events = list(alice.interactions.create(model="m", input="Look up the thing",
                                                tools=[UNMEETABLE], stream=True))
        last = events[-1].interaction
        assert last.status == "failed" and last.usage.total_tokens > 20
        error = next(e for e in events if e.event_type == "error").error
        _one_sentence(error.message)
        assert "$defs" not in error.message and "missing" not in error.message  # nothing leaks
        assert keys.identify(ALICE).used == last.usage.total_tokens
        stored = alice.interactions.get(last.id)
        assert stored.status == "failed" and stored.usage.total_tokens == last.usage.total_tokens
        # the budget holds: the failed turn used it up
        r = httpx.post(api(srv), json={"model": "m", "input": "x"}, headers=as_(ALICE), timeout=10)
        assert r.status_code == 429 and f"({last.usage.total_tokens} used)" in r.text
        bob = sdk(srv, BOB)
        failed = bob.interactions.create(model="m", input="Look up the thing", tools=[UNMEETABLE])
        assert failed.status == "failed" and failed.usage.total_output_tokens > 0
        assert keys.identify(BOB).used == failed.usage.total_tokens


# -- private files -----------------------------------------------------------------------------

def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_the_store_and_its_wal_and_shm_are_owner_only(tmp_path):
    old = os.umask(0o022)  # as a user's shell has it
    try:
        db = tmp_path / "class.sqlite"
        other = sqlite3.connect(db)  # an earlier run's files, readable by everyone
        other.execute("PRAGMA journal_mode=WAL")
        other.execute("CREATE TABLE t (x)")
        files = [db, tmp_path / "class.sqlite-wal", tmp_path / "class.sqlite-shm"]
        for f in files:
            os.chmod(f, 0o644)
        try:
            with start_server(engine="echo", db=str(db), keys=ring()) as srv:
                alice = sdk(srv, ALICE)
                alice.interactions.create(model="m", input="a private chat")
                assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
        finally:
            other.close()
        fresh = tmp_path / "fresh.sqlite"
        with start_server(engine="echo", db=str(fresh)) as srv:
            assert httpx.post(api(srv), json={"model": "m", "input": "hi"},
                              timeout=10).status_code == 200
            made = sorted(tmp_path.glob("fresh.sqlite*"))
            assert [p.name for p in made] == ["fresh.sqlite", "fresh.sqlite-shm",
                                              "fresh.sqlite-wal"]
            assert all(_mode(p) == 0o600 for p in made)
    finally:
        os.umask(old)
