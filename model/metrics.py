"""Quality of win probabilities against outcomes: ranking, calibration, grades, lift (training and live)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr
from scipy.stats import rankdata
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from model.win_models import LinearWinModel

FloatArray = npt.NDArray[np.float64]


def _probability_bins(p: FloatArray, bins: int) -> npt.NDArray[np.int64]:
    """Each deal's equal-width probability bin, [0, 0.1) to [0.9, 1.0] for ten."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)


def expected_calibration_error(won: FloatArray, p: FloatArray, bins: int = 10) -> float:
    """Share-weighted mean |observed win rate - mean predicted p| over equal-width probability bins: a bin's share
    times |its wins / deals - its sum of p / deals| is |wins - sum of p| over all deals."""
    if p.size == 0:
        return 0.0
    which = _probability_bins(p, bins)
    gaps = np.bincount(which, weights=won, minlength=bins) - np.bincount(which, weights=p, minlength=bins)
    return float(np.abs(gaps).sum() / p.size)


def calibration_curve(won: FloatArray, p: FloatArray, bins: int = 10) -> list[dict[str, float]]:
    which = _probability_bins(p, bins)
    curve = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            # (b / bins, not linspace's edges: those print as 0.30000000000000004 in a report)
            curve.append({"bin_low": b / bins, "bin_high": (b + 1) / bins,
                          "mean_p": float(p[inside].mean()), "win_rate": float(won[inside].mean()),
                          "deals": int(inside.sum())})
    return curve


def top_decile_lift(won: FloatArray, score: FloatArray) -> float:
    if won.size == 0 or won.mean() == 0:
        return float("nan")
    k = max(1, int(round(0.1 * won.size)))
    # Deals tied with the k-th score share the remaining places: their mean outcome counts, not that of
    # whichever come first in the data. (A constant score, the prior baseline, took the holdout's earliest
    # 10% and showed a lift of 0.22 on bank marketing, whose win rate climbs over the holdout; it is 1.)
    threshold = np.sort(score)[::-1][k - 1]
    above, tied = score > threshold, score == threshold
    wins = won[above].sum() + (k - int(above.sum())) * won[tied].mean()
    return float(wins / k / won.mean())


def probability_metrics(won: FloatArray, p: FloatArray) -> dict[str, float]:
    both_classes = 0 < won.sum() < won.size
    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    return {
        "auc": float(roc_auc_score(won, p)) if both_classes else float("nan"),
        "brier": float(brier_score_loss(won, p)),
        "log_loss": float(log_loss(won, clipped, labels=[0, 1])),
        "ece": expected_calibration_error(won, p),
        "top_decile_lift": top_decile_lift(won, p),
        "mean_p": float(p.mean()),
        "win_rate": float(won.mean()),
        "deals": int(won.size),
    }


def grade_table(won: FloatArray, grades: list[str], realised_value: FloatArray) -> list[dict[str, Any]]:
    """Per letter class: deals, win rate, share of the realised (won) value."""
    labels = np.asarray(grades)
    realised = np.where(won > 0, np.nan_to_num(realised_value), 0.0)
    total = realised.sum()
    rows = []
    for grade in ("A", "B", "C", "D"):
        inside = labels == grade
        if not inside.any():
            continue
        rows.append({"grade": grade, "deals": int(inside.sum()), "share_of_deals": float(inside.mean()),
                     "win_rate": float(won[inside].mean()),
                     "share_of_realised_value": float(realised[inside].sum() / total) if total > 0 else 0.0})
    return rows


# Held-out deals below which a summary (`dealscore train`, report.html) calls its figures rough: on 200, a perfectly
# calibrated model's ECE is about 0.07 by chance alone (0.14 on 50, 0.26 on 12, 0.024 on 1,738: probabilities drawn
# from Beta(2, 3), 300 draws each).
SOLID_HOLDOUT = 200


# A Brier score this much above the plain win rate's is worse, not noise: a review saw a caution for 0.15627
# against 0.15587 on 400 deals, printed as "0.156 against 0.156".
BRIER_MARGIN = 0.001


