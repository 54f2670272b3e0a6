"""Deal records (one mapping or object per deal, as an API or a queue hands them over) as scorer columns.

The single-deal path must not pay for a pandas DataFrame, so this builds the plain numpy arrays the
feature builder takes directly. It mirrors the offline path `frame_columns(attach_clients(deals, clients))`
value for value: dates become day numbers, text is trimmed (empty means missing), a nested client's
segment attributes and first-contract date stand in for a clients table, and its history fields become
the per-deal overrides (`won_deals`, `won_amount`, `first_won_day`, `last_won_day`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import date, datetime
from itertools import chain
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

from model.contract import CLIENT_HISTORY, DEALS, Kind, number_text
from model.errors import ContractViolation, Problem, counted
from model.features import CLIENT_ATTRIBUTES, HISTORY_OVERRIDE_COLUMNS

__all__ = ["RESERVED_NAMES", "date_or_none", "day_number", "deal_columns", "history_problems", "is_plain_number",
           "iso_text", "missing_history", "parse_date", "text_value", "unused_extra_fields"]

Columns = dict[str, npt.NDArray[Any]]

CREATED_AT_SENT = "__created_at_sent"  # private (as "__" names are): False where created_at was not sent
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# Columns the feature builder derives or takes with a meaning of its own: a deal's extra field may not
# carry one of these names, or it would silently become (say) client history or the deal's date.
RESERVED_NAMES: frozenset[str] = frozenset(
    {"client", "created_day", "closed_day", "client_since", "client_since_day", *HISTORY_OVERRIDE_COLUMNS,
     *CLIENT_HISTORY.names}
)
_DEAL_DATES = {c.name: c.name.replace("_at", "_day") for c in DEALS.columns if c.kind is Kind.DATE}
_DEAL_NUMBERS = tuple(c.name for c in DEALS.columns if c.kind is Kind.NUMBER)
_DEAL_TEXT = tuple(c.name for c in DEALS.columns if c.kind in (Kind.TEXT, Kind.STATUS)
                   or (c.kind is Kind.ID and c.name not in ("deal_id", "client_id")))
_HISTORY_DAYS = {"first_won_at": "first_won_day", "last_won_at": "last_won_day"}
_HISTORY_NUMBERS = tuple(c.name for c in CLIENT_HISTORY.columns if c.kind is Kind.NUMBER)
_KNOWN_DEAL_FIELDS = frozenset({*DEALS.names, "client"})
# The columns deal_columns makes of contract fields; any other is a deal's extra field, kept under its name.
_CONTRACT_COLUMNS = frozenset({"deal_id", "client_id", *_DEAL_DATES.values(), *_DEAL_NUMBERS, *_DEAL_TEXT,
                               *CLIENT_ATTRIBUTES, "client_since_day", *_HISTORY_NUMBERS, *_HISTORY_DAYS.values()})


def unused_extra_fields(columns: Mapping[str, object], inputs: Collection[str]) -> list[str]:
    """The deals' extra fields (not contract fields) that are none of the model's `inputs`, sorted: ignored
    when scored. A misspelt "amout" was dropped without a word while the value fell back to the model's."""
    return sorted(name for name in columns
                  if name not in _CONTRACT_COLUMNS and not name.startswith("__") and name not in inputs)


def parse_date(value: object) -> date:
    """An ISO 8601 date ("2024-03-31") or date-time (its own wall-clock date, zone dropped); a date written year
    first with another mark or without leading zeros, and a few such date-times, too (`iso_text`).

    Raises ValueError for anything else. Files' dates are read through it too (model.validation), so a file and the
    API answer the same text alike.
    """
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise ValueError("not a date")
    text = value.strip()
    try:
        return _iso_date(text)
    except ValueError:
        written = iso_text(text)  # only when ISO 8601 fails: its rewrites cost a date-time 8 us (timeit)
        if written == text:
            raise
        return _iso_date(written)


def _iso_date(text: str) -> date:
    if not _CALENDAR_DATE.match(text):
        # Python also reads week dates (2025-W48-1) and ordinal dates (2025-328), which pandas' ISO 8601 parser
        # refuses, as files did: no calendar date is read from them.
        raise ValueError("not a calendar date")
    if len(text) <= 10:
        return date.fromisoformat(text)
    return datetime.fromisoformat(text).date()


