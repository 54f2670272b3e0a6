"""bench/monthly_replay.py: each deal scored by the model trained on what was known before its month."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.monthly_replay import every_outcome, known_on, month_starts, replay, scored
from model.dataset import Dataset
from training.fit import TrainConfig, train


def test_known_on_holds_what_an_export_made_that_day_holds(small_dataset: Dataset) -> None:
    deals = small_dataset.deals
    day = pd.Timestamp(deals["created_at"].sort_values().iloc[int(len(deals) * 0.8)]).normalize()
    known = known_on(small_dataset, day).deals.set_index("deal_id")
    before = deals[deals["created_at"] < day].set_index("deal_id")
    assert set(known.index) == set(before.index)  # nothing created on or after the day
    closed_later = before["closed_at"] >= day
    assert closed_later.any() and (before["closed_at"] < day).any()
    assert (known.loc[closed_later[closed_later].index, "status"] == "open").all()
    assert known.loc[closed_later[closed_later].index, "closed_at"].isna().all()
    kept = before[before["closed_at"] < day].index
    assert (known.loc[kept, "status"] == before.loc[kept, "status"]).all()
    assert known_on(small_dataset, day).holdings is None


def test_month_starts_begin_at_the_holdout_then_each_first_of_the_month() -> None:
    starts = month_starts(pd.Timestamp("2025-09-18"), pd.Timestamp("2025-12-03"))
    assert starts == [pd.Timestamp(d) for d in ("2025-09-18", "2025-10-01", "2025-11-01", "2025-12-01")]


@pytest.fixture(scope="module")
def start(small_dataset: Dataset) -> pd.Timestamp:
    closed = small_dataset.deals[small_dataset.deals["status"].isin(["won", "lost"])]
    return pd.Timestamp(closed["created_at"].max() - pd.Timedelta(days=45)).normalize()


def test_monthly_replay_scores_each_month_with_that_months_model(small_dataset: Dataset, start: pd.Timestamp) -> None:
    config = TrainConfig()
    monthly, won, fits = replay(small_dataset, config, start, monthly=True)
    once, won_once, one = replay(small_dataset, config, start, monthly=False)
    deals = small_dataset.deals
    judged = deals[deals["status"].isin(["won", "lost"]) & (deals["created_at"] >= start)]
    assert one == 1 and fits == len(month_starts(start, judged["created_at"].max())) >= 2
    assert won.size == len(judged) and np.array_equal(won, won_once)
    assert won.mean() == pytest.approx((judged["status"] == "won").mean())
    # The first month is scored by the model trained at the start under both protocols; later ones are not.
    first_month = int((judged["created_at"] < month_starts(start, judged["created_at"].max())[1]).sum())
    assert 0 < first_month < won.size
    np.testing.assert_array_equal(monthly[False][:first_month], once[False][:first_month])
    assert not np.allclose(monthly[False][first_month:], once[False][first_month:])


def test_every_outcome_history_sees_no_outcome_later_than_the_deal(small_dataset: Dataset,
                                                                   start: pd.Timestamp) -> None:
    model = train(known_on(small_dataset, start)).model
    fed = every_outcome(model, small_dataset)
    deals = small_dataset.deals
    on_start = deals[deals["created_at"].dt.normalize() == start]
    later = deals[deals["created_at"] >= start + pd.Timedelta(days=30)]
    assert len(on_start) and len(later)
    # On the training day both histories hold the same outcomes: every one known before that day.
    np.testing.assert_allclose(scored(fed, on_start, small_dataset.clients),
                               scored(model, on_start, small_dataset.clients), rtol=0, atol=1e-12)
    # A month on, the outcomes that came in since training move the as-of win rates.
    assert not np.allclose(scored(fed, later, small_dataset.clients), scored(model, later, small_dataset.clients))
