"""Training quality (issue 4): our model beside baselines on time-ordered holdouts, and against the synthetic truth.

    python -m bench training_quality
    python -m bench training_quality -- --synthetic 100000 1000000 --no-public   # the synthetic table only

Public sets (../shared/data, read through bench/mappings/*.yaml): our model's AUC, Brier and ECE on
the latest closed deals beside (a) the logistic regression of our own report, (b) a LightGBM tuned on
an inner time-ordered validation, on the same raw columns and without as-of features, uncalibrated and
Platt-calibrated, and (c) the prior win rate. it_deals is split by year: fitted on deals before 2017,
tested on the 2017 deals. Goals: our AUC at least the best baseline's, ECE <= 0.02. The table's row is training
seed 0; a note gives our AUC and ECE over training seeds 0 to N-1 (--seeds N, default 3), since a weak
signal's figures move with the seed.

Synthetic CRM (generate(seed=3, n_deals=100_000), or the sizes given by --synthetic): on the same
holdout deals, our AUC against the AUC of the true probabilities (goal >= 0.97x), mean
|p_win - true_p_win| (goal <= 0.05) and ECE.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

import training.fit as fit
from bench.public_data import DATA_DIR, PUBLIC_SETS, PublicSet, load
from bench.tables import format_table
from model.dataset import Dataset, dataset_from_frames
from model.features import FeatureSpec, attach_clients, unsent_features
from model.metrics import ece_by_chance, p_value_text, paired_auc_lead, probability_metrics
from model.win_models import PlattCalibration, WinModel
from training.fit import TrainConfig, TrainingResult
from training.synthetic_crm import generate

FloatArray = npt.NDArray[np.float64]
Fit = tuple[FloatArray, WinModel, PlattCalibration, FeatureSpec]  # one fit_win_model call: its features, result, spec
IntArray = npt.NDArray[np.int64]

ECE_GOAL = 0.02
TRUTH_AUC_RATIO_GOAL = 0.97
MEAN_ABS_ERROR_GOAL = 0.05
SYNTHETIC_SEED, SYNTHETIC_DEALS = 3, 100_000
# One native thread: quality does not depend on it, and the two cores are shared (see training_time).
THREADS = 1
LGBM_GRID = {"num_leaves": (7, 31, 127), "learning_rate": (0.03, 0.1), "min_data_in_leaf": (20, 100)}
LGBM_INNER_VALID_SHARE = 0.2
HEADER = ("data set", "model", "holdout", "AUC", "Brier", "ECE", "ECE floor", "note")


@dataclass(frozen=True)
class Split:
    """train()'s own ordering and split, rebuilt: joined deals sorted by (created_at, deal_id)."""

    deals: pd.DataFrame
    won: FloatArray
    train_rows: IntArray
    holdout_rows: IntArray


def rebuild_split(dataset: Dataset, result: TrainingResult) -> Split:
    deals = attach_clients(dataset.deals, dataset.clients)
    deals = deals.sort_values(["created_at", "deal_id"], kind="stable").reset_index(drop=True)
    won = np.asarray(deals["status"] == "won", dtype=np.float64)
    closed_rows = np.flatnonzero(deals["status"].isin(["won", "lost"]).to_numpy()).astype(np.int64)
    n_holdout = int(result.report["split"]["holdout_deals"])
    split = Split(deals, won, closed_rows[:-n_holdout], closed_rows[-n_holdout:])
    # The rebuilt split must be train()'s: same training win rate (the prior) and holdout win rate.
    metrics = result.report["metrics"]
    assert abs(won[split.train_rows].mean() - metrics["prior_rate"]["mean_p"]) < 1e-9, "split differs from train()"
    assert abs(won[split.holdout_rows].mean() - metrics["model"]["win_rate"]) < 1e-9, "split differs from train()"
    return split


