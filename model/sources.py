"""Readers for the contract's sources: CSV, Parquet, or a SQL table or query behind a SQLAlchemy URL.

Values come back as raw as the source allows (CSV: every value a string) so that validation alone
decides what parses; a source that cannot be read becomes a ContractViolation, never a traceback.
"""

from __future__ import annotations

import csv as _csv
import gzip
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import sqlalchemy as sa

from model.errors import ContractViolation, Problem, SourceUnavailable, counted

CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz")
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
EXPECTED_SOURCE = (
    "a CSV (.csv, .csv.gz) or Parquet (.parquet, .pq) file, or 'SQLAlchemy URL::table or SELECT query'"
)
EXPECTED_QUERY = "a reachable database and a table or SELECT query it can answer"
# URL, then "::", then a table or query. The first "::" outside [...] splits, so an IPv6 host
# ("postgresql://[::1]/db") and a PostgreSQL cast in the query ("amount::text") both survive.
_SQL_SOURCE = re.compile(r"^(?P<url>[A-Za-z][\w+.-]*://(?:\[[^\]]*\]|[^\[])*?)::(?P<what>.+)$", re.DOTALL)
# A query, not a table name: SELECT or WITH, after any comments and opening parentheses (saved warehouse queries
# start with a "-- nightly export" line or a parenthesised UNION). Not PostgreSQL's TABLE x: "Table 2025" may be
# a table's name.
# Possessive (*+) and with one way to match each character: a prefix that is no query had backtracked exponentially
# (a "-- nightly" header, 5 blank lines and a typo'd "SELEC" took 46 s, 6 never ended: a diff review).
_QUERY_START = re.compile(r"^(?:\s|--[^\n]*|/\*(?:(?!\*/).)*\*/|\()*+(select|with)\b", re.IGNORECASE | re.DOTALL)
# libpq's words for a connection refused for good (its errors carry no SQLSTATE at connect): the URL or the server's
# settings are wrong, and a scheduler retrying on exit 4 would retry them forever. Not a host name that does not
# resolve ("Name or service not known"): a compose service's or a StatefulSet pod's name resolves only while its
# container runs, so a database being restarted says it too, and a retry finds it back (a diff review).
_REFUSED_FOR_GOOD = re.compile(r'FATAL:\s+(database "[^"]*" does not exist|role "[^"]*" does not exist|'
                               r"password authentication failed|no pg_hba\.conf entry|pg_hba\.conf rejects|"
                               r'role "[^"]*" is not permitted to log in|permission denied for database)'
                               r"|server does not support SSL, but SSL was required")
REFUSED_FOR_GOOD_EXPECTED = ("a database and role that exist, with their password, and a connection the server's "
                             "SSL and pg_hba.conf settings allow")


def refused_for_good(reason: str) -> bool:
    """A connection refused because the URL is wrong (no such database or role, a wrong password) or the
    server's settings refuse it (pg_hba.conf, SSL), not because the server is away: trying again later cannot
    help."""
    return _REFUSED_FOR_GOOD.search(reason) is not None
