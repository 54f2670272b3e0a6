"""Client analytics as of a date: status, RFM, ABC by income, XYZ by purchase frequency, golden clients.

Also the offline gap table (`dealscore gaps`). Only won deals closed on or before the as-of date count:
a client becomes a client at its first payment, and nothing after the as-of date is seen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from model.contract import utc_today_number
from model.features import day_numbers
from model.grades import DEFAULT_SHARES, pareto_classes
from model.profiles import ClientFacts, ClientGaps, ClientProfiles, revenue_unfilled

FloatArray = npt.NDArray[np.float64]

DEFAULT_WINDOWS: tuple[int, ...] = (90, 180, 360)
# XYZ by the share of the last months with a purchase: X from half of them (every other month or more
# often), Y from a fifth (about one month in five), Z below. A month with many purchases counts once, so a
# client who buys every month and much in one of them is still X (a spread of monthly counts would call it
# irregular).
DEFAULT_XYZ_ACTIVE_SHARES: tuple[float, float] = (0.5, 0.2)
DAYS_PER_MONTH = 365.25 / 12
# Median days between a regular client's purchases up to which it is a monthly / periodic buyer;
# beyond that it buys about once a year.
MONTHLY_MAX_GAP_DAYS = 45.0
PERIODIC_MAX_GAP_DAYS = 200.0
GAP_COLUMNS: tuple[str, ...] = ("client_id", "rank", "product", "adoption", "p_accept", "potential_income",
                                "segment", "reason")
SCORE_BANDS = 5  # RFM scores 1..5, 5 best


def check_xyz_shares(name: str, shares: tuple[float, float]) -> None:
    """XYZ's two lines: shares of the months with a purchase, X's above Y's, both within (0, 1]."""
    x, y = shares
    if not 0 < y <= x <= 1:
        raise ValueError(f"{name} must be two shares of months with a purchase, X's at least Y's, both above 0 and "
                         f"at most 1 (e.g. {DEFAULT_XYZ_ACTIVE_SHARES}), got {shares!r}")


def status_windows(lost_window_days: int | None = None) -> tuple[int, ...]:
    """Recency bands ending at the lost window: the default bands below it, then the window itself
    (90 -> (90,); 200 -> (90, 180, 200); None -> the defaults, lost after 360 days)."""
    if lost_window_days is None:
        return DEFAULT_WINDOWS
    return (*(w for w in DEFAULT_WINDOWS if w < lost_window_days), lost_window_days)


def status_window_labels(windows: Sequence[int]) -> list[str]:
    """Recency bands of the windows, e.g. (90, 180, 360) -> 0-90, 91-180, 181-360, 361+."""
    labels, lower = [], 0
    for w in windows:
        labels.append(f"{lower}-{w}")
        lower = w + 1
    labels.append(f"{lower}+")
    return labels


