"""Training inputs at their edges: empty optional columns and tables, wrong options, a single client."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from service_fixtures import make_client
from test_feedback_helpers import make_config

from model.artifact import load_artifact, save_artifact
from model.dataset import dataset_from_frames
from model.errors import ContractViolation, InsufficientData
from model.features import FeatureConfig, attach_clients, frame_columns
from service.app import create_app
from service.feedback import Feedback
from service.settings import Settings
from training.fit import TrainConfig, TrainingResult, train
from training.profiles_fit import ProfileConfig
from training.report import render_html
from training.synthetic_crm import SyntheticCRM


def _train(deals: pd.DataFrame, clients: pd.DataFrame | None, holdings: pd.DataFrame | None = None,
           config: TrainConfig | None = None) -> tuple[TrainingResult, list[str]]:
    said: list[str] = []
    dataset = dataset_from_frames(deals, clients, holdings, for_training=True)
    return train(dataset, config or TrainConfig(threads=1), progress=said.append), said


def _cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from dealscore.cli import main as dealscore

    code = dealscore(["train", *args, "--out", str(tmp_path / "model")])
    return code, capsys.readouterr().err


def _csv(frame: pd.DataFrame, path: Path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


# -- 1. Empty optional columns and tables: trained on as if absent ---------------------------------------


@pytest.mark.parametrize("column", ["amount", "effort_hours", "competitor", "discount_pct"])
def test_an_optional_deal_column_left_empty_is_trained_on_as_if_absent(small_crm: SyntheticCRM, column: str) -> None:
    """amount and effort_hours (contract columns), competitor (an extra text column) and discount_pct (an
    extra number column): blank in every deal, they once crashed the baselines' median fill."""
    deals = small_crm.deals.copy()
    deals[column] = np.nan
    result, said = _train(deals, small_crm.clients, small_crm.holdings)
    assert result.metadata["empty_columns"] == [column]
    assert column in result.metadata["excluded_columns"]
    assert result.report["empty_columns"] == [column]
    assert column not in result.model.spec.names
    assert any(column in line and "as if absent" in line for line in said)
    assert result.metadata["metrics"]["logistic_regression"]["auc"] > 0.5


