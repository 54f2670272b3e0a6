"""The serving benchmark's bare reference answers what the service answers: a reference that did less work
(no not_sent or unseen lists, gap lists still holding the deal's own product) would flatter it in the ratios."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_fixtures import (  # noqa: F401 (fixtures, registered by name)
    fixture_service_crm,
    fixture_service_dataset,
    fixture_service_profiled_model,
    fixture_service_training,
    make_client,
)

from bench.serving_bench import bench_deals
from model.artifact import load_artifact, save_artifact
from model.scorer import ScoringModel
from service import Settings, create_app
from training.fit import TrainingResult
from training.synthetic_crm import SyntheticCRM


def test_the_bare_reference_answers_the_service_scores(
        service_profiled_model: ScoringModel, service_training: TrainingResult, service_crm: SyntheticCRM,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.bare_server import create_bare_app

    directory = save_artifact(service_profiled_model, tmp_path / "model", service_training.metadata)
    monkeypatch.setenv("DEALSCORE_MODEL_DIR", str(directory))
    model, metadata = load_artifact(directory)
    deals = bench_deals(60, service_crm)
    with make_client(create_bare_app()) as bare, make_client(create_app(Settings(), model=model,
                                                                        metadata=metadata)) as service:
        for body in ({"deals": deals[:1]}, {"deals": deals}):
            expected = service.post("/v1/score", json=body).json()["scores"]
            answered = bare.post("/v1/score", json=body).json()["scores"]
            assert answered == expected
    # Gap lists with content (the 60 deals offer products their clients lack too): the case compared.
    assert any(score["gaps"] for score in expected)
