"""Training's bulk predictions give what the scorer gives; fits side by side give what fits in turn give."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from model.dataset import Dataset
from model.features import attach_clients, frame_columns
from model.grades import pareto_cutoffs
from training import fit
from training.fit import SliceLogLoss, TrainConfig, TrainingResult, train
from training.profiles_fit import ProfileConfig


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


def test_calibration_margins_kept_from_early_stopping_are_the_boosters() -> None:
    """The slice's margins kept at early stopping's best round are what the published booster predicts,
    and the kept log loss is LightGBM's own binary_logloss of that round."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6_000, 4))
    won = (rng.random(6_000) < 1 / (1 + np.exp(-(x[:, 0] - 0.5 * x[:, 1] * x[:, 2])))).astype(np.float64)
    fit_rows, slice_rows = slice(0, 4_000), slice(4_000, None)
    train_set = lgb.Dataset(x[fit_rows], won[fit_rows], free_raw_data=False)
    valid_set = lgb.Dataset(x[slice_rows], won[slice_rows], reference=train_set)
    slice_loss = SliceLogLoss(won[slice_rows])
    params = {"objective": "binary", "metric": "None", "learning_rate": 0.3, "num_leaves": 31, "verbose": -1,
              "num_threads": 1, "deterministic": True, "force_row_wise": True}
    booster = lgb.train(params, train_set, num_boost_round=500, valid_sets=[valid_set], feval=slice_loss,
                        callbacks=[lgb.early_stopping(10, verbose=False)])
    assert 1 < booster.best_iteration < 490  # stopped early, some rounds after its best one
    raw = booster.predict(x[slice_rows], raw_score=True)
    assert np.allclose(slice_loss.best_margin(), raw, rtol=0, atol=1e-9)
    p = 1 / (1 + np.exp(-raw))
    assert np.isclose(slice_loss.best, log_loss(won[slice_rows], p), rtol=1e-9)
    # The same training with LightGBM's own metric stops at the same round with the same loss.
    own = lgb.train({**params, "metric": "binary_logloss"}, train_set, num_boost_round=500, valid_sets=[valid_set],
                    callbacks=[lgb.early_stopping(10, verbose=False)])
    assert own.best_iteration == booster.best_iteration
    assert np.isclose(own.best_score["valid_0"]["binary_logloss"], slice_loss.best, rtol=1e-9)


def test_a_slice_predicted_with_certainty_gives_finite_margins() -> None:
    """A slice the trees separate perfectly (probabilities 0 and 1) still gives Platt finite margins."""
    slice_loss = SliceLogLoss(np.array([1.0, 0.0, 1.0]))
    slice_loss(np.array([1.0, 0.0, 0.7]), None)
    margins = slice_loss.best_margin()
    assert np.isfinite(margins).all() and margins[0] > 30 and margins[1] < -30
    assert np.isclose(margins[2], np.log(0.7 / 0.3))


def test_fits_side_by_side_give_what_fits_one_after_the_other_give(small_dataset: Dataset) -> None:
    """TrainConfig.parallel_fits changes when the fits run, never what they give."""
    alone = train(small_dataset, TrainConfig(parallel_fits=1))
    together = train(small_dataset, TrainConfig(parallel_fits=3))
    assert alone.model.win_model.booster.model_to_string() == together.model.win_model.booster.model_to_string()
    assert alone.model.calibration == together.model.calibration
    assert alone.report["metrics"] == together.report["metrics"]
    assert alone.report["split"] == together.report["split"]
    assert alone.report["profiles"] == together.report["profiles"]
    assert alone.report["holdout_p_win"] == together.report["holdout_p_win"]
    assert alone.report["calibration_curve"] == together.report["calibration_curve"]
    assert alone.report["grades"] == together.report["grades"]
    assert alone.metadata["grade_cutoffs"] == together.metadata["grade_cutoffs"]
    assert alone.model.value_model is not None and together.model.value_model is not None
    assert alone.model.value_model.booster.model_to_string() == together.model.value_model.booster.model_to_string()
    deals = _sorted_deals(small_dataset)
    columns = frame_columns(deals.iloc[-300:])
    a, b = alone.model.score(columns), together.model.score(columns)
    assert np.array_equal(a.p_win, b.p_win) and np.array_equal(a.expected_value, b.expected_value)


def test_a_failure_beside_the_win_model_reaches_the_caller(small_dataset: Dataset,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("profiles broke")

    monkeypatch.setattr(fit, "fit_profiles", broken)
    with pytest.raises(RuntimeError, match="profiles broke"):
        train(small_dataset, TrainConfig(parallel_fits=2))


def test_a_wrong_profile_setting_fails_before_any_fitting(small_dataset: Dataset) -> None:
    said: list[str] = []
    with pytest.raises(ValueError, match="segment keys"):
        train(small_dataset, TrainConfig(profiles=ProfileConfig(segment_keys=("colour",))), progress=said.append)
    assert not any(message.startswith("fitting") for message in said)


def test_parallel_fits_and_threads_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="parallel_fits must be at least 1"):
        TrainConfig(parallel_fits=0)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        TrainConfig(threads=0)
