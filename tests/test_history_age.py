"""The age of a client's history (FeatureConfig.history_lag_days): trained on, and read when scoring.

A deal scored without its client's history reads the model's, frozen at training: a client that has won
since looks older, or lost. Training reads each closed deal's client history as of a number of days before
its day and says how many (HISTORY_AGE); the scorer gives each deal the age of the history it reads.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from portfolios import hand_count_portfolio

from bench.monthly_replay import known_on
from model.dataset import dataset_from_frames
from model.features import (
    HISTORY_AGE,
    HISTORY_END_DAY,
    DealHistory,
    FeatureConfig,
    FeatureSpec,
    attach_clients,
    build_features,
    fit_feature_spec,
    frame_columns,
    training_history_lags,
)
from model.history_overlay import DealIdSet, OutcomeBook, OutcomeEvent, with_outcome_history
from training.fit import TrainConfig, TrainingResult, train, zero_amount_unquoted
from training.synthetic_crm import SyntheticCRM, generate

DAY = pd.Timestamp("2024-01-01")


def _portfolio() -> pd.DataFrame:
    """Client k: won a (closed day 5), lost b (day 15), won c (day 30); d is open, created on day 100."""
    return hand_count_portfolio(DAY)


def _two_clients_on_day_200() -> tuple[FeatureSpec, DealHistory, dict[str, np.ndarray]]:
    """The portfolio's model (its history ends on day 30) and a deal of each client created on day 200."""
    deals = _portfolio()
    spec = fit_feature_spec(deals, FeatureConfig(history_lag_days=365), {})
    history = DealHistory(spec, frame_columns(deals))
    day_200 = DAY + pd.Timedelta(days=200)
    asked = pd.DataFrame({"deal_id": ["s1", "s2"], "client_id": ["k", "other"], "created_at": [day_200, day_200],
                          "product": ["x", "x"]})
    return spec, history, frame_columns(asked)


def _values(deals: pd.DataFrame, asked: pd.DataFrame, lag: int | None = None,
            **extra: np.ndarray) -> dict[str, float]:
    spec = fit_feature_spec(deals, FeatureConfig(lost_window_days=60, history_lag_days=365), {})
    history = DealHistory(spec, frame_columns(deals))
    columns = {**frame_columns(asked), **extra}
    row = build_features(spec, history, columns, None if lag is None else np.array([lag]))[0]
    return dict(zip(spec.names, row.tolist(), strict=True))


def test_a_lagged_training_deal_reads_its_clients_history_as_known_that_many_days_before() -> None:
    deals = _portfolio()
    # Day 100 less 75 days: day 25, when a (won, day 5) and b (lost, day 15) were known, c (won, day 30) not yet.
    value = _values(deals, deals.iloc[[3]], lag=75)
    assert value["client_won_deals"] == 1
    assert value["client_won_amount"] == 100.0
    assert value["client_closed_deals"] == 2
    # The days since the known win still run to the deal's own day, as a frozen history's do when scored later.
    assert value["client_days_since_last_win"] == 100 - 5
    assert value["client_status"] == 3  # lost: one known win, 95 days before, past the 60-day window
    assert value["client_product_deals"] == 2 and value["client_product_wins"] == 1
    assert value[HISTORY_AGE] == 75
    current = _values(deals, deals.iloc[[3]], lag=0)
    assert (current["client_won_deals"], current["client_days_since_last_win"], current[HISTORY_AGE]) == (2, 70, 0)


def test_scoring_reads_the_days_since_the_history_it_uses_ends() -> None:
    deals = _portfolio()
    # The history's last event is c's close on day 30: a deal of day 200 reads a history 169 days old.
    later = deals.iloc[[3]].assign(created_at=DAY + pd.Timedelta(days=200))
    assert _values(deals, later)[HISTORY_AGE] == 200 - 31
    # Inside the history: current.
    assert _values(deals, deals.iloc[[3]].assign(created_at=DAY + pd.Timedelta(days=20)))[HISTORY_AGE] == 0
    # The client's history sent with the deal is current whatever the model's age.
    sent = _values(deals, later, won_deals=np.array([4.0]))
    assert sent[HISTORY_AGE] == 0 and sent["client_won_deals"] == 4
    # Histories that reach further (outcomes reported since) end later.
    assert _values(deals, later, **{HISTORY_END_DAY: np.array([float(_day(150))])})[HISTORY_AGE] == 50


