"""The model registry on disk: versioned artifacts, the live pointer, and the history of every change.

Layout of a registry directory (the registry owns it; nothing else writes there):

    manifest.json        the truth: live version, versions in the order they were added, history
    .lock                fcntl lock, so two ops processes never interleave their changes
    versions/<version>/  one artifact directory per version (model.artifact format)

Every change is one atomic commit of manifest.json (written aside, fsynced, renamed over the old one).
A version's folder is written completely (and fsynced) *before* the manifest names it, and removed only
*after* the manifest stopped naming it; a crash at any point therefore leaves the old state or the new
one. Folders the manifest does not name (left by a crash) are invisible and swept by the next change.

Readers (the service) take no lock: they read the manifest, which is always whole, and load the live
version's folder, which is never removed while it is live or the previous live version.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from model.artifact import (
    METADATA_FILE,
    artifact_file_names,
    load_artifact,
    read_metadata,
    readable_by_all,
    replace_file,
    save_artifact,
    verify_artifact,
)
from model.errors import ArtifactError, DealscoreError, NotFound, NotReady, counted
from model.profiles import ClientFacts
from model.scorer import ScoringModel

__all__ = [
    "AddAction",
    "Event",
    "LiveModelWatcher",
    "LoadedVersion",
    "ManifestStamp",
    "REGISTRY_FORMAT",
    "RefusedVersion",
    "Registry",
    "RegistryLocked",
    "ReloadResult",
    "VersionEntry",
    "live_stack",
    "warm_up",
]

MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".lock"
VERSIONS_DIR = "versions"
REGISTRY_FORMAT = 1
_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # matched whole: `$` passed a final newline
_TEMP_PREFIX = ".manifest.json.tmp-"
_PENDING_PREFIX = ".pending-"  # + a version: its folder is being written and not yet committed

AddAction = Literal["added", "refused", "publish"]
# (inode, mtime in ns, size) of manifest.json: a new manifest is a new file (renamed in), so any commit
# changes the stamp; one os.stat, cheap enough to poll every second.
ManifestStamp = tuple[int, int, int]


def _readable_folder(folder: Path) -> None:
    """Create `folder` (and its missing parents) 0755 whatever the umask: the service may run as another user,
    and a private versions/ hid every model in it (0700 under umask 077)."""
    missing = []
    at = folder
    while not at.exists():
        missing.append(at)
        at = at.parent
    for created in reversed(missing):
        created.mkdir(exist_ok=True)
        created.chmod(0o755)


class RegistryLocked(DealscoreError):
    status = 409
    code = "registry_locked"
    transient = True


class LiveVersionChanged(DealscoreError):
    """Another process published or rolled back while a retrain prepared its candidate."""

    status = 409
    code = "live_version_changed"
    transient = True


@dataclass(frozen=True)
class Event:
    """One entry of the registry's history: when, what, which version, from which live version, why."""

    at: str
    action: str  # "publish", "rollback", "added", "refused", "prune"
    version: str | None
    previous: str | None  # the live version before this event ("from" in the manifest)
    reason: str
    forced: bool = False
    by: str = ""
    removed: tuple[str, ...] = ()  # versions a prune removed

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at, "action": self.action, "version": self.version,
                               "from": self.previous, "reason": self.reason, "forced": self.forced, "by": self.by}
        if self.removed:
            out["removed"] = list(self.removed)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        return cls(at=str(data.get("at", "")), action=str(data.get("action", "")),
                   version=_optional_str(data.get("version")), previous=_optional_str(data.get("from")),
                   reason=str(data.get("reason", "")), forced=bool(data.get("forced", False)),
                   by=str(data.get("by", "")), removed=tuple(str(v) for v in data.get("removed", ())))


@dataclass(frozen=True)
class VersionEntry:
    version: str
    added_at: str


