"""Letter classes: A/B/C by Pareto share of value, D for deals not worth a manager's hour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DEFAULT_SHARES: tuple[float, float, float] = (0.80, 0.15, 0.05)
LETTERS = np.array(["A", "B", "C", "D"])  # class numbers 0..3 as letters


@dataclass(frozen=True)
class GradeCutoffs:
    """Fixed at training time so a letter keeps its meaning until the next model is published."""

    a_min: float  # expected value at or above which a deal is A
    b_min: float  # ... B; below it C
    shares: tuple[float, float, float] = DEFAULT_SHARES
    d_floor_per_hour: float | None = None  # expected value per hour at or below which a deal is D


def check_pareto_shares(name: str, shares: object) -> None:
    """Pareto shares must be three numbers, A's and B's above 0, none below 0, adding up to 1: a share list
    that adds up to less leaves deals in no class, and one of 2 numbers fails only when grades are cut."""
    numbers = list(shares) if isinstance(shares, list | tuple) else []
    valid = (len(numbers) == 3 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers)
             and numbers[0] > 0 and numbers[1] > 0 and numbers[2] >= 0 and abs(sum(numbers) - 1.0) <= 1e-6)
    if not valid:
        raise ValueError(f"{name} must be three shares of value for A, B and C (A and B above 0, adding up to 1, "
                         f"e.g. {DEFAULT_SHARES}), got {shares!r}")


# Shares of value are sums of floats: ten clients of 0.1 put 0.7999999999999999 of the total before the ninth,
# and 0.8 + 0.15 is 0.9500000000000001. A share within rounding error below a line counts as on it, so equal
# values split as the documented counts say (ten equal clients: 8 A and 2 B, whatever the amount). Rounding
# error grows with the number of items summed: a few machine epsilons per item, no more (a fixed 1e-9 moved a
# genuine 79.99999995% share across the line).
_ROUNDING_PER_ITEM = 4 * float(np.finfo(np.float64).eps)


def _share_before(ranked: FloatArray) -> FloatArray:
    """Per item (largest first) the share of the total held by the items before it."""
    share: FloatArray = (np.cumsum(ranked) - ranked) / ranked.sum()
    return share


def _under(share: FloatArray, line: float) -> npt.NDArray[np.bool_]:
    return share < line - _ROUNDING_PER_ITEM * max(share.size, 1)


def pareto_cutoffs(values: FloatArray, shares: tuple[float, float, float] = DEFAULT_SHARES) -> tuple[float, float]:
    """Smallest values still inside the top `shares[0]` and `shares[0] + shares[1]` of the total.

    Items sorted by value, largest first; an item is A while the cumulative share *before* it is
    below shares[0], so the item that crosses the line is still A (as ABC analysis counts it).
    """
    clean = np.sort(values[np.isfinite(values) & (values > 0)])[::-1]
    if clean.size == 0:
        return 0.0, 0.0
    before = _share_before(clean)
    a_items = clean[_under(before, shares[0])]
    b_items = clean[_under(before, shares[0] + shares[1])]
    return float(a_items[-1]), float(b_items[-1])


def pareto_classes(values: FloatArray, shares: tuple[float, float, float] = DEFAULT_SHARES,
                   tie_keys: npt.NDArray[Any] | None = None) -> npt.NDArray[np.str_]:
    """ABC class of each item of one population (clients by income, products by sales...).

    By rank, as ABC analysis counts: items sorted by value, largest first (equal values by `tie_keys`,
    e.g. client ids, so that reordering an export cannot change a class; in input order without them);
    an item is A while the share of value before it is under shares[0], B while under shares[0] + shares[1].
    So ten clients of equal income are 8 A and 2 B, where a value cut-off (which fixed deal grades need)
    would make all ten A. Items without a positive value are C.
    """
    values = np.asarray(values, dtype=np.float64)
    number = np.full(values.size, 2)
    valued = np.flatnonzero(np.isfinite(values) & (values > 0))
    if valued.size:
        order = valued[np.argsort(-values[valued], kind="stable") if tie_keys is None
                       else np.lexsort((np.asarray(tie_keys)[valued], -values[valued]))]
        ranked = values[order]
        before = _share_before(ranked)
        number[order] = np.where(_under(before, shares[0]), 0, np.where(_under(before, shares[0] + shares[1]), 1, 2))
    classes: npt.NDArray[np.str_] = LETTERS[number]
    return classes


def letter_classes(expected_value: FloatArray, cutoffs: GradeCutoffs,
                   value_per_hour: FloatArray | None = None) -> npt.NDArray[np.str_]:
    # Worked on class numbers (0 = A ... 3 = D) and turned into letters once: string arrays in np.where
    # cost several times more, which shows on the single-deal path.
    ev = np.where(np.isnan(expected_value), 0.0, expected_value)
    if cutoffs.a_min <= 0:
        # No reference deal had a value at training time, so there is no share of value to place a deal in:
        # every deal is C. (Every deal sent with an amount had been A: a 1-dollar deal beside a 50,000 one.)
        number = np.full(ev.shape, 2)
    else:
        number = np.where(ev >= cutoffs.a_min, 0, np.where(ev >= cutoffs.b_min, 1, 2))
    if value_per_hour is not None and cutoffs.d_floor_per_hour is not None:
        # At or below: DOMAIN.md's deal making 1,000 an hour where the best managers make 5,000 is not worth
        # taking, and that is exactly the default floor (a fifth of the best managers' rate).
        not_worth = np.isfinite(value_per_hour) & (value_per_hour <= cutoffs.d_floor_per_hour)
        number = np.where(not_worth, 3, number)
    grades: npt.NDArray[np.str_] = LETTERS[number]
    return grades
