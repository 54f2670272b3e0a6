"""Training: recovery of the synthetic truth, calibration, leak guard, small-data mode, refusal."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from model.artifact import save_artifact
from model.dataset import Dataset, dataset_from_frames
from model.errors import InsufficientData
from model.features import (
    TENURE,
    FeatureConfig,
    attach_clients,
    build_features,
    fit_feature_spec,
    frame_columns,
    unsent_features,
)
from model.grades import GradeCutoffs, letter_classes
from model.metrics import expected_calibration_error
from training.fit import TrainConfig, TrainingResult, d_floor, fingerprint, train
from training.synthetic_crm import SyntheticCRM


def _holdout(crm: SyntheticCRM, result: TrainingResult) -> tuple[pd.DataFrame, np.ndarray]:
    """The holdout deals as the evaluation model scored them (fitted on the earlier deals only), with their
    truth, in time order. Not the published model: it was fitted on the holdout too, and its calibration
    slice is the holdout period, so judging it there is judging it in-sample (an audit found these tests
    passing that way with an ECE of 0.032 where the honest one was 0.055)."""
    assert result.holdout is not None
    later = result.holdout.merge(crm.deal_truth, on="deal_id")
    assert len(later) == result.report["split"]["holdout_deals"]
    return later, later["p_win"].to_numpy(dtype=np.float64)


def test_model_ranks_nearly_as_well_as_the_truth(small_crm: SyntheticCRM, trained: TrainingResult) -> None:
    from sklearn.metrics import roc_auc_score

    later, p = _holdout(small_crm, trained)
    won = (later["status"] == "won").to_numpy(dtype=float)
    truth_auc = roc_auc_score(won, later["true_p_win"])
    model_auc = roc_auc_score(won, p)
    # bench/training_quality.py measures 0.99 x on 100k deals; at this fixture's 6k deals (1,138 in the holdout)
    # seven seeds gave 0.946-0.986 x and mean |p - true| 0.087-0.100 (seed 11: 0.958, 0.095).
    assert model_auc >= 0.93 * truth_auc
    assert np.mean(np.abs(p - later["true_p_win"].to_numpy())) <= 0.11


def test_model_beats_the_baselines_on_the_holdout(trained: TrainingResult) -> None:
    metrics = trained.report["metrics"]
    assert metrics["model"]["auc"] > metrics["logistic_regression"]["auc"]
    assert metrics["model"]["auc"] > metrics["prior_rate"]["auc"] + 0.1
    assert metrics["model"]["brier"] < metrics["prior_rate"]["brier"]


def test_the_report_tests_the_models_ranking_against_the_logistic_baseline_on_the_same_deals(
        trained: TrainingResult) -> None:
    from training.report import render_html

    metrics = trained.report["metrics"]
    logistic = metrics["logistic_regression"]
    assert logistic["auc_lead_over_model"] == pytest.approx(logistic["auc"] - metrics["model"]["auc"])
    assert logistic["auc_lead_p_value"] > 0.5  # the model leads, so the regression's lead is no finding
    assert trained.report["caution"] is None
    page = render_html(trained.report)
    assert (f"on the same {metrics['model']['deals']:,} deals (DeLong&#x27;s paired test): the model ranks better"
            in page)
    assert "more than chance explains (one-sided p &lt; 0.0001," in page  # not "p = 0", and the "<" escaped
    # The published model's own figure: how it ranks the latest deals it was calibrated on.
    published = trained.report["published"]
    assert (f"it ranks those latest {published['calibration_deals']:,} at AUC "
            f"{published['calibration_slice_auc']:.3f}") in page


def test_probabilities_are_calibrated_on_later_deals(small_crm: SyntheticCRM, trained: TrainingResult) -> None:
    later, p = _holdout(small_crm, trained)
    won = (later["status"] == "won").to_numpy(dtype=float)
    # Seed 11: ECE 0.041 (the true probabilities' own 0.030 on these deals: the noise of 1,138 outcomes) and
    # the mean 0.029 under the win rate, which rises through the holdout period.
    assert expected_calibration_error(won, p) <= 0.05
    assert abs(p.mean() - won.mean()) <= 0.04


def test_grades_follow_pareto_shares_and_d_flags_poor_value_per_hour(trained: TrainingResult) -> None:
    cut = trained.metadata["grade_cutoffs"]
    assert cut["a_min_expected_value"] > cut["b_min_expected_value"] > 0
    assert cut["d_floor_value_per_hour"] > 0
    grades = {g["grade"]: g for g in trained.report["grades"]}
    assert set(grades) >= {"A", "B", "C"}
    # A holds few deals but most of the realised value.
    assert grades["A"]["share_of_deals"] < 0.5
    assert grades["A"]["share_of_realised_value"] > 0.5


def test_domains_example_deal_is_d_under_the_default_floor() -> None:
    """DOMAIN.md: where the best managers make 5,000 an hour, a deal of 4,000 needing 4 hours (1,000 an hour)
    is not worth taking. The default floor is a fifth of the top managers' rate, 1,000 here, and such a deal
    was graded C because only a rate strictly below the floor was D."""
    closed = pd.DataFrame({"manager": ["m1", "m2", "m3", "m4"], "status": ["won"] * 4,
                           "amount": [1000.0, 2000.0, 3000.0, 5000.0], "effort_hours": [1.0] * 4})
    floor = d_floor(closed, TrainConfig())
    assert floor == pytest.approx(1000.0)
    cutoffs = GradeCutoffs(a_min=10_000.0, b_min=5_000.0, d_floor_per_hour=floor)
    expected_value = np.array([4000.0, 4000.0, 4000.0])
    per_hour = np.array([1000.0, 1000.01, np.nan])  # on the floor, just above it, effort unknown
    assert letter_classes(expected_value, cutoffs, per_hour).tolist() == ["D", "C", "C"]


def test_the_data_fingerprint_covers_the_clients_and_holdings_too(small_dataset: Dataset,
                                                                    trained: TrainingResult) -> None:
    """Two models trained on the same deals with other holdings (2 products against 3) were fingerprinted
    alike, though metadata calls it the fingerprint of the training data."""
    deals, clients, holdings = small_dataset.deals, small_dataset.clients, small_dataset.holdings
    assert holdings is not None and not small_dataset.holdings_derived
    assert trained.metadata["data"]["fingerprint"] == fingerprint(deals, clients, holdings)
    fewer = holdings[holdings["product"] != holdings["product"].iloc[0]]
    prints = {fingerprint(deals, clients, holdings), fingerprint(deals, clients, fewer),
              fingerprint(deals, None, holdings), fingerprint(deals, clients, None)}
    assert len(prints) == 4
    assert fingerprint(deals, clients, holdings.copy()) == fingerprint(deals, clients, holdings)


def test_the_data_fingerprint_ignores_the_order_of_rows_and_columns(small_dataset: Dataset) -> None:
    """Training sorts the deals and reads columns by name: the same export in another order is the same data."""
    deals, clients = small_dataset.deals, small_dataset.clients
    shuffled = deals.sample(frac=1.0, random_state=3)[list(reversed(deals.columns))]
    assert fingerprint(shuffled, clients, None) == fingerprint(deals, clients, None)
    changed = deals.copy()
    changed.loc[changed.index[0], "amount"] = changed["amount"].iloc[0] + 1
    assert fingerprint(changed, clients, None) != fingerprint(deals, clients, None)
    # A repeated row is more data, not the same.
    assert fingerprint(pd.concat([deals, deals.head(1)]), clients, None) != fingerprint(deals, clients, None)


def test_reasons_name_features_with_values_strongest_first(small_crm: SyntheticCRM,
                                                           trained: TrainingResult) -> None:
    deals = attach_clients(small_crm.deals.head(20), small_crm.clients)
    batch = trained.model.score(frame_columns(deals), n_reasons=4)
    for reasons in batch.reasons:
        assert 1 <= len(reasons) <= 4
        effects = [abs(r.effect) for r in reasons]
        assert effects == sorted(effects, reverse=True)
        assert all(r.feature in trained.model.spec.names for r in reasons)


def test_leak_guard_excludes_a_close_value_that_is_zero_for_lost_deals(small_crm: SyntheticCRM) -> None:
    deals = small_crm.deals.copy()
    deals["close_value"] = np.where(deals["status"] == "won", deals["amount"], 0.0)
    deals.loc[deals["status"] == "open", "close_value"] = np.nan
    dataset = dataset_from_frames(deals, small_crm.clients, None, for_training=True)
    result = train(dataset)
    flagged = {leak["column"]: leak for leak in result.report["leaks"]}
    assert "close_value" in flagged and not flagged["close_value"]["kept"]
    assert "close_value" not in result.model.spec.names


def test_leak_guard_excludes_a_number_filled_in_only_for_won_deals(small_crm: SyntheticCRM) -> None:
    """An invoice total exists only once the deal is won. Filled for fewer than half the closed deals, it
    escaped the fill rule, and ranking with missing values at the median hid it (AUC ~0.5): the model then
    reported AUC 1.000 and scored every open deal ~0."""
    from training.leak_guard import find_leaks

    deals = small_crm.deals.sort_values("created_at", kind="stable").reset_index(drop=True)
    deals["invoice_total"] = np.where(deals["status"] == "won", deals["amount"] * 1.2, np.nan)
    rng = np.random.default_rng(0)
    deals["discount"] = np.where(rng.random(len(deals)) < 0.3, np.nan, rng.random(len(deals)))  # honest gaps
    findings = {f.column: f for f in find_leaks(deals, ["invoice_total", "discount", "amount"])}
    assert set(findings) == {"invoice_total"}
    assert not findings["invoice_total"].review_only and "almost perfectly" in findings["invoice_total"].reason


def test_leak_guard_keeps_a_flagged_column_on_request(small_crm: SyntheticCRM) -> None:
    from training.fit import TrainConfig

    deals = small_crm.deals.copy()
    deals["stage_note"] = np.where(deals["status"] == "won", "signed", "no")
    dataset = dataset_from_frames(deals, small_crm.clients, None, for_training=True)
    result = train(dataset, TrainConfig(keep_columns=("stage_note",)))
    flagged = {leak["column"]: leak for leak in result.report["leaks"]}
    assert flagged["stage_note"]["kept"] is True
    assert "stage_note" in result.model.spec.names


def test_small_data_mode_uses_a_regularised_model(small_crm: SyntheticCRM) -> None:
    deals = small_crm.deals.sort_values("created_at").head(500)
    result = train(dataset_from_frames(deals, small_crm.clients, None, for_training=True))
    assert result.metadata["small_data"] is True
    assert result.metadata["engine"] == "regularised_logistic"
    p = result.model.score(frame_columns(attach_clients(deals.head(50), small_crm.clients))).p_win
    assert np.all((p > 0) & (p < 1))


def test_too_few_closed_deals_are_refused_with_how_many_more(small_crm: SyntheticCRM) -> None:
    closed = small_crm.deals[small_crm.deals["status"] == "won"].head(30)
    lost = small_crm.deals[small_crm.deals["status"] == "lost"].head(12)
    deals = pd.concat([closed, lost])
    with pytest.raises(InsufficientData, match=r"12 lost.*\(8 more lost deals\)$"):
        train(dataset_from_frames(deals, small_crm.clients, None, for_training=True))


def test_too_few_deals_before_the_holdout_are_refused_naming_that_part(small_crm: SyntheticCRM) -> None:
    """22 won and 28 lost pass the 20-of-each floor; with a 40% holdout the fitting part is short of wins.
    The counts are that part's, and newer deals would not help: the message says so."""
    from training.fit import TrainConfig

    closed = small_crm.deals[small_crm.deals["status"] != "open"].sort_values("created_at").copy()
    won = closed[closed["status"] == "won"]
    deals = pd.concat([won.tail(22), closed[closed["status"] == "lost"].head(28)])
    with pytest.raises(InsufficientData, match=r"closed deals before the holdout \(the latest 40% .*more won deals "
                                               r"created before the holdout, or a smaller --holdout-share"):
        train(dataset_from_frames(deals, small_crm.clients, None, for_training=True),
              TrainConfig(holdout_share=0.4, threads=1))


