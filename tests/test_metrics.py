"""The report's and the quality report's measures, computed by hand on a few deals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from model.metrics import (
    auc_interval,
    calibration_curve,
    ece_by_chance,
    expected_calibration_error,
    grade_table,
    holdout_noise_text,
    p_value_text,
    paired_auc_lead,
    probability_caution,
    probability_metrics,
    reversed_ranking_caution,
    slice_auc_caveat,
    top_decile_lift,
)


def test_the_calibration_curve_gives_each_bins_observed_win_rate_and_its_edges() -> None:
    curve = calibration_curve(np.array([1.0, 1.0, 0.0, 0.0]), np.array([0.15, 0.15, 0.85, 0.85]))
    assert curve == [
        {"bin_low": pytest.approx(0.1), "bin_high": pytest.approx(0.2), "mean_p": 0.15, "win_rate": 1.0, "deals": 2},
        {"bin_low": pytest.approx(0.8), "bin_high": pytest.approx(0.9), "mean_p": 0.85, "win_rate": 0.0, "deals": 2},
    ]


def test_calibration_bin_edges_read_as_written() -> None:
    """/v1/quality showed a bin from 0.30000000000000004 (an API review): the edges are tenths exactly."""
    curve = calibration_curve(np.array([1.0, 0.0, 1.0]), np.array([0.35, 0.65, 0.75]))
    assert [(c["bin_low"], c["bin_high"]) for c in curve] == [(0.3, 0.4), (0.6, 0.7), (0.7, 0.8)]


def test_ece_bins_include_their_lower_edge() -> None:
    # Bins are [0.1, 0.2), [0.2, 0.3): p = 0.1 shares a bin with 0.15, p = 0.2 is the next bin's.
    p = np.array([0.1, 0.1, 0.15, 0.15, 0.2, 0.2])
    won = np.array([0.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    first = abs(0.25 - np.mean([0.1, 0.1, 0.15, 0.15]))  # 1 win in 4 deals
    second = abs(0.5 - 0.2)
    assert expected_calibration_error(won, p) == pytest.approx(4 / 6 * first + 2 / 6 * second)


def test_top_decile_lift_rounds_the_decile_to_the_nearest_deal() -> None:
    # 15 deals: the top decile is round(1.5) = 2 deals, one of them won; the win rate is 3/15.
    won = np.array([1.0, 0.0] + [0.0] * 10 + [1.0, 1.0, 0.0])
    assert top_decile_lift(won, np.linspace(1.0, 0.0, 15)) == pytest.approx((1 / 2) / (3 / 15))


def test_mean_p_and_win_rate_are_means() -> None:
    metrics = probability_metrics(np.array([1.0, 0.0, 0.0, 1.0]), np.array([0.9, 0.1, 0.2, 0.3]))
    assert (metrics["mean_p"], metrics["win_rate"], metrics["deals"]) == (pytest.approx(0.375), 0.5, 4)


def test_the_grade_table_lists_every_class_with_its_share_of_deals_and_value() -> None:
    table = grade_table(np.array([1.0, 0.0, 1.0, 0.0]), ["A", "B", "D", "D"], np.array([100.0, 50.0, 30.0, 20.0]))
    assert [(r["grade"], r["deals"], r["share_of_deals"], r["win_rate"]) for r in table] == [
        ("A", 1, 0.25, 1.0), ("B", 1, 0.25, 0.0), ("D", 2, 0.5, 0.5)]
    # Realised value is won money only: 100 and 30 of 130.
    assert [r["share_of_realised_value"] for r in table] == [pytest.approx(100 / 130), 0.0, pytest.approx(30 / 130)]


def test_a_model_clearly_worse_than_the_win_rate_gets_a_caution() -> None:
    worse = {"model": {"brier": 0.205, "auc": 0.6}, "prior_rate": {"brier": 0.200}}
    assert probability_caution(worse) is not None
    within_noise = {"model": {"brier": 0.2005, "auc": 0.6}, "prior_rate": {"brier": 0.200}}
    assert probability_caution(within_noise) is None


def test_a_model_ranking_well_behind_the_logistic_baseline_gets_a_caution() -> None:
    """The bank data with its clients table: AUC 0.502 against the baseline's 0.703, p_win nearly one value, and
    no caution (the chance rule needs 0.5 or less; the Brier was better than the win rate's)."""
    behind = {"model": {"brier": 0.2475, "auc": 0.502}, "prior_rate": {"brier": 0.2779},
              "logistic_regression": {"auc": 0.703}}
    caution = probability_caution(behind)
    assert caution is not None and "worse than a plain logistic regression" in caution
    assert "0.502 against 0.703" in caution
    close = {"model": {"brier": 0.20, "auc": 0.69}, "prior_rate": {"brier": 0.23}, "logistic_regression": {"auc": 0.72}}
    assert probability_caution(close) is None  # within 0.05 of the baseline, and untested: no alarm


def test_a_smaller_lead_of_the_logistic_baseline_gets_a_caution_when_chance_does_not_explain_it() -> None:
    """AUC 0.555 against the regression's 0.601 had raised nothing: the fixed margin was 0.05."""
    def metrics(p_value: float, baseline_auc: float = 0.601) -> dict[str, dict[str, float]]:
        return {"model": {"brier": 0.230, "auc": 0.555}, "prior_rate": {"brier": 0.235},
                "logistic_regression": {"auc": baseline_auc, "auc_lead_p_value": p_value}}

    caution = probability_caution(metrics(0.003))
    assert caution is not None and "0.555 against 0.601; by more than chance explains, p = 0.003" in caution
    assert "p < 0.0001 on the same deals" in (probability_caution(metrics(3e-9)) or "")
    assert probability_caution(metrics(0.2)) is None  # the same lead on too few deals to tell
    assert probability_caution(metrics(1e-6, baseline_auc=0.560)) is None  # plain, but under 0.01 of AUC
    assert probability_caution(metrics(float("nan"))) is None


def _two_rankers(rng: np.random.Generator, deals: int, model_noise: float,
                 other_noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    signal = rng.normal(size=deals)
    won = (rng.random(deals) < 1.0 / (1.0 + np.exp(-signal))).astype(np.float64)
    return (won, signal + model_noise * rng.normal(size=deals), signal + other_noise * rng.normal(size=deals))


def test_the_paired_auc_lead_is_the_difference_of_the_two_aucs_with_ties_counted_half() -> None:
    won = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    model = np.array([0.9, 0.2, 0.2, 0.1, 0.5, 0.6])  # the tie between a won and a lost deal counts half
    other = np.array([0.8, 0.7, 0.3, 0.1, 0.6, 0.2])
    lead = paired_auc_lead(won, model, other)
    assert lead["auc_lead"] == pytest.approx(roc_auc_score(won, other) - roc_auc_score(won, model))
    assert lead["auc_lead"] == pytest.approx(1.0 - 6.5 / 9)


def test_the_paired_auc_tests_standard_error_agrees_with_a_paired_bootstrap() -> None:
    won, model, other = _two_rankers(np.random.default_rng(3), 600, 1.5, 0.5)
    lead = paired_auc_lead(won, model, other)
    resample = np.random.default_rng(4)
    leads = []
    for _ in range(800):
        rows = resample.integers(0, won.size, won.size)
        leads.append(roc_auc_score(won[rows], other[rows]) - roc_auc_score(won[rows], model[rows]))
    assert lead["standard_error"] == pytest.approx(np.std(leads), rel=0.12)
    assert lead["auc_lead"] > 0 and lead["p_value"] < 0.05  # the second ranker is the better one


def test_the_paired_auc_test_rejects_equally_good_rankers_about_as_often_as_its_level_says() -> None:
    """Two rankers of the same quality on 200 deals, 600 times: the one-sided test at 5% should say "leads" about
    5% of the time (binomial sd 0.9%), and half the p-values fall under 0.5."""
    rng = np.random.default_rng(11)
    p_values = np.array([paired_auc_lead(*_two_rankers(rng, 200, 1.0, 1.0))["p_value"] for _ in range(600)])
    assert 0.025 <= float(np.mean(p_values < 0.05)) <= 0.08
    assert 0.44 <= float(np.mean(p_values < 0.5)) <= 0.56


def test_the_paired_auc_test_says_nothing_on_deals_all_won() -> None:
    lead = paired_auc_lead(np.ones(4), np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.4, 0.3, 0.2, 0.1]))
    assert all(v != v for v in lead.values())


