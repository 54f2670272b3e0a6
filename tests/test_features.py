"""As-of features: a deal's features never depend on anything dated on or after its creation day."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from portfolios import hand_count_portfolio

from model.errors import ContractViolation
from model.features import (
    TENURE,
    DealHistory,
    FeatureConfig,
    FeatureSpec,
    attach_clients,
    build_features,
    client_statuses,
    fit_feature_spec,
    frame_columns,
)
from training.fit import TrainingResult
from training.synthetic_crm import SyntheticCRM


def _joined(crm: SyntheticCRM) -> pd.DataFrame:
    deals = attach_clients(crm.deals, crm.clients)
    return deals.sort_values(["created_at", "deal_id"], kind="stable").reset_index(drop=True)


def _features(spec_source: pd.DataFrame, history_source: pd.DataFrame, asked: pd.DataFrame) -> np.ndarray:
    spec = fit_feature_spec(spec_source, FeatureConfig(), {"source": "text", "campaign_code": "text",
                                                            "competitor": "text"})
    history = DealHistory(spec, frame_columns(history_source))
    return build_features(spec, history, frame_columns(asked))


def test_deleting_later_deals_never_changes_earlier_features(small_crm: SyntheticCRM) -> None:
    deals = _joined(small_crm)
    cut = deals["created_at"].quantile(0.6)
    earlier = deals[deals["created_at"] < cut]
    with_future = _features(earlier, deals, earlier)
    without_future = _features(earlier, earlier, earlier)
    np.testing.assert_array_equal(with_future, without_future)


def test_appending_later_deals_never_changes_earlier_features(small_crm: SyntheticCRM) -> None:
    deals = _joined(small_crm)
    cut = deals["created_at"].quantile(0.5)
    earlier = deals[deals["created_at"] < cut]
    # Deals from the future of the same clients and products, all won, with huge amounts.
    future = earlier.sample(500, random_state=1).copy()
    future["deal_id"] = "F" + future["deal_id"].astype(str)
    future["created_at"] = cut + pd.Timedelta(days=1)
    future["closed_at"] = cut + pd.Timedelta(days=2)
    future["status"] = "won"
    future["amount"] = 1e9
    appended = pd.concat([earlier, future], ignore_index=True)
    np.testing.assert_array_equal(_features(earlier, appended, earlier), _features(earlier, earlier, earlier))


def test_a_deal_closed_on_the_query_day_is_not_yet_known(small_crm: SyntheticCRM) -> None:
    deals = _joined(small_crm)
    target = deals[deals["client_id"].notna()].iloc[[len(deals) // 2]].copy()
    same_day_win = target.copy()
    same_day_win["deal_id"] = "same-day"
    same_day_win["closed_at"] = target["created_at"].to_numpy()
    same_day_win["created_at"] = target["created_at"].to_numpy() - np.timedelta64(10, "D")
    same_day_win["status"] = "won"
    history = pd.concat([deals, same_day_win], ignore_index=True)
    spec = fit_feature_spec(deals, FeatureConfig(), {})
    won_col = spec.names.index("client_won_deals")
    before = build_features(spec, DealHistory(spec, frame_columns(deals)), frame_columns(target))[0, won_col]
    after = build_features(spec, DealHistory(spec, frame_columns(history)), frame_columns(target))[0, won_col]
    assert before == after
    next_day = target.copy()
    next_day["created_at"] = target["created_at"].to_numpy() + np.timedelta64(1, "D")
    later = build_features(spec, DealHistory(spec, frame_columns(history)), frame_columns(next_day))[0, won_col]
    assert later >= before + 1


def test_client_rfm_features_match_a_hand_count() -> None:
    deals = hand_count_portfolio(pd.Timestamp("2024-01-01"))
    spec = fit_feature_spec(deals, FeatureConfig(lost_window_days=60), {})
    history = DealHistory(spec, frame_columns(deals))
    row = build_features(spec, history, frame_columns(deals.iloc[[3]]))[0]
    value = dict(zip(spec.names, row, strict=True))
    assert value["client_won_deals"] == 2
    assert value["client_won_amount"] == 400.0
    assert value["client_closed_deals"] == 3
    assert value["client_days_since_last_win"] == 100 - 30
    assert value["client_days_since_first_win"] == 100 - 5
    assert value["client_status"] == 3  # two wins, but none in the last 60 days: lost
    assert value["client_product_deals"] == 2  # a (won) and b (lost) were product x
    assert value["client_product_wins"] == 1
    # Product x before day 100: a won, b lost, e won (other client): 2 of 3, smoothed towards 3 of 4 overall.
    prior = 3 / 4
    assert value["product_win_rate"] == pytest.approx((2 + 20 * prior) / (3 + 20))
    # The client's own win rate leans towards the team's rate too (not towards 0.5): 2 of 3, 20 pseudo-deals.
    assert value["client_win_rate"] == pytest.approx((2 + 20 * prior) / (3 + 20))


def test_sent_history_replaces_the_models_as_a_whole() -> None:
    """A CRM that sends 0 wins for client k must not get the model's 'last win 70 days ago' with it."""
    day = pd.Timestamp("2024-01-01")
    deals = pd.DataFrame({
        "deal_id": ["a", "b", "c", "d"], "client_id": ["k", "k", "k", "k"],
        "created_at": [day, day + pd.Timedelta(days=10), day + pd.Timedelta(days=20), day + pd.Timedelta(days=100)],
        "closed_at": [day + pd.Timedelta(days=5), day + pd.Timedelta(days=15), day + pd.Timedelta(days=30), pd.NaT],
        "status": ["won", "lost", "won", "open"], "amount": [100.0, 50.0, 300.0, 80.0],
        "product": ["x", "x", "x", "x"],
    })
    spec = fit_feature_spec(deals, FeatureConfig(lost_window_days=60), {})
    history = DealHistory(spec, frame_columns(deals))
    columns = frame_columns(deals.iloc[[3, 3]])
    columns["won_deals"] = np.array([0.0, 5.0])
    columns["won_amount"] = np.array([np.nan, 900.0])
    columns["first_won_day"] = np.array([np.nan, float((day - pd.Timestamp(0)).days) - 200])
    columns["last_won_day"] = np.array([np.nan, float((day - pd.Timestamp(0)).days) + 90])
    rows = build_features(spec, history, columns)
    none, five = (dict(zip(spec.names, row, strict=True)) for row in rows)
    assert none["client_won_deals"] == 0 and none["client_won_amount"] == 0.0
    assert np.isnan(none["client_days_since_last_win"]) and np.isnan(none["client_days_since_first_win"])
    assert none["client_status"] == 0  # a prospect, as sent
    assert none["client_closed_deals"] == 1  # the model's one lost deal; its wins are replaced by none
    assert none["client_product_wins"] == 0  # no product wins without wins
    assert none["client_product_deals"] == 1  # the product's lost deal b; its wins a and c are replaced
    assert (five["client_won_deals"], five["client_won_amount"], five["client_closed_deals"]) == (5, 900.0, 6)
    assert five["client_days_since_last_win"] == 10 and five["client_status"] == 2


