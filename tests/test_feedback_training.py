"""The monthly loop without exports: logged deals and their outcomes are a training source, and the
`dealscore quality` / `dealscore db` commands work on the same database."""

from __future__ import annotations

import argparse
import socket
import uuid
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from test_feedback_helpers import (  # noqa: F401 (fixtures)
    POSTGRES_URL,
    batch,
    count,
    database_url_fixture,
    postgres_unreachable,
    running,
    with_search_path,
)

from dealscore.feedback_commands import add_feedback_commands
from model.dataset import load_dataset
from model.errors import DealscoreError
from service.feedback.outcomes import Outcome
from service.feedback.training import extra_fields, training_source
from training.fit import TrainConfig, train
from training.synthetic_crm import generate


def _payload(record: Mapping[Any, Any], clients: dict[str, dict[str, Any]]) -> dict[str, Any]:
    deal = {k: (v.date().isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in record.items()
            if k not in ("status", "closed_at") and not (v is None or v is pd.NaT or (isinstance(v, float) and v != v))}
    client = clients.get(str(record["client_id"]))
    if client is not None:
        deal["client"] = client
    return deal


def _log_crm(feedback: Any, n_deals: int = 700) -> pd.DataFrame:
    crm = generate(seed=3, n_deals=n_deals)
    clients = {str(c["client_id"]): {"client_id": c["client_id"], "industry": c["industry"], "size": c["size"],
                                     "region": c["region"], "since": c["since"].date().isoformat()}
               for c in crm.clients.to_dict("records")}
    records = crm.deals.to_dict("records")
    rng = np.random.default_rng(0)
    for start in range(0, len(records), 100):
        chunk = records[start:start + 100]
        p = rng.uniform(0.05, 0.95, len(chunk))
        feedback.record_scores(f"r{start}", "v1", [_payload(r, clients) for r in chunk],
                               batch(list(p), list(p * 1000), ["B"] * len(chunk)))
    feedback.flush_score_log()
    closed = crm.deals[crm.deals["status"] != "open"]
    feedback.record_outcomes([Outcome(str(r["deal_id"]), r["status"], float(r["amount"]),
                                      pd.Timestamp(r["closed_at"]).date()) for r in closed.to_dict("records")])
    return crm.deals


def test_logged_deals_and_outcomes_train_a_model(database_url: str, tmp_path: Path) -> None:
    with running(database_url, tmp_path / "spool") as feedback:
        deals = _log_crm(feedback)
        engine = feedback.database.engine
        assert extra_fields(engine) == {"campaign_code": "text", "competitor": "text", "source": "text"}
        source = training_source(engine, database_url)
        core = training_source(engine, database_url, flatten_extras=False)
        assert core == f"{database_url}::training_deals"
        dataset = load_dataset(source, clients=f"{database_url}::training_clients", for_training=True,
                               today=date(2026, 1, 15))

    got = dataset.deals.set_index("deal_id").sort_index()
    want = deals.set_index("deal_id").sort_index()
    assert len(got) == len(want)
    assert (got["status"] == want["status"]).all()
    assert (got["created_at"] == want["created_at"]).all()
    assert got["closed_at"].equals(want["closed_at"].astype(got["closed_at"].dtype))
    assert np.allclose(got["amount"], want["amount"], equal_nan=True)
    assert set(dataset.extra_columns) >= {"source", "campaign_code", "competitor"}
    assert dataset.clients is not None and {"industry", "size", "region"} <= set(dataset.clients.columns)
    result = train(dataset, TrainConfig(threads=1))
    assert result.metadata["data"]["deals"] == len(want)


def test_an_outcome_dated_before_its_deal_was_created_keeps_the_database_trainable(
        database_url: str, tmp_path: Path) -> None:
    """An outcome reported before its deal was first scored, the deal then scored with a later created_at:
    training refused the whole feedback database (a deal closed before it was created). The view dates such
    a close on the creation day; the outcomes table keeps what was reported."""
    with running(database_url, tmp_path / "spool") as feedback:
        feedback.record_outcomes([Outcome("G1", "won", 7000.0, date(2025, 11, 1))])
        feedback.record_scores("r1", "v1", [{"deal_id": "G1", "created_at": "2025-12-01T09:30:00+02:00"},
                                            {"deal_id": "G2", "created_at": "2025-11-20"}],
                               batch([0.4, 0.5], [10.0, 20.0], ["C", "C"]))
        feedback.flush_score_log()
        feedback.record_outcomes([Outcome("G2", "lost", 0.0, date(2025, 11, 25))])
        engine = feedback.database.engine
        with engine.connect() as connection:
            rows = {r.deal_id: (r.created_at[:10], r.closed_at) for r in connection.execute(
                sa.text("SELECT deal_id, created_at, closed_at FROM training_deals"))}
            stored = connection.execute(sa.text("SELECT closed_at FROM outcomes WHERE deal_id = 'G1'")).scalar()
        assert rows == {"G1": ("2025-12-01", "2025-12-01"), "G2": ("2025-11-20", "2025-11-25")}
        assert str(stored)[:10] == "2025-11-01"
        deals = load_dataset(f"{database_url}::training_deals", for_training=True, today=date(2026, 1, 15)).deals
        assert deals.set_index("deal_id")["closed_at"].dt.strftime("%Y-%m-%d").to_dict() == {
            "G1": "2025-12-01", "G2": "2025-11-25"}


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dealscore")
    add_feedback_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args))