def raw_matrix(deals: pd.DataFrame, numeric: list[str], categorical: list[str],
               fit_rows: IntArray) -> tuple[FloatArray, list[int]]:
    """The raw columns for LightGBM: numbers as they are, text as codes of the levels seen in fit_rows."""
    parts: list[FloatArray] = [deals[c].to_numpy(dtype=np.float64) for c in numeric]
    for column in categorical:
        values = deals[column].astype(object).where(deals[column].notna(), None)
        levels = sorted({str(v) for v in values.iloc[fit_rows] if v is not None})
        codes = pd.Categorical([None if v is None else str(v) for v in values], categories=levels).codes
        parts.append(np.where(codes >= 0, codes, np.nan).astype(np.float64))
    matrix = np.column_stack(parts) if parts else np.empty((len(deals), 0))
    return matrix, list(range(len(numeric), len(numeric) + len(categorical)))


def tuned_lightgbm(matrix: FloatArray, categorical: list[int], won: FloatArray, train_rows: IntArray,
                   holdout_rows: IntArray) -> tuple[FloatArray, FloatArray, str]:
    """Grid over LGBM_GRID with early stopping on the latest share of the training rows (by AUC).

    Returns the holdout probabilities uncalibrated, then Platt-calibrated on that inner validation
    slice (the trees never saw it), and a description of the chosen setting.
    """
    n_valid = max(int(round(train_rows.size * LGBM_INNER_VALID_SHARE)), 1)
    inner_fit, inner_valid = train_rows[:-n_valid], train_rows[-n_valid:]
    fit_set = lgb.Dataset(matrix[inner_fit], won[inner_fit], categorical_feature=categorical, free_raw_data=False)
    valid_set = lgb.Dataset(matrix[inner_valid], won[inner_valid], reference=fit_set)
    best: tuple[float, Any, dict[str, Any]] | None = None
    for values in itertools.product(*LGBM_GRID.values()):
        grid = dict(zip(LGBM_GRID, values, strict=True))
        params = {"objective": "binary", "metric": "auc", "feature_fraction": 0.8, "bagging_fraction": 0.8,
                  "bagging_freq": 1, "num_threads": THREADS, "verbose": -1, "seed": 0, "deterministic": True,
                  "force_row_wise": True, **grid}
        booster = lgb.train(params, fit_set, num_boost_round=2000, valid_sets=[valid_set],
                            callbacks=[lgb.early_stopping(50, verbose=False)])
        auc = float(booster.best_score["valid_0"]["auc"])
        if best is None or auc > best[0]:
            best = (auc, booster, {**grid, "rounds": booster.best_iteration})
    assert best is not None
    _, booster, chosen = best
    raw = np.asarray(booster.predict(matrix[holdout_rows], num_iteration=chosen["rounds"]), dtype=np.float64)
    margin_valid = booster.predict(matrix[inner_valid], num_iteration=chosen["rounds"], raw_score=True)
    platt = LogisticRegression(C=1e4, max_iter=1000).fit(np.reshape(margin_valid, (-1, 1)), won[inner_valid])
    margin = booster.predict(matrix[holdout_rows], num_iteration=chosen["rounds"], raw_score=True)
    calibrated = np.asarray(platt.predict_proba(np.reshape(margin, (-1, 1)))[:, 1], dtype=np.float64)
    described = (f"leaves {chosen['num_leaves']}, lr {chosen['learning_rate']}, "
                 f"min_leaf {chosen['min_data_in_leaf']}, {chosen['rounds']} rounds")
    return raw, calibrated, described


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def it_deals_config(dataset: Dataset) -> TrainConfig:
    """Holdout = exactly the 2017 deals: their share of the closed deals (all it_deals deals are closed)."""
    deals = dataset.deals
    closed = deals["status"].isin(["won", "lost"])
    share = float((closed & (deals["created_at"].dt.year >= 2017)).sum() / closed.sum())
    return TrainConfig(holdout_share=share, threads=THREADS)


