"""The mapping file: how a CRM's own column names, status values and date format become the contract's.

A user describes their export once in YAML (see CONTRACT.md) instead of rewriting it by hand.
"""

from __future__ import annotations

import codecs
import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from model.contract import NULL_MARKERS, STATUS_VALUES, TABLES, Kind
from model.errors import ContractViolation, Problem, ProblemList
from model.sources import CsvFormat

WILDCARD = "*"  # in status_values: every value not listed elsewhere
TYPO_SIMILARITY = 0.85  # difflib ratio above which a missing source column is taken for a typo of a present one
TABLE_KEYS: tuple[str, ...] = ("columns", "status_values", "date_format", "exclude", "csv")
CSV_KEYS: tuple[str, ...] = ("separator", "decimal", "encoding")
# apply_mapping records the source columns it dropped under this key of the frame's attrs.
EXCLUDED_ATTR = "excluded_columns"
# The mapping's canonical -> source column names, kept on the mapped frame: a required column the file
# lacks is then named as the export names it, not only by its canonical name.
MAPPED_ATTR = "mapped_columns"
# The rows whose status the mapping's "*" decided (row position -> the export's value, as written): named
# when such a deal contradicts its status (an open deal with a close date), since the message would
# otherwise not say where "open" came from.
WILDCARD_ATTR = "wildcard_statuses"
UNMATCHED_STATUS_ATTR = "unmatched_status_values"  # status: the values status_values lists that no row has
STATUSES_SEEN_ATTR = "statuses_seen"  # the export's own status values and their counts, most common first
# ... and the columns named as a contract column but for case or spaces, with that name (source -> canonical).
NEAR_MISS_ATTR = "near_miss_columns"


@dataclass(frozen=True)
class TableMapping:
    """One table's section of the mapping file."""

    columns: dict[str, str] = field(default_factory=dict)  # canonical name -> source column name
    status_values: dict[str, tuple[str, ...]] = field(default_factory=dict)  # won/lost/open -> source values
    date_format: str | None = None  # strftime format; None means ISO 8601
    exclude: tuple[str, ...] = ()  # source columns dropped before anything else
    csv: CsvFormat = field(default_factory=CsvFormat)  # how the table's CSV file is written


@dataclass(frozen=True)
class Mapping:
    """A whole mapping file: a TableMapping per contract table that has a section."""

    tables: dict[str, TableMapping] = field(default_factory=dict)

    def table(self, name: str) -> TableMapping:
        return self.tables.get(name, TableMapping())


