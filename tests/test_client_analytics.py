"""Client analytics as of a date (status windows at their edges, RFM, ABC, XYZ, golden clients) and the
offline gap table."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model.client_analytics import GAP_COLUMNS, client_analytics, gap_table, status_window_labels, status_windows
from model.dataset import dataset_from_frames
from model.grades import pareto_classes, pareto_cutoffs
from model.profiles import ALL_CLIENTS, ClientFacts, ClientProfiles
from training.profiles_fit import fit_profiles
from training.synthetic_crm import SyntheticCRM

AS_OF = date(2024, 12, 31)


def make_deals(rows: list[tuple[str, int, str, float]]) -> pd.DataFrame:
    """Deals from (client_id, days before AS_OF it closed, status, amount)."""
    closed = [pd.Timestamp(AS_OF - timedelta(days=days)) for _, days, _, _ in rows]
    return pd.DataFrame({
        "deal_id": [f"d{i}" for i in range(len(rows))],
        "client_id": [r[0] for r in rows],
        "created_at": pd.Series([c - pd.Timedelta(days=10) for c in closed], dtype="datetime64[ns]"),
        "closed_at": pd.Series(closed, dtype="datetime64[ns]"),
        "status": [r[2] for r in rows],
        "amount": [r[3] for r in rows],
    }).astype({"deal_id": object, "client_id": object, "status": object})


def analytics(rows: list[tuple[str, int, str, float]], **options: object) -> pd.DataFrame:
    table = client_analytics(make_deals(rows), None, as_of=AS_OF, **options)  # type: ignore[arg-type]
    return table.set_index("client_id")


def test_status_windows_at_their_edges() -> None:
    table = analytics([
        ("w90", 90, "won", 10.0), ("w91", 91, "won", 10.0), ("w180", 180, "won", 10.0),
        ("w181", 181, "won", 10.0), ("w360", 360, "won", 10.0), ("w361", 361, "won", 10.0),
    ])
    assert status_window_labels((90, 180, 360)) == ["0-90", "91-180", "181-360", "361+"]
    assert table["recency_days"].to_dict() == {"w90": 90.0, "w91": 91.0, "w180": 180.0, "w181": 181.0,
                                               "w360": 360.0, "w361": 361.0}
    assert table["status_window"].to_dict() == {"w90": "0-90", "w91": "91-180", "w180": "91-180",
                                                "w181": "181-360", "w360": "181-360", "w361": "361+"}
    assert table["status"].to_dict() == {"w90": "new", "w91": "new", "w180": "new", "w181": "new",
                                         "w360": "new", "w361": "lost"}
    shorter = analytics([("a", 90, "won", 1.0), ("b", 91, "won", 1.0)], windows=(30, 90))
    assert shorter["status"].to_dict() == {"a": "new", "b": "lost"}
    assert shorter["status_window"].to_dict() == {"a": "31-90", "b": "91+"}


def test_status_counts_only_wins_paid_by_the_as_of_date() -> None:
    table = analytics([
        ("prospect", 5, "lost", 0.0), ("prospect", 3, "open", 100.0),
        ("new", 20, "won", 50.0), ("new", 40, "lost", 0.0), ("new", -5, "won", 999.0),  # a win after AS_OF
        ("regular", 400, "won", 30.0), ("regular", 30, "won", 20.0),
        ("lapsed", 500, "won", 10.0), ("lapsed", 400, "won", 10.0),
    ])
    assert table["status"].to_dict() == {"prospect": "prospect", "new": "new", "regular": "regular",
                                         "lapsed": "lost"}
    assert table.loc["new", "frequency"] == 1.0 and table.loc["new", "monetary"] == 50.0
    assert table.loc["new", "last_won_at"] == pd.Timestamp(AS_OF - timedelta(days=20))
    assert table.loc["regular", "first_won_at"] == pd.Timestamp(AS_OF - timedelta(days=400))
    assert table.loc["regular", "regular_type"] == "yearly"
    assert table["abc"].isna()["prospect"] and table["r_score"].isna()["prospect"]
    assert not table.loc["prospect", "golden"]


def test_rfm_scores_are_quintiles_with_five_best() -> None:
    rows = [(f"c{i}", 10 * (5 - i), "won", 100.0 * i) for i in range(1, 6)]
    rows += [(f"c{i}", 200 + k, "won", 1.0) for i in range(1, 6) for k in range(i - 1)]
    table = analytics(rows)
    assert table["r_score"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]  # c5 bought most recently
    assert table["f_score"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert table["m_score"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert table.loc["c5", "rfm"] == "555"


def test_abc_by_income_and_golden_clients() -> None:
    # Incomes 600, 300, 60, 30, 10: A holds the first 80% (600 and 300), B the next 15% (60).
    monthly = [("big", 15 + 30 * m, "won", 50.0) for m in range(12)]  # 600 over 12 months: AX
    rows = monthly + [("mid", 15, "won", 300.0), ("small", 40, "won", 60.0), ("tiny1", 60, "won", 30.0),
                      ("tiny2", 70, "won", 10.0)]
    table = analytics(rows)
    assert table["abc"].to_dict() == {"big": "A", "mid": "A", "small": "B", "tiny1": "C", "tiny2": "C"}
    assert table.loc["big", "active_months"] == 12.0 and table.loc["big", "purchase_cv"] == 0.0
    assert table["xyz"].to_dict() == {"big": "X", "mid": "Z", "small": "Z", "tiny1": "Z", "tiny2": "Z"}
    assert table.loc["big", "regular_type"] == "monthly"
    assert table["golden"].to_dict() == {"big": True, "mid": False, "small": False, "tiny1": False,
                                         "tiny2": False}
    # one purchase: income without regularity is not golden


def test_xyz_follows_the_regularity_of_monthly_purchases() -> None:
    rows = [("every_other", 15 + 61 * k, "won", 1.0) for k in range(6)]  # 6 of 12 months: CV 1.0
    rows += [("quarterly", 15 + 91 * k, "won", 1.0) for k in range(4)]  # 4 of 12: CV 1.41
    rows += [("twice", 15, "won", 1.0), ("twice", 200, "won", 1.0)]  # 2 of 12: CV 2.24
    rows += [("old", 400, "won", 1.0)]  # nothing in the last 12 months
    table = analytics(rows)
    assert table["xyz"].to_dict() == {"every_other": "X", "quarterly": "Y", "twice": "Z", "old": "Z"}
    assert table.loc["quarterly", "purchase_cv"] == pytest.approx(2 ** 0.5, abs=1e-4)
    assert table["purchase_cv"].isna()["old"] and table.loc["old", "active_months"] == 0.0


def test_a_client_buying_every_month_is_x_even_with_one_busy_month() -> None:
    """XYZ is frequency (DOMAIN.md): buying in all 12 months beats buying in 6, whatever one month holds.
    By the spread of monthly counts (the earlier rule), 20 purchases in one month made this client Z."""
    rows = [("every_month", 15 + 30 * m, "won", 10.0) for m in range(12)]
    rows += [("every_month", 3, "won", 10.0) for _ in range(19)]  # a busy last month
    rows += [("every_other", 15 + 61 * k, "won", 10.0) for k in range(6)]
    table = analytics(rows)
    assert table.loc["every_month", "active_months"] == 12.0 and table.loc["every_month", "purchase_cv"] > 2
    assert table["xyz"].to_dict() == {"every_month": "X", "every_other": "X"}
    assert table.loc["every_month", "golden"]


def test_abc_cuts_by_rank_so_equal_values_can_fall_on_both_sides_of_the_line() -> None:
    # 85% of income comes before the second 10: it is B (a value cut-off made it A, with A holding 95%).
    # 95% comes before the 5: it is C, on the B line as the ninth of ten equal clients is on the A line.
    assert pareto_classes(np.array([50.0, 25.0, 10.0, 10.0, 5.0])).tolist() == ["A", "A", "A", "B", "C"]
    # Ten equal clients: A is the first eight (80%), not all ten (100%).
    assert pareto_classes(np.full(10, 1000.0)).tolist() == ["A"] * 8 + ["B"] * 2
    assert pareto_classes(np.array([0.0, np.nan, -5.0, 7.0])).tolist() == ["C", "C", "C", "A"]


@pytest.mark.parametrize("value", [1.0, 0.1, 0.001, 7.77, 19.99, 1234.56])
@pytest.mark.parametrize(("n", "counts"), [(10, (8, 2, 0)), (20, (16, 3, 1)), (40, (32, 6, 2))])
def test_equal_values_split_at_the_share_lines_whatever_the_amount(value: float, n: int,
                                                                    counts: tuple[int, int, int]) -> None:
    """The share before an item is a sum of floats: ten clients of 0.1 put 0.7999999999999999 before the ninth,
    and 0.8 + 0.15 is 0.9500000000000001; an item on a line is not inside it, whatever rounding says."""
    values = np.full(n, value)
    classes = pareto_classes(values, tie_keys=np.arange(n))
    assert tuple(int((classes == letter).sum()) for letter in "ABC") == counts
    a_min, b_min = pareto_cutoffs(values)  # the deal-grade cut-offs: every equal value is in A
    assert a_min == b_min == value


def test_a_share_genuinely_under_a_line_is_inside_it() -> None:
    # 79.99999995% before the second item: under 80%, so A (a fixed tolerance of 1e-9 made it B).
    assert pareto_classes(np.array([7999999995.0, 2000000005.0])).tolist() == ["A", "A"]
    assert pareto_cutoffs(np.array([7999999995.0, 2000000005.0])) == (2000000005.0, 2000000005.0)


def test_equal_values_are_ranked_by_their_keys_so_row_order_cannot_change_a_class() -> None:
    ids = np.array([f"c{i}" for i in (7, 2, 9, 0, 5, 1, 8, 3, 6, 4)], dtype=object)
    classes = pareto_classes(np.full(10, 1000.0), tie_keys=ids)
    assert sorted(ids[classes == "B"]) == ["c8", "c9"]  # the two largest ids, wherever their rows are
    reversed_classes = pareto_classes(np.full(10, 1000.0), tie_keys=ids[::-1])
    assert dict(zip(ids[::-1], reversed_classes, strict=True)) == dict(zip(ids, classes, strict=True))


def test_the_lost_window_sets_the_status_and_its_bands() -> None:
    assert status_windows(None) == (90, 180, 360) and status_windows(90) == (90,)
    assert status_windows(200) == (90, 180, 200)
    table = analytics([("recent", 60, "won", 1.0), ("half_year", 178, "won", 1.0)], windows=status_windows(90))
    assert table["status"].to_dict() == {"recent": "new", "half_year": "lost"}
    assert table["status_window"].to_dict() == {"recent": "0-90", "half_year": "91+"}


def test_potential_income_counts_what_the_client_held_on_the_day(small_crm: SyntheticCRM,
                                                                 crm_profiles: ClientProfiles) -> None:
    """With holdings, a client new to the model is compared with the ideal client by what it holds, as
    /v1/gaps does (it was once taken to hold nothing); a holding starting after the as-of day is not held yet."""
    model_client = small_crm.holdings["client_id"].iloc[0]
    attributes = small_crm.clients[small_crm.clients["client_id"] == model_client].assign(client_id="NEW-1")
    own = small_crm.holdings[small_crm.holdings["client_id"] == model_client].assign(client_id="NEW-1")
    as_of = pd.Timestamp(small_crm.deals["created_at"].max()).date()
    as_of_day = float((pd.Timestamp(as_of) - pd.Timestamp("1970-01-01")).days)

    def potential(holdings: pd.DataFrame | None) -> float:
        table = client_analytics(small_crm.deals, attributes, as_of=as_of, profiles=crm_profiles, holdings=holdings)
        return float(table.set_index("client_id").loc["NEW-1", "potential_income"])

    row = attributes.iloc[0]
    [expected] = crm_profiles.gaps_for([ClientFacts(
        client_id="NEW-1", industry=row["industry"], size=row["size"], region=row["region"],
        since_day=float((pd.Timestamp(row["since"]) - pd.Timestamp("1970-01-01")).days),
        products=tuple(sorted(own["product"])), income=float(own["revenue"].sum()))], top_k=0, as_of_day=as_of_day)
    # Its income is what its holdings earn (their revenue), as the profiles measured income at training.
    assert potential(own) == pytest.approx(expected.potential_income)
    assert potential(own) < potential(None)  # holding something, it has less left to gain
    assert potential(own.assign(since=pd.Timestamp(as_of) + pd.Timedelta(days=30))) == potential(None)


def test_a_new_clients_holdings_without_revenue_are_valued_as_gaps_values_them(small_crm: SyntheticCRM,
                                                                             crm_profiles: ClientProfiles) -> None:
    """`dealscore clients` (holdings with blank revenue) and /v1/gaps (the products sent) gave one client two
    potential incomes in an audit, 65,101 against 39,904: one valued its products over all clients, the other
    in its segment. Both value them as fitting valued a holding without revenue."""
    model_client = small_crm.holdings["client_id"].iloc[0]
    attributes = small_crm.clients[small_crm.clients["client_id"] == model_client].assign(client_id="NEW-2")
    own = small_crm.holdings[small_crm.holdings["client_id"] == model_client].assign(client_id="NEW-2",
                                                                                   revenue=np.nan)
    # One of its products listed twice, once in capitals: one holding to both (the CLI once valued it twice).
    own = pd.concat([own, own.iloc[:1].assign(product=lambda frame: frame["product"].str.upper())])
    as_of = pd.Timestamp(small_crm.deals["created_at"].max()).date()
    as_of_day = float((pd.Timestamp(as_of) - pd.Timestamp("1970-01-01")).days)
    table = client_analytics(small_crm.deals, attributes, as_of=as_of, profiles=crm_profiles, holdings=own)
    row = attributes.iloc[0]
    [sent] = crm_profiles.gaps_for([ClientFacts(
        client_id="NEW-2", industry=row["industry"], size=row["size"], region=row["region"],
        products=tuple(own["product"]))], top_k=0, as_of_day=as_of_day)
    listed = table.set_index("client_id").loc["NEW-2"]
    assert sent.segment == listed["segment"] != ALL_CLIENTS
    assert listed["income"] > 0 and sent.income == pytest.approx(listed["income"], abs=0.01)
    assert sent.potential_income == pytest.approx(listed["potential_income"], abs=0.01)


def test_a_known_client_giving_up_a_product_gets_one_income_from_the_cli_and_the_api(
        small_crm: SyntheticCRM, crm_profiles: ClientProfiles) -> None:
    """/v1/gaps took a product given up off at its typical income, the CLI at the client's revenue from it."""
    holdings = small_crm.holdings
    client = next(c for c, rows in holdings.groupby("client_id") if len(rows) >= 2 and rows["revenue"].notna().all())
    own = holdings[holdings["client_id"] == client]
    without = holdings.drop(index=own.index[0])
    as_of = pd.Timestamp(max(small_crm.deals["created_at"].max(), pd.to_datetime(holdings["since"]).max())).date()
    listed = client_analytics(small_crm.deals, small_crm.clients, as_of=as_of, profiles=crm_profiles,
                              holdings=without).set_index("client_id").loc[client]
    [sent] = crm_profiles.gaps_for([ClientFacts(client, products=tuple(own["product"].iloc[1:]))], top_k=0)
    assert sent.income == pytest.approx(listed["income"], abs=0.01)
    assert sent.potential_income == pytest.approx(listed["potential_income"], abs=0.01)


