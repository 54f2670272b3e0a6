"""The synthetic CRM: deterministic files, the data contract, and a ground truth that holds what it claims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from model.contract import CLIENTS, DEALS, HOLDINGS
from training.synthetic_crm import (
    AFFINITIES,
    BUSINESS_LINES,
    END_DATE,
    EXTRA_DEAL_COLUMNS,
    GAP_MIN_PROPENSITY,
    GAP_REASONS,
    JOURNEY,
    REGION_EFFECT,
    SyntheticCRM,
    export_as_of,
    generate,
    write,
)

N_DEALS = 8_000
END = pd.Timestamp(str(END_DATE))
START = pd.Timestamp("2021-01-01")
EXPECTED_FILES = [
    "deals.csv", "clients.csv", "holdings.csv", "truth/deal_truth.csv", "truth/ideal_profiles.csv",
    "truth/planted_gaps.csv", "truth/products.csv", "truth/propensity.csv", "truth/business_lines.csv",
    "truth/README.md",
]


@pytest.fixture(scope="module")
def crm() -> SyntheticCRM:
    return generate(seed=11, n_deals=N_DEALS)


@pytest.fixture(scope="module")
def closed(crm: SyntheticCRM) -> pd.DataFrame:
    deals = crm.deals.merge(crm.deal_truth, on="deal_id", validate="one_to_one")
    return deals[deals["status"] != "open"]


def _read_all(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in EXPECTED_FILES}


# --- files -------------------------------------------------------------------------------------------


def test_same_seed_writes_identical_bytes(tmp_path: Path) -> None:
    first = write(generate(seed=3, n_deals=2_000), tmp_path / "a")
    write(generate(seed=3, n_deals=2_000), tmp_path / "b")
    assert [p.relative_to(tmp_path / "a").as_posix() for p in first] == EXPECTED_FILES
    assert _read_all(tmp_path / "a") == _read_all(tmp_path / "b")


def test_another_seed_gives_other_data(tmp_path: Path) -> None:
    write(generate(seed=3, n_deals=2_000), tmp_path / "a")
    write(generate(seed=4, n_deals=2_000), tmp_path / "b")
    assert (tmp_path / "a" / "deals.csv").read_bytes() != (tmp_path / "b" / "deals.csv").read_bytes()


def test_write_replaces_an_existing_data_set_and_leaves_no_staging(tmp_path: Path) -> None:
    out = tmp_path / "data"
    write(generate(seed=3, n_deals=500), out)
    write(generate(seed=5, n_deals=700), out)
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
    assert len(pd.read_csv(out / "deals.csv")) == 700
    assert len(pd.read_csv(out / "truth" / "deal_truth.csv")) == 700


def test_written_deals_read_back_as_generated(crm: SyntheticCRM, tmp_path: Path) -> None:
    write(crm, tmp_path)
    back = pd.read_csv(tmp_path / "deals.csv", parse_dates=["created_at", "closed_at"])
    pd.testing.assert_frame_equal(back, crm.deals, check_dtype=False)


# --- the data contract --------------------------------------------------------------------------------


def test_columns_follow_the_contract(crm: SyntheticCRM) -> None:
    assert list(crm.deals.columns) == [*DEALS.names, *EXTRA_DEAL_COLUMNS]
    assert list(crm.clients.columns) == list(CLIENTS.names)
    assert list(crm.holdings.columns) == list(HOLDINGS.names)
    assert list(crm.deal_truth.columns) == ["deal_id", "true_p_win", "true_value"]
    assert list(crm.ideal_profiles.columns) == ["industry", "size", "product", "ideal", "true_adoption"]
    assert list(crm.planted_gaps.columns) == ["client_id", "product", "reason", "propensity"]
    assert list(crm.product_catalogue.columns) == ["product", "family", "base_price"]
    assert list(crm.propensity.columns) == ["client_id", *crm.product_catalogue["product"]]
    assert crm.propensity["client_id"].tolist() == crm.clients["client_id"].tolist()
    assert list(crm.business_lines.columns) == ["client_id", "business_line"]
    assert crm.business_lines["client_id"].tolist() == crm.clients["client_id"].tolist()
    assert set(crm.business_lines["business_line"]) == {b.name for b in BUSINESS_LINES}


def test_values_have_the_promised_shape(crm: SyntheticCRM) -> None:
    deals = crm.deals
    assert deals["deal_id"].is_unique and deals["deal_id"].str.fullmatch(r"D\d{6}").all()
    assert crm.clients["client_id"].is_unique and crm.clients["client_id"].str.fullmatch(r"C\d{5}").all()
    assert len(crm.clients) == N_DEALS // 8
    assert set(deals["client_id"]) <= set(crm.clients["client_id"])
    assert set(deals["status"]) == {"won", "lost", "open"}
    assert (deals["amount"] > 0).all() and (deals["amount"].round(2) == deals["amount"]).all()
    assert (deals["effort_hours"] > 0).all() and ((deals["effort_hours"] * 2) % 1 == 0).all()
    assert set(deals["product"]) <= set(crm.product_catalogue["product"])
    assert deals["manager"].nunique() == 12
    assert deals["campaign_code"].nunique() == 30
    assert 0.65 < deals["competitor"].isna().mean() < 0.75
    assert set(crm.clients["size"]) == {"small", "medium", "large"}


def test_an_export_as_of_a_day_shows_only_what_was_known_that_day(crm: SyntheticCRM, tmp_path: Path) -> None:
    """demo-data --until: successive monthly exports to try the retrain on (the runbook could not be tried:
    every export ended on the same day, and the gate judged the live model on its own training deals)."""
    from datetime import date

    from dealscore import cli

    day = date(2024, 6, 30)
    export = export_as_of(crm, day)
    end = pd.Timestamp(day)
    assert export.deals["created_at"].max() <= end < crm.deals["created_at"].max()
    assert (export.deals["closed_at"].dropna() <= end).all()
    was_closed_later = crm.deals.set_index("deal_id")["closed_at"].reindex(export.deals["deal_id"]) > end
    assert (export.deals.loc[was_closed_later.to_numpy(), "status"] == "open").all() and was_closed_later.any()
    assert (export.holdings["since"] <= end).all() and (export.clients["since"] <= end).all()
    assert set(export.deal_truth["deal_id"]) == set(export.deals["deal_id"])
    assert cli.main(["demo-data", "--out", str(tmp_path / "june"), "--deals", "3000", "--until", "2024-06-30"]) == 0
    written = pd.read_csv(tmp_path / "june" / "deals.csv", parse_dates=["created_at"])
    assert written["created_at"].max() <= end


def test_tiny_data_set_still_has_fifty_clients() -> None:
    tiny = generate(seed=1, n_deals=10)
    assert len(tiny.deals) == 10 and len(tiny.clients) == 50


def test_rejects_an_empty_data_set() -> None:
    with pytest.raises(ValueError, match="n_deals"):
        generate(n_deals=0)


# --- time ---------------------------------------------------------------------------------------------


def test_statuses_and_dates_are_consistent(crm: SyntheticCRM) -> None:
    deals = crm.deals
    is_open = deals["status"] == "open"
    assert deals.loc[is_open, "closed_at"].isna().all()
    assert deals.loc[~is_open, "closed_at"].notna().all()
    cycle = (deals["closed_at"] - deals["created_at"]).dt.days[~is_open]
    assert cycle.between(5, 120).all()
    assert deals["created_at"].between(START, END).all()
    assert deals["created_at"].is_monotonic_increasing
    assert (deals["closed_at"].dropna() <= END + pd.Timedelta(days=120)).all()
    assert (deals.loc[deals["created_at"] > END - pd.Timedelta(days=45), "status"] == "open").all()
    assert 0.02 < is_open.mean() < 0.07
    assert (deals["created_at"] == deals["created_at"].dt.normalize()).all()


def test_clients_arrive_over_time_and_deal_only_after_arriving(crm: SyntheticCRM) -> None:
    since = crm.clients.set_index("client_id")["since"]
    assert since.min() < START + pd.Timedelta(days=60) and since.max() > pd.Timestamp("2025-01-01")
    assert (crm.deals["created_at"] >= crm.deals["client_id"].map(since)).all()


# --- the win probability ------------------------------------------------------------------------------


def test_win_rate_matches_the_truth(closed: pd.DataFrame) -> None:
    won = closed["status"] == "won"
    assert 0.30 <= won.mean() <= 0.45
    assert abs(won.mean() - closed["true_p_win"].mean()) < 0.02


def test_truth_is_calibrated_within_deciles(closed: pd.DataFrame) -> None:
    decile = pd.qcut(closed["true_p_win"], 10, labels=False)
    by_decile = closed.assign(won=closed["status"] == "won").groupby(decile)
    gap = (by_decile["won"].mean() - by_decile["true_p_win"].mean()).abs()
    assert (gap < 0.07).all(), gap


def test_truth_separates_wins_from_losses(closed: pd.DataFrame) -> None:
    assert 0.78 < roc_auc_score(closed["status"] == "won", closed["true_p_win"]) < 0.88


def _history_stage(deals: pd.DataFrame) -> pd.Series:
    """Each deal's client status from the published deals alone, using wins closed before its creation."""
    wins = deals.loc[deals["status"] == "won", ["client_id", "closed_at"]].sort_values("closed_at")
    wins["earlier_wins"] = wins.groupby("client_id").cumcount() + 1
    asof = pd.merge_asof(deals[["deal_id", "client_id", "created_at"]], wins, left_on="created_at",
                         right_on="closed_at", by="client_id", allow_exact_matches=False)
    days_since_win = (asof["created_at"] - asof["closed_at"]).dt.days
    stage = np.select(
        [asof["earlier_wins"].isna(), days_since_win > 360, asof["earlier_wins"] == 1],
        ["prospect", "lost", "new"],
        default="regular",
    )
    return pd.Series(stage, index=deals.index)


