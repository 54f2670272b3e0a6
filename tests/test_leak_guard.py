"""The leak guard on columns of each kind: known only after the outcome, giving it away either way, honest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.leak_guard import _encoded_on_earlier_half, find_leaks
from training.synthetic_crm import SyntheticCRM


@pytest.fixture(scope="module")
def suspects(small_crm: SyntheticCRM) -> dict[str, str]:
    rng = np.random.default_rng(0)
    deals = small_crm.deals.sort_values("created_at", kind="stable").reset_index(drop=True)
    closed = deals["status"] != "open"
    # Filled in when the deal closes: a score of the close reason.
    deals["close_reason_score"] = np.where(closed, rng.random(len(deals)), np.nan)
    # 0 for every won deal, days for the lost ones: ranks outcomes perfectly, downwards.
    deals["days_to_loss"] = np.where(deals["status"] == "lost", 10 + rng.random(len(deals)) * 50, 0.0)
    deals["days_to_loss"] = np.where(closed, deals["days_to_loss"], rng.random(len(deals)) * 30)
    # An honest ticket number, unique per deal: tells nothing of the outcome.
    deals["ticket_no"] = [f"T{i:06d}" for i in range(len(deals))]
    found = find_leaks(deals, ["close_reason_score", "days_to_loss", "ticket_no"])
    return {f.column: f.reason for f in found if not f.review_only}


def test_a_column_filled_only_once_the_deal_closed_is_a_leak(suspects: dict[str, str]) -> None:
    assert suspects["close_reason_score"].startswith("filled for 100% of closed deals but 0% of open ones")


def test_a_column_that_gives_the_outcome_away_downwards_is_a_leak(suspects: dict[str, str]) -> None:
    assert suspects["days_to_loss"].startswith("predicts the outcome almost perfectly on its own (AUC 1.000")


def test_an_honest_id_is_not_a_leak(suspects: dict[str, str]) -> None:
    # Its levels' win rates are learned on the earlier half and tested on the later one, where every id is new.
    assert "ticket_no" not in suspects


def test_a_level_the_earlier_half_never_saw_gets_the_earlier_win_rate() -> None:
    values = pd.Series(["a", "a", "b", "b", "a", "c"])
    won = np.array([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    # Earlier half: a won twice, b lost once. Later: b (rate 0), a (1.0), c (unseen: the earlier rate, 2/3).
    assert _encoded_on_earlier_half(values, won).tolist() == [0.0, 1.0, pytest.approx(2 / 3)]


def _low_won_high_or_blank_lost(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A "days overdue" column: low for won deals, high for lost ones, and blank for half the lost ones."""
    rng = np.random.default_rng(seed)
    status = np.where(rng.random(n) < 0.4, "won", "lost")
    value = np.where(status == "won", rng.random(n), 10 + rng.random(n))
    value = np.where((status == "lost") & (rng.random(n) < 0.5), np.nan, value)
    return pd.DataFrame({"status": status, "days_overdue": value})


def test_a_blank_value_on_the_losing_side_still_gives_the_outcome_away() -> None:
    """A missing value counts as below every value and, separately, above: counted only below, this column's
    blanks sat among the won deals' low values and hid a perfect leak."""
    (finding,) = find_leaks(_low_won_high_or_blank_lost(), ["days_overdue"])
    assert finding.reason.startswith("predicts the outcome almost perfectly on its own (AUC 1.000")
    assert not finding.kept and not finding.review_only


def test_a_leak_the_user_keeps_is_reported_as_kept() -> None:
    (finding,) = find_leaks(_low_won_high_or_blank_lost(), ["days_overdue"], keep=["days_overdue"])
    assert finding.kept and finding.reason.startswith("predicts the outcome almost perfectly")


def test_a_few_open_deals_say_nothing_about_what_is_filled_only_after_the_outcome() -> None:
    """Under 10 open deals, a column they leave empty is no sign of a leak (5 of 5 empty proves little)."""
    rng = np.random.default_rng(1)
    closed = pd.DataFrame({"status": np.where(rng.random(60) < 0.5, "won", "lost"),
                           "note_length": np.where(rng.random(60) < 0.8, rng.random(60), np.nan)})
    few_open = pd.DataFrame({"status": ["open"] * 5, "note_length": [np.nan] * 5})
    assert find_leaks(pd.concat([closed, few_open], ignore_index=True), ["note_length"]) == []
    many_open = pd.DataFrame({"status": ["open"] * 10, "note_length": [np.nan] * 10})
    (finding,) = find_leaks(pd.concat([closed, many_open], ignore_index=True), ["note_length"])
    assert finding.reason.endswith("known only after the outcome")
