"""Properties of the as-of features over random small deal tables (dates, statuses, clients, products, amounts).

test_features.py checks the as-of rule on the synthetic CRM with one cut; here every table is random and the
history is built as training builds it (training.fit.train: deals sorted by day and id, amounts of 0 unquoted,
the spec fitted on the table, each deal's history lag from its id): deals dated after a deal never change its
features, whether added to the history or to the whole table, and the order of the rows never does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from model.features import (
    CLIENT_HISTORY_FEATURES,
    CLIENT_PRODUCT_FEATURES,
    HISTORY_AGE,
    DealHistory,
    FeatureConfig,
    FeatureSpec,
    build_features,
    fit_feature_spec,
    frame_columns,
    training_history_lags,
)
from training.fit import zero_amount_unquoted

FAST = settings(max_examples=60, deadline=None, derandomize=True)

START = pd.Timestamp("2024-01-01")
EXTRA_KINDS = {"source": "text"}
# Few deals per level: rare levels share a code, frequent ones get their own (min_level_count=2).
CONFIG = FeatureConfig(min_level_count=2, lost_window_days=60, recent_window_days=90, history_lag_days=30)

# (client or None, product or None, source, created day, days to close or None, status, amount)
DEAL = st.tuples(
    st.sampled_from(["c0", "c1", "c2", None]), st.sampled_from(["x", "y", "z", None]),
    st.sampled_from(["web", "call"]), st.integers(0, 200), st.one_of(st.none(), st.integers(0, 40)),
    st.sampled_from(["won", "won", "lost", "lost", "open"]),
    # Tenths (0.1 + 0.2 != 0.2 + 0.1 in floats), zeros (no quote) and missing amounts.
    st.one_of(st.integers(0, 3_000).map(lambda v: v / 10), st.just(0.0), st.just(math.nan)))
DEALS = st.lists(DEAL, min_size=1, max_size=25)


def _table(rows: list[tuple[Any, ...]], prefix: str = "d") -> pd.DataFrame:
    created = [START + pd.Timedelta(days=r[3]) for r in rows]
    closed = [pd.NaT if r[4] is None or r[5] == "open" else c + pd.Timedelta(days=r[4])
              for c, r in zip(created, rows, strict=True)]
    return pd.DataFrame({
        "deal_id": pd.Series([f"{prefix}{i:02d}" for i in range(len(rows))], dtype=object),
        "client_id": pd.Series([r[0] for r in rows], dtype=object),
        "product": pd.Series([r[1] for r in rows], dtype=object),
        "source": pd.Series([r[2] for r in rows], dtype=object),
        "created_at": pd.Series(created, dtype="datetime64[ns]"),
        "closed_at": pd.Series(closed, dtype="datetime64[ns]"),
        "status": pd.Series([r[5] for r in rows], dtype=object),
        "amount": pd.Series([r[6] for r in rows], dtype=np.float64),
    })


def _as_training_reads(deals: pd.DataFrame) -> pd.DataFrame:
    """The deals as train() hands them to the feature builder: by day and id, amounts of 0 as no quote."""
    ordered = deals.sort_values(["created_at", "deal_id"], kind="stable").reset_index(drop=True)
    return zero_amount_unquoted(ordered)


def _spec(deals: pd.DataFrame) -> FeatureSpec:
    return fit_feature_spec(deals, CONFIG, EXTRA_KINDS)


def _features(spec: FeatureSpec, history_source: pd.DataFrame, asked: pd.DataFrame) -> pd.DataFrame:
    """The features of `asked` (rows by deal id, columns by name) against a history of `history_source`, each
    deal read at its training history lag."""
    history = DealHistory(spec, frame_columns(history_source))
    lags = training_history_lags(asked["deal_id"].to_numpy(), spec.config.history_lag_days)
    built = build_features(spec, history, frame_columns(asked), lags if spec.has_history_age else None)
    return pd.DataFrame(built, index=asked["deal_id"].to_numpy(), columns=spec.names)


def _history_features(spec: FeatureSpec) -> list[str]:
    """The features read off earlier deals (not the level codes and fills a spec learns from the whole table)."""
    own = {*CLIENT_HISTORY_FEATURES, *CLIENT_PRODUCT_FEATURES, HISTORY_AGE, "overall_win_rate", "recent_win_rate",
           "month"}
    return [n for n in spec.names if n in own or n.endswith("_win_rate")]


def _split(rows: list[tuple[Any, ...]], later: list[tuple[Any, ...]], cut: int) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                                          pd.DataFrame]:
    """(the table, the table with deals created on or after day `cut` appended, its closed deals created by `cut`):
    what happens on a deal's own day is not known yet when it is created."""
    base = _table(rows)
    future = _table([(c, p, s, max(day, cut), delay, status, amount)
                     for c, p, s, day, delay, status, amount in later], prefix="f")
    union = pd.concat([base, future], ignore_index=True)
    day = (base["created_at"] - START).dt.days
    targets = base[(day <= cut) & base["status"].isin(["won", "lost"]).to_numpy()]
    return _as_training_reads(base), _as_training_reads(union), _as_training_reads(targets)


@FAST
@given(rows=DEALS, later=DEALS, cut=st.integers(0, 200))
def test_later_deals_in_the_history_never_change_an_earlier_deals_features(
        rows: list[tuple[Any, ...]], later: list[tuple[Any, ...]], cut: int) -> None:
    base, union, targets = _split(rows, later, cut)
    spec = _spec(union)
    pd.testing.assert_frame_equal(_features(spec, union, targets), _features(spec, base, targets))


@FAST
@given(rows=DEALS, later=DEALS, cut=st.integers(0, 200))
def test_deleting_later_deals_from_the_export_never_changes_an_earlier_deals_history_features(
        rows: list[tuple[Any, ...]], later: list[tuple[Any, ...]], cut: int) -> None:
    """Trained on the whole export and on it cut after a day, the closed deals by that day read the same history
    (level codes and numeric fills are the spec's, learnt from all closed deals: not history)."""
    base, union, targets = _split(rows, later, cut)
    spec_all, spec_cut = _spec(union), _spec(base)
    names = [n for n in _history_features(spec_cut) if n in spec_all.names]
    with_later = _features(spec_all, union, targets)[names]
    without = _features(spec_cut, base, targets)[names]
    pd.testing.assert_frame_equal(with_later, without)


@FAST
@given(rows=DEALS, data=st.data())
def test_the_order_of_the_rows_never_changes_a_deals_features(rows: list[tuple[Any, ...]],
                                                              data: st.DataObject) -> None:
    table = _table(rows)
    order = data.draw(st.permutations(range(len(table))))
    shuffled = table.iloc[order].reset_index(drop=True)
    plain = _as_training_reads(table)
    expected = _features(_spec(plain), plain, plain)
    # Through training's own ordering, and with the history indexed straight from the shuffled rows.
    reordered = _as_training_reads(shuffled)
    pd.testing.assert_frame_equal(_features(_spec(reordered), reordered, reordered), expected)
    raw = zero_amount_unquoted(shuffled)
    pd.testing.assert_frame_equal(_features(_spec(plain), raw, plain), expected)
