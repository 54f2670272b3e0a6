"""Validation: mapped source tables in, typed canonical tables out, every problem reported at once.

Sources hand over raw values (CSV: strings); this module alone decides what parses. A problem names
its table, column, the 1-based data rows as in the file (the first few and a count), what was
expected and the first values that came instead.

Dates are accepted from their column's `earliest` (1970-01-01 for a deal's dates, 1900-01-01 for the
others; see model.contract) to the day of validation. Extra columns, and a client's `size`, are numbers
when every value present is one and text otherwise, unless `kinds` says how a model was trained on them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from model.contract import (
    CLIENT_HISTORY,
    CLIENTS,
    DATE_SLACK,
    DEALS,
    HOLDINGS,
    MAX_TEXT_LENGTH,
    NULL_MARKERS,
    OPEN_DEALS_MAY_LACK,
    STATUS_VALUES,
    Column,
    Kind,
    Table,
    latest_date_text,
    number_range,
    utc_today,
)
from model.errors import Problem, ProblemList
from model.mapping import MAPPED_ATTR, STATUSES_SEEN_ATTR, WILDCARD_ATTR
from model.records import parse_date
from model.sources import NOT_CSV
from model.spellings import folded_form, merged_spellings, merged_spellings_note

ROWS_SHOWN = 5  # row numbers quoted per problem; Problem.count holds the total

VALUES_SHOWN = 3  # distinct bad values quoted per problem
VALUE_CHARS = 40  # a quoted value is cut here: enough to recognise it, never a data dump
# holdings.attrs key: {spelling: the one it was read as} for products the holdings table spells several ways
MERGED_SPELLINGS_ATTR = "merged_product_spellings"
# deals.attrs key: the table's date_format (None: ISO 8601), which the deals' sent client history is read in too
DATE_FORMAT_ATTR = "date_format"
INFINITE_DATES = frozenset({"infinity", "-infinity", "+infinity"})  # as PostgreSQL writes its unbounded dates


def validate_deals(
    raw: pd.DataFrame, *, for_training: bool, date_format: str | None = None, today: date | None = None,
    kinds: Mapping[str, str] | None = None, decimal: str = ".",
) -> pd.DataFrame:
    """Typed deals, or ContractViolation listing every problem.

    Deals of clients missing from the clients table are prospects, not errors (see Dataset.summary).
    For training, an open deal may lack created_at (see model.contract.OPEN_DEALS_MAY_LACK). `kinds`
    ("number" or "text" by column name) types extra columns as a model was trained on them.
    """
    check = _TableCheck(DEALS, raw, for_training=for_training, date_format=date_format, today=today,
                        kinds=kinds, decimal=decimal)
    deals = check.typed()
    check.unique(*DEALS.key)
    if "created_at" in deals and "closed_at" in deals:
        early = deals["closed_at"] < deals["created_at"]
        if early.any():
            first = early.to_numpy().nonzero()[0][0]
            got = (f"'{deals['closed_at'].iloc[first]:%Y-%m-%d}' before created_at "
                   f"'{deals['created_at'].iloc[first]:%Y-%m-%d}'")
            check.report("closed_at", early, "a date on or after created_at", got)
    if "status" in deals and "closed_at" in deals:
        # Won or lost deals may lack closed_at (many CRMs do not keep it), but an open deal with a
        # close date contradicts itself: one of the two is wrong.
        open_closed = (deals["status"] == "open") & deals["closed_at"].notna()
        dates = deals["closed_at"].dt.strftime("%Y-%m-%d")
        expected = "no closed_at for an open deal"
        by_wildcard = raw.attrs.get(WILDCARD_ATTR, {})
        caught = list(dict.fromkeys(by_wildcard[i] for i in np.flatnonzero(open_closed.to_numpy())
                                    if i in by_wildcard))
        if caught:
            shown = ", ".join(repr(v) for v in caught[:VALUES_SHOWN])
            expected += (f" (the mapping's \"*\" made the status {shown} open: list it under won or lost if it "
                         "means closed)")
        check.report("closed_at", open_closed, expected, _quoted(dates[open_closed]))
    check.problems.raise_if_any("deals table breaks the data contract")
    deals.attrs[DATE_FORMAT_ATTR] = date_format
    return deals


def validate_clients(
    raw: pd.DataFrame, *, date_format: str | None = None, today: date | None = None,
    kinds: Mapping[str, str] | None = None, decimal: str = ".",
) -> pd.DataFrame:
    """Typed clients, or ContractViolation listing every problem.

    `kinds` ("number" or "text" by column name) types `size` and extra columns as a model was trained.
    """
    check = _TableCheck(CLIENTS, raw, for_training=False, date_format=date_format, today=today, kinds=kinds,
                        decimal=decimal)
    clients = check.typed()
    check.unique(*CLIENTS.key)
    check.problems.raise_if_any("clients table breaks the data contract")
    return clients


def validate_holdings(
    raw: pd.DataFrame,
    *,
    known_clients: set[str] | None,
    date_format: str | None = None,
    today: date | None = None,
    decimal: str = ".",
) -> pd.DataFrame:
    """Typed holdings, or ContractViolation listing every problem.

    With `known_clients` (the clients table's ids), a holding of an unknown client is a problem: a
    product held by nobody we know cannot shape any client's profile.
    """
    check = _TableCheck(HOLDINGS, raw, for_training=False, date_format=date_format, today=today, decimal=decimal)
    holdings = check.typed()
    merged: dict[str, str] = {}
    if "product" in holdings:
        # One product spelt two ways is one product, under its commoner spelling (model/spellings.py).
        merged = merged_spellings(holdings["product"].dropna().astype(str))
        if merged:
            holdings["product"] = holdings["product"].map(lambda v: merged.get(v, v) if isinstance(v, str) else v)
    # One row per product a client holds: a repeated pair would count the product twice in the profiles (a pair
    # spelt otherwise, "Credit Line" beside "credit_line", too: +14% income on an audit's export).
    check.unique(*HOLDINGS.key, folded=("product",))
    if known_clients is not None and "client_id" in holdings:
        ids = holdings["client_id"]
        unknown = ids.notna() & ~ids.isin(list(known_clients))
        check.report("client_id", unknown, "a client_id from the clients table", _quoted(ids[unknown]))
    check.problems.raise_if_any("holdings table breaks the data contract")
    holdings.attrs[MERGED_SPELLINGS_ATTR] = merged
    return holdings


def merged_spellings_of(holdings: pd.DataFrame | None) -> str | None:
    """What validate_holdings merged, said (None when nothing was, or no holdings table was given)."""
    return merged_spellings_note(holdings.attrs.get(MERGED_SPELLINGS_ATTR, {})) if holdings is not None else None


def validate_client_history(raw: pd.DataFrame, *, table: str = "deals", today: date | None = None,
                            collect: ProblemList | None = None, date_format: str | None = None) -> pd.DataFrame:
    """A file's client history columns (won_deals, won_amount, first_won_at, last_won_at; those present),
    typed as the service's schema types them (numbers >= 0, dates in range: ISO 8601, or the table's
    `date_format` as the mapping file gives it), or ContractViolation naming each bad value as `table`.column with
    its rows; with `collect`, the problems are added there instead (a value that does not read is missing in the
    frame returned, one out of range stays as it came). How the parts fit together is model.records'."""
    check = _TableCheck(dataclasses.replace(CLIENT_HISTORY, name=table), raw, for_training=False,
                        date_format=date_format, today=today)
    typed = check.typed()
    if collect is not None:
        for problem in check.problems.items:
            collect.add(problem)
        return typed
    check.problems.raise_if_any("client history breaks the data contract")
    return typed


