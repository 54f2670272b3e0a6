"""Realised outcomes: stored idempotently by deal id, every change kept, and fed to the client history.

Sending an outcome twice changes nothing (same revision, no new audit row); a changed outcome bumps
the revision and is recorded in outcome_revisions. Both are one upsert (INSERT ... ON CONFLICT ... DO
UPDATE WHERE something differs), so two service processes receiving the same outcome at once store it
once. The in-memory OutcomeBook (model/history_overlay.py) follows the table: updated on each POST,
loaded at start, and refreshed periodically with what other processes recorded.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from model.contract import DATE_SLACK, latest_date_text
from model.errors import ContractViolation, Problem, counted
from model.history_overlay import OutcomeBook, OutcomeEvent
from model.records import parse_date
from service.feedback.db import Database, database_now, dialect_insert
from service.feedback.tables import outcome_revisions, outcomes, score_log

logger = logging.getLogger("dealscore.service.feedback")

_EPOCH = date(1970, 1, 1)
REFRESH_OVERLAP = timedelta(minutes=5)  # re-read this much before the last read began: late commits
# An outcome stored without a client (no client_id sent, its deal never scored) is looked up in the score log again
# at each refresh for this long after it was stored, at most this many of them (the latest): its deal may be
# scored a moment later (a CRM that reports the close before it scores the deal's last change). Bounded so the
# lookups stay cheap: 10,000 for a day had cost each worker 0.17-0.64 s a refresh (a review).
CLIENTLESS_LOOKUP = timedelta(hours=1)
CLIENTLESS_LOOKUP_MOST = 2_000
Result = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class Outcome:
    deal_id: str
    status: Literal["won", "lost"]
    amount: float | None
    # None: not sent. The deal's stored close day stands when it has an outcome already (a CRM re-sending
    # it the next day, or a status correction, does not move it), else today.
    closed_at: date | None
    client_id: str | None = None

    @property
    def day(self) -> date:
        assert self.closed_at is not None, "closed_at is resolved before an outcome is checked or stored"
        return self.closed_at


@dataclass(frozen=True)
class RecordedOutcome:
    deal_id: str
    result: Result
    revision: int
    client_id: str | None


def day_number(day: date) -> int:
    return (day - _EPOCH).days


def event_of(deal_id: str, status: str, amount: float | None, closed_at: date, client_id: str | None,
             logged: Mapping[str, Any] | None = None) -> OutcomeEvent:
    """The book's event of an outcome; `logged`, the deal as last scored, tells a won deal's product."""
    return OutcomeEvent(deal_id=deal_id, client_id=client_id, won=status == "won",
                        amount=math.nan if amount is None else float(amount), closed_day=day_number(closed_at),
                        product=_text((logged or {}).get("product")) if status == "won" else None)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def latest_logged_deals(connection: sa.Connection, deal_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The deal as last logged, for each of `deal_ids` the score log knows."""
    wanted = sorted(set(deal_ids))
    found: dict[str, tuple[datetime, int, dict[str, Any]]] = {}
    for start in range(0, len(wanted), 500):
        rows = connection.execute(
            sa.select(score_log.c.deal_id, score_log.c.scored_at, score_log.c.id, score_log.c.deal)
            .where(score_log.c.deal_id.in_(wanted[start:start + 500])))
        for deal_id, scored_at, row_id, deal in rows:
            known = found.get(deal_id)
            if known is None or (scored_at, row_id) > known[:2]:
                found[deal_id] = (scored_at, row_id, deal if isinstance(deal, dict) else {})
    return {deal_id: entry[2] for deal_id, entry in found.items()}


def realised_amount(status: str, amount: float | None, deal: dict[str, Any] | None) -> float | None:
    """The money a won outcome realised: the amount reported, else the deal's quoted amount as last scored
    (as the training_deals view takes it); None when neither is known. A lost deal realised nothing."""
    if status != "won" or amount is not None:
        return amount
    quoted = (deal or {}).get("amount")
    return float(quoted) if isinstance(quoted, int | float) and not isinstance(quoted, bool) else None


