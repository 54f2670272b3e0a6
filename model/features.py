"""As-of deal features, computed by one function for training and for scoring.

A deal's features use only what was known strictly before its `created_at` day: earlier closed deals
of its client (RFM, status, win rate), of its product with that client, and of every categorical
level (earlier win rates smoothed towards the earlier overall rate). Training builds a DealHistory
from its closed deals and asks it about each training deal; the artifact keeps the same DealHistory,
so a deal scored later goes through exactly the same lookups and formulas.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from model.asof import NO_KEY, AsOfIndex
from model.contract import CLIENTS, NON_FEATURE_DEAL_COLUMNS, OPT_IN_DEAL_COLUMNS, SENT_HISTORY_COLUMNS
from model.errors import ContractViolation, Problem
from model.spellings import fitted_spellings, folded_form

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ObjectArray = npt.NDArray[np.object_]
BoolArray = npt.NDArray[np.bool_]
Columns = Mapping[str, npt.NDArray[Any]]

CLIENT_ATTRIBUTES: tuple[str, ...] = ("industry", "size", "region")
CALENDAR_MONTH = "month"  # the derived calendar feature, the one derived feature `exclude` may name
CLIENT_STATUSES: tuple[str, ...] = ("prospect", "new", "regular", "lost")
# Per-request client history a CRM may send instead of relying on the artifact's (see contract).
HISTORY_OVERRIDE_COLUMNS: tuple[str, ...] = ("won_deals", "won_amount", "first_won_day", "last_won_day")
# Marks the deals whose override columns were filled from outcomes reported after training (not sent
# by the CRM). A request cannot send it: request fields starting with "__" are dropped.
OUTCOME_HISTORY_FLAG = "__history_from_outcomes"
# Lost deals of the client reported after training (the same overlay): added to the model's count of its
# lost deals, which sent history leaves standing (a CRM sends wins only).
OUTCOME_LOST_DEALS = "__lost_deals_from_outcomes"


@dataclass(frozen=True)
class FeatureConfig:
    """Knobs of the feature builder, saved with the model."""

    lost_window_days: int = 360  # no win for this long: the client counts as lost (90/180/360 in practice)
    smoothing: float = 20.0  # pseudo-deals pulling a level's win rate towards the overall rate
    min_level_count: int = 20  # rarer levels share one "other" code in the model
    # A column whose levels' win rates (and won amounts) in one half of the closed deals (every other deal in time
    # order) do not predict the other half's gets no codes, only its win rate: the trees had fitted the 30 codes of
    # the demo CRM's campaign_code, which has no effect (level_rates_gain, level_amounts_gain, docs/domain.md).
    steady_levels_only: bool = True
    max_levels: int = 60  # at most this many codes per categorical column
    recent_window_days: int = 365  # window of the recent overall win rate (follows drift)
    # Columns whose levels also get a win rate per product (the product's win rate in the deal's industry,
    # size, region): a product sells better to some kinds of clients, and one feature saying so lets the
    # trees use that fit with one split instead of learning a product x industry table from scratch.
    product_pairs: tuple[str, ...] = CLIENT_ATTRIBUTES
    include_manager: bool = False
    exclude: tuple[str, ...] = ()
    # Trains the client history as the service reads it between retrains: a deal scored without its client's
    # history reads the model's, frozen when the model was trained, so a client that has won since looks older,
    # or lost. With a positive value, each closed training deal (but the holdout) reads its client's history as
    # of a number of days before its own day (0 for half of them, else up to this many; fixed by its deal id),
    # and the feature HISTORY_AGE says how many: the trees learn what a stale history means, and the scorer
    # gives each deal the age of the history it reads. 0: off, as in artifacts written before it. A year: a
    # model trained on the generated CRM (100k deals, seed 3) scoring the next year's deals without their history
    # read 0.102 below the realised win rate without it, 0.058 below with 90 days and 0.010 below with 365
    # (AUC 0.800, 0.803, 0.810), at 0.002 less AUC when the history is sent (docs/domain.md).
    history_lag_days: int = 365

    def __post_init__(self) -> None:
        # Wrong values fail here, not as nonsense features: a window of -5 days makes every client "lost".
        # ValueError, as the other settings objects raise (the command line reports it as bad input).
        for name, meaning in (("lost_window_days", "days without a win before a client counts as lost"),
                              ("recent_window_days", "days of the recent win rate"),
                              ("min_level_count", "deals a level needs for a code of its own"),
                              ("max_levels", "codes per categorical column")):
            value = getattr(self, name)
            if isinstance(value, bool) or not hasattr(value, "__index__") or value < 1:  # ints, numpy's too
                raise ValueError(f"{name} must be a whole number of at least 1 ({meaning}), got {value!r}")
        lag = self.history_lag_days
        if isinstance(lag, bool) or not hasattr(lag, "__index__") or lag < 0:
            raise ValueError("history_lag_days must be a whole number of at least 0 (0: off; the most days a "
                             f"training deal's client history lags behind its day), got {lag!r}")
        if not (isinstance(self.smoothing, int | float) and 0 < self.smoothing < float("inf")):
            raise ValueError(f"smoothing must be a finite number above 0 (pseudo-deals pulling a level's win rate "
                             f"towards the overall rate), got {self.smoothing!r}")
        for name in ("exclude", "product_pairs"):
            names = getattr(self, name)
            # A lone string would be taken letter by letter ("amount" -> a, m, o, ...), excluding nothing.
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"{name} must be a list of column names, got {names!r}")


@dataclass
class FeatureSpec:
    """What the features are, learned from the training data and saved in the artifact."""

    config: FeatureConfig
    categorical: list[str]
    numeric: list[str]
    vocab: dict[str, dict[str, int]]  # model codes of the frequent levels per categorical column
    level_keys: dict[str, dict[str, int]]  # every level seen, for history lookups
    client_keys: dict[str, int]
    product_keys: dict[str, int]
    has_client_history: bool
    has_client_since: bool
    names: list[str] = field(default_factory=list)
    categorical_names: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (column, column): a win rate per level pair
    # Numeric columns every closed training deal had, and the median they take when a deal to score lacks
    # them: the engine learned no branch for a missing value there and would read one as 0 (a deal without
    # an amount scored as a deal of amount 0). The scorer then puts the value model's estimate in for a
    # missing amount when it has one; any other such number not sent is averaged out of the trees
    # (unsent_features), the median standing in for the feature only. The client's tenure (TENURE) is filled
    # alike: a client the model does not know, sent without `since`, read as 0 days was scored as a brand-new
    # one. None in artifacts written before it (no filling); artifacts written before the tenure fill have none.
    numeric_fill: dict[str, float] | None = None
    # The features that are a clients table's extra columns (client_X): a known client's come from the
    # model's record of it when a deal does not send them. None in artifacts written before them.
    client_extras: list[str] | None = None
    # The deal's calendar month as a feature; off when `exclude` names it (dates that are an export's artefact
    # make it noise). Artifacts written before the option have it.
    has_month: bool = True
    # Categorical columns left without level codes by FeatureConfig.steady_levels_only (their win rates stay).
    unsteady: tuple[str, ...] = ()
    # Text columns that (nearly) every closed training deal had: a deal that does not send one has it averaged
    # out of the trees (model/unsent_paths.py), which learnt no branch for it missing. A column missing more
    # often taught the trees what missing means. Empty in artifacts written before it (read as before).
    always_sent: tuple[str, ...] = ()
    # The feature HISTORY_AGE (FeatureConfig.history_lag_days). Off in artifacts written before it.
    has_history_age: bool = False

    def __getstate__(self) -> dict[str, Any]:
        # Caches (names starting with "_") are rebuilt on first use, not kept.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def fitted_levels(self, column: str) -> Mapping[str, str]:
        """A categorical column's levels by folded form (model/spellings.py): a level never seen at training
        that differs from one seen only in case or surrounding spaces ("Credit_Line") is that level."""
        cache: dict[str, Mapping[str, str]] | None = self.__dict__.get("_fitted")
        if cache is None:
            cache = self.__dict__["_fitted"] = {}
        found = cache.get(column)
        if found is None:
            found = cache[column] = fitted_spellings(sorted(self.level_keys.get(column, {})))
        return found


# A text column missing in fewer than this share of the closed training deals is one the trees learnt nothing
# about missing (FeatureSpec.always_sent). At 1% of 20,000 deals, 200 deals: LightGBM's smallest leaves hold 40.
ALWAYS_SENT_MISSING_SHARE = 0.01


# A clients table's own extra column X (revenue, year_established...) is the deals' feature client_X: named
# apart from any deals column of the same name (a deal's revenue is not its client's).
CLIENT_EXTRA_PREFIX = "client_"


def client_extra_name(column: str) -> str:
    return f"{CLIENT_EXTRA_PREFIX}{column}"


# The client features dealscore derives from its history, in spec.names order (FeatureSpec.names).
CLIENT_HISTORY_FEATURES: tuple[str, ...] = (
    "client_won_deals", "client_won_amount", "client_days_since_last_win", "client_days_since_first_win",
    "client_closed_deals", "client_win_rate", "client_status")
CLIENT_PRODUCT_FEATURES: tuple[str, ...] = ("client_product_deals", "client_product_wins")
TENURE = "client_tenure_days"  # the feature: days from the client's `since` to the deal's creation
# The feature: days between the end of the client history a deal is read with and the deal's day (0 when the
# history came with the deal, or is current: FeatureConfig.history_lag_days).
HISTORY_AGE = "client_history_age_days"
# A scoring column: the day the client history a deal is read with ends, where outcomes reported since training
# took it past the model's own last day + 1 (NaN elsewhere). A request cannot send it (request fields starting with
# "__" are dropped), nor a deals file (frame_columns leaves such columns out).
HISTORY_END_DAY = "__history_end_day"
# Names a clients column may not take as client_X (attach_clients).
RESERVED_CLIENT_NAMES: frozenset[str] = frozenset(
    {"client_id", "client_since", "client_since_day", TENURE, HISTORY_AGE, *CLIENT_HISTORY_FEATURES,
     *CLIENT_PRODUCT_FEATURES})
# The team's win rates as of a deal's day: all its closed deals, and those of the recent window. Before any deal
# has closed both read 0.5, a stand-in.
TEAM_RATES = ("overall_win_rate", "recent_win_rate")


def client_extra_columns(clients: pd.DataFrame, deal_columns: Iterable[object] = ()) -> list[str]:
    """The clients table's columns beyond the contract's that join the deals as client_X: not one whose
    client_X names the client's id, its `since` days or a feature dealscore derives (a clients column `id`
    would become a second client_id, `status` the derived client_status), nor one the deals already carry
    under that name (the deal's own value stands, as when a CRM sends it with the deal)."""
    taken = {str(c) for c in deal_columns}
    return [str(c) for c in clients.columns if c not in CLIENTS.names
            and client_extra_name(str(c)) not in RESERVED_CLIENT_NAMES and client_extra_name(str(c)) not in taken]


def unused_client_columns(clients: pd.DataFrame, deal_columns: Iterable[object] = ()) -> list[str]:
    """The clients table's extra columns that client_extra_columns leaves out, each with why (training says)."""
    joined, taken = set(client_extra_columns(clients, deal_columns)), {str(c) for c in deal_columns}

    def why(name: str) -> str:
        if name in ("client_id", "client_since", "client_since_day"):
            return f"{name} is the client's own"
        return f"{name} is a feature dealscore derives" if name in RESERVED_CLIENT_NAMES else f"the deals have {name}"

    return [f"{c} ({why(client_extra_name(str(c)))})" for c in clients.columns
            if c not in CLIENTS.names and str(c) not in joined and (client_extra_name(str(c)) in RESERVED_CLIENT_NAMES
                                                                   or client_extra_name(str(c)) in taken)]


def _is_missing(value: object) -> bool:
    # pd.NA and NaT too, as pd.factorize (the batch path's lookup) reads them: both paths must agree.
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def _levels(values: ObjectArray) -> list[str]:
    return [str(v) for v in values if not _is_missing(v)]


def _vocabularies(deals: pd.DataFrame, categorical: Sequence[str], config: FeatureConfig,
                  rows: npt.NDArray[np.int64]) -> tuple[dict[str, dict[str, int]], tuple[str, ...]]:
    """Each categorical column's frequent levels (their own model codes), counted on `rows` of `deals` only, and
    the columns left without codes because their levels' win rates do not carry over (`steady_levels_only`)."""
    vocab: dict[str, dict[str, int]] = {}
    unsteady: list[str] = []
    won = (deals["status"].to_numpy(dtype=object)[rows] == "won") if "status" in deals.columns else None
    amount = (deals["amount"].to_numpy(dtype=np.float64)[rows] if "amount" in deals.columns
              else np.full(rows.size, np.nan))
    for column in categorical:
        values = deals[column].to_numpy(dtype=object)[rows]
        counts = pd.Series(_levels(values)).value_counts()
        frequent = counts[counts >= config.min_level_count].index[: config.max_levels]
        coded = {str(v) for v in frequent}
        # The codes serve the value model too: a product that sets the price keeps them, though it moves no win
        # rate (a test's audits at 1,000 and trainings at 100, won alike, were all valued at 275 without them).
        if (config.steady_levels_only and won is not None and len(frequent) > 1
                and level_rates_gain(values, won, coded, config.smoothing) <= 0.0
                and level_amounts_gain(values[won], amount[won], coded, config.smoothing) <= 0.0):
            unsteady.append(column)
            frequent = frequent[:0]
        vocab[column] = {str(level): code for code, level in enumerate(sorted(frequent))}
    return vocab, tuple(unsteady)


def _level_groups(values: ObjectArray, coded: Collection[str]) -> tuple[npt.NDArray[np.int64], int]:
    """Each value's group as the model codes levels: a level of `coded` is itself, any other one shared level,
    missing another; and how many groups there are."""
    codes, distinct = pd.factorize(values, use_na_sentinel=True)  # missing values get code -1: the last name
    names = [str(v) if str(v) in coded else "\0other" for v in distinct] + ["\0missing"]
    _, group_of = np.unique(np.array(names, dtype=object), return_inverse=True)
    return group_of.ravel()[codes], len(names)


def _halves(n: int) -> tuple[tuple[BoolArray, BoolArray], tuple[BoolArray, BoolArray]]:
    """(learn, test) twice: every other deal, so both halves span the same time and drift."""
    first = np.arange(n) % 2 == 0
    return (first, ~first), (~first, first)


def level_amounts_gain(values: ObjectArray, amount: FloatArray, coded: Collection[str], smoothing: float) -> float:
    """Mean squared-error reduction per won deal of knowing a column's level, for its log amount: each half
    of the deals with an amount predicted by the other half's level means (smoothed towards that half's mean)
    against that mean alone, as level_rates_gain does for outcomes. 0 without amounts to judge by."""
    priced = np.isfinite(amount) & (amount > 0)
    if priced.sum() < 2:
        return 0.0
    groups, n_groups = _level_groups(values[priced], coded)
    log_amount = np.log1p(amount[priced])
    gain = 0.0
    for learn, test in _halves(log_amount.size):
        base = log_amount[learn].mean()
        deals = np.bincount(groups[learn], minlength=n_groups)
        sums = np.bincount(groups[learn], weights=log_amount[learn], minlength=n_groups)
        means = (sums + smoothing * base) / (deals + smoothing)
        y = log_amount[test]
        gain += float(np.sum((y - base) ** 2) - np.sum((y - means[groups[test]]) ** 2))
    return gain / log_amount.size


def level_rates_gain(values: ObjectArray, won: npt.NDArray[np.bool_], coded: Collection[str],
                     smoothing: float) -> float:
    """Mean log-likelihood gain per deal of knowing a column's level: each half of the deals (every other one,
    so both span the same time and drift) scored with the other half's level win rates, as log-odds offsets
    from that half's overall rate, against that overall rate alone, levels grouped as the model codes them
    (_level_groups). Noise levels lose out of sample (< 0)."""
    groups, n_groups = _level_groups(values, coded)
    outcome = np.asarray(won, dtype=np.float64)
    gain = 0.0
    for learn, test in _halves(outcome.size):
        base, test_rate = outcome[learn].mean(), outcome[test].mean()
        if not (0.0 < base < 1.0 and 0.0 < test_rate < 1.0):
            return 1.0  # one outcome only: nothing to judge the levels by
        deals = np.bincount(groups[learn], minlength=n_groups)
        wins = np.bincount(groups[learn], weights=outcome[learn], minlength=n_groups)
        rates = (wins + smoothing * base) / (deals + smoothing)  # a level the half lacks: its overall rate
        offsets = np.log(rates / (1.0 - rates)) - np.log(base / (1.0 - base))
        plain = np.log(test_rate / (1.0 - test_rate))
        margin = plain + offsets[groups[test]]
        y = outcome[test]
        gain += float(np.sum(y * margin - np.logaddexp(0.0, margin)) - np.sum(y * plain - np.logaddexp(0.0, plain)))
    return gain / len(outcome)


def _always_sent(deals: pd.DataFrame, categorical: Sequence[str], rows: npt.NDArray[np.int64]) -> tuple[str, ...]:
    """The text columns missing in under ALWAYS_SENT_MISSING_SHARE of `rows` (FeatureSpec.always_sent)."""
    if rows.size == 0:
        return ()
    return tuple(c for c in categorical if deals[c].iloc[rows].isna().mean() < ALWAYS_SENT_MISSING_SHARE)


def with_vocabularies_of(spec: FeatureSpec, deals: pd.DataFrame, rows: npt.NDArray[np.int64]) -> FeatureSpec:
    """`spec` with the levels that get their own model code counted on `rows` of `deals` only.

    The evaluation model's: with the codes counted on every closed deal, a level frequent only thanks to the
    holdout got its own code in the training part too, so the holdout's figures moved when later deals were
    added (the audit: 80 open deals of 8 rare levels appended to the IT bids moved every holdout p_win, AUC
    0.678 -> 0.686). Everything else (history keys, fills) is shared: those never look past a deal's day."""
    vocab, unsteady = _vocabularies(deals, spec.categorical, spec.config, rows)
    return replace(spec, vocab=vocab, unsteady=unsteady, always_sent=_always_sent(deals, spec.categorical, rows))


def level_code_columns(spec: FeatureSpec) -> slice:
    """Where build_features puts the categorical columns' model codes (after the numeric columns, one per
    categorical column in spec order): a level's code, len(vocab) for a rare or unseen one, NaN for missing."""
    return slice(len(spec.numeric), len(spec.numeric) + len(spec.categorical))


def recoded(spec: FeatureSpec, features: FloatArray, columns: Columns) -> FloatArray:
    """A copy of `features` (built by build_features with a spec that differs from `spec` in its vocabularies
    only) whose level codes are `spec`'s."""
    out = features.copy()
    out[:, level_code_columns(spec)] = level_codes(spec, columns, out.shape[0])
    return out


def level_codes(spec: FeatureSpec, columns: Columns, n: int) -> FloatArray:
    """The categorical columns' model codes of `n` deals, as build_features puts them (deals x columns)."""
    return _categorical_codes(spec, columns, n)[0].T


def fit_feature_spec(deals: pd.DataFrame, config: FeatureConfig, extra_columns: Mapping[str, str]) -> FeatureSpec:
    """Decide the feature columns and level vocabularies from (joined) training deals.

    A level's own model code needs min_level_count closed deals: open deals are scored, not learnt from, and a
    level frequent only among them would get a code the trees never saw with an outcome."""
    excluded = set(config.exclude) | set(NON_FEATURE_DEAL_COLUMNS)
    if not config.include_manager:
        excluded |= OPT_IN_DEAL_COLUMNS
    sent_history = [c for c in SENT_HISTORY_COLUMNS if c in deals.columns]
    if sent_history:
        # Trained on as a feature, it would be read as the client's sent history when scoring a deals file
        # (which refuses it, or replaces the model's history with it): one name, two meanings. Excluding it
        # from the features (--exclude) leaves it in the file for scoring to read; the mapping file's
        # exclude drops it on reading, for training and scoring alike.
        raise ContractViolation("deals columns named like the client history a deal carries when scored", [
            Problem(name, "no column of this name in a deals file: scoring reads it as the client's history "
                    "sent with the deal (rename it in the mapping file's columns, or list it under the mapping "
                    "file's exclude)", f"'{name}'", table="deals") for name in sent_history])
    categorical: list[str] = []
    numeric: list[str] = []
    # A clients table's extra column X reaches the deals as client_X (attach_clients).
    # (Not a name reserved for the client's own features, nor a deals column of the name: attach_clients
    # joins neither.)
    client_kinds = {joined: kind for joined, kind in ((client_extra_name(name.split(".", 1)[1]), kind)
                                                       for name, kind in extra_columns.items()
                                                       if name.startswith("clients."))
                    if joined not in RESERVED_CLIENT_NAMES and joined not in extra_columns}
    extra_columns = {**extra_columns, **client_kinds}
    for column in deals.columns:
        if column in excluded or column == "client_since":
            continue
        if column in ("amount", "effort_hours") or extra_columns.get(column) == "number":
            numeric.append(column)
        elif column in ("product", "manager", *CLIENT_ATTRIBUTES) or extra_columns.get(column) == "text":
            if column == "size" and pd.api.types.is_numeric_dtype(deals[column]):
                numeric.append(column)
            else:
                categorical.append(column)
    closed = (deals["status"].isin(["won", "lost"]).to_numpy() if "status" in deals.columns
              else np.ones(len(deals), dtype=np.bool_))
    level_keys: dict[str, dict[str, int]] = {}
    for column in categorical:
        levels = sorted(set(_levels(deals[column].to_numpy(dtype=object))))
        level_keys[column] = {level: key for key, level in enumerate(levels)}
    # Excluding client_id trains as data without one: no client history features (the client's attributes,
    # joined by it before this, stay). Excluding client_since drops the tenure the same way.
    has_client = ("client_id" not in config.exclude and "client_id" in deals.columns
                  and bool(deals["client_id"].notna().any()))
    has_since = ("client_since" not in config.exclude and "client_since" in deals.columns
                 and bool(deals["client_since"].notna().any()))
    client_keys: dict[str, int] = {}
    if has_client:
        client_keys = {c: i for i, c in enumerate(sorted(set(_levels(deals["client_id"].to_numpy(dtype=object)))))}
    product_keys = level_keys.get("product", {})
    numeric_fill: dict[str, float] = {}
    for column in numeric:
        values = pd.to_numeric(deals[column], errors="coerce").to_numpy(dtype=np.float64)[closed]
        if values.size and not np.isnan(values).any():
            numeric_fill[column] = float(np.median(values))
    if has_since and "created_at" in deals.columns:
        tenure = as_of_tenure(day_numbers(deals["created_at"]), day_numbers(deals["client_since"]))[closed]
        if tenure.size and not np.isnan(tenure).any():
            numeric_fill[TENURE] = float(np.median(tenure))
    vocab, unsteady = _vocabularies(deals, categorical, config, np.flatnonzero(closed))
    always_sent = _always_sent(deals, categorical, np.flatnonzero(closed))
    spec = FeatureSpec(
        config=config, categorical=categorical, numeric=numeric, level_keys=level_keys, vocab=vocab, unsteady=unsteady,
        always_sent=always_sent,
        client_keys=client_keys, product_keys=product_keys, has_client_history=has_client, numeric_fill=numeric_fill,
        has_client_since=has_since,
        client_extras=[c for c in (*numeric, *categorical) if c in client_kinds],
        pairs=[("product", column) for column in config.product_pairs
               if "product" in categorical and column in categorical and column != "product"],
        # A deals column named month is what `exclude` then names (as before the option): the feature stays.
        has_month=CALENDAR_MONTH not in config.exclude or CALENDAR_MONTH in deals.columns,
        has_history_age=has_client and config.history_lag_days > 0,
    )
    spec.names, spec.categorical_names = _feature_names(spec)
    clashes = sorted({name for name in spec.names if spec.names.count(name) > 1})
    if clashes:
        # LightGBM refuses repeated feature names deep inside fitting; say which column to rename or exclude.
        raise ContractViolation(
            "extra columns clash with features dealscore derives itself",
            [Problem(name, "a column name not used by a derived feature (rename it, or list it under exclude "
                     "in the mapping file)", f"'{name}'", table="deals") for name in clashes])
    return spec


def _feature_names(spec: FeatureSpec) -> tuple[list[str], list[str]]:
    names = list(spec.numeric) + list(spec.categorical)
    names += [f"{c}_win_rate" for c in spec.categorical]
    names += [f"{a}_by_{b}_win_rate" for a, b in spec.pairs]
    names += list(TEAM_RATES)
    categorical_names = list(spec.categorical)
    if spec.has_month:
        names.append(CALENDAR_MONTH)
        categorical_names.append(CALENDAR_MONTH)
    if spec.has_client_history:
        names += CLIENT_HISTORY_FEATURES
        categorical_names.append("client_status")
        if spec.product_keys:
            names += CLIENT_PRODUCT_FEATURES
        if spec.has_history_age:
            names.append(HISTORY_AGE)
    if spec.has_client_since:
        names.append(TENURE)
    return names, categorical_names


def day_numbers(dates: pd.Series) -> FloatArray:
    """Dates as days since 1970-01-01 (float, NaN where missing)."""
    values = pd.to_datetime(dates).to_numpy(dtype="datetime64[ns]")
    days = values.astype("datetime64[D]").astype(np.int64).astype(np.float64)
    days[np.isnat(values)] = np.nan
    return days


def attach_clients(deals: pd.DataFrame, clients: pd.DataFrame | None,
                   client_extras: Collection[str] | None = None) -> pd.DataFrame:
    """Deals with their client's segment attributes (industry, size, region), `client_since`, and the clients
    table's extra columns as client_X: all that can join (training), or, scoring with a model, only those
    it was trained on (`client_extras`, its FeatureSpec.client_extras): a deals file without the deals'
    own client_X must not let the clients table's X stand in for it."""
    if clients is None or "client_id" not in deals.columns:
        return deals
    wanted = [c for c in (*CLIENT_ATTRIBUTES, "since") if c in clients.columns]
    extras = [c for c in client_extra_columns(clients, deals.columns)
              if client_extras is None or client_extra_name(c) in client_extras]
    if not wanted and not extras:
        return deals
    renamed = {"since": "client_since", **{c: client_extra_name(c) for c in extras}}
    attributes = clients[["client_id", *wanted, *extras]].rename(columns=renamed)
    own = [c for c in attributes.columns if c in deals.columns and c != "client_id"]
    return deals.drop(columns=own).merge(attributes, on="client_id", how="left")


_DAY_COLUMNS = {"created_at": "created_day", "closed_at": "closed_day", "client_since": "client_since_day"}


def frame_columns(deals: pd.DataFrame) -> dict[str, npt.NDArray[Any]]:
    """A (joined) deals frame as the plain arrays the feature builder takes. Columns named with a leading "__"
    are left out: such names are the scorer's own (HISTORY_END_DAY, OUTCOME_HISTORY_FLAG...), which a deals file
    must not set (a file's `__history_end_day` had moved p_win by up to 0.25; requests drop them too)."""
    columns: dict[str, npt.NDArray[Any]] = {}
    for name in deals.columns:
        if str(name).startswith("__"):
            continue
        if name in _DAY_COLUMNS:
            columns[_DAY_COLUMNS[name]] = day_numbers(deals[name])
        elif pd.api.types.is_numeric_dtype(deals[name]):
            columns[name] = deals[name].to_numpy(dtype=np.float64)
        else:
            columns[name] = deals[name].to_numpy(dtype=object)
    return columns


# Up to this many values a plain loop is quickest (the single-deal path); above it, each distinct value
# is looked up once (pandas factorises the column at C speed; a training column has few distinct levels).
_LOOP_MAX = 64


Lookup = tuple[Mapping[str, int], float, float]  # a mapping, its value for an absent text, for a missing value
# A column's levels seen at training and its fitted spellings by folded form (FeatureSpec.fitted_levels).
Spellings = tuple[Mapping[str, int], Mapping[str, str]]


def _as_fitted(text: str, spellings: Spellings | None) -> str:
    """The level seen at training that `text` means: itself when seen, else the one it folds to, if any."""
    if spellings is None:
        return text
    seen, fitted = spellings
    return text if text in seen else fitted.get(folded_form(text), text)


def _lookup(values: npt.NDArray[Any], *lookups: Lookup, spellings: Spellings | None = None) -> list[FloatArray]:
    """Per (mapping, unknown, missing): each value's entry in the mapping (by its text, read as the level
    seen at training it means when `spellings` are given), `unknown` if absent, `missing` for None/NaN.
    Several mappings share one pass over the values (one str() per value)."""
    if len(values) <= _LOOP_MAX:
        return [np.array(entries, dtype=np.float64) for entries in _looked_up(values, lookups, spellings)]
    codes, distinct = pd.factorize(values, use_na_sentinel=True)  # missing values get code -1
    texts = [_as_fitted(str(v), spellings) for v in distinct]
    # Code -1 picks each table's last entry: `missing`.
    return [np.array([*(mapping.get(t, unknown) for t in texts), missing], dtype=np.float64)[codes]
            for mapping, unknown, missing in lookups]


def _looked_up(values: npt.NDArray[Any], lookups: Sequence[Lookup],
               spellings: Spellings | None = None) -> list[list[float]]:
    """`_lookup`'s answer as plain lists, by a Python loop (quickest for a few values)."""
    outs: list[list[float]] = [[] for _ in lookups]
    for v in values.tolist():
        text = None if _is_missing(v) else _as_fitted(str(v), spellings)
        for out, (mapping, unknown, missing) in zip(outs, lookups, strict=True):
            out.append(missing if text is None else mapping.get(text, unknown))
    return outs


def _codes_and_keys(values: npt.NDArray[Any], vocab: Mapping[str, int], level_keys: Mapping[str, int],
                    fitted: Mapping[str, str]) -> tuple[FloatArray, IntArray]:
    """A categorical column's model codes (rare or unseen levels share the last code, missing is NaN) and
    history keys (NO_KEY for unseen or missing); a level spelt otherwise than at training is the one seen."""
    codes, keys = _lookup(values, *_code_lookups(vocab, level_keys), spellings=(level_keys, fitted))
    return codes, keys.astype(np.int64)


def _code_lookups(vocab: Mapping[str, int], level_keys: Mapping[str, int]) -> tuple[Lookup, Lookup]:
    """A level's model code (rare or unseen: the shared last code; missing: NaN) and its history key."""
    return (vocab, float(len(vocab)), np.nan), (level_keys, NO_KEY, NO_KEY)


def _categorical_codes(spec: FeatureSpec, columns: Columns, n: int) -> tuple[FloatArray, IntArray]:
    """Every categorical column's model codes and history keys (as `_codes_and_keys`), as (columns, deals)
    arrays; an absent column is missing in every deal."""
    k = len(spec.categorical)
    if n > _LOOP_MAX:
        codes = np.full((k, n), np.nan)
        keys = np.full((k, n), NO_KEY, dtype=np.int64)
        for i, column in enumerate(spec.categorical):
            raw = columns.get(column)
            if raw is not None:
                codes[i], keys[i] = _codes_and_keys(np.asarray(raw, dtype=object), spec.vocab[column],
                                                    spec.level_keys[column], spec.fitted_levels(column))
        return codes, keys
    # A few deals (the single-deal path): one Python pass over every column and two arrays at the end;
    # numpy calls per column cost more here than the lookups themselves.
    code_list: list[float] = []
    key_list: list[float] = []
    for column in spec.categorical:
        raw = columns.get(column)
        if raw is None:
            code_list += [np.nan] * n
            key_list += [NO_KEY] * n
            continue
        codes_of_column, keys_of_column = _looked_up(np.asarray(raw, dtype=object),
                                                     _code_lookups(spec.vocab[column], spec.level_keys[column]),
                                                     (spec.level_keys[column], spec.fitted_levels(column)))
        code_list += codes_of_column
        key_list += keys_of_column
    return (np.array(code_list, dtype=np.float64).reshape(k, n),
            np.array(key_list, dtype=np.int64).reshape(k, n))


def _keys(values: npt.NDArray[Any], mapping: Mapping[str, int], fitted: Mapping[str, str] | None = None) -> IntArray:
    """Each value's key in `mapping` (NO_KEY: unseen or missing); with `fitted`, a level spelt otherwise than at
    training is the one seen (never for client ids: "c1" and "C1" are two clients)."""
    spellings = (mapping, fitted) if fitted is not None else None
    return _lookup(values, (mapping, NO_KEY, NO_KEY), spellings=spellings)[0].astype(np.int64)


def unseen_levels(spec: FeatureSpec, column: str, values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Which present values of a categorical column the model's history never saw, read as scoring reads them
    (a level spelt otherwise than at training, in case or spaces, is the level seen)."""
    keys = _keys(np.asarray(values, dtype=object), spec.level_keys.get(column, {}), spec.fitted_levels(column))
    return ~pd.isna(values) & (keys < 0)


def _pair_keys(a: IntArray, b: IntArray, n_b: int | IntArray, offset: int | IntArray) -> IntArray:
    """Keys of level pairs in the stacked index (NO_KEY where either level is unseen or missing). Takes one
    pair's keys, or every pair's at once as (pairs, deals) arrays with (pairs, 1) sizes and offsets."""
    return np.where((a >= 0) & (b >= 0), offset + a * n_b + b, NO_KEY)


class DealHistory:
    """The closed deals a model knows of, indexed for as-of lookups (kept in the artifact)."""

    def __init__(self, spec: FeatureSpec, columns: Columns) -> None:
        status = np.asarray(columns["status"], dtype=object)
        closed = np.isin(status, ["won", "lost"])
        created = np.asarray(columns["created_day"], dtype=np.float64)
        closed_day = np.asarray(columns.get("closed_day", created), dtype=np.float64)
        # A result is known when the deal closed; without a close date, from its creation on.
        event_day = np.where(np.isnan(closed_day), created, closed_day)[closed].astype(np.int64)
        won = (status == "won")[closed]
        amount = np.asarray(columns.get("amount", np.full(len(status), np.nan)), dtype=np.float64)[closed]
        n = int(closed.sum())
        self.overall = AsOfIndex(np.zeros(n, dtype=np.int64), event_day, won, amount)
        # Every categorical column's levels in one index (keys shifted per column), so a deal's level win
        # rates take one binary search for all columns instead of one per column.
        # Level pairs follow in the same index, each pair of levels its own key.
        self.level_offsets: dict[str, int] = {}
        offset = 0
        raw_keys: dict[str, IntArray] = {}
        stacked_keys = []
        for column in spec.categorical:
            keys = _keys(np.asarray(columns[column], dtype=object)[closed], spec.level_keys[column])
            raw_keys[column] = keys
            stacked_keys.append(np.where(keys >= 0, keys + offset, NO_KEY))
            self.level_offsets[column] = offset
            offset += len(spec.level_keys[column])
        self.pair_offsets: dict[tuple[str, str], int] = {}
        for a, b in spec.pairs:
            self.pair_offsets[(a, b)] = offset
            stacked_keys.append(_pair_keys(raw_keys[a], raw_keys[b], len(spec.level_keys[b]), offset))
            offset += len(spec.level_keys[a]) * len(spec.level_keys[b])
        k = len(stacked_keys)
        self.levels = AsOfIndex(np.concatenate(stacked_keys) if k else np.zeros(0, dtype=np.int64),
                                np.tile(event_day, k), np.tile(won, k), np.tile(amount, k))
        self.client: AsOfIndex | None = None
        self.client_product: AsOfIndex | None = None
        if spec.has_client_history:
            client = _keys(np.asarray(columns["client_id"], dtype=object)[closed], spec.client_keys)
            self.client = AsOfIndex(client, event_day, won, amount)
            if spec.product_keys and "product" in columns:
                product = _keys(np.asarray(columns["product"], dtype=object)[closed], spec.product_keys)
                pair = np.where((client >= 0) & (product >= 0), client * len(spec.product_keys) + product, NO_KEY)
                self.client_product = AsOfIndex(pair, event_day, won, amount)
        self.last_day = int(event_day.max()) if n else 0

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_plan"}  # build_features' plan: rebuilt, not kept


@dataclass(frozen=True)
class _StackPlan:
    """Where a spec's columns and pairs sit in a history's stacked level index: the same for every call, so
    made once per (spec, history) and kept on the history (a single deal paid ~5 us to rebuild it)."""

    position: dict[str, int]  # categorical column -> its row among the column keys
    offsets: IntArray  # (columns, 1): each column's first key in the stacked index
    pair_first: IntArray  # per pair, the row of its first column's keys, and of its second's
    pair_second: IntArray
    pair_sizes: IntArray  # (pairs, 1): levels of each pair's second column
    pair_offsets: IntArray  # (pairs, 1): each pair's first key in the stacked index

    @classmethod
    def of(cls, spec: FeatureSpec, history: DealHistory) -> _StackPlan:
        position = {column: i for i, column in enumerate(spec.categorical)}
        return cls(
            position=position,
            offsets=np.array([history.level_offsets[column] for column in spec.categorical], dtype=np.int64)[:, None],
            pair_first=np.array([position[a] for a, _ in spec.pairs], dtype=np.intp),
            pair_second=np.array([position[b] for _, b in spec.pairs], dtype=np.intp),
            pair_sizes=np.array([[len(spec.level_keys[b])] for _, b in spec.pairs], dtype=np.int64),
            pair_offsets=np.array([[history.pair_offsets[pair]] for pair in spec.pairs], dtype=np.int64),
        )


def _stack_plan(spec: FeatureSpec, history: DealHistory) -> _StackPlan:
    cached = history.__dict__.get("_plan")
    if cached is None or cached[0] is not spec:  # two threads may both build it: equal results, no lock needed
        cached = history.__dict__["_plan"] = (spec, _StackPlan.of(spec, history))
    plan: _StackPlan = cached[1]
    return plan


def build_features(spec: FeatureSpec, history: DealHistory, columns: Columns,
                   history_lag: IntArray | None = None) -> FloatArray:
    """The feature matrix (rows = deals, columns = spec.names) as of each deal's created day.

    `columns` holds plain arrays: `created_day` (days since 1970), the categorical and numeric columns,
    optionally `client_id`, `client_since_day` and per-deal client history sent by a CRM
    (`won_deals`, `won_amount`, `first_won_day`, `last_won_day`; NaN where not sent).
    `history_lag` (training, with spec.has_history_age): per deal, how many days before its day its client's
    history is read (training_history_lags); without it, the history ends where the model's does.
    """
    created = np.asarray(columns["created_day"], dtype=np.float64)
    n = created.size
    if np.isnan(created).any():  # the scorer dates such deals today and training sets them aside; anyone else is told
        undated = np.flatnonzero(np.isnan(created))
        raise ContractViolation("deals without a created_at day have no as-of features", [
            Problem("created_at", "a date", "nothing", rows=tuple(undated[:5].tolist()), count=int(undated.size),
                    table="deals")])
    day = created.astype(np.int64)
    # Filled column by column in spec.names order; one matrix, no per-feature arrays to stack.
    out = np.empty((n, len(spec.names)))
    at = 0
    fills = spec.numeric_fill or {}
    for column in spec.numeric:
        out[:, at] = columns[column] if column in columns else np.nan
        fill = fills.get(column)
        if fill is not None:
            np.copyto(out[:, at], fill, where=np.isnan(out[:, at]))
        at += 1
    k = len(spec.categorical)
    codes, raw_keys = _categorical_codes(spec, columns, n)
    out[:, at:at + k] = codes.T
    at += k
    plan = _stack_plan(spec, history)
    position = plan.position
    m = len(spec.pairs)
    # Each column's keys shifted into the stacked level index, all at once.
    level_keys = np.where(raw_keys >= 0, raw_keys + plan.offsets, NO_KEY).ravel()
    if m:  # every pair's keys in one go (a single deal pays a few numpy calls, not a few per pair)
        pair_keys = _pair_keys(raw_keys[plan.pair_first], raw_keys[plan.pair_second], plan.pair_sizes,
                               plan.pair_offsets)
        level_keys = np.concatenate((level_keys, pair_keys.ravel()))

    smoothing = spec.config.smoothing
    # The overall counts as of the deal's day and as of the start of the recent window, in one search. The
    # window ends where the history does: a deal scored months after it would otherwise see only the history's
    # last weeks (IT bids, a 2016 model scoring December 2017: 78 deals instead of about 850, and a mean p_win
    # of 0.428 against a realised 0.375; 0.360 with the window held).
    window_end = np.minimum(day, history.last_day + 1)
    overall_events, overall_wins = history.overall.counts(
        np.zeros(2 * n, dtype=np.int64), np.concatenate((day, window_end - spec.config.recent_window_days)))
    events, wins = overall_events[:n], overall_wins[:n]
    prior = np.where(events > 0, wins / np.maximum(events, 1), 0.5)
    if k:
        # Every column's level win rate (and every pair's) as of the deal's day, from one search of the
        # stacked index.
        # (np.concatenate of copies, not np.tile: the same array for a fraction of the single-deal cost)
        level_events, level_wins = history.levels.counts(level_keys, np.concatenate([day] * (k + m)))
        rates = (level_wins[:k * n] + smoothing * np.concatenate([prior] * k)) / (level_events[:k * n] + smoothing)
        out[:, at:at + k] = rates.reshape(k, n).T
        for j, (a, _) in enumerate(spec.pairs):
            # A pair's rate leans towards its first column's own rate (the product's), not the overall one.
            rows = slice((k + j) * n, (k + j + 1) * n)
            a_rate = out[:, at + position[a]]
            out[:, at + k + j] = (level_wins[rows] + smoothing * a_rate) / (level_events[rows] + smoothing)
        at += k + m
    recent_events = events - overall_events[n:]
    recent_wins = wins - overall_wins[n:]
    out[:, at] = prior
    out[:, at + 1] = (recent_wins + smoothing * prior) / (recent_events + smoothing)
    at += 2
    if spec.has_month:
        out[:, at] = day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12 + 1
        at += 1

    if spec.has_client_history:
        for values in _client_features(spec, history, columns, day, prior, history_lag):
            out[:, at] = values
            at += 1
    if spec.has_client_since:
        since = columns.get("client_since_day")
        out[:, at] = as_of_tenure(created, np.asarray(since, dtype=np.float64)) if since is not None else np.nan
        fill = fills.get(TENURE)
        if fill is not None:
            np.copyto(out[:, at], fill, where=np.isnan(out[:, at]))
        at += 1
    assert at == out.shape[1], "spec.names and the features built disagree"
    return out


def as_of_tenure(created_day: FloatArray, since_day: FloatArray) -> FloatArray:
    """Days from the client's start to each deal's day; NaN where it started after the deal (as if not sent).

    A clients table is a snapshot: its `since` is known today, not on the day of an earlier deal. Many CRMs set
    it to the first payment, so a deal dated before it is one the client had not won yet, and a negative tenure
    read the outcome (a dates audit: holdout AUC 0.806 -> 0.855 on the demo CRM with `since` set to each client's
    first win, 0.807 with this rule). As of that day the client had no start date."""
    tenure = created_day - since_day
    tenure[tenure < 0] = np.nan
    return tenure


# Numbers whose stand-in is kept when a deal does not send them. The client's tenure: averaged out it moved a
# stranger's mean p_win no more than the median did (synthetic seeds 7 and 1, `since` blanked for the later deals
# of clients the model does not know: +0.0013 / -0.0014 and +0.0025 / +0.0037) at 240 us more a single deal.
KEPT_STAND_INS = (TENURE,)


def unsent_features(spec: FeatureSpec, features: FloatArray, columns: Columns | None = None,
                    stand_ins: Collection[str] = ("amount",)) -> npt.NDArray[np.bool_] | None:
    """(deals, features): True at the features of each deal's `always_sent` text columns it did not send (its
    code, its win rate, its pair rates; for the product, also the client's earlier deals and wins of it, which
    read 0 without one) and, given the deals' `columns`, at the numbers every closed training deal had that a
    deal did not send (their median stood in), but for `stand_ins` (the amount's is the value model's, when
    there is one) and KEPT_STAND_INS. None when every deal sent them all (the usual case: a numpy check or two)."""
    numbers = averaged_numbers(spec, stand_ins) if columns is not None else []
    if not spec.always_sent and not numbers:
        return None
    members = spec.__dict__.get("_unsent_members")
    if members is None:  # (columns, features) made once per model; a cache, not kept in the artifact
        position = {name: j for j, name in enumerate(spec.names)}
        members = np.zeros((len(spec.always_sent), len(spec.names)))
        for i, column in enumerate(spec.always_sent):
            own = [column, f"{column}_win_rate", *(f"{a}_by_{b}_win_rate" for a, b in spec.pairs if column in (a, b))]
            if column == "product":
                own += [name for name in CLIENT_PRODUCT_FEATURES if name in position]
            members[i, [position[name] for name in own]] = 1.0
        code_at = np.array([position[column] for column in spec.always_sent], dtype=np.intp)
        spec.__dict__["_unsent_members"] = members = (code_at, members, position)
    code_at, by_column, position = members
    missing = np.isnan(features[:, code_at])  # a text code is NaN exactly where the level was not sent
    unsent: npt.NDArray[np.bool_] | None = (missing.astype(np.float64) @ by_column) > 0.0 if missing.any() else None
    for name in numbers:
        raw = columns.get(name) if columns is not None else None
        not_sent = (np.ones(features.shape[0], dtype=bool) if raw is None
                    else np.isnan(np.asarray(raw, dtype=np.float64)))
        if not_sent.any():
            if unsent is None:
                unsent = np.zeros(features.shape, dtype=bool)
            unsent[:, position[name]] |= not_sent
    return unsent


def averaged_numbers(spec: FeatureSpec, stand_ins: Collection[str] = ("amount",)) -> list[str]:
    """The numbers `unsent_features` averages out where a deal did not send them."""
    return [name for name in (spec.numeric_fill or {}) if name not in stand_ins and name not in KEPT_STAND_INS]


def unseen_inputs(spec: FeatureSpec, columns: Columns, n: int) -> list[list[str]]:
    """Per deal, its text inputs whose level the model never saw (as `unseen_levels` reads them: "Credit_Line" is
    credit_line). Such a level has no history and shares the rare levels' code: a product renamed or misspelt in
    the CRM ("deposti") is scored as a new product, its value and grade with it, and only this says so."""
    out: list[list[str]] = [[] for _ in range(n)]
    for column in spec.categorical:
        raw = columns.get(column)
        if raw is None:
            continue
        values = np.asarray(raw, dtype=object)
        spellings = (spec.level_keys.get(column, {}), spec.fitted_levels(column))
        if n <= _LOOP_MAX:  # the single-deal path: dict lookups, no numpy call per column
            for i, v in enumerate(values.tolist()):
                if not _is_missing(v) and _as_fitted(str(v), spellings) not in spellings[0]:
                    out[i].append(column)
            continue
        # A batch: each distinct level looked up once (a batch's levels repeat; 1,000 deals cost ~0.1 ms a column).
        codes, levels = pd.factorize(values, use_na_sentinel=True)
        unseen = [k for k, level in enumerate(levels.tolist()) if _as_fitted(str(level), spellings) not in spellings[0]]
        if unseen:
            for i in np.flatnonzero(np.isin(codes, unseen)).tolist():
                out[i].append(column)
    return out


def not_sent_inputs(spec: FeatureSpec, unsent: npt.NDArray[np.bool_] | None, n: int,
                    stand_ins: Collection[str] = ("amount",)) -> list[list[str]]:
    """Per deal, the inputs `unsent_features` (with the same `stand_ins`) averaged out, by the model's names."""
    if unsent is None:
        return [[] for _ in range(n)]
    inputs = [*spec.always_sent, *averaged_numbers(spec, stand_ins)]
    at = np.array([spec.names.index(name) for name in inputs], dtype=np.intp)
    return [[inputs[k] for k in np.flatnonzero(row)] for row in unsent[:, at]]


# Where the status is among _client_features' values (in CLIENT_HISTORY_FEATURES order).
_STATUS_AT = CLIENT_HISTORY_FEATURES.index("client_status")


def _client_features(spec: FeatureSpec, history: DealHistory, columns: Columns, day: IntArray,
                     prior: FloatArray, history_lag: IntArray | None = None) -> list[FloatArray]:
    n = day.size
    # Training's lagged reading: the client's deals as known `history_lag` days before the deal (its days since
    # a win still counted to the deal's day), as a model's frozen history reads them for a later deal.
    known_day = day if history_lag is None else day - history_lag
    # (A default built only when the column is absent: np.full costs ~1 us a call on the single-deal path.)
    client_ids = np.asarray(columns["client_id"] if "client_id" in columns else np.full(n, None, dtype=object),
                            dtype=object)
    client = _keys(client_ids, spec.client_keys)
    assert history.client is not None
    counts = history.client.lookup(client, known_day)
    won_deals, won_amount = counts.wins, counts.won_amount
    first_win, last_win = counts.first_win_day, counts.last_win_day
    # History sent with the deal (a CRM knows newer wins than the artifact) replaces the model's wins as a
    # whole, not field by field: 0 wins sent must not keep the model's "last win 6 days ago". Where a part
    # was not sent, what the sent count implies stands in (0 wins: no money, no dates), else the model's.
    # The model's count of lost deals stays: the CRM sends only wins.
    sent_won = (np.asarray(columns["won_deals"], dtype=np.float64) if "won_deals" in columns
                else np.full(n, np.nan))
    replaced = ~np.isnan(sent_won)
    closed_deals = np.maximum(counts.events, won_deals)
    if replaced.any():
        none_won = replaced & (sent_won == 0)
        lost_deals = counts.events - counts.wins
        if OUTCOME_LOST_DEALS in columns:
            lost_deals = lost_deals + np.nan_to_num(np.asarray(columns[OUTCOME_LOST_DEALS], dtype=np.float64))
        won_deals = np.where(replaced, sent_won, won_deals)
        closed_deals = np.where(replaced, lost_deals + sent_won, closed_deals)

        def sent_or(name: str, implied: float, model_value: FloatArray) -> FloatArray:
            sent = np.asarray(columns[name], dtype=np.float64) if name in columns else np.full(n, np.nan)
            return np.where(~np.isnan(sent), sent, np.where(none_won, implied, model_value))

        won_amount = sent_or("won_amount", 0.0, won_amount)
        first_win = sent_or("first_won_day", np.nan, first_win)
        last_win = sent_or("last_won_day", np.nan, last_win)
    days_since_last = day - last_win
    status = _status_codes(won_deals, days_since_last, spec.config.lost_window_days)
    smoothing = spec.config.smoothing
    out = [won_deals, won_amount, days_since_last, day - first_win, closed_deals,
           (won_deals + smoothing * prior) / (closed_deals + smoothing), status]
    if spec.product_keys:
        products = np.asarray(columns["product"] if "product" in columns else np.full(n, None, dtype=object),
                              dtype=object)
        product = _keys(products, spec.product_keys, spec.fitted_levels("product"))
        pair = np.where((client >= 0) & (product >= 0), client * len(spec.product_keys) + product, NO_KEY)
        if history.client_product is not None:
            product_events, product_wins = history.client_product.counts(pair, known_day)
            if replaced.any():
                # Never more wins of one product than the client's sent wins; the product's lost deals stay
                # the model's, so a replaced win does not turn into a loss.
                capped = np.where(replaced, np.minimum(product_wins, np.maximum(won_deals, 0.0)), product_wins)
                product_events, product_wins = product_events - product_wins + capped, capped
            out += [product_events, product_wins]
        else:
            out += [np.zeros(n), np.zeros(n)]
    if spec.has_history_age:
        out.append(history_lag.astype(np.float64) if history_lag is not None
                   else _history_age(history, columns, day, replaced, pd.isna(client_ids)))
    return out


def _history_age(history: DealHistory, columns: Columns, day: IntArray, replaced: BoolArray,
                 no_client: BoolArray) -> FloatArray:
    """HISTORY_AGE when scoring: 0 where the deal came with its client's history, or has no client_id (it reads
    no client history that could be stale), else the days from the end of the history read (the model's, or as
    far as outcomes reported since reach: HISTORY_END_DAY) to the deal's day. A history the outcome overlay
    filled in is as old as the outcomes are: it replaced the model's, but knows no more than they do. (A deal
    without a client had read the model's age: the demo model's open deals sent without client_id a year past
    its history, mean p_win 0.261 against 0.169, pushed by a history they never read.)"""
    end = columns.get(HISTORY_END_DAY)
    ends = (np.fmax(np.asarray(end, dtype=np.float64), history.last_day + 1) if end is not None  # NaN: the model's
            else float(history.last_day + 1))
    from_outcomes = columns.get(OUTCOME_HISTORY_FLAG)
    sent = replaced & ~np.asarray(from_outcomes, dtype=bool) if from_outcomes is not None else replaced
    return np.where(sent | no_client, 0.0, np.maximum(day - ends, 0.0))


def training_history_lags(deal_ids: npt.NDArray[Any], most_days: int) -> IntArray:
    """Each training deal's history lag (FeatureConfig.history_lag_days): 0 for about half the deals, else 1 to
    `most_days` days, evenly. Drawn from a hash of the deal id, not a random stream: a deal's lag does not depend
    on which other deals are in the data, and a retrain on the same deals builds the same features. (Training reads
    its holdout at lag 0, and which deals that is depends on the others.)"""
    hashed = pd.util.hash_array(np.asarray([str(d) for d in deal_ids], dtype=object)).astype(np.uint64)
    share = (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)  # uniform on [0, 1)
    lagged = share >= 0.5
    return np.where(lagged, 1 + np.floor((share - 0.5) * 2 * most_days), 0).astype(np.int64)


def _status_codes(won_deals: FloatArray, days_since_last: FloatArray, lost_window_days: int) -> FloatArray:
    """CLIENT_STATUSES' codes: 0 no win yet, 1 new (one win), 2 regular, 3 lost (no win within the window)."""
    status = np.where(won_deals <= 0, 0.0, np.where(won_deals == 1, 1.0, 2.0))
    return np.where((won_deals > 0) & (days_since_last > lost_window_days), 3.0, status)


def client_statuses(spec: FeatureSpec, history: DealHistory, columns: Columns,
                    end_of_day_before: bool = False) -> list[str] | None:
    """Each row's client status (prospect, new, regular, lost) as of its `created_day`, read exactly as a deal's
    `client_status` feature reads it (sent history first, then the model's); None when the model keeps no
    client history (trained without client ids). `end_of_day_before`: the status at the end of the day before
    `created_day` (its wins counted, as a deal's history counts the days before it; the days since the last win
    counted to it, not to `created_day`: a win exactly the lost window before it still counts)."""
    if not spec.has_client_history:
        return None
    day = np.asarray(columns["created_day"], dtype=np.float64).astype(np.int64)
    # The prior only enters the client's win rate, not its status.
    features = _client_features(spec, history, columns, day, np.zeros(day.size))
    status = features[_STATUS_AT]
    if end_of_day_before:  # the same wins (features[0]), the days since the last (features[2]) one fewer
        status = _status_codes(features[0], features[2] - 1, spec.config.lost_window_days)
    return [client_status_name(code) for code in status.tolist()]


def client_status_name(code: float) -> str:
    return CLIENT_STATUSES[int(code)] if code == code else "prospect"


def categorical_level(spec: FeatureSpec, column: str, code: float) -> str | None:
    """The level a model code stands for (None for missing, "other" for rare or unseen levels)."""
    if code != code:
        return None
    for level, c in spec.vocab[column].items():
        if c == int(code):
            return level
    return "other"


def feature_index(spec: FeatureSpec, names: Sequence[str]) -> list[int]:
    return [spec.names.index(n) for n in names]


def missing_feature_columns(model: Any, deals: pd.DataFrame, clients: pd.DataFrame | None, *,
                            filled_by_model: bool = True) -> list[str]:
    """The model's input columns that neither the deals nor the clients table has. With `filled_by_model`, a
    client attribute is not counted missing when the model knows clients: scoring fills theirs from its own
    record. (Training on such data cannot: a model fitted on it goes without the attribute.)"""
    present = set(deals.columns) | (set(clients.columns) if clients is not None else set())
    present |= set(attach_clients(deals.head(0), clients.head(0) if clients is not None else None,
                                  model.spec.client_extras or ()).columns)
    spec = model.spec
    from_clients = {*CLIENT_ATTRIBUTES, *(spec.client_extras or ())}
    missing = [name for name in (*spec.numeric, *spec.categorical) if name not in present
               and not (filled_by_model and name in from_clients and model.clients)]
    # The clients' `since` (their tenure feature) is filled from the model's record as their attributes are.
    if spec.has_client_since and "client_since" not in present and not (filled_by_model and model.clients):
        missing.append("since")
    return missing


def empty_feature_columns(model: Any, deals: pd.DataFrame, clients: pd.DataFrame | None) -> list[str]:
    """The model's input columns that the closed deals (with their clients' attributes joined) have but leave
    empty in every one: as good as missing to a model fitted on them (training drops a column no closed deal
    fills, whatever the open deals hold). Client ids that changed form between the files ("00312" in the deals,
    312 in the clients table) leave every client attribute so, the columns all there."""
    spec = model.spec
    if "status" in deals:
        deals = deals[deals["status"].isin(["won", "lost"])]
    joined = attach_clients(deals, clients, spec.client_extras or ())
    names = [*spec.numeric, *spec.categorical, *(["client_since"] if spec.has_client_since else [])]
    return [("since" if name == "client_since" else name) for name in names
            if name in joined and not joined[name].notna().any()]
