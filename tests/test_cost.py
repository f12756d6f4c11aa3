"""What answers cost (#21): prices from genai-prices, `result.cost`, `%gemini usage`, the budget,
`--estimate`, in a real IPython shell on the echo server through the real SDK.

The echo engine counts one word as one token, and `price_override` fixes the prices, so the
figures are exact; with a real model name the figure is checked against genai-prices' own
`calc_price`. Tests of what other modules show (the footer, the rows' gemini_cost column, the
rows stopped at the cap) run once those modules call pricing.py / spend.py (WIRED_*).
"""
import inspect
import subprocess
import sys
import time

import genai_prices
import pandas as pd
import pytest

from gemini_magics import live, pricing, render, rows, spend
from gemini_magics.pricing import CostDetail
from gemini_magics.result import GeminiResult
from gemini_magics.server import start_server
from gemini_magics.server.engines.echo import EchoEngine

from magics_fixtures import ROOT_DIR, magics_of, run_cell, shell  # noqa: F401

# The prices the override tests use, USD per 1M tokens: $0.01 an input token, $0.02 an output.
OVERRIDE = "input=10000,output=20000"
IN, OUT = 0.01, 0.02

# Honest wiring checks: does the other module's code call ours?
WIRED_FOOTER = "≈ $0.50" in render.footer_text(
    GeminiResult(model="m", usage={"total_tokens": 1}, cost_detail=CostDetail(0.5)))
WIRED_ROWS = "gemini_cost" in inspect.getsource(rows.assemble)
WIRED_ROWS_BUDGET = "spend." in inspect.getsource(rows.send_rows)
WIRED_LIVE = "spend.Guard" in inspect.getsource(live.StreamJob._run)


def ok(cap):
    assert cap.error is None, (cap.error, cap.stdout, cap.stderr)
    return cap


@pytest.fixture()
def ip(shell, tmp_path, monkeypatch):
    """The shell with this session's usage cleared and the row cache in a fresh folder."""
    monkeypatch.setenv("GEMINI_MAGICS_CACHE_DIR", str(tmp_path / "cache"))
    spend.ledger(magics_of(shell).session).reset()
    shell.user_ns.pop("out", None)  # the shell is shared: an earlier test's -o out must not count
    yield shell
    spend.ledger(magics_of(shell).session).reset()


def calc(usage, model, **context):
    """genai-prices' own figure for an Interactions usage (thoughts are output, as Google bills)."""
    return float(genai_prices.calc_price(
        genai_prices.Usage(input_tokens=usage["total_input_tokens"],
                           output_tokens=usage["total_output_tokens"]
                           + usage.get("total_thought_tokens", 0)),
        model, provider_id="google", price_context=context or None).total_price)


def words(text):
    return len(text.split())


# -- pricing.py: the figures ---------------------------------------------------------------------

def test_a_published_model_is_priced_as_genai_prices_prices_it_thoughts_as_output():
    usage = {"total_input_tokens": 1200, "total_output_tokens": 300, "total_thought_tokens": 500,
             "total_tokens": 2000}
    detail = pricing.price_usage(usage, "gemini-3.5-flash")
    assert detail.total == pytest.approx(calc(usage, "gemini-3.5-flash"), rel=1e-12)
    assert detail.total == pytest.approx((1200 * 1.5 + 800 * 9) / 1e6)  # its published rates
    assert detail.thinking == pytest.approx(500 * 9 / 1e6)
    assert detail.input + detail.output + detail.thinking == pytest.approx(detail.total)
    assert detail.source.startswith(f"genai-prices {genai_prices.__version__}")


def test_cached_tokens_are_billed_at_the_cache_rate_and_a_long_prompt_at_its_tier():
    usage = {"total_input_tokens": 1000, "total_cached_tokens": 400, "total_output_tokens": 10}
    detail = pricing.price_usage(usage, "gemini-3.5-flash")
    assert detail.cached == pytest.approx(400 * 0.15 / 1e6)
    assert detail.input == pytest.approx(600 * 1.5 / 1e6)
    long = {"total_input_tokens": 300_000, "total_output_tokens": 1000}
    want = genai_prices.calc_price(genai_prices.Usage(input_tokens=300_000, output_tokens=1000),
                                   "gemini-3-pro-preview", provider_id="google").total_price
    assert pricing.price_usage(long, "gemini-3-pro-preview").total == pytest.approx(float(want))
    assert pricing.price_usage(long, "gemini-3-pro-preview").total == pytest.approx(
        (300_000 * 4 + 1000 * 18) / 1e6)  # past 200k tokens every token is at the long rate


