"""The model registry: publish, rollback, prune, atomic commits (failures and a killed writer), the lock,
and the service-side watcher that refuses a tampered or incompatible version while the old one serves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from registry_helpers import add, as_version, fresh_copy, tamper, two_versions

from model.artifact import METADATA_CHECKSUM, MODEL_FILE, metadata_checksum, save_artifact
from model.errors import ArtifactError, DealscoreError, NotFound, NotReady
from model.features import attach_clients, frame_columns
from model.registry import LiveModelWatcher, Registry, RegistryLocked, live_stack, warm_up
from model.scorer import ScoringModel
from training.fit import TrainConfig, TrainingResult, train
from training.synthetic_crm import SyntheticCRM, generate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_crm() -> SyntheticCRM:
    return generate(seed=3, n_deals=1_500)


@pytest.fixture(scope="session")
def tiny(tiny_crm: SyntheticCRM) -> TrainingResult:
    from model.dataset import dataset_from_frames

    dataset = dataset_from_frames(tiny_crm.deals, tiny_crm.clients, tiny_crm.holdings, for_training=True)
    return train(dataset, TrainConfig(threads=1))  # one thread: OpenMP threads sharing busy cores crawl


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under the registry (the lock file aside) with its bytes: the whole on-disk state."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="session")
def base_registry(tmp_path_factory: pytest.TempPathFactory, tiny: TrainingResult) -> Path:
    return two_versions(tmp_path_factory.mktemp("base") / "registry", tiny)


@pytest.fixture()
def registry(tmp_path: Path, base_registry: Path) -> Registry:
    """A fresh copy of a registry with v1 live (first model) and v2 stored."""
    return fresh_copy(base_registry, tmp_path)


def test_an_empty_registry_has_nothing_live(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "none")
    assert (reg.versions(), reg.live_version(), reg.live_path(), reg.manifest_stamp()) == ([], None, None, None)
    with pytest.raises(NotReady, match="no live model"):
        reg.load_live()
    assert not (tmp_path / "none").exists()  # reading creates nothing


def test_add_publish_and_load_live(registry: Registry, tiny: TrainingResult, tiny_crm: SyntheticCRM) -> None:
    assert registry.versions() == ["v1", "v2"]
    assert registry.live_version() == "v1"
    assert registry.live_path() == registry.root / "versions" / "v1"
    model, meta = registry.load_live()
    assert model.version == meta["version"] == "v1"
    columns = frame_columns(attach_clients(tiny_crm.deals.head(50), tiny_crm.clients))
    np.testing.assert_allclose(model.score(columns).p_win, tiny.model.score(columns).p_win)
    first, added = registry.history()
    assert (first.action, first.version, first.previous, first.reason) == ("publish", "v1", None, "first model")
    assert (added.action, added.version, added.previous) == ("added", "v2", "v1")
    manifest = json.loads(registry.manifest_path.read_text())
    assert manifest["live"] == "v1" and manifest["history"][0]["from"] is None  # "from" in the file


def test_publish_records_when_from_and_why(registry: Registry) -> None:
    stamp, generation = registry.manifest_stamp(), registry.generation()
    event = registry.publish("v2", "better on the latest deals")
    assert event is not None
    assert (event.version, event.previous, event.reason) == ("v2", "v1", "better on the latest deals")
    assert event.at and event.by and not event.forced
    assert registry.live_version() == "v2"
    assert registry.manifest_stamp() != stamp and registry.generation() == generation + 1
    assert registry.publish("v2", "again") is None  # already live: nothing written
    assert registry.generation() == generation + 1
    with pytest.raises(NotFound, match="v9 is not in the model registry"):
        registry.publish("v9", "no such version")


def test_rollback_returns_to_the_previous_live_version(registry: Registry, tiny: TrainingResult) -> None:
    registry.publish("v2", "monthly")
    add(registry, tiny, "v3", action="publish", reason="monthly")
    assert registry.previous_version() == "v2"
    event = registry.rollback("v3 misbehaves")
    assert (event.action, event.version, event.previous, event.reason) == ("rollback", "v2", "v3", "v3 misbehaves")
    assert registry.live_version() == "v2" and registry.load_live()[0].version == "v2"
    registry.rollback("and v2 too")
    assert registry.live_version() == "v1"
    with pytest.raises(DealscoreError, match="nothing to roll back to.*v1 is the first version"):
        registry.rollback("no further")
    assert live_stack(registry.history()) == ["v1"]


def test_rollback_refuses_a_tampered_target(registry: Registry) -> None:
    registry.publish("v2", "monthly")
    tamper(registry.path_of("v1") / MODEL_FILE)
    before = snapshot(registry.root)
    with pytest.raises(ArtifactError, match=f"{MODEL_FILE} does not match its checksum"):
        registry.rollback("try")
    assert snapshot(registry.root) == before and registry.live_version() == "v2"


def test_prune_keeps_the_latest_the_live_and_the_previous(registry: Registry, tiny: TrainingResult) -> None:
    registry.publish("v2", "monthly")  # live v2, previous v1
    for version in ("v3", "v4", "v5"):
        add(registry, tiny, version, action="refused", reason="worse")
    assert registry.prune(keep_last=2) == ["v3"]
    assert registry.versions() == ["v1", "v2", "v4", "v5"]
    assert sorted(p.name for p in (registry.root / "versions").iterdir()) == ["v1", "v2", "v4", "v5"]
    assert registry.history()[-1].action == "prune" and registry.history()[-1].removed == ("v3",)
    assert registry.prune(keep_last=1) == ["v4"]  # v1 (previous) and v2 (live) survive any keep_last
    assert registry.prune(keep_last=1) == []
    with pytest.raises(DealscoreError, match="keep_last must be at least 1"):
        registry.prune(0)


def test_publishing_a_tampered_version_is_refused(registry: Registry) -> None:
    tamper(registry.path_of("v2") / MODEL_FILE)
    before = snapshot(registry.root)
    with pytest.raises(ArtifactError, match=f"file {MODEL_FILE} does not match its checksum"):
        registry.publish("v2", "monthly")
    assert snapshot(registry.root) == before


@pytest.mark.parametrize("damage", ["model bytes", "library version", "swapped folder"])
def test_load_live_refuses_a_damaged_artifact_naming_the_problem(registry: Registry, damage: str) -> None:
    live = registry.path_of("v1")
    if damage == "model bytes":
        tamper(live / MODEL_FILE)
        expected = f"file {MODEL_FILE} does not match its checksum"
    elif damage == "library version":
        meta = json.loads((live / "metadata.json").read_text())
        meta["libraries"]["lightgbm"] = "1.0.0"
        meta[METADATA_CHECKSUM] = metadata_checksum(meta)  # re-sealed: only the library version is wrong
        (live / "metadata.json").write_text(json.dumps(meta))
        expected = "written with lightgbm 1.0.0"
    else:
        for name in ("metadata.json", MODEL_FILE, "report.json"):
            (live / name).write_bytes((registry.path_of("v2") / name).read_bytes())
        meta = json.loads((live / "metadata.json").read_text())
        assert meta["version"] == "v2"
        expected = "the artifact inside is version 'v2'"
    with pytest.raises(ArtifactError, match=expected):
        registry.load_live()


def test_the_watcher_swaps_only_a_verified_warm_model(registry: Registry, tiny: TrainingResult,
                                                      tiny_crm: SyntheticCRM) -> None:
    watcher = LiveModelWatcher(registry)
    first = watcher.check(None)
    assert first.status == "loaded" and first.loaded is not None and first.loaded.version == "v1"
    serving = first.loaded
    assert watcher.check("v1").status == "unchanged"

    registry.publish("v2", "monthly")
    swap = watcher.check("v1")
    assert swap.status == "loaded" and swap.loaded is not None and swap.loaded.model.version == "v2"
    serving = swap.loaded

    add(registry, tiny, "v3", action="publish", reason="monthly")
    tamper(registry.path_of("v3") / MODEL_FILE)  # corrupted on disk after it was published
    refused = watcher.check(serving.version)
    assert refused.status == "refused" and refused.loaded is None and refused.refused is not None
    assert refused.refused.version == "v3" and MODEL_FILE in refused.refused.reason
    # The old model keeps serving, and every later poll still reports the refusal (for /v1/model).
    columns = frame_columns(attach_clients(tiny_crm.deals.head(20), tiny_crm.clients))
    assert serving.model.score(columns).p_win.shape == (20,)
    again = watcher.check(serving.version)
    assert again.status == "unchanged" and again.refused == refused.refused and again.live_version == "v3"

    registry.rollback("v3 is damaged")
    back = watcher.check(serving.version)
    assert back.status == "unchanged" and back.live_version == "v2" and watcher.last_refused is None


def test_the_watcher_refuses_a_model_that_fails_its_warm_up(registry: Registry) -> None:
    def broken(model: ScoringModel) -> None:
        raise RuntimeError("engine crashed")

    registry.publish("v2", "monthly")
    result = LiveModelWatcher(registry, warm=broken).check("v1")
    assert result.status == "refused" and result.refused is not None
    assert "failed its warm-up: RuntimeError: engine crashed" in result.refused.reason


def test_the_watcher_keeps_the_model_when_the_manifest_is_unreadable(registry: Registry) -> None:
    watcher = LiveModelWatcher(registry)
    assert watcher.check(None).status == "loaded"
    registry.manifest_path.write_text("{not json")
    with pytest.raises(ArtifactError, match="not a valid manifest"):
        registry.live_version()
    result = watcher.check("v1", force=True)
    assert result.status == "refused" and result.refused is not None and result.refused.version is None


def test_the_watcher_says_when_the_manifest_is_deleted_under_it(registry: Registry, tmp_path: Path) -> None:
    """The ops audit: a serving registry whose manifest.json was deleted kept serving with `refused` null."""
    watcher = LiveModelWatcher(registry)
    assert watcher.check(None).status == "loaded"
    registry.manifest_path.unlink()
    result = watcher.check("v1")
    assert result.status == "refused" and result.refused is not None
    assert "holds 2 version folders but no manifest.json" in result.refused.reason
    assert watcher.check("v1").refused == result.refused  # still said on the next check
    # A registry not created yet is nothing to refuse.
    assert LiveModelWatcher(Registry(tmp_path / "new")).check(None).status == "unchanged"


def test_warm_up_scores_a_prospect_and_a_known_client(tiny: TrainingResult) -> None:
    import pickle

    model = pickle.loads(pickle.dumps(tiny.model))  # as an artifact loads: no leaf table built yet
    assert model.value_model is not None and "_trees" not in model.value_model.__dict__
    warm_up(model)
    # The one-off set-ups are paid before traffic: the win model's leaf tables and the value model's (the
    # prospect comes without an amount).
    assert model.win_model._paths is not None
    assert model.value_model.__dict__["_trees"]._paths is not None


# -- atomicity: a failure at any step leaves the old state, whole, and no leftovers --------------------


def _fail_on(target: str, real: Callable[..., Any]) -> Callable[..., Any]:
    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        path = Path(dst)
        hit = path.name == "manifest.json" if target == "manifest" else path.parent.name == "versions"
        if hit:
            raise OSError(f"injected failure renaming into {path.name}")
        return real(src, dst, *args, **kwargs)

    return replace


OPERATIONS: dict[str, Callable[[Registry, TrainingResult], object]] = {
    "add": lambda reg, tiny: add(reg, tiny, "v3"),
    "add and publish": lambda reg, tiny: add(reg, tiny, "v3", action="publish", reason="monthly"),
    "publish": lambda reg, tiny: reg.publish("v2", "monthly"),
    "prune": lambda reg, tiny: reg.prune(keep_last=1),
}
STEPS = [("add", "artifact"), ("add", "manifest"), ("add and publish", "artifact"), ("add and publish", "manifest"),
         ("publish", "manifest"), ("prune", "manifest")]


@pytest.mark.parametrize(("operation", "step"), STEPS)
def test_a_failed_step_leaves_the_old_state(registry: Registry, tiny: TrainingResult, operation: str, step: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    if operation == "prune":
        add(registry, tiny, "v3")  # so that prune has v2 to remove
    before = snapshot(registry.root)
    old = (registry.versions(), registry.live_version(), registry.history())
    monkeypatch.setattr(os, "replace", _fail_on(step, os.replace))
    with pytest.raises(OSError, match="injected failure"):
        OPERATIONS[operation](registry, tiny)
    monkeypatch.undo()
    assert snapshot(registry.root) == before  # no temp manifest, no staging folder, no orphan version
    assert (registry.versions(), registry.live_version(), registry.history()) == old
    OPERATIONS[operation](registry, tiny)  # and the same change goes through once the fault is gone
    assert snapshot(registry.root) != before


def test_a_failed_fsync_of_the_new_manifest_leaves_the_old_state(registry: Registry,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(registry.root)

    def fsync(fd: int) -> None:
        raise OSError("injected fsync failure")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="injected fsync failure"):
        registry.publish("v2", "monthly")
    monkeypatch.undo()
    assert snapshot(registry.root) == before


KILLER = """
import dataclasses, os, signal, sys
from pathlib import Path
from model.registry import Registry
target = sys.argv[2]
real = os.replace
def replace(src, dst, *args, **kwargs):
    path = Path(dst)
    if (path.name == "manifest.json") if target == "manifest" else (path.parent.name == "versions"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)
