"""Probability calibration on the latest slice of the fitting deals: Platt scaling that follows drift.

Plain Platt maps the engine's margin to a probability at the win-rate level of the calibration slice; when
the team's win rate keeps moving after that slice (real exports drift by several points a year), every
later probability is off by the move. A third term on the log-odds of the recent win rate (an as-of
feature every deal has) lets the slice itself say how much a moving rate moves deals; its weight is kept
within [0, 1], so a slice whose rate wobbles against its outcomes falls back to plain Platt instead of
inverting the drift.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from model.win_models import PlattCalibration, rate_log_odds

FloatArray = npt.NDArray[np.float64]


def fit_calibration(margin: FloatArray, won: FloatArray, recent_rate: FloatArray | None,
                    drift_column: int = -1) -> PlattCalibration:
    """(slope, intercept[, drift]) minimising the slice's log loss; no drift term without a recent rate."""
    y = np.asarray(won, dtype=np.float64)
    if recent_rate is None or drift_column < 0:
        drift_input = np.zeros_like(margin)
        centre = 0.0
        bounds = [(None, None), (None, None), (0.0, 0.0)]
    else:
        log_odds = rate_log_odds(recent_rate)
        centre = float(log_odds.mean())
        drift_input = log_odds - centre
        bounds = [(None, None), (None, None), (0.0, 1.0)]
    inputs = np.column_stack([margin, np.ones_like(margin), drift_input])

    def loss_and_gradient(w: FloatArray) -> tuple[float, FloatArray]:
        z = inputs @ w
        loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # the sigmoid, without overflow
        return loss, inputs.T @ (p - y) / y.size

    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    start = np.array([1.0, float(np.log(rate / (1.0 - rate))), 0.0])
    fitted = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": 500, "gtol": 1e-10})
    slope, intercept, drift = (float(v) for v in fitted.x)
    if drift == 0.0:
        return PlattCalibration(slope=slope, intercept=intercept)
    return PlattCalibration(slope=slope, intercept=intercept, drift=drift, drift_centre=centre,
                            drift_column=drift_column)