def client_analytics(deals: pd.DataFrame, clients: pd.DataFrame | None, as_of: date | None = None,
                     windows: Sequence[int] = DEFAULT_WINDOWS, *, profiles: ClientProfiles | None = None,
                     holdings: pd.DataFrame | None = None,
                     shares: tuple[float, float, float] = DEFAULT_SHARES, xyz_months: int = 12,
                     xyz_active_shares: tuple[float, float] = DEFAULT_XYZ_ACTIVE_SHARES) -> pd.DataFrame:
    """One row per client (clients table first, then other clients of the deals) as of `as_of`.

    status: prospect (no win yet), new (one win), regular (two or more), lost (no win for longer than
    the last window). status_window: the recency band of the last win. RFM scores are quintiles 1..5
    among clients with a win (5 = most recent / most frequent / most money). abc: Pareto class of money
    won. xyz: purchase frequency in the last `xyz_months` months, by the share of them with a win
    (active_months / xyz_months): X from xyz_active_shares[0] (default: half, every other month or more
    often), Y from xyz_active_shares[1] (a fifth), Z below or no purchase in the window; purchase_cv, the
    coefficient of variation of the monthly win counts, is shown beside it. golden: AX or AY. With
    `profiles`, the client's segment and potential income (the ideal client's income minus its own, never
    negative), from `holdings` held as of the date when given (else what the profiles knew at training).
    """
    windows = tuple(sorted(int(w) for w in windows))
    if not windows or windows[0] <= 0:
        raise ValueError(f"windows must be positive day counts, got {windows}")
    as_of_day = analytics_day(deals, as_of)
    ids = _client_ids(clients, deals)
    won = _won_deals(deals, as_of_day)

    grouped = won.groupby("client_id", sort=False)
    frequency: FloatArray = np.asarray(grouped.size().reindex(ids).fillna(0), dtype=np.float64)
    monetary: FloatArray = np.asarray(grouped["amount"].sum().reindex(ids).fillna(0.0), dtype=np.float64)
    # Without any won amount paid by the as-of date, money is unknown, not 0: no M score, no ABC class and so no
    # golden client, rather than every client C (the table's attrs say so, and `dealscore clients` tells the
    # user). Wins paid later do not count: a priced win the day after the date had turned an as-of table's empty
    # money columns into 0 and class C (a property test).
    money_known = "amount" in deals and bool((won["amount"] > 0).any())
    first_day: FloatArray = np.asarray(grouped["day"].min().reindex(ids), dtype=np.float64)
    last_day: FloatArray = np.asarray(grouped["day"].max().reindex(ids), dtype=np.float64)
    recency: FloatArray = as_of_day - last_day
    has_win = frequency > 0

    lost_after = windows[-1]
    status = np.where(~has_win, "prospect", np.where(recency > lost_after, "lost",
                                                     np.where(frequency == 1, "new", "regular")))
    labels = status_window_labels(windows)
    band = np.searchsorted(np.array(windows, dtype=np.float64), np.nan_to_num(recency), side="left")
    status_window = np.array(labels, dtype=object)[band]

    r_score = _scores(-recency, has_win)
    f_score = _scores(frequency, has_win)
    m_score = _scores(monetary, has_win & money_known)
    active, purchase_cv = _monthly_regularity(won, ids, as_of_day, xyz_months)
    abc = _classes(monetary, has_win & money_known, shares, ("A", "B", "C"), np.array(ids, dtype=object))
    frequent, occasional = xyz_active_shares
    active_share = active / xyz_months
    xyz = np.where(active_share >= frequent, "X", np.where(active_share >= occasional, "Y", "Z"))

    table = pd.DataFrame({
        "client_id": pd.Series(ids, dtype=object),
        "status": pd.Series(status, dtype=object),
        "status_window": pd.Series(status_window, dtype=object).where(has_win, np.nan),
        "regular_type": _regular_type(won, ids, status, recency),
        "first_won_at": _timestamps(first_day),
        "last_won_at": _timestamps(last_day),
        "recency_days": _counts(recency, has_win),
        "frequency": _counts(frequency, None),
        "monetary": np.round(monetary, 2) if money_known else np.full(len(ids), np.nan),
        "r_score": _counts(r_score, None),
        "f_score": _counts(f_score, None),
        "m_score": _counts(m_score, None),
        "rfm": pd.Series([(f"{r:.0f}{f:.0f}{m:.0f}" if money_known else f"{r:.0f}{f:.0f}-") if ok else np.nan
                          for r, f, m, ok in zip(r_score, f_score, m_score, has_win, strict=True)], dtype=object),
        "abc": pd.Series(abc, dtype=object),
        "active_months": _counts(active, None),
        "purchase_cv": np.round(purchase_cv, 4),
        "xyz": pd.Series(xyz, dtype=object).where(has_win, np.nan),
    })
    table["golden"] = (table["abc"] == "A") & table["xyz"].isin(["X", "Y"])
    table.attrs["money_known"] = money_known
    if profiles is not None:
        held = _held_as_of(holdings, as_of_day)
        facts = client_facts(clients, held, ids=ids)
        incomes = _income_as_of(profiles, ids, monetary, held)
        if incomes is not None:
            facts = [dataclasses.replace(f, income=float(x)) for f, x in zip(facts, incomes, strict=True)]
        answers = profiles.gaps_for(facts, top_k=0, as_of_day=as_of_day)
        # Not a client yet on the day (first contract later): no segment or potential, as `gaps` lists none.
        later = np.array([f.since_day is not None and f.since_day > as_of_day for f in facts], dtype=np.bool_)
        table["segment"] = pd.Series([a.segment for a in answers], dtype=object).where(~later, np.nan)
        # The two figures potential income is the difference of, so a manager can see where it comes from.
        table["income"] = np.array([np.nan if a.income is None else a.income for a in answers], dtype=np.float64)
        table["ideal_income"] = np.array([np.nan if a.ideal_income is None else a.ideal_income for a in answers],
                                         dtype=np.float64)
        table["potential_income"] = np.array(
            [np.nan if a.potential_income is None else a.potential_income for a in answers], dtype=np.float64)
        table.loc[later, ["income", "ideal_income", "potential_income"]] = np.nan
    return table


