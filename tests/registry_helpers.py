"""Registry fixtures' building blocks shared by the registry and hot-reload tests."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from model.registry import Registry
from model.scorer import ScoringModel
from training.fit import TrainingResult


def as_version(result: TrainingResult, version: str) -> ScoringModel:
    return dataclasses.replace(result.model, version=version)


def add(registry: Registry, result: TrainingResult, version: str, **kwargs: Any) -> str:
    return registry.add(as_version(result, version), result.metadata, {"report.json": b"{}"}, **kwargs)


def tamper(path: Path) -> None:
    """Flip one byte in the middle of the file (what a checksum must catch)."""
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))


def two_versions(root: Path, result: TrainingResult) -> Path:
    """A registry at `root` with v1 live ("first model") and v2 stored: the same model under two names."""
    registry = Registry(root)
    add(registry, result, "v1", action="publish", reason="first model")
    add(registry, result, "v2")
    return registry.root


def fresh_copy(base: Path, tmp_path: Path) -> Registry:
    """A registry tests may change freely: a copy of `base`."""
    return Registry(shutil.copytree(base, tmp_path / "registry"))
