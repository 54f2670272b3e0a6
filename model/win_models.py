"""Win-probability engines: gradient-boosted trees, or a regularised linear model for small data.

Both give a raw margin (log-odds before calibration) and per-feature contributions to it, so the
scorer can explain any deal the same way whichever engine is live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from model.leaf_lookup import SingleRowLeaves
from model.tree_paths import PathCredits
from model.unsent_paths import UnsentPaths

FloatArray = npt.NDArray[np.float64]
# (deals, features): True where a deal did not send an input the trees always saw (model.features.unsent_features);
# None when every deal sent everything.
Unsent = npt.NDArray[np.bool_] | None

# Up to this many deals, leaf indices come from LightGBM's single-row fast path, one call per deal;
# above it, one `predict` call. Measured on the demo model: 1 deal 13 vs 50 us, 8 deals 65 vs 74 us,
# 16 deals 105 vs 126 us but 178 vs 131 us with cold caches (as in a server).
_SINGLE_ROW_MAX = 8


class WinModel(Protocol):
    kind: str

    def margin(self, features: FloatArray, unsent: Unsent = None) -> FloatArray: ...

    def contributions(self, features: FloatArray, unsent: Unsent = None) -> FloatArray:
        """(n, n_features + 1): each feature's push on the margin, then the base value."""
        ...

    def margin_and_contributions(self, features: FloatArray, unsent: Unsent = None) -> tuple[FloatArray, FloatArray]:
        """Both at once, from one pass over the engine where it can."""
        ...


class TreeEnsemble:
    """A LightGBM booster, read the quick way for a few deals: their leaves from the single-row fast path
    (model/leaf_lookup.py), summed over per-leaf tables (model/tree_paths.py); a batch's from `predict`.
    Predicts with one native thread (a worker must not fight its siblings). The tables and fast-path
    set-ups are built on first use and not pickled: an artifact holds the booster only. Deals that did not
    send an input the trees always saw have it averaged out (model/unsent_paths.py).
    """

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        self._paths: PathCredits | None = None
        self._unsent_paths: UnsentPaths | None = None
        self._single_row = SingleRowLeaves(booster)

    def __getstate__(self) -> dict[str, Any]:
        return {"booster": self.booster}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.booster = state["booster"]
        self._paths = None
        self._unsent_paths = None
        self._single_row = SingleRowLeaves(self.booster)

    @property
    def paths(self) -> PathCredits:
        # Two threads may both build it on first use; both results are equal, so no lock is needed.
        if self._paths is None:
            self._paths = PathCredits.of_booster(self.booster)
        return self._paths

    def _average_out(self, features: FloatArray, unsent: Unsent, margin: FloatArray,
                     contributions: FloatArray | None = None) -> None:
        """Overwrite the margins (and contributions) of the deals that did not send some inputs by the trees'
        leaves weighted over the branches those inputs would have decided."""
        if unsent is None:
            return
        rows = np.flatnonzero(unsent.any(axis=1))
        if rows.size == 0:
            return
        if self._unsent_paths is None:  # as for `paths`: a race builds two equal tables
            self._unsent_paths = UnsentPaths.of_booster(self.booster)
        weights = self._unsent_paths.leaf_weights(features[rows], unsent[rows])
        # Deal by deal over the leaves it reaches (a few of each tree): a deal's score does not depend on the deals
        # scored beside it, to the last bit (a dense BLAS product over the batch blocks by its size).
        for row, leaf_weights in zip(rows.tolist(), weights, strict=True):
            reached = leaf_weights.nonzero()[0]
            share = leaf_weights[reached]
            margin[row] = share @ self.paths.leaf_values[reached]
            if contributions is not None:  # the base value (last column) is the same for every deal
                contributions[row, :-1] = share @ self.paths.credits[reached]

    def _few(self, features: FloatArray) -> bool:
        return features.shape[0] <= _SINGLE_ROW_MAX and self._single_row.available

    def _leaves(self, features: FloatArray) -> npt.NDArray[Any]:
        if self._few(features):
            return self._single_row(features)
        return np.asarray(self.booster.predict(features, pred_leaf=True, num_threads=1))

    def raw(self, features: FloatArray, unsent: Unsent = None) -> FloatArray:
        """The booster's raw output: a classifier's margin, a regression's prediction. For a few deals, the sum
        of their leaves' outputs (equal to `predict`'s to the last bit, tests/test_tree_paths.py): `predict`
        sets up a predictor on every call, about 0.1 ms, most of a single deal's cost."""
        if self._few(features):
            out = self.paths.margin(self._single_row(features))
        else:
            out = np.asarray(self.booster.predict(features, raw_score=True, num_threads=1), dtype=np.float64)
        self._average_out(features, unsent, out)
        return out


