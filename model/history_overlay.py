"""Client history from outcomes that arrived after a model was trained, as the scorer's override columns.

The artifact's DealHistory knows the closed deals it was trained on; outcomes reported later (the
service's POST /v1/outcomes) would stay invisible until the next retrain. This overlay adds them, as of
each scored deal's created day (strictly before it, as everywhere), to the artifact's own counts and hands
the scorer the per-deal history columns: wins as won_deals, won_amount, first_won_day, last_won_day, and
losses as OUTCOME_LOST_DEALS (added to the client's closed deals, so its win rate counts them too).

An outcome the artifact already has is never counted twice: when the trained deal ids are known (every
artifact trained since they are recorded, as a DealIdSet), by id; for older artifacts, only outcomes
closed after the artifact's last event day count. History a CRM sent with
a deal always wins: rows carrying any history column of their own are left as they came.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from model.asof import NO_KEY
from model.features import (
    HISTORY_END_DAY,
    HISTORY_OVERRIDE_COLUMNS,
    OUTCOME_HISTORY_FLAG,
    OUTCOME_LOST_DEALS,
    DealHistory,
    FeatureSpec,
)

FloatArray = npt.NDArray[np.float64]

__all__ = ["DealIdSet", "OutcomeBook", "OutcomeEvent", "history_overrides", "with_outcome_history"]


class DealIdSet:
    """The ids of the closed deals a model's history holds, kept in its artifact as sorted 64-bit hashes.

    An outcome reported for one of them is already in the model's history and must not count again (a
    CRM reporting late, or backfilling, would otherwise double a client's wins). Eight bytes per deal,
    against ~15x that for a set of strings, in the artifact and in every worker's memory; pandas' hash is
    stable across processes (a fixed key), and a false "already known" needs a 64-bit collision.
    """

    def __init__(self, deal_ids: Iterable[str]) -> None:
        self._hashes = np.unique(_hashed(list(deal_ids)))
        self._answers: dict[str, bool] = {}  # outcomes are few and asked about on every score: remembered

    def __len__(self) -> int:
        return int(self._hashes.size)

    def __contains__(self, deal_id: object) -> bool:
        text = str(deal_id)
        known = self._answers.get(text)
        if known is None:
            hashed = _hashed([text])[0]
            at = int(np.searchsorted(self._hashes, hashed))
            known = self._answers[text] = at < self._hashes.size and self._hashes[at] == hashed
        return known

    def holds(self, deal_ids: Sequence[object]) -> npt.NDArray[np.bool_]:
        """Whether each of `deal_ids` is in the set (all at once: a retrain asks about thousands)."""
        return np.isin(_hashed([str(d) for d in deal_ids]), self._hashes)

    def __getstate__(self) -> dict[str, Any]:
        return {"_hashes": self._hashes}  # not the answers: a cache, rebuilt on use

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._hashes = state["_hashes"]
        self._answers = {}


def _hashed(deal_ids: list[str]) -> npt.NDArray[np.uint64]:
    return np.asarray(pd.util.hash_array(np.asarray(deal_ids, dtype=object), categorize=False), dtype=np.uint64)


@dataclass(frozen=True)
class OutcomeEvent:
    """One realised result: which deal, whose, won or lost, the money and the day it closed."""

    deal_id: str
    client_id: str | None
    won: bool
    amount: float  # NaN when unknown; counts as 0 in the money won
    closed_day: int  # days since 1970-01-01
    product: str | None = None  # the deal's product as last scored (None: not known)


@dataclass(frozen=True)
class _ClientOutcomes:
    """A client's outcomes, won and lost, sorted by closed day (immutable: readers never lock)."""

    days: tuple[int, ...]
    events: tuple[OutcomeEvent, ...]
    won_products: tuple[str, ...] = ()  # the products of its wins, sorted: read on every gap list, so built here