def load_mapping(path: str | Path) -> Mapping:
    """Read and check a mapping file; every mistake in it is reported at once, naming its key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractViolation(
            "mapping file not found",
            [Problem("mapping file", "an existing YAML file", f"no file at '{path}'")],
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ContractViolation(
            "mapping file cannot be read", [Problem("mapping file", "a readable UTF-8 YAML file", str(error))]
        ) from None
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader: no Python objects)
    except yaml.YAMLError as error:
        raise ContractViolation(
            "mapping file is not valid YAML",
            [Problem("mapping file", "valid YAML", " ".join(str(error).split()))],
        ) from None
    problems = ProblemList()
    mapping = parse_mapping(document if document is not None else {}, problems)
    problems.raise_if_any(f"mapping file '{path}' is invalid")
    return mapping


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping. PyYAML keeps the last silently: a second
    `columns:` under deals dropped the first, amount mapping and all, and the model trained without it."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *common`: merged by the base class; a key beside
                continue                                     # it overrides the merged one, as YAML means
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found the key '{key}' twice: give each key once",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_mapping(document: object, problems: ProblemList) -> Mapping:
    """Build a Mapping from parsed YAML, adding a Problem for each unknown or malformed key."""
    if not isinstance(document, dict):
        problems.add(Problem("mapping file", "a YAML mapping of table names", _kind_of(document)))
        return Mapping()
    tables: dict[str, TableMapping] = {}
    for name, section in document.items():
        if name not in TABLES:
            problems.add(Problem(str(name), f"a table name, one of {', '.join(TABLES)}", f"'{name}'"))
        elif not isinstance(section, dict):
            problems.add(Problem(name, f"a mapping with keys {', '.join(TABLE_KEYS)}", _kind_of(section)))
        else:
            tables[name] = _parse_table(name, section, problems)
    return Mapping(tables)


def _parse_table(name: str, section: dict[Any, Any], problems: ProblemList) -> TableMapping:
    table = TABLES[name]

    def add(key: str, expected: str, got: str) -> None:
        problems.add(Problem(f"{name}.{key}", expected, got))

    for key in section:
        if key not in TABLE_KEYS:
            add(str(key), f"one of {', '.join(TABLE_KEYS)}", f"'{key}'")

    columns: dict[str, str] = {}
    raw_columns = section.get("columns") or {}
    if not isinstance(raw_columns, dict):
        add("columns", "a mapping of canonical name: source column", _kind_of(raw_columns))
        raw_columns = {}
    for canonical, source in raw_columns.items():
        key = f"columns.{canonical}"
        if canonical not in table.names:
            add(key, f"a {name} column, one of {', '.join(table.names)}", f"'{canonical}'")
        elif not isinstance(source, str) or not source:
            add(key, "the source column's name as text", _kind_of(source))
        elif source in columns.values():
            # One source column cannot feed two canonical ones: renaming is one-to-one.
            add(key, "a source column not mapped already", f"'{source}' mapped twice")
        else:
            columns[canonical] = source

    status_values: dict[str, tuple[str, ...]] = {}
    raw_statuses = section.get("status_values") or {}
    if raw_statuses and not any(c.kind is Kind.STATUS for c in table.columns):
        add("status_values", f"no status_values (the {name} table has no status)", "some")
    elif not isinstance(raw_statuses, dict):
        add("status_values", "a mapping of status: [values]", _kind_of(raw_statuses))
    else:
        seen: dict[str, str] = {}
        for status, values in raw_statuses.items():
            key = f"status_values.{status}"
            listed = values if isinstance(values, list) else [values]
            if status not in STATUS_VALUES:
                add(key, f"a status, one of {', '.join(STATUS_VALUES)}", f"'{status}'")
            elif not all(isinstance(v, str | int | float) for v in listed):
                add(key, "a list of source values (text, numbers or true/false)",
                    _kind_of(values) if not isinstance(values, list) else "a list holding "
                    + _kind_of(next(v for v in listed if not isinstance(v, str | int | float))))
            else:
                # A status column stored as numbers (Parquet) or booleans (SQL): its values and these are
                # compared as text, so `won: [1]` and `won: ["1"]` both match a 1.
                listed = [text for v in listed for text in _spellings(v)]
                for value in listed:
                    if seen.get(_status_key(value), status) != status:
                        add(key, "each source value under one status only",
                            f"'{value}' also under {seen[_status_key(value)]}")
                    seen[_status_key(value)] = status
                status_values[status] = tuple(listed)

    date_format = section.get("date_format")
    if date_format is not None and not _is_date_format(date_format):
        got = f"'{date_format}'" if isinstance(date_format, str) else _kind_of(date_format)
        add("date_format", "a strftime date format with day, month and year, like '%d-%b-%y'", got)
        date_format = None

    exclude = section.get("exclude") or []
    if isinstance(exclude, str):
        exclude = [exclude]
    if not isinstance(exclude, list) or not all(isinstance(c, str) for c in exclude):
        add("exclude", "a list of source column names", _kind_of(exclude))
        exclude = []
    for source in exclude:
        # Excluded first, the column was gone before it could be renamed: a mapped amount trained no amount.
        mapped_as = [canonical for canonical, mapped in columns.items() if mapped == source]
        if mapped_as:
            add("exclude", f"source columns not mapped under columns (it maps '{source}' to {mapped_as[0]}): "
                "map it or exclude it, not both", f"'{source}'")
    return TableMapping(columns, status_values, date_format, tuple(exclude), _parse_csv(section.get("csv"), add))


def _parse_csv(raw: object, add: Callable[[str, str, str], None]) -> CsvFormat:
    if raw is None:
        return CsvFormat()
    if not isinstance(raw, dict):
        add("csv", f"a mapping with keys {', '.join(CSV_KEYS)}", _kind_of(raw))
        return CsvFormat()
    for key in raw:
        if key not in CSV_KEYS:
            add(f"csv.{key}", f"one of {', '.join(CSV_KEYS)}", f"'{key}'")
    separator, decimal, encoding = raw.get("separator", ","), raw.get("decimal", "."), raw.get("encoding")
    if not (isinstance(separator, str) and len(separator) == 1 and separator not in "\"\r\n"):
        add("csv.separator", "one character between columns, like ',' or ';' (a tab: \"\\t\")",
            repr(separator) if isinstance(separator, str) else _kind_of(separator))
        separator = ","
    if decimal not in (".", ","):
        add("csv.decimal", "'.' or ','", repr(decimal) if isinstance(decimal, str) else _kind_of(decimal))
        decimal = "."
    if decimal == separator:
        add("csv.decimal", f"a decimal mark other than the separator {separator!r} (with a decimal comma, set the "
            "separator too, e.g. ';')", repr(decimal))
        decimal = "."
    if encoding is not None:
        try:
            codecs.lookup(encoding if isinstance(encoding, str) else "")
        except LookupError:
            add("csv.encoding", "a text encoding Python knows, like 'utf-8', 'cp1252' or 'latin-1'",
                repr(encoding) if isinstance(encoding, str) else _kind_of(encoding))
            encoding = None
    return CsvFormat(separator=separator, decimal=decimal,
                     encoding="utf-8-sig" if encoding is None or codecs.lookup(encoding).name == "utf-8"
                     else encoding)


def apply_mapping(table_name: str, raw: pd.DataFrame, mapping: Mapping, *,
                  require_mapped_columns: bool = False) -> pd.DataFrame:
    """Rename a source table's columns to canonical names and its status values to won/lost/open.

    Excluded source columns are dropped first; the ones actually present are recorded in
    `result.attrs[EXCLUDED_ATTR]`. Unmatched status values are left as they came, for validation
    to report. With `require_mapped_columns` (training), every column the mapping maps must be in the file
    (see `_unmatched`).
    """
    section = mapping.table(table_name)
    present = [str(c) for c in raw.columns]
    typos = _likely_typos(table_name, section, present) + (
        _unmatched(table_name, section, present) if require_mapped_columns else [])
    if typos:
        raise ContractViolation(f"{table_name} table: the mapping file names columns the file does not have",
                                typos)
    excluded = [c for c in section.exclude if c in raw.columns]
    kept = [c for c in raw.columns if c not in excluded]
    renames = {source: canonical for canonical, source in section.columns.items() if source in kept}
    clashes = [c for c in kept if c not in renames and section.columns.get(c) in renames]
    if clashes:
        # The export has both the canonical column and the one mapped onto it: which one is meant is a guess.
        raise ContractViolation(
            f"{table_name} table: mapped columns clash with columns of the same name",
            [Problem(c, f"either a column '{c}' or a mapping of '{section.columns[c]}' to it, not both",
                     "both", table=table_name) for c in clashes],
        )
    # By position: selecting by name would take each repeated column once per repeat (two 'status' columns
    # became four, and validation's "one column of this name" said 4).
    frame = raw.loc[:, ~raw.columns.isin(excluded)].rename(columns=renames)
    caught: dict[int, str] = {}
    if section.status_values and list(frame.columns).count("status") == 1:  # a repeated one is refused later
        seen: dict[str, int] = {}
        for value, n in frame["status"].dropna().value_counts().items():  # distinct values only: cheap at 1M rows
            text = status_text(value).strip()
            seen[text] = seen.get(text, 0) + int(n)
        ranked = sorted(seen.items(), key=lambda item: -item[1])
        frame.attrs[STATUSES_SEEN_ATTR] = dict(ranked[:20])
        frame.attrs[UNMATCHED_STATUS_ATTR] = _unmatched_statuses(section.status_values, seen)
        frame["status"] = _translate_statuses(frame["status"], section.status_values, caught)
    frame.attrs[EXCLUDED_ATTR] = tuple(excluded)
    frame.attrs[NEAR_MISS_ATTR] = _contract_names_spelt_otherwise(table_name, kept, renames)
    frame.attrs[MAPPED_ATTR] = dict(section.columns)
    frame.attrs[WILDCARD_ATTR] = caught
    return frame


def _folded_name(name: str) -> str:
    return "_".join(name.casefold().replace("-", " ").replace("_", " ").split())


def _contract_names_spelt_otherwise(table_name: str, kept: list[Any], renames: dict[str, str]) -> dict[str, str]:
    """Columns the file has under a contract name written otherwise ("Amount", " amount ", "Client ID") while
    the contract's own is neither there nor mapped, with that name. As the contract says, they are extra
    features; training says so (a CRM export with capitalised headers had trained with no amount and no client
    history, AUC 0.829 -> 0.750, without a word), and they stay extras: refused, a model trained with one could
    not score its own export."""
    have = {str(c) for c in kept if c not in renames} | set(renames.values())
    found: dict[str, str] = {}
    for column in TABLES[table_name].columns:
        if column.name in have:
            continue
        for source in (str(c) for c in kept if c not in renames and str(c) != column.name):
            if _folded_name(source) == column.name:
                found[source] = column.name
    return found


def _likely_typos(table_name: str, section: TableMapping, present: list[str]) -> list[Problem]:
    """Mapped or excluded source columns the file lacks while it has one of a very similar name.

    A mapped column may be absent for good reason (one mapping serves training exports and scoring ones,
    which carry no status), so absence alone is fine. But "Solution Typ" beside a "Solution Type" column is a
    typo that would silently leave the product unmapped (trained as an unknown extra column) or an
    excluded column in the model.
    """
    canonical = {c.name for c in TABLES[table_name].columns}
    # (fields within the table: a problem's table prefixes them when it is shown, "deals.columns.product")
    wanted = [(f"columns.{name}", source) for name, source in section.columns.items()]
    wanted += [("exclude", source) for source in section.exclude]
    problems = []
    for field_name, source in wanted:
        if source in present:
            continue
        close = _typo_of(source, present, section, canonical)
        if close is not None:
            problems.append(Problem(field_name, f"a column of the {table_name} file (did you mean '{close}'?)",
                                    f"'{source}'", table=table_name))
    return problems


def _typo_of(source: str, present: list[str], section: TableMapping, canonical: set[str]) -> str | None:
    """The present column `source` is a likely typo of, if any. Not a canonical name or another mapped source:
    the file already has that column under the contract's name, or it is mapped in its own right."""
    # Case and spacing first ("deal cost" for "Deal Cost"): difflib compares characters as they are, and
    # a name differing only in case fell below its similarity cutoff (an ops review).
    folded = [name for name in present if _folded_name(name) == _folded_name(source)]
    close = folded[:1] or difflib.get_close_matches(source, present, n=1, cutoff=TYPO_SIMILARITY)
    return close[0] if close and close[0] not in canonical and close[0] not in section.columns.values() else None


