"""Where the commands may write: found by a CLI review, each refused before any work and with nothing changed."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from service_fixtures import (  # noqa: F401 (fixtures, registered by name)
    fixture_service_artifact,
    fixture_service_crm,
    fixture_service_dataset,
    fixture_service_training,
)
from test_cli_inputs import offline_command, run

from model.errors import DealscoreError
from training.synthetic_crm import SyntheticCRM, write


@pytest.fixture(scope="module")
def crm_files(service_crm: SyntheticCRM, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crm")
    write(service_crm, folder)
    return folder


def file_checksums(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("command", ["score", "gaps", "clients"])
def test_a_pipe_named_as_out_is_refused_not_replaced(command: str, crm_files: Path, service_artifact: Path,
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The output is written beside its target and renamed over it: over a device (as root, /dev/null or
    /dev/full for the whole machine) or a pipe, that replaced the node itself with a file."""
    pipe = tmp_path / "scores.csv"
    os.mkfifo(pipe)
    code, err = run(offline_command(command, crm_files, service_artifact, pipe), capsys)
    assert code == 2, err
    assert f"--out: expected a regular file (written whole beside it, then renamed into place), got {pipe}, a pipe" \
        in err
    assert stat.S_ISFIFO(pipe.stat().st_mode)


@pytest.mark.parametrize("out", ["/dev/stdout", "/dev/fd/1", "//dev/fd/1", "/proc/self/fd/1", "link", "folder link",
                                 "the log itself"])
def test_out_naming_the_commands_own_output_is_refused_and_the_log_it_appends_to_kept(
        out: str, crm_files: Path, service_artifact: Path, tmp_path: Path) -> None:
    """An ops review: `score --out /dev/stdout >> cron.log` resolved to cron.log and replaced it with the scores,
    its earlier lines lost (refused only when stdout was a pipe or a terminal). The diff review: a link to the
    /dev/fd folder, a leading //, or the log's own name got past a check of the name alone."""
    log = tmp_path / "cron.log"
    log.write_text("an earlier line\n")
    if out == "link":
        (tmp_path / "link").symlink_to("/dev/stdout")
        out = str(tmp_path / "link")
    elif out == "folder link":
        (tmp_path / "fds").symlink_to("/dev/fd")
        out = str(tmp_path / "fds" / "1")
    elif out == "the log itself":
        out = str(log)
    with log.open("ab") as appended:
        done = subprocess.run([sys.executable, "-m", "dealscore",
                               *offline_command("score", crm_files, service_artifact, Path(out))],
                              stdout=appended, stderr=subprocess.PIPE, text=True, check=False)
    assert done.returncode == 2, done.stderr
    assert f"--out: expected a file to write, got {out}, the command's standard output" in done.stderr
    assert log.read_text() == "an earlier line\n"


