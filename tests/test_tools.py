"""`--tools` parsing, tool-step Markdown and numbered citations, on steps the real SDK parsed.

Tool steps come from a scripted loopback server (the local server emits them once the emulation
in gemini_magics/server/tools.py is wired in); the SDK parses them over a real socket, exactly
as the magic will receive them.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Union

import pytest
from conftest import make_client

from gemini_magics.catalog import BUILTIN_TOOLS
from gemini_magics.tools import cite, parse_tools, render_step_markdown


# --------------------------------------------------------------------------------------------
# A scripted Interactions endpoint (also imported by test_functions and test_tool_emulation)
# --------------------------------------------------------------------------------------------

def interaction(steps: list[dict], status: str = "completed", iid: str = "v1_scripted") -> dict:
    """A complete, strictly valid Interaction resource around `steps`."""
    return {"id": iid, "object": "interaction", "status": status, "model": "gemini-3.5-flash",
            "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:01Z",
            "steps": steps, "usage": {"total_tokens": 1}}


Reply = Union[dict, list]


@contextmanager
def scripted_server(respond: Callable[[dict], Reply]):
    """Serve `POST /{v}/interactions`: `respond(body)` gives an Interaction dict (JSON reply) or
    a list of SSE event dicts (streamed, each given an `event_id`). Yields (base_url, bodies)."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            bodies.append(body)
            reply = respond(body)
            if isinstance(reply, list):
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for n, event in enumerate(reply, 1):
                    event = {**event, "event_id": f"e{n}"}
                    self.wfile.write(f"event: {event['event_type']}\ndata: {json.dumps(event)}\n\n"
                                     .encode())
                    self.wfile.flush()
            else:
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def sdk_client(base_url: str):
    return make_client(base_url, retry_options={"attempts": 1})


# The quickstart's Google Search response (section 8), plus one step of every other tool.
SEARCH_STEPS = [
    {"type": "thought", "signature": "EvEFCu4F"},
    {"type": "google_search_call", "id": "search_001", "arguments": {"queries": ["UEFA Euro 2024 winner"]}},
    {"type": "google_search_result", "call_id": "search_001",
     "result": [{"search_suggestions": "<style>.chip{}</style><div class='chip'>UEFA Euro 2024 winner</div>"}]},
    {"type": "model_output", "content": [{
        "type": "text", "text": "Spain won Euro 2024, defeating England 2-1 in the final.",
        "annotations": [{"type": "url_citation", "url": "https://www.uefa.com/euro2024",
                         "title": "uefa.com", "start_index": 0, "end_index": 56}]}]},
]
OTHER_STEPS = [
    {"type": "code_execution_call", "id": "c1", "arguments": {"code": "print(6 * 7)", "language": "python"}},
    {"type": "code_execution_result", "call_id": "c1", "result": "42\n"},
    {"type": "code_execution_result", "call_id": "c2", "result": "NameError: x", "is_error": True},
    {"type": "url_context_call", "id": "u1", "arguments": {"urls": ["https://example.com/a page"]}},
    {"type": "url_context_result", "call_id": "u1",
     "result": [{"url": "https://example.com/a page", "status": "paywall"}]},
    {"type": "google_maps_call", "id": "m1", "arguments": {"queries": ["pizza near Dam Square"]}},
    {"type": "google_maps_result", "call_id": "m1", "result": [{"places": [
        {"place_id": "p1", "name": "Pizza [Best]", "url": "https://maps.example/p1",
         "review_snippets": [{"title": "Great crust", "url": "https://maps.example/r1"}]}]}]},
    {"type": "file_search_call", "id": "f1"},
    {"type": "file_search_result", "call_id": "f1", "result": [{"title": "handbook.pdf", "text": "Leave policy"}]},
    {"type": "function_call", "id": "call_1", "name": "get_current_temperature",
     "arguments": {"location": "London"}},
    {"type": "function_result", "call_id": "call_1", "name": "get_current_temperature",
     "result": [{"type": "text", "text": json.dumps({"temperature": "22", "unit": "celsius"})}]},
    {"type": "function_result", "call_id": "call_2", "name": "convert", "is_error": True,
     "result": [{"type": "text", "text": json.dumps({"error": "convert raised ValueError: no rate"})}]},
]


@pytest.fixture()
def sdk_steps():
    """The steps above, as the real SDK parses them from a real HTTP response."""
    with scripted_server(lambda body: interaction(SEARCH_STEPS + OTHER_STEPS)) as (url, _):
        c = sdk_client(url)  # keep a reference: a collected Client closes its connection pool
        i = c.interactions.create(model="gemini-3.5-flash", input="Who won the euro 2024?",
                                  tools=[{"type": "google_search"}])
    assert i.output_text == "Spain won Euro 2024, defeating England 2-1 in the final."
    return i.steps


