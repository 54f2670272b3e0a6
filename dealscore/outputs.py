"""Atomic output files: written beside the target, then renamed, so a failure leaves no half file.

The file is created as open() would create it (mode 0666 less the process umask), so whoever may read a
file this user writes (a CRM import job running as another user) may read the output. Folders missing on
the way to it are created, as `dealscore train --out` does for its artifact. Only a regular file can be
replaced so: a device or a pipe named as the output is refused (renaming over /dev/null, as root, would
replace the device itself).
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import pandas as pd

from model.errors import DealscoreError

OUT_OPTION = "--out"  # the option that names the output file in every command that writes one


def check_output_file(path: str | Path, option: str = OUT_OPTION,
                      inputs: Mapping[str, str | None] | None = None) -> Path | None:
    """Refuse, before any work, a path that cannot become the output file; return the first folder that
    writing it will create (None: its folder exists). `inputs`: the command's input files by option; the
    output may be none of them (`score --deals f.csv --out f.csv` replaced the export with its scores).

    Checked up front so that an hour of scoring does not end in a failed rename; write_csv_atomically
    still reports what changes in between.
    """
    refuse_dash(path, option, "a file")
    target = Path(path)
    csv_compression(path, option)  # a name of another format is refused before any work
    stream = _standard_stream(path)
    if stream is not None:
        # /dev/stdout resolves to wherever the shell sent the output: with `>> cron.log`, to that log, which the
        # rename below then replaced whole (its earlier lines lost), where the user meant to append to it.
        raise DealscoreError(f"{option}: expected a file to write, got {path}, {stream} (written whole beside it "
                             "and renamed over it, not appended to: a log the shell writes there would lose its "
                             "earlier lines); name another file")
    if target.is_dir():
        raise DealscoreError(f"{option}: expected a file to write, got the folder {path}")
    if str(path).endswith(("/", os.sep)):  # "out/new/" names a folder to be; it was written as a file "out/new"
        raise DealscoreError(f"{option}: expected a file to write, got {path}, a folder's name (it ends in /)")
    if target.exists() and not target.is_file():
        raise DealscoreError(f"{option}: expected a regular file (written whole beside it, then renamed into "
                             f"place), got {path}, {_kind(target)}; write to a file and copy it there")
    for input_option, source in (inputs or {}).items():
        if source is not None and _same_file(target, Path(source)):
            raise DealscoreError(f"{option}: expected a file other than the command's inputs, got {path}, which is "
                                 f"also {input_option}: writing it would replace that input")
        if source is not None and Path(source).is_dir() and _inside(target, Path(source)):
            raise DealscoreError(f"{option}: expected a file outside the command's inputs, got {path}, inside "
                                 f"{input_option} {source}: writing it there would change that input")
    # A link is written through (write_csv_atomically resolves it): the folder that matters is its target's.
    written = target.resolve() if target.is_symlink() else target
    return _folders_to_create(written.parent, option, path, "a file in a folder")


# A process's file descriptors by name: /dev/stdout, /dev/fd/1, /proc/self/fd/1, /proc/self/task/7/fd/1.
_DESCRIPTOR = re.compile(r"^/dev/(?:stdin|stdout|stderr|fd/\d+)$|^/proc/[^/]+/(?:task/[^/]+/)?fd/\d+$")
# Where the command writes: the output replaced there is what a shell appends to (standard input it only reads,
# and `--out f.csv < f.csv` writes nothing it reads from: the inputs' own check names that).
_STREAMS = ((1, "the command's standard output"), (2, "the command's standard error"))


def _standard_stream(path: str | Path) -> str | None:
    """What `path` is, when it is no file of its own to replace: one of this command's standard streams (by any
    name: /dev/stdout, a link to /dev/fd, or the very file the shell appends the output to), or a name of a
    process's file descriptor (/dev/fd/7, /proc/<pid>/fd/1). None otherwise."""
    try:
        found = os.stat(path)
    except OSError:
        found = None
    if found is not None:
        for fd, name in _STREAMS:
            try:
                if os.path.samestat(found, os.fstat(fd)):
                    return name
            except OSError:  # a stream the command was started without
                continue
    # By name, each folder on the way resolved (a link to /dev/fd is /proc/self/fd), "//" read as "/".
    folder, name = os.path.split(os.path.abspath(path))
    where = os.path.join(os.path.realpath(folder), name)
    if _DESCRIPTOR.match(where) or (os.path.islink(where) and _DESCRIPTOR.match(os.path.realpath(where))):
        return "a name of a process's file descriptor"
    return None


def refuse_dash(path: str | Path, option: str, what: str) -> None:
    """`-`, Unix tools' name for the standard output, refused: every output here is a file or a folder of its own
    (it was written as one named "-")."""
    if str(path) == "-":
        raise DealscoreError(f"{option}: expected {what} to write, got -, which Unix tools read as the standard "
                             f"output: this command writes {what} of its own; name it")


def _kind(path: Path) -> str:
    mode = path.stat().st_mode
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a pipe"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "no regular file")


