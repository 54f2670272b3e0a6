"""Model artifacts on disk: a directory of joblib files, reports and a metadata.json with checksums.

Writing is atomic (a temporary sibling directory renamed into place), so a crash never leaves a
half-written artifact. It replaces only an earlier artifact or an empty directory: anything else at the
target (a user's folder, a file) is refused untouched, since replacing it would delete it.

Loading verifies every checksum and the library versions before unpickling. metadata.json carries a checksum
of its own content (`metadata_sha256`), which in turn covers the checksums of the other files. They catch a
damaged disk, a half copy or a hand edit; they are not signatures: whoever may write an artifact's folder may
recompute them, and joblib runs code on load. So an artifact is as trusted as whoever may write its folder
(the registry's file permissions: docs/operations.md), unless DEALSCORE_ARTIFACT_KEY is set: every dealscore
process then signs what it writes (an HMAC-SHA256 of the metadata's checksum under that key, `signature`) and
loads only what carries a signature of the same key, checked before anything is unpickled. Whoever may write a
registry but not read the key (shared storage, a backup restored) can then no longer make the service run code.
A format-3 metadata.json without its own checksum (from before there was one) is loaded to learn the model's real
format, so the check runs the pickle too (unless a key is set: unsigned, it is refused first): inspect an
artifact of unknown origin only where its code may run.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import platform
import secrets
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
# The sha256 of metadata.json's canonical content without this field. Artifacts written before it was
# added lack it and still load (registries hold such versions); see metadata_checksum.
METADATA_CHECKSUM = "metadata_sha256"
# HMAC-SHA256 of METADATA_CHECKSUM's value under DEALSCORE_ARTIFACT_KEY (which it covers: every file's checksum);
# outside what METADATA_CHECKSUM covers, so that signing an artifact changes no checksum.
SIGNATURE = "signature"
ARTIFACT_KEY_ENV = "DEALSCORE_ARTIFACT_KEY"
# A key an attacker cannot guess: 32 characters, e.g. `openssl rand -hex 32` (64).
MIN_KEY_LENGTH = 32
MODEL_FILE = "model.joblib"
# The layout of the pickled model. 2: one stacked as-of index for all categorical levels (was one per column);
# 3: product x client attribute level pairs in that index (FeatureSpec.pairs), and PlattCalibration's drift
# term (older code would load such a calibration and silently ignore its drift).
ARTIFACT_FORMAT = 3
# 4: format 3 without the calendar-month feature (`--exclude month`). Written only for such a model, so that
# dealscore versions reading format 3 alone refuse it (they would build a month column the model lacks and
# fail on the first deal) while every other artifact stays readable by them.
MONTHLESS_FORMAT = 4
# 5: a value model whose expected amount is its typical one times a spread other than 1 (ValueModel.spread).
# dealscore before the spread would load it, ignore the spread and value every deal sent without an amount
# below its expected amount (by half on the IT consulting bids), so it must refuse it. (The versions from the
# spread's arrival until this format read the spread and refuse format 5 all the same: a refusal to load is
# loud, a value cut by half is not.) A model with a spread of 1, or none, keeps format 3 or 4.
SPREAD_FORMAT = 5
# 6: a model reading the age of the client history (FeatureSpec.has_history_age). dealscore before it loads such a
# model and fails on its first deal ("spec.names and the features built disagree"): refused by name instead.
HISTORY_AGE_FORMAT = 6
READABLE_FORMATS = (ARTIFACT_FORMAT, MONTHLESS_FORMAT, SPREAD_FORMAT, HISTORY_AGE_FORMAT)


def artifact_format(model: ScoringModel) -> int:
    """The oldest format that reads `model` faithfully (a reader of a format reads every older one)."""
    if getattr(model.spec, "has_history_age", False):
        return HISTORY_AGE_FORMAT
    if model.value_model is not None and getattr(model.value_model, "spread", 1.0) != 1.0:
        return SPREAD_FORMAT
    return ARTIFACT_FORMAT if getattr(model.spec, "has_month", True) else MONTHLESS_FORMAT
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
    """Write the model, extra files (reports) and metadata.json with checksums; atomically.

    `out_dir` may be new, an empty directory or an earlier model artifact (replaced whole); anything else
    is refused with ArtifactError (see check_target) and nothing on disk is changed.
    """
    target = Path(out_dir).resolve()
    check_target(target)
    key = signing_key()  # a malformed key fails here, before anything is written
    target.parent.mkdir(parents=True, exist_ok=True)
    # Private (mkdtemp) until readable_by_all opens it up, once written whole.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        joblib.dump(model, staging / MODEL_FILE, compress=3)
        for name, content in (extra_files or {}).items():
            (staging / name).write_bytes(content)
        checksums = {p.name: _sha256(p) for p in sorted(staging.iterdir()) if p.is_file()}
        full = strict_json({**metadata, "version": model.version, "format": artifact_format(model),
                            "libraries": library_versions(), "checksums": checksums})
        full[METADATA_CHECKSUM] = metadata_checksum(full)
        if key is not None:
            full[SIGNATURE] = _signature(key, full)
        (staging / METADATA_FILE).write_text(_metadata_text(full))
        readable_by_all(staging)
        _replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def readable_by_all(folder: Path) -> None:
    """The folder (0755) and its files (0644) readable by every user, whatever the writer's umask: the service
    may run as another user than the training job (with umask 077 it could not read a published model)."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(0o644)


