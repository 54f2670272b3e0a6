"""Hot reload: the service follows the registry's live version while it runs.

`Reloader.check` asks model.registry.LiveModelWatcher whether the live version changed (one stat of
manifest.json while nothing did); on a change the watcher loads, verifies and warms the new version, and
only then is it swapped into the ModelHolder. Requests keep the snapshot they started with, so one in
flight finishes on the old model. A refused version (corrupt, tampered, incompatible, failing its test
prediction) leaves the old model serving; `refused` says which version and why.

The service checks every `reload_interval_seconds` (`follow`) and on POST /v1/admin/reload (forced: the
manifest is read again even when its stamp did not change). Loading is blocking work: `check` runs in a
worker thread (`check_in_thread`), never on the event loop.

Each worker process has its own Reloader and model: the admin route reloads the worker that answers it,
and the others follow on their own poll. Without polling they never would, which is why the settings
refuse a registry with several workers and `reload_interval_seconds` 0 (service.settings).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

from model.registry import LiveModelWatcher, RefusedVersion, Registry, ReloadResult
from service.holder import LoadedModel, ModelHolder
from service.logs import LOGGER_NAME

__all__ = ["Reloader"]

log = logging.getLogger(LOGGER_NAME)


class Reloader:
    """The registry's live version, checked on demand and swapped into `holder` once it is ready."""

    def __init__(self, registry_dir: str | Path, holder: ModelHolder) -> None:
        self.registry = Registry(registry_dir)
        self.holder = holder
        self.watcher = LiveModelWatcher(self.registry)
        # Check and swap under one lock: otherwise a slow check that loaded an older live version could swap
        # it in over a newer one loaded meanwhile, and the unchanged manifest would then hide the mistake.
        self._lock = threading.Lock()

    @property
    def refused(self) -> RefusedVersion | None:
        """The live version the service would not load (None once a version loads or the live one serves)."""
        return self.watcher.last_refused

    def check(self, *, force: bool = False) -> ReloadResult:
        """Load and swap in the live version if it is not the one serving. Blocking: call from a thread."""
        with self._lock:
            serving = self.holder.peek()
            started = time.perf_counter()
            result = self.watcher.check(serving.version if serving is not None else None, force=force)
            self._apply(result, serving, time.perf_counter() - started)
        return result

    async def check_in_thread(self, *, force: bool = False) -> ReloadResult:
        return await asyncio.to_thread(self.check, force=force)

    async def follow(self, interval: float) -> None:
        """Check every `interval` seconds until cancelled; a check that fails is logged and the next retries."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check_in_thread()
            except Exception:  # e.g. the registry directory became unreadable: keep serving, keep watching
                log.exception("model registry check failed", extra={"registry": str(self.registry.root)})

    def _apply(self, result: ReloadResult, serving: LoadedModel | None, seconds: float) -> None:
        previous = serving.version if serving is not None else None
        if result.loaded is not None:
            new = result.loaded
            self.holder.swap(LoadedModel.build(new.model, new.metadata, str(new.path), kind="registry"))
            log.info("model loaded", extra={"model_version": new.version, "previous_version": previous,
                                            "source": str(new.path), "load_ms": round(seconds * 1000.0, 1)})
        elif result.status == "refused" and result.refused is not None:
            log.error("model refused", extra={"refused_version": result.refused.version, "serving_version": previous,
                                              "reason": result.refused.reason, "registry": str(self.registry.root)})
        if self.holder.peek() is None:
            self.holder.last_error = self._not_ready_reason(result)

    def _not_ready_reason(self, result: ReloadResult) -> str:
        if result.refused is not None:
            return result.refused.reason
        if not self.registry.root.is_dir():  # a typo or a volume not mounted reads very differently from "not yet"
            return (f"the model registry at {self.registry.root} does not exist (no such directory): check "
                    "DEALSCORE_REGISTRY_DIR or --registry, and the volume mount")
        return (f"the model registry at {self.registry.root} has no live version yet; publish one with "
                "`dealscore retrain` or `dealscore models publish`")
