"""The input data set: deals, clients and holdings read, mapped and validated together.

Problems of all tables come back in one ContractViolation, so a user fixes everything in one pass.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from collections.abc import Mapping as KindMap
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path
from typing import TypeVar

import pandas as pd

from model.contract import CLIENTS, DEALS, HOLDINGS, TABLES
from model.errors import ContractViolation, Problem, counted
from model.mapping import (
    EXCLUDED_ATTR,
    NEAR_MISS_ATTR,
    STATUSES_SEEN_ATTR,
    UNMATCHED_STATUS_ATTR,
    WILDCARD,
    WILDCARD_ATTR,
    Mapping,
    apply_mapping,
    load_mapping,
)
from model.sources import NOT_CSV, CsvFormat, check_source, is_csv, read_table
from model.validation import extra_column_kinds, id_set, validate_clients, validate_deals, validate_holdings

T = TypeVar("T")


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames compare element-wise, not to one bool
class Dataset:
    deals: pd.DataFrame
    clients: pd.DataFrame | None
    holdings: pd.DataFrame | None
    # Non-contract columns kept as features: name -> "text" | "number". Deals' columns by their own
    # name (as feature building looks them up), the other tables' as "clients.name", "holdings.name".
    extra_columns: dict[str, str]
    excluded_columns: tuple[str, ...]  # source columns the mapping dropped
    holdings_derived: bool  # holdings built from won deals because none were given
    # Open deals of a training set without created_at: set aside (they cannot be placed in time, and
    # open deals are scored, not trained on); see model.contract.OPEN_DEALS_MAY_LACK.
    undated_open_deals: int = 0
    # A clients table was given but had no rows: it stands for none (a feedback view nothing has filled yet).
    clients_table_empty: bool = False
    # The export's status values the mapping's "*" decided, with their row counts, and the status it gave them.
    wildcard_statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    wildcard_status: str | None = None
    unmatched_status_values: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    statuses_seen: dict[str, int] = dataclasses.field(default_factory=dict)  # the export's, most common first
    # Columns named as a contract column but for case or spaces, read as extras: "table.column" -> contract name.
    near_miss_columns: dict[str, str] = dataclasses.field(default_factory=dict)

    def near_miss_note(self) -> str | None:
        """Columns that may be the contract's under another spelling ("Amount"): extra features, as the contract
        says, but a model trained so has no amount (or no client history), which nothing else would say."""
        if not self.near_miss_columns:
            return None
        shown = ", ".join(f"{source!r} ({canonical}?)" for source, canonical in self.near_miss_columns.items())
        example_source, example_name = next(iter(self.near_miss_columns.items()))
        return (f"columns named as contract columns but for case or spaces, trained as extra features: {shown}; "
                f"if they are, rename them or map them (columns: {{{example_name}: "
                f"'{example_source.split('.', 1)[1]}'}})")

    def unmatched_status_note(self) -> str | None:
        """The values status_values lists that no deal of the export has: a typo there ("Closed Wn") left every
        win to the "*" or refused, with nothing pointing at the mapping (an ops review)."""
        if not self.unmatched_status_values:
            return None
        listed = "; ".join(f"{status}: {', '.join(repr(v) for v in values)}"
                           for status, values in self.unmatched_status_values.items())
        seen = ", ".join(f"{value!r} ({n:,})" for value, n in list(self.statuses_seen.items())[:8])
        return (f"the mapping's status_values list values no deal has ({listed}); the export's statuses are "
                f"{seen or 'none'}: a typo, or a value this export does not hold")

    def wildcard_note(self) -> str | None:
        """Which export statuses the mapping's "*" read, and as what: a "Closed Won - Migrated" it made open was
        a win lost from training (296 of 1,181 in an audit), with no word of it."""
        if not self.wildcard_statuses:
            return None
        ranked = sorted(self.wildcard_statuses.items(), key=lambda item: -item[1])
        shown = ", ".join(f"{value!r} ({n:,})" for value, n in ranked[:6])
        more = f" and {len(ranked) - 6} more" if len(ranked) > 6 else ""
        return (f"the mapping's \"*\" read {counted(sum(self.wildcard_statuses.values()), 'deal')} as "
                f"{self.wildcard_status}: {shown}{more}; list a value under won or lost in status_values if it means "
                "closed")

    @property
    def summary(self) -> dict[str, int]:
        """Row counts, and how many deals have no client or a client outside the clients table (prospects)."""
        counts = {"deals": len(self.deals)}
        no_ids = pd.Series(None, index=self.deals.index, dtype=object)
        client_ids = self.deals["client_id"] if "client_id" in self.deals else no_ids
        counts["deals_without_client"] = int(client_ids.isna().sum())
        if self.clients is not None:
            counts["clients"] = len(self.clients)
            known = client_ids.isin(list(self.clients["client_id"]))
            counts["prospect_deals"] = int((client_ids.notna() & ~known).sum())
        if self.holdings is not None:
            counts["holdings"] = len(self.holdings)
        if self.undated_open_deals:
            counts["undated_open_deals"] = self.undated_open_deals
        return counts


    def client_id_spellings_note(self) -> str | None:
        """Client ids that differ only in case or surrounding spaces: between the deals and the clients table, or
        among the deals. Ids match exactly ("c1" and "C1" may be two clients), so such deals lose their client's
        attributes and split its history; said, as an export that changed the ids' case had 1,000 of 3,000 deals
        lose their client without a word (an input audit)."""
        if "client_id" not in self.deals:
            return None
        ids = self.deals["client_id"].dropna().astype(str)
        spellings: dict[str, set[str]] = {}
        for value in ids.unique():
            spellings.setdefault(value.strip().casefold(), set()).add(value)
        listed = set() if self.clients is None else {str(k) for k in self.clients["client_id"].dropna()}
        known = {value.strip().casefold(): value for value in sorted(listed)}
        # Deals whose id the clients table lacks exactly but has in another spelling (an exact match is linked).
        near = {value: known[form] for form, values in spellings.items() if form in known
                for value in values if value not in listed}
        split = [sorted(values) for values in spellings.values() if len(values) > 1]
        parts = []
        if near:
            first = next(iter(near.items()))
            deals = int(ids.isin(list(near)).sum())
            parts.append(f"{counted(deals, 'deal')} {'names' if deals == 1 else 'name'} a client_id that the "
                         f"clients table spells otherwise in case or spaces ({first[0]!r}, where it has {first[1]!r})")
        if split:
            parts.append(f"{counted(len(split), 'client_id')} of the deals {'comes' if len(split) == 1 else 'come'} "
                         f"in several such spellings ({', '.join(map(repr, split[0][:3]))})")
        if not parts:
            return None
        return ("; ".join(parts) + ": ids match exactly ('c1' and 'C1' are two clients), so those deals go without "
                "their client's attributes and history; if they are the same clients, make the exports spell them "
                "alike")

    def unlinked_clients_note(self, consequence: str = "no client attributes or history reach them") -> str | None:
        """Why the clients table given cannot reach the deals, when it cannot: no deal carries a client_id.
        `consequence`: what that means for the command saying it.

        Legal (client history is optional), but a mapping that leaves client_id out (CONTRACT.md's example
        does) trains on the client column as an ordinary text feature and joins nothing, without a word."""
        if self.clients is None or self.deals.empty or (
                "client_id" in self.deals and self.deals["client_id"].notna().any()):
            return None
        ids = set(self.clients["client_id"].dropna().astype(str))
        # The column whose values cover most of the clients' ids, of those mostly made of them; not a contract
        # column with a meaning of its own (whole effort hours 1..750 matched ids 1..750 in a review).
        as_ids = {str(column): _as_id_text(values.dropna()) for column, values in self.deals.items()
                 if column not in DEALS.names and values.notna().any()}
        matches = {column: values.isin(ids) for column, values in as_ids.items()}
        holding_ids = [column for _, column in sorted(
            (-as_ids[column][found].nunique(), column) for column, found in matches.items() if found.mean() >= 0.5)]
        hint = (f"the deals column {holding_ids[0]!r} holds the clients table's ids: map it as client_id "
                f"(deals: columns: {{client_id: {holding_ids[0]!r}}})" if holding_ids
                else "if the export names the client's id differently, map it as client_id in the mapping's deals "
                     "columns")
        return f"no deal carries a client_id, so the clients table is not joined to the deals: {consequence}; {hint}"


def _as_id_text(values: pd.Series) -> pd.Series:
    """A column's values as ids are written: whole numbers read as floats (196.0) as 196."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype(float)
        if (numbers == numbers.round()).all():
            return numbers.astype("int64").astype(str)
    return values.astype(str)


