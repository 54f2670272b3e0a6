"""Engines from a database URL (SQLite by default, PostgreSQL in production) and the schema migrations.

Migrations are Alembic's, configured in code (no alembic.ini in the working directory), and safe to run
from several processes at once: PostgreSQL serialises them with an advisory lock, SQLite with a lock
file beside the database, so the second process finds the schema current and does nothing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from model.sources import masked_url

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger("dealscore.service.feedback")

VERSION_TABLE = "dealscore_alembic_version"  # not "alembic_version": the database may host other apps
# pg_advisory_xact_lock key: any constant unique to this application ("dealscor" as eight bytes).
_MIGRATION_LOCK_KEY = 0x6465616C73636F72


def _json_serializer(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def make_engine(url: str, connect_timeout_seconds: int = 5) -> sa.Engine:
    """An engine for `url` with the settings this store relies on (WAL and a busy timeout on SQLite)."""
    parsed = sa.make_url(url)
    # hide_parameters: a failed statement's message (logged, maybe shown) never carries the deal data bound to it.
    options: dict[str, Any] = {"json_serializer": _json_serializer, "json_deserializer": orjson.loads,
                               "hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            options["poolclass"] = sa.StaticPool  # one in-memory database shared by all threads
        else:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"timeout": 30.0, "check_same_thread": False}
        engine = sa.create_engine(parsed, **options)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        options["connect_args"] = {"connect_timeout": connect_timeout_seconds}
    options["pool_pre_ping"] = True  # a server restart must not surface as one failed write per pooled connection
    return sa.create_engine(parsed, **options)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    # WAL: readers (quality, judgement checks) do not block the score-log writer, nor it them.
    _write_ahead_log(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _write_ahead_log(cursor: Any, wait_seconds: float = 30.0) -> None:
    """Put the database file in WAL mode, waiting for another connection that is doing the same.

    Switching a new file to WAL needs it to itself, and SQLite tells a second connection arriving meanwhile
    "database is locked" at once, not after the busy timeout: two processes starting on a fresh feedback
    database failed in 12 of 150 runs. The mode is kept in the file, so once one has switched it, the others
    find it so.
    """
    import sqlite3
    import time

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def shown_url(url: str) -> str:
    """The URL with its password hidden: for logs and messages."""
    try:
        return masked_url(sa.make_url(url))
    except sa.exc.ArgumentError:
        return "<malformed database URL>"


def migrations_dir() -> Path:
    """The Alembic script directory: the installed `migrations` package, else the source tree's."""
    spec = importlib.util.find_spec("migrations")
    if spec is not None and spec.origin is not None and (Path(spec.origin).parent / "env.py").is_file():
        return Path(spec.origin).parent
    return Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    # Alembic is imported when a migration runs, not when a service worker starts.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    config.attributes["configure_logging"] = False
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> list[str]:
    """Every revision of the migrations, oldest first."""
    from alembic.script import ScriptDirectory

    return [r.revision for r in reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))]


def revisions_undone(current: str, target: str) -> list[tuple[str, str]]:
    """The revisions a downgrade from `current` to `target` takes back, latest first, each with what it did (its
    docstring's first line); [] when `target` is not below `current`."""
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    scripts = ScriptDirectory.from_config(alembic_config())
    try:
        return [(s.revision, s.doc) for s in scripts.iterate_revisions(current, target)
                if s.revision != target]
    except CommandError:
        return []


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return _revision_on(connection)


