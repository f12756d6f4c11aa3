"""Fixtures and helpers for the `%%gemini` magic tests.

- `shell`: a real IPython InteractiveShell with the extension loaded and pointed at the echo
  server from conftest (settings and conversation reset between tests).
- `run_cell(shell, source)`: run a cell, capturing stdout/stderr and rich outputs.
- `record_publishes(monkeypatch)`: every output published with a display id (the outputs
  saved in the notebook), recorded at IPython's display publisher.
- `final_outputs(outputs)`: fold display updates by display id, as a notebook frontend (and the
  saved .ipynb) would, into the list of final output bundles.
- `ScriptedServer`: a tiny loopback HTTP server that answers with scripted statuses, JSON and
  SSE (including dropped connections), for failures the real local server never produces.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

import pytest

ROOT_DIR = Path(__file__).resolve().parents[1]

__all__ = ["ROOT_DIR", "shell", "run_cell", "final_outputs", "ScriptedServer", "scripted", "magics_of",
           "sse_events_for", "Captured", "record_publishes"]


def magics_of(ip):
    return ip.magics_manager.registry["GeminiMagics"]


@pytest.fixture()
def shell(echo_server, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    ip = InteractiveShell.instance()
    if "GeminiMagics" not in ip.magics_manager.registry:
        ip.run_line_magic("load_ext", "gemini_magics")
    m = magics_of(ip)
    for name in m.trait_names():
        if m.traits()[name].metadata.get("config"):
            m.set_trait(name, m.traits()[name].default())
    m.base_url = echo_server.base_url
    m.retries = 0
    m.conversation.reset()
    m.last_result = None
    m.cancel_event = None
    ip.kernel = None  # no kernel: no cell ids unless a test sets a parent header
    yield ip
    ip.kernel = None
    for name in ("r", "_gemini"):
        ip.user_ns.pop(name, None)


@dataclass
class Captured:
    result: Any
    stdout: str
    stderr: str
    outputs: list  # raw publish calls: {"data", "metadata", "transient", "update"}

    @property
    def error(self) -> Optional[BaseException]:
        return self.result.error_in_exec or self.result.error_before_exec

    @property
    def final(self) -> list:
        return final_outputs(self.outputs)

    @property
    def markdown(self) -> str:
        """All final text/markdown outputs joined (answer blocks and footer)."""
        return "".join(d.get("text/markdown", "") for d in self.final)


def run_cell(ip, source: str) -> Captured:
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        result = ip.run_cell(source)
    outputs = [{"data": o.data, "metadata": o.metadata, "transient": o.transient,
                "update": o.update} for o in cap.outputs]
    return Captured(result, cap.stdout, cap.stderr, outputs)


def record_publishes(monkeypatch) -> list:
    """Record every output IPython publishes with a display id (background jobs and live views
    write their notebook outputs from their own threads), at IPython's own display publisher:
    both the shell's and the capturing one `run_cell` uses. Returns the list it fills, in
    order; the outputs are still published as usual."""
    from IPython.core.displaypub import CapturingDisplayPublisher, DisplayPublisher

    calls = []
    lock = threading.Lock()

    def recorder(original):
        def publish(self, data, *args, **kwargs):
            display_id = (kwargs.get("transient") or {}).get("display_id")
            if display_id is not None:
                with lock:
                    calls.append({"data": dict(data), "display_id": display_id,
                                  "update": bool(kwargs.get("update")),
                                  "metadata": kwargs.get("metadata") or {}})
            return original(self, data, *args, **kwargs)
        return publish

    for cls in (DisplayPublisher, CapturingDisplayPublisher):
        monkeypatch.setattr(cls, "publish", recorder(cls.__dict__["publish"]))
    return calls


def final_outputs(outputs: list) -> list:
    """Apply update_display messages to earlier outputs with the same display id."""
    final: list = []
    index: dict = {}
    for o in outputs:
        did = (o.get("transient") or {}).get("display_id")
        if o.get("update"):
            if did in index:
                for i in index[did]:
                    final[i] = o["data"]
            continue
        if did is not None:
            index.setdefault(did, []).append(len(final))
        final.append(o["data"])
    return final


def sse_events_for(text_chunks: list, *, ident: str = "v1_scripted", model: str = "m",
                   status: str = "completed", complete: bool = True, usage: Optional[dict] = None,
                   extra_completed: Optional[dict] = None) -> list:
    events = [
        {"event_type": "interaction.created",
         "interaction": {"id": ident, "status": "in_progress", "object": "interaction", "model": model}},
        {"event_type": "interaction.status_update", "interaction_id": ident, "status": "in_progress"},
        {"event_type": "step.start", "index": 0, "step": {"type": "model_output"}},
    ]
    for chunk in text_chunks:
        events.append({"event_type": "step.delta", "index": 0, "delta": {"type": "text", "text": chunk}})
    if complete:
        events.append({"event_type": "step.stop", "index": 0})
        inter = {"id": ident, "status": status, "object": "interaction", "model": model,
                 "usage": usage or {"total_tokens": 7}}
        inter.update(extra_completed or {})
        events.append({"event_type": "interaction.completed", "interaction": inter})
    return events


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args):  # keep test output clean
        pass

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _json(self, status: int, payload: Any, headers: Optional[dict] = None) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        self.server.owner.record(self, b"")
        self._json(404, {"error": {"code": 404, "message": "not here"}})

    def do_DELETE(self):
        self.do_GET()

    def do_POST(self):
        body = self._read_body()
        owner = self.server.owner
        owner.record(self, body)
        if self.path.endswith("/cancel"):
            self._json(200, {"id": self.path.split("/")[-2], "status": "cancelled",
                             "object": "interaction", "model": "m", "steps": []})
            return
        spec = owner.next_spec()
        if "status" in spec and spec["status"] != 200:
            self._json(spec["status"], spec.get("json", {}), spec.get("headers"))
            return
        if "json" in spec:
            self._json(200, spec["json"])
            return
        if "body" in spec:  # any other answer, e.g. an HTML page
            raw = spec["body"].encode()
            self.send_response(200)
            self.send_header("Content-Type", spec.get("content_type", "text/html"))
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            return
        self._sse(spec)

    def _sse(self, spec: dict) -> None:
        events = spec.get("sse", [])
        drop = spec.get("drop", None)  # None, "eof" (clean close) or "reset" (broken chunking)
        chunked = drop != "eof"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        # This handler closes the connection after a stream: say so, or a client may send its
        # next request on the closing connection ("Server disconnected", seen with google-genai
        # 3.6's HTTP client).
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for ev in events:
            if isinstance(ev, (int, float)):
                time.sleep(ev)
                continue
            raw = (f"event: {ev.get('event_type', 'x')}\n" if isinstance(ev, dict) else "")
            raw += "data: " + (json.dumps(ev) if isinstance(ev, dict) else str(ev)) + "\n\n"
            data = raw.encode()
            if chunked:
                data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
            try:
                self.wfile.write(data)
                self.wfile.flush()
            except OSError:
                return
        if drop == "reset":
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: "ScriptedServer"


@dataclass
class ScriptedServer:
    """Answers each create request with the next spec of `script` (the last one repeats)."""

    script: list = field(default_factory=list)
    requests: list = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._srv = _Server(("127.0.0.1", 0), _Handler)
        self._srv.owner = self
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._srv.server_address[1]}"

    def next_spec(self) -> dict:
        with self._lock:
            if not self.script:
                return {"status": 500, "json": {"error": {"code": 500, "message": "no script"}}}
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def record(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        with self._lock:
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = body
            self.requests.append({"method": handler.command, "path": handler.path,
                                  "headers": dict(handler.headers), "body": parsed})

    def stop(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(5)


@pytest.fixture()
def scripted():
    srv = ScriptedServer()
    yield srv
    srv.stop()


class StreamWithoutResponse:
    """An SDK stream as a google-genai that keeps its HTTP response elsewhere would hand it
    back: iterable and closable, with no `.response`."""

    def __init__(self, stream):
        self._stream = stream

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._stream)

    def close(self):
        self._stream.close()
