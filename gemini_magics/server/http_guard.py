"""What uvicorn lacks to face the open network: deadlines, JSON errors for broken HTTP, room.

`http_protocol()` is the uvicorn protocol to serve with (`uvicorn.Config(app,
http=http_protocol())`): a deadline for every request head, idle and stalled-write deadlines,
TCP_NODELAY (responses are two writes; with Nagle the second waited ~40 ms for a delayed ACK),
JSON 400s for malformed HTTP, no WebSocket upgrades, and the longest-idle connections closed near
the file-descriptor limit. `server_class()` quiets asyncio's accept() tracebacks when out of
descriptors. `read_body` holds a request body to a size and a pace (413, 408).
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import struct
import time
from typing import Optional

from starlette.requests import ClientDisconnect, Request

from ..compat import guarded_h11_protocol, is_accept_exhaustion, set_nodelay
from .protocol import MAX_BODY_BYTES, ApiError

try:
    import resource as _resource_limits
except ImportError:  # Windows: no file-descriptor limit to watch
    _resource_limits = None

__all__ = ["http_protocol", "server_class", "read_body", "READ_TIMEOUT_SECONDS",
           "IDLE_TIMEOUT_SECONDS", "WRITE_TIMEOUT_SECONDS"]

log = logging.getLogger(__name__)

DRAIN_LIMIT = 4 * MAX_BODY_BYTES  # an oversized body is read (and dropped) up to this much
READ_TIMEOUT_SECONDS = 10.0   # for a request head, and for each gap in a request body
IDLE_TIMEOUT_SECONDS = 5.0    # a kept-alive connection with no new request is closed
WRITE_TIMEOUT_SECONDS = 60.0  # a client that reads nothing of its response this long is dropped
MIN_BODY_RATE = 64 * 1024     # bytes/s a body must keep up after its first READ_TIMEOUT

_HTTP_LOG = logging.getLogger(__name__ + ".http")
# A malformed request is the client's error and is answered with a 400: not worth a log line.
_HTTP_LOG.addFilter(lambda record: not record.getMessage().startswith("Invalid HTTP request"))


async def read_body(request: Request, read_timeout: float) -> bytes:
    """The body, or a 413 (too large), a 408 (stalled, or slower than MIN_BODY_RATE after
    the first `read_timeout`), ClientDisconnect (the client went away)."""
    declared = request.headers.get("content-length", "")
    too_big = declared.isdigit() and (len(declared) > 15 or int(declared) > MAX_BODY_BYTES)
    loop = asyncio.get_running_loop()
    started = loop.time()
    chunks, size, more = [], 0, True
    while more:
        allowed = min(read_timeout, started + read_timeout + size / MIN_BODY_RATE - loop.time())
        try:
            message = await asyncio.wait_for(request.receive(), max(allowed, 0.001))
        except asyncio.TimeoutError:
            raise ApiError(408, f"The request body stopped arriving (nothing for "
                                f"{read_timeout:g} s, or slower than "
                                f"{MIN_BODY_RATE // 1024} KiB/s); send the whole body "
                                f"promptly and retry.", close=True) from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            too_big = True
        if too_big:
            chunks = []
            if size > DRAIN_LIMIT:
                break
        elif chunk:
            chunks.append(chunk)
    if too_big:
        mib = MAX_BODY_BYTES // (1024 * 1024)
        raise ApiError(413, f"The request body is larger than {mib} MiB; send large media "
                            f"by 'uri' or split the request.", close=more)
    return b"".join(chunks)


@functools.lru_cache(maxsize=None)
def http_protocol() -> "type | str":
    """The uvicorn HTTP protocol to serve with: `uvicorn.Config(app, http=http_protocol())`.

    uvicorn's h11 protocol waits forever for a request head (a fresh connection, or bytes after
    a keep-alive response, cancel its only timer), answers malformed HTTP in plain text and logs
    each one. This one adds: a `read_timeout` deadline for every request head (then a 408, or a
    silent close if nothing came), `idle_timeout` between requests, `write_timeout` for a client
    that stops reading, TCP_NODELAY, JSON 400s, no WebSocket upgrades, and, when the process
    nears its file-descriptor limit, the longest-idle connection closed for each new one (so a
    flood of stalled connections cannot lock out real clients). The timeouts are read from the
    app's `state.service` per connection (tests shorten them on a running server).
    """
    return guarded_h11_protocol(_Guarded)


class _Guarded:
    """The additions to uvicorn's H11Protocol (mixed in before it by `http_protocol`): it
    overrides compat.H11_METHODS and H11_SILENCED and reads compat.H11_ATTRIBUTES, no more."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.logger = _HTTP_LOG
        service = getattr(getattr(self.config.app, "state", None), "service", None)
        self._read_timeout = getattr(service, "read_timeout", READ_TIMEOUT_SECONDS)
        self._write_timeout = getattr(service, "write_timeout", WRITE_TIMEOUT_SECONDS)
        self.timeout_keep_alive = getattr(service, "idle_timeout", IDLE_TIMEOUT_SECONDS)
        self._head_timer: Optional[asyncio.TimerHandle] = None
        self._write_timer: Optional[asyncio.TimerHandle] = None
        self.idle_since = self.loop.time()
        set_nodelay(transport)
        self._arm_head()
        _make_room(self, transport)

    def connection_lost(self, exc) -> None:
        for timer in (self._head_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._write_timer = None
        super().connection_lost(exc)

    def waiting(self) -> bool:
        """Between requests: none read yet, or the last one answered."""
        return self.cycle is None or self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        try:
            super().data_received(data)
        except Exception as e:  # a request uvicorn cannot decode
            _HTTP_LOG.debug("undecodable request: %s", e)
            self.send_400_response("")
            return
        if self.waiting():
            self._arm_head()  # a partial head (uvicorn just cancelled its keep-alive timer)
        elif self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms the idle (keep-alive) timer
        self.idle_since = self.loop.time()
        if self.waiting() and self._head_timer is not None:
            self._head_timer.cancel()  # idle now; the next byte re-arms the head deadline
            self._head_timer = None

    def _arm_head(self) -> None:
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self._read_timeout, self._head_late)

    def _head_late(self) -> None:
        self._head_timer = None
        if not self.waiting() or self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:
            _write_error(self.transport, 408, "Request Timeout", ApiError(
                408, f"The request head did not arrive within {self._read_timeout:g} s; "
                     f"send the whole request promptly."))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        _write_error(self.transport, 400, "Bad Request", ApiError(
            400, "The request is not valid HTTP/1.1 (its request line or headers could not "
                 "be parsed); send a well-formed request."))
        self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self._write_timeout, self._write_late)

    def _write_late(self) -> None:
        """The client read nothing for `write_timeout`: reset the connection, dropping what
        the kernel still holds for it (a plain close would trickle it out for minutes)."""
        self._write_timer = None
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.transport.abort()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _should_upgrade_to_ws(self) -> bool:
        return False  # no WebSocket routes: an Upgrade header is ignored

    def _unsupported_upgrade_warning(self) -> None:
        pass