def test_the_reversed_ranking_caution_fits_a_small_data_model_too() -> None:
    """Said of a regularised logistic regression (small-data mode) as of trees: it spoke of "its trees"."""
    caution = reversed_ranking_caution({"slope": -2.86}, 8)
    assert caution is not None and "ranks its latest 8 closed deals backwards (calibration slope -2.86)" in caution
    assert "trees" not in caution


def test_the_auc_interval_is_as_wide_as_a_bootstrap_says() -> None:
    won, model, _ = _two_rankers(np.random.default_rng(5), 500, 1.0, 1.0)
    low, high = auc_interval(won, model)
    resample = np.random.default_rng(6)
    aucs = [roc_auc_score(won[rows], model[rows]) for rows in (resample.integers(0, won.size, won.size)
                                                                for _ in range(800))]
    assert low < roc_auc_score(won, model) < high
    assert (high - low) / 2 == pytest.approx(1.96 * np.std(aucs), rel=0.12)
    assert all(end != end for end in auc_interval(np.ones(3), np.array([0.1, 0.2, 0.3])))  # NaN: all won


def test_the_ece_by_chance_is_the_ece_of_outcomes_drawn_from_the_probabilities_themselves() -> None:
    """What a perfectly calibrated model shows on these deals: each draw's outcomes are won with their own p."""
    p = np.random.default_rng(8).beta(2.0, 3.0, 300)
    draws = np.random.default_rng(0)
    by_hand = [expected_calibration_error((draws.random(p.size) < p).astype(np.float64), p) for _ in range(40)]
    chance = ece_by_chance(p, 40)
    assert chance["mean"] == pytest.approx(np.mean(by_hand), rel=1e-9)
    assert chance["p95"] == pytest.approx(np.quantile(by_hand, 0.95), rel=1e-9)
    # and it shrinks as deals are added: about 1 / sqrt(deals)
    assert ece_by_chance(np.tile(p, 16), 40)["mean"] < 0.4 * chance["mean"]