def extra_column_kinds(frame: pd.DataFrame, table: Table) -> dict[str, str]:
    """The typed frame's non-contract columns: name -> "number" or "text"."""
    return {
        str(name): "number" if pd.api.types.is_float_dtype(frame[name]) else "text"
        for name in frame.columns
        if name not in table.names
    }


def id_set(values: pd.Series) -> set[str]:
    """The ids present in a raw column, as validation would type them (trimmed text)."""
    return {v for v in _text(values) if isinstance(v, str)}


class _TableCheck:
    """One table's raw frame, the problems found in it so far, and the parsing of each kind of column."""

    def __init__(
        self, table: Table, raw: pd.DataFrame, *, for_training: bool, date_format: str | None,
        today: date | None, kinds: Mapping[str, str] | None = None, decimal: str = ".",
    ) -> None:
        self.table = table
        self.decimal = decimal  # the CSV's decimal mark (model.sources.CsvFormat): number columns read it
        self.for_training = for_training
        self.date_format = date_format
        self.today = pd.Timestamp(today or utc_today())
        self.kinds = kinds or {}
        self.problems = ProblemList()
        self.mapped: dict[str, str] = dict(raw.attrs.get(MAPPED_ATTR, {}))
        self.status_mapped = STATUSES_SEEN_ATTR in raw.attrs  # the mapping's status_values were applied
        for name, times in Counter(raw.columns).items():
            if times > 1:
                self.problems.add(Problem(str(name), "one column of this name", f"{times} columns",
                                          table=table.name))
        # Keep the first of repeated columns so the rest of the checks still run on something.
        self.raw = raw.loc[:, ~raw.columns.duplicated()].reset_index(drop=True)  # position + 1 = file row

    def report(self, column: str, bad: pd.Series, expected: str, got: str) -> None:
        positions = np.flatnonzero(bad.to_numpy(dtype=bool))
        if len(positions):
            rows = tuple(int(p) + 1 for p in positions[:ROWS_SHOWN])
            self.problems.add(
                Problem(column, expected, got, table=self.table.name, rows=rows, count=len(positions))
            )

    def typed(self) -> pd.DataFrame:
        """The contract's columns present, in contract order and typed, then the extra columns."""
        raw = self.raw
        required = self.table.required_names(self.for_training)
        for name in required:
            if name not in raw.columns:
                source = self.mapped.get(name)
                why = _why_required(self.table.column(name))
                wanted = (f"a column '{source}' ({why[2:-1]}: the mapping file's name for {name})"
                          if source is not None else f"a column '{name}'{why}")
                # The file's own names, as the user knows them (a mapped column under its export name).
                present = [self.mapped.get(str(c), c) for c in raw.columns]
                hint = "" if source is not None else " (or the export's own name for it in the mapping file's columns:)"
                self.problems.add(Problem(name, wanted + hint, f"no such column (columns: {_listing(present)})",
                                          table=self.table.name))
        columns: dict[str, pd.Series] = {}
        missing: dict[str, pd.Series] = {}
        for column in self.table.columns:
            if column.name in raw.columns:
                columns[column.name], missing[column.name] = self._column(column, raw[column.name])
        for name in raw.columns:
            if name not in self.table.names:
                columns[str(name)] = self._extra(str(name), raw[name])
        for name in required:
            if name in missing:
                empty = missing[name]
                column = self.table.column(name)
                if self.table is DEALS and name in OPEN_DEALS_MAY_LACK and "status" in columns:
                    # Open deals are scored, not trained on: only won and lost ones need the value.
                    empty = empty & (columns["status"] != "open")
                    self.report(name, empty, f"a non-empty {name} (required of won and lost deals for training "
                                "and client analytics)",
                                "empty")
                else:
                    self.report(name, empty, f"a non-empty {name}{_why_required(column)}{self._unmappable(name)}",
                                "empty")
        return pd.DataFrame(columns, index=pd.RangeIndex(len(raw)))

    def _unmappable(self, name: str) -> str:
        """Why the mapping left a status empty: a nullable true/false status (null for a deal still open) is mapped
        by its values, and "*" or 'null' under open looked as if they took its gaps too."""
        if name != "status" or not self.status_mapped:
            return ""
        return (", which the mapping file's status_values cannot give: they map values (\"*\" too), never an empty "
                "cell; fill it in the export (COALESCE in a query)")

    def unique(self, *key: str, folded: Sequence[str] = ()) -> None:
        """Report rows whose key (one column or several) repeats; rows missing part of the key are skipped.
        Columns in `folded` compare their values' folded forms (model/spellings.py)."""
        if not all(name in self.raw.columns for name in key):
            return
        # Keys are ids (and products): a "NULL" is missing there, reported once as such, not also as repeated.
        parts = [_without_null_markers(_text(self.raw[name])) for name in key]
        compared = [_folded(p) if name in folded else p for name, p in zip(key, parts, strict=True)]
        complete = pd.concat([p.notna() for p in parts], axis=1).all(axis=1)
        repeated = complete & pd.concat(compared, axis=1).duplicated(keep=False)
        if len(key) == 1:
            self.report(key[0], repeated, f"unique {key[0]} values", f"repeated {_quoted(parts[0][repeated])}")
        else:
            rows = zip(*(p[repeated].head(100) for p in parts), strict=True)
            keys = list(dict.fromkeys(" / ".join(_quoted(pd.Series([v])) for v in row) for row in rows))
            self.report(key[-1], repeated, f"one row per ({', '.join(key)})",
                        f"repeated {', '.join(keys[:VALUES_SHOWN])}")

    def _column(self, column: Column, values: pd.Series) -> tuple[pd.Series, pd.Series]:
        """The typed column and the mask of values missing (problems with values present are reported)."""
        name = column.name
        if column.kind is Kind.DATE:
            typed, missing = self._dates(column, values)
        elif column.kind is Kind.TEXT_OR_NUMBER:
            typed = self._extra(name, values)
            missing = typed.isna()
        elif column.kind is Kind.NUMBER:
            typed, missing = self._numbers(name, values, column.minimum, maximum=column.maximum)
        elif column.kind is Kind.STATUS:
            typed = _without_null_markers(_text(values)).map(lambda v: v.casefold() if isinstance(v, str) else v)
            typed = typed.astype(object)
            missing = typed.isna()
            unknown = ~missing & ~typed.isin(STATUS_VALUES)
            # A CRM's own stage names ("Negotiation") reach these three through the mapping file: say where.
            self.report(name, unknown, f"one of {', '.join(STATUS_VALUES)} (map the export's own values to "
                        "them in the mapping file's status_values; \"*\" catches the rest)", _quoted(values[unknown]))
        else:
            self._refuse_nested(name, values)
            typed = self._text(name, values)
            if column.kind is Kind.ID or name == "product":
                # "NULL" from a SQL dump is no client and no product (all such deals would share one pseudo-client,
                # and gap lists would offer "N/A"); a text feature keeps the word ("NA": North America).
                typed = _without_null_markers(typed)
            missing = typed.isna()
        return typed, missing

    def _refuse_nested(self, name: str, values: pd.Series) -> None:
        """A contract column holds one value per row: a list (a Parquet list column, a PostgreSQL array), an object
        or bytes had been read as its Python text, so a holdings table with a list of products per client trained
        profiles on "products" named "['acquiring' 'payroll']" (a database-inputs review)."""
        if values.dtype != object or pd.api.types.infer_dtype(values, skipna=True) in PLAIN_KINDS:
            return  # text, numbers or dates alone: one C pass, no Python call per value
        nested = values.map(lambda v: isinstance(v, NESTED_TYPES)).astype(bool)
        if nested.any():
            first = values[nested].iloc[0]
            self.report(name, nested, "one value per row (a list, array, object or bytes value is none: give one row "
                        "per value, e.g. per client and product, or unnest it in the query)",
                        f"{type(first).__name__} values such as {_shown_nested(first)}")

    def _extra(self, name: str, values: pd.Series) -> pd.Series:
        """Typed as `kinds` says (a model's feature kinds), else a number column if every value present
        is a finite number, otherwise text."""
        kind = self.kinds.get(name)
        if kind == "text":
            return self._text(name, values)
        if kind == "number":
            return self._numbers(name, values, None, expected="a finite number (the model uses it as a number)")[0]
        numbers, _, bad = _numbers(values, self.decimal)
        return numbers if not bad.any() else self._text(name, values)

    def _text(self, name: str, values: pd.Series) -> pd.Series:
        text = _text(values)
        lengths = text.map(lambda v: len(v) if isinstance(v, str) else 0)
        long = lengths > MAX_TEXT_LENGTH
        if long.any():
            got = f"{_quoted(text[long], shown=1)} ({lengths[long].iloc[0]} characters)"
            self.report(name, long, f"text of at most {MAX_TEXT_LENGTH} characters", got)
        return text

    def _numbers(self, name: str, values: pd.Series, minimum: float | None,
                 expected: str = "a finite number", maximum: float | None = None) -> tuple[pd.Series, pd.Series]:
        numbers, missing, bad = _numbers(values, self.decimal)
        if bad.any() and values[bad].astype(str).str.contains(r"[,.$€£¥]|\d \d", regex=True).any():
            # "1,200.50", "$300", "1 200": formatted money, which a CRM report export often writes.
            mark = "a comma" if self.decimal == "," else "a point"
            expected += f" (digits with {mark} for decimals: no thousands separators, spaces or currency signs"
            # 2638,21 is a decimal comma; 1,000 may be a thousands separator: only the first gets the hint.
            if self.decimal != "," and values[bad].astype(str).str.fullmatch(r"-?\d+,\d{1,2}").any():
                expected += ("; decimal commas read with the mapping file's csv: {decimal: ','}"
                             if self.decimal != NOT_CSV else
                             "; this table is no CSV file, so make the column a number in the file or the query")
            expected += ")"
        self.report(name, bad, expected, _quoted(values[bad]))
        if minimum is not None or maximum is not None:
            # (-inf and inf are already reported as not finite)
            outside = ~bad & ((numbers < minimum if minimum is not None else False)
                              | (numbers > maximum if maximum is not None else False))
            self.report(name, outside, number_range(minimum, maximum), _quoted(values[outside]))
        return numbers, missing

    def _dates(self, column: Column, values: pd.Series) -> tuple[pd.Series, pd.Series]:
        name = column.name
        stamps, missing = _timestamps(values, self.date_format)
        unparsed = ~missing & stamps.isna()
        expected = _date_expected(self.date_format)
        if any(isinstance(v, str) and v.strip().casefold() in INFINITE_DATES for v in values[unparsed]):
            # PostgreSQL's stand-in for "no end" (model.sources reads it as its text): say what stands for none.
            expected += ", and NULL where there is none, not infinity (isfinite() in the query tells them apart)"
        self.report(name, unparsed, expected, _quoted(values[unparsed]))
        # Compared as calendar days in datetime64[us], which holds any year a CRM may write ("9999-12-31").
        days = stamps.dt.floor("D")
        earliest = pd.Timestamp(column.earliest)
        latest = self.today + pd.Timedelta(DATE_SLACK)
        outside = days.notna() & ((days < earliest) | (days > latest))
        self.report(name, outside, f"a date from {earliest:%Y-%m-%d} to {latest_date_text(self.today.date())}",
                    _quoted(values[outside]))
        dates = days.where(~outside).astype("datetime64[ns]")
        return dates, missing


