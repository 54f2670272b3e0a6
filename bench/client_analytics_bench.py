"""Client analytics on real purchases (issue 6): does a client's status, RFM scores, ABC and XYZ class as of a
day tell who buys again, and how much, in the months after it?

    python -m bench client_analytics_bench
    python -m bench client_analytics_bench -- --as-of 1997-09-30 --months 9

The data are CDNOW's (../shared/data/cdnow: every purchase of the customers who first bought in the first
quarter of 1997, to the end of June 1998; skipped when absent), read through bench/mappings/cdnow.yaml, each
purchase a won deal. The analytics are model.client_analytics' (as `dealscore clients` writes them), computed
from the purchases up to the as-of day; each class is then judged on the purchases after it: the share of its
clients who bought again, its share of the later revenue against its share of the clients, and revenue per
client. The recency, frequency and money scores are also judged as rankings of who buys again (ROC AUC),
beside the raw days, counts and money they are quintiles of.

The rules promise an order (docs/domain.md): a longer silence, fewer purchases or less money means a client
less likely to buy again; class A brings more than B, B more than C; X buys more regularly than Y, Y than Z;
golden clients (AX, AY) are the ones to keep. The bench says, per promise, whether the later purchases bear it
out.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from bench.public_data import BY_NAME, DATA_DIR, load
from bench.tables import format_table
from model.client_analytics import client_analytics, status_windows

AS_OF = date(1997, 12, 31)  # a year of the cohort's purchases behind it, six months of data after it
MONTHS = 6
LOST_WINDOWS = (90, 180, 360)  # the lost windows docs/domain.md names; 360 is the default
GROUPINGS = ("status", "status_window", "r_score", "f_score", "m_score", "abc", "xyz", "golden")
# Each promise: the grouping, its levels from best to worst, and the measure that must fall along them.
PROMISES: tuple[tuple[str, tuple[object, ...], str], ...] = (
    ("status_window", ("0-90", "91-180", "181-360", "361+"), "bought_again"),
    ("status", ("regular", "new", "lost"), "bought_again"),
    ("r_score", (5, 4, 3, 2, 1), "bought_again"),
    ("f_score", (5, 4, 3, 2, 1), "bought_again"),
    ("m_score", (5, 4, 3, 2, 1), "revenue_per_client"),
    ("abc", ("A", "B", "C"), "revenue_per_client"),
    ("xyz", ("X", "Y", "Z"), "bought_again"),
    ("golden", (True, False), "revenue_per_client"),
)


@dataclass(frozen=True)
class ClassOutcome:
    """What the clients of one level of one grouping did after the as-of day."""

    grouping: str
    level: object
    clients: int
    client_share: float
    bought_again: float  # share of the level's clients with a purchase after the day
    revenue_share: float  # the level's share of all revenue after the day
    revenue_per_client: float


@dataclass(frozen=True)
class AnalyticsCheck:
    table: pd.DataFrame  # client_analytics' table as of the day, with bought_again and later_revenue
    outcomes: list[ClassOutcome]
    aucs: dict[str, float]  # how well each column ranks the clients who bought again
    promises: list[tuple[str, str, bool]]  # (grouping, measure along its levels, held)
    later_purchases: int
    by_lost_window: dict[int, list[ClassOutcome]]  # the status grouping under each lost window


def judge(deals: pd.DataFrame, as_of: date, months: int) -> AnalyticsCheck:
    """The analytics of `deals` (all won, the contract's columns) as of `as_of`, judged on the `months` after."""
    earlier = deals[deals["created_at"] <= pd.Timestamp(as_of)]
    end = pd.Timestamp(as_of) + pd.DateOffset(months=months)
    later = deals[(deals["created_at"] > pd.Timestamp(as_of)) & (deals["created_at"] <= end)]
    table = client_analytics(earlier, None, as_of=as_of)
    table = table[table["status"] != "prospect"].reset_index(drop=True)  # every client of `earlier` has bought
    revenue = later.groupby(later["client_id"].astype(str))["amount"].sum()
    table["later_revenue"] = table["client_id"].map(revenue).fillna(0.0).to_numpy(dtype=np.float64)
    table["bought_again"] = table["client_id"].isin(set(later["client_id"].astype(str)))
    total = float(table["later_revenue"].sum())
    outcomes = [_outcome(table, grouping, level, total) for grouping in GROUPINGS
                for level in _levels(table[grouping], grouping)]
    bought = table["bought_again"].to_numpy()
    scores = {"r_score": table["r_score"], "f_score": table["f_score"], "m_score": table["m_score"],
              "r+f+m scores": table["r_score"] + table["f_score"] + table["m_score"],
              "recency (days, fewer first)": -table["recency_days"], "frequency (purchases)": table["frequency"],
              "monetary (money)": table["monetary"]}
    aucs = {name: float(roc_auc_score(bought, np.asarray(values, dtype=np.float64)))
            for name, values in scores.items()}
    by_level = {(o.grouping, o.level): o for o in outcomes}
    promises = [(grouping, measure, _falls([getattr(by_level[(grouping, level)], measure)
                                            for level in levels if (grouping, level) in by_level]))
                for grouping, levels, measure in PROMISES]
    by_window = {}
    for window in LOST_WINDOWS:
        statuses = client_analytics(earlier, None, as_of=as_of, windows=status_windows(window))["status"]
        with_status = table.assign(status=statuses[statuses != "prospect"].to_numpy())
        by_window[window] = [_outcome(with_status, "status", level, total)
                             for level in _levels(with_status["status"], "status")]
    return AnalyticsCheck(table, outcomes, aucs, promises, len(later), by_window)


def _levels(column: pd.Series, grouping: str) -> list[object]:
    """The column's levels, best first as the promises order them (others after, by name)."""
    order = next((levels for name, levels, _ in PROMISES if name == grouping), ())
    present = [_plain(level) for level in column.dropna().unique()]
    return [level for level in order if level in present] + sorted(
        (level for level in present if level not in order), key=str)


def _outcome(table: pd.DataFrame, grouping: str, level: object, total_revenue: float) -> ClassOutcome:
    members = table[table[grouping] == level]
    revenue = float(members["later_revenue"].sum())
    return ClassOutcome(grouping, _plain(level), len(members), len(members) / len(table),
                        float(members["bought_again"].mean()), revenue / total_revenue if total_revenue else 0.0,
                        revenue / len(members))


def _plain(level: object) -> object:
    return level.item() if isinstance(level, np.generic) else level


def _falls(values: Sequence[float]) -> bool:
    """Strictly falling, over at least two levels (one level alone bears out nothing)."""
    return len(values) >= 2 and all(a > b for a, b in zip(values, values[1:], strict=False))


def cdnow_deals() -> pd.DataFrame | None:
    public = BY_NAME["cdnow"]
    return load("cdnow").deals if public.available(DATA_DIR) else None


def report(check: AnalyticsCheck, as_of: date, months: int) -> str:
    rows = [[o.grouping, str(o.level), o.clients, o.client_share, o.bought_again, o.revenue_share,
             o.revenue_per_client] for o in check.outcomes]
    first = format_table(
        f"CDNOW: client analytics as of {as_of}, judged on the {months} months after "
        f"({len(check.table):,} clients, {check.later_purchases:,} later purchases)",
        ["grouping", "level", "clients", "client share", "bought again", "revenue share", "revenue/client"], rows)
    base = float(check.table["bought_again"].mean())
    second = format_table(
        f"Who buys again (base rate {base:.4f}): ROC AUC of each column",
        ["ranked by", "AUC"], [[name, auc] for name, auc in check.aucs.items()])
    third = format_table(
        "Client status under each lost window (a client silent longer than the window is lost)",
        ["lost window (days)", "status", "clients", "client share", "bought again", "revenue share"],
        [[window, o.level, o.clients, o.client_share, o.bought_again, o.revenue_share]
         for window, outcomes in check.by_lost_window.items() for o in outcomes])
    notes = [f"{grouping}: {measure.replace('_', ' ')} falls from the best level to the worst: "
             f"{'yes' if held else 'NO'}" for grouping, measure, held in check.promises]
    return "\n\n".join([first, second, third, "\n".join(notes)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--as-of", type=date.fromisoformat, default=AS_OF)
    parser.add_argument("--months", type=int, default=MONTHS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    deals = cdnow_deals()
    if deals is None:
        print(f"cdnow not found under {DATA_DIR}: skipped")
        return 0
    check = judge(deals, args.as_of, args.months)
    print(report(check, args.as_of, args.months))
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
