"""argparse types of the command line: a wrong value ends in exit 2 with the option, what it expects and what came.

argparse names the option itself ("argument --last: expected at least 1, got 0"), so each type says only
what it expects and what it got.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date

from model.contract import DATE_SLACK, EARLIEST_DEAL_DATE, latest_date_text
from model.errors import DealscoreError


def at_least_one(text: str) -> int:
    """argparse type: a whole number of at least 1 (a count where none makes no sense)."""
    return _whole_number(text, minimum=1)


def at_least_zero(text: str) -> int:
    """argparse type: a whole number of at least 0 (a seed, or a count where none is a real choice)."""
    return _whole_number(text, minimum=0)


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {value}")
    return value


def as_of_day(text: str) -> date:
    """argparse type: an ISO date (2024-03-31) in the range the data contract accepts for deal dates.

    The deals themselves are dated up to today (tomorrow for a sender a time zone ahead: DATE_SLACK, as
    model.validation accepts them), so a later as-of day can only be a typo: every client would look lapsed.
    Days before the first deal date the contract accepts would find no deal at all.
    """
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO date like 2024-03-31, got {text!r}") from None
    today = date.today()  # the clock the data validation uses for "a date up to today"
    if not EARLIEST_DEAL_DATE <= day <= today + DATE_SLACK:
        raise argparse.ArgumentTypeError(f"expected a date from {EARLIEST_DEAL_DATE:%Y-%m-%d} to "
                                         f"{latest_date_text(today)}, got {day:%Y-%m-%d}")
    return day


# The options of `train` and `retrain` by the setting they fill, to name the option in a refusal.
TRAINING_OPTIONS = {
    "holdout_share": "--holdout-share", "lost_window_days": "--lost-window-days",
    "history_lag_days": "--history-lag-days",
    "d_floor_per_hour": "--d-floor-per-hour", "grade_shares": "--grade-shares", "exclude": "--exclude",
    "keep_columns": "--keep",
    "threads": "--threads", "parallel_fits": "--parallel-fits", "auc_tolerance": "--auc-tolerance",
    "ece_limit": "--ece-limit", "ece_margin": "--ece-margin", "min_comparison_deals": "--min-comparison-deals",
    "keep_last": "--keep-last",
}


@contextmanager
def refused_options(options: Mapping[str, str] = TRAINING_OPTIONS) -> Iterator[None]:
    """Settings objects built from options (TrainConfig, FeatureConfig, ...) check their own values and raise
    ValueError ("holdout_share must be ..., got 5.0"): a value they refuse is bad input, exit 2 with their
    message under the option's name, not an unexpected failure."""
    try:
        yield
    except ValueError as exc:
        message = str(exc)
        option = options.get(message.split(" ", 1)[0], "training options")
        raise DealscoreError(f"{option}: {message}") from None


GRADE_SHARES_HELP = ("shares of expected value for classes A, B and C, adding up to 1 (default 0.8 0.15 0.05): "
                     "A is the top deals that together hold the first share")


def grade_shares(values: Sequence[float] | None) -> tuple[float, float, float]:
    """TrainConfig's grade_shares from --grade-shares (three numbers; TrainConfig checks them), else the default."""
    from model.grades import DEFAULT_SHARES

    return DEFAULT_SHARES if values is None else (values[0], values[1], values[2])


HISTORY_LAG_HELP = ("train on client histories up to N days old, as the service reads its own for a deal sent "
                    "without its client's history (0: off)")
EXCLUDE_HELP = ("columns never used as features; month turns off the calendar-month feature, client_id the "
                "client-history features")

__all__ = ["EXCLUDE_HELP", "TRAINING_OPTIONS", "as_of_day", "at_least_one", "at_least_zero", "refused_options"]
