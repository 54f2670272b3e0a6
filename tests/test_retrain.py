"""The monthly retrain through the command line: the first model, a worse candidate refused (exit 3), a
better one published, --force recorded, rollback, validation stopping everything before training; and
the gate's pieces (window choice, checks, PSI) on their own."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from dealscore import cli
from dealscore.registry_commands import EXIT_REFUSED, add_registry_commands, format_table
from model.artifact import MODEL_FILE
from model.registry import Registry
from training.retrain import (
    RetrainConfig,
    auc_upper_bound,
    choose_window,
    drift_level,
    gate_checks,
    inverted_auc_limit,
    outcomes_against_live,
    population_stability_index,
    render_markdown,
)
from training.synthetic_crm import CSV_OPTIONS, SyntheticCRM, export_as_of, generate, write

THREADS = ["--threads", "1"]  # OpenMP threads sharing busy cores make fitting many times slower


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """dealscore.cli.main with the registry commands wired in (a no-op once cli.py wires them itself)."""
    original = cli.build_parser

    def build() -> argparse.ArgumentParser:
        parser = original()
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "retrain" not in commands.choices:
            add_registry_commands(commands)
        return parser

    out, err = io.StringIO(), io.StringIO()
    cli.build_parser = build
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    finally:
        cli.build_parser = original
    return code, out.getvalue(), err.getvalue()


def shuffled_labels(deals: pd.DataFrame, before: str) -> pd.DataFrame:
    """Won/lost shuffled among the closed deals created before `before`: a candidate fitted on it is worse;
    the latest deals, which the gate compares on, keep their true outcomes."""
    out = deals.copy()
    rows = (out["status"] != "open") & (out["created_at"] < pd.Timestamp(before))
    out.loc[rows, "status"] = np.random.default_rng(0).permutation(out.loc[rows, "status"].to_numpy())
    return out


@dataclass
class Step:
    code: int
    out: str
    err: str
    manifest: dict[str, Any]


@dataclass
class GateRun:
    root: Path
    data: Path
    first: Step
    worse: Step
    better: Step


@pytest.fixture(scope="session")
def crm() -> SyntheticCRM:
    return generate(seed=5, n_deals=4_000)


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory, crm: SyntheticCRM) -> Path:
    folder = tmp_path_factory.mktemp("crm")
    write(crm, folder / "full")
    export_as_of(crm, date(2024, 12, 31)).deals.to_csv(folder / "last_year.csv", **CSV_OPTIONS)
    shuffled_labels(crm.deals, "2025-03-01").to_csv(folder / "shuffled.csv", **CSV_OPTIONS)
    return folder


def retrain_args(root: Path, data: Path, deals: str, *extra: str) -> list[str]:
    full = data / "full"
    return ["retrain", "--registry", str(root), "--deals", str(deals), "--clients", str(full / "clients.csv"),
            "--holdings", str(full / "holdings.csv"), *THREADS, *extra]


@pytest.fixture(scope="session")
def gate_run(tmp_path_factory: pytest.TempPathFactory, data: Path) -> GateRun:
    """Three monthly runs on one registry: last year's export, then a worse candidate, then a better one."""
    root = tmp_path_factory.mktemp("gate") / "registry"

    def step(deals: Path) -> Step:
        code, out, err = run_cli(retrain_args(root, data, str(deals)))
        return Step(code, out, err, json.loads((root / "manifest.json").read_text()))

    first = step(data / "last_year.csv")
    worse = step(data / "shuffled.csv")
    better = step(data / "full" / "deals.csv")
    return GateRun(root, data, first, worse, better)


def comparison(root: Path, version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "versions" / version / "comparison.json").read_text())
    return data


def test_the_first_model_is_published_as_such(gate_run: GateRun) -> None:
    step = gate_run.first
    assert step.code == 0, step.err
    [event] = step.manifest["history"]
    assert (event["action"], event["from"], event["reason"]) == ("publish", None, "first model")
    assert step.manifest["live"] == event["version"]
    assert "PUBLISHED: first model" in step.out
    # A mistyped path would look the same: the creation is said where a cron log keeps it.
    assert f"no model registry at {gate_run.root} yet: creating one" in step.err
    assert "creating one" not in gate_run.worse.err


def test_a_worse_candidate_is_refused_and_the_live_model_stays(gate_run: GateRun) -> None:
    step, live = gate_run.worse, gate_run.first.manifest["live"]
    assert step.code == EXIT_REFUSED, step.err
    assert step.manifest["live"] == live
    event = step.manifest["history"][-1]
    assert (event["action"], event["from"]) == ("refused", live)
    assert event["reason"].startswith(f"candidate is worse than the live model {live}: AUC")
    assert f"not published, {live} stays live" in step.err
    report = comparison(gate_run.root, event["version"])  # kept in the refused version's folder
    assert report["decision"]["published"] is False
    auc, _, outcomes = report["decision"]["checks"]  # the outcomes rule applies: the live model ranked its holdout
    assert auc["name"] == "auc" and not auc["passed"]
    assert outcomes["name"] == "outcomes" and outcomes["passed"]  # a worse candidate, not outcomes run against
    assert report["metrics"]["candidate"]["auc"] < 0.6 < 0.7 < report["metrics"]["live"]["auc"]
    assert "NOT PUBLISHED" in (gate_run.root / "versions" / event["version"] / "comparison.md").read_text()
    assert "NO" in step.out and "NOT PUBLISHED" in step.out


def test_a_better_candidate_is_published_with_its_comparison(gate_run: GateRun) -> None:
    step, live = gate_run.better, gate_run.first.manifest["live"]
    assert step.code == 0, step.err
    event = step.manifest["history"][-1]
    assert (event["action"], event["from"], event["forced"]) == ("publish", live, False)
    assert step.manifest["live"] == event["version"]
    report = comparison(gate_run.root, event["version"])
    window = report["comparison"]
    # Last year's model was fitted on deals up to 2024-12-31; the candidate's holdout starts later:
    # both are judged on deals neither saw, and the gate model saw only deals before the window.
    assert window["mode"] == "after_live_training" and not window["live_in_sample"]
    assert window["from"] > "2024-12-31" and window["closed_deals"] >= 200
    # The window ends at the latest compared deal, not at the open deals created after it.
    deals = pd.read_csv(gate_run.data / "full" / "deals.csv", parse_dates=["created_at"])
    compared = deals[(deals["status"] != "open") & (deals["created_at"] >= pd.Timestamp(window["from"]))]
    assert window["to"] == str(compared["created_at"].max().date()) < str(deals["created_at"].max().date())
    # The gate model, the candidate's stand-in trained as the live one was, saw only deals created before them.
    before_window = int((deals["created_at"] < pd.Timestamp(window["from"])).sum())
    assert report["comparison"]["gate_model"]["deals"] == before_window
    candidate, live_metrics = report["metrics"]["candidate"], report["metrics"]["live"]
    assert candidate["deals"] == live_metrics["deals"] == window["closed_deals"]
    assert candidate["auc"] >= live_metrics["auc"] - 0.01
    assert all(check["passed"] for check in report["decision"]["checks"])
    shift = report["grade_shift"]
    assert sum(map(sum, shift["matrix"])) == window["closed_deals"] and shift["labels"] == ["A", "B", "C", "D"]
    drift = report["drift"]
    assert drift["p_win"]["psi"] >= 0 and {r["source"] for r in drift["features"]} == {"input", "history", "calendar"}
    assert all(r["psi"] >= 0 for r in drift["features"])
    markdown = (gate_run.root / "versions" / event["version"] / "comparison.md").read_text()
    for part in ("**Decision: PUBLISHED.**", "| auc |", "live (rows) to candidate (columns)", "| amount | input"):
        assert part in markdown
    assert "AUC" in step.out and "PUBLISHED: candidate is not worse" in step.out


