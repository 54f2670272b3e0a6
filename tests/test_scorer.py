"""What a score says about single deals: value and its source, value per hour and class D, reasons."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from model.dataset import Dataset
from model.features import attach_clients, build_features, frame_columns, unsent_features
from model.scorer import ScoreBatch, ValueModel
from training.fit import TrainingResult


def _open_deals(dataset: Dataset, n: int) -> pd.DataFrame:
    return dataset.deals[dataset.deals["status"] == "open"].head(n).copy()


def _scored(trained: TrainingResult, dataset: Dataset, deals: pd.DataFrame, n_reasons: int = 5) -> ScoreBatch:
    return trained.model.score(frame_columns(attach_clients(deals, dataset.clients)), n_reasons=n_reasons)


def test_a_batch_mixing_quoted_and_unquoted_deals_says_where_each_value_comes_from(
        trained: TrainingResult, small_dataset: Dataset) -> None:
    deals = _open_deals(small_dataset, 2)
    deals["amount"] = [1000.0, np.nan]
    batch = _scored(trained, small_dataset, deals)
    assert batch.value_source == ["amount", "model"]
    assert batch.value[0] == 1000.0 and batch.value[1] > 0


def test_a_deal_scores_the_same_to_the_last_bit_alone_and_in_a_batch(
        trained: TrainingResult, small_dataset: Dataset) -> None:
    # A few deals are summed from their leaves, a batch of more by LightGBM's predict; the service scores
    # requests that wait together, so two requests for one deal must not differ in the last digits.
    deals = _open_deals(small_dataset, 20)
    deals["amount"] = np.nan  # the value model's value, the regression read both ways
    batch = _scored(trained, small_dataset, deals)
    for i in (0, 7, 19):
        alone = _scored(trained, small_dataset, deals.iloc[[i]])
        assert (alone.p_win[0], alone.value[0], alone.expected_value[0]) == (
            batch.p_win[i], batch.value[i], batch.expected_value[i])


def test_deals_not_worth_their_hours_are_d_and_zero_hours_have_no_value_per_hour(
        trained: TrainingResult, small_dataset: Dataset) -> None:
    floor = trained.model.cutoffs.d_floor_per_hour
    assert floor is not None and floor > 0
    deals = _open_deals(small_dataset, 5)
    deals["effort_hours"] = 10_000.0
    batch = _scored(trained, small_dataset, deals)
    assert (batch.value_per_hour <= floor).all() and batch.grade == ["D"] * 5
    # 0 hours is allowed by the contract, but a value per hour of it is not a number to rank by.
    deals["effort_hours"] = 0.0
    batch = _scored(trained, small_dataset, deals)
    assert np.isnan(batch.value_per_hour).all() and "D" not in batch.grade


def test_reasons_show_a_missing_category_as_null_and_never_a_push_of_zero(
        trained: TrainingResult, small_dataset: Dataset) -> None:
    deals = _open_deals(small_dataset, 20)
    # competitor is missing in most training deals (the trees learnt what that means); source in none, so a deal
    # without it has it averaged out of the trees (model/unsent_paths.py): no push, no reason.
    assert "competitor" not in trained.model.spec.always_sent and "source" in trained.model.spec.always_sent
    deals["competitor"] = np.nan
    deals["source"] = np.nan
    names = trained.model.spec.names
    batch = _scored(trained, small_dataset, deals, n_reasons=len(names))
    shown = [r for reasons in batch.reasons for r in reasons]
    assert {r.value for r in shown if r.feature == "competitor"} == {None}
    assert not [r for r in shown if r.feature == "source"]
    assert all(r.effect != 0.0 for r in shown)
    # Every feature asked for, yet some never push these deals (the trees do not split on them).
    assert min(len(reasons) for reasons in batch.reasons) < len(names)


def test_a_text_column_is_one_reason_pushing_as_all_its_features_together(
        trained: TrainingResult, small_dataset: Dataset) -> None:
    """product, product_win_rate and product_by_industry_win_rate... are one input: apart, they took two of five
    places for one deal, often in opposite directions, and a level not sent showed as the overall win rate."""
    model = trained.model
    spec = model.spec
    assert spec.pairs and "product" in spec.categorical
    deals = _open_deals(small_dataset, 200)
    deals.loc[deals.index[:20], ["source", "competitor"]] = np.nan
    columns = frame_columns(attach_clients(deals, small_dataset.clients))
    batch = model.score(columns, n_reasons=len(spec.names))
    shown = [r for reasons in batch.reasons for r in reasons]
    assert not [r.feature for r in shown if r.feature.endswith("_win_rate") and r.feature not in (
        "overall_win_rate", "recent_win_rate", "client_win_rate")]
    # Each column's push is the sum of its features' pushes, as the engine credits them.
    features = build_features(spec, model.history, model.with_known_clients(columns))
    _, contributions = model.win_model.margin_and_contributions(features, unsent_features(spec, features))
    pushes = contributions[:, :-1] * model.calibration.slope
    product = [spec.names.index(name) for name in spec.names
               if name == "product" or name == "product_win_rate" or name.startswith("product_by_")]
    assert len(product) == 2 + sum(a == "product" for a, _ in spec.pairs)
    for row, reasons in enumerate(batch.reasons):
        effect = {r.feature: r.effect for r in reasons}
        assert effect.get("product", 0.0) == pytest.approx(round(pushes[row, product].sum(), 4), abs=1e-12)
    # A level not sent shows as null; where the trees never saw the column missing (source) it is averaged out
    # of them (model/unsent_paths.py) and pushes nothing.
    assert {r.value for reasons in batch.reasons[:20] for r in reasons if r.feature == "competitor"} == {None}
    assert not [r for reasons in batch.reasons[:20] for r in reasons if r.feature == "source"]


def test_the_expected_amount_is_the_typical_one_plus_one_times_the_spread_less_one() -> None:
    # The regression is of log(1 + amount): E[1 + amount] = (1 + typical) x spread.
    import lightgbm as lgb

    # Every won deal at 1,000: the trees predict log(1 + 1000) for any deal.
    booster = lgb.train({"objective": "regression", "verbose": -1, "min_data_in_leaf": 1},
                        lgb.Dataset(np.arange(50.0).reshape(-1, 1), np.full(50, np.log1p(1000.0))), num_boost_round=1)
    for deals in (1, 40):  # the single-row path and `predict`
        typical, expected = ValueModel(booster, [0], spread=1.9).typical_and_expected(np.zeros((deals, 1)))
        np.testing.assert_allclose(typical, 1000.0)
        np.testing.assert_allclose(expected, 1001.0 * 1.9 - 1.0)


def test_a_level_the_model_fills_in_for_a_client_it_knows_is_not_named_unseen(
        trained: TrainingResult, small_dataset: Dataset) -> None:
    """A client of the training clients table that no training deal had keeps its attributes in the model's
    record, levels no deal had among them ("mining"). A deal sending only its client_id had `unseen` name
    industry, which it never sent: the CRM was told to check the spelling of the model's own record. A deal that
    sends the level is still told."""
    known = next(iter(trained.model.clients.values()))
    model = dataclasses.replace(trained.model, clients={**trained.model.clients,
                                                        "ZZ-NEW": {**known, "industry": "mining"}})
    assert "mining" not in model.spec.level_keys["industry"]
    deal = _open_deals(small_dataset, 1).assign(client_id="ZZ-NEW").drop(columns=["industry", "size", "region"],
                                                                            errors="ignore")
    assert model.score(frame_columns(deal)).unseen == [[]]
    assert model.score(frame_columns(deal.assign(industry="mining"))).unseen == [["industry"]]


def test_unseen_names_every_deal_with_a_level_never_seen_alone_or_in_a_batch(
        trained: TrainingResult, small_dataset: Dataset) -> None:
    """A batch (over 64 deals) and a few deals take different paths through unseen_inputs; both name each deal
    that sent an unknown level, however many do, and read on past a text input not sent at all (a mutation
    audit: stopping at the first deal, or at the first input not sent, survived every test)."""
    spec = trained.model.spec
    deals = attach_clients(_open_deals(small_dataset, 70), small_dataset.clients).drop(columns="product")
    assert spec.categorical[0] == "product"  # not sent: the inputs after it are still read
    deals["campaign_code"] = min(spec.level_keys["campaign_code"])
    deals["source"] = deals["source"].astype(object)
    rows = deals.index
    deals.loc[rows[[3, 40]], "source"] = "referal"
    deals.loc[rows[[10, 11]], "source"] = [None, np.nan]
    deals.loc[rows[[3, 5, 66]], "competitor"] = "Atlas Finanse"
    expected: list[list[str]] = [[] for _ in range(70)]
    for i in (3, 40):
        expected[i].append("source")
    for i in (3, 5, 66):
        expected[i].append("competitor")
    assert trained.model.score(frame_columns(deals)).unseen == expected
    in_sevens = [inputs for start in range(0, 70, 7)
                 for inputs in trained.model.score(frame_columns(deals.iloc[start:start + 7])).unseen]
    assert in_sevens == expected


def test_a_deal_without_created_at_is_scored_as_of_the_utc_date_in_any_time_zone(
        trained: TrainingResult, small_dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service dates such a deal by the UTC date; the scorer (and so `dealscore score`) took the machine's
    local one (numpy's "today"), a day apart from the service's for part of every day west or east of UTC (the
    dates audit: TZ=Pacific/Honolulu scored as of 2026-12-06 while the service used 2026-12-07)."""
    import time
    from datetime import UTC, datetime, timedelta

    utc = datetime.now(UTC)
    # A zone whose date differs from UTC's right now: 14 hours ahead or 11 behind, one of them always does.
    zone = "Pacific/Kiritimati" if (utc + timedelta(hours=14)).date() != utc.date() else "Pacific/Pago_Pago"
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        deals = small_dataset.deals[small_dataset.deals["status"] == "open"].head(20)
        columns = frame_columns(attach_clients(deals, small_dataset.clients))
        undated = {**columns, "created_day": np.full(len(deals), np.nan)}
        dated = {**columns, "created_day": np.full(len(deals), float(np.datetime64(datetime.now(UTC).date(), "D")
                                                                  .astype(np.int64)))}
        np.testing.assert_array_equal(trained.model.score(undated).p_win, trained.model.score(dated).p_win)
    finally:
        monkeypatch.undo()  # the zone this process had, read again
        time.tzset()
