"""Probability calibration on the latest slice of the fitting deals: Platt scaling that follows drift.

Plain Platt maps the engine's margin to a probability at the win-rate level of the calibration slice; when
the team's win rate keeps moving after that slice (real exports drift by several points a year), every
later probability is off by the move. A third term on the log-odds of the recent win rate (an as-of
feature every deal has) lets the slice itself say how much a moving rate moves deals. The term is kept
only when the slice gives evidence for it (a likelihood-ratio test against plain Platt), and its weight
stays within [0, 1], so a small or noisy slice, or one whose rate wobbles against its outcomes, gets
plain Platt instead of an extrapolated trend.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from model.errors import InsufficientData
from model.win_models import PlattCalibration, rate_log_odds

FloatArray = npt.NDArray[np.float64]

# The slope and drift weight are penalised as scikit-learn's LogisticRegression(C=1e4) penalises its
# coefficients (what Platt used here before): enough to keep a slice the margin separates perfectly finite.
_C = 1e4
# Twice the log-likelihood gained by the drift term must exceed this to keep it: chi-square with one degree
# of freedom at 5% (conservative for a weight bounded at 0, whose null distribution is half that mass).
_DRIFT_EVIDENCE = 3.84


def fit_calibration(margin: FloatArray, won: FloatArray, recent_rate: FloatArray | None,
                    drift_column: int = -1) -> PlattCalibration:
    """(slope, intercept[, drift]) minimising the slice's penalised log loss; no drift term without a
    recent rate, or without evidence for it on the slice."""
    y = np.asarray(won, dtype=np.float64)
    wins = int(y.sum())
    if wins == 0 or wins == y.size:
        raise InsufficientData(
            f"the calibration slice (the latest {y.size:,} closed deals of the fitting period) holds only "
            f"{'won' if wins else 'lost'} deals; calibrating a probability needs both outcomes there (add more "
            f"closed deals, or, from Python, raise TrainConfig.calibration_share)")
    plain_loss, plain = _fit(margin, y, None)
    if recent_rate is None or drift_column < 0:
        return PlattCalibration(slope=plain[0], intercept=plain[1])
    log_odds = rate_log_odds(recent_rate)
    centre = float(log_odds.mean())
    drift_loss, drifting = _fit(margin, y, log_odds - centre)
    if 2.0 * y.size * (plain_loss - drift_loss) <= _DRIFT_EVIDENCE:
        return PlattCalibration(slope=plain[0], intercept=plain[1])
    return PlattCalibration(slope=drifting[0], intercept=drifting[1], drift=drifting[2], drift_centre=centre,
                            drift_column=drift_column)


def _fit(margin: FloatArray, y: FloatArray, drift_input: FloatArray | None) -> tuple[float, tuple[float, ...]]:
    """The penalised fit with or without the drift term: its mean log loss (unpenalised) and weights."""
    columns = [margin, np.ones_like(margin)] + ([drift_input] if drift_input is not None else [])
    inputs = np.column_stack(columns)
    penalised = np.array([1.0, 0.0, 1.0][:inputs.shape[1]]) / (_C * y.size)  # not the intercept

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