def test_an_extra_column_named_like_a_derived_feature_is_refused_clearly(small_crm: SyntheticCRM) -> None:
    from model.errors import ContractViolation

    deals = small_crm.deals.copy()
    deals["month"] = "March"
    with pytest.raises(ContractViolation, match="clash") as caught:
        train(dataset_from_frames(deals, small_crm.clients, None, for_training=True))
    assert [p.field for p in caught.value.problems] == ["month"]


def test_a_deals_column_named_like_sent_client_history_is_refused_for_training(small_crm: SyntheticCRM) -> None:
    """A CRM's own "won_deals" column trained as a feature would be read as the client's sent history when
    the same file is scored: the model could not score its own training file."""
    from model.errors import ContractViolation

    deals = small_crm.deals.assign(won_deals=np.arange(len(small_crm.deals)) % 5, last_won_at="2024-01-01")
    with pytest.raises(ContractViolation, match="client history") as caught:
        train(dataset_from_frames(deals, small_crm.clients, None, for_training=True), TrainConfig(threads=1))
    assert [p.field for p in caught.value.problems] == ["won_deals", "last_won_at"]
    assert "rename it in the mapping file's columns" in caught.value.problems[0].expected
    # Not a feature is not enough: scoring the file would still read it (the mapping's exclude drops it).
    excluded = TrainConfig(threads=1, features=FeatureConfig(exclude=("won_deals", "last_won_at")))
    with pytest.raises(ContractViolation, match="client history"):
        train(dataset_from_frames(deals, small_crm.clients, None, for_training=True), excluded)


