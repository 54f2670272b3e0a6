"""Training's bulk predictions give what the scorer gives."""

from __future__ import annotations

import numpy as np
import pandas as pd

from model.dataset import Dataset
from model.features import attach_clients, frame_columns
from model.grades import pareto_cutoffs
from training.fit import TrainingResult


def _sorted_deals(dataset: Dataset) -> pd.DataFrame:
    deals = attach_clients(dataset.deals, dataset.clients)
    return deals.sort_values(["created_at", "deal_id"], kind="stable").reset_index(drop=True)


def test_grade_cutoffs_are_the_scorers(small_dataset: Dataset, trained: TrainingResult) -> None:
    """The cut-offs come from the latest deals (holdout on) scored by the published model's scorer."""
    deals = _sorted_deals(small_dataset)
    closed = np.flatnonzero(deals["status"].isin(["won", "lost"]).to_numpy())
    first = int(closed[-int(trained.report["split"]["holdout_deals"])])
    scored = trained.model.score(frame_columns(deals.iloc[first:]), n_reasons=0)
    a_min, b_min = pareto_cutoffs(scored.expected_value, tuple(trained.metadata["grade_cutoffs"]["shares"]))
    cutoffs = trained.metadata["grade_cutoffs"]
    assert np.isclose(a_min, cutoffs["a_min_expected_value"], rtol=1e-9)
    assert np.isclose(b_min, cutoffs["b_min_expected_value"], rtol=1e-9)