def test_history_as_of_the_deal_date_drives_the_truth(crm: SyntheticCRM) -> None:
    truth = crm.deal_truth["true_p_win"]
    stage = _history_stage(crm.deals)
    mean_p = truth.groupby(stage).mean()
    assert set(mean_p.index) == {"prospect", "new", "regular", "lost"}
    assert mean_p["regular"] > mean_p["new"] > mean_p["prospect"]
    assert mean_p["regular"] - mean_p["prospect"] > 0.25
    assert mean_p["lost"] < mean_p["regular"]


# --- holdings and gaps --------------------------------------------------------------------------------


def _held(crm: SyntheticCRM) -> pd.DataFrame:
    products = crm.product_catalogue["product"]
    table = pd.crosstab(crm.holdings["client_id"], crm.holdings["product"])
    return table.reindex(index=crm.clients["client_id"], columns=products, fill_value=0) > 0


def test_holdings_include_every_won_product_with_its_history(crm: SyntheticCRM) -> None:
    won = crm.deals[crm.deals["status"] == "won"]
    per_product = won.groupby(["client_id", "product"]).agg(
        since=("closed_at", "min"), revenue=("amount", "sum"))
    holdings = crm.holdings.set_index(["client_id", "product"])
    assert holdings.index.is_unique
    assert per_product.index.isin(holdings.index).all()
    matched = holdings.loc[per_product.index]
    assert (matched["since"] == per_product["since"]).all()
    assert np.allclose(matched["revenue"], per_product["revenue"])
    assert (crm.holdings["revenue"] > 0).all() and (crm.holdings["since"] <= END).all()


