"""The feedback tables: what the service said (score log), what happened (outcomes) and what managers think.

Every table has a natural unique key, and every write is an upsert on it, so a retried request, a
replayed spool or a second service process on the same database never stores anything twice.
The Alembic migrations in `migrations/versions` create exactly these tables; a test checks the two agree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Ids are text as in the data contract; MAX_TEXT_LENGTH (200) bounds them there.
ID_LENGTH = 200
VERSION_LENGTH = 100
REQUEST_ID_LENGTH = 100

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only
DealJson = sa.JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A UTC instant: timestamptz in PostgreSQL, naive UTC text in SQLite; always aware in Python."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        instant = datetime.fromisoformat(value) if isinstance(value, str) else value  # raw SQLite text
        if not isinstance(instant, datetime):
            raise TypeError(f"expected a timestamp from the database, got {type(value).__name__}")
        return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class ScoreLogRow(Base):
    """One deal's score in one request, with the deal as sent (for quality and retraining)."""

    __tablename__ = "score_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(sa.String(REQUEST_ID_LENGTH))
    deal_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    model_version: Mapped[str] = mapped_column(sa.String(VERSION_LENGTH))
    p_win: Mapped[float] = mapped_column(sa.Float)
    value: Mapped[float | None] = mapped_column(sa.Float)
    expected_value: Mapped[float | None] = mapped_column(sa.Float)
    grade: Mapped[str] = mapped_column(sa.String(1))
    scored_at: Mapped[datetime] = mapped_column(UtcDateTime)
    deal: Mapped[dict[str, Any]] = mapped_column(DealJson)

    __table_args__ = (
        # The scoring instant too: a caller may reuse its request id, and every scoring is kept (migration 0003).
        sa.UniqueConstraint("request_id", "deal_id", "scored_at", name="uq_score_log_request_deal_scored"),
        sa.Index("ix_score_log_deal_scored", "deal_id", "scored_at"),
        sa.Index("ix_score_log_version_deal", "model_version", "deal_id"),
    )


class OutcomeRow(Base):
    """The realised result of a deal: the latest word on it (its revisions are in outcome_revisions)."""

    __tablename__ = "outcomes"

    deal_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(8))
    amount: Mapped[float | None] = mapped_column(sa.Float)
    closed_at: Mapped[date] = mapped_column(sa.Date)
    client_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH))
    revision: Mapped[int] = mapped_column(sa.Integer)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        sa.CheckConstraint("status IN ('won', 'lost')", name="ck_outcomes_status"),
        sa.Index("ix_outcomes_updated", "updated_at"),
    )


class OutcomeRevisionRow(Base):
    """Every distinct version of a deal's outcome, as it was received: the audit trail of changes."""

    __tablename__ = "outcome_revisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    deal_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    revision: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(8))
    amount: Mapped[float | None] = mapped_column(sa.Float)
    closed_at: Mapped[date] = mapped_column(sa.Date)
    client_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH))
    request_id: Mapped[str | None] = mapped_column(sa.String(REQUEST_ID_LENGTH))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (sa.UniqueConstraint("deal_id", "revision", name="uq_outcome_revisions_deal_revision"),)


class JudgementRow(Base):
    """A manager's view that one deal should rank above another; one row per manager and pair of deals.

    The pair is keyed unordered (deal_low < deal_high), so a manager who changes their mind about two
    deals updates the row instead of adding a contradicting one.
    """

    __tablename__ = "judgements"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    manager: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    deal_low: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    deal_high: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    above_deal_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    below_deal_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    note: Mapped[str | None] = mapped_column(sa.Text)
    revision: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    # No CHECK on deal_low < deal_high: the database's collation may order text differently from Python.
    __table_args__ = (sa.UniqueConstraint("manager", "deal_low", "deal_high", name="uq_judgements_manager_pair"),)


score_log = cast(sa.Table, ScoreLogRow.__table__)
outcomes = cast(sa.Table, OutcomeRow.__table__)
outcome_revisions = cast(sa.Table, OutcomeRevisionRow.__table__)
judgements = cast(sa.Table, JudgementRow.__table__)
metadata = Base.metadata

# Views created by the migrations (not ORM-mapped): the training source of `dealscore retrain`.
TRAINING_DEALS_VIEW = "training_deals"
TRAINING_CLIENTS_VIEW = "training_clients"