_CALENDAR_DATE = re.compile(r"\d{4}-?\d{2}-?\d{2}(?:$|[Tt ])")
# Forms pandas' ISO 8601 parser reads and Python's refuses. Files were read by pandas, the API by Python: the same deal
# trained and scored in a file with "2025/03/01" or "2025-3-1" and was a 422 over HTTP. Both now read dates through
# parse_date, which first writes these as ISO 8601 (iso_text): a calendar date year first with one mark throughout
# other than the hyphen, or without leading zeros ("2025/03/01", "2025.3.1", "2025-3-1"; day first, "01/03/2025",
# stays refused on both, its order unknown); and in a date-time, a time without leading zeros ("T9:05"), a fraction
# before a zone set off by a space ("10:00:00,5 +02:00") and a one-digit UTC offset ("+2").
# ASCII digits only: a Unicode digit ("\u0663", an Arabic-Indic 3) matches \d, and int() of it is 3.
_YEAR_FIRST_DATE = re.compile(r"^(\d{4})([-/. \\])(\d{1,2})\2(\d{1,2})(?=$|[Tt ])", re.ASCII)
_TIMED = re.compile(r"^(\d{4}-?\d{2}-?\d{2}[Tt ])(\d{1,2})(?::(\d{1,2})(?::(\d{1,2}))?)?([.,]\d+)?\s*"
                    r"([Zz]|[+-]\d{1,2}(?::?\d{2}){0,2})?$", re.ASCII)
_COMPACT_SHORT_OFFSET = re.compile(r"^(\d{4}-?\d{2}-?\d{2}[Tt ]\d{3,6}(?:[.,]\d+)?)\s*([+-])(\d)$", re.ASCII)


def iso_text(text: str) -> str:
    """`text` (trimmed) with the forms above written as ISO 8601; anything else unchanged."""
    found = _YEAR_FIRST_DATE.match(text)
    if found is not None:
        text = _iso_calendar_date(found) + text[found.end():]
    if len(text) <= 10:
        return text
    timed = _TIMED.match(text)
    if timed is None:  # a compact time ("T104154+2") is only given its offset's two digits
        return _COMPACT_SHORT_OFFSET.sub(r"\1\g<2>0\3", text)
    day, hour, minute, second, fraction, zone = timed.groups()
    written = day + "".join(f"{part}{int(value):02d}" for part, value in (("", hour), (":", minute), (":", second))
                            if value is not None)
    if zone is not None and zone[0] in "+-" and (len(zone) == 2 or not zone[2].isdigit()):
        zone = f"{zone[0]}0{zone[1:]}"  # "+2", "+2:00" as "+02", "+02:00"
    return written + (fraction or "") + (zone or "")


def _iso_calendar_date(found: re.Match[str]) -> str:
    """A _YEAR_FIRST_DATE match as 2025-03-01."""
    year, _mark, month, day = found.groups()
    return f"{year}-{int(month):02d}-{int(day):02d}"


def day_number(value: object) -> float:
    """Days since 1970-01-01 as the feature builder counts them; NaN for a missing value."""
    if value is None:
        return math.nan
    return float(parse_date(value).toordinal() - _EPOCH_ORDINAL)


