"""Properties of scoring and gap lists over random batches of deals and clients, on the session's model.

A deal's score (p_win, value, grade, reasons...) is its own: the same scored alone, in a batch of any size (the
scorer switches paths at 8, 32 and 64 deals), in any order, and through the service's records path
(model.records.deal_columns over JSON-like deals) as through the command line's DataFrame path
(dealscore.offline.score_frame over a validated frame). Gap lists never offer a product the client holds, in any
spelling the model reads as it; incomes are never negative, and a shorter list is the start of a longer one.
"""

from __future__ import annotations

import json
import math
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_fixtures import deal_payloads

from dealscore.offline import feature_kinds, score_frame
from model.dataset import Dataset, dataset_from_frames
from model.features import attach_clients, frame_columns
from model.profiles import ClientFacts, ClientProfiles
from model.records import deal_columns
from model.scorer import ScoreBatch
from model.spellings import folded_form
from service.holder import LoadedModel
from training.fit import TrainingResult

# The fixtures are session-scoped: the same model for every example.
FAST = settings(max_examples=50, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# The clock both paths check dates against: after the latest deal a change moves (the data end on 2025-12-31).
TODAY = date(2027, 6, 1)
MAX_BATCH = 80  # past the scorer's switches at 8 (single-row leaves), 32 (path gathering) and 64 (level lookups)


@pytest.fixture(scope="module")
def open_deals(small_dataset: Dataset) -> pd.DataFrame:
    deals = small_dataset.deals
    return deals[deals["status"] == "open"].drop(columns=["status", "closed_at"]).reset_index(drop=True)


def _respelt(text: str, how: int) -> str:
    """A spelling the model reads as `text` (case, surrounding spaces, '_' for '-' or ' ')."""
    return [text, text.upper(), f"  {text.title()} ", text.replace("_", "-"), text.replace("_", " ")][how]


# Per deal, how its row is changed: (amount, effort hours, product, source, client, days later)
CHANGE = st.tuples(
    st.one_of(st.none(), st.just(math.nan), st.just(0.0), st.floats(1.0, 1e6)),
    st.one_of(st.none(), st.just(math.nan), st.just(0.0), st.floats(0.25, 500.0)),
    st.one_of(st.none(), st.integers(0, 4), st.just("deposti"), st.just("")),
    st.one_of(st.none(), st.just("")),
    st.one_of(st.none(), st.just("nobody-knows-me"), st.just("")),
    st.integers(0, 400),
)


@st.composite
def deal_batches(draw: st.DrawFn, n_open: int) -> tuple[list[int], list[tuple[Any, ...]]]:
    rows = draw(st.lists(st.integers(0, n_open - 1), min_size=1, max_size=MAX_BATCH, unique=True))
    changes = draw(st.lists(CHANGE, min_size=len(rows), max_size=len(rows)))
    return rows, changes


def _batch(open_deals: pd.DataFrame, rows: list[int], changes: list[tuple[Any, ...]]) -> pd.DataFrame:
    deals = open_deals.iloc[rows].copy().reset_index(drop=True)
    deals["product"] = deals["product"].astype(object)
    deals["source"] = deals["source"].astype(object)
    deals["client_id"] = deals["client_id"].astype(object)
    for i, (amount, hours, product, source, client, _) in enumerate(changes):
        if amount is not None:
            deals.loc[i, "amount"] = amount
        if hours is not None:
            deals.loc[i, "effort_hours"] = hours
        if isinstance(product, int):
            deals.loc[i, "product"] = _respelt(str(deals.loc[i, "product"]), product)
        elif product is not None:
            deals.loc[i, "product"] = product or None
        if source is not None:
            deals.loc[i, "source"] = None
        if client is not None:
            deals.loc[i, "client_id"] = client or None
    deals["created_at"] = deals["created_at"] + pd.to_timedelta([c[5] for c in changes], unit="D")
    return deals


def _per_deal(batch: ScoreBatch) -> list[tuple[Any, ...]]:
    """Each deal's whole score as one comparable value (NaN as None)."""
    def plain(x: float) -> float | None:
        return None if x != x else x

    return [(plain(p), plain(v), s, plain(ev), plain(h), g, r, hs, ns, un) for p, v, s, ev, h, g, r, hs, ns, un in zip(
        batch.p_win.tolist(), batch.value.tolist(), batch.value_source, batch.expected_value.tolist(),
        batch.value_per_hour.tolist(), batch.grade, batch.reasons, batch.history_source, batch.not_sent, batch.unseen,
        strict=True)]


def _frame_scores(trained: TrainingResult, clients: pd.DataFrame, deals: pd.DataFrame) -> list[tuple[Any, ...]]:
    return _per_deal(trained.model.score(frame_columns(attach_clients(deals, clients))))


def _drawn_batch(data: st.DataObject, open_deals: pd.DataFrame) -> pd.DataFrame:
    rows, changes = data.draw(deal_batches(len(open_deals)))
    return _batch(open_deals, rows, changes)


@given(data=st.data())
@FAST
def test_a_deals_score_is_the_same_alone_in_any_batch_and_in_any_order(
        trained: TrainingResult, small_dataset: Dataset, open_deals: pd.DataFrame, data: st.DataObject) -> None:
    deals = _drawn_batch(data, open_deals)
    clients = small_dataset.clients
    assert clients is not None
    together = _frame_scores(trained, clients, deals)
    order = data.draw(st.permutations(range(len(deals))))
    shuffled = _frame_scores(trained, clients, deals.iloc[order].reset_index(drop=True))
    assert shuffled == [together[i] for i in order]
    for i in data.draw(st.lists(st.integers(0, len(deals) - 1), max_size=6, unique=True)):
        assert _frame_scores(trained, clients, deals.iloc[[i]]) == [together[i]], i


@given(data=st.data())
@FAST
def test_the_records_path_scores_as_the_frame_path(
        trained: TrainingResult, small_dataset: Dataset, open_deals: pd.DataFrame, data: st.DataObject) -> None:
    deals = _drawn_batch(data, open_deals)
    model = trained.model
    # The command line's path: the frame validated as a deals file is, then scored.
    dataset = dataset_from_frames(deals, small_dataset.clients, for_training=False, kinds=feature_kinds(model),
                                  today=TODAY)
    offline = score_frame(model, dataset.deals, dataset.clients)
    # The service's: the deals as a CRM sends them, each with its client nested.
    payloads = deal_payloads(deals, small_dataset.clients)
    online = model.score(deal_columns(payloads, kinds=LoadedModel.build(model).kinds, today=TODAY))
    assert offline["deal_id"].tolist() == deals["deal_id"].tolist()
    np.testing.assert_array_equal(online.p_win, offline["p_win"].to_numpy())
    np.testing.assert_array_equal(online.value, offline["value"].to_numpy())
    np.testing.assert_array_equal(online.expected_value, offline["expected_value"].to_numpy())
    np.testing.assert_array_equal(online.value_per_hour, offline["value_per_hour"].to_numpy())
    assert online.grade == offline["grade"].tolist()
    assert online.history_source == offline["history_source"].tolist()
    assert online.value_source == [
        None if s != s else s for s in offline["value_source"].tolist()]
    assert [json.dumps([r.answer() for r in reasons]) for reasons in online.reasons] == offline["reasons"].tolist()
    assert [json.dumps(x) for x in online.not_sent] == offline["not_sent"].tolist()
    assert [json.dumps(x) for x in online.unseen] == offline["unseen"].tolist()


# ---------------------------------------------------------------------------------------------------------------
# Gap lists.

@st.composite
def client_facts(draw: st.DrawFn, profiles: ClientProfiles, known_ids: list[str],
                 levels: dict[str, list[str]]) -> ClientFacts:
    known = draw(st.booleans())
    client_id = draw(st.sampled_from(known_ids)) if known else f"new-{draw(st.integers(0, 99))}"
    products: tuple[str, ...] | None
    if known and draw(st.booleans()):
        products = None  # what the model knew at training
    else:
        held = draw(st.lists(st.sampled_from(profiles.products), unique=True, max_size=len(profiles.products)))
        products = tuple(_respelt(p, draw(st.integers(0, 4))) for p in held)
        products += tuple(draw(st.lists(st.sampled_from(["deposti", "crypto", ""]), max_size=2, unique=True)))

    def attribute(name: str) -> str | None:
        choice = draw(st.sampled_from(["none", "level", "respelt", "unknown"]))
        if choice == "none" or not levels.get(name):
            return None
        level = draw(st.sampled_from(levels[name]))
        return {"level": level, "respelt": _respelt(level, draw(st.integers(0, 4))), "unknown": "martian"}[choice]

    return ClientFacts(client_id, industry=attribute("industry"), size=attribute("size"),
                       region=attribute("region"), products=products)


@pytest.fixture(scope="module")
def profiled(trained: TrainingResult, small_dataset: Dataset) -> tuple[ClientProfiles, list[str], dict[str, list[str]]]:
    profiles = trained.model.profiles
    assert profiles is not None
    clients = small_dataset.clients
    assert clients is not None
    levels = {name: sorted(clients[name].dropna().astype(str).unique()) for name in ("industry", "size", "region")}
    return profiles, sorted(profiles.known_products)[:200], levels


def _held(profiles: ClientProfiles, facts: ClientFacts) -> set[str]:
    """The fitted products the client holds, as the model reads what is sent (or knew at training)."""
    if facts.products is None:
        return {profiles.products[j] for j in profiles.known_products.get(facts.client_id, ())}
    return {profiles.products[j] for p in facts.products if (j := profiles.product_position(p)) is not None}


@given(data=st.data())
@FAST
def test_gap_lists_never_offer_a_held_product_nor_a_negative_income(
        profiled: tuple[ClientProfiles, list[str], dict[str, list[str]]], data: st.DataObject) -> None:
    profiles, known_ids, levels = profiled
    batch = data.draw(st.lists(client_facts(profiles, known_ids, levels), min_size=1, max_size=12))
    everything = len(profiles.products)
    answers = profiles.gaps_for(batch, top_k=everything, as_of_day=20_000.0)
    for facts, answer in zip(batch, answers, strict=True):
        held = _held(profiles, facts)
        offered = [g.product for g in answer.gaps]
        assert not set(offered) & held, (facts, offered)
        # Nor under another spelling of a held product.
        assert not {folded_form(p) for p in offered} & {folded_form(p) for p in held}
        assert len(offered) == len(set(offered))
        assert answer.potential_income is None or answer.potential_income >= 0
        for gap in answer.gaps:
            assert gap.potential_income >= 0 and 0 <= gap.p_accept <= 1 and 0 <= gap.adoption <= 1, gap


@given(data=st.data())
@FAST
def test_a_shorter_gap_list_is_the_start_of_the_longer_one_and_a_batch_changes_no_list(
        profiled: tuple[ClientProfiles, list[str], dict[str, list[str]]], data: st.DataObject) -> None:
    profiles, known_ids, levels = profiled
    batch = data.draw(st.lists(client_facts(profiles, known_ids, levels), min_size=1, max_size=12))
    top = data.draw(st.integers(0, len(profiles.products) + 2))
    full = profiles.gaps_for(batch, top_k=len(profiles.products), as_of_day=20_000.0)
    short = profiles.gaps_for(batch, top_k=top, as_of_day=20_000.0)
    for whole, part in zip(full, short, strict=True):
        assert part.gaps == whole.gaps[:top]
        assert (part.client_id, part.segment, part.potential_income, part.income, part.ideal_income) == (
            whole.client_id, whole.segment, whole.potential_income, whole.income, whole.ideal_income)
    alone = [profiles.gaps_for([facts], top_k=top, as_of_day=20_000.0)[0] for facts in batch]
    assert alone == short
