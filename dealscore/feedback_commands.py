"""`dealscore quality` and `dealscore db` (upgrade, downgrade, training-source, prune-score-log): the feedback loop
in a terminal.

The database is DEALSCORE_DATABASE_URL (or --database-url), a SQLite file under DEALSCORE_HOME by
default, as for the service.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dealscore.arguments import as_of_day, at_least_zero
from model.errors import DealscoreError, NotFound
from model.terminal import terminal_text


def _say(message: str) -> None:
    print(terminal_text(message), file=sys.stderr, flush=True)  # noqa: T201 (progress goes to stderr)


def _out(text: str) -> None:
    print(terminal_text(text))  # noqa: T201 (the command's output; managers' names and notes in it)


def _database_url(args: argparse.Namespace) -> str:
    """--database-url, else DEALSCORE_DATABASE_URL, else the SQLite file in DEALSCORE_HOME; refused by name, as
    the service's settings refuse it, when SQLAlchemy cannot use it (it was an "unexpected failure" line)."""
    from service.feedback.config import DATABASE_URL_EXPECTED, database_url_from_env, database_url_refusal, shown_url

    url: str = args.database_url or database_url_from_env()
    reason = database_url_refusal(url)
    if reason is not None:
        source = "--database-url" if args.database_url else "DEALSCORE_DATABASE_URL"
        raise DealscoreError(f"{source}: expected {DATABASE_URL_EXPECTED} ({reason}), got {shown_url(url)}")
    return url


def _database(args: argparse.Namespace, migrate: bool = False) -> Any:
    """The feedback database. Reports read it as it is: a schema behind the code is an error naming `db upgrade`,
    never a silent migration (workers of an earlier release may still serve from it)."""
    from service.feedback.db import Database

    return Database(_database_url(args), migrate=migrate)


def cmd_quality(args: argparse.Namespace) -> int:
    from service.feedback.quality import latest_version, model_versions, quality_report, render_table

    _require_existing_sqlite(_database_url(args))
    database = _database(args)
    try:
        _ensure(database)
        version = args.version
        if version in (None, "live"):
            version = latest_version(database.engine)
            if version is None:
                raise NotFound(f"the score log at {database.shown_url} is empty: no version to report on")
        else:
            known = [v["version"] for v in model_versions(database.engine)]
            if version not in known:
                raise NotFound(f"the score log at {database.shown_url} has no scores of model version '{version}' "
                               f"(latest: {', '.join(known[:3]) or 'none'})")
        report = quality_report(database.engine, version, top=args.top)
        _out(json.dumps(report, indent=2, default=str) if args.json else render_table(report))
        return 0
    finally:
        database.dispose()


def _migration(database: Any, step: Any) -> Any:
    """A migration step; a revision alembic cannot go to is a bad --revision (its CommandError was exit 1 and
    named no revision), said with the revisions there are. Alembic's own forms stay: a prefix, -1, heads."""
    from alembic.util.exc import CommandError

    from service.feedback.db import known_revisions

    try:
        return _at(database, step)
    except CommandError as error:
        raise DealscoreError(f"--revision: {str(error).splitlines()[0][:200]} (the revisions: base, "
                             f"{', '.join(known_revisions())}, head)") from None


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from service.feedback.db import current_revision, is_ancestor, upgrade

    database = _database(args, migrate=True)
    try:
        before = _at(database, current_revision)
        if before is not None and args.revision != "head" and is_ancestor(args.revision, before):
            raise DealscoreError(f"database {database.shown_url} is at {before}, past {args.revision}: that is a "
                                 f"downgrade (`dealscore db downgrade --revision {args.revision}`)")
        after = _migration(database, lambda engine: upgrade(engine, args.revision))
        _say(f"database {database.shown_url}: schema {before or 'empty'} -> {after}")
        return 0
    finally:
        database.dispose()


