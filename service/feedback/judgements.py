"""Managers' pairwise judgements: "deal X should rank above deal Y", one standing view per manager and pair.

Both deals must have been scored (the service said something about them to compare with) and differ.
A judgement is keyed by manager and the unordered pair, so sending it again changes nothing and a
manager who reverses their view updates it: the quality report counts each manager's current view once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa

from model.errors import ContractViolation, Problem, counted
from service.feedback.db import Database, dialect_insert
from service.feedback.outcomes import wait_for_peers
from service.feedback.tables import judgements, score_log

Result = Literal["created", "updated", "unchanged"]
SCORED = "the id of a deal the service has scored"


@dataclass(frozen=True)
class Judgement:
    manager: str
    above_deal_id: str
    below_deal_id: str
    note: str | None = None


@dataclass(frozen=True)
class RecordedJudgement:
    judgement_id: int
    result: Result
    revision: int


def _quoted(value: str) -> str:
    return f"'{value[:40]}...'" if len(value) > 40 else f"'{value}'"


class JudgementStore:
    def __init__(self, database: Database, flush_score_log: Callable[[Collection[str]], object] | None = None, *,
                 peer_log_wait_seconds: float = 0.0) -> None:
        self.database = database
        self._peer_log_wait_seconds = peer_log_wait_seconds  # see FeedbackConfig
        # Scores reach the log a moment after they are given: a judgement made right after scoring
        # waits for the log writer once before calling a deal unscored.
        self._flush_score_log = flush_score_log

    def record(self, item: Judgement) -> RecordedJudgement:
        self.database.ensure_schema()
        manager = item.manager.strip()
        problems: list[Problem] = []
        if not manager:
            problems.append(Problem("manager", "the manager's name or id", "empty text"))
        if item.above_deal_id == item.below_deal_id:
            problems.append(Problem("below_deal_id", "a deal other than above_deal_id",
                                    f"{_quoted(item.below_deal_id)}, the same deal"))
        else:
            missing = self._unscored({item.above_deal_id, item.below_deal_id})
            if missing and self._flush_score_log is not None:
                self._flush_score_log(missing)
                missing = self._unscored(missing)
            if missing and self._peer_log_wait_seconds > 0:  # scored a moment ago by another worker?
                waited_for = missing
                missing = wait_for_peers(lambda: self._unscored(waited_for), lambda left: not left,
                                         self._peer_log_wait_seconds)
            for field, deal_id in (("above_deal_id", item.above_deal_id), ("below_deal_id", item.below_deal_id)):
                if deal_id in missing:
                    problems.append(Problem(field, SCORED, f"{_quoted(deal_id)} (never scored)"))
        if problems:
            raise ContractViolation(f"judgement refused: {counted(len(problems), 'problem')}", problems)
        # Trimmed as every text the service takes: "  n  " sent again as "n" was a new revision of the view.
        note = (item.note.strip() or None) if item.note is not None else None
        return self._upsert(Judgement(manager, item.above_deal_id, item.below_deal_id, note))

    def _unscored(self, deal_ids: set[str]) -> set[str]:
        with self.database.engine.connect() as connection:
            found = connection.execute(sa.select(score_log.c.deal_id).where(score_log.c.deal_id.in_(sorted(deal_ids)))
                                       .distinct()).scalars().all()
        return deal_ids - set(found)

    def _upsert(self, item: Judgement) -> RecordedJudgement:
        now = datetime.now(UTC)
        low, high = sorted((item.above_deal_id, item.below_deal_id))
        with self.database.engine.begin() as connection:
            insert = dialect_insert(connection, judgements).values(
                manager=item.manager, deal_low=low, deal_high=high, above_deal_id=item.above_deal_id,
                below_deal_id=item.below_deal_id, note=item.note, revision=1, created_at=now, updated_at=now)
            table, new = judgements.c, insert.excluded
            statement = insert.on_conflict_do_update(
                index_elements=["manager", "deal_low", "deal_high"],
                # A view re-sent without its note keeps the stored one (and is unchanged when nothing else is):
                # a note is not erased by a CRM that does not carry it. A reversed view takes its own note.
                set_={"above_deal_id": new.above_deal_id, "below_deal_id": new.below_deal_id,
                      "note": sa.case((table.above_deal_id.is_distinct_from(new.above_deal_id), new.note),
                                      else_=sa.func.coalesce(new.note, table.note)),
                      "revision": table.revision + 1, "updated_at": new.updated_at},
                where=sa.or_(table.above_deal_id.is_distinct_from(new.above_deal_id),
                             sa.and_(new.note.is_not(None), table.note.is_distinct_from(new.note))),
            ).returning(table.id, table.revision)
            stored = connection.execute(statement).first()
            if stored is None:
                judgement_id, revision = connection.execute(
                    sa.select(table.id, table.revision).where(table.manager == item.manager, table.deal_low == low,
                                                              table.deal_high == high)).one()
                return RecordedJudgement(int(judgement_id), "unchanged", int(revision))
        revision = int(stored[1])
        return RecordedJudgement(int(stored[0]), "created" if revision == 1 else "updated", revision)
