"""`%%gemini --over NAME` and `gemini_magics.map` (issue #14), through the real SDK and a real
local echo server; servers with knobs (EchoEngine(delay=, rps=, fail_first=)) count what
reached them."""
import _thread
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
from pydantic import BaseModel

from gemini_magics import rows as rows_mod
from gemini_magics.server import start_server
from gemini_magics.server.engines.echo import EchoEngine

from magics_fixtures import ROOT_DIR, magics_of, run_cell, shell  # noqa: F401


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("GEMINI_MAGICS_CACHE_DIR", str(d))
    return d


@pytest.fixture()
def knobs(shell):
    """start(**knobs): a server with its own EchoEngine, the shell pointed at it."""
    servers = []

    def start(**kw):
        engine = EchoEngine(**kw)
        srv = start_server(engine=engine)
        servers.append(srv)
        magics_of(shell).base_url = srv.base_url
        return engine

    yield start
    for srv in servers:
        srv.stop()


def ok(cap):
    assert cap.error is None, (cap.error, cap.stdout, cap.stderr)
    return cap


def echoed(prompt: str) -> str:
    return f"Echo: I saw 1 user turn and 0 model turns. You said: {prompt}"


# -- (1) the rows, the template, the result ------------------------------------------------------

def test_a_dataframe_gets_a_gemini_column_in_input_order_with_errors_and_tokens(shell):
    shell.user_ns["df"] = pd.DataFrame({"name": ["ann", "bob", "cy"], "n": [3, 1, 2]},
                                       index=["a", "b", "c"])
    cap = ok(run_cell(shell, "%%gemini --over df -o out\nGreet {name}, number {n}, row {index}"))
    out = shell.user_ns["out"]
    assert shell.user_ns["_gemini"] is out
    assert list(out.index) == ["a", "b", "c"]
    assert list(out["name"]) == ["ann", "bob", "cy"]
    assert list(out["gemini"]) == [echoed("Greet ann, number 3, row a"),
                                   echoed("Greet bob, number 1, row b"),
                                   echoed("Greet cy, number 2, row c")]
    assert list(out["gemini_error"]) == ["", "", ""]
    assert list(out["gemini_output_tokens"]) == [len(t.split()) for t in out["gemini"]]
    assert (out["gemini_input_tokens"] > 0).all()
    assert "df" in shell.user_ns and "gemini" not in shell.user_ns["df"]  # the input is kept
    # the preview (a DataFrame) and the one-line summary
    assert any("text/html" in o["data"] for o in cap.outputs)
    assert "3 of 3 rows ok, 0 from the cache" in cap.markdown + cap.stdout


def _texts(cap) -> list:
    return [o["data"].get("text/plain", "") for o in cap.outputs]


def test_the_preview_says_how_many_rows_it_shows_and_answers_read_on_one_line(shell):
    shell.user_ns["df"] = pd.DataFrame({"w": [f"w{i}" for i in range(12)]})
    with pd.option_context("display.max_colwidth", 200):  # the whole answer in the table
        cap = ok(run_cell(shell, "%%gemini --over df -o out\nFirst {w}\nthen a second line"))
    assert shell.user_ns["out"]["gemini"][0] == echoed("First w0\nthen a second line")  # as written
    (table,) = [o["data"] for o in cap.outputs if "text/html" in o["data"]]
    assert table["text/html"].split("<tbody>")[1].count("<tr>") == 10
    assert table["text/html"].rstrip().endswith(
        "<p><em>10 of 12 rows shown; _gemini (and -o) holds all 12</em></p>")
    assert table["text/plain"].endswith("\n10 of 12 rows shown; _gemini (and -o) holds all 12")
    assert "You said: First w0 then a second line" in table["text/html"]
    assert "\\n" not in table["text/html"] and "\\n" not in table["text/plain"]
    # the summary line comes after the preview
    texts = _texts(cap)
    assert texts.index(table["text/plain"]) < [i for i, t in enumerate(texts)
                                               if t.startswith("12 of 12 rows ok")][0]
    # a list's preview says the same; all rows shown: nothing to say
    shell.user_ns["words"] = [f"x{i}" for i in range(11)]
    cap = ok(run_cell(shell, "%%gemini --over words\nSay {item}"))
    assert any(t.endswith("\n10 of 11 rows shown; _gemini (and -o) holds all 11") for t in _texts(cap))
    shell.user_ns["words"] = ["a", "b"]
    cap = ok(run_cell(shell, "%%gemini --over words\nSay {item}"))
    assert not any("rows shown" in t for t in _texts(cap))