def test_potential_income_of_a_known_client_is_as_of_the_day(small_crm: SyntheticCRM,
                                                             crm_profiles: ClientProfiles) -> None:
    """A client the model knows was compared by its income at training, whatever the as-of day: a client
    that had bought nothing yet on the day showed no potential. Income is now as of the day, measured as
    the profiles measured it (here the revenue of the holdings held by then)."""
    client = small_crm.holdings["client_id"].iloc[0]
    first_win = small_crm.deals[(small_crm.deals["client_id"] == client) & (small_crm.deals["status"] == "won")][
        "closed_at"].min()
    before = (pd.Timestamp(first_win) - pd.Timedelta(days=1)).date()
    table = client_analytics(small_crm.deals, small_crm.clients, as_of=before, profiles=crm_profiles,
                             holdings=small_crm.holdings).set_index("client_id")
    row = table.loc[client]
    held_then = small_crm.holdings[(small_crm.holdings["client_id"] == client)
                                   & (pd.to_datetime(small_crm.holdings["since"]) <= pd.Timestamp(before))]
    assert row["income"] == pytest.approx(float(held_then["revenue"].sum()))
    assert row["potential_income"] == pytest.approx(max(row["ideal_income"] - row["income"], 0.0))
    assert row["potential_income"] > 0  # nothing earned yet on the day: the whole ideal income is potential
    # A client whose first contract comes after the day is not one yet: no segment or potential (as gaps).
    since = pd.to_datetime(small_crm.clients.set_index("client_id")["since"])
    later = since[since > pd.Timestamp(before)].index
    assert len(later) and table.loc[later, ["segment", "potential_income"]].isna().all().all()


