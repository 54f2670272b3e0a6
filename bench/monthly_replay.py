"""The monthly retrain replayed (issue 4): how well calibrated the win probability is as ops run it.

    python -m bench monthly_replay
    python -m bench monthly_replay -- --sets bank_marketing

bench/training_quality judges one model fitted before the holdout on every later deal, however long the
holdout runs (bank marketing's: eighteen months, whose deals win 31% against the 15% that a model trained at
its start expects).
Ops retrain monthly. This replays that on each public set, over the same holdout period (from
training_quality's holdout start to the data's end): at the first day of each month a model is trained with
`training.fit.train`, as `dealscore train` would be, on what was known that day (deals created before it,
a deal closed on or after it counted as still open), and it scores the deals created that month from what
they carry (no outcome, no close date). Beside it, the model trained once at the holdout start scores the
same deals. Each scores them twice: with its own history, frozen at its training day, as the service
does between retrains (its feedback updates clients' histories only); and with every outcome known
before each deal's day counted in the as-of win rates, as train() builds its holdout's features. All four
are judged on every deal of the period that closed: AUC, Brier, ECE (10 bins) beside the ECE a perfectly
calibrated model shows on as many deals, and the mean probability beside the win rate.

Data without close dates (it_deals, bank marketing) have each outcome known from the deal's creation on,
which flatters a deal created in a month's last days (its result reaches that month's retrain sooner than
it would in a CRM).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import numpy.typing as npt
import pandas as pd

import training.fit as fit
from bench.public_data import DATA_DIR, PUBLIC_SETS, load
from bench.tables import format_table
from bench.training_quality import THREADS, ece_floor, it_deals_config
from model.dataset import Dataset
from model.features import DealHistory, attach_clients, frame_columns
from model.metrics import probability_metrics
from model.scorer import ScoringModel
from training.fit import TrainConfig

FloatArray = npt.NDArray[np.float64]
HEADER = ("data set", "model", "deals", "fits", "AUC", "Brier", "ECE", "ECE floor", "mean p", "win rate")


def known_on(dataset: Dataset, day: pd.Timestamp) -> Dataset:
    """The dataset as a CRM export made on `day` would hold it: deals created before the day, those closed on
    or after it still open. No holdings: the win model does not read them, and holdings derived from won
    deals would carry later wins into the profiles (which this bench does not judge)."""
    deals = dataset.deals[dataset.deals["created_at"] < day].copy()
    if "closed_at" in deals:
        later = deals["closed_at"] >= day
        deals.loc[later, "status"] = "open"
        deals.loc[later, "closed_at"] = pd.NaT
    return dataclasses.replace(dataset, deals=deals.reset_index(drop=True), holdings=None)


def month_starts(first: pd.Timestamp, last: pd.Timestamp) -> list[pd.Timestamp]:
    """`first` (the holdout's first day), then the first day of every later month up to `last`."""
    following = pd.date_range(first + pd.offsets.MonthBegin(1), last, freq="MS")
    return [first, *following]


def scored(model: ScoringModel, deals: pd.DataFrame, clients: pd.DataFrame | None) -> FloatArray:
    """p_win of `deals` from what they carry when created: the outcome and close date dropped."""
    sent = deals.drop(columns=[c for c in ("status", "closed_at") if c in deals])
    return np.asarray(model.score(frame_columns(attach_clients(sent, clients)), n_reasons=0).p_win)


def every_outcome(model: ScoringModel, dataset: Dataset) -> ScoringModel:
    """The model with the history of every closed deal of the data set: a deal's as-of features then count each
    outcome known before its day (as train() builds its holdout's features), not only those of the model's
    training, its amounts read as train() reads them."""
    deals = fit.zero_amount_unquoted(attach_clients(dataset.deals, dataset.clients))
    return dataclasses.replace(model, history=DealHistory(model.spec, frame_columns(deals)))


# (retrained monthly?, history of every outcome?) -> the row's name
PROTOCOLS = {
    (False, True): "trained once, every outcome",
    (False, False): "trained once, history frozen",
    (True, False): "retrained monthly, history frozen",
    (True, True): "retrained monthly, every outcome",
}


def replay(dataset: Dataset, config: TrainConfig, holdout_from: pd.Timestamp,
           monthly: bool) -> tuple[dict[bool, FloatArray], FloatArray, int]:
    """Outcomes of the closed deals created from `holdout_from` on, each scored by the model trained at the
    start of its month (`monthly`) or by the one trained at `holdout_from`, with that model's own history
    (False) and with every outcome known before the deal's day (True); and the number of fits made."""
    deals = dataset.deals
    closed = deals[deals["status"].isin(["won", "lost"]) & (deals["created_at"] >= holdout_from)]
    last = closed["created_at"].max()
    starts = month_starts(holdout_from, last) if monthly else [holdout_from]
    ends = [*starts[1:], last + pd.Timedelta(days=1)]
    p_parts: dict[bool, list[FloatArray]] = {False: [], True: []}
    won_parts = []
    for start, end in zip(starts, ends, strict=True):
        month = closed[(closed["created_at"] >= start) & (closed["created_at"] < end)]
        if month.empty:
            continue
        model = fit.train(known_on(dataset, start), config).model
        p_parts[False].append(scored(model, month, dataset.clients))
        p_parts[True].append(scored(every_outcome(model, dataset), month, dataset.clients))
        won_parts.append((month["status"] == "won").to_numpy(dtype=np.float64))
    return ({fed: np.concatenate(parts) for fed, parts in p_parts.items()}, np.concatenate(won_parts),
            len(won_parts))


def holdout_start(dataset: Dataset, config: TrainConfig) -> pd.Timestamp:
    """training_quality's holdout start: the first day of train()'s time-ordered holdout."""
    result = fit.train(dataclasses.replace(dataset, holdings=None), config)
    return pd.Timestamp(result.report["split"]["holdout_from"])


def set_rows(name: str) -> tuple[list[tuple[object, ...]], list[str]]:
    started = time.perf_counter()
    dataset = load(name)
    config = it_deals_config(dataset) if name == "it_deals" else TrainConfig(threads=THREADS)
    first = holdout_start(dataset, config)
    measured: dict[str, tuple[FloatArray, FloatArray, int]] = {}
    for monthly in (False, True):
        by_history, won, fits = replay(dataset, TrainConfig(threads=THREADS), first, monthly)
        for fed, p in by_history.items():
            measured[PROTOCOLS[(monthly, fed)]] = (p, won, fits)
    rows: list[tuple[object, ...]] = []
    for label in PROTOCOLS.values():
        p, won, fits = measured[label]
        m = probability_metrics(won, p)
        rows.append((name, label, m["deals"], fits, m["auc"], m["brier"], m["ece"], ece_floor(p),
                     float(p.mean()), float(won.mean())))
    note = (f"{name}: deals created from {first.date()} on (training_quality's holdout start); "
            f"{time.perf_counter() - started:.0f} s")
    return rows, [note]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.monthly_replay", description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="*", default=[s.name for s in PUBLIC_SETS], help="public sets to replay")
    options = parser.parse_args()
    rows: list[tuple[object, ...]] = []
    notes: list[str] = []
    for public in PUBLIC_SETS:
        if public.name not in options.sets:
            continue
        if not public.available():
            notes.append(f"{public.name}: skipped, data not found under {DATA_DIR}")
            continue
        set_rows_, set_notes = set_rows(public.name)
        rows += set_rows_
        notes += set_notes
    print(format_table("Monthly retrain replayed on the public sets' holdout periods (each deal scored by the "
                       "model live when it was created)", HEADER, rows, notes))


if __name__ == "__main__":
    main()
