"""The notebook companion (issue #20): `%gemini fix`, `--context`, `--code`, readable `{df}`,
`%gemini export`, `--confirm`.

Kernel-level: a real InteractiveShell with the extension loaded (its cell log attached by
`%load_ext`), the real google-genai SDK and the local server's echo engine, which quotes what
it received; a cassette (`%gemini record PATH`) shows the exact request bodies that were sent.
"""
import base64
import io
import json
import sys

import pytest

from magics_fixtures import magics_of, run_cell, shell  # noqa: F401

FAKE_KEY = "AIza" + "SyD3mo-k3y-that-must-never-leave-0123"[:35]


def ok(cap):
    assert cap.error is None, (cap.stdout, cap.stderr)
    return cap


@pytest.fixture()
def ip(shell):
    """The shell with an empty cell log and no pending next input."""
    magics_of(shell).session.cell_log.clear()
    shell.rl_next_input = None
    yield shell
    shell.rl_next_input = None
    for name in ("x", "a", "df", "big", "get_weather", "calls", "key", "code"):
        shell.user_ns.pop(name, None)


def sent(path) -> list:
    """The create() bodies a cassette recorded, in order (none before it is written)."""
    if not path.exists():
        return []
    doc = json.loads(path.read_text())
    return [e["request"]["body"] for e in doc["exchanges"]
            if e["request"].get("method") == "POST" and isinstance(e["request"].get("body"), dict)]


def text_of(body: dict) -> str:
    """Every text the request's input carries."""
    got = body["input"]
    if isinstance(got, str):
        return got
    return "\n".join(c.get("text", "") for step in got for c in step.get("content") or []
                     if isinstance(c, dict))


@pytest.fixture()
def cassette(ip, tmp_path):
    path = tmp_path / "sent.cassette.json"
    ok(run_cell(ip, f"%gemini record {path}"))
    yield path
    ok(run_cell(ip, "%gemini cassette off"))


# -- %gemini fix ---------------------------------------------------------------------------------

def test_fix_after_a_name_error_sends_the_cell_and_the_error_and_offers_the_code(ip, cassette):
    ok(run_cell(ip, "x = 5"))
    failed = run_cell(ip, "total = y + x\nprint(total)")
    assert type(failed.error).__name__ == "NameError"
    cap = ok(run_cell(ip, "%gemini fix"))
    prompt = text_of(sent(cassette)[-1])
    assert "total = y + x\nprint(total)" in prompt
    assert "NameError: name 'y' is not defined" in prompt
    assert "Traceback" in prompt and "interactiveshell.py" not in prompt  # our frames only
    assert "- y: not defined in the notebook" in prompt and "- x: int = 5" in prompt
    assert prompt.index("explain") < prompt.index("corrected cell")
    # The echo quotes the cell back in a python block: that block is the offered code.
    r = ip.user_ns["_gemini"]
    assert r.code == "total = y + x\nprint(total)"
    assert ip.rl_next_input == r.code
    assert "The code is in a new cell below (not run)." in cap.stdout
    assert "Echo:" in cap.markdown  # the answer streamed as usual


def test_cell_fix_adds_its_words_and_skips_gemini_cells(ip, cassette):
    run_cell(ip, "1 / 0")
    run_cell(ip, "%gemini --temperature 9 hello")  # a failing %gemini cell is not the one
    ok(run_cell(ip, "%%gemini fix\nI wanted infinity"))
    prompt = text_of(sent(cassette)[-1])
    assert "1 / 0" in prompt and "ZeroDivisionError" in prompt
    assert prompt.endswith("The user adds: I wanted infinity")


def test_fix_never_sends_an_api_key_from_the_cell(ip, cassette):
    run_cell(ip, f"key = {FAKE_KEY!r}\nundefined_call(key)")
    ok(run_cell(ip, "%gemini fix"))
    raw = cassette.read_text()
    assert FAKE_KEY not in raw and FAKE_KEY not in ip.user_ns["_gemini"].text
    assert "undefined_call(key)" in text_of(sent(cassette)[-1])


def test_fix_with_nothing_failed_is_one_sentence_and_sends_nothing(ip, cassette):
    ok(run_cell(ip, "x = 1"))
    cap = run_cell(ip, "%gemini fix")
    assert cap.error is not None and "Traceback" not in cap.stdout + cap.stderr
    assert str(cap.error) == ("Nothing to fix: no cell has failed since gemini_magics was "
                              "loaded; run the failing cell, then %gemini fix.")
    assert sent(cassette) == [] and ip.rl_next_input is None


