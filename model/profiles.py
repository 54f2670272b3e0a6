"""Ideal client profiles and gap lists: what a segment's best clients hold that a client lacks.

training/profiles_fit.py fits a ClientProfiles; it answers inside every /v1/score call, so the query
path touches only dicts and numpy arrays (no pandas) and costs tens of microseconds per client.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from model.contract import utc_today_number
from model.spellings import fitted_spellings, folded_form, folded_spellings

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DAY_SECONDS_PER_YEAR = 365.25  # tenure is banded in years of 365.25 days
ALL_CLIENTS = "all"  # name of the segment of last resort
# Attributes a ClientFacts carries by name; any other model attribute comes through ClientFacts.attributes.
FACT_ATTRIBUTES: tuple[str, ...] = ("industry", "size", "region")
TENURE = "tenure"  # derived from since_day
# Income sources that are the sum of the holdings' money (the profiles' summary names the source).
HOLDING_INCOME: tuple[str, ...] = ("holdings revenue", "won deal amounts")

RawValue = str | float | None
Level = str | None  # an attribute's level as the profiles see it: text, a band label, or unknown



def revenue_unfilled(revenue: npt.ArrayLike) -> bool:
    """True for a holdings revenue column that is 0 in every row it fills: a field the CRM never fills, read as
    not given (as a deal amount of 0 is no quote), in fitting and wherever income is measured as fitting did.
    Read as income 0, every client's income and potential was 0 (a degenerate-data audit)."""
    values = np.asarray(revenue, dtype=np.float64)
    known = values[~np.isnan(values)]
    return bool(known.size) and not known.any()

@dataclass(frozen=True)
class Gap:
    """One cross-sell trigger: a product the client lacks, why, and what it would bring."""

    product: str
    adoption: float  # share of the segment's best clients that hold it
    # Estimated chance this client takes it: of taking it up within the profiles' take-up horizon where past
    # take-up calibrated it (ClientProfiles.take_up), else the share of clients like it that hold it.
    p_accept: float
    potential_income: float  # p_accept x the product's typical income in the segment (0 when unknown)
    reason: str
    adoption_all: float | None = None  # share of all the segment's clients that hold it, for contrast
    typical_income: float | None = None  # median income of one holding of it in the segment
    in_profile: bool = True  # part of the segment's ideal profile (adoption >= the profile threshold)


@dataclass(frozen=True)
class ClientFacts:
    client_id: str
    industry: str | None = None
    size: str | None = None
    region: str | None = None
    since_day: float | None = None  # first contract, days since 1970-01-01
    products: tuple[str, ...] | None = None  # None = not sent: use the holdings known at training
    attributes: Mapping[str, RawValue] | None = None  # extra client attributes the profiles were fitted with
    # Realised income as of the caller's date, measured as the profiles measure it (summary's income_source);
    # None: what the profiles knew at training for a known client, else what its products typically earn.
    income: float | None = None


@dataclass(frozen=True)
class ClientGaps:
    client_id: str
    segment: str  # the segment actually used, after any fallback (e.g. "industry=retail|size=small")
    gaps: list[Gap]  # rank 1 first
    potential_income: float | None  # ideal client's income in the segment minus the client's own, >= 0
    income: float | None = None  # the client's own income as the profiles see it
    ideal_income: float | None = None


def band_label(value: float, edges: Sequence[float], unit: str = "") -> str:
    """The band of `value` among sorted `edges`: "<10", "10-50", "250+" (left edge included)."""
    i = bisect_right(edges, value)
    if i == 0:
        return f"<{edges[0]:g}{unit}"
    if i == len(edges):
        return f"{edges[-1]:g}{unit}+"
    return f"{edges[i - 1]:g}-{edges[i]:g}{unit}"


def _as_number(value: RawValue) -> float | None:
    if value is None:
        return None
    if isinstance(value, float | int):
        return float(value) if math.isfinite(value) else None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@dataclass