BASELINE_AUC_MARGIN = 0.05  # behind the logistic baseline by more than this: a caution, tested or not
# Behind it by at least this much, and by more than chance on the same deals explains (one-sided p below
# BASELINE_LEAD_P): a caution too. Below a hundredth of AUC the order a manager works barely changes.
BASELINE_AUC_MATERIAL = 0.01
BASELINE_LEAD_P = 0.05


def _auc_placements(won: FloatArray, p: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Each won deal's share of lost deals ranked below it, and each lost deal's share of won deals ranked above
    it, ties counted half (their means are the AUC): DeLong's placement values, from midranks (Sun and Xu, IEEE
    Signal Processing Letters, 2014)."""
    positive = won > 0
    wins, losses = int(positive.sum()), int((~positive).sum())
    all_ranks = rankdata(p)
    won_place = (all_ranks[positive] - rankdata(p[positive])) / losses
    lost_place = 1.0 - (all_ranks[~positive] - rankdata(p[~positive])) / wins
    return won_place, lost_place


def _placement_variance(won_place: FloatArray, lost_place: FloatArray) -> float:
    """The AUC's variance by DeLong's method; NaN with one deal on a side, whose placements have no spread to measure
    (taken as 0, one won deal ranked top read "AUC 1.000 within 1.000-1.000")."""
    if won_place.size < 2 or lost_place.size < 2:
        return float("nan")
    return float(np.var(won_place, ddof=1) / won_place.size + np.var(lost_place, ddof=1) / lost_place.size)


def auc_interval(won: FloatArray, p: FloatArray, z: float = 1.96) -> tuple[float, float]:
    """The AUC's 95% interval (z = 1.96) by DeLong's standard error, clipped to [0, 1]; NaN when the deals are all
    won or all lost, or one alone is won or lost, or the error comes out 0. It takes deals as independent, which
    deals of one client or month are not."""
    if not 0 < int((won > 0).sum()) < won.size:
        return float("nan"), float("nan")
    won_place, lost_place = _auc_placements(won, p)
    auc, error = float(won_place.mean()), float(np.sqrt(_placement_variance(won_place, lost_place)))
    # An error of 0 is no certainty: three won deals all above three lost ones have every placement 1 (and 0), and
    # read "AUC 1.000 within 1.000-1.000" (a review); DeLong's estimate says nothing there. (max and min would also
    # have made a NaN's ends 0 and 1.)
    if not error > 0 or auc != auc:
        return float("nan"), float("nan")
    return max(0.0, auc - z * error), min(1.0, auc + z * error)


def paired_auc_lead(won: FloatArray, p_model: FloatArray, p_other: FloatArray) -> dict[str, float]:
    """How far another model's AUC leads ours on the same deals, and whether chance explains it: DeLong, DeLong
    and Clarke-Pearson's paired test (Biometrics, 1988). Paired, because both rank the same deals: two separate
    intervals overlap long after the difference is plain. `p_value` is one-sided (the other model ranks better).
    It assumes independent deals, which deals of one client or month are not: read it as a guide.
    NaN throughout when the deals are all won or all lost; the error and p-value NaN when one alone is won or
    lost."""
    if not 0 < int((won > 0).sum()) < won.size:
        return {"auc_lead": float("nan"), "standard_error": float("nan"), "p_value": float("nan")}
    model_won, model_lost = _auc_placements(won, p_model)
    other_won, other_lost = _auc_placements(won, p_other)
    lead = float(other_won.mean() - model_won.mean())
    error = float(np.sqrt(_placement_variance(other_won - model_won, other_lost - model_lost)))
    if error > 0:
        p_value = float(ndtr(-lead / error))
    elif error == 0:  # the two rank every pair alike: no evidence either way unless they differ
        p_value = 0.0 if lead > 0 else 1.0
    else:  # unknown (one deal on a side, a NaN score): no p-value, where 1.0 had read as evidence of no lead
        p_value = float("nan")
    return {"auc_lead": lead, "standard_error": error, "p_value": p_value}


def p_value_text(p_value: float) -> str:
    """A p-value as a reader takes it: "p = 0.03", or "p < 0.0001" where printing it would read 0 (a complement
    1 - p rounds to 0 in floating point), or "p < 0.05" where two digits would round it up to the test's level."""
    if p_value != p_value:  # one deal on a side of the holdout: no test (the bench printed "p = nan")
        return "p unknown"
    if p_value < 1e-4:
        return "p < 0.0001"
    text = f"{p_value:.2g}"
    if p_value < BASELINE_LEAD_P <= float(text):  # 0.0496 read "p = 0.05" beside "more than chance explains"
        return f"p < {BASELINE_LEAD_P:g}"
    return f"p = {text}"


