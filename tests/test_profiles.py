"""Ideal client profiles and gap lists: segments with fallback, a hand-computed profile, gap rules,
planted-gap recovery on generated data, and the real data sets (skipped when absent)."""

from __future__ import annotations

import copy
import dataclasses
import html
import pickle
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model.profiles import ALL_CLIENTS, ClientFacts, ClientGaps, ClientProfiles, TakeUpCalibration, band_label
from training.gap_evaluation import (
    BASELINE,
    MAVEN_CONFIG,
    SERVED,
    SERVED_BY_P,
    hide_one_out,
    ideal_profile_recovery,
    maven_crm_frames,
    planted_gap_recall,
    take_up_note,
    unlisted_products_note,
)
from training.profiles_fit import UNLISTED_KEPT, ProfileConfig, fit_profiles
from training.synthetic_crm import BUSINESS_LINES, SyntheticCRM, generate

TINY = ProfileConfig(min_segment_clients=1, min_best_clients=1, min_income_holders=2)


def tiny_portfolio() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Five retail/small clients; income 600, 300, 60, 30, 10 (total 1,000)."""
    clients = pd.DataFrame({
        "client_id": ["c1", "c2", "c3", "c4", "c5"],
        "industry": ["retail"] * 5,
        "size": ["small"] * 5,
    }).astype(object)
    holdings = pd.DataFrame({
        "client_id": ["c1", "c1", "c2", "c3", "c4", "c5"],
        "product": ["A", "B", "A", "B", "C", "A"],
        "revenue": [500.0, 100.0, 300.0, 60.0, 30.0, 10.0],
    }).astype({"client_id": object, "product": object})
    return clients, holdings


@pytest.fixture(scope="module")
def crm_profiles(small_crm: SyntheticCRM) -> ClientProfiles:
    return fit_profiles(small_crm.deals, small_crm.clients, small_crm.holdings)


def test_profile_of_a_tiny_portfolio_matches_the_hand_computation() -> None:
    clients, holdings = tiny_portfolio()
    profiles = fit_profiles(None, clients, holdings, TINY)
    segment = next(p for p in profiles.ideal_profiles() if p["segment"] == "industry=retail|size=small")
    # Pareto on income: 600 starts at 0% of the total, 300 at 60%: both A; 60 starts at 90%: not A.
    assert segment["clients"] == 5 and segment["best_clients"] == 2
    by_product = {p["product"]: p for p in segment["products"]}
    assert by_product["A"]["adoption_best"] == 1.0 and by_product["A"]["adoption_all"] == 0.6
    assert by_product["B"]["adoption_best"] == 0.5 and by_product["B"]["adoption_all"] == 0.4
    assert by_product["C"]["adoption_best"] == 0.0 and by_product["C"]["adoption_all"] == 0.2
    assert segment["ideal_income"] == 450.0  # median income of the best clients (600, 300)
    assert by_product["A"]["typical_income"] == 300.0  # median of 500, 300, 10
    assert by_product["B"]["typical_income"] == 80.0  # median of 100, 60
    assert segment["ideal_products"] == ["A", "B"]  # held by at least half of the best clients

    answers = {a.client_id: a for a in profiles.gaps_for([ClientFacts(c) for c in clients["client_id"]])}
    assert answers["c3"].potential_income == 390.0  # 450 - 60
    assert answers["c1"].potential_income == 0.0  # earns more than the ideal client: never negative
    assert [g.product for g in answers["c4"].gaps][:2] in (["A", "B"], ["B", "A"])
    assert all(g.in_profile for g in answers["c4"].gaps[:2])


def test_reordering_an_export_keeps_the_best_clients_of_equal_income() -> None:
    # Ten clients of equal income: eight are A (80% of income). Which eight must not depend on row order,
    # or re-exporting the same CRM in another order would change the ideal profile and every gap list.
    ids = [f"c{i}" for i in range(10)]
    clients = pd.DataFrame({"client_id": ids, "industry": ["retail"] * 10, "size": ["small"] * 10}).astype(object)
    holdings = pd.DataFrame({"client_id": ids + ids[:2], "product": ["A"] * 10 + ["B"] * 2,
                             "revenue": [50.0] * 2 + [100.0] * 8 + [50.0] * 2})
    holdings = holdings.astype({"client_id": object, "product": object})

    def profile_of(order: list[int]) -> dict[str, object]:
        profiles = fit_profiles(None, clients.iloc[order], holdings.iloc[::-1] if order[0] else holdings, TINY)
        return next(p for p in profiles.ideal_profiles() if p["segment"] == "industry=retail|size=small")

    forward, backward = profile_of(list(range(10))), profile_of(list(range(9, -1, -1)))
    assert forward["best_clients"] == 8
    # Every client earns 100; c0 and c1 hold B; in id order both are among the best, so B's adoption among them is 2/8.
    adoption = {p["product"]: p["adoption_best"] for p in forward["products"]}
    assert adoption["B"] == 0.25
    assert backward == forward


def test_small_segments_fall_back_to_a_coarser_one_and_the_answer_names_it() -> None:
    clients = pd.DataFrame({
        "client_id": [f"c{i}" for i in range(12)],
        "industry": ["retail"] * 8 + ["farming"] * 4,
        "size": ["small"] * 6 + ["large"] * 2 + ["small"] * 4,
    }).astype(object)
    holdings = pd.DataFrame({"client_id": [f"c{i}" for i in range(12)], "product": ["A", "B"] * 6,
                             "revenue": np.arange(1.0, 13.0) * 100})
    holdings = holdings.astype({"client_id": object, "product": object})
    config = ProfileConfig(min_segment_clients=5, min_best_clients=1)
    profiles = fit_profiles(None, clients, holdings, config)
    asked = [ClientFacts("c0"), ClientFacts("c6"), ClientFacts("c8"), ClientFacts("x", industry="mining"),
             ClientFacts("y", size="small"), ClientFacts("z", industry="retail", size="large")]
    segments = [a.segment for a in profiles.gaps_for(asked)]
    assert segments == ["industry=retail|size=small", "industry=retail", ALL_CLIENTS, ALL_CLIENTS,
                        ALL_CLIENTS, "industry=retail"]
    # A segment with enough clients but too few best ones falls back as well.
    strict = fit_profiles(None, clients, holdings, ProfileConfig(min_segment_clients=5, min_best_clients=6))
    assert strict.gaps_for([ClientFacts("c0")])[0].segment == ALL_CLIENTS


def test_by_default_a_segment_needs_20_clients() -> None:
    """docs/domain.md: a segment falls back to a coarser one when it has fewer than 20 clients (or 5 best)."""
    clients = pd.DataFrame({"client_id": [f"c{i}" for i in range(40)],
                            "industry": ["retail"] * 25 + ["farming"] * 15,
                            "size": ["small"] * 15 + ["large"] * 10 + ["small"] * 15}).astype(object)
    holdings = pd.DataFrame({"client_id": [f"c{i}" for i in range(40)], "product": ["A", "B"] * 20,
                             "revenue": [100.0] * 40}).astype({"client_id": object, "product": object})
    profiles = fit_profiles(None, clients, holdings)
    assert ProfileConfig().min_segment_clients == 20
    # retail|small has 15 clients: its clients get the retail segment (25); farming (15) falls to all clients.
    assert [a.segment for a in profiles.gaps_for([ClientFacts("c0"), ClientFacts("c30")])] == [
        "industry=retail", ALL_CLIENTS]


def test_other_products_are_offered_from_a_two_percent_chance(crm_profiles: ClientProfiles) -> None:
    """docs/domain.md: after the profile's gaps, the other products the client may take (p_accept >= 0.02)."""
    assert ProfileConfig().min_p_accept == 0.02
    facts = [ClientFacts(str(c)) for c in list(crm_profiles.known_products)[:40]]
    resolved = crm_profiles.resolve(facts)
    p = crm_profiles.p_accept(resolved)
    checked = 0
    for i, answer in enumerate(crm_profiles.gaps_for(facts, top_k=50)):
        profile = {g.product for g in answer.gaps if g.in_profile}
        expected = {name for j, name in enumerate(crm_profiles.products)
                    if j not in resolved[i].held and name not in profile and p[i, j] >= 0.02}
        assert {g.product for g in answer.gaps if not g.in_profile} == expected, answer.client_id
        checked += bool(expected)
    assert checked > 5