def _propensity(crm: SyntheticCRM) -> pd.DataFrame:
    return crm.propensity.set_index("client_id")[list(crm.product_catalogue["product"])]


def _segment(frame: pd.DataFrame) -> pd.Series:
    return frame["industry"] + "/" + frame["size"]


def test_planted_gaps_are_the_clients_most_likely_missing_product(crm: SyntheticCRM) -> None:
    gaps = crm.planted_gaps.merge(crm.clients, on="client_id")
    assert gaps["client_id"].is_unique
    assert 0.04 < len(gaps) / len(crm.clients) <= 0.15
    held = _held(crm)
    assert not any(held.at[c, p] for c, p in zip(gaps["client_id"], gaps["product"], strict=True))
    won = crm.deals[crm.deals["status"] == "won"]
    assert gaps.merge(won, on=["client_id", "product"]).empty
    # the gap is the product the client's own propensity ranks first among those it lacks
    propensity = _propensity(crm)
    lacking = propensity.where(~held)
    assert (lacking.loc[gaps["client_id"]].idxmax(axis=1).to_numpy() == gaps["product"].to_numpy()).all()
    own = propensity.to_numpy()[propensity.index.get_indexer(pd.Index(gaps["client_id"])),
                                propensity.columns.get_indexer(pd.Index(gaps["product"]))]
    assert np.allclose(gaps["propensity"].to_numpy(), own)
    assert (gaps["propensity"] >= GAP_MIN_PROPENSITY).all()  # more likely than not to take it
    # established clients that already hold their segment's whole ideal profile
    wide = crm.ideal_profiles.pivot(index=["industry", "size"], columns="product", values="ideal")
    ideal = wide.reindex(pd.MultiIndex.from_frame(gaps[["industry", "size"]]))[held.columns].to_numpy(dtype=bool)
    gap_held = held.loc[gaps["client_id"]].to_numpy()
    assert (gap_held | ~ideal).all()
    assert (gap_held.sum(axis=1) >= 2).all()
    # the reason: the segment's profile when the gap is in it (never here), else a client-specific lift,
    # mostly the client's business line: the follow-on (or the entry) of its own line
    in_profile = ideal[np.arange(len(gaps)), held.columns.get_indexer(pd.Index(gaps["product"]))]
    assert set(gaps["reason"]) <= set(GAP_REASONS)
    assert ((gaps["reason"] == "segment_profile").to_numpy() == in_profile).all()
    by_line = gaps.merge(crm.business_lines, on="client_id")
    line_products = {b.name: {b.entry, b.follow_on} for b in BUSINESS_LINES}
    own_line = [p in line_products[b] for p, b in zip(by_line["product"], by_line["business_line"], strict=True)]
    assert ((by_line["reason"] == "business_line").to_numpy() == np.array(own_line)).all()
    assert np.mean(own_line) > 0.6


