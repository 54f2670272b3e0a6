"""Held-out evaluation of gap lists beside a popularity baseline.

Two protocols, both cross-fitted by client (the profiles that rank a client never saw it):
- planted gaps (synthetic CRM): does the removed ideal product come back in the client's top k?
- hide one out (any holdings): hide one held product of each client; does it come back in the top k?
Methods: the served gap list ("ideal_profile_gaps", by expected income), the same list ordered by
p_accept ("ideal_profile_gaps_by_p"), the segment's most common missing products ("popularity", the
baseline), and two diagnostics: products by p_accept alone, and by their share of all clients.

recall@k counts a hit when the target is among the first k; income recall@3 weighs each case by the
hidden holding's revenue (what a manager would have found), where revenue is known.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.client_analytics import client_facts
from model.errors import counted
from model.profiles import ClientFacts, ClientProfiles
from training.profiles_fit import WON_NOT_YET_IN_HOLDINGS_DAYS, ProfileConfig, fit_profiles
from training.synthetic_crm import SyntheticCRM

SERVED = "ideal_profile_gaps"
SERVED_BY_P = "ideal_profile_gaps_by_p"
BASELINE = "popularity"
METHODS: tuple[str, ...] = (SERVED, SERVED_BY_P, BASELINE, "p_accept_only", "global_popularity")
DEFAULT_CONFIG = ProfileConfig()
# Clients holding something that hide-one-out needs: each is ranked by profiles fitted on the others.
MIN_EVALUATION_HOLDERS = 2


@dataclass(frozen=True)
class Case:
    """One client to rank: what it is shown to hold, and the product that should come back."""

    client_id: str
    given: tuple[str, ...]
    target: str
    weight: float = float("nan")  # the target's revenue, for income recall


@dataclass(frozen=True)
class RecallResult:
    data_set: str
    method: str
    recall_at_1: float
    recall_at_3: float
    mrr: float  # mean reciprocal rank of the target (0 when it is not listed)
    clients: int
    income_recall_at_3: float | None = None  # revenue-weighted recall@3, when revenues are known
    # Per case, in case order: was the target first / in the top 3? For paired comparisons of two methods on the
    # same cases (bench.gaps_bench's sign tests); not part of the report.
    hits_at_1: tuple[bool, ...] = field(default=(), repr=False)
    hits_at_3: tuple[bool, ...] = field(default=(), repr=False)
    # Per case, in case order: the target's revenue (NaN when unknown), for a paired test of income recall.
    weights: tuple[float, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"data_set": self.data_set, "method": self.method, "recall_at_1": round(self.recall_at_1, 4),
                "recall_at_3": round(self.recall_at_3, 4), "mrr": round(self.mrr, 4), "clients": self.clients,
                "income_recall_at_3": (None if self.income_recall_at_3 is None
                                       else round(self.income_recall_at_3, 4))}


def rankings(profiles: ClientProfiles, facts: Sequence[ClientFacts]) -> dict[str, list[list[str]]]:
    """Each method's order of the products each client does not hold (the served list may be shorter)."""
    resolved = profiles.resolve(facts)
    probability = profiles.p_accept(resolved)
    overall = profiles.adoption_all[-1]
    out: dict[str, list[list[str]]] = {m: [] for m in METHODS}
    names = profiles.products
    for i, client in enumerate(resolved):
        missing = np.ones(len(names), dtype=np.bool_)
        missing[list(client.held)] = False
        candidates = np.flatnonzero(missing)
        segment = profiles.adoption_all[client.segment_row]

        def by(*keys: np.ndarray[Any, Any], among: np.ndarray[Any, Any] = candidates) -> list[str]:
            order = np.lexsort(tuple(-k[among] for k in reversed(keys)))
            return [names[j] for j in among[order]]

        for method, rank_by in ((SERVED, None), (SERVED_BY_P, "p_accept")):
            out[method].append([names[j] for j in profiles.ranked_products(client, probability[i], rank_by)])
        out[BASELINE].append(by(segment, overall))
        out["p_accept_only"].append(by(probability[i]))
        out["global_popularity"].append(by(overall))
    return out