def test_income_as_of_the_last_day_is_the_income_the_profiles_were_fitted_with(small_crm: SyntheticCRM) -> None:
    """Measured as fitting measures it: a holding without a revenue figure earns its product's typical
    revenue (it was counted 0, so a known client's income fell from 103,920 to 33,952 in a review)."""
    holdings = small_crm.holdings.copy()
    holdings.loc[holdings.index[::5], "revenue"] = np.nan
    holdings = pd.concat([holdings, holdings.iloc[:40].assign(revenue=7.0)])  # a second row of the same holding
    profiles = fit_profiles(small_crm.deals, small_crm.clients, holdings)
    as_of = pd.Timestamp(max(small_crm.deals["created_at"].max(), pd.to_datetime(holdings["since"]).max())).date()
    table = client_analytics(small_crm.deals, small_crm.clients, as_of=as_of, profiles=profiles,
                             holdings=holdings).set_index("client_id")
    known = pd.Series(profiles.known_income)
    np.testing.assert_allclose(table.loc[known.index, "income"].to_numpy(), known.to_numpy(), rtol=1e-9, atol=0.01)


def test_analytics_table_has_canonical_types(small_crm: SyntheticCRM) -> None:
    table = client_analytics(small_crm.deals, small_crm.clients)
    assert table["client_id"].is_unique and len(table) >= len(small_crm.clients)
    for column in ("client_id", "status", "status_window", "abc", "xyz", "rfm"):
        assert table[column].dtype == object
    for column in ("first_won_at", "last_won_at"):
        assert table[column].dtype == "datetime64[ns]"
    for column in ("recency_days", "frequency", "r_score", "f_score", "m_score", "active_months"):
        assert table[column].dtype == "Int64"  # whole numbers, empty where unknown (a prospect's recency)
    for column in ("monetary", "purchase_cv"):
        assert table[column].dtype == np.float64
    prospects = table["status"] == "prospect"
    assert table.loc[prospects, "recency_days"].isna().all() and table.loc[~prospects, "recency_days"].notna().all()
    assert set(table["status"]) <= {"prospect", "new", "regular", "lost"}
    assert (table["golden"] == ((table["abc"] == "A") & table["xyz"].isin(["X", "Y"]))).all()
    assert "potential_income" not in table