@dataclass
class _Manifest:
    live: str | None = None
    generation: int = 0
    updated_at: str = ""
    versions: list[VersionEntry] = field(default_factory=list)
    history: list[Event] = field(default_factory=list)

    def names(self) -> list[str]:
        return [entry.version for entry in self.versions]

    def to_json(self) -> dict[str, Any]:
        return {"format": REGISTRY_FORMAT, "generation": self.generation, "updated_at": self.updated_at,
                "live": self.live,
                "versions": [{"version": e.version, "added_at": e.added_at} for e in self.versions],
                "history": [event.to_json() for event in self.history]}


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def live_stack(history: list[Event]) -> list[str]:
    """Versions that were live, oldest first, as publishes push and rollbacks pop them: [-1] is live."""
    stack: list[str] = []
    for event in history:
        if event.action == "publish" and event.version is not None:
            stack.append(event.version)
        elif event.action == "rollback" and stack:
            stack.pop()
    return stack


class Registry:
    """Versions of the model in a directory, one of them live. Safe for one writer at a time (locked)."""

    def __init__(self, root: str | Path, lock_timeout: float = 60.0,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait  # told once, with the holder, when the lock is held by another process
        self._lock_depth = 0
        self._lock_fd: int | None = None
        self._thread_lock = threading.RLock()

    # -- reading (no lock: the manifest is replaced whole, never edited in place) --------------------

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def versions_dir(self) -> Path:
        return self.root / VERSIONS_DIR

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def _read(self) -> _Manifest:
        path = self.manifest_path
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return _Manifest()
        except OSError as exc:
            raise ArtifactError(f"model registry at {self.root}: {MANIFEST_FILE} is unreadable ({exc})") from exc
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("format") != REGISTRY_FORMAT:
                raise ValueError(f"format {data.get('format')!r}, this dealscore reads format {REGISTRY_FORMAT}")
            return _Manifest(
                live=_optional_str(data.get("live")), generation=int(data.get("generation", 0)),
                updated_at=str(data.get("updated_at", "")),
                versions=[VersionEntry(str(e["version"]), str(e.get("added_at", ""))) for e in data["versions"]],
                history=[Event.from_json(e) for e in data.get("history", [])],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"model registry at {self.root}: {MANIFEST_FILE} is not a valid manifest "
                                f"({exc})") from exc

    def manifest_stamp(self) -> ManifestStamp | None:
        """Changes whenever the manifest is committed; None when there is none. One stat, for polling."""
        try:
            st = os.stat(self.manifest_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def generation(self) -> int:
        return self._read().generation

    def versions(self) -> list[str]:
        """Version names in the order they were added (oldest first)."""
        return self._read().names()

    def entries(self) -> list[VersionEntry]:
        return list(self._read().versions)

    def live_version(self) -> str | None:
        return self._read().live

    def previous_version(self) -> str | None:
        """The version a rollback would return to (the one live before the current one was published)."""
        stack = live_stack(self._read().history)
        return stack[-2] if len(stack) >= 2 else None

    def history(self) -> list[Event]:
        return list(self._read().history)

    def path_of(self, version: str) -> Path:
        _check_name(version)
        return self.versions_dir / version

    def live_path(self) -> Path | None:
        live = self.live_version()
        return None if live is None else self.path_of(live)

    def metadata(self, version: str) -> dict[str, Any]:
        """A version's metadata.json, unverified (for listings); NotFound for a version not in the registry."""
        self._require(self._read(), version)
        return read_metadata(self.path_of(version))

    def verify(self, version: str) -> dict[str, Any]:
        """Checksums, library versions and the version name inside; the metadata, or ArtifactError."""
        self._require(self._read(), version)
        meta = verify_artifact(self.path_of(version))
        if meta.get("version") != version:
            raise ArtifactError(f"version {version} in {self.root}: the artifact inside is version "
                                f"{meta.get('version')!r}; the folder was renamed or swapped")
        return meta

    def load(self, version: str) -> tuple[ScoringModel, dict[str, Any]]:
        """Load one version after verifying its checksums and library versions (ArtifactError otherwise)."""
        self._require(self._read(), version)
        model, meta = load_artifact(self.path_of(version))
        if meta.get("version") != version or model.version != version:
            raise ArtifactError(f"version {version} in {self.root}: the artifact inside is version "
                                f"{model.version!r}; the folder was renamed or swapped")
        return model, meta

    def load_live(self) -> tuple[ScoringModel, dict[str, Any]]:
        """The live model, verified; NotReady when nothing is live yet, ArtifactError when it is unusable."""
        live = self.live_version()
        if live is None:
            raise NotReady(f"model registry at {self.root} has no live model yet; publish one with "
                           "`dealscore retrain` or `dealscore models publish`")
        return self.load(live)

    def _require(self, manifest: _Manifest, version: str) -> None:
        _check_name(version)
        if version not in manifest.names():
            known = ", ".join(reversed(manifest.names()[-5:])) or "none"  # newest first, as "latest" reads
            raise NotFound(f"version {version} is not in the model registry at {self.root} "
                           f"(latest versions: {known})")

    # -- changing (each under the lock, each one manifest commit) ------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the registry's lock (re-entrant within this object); RegistryLocked after lock_timeout."""
        with self._thread_lock:
            if self._lock_depth == 0:
                self._acquire()
            self._lock_depth += 1
            try:
                if self._lock_depth == 1:
                    self._sweep()
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    self._release()

    def _acquire(self) -> None:
        problem = self.missing_manifest_problem()  # before the lock file: a folder of something else stays as it is
        if problem is not None:
            raise ArtifactError(problem)
        try:
            _readable_folder(self.root)
            fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            # A read-only mount, a wrong owner: said as such, not an "unexpected failure".
            raise DealscoreError(f"model registry at {self.root} cannot be written: {exc.strerror or exc} "
                                 f"({exc.filename or self.root}); changing it needs write access") from exc
        deadline = time.monotonic() + self.lock_timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and self.on_wait is not None:
                    told = True
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                    self.on_wait(f"waiting up to {self.lock_timeout:g} s for the registry lock, held by {holder}")
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise RegistryLocked(f"model registry at {self.root} is locked by another process "
                                         f"({holder}); waited {self.lock_timeout:g} s") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} {_who()} since {_now()}\n".encode(), 0)
        self._lock_fd = fd

    def _release(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def missing_manifest_problem(self) -> str | None:
        """Why a folder without a manifest must not become a registry (None: nothing there, or only what a
        registry itself writes first): version folders without their manifest (it was deleted), or files of
        something else (an export, an artifact: a mistyped path had been turned into a registry)."""
        if self.manifest_path.exists() or not self.root.is_dir():
            return None
        if self.versions_dir.is_dir():
            stored = [e.name for e in self.versions_dir.iterdir() if (e / METADATA_FILE).is_file()]
            if stored:
                return (f"model registry at {self.root} holds {counted(len(stored), 'version folder')} but no "
                        f"{MANIFEST_FILE}: it was deleted, or this is not the registry's directory. Nothing is "
                        f"changed; restore {MANIFEST_FILE} from a backup (versions added since stay on disk, unnamed "
                        "and never deleted), or move versions/ aside and `dealscore models add` the folders to keep")
        # Hidden files (.lock, a manifest being written, .DS_Store, .snapshot) and a new volume's lost+found are
        # no sign of something else: a registry on a freshly formatted volume starts next to lost+found.
        foreign = sorted(e.name for e in self.root.iterdir()
                         if e.name not in (VERSIONS_DIR, "lost+found") and not e.name.startswith("."))
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            return (f"{self.root} is not a model registry (no {MANIFEST_FILE}) and holds other files ({shown}): "
                    "a registry needs a folder of its own; give a new or empty folder to create one, or the "
                    "registry's own path")
        return None

    def _sweep(self) -> None:
        """Remove what a crashed writer left: manifest temp files, staging folders, and version folders the
        manifest no longer names (pruned) or never named (stored by an add that died before its commit, which
        its pending marker shows).

        Never on a guess: a registry whose manifest is gone is refused, not emptied (every folder would look
        unnamed), and a folder that is not exactly a version the registry wrote (an operator's copy under
        another name, say) is left alone.
        """
        if not self.manifest_path.exists():
            problem = self.missing_manifest_problem()
            if problem is not None:
                raise ArtifactError(problem)
        for leftover in self.root.glob(f"{_TEMP_PREFIX}*"):
            leftover.unlink(missing_ok=True)
        if not self.versions_dir.is_dir():
            return
        manifest = self._read()
        named = set(manifest.names())
        pruned = {name for e in manifest.history for name in e.removed}
        pending = {m.name.removeprefix(_PENDING_PREFIX) for m in self.root.glob(f"{_PENDING_PREFIX}*")}
        for entry in self.versions_dir.iterdir():
            if entry.name in named or not _written_by_registry(entry):
                continue
            # A version folder goes only when the registry knows it for its own debris: pruned, or stored by an
            # add that died before its commit (its marker is still there). Not merely because the manifest does
            # not name it: a manifest restored from a backup does not name the versions added since.
            if _is_staging(entry) or (_holds_version(entry) and (entry.name in pruned or entry.name in pending)):
                shutil.rmtree(entry, ignore_errors=True)
        for version in pending:
            (self.root / f"{_PENDING_PREFIX}{version}").unlink(missing_ok=True)

    def _commit(self, manifest: _Manifest) -> None:
        """Write the manifest aside, fsync it, rename it over the old one, fsync the directory."""
        manifest.generation += 1
        manifest.updated_at = _now()
        payload = json.dumps(manifest.to_json(), indent=2).encode() + b"\n"
        replace_file(self.manifest_path, payload, _TEMP_PREFIX)
        _fsync_path(self.root, directory=True)

    def _event(self, action: str, version: str | None, previous: str | None, reason: str,
               forced: bool = False, removed: tuple[str, ...] = ()) -> Event:
        return Event(at=_now(), action=action, version=version, previous=previous, reason=reason, forced=forced,
                     by=_who(), removed=removed)

    def add(self, model: ScoringModel, metadata: Mapping[str, Any], extra_files: Mapping[str, bytes] | None = None,
            *, action: AddAction = "added", reason: str = "", forced: bool = False,
            expect_live: str | None | Literal[False] = False) -> str:
        """Store a trained model as a new version; with action="publish" it goes live in the same commit.

        action "refused" records that the retrain gate kept it off (the reason says why). With
        `expect_live` (a version or None) the commit is refused if the live version changed meanwhile,
        so a gate decision taken against one live model is never applied over another.
        """
        version = model.version
        _check_name(version)
        with self.locked():
            manifest = self._check_new(version, expect_live)
            _readable_folder(self.versions_dir)
            with self._pending(version):
                target = save_artifact(model, self.versions_dir / version, metadata, extra_files)
                return self._commit_new(manifest, version, target, action, reason, forced)

    def add_artifact(self, artifact_dir: str | Path, *, action: AddAction = "added", reason: str = "",
                     forced: bool = False) -> str:
        """Copy an artifact directory (from `dealscore train --out`) in as a new version, verified first: its own
        files only (metadata.json and the files its checksums cover). Anything else in the folder stays out: the
        version would hold files no checksum vouches for (a demo CRM written into a model's folder came along)."""
        source = Path(artifact_dir)
        meta = verify_artifact(source)
        own = {Path(name).parts[0] for name in artifact_file_names(source) or ()}
        version = str(meta.get("version", ""))
        _check_name(version)
        with self.locked():
            manifest = self._check_new(version, False)
            _readable_folder(self.versions_dir)
            staging = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=self.versions_dir))
            with self._pending(version):
                try:
                    shutil.copytree(source, staging, dirs_exist_ok=True,
                                    ignore=lambda folder, names: [n for n in names if Path(folder) == source
                                                                  and n not in own])
                    readable_by_all(staging)
                    verify_artifact(staging)  # what arrived is what was verified
                    os.replace(staging, self.versions_dir / version)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
                return self._commit_new(manifest, version, self.versions_dir / version, action, reason, forced)

    @contextlib.contextmanager
    def _pending(self, version: str) -> Iterator[None]:
        """A marker beside the manifest while a version's folder exists uncommitted: if this process dies before
        the commit, the next change's sweep knows the folder for a crashed add's (and only then removes it)."""
        marker = self.root / f"{_PENDING_PREFIX}{version}"
        marker.touch()
        _fsync_path(self.root, directory=True)
        try:
            yield
        finally:
            # Kept only while an uncommitted folder is left (a failed clean-up): the next sweep removes both.
            with contextlib.suppress(Exception):
                if not (self.versions_dir / version).exists() or version in self._read().names():
                    marker.unlink(missing_ok=True)

    def _check_new(self, version: str, expect_live: str | None | Literal[False]) -> _Manifest:
        manifest = self._read()
        if version in manifest.names() and expect_live is not False:
            # A retrain's version is its start second and its data's fingerprint: another retrain of the same
            # data, started in the same second, stored it first. Busy, not bad data (it had exited 2).
            raise LiveVersionChanged(f"version {version} was stored in {self.root} by another retrain of the same "
                                     "data, started in the same second, while this one ran; nothing was changed, "
                                     "run the retrain again if it is still wanted")
        if version in manifest.names():
            raise ArtifactError(f"version {version} is already in the model registry at {self.root}")
        if expect_live is not False and manifest.live != expect_live:
            raise LiveVersionChanged(f"the live version of {self.root} changed from {expect_live} to {manifest.live} "
                                     "while the candidate was prepared; nothing was changed, run the retrain again")
        return manifest

    def _commit_new(self, manifest: _Manifest, version: str, target: Path, action: AddAction, reason: str,
                    forced: bool) -> str:
        try:
            if action not in ("added", "refused", "publish"):
                raise ValueError(f"action must be added, refused or publish, got {action!r}")
            for path in sorted(target.rglob("*")):
                if path.is_file():
                    _fsync_path(path)
            _fsync_path(target, directory=True)
            _fsync_path(self.versions_dir, directory=True)  # the folder is on disk before the manifest names it
            previous = manifest.live
            manifest.versions.append(VersionEntry(version, _now()))
            manifest.history.append(self._event(action, version, previous, reason, forced))
            if action == "publish":
                manifest.live = version
            self._commit(manifest)
        except BaseException:
            # Unless the new manifest made it in (a failure after the rename), the folder is an orphan.
            with contextlib.suppress(Exception):
                if version not in self._read().names():
                    shutil.rmtree(target, ignore_errors=True)
            raise
        return version

    def publish(self, version: str, reason: str, forced: bool = False) -> Event | None:
        """Make a stored version live (verified first); None when it already is."""
        with self.locked():
            manifest = self._read()
            self._require(manifest, version)
            if manifest.live == version:
                return None
            self.verify(version)
            event = self._event("publish", version, manifest.live, reason, forced)
            manifest.history.append(event)
            manifest.live = version
            self._commit(manifest)
            return event

    def rollback(self, reason: str) -> Event:
        """Return to the version that was live before the current one was published (verified first)."""
        with self.locked():
            manifest = self._read()
            stack = live_stack(manifest.history)
            if manifest.live is None or len(stack) < 2:
                raise DealscoreError(f"nothing to roll back to in {self.root}: "
                                     + ("no version is live" if manifest.live is None
                                        else f"{manifest.live} is the first version that went live"))
            target = stack[-2]
            if target not in manifest.names():
                raise NotFound(f"cannot roll back to {target}: it is not among the stored versions of {self.root} "
                               "(pruned, or taken out of its manifest); publish one of the stored versions instead "
                               "(`dealscore models list`)")
            self.verify(target)
            event = self._event("rollback", target, manifest.live, reason)
            manifest.history.append(event)
            manifest.live = target
            self._commit(manifest)
            return event

    def protected(self) -> set[str]:
        """Versions prune never removes: the live one and the one a rollback would return to."""
        manifest = self._read()
        stack = live_stack(manifest.history)
        return {v for v in (manifest.live, stack[-2] if len(stack) >= 2 else None) if v is not None}

    def prune(self, keep_last: int) -> list[str]:
        """Drop all but the `keep_last` latest versions, never the live or the previous live one."""
        if keep_last < 1:
            raise DealscoreError(f"keep_last must be at least 1, got {keep_last}")
        with self.locked():
            manifest = self._read()
            keep = set(manifest.names()[-keep_last:]) | self.protected()
            removed = tuple(name for name in manifest.names() if name not in keep)
            if not removed:
                return []
            manifest.versions = [e for e in manifest.versions if e.version in keep]
            manifest.history.append(self._event("prune", None, manifest.live, f"keep the last {keep_last}",
                                                removed=removed))
            self._commit(manifest)
            self._sweep()  # the folders are unnamed now: invisible, and removed here
            return list(removed)