def _income_as_of(profiles: ClientProfiles, ids: list[str], monetary: FloatArray,
                  held: pd.DataFrame | None) -> FloatArray | None:
    """Each client's income as of the analytics day, measured as the profiles measured it at training:
    money won by then, or the revenue (or number) of the holdings held by then. None when the data given
    cannot say (holdings income without a holdings file, or a clients column): the profiles' own then."""
    source = str(getattr(profiles, "summary", {}).get("income_source", ""))
    if source == "won deal amounts":
        return monetary
    if held is None or source not in ("holdings revenue", "number of products held"):
        return None
    rows = held[held["client_id"].notna() & held["product"].notna()]
    keys = rows["client_id"].astype(str)
    # Products by their fitted spelling, as /v1/gaps reads them: "Deposit" beside "deposit" is one holding.
    spelled = {p: p if (j := profiles.product_position(p)) is None else profiles.products[j]
               for p in rows["product"].astype(str).unique()}
    products = rows["product"].astype(str).map(spelled)
    if source == "number of products held":
        counts = pd.DataFrame({"client_id": keys, "product": products}).drop_duplicates().groupby("client_id").size()
        return np.asarray(counts.reindex(ids).fillna(0.0), dtype=np.float64)
    # One holding per client and product, its revenue summed (unknown only when no row knows it), as fitting.
    money = pd.to_numeric(rows["revenue"], errors="coerce") if "revenue" in rows else pd.Series(np.nan, rows.index)
    if revenue_unfilled(money):  # 0 in every row: not given, as fitting reads it (each holding earns the typical)
        money = pd.Series(np.nan, rows.index)
    pairs = money.groupby([keys, products]).sum(min_count=1)
    earned = profiles.holding_income(pairs.index.get_level_values(1).tolist(),
                                     np.asarray(pairs.to_numpy(), dtype=np.float64))
    income = pd.Series(earned).groupby(pairs.index.get_level_values(0).to_numpy()).sum()
    return np.asarray(income.reindex(ids).fillna(0.0), dtype=np.float64)


def analytics_day(deals: pd.DataFrame, as_of: date | None) -> float:
    """The analytics' day (days since 1970): `as_of`, else the deals' latest date, else today."""
    if as_of is not None:
        return float(np.datetime64(as_of, "D").astype(np.int64))
    days = [day_numbers(deals[c]) for c in ("created_at", "closed_at")
            if c in deals and deals[c].notna().any()]
    if not days:
        return utc_today_number()
    return float(max(np.nanmax(d) for d in days))


def _client_ids(clients: pd.DataFrame | None, deals: pd.DataFrame) -> list[str]:
    ids: list[str] = []
    if clients is not None and "client_id" in clients:
        ids = [str(c) for c in clients["client_id"].dropna()]
    if "client_id" in deals:
        ids += [str(c) for c in deals["client_id"].dropna()]
    return list(dict.fromkeys(ids))


def payment_days(deals: pd.DataFrame) -> npt.NDArray[np.float64]:
    """The day each deal's outcome became known (days since 1970): closed_at, else created_at, else NaN. A won
    deal pays on it: the analytics count a win, and the holdings read off won deals start, from then."""
    day = np.full(len(deals), np.nan)
    for column in ("created_at", "closed_at"):  # closed_at wins where both exist
        if column in deals:
            values = day_numbers(deals[column])
            day = np.where(np.isnan(values), day, values)
    return day


def _won_deals(deals: pd.DataFrame, as_of_day: float) -> pd.DataFrame:
    """Won deals paid on or before the as-of day: client_id, day (closed_at, else created_at), amount."""
    if "client_id" not in deals or "status" not in deals:
        return pd.DataFrame({"client_id": pd.Series(dtype=object), "day": pd.Series(dtype=np.float64),
                             "amount": pd.Series(dtype=np.float64)})
    won = deals[(deals["status"] == "won") & deals["client_id"].notna()]
    day = payment_days(won)
    amount = (won["amount"].to_numpy(dtype=np.float64) if "amount" in won else np.full(len(won), np.nan))
    frame = pd.DataFrame({"client_id": won["client_id"].astype(str).to_numpy(), "day": day,
                          "amount": np.nan_to_num(amount, nan=0.0)})
    return frame[frame["day"] <= as_of_day].reset_index(drop=True)


