"""Hostile schema references and keyless requests against a classroom server (issue #18).

A `$ref` in a function's `parameters` or a response schema once made jsonschema fetch it
(`file://` read a host file into the error text; `http://` connected out once per request).
Now a non-local reference is a 400 naming the field, nothing is ever fetched, and every route
of a server with keys answers 401 without one before saying anything else. Through
`gemini-magics serve --keys FILE --db FILE` (a child process, echo engine), raw httpx and the
real google-genai SDK; the server's log is read when it stops.
"""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from google import genai
from google.genai import _interactions as errors
from referencing.exceptions import Unresolvable
from test_server_cli import Served

from gemini_magics.server import start_server
from gemini_magics.server.json_schema import validator

ALICE = "alice-7Qm2Vx9Lp4Rt8Kw3Zb6N"
BOB = "bob-Hq8sLd0Vn4Ue6WjA1fRo"
MARKER = "MARKER-creds-9f3b2a7c1d"
ANSWER_FORMS = ("json", "sse")  # a plain create, and one that asks for a stream


@pytest.fixture()
def secret_file(tmp_path):
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"token": MARKER, "nested": {"token": MARKER}}))
    return path


class Classroom:
    """The classroom server (two student keys) and its log, read when it stops."""

    def __init__(self, tmp_path):
        keys = tmp_path / "keys.txt"
        keys.write_text(f"alice: {ALICE}\nbob: {BOB}\n")
        self.proc = Served("--engine", "echo", "--port", "0", "--keys", str(keys),
                           "--db", str(tmp_path / "class.sqlite"))
        self.url = self.proc.url
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def post(self, body, key=ALICE, form="json"):
        params = {"alt": "sse"} if form == "sse" else None
        return self.http.post("/v1beta/interactions", json=body, params=params,
                              headers={"x-goog-api-key": key})

    def stop(self) -> str:
        self.http.close()
        code, out, err = self.proc.stop()
        assert code == 0, err
        return out + err


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server for the module; its log, at the end, must not hold the marker either."""
    s = Classroom(tmp_path_factory.mktemp("classroom"))
    try:
        yield s
        assert MARKER not in s.stop()
    finally:
        s.proc.kill()


@pytest.fixture()
def listener():
    """A loopback HTTP server that counts the connections it gets (and answers a schema
    carrying the marker, as an attacker's would)."""
    class Counting(ThreadingHTTPServer):
        connections = 0

        def verify_request(self, request, client_address):
            type(self).connections += 1
            return True

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"type": "string", "const": MARKER}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = Counting(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def placements(ref: str) -> dict:
    """Parameter schemas hiding `ref`, by name -> (schema, the path of the $ref inside it)."""
    obj = {"type": "object", "properties": {"city": {"type": "string"}},
           "$defs": {"Str": {"type": "string"}}}
    nested = {"Str": {"type": "string"}, "A": {"$defs": {"B": {"prefixItems": [{"$ref": ref}]}}}}
    return {
        "plain": ({**obj, "properties": {"city": {"$ref": ref}}}, "properties.city.$ref"),
        "if": ({**obj, "if": {"$ref": ref}}, "if.$ref"),
        "allOf": ({**obj, "allOf": [{"type": "object"}, {"$ref": ref}]}, "allOf[1].$ref"),
        "nested $defs": ({**obj, "$defs": nested}, "$defs.A.$defs.B.prefixItems[0].$ref"),
        "$dynamicRef": ({**obj, "properties": {"city": {"$dynamicRef": ref}}},
                        "properties.city.$dynamicRef"),
    }


def carriers(schema: dict) -> dict:
    """Request bodies carrying `schema`, by the field path that names it."""
    fn = {"type": "function", "name": "get_weather", "description": "the weather in a city",
          "parameters": schema}
    ask = "What is the weather in Paris?"
    return {
        "tools[1].parameters": {"model": "m", "input": ask,
                                "tools": [{"type": "google_search"}, fn]},
        "response_format.schema": {"model": "m", "input": ask,
                                   "response_format": {"type": "text", "schema": schema}},
        "response_format[0]": {"model": "m", "input": ask, "response_format": [schema]},
    }


def hostile_requests(ref: str):
    for name, (schema, inner) in placements(ref).items():
        for where, body in carriers(schema).items():
            yield name, f"{where}.{inner}", body


def assert_refused(r: httpx.Response, field: str) -> None:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["status"] == "INVALID_ARGUMENT"
    assert err["message"].startswith(f"{field}: only local references ('#/...') are allowed")
    assert MARKER not in r.text


# -- references that leave the request -----------------------------------------------------------

@pytest.mark.parametrize("form", ANSWER_FORMS)
def test_a_reference_to_a_host_file_is_a_400_naming_the_field(served, secret_file, form):
    for ref in (secret_file.as_uri() + "#/nope", secret_file.as_uri(), str(secret_file)):
        for name, field, body in hostile_requests(ref):
            assert_refused(served.post(body, form=form), field)
    # the same schemas with the reference made local are served (so the 400 was the reference)
    for name, field, body in hostile_requests("#/$defs/Str"):
        r = served.post(body, form=form)
        assert r.status_code == 200 and MARKER not in r.text, (name, field, r.text)


def test_the_sdk_gets_the_sentence_and_no_file(served, secret_file):
    alice = genai.Client(api_key=ALICE, http_options={"base_url": served.url})
    schema, inner = placements(secret_file.as_uri() + "#/nope")["if"]
    fn = {"type": "function", "name": "get_weather", "parameters": schema}
    with pytest.raises(errors.BadRequestError) as exc:
        alice.interactions.create(model="m", input="weather in Paris?", tools=[fn])
    assert f"tools[0].parameters.{inner}: only local references" in str(exc.value)
    with pytest.raises(errors.BadRequestError) as exc:
        for _ in alice.interactions.create(model="m", input="weather?", tools=[fn], stream=True):
            pass
    assert "only local references" in str(exc.value) and MARKER not in str(exc.value)


def test_a_reference_to_a_loopback_url_is_never_fetched(served, listener):
    url = f"http://127.0.0.1:{listener.server_address[1]}/schema.json"
    for form in ANSWER_FORMS:
        for ref in (url, url + "#/nope"):
            for name, field, body in hostile_requests(ref):
                assert_refused(served.post(body, form=form), field)
    assert listener.connections == 0  # (each answer came after anything its turn did)


def test_a_batch_requests_schema_may_not_reference_a_file_either(secret_file):
    """Batches are off in classroom mode; a server without keys serves them."""
    schema = {"type": "object", "properties": {"city": {"$ref": secret_file.as_uri()}}}
    body = {"batch": {"inputConfig": {"requests": {"requests": [
        {"request": {"contents": [{"parts": [{"text": "Paris"}]}],
                     "generationConfig": {"responseMimeType": "application/json",
                                          "responseJsonSchema": schema}}}]}}}}
    with start_server(engine="echo") as srv:
        r = httpx.post(srv.base_url + "/v1beta/models/m:batchGenerateContent", json=body,
                       timeout=10)
    assert_refused(r, "batch.inputConfig.requests.requests[0].request.generationConfig"
                      ".responseJsonSchema.properties.city.$ref")


def test_the_servers_validators_fetch_nothing(secret_file, listener):
    """The second wall, behind the 400: a validator the server makes never retrieves, even for
    a schema that reached it some other way."""
    url = f"http://127.0.0.1:{listener.server_address[1]}/schema.json"
    for ref in (secret_file.as_uri() + "#/nope", url + "#/nope"):
        with pytest.raises(Unresolvable) as exc:
            list(validator({"if": {"$ref": ref}, "then": {"type": "string"}}).iter_errors(1))
        assert MARKER not in str(exc.value)
    assert listener.connections == 0


# -- local references still work -------------------------------------------------------------------

def test_local_refs_plan_and_validate(served):
    params = {"type": "object", "properties": {"where": {"$ref": "#/$defs/City"}},
              "required": ["where"],
              "$defs": {"City": {"type": "object", "properties": {"name": {"type": "string"}},
                                 "required": ["name"]}}}
    fn = {"type": "function", "name": "get_weather", "description": "the weather in a city",
          "parameters": params}
    alice = genai.Client(api_key=ALICE, http_options={"base_url": served.url})
    made = alice.interactions.create(model="m", input="What is the weather in Paris?", tools=[fn])
    assert made.status == "requires_action"
    (call,) = [s for s in made.steps if s.type == "function_call"]
    assert call.name == "get_weather"
    assert call.arguments == {"where": {"name": "What is the weather in Paris?"}}
    answer = served.post({"model": "m", "input": "Paris",
                          "response_format": {"type": "text", "schema": params}})
    assert answer.status_code == 200, answer.text
    text = answer.json()["steps"][-1]["content"][0]["text"]
    assert json.loads(text) == {"where": {"name": "Paris"}}


def test_a_local_ref_to_nothing_is_a_400_naming_it(served):
    """Not a failed turn quoting the schema back: a sentence naming the reference."""
    dangling = {"type": "object", "properties": {"where": {"$ref": "#/$defs/Missing"}},
                "$defs": {"City": {"type": "string"}}}
    for where, body in carriers(dangling).items():
        for form in ANSWER_FORMS:
            r = served.post(body, form=form)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["message"].startswith(
                f"{where}.properties.where.$ref is '#/$defs/Missing', which points at nothing")


# -- one key gate in front of every route --------------------------------------------------------

ROUTES = [  # (method, path, what it answers with a key)
    ("POST", "/v1beta/interactions", 400),                     # create (empty body)
    ("GET", "/v1beta/files", 501),                             # an SDK route we do not serve
    ("POST", "/upload/v1beta/files", 501),
    ("GET", "/v1beta/interactions/live", 501),
    ("GET", "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent", 501),
    ("PUT", "/v1beta/interactions", 405),                      # a wrong method
    ("GET", "/v1beta/interactions", 405),
    ("GET", "/nope", 404),                                     # an unknown path
    ("GET", "/v1beta/interactions/x/y/z", 404),
    ("POST", "/v1beta/models/m:batchGenerateContent", 400),    # the Batch API (empty body)
    ("GET", "/v1beta/batches", 200),                           # this key's batches
    ("DELETE", "/v1beta/batches/123", 404),
    ("GET", "/teacher/api/usage", 404),                        # no console on this server
]


def test_every_route_answers_401_without_a_key(served):
    for method, path, with_key in ROUTES:
        for headers in ({}, {"x-goog-api-key": "not-a-classroom-key-at-all"}):
            r = served.http.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"]["status"] == "UNAUTHENTICATED"
            assert path not in r.text  # nothing about the route is said
        r = served.http.request(method, path, headers={"x-goog-api-key": BOB})
        assert r.status_code == with_key, (method, path, r.text)


def test_the_key_comes_before_the_body(served):
    """A keyless request declaring a huge body is refused at once, unread (not a 413)."""
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1beta/interactions HTTP/1.1\r\nhost: x\r\n"
                  b"content-type: application/json\r\ncontent-length: 999999999\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, head
            head += chunk
    assert head.startswith(b"HTTP/1.1 401 ")


def test_a_server_with_one_api_key_gates_every_route_too():
    with start_server(engine="echo", api_key="k" * 24) as srv:
        for method, path, _ in ROUTES[:9]:
            r = httpx.request(method, srv.base_url + path, timeout=10)
            assert r.status_code == 401, (method, path, r.text)
        r = httpx.get(srv.base_url + "/v1beta/files", headers={"x-goog-api-key": "k" * 24},
                      timeout=10)
        assert r.status_code == 501


def test_a_server_other_machines_reach_calls_no_mcp_server(listener):
    """An mcp_server tool makes the server send HTTP to a loopback port of its own machine: from a
    server on 0.0.0.0 any client could knock on those ports, so the turn is refused first."""
    key = "class-key-5Hq8Wd2Lm7Xr4Tz9Pb3"
    with start_server(engine="echo", host="0.0.0.0", api_key=key) as srv:
        url = f"http://127.0.0.1:{srv.port}/v1beta/interactions"
        tool = {"type": "mcp_server", "name": "probe",
                "url": f"http://127.0.0.1:{listener.server_address[1]}/mcp"}
        r = httpx.post(url, json={"model": "m", "input": "add 2 and 3", "tools": [tool]},
                       headers={"x-goog-api-key": key}, timeout=10)
    assert r.status_code == 400 and "calls no MCP servers" in r.json()["error"]["message"]
    assert listener.connections == 0
