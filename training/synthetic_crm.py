"""A seeded synthetic CRM whose ground truth is known: deals, clients, holdings and the answers.

The demo data, the end-to-end tests and the benchmarks use it to check that a model recovers what was
planted: a calibrated win probability that depends on the client's history *as of* each deal's date,
a slow drift over time, ideal product profiles per segment, and holdings that also follow the client's
region, tenure and product affinities and its business line (how it does business: not in the CRM, but
seen in the products it holds), with the likeliest missing product of clients that hold their whole
ideal profile recorded (planted cross-sell gaps). Same seed and size give byte-identical files; nothing
depends on today. Business lines and what they add to the holdings come from a random stream of their
own, so the deals and clients of a seed do not depend on them.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from model.contract import CLIENTS, DEALS, HOLDINGS

__all__ = ["EXTRA_DEAL_COLUMNS", "SyntheticCRM", "export_as_of", "generate", "truth_readme", "write"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# ---------------------------------------------------------------------------------------------------
# Calendar: fixed, so the output never depends on the day it is generated.
START_DATE = np.datetime64("2021-01-01", "D")
END_DATE = np.datetime64("2025-12-31", "D")
N_DAYS = int((END_DATE - START_DATE).astype(np.int64)) + 1
OPEN_WINDOW_DAYS = 45  # deals this young at the end of the span are still being worked
MIN_CYCLE_DAYS, MAX_CYCLE_DAYS = 5, 120
LOST_CLIENT_DAYS = 360  # the DOMAIN's longest practical "lost client" window
# Date columns carry the resolution pandas gives when it reads an ISO date from CSV, so a frame that
# was written and read back compares equal to the generated one.
DATE_DTYPE = "datetime64[us]"

# ---------------------------------------------------------------------------------------------------
# The world: a bank selling to small and medium businesses (the DOMAIN's running example).


@dataclass(frozen=True)
class Product:
    name: str
    family: str
    base_price: float  # typical amount of a deal for a medium client
    base_hours: float  # typical manager effort for a deal at the base price


PRODUCTS: tuple[Product, ...] = (
    Product("settlement_account", "accounts", 900.0, 2.0),
    Product("payroll", "accounts", 2400.0, 6.0),
    Product("deposit", "accounts", 4000.0, 3.0),
    Product("credit_line", "lending", 18000.0, 14.0),
    Product("leasing", "lending", 30000.0, 18.0),
    Product("bank_guarantee", "lending", 7000.0, 8.0),
    Product("acquiring", "payments", 2000.0, 4.0),
    Product("ecommerce_gateway", "payments", 2800.0, 6.0),
    Product("fx_hedging", "markets", 6500.0, 9.0),
    Product("cash_collection", "services", 1500.0, 3.0),
    Product("business_insurance", "services", 3500.0, 5.0),
)
PRODUCT_NAMES: tuple[str, ...] = tuple(p.name for p in PRODUCTS)

INDUSTRIES: tuple[str, ...] = (
    "retail", "manufacturing", "construction", "logistics",
    "it_services", "healthcare", "agriculture", "hospitality",
)
SIZES: tuple[str, ...] = ("small", "medium", "large")
SIZE_SHARES = (0.50, 0.33, 0.17)
SIZE_PRICE_FACTOR = (0.6, 1.0, 2.2)  # larger clients buy bigger tickets of the same product
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")
MANAGERS: tuple[str, ...] = (
    "Anna Petrova", "Boris Ivanov", "Clara Novak", "Daniel Weber", "Elena Sokolova", "Farid Haddad",
    "Greta Lind", "Hugo Martin", "Irina Volkova", "Jonas Berg", "Katya Orlova", "Leo Fischer",
)
# source: (share of deals, effect on the win logit). Referrals close best, cold outreach worst.
SOURCES: dict[str, tuple[float, float]] = {
    "inbound": (0.30, 0.45),
    "referral": (0.15, 0.90),
    "outbound": (0.30, -0.65),
    "partner": (0.15, 0.20),
    "event": (0.10, -0.15),
}
# competitor named in the deal: (share among deals that name one, effect on the win logit)
COMPETITORS: dict[str, tuple[float, float]] = {
    "Northwind Bank": (0.35, -0.30),
    "Fjord Capital": (0.25, -0.20),
    "Atlas Finance": (0.25, -0.15),
    "Meridian Trust": (0.15, -0.35),
}
COMPETITOR_NAMED_SHARE = 0.30
N_CAMPAIGNS = 30

# Product-to-industry fit: the strong pairs a banker would name. It drives both what a segment buys
# (the ideal profiles) and how likely a deal is won. Unlisted pairs get small seeded noise only.
INDUSTRY_FIT: dict[tuple[str, str], float] = {
    ("retail", "acquiring"): 1.3, ("retail", "cash_collection"): 1.0, ("retail", "ecommerce_gateway"): 0.5,
    ("retail", "bank_guarantee"): -0.7,
    ("manufacturing", "leasing"): 1.1, ("manufacturing", "fx_hedging"): 1.0,
    ("manufacturing", "credit_line"): 0.6, ("manufacturing", "cash_collection"): -0.6,
    ("construction", "bank_guarantee"): 1.3, ("construction", "leasing"): 0.8,
    ("construction", "credit_line"): 0.5, ("construction", "ecommerce_gateway"): -0.8,
    ("logistics", "leasing"): 1.2, ("logistics", "fx_hedging"): 0.6,
    ("logistics", "business_insurance"): 0.7,
    ("it_services", "ecommerce_gateway"): 1.2, ("it_services", "payroll"): 0.9,
    ("it_services", "deposit"): 0.4, ("it_services", "cash_collection"): -1.1,
    ("it_services", "leasing"): -0.7,
    ("healthcare", "business_insurance"): 1.1, ("healthcare", "payroll"): 0.7,
    ("healthcare", "deposit"): 0.5, ("healthcare", "fx_hedging"): -0.9,
    ("agriculture", "credit_line"): 1.2, ("agriculture", "business_insurance"): 0.9,
    ("agriculture", "leasing"): 0.6, ("agriculture", "ecommerce_gateway"): -1.0,
    ("hospitality", "acquiring"): 1.2, ("hospitality", "cash_collection"): 0.8,
    ("hospitality", "payroll"): 0.4, ("hospitality", "fx_hedging"): -0.8,
    ("hospitality", "bank_guarantee"): -0.6,
}
FIT_NOISE_SD = 0.15
# How much each size band leans to a product (in the ideal profile only, not in the win logit).
SIZE_AFFINITY: dict[tuple[str, str], float] = {
    ("small", "acquiring"): 0.4, ("small", "cash_collection"): 0.3, ("small", "leasing"): -0.6,
    ("small", "fx_hedging"): -0.9, ("small", "payroll"): -0.5,
    ("medium", "payroll"): 0.3, ("medium", "credit_line"): 0.3,
    ("large", "payroll"): 0.9, ("large", "fx_hedging"): 0.7, ("large", "leasing"): 0.4,
    ("large", "deposit"): 0.5, ("large", "acquiring"): -0.2,
}
# Products nearly everyone has, whatever the segment: what a popularity baseline gets right.
GENERAL_POPULARITY: dict[str, float] = {"settlement_account": 0.9, "deposit": 0.2}
PROFILE_NOISE_SD = 0.25
IDEAL_PROFILE_SIZES = (3, 4, 5)
IDEAL_ADOPTION_RANGE = (0.80, 0.92)  # chance a best client of the segment holds an ideal product
# Share of a best client's adoption that a middle and a weak client reach, by tier.
TIER_CUTS = (0.35, 0.75)  # percentile of latent value within the segment: weak < .35 <= middle < .75 <= best
TIER_ADOPTION_SCALE = (0.30, 0.60, 1.00)
# What a client holds beyond its segment. Each product's chance is a logistic in a latent propensity:
#   logit(segment chance, tier-scaled) + region effect + tenure effect + sum of affinities from held products
# and a client's planted gap is the product that propensity ranks highest among those it lacks.
# Products are drawn one after another along a client's usual journey, so an affinity only runs forward.
JOURNEY: tuple[str, ...] = (
    "settlement_account", "payroll", "deposit", "acquiring", "ecommerce_gateway", "cash_collection",
    "credit_line", "bank_guarantee", "leasing", "business_insurance", "fx_hedging",
)
# Planted affinities (logit lift): holding the first product makes the second likelier. Together they form
# chains across families: acquiring -> cash_collection -> business_insurance, credit_line -> leasing ->
# business_insurance, acquiring -> ecommerce_gateway -> fx_hedging.
AFFINITIES: tuple[tuple[str, str, float], ...] = (
    ("payroll", "deposit", 1.1),  # salaries pass through, balances stay
    ("payroll", "business_insurance", 0.5),  # staff cover
    ("acquiring", "cash_collection", 1.6),  # a shop with card terminals also handles cash
    ("acquiring", "ecommerce_gateway", 1.1),  # a merchant going online
    ("ecommerce_gateway", "cash_collection", -1.2),  # ... and who sells online handles little cash
    ("ecommerce_gateway", "fx_hedging", 0.8),  # selling abroad online
    ("cash_collection", "business_insurance", 0.6),  # cash in transit cover
    ("credit_line", "bank_guarantee", 1.6),  # guarantees issued under the credit limit
    ("credit_line", "leasing", 0.7),
    ("leasing", "business_insurance", 2.3),  # leased assets must be insured
)
# Region effects (logit, centred per product over the regions when drawn): trade at the borders, the
# capital online, a cash economy in the south, industry in the east, a harsh climate in the north.
REGION_EFFECT: dict[tuple[str, str], float] = {
    ("west", "fx_hedging"): 0.9, ("east", "fx_hedging"): 0.4, ("central", "fx_hedging"): 0.3,
    ("central", "ecommerce_gateway"): 0.9, ("central", "deposit"): 0.3, ("central", "cash_collection"): -0.5,
    ("south", "cash_collection"): 0.8, ("south", "credit_line"): 0.5, ("south", "ecommerce_gateway"): -0.5,
    ("east", "leasing"): 0.7, ("east", "bank_guarantee"): 0.5,
    ("north", "business_insurance"): 0.8, ("north", "deposit"): 0.4,
}
# Tenure effect (logit per year as a client at the end of the span, from TENURE_CENTRE_YEARS, capped at
# +-TENURE_CAP_YEARS): a bank lends to clients it knows; newcomers start with payments.
TENURE_PER_YEAR: dict[str, float] = {
    "credit_line": 0.60, "bank_guarantee": 0.50, "leasing": 0.40, "deposit": 0.20, "fx_hedging": 0.20,
    "acquiring": -0.10, "ecommerce_gateway": -0.20,
}
TENURE_CENTRE_YEARS = 2.5
TENURE_CAP_YEARS = 2.5
PORTFOLIO_DEAL_SHARE = 0.90  # most deals are for products the client needs; the rest are cold offers
# A client's latent value (N(0, 1)) scales its deal rate and its ticket size, log-linearly.
DEALS_PER_VALUE = 0.9
SPEND_PER_VALUE = 0.25


@dataclass(frozen=True)
class BusinessLine:
    """How a client does business. The CRM does not record it and it varies within every segment, but the
    products a client holds show it: nearly every client of a line holds its entry product, and most go on
    to its follow-on product. So a client holding the entry but not yet the follow-on is a cross-sell that
    the segment's popularity cannot see: it knows that a retail segment takes cards, not which of a
    construction segment's clients do."""

    name: str
    entry: str  # the product that opens the line
    follow_on: str  # the product the line leads to
    weights: tuple[tuple[str, float], ...] = ()  # relative prior weight by region or size (1 elsewhere)