def test_a_list_gives_a_list_of_results_and_a_dict_a_dict(shell):
    shell.user_ns["words"] = ["sun", "moon"]
    ok(run_cell(shell, "%%gemini --over words -o out\nA poem about {item} ({index})"))
    out = shell.user_ns["out"]
    assert [r.text for r in out] == [echoed("A poem about sun (0)"), echoed("A poem about moon (1)")]
    assert all(r.ok for r in out)
    shell.user_ns["people"] = {"p1": {"name": "ann"}, "p2": {"name": "bob"}}
    ok(run_cell(shell, "%%gemini --over people -o out\nHi {name} ({index})"))
    out = shell.user_ns["out"]
    assert list(out) == ["p1", "p2"]
    assert out["p2"].text == echoed("Hi bob (p2)")


def test_a_series_becomes_a_dataframe_and_row_fields_shadow_notebook_variables(shell):
    shell.user_ns["city"] = pd.Series(["Paris", "Oslo"], name="city")
    shell.user_ns["style"] = "briefly"
    ok(run_cell(shell, "%%gemini --over city -o out\nDescribe {city} {style}"))
    out = shell.user_ns["out"]
    assert list(out["gemini"]) == [echoed("Describe Paris briefly"), echoed("Describe Oslo briefly")]
    shell.user_ns["df"] = pd.DataFrame({"style": ["loudly", "softly"]})
    ok(run_cell(shell, "%%gemini --over df -o out\nSpeak {style}"))
    assert list(shell.user_ns["out"]["gemini"]) == [echoed("Speak loudly"), echoed("Speak softly")]


def test_the_line_magic_takes_over_too(shell):
    shell.user_ns["words"] = ["x"]
    ok(run_cell(shell, "%gemini --over words -o out Hi {item}"))
    assert [r.text for r in shell.user_ns["out"]] == [echoed("Hi x")]


def test_system_and_generation_options_apply_to_every_row(shell):
    shell.user_ns["words"] = ["a", "b"]
    ok(run_cell(shell, "%%gemini --over words --system 'Be terse.' --max-tokens 5 -o out\nSay {item}"))
    assert [r.text for r in shell.user_ns["out"]] == ['[system: "Be terse."] Echo: I '] * 2


class Review(BaseModel):
    stars: int
    summary: str


def test_schema_gives_one_typed_column_per_field(shell):
    shell.user_ns["Review"] = Review
    shell.user_ns["df"] = pd.DataFrame({"text": ["good", "bad"]})
    ok(run_cell(shell, "%%gemini --over df --schema Review -o out\nReview: {text}"))
    out = shell.user_ns["out"]
    assert list(out.columns) == ["text", "stars", "summary", "gemini_error",
                                 "gemini_input_tokens", "gemini_output_tokens", "gemini_cost"]
    assert list(out["stars"]) == [0, 0] and pd.api.types.is_integer_dtype(out["stars"])
    assert list(out["summary"]) == ["Review: good", "Review: bad"]  # echo fills strings


@pytest.mark.parametrize("source, cell, sentence", [
    ("", "%%gemini --over missing\nHi {item}",
     "--over: 'missing' is not defined in the notebook; run the cell that defines it or fix the name."),
    ("x = 3", "%%gemini --over x\nHi {item}",
     "--over x needs a DataFrame, Series, list, tuple or dict, not int; pass the rows to prompt over."),
    # (a name no other test defines: the shell's namespace is shared across tests)
    ("import pandas as pd; df = pd.DataFrame({'a': [1]})", "%%gemini --over df\nHi {bee_nowhere}",
     "The template refers to {bee_nowhere}, which is neither a field of the rows (a, index) nor a "
     "notebook variable; fix the name, or write {{bee_nowhere}} to keep the braces as text."),
    ("", "%%gemini --batch\nHi",
     "--batch only applies with --over NAME (a prompt over every row); add --over or drop it."),
    ("w = [1]", "%%gemini --over w --background\nHi",
     "--over cannot be combined with --background: every row is an independent answer; drop "
     "--background."),
    ("empty = []", "%%gemini --over empty\nHi {item}",
     "--over empty has no rows; give it at least one row to prompt over."),
    ("", "%%gemini --over 'a b'\nHi", "--over needs the name of a DataFrame, Series, list or dict "
                                      "in the notebook, not 'a b'."),
])
def test_bad_input_is_one_sentence_and_nothing_is_sent(shell, knobs, source, cell, sentence):
    engine = knobs()
    ok(run_cell(shell, source))
    cap = run_cell(shell, cell)
    assert str(cap.error) == sentence
    assert "Traceback" not in cap.stdout + cap.stderr
    assert engine.requests == 0


