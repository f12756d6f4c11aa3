"""Every third-party internal gemini_magics/compat.py reaches into, checked on the installed
versions: the internal is still there with the shape we rely on, and the patch still works end
to end (the real SDK against the echo server, a real uvicorn serving real sockets, a real
thread). A failure names the library and what moved: then update compat.py (its docstrings say
what falls back) before pinning the library."""
from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gemini_magics import compat
from gemini_magics.server.http_guard import _Guarded, http_protocol


def moved(library: str, what: str, effect: str) -> str:
    return f"{library} moved {what}: {effect}. Update gemini_magics/compat.py."


def internal(library: str, module: str, *names: str):
    """`module` imported and its `names` read, or a failure saying which one moved."""
    try:
        found = importlib.import_module(module)
    except ImportError as e:
        pytest.fail(moved(library, f"the module {module} ({e})", "compat.py falls back"))
    for name in names:
        if not hasattr(found, name):
            pytest.fail(moved(library, f"{module}.{name} (gone)", "compat.py falls back"))
    return found


# -- google-genai ------------------------------------------------------------------------------

def test_google_genai_builds_its_classes_through_the_create_model_we_memoize(client):
    serializers = internal("google-genai", "google.genai._gaos.utils.serializers", "create_model")
    assert compat.reuse_sdk_model_classes(), moved(
        "google-genai", "_gaos.utils.serializers.create_model", "nothing is memoized")
    memo = serializers.create_model
    memo.classes.clear()  # the process's memo, rebuilt by the next calls
    first = client.interactions.create(model="m", input="same words")
    built = len(memo.classes)
    assert built >= 1, moved("google-genai", "where it builds its per-call pydantic classes "
                             "(serializers.create_model is no longer called)",
                             "every request builds its classes again (~25 ms of CPU)")
    second = client.interactions.create(model="m", input="same words")
    assert len(memo.classes) == built, moved(
        "google-genai", "the arguments of serializers.create_model (equal calls no longer give "
        "equal memo keys)", "the memo misses and grows to its cap")
    assert second.output_text == first.output_text and first.output_text.startswith("Echo:")


def test_google_genai_still_reads_odd_interactions_leniently_where_compat_calls_it():
    """A total_tokens that is not a number fails the public model_validate; the SDK's lenient
    path still gives an Interaction with its text."""
    lenient = internal("google-genai", "google.genai._gaos.google_genai",
                       "_add_output_properties_if_interaction")
    serializers = internal("google-genai", "google.genai._gaos.utils.serializers",
                           "construct_unvalidated")
    params = list(inspect.signature(serializers.construct_unvalidated).parameters)[:2]
    assert params == ["value", "typ"], moved(
        "google-genai", f"construct_unvalidated's parameters (now {params})", "odd answers lose "
        "their output_text")
    assert len(inspect.signature(lenient._add_output_properties_if_interaction).parameters) == 1
    data = {"id": "odd", "status": "completed", "usage": {"total_tokens": "many"},
            "steps": [{"type": "model_output", "content": [{"type": "text", "text": "hi"}]}]}
    interaction = compat.sdk_interaction_from_dict(data)
    assert interaction.id == "odd"
    assert interaction.output_text == "hi", moved(
        "google-genai", "how _add_output_properties_if_interaction fills output_text",
        "result.interaction.output_text is None for odd answers")


def test_without_the_lenient_internals_an_odd_interaction_still_has_its_fields(monkeypatch):
    import google.genai._gaos.google_genai as lenient

    monkeypatch.delattr(lenient, "_add_output_properties_if_interaction")
    interaction = compat.sdk_interaction_from_dict({"id": "odd", "status": 5})
    assert (interaction.id, interaction.status) == ("odd", 5)


def test_google_genai_streams_keep_their_raw_http_response(client):
    stream = client.interactions.create(model="m", input="raw words", stream=True)
    try:
        lines = compat.raw_sse_lines(stream)
        assert lines is not None, moved(
            "google-genai", "the HTTP response of interactions.create(stream=True) (no "
            "`.response` with iter_bytes on its Stream)", "answers stream through the SDK's "
            "slower iterator, with a note")
        lines = list(lines)
    finally:
        stream.close()
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert "data: [DONE]" in lines and events[0]["event_type"] == "interaction.created"
    assert any(e.get("delta", {}).get("text", "").strip() for e in events)


def test_google_genai_shows_the_request_it_sent_and_the_client_that_sent_it(client):
    """What RowSender learns from the first row: posting the same request with that client
    gives the same kind of answer."""
    stream = client.interactions.create(model="m", input="row words", stream=True)
    try:
        request = compat.sdk_sent_request(stream)
    finally:
        stream.close()
    assert request is not None, moved(
        "google-genai", "Stream.response.request", "--over rows all go through the SDK (slower)")
    assert json.loads(request.content)["input"] == "row words"
    http = compat.sdk_http_client(client)
    assert http is not None, moved(
        "google-genai", "client.interactions.sdk_configuration.client (its httpx client)",
        "--over rows all go through the SDK (slower)")
    again = http.send(http.build_request("POST", request.url, content=request.content,
                                         headers=dict(request.headers)), stream=True)
    try:
        assert again.status_code == 200
        assert again.headers["content-type"].startswith("text/event-stream")
        assert "data: [DONE]" in list(compat.split_sse_lines(again.iter_bytes()))
    finally:
        again.close()