def load_dataset(
    deals: str,
    clients: str | None = None,
    holdings: str | None = None,
    mapping: str | Path | None = None,
    *,
    for_training: bool,
    today: date | None = None,
    kinds: KindMap[str, str] | None = None,
    mapped_columns_required: bool | None = None,
) -> Dataset:
    """Read every source (see model.sources), then map and validate them as dataset_from_frames does."""
    problems: list[Problem] = []
    loaded_mapping = _collect(problems, partial(load_mapping, mapping)) if mapping is not None else None
    if problems:
        # The sources are only checked to exist, not read: read without the mapping's csv formats they would
        # fail for reasons not theirs (a mistyped key beside `csv: {separator: ";"}` had the file called
        # "separated by semicolons").
        _check_sources(problems, {"deals": deals, "clients": clients, "holdings": holdings})
        raise ContractViolation(f"cannot read the input: {counted(len(problems), 'problem')}", problems)
    frames = {
        name: _collect(problems, partial(read_table, source, name,
                                         loaded_mapping.table(name).csv if loaded_mapping is not None else None))
        for name, source in (("deals", deals), ("clients", clients), ("holdings", holdings))
        if source is not None
    }
    _refuse_empty(problems, {"holdings": (holdings, frames.get("holdings"))})
    if problems:
        raise ContractViolation(f"cannot read the input: {counted(len(problems), 'problem')}", problems)
    deals_df = frames["deals"]
    assert deals_df is not None  # no problems, so every source was read
    return dataset_from_frames(
        deals_df, frames.get("clients"), frames.get("holdings"),
        _csv_format_for_csv_only(loaded_mapping, {"deals": deals, "clients": clients, "holdings": holdings}),
        for_training=for_training, today=today, kinds=kinds, mapped_columns_required=mapped_columns_required,
    )