def ece_floor(p: FloatArray, draws: int = 200) -> float:
    """Mean ECE of a perfectly calibrated model giving these very probabilities to as many deals.

    Outcomes drawn from p itself: what 10-bin ECE shows from sampling noise alone, to read goals against.
    """
    return ece_by_chance(p, draws)["mean"]


def holdout_p_win(calls: list[Fit], split: Split,
                  result: TrainingResult) -> FloatArray:
    """train()'s holdout probabilities, from its evaluation model: of the fits it made (one per tree shape
    on the earlier deals, then the published one), the one whose holdout AUC is the report's."""
    won = split.won[split.holdout_rows]
    reported = result.report["metrics"]["model"]["auc"]
    for features, model, calibration, spec in calls:
        holdout = features[split.holdout_rows]
        # (an always-sent column a holdout deal lacks is averaged out, as train() scores it)
        p = calibration.probability(model.margin(holdout, unsent_features(spec, holdout)), holdout)
        if abs(roc_auc_score(won, p) - reported) < 1e-12:
            return p
    raise AssertionError("no recorded fit gives train()'s holdout AUC")


def public_rows(public: PublicSet, seeds: int) -> tuple[list[tuple[object, ...]], list[str]]:
    started = time.perf_counter()
    dataset = load(public.name)
    config = it_deals_config(dataset) if public.name == "it_deals" else TrainConfig(threads=THREADS)
    with evaluation_model_recorded() as calls:
        result = fit.train(dataset, config)
    split = rebuild_split(dataset, result)
    if public.name == "it_deals":
        first = split.deals["created_at"].iloc[int(split.holdout_rows[0])]
        assert first.year == 2017 and split.deals["created_at"].iloc[int(split.train_rows[-1])].year < 2017
    ours_p = holdout_p_win(calls, split, result)
    spec = result.model.spec
    matrix, categorical = raw_matrix(split.deals, spec.numeric, spec.categorical, split.train_rows)
    lgbm_raw, lgbm_platt, lgbm_setting = tuned_lightgbm(matrix, categorical, split.won, split.train_rows,
                                                        split.holdout_rows)
    won_holdout = split.won[split.holdout_rows]
    prior_p = np.full(won_holdout.size, split.won[split.train_rows].mean())
    metrics = result.report["metrics"]
    measured: dict[str, tuple[dict[str, float], FloatArray | None]] = {
        "dealscore": (metrics["model"], ours_p),
        "logistic regression": (metrics["logistic_regression"], None),
        "lightgbm tuned, raw": (probability_metrics(won_holdout, lgbm_raw), lgbm_raw),
        "lightgbm tuned + Platt": (probability_metrics(won_holdout, lgbm_platt), lgbm_platt),
        "prior rate": (metrics["prior_rate"], prior_p),
    }
    ours = metrics["model"]
    best_name, best = max(((n, m) for n, (m, _) in measured.items() if n != "dealscore"),
                          key=lambda item: item[1]["auc"])
    split_info = result.report["split"]
    refit = f", regrown on {split_info['refit_deals']:,}" if "refit_deals" in split_info else ""
    notes = {
        "dealscore": f"{result.report['engine']}, {split_info.get('rounds', '-')} rounds{refit}; holdout from "
                     f"{split_info['holdout_from']}, {split_info['train_deals']:,} deals before",
        "logistic regression": "from our report (raw columns, one-hot)",
        "lightgbm tuned, raw": lgbm_setting,
        "lightgbm tuned + Platt": "Platt on the inner validation slice",
        "prior rate": "training win rate",
    }
    rows: list[tuple[object, ...]] = [
        (public.name, name, m["deals"], m["auc"], m["brier"], m["ece"], ece_floor(p) if p is not None else "-",
         notes[name]) for name, (m, p) in measured.items()
    ]
    days = split.deals["created_at"].iloc[split.holdout_rows].to_numpy().astype("datetime64[D]").astype(np.int64)
    rows.append((public.name, "created_at alone", won_holdout.size, float(roc_auc_score(won_holdout, days)), "-",
                 "-", "-", "reference, not a model: how much the holdout's AUC can come from drift alone"))
    leaks = ", ".join(f"{f['column']} ({'kept' if f['kept'] else 'excluded'})" for f in result.report["leaks"])
    auc_met = ours["auc"] >= best["auc"]
    best_p = measured[best_name][1]
    # Whether chance explains the gap to the best baseline, on the same deals (DeLong's paired test).
    lead = (paired_auc_lead(won_holdout, ours_p, best_p) if best_p is not None
            else {"p_value": best.get("auc_lead_p_value", float("nan"))})
    ours_ahead_p = 1.0 - lead["p_value"]
    # What a perfectly calibrated model would show here: an ECE within its 95th percentile is no evidence of
    # miscalibration, whatever the goal says.
    chance = ece_by_chance(ours_p)
    chance_said = (f"{'within' if ours['ece'] <= chance['p95'] else 'above'} what chance alone gives a perfectly "
                   f"calibrated model here: {chance['mean']:.4f}, up to {chance['p95']:.4f} in 95 of 100 draws")
    lines = [
        f"{public.name}: AUC {ours['auc']:.4f} vs best baseline {best['auc']:.4f} ({best_name}): "
        f"{verdict(auc_met)} (paired test on the same deals: {p_value_text(ours_ahead_p)} that chance alone puts us "
        f"this far ahead); ECE {ours['ece']:.4f} <= {ECE_GOAL}: {verdict(ours['ece'] <= ECE_GOAL)} ({chance_said}); "
        f"leak guard: {leaks or 'nothing flagged'}; "
        f"{time.perf_counter() - started:.0f} s",
        value_note(result.report),
    ]
    if seeds > 1:
        lines.append(seed_note(dataset, config, ours, best["auc"], seeds))
    return rows, lines


