"""The feedback store's knobs, read off the service's Settings (DEALSCORE_* variables) with safe defaults.

Taking them through getattr keeps this package usable before the Settings class declares every field,
and lets the command line build the same config without the web service.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def dealscore_home() -> Path:
    """Where local state lives: DEALSCORE_HOME, else ./.dealscore (as the demo model does)."""
    return Path(os.environ.get("DEALSCORE_HOME", Path.cwd() / ".dealscore"))


def default_database_url(home: Path | None = None) -> str:
    """A SQLite file under the dealscore home: the quick start needs no database server."""
    return f"sqlite:///{((home or dealscore_home()) / 'feedback.db').resolve()}"


def database_url_from_env() -> str:
    return os.environ.get("DEALSCORE_DATABASE_URL") or default_database_url()


DATABASE_URL_EXPECTED = ("a SQLAlchemy database URL whose driver is installed, like "
                         "sqlite:////var/lib/dealscore/feedback.db or postgresql+psycopg://user@host/dealscore")


def database_url_refusal(url: str) -> str | None:
    """Why SQLAlchemy cannot use `url` (an unknown dialect, a driver not installed, a URL it cannot read), or
    None. Only an unknown dialect's or a missing driver's message is given: a parser's may quote a part of the
    password (a port that is not a number, an unencoded @)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:  # NoSuchModuleError: an ArgumentError
        if isinstance(exc, NoSuchModuleError | ImportError):
            return str(exc).split("\n")[0][:160]
        return "not a URL SQLAlchemy reads"
    return None


def shown_url(value: object) -> str:
    """A refused database URL as an error shows it: its scheme alone. Masking the password is not enough for a
    URL SQLAlchemy misreads (an unencoded @ moves part of the password into the host) or one with a password
    in its query string."""
    scheme, separator, _ = str(value).partition("://")
    if not separator or not scheme or len(scheme) > 40 or not scheme.replace("+", "").replace("_", "").isalnum():
        return "a text that is no URL (not shown: it may hold a password)"
    return f"'{scheme}://...' (the rest not shown: it may hold a password)"


@dataclass(frozen=True)
class FeedbackConfig:
    database_url: str = field(default_factory=database_url_from_env)
    spool_dir: Path = field(default_factory=lambda: Path(os.environ.get("DEALSCORE_SPOOL_DIR")
                                                         or dealscore_home() / "spool"))
    score_log_enabled: bool = True
    queue_size: int = 10_000  # requests waiting for the writer; beyond it they go straight to the spool
    queue_deals: int = 100_000  # deals those requests may hold; beyond it they go straight to the spool too
    batch_rows: int = 1_000  # rows per database write
    flush_seconds: float = 0.25  # the writer waits at most this long to gather a batch
    retry_seconds: float = 2.0  # first wait before trying a failed database again (doubles up to 60 s)
    migrate_on_start: bool = True
    outcomes_refresh_seconds: float = 30.0  # re-read outcomes other processes recorded (0: never)
    outcomes_complete: bool = False  # every outcome is reported: histories reach the latest one (Settings)
    connect_timeout_seconds: int = 5
    # How long an outcome or a judgement naming a deal the log lacks waits for other processes' score logs
    # (their writers gather up to flush_seconds): with several workers the deal was often scored by another
    # one a moment ago. 0 (one worker): its own queue is flushed first, nothing else to wait for.
    peer_log_wait_seconds: float = 0.0

    @classmethod
    def from_settings(cls, settings: Any) -> FeedbackConfig:
        """From the service's Settings; any field it does not declare keeps its default."""
        defaults = cls()
        home = getattr(settings, "home", None)
        url = getattr(settings, "database_url", None) or (
            default_database_url(Path(home)) if home else defaults.database_url)
        spool = getattr(settings, "spool_dir", None) or (Path(home) / "spool" if home else defaults.spool_dir)

        def pick(name: str, setting: str) -> Any:
            value = getattr(settings, setting, None)
            return getattr(defaults, name) if value is None else value

        return cls(
            database_url=str(url),
            spool_dir=Path(spool),
            score_log_enabled=bool(pick("score_log_enabled", "score_log_enabled")),
            queue_size=int(pick("queue_size", "score_log_queue_size")),
            queue_deals=int(pick("queue_deals", "score_log_queue_deals")),
            batch_rows=int(pick("batch_rows", "score_log_batch_rows")),
            flush_seconds=float(pick("flush_seconds", "score_log_flush_seconds")),
            retry_seconds=float(pick("retry_seconds", "database_retry_seconds")),
            migrate_on_start=bool(pick("migrate_on_start", "database_migrate_on_start")),
            outcomes_refresh_seconds=float(pick("outcomes_refresh_seconds", "outcomes_refresh_seconds")),
            outcomes_complete=bool(pick("outcomes_complete", "outcomes_complete")),
            connect_timeout_seconds=int(pick("connect_timeout_seconds", "database_connect_timeout_seconds")),
            peer_log_wait_seconds=(float(pick("flush_seconds", "score_log_flush_seconds")) + 0.5
                                   if int(getattr(settings, "workers", 1) or 1) > 1 else 0.0),
        )
