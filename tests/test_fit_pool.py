"""Training's fit pool: an error or Ctrl-C stops the fits running in it; BLAS is limited while it is open."""

from __future__ import annotations

import os
import threading

import lightgbm as lgb
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from training.fit_pool import FitCancelled, FitPool, StopWhenSet, check_stop, default_workers

ENDLESS = 1_000_000  # rounds a fit would run if nothing stopped it


def _endless_fit(stop: threading.Event, started: threading.Event, rounds: list[int]) -> lgb.Booster:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4))
    y = (x[:, 0] + rng.normal(size=500) > 0).astype(float)

    def count(env: lgb.callback.CallbackEnv) -> None:
        rounds.append(env.iteration)
        started.set()

    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "learning_rate": 1e-6}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=ENDLESS, callbacks=[count, StopWhenSet(stop)])


@pytest.mark.parametrize("interruption", [RuntimeError, KeyboardInterrupt])
def test_leaving_the_pool_on_an_error_stops_its_running_fits(interruption: type[BaseException]) -> None:
    rounds: list[int] = []
    started = threading.Event()
    with pytest.raises(interruption), FitPool(2) as pool:
        running = pool.submit(_endless_fit, pool.stop, started, rounds)
        queued = [pool.submit(_endless_fit, pool.stop, threading.Event(), []) for _ in range(3)]
        assert started.wait(timeout=60)
        raise interruption
    assert isinstance(running.exception(), FitCancelled)
    assert 0 < len(rounds) < ENDLESS
    # The second worker's fit stopped as well (or never started); the ones still queued never started.
    assert all(f.cancelled() or isinstance(f.exception(), FitCancelled) for f in queued)
    assert sum(f.cancelled() for f in queued) >= 2


def test_an_interruption_while_waiting_for_the_fits_stops_them() -> None:
    rounds: list[int] = []
    started = threading.Event()
    pool = FitPool(1)
    running = pool.submit(_endless_fit, pool.stop, started, rounds)
    assert started.wait(timeout=60)
    original_shutdown = pool.shutdown

    def interrupted_shutdown(wait: bool = True, *, cancel_futures: bool = False) -> None:
        raise KeyboardInterrupt  # as Ctrl-C would, while the pool waits for its running fit

    pool.shutdown = interrupted_shutdown  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            pool.__exit__(None, None, None)
        assert pool.stop.is_set()
    finally:
        pool.stop.set()  # never leave an endless fit behind, whatever the outcome
        original_shutdown(wait=True)
    assert isinstance(running.exception(), FitCancelled)


def test_leaving_the_pool_normally_lets_the_fits_finish() -> None:
    with FitPool(1) as pool:
        done = pool.submit(lambda: 42)
    assert done.result() == 42 and not pool.stop.is_set()


def test_check_stop_ends_a_task_between_steps() -> None:
    stop = threading.Event()
    check_stop(stop)
    check_stop(None)
    stop.set()
    with pytest.raises(FitCancelled):
        check_stop(stop)


def _blas_threads() -> list[int]:
    return [int(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_blas_runs_on_one_thread_while_pools_are_open_and_is_restored_after_the_last() -> None:
    if not _blas_threads():
        pytest.skip("no BLAS library found by threadpoolctl")
    with threadpool_limits(limits=2, user_api="blas"):  # so that one thread is a change to see
        before = _blas_threads()
        assert set(before) == {2}
        first = FitPool(1)
        second = FitPool(1)
        assert set(_blas_threads()) == {1}
        first.__exit__(None, None, None)  # pools may close in any order (two trainings in one process)
        first.__exit__(None, None, None)  # ... and a pool left twice counts once
        assert set(_blas_threads()) == {1}
        second.__exit__(None, None, None)
        assert _blas_threads() == before
        third = FitPool(1)
        assert set(_blas_threads()) == {1}
        third.__exit__(None, None, None)
        assert _blas_threads() == before


@pytest.mark.parametrize(("cpus", "threads", "workers"), [(8, 1, 4), (3, 1, 3), (2, 1, 2), (1, 1, 1), (8, 2, 4),
                                                          (3, 2, 1), (2, 4, 1)])
def test_default_workers_share_the_cpus_between_fits(monkeypatch: pytest.MonkeyPatch, cpus: int, threads: int,
                                                     workers: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(cpus)), raising=False)
    assert default_workers(threads) == workers
    monkeypatch.delattr(os, "sched_getaffinity")  # not on every platform: the CPU count instead
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert default_workers(threads) == workers


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FitPool(0)
