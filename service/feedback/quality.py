"""Live quality of a model version: against what happened (outcomes) and against what managers think.

Outcomes: for each deal with an outcome, what the version said *at the time* (its latest score of the
deal on or before the close date, before the outcome was reported), then AUC, Brier score, calibration
error and the win rate per letter grade (model/metrics.py, the same formulas as the training report).

Judgements: for each manager's standing judgement "X above Y", the version's scores of X and Y closest
to the judgement (the latest at or before it, else the first after it). The version agrees when it
ranks X higher: by expected value, or by win probability when either value is unknown; a tie counts
half. The strongest disagreements (largest margin the wrong way) are the material for the next model.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol, TypeVar

import numpy as np
import sqlalchemy as sa

from model.terminal import terminal_cell
from service.feedback.outcomes import latest_logged_deals, realised_amount
from service.feedback.tables import judgements, outcomes, score_log


@dataclass(frozen=True)
class _Said:
    """One score a version gave a deal."""

    scored_at: datetime
    row_id: int
    p_win: float
    expected_value: float | None
    grade: str

    def as_dict(self) -> dict[str, Any]:
        return {"p_win": self.p_win, "expected_value": self.expected_value, "grade": self.grade,
                "scored_at": self.scored_at.isoformat()}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _scores_of(connection: sa.Connection, version: str, deal_ids: sa.Select[Any]) -> dict[str, list[_Said]]:
    """The version's scores of the given deals, per deal in time order."""
    rows = connection.execute(
        sa.select(score_log.c.deal_id, score_log.c.scored_at, score_log.c.id, score_log.c.p_win,
                  score_log.c.expected_value, score_log.c.grade)
        .where(score_log.c.model_version == version, score_log.c.deal_id.in_(deal_ids)))
    said: dict[str, list[_Said]] = defaultdict(list)
    for deal_id, scored_at, row_id, p_win, expected_value, grade in rows:
        said[deal_id].append(_Said(scored_at, int(row_id), float(p_win), expected_value, grade))
    for entries in said.values():
        entries.sort(key=lambda s: (s.scored_at, s.row_id))
    return said


def quality_report(engine: sa.Engine, version: str, *, top: int = 10) -> dict[str, Any]:
    # Only the outcomes and judgements of deals the version scored are read (ix_score_log_version_deal finds
    # them): every one of them had been, at each call, so a report's cost grew with all the outcomes ever
    # reported (a soak audit: 33 -> 262 ms over 9 minutes of traffic, 50 us per stored outcome).
    scored = sa.select(score_log.c.deal_id).where(score_log.c.model_version == version)
    with engine.connect() as connection:
        outcomes_total = connection.execute(sa.select(sa.func.count()).select_from(outcomes)).scalar_one()
        stored = connection.execute(
            sa.select(outcomes.c.deal_id, outcomes.c.status, outcomes.c.amount, outcomes.c.closed_at,
                      outcomes.c.recorded_at)
            .where(outcomes.c.deal_id.in_(scored))).all()
        # A won deal reported without an amount realised its quote, as history and training count it.
        unpriced = [r.deal_id for r in stored if r.status == "won" and r.amount is None]
        quoted = latest_logged_deals(connection, unpriced) if unpriced else {}
        outcome_rows = [(r.deal_id, r.status, realised_amount(r.status, r.amount, quoted.get(r.deal_id)),
                         r.closed_at, r.recorded_at) for r in stored]
        outcome_scores = _scores_of(connection, version, sa.select(outcomes.c.deal_id))
        judgements_total = connection.execute(sa.select(sa.func.count()).select_from(judgements)).scalar_one()
        judgement_rows = connection.execute(
            sa.select(judgements).where(judgements.c.above_deal_id.in_(scored), judgements.c.below_deal_id.in_(scored))
            .order_by(judgements.c.id)).mappings().all()
        judged = sa.union(sa.select(judgements.c.above_deal_id), sa.select(judgements.c.below_deal_id))
        judgement_scores = _scores_of(connection, version, sa.select(judged.subquery().c[0]))
    return {
        "version": version,
        "outcomes": outcome_quality(outcome_rows, outcome_scores, total=int(outcomes_total)),
        "judgements": judgement_quality(judgement_rows, judgement_scores, top=top, total=int(judgements_total)),
    }