def test_the_quality_and_db_commands(database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("db", "upgrade", "--database-url", database_url) == 0
    assert "schema empty -> 0003_score_log_each_scoring" in capsys.readouterr().err
    with running(database_url, tmp_path / "spool") as feedback:
        feedback.record_scores("r1", "v1", [{"deal_id": "D1"}, {"deal_id": "D2"}],
                               batch([0.9, 0.3], [900.0, 30.0], ["A", "C"]))
        feedback.flush_score_log()
        feedback.record_outcomes([Outcome("D1", "won", 900.0, date.today()), Outcome("D2", "lost", 0.0, date.today())])
    assert _cli("quality", "--database-url", database_url) == 0
    table = capsys.readouterr().out
    assert "model version v1" in table and "2 deals scored by this version" in table
    assert _cli("db", "training-source", "--database-url", database_url) == 0
    assert capsys.readouterr().out.strip() == f"{database_url}::SELECT * FROM training_deals"


def test_a_search_path_naming_no_schema_is_told_to_create_it() -> None:
    """An ops review: PostgreSQL's own "no schema has been selected to create in" named neither the schema
    nor the fix."""
    reason = postgres_unreachable()
    if reason is not None:
        pytest.skip(reason)
    url = with_search_path(POSTGRES_URL, f"dealscore_absent_{uuid.uuid4().hex[:8]}")
    with pytest.raises(DealscoreError, match=r"no schema has been selected to create in \(no schema the "
                                             r"connection's search_path names exists.*create it first"):
        _cli("db", "upgrade", "--database-url", url)


def test_quality_shows_what_managers_wrote_without_a_terminal_acting_on_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A security review: a manager's name sent to /v1/judgements as escape codes cleared the operator's screen
    and printed a forged row through `dealscore quality`."""
    from service.feedback.judgements import Judgement

    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    with running(url, tmp_path / "spool") as feedback:
        feedback.record_scores("r1", "v1", [{"deal_id": "D1"}, {"deal_id": "D2"}],
                               batch([0.9, 0.3], [900.0, 30.0], ["A", "C"]))
        feedback.flush_score_log()
        feedback.record_judgement(Judgement("\x1b[2J\x1b[31mEVIL\u202e", "D1", "D2"))
        # (the review of the first version: a newline in a name still printed a row of its own)
        feedback.record_judgement(Judgement("nl\n  forged  99  99.0  1.000", "D2", "D1", note="a\nb"))
    capsys.readouterr()
    assert _cli("quality", "--database-url", url, "--version", "v1") == 0
    shown = capsys.readouterr().out
    assert "\x1b" not in shown and "\u202e" not in shown
    assert "\\x1b[2J\\x1b[31mEVIL\\u202" in shown, shown  # escaped, then cut to the column's 24 characters
    assert not any(line.lstrip().startswith("forged") for line in shown.splitlines()), shown
    assert "nl\\n  forged" in shown


def test_reports_never_migrate_and_the_schema_goes_down_by_its_own_command(
        database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`dealscore quality` moved a database still served by the earlier release to the new schema, silently;
    `db upgrade --revision` to an older one printed 'X -> X' and exit 0; there was no way down."""
    from model.errors import DealscoreError
    from service.feedback.db import current_revision, head_revision, make_engine

    assert _cli("db", "upgrade", "--database-url", database_url, "--revision", "0002_training_close_day") == 0
    capsys.readouterr()
    with pytest.raises(DealscoreError, match="run `dealscore db upgrade`"):
        _cli("quality", "--database-url", database_url)
    with pytest.raises(DealscoreError, match="run `dealscore db upgrade`"):
        _cli("db", "training-source", "--database-url", database_url)
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == "0002_training_close_day"
        assert _cli("db", "upgrade", "--database-url", database_url) == 0
        assert current_revision(engine) == head_revision()
        with pytest.raises(DealscoreError, match="that is a downgrade"):
            _cli("db", "upgrade", "--database-url", database_url, "--revision", "0002_training_close_day")
        # A downgrade drops data: it says so and changes nothing without --yes (the ops audit: to base it dropped
        # every table, rows and all, at once); a revision the migrations lack is named, with the ones they have.
        with pytest.raises(DealscoreError, match="drops what the revisions after it added.*again with --yes") as said:
            _cli("db", "downgrade", "--database-url", database_url, "--revision", "0002_training_close_day")
        # ... naming each revision it would take back, with what it did.
        assert ("with its data: 0003_score_log_each_scoring (score_log keeps each scoring of a deal, even when a "
                "caller reuses its request id); back it up") in str(said.value)
        with pytest.raises(DealscoreError) as said:
            _cli("db", "downgrade", "--database-url", database_url, "--revision", "0001_feedback")
        assert "0003_score_log_each_scoring (score_log keeps" in str(said.value)
        assert "; 0002_training_close_day (training_deals: a deal's close day" in str(said.value)
        with pytest.raises(DealscoreError, match="drops every table of the feedback database"):
            _cli("db", "downgrade", "--database-url", database_url, "--revision", "base")
        assert current_revision(engine) == head_revision()
        listed = r"--revision: .*'bogus'.* \(the revisions: base, 0001_\w+, .*head\)"
        for command in (["upgrade"], ["downgrade", "--yes"]):
            with pytest.raises(DealscoreError, match=listed):
                _cli("db", *command, "--database-url", database_url, "--revision", "bogus")
        with pytest.raises(DealscoreError, match="that is a downgrade"):  # a prefix names its revision, as in alembic
            _cli("db", "upgrade", "--database-url", database_url, "--revision", "0002")
        assert _cli("db", "downgrade", "--database-url", database_url, "--revision=-1", "--yes") == 0
        assert current_revision(engine) == "0002_training_close_day"
        assert "-> 0002_training_close_day" in capsys.readouterr().err
    finally:
        engine.dispose()


def test_the_quality_command_says_what_is_missing(tmp_path: Path) -> None:
    from model.errors import NotFound

    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    with pytest.raises(NotFound, match="no feedback database at .*nothing was created"):
        _cli("quality", "--database-url", url)  # run from the wrong folder: it used to create one there
    with pytest.raises(NotFound, match="no feedback database at .*nothing was created"):
        _cli("db", "training-source", "--database-url", url)  # it created one, empty (the ops audit)
    assert not list(tmp_path.iterdir())
    assert _cli("db", "upgrade", "--database-url", url) == 0
    with pytest.raises(NotFound, match="the score log at .* is empty"):
        _cli("quality", "--database-url", url)
    with pytest.raises(NotFound, match="no scores of model version 'v9'"):
        _cli("quality", "--database-url", url, "--version", "v9")


def test_a_downgrade_of_a_database_without_dealscores_schema_changes_nothing(tmp_path: Path) -> None:
    """Another application's database by a wrong URL: alembic answered in its own words, or, to base, wrote its
    version table into it, exit 0 (the new-user review)."""
    import sqlite3

    from model.errors import DealscoreError

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as other:
        other.execute("create table orders (id integer)")
    for revision in ("0002_training_close_day", "base"):
        with pytest.raises(DealscoreError, match="holds no dealscore schema revision: nothing to downgrade"):
            _cli("db", "downgrade", "--database-url", f"sqlite:///{path}", "--revision", revision, "--yes")
    with sqlite3.connect(path) as other:
        assert [r[0] for r in other.execute("select name from sqlite_master")] == ["orders"]
    # dealscore's own, taken to base: a second run does nothing, exit 0 (it was refused as not dealscore's)
    ours = f"sqlite:///{tmp_path / 'feedback.db'}"
    assert _cli("db", "upgrade", "--database-url", ours) == 0
    for _ in range(2):
        assert _cli("db", "downgrade", "--database-url", ours, "--revision", "base", "--yes") == 0


def test_the_quality_command_reads_a_sqlite_uri_and_names_a_missing_file_in_full(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from model.errors import NotFound

    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotFound, match=f"no feedback database at {tmp_path / 'here.db'}:"):
        _cli("quality", "--database-url", "sqlite:///here.db")  # relative: the message names the full path
    assert _cli("db", "upgrade", "--database-url", "sqlite:///here.db") == 0
    with pytest.raises(NotFound, match="the score log at .* is empty"):  # opened, not refused as missing
        _cli("quality", "--database-url", "sqlite:///file:here.db?mode=rw&uri=true")


@pytest.mark.parametrize("command", [("quality",), ("db", "upgrade"), ("db", "downgrade", "--revision", "base"),
                                     ("db", "training-source")])
@pytest.mark.parametrize(("option", "url", "said"), [
    (True, "mysql://ops:s3cret@db/dealscore", "--database-url: expected a SQLAlchemy database URL whose driver is "
     "installed, like sqlite:////var/lib/dealscore/feedback.db or postgresql+psycopg://user@host/dealscore (No "
     "module named 'MySQLdb'), got 'mysql://...' (the rest not shown: it may hold a password)"),
    (False, "postgresql://ops:s3cret@db:5x/dealscore", "DEALSCORE_DATABASE_URL: expected a SQLAlchemy database URL "
     "whose driver is installed, like sqlite:////var/lib/dealscore/feedback.db or postgresql+psycopg://user@host/"
     "dealscore (not a URL SQLAlchemy reads), got 'postgresql://...' (the rest not shown: it may hold a password)"),
])
def test_the_feedback_commands_refuse_a_database_url_as_the_service_does(
        command: tuple[str, ...], option: bool, url: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A URL of a driver not installed, or one SQLAlchemy cannot read, was an 'unexpected failure' line quoting
    the parser (a port that is no number: part of the password); the service's settings refuse it by name."""
    from dealscore.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEALSCORE_DATABASE_URL", raising=False)
    if not option:
        monkeypatch.setenv("DEALSCORE_DATABASE_URL", url)
    code = main([*command, *(["--database-url", url] if option else [])])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"dealscore {command[0]}: {said}\n"
    assert "s3cret" not in err and not list(tmp_path.iterdir())


def _port_nothing_listens_on() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_FEEDBACK_COMMANDS = [("quality",), ("db", "upgrade"), ("db", "downgrade", "--revision", "base"),
                      ("db", "training-source"), ("db", "prune-score-log", "--before", "2026-01-01")]


@pytest.mark.parametrize("command", _FEEDBACK_COMMANDS)
def test_the_feedback_commands_ask_to_run_again_while_the_database_server_is_away(
        command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    """A server that does not answer (down, restarting, the network) is "try again later", exit 4, as for a
    retrain whose database source is away: the monthly prune in docs/operations.md's cron exited 2, bad input,
    while PostgreSQL restarted, and the same command an hour later worked."""
    from dealscore.cli import main

    url = f"postgresql+psycopg://ops@127.0.0.1:{_port_nothing_listens_on()}/dealscore"
    code = main([*command, "--database-url", url])
    err = capsys.readouterr().err
    assert code == 4, err
    assert err.startswith(f"dealscore {command[0]}: database ") and "connection failed" in err


@pytest.mark.parametrize("command", _FEEDBACK_COMMANDS)
def test_a_feedback_database_that_does_not_exist_is_bad_input_not_a_retry(
        command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    """The server answers and refuses the URL for good (no such database): retrying it later would have a
    scheduler retry a typo forever, so it stays exit 2, as for a database source."""
    from dealscore.cli import main

    reason = postgres_unreachable()
    if reason:
        pytest.skip(reason)
    url = sa.make_url(POSTGRES_URL).set(database=f"no_such_database_{uuid.uuid4().hex[:8]}")
    code = main([*command, "--database-url", url.render_as_string(hide_password=False)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "does not exist" in err


def test_a_field_name_ending_in_a_newline_neither_becomes_a_column_nor_breaks_training(
        database_url: str, tmp_path: Path) -> None:
    """A security review: any caller of /v1/score could send a field named "status\\n". The plain-name check
    (`^...$` with re.match, where `$` also matches before a final newline) let it through, SQLAlchemy's quoting
    (fooled the same way) left it unquoted, and the SELECT got a second `status` column: `db training-source`,
    and so the retrain from the feedback database, was refused (2 columns named status) for as long as that
    scoring stayed in the log, which a prune never removes (the latest scoring of its deal)."""
    with running(database_url, tmp_path / "spool") as feedback:
        feedback.record_scores("r1", "v1", [{"deal_id": "G1", "created_at": "2025-11-01", "source": "web"},
                                            {"deal_id": "X1", "created_at": "2025-11-02", "status\n": "lost",
                                             "amount\n": 1.0, "colour\n": "red"}],
                               batch([0.4, 0.5], [10.0, 20.0], ["C", "C"]))
        feedback.flush_score_log()
        feedback.record_outcomes([Outcome("G1", "won", 7000.0, date(2025, 11, 20)),
                                  Outcome("X1", "lost", 0.0, date(2025, 11, 20))])
        engine = feedback.database.engine
        assert extra_fields(engine) == {"source": "text"}
        deals = load_dataset(training_source(engine, database_url), for_training=True, today=date(2026, 1, 15)).deals
    assert list(deals.columns).count("status") == 1
    assert deals.set_index("deal_id")["status"].to_dict() == {"G1": "won", "X1": "lost"}
