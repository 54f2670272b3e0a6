"""Fitting ideal client profiles: segments with fallback, best clients, adoption, incomes, acceptance model.

The acceptance model (one logistic regression per product, on the client's attributes, its segment and
the other products it holds) gives each gap its p_accept; the segment's best clients give the ideal
profile and the ideal income. Everything is stored as plain arrays in a model.profiles.ClientProfiles.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse, special
from threadpoolctl import threadpool_limits

from model.contract import utc_today_number
from model.dataset import holdings_from_deals
from model.errors import InsufficientData
from model.features import day_numbers
from model.grades import DEFAULT_SHARES, check_pareto_shares, pareto_classes
from model.metrics import expected_calibration_error
from model.profiles import (
    ALL_CLIENTS,
    FACT_ATTRIBUTES,
    HOLDING_INCOME,
    PRIOR_CLIENTS,
    TENURE,
    AcceptanceModel,
    ClientFacts,
    ClientProfiles,
    Level,
    ProfileEncoder,
    RawValue,
    TakeUpCalibration,
    revenue_unfilled,
    segment_name,
    share_logit,
)
from model.spellings import fitted_spellings, folded_form

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

BEST_RULES = ("pareto_a", "top_share", "all")
# Strongest first (the one-standard-error rule below picks the first within reach of the best); 0.001 leaves
# a client's chance at about its segment's popularity.
REGULARISATION_GRID: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
CV_FOLDS = 3
DENSE_LIMIT = 5_000_000  # design cells up to which the acceptance model is fitted on a dense array


@dataclass(frozen=True)
class ProfileConfig:
    """How segments, best clients, ideal profiles and gap lists are made. Saved with the model."""

    segment_keys: tuple[str, ...] = ("industry", "size")  # any of industry, size, region, tenure, extras
    # Coarser segments tried in order when a client's segment is too small; each a subset of the one
    # before. None: drop keys from the end (industry x size -> industry -> all clients).
    fallback: tuple[tuple[str, ...], ...] | None = None
    min_segment_clients: int = 20  # smaller segments fall back to a coarser one
    min_best_clients: int = 5  # ... and so do segments with fewer best clients than this
    best_rule: str = "pareto_a"  # "pareto_a": class A of income; "top_share": top best_top_share; "all"
    best_shares: tuple[float, float, float] = DEFAULT_SHARES  # Pareto shares for "pareto_a"
    best_top_share: float = 0.2
    min_adoption: float = 0.5  # in the ideal profile: held by at least this share of the best clients
    fill_outside_profile: bool = True  # after the profile's gaps, offer other products the client may take
    min_p_accept: float = 0.02  # ... when at least this likely
    rank_by: str = "expected_income"  # gap order: "expected_income" (p_accept x typical income) or "p_accept"
    # Attributes of the acceptance model. None: industry, size, region and tenure when the data has them,
    # plus extra_attributes.
    model_attributes: tuple[str, ...] | None = None
    extra_attributes: tuple[str, ...] = ()  # other client columns (text, or numbers cut in quantile bands)
    size_bands: tuple[float, ...] | None = None  # numeric size (employees): band edges; None = data terciles
    tenure_bands_years: tuple[float, ...] = (1.0, 3.0)
    numeric_bands: int = 3  # quantile bands of other numeric attributes
    min_level_clients: int = 5  # rarer attribute levels get no column of their own in the acceptance model
    # Inverse L2 strength (C) of the acceptance model. None: chosen per product by 3-fold cross-validated
    # log-loss among REGULARISATION_GRID (up to cv_max_clients clients; above that 1.0, as data dominate).
    regularisation: float | None = None
    cv_max_clients: int = 20_000
    min_product_holders: int = 5  # fewer holders (or non-holders): the product's chance is its smoothed share
    min_income_holders: int = 3  # fewer holders in a segment: its typical income comes from the coarser one
    client_value_column: str | None = None  # a numeric clients column to use as realised value (income)
    ideal_income_statistic: str = "median"  # "median" or "mean" income of the best clients
    # A gap's p_accept as the chance of taking the product up within this many days, learnt from dated
    # holdings (_take_up_calibration): it needs two such windows up to the holdings' last start, each with at least
    # take_up_min_events take-ups. 0: never; p_accept then stays the share of clients like it that hold it.
    take_up_days: int = 365
    take_up_min_events: int = 30
    take_up_max_clients: int = 20_000  # clients sampled for each past window's profiles (fitting time)

    def chain(self) -> tuple[tuple[str, ...], ...]:
        """Segment keys from the finest to all clients, validated."""
        if self.fallback is None:
            levels = [self.segment_keys[:n] for n in range(len(self.segment_keys), -1, -1)]
        else:
            levels = [self.segment_keys, *self.fallback]
            if levels[-1]:
                levels.append(())
        for finer, coarser in zip(levels, levels[1:], strict=False):
            if not set(coarser) <= set(finer):
                raise ValueError(f"fallback segment {coarser} must use a subset of the keys of {finer}")
        known = {*FACT_ATTRIBUTES, TENURE, *self.extra_attributes}
        unknown = sorted({k for level in levels for k in level} - known)
        if unknown:
            raise ValueError(f"segment keys must be among {sorted(known)}, got {unknown}")
        if self.best_rule not in BEST_RULES:
            raise ValueError(f"best_rule must be one of {BEST_RULES}, got {self.best_rule!r}")
        check_pareto_shares("best_shares", self.best_shares)
        if self.rank_by not in ("expected_income", "p_accept"):
            raise ValueError(f"rank_by must be expected_income or p_accept, got {self.rank_by!r}")
        for name, least in (("take_up_days", 0), ("take_up_min_events", 1), ("take_up_max_clients", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be a whole number of at least {least}, got {value!r}")
        if self.ideal_income_statistic not in ("median", "mean"):
            raise ValueError("ideal_income_statistic must be median or mean, "
                             f"got {self.ideal_income_statistic!r}")
        return tuple(dict.fromkeys(tuple(level) for level in levels))


@dataclass
class _Portfolio:
    """Clients in a fixed order with what they hold and earn, as arrays."""

    ids: list[str]
    raw: list[dict[str, RawValue]]
    products: tuple[str, ...]
    held: BoolArray  # (clients, products)
    holding_client: npt.NDArray[np.int64]  # one row per (client, product) holding
    holding_product: npt.NDArray[np.int64]
    holding_revenue: FloatArray  # NaN when unknown
    holding_income: FloatArray  # what each holding adds to its client's income (unknown revenue filled)
    income: FloatArray  # (clients,) realised value used to find the best clients
    has_income: bool  # income is money (revenue, won amounts or the value column)
    income_source: str
    reference_day: float
    won_not_in_holdings: int = 0  # (client, product) pairs of won deals the holdings table lacked, added
    # Products of won deals that no holding names, even folded (model/spellings.py), with their won deals, most
    # first: someone bought them, so a holdings table without them may spell them otherwise. Only the first
    # UNLISTED_KEPT are kept (a product column of order lines made 300k of them at 1M deals); then how many.
    won_products_not_listed: dict[str, int] | None = None
    won_products_not_listed_count: int = 0
    holdings_revenue_all_zero: bool = False  # the holdings table's revenue was 0 in every row: read as not given


UNLISTED_KEPT = 20


def fit_profiles(deals: pd.DataFrame | None, clients: pd.DataFrame | None, holdings: pd.DataFrame | None,
                 config: ProfileConfig = ProfileConfig(), *, with_acceptance: bool = True,
                 add_won_products: bool = True, holdings_table: bool = True,
                 regularisation: dict[str, float] | None = None) -> ClientProfiles:
    """Fit the profiles from canonical frames. Holdings come from won deals when none are given.

    `with_acceptance=False` leaves the acceptance models unfitted (every product at its segment's share):
    enough for segments, ideal profiles and potential income, and the costly part skipped.
    `add_won_products=False` takes a holdings table at its word (no recent wins added, `_with_won_products`).
    `holdings_table=False`: the holdings given were read off won deals (model.dataset), not an export's table.
    `regularisation`: the acceptance model's C per product, instead of choosing it (the take-up calibration's
    past profiles take the served model's, so they are fitted alike without cross-validating again)."""
    levels_chain = config.chain()
    portfolio = _portfolio(deals, clients, holdings, config, add_won_products, holdings_table)
    encoder = _encoder(portfolio, clients, levels_chain, config)
    levels = [encoder.levels(raw, portfolio.reference_day) for raw in portfolio.raw]
    _fill_vocab(encoder, levels, levels_chain, config)
    segments = _segments(portfolio, encoder, levels, levels_chain, config)
    n_products = len(portfolio.products)
    n_clients = np.array(segments.n_clients, dtype=np.float64)
    adoption_all = np.array(segments.adoption_all, dtype=np.float64).reshape(-1, n_products)
    parent_share = adoption_all[_parent_rows(segments, levels_chain)]
    prior_share = ((adoption_all * n_clients[:, None] + PRIOR_CLIENTS * parent_share)
                   / (n_clients[:, None] + PRIOR_CLIENTS))
    held_lists = [tuple(int(j) for j in np.flatnonzero(row)) for row in portfolio.held]
    # The acceptance model comes last: it needs each client's segment, which the profiles resolve.
    untrained = AcceptanceModel(coef=np.zeros((n_products, encoder.width)), intercept=np.zeros(n_products),
                                count_coef=np.zeros(n_products), prior_coef=np.ones(n_products),
                                fitted=np.zeros(n_products, dtype=np.bool_))
    profiles = ClientProfiles(
        products=portfolio.products, encoder=encoder, acceptance=untrained, levels=levels_chain,
        segment_rows=segments.rows, segment_names=segments.names,
        segment_level=segments.level, n_clients=n_clients, n_best=np.array(segments.n_best, dtype=np.float64),
        ideal_income=np.array(segments.ideal_income, dtype=np.float64),
        adoption_best=np.array(segments.adoption_best, dtype=np.float64).reshape(-1, n_products),
        adoption_all=adoption_all,
        typical_income=np.array(segments.typical_income, dtype=np.float64).reshape(-1, n_products),
        prior_logit=share_logit(prior_share),
        min_adoption=config.min_adoption, fill_outside_profile=config.fill_outside_profile,
        min_p_accept=config.min_p_accept, rank_by=config.rank_by, reference_day=portfolio.reference_day,
        known_attributes={cid: {k: v for k, v in raw.items() if v is not None}
                          for cid, raw in zip(portfolio.ids, portfolio.raw, strict=True)},
        known_products=dict(zip(portfolio.ids, held_lists, strict=True)),
        known_income=({cid: float(x) for cid, x in zip(portfolio.ids, portfolio.income, strict=True)}
                      if portfolio.has_income else {}),
        known_holding_income=_holding_incomes(portfolio) if portfolio.income_source in HOLDING_INCOME else {},
        has_income=portfolio.has_income, best_rule=config.best_rule,
    )
    rows = np.array([profiles.segment_row(lv) for lv in levels], dtype=np.int64)
    design = encoder.design(levels, held_lists)
    fixed = None if regularisation is None else np.array([regularisation.get(p, np.nan) for p in portfolio.products])
    acceptance = (_fit_acceptance(design, portfolio.held, profiles.prior_logit[rows], encoder, config, fixed)
                  if with_acceptance else untrained)
    profiles.acceptance = acceptance
    chosen_regularisation = (acceptance.regularisation if acceptance.regularisation is not None
                             else np.full(n_products, np.nan))
    resolved_levels = Counter(profiles.segment_level[row] for row in rows.tolist())
    profiles.summary = {
        "clients": len(portfolio.ids),
        "holdings": int(portfolio.held.sum()),
        "holdings_added_from_won_deals": portfolio.won_not_in_holdings,
        "won_products_not_in_holdings": portfolio.won_products_not_listed or {},
        "won_products_not_in_holdings_count": portfolio.won_products_not_listed_count,
        "products": list(portfolio.products),
        "income_source": portfolio.income_source,
        "holdings_revenue_all_zero": portfolio.holdings_revenue_all_zero,
        "segment_levels": ["×".join(level) or ALL_CLIENTS for level in levels_chain],
        "segments": {"×".join(level) or ALL_CLIENTS: sum(1 for lv in segments.level if lv == i)
                     for i, level in enumerate(levels_chain)},
        "clients_by_segment_level": {"×".join(levels_chain[i]) or ALL_CLIENTS: n
                                     for i, n in sorted(resolved_levels.items())},
        "acceptance_fitted_products": int(acceptance.fitted.sum()),
        "acceptance_regularisation": {p: (None if c != c else float(c)) for p, c
                                      in zip(portfolio.products, chosen_regularisation, strict=True)},
        "design_columns": encoder.width,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()},
    }
    if with_acceptance:
        chosen_by_product = {p: float(c) for p, c in zip(portfolio.products, chosen_regularisation, strict=True)
                             if c == c}
        profiles.take_up, profiles.summary["take_up"] = _take_up_calibration(
            deals, clients, holdings, config, portfolio.reference_day, add_won_products, holdings_table,
            chosen_by_product)
    return profiles