def test_models_commands_show_the_registry(gate_run: GateRun) -> None:
    root = str(gate_run.root)
    first, worse, better = (s.manifest["history"][-1]["version"] for s in (gate_run.first, gate_run.worse,
                                                                             gate_run.better))
    code, out, _ = run_cli(["models", "list", "--registry", root])
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["version", "status", "trained"]
    assert [line.split()[:2] for line in lines[2:5]] == [[better, "live"], [worse, "refused"], [first, "previous"]]
    code, out, _ = run_cli(["models", "show", "live", "--registry", root])
    assert code == 0 and "checksums and library versions verified" in out and better in out
    assert re.search(r"grades\s+A from EV [\d,]+, B from [\d,]+", out)
    code, out, _ = run_cli(["models", "diff", first, better, "--registry", root])
    assert code == 0 and "last deal" in out and "2024-12-31" in out and "2025-12-31" in out
    code, out, _ = run_cli(["models", "history", "--registry", root])
    assert code == 0 and [line.split()[2] for line in out.splitlines()[2:]] == ["publish", "refused", "publish"]
    code, _, err = run_cli(["models", "show", "nope", "--registry", root])
    assert code == 2 and "nope is not in the model registry" in err


def test_models_list_says_what_a_hand_edited_registry_holds(gate_run: GateRun, tmp_path: Path) -> None:
    """An ops review: the list named a pruned version as the rollback target, showed a live version the registry
    does not hold without a word, and listed swapped folders each with the other's figures."""
    first, worse = (s.manifest["history"][-1]["version"] for s in (gate_run.first, gate_run.worse))
    root = shutil.copytree(gate_run.root, tmp_path / "registry")
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["versions"] = [v for v in manifest["versions"] if v["version"] != first]  # the previous one gone
    manifest_path.write_text(json.dumps(manifest))
    code, out, _ = run_cli(["models", "list", "--registry", str(root)])
    assert code == 0 and f"rollback would return to: nothing: {first}, live before, is no longer stored" in out
    code, _, err = run_cli(["models", "rollback", "--registry", str(root)])
    assert code != 0 and f"cannot roll back to {first}: it is not among the stored versions" in err
    versions = root / "versions"
    better = Registry(root).live_version() or ""
    (versions / better).rename(versions / "swap")
    (versions / worse).rename(versions / better)
    (versions / "swap").rename(versions / worse)
    code, out, _ = run_cli(["models", "list", "--registry", str(root)])
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[2:4]}
    assert rows == {better: ["holds", worse], worse: ["holds", better]}, out
    manifest = json.loads(manifest_path.read_text())
    manifest["live"] = "20990101T000000-deadbeef"
    manifest_path.write_text(json.dumps(manifest))
    code, out, _ = run_cli(["models", "list", "--registry", str(root)])
    assert "live: 20990101T000000-deadbeef (NOT STORED" in out


def test_rollback_returns_to_the_previous_live_model(gate_run: GateRun, tmp_path: Path) -> None:
    root = shutil.copytree(gate_run.root, tmp_path / "registry")
    first = gate_run.first.manifest["live"]
    code, out, _ = run_cli(["models", "rollback", "--registry", str(root), "--reason", "complaints"])
    assert code == 0 and f"{first} is live again" in out
    assert Registry(root).live_version() == first and Registry(root).history()[-1].reason == "complaints"
    code, _, err = run_cli(["models", "rollback", "--registry", str(root)])
    assert code == 2 and "nothing to roll back to" in err


def test_force_publishes_over_the_gate_and_says_so(gate_run: GateRun, tmp_path: Path) -> None:
    """The live model is damaged, so the gate cannot compare and refuses; --force publishes anyway."""
    root = shutil.copytree(gate_run.root, tmp_path / "registry")
    live = Registry(root).live_version()
    assert live is not None
    model_file = root / "versions" / live / MODEL_FILE
    model_file.write_bytes(model_file.read_bytes()[:-10])
    code, out, err = run_cli(retrain_args(root, gate_run.data, str(gate_run.data / "full" / "deals.csv"), "--force",
                                          "--note", "live artifact corrupted on disk"))
    assert code == 0, err
    event = Registry(root).history()[-1]
    assert (event.action, event.previous, event.forced) == ("publish", live, True)
    assert event.reason.startswith(f"forced despite the gate: the live model {live} cannot be loaded")
    assert event.reason.endswith("(note: live artifact corrupted on disk)")
    assert "PUBLISHED (forced)" in out
    assert comparison(root, event.version or "")["decision"]["forced"] is True


def test_an_export_without_an_input_of_the_live_model_is_refused(gate_run: GateRun, tmp_path: Path) -> None:
    """The live model was scored without the columns the export lost, judged on degraded data, and a worse
    candidate passed it (the ops audit: AUC 0.842 passed a degraded live 0.845, which scored 0.855 whole)."""
    root = shutil.copytree(gate_run.root, tmp_path / "registry")
    live = Registry(root).live_version()
    deals = pd.read_csv(gate_run.data / "full" / "deals.csv", dtype=str, keep_default_na=False)
    assert {"source", "campaign_code"} <= set(deals.columns)
    deals.drop(columns=["source", "campaign_code"]).to_csv(tmp_path / "deals.csv", **CSV_OPTIONS)
    code, out, err = run_cli(retrain_args(root, gate_run.data, str(tmp_path / "deals.csv")))
    assert code == 3, err
    event = Registry(root).history()[-1]
    assert event.action == "refused" and Registry(root).live_version() == live
    assert event.reason.startswith(f"the new data lack 2 input column(s) the live model {live} uses: ")
    assert "source" in event.reason and "campaign_code" in event.reason and "NOT PUBLISHED" in out
    assert sorted(comparison(root, event.version or "")["comparison"]["live_inputs_missing"]) == [
        "campaign_code", "source"]