def _csv_format_for_csv_only(mapping: Mapping | None, sources: dict[str, str | None]) -> Mapping:
    """The mapping (None: none) with each table's csv format (its decimal mark above all) kept only where that
    table comes from a CSV file: a Parquet or SQL source's numbers are typed already, and its text is not the
    export's. Such a table's decimal is NOT_CSV, so that a refusal of its text numbers does not send the user to
    the csv format, which it would not read."""
    mapping = mapping or Mapping()
    return Mapping({name: mapping.table(name) if (source := sources.get(name)) is None or is_csv(source)
                    else dataclasses.replace(mapping.table(name), csv=CsvFormat(decimal=NOT_CSV)) for name in TABLES})


def dataset_from_frames(
    deals_df: pd.DataFrame,
    clients_df: pd.DataFrame | None = None,
    holdings_df: pd.DataFrame | None = None,
    mapping: Mapping | None = None,
    *,
    for_training: bool,
    today: date | None = None,
    kinds: KindMap[str, str] | None = None,
    mapped_columns_required: bool | None = None,
) -> Dataset:
    """Map and validate frames already in memory; ContractViolation lists the problems of all tables.

    `kinds` ("number" or "text") types columns as a model was trained on them instead of by their values,
    named as in Dataset.extra_columns: a deals column by its name, a clients column as "clients.size".
    For training, open deals without created_at are set aside and counted (Dataset.undated_open_deals).
    `mapped_columns_required` (default: `for_training`): every column the mapping maps must be in its file
    (model.mapping.apply_mapping); client analytics validates as training does but reads only a few columns.
    """
    if mapped_columns_required is None:
        mapped_columns_required = for_training
    mapping = mapping or Mapping()
    problems: list[Problem] = []
    raw = {"deals": deals_df, "clients": clients_df, "holdings": holdings_df}
    mapped: dict[str, pd.DataFrame] = {}
    for name, frame in raw.items():
        if frame is not None:
            mapped_frame = _collect(problems, partial(apply_mapping, name, frame, mapping,
                                                      require_mapped_columns=mapped_columns_required))
            if mapped_frame is not None:
                mapped[name] = mapped_frame

    def formats(name: str) -> str | None:
        return mapping.table(name).date_format

    def decimal(name: str) -> str:
        return mapping.table(name).csv.decimal

    deals = clients = holdings = None
    if "deals" in mapped:
        deals = _collect(problems, partial(
            validate_deals, mapped["deals"], for_training=for_training, date_format=formats("deals"),
            today=today, kinds=_table_kinds(kinds, "deals"), decimal=decimal("deals")))
    if "clients" in mapped:
        clients = _collect(problems, partial(
            validate_clients, mapped["clients"], date_format=formats("clients"), today=today,
            kinds=_table_kinds(kinds, "clients"), decimal=decimal("clients")))
    if "holdings" in mapped:
        # Ids from the mapped clients table even when it has problems of its own, so holdings are
        # checked against what the user sent rather than skipped.
        known = None
        if "clients" in mapped and "client_id" in mapped["clients"] and not mapped["clients"].empty:
            known = id_set(mapped["clients"]["client_id"])
        holdings = _collect(problems, partial(
            validate_holdings, mapped["holdings"], known_clients=known, date_format=formats("holdings"),
            today=today, decimal=decimal("holdings")))
    if problems:
        tables = [name for name in TABLES if any(p.table == name for p in problems)] or list(mapped)
        raise ContractViolation(
            f"input data breaks the data contract ({', '.join(tables)}): {counted(len(problems), 'problem')}", problems
        )
    assert deals is not None  # no problems, so the deals were validated
    clients_table_empty = clients is not None and clients.empty
    if clients_table_empty:
        # A clients table without rows (a header-only export, a feedback view nothing has filled yet) tells
        # nothing about any client: it stands for no clients table, so holdings are not checked against it.
        clients = None

    undated_open = 0
    if for_training and "created_at" in deals and "status" in deals:
        undated = (deals["status"] == "open") & deals["created_at"].isna()
        undated_open = int(undated.sum())
        if undated_open:
            deals = deals[~undated].reset_index(drop=True)

    holdings_derived = False
    if holdings is None:
        holdings = holdings_from_deals(deals)
        holdings_derived = holdings is not None
    extra_columns = extra_column_kinds(deals, DEALS)
    for table, frame in ((CLIENTS, clients), (HOLDINGS, None if holdings_derived else holdings)):
        if frame is not None:
            kinds = extra_column_kinds(frame, table)
            extra_columns.update({f"{table.name}.{name}": kind for name, kind in kinds.items()})
    excluded = (c for frame in mapped.values() for c in frame.attrs.get(EXCLUDED_ATTR, ()))
    return Dataset(
        deals=deals, clients=clients, holdings=holdings, extra_columns=extra_columns,
        excluded_columns=tuple(dict.fromkeys(excluded)), holdings_derived=holdings_derived,
        undated_open_deals=undated_open, clients_table_empty=clients_table_empty,
        wildcard_statuses=dict(Counter(str(v) for v in mapped["deals"].attrs.get(WILDCARD_ATTR, {}).values())),
        near_miss_columns={f"{name}.{source}": canonical for name, frame in mapped.items()
                           for source, canonical in frame.attrs.get(NEAR_MISS_ATTR, {}).items()},
        wildcard_status=next((status for status, listed in mapping.table("deals").status_values.items()
                              if WILDCARD in listed), None),
        unmatched_status_values=dict(mapped["deals"].attrs.get(UNMATCHED_STATUS_ATTR, {})),
        statuses_seen=dict(mapped["deals"].attrs.get(STATUSES_SEEN_ATTR, {})),
    )