def test_a_ranking_the_holdout_cannot_tell_from_chance_gets_a_caution() -> None:
    """AUC 0.60 on 40 held-out deals: its 95% interval reaches 0.5, and the page showed it as any other figure."""
    def metrics(low: float | None) -> dict[str, dict[str, float | None]]:
        return {"model": {"brier": 0.24, "auc": 0.60, "auc_low_95": low, "auc_high_95": 0.78, "deals": 40},
                "prior_rate": {"brier": 0.245}}

    caution = probability_caution(metrics(0.42))
    assert caution == ("caution: on the holdout the model's ranking cannot be told from chance on 40 deals (AUC "
                       "0.600, 95% interval 0.420-0.780): do not work deals by p_win until more deals have closed "
                       "and the model is retrained")
    assert probability_caution(metrics(0.51)) is None  # told from chance, however narrowly
    assert probability_caution(metrics(None)) is None  # an older artifact: no interval kept


def test_a_ranking_at_chance_exactly_gets_the_chance_caution() -> None:
    """probability_caution: a ranking no better than chance is an AUC of at most 0.5, 0.5 itself included."""
    at_chance = {"model": {"brier": 0.19, "auc": 0.5}, "prior_rate": {"brier": 0.20}}
    caution = probability_caution(at_chance)
    assert caution is not None and "no better than chance (AUC 0.500)" in caution
    assert probability_caution({"model": {"brier": 0.19, "auc": 0.501}, "prior_rate": {"brier": 0.20}}) is None