def cmd_db_downgrade(args: argparse.Namespace) -> int:
    from service.feedback.db import current_revision, downgrade, has_version_table, revisions_undone

    _require_existing_sqlite(_database_url(args))
    database = _database(args)
    try:
        before = _at(database, current_revision)
        if before is None and _at(database, has_version_table):  # dealscore's, taken to base already: nothing to do
            _say(f"database {database.shown_url}: schema already at base, nothing to downgrade")
            return 0
        if before is None:
            # Nothing of dealscore's to take back: likely another application's database by a wrong URL, where
            # alembic answered in its own words, or, to base, wrote its version table in (the new-user review).
            raise DealscoreError(f"--database-url: expected a feedback database of dealscore's, got "
                                 f"{database.shown_url}, which holds no dealscore schema revision: nothing to "
                                 "downgrade, and nothing was changed")
        if not args.yes:
            # A downgrade drops what later revisions added, data with it; to base, every table. It had run at
            # once: 772 score-log rows and 770 outcomes gone on one typo'd command (the ops audit). Named revision
            # by revision, with what each did (a docs audit: the generic words told ops nothing to check).
            undone = revisions_undone(before, args.revision) if before is not None else []
            what = "every table of the feedback database, with its rows" if args.revision == "base" else (
                "what the revisions after it added, with its data: " + "; ".join(
                    f"{revision} ({doc.rstrip('.')})" for revision, doc in undone) if undone else
                "what the revisions after it added, if any, with its data")
            raise DealscoreError(f"database {database.shown_url} is at {before or 'no revision'}: downgrading to "
                                 f"{args.revision} drops {what}; back it up, then run the command again with --yes")
        after = _migration(database, lambda engine: downgrade(engine, args.revision))
        _say(f"database {database.shown_url}: schema {before or 'empty'} -> {after}")
        return 0
    finally:
        database.dispose()


def cmd_db_training_source(args: argparse.Namespace) -> int:
    from service.feedback.training import training_source

    # As a report: a SQLite file that is not there is a wrong place, not one to create (it was, empty).
    _require_existing_sqlite(_database_url(args))
    database = _database(args)
    try:
        _ensure(database)
        _out(_at(database, lambda engine: training_source(engine, database.url, flatten_extras=not args.core_only)))
        return 0
    finally:
        database.dispose()