def _counts(values: FloatArray, known: npt.NDArray[np.bool_] | None) -> pd.Series:
    """Whole numbers (days, wins, months, scores) as integers, empty where unknown: a table read by people
    and by CRM imports shows 40, not 40.0 (NaN forces floats on a plain numpy column)."""
    missing = np.isnan(values) if known is None else ~known | np.isnan(values)
    return pd.Series(pd.array(np.where(missing, 0, values).astype(np.int64), dtype="Int64")).mask(missing)


def _scores(values: FloatArray, has_win: npt.NDArray[np.bool_]) -> FloatArray:
    """Quintile scores 1..5 of the clients with a win; NaN for the others. Tied clients share the score of
    their tie's middle place, except that the lowest value always scores 1 and the highest 5: half of all
    clients buying once are the least frequent (F=1, where their middle place gave 2 and left nobody at 1),
    and the many clients who bought on the as-of day are the most recent (R=5)."""
    out = np.full(values.size, np.nan)
    if has_win.any():
        won = values[has_win]
        ranks = pd.Series(won).rank(method="average", pct=True).to_numpy()
        scores = np.clip(np.ceil(ranks * SCORE_BANDS), 1, SCORE_BANDS)
        if won.min() < won.max():
            scores = np.where(won == won.min(), 1.0, np.where(won == won.max(), float(SCORE_BANDS), scores))
        out[has_win] = scores
    return out