# --------------------------------------------------------------------------------------------
# parse_tools
# --------------------------------------------------------------------------------------------

def test_every_builtin_tool_parses_to_its_wire_dict():
    assert parse_tools(",".join(BUILTIN_TOOLS)) == [
        {"type": "google_search"}, {"type": "code_execution"}, {"type": "url_context"},
        {"type": "google_maps"}, {"type": "file_search"},
        {"type": "computer_use", "environment": "browser"},
    ]


def test_spaces_duplicates_and_options_are_handled():
    assert parse_tools(" google_search , google_search,code-execution ") == [
        {"type": "google_search"}, {"type": "code_execution"}]
    assert parse_tools("file_search:fileSearchStores/a+fileSearchStores/b,computer_use:desktop") == [
        {"type": "file_search", "file_search_store_names": ["fileSearchStores/a", "fileSearchStores/b"]},
        {"type": "computer_use", "environment": "desktop"}]
    assert parse_tools(["url_context", "google_maps"]) == [{"type": "url_context"}, {"type": "google_maps"}]
    assert parse_tools("") == [] and parse_tools(None) == []


@pytest.mark.parametrize("spec, words", [
    ("google_serch", ["Unknown tool 'google_serch'", "did you mean google_search?",
                      "google_search, code_execution, url_context, google_maps, file_search, computer_use"]),
    ("google_search,web_browser", ["Unknown tool 'web_browser'", "valid tools are:"]),
    ("google_search:images", ["google_search takes no option"]),
    ("computer_use:television", ["not an environment", "browser, mobile, desktop"]),
])
def test_bad_tool_specs_get_one_sentence(spec, words):
    with pytest.raises(ValueError) as err:
        parse_tools(spec)
    message = str(err.value)
    assert "\n" not in message and message.endswith(".")
    for w in words:
        assert w in message


def test_parsed_tools_are_accepted_by_the_sdk_and_the_local_server(client):
    i = client.interactions.create(model="gemini-3.5-flash", input="hi",
                                   tools=parse_tools(",".join(BUILTIN_TOOLS)))
    assert i.status == "completed"


# --------------------------------------------------------------------------------------------
# render_step_markdown
# --------------------------------------------------------------------------------------------

def test_search_steps_show_the_query_and_the_cited_answer(sdk_steps):
    md = [render_step_markdown(s) for s in sdk_steps]
    assert md[0] == ""  # a signature-only thought has nothing to show
    assert md[1] == "**Search:** `UEFA Euro 2024 winner`"
    assert "1 received" in md[2] and "UEFA Euro 2024 winner" in md[2] and "chip{" not in md[2]
    assert md[3] == ("Spain won Euro 2024, defeating England 2-1 in the final."
                     "[[1]](https://www.uefa.com/euro2024)\n\n**Sources**\n\n"
                     "1. [uefa.com](https://www.uefa.com/euro2024)")


def test_a_search_result_streamed_without_its_results_shows_no_count():
    # the real API streams google_search_result without `result` (the SDK path dumps it as null)
    for step in ({"type": "google_search_result", "call_id": "s1", "signature": "c2ln"},
                 {"type": "google_search_result", "call_id": "s1", "result": None}):
        assert render_step_markdown(step) == "**Search results received**"


def test_every_tool_step_renders_what_happened(sdk_steps):
    md = {i: render_step_markdown(s) for i, s in enumerate(sdk_steps[4:])}
    assert md[0] == "**Code execution** (python)\n\n```python\nprint(6 * 7)\n```"
    assert md[1] == "**Output**\n\n```text\n42\n```"
    assert md[2].startswith("⚠ **Code error**") and "NameError: x" in md[2]
    assert md[3] == "**Reading URLs:**\n- [https://example.com/a page](https://example.com/a%20page)"
    assert md[4].endswith("(https://example.com/a%20page): paywall")
    assert md[5] == "**Maps search:** `pizza near Dam Square`"
    assert md[6] == ("**Places:**\n- [Pizza \\[Best\\]](https://maps.example/p1) "
                     "(reviews: [Great crust](https://maps.example/r1))")
    assert md[7] == "**File search**"
    assert md[8] == "**File search results:** 1\n- handbook.pdf: Leave policy"
    assert md[9] == '**Call** `get_current_temperature(location="London")`'
    assert md[10] == ('→ `get_current_temperature` **returned**\n\n```json\n{\n  "temperature": "22",\n'
                      '  "unit": "celsius"\n}\n```')
    assert md[11].startswith("⚠ `convert` **failed**") and "no rate" in md[11]


