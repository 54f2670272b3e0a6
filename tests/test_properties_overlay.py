"""Properties of the outcome overlay (model/history_overlay.py) over random report sequences.

The order outcomes arrive in is the CRM's, not the calendar's: a book fed in any order must hold the client
history the same outcomes give in date order, and a correction (a deal reported again) must leave exactly the
state its final report alone leaves, the history a scored deal reads included.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from overlay_history import TRAINED_IDS, trained_history

from model.features import DealHistory, FeatureSpec
from model.history_overlay import OutcomeBook, OutcomeEvent, history_overrides, with_outcome_history

FAST = settings(max_examples=120, deadline=None, derandomize=True)

DAY0 = int((np.datetime64("2025-01-01", "D") - np.datetime64("1970-01-01", "D")).astype(int))
CLIENTS = ["C1", "C2", "C3"]
DEAL_IDS = [*TRAINED_IDS, *(f"D{i}" for i in range(8))]


@pytest.fixture(scope="module")
def artifact() -> tuple[FeatureSpec, DealHistory]:
    """A model's history: C1 won twice and lost once, C2 lost once (C3 is unknown to it)."""
    return trained_history()


def _event(deal_id: str) -> st.SearchStrategy[OutcomeEvent]:
    return st.builds(
        OutcomeEvent, deal_id=st.just(deal_id), client_id=st.sampled_from([*CLIENTS, None]), won=st.booleans(),
        amount=st.one_of(st.integers(0, 500).map(float), st.just(math.nan)),
        closed_day=st.integers(DAY0, DAY0 + 150), product=st.sampled_from(["p", "q", "r", None]))


# One report per deal: distinct ids, each with a random outcome.
DISTINCT = st.lists(st.sampled_from(DEAL_IDS), unique=True, max_size=len(DEAL_IDS)).flatmap(
    lambda ids: st.tuples(*(_event(d) for d in ids)).map(list))
# A report sequence in which deals may come back corrected, any number of times.
REPORTS = st.lists(st.sampled_from(DEAL_IDS[:7]).flatmap(_event), max_size=14)


def _key(event: OutcomeEvent | None) -> Any:
    """An event as a comparable value (NaN amounts equal)."""
    if event is None:
        return None
    return (event.deal_id, event.client_id, event.won, None if math.isnan(event.amount) else event.amount,
            event.closed_day, event.product)


def _state(book: OutcomeBook) -> Any:
    """Everything a reader of the book can see."""
    far = DAY0 + 10_000
    return (len(book), book.latest_closed_day, book.latest_closed_day_besides(frozenset(TRAINED_IDS)),
            {d: _key(book.get(d)) for d in DEAL_IDS},
            {c: ([_key(e) for e in book.outcomes_before(c, far)], [_key(e) for e in book.wins_of(c)],
                 book.products_won(c)) for c in CLIENTS})


def _scoring_columns() -> dict[str, Any]:
    """Deals of every client (and one of none) on days before, between and after the outcomes."""
    days = [DAY0 - 5, DAY0 + 20, DAY0 + 60, DAY0 + 100, DAY0 + 151, DAY0 + 400]
    ids = [*CLIENTS, None]
    client_ids = [c for c in ids for _ in days]
    return {"deal_id": np.array([f"S{i}" for i in range(len(client_ids))] + ["D0"], dtype=object),
            "client_id": np.array([*client_ids, "C1"], dtype=object),
            "created_day": np.array([float(d) for _ in ids for d in days] + [float(DAY0 + 151)])}


def _read(book: OutcomeBook, artifact: tuple[FeatureSpec, DealHistory]) -> list[Any]:
    """The client history deals are scored with, counting by trained ids and by the model's last day."""
    spec, history = artifact
    columns = _scoring_columns()
    out: list[Any] = []
    for trained in (frozenset(TRAINED_IDS), None):
        overrides = history_overrides(history, spec, book, columns, trained)
        merged = with_outcome_history(columns, history, spec, book, trained, complete=True)
        out.append(None if overrides is None else {k: np.nan_to_num(v, nan=-1.0).tolist()
                                                   for k, v in sorted(overrides.items())})
        out.append({k: (np.nan_to_num(v, nan=-1.0).tolist() if np.asarray(v).dtype.kind == "f" else
                        np.asarray(v).tolist()) for k, v in sorted(merged.items())})
    return out


@FAST
@given(events=DISTINCT, data=st.data())
def test_outcomes_in_any_order_give_the_history_of_the_date_order(
        artifact: tuple[FeatureSpec, DealHistory], events: list[OutcomeEvent], data: st.DataObject) -> None:
    in_date_order = OutcomeBook(sorted(events, key=lambda e: (e.closed_day, e.deal_id)))
    shuffled = data.draw(st.permutations(events))
    one_by_one = OutcomeBook()
    for event in shuffled:
        one_by_one.record(event)
    for book in (OutcomeBook(shuffled), one_by_one):
        assert _state(book) == _state(in_date_order)
        assert _read(book, artifact) == _read(in_date_order, artifact)


@FAST
@given(reports=REPORTS, split=st.integers(0, 14))
def test_a_correction_leaves_the_state_of_the_final_report_alone(
        artifact: tuple[FeatureSpec, DealHistory], reports: list[OutcomeEvent], split: int) -> None:
    final = list({e.deal_id: e for e in reports}.values())
    only_final = OutcomeBook(final)
    # All reports at once, one by one, and in two batches (a correction arriving in a later call).
    batched = OutcomeBook(reports[:split])
    batched.record_all(reports[split:])
    one_by_one = OutcomeBook()
    for event in reports:
        one_by_one.record(event)
    for book in (OutcomeBook(reports), batched, one_by_one):
        assert _state(book) == _state(only_final)
        assert _read(book, artifact) == _read(only_final, artifact)