def check_target(out_dir: str | Path) -> None:
    """Refuse (ArtifactError) a place save_artifact must not write to; changes nothing on disk.

    Writing replaces the whole directory, so it may only hold an earlier artifact: anything else in it
    (`--out ~` names a home directory) would be deleted. Callers may run this before a long training.
    """
    target = Path(out_dir).resolve()
    if not target.exists():
        return
    expected = "expected a new or empty directory or an earlier dealscore model artifact"
    if not target.is_dir():
        raise ArtifactError(f"cannot write the model artifact to {target}: {expected}, got an existing file; "
                            "nothing was changed, choose another directory")
    reason = _why_not_an_artifact(target)
    if reason is not None:
        raise ArtifactError(f"cannot write the model artifact to {target}: {expected}, got a directory that "
                            f"{reason}; writing the model there would delete them, so nothing was changed: "
                            "choose another directory or move those files away")


def _why_not_an_artifact(directory: Path) -> str | None:
    """None for an empty directory or one holding nothing but a model artifact, else what else it holds."""
    names = sorted(p.name for p in directory.iterdir())
    if not names:
        return None
    owned = artifact_file_names(directory)
    if owned is None:
        return (f"holds {_listing(directory, names)} and no model artifact (no {METADATA_FILE} with the "
                "version, format and checksums dealscore writes)")
    foreign = [name for name in names if name not in owned or not _plain_file(directory / name)]
    if foreign:
        return f"holds a model artifact and also {_listing(directory, foreign)}"
    return None


def artifact_file_names(directory: Path) -> set[str] | None:
    """The files of the artifact in `directory` (metadata.json and those its checksums list); None when its
    metadata.json is not one dealscore wrote (so the directory is not an artifact)."""
    path = directory / METADATA_FILE
    if not _plain_file(path):
        return None
    try:
        meta = json.loads(path.read_text(), parse_constant=_null)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    checksums = meta.get("checksums")
    if not (isinstance(meta.get("version"), str) and isinstance(meta.get("format"), int)
            and isinstance(checksums, dict) and MODEL_FILE in checksums):
        return None
    return {METADATA_FILE, *checksums}


def _plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _listing(directory: Path, names: list[str], shown: int = 5) -> str:
    marked = [f"{name}/" if (directory / name).is_dir() else name for name in names[:shown]]
    more = len(names) - shown
    return ", ".join(marked) + (f" and {more} more" if more > 0 else "")


def _replace_directory(staging: Path, target: Path) -> None:
    if not target.exists():
        os.replace(staging, target)
        return
    check_target(target)  # again: the target may have changed while the model was being written
    # A directory cannot be renamed over a non-empty one: move the old aside first, then drop it.
    # Unique, not just per process: a leftover of a crashed run with the same pid must not block this one.
    old = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(old, target)
        raise
    _remove_old_artifact(old)


def _remove_old_artifact(old: Path) -> None:
    """Delete the replaced artifact's own files only: should anything else have appeared in it since the
    check, the folder stays (under its hidden name) rather than taking someone's file with it."""
    owned = artifact_file_names(old) or set()
    for path in old.iterdir():
        if path.name in owned and _plain_file(path):
            path.unlink()
    with contextlib.suppress(OSError):
        old.rmdir()


def _null(_token: str) -> None:
    return None


def strict_json(document: Mapping[str, Any]) -> dict[str, Any]:
    """A document (metadata, a report) as strict JSON values: what json.dumps(default=str) makes of it, with
    NaN and infinities (the AUC of a one-class holdout) as null, since strict JSON readers refuse NaN."""
    plain: dict[str, Any] = json.loads(json.dumps(document, default=str), parse_constant=_null)
    return plain