def test_a_failing_row_keeps_its_sentence_and_the_others_are_answered(shell, knobs, monkeypatch):
    monkeypatch.setattr(rows_mod, "BACKOFF_S", (0.01,))
    engine = knobs(fail_first=rows_mod.ROW_RETRIES + 1)  # the first row fails every attempt
    shell.user_ns["words"] = ["a", "b", "c"]
    cap = ok(run_cell(shell, "%%gemini --over words --concurrency 1 -o out\nSay {item}"))
    out = shell.user_ns["out"]
    assert not out[0].ok and out[0].error.startswith("The server had an internal error (503")
    assert [r.text for r in out[1:]] == [echoed("Say b"), echoed("Say c")]
    assert engine.requests == 2
    assert "2 of 3 rows ok, 1 failed" in cap.markdown + cap.stdout
    assert "First failure, row 0: The server had an internal error (503" in cap.markdown + cap.stdout


def test_map_uses_the_magics_settings_in_a_kernel(shell, knobs):
    import gemini_magics

    engine = knobs()
    magics_of(shell).system = "Be kind."
    out = gemini_magics.map("Hello {name}", pd.DataFrame({"name": ["x", "y"]}), progress=False,
                            max_tokens=6)
    assert list(out["gemini"]) == ['[system: "Be kind."] Echo: I saw '] * 2
    assert engine.requests == 2
    with pytest.raises(gemini_magics.rows.GeminiError, match="unknown option colour"):
        gemini_magics.map("Hi", [1], colour="red")


