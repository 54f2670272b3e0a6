"""Edges of the data contract: undated open deals, the accepted date range, numeric client sizes,
repeated holdings, and offline scoring typing extra columns as the model was trained."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_contract_validation import TODAY, bad_deals, make_clients, make_deals, make_holdings, the_problem

from dealscore.offline import score_file
from model.artifact import save_artifact
from model.contract import EARLIEST_DATE, EARLIEST_DEAL_DATE
from model.dataset import dataset_from_frames, load_dataset
from model.errors import ContractViolation
from model.features import build_features, frame_columns
from model.records import deal_columns
from model.scorer import ScoringModel
from model.validation import validate_clients, validate_deals, validate_holdings
from training.fit import TrainConfig, train
from training.synthetic_crm import generate


def _kinds(model: ScoringModel) -> dict[str, str]:
    """The service's typing of a deal's fields: by the model's own feature kinds (service.holder)."""
    spec = model.spec
    return {**dict.fromkeys(spec.categorical, "text"), **dict.fromkeys(spec.numeric, "number")}


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """A deals frame's row as the API would receive it: ISO dates, nothing for missing values."""
    return {k: (v.date().isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in row.items()
            if not (isinstance(v, float) and np.isnan(v)) and v is not pd.NaT}


# --- 1. created_at: required for training of won and lost deals; an open deal may lack it ---------------


def test_open_deals_without_created_at_are_accepted_for_training() -> None:
    raw = make_deals(created_at=["2024-01-05", "2024-02-01", None])  # row 3 is the open deal
    deals = validate_deals(raw, for_training=True, today=TODAY)
    assert deals["created_at"].isna().tolist() == [False, False, True]

    dataset = dataset_from_frames(raw, for_training=True, today=TODAY)
    # Open deals are scored, not trained on: one that cannot be placed in time is set aside and counted.
    assert dataset.deals["deal_id"].tolist() == ["D1", "D2"]
    assert dataset.undated_open_deals == 1
    assert dataset.summary["undated_open_deals"] == 1
    # Scoring keeps every deal: an open deal without a date is scored as of the scoring day.
    assert len(dataset_from_frames(raw, for_training=False, today=TODAY).deals) == 3


def test_closed_deals_without_created_at_are_refused_naming_the_field() -> None:
    raw = make_deals(created_at=["2024-01-05", None, None], closed_at=[None, None, None])
    problem = the_problem(bad_deals(raw), "deals", "created_at")
    assert problem.expected == ("a non-empty created_at (required of won and lost deals for training and client "
                                "analytics)")
    assert (problem.got, problem.rows) == ("empty", (2,))  # row 3 is open: not a problem
    # A deal without a status cannot be told open: its created_at stays required.
    raw = make_deals(created_at=["2024-01-05", "2024-02-01", None], status=["won", "lost", None])
    error = bad_deals(raw)
    assert the_problem(error, "deals", "created_at").rows == (3,)
    assert the_problem(error, "deals", "status").rows == (3,)


def test_training_sets_aside_open_deals_without_created_at() -> None:
    crm = generate(seed=5, n_deals=1_500)
    deals = crm.deals.copy()
    open_rows = deals.index[deals["status"] == "open"][:10]
    deals.loc[open_rows, "created_at"] = pd.NaT
    dataset = dataset_from_frames(deals, crm.clients, crm.holdings, for_training=True)
    result = train(dataset, TrainConfig(threads=1))
    data = result.metadata["data"]
    assert data["undated_open_deals"] == 10
    assert data["open_deals"] == int((crm.deals["status"] == "open").sum()) - 10
    assert data["deals"] == len(deals) - 10


# --- 2. dates: deals' from 1970-01-01, other dates from 1900-01-01, none after today ----------------------


@pytest.mark.parametrize("value", ["1969-12-31", "1900-01-01", "1500-01-01", "2999-12-31", "9999-12-31"])
def test_deal_dates_outside_the_accepted_range(value: str) -> None:
    raw = make_deals(created_at=["2024-01-05", value, "2024-03-01"], closed_at=[None, None, None])
    problem = the_problem(bad_deals(raw), "deals", "created_at")
    assert problem.expected == "a date from 1970-01-01 to today (at most 2025-07-01, for a sender a time zone ahead)"
    assert (problem.got, problem.rows) == (f"'{value}'", (2,))


def test_closed_at_has_the_deal_range_too() -> None:
    raw = make_deals(created_at=[None, "2024-02-01", "2024-03-01"], closed_at=["1960-01-01", None, None])
    error = bad_deals(raw, for_training=False)
    problem = the_problem(error, "deals", "closed_at")
    assert problem.rows == (1,)
    assert problem.expected == "a date from 1970-01-01 to today (at most 2025-07-01, for a sender a time zone ahead)"


def test_first_and_last_accepted_dates() -> None:
    raw = make_deals(created_at=["1970-01-01", "2025-06-30", "2025-06-30T23:59:00"])
    deals = validate_deals(raw.assign(closed_at=[None] * 3), for_training=True, today=TODAY)
    assert deals["created_at"].tolist() == [pd.Timestamp("1970-01-01"), pd.Timestamp("2025-06-30"),
                                            pd.Timestamp("2025-06-30")]
    clients = validate_clients(make_clients(since=["1900-01-01", "1955-05-05"]), today=TODAY)
    assert clients["since"].tolist() == [pd.Timestamp("1900-01-01"), pd.Timestamp("1955-05-05")]
    assert (EARLIEST_DEAL_DATE, EARLIEST_DATE) == (date(1970, 1, 1), date(1900, 1, 1))


def test_client_and_holding_dates_outside_the_accepted_range() -> None:
    with pytest.raises(ContractViolation) as error:
        validate_clients(make_clients(since=["1899-12-31", "2999-01-01"]), today=TODAY)
    problem = the_problem(error, "clients", "since")
    assert problem.expected == "a date from 1900-01-01 to today (at most 2025-07-01, for a sender a time zone ahead)"
    assert (problem.got, problem.rows) == ("'1899-12-31', '2999-01-01'", (1, 2))
    with pytest.raises(ContractViolation) as error:
        validate_holdings(make_holdings(since=["1800-01-01", "2024-01-01"]), known_clients=None, today=TODAY)
    assert the_problem(error, "holdings", "since").rows == (1,)


# --- 3. clients.size: a number of employees is a number, a size band is text -------------------------------


def test_numeric_client_size_is_a_number() -> None:
    clients = validate_clients(make_clients(size=["250", " 12 "]), today=TODAY)
    assert clients["size"].dtype == "float64"
    assert clients["size"].tolist() == [250.0, 12.0]


def test_client_size_bands_stay_text() -> None:
    clients = validate_clients(make_clients(size=["small", "250"]), today=TODAY)
    assert clients["size"].tolist() == ["small", "250"]


def test_a_model_trained_on_numeric_sizes_uses_size_as_a_number(tmp_path: Path) -> None:
    crm = generate(seed=5, n_deals=1_500)
    employees = {"small": "20", "medium": "150", "large": "900"}
    clients = crm.clients.assign(size=crm.clients["size"].map(employees))
    dataset = dataset_from_frames(crm.deals, clients, crm.holdings, for_training=True)
    assert dataset.clients is not None and dataset.clients["size"].dtype == "float64"
    result = train(dataset, TrainConfig(threads=1))
    model = result.model
    assert "size" in model.spec.numeric and "size" not in model.spec.categorical
    assert model.profiles is not None and "size" in model.profiles.encoder.bands  # segments by size band

    # Offline (a clients file) and the service's path (a nested client sending an integer) agree.
    deals = crm.deals[crm.deals["status"] == "open"].tail(20).drop(columns=["status", "closed_at"])
    deals_csv, clients_csv, out_csv = tmp_path / "deals.csv", tmp_path / "clients.csv", tmp_path / "scores.csv"
    deals.to_csv(deals_csv, index=False)
    clients.to_csv(clients_csv, index=False)
    model_dir = save_artifact(model, tmp_path / "model", result.metadata)
    score_file(str(model_dir), str(deals_csv), str(clients_csv), None, None, str(out_csv))
    offline = pd.read_csv(out_csv, dtype={"deal_id": str})
    by_id = dataset.clients.set_index("client_id")
    records = [{**_record(row), "client": {"client_id": row["client_id"],
                                           "size": int(by_id.loc[row["client_id"], "size"])}}
               for row in deals.to_dict("records")]
    online = model.score(deal_columns(records, kinds=_kinds(model)), n_reasons=0)
    np.testing.assert_allclose(offline["p_win"].to_numpy(), online.p_win, rtol=1e-12)


# --- 5. holdings: one row per (client_id, product) --------------------------------------------------------


def test_repeated_holdings_are_refused() -> None:
    raw = make_holdings(client_id=["C1", "C2", " C1", "C1"], product=["Cloud", "Cloud", "Cloud ", "Support"],
                        revenue=["1", "2", "3", "4"])
    with pytest.raises(ContractViolation, match="^holdings table") as error:
        validate_holdings(raw, known_clients=None, today=TODAY)
    problem = the_problem(error, "holdings", "product")
    assert problem.expected == "one row per (client_id, product)"
    assert (problem.got, problem.rows, problem.count) == ("repeated 'C1' / 'Cloud'", (1, 3), 2)


# --- 4. offline scoring types extra columns as the model was trained ---------------------------------------


@pytest.fixture(scope="module")
def branch_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A model with an extra text column of numeric-looking codes, and open deals to score offline."""
    crm = generate(seed=5, n_deals=1_500)
    rng = np.random.default_rng(3)
    won = (crm.deals["status"] == "won").to_numpy()
    branch = np.where(rng.random(len(won)) < np.where(won, 0.7, 0.3), "101", "102")
    branch[rng.random(len(won)) < 0.05] = "HQ"  # one level that is not a number: the column is text
    deals = crm.deals.assign(branch=branch)
    dataset = dataset_from_frames(deals, crm.clients, crm.holdings, for_training=True)
    assert dataset.extra_columns["branch"] == "text"
    result = train(dataset, TrainConfig(threads=1))
    assert "branch" in result.model.spec.categorical
    model_dir = save_artifact(result.model, tmp_path_factory.mktemp("branch") / "model", result.metadata)
    scored = deals[(deals["status"] == "open") & (deals["branch"] != "HQ")].tail(40)
    return model_dir, scored


def test_offline_scoring_keeps_numeric_looking_codes_as_the_trained_text_levels(
    branch_model: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    from model.artifact import load_artifact

    model_dir, deals = branch_model
    deals_csv, out_csv = tmp_path / "deals.csv", tmp_path / "scores.csv"
    deals.drop(columns=["status"]).to_csv(deals_csv, index=False)  # every branch value reads as a number
    assert score_file(str(model_dir), str(deals_csv), None, None, None, str(out_csv)) == len(deals)
    offline = pd.read_csv(out_csv, dtype={"deal_id": str}).set_index("deal_id")

    model, _ = load_artifact(model_dir)
    spec = model.spec
    kinds = _kinds(model)
    records = [_record(row) for row in deals.drop(columns=["status", "closed_at"]).to_dict("records")]
    online = model.score(deal_columns(records, kinds=kinds), n_reasons=0)
    np.testing.assert_allclose(offline.loc[deals["deal_id"], "p_win"].to_numpy(), online.p_win, rtol=1e-12)

    # The level itself is recognised: its model code is a known one, not the "unknown" code.
    loaded = load_dataset(str(deals_csv), for_training=False, kinds=kinds)
    assert loaded.deals["branch"].tolist() == deals["branch"].tolist()
    columns = model.with_known_clients(frame_columns(loaded.deals))
    features = build_features(spec, model.history, columns)
    codes = features[:, spec.names.index("branch")]
    assert set(codes) <= set(spec.vocab["branch"].values())


def test_kinds_override_how_extra_columns_are_typed() -> None:
    raw = make_deals(Code=["101", "102", "7.50"], Seats=["5", "many", None])
    deals = validate_deals(raw.drop(columns=["Seats"]), for_training=False, today=TODAY, kinds={"Code": "text"})
    assert deals["Code"].tolist() == ["101", "102", "7.50"]  # not 101.0: the model's text levels
    with pytest.raises(ContractViolation) as error:
        validate_deals(raw, for_training=False, today=TODAY, kinds={"Seats": "number"})
    problem = the_problem(error, "deals", "Seats")
    assert (problem.expected, problem.got, problem.rows) == (
        "a finite number (the model uses it as a number)", "'many'", (2,))
    clients = validate_clients(make_clients(size=["20", "150"]), today=TODAY, kinds={"size": "text"})
    assert clients["size"].tolist() == ["20", "150"]
