"""Score requests that wait for a scoring thread are scored together, in shared model passes.

A request that finds a scoring thread free is sent to it at once, alone: no waiting window, so a lone
request's latency is what it was. Requests that arrive while every scoring thread is busy wait here;
when a thread comes free it takes all of them and `DataPlane.score_together` scores their deals in
shared vectorised passes. The model's cost is mostly per pass, not per deal (a single-deal pass builds
its features, asks the engine and ranks gap lists with the same number of array operations as a pass
of ten deals), so under concurrent load many small passes become a few larger ones. Each request is
still parsed, checked and answered on its own, its error (if any) is its own, and its answer is sent
as soon as its pass is done, not when the whole group is.

Thread-safe: the waiting list is guarded by a lock, and each answer is handed to the event loop of the
request that waits for it (`call_soon_threadsafe`), so one app may be served from several loops.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Executor

from service.dataplane import DataPlane, ScoreCall

__all__ = ["ScoreQueue"]

Waiting = list[tuple[ScoreCall, "asyncio.Future[bytes]"]]


class ScoreQueue:
    def __init__(self, plane: DataPlane, executor: Executor, threads: int) -> None:
        self._plane = plane
        self._executor = executor
        self._threads = threads
        self._lock = threading.Lock()
        self._waiting: Waiting = []
        self._busy = 0
        self.passes = 0  # score_together calls made, and the requests they answered (how much load was shared)
        self.requests = 0

    async def answer(self, call: ScoreCall) -> bytes:
        """The request's answer bytes, or its error raised."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiting.append((call, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        with self._lock:
            if not self._waiting or self._busy >= self._threads:
                return
            taken, self._waiting = self._waiting, []
            self._busy += 1
        try:
            self._executor.submit(self._score, taken)
        except RuntimeError:  # the executor is shut down (the app is stopping)
            with self._lock:
                self._busy -= 1
            for _, future in taken:
                _resolve(future, RuntimeError("the service is stopping: scoring threads are shut down"))

    def _score(self, taken: Waiting) -> None:
        """In a scoring thread: answer the taken requests, then take the ones that waited meanwhile."""
        try:
            # Requests whose client hung up (their handler was cancelled) are dropped unscored.
            live = [(call, future) for call, future in taken if not future.done()]
            with self._lock:
                self.passes += 1
                self.requests += len(live)
            self._plane.score_together([call for call, _ in live],
                                       answered=lambda i, answer: _resolve(live[i][1], answer))
        except BaseException as exc:  # a defect in score_together itself: no request may be left waiting
            for _, future in taken:
                failure = RuntimeError("scoring failed")
                failure.__cause__ = exc
                _resolve(future, failure)
            if not isinstance(exc, Exception):
                raise
        finally:
            with self._lock:
                self._busy -= 1
            self._dispatch()


def _resolve(future: asyncio.Future[bytes], answer: bytes | Exception) -> None:
    """Set the future's answer on its own event loop (from any thread); nothing if it is already done."""

    def settle() -> None:
        if future.done():  # cancelled meanwhile, or already answered
            return
        if isinstance(answer, Exception):
            future.set_exception(answer)
        else:
            future.set_result(answer)

    try:
        future.get_loop().call_soon_threadsafe(settle)
    except RuntimeError:  # its loop is closed: nobody waits for it any more
        pass
