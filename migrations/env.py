"""Alembic environment: runs on the connection the caller hands over (service/feedback/db.py upgrade()),
or, for the `alembic` command line, on DEALSCORE_DATABASE_URL (a SQLite file by default)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from service.feedback.config import database_url_from_env
from service.feedback.db import VERSION_TABLE, make_engine
from service.feedback.tables import metadata


def _configure_and_run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or database_url_from_env())
    try:
        with engine.begin() as own:
            _configure_and_run(own)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("dealscore migrations run online only: use `dealscore db upgrade`")
run_migrations_online()
