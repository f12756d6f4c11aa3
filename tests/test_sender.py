"""The one sender (gemini_magics/sender.py): a stream cut mid-answer is resumed from its last
event, through a real TCP proxy that cuts the connection, against the echo server."""
from __future__ import annotations

import socket
import threading

import pytest

from gemini_magics import render
from gemini_magics.client import Backend
from gemini_magics.request import Request
from gemini_magics.runner import run
from gemini_magics.sender import resumed_note

from magics_fixtures import magics_of, run_cell, shell  # noqa: F401

WORDS_200 = " ".join(f"w{i}" for i in range(1, 201))
NOTE = resumed_note(1)


class CutProxy:
    """A loopback TCP proxy to `port` that cuts the first response after `cut` bytes: the
    client gets those bytes and then a closed connection. The server's side is read to the
    end of its stream first, so the server finishes the turn as if nothing happened (as after
    a blip it did not notice), then both sides are closed. Every other connection is
    forwarded whole. `requests` holds the request lines seen, in order."""

    def __init__(self, port: int, cut: int):
        self.port, self.cut = port, cut
        self.requests: list = []
        self.cuts = 0
        self._first = True
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                first, self._first = self._first, False
            threading.Thread(target=self._serve, args=(client, first), daemon=True).start()

    def _serve(self, client: socket.socket, cut: bool) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.port))
        threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
        sent = 0
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    return
                if cut and sent + len(data) > self.cut:
                    client.sendall(data[:self.cut - sent])
                    tail = data[-16:]
                    while b"[DONE]" not in tail:  # the server finishes its stream unhindered
                        more = upstream.recv(65536)
                        if not more:
                            break
                        tail = tail[-16:] + more
                    with self._lock:
                        self.cuts += 1
                    return
                client.sendall(data)
                sent += len(data)
        except OSError:
            return
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    return
                line = data.split(b"\r\n", 1)[0].decode("latin-1")
                if line.split(" ", 1)[0] in ("GET", "POST", "DELETE"):
                    with self._lock:
                        self.requests.append(line)
                upstream.sendall(data)
        except OSError:
            return


@pytest.fixture()
def proxy(echo_server):
    port = int(echo_server.base_url.rsplit(":", 1)[1])
    p = CutProxy(port, cut=4000)
    yield p
    p.close()


def _resumed(proxy: CutProxy) -> None:
    assert proxy.cuts == 1
    assert proxy.requests[0].startswith("POST ") and "/interactions" in proxy.requests[0]
    assert proxy.requests[1].startswith("GET ") and "last_event_id=" in proxy.requests[1]


def test_a_cell_whose_stream_is_cut_ends_with_the_whole_answer_and_one_note(shell, proxy):
    magics_of(shell).base_url = proxy.base_url
    cap = run_cell(shell, "%%gemini -o r\n/words 200")
    assert cap.error is None, (cap.stdout, cap.stderr)
    r = shell.user_ns["r"]
    assert r.text == WORDS_200 and r.error is None and not r.stopped
    assert r.notes == [NOTE]
    shown = [d["text/markdown"] for d in cap.final if "text/markdown" in d]
    answer = "".join(m for m in shown if m.startswith("w") or not m)
    assert answer.split() == WORDS_200.split()  # on screen: no word lost or doubled
    assert sum(m.count(NOTE) for m in shown) == 1
    _resumed(proxy)
    assert magics_of(shell).conversation.chain()  # a whole answer continues the conversation


def test_a_ui_answer_whose_stream_is_cut_is_resumed_too(proxy):
    from gemini_magics.live import StreamJob

    backend = Backend("custom", proxy.base_url, "k", 1, None)
    job = StreamJob(Request(text="/words 200", parts=["/words 200"]), backend=backend).start()
    result = job.wait(60)
    assert result is not None and result.text == WORDS_200 and result.notes == [NOTE]
    assert NOTE in render.markdown(result)[0]
    _resumed(proxy)


def test_a_stream_cut_more_often_than_allowed_is_one_sentence_with_the_partial_answer(
        echo_server, monkeypatch):
    """Every stream is cut (the first response and each resumed one): after MAX_RESUMES
    reopenings the drop is reported as before, the words so far kept once each."""
    from gemini_magics import sender

    monkeypatch.setattr(sender, "RESUME_WAITS_S", (0.0,))
    port = int(echo_server.base_url.rsplit(":", 1)[1])
    p = CutProxy(port, cut=4000)
    monkeypatch.setattr(p, "_first", True)
    original = p._serve
    monkeypatch.setattr(p, "_serve", lambda client, first: original(client, True))
    try:
        result = run(Request(text="/words 200", parts=["/words 200"]),
                     backend=Backend("custom", p.base_url, "k", 1, None))
    finally:
        p.close()
    assert p.cuts == 1 + sender.MAX_RESUMES
    assert result.error and "lost in the middle of the answer" in result.error
    words = result.answer.split()
    assert words == WORDS_200.split()[:len(words)] and len(words) < 200