def _written_by_registry(entry: Path) -> bool:
    """A staging or set-aside folder of save_artifact/add_artifact, or a version folder; anything else found
    under versions/ was put there by someone else and is left alone."""
    if not entry.is_dir() or entry.is_symlink():
        return False
    return _is_staging(entry) or (entry / METADATA_FILE).is_file() or not any(entry.iterdir())


def _is_staging(entry: Path) -> bool:
    return entry.name.startswith(".") and (".tmp-" in entry.name or ".old-" in entry.name)


def _holds_version(entry: Path) -> bool:
    """The folder holds the version it is named after (an empty one: a version's folder not yet written)."""
    if not any(entry.iterdir()):
        return True
    try:
        return str(read_metadata(entry).get("version")) == entry.name
    except ArtifactError:
        return False


def _check_name(version: str) -> None:
    if not _VERSION_NAME.fullmatch(version):
        raise DealscoreError(f"version names are letters, digits, '.', '_' and '-' (at most 128, not starting "
                             f"with '.' or '-'), got {version!r}")


# -- the service side of hot reload: no HTTP, no threads of its own -----------------------------------


def warm_up(model: ScoringModel) -> None:
    """A test prediction through every part a request uses; ArtifactError if any of it fails or is wrong.

    Two made-up deals (a prospect and a known client, every feature column filled) are scored with
    reasons, and the known client's gap list is computed. It also pays the one-off costs (lazy native
    initialisation, first-call caches) before traffic does. The service runs it before any model goes live.
    """
    client_id = next(iter(model.spec.client_keys), None)
    try:
        batch = model.score(_warm_up_deals(model, client_id), n_reasons=3)
        if model.profiles is not None and client_id is not None:
            model.profiles.gaps_for([ClientFacts(client_id=str(client_id))], top_k=3)
    except Exception as exc:  # whatever breaks here means the artifact cannot serve
        raise ArtifactError(f"model {model.version} failed its test prediction: {type(exc).__name__}: {exc}") from exc
    p = np.asarray(batch.p_win, dtype=np.float64)
    if p.shape != (2,) or not bool(np.all(np.isfinite(p) & (p >= 0.0) & (p <= 1.0))):
        raise ArtifactError(f"model {model.version} failed its test prediction: p_win {p.tolist()} is not "
                            "two probabilities")