def test_out_over_the_file_read_as_standard_input_is_not_taken_for_a_stream(
        crm_files: Path, service_artifact: Path, tmp_path: Path) -> None:
    """The review of the first version: `--out f.csv < f.csv` was refused as "the command's standard input", a
    stream the command never writes."""
    out = tmp_path / "scores.csv"
    out.write_text("old scores\n")
    with out.open("rb") as given:
        done = subprocess.run([sys.executable, "-m", "dealscore",
                               *offline_command("score", crm_files, service_artifact, out)],
                              stdin=given, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert out.read_text().startswith("deal_id,")


def test_out_naming_a_folder_to_be_is_refused(crm_files: Path, service_artifact: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`--out out/new/` wrote a file named out/new."""
    argv = offline_command("score", crm_files, service_artifact, tmp_path / "new")
    code, err = run([*argv[:-1], f"{tmp_path / 'new'}/"], capsys)
    assert code == 2 and "a folder's name (it ends in /)" in err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("command", ["score", "gaps"])
def test_out_inside_the_model_is_refused(command: str, crm_files: Path, service_artifact: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`gaps --model m --out m/model.joblib` wrote over the model, which every later load then refused."""
    model = tmp_path / "model"
    shutil.copytree(service_artifact, model)
    before = file_checksums(model)
    code, err = run(offline_command(command, crm_files, model, model / "model.joblib"), capsys)
    assert code == 2, err
    assert f"expected a file outside the command's inputs, got {model / 'model.joblib'}, inside --model" in err
    assert file_checksums(model) == before


def test_a_full_disk_is_said_with_the_file_and_retried_later_not_an_unexpected_failure(
        crm_files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An ops review: train and retrain on a full disk ended "unexpected failure: OSError: [Errno 28]", exit 1,
    which pages someone for a bug; the earlier artifact was intact all the same."""
    import joblib

    def full(_value: object, filename: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))

    monkeypatch.setattr(joblib, "dump", full)
    out = tmp_path / "model"
    code, err = run(["train", "--deals", str(crm_files / "deals.csv"), "--threads", "1", "--out", str(out)], capsys)
    assert code == 4, err
    assert "dealscore train: no space left writing " in err and "model.joblib (No space left on device" in err
    assert "unexpected failure" not in err and not out.exists()
    # An output file that fills the disk as it is written: exit 4 as well (it was 2, "bad input").
    import pandas as pd

    def full_csv(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_csv)
    scores = tmp_path / "clients.csv"
    code, err = run(offline_command("clients", crm_files, tmp_path, scores), capsys)
    assert code == 4 and f"--out: no space left where {scores} is written" in err and not scores.exists(), err
    # A disk already full when the place is checked, before any work (the diff review: that said exit 2).
    import tempfile

    def no_folder(*_args: object, **_kwargs: object) -> str:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkdtemp", no_folder)
    code, err = run(offline_command("clients", crm_files, tmp_path, scores), capsys)
    assert code == 4 and f"--out: no space left where {scores} is written" in err, err


def test_a_database_on_a_full_disk_is_run_again_later_not_bad_input() -> None:
    import sqlite3

    import sqlalchemy as sa

    from dealscore.feedback_commands import _at

    class Database:
        url = shown_url = "sqlite:///x.db"
        engine = None

    def full(_engine: object) -> None:
        raise sa.exc.OperationalError("UPDATE", {}, sqlite3.OperationalError("database or disk is full"))

    def missing(_engine: object) -> None:
        raise sa.exc.OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: outcomes"))

    with pytest.raises(DealscoreError) as raised:
        _at(Database(), full)
    assert raised.value.transient and "database or disk is full" in raised.value.message
    with pytest.raises(DealscoreError) as raised:
        _at(Database(), missing)
    assert not raised.value.transient


def test_train_out_under_a_file_is_refused_before_reading_data(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """It trained in full, then ended as an 'unexpected failure' (exit 1) at the rename."""
    (tmp_path / "afile").write_text("x")
    code, err = run(["train", "--deals", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "afile" / "m")],
                    capsys)
    assert code == 2, err
    assert f"--out: expected a folder in a folder, got {tmp_path / 'afile' / 'm'}, but {tmp_path / 'afile'} is a " \
           "file" in err


def test_train_out_inside_a_registry_is_refused(service_artifact: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`train --out REG/versions/LIVE` replaced the live model's files in place."""
    from model.registry import Registry

    registry = Registry(tmp_path / "reg")
    registry.add_artifact(service_artifact)
    version_folder = next(p for p in (registry.root / "versions").iterdir() if not p.name.startswith("."))
    code, err = run(["train", "--deals", str(tmp_path / "missing.csv"), "--out", str(version_folder)], capsys)
    assert code == 2, err
    assert f"--out: expected a folder outside a model registry, got {version_folder}, inside the registry " \
           f"{registry.root}" in err
    # Another program's manifest.json beside a versions/ folder (a browser extension, migrations) is no registry.
    other = tmp_path / "project"
    (other / "versions").mkdir(parents=True)
    (other / "manifest.json").write_text(json.dumps({"name": "an extension", "version": "1.0"}))
    code, err = run(["train", "--deals", str(tmp_path / "missing.csv"), "--out", str(other / "model")], capsys)
    assert code == 2 and "outside a model registry" not in err and "missing.csv" in err, err


def test_a_link_to_nowhere_writable_is_refused_before_any_work(
        crm_files: Path, service_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The checks looked at the link's own folder while the output is written where the link points: a link into
    a place that takes no file failed only after the scoring (a review)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "afile").write_text("x")
    link = tmp_path / "scores.csv"
    link.symlink_to(locked / "afile" / "scores.csv")
    code, err = run(offline_command("score", crm_files, service_artifact, link), capsys)
    assert code == 2, err
    assert f"but {locked / 'afile'} is a file" in err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc on this system")
def test_train_out_where_no_folder_can_be_made_is_refused_before_reading_data(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """access() says yes to root everywhere, /proc included: the artifact's staging folder failed only after the
    whole fit. Making a folder there is the test."""
    code, err = run(["train", "--deals", str(tmp_path / "missing.csv"), "--out", "/proc/dealscore-model"], capsys)
    assert code == 2, err
    assert "--out: expected a folder in a folder you may write to, got /proc/dealscore-model, but /proc takes no new " \
           "file or folder" in err


def test_score_names_products_the_model_never_saw(crm_files: Path, service_artifact: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A product renamed in the CRM ("Acquiring Services" for "acquiring") changed the deals' scores without a word
    (a database-inputs review); a spelling that differs in case and spaces alone is the product seen."""
    import pandas as pd

    deals = pd.read_csv(crm_files / "deals.csv", dtype=str, keep_default_na=False).head(30)
    deals["product"] = ["Acquiring Services"] * 5 + ["  LEASING "] * 5 + deals["product"].tolist()[10:]
    deals.to_csv(tmp_path / "deals.csv", index=False)
    code, err = run(["score", "--model", str(service_artifact), "--deals", str(tmp_path / "deals.csv"),
                     "--out", str(tmp_path / "scores.csv")], capsys)
    assert code == 0, err
    assert ("note: 5 of 30 deals name a product the model never saw ('Acquiring Services'): scored without its "
            "history, as a new product") in err
    assert "the model knows 'acquiring', " in err
    code, err = run(offline_command("score", crm_files, service_artifact, tmp_path / "known.csv"), capsys)
    assert code == 0 and "a product the model never saw" not in err


def test_ids_the_model_does_not_know_are_said_by_score_and_gaps(crm_files: Path, service_artifact: Path,
                                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                               ) -> None:
    """An export whose client ids changed form ("10" for "C00010") scored every deal as a prospect, and gave each
    client its held products as gaps, both exit 0 and without a word (an input review)."""
    import pandas as pd

    deals = pd.read_csv(crm_files / "deals.csv", dtype=str, keep_default_na=False).head(40)
    clients = pd.read_csv(crm_files / "clients.csv", dtype=str, keep_default_na=False).head(10)
    for table in (deals, clients):
        table["client_id"] = table["client_id"].str.lstrip("C0")
    deals.to_csv(tmp_path / "deals.csv", index=False)
    clients.to_csv(tmp_path / "clients.csv", index=False)
    code, err = run(["score", "--model", str(service_artifact), "--deals", str(tmp_path / "deals.csv"),
                     "--out", str(tmp_path / "scores.csv")], capsys)
    assert code == 0 and "40 of 40 deals name a client_id neither the model nor the clients table knows (" in err
    assert "scored as prospects, without client history or attributes" in err
    assert "the model knows ids like 'C0" in err
    code, err = run(["gaps", "--model", str(service_artifact), "--clients", str(tmp_path / "clients.csv"),
                     "--out", str(tmp_path / "gaps.csv")], capsys)
    assert code == 0 and "10 of 10 clients are unknown to the model (" in err
    assert "and no --holdings was given: they count as holding nothing" in err
    code, err = run(offline_command("score", crm_files, service_artifact, tmp_path / "known.csv"), capsys)
    assert code == 0 and "neither the model nor the clients table knows" not in err
    code, err = run(["gaps", "--model", str(service_artifact), "--clients", str(crm_files / "clients.csv"),
                     "--out", str(tmp_path / "known_gaps.csv")], capsys)
    assert code == 0 and "unknown to the model" not in err


@pytest.mark.parametrize("command", ["score", "gaps", "clients"])
def test_an_output_named_as_another_format_is_refused_and_a_compressed_one_compressed(
        command: str, crm_files: Path, service_artifact: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`--out scores.parquet` was written as CSV text, exit 0, and the next Parquet reader failed (an input
    review); `--out scores.csv.gz`, which the inputs read as gzip, was plain text too."""
    import gzip

    import pandas as pd

    for name in ("scores.parquet", "scores.XLSX", "scores.json.gz", "scores.csv.bz2", "scores.gz", "scores.csv.zst"):
        code, err = run(offline_command(command, crm_files, service_artifact, tmp_path / name), capsys)
        assert code == 2 and f"--out: expected a CSV file's name (.csv, or .csv.gz to compress it, as the inputs " \
            f"read one), got {tmp_path / name}, which names a " in err
        assert not (tmp_path / name).exists()
    code, err = run(offline_command(command, crm_files, service_artifact, tmp_path / "plain.csv"), capsys)
    assert code == 0, err
    code, err = run(offline_command(command, crm_files, service_artifact, tmp_path / "packed.csv.gz"), capsys)
    assert code == 0, err
    with gzip.open(tmp_path / "packed.csv.gz", "rt", newline="") as packed:
        assert packed.read() == (tmp_path / "plain.csv").read_text()
    assert len(pd.read_csv(tmp_path / "packed.csv.gz")) == len(pd.read_csv(tmp_path / "plain.csv"))


def test_out_dash_is_refused_not_written_as_a_file_named_dash(crm_files: Path, service_artifact: Path,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # `-` was written as a file of that name in the working folder (a new-user review)
    code, err = run(offline_command("score", crm_files, service_artifact, Path("-")), capsys)
    assert code == 2 and "--out: expected a file to write, got -, which Unix tools read as the standard output: " \
        "this command writes a file of its own; name it" in err
    # ... and as a folder by the commands that write one (the diff review)
    for command in (["demo-data", "--out", "-", "--deals", "300"],
                    ["train", "--deals", str(crm_files / "deals.csv"), "--out", "-"]):
        code, err = run(command, capsys)
        assert code == 2 and "--out: expected a folder to write, got -, which Unix tools read as the standard " \
            "output" in err, command
    assert not (tmp_path / "-").exists()


def test_unknown_client_ids_are_not_said_for_a_model_that_reads_nothing_of_clients() -> None:
    """A model trained without client ids or a clients table scores alike whatever the ids: the note sent its user
    after an id mismatch that changed nothing (the diff review)."""
    from types import SimpleNamespace

    import pandas as pd

    from dealscore.offline import _prospects_note

    spec = SimpleNamespace(has_client_history=False, has_client_since=False, client_extras=(),
                           categorical=["product", "source"], numeric=["amount"], client_keys={})
    deals = pd.DataFrame({"deal_id": ["D1", "D2"], "client_id": ["X1", "X2"]})
    assert _prospects_note(SimpleNamespace(spec=spec, clients={}), deals, None) is None
    reading = SimpleNamespace(spec=SimpleNamespace(**{**vars(spec), "categorical": ["product", "industry"]}),
                              clients={"C1": {"industry": "retail"}})
    assert (_prospects_note(reading, deals, None) or "").startswith("2 of 2 deals name a client_id neither the model")