def score_rankings(data_set: str, ranked: Mapping[str, list[list[str]]], targets: Sequence[str],
                   weights: Sequence[float] | None = None) -> list[RecallResult]:
    results = []
    weight = np.array(weights if weights is not None else [np.nan] * len(targets), dtype=np.float64)
    weighed = np.isfinite(weight) & (weight > 0)
    for method, lists in ranked.items():
        position = np.array([lst.index(t) + 1 if t in lst else 0
                             for lst, t in zip(lists, targets, strict=True)])
        n = max(len(targets), 1)
        top3 = (position >= 1) & (position <= 3)
        income = (float(weight[weighed & top3].sum() / weight[weighed].sum())
                  if weighed.sum() >= max(1, len(targets) // 2) else None)
        results.append(RecallResult(
            data_set=data_set, method=method,
            recall_at_1=float(((position >= 1) & (position <= 1)).sum() / n),
            recall_at_3=float(((position >= 1) & (position <= 3)).sum() / n),
            mrr=float(np.where(position > 0, 1.0 / np.maximum(position, 1), 0.0).sum() / n),
            clients=len(targets), income_recall_at_3=income, hits_at_1=tuple((position == 1).tolist()),
            hits_at_3=tuple(top3.tolist()),
            weights=tuple(weight.tolist()),
        ))
    return results


def cross_fitted(data_set: str, cases: Sequence[Case], clients: pd.DataFrame | None, holdings: pd.DataFrame,
                 config: ProfileConfig, deals: pd.DataFrame | None = None, folds: int = 5,
                 seed: int = 0, few_fits: bool = False) -> list[RecallResult]:
    """Rank each case with profiles fitted on the other folds' clients only.

    By default every client is dealt to one of `folds` folds. With `few_fits`, only the cases' clients
    are dealt, into as few groups as keep each fit on at least (folds - 1) / folds of the clients that
    hold something, and the other clients are in every fit: when the cases are a small sample of the
    holders (5,000 of ~120,000 for a CRM of 1M deals) that is one fit instead of `folds`, each ranked
    client still unseen.
    """
    universe = list(dict.fromkeys(
        ([str(c) for c in clients["client_id"]] if clients is not None else [])
        + [str(c) for c in holdings["client_id"]]))
    ranked_ids = list(dict.fromkeys(c.client_id for c in cases))
    if few_fits:
        holders = holdings["client_id"].dropna().astype(str).nunique()
        groups = min(folds, max(1, math.ceil(len(ranked_ids) * folds / max(holders, 1))))
        dealt = np.random.default_rng(seed).permutation(len(ranked_ids)) % groups
        fold_of = dict.fromkeys(universe, -1) | dict(zip(ranked_ids, dealt.tolist(), strict=True))
        folds = groups
    else:
        fold_of = dict(zip(universe, np.random.default_rng(seed).permutation(len(universe)) % folds, strict=True))
    # Facts of the ranked clients only (all 125,000 of a 1M-deal CRM cost ~1 s for 5,000 ranked).
    ranked_clients = None if clients is None else clients[clients["client_id"].astype(str).isin(ranked_ids)]
    attributes = {f.client_id: f for f in client_facts(ranked_clients, None, config.extra_attributes, ids=ranked_ids)}
    ranked: dict[str, list[list[str]]] = {m: [] for m in METHODS}
    targets: list[str] = []
    weights: list[float] = []
    for fold in range(folds):
        fold_cases = [c for c in cases if fold_of[c.client_id] == fold]
        if not fold_cases:
            continue
        keep = {c for c in universe if fold_of[c] != fold}
        fold_deals = deals
        if deals is not None and "client_id" in deals.columns:  # deals without ids tell of no client
            fold_deals = deals[deals["client_id"].astype(str).isin(keep)]
        profiles = fit_profiles(
            fold_deals,
            None if clients is None else clients[clients["client_id"].astype(str).isin(keep)],
            holdings[holdings["client_id"].astype(str).isin(keep)], config)
        facts = [replace(attributes[c.client_id], products=c.given) for c in fold_cases]
        for method, lists in rankings(profiles, facts).items():
            ranked[method].extend(lists)
        targets.extend(c.target for c in fold_cases)
        weights.extend(c.weight for c in fold_cases)
    return score_rankings(data_set, ranked, targets, weights)


def hide_one_out_cases(holdings: pd.DataFrame, seed: int = 0, max_clients: int | None = None) -> list[Case]:
    """For each client holding something: all but one random held product given, that one the target."""
    rng = np.random.default_rng(seed)
    rows = holdings.dropna(subset=["client_id", "product"])
    money = rows["revenue"] if "revenue" in rows else pd.Series(np.nan, index=rows.index)
    revenue = money.astype(np.float64).groupby([rows["client_id"].astype(str), rows["product"].astype(str)],
                                               sort=True).sum(min_count=1)
    owned: dict[str, dict[str, float]] = {}
    for client_id, product, value in zip(revenue.index.get_level_values(0), revenue.index.get_level_values(1),
                                         revenue.to_numpy(), strict=True):
        owned.setdefault(str(client_id), {})[str(product)] = float(value)
    cases = []
    for client_id, products in owned.items():
        names = sorted(products)
        hidden = names[int(rng.integers(len(names)))]
        cases.append(Case(client_id, tuple(p for p in names if p != hidden), hidden, products[hidden]))
    if max_clients is not None and len(cases) > max_clients:
        chosen = np.sort(rng.choice(len(cases), size=max_clients, replace=False))
        cases = [cases[i] for i in chosen]
    return cases


def hide_one_out(data_set: str, clients: pd.DataFrame | None, holdings: pd.DataFrame,
                 config: ProfileConfig = DEFAULT_CONFIG, deals: pd.DataFrame | None = None, folds: int = 5,
                 seed: int = 0, max_clients: int | None = None, few_fits: bool = False) -> list[RecallResult]:
    """`seed` chooses the hidden product of each client and the folds."""
    cases = hide_one_out_cases(holdings, seed, max_clients)
    return cross_fitted(data_set, cases, clients, holdings, config, deals, folds, seed, few_fits)


def planted_gap_recall(crm: SyntheticCRM, config: ProfileConfig = DEFAULT_CONFIG, folds: int = 5,
                       seed: int = 0, data_set: str = "synthetic planted gaps") -> list[RecallResult]:
    owned: dict[str, tuple[str, ...]] = {}
    for client_id, product in zip(crm.holdings["client_id"], crm.holdings["product"], strict=True):
        owned[str(client_id)] = (*owned.get(str(client_id), ()), str(product))
    cases = [Case(str(c), tuple(sorted(set(owned.get(str(c), ())))), str(p))
             for c, p in zip(crm.planted_gaps["client_id"], crm.planted_gaps["product"], strict=True)]
    return cross_fitted(data_set, cases, crm.clients, crm.holdings, config, crm.deals, folds, seed)


def evaluate_profiles(deals: pd.DataFrame | None, clients: pd.DataFrame | None, holdings: pd.DataFrame | None,
                      config: ProfileConfig = DEFAULT_CONFIG, folds: int = 3, seed: int = 0,
                      max_clients: int = 5000) -> dict[str, Any]:
    """Hide-one-out recall of the training data's own holdings, for the training report."""
    if holdings is None or holdings.empty:
        from model.dataset import holdings_from_deals

        holdings = holdings_from_deals(deals) if deals is not None else None
    if holdings is None or holdings.empty:
        return {"evaluated": False, "why": "no holdings"}
    holders = holdings["client_id"].dropna().astype(str).nunique()
    if holders < MIN_EVALUATION_HOLDERS:
        # Each client is ranked by profiles fitted on the others: with a single holder those have no
        # holdings at all. The profiles themselves are still fitted (on that client).
        return {"evaluated": False,
                "why": f"hide-one-out needs at least {MIN_EVALUATION_HOLDERS} clients holding products (each is "
                       f"ranked by profiles fitted on the others); the holdings have {holders}"}
    # Few fits: at most max_clients clients are ranked, so on a large CRM one fit without them is enough
    # (~6 s at 1M deals, against ~21 s for three folds of all the clients).
    results = hide_one_out("training holdings", clients, holdings, config, deals, folds, seed, max_clients,
                           few_fits=True)
    by_method = {r.method: r.as_dict() for r in results}
    served, baseline = by_method[SERVED], by_method[BASELINE]
    return {
        "evaluated": True,
        "protocol": f"hide one held product per client (up to {max_clients:,} clients), cross-fitted by client: "
                    f"each ranked by profiles fitted on at least {folds - 1}/{folds} of the holders, never on itself",
        "methods": by_method,
        "recall_at_3_over_popularity": round(served["recall_at_3"] - baseline["recall_at_3"], 4),
        "recall_at_1_over_popularity": round(served["recall_at_1"] - baseline["recall_at_1"], 4),
    }


def ideal_profile_recovery(profiles: ClientProfiles, truth: pd.DataFrame) -> dict[str, float]:
    """Precision and recall of the fitted ideal profiles (industry x size segments) against the planted ones
    (`SyntheticCRM.ideal_profiles`: industry, size, product, ideal)."""
    planted = {(str(i), str(s), str(p)) for i, s, p, ideal
               in truth[["industry", "size", "product", "ideal"]].itertuples(index=False) if ideal}
    found, covered = set(), set()
    for segment in profiles.ideal_profiles():
        keys = segment["keys"]
        if set(keys) != {"industry", "size"}:
            continue
        covered.add((keys["industry"], keys["size"]))
        found |= {(keys["industry"], keys["size"], p) for p in segment["ideal_products"]}
    planted = {t for t in planted if t[:2] in covered}
    hits = len(found & planted)
    return {"segments": float(len(covered)), "precision": hits / max(len(found), 1),
            "recall": hits / max(len(planted), 1)}


SUMMARY_KEYS = ("clients", "holdings", "holdings_added_from_won_deals", "won_products_not_in_holdings",
                "won_products_not_in_holdings_count", "holdings_source", "products", "income_source",
                "holdings_revenue_all_zero",
                "segment_levels", "segments", "clients_by_segment_level", "acceptance_regularisation", "take_up")
SEGMENT_KEYS = ("segment", "clients", "best_clients", "ideal_income", "ideal_products")


def profile_report(profiles: ClientProfiles, deals: pd.DataFrame | None, clients: pd.DataFrame | None,
                   holdings: pd.DataFrame | None, config: ProfileConfig = DEFAULT_CONFIG,
                   folds: int = 3) -> dict[str, Any]:
    """The training report's section on profiles: what was fitted, and its held-out evaluation."""
    return {
        "summary": {k: profiles.summary[k] for k in SUMMARY_KEYS if k in profiles.summary},
        "evaluation": evaluate_profiles(deals, clients, holdings, config, folds=folds),
        "segments": [{k: p[k] for k in SEGMENT_KEYS} for p in profiles.ideal_profiles()],
    }


def won_not_held_note(summary: Mapping[str, Any]) -> str | None:
    added = int(summary.get("holdings_added_from_won_deals") or 0)
    if not added:
        return None
    return (f"{added:,} products that clients won in the last {WON_NOT_YET_IN_HOLDINGS_DAYS} days were missing "
            "from the holdings table: counted as held (not offered back as gaps unless a client's products are "
            "sent), earning what the product typically does")


def unfilled_revenue_note(summary: Mapping[str, Any]) -> str | None:
    if not summary.get("holdings_revenue_all_zero"):
        return None
    return (f"the holdings table's revenue is 0 in every row: read as not given (as an amount of 0 is no quote), "
            f"so clients' income is measured by {summary.get('income_source', 'won deal amounts')}")


def unlisted_products_note(summary: Mapping[str, Any]) -> str | None:
    """Won deals' products that the holdings table names nowhere (a spelling the folding does not join)."""
    unlisted: Mapping[str, int] = summary.get("won_products_not_in_holdings") or {}
    if not unlisted:
        return None
    shown = ", ".join(f"{name!r} ({counted(n, 'won deal')})" for name, n in list(unlisted.items())[:8])
    total = max(int(summary.get("won_products_not_in_holdings_count") or 0), len(unlisted))
    more = f" and {total - 8:,} more" if total > 8 else ""
    return (f"products of won deals that the holdings table never names: {shown}{more}; gap lists can offer only "
            f"products the holdings table names (holdings: {', '.join(map(repr, summary.get('products', [])[:8]))}"
            f"{', ...' if len(summary.get('products', [])) > 8 else ''}): if it spells them otherwise, make the two "
            "exports name them alike (case, spaces, '_' and '-' already match; the mapping file renames columns, "
            "not products)")


def take_up_note(summary: Mapping[str, Any]) -> str | None:
    """What a gap's p_accept means in this model: a calibrated take-up chance, or the share of similar clients."""
    take_up = summary.get("take_up")
    if not take_up:
        return None
    if take_up.get("calibrated"):
        check = take_up.get("check", {})
        return (f"a gap's p_accept is the chance of taking a product up within {take_up['days']} days, learnt from "
                "what clients lacking it took up in the last such window; checked out of time first: the map learnt "
                f"on the window before predicted the last one with log-loss {check.get('log_loss_calibrated')} "
                f"against {check.get('log_loss_p')} for the acceptance model's p (ECE {check.get('ece_calibrated')} "
                f"against {check.get('ece_p')})")
    return ("a gap's p_accept is the share of clients like the client that hold a product, not a take-up chance "
            f"(no take-up calibration: {take_up.get('why', 'not tried')})")


def _won_not_held(summary: Mapping[str, Any]) -> str:
    notes = [note for note in (won_not_held_note(summary), unlisted_products_note(summary), take_up_note(summary))
             if note]
    return "".join(f" {html.escape(note[0].upper() + note[1:])}." for note in notes)


def render_profiles_html(section: Mapping[str, Any] | None) -> str:
    """The profiles section of the HTML training report ('' when the model has none)."""
    if not section:
        return ""
    summary, evaluation = section["summary"], section["evaluation"]
    parts = [f"<h2>Ideal client profiles and gap lists</h2><p>{summary['clients']:,} clients, "
             f"{summary['holdings']:,} holdings of {len(summary['products'])} products; income from "
             f"{html.escape(str(summary['income_source']))}; segments "
             f"{html.escape(' → '.join(summary['segment_levels']))}.{_won_not_held(summary)}</p>"]
    if evaluation.get("evaluated"):
        rows = "".join(
            f"<tr><th>{html.escape(m)}</th><td>{r['recall_at_1']:.3f}</td><td>{r['recall_at_3']:.3f}</td>"
            f"<td>{r['mrr']:.3f}</td><td>{_shown(r['income_recall_at_3'], '.3f')}</td>"
            f"<td>{r['clients']}</td></tr>" for m, r in evaluation["methods"].items())
        head = ("<tr><th>method</th><th>recall@1</th><th>recall@3</th><th>MRR</th><th>income recall@3</th>"
                "<th>clients</th></tr>")
        # A sentence on the page ("hide one held product per client ..." had opened a paragraph in lower case).
        protocol = str(evaluation["protocol"])
        parts.append(f"<p>{html.escape(protocol[:1].upper() + protocol[1:])}.</p><table>{head}{rows}</table>")
    segments = "".join(
        f"<tr><th>{html.escape(s['segment'])}</th><td>{s['clients']}</td><td>{s['best_clients']}</td>"
        f"<td>{_shown(s['ideal_income'], ',.0f')}</td>"
        f"<td style='text-align:left'>{html.escape(', '.join(s['ideal_products']))}</td></tr>"
        for s in section["segments"])
    parts.append("<table><tr><th>segment</th><th>clients</th><th>best clients</th><th>ideal income</th>"
                 f"<th>ideal profile</th></tr>{segments}</table>")
    return "\n".join(parts)


def _shown(value: float | None, style: str) -> str:
    return "-" if value is None else format(value, style)


# ---------------------------------------------------------------------------------------------------
# Real holdings as canonical frames.

BANK_PRODUCTS = {"housing": "housing_loan", "loan": "personal_loan", "y": "term_deposit"}
BANK_CONFIG = ProfileConfig(extra_attributes=("education", "marital", "default", "balance"),
                            client_value_column="balance")


def bank_marketing_frames(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """UCI Bank Marketing as clients (job as industry, age band as size) and holdings of three products.

    No revenue per product exists: gaps rank by p_accept and the best clients are those with the
    highest average balance (BANK_CONFIG.client_value_column).
    """
    raw = pd.read_csv(path)
    ids = pd.Series([f"B{i:05d}" for i in range(1, len(raw) + 1)], dtype=object)
    age_band = pd.cut(raw["age"], [0, 30, 45, 60, 200], right=False, labels=["<30", "30-44", "45-59", "60+"])
    clients = pd.DataFrame({
        "client_id": ids, "industry": raw["job"].astype(object), "size": age_band.astype(str).astype(object),
        "education": raw["education"].astype(object), "marital": raw["marital"].astype(object),
        "default": raw["default"].astype(object), "balance": raw["balance"].astype(np.float64),
    })
    parts = [pd.DataFrame({"client_id": ids[raw[column] == "yes"], "product": product})
             for column, product in BANK_PRODUCTS.items()]
    holdings = pd.concat(parts, ignore_index=True).astype({"client_id": object, "product": object})
    holdings["revenue"] = np.nan
    return clients, holdings.sort_values(["client_id", "product"], ignore_index=True)


MAVEN_CONFIG = ProfileConfig(min_segment_clients=10, min_best_clients=3)


def maven_crm_frames(folder: str | Path, as_of: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Maven CRM accounts as clients and their won products as holdings (revenue = won close values).

    With `as_of`, only deals closed before that date count: a snapshot where accounts hold fewer
    products, so hiding one leaves a real choice (with all of 2017 nearly every account holds 6 of 7).
    """
    folder = Path(folder)
    accounts = pd.read_csv(folder / "accounts.csv")
    pipeline = pd.read_csv(folder / "sales_pipeline.csv", parse_dates=["close_date"])
    clients = pd.DataFrame({
        "client_id": accounts["account"].astype(object),
        "industry": accounts["sector"].replace({"technolgy": "technology"}).astype(object),
        "size": accounts["employees"].astype(np.float64),
        "region": accounts["office_location"].astype(object),
        "since": pd.to_datetime(accounts["year_established"].astype(str) + "-01-01").astype("datetime64[ns]"),
    })
    won = pipeline[(pipeline["deal_stage"] == "Won") & pipeline["account"].notna()].copy()
    won["product"] = won["product"].replace({"GTXPro": "GTX Pro"})
    if as_of is not None:
        won = won[won["close_date"] < pd.Timestamp(as_of)]
    grouped = won.groupby(["account", "product"], sort=True)
    holdings = pd.DataFrame({
        "client_id": grouped.size().index.get_level_values(0).astype(object),
        "product": grouped.size().index.get_level_values(1).astype(object),
        "since": grouped["close_date"].min().to_numpy().astype("datetime64[ns]"),
        "revenue": grouped["close_value"].sum().to_numpy(dtype=np.float64),
    })
    return clients, holdings


__all__ = [
    "BANK_CONFIG", "BASELINE", "MAVEN_CONFIG", "METHODS", "SERVED", "SERVED_BY_P", "Case", "RecallResult",
    "bank_marketing_frames", "cross_fitted", "evaluate_profiles", "hide_one_out", "hide_one_out_cases",
    "ideal_profile_recovery", "maven_crm_frames", "planted_gap_recall", "profile_report", "rankings",
    "render_profiles_html", "score_rankings", "take_up_note",
]