# -- uvicorn -----------------------------------------------------------------------------------

class _Probe:
    """An ASGI app that reports, from inside a request, what compat and the guard read of
    uvicorn's connection serving it."""

    server = None

    async def __call__(self, scope, receive, send):
        transport = compat.request_transport(receive)
        mine = [p for p in self.server.server_state.connections
                if transport is not None and getattr(p, "transport", None) is transport]
        seen = {"transport": transport is not None, "protocols": len(mine)}
        if mine:
            p = mine[0]
            seen["missing"] = [a for a in compat.H11_ATTRIBUTES if not hasattr(p, a)]
            seen["cycle_open"] = getattr(getattr(p, "cycle", None), "response_complete", None)
            seen["trailing"] = type(getattr(getattr(p, "conn", None), "trailing_data", None)).__name__
        if transport is not None:
            sock = transport.get_extra_info("socket")
            seen["nodelay"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        body = json.dumps(seen).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def guarded_port():
    """A real uvicorn on a proto-0 socket (as server/__init__.py binds it) serving _Probe with
    the guarded protocol."""
    import uvicorn

    probe = _Probe()
    config = uvicorn.Config(probe, http=http_protocol(), log_config=None, log_level="warning",
                            access_log=False, lifespan="off")
    server = probe.server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(10)
    sock.close()


def _exchange(port: int, raw: bytes) -> bytes:
    """Send `raw` and read until the server closes or a whole response has come."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 1 << 30


def test_uvicorn_h11_protocol_still_has_what_our_guard_overrides():
    h11_impl = internal("uvicorn", "uvicorn.protocols.http.h11_impl", "H11Protocol")
    base = h11_impl.H11Protocol
    gone = [m for m in compat.H11_METHODS if not callable(getattr(base, m, None))]
    assert not gone, moved("uvicorn", f"H11Protocol.{', '.join(gone)}",
                           "the server runs unguarded (no deadlines, plain-text 400s)")
    overridden = {n for n, v in vars(_Guarded).items() if callable(v) and hasattr(base, n)}
    unlisted = overridden - set(compat.H11_METHODS + compat.H11_SILENCED)
    assert not unlisted, f"http_guard overrides {sorted(unlisted)}: list them in compat.H11_*"
    assert list(inspect.signature(base.send_400_response).parameters) == ["self", "msg"], moved(
        "uvicorn", "H11Protocol.send_400_response's signature", "malformed HTTP gets a 500")
    assert issubclass(http_protocol(), base) and http_protocol() is not base


def test_a_live_uvicorn_connection_has_what_our_guard_reads(guarded_port):
    head, _, body = _exchange(guarded_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").partition(
        b"\r\n\r\n")
    seen = json.loads(body)
    assert seen["transport"], moved("uvicorn", "the transport of the request cycle behind "
                                    "`receive` (RequestResponseCycle.transport)",
                                    "answers wait ~40 ms for Nagle")
    assert seen["protocols"] == 1 and seen["missing"] == [], moved(
        "uvicorn", f"H11Protocol's connection attributes {seen.get('missing')}",
        "every connection of the guarded server fails")
    assert seen["cycle_open"] is False and seen["trailing"] == "tuple", moved(
        "uvicorn/h11", "RequestResponseCycle.response_complete or h11 Connection.trailing_data",
        "head and idle deadlines misfire")
    assert seen["nodelay"] == 1  # the guard's connection_made ran set_nodelay


def test_uvicorn_still_routes_broken_http_and_upgrades_through_our_overrides(guarded_port):
    broken = _exchange(guarded_port, b"NOT HTTP AT ALL\r\n\r\n")
    assert broken.startswith(b"HTTP/1.1 400") and b'"code":400' in broken, moved(
        "uvicorn", "how H11Protocol answers malformed HTTP (send_400_response)",
        "clients get plain text instead of Google's JSON error")
    upgrade = _exchange(guarded_port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                                      b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert upgrade.startswith(b"HTTP/1.1 200"), moved(
        "uvicorn", "H11Protocol._should_upgrade_to_ws", "WebSocket upgrades reach the app")


def test_when_uvicorn_moves_a_method_the_server_serves_unguarded_with_one_warning(
        monkeypatch, caplog):
    from uvicorn.protocols.http.h11_impl import H11Protocol

    monkeypatch.delattr(H11Protocol, "on_response_complete")
    with caplog.at_level(logging.WARNING, logger="gemini_magics.compat"):
        assert compat.guarded_h11_protocol(_Guarded) is H11Protocol
    assert [r.getMessage() for r in caplog.records] == [
        "uvicorn's H11Protocol no longer has on_response_complete: serving without the "
        "connection guards (deadlines, JSON 400s); install uvicorn 0.55 to keep them"]


# -- asyncio and CPython -----------------------------------------------------------------------

def test_set_nodelay_sets_the_option_on_a_real_asyncio_connection():
    import asyncio

    seen = {}

    class Recorder(asyncio.Protocol):
        def connection_made(self, transport):
            sock = transport.get_extra_info("socket")
            seen["before"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            compat.set_nodelay(transport)
            seen["after"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            transport.close()

    async def main():
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto 0: asyncio skips it
        listener.bind(("127.0.0.1", 0))
        server = await asyncio.get_running_loop().create_server(Recorder, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        for _ in range(500):
            if "after" in seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert seen["before"] == 0, "asyncio now sets TCP_NODELAY itself: set_nodelay may go"
    assert seen["after"] == 1, moved("asyncio", "transport.get_extra_info('socket') "
                                     "(no setsockopt)", "answers wait ~40 ms for Nagle")


# A server process with almost no free descriptors left: the first connections it accepts run it
# out, and asyncio reports the failed accept() to the loop's handler.
_OUT_OF_DESCRIPTORS = """
import asyncio, os, resource
from gemini_magics import compat

async def main():
    loop = asyncio.get_running_loop()
    seen = loop.create_future()

    def handler(loop, context):
        if not seen.done():
            seen.set_result((compat.is_accept_exhaustion(context), context.get("message")))

    loop.set_exception_handler(handler)
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    free = os.open(os.devnull, os.O_RDONLY)
    os.close(free)
    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (free + 2, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    print(server.sockets[0].getsockname()[1], flush=True)
    print(*await asyncio.wait_for(seen, 20), sep="|", flush=True)

asyncio.run(main())
"""


def test_asyncio_still_reports_accept_out_of_descriptors_as_compat_reads_it():
    pytest.importorskip("resource")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    with subprocess.Popen([sys.executable, "-c", _OUT_OF_DESCRIPTORS], stdout=subprocess.PIPE,
                          text=True, env=env) as proc:
        try:
            port = int(proc.stdout.readline())
            clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(8)]
            seen = proc.stdout.readline().strip()
        finally:
            proc.kill()
        for c in clients:
            c.close()
    assert seen.startswith("True|"), moved(
        "asyncio", f"its report of a failed accept() (now {seen!r})",
        "a descriptor flood logs a traceback per retry again")


class _Stop(Exception):
    pass


def test_raise_in_thread_stops_a_real_thread():
    import ctypes

    assert hasattr(getattr(ctypes, "pythonapi", None), "PyThreadState_SetAsyncExc"), moved(
        "CPython", "ctypes.pythonapi.PyThreadState_SetAsyncExc", "a timed-out function runs on")
    caught, started = [], threading.Event()

    def spin():
        started.set()
        try:
            for _ in range(2000):  # at most ~20 s, so the test can never hang
                time.sleep(0.01)
        except _Stop:
            caught.append(True)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    assert started.wait(5)
    assert compat.raise_in_thread(thread.ident, _Stop)
    thread.join(5)
    assert caught == [True] and not thread.is_alive(), moved(
        "CPython", "PyThreadState_SetAsyncExc's behaviour", "a timed-out function runs on")
    assert compat.raise_in_thread(thread.ident, _Stop) is False  # a finished thread: nothing


_PRICE_SCRIPT = """
import json, sys
from genai_prices import Usage, calc_price
if sys.argv[1] == "google-only":
    from gemini_magics.compat import install_provider_prices
    assert install_provider_prices("google", sys.argv[2]), "genai-prices: not installed"
usage = Usage(input_tokens=300_000, output_tokens=1_000, cache_read_tokens=100)
prices = {m: float(calc_price(usage, model_ref=m, provider_id="google").total_price)
          for m in ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-3-pro-preview")}
print(json.dumps({"prices": prices, "whole_table": "genai_prices.data" in sys.modules}))
"""


def test_genai_prices_with_googles_table_alone_prices_the_same(tmp_path):
    """compat.install_provider_prices: genai-prices' `genai_prices.data` module (every provider)
    and `DataSnapshot(providers=...)`; if they moved this fails naming them."""
    def run(mode):
        out = subprocess.run([sys.executable, "-c", _PRICE_SCRIPT, mode, str(tmp_path)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, ("genai-prices moved: the one-provider table (its data "
                                     "module or DataSnapshot) no longer loads: " + out.stderr)
        return json.loads(out.stdout)
    whole, alone = run("whole"), run("google-only")
    assert alone["prices"] == whole["prices"] and all(alone["prices"].values())
    assert whole["whole_table"] and not alone["whole_table"]  # the kernel never loads the rest
    assert len(list(tmp_path.glob("genai-prices-*-google.pickle"))) == 1