def _text(values: pd.Series) -> pd.Series:
    """Plain Python str (trimmed) or NaN, in an object column: what downstream code expects to see."""
    objects = values.astype(object)
    present = objects.notna().to_numpy()
    text = [_as_text(v) if p else np.nan for v, p in zip(objects, present, strict=True)]
    return pd.Series(text, index=values.index, dtype=object)


def _folded(values: pd.Series) -> pd.Series:
    """Each text value's folded form (model/spellings.py), computed once per distinct value."""
    forms = {v: folded_form(v) for v in values.dropna().unique() if isinstance(v, str)}
    return values.map(forms)  # (text values or gaps here: a gap, in no dict, stays a gap)


NESTED_TYPES = (list, tuple, dict, set, frozenset, np.ndarray, bytes, bytearray, memoryview)
# pandas' infer_dtype kinds that hold no list, object or bytes; any other ("mixed", "mixed-integer" for ints beside a
# list, "bytes", "unknown-array") is looked at value by value.
PLAIN_KINDS = frozenset({"string", "empty", "integer", "floating", "mixed-integer-float", "decimal", "boolean",
                         "datetime64", "datetime", "date", "timedelta64", "timedelta", "time", "period"})


def _shown_nested(value: object) -> str:
    items = list(value.tolist() if isinstance(value, np.ndarray) else value) if isinstance(
        value, list | tuple | set | frozenset | np.ndarray) else None
    text = repr(items) if items is not None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_text(value: object) -> object:
    if isinstance(value, str):
        return value.strip() or np.nan
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # an id read as 12.0 (a number column with gaps) means "12"
    return str(value)


