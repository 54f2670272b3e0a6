"""Gap-list benchmark: recall of planted and hidden products, served gap lists beside popularity.

    .venv/bin/python -m bench.gaps_bench [--seed 7] [--deals 20000] [--folds 5] [--draws 5] [--json FILE]

Prints one table (data set, method, recall@1, recall@3, MRR, income@3, clients), the goals and the
profiles' precision. Real data sets are read from ../shared/data and skipped when absent.

Each method is compared with popularity on the same cases by a sign test (exact McNemar): the clients
whose hidden product only the method brings back in its top 3 against those only popularity does. With
85 clients (maven) one client is 1.2 points of recall, so a difference is shown with its p-value; maven's
hidden products are drawn `--draws` times (other products hidden, other folds) and the cases pooled. Pooled
cases of one client are not independent, so there the p-value is too small: a lower bound.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from training.gap_evaluation import (
    BANK_CONFIG,
    BASELINE,
    MAVEN_CONFIG,
    SERVED,
    SERVED_BY_P,
    RecallResult,
    bank_marketing_frames,
    hide_one_out,
    ideal_profile_recovery,
    maven_crm_frames,
    planted_gap_recall,
)
from training.profiles_fit import ProfileConfig, fit_profiles
from training.synthetic_crm import generate

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MAVEN_SNAPSHOT = "2017-04-01"


def run(seed: int, n_deals: int, folds: int, draws: int = 5) -> tuple[list[RecallResult], dict[str, float]]:
    results: list[RecallResult] = []
    crm = generate(seed=seed, n_deals=n_deals)
    recovery = ideal_profile_recovery(fit_profiles(crm.deals, crm.clients, crm.holdings), crm.ideal_profiles)
    results += planted_gap_recall(crm, ProfileConfig(), folds=folds)
    results += hide_one_out("synthetic hide-one-out", crm.clients, crm.holdings, ProfileConfig(), crm.deals,
                            folds)
    bank = SHARED_DATA / "bank_marketing" / "bank_full.csv"
    if bank.is_file():
        clients, holdings = bank_marketing_frames(bank)
        results += hide_one_out("bank_marketing hide-one-out", clients, holdings, BANK_CONFIG, folds=folds)
    maven = SHARED_DATA / "maven_crm"
    if (maven / "sales_pipeline.csv").is_file():
        for name, as_of in (("maven_crm hide-one-out", None), (f"maven_crm hide-one-out @{MAVEN_SNAPSHOT}",
                                                               MAVEN_SNAPSHOT)):
            clients, holdings = maven_crm_frames(maven, as_of=as_of)
            label = f"{name} x{draws}" if draws > 1 else name
            results += pooled(label, [hide_one_out(label, clients, holdings, MAVEN_CONFIG, folds=folds, seed=draw)
                                      for draw in range(draws)])
    return results, recovery


def pooled(data_set: str, runs: list[list[RecallResult]]) -> list[RecallResult]:
    """Several draws of one protocol as one result per method, over all their cases."""
    def mean(values: list[float], weights: list[int]) -> float:
        return sum(v * w for v, w in zip(values, weights, strict=True)) / max(sum(weights), 1)

    out = []
    for method_runs in zip(*runs, strict=True):
        n = sum(r.clients for r in method_runs)
        sizes = [r.clients for r in method_runs]
        incomes = [r.income_recall_at_3 for r in method_runs]
        out.append(replace(
            method_runs[0], data_set=data_set, clients=n,
            recall_at_1=mean([r.recall_at_1 for r in method_runs], sizes),
            recall_at_3=mean([r.recall_at_3 for r in method_runs], sizes),
            mrr=mean([r.mrr for r in method_runs], sizes),
            income_recall_at_3=None if None in incomes else mean([v for v in incomes if v is not None], sizes),
            hits_at_1=tuple(hit for r in method_runs for hit in r.hits_at_1),
            hits_at_3=tuple(hit for r in method_runs for hit in r.hits_at_3),
            weights=tuple(w for r in method_runs for w in r.weights)))
    return out


def sign_test(method: RecallResult, baseline: RecallResult, top: int = 3) -> tuple[int, int, float]:
    """Cases only `method` has in its top `top` (1 or 3), cases only `baseline` has, and the two-sided exact
    p-value."""
    if top not in (1, 3):
        raise ValueError(f"top: 1 or 3 (the places RecallResult keeps hits for), got {top}")
    hits_m, hits_b = (method.hits_at_1, baseline.hits_at_1) if top == 1 else (method.hits_at_3, baseline.hits_at_3)
    ahead = sum(m and not b for m, b in zip(hits_m, hits_b, strict=True))
    behind = sum(b and not m for m, b in zip(hits_m, hits_b, strict=True))
    p = binomtest(ahead, ahead + behind, 0.5).pvalue if ahead + behind else 1.0
    return ahead, behind, float(p)


def income_test(method: RecallResult, baseline: RecallResult, rounds: int = 20_000) -> tuple[float, float]:
    """Revenue-weighted recall@3 of `method` minus the baseline's on the same cases, and its two-sided p-value
    by a paired sign-flip test (each case's revenue found by one method only, its sign flipped at random)."""
    w = np.array(method.weights, dtype=np.float64)
    ok = np.isfinite(w) & (w > 0)
    hit_m, hit_b = np.array(method.hits_at_3)[ok], np.array(baseline.hits_at_3)[ok]
    d = w[ok] * (hit_m.astype(np.float64) - hit_b)
    d = d[d != 0] / w[ok].sum()
    if not d.size:
        return 0.0, 1.0
    rng, observed, reached = np.random.default_rng(0), abs(d.sum()), 0
    for start in range(0, rounds, 1_000):  # in chunks: rounds x cases at once is gigabytes for thousands of cases
        flips = rng.choice((-1.0, 1.0), size=(min(1_000, rounds - start), d.size)) @ d
        reached += int((np.abs(flips) >= observed - 1e-12).sum())
    return float(d.sum()), float((reached + 1) / (rounds + 1))


def table(results: list[RecallResult]) -> str:
    header = (f"{'data set':<36} {'method':<24} {'recall@1':>8} {'recall@3':>8} {'MRR':>6} "
              f"{'income@3':>8} {'clients':>8}")
    lines = [header, "-" * len(header)]
    for r in results:
        income = "-" if r.income_recall_at_3 is None else f"{r.income_recall_at_3:.3f}"
        lines.append(f"{r.data_set:<36} {r.method:<24} {r.recall_at_1:>8.3f} {r.recall_at_3:>8.3f} "
                     f"{r.mrr:>6.3f} {income:>8} {r.clients:>8,}")
    return "\n".join(lines)


def goals(results: list[RecallResult]) -> list[str]:
    by = {(r.data_set, r.method): r for r in results}
    lines = []
    baseline = by[("synthetic planted gaps", BASELINE)]
    for method in (SERVED, SERVED_BY_P):
        ranked = by[("synthetic planted gaps", method)]
        meets_floor = ranked.recall_at_3 >= 0.85
        meets_lead = ranked.recall_at_3 >= baseline.recall_at_3 + 0.2
        lines.append(f"synthetic planted gaps, {method}: recall@3 {ranked.recall_at_3:.3f} >= 0.85: "
                     f"{'yes' if meets_floor else 'NO'}; >= popularity {baseline.recall_at_3:.3f} + 0.2: "
                     f"{'yes' if meets_lead else 'NO'}")
    for data_set in dict.fromkeys(r.data_set for r in results):
        if data_set == "synthetic planted gaps":
            continue
        b = by[(data_set, BASELINE)]
        for method in (SERVED, SERVED_BY_P):
            s = by[(data_set, method)]
            pooled_draws = ", a lower bound: draws pooled" if " x" in data_set else ""
            # Both cut-offs tested: with three products (bank marketing) a top 3 holds every one a client lacks,
            # and only the first place tells the methods apart.
            ahead1, behind1, p1 = sign_test(s, b, top=1)
            ahead, behind, p = sign_test(s, b)
            lines.append(f"{data_set}: {method} - popularity: recall@1 {s.recall_at_1 - b.recall_at_1:+.3f} "
                         f"(first on {ahead1:,} cases popularity misses, behind on {behind1:,}, sign test "
                         f"p={p1:.2g}{pooled_draws}), recall@3 {s.recall_at_3 - b.recall_at_3:+.3f} (top 3 ahead on "
                         f"{ahead:,} cases, behind on {behind:,}, sign test p={p:.2g}{pooled_draws}), "
                         f"MRR {s.mrr - b.mrr:+.3f}")
            if s.income_recall_at_3 is not None and b.income_recall_at_3 is not None:
                # What ranking by expected income maximises: the hidden holdings' revenue found in the top 3.
                gain, p_income = income_test(s, b)
                lines.append(f"{data_set}: {method} - popularity: income recall@3 {gain:+.3f} (paired sign-flip "
                             f"p={p_income:.2g}{', a lower bound: draws pooled' if ' x' in data_set else ''})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--draws", type=int, default=5, help="hidden-product draws pooled on maven (small)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    started = time.perf_counter()
    results, recovery = run(args.seed, args.deals, args.folds, args.draws)
    print(table(results))
    print()
    print("\n".join(goals(results)))
    print(f"synthetic ideal profiles (industry x size, fitted on all clients) against the planted ones: "
          f"precision {recovery['precision']:.3f}, recall {recovery['recall']:.3f} "
          f"over {recovery['segments']:.0f} segments")
    print(f"\n({time.perf_counter() - started:.1f} s; {args.folds}-fold cross-fitted by client; "
          f"synthetic seed {args.seed}, {args.deals:,} deals)")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": [r.as_dict() for r in results],
                                               "ideal_profile_recovery": recovery}, indent=2) + "\n")


if __name__ == "__main__":
    main()