os.replace = replace
registry = Registry(sys.argv[1])
model, meta = registry.load("v2")
registry.add(dataclasses.replace(model, version="v3"), meta, {"report.json": b"{}"}, action="publish", reason="x")
"""


def test_a_killed_writer_leaves_the_old_state_and_the_next_change_sweeps(registry: Registry) -> None:
    """SIGKILL at the last moment of a publish: the new version's folder and the new manifest are on disk,
    the rename that would commit them never happens. (A kill earlier leaves a subset of that debris.)"""
    before = snapshot(registry.root)
    old = (registry.versions(), registry.live_version(), registry.manifest_path.read_bytes())
    done = subprocess.run([sys.executable, "-c", KILLER, str(registry.root), "manifest"], cwd=ROOT,
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    leftovers = set(snapshot(registry.root)) - set(before)
    assert any(name.startswith("versions/v3/") for name in leftovers)  # the crash left the new folder
    assert any(".manifest.json.tmp-" in name for name in leftovers)  # ... and the unrenamed manifest
    assert (registry.versions(), registry.live_version(), registry.manifest_path.read_bytes()) == old
    assert registry.load_live()[0].version == "v1"  # readers see the old state meanwhile
    registry.publish("v2", "next change")  # takes the lock, sweeps the debris
    after = snapshot(registry.root)
    assert not set(after) - set(before) - {"manifest.json"}
    assert not [p for p in registry.root.rglob("*") if "v3" in p.name or ".tmp-" in p.name]


def test_an_unknown_version_is_answered_with_the_latest_first(registry: Registry) -> None:
    with pytest.raises(NotFound, match=r"\(latest versions: v2, v1\)"):
        registry.publish("v9", "typo")


def test_a_second_writer_waits_for_the_lock_then_gives_up(registry: Registry) -> None:
    told: list[str] = []
    other = Registry(registry.root, lock_timeout=0.2, on_wait=told.append)
    with registry.locked():
        with pytest.raises(RegistryLocked, match=rf"locked by another process \(pid {os.getpid()}"):
            other.publish("v2", "concurrent")
    # A command waiting on the lock said nothing for a minute: it says once whom it waits for.
    assert len(told) == 1
    assert told[0].startswith(f"waiting up to 0.2 s for the registry lock, held by pid {os.getpid()}")
    assert other.publish("v2", "after the lock was released") is not None


def test_a_gate_decision_is_not_applied_over_another_live_version(registry: Registry,
                                                                  tiny: TrainingResult) -> None:
    before = snapshot(registry.root)
    with pytest.raises(DealscoreError, match="live version .* changed from v0 to v1"):
        add(registry, tiny, "v3", action="publish", reason="gate passed against v0", expect_live="v0")
    assert snapshot(registry.root) == before


def test_version_names_cannot_escape_the_registry(registry: Registry, tiny: TrainingResult) -> None:
    # "v9\n": a pattern ending in `$` matches before a final newline (a security review found it passed, and the
    # folder "versions/v9\n" was named by an artifact's metadata).
    for bad in ("../outside", ".hidden", "a/b", "", "v9\n"):
        with pytest.raises(DealscoreError, match="version names are"):
            add(registry, tiny, bad)
    with pytest.raises(DealscoreError, match="version names are"):
        registry.path_of("v1\n")
    with pytest.raises(ArtifactError, match="v1 is already in the model registry"):
        add(registry, tiny, "v1")


def test_an_artifact_directory_is_verified_and_copied_in(registry: Registry, tiny: TrainingResult,
                                                         tmp_path: Path) -> None:
    artifact = save_artifact(as_version(tiny, "v7"), tmp_path / "trained", tiny.metadata, {"report.json": b"{}"})
    (artifact / "deals.csv").write_text("deal_id\nD1\n")  # beside the artifact, no checksum of the model's: left out
    (artifact / "truth").mkdir()
    assert registry.add_artifact(artifact, reason="trained by hand") == "v7"
    assert registry.versions()[-1] == "v7" and registry.live_version() == "v1"
    assert registry.verify("v7")["version"] == "v7"
    assert sorted(p.name for p in registry.path_of("v7").iterdir()) == [
        "metadata.json", "model.joblib", "report.json"]
    other = save_artifact(as_version(tiny, "v8"), tmp_path / "other", tiny.metadata)
    tamper(other / MODEL_FILE)
    with pytest.raises(ArtifactError, match="does not match its checksum"):
        registry.add_artifact(other)
    assert "v8" not in registry.versions()


def test_a_registry_without_its_manifest_is_refused_not_emptied(registry: Registry, tiny: TrainingResult) -> None:
    """With manifest.json gone every version folder looked unnamed, and the next change deleted them all."""
    before = snapshot(registry.root)
    registry.manifest_path.unlink()
    for change in (lambda: registry.publish("v2", "monthly"), lambda: add(registry, tiny, "v3")):
        with pytest.raises(ArtifactError, match=r"holds 2 version folders but no manifest.json: .* Nothing is changed"):
            change()
    assert sorted(p.name for p in (registry.root / "versions").iterdir()) == ["v1", "v2"]
    assert set(snapshot(registry.root)) == set(before) - {"manifest.json"}


def test_a_manifest_restored_from_a_backup_costs_no_version_added_since(registry: Registry,
                                                                        tiny: TrainingResult) -> None:
    """The refusal's advice, restore manifest.json from a backup, led the next change to delete every version
    the backup did not name, the live one included: they looked like folders of a crashed add."""
    backup = registry.manifest_path.read_bytes()
    add(registry, tiny, "v3", action="publish", reason="monthly")
    registry.manifest_path.unlink()
    registry.manifest_path.write_bytes(backup)
    registry.publish("v2", "after the restore")
    assert (registry.root / "versions" / "v3" / "metadata.json").is_file()
    assert "v3" not in registry.versions()  # unnamed, invisible, kept


def test_an_operators_copy_of_a_version_is_kept(registry: Registry) -> None:
    """An operator's copy of a version under another name was deleted by the next change, though the docs say
    folders the registry did not write are left alone."""
    import shutil

    versions = registry.root / "versions"
    shutil.copytree(versions / "v1", versions / "backup-v1-before-upgrade")
    registry.publish("v2", "monthly")
    assert (versions / "backup-v1-before-upgrade" / "metadata.json").is_file()


def test_the_sweep_removes_only_its_own_debris(registry: Registry) -> None:
    versions = registry.root / "versions"
    (versions / "notes.txt").write_text("someone's notes")
    (versions / "foreign").mkdir()
    (versions / "foreign" / "data.csv").write_text("a,b\n")
    (versions / ".v9.tmp-abc").mkdir()  # a staging folder of a crashed writer
    registry.publish("v2", "monthly")
    assert sorted(p.name for p in versions.iterdir()) == ["foreign", "notes.txt", "v1", "v2"]


# -- the ops audit of the monthly cycle ------------------------------------------------------------------


def test_a_folder_of_something_else_is_not_turned_into_a_registry(tmp_path: Path, tiny: TrainingResult) -> None:
    """A mistyped --registry naming an export's folder had been made a registry there, the run exiting 0."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "deals.csv").write_text("deal_id\nD1\n")
    registry = Registry(folder)
    with pytest.raises(ArtifactError, match=r"is not a model registry \(no manifest.json\) and holds other files "
                                            r"\(deals.csv\)"):
        add(registry, tiny, "v1", action="publish")
    assert sorted(p.name for p in folder.iterdir()) == ["deals.csv"]  # nothing written there, not even a lock
    # What a registry writes first, hidden files and a new volume's lost+found are no reason to refuse.
    fresh = Registry(tmp_path / "new")
    assert fresh.missing_manifest_problem() is None
    add(fresh, tiny, "v1", action="publish")
    assert fresh.live_version() == "v1"
    volume = tmp_path / "volume"
    (volume / "lost+found").mkdir(parents=True)
    (volume / ".DS_Store").write_text("")
    (volume / ".lock").write_text("")
    add(Registry(volume), tiny, "v1", action="publish")
    assert Registry(volume).live_version() == "v1"