def test_closed_deals_that_link_no_client_are_refused_as_their_columns_gone(gate_run: GateRun, tmp_path: Path) -> None:
    """Client ids that changed form between the files ("312" in the deals, "C00312" in the clients table) left every
    client attribute empty; the live model, judged without them, lost to a candidate fitted without them, and the
    candidate was published, exit 0 (an input review)."""
    root = shutil.copytree(gate_run.root, tmp_path / "registry")
    live = Registry(root).live_version()
    # The closed deals' ids changed form; the open ones kept theirs, so only they link (training drops a column
    # no closed deal fills, whatever the open deals hold: the diff review).
    deals = pd.read_csv(gate_run.data / "full" / "deals.csv", dtype=str, keep_default_na=False)
    closed = deals["status"].isin(["won", "lost"])
    assert (~closed).any()
    deals.loc[closed, "client_id"] = deals.loc[closed, "client_id"].str.lstrip("C0")
    deals.to_csv(tmp_path / "deals.csv", **CSV_OPTIONS)
    code, out, err = run_cli(["retrain", "--registry", str(root), "--deals", str(tmp_path / "deals.csv"),
                              "--clients", str(gate_run.data / "full" / "clients.csv"),
                              "--holdings", str(gate_run.data / "full" / "holdings.csv"), *THREADS])
    assert code == 3, err
    event = Registry(root).history()[-1]
    assert event.action == "refused" and Registry(root).live_version() == live
    compared = comparison(root, event.version or "")["comparison"]
    assert {"industry", "size", "region"} <= set(compared["live_inputs_empty"])
    assert compared["live_inputs_missing"] == [] and "industry (empty in every closed deal)" in event.reason
    assert "do the client ids match between the deals and the clients table?" in event.reason


def test_a_retrain_without_the_holdings_the_live_profiles_were_fitted_on_is_refused(gate_run: GateRun,
                                                                                    tmp_path: Path) -> None:
    """Left out, the candidate's profiles were read off won deals and published, exit 0 and no word of it: its
    gap lists rested on a third of the holdings (the new-user review)."""
    root = shutil.copytree(gate_run.root, tmp_path / "registry")
    live = Registry(root).live_version()
    args = retrain_args(root, gate_run.data, str(gate_run.data / "full" / "deals.csv"))
    at = args.index("--holdings")
    code, out, err = run_cli(args[:at] + args[at + 2:])
    assert code == 3, err
    event = Registry(root).history()[-1]
    assert event.action == "refused" and Registry(root).live_version() == live
    assert event.reason.startswith(f"the live model {live}'s ideal profiles (gap lists, potential income) were "
                                   "fitted on a holdings table, and this retrain was given none (--holdings): the "
                                   "candidate's are read off won deals (")
    assert comparison(root, event.version or "")["comparison"]["live_holdings_missing"] is True
    profiles = json.loads((root / "versions" / (event.version or "") / "metadata.json").read_text())["profiles"]
    assert (profiles["holdings_source"], profiles["income_source"]) == ("won deals", "won deal amounts")


def test_outcomes_that_turn_the_live_model_upside_down_are_not_published(gate_run: GateRun, tmp_path: Path) -> None:
    """An ops review: won and lost swapped in the export's latest months only. The gate model is fitted on the
    live model's own training deals, so both were judged on the swapped outcomes alike, and the candidate, fitted
    on them, was published as "not worse" with exit 0."""
    root = tmp_path / "registry"
    code, _, err = run_cli(retrain_args(root, gate_run.data, str(gate_run.data / "last_year.csv")))
    assert code == 0, err
    live = Registry(root).live_version()
    deals = pd.read_csv(gate_run.data / "full" / "deals.csv", dtype=str, keep_default_na=False)
    recent = deals["created_at"] >= "2025-01-01"
    deals.loc[recent, "status"] = deals.loc[recent, "status"].map({"won": "lost", "lost": "won"}).fillna(
        deals.loc[recent, "status"])
    deals.to_csv(tmp_path / "swapped.csv", **CSV_OPTIONS)
    code, out, err = run_cli(retrain_args(root, gate_run.data, str(tmp_path / "swapped.csv")))
    assert code == EXIT_REFUSED, err
    registry = Registry(root)
    event = registry.history()[-1]
    assert event.action == "refused" and registry.live_version() == live
    assert "the compared deals' outcomes run against the live model" in event.reason, event.reason
    assert "worse than chance" in event.reason and "NOT PUBLISHED" in out
    assert re.search(r"^outcomes\s+0\.\d+\s+live AUC above .*\bNO$", out, re.MULTILINE), out  # in the table
    report = comparison(root, event.version or "")
    assert report["comparison"]["mode"] == "after_live_training" and report["comparison"]["outcomes_against_live"]
    assert [c["name"] for c in report["decision"]["checks"]] == ["auc", "ece", "outcomes"]
    # Forced, the record says what was forced over, and nothing that contradicts the publish (the diff review).
    code, out, err = run_cli(retrain_args(root, gate_run.data, str(tmp_path / "swapped.csv"), "--force",
                                          "--note", "checked"))
    assert code == 0, err
    forced = Registry(root).history()[-1]
    assert forced.forced and forced.reason.startswith("forced despite the gate: the compared deals' outcomes run")
    assert "not published" not in forced.reason
    # The same months with their true outcomes pass (the gate_run's "better" step is that export).
    assert gate_run.better.code == 0


def test_an_export_whose_outcomes_no_model_can_rank_is_not_published(gate_run: GateRun, tmp_path: Path) -> None:
    """An ops review: every closed deal's won/lost shuffled. Both models ranked the compared deals at chance, so the
    candidate was "not worse" (on the demo CRM AUC 0.494 against 0.487) and was published with exit 0 over a model
    whose holdout AUC was 0.816; the service then served a model whose own report said its ranking cannot be told
    from chance. This shuffle was published so too (AUC 0.477 against the live model's 0.478)."""
    root = tmp_path / "registry"
    code, _, err = run_cli(retrain_args(root, gate_run.data, str(gate_run.data / "last_year.csv")))
    assert code == 0, err
    live = Registry(root).live_version()
    deals = pd.read_csv(gate_run.data / "full" / "deals.csv", dtype=str, keep_default_na=False)
    closed = deals["status"] != "open"
    deals.loc[closed, "status"] = np.random.default_rng(3).permutation(deals.loc[closed, "status"].to_numpy())
    deals.to_csv(tmp_path / "shuffled_all.csv", **CSV_OPTIONS)
    code, out, err = run_cli(retrain_args(root, gate_run.data, str(tmp_path / "shuffled_all.csv")))
    assert code == EXIT_REFUSED, out + err
    registry = Registry(root)
    event = registry.history()[-1]
    assert event.action == "refused" and registry.live_version() == live
    assert event.reason.startswith("the candidate ranks its own holdout no better than chance"), event.reason
    assert "NOT PUBLISHED: the candidate ranks its own holdout" in out
    assert comparison(root, event.version or "")["comparison"]["candidate_at_chance"]