def test_a_syntax_error_is_fixed_too(ip, cassette):
    run_cell(ip, "def f(:\n    pass")
    ok(run_cell(ip, "%gemini fix"))
    assert "SyntaxError" in text_of(sent(cassette)[-1])


# -- --context ---------------------------------------------------------------------------------

def test_context_all_sends_the_cells_above_and_says_how_much(ip, cassette):
    ok(run_cell(ip, "a = 21\nprint('a doubled is', a * 2)"))
    ok(run_cell(ip, "from IPython.display import Markdown\nMarkdown('**shown**')"))
    run_cell(ip, "a.nope")
    cap = ok(run_cell(ip, "%%gemini --context all\nWhat happened above?"))
    note = [line for line in cap.stdout.splitlines() if line.startswith("context:")]
    assert len(note) == 1 and note[0].startswith("context: 3 cells, ~") and "tokens" in note[0]
    body = sent(cassette)[-1]
    assert isinstance(body["input"], str)  # one text: context, then the question
    prompt = body["input"]
    assert prompt.index("print('a doubled is', a * 2)") < prompt.index("a doubled is 42") \
        < prompt.index("**shown**") < prompt.index("AttributeError") \
        < prompt.index("What happened above?")
    assert "%%gemini" not in prompt  # gemini cells are the conversation, not context
    assert "a doubled is 42" in cap.markdown  # the echo saw it


def test_context_n_sends_only_the_last_cells_and_the_budget_drops_the_oldest(ip, cassette):
    for i in range(4):
        ok(run_cell(ip, f"print('cell {i}' + ' word' * 150)"))
    cap = ok(run_cell(ip, "%%gemini --context 2\nq"))
    prompt = text_of(sent(cassette)[-1])
    assert "cell 3" in prompt and "cell 2" in prompt and "cell 1" not in prompt
    assert "context: 2 cells" in cap.stdout
    magics_of(ip).context_tokens = 300
    try:
        cap = ok(run_cell(ip, "%%gemini --context all\nq"))
    finally:
        magics_of(ip).context_tokens = 8000
    prompt = text_of(sent(cassette)[-1])
    assert "cell 3" in prompt and "cell 0" not in prompt
    assert "older cells left out: over context_tokens=300" in cap.stdout


def test_the_context_setting_applies_to_every_cell(ip, cassette):
    ok(run_cell(ip, "print('from the setting')"))
    ok(run_cell(ip, "%gemini context 1"))
    try:
        ok(run_cell(ip, "%%gemini\nq"))
    finally:
        ok(run_cell(ip, "%gemini context default"))
    assert "from the setting" in text_of(sent(cassette)[-1])


def test_an_image_a_cell_showed_goes_as_an_image(ip, cassette):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    ip.user_ns["png"] = buf.getvalue()
    ok(run_cell(ip, "from IPython.display import Image as I\ndisplay(I(data=png))"))
    ok(run_cell(ip, "%%gemini --context 1\nWhat colour?"))
    body = sent(cassette)[-1]
    images = [c for step in body["input"] for c in step["content"] if c.get("type") == "image"]
    assert len(images) == 1 and base64.b64decode(images[0]["data"]) == buf.getvalue()
    ip.user_ns.pop("png")


@pytest.mark.parametrize("value", ["-3", "0", "some"])
def test_a_bad_context_is_one_sentence(ip, value):
    cap = run_cell(ip, f"%%gemini --context {value}\nq")
    assert str(cap.error) == (f"--context needs a number of cells (1 or more) or all, not "
                              f"{value!r}.")
    cap = run_cell(ip, f"%gemini context {value}")
    assert cap.error is not None and "--context needs a number" in str(cap.error)
    assert magics_of(ip).context is None


# -- --code ------------------------------------------------------------------------------------

def test_code_fills_result_code_out_and_the_next_cell(ip, cassette):
    cap = ok(run_cell(ip, "%%gemini --code -o code\nMake this faster:\n```python\n"
                          "out = sorted(x)[0]\n```"))
    assert ip.user_ns["code"] == "out = sorted(x)[0]" == ip.user_ns["_gemini"].code
    assert ip.rl_next_input == "out = sorted(x)[0]"
    assert "The code is in a new cell below (not run)." in cap.stdout
    assert "Answer with Python code only: one ```python code block" in text_of(sent(cassette)[-1])