def _logged_client(deal: dict[str, Any] | None) -> str | None:
    if not deal:
        return None
    client = deal.get("client")
    return _text(deal.get("client_id")) or (_text(client.get("client_id")) if isinstance(client, dict) else None)


def _bind(table: sa.Table, *names: str) -> dict[str, Any]:
    return {name: sa.bindparam(name, type_=table.c[name].type) for name in names}


@functools.cache
def _statements(dialect: str) -> tuple[Any, Any, Any]:
    """The upsert, the audit insert and the revision lookup, built once per dialect (building costs more
    than running them) and executed with plain parameters."""
    upsert_insert = dialect_insert(dialect, outcomes).values(
        **_bind(outcomes, "deal_id", "status", "amount", "closed_at", "client_id", "recorded_at", "updated_at"),
        revision=1)
    table, new = outcomes.c, upsert_insert.excluded
    changed = sa.or_(
        table.status.is_distinct_from(new.status),
        table.amount.is_distinct_from(new.amount),
        table.closed_at.is_distinct_from(new.closed_at),
        sa.and_(new.client_id.is_not(None), table.client_id.is_distinct_from(new.client_id)),
    )
    upsert = upsert_insert.on_conflict_do_update(
        index_elements=["deal_id"],
        set_={"status": new.status, "amount": new.amount, "closed_at": new.closed_at,
              "client_id": sa.func.coalesce(new.client_id, table.client_id),
              "revision": table.revision + 1, "updated_at": new.updated_at},
        where=changed,
    ).returning(table.revision, table.client_id)
    audit = dialect_insert(dialect, outcome_revisions).values(
        **_bind(outcome_revisions, "deal_id", "revision", "status", "amount", "closed_at", "client_id", "request_id",
                "recorded_at"),
    ).on_conflict_do_nothing(index_elements=["deal_id", "revision"])
    current = sa.select(table.revision, table.client_id).where(table.deal_id == sa.bindparam("deal_id"))
    return upsert, audit, current