def test_a_live_model_below_chance_stops_the_publish_only_when_it_once_ranked() -> None:
    config = RetrainConfig()
    assert outcomes_against_live(0.143, 80, 140, 0.79, config)
    assert not outcomes_against_live(0.143, 80, 140, 0.55, config)  # a weak model's inversion says little
    assert not outcomes_against_live(0.47, 40, 60, 0.79, config)  # within chance of 0.5 on 100 deals
    assert not outcomes_against_live(0.57, 3000, 6000, 0.72, config)  # drift: towards chance, not beyond
    # Just below chance on a large window is still drift, not an inversion (the diff review: significance alone
    # refused holdout 0.62 -> 0.47 on 3,000 deals); halfway to the mirror image is the line.
    assert not outcomes_against_live(0.47, 900, 2100, 0.62, config)
    assert inverted_auc_limit(0.79) == pytest.approx(0.355) and inverted_auc_limit(0.62) == pytest.approx(0.44)
    assert outcomes_against_live(0.42, 900, 2100, 0.62, config)
    assert not outcomes_against_live(0.143, 80, 140, None, config)  # a live model without holdout figures
    assert auc_upper_bound(0.5, 500, 500) == pytest.approx(0.5 + 1.96 * 0.0183, abs=0.001)


def test_a_clients_table_without_an_attribute_of_the_live_model_is_refused(gate_run: GateRun,
                                                                          tmp_path: Path) -> None:
    """The live model fills a known client's attributes and first-contract date from its own record, so the gate
    let such an export through: the candidate, fitted without `industry` (or `since`), lost every feature built
    on it and was published whenever it passed the other checks (the new-user audit saw one published with
    `--auc-tolerance 0.05`)."""
    root = shutil.copytree(gate_run.root, tmp_path / "registry")
    live = Registry(root).live_version()
    clients = pd.read_csv(gate_run.data / "full" / "clients.csv", dtype=str, keep_default_na=False)
    clients.drop(columns=["industry", "since"]).to_csv(tmp_path / "clients.csv", **CSV_OPTIONS)
    args = retrain_args(root, gate_run.data, str(gate_run.data / "full" / "deals.csv"), "--auc-tolerance", "0.05")
    args[args.index("--clients") + 1] = str(tmp_path / "clients.csv")
    code, out, err = run_cli(args)
    assert code == 3, err
    event = Registry(root).history()[-1]
    assert event.action == "refused" and Registry(root).live_version() == live
    assert event.reason.startswith(f"the new data lack 2 input column(s) the live model {live} uses: industry, "
                                   "since;")
    assert comparison(root, event.version or "")["comparison"]["live_inputs_missing"] == ["industry", "since"]