BUSINESS_LINES: tuple[BusinessLine, ...] = (
    # shops, restaurants, clinics: card terminals first, then the cash as well (a cash economy in the south)
    BusinessLine("card_merchant", "acquiring", "cash_collection", (("south", 1.5),)),
    # sells online, and soon abroad (the capital sells online)
    BusinessLine("online_seller", "ecommerce_gateway", "fx_hedging", (("central", 2.0),)),
    # many staff: salaries pass through, balances stay (large clients employ more)
    BusinessLine("employer", "payroll", "deposit", (("large", 2.0), ("small", 0.5))),
    # works on tenders and contracts: guarantees issued under the credit limit (industry in the east)
    BusinessLine("contractor", "credit_line", "bank_guarantee", (("east", 1.5),)),
    # runs vehicles and machines: leased assets must be insured
    BusinessLine("asset_operator", "leasing", "business_insurance", (("east", 1.5),)),
)
# Every client has one line, drawn with the weights above. Besides what the pipeline brings, a client takes
# each product with chance expit(FOLLOW_ON_BASE + its line's lift on it + region effect + tenure effect).
LINE_ENTRY_LIFT = 6.0  # ~88% of a line's clients take its entry product
LINE_FOLLOW_ON_LIFT = 4.5  # ~62% take its follow-on product
FOLLOW_ON_BASE = -4.0  # any other product ~2%, moved by region and tenure
HOLDINGS_STREAM = 1  # business lines and follow-on products draw from SeedSequence(seed, spawn_key=(1,))
GAP_CLIENT_SHARE = 0.15  # at most this share of the clients gets a planted gap
GAP_MIN_IDEAL_SHARE = 1.0  # planted on clients that already hold their segment's whole ideal profile,
GAP_MIN_PRODUCTS = 2  # ... established ones, holding at least two products,
GAP_MIN_PROPENSITY = 0.5  # ... and more likely than not to take the product they lack most likely
GAP_REASONS: tuple[str, ...] = ("segment_profile", "business_line", "affinity", "region", "tenure", "segment_fit")