def _table_kinds(kinds: KindMap[str, str] | None, table: str) -> dict[str, str] | None:
    """One table's share of `kinds`: deals' columns go by their own name, other tables' as "table.name"."""
    if not kinds:
        return None
    if table == "deals":
        others = tuple(f"{name}." for name in TABLES if name != "deals")
        return {name: kind for name, kind in kinds.items() if not name.startswith(others)}
    prefix = f"{table}."
    return {name[len(prefix):]: kind for name, kind in kinds.items() if name.startswith(prefix)}


def holdings_from_deals(deals: pd.DataFrame) -> pd.DataFrame | None:
    """What each client holds, read off its won deals: for CRMs that keep no holdings table.

    since = the first win's closed_at (created_at when it has none), revenue = the wins' amounts.
    None when the deals lack client_id, product or status, so nothing can be derived.
    """
    if not {"client_id", "product", "status"} <= set(deals.columns):
        return None
    won = deals[(deals["status"] == "won") & deals["client_id"].notna() & deals["product"].notna()]
    holdings = pd.DataFrame({
        "client_id": won["client_id"].astype(object), "product": won["product"].astype(object)
    })
    dates = [won[c] for c in ("closed_at", "created_at") if c in won]
    if dates:
        holdings["since"] = dates[0].fillna(dates[1]) if len(dates) == 2 else dates[0]
    if "amount" in won:
        holdings["revenue"] = won["amount"]
    grouped = holdings.groupby(["client_id", "product"], sort=True)
    derived = grouped.size().reset_index()[["client_id", "product"]].astype(object)
    if "since" in holdings:
        derived["since"] = grouped["since"].min().to_numpy().astype("datetime64[ns]")
    if "revenue" in holdings:
        derived["revenue"] = grouped["revenue"].sum(min_count=1).to_numpy().astype("float64")
    return derived