def outcome_quality(rows: Sequence[Any], said: dict[str, list[_Said]], *, total: int | None = None) -> dict[str, Any]:
    """`rows`: (deal_id, status, amount, closed_at[, recorded_at]) of outcomes (recorded_at: when the service first
    had it); `total`: all the outcomes stored, when `rows` are only those of deals the version scored (len(rows)
    otherwise)."""
    won: list[float] = []
    p: list[float] = []
    grades: list[str] = []
    realised: list[float] = []
    for deal_id, status, amount, closed_at, *recorded in rows:
        latest = said_at_close(said.get(deal_id, []), closed_at, recorded[0] if recorded else None)
        if latest is None:
            continue
        won.append(1.0 if status == "won" else 0.0)
        p.append(latest.p_win)
        grades.append(latest.grade)
        realised.append(amount if amount is not None else math.nan)
    # model.metrics pulls in scikit-learn (seconds to import): only when a report is asked for, so a
    # service worker starts (and answers uvicorn's health check) as fast as it did without the feedback loop.
    from model.metrics import auc_interval, calibration_curve, ece_by_chance, grade_table, probability_metrics

    # max: the total is counted in a statement of its own, and an outcome stored in between is in `rows` only.
    summary: dict[str, Any] = {"outcomes_total": max(total or 0, len(rows)), "deals": len(won)}
    if not won:
        return {**summary, "auc": None, "brier": None, "calibration_error": None, "auc_low_95": None,
                "auc_high_95": None, "calibration_error_by_chance": None, "log_loss": None,
                "mean_p_win": None, "win_rate": None, "grades": [], "calibration": []}
    won_array, p_array = np.asarray(won), np.asarray(p)
    metrics = probability_metrics(won_array, p_array)
    # How much these few outcomes can say: live figures rest on hundreds of deals, not a holdout's thousands.
    auc_low, auc_high = auc_interval(won_array, p_array)
    return {
        **summary,
        "auc": _finite(metrics["auc"]),
        "brier": _finite(metrics["brier"]),
        "calibration_error": _finite(metrics["ece"]),
        "auc_low_95": _finite(auc_low),
        "auc_high_95": _finite(auc_high),
        "calibration_error_by_chance": _finite(ece_by_chance(p_array)["mean"]),
        "log_loss": _finite(metrics["log_loss"]),
        "mean_p_win": _finite(metrics["mean_p"]),
        "win_rate": _finite(metrics["win_rate"]),
        "grades": grade_table(won_array, grades, np.asarray(realised)),
        "calibration": calibration_curve(won_array, p_array),
    }


class Scoring(Protocol):
    """One logged score of a deal by one version; lists of them are in time order (scored_at, row id)."""

    @property
    def scored_at(self) -> datetime: ...


S = TypeVar("S", bound=Scoring)


def said_at_close(entries: Sequence[S], closed_at: date, recorded_at: datetime | None = None) -> S | None:
    """What the version said at the time of an outcome: its latest score on or before the close day, and before the
    service had the outcome (`recorded_at`, its first recording, on the serving host's clock as the scores' times are;
    instants are UTC, tables.UtcDateTime); None when it
    scored the deal only later. A CRM that re-scores a deal as it closes sends the closing fields (a final amount,
    an amount zeroed for a lost deal): such a score, given once the outcome was in, was counted as said before it
    (a feedback audit: 12 of 300 deals, AUC 0.7913 reported against 0.7941). (The score-log prune keeps it.)"""
    at_the_time = [s for s in entries
                   if s.scored_at.date() <= closed_at and (recorded_at is None or s.scored_at <= recorded_at)]
    return at_the_time[-1] if at_the_time else None


def closest(entries: Sequence[S], when: datetime) -> S | None:
    """The score a judgement is compared on: the latest at or before `when`, else the first one after it. (The
    score-log prune keeps it.)"""
    if not entries:
        return None
    position = bisect.bisect_right([s.scored_at for s in entries], when)
    return entries[position - 1] if position > 0 else entries[0]


def _order_key(above: _Said, below: _Said) -> tuple[float, float, str]:
    ev_above, ev_below = _finite(above.expected_value), _finite(below.expected_value)
    if ev_above is not None and ev_below is not None:
        return ev_above, ev_below, "expected_value"
    return above.p_win, below.p_win, "p_win"


def judgement_quality(rows: Sequence[Any], said: dict[str, list[_Said]], *, top: int = 10,
                      total: int | None = None) -> dict[str, Any]:
    """`total`: all the judgements stored, when `rows` are only those whose two deals the version scored (the
    others count as not scored by it)."""
    per_manager: dict[str, list[float]] = defaultdict(list)
    disagreements: list[tuple[float, dict[str, Any]]] = []
    total = max(total or 0, len(rows))  # counted in a statement of its own: a judgement stored in between
    not_scored = total - len(rows)
    for row in rows:
        above = closest(said.get(row["above_deal_id"], []), row["updated_at"])
        below = closest(said.get(row["below_deal_id"], []), row["updated_at"])
        if above is None or below is None:
            not_scored += 1
            continue
        value_above, value_below, by = _order_key(above, below)
        agreement = 1.0 if value_above > value_below else 0.5 if value_above == value_below else 0.0
        per_manager[row["manager"]].append(agreement)
        if agreement == 0.0:
            disagreements.append((value_below - value_above, {
                "manager": row["manager"], "above_deal_id": row["above_deal_id"],
                "below_deal_id": row["below_deal_id"], "note": row["note"], "compared_by": by,
                "margin": value_below - value_above, "judged_at": row["updated_at"].isoformat(),
                "above": above.as_dict(), "below": below.as_dict(),
            }))
    every = [a for scores in per_manager.values() for a in scores]
    disagreements.sort(key=lambda d: -d[0])
    return {
        "judgements_total": total,
        "pairs": len(every),
        "agreed": sum(every),
        "agreement": sum(every) / len(every) if every else None,
        "not_scored_by_version": not_scored,
        "managers": [{"manager": manager, "pairs": len(scores), "agreed": sum(scores),
                      "agreement": sum(scores) / len(scores)} for manager, scores in sorted(per_manager.items())],
        "disagreements": [d for _, d in disagreements[:top]],
    }


