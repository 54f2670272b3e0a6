"""argparse types of the command line: a wrong value ends in exit 2 with the option, what it expects and what came.

argparse names the option itself ("argument --last: expected at least 1, got 0"), so each type says only
what it expects and what it got.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date

from model.contract import DATE_SLACK, EARLIEST_DEAL_DATE, latest_date_text, utc_today
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
    today = utc_today()  # the clock the data validation uses for "a date up to today"
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
                    "without its client's history (default 365; 0: off)")
EXCLUDE_HELP = ("columns never used as features; month turns off the calendar-month feature, client_id the "
                "client-history features")
PARALLEL_FITS_HELP = ("independent fits run at once, each on its own thread with --threads native threads (default: "
                      "the CPUs this process may use divided by --threads, at most 4; 1 runs them one after the "
                      "other)")
SOURCE = "CSV, Parquet, or URL::table-or-query"
MODEL_HELP = "model artifact folder (what `dealscore train --out` wrote)"
MAPPING_HELP = "YAML mapping of the CRM's own column names and values"


def add_data_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, deals_required: bool = True) -> None:
    """--deals, --clients, --holdings and --mapping, as every command that reads a CRM export names them."""
    parser.add_argument("--deals", required=deals_required, help=f"the deals table: {SOURCE}")
    parser.add_argument("--clients", help=f"the clients table (client_id, industry, size, region, since, ...): "
                                          f"{SOURCE}")
    parser.add_argument("--holdings", help=f"the products clients hold (client_id, product, since, revenue): {SOURCE}")
    parser.add_argument("--mapping", help=MAPPING_HELP)


def add_training_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, threads_default: int | None,
                         threads_help: str) -> None:
    """The options of a fit, shared by `train` and `retrain` (TRAINING_OPTIONS names them in refusals)."""
    parser.add_argument("--holdout-share", type=float, default=0.2,
                        help="share of the latest closed deals (by created_at) kept out of fitting to evaluate the "
                             "model on (default 0.2)")
    parser.add_argument("--include-manager", action="store_true", help="use the deal owner as a feature")
    parser.add_argument("--exclude", nargs="*", help=EXCLUDE_HELP)
    parser.add_argument("--keep", nargs="*", help="columns the leak guard flags that you keep anyway")
    parser.add_argument("--lost-window-days", type=int, default=360,
                        help="days without a win after which a client counts as lost (default 360; 90 and 180 "
                             "suit faster trades)")
    parser.add_argument("--history-lag-days", type=int, default=365, help=HISTORY_LAG_HELP)
    parser.add_argument("--d-floor-per-hour", type=float, default=None,
                        help="expected value per hour of effort below which a deal is class D (default: derived "
                             "from what the team's top managers realised per hour)")
    parser.add_argument("--grade-shares", type=float, nargs=3, metavar=("A", "B", "C"), help=GRADE_SHARES_HELP)
    parser.add_argument("--threads", type=at_least_one, default=threads_default, help=threads_help)
    parser.add_argument("--parallel-fits", type=at_least_one, default=None, help=PARALLEL_FITS_HELP)


__all__ = ["EXCLUDE_HELP", "MAPPING_HELP", "MODEL_HELP", "SOURCE", "TRAINING_OPTIONS", "add_data_options",
           "add_training_options", "as_of_day", "at_least_one", "at_least_zero", "refused_options"]