def test_product_by_segment_win_rates_match_a_hand_count() -> None:
    day = pd.Timestamp("2024-01-01")
    deals = pd.DataFrame({
        "deal_id": ["a", "b", "c", "d", "e", "f"],
        "client_id": ["k", "k", "m", "k", "n", "k"],
        "created_at": [day, day + pd.Timedelta(days=10), day, day + pd.Timedelta(days=100), day,
                       day + pd.Timedelta(days=100)],
        "closed_at": [day + pd.Timedelta(days=5), day + pd.Timedelta(days=15), day + pd.Timedelta(days=3), pd.NaT,
                      day + pd.Timedelta(days=1), pd.NaT],
        "status": ["won", "lost", "lost", "open", "won", "open"],
        "amount": [100.0, 50.0, 300.0, 80.0, 7.0, 9.0],
        "product": ["x", "x", "y", "x", "x", "x"],
        "industry": ["retail", "retail", "retail", "retail", "food", "mining"],
    })
    spec = fit_feature_spec(deals, FeatureConfig(), {})
    assert spec.pairs == [("product", "industry")]
    rows = build_features(spec, DealHistory(spec, frame_columns(deals)), frame_columns(deals.iloc[[3, 5]]))
    value, unseen_pair = (dict(zip(spec.names, row, strict=True)) for row in rows)
    # Before day 100, product x: a won, b lost (retail), e won (food); 2 wins in 4 closed deals overall.
    product_rate = (2 + 20 * 2 / 4) / (3 + 20)
    assert value["product_win_rate"] == pytest.approx(product_rate)
    # x in retail: a won, b lost; smoothed towards product x's own rate, not the overall one.
    assert value["product_by_industry_win_rate"] == pytest.approx((1 + 20 * product_rate) / (2 + 20))
    # x in mining has no earlier deal: the pair's rate is the product's.
    assert unseen_pair["product_by_industry_win_rate"] == pytest.approx(product_rate)
    without_pairs = fit_feature_spec(deals, FeatureConfig(product_pairs=()), {})
    assert not any(name.endswith("_by_industry_win_rate") for name in without_pairs.names)