def test_a_registry_that_cannot_be_written_stops_the_retrain_before_training(gate_run: GateRun,
                                                                            tmp_path: Path) -> None:
    """A read-only registry was found only when the candidate was stored, minutes later, as an 'unexpected
    failure' naming no path; the gate's decision was lost with the run."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, out, err = run_cli(retrain_args(blocker / "registry", gate_run.data, str(gate_run.data / "last_year.csv")))
    assert code == 2, err
    assert f"model registry at {blocker / 'registry'} cannot be written" in err and "write access" in err
    assert "training" not in out + err


def test_models_show_reports_a_damaged_comparison_instead_of_crashing(gate_run: GateRun, tmp_path: Path) -> None:
    root = shutil.copytree(gate_run.root, tmp_path / "registry")
    live = Registry(root).live_version()
    (root / "versions" / str(live) / "comparison.json").write_text("garbage")
    code, out, err = run_cli(["models", "show", "live", "--registry", str(root)])
    assert code == 0, err
    assert "comparison.json is unreadable (JSONDecodeError" in out and "does not match its checksum" in out


def test_publishing_a_refused_version_by_hand_names_the_gates_reason(gate_run: GateRun, tmp_path: Path) -> None:
    root = shutil.copytree(gate_run.root, tmp_path / "registry")
    refused = gate_run.worse.manifest["history"][-1]["version"]
    code, out, err = run_cli(["models", "publish", refused, "--registry", str(root)])
    assert code == 0, err
    assert f"{refused} is live" in out
    assert f"note: the retrain gate had refused {refused}: candidate is worse than the live model" in err
    # A version the gate published says nothing of the kind when published again by hand.
    code, out, err = run_cli(["models", "publish", gate_run.better.manifest["live"], "--registry", str(root)])
    assert code == 0 and "gate" not in err, err


def test_a_refusal_on_deals_the_live_model_saw_says_so(gate_run: GateRun, tmp_path: Path) -> None:
    """The same export again (the live model's data end where the new data end): the live model is judged on
    deals it was fitted on. A refusal there was worded "candidate is worse" and the stale export was named
    only in comparison.md; the cron log blamed the model."""
    root = shutil.copytree(gate_run.root, tmp_path / "registry")
    code, out, err = run_cli(retrain_args(root, gate_run.data, str(gate_run.data / "full" / "deals.csv"),
                                          "--keep-last", "1"))
    event = Registry(root).history()[-2]  # then the pruning
    window = comparison(root, event.version or "")["comparison"]
    assert window["live_in_sample"] and window["live_fitted_share"] == 1.0
    # --keep-last 1 keeps the latest version (this refused one), the live one and the one before it.
    worse = gate_run.worse.manifest["history"][-1]["version"]
    assert Registry(root).history()[-1].action == "prune"
    assert set(Registry(root).versions()) == {
        event.version, gate_run.better.manifest["live"], gate_run.first.manifest["live"]}
    assert worse not in Registry(root).versions()
    assert "the live model was fitted on 100% of them" in out
    assert code == 3, err
    assert event.reason.startswith("candidate not shown as good as the live model") and "in-sample" in event.reason
    assert event.reason.endswith("is the export stale?") and "is the export stale?" in err


def test_invalid_data_stops_the_retrain_before_training(gate_run: GateRun, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, crm: SyntheticCRM) -> None:
    import training.retrain

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("training started on invalid data")

    monkeypatch.setattr(training.retrain, "train", no_training)
    root = shutil.copytree(gate_run.root, tmp_path / "registry")
    listing = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    manifest = (root / "manifest.json").read_bytes()
    bad = crm.deals.head(300).copy()
    bad["status"] = bad["status"].astype(object)
    bad.loc[bad.index[:3], "status"] = "maybe"
    bad.loc[bad.index[5], "amount"] = -10.0
    bad.to_csv(tmp_path / "bad.csv", **CSV_OPTIONS)
    code, out, err = run_cli(retrain_args(root, gate_run.data, str(tmp_path / "bad.csv")))
    assert code == 2 and out == ""
    assert "deals.status" in err and "deals.amount" in err  # every problem listed, not the first
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == listing
    assert (root / "manifest.json").read_bytes() == manifest


def test_the_models_commands_need_an_existing_registry(tmp_path: Path) -> None:
    code, _, err = run_cli(["models", "list", "--registry", str(tmp_path / "none")])
    assert code == 2 and "no model registry at" in err
    assert not (tmp_path / "none").exists()


# -- the gate's pieces -------------------------------------------------------------------------------------


def test_gate_checks() -> None:
    config = RetrainConfig(auc_tolerance=0.01, ece_limit=0.03, ece_margin=0.005)
    live = {"auc": 0.80, "ece": 0.02}
    assert [c.passed for c in gate_checks({"auc": 0.795, "ece": 0.03}, live, config)] == [True, True]
    assert [c.passed for c in gate_checks({"auc": 0.78, "ece": 0.04}, live, config)] == [False, False]
    assert not gate_checks({"auc": float("nan"), "ece": 0.0}, live, config)[0].passed
    # A drifted live model far above the limit: a candidate no worse than it is not refused for calibration...
    assert gate_checks({"auc": 0.8, "ece": 0.09}, {"auc": 0.8, "ece": 0.10}, config)[1].passed
    # ... and on few deals, ECE within what chance alone gives a calibrated model passes.
    assert gate_checks({"auc": 0.8, "ece": 0.05}, live, config, ece_chance=0.06)[1].passed
    assert not gate_checks({"auc": 0.8, "ece": 0.07}, live, config, ece_chance=0.06)[1].passed
    # The margin over a drifted live model's ECE: a hair worse calibrated passes, more than the margin does not.
    assert gate_checks({"auc": 0.8, "ece": 0.103}, {"auc": 0.8, "ece": 0.10}, config)[1].passed
    assert not gate_checks({"auc": 0.8, "ece": 0.106}, {"auc": 0.8, "ece": 0.10}, config)[1].passed
    # AUC exactly the tolerance below the live model's passes (binary fractions: no rounding at the edge).
    assert gate_checks({"auc": 0.5, "ece": 0.0}, {"auc": 0.75, "ece": 0.0},
                       RetrainConfig(auc_tolerance=0.25))[0].passed


def test_the_gates_documented_defaults() -> None:
    """docs/operations.md: AUC within 0.01 of the live model's, ECE within 0.005 of it or under 0.03."""
    config = RetrainConfig()
    assert (config.auc_tolerance, config.ece_margin) == (0.01, 0.005)
    live = {"auc": 0.80, "ece": 0.10}
    assert [c.passed for c in gate_checks({"auc": 0.7905, "ece": 0.1049}, live, config)] == [True, True]
    assert [c.passed for c in gate_checks({"auc": 0.7895, "ece": 0.1051}, live, config)] == [False, False]


def test_drift_levels() -> None:
    """docs/operations.md: a population stability index under 0.1 is stable, from 0.25 a major shift."""
    assert [drift_level(v) for v in (0.05, 0.1, 0.2, 0.25, 0.3, float("nan"))] == [
        "stable", "moderate", "moderate", "major", "major", "n/a"]


def test_population_stability_index() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=5_000)
    assert population_stability_index(reference, rng.normal(size=5_000)) < 0.02
    assert population_stability_index(reference, rng.normal(loc=1.0, size=5_000)) > 0.25
    missing = np.where(rng.random(5_000) < 0.5, np.nan, rng.normal(size=5_000))
    assert population_stability_index(reference, missing) > 0.25  # missing values are a bin of their own
    codes = rng.integers(0, 4, size=2_000).astype(float)
    assert population_stability_index(codes, codes, categorical=True) == pytest.approx(0.0)
    assert population_stability_index(codes, np.full(2_000, 3.0), categorical=True) > 0.25
    assert np.isnan(population_stability_index(reference, np.empty(0)))


def _window(created: list[str], won: list[int], live_end: str | None, holdout_from: str,
            minimum: int = 3) -> Any:
    days = pd.Series(pd.to_datetime(created))
    meta = {"data": {"last_deal": live_end}} if live_end else {}
    return choose_window(days, np.ones(len(created), dtype=bool), np.asarray(won, dtype=np.float64),
                         date.fromisoformat(holdout_from), meta, RetrainConfig(min_comparison_deals=minimum))


def test_the_window_starts_after_the_live_models_data_when_it_can() -> None:
    created = ["2025-01-10", "2025-02-10", "2025-03-10", "2025-04-10", "2025-05-10", "2025-06-10"]
    won = [1, 0, 1, 0, 1, 0]
    # Live data end before the candidate's holdout: the holdout is unseen by both.
    window = _window(created, won, "2024-12-31", "2025-03-01")
    assert (window.start, window.mode, window.live_in_sample) == (date(2025, 3, 1), "after_live_training", False)
    # Live data end inside the holdout: start the day after, if enough deals remain.
    window = _window(created, won, "2025-03-31", "2025-03-01")
    assert (window.start, window.mode, window.live_in_sample) == (date(2025, 4, 1), "after_live_training", False)
    # Too few deals after the live model's data: the candidate's holdout, flagged as favouring the live model.
    window = _window(created, won, "2025-04-30", "2025-03-01")
    assert (window.start, window.mode, window.live_in_sample) == (date(2025, 3, 1), "candidate_holdout", True)
    assert "only 2 closed deals" in window.note and "in-sample advantage" in window.note
    # The live model's metadata does not say: the same fallback.
    window = _window(created, won, None, "2025-03-01")
    assert window.mode == "candidate_holdout" and "does not say" in window.note


def test_tables_align_numbers_right() -> None:
    table = format_table(["name", "auc", "note"], [["live", 0.8123, "ok"], ["candidate", 0.79, None]])
    header, rule, live, candidate = table.splitlines()
    assert live.index("0.812") == candidate.index("0.790") and rule.startswith("---------  -----")
    assert header.split() == ["name", "auc", "note"]