def test_popularity_cannot_find_every_gap(crm: SyntheticCRM) -> None:
    """No gap is among the segment's most common products (the clients hold their whole profile), and
    a third are not even among its most common missing ones: the client's business line decides."""
    held = _held(crm)
    clients = crm.clients.set_index("client_id")
    share = held.groupby(_segment(clients)).mean()
    gaps = crm.planted_gaps.merge(crm.clients, on="client_id")
    segment = _segment(gaps)
    top3 = [p in share.loc[s].nlargest(3).index for s, p in zip(segment, gaps["product"], strict=True)]
    assert np.mean(top3) <= 0.1
    top3_missing = [p in share.loc[s][~held.loc[c]].nlargest(3).index
                    for c, s, p in zip(gaps["client_id"], segment, gaps["product"], strict=True)]
    assert np.mean(top3_missing) < 0.8  # 0.64 here; 0.64-0.69 on seeds 3, 7, 11, 23


def test_business_lines_vary_within_segments_and_show_in_the_holdings(crm: SyntheticCRM) -> None:
    """Every segment mixes lines, and within segments where a line's entry product is not in the ideal
    profile, clients holding it hold the line's follow-on far more often: an affinity the segment's
    popularity cannot see. The truth agrees: the line's clients are likelier to take the follow-on."""
    held = _held(crm)
    clients = crm.clients.set_index("client_id")
    segment = _segment(clients)
    line = crm.business_lines.set_index("client_id")["business_line"]
    assert (pd.crosstab(segment, line) > 0).sum(axis=1).min() >= 3
    wide = crm.ideal_profiles.pivot(index=["industry", "size"], columns="product", values="ideal")
    ideal = wide.reindex(pd.MultiIndex.from_frame(clients[["industry", "size"]]))
    propensity = _propensity(crm)
    for b in BUSINESS_LINES:
        outside = ~ideal[b.entry].to_numpy(dtype=bool)
        entry, follow_on = held[b.entry].to_numpy(), held[b.follow_on].to_numpy()
        assert follow_on[outside & entry].mean() > follow_on[outside & ~entry].mean() + 0.2, b.name
        assert entry[(line == b.name).to_numpy()].mean() > 0.8, b.name
        in_line = (line == b.name).to_numpy()
        assert propensity[b.follow_on][in_line].mean() > propensity[b.follow_on][~in_line].mean() + 0.3, b.name