def test_a_chance_ranking_with_worse_probabilities_says_both() -> None:
    both = {"model": {"brier": 0.25, "auc": 0.45}, "prior_rate": {"brier": 0.20}}
    caution = probability_caution(both)
    assert caution is not None and "no better than chance (AUC 0.450)" in caution
    assert "worse than the plain win rate's (Brier 0.250 against 0.200)" in caution


def test_chance_and_worse_probabilities_outrank_being_behind_the_baseline() -> None:
    """Behind the logistic baseline is said only of a model that ranks above chance with probabilities no worse
    than the win rate's: a chance ranking, or worse probabilities, get their own (stronger) caution."""
    baseline = {"logistic_regression": {"auc": 0.75}}
    chance = probability_caution({"model": {"brier": 0.19, "auc": 0.45}, "prior_rate": {"brier": 0.20}, **baseline})
    assert chance is not None and "no better than chance" in chance and "logistic regression" not in chance
    worse = probability_caution({"model": {"brier": 0.25, "auc": 0.6}, "prior_rate": {"brier": 0.20}, **baseline})
    assert worse is not None and "worse than the plain win rate's (Brier 0.250" in worse
    assert "logistic regression" not in worse


def test_a_flat_calibration_slope_is_no_reversed_ranking() -> None:
    """reversed_ranking_caution: backwards is a negative slope; 0 ranks nothing, which is not reversed."""
    assert reversed_ranking_caution({"slope": 0.0}, 50) is None
    assert reversed_ranking_caution({"slope": -0.01}, 50) is not None


def test_one_deal_on_a_side_leaves_the_aucs_error_unknown_not_zero() -> None:
    """DeLong's variance needs the spread of each side's placements: one won deal has none to measure. It was taken
    as 0, and a holdout of one won deal among four, ranked top by one model and bottom by the other, read "AUC 1.000
    within 1.000-1.000" and a lead "p < 0.0001"."""
    won = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    bottom = np.array([0.1, 0.5, 0.4, 0.3, 0.2])
    top = np.array([0.9, 0.5, 0.4, 0.3, 0.2])
    assert all(end != end for end in auc_interval(won, top))
    lead = paired_auc_lead(won, bottom, top)
    assert lead["auc_lead"] == pytest.approx(1.0)  # the lead itself is known
    assert lead["standard_error"] != lead["standard_error"] and lead["p_value"] != lead["p_value"]
    # Two deals a side measure a spread: an interval, and no certainty.
    won = np.array([1.0, 1.0, 0.0, 0.0])
    low, high = auc_interval(won, np.array([0.9, 0.3, 0.5, 0.1]))
    assert 0.0 <= low < 0.75 < high <= 1.0


def test_a_score_that_is_not_a_number_gives_no_interval_and_no_p_value() -> None:
    """A NaN p_win ranks nowhere: its AUC is unknown, and an unknown error is no evidence either way (it read as an
    interval of 0-1 and a p-value of 1)."""
    won = np.array([1.0, 0.0, 1.0, 0.0])
    p = np.array([0.9, float("nan"), 0.6, 0.2])
    assert all(end != end for end in auc_interval(won, p))
    assert paired_auc_lead(won, p, np.array([0.9, 0.1, 0.6, 0.2]))["p_value"] != paired_auc_lead(
        won, p, np.array([0.9, 0.1, 0.6, 0.2]))["p_value"]