def _unmatched(table_name: str, section: TableMapping, present: list[str]) -> list[Problem]:
    """Optional mapped columns a training file lacks, with no similar name (those are `_likely_typos`) and not
    under their canonical name either.

    A scoring export may lack some (no status yet); a training export that lacks a mapped column means a
    mapping that no longer fits the export: `amount: "Nope"` trained a model with no amount and no value
    model, and the export's own amount column became an anonymous extra feature, without a word.
    """
    # Required columns are left to validation, which names them as the mapping does among the others it lacks.
    required = {c.name for c in TABLES[table_name].columns if c.required != "no"}
    problems = []
    for name, source in section.columns.items():
        if source in present or name in present or name in required or difflib.get_close_matches(
                source, present, n=1, cutoff=TYPO_SIMILARITY):
            continue
        shown = ", ".join(f"'{c}'" for c in present[:_COLUMNS_SHOWN]) + (", ..." if len(present) > _COLUMNS_SHOWN
                                                                         else "")
        problems.append(Problem(f"columns.{name}",
                                f"a column of the {table_name} file, which has {shown}", f"'{source}'",
                                table=table_name))
    # An excluded column the training file lacks keeps out nothing: `exclude: [competitor_name]` beside a
    # `competitor` column left that column in the model, where `--exclude competitor_name` is refused.
    canonical = {c.name for c in TABLES[table_name].columns}
    for source in section.exclude:
        if source in present or _typo_of(source, present, section, canonical) is not None:
            continue  # present, or a likely typo (`_likely_typos` names it)
        close = difflib.get_close_matches(source, present, n=1)
        hint = (f"did you mean '{close[0]}'?" if close else "which has " + ", ".join(
            f"'{c}'" for c in present[:_COLUMNS_SHOWN]) + (", ..." if len(present) > _COLUMNS_SHOWN else ""))
        problems.append(Problem("exclude", f"a column of the {table_name} file ({hint})",
                                f"'{source}'", table=table_name))
    return problems