def test_a_products_typical_income_in_a_segment_needs_three_holders_there() -> None:
    """One holder is no typical income: a segment where a single client holds P (at 1,000) takes P's typical
    income from the coarser segment (all clients: 500), as its potential income does."""
    n = 50
    clients = pd.DataFrame({"client_id": [f"c{i}" for i in range(n)],
                            "industry": ["retail"] * 25 + ["farming"] * 25, "size": ["small"] * n}).astype(object)
    rows = [(f"c{i}", "A", 100.0 + i) for i in range(n)] + [("c0", "P", 1_000.0)] + [
        (f"c{i}", "P", 500.0) for i in range(25, 30)]
    holdings = pd.DataFrame(rows, columns=["client_id", "product", "revenue"]).astype(
        {"client_id": object, "product": object})
    profiles = fit_profiles(None, clients, holdings)
    assert ProfileConfig().min_income_holders == 3
    p = list(profiles.products).index("P")
    typical = {name: profiles.typical_income[row][p] for row, name in enumerate(profiles.segment_names)}
    assert typical["industry=retail|size=small"] == 500.0  # one holder: the coarser segments' median
    assert typical["industry=farming|size=small"] == 500.0  # five holders of its own
    assert typical[ALL_CLIENTS] == 500.0


def test_fallback_chain_is_configurable_and_validated() -> None:
    clients, holdings = tiny_portfolio()
    clients["region"] = ["north", "north", "south", "south", "south"]
    config = ProfileConfig(segment_keys=("industry", "size", "region"), fallback=(("industry",),),
                           min_segment_clients=3, min_best_clients=1)
    assert config.chain() == (("industry", "size", "region"), ("industry",), ())
    profiles = fit_profiles(None, clients, holdings, config)
    assert profiles.gaps_for([ClientFacts("c3")])[0].segment == "industry=retail|size=small|region=south"
    assert profiles.gaps_for([ClientFacts("c1")])[0].segment == "industry=retail"
    with pytest.raises(ValueError, match="subset"):
        ProfileConfig(segment_keys=("industry",), fallback=(("region",),)).chain()
    with pytest.raises(ValueError, match="segment keys"):
        ProfileConfig(segment_keys=("colour",)).chain()


def test_gaps_never_include_held_products(small_crm: SyntheticCRM, crm_profiles: ClientProfiles) -> None:
    held = small_crm.holdings.groupby("client_id")["product"].agg(set).to_dict()
    answers = crm_profiles.gaps_for([ClientFacts(c) for c in small_crm.clients["client_id"]], top_k=20)
    assert sum(len(a.gaps) for a in answers) > 0
    for answer in answers:
        assert not {g.product for g in answer.gaps} & held.get(answer.client_id, set())
    sent = crm_profiles.gaps_for([ClientFacts("C00001", products=("deposit", "leasing"))], top_k=20)[0]
    assert not {g.product for g in sent.gaps} & {"deposit", "leasing"}


