"""Server-sent events: framing, and async readers that follow a turn produced on a thread.

Framing is `event: <type>` + `data: <json with event_type and event_id>` + a blank line, and a
stream ends with `data: [DONE]` after its last event, as the real API's do (both SDKs stop
reading there; a plain EOF would end them too). Each event is written as soon as it exists; events that are already waiting when the socket is ready
go out in one write (see `follow`), never held back for more. We use starlette's StreamingResponse rather than a dependency
such as sse-starlette: the format is two lines, and StreamingResponse already cancels the
generator when the client disconnects (uvicorn's h11 protocol reports ASGI spec 2.3), which is
how a dropped stream lets go of its turn (`resume.py` decides what happens to the turn).

The worker thread wakes readers through `LoopWaker`, which coalesces wake-ups: at most one
`call_soon_threadsafe` is pending per reader, however fast the engine emits.
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

from .turns import TurnRecorder

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"


def frame(event_type: str, data: str) -> bytes:
    # "replace": a lone surrogate cannot come from a request (protocol.py refuses them), and one
    # from an engine must not abort the stream.
    return f"event: {event_type}\ndata: {data}\n\n".encode("utf-8", "replace")


class LoopWaker:
    """A thread-safe, coalescing way to set an asyncio.Event from the producer thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.event = asyncio.Event()
        self._scheduled = False

    def __call__(self) -> None:
        if self._scheduled:
            return
        self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # loop closed: the server is stopping
            pass

    def _wake(self) -> None:
        self._scheduled = False
        self.event.set()


async def follow(rec: TurnRecorder, start: int = 0,
                 max_batch: int = 256) -> AsyncIterator[list[tuple[str, str]]]:
    """Yield the recorder's events from position `start` until the turn is done.

    Each yield is every event already waiting (at most `max_batch`): one event when the engine
    is slower than the socket, as for a real model; a batch when the client reads slower than
    the engine produces, so a slow reader costs one write per batch, not per event.
    """
    waker = LoopWaker(asyncio.get_running_loop())
    rec.add_listener(waker)
    try:
        i = start
        while True:
            waker.event.clear()
            while i < len(rec.events):
                batch = rec.events[i:i + max_batch]
                i += len(batch)
                yield batch
            if rec.done.is_set() and i >= len(rec.events):
                return
            if i < len(rec.events):
                continue
            await waker.event.wait()
    finally:
        rec.remove_listener(waker)


async def wait_done(rec: TurnRecorder) -> None:
    waker = LoopWaker(asyncio.get_running_loop())
    rec.add_listener(waker)
    try:
        while not rec.done.is_set():
            waker.event.clear()
            if rec.done.is_set():
                break
            await waker.event.wait()
    finally:
        rec.remove_listener(waker)


async def frames(batches: AsyncIterator[list[tuple[str, str]]]) -> AsyncIterator[bytes]:
    """The followed events as SSE bytes, then `[DONE]` (the turn has ended)."""
    async for batch in batches:
        yield b"".join(frame(event_type, data) for event_type, data in batch)
    yield DONE


async def replay(events: list, max_batch: int = 256) -> AsyncIterator[bytes]:
    """Frames of stored events, given as [event_type, data] pairs, then `[DONE]`."""
    for k in range(0, len(events), max_batch):
        yield b"".join(frame(t, d) for t, d in events[k:k + max_batch])
    yield DONE