@pytest.mark.parametrize(("setting", "value"), [
    ("auc_tolerance", float("nan")), ("auc_tolerance", -0.01), ("ece_margin", float("inf")), ("ece_limit", 0.0),
    ("ece_limit", 1.5), ("min_comparison_deals", 0), ("keep_last", 0), ("psi_bins", 2.5),
])
def test_a_gate_setting_out_of_range_is_refused(setting: str, value: float) -> None:
    """A NaN tolerance made every comparison false: nothing would ever be published, with no word why."""
    with pytest.raises(ValueError, match=f"^{setting} must be"):
        RetrainConfig(**{setting: value})


def test_the_retrain_command_refuses_a_nan_tolerance_as_bad_input(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["retrain", "--registry", str(tmp_path / "registry"), "--deals", str(tmp_path / "none.csv"),
                     "--auc-tolerance", "nan"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--auc-tolerance: auc_tolerance must be a number from 0" in err


def test_an_input_column_gone_from_the_export_stops_a_candidate_that_passes_every_check(
        crm: SyntheticCRM, tmp_path: Path) -> None:
    """The live model used an extra column (noise here, so losing it costs it little); the new export lacks it.
    The candidate passes the checks against the degraded live model, and the gate still refuses."""
    from model.dataset import dataset_from_frames
    from training.fit import TrainConfig
    from training.retrain import retrain

    def dataset(deals: pd.DataFrame) -> Any:
        return dataset_from_frames(deals, crm.clients, crm.holdings, for_training=True)

    first = export_as_of(crm, date(2024, 12, 31)).deals.copy()
    first["region_code"] = np.random.default_rng(0).integers(0, 5, len(first)).astype(float)
    registry = Registry(tmp_path / "registry")
    live = retrain(registry, dataset(first), TrainConfig(threads=1)).version
    outcome = retrain(registry, dataset(crm.deals), TrainConfig(threads=1))
    assert all(check.passed for check in outcome.checks)
    assert not outcome.published and registry.live_version() == live
    assert outcome.reason.startswith(f"the new data lack 1 input column(s) the live model {live} uses: region_code")


def test_a_live_model_changed_during_the_retrain_refuses_the_gates_decision(gate_run: GateRun, crm: SyntheticCRM,
                                                                             tmp_path: Path) -> None:
    """Ops roll the live model back while a retrain prepares its candidate: the decision was taken against a
    model that is no longer live, so nothing is stored or published over the rollback."""
    from model.dataset import dataset_from_frames
    from model.registry import LiveVersionChanged
    from training.fit import TrainConfig
    from training.retrain import retrain

    registry = Registry(shutil.copytree(gate_run.root, tmp_path / "registry"))
    before = registry.live_version()

    def rolling_back(step: str) -> None:
        if step.startswith("storing"):
            registry.rollback("ops rolled back meanwhile")

    with pytest.raises(LiveVersionChanged):
        retrain(registry, dataset_from_frames(crm.deals, crm.clients, crm.holdings, for_training=True),
                TrainConfig(threads=1), progress=rolling_back)
    assert registry.live_version() == gate_run.first.manifest["live"] != before
    assert registry.history()[-1].action == "rollback"


def test_the_ece_a_calibrated_model_shows_by_chance_is_exceeded_by_one_draw_in_twenty() -> None:
    from model.metrics import ece_by_chance, expected_calibration_error

    p = np.random.default_rng(1).uniform(0.05, 0.6, 300)
    allowed = ece_by_chance(p, 200)["p95"]
    rng = np.random.default_rng(7)  # other draws than the gate's own
    draws = [expected_calibration_error((rng.random(p.size) < p).astype(np.float64), p) for _ in range(2000)]
    assert 0.02 <= float(np.mean(np.array(draws) > allowed)) <= 0.09


def test_a_window_of_deals_all_won_falls_back_to_the_candidates_holdout() -> None:
    # Three deals after the live model's data, all won: no AUC can be measured on them.
    created = ["2025-01-10", "2025-02-10", "2025-03-10", "2025-04-10", "2025-05-10", "2025-06-10"]
    window = _window(created, [1, 0, 1, 1, 1, 1], "2025-03-31", "2025-03-01")
    assert (window.start, window.mode) == (date(2025, 3, 1), "candidate_holdout")


def test_the_live_models_fitted_share_counts_the_deals_it_was_fitted_on() -> None:
    """Counted by creation day, a deal still open when the live model was trained read as fitted on: a retrain
    on the outcomes the service collected since said 100% where the truth was 0% (the ops audit)."""
    from types import SimpleNamespace

    from model.history_overlay import DealIdSet
    from training.retrain import _live_fitted_share

    deals = pd.DataFrame({"deal_id": ["D1", "D2", "D3", "D4"],
                          "created_at": pd.to_datetime(["2025-03-01", "2025-04-01", "2025-05-01", "2025-08-01"])})
    compared = np.array([0, 2, 3], dtype=np.int64)  # D1 closed in its data, D3 then open, D4 created after it
    live = {"last_deal": "2025-06-30"}
    fitted = SimpleNamespace(trained_deal_ids=DealIdSet(["D1", "D2"]))
    assert _live_fitted_share(deals, compared, fitted, live) == pytest.approx(1 / 3)
    # An artifact without the ids: by date, as before (D1 and D3 created by its last training deal).
    assert _live_fitted_share(deals, compared, SimpleNamespace(trained_deal_ids=None), live) == pytest.approx(2 / 3)
    assert _live_fitted_share(deals, compared[:0], fitted, live) is None


def test_the_commands_refuse_a_folder_that_is_no_registry_by_what_it_holds(tmp_path: Path, data: Path) -> None:
    """The ops audit: retrain turned an export's folder into a registry (exit 0); list/show/history on a
    registry whose manifest was deleted advised creating a new one instead of restoring it."""
    export = shutil.copytree(data / "full", tmp_path / "export")
    code, out, err = run_cli(retrain_args(export, data, str(export / "deals.csv")))
    assert code == 2 and "is not a model registry (no manifest.json) and holds other files" in err
    assert "creating one" not in err and not (export / "manifest.json").exists()
    lost = tmp_path / "registry"
    (lost / "versions" / "v1").mkdir(parents=True)
    (lost / "versions" / "v1" / "metadata.json").write_text("{}")
    for command in (["models", "list"], ["models", "show", "live"], ["models", "history"]):
        code, out, err = run_cli([*command, "--registry", str(lost)])
        assert code == 2 and "holds 1 version folder but no manifest.json" in err, (command, err)
        assert "restore manifest.json from a backup" in err and "creates one" not in err


def test_a_failed_gate_check_is_shown_with_the_decimals_that_tell_it_from_its_limit() -> None:
    from training.retrain import _apart

    assert _apart(0.04280, 0.04253, "ECE <= max(...)") == ("0.0428", "ECE <= max(...) (0.0425)")
    assert _apart(0.61, 0.64, "AUC >= live - 0.02") == ("0.610", "AUC >= live - 0.02 (0.640)")


def test_a_refusal_on_a_partial_export_says_the_export_shrank() -> None:
    """The ops audit: a one-month delta export was refused with no hint that it held a fraction of the data."""
    from training.retrain import _shrunk_export

    assert "hold 900 closed deals, the live model's 4,000: is the export partial" in _shrunk_export(
        900, {"closed_deals": 4000})
    assert _shrunk_export(2000, {"closed_deals": 4000}) == ""  # half or more: a normal month to month change
    assert _shrunk_export(900, {"closed_deals": None}) == "" and _shrunk_export(900, None) == ""


def test_the_outcomes_rule_at_its_edges() -> None:
    """docs/operations.md rule 5, each bound just either side: a holdout AUC of 0.6 or better, an AUC at or below
    halfway to the holdout's mirror image, and the upper end of its 95% interval below 0.5."""
    config = RetrainConfig()
    assert outcomes_against_live(0.143, 80, 140, 0.6, config)  # a holdout AUC of exactly 0.6 ranked
    assert not outcomes_against_live(0.143, 80, 140, 0.5999, config)
    assert inverted_auc_limit(0.75) == 0.375  # binary fractions: no rounding at the edge
    assert outcomes_against_live(0.375, 900, 2100, 0.75, config)  # exactly halfway to the mirror image
    assert not outcomes_against_live(0.376, 900, 2100, 0.75, config)
    # Far below the limit (0.355) but on too few deals to tell from chance: 13 won and 13 lost reach 0.504,
    # 14 and 14 0.496.
    assert auc_upper_bound(0.3, 13, 13) > 0.5 > auc_upper_bound(0.3, 14, 14)
    assert not outcomes_against_live(0.3, 13, 13, 0.79, config)
    assert outcomes_against_live(0.3, 14, 14, 0.79, config)
    # Deals of one outcome give no interval (nor an AUC): the rule says nothing of them, it does not fail.
    assert np.isnan(auc_upper_bound(0.3, 30, 0)) and np.isnan(auc_upper_bound(0.3, 0, 30))
    assert not outcomes_against_live(0.3, 30, 0, 0.79, config)


def test_the_live_models_fitted_share_at_its_edges() -> None:
    """By date, a deal created on the live model's last training day counts as fitted on, the day after does not;
    an artifact that kept no ids is read by date; a live model that says neither gives no share."""
    from model.history_overlay import DealIdSet
    from training.retrain import _live_fitted_share

    deals = pd.DataFrame({"deal_id": ["D1", "D2"], "created_at": pd.to_datetime(["2025-06-30", "2025-07-01"])})
    both = np.array([0, 1], dtype=np.int64)
    live = {"last_deal": "2025-06-30"}
    no_ids: Any = SimpleNamespace(trained_deal_ids=None)
    kept_none: Any = SimpleNamespace(trained_deal_ids=DealIdSet([]))
    assert _live_fitted_share(deals, both[:1], no_ids, live) == 1.0
    assert _live_fitted_share(deals, both[1:], no_ids, live) == 0.0
    assert _live_fitted_share(deals, both, kept_none, live) == 0.5
    assert _live_fitted_share(deals, both, no_ids, {"last_deal": None}) is None
    assert _live_fitted_share(deals, both, no_ids, None) is None


@dataclass(frozen=True)
class _Deals:
    deals: pd.DataFrame  # all the gate model's fitting reads of a dataset (dataclasses.replace-d)


class _ScoredBy:
    """Stands in for a model in the gate: each deal's p_win read off one of its columns, every letter C."""

    def __init__(self, column: str) -> None:
        self.column, self.version = column, column

    def score(self, columns: dict[str, np.ndarray], n_reasons: int = 0) -> Any:
        return SimpleNamespace(p_win=columns[self.column], grade=["C"] * len(columns[self.column]))


def _judged(monkeypatch: pytest.MonkeyPatch, live_p: np.ndarray, gate_p: np.ndarray, *, holdout_auc: float | None,
            live_in_sample: bool, fitted_share: float | None, stale: str = "",
            candidate_holdout: dict[str, float] | None = None) -> tuple[bool, str, list[Any]]:
    """The gate's verdict (passed, reason, checks) on 100 closed deals, the first 50 won, as scored by the live
    model and the gate model (`live_p`, `gate_p`), no model fitted: the gate's wording, cheaply. The candidate's
    own holdout figures are `candidate_holdout` (none: not known)."""
    import training.retrain
    from training.retrain import ComparisonWindow, _compare_with_live

    gate = SimpleNamespace(model=_ScoredBy("gate"))
    monkeypatch.setattr(training.retrain, "train", lambda *args, **kwargs: gate)
    report: dict[str, Any] = {
        "live": {"training_holdout_metrics": {"auc": holdout_auc} if holdout_auc is not None else None},
        "candidate": {"training_holdout_metrics": candidate_holdout},
        "comparison": {"live_fitted_share": fitted_share}}
    window = ComparisonWindow(date(2025, 3, 1), "candidate_holdout" if live_in_sample else "after_live_training",
                              live_in_sample, "", stale)
    dataset = _Deals(pd.DataFrame({"created_at": pd.to_datetime(["2025-04-01"] * 100)}))
    status = np.array(["won"] * 50 + ["lost"] * 50, dtype=object)
    return _compare_with_live(report, dataset, cast(Any, None), RetrainConfig(ece_noise_draws=20), cast(Any, gate),
                              cast(Any, _ScoredBy("live")), "LIVE", window, {"live": live_p, "gate": gate_p}, status,
                              (status == "won").astype(np.float64), np.arange(100, dtype=np.int64), lambda _: None)


# The live model ranks every won deal above every lost one (AUC 1); the gate model ranks none (a flat 0.5: AUC 0.5,
# the AUC check fails, calibration passes).
RANKING = np.repeat([0.8, 0.2], 50)
FLAT = np.full(100, 0.5)


@pytest.mark.parametrize(("live_in_sample", "fitted_share", "stale", "verdict", "where"), [
    (True, 0.5, "", "judged largely in-sample (too few closed deals since its data to compare fairly: next month "
     "usually can): AUC ", " (candidate's holdout; the live model was fitted on 50% of them)]"),
    (True, 0.49, "", "candidate is worse than the live model LIVE: AUC ",
     " (candidate's holdout; the live model was fitted on 49% of them)]"),
    (True, None, "", "judged largely in-sample (too few closed deals since its data to compare fairly: next month "
     "usually can): AUC ", " (candidate's holdout; live in-sample)]"),
    (True, 1.0, "is the export stale?", "judged largely in-sample (too few closed deals since its data to compare "
     "fairly): AUC ", " (candidate's holdout; the live model was fitted on 100% of them)]"),
    # A fair window is never put down to in-sample judging, whatever share is passed along with it.
    (False, 1.0, "", "candidate is worse than the live model LIVE: AUC ", "]"),
], ids=["half-fitted", "under-half-fitted", "share-unknown", "stale-export", "not-in-sample"])
def test_a_refusal_is_put_down_to_in_sample_judging_only_where_the_live_model_was_fitted_on_half_or_more(
        monkeypatch: pytest.MonkeyPatch, live_in_sample: bool, fitted_share: float | None, stale: str, verdict: str,
        where: str) -> None:
    passed, reason, checks = _judged(monkeypatch, RANKING, FLAT, holdout_auc=None, live_in_sample=live_in_sample,
                                     fitted_share=fitted_share, stale=stale)
    assert not passed and [c.name for c in checks if not c.passed] == ["auc"]
    if "largely" in verdict:
        assert reason.startswith("candidate not shown as good as the live model LIVE, which was " + verdict), reason
    else:
        assert reason.startswith(verdict), reason
    assert reason.endswith(f"on 100 closed deals created from 2025-03-01{where}"), reason


def test_outcomes_against_the_live_model_refuse_a_candidate_that_passes_every_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The live model ranks every lost deal above every won one (AUC 0) after a holdout AUC of 0.79; the gate model,
    # flat, is not worse. Judged on deals the live model was fitted on, the outcomes still come first.
    passed, reason, checks = _judged(monkeypatch, RANKING[::-1].copy(), FLAT, holdout_auc=0.79,
                                     live_in_sample=True, fitted_share=1.0)
    assert not passed
    assert [(c.name, c.passed) for c in checks] == [("auc", True), ("ece", True), ("outcomes", False)]
    assert checks[2].threshold == pytest.approx(0.355)
    assert reason.startswith("the compared deals' outcomes run against the live model: it ranked its own holdout "
                             "at AUC 0.790 and ranks these 100 deals at 0.000"), reason
    # The gate model worse too, and the live model judged in-sample: the outcomes are still the reason given.
    passed, reason, checks = _judged(monkeypatch, RANKING[::-1].copy(), np.repeat([0.1, 0.9], 50),
                                     holdout_auc=0.79, live_in_sample=True, fitted_share=1.0)
    assert [c.name for c in checks if not c.passed] == ["ece", "outcomes"]
    assert not passed and reason.startswith("the compared deals' outcomes run against the live model"), reason


def test_a_candidate_at_chance_on_its_own_holdout_is_refused_where_the_live_model_ranked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Outcomes no model can rank (every won and lost shuffled): the live model and the gate model both flat on the
    # compared deals, neither worse; the candidate's own holdout at chance (the ops review's figures).
    shuffled = {"auc": 0.503, "auc_low_95": 0.484, "deals": 3818}
    passed, reason, checks = _judged(monkeypatch, FLAT, FLAT, holdout_auc=0.816, live_in_sample=False,
                                     fitted_share=0.0, candidate_holdout=shuffled)
    assert not passed and all(c.passed for c in checks)
    assert reason.startswith("the candidate ranks its own holdout no better than chance (AUC 0.503 on 3,818 deals, "
                             "95% interval from 0.484), where the live model ranked its own at AUC 0.816"), reason
    assert "statuses" in reason and reason.endswith("on 100 closed deals created from 2025-03-01]"), reason
    # Drift: both models near chance on the few compared deals, the candidate ranking its own holdout: published
    # (bank marketing's monthly retrains); and where the live model never ranked (or says nothing), as before.
    drifted = {"auc": 0.71, "auc_low_95": 0.69, "deals": 9000}
    assert _judged(monkeypatch, FLAT, FLAT, holdout_auc=0.72, live_in_sample=False, fitted_share=0.0,
                   candidate_holdout=drifted)[0]
    for weak in (0.55, None):
        assert _judged(monkeypatch, FLAT, FLAT, holdout_auc=weak, live_in_sample=False, fitted_share=0.0,
                       candidate_holdout=shuffled)[0]
    # At the edge: an interval reaching 0.5 exactly is chance; a holdout without an interval says nothing.
    assert not _judged(monkeypatch, FLAT, FLAT, holdout_auc=0.6, live_in_sample=False, fitted_share=0.0,
                       candidate_holdout={"auc": 0.55, "auc_low_95": 0.5, "deals": 400})[0]
    assert _judged(monkeypatch, FLAT, FLAT, holdout_auc=0.6, live_in_sample=False, fitted_share=0.0,
                   candidate_holdout={"auc": 0.55, "auc_low_95": float("nan")})[0]
    # A small holdout: a candidate as good as the live model has an interval reaching 0.5 by chance alone. The
    # live model's AUC inside that interval tells them not apart: published (a review: refused, the export blamed).
    small = {"auc": 0.60, "auc_low_95": 0.50, "auc_high_95": 0.71, "deals": 120}
    assert _judged(monkeypatch, FLAT, FLAT, holdout_auc=0.62, live_in_sample=False, fitted_share=0.0,
                   candidate_holdout=small)[0]
    assert not _judged(monkeypatch, FLAT, FLAT, holdout_auc=0.816, live_in_sample=False, fitted_share=0.0,
                       candidate_holdout={**shuffled, "auc_high_95": 0.522})[0]


def test_comparison_markdown_counts_the_gate_models_deals_as_the_gate_models() -> None:
    """comparison.md put the gate model's deal count after "the published candidate ... fitted on all
    deals", so an export of 20,000 deals read as a candidate fitted on the 18,025 before the window."""
    report: dict[str, Any] = {
        "candidate": {"version": "C"}, "live": {"version": "L"},
        "decision": {"published": True, "forced": False, "reason": "not worse", "checks": []},
        "comparison": {"closed_deals": 1065, "won": 465, "from": "2025-09-01", "to": "2025-11-16",
                       "note": "neither model was fitted on them",
                       "gate_model": {"version": "G", "deals": 18025,
                                      "description": "the candidate's recipe and settings fitted on the deals "
                                                     "created before 2025-09-01 only; the published candidate "
                                                     "is the same recipe fitted on all deals"}},
        "drift": {"reference": "r", "current": "c", "p_win": {"psi": 0.1, "level": "moderate"}, "features": []},
    }
    markdown = render_markdown(report)
    assert "fitted on all deals (18,025 deals)" not in markdown
    assert "gate model (18,025 deals)" in markdown