def test_map_works_outside_a_notebook_and_lists_need_no_pandas(tmp_path):
    script = (
        "import sys; sys.modules['pandas'] = None\n"  # pandas cannot be imported
        "import gemini_magics\n"
        "out = gemini_magics.map('Hi {item}', ['a', 'b'], progress=False)\n"
        "print([r.text for r in out])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update(GEMINI_MAGICS_ENGINE="echo", PYTHONPATH=str(ROOT_DIR),
               GEMINI_MAGICS_CACHE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr([echoed("Hi a"), echoed("Hi b")])


# -- (2) rate limits and retries -----------------------------------------------------------------

def test_429s_are_waited_out_as_retry_after_says_and_every_row_ends_ok(shell, knobs):
    # 10 requests/s (a burst of 10), 8 at once: the rows after the burst get 429s; ignoring
    # Retry-After would burn each row's MAX_RATE_WAITS in milliseconds and fail it.
    engine = knobs(rps=10)
    shell.user_ns["nums"] = list(range(30))
    cap = ok(run_cell(shell, "%%gemini --over nums --concurrency 8 -o out\nNumber {item}"))
    out = shell.user_ns["out"]
    assert [r.text for r in out] == [echoed(f"Number {i}") for i in range(30)]
    assert engine.requests == 30 and engine.refused > 0
    assert "30 of 30 rows ok" in cap.markdown + cap.stdout
    assert "rate-limit waits" in cap.markdown + cap.stdout


def test_after_a_429_nothing_is_sent_before_its_retry_after_has_passed(shell, knobs):
    engine = knobs(rps=2)  # a burst of 2, then a 429 asking for up to half a second
    shell.user_ns["nums"] = list(range(4))
    ok(run_cell(shell, "%%gemini --over nums --concurrency 1 -o out\nNumber {item}"))
    assert all(r.ok for r in shell.user_ns["out"])
    arrivals = list(engine.arrivals)
    refused = [(t, wait) for t, wait in arrivals if wait is not None]
    assert refused
    for t, wait in refused:  # one row at a time: the next request is the retry
        later = [u for u, _ in arrivals if u > t]
        assert later and later[0] >= t + wait


def test_5xx_is_retried_per_row(shell, knobs, monkeypatch):
    monkeypatch.setattr(rows_mod, "BACKOFF_S", (0.01,))
    engine = knobs(fail_first=2)
    shell.user_ns["words"] = ["a", "b", "c"]
    ok(run_cell(shell, "%%gemini --over words --concurrency 1 -o out\nSay {item}"))
    assert all(r.ok for r in shell.user_ns["out"])
    assert engine.refused == 2 and engine.requests == 3


def test_the_gate_halves_on_a_429_and_grows_back():
    gate = rows_mod.Gate(8)
    stop = threading.Event()
    gate.throttled(0.0)
    assert gate.limit == 4
    for _ in range(4):
        gate.acquire(stop)
    for _ in range(4):
        gate.release(ok=True)
    assert gate.limit == 5
    stop.set()
    with pytest.raises(rows_mod.Stopped):
        gate.acquire(stop)


# -- (3) the cache -------------------------------------------------------------------------------

def test_a_rerun_sends_only_the_rows_not_done_and_no_cache_sends_all(shell, knobs, cache_dir):
    import gemini_magics

    engine = knobs()
    shell.user_ns["df"] = pd.DataFrame({"w": ["a", "b", "c"]})
    ok(run_cell(shell, "%%gemini --over df -o first\nSay {w}"))
    assert engine.requests == 3
    cap = ok(run_cell(shell, "%%gemini --over df -o again\nSay {w}"))
    assert engine.requests == 3  # all from the cache
    assert "3 of 3 rows ok, 3 from the cache" in cap.markdown + cap.stdout
    pd.testing.assert_frame_equal(shell.user_ns["again"], shell.user_ns["first"])
    shell.user_ns["df"] = pd.DataFrame({"w": ["a", "b", "c", "d"]})
    ok(run_cell(shell, "%%gemini --over df -o out\nSay {w}"))
    assert engine.requests == 4  # only the new row
    ok(run_cell(shell, "%%gemini --over df --temperature 0.5 -o out\nSay {w}"))
    assert engine.requests == 8  # another config is another request
    ok(run_cell(shell, "%%gemini --over df --no-cache -o out\nSay {w}"))
    assert engine.requests == 12
    cache = gemini_magics.cache
    assert cache.path.parent == cache_dir and len(cache) == 8
    assert cache.clear() == 8 and len(cache) == 0
    ok(run_cell(shell, "%%gemini --over df -o out\nSay {w}"))
    assert engine.requests == 16


def test_the_cache_keeps_schema_values_and_never_the_api_key(shell, knobs, cache_dir, monkeypatch):
    key = "AIzaSy" + "K" * 33
    monkeypatch.setenv("GEMINI_API_KEY", key)  # with base_url set, sent to the echo server
    engine = knobs()
    shell.user_ns["Review"] = Review
    shell.user_ns["df"] = pd.DataFrame({"text": ["good"]})
    ok(run_cell(shell, "%%gemini --over df --schema Review -o out\nReview: {text}"))
    ok(run_cell(shell, "%%gemini --over df --schema Review -o again\nReview: {text}"))
    assert engine.requests == 1
    assert list(shell.user_ns["again"]["summary"]) == ["Review: good"]
    stored = b"".join(p.read_bytes() for p in cache_dir.iterdir())
    assert b"Review: good" in stored or len(sqlite3.connect(cache_dir / "rows.sqlite")
                                            .execute("SELECT * FROM rows").fetchall()) == 1
    assert key.encode() not in stored


# -- (4) progress and stop -----------------------------------------------------------------------

def test_the_progress_bar_counts_rows_done_failed_cached_and_tokens(shell, knobs):
    knobs()
    shell.user_ns["words"] = ["a", "b"]
    ok(run_cell(shell, "%%gemini --over words\nSay {item}"))
    cap = ok(run_cell(shell, "%%gemini --over words\nSay {item}"))
    assert "2/2" in cap.stderr and "ok=2 failed=0 cached=2 tokens=" in cap.stderr
    magics_of(shell).progress = False  # e.g. a notebook replayed under nbval: no timings
    cap = ok(run_cell(shell, "%%gemini --over words\nSay {item}"))
    assert "ok=2" not in cap.stderr and "2 of 2 rows ok" in cap.markdown + cap.stdout


def _wait(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_the_stop_button_returns_the_rows_done_and_a_rerun_sends_the_rest(shell, knobs):
    import gemini_magics

    engine = knobs(delay=0.3)
    shell.user_ns["nums"] = list(range(12))

    def stop_when_two_are_done():
        # 2 at once: a 4th request starts only after two rows were handed back
        _wait(lambda: engine.requests >= 4)
        _thread.interrupt_main()

    threading.Thread(target=stop_when_two_are_done, daemon=True).start()
    cap = ok(run_cell(shell, "%%gemini --over nums --concurrency 2 -o out\nN {item}"))
    out = shell.user_ns["out"]
    done = [r for r in out if r.ok]
    assert 2 <= len(done) < 12
    assert all(r.error == rows_mod.STOPPED for r in out if not r.ok)
    n_ok, n_stopped = len(done), 12 - len(done)
    assert (f"{n_ok} of 12 rows ok, {n_stopped} not sent (stopped), 0 from the cache"
            in cap.markdown + cap.stdout)
    # the rows in flight end (and reach the cache)
    _wait(lambda: not any(t.name == "gemini-row" for t in threading.enumerate()))
    assert engine.requests == len(gemini_magics.cache)
    cached = len(gemini_magics.cache)
    ok(run_cell(shell, "%%gemini --over nums --concurrency 4 -o out\nN {item}"))
    assert engine.requests == 12
    assert [r.text for r in shell.user_ns["out"]] == [echoed(f"N {i}") for i in range(12)]
    assert cached < 12
