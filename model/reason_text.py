"""A reason as a manager reads it: one line, e.g. "client's last win 6 days ago: raises the chance".

The reasons' feature names are the model's (`client_days_since_last_win`); a CRM shows its managers the reasons,
and a manager should not need the data dictionary to read them. Every name a reason can show has its wording
here; any other (a text or number column of the CRM's own) reads as "column is value".
"""

from __future__ import annotations

import calendar
import functools
import math
from collections.abc import Callable

import numpy as np

from model.features import CLIENT_EXTRA_PREFIX

RAISES, LOWERS = "raises the chance", "lowers the chance"


def _days(days: float) -> str:
    whole = round(days)
    return "today" if whole == 0 else "1 day ago" if whole == 1 else f"{whole:,} days ago"


def _count(value: float, one: str, many: str) -> str:
    whole = round(value)
    return f"{whole:,} {one if whole == 1 else many}"


def _share(value: float) -> str:
    return f"{value:.0%}"


def _number(value: float) -> str:
    """A number as a manager reads it, never in e-notation (",.4g" showed a balance of 12,980 as "1.298e+04"): whole
    from 1,000 up, thousands separated from 10,000 up (a year stays 2003, not "2,003"), else 4 significant digits."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        whole = round(value)
        return f"{whole:,}" if abs(whole) >= 10_000 else str(whole)
    return str(np.format_float_positional(value, precision=4, unique=False, fractional=False, trim="-"))


def money_text(value: float) -> str:
    """Whole, thousands separated ("12,000"); under 1 as it is (an amount of 0.4 is not "0")."""
    return f"{value:,.0f}" if abs(value) >= 1 else _number(value)


# What a number says, per feature; None (no value) has the wording of NO_VALUE.
NUMBER_WORDING: dict[str, Callable[[float], str]] = {
    "amount": lambda v: f"amount {money_text(v)}",
    "effort_hours": lambda v: f"{_number(v)} {'hour' if v == 1 else 'hours'} of work",
    "client_won_deals": lambda v: f"client won {_count(v, 'deal', 'deals')} before",
    "client_won_amount": lambda v: f"client paid {money_text(v)} on earlier wins",
    "client_days_since_last_win": lambda v: f"client's last win {_days(v)}",
    "client_days_since_first_win": lambda v: f"client's first win {_days(v)}",
    "client_closed_deals": lambda v: f"client closed {_count(v, 'deal', 'deals')} before",
    # Smoothed towards the team's rate (FeatureConfig.smoothing): not the share of its deals the client won (one
    # lost deal reads about 33%, none at all the team's rate).
    "client_win_rate": lambda v: f"client's win rate {_share(v)}, its earlier deals weighed with the team's",
    "client_product_deals": lambda v: f"{_count(v, 'earlier deal', 'earlier deals')} of this product with the client",
    "client_product_wins": lambda v: f"client won this product {_count(v, 'time', 'times')} before",
    # Negative for a deal dated before the client's start date (a first deal before the contract; an API audit's
    # "client for -234 days").
    "client_tenure_days": lambda v: (f"client for {_count(v, 'day', 'days')}" if round(v) >= 0
                                     else f"client's start date {_count(-v, 'day', 'days')} after this deal"),
    "overall_win_rate": lambda v: f"team's win rate so far {_share(v)}",
    # Over FeatureConfig.recent_window_days (a year by default), ending where the model's history does.
    "recent_win_rate": lambda v: f"team's recent win rate {_share(v)}",
    "month": lambda v: f"created in {calendar.month_name[int(v)]}" if 1 <= v <= 12 else f"month {v:g}",
}
NO_VALUE: dict[str, str] = {
    "amount": "no amount sent, or 0 (read as no quote yet; valued by the model)",  # 0: the score reads so
    "client_days_since_last_win": "client has no win yet",
    "client_days_since_first_win": "client has no win yet",
    "effort_hours": "no effort hours sent",
    "client_tenure_days": "client's start date not given",
    "month": "no creation date sent (scored as of today)",  # today's month pushes (ScoringModel.score)
    # The client closed no deal before this one: its rate is the team's, a stand-in (ScoringModel.reasons).
    "client_win_rate": "client has closed no deal yet",
    # A deal dated before the first closed deal of the model's history (a backfill of old deals).
    "overall_win_rate": "no deal of the team had closed before this one",
    "recent_win_rate": "no deal of the team had closed before this one",
}


@functools.lru_cache(maxsize=8192)  # levels and counts repeat across deals: a batch's 5,000 reasons share most lines
def reason_text(feature: str, value: str | float | None, raises: bool, history_age: float | None = None) -> str:
    """One line a manager reads: what the deal has, and which way it moves the chance of winning. `history_age`:
    client_status's, the days from the end of the client history read to the deal's day (the status's push
    includes the trees' allowance for wins since: without it, "client status is lost: raises the chance")."""
    what = _what(feature, value)
    if history_age is not None and round(history_age) >= 1:
        what += f" as of {_days(history_age)}"
    return f"{what}: {RAISES if raises else LOWERS}"


def _what(feature: str, value: str | float | None) -> str:
    if feature == "client_status":
        return f"client status is {value}" if value is not None else "client status unknown"
    wording = NUMBER_WORDING.get(feature)
    if wording is not None:
        if value is None:
            return NO_VALUE.get(feature, f"{feature.replace('_', ' ')} not known")
        return wording(value) if not isinstance(value, str) else f"{feature.replace('_', ' ')} is {value}"
    # A column of the CRM's own: a deal's, or a clients table's (client_X, its column X).
    shown = ("client's " + feature.removeprefix(CLIENT_EXTRA_PREFIX) if feature.startswith(CLIENT_EXTRA_PREFIX)
             else feature)
    if value is None:
        # "not given", not "not sent": a known client's blank attribute (maven's "subsidiary of", blank for a
        # company that is none) is filled from the training clients table and reads no value either.
        return f"{shown} not given"
    return f"{shown} is {value}" if isinstance(value, str) else f"{shown} is {_number(value)}"
