"""The training report (report.html) as its readers see it after each monthly retrain: a sales lead reading the
letter classes and an ops engineer reading the holdout figures. Each test trains or renders as a run does."""

from __future__ import annotations

import re

import pytest

from model.dataset import dataset_from_frames
from training.fit import TrainingResult, train
from training.report import render_html
from training.synthetic_crm import SyntheticCRM

# Half the session's synthetic CRM: enough closed deals for a gradient-boosting model and its cut-offs.
DEALS = 3_000


def _trained_without(small_crm: SyntheticCRM, column: str) -> TrainingResult:
    deals = small_crm.deals.drop(columns=[column]).iloc[:DEALS]
    return train(dataset_from_frames(deals, small_crm.clients, None, for_training=True))


@pytest.fixture(scope="module")
def without_amounts(small_crm: SyntheticCRM) -> TrainingResult:
    return _trained_without(small_crm, "amount")


@pytest.fixture(scope="module")
def without_hours(small_crm: SyntheticCRM) -> TrainingResult:
    return _trained_without(small_crm, "effort_hours")


def _grade_rows(page: str) -> dict[str, list[str]]:
    """The letter-class table's cells by class, as the page prints them."""
    table = page.split("<h2>Letter classes on the holdout</h2>")[1].split("</table>")[0]
    return {m[0]: re.findall(r"<td>(.*?)</td>", m[1]) for m in re.findall(r"<tr><th>([ABCD])</th>(.*?)</tr>", table)}


def _grade_svg(page: str) -> str:
    return re.search(r'<svg[^>]*aria-label="grades".*?</svg>', page, re.S).group(0)  # type: ignore[union-attr]


def test_without_amounts_the_page_says_why_every_deal_is_c_and_not_that_classes_realised_nothing(
        without_amounts: TrainingResult) -> None:
    report = without_amounts.report
    assert [g["grade"] for g in report["grades"]] == ["C"]
    page = render_html(report)
    rows = _grade_rows(page)
    # No won deal has an amount: the realised value is unknown, where the page had printed 0.0% for every class.
    won = report["metrics"]["model"]["win_rate"]
    assert rows["C"] == [f"{report['split']['holdout_deals']:,}", "100.0%", f"{won:.1%}", "\u2013"]
    assert "the value each class realised is unknown" in page
    assert "Every deal is C: no deal had an expected value above 0" in page
    assert "share of realised value</text>" not in _grade_svg(page)


def test_a_class_no_holdout_deal_fell_in_is_listed_and_an_absent_d_explained(without_hours: TrainingResult) -> None:
    report = without_hours.report
    assert report["grade_cutoffs"]["d_floor_value_per_hour"] is None
    assert "D" not in {g["grade"] for g in report["grades"]}
    page = render_html(report)
    rows = _grade_rows(page)
    assert list(rows) == ["A", "B", "C", "D"]
    assert rows["D"][:3] == ["0", "0.0%", "\u2013"]
    assert "No deal is D: D marks deals whose expected value per hour of effort is at or below a floor" in page
    cut = report["grade_cutoffs"]
    assert (f"A deal is A from an expected value (p_win times the deal's value) of {cut['a_min_expected_value']:,.0f}, "
            f"B from {cut['b_min_expected_value']:,.0f}, C below.") in page


def test_the_page_gives_the_floor_below_which_a_deal_is_d(trained: TrainingResult) -> None:
    floor = trained.report["grade_cutoffs"]["d_floor_value_per_hour"]
    assert floor is not None
    page = render_html(trained.report)
    assert f"expected value per hour of effort is at or below {floor:,.0f}." in page
    assert "No deal is D" not in page and "unknown" not in page


