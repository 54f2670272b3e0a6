"""The training report's gap-list evaluation: cross-fitted by client with as few profile fits as allowed."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from model.profiles import ClientProfiles
from training.gap_evaluation import SERVED, evaluate_profiles, hide_one_out_cases
from training.profiles_fit import fit_profiles
from training.synthetic_crm import SyntheticCRM


def _recording_fits(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """Patch the evaluation's fit_profiles to record which clients each fit saw."""
    seen: list[set[str]] = []

    def recording(deals: pd.DataFrame | None, clients: pd.DataFrame | None, holdings: pd.DataFrame,
                  *args: Any) -> ClientProfiles:
        assert clients is not None
        seen.append(set(holdings["client_id"].astype(str)) | set(clients["client_id"].astype(str)))
        return fit_profiles(deals, clients, holdings, *args)

    monkeypatch.setattr("training.gap_evaluation.fit_profiles", recording)
    return seen


@pytest.mark.parametrize(("max_clients", "fits"), [(100, 1), (400, 2)])
def test_few_fits_never_rank_a_client_with_profiles_that_saw_it(
        small_crm: SyntheticCRM, monkeypatch: pytest.MonkeyPatch, max_clients: int, fits: int) -> None:
    seen = _recording_fits(monkeypatch)
    universe = set(small_crm.clients["client_id"].astype(str)) | set(small_crm.holdings["client_id"].astype(str))
    report = evaluate_profiles(small_crm.deals, small_crm.clients, small_crm.holdings, folds=3,
                               max_clients=max_clients)
    ranked = {c.client_id for c in hide_one_out_cases(small_crm.holdings, 0, max_clients)}
    assert report["evaluated"] and report["methods"][SERVED]["clients"] == len(ranked)
    # As few fits as keep each on at least 2/3 of the clients holding something (718 of 750 here): one when
    # the ranked clients are few.
    holders = set(small_crm.holdings["client_id"].astype(str))
    assert len(seen) == fits
    assert all(len(fit & holders) >= len(holders) * 2 / 3 for fit in seen)
    # Every ranked client is left out of exactly one fit (the one that ranks it), and no other client is.
    left_out = [universe - fit for fit in seen]
    assert set().union(*left_out) == ranked
    assert sum(len(out) for out in left_out) == len(ranked)


def test_when_every_holder_is_ranked_the_fits_are_the_folds(small_crm: SyntheticCRM,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Few holders (holdings from 500 deals' wins, clients table of 750): each fit still keeps 2/3 of them."""
    seen = _recording_fits(monkeypatch)
    deals = small_crm.deals.sort_values("created_at").head(500)
    report = evaluate_profiles(deals, small_crm.clients, None, folds=3)
    assert report["evaluated"] and len(seen) == 3