def _numbers(values: pd.Series, decimal: str = ".") -> tuple[pd.Series, pd.Series, pd.Series]:
    """float64 numbers, the missing mask and the mask of values present but not finite numbers.

    With a decimal comma, "12,5" is 12.5, and a value holding a point ("1.234,5", "12.5") is no number: its
    point is a thousands separator or a slip, never read as the decimal mark."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype("float64")
        missing = numbers.isna()
    else:
        text = _without_null_markers(_text(values))
        missing = text.isna()
        if decimal == ",":
            text = text.map(lambda v: (v.replace(",", ".") if "." not in v else "not a number")
                            if isinstance(v, str) else v)
        numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = ~missing & ~np.isfinite(numbers)
    return numbers, missing, bad


def _without_null_markers(text: pd.Series) -> pd.Series:
    marked = text.map(lambda v: isinstance(v, str) and v.lower() in NULL_MARKERS).astype(bool)
    return text.where(~marked) if marked.any() else text


def _timestamps(values: pd.Series, date_format: str | None) -> tuple[pd.Series, pd.Series]:
    """Naive datetime64[us] (NaT where nothing parsed) and the missing mask.

    Values already typed as dates (Parquet, SQL) are taken as they are; text is parsed with the mapping's format,
    else as the API reads it (to its day). Time zones are dropped, keeping each value's own wall-clock date.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = values.dt.tz_localize(None) if getattr(values.dt, "tz", None) is not None else values
        return stamps.astype("datetime64[us]"), stamps.isna()
    objects = values.astype(object)
    # notna(): NaT is an instance of datetime too, and missing is not a bad date.
    typed = objects.notna() & objects.map(lambda v: isinstance(v, date | np.datetime64))
    text = _without_null_markers(_text(objects.where(~typed)))
    missing = text.isna() & ~typed
    if date_format is None:
        stamps = _days_as_the_api_reads(text)
    else:
        try:
            stamps = pd.to_datetime(text, format=date_format, errors="coerce")
            if stamps.dt.tz is not None:
                stamps = stamps.dt.tz_localize(None)
        except ValueError:  # mixed UTC offsets cannot share one column: parse each offset's values together
            stamps = _by_offset(text, date_format)
    stamps = stamps.astype("datetime64[us]")
    if typed.any():
        stamps[typed] = pd.to_datetime(objects[typed].map(_one_timestamp)).astype("datetime64[us]")
    return stamps, missing