def _warm_up_deals(model: ScoringModel, client_id: str | None) -> dict[str, Any]:
    """A prospect and a known client dated on the model's last history day, so the answer never depends on
    the clock; every numeric feature 1.0 (but the prospect's amount) and every categorical one a level the
    model knows."""
    spec = model.spec
    day = float(model.history.last_day)
    columns: dict[str, Any] = {"deal_id": np.array(["warm-up-1", "warm-up-2"], dtype=object),
                               "created_day": np.array([day, day]),
                               "client_id": np.array([None, client_id], dtype=object),
                               "product": np.array([None, next(iter(spec.product_keys), None)], dtype=object)}
    for name in spec.numeric:
        columns[name] = np.array([1.0, 1.0])
    # The prospect comes without an amount: the value model (when there is one) predicts it, as for such deals.
    columns["amount"] = np.array([np.nan, 1.0])
    for name in spec.categorical:
        level = next(iter(spec.vocab.get(name, {})), None)
        columns[name] = np.array([level, level], dtype=object)
    return columns


# How long a forced check answers a refused version's standing refusal while neither the manifest nor its files
# changed, before it tries the version again.
RETRY_REFUSED_SECONDS = 60.0
# A version folder's entries as stat sees them: (path, inode, size, mtime, ctime), or None for a missing folder.
VersionFiles = tuple[tuple[str, int, int, int, int], ...] | None