def _collect(problems: list[Problem], step: Callable[[], T]) -> T | None:
    """Run one step; on ContractViolation keep its problems and go on, so all are reported at once."""
    try:
        return step()
    except ContractViolation as error:
        problems.extend(error.problems)
        return None


def _check_sources(problems: list[Problem], sources: dict[str, str | None]) -> None:
    for name, source in sources.items():
        if source is not None:
            _collect(problems, partial(check_source, source, name))


def _refuse_empty(problems: list[Problem], given: dict[str, tuple[str | None, pd.DataFrame | None]],
                  optional: tuple[str, ...] = ("holdings",)) -> None:
    """A holdings source given with no rows is a broken export, not "nothing held": a header-only holdings file
    had trained a model without ideal profiles, and listed every client's gaps as if it held nothing, without a
    word. (A clients table of no rows stands for none where one is optional, as the feedback database's
    training_clients view is until CRMs send clients: training says so. `dealscore gaps` needs clients.)"""
    for name, (source, frame) in given.items():
        if source is not None and frame is not None and frame.empty:
            # (not the source itself: a SQL source's URL may hold a password)
            leave_out = f" (leave --{name} out when there is none)" if name in optional else ""
            problems.append(Problem(f"{name} source", f"a {name} table with at least one row{leave_out}",
                                    "a table of no rows (a header alone)"))


def load_tables(
    clients: str, holdings: str | None, mapping: str | Path | None = None, *, today: date | None = None,
    kinds: KindMap[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Clients and holdings alone (no deals), read, mapped and validated: for offline gap lists. Holdings
    None: none given (the profiles then use the holdings they knew at training).

    `kinds` as for dataset_from_frames ("clients.size": "number" or "text").
    """
    problems: list[Problem] = []
    loaded_mapping = (_collect(problems, partial(load_mapping, mapping)) if mapping is not None else None) or Mapping()
    if problems:  # as in load_dataset: the sources are checked, not read, without their mapping
        _check_sources(problems, {"clients": clients, "holdings": holdings})
        raise ContractViolation(f"cannot read the input: {counted(len(problems), 'problem')}", problems)
    raw_clients = _collect(problems, partial(read_table, clients, "clients", loaded_mapping.table("clients").csv))
    raw_holdings = (_collect(problems, partial(read_table, holdings, "holdings", loaded_mapping.table("holdings").csv))
                    if holdings is not None else None)
    loaded_mapping = _csv_format_for_csv_only(loaded_mapping, {"clients": clients, "holdings": holdings})
    _refuse_empty(problems, {"clients": (clients, raw_clients), "holdings": (holdings, raw_holdings)})
    if problems:
        raise ContractViolation(f"cannot read the input: {counted(len(problems), 'problem')}", problems)
    assert raw_clients is not None
    mapped_clients = _collect(problems, partial(apply_mapping, "clients", raw_clients, loaded_mapping))
    mapped_holdings = (_collect(problems, partial(apply_mapping, "holdings", raw_holdings, loaded_mapping))
                       if raw_holdings is not None else None)
    typed_clients = typed_holdings = None
    if mapped_clients is not None:
        typed_clients = _collect(problems, partial(
            validate_clients, mapped_clients, date_format=loaded_mapping.table("clients").date_format, today=today,
            kinds=_table_kinds(kinds, "clients"), decimal=loaded_mapping.table("clients").csv.decimal))
    if mapped_holdings is not None:
        known = id_set(mapped_clients["client_id"]) if mapped_clients is not None and (
            "client_id" in mapped_clients) else None
        typed_holdings = _collect(problems, partial(
            validate_holdings, mapped_holdings, known_clients=known,
            date_format=loaded_mapping.table("holdings").date_format, today=today,
            decimal=loaded_mapping.table("holdings").csv.decimal))
    if problems or typed_clients is None or (holdings is not None and typed_holdings is None):
        raise ContractViolation(f"input data breaks the data contract: {counted(len(problems), 'problem')}", problems)
    return typed_clients, typed_holdings