def test_the_grade_chart_is_wide_enough_for_its_legend_with_one_class(without_amounts: TrainingResult) -> None:
    import copy

    report = copy.deepcopy(without_amounts.report)
    report["grades"][0]["share_of_realised_value"] = 1.0  # one class holding every realised amount
    svg = _grade_svg(render_html(report))
    width = float(re.search(r'width="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    legend = re.search(r'<text x="([\d.]+)"[^>]*>share of realised value</text>', svg)
    assert legend is not None
    # 0.6 em a character: a generous width for an 11 px sans-serif label (it was cut to "share of re" at 210 px).
    assert float(legend.group(1)) + 0.6 * 11 * len("share of realised value") <= width


@pytest.fixture(scope="module")
def few_deals(small_crm: SyntheticCRM) -> TrainingResult:
    """About 100 closed deals, as a team's first export: a holdout of some 20."""
    return train(dataset_from_frames(small_crm.deals.iloc[:110], small_crm.clients, None, for_training=True))


def test_a_small_holdout_is_called_rough_on_the_page(few_deals: TrainingResult, trained: TrainingResult) -> None:
    from model.metrics import SOLID_HOLDOUT

    held = few_deals.report["split"]["holdout_deals"]
    assert held < SOLID_HOLDOUT <= trained.report["split"]["holdout_deals"]
    assert f"Few deals: the holdout has only {held:,} closed deals" in render_html(few_deals.report)
    assert "Few deals" not in render_html(trained.report)


def test_the_published_models_own_ranking_is_called_high_only_where_something_was_chosen_on_those_deals(
        few_deals: TrainingResult, trained: TrainingResult) -> None:
    """The published model's AUC on its calibration slice: the trees' rounds are chosen there, so it reads high; a
    small-data model's line is fitted on the deals before and a plain Platt keeps its order, and its page said "its
    rounds were chosen on them" of a model without rounds."""
    small, trees = few_deals.report["published"], trained.report["published"]
    assert few_deals.report["engine"] == "regularised_logistic" and not small["calibration"]["drift"]
    assert (f"it ranks those latest {small['calibration_deals']:,} at AUC {small['calibration_slice_auc']:.3f}."
            in render_html(few_deals.report))
    assert (f"it ranks those latest {trees['calibration_deals']:,} at AUC {trees['calibration_slice_auc']:.3f} "
            "(its rounds" in render_html(trained.report))


def test_each_calibration_point_shows_how_many_deals_it_stands_on(few_deals: TrainingResult) -> None:
    curve = few_deals.report["calibration_curve"]
    svg = re.search(r'<svg[^>]*aria-label="calibration curve".*?</svg>', render_html(few_deals.report), re.S)
    assert svg is not None
    # The counts printed on the plot (a tooltip's <title> is not on the page), one per point, in the curve's order.
    printed = [int(n) for n in re.findall(r'<text[^>]*fill="#57606a">([\d,]+)</text>', svg.group(0))]
    assert printed == [b["deals"] for b in curve] and sum(printed) == few_deals.report["split"]["holdout_deals"]


def _quality_rows(page: str) -> dict[str, list[str]]:
    table = page.split("<h2>Quality on the holdout")[1].split("</table>")[0]
    return {m[0]: re.findall(r"<td>(.*?)</td>", m[1]) for m in re.findall(r"<tr><th>([^<]+)</th>(<td>.*?)</tr>", table)}


def test_the_quality_table_prints_each_figure_to_fixed_decimals_and_says_which_way_is_better(
        trained: TrainingResult) -> None:
    import copy

    report = copy.deepcopy(trained.report)
    report["metrics"]["model"]["auc"] = float("nan")  # a holdout of one outcome has no AUC
    page = render_html(report)
    rows = _quality_rows(page)
    assert set(rows) == {"this model", "prior rate (baseline)", "logistic regression (baseline)"}
    prior = rows["prior rate (baseline)"]
    # The prior rate ranks no deal above another: AUC 0.5 and lift 1, printed as 0.500 and 1.00 beside the others
    # (%.4g had printed "0.5" and "1" beside 0.7027 and 2.339).
    assert prior[0] == "0.500" and prior[4] == "1.00"
    for name, cells in rows.items():
        m = report["metrics"][{"this model": "model", "prior rate (baseline)": "prior_rate",
                               "logistic regression (baseline)": "logistic_regression"}[name]]
        assert cells[-1] == f"{m['deals']:,}"
        assert all(re.fullmatch(r"\d+\.\d{3}", c) for i, c in enumerate(cells[:-1]) if i != 4 and c != "\u2013")
        assert re.fullmatch(r"\d+\.\d{2}", cells[4])
    table = page.split("<h2>Quality on the holdout")[1].split("</table>")[0]
    assert rows["this model"][0] == "\u2013" and "nan" not in table
    assert "higher is better" in page and "lower is better" in page


def test_a_lone_bar_sits_under_its_class_letter(without_amounts: TrainingResult) -> None:
    svg = _grade_svg(render_html(without_amounts.report))
    bar = re.search(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="[\d.]+" fill="[^"]+"><title>C:', svg)
    letter = re.search(r'<text x="([\d.]+)"[^>]*>C</text>', svg)
    assert bar is not None and letter is not None
    # (the two bars of a pair leave a 4 px gap between them, so the pair's middle is 2 px off the letter too)
    assert abs(float(bar.group(1)) + float(bar.group(2)) / 2 - float(letter.group(1))) <= 3


def test_a_calibration_point_has_its_count_on_the_side_away_from_the_diagonal(trained: TrainingResult) -> None:
    import copy

    report = copy.deepcopy(trained.report)
    report["calibration_curve"] = [
        {"bin_low": 0.2, "bin_high": 0.3, "mean_p": 0.25, "win_rate": 0.55, "deals": 40},  # above the line
        {"bin_low": 0.6, "bin_high": 0.7, "mean_p": 0.65, "win_rate": 0.35, "deals": 30},  # below it
    ]
    svg = re.search(r'<svg[^>]*aria-label="calibration curve".*?</svg>', render_html(report), re.S)
    assert svg is not None
    dots = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', svg.group(0))]
    counts = [float(y) for y in re.findall(r'<text x="[\d.]+" y="([\d.]+)"[^>]*fill="#57606a">', svg.group(0))]
    # SVG's y grows downwards: above the point is a smaller y.
    assert counts[0] < dots[0] and counts[1] > dots[1]


def test_the_page_says_on_how_many_won_deals_the_realised_value_rests(small_crm: SyntheticCRM) -> None:
    import numpy as np

    deals = small_crm.deals.iloc[:DEALS].copy()
    blank = np.random.default_rng(5).random(len(deals)) < 0.4  # a CRM that leaves 40% of amounts blank
    deals.loc[blank, "amount"] = np.nan
    result = train(dataset_from_frames(deals, small_crm.clients, None, for_training=True))
    holdout = result.holdout
    assert holdout is not None
    won = holdout["status"] == "won"
    with_amount = int((won & (holdout["amount"] > 0)).sum())
    assert 0 < with_amount < int(won.sum())
    assert (f"The realised value is the amounts of the {with_amount:,} won holdout deals that have one, of "
            f"{int(won.sum()):,} won") in render_html(result.report)


def test_with_every_won_deal_quoted_the_page_does_not_qualify_the_realised_value(trained: TrainingResult) -> None:
    holdout = trained.holdout
    assert holdout is not None
    assert (holdout.loc[holdout["status"] == "won", "amount"] > 0).all()
    assert "a won deal without an amount counts 0" not in render_html(trained.report)


def test_the_page_says_when_and_on_which_deals_the_model_was_trained(trained: TrainingResult) -> None:
    data, page = trained.metadata["data"], render_html(trained.report)
    assert (f"Trained {trained.metadata['trained_at'][:10]} on {data['deals']:,} deals created {data['first_deal']} "
            f"to {data['last_deal']}: {data['won']:,} won and {data['lost']:,} lost (trained on), "
            f"{data['open_deals']:,} open") in page


def test_the_page_names_the_columns_without_level_codes(trained: TrainingResult) -> None:
    import copy
    import html

    unsteady = trained.metadata["unsteady_columns"]
    assert unsteady  # the synthetic CRM's campaign codes and competitors do not carry over
    assert f"their win rates stay): {', '.join(unsteady)}." in render_html(trained.report)
    # A CRM's own column name is the page's text, never its markup.
    odd, name = copy.deepcopy(trained.report), '<i>comp</i> & "z"'
    odd["unsteady_columns"]["published"] = [name]
    page = render_html(odd)
    assert f"their win rates stay): {html.escape(name)}." in page and name not in page


def test_the_gap_evaluation_protocol_reads_as_a_sentence(trained: TrainingResult) -> None:
    import html

    protocol = trained.report["profiles"]["evaluation"]["protocol"]
    assert protocol.startswith("hide one held product")  # report.json keeps it as written
    page = render_html(trained.report)
    assert f"<p>{html.escape('H' + protocol[1:])}.</p>" in page and f"<p>{html.escape(protocol)}" not in page