class ProfileEncoder:
    """Client attributes to levels (text, or bands of numbers and tenure) and to the model's design row.

    Training and scoring both go through `levels` and `design`, so a client is seen the same way by both.
    """

    attributes: tuple[str, ...]  # every attribute used by segments or the acceptance model, in order
    bands: dict[str, tuple[float, ...]]  # numeric attribute -> band edges (tenure in years)
    vocab: dict[str, dict[str, int]] = field(default_factory=dict)  # attribute -> level -> design column
    cell_keys: tuple[str, ...] = ()  # the finest segment's keys, one column per frequent cell
    cells: dict[tuple[Level, ...], int] = field(default_factory=dict)
    n_products: int = 0
    held_offset: int = 0  # design columns [held_offset, held_offset + n_products) flag the held products
    width: int = 0

    def levels(self, raw: Mapping[str, RawValue], as_of_day: float) -> tuple[Level, ...]:
        out: list[Level] = []
        for name in self.attributes:
            value = raw.get("since_day") if name == TENURE else raw.get(name)
            edges = self.bands.get(name)
            if name == TENURE:
                since = _as_number(value)
                out.append(None if since is None or edges is None
                           else band_label(max(as_of_day - since, 0.0) / DAY_SECONDS_PER_YEAR, edges, "y"))
            elif value is None or (isinstance(value, float) and value != value):
                out.append(None)
            elif edges is not None and (number := _as_number(value)) is not None:
                out.append(band_label(number, edges))
            else:
                out.append(str(value))
        return tuple(out)

    def columns(self, levels: tuple[Level, ...], held: Sequence[int]) -> list[int]:
        """The design columns set to 1 for one client (the design is all ones and zeros)."""
        active = []
        for name, level in zip(self.attributes, levels, strict=True):
            column = self.vocab.get(name, {}).get(level) if level is not None else None
            if column is not None:
                active.append(column)
        if self.cells:
            column = self.cells.get(tuple(levels[self.attributes.index(k)] for k in self.cell_keys))
            if column is not None:
                active.append(column)
        active.extend(self.held_offset + j for j in held)
        return active

    def design(self, levels: Sequence[tuple[Level, ...]], held: Sequence[Sequence[int]]) -> FloatArray:
        matrix = np.zeros((len(levels), self.width), dtype=np.float64)
        for row, (client_levels, client_held) in enumerate(zip(levels, held, strict=True)):
            matrix[row, self.columns(client_levels, client_held)] = 1.0
        return matrix


@dataclass
class AcceptanceModel:
    """Chance a client takes each product: one logistic regression per product.

    logit_p = intercept_p + prior_coef_p * logit(segment share of p) + coef_p . design
              + count_coef_p * log1p(number of other products held)

    The segment's (smoothed) share of clients holding p enters as a feature, so where the data say
    little, the model stays near the segment's popularity; the client's attributes and the products it
    already holds move it from there.
    """

    coef: FloatArray  # (products, width); a product's own held flag has weight 0
    intercept: FloatArray  # (products,)
    count_coef: FloatArray  # (products,)
    prior_coef: FloatArray  # (products,)
    fitted: BoolArray  # (products,) False: too few holders; the chance is the segment's smoothed share
    regularisation: FloatArray | None = None  # (products,) the L2 inverse strength used, NaN when not fitted

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_coef_by_column"}  # rebuilt on first use, not kept

    def probability(self, design: FloatArray, n_held: FloatArray, prior_logit: FloatArray) -> FloatArray:
        return self._squash(design @ self.coef.T, n_held, prior_logit)

    def probability_of_columns(self, columns: Sequence[list[int]], n_held: FloatArray,
                               prior_logit: FloatArray) -> FloatArray:
        """Same as `probability` from each client's active design columns: cheaper for a few clients."""
        coef_by_column = self.__dict__.get("_coef_by_column")
        if coef_by_column is None:  # made once per model (a contiguous copy: its rows are gathered per client)
            coef_by_column = self.__dict__["_coef_by_column"] = np.ascontiguousarray(self.coef.T)
        # np.array of the rows, not np.stack: the same matrix without np.stack's checks (~3 us for one client).
        linear = np.array([coef_by_column[c].sum(axis=0) for c in columns], dtype=np.float64)
        return self._squash(linear, n_held, prior_logit)

    def _squash(self, linear: FloatArray, n_held: FloatArray, prior_logit: FloatArray) -> FloatArray:
        logit = (linear + self.intercept + np.log1p(n_held)[:, None] * self.count_coef
                 + prior_logit * self.prior_coef)
        # maximum/minimum: np.clip's floats without its per-call dispatch (single-deal path)
        result: FloatArray = 1.0 / (1.0 + np.exp(-np.minimum(np.maximum(logit, -30.0), 30.0)))
        return result