def test_code_takes_a_language_and_works_on_the_line_magic(ip, cassette):
    ok(run_cell(ip, "%%gemini --code sql\nselect everything"))
    assert "Answer with sql code only: one ```sql code block" in text_of(sent(cassette)[-1])
    ok(run_cell(ip, "%gemini --code sort a list"))  # `sort` is no language: python
    prompt = text_of(sent(cassette)[-1])
    assert prompt.startswith("sort a list") and "```python" in prompt
    assert ip.rl_next_input == ip.user_ns["_gemini"].code


def test_code_with_ui_is_one_sentence(ip):
    cap = run_cell(ip, "%%gemini --code --ui\nq")
    assert str(cap.error) == ("--code puts the answer's code into a new cell, which needs the "
                              "cell to wait for the answer; drop --ui.")


# -- {df} ----------------------------------------------------------------------------------------

def test_a_dataframe_is_described_not_dumped(ip, cassette):
    ok(run_cell(ip, "import pandas as pd\ndf = pd.DataFrame({'city': [f'c{i}' for i in "
                    "range(10000)], 'temp': [i * 0.5 for i in range(10000)], 'n': range(10000)})"))
    ok(run_cell(ip, "%%gemini\nSummarise {df}"))
    prompt = text_of(sent(cassette)[-1])
    assert "pandas DataFrame, 10,000 rows × 3 columns" in prompt
    city = ip.user_ns["df"]["city"].dtype  # object, or str on pandas 3
    assert f"city ({city})" in prompt and "temp (float64)" in prompt and "n (int64)" in prompt
    assert "c0" in prompt and "c4" in prompt and "c9999" not in prompt and "c5 " not in prompt
    assert len(prompt) < 1500


def test_big_containers_and_arrays_are_described_and_bang_s_sends_everything(ip, cassette):
    ok(run_cell(ip, "import numpy as np\nbig = list(range(5000))\nx = np.zeros((1000, 3))"))
    ok(run_cell(ip, "%%gemini\n{big} and {x}"))
    prompt = text_of(sent(cassette)[-1])
    assert "list of 5,000 items (int); first 5: [0, 1, 2, 3, 4, …]" in prompt
    assert "numpy array, shape 1,000×3, dtype float64" in prompt and "4999" not in prompt
    ok(run_cell(ip, "%%gemini\n{big!s}"))
    assert text_of(sent(cassette)[-1]) == str(list(range(5000)))


# -- %gemini export -----------------------------------------------------------------------------

EXPORT_CELLS = ["%%gemini\nFirst question", "%%gemini --stateless\nSecond, stateless",
                "%%gemini --functions get_weather\nParis"]


@pytest.fixture()
def talked(ip):
    ok(run_cell(ip, "calls = []\ndef get_weather(city: str) -> dict:\n"
                    "    '''Current weather for a city.'''\n    calls.append(city)\n"
                    "    return {'city': city, 'temp': 21}"))
    for cell in EXPORT_CELLS:
        ok(run_cell(ip, cell))
    return ip


def test_export_markdown_has_every_turn_with_tool_steps(talked, tmp_path):
    path = tmp_path / "chat.md"
    cap = ok(run_cell(talked, f"%gemini export {path}"))
    assert cap.stdout.strip() == f"Exported 3 turns to {path}."
    md = path.read_text()
    for i, prompt in enumerate(["First question", "Second, stateless", "Paris"], 1):
        assert f"## {i} · You\n\n{prompt}" in md and f"## {i} · Gemini" in md
    assert '**Call** `get_weather(city="Paris")`' in md and "**returned**" in md
    assert "You said: Second, stateless" in md and "<details>" in md


def test_export_notebook_is_valid_and_json_has_the_server_interactions(talked, tmp_path):
    import nbformat

    nb_path, js_path = tmp_path / "chat.ipynb", tmp_path / "chat.json"
    ok(run_cell(talked, f"%gemini export {nb_path}"))
    ok(run_cell(talked, f"%gemini export {js_path}"))
    nb = nbformat.read(nb_path, as_version=4)
    nbformat.validate(nb)
    assert [c.cell_type for c in nb.cells] == ["markdown"] * 7
    assert "First question" in nb.cells[1].source and "Echo:" in nb.cells[2].source
    doc = json.loads(js_path.read_text())
    turns = doc["turns"]
    assert [t["prompt"] for t in turns] == ["First question", "Second, stateless", "Paris"]
    assert [t["stored"] for t in turns] == [True, False, True]
    assert turns[1]["interactions"] == []  # store=false: nothing on the server
    # the function turn was read back round by round from the server
    assert len(turns[2]["interactions"]) == 2
    assert [s["type"] for s in turns[2]["steps"]] == ["function_call", "function_result",
                                                      "model_output"]
    assert turns[0]["interactions"][0]["id"] == turns[0]["interaction_id"]