@dataclass(frozen=True)
class WinTruth:
    """Coefficients of the true win logit. Listed in the truth README so a reader can check a model."""

    base: float = -1.25
    drift_amplitude: float = 0.20  # a slow wave: the win rate moves a few points a year
    drift_period_years: float = 4.0
    drift_per_year: float = -0.05  # and a slow decline on top
    # Client history as of the deal's created date (only deals closed strictly before it).
    prospect: float = -0.95  # no earlier win
    new: float = 0.10  # exactly one earlier win
    regular: float = 0.55  # two or more earlier wins
    lost: float = -0.55  # earlier wins, none in the last LOST_CLIENT_DAYS
    recency_per_log_month: float = -0.30  # times log1p(days since last win / 30)
    frequency_per_log_win: float = 0.45  # times log1p(earlier wins)
    money_per_log_thousand: float = 0.12  # times log1p(earlier won amount / 1000)
    fit_scale: float = 1.3  # times INDUSTRY_FIT (+ noise)
    amount_per_log_ratio: float = -0.70  # times log(amount / product base price)
    manager_skill_sd: float = 0.20


WIN = WinTruth()


# ---------------------------------------------------------------------------------------------------
# The public result.

EXTRA_DEAL_COLUMNS: tuple[str, ...] = ("source", "campaign_code", "competitor")


@dataclass(frozen=True)
class SyntheticCRM:
    deals: pd.DataFrame  # canonical deals table + EXTRA_DEAL_COLUMNS
    clients: pd.DataFrame  # client_id, industry, size, region, since
    holdings: pd.DataFrame  # client_id, product, since, revenue
    deal_truth: pd.DataFrame  # deal_id, true_p_win, true_value
    ideal_profiles: pd.DataFrame  # industry, size, product, ideal, true_adoption
    planted_gaps: pd.DataFrame  # client_id, product, reason, propensity
    product_catalogue: pd.DataFrame  # product, family, base_price
    propensity: pd.DataFrame  # client_id + one column per product: the latent chance given what is held
    business_lines: pd.DataFrame  # client_id, business_line


# ---------------------------------------------------------------------------------------------------
# Internal state of one draw, kept as numpy arrays indexed by client / deal / product position.


@dataclass(frozen=True)
class _World:
    fit: FloatArray  # (industry, product) win-logit fit
    ideal: BoolArray  # (industry, size, product)
    adoption: FloatArray  # (industry, size, product): chance a best client holds it
    region_effect: FloatArray  # (region, product) logit, centred per product
    tenure_per_year: FloatArray  # (product,) logit per year of tenure
    affinity: FloatArray  # (trigger, follower) logit lift; non-zero only forward along JOURNEY
    line_lift: FloatArray  # (business line, product) logit lift on what the line's clients take
    manager_skill: FloatArray  # (manager,)
    campaign_codes: tuple[str, ...]


@dataclass(frozen=True)
class _Clients:
    industry: IntArray
    size: IntArray
    region: IntArray
    arrival: IntArray  # day index of the first contract
    latent_value: FloatArray  # N(0, 1): drives how often and how much the client buys
    tier: IntArray  # 0 weak, 1 middle, 2 best within its segment
    owner: IntArray  # the manager who usually handles the client


@dataclass(frozen=True)
class _Deals:
    client: IntArray
    created: IntArray  # day index
    closed: IntArray  # day index the deal closes (meaningless for open deals)
    is_open: BoolArray
    product: IntArray
    amount: FloatArray
    effort_hours: FloatArray
    source: IntArray
    manager: IntArray
    campaign: IntArray
    competitor: IntArray  # -1 when no competitor is named
    static_logit: FloatArray  # every part of the true logit that does not depend on history


# ---------------------------------------------------------------------------------------------------
# Generation.


def generate(seed: int = 7, n_deals: int = 20_000) -> SyntheticCRM:
    """Draw a synthetic CRM of `n_deals` deals; the same seed and size always give the same data."""
    if n_deals < 1:
        raise ValueError(f"n_deals must be >= 1, got {n_deals}")
    rng = np.random.default_rng(seed)
    world = _draw_world(rng)
    clients = _draw_clients(rng, max(50, n_deals // 8))
    base_logit = _base_logit(clients, world)
    portfolio = _draw_portfolios(rng, base_logit, world)
    deals = _draw_deals(rng, n_deals, clients, portfolio, world)
    outcome_draw = rng.random(n_deals)
    true_p, won = _simulate_outcomes(deals, outcome_draw, len(clients.industry))
    won_closed = won & ~deals.is_open
    won_matrix = _won_matrix(deals, won_closed, len(clients.industry))
    # Everything above is the pipeline. What the clients hold beside it comes from a stream of its own, so
    # the deals and clients of a seed never depend on it.
    holdings_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(HOLDINGS_STREAM,)))
    line = _draw_lines(holdings_rng, clients)
    follow_on_logit = _follow_on_logit(clients, line, world)
    held = (portfolio | won_matrix) | (holdings_rng.random(follow_on_logit.shape) < _expit(follow_on_logit))
    propensity = _propensity(base_logit, follow_on_logit, held, world)
    gaps = _plant_gaps(holdings_rng, clients, propensity, held, world)
    deal_ids = _ids("D", n_deals, 6)
    client_ids = _ids("C", len(clients.industry), 5)
    return SyntheticCRM(
        deals=_deals_frame(deals, won_closed, world, deal_ids, client_ids),
        clients=_clients_frame(clients, client_ids),
        holdings=_holdings_frame(holdings_rng, clients, deals, won_closed, held, client_ids),
        deal_truth=_truth_frame(deals, true_p, deal_ids),
        ideal_profiles=_ideal_profiles_frame(world),
        planted_gaps=_gaps_frame(gaps, clients, line, held, world, propensity, client_ids),
        product_catalogue=_catalogue_frame(),
        propensity=_propensity_frame(propensity, client_ids),
        business_lines=_business_lines_frame(line, client_ids),
    )


def _draw_world(rng: np.random.Generator) -> _World:
    n_ind, n_size, n_prod = len(INDUSTRIES), len(SIZES), len(PRODUCTS)
    fit = rng.normal(0.0, FIT_NOISE_SD, size=(n_ind, n_prod))
    for (industry, product), value in INDUSTRY_FIT.items():
        fit[INDUSTRIES.index(industry), PRODUCT_NAMES.index(product)] += value
    size_affinity = np.zeros((n_size, n_prod))
    for (size, product), value in SIZE_AFFINITY.items():
        size_affinity[SIZES.index(size), PRODUCT_NAMES.index(product)] = value
    popularity = np.array([GENERAL_POPULARITY.get(p, 0.0) for p in PRODUCT_NAMES])
    propensity = (fit[:, None, :] + size_affinity[None, :, :] + popularity[None, None, :]
                  + rng.normal(0.0, PROFILE_NOISE_SD, size=(n_ind, n_size, n_prod)))
    profile_size = rng.choice(IDEAL_PROFILE_SIZES, size=(n_ind, n_size))
    # rank 0 = the segment's most wanted product; the top `profile_size` form its ideal profile
    rank = np.argsort(np.argsort(-propensity, axis=2, kind="stable"), axis=2, kind="stable")
    ideal = rank < profile_size[:, :, None]
    # Non-ideal products are still held now and then, more often where they fit the segment.
    adoption = np.clip(0.05 * np.exp(0.9 * propensity), 0.01, 0.25)
    adoption[ideal] = rng.uniform(*IDEAL_ADOPTION_RANGE, size=int(ideal.sum()))
    codes = rng.choice(np.arange(100, 1000), size=N_CAMPAIGNS, replace=False)
    return _World(
        fit=fit,
        ideal=ideal,
        adoption=adoption,
        region_effect=_region_effect(),
        tenure_per_year=np.array([TENURE_PER_YEAR.get(p, 0.0) for p in PRODUCT_NAMES]),
        affinity=_affinity_matrix(),
        line_lift=_line_lift_matrix(),
        manager_skill=rng.normal(0.0, WIN.manager_skill_sd, size=len(MANAGERS)),
        campaign_codes=tuple(f"CMP-{int(c)}" for c in codes),
    )


