"""The live model behind one atomic reference, and how a model becomes live: load, validate, warm, swap.

A request takes one immutable snapshot (`ModelHolder.current()`) at its start and finishes on it, so a
later hot reload can swap the reference at any moment without a request seeing two models. A model is
swapped in only after it loaded, passed its checks and answered a test prediction; if anything fails,
the model already serving keeps serving.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from model.artifact import load_artifact
from model.errors import ArtifactError, DealscoreError, NotReady
from model.scorer import ScoringModel
from service.logs import LOGGER_NAME

__all__ = ["LoadedModel", "ModelHolder", "warm"]

log = logging.getLogger(LOGGER_NAME)


@dataclass(frozen=True)
class LoadedModel:
    """One model as served: never mutated after it is built, shared by every request that took it."""

    model: ScoringModel = field(repr=False)  # a model's repr runs to megabytes (its client directory)
    metadata: Mapping[str, Any] = field(repr=False)
    version: str
    source: str | None  # the artifact directory, or None for a model handed over in memory
    loaded_at: datetime
    kinds: Mapping[str, str] = field(default_factory=dict)  # feature column -> "number" | "text"

    @classmethod
    def build(cls, model: ScoringModel, metadata: Mapping[str, Any] | None = None,
              source: str | None = None) -> LoadedModel:
        spec = model.spec
        kinds = {**dict.fromkeys(spec.categorical, "text"), **dict.fromkeys(spec.numeric, "number")}
        return cls(model=model, metadata=MappingProxyType(dict(metadata or {})), version=model.version,
                   source=source, loaded_at=datetime.now(UTC), kinds=MappingProxyType(kinds))


def warm(model: ScoringModel) -> None:
    """A test prediction through every part a request uses; raises ArtifactError if the answer is wrong.

    It also pays the one-off costs (lazy native initialisation, first-call caches) before traffic does.
    """
    day = float(model.history.last_day)
    client_id = next(iter(model.spec.client_keys), None)
    columns: dict[str, Any] = {
        "deal_id": np.array(["warm-up"], dtype=object),
        "client_id": np.array([client_id], dtype=object),
        "created_day": np.array([day]),
    }
    for name in model.spec.numeric:
        columns[name] = np.array([1.0])
    for name in model.spec.categorical:
        level = next(iter(model.spec.vocab.get(name, {})), None)
        columns[name] = np.array([level], dtype=object)
    try:
        batch = model.score(columns, n_reasons=3)
        profiles = getattr(model, "profiles", None)
        if profiles is not None and client_id is not None:
            from model.profiles import ClientFacts

            profiles.gaps_for([ClientFacts(client_id=str(client_id))], top_k=3)
    except Exception as exc:  # whatever breaks here means the artifact cannot serve
        raise ArtifactError(f"model {model.version} failed its test prediction: {type(exc).__name__}: {exc}") from exc
    p = float(batch.p_win[0])
    if not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise ArtifactError(f"model {model.version} failed its test prediction: p_win {p} is not a probability")


class ModelHolder:
    """The atomic reference to the live model. Readers never lock; writers swap under a lock."""

    def __init__(self) -> None:
        self._current: LoadedModel | None = None
        self._swap_lock = threading.Lock()
        self.last_error: str | None = None  # why the last load failed, for /health/ready

    def current(self) -> LoadedModel:
        """The snapshot a request works on from start to end; NotReady before a model is live."""
        snapshot = self._current
        if snapshot is None:
            reason = f": {self.last_error}" if self.last_error else ""
            raise NotReady(f"no model is loaded yet{reason}")
        return snapshot

    def peek(self) -> LoadedModel | None:
        return self._current

    def swap(self, new: LoadedModel) -> LoadedModel | None:
        """Make `new` live (it must be warmed already); returns the model it replaced."""
        with self._swap_lock:
            old, self._current = self._current, new
            self.last_error = None
        return old

    def install(self, model: ScoringModel, metadata: Mapping[str, Any] | None = None,
                source: str | None = None) -> LoadedModel:
        """Warm an in-memory model and make it live."""
        warm(model)
        loaded = LoadedModel.build(model, metadata, source)
        self.swap(loaded)
        return loaded

    def load(self, directory: str | Path) -> LoadedModel:
        """Load, verify and warm the artifact at `directory`, then swap it in; on failure keep the old one."""
        return self._load(lambda: load_artifact(directory), str(directory))

    def load_registry(self, registry_dir: str | Path) -> LoadedModel:
        """The registry's live version, verified and warmed, swapped in; on failure keep the old one."""
        from model.registry import Registry

        registry = Registry(registry_dir)
        if not registry.exists():
            raise ArtifactError(f"no model registry at {registry_dir} (its manifest.json is missing)")
        return self._load(registry.load_live, str(registry.live_path()))

    def _load(self, load: Callable[[], tuple[ScoringModel, dict[str, Any]]], source: str) -> LoadedModel:
        try:
            model, metadata = load()
            loaded = self.install(model, metadata, source)
        except Exception as exc:
            self.last_error = exc.message if isinstance(exc, DealscoreError) else type(exc).__name__
            raise
        log.info("model loaded", extra={"model_version": loaded.version, "source": source})
        return loaded