class TreeWinModel(TreeEnsemble):
    """Gradient-boosted trees' margin. Contributions are decision-path credits (model/tree_paths.py)."""

    kind = "gradient_boosting"

    def margin(self, features: FloatArray, unsent: Unsent = None) -> FloatArray:
        # For a batch LightGBM's raw score, about half the cost of leaf indices (training's bulk).
        return self.raw(features, unsent)

    def contributions(self, features: FloatArray, unsent: Unsent = None) -> FloatArray:
        return self.margin_and_contributions(features, unsent)[1]

    def margin_and_contributions(self, features: FloatArray, unsent: Unsent = None) -> tuple[FloatArray, FloatArray]:
        # One engine call: the margin summed from the same leaves equals the raw score to the last bit
        # (tests/test_tree_paths.py).
        leaves = self._leaves(features)
        margin, contributions = self.paths.margin(leaves), self.paths.contributions(leaves)
        self._average_out(features, unsent, margin, contributions)
        return margin, contributions


@dataclass
class LinearWinModel:
    """Logistic regression on standardised features with missing values filled by the training median.

    Stored as plain arrays so scoring needs no scikit-learn objects and no pickled estimator state.
    """

    fill: FloatArray
    mean: FloatArray
    scale: FloatArray
    coef: FloatArray
    intercept: float
    kind: str = "regularised_logistic"

    def _standardise(self, features: FloatArray) -> FloatArray:
        filled = np.where(np.isnan(features), self.fill, features)
        return (filled - self.mean) / self.scale

    # `unsent` is read as any missing value is: filled with the training median.
    def margin(self, features: FloatArray, unsent: Unsent = None) -> FloatArray:
        return np.asarray(self._standardise(features) @ self.coef + self.intercept, dtype=np.float64)

    def contributions(self, features: FloatArray, unsent: Unsent = None) -> FloatArray:
        parts = self._standardise(features) * self.coef
        base = np.full((features.shape[0], 1), self.intercept)
        return np.hstack([parts, base])

    def margin_and_contributions(self, features: FloatArray, unsent: Unsent = None) -> tuple[FloatArray, FloatArray]:
        return self.margin(features), self.contributions(features)


@dataclass(frozen=True)
class PlattCalibration:
    """p = sigmoid(slope * margin + drift * (recent log-odds - drift_centre) + intercept), fitted on deals
    later than those the engine saw.

    The drift term follows the team's recent win rate (`drift_column` of the features: its log-odds), so a
    win rate that moves after the calibration slice still moves the probabilities: Platt on the margin
    alone fixes the level of the slice's period. `drift` is kept within [0, 1] when fitted (0: the plain
    Platt; 1: a point of recent win rate moves a deal's log-odds as much as the rate's own), and
    `drift_centre` is the slice's mean, so on the slice the term is zero on average.
    """

    slope: float
    intercept: float
    drift: float = 0.0
    drift_centre: float = 0.0
    drift_column: int = -1  # index of the recent win rate in the feature matrix; -1: no drift term

    def drift_push(self, features: FloatArray) -> FloatArray:
        """Each deal's log-odds moved by the drift term (zeros without one)."""
        if self.drift_column < 0 or self.drift == 0.0:
            return np.zeros(features.shape[0])
        return np.asarray(self.drift * (rate_log_odds(features[:, self.drift_column]) - self.drift_centre),
                          dtype=np.float64)

    def probability(self, margin: FloatArray, features: FloatArray, drift_push: FloatArray | None = None) -> FloatArray:
        """`drift_push`: `self.drift_push(features)` when the caller has it already (the scorer's reasons
        need it too: one computation per pass)."""
        push = self.drift_push(features) if drift_push is None else drift_push
        z = _clip(self.slope * margin + self.intercept + push, -35.0, 35.0)
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def _clip(values: FloatArray, low: float, high: float) -> FloatArray:
    """np.clip's values (the same floats, NaN kept) without its Python-side dispatch: ~1 us a call on the
    single-deal path against ~2 us for np.clip."""
    return np.minimum(np.maximum(values, low), high)


def rate_log_odds(rate: FloatArray) -> FloatArray:
    """Log-odds of a win rate, kept finite (a rate of 0 or 1 counts as 1e-4 from it)."""
    # (np.where, not np.nan_to_num: the latter costs ~30 us even on one deal)
    clipped = _clip(np.where(np.isnan(rate), 0.5, rate), 1e-4, 1.0 - 1e-4)
    return np.asarray(np.log(clipped / (1.0 - clipped)), dtype=np.float64)
