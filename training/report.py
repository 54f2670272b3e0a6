"""The training report as a self-contained HTML page (inline SVG plots, no external assets)."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from model.artifact import strict_json
from model.grades import LETTERS
from model.metrics import BASELINE_LEAD_P, SOLID_HOLDOUT, holdout_noise_text, p_value_text, slice_auc_caveat
from training.calibration import MIN_DRIFT_SLICE
from training.gap_evaluation import render_profiles_html

if TYPE_CHECKING:
    from training.fit import TrainingResult

# The files a training run adds to its artifact beside the model and metadata.json.
REPORT_FILES = ("report.json", "report.html", "holdout.csv")


def report_files(result: TrainingResult) -> dict[str, bytes]:
    """report.json, report.html and holdout.csv (the holdout deals the evaluation scored, one per row: every
    figure of the report can be recomputed from it) as the artifact stores them."""
    files = {"report.json": json.dumps(strict_json(result.report), indent=2, allow_nan=False).encode(),
             "report.html": render_html(result.report).encode()}
    if result.holdout is not None:
        files["holdout.csv"] = result.holdout.to_csv(index=False, date_format="%Y-%m-%d").encode()
    return files

_WIDTH, _HEIGHT, _PAD = 360, 300, 40


def _count_offset(point: dict[str, Any]) -> int:
    """Where a point's deal count goes, in pixels down from it: on the side away from the dashed line and the curve
    that mostly hugs it (above, counts were struck through by the line), within the plot."""
    below = point["win_rate"] < point["mean_p"]
    if point["win_rate"] < 0.05 or point["win_rate"] > 0.95:
        below = point["win_rate"] > 0.95
    return 12 if below else -6


def _calibration_svg(curve: list[dict[str, Any]]) -> str:
    def x(v: float) -> float:
        return _PAD + v * (_WIDTH - 2 * _PAD)

    def y(v: float) -> float:
        return _HEIGHT - _PAD - v * (_HEIGHT - 2 * _PAD)

    points = " ".join(f"{x(b['mean_p']):.1f},{y(b['win_rate']):.1f}" for b in curve)
    dots = "".join(
        f'<circle cx="{x(b["mean_p"]):.1f}" cy="{y(b["win_rate"]):.1f}" r="{2 + min(b["deals"], 2000) ** 0.5 / 8:.1f}"'
        f' fill="#1f6feb"><title>p {b["mean_p"]:.2f}: won {b["win_rate"]:.2f} of {b["deals"]} deals</title></circle>'
        # How many deals each point stands on, on the page itself: a point on 1 deal at a win rate of 1.0 looked as
        # sure as one on 300 (the dot grows by the square root, 2.1 against 4.2 px), and a tooltip never prints.
        f'<text x="{x(b["mean_p"]) + 6:.1f}" y="{y(b["win_rate"]) + _count_offset(b):.1f}" '
        f'font-size="9" fill="#57606a">{b["deals"]:,}</text>'
        for b in curve)
    ticks = "".join(
        f'<text x="{x(t):.0f}" y="{_HEIGHT - _PAD + 15}" font-size="10" text-anchor="middle">{t:.1f}</text>'
        f'<text x="{_PAD - 6}" y="{y(t) + 3:.0f}" font-size="10" text-anchor="end">{t:.1f}</text>'
        for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0))
    return (f'<svg width="{_WIDTH}" height="{_HEIGHT}" role="img" aria-label="calibration curve">'
            f'<rect x="{_PAD}" y="{_PAD}" width="{_WIDTH - 2 * _PAD}" height="{_HEIGHT - 2 * _PAD}" fill="#f6f8fa"/>'
            f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" stroke="#999" stroke-dasharray="4"/>'
            f'<polyline points="{points}" fill="none" stroke="#1f6feb"/>{dots}{ticks}'
            f'<text x="{_WIDTH / 2}" y="{_HEIGHT - 5}" font-size="11" text-anchor="middle">predicted p_win</text>'
            f'<text x="12" y="{_HEIGHT / 2}" font-size="11" transform="rotate(-90 12 {_HEIGHT / 2})" '
            f'text-anchor="middle">observed win rate</text></svg>'
            "<p>Each point: the holdout deals scored within one tenth of the scale (0-0.1, 0.1-0.2, ...), their mean "
            "p_win against the share of them won, with the number of deals beside it; on the dashed line, deals scored "
            "p are won a share p of the time. A point on a few deals can lie far from the line by chance alone.</p>")


def _every_grade(grades: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A, B, C and D in order, a class no holdout deal fell in with 0 deals: a class left out of the table read as
    forgotten (a model without effort hours showed A, B and C; one without amounts, C alone)."""
    found = {g["grade"]: g for g in grades}
    return [found.get(str(letter), {"grade": str(letter), "deals": 0, "share_of_deals": 0.0, "win_rate": None,
                                    "share_of_realised_value": 0.0}) for letter in LETTERS]


