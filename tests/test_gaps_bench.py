"""The gap-list benchmark's paired comparisons of a method against popularity on the same hidden products."""

from __future__ import annotations

import math

import pytest

from bench.gaps_bench import income_test, pooled, sign_test
from training.gap_evaluation import RecallResult, score_rankings


def _results(lists: dict[str, list[list[str]]], targets: list[str], revenue: list[float]) -> dict[str, RecallResult]:
    return {r.method: r for r in score_rankings("toy", lists, targets, revenue)}


def test_income_recall_gain_counts_the_revenue_each_method_alone_found() -> None:
    # Case 0 (revenue 100) only the served list finds; cases 1-3 (revenue 1 each) only popularity; case 4 both.
    targets = ["big", "a", "b", "c", "d"]
    lists = {"served": [["big"], ["x"], ["x"], ["x"], ["d"]],
             "popularity": [["x"], ["a"], ["b"], ["c"], ["d"]]}
    results = _results(lists, targets, [100.0, 1.0, 1.0, 1.0, 5.0])
    gain, p = income_test(results["served"], results["popularity"])
    assert math.isclose(gain, (100.0 - 3.0) / 108.0)
    # One case carries the gain: every flip of the signs is as large, so it is no evidence at all.
    assert p == 1.0
    gain_back, _ = income_test(results["popularity"], results["served"])
    assert math.isclose(gain_back, -gain)


def test_a_gain_found_case_after_case_is_unlikely_by_chance() -> None:
    targets = [f"p{i}" for i in range(12)]
    lists = {"served": [[t] for t in targets], "popularity": [["x"] for _ in targets]}
    results = _results(lists, targets, [5.0] * 12)
    gain, p = income_test(results["served"], results["popularity"])
    assert gain == 1.0
    assert p < 0.002  # exactly 2 of 4,096 sign patterns are this large: about 0.0005


def test_equal_lists_gain_nothing_and_unknown_revenue_is_left_out() -> None:
    targets = ["a", "b", "c"]
    same = {"served": [["a"], ["x"], ["c"]], "popularity": [["a"], ["x"], ["c"]]}
    results = _results(same, targets, [3.0, 2.0, 1.0])
    assert income_test(results["served"], results["popularity"]) == (0.0, 1.0)
    # A case without a revenue counts for neither method, however the lists differ on it.
    differ = {"served": [["a"], ["b"], ["x"]], "popularity": [["x"], ["x"], ["c"]]}
    results = _results(differ, targets, [3.0, float("nan"), 1.0])
    gain, _ = income_test(results["served"], results["popularity"])
    assert math.isclose(gain, (3.0 - 1.0) / 4.0)


def test_pooled_draws_keep_each_case_with_its_own_revenue() -> None:
    targets = ["a", "b"]
    lists = {"served": [["a"], ["x"]], "popularity": [["x"], ["b"]]}
    draw_1 = score_rankings("toy", lists, targets, [10.0, 1.0])
    draw_2 = score_rankings("toy", lists, targets, [1.0, 10.0])
    served, popularity = pooled("toy x2", [draw_1, draw_2])
    assert served.weights == (10.0, 1.0, 1.0, 10.0)
    assert served.hits_at_3 == (True, False, True, False)
    gain, _ = income_test(served, popularity)
    assert math.isclose(gain, 0.0)


def test_the_first_place_is_tested_apart_from_the_top_3() -> None:
    # Three products, as bank marketing has: both lists hold every target in their top 3, so only the first place
    # tells them apart. The served list puts the target first in cases 0 and 1, popularity only in case 2.
    targets = ["a", "b", "c"]
    lists = {"served": [["a", "b", "c"], ["b", "a", "c"], ["a", "b", "c"]],
             "popularity": [["c", "a", "b"], ["a", "c", "b"], ["c", "b", "a"]]}
    results = _results(lists, targets, [1.0, 1.0, 1.0])
    served, popularity = results["served"], results["popularity"]
    assert served.hits_at_1 == (True, True, False)
    assert sign_test(served, popularity) == (0, 0, 1.0)
    ahead, behind, p = sign_test(served, popularity, top=1)
    assert (ahead, behind) == (2, 1)
    assert math.isclose(p, 1.0)  # 2 against 1 is no evidence
    draws = pooled("toy x2", [score_rankings("toy", lists, targets), score_rankings("toy", lists, targets)])
    assert draws[0].hits_at_1 == (True, True, False, True, True, False)


def test_the_sign_test_takes_only_the_places_it_has_hits_for() -> None:
    results = _results({"served": [["a"]], "popularity": [["a"]]}, ["a"], [1.0])
    with pytest.raises(ValueError, match="1 or 3"):
        sign_test(results["served"], results["popularity"], top=2)
