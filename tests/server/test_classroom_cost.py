"""Each key's cost in the teacher's console (server/costs.py): every charged turn priced at its
model's standard price by genai_prices itself, summed per key in the store, shown in the usage
API, the CSV and across a restart; a model with no known price is never guessed. Two students
with real google-genai clients, the echo engine, a real server."""
from __future__ import annotations

import sqlite3
import time

import httpx
import pytest
from genai_prices import Usage, calc_price
from test_teacher_console import ALICE, BOB, TEACHER, ring, sdk, teacher, usage_of

from gemini_magics.server import start_server
from gemini_magics.server.classroom import key_id

MODEL = "gemini-2.5-flash"


def priced(*turns) -> float:
    """What genai_prices says these turns cost at MODEL's standard price."""
    return sum(float(calc_price(Usage(input_tokens=t.usage.total_input_tokens,
                                      output_tokens=t.usage.total_output_tokens),
                                model_ref=MODEL, provider_id="google").total_price)
               for t in turns)


def test_each_keys_cost_is_genai_prices_own_figure_for_its_tokens(tmp_path):
    db = str(tmp_path / "class.sqlite")
    with start_server(engine="echo", keys=ring(), teacher_key=TEACHER, db=db) as srv:
        alice, bob = sdk(srv, ALICE), sdk(srv, BOB)
        a1 = alice.interactions.create(model=MODEL, input="/words 300")
        a2 = alice.interactions.create(model=MODEL, input="a second question, longer than one")
        b1 = bob.interactions.create(model=MODEL, input="/words 40")
        console = teacher(srv)
        a, b = usage_of(console, "alice"), usage_of(console, "bob")
        assert a["cost"] == pytest.approx(priced(a1, a2), rel=1e-9) and a["cost"] > 0
        assert b["cost"] == pytest.approx(priced(b1), rel=1e-9) and b["cost"] < a["cost"]
        assert a["unpriced_tokens"] == b["unpriced_tokens"] == 0
        rows = console.get("/teacher/api/usage.csv").text.splitlines()
        header = rows[0].split(",")
        alice_row = dict(zip(header, next(r for r in rows if r.startswith("alice,")).split(",")))
        assert float(alice_row["cost"]) == pytest.approx(a["cost"], rel=1e-9)
    with start_server(engine="echo", keys=ring(), teacher_key=TEACHER, db=db) as srv:
        assert usage_of(teacher(srv), "alice")["cost"] == pytest.approx(priced(a1, a2), rel=1e-9)


def test_a_model_without_a_known_price_is_counted_as_unpriced_never_guessed():
    with start_server(engine="echo", keys=ring(), teacher_key=TEACHER) as srv:
        alice = sdk(srv, ALICE)
        odd = alice.interactions.create(model="my-own-model", input="hello there")
        console = teacher(srv)
        a = usage_of(console, "alice")
        assert a["cost"] is None and a["unpriced_tokens"] == odd.usage.total_tokens
        known = alice.interactions.create(model=MODEL, input="hello there")
        a = usage_of(console, "alice")
        assert a["cost"] == pytest.approx(priced(known), rel=1e-9)
        assert a["unpriced_tokens"] == odd.usage.total_tokens
        assert "no known price" in console.get("/teacher/api/usage").json()["cost_note"]


def test_tokens_kept_before_costs_were_count_as_unpriced(tmp_path):
    db = str(tmp_path / "old.sqlite")
    with sqlite3.connect(db) as con:  # a key_usage table as the first classroom servers made it
        con.execute("CREATE TABLE key_usage (owner TEXT PRIMARY KEY, tokens INTEGER NOT NULL)")
        con.execute("INSERT INTO key_usage VALUES (?, 500)", (key_id(ALICE),))
    with start_server(engine="echo", keys=ring(), teacher_key=TEACHER, db=db) as srv:
        a = usage_of(teacher(srv), "alice")
        assert (a["tokens"], a["cost"], a["unpriced_tokens"]) == (500, None, 500)
        alice = sdk(srv, ALICE)  # kept: the SDK closes its client when it is collected
        turn = alice.interactions.create(model=MODEL, input="hello")
        a = usage_of(teacher(srv), "alice")
        assert a["cost"] == pytest.approx(priced(turn), rel=1e-9) and a["unpriced_tokens"] == 500


def test_a_batch_request_is_priced_like_a_turn():
    with start_server(engine="echo", keys=ring(), teacher_key=TEACHER) as srv:
        body = {"batch": {"inputConfig": {"requests": {"requests": [
            {"request": {"contents": [{"role": "user", "parts": [{"text": "/words 50"}]}]}}]}}}}
        r = httpx.post(f"{srv.base_url}/v1beta/models/{MODEL}:batchGenerateContent", json=body,
                       headers={"x-goog-api-key": BOB}, timeout=10)
        assert r.status_code == 200, r.text
        console = teacher(srv)
        for _ in range(500):  # the batch answers on its own thread: ~ms with the echo engine
            b = usage_of(console, "bob")
            if b["requests"]:
                break
            time.sleep(0.02)
        meta = httpx.get(f"{srv.base_url}/v1beta/{r.json()['name']}",
                         headers={"x-goog-api-key": BOB}, timeout=10).json()["metadata"]
        usage = meta["output"]["inlinedResponses"]["inlinedResponses"][0]["response"][
            "usageMetadata"]
        expected = float(calc_price(Usage(input_tokens=usage["promptTokenCount"],
                                          output_tokens=usage["candidatesTokenCount"]),
                                    model_ref=MODEL, provider_id="google").total_price)
        assert b["requests"] == 1 and b["cost"] == pytest.approx(expected, rel=1e-9)