# ---------------------------------------------------------------------------------------------------
# Portfolio: who holds what, and who earns how much.


# A holdings table lags the CRM by an export cycle or so: wins closed within this many days of the data's
# latest day, and after the table's latest `since`, may be missing from it. An older win missing from the
# table is the table's word that the client no longer holds the product.
WON_NOT_YET_IN_HOLDINGS_DAYS = 90


def _with_won_products(frame: pd.DataFrame, deals: pd.DataFrame | None,
                       holdings: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Holdings plus the products clients won lately that the holdings table lacks, and how many were added.

    A holdings table is exported on its own schedule: a product won last week may be missing from it, and
    was then offered back to the client as a gap. Only wins closed in the last WON_NOT_YET_IN_HOLDINGS_DAYS
    days of the data, after the table's latest `since` (a table that lists a later holding was exported
    after the win), are added, and only of products the table lists, matched up to case and surrounding
    spaces (a deal's product the table never lists, a one-off service, is not a product held). Their revenue
    is unknown: such a holding earns what the product typically does, as any holding without revenue."""
    if deals is None or not {"client_id", "product", "status"} <= set(deals.columns) or frame.empty:
        return frame, 0
    won = deals[(deals["status"] == "won") & deals["client_id"].notna() & deals["product"].notna()]
    closed = day_numbers(won["closed_at"]) if "closed_at" in won else np.full(len(won), np.nan)
    if "created_at" in won:
        closed = np.where(np.isnan(closed), day_numbers(won["created_at"]), closed)
    after = _reference_day(deals, None, holdings) - WON_NOT_YET_IN_HOLDINGS_DAYS
    if "since" in holdings and holdings["since"].notna().any():
        after = max(after, float(np.nanmax(day_numbers(holdings["since"]))))
    won = won[closed > after]
    products = _listed_spellings(won["product"].astype(str), frame["product"])
    pairs = pd.DataFrame({"client_id": won["client_id"].astype(str).to_numpy(), "product": products})
    pairs = pairs[pairs["product"].notna()].drop_duplicates()
    held = pd.MultiIndex.from_frame(frame[["client_id", "product"]])
    missing = pairs[~pd.MultiIndex.from_frame(pairs).isin(held)]
    if missing.empty:
        return frame, 0
    return pd.concat([frame, missing.assign(revenue=np.nan)], ignore_index=True), len(missing)


def _portfolio(deals: pd.DataFrame | None, clients: pd.DataFrame | None, holdings: pd.DataFrame | None,
               config: ProfileConfig, add_won_products: bool = True, holdings_table: bool = True) -> _Portfolio:
    # An export's holdings table, checked for products its won deals name otherwise (not when holdings are read
    # off won deals, here or by model.dataset, nor when the table is taken at its word: `dealscore clients`).
    check_listing = holdings_table and add_won_products and holdings is not None and not holdings.empty
    # Only a holdings table's revenue is said to be 0 in every row: holdings read off won deals carry the wins'
    # amounts, and a CRM whose amounts are all 0 has no holdings table to blame.
    given_table = holdings_table and holdings is not None and not holdings.empty
    if holdings is None or holdings.empty:
        holdings = holdings_from_deals(deals) if deals is not None else None
    if holdings is None or holdings.empty:
        raise InsufficientData("no holdings to fit client profiles: give a holdings table or won deals with "
                               "client_id and product")
    holdings = holdings[holdings["client_id"].notna() & holdings["product"].notna()]
    table_revenue = holdings["revenue"].astype(np.float64) if "revenue" in holdings else None
    # A revenue column that is 0 in every row is a field the CRM never fills, as an amount of 0 is no quote: read
    # as not given, so won deal amounts measure income. Read as income 0, every client's income and potential was
    # 0 and gaps were ranked by p_accept alone (a degenerate-data audit).
    unfilled_revenue = table_revenue is not None and revenue_unfilled(table_revenue)
    if unfilled_revenue:
        table_revenue = None
    frame = pd.DataFrame({"client_id": holdings["client_id"].astype(str),
                          "product": holdings["product"].astype(str),
                          "revenue": table_revenue if table_revenue is not None else np.nan})
    frame, added = _with_won_products(frame, deals, holdings) if add_won_products else (frame, 0)
    if deals is not None and frame["revenue"].isna().all() and {"amount", "status", "client_id", "product"} <= set(
            deals.columns):
        won = deals[(deals["status"] == "won") & deals["client_id"].notna() & deals["product"].notna()]
        keys = [won["client_id"].astype(str), won["product"].astype(str)]
        amounts = won.groupby(keys)["amount"].sum(min_count=1)
        pairs = pd.MultiIndex.from_frame(frame[["client_id", "product"]])
        frame["revenue"] = amounts.reindex(pairs).to_numpy()
    frame = frame.groupby(["client_id", "product"], sort=True)["revenue"].sum(min_count=1).reset_index()

    client_ids: list[str] = []
    if clients is not None and "client_id" in clients:
        client_ids = list(dict.fromkeys(clients["client_id"].dropna().astype(str)))
    known = set(client_ids)
    client_ids += [c for c in dict.fromkeys(frame["client_id"]) if c not in known]
    position = {c: i for i, c in enumerate(client_ids)}
    products = tuple(sorted(frame["product"].unique()))
    product_position = {p: j for j, p in enumerate(products)}
    holding_client: npt.NDArray[np.int64] = np.asarray(frame["client_id"].map(position), dtype=np.int64)
    holding_product: npt.NDArray[np.int64] = np.asarray(frame["product"].map(product_position),
                                                         dtype=np.int64)
    held = np.zeros((len(client_ids), len(products)), dtype=np.bool_)
    held[holding_client, holding_product] = True

    revenue = frame["revenue"].to_numpy(dtype=np.float64)
    has_revenue = bool(np.isfinite(revenue).any() and np.nansum(revenue) > 0)
    # Holdings read off won deals (model.dataset.holdings_from_deals) carry the wins' amounts as their revenue.
    from_table = holdings_table and table_revenue is not None and bool(table_revenue.notna().any())
    income_source = "holdings revenue" if from_table else (
        "won deal amounts" if has_revenue else "number of products held")
    if has_revenue:  # a holding with unknown revenue earns what the product typically does
        medians = pd.Series(revenue).groupby(holding_product).median()
        fill = medians.reindex(holding_product).to_numpy(dtype=np.float64)
        fill = np.where(np.isnan(fill), np.nanmedian(revenue), fill)
        revenue_filled = np.where(np.isnan(revenue), fill, revenue)
        income = np.bincount(holding_client, weights=revenue_filled,
                             minlength=len(client_ids)).astype(np.float64)
    else:
        revenue_filled = np.ones(len(holding_client))
        income = held.sum(axis=1).astype(np.float64)
    has_income = has_revenue
    raw = _raw_attributes(client_ids, clients, config)
    if config.client_value_column is not None:
        if clients is None or config.client_value_column not in clients:
            raise ValueError(f"client_value_column {config.client_value_column!r} is not a clients column")
        unique = clients.drop_duplicates("client_id")
        values = pd.Series(pd.to_numeric(unique[config.client_value_column], errors="coerce").to_numpy(),
                           index=unique["client_id"].astype(str))
        income = np.clip(values.reindex(client_ids).fillna(0.0).to_numpy(dtype=np.float64), 0.0, None)
        has_income, income_source = True, f"clients.{config.client_value_column}"
    return _Portfolio(
        ids=client_ids, raw=raw, products=products, held=held, holding_client=holding_client,
        holding_product=holding_product, holding_revenue=revenue, holding_income=revenue_filled, income=income,
        has_income=has_income,
        income_source=income_source, reference_day=_reference_day(deals, clients, holdings),
        won_not_in_holdings=added, holdings_revenue_all_zero=unfilled_revenue and given_table,
        **(_won_products_not_listed(deals, frame["product"]) if check_listing else {}),
    )


def _listed_spellings(products: Iterable[str], listed: Iterable[str]) -> list[str | None]:
    """Each product as the holdings list spells it: itself when listed, else the one listed spelling of its folded
    form (model/spellings.py), else None (unlisted, or a form two listed spellings share)."""
    names = sorted(set(listed))
    exact, folded = set(names), fitted_spellings(names)
    return [p if p in exact else folded.get(folded_form(p)) for p in products]


def _won_products_not_listed(deals: pd.DataFrame | None, listed: pd.Series) -> dict[str, Any]:
    """_Portfolio's fields on won deals' products that match no listed product, as holdings match them: exactly,
    or folded when only one listed spelling has that form (`_with_won_products`, model/spellings.py)."""
    if deals is None or not {"status", "product"} <= set(deals.columns):
        return {}
    counts = deals.loc[deals["status"] == "won", "product"].dropna().astype(str).value_counts()
    unmatched = counts[[p is None for p in _listed_spellings(counts.index, listed)]]
    return {"won_products_not_listed": {str(p): int(n) for p, n in unmatched.head(UNLISTED_KEPT).items()},
            "won_products_not_listed_count": int(unmatched.size)}


def _raw_attributes(client_ids: list[str], clients: pd.DataFrame | None,
                    config: ProfileConfig) -> list[dict[str, RawValue]]:
    if clients is None or clients.empty:
        return [{} for _ in client_ids]
    unique = clients.drop_duplicates("client_id").copy()
    unique["client_id"] = unique["client_id"].astype(str)
    unique = unique.set_index("client_id")
    columns: dict[str, list[RawValue]] = {}
    for name in (*FACT_ATTRIBUTES, *config.extra_attributes):
        if name in unique:
            columns[name] = [_raw(v) for v in unique[name].reindex(client_ids).tolist()]
    if "since" in unique:
        days = day_numbers(unique["since"].reindex(client_ids))
        columns["since_day"] = [None if d != d else float(d) for d in days]
    return [{name: values[i] for name, values in columns.items()} for i in range(len(client_ids))]


def _raw(value: object) -> RawValue:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    return str(value)


def _reference_day(deals: pd.DataFrame | None, clients: pd.DataFrame | None, holdings: pd.DataFrame) -> float:
    days: list[float] = []
    sources = ((deals, ("created_at", "closed_at")), (clients, ("since",)), (holdings, ("since",)))
    for frame, columns in sources:
        for column in columns:
            if frame is not None and column in frame and frame[column].notna().any():
                days.append(float(np.nanmax(day_numbers(frame[column]))))
    return max(days) if days else utc_today_number()


# ---------------------------------------------------------------------------------------------------
# Encoder: attribute levels and the acceptance model's design columns.


def _encoder(portfolio: _Portfolio, clients: pd.DataFrame | None, chain: tuple[tuple[str, ...], ...],
             config: ProfileConfig) -> ProfileEncoder:
    present = {name for name in (*FACT_ATTRIBUTES, *config.extra_attributes)
               if any(raw.get(name) is not None for raw in portfolio.raw)}
    if any(raw.get("since_day") is not None for raw in portfolio.raw):
        present.add(TENURE)
    if config.model_attributes is None:
        model_attributes = [a for a in (*FACT_ATTRIBUTES, TENURE, *config.extra_attributes) if a in present]
    else:
        model_attributes = [a for a in config.model_attributes if a in present]
    segment_attributes = [k for level in chain for k in level]
    attributes = tuple(dict.fromkeys([*segment_attributes, *model_attributes]))
    bands: dict[str, tuple[float, ...]] = {TENURE: tuple(config.tenure_bands_years)}
    for name in attributes:
        if name == TENURE or clients is None or name not in clients:
            continue
        column = clients[name]
        if pd.api.types.is_numeric_dtype(column) and column.notna().any():
            if name == "size" and config.size_bands is not None:
                bands[name] = tuple(sorted(config.size_bands))
            else:
                bands[name] = _quantile_edges(column.to_numpy(dtype=np.float64), config.numeric_bands)
    encoder = ProfileEncoder(attributes=attributes, bands=bands)
    encoder.vocab = {name: {} for name in model_attributes}
    fine = chain[0]
    encoder.cell_keys = fine if len(fine) >= 2 else ()
    encoder.n_products = len(portfolio.products)
    return encoder


def _quantile_edges(values: FloatArray, n_bands: int) -> tuple[float, ...]:
    finite = values[np.isfinite(values)]
    quantiles = np.quantile(finite, np.linspace(0, 1, n_bands + 1)[1:-1])
    edges = sorted({float(f"{q:.3g}") for q in quantiles})
    return tuple(edges) or (float(np.median(finite)),)


def _fill_vocab(encoder: ProfileEncoder, levels: list[tuple[Level, ...]], chain: tuple[tuple[str, ...], ...],
                config: ProfileConfig) -> None:
    column = 0
    for name in list(encoder.vocab):
        position = encoder.attributes.index(name)
        counts = Counter(lv[position] for lv in levels if lv[position] is not None)
        frequent = sorted(str(level) for level, n in counts.items() if n >= config.min_level_clients)
        encoder.vocab[name] = {level: column + i for i, level in enumerate(frequent)}
        column += len(frequent)
    if encoder.cell_keys:
        positions = [encoder.attributes.index(k) for k in encoder.cell_keys]
        cells = Counter(tuple(lv[i] for i in positions) for lv in levels)
        frequent_cells = sorted((cell for cell, n in cells.items()
                                 if n >= config.min_level_clients and None not in cell), key=str)
        encoder.cells = {cell: column + i for i, cell in enumerate(frequent_cells)}
        column += len(frequent_cells)
    encoder.held_offset = column
    encoder.width = column + encoder.n_products


# ---------------------------------------------------------------------------------------------------
# Segments: best clients, adoption, ideal income and typical product income, with fallback.


_Stats = tuple[int, int, float, FloatArray, FloatArray, FloatArray]


@dataclass
class _Segments:
    rows: dict[tuple[int, tuple[Level, ...]], int]
    names: list[str]
    level: list[int]
    n_clients: list[int]
    n_best: list[int]
    ideal_income: list[float]
    adoption_best: list[float]  # flattened (segments x products)
    adoption_all: list[float]
    typical_income: list[float]


def best_clients(income: FloatArray, n_products: FloatArray, config: ProfileConfig,
                 ids: npt.NDArray[np.object_]) -> BoolArray:
    """The segment's best clients by the configured rule (income is realised value, or product count).

    Equal incomes are ordered by client id, so the same portfolio in another row order has the same best
    clients (and the same ideal profile)."""
    n = income.size
    if config.best_rule == "all" or n == 0:
        return np.ones(n, dtype=np.bool_)
    if config.best_rule == "pareto_a":
        best = pareto_classes(income, config.best_shares, tie_keys=ids) == "A"
        if best.any():
            return np.asarray(best, dtype=np.bool_)
    # top share, by value then by breadth of holdings (also the fallback when nobody has value)
    order = np.lexsort((ids, -n_products, -income))
    best = np.zeros(n, dtype=np.bool_)
    best[order[: max(1, math.ceil(config.best_top_share * n))]] = True
    return best


def _segments(portfolio: _Portfolio, encoder: ProfileEncoder, levels: list[tuple[Level, ...]],
              chain: tuple[tuple[str, ...], ...], config: ProfileConfig) -> _Segments:
    n_products = len(portfolio.products)
    held = portfolio.held
    breadth = held.sum(axis=1).astype(np.float64)
    client_ids = np.array(portfolio.ids, dtype=object)
    revenue = portfolio.holding_revenue
    # stored[level][values] = (n, n_best, ideal income, adoption best, adoption all, typical income)
    stored: dict[int, dict[tuple[Level, ...], _Stats]] = {}
    for level in range(len(chain) - 1, -1, -1):  # coarse to fine, so every segment's parent exists
        keys = chain[level]
        positions = [encoder.attributes.index(k) for k in keys]
        groups: dict[tuple[Level, ...], list[int]] = {}
        for i, client_levels in enumerate(levels):
            values = tuple(client_levels[p] for p in positions)
            if None not in values:
                groups.setdefault(values, []).append(i)
        stored[level] = {}
        for values, members_list in sorted(groups.items(), key=lambda item: str(item[0])):
            members = np.array(members_list, dtype=np.int64)
            best = members[best_clients(portfolio.income[members], breadth[members], config, client_ids[members])]
            if keys and (members.size < config.min_segment_clients or best.size < config.min_best_clients):
                continue
            parent_typical = (_parent(stored, chain, level, keys, values)[5] if keys
                              else _global_typical(portfolio))
            typical = _typical_income(portfolio, members, revenue, parent_typical, config)
            statistic = np.median if config.ideal_income_statistic == "median" else np.mean
            ideal = float(statistic(portfolio.income[best])) if portfolio.has_income else float("nan")
            stored[level][values] = (int(members.size), int(best.size), ideal, held[best].mean(axis=0),
                                     held[members].mean(axis=0), typical)
        if not keys and not stored[level]:  # no clients at all: an empty all-clients segment
            stored[level][()] = (0, 0, float("nan"), np.zeros(n_products), np.zeros(n_products),
                                 _global_typical(portfolio))
    out = _Segments(rows={}, names=[], level=[], n_clients=[], n_best=[], ideal_income=[], adoption_best=[],
                    adoption_all=[], typical_income=[])
    for level in range(len(chain)):  # finest first; all clients last
        for values, (n, n_best, ideal, a_best, a_all, typical) in stored[level].items():
            out.rows[(level, values)] = len(out.names)
            out.names.append(segment_name(chain[level], values))
            out.level.append(level)
            out.n_clients.append(n)
            out.n_best.append(n_best)
            out.ideal_income.append(ideal)
            out.adoption_best.extend(a_best.tolist())
            out.adoption_all.extend(a_all.tolist())
            out.typical_income.extend(typical.tolist())
    return out


def _parent_rows(segments: _Segments, chain: tuple[tuple[str, ...], ...]) -> list[int]:
    """Row of each segment's next coarser stored segment (the all-clients segment is its own parent)."""
    parents = []
    for (level, values), _row in sorted(segments.rows.items(), key=lambda item: item[1]):
        by_key = dict(zip(chain[level], values, strict=True))
        parent = len(segments.names) - 1
        for coarser in range(level + 1, len(chain)):
            found = segments.rows.get((coarser, tuple(by_key[k] for k in chain[coarser])))
            if found is not None:
                parent = found
                break
        parents.append(parent)
    return parents


def _parent(stored: dict[int, dict[tuple[Level, ...], Any]], chain: tuple[tuple[str, ...], ...], level: int,
            keys: tuple[str, ...], values: tuple[Level, ...]) -> Any:
    by_key = dict(zip(keys, values, strict=True))
    for coarser in range(level + 1, len(chain)):
        parent_values = tuple(by_key[k] for k in chain[coarser])
        if parent_values in stored[coarser]:
            return stored[coarser][parent_values]
    raise AssertionError("the all-clients segment is always stored")


def _holding_incomes(portfolio: _Portfolio) -> dict[str, dict[int, float]]:
    """Each known client's income per product held, as its income was summed (a product given up later takes
    off what it earned this client, not what it typically earns)."""
    out: dict[str, dict[int, float]] = {}
    for client, product, money in zip(portfolio.holding_client.tolist(), portfolio.holding_product.tolist(),
                                       portfolio.holding_income.tolist(), strict=True):
        by_product = out.setdefault(portfolio.ids[client], {})
        by_product[product] = by_product.get(product, 0.0) + money
    return out


def _global_typical(portfolio: _Portfolio) -> FloatArray:
    n_products = len(portfolio.products)
    revenue = portfolio.holding_revenue
    finite = np.isfinite(revenue)
    if not finite.any():
        return np.full(n_products, np.nan)
    overall = float(np.median(revenue[finite]))
    typical = np.full(n_products, overall)
    for j in range(n_products):
        own = revenue[finite & (portfolio.holding_product == j)]
        if own.size:
            typical[j] = float(np.median(own))
    return typical


def _typical_income(portfolio: _Portfolio, members: npt.NDArray[np.int64], revenue: FloatArray,
                    parent: FloatArray, config: ProfileConfig) -> FloatArray:
    in_segment = np.isin(portfolio.holding_client, members) & np.isfinite(revenue)
    typical = parent.copy()
    if not in_segment.any():
        return typical
    products, amounts = portfolio.holding_product[in_segment], revenue[in_segment]
    for j in np.unique(products):
        own = amounts[products == j]
        if own.size >= config.min_income_holders:
            typical[int(j)] = float(np.median(own))
    return typical


# ---------------------------------------------------------------------------------------------------
# Take-up calibration: what the acceptance model's p means for a client lacking the product.

TAKE_UP_DATED_SHARE = 0.9  # holdings with a start date needed (undated ones count as held all along)


def _take_up_calibration(deals: pd.DataFrame | None, clients: pd.DataFrame | None, holdings: pd.DataFrame | None,
                         config: ProfileConfig, reference_day: float, add_won_products: bool,
                         holdings_table: bool, regularisation: dict[str, float],
                         ) -> tuple[TakeUpCalibration | None, dict[str, Any]]:
    """A map from the acceptance model's p to the chance of taking a product up within config.take_up_days,
    and what was found (for the summary), or None and why not.

    The acceptance model is fitted on who holds what, so for a client lacking a product its p reads "clients
    like this one hold it", not the chance that this client takes it: against a year's take-up on the
    synthetic CRM a p of 0.4-0.7 meant 0.29-0.50, and on maven's accounts, which bought most products within
    months, a p of 0.5 meant nearly 1. Profiles fitted as of one horizon before the holdings' last start give
    each client's p for the products it lacked then; a map (logit of the chance quadratic in logit p,
    _quadratic_logit_map) is fitted on whether it took them up by then. Kept only when the map learnt the same
    way one horizon earlier predicted the last window's take-up better (log-loss) than p itself: on maven,
    whose take-up ran out as the accounts filled up, a map learnt on the months before overstated the next
    ones' (ECE 0.03-0.11 raw, 0.25-0.39 mapped) and so is refused; on the synthetic CRM it cut a year's ECE
    from 0.05-0.07 to 0.01-0.02.
    """
    days = int(config.take_up_days)
    info: dict[str, Any] = {"calibrated": False, "days": days}
    if days <= 0:
        return None, {**info, "why": "take_up_days is 0"}
    if holdings is None or holdings.empty:
        holdings = holdings_from_deals(deals) if deals is not None else None
    if holdings is None or holdings.empty or "since" not in holdings:
        return None, {**info, "why": "holdings carry no start dates (since)"}
    holdings = holdings[holdings["client_id"].notna() & holdings["product"].notna()]
    since = day_numbers(holdings["since"])
    dated = float(np.isfinite(since).mean()) if since.size else 0.0
    if dated < TAKE_UP_DATED_SHARE:
        return None, {**info, "why": f"{dated:.0%} of holdings carry a start date (since); "
                                     f"{TAKE_UP_DATED_SHARE:.0%} needed"}
    # The windows end the day after the holdings' own last start, not at the data's last day: an export whose
    # holdings lag its deals would otherwise count the lag as months without take-up (review: a 120-day lag
    # took a p of 0.6 from a chance of 0.445 to 0.294, and the out-of-time check still kept the map).
    end_day = min(reference_day, float(np.nanmax(since))) + 1.0
    starts = (end_day - 2 * days, end_day - days)
    windows = []
    for start in starts:
        window = _take_up_window(deals, clients, holdings, since, start, start + days, config, add_won_products,
                                 holdings_table, regularisation)
        if window is None:
            return None, {**info, "why": f"no holdings started before {_date(start)} (needs two windows of "
                                         f"{days} days up to the holdings' last start, {_date(end_day - 1)})"}
        if window[1].sum() < config.take_up_min_events:
            return None, {**info, "why": f"{int(window[1].sum())} take-ups in the {days} days from {_date(start)} "
                                         f"(needs {config.take_up_min_events} in each of the two windows up to "
                                         f"the holdings' last start, {_date(end_day - 1)})"}
        windows.append(window)
    info["windows"] = [{"from": _date(start), "to": _date(start + days - 1), "pairs": int(y.size),
                        "take_ups": int(y.sum()), "mean_p": round(float(p.mean()), 4),
                        "take_up_rate": round(float(y.mean()), 4)}
                       for start, (p, y) in zip(starts, windows, strict=True)]
    earlier = _quadratic_logit_map(*windows[0], days)
    p, y = windows[1]
    raw_loss, mapped_loss = _log_loss(p, y), _log_loss(earlier.chance(p), y) if earlier is not None else math.inf
    info["check"] = {"log_loss_p": round(raw_loss, 4),
                     "log_loss_calibrated": None if earlier is None else round(mapped_loss, 4),
                     "ece_p": round(expected_calibration_error(y, p), 4),
                     "ece_calibrated": (None if earlier is None
                                        else round(expected_calibration_error(y, earlier.chance(p)), 4))}
    if earlier is None or mapped_loss >= raw_loss:
        return None, {**info, "why": "learnt on the window before, the map did not predict the last window's "
                                     "take-up better than p itself"}
    calibration = _quadratic_logit_map(p, y, days)
    if calibration is None:
        return None, {**info, "why": "in the last window p did not rise with take-up"}
    return calibration, {**info, "calibrated": True, "intercept": round(calibration.intercept, 4),
                         "slope": round(calibration.slope, 4), "curvature": round(calibration.curvature, 4)}


def _take_up_window(deals: pd.DataFrame | None, clients: pd.DataFrame | None, holdings: pd.DataFrame,
                    since: FloatArray, start: float, end: float, config: ProfileConfig, add_won_products: bool,
                    holdings_table: bool, regularisation: dict[str, float] | None = None,
                    ) -> tuple[FloatArray, FloatArray] | None:
    """p of each product each client lacked on day `start` (profiles fitted on the data as of then), and
    whether it took it up before `end`; None when there were no holdings or clients then."""
    before = ~(since >= start)  # undated holdings count as held all along
    held_then = holdings[before]
    if held_then.empty:
        return None
    holders = set(held_then["client_id"].astype(str))
    ids: list[str] = []
    if clients is not None and "client_id" in clients:
        known = clients[clients["client_id"].notna()]
        arrived = (day_numbers(known["since"]) < start) if "since" in known else np.zeros(len(known), dtype=bool)
        # a client without a start date is counted from its first holding
        present = arrived | known["client_id"].astype(str).isin(holders).to_numpy()
        ids = list(dict.fromkeys(known.loc[present, "client_id"].astype(str)))
    ids = list(dict.fromkeys([*ids, *sorted(holders)]))
    if len(ids) > config.take_up_max_clients:
        chosen = np.sort(np.random.default_rng(0).choice(len(ids), size=config.take_up_max_clients, replace=False))
        ids = [ids[i] for i in chosen]
    keep = set(ids)
    held_then = held_then[held_then["client_id"].astype(str).isin(keep)]
    if held_then.empty:
        return None
    snapshot_deals = None
    if deals is not None:
        snapshot_deals = deals
        if "client_id" in deals:
            snapshot_deals = deals[deals["client_id"].astype(str).isin(keep)]
        if "created_at" in deals:
            snapshot_deals = snapshot_deals[day_numbers(snapshot_deals["created_at"]) < start].copy()
            # A deal closed on or after `start` was open then; without close dates no outcome is known then.
            late = (~(day_numbers(snapshot_deals["closed_at"]) < start) if "closed_at" in snapshot_deals
                    else np.ones(len(snapshot_deals), dtype=np.bool_))
            snapshot_deals.loc[late, "status"] = "open"
            snapshot_deals.loc[late, "closed_at"] = pd.NaT
    snapshot_clients = None if clients is None else clients[clients["client_id"].astype(str).isin(keep)]
    try:
        profiles = fit_profiles(snapshot_deals, snapshot_clients, held_then, replace(config, take_up_days=0),
                                add_won_products=add_won_products, holdings_table=holdings_table,
                                regularisation=regularisation)
    except InsufficientData:
        return None
    resolved = profiles.resolve([ClientFacts(c) for c in ids], as_of_day=start - 1.0)
    p = profiles.p_accept(resolved)
    lacking = np.ones(p.shape, dtype=np.bool_)
    for i, client in enumerate(resolved):
        lacking[i, list(client.held)] = False
    taken = np.zeros(p.shape, dtype=np.bool_)
    position = {c: i for i, c in enumerate(ids)}
    later = (since >= start) & (since < end)
    for taker, product in zip(holdings.loc[later, "client_id"].astype(str).tolist(),
                              holdings.loc[later, "product"].astype(str).tolist(), strict=True):
        row, column = position.get(str(taker)), profiles.product_position(str(product))
        if row is not None and column is not None:
            taken[row, column] = True
    return p[lacking], taken[lacking].astype(np.float64)


def _quadratic_logit_map(p: FloatArray, y: FloatArray, days: int) -> TakeUpCalibration | None:
    """logit(chance) quadratic in z = logit(p) by maximum likelihood, z clamped to the range seen and cut at the
    parabola's vertex (flat beyond it, so the chance never falls as p rises); None unless it rises somewhere.

    Linear alone (Platt) fits the many pairs of low p and squeezes the few high ones: on the synthetic CRM a
    year's take-up of the products with p >= 0.5 was 0.42-0.46, the linear map said 0.35-0.40, the quadratic
    0.41-0.45 (Brier better on all six seeds tried)."""
    if y.min() == y.max():
        return None
    z = TakeUpCalibration.logit(p)
    low, high = float(z.min()), float(z.max())
    weights, intercept = logistic_with_offset(np.column_stack([z, z * z]), y, np.zeros(y.size), 1e4)
    slope, curvature = float(weights[0]), float(weights[1])
    if curvature != 0.0:
        vertex = -slope / (2.0 * curvature)
        low, high = (max(low, vertex), high) if curvature > 0 else (low, min(high, vertex))
    calibration = TakeUpCalibration(intercept=float(intercept), slope=slope, days=days, curvature=curvature,
                                    low=low, high=high)
    return calibration if high > low and calibration.rises() else None


def _log_loss(p: FloatArray, y: FloatArray) -> float:
    clipped = np.clip(p, 1e-6, 1.0 - 1e-6)
    return float(-np.mean(y * np.log(clipped) + (1.0 - y) * np.log(1.0 - clipped)))


def _date(day: float) -> str:
    return str(np.datetime64(int(math.floor(day)), "D"))


# ---------------------------------------------------------------------------------------------------
# Acceptance model.


def _fit_acceptance(design: FloatArray, held: BoolArray, prior_logit: FloatArray, encoder: ProfileEncoder,
                    config: ProfileConfig, fixed: FloatArray | None = None) -> AcceptanceModel:
    """Per product: the segment's share as a fixed offset, plus L2-shrunk adjustments from the client.

    The offset (coefficient 1) makes the segment's popularity the starting point; the client's
    attributes, the products it already holds and how many it holds move it only as far as the data
    support, since the L2 penalty pulls every adjustment towards zero.
    """
    n_clients, n_products = held.shape
    coef = np.zeros((n_products, encoder.width))
    intercept = np.zeros(n_products)
    count_coef = np.zeros(n_products)
    fitted = np.zeros(n_products, dtype=np.bool_)
    chosen = np.full(n_products, np.nan)
    n_held = held.sum(axis=1).astype(np.float64)
    fold = np.random.default_rng(0).permutation(n_clients) % CV_FOLDS
    # Small designs are fitted dense, on one BLAS thread (threads only fight over tiny matrices); large
    # ones sparse, as the design is mostly zeros (one-hots and held flags).
    dense = n_clients * (encoder.width + 1) <= DENSE_LIMIT
    sparse_design = None if dense else sparse.csr_matrix(design)
    with threadpool_limits(limits=1, user_api="blas"):
        for j in range(n_products):
            y = held[:, j].astype(np.float64)
            holders = int(y.sum())
            if min(holders, n_clients - holders) < config.min_product_holders:
                continue  # the segment's smoothed share alone
            own = encoder.held_offset + j
            keep = np.ones(encoder.width)
            keep[own] = 0.0  # a product never explains itself
            count = np.log1p(n_held - y)[:, None]
            features: Any
            if sparse_design is None:
                features = np.column_stack([design * keep, count])
            else:
                features = sparse.hstack([sparse_design @ sparse.diags(keep), sparse.csr_matrix(count)],
                                         format="csr")
            given = np.nan if fixed is None else float(fixed[j])
            chosen[j] = given if given == given else _regularisation(features, y, prior_logit[:, j], fold, config)
            weights, intercept[j] = logistic_with_offset(features, y, prior_logit[:, j], float(chosen[j]))
            coef[j] = weights[:-1]
            coef[j, own] = 0.0
            count_coef[j] = weights[-1]
            fitted[j] = True
    return AcceptanceModel(coef=coef, intercept=intercept, count_coef=count_coef,
                           prior_coef=np.ones(n_products), fitted=fitted, regularisation=chosen)


def _regularisation(features: Any, y: FloatArray, offset: FloatArray, fold: npt.NDArray[np.int64],
                    config: ProfileConfig) -> float:
    """The configured C, or the grid's C with the least cross-validated log-loss."""
    if config.regularisation is not None:
        return config.regularisation
    if y.size > config.cv_max_clients:
        return 1.0
    # Each client's held-out log-loss under each C, so the choice can see how noisy the comparison is.
    losses = np.zeros((len(REGULARISATION_GRID), y.size))
    for k in range(CV_FOLDS):
        train, test = fold != k, fold == k
        if y[train].min() == y[train].max():
            continue
        start = None
        for i, c in enumerate(REGULARISATION_GRID):  # strongest first, each warm-starting the next
            weights, bias = logistic_with_offset(features[train], y[train], offset[train], c, start=start)
            start = np.concatenate([[bias], weights])
            z = features[test] @ weights + bias + offset[test]
            losses[i, test] = np.logaddexp(0.0, z) - y[test] * z
    # The one-standard-error rule (Hastie, Tibshirani & Friedman, The Elements of Statistical Learning, 7.10):
    # the strongest penalty whose mean loss is within one standard error of the best. On a few dozen clients
    # the best C by CV is mostly noise and moves the chance away from the segment's popularity for nothing
    # (maven at 84 clients: recall@3 0.890 against popularity's 0.910); on thousands the rule picks the best.
    mean = losses.mean(axis=1)
    best = int(np.argmin(mean))
    # Paired: each client's loss under C minus under the best C, so what all clients share cancels out.
    excess = losses - losses[best]
    standard_error = excess.std(axis=1, ddof=1) / np.sqrt(y.size) if y.size > 1 else np.zeros(len(mean))
    return REGULARISATION_GRID[int(np.flatnonzero(excess.mean(axis=1) <= standard_error)[0])]


def logistic_with_offset(features: Any, y: FloatArray, offset: FloatArray, c: float, max_iter: int = 50,
                         tol: float = 1e-7, start: FloatArray | None = None) -> tuple[FloatArray, float]:
    """L2 logistic regression with a fixed offset, by Newton's method.

    Minimises C * log-loss + |w|^2 / 2 (scikit-learn's scaling; the intercept is not penalised).
    `features` is a dense array or a scipy sparse matrix; `start` = (intercept, *weights) to warm-start.
    Returns (weights, intercept).
    """
    n_rows, n_features = features.shape
    dense = isinstance(features, np.ndarray)
    augmented: Any = (np.column_stack([np.ones(n_rows), features]) if dense
                      else sparse.hstack([sparse.csr_matrix(np.ones((n_rows, 1))), features], format="csr"))
    penalty = np.ones(n_features + 1)
    penalty[0] = 1e-9  # the intercept is free; a hair of ridge keeps the Hessian invertible

    def objective(w: FloatArray) -> float:
        z = augmented @ w + offset
        return c * float(np.sum(np.logaddexp(0.0, z) - y * z)) + 0.5 * float(w[1:] @ w[1:])

    w = np.zeros(n_features + 1) if start is None else start.copy()
    current = objective(w)
    for _ in range(max_iter):
        p = special.expit(augmented @ w + offset)
        gradient = c * (augmented.T @ (p - y)) + penalty * w
        weight = c * p * (1.0 - p)
        if dense:
            hessian = augmented.T @ (augmented * weight[:, None]) + np.diag(penalty)
        else:
            hessian = (augmented.T @ augmented.multiply(weight[:, None]).tocsr()).toarray() + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while True:  # halve the step until the objective goes down (Newton rarely needs it)
            candidate = w - scale * step
            value = objective(candidate)
            if value <= current or scale < 1e-6:
                break
            scale *= 0.5
        converged = abs(current - value) <= tol * max(1.0, abs(current))
        w, current = candidate, value
        if converged:
            break
    return w[1:], float(w[0])


__all__ = ["BEST_RULES", "ProfileConfig", "best_clients", "fit_profiles", "logistic_with_offset"]
