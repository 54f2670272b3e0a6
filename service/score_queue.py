"""Score requests that wait for a scoring thread are scored together, in one model pass.

A request that finds a scoring thread free is sent to it at once, alone: no waiting window, so a lone
request's latency is what it was. Requests that arrive while every scoring thread is busy wait here;
when a thread comes free it takes all of them and `DataPlane.score_together` scores their deals in one
vectorised pass. The model's cost is mostly per pass, not per deal (a single-deal pass builds its
features, asks the engine and ranks gap lists with the same number of array operations as a pass of
ten deals), so under concurrent load this turns many small passes into a few larger ones. Each request
is still parsed, checked and answered on its own, and its error (if any) is its own.

Runs on the event loop: `answer` and the completion callbacks are the only code touching the waiting
list, so it needs no lock (one event loop per app, as uvicorn runs it).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from functools import partial

from service.dataplane import DataPlane, ScoreCall

__all__ = ["ScoreQueue"]

Waiting = list[tuple[ScoreCall, "asyncio.Future[bytes]"]]


class ScoreQueue:
    def __init__(self, plane: DataPlane, executor: Executor, threads: int) -> None:
        self._plane = plane
        self._executor = executor
        self._threads = threads
        self._waiting: Waiting = []
        self._busy = 0
        self.passes = 0  # score_together calls made (with `requests`, how much sharing the load brought)
        self.requests = 0

    async def answer(self, call: ScoreCall) -> bytes:
        """The request's answer bytes, or its error raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._waiting.append((call, future))
        self._dispatch(loop)
        return await future

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._waiting and self._busy < self._threads:
            # Requests whose client hung up (their handler was cancelled) are dropped unscored.
            taken = [(call, future) for call, future in self._waiting if not future.done()]
            self._waiting = []
            if not taken:
                return
            try:
                work = loop.run_in_executor(self._executor, self._plane.score_together, [c for c, _ in taken])
            except RuntimeError as exc:  # the executor is shut down (the app is stopping)
                for _, future in taken:
                    future.set_exception(exc)
                continue
            self._busy += 1
            self.passes += 1
            self.requests += len(taken)
            work.add_done_callback(partial(self._done, loop, taken))

    def _done(self, loop: asyncio.AbstractEventLoop, taken: Waiting,
              work: asyncio.Future[list[bytes | Exception]]) -> None:
        self._busy -= 1
        answers: list[bytes | Exception]
        if work.cancelled():
            answers = [RuntimeError("scoring was cancelled (the service is stopping)")] * len(taken)
        elif (failure := work.exception()) is not None:
            error = failure if isinstance(failure, Exception) else RuntimeError(repr(failure))
            answers = [error] * len(taken)
        else:
            answers = work.result()
        for (_, future), answer in zip(taken, answers, strict=True):
            if future.done():  # cancelled while scored: nobody waits for it
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)
        self._dispatch(loop)