def _days_as_the_api_reads(text: pd.Series) -> pd.Series:
    """Each text's calendar day as the API reads it (model.records.parse_date: ISO 8601, or a year-first date with
    another mark), NaT where it reads none; each distinct text once. Files were read by pandas' ISO 8601 parser, fitted
    to the API a form at a time ("2025-12-01t10:00", "10:00:00,5") while both kept taking what the other refused
    ("2025/03/01" and "2025-3-1" in files only; "10:00:00+02:00:30" over HTTP only; 55 of 3,000 random date texts
    after the first): one parser for both paths answers the same text alike. Also faster: 1M dates of 2,000 days
    took 5.7 s, and 200,000 distinct date-times 1.5 s, through pandas."""
    codes, distinct = pd.factorize(text)  # a missing value's code is -1: the NaT after the distinct days
    days = np.full(len(distinct) + 1, np.datetime64("NaT"), dtype="datetime64[D]")
    for position, value in enumerate(distinct):
        with contextlib.suppress(ValueError):
            days[position] = parse_date(value)
    return pd.Series(days[codes].astype("datetime64[us]"), index=text.index)


# A date-time's UTC offset at its end ("Z", "+02:00", "-0330", "+03"), after a time: in the value's last part
# after a "T" or a space. (Scanning from every "T" or space to the end was quadratic: a pasted note of 40,000
# characters took 16 s. The offsets only group values to parse together; each group is parsed as a column is.)
_OFFSET = re.compile(r"[Tt ][^Tt ]*?([Zz]|[+-]\d{2}(?::?\d{2})?)\s*$")


