"""As-of lookups over dated events: "what had happened for this key strictly before this day?".

Training and scoring both ask this question; answering it with one sorted index (binary search over
key-then-day composites) keeps the two paths identical and makes leakage impossible by construction:
an event dated on or after the query day is never counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Days are counted from 1970-01-01; 10^6 days leaves room for any calendar date, so
# key * DAY_SPAN + day sorts by key first, then by day, in one int64.
DAY_SPAN = 1_000_000
NO_KEY = -1


@dataclass(frozen=True)
class AsOfCounts:
    """Per query: how many events, how many wins, money won, first and last win day (NaN if none)."""

    events: FloatArray
    wins: FloatArray
    won_amount: FloatArray
    first_win_day: FloatArray
    last_win_day: FloatArray


class AsOfIndex:
    """Cumulative event statistics per integer key, queried as of a day (strictly before it)."""

    def __init__(self, keys: IntArray, days: IntArray, won: npt.NDArray[np.bool_], amount: FloatArray) -> None:
        keep = keys >= 0
        keys, days, won, amount = keys[keep], days[keep], won[keep], amount[keep]
        composite = keys.astype(np.int64) * DAY_SPAN + days.astype(np.int64)
        order = np.argsort(composite, kind="stable")
        self._composite = composite[order]
        won_sorted = won[order]
        won_amount = np.where(won_sorted, np.nan_to_num(amount[order]), 0.0)
        self._cum_wins = np.concatenate(([0.0], np.cumsum(won_sorted, dtype=np.float64)))
        # Money is summed within each key only (not as a difference of global sums), so a key's total
        # is the same float whatever other keys' events exist: exactly as-of, not just up to rounding.
        sorted_keys = keys[order]
        self._key_won_amount = pd.Series(won_amount).groupby(sorted_keys).cumsum().to_numpy(dtype=np.float64)
        win_composite = self._composite[won_sorted]
        self._win_composite = win_composite
        self._win_days = (win_composite % DAY_SPAN).astype(np.float64)

    def __len__(self) -> int:
        return int(self._composite.size)

    def counts(self, keys: IntArray, days: IntArray) -> tuple[FloatArray, FloatArray]:
        """Events and wins per query (strictly before its day): the cheap part of `lookup`, one search."""
        keys = np.asarray(keys, dtype=np.int64)
        known = keys >= 0
        low = np.where(known, keys, 0) * DAY_SPAN
        # An unknown key searches an empty range [low, low): no events.
        bounds = self._composite.searchsorted(np.concatenate((low, low + np.where(known, days, 0))), side="left")
        start, end = bounds[: keys.size], bounds[keys.size:]
        return (end - start).astype(np.float64), self._cum_wins[end] - self._cum_wins[start]

    def lookup(self, keys: IntArray, days: IntArray) -> AsOfCounts:
        keys = np.asarray(keys, dtype=np.int64)
        days = np.asarray(days, dtype=np.int64)
        known = keys >= 0
        low = np.where(known, keys, 0) * DAY_SPAN
        # Both ends of every query in one search per array, as in `counts`: an unknown key searches the empty
        # range [low, low) (the single-deal path pays numpy's per-call cost, so fewer calls, not less work).
        bounds = np.concatenate((low, low + np.where(known, days, 0)))
        n = keys.size
        found = self._composite.searchsorted(bounds, side="left")
        start, end = found[:n], found[n:]
        events = (end - start).astype(np.float64)
        wins = self._cum_wins[end] - self._cum_wins[start]
        has_event = end > start
        won_amount = np.where(has_event, self._key_won_amount[np.maximum(end - 1, 0)] if len(self) else 0.0, 0.0)

        found = self._win_composite.searchsorted(bounds, side="left")
        win_start, win_end = found[:n], found[n:]
        has_win = win_end > win_start
        n_win_days = self._win_days.size
        first = np.where(has_win, self._win_days[np.minimum(win_start, max(n_win_days - 1, 0))]
                         if n_win_days else np.nan, np.nan)
        last = np.where(has_win, self._win_days[np.maximum(win_end - 1, 0)] if n_win_days else np.nan, np.nan)
        return AsOfCounts(events=events, wins=wins, won_amount=won_amount,
                          first_win_day=first.astype(np.float64), last_win_day=last.astype(np.float64))