def test_a_sent_spelling_differing_in_case_or_spaces_means_the_fitted_product_and_level(
        crm_profiles: ClientProfiles) -> None:
    """An audit sent a client holding "Acquiring" in "Retail"/"Small": acquiring came back as its second gap
    and the client fell back to the all-clients segment."""
    exact, spelled = crm_profiles.gaps_for([
        ClientFacts("new-3", industry="retail", size="small", products=("acquiring", "deposit")),
        ClientFacts("new-3", industry="Retail ", size="SMALL", products=(" Acquiring", "DEPOSIT")),
    ], top_k=20, as_of_day=20_000.0)
    assert spelled.segment == exact.segment == "industry=retail|size=small"
    assert spelled == exact
    assert not {g.product for g in spelled.gaps} & {"acquiring", "deposit"}
    # Words joined or separated otherwise are the fitted product too (maven: "GTX Pro" held, "GTXPro" fitted, and
    # every holder offered it, ">99% chance").
    joined, separated = crm_profiles.gaps_for([
        ClientFacts("new-4", industry="retail", size="small", products=("cash_collection", "credit_line")),
        ClientFacts("new-4", industry="retail", size="small", products=("Cash Collection", "credit-line")),
    ], top_k=20, as_of_day=20_000.0)
    assert separated == joined
    assert crm_profiles.unknown_products(["Cash Collection", "credit-line", "CREDIT LINE"]) == []
    # A name two fitted products share up to case stays unknown rather than picking one of them.
    clients, holdings = tiny_portfolio()
    holdings["product"] = ["A", "B", "A", "B", "C", "a"]
    twins = fit_profiles(None, clients, holdings, TINY)
    assert twins.product_position("a") is not None and twins.product_position("A") is not None
    assert twins.product_position(" a ") is None and twins.product_position("b") == twins.product_position("B")
    holdings["product"] = ["GTX Pro", "B", "GTXPro", "B", "C", "C"]
    spelt_twice = fit_profiles(None, clients, holdings, TINY)
    assert spelt_twice.product_position("gtx pro") is None  # two fitted products share the form: neither


def test_a_known_clients_income_follows_the_products_it_is_sent_with(crm_profiles: ClientProfiles) -> None:
    """A known client sent holding every product kept its income at training, and so a potential income beside
    an empty gap list (an audit: 39,020.72 with [], with 2 products and with all 11)."""
    client = next(c for c, held in crm_profiles.known_products.items() if 0 < len(held) < len(crm_profiles.products)
                  and crm_profiles.known_income.get(c, 0) > 0)
    held = tuple(crm_profiles.products[j] for j in crm_profiles.known_products[client])
    typical = crm_profiles.typical_income[-1]  # what a product earns over all clients, as fitting values it

    def answer(products: tuple[str, ...] | None) -> ClientGaps:
        return crm_profiles.gaps_for([ClientFacts(client, products=products)], top_k=20, as_of_day=20_000.0)[0]

    trained = answer(None)
    assert answer(held).income == trained.income == round(crm_profiles.known_income[client], 2)
    everything = answer(crm_profiles.products)
    gained = sum(typical[j] for j, p in enumerate(crm_profiles.products) if p not in held)
    assert everything.income == pytest.approx(trained.income + gained, abs=0.01)
    assert everything.gaps == [] and everything.potential_income <= trained.potential_income
    # A product given up takes off what it earned this client (its revenue at training), not what it typically
    # earns: so /v1/gaps and `dealscore clients` (the holdings without it) agree (a review: 27,462 against 20,787).
    earned = crm_profiles.known_holding_income[client]
    assert sum(earned.values()) == pytest.approx(crm_profiles.known_income[client])
    dropped = held[0]
    kept = answer(held[1:])
    assert kept.income == pytest.approx(trained.income - earned[crm_profiles.product_position(dropped)], abs=0.01)
    nothing = answer(())
    assert nothing.income == pytest.approx(0.0, abs=0.01)
    assert nothing.potential_income >= trained.potential_income


def test_potential_income_is_never_negative(small_crm: SyntheticCRM, crm_profiles: ClientProfiles) -> None:
    answers = crm_profiles.gaps_for([ClientFacts(c) for c in small_crm.clients["client_id"]])
    potentials = np.array([a.potential_income for a in answers], dtype=np.float64)
    assert np.isfinite(potentials).all() and (potentials >= 0).all()
    assert (potentials == 0).any() and (potentials > 0).any()  # rich clients have none, others some
    assert all(g.potential_income >= 0 and 0 <= g.p_accept <= 1 for a in answers for g in a.gaps)
    # An income left empty (NaN, as a table's blank cell reads) is unknown, not a number: the known one stands.
    ids = list(small_crm.clients["client_id"][:20])
    blank = crm_profiles.gaps_for([ClientFacts(c, income=float("nan")) for c in ids])
    assert [a.potential_income for a in blank] == [a.potential_income for a in answers[:20]]


def test_profile_gaps_come_first_by_expected_income_then_others_by_chance(crm_profiles: ClientProfiles) -> None:
    answer = crm_profiles.gaps_for([ClientFacts("C00002")], top_k=20)[0]
    inside = [g for g in answer.gaps if g.in_profile]
    outside = [g for g in answer.gaps if not g.in_profile]
    assert inside and outside and answer.gaps == inside + outside
    money = [g.potential_income for g in inside]
    assert money == sorted(money, reverse=True)
    chance = [g.p_accept for g in outside]
    assert chance == sorted(chance, reverse=True)
    for gap in answer.gaps:
        assert gap.typical_income is not None
        assert gap.potential_income == pytest.approx(gap.p_accept * gap.typical_income, rel=1e-3, abs=0.02)
        # a calibrated take-up chance where the profiles have one, else the acceptance model's p called what it is
        # (tests/test_profiles_take_up.py)
        calibrated = crm_profiles.take_up is not None
        assert ("chance to take it within" in gap.reason) is calibrated
        assert ("of clients like this one" in gap.reason) is not calibrated


