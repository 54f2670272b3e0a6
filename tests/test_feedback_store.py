"""The feedback store against SQLite and the local PostgreSQL: migrations, outcomes, judgements, the
score log's spool and replay, two processes on one database, and persistence across a restart."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from test_feedback_helpers import (  # noqa: F401 (fixtures)
    batch,
    count,
    database_url_fixture,
    deal,
    down_url,
    make_config,
    postgres_url_fixture,
    running,
    wait_until,
)

from model.errors import ContractViolation
from model.history_overlay import OutcomeBook
from service.feedback import Feedback
from service.feedback.db import VERSION_TABLE, current_revision, head_revision, make_engine, upgrade
from service.feedback.judgements import Judgement
from service.feedback.outcomes import Outcome
from service.feedback.quality import render_table
from service.feedback.tables import judgements, metadata
from service.feedback.tables import outcomes as outcome_table


def test_migrations_build_the_schema_the_code_expects(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert upgrade(engine) == head_revision()
        assert upgrade(engine) == head_revision()  # a second run is a no-op
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = [d for d in compare_metadata(context, metadata)
                           if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)]
            assert differences == []
            views = set(sa.inspect(connection).get_view_names())
            assert {"training_deals", "training_clients"} <= views
    finally:
        engine.dispose()


def test_a_reused_request_id_keeps_each_scoring_and_the_latest_trains(database_url: str, tmp_path: Path) -> None:
    """A caller's X-Request-ID sent again with the deal changed: the log kept the first scoring only (unique by
    request id and deal), so the training view and the quality report read the stale deal. A database at the
    former schema keeps its rows through the upgrade."""
    import time

    engine = make_engine(database_url)
    try:
        assert upgrade(engine, "0002_training_close_day") == "0002_training_close_day"
        with engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO score_log (request_id, deal_id, model_version, p_win, value, expected_value, grade, "
                "scored_at, deal) VALUES ('old', 'D0', 'v0', 0.5, 1.0, 0.5, 'B', :at, :deal)"),
                {"at": "2025-01-01 00:00:00.000000", "deal": '{"deal_id": "D0", "created_at": "2025-01-01"}'})
        assert upgrade(engine) == head_revision()
    finally:
        engine.dispose()
    assert count(database_url, "score_log") == 1
    with running(database_url, tmp_path / "spool") as feedback:
        feedback.record_scores("fixed-id", "v1", [deal("D1", amount=100.0, created_at="2025-12-01")],
                               batch([0.4], [40.0], ["B"]))
        assert feedback.flush_score_log()
        time.sleep(0.01)  # another instant
        feedback.record_scores("fixed-id", "v1", [deal("D1", amount=99_999.0, created_at="2026-01-15")],
                               batch([0.6], [60_000.0], ["A"]))
        assert feedback.flush_score_log()
    assert count(database_url, "score_log") == 3
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(sa.text(
                "SELECT amount, created_at FROM training_deals WHERE deal_id = 'D1'")).one()
    finally:
        engine.dispose()
    assert (float(row[0]), str(row[1])[:10]) == (99_999.0, "2026-01-15")


def test_the_score_log_key_migration_goes_down_keeping_each_deals_latest_scoring(database_url: str) -> None:
    from alembic import command

    from service.feedback.db import alembic_config

    engine = make_engine(database_url)
    insert = sa.text("INSERT INTO score_log (request_id, deal_id, model_version, p_win, grade, scored_at, deal) "
                     "VALUES ('r', 'D1', 'v1', :p, 'B', :at, '{}')")
    try:
        upgrade(engine)
        with engine.begin() as connection:
            # The later scoring inserted first, as a spool replayed after newer scores leaves it.
            for p, at in ((0.2, "2025-01-02 00:00:00"), (0.1, "2025-01-01 00:00:00")):
                connection.execute(insert, {"p": p, "at": at})
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0002_training_close_day")
        with engine.connect() as connection:
            assert [float(r[0]) for r in connection.execute(sa.text("SELECT p_win FROM score_log"))] == [0.2]
            assert {"training_deals", "training_clients"} <= set(sa.inspect(connection).get_view_names())
        assert upgrade(engine) == head_revision()
    finally:
        engine.dispose()


def test_a_sqlite_migration_that_fails_halfway_leaves_the_database_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's sqlite3 committed each DDL statement of a migration on its own: 0003 killed or failing halfway
    left its views dropped and a temporary table behind, and every retry failed on that table."""
    import importlib

    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    engine = make_engine(url)
    try:
        upgrade(engine, "0002_training_close_day")
        with engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO score_log (request_id, deal_id, model_version, p_win, grade, "
                                       "scored_at, deal) VALUES ('r', 'D1', 'v1', 0.5, 'B', '2025-01-01', '{}')"))
            connection.execute(sa.text("CREATE VIEW my_daily AS SELECT count(*) AS n FROM score_log"))

        def state() -> tuple[Any, ...]:
            with engine.connect() as connection:
                return (current_revision(engine), sorted(sa.inspect(connection).get_table_names()),
                        sorted(sa.inspect(connection).get_view_names()),
                        connection.execute(sa.text("SELECT count(*) FROM score_log")).scalar())

        before = state()
        # Another application's view of the table: refused up front, saying what to do.
        with pytest.raises(RuntimeError, match="my_daily read score_log.* drop them, upgrade, and create them again"):
            upgrade(engine)
        assert state() == before
        with engine.begin() as connection:
            connection.execute(sa.text("DROP VIEW my_daily"))
        before = state()
        # A failure after the table was rebuilt (the last view cannot be made): everything rolls back.
        first = importlib.import_module("migrations.versions.0001_feedback_tables")
        monkeypatch.setattr(first, "_SQLITE_TRAINING_CLIENTS", "CREATE VIEW training_clients AS SELEKT")
        with pytest.raises(sa.exc.OperationalError):
            upgrade(engine)
        assert state() == before and before[0] == "0002_training_close_day"
        monkeypatch.undo()
        assert upgrade(engine) == head_revision()
    finally:
        engine.dispose()


