"""Artifacts: round trip, tamper detection (metadata.json included), library version check, atomic writes
that replace only an earlier artifact, strict JSON metadata."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.artifact import (
    ARTIFACT_FORMAT,
    ARTIFACT_KEY_ENV,
    HISTORY_AGE_FORMAT,
    METADATA_CHECKSUM,
    MODEL_FILE,
    MONTHLESS_FORMAT,
    SIGNATURE,
    SPREAD_FORMAT,
    load_artifact,
    metadata_checksum,
    save_artifact,
    sign_artifact,
    verify_artifact,
)
from model.errors import ArtifactError
from model.features import attach_clients, frame_columns
from model.registry import Registry
from training.fit import TrainingResult
from training.synthetic_crm import SyntheticCRM


@pytest.fixture()
def artifact(tmp_path: Path, trained: TrainingResult) -> Path:
    return save_artifact(trained.model, tmp_path / "model", trained.metadata, {"report.json": b"{}"})


def rewrite_metadata(artifact: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Change metadata.json and seal it again, as an artifact written that way would be."""
    meta_path = artifact / "metadata.json"
    meta = json.loads(meta_path.read_text())
    change(meta)
    meta[METADATA_CHECKSUM] = metadata_checksum(meta)
    meta_path.write_text(json.dumps(meta))


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root (hidden ones too) with its bytes; None for a directory."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def refuse_nan(token: str) -> None:
    raise ValueError(f"{token} is not JSON")


def test_round_trip_scores_the_same(artifact: Path, trained: TrainingResult, small_crm: SyntheticCRM) -> None:
    loaded, meta = load_artifact(artifact)
    columns = frame_columns(attach_clients(small_crm.deals.head(100), small_crm.clients))
    np.testing.assert_allclose(loaded.score(columns).p_win, trained.model.score(columns).p_win)
    assert meta["version"] == trained.model.version
    assert set(meta["checksums"]) == {MODEL_FILE, "report.json"}
    for key in ("trained_at", "data", "libraries", "features", "metrics", "grade_cutoffs", "small_data"):
        assert key in meta


def test_the_model_file_does_not_depend_on_what_was_scored_before_saving(
        tmp_path: Path, trained: TrainingResult, small_crm: SyntheticCRM) -> None:
    model = dataclasses.replace(trained.model)  # a fresh copy: nothing made lazily yet
    before = save_artifact(model, tmp_path / "before", trained.metadata)
    model.score(frame_columns(attach_clients(small_crm.deals.head(5), small_crm.clients)), n_reasons=5)
    after = save_artifact(model, tmp_path / "after", trained.metadata)
    assert (before / MODEL_FILE).read_bytes() == (after / MODEL_FILE).read_bytes()


