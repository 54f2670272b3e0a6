"""Small hand-made portfolios whose as-of features tests count by hand."""

from __future__ import annotations

import pandas as pd


def hand_count_portfolio(day: pd.Timestamp) -> pd.DataFrame:
    """Client k: won a (closed on day + 5), lost b (+15), won c (+30); d is open, created on day + 100; client
    "other" won e (+1). Products: a, b, d and e are x, c is y."""
    return pd.DataFrame({
        "deal_id": ["a", "b", "c", "d", "e"],
        "client_id": ["k", "k", "k", "k", "other"],
        "created_at": [day, day + pd.Timedelta(days=10), day + pd.Timedelta(days=20), day + pd.Timedelta(days=100),
                       day],
        "closed_at": [day + pd.Timedelta(days=5), day + pd.Timedelta(days=15), day + pd.Timedelta(days=30), pd.NaT,
                      day + pd.Timedelta(days=1)],
        "status": ["won", "lost", "won", "open", "won"],
        "amount": [100.0, 50.0, 300.0, 80.0, 7.0],
        "product": ["x", "x", "y", "x", "x"],
    })
