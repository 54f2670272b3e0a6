"""Letter classes and ABC classes at their edges: what "at or above a cut-off" and "by value" mean exactly."""

from __future__ import annotations

import numpy as np
import pytest

from model.grade_text import grade_texts
from model.grades import GradeCutoffs, check_pareto_shares, letter_classes, pareto_classes, pareto_cutoffs


def test_a_deal_exactly_at_a_cut_off_takes_the_higher_class() -> None:
    # The cut-offs are the expected values of real reference deals (the last A, the last B): that deal
    # must keep its own class when scored again.
    cutoffs = GradeCutoffs(a_min=100.0, b_min=50.0)
    grades = letter_classes(np.array([100.0, 99.99, 50.0, 49.99]), cutoffs)
    assert grades.tolist() == ["A", "B", "B", "C"]


def test_the_reference_deals_that_set_the_cut_offs_keep_their_classes() -> None:
    values = np.array([500.0, 300.0, 100.0, 60.0, 40.0])
    a_min, b_min = pareto_cutoffs(values)
    # 500 + 300 is 80% of 1,000 reached with the second deal, so it is the last A; 100 brings 90%, 60 96%.
    assert (a_min, b_min) == (300.0, 60.0)
    assert letter_classes(values, GradeCutoffs(a_min=a_min, b_min=b_min)).tolist() == ["A", "A", "B", "B", "C"]


def test_abc_ranks_by_value_and_ids_only_break_ties() -> None:
    # Ids that sort against the values: ranking by id would make the small client A.
    assert pareto_classes(np.array([10.0, 600.0]), tie_keys=np.array(["a", "b"], dtype=object)).tolist() == ["C", "A"]
    # Equal values: the id decides, whatever the input order.
    tied = pareto_classes(np.array([5.0] * 10), tie_keys=np.array(list("jihgfedcba"), dtype=object))
    assert tied.tolist() == ["B", "B"] + ["A"] * 8


def test_without_any_positive_value_there_are_no_cut_offs() -> None:
    assert pareto_cutoffs(np.array([0.0, 0.0, 0.0])) == (0.0, 0.0)
    # Zeros are not part of the population the shares are cut on.
    assert pareto_cutoffs(np.array([100.0, 0.0, 0.0])) == (100.0, 100.0)


def test_without_cut_offs_every_deal_is_c_whatever_its_value() -> None:
    """A model whose reference deals had no value (trained without amounts) has cut-offs (0, 0): a deal sent with
    an amount is C, not A (a 1-dollar deal had been A beside a 50,000 one)."""
    cutoffs = GradeCutoffs(*pareto_cutoffs(np.array([0.0, 0.0])))
    assert letter_classes(np.array([1.0, 50_000.0, np.nan]), cutoffs).tolist() == ["C", "C", "C"]


def test_a_c_share_of_zero_is_allowed_but_not_an_a_or_b_share_of_zero() -> None:
    check_pareto_shares("grade_shares", (0.85, 0.15, 0.0))
    for shares in ((0.0, 0.95, 0.05), (0.95, 0.0, 0.05)):
        with pytest.raises(ValueError, match="A and B above 0"):
            check_pareto_shares("grade_shares", shares)


def test_each_letter_says_which_cut_off_put_it_there() -> None:
    """A manager-view audit: 174 of 500 demo deals were D and nothing in their answers said why (their reasons
    explain p_win, and most raised it)."""
    cutoffs = GradeCutoffs(a_min=10_000.0, b_min=2_000.0, d_floor_per_hour=127.0)
    expected = np.array([12_000.0, 10_000.0, 5_000.0, 500.0, 5_000.0, np.nan, 20_000.0])
    per_hour = np.array([np.nan, 800.0, 400.0, np.nan, 42.0, np.nan, 127.0])
    grades = letter_classes(expected, cutoffs, per_hour).tolist()
    assert grades == ["A", "A", "B", "C", "D", "C", "D"]
    assert grade_texts(grades, expected, per_hour, cutoffs) == [
        "A: expected value 12,000, at or above A's 10,000",
        "A: expected value 10,000, at or above A's 10,000",
        "B: expected value 5,000, at or above B's 2,000, below A's 10,000",
        "C: expected value 500, below B's 2,000",
        "D: 42 of expected value per hour of work, at or below the floor of 127 an hour; by value alone B",
        "C: no expected value (no amount sent, or 0, and no value model to estimate one)",
        "D: 127 of expected value per hour of work, at or below the floor of 127 an hour; by value alone A",
    ]
    no_values = GradeCutoffs(a_min=0.0, b_min=0.0)
    assert grade_texts(["C"], np.array([5_000.0]), np.array([np.nan]), no_values) == [
        "C: the model had no deal values to cut classes on when it was trained, so every deal is C"]


def test_a_value_rounding_to_its_cut_off_is_shown_with_cents() -> None:
    """A review: 976.45 against B's 976.5 read "C: expected value 976, below B's 976"."""
    cutoffs = GradeCutoffs(a_min=3_000.0, b_min=976.5)
    expected = np.array([976.45, 3_000.2, 2_999.9])
    grades = letter_classes(expected, cutoffs).tolist()
    assert grade_texts(grades, expected, np.full(3, np.nan), cutoffs) == [
        "C: expected value 976.45, below B's 976.50",
        "A: expected value 3,000, at or above A's 3,000",
        "B: expected value 2,999.90, at or above B's 976, below A's 3,000.00",
    ]