@dataclass(frozen=True)
class TakeUpCalibration:
    """The chance that a client lacking a product takes it up within `days`, from the acceptance model's p.

    The acceptance model is fitted on who holds what, so for a client lacking a product its p reads "clients
    like this one hold it": on the synthetic CRM it overstated a year's take-up by 0.11-0.16 at p 0.3-0.7,
    and on maven's accounts (every account buying most products within months) it understated it by 0.4.
    Fitting learns logit(chance) = intercept + slope * z + curvature * z^2, z = logit(p) clamped to the range
    it was learnt on (so the map rises with p throughout), from what the clients lacking a product one
    horizon before the holdings' last start took up since (training/profiles_fit.py, _take_up_calibration).
    """

    intercept: float
    slope: float
    days: int  # the horizon: the chance is of taking it up within this many days
    curvature: float = 0.0
    low: float = -30.0  # z is clamped to [low, high]
    high: float = 30.0

    @staticmethod
    def logit(p: FloatArray) -> FloatArray:
        """logit(p) as the map reads it, fitting and serving alike (p clipped to 1e-9 .. 1 - 1e-9)."""
        clipped = np.clip(p, 1e-9, 1.0 - 1e-9)
        result: FloatArray = np.log(clipped / (1.0 - clipped))
        return result

    def chance(self, p: FloatArray) -> FloatArray:
        z = np.clip(self.logit(p), self.low, self.high)
        logit = self.intercept + self.slope * z + self.curvature * z * z
        result: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(logit, -30.0, 30.0)))
        return result

    def rises(self) -> bool:
        """Whether the chance never falls as p rises, and rises somewhere, over the clamped range (the slope of
        the logit is linear in z, so its two ends settle it)."""
        ends = (self.slope + 2.0 * self.curvature * self.low, self.slope + 2.0 * self.curvature * self.high)
        return min(ends) >= -1e-9 and max(ends) > 0

    def horizon(self) -> str:
        """The horizon as a manager reads it: "12 months", "6 months", "45 days"."""
        months = self.days / (DAY_SECONDS_PER_YEAR / 12.0)
        return f"{round(months)} months" if months >= 2.0 and abs(months - round(months)) < 0.1 else f"{self.days} days"


SMALL_BATCH = 16  # up to this many clients, sum active coefficients instead of a dense product
PRIOR_CLIENTS = 5.0  # pseudo-clients pulling a segment's share towards its coarser segment's
PRIOR_LOGIT_LIMIT = 6.0


def share_logit(share: FloatArray) -> FloatArray:
    clipped = np.clip(share, 1e-6, 1.0 - 1e-6)
    result: FloatArray = np.clip(np.log(clipped / (1.0 - clipped)), -PRIOR_LOGIT_LIMIT, PRIOR_LOGIT_LIMIT)
    return result


