"""training_deals: a deal's close day is never before its creation day.

Revision ID: 0002_training_close_day
Revises: 0001_feedback
Create Date: 2026-12-04

An outcome may arrive before its deal is first scored (its created_at unknown then), and the deal may be
scored later with a created_at after the outcome's closed_at. Training refuses a deal closed before it
was created, so one such row made the whole feedback database unusable as a training source. The view
now dates such a close on the creation day (the result is known from then on, as a deal without a close
date is read); the outcomes table keeps what was reported.
"""

from __future__ import annotations

import importlib

from alembic import op

revision: str = "0002_training_close_day"
down_revision: str | None = "0001_feedback"
branch_labels: str | None = None
depends_on: str | None = None

_first = importlib.import_module("migrations.versions.0001_feedback_tables")

# The 0001 views with the close day clamped; each replaced line must be there (checked at import).
_CLOSE_DAY = {
    "postgresql": ("to_char(o.closed_at, 'YYYY-MM-DD') AS closed_at",
                   "CASE WHEN o.closed_at IS NULL THEN NULL ELSE to_char(GREATEST(o.closed_at, CAST(substr(COALESCE("
                   "l.deal ->> 'created_at', to_char(l.scored_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')), 1, 10) AS date)), "
                   "'YYYY-MM-DD') END AS closed_at"),
    "sqlite": ("o.closed_at AS closed_at",
               "CASE WHEN o.closed_at IS NULL THEN NULL ELSE MAX(o.closed_at, substr(COALESCE(json_extract(l.deal, "
               "'$.created_at'), substr(l.scored_at, 1, 10)), 1, 10)) END AS closed_at"),
}
_BEFORE = {"postgresql": _first._POSTGRESQL_TRAINING_DEALS, "sqlite": _first._SQLITE_TRAINING_DEALS}
_AFTER = {}
for _dialect, (_old, _new) in _CLOSE_DAY.items():
    assert _BEFORE[_dialect].count(_old) == 1, f"0001's {_dialect} training_deals view changed"
    _AFTER[_dialect] = _BEFORE[_dialect].replace(_old, _new)


def _dialect() -> str:
    return "postgresql" if op.get_bind().dialect.name == "postgresql" else "sqlite"


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS training_deals")
    op.execute(_AFTER[_dialect()])


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS training_deals")
    op.execute(_BEFORE[_dialect()])
