"""The feedback store as the service holds it: one object to start, stop, and call from the routes.

Start-up never fails because the database is down: migrations, the outcome history and the spool replay
are retried in the background, and scoring goes on meanwhile (its log entries wait in the spool).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy.typing as npt
import sqlalchemy as sa

from model.errors import ContractViolation, NotReady, Problem, counted
from model.history_overlay import OutcomeBook, with_outcome_history
from service.feedback.config import FeedbackConfig
from service.feedback.db import Database, SchemaNotReady, describe_error
from service.feedback.judgements import SCORED, Judgement, JudgementStore, RecordedJudgement
from service.feedback.outage import Outage
from service.feedback.outcomes import Outcome, OutcomeStore, RecordedOutcome
from service.feedback.quality import latest_version, model_versions, quality_report
from service.feedback.score_log import ScoreLog, ScoreLogStats
from service.last_writes import owe, paid

logger = logging.getLogger("dealscore.service.feedback")
SPOOL_REPLAY_WAIT_SECONDS = 2.0  # how long an outcome or a judgement waits for the spool to be replayed


_JUDGED_FIELDS = ("above_deal_id", "below_deal_id")


class FeedbackUnavailable(NotReady):
    """503: the feedback database cannot be reached; scoring is unaffected."""

    code = "feedback_unavailable"


class Feedback:
    def __init__(self, config: FeedbackConfig | None = None) -> None:
        self.config = config or FeedbackConfig()
        self.database = Database(self.config.database_url, migrate=self.config.migrate_on_start,
                                 connect_timeout_seconds=self.config.connect_timeout_seconds)
        self.book = OutcomeBook()
        self.score_log = ScoreLog(
            self.database, self.config.spool_dir, queue_size=self.config.queue_size,
            queue_deals=self.config.queue_deals, batch_rows=self.config.batch_rows,
            flush_seconds=self.config.flush_seconds,
            retry_seconds=self.config.retry_seconds) if self.config.score_log_enabled else None
        self.outcomes = OutcomeStore(self.database, self.book, self._flush_score_log_reached,
                                     peer_log_wait_seconds=self.config.peer_log_wait_seconds)
        self.judgements = JudgementStore(self.database, self._flush_score_log_reached,
                                         peer_log_wait_seconds=self.config.peer_log_wait_seconds)
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        self._lifecycle = threading.Lock()
        # The back-off of the catch-up, the score log's policy (service/feedback/outage.py): a database down
        # for hours is warned about once, and tried ever less often, not every few seconds.
        self._outage = Outage(max(self.config.retry_seconds, 0.1))

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._refresher is not None

    def start(self) -> None:
        """Migrate and load the outcome history if the database answers; start the background work.

        Idempotent: an app factory may start a store its caller has already started.
        """
        with self._lifecycle:
            if self._refresher is not None:
                return
            reached = self._catch_up()
            if self.score_log is not None:
                if reached:  # the same database: the score log's up-gauge need not wait for its first write
                    self.score_log.database_reached()
                self.score_log.start()
            self._stop.clear()
            self._refresher = threading.Thread(target=self._refresh_loop, name="dealscore-feedback-refresh",
                                               daemon=True)
            self._refresher.start()
            # A process that ends without stop() (uvicorn's forced quit, a second Ctrl-C, skips the lifespan
            # shutdown) would lose the score log its daemon writer holds in memory: scores already answered.
            owe(self.stop)

    def stop(self) -> None:
        """Write what the log holds (to the database, else the spool) and stop; idempotent."""
        with self._lifecycle:
            if self._refresher is None:
                return
            paid(self.stop)
            self._stop.set()
            self._refresher.join(5.0)
            self._refresher = None
            if self.score_log is not None:
                self.score_log.stop()
            self.database.dispose()

    def __enter__(self) -> Feedback:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _catch_up(self) -> bool:
        try:
            self.database.ensure_schema()
            if not self.outcomes.loaded:
                held = self.outcomes.load()
                logger.info("feedback: %d outcomes loaded into the client history", held)
            else:
                self.outcomes.refresh()
        except (sa.exc.SQLAlchemyError, SchemaNotReady) as error:
            self.database.doubt()
            self._mark_down(f"unavailable ({describe_error(error)})")
            return False
        except Exception as error:  # a failed migration must not stop scoring: logged, retried in the background
            self._mark_down(f"could not be prepared ({type(error).__name__}: {error})", failure=error)
            return False
        self._mark_up()
        return True

    def _mark_up(self) -> None:
        if self._outage.recovered():
            logger.info("feedback: database %s is back; the outcome history is up to date", self.database.shown_url)

    def _mark_down(self, reason: str, failure: BaseException | None = None) -> None:
        """Warn when the database goes down, not on each retry (those are DEBUG); each failure doubles the
        wait before the next try, up to the outage's cap."""
        if self._outage.failed(reason):
            logger.warning("feedback: database %s %s; retrying in the background in %.1f s, then after twice "
                           "as long each time (at most %.0f s)", self.database.shown_url, reason, self._outage.wait,
                           self._outage.cap, exc_info=failure)
        else:
            logger.debug("feedback: database %s still %s; next try in %.1f s", self.database.shown_url, reason,
                         self._outage.wait)

    def _next_wait(self) -> float | None:
        """Seconds until the next catch-up: the back-off while the database is down, else the refresh
        interval; None when there is nothing left to do (history loaded, refreshing off)."""
        if not self._outage.up:
            return self._outage.wait
        interval = self.config.outcomes_refresh_seconds
        return interval if interval > 0 else None

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._next_wait()):
            self._catch_up()

    # -- scoring -----------------------------------------------------------------------------------
    def with_history(self, model: Any, columns: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        """Columns for `model.score` with outcomes recorded after the model's training in the client history."""
        return with_outcome_history(columns, model.history, model.spec, self.book,
                                    getattr(model, "trained_deal_ids", None), self.config.outcomes_complete)

    def transform_columns(self, snapshot: Any, columns: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        """A data-plane column transform (service.dataplane.DataPlane.column_transforms): `with_history`
        for the snapshot's model."""
        return self.with_history(snapshot.model, columns)

    def transform_facts(self, snapshot: Any, facts: Any) -> Any:
        """A data-plane fact transform (service.dataplane.DataPlane.fact_transforms): a client sent without its
        products holds what the model knew plus the products of wins reported since, so a product just won is
        no longer offered as a gap (and its typical income counts as the client's)."""
        profiles = getattr(snapshot.model, "profiles", None)
        if profiles is None or facts.products is not None or not facts.client_id:
            return facts
        won = self.book.products_won(facts.client_id)
        if not won:
            return facts
        known = profiles.known_products.get(facts.client_id, ())
        new = [p for p in won if (j := profiles.product_position(p)) is not None and j not in known]
        if not new:
            return facts
        return dataclasses.replace(facts, products=tuple(profiles.products[j] for j in known) + tuple(new))

    def record_scores(self, request_id: str, model_version: str, deals: Sequence[Any], batch: Any) -> None:
        """Log a request's scores (one queue put); `deals` are the request's deal objects, in batch order."""
        if self.score_log is not None:
            self.score_log.record(request_id, model_version, deals, batch)

    def record_columns(self, request_id: str, model_version: str, columns: Mapping[str, Any], batch: Any) -> None:
        """Log a request's scores from the scorer's input columns (one queue put)."""
        if self.score_log is not None:
            self.score_log.record_columns(request_id, model_version, columns, batch)

    def observe(self, scored: Any) -> None:
        """A scoring observer (service.dataplane.ScoredRequest: request_id, snapshot, columns, batch)."""
        self.record_columns(scored.request_id, scored.snapshot.version, scored.columns, scored.batch)

    def flush_score_log(self, timeout: float = 5.0) -> bool:
        return self.score_log.flush(timeout) if self.score_log is not None else True

    def _flush_score_log_reached(self, deal_ids: Collection[str]) -> bool:
        """flush_score_log for a caller that has just reached the database about `deal_ids` (outcomes, judgements):
        when the log spooled scores of them while its database was away, the spool is replayed now, not after the
        writer's back-off (up to 60 s), in which a deal scored during an outage read as never scored (a judgement
        of it refused 422, an outcome stored without its client). A spool holding only other deals is left to the
        writer's back-off (ScoreLog.replay_soon)."""
        flushed = self.flush_score_log()
        if self.score_log is not None and self.score_log.spooled(deal_ids):
            flushed = self.score_log.replay_soon(deal_ids, SPOOL_REPLAY_WAIT_SECONDS) and flushed
        return flushed

    def score_log_stats(self) -> ScoreLogStats | None:
        return self.score_log.stats() if self.score_log is not None else None

    def score_log_pending(self) -> int:
        """Log entries not yet in the database (queued in memory plus spooled on disk)."""
        return self.score_log.pending() if self.score_log is not None else 0

    def metrics(self) -> dict[str, float]:
        """Gauges and counters for a /metrics endpoint (names follow the _total convention)."""
        stats = self.score_log_stats()
        out: dict[str, float] = {"feedback_outcomes_known": float(len(self.book)),
                                 "feedback_database_schema_ready": float(self.database.schema_ready)}
        if stats is not None:
            out.update({
                "score_log_pending": float(stats.pending), "score_log_queued": float(stats.queued),
                "score_log_spooled": float(stats.spooled), "score_log_written_total": float(stats.written_total),
                "score_log_spooled_total": float(stats.spooled_total),
                "score_log_overflow_total": float(stats.overflow_total),
                "score_log_dropped_total": float(stats.dropped_total),
                "score_log_database_up": float(stats.database_up),
            })
        return out

    # -- feedback ----------------------------------------------------------------------------------
    def record_outcomes(self, items: Sequence[Outcome], request_id: str | None = None) -> list[RecordedOutcome]:
        with self._database_errors():
            return self.outcomes.record(items, request_id)

    def record_judgement(self, item: Judgement) -> RecordedJudgement:
        with self._database_errors():
            try:
                return self.judgements.record(item)
            except ContractViolation as refused:
                unscored = {getattr(item, p.field) for p in refused.problems
                            if p.expected == SCORED and p.field in _JUDGED_FIELDS}
                spooled = self.score_log.spooled(unscored) if self.score_log is not None and unscored else set()
                # Another worker's spool too: a deal it scored during an outage waits there until its writer's
                # back-off ends (up to a minute), and a 422 "never scored" is final to a CRM (the judgement lost).
                elsewhere = (self.score_log.spooled_elsewhere(unscored - spooled)
                             if self.score_log is not None and unscored - spooled else set())
                if unscored and spooled | elsewhere == unscored and len(refused.problems) == len(unscored):
                    # Scores of the deal wait in the spool, which the database did not take yet: not the caller's
                    # mistake, nor final. Any spooled row at all had a deal never scored refused so, not 422.
                    stats = self.score_log.stats() if self.score_log is not None else None
                    held = [f"{stats.spooled if stats else 0:,} scores still in the spool, "
                            f"{counted(len(spooled), 'deal')} of this judgement among them"] if spooled else []
                    if elsewhere:
                        held.append(f"{counted(len(elsewhere), 'deal')} of this judgement in another worker's spool")
                    raise FeedbackUnavailable(
                        "the score log is still writing scores given while its database was away; a deal of this "
                        "judgement is not in it yet: retry later",
                        [Problem("score log", "every score given in the database", "; ".join(held))]) from refused
                spooled |= elsewhere
                if spooled:  # refused for its other deal: the spooled one is not said to be never scored
                    kept = [p for p in refused.problems
                            if not (p.expected == SCORED and p.field in _JUDGED_FIELDS
                                    and getattr(item, p.field) in spooled)]
                    raise ContractViolation(f"judgement refused: {counted(len(kept), 'problem')}", kept) from None
                raise

    def quality(self, version: str, top: int = 10) -> dict[str, Any]:
        # This process's scores still queued for the log are written first, as for outcomes and judgements: a
        # report asked for right after a scoring judged the deal by its previous score (an audit: AUC 0.7941
        # against 0.7913 a second later), and a version that had just scored for the first time was "unknown".
        self.flush_score_log()
        with self._database_errors():
            self.database.ensure_schema()
            return quality_report(self.database.engine, version, top=top)

    def versions(self) -> list[dict[str, Any]]:
        self.flush_score_log()  # as quality()
        with self._database_errors():
            self.database.ensure_schema()
            return model_versions(self.database.engine)

    def latest_version(self) -> str | None:
        self.flush_score_log()  # as quality()
        with self._database_errors():
            self.database.ensure_schema()
            return latest_version(self.database.engine)

    def _database_errors(self) -> _DatabaseErrors:
        return _DatabaseErrors(self.database)


# PostgreSQL's codes for "not allowed", "no such table" and "read-only transaction" (a standby after a
# failover); SQLite says the second as an OperationalError.
_REFUSALS = frozenset({"42501", "42P01", "25006"})


def _sqlstate(error: sa.exc.DBAPIError) -> str | None:
    state = getattr(error.orig, "sqlstate", None)
    return state if isinstance(state, str) else None


class _DatabaseErrors:
    """Turns "the database is not there" into a 503 with the reason (never the SQL or its parameters)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.shown_url = database.shown_url

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> None:
        if error is None:
            return
        if isinstance(error, sa.exc.SQLAlchemyError | SchemaNotReady):
            self.database.doubt()  # a dropped table or a database created anew: the next use migrates it again
        if isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError | SchemaNotReady):
            logger.warning("feedback: database %s unavailable: %s", self.shown_url, describe_error(error))
            raise FeedbackUnavailable("the feedback database is unavailable; scoring is not affected, retry later",
                                      [Problem("feedback database", "reachable and at the service's schema",
                                               "not reachable now" if not isinstance(error, SchemaNotReady)
                                               else "an older schema (run `dealscore db upgrade`)")]) from error
        if isinstance(error, sa.exc.DBAPIError) and _sqlstate(error) in _REFUSALS:
            # The database refuses what the store asks (a revoked grant, a dropped table): an operator's fix,
            # not a bug of the request. Any other database error would be ours, and stays a 500.
            logger.error("feedback: database %s refused the store: %s", self.shown_url, describe_error(error))
            raise FeedbackUnavailable(f"the feedback database refused the request ({describe_error(error)}); "
                                      "scoring is not affected, retry once it is fixed",
                                      [Problem("feedback database", "the service's tables, readable and writable",
                                               describe_error(error))]) from error
