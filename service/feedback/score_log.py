"""The score log: every score the service gives, written off the request path, never lost, never doubled.

The request thread only puts one item per request on a bounded queue (no serialisation, no I/O). A
background thread gathers items into batches and inserts them (ON CONFLICT DO NOTHING on request id
and deal id). When the database fails, batches go to an append-only JSON-lines spool file, fsync'd per
batch, and are replayed when it answers again and at the next start; replaying twice inserts nothing
twice. If the queue is full (the writer cannot keep up), the request thread spools its own item.

Each process appends to its own spool file and holds an exclusive lock on it while alive, so a
second process on the same spool directory replays only files whose owner is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import sqlalchemy as sa

from model.records import CREATED_AT_SENT
from service.feedback.db import Database, SchemaNotReady, describe_error, dialect_insert
from service.feedback.outage import Outage
from service.feedback.tables import score_log

logger = logging.getLogger("dealscore.service.feedback")

SPOOL_PATTERN = "score-log-*.jsonl"
SPOOL_SEARCH_CHUNK_BYTES = 1 << 20  # another worker's spool file is searched this much at a time
GATHER_POLL_SECONDS = 0.05  # how often the writer looks for more items while it gathers a batch
# The writer converts and inserts a batch this many rows at a time, letting go of the GIL between pieces. Done in
# one go, a flush (a few hundred single-deal requests at the default 0.25 s) held the GIL for stretches the
# scoring threads waited out in full (CPython hands it over after 5 ms). Measured with wrk on one connection, as
# bench.serving_bench does (2026-12-07), single-deal p99: the floor server's 6.1-6.6 ms, 1.5 ms without the
# log, 2.5-4.1 ms in pieces of 32 rows (pieces of 64: 3.7-5.1); the service's 6.0-6.5, 2.9-4.1 without the log,
# 4.8-5.5 in pieces (pieces of 8 did no better: what is left is most likely the writer's share of two busy cores,
# with the load driver on the same machine). The cost: about 30 us more writer CPU per request (1.5% of the
# service's). One transaction per batch is kept: one per piece did as well for p99 but doubled the writer's CPU
# (SQLite: 86 against 40 us per request).
WRITE_PIECE_ROWS = 32
Row = dict[str, Any]


@dataclass(frozen=True)
class _Item:
    """One request's scores as the route had them; turned into rows by the writer thread."""

    request_id: str
    model_version: str
    deals: Sequence[Any] | Mapping[str, Any]  # the deal objects, or the scorer's columns (see columns_documents)
    size: int
    p_win: Sequence[float]
    value: Sequence[float] | None
    expected_value: Sequence[float] | None
    grade: Sequence[str]
    scored_at: float  # time.time()
    seq: int


_STOP = object()


def deal_document(deal: Any) -> dict[str, Any]:
    """A deal as JSON-ready data: a pydantic model's dump, or a mapping with dates and numbers normalised."""
    if hasattr(deal, "model_dump"):
        dumped = deal.model_dump(mode="json", exclude_none=True)
        return dict(dumped) if isinstance(dumped, Mapping) else {"deal": dumped}
    if isinstance(deal, Mapping):
        return {str(k): _plain(v) for k, v in deal.items() if not _missing(v)}
    raise TypeError(f"a deal to log must be a mapping or a pydantic model, got {type(deal).__name__}")


_DAY_FIELDS = {"created_day": "created_at", "closed_day": "closed_at"}
_CLIENT_FIELDS = ("industry", "size", "region")
# Client history the scorer may have been handed (by the CRM or the outcome overlay): not the deal itself.
_NOT_LOGGED = frozenset({"won_deals", "won_amount", "first_won_day", "last_won_day"})
_EPOCH = date(1970, 1, 1)