@dataclass
class ClientProfiles:
    """Segments, their ideal profiles, and gap lists for any client (known at training or not)."""

    products: tuple[str, ...]
    encoder: ProfileEncoder
    acceptance: AcceptanceModel
    levels: tuple[tuple[str, ...], ...]  # segment keys, finest first; the last is () = all clients
    segment_rows: dict[tuple[int, tuple[Level, ...]], int]  # (level, levels of its keys) -> segment row
    segment_names: list[str]
    segment_level: list[int]
    n_clients: FloatArray  # (segments,)
    n_best: FloatArray  # (segments,)
    ideal_income: FloatArray  # (segments,) NaN when no income is known
    adoption_best: FloatArray  # (segments, products)
    adoption_all: FloatArray  # (segments, products)
    typical_income: FloatArray  # (segments, products) NaN when no income is known
    prior_logit: FloatArray  # (segments, products) logit of the smoothed share of all clients holding it
    min_adoption: float  # a product is in a segment's ideal profile from this best-client adoption
    fill_outside_profile: bool  # after the profile's gaps, offer other likely products
    min_p_accept: float  # ... when at least this likely
    rank_by: str  # "expected_income" (p_accept x typical income) or "p_accept"
    reference_day: float  # the data's last day at training; tenure of known clients is taken as of today
    known_attributes: dict[str, dict[str, RawValue]]
    known_products: dict[str, tuple[int, ...]]
    known_income: dict[str, float]
    has_income: bool
    best_rule: str
    summary: dict[str, Any] = field(default_factory=dict)
    # Known clients' income per product held (product position -> money), where income is holdings' money;
    # empty in artifacts written before it (a product given up then takes off its typical income).
    known_holding_income: dict[str, dict[int, float]] = field(default_factory=dict)
    # p_accept of a product a client lacks -> its chance of taking it up within a horizon, where fitting could
    # learn it from dated holdings (and it beat the raw p out of time); None: p_accept stays the share of
    # clients like it that hold it, and the reason says so. None in artifacts written before it.
    take_up: TakeUpCalibration | None = None
    # Derived from the fields above; rebuilt after unpickling.
    product_index: dict[str, int] = field(init=False, repr=False)
    _in_profile: BoolArray = field(init=False, repr=False)
    _level_positions: list[tuple[int, ...]] = field(init=False, repr=False)
    _who: list[str] = field(init=False, repr=False)
    _income_factor: list[FloatArray | None] = field(init=False, repr=False)
    _rank_factor: FloatArray = field(init=False, repr=False)  # (segments, products); 1 where income is unknown
    # (acceptance model, its held-product weights as lists): built on first use for the model it was read from
    _partner_cache: tuple[AcceptanceModel, list[list[float]]] | None = field(init=False, repr=False)
    _product_folded: dict[str, int] = field(init=False, repr=False)
    _level_spellings: list[tuple[set[str], dict[str, str]]] = field(init=False, repr=False)
    _row_lists: list[tuple[list[float], list[float], list[float] | None, list[bool]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        self.product_index = {p: i for i, p in enumerate(self.products)}
        # Spellings differing only in case or surrounding spaces ("Acquiring", "Retail ") name the same product
        # or level as the one fitted ("acquiring", "retail"): a held product offered back, or a client moved to
        # the all-clients segment, for a capital letter. Exact spellings win; a folded spelling that two
        # fitted ones share stays unknown.
        self._product_folded = folded_spellings(self.products)
        fitted_levels: dict[str, set[str]] = {name: set(levels) for name, levels in self.encoder.vocab.items()}
        for level, values in self.segment_rows:
            for name, value in zip(self.levels[level], values, strict=True):
                if value is not None:
                    fitted_levels.setdefault(name, set()).add(value)
        self._level_spellings = []
        for name in self.encoder.attributes:
            spellings = sorted(fitted_levels.get(name, ()))
            self._level_spellings.append((set(spellings), fitted_spellings(spellings)))
        # Per segment: who "the best clients" are in a reason, and the money of each product (None: unknown).
        self._who = [f"the best {'/'.join(part.split('=', 1)[1] for part in name.split('|'))} clients"
                     if name != ALL_CLIENTS else "the best clients" for name in self.segment_names]
        self._income_factor = [None if not self.has_income or np.isnan(row).all() else np.nan_to_num(row)
                               for row in self.typical_income]
        self._partner_cache = None
        self._rank_factor = np.array([np.ones(len(self.products)) if factor is None else factor
                                      for factor in self._income_factor]).reshape(-1, len(self.products))
        self._in_profile = self.adoption_best >= self.min_adoption
        self._level_positions = [tuple(self.encoder.attributes.index(k) for k in keys)
                                 for keys in self.levels]
        # Plain lists for the per-gap loop (a numpy scalar per read costs more than the rest of a gap).
        self._row_lists = [(best.tolist(), everyone.tolist(), None if factor is None else typical.tolist(),
                            in_profile.tolist())
                           for best, everyone, typical, in_profile, factor in zip(
                               self.adoption_best, self.adoption_all, self.typical_income, self._in_profile,
                               self._income_factor, strict=True)]

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"known_holding_income": {}, "take_up": None, **state})
        self._refresh()

    # ------------------------------------------------------------------------------------------------
    # Query path.

    def resolve(self, clients: Sequence[ClientFacts], as_of_day: float | None = None) -> list[ResolvedClient]:
        """Each client's levels, segment (after fallback), held products and income."""
        day = utc_today_number() if as_of_day is None else as_of_day
        out: list[ResolvedClient] = []
        for facts in clients:
            known = self.known_attributes.get(facts.client_id)
            raw: dict[str, RawValue] = dict(known) if known else {}
            for name in FACT_ATTRIBUTES:
                value = getattr(facts, name)
                if value is not None:
                    raw[name] = value
            if facts.since_day is not None and facts.since_day == facts.since_day:
                raw["since_day"] = facts.since_day
            if facts.attributes:
                raw.update({k: v for k, v in facts.attributes.items() if v is not None})
            levels = self._fitted_spelling(self.encoder.levels(raw, day))
            row = self.segment_row(levels)
            if facts.products is None:
                held = self.known_products.get(facts.client_id, ())
            else:
                held = tuple(sorted({j for p in facts.products if (j := self.product_position(p)) is not None}))
            # An unknown income (None, or NaN from a table's empty cell) is not one: NaN made potential NaN.
            given = facts.income if facts.income is not None and facts.income == facts.income else None
            income = given if given is not None else self.known_income.get(facts.client_id)
            # Products earn what they typically do over all clients: the value fitting gave a holding without
            # revenue (holding_income), so a client's income and the ideal one are measured alike.
            factor = self._income_factor[-1]
            if income is None and factor is not None:  # a client new to the model
                income = float(factor[list(held)].sum())
            elif (given is None and income is not None and factor is not None and facts.products is not None
                  and self.summary.get("income_source", HOLDING_INCOME[0]) in HOLDING_INCOME):
                # A known client sent with what it holds now: its income at training, plus what the products
                # taken up since typically earn, less what the products given up earned it. (A client sent
                # holding every product kept its training income, and so a potential beside an empty gap list.)
                before = self.known_products.get(facts.client_id, ())
                earned = self.known_holding_income.get(facts.client_id, {})
                change = (float(factor[[j for j in held if j not in before]].sum())
                          - sum(earned.get(j, float(factor[j])) for j in before if j not in held))
                income = max(income + change, 0.0)
            out.append(ResolvedClient(facts.client_id, levels, row, held, income))
        return out

    def product_position(self, name: str) -> int | None:
        """The fitted product a sent name means (exactly, else up to case and surrounding spaces)."""
        position = self.product_index.get(name)
        return position if position is not None else self._product_folded.get(folded_form(name))

    def unknown_products(self, names: Iterable[str]) -> list[str]:
        """The names that mean no fitted product, as sent, once each (they count as nothing held)."""
        return list(dict.fromkeys(name for name in names if self.product_position(name) is None))

    def _fitted_spelling(self, levels: tuple[Level, ...]) -> tuple[Level, ...]:
        if all(level is None or level in exact for level, (exact, _) in zip(levels, self._level_spellings,
                                                                             strict=True)):
            return levels
        return tuple(level if level is None or level in exact else folded.get(folded_form(level), level)
                     for level, (exact, folded) in zip(levels, self._level_spellings, strict=True))

    def holding_income(self, products: Sequence[str], revenue: FloatArray) -> FloatArray:
        """Each holding's income as fitting counted it: its revenue, else its product's typical revenue over
        all clients (training/profiles_fit.py, _global_typical: what the all-clients segment stores); 0 for
        a product the profiles do not know or when no revenue was known at all."""
        typical = self.typical_income[len(self.segment_names) - 1]
        positions = [self.product_position(p) for p in products]
        fill = np.array([np.nan if j is None else typical[j] for j in positions], dtype=np.float64)
        return np.nan_to_num(np.where(np.isnan(revenue), fill, revenue), nan=0.0)

    def segment_row(self, levels: tuple[Level, ...]) -> int:
        """The finest stored segment of these attribute levels (all clients when none fits)."""
        for level, positions in enumerate(self._level_positions):
            values = tuple(levels[i] for i in positions)
            if None in values:
                continue
            row = self.segment_rows.get((level, values))
            if row is not None:
                return row
        return len(self.segment_names) - 1  # the all-clients segment is stored last

    def p_accept(self, resolved: Sequence[ResolvedClient]) -> FloatArray:
        """(clients, products) the acceptance model's p of each client for each product, held or not: the share
        of clients like it that hold it (take_up_chance turns it into a chance of taking it up)."""
        n_held = np.array([len(r.held) for r in resolved], dtype=np.float64)
        prior = self.prior_logit[[r.segment_row for r in resolved]]
        if len(resolved) <= SMALL_BATCH:
            columns = [self.encoder.columns(r.levels, r.held) for r in resolved]
            return self.acceptance.probability_of_columns(columns, n_held, prior)
        design = self.encoder.design([r.levels for r in resolved], [r.held for r in resolved])
        return self.acceptance.probability(design, n_held, prior)

    def take_up_chance(self, probability: FloatArray) -> FloatArray:
        """The chance of taking each product up within the take-up horizon; `probability` itself when the
        profiles have no take-up calibration."""
        return probability if self.take_up is None else self.take_up.chance(probability)

    def gaps_for(self, clients: Sequence[ClientFacts], top_k: int = 5,
                 as_of_day: float | None = None) -> list[ClientGaps]:
        """Each client's gap list, rank 1 first, and its potential income."""
        if not clients:
            return []
        resolved = self.resolve(clients, as_of_day)
        probability = self.p_accept(resolved) if top_k > 0 else None
        chance = self.take_up_chance(probability) if probability is not None else None
        ranked = self._ranked(resolved, probability, top_k, chance=chance) if probability is not None else []
        p_lists = probability.tolist() if probability is not None else []
        chance_lists = chance.tolist() if chance is not None else []
        partner_weights = self._partner_weights()
        out: list[ClientGaps] = []
        for i, client in enumerate(resolved):
            row = client.segment_row
            ideal = float(self.ideal_income[row])
            potential = None
            if self.has_income and client.income is not None and ideal == ideal:
                potential = round(max(ideal - client.income, 0.0), 2)
            gaps = (self._gap_list(client, p_lists[i], chance_lists[i], ranked[i], partner_weights)
                    if ranked else [])
            out.append(ClientGaps(
                client_id=client.client_id, segment=self.segment_names[row], gaps=gaps,
                potential_income=potential,
                income=None if client.income is None else round(client.income, 2),
                ideal_income=round(ideal, 2) if ideal == ideal else None,
            ))
        return out

    def ranked_products(self, client: ResolvedClient, probability: FloatArray,
                        rank_by: str | None = None) -> list[int]:
        """Products in gap order: the profile's missing products by expected income (or `rank_by`), then
        the others the client may take, likeliest first. `probability` is p_accept's (before take-up)."""
        row = probability[None, :]
        return self._ranked([client], row, len(self.products), rank_by, self.take_up_chance(row))[0]

    def _ranked(self, clients: Sequence[ResolvedClient], probability: FloatArray, top_k: int,
                rank_by: str | None = None, chance: FloatArray | None = None) -> list[list[int]]:
        """Each client's first `top_k` products in gap order, all clients in one sort.

        Which products are candidates at all follows the acceptance model's p (`probability`); their order,
        and so which of them make the first `top_k`, follows the stated chance (`chance`, default
        `probability`) and the money it expects. Chances a take-up map states alike (it is flat beyond the
        range of p it was learnt on) keep the order of p."""
        if chance is probability:  # no take-up map (take_up_chance returns p itself): one key
            chance = None
        rows = [c.segment_row for c in clients]
        in_profile = self._in_profile[rows]
        candidate = in_profile | (probability >= self.min_p_accept) if self.fill_outside_profile else in_profile.copy()
        for i, client in enumerate(clients):
            candidate[i, list(client.held)] = False
        by = self.rank_by if rank_by is None else rank_by
        # The profile's gaps by expected income; products outside it by chance alone: the best clients do
        # not vouch for them, so the likeliest take comes before a big-ticket long shot.
        def keyed(p: FloatArray) -> FloatArray:
            return p if by == "p_accept" else np.where(in_profile, p * self._rank_factor[rows], p)

        # The profile's candidates first (group 0), then the other candidates (1), each by key, equals in
        # product order; non-candidates (2) are cut off below.
        group = 2 - candidate * (1 + in_profile)
        keys = (-keyed(probability), group) if chance is None else (-keyed(probability), -keyed(chance), group)
        order = np.lexsort(keys, axis=-1).tolist()
        return [ranked[:min(count, top_k)] for ranked, count in zip(order, candidate.sum(axis=1).tolist(), strict=True)]

    def _partner_weights(self) -> list[list[float]]:
        """(product, held product): the held product's weight in the product's acceptance model."""
        # Kept per acceptance model: fitting sets the model after the profiles are built, and the lists cost
        # ~2.5 us at 11 products but ~1.6 ms at 300, too much to rebuild for every request.
        cache = self._partner_cache
        if cache is None or cache[0] is not self.acceptance:
            offset = self.encoder.held_offset
            weights = self.acceptance.coef[:, offset:offset + len(self.products)].tolist()
            cache = self._partner_cache = (self.acceptance, weights)
        return cache[1]

    def _gap_list(self, client: ResolvedClient, p: list[float], chance: list[float], ranked: list[int],
                  partner_weights: list[list[float]]) -> list[Gap]:
        if not ranked:
            return []
        horizon = None if self.take_up is None else self.take_up.horizon()
        row = client.segment_row
        best, everyone, typical, in_profile = self._row_lists[row]
        who = self._who[row]
        gaps: list[Gap] = []
        for j in ranked:
            if in_profile[j]:
                reason = f"{_percent(best[j])} of {who} have it ({_percent(everyone[j])} of all)"
            else:
                reason = f"outside the ideal profile ({_percent(best[j])} of {who} have it)"
            # Only a calibrated chance is called one: the acceptance model's p says how many clients like this
            # one hold the product, which managers read as a promise (p 0.8-1.0 averaged a true chance of 0.70
            # for non-holders on the synthetic CRM).
            if horizon is not None:
                reason += f"; {_percent(chance[j])} chance to take it within {horizon}"
            else:
                reason += f"; held by {_percent(p[j])} of clients like this one"
            partner = self._partner(j, client.held, partner_weights)
            if partner is not None:
                reason += f", often taken with {partner}"
            worth = typical[j] if typical is not None else None
            if worth is not None:
                reason += f"; worth about {worth:,.0f}"
            gaps.append(Gap(
                product=self.products[j], adoption=round(best[j], 4), p_accept=round(chance[j], 4),
                potential_income=round(chance[j] * worth, 2) if worth is not None else 0.0, reason=reason,
                adoption_all=round(everyone[j], 4),
                typical_income=round(worth, 2) if worth is not None else None,
                in_profile=in_profile[j],
            ))
        return gaps

    def _partner(self, product: int, held: tuple[int, ...], partner_weights: list[list[float]]) -> str | None:
        """The held product that raises `product`'s chance most (odds x1.65 or more), if any.

        Holding it sets its flag and adds one to the count of products held, so its push on the log-odds is its
        flag's weight plus that step of the count term. (The flag alone once named housing_loan as "often taken
        with" term_deposit on bank marketing, where holding it halved the model's chance, 0.19 -> 0.10.)
        """
        if not held or not self.acceptance.fitted[product]:
            return None
        weights = partner_weights[product]
        strongest = max(held, key=weights.__getitem__)  # the first of equals, as argmax
        n = len(held)
        count_step = float(self.acceptance.count_coef[product]) * (math.log1p(n) - math.log1p(n - 1))
        return self.products[strongest] if weights[strongest] + count_step >= 0.5 else None

    # ------------------------------------------------------------------------------------------------
    # Reporting.

    def ideal_profiles(self) -> list[dict[str, Any]]:
        """Per segment: its keys, client and best-client counts, adoption per product, ideal income."""
        out: list[dict[str, Any]] = []
        for (level, values), row in sorted(self.segment_rows.items(), key=lambda item: item[1]):
            products: list[dict[str, Any]] = [{
                "product": p,
                "adoption_best": round(float(self.adoption_best[row, j]), 4),
                "adoption_all": round(float(self.adoption_all[row, j]), 4),
                "typical_income": _rounded(self.typical_income[row, j]),
                "in_profile": bool(self._in_profile[row, j]),
            } for j, p in enumerate(self.products)]
            products.sort(key=lambda item: (-float(item["adoption_best"]), str(item["product"])))
            out.append({
                "segment": self.segment_names[row],
                "keys": dict(zip(self.levels[level], values, strict=True)),
                "clients": int(self.n_clients[row]),
                "best_clients": int(self.n_best[row]),
                "best_rule": self.best_rule,
                "ideal_income": _rounded(self.ideal_income[row]),
                "ideal_products": [item["product"] for item in products if item["in_profile"]],
                "products": products,
            })
        return out