def _region_effect() -> FloatArray:
    """(region, product) logit effects, centred per product so they average out over the regions."""
    effect = np.zeros((len(REGIONS), len(PRODUCTS)))
    for (region, product), value in REGION_EFFECT.items():
        effect[REGIONS.index(region), PRODUCT_NAMES.index(product)] = value
    centred: FloatArray = effect - effect.mean(axis=0)
    return centred


def _affinity_matrix() -> FloatArray:
    """(trigger, follower) logit lifts; every affinity runs forward along JOURNEY."""
    affinity = np.zeros((len(PRODUCTS), len(PRODUCTS)))
    for trigger, follower, lift in AFFINITIES:
        if JOURNEY.index(trigger) >= JOURNEY.index(follower):
            raise AssertionError(f"affinity {trigger} -> {follower} runs against the journey")
        affinity[PRODUCT_NAMES.index(trigger), PRODUCT_NAMES.index(follower)] = lift
    return affinity


def _line_lift_matrix() -> FloatArray:
    """(business line, product) logit lifts: the entry product's and the follow-on product's."""
    lift = np.zeros((len(BUSINESS_LINES), len(PRODUCTS)))
    for i, line in enumerate(BUSINESS_LINES):
        lift[i, PRODUCT_NAMES.index(line.entry)] = LINE_ENTRY_LIFT
        lift[i, PRODUCT_NAMES.index(line.follow_on)] = LINE_FOLLOW_ON_LIFT
    return lift


def _tenure_offset(arrival: IntArray) -> FloatArray:
    """Years as a client at the end of the span, from TENURE_CENTRE_YEARS, capped at +-TENURE_CAP_YEARS."""
    offset: FloatArray = np.clip((N_DAYS - arrival) / 365.25 - TENURE_CENTRE_YEARS, -TENURE_CAP_YEARS,
                                 TENURE_CAP_YEARS)
    return offset


def _draw_clients(rng: np.random.Generator, n_clients: int) -> _Clients:
    industry = rng.integers(0, len(INDUSTRIES), size=n_clients)
    size = rng.choice(len(SIZES), size=n_clients, p=SIZE_SHARES)
    region = rng.integers(0, len(REGIONS), size=n_clients)
    # A quarter is the book the CRM started with; the rest arrive steadily until two months before the end.
    founding = rng.random(n_clients) < 0.25
    arrival = np.where(founding, rng.integers(0, 60, size=n_clients),
                       rng.integers(0, N_DAYS - 60, size=n_clients)).astype(np.int64)
    latent_value = rng.normal(0.0, 1.0, size=n_clients)
    # Tiers rank the money a client is expected to bring over the span (how often it buys, how much,
    # and for how long it has been a client), so the best tier is close to the top by won amount.
    expected_money_log = (DEALS_PER_VALUE + SPEND_PER_VALUE) * latent_value + np.log(N_DAYS - arrival)
    segment = industry * len(SIZES) + size
    percentile = _percentile_within(segment, expected_money_log)
    tier = np.searchsorted(np.array(TIER_CUTS), percentile, side="right")
    return _Clients(
        industry=industry.astype(np.int64),
        size=size.astype(np.int64),
        region=region.astype(np.int64),
        arrival=arrival,
        latent_value=latent_value,
        tier=tier.astype(np.int64),
        owner=rng.integers(0, len(MANAGERS), size=n_clients).astype(np.int64),
    )


def _percentile_within(group: IntArray, value: FloatArray) -> FloatArray:
    """Mid-rank percentile (0..1) of each value among the values of its own group."""
    order = np.lexsort((value, group))
    counts = np.bincount(group, minlength=int(group.max()) + 1)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(len(value), dtype=np.int64)
    rank[order] = np.arange(len(value)) - starts[group[order]]
    result: FloatArray = (rank + 0.5) / counts[group]
    return result


def _base_logit(clients: _Clients, world: _World) -> FloatArray:
    """Each client's propensity logit for each product before affinities: its segment's chance (scaled by
    its tier for ideal products) moved by its region and its tenure."""
    adoption = world.adoption[clients.industry, clients.size]
    ideal = world.ideal[clients.industry, clients.size]
    scale = np.array(TIER_ADOPTION_SCALE)[clients.tier][:, None]
    chance = np.where(ideal, adoption * scale, adoption)
    result: FloatArray = (np.log(chance / (1.0 - chance)) + world.region_effect[clients.region]
                          + _tenure_offset(clients.arrival)[:, None] * world.tenure_per_year[None, :])
    return result


def _expit(logit: FloatArray) -> FloatArray:
    result: FloatArray = 1.0 / (1.0 + np.exp(-logit))
    return result


def _draw_portfolios(rng: np.random.Generator, base_logit: FloatArray, world: _World) -> BoolArray:
    """The products each client needs (and mostly has), drawn along the journey: each product's chance
    comes from the client's base propensity plus the affinities of what it already took up."""
    draw = rng.random(base_logit.shape)
    portfolio = np.zeros(base_logit.shape, dtype=np.bool_)
    for product in JOURNEY:
        j = PRODUCT_NAMES.index(product)
        logit = base_logit[:, j] + portfolio @ world.affinity[:, j]
        portfolio[:, j] = draw[:, j] < _expit(logit)
    return portfolio


def _draw_lines(rng: np.random.Generator, clients: _Clients) -> IntArray:
    """Each client's business line, drawn with the lines' weights for its region and size."""
    weight = np.ones((len(clients.region), len(BUSINESS_LINES)))
    for i, business_line in enumerate(BUSINESS_LINES):
        for level, factor in business_line.weights:
            if level in REGIONS:
                weight[clients.region == REGIONS.index(level), i] *= factor
            elif level in SIZES:
                weight[clients.size == SIZES.index(level), i] *= factor
            else:
                raise AssertionError(f"business line {business_line.name}: {level!r} is neither a region nor a size")
    cumulative = np.cumsum(weight / weight.sum(axis=1, keepdims=True), axis=1)
    drawn = (cumulative < rng.random(len(weight))[:, None]).sum(axis=1)
    line: IntArray = np.minimum(drawn, len(BUSINESS_LINES) - 1).astype(np.int64)
    return line


def _follow_on_logit(clients: _Clients, line: IntArray, world: _World) -> FloatArray:
    """Each client's logit of taking each product beside the pipeline: its business line's lift, moved by
    the same region and tenure effects as its needs."""
    result: FloatArray = (FOLLOW_ON_BASE + world.line_lift[line] + world.region_effect[clients.region]
                          + _tenure_offset(clients.arrival)[:, None] * world.tenure_per_year[None, :])
    return result