def test_the_train_command_says_when_deals_carry_no_amounts(small_crm: SyntheticCRM, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Without amounts there is no value to cut classes on: the summary says so instead of printing
    cut-offs of 0, and offline scores bear it out: every deal is C, also one scored with an amount (each of
    those had been A, a 1-dollar deal as much as the largest)."""
    from dealscore.cli import main as dealscore

    for with_amounts in (True, False):
        deals = small_crm.deals if with_amounts else small_crm.deals.drop(columns=["amount"])
        deals.to_csv(tmp_path / "deals.csv", index=False)
        small_crm.clients.to_csv(tmp_path / "clients.csv", index=False)
        out = tmp_path / ("valued" if with_amounts else "unvalued")
        assert dealscore(["train", "--deals", str(tmp_path / "deals.csv"), "--clients", str(tmp_path / "clients.csv"),
                          "--out", str(out)]) == 0
        summary = capsys.readouterr().out
        counts = small_crm.deals["status"].value_counts()
        assert (f"data: {len(small_crm.deals):,} deals created {small_crm.deals['created_at'].min():%Y-%m-%d} "
                f"to {small_crm.deals['created_at'].max():%Y-%m-%d}: {counts['won']:,} won and {counts['lost']:,} "
                f"lost (trained on), {counts['open']:,} open (not)") in summary
        closed = counts["won"] + counts["lost"]
        tested = json.loads((out / "metadata.json").read_text())["metrics"]["model"]
        assert tested["deals"] == round(closed * 0.2)
        assert (f"tested on the latest {tested['deals']:,} closed deals (win rate {tested['win_rate']:.0%})\n"
                in summary)
        # and what that many deals leave of the figures
        assert tested["auc_low_95"] < tested["auc"] < tested["auc_high_95"]
        assert 0 < tested["ece_by_chance"] < tested["ece_by_chance_p95"]
        published = json.loads((out / "report.json").read_text())["published"]
        assert 0.5 < published["calibration_slice_auc"] < 1.0
        assert (f"published model (refitted on all closed deals): ranks its own latest "
                f"{published['calibration_deals']:,} deals at AUC {published['calibration_slice_auc']:.3f}"
                in summary)
        assert (f"on these deals: AUC {tested['auc']:.3f} within {tested['auc_low_95']:.3f}-"
                f"{tested['auc_high_95']:.3f} (95%); a perfectly calibrated model would show ECE "
                f"{tested['ece_by_chance']:.3f} by chance alone" in summary)
        assert ("grade A from EV" in summary) is with_amounts
        # and how well the value model guesses an amount, where there is one
        assert ("value model (deals without an amount): mean |log error|" in summary) is with_amounts
        assert ("grades: no reference deal has an expected value above 0 (0 closed deals with an amount above 0, "
                "0 of them won; a value model needs 30)" in summary) is not with_amounts
    assert dealscore(["score", "--model", str(out), "--deals", str(tmp_path / "deals.csv"),
                      "--clients", str(tmp_path / "clients.csv"), "--out", str(tmp_path / "scores.csv")]) == 0
    assert set(pd.read_csv(tmp_path / "scores.csv")["grade"]) == {"C"}
    small_crm.deals.to_csv(tmp_path / "with_amounts.csv", index=False)
    assert dealscore(["score", "--model", str(out), "--deals", str(tmp_path / "with_amounts.csv"),
                      "--clients", str(tmp_path / "clients.csv"), "--out", str(tmp_path / "scores.csv")]) == 0
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert (scores["value"] > 0).sum() > 100 and set(scores["grade"]) == {"C"}

    # Amounts on too few early won deals for a value model: the summary gives the counts and keeps the D floor.
    deals = small_crm.deals.sort_values("created_at", kind="stable")
    first_won = deals.index[deals["status"] == "won"][:20]
    deals["amount"] = deals["amount"].where(deals.index.isin(first_won))
    deals.to_csv(tmp_path / "deals.csv", index=False)
    assert dealscore(["train", "--deals", str(tmp_path / "deals.csv"), "--clients", str(tmp_path / "clients.csv"),
                      "--out", str(tmp_path / "few"), "--d-floor-per-hour", "10"]) == 0
    summary = capsys.readouterr().out
    assert "(20 closed deals with an amount above 0, 20 of them won; a value model needs 30)" in summary
    assert "D at or below 10 per hour" in summary


def test_score_says_that_deals_quoted_0_are_valued_by_the_value_model(
        small_crm: SyntheticCRM, trained: TrainingResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An amount of 0 is no quote yet, so the value model values the deal and its grade follows: 32 of 86 such
    deals were A in the degenerate-data audit, with nothing in the output to say why."""
    from dealscore.cli import main as dealscore

    artifact = save_artifact(trained.model, tmp_path / "model", trained.metadata)
    deals = small_crm.deals[small_crm.deals["status"] == "open"].head(40).copy()
    deals.loc[deals.index[:7], "amount"] = 0.0
    deals.to_csv(tmp_path / "deals.csv", index=False)
    small_crm.clients.to_csv(tmp_path / "clients.csv", index=False)
    capsys.readouterr()
    assert dealscore(["score", "--model", str(artifact), "--deals", str(tmp_path / "deals.csv"), "--clients",
                      str(tmp_path / "clients.csv"), "--out", str(tmp_path / "scores.csv")]) == 0
    assert ("7 deals with an amount of 0, read as no quote yet: valued by the value model (value_source 'model') "
            "and graded by that value") in capsys.readouterr().err
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert (scores["value_source"].head(7) == "model").all() and (scores["value"].head(7) > 0).all()


def test_the_summary_calls_figures_on_few_held_out_deals_rough(trained: TrainingResult, tmp_path: Path) -> None:
    """A holdout of 8 deals printed an AUC of 1.000 as any other (the degenerate-data audit)."""
    from dealscore.cli import SOLID_HOLDOUT, _summary_table

    artifact = save_artifact(trained.model, tmp_path / "model", trained.metadata)
    meta = json.loads((artifact / "metadata.json").read_text())
    assert meta["metrics"]["model"]["deals"] >= SOLID_HOLDOUT
    assert "rough" not in _summary_table(artifact)
    meta["metrics"]["model"]["deals"] = 8
    (artifact / "metadata.json").write_text(json.dumps(meta))
    assert "tested on the latest 8 closed deals (win rate " in _summary_table(artifact)
    assert "; few: read the figures as rough" in _summary_table(artifact)


def test_a_deal_without_an_amount_is_scored_as_a_typical_deal_not_as_one_of_amount_zero(
        small_crm: SyntheticCRM, trained: TrainingResult) -> None:
    """Every closed training deal had an amount and effort hours, so the engine learned no branch for a
    missing one and read it as 0: leaving the amount out scored a deal exactly as amount 0. Now the value
    model's typical amount for such a deal stands in for the amount (the value the answer gives is that times
    the spread factor, its expected amount), the median for effort hours (and for the amount without a value
    model), and the reasons show the values as not sent."""
    model = trained.model
    fill = model.spec.numeric_fill or {}
    closed = small_crm.deals[small_crm.deals["status"] != "open"]
    assert fill["amount"] == closed["amount"].median() and fill["effort_hours"] == closed["effort_hours"].median()
    deals = attach_clients(small_crm.deals.head(200), small_crm.clients)
    columns = frame_columns(deals)

    def scored(amount: object, hours: float) -> Any:
        changed = {**columns, "amount": np.broadcast_to(np.asarray(amount, dtype=np.float64), len(deals)).copy(),
                   "effort_hours": np.full(len(deals), hours)}
        return model.score(changed, n_reasons=0)

    assert model.value_model is not None
    unsent = scored(np.nan, np.nan)
    assert unsent.value_source == ["model"] * len(deals)
    gaps = {**columns, "amount": np.full(len(deals), np.nan), "effort_hours": np.full(len(deals), np.nan)}
    known = model.with_known_clients(gaps)
    features = build_features(model.spec, model.history, known)
    # (effort hours not sent: every training deal had them, so they are averaged out of the trees,
    # model/unsent_paths.py, the value model's too; their median stands in for the features only)
    averaged = unsent_features(model.spec, features, known)
    assert averaged is not None
    typical, expected = model.value_model.typical_and_expected(features, averaged)
    np.testing.assert_array_equal(unsent.value, expected)
    np.testing.assert_array_equal(unsent.p_win, scored(typical, np.nan).p_win)  # effort hours not sent in both
    assert not np.array_equal(model.win_model.margin(features, averaged), model.win_model.margin(features))

    class Seen:  # the win model, recording the features it is asked about
        def __init__(self, inner: Any) -> None:
            self.inner, self.features = inner, np.zeros((0, 0))

        def margin(self, features: np.ndarray, unsent: np.ndarray | None = None) -> np.ndarray:
            self.features = features.copy()
            return np.asarray(self.inner.margin(features, unsent))

    seen = Seen(model.win_model)
    dataclasses.replace(model, win_model=seen).score({**columns, "amount": np.full(len(deals), np.nan),
                                                      "effort_hours": np.full(len(deals), np.nan)}, n_reasons=0)
    names = model.spec.names
    np.testing.assert_array_equal(seen.features[:, names.index("amount")], typical)
    assert (seen.features[:, names.index("effort_hours")] == fill["effort_hours"]).all()
    assert not np.array_equal(unsent.p_win, scored(0.0, 0.0).p_win)
    # An amount of 0 is no quote (a CRM's default), valued and read as no amount: it had been value 0 (grade D
    # with effort hours) and a p_win of its own, from a branch for small amounts.
    zero = scored(0.0, np.nan)
    np.testing.assert_array_equal(zero.p_win, unsent.p_win)
    np.testing.assert_array_equal(zero.value, unsent.value)
    assert zero.value_source == ["model"] * len(deals) and (zero.value > 0).all()
    # Without a value model nothing stands in for the amount but its median: it is averaged out like any number.
    without_value_model = dataclasses.replace(model, value_model=None)
    no_amount = without_value_model.score({**columns, "amount": np.full(len(deals), np.nan)}, n_reasons=0)
    assert no_amount.not_sent == [["amount"]] * len(deals)
    assert not np.array_equal(no_amount.p_win, without_value_model.score(
        {**columns, "amount": np.full(len(deals), fill["amount"]), "effort_hours": np.full(len(deals), np.nan)},
        n_reasons=0).p_win)
    assert unsent.not_sent == [["effort_hours"]] * len(deals)  # with one, the amount keeps the value model's guess
    without = {k: v for k, v in columns.items() if k not in ("amount", "effort_hours")}
    batch = model.score(without, n_reasons=len(model.spec.names))
    # An absent column is the same as a column of gaps (to rounding: this pass sums tree contributions).
    np.testing.assert_allclose(batch.p_win, unsent.p_win, rtol=1e-9)
    shown = {r.feature: r.value for reasons in batch.reasons for r in reasons}
    assert shown["amount"] is None and "effort_hours" not in shown  # averaged out: no push, no reason
    assert np.isnan(batch.value_per_hour).all()  # the effort stand-in is for p_win only, never for per hour


def test_a_client_sent_without_since_is_scored_as_of_typical_tenure_not_as_a_brand_new_one(
        small_crm: SyntheticCRM, trained: TrainingResult) -> None:
    """Every training client had a `since`, so the engine learned no branch for a missing tenure and read it
    as 0 days: a client the model does not know, sent without `since`, scored exactly as one that became a
    client that day. The training deals' median tenure stands in, and the reasons show the tenure as not sent."""
    model = trained.model
    fill = (model.spec.numeric_fill or {})[TENURE]
    closed = attach_clients(small_crm.deals, small_crm.clients)
    closed = closed[closed["status"] != "open"]
    assert fill == float(np.median((closed["created_at"] - closed["client_since"]).dt.days))
    deals = attach_clients(small_crm.deals.tail(200), small_crm.clients)
    columns = frame_columns(deals)
    # Clients the model does not know (else its own record of their `since` is used).
    strangers = {**columns, "client_id": np.array([f"new-{i}" for i in range(len(deals))], dtype=object)}
    created = np.asarray(columns["created_day"], dtype=np.float64)

    def p_win(since: np.ndarray) -> np.ndarray:
        return np.asarray(model.score({**strangers, "client_since_day": since}, n_reasons=0).p_win)

    unsent = p_win(np.full(len(deals), np.nan))
    np.testing.assert_array_equal(unsent, p_win(created - fill))
    # Not as a client of 0 days. (Read off the features: whether the trees tell 0 days from the median apart
    # depends on where their splits fell.)
    unsent_since = {**strangers, "client_since_day": np.full(len(deals), np.nan)}
    tenure_read = build_features(model.spec, model.history, unsent_since)[:, model.spec.names.index(TENURE)]
    assert (tenure_read == fill).all() and fill > 0
    batch = model.score({**strangers, "client_since_day": np.full(len(deals), np.nan)},
                        n_reasons=len(model.spec.names))
    assert {r.value for reasons in batch.reasons for r in reasons if r.feature == TENURE} == {None}
    sent = model.score(strangers, n_reasons=len(model.spec.names))
    tenure = [r.value for reasons in sent.reasons for r in reasons if r.feature == TENURE]
    assert tenure and all(isinstance(v, float) for v in tenure)


def test_an_artifact_from_before_the_fills_scores_as_it_did(small_crm: SyntheticCRM, trained: TrainingResult) -> None:
    """Artifacts written before FeatureSpec.numeric_fill unpickle with None there: no filling, so a deal
    without an amount scores as those models always did (the engine's reading of a gap), not differently
    after an upgrade."""
    model = trained.model
    older = dataclasses.replace(model, spec=dataclasses.replace(model.spec, numeric_fill=None))
    deals = attach_clients(small_crm.deals.head(100), small_crm.clients)
    columns = frame_columns(deals)
    gap, zero = ({**columns, "amount": np.full(len(deals), a), "effort_hours": np.full(len(deals), a)}
                 for a in (np.nan, 0.0))
    np.testing.assert_array_equal(older.score(gap, n_reasons=0).p_win, older.score(zero, n_reasons=0).p_win)
    assert not np.array_equal(model.score(gap, n_reasons=0).p_win, older.score(gap, n_reasons=0).p_win)


def test_a_column_missing_in_some_training_deals_keeps_the_engines_missing_branch(small_crm: SyntheticCRM) -> None:
    deals = small_crm.deals.copy()
    deals.loc[deals.index[::7], "effort_hours"] = np.nan
    result = train(dataset_from_frames(deals, small_crm.clients, None, for_training=True), TrainConfig(threads=1))
    assert "effort_hours" not in (result.model.spec.numeric_fill or {})
    assert "amount" in (result.model.spec.numeric_fill or {})


def test_the_train_summary_cautions_when_the_model_is_worse_than_the_win_rate() -> None:
    from model.metrics import probability_caution

    worse = {"model": {"brier": 0.328}, "prior_rate": {"brier": 0.243}}  # 100 closed deals, measured
    caution = probability_caution(worse)
    assert caution is not None and "Brier 0.328 against 0.243" in caution
    assert probability_caution({"model": {"brier": 0.160}, "prior_rate": {"brier": 0.230}}) is None
    assert probability_caution({"model": {"brier": None}, "prior_rate": {"brier": 0.230}}) is None
    assert "read p_win as a ranking" in caution
    # A ranking worse than a coin's is not offered as the fallback (an audit saw AUC 0.39-0.45 told so); it is a
    # caution on its own, and a noise-level Brier difference is none (0.15627 against 0.15587 printed as equal).
    chance = probability_caution({"model": {"brier": 0.250, "auc": 0.459}, "prior_rate": {"brier": 0.236}})
    assert chance is not None and "no better than chance (AUC 0.459) and the model's probabilities" in chance
    assert "as a ranking" not in chance
    alone = probability_caution({"model": {"brier": 0.236, "auc": 0.500}, "prior_rate": {"brier": 0.236}})
    assert alone is not None and "no better than chance (AUC 0.500): do not work deals by p_win" in alone
    assert probability_caution({"model": {"brier": 0.15627, "auc": 0.655}, "prior_rate": {"brier": 0.15587}}) is None


def test_lost_deals_written_with_amount_zero_are_valued_as_unquoted_not_as_worthless(
        small_crm: SyntheticCRM) -> None:
    """The contract lets an export write 0 as a lost deal's amount. Taken as its value, every lost deal had
    expected value 0: the report's A, B and C were all won (win rate 100%), D held every lost deal, and the
    cut-offs came from the won deals alone."""
    deals = small_crm.deals.copy()
    deals.loc[deals["status"] == "lost", "amount"] = 0.0
    result = train(dataset_from_frames(deals, small_crm.clients, None, for_training=True), TrainConfig(threads=1))
    assert "amount" in {leak["column"] for leak in result.report["leaks"]}  # the zeros give the outcome away
    rates = {g["grade"]: g["win_rate"] for g in result.report["grades"]}
    assert all(0.0 < rates[grade] < 0.95 for grade in "ABC" if grade in rates), rates


def _with_rare_levels(crm: SyntheticCRM, won_levels: int) -> tuple[pd.DataFrame, list[str]]:
    """The CRM's deals with an extra text column: 10 'rare' levels of 15 closed deals each (the default
    min_level_count is 20), all in the first half, and one common level for the rest. The first `won_levels`
    rare levels' deals are all won deals (all 10: together a code of 150 won deals, which trees learn from)."""
    deals = crm.deals.sort_values(["created_at", "deal_id"], kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(3)
    rare = [f"rare-{i}" for i in range(10)]
    first_half = np.arange(len(deals)) < len(deals) // 2
    won = np.flatnonzero(first_half & (deals["status"] == "won").to_numpy())
    closed = np.flatnonzero(first_half & (deals["status"] != "open").to_numpy())
    chosen = rng.choice(won, size=15 * won_levels, replace=False)
    closed = np.setdiff1d(closed, chosen)
    chosen = np.concatenate([chosen, rng.choice(closed, size=15 * (len(rare) - won_levels), replace=False)])
    deals["campaign"] = "common"
    deals.loc[chosen, "campaign"] = np.repeat(rare, 15)
    return deals, rare


def test_the_holdout_figures_do_not_depend_on_deals_after_it(small_crm: SyntheticCRM) -> None:
    """Which levels get a model code of their own was counted on every deal, open ones and the holdout's
    included: 80 open deals of 8 rare levels appended to the IT bids moved every holdout p_win (by up to
    0.18) and the reported AUC (the evaluation audit). Deals dated after the holdout began, whatever their
    levels, must leave the evaluation model and its figures as they were."""
    deals, rare = _with_rare_levels(small_crm, won_levels=10)
    last = deals["created_at"].max()
    later = deals[deals["status"] == "open"].head(10 * len(rare)).copy()
    later["deal_id"] = "LATER-" + later["deal_id"].astype(str)
    later["created_at"] = last + pd.Timedelta(days=1)
    later["campaign"] = np.repeat(rare, 10)[:len(later)]
    appended = pd.concat([deals, later], ignore_index=True)
    config = TrainConfig(threads=1)
    before = train(dataset_from_frames(deals, small_crm.clients, None, for_training=True), config)
    after = train(dataset_from_frames(appended, small_crm.clients, None, for_training=True), config)
    assert before.holdout is not None and after.holdout is not None
    assert list(before.holdout["deal_id"]) == list(after.holdout["deal_id"])
    np.testing.assert_array_equal(before.holdout["p_win"].to_numpy(), after.holdout["p_win"].to_numpy())
    assert before.report["metrics"] == after.report["metrics"]
    # The published model learns from every closed deal: the rare levels stay rare there too (open deals
    # are not learnt from), so they share the rare code in both.
    assert not set(rare) & set(after.model.spec.vocab["campaign"])


def test_the_logistic_baseline_learns_nothing_from_the_holdout(small_crm: SyntheticCRM) -> None:
    """A level rare in the fitting part (15 deals, all won) but common in the holdout: standardised with the
    fitting part's spread, its dummy read tens of standard deviations there and wrecked the baseline's
    probabilities. Fitted on the fitting part only, such a level is one of the rare ones there."""
    from model.features import DealHistory, level_code_columns
    from training.fit import _baselines

    deals, _ = _with_rare_levels(small_crm, won_levels=1)
    deals = attach_clients(deals, small_crm.clients)
    closed = np.flatnonzero((deals["status"] != "open").to_numpy()).astype(np.int64)
    train_rows, holdout_rows = closed[:-1000], closed[-1000:]
    spec = fit_feature_spec(deals.iloc[train_rows].reset_index(drop=True), FeatureConfig(), {"campaign": "text"})
    won = (deals["status"] == "won").to_numpy(dtype=np.float64)

    def baseline(deals: pd.DataFrame) -> dict[str, float]:
        columns = frame_columns(deals)
        codes = build_features(spec, DealHistory(spec, columns), columns)[:, level_code_columns(spec)]
        return _baselines(deals, spec, codes, won, train_rows, holdout_rows)[0]["logistic_regression"]

    plain = baseline(deals)
    deals.loc[holdout_rows[::2], "campaign"] = "rare-0"  # half the holdout now carries a level rare in training
    shifted = baseline(deals)
    assert shifted["log_loss"] < plain["log_loss"] + 0.01, (plain, shifted)


def test_levels_frequent_only_thanks_to_the_holdout_get_no_code_of_their_own_in_the_evaluation(
        small_crm: SyntheticCRM) -> None:
    """The evaluation model's level codes are counted on its fitting part: closed holdout deals that make a rare
    level frequent must not change how the fitting part's deals are coded, nor so the holdout's figures. The
    relabelled deals are the latest closed ones, so no other deal's as-of features count them."""
    deals, rare = _with_rare_levels(small_crm, won_levels=10)
    latest = deals[deals["status"] != "open"].sort_values(["created_at", "deal_id"], kind="stable").tail(100).index
    relabelled = deals.copy()
    relabelled.loc[latest, "campaign"] = np.repeat(rare, 10)
    config = TrainConfig(threads=1)
    before = train(dataset_from_frames(deals, small_crm.clients, None, for_training=True), config)
    after = train(dataset_from_frames(relabelled, small_crm.clients, None, for_training=True), config)
    assert before.holdout is not None and after.holdout is not None
    others = ~before.holdout["deal_id"].isin(deals.loc[latest, "deal_id"]).to_numpy()
    assert others.sum() > 500
    np.testing.assert_array_equal(before.holdout["p_win"].to_numpy()[others], after.holdout["p_win"].to_numpy()[others])
    # The published model learns from every closed deal: there the rare levels now have codes of their own.
    assert set(rare) <= set(after.model.spec.vocab["campaign"])


def test_recoding_equals_building_with_the_other_vocabularies(small_crm: SyntheticCRM) -> None:
    from model.features import DealHistory, recoded, with_vocabularies_of

    deals, _ = _with_rare_levels(small_crm, won_levels=0)
    deals = attach_clients(deals, small_crm.clients).sort_values(["created_at", "deal_id"], kind="stable")
    deals = deals.reset_index(drop=True)
    late = np.flatnonzero((deals["status"] != "open").to_numpy())[-40:]
    deals.loc[late, "campaign"] = "late"  # frequent among closed deals, absent from the first quarter
    # campaign is noise here (its levels' win rates do not carry over): checked, it would get no codes at all.
    spec = fit_feature_spec(deals, FeatureConfig(steady_levels_only=False), {"campaign": "text", "source": "text"})
    columns = frame_columns(deals)
    history = DealHistory(spec, columns)
    features = build_features(spec, history, columns)
    fitting = np.arange(len(deals) // 4, dtype=np.int64)
    narrower = with_vocabularies_of(spec, deals, fitting)
    assert "late" in spec.vocab["campaign"] and "late" not in narrower.vocab["campaign"]
    assert narrower.names == spec.names
    np.testing.assert_array_equal(recoded(narrower, features, columns), build_features(narrower, history, columns))


def test_a_column_the_outcome_does_not_depend_on_gets_no_codes_nor_reasons(
        small_dataset: Dataset, trained: TrainingResult) -> None:
    """campaign_code does not move the synthetic CRM's outcomes (its truth README says so). Given codes for its 30
    levels, the trees fitted its noise: on the demo CRM (seed 7, 20k deals) it was a top-5 reason of 262 of 910
    open deals, pushing a median 0.30 log-odds. Its levels' win rates do not carry over from one half of the deals
    to the other, so both models go without its codes, training says so, and no open deal names it."""
    unsteady = trained.report["unsteady_columns"]
    assert "campaign_code" in unsteady["published"] and "campaign_code" in unsteady["evaluation"]
    assert trained.metadata["unsteady_columns"] == unsteady["published"]
    assert not {"product", "source", "size"} & set(unsteady["published"] + unsteady["evaluation"])  # real effects
    deals = small_dataset.deals[small_dataset.deals["status"] == "open"]
    columns = frame_columns(attach_clients(deals, small_dataset.clients, trained.model.spec.client_extras))
    reasons = trained.model.score(columns, n_reasons=5).reasons
    assert not [r for row in reasons for r in row if r.feature == "campaign_code"]


def test_the_logistic_baseline_keeps_the_levels_the_model_goes_without(small_crm: SyntheticCRM) -> None:
    """The baseline is the yardstick: it is fitted with every column's levels, as before the check."""
    dataset = dataset_from_frames(small_crm.deals, small_crm.clients, None, for_training=True)
    config = TrainConfig(threads=1)
    checked = train(dataset, config)
    unchecked = train(dataset, dataclasses.replace(
        config, features=dataclasses.replace(config.features, steady_levels_only=False)))
    assert checked.report["unsteady_columns"]["evaluation"] and not unchecked.report["unsteady_columns"]["evaluation"]
    # Its own figures (the lead over the model moves with the model, as it should).
    own = [k for k in checked.report["metrics"]["logistic_regression"] if not k.startswith("auc_lead")]
    assert ({k: checked.report["metrics"]["logistic_regression"][k] for k in own}
            == {k: unchecked.report["metrics"]["logistic_regression"][k] for k in own})


def test_extra_columns_named_with_brackets_colons_or_quotes_train_and_give_reasons(small_crm: SyntheticCRM) -> None:
    """LightGBM refuses feature names holding JSON's special characters (`"`, `,`, `:`, `[`, `]`, `{`, `}`): an
    export's "Revenue [EUR]" or a header-less column pandas names "Unnamed: 12" ended training with an unexpected
    failure (exit 1) deep inside fitting. The engine gets names it accepts; the model keeps the export's own."""
    names = ["Revenue [EUR]", "Stage: Q1", 'say "hi", {x}']
    deals = small_crm.deals.copy()
    won = (deals["status"] == "won").to_numpy()
    noise = np.random.default_rng(0).normal(0.0, 1.0, len(deals))
    deals[names[0]] = np.where(won, 1.0, 0.0) + noise  # a signal the trees split on
    deals[names[1]] = deals["product"]
    deals[names[2]] = np.where(np.arange(len(deals)) % 2 == 0, "a", "b")
    result = train(dataset_from_frames(deals, small_crm.clients, None, for_training=True),
                   TrainConfig(threads=1, parallel_fits=1, keep_columns=(names[0],)))
    assert not result.metadata["small_data"]  # the tree engine, where the names reach LightGBM
    assert set(names) <= set(result.metadata["features"])
    scored = result.model.score(frame_columns(attach_clients(deals.head(200), small_crm.clients)))
    assert np.isfinite(scored.p_win).all()
    assert names[0] in {reason.feature for reasons in scored.reasons for reason in reasons}


def test_engine_feature_names_stay_distinct_when_replacing_characters_makes_two_alike() -> None:
    from training.fit import engine_feature_names

    assert engine_feature_names(["amount", "Revenue [EUR]"]) == ["amount", "Revenue__EUR_"]  # as LightGBM keeps it
    # "a:b" and "a_b" would both become "a_b", which LightGBM refuses as a repeated name.
    names = engine_feature_names(["a:b", "a_b", "amount"])
    assert len(set(names)) == 3 and not any(c in "".join(names) for c in '",:[]{}')


@pytest.mark.parametrize("names", [["deal type", "deal_type"], ["Stage: Q1", "Stage__Q1"], ["a b", "a:b"]])
def test_engine_feature_names_are_taken_by_lightgbm_which_reads_a_space_as_an_underscore(names: list[str]) -> None:
    """LightGBM writes a space in a feature name as `_` before it checks that no name repeats: extra columns
    "deal type" and "deal_type" (or "Stage: Q1" beside "Stage__Q1") reached it as one name twice, and training
    ended with an unexpected failure ("Feature (deal_type) appears more than one time")."""
    import lightgbm as lgb

    from training.fit import engine_feature_names

    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, len(names)))
    won = (features[:, 0] > 0).astype(np.float64)
    engine_names = engine_feature_names(names)
    booster = lgb.train({"verbose": -1, "num_threads": 1, "min_data_in_leaf": 5},
                        lgb.Dataset(features, won, feature_name=engine_names), num_boost_round=2)
    assert len(set(booster.feature_name())) == len(names)


@pytest.mark.parametrize("name", ["note\nline", "note\r\nline", "note\rline"])
def test_a_feature_name_across_lines_gives_a_model_that_loads(name: str) -> None:
    """LightGBM writes the feature names on one line of its model text: a quoted CSV header cell holding a line
    break ("note\nline") gave a booster whose text no longer loaded ("Wrong size of feature_names"), and
    `dealscore train` ended with an unexpected failure."""
    import lightgbm as lgb

    from training.fit import engine_feature_names

    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 2))
    won = (features[:, 0] > 0).astype(np.float64)
    booster = lgb.train({"verbose": -1, "num_threads": 1, "min_data_in_leaf": 5},
                        lgb.Dataset(features, won, feature_name=engine_feature_names([name, "amount"])),
                        num_boost_round=2)
    loaded = lgb.Booster(model_str=booster.model_to_string())
    np.testing.assert_allclose(loaded.predict(features), booster.predict(features))