def test_profile_gaps_come_first_when_ranked_by_chance_too(small_crm: SyntheticCRM) -> None:
    """Ranked by p_accept (ProfileConfig's other order), the profile's gaps still come before the others: by
    expected income the incomes alone had kept them ahead, so nothing checked the order's first key."""
    profiles = fit_profiles(small_crm.deals, small_crm.clients, small_crm.holdings,
                            ProfileConfig(rank_by="p_accept"))
    answers = profiles.gaps_for([ClientFacts(str(c)) for c in small_crm.clients["client_id"].iloc[:150]], top_k=20)
    mixed = 0
    for answer in answers:
        inside = [g for g in answer.gaps if g.in_profile]
        outside = [g for g in answer.gaps if not g.in_profile]
        assert answer.gaps == inside + outside, answer.client_id
        assert [g.p_accept for g in inside] == sorted((g.p_accept for g in inside), reverse=True)
        mixed += bool(inside and outside and max(g.p_accept for g in outside) > min(g.p_accept for g in inside))
    assert mixed > 10  # lists where an outside product is likelier than a profile one: the order is the rule's


def test_a_batch_of_clients_gets_the_gap_lists_each_would_get_alone(small_crm: SyntheticCRM,
                                                                    crm_profiles: ClientProfiles) -> None:
    """Gap lists are ranked for a whole batch at once: the batch must not change any client's answer."""
    known = [ClientFacts(str(c)) for c in small_crm.clients["client_id"].iloc[:60]]
    products = list(crm_profiles.products)
    new = [ClientFacts(f"new-{i}", industry=str(small_crm.clients["industry"].iloc[i]), size="small",
                       products=products[i % 3:i % 3 + i % 4]) for i in range(20)]
    batch = known + new
    for top_k in (1, 3, len(products)):
        together = crm_profiles.gaps_for(batch, top_k=top_k, as_of_day=20_000.0)
        alone = [crm_profiles.gaps_for([facts], top_k=top_k, as_of_day=20_000.0)[0] for facts in batch]
        assert together == alone
    assert sum(len(answer.gaps) for answer in together) > len(batch)


def test_partner_products_follow_the_acceptance_model_in_place(crm_profiles: ClientProfiles) -> None:
    """The 'often taken with' partner comes from the acceptance model the profiles hold now (fitting sets it
    after the profiles are built), even after gap lists were asked of an earlier one."""
    profiles = copy.deepcopy(crm_profiles)
    holder = ClientFacts("C00002")
    offset = profiles.encoder.held_offset
    held = profiles.known_products["C00002"]
    assert held and profiles.acceptance.fitted.any()
    coef = profiles.acceptance.coef.copy()
    coef[profiles.acceptance.fitted, offset + held[0]] = 2.0  # what it holds raises every other's chance
    profiles.acceptance = dataclasses.replace(profiles.acceptance, coef=coef)
    before = profiles.gaps_for([holder], top_k=20)[0].gaps
    assert any(f"often taken with {profiles.products[held[0]]}" in gap.reason for gap in before)
    coef = profiles.acceptance.coef.copy()
    coef[:, offset:offset + len(profiles.products)] = 0.0  # no held product raises any other's chance
    profiles.acceptance = dataclasses.replace(profiles.acceptance, coef=coef)
    after = profiles.gaps_for([holder], top_k=20)[0].gaps
    assert after and not any("often taken with" in gap.reason for gap in after)


def test_a_partner_is_named_only_where_holding_it_raises_the_chance(crm_profiles: ClientProfiles) -> None:
    """Holding a product sets its flag and adds one to the count of products held: a flag weight of 0.6 with a
    count term of -2 lowers the chance, and bank marketing's gap lists said "often taken with" for such a pair."""
    profiles = copy.deepcopy(crm_profiles)
    client = ClientFacts("new-4", industry="retail", size="small", products=(profiles.products[0],))
    offset = profiles.encoder.held_offset
    coef = profiles.acceptance.coef.copy()
    coef[:, offset:offset + len(profiles.products)] = 0.0
    coef[profiles.acceptance.fitted, offset] = 0.6  # holding the first product raises every other's flag term
    for count, named in ((0.0, True), (-2.0, False)):
        count_coef = np.full(len(profiles.products), count)
        profiles.acceptance = dataclasses.replace(profiles.acceptance, coef=coef, count_coef=count_coef)
        gaps = profiles.gaps_for([client], top_k=20, as_of_day=20_000.0)[0].gaps
        assert gaps
        partnered = [g for g in gaps if f"often taken with {profiles.products[0]}" in g.reason]
        assert bool(partnered) is named, (count, [g.reason for g in gaps])


def test_a_near_certain_chance_is_not_shown_as_a_certainty(crm_profiles: ClientProfiles) -> None:
    """A p_accept of 0.9975 read "100% chance for this client" in an audit. Without a take-up calibration the
    reason gives the acceptance model's p as the share of clients like this one holding it; with one, the
    calibrated chance: neither shows 0.9975 as 100% nor 0.003 as 0%."""
    for take_up in (None, TakeUpCalibration(intercept=0.0, slope=1.0, days=365)):
        profiles = copy.deepcopy(crm_profiles)
        profiles.take_up = take_up
        said = "held by {} of clients like this one" if take_up is None else "{} chance to take it within 12 months"
        fitted = profiles.acceptance.fitted
        profiles.acceptance = dataclasses.replace(profiles.acceptance,
                                                  intercept=np.where(fitted, 12.0, profiles.acceptance.intercept))
        gaps = profiles.gaps_for([ClientFacts("new-5", industry="retail", size="small", products=())], top_k=20,
                                 as_of_day=20_000.0)[0].gaps
        sure = [g for g in gaps if g.p_accept >= 0.995]
        assert sure and all(said.format(">99%") in g.reason and "100%" not in g.reason for g in sure)
        profiles.acceptance = dataclasses.replace(profiles.acceptance,
                                                  intercept=np.where(fitted, -12.0, profiles.acceptance.intercept),
                                                  fitted=fitted)
        profiles.min_p_accept = 0.0  # let the unlikely ones be listed too
        gaps = profiles.gaps_for([ClientFacts("new-5", industry="retail", size="small", products=())], top_k=20,
                                 as_of_day=20_000.0)[0].gaps
        faint = [g for g in gaps if g.p_accept < 0.005]  # rounded to 4 places: a tiny chance shows as 0.0
        assert faint and all(said.format("<1%") in g.reason for g in faint)