@pytest.fixture(scope="module")
def crm_profiles(small_crm: SyntheticCRM) -> ClientProfiles:
    return fit_profiles(small_crm.deals, small_crm.clients, small_crm.holdings)


def test_potential_income_comes_with_profiles(small_crm: SyntheticCRM, crm_profiles: ClientProfiles) -> None:
    table = client_analytics(small_crm.deals, small_crm.clients, profiles=crm_profiles)
    assert table["potential_income"].dtype == np.float64
    assert (table["potential_income"].dropna() >= 0).all() and table["potential_income"].notna().all()
    assert table["segment"].str.len().gt(0).all()


def test_the_clients_command_gives_potential_income_without_a_model_from_what_was_known_on_the_day(
        small_crm: SyntheticCRM, tmp_path: Path) -> None:
    """CONTRACT.md lists potential income among `dealscore clients`'s columns with no --model; it came only
    with one. Without a model, profiles are fitted on the data as of the day: a holding that starts later, or
    a deal won later, changes nothing."""
    from dealscore.offline import clients_file

    as_of = date(2024, 6, 30)
    files = {name: tmp_path / f"{name}.csv" for name in ("deals", "clients", "holdings", "later", "deals_later")}
    small_crm.deals.to_csv(files["deals"], index=False)
    small_crm.clients.to_csv(files["clients"], index=False)
    small_crm.holdings.to_csv(files["holdings"], index=False)
    later_holding = small_crm.holdings.drop_duplicates("client_id").iloc[:40].assign(
        since="2025-01-15", revenue=1e7, product="private_jet")
    pd.concat([small_crm.holdings, later_holding]).to_csv(files["later"], index=False)

    won_later = small_crm.deals[small_crm.deals["status"] == "won"].drop_duplicates("client_id").iloc[:40].assign(
        deal_id=lambda d: d["deal_id"] + "-later", created_at=pd.Timestamp("2025-01-10"),
        closed_at=pd.Timestamp("2025-02-10"), amount=1e7)  # a product each already held by the day
    pd.concat([small_crm.deals, won_later]).to_csv(files["deals_later"], index=False)

    def table(holdings: str | None, deals: str = "deals") -> pd.DataFrame:
        out = tmp_path / f"clients-{holdings}-{deals}.csv"
        said: list[str] = []
        clients_file(str(files[deals]), str(files["clients"]), str(files[holdings]) if holdings else None, None,
                     str(out), as_of=as_of, warn=said.append)
        assert not said, said
        return pd.read_csv(out).set_index("client_id")

    held = table("holdings")
    assert {"segment", "income", "ideal_income", "potential_income"} <= set(held.columns)
    clients_then = held["segment"].notna()
    assert clients_then.sum() > 100 and (held.loc[clients_then, "potential_income"] >= 0).all()
    assert (held.loc[clients_then, "potential_income"] > 0).any()
    pd.testing.assert_frame_equal(table("later"), held)
    won = table(None)  # holdings read off won deals
    assert (won.loc[won["segment"].notna(), "potential_income"] > 0).any()
    pd.testing.assert_frame_equal(table(None, "deals_later"), won)
    won_later.assign(deal_id=lambda d: d["deal_id"] + "-jet", product="private_jet").pipe(
        lambda jets: pd.concat([small_crm.deals, jets])).to_csv(files["deals_later"], index=False)
    pd.testing.assert_frame_equal(table(None, "deals_later"), won)  # a product first won after the day


