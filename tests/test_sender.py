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

from magics_fixtures import StreamWithoutResponse, magics_of, run_cell, shell  # noqa: F401

WORDS_200 = " ".join(f"w{i}" for i in range(1, 201))
NOTE = resumed_note(1)


class CutProxy:
    """A loopback TCP proxy to `port` that cuts the first response after `cut` bytes: the
    client gets those bytes and then a closed connection, and so does the server (it keeps
    the turn running for its resume grace, server/resume.py). Every other connection is
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
                    _close(client)
                    with self._lock:
                        self.cuts += 1
                    return  # the server's side is closed too (finally)
                client.sendall(data)
                sent += len(data)
        except OSError:
            return
        finally:
            _close(client)
            _close(upstream)

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


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


@pytest.fixture()
def proxy(echo_server):
    port = int(echo_server.base_url.rsplit(":", 1)[1])
    p = CutProxy(port, cut=4000)
    yield p
    p.close()


@pytest.fixture()
def ns(shell):
    """The shell, and the notebook variables the test sets removed afterwards."""
    before = set(shell.user_ns)
    yield shell
    for name in set(shell.user_ns) - before:
        shell.user_ns.pop(name, None)


def _resumed(proxy: CutProxy) -> None:
    assert proxy.cuts == 1
    assert proxy.requests[0].startswith("POST ") and "/interactions" in proxy.requests[0]
    assert proxy.requests[1].startswith("GET ") and "last_event_id=" in proxy.requests[1]


def test_a_cell_whose_stream_is_cut_ends_with_the_whole_answer_and_one_note(ns, proxy):
    shell = ns
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


def test_a_row_whose_stream_is_cut_is_resumed_while_the_server_still_has_it(ns, proxy):
    """A row is store=false: the server keeps its stream only while the turn runs (2 s of
    words here, cut after the first ~20): resumed from there, not sent again."""
    shell = ns
    magics_of(shell).base_url = proxy.base_url
    shell.user_ns["prompts"] = ["/words 100 delay=0.02", "/words 3"]
    cap = run_cell(shell, "%%gemini --over prompts --concurrency 1 --no-cache -o out\n{item}")
    assert cap.error is None, (cap.stdout, cap.stderr)
    out = shell.user_ns["out"]
    assert [r.text for r in out] == [" ".join(f"w{i}" for i in range(1, 101)), "w1 w2 w3"]
    assert out[0].notes == [NOTE] and out[1].notes == [], proxy.requests
    _resumed(proxy)
    assert [r.split()[0] for r in proxy.requests] == ["POST", "GET", "POST"]  # not sent again
    assert "2 of 2 rows ok" in cap.markdown + cap.stdout


def test_rows_without_the_raw_stream_are_read_with_the_sdk_iterator(ns, echo_server,
                                                                    monkeypatch):
    shell = ns
    from gemini_magics.client import LOCAL_API_KEY, get_client

    client = get_client(Backend("custom", echo_server.base_url, LOCAL_API_KEY, 1, None))
    create = client.interactions.create
    monkeypatch.setattr(client.interactions, "create",
                        lambda **kw: StreamWithoutResponse(create(**kw)))
    shell.user_ns["words"] = ["a", "b", "c"]
    cap = run_cell(shell, "%%gemini --over words --no-cache -o out\nSay {item}")
    assert cap.error is None, (cap.stdout, cap.stderr)
    out = shell.user_ns["out"]
    assert [r.text for r in out] == [
        f"Echo: I saw 1 user turn and 0 model turns. You said: Say {w}" for w in "abc"]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_sse_lines_are_split_as_httpx_splits_them_whatever_the_chunks(size):
    """CRLF, LF and CR line ends, a CR and its LF in different chunks, multi-byte characters
    cut between chunks, a last line without its end."""
    from gemini_magics.compat import split_sse_lines as _split_lines

    body = ("event: a\r\ndata: {\"t\": \"é漢\u2028x\"}\r\n\r\ndata: 1\n\ndata: 2\r\rdata: 3\r\n"
            "\r\ndata: [DONE]").encode()
    chunks = [body[i:i + size] for i in range(0, len(body), size)]
    assert list(_split_lines(chunks)) == ["event: a", 'data: {"t": "é漢\u2028x"}', "",
                                          "data: 1", "", "data: 2", "", "data: 3", "",
                                          "data: [DONE]"]


class _StopAfter:
    """An observer that stops the answer once `words` words have arrived: by the stop button's
    KeyboardInterrupt (a plain cell) or by setting the cancel event (--ui, the panel)."""

    def __init__(self, words: int, event: threading.Event = None):
        self.words, self.event = words, event

    def on_update(self, acc):
        if len(acc.answer_text().split()) >= self.words:
            if self.event is None:
                raise KeyboardInterrupt
            self.event.set()


@pytest.mark.parametrize("how", ["interrupt", "cancel event"])
def test_a_stopped_answer_reports_the_tokens_it_used(echo_server, how):
    event = threading.Event() if how == "cancel event" else None
    result = run(Request(text="/words 500 delay=0.01", parts=["/words 500 delay=0.01"]),
                 backend=Backend("custom", echo_server.base_url, "k", 1, None),
                 observers=[_StopAfter(10, event)], cancel_event=event)
    assert result.stopped and not result.error
    shown = len(result.answer.split())
    out = result.usage.get("total_output_tokens")
    assert isinstance(out, int) and shown <= out < 500  # one word = one token (echo)
    assert f"({out} out)" in render.footer_text(result) and "(0 out)" not in render.footer_text(result)
