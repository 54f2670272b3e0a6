"""score_log keeps each scoring of a deal, even when a caller reuses its request id.

Revision ID: 0003_score_log_each_scoring
Revises: 0002_training_close_day
Create Date: 2026-12-04

A row was unique by (request_id, deal_id), so that replaying the spool twice inserts nothing twice. But
callers may send their own X-Request-ID, and a CRM that reused one (a correlation id per deal, say) lost
every later scoring of the deal: the training view and the quality report kept the first, stale one. The
key now includes the scoring instant, which a replay carries unchanged (the spool stores it) and a new
scoring never shares.

SQLite cannot drop a table's constraint, so its table is rebuilt (alembic's batch mode); its views, which
name the table, are dropped first and made again after, all in one transaction (service.feedback.db). The
rebuild needs free disk of about the table's size again, and the file keeps that size until a VACUUM.
"""

from __future__ import annotations

import importlib

from alembic import op

revision: str = "0003_score_log_each_scoring"
down_revision: str | None = "0002_training_close_day"
branch_labels: str | None = None
depends_on: str | None = None

_first = importlib.import_module("migrations.versions.0001_feedback_tables")
_second = importlib.import_module("migrations.versions.0002_training_close_day")

OLD_KEY = ("uq_score_log_request_deal", ["request_id", "deal_id"])
NEW_KEY = ("uq_score_log_request_deal_scored", ["request_id", "deal_id", "scored_at"])


def _rekey(old: tuple[str, list[str]], new: tuple[str, list[str]]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(old[0], "score_log", type_="unique")
        op.create_unique_constraint(new[0], "score_log", new[1])
        return
    # SQLite checks every view when a table is renamed: another application's view of score_log would fail
    # the rebuild halfway (rolled back, but with SQLite's words). Said first, with what to do.
    others = [row[0] for row in op.get_bind().exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'view' AND name NOT IN ('training_deals', 'training_clients') "
        "AND lower(sql) LIKE '%score_log%'")]
    if others:
        raise RuntimeError(f"the view(s) {', '.join(others)} read score_log, whose table this upgrade rebuilds: "
                           "drop them, upgrade, and create them again")
    op.execute("DROP VIEW IF EXISTS training_clients")
    op.execute("DROP VIEW IF EXISTS training_deals")
    with op.batch_alter_table("score_log", recreate="always") as batch:
        batch.drop_constraint(old[0], type_="unique")
        batch.create_unique_constraint(new[0], new[1])
    op.execute(_second._AFTER["sqlite"])
    op.execute(_first._SQLITE_TRAINING_CLIENTS)


def upgrade() -> None:
    _rekey(OLD_KEY, NEW_KEY)


def downgrade() -> None:
    # Rows that differ only in their instant would break the old key: keep the latest of each.
    # IN over the duplicates, not NOT IN over the keepers: PostgreSQL plans a NOT IN subquery row by row.
    # The latest by scoring instant, as the training view reads it (a spool replay inserts older rows later).
    op.execute("DELETE FROM score_log WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY "
               "request_id, deal_id ORDER BY scored_at DESC, id DESC) AS newer FROM score_log) AS ranked "
               "WHERE newer > 1)")
    _rekey(NEW_KEY, OLD_KEY)
