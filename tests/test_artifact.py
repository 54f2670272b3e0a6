"""Artifacts: round trip, tamper detection, library version check, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.artifact import ARTIFACT_FORMAT, MODEL_FILE, load_artifact, save_artifact
from model.errors import ArtifactError
from model.features import attach_clients, frame_columns
from training.fit import TrainingResult
from training.synthetic_crm import SyntheticCRM


@pytest.fixture()
def artifact(tmp_path: Path, trained: TrainingResult) -> Path:
    return save_artifact(trained.model, tmp_path / "model", trained.metadata, {"report.json": b"{}"})


def test_round_trip_scores_the_same(artifact: Path, trained: TrainingResult, small_crm: SyntheticCRM) -> None:
    loaded, meta = load_artifact(artifact)
    columns = frame_columns(attach_clients(small_crm.deals.head(100), small_crm.clients))
    np.testing.assert_allclose(loaded.score(columns).p_win, trained.model.score(columns).p_win)
    assert meta["version"] == trained.model.version
    assert set(meta["checksums"]) == {MODEL_FILE, "report.json"}
    for key in ("trained_at", "data", "libraries", "features", "metrics", "grade_cutoffs", "small_data"):
        assert key in meta


def test_a_tampered_file_is_refused(artifact: Path) -> None:
    model_file = artifact / MODEL_FILE
    content = bytearray(model_file.read_bytes())
    content[len(content) // 2] ^= 0xFF
    model_file.write_bytes(bytes(content))
    with pytest.raises(ArtifactError, match="does not match its checksum"):
        load_artifact(artifact)


def test_a_missing_file_is_refused(artifact: Path) -> None:
    (artifact / "report.json").unlink()
    with pytest.raises(ArtifactError, match="report.json is missing"):
        load_artifact(artifact)


def test_another_library_version_is_refused(artifact: Path) -> None:
    meta_path = artifact / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["libraries"]["lightgbm"] = "1.0.0"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="written with lightgbm 1.0.0"):
        load_artifact(artifact)


def test_no_artifact_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="metadata.json is missing"):
        load_artifact(tmp_path)


def test_a_failed_write_leaves_the_old_artifact_whole(artifact: Path, trained: TrainingResult) -> None:
    before = {p.name: p.read_bytes() for p in artifact.iterdir()}
    not_bytes: dict[str, bytes] = {"report.json": "text, not bytes"}  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        save_artifact(trained.model, artifact, trained.metadata, not_bytes)
    after = {p.name: p.read_bytes() for p in artifact.iterdir()}
    assert after == before
    assert [p.name for p in artifact.parent.iterdir() if p.name.startswith(".")] == []


def test_an_artifact_of_another_format_is_refused(artifact: Path) -> None:
    # Format 2 pickled feature specs without level pairs; this code reads their win rates too.
    meta_path = artifact / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["format"] = 2
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=f"has format 2, this dealscore reads format {ARTIFACT_FORMAT}; retrain"):
        load_artifact(artifact)