def ece_by_chance(p: FloatArray, draws: int = 200) -> dict[str, float]:
    """The ECE a perfectly calibrated model would show on these deals by chance alone (mean and 95th
    percentile of `draws` simulated outcome sets, each deal won with its own p): an ECE means little beside a goal
    until set beside this (0.14 on 50 deals, 0.024 on 1,738)."""
    if p.size == 0 or draws <= 0:
        return {"mean": float("nan"), "p95": float("nan")}
    rng = np.random.default_rng(0)
    which = _probability_bins(p, 10)
    expected = np.bincount(which, weights=p, minlength=10)
    # expected_calibration_error per draw, with the bins (which depend on p alone) found once: 200 draws on the
    # 200,000 held-out deals of a 1M-deal training took 6 s, this 0.2 s.
    values = [float(np.abs(np.bincount(which, weights=(rng.random(p.size) < p).astype(np.float64), minlength=10)
                           - expected).sum() / p.size) for _ in range(draws)]
    return {"mean": float(np.mean(values)), "p95": float(np.quantile(values, 0.95))}


def holdout_noise_text(tested: Mapping[str, Any]) -> str | None:
    """What the holdout's size leaves of the model's AUC and ECE, for `dealscore train` and report.html: the
    AUC's 95% interval, and the ECE a perfectly calibrated model would show on these deals by chance alone
    (None for older artifacts, which have neither)."""
    low, high, chance = tested.get("auc_low_95"), tested.get("auc_high_95"), tested.get("ece_by_chance")
    if chance is None:
        return None
    # A holdout of one outcome has no AUC (NaN in the report, null once written as JSON): the page said "AUC nan".
    auc = tested.get("auc")
    known = all(value is not None and value == value for value in (auc, low, high))
    interval = f"AUC {auc:.3f} within {low:.3f}-{high:.3f} (95%); " if known else ""
    return (f"on these deals: {interval}a perfectly calibrated model would show ECE {chance:.3f} by chance alone (up "
            f"to {tested.get('ece_by_chance_p95', chance):.3f} in 95 of 100 draws)")


def reversed_ranking_caution(calibration: Mapping[str, Any] | None, calibration_deals: int | None) -> str | None:
    """A caution when the published model's Platt slope is negative: it ranks its own latest deals (the
    calibration slice) backwards, so what it learnt from earlier deals reversed later, and the holdout figures,
    measured on the evaluation model, do not describe it. (Bank marketing with a clients table published such a
    model, slope -2.24, while its evaluation model's was positive.) The words fit either engine: a small-data
    model (a regularised logistic regression, 20 won and 20 lost deals: slope -2.86) was said to have trees."""
    slope = (calibration or {}).get("slope")
    if slope is None or not slope < 0:
        return None
    return (f"caution: the published model ranks its latest {calibration_deals or 0:,} closed deals backwards "
            f"(calibration slope {slope:.2f}): what it learnt from earlier deals reversed later, and the "
            "holdout figures describe the evaluation model, not this one; retrain on more deals, or exclude "
            "columns, before working deals by p_win")