def test_potential_income_without_a_model_says_when_its_profiles_rest_on_little(small_crm: SyntheticCRM,
                                                                              tmp_path: Path) -> None:
    from dealscore.offline import clients_file

    few = small_crm.deals[small_crm.deals["status"] == "won"].head(3)
    few.to_csv(tmp_path / "few.csv", index=False)
    said: list[str] = []
    clients_file(str(tmp_path / "few.csv"), None, None, None, str(tmp_path / "out.csv"), warn=said.append)
    assert any("the ideal profiles rest on 3 clients with products by the day" in line for line in said), said
    # A clients table adds clients that hold nothing: they do not make the profiles rest on more.
    small_crm.clients.to_csv(tmp_path / "clients.csv", index=False)
    said.clear()
    clients_file(str(tmp_path / "few.csv"), str(tmp_path / "clients.csv"), None, None, str(tmp_path / "out.csv"),
                 warn=said.append)
    assert any("the ideal profiles rest on 3 clients with products by the day" in line for line in said), said
    small_crm.deals.to_csv(tmp_path / "deals.csv", index=False)
    small_crm.holdings.to_csv(tmp_path / "holdings.csv", index=False)
    said.clear()
    clients_file(str(tmp_path / "deals.csv"), None, str(tmp_path / "holdings.csv"), None, str(tmp_path / "out.csv"),
                 as_of=date(2019, 1, 1), warn=said.append)
    assert "no potential income: no holding of the holdings table had started by the day" in said
    assert pd.read_csv(tmp_path / "out.csv")["potential_income"].isna().all()


