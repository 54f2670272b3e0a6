"""Stale client history: how far p_win drifts from the truth as a model's history ages, scored as the service does
by default (no client history sent: the artifact's, frozen at training, stands in).

    python -m bench stale_history
    python -m bench stale_history -- --deals 100000 --seed 3 --as-of 2024-12-31 --history-lag-days 365 0

The calibration audit behind dealscore/offline.py's STALE_HISTORY_DAYS, as a bench. A synthetic CRM
(training/synthetic_crm.py) is cut at an as-of day T (default: its last created day minus 365 days): a model is
trained with `training.fit.train` on what was known on T (bench.monthly_replay.known_on), then it scores every
deal created from T on that closed (in the full data) from what a CRM sends when a deal is created: no outcome,
no close date, no client history. The same deals are scored again with each client's true history as of the
deal's day sent (won_deals, won_amount, first_won_at, last_won_at, as the contract has a CRM send them): the
gap between the two is what the frozen history costs.

Rows: by months since T, then by the client's true status on the deal's day (from the full data: its wins
closed before that day against the lost window), then all deals. Bias is mean p_win minus the realised win
rate, z that bias over the rate's standard error; mean true p is the generator's own probability, noise-free.
"status read" is the share of deals whose client status, as the model reads it, is the true one.

One table per --history-lag-days (FeatureConfig.history_lag_days): the default, which trains on the age of the
history a deal is read with, and 0, as models were trained before it.

`audit(config, ...)` gives the rows for any TrainConfig, `scored_deals(config, ...)` the per-deal frame behind
them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import roc_auc_score

import training.fit as fit
from bench.monthly_replay import known_on, scored
from bench.tables import format_table
from bench.training_quality import SYNTHETIC_DEALS, SYNTHETIC_SEED, THREADS
from model.dataset import Dataset, dataset_from_frames
from model.features import (
    CLIENT_STATUSES,
    HISTORY_OVERRIDE_COLUMNS,
    FeatureConfig,
    client_statuses,
    day_numbers,
    frame_columns,
)
from model.scorer import ScoringModel
from training.fit import TrainConfig
from training.synthetic_crm import generate

FloatArray = npt.NDArray[np.float64]
Row = tuple[object, ...]

HEADER = ("history", "by", "group", "deals", "mean true p", "mean p", "win rate", "bias", "z", "AUC", "status read")
# Months since T, grouped as the audit read them: the first three one by one (where staleness shows first), then
# by quarter. Deals later than a year (an earlier --as-of) fall in "13+".
MONTH_GROUPS: tuple[tuple[str, int, int], ...] = (
    ("1", 1, 1), ("2", 2, 2), ("3", 3, 3), ("4-6", 4, 6), ("7-9", 7, 9), ("10-12", 10, 12), ("13+", 13, 10**6))
# (history column of the per-deal frame, its rows' name)
HISTORIES = (("frozen", "frozen (not sent)"), ("sent", "true, sent"))
_PROSPECT, _NEW, _REGULAR, _LOST = CLIENT_STATUSES


def default_as_of(deals: pd.DataFrame) -> pd.Timestamp:
    """About a year of deals after it: the last created day minus 365 days."""
    return pd.Timestamp(deals["created_at"].max()).normalize() - pd.Timedelta(days=365)


def months_since(created: pd.Series, as_of: pd.Timestamp) -> pd.Series:
    """Calendar months from `as_of` to each day, counted from 1 (month 1: as_of to the day before a month on)."""
    month = pd.Series(1, index=created.index, dtype=np.int64)
    ahead = 1
    while (later := created >= as_of + pd.DateOffset(months=ahead)).any():
        month += later.astype(np.int64)
        ahead += 1
    return month


def client_history_on(deals: pd.DataFrame, judged: pd.DataFrame) -> pd.DataFrame:
    """Per `judged` deal (same index), its client's wins in `deals` closed strictly before the deal's created day
    (as history features and the generator's truth count them), in the contract's fields: won_deals, won_amount,
    first_won_at, last_won_at. A client with no such win has won_deals 0, won_amount 0 and no dates."""
    wins = deals.loc[(deals["status"] == "won") & deals["client_id"].notna(), ["client_id", "closed_at", "amount"]]
    wins = wins.sort_values("closed_at", kind="stable")
    by_client = wins.groupby("client_id", sort=False)
    # Running totals: the client's last win before a day carries everything won up to it.
    wins = wins.assign(won_deals=by_client.cumcount() + 1.0,
                       won_amount=wins["amount"].fillna(0.0).groupby(wins["client_id"], sort=False).cumsum(),
                       first_won_at=by_client["closed_at"].transform("min"), last_won_at=wins["closed_at"])
    days = judged[["client_id", "created_at"]].reset_index(names="_row").sort_values("created_at", kind="stable")
    found = pd.merge_asof(days, wins.drop(columns=["amount"]), left_on="created_at", right_on="closed_at",
                          by="client_id", allow_exact_matches=False)  # closed the deal's day: not yet known
    history = found.set_index("_row").loc[judged.index, ["won_deals", "won_amount", "first_won_at", "last_won_at"]]
    return history.fillna({"won_deals": 0.0, "won_amount": 0.0})


def client_status(history: pd.DataFrame, created: pd.Series, lost_window_days: int) -> pd.Series:
    """The client status on each deal's day from its history (client_history_on's): prospect without a win, lost
    when the last win is more than `lost_window_days` before the day, else new with one win, regular with more."""
    quiet = (created - history["last_won_at"]).dt.days > lost_window_days
    wins = history["won_deals"]
    return pd.Series(np.select([wins <= 0, quiet, wins == 1], [_PROSPECT, _LOST, _NEW], _REGULAR),
                     index=history.index)


def with_history_sent(deals: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """The deals carrying their client's history as the scorer takes it from a CRM (HISTORY_OVERRIDE_COLUMNS: the
    contract's dates as day numbers), as `dealscore score` reads a deals file's history columns."""
    won_deals, won_amount, first_day, last_day = HISTORY_OVERRIDE_COLUMNS
    sent = deals.copy()
    sent[won_deals], sent[won_amount] = history["won_deals"], history["won_amount"]
    sent[first_day], sent[last_day] = day_numbers(history["first_won_at"]), day_numbers(history["last_won_at"])
    return sent


def statuses_read(model: ScoringModel, deals: pd.DataFrame) -> list[str]:
    """The client status each deal's features read (its sent history, if any, else the model's)."""
    read = client_statuses(model.spec, model.history, frame_columns(deals))
    assert read is not None, "the model keeps no client history"
    return read


def scored_deals(config: TrainConfig, n_deals: int = SYNTHETIC_DEALS, seed: int = SYNTHETIC_SEED,
                 as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """deal_frame of the closed deals created from `as_of` on, scored by a model trained with `config` on what was
    known on `as_of`. attrs: as_of, the model's history end, the closed deals it was trained on, train()'s metrics
    on its own holdout (the latest deals before as_of) and each step's seconds."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    crm = generate(seed=seed, n_deals=n_deals)
    dataset = dataset_from_frames(crm.deals, crm.clients, crm.holdings, for_training=True)
    as_of = default_as_of(dataset.deals) if as_of is None else as_of
    seconds["generate"] = time.perf_counter() - started

    started = time.perf_counter()
    known = known_on(dataset, as_of)
    trained = fit.train(known, config)
    seconds["train"] = time.perf_counter() - started

    started = time.perf_counter()
    frame = deal_frame(trained.model, dataset, crm.deal_truth, as_of, config.features.lost_window_days)
    seconds["score"] = time.perf_counter() - started
    frame.attrs.update(as_of=as_of, history_end=pd.Timestamp(int(trained.model.history.last_day), unit="D"),
                       training_deals=int(known.deals["status"].isin(["won", "lost"]).sum()),
                       holdout=trained.report["metrics"]["model"],
                       holdout_from=trained.report["split"]["holdout_from"], seconds=seconds)
    return frame


