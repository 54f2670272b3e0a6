"""Operating the service: a feedback database that stays down is retried ever less often and warned about
once; several workers without reload polling are refused (a reload would reach only one of them)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from test_feedback_helpers import PortProxy, down_url, make_config, postgres_url_fixture, wait_until

import service.main
from dealscore import cli
from service.feedback import Feedback
from service.feedback.outage import MAX_BACKOFF_SECONDS
from service.settings import Settings

__all__ = ["postgres_url_fixture"]  # a fixture, registered by name

FEEDBACK_LOGGER = "dealscore.service.feedback"


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def feedback_log() -> Iterator[list[logging.LogRecord]]:
    """The feedback store's log records, DEBUG and up. The handler sits on the logger itself (not caplog's
    on the root): the service's logging setup stops propagation when a test configured it."""
    logger = logging.getLogger(FEEDBACK_LOGGER)
    level = logger.level
    kept = _Kept()
    logger.addHandler(kept)
    logger.setLevel(logging.DEBUG)
    try:
        yield kept.records
    finally:
        logger.removeHandler(kept)
        logger.setLevel(level)


def store_warnings(records: list[logging.LogRecord]) -> list[str]:
    """The store's own warnings (not the score log's, which backs off on its own and is off here anyway)."""
    return [r.getMessage() for r in records if r.levelno == logging.WARNING and r.getMessage().startswith("feedback:")]


# -- A: the feedback database is down ---------------------------------------------------------------------------


def test_the_retry_wait_doubles_up_to_the_cap_while_the_database_is_down(tmp_path: Path) -> None:
    feedback = Feedback(make_config(down_url(), tmp_path / "spool", retry_seconds=2.0, score_log_enabled=False))
    waits = []
    try:
        with feedback_log() as records:
            for _ in range(8):
                assert not feedback._catch_up()
                waits.append(feedback._next_wait())
    finally:
        feedback.database.dispose()
    assert MAX_BACKOFF_SECONDS == 60.0  # one back-off policy for the package (service/feedback/outage.py)
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    warned = store_warnings(records)
    assert len(warned) == 1, warned
    assert "unavailable" in warned[0] and "retrying in the background in 2.0 s" in warned[0]
    assert sum("still unavailable" in r.getMessage() for r in records if r.levelno == logging.DEBUG) == 7


def test_a_first_wait_set_above_the_cap_is_never_shortened() -> None:
    """DEALSCORE_DATABASE_RETRY_SECONDS accepts up to 3600: set to 120, the second wait was cut to 60."""
    from service.feedback.outage import Outage

    outage = Outage(120.0)
    waits = []
    for _ in range(3):
        outage.failed("down")
        waits.append(outage.wait)
    assert waits == [120.0, 120.0, 120.0]


def test_the_score_log_counts_its_database_up_from_the_start(postgres_url: str, tmp_path: Path) -> None:
    """A healthy, idle worker read dealscore_score_log_database_up 0 until its first write: an alert on 0
    fired after every restart."""
    feedback = Feedback(make_config(postgres_url, tmp_path / "spool"))
    with feedback:
        assert feedback.metrics()["score_log_database_up"] == 1.0
    down = Feedback(make_config(down_url(), tmp_path / "spool-down"))
    with down:
        assert down.metrics()["score_log_database_up"] == 0.0


def test_the_background_retries_slow_down_and_warn_only_when_the_database_goes_down(
        tmp_path: Path) -> None:
    feedback = Feedback(make_config(down_url(), tmp_path / "spool", retry_seconds=0.1, score_log_enabled=False))
    tries: list[float] = []
    ensure_schema = feedback.database.ensure_schema

    def counted() -> None:
        tries.append(time.monotonic())
        ensure_schema()

    feedback.database.ensure_schema = counted  # type: ignore[method-assign]
    with feedback_log() as records:
        feedback.start()
        try:
            time.sleep(1.6)  # at a fixed 0.1 s: ~16 tries; doubling from 0.1 s: at 0, 0.1, 0.3, 0.7 and 1.5 s
        finally:
            feedback.stop()
    assert 3 <= len(tries) <= 6, f"{len(tries)} tries in 1.6 s"
    gaps = [later - earlier for earlier, later in zip(tries, tries[1:], strict=False)]
    assert all(later > 1.5 * earlier for earlier, later in zip(gaps, gaps[1:], strict=False)), gaps
    assert len(store_warnings(records)) == 1, store_warnings(records)