def test_a_registry_that_lost_its_manifest_says_to_restore_it(registry: Registry) -> None:
    registry.manifest_path.unlink()
    problem = registry.missing_manifest_problem()
    assert problem is not None and "holds 2 version folders but no manifest.json" in problem
    assert "restore manifest.json from a backup" in problem


def test_a_registry_that_cannot_be_written_is_said_so(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only mount (EROFS on the lock file) ended publish and rollback as an 'unexpected failure'."""
    import errno

    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any) -> int:
        if Path(path).name == ".lock" and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    for change in (lambda: registry.publish("v2", "by hand"), lambda: registry.rollback("by hand")):
        with pytest.raises(DealscoreError, match=r"cannot be written: Read-only file system \(.*\.lock\); changing "
                                                 r"it needs write access") as caught:
            change()
        assert not caught.value.transient

    def disk_full(path: Any, flags: int, *args: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(os, "open", disk_full)  # not a matter of access: not said to be one
    with pytest.raises(OSError, match="No space left"):
        registry.publish("v2", "by hand")


def test_a_version_stored_meanwhile_by_a_retrain_of_the_same_data_is_busy_not_bad_input(
        registry: Registry, tiny: TrainingResult) -> None:
    """Two retrains of one export started in the same second name their candidates alike; the second had
    exited 2 (bad data) where it should be told to run again (exit 4)."""
    from model.registry import LiveVersionChanged

    with pytest.raises(LiveVersionChanged, match="by another retrain of the same data") as caught:
        add(registry, tiny, "v2", action="refused", expect_live="v1")
    assert caught.value.transient
    with pytest.raises(ArtifactError, match="already in the model registry"):  # by hand: a plain mistake
        add(registry, tiny, "v2")


def test_a_model_written_under_a_private_umask_is_readable_by_the_service_user(tmp_path: Path,
                                                                            tiny: TrainingResult) -> None:
    """A retrain under umask 077 wrote model.joblib and metadata.json 0600: a service running as another user
    would refuse the new version."""
    previous = os.umask(0o077)
    try:
        registry = Registry(tmp_path / "ops" / "registry")  # created by the retrain, parents too
        add(registry, tiny, "v1", action="publish")
        artifact = save_artifact(as_version(tiny, "v2"), tmp_path / "artifact", tiny.metadata)
        registry.add_artifact(artifact)
    finally:
        os.umask(previous)
    for folder in (tmp_path / "ops", registry.root, registry.versions_dir):
        assert folder.stat().st_mode & 0o777 == 0o755, folder
    for folder in (registry.path_of("v1"), registry.path_of("v2"), artifact):
        assert folder.stat().st_mode & 0o777 == 0o755, folder
        modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
        assert set(modes.values()) == {0o644}, modes


def test_a_forced_check_does_not_load_a_refused_version_again_until_its_files_change(
        registry: Registry, tiny: TrainingResult, monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin route re-loaded and re-warmed a refused version on every call: a 1M-deal model's load holds the
    worker for some 10 s, and without tokens anyone may call it."""
    warmed: list[str] = []

    def broken(model: ScoringModel) -> None:
        warmed.append(model.version)
        raise RuntimeError("engine crashed")

    registry.publish("v2", "monthly")
    watcher = LiveModelWatcher(registry, warm=broken)
    first = watcher.check("v1", force=True)
    assert first.status == "refused" and first.refused is not None and warmed == ["v2"]
    for _ in range(3):
        again = watcher.check("v1", force=True)
        assert again.status == "refused" and again.refused == first.refused
    assert warmed == ["v2"]
    # Its files rewritten (a fixed copy, or the same bytes put back): tried again.
    report = registry.path_of("v2") / "report.json"
    time.sleep(0.02)  # past the file system's clock tick (timestamps may be as coarse as 10 ms)
    report.write_bytes(report.read_bytes())
    assert watcher.check("v1", force=True).status == "refused" and warmed == ["v2", "v2"]
    # A file's permissions changed (ctime): tried again too.
    time.sleep(0.02)
    os.chmod(report, 0o644)
    watcher.check("v1", force=True)
    assert warmed == ["v2", "v2", "v2"]
    # The manifest rewritten, v2 still live (another version stored): tried again, as a change of the files is
    # (the refusal may have been the manifest's: a version it did not list).
    add(registry, tiny, "v3")
    assert watcher.check("v1").status == "refused" and warmed == ["v2"] * 4
    # Neither changed, but a while has passed: tried again (a refusal may have been passing: a read failing once).
    import model.registry as registry_module

    monkeypatch.setattr(registry_module, "RETRY_REFUSED_SECONDS", 0.0)
    watcher.check("v1", force=True)
    assert warmed == ["v2"] * 5
    # Once the files load, the version does.
    fixed = LiveModelWatcher(registry)
    assert fixed.check("v1", force=True).status == "loaded"


def test_a_tampered_version_is_not_read_again_until_its_files_change(registry: Registry,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    registry.publish("v2", "monthly")
    model_file = registry.path_of("v2") / MODEL_FILE
    good = model_file.read_bytes()
    tamper(model_file)
    loads: list[str] = []
    load = registry.load

    def counted_load(version: str) -> tuple[ScoringModel, dict[str, Any]]:
        loads.append(version)
        return load(version)

    monkeypatch.setattr(registry, "load", counted_load)
    watcher = LiveModelWatcher(registry)
    refused = watcher.check("v1", force=True)
    assert refused.status == "refused" and refused.refused is not None and MODEL_FILE in refused.refused.reason
    assert watcher.check("v1", force=True).refused == refused.refused and loads == ["v2"]
    time.sleep(0.02)
    model_file.write_bytes(good)  # the good bytes put back: loaded on the next forced check
    assert watcher.check("v1", force=True).status == "loaded" and loads == ["v2", "v2"]