def _realised_value_known(grades: list[dict[str, Any]]) -> bool:
    """Whether any won holdout deal had an amount: model.metrics.grade_table gives every class a share of 0 when
    none had, which the page printed as 0.0% of the realised value, as if the classes had realised nothing."""
    return any(g["share_of_realised_value"] > 0 for g in grades)


def _grade_svg(grades: list[dict[str, Any]], realised_known: bool = True) -> str:
    bar_width, gap = 50, 30
    series = (("share_of_deals", "#8b949e"),) + ((("share_of_realised_value", "#2da44e"),) if realised_known else ())
    bars = []
    for i, row in enumerate(grades):
        for j, (key, colour) in enumerate(series):
            height = row[key] * (_HEIGHT - 2 * _PAD)
            # A lone series (no realised value to show) sits under its class's letter, not left of it.
            left = _PAD + i * (2 * bar_width + gap) + (j if len(series) > 1 else 0.5) * bar_width
            bars.append(f'<rect x="{left}" y="{_HEIGHT - _PAD - height:.1f}" width="{bar_width - 4}" '
                        f'height="{height:.1f}" fill="{colour}"><title>{row["grade"]}: {key} '
                        f'{row[key]:.1%}</title></rect>')
            # The share on the bar itself: the page is read printed or as a picture, where no tooltip shows.
            bars.append(f'<text x="{left + (bar_width - 4) / 2}" y="{_HEIGHT - _PAD - height - 4:.1f}" '
                        f'font-size="10" text-anchor="middle">{row[key]:.0%}</text>')
        bars.append(f'<text x="{_PAD + i * (2 * bar_width + gap) + bar_width}" y="{_HEIGHT - _PAD + 15}" '
                    f'font-size="12" text-anchor="middle">{row["grade"]}</text>')
    legend = (f'<text x="{_PAD}" y="20" font-size="11" fill="#8b949e">share of deals</text>'
              + (f'<text x="{_PAD + 110}" y="20" font-size="11" fill="#2da44e">share of realised value</text>'
                 if realised_known else ""))
    # Wide enough for the legend too: with one class the page cut "share of realised value" to "share of re".
    width = max(_PAD * 2 + len(grades) * (2 * bar_width + gap), _PAD * 2 + 260)
    return f'<svg width="{width}" height="{_HEIGHT}" role="img" aria-label="grades">{"".join(bars)}{legend}</svg>'


def _grades_note(cutoffs: dict[str, Any] | None, realised_known: bool,
                 realised: dict[str, int] | None = None) -> str:
    """What the letter classes rest on, in the words of a sales lead: the cut-offs, and why a class is empty."""
    said = []
    if cutoffs:
        a_min, floor = cutoffs.get("a_min_expected_value") or 0.0, cutoffs.get("d_floor_value_per_hour")
        if a_min > 0:
            said.append(f"A deal is A from an expected value (p_win times the deal's value) of {a_min:,.0f}, B from "
                        f"{cutoffs['b_min_expected_value']:,.0f}, C below.")
        else:
            said.append("Every deal is C: no deal had an expected value above 0 to rank by (no amounts, or too few "
                        "won deals with one to fit a value model), so there are no cut-offs between A, B and C; map "
                        "an amount column to grade deals by value.")
        if floor is not None:
            said.append(f"A deal is D, whatever its value, when its expected value per hour of effort is at or below "
                        f"{floor:,.0f}.")
        elif a_min > 0:
            said.append("No deal is D: D marks deals whose expected value per hour of effort is at or below a floor, "
                        "and this model has none (no closed deal with effort_hours above 0 and a won amount to set "
                        "it from; --d-floor-per-hour sets one).")
    if not realised_known:
        said.append("No won deal of the holdout has an amount: the value each class realised is unknown, not 0.")
    elif realised and realised["won_with_amount"] < realised["won"]:
        # A CRM that leaves amounts blank on some wins (often the small or the late ones) shares out only the rest.
        said.append(f"The realised value is the amounts of the {realised['won_with_amount']:,} won holdout deals "
                    f"that have one, of {realised['won']:,} won: a won deal without an amount counts 0.")
    return f"<p>{' '.join(said)}</p>" if said else ""