def _at_once(work: Callable[[sa.Engine], object], engines: list[sa.Engine]) -> list[BaseException]:
    """`work` on each engine in a thread of its own, all started together; what they raised."""
    errors: list[BaseException] = []

    def run(engine: sa.Engine) -> None:
        try:
            work(engine)
        except BaseException as error:  # collected for the caller to assert on
            errors.append(error)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_two_processes_migrating_at_once_both_succeed(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    engines = [make_engine(database_url) for _ in range(2)]
    try:
        with caplog.at_level(logging.INFO):
            assert _at_once(upgrade, engines) == []
        assert current_revision(engines[0]) == head_revision()
        # One of them migrated; both said so when the revision before was read outside the lock (the ops audit).
        assert sum("migrated from schema empty" in r.getMessage() for r in caplog.records) == 1
    finally:
        for e in engines:
            e.dispose()


def test_processes_opening_a_new_sqlite_file_at_once_all_get_it_in_wal_mode(tmp_path: Path) -> None:
    """Switching a new file to WAL needs it alone, and SQLite told the second connection "database is locked"
    at once (the busy timeout does not cover it): two workers starting on a fresh feedback database failed in
    12 of 150 runs, and this suite's migration test with them."""

    def journal_mode(engine: sa.Engine) -> None:
        with engine.connect() as connection:
            assert str(connection.exec_driver_sql("PRAGMA journal_mode").scalar()).lower() == "wal"

    for attempt in range(100):
        engines = [make_engine(f"sqlite:///{tmp_path / f'fresh-{attempt}.db'}") for _ in range(3)]
        errors = _at_once(journal_mode, engines)
        for e in engines:
            e.dispose()
        assert errors == [], f"attempt {attempt}: {errors}"


def test_outcomes_are_idempotent_and_changes_are_recorded(database_url: str, tmp_path: Path) -> None:
    won = Outcome("D1", "won", 1200.0, date(2025, 3, 1), client_id="C1")
    with running(database_url, tmp_path / "spool") as feedback:
        assert [r.result for r in feedback.record_outcomes([won])] == ["created"]
        again = feedback.record_outcomes([won])
        assert (again[0].result, again[0].revision) == ("unchanged", 1)
        changed = feedback.record_outcomes([Outcome("D1", "won", 1500.0, date(2025, 3, 2), client_id="C1")])
        assert (changed[0].result, changed[0].revision) == ("updated", 2)
        assert [r.result for r in feedback.record_outcomes([Outcome("D1", "won", 1500.0, date(2025, 3, 2))])] == [
            "unchanged"]  # no client id given: the stored one stands
        revisions = feedback.outcomes.revisions("D1")
        assert [(r["revision"], r["amount"]) for r in revisions] == [(1, 1200.0), (2, 1500.0)]
        event = feedback.book.get("D1")
        assert event is not None and event.amount == 1500.0 and event.client_id == "C1"
    assert count(database_url, "outcomes") == 1
    assert count(database_url, "outcome_revisions") == 2


def test_an_outcome_resent_without_closed_at_on_a_later_day_is_unchanged(database_url: str, tmp_path: Path) -> None:
    """closed_at not sent defaulted to today on every post: a CRM retrying the next day moved the close day
    and bumped the revision. The stored day stands; a new deal's is today."""
    with running(database_url, tmp_path / "spool") as feedback:
        first = feedback.outcomes.record([Outcome("D1", "won", 100.0, None)], today=date(2025, 3, 1))
        assert first[0].result == "created"
        again = feedback.outcomes.record([Outcome("D1", "won", 100.0, None), Outcome("D2", "lost", None, None)],
                                         today=date(2025, 3, 2))
        assert [(r.result, r.revision) for r in again] == [("unchanged", 1), ("created", 1)]
        corrected = feedback.outcomes.record([Outcome("D1", "lost", None, None)], today=date(2025, 3, 5))
        assert (corrected[0].result, corrected[0].revision) == ("updated", 2)
        assert [r["closed_at"] for r in feedback.outcomes.revisions("D1")] == [date(2025, 3, 1)] * 2
        assert [r["closed_at"] for r in feedback.outcomes.revisions("D2")] == [date(2025, 3, 2)]
        # Reported before it was scored, then scored with a later created_at: a correction without a day is
        # not refused for the stored one (the training view dates such a close on the creation day).
        feedback.record_scores("r1", "v1", [deal("D2", created_at="2025-03-10")], batch([0.5], [10.0], ["C"]))
        assert feedback.flush_score_log()
        fixed = feedback.outcomes.record([Outcome("D2", "won", 50.0, None)], today=date(2025, 3, 12))
        assert (fixed[0].result, fixed[0].revision) == ("updated", 2)
        with pytest.raises(ContractViolation):  # a day sent is still checked
            feedback.outcomes.record([Outcome("D2", "won", 50.0, date(2025, 3, 2))], today=date(2025, 3, 12))


def test_a_deal_created_tomorrow_closes_by_default_on_its_creation_day(database_url: str, tmp_path: Path) -> None:
    """A caller ahead of UTC scored a deal created "tomorrow"; its outcome without closed_at defaulted to UTC
    today, before the creation, and was refused quoting a date the caller never sent."""
    with running(database_url, tmp_path / "spool") as feedback:
        feedback.record_scores("r1", "v1", [deal("D1", created_at="2025-03-02")], batch([0.5], [10.0], ["C"]))
        assert feedback.flush_score_log()
        (recorded,) = feedback.outcomes.record([Outcome("D1", "won", 50.0, None)], today=date(2025, 3, 1))
        assert recorded.result == "created"
        assert [r["closed_at"] for r in feedback.outcomes.revisions("D1")] == [date(2025, 3, 2)]
        with pytest.raises(ContractViolation, match="1 problem"):  # a day sent is still checked
            feedback.outcomes.record([Outcome("D1", "won", 50.0, date(2025, 3, 1))], today=date(2025, 3, 1))


def test_a_database_that_refuses_the_store_is_a_503_and_logs_no_deal_data(
        database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A revoked grant or a dropped table (PostgreSQL: ProgrammingError) was a 500 whose log line carried the
    INSERT's parameters (deal ids, amounts, client ids). It is the feedback store's 503, with the database's
    own reason and no parameters, in the answer or the log."""
    from service.feedback import FeedbackUnavailable

    with running(database_url, tmp_path / "spool") as feedback:
        feedback.record_outcomes([Outcome("D0", "won", 1.0, date(2025, 3, 1))])
        with feedback.database.engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE outcome_revisions"))
        with pytest.raises(FeedbackUnavailable) as refused:
            feedback.record_outcomes([Outcome("SECRET-DEAL-7", "won", 987654.0, date(2025, 3, 1), client_id="C-42")])
    shown = refused.value.message + caplog.text
    assert "outcome_revisions" in shown  # the database's own reason (SQLite: unavailable; PostgreSQL: refused)
    assert "SECRET-DEAL-7" not in shown and "987654" not in shown and "C-42" not in shown


def test_a_read_only_database_is_a_503(postgres_url: str, tmp_path: Path) -> None:
    """A standby after a failover (or default_transaction_read_only) refuses writes with SQLSTATE 25006, an
    InternalError: an operator's problem, so the store's 503, not a 500."""
    from service.feedback import FeedbackUnavailable

    with running(postgres_url, tmp_path / "spool"):
        pass  # the schema, migrated through a writable connection
    options = sa.make_url(postgres_url).query["options"]
    read_only = str(sa.make_url(postgres_url).update_query_dict(
        {"options": f"{options} -cdefault_transaction_read_only=on"}).render_as_string(hide_password=False))
    with running(read_only, tmp_path / "spool-ro", migrate_on_start=False) as feedback:
        with pytest.raises(FeedbackUnavailable) as refused:
            feedback.record_outcomes([Outcome("D1", "won", 1.0, date(2025, 3, 1))])
    assert "read-only" in refused.value.problems[0].got


def test_outcomes_are_checked_as_a_whole_batch(database_url: str, tmp_path: Path) -> None:
    with running(database_url, tmp_path / "spool") as feedback:
        feedback.record_scores("r1", "v1", [deal("D1", created_at="2025-03-10", client_id="C1")],
                               batch([0.5], [100.0], ["A"]))
        assert feedback.flush_score_log()
        with pytest.raises(ContractViolation) as refused:
            feedback.record_outcomes([
                Outcome("D1", "won", 10.0, date(2025, 3, 1)),  # before the deal was created
                Outcome("D2", "lost", None, date(2999, 1, 1)),  # in the future
                Outcome("D2", "won", None, date(2025, 1, 1)),  # the same deal twice
            ])
        fields = [p.field for p in refused.value.problems]
        assert fields == ["outcomes[0].closed_at", "outcomes[1].closed_at", "outcomes[2].deal_id"]
        # The real bound (tomorrow is accepted: a sender a time zone ahead), not "up to today".
        assert refused.value.problems[1].expected.startswith("a date up to today (at most ")
    assert count(database_url, "outcomes") == 0  # all or nothing


def test_an_outcome_takes_its_client_from_the_score_log(database_url: str, tmp_path: Path) -> None:
    with running(database_url, tmp_path / "spool") as feedback:
        feedback.record_scores("r1", "v1", [deal("D1", client_id="C7", created_at="2025-01-02")],
                               batch([0.4], [40.0], ["B"]))
        feedback.flush_score_log()
        [result] = feedback.record_outcomes([Outcome("D1", "won", 100.0, date(2025, 2, 1))])
        assert result.client_id == "C7"
        assert [e.deal_id for e in feedback.book.wins_of("C7")] == ["D1"]


def test_an_outcome_stored_before_its_deal_was_scored_gets_its_client_at_the_next_refresh(
        database_url: str, tmp_path: Path) -> None:
    """A CRM reporting a close before it scores the deal's last change: the win was stored without a client and
    reached the client's history only when a process started (the feedback audit: a later deal of the client
    scored p_win 0.156 before a restart, 0.516 after)."""
    with running(database_url, tmp_path / "spool") as feedback:
        [result] = feedback.record_outcomes([Outcome("D1", "won", 100.0, date(2025, 2, 1))])
        feedback.outcomes.refresh()  # a refresh between the two (every 30 s by default) had read it, client-less
        assert result.client_id is None and not feedback.book.wins_of("C7")
        feedback.record_scores("r1", "v1", [deal("D1", client_id="C7", created_at="2025-01-02")],
                               batch([0.4], [40.0], ["B"]))
        feedback.flush_score_log()
        feedback.outcomes.refresh()
        assert [e.deal_id for e in feedback.book.wins_of("C7")] == ["D1"]
        # As a process loading the table at start reads it: the same history.
        feedback.outcomes.book = OutcomeBook()
        feedback.outcomes.load()
        assert [e.deal_id for e in feedback.outcomes.book.wins_of("C7")] == ["D1"]


def test_a_clientless_outcome_is_looked_up_for_an_hour(database_url: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from service.feedback import outcomes as outcomes_module

    with running(database_url, tmp_path / "spool") as feedback:
        feedback.record_outcomes([Outcome("D1", "won", 100.0, date(2025, 2, 1))])
        feedback.outcomes.refresh()
        monkeypatch.setattr(outcomes_module, "CLIENTLESS_LOOKUP", timedelta(0))  # an hour has passed
        feedback.record_scores("r1", "v1", [deal("D1", client_id="C7", created_at="2025-01-02")],
                               batch([0.4], [40.0], ["B"]))
        feedback.flush_score_log()
        feedback.outcomes.refresh()
        assert not feedback.book.wins_of("C7")  # no longer looked up (a restart reads it)


def test_past_the_clientless_lookup_bound_the_latest_outcomes_are_looked_up(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLIENTLESS_LOOKUP_MOST bounds the outcomes held without a client that a refresh looks up: the latest of
    them, whose deal is the likeliest to be scored a moment later, not the oldest."""
    from service.feedback import outcomes as outcomes_module

    monkeypatch.setattr(outcomes_module, "CLIENTLESS_LOOKUP_MOST", 1)
    with running(database_url, tmp_path / "spool") as feedback:
        feedback.record_outcomes([Outcome("D1", "won", 100.0, date(2025, 2, 1))])
        feedback.record_outcomes([Outcome("D2", "won", 200.0, date(2025, 2, 1))])  # stored later
        feedback.outcomes.refresh()  # both read: from now on only the lookup can give them a client
        feedback.record_scores("r1", "v1", [deal("D1", client_id="C7", created_at="2025-01-02"),
                                            deal("D2", client_id="C8", created_at="2025-01-02")],
                               batch([0.4, 0.5], [40.0, 50.0], ["B", "B"]))
        feedback.flush_score_log()
        feedback.outcomes.refresh()
        assert [e.deal_id for e in feedback.book.wins_of("C8")] == ["D2"]
        assert not feedback.book.wins_of("C7")  # past the bound: a restart reads it


def test_a_win_reported_without_an_amount_realised_its_quote_everywhere(database_url: str, tmp_path: Path) -> None:
    """It counted 0 money in the client history and in /v1/quality, and the quote in training_deals."""
    with running(database_url, tmp_path / "spool") as feedback:
        feedback.record_scores("r1", "v1", [deal("D1", client_id="C7", created_at="2025-01-02", amount=900.0),
                                            deal("D2", client_id="C7", created_at="2025-01-03", amount=100.0)],
                               batch([0.6, 0.4], [540.0, 40.0], ["A", "B"]))
        feedback.flush_score_log()
        feedback.record_outcomes([Outcome("D1", "won", None, date.today()),  # closed after it was scored
                                  Outcome("D2", "won", 300.0, date.today())])
        assert sorted(e.amount for e in feedback.book.wins_of("C7")) == [300.0, 900.0]
        grades = {g["grade"]: g["share_of_realised_value"] for g in feedback.quality("v1")["outcomes"]["grades"]}
        assert grades == {"A": 0.75, "B": 0.25}
        feedback.outcomes.book = OutcomeBook()  # as another process loads it from the table
        feedback.outcomes.load()
        assert sorted(e.amount for e in feedback.outcomes.book.wins_of("C7")) == [300.0, 900.0]
        with feedback.database.engine.connect() as connection:
            amounts = dict(connection.execute(sa.text("SELECT deal_id, amount FROM training_deals")).all())
        assert amounts == {"D1": 900.0, "D2": 300.0}


def test_two_processes_store_each_outcome_and_judgement_once(database_url: str, tmp_path: Path) -> None:
    outcomes = [Outcome(f"D{i}", "won" if i % 2 else "lost", float(i), date(2025, 1, 1 + i % 28)) for i in range(40)]
    with running(database_url, tmp_path / "a") as first, running(database_url, tmp_path / "b") as second:
        first.record_scores("r0", "v1", [deal("D0"), deal("D1")], batch([0.1, 0.2], [1.0, 2.0], ["C", "C"]))
        first.flush_score_log()
        errors: list[BaseException] = []

        def send(feedback: Feedback) -> None:
            try:
                for start in range(0, len(outcomes), 8):
                    feedback.record_outcomes(outcomes[start:start + 8])
                feedback.record_judgement(Judgement("m1", "D0", "D1"))
            except BaseException as error:  # collected and asserted below
                errors.append(error)

        threads = [threading.Thread(target=send, args=(f,)) for f in (first, second, first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
    assert count(database_url, "outcomes") == 40
    assert count(database_url, "outcome_revisions") == 40
    assert count(database_url, "judgements") == 1


def test_judgements_need_two_different_scored_deals(database_url: str, tmp_path: Path) -> None:
    with running(database_url, tmp_path / "spool") as feedback:
        with pytest.raises(ContractViolation) as refused:
            feedback.record_judgement(Judgement("Elena", "D1", "D2"))
        assert [(p.field, p.got) for p in refused.value.problems] == [
            ("above_deal_id", "'D1' (never scored)"), ("below_deal_id", "'D2' (never scored)")]
        with pytest.raises(ContractViolation) as same:
            feedback.record_judgement(Judgement("Elena", "D1", "D1"))
        assert [p.field for p in same.value.problems] == ["below_deal_id"]

        # Scored a moment ago: the judgement waits for the log writer instead of refusing.
        feedback.record_scores("r1", "v1", [deal("D1"), deal("D2")], batch([0.3, 0.6], [30.0, 60.0], ["B", "A"]))
        first = feedback.record_judgement(Judgement("Elena", "D1", "D2", note="signed an LOI"))
        assert (first.result, first.revision) == ("created", 1)
        assert feedback.record_judgement(Judgement("Elena", "D1", "D2", note="signed an LOI")).result == "unchanged"
        # Re-sent without its note: nothing changed, and the note stays (it was erased, as revision 2).
        assert feedback.record_judgement(Judgement("Elena", "D1", "D2")).result == "unchanged"
        reversed_view = feedback.record_judgement(Judgement("Elena", "D2", "D1"))
        assert (reversed_view.result, reversed_view.revision, reversed_view.judgement_id) == (
            "updated", 2, first.judgement_id)
        assert feedback.record_judgement(Judgement("Ivan", "D1", "D2", note="bigger budget")).result == "created"
        assert feedback.record_judgement(Judgement("Ivan", "D1", "D2")).result == "unchanged"
        with feedback.database.engine.connect() as connection:
            notes = dict(connection.execute(sa.select(judgements.c.manager, judgements.c.note)).all())
    # Elena's reversed view came without a note: the old view's note does not stay on it.
    assert notes == {"Elena": None, "Ivan": "bigger budget"}
    assert count(database_url, "judgements") == 2


def test_quality_on_a_hand_computed_example(database_url: str, tmp_path: Path) -> None:
    with running(database_url, tmp_path / "spool") as feedback:
        # v1 scores four deals; v2 scores them differently (must not leak into v1's figures).
        deals = [deal(f"D{i}", created_at="2025-01-01") for i in range(1, 5)]
        feedback.record_scores("r1", "v1", deals, batch([0.8, 0.6, 0.4, 0.2], [800.0, 600.0, 40.0, 200.0],
                                                       ["A", "A", "B", "C"]))
        feedback.record_scores("r2", "v2", deals, batch([0.1, 0.9, 0.9, 0.9], [1.0, 9.0, 9.0, 9.0],
                                                       ["C", "A", "A", "A"]))
        feedback.flush_score_log()
        for above, below, manager, note in (("D3", "D2", "m1", "LOI signed"), ("D1", "D4", "m1", None),
                                            ("D2", "D4", "m2", None)):
            feedback.record_judgement(Judgement(manager, above, below, note))
        today = date.today()
        feedback.record_outcomes([Outcome("D1", "won", 1000.0, today), Outcome("D2", "lost", 0.0, today),
                                  Outcome("D3", "won", 50.0, today), Outcome("D4", "lost", None, today)])
        # Scored again after it closed: not "what v1 said at the time", so not counted.
        feedback.record_scores("r3", "v1", [deal("D1")], batch([0.01], [1.0], ["C"]))
        feedback.flush_score_log()
        with feedback.database.engine.begin() as connection:
            connection.execute(sa.text("UPDATE score_log SET scored_at = :later WHERE request_id = 'r3'"),
                               {"later": "2999-01-01 00:00:00"})
        report = feedback.quality("v1")

    o = report["outcomes"]
    assert (o["deals"], o["outcomes_total"]) == (4, 4)
    # Wins D1 (0.8), D3 (0.4); losses D2 (0.6), D4 (0.2): 3 of the 4 won-lost pairs ordered right.
    assert o["auc"] == pytest.approx(0.75)
    assert o["brier"] == pytest.approx((0.2**2 + 0.6**2 + 0.6**2 + 0.2**2) / 4)  # 0.2
    assert o["calibration_error"] == pytest.approx((0.2 + 0.6 + 0.6 + 0.2) / 4)  # one deal per bin: 0.4
    # DeLong's placements: wins 1 and 1/2 of the losses below them, losses 1/2 and 0: variance 0.125/2 + 0.125/2.
    assert (o["auc_low_95"], o["auc_high_95"]) == (pytest.approx(0.75 - 1.96 * 0.125 ** 0.5), 1.0)
    # A perfectly calibrated model's deal misses by 2p(1 - p) on average, one deal per bin: 0.4 over these four.
    assert o["calibration_error_by_chance"] == pytest.approx(0.4, abs=0.03)
    assert (f"on 4 deals: AUC within 0.057-1.000 (95%); a perfectly calibrated model would show ECE "
            f"{o['calibration_error_by_chance']:.3f} by chance alone") in render_table(report)  # `dealscore quality`
    assert o["win_rate"] == pytest.approx(0.5)
    assert {g["grade"]: (g["deals"], g["win_rate"]) for g in o["grades"]} == {
        "A": (2, 0.5), "B": (1, 1.0), "C": (1, 0.0)}
    shares = {g["grade"]: g["share_of_realised_value"] for g in o["grades"]}
    assert shares["A"] == pytest.approx(1000 / 1050) and shares["B"] == pytest.approx(50 / 1050)

    j = report["judgements"]
    # m1: D3 above D2 (v1: 40 < 600, disagrees), D1 above D4 (800 > 200, agrees); m2: D2 above D4 (agrees).
    assert (j["pairs"], j["agreed"], j["agreement"]) == (3, 2.0, pytest.approx(2 / 3))
    assert [(m["manager"], m["pairs"], m["agreement"]) for m in j["managers"]] == [("m1", 2, 0.5), ("m2", 1, 1.0)]
    [worst] = j["disagreements"]
    assert (worst["above_deal_id"], worst["below_deal_id"], worst["margin"], worst["note"]) == (
        "D3", "D2", 560.0, "LOI signed")


def test_replaying_a_spool_twice_stores_each_entry_once(database_url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with running(down_url(), spool, retry_seconds=60.0) as feedback:
        feedback.record_scores("r1", "v1", [deal("D1"), deal("D2")], batch([0.1, 0.2], [1.0, 2.0], ["C", "C"]))
        feedback.flush_score_log()
        assert feedback.score_log_pending() == 2
    [left] = list(spool.glob("score-log-*.jsonl"))
    copy = spool / "score-log-copy-of-an-earlier-run.jsonl"
    copy.write_bytes(left.read_bytes())  # the same entries in two files: a replay that ran twice
    with running(database_url, spool) as feedback:
        wait_until(lambda: feedback.score_log_pending() == 0, message="the spool to be replayed")
    assert count(database_url, "score_log") == 2
    assert list(spool.glob("score-log-*.jsonl")) == []


def test_spool_and_replay_when_the_database_is_down(database_url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    # Down: the database URL points at a closed port. Scoring goes on; the log waits in the spool.
    with running(down_url(), spool) as feedback:
        for r in range(5):
            feedback.record_scores(f"r{r}", "v1", [deal(f"D{r}-{i}") for i in range(3)],
                                   batch([0.5] * 3, [5.0] * 3, ["B"] * 3))
        assert feedback.flush_score_log()
        stats = feedback.score_log_stats()
        assert stats is not None and (stats.pending, stats.spooled, stats.database_up) == (15, 15, False)
    assert sum(len(p.read_text().splitlines()) for p in spool.glob("*.jsonl")) == 15  # kept across the restart
    # Back: the next start replays the spool; nothing lost, nothing doubled.
    with running(database_url, spool) as feedback:
        wait_until(lambda: feedback.score_log_pending() == 0, message="the spool to be replayed")
        stats = feedback.score_log_stats()
        assert stats is not None and stats.written_total == 15 and stats.database_up
    assert count(database_url, "score_log") == 15


def test_the_log_survives_postgresql_going_down_and_back_while_running(postgres_url: str, tmp_path: Path) -> None:
    from test_feedback_helpers import PortProxy

    url = sa.make_url(postgres_url)
    proxy = PortProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        with running(through_proxy, tmp_path / "spool") as feedback:
            feedback.record_scores("up-1", "v1", [deal("A1"), deal("A2")], batch([0.1, 0.2], [1.0, 2.0], ["C", "C"]))
            wait_until(lambda: feedback.score_log_pending() == 0, message="the first write")
            proxy.stop()  # the database goes away under the running writer
            for r in range(3):
                feedback.record_scores(f"down-{r}", "v1", [deal(f"B{r}")], batch([0.3], [3.0], ["C"]))
            feedback.flush_score_log()
            assert feedback.score_log_pending() == 3
            stats = feedback.score_log_stats()
            assert stats is not None and not stats.database_up and stats.last_error
            # Unreachable is not "another schema": the metric keeps what the last check found.
            assert feedback.metrics()["feedback_database_schema_ready"] == 1.0
            proxy.start()  # and comes back
            wait_until(lambda: feedback.score_log_pending() == 0, message="the spool to drain after recovery")
            feedback.record_scores("up-2", "v1", [deal("C1")], batch([0.4], [4.0], ["C"]))
            wait_until(lambda: feedback.score_log_pending() == 0, message="a write after recovery")
    finally:
        proxy.stop()
    assert count(postgres_url, "score_log") == 6


def _emptied(url: str) -> None:
    """The database as if dropped and created anew under a running service: no table, no view, no revision."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                schema = str(sa.make_url(url).query["options"]).split("=", 1)[1]
                connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
                connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            else:
                for kind in ("view", "table"):
                    names = connection.exec_driver_sql(
                        f"SELECT name FROM sqlite_master WHERE type = '{kind}' AND name NOT LIKE 'sqlite_%'").scalars()
                    for name in list(names):
                        connection.exec_driver_sql(f'DROP {kind.upper()} "{name}"')
    finally:
        engine.dispose()


def test_a_database_emptied_while_running_is_migrated_again_and_loses_nothing(database_url: str,
                                                                              tmp_path: Path) -> None:
    """Trusted after its first check, the schema was never looked at again: every score spooled and every
    outcome was a 503 ('relation "outcomes" does not exist') until a restart (the ops audit)."""
    from service.feedback import FeedbackUnavailable

    with running(database_url, tmp_path / "spool") as feedback:
        feedback.record_scores("before", "v1", [deal("A1")], batch([0.5], [5.0], ["B"]))
        wait_until(lambda: feedback.score_log_pending() == 0, message="the first write")
        _emptied(database_url)
        with pytest.raises(FeedbackUnavailable):
            feedback.record_outcomes([Outcome("A1", "won", 10.0, date(2025, 3, 1))])  # the use that finds out
        assert feedback.record_outcomes([Outcome("A1", "won", 10.0, date(2025, 3, 1))])[0].result == "created"
        feedback.record_scores("after", "v1", [deal("B1"), deal("B2")], batch([0.4, 0.3], [4.0, 3.0], ["C", "C"]))
        wait_until(lambda: feedback.score_log_pending() == 0, message="the scores after the database was emptied")
    assert count(database_url, "score_log") == 2 and count(database_url, "outcomes") == 1


def test_a_database_taken_down_a_revision_under_a_running_service_is_not_taken_back_up(database_url: str,
                                                                                        tmp_path: Path) -> None:
    """An operator downgrades for an earlier release: this release's processes, still running, must not
    migrate it back up on their next failed write (the review of the recheck after a failed use)."""
    from service.feedback.db import downgrade

    with running(database_url, tmp_path / "spool") as feedback:
        feedback.record_scores("before", "v1", [deal("A1")], batch([0.5], [5.0], ["B"]))
        wait_until(lambda: feedback.score_log_pending() == 0, message="the first write")
        engine = make_engine(database_url)
        try:
            downgrade(engine, "0002_training_close_day")
            for r in range(2):
                feedback.record_scores(f"after-{r}", "v1", [deal(f"B{r}")], batch([0.4], [4.0], ["C"]))
            # The writer's next attempt checks the schema again and finds it behind: said by the metric, and left.
            wait_until(lambda: feedback.metrics()["feedback_database_schema_ready"] == 0.0,
                       message="the recheck to find the older schema")
            feedback.flush_score_log()
            assert current_revision(engine) == "0002_training_close_day"
            stats = feedback.score_log_stats()
            assert stats is not None and stats.spooled >= 1 and "dealscore db upgrade" in (stats.last_error or "")
        finally:
            engine.dispose()


def test_a_database_at_an_earlier_revision_and_down_at_start_is_migrated_when_it_comes(postgres_url: str,
                                                                                        tmp_path: Path) -> None:
    """The first use that reaches a database this process never checked migrates it, as at start; only one it
    had found current is left at an earlier revision (the test above)."""
    from test_feedback_helpers import PortProxy

    from service.feedback.db import downgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    downgrade(engine, "0002_training_close_day")  # what the earlier release left
    url = sa.make_url(postgres_url)
    proxy = PortProxy((url.host or "127.0.0.1", url.port or 5432))  # not started: the database is down
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        with running(through_proxy, tmp_path / "spool") as feedback:
            feedback.record_scores("down", "v1", [deal("A1")], batch([0.5], [5.0], ["B"]))
            feedback.flush_score_log()
            assert feedback.score_log_pending() == 1
            proxy.start()
            wait_until(lambda: feedback.score_log_pending() == 0, message="the spool to drain once it comes")
        assert current_revision(engine) == head_revision()
    finally:
        proxy.stop()
        engine.dispose()


def test_everything_persists_across_a_restart(database_url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with running(database_url, spool) as feedback:
        feedback.record_scores("r1", "v1", [deal("D1", client_id="C1"), deal("D2", client_id="C1")],
                               batch([0.7, 0.2], [70.0, 20.0], ["A", "C"]))
        feedback.record_judgement(Judgement("m1", "D2", "D1"))
        feedback.record_outcomes([Outcome("D1", "won", 700.0, date(2025, 5, 1))])
        before = feedback.quality("v1")
    with running(database_url, spool) as restarted:
        assert restarted.quality("v1") == before
        assert [e.deal_id for e in restarted.book.wins_of("C1")] == ["D1"]  # the client history is back
        assert restarted.record_outcomes([Outcome("D1", "won", 700.0, date(2025, 5, 1))])[0].result == "unchanged"
    assert count(database_url, "score_log") == 2


def test_an_outcome_another_process_records_reaches_this_ones_history(database_url: str, tmp_path: Path) -> None:
    with running(database_url, tmp_path / "a", outcomes_refresh_seconds=0.05) as first, \
            running(database_url, tmp_path / "b") as second:
        second.record_outcomes([Outcome("D9", "won", 10.0, date(2025, 1, 1), client_id="C9")])
        wait_until(lambda: first.book.get("D9") is not None, message="the other process's outcome")


def test_a_refresh_applies_each_outcome_once(database_url: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The scale audit: after a bulk import, each refresh re-read and re-applied the import's last 5 minutes
    (4-5 s of a core every 30 s for 382,092 outcomes) until another outcome came."""
    with running(database_url, tmp_path / "a") as writer, running(database_url, tmp_path / "b") as reader:
        writer.record_outcomes([Outcome(f"D{i}", "won", 10.0, date(2025, 1, 1), client_id="C1") for i in range(3)])
        applied: list[str] = []
        record_all = reader.book.record_all

        def counting(events: Any) -> int:
            events = list(events)
            applied.extend(e.deal_id for e in events)
            return record_all(events)

        monkeypatch.setattr(reader.book, "record_all", counting)
        reader.outcomes.refresh()
        assert sorted(applied) == ["D0", "D1", "D2"]
        reader.outcomes.refresh()
        assert len(applied) == 3  # read again (they may have company still committing) but not applied again
        # A change, and an outcome committed late with a stamp from before the last read, are both applied.
        writer.record_outcomes([Outcome("D1", "lost", None, date(2025, 1, 2), client_id="C1")])
        late = datetime.now(UTC) - timedelta(minutes=1)
        engine = make_engine(database_url)
        try:
            with engine.begin() as connection:
                connection.execute(sa.insert(outcome_table), [{
                    "deal_id": "LATE", "status": "won", "amount": 5.0, "closed_at": date(2025, 1, 3),
                    "client_id": "C1", "revision": 1, "recorded_at": late, "updated_at": late}])
        finally:
            engine.dispose()
        reader.outcomes.refresh()
        assert sorted(applied[3:]) == ["D1", "LATE"] and reader.book.get("D1").won is False


def test_the_store_starts_when_the_database_is_down_and_refuses_feedback_with_503(tmp_path: Path) -> None:
    from service.feedback import FeedbackUnavailable

    feedback = Feedback(make_config(down_url(), tmp_path / "spool"))
    feedback.start()
    try:
        with pytest.raises(FeedbackUnavailable) as refused:
            feedback.record_outcomes([Outcome("D1", "won", 1.0, date(2025, 1, 1))])
        assert refused.value.status == 503
    finally:
        feedback.stop()


def test_start_and_stop_are_idempotent_and_a_stopped_log_hands_its_spool_on(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    feedback = Feedback(make_config(down_url(), spool))
    feedback.start()
    feedback.start()
    feedback.record_scores("r1", "v1", [deal("D1")], batch([0.5], [5.0], ["B"]))
    feedback.flush_score_log()
    feedback.stop()
    feedback.stop()
    assert feedback.score_log is not None
    [left] = spool.glob("score-log-*.jsonl")
    assert left != feedback.score_log.spool.own_path  # no longer its own: the next start replays it
    assert feedback.score_log.spool.adopt_orphans() == 1


def test_logged_deals_read_as_sent_from_the_scorers_columns() -> None:
    from model.records import deal_columns
    from service.feedback.score_log import columns_documents
    from service.schemas import request_models

    body = {"deals": [
        {"deal_id": "D1", "client_id": "C1", "created_at": "2025-03-10", "amount": 1200.5, "product": "payroll",
         "source": "referral", "rooms": 3, "client": {"client_id": "C1", "industry": "retail", "since": "2020-01-02",
                                                      "won_deals": 4}},
        {"deal_id": 7, "created_at": "2025-03-11", "industry": "banking"}]}
    deals = request_models(10).score.model_validate(body).deals  # type: ignore[attr-defined]
    documents = columns_documents(deal_columns(deals))
    assert documents[0] == {"deal_id": "D1", "client_id": "C1", "created_at": "2025-03-10", "amount": 1200.5,
                            "product": "payroll", "source": "referral", "rooms": 3.0,
                            "client": {"client_id": "C1", "industry": "retail", "since": "2020-01-02"}}
    assert documents[1] == {"deal_id": "7", "created_at": "2025-03-11", "industry": "banking"}


_PROCESS_SCRIPT = """
import random, sys
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from service.feedback.config import FeedbackConfig
from service.feedback.judgements import Judgement
from service.feedback.outcomes import Outcome
from service.feedback.store import Feedback
url, spool = sys.argv[1], Path(sys.argv[2])
rng = random.Random(str(spool))
scores = SimpleNamespace(p_win=[0.5] * 5, value=[10.0] * 5, expected_value=[5.0] * 5, grade=["B"] * 5)
feedback = Feedback(FeedbackConfig(database_url=url, spool_dir=spool, flush_seconds=0.02, outcomes_refresh_seconds=0))
feedback.start()
for r in rng.sample(range(10), 10):  # the same request ids from both processes: a retried delivery
    feedback.record_scores(f"r{r}", "v1", [{"deal_id": f"D{r}-{i}"} for i in range(5)], scores)
for i in rng.sample(range(10), 10):
    feedback.record_outcomes([Outcome(f"D{i}-0", "won", float(i), date(2025, 1, 1))])
feedback.record_judgement(Judgement("m1", "D0-0", "D1-0"))
feedback.stop()
"""


def test_two_service_processes_on_one_database(database_url: str, tmp_path: Path) -> None:
    """Real processes, started at once on a fresh database: both migrate, log, record; nothing doubles. A
    request id sent to both is two scorings, each kept (the training view reads the latest)."""
    import subprocess
    import sys

    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    processes = [subprocess.Popen([sys.executable, "-c", _PROCESS_SCRIPT, database_url, str(tmp_path / name)],
                                  env=env, stderr=subprocess.PIPE) for name in ("a", "b")]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()[-2000:]
    assert count(database_url, "score_log") == 100
    assert count(database_url, "outcomes") == 10
    assert count(database_url, "outcome_revisions") == 10
    assert count(database_url, "judgements") == 1


def test_a_full_queue_sends_requests_to_the_spool_and_nothing_is_lost(database_url: str, tmp_path: Path) -> None:
    feedback = Feedback(make_config(database_url, tmp_path / "spool", queue_size=1))
    assert feedback.score_log is not None
    for r in range(3):  # the writer is not running yet: the queue holds one request, two overflow
        feedback.record_scores(f"r{r}", "v1", [deal(f"D{r}")], batch([0.5], [5.0], ["B"]))
    stats = feedback.score_log.stats()
    assert (stats.overflow_total, stats.spooled, stats.queued) == (2, 2, 1)
    feedback.start()
    try:
        wait_until(lambda: feedback.score_log_pending() == 0, message="queue and spool to drain")
    finally:
        feedback.stop()
    assert count(database_url, "score_log") == 3


def test_the_queue_is_bounded_by_the_deals_it_holds_too(database_url: str, tmp_path: Path) -> None:
    """DEALSCORE_SCORE_LOG_QUEUE_SIZE counts requests: with the database stalled, 10,000 requests of 1,000 deals
    could wait in memory (about 7 GB; a security review held 176 MB in 250). Deals beyond queue_deals go to the
    spool; a request finding the queue empty waits there whatever its size."""
    feedback = Feedback(make_config(database_url, tmp_path / "spool", queue_size=100, queue_deals=5))
    log = feedback.score_log
    assert log is not None
    sizes = (6, 1, 3, 2, 4)  # the writer is not running yet: 6 into the empty queue, the rest beyond 5 deals
    for r, n in enumerate(sizes):
        feedback.record_scores(f"r{r}", "v1", [deal(f"D{r}-{i}") for i in range(n)],
                               batch([0.5] * n, [5.0] * n, ["B"] * n))
    stats = log.stats()
    assert (stats.overflow_total, stats.spooled, stats.queued) == (4, 10, 6)
    feedback.start()
    try:
        wait_until(lambda: feedback.score_log_pending() == 0, message="queue and spool to drain")
    finally:
        feedback.stop()
    assert count(database_url, "score_log") == sum(sizes)


def test_the_writer_lets_scoring_run_between_pieces_of_one_transaction(database_url: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush of a few hundred single-deal requests, converted and inserted in one go, held the GIL for stretches
    the scoring threads waited out in full (single-deal p99 6 ms against 1.5 ms without the log; the figures are
    in score_log.WRITE_PIECE_ROWS). The writer now lets go of the GIL between pieces of a batch, and still inserts
    the batch in one transaction: a failure in a later piece leaves none of the batch's rows in the database, and
    each is written once when the database answers again."""
    import service.feedback.score_log as score_log_module

    let_go: list[int] = []
    monkeypatch.setattr(score_log_module, "_let_scoring_run", lambda: let_go.append(1))
    inserts: list[int] = []  # rows per INSERT statement sent
    failing = [True]
    original = sa.engine.Connection.exec_driver_sql

    def watched(self: sa.engine.Connection, statement: str, parameters: Any = None, *args: Any, **kwargs: Any) -> Any:
        if statement.startswith("INSERT INTO score_log"):
            inserts.append(len(parameters))
            if failing[0] and len(inserts) == 3:
                raise sa.exc.OperationalError(statement, {}, Exception("server closed the connection"))
        return original(self, statement, parameters, *args, **kwargs)

    monkeypatch.setattr(sa.engine.Connection, "exec_driver_sql", watched)
    feedback = Feedback(make_config(database_url, tmp_path / "spool", retry_seconds=60.0))
    assert feedback.score_log is not None
    n = 5 * score_log_module.WRITE_PIECE_ROWS
    for r in range(n):  # the writer is not running yet: one batch
        feedback.record_scores(f"r{r}", "v1", [deal(f"D{r}")], batch([0.5], [5.0], ["B"]))
    log = feedback.score_log
    feedback.start()
    try:
        wait_until(lambda: log.stats().spooled == n, message="the batch to be spooled")
        assert inserts == [score_log_module.WRITE_PIECE_ROWS] * 3
        # Four pauses while converting the five pieces, two between the three inserts sent.
        assert len(let_go) == 4 + 2
        assert count(database_url, "score_log") == 0  # the two pieces sent before the failure were rolled back
        failing[0] = False
        assert log.replay_soon({"D0"}, timeout=10)
        wait_until(lambda: feedback.score_log_pending() == 0, message="the spool to be replayed")
    finally:
        feedback.stop()
    assert count(database_url, "score_log") == n


def test_an_entry_postgresql_refuses_is_dropped_and_the_rest_of_the_log_goes_on(postgres_url: str,
                                                                                tmp_path: Path) -> None:
    """PostgreSQL cannot store a NUL character. The API refuses one, but the log must not let any single
    refused entry hold back, and keep spooling, every entry after it."""
    with running(postgres_url, tmp_path / "spool") as feedback:
        feedback.record_scores("r1", "v1", [deal("D1"), deal("BAD\x00ID"), deal("D2")],
                               batch([0.1, 0.2, 0.3], [1.0, 2.0, 3.0], ["C", "C", "C"]))
        feedback.flush_score_log()
        feedback.record_scores("r2", "v1", [deal("D3")], batch([0.4], [4.0], ["B"]))
        feedback.flush_score_log()
        stats = feedback.score_log_stats()
        assert stats is not None
        assert (stats.written_total, stats.dropped_total, stats.spooled, stats.database_up) == (3, 1, 0, True)
    assert count(postgres_url, "score_log") == 3


def test_an_entry_postgresql_refuses_on_the_spool_replay_is_counted_dropped_not_written(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry spooled while the database was down and refused when the spool is replayed: the replay counted it
    written (every row it handed to the database) as well as dropped."""
    down = [True]
    _log_inserts_failing(monkeypatch, lambda _: down[0])
    with running(postgres_url, tmp_path / "spool", retry_seconds=0.1) as feedback:
        feedback.record_scores("r1", "v1", [deal("D1"), deal("BAD\x00ID"), deal("D2")],
                               batch([0.1, 0.2, 0.3], [1.0, 2.0, 3.0], ["C", "C", "C"]))
        assert feedback.score_log is not None
        wait_until(lambda: feedback.score_log is not None and feedback.score_log.stats().spooled == 3,
                   message="spooled")
        down[0] = False
        wait_until(lambda: feedback.score_log_pending() == 0, message="the spool to be replayed")
        stats = feedback.score_log.stats()
        assert (stats.written_total, stats.dropped_total, stats.spooled_total) == (2, 1, 3)
    assert count(postgres_url, "score_log") == 2


# Six entries, the second refused by PostgreSQL (a NUL), in chunks of 3. Call 1 is the first write's first chunk:
# the database down, all six spooled. Then the replay, cut off at the second call number given:
# - after the refused chunk: call 2 the first chunk, refused, so calls 3-5 its rows one by one; call 6 the second
#   chunk, cut off. The next replay: 7-11 alike.
# - inside it (a review): calls 3-4 its first two rows (the second refused), call 5 its third, cut off. The next
#   replay: 6 the chunk, 7-9 one by one, 10 the second chunk.
REPLAYS_CUT_OFF = {
    "after-the-refused-chunk": ((1, 6), [3, 3, 1, 1, 1, 3, 3, 1, 1, 1, 3]),
    "between-one-by-one-inserts": ((1, 5), [3, 3, 1, 1, 1, 3, 1, 1, 1, 3]),
}


@pytest.mark.parametrize("cut_off", REPLAYS_CUT_OFF)
def test_a_replay_cut_off_after_a_refused_entry_counts_it_dropped_once(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_off: str) -> None:
    """The spool keeps no progress within a file: a replay cut off by the database after it met an entry
    PostgreSQL refuses leaves the file whole, and the next replay meets the refusal again. It was counted dropped
    at each meeting: (5 written, 2 dropped) for 6 entries, 5 in the table."""
    failing, expected_calls = REPLAYS_CUT_OFF[cut_off]
    calls = _log_inserts_failing(monkeypatch, lambda call: call in failing)
    with running(postgres_url, tmp_path / "spool", batch_rows=3, retry_seconds=0.1) as feedback:
        log = feedback.score_log
        assert log is not None
        feedback.record_scores("r1", "v1", [deal(d) for d in ("D1", "BAD\x00ID", "D2", "D3", "D4", "D5")],
                               batch([0.5] * 6, [5.0] * 6, ["B"] * 6))
        wait_until(lambda: feedback.score_log_pending() == 0 and len(calls) >= len(expected_calls),
                   message="the spool to be replayed after its first replay was cut off")
        assert calls == expected_calls
        stats = log.stats()
        assert (stats.written_total, stats.dropped_total, stats.spooled_total) == (5, 1, 6)
    assert count(postgres_url, "score_log") == 5


def test_a_replay_cut_off_in_its_own_file_counts_the_orphan_file_it_finished(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replay takes a stopped process's spool file first, then its own. Cut off in its own, it had forgotten the
    rows of the other file, written and the file dropped: /metrics' written total stayed below the table's rows."""
    spool = tmp_path / "spool"
    gone = Feedback(make_config(down_url(), spool))
    gone.start()
    gone.record_scores("r0", "v1", [deal("D1"), deal("D2")], batch([0.5, 0.5], [5.0, 5.0], ["B", "B"]))
    gone.flush_score_log()
    gone.stop()  # its file is an orphan now, replayed by the next process's log

    import service.feedback.score_log as score_log_module

    insert = score_log_module.insert_rows
    down, cut_at_e1 = [True], [True]

    def failing(engine: sa.Engine, rows: Any) -> None:
        if down[0] or (cut_at_e1[0] and any(row["deal_id"] == "E1" for row in rows)):
            cut_at_e1[0] = cut_at_e1[0] and down[0]  # cut off once, after the database came back
            raise sa.exc.OperationalError("INSERT INTO score_log", {}, Exception("connection refused"))
        insert(engine, rows)

    monkeypatch.setattr(score_log_module, "insert_rows", failing)
    with running(database_url, spool, retry_seconds=0.1) as feedback:
        log = feedback.score_log
        assert log is not None
        feedback.record_scores("r1", "v1", [deal("E1")], batch([0.5], [5.0], ["B"]))
        wait_until(lambda: log.spool.rows == 3, message="the orphan's two rows and E1 to be spooled")
        down[0] = False
        wait_until(lambda: feedback.score_log_pending() == 0, message="the spool to be replayed")
        assert not cut_at_e1[0]  # the replay was cut off at E1 once
        assert log.stats().written_total == 3
    assert count(database_url, "score_log") == 3


def test_an_outcome_sent_right_after_its_score_is_checked_against_it(database_url: str, tmp_path: Path) -> None:
    # A long linger: the score is still in the writer's queue when the outcome comes.
    with running(database_url, tmp_path / "spool", flush_seconds=2.0) as feedback:
        feedback.record_scores("r1", "v1", [deal("D1", client_id="C7", created_at="2025-03-01")],
                               batch([0.4], [40.0], ["B"]))
        with pytest.raises(ContractViolation) as refused:
            feedback.record_outcomes([Outcome("D1", "won", 100.0, date(2025, 2, 1))])  # closed before created
        assert [p.field for p in refused.value.problems] == ["outcomes[0].closed_at"]
        feedback.record_scores("r2", "v1", [deal("D2", client_id="C8", created_at="2025-03-01")],
                               batch([0.4], [40.0], ["B"]))
        [result] = feedback.record_outcomes([Outcome("D2", "won", 100.0, date(2025, 4, 1))])
        assert result.client_id == "C8"


def test_the_logged_deal_is_its_latest_scoring(database_url: str) -> None:
    # A deal scored twice (its client or quote changed in between): outcomes link to the latest.
    from datetime import UTC, datetime

    from service.feedback.outcomes import latest_logged_deals
    from service.feedback.tables import score_log

    engine = make_engine(database_url)
    try:
        upgrade(engine)

        def row(at: datetime, client: str) -> dict[str, Any]:
            return {"request_id": f"r-{client}", "deal_id": "D1", "model_version": "v", "p_win": 0.5, "value": 1.0,
                    "expected_value": 0.5, "grade": "B", "scored_at": at,
                    "deal": {"deal_id": "D1", "client_id": client}}

        with engine.begin() as connection:  # the later scoring written first: not the order of the rows
            connection.execute(score_log.insert(), [row(datetime(2025, 3, 2, tzinfo=UTC), "later"),
                                                    row(datetime(2025, 3, 1, tzinfo=UTC), "earlier")])
        with engine.connect() as connection:
            assert latest_logged_deals(connection, ["D1"])["D1"]["client_id"] == "later"
    finally:
        engine.dispose()


def test_requests_logged_in_one_batch_read_as_each_logged_alone(database_url: str, tmp_path: Path) -> None:
    """The writer converts the scorer's columns of a batch's requests together where their column names agree;
    each request's entries must read exactly as its columns converted alone, and a request whose columns
    cannot be read loses only its own entries."""
    from model.records import deal_columns
    from service.feedback.score_log import columns_documents
    from service.feedback.tables import score_log
    from service.schemas import request_models

    parse = request_models(10).score.model_validate
    bodies = [
        {"deals": [{"deal_id": "A1", "client_id": "C1", "created_at": "2025-03-10", "amount": 10.5,
                    "product": "payroll", "client": {"client_id": "C1", "industry": "retail", "since": "2020-01-02"}}]},
        {"deals": [{"deal_id": "B1", "created_at": "2025-03-11", "amount": 7, "product": "leasing"},
                   {"deal_id": "B2", "client_id": "C2", "created_at": "2025-03-12", "product": "payroll"}]},
        {"deals": [{"deal_id": "C1", "client_id": "C9", "created_at": "2025-04-01", "source": "referral",
                    "client": {"client_id": "C9", "won_deals": 3, "last_won_at": "2025-01-01"}}]},
        {"deals": [{"deal_id": "D1", "client_id": "C1", "created_at": "2025-03-13", "amount": 99.0,
                    "product": "credit_line", "client": {"client_id": "C1", "industry": "banking"}}]},
    ]
    requests = [deal_columns(parse(body).deals) for body in bodies]  # type: ignore[attr-defined]
    # Alike column names, unlike columns: a request whose deal ids outnumber its other columns' rows.
    broken = {name: values[:1] if name != "deal_id" else values for name, values in requests[1].items()
              if name != "product"}  # its own column names: a group of its own
    # Alike column names, one column short by a value: read alone it lacks the value; it must not take the next
    # request's amounts.
    short = {name: values[:1] if name == "amount" else values for name, values in requests[1].items()}
    expected = {f"r{i}": columns_documents(columns) for i, columns in enumerate(requests)}
    expected["short"] = columns_documents(short)
    feedback = Feedback(make_config(database_url, tmp_path / "spool"))
    assert feedback.score_log is not None
    # The writer is not running yet: one batch. The short request comes before requests of its column names: a
    # value missing from it must not shift the next request's values onto the wrong deals.
    feedback.record_columns("broken", "v1", broken, batch([0.5] * 2, [1.0] * 2, ["B"] * 2))
    feedback.record_columns("short", "v1", short, batch([0.5] * 2, [1.0] * 2, ["B"] * 2))
    for i, columns in enumerate([*requests, *requests]):
        n = len(columns["deal_id"])
        feedback.record_columns(f"r{i % len(requests)}" if i < len(requests) else f"again{i}", "v1", columns,
                                batch([0.5] * n, [1.0] * n, ["B"] * n))
    feedback.start()
    try:
        wait_until(lambda: feedback.score_log_pending() == 0, message="the log to drain")
        assert feedback.score_log.stats().dropped_total == 2
    finally:
        feedback.stop()
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            logged = connection.execute(sa.select(score_log.c.request_id, score_log.c.deal)
                                        .order_by(score_log.c.request_id, score_log.c.deal_id)).all()
    finally:
        engine.dispose()
    by_request: dict[str, list[Any]] = {}
    for request_id, document in logged:
        by_request.setdefault(request_id, []).append(document)
    assert {r: by_request[r] for r in expected} == {r: sorted(d, key=lambda x: str(x["deal_id"]))
                                                    for r, d in expected.items()}
    assert sorted(by_request) == sorted([*expected, *(f"again{i}" for i in range(4, 8))])


def test_an_outcome_and_a_judgement_right_after_another_workers_scoring_find_it(database_url: str,
                                                                                tmp_path: Path) -> None:
    """Two workers on one database: a deal scored by one, its outcome (or a judgement) sent at once to the other.
    The scoring worker's log writer gathers for up to flush_seconds; the other had stored the outcome without
    its client (the win lost to the client's history for good) and refused the judgement as 'never scored'
    (the integration audit: 6 of 12 and 10 of 20 calls)."""
    with running(database_url, tmp_path / "a", flush_seconds=0.4) as scorer, \
            running(database_url, tmp_path / "b", flush_seconds=0.4, peer_log_wait_seconds=1.5) as other:
        scorer.record_scores("r1", "v1", [deal("P1", client_id="C7", created_at="2025-01-02"), deal("P2")],
                             batch([0.5, 0.4], [5.0, 4.0], ["B", "B"]))
        [recorded] = other.record_outcomes([Outcome("P1", "won", 10.0, date(2025, 2, 1))])
        assert recorded.client_id == "C7"
        scorer.record_scores("r2", "v1", [deal("P3"), deal("P4")], batch([0.5, 0.4], [5.0, 4.0], ["B", "B"]))
        assert other.record_judgement(Judgement("m1", "P3", "P4")).result == "created"


def test_only_a_service_of_several_workers_waits_for_their_score_logs() -> None:
    from service.feedback import FeedbackConfig
    from service.settings import Settings

    assert FeedbackConfig.from_settings(Settings(workers=1)).peer_log_wait_seconds == 0.0
    several = FeedbackConfig.from_settings(Settings(workers=2))
    assert several.peer_log_wait_seconds == several.flush_seconds + 0.5


def test_a_deal_scored_without_created_at_takes_an_outcome_closed_before_its_latest_scoring(
        database_url: str, tmp_path: Path) -> None:
    """Scored without created_at, a deal is scored as of today; the log had recorded that day as its created_at,
    so a deal re-scored nightly had its outcome (closed yesterday) refused, and the whole batch with it."""
    from model.records import deal_columns
    from service.feedback.score_log import columns_documents
    from service.schemas import request_models

    deals = request_models(10).score.model_validate({"deals": [  # type: ignore[attr-defined]
        {"deal_id": "U1", "client_id": "C1", "amount": 50.0}, {"deal_id": "U2", "created_at": "2025-03-01"}]}).deals
    columns = deal_columns(deals, today=date(2025, 6, 10))
    assert np.isfinite(columns["created_day"]).all()  # the scorer still has a day for each
    documents = columns_documents(columns)
    assert "created_at" not in documents[0] and documents[1]["created_at"] == "2025-03-01"
    with running(database_url, tmp_path / "spool") as feedback:
        feedback.record_columns("r1", "v1", columns, batch([0.5, 0.5], [25.0, 1.0], ["B", "B"]))
        recorded = feedback.record_outcomes([Outcome("U1", "won", 50.0, date(2025, 6, 9)),
                                             Outcome("U2", "lost", None, date(2025, 4, 1))])
    assert [r.result for r in recorded] == ["created", "created"] and recorded[0].client_id == "C1"


def _log_inserts_failing(monkeypatch: pytest.MonkeyPatch, fails: Callable[[int], bool]) -> list[int]:
    """The score log's inserts (not the store's own connections) raise a connection error on the calls `fails`
    picks (1 for the first); returns the rows handed to each call."""
    import service.feedback.score_log as score_log_module

    insert = score_log_module.insert_rows
    calls: list[int] = []

    def failing(engine: sa.Engine, rows: Any) -> None:
        calls.append(len(rows))
        if fails(len(calls)):
            raise sa.exc.OperationalError("INSERT INTO score_log", {}, Exception("connection refused"))
        insert(engine, rows)

    monkeypatch.setattr(score_log_module, "insert_rows", failing)
    return calls


def _score_log_down_for_a_while(monkeypatch: pytest.MonkeyPatch, feedback: Feedback) -> list[bool]:
    """The score log's database fails while `down[0]` is True (the store's own connections are untouched): its
    writer spools what it is given and backs off for the configured retry_seconds."""
    down = [True]
    _log_inserts_failing(monkeypatch, lambda _: down[0])
    feedback.record_scores("r1", "v1", [deal("D1"), deal("D2")], batch([0.3, 0.6], [30.0, 60.0], ["B", "A"]))
    assert feedback.score_log is not None
    wait_until(lambda: feedback.score_log is not None and feedback.score_log.stats().spooled == 2, message="spooled")
    return down


def test_chunks_written_before_the_database_failed_are_not_spooled_again(database_url: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A write of more rows than batch_rows goes in chunks, each its own transaction. When a later chunk failed,
    every row was spooled, the chunks already in the database too: the replay wrote them again as no-ops and
    counted them written twice (/metrics' written total above the rows in the table)."""
    calls = _log_inserts_failing(monkeypatch, lambda call: call == 2)
    feedback = Feedback(make_config(database_url, tmp_path / "spool", batch_rows=2, retry_seconds=60.0))
    log = feedback.score_log
    assert log is not None
    feedback.record_scores("r1", "v1", [deal(f"D{i}") for i in range(5)], batch([0.5] * 5, [5.0] * 5, ["B"] * 5))
    feedback.start()
    try:
        wait_until(lambda: log.stats().spooled > 0, message="the failed chunks to be spooled")
        assert calls == [2, 2] and count(database_url, "score_log") == 2
        assert log.stats().spooled == 3  # the second and third chunks, not the first
        assert log.replay_soon({"D4"}, timeout=10)
        wait_until(lambda: feedback.score_log_pending() == 0, message="the spool to be replayed")
        assert log.stats().written_total == 5
    finally:
        feedback.stop()
    assert count(database_url, "score_log") == 5


def test_deals_scored_while_the_log_was_down_can_be_judged_once_the_database_answers(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An outage audit: after the database came back, the writer's back-off (here 30 s; up to 60 s) held the spool,
    and a judgement of two deals scored during the outage was refused 422 "never scored"."""
    with running(database_url, tmp_path / "spool", retry_seconds=30.0) as feedback:
        down = _score_log_down_for_a_while(monkeypatch, feedback)
        down[0] = False  # the database is back; the writer would try it again in 30 s
        started = time.monotonic()
        recorded = feedback.record_judgement(Judgement("Elena", "D1", "D2"))
        assert (recorded.result, recorded.revision) == ("created", 1)
        assert time.monotonic() - started < 5
        assert feedback.score_log is not None and feedback.score_log.stats().spooled == 0


def test_a_judgement_of_a_deal_still_in_the_spool_is_a_503_not_a_422(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.feedback import FeedbackUnavailable

    with running(database_url, tmp_path / "spool", retry_seconds=30.0) as feedback:
        _score_log_down_for_a_while(monkeypatch, feedback)  # and it stays down
        with pytest.raises(FeedbackUnavailable) as refused:
            feedback.record_judgement(Judgement("Elena", "D1", "D2"))
        assert refused.value.status == 503
        assert [(p.field, p.got) for p in refused.value.problems] == [
            ("score log", "2 scores still in the spool, 2 deals of this judgement among them")]


def _counted_log_tries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the score log's writer tried its database (any insert, a spool replay's included)."""
    import service.feedback.score_log as score_log_module

    tries = [0]
    insert = score_log_module.insert_rows

    def counting(engine: sa.Engine, rows: Any) -> None:
        tries[0] += 1
        insert(engine, rows)

    monkeypatch.setattr(score_log_module, "insert_rows", counting)
    return tries


def test_a_judgement_of_deals_never_scored_is_a_422_while_the_spool_holds_other_deals(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any row in the spool had a judgement naming deals never scored refused 503 "retry later" (a retry got the
    same), and each such call made the writer try its database at once, its back-off forgotten."""
    with running(database_url, tmp_path / "spool", retry_seconds=30.0) as feedback:
        _score_log_down_for_a_while(monkeypatch, feedback)  # D1 and D2 wait in the spool; the database stays down
        tries = _counted_log_tries(monkeypatch)
        for _ in range(3):
            with pytest.raises(ContractViolation) as refused:
                feedback.record_judgement(Judgement("Elena", "N1", "N2"))
            assert refused.value.status == 422
            assert [(p.field, p.got) for p in refused.value.problems] == [
                ("above_deal_id", "'N1' (never scored)"), ("below_deal_id", "'N2' (never scored)")]
        assert tries[0] == 0  # the spool holds neither deal: nothing to replay for them
        with pytest.raises(ContractViolation) as refused:  # final for N1; D1 is not said to be never scored
            feedback.record_judgement(Judgement("Elena", "N1", "D1"))
        assert [(p.field, p.got) for p in refused.value.problems] == [("above_deal_id", "'N1' (never scored)")]
        assert feedback.score_log is not None and feedback.score_log.stats().spooled == 2


def test_a_stream_of_judgements_of_spooled_deals_tries_the_database_once_per_retry_wait(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each judgement of a deal in the spool forgot the writer's back-off and waited 2 s for a replay: five calls
    against a database refusing the log's writes made five tries. Callers now bring a try forward once per
    retry_seconds, and a call whose deal cannot be replayed in time is answered 503 at once."""
    from service.feedback import FeedbackUnavailable

    with running(database_url, tmp_path / "spool", retry_seconds=30.0) as feedback:
        _score_log_down_for_a_while(monkeypatch, feedback)  # and it stays down
        tries = _counted_log_tries(monkeypatch)
        started = time.monotonic()
        for _ in range(5):
            with pytest.raises(FeedbackUnavailable):
                feedback.record_judgement(Judgement("Elena", "D1", "D2"))
        assert tries[0] == 1  # the first call's, brought forward; the others wait for the writer's back-off
        assert time.monotonic() - started < 3  # not 2 s each


def test_a_judgement_of_a_deal_in_another_workers_spool_is_a_503_not_a_422(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers share the spool directory, each writing its own file. A judgement reaching a worker other than the
    one that scored its deals during an outage was refused 422 "never scored" (final to a CRM: the judgement lost)
    while the scores waited in the other worker's spool for its back-off (up to a minute)."""
    from service.feedback import FeedbackUnavailable

    with running(database_url, tmp_path / "spool", retry_seconds=30.0) as scorer:
        _score_log_down_for_a_while(monkeypatch, scorer)  # D1 and D2 wait in the scoring worker's spool
        with running(database_url, tmp_path / "spool", retry_seconds=30.0) as other:
            with pytest.raises(FeedbackUnavailable) as refused:
                other.record_judgement(Judgement("Elena", "D1", "D2"))
            assert refused.value.status == 503
            assert [(p.field, p.got) for p in refused.value.problems] == [
                ("score log", "2 deals of this judgement in another worker's spool")]
            with pytest.raises(ContractViolation) as final:  # a deal no spool holds is still never scored
                other.record_judgement(Judgement("Elena", "N1", "D1"))
            assert [(p.field, p.got) for p in final.value.problems] == [("above_deal_id", "'N1' (never scored)")]


_SPOOL_OWNER = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from service.feedback.score_log import Spool
owner = Spool(Path(sys.argv[1]))
row = {"request_id": "r", "deal_id": "D1", "model_version": "v", "p_win": 0.5, "value": None, "expected_value": None,
       "grade": "A", "scored_at": datetime.now(UTC), "deal": {"deal_id": "D1", "notes": "n" * 200}}
for _ in range(3):
    owner.append([row] * 50_000)  # an outage: 17 MB spooled
    owner.replay(lambda rows: None, 10_000)  # the database is back: replayed, then the file truncated to 0
"""

_SPOOL_SEARCHER = """
import subprocess, sys
from pathlib import Path
from service.feedback.score_log import Spool
owner = subprocess.Popen([sys.executable, "-c", sys.argv[2], sys.argv[1]])
searcher = Spool(Path(sys.argv[1]))
while owner.poll() is None:
    searcher.held_elsewhere({"N1"})  # a deal no spool holds: every file is read to its end
assert owner.returncode == 0
"""


def test_searching_another_workers_spool_survives_its_replay_truncating_the_file(tmp_path: Path) -> None:
    """A judgement of a deal the database lacks searches the other workers' spool files, mapped into memory; the
    owner's replay truncated its file meanwhile, and reading the mapping past the file's new end killed the searching
    worker with SIGBUS (its requests and the scores it held in memory with it): every run, the first replay."""
    spool = tmp_path / "spool"
    spool.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    searcher = subprocess.run([sys.executable, "-c", _SPOOL_SEARCHER, str(spool), _SPOOL_OWNER], env=env,
                              capture_output=True, timeout=120)
    assert searcher.returncode == 0, (searcher.returncode, searcher.stderr.decode()[-2000:])


def test_a_deal_id_across_two_reads_of_another_workers_spool_is_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.feedback import score_log as score_log_module

    monkeypatch.setattr(score_log_module, "SPOOL_SEARCH_CHUNK_BYTES", 7)  # every needle spans two reads or more
    (tmp_path / "score-log-other-1-a.jsonl").write_bytes(b'{"request_id":"r","deal_id":"D-17","grade":"A"}\n'
                                                         b'{"request_id":"r","deal_id":"D-2","grade":"B"}\n')
    (tmp_path / "score-log-other-2-b.jsonl").write_bytes(b"")  # a worker that spooled nothing yet
    searcher = score_log_module.Spool(tmp_path)
    assert searcher.held_elsewhere({"D-17", "D-2", "D-1", "D"}) == {"D-17", "D-2"}
    assert score_log_module.Spool(tmp_path / "missing").held_elsewhere({"D-17"}) == set()