def test_a_reason_quotes_the_chance_its_gap_carries(crm_profiles: ClientProfiles) -> None:
    """The reason's percentage is the p_accept field's, as a CRM shows both side by side: a chance of 0.17496
    read "17%" in the reason beside a p_accept of 0.175 (18%), on 91 of 16,984 demo gaps (a manager-view audit)."""
    profiles = copy.deepcopy(crm_profiles)
    # A flat take-up map: every gap's chance is 0.17496, which rounds to the field's 0.175.
    profiles.take_up = TakeUpCalibration(intercept=float(np.log(0.17496 / (1 - 0.17496))), slope=0.0, days=365)
    gaps = profiles.gaps_for([ClientFacts("new-6", industry="retail", size="small", products=())], top_k=20,
                             as_of_day=20_000.0)[0].gaps
    assert gaps and all(g.p_accept == 0.175 for g in gaps)
    assert all("; 18% chance to take it within 12 months" in g.reason for g in gaps), [g.reason for g in gaps]


def test_new_clients_and_new_segments_still_get_sensible_gaps(crm_profiles: ClientProfiles) -> None:
    newcomer, stranger = crm_profiles.gaps_for([
        ClientFacts("new-1", industry="retail", size="small", products=()),
        ClientFacts("new-2", industry="space mining", size="huge"),
    ])
    assert newcomer.segment == "industry=retail|size=small" and newcomer.gaps
    assert newcomer.potential_income == newcomer.ideal_income  # holds nothing yet: all of it is potential
    assert stranger.segment == ALL_CLIENTS and stranger.gaps
    assert {g.product for g in newcomer.gaps} <= set(crm_profiles.products)


def test_known_client_uses_its_training_holdings_unless_products_are_sent(
        small_crm: SyntheticCRM, crm_profiles: ClientProfiles) -> None:
    client = small_crm.holdings["client_id"].iloc[0]
    own = set(small_crm.holdings.loc[small_crm.holdings["client_id"] == client, "product"])
    known = crm_profiles.gaps_for([ClientFacts(client)], top_k=20)[0]
    assert not {g.product for g in known.gaps} & own
    sent = crm_profiles.gaps_for([ClientFacts(client, products=())], top_k=20)[0]
    assert own & {g.product for g in sent.gaps}


def test_acceptance_recovers_the_business_lines_affinities(crm_profiles: ClientProfiles) -> None:
    """Each business line's entry product is what most raises the chance of its follow-on: in the follow-on's
    model its held flag has the largest weight (1.5-2.0 on this data; 0.7-2.1 on seeds 7 and 23), and a
    client sent with it gets better than double the odds of taking the follow-on."""
    offset, products = crm_profiles.encoder.held_offset, crm_profiles.products
    held_weights = crm_profiles.acceptance.coef[:, offset:offset + len(products)]
    for line in BUSINESS_LINES:
        entry, follow_on = products.index(line.entry), products.index(line.follow_on)
        others = np.delete(held_weights[follow_on], [entry, follow_on])
        assert held_weights[follow_on, entry] >= 0.5 and held_weights[follow_on, entry] > others.max() + 0.2
        without, with_entry = crm_profiles.p_accept(crm_profiles.resolve([
            ClientFacts("a", industry="manufacturing", size="medium", products=("settlement_account",)),
            ClientFacts("b", industry="manufacturing", size="medium", products=("settlement_account", line.entry)),
        ], as_of_day=crm_profiles.reference_day))
        odds = with_entry[follow_on] / (1 - with_entry[follow_on]) / (without[follow_on] / (1 - without[follow_on]))
        assert odds > 2.0, line.name


def test_profiles_survive_pickling_and_answer_fast(crm_profiles: ClientProfiles) -> None:
    restored = pickle.loads(pickle.dumps(crm_profiles))
    facts = [ClientFacts("C00003"),
             ClientFacts("x", industry="retail", size="small", products=("acquiring",))]
    assert restored.gaps_for(facts, as_of_day=20_000.0) == crm_profiles.gaps_for(facts, as_of_day=20_000.0)
    one = [ClientFacts("C00003")]
    crm_profiles.gaps_for(one)
    timings = []
    for _ in range(200):
        started = time.perf_counter()
        crm_profiles.gaps_for(one)
        timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 0.002  # well under a millisecond on an idle machine


def test_numeric_sizes_and_tenure_are_banded() -> None:
    assert [band_label(v, (10.0, 50.0)) for v in (3, 10, 49.9, 50, 500)] == ["<10", "10-50", "10-50", "50+",
                                                                           "50+"]
    clients = pd.DataFrame({
        "client_id": [f"c{i}" for i in range(8)],
        "industry": ["retail"] * 8,
        "size": [5.0, 8.0, 12.0, 30.0, 40.0, 60.0, 80.0, 90.0],
        "since": pd.to_datetime(["2020-01-01"] * 4 + ["2024-06-01"] * 4).astype("datetime64[ns]"),
    }).astype({"client_id": object, "industry": object})
    holdings = pd.DataFrame({"client_id": [f"c{i}" for i in range(8)], "product": ["A"] * 8,
                             "revenue": [1.0] * 8}).astype({"client_id": object, "product": object})
    holdings["since"] = pd.Timestamp("2024-12-31")
    config = ProfileConfig(segment_keys=("size", "tenure"), size_bands=(10.0, 50.0), min_segment_clients=2,
                           min_best_clients=1)
    profiles = fit_profiles(None, clients, holdings, config)
    names = {p["segment"] for p in profiles.ideal_profiles()}
    assert "size=10-50|tenure=3y+" in names and "size=50+|tenure=<1y" in names
    answer = profiles.gaps_for([ClientFacts("n", size="70", since_day=float(np.datetime64("2024-10-01", "D")
                                                                              .astype(np.int64)))],
                               as_of_day=profiles.reference_day)[0]
    assert answer.segment == "size=50+|tenure=<1y"