def _by_offset(text: pd.Series, date_format: str | None) -> pd.Series:
    """Text holding several UTC offsets, each value at its own wall-clock time: a CRM's local times across a DST
    change (+01:00 in winter, +02:00 in summer) hold two. Parsed one offset at a time, as one column parses; value
    by value only where a group still mixes (every value so took 11.5 s for 200,000 dates, 0.5 s with one offset)."""
    offsets = text.str.extract(_OFFSET, expand=False).fillna("")
    parts = []
    for _, group in text.groupby(offsets, sort=False):
        try:
            parsed = pd.to_datetime(group, format=date_format or "ISO8601", errors="coerce")
            if parsed.dt.tz is not None:
                parsed = parsed.dt.tz_localize(None)
        except ValueError:
            # Built as datetime64[us] from the start: pandas would infer nanoseconds from a value that has them
            # ("10:00:00.123456789"), and a "9999-12-31" beside it overflowed (OutOfBoundsDatetime: exit 1).
            parsed = pd.Series([_one_timestamp(v, date_format) for v in group], index=group.index,
                               dtype="datetime64[us]")
        parts.append(parsed.astype("datetime64[us]"))
    return pd.concat(parts).reindex(text.index)


def _one_timestamp(value: object, date_format: str | None = None) -> object:
    """One value as a naive Timestamp, or NaT."""
    if _is_missing(value):
        return pd.NaT
    try:
        stamp = (pd.to_datetime(value, format=date_format or "ISO8601") if isinstance(value, str)
                 else pd.Timestamp(value))  # type: ignore[arg-type]
    except (ValueError, OverflowError):
        return pd.NaT
    return stamp.tz_localize(None) if stamp.tzinfo is not None else stamp