def test_export_an_image_prompt_as_attachment(ip, tmp_path):
    from PIL import Image

    Image.new("RGB", (16, 16), "blue").save(tmp_path / "blue.png")
    ok(run_cell(ip, f"%%gemini --image {tmp_path / 'blue.png'}\nWhat is this?"))
    ok(run_cell(ip, f"%gemini export {tmp_path / 'img.ipynb'}"))
    nb = json.loads((tmp_path / "img.ipynb").read_text())
    prompt_cell = nb["cells"][1]
    assert list(prompt_cell["attachments"]) == ["image1.png"]
    assert "![image1.png](attachment:image1.png)" in prompt_cell["source"]


@pytest.mark.parametrize("target, sentence", [
    ("chat.txt", "Cannot export to '{p}': the file name must end in .md, .ipynb or .json."),
    ("afile/chat.md", "Cannot write '{p}' (Not a directory); pick a file in a folder you can "
                      "write to."),
])
def test_export_to_a_bad_path_is_one_sentence(talked, tmp_path, target, sentence):
    (tmp_path / "afile").write_text("")
    path = tmp_path / target
    cap = run_cell(talked, f"%gemini export {path}")
    assert str(cap.error) == sentence.format(p=path)
    assert "Traceback" not in cap.stdout + cap.stderr


def test_export_with_no_conversation_is_one_sentence(ip, tmp_path):
    cap = run_cell(ip, f"%gemini export {tmp_path / 'x.md'}")
    assert str(cap.error) == "Nothing to export: the conversation has no turns yet."


# -- --confirm -----------------------------------------------------------------------------------

@pytest.fixture()
def weather(ip):
    ok(run_cell(ip, "calls = []\ndef get_weather(city: str) -> dict:\n"
                    "    '''Current weather for a city.'''\n    calls.append(city)\n"
                    "    return {'city': city, 'temp': 21}"))
    return ip


def test_confirm_deny_reaches_the_model_as_a_declined_result(weather, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    cap = ok(run_cell(weather, "%%gemini --functions get_weather --confirm -o r\nParis"))
    assert 'Allow the call get_weather(city="Paris")?' in cap.stdout
    assert weather.user_ns["calls"] == []
    r = weather.user_ns["r"]
    assert r.ok and r.function_results[0]["is_error"]
    assert "You said: [function result get_weather: " in r.text
    assert "The user declined this call: get_weather was not run." in r.text


def test_confirm_allow_runs_the_call_and_the_setting_asks_too(weather, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    magics_of(weather).confirm_functions = True
    try:
        cap = ok(run_cell(weather, "%%gemini --functions get_weather -o r\nParis"))
    finally:
        magics_of(weather).confirm_functions = False
    assert "Allow the call" in cap.stdout and weather.user_ns["calls"] == ["Paris"]
    assert '"temp": 21' in weather.user_ns["r"].text


def test_confirm_without_functions_is_one_sentence(ip):
    cap = run_cell(ip, "%%gemini --confirm\nq")
    assert str(cap.error) == ("--confirm only applies to --functions; add --functions NAMES or "
                              "drop it.")


# -- the log's hooks -----------------------------------------------------------------------------

def test_unload_removes_the_hooks_and_load_adds_them_again(ip):
    real_stdout = sys.stdout
    log = magics_of(ip).session.cell_log
    ip.run_line_magic("unload_ext", "gemini_magics")
    try:
        assert log.pre_run_cell not in ip.events.callbacks["pre_run_cell"]
        assert log.post_run_cell not in ip.events.callbacks["post_run_cell"]
        ip.run_cell("print('not logged')")
        assert sys.stdout is real_stdout and not log.records
    finally:
        ip.run_line_magic("load_ext", "gemini_magics")
    new = magics_of(ip).session.cell_log
    assert new is not None and new.pre_run_cell in ip.events.callbacks["pre_run_cell"]