class OutcomeBook:
    """The live outcomes, one per deal (the latest word wins), indexed by client.

    Written under a lock by whoever records outcomes; read lock-free by scoring threads, which only
    ever see a complete per-client snapshot (one dict item assignment swaps it).
    """

    def __init__(self, events: Iterable[OutcomeEvent] = ()) -> None:
        self._lock = threading.Lock()
        self._by_deal: dict[str, OutcomeEvent] = {}
        self._deals_of_client: dict[str, dict[str, OutcomeEvent]] = {}
        self._by_client: dict[str, _ClientOutcomes] = {}
        # The latest close day among the outcomes held (None: none): how far every client's history reaches when
        # the CRM reports every outcome (with_outcome_history's `complete`).
        self.latest_closed_day: int | None = None
        # Bumped with every change; latest_closed_day_besides keeps its last answer for one version.
        self._version = 0
        self._latest_besides: tuple[object, int, int | None] | None = None
        self.record_all(events)

    def __len__(self) -> int:
        return len(self._by_deal)

    def __contains__(self, deal_id: object) -> bool:
        return deal_id in self._by_deal

    def get(self, deal_id: str) -> OutcomeEvent | None:
        return self._by_deal.get(deal_id)

    def record(self, event: OutcomeEvent) -> bool:
        """Add or replace the outcome of `event.deal_id`; False when it was already known as is."""
        return self.record_all([event]) > 0

    def record_all(self, events: Iterable[OutcomeEvent]) -> int:
        """Add or replace several outcomes; returns how many changed. Each client touched is re-indexed once,
        after all of them: once per event made loading a client's n outcomes cost n sorts of up to n (8,000
        outcomes of one client took 15 s, and held the service's start)."""
        changed = 0
        with self._lock:
            touched: set[str] = set()
            for event in events:
                previous = self._by_deal.get(event.deal_id)
                if previous == event:
                    continue
                self._store(event)
                changed += 1
                self._version += 1
                if self.latest_closed_day is None or event.closed_day > self.latest_closed_day:
                    self.latest_closed_day = event.closed_day
                elif previous is not None and previous.closed_day == self.latest_closed_day:
                    # A corrected close day of the latest outcome: the latest may be earlier now (rare: a full pass).
                    self.latest_closed_day = max(e.closed_day for e in self._by_deal.values())
                touched.update(c for c in (event.client_id, previous.client_id if previous else None) if c)
            for client_id in touched:
                self._reindex(client_id)
        return changed

    def latest_closed_day_besides(self, deal_ids: Container[str]) -> int | None:
        """The latest close day among the outcomes of deals not in `deal_ids` (a model's trained deals, whose
        outcomes the overlay does not count); None: none. Scoring asks on every request: the answer is kept for
        the same `deal_ids` until the book changes."""
        kept = self._latest_besides
        if kept is not None and kept[0] is deal_ids and kept[1] == self._version:
            return kept[2]
        with self._lock:
            events = list(self._by_deal.values())
            # A DealIdSet answers all at once (one by one, its first answers cost 1 s for 50,000 outcomes).
            holds = deal_ids.holds if isinstance(deal_ids, DealIdSet) else None
            known = holds([e.deal_id for e in events]) if holds is not None else [e.deal_id in deal_ids for e in events]
            latest = max((e.closed_day for e, k in zip(events, known, strict=True) if not k), default=None)
            self._latest_besides = (deal_ids, self._version, latest)
        return latest

    def wins_of(self, client_id: str) -> tuple[OutcomeEvent, ...]:
        found = self._by_client.get(client_id)
        return tuple(e for e in found.events if e.won) if found is not None else ()

    def products_won(self, client_id: str) -> tuple[str, ...]:
        """The products of the client's won deals the book knows of, sorted (a won product is held)."""
        found = self._by_client.get(client_id)
        return found.won_products if found is not None else ()

    def outcomes_before(self, client_id: str, day: int) -> tuple[OutcomeEvent, ...]:
        """The client's outcomes, won and lost, closed strictly before `day`, oldest first."""
        found = self._by_client.get(client_id)
        if found is None:
            return ()
        return found.events[: bisect_left(found.days, day)]

    def _store(self, event: OutcomeEvent) -> None:
        # Called with the lock held.
        previous = self._by_deal.get(event.deal_id)
        if previous is not None and previous.client_id is not None:
            self._deals_of_client.get(previous.client_id, {}).pop(event.deal_id, None)
        self._by_deal[event.deal_id] = event
        if event.client_id is not None:
            self._deals_of_client.setdefault(event.client_id, {})[event.deal_id] = event

    def _reindex(self, client_id: str) -> None:
        # Called with the lock held; costs the client's own outcomes only.
        outcomes = sorted(self._deals_of_client.get(client_id, {}).values(), key=lambda e: (e.closed_day, e.deal_id))
        if outcomes:
            products = tuple(sorted({e.product for e in outcomes if e.won and e.product is not None}))
            self._by_client[client_id] = _ClientOutcomes(tuple(e.closed_day for e in outcomes), tuple(outcomes),
                                                         products)
        else:
            self._by_client.pop(client_id, None)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def history_overrides(
    history: DealHistory,
    spec: FeatureSpec,
    book: OutcomeBook,
    columns: Mapping[str, npt.NDArray[Any]],
    trained_deal_ids: Container[str] | None = None,  # a DealIdSet: asked, never iterated
) -> dict[str, FloatArray] | None:
    """The override columns (NaN where the artifact's own history stands), or None when nothing applies.

    A row gets values only when its client has a counted outcome closed strictly before the row's
    `created_day` and the row carries no history of its own; its values are then the artifact's
    as-of counts plus those outcomes (a client with new losses only keeps the artifact's wins, and gets
    the losses in OUTCOME_LOST_DEALS).
    """
    if not spec.has_client_history or len(book) == 0 or "client_id" not in columns or "created_day" not in columns:
        return None
    client_ids = np.asarray(columns["client_id"], dtype=object)
    created = np.asarray(columns["created_day"], dtype=np.float64)
    n = client_ids.size
    sent = np.zeros(n, dtype=bool)
    for name in HISTORY_OVERRIDE_COLUMNS:
        if name in columns:
            sent |= ~np.isnan(np.asarray(columns[name], dtype=np.float64))

    def counted(event: OutcomeEvent) -> bool:
        if trained_deal_ids is not None:
            return event.deal_id not in trained_deal_ids
        return event.closed_day > history.last_day

    deal_ids = (np.asarray(columns["deal_id"], dtype=object) if "deal_id" in columns
                else np.full(n, None, dtype=object))
    rows: list[int] = []
    # From outcomes: wins, money won, first and last win day (NaN without a win), losses, the latest close day.
    added: list[tuple[int, float, float, float, int, int]] = []
    for row in range(n):
        client_id = client_ids[row]
        if sent[row] or _missing(client_id) or math.isnan(created[row]):
            continue
        # Never the deal's own outcome: one reported before the deal was scored, dated before the created_at
        # the deal is then scored with, would be its own history (its win raising its own p_win).
        own = None if _missing(deal_ids[row]) else str(deal_ids[row])
        before = [e for e in book.outcomes_before(str(client_id), int(created[row]))
                  if counted(e) and e.deal_id != own]
        if not before:
            continue
        wins = [e for e in before if e.won]
        money = float(sum(0.0 if math.isnan(e.amount) else e.amount for e in wins))
        first, last = (float(wins[0].closed_day), float(wins[-1].closed_day)) if wins else (math.nan, math.nan)
        rows.append(row)
        added.append((len(wins), money, first, last, len(before) - len(wins), before[-1].closed_day))
    if not rows:
        return None

    index = np.asarray(rows, dtype=np.int64)
    assert history.client is not None  # has_client_history implies a client index
    keys = np.asarray([spec.client_keys.get(str(client_ids[r]), NO_KEY) for r in rows], dtype=np.int64)
    base = history.client.lookup(keys, created[index].astype(np.int64))
    extra = np.asarray(added, dtype=np.float64)
    out = {name: np.full(n, np.nan) for name in HISTORY_OVERRIDE_COLUMNS}
    out["won_deals"][index] = base.wins + extra[:, 0]
    out["won_amount"][index] = base.won_amount + extra[:, 1]
    out["first_won_day"][index] = np.fmin(base.first_win_day, extra[:, 2])
    out["last_won_day"][index] = np.fmax(base.last_win_day, extra[:, 3])
    out[OUTCOME_LOST_DEALS] = np.full(n, np.nan)
    out[OUTCOME_LOST_DEALS][index] = extra[:, 4]
    # How far such a history reaches (a model reading its age, HISTORY_AGE): the day after the client's latest
    # outcome counted, or the model's own end if later. Not the latest outcome of any client: one reported outcome,
    # or one the overlay does not count (a trained deal's), made every client's history look current.
    if spec.has_history_age:
        out[HISTORY_END_DAY] = np.full(n, np.nan)
        out[HISTORY_END_DAY][index] = np.maximum(extra[:, 5] + 1, history.last_day + 1)
    return out


