"""Training's fit pool: an error or Ctrl-C stops the fits running in it; BLAS is limited while it is open."""

from __future__ import annotations

import threading

import lightgbm as lgb
import numpy as np
import pytest
from threadpoolctl import threadpool_info

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
    # The second worker's fit stopped as well; the ones still queued never started.
    assert sum(f.cancelled() for f in queued) >= 2


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
    before = _blas_threads()
    if not before:
        pytest.skip("no BLAS library found by threadpoolctl")
    first = FitPool(1)
    second = FitPool(1)
    assert set(_blas_threads()) == {1}
    first.__exit__(None, None, None)  # pools may close in any order (two trainings in one process)
    assert set(_blas_threads()) == {1}
    second.__exit__(None, None, None)
    assert _blas_threads() == before


def test_default_workers_share_the_cpus_between_fits() -> None:
    assert default_workers(threads=1) >= 1
    assert default_workers(threads=1_000) == 1
    assert default_workers(threads=1) <= 4


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FitPool(0)
