"""The live quality report's figures from a version's past scores, by hand (no database needed)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from service.feedback.quality import _Said, judgement_quality, outcome_quality


def test_an_outcome_is_judged_by_the_versions_latest_score_before_it_closed() -> None:
    said = {"d1": [_Said(datetime(2025, 1, 1), 1, 0.9, 900.0, "A"), _Said(datetime(2025, 1, 20), 2, 0.2, 200.0, "C"),
                   _Said(datetime(2025, 2, 5), 4, 0.95, 950.0, "A")],  # after the close: not what was said then
            "d2": [_Said(datetime(2025, 1, 2), 3, 0.3, 300.0, "C")]}
    rows = [("d1", "lost", None, date(2025, 2, 1)), ("d2", "won", 500.0, date(2025, 2, 1))]
    quality = outcome_quality(rows, said)
    assert quality["auc"] == 1.0  # d1 at 0.2 (its latest before closing), below the won d2 at 0.3
    assert quality["brier"] == pytest.approx((0.2**2 + 0.7**2) / 2)
    assert [(g["grade"], g["deals"]) for g in quality["grades"]] == [("C", 2)]


def test_judgements_count_a_tie_as_half_and_list_the_strongest_disagreements_first() -> None:
    at = datetime(2025, 1, 1)
    said = {deal: [_Said(at, i, 0.5, value, "B")]
            for i, (deal, value) in enumerate({"a": 100.0, "b": 100.0, "c": 10.0, "d": 500.0, "e": 20.0}.items())}
    rows = [{"above_deal_id": above, "below_deal_id": below, "manager": "m", "note": None,
             "updated_at": datetime(2025, 1, 2)} for above, below in (("a", "b"), ("c", "e"), ("c", "d"))]
    quality = judgement_quality(rows, said)
    # a = b: a tie, half agreed; c below e and below d: both disagreements, d's by the wider margin.
    assert (quality["agreed"], quality["agreement"]) == (0.5, pytest.approx(0.5 / 3))
    assert [(d["above_deal_id"], d["below_deal_id"], d["margin"]) for d in quality["disagreements"]] == [
        ("c", "d", 490.0), ("c", "e", 10.0)]