def test_a_holdout_without_an_auc_is_told_its_ece_by_chance_and_no_interval() -> None:
    """A holdout of one outcome has no AUC and no interval (NaN in training's report until it is written as JSON):
    report.html printed "AUC nan within nan-nan (95%)"."""
    p = np.random.default_rng(2).beta(2.0, 3.0, 40)
    won = np.ones(40)
    low, high = auc_interval(won, p)
    chance = ece_by_chance(p)
    tested = {"auc": probability_metrics(won, p)["auc"], "auc_low_95": low, "auc_high_95": high,
              "ece_by_chance": chance["mean"], "ece_by_chance_p95": chance["p95"]}
    said = holdout_noise_text(tested)
    assert said is not None and "nan" not in said and "AUC" not in said
    assert f"a perfectly calibrated model would show ECE {chance['mean']:.3f} by chance alone" in said
    assert holdout_noise_text({**tested, "auc": 0.6, "auc_low_95": 0.42, "auc_high_95": 0.78}) == (
        f"on these deals: AUC 0.600 within 0.420-0.780 (95%); a perfectly calibrated model would show ECE "
        f"{chance['mean']:.3f} by chance alone (up to {chance['p95']:.3f} in 95 of 100 draws)")
    # As `dealscore train` reads it back from metadata.json, where NaN is null.
    written = holdout_noise_text({**tested, "auc": None, "auc_low_95": None, "auc_high_95": None})
    assert written == said
    assert holdout_noise_text({"auc": 0.6, "auc_low_95": 0.42, "auc_high_95": 0.78}) is None  # an older artifact


def test_a_p_value_under_the_tests_level_is_never_printed_at_it() -> None:
    """Two significant digits made 0.0496 "p = 0.05" in a caution that says the lead is more than chance explains
    (p below 0.05): a reader sees the verdict contradicted by its own figure."""
    assert p_value_text(0.0496) == "p < 0.05"
    caution = probability_caution({"model": {"brier": 0.230, "auc": 0.555}, "prior_rate": {"brier": 0.235},
                                   "logistic_regression": {"auc": 0.601, "auc_lead_p_value": 0.0496}})
    assert caution is not None and "by more than chance explains, p < 0.05 on the same deals" in caution
    assert (p_value_text(0.05), p_value_text(0.0504), p_value_text(0.049)) == ("p = 0.05", "p = 0.05", "p = 0.049")
    assert (p_value_text(0.003), p_value_text(3e-9)) == ("p = 0.003", "p < 0.0001")


def test_a_holdout_ranked_perfectly_gives_no_interval_rather_than_a_certain_one() -> None:
    """Three won deals all above three lost ones: every placement is 1 (and 0), DeLong's error 0, and the summary
    read "AUC 1.000 within 1.000-1.000" on six deals."""
    won = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    assert all(end != end for end in auc_interval(won, np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])))
    low, high = auc_interval(won, np.array([0.9, 0.8, 0.2, 0.3, 0.7, 0.1]))  # one pair the wrong way: an interval
    assert 0.0 <= low < 7 / 9 < high <= 1.0


def test_no_p_value_is_printed_as_unknown_not_nan() -> None:
    """One deal on a side of a holdout leaves no test: the training-quality bench printed "p = nan"."""
    assert p_value_text(float("nan")) == "p unknown"


def test_the_published_slice_auc_is_called_high_for_what_was_chosen_on_that_slice() -> None:
    """Trees' rounds are chosen on the slice; a drift term is fitted there and moves the order only beside a positive
    slope (at 0 or below the figure is the margin's); a small-data line with a plain Platt has nothing there."""
    plain, drifting = {"slope": 0.9, "drift": 0.0}, {"slope": 0.9, "drift": 0.4}
    assert slice_auc_caveat("gradient_boosting", plain) == "its rounds were chosen on them, so this reads a little high"
    assert slice_auc_caveat("gradient_boosting", drifting) == (
        "its rounds and drift term were chosen on them, so this reads a little high")
    assert slice_auc_caveat("regularised_logistic", drifting) == (
        "its drift term was chosen on them, so this reads a little high")
    assert slice_auc_caveat("regularised_logistic", plain) is None
    assert slice_auc_caveat("regularised_logistic", {"slope": -1.0, "drift": 0.4}) is None
