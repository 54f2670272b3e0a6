"""Probability calibration on the latest slice of the fitting deals: Platt scaling that follows drift.

Plain Platt maps the engine's margin to a probability at the win-rate level of the calibration slice; when
the team's win rate keeps moving after that slice (real exports drift by several points a year), every
later probability is off by the move. A third term on the log-odds of the recent win rate (an as-of
feature every deal has) lets the slice itself say how much a moving rate moves deals. Its weight stays
within [0, 1], so a slice whose rate runs against its outcomes gets plain Platt, and no slice gets a trend
amplified beyond the rate's own move. A slice is too short to measure the weight well (on the synthetic CRM
it lands on 0 or 1 nearly always): it says which way the slice leans, not how strongly.

The term was once kept only when the slice gave evidence for it (a likelihood-ratio test at 5%). A slice is
too short for a drift to show inside it, so the test dropped the term where it mattered most: on the time-
ordered holdouts the evaluation model then lagged a rising win rate. Without the test, holdout ECE went
0.0458 -> 0.0294 on it_deals and 0.0156 -> 0.0120 on 100k synthetic deals (bank and maven unchanged), and
on seven 6k-deal synthetic seeds 0.028-0.070 -> 0.028-0.062 and on five 20k ones 0.025-0.046 -> 0.014-0.030,
none worse (`python -m bench training_quality`; the seeds by hand, from each artifact's holdout.csv).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from model.errors import InsufficientData
from model.win_models import PlattCalibration, rate_log_odds

FloatArray = npt.NDArray[np.float64]

# The slope has a Gaussian prior N(0, SLOPE_PRIOR_VARIANCE) (scikit-learn's LogisticRegression(C=10) penalises
# its coefficient alike). The engine's margin is already a log-odds, so a slope beyond about 6 (two prior sd)
# needs a slice that really shows it. That only bites where the engine hardly moved from the base rate: its
# trees are early-stopped on this very slice, so a weak engine's margin lines up with the slice's noise, and
# without the prior Platt stretched it (maven_crm: slope 8.6, holdout ECE 0.046 and a Brier score worse than
# the prior rate's; with it, over training seeds 0-9, ECE mean 0.0416 -> 0.0318). Strong margins outweigh
# it: the other benchmark sets moved by 0.001 or less (figures in docs/domain.md).
SLOPE_PRIOR_VARIANCE = 10.0
# The drift weight keeps the light penalty the slope had before (C=1e4): it is bounded to [0, 1] anyway.
_DRIFT_C = 1e4
# Below this many deals a slice gets plain Platt: on slices whose outcomes ignore the recent rate the fitted
# weight averaged 0.27 at 60 deals (a tenth of them at the full 1.0), 0.13 at 200, 0.08 at 500 and 0.05 at
# 1,000 (tests/test_calibration.py). Small-data mode's slices fall below it; the bench's all lie above.
MIN_DRIFT_SLICE = 500


def fit_calibration(margin: FloatArray, won: FloatArray, recent_rate: FloatArray | None,
                    drift_column: int = -1) -> PlattCalibration:
    """(slope, intercept[, drift]) minimising the slice's penalised log loss; no drift term without a
    recent rate or on a slice of fewer than MIN_DRIFT_SLICE deals."""
    y = np.asarray(won, dtype=np.float64)
    wins = int(y.sum())
    if wins == 0 or wins == y.size:
        raise InsufficientData(
            f"the calibration slice (the latest {y.size:,} closed deals of the fitting period) holds only "
            f"{'won' if wins else 'lost'} deals; calibrating a probability needs both outcomes there (add closed "
            f"deals of the other outcome from that period, or move the slice with another --holdout-share)")
    if recent_rate is None or drift_column < 0 or y.size < MIN_DRIFT_SLICE:
        _, plain = _fit(margin, y, None)
        return PlattCalibration(slope=plain[0], intercept=plain[1])
    log_odds = rate_log_odds(recent_rate)
    centre = float(log_odds.mean())
    _, drifting = _fit(margin, y, log_odds - centre)
    if drifting[2] == 0.0:  # at its bound: plain Platt, said as such
        return PlattCalibration(slope=drifting[0], intercept=drifting[1])
    return PlattCalibration(slope=drifting[0], intercept=drifting[1], drift=drifting[2], drift_centre=centre,
                            drift_column=drift_column)


def _fit(margin: FloatArray, y: FloatArray, drift_input: FloatArray | None) -> tuple[float, tuple[float, ...]]:
    """The penalised fit with or without the drift term: its mean log loss (unpenalised) and weights."""
    columns = [margin, np.ones_like(margin)] + ([drift_input] if drift_input is not None else [])
    inputs = np.column_stack(columns)
    # Per deal, as the objective is a mean log loss; the intercept is not penalised.
    penalised = np.array([1.0 / SLOPE_PRIOR_VARIANCE, 0.0, 1.0 / _DRIFT_C][:inputs.shape[1]]) / y.size

    def log_loss(w: FloatArray) -> float:
        z = inputs @ w
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    def objective(w: FloatArray) -> tuple[float, FloatArray]:
        p = 0.5 * (1.0 + np.tanh(0.5 * (inputs @ w)))  # the sigmoid, without overflow
        return (log_loss(w) + 0.5 * float(penalised @ (w * w)),
                inputs.T @ (p - y) / y.size + penalised * w)

    rate = float(y.mean())
    start = np.array([1.0, float(np.log(rate / (1.0 - rate))), 0.0][:inputs.shape[1]])
    bounds = [(None, None), (None, None), (0.0, 1.0)][:inputs.shape[1]]
    fitted = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": 1000, "gtol": 1e-10})
    # A finite result is kept even when L-BFGS-B reports an abnormal line search: at this tolerance it does
    # so next to the optimum of this convex objective (plain Platt still equals scikit-learn's to 1e-8).
    if not fitted.success and not np.all(np.isfinite(fitted.x)):
        raise RuntimeError(f"probability calibration did not converge: {fitted.message}")
    return log_loss(fitted.x), tuple(float(v) for v in fitted.x)