FLOAT_EXACT_UP_TO = 2**53  # every integer up to this magnitude has an exact float64


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV file is written (the mapping file's `csv` key per table): spreadsheet exports in many
    countries separate columns with ";", write decimals with ",", and use their own code page."""

    separator: str = ","
    # applied by validation to number columns (values stay text until then); NOT_CSV for a Parquet or SQL table,
    # whose numbers come typed (a text one is read with a point, and a refusal says to type it at the source)
    decimal: str = "."
    encoding: str = "utf-8-sig"  # utf-8-sig: UTF-8 with or without the byte-order mark Excel writes


NOT_CSV = ""  # CsvFormat.decimal of a table that does not come from a CSV file


def is_csv(source: str) -> bool:
    """True for a CSV file source (the only kind a mapping's csv format applies to)."""
    return _SQL_SOURCE.match(source) is None and Path(source).name.lower().endswith(CSV_SUFFIXES)


def read_table(source: str, table: str, csv: CsvFormat | None = None) -> pd.DataFrame:
    """Read the `table` ("deals", "clients" or "holdings") from `source`, values as raw as possible."""
    sql = _SQL_SOURCE.match(source)
    if sql:
        return _read_sql(sql["url"], sql["what"].strip(), table)
    path = check_source(source, table)
    assert path is not None
    name = path.name.lower()
    try:
        if name.endswith(CSV_SUFFIXES):
            return _read_csv(path, table, csv or CsvFormat())
        return _parquet_with_exact_integers(path, table)
    except ContractViolation:
        raise
    except UnicodeDecodeError:
        encoding = (csv or CsvFormat()).encoding
        shown = "UTF-8" if encoding == "utf-8-sig" else encoding
        raise _unreadable(table, f"'{source}' is not {shown} text", f"a CSV file encoded as {shown} (the mapping "
                          "file's csv: {encoding: ...} names another)") from None
    except pd.errors.EmptyDataError:
        raise _unreadable(table, f"'{source}' is empty", expected="a CSV file with a header row") from None
    except Exception as error:  # a damaged file fails deep inside pandas/pyarrow in many ways
        raise _unreadable(table, f"'{source}' cannot be read: {_first_line(error)}") from None


def check_source(source: str, table: str) -> Path | None:
    """A file source's path once it names a file of a known kind (None for a SQL source, which only reading
    checks); ContractViolation otherwise."""
    if _SQL_SOURCE.match(source):
        return None
    path = Path(source)
    if not path.name.lower().endswith(CSV_SUFFIXES + PARQUET_SUFFIXES):
        suffix = "".join(path.suffixes) or "no extension"
        raise _unreadable(table, f"'{source}' ({suffix})")
    if path.is_dir() and path.name.lower().endswith(PARQUET_SUFFIXES):
        return path  # a Parquet dataset as Spark and pyarrow write one: a folder of part files, read whole
    if not path.is_file():
        raise _unreadable(table, f"no file at '{source}'" if not path.is_dir() else
                          f"a folder at '{source}' (a folder is read as one table only when it is a Parquet dataset "
                          "named .parquet or .pq)")
    return path


def _read_csv(path: Path, table: str, csv: CsvFormat) -> pd.DataFrame:
    """Every value as the text the file holds; only an empty cell is missing. pandas' defaults would read
    "NA" (a region: North America), "None" or "null" as missing, and rename a repeated header "Campaign" to
    "Campaign.1", a new feature; read header-less, the repeated name stays for validation to refuse. Number
    and date columns read the usual null markers as missing (model.validation.NULL_MARKERS), text does not.
    Separator and encoding are the table's CsvFormat."""
    def read(rows: int | None) -> pd.DataFrame:
        return pd.read_csv(path, dtype=str, header=None, keep_default_na=False, na_values=[""], nrows=rows,
                           encoding=csv.encoding, sep=csv.separator)

    if csv.encoding.replace("_", "-").lower() not in ("utf-8", "utf-8-sig", "utf8"):
        with path.open("rb") if not path.name.lower().endswith(".gz") else gzip.open(path, "rb") as raw:
            if raw.read(3) == b"\xef\xbb\xbf":  # read as cp1252, the mark became the first column's "ï»¿"
                raise _unreadable(table, f"'{path}', which starts with UTF-8's byte-order mark",
                                  f"a CSV file encoded as {csv.encoding}, as the mapping file's csv: {{encoding: ...}} "
                                  "says (this one is UTF-8: drop the encoding, UTF-8 is the default)")
    # The header alone first: a file separated otherwise reads as one column there, and is refused saying so
    # (its rows may not even parse: "1.234,5" splits into two fields beside a one-field header).
    first = read(1).iloc[0].tolist()
    separator = next((s for s in (";", "\t", "|", ",") if len(first) == 1 and isinstance(first[0], str)
                      and s in first[0] and s != csv.separator), None)
    if separator is not None:  # else: "expected a column 'deal_id', got no such column (columns: id;d;s)"
        shown = {";": "semicolons", "\t": "tabs", "|": "bars", ",": "commas"}[separator]
        raise _unreadable(table, f"'{path}', whose header is one column holding {shown}: {first[0][:80]!r}",
                          f"a CSV file separated by {csv.separator!r} (or the mapping file's csv: {{separator: "
                          f"{separator!r}}} for this table)")
    try:
        rows = read(None)
    except pd.errors.ParserError as error:
        # A row longer than the header. It was refused as "expected a CSV or Parquet file ... cannot be read:
        # Error tokenizing data" of a CSV; pandas' own line number counts records, not the file's lines.
        if re.search(r"Expected \d+ fields in line \d+, saw \d+", str(error)) is None:
            raise
        _refuse_ragged_rows(path, table, csv, len(first))
        raise
    if rows.shape[0] > 1 and rows.iloc[1:, -1].isna().any():  # a short row has a gap in the last column at least
        _refuse_ragged_rows(path, table, csv, rows.shape[1])
    header = [f"Unnamed: {i}" if isinstance(v, float) else v for i, v in enumerate(rows.iloc[0].tolist())]
    frame = rows.iloc[1:].reset_index(drop=True)
    frame.columns = pd.Index(header, dtype=object)
    return frame


def _refuse_ragged_rows(path: Path, table: str, csv: CsvFormat, width: int) -> None:
    """pandas pads a row with fewer fields than the header with gaps (a longer one it refuses): an export cut
    off mid-line, or a row that lost its last fields, was read without a word, its missing cells empty. One
    pass of the csv module counts each row's fields (blank and whitespace-only lines skipped, as pandas does)
    and names the first row whose count differs by the file's own line; the caller runs it only when the last
    column has gaps, or pandas refused a long row (about half a CSV read's time on 900k rows)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    ragged: list[tuple[int, int]] = []
    # pandas reads cells of any length (validation then refuses absurd text by name); the csv module's default
    # limit, 128 KiB, would fail the file here instead.
    _csv.field_size_limit(2**31 - 1)
    with opener(path, "rt", encoding=csv.encoding, newline="") as text:
        reader = _csv.reader(text, delimiter=csv.separator)
        for row in reader:
            if len(row) != width and any(cell.strip() for cell in row):
                ragged.append((reader.line_num, len(row)))
    if not ragged:
        return
    line, fields = ragged[0]
    more = f" (and {counted(len(ragged) - 1, 'more row')})" if len(ragged) > 1 else ""
    if fields < width:
        raise _unreadable(table, f"'{path}' line {line} with {fields} of the header's {width} fields{more}",
                          "a CSV file whose every row has as many fields as its header (a row cut short, as in an "
                          "export that stopped mid-line, would be read with its last cells empty)")
    raise _unreadable(table, f"'{path}' line {line} with {fields} fields, the header's {width}{more}",
                      "a CSV file whose every row has as many fields as its header (a row with more holds an "
                      f"unquoted {csv.separator!r} in a value: quote such values)")


# Query parameters libpq (and drivers on its lines) read as secrets: `?password=...` is as secret as `user:pw@`.
SECRET_URL_PARAMETERS = frozenset({"password", "sslpassword", "passfile"})


def masked_url(url: sa.URL) -> str:
    """The URL for logs and messages: its password hidden, in the user part and in the query alike."""
    secret = {key: "***" for key in url.query if key.lower() in SECRET_URL_PARAMETERS}
    shown = url.update_query_dict(secret).render_as_string(hide_password=True)
    return shown.replace("%2A%2A%2A", "***")  # the query's stars, escaped on the way


def _read_sql(url: str, what: str, table: str) -> pd.DataFrame:
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as error:
        raise _unreadable(table, f"a malformed URL: {_first_line(error)}") from None
    shown = masked_url(parsed)  # the message may reach a log or a client
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not database.startswith(
        "file:"
    ):
        # SQLite would silently create an empty database file for a mistyped path.
        if not Path(database).is_file():
            raise _unreadable(table, f"no SQLite file at '{database}' ({shown})")
    query = what if _QUERY_START.match(what) else _select_all(what, table)
    engine: sa.Engine | None = None
    try:
        engine = sa.create_engine(parsed)
        try:
            connection = engine.connect()
        except sa.exc.OperationalError as error:  # not reached: nothing wrong with the query, try again later
            reason = _first_line(_database_reason(error))
            if refused_for_good(reason):
                # A database or role that does not exist, a wrong password: the URL is wrong, and trying again
                # later (exit 4) would have a scheduler retry a typo forever (a database-inputs review).
                raise _unreadable(table, f"the connection refused by {shown}: {reason}",
                                  REFUSED_FOR_GOOD_EXPECTED) from None
            raise SourceUnavailable(f"{table} source cannot be reached: {shown}: {reason}") from None
        with connection:
            try:
                return _query_with_exact_integers(connection, query)
            except sa.exc.DataError as error:
                if not _date_beyond_python(error):
                    raise
        # PostgreSQL's 'infinity' and '-infinity' (and years past 9999 or before 1) are dates Python has no value
        # for: psycopg failed the whole read, naming no column. Read again, such dates as the database's text, for
        # validation to refuse by table, column and row (the first read's rows are dropped, never paired with
        # these). Only after a failure: the lenient loaders are Python, 3x slower on every date than psycopg's.
        with engine.connect() as connection:
            _dates_beyond_python_as_text(connection)
            return _query_with_exact_integers(connection, query)
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError, ImportError, ValueError) as error:
        reason = _first_line(_database_reason(error))
        raise _unreadable(table, f"query failed on {shown}: {reason}", EXPECTED_QUERY) from None
    finally:
        if engine is not None:
            engine.dispose()


def _date_beyond_python(error: sa.exc.DataError) -> bool:
    """psycopg's own refusal of a value it cannot load (the database's refusals carry an SQLSTATE, its own none).
    Another driver's DataError is not one: psycopg is then not looked for (it may not be installed, and its
    import error would have stood in for the driver's own message)."""
    if type(error.orig).__module__.split(".")[0] != "psycopg":
        return False
    import psycopg

    return isinstance(error.orig, psycopg.DataError) and error.orig.sqlstate is None


def _dates_beyond_python_as_text(connection: sa.Connection) -> None:
    """Have psycopg give a date, timestamp or timestamptz Python cannot hold as the database's text ('infinity')."""
    import psycopg
    from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader

    adapters = connection.connection.driver_connection.adapters  # type: ignore[union-attr]
    for type_name, loader in (("date", DateLoader), ("timestamp", TimestampLoader), ("timestamptz", TimestamptzLoader)):

        class TextBeyondPython(loader):  # type: ignore[valid-type,misc]
            def load(self, data: bytes | memoryview) -> object:
                try:
                    return super().load(data)
                except psycopg.DataError:
                    return bytes(data).decode()

        adapters.register_loader(type_name, TextBeyondPython)


def _inexact_integer_columns(frame: pd.DataFrame) -> list[int]:
    """Positions of float columns holding magnitudes from 2**53 on: an integer column with gaps (a nullable
    BIGINT, a Parquet int64 with nulls) reads as float64, and so does a NUMERIC(20,0) or DECIMAL(19,0) one, gaps or
    not (pandas turns its Decimals into floats); there a float cannot hold every integer: 19-digit client ids (as
    some CRMs make them) were rounded, merging hundreds of clients into a few and linking deals to the wrong one."""
    return [i for i in range(frame.shape[1]) if frame.dtypes.iloc[i] == np.float64
            and bool((frame.iloc[:, i].abs() >= FLOAT_EXACT_UP_TO).any())]


def _exact_integers(values: Sequence[object]) -> npt.NDArray[np.object_] | None:
    """The values as Python ints (None for a gap), when every value present is an integer (a whole Decimal
    counts); else None."""
    exact: list[int | None] = []
    for value in values:
        if value is None or value is pd.NA:
            exact.append(None)
        elif isinstance(value, int | np.integer) and not isinstance(value, bool):
            exact.append(int(value))
        elif isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
            exact.append(int(value))
        else:
            return None
    out = np.empty(len(exact), dtype=np.object_)
    out[:] = exact
    return out if any(v is not None for v in exact) else None


def _refuse_repeated_parquet_columns(path: Path, table: str) -> None:
    """A Parquet file may hold two columns of one name, which pyarrow reads as "Multiple matches for
    FieldRef.Name(amount)": said as validation says a CSV's repeated header (a database-inputs review)."""
    if not path.is_file():
        return  # a dataset folder: its part files' schemas are pyarrow's to merge
    import pyarrow.parquet as pq

    repeated = {name: times for name, times in Counter(pq.read_schema(path).names).items() if times > 1}
    if repeated:
        raise ContractViolation(f"{table} table breaks the data contract", [
            Problem(name, "one column of this name", f"{times} columns", table=table)
            for name, times in repeated.items()])


def _parquet_with_exact_integers(path: Path, table: str) -> pd.DataFrame:
    """The Parquet file (or dataset folder), its integer columns exact (see _inexact_integer_columns): where a float
    column holds such magnitudes, the file is read again with pandas' nullable integers (a file's row order is its
    own, the same in both reads), and the column takes that read's values if they are all integers."""
    _refuse_repeated_parquet_columns(path, table)
    frame = _with_index_as_columns(pd.read_parquet(path))
    suspects = _inexact_integer_columns(frame)
    if suspects:
        nullable = _with_index_as_columns(pd.read_parquet(path, dtype_backend="numpy_nullable"))
        for i in suspects:
            exact = _exact_integers(nullable.iloc[:, i].tolist())
            if exact is not None:
                frame.isetitem(i, exact)
    return frame


def _with_index_as_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A file pandas wrote from a frame indexed by its ids (`deals.set_index("deal_id").to_parquet(...)`) keeps the
    index as columns, and pandas reads them back as the index: "no deal_id column" for a file that has one (a
    database-inputs review). A named index is a column again, unless a column has its name already (written with
    `drop=False`: the same values twice); pandas' unnamed default index is no data."""
    restored = [name for name in frame.index.names if name is not None and name not in frame.columns]
    if restored:
        frame = frame.reset_index(level=restored)
    if any(name is not None for name in frame.index.names):  # what is left repeats a column
        frame = frame.reset_index(drop=True)
    return frame


def _query_with_exact_integers(connection: sa.Connection, query: str | sa.Select[tuple[object, ...]]) -> pd.DataFrame:
    """The query's answer as pandas' read_sql_query builds it, from ONE execution, with integer columns exact
    (see _inexact_integer_columns): those take the rows' own values. (Reading twice and pairing rows by position
    gave deals another deal's client when the rows came back in another order: an UPDATE between the reads, a
    query without ORDER BY.)"""
    # A text query goes to the driver as it is: no SQLAlchemy bind parameters ("amount::text" stays), and no
    # parameters at all, so that a driver reading "%" as a placeholder only beside parameters (psycopg) runs
    # "LIKE 'a%'" (pandas' read_sql_query refused it: "only '%s', '%b', '%t' are allowed as placeholders").
    result = (connection.execution_options(no_parameters=True).exec_driver_sql(query) if isinstance(query, str)
              else connection.execute(query))
    columns, rows = list(result.keys()), result.fetchall()
    frame = pd.DataFrame.from_records(rows, columns=columns, coerce_float=True)
    for i in _inexact_integer_columns(frame):
        exact = _exact_integers([row[i] for row in rows])
        if exact is not None:
            frame.isetitem(i, exact)
    return frame


def _select_all(name: str, table: str) -> sa.Select[tuple[object, ...]]:
    """SELECT * from a table name, optionally "schema.table"; quoted by SQLAlchemy, never pasted in."""
    schema, table_name = _name_parts(name, table)
    return sa.select(sa.text("*")).select_from(sa.table(table_name, schema=schema))


_QUOTED_PART = re.compile(r'"((?:[^"]|"")+)"')
TABLE_NAME_EXPECTED = ('a table name or schema.table, each part as it is (case kept) or in double quotes '
                       '("Sales Data"."Deals"), or a SELECT query')


def _name_parts(name: str, table: str) -> tuple[str | None, str]:
    """(schema, table) of a name as written after `::`. Unquoted, each part is the name exactly as written (case
    kept: `Deals Export` is that table); written as SQL quotes them (`"Sales Data"."Deals"`, `crm."a.b"`), each
    quoted part is taken from inside its quotes, so a name may hold a dot. Quoted names had been taken with their
    quotes, as a table named `"Deals"` (a database-inputs review)."""
    if '"' not in name:
        schema, dot, table_name = name.rpartition(".")
        if not table_name or (dot and not schema):  # "crm." or ".deals": a part left out
            raise _unreadable(table, f"the table name {name!r}", TABLE_NAME_EXPECTED)
        return schema or None, table_name
    parts: list[str] = []
    at = 0
    while True:
        quoted = _QUOTED_PART.match(name, at)
        if quoted is not None:
            parts.append(quoted.group(1).replace('""', '"'))
            at = quoted.end()
        else:
            end = name.find(".", at)
            part = name[at:] if end < 0 else name[at:end]
            if not part or '"' in part:
                raise _unreadable(table, f"the table name {name!r}", TABLE_NAME_EXPECTED)
            parts.append(part)
            at += len(part)
        if at == len(name):
            break
        if name[at] != "." or len(parts) == 2:
            raise _unreadable(table, f"the table name {name!r}", TABLE_NAME_EXPECTED)
        at += 1
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def _unreadable(table: str, got: str, expected: str = EXPECTED_SOURCE) -> ContractViolation:
    return ContractViolation(f"{table} source cannot be read", [Problem(f"{table} source", expected, got)])


def _database_reason(error: BaseException) -> BaseException:
    """The database's own complaint, without the wrappers pandas and SQLAlchemy put around it."""
    if isinstance(error, pd.errors.DatabaseError) and error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, sa.exc.DBAPIError) and error.orig is not None:
        error = error.orig
    return error


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 300 else line[:300] + "..."