class OutcomeStore:
    def __init__(self, database: Database, book: OutcomeBook,
                 flush_score_log: Callable[[Collection[str]], object] | None = None, *,
                 peer_log_wait_seconds: float = 0.0) -> None:
        self.database = database
        self.book = book
        # Scores reach the log a moment after they are given: an outcome reported right after scoring waits
        # for the log writer once, so it is checked against the deal's created_at and linked to its client
        # exactly as it would be a second later.
        self._flush_score_log = flush_score_log
        self._peer_log_wait_seconds = peer_log_wait_seconds
        # A refresh reads the outcomes stamped from `_read_from` on (None: all of them); of those, the ones it
        # applied before (deal -> stamp) are read again but not applied again.
        self._read_from: datetime | None = None
        self._applied: dict[str, datetime] = {}
        # Outcomes this process holds without a client, by deal, with their stamp (CLIENTLESS_LOOKUP). Without
        # the lookup, such a win reached the client's history only when a process started (loading reads the
        # log): the process that recorded it and the one restarted since scored the client differently.
        self._clientless: dict[str, datetime] = {}
        self._clientless_lock = threading.Lock()  # recorded by request threads, looked up by the refresh's
        self.loaded = False

    def record(self, items: Sequence[Outcome], request_id: str | None = None, *,
               today: date | None = None) -> list[RecordedOutcome]:
        """Store a batch (all or nothing) and update the client history; ContractViolation lists every problem."""
        today = today or datetime.now(UTC).date()
        self.database.ensure_schema()
        engine = self.database.engine
        undated = [o.deal_id for o in items if o.closed_at is None]
        stored = self._stored_close_days(undated) if undated else {}
        items = [dataclasses.replace(o, closed_at=stored.get(o.deal_id, today)) if o.closed_at is None else o
                 for o in items]
        # A stored day was accepted when it came: the deal may have been scored since with a later created_at
        # (an outcome reported first), and a correction that does not send a day must not be refused for it.
        kept_days = {deal_id for deal_id in undated if deal_id in stored}
        logged = self._logged(o.deal_id for o in items)
        # A deal not logged yet, or a win (whose product and quote are read off the log): this process's scores
        # still queued for the log are written first, so a deal re-scored with another product a moment ago is
        # read as last scored. (Another process's queue is not reached: its next write, then a refresh, is.)
        unlogged = len(logged) < len({o.deal_id for o in items})
        if (unlogged or any(o.status == "won" for o in items)) and self._flush_score_log is not None:
            self._flush_score_log({o.deal_id for o in items})
            logged = self._logged(o.deal_id for o in items)
        wanted = {o.deal_id for o in items}
        if len(logged) < len(wanted) and self._peer_log_wait_seconds > 0:
            # Another worker may have scored it a moment ago, its entry still in that worker's queue: stored
            # now, the outcome would lose its client (and its win the client's history) for good.
            logged = wait_for_peers(lambda: self._logged(wanted), lambda found: len(found) == len(wanted),
                                    self._peer_log_wait_seconds)
        # Today (UTC) is only a default: a deal created "tomorrow" by a caller ahead of UTC closes no earlier
        # than its creation. Refusing the default quoted a date the caller never sent.
        defaulted = set(undated) - kept_days
        items = [dataclasses.replace(o, closed_at=_created_day(logged.get(o.deal_id), o.day))
                 if o.deal_id in defaulted else o for o in items]
        self._check(items, logged, today, kept_days)

        results: list[RecordedOutcome] = []
        with engine.begin() as connection:  # writes first: SQLite takes its write lock at once
            now = database_now(connection)  # (no statement on SQLite)
            # When the service had the outcome, which quality compares with the scores' times: on the clock the
            # score log stamps them with (this host's), not the database's. PostgreSQL's clock 3 s behind this
            # host's had a deal scored, then reported 0.5 s later, read as scored only after its outcome was in.
            received = datetime.now(UTC)
            for item in items:
                client_id = item.client_id or _logged_client(logged.get(item.deal_id))
                results.append(self._upsert(connection, item, client_id, request_id, now, received))
        self._note_clients(((r.deal_id, r.client_id) for r in results), now)
        self.book.record_all(event_of(item.deal_id, item.status,
                                      realised_amount(item.status, item.amount, logged.get(item.deal_id)), item.day,
                                      result.client_id, logged.get(item.deal_id))
                             for item, result in zip(items, results, strict=True))
        return results

    def _stored_close_days(self, deal_ids: Sequence[str]) -> dict[str, date]:
        wanted = sorted(set(deal_ids))
        found: dict[str, date] = {}
        with self.database.engine.connect() as connection:
            for start in range(0, len(wanted), 500):
                query = sa.select(outcomes.c.deal_id, outcomes.c.closed_at).where(
                    outcomes.c.deal_id.in_(wanted[start:start + 500]))
                found.update({row.deal_id: row.closed_at for row in connection.execute(query)})
        return found

    def _logged(self, deal_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        with self.database.engine.connect() as connection:
            return latest_logged_deals(connection, deal_ids)

    def _check(self, items: Sequence[Outcome], logged: dict[str, dict[str, Any]], today: date,
               kept_days: Collection[str] = ()) -> None:
        problems = batch_problems([(item.deal_id, item.day) for item in items], today)
        for i, item in enumerate(items):
            where = f"outcomes[{i}]"
            created = (logged.get(item.deal_id) or {}).get("created_at")
            if isinstance(created, str) and created[:10] > item.day.isoformat() and item.deal_id not in kept_days:
                problems.append(Problem(f"{where}.closed_at",
                                        f"a date on or after the deal's created_at ({created[:10]})",
                                        f"'{item.day.isoformat()}'"))
        if problems:
            problems.sort(key=lambda p: _outcome_index(p.field))  # outcome by outcome, as they were sent
            raise ContractViolation(f"{counted(len(problems), 'problem')} in the outcomes", problems)

    def _upsert(self, connection: sa.Connection, item: Outcome, client_id: str | None, request_id: str | None,
                now: datetime, received: datetime) -> RecordedOutcome:
        """`now`: the database's clock, for updated_at (the refreshes' read bound); `received`: this host's, for
        recorded_at (compared with the scores' times)."""
        upsert, audit, current = _statements(connection.dialect.name)
        values = {"deal_id": item.deal_id, "status": item.status, "amount": item.amount, "closed_at": item.day,
                  "client_id": client_id}
        stored = connection.execute(upsert, {**values, "recorded_at": received, "updated_at": now}).first()
        if stored is None:  # the same outcome again: nothing changed
            revision, stored_client = connection.execute(current, {"deal_id": item.deal_id}).one()
            return RecordedOutcome(item.deal_id, "unchanged", int(revision), stored_client)
        revision, stored_client = int(stored[0]), stored[1]
        connection.execute(audit, {**values, "client_id": stored_client, "revision": revision,
                                   "request_id": request_id, "recorded_at": received})
        return RecordedOutcome(item.deal_id, "created" if revision == 1 else "updated", revision, stored_client)

    # -- the overlay's source ----------------------------------------------------------------------
    def load(self) -> int:
        """Fill the book from the table (at start); returns how many outcomes it holds."""
        self._read_from, self._applied = None, {}
        changed = self.refresh()
        self.loaded = True
        return changed

    def refresh(self) -> int:
        """Outcomes recorded since the last look (by any process) into the book; returns how many changed."""
        self.database.ensure_schema()
        query = sa.select(outcomes.c.deal_id, outcomes.c.status, outcomes.c.amount, outcomes.c.closed_at,
                          outcomes.c.client_id, outcomes.c.updated_at)
        if self._read_from is not None:
            query = query.where(outcomes.c.updated_at >= self._read_from)
        with self.database.engine.connect() as connection:
            started = database_now(connection)  # the stamps' clock
            read = connection.execute(query).all()
            rows = [row for row in read if self._applied.get(row.deal_id) != row.updated_at]
            # Outcomes held without a client whose deal the log may know by now (not changed since: not read above).
            fresh = {row.deal_id for row in rows}
            now_logged, logged = self._clientless_now_logged(connection, started, skip=fresh)
            rows += now_logged
            # The logged deal tells a client the outcome did not name, a won deal's quote when no amount came,
            # and a won deal's product (held from then on: no longer a gap).
            wanted = [r.deal_id for r in rows if (r.client_id is None or r.status == "won") and r.deal_id not in logged]
            if wanted:
                logged.update(latest_logged_deals(connection, wanted))
        clients = {row.deal_id: row.client_id or _logged_client(logged.get(row.deal_id)) for row in rows}
        changed = self.book.record_all(
            event_of(row.deal_id, row.status, realised_amount(row.status, row.amount, logged.get(row.deal_id)),
                     row.closed_at, clients[row.deal_id], logged.get(row.deal_id))
            for row in rows)
        self._note_clients(((row.deal_id, clients[row.deal_id]) for row in rows),
                           {row.deal_id: row.updated_at for row in rows})
        # Every outcome stamped an overlap before this read began was committed, so read, by then (the overlap
        # covers commit delays; stamps and `started` are the database's clock). The bound once followed the
        # newest stamp instead: after a bulk import and nothing since, each refresh re-read and re-applied the
        # import's last 5 minutes, 4-5 s of a core every 30 s for 382,092 outcomes (scale audit), until the next
        # outcome came.
        self._read_from = started - REFRESH_OVERLAP
        self._applied = {row.deal_id: row.updated_at for row in read if row.updated_at >= self._read_from}
        return changed

    def _note_clients(self, clients: Iterable[tuple[str, str | None]],
                      stamps: datetime | Mapping[str, datetime]) -> None:
        """Keep track of the outcomes held without a client (`stamps`: when each was stored, or one for all)."""
        with self._clientless_lock:
            for deal_id, client_id in clients:
                if client_id is not None:
                    self._clientless.pop(deal_id, None)
                else:
                    self._clientless[deal_id] = stamps if isinstance(stamps, datetime) else stamps[deal_id]

    def _clientless_now_logged(self, connection: sa.Connection, now: datetime,
                               skip: Collection[str]) -> tuple[list[Any], dict[str, dict[str, Any]]]:
        """The stored rows of the outcomes held without a client whose deal the score log now knows, among those
        stored within CLIENTLESS_LOOKUP of `now` (the latest CLIENTLESS_LOOKUP_MOST; the older ones are dropped),
        and those deals as last logged."""
        with self._clientless_lock:
            recent = sorted(((stamp, deal_id) for deal_id, stamp in self._clientless.items()
                             if now - stamp < CLIENTLESS_LOOKUP), reverse=True)[:CLIENTLESS_LOOKUP_MOST]
            kept = {deal_id for _, deal_id in recent}
            for deal_id in [d for d in self._clientless if d not in kept]:
                del self._clientless[deal_id]
            pending = [deal_id for deal_id in kept if deal_id not in skip]
        if not pending:
            return [], {}
        logged = {deal_id: deal for deal_id, deal in latest_logged_deals(connection, pending).items()
                  if _logged_client(deal)}
        found = list(logged)
        rows: list[Any] = []
        for start in range(0, len(found), 500):
            rows += connection.execute(
                sa.select(outcomes.c.deal_id, outcomes.c.status, outcomes.c.amount, outcomes.c.closed_at,
                          outcomes.c.client_id, outcomes.c.updated_at)
                .where(outcomes.c.deal_id.in_(found[start:start + 500]))).all()
        return rows, logged

    def revisions(self, deal_id: str) -> list[dict[str, Any]]:
        with self.database.engine.connect() as connection:
            rows = connection.execute(sa.select(outcome_revisions).where(outcome_revisions.c.deal_id == deal_id)
                                      .order_by(outcome_revisions.c.revision)).mappings().all()
        return [dict(r) for r in rows]


def batch_problems(outcomes: Sequence[tuple[str | None, date | None]], today: date) -> list[Problem]:
    """The problems of a batch of outcomes that need no database: a deal_id sent twice, a closed_at in the future.
    `outcomes`: each one's deal_id text and closed_at day (None where it has none, or none that reads). Also run on
    a body that failed its schema, so that one 422 lists every problem (the router)."""
    problems: list[Problem] = []
    first_index: dict[str, int] = {}
    for i, (deal_id, day) in enumerate(outcomes):
        where = f"outcomes[{i}]"
        seen = first_index.setdefault(deal_id, i) if deal_id is not None else i
        if seen != i:
            problems.append(Problem(f"{where}.deal_id", "a deal_id not used by another outcome of the batch",
                                    f"'{deal_id}', also at outcomes[{seen}]"))
        if day is not None and day > today + DATE_SLACK:
            problems.append(Problem(f"{where}.closed_at", f"a date up to {latest_date_text(today)}",
                                    f"'{day.isoformat()}'"))
    return problems


def _outcome_index(field: str) -> int:
    return int(field[len("outcomes["):field.index("]")])


def wait_for_peers(read: Callable[[], Any], complete: Callable[[Any], bool], seconds: float) -> Any:
    """`read()` again every 50 ms until `complete` of what it read, or `seconds` passed; the last read."""
    deadline = time.monotonic() + seconds
    found = read()
    while not complete(found) and time.monotonic() < deadline:
        time.sleep(min(0.05, max(deadline - time.monotonic(), 0.0)))
        found = read()
    return found


def _created_day(logged: Mapping[str, Any] | None, default: date) -> date:
    """The later of a defaulted close day and the deal's logged creation day."""
    created = (logged or {}).get("created_at")
    try:
        day = parse_date(created) if isinstance(created, str) else None
    except ValueError:
        day = None
    return max(default, day) if day is not None else default