def _propensity(base_logit: FloatArray, follow_on_logit: FloatArray, held: BoolArray,
                world: _World) -> FloatArray:
    """Each client's chance of holding each product given what else it holds: through its needs (the
    pipeline's logit, with the affinities of the products it holds) or through its business line."""
    needs = _expit(base_logit + held @ world.affinity)  # a product's own holding never enters its logit
    result: FloatArray = 1.0 - (1.0 - needs) * (1.0 - _expit(follow_on_logit))
    return result


def _draw_deals(rng: np.random.Generator, n_deals: int, clients: _Clients, portfolio: BoolArray,
                world: _World) -> _Deals:
    # Busier clients (higher latent value) and earlier arrivals get more deals.
    activity = np.exp(DEALS_PER_VALUE * clients.latent_value) * (N_DAYS - clients.arrival)
    client = rng.choice(len(activity), size=n_deals, p=activity / activity.sum())
    arrival = clients.arrival[client]
    created = arrival + (rng.random(n_deals) * (N_DAYS - arrival)).astype(np.int64)
    # Deal ids follow the created date; a random key breaks ties so ids within a day are not by client.
    order = np.lexsort((rng.random(n_deals), created))
    client, created = client[order], created[order]

    product = _draw_products(rng, client, clients, portfolio, world.fit)
    size = clients.size[client]
    base_price = np.array([p.base_price for p in PRODUCTS])[product]
    client_spend = np.exp(SPEND_PER_VALUE * clients.latent_value[client])
    amount = np.round(base_price * np.array(SIZE_PRICE_FACTOR)[size] * client_spend
                      * rng.lognormal(0.0, 0.40, size=n_deals), 2)
    amount = np.maximum(amount, 0.01)
    base_hours = np.array([p.base_hours for p in PRODUCTS])[product]
    effort = base_hours * (amount / base_price) ** 0.6 * rng.lognormal(0.0, 0.30, size=n_deals)
    effort_hours = np.maximum(0.5, np.round(effort * 2.0) / 2.0)

    cycle = np.clip(MIN_CYCLE_DAYS + np.round(rng.gamma(2.0, 20.0, size=n_deals)), MIN_CYCLE_DAYS,
                    MAX_CYCLE_DAYS).astype(np.int64)
    closed = created + cycle
    # A snapshot taken at the end of the span: the youngest deals are still open, and so is any deal
    # that would close after the snapshot, so no date in the data lies beyond END_DATE.
    is_open = (created >= N_DAYS - OPEN_WINDOW_DAYS) | (closed >= N_DAYS)

    source_shares = np.array([share for share, _ in SOURCES.values()])
    source = rng.choice(len(SOURCES), size=n_deals, p=source_shares / source_shares.sum())
    by_owner = rng.random(n_deals) < 0.85
    manager = np.where(by_owner, clients.owner[client], rng.integers(0, len(MANAGERS), size=n_deals))
    campaign = rng.integers(0, N_CAMPAIGNS, size=n_deals)
    competitor_shares = np.array([share for share, _ in COMPETITORS.values()])
    named = rng.random(n_deals) < COMPETITOR_NAMED_SHARE
    competitor = np.where(named, rng.choice(len(COMPETITORS), size=n_deals, p=competitor_shares), -1)

    static_logit = (
        WIN.base
        + _drift(created)
        + WIN.fit_scale * world.fit[clients.industry[client], product]
        + np.array([effect for _, effect in SOURCES.values()])[source]
        + WIN.amount_per_log_ratio * np.log(amount / base_price)
        + np.where(competitor >= 0, np.array([e for _, e in COMPETITORS.values()])[competitor], 0.0)
        + world.manager_skill[manager]
    )
    return _Deals(
        client=client.astype(np.int64), created=created, closed=closed, is_open=is_open,
        product=product, amount=amount, effort_hours=effort_hours, source=source.astype(np.int64),
        manager=manager.astype(np.int64), campaign=campaign.astype(np.int64),
        competitor=competitor.astype(np.int64), static_logit=static_logit,
    )


def _draw_products(rng: np.random.Generator, client: IntArray, clients: _Clients, portfolio: BoolArray,
                   fit: FloatArray) -> IntArray:
    """Mostly a product from the client's own portfolio; otherwise a cold offer weighted by segment fit."""
    n = len(client)
    owned = portfolio[client]
    n_owned = owned.sum(axis=1)
    pick = (rng.random(n) * n_owned).astype(np.int64)  # the pick-th owned product
    from_portfolio = np.argmax(np.cumsum(owned, axis=1) > pick[:, None], axis=1)
    # Cold offers lean to what suits the client's industry, so they are not pure noise either.
    weights = np.exp(fit)
    cumulative = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    cold_draw = rng.random(n)
    cold = np.minimum((cumulative[clients.industry[client]] < cold_draw[:, None]).sum(axis=1),
                      len(PRODUCTS) - 1)
    use_portfolio = (rng.random(n) < PORTFOLIO_DEAL_SHARE) & (n_owned > 0)
    product: IntArray = np.where(use_portfolio, from_portfolio, cold).astype(np.int64)
    return product


def _drift(created: IntArray) -> FloatArray:
    years = created / 365.25
    drift: FloatArray = (WIN.drift_amplitude * np.sin(2.0 * np.pi * years / WIN.drift_period_years)
                         + WIN.drift_per_year * years)
    return drift


def _simulate_outcomes(deals: _Deals, outcome_draw: FloatArray,
                       n_clients: int) -> tuple[FloatArray, BoolArray]:
    """Walk the deals day by day, adding client history to the static logit and drawing each outcome.

    A deal sees only wins closed strictly before its created day: each day first scores the deals
    created on it, then books the wins that close on it. Open deals never enter history, since their
    outcome is not in the data. Plain Python lists here: numpy scalar access is slower in a loop.
    """
    n = len(deals.client)
    day_start = np.searchsorted(deals.created, np.arange(N_DAYS + 1)).tolist()
    client = deals.client.tolist()
    closed = deals.closed.tolist()
    is_open = deals.is_open.tolist()
    amount = deals.amount.tolist()
    static_logit = deals.static_logit.tolist()
    draw = outcome_draw.tolist()
    wins_closing: list[list[int]] = [[] for _ in range(N_DAYS)]
    n_wins = [0] * n_clients
    last_win = [0] * n_clients
    won_money = [0.0] * n_clients
    true_p = [0.0] * n
    won = [False] * n

    exp, log1p = math.exp, math.log1p
    prospect, new, regular, lost = WIN.prospect, WIN.new, WIN.regular, WIN.lost
    w_recency, w_frequency = WIN.recency_per_log_month, WIN.frequency_per_log_win
    w_money = WIN.money_per_log_thousand
    for day in range(N_DAYS):
        for j in range(day_start[day], day_start[day + 1]):
            c = client[j]
            wins = n_wins[c]
            if wins == 0:
                history = prospect
            else:
                since_win = day - last_win[c]
                stage = lost if since_win > LOST_CLIENT_DAYS else (new if wins == 1 else regular)
                history = (stage + w_recency * log1p(since_win / 30.0) + w_frequency * log1p(wins)
                           + w_money * log1p(won_money[c] / 1000.0))
            p = 1.0 / (1.0 + exp(-(static_logit[j] + history)))
            true_p[j] = p
            if draw[j] < p:
                won[j] = True
                if not is_open[j]:
                    wins_closing[closed[j]].append(j)
        for j in wins_closing[day]:
            c = client[j]
            n_wins[c] += 1
            last_win[c] = day
            won_money[c] += amount[j]
    return np.array(true_p), np.array(won, dtype=np.bool_)