def test_batch_is_priced_at_the_batch_rate_where_listed_and_said_where_not():
    usage = {"total_input_tokens": 1000, "total_output_tokens": 1000}
    batch = pricing.price_usage(usage, "gemini-3-flash-preview", tier="batch")
    assert batch.total == pytest.approx(calc(usage, "gemini-3-flash-preview", processing="batch"))
    assert batch.total == pytest.approx(
        pricing.price_usage(usage, "gemini-3-flash-preview").total / 2)
    assert batch.tier == "batch" and batch.note == ""
    unlisted = pricing.price_usage(usage, "gemini-3.5-flash", tier="flex")
    assert unlisted.total == pricing.price_usage(usage, "gemini-3.5-flash").total
    assert unlisted.note == "genai-prices lists no flex price for gemini-3.5-flash: standard price"


def test_a_model_without_a_published_price_is_unknown_never_a_guess():
    result = GeminiResult(model="gemini-x", usage={"total_input_tokens": 3,
                                                   "total_output_tokens": 5, "total_tokens": 8})
    detail = pricing.price(result)
    assert result.cost is None and detail.total is None
    assert pricing.footer_piece(result) == "price unknown"
    assert pricing.footer_line(result).startswith(
        "- cost: price unknown (genai-prices lists no price for gemini-x;")


def test_a_stopped_answer_without_usage_is_priced_for_its_text_and_marked_estimated():
    result = GeminiResult(model="gemini-3.5-flash", answer="w1 w2 w3 w4", stopped=True)
    detail = pricing.price(result, prompt="one two")
    assert detail.estimated
    assert result.cost == pytest.approx((2 * 1.5 + 4 * 9) / 1e6)
    assert pricing.footer_piece(result).endswith("(estimated)")


def test_the_override_prices_every_model_at_its_rates_and_bad_text_is_one_sentence():
    rates = pricing.parse_override("input=2, output=8, cached=0.5")
    usage = {"total_input_tokens": 100, "total_cached_tokens": 40, "total_output_tokens": 10,
             "total_thought_tokens": 5}
    detail = pricing.price_usage(usage, "no-such-model", override=rates)
    assert detail.total == pytest.approx((60 * 2 + 40 * 0.5 + 15 * 8) / 1e6)
    for bad in ("input=2", "input=x,output=1", "input=-1,output=2", "speed=1,input=1,output=1"):
        with pytest.raises(ValueError) as exc:
            pricing.parse_override(bad)
        assert str(exc.value).count(".") <= 3 and "\n" not in str(exc.value)


@pytest.mark.parametrize("usd, shown", [(0.33, "$0.33"), (0.0012, "$0.0012"),
                                         (0.0001395, "$0.00014"), (12.345, "$12.35"), (0, "$0")])
def test_money_keeps_two_significant_digits_under_a_dollar(usd, shown):
    assert pricing.money(usd) == shown