_DASH = "\u2013"  # a figure there is none of: an empty class, amounts not known, an AUC of one outcome


def _share(value: float | None) -> str:
    """A share as a percentage, a dash where there is none to give (an empty class, amounts not known)."""
    return _DASH if value is None else f"{value:.1%}"


# The holdout figures as a reader sees them: a name, the decimals a difference shows in, and which way is better.
_METRIC_COLUMNS = (("auc", "ROC AUC", 3), ("brier", "Brier", 3), ("log_loss", "log loss", 3), ("ece", "ECE", 3),
                   ("top_decile_lift", "lift of the top 10%", 2), ("mean_p", "mean p_win", 3),
                   ("win_rate", "win rate", 3))
_MODEL_NAMES = {"model": "this model", "prior_rate": "prior rate (baseline)",
                "logistic_regression": "logistic regression (baseline)"}


def _figure(value: float | None, decimals: int) -> str:
    # A figure that could not be computed (AUC on a holdout of one outcome) is a dash, not "nan".
    return _DASH if value is None or value != value else f"{value:.{decimals}f}"


def _metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    """The model beside its baselines, each figure to fixed decimals (%.4g printed AUC 0.5 beside 0.7027 and a
    lift of 1 beside 2.339), and a key to what the figures mean for whoever does not read AUC every day."""
    head = "".join(f"<th>{label}</th>" for _, label, _ in _METRIC_COLUMNS)
    rows = "".join(
        f"<tr><th>{html.escape(_MODEL_NAMES.get(name, name))}</th>"
        + "".join(f"<td>{_figure(m.get(key), decimals)}</td>" for key, _, decimals in _METRIC_COLUMNS)
        + f"<td>{int(m.get('deals', 0)):,}</td></tr>"
        for name, m in metrics.items())
    noise = holdout_noise_text(metrics.get("model") or {})
    noise_note = f"<p>{html.escape(noise[0].upper() + noise[1:])}.</p>" if noise else ""
    key = ("<p>ROC AUC: how often a won deal is scored above a lost one (0.5 is chance, 1 always; higher is better). "
           "Brier and log loss: how far the probabilities are from the outcomes (lower is better). ECE: the mean gap "
           "between p_win and the share won, over ten bins of p_win (lower is better). Lift of the top 10%: the win "
           "rate of the tenth of deals scored highest, as a multiple of the overall win rate (higher is better; 1 is "
           "no better than picking at random). The prior rate scores every deal the win rate of the deals before "
           "the holdout; the logistic regression is a plain model fitted on the same deals as this one.</p>")
    return (f"<table><tr><th>model</th>{head}<th>deals</th></tr>{rows}</table>{key}{noise_note}"
            f"{_ranking_test_note(metrics)}")


def _ranking_test_note(metrics: dict[str, dict[str, float]]) -> str:
    """The paired test of the model's ranking against the logistic regression's on the same holdout deals: a
    difference of AUCs in the table means little until chance is ruled out (models before it have none)."""
    logistic = metrics.get("logistic_regression") or {}
    lead, p_value = logistic.get("auc_lead_over_model"), logistic.get("auc_lead_p_value")
    if lead is None or p_value is None or lead != lead or p_value != p_value:
        return ""
    deals = int((metrics.get("model") or {}).get("deals", 0))
    if lead == 0:
        said = "they rank alike (equal AUC)"
    else:
        # The leader's own one-sided p: the normal test's two tails are mirror images.
        leader, p_leader = ("the logistic regression", p_value) if lead > 0 else ("the model", 1.0 - p_value)
        verdict = "more than chance explains" if p_leader < BASELINE_LEAD_P else "within what chance explains"
        said = (f"{leader} ranks better, by {abs(lead):.3f} of AUC: {verdict} (one-sided {p_value_text(p_leader)}, "
                "the chance of a lead this large between equally good rankers)")
    return "<p>" + html.escape(
        f"The model against the logistic regression on the same {deals:,} deals (DeLong's paired test): {said}. The "
        "test takes deals as independent; deals of one client or month are not, so read it as a guide.") + "</p>"