def seed_note(dataset: Dataset, config: TrainConfig, seed_0: dict[str, float], best_baseline_auc: float,
              seeds: int) -> str:
    """Our holdout AUC and ECE trained with seeds 0 to seeds-1 (the trees sample deals and features by seed;
    the baselines do not depend on it)."""
    metrics = [seed_0] + [fit.train(dataset, replace(config, seed=seed)).report["metrics"]["model"]
                          for seed in range(1, seeds)]
    auc = [m["auc"] for m in metrics]
    ece = [m["ece"] for m in metrics]
    return (f"  training seeds 0-{seeds - 1}: AUC {min(auc):.4f}-{max(auc):.4f}, ECE {min(ece):.4f}-{max(ece):.4f} "
            f"(AUC >= best baseline's in {sum(a >= best_baseline_auc for a in auc)} of {seeds})")


def value_note(report: dict[str, Any]) -> str:
    """The value model on the holdout's won deals beside its baselines (training/value_fit.py)."""
    value = report.get("value") or {}
    if not value.get("evaluated"):
        return f"  value model: not measured ({value.get('why', 'no value section')})"
    errors = ", ".join(f"{name} {e['mean_abs_log_error']:.3f}" for name, e in value["errors"].items())
    return (f"  value model on {value['holdout_won_deals_with_amount']:,} holdout wins, mean |log error| "
            f"(lower is better): {errors}; spread factor {value['spread']:.3f}")


@contextmanager
def evaluation_model_recorded() -> Iterator[list[Fit]]:
    """Record what train() fits, call by call (the evaluation fits on the earlier deals, then the published one).

    train() reports holdout probabilities only for holdouts of up to 5,000 deals; to compare with the
    truth deal by deal on a larger holdout the bench needs that model itself. Undone on exit.
    """
    calls: list[Fit] = []
    original = fit.fit_win_model

    def recording(features: FloatArray, *args: Any, **kwargs: Any) -> Any:
        out = original(features, *args, **kwargs)
        spec = args[2] if len(args) > 2 else kwargs["spec"]  # fit_win_model(features, won, rows, spec, ...)
        calls.append((features, out[0], out[1], spec))
        return out

    fit.fit_win_model = recording
    try:
        yield calls
    finally:
        fit.fit_win_model = original