def test_gap_table_rows(small_crm: SyntheticCRM, crm_profiles: ClientProfiles) -> None:
    table = gap_table(crm_profiles, small_crm.clients, small_crm.holdings, top_k=3)
    assert tuple(table.columns) == GAP_COLUMNS
    assert tuple(table.columns[:6]) == ("client_id", "rank", "product", "adoption", "p_accept",
                                        "potential_income")
    assert table.groupby("client_id")["rank"].apply(lambda r: list(r) == list(range(1, len(r) + 1))).all()
    assert table["rank"].max() <= 3 and table["rank"].dtype == np.int64
    held = set(zip(small_crm.holdings["client_id"], small_crm.holdings["product"], strict=True))
    assert not held & set(zip(table["client_id"], table["product"], strict=True))
    assert (table["potential_income"] >= 0).all() and table["p_accept"].between(0, 1).all()
    # Clients without any holdings row hold nothing, and still get gaps.
    holders = set(small_crm.holdings["client_id"])
    newcomers = set(small_crm.clients["client_id"]) - holders
    assert newcomers and newcomers <= set(table["client_id"])


def test_a_client_whose_first_contract_is_on_the_as_of_day_is_a_client_that_day(small_crm: SyntheticCRM,
                                                                                  crm_profiles: ClientProfiles) -> None:
    """`since` on the as-of day: a client from that day on, so `clients` gives it a segment and income and `gaps`
    lists it; a day later it is not one yet on the day (both commands leave it out)."""
    newest = small_crm.clients.sort_values("since").iloc[-1]
    day = pd.Timestamp(newest["since"]).date()
    table = client_analytics(small_crm.deals, small_crm.clients, as_of=day, profiles=crm_profiles,
                             holdings=small_crm.holdings).set_index("client_id")
    assert isinstance(table.loc[newest["client_id"], "segment"], str)
    assert not np.isnan(table.loc[newest["client_id"], "potential_income"])
    assert newest["client_id"] in set(gap_table(crm_profiles, small_crm.clients, small_crm.holdings, as_of=day)[
        "client_id"])
    before = day - timedelta(days=1)
    table = client_analytics(small_crm.deals, small_crm.clients, as_of=before, profiles=crm_profiles,
                             holdings=small_crm.holdings).set_index("client_id")
    assert pd.isna(table.loc[newest["client_id"], "segment"])
    assert newest["client_id"] not in set(gap_table(crm_profiles, small_crm.clients, small_crm.holdings,
                                                     as_of=before)["client_id"])


