"""The monthly retrain: fit a candidate, compare it with the live model on deals neither was fitted on,
publish it only when it is not worse, and write the comparison (metrics, letter shifts, drift) either way.

Why a "gate model": `training.fit.train` refits the published model on *all* closed deals, its own
holdout included, so scoring that model on its holdout would be in-sample and flatter it. The gate
therefore scores the candidate's recipe (same code, same settings) refitted on the deals created
before the comparison window: a model that has seen none of the deals it is judged on, exactly like
the live model (whose training data ended earlier). The published artifact is the full refit.

The comparison window is the closed deals created after both the live model's last training deal and
the candidate's holdout start. When too few such deals exist, it falls back to the candidate's holdout,
which the live model may have been fitted on: the live model then has an in-sample advantage, which
makes the gate conservative (it errs towards keeping the live model); the report says so.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt
import pandas as pd

from model.artifact import strict_json
from model.errors import DealscoreError, InsufficientData
from model.features import (
    CLIENT_ATTRIBUTES,
    attach_clients,
    build_features,
    empty_feature_columns,
    frame_columns,
    missing_feature_columns,
    unsent_features,
)
from model.metrics import ece_by_chance, probability_metrics
from model.records import is_plain_number
from model.registry import Registry
from model.scorer import ScoringModel
from training.fit import TrainConfig, TrainingResult, train
from training.report import report_files

__all__ = [
    "Check",
    "ComparisonWindow",
    "RetrainConfig",
    "RetrainOutcome",
    "gate_checks",
    "population_stability_index",
    "render_markdown",
    "retrain",
]

FloatArray = npt.NDArray[np.float64]
Progress = Callable[[str], None]
GRADES = ("A", "B", "C", "D")
COMPARED_METRICS = ("auc", "ece", "brier", "log_loss", "top_decile_lift", "mean_p", "win_rate")


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class RetrainConfig:
    """The publish gate and the registry's housekeeping.

    A candidate is published when both hold on the comparison deals:
    - AUC >= live AUC - auc_tolerance (ranking not worse, within noise);
    - ECE <= max(ece_limit, chance, live ECE + ece_margin), where "chance" is the 95th percentile of the
      ECE a perfectly calibrated model shows on that many deals (simulated from the candidate's own
      probabilities: on 750 deals it is about 0.05, above the 0.03 limit, so a fixed limit alone would
      refuse good models by noise), and the live term keeps a candidate from being refused for being only
      as badly calibrated as the model it would replace (a drifted live model is often far above the limit).
    """

    auc_tolerance: float = 0.01
    ece_limit: float = 0.03
    ece_margin: float = 0.005
    min_comparison_deals: int = 200  # fewer closed deals after the live model's data: fall back (see module doc)
    keep_last: int = 12  # versions kept in the registry (the live and the previous live are always kept)
    psi_bins: int = 10  # quantile bins of the drift check
    ece_noise_draws: int = 200  # simulations of a perfectly calibrated model, for the ECE noise floor
    # A live model that ranked its own holdout at least this well and ranks the compared deals' outcomes worse
    # than chance (its AUC's 95% upper bound below 0.5) stops the publish: see `outcomes_against_live`.
    ranked_holdout_auc: float = 0.6

    def __post_init__(self) -> None:
        # A NaN or negative tolerance would make every comparison false (nothing ever published) or loosen
        # the gate silently; refused here, as TrainConfig refuses its settings (the CLI: exit 2, the option).
        for name, meaning in (("auc_tolerance", "AUC the candidate may lose against the live model"),
                              ("ece_margin", "calibration error the candidate may add to the live model's")):
            value = getattr(self, name)
            if not (is_plain_number(value) and 0 <= value < 1):
                raise ValueError(f"{name} must be a number from 0 to below 1 ({meaning}), got {value!r}")
        if not (is_plain_number(self.ece_limit) and 0 < self.ece_limit <= 1):
            raise ValueError(f"ece_limit must be a number above 0 and at most 1 (the calibration error a "
                             f"candidate may always have), got {self.ece_limit!r}")
        if not (is_plain_number(self.ranked_holdout_auc) and 0.5 <= self.ranked_holdout_auc <= 1):
            raise ValueError(f"ranked_holdout_auc must be a number from 0.5 to 1 (the holdout AUC from which a live "
                             f"model counts as ranking), got {self.ranked_holdout_auc!r}")
        for name in ("min_comparison_deals", "keep_last", "psi_bins", "ece_noise_draws"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")


@dataclass(frozen=True)
class Check:
    name: str
    candidate: float
    live: float
    threshold: float
    passed: bool
    rule: str


@dataclass(frozen=True)
class ComparisonWindow:
    start: date  # closed deals created on or after this day are compared; the gate model saw only earlier ones
    mode: str  # "after_live_training" | "candidate_holdout"
    live_in_sample: bool  # the live model was fitted on some of the compared deals
    note: str
    stale: str = ""  # when the new data end no later than the live model's: said in the note and in a refusal


@dataclass
class RetrainOutcome:
    published: bool
    version: str
    reason: str
    report_path: Path  # comparison.md in the candidate's version folder (comparison.json beside it)
    forced: bool = False
    live_before: str | None = None
    live_after: str | None = None
    checks: list[Check] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict, repr=False)


def gate_checks(candidate: Mapping[str, float], live: Mapping[str, float], config: RetrainConfig,
                ece_chance: float = 0.0) -> list[Check]:
    """The two publish conditions, each with the numbers it was decided on (see RetrainConfig)."""
    auc_threshold = live["auc"] - config.auc_tolerance
    chance = ece_chance if ece_chance == ece_chance else 0.0
    ece_threshold = max(config.ece_limit, chance, live["ece"] + config.ece_margin)
    return [
        Check("auc", candidate["auc"], live["auc"], auc_threshold,
              bool(candidate["auc"] >= auc_threshold),  # False when either is NaN
              f"AUC >= live - {config.auc_tolerance:.3f}"),
        Check("ece", candidate["ece"], live["ece"], ece_threshold, bool(candidate["ece"] <= ece_threshold),
              f"ECE <= max({config.ece_limit:.3f}, chance {chance:.3f}, live + {config.ece_margin:.3f})"),
    ]


def auc_upper_bound(auc: float, wins: int, losses: int, z: float = 1.96) -> float:
    """The upper end of an AUC's confidence interval, by Hanley and McNeil's standard error (Radiology, 1982)."""
    if auc != auc or wins < 1 or losses < 1:
        return float("nan")
    q1, q2 = auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc)
    variance = (auc * (1.0 - auc) + (wins - 1) * (q1 - auc * auc) + (losses - 1) * (q2 - auc * auc)) / (wins * losses)
    return float(auc + z * np.sqrt(max(variance, 0.0)))


def outcomes_against_live(live_auc: float, wins: int, losses: int, holdout_auc: object,
                          config: RetrainConfig) -> str:
    """Why the compared deals' outcomes, not the models, are in question ("" when they are not).

    The gate model is the candidate's recipe fitted on the deals before the window, which in a monthly export
    that only grows are the live model's own training deals: the two models nearly agree, and both are judged
    on the window's outcomes. Outcomes that are wrong (won and lost swapped by a changed status mapping) make
    both look equally bad, and the candidate, fitted on them, was published as "not worse" (an ops review: live
    AUC 0.143 on deals relabelled in the export's last months, against 0.79 on its own holdout; the published
    model's error against the true probabilities doubled). Drift lowers a model's AUC, towards chance (bank
    marketing a year and a half on: 0.72 -> 0.57); it does not turn a working model upside down.
    """
    if not ranked_its_holdout(holdout_auc, config):
        return ""  # a live model that never ranked well (or says nothing of its holdout): its inversion says little
    upper = auc_upper_bound(live_auc, wins, losses)
    limit = inverted_auc_limit(float(holdout_auc))
    if not (upper < 0.5 and live_auc <= limit):
        return ""
    return (f"the compared deals' outcomes run against the live model: it ranked its own holdout at AUC "
            f"{holdout_auc:.3f} and ranks these {wins + losses:,} deals at {live_auc:.3f} (95% interval up to "
            f"{upper:.3f}), worse than chance and at least halfway to its holdout's mirror image ({limit:.3f}). "
            "Models that drift lose ranking towards chance; outcomes that turn a working model upside down point "
            "to the export: statuses swapped or remapped (a status_values change, a renamed stage), or outcomes "
            "joined to the wrong deals. Check the recent deals' statuses; publish with --force if they are right")


def candidate_at_chance(candidate_holdout: Mapping[str, Any] | None, live_holdout_auc: object,
                        config: RetrainConfig) -> str:
    """Why the candidate must not replace a live model that ranked ("" when nothing says so): its own time-ordered
    holdout ranks no better than chance (its AUC's 95% interval reaches 0.5: the caution its report and GET
    /v1/model carry), where the live model ranked its own holdout at `ranked_holdout_auc` or better, and above
    that interval.

    Outcomes no model can rank (every won and lost shuffled, outcomes joined to the wrong deals) put the live
    model at chance on the compared deals too, and the candidate fitted on them passed as "not worse" (an ops
    review: AUC 0.494 against 0.487, published over a model whose holdout AUC was 0.816). Judged on the
    candidate's own holdout, not on the compared deals: drift takes the live model's ranking of the latest few
    hundred deals near chance for months (bank marketing: 0.53-0.56 on 220-880 deals), and a candidate fitted on
    the drifted data still ranks its holdout; refusing on the compared deals would have stopped those retrains.
    """
    if not ranked_its_holdout(live_holdout_auc, config):
        return ""  # a live model that never ranked well: a candidate at chance replaces nothing better
    holdout = candidate_holdout or {}
    auc, low, deals = holdout.get("auc"), holdout.get("auc_low_95"), holdout.get("deals")
    if not (is_plain_number(auc) and is_plain_number(low) and low <= 0.5):
        return ""
    high = holdout.get("auc_high_95")
    if is_plain_number(high) and live_holdout_auc <= high:
        # The live model's own AUC within the candidate's interval: not told apart. On a small holdout a candidate
        # as good as the live model reaches 0.5 by chance alone (AUC 0.60 on 120 deals: 0.50-0.71, beside a live
        # 0.62), and the export was blamed for it.
        return ""
    on = f" on {int(deals):,} deals" if is_plain_number(deals) else ""
    return (f"the candidate ranks its own holdout no better than chance (AUC {auc:.3f}{on}, 95% interval from "
            f"{low:.3f}), where the live model ranked its own at AUC {live_holdout_auc:.3f}: the export's outcomes "
            "carry no ranking the model could learn. That points to the export: won and lost shuffled or remapped "
            "(a status_values change, a renamed stage), or outcomes joined to the wrong deals. Check the deals' "
            "statuses; publish with --force if they are right")


def ranked_its_holdout(holdout_auc: object, config: RetrainConfig) -> TypeGuard[float]:
    """Whether a live model's holdout AUC (from its metadata; any value) says it ranked well enough for the
    outcomes rule to judge it."""
    return isinstance(holdout_auc, (int, float)) and holdout_auc >= config.ranked_holdout_auc


def inverted_auc_limit(holdout_auc: float) -> float:
    """The AUC at or below which a live model counts as turned upside down: halfway from chance to the mirror
    image of its holdout AUC (0.79 -> 0.355). Significance alone refused drift on large windows: holdout 0.62,
    0.47 on 3,000 deals (the diff review); an AUC's interval also assumes independent deals, which deals of one
    client or month are not."""
    return 0.5 - (holdout_auc - 0.5) / 2.0


def population_stability_index(reference: npt.ArrayLike, current: npt.ArrayLike, bins: int = 10,
                               categorical: bool = False) -> float:
    """PSI = sum (cur% - ref%) * ln(cur% / ref%) over the reference's quantile bins (or the levels of a
    categorical code); missing values are a bin of their own. < 0.1 stable, 0.1-0.25 moderate, > 0.25 major."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    ref_known, cur_known = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if categorical:
        levels = np.unique(np.concatenate([ref_known, cur_known]))
        ref_bins, cur_bins = np.searchsorted(levels, ref_known), np.searchsorted(levels, cur_known)
        n_bins = levels.size
    else:
        quantiles = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        edges = np.unique(np.quantile(ref_known, quantiles)) if ref_known.size else np.empty(0)
        ref_bins = np.searchsorted(edges, ref_known, side="right")
        cur_bins = np.searchsorted(edges, cur_known, side="right")
        n_bins = edges.size + 1
    ref_counts = np.append(np.bincount(ref_bins, minlength=n_bins), ref.size - ref_known.size)
    cur_counts = np.append(np.bincount(cur_bins, minlength=n_bins), cur.size - cur_known.size)
    p = np.maximum(ref_counts / ref.size, 1e-4)
    q = np.maximum(cur_counts / cur.size, 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def drift_level(psi: float) -> str:
    if psi != psi:
        return "n/a"
    return "stable" if psi < 0.1 else ("moderate" if psi < 0.25 else "major")


def _parse_day(value: object) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def choose_window(created: pd.Series, closed: npt.NDArray[np.bool_], won: FloatArray, holdout_from: date,
                  live_meta: Mapping[str, Any], config: RetrainConfig) -> ComparisonWindow:
    """The latest deals neither model was fitted on, as far as the live model allows (see module doc)."""
    data = live_meta.get("data")
    live_end = _parse_day(data.get("last_deal")) if isinstance(data, Mapping) else None
    new_end = created.max().date()
    if live_end is None:
        return ComparisonWindow(holdout_from, "candidate_holdout", True,
                                "the live model's metadata does not say when its training data ends, so the "
                                "candidate's holdout is used; the live model may have been fitted on some of it, "
                                "which favours the live model (the gate errs towards keeping it)")
    if live_end < holdout_from:
        return ComparisonWindow(holdout_from, "after_live_training", False,
                                f"the candidate's holdout starts after the live model's training data "
                                f"(to {live_end}): neither model was fitted on these deals")
    start = live_end + timedelta(days=1)
    inside = closed & (created >= pd.Timestamp(start)).to_numpy()
    n, wins = int(inside.sum()), float(won[inside].sum())
    if n >= config.min_comparison_deals and 0 < wins < n:
        return ComparisonWindow(start, "after_live_training", False,
                                f"deals created after the live model's training data (to {live_end}); "
                                "neither model was fitted on them")
    stale = ("" if new_end > live_end else
             f"The new data end on {new_end}, {'the same day as' if new_end == live_end else 'before'} the live "
             f"model's ({live_end}): is the export stale?")
    return ComparisonWindow(
        holdout_from, "candidate_holdout", True,
        f"only {n} closed deals were created after the live model's training data (to {live_end}), fewer than "
        f"{config.min_comparison_deals}; the candidate's holdout (from {holdout_from}) is used instead. The live "
        "model was fitted on part of it, an in-sample advantage: the gate errs towards keeping the live model."
        + (f" {stale}" if stale else ""), stale)


def _live_fitted_share(deals: pd.DataFrame, compared: npt.NDArray[np.int64], live_model: ScoringModel | None,
                       live: Mapping[str, Any] | None) -> float | None:
    """The share of the compared deals the live model was fitted on: closed in its training data.

    From the deal ids its artifact keeps; a model without them is judged by date (created by its last
    training deal), which also counts deals then still open, never fitted on: a retrain on the outcomes the
    service collected read 100% where the truth was 0% (the ops audit)."""
    if compared.size == 0:
        return None
    fitted = getattr(live_model, "trained_deal_ids", None)
    if fitted is not None and len(fitted):
        return float(fitted.holds(deals["deal_id"].iloc[compared].tolist()).mean())
    last = _parse_day(live.get("last_deal")) if isinstance(live, Mapping) else None
    if last is None:
        return None
    return float((deals["created_at"].iloc[compared] <= pd.Timestamp(last)).mean())


def _shrunk_export(closed_deals: int, live: Mapping[str, Any] | None) -> str:
    """A note when the new data hold under half the closed deals the live model was trained on: a partial
    export (one month's delta, a filtered query) is refused by the gate, and the reason should say why."""
    before = live.get("closed_deals") if isinstance(live, Mapping) else None
    if not isinstance(before, int) or before <= 0 or closed_deals * 2 >= before:
        return ""
    return (f"The new data hold {closed_deals:,} closed deals, the live model's {before:,}: is the export partial "
            "(one month only, a filtered query)? A retrain needs the whole history.")


def _apart(value: float, threshold: float, rule: str) -> tuple[str, str]:
    """A failed check's value and its rule with its threshold, with as many decimals (3 to 6) as tell the two
    apart: at three, an ECE of 0.04280 against a limit of 0.04253 read "0.043 fails ... (0.043)"."""
    for digits in range(3, 7):
        shown, limit = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if shown != limit:
            break
    return shown, f"{rule} ({limit})"


def _slice(columns: Mapping[str, npt.NDArray[Any]], rows: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[Any]]:
    return {name: values[rows] for name, values in columns.items()}


def _grade_matrix(before: Sequence[str], after: Sequence[str]) -> dict[str, Any]:
    matrix = [[0] * len(GRADES) for _ in GRADES]
    for old, new in zip(before, after, strict=True):
        if old in GRADES and new in GRADES:
            matrix[GRADES.index(old)][GRADES.index(new)] += 1
    changed = sum(matrix[i][j] for i in range(len(GRADES)) for j in range(len(GRADES)) if i != j)
    return {"labels": list(GRADES), "rows": "live", "columns": "candidate", "matrix": matrix,
            "deals": len(before), "changed": changed}


def _model_summary(version: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    data = meta.get("data", {}) if isinstance(meta.get("data"), Mapping) else {}
    return {"version": version, "trained_at": meta.get("trained_at"), "engine": meta.get("engine"),
            "first_deal": data.get("first_deal"), "last_deal": data.get("last_deal"),
            "closed_deals": data.get("closed_deals"),
            "training_holdout_metrics": (meta.get("metrics") or {}).get("model")}


def retrain(registry: Registry, dataset: Any, train_config: TrainConfig | None = None,
            config: RetrainConfig | None = None, force: bool = False, progress: Progress = _quiet,
            note: str = "") -> RetrainOutcome:
    """Train a candidate on `dataset` (a validated model.dataset.Dataset), gate it against the live model,
    store it in the registry with its comparison report, publish it if it passes (or `force`), prune.

    The registry changes in one atomic commit at the end; anything failing before leaves it untouched.
    `note` (e.g. why ops forced it) is added to the recorded reason.
    """
    train_config = train_config or TrainConfig()
    config = config or RetrainConfig()
    live_version = registry.live_version()
    started = datetime.now(UTC)

    progress("training the candidate on all deals")
    candidate = train(dataset, train_config, progress=lambda step: progress(f"candidate: {step}"))
    version = candidate.model.version

    deals = attach_clients(dataset.deals, dataset.clients)
    deals = deals.sort_values(["created_at", "deal_id"], kind="stable").reset_index(drop=True)
    columns = frame_columns(deals)
    status = deals["status"].to_numpy(dtype=object)
    closed = np.isin(status, ["won", "lost"])
    won = (status == "won").astype(np.float64)
    holdout_from = _parse_day(candidate.report["split"]["holdout_from"]) or deals["created_at"].max().date()

    report: dict[str, Any] = {
        "created_at": started.isoformat(timespec="seconds"),
        "candidate": _model_summary(version, candidate.metadata),
        "live": None,
        "config": {"gate": dataclasses.asdict(config), "training": candidate.metadata["training"]["config"]},
    }
    checks: list[Check] = []
    live_model: ScoringModel | None = None
    live_meta: dict[str, Any] = {}
    window: ComparisonWindow
    if live_version is None:
        window = ComparisonWindow(holdout_from, "candidate_holdout", False, "no live model yet: nothing to compare")
        passed, reason = True, "first model"
    else:
        try:
            live_model, live_meta = registry.load(live_version)
        except DealscoreError as exc:
            report["live"] = {"version": live_version, "error": exc.message}
            window = ComparisonWindow(holdout_from, "candidate_holdout", False, "the live model could not be loaded")
            passed = False
            reason = (f"the live model {live_version} cannot be loaded, so the candidate was not compared "
                      f"({exc.message}); publish with --force after checking the candidate's report")
        else:
            report["live"] = _model_summary(live_version, live_meta)
            window = choose_window(deals["created_at"], closed, won, holdout_from, live_meta, config)
    start = pd.Timestamp(window.start)
    in_window = (deals["created_at"] >= start).to_numpy()
    compared = np.flatnonzero(closed & in_window).astype(np.int64)
    # "to" is the latest compared deal's creation day: open deals created later are not in the comparison.
    last_compared = deals["created_at"].iloc[compared].max() if compared.size else None
    report["comparison"] = {"mode": window.mode, "from": str(window.start),
                            "to": str(last_compared.date()) if last_compared is not None else str(window.start),
                            "closed_deals": int(compared.size),
                            "won": int(won[compared].sum()), "live_in_sample": window.live_in_sample,
                            "live_fitted_share": _live_fitted_share(deals, compared, live_model, report["live"]),
                            "note": window.note}

    if live_model is not None and live_version is not None:
        passed, reason, checks = _compare_with_live(
            report, dataset, train_config, config, candidate, live_model, live_version, window, columns, status,
            won, compared, progress)
        # The live model scored without inputs it was trained on is judged on degraded data, and a worse candidate
        # passes it; and a column that vanished from the export is a fault of the export, not a new normal. A
        # client attribute counts too, although the live model fills known clients' from its own record: the
        # candidate, fitted on this data, would go without it (a clients table that lost `industry`, or no
        # clients table at all, published a model without the industry, size and region features).
        vanished = missing_feature_columns(live_model, dataset.deals, dataset.clients, filled_by_model=False)
        # Present but empty in every closed deal is as good as gone (client ids that changed form between the files
        # left every client attribute so; the degraded live model lost to a candidate fitted without them).
        emptied = [name for name in empty_feature_columns(live_model, dataset.deals, dataset.clients)
                   if name not in vanished]
        report["comparison"]["live_inputs_missing"] = vanished
        report["comparison"]["live_inputs_empty"] = emptied
        # The same for the ideal profiles (the gap lists and potential incomes): fitted on a holdings table, then a
        # retrain given none read them off won deals, and published gap lists on a third of the holdings.
        holdings_gone = _holdings_left_out(live_meta, candidate.metadata, live_version)
        report["comparison"]["live_holdings_missing"] = holdings_gone is not None
        if vanished or emptied:
            passed = False
            lacked = [*vanished, *(f"{name} (empty in every closed deal)" for name in emptied)]
            reason = (f"the new data lack {len(lacked)} input column(s) the live model {live_version} uses: "
                      f"{', '.join(lacked)}; the candidate is fitted without them, and the live model, where it "
                      "cannot fill them from its own records, is judged on degraded data. Restore them in the "
                      "export" + (" (client attributes empty in every deal: do the client ids match between the "
                                  "deals and the clients table? '00312' and '312' are different ids)"
                                  if set(emptied) & {*CLIENT_ATTRIBUTES, "since"} else "")
                      + ", or publish with --force if they are gone for good [" + reason + "]")
        if holdings_gone is not None:
            passed = False
            reason = f"{holdings_gone} [{reason}]"
        if not (vanished or emptied or holdings_gone) and not passed and window.stale:
            reason += f" {window.stale}"
        shrunk = _shrunk_export(int(closed.sum()), report["live"])
        report["comparison"]["shrunk_export"] = shrunk
        if not passed and shrunk:
            reason += f" {shrunk}"

    report["drift"] = _drift(candidate, columns, closed, in_window, window.start, config)
    published = passed or force
    forced = force and not passed
    if forced:
        reason = f"forced despite the gate: {reason}"
    if note:
        reason = f"{reason} (note: {note})"
    report["decision"] = {"published": published, "forced": forced, "reason": reason,
                          "checks": [dataclasses.asdict(c) for c in checks]}
    report = strict_json(report)
    files = {
        **report_files(candidate),
        "comparison.json": json.dumps(report, indent=2, default=str).encode(),
        "comparison.md": render_markdown(report).encode(),
    }
    progress("storing the candidate" + (" and publishing it" if published else " (not published)"))
    registry.add(candidate.model, candidate.metadata, files, action="publish" if published else "refused",
                 reason=reason, forced=forced, expect_live=live_version)
    removed = registry.prune(config.keep_last)
    if removed:
        progress(f"pruned {len(removed)} old version(s): {', '.join(removed)}")
    return RetrainOutcome(published=published, version=version, reason=reason,
                          report_path=registry.path_of(version) / "comparison.md", forced=forced,
                          live_before=live_version, live_after=version if published else live_version,
                          checks=checks, report=report)


def _holdings_left_out(live_meta: Mapping[str, Any], candidate_meta: Mapping[str, Any], live_version: str
                       ) -> str | None:
    """Why the candidate must not replace the live model's ideal profiles, fitted on a holdings table, with ones
    fitted without it; None when nothing was lost."""
    live = live_meta.get("profiles") or {}
    if live.get("holdings_source") != "table":
        return None
    candidate = candidate_meta.get("profiles") or {}
    if candidate.get("holdings_source") == "table":
        return None
    fitted = (f"read off won deals ({candidate.get('holdings', 0):,} holdings against the live model's "
              f"{live.get('holdings', 0):,})" if candidate else "none")
    return (f"the live model {live_version}'s ideal profiles (gap lists, potential income) were fitted on a holdings "
            f"table, and this retrain was given none (--holdings): the candidate's are {fitted}. Give it the "
            "holdings export, or publish with --force if the holdings are gone for good")


def _compare_with_live(report: dict[str, Any], dataset: Any, train_config: TrainConfig, config: RetrainConfig,
                       candidate: TrainingResult, live_model: ScoringModel, live_version: str,
                       window: ComparisonWindow, columns: Mapping[str, npt.NDArray[Any]],
                       status: npt.NDArray[np.object_], won: FloatArray, compared: npt.NDArray[np.int64],
                       progress: Progress) -> tuple[bool, str, list[Check]]:
    """Fit the gate model, score it and the live model on the comparison deals, apply the rules; fills
    the report's metrics, letter shifts and score shift. Returns (passed, reason, checks)."""
    won_compared = won[compared]
    if compared.size == 0 or not 0 < won_compared.sum() < compared.size:
        return False, (f"cannot compare with the live model {live_version}: the {compared.size} comparison deals "
                       "do not include both won and lost deals"), []
    start = pd.Timestamp(window.start)
    gate_dataset = dataclasses.replace(dataset, deals=dataset.deals[dataset.deals["created_at"] < start])
    progress(f"training the gate model on the {len(gate_dataset.deals):,} deals created before {window.start}")
    try:
        gate = train(gate_dataset, train_config, progress=lambda step: progress(f"gate model: {step}"))
    except InsufficientData as exc:
        raise InsufficientData(f"too little data before the comparison window ({window.start}) to fit the "
                               f"gate model: {exc.message}") from exc
    report["comparison"]["gate_model"] = {
        "version": gate.model.version, "deals": int(len(gate_dataset.deals)),
        "description": "the candidate's recipe and settings fitted on the deals created before "
                       f"{window.start} only; the published candidate is the same recipe fitted on all deals"}
    window_columns = _slice(columns, compared)
    live_scores = live_model.score(window_columns, n_reasons=0)
    gate_p = gate.model.score(window_columns, n_reasons=0).p_win
    live_metrics = probability_metrics(won_compared, live_scores.p_win)
    gate_metrics = probability_metrics(won_compared, gate_p)
    report["metrics"] = {"live": live_metrics, "candidate": gate_metrics}
    noise = ece_by_chance(gate_p, config.ece_noise_draws)
    report["ece_noise_floor"] = noise
    checks = gate_checks(gate_metrics, live_metrics, config, noise["p95"])
    failed = [c for c in checks if not c.passed]
    wins = int(won_compared.sum())
    holdout_auc = ((report["live"] or {}).get("training_holdout_metrics") or {}).get("auc")
    against = outcomes_against_live(live_metrics["auc"], wins, int(compared.size) - wins, holdout_auc, config)
    report["comparison"]["outcomes_against_live"] = against
    at_chance = candidate_at_chance((report.get("candidate") or {}).get("training_holdout_metrics"), holdout_auc,
                                    config)
    report["comparison"]["candidate_at_chance"] = at_chance
    if ranked_its_holdout(holdout_auc, config):
        # In the checks (and the tables that show them) where it applies, so a refusal is read off the table.
        checks.append(Check("outcomes", float("nan"), live_metrics["auc"], inverted_auc_limit(float(holdout_auc)),
                            not against, "live AUC above its holdout's halfway-inverted value, or within chance"))
    fitted_share = report["comparison"].get("live_fitted_share")
    where = (f"on {compared.size:,} closed deals created from {window.start}"
             + (f" (candidate's holdout; the live model was fitted on {fitted_share:.0%} of them)"
                if window.live_in_sample and fitted_share is not None
                else " (candidate's holdout; live in-sample)" if window.live_in_sample else ""))
    summary = (f"AUC {gate_metrics['auc']:.3f} vs {live_metrics['auc']:.3f}, "
               f"ECE {gate_metrics['ece']:.3f} vs {live_metrics['ece']:.3f} {where}")
    failures = "; ".join(f"{c.name.upper()} {' fails '.join(_apart(c.candidate, c.threshold, c.rule))}"
                         for c in failed)
    # Judged largely in-sample only where the live model was fitted on most of the compared deals: deals still
    # open when it was trained are fair to both, however early they were created.
    largely_in_sample = window.live_in_sample and (fitted_share is None or fitted_share >= 0.5)
    if against:
        reason = f"{against} [{summary}]"
    elif failed and largely_in_sample:
        # Too few deals neither model saw: the live model is judged on deals it was fitted on, which favours it
        # by construction. Not evidence that the candidate is worse; said so, for whoever reads the cron log.
        later = "" if window.stale else ": next month usually can"
        reason = (f"candidate not shown as good as the live model {live_version}, which was judged largely "
                  f"in-sample (too few closed deals since its data to compare fairly{later}): "
                  f"{failures} [{summary}]")
    elif failed:
        reason = f"candidate is worse than the live model {live_version}: {failures} [{summary}]"
    elif at_chance:  # after the checks: a candidate plainly worse than the live model is said to be so
        reason = f"{at_chance} [{summary}]"
    else:
        reason = f"candidate is not worse than the live model {live_version}: {summary}"

    # What managers will see change: the published candidate's letters against the live model's.
    candidate_scores = candidate.model.score(window_columns, n_reasons=0)
    report["grade_shift"] = _grade_matrix(live_scores.grade, candidate_scores.grade)
    open_rows = np.flatnonzero(status == "open").astype(np.int64)
    if open_rows.size:
        open_columns = _slice(columns, open_rows)
        report["grade_shift_open_deals"] = _grade_matrix(live_model.score(open_columns, n_reasons=0).grade,
                                                         candidate.model.score(open_columns, n_reasons=0).grade)
    report["score_shift_psi"] = population_stability_index(live_scores.p_win, candidate_scores.p_win,
                                                            config.psi_bins)
    return not failed and not against and not at_chance, reason, checks


def _drift(candidate: TrainingResult, columns: Mapping[str, npt.NDArray[Any]], closed: npt.NDArray[np.bool_],
           in_window: npt.NDArray[np.bool_], start: date, config: RetrainConfig) -> dict[str, Any]:
    """PSI of every model feature and of p_win: closed deals before the window vs closed deals in it."""
    model = candidate.model
    features = build_features(model.spec, model.history, columns)
    p_win = model.calibration.probability(model.win_model.margin(features, unsent_features(model.spec, features)),
                                          features)
    reference, current = closed & ~in_window, closed & in_window
    categorical = set(model.spec.categorical_names)
    inputs = set(model.spec.numeric) | set(model.spec.categorical)
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(model.spec.names):
        psi = population_stability_index(features[reference, j], features[current, j], config.psi_bins,
                                         categorical=name in categorical)
        source = "input" if name in inputs else ("calendar" if name == "month" else "history")
        rows.append({"feature": name, "kind": "categorical" if name in categorical else "numeric",
                     "source": source, "psi": psi, "level": drift_level(psi)})
    # Input columns first: their drift means the data changed. History features (as-of win rates, client
    # tenure...) and the month move with time by construction, so they are shown apart, as context.
    rows.sort(key=lambda r: (r["source"] != "input", -float(r["psi"]) if r["psi"] == r["psi"] else 0.0))
    psi_p = population_stability_index(p_win[reference], p_win[current], config.psi_bins)
    return {"reference": f"closed deals created before {start} ({int(reference.sum()):,})",
            "current": f"closed deals created from {start} ({int(current.sum()):,})",
            "p_win": {"psi": psi_p, "level": drift_level(psi_p)}, "features": rows}


# -- the human-readable report -----------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|")  # a CRM's own column name may hold a pipe


def render_markdown(report: Mapping[str, Any]) -> str:
    """The comparison as Markdown: decision, window, metrics side by side, letter shifts, drift."""
    candidate, live = report["candidate"], report.get("live")
    decision = report["decision"]
    verdict = "PUBLISHED" + (" (forced)" if decision["forced"] else "") if decision["published"] else "NOT PUBLISHED"
    lines = [f"# Retrain: candidate {candidate['version']}"
             + (f" vs live {live['version']}" if live else " (first model)"), "",
             f"**Decision: {verdict}.** {decision['reason']}", ""]
    comparison = report["comparison"]
    lines += ["## Comparison deals", "",
              f"{comparison['closed_deals']:,} closed deals ({comparison['won']:,} won) created from "
              f"{comparison['from']} to {comparison['to']}: {comparison['note']}.", ""]
    gate = comparison.get("gate_model")
    if gate:
        lines += [f"Candidate figures come from the gate model ({gate['deals']:,} deals): {gate['description']}.",
                  ""]
    metrics = report.get("metrics")
    if metrics and live:
        checks = {c["name"]: c for c in decision["checks"]}
        lines += ["## Metrics", "", f"| metric | live {live['version']} | candidate | rule | passed |",
                  "|---|---:|---:|---|---|"]
        for name in COMPARED_METRICS:
            check = checks.get(name)
            rule = f"{check['rule']} ({_fmt(check['threshold'])})" if check else ""
            passed = ("yes" if check["passed"] else "**no**") if check else ""
            lines.append(f"| {name} | {_fmt(metrics['live'].get(name))} | {_fmt(metrics['candidate'].get(name))} "
                         f"| {rule} | {passed} |")
        outcomes = checks.get("outcomes")
        if outcomes:  # the live model's ranking of the compared outcomes (rule 5 of docs/operations.md)
            lines.append(f"| outcomes | {_fmt(outcomes['live'])} | | {outcomes['rule']} "
                         f"({_fmt(outcomes['threshold'])}) | {'yes' if outcomes['passed'] else '**no**'} |")
        noise = report.get("ece_noise_floor", {})
        lines += ["", f"ECE noise floor: a perfectly calibrated model would show ECE {_fmt(noise.get('mean'))} "
                  f"on these deals by chance (95th percentile {_fmt(noise.get('p95'))}).", ""]
    elif live and live.get("error"):
        lines += ["## Live model", "", f"Could not be loaded: {live['error']}", ""]
    else:
        training = candidate.get("training_holdout_metrics") or {}
        lines += ["## Candidate on its holdout", "",
                  "| " + " | ".join(COMPARED_METRICS) + " |", "|" + "---:|" * len(COMPARED_METRICS),
                  "| " + " | ".join(_fmt(training.get(m)) for m in COMPARED_METRICS) + " |", ""]
    for key, title in (("grade_shift", "comparison deals"), ("grade_shift_open_deals", "open deals")):
        shift = report.get(key)
        if not shift:
            continue
        lines += [f"## Letter classes, live (rows) to candidate (columns), {title}", "",
                  f"{shift['changed']:,} of {shift['deals']:,} deals change letter.", "",
                  "| live \\ candidate | " + " | ".join(shift["labels"]) + " |",
                  "|---|" + "---:|" * len(shift["labels"])]
        for label, row in zip(shift["labels"], shift["matrix"], strict=True):
            lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
        lines.append("")
    if report.get("score_shift_psi") is not None:
        lines += [f"PSI of p_win, live vs candidate on the comparison deals: {_fmt(report['score_shift_psi'])}.", ""]
    drift = report["drift"]
    lines += ["## Data drift (population stability index)", "",
              f"Reference: {drift['reference']}; current: {drift['current']}. "
              "< 0.1 stable, 0.1-0.25 moderate, > 0.25 major. Drift is reported, not gated. "
              "History features (as-of win rates, client history) and the month change with time by "
              "construction; drift in the input columns is what says the data changed.", "",
              "| feature | source | kind | PSI | level |", "|---|---|---|---:|---|",
              f"| p_win (candidate) | score | numeric | {_fmt(drift['p_win']['psi'])} | {drift['p_win']['level']} |"]
    lines += [f"| {_cell(r['feature'])} | {r['source']} | {r['kind']} | {_fmt(r['psi'])} | {r['level']} |"
              for r in drift["features"]]
    lines.append("")
    return "\n".join(lines)