def with_outcome_history(
    columns: Mapping[str, npt.NDArray[Any]],
    history: DealHistory,
    spec: FeatureSpec,
    book: OutcomeBook,
    trained_deal_ids: Container[str] | None = None,  # a DealIdSet: asked, never iterated
    complete: bool = False,
) -> dict[str, npt.NDArray[Any]]:
    """`columns` with the outcome overlay merged into the history override columns (a new dict). `complete`: the
    CRM reports every outcome, so a client without one since has closed nothing since, and every client's history
    reaches the latest outcome reported (for a model reading the history's age; else each client's history
    reaches its own latest outcome, and a client without one has the model's)."""
    out = dict(columns)
    if complete and spec.has_history_age and book.latest_closed_day is not None and "created_day" in columns:
        # Only as far as the outcomes counted reach: a late report of a trained deal's result, dated today by
        # default, adds nothing, and had made every client's history reach today. (Without trained ids, an
        # outcome closed by the model's last day reaches no further than the model's history anyway.)
        latest = (book.latest_closed_day if trained_deal_ids is None
                  else book.latest_closed_day_besides(trained_deal_ids))
        if latest is not None:
            out[HISTORY_END_DAY] = np.full(len(np.asarray(columns["created_day"])), float(latest + 1))
    overrides = history_overrides(history, spec, book, columns, trained_deal_ids)
    if overrides is None:
        return out
    n = len(np.asarray(columns["created_day"]))
    for name, values in overrides.items():
        given = np.asarray(out[name], dtype=np.float64) if name in out else np.full(n, np.nan)
        # (where the histories end: the later of a client's own latest outcome and a complete book's latest)
        out[name] = np.fmax(given, values) if name == HISTORY_END_DAY else np.where(np.isnan(values), given, values)
    out[OUTCOME_HISTORY_FLAG] = ~np.isnan(overrides["won_deals"])  # for the answer's history_source
    return out