def test_the_gaps_command_without_holdings_uses_what_the_model_knew(small_crm: SyntheticCRM,
                                                                     crm_profiles: ClientProfiles,
                                                                     tmp_path: Path) -> None:
    """`dealscore gaps` required --holdings, though a CRM without a holdings table (maven) trains on holdings
    read off won deals: without the file, each client holds what the profiles knew, as /v1/gaps does."""
    import dataclasses as dc

    from dealscore.offline import gaps_file
    from model.artifact import save_artifact
    from training.fit import train

    small_crm.clients.to_csv(tmp_path / "clients.csv", index=False)
    result = train(dataset_from_frames(small_crm.deals, small_crm.clients, small_crm.holdings, for_training=True))
    model_dir = save_artifact(dc.replace(result.model, profiles=crm_profiles), tmp_path / "model", result.metadata)
    assert gaps_file(str(model_dir), str(tmp_path / "clients.csv"), None, None, str(tmp_path / "gaps.csv"),
                     top_k=3) > 0
    table = pd.read_csv(tmp_path / "gaps.csv")
    assert not {(c, crm_profiles.products[j]) for c, held in crm_profiles.known_products.items() for j in held} & set(
        zip(table["client_id"], table["product"], strict=True))
    first = str(table["client_id"].iloc[0])
    [served] = crm_profiles.gaps_for([ClientFacts(first)], top_k=3)
    assert list(table.loc[table["client_id"] == first, "product"]) == [g.product for g in served.gaps]


def test_several_wins_on_one_day_are_one_purchase_for_the_regular_type() -> None:
    """Three lines bought on one day and one a year later: a yearly buyer, not 'monthly' (gaps of 0)."""
    table = analytics([("basket", 400, "won", 10.0), ("basket", 400, "won", 10.0), ("basket", 400, "won", 10.0),
                       ("basket", 35, "won", 10.0), ("one_day", 20, "won", 5.0), ("one_day", 20, "won", 5.0)])
    assert table.loc["basket", "regular_type"] == "yearly"
    assert table.loc["one_day", "status"] == "regular" and pd.isna(table.loc["one_day", "regular_type"])


def test_the_least_frequent_buyers_score_one_even_when_they_are_half_of_all() -> None:
    rows = [(f"once{i}", 30, "won", 10.0) for i in range(6)]
    rows += [(f"more{i}", d, "won", 10.0) for i in range(4) for d in range(30, 30 + 10 * (i + 2), 10)]
    table = analytics(rows)
    assert set(table.loc[[f"once{i}" for i in range(6)], "f_score"]) == {1.0}  # the mean place gave them 2
    assert table["f_score"].max() == 5.0
    # Six of ten bought on the latest day: the most recent, R=5 (their lowest place would give 3).
    recent = analytics([(f"today{i}", 0, "won", 1.0) for i in range(6)] + [(f"b{i}", 10 * (i + 1), "won", 1.0)
                                                                         for i in range(4)])
    assert set(recent.loc[[f"today{i}" for i in range(6)], "r_score"]) == {5.0}
    assert recent["r_score"].min() == 1.0


def test_without_any_amount_money_is_unknown_not_zero() -> None:
    table = analytics([("a", 30, "won", np.nan), ("a", 60, "won", np.nan), ("b", 40, "won", np.nan)])
    assert table.attrs["money_known"] is False
    assert table["abc"].isna().all() and table["m_score"].isna().all() and table["monetary"].isna().all()
    assert not table["golden"].any() and table.loc["a", "rfm"].endswith("-")
    assert analytics([("a", 30, "won", 5.0)]).attrs["money_known"] is True


def test_won_amounts_of_zero_are_no_money_either() -> None:
    # An export that writes 0 where it has no amount: no ABC class rather than every client C.
    table = analytics([("z", 10, "won", 0.0), ("y", 20, "won", 0.0)])
    assert table.attrs["money_known"] is False and table["abc"].isna().all()