def _is_missing(value: object) -> bool:
    missing: Any = pd.isna(value)  # type: ignore[call-overload]
    return bool(missing) if np.ndim(missing) == 0 else False


def _date_expected(date_format: str | None) -> str:
    if date_format is None:
        return "a date like 2024-03-31 (ISO 8601)"
    return f"a date like {date(2024, 3, 31).strftime(date_format)} (format '{date_format}')"


def _why_required(column: Column) -> str:
    # Validation for training is also what `dealscore clients` asks for: it reads won deals and their dates too.
    return " (required for training and client analytics)" if column.required == "training" else " (required)"


def _quoted(values: pd.Series, shown: int = VALUES_SHOWN) -> str:
    """The first few distinct values, quoted and cut short. Past the first hundred rows too when those hold fewer:
    an export whose first hundred bad statuses were one value hid its other bad values until that one was fixed."""
    distinct = list(dict.fromkeys(_shown_value(v) for v in values.head(100)))[:shown]
    if len(distinct) < shown and len(values) > 100:
        rest = values.iloc[100:]
        try:
            later = rest.drop_duplicates()  # in order of appearance, of the column's own type (shown as above)
        except TypeError:  # unhashable values (a Parquet list column): as text
            later = rest.map(_shown_value).drop_duplicates()
        distinct = list(dict.fromkeys([*distinct, *(_shown_value(v) for v in later)]))[:shown]
    return ", ".join(f"'{v[:VALUE_CHARS]}...'" if len(v) > VALUE_CHARS else f"'{v}'" for v in distinct)


def _shown_value(value: object) -> str:
    """A value as text. A timestamp with a named zone whose local time is outside years 1-9999 (a "9999-12-31
    23:59:59Z" placeholder read in a zone ahead of UTC) cannot be written by pandas, which looks its offset up by a
    Python date: it is shown as its wall-clock time and zone (str() raised, and `dealscore` failed with exit 1)."""
    try:
        return str(value)
    except NotImplementedError:
        if isinstance(value, pd.Timestamp) and value.tz is not None:
            return f"{value.tz_localize(None)} {value.tz}"
        raise


def _listing(names: Iterable[object], shown: int = 10) -> str:
    listed = [str(n) for n in names]
    if not listed:
        return "none"
    more = len(listed) - shown
    return ", ".join(listed[:shown]) + (f" and {more} more" if more > 0 else "")