def test_a_deal_without_a_client_reads_no_history_and_so_none_aged() -> None:
    """Without a client_id a deal reads no client history (CONTRACT: history features are off), so there is
    no stale history to allow for. It had read the model's age all the same: the demo model's open deals sent
    without client_id a year past its history scored 0.261 on average against 0.169 with the age at 0, the
    same deal's p_win drifting up as the model aged, and with DEALSCORE_OUTCOMES_COMPLETE moving with other
    clients' outcomes."""
    deals = _portfolio()
    later = deals.iloc[[3]].assign(created_at=DAY + pd.Timedelta(days=200))
    assert _values(deals, later)[HISTORY_AGE] == 200 - 31  # the client's, as the model knows it: aged
    for missing in (None, np.nan):
        assert _values(deals, later.assign(client_id=missing))[HISTORY_AGE] == 0
    assert _values(deals, later.drop(columns="client_id"))[HISTORY_AGE] == 0
    # Nor does a complete outcome book move it.
    spec, history, columns = _two_clients_on_day_200()
    columns = {**columns, "client_id": np.array(["k", None], dtype=object)}
    book = OutcomeBook([OutcomeEvent("z", "other", True, 10.0, _day(120))])
    out = with_outcome_history(columns, history, spec, book, complete=True)
    assert build_features(spec, history, out)[:, spec.names.index(HISTORY_AGE)].tolist() == [200 - 121, 0]


def _day(offset: int) -> int:
    return int((DAY + pd.Timedelta(days=offset)).to_datetime64().astype("datetime64[D]").astype(np.int64))


def test_lags_are_fixed_by_each_deal_id_alone() -> None:
    ids = np.array([f"D{i}" for i in range(20_000)], dtype=object)
    lags = training_history_lags(ids, 365)
    # The same deal gets the same lag whatever other deals the data holds (adding later deals changes no
    # earlier deal's features), and a retrain builds the same features.
    np.testing.assert_array_equal(training_history_lags(ids[::-7], 365), lags[::-7])
    assert 0.47 < np.mean(lags == 0) < 0.53
    assert lags.min() == 0 and lags.max() == 365
    lagged = lags[lags > 0]
    assert 1 <= lagged.min() and abs(np.median(lagged) - 183) < 10  # even over 1..365


def test_the_option_off_trains_and_scores_as_before() -> None:
    deals = _portfolio()
    spec = fit_feature_spec(deals, FeatureConfig(history_lag_days=0), {})
    assert HISTORY_AGE not in spec.names and not spec.has_history_age
    # Without client ids there is no client history to age.
    assert not fit_feature_spec(deals.drop(columns="client_id"), FeatureConfig(), {}).has_history_age
    with pytest.raises(ValueError, match="history_lag_days"):
        FeatureConfig(history_lag_days=-1)


def test_reported_outcomes_move_where_their_clients_history_ends_and_no_one_elses() -> None:
    """A client's outcomes reported since training make its history reach their latest close day. Not any other
    client's: one outcome of one client (or of a deal the model was trained on) had made every client's history
    look current, and the stale-history bias came back in full (a review: -0.049 -> -0.173 on a year's deals)."""
    spec, history, columns = _two_clients_on_day_200()
    book = OutcomeBook([OutcomeEvent("z", "other", True, 10.0, _day(120)),
                        OutcomeEvent("a", "k", True, 100.0, _day(190))])  # a: trained on, not counted again
    out = with_outcome_history(columns, history, spec, book, trained_deal_ids={"a", "b", "c", "e"})
    age = build_features(spec, history, out)[:, spec.names.index(HISTORY_AGE)]
    assert age.tolist() == [200 - 31, 200 - 121]  # k: the model's end (day 30); other: its outcome of day 120
    # Without the overlay, both read the model's history, which ends on day 30.
    assert build_features(spec, history, columns)[:, spec.names.index(HISTORY_AGE)].tolist() == [169, 169]


def test_a_deals_file_cannot_set_the_scorers_own_columns() -> None:
    frame = _portfolio().assign(**{HISTORY_END_DAY: 99999.0, "__history_from_outcomes": True})
    columns = frame_columns(frame)
    assert HISTORY_END_DAY not in columns and "__history_from_outcomes" not in columns


