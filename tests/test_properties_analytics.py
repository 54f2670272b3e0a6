"""Properties of client analytics (model/client_analytics.py) over random small deal tables, against a
brute-force count of the same rules: status and its recency band, RFM scores, ABC by money won, XYZ by active
months, golden = AX or AY; and the as-of rule itself (nothing paid after the as-of date is seen)."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st
from test_properties_grades import brute_force_abc

from model.client_analytics import DAYS_PER_MONTH, client_analytics, status_window_labels

FAST = settings(max_examples=80, deadline=None, derandomize=True)

AS_OF = date(2024, 12, 31)
AS_OF_DAY = int((np.datetime64(AS_OF, "D") - np.datetime64("1970-01-01", "D")).astype(int))
CLIENT_IDS = ["c0", "c1", "c2", "c3", "c4", "c5"]

# (client, created days before the as-of date (negative: after it), days to close or None, status, amount)
DEAL = st.tuples(st.sampled_from(CLIENT_IDS), st.integers(-40, 800), st.one_of(st.none(), st.integers(0, 60)),
                 st.sampled_from(["won", "won", "lost", "open"]),
                 st.one_of(st.integers(0, 1_000).map(float), st.just(math.nan)))
DEALS = st.lists(DEAL, max_size=30)
WINDOWS = st.sampled_from([(90, 180, 360), (30, 90), (60,), (90, 180, 200), (1, 2, 3)])


def _frame(rows: list[tuple[str, int, int | None, str, float]]) -> pd.DataFrame:
    created = [pd.Timestamp(AS_OF - timedelta(days=before)) for _, before, _, _, _ in rows]
    closed = [pd.NaT if delay is None else c + pd.Timedelta(days=delay)
              for c, (_, _, delay, _, _) in zip(created, rows, strict=True)]
    return pd.DataFrame({
        "deal_id": pd.Series([f"d{i}" for i in range(len(rows))], dtype=object),
        "client_id": pd.Series([r[0] for r in rows], dtype=object),
        "created_at": pd.Series(created, dtype="datetime64[ns]"),
        "closed_at": pd.Series(closed, dtype="datetime64[ns]"),
        "status": pd.Series([r[3] for r in rows], dtype=object),
        "amount": pd.Series([r[4] for r in rows], dtype=np.float64),
    })


def _wins_by_client(rows: list[tuple[str, int, int | None, str, float]]) -> dict[str, list[tuple[int, float]]]:
    """Each client's wins paid by the as-of date: (payment day, amount), the day being closed_at else created_at."""
    wins: dict[str, list[tuple[int, float]]] = {}
    for client, before, delay, status, amount in rows:
        day = AS_OF_DAY - before + (delay or 0)
        if status == "won" and day <= AS_OF_DAY:
            wins.setdefault(client, []).append((day, 0.0 if math.isnan(amount) else amount))
    return wins


def _table(rows: list[tuple[str, int, int | None, str, float]], **options: Any) -> pd.DataFrame:
    return client_analytics(_frame(rows), None, as_of=AS_OF, **options).set_index("client_id")


@FAST
@given(rows=DEALS, windows=WINDOWS)
def test_status_and_its_window_match_a_brute_force_count(rows: list[tuple[str, int, int | None, str, float]],
                                                         windows: tuple[int, ...]) -> None:
    table = _table(rows, windows=windows)
    wins = _wins_by_client(rows)
    labels = status_window_labels(windows)
    for client in dict.fromkeys(r[0] for r in rows):
        got = table.loc[client]
        own = wins.get(client, [])
        if not own:
            assert got["status"] == "prospect" and pd.isna(got["status_window"]) and pd.isna(got["recency_days"])
            continue
        recency = AS_OF_DAY - max(day for day, _ in own)
        expected = "lost" if recency > windows[-1] else "new" if len(own) == 1 else "regular"
        band = next((k for k, w in enumerate(windows) if recency <= w), len(windows))
        assert (got["status"], got["status_window"], got["recency_days"], got["frequency"]) == (
            expected, labels[band], recency, len(own))


@FAST
@given(rows=DEALS)
def test_rfm_scores_lie_in_one_to_five_and_rise_with_their_raw_values(
        rows: list[tuple[str, int, int | None, str, float]]) -> None:
    table = _table(rows)
    buyers = table[table["frequency"] > 0]
    for score, raw, sign in (("r_score", "recency_days", -1), ("f_score", "frequency", 1),
                             ("m_score", "monetary", 1)):
        if score == "m_score" and not table.attrs["money_known"]:
            assert table[score].isna().all()
            continue
        assert table.loc[table["frequency"] == 0, score].isna().all()
        scores = buyers[score].astype(float).to_numpy()
        values = sign * buyers[raw].astype(float).to_numpy()
        assert ((scores >= 1) & (scores <= 5)).all(), scores
        for i in range(values.size):
            for j in range(values.size):
                if values[i] > values[j]:
                    assert scores[i] >= scores[j], (score, values[i], scores[i], values[j], scores[j])
                elif values[i] == values[j]:
                    assert scores[i] == scores[j]
        if values.size and values.min() < values.max():
            assert scores[values == values.min()].tolist() == [1.0] * int((values == values.min()).sum())
            assert scores[values == values.max()].tolist() == [5.0] * int((values == values.max()).sum())


@FAST
@given(rows=DEALS)
def test_abc_xyz_and_golden_match_a_brute_force_count(rows: list[tuple[str, int, int | None, str, float]]) -> None:
    table = _table(rows)
    wins = _wins_by_client(rows)
    buyers = [c for c in table.index if wins.get(c)]
    if table.attrs["money_known"]:
        money = [sum(a for _, a in wins[c]) for c in buyers]
        expected_abc = dict(zip(buyers, brute_force_abc(money, (0.8, 0.15, 0.05), buyers), strict=True))
        assert table.loc[buyers, "abc"].to_dict() == expected_abc
    else:
        assert table["abc"].isna().all()
    for client in table.index:
        got = table.loc[client]
        own = wins.get(client, [])
        months = {math.floor((AS_OF_DAY - day) / DAYS_PER_MONTH) for day, _ in own}
        active = len({m for m in months if 0 <= m < 12})
        assert got["active_months"] == active
        if not own:
            assert pd.isna(got["xyz"]) and pd.isna(got["abc"]) and not got["golden"]
            continue
        assert got["xyz"] == ("X" if active / 12 >= 0.5 else "Y" if active / 12 >= 0.2 else "Z")
        assert got["golden"] == (got["abc"] == "A" and got["xyz"] in ("X", "Y"))


# The explicit example is the smallest case found (one unpriced win by the date, one priced win the day after: the
# money columns went from empty to 0 and class C); no shrinking, which cost minutes on a failure.
@settings(FAST, phases=(Phase.explicit, Phase.generate))
@example(rows=[("c0", 10, None, "won", math.nan)], later=[("c0", -1, None, "won", 5.0)])
@given(rows=DEALS, later=DEALS)
def test_deals_paid_after_the_as_of_date_change_nothing(rows: list[tuple[str, int, int | None, str, float]],
                                                        later: list[tuple[str, int, int | None, str, float]]) -> None:
    """As of a date, the table is what the deals paid by then say: deals created after it (of the same clients,
    so no row is added) must not change a figure."""
    clients = {r[0] for r in rows}
    future = [(c, min(before, -1), delay, status, amount) for c, before, delay, status, amount in later if c in clients]
    plain, appended = _table(rows), _table(rows + future)
    pd.testing.assert_frame_equal(appended, plain)
    assert appended.attrs == plain.attrs