def test_load_ext_does_not_import_genai_prices():
    code = ("import sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
            "InteractiveShell.instance().run_line_magic('load_ext', 'gemini_magics')\n"
            "assert 'genai_prices' not in sys.modules, 'genai_prices imported'\nprint('fine')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT_DIR, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == "fine", out.stderr


# -- cells: result.cost, usage, budget -------------------------------------------------------------

def test_an_answer_costs_its_tokens_times_the_prices_and_offline_is_not_billed(ip):
    m = magics_of(ip)
    m.price_override = OVERRIDE
    ok(run_cell(ip, "%%gemini -o r\nhello there world"))
    r = ip.user_ns["r"]
    assert r.usage["total_input_tokens"] == 3  # the echo engine: one word, one token
    assert r.usage["total_output_tokens"] == words(r.answer)
    assert r.cost == pytest.approx(3 * IN + words(r.answer) * OUT)
    assert (r.cost_detail.input, r.cost_detail.output) == pytest.approx((3 * IN, words(r.answer) * OUT))
    assert r.cost_detail.billed is False  # the echo server on loopback: priced, not billed
    assert pricing.footer_piece(r) == f"≈ {pricing.money(r.cost)} (offline, not billed)"


def test_a_real_model_name_is_priced_by_genai_prices_own_calc(ip):
    ok(run_cell(ip, "%%gemini -o r -m gemini-3-flash-preview\nhello there world"))
    r = ip.user_ns["r"]
    assert r.cost == pytest.approx(calc(r.usage, "gemini-3-flash-preview"), rel=1e-12)
    assert r.cost > 0 and r.cost_detail.model == "gemini-3-flash-preview"


@pytest.mark.skipif(not WIRED_FOOTER, reason="render's footer does not show the price yet")
def test_the_footer_shows_the_price_beside_the_tokens(ip):
    magics_of(ip).price_override = OVERRIDE
    cap = ok(run_cell(ip, "%%gemini -o r\nhello there world"))
    r = ip.user_ns["r"]
    piece = f"≈ {pricing.money(r.cost)} (offline, not billed)"
    assert piece in cap.markdown and f"{r.usage['total_tokens']} tokens" in cap.markdown
    assert pricing.footer_line(r) in cap.markdown


def test_usage_sums_two_cells_per_model_and_reset_starts_again(ip):
    magics_of(ip).price_override = OVERRIDE
    ok(run_cell(ip, "%%gemini -o a\nhello there world"))
    ok(run_cell(ip, "%%gemini -o b --new -m gemini-3-flash-preview\none two"))
    a, b = ip.user_ns["a"], ip.user_ns["b"]
    table = ok(run_cell(ip, "%gemini usage")).result.result
    assert isinstance(table, pd.DataFrame)
    total = table.set_index("model").loc["total"]
    assert total["calls"] == 2
    assert total["input tokens"] == a.usage["total_input_tokens"] + b.usage["total_input_tokens"]
    assert total["output tokens"] == words(a.answer) + words(b.answer)
    assert total["cost USD"] == pytest.approx(a.cost + b.cost)
    assert set(table["model"]) == {"gemini-3.5-flash", "gemini-3-flash-preview", "total"}
    cap = ok(run_cell(ip, "%gemini usage reset"))
    assert "start again from zero" in cap.stdout
    table = ok(run_cell(ip, "%gemini usage")).result.result
    assert list(table["calls"]) == [0]


def test_a_budget_refuses_the_next_cell_in_one_sentence(ip):
    m = magics_of(ip)
    m.price_override = OVERRIDE
    ok(run_cell(ip, "%gemini budget_offline True"))  # the echo server is offline: count it
    ok(run_cell(ip, "%gemini budget 0.2"))
    ok(run_cell(ip, "%%gemini -o r\nhello there world"))  # 3 in + 15 out: $0.33
    spent = ip.user_ns["r"].cost
    assert spent > 0.2
    turns = len(m.session.conversation.chain())
    cap = run_cell(ip, "%%gemini -o r2\nand again")
    assert str(cap.error) == (f"The session's budget of $0.20 is reached "
                              f"({pricing.money(spent)} spent so far), so nothing more is sent; "
                              f"raise it with %gemini budget USD or turn it off with "
                              f"%gemini budget off.")
    assert "Traceback" not in cap.stdout + cap.stderr
    assert "r2" not in ip.user_ns and len(m.session.conversation.chain()) == turns
    ok(run_cell(ip, "%gemini budget off"))
    assert m.budget is None
    ok(run_cell(ip, "%%gemini -o r2\nand again"))


def test_offline_answers_do_not_count_toward_the_budget_unless_asked(ip):
    m = magics_of(ip)
    m.price_override = OVERRIDE
    m.budget = 0.01
    ok(run_cell(ip, "%%gemini\nhello there world"))
    ok(run_cell(ip, "%%gemini\nhello again"))  # not refused: nothing was billed
    line = ok(run_cell(ip, "%gemini usage")).stdout
    assert line.startswith("Budget $0.010: $0 spent on billed answers (offline answers are not")


def test_a_stream_crossing_the_budget_is_stopped_and_kept(ip):
    m = magics_of(ip)
    m.price_override = OVERRIDE
    m.budget_offline = True
    m.budget = 1.0  # $0.02 an output token: the cap is crossed after ~50 words
    ok(run_cell(ip, "%%gemini -o r\n/words 2000"))
    r = ip.user_ns["r"]
    assert r.stopped and 40 <= words(r.answer) < 200
    assert r.notes[-1].startswith("Stopped at the session's budget of $1.00")
    # priced for what it used: the tokens the server reports for the stopped turn (the sender
    # asks), which is at least what was shown
    assert r.cost >= 1.0 and r.usage.get("total_output_tokens", 0) >= words(r.answer)
    assert run_cell(ip, "%%gemini\nmore").error is not None  # and the next cell is refused


def test_a_budget_cannot_be_kept_on_a_model_without_a_price(ip):
    m = magics_of(ip)
    m.budget_offline = True
    m.budget = 5.0
    cap = run_cell(ip, "%%gemini -m gemini-x\nhello")
    assert str(cap.error) == ("gemini-x has no known price (genai-prices lists none), so the "
                              "budget of $5.00 cannot be kept; set GeminiMagics.price_override "
                              "or turn the budget off with %gemini budget off.")


def test_a_bad_budget_or_override_setting_is_one_sentence(ip):
    cap = run_cell(ip, "%gemini budget -1")
    assert str(cap.error) == "Cannot set budget to '-1' (budget must be at least 0 USD, not -1)."
    cap = run_cell(ip, "%gemini price_override cheap")
    assert str(cap.error).startswith("Cannot set price_override to 'cheap' (price_override takes")


def test_prices_shows_the_tiers_source_and_date(ip):
    out = ok(run_cell(ip, "%gemini prices gemini-3-flash-preview")).stdout
    assert "  standard: $0.5/input MTok, $3/output MTok" in out
    assert "  batch: $0.25/input MTok, $1.5/output MTok" in out
    assert "  flex: not listed (the standard price is used)" in out
    assert pricing.source() in out and "(data of 20" in pricing.source()
    out = ok(run_cell(ip, "%gemini prices gemini-x")).stdout
    assert out.startswith("gemini-x: price unknown")


# -- --estimate ----------------------------------------------------------------------------------

def test_estimate_on_a_cell_sends_nothing_and_prices_every_tier(ip):
    m = magics_of(ip)
    m.price_override = OVERRIDE
    turns = len(m.session.conversation.chain())
    cap = ok(run_cell(ip, "%%gemini --estimate --max-tokens 10\nhello there world"))
    lines = cap.stdout.strip().splitlines()
    n = 3  # the offline server counts with its engine's tokenizer: the echo's, a word a token
    assert lines[0] == (f"Estimate for this cell on gemini-3.5-flash (nothing was generated): "
                        f"{n} input tokens, counted by the API (countTokens).")
    assert lines[1] == "  Output: 0–10 tokens a row (at most --max-tokens)."
    low, high = n * IN, n * IN + 10 * OUT
    assert lines[2] == f"  standard: {pricing.money(low)} – {pricing.money(high)}"
    assert lines[3].startswith(f"  flex: {pricing.money(low)} – {pricing.money(high)}")
    assert lines[4].startswith("  batch: ")
    assert len(m.session.conversation.chain()) == turns
    assert spend.ledger(m.session).lines == {}


def test_estimate_over_rows_counts_every_row_and_samples_only_when_asked(ip):
    eng = EchoEngine()
    srv = start_server(engine=eng)
    try:
        m = magics_of(ip)
        m.base_url = srv.base_url
        m.price_override = OVERRIDE
        ip.user_ns["xs"] = ["a b", "c d e", "f", "g h"]
        out = ok(run_cell(ip, "%%gemini --over xs --estimate\nsay {item}")).stdout
        assert eng.requests == 0
        n = sum(len(f"say {x}".split()) for x in ip.user_ns["xs"])  # the echo's countTokens
        assert out.startswith(f"Estimate for 4 rows on gemini-3.5-flash (nothing was generated): "
                              f"{n} input tokens")
        assert "Time: not estimated without a sample" in out
        out = ok(run_cell(ip, "%%gemini --over xs --estimate 2\nsay {item}")).stdout
        assert eng.requests == 2  # the sample, and only the sample
        sampled = [words(f"Echo: I saw 1 user turn and 0 model turns. You said: say {x}")
                   for x in ("a b", "c d e")]
        assert f"Output: {min(sampled)}–{max(sampled)} tokens a row (measured on 2" in out
        assert spend.ledger(m.session).lines[("gemini-3.5-flash", False)].calls == 2
    finally:
        srv.stop()


# -- rows -------------------------------------------------------------------------------------------

def _wait_for(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_batch_rows_are_priced_at_the_batch_rate(ip):
    m = magics_of(ip)
    m.poll_interval = 0.05
    ip.user_ns["xs"] = ["a", "b"]
    ok(run_cell(ip, "%%gemini --over xs --batch -m gemini-3-flash-preview -o out\nsay {item}"))
    book = spend.ledger(m.session)
    # the poller records the rows, then binds `out`: wait for both
    _wait_for(lambda: sum(line.calls for line in book.lines.values()) == 2
              and "out" in ip.user_ns)
    results = ip.user_ns["out"]
    want = sum(calc(r.usage, "gemini-3-flash-preview", processing="batch") for r in results)
    assert book.spent(offline_too=True) == pytest.approx(want)
    assert all(r.cost_detail.tier == "batch" for r in results)


@pytest.mark.skipif(not WIRED_ROWS, reason="rows.assemble has no gemini_cost column yet")
def test_rows_get_a_gemini_cost_column(ip):
    magics_of(ip).price_override = OVERRIDE
    ip.user_ns["df"] = pd.DataFrame({"w": ["a b", "c"]})
    ok(run_cell(ip, "%%gemini --over df -o out\nsay {w}"))
    out = ip.user_ns["out"]
    want = [i * IN + o * OUT for i, o in zip(out["gemini_input_tokens"],
                                               out["gemini_output_tokens"])]
    assert list(out["gemini_cost"]) == pytest.approx(want)


@pytest.mark.skipif(not WIRED_ROWS_BUDGET, reason="rows.send_rows does not check the budget yet")
def test_over_stops_sending_rows_at_the_cap_and_keeps_the_rows_done(ip):
    m = magics_of(ip)
    m.price_override = OVERRIDE
    m.budget_offline = True
    m.budget = 0.5  # a row costs ~$0.35: the cap is reached after the second row at most
    ip.user_ns["xs"] = [f"w{i}" for i in range(20)]
    cap = ok(run_cell(ip, "%%gemini --over xs --concurrency 1 -o out\nsay {item}"))
    out = ip.user_ns["out"]
    done = [r for r in out if r.ok]
    assert 1 <= len(done) <= 3
    assert "not sent" in cap.stdout + "".join(d.get("text/plain", "") for d in cap.final)
    assert all(r.stopped for r in out if not r.ok)


# -- billed or not, and the other paths the magics own ------------------------------------------

@pytest.mark.parametrize("settings, key, paid", [
    ({}, None, False),                                        # no key: the local server
    ({}, "k", True),                                          # Google
    ({"offline": True}, "k", False),                          # forced offline
    ({"base_url": "http://127.0.0.1:9"}, "k", False),         # a server on this machine
    ({"base_url": "http://localhost:8080/"}, "k", False),
    ({"base_url": "https://gemini-proxy.example.com"}, "k", True),
])
def test_only_answers_from_google_or_a_remote_endpoint_are_billed(monkeypatch, settings, key,
                                                                    paid):
    from gemini_magics.session import Session

    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    if key:
        monkeypatch.setenv("GEMINI_API_KEY", key)
    assert spend.billed(settings, Session()) is paid


def test_rows_past_the_budget_are_refused_before_any_is_sent(ip):
    eng = EchoEngine()
    srv = start_server(engine=eng)
    try:
        m = magics_of(ip)
        m.base_url = srv.base_url
        m.price_override = OVERRIDE
        m.budget_offline = True
        m.budget = 0.2
        ok(run_cell(ip, "%%gemini\nhello there world"))  # $0.33
        ip.user_ns["xs"] = ["a", "b"]
        cap = run_cell(ip, "%%gemini --over xs\nsay {item}")
        assert str(cap.error).startswith("The session's budget of $0.20 is reached")
        assert eng.requests == 1
    finally:
        srv.stop()


def test_a_background_answer_is_counted_when_it_ends(ip):
    m = magics_of(ip)
    m.price_override = OVERRIDE
    m.poll_interval = 0.05
    ok(run_cell(ip, "%%gemini --background -o out\nhello there world"))
    book = spend.ledger(m.session)
    _wait_for(lambda: book.lines)
    out = ip.user_ns["_gemini_job"].wait(30)
    assert out.cost == pytest.approx(out.usage["total_input_tokens"] * IN
                                     + out.usage["total_output_tokens"] * OUT)
    assert book.spent(offline_too=True) == pytest.approx(out.cost)


@pytest.mark.skipif(not WIRED_LIVE, reason="live.StreamJob does not run the budget guard yet")
def test_a_ui_answer_crossing_the_budget_is_stopped_and_counted(ip):
    m = magics_of(ip)
    m.price_override = OVERRIDE
    m.budget_offline = True
    m.budget = 1.0
    ok(run_cell(ip, "%%gemini --ui -o r\n/words 2000"))
    r = ip.user_ns["r"].wait(30)
    assert r.done and r.stopped and words(r.answer) < 200
    assert r.notes[-1].startswith("Stopped at the session's budget of $1.00")
    assert spend.ledger(m.session).spent(offline_too=True) == pytest.approx(r.cost)
