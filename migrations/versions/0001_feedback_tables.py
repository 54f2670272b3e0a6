"""Feedback tables (score log, outcomes and their revisions, judgements) and the training views.

Revision ID: 0001_feedback
Revises:
Create Date: 2025-11-25

`training_deals` is the canonical deals table rebuilt from the service's own memory: the deal as last
scored (its logged request) with its realised outcome, so `dealscore retrain --deals URL::training_deals`
needs no export. `training_clients` gives each client's segment attributes as last sent with a deal.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_feedback"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.String(200)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "score_log",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(100), nullable=False),
        sa.Column("deal_id", ID, nullable=False),
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("p_win", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("expected_value", sa.Float(), nullable=True),
        sa.Column("grade", sa.String(1), nullable=False),
        sa.Column("scored_at", INSTANT, nullable=False),
        sa.Column("deal", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.UniqueConstraint("request_id", "deal_id", name="uq_score_log_request_deal"),
    )
    op.create_index("ix_score_log_deal_scored", "score_log", ["deal_id", "scored_at"])
    op.create_index("ix_score_log_version_deal", "score_log", ["model_version", "deal_id"])

    op.create_table(
        "outcomes",
        sa.Column("deal_id", ID, primary_key=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.Column("closed_at", sa.Date(), nullable=False),
        sa.Column("client_id", ID, nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("recorded_at", INSTANT, nullable=False),
        sa.Column("updated_at", INSTANT, nullable=False),
        sa.CheckConstraint("status IN ('won', 'lost')", name="ck_outcomes_status"),
    )
    op.create_index("ix_outcomes_updated", "outcomes", ["updated_at"])

    op.create_table(
        "outcome_revisions",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("deal_id", ID, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.Column("closed_at", sa.Date(), nullable=False),
        sa.Column("client_id", ID, nullable=True),
        sa.Column("request_id", sa.String(100), nullable=True),
        sa.Column("recorded_at", INSTANT, nullable=False),
        sa.UniqueConstraint("deal_id", "revision", name="uq_outcome_revisions_deal_revision"),
    )

    op.create_table(
        "judgements",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("manager", ID, nullable=False),
        sa.Column("deal_low", ID, nullable=False),
        sa.Column("deal_high", ID, nullable=False),
        sa.Column("above_deal_id", ID, nullable=False),
        sa.Column("below_deal_id", ID, nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("updated_at", INSTANT, nullable=False),
        sa.UniqueConstraint("manager", "deal_low", "deal_high", name="uq_judgements_manager_pair"),
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRESQL_TRAINING_DEALS)
        op.execute(_POSTGRESQL_TRAINING_CLIENTS)
    else:
        op.execute(_SQLITE_TRAINING_DEALS)
        op.execute(_SQLITE_TRAINING_CLIENTS)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS training_clients")
    op.execute("DROP VIEW IF EXISTS training_deals")
    op.drop_table("judgements")
    op.drop_table("outcome_revisions")
    op.drop_index("ix_outcomes_updated", table_name="outcomes")
    op.drop_table("outcomes")
    op.drop_index("ix_score_log_version_deal", table_name="score_log")
    op.drop_index("ix_score_log_deal_scored", table_name="score_log")
    op.drop_table("score_log")


# The latest logged request of each deal (ties broken by insertion order) joined with its outcome.
# A deal scored without created_at was scored as of that day, so the scoring day stands in for it;
# a won deal's realised amount replaces the quoted one.
_POSTGRESQL_TRAINING_DEALS = """
CREATE VIEW training_deals AS
SELECT l.deal_id AS deal_id,
       l.deal ->> 'client_id' AS client_id,
       COALESCE(l.deal ->> 'created_at', to_char(l.scored_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')) AS created_at,
       to_char(o.closed_at, 'YYYY-MM-DD') AS closed_at,
       COALESCE(o.status, 'open') AS status,
       COALESCE(o.amount, CAST(l.deal ->> 'amount' AS DOUBLE PRECISION)) AS amount,
       l.deal ->> 'product' AS product,
       l.deal ->> 'manager' AS manager,
       CAST(l.deal ->> 'effort_hours' AS DOUBLE PRECISION) AS effort_hours
FROM (SELECT s.deal_id, s.deal, s.scored_at,
             ROW_NUMBER() OVER (PARTITION BY s.deal_id ORDER BY s.scored_at DESC, s.id DESC) AS latest
      FROM score_log s) l
LEFT JOIN outcomes o ON o.deal_id = l.deal_id
WHERE l.latest = 1
"""

_POSTGRESQL_TRAINING_CLIENTS = """
CREATE VIEW training_clients AS
SELECT c.client_id, c.industry, c.size, c.region, c.since
FROM (SELECT s.deal ->> 'client_id' AS client_id,
             s.deal -> 'client' ->> 'industry' AS industry,
             s.deal -> 'client' ->> 'size' AS size,
             s.deal -> 'client' ->> 'region' AS region,
             s.deal -> 'client' ->> 'since' AS since,
             ROW_NUMBER() OVER (PARTITION BY s.deal ->> 'client_id' ORDER BY s.scored_at DESC, s.id DESC) AS latest
      FROM score_log s
      WHERE s.deal ->> 'client_id' IS NOT NULL AND jsonb_typeof(s.deal -> 'client') = 'object') c
WHERE c.latest = 1
"""

_SQLITE_TRAINING_DEALS = """
CREATE VIEW training_deals AS
SELECT l.deal_id AS deal_id,
       json_extract(l.deal, '$.client_id') AS client_id,
       COALESCE(json_extract(l.deal, '$.created_at'), substr(l.scored_at, 1, 10)) AS created_at,
       o.closed_at AS closed_at,
       COALESCE(o.status, 'open') AS status,
       COALESCE(o.amount, CAST(json_extract(l.deal, '$.amount') AS REAL)) AS amount,
       json_extract(l.deal, '$.product') AS product,
       json_extract(l.deal, '$.manager') AS manager,
       CAST(json_extract(l.deal, '$.effort_hours') AS REAL) AS effort_hours
FROM (SELECT s.deal_id, s.deal, s.scored_at,
             ROW_NUMBER() OVER (PARTITION BY s.deal_id ORDER BY s.scored_at DESC, s.id DESC) AS latest
      FROM score_log s) l
LEFT JOIN outcomes o ON o.deal_id = l.deal_id
WHERE l.latest = 1
"""

_SQLITE_TRAINING_CLIENTS = """
CREATE VIEW training_clients AS
SELECT c.client_id, c.industry, c.size, c.region, c.since
FROM (SELECT json_extract(s.deal, '$.client_id') AS client_id,
             json_extract(s.deal, '$.client.industry') AS industry,
             json_extract(s.deal, '$.client.size') AS size,
             json_extract(s.deal, '$.client.region') AS region,
             json_extract(s.deal, '$.client.since') AS since,
             ROW_NUMBER() OVER (PARTITION BY json_extract(s.deal, '$.client_id')
                                ORDER BY s.scored_at DESC, s.id DESC) AS latest
      FROM score_log s
      WHERE json_extract(s.deal, '$.client_id') IS NOT NULL AND json_type(s.deal, '$.client') = 'object') c
WHERE c.latest = 1
"""
