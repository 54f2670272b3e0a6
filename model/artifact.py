"""Model artifacts on disk: a directory of joblib files, reports and a metadata.json with checksums.

Writing is atomic (a temporary sibling directory renamed into place), so a crash never leaves a
half-written artifact. Loading verifies every checksum and the library versions before unpickling:
joblib runs code on load, so only artifacts written by dealscore into a directory it owns are loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import joblib

from model.errors import ArtifactError
from model.scorer import ScoringModel

METADATA_FILE = "metadata.json"
MODEL_FILE = "model.joblib"
# The layout of the pickled model. 2: one stacked as-of index for all categorical levels (was one per column);
# 3: product x client attribute level pairs in that index (FeatureSpec.pairs), and PlattCalibration's drift
# term (older code would load such a calibration and silently ignore its drift).
ARTIFACT_FORMAT = 3
# Libraries whose pickled objects live in the artifact: a different major.minor may not load them
# faithfully, so loading refuses rather than scoring with a silently different model.
PINNED_LIBRARIES = ("lightgbm", "numpy")
RECORDED_LIBRARIES = ("lightgbm", "numpy", "pandas", "scikit-learn", "joblib", "dealscore")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in RECORDED_LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_artifact(model: ScoringModel, out_dir: str | Path, metadata: Mapping[str, Any],
                  extra_files: Mapping[str, bytes] | None = None) -> Path:
    """Write the model, extra files (reports) and metadata.json with checksums; atomically."""
    target = Path(out_dir).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a service running as another user must read it
    try:
        joblib.dump(model, staging / MODEL_FILE, compress=3)
        for name, content in (extra_files or {}).items():
            (staging / name).write_bytes(content)
        checksums = {p.name: _sha256(p) for p in sorted(staging.iterdir()) if p.is_file()}
        full = {**metadata, "version": model.version, "format": ARTIFACT_FORMAT,
                "libraries": library_versions(), "checksums": checksums}
        (staging / METADATA_FILE).write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
        _replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _replace_directory(staging: Path, target: Path) -> None:
    if not target.exists():
        os.replace(staging, target)
        return
    # A directory cannot be renamed over a non-empty one: move the old aside first, then drop it.
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_metadata(artifact_dir: str | Path) -> dict[str, Any]:
    path = Path(artifact_dir) / METADATA_FILE
    if not path.is_file():
        raise ArtifactError(f"no model artifact at {artifact_dir}: {METADATA_FILE} is missing")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"model artifact at {artifact_dir}: {METADATA_FILE} is unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"model artifact at {artifact_dir}: {METADATA_FILE} is not an object")
    return data


def verify_artifact(artifact_dir: str | Path) -> dict[str, Any]:
    """Check checksums and library versions; return the metadata. Raises ArtifactError on any mismatch."""
    directory = Path(artifact_dir)
    meta = read_metadata(directory)
    checksums = meta.get("checksums")
    if not isinstance(checksums, dict) or MODEL_FILE not in checksums:
        raise ArtifactError(f"model artifact at {directory}: metadata lists no checksums")
    for name, expected in checksums.items():
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"model artifact at {directory}: file {name} is missing")
        if _sha256(path) != expected:
            raise ArtifactError(f"model artifact at {directory}: file {name} does not match its checksum "
                                "(changed or corrupted after training); refusing to load it")
    if meta.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"model artifact at {directory} has format {meta.get('format')!r}, this dealscore "
                            f"reads format {ARTIFACT_FORMAT}; retrain the model with this version")
    recorded = meta.get("libraries", {})
    running = library_versions()
    for name in PINNED_LIBRARIES:
        then, now = str(recorded.get(name, "?")), running.get(name, "?")
        if then.split(".")[:2] != now.split(".")[:2]:
            raise ArtifactError(f"model artifact at {directory} was written with {name} {then}, this process "
                                f"runs {name} {now}; retrain the model or install {name}=={then}")
    return meta


def load_artifact(artifact_dir: str | Path) -> tuple[ScoringModel, dict[str, Any]]:
    meta = verify_artifact(artifact_dir)
    try:
        model = joblib.load(Path(artifact_dir) / MODEL_FILE)
    except Exception as exc:  # unpickling errors come in many types; all mean the same to the caller
        raise ArtifactError(f"model artifact at {artifact_dir} could not be loaded: {exc}") from exc
    if not isinstance(model, ScoringModel):
        raise ArtifactError(f"model artifact at {artifact_dir} does not hold a scoring model")
    return model, meta
