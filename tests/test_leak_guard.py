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


def _later_half_ranking(discordant: int) -> pd.DataFrame:
    """40 closed deals whose later half (the one the AUC is read on) has 10 won and 10 lost: the lost ones
    score 0..9, the won ones above them but for `discordant` (won, lost) pairs in the wrong order, so the
    column's AUC alone is 1 - discordant / 100. The earlier half repeats the later one."""
    left = discordant
    won_scores = []
    for _ in range(10):
        below = min(10, left)  # this won deal scores under the `below` highest lost ones
        won_scores.append(9.5 - below)
        left -= below
    later = pd.DataFrame({"status": ["won"] * 10 + ["lost"] * 10, "score": won_scores + list(range(10))})
    return pd.concat([later, later], ignore_index=True)


@pytest.mark.parametrize(("discordant", "suspect", "review"), [
    (5, True, False),  # AUC 0.95: the suspect threshold itself
    (6, False, True),  # AUC 0.94: strong, reported for review only
    (25, False, True),  # AUC 0.75: the review threshold itself
    (26, False, False),  # AUC 0.74: an ordinary column
])
def test_how_well_a_column_must_rank_outcomes_alone_to_be_suspect_or_reviewed(
        discordant: int, suspect: bool, review: bool) -> None:
    found = find_leaks(_later_half_ranking(discordant), ["score"])
    assert [f.column for f in found if not f.review_only] == (["score"] if suspect else [])
    assert [f.column for f in found if f.review_only] == (["score"] if review else [])


@pytest.mark.parametrize(("closed", "flagged"), [(39, False), (40, True)])
def test_the_ranking_is_read_from_20_later_closed_deals_on(closed: int, flagged: bool) -> None:
    """A column that gives every outcome away is not judged on fewer than 20 deals in the later half."""
    status = np.where(np.arange(closed) % 2 == 0, "won", "lost")
    deals = pd.DataFrame({"status": status, "won_flag": (status == "won").astype(float)})
    assert [f.column for f in find_leaks(deals, ["won_flag"])] == (["won_flag"] if flagged else [])


def _filled_shares(closed_filled: int, open_filled: int, open_deals: int = 100) -> pd.DataFrame:
    """200 closed deals (won and lost in turn), the first `closed_filled` of them with a note; `open_deals`
    open ones, the first `open_filled` with a note. The later half of the closed deals has no note at all,
    so the ranking test sees nothing and only the filled shares can flag the column."""
    closed = pd.DataFrame({"status": np.where(np.arange(200) % 2 == 0, "won", "lost"),
                           "note": np.where(np.arange(200) < closed_filled, 1.0, np.nan)})
    opened = pd.DataFrame({"status": "open", "note": np.where(np.arange(open_deals) < open_filled, 1.0, np.nan)})
    return pd.concat([closed, opened], ignore_index=True)


@pytest.mark.parametrize(("closed_filled", "open_filled", "flagged"), [
    (100, 0, True),  # filled for 50% of closed deals: the threshold itself
    (99, 0, False),  # 49.5%
    (100, 5, True),  # 5% of open deals filled: still a sign
    (100, 6, False),  # 6%: the column is known before the outcome often enough
])
def test_the_shares_filled_for_closed_and_open_deals_that_flag_a_column(
        closed_filled: int, open_filled: int, flagged: bool) -> None:
    found = find_leaks(_filled_shares(closed_filled, open_filled), ["note"])
    assert [f.reason.endswith("known only after the outcome") for f in found] == ([True] if flagged else [])


@pytest.mark.parametrize(("open_deals", "flagged"), [(9, False), (10, True)])
def test_the_filled_shares_are_compared_from_10_open_deals_on(open_deals: int, flagged: bool) -> None:
    found = find_leaks(_filled_shares(200, 0, open_deals=open_deals), ["note"])
    assert [f.column for f in found] == (["note"] if flagged else [])
