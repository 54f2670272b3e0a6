"""Training's independent fits side by side: Python threads, one BLAS thread each, prompt cancellation.

LightGBM and BLAS release the GIL, so fits on Python threads use the cores as OpenMP threads would; but
a Python thread waiting for work sleeps where an idle OpenMP thread spins, so on a busy machine side by
side costs nothing (two OpenMP threads per fit made fitting ~15x slower there).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

from threadpoolctl import threadpool_limits

MAX_DEFAULT_WORKERS = 4  # training has at most a few independent fits at a time


class FitCancelled(Exception):
    """A fit stopped early because the training it belongs to failed or was interrupted."""


def default_workers(threads: int) -> int:
    """As many fits as the CPUs this process may use hold at `threads` native threads each (at most 4).

    CPUs, not a container's CPU quota: with `docker --cpus` or a systemd CPUQuota, pass --parallel-fits."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus // max(threads, 1), MAX_DEFAULT_WORKERS))


class _OneBlasThread:
    """BLAS on one thread while any FitPool is open.

    Threads of BLAS beside our threads would only fight over the cores, and one thread keeps the
    baselines' and profiles' figures independent of how many fits share the machine. The limit is
    process-wide, so pools that overlap (two trainings in one process) share it: the last to close
    restores the original."""

    _lock = threading.Lock()
    _open = 0
    _limit: threadpool_limits | None = None

    @classmethod
    def enter(cls) -> None:
        with cls._lock:
            if cls._open == 0:
                cls._limit = threadpool_limits(limits=1, user_api="blas")
            cls._open += 1

    @classmethod
    def leave(cls) -> None:
        with cls._lock:
            cls._open -= 1
            if cls._open == 0 and cls._limit is not None:
                cls._limit.restore_original_limits()
                cls._limit = None


class FitPool(ThreadPoolExecutor):
    """Threads for independent fits. Leaving it waits for them; leaving on an error (Ctrl-C included)
    first sets `stop`, so fits that watch it (`StopWhenSet`) end at their next boosting round."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"parallel fits must be at least 1, got {workers}")
        super().__init__(max_workers=workers, thread_name_prefix="dealscore-fit")
        self.workers = workers
        self.stop = threading.Event()
        self._holds_blas = True
        _OneBlasThread.enter()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc_type is not None:
            self.stop.set()
        try:
            self.shutdown(wait=True, cancel_futures=True)
        except BaseException:  # Ctrl-C while waiting for the fits: stop them too
            self.stop.set()
            raise
        finally:
            if self._holds_blas:  # once per pool, however often it is left
                self._holds_blas = False
                _OneBlasThread.leave()


class StopWhenSet:
    """A LightGBM callback ending the fit before its next round once `event` is set."""

    before_iteration = True  # the only such callback we pass, so its order among them does not matter

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, env: Any) -> None:
        if self.event.is_set():
            raise FitCancelled(f"fit stopped at round {env.iteration}: the training it belongs to ended")


def check_stop(event: threading.Event | None) -> None:
    """Between the steps of a task that is not a boosting loop: end it if its training has ended."""
    if event is not None and event.is_set():
        raise FitCancelled("stopped between steps: the training it belongs to ended")


def watching(stop: threading.Event | None) -> list[Callable[..., Any]]:
    """The LightGBM callbacks that end a fit once `stop` is set (none without an event)."""
    return [] if stop is None else [StopWhenSet(stop)]
