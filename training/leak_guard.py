"""Leak guard: find columns that give the outcome away before a model learns to rely on them.

Real CRM exports carry such columns: a call duration known only after the call, a close value that is
0 for every lost deal, a stage name that means "won", a field filled in only when the deal closes.
A model trained with them looks perfect and is useless on open deals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

SUSPECT_AUC = 0.95  # a single column ranking outcomes this well on later deals is almost surely a leak
# Strong enough on its own to deserve a look (honest raw columns of the public sets reach 0.50-0.63; bank
# marketing's call duration, known only after the call, 0.78): reported, still used unless excluded.
REVIEW_AUC = 0.75
MIN_OPEN_DEALS = 10


@dataclass(frozen=True)
class LeakFinding:
    column: str
    reason: str
    kept: bool  # the user asked to keep it anyway
    review_only: bool = False  # reported for the user to check, not excluded


def _auc_alone(values: pd.Series, won: np.ndarray) -> float:
    """How well the column alone ranks outcomes (0.5: not at all, 1: perfectly), a missing value counting as
    below every value and, separately, above: a number filled in only for won deals (an invoice total) gives
    the outcome away by being there at all, which a missing-as-median score would hide (AUC ~0.5)."""
    if 0 == won.sum() or won.sum() == won.size:
        return 0.5
    score = values.to_numpy(dtype=np.float64)
    missing = np.isnan(score)
    if not missing.any():
        auc = float(roc_auc_score(won, score))
        return max(auc, 1.0 - auc)
    if missing.all():
        return 0.5
    low, high = float(np.nanmin(score)), float(np.nanmax(score))
    aucs = [float(roc_auc_score(won, np.where(missing, edge, score))) for edge in (low - 1.0, high + 1.0)]
    return max(max(a, 1.0 - a) for a in aucs)


def _encoded_on_earlier_half(values: pd.Series, won: np.ndarray) -> pd.Series:
    """Each level's win rate learned on the earlier half, applied to the later half (no in-sample fit)."""
    half = len(values) // 2
    earlier = pd.DataFrame({"level": values.iloc[:half].fillna("<missing>").astype(str), "won": won[:half]})
    rates = earlier.groupby("level")["won"].mean()
    later = values.iloc[half:].fillna("<missing>").astype(str)
    return later.map(rates).astype(float).fillna(float(won[:half].mean()) if half else 0.5)


def find_leaks(deals: pd.DataFrame, candidates: Iterable[str], keep: Iterable[str] = ()) -> list[LeakFinding]:
    """Check each candidate feature column of (time-sorted) deals; report suspects."""
    keep_set = set(keep)
    closed = deals[deals["status"].isin(["won", "lost"])]
    open_deals = deals[deals["status"] == "open"]
    won = (closed["status"] == "won").to_numpy(dtype=np.float64)
    half = len(closed) // 2
    findings: list[LeakFinding] = []
    for column in candidates:
        reason = None
        filled_closed = float(closed[column].notna().mean()) if len(closed) else 0.0
        if len(open_deals) >= MIN_OPEN_DEALS:
            filled_open = float(open_deals[column].notna().mean())
            if filled_closed >= 0.5 and filled_open <= 0.05:
                reason = (f"filled for {filled_closed:.0%} of closed deals but {filled_open:.0%} of open ones: "
                          "known only after the outcome")
        if reason is None and half >= 20:
            if pd.api.types.is_numeric_dtype(closed[column]):
                auc = _auc_alone(closed[column].iloc[half:], won[half:])
            else:
                auc = _auc_alone(_encoded_on_earlier_half(closed[column], won), won[half:])
            if auc >= SUSPECT_AUC:
                reason = f"predicts the outcome almost perfectly on its own (AUC {auc:.3f} on later deals)"
            elif auc >= REVIEW_AUC:
                findings.append(LeakFinding(
                    column=column, kept=True, review_only=True,
                    reason=f"ranks outcomes strongly on its own (AUC {auc:.3f} on later deals): used, but check "
                           "that it is known before the outcome (exclude it in the mapping file if not)"))
        if reason is not None:
            findings.append(LeakFinding(column=column, reason=reason, kept=column in keep_set))
    return findings