def metadata_checksum(metadata: Mapping[str, Any]) -> str:
    """sha256 of the metadata's canonical JSON (sorted keys, no spaces, ASCII) without its own checksum.

    Canonical rather than of the file's bytes, so the checksum can live inside the file it covers.
    """
    content = {key: value for key, value in metadata.items() if key not in (METADATA_CHECKSUM, SIGNATURE)}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def signing_key() -> bytes | None:
    """DEALSCORE_ARTIFACT_KEY from the environment (None when unset or empty); a key too short to be secret is
    refused (ArtifactError) rather than used."""
    text = os.environ.get(ARTIFACT_KEY_ENV, "")
    if not text.strip():  # as the service's settings read it: blank is unset
        return None
    if len(text) < MIN_KEY_LENGTH:
        raise ArtifactError(f"{ARTIFACT_KEY_ENV}: expected a secret of at least {MIN_KEY_LENGTH} characters (e.g. "
                            f"the output of `openssl rand -hex 32`), got one of {len(text)}")
    return text.encode()


def _signature(key: bytes, metadata: Mapping[str, Any]) -> str:
    return hmac.new(key, str(metadata[METADATA_CHECKSUM]).encode(), hashlib.sha256).hexdigest()


def _verify_signature(directory: Path, meta: Mapping[str, Any]) -> None:
    """With DEALSCORE_ARTIFACT_KEY set, the artifact must carry a signature of that key (after its metadata
    checksum is verified, which the signature covers; before anything is unpickled)."""
    key = signing_key()
    if key is None:
        return
    signature = meta.get(SIGNATURE)
    if not isinstance(signature, str) or METADATA_CHECKSUM not in meta:
        raise ArtifactError(f"model artifact at {directory} is not signed, and {ARTIFACT_KEY_ENV} is set: only "
                            "artifacts signed with that key are loaded (one you trust can be signed with "
                            "`dealscore sign`)")
    if not hmac.compare_digest(signature, _signature(key, meta)):
        raise ArtifactError(f"model artifact at {directory}: its signature does not match {ARTIFACT_KEY_ENV} (signed "
                            "with another key, or changed since it was signed); refusing to load it")


def sign_artifact(artifact_dir: str | Path) -> bool:
    """Sign an artifact with DEALSCORE_ARTIFACT_KEY after verifying its checksums (not any signature it has: the
    caller vouches for it); metadata.json is replaced atomically. False when it already carried this signature."""
    directory = Path(artifact_dir)
    key = signing_key()
    if key is None:
        raise ArtifactError(f"{ARTIFACT_KEY_ENV} is not set: there is no key to sign with")
    meta = _verified_metadata(directory, signed=False)
    if METADATA_CHECKSUM not in meta:
        raise ArtifactError(f"model artifact at {directory} was written before metadata.json carried its own "
                            "checksum, which the signature covers: retrain it with this version")
    signature = _signature(key, meta)
    if meta.get(SIGNATURE) == signature:
        return False
    replace_file(directory / METADATA_FILE, _metadata_text({**meta, SIGNATURE: signature}).encode())
    return True


def _metadata_text(metadata: Mapping[str, Any]) -> str:
    return json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False)