def _calibration_note(split: dict[str, Any], published: dict[str, Any] | None = None,
                      engine: str | None = None) -> str:
    """How the probabilities were calibrated (Platt, and whether a drift term was kept): the evaluation model's,
    which the holdout figures measure, and the published model's, refitted on all closed deals."""
    fitted = split.get("calibration")
    if not fitted:
        return ""
    slice_deals = int(split.get("calibration_deals", 0) or 0)
    note = (f"<p>The evaluation model (the holdout figures above and below) was calibrated by Platt on the "
            f"latest {slice_deals:,} deals before the holdout: {_platt(fitted, slice_deals)}.")
    served = (published or {}).get("calibration")
    if served:
        served_deals = int((published or {}).get("calibration_deals") or 0)
        note += (f" The published model, refitted on all closed deals, was calibrated on its own latest "
                 f"{served_deals:,} deals: {_platt(served, served_deals)}. The holdout cannot test that second "
                 "fit; the next retrain's comparison does.")
        ranked = (published or {}).get("calibration_slice_auc")
        if ranked is not None:
            caveat = slice_auc_caveat(engine, served)
            note += (f" Fitted on the deals before them, it ranks those latest {served_deals:,} at AUC {ranked:.3f}"
                     f"{f' ({caveat})' if caveat else ''}.")
    return note + "</p>"


def _platt(fitted: dict[str, Any], slice_deals: int) -> str:
    if fitted.get("drift"):
        drift = (f"; a drift term with weight {fitted['drift']:.2f} on the log-odds of the recent win rate (the "
                 "slice leaned towards a moving win rate, and later probabilities follow it)")
    elif slice_deals < MIN_DRIFT_SLICE:
        drift = f"; no drift term (a slice of fewer than {MIN_DRIFT_SLICE} deals cannot tell a moving rate from noise)"
    else:
        drift = "; no drift term (the slice leaned against a moving win rate)"
    return f"slope {fitted['slope']:.3f}, intercept {fitted['intercept']:.3f}{drift}"


def _few_deals_note(holdout_deals: int) -> str:
    """Said at the top when the holdout is too small for its figures to mean much: `dealscore train` said "few: read
    the figures as rough" for a 12-deal holdout, and the page printed its AUC of 0.778 and ECE of 0.248 like any
    other (ECE is about 0.26 on 12 deals by chance alone, for a perfectly calibrated model)."""
    if holdout_deals >= SOLID_HOLDOUT:
        return ""
    return (f'<p style="border-left:4px solid #bf8700;padding-left:8px"><b>Few deals: the holdout has only '
            f"{holdout_deals:,} closed deals, and on fewer than {SOLID_HOLDOUT} chance alone moves every figure "
            "below a long way (the AUC's interval and the ECE by chance under the table say how far): read them as "
            "rough, and judge the model again when more deals have closed.</b></p>")


def _caution_note(caution: str | None) -> str:
    if not caution:
        return ""
    return f'<p style="border-left:4px solid #c62828;padding-left:8px"><b>{html.escape(caution)}</b></p>'


def _empty_columns_note(empty: list[str]) -> str:
    """Optional columns the data carries but never fills in a closed deal: the model was trained without them."""
    if not empty:
        return ""
    return ("<p>Trained as if absent (no value in any won or lost deal): "
            f"{html.escape(', '.join(empty))}.</p>")


def _unsteady_columns_note(unsteady: list[str]) -> str:
    """Columns the published model reads by their win rates alone, as `dealscore train` says: on the page too."""
    if not unsteady:
        return ""
    return ("<p>No level codes (the win rates and won amounts of their levels did not carry over from one half of the "
            f"deals to the other; their win rates stay): {html.escape(', '.join(unsteady))}.</p>")


def _data_note(data: dict[str, Any] | None) -> str:
    """When the model was trained, and on which deals: what a reader compares first between two monthly reports."""
    if not data:
        return ""
    return (f"<p>Trained {html.escape(str(data['trained_at'])[:10])} on {data['deals']:,} deals created "
            f"{html.escape(str(data['first_deal']))} to {html.escape(str(data['last_deal']))}: {data['won']:,} won and "
            f"{data['lost']:,} lost (trained on), {data['open_deals']:,} open (scored, not trained on).</p>")