def test_holdings_are_derived_from_won_deals_when_absent() -> None:
    deals = pd.DataFrame({
        "deal_id": ["d1", "d2", "d3", "d4"],
        "client_id": ["c1", "c1", "c2", "c2"],
        "created_at": pd.to_datetime(["2024-01-01"] * 4).astype("datetime64[ns]"),
        "status": ["won", "won", "won", "lost"],
        "amount": [100.0, 50.0, 70.0, 999.0],
        "product": ["A", "B", "A", "B"],
    }).astype({"deal_id": object, "client_id": object, "status": object, "product": object})
    profiles = fit_profiles(deals, None, None, TINY)
    assert profiles.products == ("A", "B")
    assert profiles.known_income == {"c1": 150.0, "c2": 70.0}
    assert [g.product for g in profiles.gaps_for([ClientFacts("c2")])[0].gaps] == ["B"]


@pytest.mark.parametrize("seed", [7, 11, 23])
def test_planted_gaps_are_recovered_well_ahead_of_popularity(seed: int) -> None:
    """The issue's goal at the benchmark's size (bench/gaps_bench.py: 20,000 deals, 5 folds).

    The planted gap is the client's likeliest missing product, mostly its business line's follow-on, seen
    in the line's entry product it holds: popularity (the segment's most common missing products) cannot
    see it. Measured recall@3 on seeds 7 / 11 / 23 (1 / 2 / 3): by p_accept 0.901 / 0.904 / 0.964 (0.918 /
    0.899 / 0.904), popularity 0.665 / 0.654 / 0.771 (0.677 / 0.713 / 0.713), so a lead of at least 0.186.
    The served list orders the profile's gaps by expected income and the products outside the profile by
    chance, so on these gaps (outside the profile) it matches the p_accept order: 0.901 on seed 7 (0.788
    when products outside the profile were ordered by expected income too).
    """
    crm = generate(seed=seed, n_deals=20_000)
    results = {r.method: r for r in planted_gap_recall(crm, folds=5)}
    assert results[SERVED].clients == len(crm.planted_gaps) >= 150
    assert results[SERVED_BY_P].recall_at_3 >= 0.85
    assert results[SERVED_BY_P].recall_at_3 >= results[BASELINE].recall_at_3 + 0.15
    assert results[SERVED_BY_P].mrr >= results[BASELINE].mrr + 0.05  # +0.09 to +0.17 on the six seeds
    assert results[SERVED].recall_at_3 >= 0.85
    assert results[SERVED].recall_at_3 >= results[BASELINE].recall_at_3 + 0.15
    assert results["p_accept_only"].recall_at_3 >= 0.9


def test_planted_gaps_are_found_on_the_small_data_set(small_crm: SyntheticCRM) -> None:
    """The same at the test fixture's size (750 clients, 55 planted gaps, 3 folds): 0.89 by p_accept, 0.82
    served, 0.64 popularity (seeds 7 and 23 at this size: 0.84 / 0.82 by p_accept, 0.73 / 0.58 popularity)."""
    results = {r.method: r for r in planted_gap_recall(small_crm, folds=3)}
    assert results[SERVED].clients == len(small_crm.planted_gaps)
    assert results[SERVED_BY_P].recall_at_3 >= 0.8
    assert results[SERVED_BY_P].recall_at_3 >= results[BASELINE].recall_at_3 + 0.1
    assert results[SERVED].recall_at_3 >= results["global_popularity"].recall_at_3 + 0.1


def test_ideal_profiles_match_the_planted_ones(small_crm: SyntheticCRM, crm_profiles: ClientProfiles) -> None:
    """Every planted profile product is found. Business lines add their products to the best clients of
    every segment, so a few segments' fitted profiles also hold a line product (precision 0.68 here, 0.75-0.84
    at 20,000 deals; 0.91-0.95 before there were lines)."""
    recovery = ideal_profile_recovery(crm_profiles, small_crm.ideal_profiles)
    assert recovery["segments"] >= 12
    assert recovery["precision"] >= 0.6 and recovery["recall"] >= 0.9


def test_hidden_products_come_back_ahead_of_popularity(small_crm: SyntheticCRM) -> None:
    results = {r.method: r for r in hide_one_out("synthetic", small_crm.clients, small_crm.holdings,
                                                 deals=small_crm.deals, folds=3)}
    assert results["p_accept_only"].mrr >= results[BASELINE].mrr
    assert results[SERVED].income_recall_at_3 is not None
    assert results[SERVED].income_recall_at_3 >= results[BASELINE].income_recall_at_3  # type: ignore[operator]


def test_maven_crm_accounts_get_profiles(shared_data: Path) -> None:
    clients, holdings = maven_crm_frames(shared_data / "maven_crm", as_of="2017-04-01")
    assert clients["client_id"].is_unique and set(holdings["client_id"]) <= set(clients["client_id"])
    assert "GTXPro" not in set(holdings["product"])
    profiles = fit_profiles(None, clients, holdings, MAVEN_CONFIG)
    answers = profiles.gaps_for([ClientFacts(c) for c in clients["client_id"]])
    held = holdings.groupby("client_id")["product"].agg(set).to_dict()
    assert all(not {g.product for g in a.gaps} & held.get(a.client_id, set()) for a in answers)
    assert sum(bool(a.gaps) for a in answers) >= 0.8 * len(answers)
    assert all(a.potential_income is not None and a.potential_income >= 0 for a in answers)