def _won_matrix(deals: _Deals, won_closed: BoolArray, n_clients: int) -> BoolArray:
    won = np.zeros((n_clients, len(PRODUCTS)), dtype=np.bool_)
    won[deals.client[won_closed], deals.product[won_closed]] = True
    return won


def _plant_gaps(rng: np.random.Generator, clients: _Clients, propensity: FloatArray, held: BoolArray,
                world: _World) -> BoolArray:
    """Plant one gap on up to 15% of the clients: established clients that already hold their segment's
    whole ideal profile and are more likely than not to take some product they lack. The gap is the
    product their own propensity ranks first among those they lack.

    The profile has nothing left to offer them, so the gap is the cross-sell beyond it: mostly the
    follow-on of the client's business line (seen in the line's entry product it holds), else the
    affinity of a held product, its region or its tenure. A lacking product was never won, since every
    won product is held.
    """
    ideal = world.ideal[clients.industry, clients.size]
    ideal_share = (held & ideal).sum(axis=1) / ideal.sum(axis=1)
    n_held = held.sum(axis=1)
    lacking = np.where(held, -np.inf, propensity)
    eligible = np.flatnonzero((ideal_share >= GAP_MIN_IDEAL_SHARE) & (n_held >= GAP_MIN_PRODUCTS)
                              & (lacking.max(axis=1) >= GAP_MIN_PROPENSITY))
    n_gaps = min(len(eligible), round(GAP_CLIENT_SHARE * len(held)))
    chosen = np.sort(rng.choice(eligible, size=n_gaps, replace=False))
    gaps = np.zeros_like(held)
    gaps[chosen, np.argmax(lacking[chosen], axis=1)] = True
    return gaps


# ---------------------------------------------------------------------------------------------------
# Frames.


def _dates(day_index: IntArray) -> pd.Series[Any]:
    return pd.Series((START_DATE + day_index).astype(DATE_DTYPE))


def _ids(prefix: str, count: int, min_width: int) -> npt.NDArray[np.object_]:
    width = max(min_width, len(str(count)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(1, count + 1)], dtype=object)


def _deals_frame(deals: _Deals, won_closed: BoolArray, world: _World, deal_ids: npt.NDArray[np.object_],
                 client_ids: npt.NDArray[np.object_]) -> pd.DataFrame:
    status = np.where(deals.is_open, "open", np.where(won_closed, "won", "lost"))
    competitor_names = np.array([*COMPETITORS, None], dtype=object)  # index -1 picks the None
    frame = pd.DataFrame({
        "deal_id": deal_ids,
        "client_id": client_ids[deals.client],
        "created_at": _dates(deals.created),
        "closed_at": _dates(deals.closed).mask(pd.Series(deals.is_open)),
        "status": status.astype(object),
        "amount": deals.amount,
        "product": np.array(PRODUCT_NAMES, dtype=object)[deals.product],
        "manager": np.array(MANAGERS, dtype=object)[deals.manager],
        "effort_hours": deals.effort_hours,
        "source": np.array(list(SOURCES), dtype=object)[deals.source],
        "campaign_code": np.array(world.campaign_codes, dtype=object)[deals.campaign],
        "competitor": competitor_names[deals.competitor],
    })
    return frame[[*DEALS.names, *EXTRA_DEAL_COLUMNS]]


def _clients_frame(clients: _Clients, client_ids: npt.NDArray[np.object_]) -> pd.DataFrame:
    frame = pd.DataFrame({
        "client_id": client_ids,
        "industry": np.array(INDUSTRIES, dtype=object)[clients.industry],
        "size": np.array(SIZES, dtype=object)[clients.size],
        "region": np.array(REGIONS, dtype=object)[clients.region],
        "since": _dates(clients.arrival),
    })
    return frame[list(CLIENTS.names)]


def _holdings_frame(rng: np.random.Generator, clients: _Clients, deals: _Deals, won_closed: BoolArray,
                    held: BoolArray, client_ids: npt.NDArray[np.object_]) -> pd.DataFrame:
    """One row per held product; won products carry their deal history, others a plausible one."""
    n_products = len(PRODUCTS)
    key = deals.client[won_closed] * n_products + deals.product[won_closed]
    first_win = np.full(held.size, np.iinfo(np.int64).max)
    np.minimum.at(first_win, key, deals.closed[won_closed])
    won_revenue = np.zeros(held.size)
    np.add.at(won_revenue, key, deals.amount[won_closed])

    client, product = np.nonzero(held)
    flat = client * n_products + product
    was_won = won_revenue[flat] > 0
    # Held outside the pipeline (taken at a branch, or before the CRM): since some day after the first
    # contract, earning roughly one ticket per year held.
    arrival = clients.arrival[client]
    outside_since = arrival + (rng.random(len(client)) * (N_DAYS - arrival)).astype(np.int64)
    years_held = (N_DAYS - outside_since) / 365.25
    ticket = (np.array([p.base_price for p in PRODUCTS])[product]
              * np.array(SIZE_PRICE_FACTOR)[clients.size[client]]
              * np.exp(SPEND_PER_VALUE * clients.latent_value[client])
              * rng.lognormal(0.0, 0.40, size=len(client)))
    frame = pd.DataFrame({
        "client_id": client_ids[client],
        "product": np.array(PRODUCT_NAMES, dtype=object)[product],
        "since": _dates(np.where(was_won, first_win[flat], outside_since)),
        "revenue": np.round(np.where(was_won, won_revenue[flat], ticket * np.maximum(1.0, years_held)), 2),
    })
    return frame[list(HOLDINGS.names)]


def _truth_frame(deals: _Deals, true_p: FloatArray, deal_ids: npt.NDArray[np.object_]) -> pd.DataFrame:
    return pd.DataFrame({
        "deal_id": deal_ids,
        "true_p_win": np.round(true_p, 6),
        "true_value": deals.amount,  # the value if won is the quoted amount itself
    })


def _ideal_profiles_frame(world: _World) -> pd.DataFrame:
    industry, size, product = np.indices(world.ideal.shape).reshape(3, -1)
    return pd.DataFrame({
        "industry": np.array(INDUSTRIES, dtype=object)[industry],
        "size": np.array(SIZES, dtype=object)[size],
        "product": np.array(PRODUCT_NAMES, dtype=object)[product],
        "ideal": world.ideal.reshape(-1),
        "true_adoption": np.round(world.adoption.reshape(-1), 4),
    })


