"""Shared fixtures: a small synthetic CRM and a model trained on it once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from model.dataset import Dataset, dataset_from_frames
from training.fit import TrainingResult, train
from training.synthetic_crm import SyntheticCRM, generate

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def small_crm() -> SyntheticCRM:
    return generate(seed=11, n_deals=6_000)


@pytest.fixture(scope="session")
def small_dataset(small_crm: SyntheticCRM) -> Dataset:
    return dataset_from_frames(small_crm.deals, small_crm.clients, small_crm.holdings, for_training=True)


@pytest.fixture(scope="session")
def trained(small_dataset: Dataset) -> TrainingResult:
    return train(small_dataset)


@pytest.fixture(scope="session")
def trained_without_age(small_dataset: Dataset) -> TrainingResult:
    """As `trained`, without the client history's age (FeatureConfig.history_lag_days=0): models as written before
    it (artifact formats 3 to 5)."""
    from model.features import FeatureConfig
    from training.fit import TrainConfig

    return train(small_dataset, TrainConfig(features=FeatureConfig(history_lag_days=0)))


@pytest.fixture()
def shared_data() -> Iterator[Path]:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public data sets not found at {SHARED_DATA}")
    yield SHARED_DATA