def version_files(folder: Path) -> VersionFiles:
    """What would make loading `folder` again give another answer: any entry added, removed, rewritten,
    replaced or given other permissions (ctime) changes this."""
    try:
        entries = [folder, *sorted(folder.rglob("*"))]
        stats = [(str(p.relative_to(folder)), p.lstat()) for p in entries]
    except OSError:  # missing, or unreadable as a whole: the load says which
        return None
    return tuple((name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) for name, st in stats)


@dataclass(frozen=True)
class LoadedVersion:
    version: str
    model: ScoringModel = field(repr=False)  # a model's repr runs to megabytes (its client directory)
    metadata: dict[str, Any] = field(repr=False)
    path: Path


@dataclass(frozen=True)
class RefusedVersion:
    version: str | None  # None: the manifest itself could not be read
    reason: str
    at: str


@dataclass(frozen=True)
class ReloadResult:
    """What a check found: "unchanged", "loaded" (swap `loaded` in) or "refused" (keep serving the old)."""

    status: Literal["unchanged", "loaded", "refused"]
    live_version: str | None  # the version the registry names as live
    loaded: LoadedVersion | None = None
    refused: RefusedVersion | None = None


class LiveModelWatcher:
    """Tells the service when the registry's live version changed, and loads, verifies and warms it.

    The service polls `check(current_version)` (a single stat while nothing changed) and calls
    `check(current_version, force=True)` on POST /v1/admin/reload. It swaps its model reference only
    on "loaded"; on "refused" it keeps serving the old model and shows `last_refused` in /v1/model.
    Thread-safe: concurrent checks run one at a time.
    """

    def __init__(self, registry: Registry, warm: Callable[[ScoringModel], None] = warm_up) -> None:
        self.registry = registry
        self.warm = warm
        self._stamp: ManifestStamp | None = None
        self._checked = False
        self._live: str | None = None  # the live version the manifest named at the last read
        self._lock = threading.Lock()
        self.last_refused: RefusedVersion | None = None
        # The manifest and the refused version's files as they were when it was refused, and when that was: a
        # forced check does not load them again while both are unchanged, for RETRY_REFUSED_SECONDS. Each retry of
        # a 1M-deal model's load held the worker's GIL for some 10 s, and the admin route may be open to anyone;
        # after a while it is tried again, since a refusal may have been passing (a file read failing once, too
        # many open files, memory short during the warm-up: a review).
        self._refused_key: tuple[ManifestStamp | None, VersionFiles] | None = None
        self._refused_since = 0.0

    def check(self, current_version: str | None, *, force: bool = False) -> ReloadResult:
        with self._lock:
            stamp = self.registry.manifest_stamp()  # before reading: a commit after this is seen next time
            if self._checked and stamp == self._stamp and not force:
                return ReloadResult("unchanged", self._live, refused=self._refused_for(current_version))
            self._stamp, self._checked = stamp, True
            try:
                live = self._live = self.registry.live_version()
            except DealscoreError as exc:  # an unreadable manifest: keep the model we have
                self._live = None
                return self._refuse(None, exc.message)
            if live is None and stamp is None:
                # No manifest: a new registry, or one whose manifest was deleted under a serving model; the
                # latter is said (in /v1/model's refused and the metrics), not passed over in silence.
                problem = self.registry.missing_manifest_problem()
                if problem is not None:
                    return self._refuse(None, problem)
            if live is None or live == current_version:
                if live is not None:
                    self.last_refused = None  # e.g. a rollback back to the model being served
                return ReloadResult("unchanged", live)
            # Before loading, so that a change made while it loads is seen next time. (A name that is no version
            # name reads as no folder: the load refuses it.)
            files = version_files(self.registry.versions_dir / live) if _VERSION_NAME.fullmatch(live) else None
            refused = self.last_refused
            if (refused is not None and refused.version == live and (stamp, files) == self._refused_key
                    and time.monotonic() - self._refused_since < RETRY_REFUSED_SECONDS):
                return ReloadResult("refused", live, refused=refused)
            try:
                model, meta = self.registry.load(live)
                self.warm(model)
            except DealscoreError as exc:
                return self._refuse(live, exc.message, (stamp, files))
            except Exception as exc:  # a model that fails in any way must not replace a working one
                return self._refuse(live, f"version {live} could not be loaded or failed its warm-up: "
                                          f"{type(exc).__name__}: {exc}", (stamp, files))
            self.last_refused = None
            return ReloadResult("loaded", live, loaded=LoadedVersion(live, model, meta, self.registry.path_of(live)))

    def _refuse(self, version: str | None, reason: str,
                key: tuple[ManifestStamp | None, VersionFiles] | None = None) -> ReloadResult:
        self.last_refused = RefusedVersion(version=version, reason=reason, at=_now())
        self._refused_key, self._refused_since = key, time.monotonic()
        return ReloadResult("refused", version, refused=self.last_refused)

    def _refused_for(self, current_version: str | None) -> RefusedVersion | None:
        refused = self.last_refused
        return refused if refused is not None and refused.version != current_version else None