def _inside(path: Path, folder: Path) -> bool:
    """`path` is `folder` or lies under it (links resolved: the model's folder under another name too)."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def check_artifact_place(path: str | Path, option: str = OUT_OPTION) -> Path | None:
    """Refuse, before a training, a place its artifact cannot be written to; return the first folder writing it
    will create (None: its folder exists).

    The artifact is staged in a new folder beside the target and renamed into place, so the target's folder
    must take one (a folder that is a file, a read-only mount or /proc failed only after the whole fit).
    Inside a model registry it is refused: versions there are added by `dealscore models add` or `retrain`,
    and one written over in place swapped the live model's files.
    """
    target = Path(path).resolve()
    for folder in (target, *target.parents):
        if _is_registry(folder):
            raise DealscoreError(f"{option}: expected a folder outside a model registry, got {path}, inside the "
                                 f"registry {folder}: add a trained model to it with `dealscore models add`")
    return _folders_to_create(target.parent, option, path, "a folder in a folder")


def _is_registry(folder: Path) -> bool:
    """A dealscore model registry: a manifest.json of the registry's format beside its versions folder (a
    browser extension's manifest.json beside a migrations' versions/ is none)."""
    from model.registry import MANIFEST_FILE, REGISTRY_FORMAT, VERSIONS_DIR  # (it loads the scorer: only here)

    manifest = folder / MANIFEST_FILE
    if not (manifest.is_file() and (folder / VERSIONS_DIR).is_dir()):
        return False
    try:
        data = json.loads(manifest.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == REGISTRY_FORMAT and isinstance(data.get("versions"), list)


def _same_file(a: Path, b: Path) -> bool:
    """One file under two names (links and relative paths included); a SQL source is never a file here."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_folder(path: str | Path, option: str = OUT_OPTION) -> Path | None:
    """As check_output_file, for a command that writes several files into a folder (demo-data)."""
    refuse_dash(path, option, "a folder")
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise DealscoreError(f"{option}: expected a folder to write into, got the file {path}")
    if target.is_symlink() and not target.exists():
        raise DealscoreError(f"{option}: expected a folder to write into, got a link to nothing ({path} -> "
                             f"{os.readlink(target)})")
    return _folders_to_create(target, option, path, "a folder")


def _folders_to_create(folder: Path, option: str, path: str | Path, expected: str) -> Path | None:
    """The first missing folder on the way to `folder` (None: it exists), once its nearest existing one is
    known to be a folder this user may write in."""
    first_missing = None
    while not folder.exists():  # relative paths end in ".", which exists
        folder, first_missing = folder.parent, folder
    if not folder.is_dir():
        raise DealscoreError(f"{option}: expected {expected}, got {path}, but {folder} is a file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DealscoreError(f"{option}: expected {expected} you may write to, got {path}, "
                             f"but {folder} is not writable")
    try:  # access() says yes to root everywhere, /proc included: making a folder there is the real test
        os.rmdir(tempfile.mkdtemp(prefix=".dealscore-probe-", dir=folder))
    except OSError as exc:
        if disk_full(exc):
            raise _full(option, path, exc) from None
        raise DealscoreError(f"{option}: expected {expected} you may write to, got {path}, but {folder} takes "
                             f"no new file or folder ({exc.strerror or type(exc).__name__})") from None
    return first_missing


def disk_full(exc: OSError) -> bool:
    """No space left (ENOSPC) or a disk quota used up (EDQUOT): the machine's state, not the input's."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _full(option: str, path: str | Path, exc: OSError) -> DealscoreError:
    """The disk `path` goes to is full: no fault of the option, so exit 4 (run it again once there is space)."""
    error = DealscoreError(f"{option}: no space left where {path} is written ({exc.strerror}); nothing "
                           "half-written is left: free space and run it again")
    error.transient = True
    return error


# Output names that promise another format or another packing: written as CSV text under them, the next reader
# failed on the file. A CSV is compressed as the inputs read one: .csv.gz.
OTHER_FORMATS = (".parquet", ".pq", ".feather", ".arrow", ".xlsx", ".xls", ".json", ".jsonl", ".gz", ".bz2", ".xz",
                 ".zst", ".zip", ".tar", ".tgz", ".7z", ".lz4", ".br")


def csv_compression(path: str | Path, option: str = OUT_OPTION) -> Literal["gzip"] | None:
    """How an output named `path` is compressed (None: plain CSV); refused when the name promises another format
    (`--out scores.parquet` was CSV text, exit 0: an input review)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes[-2:] == [".csv", ".gz"]:
        return "gzip"
    named = next((s for s in reversed(suffixes) if s in OTHER_FORMATS), None)
    if named is not None:
        raise DealscoreError(f"{option}: expected a CSV file's name (.csv, or .csv.gz to compress it, as the inputs "
                             f"read one), got {path}, which names a {named} file: the output is CSV")
    return None


def write_csv_atomically(frame: pd.DataFrame, path: str | Path, option: str = OUT_OPTION) -> Path:
    compression = csv_compression(path, option)
    target = Path(path).resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = _new_file_beside(target)
    except OSError as exc:
        raise _unwritable(option, path, exc) from None
    try:
        if compression is None:
            with os.fdopen(handle, "w", newline="") as stream:
                frame.to_csv(stream, index=False)
        else:
            with os.fdopen(handle, "wb") as binary:
                frame.to_csv(binary, index=False, compression=compression)
        os.replace(temporary, target)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _unwritable(option, path, exc) from None
        raise
    return target


def _new_file_beside(target: Path) -> tuple[int, Path]:
    """A new empty file next to `target`, open for writing, with the mode open() would give it.

    Not tempfile.mkstemp: its files are 0600 whatever the umask, and the rename would hand that mode on to
    the output. O_EXCL keeps the name ours alone, as mkstemp does.
    """
    for _ in range(100):
        candidate = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {target}")


def _unwritable(option: str, path: str | Path, exc: OSError) -> DealscoreError:
    if isinstance(exc, IsADirectoryError) and Path(path).is_dir():
        return DealscoreError(f"{option}: expected a file to write, got the folder {path}")
    if disk_full(exc):  # as any other write that fills the disk (dealscore.cli): exit 4, run it again
        return _full(option, path, exc)
    return DealscoreError(f"{option}: expected a file that can be written, got {path} "
                          f"({exc.strerror or type(exc).__name__})")
