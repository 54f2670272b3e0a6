"""Client history from outcomes recorded after training (model/history_overlay.py): as of each deal's
day, added to the artifact's counts, never counting an outcome the artifact already has."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd
import pytest
from overlay_history import trained_deals, trained_history
from test_feedback_helpers import feedback_training_fixture  # noqa: F401 (fixture)

from model.features import (
    HISTORY_AGE,
    OUTCOME_LOST_DEALS,
    DealHistory,
    build_features,
    frame_columns,
)
from model.history_overlay import OutcomeBook, OutcomeEvent, history_overrides, with_outcome_history
from training.fit import TrainingResult


def _day(text: str) -> int:
    return int((np.datetime64(text, "D") - np.datetime64("1970-01-01", "D")).astype(int))


@pytest.fixture(scope="module")
def artifact() -> tuple[Any, DealHistory]:
    """The history a model trained on: C1 won 100 on 2025-01-10 and 200 on 2025-02-10, and lost once."""
    spec, history = trained_history()
    assert history.last_day == _day("2025-03-01")
    return spec, history


def _columns(client_ids: list[str | None], created: list[str], **sent: list[float]) -> dict[str, Any]:
    columns: dict[str, Any] = {"client_id": np.array(client_ids, dtype=object),
                               "created_day": np.array([float(_day(c)) for c in created])}
    columns.update({name: np.array(values, dtype=float) for name, values in sent.items()})
    return columns


def _won(deal_id: str, client_id: str, amount: float, closed: str) -> OutcomeEvent:
    return OutcomeEvent(deal_id, client_id, True, amount, _day(closed))


def test_later_outcomes_add_to_the_artifacts_history_as_of_each_deal(artifact: tuple[Any, DealHistory]) -> None:
    spec, history = artifact
    book = OutcomeBook([_won("N1", "C1", 1000.0, "2025-04-01"), _won("N2", "C1", 10.0, "2025-05-01")])
    columns = _columns(["C1", "C1", "C1", "C1"], ["2025-03-15", "2025-04-01", "2025-04-02", "2025-06-01"])
    out = history_overrides(history, spec, book, columns)
    assert out is not None
    # Before the first new win (and on its day: strictly before) the artifact's own history stands.
    assert np.isnan(out["won_deals"][:2]).all()
    assert out["won_deals"][2:].tolist() == [3.0, 4.0]
    assert out["won_amount"][2:].tolist() == [1300.0, 1310.0]
    assert out["first_won_day"][2:].tolist() == [_day("2025-01-10")] * 2
    assert out["last_won_day"][2:].tolist() == [_day("2025-04-01"), _day("2025-05-01")]


def test_an_outcome_the_artifact_already_has_is_not_counted_twice(artifact: tuple[Any, DealHistory]) -> None:
    spec, history = artifact
    # T2 as reported again after training, and an unknown deal closed on the artifact's last day.
    book = OutcomeBook([_won("T2", "C1", 200.0, "2025-02-10"), _won("X1", "C1", 5.0, "2025-03-01")])
    columns = _columns(["C1"], ["2025-06-01"])
    assert history_overrides(history, spec, book, columns) is None
    # When the trained deal ids are known, they decide: X1 is new even though it closed before the last day.
    known = history_overrides(history, spec, book, columns, trained_deal_ids={"T1", "T2", "T3", "T4"})
    assert known is not None and known["won_deals"].tolist() == [3.0] and known["won_amount"].tolist() == [305.0]


def test_history_sent_with_the_deal_wins_and_unknown_clients_get_outcomes_only(
        artifact: tuple[Any, DealHistory]) -> None:
    spec, history = artifact
    book = OutcomeBook([_won("N1", "C1", 1000.0, "2025-04-01"), _won("N2", "NEW", 40.0, "2025-04-01")])
    columns = _columns(["C1", "NEW", None], ["2025-05-01"] * 3, won_deals=[7.0, np.nan, np.nan])
    merged = with_outcome_history(columns, history, spec, book)
    assert merged["won_deals"][0] == 7.0  # the CRM's own count stands
    assert np.isnan(merged["won_amount"][0])
    assert (merged["won_deals"][1], merged["won_amount"][1]) == (1.0, 40.0)  # a prospect's first win
    assert np.isnan(merged["won_deals"][2])
    assert columns["won_deals"][1] != columns["won_deals"][1]  # the caller's arrays are not touched


def test_a_changed_outcome_replaces_the_old_one(artifact: tuple[Any, DealHistory]) -> None:
    spec, history = artifact
    book = OutcomeBook()
    assert book.record(_won("N1", "C1", 1000.0, "2025-04-01"))
    assert not book.record(_won("N1", "C1", 1000.0, "2025-04-01"))  # the same again: nothing to do
    book.record(OutcomeEvent("N1", "C1", False, 0.0, _day("2025-04-01")))  # it was lost after all
    assert book.wins_of("C1") == ()
    lost = history_overrides(history, spec, book, _columns(["C1"], ["2025-05-01"]))
    assert lost is not None  # the artifact's two wins stand; the loss counts among the closed deals
    assert lost["won_deals"].tolist() == [2.0] and lost[OUTCOME_LOST_DEALS].tolist() == [1.0]
    book.record(_won("N1", "C2", 1000.0, "2025-04-01"))  # and belonged to another client
    assert [e.deal_id for e in book.wins_of("C2")] == ["N1"]


def test_reported_outcomes_give_the_client_features_a_history_holding_those_deals_gives(
        artifact: tuple[Any, DealHistory]) -> None:
    """Wins and losses reported after training: the client's wins, money, recency, tenure, closed deals, win
    rate and status as of a later deal are those of a model whose history holds the same deals. (Losses once
    never reached the features: the closed-deal count stayed the artifact's and the win rate ran high.)"""
    spec, history = artifact
    later = pd.DataFrame({
        "deal_id": ["N1", "N2", "N3", "N4"], "client_id": ["C1", "C1", "C1", "C2"],
        "created_at": pd.to_datetime(["2025-03-20", "2025-03-25", "2025-04-01", "2025-03-20"]),
        "closed_at": pd.to_datetime(["2025-04-01", "2025-04-10", "2025-04-20", "2025-04-05"]),
        "status": ["won", "lost", "lost", "lost"], "amount": [1000.0, 30.0, 40.0, 20.0], "product": ["p"] * 4,
    })
    book = OutcomeBook(OutcomeEvent(r.deal_id, r.client_id, r.status == "won", r.amount, _day(str(r.closed_at.date())))
                       for r in later.itertuples())
    holding_them = DealHistory(spec, frame_columns(pd.concat([trained_deals(), later], ignore_index=True)))
    scored = pd.DataFrame({"deal_id": ["S1", "S2", "S3"], "client_id": ["C1", "C1", "C2"],
                           "created_at": pd.to_datetime(["2025-04-15", "2025-06-01", "2025-06-01"]),
                           "status": ["open"] * 3, "product": ["p"] * 3})
    columns = frame_columns(scored)
    overlaid = with_outcome_history(columns, history, spec, book, trained_deal_ids={"T1", "T2", "T3", "T4"})
    # The win rate leans towards the overall rate, which the overlay leaves as trained: compared by its parts.
    # (The history's age is not among them: outcomes tell how far each client's own history reaches, not that the
    # others' reach as far; tests/test_history_age.py.)
    client = [i for i, name in enumerate(spec.names) if name.startswith("client_")
              and not name.startswith("client_product") and name not in ("client_win_rate", HISTORY_AGE)]
    assert "client_closed_deals" in [spec.names[i] for i in client]
    ours, theirs = build_features(spec, history, overlaid), build_features(spec, holding_them, columns)
    np.testing.assert_array_equal(ours[:, client], theirs[:, client])
    at = {name: ours[:, spec.names.index(name)] for name in
          ("client_closed_deals", "client_won_deals", "client_win_rate", "overall_win_rate")}
    assert at["client_closed_deals"].tolist() == [5.0, 6.0, 2.0]  # N3 closed after S1 was created
    smoothing = spec.config.smoothing
    np.testing.assert_allclose(at["client_win_rate"], (at["client_won_deals"] + smoothing * at["overall_win_rate"])
                               / (at["client_closed_deals"] + smoothing))


def test_a_deals_own_outcome_is_never_its_own_history(artifact: tuple[Any, DealHistory]) -> None:
    """An outcome reported before its deal was first scored, dated before the created_at the deal then comes
    with, counted as the deal's own earlier win (p_win 0.10 -> 0.44 in an audit)."""
    spec, history = artifact
    book = OutcomeBook([_won("G1", "C1", 7000.0, "2025-04-01"), _won("G0", "C1", 10.0, "2025-04-01")])
    columns = _columns(["C1", "C1"], ["2025-05-01", "2025-05-01"])
    columns["deal_id"] = np.array(["G1", "S1"], dtype=object)
    out = history_overrides(history, spec, book, columns)
    assert out is not None
    assert out["won_deals"].tolist() == [3.0, 4.0]  # the artifact's 2, plus G0; plus G1 for the other deal
    assert out["won_amount"].tolist() == [310.0, 7310.0]


def test_loading_many_outcomes_of_a_client_indexes_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-indexing a client per outcome made loading a client's n outcomes quadratic (8,000: 15 s, during
    which the service did not start): a batch re-indexes each client it touches once."""
    book = OutcomeBook()
    indexed: list[str] = []
    original = OutcomeBook._reindex

    def counting(self: OutcomeBook, client_id: str) -> None:
        indexed.append(client_id)
        original(self, client_id)

    monkeypatch.setattr(OutcomeBook, "_reindex", counting)
    events = [OutcomeEvent(f"D{i}", "C1" if i % 2 else "C2", i % 3 == 0, 1.0, 20000 + i % 50) for i in range(2000)]
    assert book.record_all(events) == 2000
    assert sorted(indexed) == ["C1", "C2"]
    assert len(book.outcomes_before("C1", 30000)) == 1000 and len(book.wins_of("C2")) == 334
    days = [e.closed_day for e in book.outcomes_before("C1", 30000)]
    assert days == sorted(days)
    assert book.record_all(events) == 0  # all known as they are: nothing changes


def test_readers_never_see_a_half_updated_book() -> None:
    book = OutcomeBook()
    stop = threading.Event()
    seen_bad: list[int] = []

    def read() -> None:
        while not stop.is_set():
            wins = book.wins_of("C1")
            if any(a.closed_day > b.closed_day for a, b in zip(wins, wins[1:], strict=False)):
                seen_bad.append(len(wins))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(1000):
        book.record(OutcomeEvent(f"D{i}", "C1", True, 1.0, 20000 - i))
    stop.set()
    reader.join()
    assert seen_bad == [] and len(book.wins_of("C1")) == 1000


def test_a_win_recorded_after_training_changes_the_score(feedback_training: TrainingResult) -> None:
    model = feedback_training.model
    client_id = next(iter(model.spec.client_keys))
    day = float(model.history.last_day + 30)
    columns: dict[str, Any] = {"deal_id": np.array(["N"], dtype=object), "created_day": np.array([day]),
                               "client_id": np.array([client_id], dtype=object), "amount": np.array([5000.0])}
    before = model.score(dict(columns), n_reasons=0)
    book = OutcomeBook([OutcomeEvent(f"W{i}", client_id, True, 20000.0, int(day) - 10 + i) for i in range(5)])
    after = model.score(with_outcome_history(columns, model.history, model.spec, book), n_reasons=0)
    assert after.p_win[0] != before.p_win[0]
    assert after.history_source == ["outcomes"]
    # History the CRM sends with the deal wins over the outcomes, and the answer says so.
    sent = {**columns, "won_deals": np.array([1.0]), "last_won_day": np.array([day - 400])}
    assert model.score(with_outcome_history(sent, model.history, model.spec, book), n_reasons=0).history_source \
        == ["request"]


def test_a_trained_model_knows_its_deals_so_a_late_report_of_one_is_not_counted_again(
        feedback_training: TrainingResult) -> None:
    """A CRM reporting a training deal's win late (closed_at defaults to today, after the model's last
    event day) once doubled that client's wins: the artifact now records the closed deals it holds."""
    import pickle

    from training.synthetic_crm import generate

    model = feedback_training.model
    ids = pickle.loads(pickle.dumps(model.trained_deal_ids))  # as saved in and loaded from the artifact
    deals = generate(seed=11, n_deals=2_000).deals  # the fixture's training data
    closed = deals[deals["status"].isin(["won", "lost"])]
    assert len(ids) == len(closed) and all(d in ids for d in closed["deal_id"])
    assert not any(d in ids for d in deals.loc[deals["status"] == "open", "deal_id"]) and "D-new" not in ids
    client_id, trained_wins = next((c, g) for c, g in closed[closed["status"] == "won"].groupby("client_id"))
    day = model.history.last_day + 30
    columns = {"created_day": np.array([float(day)]), "client_id": np.array([client_id], dtype=object)}
    late = OutcomeBook([OutcomeEvent(d, client_id, True, 5000.0, day - 1) for d in trained_wins["deal_id"]])
    assert history_overrides(model.history, model.spec, late, columns, trained_deal_ids=ids) is None
    new = OutcomeBook([OutcomeEvent("D-new", client_id, True, 5000.0, day - 1)])
    out = history_overrides(model.history, model.spec, new, columns, trained_deal_ids=ids)
    assert out is not None and out["won_deals"][0] == len(trained_wins) + 1


def test_the_book_knows_the_products_a_client_won_and_forgets_one_turned_lost() -> None:
    from model.history_overlay import OutcomeBook, OutcomeEvent

    book = OutcomeBook([OutcomeEvent("d1", "k", True, 10.0, 100, "leasing"),
                        OutcomeEvent("d2", "k", True, 5.0, 101, "deposit"),
                        OutcomeEvent("d3", "k", False, 1.0, 102, "payroll"),
                        OutcomeEvent("d4", "k", True, 1.0, 103, None)])
    assert book.products_won("k") == ("deposit", "leasing") and book.products_won("other") == ()
    book.record(OutcomeEvent("d1", "k", False, 10.0, 100, None))  # corrected: that deal was lost
    assert book.products_won("k") == ("deposit",)