def test_the_acceptance_penalty_stays_strong_unless_the_data_show_better() -> None:
    """The one-standard-error rule: on a few dozen clients of noise the strongest penalty (the segment's
    popularity) is kept; where an attribute truly moves the chance, a weak penalty lets it show."""
    from training.profiles_fit import CV_FOLDS, REGULARISATION_GRID, _regularisation

    def chosen(n: int, signal: float, seed: int) -> float:
        rng = np.random.default_rng(seed)
        features = rng.normal(size=(n, 4))
        y = (rng.random(n) < 1 / (1 + np.exp(-signal * features[:, 0]))).astype(np.float64)
        fold = rng.permutation(n) % CV_FOLDS
        return _regularisation(features, y, np.zeros(n), fold, ProfileConfig())

    assert [chosen(60, 0.0, seed) for seed in range(5)].count(REGULARISATION_GRID[0]) >= 4
    assert chosen(3000, 3.0, 0) >= 0.1


def test_a_product_every_best_client_holds_reads_100_percent() -> None:
    from model.profiles import _percent

    assert (_percent(1.0), _percent(0.0), _percent(0.5)) == ("100%", "0%", "50%")


def test_income_of_a_known_client_sent_without_its_products_is_never_negative_on_older_models(
        crm_profiles: ClientProfiles) -> None:
    # Models written before per-holding income (still read) take off what each product given up typically
    # earns, which can be more than the client earned: its income stays at 0, its potential at the ideal's.
    profiles = copy.deepcopy(crm_profiles)
    profiles.known_holding_income = {}
    typical = profiles.typical_income[-1]
    client = next(c for c, held in profiles.known_products.items()
                  if held and profiles.known_income.get(c, 0.0) < float(np.nansum(typical[list(held)])))
    answer = profiles.gaps_for([ClientFacts(client, products=())], top_k=3, as_of_day=20_000.0)[0]
    assert answer.income == 0.0
    assert answer.potential_income == answer.ideal_income


def test_won_products_the_holdings_table_never_names_are_reported(small_crm: SyntheticCRM) -> None:
    """A holdings table that spells a product otherwise than the deals, beyond what folding joins, had its won
    deals' product silently unknown to the gap lists; training now names it, in its progress and the report."""
    from model.dataset import dataset_from_frames
    from training.fit import train
    from training.report import render_html

    holdings = small_crm.holdings.assign(product=small_crm.holdings["product"].replace(
        {"payroll": "Payroll services", "leasing": "LEASING"}))  # LEASING folds to leasing; the other does not
    said: list[str] = []
    result = train(dataset_from_frames(small_crm.deals, small_crm.clients, holdings, for_training=True),
                   progress=said.append)
    won_payroll = int(((small_crm.deals["product"] == "payroll") & (small_crm.deals["status"] == "won")).sum())
    summary = result.report["profiles"]["summary"]
    assert summary["won_products_not_in_holdings"] == {"payroll": won_payroll}
    note = unlisted_products_note(summary)
    assert note and f"'payroll' ({won_payroll:,} won deals)" in note and "'Payroll services'" in note
    assert note in said
    assert html.escape(note[0].upper() + note[1:]) in render_html(result.report)
    # The report says what a gap's p_accept is in this model: a take-up chance, or a share of similar clients.
    meaning = take_up_note(summary)
    assert meaning and ("the chance of taking" in meaning) is summary["take_up"]["calibrated"]
    assert html.escape(meaning[0].upper() + meaning[1:]) in render_html(result.report)
    assert "P_accept" not in render_html(result.report)  # the field's name keeps its spelling in a sentence
    # A table naming every won product says nothing. Nor do holdings read off won deals, whether here or by
    # model.dataset: won deals without a client_id are not holdings, and their products had been reported as
    # missing from a "holdings table" the export never had.
    assert fit_profiles(small_crm.deals, small_crm.clients, small_crm.holdings, with_acceptance=False).summary[
        "won_products_not_in_holdings"] == {}
    deals = small_crm.deals.copy()
    unlinked = deals.index[deals["status"] == "won"][:30]
    deals.loc[unlinked, "product"], deals.loc[unlinked, "client_id"] = "installation", None
    said.clear()
    derived = train(dataset_from_frames(deals, small_crm.clients, None, for_training=True), progress=said.append)
    assert derived.report["profiles"]["summary"]["holdings_source"] == "won deals"
    assert derived.report["profiles"]["summary"]["won_products_not_in_holdings"] == {}
    assert not any("never names" in line for line in said)


def test_unlisted_products_are_matched_as_holdings_match_them_and_kept_few() -> None:
    """A folded form two listed spellings share matches neither (as when won deals are added to holdings), so a
    deal spelling is reported then; only the most won UNLISTED_KEPT are kept, with how many there were."""
    clients, holdings = tiny_portfolio()
    holdings = pd.concat([holdings, pd.DataFrame({"client_id": ["c2", "c3"], "product": ["GTX Pro", "GTXPro"],
                                                  "revenue": [1.0, 1.0]})], ignore_index=True)
    day = pd.Timestamp("2024-06-01")
    orders = [f"order line {i}" for i in range(UNLISTED_KEPT + 5)]
    products = ["gtx-pro"] * 3 + ["a"] + orders
    deals = pd.DataFrame({"deal_id": [f"d{i}" for i in range(len(products))], "client_id": "c1",
                          "product": products, "status": "won", "created_at": day, "closed_at": day})
    summary = fit_profiles(deals, clients, holdings, TINY, with_acceptance=False).summary
    unlisted = summary["won_products_not_in_holdings"]
    assert "a" not in unlisted  # folds to A, the one listed spelling of that form
    assert list(unlisted)[0] == "gtx-pro" and unlisted["gtx-pro"] == 3
    assert len(unlisted) == UNLISTED_KEPT and summary["won_products_not_in_holdings_count"] == len(orders) + 1
    note = unlisted_products_note(summary)
    assert note and "'gtx-pro' (3 won deals)" in note and "(1 won deal)" in note
    assert f"and {len(orders) + 1 - 8} more" in note