def _classes(values: FloatArray, has_win: npt.NDArray[np.bool_], shares: tuple[float, float, float],
             letters: tuple[str, str, str], ids: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    out = np.full(values.size, np.nan, dtype=object)
    if has_win.any():
        abc = pareto_classes(values[has_win], shares, tie_keys=ids[has_win])
        out[has_win] = np.array(letters, dtype=object)[np.searchsorted(np.array(["A", "B", "C"]), abc)]
    return out


def _held_as_of(holdings: pd.DataFrame | None, as_of_day: float) -> pd.DataFrame | None:
    """The holdings already held on the as-of day (a holding without a start date counts as held)."""
    if holdings is None or "since" not in holdings.columns:
        return holdings
    since = day_numbers(holdings["since"])
    return holdings[np.isnan(since) | (since <= as_of_day)]


def _monthly_regularity(won: pd.DataFrame, ids: list[str], as_of_day: float,
                        months: int) -> tuple[FloatArray, FloatArray]:
    """Months with a win among the last `months` (30.4-day months ending on the as-of day), and the
    coefficient of variation of the monthly win counts (NaN without any win in the window)."""
    age = np.floor((as_of_day - won["day"].to_numpy(dtype=np.float64)) / DAYS_PER_MONTH)
    recent = (age >= 0) & (age < months)
    position = {c: i for i, c in enumerate(ids)}
    client = np.array([position[c] for c in won["client_id"].to_numpy()[recent]], dtype=np.int64)
    counts = np.zeros((len(ids), months))
    np.add.at(counts, (client, age[recent].astype(np.int64)), 1.0)
    mean = counts.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = np.where(mean > 0, counts.std(axis=1) / mean, np.nan)
    active: FloatArray = (counts > 0).sum(axis=1).astype(np.float64)
    return active, np.asarray(cv, dtype=np.float64)


def _regular_type(won: pd.DataFrame, ids: list[str], status: npt.NDArray[Any], recency: FloatArray) -> pd.Series:
    """How often a regular client buys: the median gap between its distinct purchase days (several wins on
    one day are one purchase: counted as gaps of 0 they made a yearly buyer 'monthly'), or the days since its
    last purchase when longer: a client that bought monthly and has been silent for 11 months buys yearly at
    best now (DOMAIN.md: a client whose frequency falls below the lowest band is lost; it falls band by band
    first). None with one purchase day."""
    ordered = won.drop_duplicates(["client_id", "day"]).sort_values(["client_id", "day"])
    gaps = ordered.groupby("client_id")["day"].diff()
    median_gap = gaps.groupby(ordered["client_id"]).median().reindex(ids).to_numpy(dtype=np.float64)
    gap = np.where(np.isnan(median_gap), np.nan, np.fmax(median_gap, recency))
    kind = np.where(gap <= MONTHLY_MAX_GAP_DAYS, "monthly",
                    np.where(gap <= PERIODIC_MAX_GAP_DAYS, "periodic", "yearly")).astype(object)
    kind[(status != "regular") | np.isnan(median_gap)] = np.nan
    return pd.Series(kind, dtype=object)


def _timestamps(days: FloatArray) -> pd.Series:
    return pd.Series(pd.to_datetime(days, unit="D"), dtype="datetime64[ns]")


def client_facts(clients: pd.DataFrame | None, holdings: pd.DataFrame | None,
                 extra_attributes: Sequence[str] = (), ids: Sequence[str] | None = None) -> list[ClientFacts]:
    """ClientFacts of the clients of the frames (clients table first, then holders not in it).

    With holdings given, a client without a holdings row holds nothing; without them, products stay
    None and the profiles use what they knew at training.
    """
    if ids is None:
        ids = list(dict.fromkeys(
            [str(c) for c in (clients["client_id"].dropna() if clients is not None else [])]
            + [str(c) for c in (holdings["client_id"].dropna() if holdings is not None else [])]))
    products: dict[str, tuple[str, ...]] = {}
    if holdings is not None:
        rows = holdings[holdings["client_id"].notna() & holdings["product"].notna()]
        for client_id, group in rows.groupby(rows["client_id"].astype(str))["product"]:
            products[str(client_id)] = tuple(sorted({str(p) for p in group}))
    attributes: dict[str, dict[str, Any]] = {}
    if clients is not None and not clients.empty:
        unique = clients.drop_duplicates("client_id")
        columns = [c for c in ("industry", "size", "region", *extra_attributes) if c in unique]
        since = day_numbers(unique["since"]) if "since" in unique else np.full(len(unique), np.nan)
        records = unique[["client_id", *columns]].to_dict("records")
        for record, since_day in zip(records, since, strict=True):
            values: dict[str, Any] = {k: _text(record[k]) for k in columns}
            values["since_day"] = None if since_day != since_day else float(since_day)
            attributes[str(record["client_id"])] = values
    facts = []
    for client_id in ids:
        values = attributes.get(client_id, {})
        extras = {k: values[k] for k in extra_attributes if values.get(k) is not None}
        facts.append(ClientFacts(
            client_id=client_id, industry=values.get("industry"), size=values.get("size"),
            region=values.get("region"), since_day=values.get("since_day"),
            products=products.get(client_id, ()) if holdings is not None else None,
            attributes=extras or None,
        ))
    return facts


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return str(value)


def gap_table(profiles: ClientProfiles, clients: pd.DataFrame | None, holdings: pd.DataFrame | None,
              top_k: int = 5, as_of: date | None = None, chunk: int = 2000) -> pd.DataFrame:
    """Every client's gap list, one row per gap: client_id, rank (1 = offer first), product, adoption,
    p_accept, potential_income, then the segment used and the reason. As of `as_of` (default today): the
    clients' tenure on that day, only the holdings held by then (as `client_analytics` counts them), and
    only clients whose first contract (`since`) is on or before it."""
    extras = [a for a in profiles.encoder.attributes if a not in ("industry", "size", "region", "tenure")]
    as_of_day = None if as_of is None else float(np.datetime64(as_of, "D").astype(np.int64))
    if as_of_day is not None:
        holdings = _held_as_of(holdings, as_of_day)
    facts = client_facts(clients, holdings, extras)
    if as_of_day is not None:
        facts = [f for f in facts if f.since_day is None or f.since_day <= as_of_day]
    answers: list[ClientGaps] = []
    for start in range(0, len(facts), chunk):
        answers.extend(profiles.gaps_for(facts[start:start + chunk], top_k=top_k, as_of_day=as_of_day))
    rows = [(a.client_id, rank, g.product, g.adoption, g.p_accept, g.potential_income, a.segment, g.reason)
            for a in answers for rank, g in enumerate(a.gaps, start=1)]
    table = pd.DataFrame(rows, columns=list(GAP_COLUMNS))
    table = table.astype({"client_id": object, "product": object, "segment": object, "reason": object,
                          "rank": np.int64, "adoption": np.float64, "p_accept": np.float64,
                          "potential_income": np.float64})
    return table


__all__ = ["DEFAULT_WINDOWS", "GAP_COLUMNS", "analytics_day", "client_analytics", "client_facts", "gap_table",
           "payment_days",
           "status_window_labels"]
