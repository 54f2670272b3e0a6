"""Gap lists over HTTP when the model has ideal client profiles: /v1/gaps and each score's `gaps`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from service_fixtures import (  # noqa: F401 (fixtures, registered by name)
    TODAY,
    TestClient,
    fixture_service_crm,
    fixture_service_dataset,
    fixture_service_profiled_model,
    fixture_service_training,
    make_client,
    make_deal,
)

from model.dataset import Dataset
from model.scorer import ScoringModel
from service import Settings, create_app
from service.schemas import GapOut

GAP_FIELDS = set(GapOut.model_fields)


@pytest.fixture(scope="module")
def client(service_profiled_model: ScoringModel) -> Iterator[TestClient]:
    app = create_app(Settings(top_gaps=2), model=service_profiled_model, clock=lambda: TODAY)
    with make_client(app) as test_client:
        yield test_client


def test_gaps_lists_products_for_known_and_new_clients(client: TestClient,
                                                       service_profiled_model: ScoringModel) -> None:
    known = next(iter(service_profiled_model.spec.client_keys))
    clients = [{"client_id": known},
               {"client_id": "new-1", "industry": "retail", "size": "small", "region": "north",
                "since": "2024-01-10", "products": ["settlement_account"]}]
    response = client.post("/v1/gaps", json={"clients": clients}, params={"top": 3})
    assert response.status_code == 200, response.text
    answers = response.json()["clients"]
    assert [a["client_id"] for a in answers] == [known, "new-1"]
    for answer in answers:
        assert answer["segment"]
        assert 0 < len(answer["gaps"]) <= 3
        for gap in answer["gaps"]:
            assert set(gap) == GAP_FIELDS
            assert 0 <= gap["adoption"] <= 1 and 0 <= gap["p_accept"] <= 1 and gap["reason"]
    assert "settlement_account" not in [g["product"] for g in answers[1]["gaps"]]  # it holds it already


def test_each_score_carries_its_clients_top_gaps(client: TestClient, service_profiled_model: ScoringModel) -> None:
    known = next(iter(service_profiled_model.spec.client_keys))
    deals = [make_deal(deal_id="a", client_id=known), make_deal(deal_id="b", client_id=None),
             make_deal(deal_id="c", client_id=known)]
    scores = client.post("/v1/score", json={"deals": deals}).json()["scores"]
    assert 0 < len(scores[0]["gaps"]) <= 2
    assert scores[1]["gaps"] == []  # no client, no gap list
    assert scores[2]["gaps"] == scores[0]["gaps"]
    assert set(scores[0]["gaps"][0]) == GAP_FIELDS


def test_a_deals_gaps_do_not_depend_on_other_deals_of_its_client_in_the_batch(
        client: TestClient, service_profiled_model: ScoringModel) -> None:
    """Two deals may say different things of one client_id (its industry, what it holds): each deal gets the
    gap list it gets alone. The first deal's client used to stand for every later deal of that id, so a deal
    could be offered a product its own client object said it held."""
    known = next(iter(service_profiled_model.spec.client_keys))
    holds = [g["product"] for g in client.post("/v1/score", json={"deals": [
        make_deal(deal_id="probe", client_id=known, client={"client_id": known, "products": []})]}).json()[
        "scores"][0]["gaps"]]
    first = make_deal(deal_id="s1", client_id=known, client={"client_id": known, "industry": "retail",
                                                              "products": []})
    second = make_deal(deal_id="s2", client_id=known, client={"client_id": known, "products": holds})
    bare = make_deal(deal_id="s3", client_id=known)
    alone = [client.post("/v1/score", json={"deals": [d]}).json()["scores"][0]["gaps"] for d in (second, bare)]
    together = client.post("/v1/score", json={"deals": [first, second, bare]}).json()["scores"]
    assert [together[1]["gaps"], together[2]["gaps"]] == alone
    assert not set(holds) & {g["product"] for g in together[1]["gaps"]}  # never what its client object holds


def test_a_deals_gaps_leave_out_the_product_the_deal_sells(client: TestClient,
                                                           service_profiled_model: ScoringModel) -> None:
    known = next(iter(service_profiled_model.spec.client_keys))
    listed = client.post("/v1/gaps", json={"clients": [{"client_id": known}]}, params={"top": 3}).json()
    first, second, third = (g["product"] for g in listed["clients"][0]["gaps"])
    selling_first = make_deal(deal_id="x", client_id=known, product=first)
    scored = client.post("/v1/score", json={"deals": [selling_first]}).json()["scores"][0]["gaps"]
    assert [g["product"] for g in scored] == [second, third]  # still top_gaps (2) items, the deal's left out
    elsewhere = make_deal(deal_id="y", client_id=known, product="no-such-product")
    assert [g["product"] for g in client.post("/v1/score", json={"deals": [elsewhere]}).json()["scores"][0][
        "gaps"]] == [first, second]
    # Spelt another way, it is still the product the deal sells, as a client's held products are matched: a
    # deal for "CREDIT_LINE" was offered credit_line as its client's first gap (the new-user audit).
    for spelled in (first.upper(), f" {first.title()} "):
        deal = make_deal(deal_id="z", client_id=known, product=spelled)
        assert [g["product"] for g in client.post("/v1/score", json={"deals": [deal]}).json()["scores"][0][
            "gaps"]] == [second, third], spelled


def test_held_product_names_are_trimmed_as_every_text(client: TestClient,
                                                     service_profiled_model: ScoringModel) -> None:
    """" leasing " was not leasing: the client was offered the product it had just said it held."""
    known = next(iter(service_profiled_model.spec.client_keys))
    top = client.post("/v1/gaps", json={"clients": [{"client_id": known, "products": []}]},
                      params={"top": 3}).json()["clients"][0]["gaps"][0]["product"]
    for spelled in (top, f" {top} ", f"\t{top}"):
        answer = client.post("/v1/gaps", json={"clients": [{"client_id": known, "products": [spelled]}]},
                             params={"top": 3}).json()["clients"][0]
        assert top not in [g["product"] for g in answer["gaps"]], spelled
    padded = client.post("/v1/gaps", json={"clients": [{"client_id": known, "products": [f" {top} "]}]}).json()
    plain = client.post("/v1/gaps", json={"clients": [{"client_id": known, "products": [top]}]}).json()
    assert padded["clients"] == plain["clients"]


def test_products_the_model_does_not_know_are_named(client: TestClient,
                                                   service_profiled_model: ScoringModel) -> None:
    """They count as nothing held: a CRM spelling a product otherwise than the model was ignored without a
    word, and its client offered what it holds (the new-user audit)."""
    known = next(iter(service_profiled_model.spec.client_keys))
    product = service_profiled_model.profiles.products[0]
    sent = [f" {product.upper()} ", "Business Insurance Pro", "nosuchproduct", "nosuchproduct"]
    answer = client.post("/v1/gaps", json={"clients": [{"client_id": known, "products": sent},
                                                       {"client_id": "new-2"}]}).json()["clients"]
    assert answer[0]["unknown_products"] == ["Business Insurance Pro", "nosuchproduct"]
    assert answer[1]["unknown_products"] == []


def test_model_says_it_has_profiles(client: TestClient) -> None:
    assert client.get("/v1/model").json()["has_profiles"] is True


def test_model_says_over_what_horizon_p_accept_is_a_chance(service_profiled_model: ScoringModel) -> None:
    """A CRM showing p_accept needs to know whether it is a take-up chance (and within how long) or the share of
    clients like the client that hold the product: the reasons say so in words, /v1/model as a number."""
    assert service_profiled_model.profiles is not None
    calibrated = service_profiled_model.profiles.take_up
    assert calibrated is not None
    uncalibrated = dataclasses.replace(service_profiled_model,
                                       profiles=dataclasses.replace(service_profiled_model.profiles, take_up=None))
    for model, days in ((service_profiled_model, calibrated.days), (uncalibrated, None)):
        app = create_app(Settings(), model=model, clock=lambda: TODAY)
        with make_client(app) as test_client:
            assert test_client.get("/v1/model").json()["gap_take_up_days"] == days
            answer = test_client.post("/v1/gaps", json={"clients": [{"client_id": "C-new", "industry": "retail"}]})
            reasons = [g["reason"] for g in answer.json()["clients"][0]["gaps"]]
            assert reasons and all(("chance to take it within" in r) is (days is not None) for r in reasons)


def test_each_gap_list_says_where_its_client_stands_today(client: TestClient, service_profiled_model: ScoringModel,
                                                          service_dataset: Dataset) -> None:
    """DOMAIN.md: cross-sell suits a client that has settled. Beside its gap list, each client's status today as
    DOMAIN.md defines it, from the wins the model knows: prospect (none), new (one), regular (two or more),
    lost (no win within the lost window)."""
    won = service_dataset.deals[service_dataset.deals["status"] == "won"]
    wins = won["closed_at"].fillna(won["created_at"]).groupby(won["client_id"]).agg(["count", "max"])
    window = service_profiled_model.spec.config.lost_window_days

    def expected(client_id: str) -> str:
        if client_id not in wins.index:
            return "prospect"
        count, last = wins.loc[client_id]
        if (pd.Timestamp(TODAY) - last).days > window:  # as of the end of TODAY: its wins count, recency to it
            return "lost"
        return "new" if count == 1 else "regular"

    known = sorted(service_profiled_model.spec.client_keys)[:80]
    answers = client.post("/v1/gaps", json={"clients": [{"client_id": c} for c in [*known, "stranger"]]}).json()
    got = {a["client_id"]: (a["client_status"], a["history_source"]) for a in answers["clients"]}
    assert got == {**{c: (expected(c), "model") for c in known}, "stranger": ("prospect", "none")}
    assert {status for status, _ in got.values()} == {"prospect", "new", "regular", "lost"}  # all four checked


def test_history_sent_with_a_client_decides_its_status(client: TestClient,
                                                       service_profiled_model: ScoringModel) -> None:
    known = sorted(service_profiled_model.spec.client_keys)[0]

    def sent(won: int, last: str) -> dict[str, Any]:
        history = {"won_deals": won} if won == 0 else {"won_deals": won, "won_amount": 1000.0 * won,
                                                       "first_won_at": "2020-02-01", "last_won_at": last}
        if won == 1:
            history["first_won_at"] = last
        return {"client_id": known, **history}

    cases = {"prospect": sent(0, ""), "new": sent(1, "2026-01-10"), "regular": sent(3, "2025-11-30"),
             "lost": sent(3, "2024-06-30")}  # 564 days before TODAY: beyond the 360-day window
    window = service_profiled_model.spec.config.lost_window_days
    for status, body in cases.items():
        answer = client.post("/v1/gaps", json={"clients": [body]}).json()["clients"][0]
        assert (answer["client_status"], answer["history_source"]) == (status, "request"), status
    # At the window's edge, as `dealscore clients` and a deal's feature read it: a win exactly the window ago
    # still counts (it was read lost a day early), one a day older does not.
    for days, status in ((window, "regular"), (window + 1, "lost")):
        last = (TODAY - timedelta(days=days)).isoformat()
        answer = client.post("/v1/gaps", json={"clients": [sent(3, last)]}).json()["clients"][0]
        assert answer["client_status"] == status, days


def test_a_model_without_client_history_reads_none_sent_or_its_own(service_profiled_model: ScoringModel) -> None:
    """The review: trained without client ids, a client sent with its history read status null beside
    history_source "request", which says the status was read from it."""
    spec = dataclasses.replace(service_profiled_model.spec, has_client_history=False)
    model = dataclasses.replace(service_profiled_model, spec=spec)
    columns = {"client_id": np.array(["C00010"], dtype=object), "created_day": np.array([20_000.0]),
               "won_deals": np.array([2.0])}
    assert model.client_standing(columns) == ([None], ["none"])