def test_steps_need_no_emoji_font():
    """Without an emoji font (a plain Linux desktop) emoji and the emoji selector U+FE0F show as
    empty boxes: the marks of the steps are bold words and glyphs of common text fonts."""
    steps = SEARCH_STEPS + OTHER_STEPS + [
        {"type": "thought", "summary": [{"type": "text", "text": "Plan"}]},
        {"type": "google_search_result", "call_id": "s", "is_error": True, "result": []},
        {"type": "google_search_call", "id": "s", "search_type": "image_search",
         "arguments": {"queries": ["a", "b"]}},
    ]
    for step in steps:
        md = render_step_markdown(step)
        marks = {c for c in md if ord(c) > 0x7F} - set(json.dumps(step, ensure_ascii=False))
        assert marks <= {"·", "→", "\u26a0"}, (step["type"], marks)


def test_plain_dicts_render_like_sdk_objects(sdk_steps):
    for raw, parsed in zip(SEARCH_STEPS + OTHER_STEPS, sdk_steps):
        assert render_step_markdown(raw) == render_step_markdown(parsed)


def test_code_containing_backticks_keeps_its_fence():
    md = render_step_markdown({"type": "code_execution_call", "id": "c",
                               "arguments": {"code": 'print("```")', "language": "python"}})
    assert md.endswith('````python\nprint("```")\n````')


def test_unknown_steps_still_show_their_content():
    md = render_step_markdown({"type": "teleport_call", "id": "t", "arguments": {"function_names": ["f"]}})
    assert md.startswith("**teleport\\_call**") and '"function_names"' in md
    assert render_step_markdown({"type": "user_input", "content": [{"type": "text", "text": "hi"}]}) == ""


def test_thought_summaries_render_as_a_quote():
    md = render_step_markdown({"type": "thought", "summary": [{"type": "text", "text": "Plan:\nsearch"}]})
    assert md == "> *Thinking*\n> Plan:\n> search"


# --------------------------------------------------------------------------------------------
# cite
# --------------------------------------------------------------------------------------------

def test_cite_uses_byte_offsets_and_numbers_each_source_once():
    text = "Café au lait. Crème brûlée. Fin."
    first = len("Café au lait.".encode())
    second = len("Café au lait. Crème brûlée.".encode())
    notes = [
        {"type": "url_citation", "url": "https://a.example/1", "title": "A", "start_index": 0, "end_index": first},
        {"type": "url_citation", "url": "https://b.example/2", "title": "B", "start_index": first, "end_index": second},
        {"type": "url_citation", "url": "https://a.example/1", "title": "A", "start_index": 0, "end_index": second},
        {"type": "speech_metadata"},
    ]
    assert cite(text, notes, markdown=False) == (
        "Café au lait.[1] Crème brûlée.[1][2] Fin.\n\nSources:\n"
        "[1] A - https://a.example/1\n[2] B - https://b.example/2")
    md = cite(text, notes)
    assert "Café au lait.[[1]](https://a.example/1) Crème" in md
    assert md.endswith("**Sources**\n\n1. [A](https://a.example/1)\n2. [B](https://b.example/2)")


def test_cite_tolerates_offsets_inside_a_character_or_past_the_end():
    text = "né"
    notes = [{"type": "url_citation", "url": "https://x.example", "end_index": 2},  # inside "é"
             {"type": "url_citation", "url": "https://y.example", "end_index": 99}]
    assert cite(text, notes, markdown=False).startswith("né[1][2]\n")


def test_cite_handles_place_and_file_citations_and_no_citations():
    out = cite("Try Luigi's.", [
        {"type": "place_citation", "place_id": "p", "name": "Luigi's", "url": "https://maps.example/p",
         "end_index": 12},
        {"type": "file_citation", "file_name": "menu.pdf", "page_number": 2, "end_index": 12}])
    assert out.startswith("Try Luigi's.[[1]](https://maps.example/p)[2]")
    assert "2. menu.pdf, page 2" in out
    assert cite("no sources", []) == "no sources"


def test_titles_cannot_break_the_markdown_link():
    out = cite("x", [{"type": "url_citation", "url": "https://e.example/a(b)", "title": "[evil](js)"}])
    assert out.endswith("1. [\\[evil\\]\\(js\\)](https://e.example/a%28b%29)")