def test_a_database_that_comes_back_is_said_once_and_the_wait_starts_over(
        postgres_url: str, tmp_path: Path) -> None:
    url = sa.make_url(postgres_url)
    proxy = PortProxy((url.host or "127.0.0.1", url.port or 5432))  # not started: the database is down
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    feedback = Feedback(make_config(through_proxy, tmp_path / "spool", retry_seconds=2.0, score_log_enabled=False,
                                    outcomes_refresh_seconds=30.0))
    try:
        with feedback_log() as records:
            for _ in range(3):
                assert not feedback._catch_up()
            assert feedback._next_wait() == 8.0
            proxy.start()
            assert feedback._catch_up()
            assert feedback._next_wait() == 30.0  # up: the refresh interval, not the back-off
            proxy.stop()
            feedback.database.engine.dispose()  # pooled connections were cut with the proxy
            assert not feedback._catch_up()
            assert feedback._next_wait() == 2.0  # the back-off starts over from the first wait
    finally:
        proxy.stop()
        feedback.database.dispose()
    messages = [(r.levelno, r.getMessage()) for r in records if r.levelno >= logging.INFO]
    back = [m for level, m in messages if level == logging.INFO and "is back" in m]
    assert len(back) == 1, messages
    assert len(store_warnings(records)) == 2, messages  # down at first, down again after it came back


def test_a_running_store_says_when_the_database_is_back(postgres_url: str, tmp_path: Path) -> None:
    url = sa.make_url(postgres_url)
    proxy = PortProxy((url.host or "127.0.0.1", url.port or 5432))
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    feedback = Feedback(make_config(through_proxy, tmp_path / "spool", retry_seconds=0.1, score_log_enabled=False))
    try:
        with feedback_log() as records:
            feedback.start()
            try:
                time.sleep(0.4)
                proxy.start()
                wait_until(lambda: feedback.outcomes.loaded, message="the outcome history after the database is back")
                assert feedback._next_wait() is None  # history loaded, refreshing off: the thread rests
            finally:
                feedback.stop()
    finally:
        proxy.stop()
    assert len(store_warnings(records)) == 1
    assert sum("is back" in r.getMessage() for r in records if r.levelno == logging.INFO) == 1


# -- B: several workers must poll the registry ------------------------------------------------------------------


def test_several_workers_that_never_poll_the_registry_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(registry_dir=tmp_path, workers=2, reload_interval_seconds=0)
    [error] = refused.value.errors()
    assert error["loc"] == ("workers",)
    assert "DEALSCORE_RELOAD_INTERVAL_SECONDS above 0" in error["msg"]
    assert "the default 5.0" in error["msg"]


@pytest.mark.parametrize("settings", [
    {"workers": 2, "reload_interval_seconds": 5.0},  # the others follow within one interval
    {"workers": 1, "reload_interval_seconds": 0},  # the admin route reaches the only worker
    {"workers": 2},  # the default interval
], ids=["polling", "one-worker", "default-interval"])
def test_workers_that_can_follow_the_registry_are_accepted(tmp_path: Path, settings: dict[str, float]) -> None:
    assert Settings(registry_dir=tmp_path, **settings).workers == settings["workers"]


def test_several_workers_without_polling_are_fine_without_a_registry(tmp_path: Path) -> None:
    assert Settings(model_dir=tmp_path, workers=2, reload_interval_seconds=0).workers == 2


def test_relative_model_registry_and_spool_paths_are_read_against_the_start_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/v1/model and the logs show where the model comes from: a service started with `--registry reg` showed
    "reg" (an ops review). Links are kept, so a registry reached through a switched link follows it."""
    (tmp_path / "registries" / "one").mkdir(parents=True)
    (tmp_path / "reg").symlink_to(tmp_path / "registries" / "one")
    monkeypatch.chdir(tmp_path)
    settings = Settings(registry_dir="reg", model_dir="models/m1", spool_dir="spool")
    assert (settings.registry_dir, settings.model_dir, settings.spool_dir) == (
        tmp_path / "reg", tmp_path / "models" / "m1", tmp_path / "spool")


def test_the_environment_is_refused_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEALSCORE_REGISTRY_DIR", str(tmp_path))
    monkeypatch.setenv("DEALSCORE_WORKERS", "2")
    monkeypatch.setenv("DEALSCORE_RELOAD_INTERVAL_SECONDS", "0")
    with pytest.raises(ValidationError, match="DEALSCORE_RELOAD_INTERVAL_SECONDS"):
        Settings()


def test_dealscore_serve_refuses_in_one_line_naming_both_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    started: list[Settings] = []
    monkeypatch.setattr(service.main, "serve", started.append)  # no server, whatever the outcome
    monkeypatch.setenv("DEALSCORE_WORKERS", "2")
    monkeypatch.setenv("DEALSCORE_RELOAD_INTERVAL_SECONDS", "0")
    code = cli.main(["serve", "--registry", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and not started
    assert err.count("\n") == 1
    assert err.startswith("dealscore serve: DEALSCORE_WORKERS: expected 1 worker, or "
                          "DEALSCORE_RELOAD_INTERVAL_SECONDS above 0 (e.g. the default 5.0), when serving a registry")
    assert err.endswith("got '2'\n")


def test_the_containers_entry_point_refuses_a_bad_setting_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The image runs `python -m service.main`, not the CLI: a bad variable was a pydantic dump there."""
    import service.main

    monkeypatch.setenv("DEALSCORE_PORT", "99999")
    monkeypatch.setattr(service.main, "serve", lambda settings: pytest.fail("must not start"))
    assert service.main.main() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dealscore service: DEALSCORE_PORT: expected a number less than or equal to 65535, got '99999'"]