def columns_documents(columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The deals of scorer columns (model.records.deal_columns) as JSON-ready documents, one per row.

    Day numbers become ISO dates; a known client's segment attributes and first-contract date go under
    `client` (as a request nests them), so the training views read both kinds of log entry alike.
    Runs in the writer thread, column by column (numpy converts each column to Python values at once).
    """
    n = len(columns["deal_id"])
    documents: list[dict[str, Any]] = [{} for _ in range(n)]
    clients: list[dict[str, Any]] = [{} for _ in range(n)]
    client_ids = list(columns["client_id"]) if "client_id" in columns else [None] * n
    created_sent = columns.get(CREATED_AT_SENT)  # today stood in where False: not the deal's created_at
    for name, values in columns.items():
        if name in _NOT_LOGGED or name.startswith("_"):  # private names are no deal fields (nor features)
            continue
        array = np.asarray(values)
        if name in _DAY_FIELDS or name == "client_since_day":
            days = array.astype(np.float64)
            known = ~np.isnan(days)
            texts = np.full(n, None, dtype=object)
            texts[known] = np.datetime_as_string(days[known].astype(np.int64).astype("datetime64[D]"))
            if name == "created_day" and created_sent is not None:
                texts[~np.asarray(created_sent, dtype=bool)] = None
            plain: list[Any] = texts.tolist()
        else:
            plain = array.tolist()
        key = _DAY_FIELDS.get(name, name)
        if name == "client_since_day" or name in _CLIENT_FIELDS:
            client_key = "since" if name == "client_since_day" else name
            for i, value in _sent(plain):
                if client_ids[i] is not None:
                    clients[i][client_key] = value
                else:
                    documents[i][key] = value
        else:
            for i, value in _sent(plain):
                documents[i][key] = value
    for document, client in zip(documents, clients, strict=True):
        if client and "client_id" in document:
            document["client"] = {"client_id": document["client_id"], **client}
    return documents


_SCALARS = (str, int, float, bool)


def _sent(values: list[Any]) -> Iterator[tuple[int, Any]]:
    """(row, JSON-ready value) of each value a column holds; None and NaN are values not sent."""
    for i, value in enumerate(values):
        if value is None or value != value:
            continue
        yield i, value if isinstance(value, _SCALARS) else _plain(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):  # NaN is missing; infinities are not data
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if not _missing(v)}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    return value


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _rows(item: _Item, documents: list[dict[str, Any]] | None = None) -> list[Row]:
    """The item's log rows; `documents`: its deals already converted (see _documents_together)."""
    scored_at = datetime.fromtimestamp(item.scored_at, UTC)
    if documents is None:
        documents = (columns_documents(item.deals) if isinstance(item.deals, Mapping)
                     else [deal_document(deal) for deal in item.deals])
    rows = []
    for i, document in enumerate(documents):
        rows.append({
            "request_id": item.request_id,
            "deal_id": str(document.get("deal_id", "")),
            "model_version": item.model_version,
            "p_win": float(item.p_win[i]),
            "value": _number(item.value[i]) if item.value is not None else None,
            "expected_value": _number(item.expected_value[i]) if item.expected_value is not None else None,
            "grade": str(item.grade[i]),
            "scored_at": scored_at,
            "deal": document,
        })
    return rows


def _documents_together(items: Sequence[_Item]) -> dict[int, list[dict[str, Any]]]:
    """The deal documents of items given as scorer columns, by item seq, converted together where items share
    their column names.

    columns_documents costs a few microseconds per column whatever its length: converting a stream of
    single-deal requests one by one cost the writer about 50 us per request more than converting them
    together (bench/score_log_bench.py, writer CPU), time it spent holding the GIL the scoring thread needs.
    A group that cannot be converted together is left out (its items are then converted one by one, so a
    request the log cannot read loses only its own entries).
    """
    groups: dict[tuple[str, ...], list[tuple[_Item, Mapping[str, Any]]]] = {}
    for item in items:
        # Only items whose every column has a value per deal: one shorter column would shift the values of
        # every later item of its group onto the wrong deals, and nothing would fail.
        if isinstance(item.deals, Mapping) and all(len(np.asarray(v)) == item.size for v in item.deals.values()):
            groups.setdefault(tuple(item.deals), []).append((item, item.deals))
    converted: dict[int, list[dict[str, Any]]] = {}
    for names, group in groups.items():
        if len(group) < 2:
            continue
        try:
            documents = columns_documents({name: np.concatenate([np.asarray(columns[name]) for _, columns in group])
                                           for name in names})
        except Exception:
            continue
        if len(documents) != sum(item.size for item, _ in group):
            continue
        at = 0
        for item, _ in group:
            converted[item.seq] = documents[at:at + item.size]
            at += item.size
    return converted


_COLUMNS = ("request_id", "deal_id", "model_version", "p_win", "value", "expected_value", "grade", "scored_at",
            "deal")
# The hot path of the writer thread, below SQLAlchemy's per-row bind processing: one executemany of
# plain tuples (the JSON serialised once here), so the writer holds the GIL as briefly as it can.
_INSERT_SQL = {
    "sqlite": f"INSERT INTO score_log ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
              "ON CONFLICT (request_id, deal_id, scored_at) DO NOTHING",
    "postgresql": f"INSERT INTO score_log ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * 8)}, "
                  "CAST(%s AS JSONB)) ON CONFLICT (request_id, deal_id, scored_at) DO NOTHING",
}


def insert_rows(engine: sa.Engine, rows: Sequence[Row]) -> None:
    """Insert score-log rows; a row already there (same request id, deal id and scoring instant: a replay of
    the spool) is left alone. One transaction, sent WRITE_PIECE_ROWS rows at a time."""
    if not rows:
        return
    dialect = engine.dialect.name
    if dialect not in _INSERT_SQL:
        statement = dialect_insert(engine, score_log).on_conflict_do_nothing(
            index_elements=["request_id", "deal_id", "scored_at"])
        with engine.begin() as connection:
            connection.execute(statement, list(rows))
        return
    sqlite = dialect == "sqlite"
    stamps: dict[datetime, Any] = {}  # one request's rows share their instant: convert it once
    step = WRITE_PIECE_ROWS
    with engine.begin() as connection:
        for start in range(0, len(rows), step):
            if start:
                _let_scoring_run()
            parameters = []
            for row in rows[start:start + step]:
                instant = row["scored_at"]
                stamp = stamps.get(instant)
                if stamp is None:
                    utc = instant.astimezone(UTC)
                    # SQLite: the text SQLAlchemy's DateTime writes (tables.UtcDateTime reads it back as UTC).
                    stamp = stamps[instant] = utc.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else utc
                parameters.append((row["request_id"], row["deal_id"], row["model_version"], row["p_win"],
                                   row["value"], row["expected_value"], row["grade"], stamp,
                                   orjson.dumps(row["deal"]).decode()))
            # psycopg runs executemany as one pipeline (no round trip per row); sqlite3 loops in C.
            connection.exec_driver_sql(_INSERT_SQL[dialect], parameters)


def _let_scoring_run() -> None:
    """Let go of the GIL, so that a thread waiting for it takes it now, not after CPython's 5 ms switch interval
    (time.sleep(0) releases it; a 0.1 ms sleep gave the same p99)."""
    time.sleep(0)


def _pieces(items: Sequence[_Item], rows: int) -> Iterator[Sequence[_Item]]:
    """Consecutive runs of `items`, each of at least `rows` rows but the last (an item is never split: a 1,000-deal
    request is a piece of its own)."""
    start = size = 0
    for end, item in enumerate(items, start=1):
        size += item.size
        if size >= rows:
            yield items[start:end]
            start, size = end, 0
    if start < len(items):
        yield items[start:]


def _file_holds(path: Path, needles: Collection[bytes]) -> set[bytes]:
    """Those of `needles` the file holds, read in chunks (each overlapping the last by a needle's length).

    Read, not mapped into memory: its owner truncates the file once it has replayed it, and reading a mapping past
    the file's new end is a SIGBUS, which ended the searching process (every run of the test, at the first replay).
    A read of a file truncated meanwhile ends early instead."""
    found: set[bytes] = set()
    if not needles:
        return found
    overlap = max(len(needle) for needle in needles) - 1
    tail = b""
    with path.open("rb") as handle:
        while len(found) < len(needles):
            chunk = handle.read(SPOOL_SEARCH_CHUNK_BYTES)
            if not chunk:
                break
            text = tail + chunk
            found.update(needle for needle in needles if needle not in found and needle in text)
            tail = text[-overlap:] if overlap else b""
    return found


def _spooled_deal_id(line: bytes) -> list[str]:
    """The deal id of a spool line ([] for a line torn by a crash: replaying skips it too)."""
    try:
        return [str(orjson.loads(line)["deal_id"])]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return []


class Spool:
    """Append-only JSON-lines files of rows the database did not take yet (one file per process)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._own_path = self._new_own_path()
        self._own: IO[bytes] | None = None
        self._lock = threading.Lock()
        self.rows = 0  # rows waiting in the files this process owns or has adopted
        # The deals of those rows: a judgement naming a deal the database lacks waits for the spool (503 "retry
        # later") only when the spool may hold it; any spooled row at all had a never-scored deal refused 503.
        self._deal_ids: set[str] = set()
        self.corrupt_lines_total = 0

    def _new_own_path(self) -> Path:
        return self.directory / f"score-log-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"

    @property
    def own_path(self) -> Path:
        return self._own_path

    def append(self, rows: Sequence[Row]) -> None:
        """Write and fsync: once this returns, the rows survive a crash of the process or the machine."""
        if not rows:
            return
        payload = b"".join(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z) + b"\n"
                           for row in rows)
        with self._lock:
            handle = self._open_own()
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
            self.rows += len(rows)
            self._deal_ids.update(str(row["deal_id"]) for row in rows)

    def _open_own(self) -> IO[bytes]:
        if self._own is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = self._own_path.open("ab")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh name: never contended
            self._own = handle
        return self._own

    def adopt_orphans(self) -> int:
        """Count rows in spool files whose owner is gone (lockable by us); they are replayed with ours."""
        found = 0
        deal_ids: set[str] = set()
        for _path, handle in self._orphans():
            with handle:
                for line in handle:
                    if line.strip():
                        found += 1
                        deal_ids.update(_spooled_deal_id(line))
        with self._lock:
            self.rows = self._own_rows() + found
            self._deal_ids |= deal_ids
        return found

    def holding(self, deal_ids: Collection[str]) -> set[str]:
        """Those of `deal_ids` whose scores may wait here (rows of them were spooled and not yet replayed)."""
        # No lock: a replay holds it until the database has taken every row, and a membership test is atomic.
        return {deal_id for deal_id in deal_ids if deal_id in self._deal_ids} if self.rows else set()

    def held_elsewhere(self, deal_ids: Collection[str]) -> set[str]:
        """Those of `deal_ids` with rows in another spool file of the directory: another worker's (it replays them
        after its own back-off, up to a minute) or one whose owner is gone and that no process adopted yet. Read
        without a lock, on the rare path of a deal the database lacks: a file replayed meanwhile may still count."""
        if not deal_ids or not self.directory.is_dir():
            return set()
        # A row as written: orjson's compact `"deal_id":"..."`; a quote inside a string value is escaped, so the
        # text appears only as a row's (or its deal document's) own deal id.
        needles = {orjson.dumps({"deal_id": deal_id})[1:-1]: deal_id for deal_id in deal_ids}
        found: set[str] = set()
        for path in self.directory.glob(SPOOL_PATTERN):
            if path == self._own_path:
                continue
            wanted = [needle for needle, deal_id in needles.items() if deal_id not in found]
            if not wanted:
                break
            try:
                found.update(needles[needle] for needle in _file_holds(path, wanted))
            except OSError:  # replayed and removed just now, or not ours to read: nothing known to wait there
                continue
        return found

    def _own_rows(self) -> int:
        if self._own is None or not self._own_path.exists():
            return 0
        with self._own_path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())

    def _orphans(self) -> list[tuple[Path, IO[bytes]]]:
        if not self.directory.is_dir():
            return []
        out: list[tuple[Path, IO[bytes]]] = []
        for path in sorted(self.directory.glob(SPOOL_PATTERN)):
            if path == self._own_path:
                continue
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                continue  # another process replayed and removed it just now
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()  # its owner is alive and will replay it
                continue
            out.append((path, handle))
        return out

    def replay(self, write: Callable[[list[Row]], object], chunk_rows: int,
               file_done: Callable[[], object] = lambda: None) -> int:
        """Write every spooled row (own file and orphans) through `write`; drop each file once it is in, then call
        `file_done` (what was written of that file will not be replayed again).

        If `write` raises, the file being replayed stays as it is (replaying it again later is harmless), as do
        those not reached, and the error propagates.
        """
        replayed = 0
        with self._lock:
            for path, handle in self._orphans():
                with handle:
                    replayed += self._replay_file(handle, write, chunk_rows)
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                file_done()
            if self._own is not None:
                with self._own_path.open("rb") as handle:
                    replayed += self._replay_file(handle, write, chunk_rows)
                self._own.truncate(0)
                self._own.seek(0)
                file_done()
            self.rows = 0
            self._deal_ids.clear()
        return replayed

    def _replay_file(self, handle: IO[bytes], write: Callable[[list[Row]], object], chunk_rows: int) -> int:
        handle.seek(0)
        chunk: list[Row] = []
        count = 0
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
                row["scored_at"] = datetime.fromisoformat(row["scored_at"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                # A line torn by a crash mid-write: the rest of the file is still good.
                self.corrupt_lines_total += 1
                logger.warning("score log spool %s: line %d is not a complete entry; skipped", handle.name, number)
                continue
            chunk.append(row)
            if len(chunk) >= chunk_rows:
                write(chunk)
                count += len(chunk)
                chunk = []
        if chunk:
            write(chunk)
            count += len(chunk)
        return count

    def close(self) -> None:
        with self._lock:
            if self._own is None:
                return
            if self._own_path.stat().st_size == 0:
                self._own_path.unlink(missing_ok=True)
            fcntl.flock(self._own.fileno(), fcntl.LOCK_UN)
            self._own.close()
            self._own = None
            # Entries left in it are an orphan's now, replayed by the next start (of this or any process).
            self._own_path = self._new_own_path()


@dataclass(frozen=True)
class ScoreLogStats:
    pending: int  # entries not yet in the database: queued plus spooled
    queued: int
    spooled: int
    written_total: int
    spooled_total: int
    overflow_total: int  # requests the full queue sent straight to the spool
    dropped_total: int  # entries lost (unreadable deal objects, values the database refuses, or both database
    # and disk failing)
    database_up: bool
    last_error: str | None


class ScoreLog:
    """The background writer. `record` is the only call on the request path."""

    def __init__(self, database: Database, spool_dir: Path, *, queue_size: int = 10_000, queue_deals: int = 100_000,
                 batch_rows: int = 1_000, flush_seconds: float = 0.25, retry_seconds: float = 2.0) -> None:
        self.database = database
        self.spool = Spool(spool_dir)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self._queue_deals = max(1, queue_deals)
        self._batch_rows = max(1, batch_rows)
        self._flush_seconds = flush_seconds
        self._retry_seconds = retry_seconds
        self._outage = Outage(retry_seconds)
        self._next_attempt = 0.0  # monotonic time before which the database is not tried again
        self._callers_try_after = -math.inf  # monotonic time from which a caller may bring a try forward again
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._seq = 0
        self._outstanding: set[int] = set()  # sequence numbers recorded but not yet in the database or spool
        self._queued = 0
        self._written_total = 0
        self._spooled_total = 0
        self._overflow_total = 0
        self._dropped_total = 0
        self._thread: threading.Thread | None = None

    # -- the request path ------------------------------------------------------------------------
    def record(self, request_id: str, model_version: str, deals: Sequence[Any], batch: Any) -> None:
        """Log one request's scores. `deals`: the request's deal objects (pydantic models or mappings) in
        batch order; `batch` has p_win, value, expected_value and grade (a ScoreBatch).

        Costs one queue put: the deals are turned into rows later, by the writer thread, so they must
        not be mutated after this call (the service's request objects are not).
        """
        self._submit(request_id, model_version, deals, len(deals), batch)

    def record_columns(self, request_id: str, model_version: str, columns: Mapping[str, Any], batch: Any) -> None:
        """As `record`, from the scorer's input columns (what model.score was given) instead of deal objects."""
        self._submit(request_id, model_version, columns, len(columns["deal_id"]), batch)

    def _submit(self, request_id: str, model_version: str, deals: Sequence[Any] | Mapping[str, Any], n: int,
                batch: Any) -> None:
        if n == 0:
            return
        with self._lock:
            # Bounded by deals too, not only by requests: while the database stalls without failing, 10,000 waiting
            # requests of 1,000 deals held about 7 GB (a security review). A request finding the queue empty waits
            # there whatever its size.
            full = self._queued > 0 and self._queued + n > self._queue_deals
            self._seq += 1
            self._queued += n
            seq = self._seq
            self._outstanding.add(seq)
        item = _Item(request_id=request_id, model_version=model_version, deals=deals, size=n, p_win=batch.p_win,
                     value=getattr(batch, "value", None), expected_value=getattr(batch, "expected_value", None),
                     grade=batch.grade, scored_at=time.time(), seq=seq)
        if full:
            self._overflow(item)
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._overflow(item)

    def _overflow(self, item: _Item) -> None:
        """The writer is behind by a whole queue: this request pays for its own (fsync'd) spool write."""
        try:
            rows = _rows(item)
            self.spool.append(rows)
            with self._lock:
                self._overflow_total += 1
                self._spooled_total += len(rows)
        except Exception:  # the log must never fail a scoring request
            logger.exception("score log: request %s could not be spooled; its entries are lost", item.request_id)
            with self._lock:
                self._dropped_total += item.size
        finally:
            self._finish([item])

    # -- lifecycle ---------------------------------------------------------------------------------
    def database_reached(self) -> None:
        """The database answered someone else (the feedback store at start): the log counts it up until a write
        of its own says otherwise. Before start() only: the writer thread owns the outage once it runs."""
        if self._thread is None:
            self._outage.recovered()

    def start(self) -> None:
        if self._thread is not None:
            return
        adopted = self.spool.adopt_orphans()
        if adopted:
            logger.info("score log: %d entries in the spool from an earlier run; replaying", adopted)
        self._thread = threading.Thread(target=self._run, name="dealscore-score-log", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (to the database, else the spool) and stop the writer."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            logger.error("score log writer did not stop within %.0f s; %d entries may wait in memory",
                         timeout, self.stats().queued)
        self.spool.close()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything recorded so far is in the database or the spool; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._done:
            target = self._seq
            while self._outstanding and min(self._outstanding) <= target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._done.wait(remaining)
        return True

    def spooled(self, deal_ids: Collection[str]) -> set[str]:
        """Those of `deal_ids` with scores waiting in this process's spool."""
        return self.spool.holding(deal_ids)

    def spooled_elsewhere(self, deal_ids: Collection[str]) -> set[str]:
        """Those of `deal_ids` with scores waiting in another process's spool file (another worker's)."""
        return self.spool.held_elsewhere(deal_ids)

    def replay_soon(self, deal_ids: Collection[str], timeout: float) -> bool:
        """A caller that has just reached the database needs scores of `deal_ids` from the spool: the writer tries
        the database now rather than after its back-off (up to a minute). Callers bring a try forward at most once per
        first retry wait (DEALSCORE_DATABASE_RETRY_SECONDS), however many they are: each call forgot the back-off, and
        ten judgements made ten replays against a database refusing the log's writes. The back-off itself goes on
        doubling. Waits until the spool holds none of `deal_ids`; False when `timeout` passed first, or the writer's
        next try comes after it."""
        with self._lock:
            now = time.monotonic()
            if now >= self._callers_try_after:
                self._callers_try_after = now + self._retry_seconds
                self._next_attempt = min(self._next_attempt, now)
        deadline = time.monotonic() + timeout
        while self.spool.holding(deal_ids):
            if time.monotonic() >= deadline or self._next_attempt > deadline:
                return False
            time.sleep(GATHER_POLL_SECONDS)
        return True

    def stats(self) -> ScoreLogStats:
        with self._lock:
            return ScoreLogStats(
                pending=self._queued + self.spool.rows, queued=self._queued, spooled=self.spool.rows,
                written_total=self._written_total, spooled_total=self._spooled_total,
                overflow_total=self._overflow_total, dropped_total=self._dropped_total,
                database_up=self._outage.up, last_error=self._outage.last_error)

    def pending(self) -> int:
        return self.stats().pending

    # -- the writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            items, stopping = self._gather()
            self._replay_if_due()
            if items:
                self._write(items)
        self._replay_if_due()

    def _replay_if_due(self) -> None:
        if not self.spool.rows or time.monotonic() < self._next_attempt:
            return
        try:
            self._replay()
        except Exception:  # the writer must outlive anything one replay can throw
            logger.exception("score log: replaying the spool failed unexpectedly")
            self._next_attempt = time.monotonic() + self._outage.next_wait

    def _gather(self) -> tuple[list[_Item], bool]:
        """Up to batch_rows rows: wait for the first item, then at most flush_seconds for more.

        After the first item the queue is polled (every GATHER_POLL_SECONDS), not waited on: a blocking get
        woke this thread for every request, and each wake-up took the GIL from the scoring thread (about
        25 us of writer CPU per single-deal request, measured in-process)."""
        items: list[_Item] = []
        rows = 0
        timeout = self._flush_seconds if not self.spool.rows else min(self._flush_seconds, self._retry_seconds)
        deadline = time.monotonic() + timeout
        try:
            got = self._queue.get(timeout=timeout)
        except queue.Empty:
            return items, False
        while True:
            if got is _STOP:
                self._drain_into(items)
                return items, True
            items.append(got)
            rows += got.size
            if rows >= self._batch_rows:
                return items, False
            got = self._next_item(deadline)
            if got is None:
                return items, False

    def _next_item(self, deadline: float) -> Any:
        """The next queued item, or None if none came by `deadline` (monotonic)."""
        while True:
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(remaining, GATHER_POLL_SECONDS))

    def _drain_into(self, items: list[_Item]) -> None:
        while True:
            try:
                got = self._queue.get_nowait()
            except queue.Empty:
                return
            if got is not _STOP:
                items.append(got)

    def _write(self, items: list[_Item]) -> None:
        rows: list[Row] = []
        for number, piece in enumerate(_pieces(items, WRITE_PIECE_ROWS)):
            if number:
                _let_scoring_run()
            together = _documents_together(piece)
            for item in piece:
                try:
                    rows.extend(_rows(item, together.get(item.seq)))
                except Exception:  # a deal object the log cannot read: lose this request's entries, not the batch
                    logger.exception("score log: request %s cannot be logged", item.request_id)
                    with self._lock:
                        self._dropped_total += item.size
        committed = 0  # rows[:committed] are in the database: chunks written before a failure are not spooled
        try:
            if self.spool.rows or time.monotonic() < self._next_attempt:
                self._to_spool(rows)  # the database is known to be down: keep the order of events simple
            else:
                for start in range(0, len(rows), self._batch_rows):
                    written = self._insert(rows[start:start + self._batch_rows])
                    committed = min(start + self._batch_rows, len(rows))
                    with self._lock:
                        self._written_total += written
                self._mark_up()
        except (sa.exc.SQLAlchemyError, OSError, SchemaNotReady) as error:
            self._mark_down(error)
            # (Spooled, they were written again as no-ops by the replay and counted written twice.)
            self._spool_or_complain(rows[committed:])
        except Exception:
            logger.exception("score log: unexpected failure writing %d entries; spooling them", len(rows) - committed)
            self._spool_or_complain(rows[committed:])
        finally:
            self._finish(items)

    def _spool_or_complain(self, rows: list[Row]) -> None:
        try:
            self._to_spool(rows)
        except OSError:  # the disk failed too: nothing is left to keep them
            logger.exception("score log: %d entries lost: neither the database nor the spool took them", len(rows))
            with self._lock:
                self._dropped_total += len(rows)

    def _insert(self, rows: list[Row], refused: Callable[[], object] = lambda: None) -> int:
        """Insert `rows`; the number the database took (a row it refuses is dropped, counted as such, and
        `refused` is called for it: at once, as a failure later in the same rows loses the count)."""
        self.database.ensure_schema()
        try:
            insert_rows(self.database.engine, rows)
        except sa.exc.DataError:
            # The database refused a value, not the connection: spooling the batch would replay the same
            # refusal forever and hold every later entry back. Write the rows one by one; drop the refused.
            return self._insert_each(rows, refused)
        return len(rows)

    def _insert_each(self, rows: list[Row], refused: Callable[[], object]) -> int:
        written = 0
        for row in rows:
            try:
                insert_rows(self.database.engine, [row])
                written += 1
            except sa.exc.DataError as error:
                logger.error("score log: the database refused the entry of request %s, deal %r (%s); dropped",
                             row["request_id"], str(row["deal_id"])[:40], describe_error(error))
                with self._lock:
                    self._dropped_total += 1
                refused()
        return written

    def _to_spool(self, rows: list[Row]) -> None:
        self.spool.append(rows)
        with self._lock:
            self._spooled_total += len(rows)

    def _replay(self) -> None:
        # Counts of the file being replayed are settled once it is dropped: a replay cut off inside a file leaves
        # it whole (the spool keeps no progress within one), and the next replay meets its rows again. Its refused
        # rows, counted dropped here and again then, were dropped twice.
        file_written = file_refused = written = 0

        def one_refused() -> None:
            nonlocal file_refused
            file_refused += 1

        def insert(rows: list[Row]) -> int:
            # What the database took: a row it refuses is dropped (and counted so) by _insert, not written. Its
            # refusals are counted as they come: cut off later in the same rows (one by one after a refusal), the
            # rows' own count never comes back.
            nonlocal file_written
            taken = self._insert(rows, one_refused)
            file_written += taken
            return taken

        def file_done() -> None:
            nonlocal file_written, file_refused, written
            with self._lock:
                self._written_total += file_written
            written, file_written, file_refused = written + file_written, 0, 0

        try:
            replayed = self.spool.replay(insert, self._batch_rows, file_done)
        except (sa.exc.SQLAlchemyError, SchemaNotReady) as error:
            with self._lock:
                self._dropped_total -= file_refused
            self._mark_down(error)
            return
        self._mark_up()
        logger.info("score log: the database %s is back; %d spooled entries written (%d refused)",
                    self.database.shown_url, written, replayed - written)

    def _finish(self, items: Sequence[_Item]) -> None:
        if not items:
            return
        done = sum(item.size for item in items)
        with self._done:
            self._queued -= done
            self._outstanding.difference_update(item.seq for item in items)
            self._done.notify_all()

    def _mark_up(self) -> None:
        with self._lock:
            self._outage.recovered()

    def _mark_down(self, error: BaseException) -> None:
        self.database.doubt()
        reason = describe_error(error)
        with self._lock:
            news = self._outage.failed(reason)
            self._next_attempt = time.monotonic() + self._outage.wait
        if news:
            logger.warning("score log: database %s unavailable (%s); spooling to %s, retrying in %.1f s",
                           self.database.shown_url, reason, self.spool.directory, self._outage.wait)