def test_the_historys_age_is_no_reason_of_its_own_but_part_of_the_status(trained: TrainingResult,
                                                                         small_crm: SyntheticCRM) -> None:
    """A manager cannot act on "the model's history is 200 days old": its push is netted into the client status's
    reason, which it corrects."""
    model = trained.model
    assert model.spec.has_history_age
    deals = attach_clients(small_crm.deals.head(300), small_crm.clients)
    deals["created_at"] = pd.Timestamp(np.datetime64(model.history.last_day + 200, "D"))
    columns = frame_columns(deals)
    batch = model.score(dict(columns), n_reasons=len(model.spec.names))
    named = {reason.feature for reasons in batch.reasons for reason in reasons}
    assert HISTORY_AGE not in named and "client_status" in named
    features = build_features(model.spec, model.history, columns)
    _, contributions = model.win_model.margin_and_contributions(features, None)
    at = [model.spec.names.index(name) for name in ("client_status", HISTORY_AGE)]
    for row in range(20):
        status = [r for r in batch.reasons[row] if r.feature == "client_status"]
        if status:
            expected = contributions[row, at].sum() * model.calibration.slope  # as pushes on the calibrated log-odds
            assert status[0].effect == pytest.approx(expected, abs=1e-3)


def test_a_model_scoring_a_year_past_its_history_reads_it_as_well_as_a_current_one() -> None:
    """The generated CRM, a model trained on what was known a year before its end, scoring the deals of that
    year's last nine months without their clients' history: with the age, the mean p_win is about what the same
    model gives them with every client's history current; without it, regular clients read lost and p_win sinks.
    (Measured on 30k deals, seeds 5 and 6: frozen minus current -0.015 and -0.009 with the age, -0.099 and -0.084
    without; the current history's own bias, from the generator's drifting win rate, -0.02 to -0.07.)"""
    crm = generate(seed=5, n_deals=30_000)
    dataset = dataset_from_frames(crm.deals, crm.clients, crm.holdings, for_training=True)
    deals = dataset.deals
    as_of = (deals["created_at"].max() - pd.Timedelta(days=365)).normalize()
    later = deals[deals["status"].isin(["won", "lost"]) & (deals["created_at"] >= as_of + pd.Timedelta(days=90))]
    sent = frame_columns(attach_clients(later.drop(columns=["status", "closed_at"]), dataset.clients))
    every_deal = frame_columns(zero_amount_unquoted(attach_clients(deals, dataset.clients)))
    staleness = {}
    for lag_days in (0, 365):
        model = train(known_on(dataset, as_of), TrainConfig(features=FeatureConfig(history_lag_days=lag_days))).model
        frozen = float(np.mean(model.score(dict(sent), n_reasons=0).p_win))
        current = replace(model, history=DealHistory(model.spec, every_deal))
        staleness[lag_days] = frozen - float(np.mean(current.score(dict(sent), n_reasons=0).p_win))
    assert abs(staleness[365]) < 0.03, staleness
    assert staleness[0] < -0.06, staleness  # what the age corrects


def test_a_crm_reporting_every_outcome_makes_every_clients_history_reach_the_latest() -> None:
    spec, history, columns = _two_clients_on_day_200()
    book = OutcomeBook([OutcomeEvent("z", "other", True, 10.0, _day(120)), OutcomeEvent("y", "new", False, 0.0,
                                                                                         _day(180))])
    out = with_outcome_history(columns, history, spec, book, complete=True)
    age = build_features(spec, history, out)[:, spec.names.index(HISTORY_AGE)]
    assert age.tolist() == [200 - 181, 200 - 181]  # k too: with none reported since, it closed nothing since
    # A corrected close day of the latest outcome moves the latest back (workers that saw the first agree).
    book.record(OutcomeEvent("y", "new", False, 0.0, _day(150)))
    assert book.latest_closed_day == _day(150)
    out = with_outcome_history(columns, history, spec, book, complete=True)
    assert build_features(spec, history, out)[:, spec.names.index(HISTORY_AGE)].tolist() == [49, 49]