def text_value(value: object) -> str | None:
    """Text as the offline validation types it: trimmed, empty is missing, an integral number without ".0"."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return None
        if value.is_integer():
            return str(int(value))
    return str(value)


def _fields(record: object) -> Iterable[tuple[str, Any]]:
    """A record's (name, value) pairs: a mapping's items; a pydantic-style object's attributes, then its extras.

    Names starting with "__" (pydantic's own bookkeeping in the attributes) are left out by the caller.
    """
    if isinstance(record, Mapping):
        return record.items()
    extra = getattr(record, "__pydantic_extra__", None)
    return chain(vars(record).items(), extra.items()) if extra else vars(record).items()


def _gather(record: object, i: int, n: int, into: dict[str, list[Any]]) -> None:
    """Each field `record` has (not None) into `into[name][i]`; a name's list of n is made when first seen."""
    for name, value in _fields(record):
        if value is None or name.startswith("__"):
            continue
        column = into.get(name)
        if column is None:  # not setdefault(name, [None] * n): that builds the list for every value
            column = into[name] = [None] * n
        column[i] = value


def _number(value: object) -> float | None:
    """A finite float, or None when the value is not one (text that reads as a number counts)."""
    if value is None or isinstance(value, bool):
        return None if value is None else math.nan
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return math.nan
    else:
        return math.nan
    return number if math.isfinite(number) else math.nan


def deal_columns(deals: Sequence[object], *, kinds: Mapping[str, str] | None = None,
                 today: date | None = None) -> Columns:
    """The scorer's columns for `deals` (mappings or objects), in input order.

    `kinds` names how a non-contract column is typed ("number" or "text"); a model passes its own
    feature kinds so a column is typed as it was in training. Other extra columns are numbers when every
    value present is a number, text otherwise. A deal without `created_at` is scored as of `today`
    (when given). Problems (a number column with text in it, a missing date) raise ContractViolation
    naming `deals[i].field`.
    """
    n = len(deals)
    kinds = kinds or {}
    problems: list[Problem] = []
    # One pass over the deals gathers every value present, column by column (None where absent): the
    # single-deal path then pays per column present, not per column the contract could carry.
    present: dict[str, list[Any]] = {}
    for i, deal in enumerate(deals):
        _gather(deal, i, n, present)
    none: list[Any] = [None] * n
    nested = present.pop("client", none)
    has_client = [client is not None for client in nested]
    client_values: dict[str, list[Any]] = {}
    for i, client in enumerate(nested):
        if client is not None:
            _gather(client, i, n, client_values)

    columns: Columns = {"deal_id": _text_column(present.get("deal_id", none))}
    own_ids, client_ids = present.get("client_id", none), client_values.get("client_id", none)
    columns["client_id"] = np.array([text_value(own if own is not None else theirs)
                                     for own, theirs in zip(own_ids, client_ids, strict=True)], dtype=object)
    for i, (own, theirs) in enumerate(zip(own_ids, client_ids, strict=True)):
        if own is not None and theirs is not None and text_value(own) != text_value(theirs):
            problems.append(Problem(f"deals[{i}].client.client_id", f"the deal's client_id '{str(own)[:40]}'",
                                    f"'{str(theirs)[:40]}'"))

    for name, day_name in _DEAL_DATES.items():
        if name == "created_at":
            days = _day_column(present.get(name, none))
            missing = np.isnan(days)
            if missing.any():
                if today is None:
                    problems.extend(Problem(f"deals[{i}].created_at", "a date like 2024-03-31 (ISO 8601)", "nothing")
                                    for i in np.flatnonzero(missing))
                else:
                    days[missing] = float(today.toordinal() - _EPOCH_ORDINAL)
                    # Which days were sent: the score log must not record today as the deal's created_at (a
                    # deal re-scored nightly without one had its outcome refused as closed before it was created).
                    columns[CREATED_AT_SENT] = ~missing
            columns[day_name] = days
        elif name in present:
            columns[day_name] = _day_column(present[name])
    for name in _DEAL_NUMBERS:
        columns[name] = _number_column(name, present.get(name, none), problems)
    for name in _DEAL_TEXT:
        if name in present:
            columns[name] = _text_column(present[name])

    from_client: dict[str, list[bool]] = {}  # per client attribute: which deals' values came in `client`
    if any(has_client):
        for name in CLIENT_ATTRIBUTES:
            # The client's value when it gives one, else a deal-level column of the same name.
            theirs, own = client_values.get(name, none), present.get(name, none)
            from_client[name] = [t is not None for t in theirs]
            columns[name] = _text_column([t if t is not None else o for t, o in zip(theirs, own, strict=True)])
        columns["client_since_day"] = _day_column(client_values.get("since", none))
        if any(name in client_values for name in CLIENT_HISTORY.names):
            for name in _HISTORY_NUMBERS:
                columns[name] = np.array([_plain(v) for v in client_values.get(name, none)], dtype=np.float64)
            for name, day_name in _HISTORY_DAYS.items():
                columns[day_name] = _day_column(client_values.get(name, none))
    else:
        for name in CLIENT_ATTRIBUTES:
            if name in present:
                columns[name] = _text_column(present[name])

    for name, values in present.items():
        if name in _KNOWN_DEAL_FIELDS or name in CLIENT_ATTRIBUTES:
            continue
        kind = kinds.get(name) or ("number" if all(v is None or is_plain_number(v) for v in values) else "text")
        columns[name] = _number_column(name, values, problems) if kind == "number" else _text_column(values)

    for name, kind in kinds.items():  # a model's number column sent as a client attribute
        if kind == "number" and name in columns and columns[name].dtype == object:
            columns[name] = _number_column(name, list(columns[name]), problems,
                                           _field_path(name, from_client.get(name, [False] * n)))
    if problems:
        raise ContractViolation(f"{counted(len(problems), 'problem')} in {counted(n, 'deal')}", problems)
    return columns


HISTORY_WHOLE = "sent history replaces the model's history of the client as a whole"


def _typed_value_text(value: object) -> str:
    """A file's typed value as history_problems quotes it: a count of 1 as "1", not "1.0"."""
    return number_text(value) if isinstance(value, float) else repr(value)


def history_problems(won_deals: object, won_amount: object, first_won: object, last_won: object,
                     created: date | None, created_sent: bool,
                     show: Callable[[object], str] | None = None,
                     reference: str = "the deal's created_at") -> list[tuple[str, str, str]]:
    """(field, expected, got) for each way a client history sent with a deal is wrong, for the service and
    `dealscore score` alike. It must describe the client as of the deal's creation (`created`; today when
    the deal has none): the features are as of that day, as in training, and a win dated later would read as
    a negative "days since the last win". Its parts must agree with each other, and it must be whole
    (`missing_history`). `show` renders a number as the caller's errors quote values."""
    show = show or _typed_value_text
    problems: list[tuple[str, str, str]] = []
    for name in missing_history(won_deals, won_amount, first_won, last_won):
        problems.append((name, "the number of won deals whenever won_amount, first_won_at or last_won_at is sent "
                               "(sent history replaces the model's history of the client)" if name == "won_deals"
                         else f"a value: won_deals is {show(won_deals)}, and {HISTORY_WHOLE}", "nothing"))
    won = _finite(won_deals)
    first, last = date_or_none(first_won), date_or_none(last_won)
    if won is not None and won != int(won):
        problems.append(("won_deals", "a whole number of won deals", show(won_deals)))
    for name, day in (("first_won_at", first), ("last_won_at", last)):
        if day is not None and created is not None and day > created:
            if reference == "today":  # a client without a deal (/v1/gaps): its history as of now
                expected = f"a date on or before today (at most {created.isoformat()}, for a sender a time zone ahead)"
            else:
                expected = (f"a date on or before {reference} ({created.isoformat()}"
                            f"{'' if created_sent else ', today: none was sent'}): the client's history as of the "
                            "deal's creation")
            problems.append((name, expected, f"'{day.isoformat()}'"))
    if first is not None and last is not None and first > last:
        problems.append(("first_won_at", f"a date on or before last_won_at ({last.isoformat()})",
                         f"'{first.isoformat()}'"))
    has_won = (first is not None or last is not None
               or (isinstance(won_amount, int | float) and not isinstance(won_amount, bool) and won_amount > 0))
    if won == 0 and has_won:
        problems.append(("won_deals", "at least 1, as won_amount, first_won_at or last_won_at say the client "
                                      "has won", show(won_deals)))
    if won == 1 and first is not None and last is not None and first != last:
        problems.append(("last_won_at", f"the day of first_won_at ({first.isoformat()}): won_deals is 1",
                         f"'{last.isoformat()}'"))
    return problems


def _finite(value: object) -> float | None:
    """A sent number as a float; None for anything else, NaN, infinities and integers too large for a float (a
    310-digit count made float() raise, and the service answer 500: the schema refuses such a number, and the
    batch checks still read it)."""
    if not is_plain_number(value):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def date_or_none(value: object) -> date | None:
    """A date from a date, a datetime (its own calendar day) or ISO text; None when missing or unreadable
    (the schema or the table check reports unreadable dates on their own)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    try:
        return parse_date(value)
    except ValueError:
        return None


def missing_history(won_deals: object, won_amount: object, first_won: object, last_won: object) -> list[str]:
    """The client history fields a sent history lacks (None/NaN is not sent). Sent history replaces the
    model's wins of the client as a whole (model/features.py), so it needs its count, and with wins their
    money and dates: a part of it would be mixed with the model's. Nothing sent at all is no history."""
    def sent(value: object) -> bool:
        return value is not None and not (isinstance(value, float) and value != value)

    given = {"won_deals": won_deals, "won_amount": won_amount, "first_won_at": first_won, "last_won_at": last_won}
    if not any(sent(v) for v in given.values()):
        return []
    if not sent(won_deals):
        return ["won_deals"]
    wins = won_deals if is_plain_number(won_deals) else 0
    if isinstance(wins, int | float) and wins >= 1:
        return [name for name in ("won_amount", "first_won_at", "last_won_at") if not sent(given[name])]
    return []


def is_plain_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text_column(values: Sequence[object]) -> npt.NDArray[np.object_]:
    return np.array([text_value(v) for v in values], dtype=object)


def _day_column(values: Sequence[object]) -> npt.NDArray[np.float64]:
    return np.array([day_number(v) for v in values], dtype=np.float64)


def _field_path(name: str, in_client: Sequence[bool]) -> Callable[[int], str]:
    """Where deal i's value of `name` came from: its client object, or the deal itself."""
    return lambda i: f"deals[{i}].client.{name}" if in_client[i] else f"deals[{i}].{name}"


def _number_column(name: str, values: Sequence[object], problems: list[Problem],
                   path: Callable[[int], str] | None = None) -> npt.NDArray[np.float64]:
    """The values as numbers; a value that is none is a problem at `path(i)` (default: the deal's own field)."""
    if all(type(v) is float or v is None for v in values):  # validated input: the quick way
        quick = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        if not np.isinf(quick).any():
            return quick
    out = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        if value is None:
            continue
        number = _number(value)
        if number is None or number != number:
            shown = str(value)
            shown = shown[:40] + "..." if len(shown) > 40 else shown
            problems.append(Problem(path(i) if path is not None else f"deals[{i}].{name}", "a finite number",
                                    f"'{shown}'"))
        else:
            out[i] = number
    return out


def _plain(value: object) -> float:
    number = _number(value)
    return math.nan if number is None else number