def _write_error(transport, code: int, reason: str, err: ApiError) -> None:
    """A complete error response written directly (outside h11, which cannot send it here);
    the connection is closed after it."""
    body = json.dumps(err.body(), separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
    if not transport.is_closing():
        transport.write(head + body)


def _make_room(new, transport) -> None:
    """Near the descriptor limit (the new socket's number tells: the kernel gives the lowest
    free one), close the connections that have waited longest between requests: a batch at a
    time, since asyncio accepts a burst before any of it is seen here, and pauses accepting for
    a second when it runs out."""
    if _resource_limits is None:
        return
    sock = transport.get_extra_info("socket")
    soft = _resource_limits.getrlimit(_resource_limits.RLIMIT_NOFILE)[0]
    if sock is None or soft == _resource_limits.RLIM_INFINITY:
        return
    reserve = max(16, soft // 8)
    if sock.fileno() < soft - reserve:
        return
    idle = [p for p in new.connections
            if p is not new and hasattr(p, "idle_since") and p.waiting()
            and not p.transport.is_closing()]
    idle.sort(key=lambda p: p.idle_since)
    for p in idle[:reserve // 2]:
        p.transport.close()


@functools.lru_cache(maxsize=None)
def server_class() -> type:
    """The uvicorn Server to serve with: it quiets accept() errors on its loop before it starts
    listening. (Installed at the first connection, a burst of connections that hits the
    descriptor limit before any of them is set up logs ~2,000 tracebacks in one loop tick:
    asyncio retries accept() up to `backlog` times after EMFILE, logging each.)"""
    import uvicorn  # deferred: uvicorn, only for serving

    class QuietServer(uvicorn.Server):
        async def serve(self, sockets=None) -> None:
            _quiet_accept_errors(asyncio.get_running_loop())
            await super().serve(sockets=sockets)

    return QuietServer


def _quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio logs a traceback for every failed accept() when out of descriptors; one line
    every 10 s says it as well."""
    if loop.get_exception_handler() is not None:
        return
    last = [0.0]

    def handler(loop, context) -> None:
        if is_accept_exhaustion(context):
            now = time.monotonic()
            if now - last[0] >= 10:
                last[0] = now
                log.warning("out of file descriptors (%s): new connections wait; raise "
                            "`ulimit -n` or close idle clients", context.get("exception"))
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