def deal_frame(model: ScoringModel, dataset: Dataset, truth: pd.DataFrame, as_of: pd.Timestamp,
               lost_window_days: int) -> pd.DataFrame:
    """The dataset's closed deals created from `as_of` on, by day, each with: months (since as_of), status (its
    client's true one), won, true_p (`truth`'s true_p_win), p_frozen and p_sent (p_win without and with the true
    history sent), status_frozen and status_sent (as the model read them)."""
    deals = dataset.deals
    judged = deals[deals["status"].isin(["won", "lost"]) & (deals["created_at"] >= as_of)]
    judged = judged.sort_values(["created_at", "deal_id"], kind="stable").reset_index(drop=True)
    history = client_history_on(deals, judged)
    sent = with_history_sent(judged, history)
    frame = pd.DataFrame({
        "deal_id": judged["deal_id"], "client_id": judged["client_id"], "created_at": judged["created_at"],
        "months": months_since(judged["created_at"], as_of),
        "status": client_status(history, judged["created_at"], lost_window_days),
        "won": (judged["status"] == "won").astype(np.float64),
        "true_p": judged[["deal_id"]].merge(truth, on="deal_id", how="left")["true_p_win"].to_numpy(),
        "p_frozen": scored(model, judged, dataset.clients), "p_sent": scored(model, sent, dataset.clients),
        "status_frozen": statuses_read(model, judged), "status_sent": statuses_read(model, sent),
    })
    # The history sent is the truth the status groups are cut by: read back, it must give the same statuses.
    assert (frame["status_sent"] == frame["status"]).all(), "the history sent is not read as the true status"
    return frame