def cmd_db_prune_score_log(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from service.feedback.prune import prune_score_log, vacuum

    _require_existing_sqlite(_database_url(args))
    database = _database(args)
    try:
        _ensure(database)
        before = datetime.combine(args.before, datetime.min.time(), tzinfo=UTC)
        result = _at(database, lambda engine: prune_score_log(engine, before, dry_run=args.dry_run))
        verb = "would delete" if result.dry_run else "deleted"
        _say(f"score log at {database.shown_url}: {result.candidates} rows scored before {args.before:%Y-%m-%d} "
             f"(UTC); {verb} {result.deleted}, kept {result.kept} that quality, the training views or "
             "outcomes can still read")
        if args.vacuum and not result.dry_run:
            if _at(database, vacuum):
                _say("vacuumed: the freed space is back with the file system")
            else:
                _say("not vacuumed: this database reuses the freed space by itself (PostgreSQL's autovacuum)")
        return 0
    finally:
        database.dispose()


def _require_existing_sqlite(url: str) -> None:
    """A report reads the service's database: a SQLite file that is not there is a wrong place (run from
    another folder, a variable not set), not one to create and migrate, empty, where the command ran."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    path = parsed.database
    uri = str(parsed.query.get("uri", "")).lower() == "true" or (path or "").startswith("file:")
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:" or uri:
        return  # a server database, an in-memory one, or a SQLite URI whose options this cannot second-guess
    if not Path(path).exists():
        raise NotFound(f"no feedback database at {Path(path).resolve()}: the service creates it when it logs "
                       "scores; point --database-url or DEALSCORE_DATABASE_URL at the service's (nothing was "
                       "created)")


def _ensure(database: Any) -> None:
    _at(database, lambda _engine: database.ensure_schema())


def _at(database: Any, step: Any) -> Any:
    """Run a database step; an unreachable database is one clear line, not a traceback."""
    import sqlalchemy as sa

    from service.feedback.db import SchemaNotReady, describe_error

    try:
        return step(database.engine)
    except (sa.exc.SQLAlchemyError, SchemaNotReady) as error:
        said = DealscoreError(f"database {database.shown_url}: {describe_error(error)}")
        # A full disk (SQLite: "database or disk is full", "disk I/O error"; PostgreSQL: disk_full) is the
        # machine's state: exit 4, run it again once there is space, as any other command on a full disk. So is a
        # server that does not answer, as for a retrain's database source (the monthly prune's cron read exit 2).
        said.transient = _database_disk_full(error) or _database_away(database.url, error)
        raise said from None


def _database_away(url: str, error: BaseException) -> bool:
    """A database server that could not be reached or gave up the connection (down, restarting, the network).
    Not SQLite, whose OperationalError also means a missing table; not a database or role that does not exist,
    or a wrong password: those are the URL's fault (exit 2), and a scheduler would retry them forever."""
    import sqlalchemy as sa

    from model.sources import refused_for_good

    if not isinstance(error, sa.exc.OperationalError) or sa.make_url(url).get_backend_name() == "sqlite":
        return False
    return not refused_for_good(str(error.orig or error))


def _database_disk_full(error: BaseException) -> bool:
    orig = getattr(error, "orig", None)
    text = str(orig or error).lower()
    return (getattr(orig, "sqlstate", None) == "53100"
            or "database or disk is full" in text or "disk i/o error" in text)


def add_feedback_commands(commands: Any) -> None:
    """Add `quality` and `db` to the CLI's subparsers (`commands` from ArgumentParser.add_subparsers)."""

    def database_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--database-url", default=None,
                            help="SQLAlchemy URL; default DEALSCORE_DATABASE_URL, else a SQLite file in DEALSCORE_HOME")

    quality = commands.add_parser("quality", help="live quality of a model version: outcomes and managers' judgements")
    database_option(quality)
    quality.add_argument("--version", default="live",
                         help="model version; 'live' (default): the version that scored most recently")
    quality.add_argument("--top", type=at_least_zero, default=10,
                         help="strongest disagreements listed (default 10; 0: none)")
    quality.add_argument("--json", action="store_true", help="the report as JSON instead of a table")
    quality.set_defaults(run=cmd_quality)

    db = commands.add_parser("db", help="the feedback database: schema migrations, training source, score-log pruning")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="bring the schema up to date (the service also does on start)")
    database_option(upgrade)
    upgrade.add_argument("--revision", default="head", help="the revision to reach (default: head, the latest)")
    upgrade.set_defaults(run=cmd_db_upgrade)
    down = db_commands.add_parser("downgrade", help="take the schema back to an earlier revision (before running "
                                                    "an earlier release on it)")
    database_option(down)
    down.add_argument("--revision", required=True, help="e.g. 0002_training_close_day")
    down.add_argument("--yes", action="store_true",
                      help="drop what the later revisions added, and its data (back the database up first)")
    down.set_defaults(run=cmd_db_downgrade)
    source = db_commands.add_parser(
        "training-source", help="print the --deals source that trains on the logged deals and their outcomes")
    database_option(source)
    source.add_argument("--core-only", action="store_true",
                        help="the training_deals view (contract columns only), without the extra features")
    source.set_defaults(run=cmd_db_training_source)
    prune = db_commands.add_parser(
        "prune-score-log", help="delete the score log's superseded scorings from before a date (those no quality "
                                "report, training view or outcome can read any more)")
    database_option(prune)
    prune.add_argument("--before", type=as_of_day, required=True,
                       help="ISO date; only scorings before its start (UTC) are considered")
    prune.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    prune.add_argument("--vacuum", action="store_true",
                       help="SQLite: give the freed space back to the file system afterwards (needs free disk "
                            "about the size of the database)")
    prune.set_defaults(run=cmd_db_prune_score_log)
