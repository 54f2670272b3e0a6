"""LightGBM's single-row fast path gives the leaves `predict(pred_leaf=True)` gives, in every thread."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import lightgbm as lgb
import numpy as np
import pytest

from model import leaf_lookup
from model.features import attach_clients, build_features, frame_columns
from model.leaf_lookup import SingleRowLeaves
from model.win_models import TreeWinModel
from training.fit import TrainingResult
from training.synthetic_crm import SyntheticCRM


@pytest.fixture(scope="module")
def features(trained: TrainingResult, small_crm: SyntheticCRM) -> np.ndarray:
    model = trained.model
    columns = model.with_known_clients(frame_columns(attach_clients(small_crm.deals.tail(400), small_crm.clients)))
    out = build_features(model.spec, model.history, columns)
    out[::7, ::3] = np.nan  # missing values take each split's default direction: cover them too
    return out


def _booster(trained: TrainingResult) -> lgb.Booster:
    win_model = trained.model.win_model
    assert isinstance(win_model, TreeWinModel)
    return win_model.booster


def test_the_fast_path_is_available_with_this_lightgbm() -> None:
    # If a LightGBM upgrade moves the C library handle, the service silently falls back to the slow path:
    # this test makes that visible instead.
    assert leaf_lookup._library() is not None


def test_single_rows_get_the_leaves_predict_gives(trained: TrainingResult, features: np.ndarray) -> None:
    booster = _booster(trained)
    fast = SingleRowLeaves(booster)
    expected = booster.predict(features, pred_leaf=True, num_threads=1)
    got = np.vstack([fast(features[i:i + 1]) for i in range(features.shape[0])])
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(features).any(axis=1).sum() > 50


def test_each_thread_gets_its_own_predictor_and_the_same_answers(trained: TrainingResult,
                                                                 features: np.ndarray) -> None:
    booster = _booster(trained)
    fast = SingleRowLeaves(booster)
    expected = booster.predict(features, pred_leaf=True, num_threads=1)

    def rows(start: int) -> np.ndarray:
        return np.vstack([fast(features[i:i + 1]) for i in range(start, features.shape[0], 4)])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(rows, range(4)))
    for start, got in enumerate(results):
        np.testing.assert_array_equal(got, expected[start::4])


def _early_stopped() -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2000, 4))
    y = (x[:, 0] + x[:, 1] + rng.normal(scale=1.5, size=2000) > 0).astype(float)
    train, valid = lgb.Dataset(x[:1500], y[:1500]), lgb.Dataset(x[1500:], y[1500:])
    # keep_training_booster: the booster keeps the rounds after its best one (lgb.train would cut them).
    booster = lgb.train({"objective": "binary", "learning_rate": 0.3, "verbose": -1}, train, num_boost_round=200,
                        valid_sets=[valid], callbacks=[lgb.early_stopping(5, verbose=False)],
                        keep_training_booster=True)
    assert 2 < booster.best_iteration < booster.num_trees()
    return booster, x[1500:1520]


def test_an_early_stopped_booster_uses_its_best_round_as_predict_does() -> None:
    booster, rows = _early_stopped()
    got = np.vstack([SingleRowLeaves(booster)(rows[i:i + 1]) for i in range(rows.shape[0])])
    np.testing.assert_array_equal(got, booster.predict(rows, pred_leaf=True))


def test_a_predict_with_another_round_count_does_not_mislead_the_fast_path() -> None:
    # Such a predict changes how many leaves LightGBM writes for the set-up predictor too: more than it
    # was set up for (all trees), or fewer (stale indices would remain). Either is caught and `predict` used.
    booster, rows = _early_stopped()
    expected = booster.predict(rows, pred_leaf=True)
    fast = SingleRowLeaves(booster)
    fast(rows[:1])
    for k, other in enumerate((-1, 2, -1)):
        booster.predict(rows[:1], num_iteration=other)
        np.testing.assert_array_equal(fast(rows[k + 1:k + 2]), expected[k + 1:k + 2])


def test_a_row_of_the_wrong_width_is_refused(trained: TrainingResult, features: np.ndarray) -> None:
    with pytest.raises(ValueError, match="features"):
        SingleRowLeaves(_booster(trained))(features[:1, :-1])


def test_the_model_scores_the_same_with_and_without_the_fast_path(trained: TrainingResult, features: np.ndarray,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    win_model = trained.model.win_model
    blocks = [features[i:i + n] for i, n in enumerate((1, 2, 5, 8, 9, 20))]  # both sides of the row limit
    fast = [win_model.margin_and_contributions(block) for block in blocks]
    # An unpickled model (as the service loads it) without the library handle: the `predict` path.
    monkeypatch.setattr(leaf_lookup, "_library", lambda: None)
    slow_model = pickle.loads(pickle.dumps(win_model))
    assert not slow_model._single_row.available
    for block, (fast_margin, fast_contributions) in zip(blocks, fast, strict=True):
        margin, contributions = slow_model.margin_and_contributions(block)
        np.testing.assert_array_equal(margin, fast_margin)
        np.testing.assert_array_equal(contributions, fast_contributions)


def test_the_value_model_predicts_a_few_deals_as_predict_does(trained: TrainingResult, features: np.ndarray) -> None:
    value_model = trained.model.value_model
    assert value_model is not None
    for n in (1, 3, 8, 9):  # both sides of the row limit
        rows = features[:n]
        expected = value_model.booster.predict(rows[:, value_model.feature_index], num_threads=1)
        np.testing.assert_allclose(value_model.log_amount(rows), expected, rtol=1e-12, atol=1e-12)
    # The quick reader is built on first use and not pickled: a saved model holds the booster only.
    assert "_trees" in value_model.__dict__
    restored = pickle.loads(pickle.dumps(value_model))
    assert "_trees" not in restored.__dict__ and restored.spread == value_model.spread
    np.testing.assert_array_equal(restored.log_amount(features[:1]), value_model.log_amount(features[:1]))