def group_row(history: str, by: str, group: str, deals: pd.DataFrame, p: FloatArray, read: pd.Series) -> Row:
    won = deals["won"].to_numpy()
    rate, mean_p = float(won.mean()), float(p.mean())
    error = np.sqrt(rate * (1.0 - rate) / won.size)
    z = float((mean_p - rate) / error) if error > 0 else float("nan")
    auc = float(roc_auc_score(won, p)) if 0 < won.sum() < won.size else float("nan")
    return (history, by, group, int(won.size), float(deals["true_p"].mean()), mean_p, rate, mean_p - rate, z, auc,
            float((read == deals["status"]).mean()))


def summary_rows(frame: pd.DataFrame) -> list[Row]:
    """scored_deals' frame by months since the as-of day, by true client status, and all, for each history."""
    rows: list[Row] = []
    for history, name in HISTORIES:
        groups = [("months", label, frame["months"].between(first, last)) for label, first, last in MONTH_GROUPS]
        groups += [("true status", status, frame["status"] == status) for status in CLIENT_STATUSES]
        # Cut by what the model can know: a frozen history cannot tell a client that lapsed from one whose wins
        # since it does not see, so its p_win averages the two (calibrated here, not within the true statuses).
        groups += [("read status", status, frame[f"status_{history}"] == status) for status in CLIENT_STATUSES
                   if history == "frozen"]
        groups.append(("all", "all", pd.Series(True, index=frame.index)))
        for by, label, inside in groups:
            if inside.any():
                part = frame[inside]
                rows.append(group_row(name, by, label, part, part[f"p_{history}"].to_numpy(),
                                      part[f"status_{history}"]))
    return rows


def audit(config: TrainConfig, n_deals: int = SYNTHETIC_DEALS, seed: int = SYNTHETIC_SEED,
          as_of: pd.Timestamp | None = None) -> list[Row]:
    """The bench's rows (HEADER) for a model trained with `config`."""
    return summary_rows(scored_deals(config, n_deals, seed, as_of))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stale_history", description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=SYNTHETIC_DEALS, help="deals in the synthetic CRM")
    parser.add_argument("--seed", type=int, default=SYNTHETIC_SEED, help="the synthetic CRM's seed")
    parser.add_argument("--as-of", type=pd.Timestamp, default=None,
                        help="the training day T (default: the last created day minus 365 days)")
    parser.add_argument("--history-lag-days", type=int, nargs="+", default=[FeatureConfig().history_lag_days, 0],
                        help="train once per value (FeatureConfig.history_lag_days; 0: off)")
    options = parser.parse_args()
    for lag_days in options.history_lag_days:
        config = TrainConfig(threads=THREADS, features=FeatureConfig(history_lag_days=lag_days))
        print(lag_table(scored_deals(config, options.deals, options.seed, options.as_of), options, lag_days))


def lag_table(frame: pd.DataFrame, options: argparse.Namespace, lag_days: int) -> str:
    attrs = frame.attrs
    timing = ", ".join(f"{step} {s:.0f} s" for step, s in attrs["seconds"].items())
    notes = [
        f"generate(seed={options.seed}, n_deals={options.deals:,}); trained on the {attrs['training_deals']:,} closed "
        f"deals known on {attrs['as_of'].date()} (history ends {attrs['history_end'].date()}); {len(frame):,} closed "
        f"deals created from then on scored; {timing}",
        f"train()'s own holdout (the latest closed deals known on T, created from {attrs['holdout_from']}): mean p "
        f"{attrs['holdout']['mean_p']:.4f}, win rate {attrs['holdout']['win_rate']:.4f} (the bias before staleness)",
        "z: bias over the win rate's standard error; status read: share of deals whose client status as the model "
        "reads it is the true one",
    ]
    return format_table(f"Stale client history: p_win of the deals after a model's training day T = "
                        f"{attrs['as_of'].date()}, history frozen or sent; trained with history_lag_days={lag_days}",
                        HEADER, summary_rows(frame), notes)


if __name__ == "__main__":
    main()