def test_a_tampered_file_is_refused(artifact: Path) -> None:
    model_file = artifact / MODEL_FILE
    content = bytearray(model_file.read_bytes())
    content[len(content) // 2] ^= 0xFF
    model_file.write_bytes(bytes(content))
    with pytest.raises(ArtifactError, match="does not match its checksum"):
        load_artifact(artifact)


def test_a_file_this_user_cannot_read_is_refused_as_such(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model.joblib without read permission was an "unexpected failure" (exit 1, the status that pages someone),
    not a refusal naming the file (an input review). Raised as the open would raise it: the tests run as root,
    whom file modes do not stop."""
    real = Path.read_bytes

    def unreadable(path: Path) -> bytes:
        if path.name == MODEL_FILE:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    with pytest.raises(ArtifactError, match=f"file {MODEL_FILE} cannot be read \\(Permission denied\\)"):
        load_artifact(artifact)


def test_a_missing_file_is_refused(artifact: Path) -> None:
    (artifact / "report.json").unlink()
    with pytest.raises(ArtifactError, match="report.json is missing"):
        load_artifact(artifact)


def test_another_library_version_is_refused(artifact: Path) -> None:
    rewrite_metadata(artifact, lambda meta: meta["libraries"].update(lightgbm="1.0.0"))
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
    rewrite_metadata(artifact, lambda meta: meta.update(format=2))
    with pytest.raises(ArtifactError, match="has format 2, this dealscore reads formats 3 to 6; retrain"):
        load_artifact(artifact)


def test_a_model_without_the_month_feature_is_written_as_format_4_and_read_back(
        small_crm: SyntheticCRM, tmp_path: Path) -> None:
    """dealscore versions that read format 3 alone refuse it (they built a month column it lacks and failed on the
    first deal, IndexError); every other artifact without a value spread stays format 3. With a spread it is
    format 5, which only versions that read format 4 too read."""
    import dataclasses

    from model.dataset import dataset_from_frames
    from model.features import FeatureConfig
    from training.fit import TrainConfig, train

    result = train(dataset_from_frames(small_crm.deals, small_crm.clients, None, for_training=True),
                   TrainConfig(threads=1, features=FeatureConfig(exclude=("month",), history_lag_days=0)))
    assert result.model.value_model is not None and result.model.value_model.spread != 1.0
    folder = save_artifact(result.model, tmp_path / "with_spread", result.metadata)
    assert json.loads((folder / "metadata.json").read_text())["format"] == 5
    result.model.value_model = dataclasses.replace(result.model.value_model, spread=1.0)
    folder = save_artifact(result.model, tmp_path / "model", result.metadata)
    assert json.loads((folder / "metadata.json").read_text())["format"] == 4
    model, _ = load_artifact(folder)
    deals = attach_clients(small_crm.deals.tail(20), small_crm.clients)
    np.testing.assert_array_equal(model.score(frame_columns(deals)).p_win,
                                  result.model.score(frame_columns(deals)).p_win)


def test_a_model_whose_value_model_has_a_spread_is_written_as_format_5_and_read_back(
        trained_without_age: TrainingResult, tmp_path: Path, small_crm: SyntheticCRM) -> None:
    """Versions reading formats 3 and 4 would ignore the spread and value deals sent without an amount at their
    typical amount: they must refuse such a model. Read back, it values those deals as before saving."""
    trained = trained_without_age
    assert trained.model.value_model is not None and trained.model.value_model.spread != 1.0
    folder = save_artifact(trained.model, tmp_path / "model", trained.metadata)
    assert json.loads((folder / "metadata.json").read_text())["format"] == 5
    model, _ = load_artifact(folder)
    deals = attach_clients(small_crm.deals.tail(20).drop(columns=["amount"]), small_crm.clients)
    np.testing.assert_array_equal(model.score(frame_columns(deals)).value,
                                  trained.model.score(frame_columns(deals)).value)


def test_a_model_with_the_month_feature_and_no_spread_stays_format_3(trained_without_age: TrainingResult,
                                                                    tmp_path: Path) -> None:
    """Every version since format 3 reads it."""
    trained = trained_without_age
    import copy
    import dataclasses

    assert trained.model.value_model is not None
    model = copy.copy(trained.model)
    model.value_model = dataclasses.replace(trained.model.value_model, spread=1.0)
    folder = save_artifact(model, tmp_path / "model", trained.metadata)
    assert json.loads((folder / "metadata.json").read_text())["format"] == ARTIFACT_FORMAT == 3
    model.value_model = None
    folder = save_artifact(model, tmp_path / "no_value_model", trained.metadata)
    assert json.loads((folder / "metadata.json").read_text())["format"] == 3


def test_a_model_reading_the_historys_age_is_written_as_format_6_and_read_back(
        trained: TrainingResult, tmp_path: Path, small_crm: SyntheticCRM) -> None:
    """Versions reading formats 3 to 5 loaded it and failed on its first deal (the features they build lack the
    age): they refuse format 6 by name. Read back, it scores as before saving."""
    assert trained.model.spec.has_history_age
    folder = save_artifact(trained.model, tmp_path / "model", trained.metadata)
    assert json.loads((folder / "metadata.json").read_text())["format"] == HISTORY_AGE_FORMAT == 6
    model, _ = load_artifact(folder)
    deals = attach_clients(small_crm.deals.tail(50), small_crm.clients)
    np.testing.assert_array_equal(model.score(frame_columns(deals)).p_win,
                                  trained.model.score(frame_columns(deals)).p_win)


# -- metadata.json is covered by a checksum of its own, and is strict JSON ----------------------------


@pytest.mark.parametrize(("key", "value"), [("grade_cutoffs", {"a_min_expected_value": 1.0}),
                                            ("trained_at", "2020-01-01T00:00:00")])
def test_an_edited_metadata_json_is_refused(artifact: Path, key: str, value: object) -> None:
    meta_path = artifact / "metadata.json"
    meta = json.loads(meta_path.read_text())
    if isinstance(value, dict):
        meta[key].update(value)
    else:
        meta[key] = value
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    with pytest.raises(ArtifactError, match="file metadata.json does not match its checksum"):
        load_artifact(artifact)


def test_a_later_model_relabelled_format_3_without_its_checksum_is_refused(tmp_path: Path,
                                                                          trained_without_age: TrainingResult) -> None:
    """Relabelled format 3, a model only format 5 reads passed the check meant for artifacts older than the key."""
    trained = trained_without_age
    model = dataclasses.replace(trained.model)
    assert model.value_model is not None
    model.value_model = dataclasses.replace(model.value_model, spread=1.25)
    artifact = save_artifact(model, tmp_path / "model", trained.metadata)
    meta_path = artifact / "metadata.json"
    meta = json.loads(meta_path.read_text())
    assert meta["format"] == SPREAD_FORMAT
    del meta[METADATA_CHECKSUM]
    meta["format"] = ARTIFACT_FORMAT
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="file metadata.json does not match its checksum"):
        load_artifact(artifact)
    # The registry commands verify with verify_artifact: it said "verified", `models rollback` made such a
    # version live, and the service then refused to load it (an ops review). Now every check refuses alike.
    with pytest.raises(ArtifactError, match="file metadata.json does not match its checksum"):
        verify_artifact(artifact)
    with pytest.raises(ArtifactError, match="file metadata.json does not match its checksum"):
        Registry(tmp_path / "registry").add_artifact(artifact)


def test_metadata_json_reformatted_but_unchanged_still_loads(artifact: Path) -> None:
    # The checksum covers the content, not the bytes: the same metadata written otherwise is still it.
    meta_path = artifact / "metadata.json"
    meta_path.write_text(json.dumps(json.loads(meta_path.read_text()), separators=(",", ":")))
    load_artifact(artifact)


def test_an_artifact_written_before_the_metadata_checksum_still_loads(tmp_path: Path,
                                                                      trained_without_age: TrainingResult) -> None:
    trained = trained_without_age
    # Older dealscore wrote no metadata checksum and a one-class holdout's AUC as the bare token NaN; it wrote
    # format 3 alone then, of models format 3 reads (no value-model spread, the month feature on).
    model = dataclasses.replace(trained.model)
    if model.value_model is not None:
        model.value_model = dataclasses.replace(model.value_model, spread=1.0)
    artifact = save_artifact(model, tmp_path / "model", trained.metadata)
    meta_path = artifact / "metadata.json"
    meta = json.loads(meta_path.read_text())
    del meta[METADATA_CHECKSUM]
    meta["metrics"]["model"]["auc"] = float("nan")
    meta["format"] = ARTIFACT_FORMAT
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    _, loaded = load_artifact(artifact)
    assert METADATA_CHECKSUM not in loaded and loaded["metrics"]["model"]["auc"] is None
    assert verify_artifact(artifact) == loaded


@pytest.mark.parametrize("written", [MONTHLESS_FORMAT, SPREAD_FORMAT, HISTORY_AGE_FORMAT])
def test_a_later_format_without_its_metadata_checksum_is_refused(artifact: Path, written: int) -> None:
    """Formats 4 and 5 were always written with the metadata's checksum: deleting it switched the check off for
    any edit of metadata.json, and the edited artifact loaded (a CLI review)."""
    meta_path = artifact / "metadata.json"
    meta = json.loads(meta_path.read_text())
    del meta[METADATA_CHECKSUM]
    meta["format"] = written
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="file metadata.json does not match its checksum"):
        load_artifact(artifact)


def test_nan_metrics_are_written_as_null_in_strict_json(tmp_path: Path, trained: TrainingResult) -> None:
    metrics = {"model": {"auc": float("nan"), "top_decile_lift": float("inf"), "brier": 0.2}}
    target = save_artifact(trained.model, tmp_path / "model", {**trained.metadata, "metrics": metrics})
    written = json.loads((target / "metadata.json").read_text(), parse_constant=refuse_nan)
    assert written["metrics"]["model"] == {"auc": None, "top_decile_lift": None, "brier": 0.2}
    _, loaded = load_artifact(target)
    assert loaded["metrics"]["model"]["auc"] is None


# -- where an artifact may be written: new, empty or an earlier artifact; nothing else is touched ------


def test_a_directory_with_other_files_is_refused_and_left_untouched(tmp_path: Path,
                                                                     trained: TrainingResult) -> None:
    project = tmp_path / "proj"
    (project / "sub").mkdir(parents=True)
    (project / "notes.txt").write_text("data")
    (project / "sub" / "more.txt").write_text("more")
    before = snapshot(tmp_path)
    with pytest.raises(ArtifactError, match=re.escape(str(project)) + r".*holds notes.txt, sub/ and no model "
                                                                       "artifact"):
        save_artifact(trained.model, project, trained.metadata)
    assert snapshot(tmp_path) == before


def test_a_directory_with_someone_elses_metadata_json_is_refused(tmp_path: Path, trained: TrainingResult) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "metadata.json").write_text('{"name": "my project"}')
    before = snapshot(tmp_path)
    with pytest.raises(ArtifactError, match="holds metadata.json and no model artifact"):
        save_artifact(trained.model, project, trained.metadata)
    assert snapshot(tmp_path) == before


def test_an_artifact_with_other_files_beside_it_is_refused(artifact: Path, trained: TrainingResult) -> None:
    (artifact / "notes.txt").write_text("mine")
    before = snapshot(artifact.parent)
    with pytest.raises(ArtifactError, match="holds a model artifact and also notes.txt; writing the model there "
                                            "would delete them, so nothing was changed"):
        save_artifact(trained.model, artifact, trained.metadata)
    assert snapshot(artifact.parent) == before


def test_an_existing_file_is_refused_and_left_untouched(tmp_path: Path, trained: TrainingResult) -> None:
    target = tmp_path / "model"
    target.write_text("not a directory")
    before = snapshot(tmp_path)
    with pytest.raises(ArtifactError, match=re.escape(str(target)) + ".*got an existing file; nothing was changed"):
        save_artifact(trained.model, target, trained.metadata)
    assert snapshot(tmp_path) == before


def test_an_empty_directory_takes_the_artifact(tmp_path: Path, trained: TrainingResult) -> None:
    target = tmp_path / "model"
    target.mkdir()
    save_artifact(trained.model, target, trained.metadata)
    load_artifact(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_earlier_artifact_is_replaced_whole(artifact: Path, trained: TrainingResult) -> None:
    # Retraining into the same --out is normal: the old artifact's files go, the new one's come.
    save_artifact(trained.model, artifact, trained.metadata, {"report.html": b"<html></html>"})
    _, meta = load_artifact(artifact)
    assert set(meta["checksums"]) == {MODEL_FILE, "report.html"}
    assert sorted(p.name for p in artifact.iterdir()) == ["metadata.json", MODEL_FILE, "report.html"]
    assert [p.name for p in artifact.parent.iterdir()] == [artifact.name]


def test_a_leftover_of_a_crashed_replacement_does_not_block_the_next(artifact: Path, trained: TrainingResult) -> None:
    # A run killed between moving the old artifact aside and deleting it leaves this folder; a later run
    # with the same process id (containers restart as pid 1) used to fail with "Directory not empty".
    leftover = artifact.with_name(f".{artifact.name}.old-{os.getpid()}")
    leftover.mkdir()
    (leftover / MODEL_FILE).write_bytes(b"the crashed run's old model")
    save_artifact(trained.model, artifact, trained.metadata)
    load_artifact(artifact)
    assert (leftover / MODEL_FILE).read_bytes() == b"the crashed run's old model"  # not ours to delete


# -- signatures (DEALSCORE_ARTIFACT_KEY) --------------------------------------------------------------------------

KEY = "k" * 40


def _reseal(artifact: Path) -> None:
    """What someone who may write the folder but lacks the key can do: replace the model and recompute every
    checksum, metadata.json's own included."""
    import hashlib

    (artifact / MODEL_FILE).write_bytes((artifact / MODEL_FILE).read_bytes() + b"\0")

    def new_checksum(meta: dict[str, Any]) -> None:
        meta["checksums"][MODEL_FILE] = hashlib.sha256((artifact / MODEL_FILE).read_bytes()).hexdigest()
    rewrite_metadata(artifact, new_checksum)


def _never_unpickled(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the pickle was read before the signature was checked")
    monkeypatch.setattr("model.artifact.joblib.load", refuse)


def test_with_a_key_artifacts_are_signed_and_a_resealed_one_is_refused_unread(
        tmp_path: Path, trained: TrainingResult, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ARTIFACT_KEY_ENV, KEY)
    signed = save_artifact(trained.model, tmp_path / "model", trained.metadata)
    meta = json.loads((signed / "metadata.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{64}", meta[SIGNATURE])
    load_artifact(signed)
    _reseal(signed)
    # Without the key the checksums pass: the reseal is what they cannot catch.
    monkeypatch.delenv(ARTIFACT_KEY_ENV)
    verify_artifact(signed)
    monkeypatch.setenv(ARTIFACT_KEY_ENV, KEY)
    _never_unpickled(monkeypatch)
    with pytest.raises(ArtifactError, match="signature does not match DEALSCORE_ARTIFACT_KEY"):
        load_artifact(signed)
    with pytest.raises(ArtifactError, match="signature does not match"):
        verify_artifact(signed)


def test_with_a_key_an_unsigned_artifact_is_refused_unread_until_signed(
        artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ARTIFACT_KEY_ENV, KEY)
    with monkeypatch.context() as patched:
        _never_unpickled(patched)
        with pytest.raises(ArtifactError, match="is not signed, and DEALSCORE_ARTIFACT_KEY is set"):
            load_artifact(artifact)
    checksum = json.loads((artifact / "metadata.json").read_text())[METADATA_CHECKSUM]
    assert sign_artifact(artifact) is True
    assert sign_artifact(artifact) is False  # already signed with this key
    meta = json.loads((artifact / "metadata.json").read_text())
    assert meta[METADATA_CHECKSUM] == checksum  # signing changes no checksum
    load_artifact(artifact)
    monkeypatch.setenv(ARTIFACT_KEY_ENV, KEY + "another")
    with pytest.raises(ArtifactError, match="signature does not match"):
        load_artifact(artifact)
    monkeypatch.delenv(ARTIFACT_KEY_ENV)
    load_artifact(artifact)  # without a key, a signature is not asked for
    with pytest.raises(ArtifactError, match="is not set: there is no key to sign with"):
        sign_artifact(artifact)


class _RunsOnLoad:
    """A pickle whose loading touches `marker`: the code an unsigned model.joblib could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_a_model_swapped_after_its_checksum_was_verified_is_never_unpickled(
        tmp_path: Path, trained: TrainingResult, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever may write the folder but lacks the key swaps model.joblib between the check and the load (a loop of
    renames does it in a few loads out of 30): what is unpickled must be what was checked."""
    import joblib

    import model.artifact as artifact_module

    monkeypatch.setenv(ARTIFACT_KEY_ENV, KEY)
    signed = save_artifact(trained.model, tmp_path / "model", trained.metadata)
    marker = tmp_path / "ran"
    checked = artifact_module._verified_metadata

    def checked_then_swapped(directory: Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        meta = checked(directory, *args, **kwargs)
        joblib.dump(_RunsOnLoad(marker), directory / MODEL_FILE)
        return meta

    monkeypatch.setattr(artifact_module, "_verified_metadata", checked_then_swapped)
    with pytest.raises(ArtifactError) as refused:
        load_artifact(signed)
    assert not marker.exists()  # the swapped-in pickle's code never ran
    assert "file model.joblib does not match its checksum" in refused.value.message


def test_a_key_too_short_to_be_secret_is_refused_before_anything_is_written(
        tmp_path: Path, trained: TrainingResult, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ARTIFACT_KEY_ENV, "k" * 31)
    with pytest.raises(ArtifactError, match="at least 32 characters"):
        save_artifact(trained.model, tmp_path / "model", trained.metadata)
    assert not (tmp_path / "model").exists()
    monkeypatch.setenv(ARTIFACT_KEY_ENV, "   ")  # blank: unset, as the service's settings read it
    load_artifact(save_artifact(trained.model, tmp_path / "model", trained.metadata))


def test_a_signed_registry_refuses_an_unsigned_version_and_signs_those_it_is_told_to_trust(
        tmp_path: Path, trained: TrainingResult, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from dealscore.cli import main

    registry = Registry(tmp_path / "registry")
    version = registry.add(trained.model, trained.metadata, action="publish")
    monkeypatch.setenv(ARTIFACT_KEY_ENV, KEY)
    with pytest.raises(ArtifactError, match="is not signed"):
        load_artifact(registry.path_of(version))
    assert main(["models", "sign", "--registry", str(registry.root)]) == 0
    assert f"{version}: signed" in capsys.readouterr().out
    load_artifact(registry.path_of(version))
    assert main(["models", "sign", "--registry", str(registry.root), "nope"]) == 2
    assert "no version nope" in capsys.readouterr().err


def test_a_registry_given_as_a_model_says_where_its_models_are(tmp_path: Path, trained: TrainingResult) -> None:
    """`dealscore score --model /srv/dealscore/registry` (the folder ops know) said only that metadata.json is
    missing: scoring, gaps and a service with --model take one of its versions' folders."""
    registry = Registry(tmp_path / "registry")
    registry.add(trained.model, trained.metadata, action="publish")
    with pytest.raises(ArtifactError, match=r"metadata.json is missing: it is a model registry") as raised:
        load_artifact(registry.root)
    assert "versions/<version>" in str(raised.value) and "models show live" in str(raised.value)


@pytest.mark.parametrize("holds", [["manifest.json"], ["versions/"]])
def test_a_folder_with_only_part_of_a_registrys_layout_is_not_called_one(tmp_path: Path, holds: list[str]) -> None:
    """The hint needs both a registry's manifest.json and its versions folder (a mutation audit: either alone
    survived every test): a model folder half copied, or any folder with a versions/, is no registry."""
    for name in holds:
        if name.endswith("/"):
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_text("{}")
    with pytest.raises(ArtifactError, match=r"metadata.json is missing$"):
        load_artifact(tmp_path)