@dataclass(frozen=True)
class ResolvedClient:
    client_id: str
    levels: tuple[Level, ...]
    segment_row: int
    held: tuple[int, ...]
    income: float | None


def segment_name(keys: Sequence[str], values: Sequence[Level]) -> str:
    if not keys:
        return ALL_CLIENTS
    return "|".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))


def _percent(share: float) -> str:
    """A share as a manager reads it: a 99.75% chance is not a certainty, so not "100%" (nor 0.3% "0%").

    Read off the share as a gap's fields carry it (rounded to 4 places), so the reason and the field agree: a
    chance of 0.17496 read "17%" beside a p_accept of 0.175 (91 of 16,984 demo gaps, a manager-view audit)."""
    carried = round(share, 4)
    if carried >= 0.995 and share < 1.0:
        return ">99%"
    if carried < 0.005 and share > 0.0:
        return "<1%"
    return f"{carried:.0%}"


def _rounded(value: float) -> float | None:
    return None if value != value else round(float(value), 2)


__all__ = [
    "ALL_CLIENTS", "HOLDING_INCOME", "PRIOR_CLIENTS", "AcceptanceModel", "ClientFacts", "ClientGaps", "ClientProfiles",
    "Gap", "ProfileEncoder", "ResolvedClient", "TakeUpCalibration", "band_label", "revenue_unfilled", "segment_name",
    "share_logit",
]