def test_a_window_of_zero_days_is_refused() -> None:
    with pytest.raises(ValueError, match="windows must be positive day counts"):
        analytics([("a", 1, "won", 1.0)], windows=(0, 90))


def test_a_regular_client_silent_longer_than_its_rhythm_falls_to_a_slower_type() -> None:
    """A client that bought every month for half a year and then nothing for 11 months read "regular, monthly"
    (an audit on CDNOW): its frequency has fallen to yearly at best; past the lost window it is lost."""
    # (days before the as-of day) "fell" bought monthly until 330 days ago; "fresh" still buys monthly
    rows = [("fell", 330 + 30 * m, "won", 1.0) for m in range(6)] + [("fresh", 10 + 30 * m, "won", 1.0)
                                                                      for m in range(6)]
    table = analytics(rows)
    assert table["regular_type"].to_dict() == {"fell": "yearly", "fresh": "monthly"}
    assert table["status"].to_dict() == {"fell": "regular", "fresh": "regular"}
    assert table.loc["fell", "recency_days"] == 330
    quieter = analytics([("fell", 100 + 30 * m, "won", 1.0) for m in range(6)])  # silent for 100 days
    assert quieter.loc["fell", "regular_type"] == "periodic"


def test_regular_type_at_the_edge_of_monthly() -> None:
    # Purchases 45 days apart are monthly (at most 45), 46 apart periodic.
    table = analytics([("m", 10, "won", 1.0), ("m", 55, "won", 1.0), ("m", 100, "won", 1.0),
                       ("p", 10, "won", 1.0), ("p", 56, "won", 1.0), ("p", 102, "won", 1.0)])
    assert table["regular_type"].to_dict() == {"m": "monthly", "p": "periodic"}


def test_the_clients_command_measures_the_ideal_client_and_each_client_by_the_same_holdings(
        tmp_path: Path) -> None:
    """Fitting adds recent wins a lagging holdings table lacks, but `dealscore clients` reads each client's
    income off the table: its profiles take the table at its word too, or c3's fresh win of A would raise the
    ideal client (360 instead of 450) while c3's own income stayed 60."""
    from dealscore.cli import main as dealscore

    pd.DataFrame({"client_id": ["c1", "c2", "c3", "c4", "c5"], "industry": "retail", "size": "small"}).to_csv(
        tmp_path / "clients.csv", index=False)
    pd.DataFrame({"client_id": ["c1", "c1", "c2", "c3", "c4", "c5"], "product": ["A", "B", "A", "B", "C", "A"],
                  "revenue": [500, 100, 300, 60, 30, 10]}).to_csv(tmp_path / "holdings.csv", index=False)
    pd.DataFrame({"deal_id": ["y"], "client_id": ["c3"], "product": ["A"], "status": ["won"],
                  "created_at": ["2024-06-01"], "closed_at": ["2024-06-01"], "amount": [1]}).to_csv(
        tmp_path / "deals.csv", index=False)
    assert dealscore(["clients", "--deals", str(tmp_path / "deals.csv"), "--clients", str(tmp_path / "clients.csv"),
                      "--holdings", str(tmp_path / "holdings.csv"), "--out", str(tmp_path / "out.csv")]) == 0
    table = pd.read_csv(tmp_path / "out.csv").set_index("client_id")
    assert set(table["ideal_income"]) == {450.0}  # the median income of the best clients, 600 and 300
    assert (table.loc["c3", "income"], table.loc["c3", "potential_income"]) == (60.0, 390.0)


def test_a_holdings_file_with_revenue_0_in_every_row_reads_as_revenue_not_given(small_crm: SyntheticCRM,
                                                                                 crm_profiles: ClientProfiles) -> None:
    """Fitting reads such a column as not given (a field the CRM never fills); `dealscore clients` measuring
    income as of a day read it as income 0 for every client, against profiles fitted on real revenue (a review)."""
    assert crm_profiles.summary["income_source"] == "holdings revenue"
    as_of = pd.Timestamp(small_crm.deals["created_at"].max()).date()

    def incomes(holdings: pd.DataFrame) -> pd.Series:
        table = client_analytics(small_crm.deals, small_crm.clients, as_of=as_of, profiles=crm_profiles,
                                 holdings=holdings)
        return table.set_index("client_id")["income"]

    zeros = incomes(small_crm.holdings.assign(revenue=0.0))
    assert (zeros > 0).any()
    pd.testing.assert_series_equal(zeros, incomes(small_crm.holdings.assign(revenue=np.nan)))