def synthetic_table(n_deals: int = SYNTHETIC_DEALS) -> str:
    started = time.perf_counter()
    crm = generate(seed=SYNTHETIC_SEED, n_deals=n_deals)
    dataset = dataset_from_frames(crm.deals, crm.clients, crm.holdings, for_training=True)
    with evaluation_model_recorded() as calls:
        result = fit.train(dataset, TrainConfig(threads=THREADS))
    split = rebuild_split(dataset, result)
    p = holdout_p_win(calls, split, result)
    won = split.won[split.holdout_rows]
    truth = (split.deals.iloc[split.holdout_rows][["deal_id"]]
             .merge(crm.deal_truth, on="deal_id", how="left")["true_p_win"].to_numpy(dtype=np.float64))
    ours = probability_metrics(won, p)
    true_metrics = probability_metrics(won, truth)
    ratio = ours["auc"] / true_metrics["auc"]
    mean_abs = float(np.mean(np.abs(p - truth)))
    metrics = result.report["metrics"]
    rows: list[tuple[object, ...]] = [
        ("dealscore", ours["deals"], ours["auc"], ours["brier"], ours["ece"], ece_floor(p), mean_abs),
        ("true_p_win", true_metrics["deals"], true_metrics["auc"], true_metrics["brier"], true_metrics["ece"],
         ece_floor(truth), 0.0),
        *[(name.replace("_", " "), m["deals"], m["auc"], m["brier"], m["ece"], "-", "-")
          for name, m in metrics.items() if name != "model"],
    ]
    split_info = result.report["split"]
    notes = [
        f"synthetic: AUC ratio {ratio:.4f} >= {TRUTH_AUC_RATIO_GOAL}: {verdict(ratio >= TRUTH_AUC_RATIO_GOAL)}; "
        f"mean |p - true| {mean_abs:.4f} <= {MEAN_ABS_ERROR_GOAL}: {verdict(mean_abs <= MEAN_ABS_ERROR_GOAL)}; "
        f"ECE {ours['ece']:.4f} <= {ECE_GOAL}: {verdict(ours['ece'] <= ECE_GOAL)}",
        f"  generate(seed={SYNTHETIC_SEED}, n_deals={n_deals:,}); holdout from {split_info['holdout_from']}, "
        f"{split_info['train_deals']:,} deals before; {split_info.get('rounds', '-')} rounds; "
        f"{time.perf_counter() - started:.0f} s",
        value_note(result.report),
    ]
    return format_table("Synthetic CRM: our model against the true probabilities, same holdout deals",
                        ("model", "holdout", "AUC", "Brier", "ECE", "ECE floor", "mean |p - true|"), rows, notes)


def public_table(seeds: int = 3) -> str:
    rows: list[tuple[object, ...]] = []
    notes: list[str] = []
    for public in PUBLIC_SETS:
        if not public.available():
            rows.append((public.name, "skipped", "", "", "", "", "", f"data not found under {DATA_DIR}"))
            continue
        set_rows, set_notes = public_rows(public, seeds)
        rows += set_rows
        notes += set_notes
    return format_table(f"Training quality on public data, time-ordered holdout (goals: AUC >= best baseline, "
                        f"ECE <= {ECE_GOAL})", HEADER, rows, notes)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.training_quality", description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, nargs="*", default=[SYNTHETIC_DEALS],
                        help="sizes of the synthetic CRM to check against the truth (none: skip)")
    parser.add_argument("--no-public", action="store_true", help="skip the public data sets")
    parser.add_argument("--seeds", type=int, default=3,
                        help="training seeds per public set for the AUC and ECE range (1: seed 0 only)")
    args = parser.parse_args()
    if not args.no_public:
        print(public_table(args.seeds), flush=True)
    for n_deals in args.synthetic:
        print()
        print(synthetic_table(n_deals), flush=True)


if __name__ == "__main__":
    main()