def test_a_complete_book_reaches_no_further_than_the_outcomes_it_counts() -> None:
    """A late report of a trained deal's result (dated today by default) adds nothing (docs/feedback.md); with
    DEALSCORE_OUTCOMES_COMPLETE it had made every client's history reach today: on the demo model, one such
    report of a 2021 deal moved 300 other clients' deals of 2026-06-01 from a mean p_win of 0.447 to 0.373."""
    spec, history, columns = _two_clients_on_day_200()
    book = OutcomeBook([OutcomeEvent("z", "other", True, 10.0, _day(120)),
                        OutcomeEvent("a", "k", True, 100.0, _day(190))])  # a: trained on, not counted again
    trained = {"a", "b", "c", "e"}
    out = with_outcome_history(columns, history, spec, book, trained_deal_ids=trained, complete=True)
    assert build_features(spec, history, out)[:, spec.names.index(HISTORY_AGE)].tolist() == [200 - 121, 200 - 121]
    # As an artifact keeps them (hashed, asked all at once).
    out = with_outcome_history(columns, history, spec, book, trained_deal_ids=DealIdSet(trained), complete=True)
    assert build_features(spec, history, out)[:, spec.names.index(HISTORY_AGE)].tolist() == [200 - 121, 200 - 121]
    # Only trained deals' outcomes: the model's own end stands.
    only_trained = OutcomeBook([OutcomeEvent("a", "k", True, 100.0, _day(190))])
    out = with_outcome_history(columns, history, spec, only_trained, trained_deal_ids=trained, complete=True)
    assert build_features(spec, history, out)[:, spec.names.index(HISTORY_AGE)].tolist() == [169, 169]
    # A counted outcome recorded since moves the reach (the book's answer is not kept past a change).
    book.record(OutcomeEvent("y", "new", False, 0.0, _day(150)))
    out = with_outcome_history(columns, history, spec, book, trained_deal_ids=trained, complete=True)
    assert build_features(spec, history, out)[:, spec.names.index(HISTORY_AGE)].tolist() == [49, 49]


def test_the_service_setting_reaches_the_feedback_store() -> None:
    from service.feedback.config import FeedbackConfig
    from service.settings import Settings

    assert FeedbackConfig.from_settings(Settings(outcomes_complete=True)).outcomes_complete
    assert not FeedbackConfig.from_settings(Settings()).outcomes_complete


def test_the_feedback_store_reads_its_book_as_complete_only_when_told(tmp_path: Path, trained: TrainingResult,
                                                                      small_crm: SyntheticCRM) -> None:
    from service.feedback.config import FeedbackConfig
    from service.feedback.store import Feedback

    model = trained.model
    deal = attach_clients(small_crm.deals.head(1), small_crm.clients)
    deal["created_at"] = pd.Timestamp(np.datetime64(model.history.last_day + 100, "D"))
    columns = frame_columns(deal)
    for complete in (True, False):
        feedback = Feedback(FeedbackConfig(database_url=f"sqlite:///{tmp_path / f'{complete}.db'}",
                                           spool_dir=tmp_path / f"spool{complete}", outcomes_complete=complete))
        feedback.book.record(OutcomeEvent("x", "someone else", True, 1.0, model.history.last_day + 90))
        age = build_features(model.spec, model.history, feedback.with_history(model, columns))
        assert age[0, model.spec.names.index(HISTORY_AGE)] == (9 if complete else 99)


def test_the_latest_close_day_besides_trained_deals_follows_the_book_and_the_ids_asked() -> None:
    """Scoring asks on every request with the live model's own trained ids (one object): an outcome recorded since
    must move the answer, and a reloaded model's ids must get their own (a mutation audit: the answer kept past
    either survived every test)."""
    book = OutcomeBook([OutcomeEvent("z", "other", True, 10.0, _day(120)),
                        OutcomeEvent("a", "k", True, 100.0, _day(190))])
    trained = DealIdSet({"a", "b"})
    assert book.latest_closed_day_besides(trained) == _day(120)
    assert book.latest_closed_day_besides(trained) == _day(120)  # asked again: the kept answer
    book.record(OutcomeEvent("y", "new", False, 0.0, _day(150)))
    assert book.latest_closed_day_besides(trained) == _day(150)  # same ids, a book changed since
    reloaded = DealIdSet({"z", "y"})  # another model's trained deals, the book unchanged
    assert book.latest_closed_day_besides(reloaded) == _day(190)
    assert book.latest_closed_day_besides({"a", "b", "y", "z"}) is None
