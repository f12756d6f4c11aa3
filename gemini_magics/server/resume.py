"""A streamed turn outlives a dropped connection for a grace period, so its client can resume it.

A turn created with `stream=true` (and not `background`) exists for its readers, so it used to be
cancelled the moment its stream's client went away. But a dropped connection is often a blip (a
proxy reset, a Wi-Fi change) after which the client resumes the same answer with
`GET interactions/{id}?stream=true&last_event_id=...` (the magics' sender does). So when the last
reader of such a turn goes away before the turn has ended, it keeps running for `seconds`
(RESUME_GRACE_S) and is cancelled only if no reader came back by then. An explicit cancel (POST
.../cancel) still stops it at once, so Stop buttons are unaffected; `seconds=0` is the old rule.

store=false turns get the same grace: while one runs, a GET reads it from memory like any live
turn; one that ends while nobody is reading it (its reader dropped before the last events went
out) is kept reachable in memory until its grace is over, since the store has nothing to replay.

All of it runs on the event loop, except `ended`, which the turn's worker thread calls as the turn
ends (each step there is one dict operation, and the order of the two sides does not matter).
"""
from __future__ import annotations

import asyncio
import functools
from typing import Callable, Optional

from . import sse
from .responses import EventStream
from .turns import TurnRecorder

__all__ = ["ResumeGrace", "RESUME_GRACE_S"]

RESUME_GRACE_S = 15.0  # how long a streamed turn nobody reads keeps running (sender waits <2 s)


class _Watched:
    """A streamed turn's readers now and its pending grace timer."""

    __slots__ = ("stored", "readers", "timer")

    def __init__(self, stored: bool):
        self.stored = stored
        self.readers = 0
        self.timer: Optional[asyncio.TimerHandle] = None


class ResumeGrace:
    """The streamed turns of one service and their readers. `abandon(rec)` cancels a turn
    without waiting; `forget(rec)` makes an ended turn unreachable in memory."""

    def __init__(self, abandon: Callable[[TurnRecorder], None],
                 forget: Callable[[TurnRecorder], None], seconds: float = RESUME_GRACE_S):
        self.seconds = seconds
        self._abandon = abandon
        self._forget = forget
        self._turns: dict[str, _Watched] = {}

    def watch(self, rec: TurnRecorder, stored: bool) -> None:
        """A streamed create's turn, before it can run: its readers keep it running."""
        self._turns[rec.id] = _Watched(stored)

    def stream(self, rec: TurnRecorder, start: int = 0) -> EventStream:
        """The SSE response following `rec` from event `start` (counted as a reader of a
        watched turn)."""
        body = sse.frames(sse.follow(rec, start))
        turn = self._turns.get(rec.id)
        if turn is None:  # a background or non-streamed turn: its readers do not matter
            return EventStream(body)
        turn.readers += 1
        return EventStream(body, on_close=functools.partial(self._left, rec, turn))

    def _left(self, rec: TurnRecorder, turn: _Watched, finished: bool) -> None:
        """A reader's stream closed (`finished`: it sent everything, [DONE] included)."""
        turn.readers -= 1
        if turn.readers or self._turns.get(rec.id) is not turn:
            return
        if rec.done.is_set() and (turn.stored or finished):
            return  # nothing left to read, or the store replays it
        if self.seconds <= 0:
            self._over(rec, turn)
            return
        if turn.timer is not None:
            turn.timer.cancel()
        turn.timer = asyncio.get_running_loop().call_later(self.seconds, self._over, rec, turn)

    def _over(self, rec: TurnRecorder, turn: _Watched) -> None:
        """The grace is over: cancel the turn if nobody came back, or forget it if it ended."""
        turn.timer = None
        if turn.readers or self._turns.get(rec.id) is not turn:
            return
        if not rec.done.is_set():
            self._abandon(rec)  # it ends cancelled, and `ended` forgets it
            return
        self._turns.pop(rec.id, None)
        self._forget(rec)

    def ended(self, rec: TurnRecorder) -> bool:
        """The turn's work is over (its worker thread): True to keep it reachable until its
        grace is over (an unstored turn whose reader may still come back), else it is no
        longer watched and the caller forgets it."""
        turn = self._turns.get(rec.id)
        if turn is not None and turn.timer is not None and not turn.stored:
            return True
        self._turns.pop(rec.id, None)
        return False
