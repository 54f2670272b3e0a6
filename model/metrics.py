"""Quality of win probabilities against outcomes: ranking, calibration, grades, lift (training and live)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr
from scipy.stats import rankdata
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

FloatArray = npt.NDArray[np.float64]


def expected_calibration_error(won: FloatArray, p: FloatArray, bins: int = 10) -> float:
    """Share-weighted mean |observed win rate - mean predicted p| over equal-width probability bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(won[inside].mean() - p[inside].mean())
    return float(total)


def calibration_curve(won: FloatArray, p: FloatArray, bins: int = 10) -> list[dict[str, float]]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
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


# A Brier score this much above the plain win rate's is worse, not noise: a review saw a caution for 0.15627
# against 0.15587 on 400 deals, printed as "0.156 against 0.156".
BRIER_MARGIN = 0.001


BASELINE_AUC_MARGIN = 0.05  # behind the logistic baseline by more than this: a caution, tested or not
# Behind it by at least this much, and by more than chance on the same deals explains (one-sided p below
# BASELINE_LEAD_P): a caution too. Below a hundredth of AUC the order a manager works barely changes.
BASELINE_AUC_MATERIAL = 0.01
BASELINE_LEAD_P = 0.05


def paired_auc_lead(won: FloatArray, p_model: FloatArray, p_other: FloatArray) -> dict[str, float]:
    """How far another model's AUC leads ours on the same deals, and whether chance explains it: DeLong, DeLong
    and Clarke-Pearson's paired test (Biometrics, 1988), with the placement values computed from midranks (Sun
    and Xu, IEEE Signal Processing Letters, 2014). Paired, because both rank the same deals: two separate
    intervals overlap long after the difference is plain. `p_value` is one-sided (the other model ranks better).
    It assumes independent deals, which deals of one client or month are not: read it as a guide.
    NaN throughout when the deals are all won or all lost."""
    positive = won > 0
    wins, losses = int(positive.sum()), int((~positive).sum())
    if wins == 0 or losses == 0:
        return {"auc_lead": float("nan"), "standard_error": float("nan"), "p_value": float("nan")}
    placements = []
    aucs = []
    for p in (p_model, p_other):
        all_ranks = rankdata(p)
        among_wins, among_losses = rankdata(p[positive]), rankdata(p[~positive])
        # A won deal's share of lost deals ranked below it, and a lost deal's share of won deals above it.
        won_place = (all_ranks[positive] - among_wins) / losses
        lost_place = 1.0 - (all_ranks[~positive] - among_losses) / wins
        aucs.append(float(won_place.mean()))
        placements.append((won_place, lost_place))
    (model_won, model_lost), (other_won, other_lost) = placements
    variance = (np.var(other_won - model_won, ddof=1) / wins if wins > 1 else 0.0) + (
        np.var(other_lost - model_lost, ddof=1) / losses if losses > 1 else 0.0)
    lead = aucs[1] - aucs[0]
    error = float(np.sqrt(max(variance, 0.0)))
    if error > 0:
        p_value = float(ndtr(-lead / error))
    else:  # the two rank every pair alike (or there is one deal a side): no evidence either way unless they differ
        p_value = 0.0 if lead > 0 else 1.0
    return {"auc_lead": lead, "standard_error": error, "p_value": p_value}


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


def joined_cautions(*cautions: str | None) -> str | None:
    """Several cautions as one text (None when there is none)."""
    said = [c for c in cautions if c]
    return " ".join(said) if said else None


def probability_caution(metrics: Mapping[str, Any]) -> str | None:
    """A caution when the model's holdout probabilities are worse than the plain win rate's (Brier), or its
    ranking no better than chance (AUC at most 0.5): it happens with little data, where a calibration slice of a
    few dozen deals over- or under-stretches. Kept in the artifact (metadata, report) and shown by `dealscore
    train` and GET /v1/model."""
    model, prior = metrics.get("model") or {}, metrics.get("prior_rate") or {}
    brier, base, auc = model.get("brier"), prior.get("brier"), model.get("auc")
    worse = (brier is not None and base is not None and brier == brier and base == base
             and brier > base + BRIER_MARGIN)
    chance = auc is not None and auc == auc and auc <= 0.5
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
        tested_note = f"; by more than chance explains, p = {lead_p:.2g} on the same deals" if tested else ""
        return (f"caution: on the holdout the model ranks deals worse than a plain logistic regression fitted on "
                f"the same split (AUC {auc:.3f} against {baseline_auc:.3f}{tested_note}): compare the report's "
                "baselines and try excluding columns before working deals by p_win")
    if not (worse or chance):
        return None
    brier_part = (f"the model's probabilities are worse than the plain win rate's (Brier {brier:.3f} against "
                  f"{base:.3f})") if worse else ""
    if chance:
        ranking = f"the model ranks deals no better than chance (AUC {auc:.3f})"
        return (f"caution: on the holdout {ranking}{' and ' + brier_part if worse else ''}: do not work deals by "
                "p_win until more deals have closed and the model is retrained")
    return (f"caution: on the holdout {brier_part}; with this little data, read p_win as a ranking, not as a "
            "chance, and retrain when more deals have closed")