def replace_file(path: Path, payload: bytes, temporary_prefix: str | None = None) -> None:
    """Write `payload` aside in the same folder, fsync it, make it readable by all (the service may run as another
    user) and rename it over `path`: a reader sees the old file or the new one, whole, never a part."""
    handle, temporary = tempfile.mkstemp(prefix=temporary_prefix or f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_metadata(artifact_dir: str | Path) -> dict[str, Any]:
    path = Path(artifact_dir) / METADATA_FILE
    if not path.is_file():
        hint = ""
        if (Path(artifact_dir) / "manifest.json").is_file() and (Path(artifact_dir) / "versions").is_dir():
            # model/registry.py's layout (it imports this module): the folder ops know is the registry's
            hint = (f": it is a model registry; a model is one of its versions, {Path(artifact_dir) / 'versions'}"
                    f"/<version> (`dealscore models show live --registry {artifact_dir}` names the live one's "
                    "folder), and the service follows it with --registry")
        raise ArtifactError(f"no model artifact at {artifact_dir}: {METADATA_FILE} is missing{hint}")
    try:
        # Artifacts written before metrics were made strict JSON hold bare NaN tokens: read as null, like new ones.
        data = json.loads(path.read_text(), parse_constant=_null)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"model artifact at {artifact_dir}: {METADATA_FILE} is unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"model artifact at {artifact_dir}: {METADATA_FILE} is not an object")
    return data


def _changed(directory: Path, name: str) -> ArtifactError:
    return ArtifactError(f"model artifact at {directory}: file {name} does not match its checksum "
                         "(changed or corrupted after training); refusing to load it")


def _verify_metadata_checksum(directory: Path, meta: Mapping[str, Any]) -> None:
    if METADATA_CHECKSUM not in meta:
        if meta.get("format") in (MONTHLESS_FORMAT, SPREAD_FORMAT, HISTORY_AGE_FORMAT):
            # Formats 4 to 6 came after the metadata's own checksum: one without it had the key deleted, which
            # switched the check off for any edit of metadata.json (a CLI review).
            raise _changed(directory, METADATA_FILE)
        return  # format 3, written before metadata.json covered itself; registries still hold such versions
    try:
        expected = metadata_checksum(meta)
    except ValueError:  # a number too large for a float (1e400 reads as infinity): never written so
        raise _changed(directory, METADATA_FILE) from None
    if meta[METADATA_CHECKSUM] != expected:
        raise _changed(directory, METADATA_FILE)


def verify_artifact(artifact_dir: str | Path) -> dict[str, Any]:
    """Check checksums and library versions; return the metadata. Raises ArtifactError on any mismatch: on
    whatever load_artifact would refuse, so that a version the registry commands call verified also serves."""
    meta = _verified_metadata(Path(artifact_dir))
    if METADATA_CHECKSUM not in meta:
        # A format-3 metadata.json without its own checksum (written before there was one) says nothing of the
        # model's real format: the model itself does, at the cost of loading it (only for such old versions).
        # An edited 4 or 5 relabelled 3 passed here, was published as "verified", and then never served.
        _load_model(Path(artifact_dir), meta)
    return meta


def _verified_metadata(directory: Path, signed: bool = True, model_checked_on_load: bool = False) -> dict[str, Any]:
    """The metadata, once its checksum, signature (`signed`), every file's checksum, format and library versions
    are as written. `model_checked_on_load`: model.joblib is left to _load_model, which checks the bytes it
    unpickles (read here too, it would be read twice)."""
    meta = read_metadata(directory)
    _verify_metadata_checksum(directory, meta)  # first: the file checksums below are only as good as it
    if signed:
        _verify_signature(directory, meta)
    checksums = meta.get("checksums")
    if not isinstance(checksums, dict) or MODEL_FILE not in checksums:
        raise ArtifactError(f"model artifact at {directory}: metadata lists no checksums")
    for name, expected in checksums.items():
        if not (directory / name).is_file():
            raise ArtifactError(f"model artifact at {directory}: file {name} is missing")
        if name != MODEL_FILE or not model_checked_on_load:
            _checked_bytes(directory, name, expected)
    if meta.get("format") not in READABLE_FORMATS:
        raise ArtifactError(f"model artifact at {directory} has format {meta.get('format')!r}, this dealscore "
                            f"reads formats {min(READABLE_FORMATS)} to {max(READABLE_FORMATS)}; retrain the model with "
                            "this version")
    recorded = meta.get("libraries", {})
    running = library_versions()
    for name in PINNED_LIBRARIES:
        then, now = str(recorded.get(name, "?")), running.get(name, "?")
        if then.split(".")[:2] != now.split(".")[:2]:
            raise ArtifactError(f"model artifact at {directory} was written with {name} {then}, this process "
                                f"runs {name} {now}; retrain the model or install {name}=={then}")
    return meta


def load_artifact(artifact_dir: str | Path) -> tuple[ScoringModel, dict[str, Any]]:
    meta = _verified_metadata(Path(artifact_dir), model_checked_on_load=True)
    return _load_model(Path(artifact_dir), meta), meta


def _load_model(artifact_dir: Path, meta: Mapping[str, Any]) -> ScoringModel:
    # The bytes unpickled are the bytes checked, from one read: hashing the file and then opening it again let
    # whoever may write the folder swap in another pickle between the two (a security review ran an unsigned
    # pickle's code in 5 of 30 loads of a signed artifact, its model.joblib swapped in a loop).
    payload = _checked_bytes(artifact_dir, MODEL_FILE, (meta.get("checksums") or {}).get(MODEL_FILE))
    try:
        model = joblib.load(io.BytesIO(payload))
    except Exception as exc:  # unpickling errors come in many types; all mean the same to the caller
        raise ArtifactError(f"model artifact at {artifact_dir} could not be loaded: {exc}") from exc
    if not isinstance(model, ScoringModel):
        raise ArtifactError(f"model artifact at {artifact_dir} does not hold a scoring model")
    if METADATA_CHECKSUM not in meta and artifact_format(model) != ARTIFACT_FORMAT:
        # A model only formats 4 and 5 read was written after the metadata's checksum existed: without it, the key
        # was deleted and `format` relabelled 3 to pass _verify_metadata_checksum (a review).
        raise _changed(artifact_dir, METADATA_FILE)
    return model


def _checked_bytes(directory: Path, name: str, expected: object) -> bytes:
    """A file's bytes, once they match the checksum the (verified, and with a key signed) metadata lists for it."""
    try:
        payload = (directory / name).read_bytes()
    except OSError as exc:  # unreadable by this user: an input to fix, not an unexpected failure (exit 1)
        raise ArtifactError(f"model artifact at {directory}: file {name} cannot be read "
                            f"({exc.strerror or type(exc).__name__})") from None
    if not isinstance(expected, str) or not hmac.compare_digest(hashlib.sha256(payload).hexdigest(), expected):
        raise _changed(directory, name)
    return payload