_COLUMNS_SHOWN = 12


def _translate_statuses(values: pd.Series, status_values: dict[str, tuple[str, ...]],
                        caught: dict[int, str]) -> pd.Series:
    """The canonical statuses; `caught` gets the position and export value of each row the wildcard decided."""
    lookup = {_status_key(v): s for s, listed in status_values.items() for v in listed if v != WILDCARD}
    other = next((status for status, listed in status_values.items() if WILDCARD in listed), None)

    def translate(row: int, value: object) -> object:
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            return value  # missing stays missing
        text = status_text(value)
        key = _status_key(text)
        if key in lookup:  # listed: what the mapping says, even for a word like "None"
            return lookup[key]
        if key in NULL_MARKERS:
            return None  # "NULL" is no status: not one the wildcard decides
        if other is not None and key:
            caught[row] = text.strip()
            return other
        return value

    translated = [translate(row, v) for row, v in enumerate(values.astype(object).tolist())]
    return pd.Series(translated, index=values.index, dtype=object)


def _unmatched_statuses(status_values: dict[str, tuple[str, ...]], seen: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Per status, the values `status_values` lists that no row of the export has ("Closed Wn" for "Closed
    Won", made lost by "*": 0 wins, and training refused with no pointer to the mapping; or "Wn" beside the
    canonical "Won", accepted anyway, the typo unseen)."""
    keys = {_status_key(value) for value in seen}
    # A YAML boolean (won: [Yes]) is listed as each word YAML reads so: matched when the export has any of them,
    # named once (by its first word) when it has none.
    group_of = {word: words for words in _BOOLEAN_WORDS.values() for word in words}
    out: dict[str, tuple[str, ...]] = {}
    for status, listed in status_values.items():
        missing: list[str] = []
        for value in listed:
            group = group_of.get(_status_key(value), (_status_key(value),))
            shown = value if len(group) == 1 else "/".join(group)  # YAML's Yes is any of true/yes/on
            if value != WILDCARD and not keys & set(group) and shown not in missing:
                missing.append(shown)
        if missing:
            out[status] = tuple(missing)
    return out


def _status_key(value: str) -> str:
    return value.strip().casefold()


# YAML reads an unquoted Yes, No, On, Off, True or False as a boolean: `won: [Yes]` arrives as True. Such a
# listed value matches every word YAML reads as it (and a boolean status column's true/false).
_BOOLEAN_WORDS = {True: ("true", "yes", "on"), False: ("false", "no", "off")}


def _spellings(value: object) -> tuple[str, ...]:
    return _BOOLEAN_WORDS[value] if isinstance(value, bool) else (status_text(value),)


def status_text(value: object) -> str:
    """A status value as text: 1 and 1.0 as "1", True as "true" (a status stored as a number or boolean)."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _is_date_format(value: object) -> bool:
    """True when the format writes and reads back a whole date (so it holds day, month and year)."""
    if not isinstance(value, str) or "%" not in value:
        return False
    # With a zone, so that a format holding %z (or %Z) writes one it can read back: a naive date writes it empty.
    sample = datetime(2024, 3, 31, tzinfo=UTC)
    try:
        return datetime.strptime(sample.strftime(value), value).date() == sample.date()
    except ValueError:
        return False


def _kind_of(value: object) -> str:
    if value is None:
        return "nothing"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
