"""The data contract: canonical tables, their columns, types and allowed values, defined once.

Readers, validation, feature building, the API schemas and the docs all derive from this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Literal


class Kind(StrEnum):
    ID = "id"  # identifier, kept as text
    TEXT = "text"  # categorical text
    DATE = "date"  # ISO 8601 date (or via the mapping file's date_format)
    NUMBER = "number"  # finite real number
    STATUS = "status"  # one of STATUS_VALUES
    # A number when every value present in the column is one (a count of employees), text otherwise (a
    # size band): typed as an extra column is, or as the model's features say when scoring with a model.
    TEXT_OR_NUMBER = "text_or_number"


Required = Literal["always", "training", "no"]

STATUS_VALUES: tuple[str, ...] = ("won", "lost", "open")
CLOSED_STATUSES: tuple[str, ...] = ("won", "lost")

# Text longer than this is refused: no CRM id or category name is this long, and a 1 MB "name"
# is an attack or a bug, not data.
MAX_TEXT_LENGTH = 200
# Text sent to the service never holds NUL (U+0000): no CRM value means it, and PostgreSQL cannot store it
# (the score log, outcomes and judgements would refuse the row). A regular expression for the API schemas.
NO_NUL_PATTERN = "^[^\\x00]*$"

# "Today" in the sender's time zone may be tomorrow in the checker's (UTC+1 to +14): a deal opened today
# there is dated up to one day ahead. The API, the outcome store and file validation all allow it, so a deal
# the service logged is never refused when the feedback database becomes training data.
DATE_SLACK = timedelta(days=1)


def utc_today() -> date:
    """Today as every part of dealscore reads it: the UTC date (a deal sent without created_at is scored as of it
    by the service and by `dealscore score` alike; the machine's local date made them a day apart near midnight)."""
    return datetime.now(UTC).date()


def utc_today_number() -> float:
    """utc_today as a day number (days since 1970-01-01), as dates are held in columns (numpy's "today" is the
    machine's local date)."""
    return float((utc_today() - date(1970, 1, 1)).days)

# The most money one value may hold: a quadrillion, in any currency far beyond a deal or a year's income.
# Amounts are summed (a client's won money, the realised value per grade); two near the float limit made
# such a sum infinite, which the service showed as an unknown client_won_amount that still pushed p_win.
MAX_MONEY = 1e15


def number_text(value: float) -> str:
    """A number as a message quotes it: a whole one as the integer it is (a JSON 0 arrives as the float 0.0 in a
    number field, and read "0.0" in an error), one of 1e16 or more, or a fraction, as Python writes it."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else repr(value)


def number_range(minimum: float | None, maximum: float | None) -> str:
    """How a number's accepted range reads in a message (whole bounds written out, as the API writes them)."""
    if minimum is None:
        assert maximum is not None, "a range needs a bound"
        return f"a number <= {number_text(maximum)}"
    return (f"a number >= {number_text(minimum)}" if maximum is None
            else f"a number from {number_text(minimum)} to {number_text(maximum)}")


def latest_date_text(today: date) -> str:
    """How the latest accepted date reads in a message."""
    return f"today (at most {(today + DATE_SLACK).isoformat()}, for a sender a time zone ahead)"


# What exports write for "no value" (compared ignoring case): missing in number, date, id, status and product
# cells. Other text cells keep them as written: "NA" is a region (North America) or a country code (Namibia).
NULL_MARKERS = frozenset({"nan", "null", "none", "na", "n/a", "#n/a"})

# The dates a table may carry, first to last. The as-of history counts days from 1970-01-01, so a deal
# dated earlier has no meaningful history (the API refuses it too); a client's first contract or a
# holding's start may go back further, but a date before 1900 is a placeholder or a typo. Nothing may be
# dated after the day of validation: "2999-12-31" means "unknown", not a date.
EARLIEST_DATE = date(1900, 1, 1)
EARLIEST_DEAL_DATE = date(1970, 1, 1)

# Columns required for training only because fitting needs them: an open deal (scored, not trained on)
# may leave them empty in a training set too. It is then set aside, as it cannot be placed in time.
OPEN_DEALS_MAY_LACK: frozenset[str] = frozenset({"created_at"})


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: Required
    description: str
    minimum: float | None = None
    maximum: float | None = None  # numbers only (money: MAX_MONEY)
    earliest: date = EARLIEST_DATE  # dates only: the first accepted (the last is the day of validation)


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def required_names(self, for_training: bool) -> tuple[str, ...]:
        wanted = ("always", "training") if for_training else ("always",)
        return tuple(c.name for c in self.columns if c.required in wanted)


DEALS = Table(
    name="deals",
    key=("deal_id",),
    columns=(
        Column("deal_id", Kind.ID, "always", "unique id of the deal"),
        Column("client_id", Kind.ID, "no", "links to clients and holdings; without it history features are off"),
        Column("created_at", Kind.DATE, "training", "when the deal was opened; history is taken as of this date",
               earliest=EARLIEST_DEAL_DATE),
        Column("closed_at", Kind.DATE, "no", "when it was won or lost", earliest=EARLIEST_DEAL_DATE),
        Column("status", Kind.STATUS, "training", "won, lost or open (open deals are scored, not trained on)"),
        Column("amount", Kind.NUMBER, "no", "deal value if won (money)", minimum=0.0, maximum=MAX_MONEY),
        Column("product", Kind.TEXT, "no", "what is being sold"),
        Column("manager", Kind.TEXT, "no", "owner; excluded from features unless enabled"),
        Column("effort_hours", Kind.NUMBER, "no", "expected manager hours; enables value per hour and class D",
               minimum=0.0),
    ),
)

CLIENTS = Table(
    name="clients",
    key=("client_id",),
    columns=(
        Column("client_id", Kind.ID, "always", "unique id of the client"),
        Column("industry", Kind.TEXT, "no", "segment attribute"),
        Column("size", Kind.TEXT_OR_NUMBER, "no", "segment attribute (a size band, or a number of employees)"),
        Column("region", Kind.TEXT, "no", "segment attribute"),
        Column("since", Kind.DATE, "no", "date of the first contract"),
    ),
)

HOLDINGS = Table(
    name="holdings",
    key=("client_id", "product"),
    columns=(
        Column("client_id", Kind.ID, "always", "the client holding the product"),
        Column("product", Kind.TEXT, "always", "a product the client already has"),
        Column("since", Kind.DATE, "no", "when the client took it"),
        Column("revenue", Kind.NUMBER, "no", "income from this holding", minimum=0.0, maximum=MAX_MONEY),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in (DEALS, CLIENTS, HOLDINGS)}

# Client history a CRM may send with a deal at scoring time instead of relying on the artifact's.
CLIENT_HISTORY = Table(
    name="client_history",
    key=("client_id",),
    columns=(
        Column("won_deals", Kind.NUMBER, "no", "number of won deals so far", minimum=0.0),
        Column("won_amount", Kind.NUMBER, "no", "money of won deals so far", minimum=0.0, maximum=MAX_MONEY),
        Column("first_won_at", Kind.DATE, "no", "date of the first won deal"),
        Column("last_won_at", Kind.DATE, "no", "date of the latest won deal"),
    ),
)

# Columns of the deals table that never become model features: identifiers, the target, the
# outcome date (known only after the fact) and the owner (reporting only unless enabled).
NON_FEATURE_DEAL_COLUMNS: frozenset[str] = frozenset({"deal_id", "client_id", "status", "closed_at", "created_at"})
OPT_IN_DEAL_COLUMNS: frozenset[str] = frozenset({"manager"})
# A deal's client history as a CRM may send it when scoring (API: the deal's client; a deals file: these
# columns). A deals column of such a name means that there, so it is never a feature to train on.
SENT_HISTORY_COLUMNS: tuple[str, ...] = ("won_deals", "won_amount", "first_won_at", "last_won_at")