def model_versions(engine: sa.Engine) -> list[dict[str, Any]]:
    """Every version the log has scores of, the most recently scoring first."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(score_log.c.model_version, sa.func.count(), sa.func.count(sa.distinct(score_log.c.deal_id)),
                      sa.func.min(score_log.c.scored_at), sa.func.max(score_log.c.scored_at))
            .group_by(score_log.c.model_version)).all()
    versions = [{"version": v, "scores": int(n), "deals": int(d), "first_scored_at": first.isoformat(),
                 "last_scored_at": last.isoformat()} for v, n, d, first, last in rows]
    return sorted(versions, key=lambda v: v["last_scored_at"], reverse=True)


def latest_version(engine: sa.Engine) -> str | None:
    """The version that scored most recently: the live one, as far as the log knows."""
    with engine.connect() as connection:
        found = connection.execute(sa.select(score_log.c.model_version)
                                   .order_by(score_log.c.scored_at.desc(), score_log.c.id.desc()).limit(1)).first()
    return None if found is None else str(found[0])


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_table(report: dict[str, Any]) -> str:
    """The report as a terminal table (`dealscore quality`). Managers' names, notes and deal ids came from the
    API: each is one line of escaped text (a newline in a name printed a forged row; model/terminal.py)."""
    o, j = report["outcomes"], report["judgements"]
    cell = terminal_cell
    lines = [f"model version {cell(report['version'])}", "",
             f"outcomes: {o['deals']:,} deals scored by this version before they closed "
             f"(of {o['outcomes_total']:,} outcomes)"]
    if o["deals"]:
        lines.append(f"  {'AUC':>8}{'Brier':>8}{'ECE':>8}{'mean p':>8}{'win rate':>10}")
        lines.append(f"  {_number(o['auc']):>8}{_number(o['brier']):>8}{_number(o['calibration_error']):>8}"
                     f"{_number(o['mean_p_win']):>8}{_number(o['win_rate']):>10}")
        if o.get("calibration_error_by_chance") is not None:  # older services' answers lack it
            interval = (f"AUC within {_number(o['auc_low_95'])}-{_number(o['auc_high_95'])} (95%); "
                        if o.get("auc_low_95") is not None else "")
            lines.append(f"  on {o['deals']:,} deals: {interval}a perfectly calibrated model would show ECE "
                         f"{_number(o['calibration_error_by_chance'])} by chance alone")
        lines.append(f"  {'grade':<6}{'deals':>7}{'win rate':>10}{'share of won value':>20}")
        for g in o["grades"]:
            lines.append(f"  {g['grade']:<6}{g['deals']:>7,}{g['win_rate']:>10.3f}"
                         f"{g['share_of_realised_value']:>20.3f}")
    lines += ["", f"judgements: {j['pairs']:,} pairs compared (of {j['judgements_total']:,}; "
                  f"{j['not_scored_by_version']:,} with a deal this version never scored)"]
    if j["pairs"]:
        lines.append(f"  {'manager':<24}{'pairs':>7}{'agreed':>9}{'share':>8}")
        for m in j["managers"]:
            lines.append(f"  {cell(m['manager'])[:24]:<24}{m['pairs']:>7,}{m['agreed']:>9.1f}"
                         f"{m['agreement']:>8.3f}")
        lines.append(f"  {'all':<24}{j['pairs']:>7,}{j['agreed']:>9.1f}{j['agreement']:>8.3f}")
    if j["disagreements"]:
        lines += ["", "strongest disagreements (manager says above, the model ranks below):"]
        lines.append(f"  {'manager':<18}{'above':<14}{'below':<14}{'by':<16}{'above':>12}{'below':>12}  note")
        for d in j["disagreements"]:
            key = "expected_value" if d["compared_by"] == "expected_value" else "p_win"
            lines.append(f"  {cell(d['manager'])[:18]:<18}{cell(d['above_deal_id'])[:14]:<14}"
                         f"{cell(d['below_deal_id'])[:14]:<14}{d['compared_by']:<16}{d['above'][key]:>12,.3f}"
                         f"{d['below'][key]:>12,.3f}  {cell(d['note'] or '')[:40]}")
    return "\n".join(lines)