def test_deals_with_only_the_required_columns_train_and_score(small_crm: SyntheticCRM, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """deal_id, created_at and status are all the contract requires: the raw-column baseline had no column to
    encode, and get_dummies of nothing failed the whole training after the model was fitted. Scored, every
    deal is C without a value, which `dealscore score` says (it said nothing)."""
    from dealscore.cli import main as dealscore

    deals = small_crm.deals[["deal_id", "created_at", "status"]]
    # One booster: then worse than the win rate here (AUC 0.493, Brier 0.258 against 0.252). Averaged over seeds
    # the same deals give AUC 0.513 and Brier 0.251, no caution (tests/test_seed_average.py).
    result, _ = _train(deals, None, config=TrainConfig(threads=1, seed_members=1))
    metrics = result.metadata["metrics"]
    # No column: its intercept, the win rate (and ranks every deal alike: AUC 0.5, the model's lead its own).
    assert {k: metrics["logistic_regression"][k] for k in metrics["prior_rate"]} == metrics["prior_rate"]
    assert metrics["logistic_regression"]["auc_lead_over_model"] == pytest.approx(0.5 - metrics["model"]["auc"])
    # The caution is kept where the model is read, not only said in a terminal.
    caution = result.metadata["caution"]
    assert caution and caution.startswith("caution: on the holdout the model ranks deals no better than chance")
    assert result.report["caution"] == caution and html.escape(caution) in render_html(result.report)
    app = create_app(Settings(), model=result.model, metadata=result.metadata)
    with make_client(app) as client:
        assert client.get("/v1/model").json()["caution"] == caution
    model_dir = save_artifact(result.model, tmp_path / "model", result.metadata)
    capsys.readouterr()
    assert dealscore(["score", "--model", str(model_dir), "--deals", _csv(deals.head(40), tmp_path / "d.csv"),
                      "--out", str(tmp_path / "s.csv")]) == 0
    assert "40 deals without an amount: this model has no value model" in capsys.readouterr().err
    scores = pd.read_csv(tmp_path / "s.csv")
    assert scores["p_win"].between(0, 1, inclusive="neither").all() and (scores["grade"] == "C").all()


def test_undated_open_deals_are_said_when_set_aside_and_when_scored_as_of_today(
        small_crm: SyntheticCRM, trained: TrainingResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stage export without dates (maven's Prospecting deals) was scored as of today without a word, and
    training set such deals aside without one."""
    from dealscore.cli import main as dealscore

    deals = small_crm.deals.copy()
    open_rows = deals.index[deals["status"] == "open"][:7]
    deals.loc[open_rows, "created_at"] = pd.NaT
    _, said = _train(deals, small_crm.clients)
    assert any(line.startswith("7 open deals without created_at set aside") for line in said), said
    model_dir = save_artifact(trained.model, tmp_path / "model", trained.metadata)
    capsys.readouterr()
    assert dealscore(["score", "--model", str(model_dir), "--deals", _csv(deals.loc[open_rows[:5]], tmp_path / "d.csv"),
                      "--out", str(tmp_path / "s.csv")]) == 0
    assert "5 deals without created_at scored as of today (" in capsys.readouterr().err


def test_the_train_command_trains_on_deals_whose_amount_is_blank(small_crm: SyntheticCRM, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from dealscore.cli import main as dealscore

    deals = small_crm.deals.assign(amount=np.nan)
    code = dealscore(["train", "--deals", _csv(deals, tmp_path / "deals.csv"), "--out", str(tmp_path / "model")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "trained on as if absent: amount" in err
    assert "empty columns (no value in any won or lost deal), trained without: amount" in out  # the summary
    assert "amount" in (tmp_path / "model" / "report.html").read_text()


def test_a_header_only_clients_table_is_no_clients_table(small_crm: SyntheticCRM, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The feedback recipe's training_clients view has no rows until clients are sent with deals."""
    header_only = small_crm.clients.head(0)
    dataset = dataset_from_frames(small_crm.deals, header_only, small_crm.holdings, for_training=True)
    assert dataset.clients is None  # and so holdings are not refused as clients of an empty table
    result = train(dataset, TrainConfig(threads=1))
    assert result.metadata["data"]["clients"] == 0
    assert "industry" not in result.model.spec.names

    code, err = _cli(tmp_path, capsys, "--deals", _csv(small_crm.deals, tmp_path / "deals.csv"),
                     "--clients", _csv(header_only, tmp_path / "clients.csv"),
                     "--holdings", _csv(small_crm.holdings, tmp_path / "holdings.csv"))
    assert code == 0, err
    assert "the clients table has no rows: training goes on without client attributes" in err  # said, not silent
    # A holdings file of no rows is refused: it had trained a model without ideal profiles, without a word.
    code, err = _cli(tmp_path, capsys, "--deals", str(tmp_path / "deals.csv"),
                     "--holdings", _csv(small_crm.holdings.head(0), tmp_path / "holdings.csv"))
    assert code == 2 and "holdings source: expected a holdings table with at least one row" in err, err


def test_client_attributes_left_blank_are_trained_on_as_if_absent(small_crm: SyntheticCRM) -> None:
    clients = small_crm.clients.copy()
    for column in ("industry", "size", "region", "since"):
        clients[column] = None
    result, said = _train(small_crm.deals, clients, small_crm.holdings)
    assert sorted(result.metadata["empty_columns"]) == ["industry", "region", "size"]
    assert not {"industry", "size", "region", "client_tenure_days"} & set(result.model.spec.names)
    assert result.model.profiles is not None  # profiles without segments: one segment of all clients


def test_an_empty_required_column_is_a_contract_error(small_crm: SyntheticCRM) -> None:
    with pytest.raises(ContractViolation) as caught:
        dataset_from_frames(small_crm.deals.assign(status=None), small_crm.clients, None, for_training=True)
    assert [(p.table, p.field) for p in caught.value.problems] == [("deals", "status")]
    assert "non-empty status" in caught.value.problems[0].expected


# -- 2. Options: refused with the option, what was expected and what came ---------------------------------


@pytest.mark.parametrize(("make", "named", "came"), [
    (lambda: TrainConfig(holdout_share=-0.5), "holdout_share", "-0.5"),
    (lambda: TrainConfig(holdout_share=0), "holdout_share", "got 0"),
    (lambda: TrainConfig(holdout_share=1.0), "holdout_share", "got 1.0"),
    (lambda: TrainConfig(calibration_share=0.0), "calibration_share", "got 0.0"),
    (lambda: TrainConfig(d_floor_per_hour=-1.0), "d_floor_per_hour", "got -1.0"),
    (lambda: TrainConfig(d_floor_per_hour=float("nan")), "d_floor_per_hour", "got nan"),
    (lambda: TrainConfig(keep_columns="stage_note"), "keep_columns", "'stage_note'"),  # type: ignore[arg-type]
    (lambda: TrainConfig(grade_shares=(0.8, 0.15)), "grade_shares", "got (0.8, 0.15)"),  # type: ignore[arg-type]
    (lambda: TrainConfig(grade_shares=(0.8, 0.1, 0.05)), "grade_shares", "got (0.8, 0.1, 0.05)"),
    (lambda: TrainConfig(grade_shares=(0.0, 0.95, 0.05)), "grade_shares", "got (0.0, 0.95, 0.05)"),
    (lambda: ProfileConfig(best_shares=(0.5, 0.6, -0.1)).chain(), "best_shares", "got (0.5, 0.6, -0.1)"),
    (lambda: FeatureConfig(lost_window_days=-5), "lost_window_days", "got -5"),
    (lambda: FeatureConfig(lost_window_days=0), "lost_window_days", "got 0"),
    (lambda: FeatureConfig(smoothing=-1.0), "smoothing", "got -1.0"),
    (lambda: FeatureConfig(exclude="amount"), "exclude", "'amount'"),  # type: ignore[arg-type]
])
def test_a_setting_out_of_range_is_refused_with_what_was_expected(make: object, named: str, came: str) -> None:
    with pytest.raises(ValueError, match=named) as caught:
        make()  # type: ignore[operator]
    assert "must be" in str(caught.value) and came in str(caught.value)


def test_the_train_command_refuses_out_of_range_options_as_bad_input(small_crm: SyntheticCRM, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    deals = _csv(small_crm.deals, tmp_path / "deals.csv")
    for option, value in (("--holdout-share", "-0.5"), ("--holdout-share", "0"), ("--d-floor-per-hour", "-1"),
                          ("--lost-window-days", "-5")):
        code, err = _cli(tmp_path, capsys, "--deals", deals, option, value)
        assert code == 2, err
        named = option.removeprefix("--").replace("-", "_")
        assert f"{named} must be" in err and "unexpected" not in err
        assert len(err.strip().splitlines()) == 1, err


def test_an_amount_of_0_trains_as_no_amount_as_it_is_served(small_crm: SyntheticCRM) -> None:
    """The scorer reads an amount of 0 as no quote; training fed the trees 0, so lost deals quoted 0 taught them
    "0 means lost", the holdout was judged on it (AUC 0.935 on a review's data) and the served model, which never
    sees a 0, ranked those deals at 0.812. Zeros and gaps now train the same model."""
    deals = small_crm.deals.copy()
    rng = np.random.default_rng(0)
    quoted_0 = (deals["status"] == "lost") & (rng.random(len(deals)) < 0.6)
    zeros, _ = _train(deals.assign(amount=deals["amount"].where(~quoted_0, 0.0)), small_crm.clients)
    gaps, _ = _train(deals.assign(amount=deals["amount"].where(~quoted_0)), small_crm.clients)
    assert zeros.metadata["metrics"]["model"] == gaps.metadata["metrics"]["model"]
    assert zeros.model.spec.numeric_fill == gaps.model.spec.numeric_fill
    assert zeros.model.win_model.booster.model_to_string() == gaps.model.win_model.booster.model_to_string()


def test_grade_shares_are_an_option_of_train_and_retrain(small_crm: SyntheticCRM, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """DOMAIN.md: the Pareto shares are configurable. They were, in TrainConfig only: `--grade-shares` was an
    unrecognised argument."""
    from dealscore.cli import main as dealscore

    deals = _csv(small_crm.deals, tmp_path / "deals.csv")
    code, err = _cli(tmp_path, capsys, "--deals", deals, "--grade-shares", "0.7", "0.2", "0.2")
    assert code == 2 and err.startswith("dealscore train: --grade-shares: grade_shares must be three shares"), err
    assert not (tmp_path / "model").exists()
    code, err = _cli(tmp_path, capsys, "--deals", deals, "--grade-shares", "0.5", "0.3", "0.2")
    assert code == 0, err
    cut = json.loads((tmp_path / "model" / "metadata.json").read_text())["grade_cutoffs"]
    assert cut["shares"] == [0.5, 0.3, 0.2]
    model, _ = load_artifact(tmp_path / "model")
    assert model.cutoffs.shares == (0.5, 0.3, 0.2) and model.cutoffs.a_min == cut["a_min_expected_value"] > 0
    # retrain takes it as train does (refused before the registry is touched)
    code = dealscore(["retrain", "--registry", str(tmp_path / "registry"), "--deals", deals,
                      "--grade-shares", "0.9", "0.2", "-0.1"])
    err = capsys.readouterr().err
    assert code == 2 and "--grade-shares: grade_shares must be three shares" in err, err
    assert not (tmp_path / "registry").exists()


def test_columns_named_by_exclude_or_keep_must_exist(small_crm: SyntheticCRM) -> None:
    deals = small_crm.deals
    config = TrainConfig(features=FeatureConfig(exclude=("competitr",)), keep_columns=("nonexistent",))
    with pytest.raises(ContractViolation, match="'competitr', 'nonexistent'") as caught:
        _train(deals, small_crm.clients, config=config)
    by_option = {p.field: p for p in caught.value.problems}
    assert "did you mean 'competitor'?" in by_option["exclude (--exclude)"].expected
    assert "source, campaign_code, competitor" in by_option["keep_columns (--keep)"].expected
    # A client attribute exists only with a clients table; the message says so.
    with pytest.raises(ContractViolation, match="'region'") as caught:
        _train(deals, None, config=TrainConfig(features=FeatureConfig(exclude=("region",))))
    assert "comes from the clients table" in caught.value.problems[0].expected


def test_excluding_month_turns_the_calendar_feature_off(small_crm: SyntheticCRM) -> None:
    """`--exclude month` was refused ("did you mean 'amount'?"), though month was the top reason for a fifth of
    maven's open deals, whose dates its PROVENANCE calls an artefact."""
    result, _ = _train(small_crm.deals, small_crm.clients, config=TrainConfig(
        threads=1, features=FeatureConfig(exclude=("month",))))
    names = result.model.spec.names
    assert "month" not in names and "recent_win_rate" in names and "month" not in result.model.spec.categorical_names
    assert result.model.win_model.booster.num_feature() == len(names)
    scored = result.model.score(frame_columns(attach_clients(small_crm.deals.tail(30), small_crm.clients)))
    assert all(r.feature != "month" for reasons in scored.reasons for r in reasons)
    assert np.all((scored.p_win > 0) & (scored.p_win < 1))
    # A deals column named month is what --exclude month names then (as before the option): the feature stays.
    own_month, _ = _train(small_crm.deals.assign(month="March"), small_crm.clients, config=TrainConfig(
        threads=1, features=FeatureConfig(exclude=("month",))))
    assert own_month.model.spec.names.count("month") == 1 and own_month.model.spec.has_month
    with_month, _ = _train(small_crm.deals, small_crm.clients)
    assert with_month.model.spec.names == [*names[:names.index("recent_win_rate") + 1], "month",
                                           *names[names.index("recent_win_rate") + 1:]]


def test_excluding_the_client_id_trains_without_client_history_and_says_so(small_crm: SyntheticCRM,
                                                                          tmp_path: Path) -> None:
    """`--exclude client_id` was accepted and changed nothing: the client history features stayed. It now
    trains as data without a client id (attributes joined by it stay), and such a model's scores say no
    client history was read, even when a deal sends one (they said "request", for history they ignored)."""
    result, said = _train(small_crm.deals, small_crm.clients, config=TrainConfig(
        threads=1, features=FeatureConfig(exclude=("client_id", "client_since"))))
    spec = result.model.spec
    assert not spec.has_client_history and not spec.has_client_since and not spec.client_keys
    assert not [name for name in spec.names if name.startswith("client_")]
    assert {"industry", "size", "region"} <= set(spec.categorical)  # joined by the client id before training
    assert any(line.startswith("--exclude client_id: trained without client history") for line in said)
    assert any(line.startswith("--exclude client_since: trained without the client's tenure") for line in said)
    deal = small_crm.deals.iloc[-1]
    sent = {"deal_id": "x", "client_id": deal["client_id"], "created_at": "2025-06-01", "product": deal["product"],
            "amount": 1000.0}
    history = {"client_id": deal["client_id"], "won_deals": 3, "won_amount": 5000.0,
               "first_won_at": "2022-01-01", "last_won_at": "2025-01-01"}
    feedback = Feedback(make_config(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "spool"))
    with make_client(create_app(Settings(), model=result.model, metadata=result.metadata,
                                feedback=feedback)) as client:
        plain = client.post("/v1/score", json={"deals": [sent]}).json()["scores"][0]
        with_history = client.post("/v1/score", json={"deals": [{**sent, "client": history}]}).json()["scores"][0]
        # An outcome is stored, but enters no client's history: the model reads none (the diff review: it said
        # client_history true).
        reported = client.post("/v1/outcomes", json={"outcomes": [
            {"deal_id": "x", "status": "won", "client_id": deal["client_id"]}]}).json()
    assert plain["history_source"] == with_history["history_source"] == "none"
    assert plain["p_win"] == with_history["p_win"]
    assert reported["results"][0]["client_history"] is False and reported["created"] == 1


def test_excluding_a_deal_column_that_is_never_a_feature_says_nothing_is_excluded(small_crm: SyntheticCRM) -> None:
    result, said = _train(small_crm.deals, small_crm.clients, config=TrainConfig(
        threads=1, features=FeatureConfig(exclude=("deal_id", "created_at"))))
    note = next(line for line in said if line.startswith("--exclude deal_id, created_at: never a feature"))
    assert "--exclude month drops the calendar month" in note
    plain, _ = _train(small_crm.deals, small_crm.clients)
    assert result.model.spec.names == plain.model.spec.names


def test_the_train_command_refuses_an_unknown_excluded_column(small_crm: SyntheticCRM, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    deals = _csv(small_crm.deals, tmp_path / "deals.csv")
    code, err = _cli(tmp_path, capsys, "--deals", deals, "--exclude", "nonexistent_col")
    assert code == 2 and "columns the data does not have: 'nonexistent_col'" in err, err
    code, err = _cli(tmp_path, capsys, "--deals", deals, "--keep", "nonexistent")
    assert code == 2 and "keep_columns (--keep)" in err, err


def test_a_holdout_of_one_outcome_is_refused(small_crm: SyntheticCRM) -> None:
    """A share so small that the holdout is a deal or two cannot be evaluated (AUC needs both outcomes)."""
    with pytest.raises(InsufficientData, match=r"holdout \(the latest 1 closed deals, holdout_share 0.0001\)"):
        _train(small_crm.deals, small_crm.clients, config=TrainConfig(holdout_share=0.0001))


# -- 3. A single client: profiles fitted, their evaluation skipped with the reason -------------------------


def test_a_single_client_with_holdings_trains_and_says_why_profiles_are_not_evaluated(
        small_crm: SyntheticCRM, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deals = small_crm.deals.assign(client_id="C00001")
    holdings = small_crm.holdings[small_crm.holdings["client_id"] == "C00001"]
    assert len(holdings) > 0
    result, said = _train(deals, None, holdings)
    evaluation = result.metadata["profiles"]["evaluation"]
    assert evaluation["evaluated"] is False
    assert "at least 2 clients holding products" in evaluation["why"] and "have 1" in evaluation["why"]
    assert any("profiles fitted but not evaluated" in line for line in said)
    assert result.model.profiles is not None

    code, err = _cli(tmp_path, capsys, "--deals", _csv(deals, tmp_path / "deals.csv"),
                     "--holdings", _csv(holdings, tmp_path / "holdings.csv"))
    assert code == 0, err
    assert "not evaluated: hide-one-out needs at least 2 clients" in err


def test_the_artifact_holds_the_holdout_deals_every_report_figure_is_computed_from(
        small_crm: SyntheticCRM, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """holdout.csv: one row per holdout deal, in the artifact and under its checksums; AUC, Brier, ECE, the
    calibration curve and the per-grade table of report.json are recomputed from it here, independently."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    from dealscore.cli import main as dealscore
    from model.artifact import verify_artifact

    deals, clients = _csv(small_crm.deals, tmp_path / "deals.csv"), _csv(small_crm.clients, tmp_path / "clients.csv")
    code = dealscore(["train", "--deals", deals, "--clients", clients, "--out", str(tmp_path / "model")])
    assert code == 0, capsys.readouterr().err
    assert "holdout.csv" in verify_artifact(tmp_path / "model")["checksums"]
    report = json.loads((tmp_path / "model" / "report.json").read_text())
    holdout = pd.read_csv(tmp_path / "model" / "holdout.csv", parse_dates=["created_at"])

    closed = small_crm.deals[small_crm.deals["status"].isin(["won", "lost"])]
    assert len(holdout) == report["split"]["holdout_deals"] and holdout["deal_id"].is_unique
    assert set(holdout["deal_id"]) <= set(closed["deal_id"])
    assert str(holdout["created_at"].min().date()) == report["split"]["holdout_from"]
    # The latest closed deals: none before the split is later than any in the holdout.
    earlier = closed[~closed["deal_id"].isin(holdout["deal_id"])]
    assert earlier["created_at"].max() <= holdout["created_at"].min()

    won, p = (holdout["status"] == "won").to_numpy(dtype=float), holdout["p_win"].to_numpy()
    model = report["metrics"]["model"]
    assert roc_auc_score(won, p) == pytest.approx(model["auc"], abs=1e-12)
    assert brier_score_loss(won, p) == pytest.approx(model["brier"], abs=1e-12)
    bins = np.minimum((p * 10).astype(int), 9)
    by_bin = pd.DataFrame({"bin": bins, "won": won, "p": p}).groupby("bin")
    ece = sum(len(g) / len(p) * abs(g["won"].mean() - g["p"].mean()) for _, g in by_bin)
    assert ece == pytest.approx(model["ece"], abs=1e-12)
    assert [c["deals"] for c in report["calibration_curve"]] == by_bin.size().tolist()

    realised = np.where(won > 0, holdout["amount"].fillna(0.0), 0.0)
    for row in report["grades"]:
        inside = (holdout["grade"] == row["grade"]).to_numpy()
        assert row["deals"] == inside.sum()
        assert row["win_rate"] == pytest.approx(won[inside].mean(), abs=1e-12)
        assert row["share_of_realised_value"] == pytest.approx(realised[inside].sum() / realised.sum(), abs=1e-12)
    np.testing.assert_allclose(holdout["expected_value"], p * holdout["value"].fillna(0.0), rtol=1e-12)


def test_deals_whose_client_ids_the_clients_table_lacks_are_counted_and_said(small_crm: SyntheticCRM) -> None:
    """Ids written "00196" in one file and 196 in the other link nothing: every deal trained without its
    client's attributes, and only an 'empty columns' line hinted at it."""
    clients = small_crm.clients.assign(client_id="0" + small_crm.clients["client_id"])
    result, said = _train(small_crm.deals, clients, None)
    n = len(small_crm.deals)
    assert result.metadata["data"]["deals_of_unknown_clients"] == n
    assert any(line.startswith(f"{n:,} of {n:,} deals name a client_id the clients table lacks") for line in said)
    linked, said = _train(small_crm.deals, small_crm.clients, None)
    assert linked.metadata["data"]["deals_of_unknown_clients"] == 0
    assert not any("client_id the clients table lacks" in line for line in said)


def test_deals_without_a_client_id_beside_a_clients_table_are_said_with_the_column_to_map(
        small_crm: SyntheticCRM, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CONTRACT.md's mapping example maps no client_id: the export's Account column trained as a text feature,
    the clients table joined nothing, and train, score and clients said nothing of it (clients blamed --as-of)."""
    from dealscore.cli import main as dealscore

    deals = small_crm.deals.rename(columns={"client_id": "Account"})
    result, said = _train(deals, small_crm.clients, None)
    [note] = [line for line in said if "no deal carries a client_id" in line]
    assert "the deals column 'Account' holds the clients table's ids: map it as client_id" in note
    unlinked, said = _train(small_crm.deals.drop(columns=["client_id"]), small_crm.clients, None)
    [note] = [line for line in said if "no deal carries a client_id" in line]
    assert "if the export names the client's id differently" in note
    linked, said = _train(small_crm.deals, small_crm.clients, None)
    assert not any("no deal carries a client_id" in line for line in said)
    # Ids that are numbers (read as floats where a cell is empty) are recognised too.
    numbered = small_crm.clients.assign(client_id=small_crm.clients["client_id"].str[1:].astype(int).astype(str))
    account = deals["Account"].str[1:].astype(float).where(deals.index % 9 != 0)
    # Last, behind whole effort hours that are ids too: a measure is not named as the client column.
    moved = deals.drop(columns=["Account"]).assign(effort_hours=deals["effort_hours"].round(), Account=account)
    _, said = _train(moved, numbered, None)
    [note] = [line for line in said if "no deal carries a client_id" in line]
    assert "the deals column 'Account' holds the clients table's ids" in note
    deals_csv, clients_csv = _csv(deals, tmp_path / "deals.csv"), _csv(small_crm.clients, tmp_path / "clients.csv")
    model_dir = save_artifact(linked.model, tmp_path / "model", linked.metadata)
    capsys.readouterr()
    assert dealscore(["score", "--model", str(model_dir), "--deals", deals_csv, "--clients", clients_csv,
                      "--out", str(tmp_path / "s.csv")]) == 0
    assert "'Account' holds the clients table's ids" in capsys.readouterr().err
    assert dealscore(["clients", "--deals", deals_csv, "--clients", clients_csv, "--out",
                      str(tmp_path / "c.csv")]) == 0
    err = capsys.readouterr().err
    assert "no deal carries a client_id" in err and "'Account'" in err and "--as-of" not in err


def test_gaps_from_profiles_that_know_no_income_say_their_zeros_mean_unknown(
        small_crm: SyntheticCRM, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Holdings without revenue and deals without amounts: every gap row's potential_income was 0.0, read as
    "worth nothing", without a word."""
    from dealscore.cli import main as dealscore

    holdings = small_crm.holdings.drop(columns=["revenue"])
    result, _ = _train(small_crm.deals.drop(columns=["amount"]), small_crm.clients, holdings)
    assert result.model.profiles is not None and not result.model.profiles.has_income
    model_dir = save_artifact(result.model, tmp_path / "model", result.metadata)
    capsys.readouterr()
    assert dealscore(["gaps", "--model", str(model_dir), "--clients", _csv(small_crm.clients, tmp_path / "c.csv"),
                      "--holdings", _csv(holdings, tmp_path / "h.csv"), "--out", str(tmp_path / "g.csv")]) == 0
    err = capsys.readouterr().err
    assert ("the model's profiles know no income (its holdings had no revenue and no won deal amounts): "
            "potential_income is 0 in every row") in err
    assert (pd.read_csv(tmp_path / "g.csv")["potential_income"] == 0).all()
    # A model trained before a revenue of 0 in every row was read as not given had read it as income 0: its note
    # says so, not that there were no amounts.
    result.model.profiles.summary["income_source"] = "holdings revenue"
    older = save_artifact(result.model, tmp_path / "older", result.metadata)
    assert dealscore(["gaps", "--model", str(older), "--clients", _csv(small_crm.clients, tmp_path / "c.csv"),
                      "--holdings", _csv(holdings, tmp_path / "h.csv"), "--out", str(tmp_path / "g.csv")]) == 0
    assert ("(its holdings table's revenue was 0 in every row at training, read then as income 0; retrain, and won "
            "deal amounts measure income)") in capsys.readouterr().err


def test_a_holdings_revenue_of_0_in_every_row_is_read_as_not_given(
        small_crm: SyntheticCRM, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A holdings export whose revenue column is 0 in every row (a field the CRM never fills) was read as income 0:
    every client's income and potential income was 0, gaps were ranked by p_accept alone, and the note blamed
    "no revenue and no won deal amounts" though the won deals had amounts (the degenerate-data audit). As an
    amount of 0 is no quote, it is read as not given: the won deals' amounts measure income, as without it."""
    from dealscore.cli import main as dealscore

    holdings = small_crm.holdings.assign(revenue=0.0)
    result, said = _train(small_crm.deals, small_crm.clients, holdings)
    blank, _ = _train(small_crm.deals, small_crm.clients, small_crm.holdings.assign(revenue=np.nan))
    profiles = result.model.profiles
    assert profiles is not None and profiles.has_income and profiles.summary["income_source"] == "won deal amounts"
    assert ("the holdings table's revenue is 0 in every row: read as not given (as an amount of 0 is no quote), so "
            "clients' income is measured by won deal amounts") in said
    assert blank.model.profiles is not None and not blank.model.profiles.summary["holdings_revenue_all_zero"]
    model_dir = save_artifact(result.model, tmp_path / "model", result.metadata)
    blank_dir = save_artifact(blank.model, tmp_path / "blank", blank.metadata)
    capsys.readouterr()
    for model, out in ((model_dir, "g.csv"), (blank_dir, "b.csv")):
        assert dealscore(["gaps", "--model", str(model), "--clients", _csv(small_crm.clients, tmp_path / "c.csv"),
                          "--holdings", _csv(holdings, tmp_path / "h.csv"), "--out", str(tmp_path / out)]) == 0
    assert "know no income" not in capsys.readouterr().err
    gaps = pd.read_csv(tmp_path / "g.csv")
    assert (gaps["potential_income"] > 0).any()
    pd.testing.assert_frame_equal(gaps, pd.read_csv(tmp_path / "b.csv"))


def test_a_clients_tables_extra_columns_are_features_named_client_x_scored_alike_everywhere(
        small_crm: SyntheticCRM, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The contract: any other column is an extra feature. A clients table's revenue and tier were listed as
    extra columns yet never trained on. They are client_revenue and client_tier (apart from a deals column of
    the same name); a known client's come from the model's record when a deal or file does not carry them,
    and the service, `dealscore score` with the clients file, and without it score alike."""
    from service_fixtures import make_client

    from dealscore.cli import main as dealscore
    from model.artifact import load_artifact
    from service import Settings, create_app

    rng = np.random.default_rng(5)
    clients = small_crm.clients.assign(revenue=rng.lognormal(10, 1, len(small_crm.clients)).round(2),
                                       tier=rng.choice(["gold", "silver", "bronze"], len(small_crm.clients)))
    result, _ = _train(small_crm.deals, clients, None)
    spec = result.model.spec
    assert spec.client_extras == ["client_revenue", "client_tier"]
    assert "client_revenue" in spec.numeric and "client_tier" in spec.categorical
    assert "client_tier_win_rate" in spec.names

    deals_csv, clients_csv = _csv(small_crm.deals, tmp_path / "deals.csv"), _csv(clients, tmp_path / "clients.csv")
    assert dealscore(["train", "--deals", deals_csv, "--clients", clients_csv, "--out", str(tmp_path / "m")]) == 0
    open_deals = small_crm.deals[small_crm.deals["status"] == "open"].head(40).drop(columns=["status", "closed_at"])
    _csv(open_deals, tmp_path / "open.csv")
    outs = []
    for name, extra in (("with", ["--clients", clients_csv]), ("without", [])):
        out = tmp_path / f"{name}.csv"
        assert dealscore(["score", "--model", str(tmp_path / "m"), "--deals", str(tmp_path / "open.csv"),
                          *extra, "--out", str(out)]) == 0
        outs.append(pd.read_csv(out).set_index("deal_id"))
    assert "no column for" not in capsys.readouterr().err  # known clients: the model's record stands in
    np.testing.assert_allclose(outs[0]["p_win"], outs[1]["p_win"], rtol=0, atol=1e-12)

    model, metadata = load_artifact(tmp_path / "m")
    payload = [{**{k: (v.date().isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in deal.items()
                   if v == v and v is not None}, "client_revenue": 10.0, "client_tier": "bronze"}
               for deal in open_deals.to_dict("records")]
    with make_client(create_app(Settings(), model=model, metadata=metadata)) as client:
        sent_as_known = client.post("/v1/score", json={"deals": [
            {k: v for k, v in deal.items() if k not in ("client_revenue", "client_tier")} for deal in payload]})
        sent_other = client.post("/v1/score", json={"deals": payload})
    assert sent_as_known.status_code == sent_other.status_code == 200, sent_other.text
    served = [s["p_win"] for s in sent_as_known.json()["scores"]]
    np.testing.assert_allclose(served, outs[0]["p_win"].to_numpy(), rtol=0, atol=1e-9)
    # Sent at the deal level, a client's revenue and tier are what the model reads (not its record).
    assert [s["p_win"] for s in sent_other.json()["scores"]] != served


def test_client_ids_spelt_otherwise_in_case_or_spaces_are_said(small_crm: SyntheticCRM) -> None:
    """An export that changed the case of a third of its client ids had 1,000 of 3,000 deals lose their client's
    attributes and history, and `score` and `clients` said nothing. Ids still match exactly."""
    deals = small_crm.deals.copy()
    changed = deals.index[:30]
    deals.loc[changed, "client_id"] = deals.loc[changed, "client_id"].str.lower()
    dataset = dataset_from_frames(deals, small_crm.clients, None, for_training=True)
    note = dataset.client_id_spellings_note()
    first = deals.loc[changed[0], "client_id"]
    assert note is not None and note.startswith(
        f"30 deals name a client_id that the clients table spells otherwise in case or spaces ({first!r}, where it "
        f"has {first.upper()!r}); ")
    assert "client_ids of the deals come in several such spellings" in note
    assert dataset.summary["prospect_deals"] == 30  # not merged: "c1" and "C1" may be two clients
    assert dataset_from_frames(small_crm.deals, small_crm.clients, None,
                               for_training=True).client_id_spellings_note() is None
    # A clients table with both spellings links each deal exactly: no deal is said to lose its client (it was).
    lower = small_crm.clients.assign(client_id=small_crm.clients["client_id"].str.lower())
    both = pd.concat([small_crm.clients, lower])
    linked = dataset_from_frames(deals, both, None, for_training=True).client_id_spellings_note()
    assert linked is not None and "clients table spells otherwise" not in linked
    without_clients = dataset_from_frames(deals, None, None, for_training=True).client_id_spellings_note()
    ids = deals["client_id"].dropna()
    split = int((ids.groupby(ids.str.casefold()).nunique() > 1).sum())  # clients with deals in both spellings
    assert 0 < split <= 30
    assert without_clients is not None and without_clients.startswith(
        f"{split} client_ids of the deals come in several such spellings")


def test_an_extra_column_of_numbers_with_a_placeholder_is_said_to_train_as_text(small_crm: SyntheticCRM) -> None:
    """One "-" among thousands of numbers makes the column text (every value a rare level): legal, so said."""
    deals = small_crm.deals.assign(discount=[f"{i % 30}.5" for i in range(len(small_crm.deals))])
    deals.loc[deals.index[7], "discount"] = "-"
    result, said = _train(deals.astype({"discount": object}), small_crm.clients)
    assert result.metadata["data"]["extra_columns"]["discount"] == "text"
    note = next(line for line in said if line.startswith("extra column discount"))
    assert note == (f"extra column discount is trained as text: 1 of its {len(deals):,} values are not numbers "
                    "(first: '-'); leave those cells empty to train it as a number")
    _, said = _train(small_crm.deals, small_crm.clients)  # source, campaign_code, competitor: text, rightly
    assert not any(line.startswith("extra column") for line in said)
    # Thousands separators in every value made the column text without a word (an audit's budget column: AUC
    # 0.828 against 0.921 written plainly).
    formatted = small_crm.deals.assign(budget=[f"{1000 + 37 * i:,}.5" for i in range(len(small_crm.deals))])
    formatted.loc[formatted.index[3], "budget"] = "$12"
    formatted.loc[formatted.index[9], "budget"] = "n/a"
    _, said = _train(formatted.astype({"budget": object}), small_crm.clients)
    note = next(line for line in said if line.startswith("extra column budget"))
    assert note == (f"extra column budget is trained as text: {len(formatted) - 1:,} of its {len(formatted):,} values "
                    "are numbers written with thousands separators or a currency sign (first: '1,000.5'); 1 of its "
                    f"{len(formatted):,} values are not numbers (first: 'n/a'); write numbers as plain digits and "
                    "leave those cells empty to train it as a number")


def test_clients_columns_whose_client_name_is_taken_are_not_joined_and_said(
        small_crm: SyntheticCRM, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A clients export's own `id` became a second client_id (training and scoring crashed), its `status`
    clashed with the derived client_status (training refused), and a deals column client_tier was overwritten
    by the clients table's tier. Such columns are not joined, and training names them."""
    from dealscore.cli import main as dealscore

    clients = small_crm.clients.assign(id=np.arange(len(small_crm.clients)), status="active",
                                       tier=np.where(np.arange(len(small_crm.clients)) % 2, "gold", "silver"))
    deals = small_crm.deals.assign(client_tier="deal-level")
    result, said = _train(deals, clients)
    spec = result.model.spec
    assert spec.client_extras == []
    assert "client_tier" in spec.categorical  # the deals' own column
    assert ("clients columns not trained on (a clients column X joins the deals as client_X): id (client_id is the "
            "client's own), status (client_status is a feature dealscore derives), tier (the deals have client_tier)"
            ) in said
    deals_csv, clients_csv = _csv(deals, tmp_path / "deals.csv"), _csv(clients, tmp_path / "clients.csv")
    assert dealscore(["train", "--deals", deals_csv, "--clients", clients_csv, "--out", str(tmp_path / "m")]) == 0
    assert dealscore(["score", "--model", str(tmp_path / "m"), "--deals", deals_csv, "--clients", clients_csv,
                      "--out", str(tmp_path / "s.csv")]) == 0, capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "s.csv")) == len(deals)


def test_deals_without_client_ids_train_beside_a_holdings_table(small_crm: SyntheticCRM) -> None:
    """The profile evaluation indexed deals by client_id: a deals file without one, given with holdings,
    crashed at the end of training (KeyError) instead of training without client history."""
    holdings = small_crm.holdings.drop(columns=["revenue"], errors="ignore")
    result, _ = _train(small_crm.deals.drop(columns=["client_id"]), small_crm.clients, holdings)
    assert not result.model.spec.has_client_history
    assert result.model.profiles is not None


def test_scoring_joins_only_the_clients_columns_the_model_was_trained_on(small_crm: SyntheticCRM) -> None:
    """Trained with the deals' own client_turnover (the clients table's turnover left out), a deals file
    without that column let the clients' turnover stand in for it when scored offline (44 of 50 p_win moved)."""
    from dealscore.offline import score_frame

    rng = np.random.default_rng(2)
    clients = small_crm.clients.assign(turnover=rng.lognormal(12, 1, len(small_crm.clients)))
    deals = small_crm.deals.assign(client_turnover=rng.lognormal(9, 1, len(small_crm.deals)))
    result, _ = _train(deals, clients)
    assert "client_turnover" in result.model.spec.numeric and result.model.spec.client_extras == []
    open_deals = deals[deals["status"] == "open"].head(50)
    without = score_frame(result.model, open_deals.drop(columns=["client_turnover"]), clients)
    empty = score_frame(result.model, open_deals.assign(client_turnover=np.nan), clients)
    np.testing.assert_array_equal(without["p_win"], empty["p_win"])


def test_an_extra_text_column_with_a_value_per_deal_is_said_to_be_like_an_id(small_crm: SyntheticCRM) -> None:
    """A per-deal reference column trained without a word, and every deal scored later listed it as unseen."""
    deals = small_crm.deals.assign(ref=[f"REF-{i:06d}" for i in range(len(small_crm.deals))])
    closed = int(deals["status"].isin(["won", "lost"]).sum())
    _, said = _train(deals, small_crm.clients)
    notes = [line for line in said if line.startswith("extra column ref")]
    assert notes == [f"extra column ref has {closed:,} different values in its {closed:,} closed deals (the commonest "
                     "in 1 deal; a value needs 20 to be learnt), like an id or a free-text note: no value "
                     "recurs, so it carries nothing to a later deal, and every deal scored with a new value shows "
                     "ref among its unseen inputs; exclude it (--exclude ref, or the mapping file's exclude) unless "
                     "its values are meant to recur"]
    # Excluded, it is not said again; text columns whose values recur (source, campaign_code) are never said.
    excluded = TrainConfig(threads=1, features=FeatureConfig(exclude=("ref",)))
    _, said = _train(deals, small_crm.clients, config=excluded)
    assert not any(line.startswith("extra column") for line in said)


def test_a_mostly_distinct_column_with_one_value_learnt_is_not_said_to_be_like_an_id() -> None:
    """id_like_columns: like an id is a column none of whose values recurs in min_level_count deals; one that
    does gets a code of its own, so the column carries something to a later deal (a reference column that is
    "none" for a tenth of the deals), however many other values it has."""
    from training.inputs import id_like_columns

    def found(repeated: int) -> list[str]:
        refs = [f"REF-{i}" for i in range(400 - repeated)] + ["none"] * repeated
        deals = pd.DataFrame({"status": ["won", "lost"] * 200, "ref": refs})
        return [like.column for like in id_like_columns(deals, ["ref"], min_level_count=20)]

    assert found(19) == ["ref"]  # 382 values in 400 deals, none in 20
    assert found(20) == []  # 381 values in 400 deals, one in 20: learnt


def test_a_column_excluded_twice_is_said_once() -> None:
    """`--exclude deal_id client_id deal_id client_id`: each column is named once in training's notes."""
    from training.inputs import exclusion_notes

    notes = exclusion_notes(["deal_id", "client_id", "deal_id", "client_id"])
    assert [note.split(":")[0] for note in notes] == ["--exclude client_id", "--exclude deal_id"]


def test_a_column_of_few_values_is_not_judged_like_an_id() -> None:
    """id_like_columns judges a column by at least `fewest` closed deals with a value: 19 distinct values are too
    few to tell an id from a column whose values have not recurred yet."""
    from training.inputs import id_like_columns

    def found(present: int) -> list[str]:
        deals = pd.DataFrame({"status": ["won", "lost"] * 20, "ref": [f"REF-{i}" for i in range(present)]
                              + [None] * (40 - present)})
        return [like.column for like in id_like_columns(deals, ["ref"], min_level_count=20, fewest=20)]

    assert found(19) == []
    assert found(20) == ["ref"]


def test_a_column_without_a_name_in_the_header_is_said(small_crm: SyntheticCRM, tmp_path: Path) -> None:
    """pandas names a blank header cell "Unnamed: N", and to_csv writes the row numbers first by default: such a
    column trained as the feature "Unnamed: 0" without a word (the degenerate-data audit)."""
    from model.sources import read_table

    small_crm.deals.to_csv(tmp_path / "deals.csv")  # with its row numbers, under no name
    deals = read_table(str(tmp_path / "deals.csv"), "deals")
    assert "Unnamed: 0" in deals.columns
    _, said = _train(deals, small_crm.clients)
    assert ("1 column without a name in the file's header, trained on as features: Unnamed: 0 (a file written with "
            "its row numbers has one first); name it in the file, or --exclude 'Unnamed: 0'") in said
    excluded = TrainConfig(threads=1, features=FeatureConfig(exclude=("Unnamed: 0",)))
    _, said = _train(deals, small_crm.clients, config=excluded)
    assert not any("without a name" in line for line in said)


def test_an_empty_column_without_a_name_is_not_said_to_be_trained_on(small_crm: SyntheticCRM, tmp_path: Path) -> None:
    """A trailing comma on every line of an export gives a header-less column with no value: training said it was
    "trained on as features" (name it, or --exclude it) beside "no value in any won or lost deal, trained on as if
    absent"."""
    from model.sources import read_table

    small_crm.deals.assign(**{"": np.nan}).to_csv(tmp_path / "deals.csv", index=False)
    deals = read_table(str(tmp_path / "deals.csv"), "deals")
    [blank] = [column for column in deals.columns if str(column).startswith("Unnamed: ")]
    _, said = _train(deals, small_crm.clients)
    assert not any("without a name" in line for line in said)
    assert any("no value in any won or lost deal" in line and blank in line for line in said)


def test_a_holdout_mostly_of_the_fitted_deals_day_is_said_not_to_be_later(small_crm: SyntheticCRM) -> None:
    """An export whose deals all carry one created_at (a CRM migration stamps its import day) trained with a
    "time-ordered" holdout split by deal_id within that day, and without a word: its figures are no test on
    later deals."""
    deals = small_crm.deals.assign(created_at=pd.Timestamp("2025-06-02"))
    deals["closed_at"] = deals["closed_at"].where(deals["closed_at"].isna(), pd.Timestamp("2025-06-20"))
    result, said = _train(deals, small_crm.clients)
    holdout = result.metadata["metrics"]["model"]["deals"]
    assert (f"{holdout:,} of the holdout's {holdout:,} deals were created on or before 2025-06-02, the day of the "
            "latest deal the model is fitted on") in "\n".join(said)
    # Spread over time as deals are, the holdout's first day may share a few deals with the fit: not said.
    _, said = _train(small_crm.deals, small_crm.clients)
    assert not any("of the holdout's" in line for line in said)