def test_a_product_won_but_missing_from_the_holdings_table_is_held_not_a_gap() -> None:
    # The holdings export lags the CRM: c4 won a deal of B last week, the table does not list it yet.
    clients, holdings = tiny_portfolio()
    day = pd.Timestamp("2024-06-01")
    deals = pd.DataFrame({"deal_id": ["d0", "d1", "d2", "d3"], "client_id": ["c3", "c4", "c4", "c5"],
                          "product": ["C", " b", "consulting", "B"], "status": ["won", "won", "won", "lost"],
                          "created_at": [day - pd.Timedelta(days=120)] + [day] * 3,
                          "closed_at": [day - pd.Timedelta(days=100)] + [day] * 3, "amount": [5.0, 70.0, 5.0, 9.0]})
    without = fit_profiles(None, clients, holdings, TINY).gaps_for([ClientFacts("c4")], top_k=5)[0]
    assert "B" in [g.product for g in without.gaps]
    profiles = fit_profiles(deals, clients, holdings, TINY)
    answer = profiles.gaps_for([ClientFacts("c4")], top_k=5)[0]
    assert "B" not in [g.product for g in answer.gaps]  # " b" is the table's B
    # A lost deal is not a holding, and a product the table never lists (a one-off service) is not a product.
    assert "B" in [g.product for g in profiles.gaps_for([ClientFacts("c5")], top_k=5)[0].gaps]
    assert profiles.products == ("A", "B", "C")
    # c3's win of C closed 100 days before the data's last day: older than an export lags, so the table, which
    # does not list it, says c3 no longer holds C.
    assert 2 not in profiles.known_products["c3"]
    assert profiles.summary["holdings_added_from_won_deals"] == 1
    assert profiles.summary["won_products_not_in_holdings"] == {"consulting": 1}  # named, as a possible misspelling
    # The added holding earns what B typically does (median of 100 and 60): c4's income is 30 + 80.
    assert answer.income == 110.0
    # A table listing a holding that started after the win was exported after it: its word stands.
    later = holdings.assign(since=pd.Timestamp("2024-06-02"))
    assert fit_profiles(deals, clients, later, TINY).summary["holdings_added_from_won_deals"] == 0
    assert fit_profiles(deals, clients, holdings, TINY, add_won_products=False).summary[
        "holdings_added_from_won_deals"] == 0


def test_a_client_s_tenure_band_is_as_of_the_utc_date_in_any_time_zone(
        crm_profiles: ClientProfiles, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gap lists (HTTP and `dealscore gaps` without --as-of) band a client's tenure as of today: the UTC date, as
    the deals are scored (model.contract.utc_today). The machine's local date put a client whose start lies at a
    band's edge in another band for part of every day east or west of UTC."""
    from datetime import UTC, datetime, timedelta

    from model.profiles import DAY_SECONDS_PER_YEAR, TENURE

    utc = datetime.now(UTC)
    today = float(np.datetime64(utc.date(), "D").astype(np.int64))
    # A zone whose date differs from UTC's right now: 14 hours ahead or 11 behind, one of them always does.
    ahead = (utc + timedelta(hours=14)).date() != utc.date()
    edge = crm_profiles.encoder.bands[TENURE][0] * DAY_SECONDS_PER_YEAR
    # Half a day on the side of the edge the local date's day moves it across.
    since = today - edge + (0.5 if ahead else -0.5)
    facts = [ClientFacts("a-stranger", since_day=since)]
    expected = crm_profiles.resolve(facts, as_of_day=today)[0]
    monkeypatch.setenv("TZ", "Pacific/Kiritimati" if ahead else "Pacific/Pago_Pago")
    time.tzset()
    try:
        resolved = crm_profiles.resolve(facts)[0]
    finally:
        monkeypatch.undo()
        time.tzset()
    assert resolved == expected


@pytest.mark.parametrize("holdings_table", [True, False])
def test_won_deals_quoted_0_are_not_said_to_be_a_holdings_table_s_revenue(holdings_table: bool) -> None:
    """Without a holdings table, holdings are read off won deals and carry their amounts: amounts of 0 in every
    win made training say "the holdings table's revenue is 0 in every row", of a table nobody gave. A table's
    own zeros are still said."""
    from training.gap_evaluation import unfilled_revenue_note

    days = pd.to_datetime([f"2024-01-{i + 1:02d}" for i in range(8)])
    deals = pd.DataFrame({"deal_id": [f"d{i}" for i in range(8)], "client_id": list("aabbccdd"),
                          "product": list("xyxzyzxy"), "status": ["won"] * 6 + ["lost"] * 2, "amount": 0.0,
                          "created_at": days, "closed_at": days + pd.Timedelta(days=30)})
    clients = pd.DataFrame({"client_id": list("abcd"), "industry": list("rrss")})
    derived = fit_profiles(deals, clients, None, TINY, with_acceptance=False, holdings_table=holdings_table)
    assert derived.summary["income_source"] == "number of products held"
    assert not derived.summary["holdings_revenue_all_zero"] and unfilled_revenue_note(derived.summary) is None
    table = pd.DataFrame({"client_id": list("abcd"), "product": list("xyzx"), "revenue": [0.0, 0.0, np.nan, 0.0]})
    given = fit_profiles(deals, clients, table, TINY, with_acceptance=False)
    assert given.summary["holdings_revenue_all_zero"]
    assert "the holdings table's revenue is 0 in every row" in str(unfilled_revenue_note(given.summary))