def _gaps_frame(gaps: BoolArray, clients: _Clients, line: IntArray, held: BoolArray, world: _World,
                propensity: FloatArray, client_ids: npt.NDArray[np.object_]) -> pd.DataFrame:
    """One row per planted gap with what put it first: the segment's ideal profile, or else the largest
    client-specific lift (its business line, an affinity with held products, the region, the tenure), or
    the segment's lean."""
    client, product = np.nonzero(gaps)
    lifts = np.column_stack([
        world.line_lift[line[client], product],
        np.einsum("ij,ij->i", held[client].astype(np.float64), world.affinity[:, product].T),
        world.region_effect[clients.region[client], product],
        _tenure_offset(clients.arrival[client]) * world.tenure_per_year[product],
    ])
    strongest = np.where(lifts.max(axis=1) > 0, np.argmax(lifts, axis=1) + 1, len(GAP_REASONS) - 1)
    in_profile = world.ideal[clients.industry[client], clients.size[client], product]
    reason = np.where(in_profile, 0, strongest)
    return pd.DataFrame({
        "client_id": client_ids[client],
        "product": np.array(PRODUCT_NAMES, dtype=object)[product],
        "reason": np.array(GAP_REASONS, dtype=object)[reason],
        "propensity": np.round(propensity[client, product], 4),
    })


def _propensity_frame(propensity: FloatArray, client_ids: npt.NDArray[np.object_]) -> pd.DataFrame:
    frame = pd.DataFrame(np.round(propensity, 4), columns=list(PRODUCT_NAMES))
    frame.insert(0, "client_id", client_ids)
    return frame


def _business_lines_frame(line: IntArray, client_ids: npt.NDArray[np.object_]) -> pd.DataFrame:
    return pd.DataFrame({
        "client_id": client_ids,
        "business_line": np.array([b.name for b in BUSINESS_LINES], dtype=object)[line],
    })


def _catalogue_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "product": [p.name for p in PRODUCTS],
        "family": [p.family for p in PRODUCTS],
        "base_price": [p.base_price for p in PRODUCTS],
    })


# ---------------------------------------------------------------------------------------------------
# Writing.

CSV_OPTIONS: dict[str, Any] = {"index": False, "date_format": "%Y-%m-%d", "lineterminator": "\n"}


def export_as_of(crm: SyntheticCRM, day: date) -> SyntheticCRM:
    """The CRM as an export taken at the end of `day` would show it: deals, clients and holdings that began
    later absent, deals closed later still open. Exports of successive days try the monthly retrain on
    generated data (the truth tables keep the whole draw; deal_truth keeps the deals shown)."""
    end = pd.Timestamp(day)
    deals = crm.deals[crm.deals["created_at"] <= end].copy()
    late = deals["closed_at"] > end
    deals.loc[late, "status"] = "open"
    deals.loc[late, "closed_at"] = pd.NaT
    clients = crm.clients[crm.clients["since"] <= end]
    holdings = crm.holdings[crm.holdings["since"] <= end]
    return replace(crm, deals=deals.reset_index(drop=True), clients=clients.reset_index(drop=True),
                   holdings=holdings.reset_index(drop=True),
                   deal_truth=crm.deal_truth[crm.deal_truth["deal_id"].isin(deals["deal_id"])].reset_index(drop=True))


def is_demo_data(folder: str | Path) -> bool:
    """Whether `folder` holds a data set `write` wrote: its ground truth is beside the tables."""
    truth = Path(folder) / "truth"
    return (truth / "deal_truth.csv").is_file() and (truth / "README.md").is_file()


