"""Properties of the letter classes over random populations: the hand-made edges of test_grades.py, generalised.

At fixed cut-offs a higher expected value never gets a worse letter and D comes only from the value-per-hour
floor; the ABC cut of a population matches a brute-force count in exact arithmetic (shares read as the decimal
numbers they are written as: 0.8 is 4/5, not its binary neighbour).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from model.grades import DEFAULT_SHARES, GradeCutoffs, letter_classes, pareto_classes, pareto_cutoffs

FAST = settings(max_examples=150, deadline=None, derandomize=True)

SHARES = st.sampled_from([DEFAULT_SHARES, (0.7, 0.2, 0.1), (0.5, 0.3, 0.2), (0.85, 0.15, 0.0), (0.6, 0.35, 0.05)])
# Whole amounts (and a few halves) make ties and exact hits of a share line common, where rounding would show.
VALUES = st.lists(st.one_of(st.integers(0, 1_000).map(float), st.integers(0, 200).map(lambda v: v / 2)),
                  min_size=0, max_size=40)
MONEY = st.floats(min_value=0.0, max_value=1e7, allow_nan=False)


def brute_force_abc(values: list[float], shares: tuple[float, float, float], keys: list[str]) -> list[str]:
    """ABC by rank, in exact arithmetic: largest first (equal values by key), A while the share of value before
    an item is under shares[0], B while under shares[0] + shares[1]; items without a positive value are C."""
    a_line = Fraction(str(shares[0]))
    b_line = a_line + Fraction(str(shares[1]))
    valued = sorted((i for i, v in enumerate(values) if v > 0), key=lambda i: (-values[i], keys[i]))
    total = sum(Fraction(values[i]) for i in valued)
    out = ["C"] * len(values)
    before = Fraction(0)
    for i in valued:
        share = before / total
        out[i] = "A" if share < a_line else "B" if share < b_line else "C"
        before += Fraction(values[i])
    return out


@FAST
@given(values=VALUES, shares=SHARES)
def test_abc_classes_match_a_brute_force_cut_in_exact_arithmetic(values: list[float],
                                                                 shares: tuple[float, float, float]) -> None:
    keys = [f"k{i:03d}" for i in range(len(values))]
    got = pareto_classes(np.array(values, dtype=np.float64), shares, tie_keys=np.array(keys, dtype=object))
    assert got.tolist() == brute_force_abc(values, shares, keys)


@FAST
@given(values=VALUES, shares=SHARES, data=st.data())
def test_abc_classes_do_not_depend_on_the_order_of_the_population(values: list[float],
                                                                  shares: tuple[float, float, float],
                                                                  data: st.DataObject) -> None:
    keys = np.array([f"k{i:03d}" for i in range(len(values))], dtype=object)
    order = np.array(data.draw(st.permutations(range(len(values)))), dtype=np.int64)
    plain = pareto_classes(np.array(values, dtype=np.float64), shares, tie_keys=keys)
    shuffled = pareto_classes(np.array(values, dtype=np.float64)[order], shares, tie_keys=keys[order])
    assert shuffled.tolist() == plain[order].tolist()


@FAST
@given(values=VALUES.filter(lambda v: len({x for x in v if x > 0}) == len([x for x in v if x > 0])),
       shares=SHARES)
def test_the_cut_offs_of_a_reference_population_give_its_deals_their_own_classes(
        values: list[float], shares: tuple[float, float, float]) -> None:
    """Distinct values (ties may straddle a line by rank, which a value cut-off cannot): each reference deal,
    scored again at the cut-offs fixed from the population, keeps its ABC class."""
    population = np.array(values, dtype=np.float64)
    cutoffs = GradeCutoffs(*pareto_cutoffs(population, shares), shares=shares)
    assert letter_classes(population, cutoffs).tolist() == pareto_classes(population, shares).tolist()


@FAST
@given(a_min=MONEY, gap=MONEY, values=st.lists(st.one_of(MONEY, st.just(float("nan"))), min_size=1, max_size=30))
def test_a_higher_expected_value_never_gets_a_worse_letter(a_min: float, gap: float, values: list[float]) -> None:
    cutoffs = GradeCutoffs(a_min=a_min, b_min=max(a_min - gap, 0.0))
    ev = np.array(values, dtype=np.float64)
    letters = letter_classes(ev, cutoffs).tolist()
    assert set(letters) <= {"A", "B", "C"}  # no D without value per hour
    plain = np.nan_to_num(ev, nan=0.0)  # a deal without an expected value reads as 0
    for i in range(ev.size):
        for j in range(ev.size):
            if plain[i] >= plain[j]:
                assert letters[i] <= letters[j], (plain[i], letters[i], plain[j], letters[j])


@FAST
@given(a_min=MONEY, gap=MONEY, floor=MONEY,
       deals=st.lists(st.tuples(MONEY, st.one_of(MONEY, st.just(float("nan")), st.just(float("inf")))),
                      min_size=1, max_size=30))
def test_d_only_at_or_below_the_floor_per_hour_and_other_letters_as_without_hours(
        a_min: float, gap: float, floor: float, deals: list[tuple[float, float]]) -> None:
    cutoffs = GradeCutoffs(a_min=a_min, b_min=max(a_min - gap, 0.0), d_floor_per_hour=floor)
    ev = np.array([d[0] for d in deals], dtype=np.float64)
    per_hour = np.array([d[1] for d in deals], dtype=np.float64)
    with_hours = letter_classes(ev, cutoffs, per_hour).tolist()
    without_hours = letter_classes(ev, cutoffs).tolist()
    for letter, plain, rate in zip(with_hours, without_hours, per_hour.tolist(), strict=True):
        not_worth = rate == rate and rate != float("inf") and rate <= floor
        assert letter == ("D" if not_worth else plain)