def _value_section(value: dict[str, Any] | None) -> str:
    """The value model on the holdout's won deals, beside the baselines, and the spread factor it was given."""
    if not value:
        return ""
    if not value.get("evaluated"):
        return f"<h2>Value of a deal without an amount</h2><p>Not measured: {html.escape(str(value.get('why')))}.</p>"
    rows = "".join(f"<tr><th>{html.escape(name)}</th><td>{e['median_abs_pct_error']:.1%}</td>"
                   f"<td>{e['mean_abs_log_error']:.3f}</td></tr>" for name, e in value["errors"].items())
    return (f"<h2>Value of a deal without an amount</h2><p>Amount predicted for the holdout's "
            f"{value['holdout_won_deals_with_amount']:,} won deals that have one, by a value model fitted on the "
            f"{value['fitted_on_won_deals']:,} won deals before it, beside baselines fitted on the same deals "
            "(typical amounts, before the spread factor):</p>"
            "<table><tr><th>guess</th><th>median error, share of the amount</th><th>mean |log error|</th></tr>"
            f"{rows}</table><p>Spread factor {value['spread']:.3f}: a deal's typical amount times this is its "
            "expected amount, given the spread of amounts around the model's guesses; the published value model "
            f"applies it. Holdout amounts ran {value['level']:.2f}x the evaluation model's guesses.</p>")


def _seeds_note(split: dict[str, Any], published: dict[str, Any] | None) -> str:
    """Said when a model averages boosters of several seeds (training/seed_average.py); each model decides by
    its own rounds."""
    models = [(name, rounds) for name, rounds in (("evaluation", split.get("rounds_per_seed")),
                                                  ("published", (published or {}).get("rounds_per_seed"))) if rounds]
    if not models:
        return ""
    described = " and ".join(f"the {name} model is the mean of {len(rounds)} boosters grown with different seeds "
                             f"({', '.join(map(str, rounds))} rounds)" for name, rounds in models)
    return (f"{described[0].upper()}{described[1:]}: their trees were few, a weak signal that one booster would "
            "read differently with each seed.")


def render_html(report: dict[str, Any]) -> str:
    split = report["split"]
    notes = {"review": " (used: check it)", "kept": " (kept on request)", "excluded": " (excluded)"}
    leaks = "".join(f"<li><b>{html.escape(f['column'])}</b>: {html.escape(f['reason'])}"
                    f"{notes['review' if f.get('review_only') else 'kept' if f['kept'] else 'excluded']}</li>"
                    for f in report["leaks"])
    every_grade = _every_grade(report["grades"])
    realised_known = _realised_value_known(every_grade)
    grades = "".join(
        f"<tr><th>{g['grade']}</th><td>{g['deals']:,}</td><td>{g['share_of_deals']:.1%}</td>"
        f"<td>{_share(g['win_rate'] if g['deals'] else None)}</td>"
        f"<td>{_share(g['share_of_realised_value'] if realised_known else None)}</td></tr>" for g in every_grade)
    title = f"dealscore model {html.escape(report['version'])}"
    calibration_note = _calibration_note(split, report.get("published"), report.get("engine"))
    grade_head = ("<tr><th>grade</th><th>deals</th><th>share of deals</th><th>win rate</th>"
                  "<th>share of realised value</th></tr>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}
table{{border-collapse:collapse;margin:1em 0;display:block;max-width:100%;overflow-x:auto}}
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:right}}th:first-child{{text-align:left}}</style></head><body>
<h1>dealscore model {html.escape(report['version'])}</h1>
{_data_note(report.get('data'))}
<p>Engine: <b>{html.escape(report['engine'])}</b>{' (small-data mode)' if report['small_data'] else ''}.
{_seeds_note(split, report.get('published'))}
Time-ordered holdout: the latest {split['holdout_deals']:,} closed deals (created from {split['holdout_from']}),
model fitted on the {split['train_deals']:,} earlier ones.</p>{_few_deals_note(split['holdout_deals'])}
<h2>Quality on the holdout, beside baselines fitted on the same split</h2>{_metrics_table(report['metrics'])}
{_caution_note(report.get("caution"))}
<h2>Calibration (of deals scored p, a share p should be won)</h2>{calibration_note}
{_calibration_svg(report['calibration_curve'])}
<h2>Letter classes on the holdout</h2>
<table>{grade_head}{grades}</table>
{_grades_note(report.get('grade_cutoffs'), realised_known, report.get('realised_value_deals'))}
{_grade_svg(every_grade, realised_known)}
{_value_section(report.get("value"))}
<h2>Leak guard</h2>{f'<ul>{leaks}</ul>' if leaks else '<p>No column looked like a leak of the outcome.</p>'}
{_empty_columns_note(report.get("empty_columns") or [])}
{_unsteady_columns_note((report.get("unsteady_columns") or {}).get("published") or [])}
{render_profiles_html(report.get("profiles"))}
</body></html>
"""