def write(crm: SyntheticCRM, out_dir: str | Path) -> list[Path]:
    """Write the CRM tables and the truth under `out_dir`; returns the paths written.

    Everything is written into a temporary directory beside `out_dir` first and then moved in, so a
    crash leaves either the old files or the new ones, never a half-written data set.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tables = {
        "deals.csv": crm.deals,
        "clients.csv": crm.clients,
        "holdings.csv": crm.holdings,
        "truth/deal_truth.csv": crm.deal_truth,
        "truth/ideal_profiles.csv": crm.ideal_profiles,
        "truth/planted_gaps.csv": crm.planted_gaps,
        "truth/products.csv": crm.product_catalogue,
        "truth/propensity.csv": crm.propensity,
        "truth/business_lines.csv": crm.business_lines,
    }
    relative = [*tables, "truth/README.md"]
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (staging / "truth").mkdir()
        for name, frame in tables.items():
            frame.to_csv(staging / name, **CSV_OPTIONS)
        (staging / "truth" / "README.md").write_text(truth_readme(crm), encoding="utf-8", newline="\n")
        if not out.exists():
            staging.chmod(0o755)  # mkdtemp makes it private; the data set is not secret
            os.replace(staging, out)  # the whole set appears at once
        else:
            (out / "truth").mkdir(exist_ok=True)
            for name in relative:
                os.replace(staging / name, out / name)  # each file swaps whole
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in relative]


def truth_readme(crm: SyntheticCRM) -> str:
    """What the truth files mean and how the data were drawn, with this data set's own numbers."""
    deals, truth = crm.deals, crm.deal_truth
    closed = deals["status"] != "open"
    win_rate = float((deals.loc[closed, "status"] == "won").mean()) if closed.any() else float("nan")
    mean_p = float(truth.loc[closed, "true_p_win"].mean()) if closed.any() else float("nan")
    history_terms = ("prospect", "new", "regular", "lost", "recency_per_log_month", "frequency_per_log_win",
                     "money_per_log_thousand")
    coefficients = [f"| history: {name} | {getattr(WIN, name):+.2f} |" for name in history_terms]
    coefficients += [f"| source = {name} | {effect:+.2f} |" for name, (_, effect) in SOURCES.items()]
    coefficients += [f"| competitor = {name} | {effect:+.2f} |" for name, (_, effect) in COMPETITORS.items()]
    fit_pairs = [f"| {industry} | {product} | {value:+.1f} |"
                 for (industry, product), value in INDUSTRY_FIT.items()]
    affinities = [f"| {a} | {b} | {lift:+.1f} |" for a, b, lift in AFFINITIES]
    region_effect = _region_effect()
    region_rows = [f"| {product} | " + " | ".join(f"{region_effect[r, j]:+.2f}" for r in range(len(REGIONS))) + " |"
                   for j, product in enumerate(PRODUCT_NAMES) if region_effect[:, j].any()]
    tenure_terms = ", ".join(f"{product} {value:+.2f}" for product, value in TENURE_PER_YEAR.items())
    gaps = crm.planted_gaps
    reasons = ", ".join(f"{reason} {int((gaps['reason'] == reason).sum())}" for reason in GAP_REASONS)
    line_counts = crm.business_lines["business_line"].value_counts()
    line_rows = [f"| {b.name} | {b.entry} | {b.follow_on} | "
                 + (", ".join(f"{level} x{factor:g}" for level, factor in b.weights) or "-")
                 + f" | {int(line_counts.get(b.name, 0))} |" for b in BUSINESS_LINES]
    size_prices = ", ".join(f"{s} x{f:g}" for s, f in zip(SIZES, SIZE_PRICE_FACTOR, strict=True))
    lines = [
        "# Ground truth of this synthetic CRM",
        "",
        f"Drawn by `training/synthetic_crm.py`: {len(deals)} deals ({int((~closed).sum())} open), "
        f"{len(crm.clients)} clients, {len(crm.holdings)} holdings, {len(crm.planted_gaps)} planted gaps.",
        f"Win rate of closed deals {win_rate:.3f}; mean true win probability of closed deals {mean_p:.3f}.",
        "",
        f"Calendar: deals created {START_DATE} .. {END_DATE}, "
        f"closed {MIN_CYCLE_DAYS}-{MAX_CYCLE_DAYS} days later.",
        f"The data are a snapshot at {END_DATE}: deals created in its last {OPEN_WINDOW_DAYS} days,",
        "or that would close after it, are `open` with no `closed_at`. Clients arrive over the whole span.",
        "",
        "## deal_truth.csv",
        "`true_p_win` is the probability each closed deal's status was drawn from (Bernoulli), and the",
        "calibrated answer for open deals. `true_value` is the deal's amount, its value if won.",
        "",
        "```",
        f"logit(true_p_win) = {WIN.base:+.2f}",
        f"  + drift: {WIN.drift_amplitude:.2f} sin(2 pi t / {WIN.drift_period_years:g})"
        f" {WIN.drift_per_year:+.2f} t   (t = years from {START_DATE} to created_at)",
        "  + client history as of created_at (wins with closed_at < created_at only; see the table)",
        f"  + {WIN.fit_scale:g} x product-industry fit (pairs below + N(0, {FIT_NOISE_SD:g}) seeded noise)",
        f"  + {WIN.amount_per_log_ratio:+.2f} x log(amount / product base_price)",
        f"  + source + competitor + manager skill (N(0, {WIN.manager_skill_sd:.2f}) per manager)",
        "```",
        "",
        "History: a *prospect* has no earlier win, a *new* client one, a *regular* two or more, a *lost*",
        f"client had wins but none in the last {LOST_CLIENT_DAYS} days; on top, for clients with wins,",
        "recency is log1p(days since the last win / 30), frequency log1p(wins), money",
        "log1p(won amount / 1000).",
        "Open deals never enter anyone's history. `campaign_code` and `region` have no effect on it",
        "(region shapes holdings, below).",
        "",
        "| term | coefficient |",
        "|---|---|",
        *coefficients,
        "",
        "| industry | product | fit |",
        "|---|---|---|",
        *fit_pairs,
        "",
        "## ideal_profiles.csv",
        "One row per industry x size x product. `ideal` marks the segment's ideal profile (3-5 products).",
        "`true_adoption` is the chance that a best client of the segment holds the product: the top",
        f"{1 - TIER_CUTS[1]:.0%} by a latent value that also drives how often and how much the client buys,",
        "so nearly the top by won amount. Middle and weak clients hold ideal products with",
        f"{TIER_ADOPTION_SCALE[1]:.2f} and {TIER_ADOPTION_SCALE[0]:.2f} times that chance.",
        "It is the segment's chance before the client's own terms (propensity.csv): region effects average",
        f"out over the regions, tenure is counted from {TENURE_CENTRE_YEARS:g} years, and affinities and",
        "business lines add products (so followers of a segment's ideal products, and the lines' products,",
        "read higher on holdings.csv).",
        "Every product a client won is held (since = first win's closed_at, revenue = its won amounts);",
        "won cold offers also make non-ideal products read a little higher.",
        "",
        "## propensity.csv",
        "Per client and product, the client's latent chance of holding it, given the products it holds on",
        "holdings.csv and its business line (business_lines.csv). A client holds a product through its",
        "needs (the pipeline: what its deals are about) or beside them, through its business line:",
        "",
        "```",
        "needs      = expit(logit(true_adoption x tier scale for ideal products, true_adoption otherwise)",
        "                   + region effect + tenure effect + sum of the affinities of the products it holds)",
        f"follow_on  = expit({FOLLOW_ON_BASE:g} + business line lift + region effect + tenure effect)",
        "propensity = 1 - (1 - needs) x (1 - follow_on)",
        "```",
        "",
        "The needs drew the pipeline's products (won deals were added after) one by one along the journey",
        f"{' -> '.join(JOURNEY[:6])} ->",
        f"{' -> '.join(JOURNEY[6:])},",
        "so an affinity only runs forward and a product's own holding never enters its logit. The",
        "follow-ons were drawn once per client and product, from a random stream of their own.",
        f"Tenure effect: logit per year as a client at {END_DATE}, counted from {TENURE_CENTRE_YEARS:g} years "
        f"and capped at +-{TENURE_CAP_YEARS:g} years:",
        f"{tenure_terms}.",
        "",
        "| trigger | follower | logit lift |",
        "|---|---|---|",
        *affinities,
        "",
        "| product (region effect, centred) | " + " | ".join(REGIONS) + " |",
        "|---|" + "---|" * len(REGIONS),
        *region_rows,
        "",
        "## business_lines.csv",
        "Each client's business line: how it does business. The CRM does not record it and it varies",
        "within every segment, but the products a client holds show it. A line lifts the follow-on logit",
        f"of its entry product by {LINE_ENTRY_LIFT:+g} and of its follow-on product by {LINE_FOLLOW_ON_LIFT:+g}, so "
        f"about {_expit(np.array(FOLLOW_ON_BASE + LINE_ENTRY_LIFT)):.0%} of its clients take the entry",
        f"and {_expit(np.array(FOLLOW_ON_BASE + LINE_FOLLOW_ON_LIFT)):.0%} the follow-on beside their needs, against "
        f"{_expit(np.array(FOLLOW_ON_BASE)):.0%} for any other product",
        "(before region and tenure): clients holding a line's entry are much likelier to take its",
        "follow-on than their segment's popularity says. Every client has one line, drawn with the prior",
        "weights below (relative, 1 where none is given).",
        "",
        "| business line | entry | follow-on | prior weight | clients here |",
        "|---|---|---|---|---|",
        *line_rows,
        "",
        "## planted_gaps.csv",
        f"Up to {GAP_CLIENT_SHARE:.0%} of the clients, drawn among established clients that hold their segment's "
        f"{'whole ideal profile' if GAP_MIN_IDEAL_SHARE >= 1 else f'ideal profile at least {GAP_MIN_IDEAL_SHARE:.0%}'}",
        f"and at least {GAP_MIN_PRODUCTS} products, and whose likeliest missing product has a propensity of at "
        f"least {GAP_MIN_PROPENSITY:g}:",
        "`product` is that product (so not held, and never won), `propensity` its latent chance. The profile",
        "has nothing left to offer these clients, so the gap is the cross-sell beyond it: `reason` is",
        "`segment_profile` when the gap is in the segment's ideal profile, else the largest client-specific",
        "lift on it (`business_line`, `affinity` with held products, `region`, `tenure`), or `segment_fit`",
        f"when none is positive. Here: {len(gaps)} gaps; {reasons}.",
        "A good gap model ranks the gap near the top: the line shows in the entry product the client holds,",
        "while the segment's most common missing products know nothing of the client's line.",
        "",
        "## products.csv",
        "The product catalogue. Amounts are lognormal around the base price, scaled by size",
        f"({size_prices}).",
        "",
    ]
    return "\n".join(lines)
