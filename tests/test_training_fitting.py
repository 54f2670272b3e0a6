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


def test_the_tree_shape_is_chosen_on_the_calibration_slice(trained: TrainingResult) -> None:
    """Each configured tree shape is fitted on the evaluation split; the lowest calibration-slice log loss
    wins, and the published model is grown with that shape (the holdout plays no part in the choice)."""
    split = trained.report["split"]
    tried = split["tree_shapes_tried"]
    assert len(tried) == 2
    best = min(tried, key=lambda t: t["calibration_slice_logloss"])
    assert split["tree_shape"] == {k: best[k] for k in ("leaves", "min_deals_per_leaf", "learning_rate")}
    published = trained.model.win_model.booster.dump_model()["tree_info"]
    assert max(tree["num_leaves"] for tree in published) <= best["leaves"]
    assert trained.metadata["training"]["tree_shape"] == split["tree_shape"]
