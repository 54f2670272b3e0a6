"""bench/stale_history.py: a client's true history and status on a deal's day, from the full data."""

from __future__ import annotations

import pandas as pd

from bench.stale_history import client_history_on, client_status, months_since


def _deals(*rows: tuple[str, str, str, float]) -> pd.DataFrame:
    """(client_id, status, closed_at, amount) rows as a deals table."""
    frame = pd.DataFrame(rows, columns=["client_id", "status", "closed_at", "amount"])
    return frame.assign(closed_at=pd.to_datetime(frame["closed_at"]))


def _judged(*rows: tuple[str, str]) -> pd.DataFrame:
    """(client_id, created_at) rows, kept out of day order to check the answer follows the input's."""
    frame = pd.DataFrame(rows, columns=["client_id", "created_at"], index=range(10, 10 + len(rows)))
    return frame.assign(created_at=pd.to_datetime(frame["created_at"]))


def test_history_counts_wins_closed_before_the_deals_day_and_status_reads_it() -> None:
    deals = _deals(("A", "won", "2024-01-10", 100.0), ("A", "won", "2024-01-10", 50.0),
                   ("A", "lost", "2024-02-01", 9.0), ("A", "won", "2024-03-01", float("nan")),
                   ("B", "won", "2023-01-01", 70.0), ("C", "lost", "2023-06-01", 5.0))
    judged = _judged(("A", "2024-03-02"), ("A", "2024-01-10"), ("A", "2024-03-01"), ("B", "2023-12-27"),
                     ("B", "2023-12-28"), ("C", "2024-05-01"), ("A", "2024-01-11"))
    history = client_history_on(deals, judged)
    assert list(history.index) == list(judged.index)
    assert history["won_deals"].tolist() == [3.0, 0.0, 2.0, 1.0, 1.0, 0.0, 2.0]  # a win of the deal's day not yet
    assert history["won_amount"].tolist() == [150.0, 0.0, 150.0, 70.0, 70.0, 0.0, 150.0]  # no amount: nothing won
    assert history["first_won_at"].iloc[0] == pd.Timestamp("2024-01-10")
    assert history["last_won_at"].iloc[0] == pd.Timestamp("2024-03-01")
    assert history["last_won_at"].iloc[[1, 5]].isna().all()
    status = client_status(history, judged["created_at"], lost_window_days=360)
    # B's one win 360 days before its first deal still counts it new; a day later it is lost.
    assert status.tolist() == ["regular", "prospect", "regular", "new", "lost", "prospect", "regular"]


def test_months_since_count_calendar_months_from_the_as_of_day() -> None:
    days = pd.Series(pd.to_datetime(["2024-12-31", "2025-01-30", "2025-01-31", "2025-03-30", "2025-12-31"]))
    assert months_since(days, pd.Timestamp("2024-12-31")).tolist() == [1, 1, 2, 3, 13]