def test_affinities_region_and_tenure_shape_the_holdings(crm: SyntheticCRM) -> None:
    assert sorted(JOURNEY) == sorted(crm.product_catalogue["product"])
    assert all(JOURNEY.index(a) < JOURNEY.index(b) for a, b, _ in AFFINITIES)
    held = _held(crm)
    insured = held["business_insurance"]
    assert insured[held["leasing"]].mean() > insured[~held["leasing"]].mean() + 0.2
    merchant = held["acquiring"] & ~held["ecommerce_gateway"]
    assert held["cash_collection"][merchant].mean() > held["cash_collection"][~held["acquiring"]].mean() + 0.1
    clients = crm.clients.set_index("client_id")
    share = held.groupby(clients["region"]).mean()
    higher = []
    for product in {p for _, p in REGION_EFFECT}:
        effects = {r: v for (r, p), v in REGION_EFFECT.items() if p == product}
        top = max(effects, key=lambda r: effects[r])
        others = [r for r in share.index if effects.get(r, 0.0) <= 0.0]
        higher.append(share.at[top, product] > share.loc[others, product].mean())
    assert np.mean(higher) >= 0.75
    years = (END - clients["since"]).dt.days / 365.25
    assert held["credit_line"][years >= 3].mean() > 2 * held["credit_line"][years < 1].mean()


def test_held_products_were_the_likelier_ones(crm: SyntheticCRM) -> None:
    propensity = _propensity(crm)
    held = _held(crm)
    assert propensity.to_numpy().min() >= 0 and propensity.to_numpy().max() <= 1
    assert propensity.where(held).stack().mean() > propensity.where(~held).stack().mean() + 0.3


def test_ideal_profiles_have_three_to_five_products(crm: SyntheticCRM) -> None:
    profile_sizes = crm.ideal_profiles.groupby(["industry", "size"])["ideal"].sum()
    assert len(profile_sizes) == 24 and profile_sizes.between(3, 5).all()
    ideal = crm.ideal_profiles[crm.ideal_profiles["ideal"]]
    assert ideal["true_adoption"].between(0.8, 0.92).all()


def test_the_ideal_profile_still_describes_the_best_clients(crm: SyntheticCRM) -> None:
    """Among the segment's best clients by won amount, ideal products are the ones widely held. Business
    lines add their products in every segment, so other products read higher than the profile alone
    (0.28 here against 0.82 for ideal ones), and a few of them reach half of the best clients."""
    held = _held(crm)
    clients = crm.clients.set_index("client_id")
    segment = _segment(clients)
    won = crm.deals[crm.deals["status"] == "won"].groupby("client_id")["amount"].sum()
    won_amount = won.reindex(clients.index, fill_value=0.0)
    best = won_amount.groupby(segment).rank(pct=True) >= 0.75
    adoption = held[best].groupby(segment[best]).mean().stack()
    profiles = crm.ideal_profiles.set_index(["industry", "size", "product"])["ideal"].sort_index()
    ideal = np.array([profiles.loc[(*s.split("/"), p)] for s, p in adoption.index])
    assert adoption[ideal].mean() > 0.7 and adoption[~ideal].mean() < 0.35
    widely_held = adoption >= 0.5
    assert (widely_held & ideal).sum() / widely_held.sum() > 0.7  # precision of "held by half the best"
    assert (widely_held & ideal).sum() / ideal.sum() > 0.85  # and its recall
