"""What training takes from the data before fitting: the columns the options name, and the empty ones.

A column an option names must exist (a typo in --exclude would otherwise leave the column in the model
unnoticed), and an optional column with no value in any closed deal carries nothing to learn from: it is
trained on as if absent, and the training output says so.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from model.contract import NON_FEATURE_DEAL_COLUMNS
from model.errors import ContractViolation, Problem, counted
from model.features import CALENDAR_MONTH, CLIENT_ATTRIBUTES

CLOSED = ("won", "lost")
COLUMNS_SHOWN = 15


def check_named_columns(deals: pd.DataFrame, exclude: Iterable[str], keep: Iterable[str],
                        dropped_by_mapping: Iterable[str] = ()) -> None:
    """Refuse names in `exclude` or `keep_columns` that are no column of the (joined) deals.

    Any column may be named (deal_id changes nothing and training says so, `exclusion_notes`; one the
    mapping file already dropped changes nothing either); the message lists the ones that can be features,
    and the closest name when one looks like a typo."""
    present = [str(c) for c in deals.columns]
    known = {*present, *dropped_by_mapping}
    problems = [_unknown(option, name, present)
                for option, names in (("exclude", exclude), ("keep_columns", keep))
                for name in dict.fromkeys(names)
                if name not in known and not (option == "exclude" and name == CALENDAR_MONTH)]
    if problems:
        unknown = ", ".join(p.got for p in problems)
        raise ContractViolation(f"training options name columns the data does not have: {unknown}", problems)


# Deal columns that are never features, and why: excluding one changes nothing, which training says (it was
# silent, so `--exclude client_id` looked like it dropped the client history it did not drop; now it does).
NEVER_FEATURES = {
    "deal_id": "the deal's key",
    "status": "the outcome the model learns",
    "closed_at": "known only once a deal has closed",
    "created_at": "the day every as-of feature is counted to; --exclude month drops the calendar month",
}
EXCLUDED_WITH_A_MEANING = {
    "client_id": "trained without client history features, as data without a client id (the client's "
                 "attributes still join by it)",
    "client_since": "trained without the client's tenure",
}


def exclusion_notes(exclude: Iterable[str]) -> list[str]:
    """What excluding a column that is no plain feature does: nothing (a deal's key, date or outcome), or what
    it turns off (the client id: its history features; client_since: the tenure)."""
    named = list(dict.fromkeys(exclude))
    notes = [f"--exclude {name}: {EXCLUDED_WITH_A_MEANING[name]}" for name in named if name in EXCLUDED_WITH_A_MEANING]
    never = [name for name in named if name in NEVER_FEATURES]
    if never:
        notes.append(f"--exclude {', '.join(never)}: never a feature, nothing excluded ("
                     + "; ".join(f"{name}: {NEVER_FEATURES[name]}" for name in never) + ")")
    return notes


def _unknown(option: str, name: str, present: Sequence[str]) -> Problem:
    closest = difflib.get_close_matches(name, present, n=1)
    if closest:
        expected = f"a column of the deals or a client attribute (did you mean '{closest[0]}'?)"
    else:
        candidates = [c for c in present if c not in NON_FEATURE_DEAL_COLUMNS and c != "client_since"]
        more = len(candidates) - COLUMNS_SHOWN
        listed = ", ".join(candidates[:COLUMNS_SHOWN]) + (f" and {more} more" if more > 0 else "")
        expected = f"a column of the deals or a client attribute ({listed or 'none'})"
    if name in CLIENT_ATTRIBUTES:
        expected += f"; {name} comes from the clients table, and none was given or it has no {name} column"
    flag = "--exclude" if option == "exclude" else "--keep"
    return Problem(f"{option} ({flag})", expected, f"'{name}'")


def empty_columns(deals: pd.DataFrame, candidates: Iterable[str]) -> tuple[str, ...]:
    """The candidate feature columns with no value in any won or lost deal.

    Such a column (an optional one the CRM never fills, a client attribute of a blank clients table) has
    nothing to learn from, and an all-missing column breaks fitting steps that fill gaps with a median."""
    closed = deals[deals["status"].isin(CLOSED)]
    return tuple(c for c in candidates if c in closed.columns and not closed[c].notna().any())


# Money as spreadsheets write it: a currency sign, digits grouped in thousands by "," (or a space or "'"), a point
# for decimals: "$12,345.67", "12 345.5", "1'000". Plain digits with a sign are not this (they parse as they are).
_FORMATTED_NUMBER = re.compile(r"^\s*[-+]?\s*[$€£¥]?\s*\d{1,3}(?:[,\s'\u00a0]\d{3})+(?:\.\d+)?\s*[$€£¥]?\s*$"
                               r"|^\s*[-+]?\s*[$€£¥]\s*\d+(?:\.\d+)?\s*$|^\s*[-+]?\d+(?:\.\d+)?\s*[$€£¥]\s*$")


@dataclass(frozen=True)
class TextNumbers:
    """A text column whose values are nearly all numbers, plain or formatted (thousands separators, currency)."""

    column: str
    present: int  # values present
    formatted: int  # numbers as spreadsheets format them ("12,345.67", "$300")
    odd: int  # values that are no number at all ("-", "n/a")
    first_formatted: str | None
    first_odd: str | None

    def note(self) -> str:
        parts, fixes = [], []
        if self.formatted:
            parts.append(f"{self.formatted:,} of its {self.present:,} values are numbers written with thousands "
                         f"separators or a currency sign (first: {self.first_formatted!r})")
            fixes.append("write numbers as plain digits")
        if self.odd:
            parts.append(f"{self.odd:,} of its {self.present:,} values are not numbers (first: {self.first_odd!r})")
            fixes.append("leave those cells empty")
        return f"extra column {self.column} is trained as text: {'; '.join(parts)}; {' and '.join(fixes)} to train " \
               "it as a number"


def numbers_read_as_text(deals: pd.DataFrame, text_columns: Iterable[str], share: float = 0.95) -> list[TextNumbers]:
    """Text columns whose values are nearly all numbers, plain or formatted.

    An extra column is a number only when every value is a plain one: one placeholder ("-", "n/a ", "1,5") makes
    a column of 3,000 amounts 3,000 rare text levels, which carry nothing, and so do thousands separators in every
    value ("12,345.67": an audit's budget column trained to AUC 0.828 against 0.921 written plainly). Legal, so it
    is said, not refused.
    """
    found = []
    for column in text_columns:
        if column not in deals.columns:
            continue
        values = deals[column].dropna()
        if values.empty:
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        not_numbers = values[numbers.isna() | ~numbers.abs().lt(float("inf"))].astype(str)
        if not len(not_numbers):
            continue
        formatted = not_numbers.str.match(_FORMATTED_NUMBER)
        odd = not_numbers[~formatted]
        if len(odd) <= (1 - share) * len(values):
            first = not_numbers[formatted]
            found.append(TextNumbers(str(column), len(values), int(formatted.sum()), len(odd),
                                     str(first.iloc[0]) if len(first) else None,
                                     str(odd.iloc[0]) if len(odd) else None))
    return found


@dataclass(frozen=True)
class IdLike:
    """A text column with a value of its own in nearly every closed deal: an id, a free-text note, a timestamp."""

    column: str
    present: int  # closed deals with a value
    distinct: int  # distinct values among them
    most: int  # closed deals of its most frequent value

    def note(self, min_level_count: int) -> str:
        commonest = counted(self.most, "deal")
        return (f"extra column {self.column} has {self.distinct:,} different values in its {self.present:,} closed "
                f"deals (the commonest in {commonest}; a value needs {min_level_count:,} to be learnt), like an id "
                "or a free-text note: no value recurs, so it carries nothing to a later deal, and every deal "
                f"scored with a new value shows {self.column} among its unseen inputs; exclude it (--exclude "
                f"{self.column}, or the mapping file's exclude) unless its values are meant to recur")


def id_like_columns(deals: pd.DataFrame, text_columns: Iterable[str], min_level_count: int,
                    share: float = 0.9, fewest: int = 20) -> list[IdLike]:
    """Text columns whose closed deals (at least `fewest` with a value) hold a different value in at least
    `share` of them, none of which recurs in `min_level_count` deals (enough for a code of its own).

    Such a column was trained on without a word: no value gets a code of its own, its as-of win rate is the
    prior of an unknown level, and every newly scored deal lists it as unseen (an audit's per-deal reference
    column: "unseen": ["ref"] on all 86 open deals). Legal, so it is said, not refused."""
    closed = deals[deals["status"].isin(CLOSED)] if "status" in deals.columns else deals
    found = []
    for column in text_columns:
        if column not in closed.columns:
            continue
        values = closed[column].dropna().astype(str)
        if len(values) < fewest:
            continue
        counts = values.value_counts()
        if len(counts) >= share * len(values) and int(counts.iloc[0]) < min_level_count:
            found.append(IdLike(str(column), len(values), len(counts), int(counts.iloc[0])))
    return found


# The name pandas gives a CSV column whose header cell is blank ("Unnamed: 0" is a file written with its row numbers).
_UNNAMED = re.compile(r"^Unnamed: \d+$")


def unnamed_columns_note(columns: Iterable[str]) -> str | None:
    """Said when extra columns have no name in the file's header: they are trained on like any other, and a row
    number column (what pandas' to_csv writes first by default) reads the deals' order in the file as a feature."""
    unnamed = [str(c) for c in columns if _UNNAMED.match(str(c))]
    if not unnamed:
        return None
    return (f"{counted(len(unnamed), 'column')} without a name in the file's header, trained on as features: "
            f"{', '.join(unnamed)} (a file written with its row numbers has one first); name "
            f"{'it' if len(unnamed) == 1 else 'them'} in the file, or --exclude {' '.join(repr(c) for c in unnamed)}")
