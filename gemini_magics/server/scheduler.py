"""The fair scheduler of turns: worker threads shared between clients (engines block).

One client (an API key and address, or a classroom key) cannot take every slot: a quarter of
them at most by default; the others wait in their client's queue and a freed slot goes to the
next client in turn. A queued turn can be taken back at once, so a cancel never waits for a slot.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

from .protocol import ApiError

__all__ = ["FairPool", "Job", "MAX_WORKERS"]

log = logging.getLogger(__name__)

MAX_WORKERS = 64  # concurrent turns, a quarter of them per client (FairPool); more wait


class Job:
    """One turn's work for a FairPool: `fn()` runs it; `fn(not_run)` ends it cancelled."""

    __slots__ = ("client", "fn", "started")

    def __init__(self, client: str, fn: Callable):
        self.client, self.fn, self.started = client, fn, False


class FairPool:
    """Worker threads shared fairly between clients.

    At most `workers` turns run at once and at most `per_client` of them for one client, so one
    client cannot take every slot; the others wait in their client's queue, and a freed slot
    goes to the next client in turn (round robin). A queued job can be taken back (`cancel`) at
    once, without waiting for a slot.
    """

    def __init__(self, workers: int = MAX_WORKERS, per_client: Optional[int] = None):
        self.workers = workers
        self.per_client = per_client or max(1, workers // 4)  # 16 of the 64 by default
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gm-turn")
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._queues: dict[str, deque] = {}  # insertion order is the round-robin order
        self._busy = 0
        self._closed = False

    def submit(self, job: Job) -> None:
        """Run `job` now if its client has a free slot, else queue it."""
        client = job.client
        with self._lock:
            if self._closed:
                raise ApiError(503, "The local server is stopping; retry in a moment.",
                               status="UNAVAILABLE")
            if self._busy < self.workers and self._running.get(client, 0) < self.per_client:
                self._launch(job)
            else:
                self._queues.setdefault(client, deque()).append(job)

    def cancel(self, job: Job) -> bool:
        """Take back a job that has not started: True if it will never run."""
        with self._lock:
            queue = self._queues.get(job.client)
            if job.started or queue is None or job not in queue:
                return False
            queue.remove(job)
            if not queue:
                del self._queues[job.client]
            return True

    def queued(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues.values())

    def close(self) -> list[Job]:
        """Accept no more jobs; the queued ones, which will never run."""
        with self._lock:
            self._closed = True
            jobs = [job for q in self._queues.values() for job in q]
            self._queues.clear()
        return jobs

    def shutdown(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)

    def _launch(self, job: Job) -> None:  # lock held
        job.started = True
        self._busy += 1
        self._running[job.client] = self._running.get(job.client, 0) + 1
        self._threads.submit(self._run, job)

    def _run(self, job: Job) -> None:
        try:
            job.fn()
        except Exception:  # work() ends every turn itself; this is a bug in the pool's caller
            log.exception("a turn's job failed")
        finally:
            with self._lock:
                self._busy -= 1
                left = self._running[job.client] - 1
                if left:
                    self._running[job.client] = left
                else:
                    del self._running[job.client]
                self._next()

    def _next(self) -> None:  # lock held: start queued jobs while slots allow, client by client
        for client in list(self._queues):
            if self._busy >= self.workers:
                return
            if self._running.get(client, 0) >= self.per_client:
                continue
            queue = self._queues.pop(client)
            job = queue.popleft()
            if queue:
                self._queues[client] = queue  # to the back of the round
            self._launch(job)