def slice_auc_caveat(engine: str | None, calibration: Mapping[str, Any] | None) -> str | None:
    """Why the published model's AUC on its own calibration slice (calibration_slice_auc) reads a little high: what
    orders its deals and was chosen on those same deals (the trees' rounds, by early stopping there; the drift term
    of a Platt with a positive slope). None where nothing was: a small-data model's line is fitted on the deals
    before, and a plain Platt keeps its order, so the figure is as out of sample as the holdout's."""
    chosen = [] if engine == LinearWinModel.kind else ["rounds"]
    if (calibration or {}).get("drift") and ((calibration or {}).get("slope") or 0.0) > 0:
        chosen.append("drift term")
    if not chosen:
        return None
    verb = "was" if chosen == ["drift term"] else "were"
    return f"its {' and '.join(chosen)} {verb} chosen on them, so this reads a little high"


def joined_cautions(*cautions: str | None) -> str | None:
    """Several cautions as one text (None when there is none)."""
    said = [c for c in cautions if c]
    return " ".join(said) if said else None


def probability_caution(metrics: Mapping[str, Any]) -> str | None:
    """A caution when the model's holdout probabilities are worse than the plain win rate's (Brier), or its
    ranking no better than chance (AUC at most 0.5, or an AUC whose 95% interval reaches 0.5): it happens with
    little data, where a calibration slice of a few dozen deals over- or under-stretches. Kept in the artifact
    (metadata, report) and shown by `dealscore train` and GET /v1/model."""
    model, prior = metrics.get("model") or {}, metrics.get("prior_rate") or {}
    brier, base, auc = model.get("brier"), prior.get("brier"), model.get("auc")
    worse = (brier is not None and base is not None and brier == brier and base == base
             and brier > base + BRIER_MARGIN)
    chance = auc is not None and auc == auc and auc <= 0.5
    # Above 0.5, but not by more than the holdout's size explains: maven's 0.542 on 1,342 deals is told from
    # chance (interval 0.510-0.573); 0.60 on 40 deals is not (about 0.42-0.78).
    low = model.get("auc_low_95")
    untold = not chance and auc is not None and low is not None and low == low and low <= 0.5
    logistic = metrics.get("logistic_regression") or {}
    baseline_auc, lead_p = logistic.get("auc"), logistic.get("auc_lead_p_value")
    # The regression's lead over the model (NaN when either AUC is unknown: no comparison holds).
    gap = (baseline_auc - auc) if auc is not None and baseline_auc is not None else float("nan")
    far_behind = gap > BASELINE_AUC_MARGIN
    # A smaller lead counts when the paired test on the same deals says chance does not explain it (a model at
    # 0.555 against the regression's 0.601 had said nothing).
    tested = lead_p is not None and lead_p < BASELINE_LEAD_P  # False for NaN
    tested_behind = tested and gap >= BASELINE_AUC_MATERIAL
    if not chance and (far_behind or tested_behind) and not worse:
        # The engine found little that held over time where a plain regression did (the bank data with its
        # clients table: AUC 0.502 against 0.703, p_win nearly one value): said, not left to the report's table.
        tested_note = (f"; by more than chance explains, {p_value_text(float(lead_p))} on the same deals"
                       if tested and lead_p is not None else "")
        return (f"caution: on the holdout the model ranks deals worse than a plain logistic regression fitted on "
                f"the same split (AUC {auc:.3f} against {baseline_auc:.3f}{tested_note}): compare the report's "
                "baselines and try excluding columns before working deals by p_win")
    if not (worse or chance or untold):
        return None
    brier_part = (f"the model's probabilities are worse than the plain win rate's (Brier {brier:.3f} against "
                  f"{base:.3f})") if worse else ""
    if chance or untold:
        ranking = (f"the model ranks deals no better than chance (AUC {auc:.3f})" if chance else
                   f"the model's ranking cannot be told from chance on {int(model.get('deals') or 0):,} deals (AUC "
                   f"{auc:.3f}, 95% interval {low:.3f}-{model.get('auc_high_95', float('nan')):.3f})")
        return (f"caution: on the holdout {ranking}{' and ' + brier_part if worse else ''}: do not work deals by "
                "p_win until more deals have closed and the model is retrained")
    return (f"caution: on the holdout {brier_part}; with this little data, read p_win as a ranking, not as a "
            "chance, and retrain when more deals have closed")
