"""Pruning the score log: drop the scorings nothing reads any more, keep every one a reader can still pick.

The score log keeps every scoring, so a CRM that re-scores its open pipeline nightly adds a row per open deal
per night (440-510 bytes each on SQLite). Most of them are superseded: the readers take one scoring of a deal
per purpose, and a later scoring of the same deal by the same model version replaces an earlier one for all
of them. A scoring from before the cut-off is kept when it is

- the latest of its deal by its model version (what quality reads of a deal that closes later, and, across
  versions, the training view's and the outcomes' "deal as last logged");
- the latest of its version on or before its deal's close day and before the outcome was reported (what
  `quality.said_at_close` takes as "said at the time");
- the one `quality.closest` picks for a judgement of its deal, per version (what the manager was shown);
- the latest carrying its client's attributes (the training_clients view).

Everything else scored before the cut-off is deleted. What cannot be known ahead: an outcome reported later
with a close day before the deal's latest scoring by a version finds no scoring of that version at the time,
and the deal leaves that version's quality report (instead of counting with an older score). Only rows
before the cut-off are touched, so the recent past stays whole for audits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from itertools import groupby
from typing import NamedTuple

import sqlalchemy as sa

from service.feedback.quality import closest, said_at_close
from service.feedback.tables import judgements, outcomes, score_log

DELETE_CHUNK = 500  # ids per DELETE: well under SQLite's bound-parameter limit, short transactions


@dataclass(frozen=True)
class PruneResult:
    before: datetime
    candidates: int  # rows scored before the cut-off
    deleted: int  # deleted, or that would be with dry_run
    dry_run: bool

    @property
    def kept(self) -> int:
        return self.candidates - self.deleted


def _client_rows(engine: sa.Engine) -> sa.TextClause:
    """The ids of each client's latest scoring that carries its attributes, as the training_clients view
    picks it (the same expressions: a client is its deal's `client_id`, its attributes the `client` object)."""
    if engine.dialect.name == "postgresql":
        client, is_object = "s.deal ->> 'client_id'", "jsonb_typeof(s.deal -> 'client') = 'object'"
    else:
        client, is_object = "json_extract(s.deal, '$.client_id')", "json_type(s.deal, '$.client') = 'object'"
    return sa.text(f"SELECT c.id FROM (SELECT s.id, ROW_NUMBER() OVER (PARTITION BY {client} "  # noqa: S608
                   f"ORDER BY s.scored_at DESC, s.id DESC) AS latest FROM score_log s "
                   f"WHERE {client} IS NOT NULL AND {is_object}) c WHERE c.latest = 1")


def _read_times(connection: sa.Connection) -> tuple[dict[str, tuple[date, datetime]], dict[str, list[datetime]]]:
    closes = {deal_id: (closed_at, recorded_at) for deal_id, closed_at, recorded_at in connection.execute(
        sa.select(outcomes.c.deal_id, outcomes.c.closed_at, outcomes.c.recorded_at))}
    judged: dict[str, list[datetime]] = defaultdict(list)
    for above, below, at in connection.execute(
            sa.select(judgements.c.above_deal_id, judgements.c.below_deal_id, judgements.c.updated_at)):
        judged[above].append(at)
        judged[below].append(at)
    return closes, judged


class LoggedScoring(NamedTuple):
    scored_at: datetime
    row_id: int


def needed(scorings: list[LoggedScoring], closed_at: date | None, judged_at: Iterable[datetime],
           recorded_at: datetime | None = None) -> set[int]:
    """The row ids, of one deal's scorings by one version in time order, that some reader picks: the latest; the
    one quality reads as said at the close (quality.said_at_close); the one each judgement is compared on
    (quality.closest)."""
    picked: list[LoggedScoring | None] = [scorings[-1]]
    if closed_at is not None:
        picked.append(said_at_close(scorings, closed_at, recorded_at))
    picked += [closest(scorings, when) for when in judged_at]
    return {s.row_id for s in picked if s is not None}


def _groups(connection: sa.Connection, before: datetime) -> Iterator[tuple[str, list[LoggedScoring]]]:
    """Each (deal, version) with a scoring before the cut-off: its deal id and all its scorings, in time order."""
    early = sa.select(score_log.c.deal_id).where(score_log.c.scored_at < before).distinct().subquery()
    rows = connection.execution_options(yield_per=10_000).execute(
        sa.select(score_log.c.deal_id, score_log.c.model_version, score_log.c.scored_at, score_log.c.id)
        .where(score_log.c.deal_id.in_(sa.select(early.c.deal_id)))
        .order_by(score_log.c.deal_id, score_log.c.model_version, score_log.c.scored_at, score_log.c.id))
    for (deal_id, _version), group in groupby(rows, key=lambda row: (row[0], row[1])):
        yield deal_id, [LoggedScoring(scored_at, int(row_id)) for _, _, scored_at, row_id in group]


def prune_score_log(engine: sa.Engine, before: datetime, *, dry_run: bool = False) -> PruneResult:
    """Delete the score log's rows scored before `before` (an aware instant) that no reader can pick."""
    doomed: list[int] = []
    candidates = 0
    with engine.connect() as connection:
        closes, judged = _read_times(connection)
        by_client = {int(row_id) for (row_id,) in connection.execute(_client_rows(engine))}
        for deal_id, scorings in _groups(connection, before):
            closed_at, recorded_at = closes.get(deal_id, (None, None))
            keep = needed(scorings, closed_at, judged.get(deal_id, ()), recorded_at)
            for scored_at, row_id in scorings:
                if scored_at < before:
                    candidates += 1
                    if row_id not in keep and row_id not in by_client:
                        doomed.append(row_id)
    if not dry_run:
        for start in range(0, len(doomed), DELETE_CHUNK):
            # One short transaction per chunk: a service logging meanwhile waits milliseconds, not the whole
            # prune; a prune stopped half-way has only deleted rows it may delete.
            with engine.begin() as connection:
                connection.execute(score_log.delete().where(score_log.c.id.in_(doomed[start:start + DELETE_CHUNK]),
                                                            score_log.c.scored_at < before))
    return PruneResult(before=before, candidates=candidates, deleted=len(doomed), dry_run=dry_run)


def vacuum(engine: sa.Engine) -> bool:
    """Give the freed pages back to the file system (SQLite's VACUUM; it needs free disk about the size of the
    database). False where the database reuses freed space by itself (PostgreSQL's autovacuum)."""
    if engine.dialect.name != "sqlite":
        return False
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM")
    return True