def _revision_on(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def has_version_table(engine: sa.Engine) -> bool:
    """Whether dealscore's migrations have run on this database (even if taken back to base since)."""
    with engine.connect() as connection:
        return sa.inspect(connection).has_table(VERSION_TABLE)


def upgrade(engine: sa.Engine, revision: str = "head") -> str | None:
    """Bring the schema to `revision`; returns the revision the database is at afterwards. All or nothing."""
    from alembic import command

    with _migrating(engine) as connection:
        # Read under the migration lock: two workers starting on an empty database both said they had
        # migrated it when the revision before was read outside.
        before = _revision_on(connection)
        command.upgrade(alembic_config(connection), revision)
    after = current_revision(engine)
    if after != before:  # said on start too, where nothing else would tell that the schema changed
        logger.info("feedback: database %s migrated from schema %s to %s", shown_url(str(engine.url)),
                    before or "empty", after)
    return after


def downgrade(engine: sa.Engine, revision: str) -> str | None:
    """Take the schema back to `revision` (for an earlier release); all or nothing, as an upgrade."""
    from alembic import command

    with _migrating(engine) as connection:
        command.downgrade(alembic_config(connection), revision)
    return current_revision(engine)


def is_ancestor(revision: str, of: str) -> bool:
    """Whether `revision` comes before `of` in the migrations (so migrating `of` to it goes down)."""
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    script = ScriptDirectory.from_config(alembic_config())
    try:  # alembic's own forms: a unique prefix names its revision
        found = script.get_revision(revision)
    except CommandError:  # unknown or relative: the migration itself says what is wrong
        return False
    name = found.revision if found is not None else revision
    return name != of and any(r.revision == name for r in script.iterate_revisions(of, "base"))


@contextlib.contextmanager
def _migrating(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One connection in one transaction for a whole migration, serialised across processes.

    SQLite's DDL is transactional, but Python's sqlite3 driver begins a transaction only before DML, so each
    CREATE, DROP or ALTER of a migration committed on its own: a migration killed halfway (a table rebuild
    copying millions of rows) left the schema half changed and every retry failing. BEGIN first makes the
    whole migration, and the version table's update, one transaction that commits or rolls back whole.
    """
    with _migration_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        elif connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection


@contextlib.contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[None]:
    """Across processes on one host, for SQLite files (PostgreSQL locks inside the transaction)."""
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or database in ("", ":memory:"):
        yield
        return
    import fcntl  # POSIX only, like the spool's locks

    lock_path = Path(f"{database}.migrate.lock")
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def reachable(engine: sa.Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.SQLAlchemyError:
        return False


def database_now(connection: sa.Connection) -> datetime:
    """The clock outcomes' updated_at and the outcomes refresh's read bound both come from, so writers and readers on
    several hosts need no agreeing clocks: PostgreSQL's (now(): its transaction's start); a SQLite file's
    processes share a machine, so this machine's. (Not recorded_at: quality compares it with the scores' times,
    which this host's clock gives, the database being away at times.)"""
    if connection.dialect.name == "postgresql":
        instant = connection.execute(sa.text("SELECT now()")).scalar_one()
        return instant.astimezone(UTC) if isinstance(instant, datetime) else datetime.now(UTC)
    return datetime.now(UTC)


def dialect_insert(backend: str | sa.Engine | sa.Connection, table: sa.Table) -> Any:
    """INSERT with ON CONFLICT support for the backend at hand (a dialect name, engine or connection)."""
    name = backend if isinstance(backend, str) else backend.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise ValueError(f"the feedback store supports PostgreSQL and SQLite, not {name}")


def describe_error(error: BaseException) -> str:
    """The database's own complaint, one line, without SQL or parameters (they may hold deal data)."""
    if isinstance(error, sa.exc.DBAPIError) and error.orig is not None:
        error = error.orig
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    if getattr(error, "sqlstate", None) == INVALID_SCHEMA_NAME:
        # PostgreSQL's own words ("no schema has been selected to create in") name neither the schema nor the fix.
        return (f"{line[:200]} (no schema the connection's search_path names exists: the one the URL's "
                "options=-csearch_path names, or public when it names none; create it first, CREATE SCHEMA name, "
                "as docs/feedback.md says)")
    return line[:300]


INVALID_SCHEMA_NAME = "3F000"  # PostgreSQL's SQLSTATE for a search_path that names no existing schema


class SchemaNotReady(RuntimeError):
    """The database is reachable but not at the code's schema revision (and migrating is off)."""


class Database:
    """One engine plus "is the schema current?", checked (or migrated) once, then trusted.

    When the database is down at start, the first successful use migrates it: the service starts and
    scores without it, and catches up when it appears.
    """

    def __init__(self, url: str, *, migrate: bool = True, connect_timeout_seconds: int = 5) -> None:
        self.url = url
        self.migrate = migrate
        self.engine = make_engine(url, connect_timeout_seconds)
        self._ready = False  # checked, and trusted until a use fails (doubt)
        self._doubted = False
        self._schema_ok = False  # what the last check found (the schema_ready metric)
        self._lock = threading.Lock()

    @property
    def shown_url(self) -> str:
        return shown_url(self.url)

    @property
    def schema_ready(self) -> bool:
        return self._schema_ok

    def ensure_schema(self) -> None:
        """Migrate (or check) once; raises SQLAlchemyError when the database is unreachable."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            # After a failed use only an empty database (dropped and created anew) is migrated: one an operator
            # took down to an earlier revision for an earlier release must not be taken back up under it.
            if self.migrate and (not self._doubted or current_revision(self.engine) is None):
                upgrade(self.engine)
            else:
                at, head = current_revision(self.engine), head_revision()
                if at != head:
                    self._schema_ok = False
                    hint = "run `dealscore db upgrade`" + (
                        ", or stop this release's processes if an earlier release is to use it" if self.migrate
                        else "")
                    raise SchemaNotReady(f"the database {self.shown_url} is at schema revision {at}, the code needs "
                                         f"{head}: {hint}")
            self._ready = self._schema_ok = True

    def doubt(self) -> None:
        """A use failed: check the schema again before the next one, and migrate it if it is empty. Trusted
        after one check, a database dropped and created anew while the service ran stayed without tables:
        every score spooled, every outcome refused, until a restart (the ops audit). Rechecking after an outage
        costs one read of the version table; the schema_ready metric keeps what the last check found. Before
        its first check passed (the database down at start) the first use that reaches it still migrates it."""
        if self._ready:
            self._doubted = True
        self._ready = False

    def dispose(self) -> None:
        self.engine.dispose()