def test_the_train_summary_says_why_there_is_no_class_d_and_no_value_model(small_crm: SyntheticCRM, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A CRM that clears the amount on a win and fills effort_hours with 0: the summary printed cut-offs and said
    nothing else, though no deal could ever be D and a deal scored without an amount got no value."""
    from dealscore.cli import main as dealscore

    deals = small_crm.deals.assign(effort_hours=0.0)
    deals["amount"] = deals["amount"].where(deals["status"] != "won")
    deals.to_csv(tmp_path / "deals.csv", index=False)
    assert dealscore(["train", "--deals", str(tmp_path / "deals.csv"), "--out", str(tmp_path / "model")]) == 0
    summary = capsys.readouterr().out
    assert "grade A from EV" in summary
    assert ("no class D (no closed deal with effort_hours above 0 and a won amount to set its floor from; "
            "--d-floor-per-hour sets one)") in summary
    assert ("no value model: 0 won deals with an amount above 0, it needs 30; a deal scored without an amount gets "
            "no value and grade C") in summary
    # With hours and won amounts, neither is said.
    small_crm.deals.to_csv(tmp_path / "deals.csv", index=False)
    assert dealscore(["train", "--deals", str(tmp_path / "deals.csv"), "--out", str(tmp_path / "model")]) == 0
    summary = capsys.readouterr().out
    assert "D at or below" in summary and "no class D" not in summary and "no value model" not in summary
