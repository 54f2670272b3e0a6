"""The service takes the data contract's edges as offline validation does: each date column's accepted range
(deal dates from 1970-01-01, other dates from 1900-01-01, none after today) and a client's `size` given as a
text band or a number."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from service_fixtures import (  # noqa: F401 (fixtures, registered by name)
    TODAY,
    TestClient,
    error_envelope,
    fixture_service_client,
    fixture_service_crm,
    fixture_service_dataset,
    fixture_service_training,
    make_client,
    make_deal,
)

from model.contract import CLIENTS, DEALS
from model.dataset import dataset_from_frames
from model.errors import ContractViolation
from model.records import deal_columns
from model.scorer import ScoringModel
from service import Settings, create_app
from service.schemas import request_models
from training.fit import TrainConfig, train
from training.synthetic_crm import generate

LATEST = f"today in the sender's time zone (at most {(TODAY + timedelta(days=1)).isoformat()})"
DEAL_RANGE = f"a date from 1970-01-01 to {LATEST}"
OTHER_RANGE = f"a date from 1900-01-01 to {LATEST}"
CLIENT_ID = "C00010"


def _p_wins(client: TestClient, deals: list[dict[str, Any]]) -> list[float]:
    response = client.post("/v1/score", json={"deals": deals})
    assert response.status_code == 200, response.text
    return [s["p_win"] for s in response.json()["scores"]]


# --- dates: each column's range is the contract's ------------------------------------------------------------


def test_the_contract_gives_the_ranges_the_service_states() -> None:
    assert DEALS.column("created_at").earliest.isoformat() == "1970-01-01"
    assert DEALS.column("closed_at").earliest.isoformat() == "1970-01-01"
    assert CLIENTS.column("since").earliest.isoformat() == "1900-01-01"


def test_closed_at_before_1970_is_refused_naming_the_field(service_client: TestClient) -> None:
    deal = make_deal(created_at="1970-01-01", closed_at="1969-12-31", status="lost")
    error = error_envelope(service_client.post("/v1/score", json={"deals": [deal]}))
    assert error["details"] == [{"field": "deals[0].closed_at", "expected": DEAL_RANGE, "got": "'1969-12-31'"}]


def test_the_first_accepted_deal_dates_are_scored(service_client: TestClient) -> None:
    deals = [make_deal(deal_id="a", created_at="1970-01-01"),
             make_deal(deal_id="b", created_at="1970-01-01", closed_at="1970-01-01", status="won")]
    assert len(_p_wins(service_client, deals)) == 2


def test_created_at_before_1970_is_refused(service_client: TestClient) -> None:
    error = error_envelope(service_client.post("/v1/score", json={"deals": [make_deal(created_at="1969-12-31")]}))
    assert error["details"] == [{"field": "deals[0].created_at", "expected": DEAL_RANGE, "got": "'1969-12-31'"}]


def test_a_client_since_goes_back_to_1900(service_client: TestClient) -> None:
    old = make_deal(client={"client_id": CLIENT_ID, "since": "1900-01-01"})
    assert len(_p_wins(service_client, [old])) == 1
    older = make_deal(client={"client_id": CLIENT_ID, "since": "1899-12-31"})
    error = error_envelope(service_client.post("/v1/score", json={"deals": [older]}))
    assert error["details"] == [{"field": "deals[0].client.since", "expected": OTHER_RANGE, "got": "'1899-12-31'"}]


def test_tomorrow_is_accepted_for_crms_ahead_of_the_server_but_not_the_day_after(service_client: TestClient) -> None:
    tomorrow, after = TODAY + timedelta(days=1), TODAY + timedelta(days=2)
    assert len(_p_wins(service_client, [make_deal(created_at=tomorrow.isoformat())])) == 1
    error = error_envelope(service_client.post("/v1/score", json={"deals": [make_deal(created_at=after.isoformat())]}))
    assert error["details"] == [{"field": "deals[0].created_at", "expected": DEAL_RANGE,
                                 "got": f"'{after.isoformat()}'"}]


def test_every_bad_date_is_listed_in_one_answer(service_client: TestClient) -> None:
    deals = [make_deal(deal_id="a", closed_at="1969-12-31"), make_deal(deal_id="b", created_at="1969-07-20"),
             make_deal(deal_id="c", client={"client_id": CLIENT_ID, "since": "1066-10-14"})]
    error = error_envelope(service_client.post("/v1/score", json={"deals": deals}))
    assert {d["field"]: d["expected"] for d in error["details"]} == {
        "deals[0].closed_at": DEAL_RANGE, "deals[1].created_at": DEAL_RANGE, "deals[2].client.since": OTHER_RANGE}


def test_week_and_ordinal_dates_are_refused_as_a_file_refuses_them(service_client: TestClient) -> None:
    """Python's date parser reads 2025-W48-1 and 2025-328, which `dealscore score` refuses in a file: the API
    scored a deal the CLI would not."""
    deals = [make_deal(deal_id="a", created_at="2025-W48-1"), make_deal(deal_id="b", created_at="2025-328"),
             make_deal(deal_id="c", created_at="20251124"), make_deal(deal_id="d", created_at="2025-11-24T09:30")]
    error = error_envelope(service_client.post("/v1/score", json={"deals": deals}))
    assert {d["field"]: d["expected"] for d in error["details"]} == {
        "deals[0].created_at": "a date like 2024-03-31 (ISO 8601)",
        "deals[1].created_at": "a date like 2024-03-31 (ISO 8601)"}


def test_the_schema_states_each_columns_range() -> None:
    schemas = request_models(10).score.model_json_schema()["$defs"]
    assert "from 1970-01-01 to today" in schemas["Deal"]["properties"]["closed_at"]["anyOf"][0]["description"]
    assert "from 1970-01-01 to today" in schemas["Deal"]["properties"]["created_at"]["anyOf"][0]["description"]
    assert "from 1900-01-01 to today" in schemas["Client"]["properties"]["since"]["anyOf"][0]["description"]


# --- a client's size: a text band or a number --------------------------------------------------------------


def _with_size(size: Any, deal_id: str = "D-1") -> dict[str, Any]:
    return make_deal(deal_id=deal_id, client={"client_id": CLIENT_ID, "industry": "retail", "size": size})


def test_a_numeric_size_is_accepted_by_a_model_with_size_bands(service_client: TestClient,
                                                               service_training: Any) -> None:
    assert "size" in service_training.model.spec.categorical  # the synthetic CRM's sizes are bands
    p_wins = _p_wins(service_client, [_with_size(250, "int"), _with_size(250.0, "float"), _with_size("250", "text")])
    assert p_wins[0] == p_wins[1] == p_wins[2]  # one level, "250", however it was sent


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_size_that_is_not_a_finite_number_is_refused(service_client: TestClient, literal: str) -> None:
    body = json.dumps({"deals": [_with_size(0)]}).replace('"size": 0', f'"size": {literal}')
    response = service_client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    error = error_envelope(response)
    assert [d["field"] for d in error["details"]] == ["deals[0].client.size"]
    assert "finite" in error["details"][0]["expected"]


@pytest.mark.parametrize("size", [True, [250], {"employees": 250}, "s" * 201])
def test_a_size_that_is_neither_text_nor_a_number_is_refused(service_client: TestClient, size: Any) -> None:
    error = error_envelope(service_client.post("/v1/score", json={"deals": [_with_size(size)]}))
    assert [d["field"] for d in error["details"]] == ["deals[0].client.size"]


@pytest.fixture(scope="module")
def numeric_size_model() -> ScoringModel:
    """A model trained on clients whose size is a number of employees: size is one of its numeric features."""
    crm = generate(seed=5, n_deals=1_500)
    employees = {"small": "20", "medium": "150", "large": "900"}
    clients = crm.clients.assign(size=crm.clients["size"].map(employees))
    dataset = dataset_from_frames(crm.deals, clients, crm.holdings, for_training=True, today=TODAY)
    model = train(dataset, TrainConfig(threads=1)).model
    assert "size" in model.spec.numeric
    return model


@pytest.fixture(scope="module")
def numeric_size_client(numeric_size_model: ScoringModel) -> Iterator[TestClient]:
    app = create_app(Settings(max_batch=50), model=numeric_size_model, clock=lambda: TODAY)
    with make_client(app) as client:
        yield client


def test_a_numeric_size_reaches_a_model_that_uses_size_as_a_number(numeric_size_client: TestClient) -> None:
    p_wins = _p_wins(numeric_size_client, [_with_size(250, "int"), _with_size(250.0, "float"),
                                           _with_size("250", "text"), _with_size(20, "small")])
    assert p_wins[0] == p_wins[1] == p_wins[2]
    assert p_wins[3] != p_wins[0]  # the number itself reaches the model, not one level for any number


def test_validated_sizes_become_a_number_column() -> None:
    # What the service hands the model: the request as validated, typed by the model's feature kinds.
    body = json.dumps({"deals": [_with_size(250, "a"), _with_size(250.0, "b"), _with_size(" 12 ", "c")]})
    request: Any = request_models(10).score.model_validate_json(body, context={"today": TODAY})
    assert [type(d.client.size) for d in request.deals] == [int, float, str]
    columns = deal_columns(request.deals, kinds={"size": "number"}, today=TODAY)
    assert columns["size"].dtype == "float64"
    assert columns["size"].tolist() == [250.0, 250.0, 12.0]
    as_text = deal_columns(request.deals, kinds={"size": "text"}, today=TODAY)
    assert as_text["size"].tolist() == ["250", "250", "12"]


@pytest.mark.parametrize("size", ["inf", "NaN", "small"])
def test_text_that_is_not_a_finite_number_is_refused_where_size_is_a_number(numeric_size_client: TestClient,
                                                                           size: str) -> None:
    error = error_envelope(numeric_size_client.post("/v1/score", json={"deals": [_with_size(size)]}))
    assert len(error["details"]) == 1
    detail = error["details"][0]
    # Where the value came from: the client object (it was named deals[0].size, a field never sent).
    assert detail["field"] == "deals[0].client.size"
    assert (detail["expected"], detail["got"]) == ("a finite number", f"'{size}'")


def test_a_date_year_first_with_another_mark_is_read_as_a_file_reads_it(service_client: TestClient) -> None:
    """A file (`dealscore score`/`train`) read "2025/03/01" and "2025-3-1" as 2025-03-01, and the API refused both
    (422 "a date like 2024-03-31"): the same deal scored offline and not over HTTP. Both read them now, alike; a date
    day first is refused by both, naming the field."""
    from model.validation import validate_deals

    day = (TODAY - timedelta(days=30)).isoformat()
    y, m, d = day.split("-")
    forms = [day, f"{y}/{m}/{d}", f"{y}-{int(m)}-{int(d)}", f"{y}.{int(m)}.{d}", f"{y}/{m}/{d}T9:05"]
    p_wins = _p_wins(service_client, [make_deal(deal_id=f"d{i}", created_at=form) for i, form in enumerate(forms)])
    assert len(set(p_wins)) == 1  # every form is the same day
    frame = pd.DataFrame({"deal_id": [f"d{i}" for i in range(len(forms))], "created_at": forms})
    read = validate_deals(frame, for_training=False, today=TODAY)["created_at"]
    assert [stamp.date().isoformat() for stamp in read] == [day] * len(forms)

    day_first = f"{d}/{m}/{y}"
    error = error_envelope(service_client.post("/v1/score", json={"deals": [make_deal(created_at=day_first)]}))
    assert error["details"] == [{"field": "deals[0].created_at", "expected": "a date like 2024-03-31 (ISO 8601)",
                                 "got": f"'{day_first}'"}]
    with pytest.raises(ContractViolation) as refused:
        validate_deals(pd.DataFrame({"deal_id": ["d0"], "created_at": [day_first]}), for_training=False, today=TODAY)
    assert [(p.field, p.expected, p.got) for p in refused.value.problems] == [
        ("created_at", "a date like 2024-03-31 (ISO 8601)", f"'{day_first}'")]