def test_level_pair_rates_match_a_brute_force_count(small_crm: SyntheticCRM) -> None:
    """Every pair (product with industry, size, region) and every product, counted by hand from the deals."""
    deals = _joined(small_crm)
    spec = fit_feature_spec(deals, FeatureConfig(), {})
    assert spec.pairs == [("product", "industry"), ("product", "size"), ("product", "region")]
    asked = deals.iloc[np.linspace(len(deals) // 3, len(deals) - 1, 60).astype(int)]
    features = build_features(spec, DealHistory(spec, frame_columns(deals)), frame_columns(asked))
    closed = deals[deals["status"].isin(["won", "lost"])]
    smoothing = spec.config.smoothing
    for row, deal in zip(features, asked.itertuples(index=False), strict=True):
        value = dict(zip(spec.names, row, strict=True))
        before = closed[closed["closed_at"] < deal.created_at]
        same_product = before[before["product"] == deal.product]
        product_rate = ((same_product["status"] == "won").sum() + smoothing * value["overall_win_rate"]) / (
            len(same_product) + smoothing)
        assert value["product_win_rate"] == pytest.approx(product_rate, rel=1e-12)
        for column in ("industry", "size", "region"):
            pair = same_product[same_product[column] == getattr(deal, column)]
            expected = ((pair["status"] == "won").sum() + smoothing * product_rate) / (len(pair) + smoothing)
            assert value[f"product_by_{column}_win_rate"] == pytest.approx(expected, rel=1e-12)


def test_a_deal_without_a_created_day_is_a_clear_error(trained: TrainingResult) -> None:
    model = trained.model
    columns = {"deal_id": np.array(["a", "b"], dtype=object), "created_day": np.array([19000.0, np.nan])}
    with pytest.raises(ContractViolation) as caught:
        build_features(model.spec, model.history, columns)
    assert caught.value.problems[0].field == "created_at" and caught.value.problems[0].rows == (1,)


def test_a_deal_gets_the_same_features_alone_as_in_a_large_batch(small_crm: SyntheticCRM) -> None:
    """Small batches take a plain-Python path to the level codes and large ones pandas' factorize: both
    must give every deal the same features, for known, unseen and missing levels and an absent column."""
    deals = _joined(small_crm)
    spec = fit_feature_spec(deals, FeatureConfig(), {"source": "text", "campaign_code": "text", "competitor": "text"})
    history = DealHistory(spec, frame_columns(deals))
    asked = deals.iloc[np.linspace(0, len(deals) - 1, 200).astype(int)].copy()
    asked["product"] = asked["product"].astype(object)
    asked.iloc[::5, asked.columns.get_loc("product")] = "a product never seen"
    asked.iloc[1::5, asked.columns.get_loc("industry")] = None
    asked.iloc[2::5, asked.columns.get_loc("source")] = np.nan
    columns = frame_columns(asked.drop(columns=["competitor"]))
    columns["region"] = columns["region"].copy()
    columns["region"][3::5] = pd.NA  # as a nullable string column reads; missing in both paths
    together = build_features(spec, history, columns)
    alone = np.vstack([build_features(spec, history, {name: values[i:i + 1] for name, values in columns.items()})
                       for i in range(len(asked))])
    np.testing.assert_array_equal(together, alone)
    assert np.isnan(together[:, spec.names.index("competitor")]).all()
    unseen = together[::5, spec.names.index("product")]
    assert (unseen == len(spec.vocab["product"])).all()  # the shared code of rare and unseen levels
    assert np.isnan(together[3::5, spec.names.index("region")]).all()


def _one_client(rows: list[tuple[str, int, int | None, str, float]],
                **config: Any) -> tuple[FeatureSpec, DealHistory]:
    """Deals of client k as (deal_id, created day, closed day or None, status, amount), days from 2024-01-01;
    the feature spec and history fitted on them."""
    day = pd.Timestamp("2024-01-01")
    deals = pd.DataFrame({
        "deal_id": [r[0] for r in rows], "client_id": "k",
        "created_at": [day + pd.Timedelta(days=r[1]) for r in rows],
        "closed_at": [day + pd.Timedelta(days=r[2]) if r[2] is not None else pd.NaT for r in rows],
        "status": [r[3] for r in rows], "amount": [r[4] for r in rows], "product": "x"})
    spec = fit_feature_spec(deals, FeatureConfig(**config), {})
    return spec, DealHistory(spec, frame_columns(deals))


def _features_on(spec: FeatureSpec, history: DealHistory, day: int, **values: object) -> dict[str, float]:
    deal = pd.DataFrame({"deal_id": ["asked"], "client_id": ["k"], "product": ["x"],
                         "created_at": [pd.Timestamp("2024-01-01") + pd.Timedelta(days=day)], **{
                             k: [v] for k, v in values.items()}})
    row = build_features(spec, history, frame_columns(deal))[0]
    return dict(zip(spec.names, row.tolist(), strict=True))


def test_a_win_closed_on_the_deals_own_day_is_not_yet_in_its_recency() -> None:
    spec, history = _one_client([("a", 0, 30, "won", 100.0)])
    same_day = _features_on(spec, history, 30)
    assert same_day["client_won_deals"] == 0
    assert np.isnan(same_day["client_days_since_last_win"]) and np.isnan(same_day["client_days_since_first_win"])
    next_day = _features_on(spec, history, 31)
    assert next_day["client_won_deals"] == 1
    assert next_day["client_days_since_last_win"] == next_day["client_days_since_first_win"] == 1


def test_client_status_at_the_edges_of_the_lost_window() -> None:
    # Status codes: 0 no earlier win, 1 new (one), 2 regular (two or more), 3 lost (no win within the window).
    spec, history = _one_client([("a", 0, 5, "won", 100.0), ("b", 0, 10, "won", 50.0)], lost_window_days=150)
    assert _features_on(spec, history, 160)["client_status"] == 2  # last win exactly 150 days before: not lost
    assert _features_on(spec, history, 161)["client_status"] == 3
    spec, history = _one_client([("a", 0, 10, "won", 100.0), ("b", 0, 12, "lost", 80.0)], lost_window_days=150)
    assert _features_on(spec, history, 20)["client_status"] == 1
    assert _features_on(spec, history, 10)["client_status"] == 0


def test_the_default_lost_window_is_360_days() -> None:
    """docs/domain.md: a client with no win within 360 days (by default) is lost."""
    spec, history = _one_client([("a", 0, 5, "won", 100.0), ("b", 0, 10, "won", 50.0)])
    assert spec.config.lost_window_days == 360
    assert _features_on(spec, history, 370)["client_status"] == 2  # last win exactly 360 days before
    assert _features_on(spec, history, 371)["client_status"] == 3


def test_the_default_recent_window_is_365_days() -> None:
    """docs/domain.md: the recent win rate is the last 365 days' (by default): a loss 280 days before the deal is
    in it, a win 80 days before too; the loss 20 days past the window's start would be out of a half-year one."""
    spec, history = _one_client([("l", 0, 100, "lost", 1.0), ("w", 0, 300, "won", 1.0)])
    assert spec.config.recent_window_days == 365
    smoothing = spec.config.smoothing
    assert _features_on(spec, history, 380)["recent_win_rate"] == pytest.approx((1 + smoothing * 0.5) / (2 + smoothing))


def test_a_status_read_at_the_end_of_the_day_before_counts_the_days_to_it() -> None:
    """/v1/gaps reads a client's status today at the end of yesterday: a win exactly the lost window before
    yesterday still counts, one day more does not (client_statuses(..., end_of_day_before=True))."""
    spec, history = _one_client([("a", 0, 5, "won", 100.0), ("b", 0, 10, "won", 50.0)], lost_window_days=150)

    def status(day: int) -> str:
        asked = pd.DataFrame({"deal_id": ["asked"], "client_id": ["k"],
                              "created_at": [pd.Timestamp("2024-01-01") + pd.Timedelta(days=day)]})
        statuses = client_statuses(spec, history, frame_columns(asked), end_of_day_before=True)
        assert statuses is not None
        return statuses[0]

    assert status(161) == "regular"  # the end of day 160: the last win (day 10) exactly 150 days before
    assert status(162) == "lost"


def test_the_recent_window_of_a_deal_after_the_history_ends_is_the_historys_last_one() -> None:
    """A model serves for months after its data ends: a deal scored then reads the win rate of the history's
    last window, not of the part of its own window the history reaches (which shrinks to its last few days)."""
    lost = [(f"l{i}", 10 * i, 10 * i + 5, "lost", 1.0) for i in range(10)]  # closed on days 5 to 95
    won = [(f"w{i}", 100 + 10 * i, 100 + 10 * i + 5, "won", 1.0) for i in range(10)]  # days 105 to 195
    late = [("late", 190, 196, "lost", 1.0)]  # the history's last day: 196
    spec, history = _one_client(lost + won + late, recent_window_days=100)
    at_end = _features_on(spec, history, 197)  # window: days 97 to 196, 10 won and 1 lost
    smoothing = spec.config.smoothing
    assert at_end["recent_win_rate"] == pytest.approx((10 + smoothing * 10 / 21) / (11 + smoothing))
    for later in (240, 400):  # the window held at the history's end, not days 140-239 (5 won, 1 lost) or none
        features = _features_on(spec, history, later)
        assert (features["recent_win_rate"], features["overall_win_rate"]) == (
            at_end["recent_win_rate"], at_end["overall_win_rate"])
    within = _features_on(spec, history, 150)  # inside the history nothing changes: days 50 to 149, 5 won of 10
    assert within["recent_win_rate"] == pytest.approx((5 + smoothing * 5 / 15) / (10 + smoothing))


def test_a_number_not_sent_is_the_closed_deals_median() -> None:
    spec, history = _one_client([("a", 0, 5, "won", 100.0), ("b", 0, 10, "lost", 50.0)])
    assert _features_on(spec, history, 20)["amount"] == 75.0
    assert _features_on(spec, history, 20, amount=10.0)["amount"] == 10.0


def test_a_client_without_since_has_the_median_tenure() -> None:
    day = pd.Timestamp("2024-01-01")
    deals = pd.DataFrame({"deal_id": ["a", "b"], "client_id": ["k", "m"], "status": ["won", "lost"],
                          "created_at": [day, day + pd.Timedelta(days=10)], "amount": [1.0, 2.0],
                          "client_since": [day - pd.Timedelta(days=100), day - pd.Timedelta(days=290)]})
    spec = fit_feature_spec(deals, FeatureConfig(), {})
    asked = pd.DataFrame({"deal_id": ["c"], "client_id": ["n"], "created_at": [day + pd.Timedelta(days=20)],
                          "client_since": [pd.NaT]})
    row = build_features(spec, DealHistory(spec, frame_columns(deals)), frame_columns(asked))[0]
    assert dict(zip(spec.names, row.tolist(), strict=True))[TENURE] == 200.0  # median of 100 and 300 days
    # A client that sends its since: days from it to the deal.
    sent = asked.assign(client_since=[day - pd.Timedelta(days=100)])
    row = build_features(spec, DealHistory(spec, frame_columns(deals)), frame_columns(sent))[0]
    assert dict(zip(spec.names, row.tolist(), strict=True))[TENURE] == 120.0


def test_a_start_date_after_the_deal_reads_as_none_in_training_and_in_scoring() -> None:
    """A clients table's `since` is today's snapshot: a CRM that sets it to the first payment dates it after every
    deal the client had not won yet, and a negative tenure read the outcome (the dates audit: holdout AUC 0.806 ->
    0.855). As of a deal's day a start date still to come is not known."""
    day = pd.Timestamp("2024-01-01")
    deals = pd.DataFrame({"deal_id": ["a", "b", "c"], "client_id": ["k", "m", "n"], "status": ["won", "lost", "won"],
                          "created_at": [day, day + pd.Timedelta(days=10), day + pd.Timedelta(days=20)],
                          "amount": [1.0, 2.0, 3.0],
                          "client_since": [day - pd.Timedelta(days=100), day - pd.Timedelta(days=290),
                                           day + pd.Timedelta(days=45)]})  # c's client starts after c
    spec = fit_feature_spec(deals, FeatureConfig(), {})
    # Not every closed deal had a start date as of its day: no median stands in, the trees learn what none means.
    assert TENURE not in (spec.numeric_fill or {})
    history = DealHistory(spec, frame_columns(deals))
    later = deals.assign(client_since=[day - pd.Timedelta(days=100), day - pd.Timedelta(days=290), pd.NaT])
    tenure = spec.names.index(TENURE)
    read, unsent = (build_features(spec, history, frame_columns(d))[:, tenure] for d in (deals, later))
    np.testing.assert_array_equal(read, unsent)
    assert read[:2].tolist() == [100.0, 300.0] and np.isnan(read[2])
    # With every closed deal's start date before it, the median of those stands in, as for one not sent.
    fitted = fit_feature_spec(deals.iloc[:2], FeatureConfig(), {})
    assert (fitted.numeric_fill or {})[TENURE] == 200.0
    asked = deals.iloc[2:].drop(columns="status")
    row = build_features(fitted, DealHistory(fitted, frame_columns(deals.iloc[:2])), frame_columns(asked))[0]
    assert row[fitted.names.index(TENURE)] == 200.0


def test_a_deal_on_its_client_s_start_day_reads_a_tenure_of_0_days() -> None:
    """as_of_tenure: only a start date after the deal's day is unknown as of that day; a deal created on the day
    the client started reads the client as 0 days old, not as a client whose start is unknown (the median)."""
    day = pd.Timestamp("2024-01-01")
    deals = pd.DataFrame({"deal_id": ["a", "b"], "client_id": ["k", "m"], "status": ["won", "lost"],
                          "created_at": [day, day + pd.Timedelta(days=10)], "amount": [1.0, 2.0],
                          "client_since": [day - pd.Timedelta(days=100), day - pd.Timedelta(days=290)]})
    spec = fit_feature_spec(deals, FeatureConfig(), {})
    history = DealHistory(spec, frame_columns(deals))
    asked = pd.DataFrame({"deal_id": ["c"], "client_id": ["n"], "created_at": [day + pd.Timedelta(days=20)],
                          "client_since": [day + pd.Timedelta(days=20)]})
    row = build_features(spec, history, frame_columns(asked))[0]
    assert row[spec.names.index(TENURE)] == 0.0


def test_a_level_gets_a_code_of_its_own_from_min_level_count_closed_deals() -> None:
    """docs/domain.md: a level gets a model code once it has 20 closed deals (by default); rarer ones share one."""
    day = pd.Timestamp("2024-01-01")
    products = ["x"] * 20 + ["y"] * 19 + ["z"] * 21
    deals = pd.DataFrame({"deal_id": [f"d{i}" for i in range(60)], "product": products,
                          "created_at": [day + pd.Timedelta(days=i) for i in range(60)],
                          "status": ["won" if i % 3 else "lost" for i in range(60)]})
    spec = fit_feature_spec(deals, FeatureConfig(steady_levels_only=False), {})
    assert spec.config.min_level_count == 20
    assert sorted(spec.vocab["product"]) == ["x", "z"]


def test_smoothing_must_be_above_zero() -> None:
    with pytest.raises(ValueError, match="smoothing must be a finite number above 0"):
        FeatureConfig(smoothing=0)


def test_a_client_the_history_never_saw_has_none_of_another_clients_history() -> None:
    spec, history = _one_client([("a", 0, 5, "won", 100.0), ("b", 0, 10, "won", 50.0)])
    deal = pd.DataFrame({"deal_id": ["new"], "client_id": ["someone else"], "product": ["x"],
                         "created_at": [pd.Timestamp("2024-03-01")]})
    row = dict(zip(spec.names, build_features(spec, history, frame_columns(deal))[0].tolist(), strict=True))
    assert row["client_won_deals"] == 0 and row["client_closed_deals"] == 0 and row["client_won_amount"] == 0
    assert np.isnan(row["client_days_since_last_win"]) and np.isnan(row["client_days_since_first_win"])


def test_a_win_without_an_amount_adds_nothing_to_the_clients_money() -> None:
    # The blank one is the latest known: the client's money as of then must not be blank.
    spec, history = _one_client([("a", 0, 5, "won", 100.0), ("c", 0, 10, "won", 30.0), ("b", 0, 12, "won", np.nan)])
    row = _features_on(spec, history, 20)
    assert row["client_won_deals"] == 3 and row["client_won_amount"] == 130.0


def test_a_product_the_history_never_saw_has_no_history_of_its_own() -> None:
    # No deals of it, for the client or at all: its smoothed win rate is the overall earlier rate.
    spec, history = _one_client([("a", 0, 5, "won", 100.0), ("b", 0, 6, "won", 100.0), ("c", 0, 7, "lost", 1.0)])
    seen = _features_on(spec, history, 20)
    assert (seen["client_product_deals"], seen["client_product_wins"]) == (3, 2)
    unseen = _features_on(spec, history, 20, product="never sold")
    assert (unseen["client_product_deals"], unseen["client_product_wins"]) == (0, 0)
    assert unseen["product_win_rate"] == pytest.approx(unseen["overall_win_rate"])


def test_a_level_spelt_otherwise_than_at_training_is_the_level_seen(small_crm: SyntheticCRM) -> None:
    """A CRM sending "CREDIT_LINE" or " Retail " for credit_line and retail got the shared code of unseen levels
    and no win-rate history: its p_win moved (0.48 to 0.69 in the new-user audit) for a capital letter. The
    level seen at training is matched exactly first, so training's own levels never move; alone and in a batch
    alike. Client ids are never folded: "c1" and "C1" are two clients."""
    deals = _joined(small_crm)
    spec = fit_feature_spec(deals, FeatureConfig(), {"source": "text", "campaign_code": "text", "competitor": "text"})
    history = DealHistory(spec, frame_columns(deals))
    asked = deals.tail(100).copy()
    plain = build_features(spec, history, frame_columns(asked))
    respelt = asked.assign(product=asked["product"].str.upper(), industry=" " + asked["industry"].str.title() + " ")
    columns = frame_columns(respelt)
    np.testing.assert_array_equal(build_features(spec, history, columns), plain)
    alone = np.vstack([build_features(spec, history, {name: values[i:i + 1] for name, values in columns.items()})
                       for i in range(len(asked))])
    np.testing.assert_array_equal(alone, plain)
    other_client = build_features(spec, history, frame_columns(asked.assign(client_id=asked["client_id"].str.lower())))
    won_deals = spec.names.index("client_won_deals")
    assert (plain[:, won_deals] > 0).any() and (other_client[:, won_deals] == 0).all()


def test_two_levels_differing_only_in_case_stay_apart_and_a_third_spelling_is_neither() -> None:
    day = pd.Timestamp("2024-01-01")
    deals = pd.DataFrame({"deal_id": [str(i) for i in range(60)], "created_at": [day] * 60,
                          "closed_at": [day] * 60, "status": ["won", "lost", "lost"] * 20,
                          "product": ["NA", "na", "x"] * 20, "amount": 1.0})
    spec = fit_feature_spec(deals, FeatureConfig(), {})
    history = DealHistory(spec, frame_columns(deals))

    def product_rate(product: str) -> float:
        asked = pd.DataFrame({"deal_id": ["q"], "created_at": [day + pd.Timedelta(days=9)], "product": [product]})
        return float(build_features(spec, history, frame_columns(asked))[0, spec.names.index("product_win_rate")])

    assert product_rate("NA") > 0.6 and product_rate("na") < 0.2  # as trained: two levels (smoothed rates)
    assert product_rate("Na") == pytest.approx(product_rate("never seen"))  # which one it means is a guess


def _campaigns(seed: int, effect: float, n: int = 8_000, levels: int = 30) -> pd.DataFrame:
    """Closed deals in time order with a text column of `levels` equally common levels; half of them win with
    log-odds `effect` above the rest, the other half `effect` below (0: the column is noise)."""
    rng = np.random.default_rng(seed)
    level = rng.integers(0, levels, size=n)
    logit = -0.5 + effect * np.where(level % 2 == 0, 1.0, -1.0)
    won = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    return pd.DataFrame({"deal_id": [f"d{i}" for i in range(n)],
                         "created_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) // 10, unit="D"),
                         "status": np.where(won, "won", "lost"),
                         "campaign": np.array([f"CMP-{i}" for i in level], dtype=object)})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_column_whose_level_win_rates_do_not_carry_over_gets_no_codes(seed: int) -> None:
    """30 levels drawn apart from the outcome (the demo CRM's campaign_code): given their codes, the trees fitted
    its noise (a top-5 reason of 262 of the demo's 910 open deals). Without codes its win rate stays a feature;
    levels that do move the outcome keep theirs, and steady_levels_only=False keeps every column's."""
    noise = fit_feature_spec(_campaigns(seed, effect=0.0), FeatureConfig(), {"campaign": "text"})
    assert noise.unsteady == ("campaign",) and noise.vocab["campaign"] == {}
    assert "campaign" in noise.categorical and "campaign_win_rate" in noise.names
    real = fit_feature_spec(_campaigns(seed, effect=0.3), FeatureConfig(), {"campaign": "text"})
    assert real.unsteady == () and len(real.vocab["campaign"]) == 30
    kept = fit_feature_spec(_campaigns(seed, effect=0.0), FeatureConfig(steady_levels_only=False), {"campaign": "text"})
    assert kept.unsteady == () and len(kept.vocab["campaign"]) == 30


def test_a_column_is_not_judged_unsteady_on_deals_of_one_outcome() -> None:
    """level_rates_gain: with one outcome only there is nothing to judge a column's levels by, so (without amounts
    to judge them by either) they keep their codes; read as no gain, every column of such deals lost its codes."""
    deals = _campaigns(0, effect=0.0).assign(status="won")
    spec = fit_feature_spec(deals, FeatureConfig(), {"campaign": "text"})
    assert spec.unsteady == () and len(spec.vocab["campaign"]) == 30


def test_an_uncoded_column_reads_every_level_alike_and_missing_apart() -> None:
    deals = _campaigns(0, effect=0.0)
    spec = fit_feature_spec(deals, FeatureConfig(), {"campaign": "text"})
    asked = pd.DataFrame({"deal_id": ["a", "b", "c"], "created_at": [pd.Timestamp("2026-01-01")] * 3,
                          "campaign": ["CMP-3", "CMP-17", None]})
    rows = build_features(spec, DealHistory(spec, frame_columns(deals)), frame_columns(asked))
    codes = rows[:, spec.names.index("campaign")]
    assert codes[0] == codes[1] == 0 and np.isnan(codes[2])
    rates = rows[:, spec.names.index("campaign_win_rate")]
    assert rates[0] != rates[1]  # the levels' own (smoothed) win rates still tell them apart


def test_the_calendar_month_runs_from_1_for_january_to_12_for_december() -> None:
    spec, history = _one_client([("a", 0, 5, "won", 100.0)])
    assert _features_on(spec, history, 0)["month"] == 1  # 2024-01-01
    assert _features_on(spec, history, 365)["month"] == 12  # 2024-12-31 (a leap year)
    assert _features_on(spec, history, 366)["month"] == 1  # 2025-01-01


def test_a_deal_before_any_closed_deal_reads_even_odds() -> None:
    """No deal has closed yet by its day: the overall and recent win rates are 0.5, not 0 (nor NaN)."""
    spec, history = _one_client([("a", 0, 30, "won", 100.0), ("b", 0, 40, "won", 100.0)])
    early = _features_on(spec, history, 30)  # the first close (day 30) is not yet known on its own day
    assert early["overall_win_rate"] == 0.5
    assert early["recent_win_rate"] == 0.5
    assert early["product_win_rate"] == 0.5  # a level's rate leans to the prior too
    assert _features_on(spec, history, 31)["overall_win_rate"] == 1.0  # one win known the day after
