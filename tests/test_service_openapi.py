"""The published contract: committed openapi.json equals the app's, examples everywhere, names from the contract."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from service_fixtures import (  # noqa: F401 (fixtures, registered by name)
    TestClient,
    fixture_service_client,
    fixture_service_crm,
    fixture_service_dataset,
    fixture_service_training,
    make_deal,
)

from model.contract import CLIENT_HISTORY, CLIENTS, DEALS, MAX_TEXT_LENGTH, NO_NUL_PATTERN
from service import create_app, settings_doc
from service.openapi_export import openapi_document, render
from service.schemas import Client, Deal, ScoreOut, contract_field_names, request_models
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def test_committed_openapi_is_what_the_app_serves(document: dict[str, Any]) -> None:
    committed = ROOT / "openapi.json"
    assert committed.is_file(), "openapi.json is missing: run `make openapi`"
    assert committed.read_text() == render(document), "openapi.json is out of date: run `make openapi`"


def test_every_request_and_response_has_an_example(document: dict[str, Any]) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                assert "example" in operation["requestBody"]["content"]["application/json"], (path, method)
            for status, response in operation["responses"].items():
                content = response.get("content", {}).get("application/json", {})
                assert "example" in content, (path, method, status)


def test_every_success_example_is_valid_for_its_response_model(document: dict[str, Any]) -> None:
    """FastAPI drops null values from examples (fastapi/fastapi#5559): an example lost its required
    `value_per_hour: null` and no longer matched its own schema, nor the live answers, which carry the key."""
    from service.app import _api_routes

    app = create_app(Settings.model_construct())
    checked = 0
    for route in _api_routes(app.routes):
        if route.response_model is None:
            continue
        for method in route.methods:
            operation = document["paths"][route.path_format][method.lower()]
            example = operation["responses"]["200"]["content"]["application/json"]["example"]
            route.response_model.model_validate(example)
            checked += 1
    assert checked >= 6
    score = document["paths"]["/v1/score"]["post"]["responses"]["200"]["content"]["application/json"]["example"]
    assert all("value_per_hour" in item for item in score["scores"])


def test_every_error_is_the_one_envelope(document: dict[str, Any]) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if not status.startswith("2"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, method, status)
                    example = response["content"]["application/json"]["example"]
                    assert set(example) == {"error", "request_id"}
                    assert set(example["error"]) == {"code", "message", "details"}
    assert "HTTPValidationError" not in str(document)


def _fields_an_operation_takes(document: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    """The first segment of every field path a refusal of this operation may name: its body's own fields, its
    query parameters as query.<name>, and the body and its content type as a whole."""
    taken = {"body", "content-type"} | {f"query.{p['name']}" for p in operation.get("parameters", [])}
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in body:
        taken |= set(document["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["properties"])
    return taken


def test_every_refusal_example_names_fields_of_its_own_operation(document: dict[str, Any]) -> None:
    """A CRM developer reads a route's 413 and 422 examples as what that route answers: /v1/gaps's spoke of
    deals[0].amount and /v1/outcomes' and /v1/quality's of a judgement's below_deal_id (an outside review)."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            taken = _fields_an_operation_takes(document, operation)
            for status in ("413", "422"):
                if status not in operation["responses"]:
                    continue
                example = operation["responses"][status]["content"]["application/json"]["example"]
                named = {re.split(r"[.\[]", d["field"])[0] if not d["field"].startswith("query.") else d["field"]
                         for d in example["error"]["details"]}
                assert named and named <= taken, (path, method, status, named, taken)


def test_a_batch_that_repeats_an_id_is_refused_as_its_schema_says(document: dict[str, Any],
                                                                     service_client: TestClient) -> None:
    """The service refuses a batch naming one deal (or client) twice; the published schema did not say so, and a
    CRM that scores two variants of one deal learned it from a 422 (an outside review)."""
    schemas = document["components"]["schemas"]
    for schema, items, key, path in (("ScoreRequest", "deals", "deal_id", "/v1/score"),
                                     ("GapsRequest", "clients", "client_id", "/v1/gaps")):
        assert f"each {key} once" in schemas[schema]["description"], schemas[schema]["description"]
        item = make_deal() if items == "deals" else {"client_id": "C00010"}
        answer = service_client.post(path, json={items: [item, dict(item)]})
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["details"][0]["field"] == f"{items}[1].{key}"


def test_the_contract_endpoints_are_all_there(document: dict[str, Any]) -> None:
    assert set(document["paths"]) >= {"/v1/score", "/v1/rank", "/v1/gaps", "/v1/model", "/health/live",
                                      "/health/ready"}
    schemas = document["components"]["schemas"]
    assert schemas["ScoreRequest"]["properties"]["deals"]["maxItems"] == Settings.model_construct().max_batch
    for name in ("deal_id", "p_win", "value", "expected_value", "grade", "reasons", "gaps"):
        assert name in schemas["ScoreOut"]["properties"]


def test_request_schemas_carry_exactly_the_contracts_fields() -> None:
    names = contract_field_names()
    assert tuple(Deal.model_fields) == names["Deal"]
    assert tuple(Client.model_fields) == names["Client"]
    # ... and the contract's own rules: required fields, minimums and maximums, the text limit.
    for column in DEALS.columns:
        assert Deal.model_fields[column.name].is_required() == (column.required == "always"), column.name
    for column in (*DEALS.columns, *CLIENTS.columns, *CLIENT_HISTORY.columns):
        if column.minimum is not None:
            model = Deal if column.name in Deal.model_fields else Client
            schema = model.model_json_schema()["properties"][column.name]
            bounds = {"minimum": column.minimum} | ({"maximum": column.maximum} if column.maximum is not None else {})
            assert {**bounds, "type": "number"} in schema["anyOf"], column.name
    product = Deal.model_json_schema()["properties"]["product"]
    assert {"type": "string", "maxLength": MAX_TEXT_LENGTH, "pattern": NO_NUL_PATTERN} in product["anyOf"]


def test_the_batch_limit_comes_from_the_settings() -> None:
    assert request_models(7).score.model_json_schema()["properties"]["deals"]["maxItems"] == 7


def test_score_fields_follow_the_contract() -> None:
    assert {"deal_id", "p_win", "value", "expected_value", "grade", "reasons", "gaps"} <= set(ScoreOut.model_fields)


def test_settings_documentation_is_generated_from_the_code() -> None:
    page = ROOT / "docs" / "settings.md"
    assert page.is_file(), "docs/settings.md is missing: run `python -m service.settings_doc docs/settings.md`"
    assert page.read_text() == settings_doc.render()
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no documentation"
        assert f"DEALSCORE_{name.upper()}" in page.read_text()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEALSCORE_MAX_BATCH", "12")
    monkeypatch.setenv("DEALSCORE_MODEL_DIR", "")
    monkeypatch.setenv("DEALSCORE_LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.max_batch == 12 and settings.model_dir is None and settings.log_level == "DEBUG"
    monkeypatch.setenv("DEALSCORE_MAX_BATCH", "0")
    with pytest.raises(ValueError):
        Settings()


def test_the_admin_token_is_declared_as_the_service_needs_it(document: dict[str, Any]) -> None:
    """Optional ({} allowed) when no DEALSCORE_ADMIN_TOKEN is set, as the committed document says; required once
    one is set, in the document that service serves."""
    assert document["paths"]["/v1/admin/reload"]["post"]["security"] == [{"AdminToken": []}, {}]
    guarded = create_app(Settings(admin_token="s3cret")).openapi()
    assert guarded["paths"]["/v1/admin/reload"]["post"]["security"] == [{"AdminToken": []}]


def test_integer_ids_declare_the_bound_the_service_holds_them_to(document: dict[str, Any]) -> None:
    """A 19-digit id sent as a number is refused ('an integer of at most 18 digits'); the schema had said any
    integer, so a schema-valid request was a 422 (the integration audit)."""
    deal = document["components"]["schemas"]["Deal"]["properties"]
    for schema in (deal["deal_id"], deal["client_id"]):
        [integer] = [s for s in schema["anyOf"] if s.get("type") == "integer"]
        assert (integer["minimum"], integer["maximum"]) == (-(10**18 - 1), 10**18 - 1)


def test_every_integer_id_of_the_document_holds_the_exact_bound(document: dict[str, Any]) -> None:
    """The feedback routes' ids went through FastAPI's float-typed `maximum` and read 1e+18, one past the bound:
    a schema-valid id of 10**18 was a 422 on /v1/outcomes (an API review)."""
    found: list[dict[str, Any]] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "integer" and "18 digits" in str(node.get("description", "")):
                found.append(node)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(document)
    schemas = document["components"]["schemas"]
    assert {"OutcomeIn", "JudgementIn"} <= schemas.keys() and len(found) >= 6
    for integer in found:
        assert (integer["minimum"], integer["maximum"]) == (-(10**18 - 1), 10**18 - 1)
        assert isinstance(integer["maximum"], int)


def test_the_judgement_example_names_deals_the_score_example_scores(document: dict[str, Any]) -> None:
    """/docs' "Try it out" sends the examples as they stand: a judgement needs both deals scored (422 "never
    scored" otherwise), and the example had named D7 and D3, which no example scores."""
    def example(path: str) -> dict[str, Any]:
        example: dict[str, Any] = document["paths"][path]["post"]["requestBody"]["content"]["application/json"][
            "example"]
        return example

    scored = {deal["deal_id"] for deal in example("/v1/score")["deals"]}
    judgement = example("/v1/judgements")
    assert {judgement["above_deal_id"], judgement["below_deal_id"]} <= scored


def test_the_rank_operation_states_the_tie_order_its_answers_follow(document: dict[str, Any]) -> None:
    """Equal values (deals without the value too) go by expected value, then p_win, then input order, as
    RankResponse.scores and the README say: the operation's own description had said input order, where two
    deals without effort_hours ranked by value_per_hour come larger expected value first."""
    description = document["paths"]["/v1/rank"]["post"]["description"]
    scores = document["components"]["schemas"]["RankResponse"]["properties"]["scores"]["description"]
    for text in (description, scores):
        assert "expected value, then p_win" in text, text
    assert "equal values keep their input order" not in description


def test_every_operation_has_a_chosen_unique_operation_id(document: dict[str, Any]) -> None:
    """A generated client names its functions by operationId: FastAPI's own ids (score_v1_score_post) became
    score_v1_score_post.sync() in Python and operations["score_v1_score_post"] in TypeScript (a client
    generation audit)."""
    ids = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            operation_id = operation.get("operationId")
            assert operation_id, (path, method)
            # FastAPI's form: the function's name, then the path and the method ("_v1_score_post").
            path_words = re.sub(r"\W", "_", path)
            assert not operation_id.endswith(f"{path_words}_{method}"), operation_id
            ids.append(operation_id)
    assert len(ids) == len(set(ids)) >= 11


def test_no_optional_field_declares_a_null_default(document: dict[str, Any]) -> None:
    """openapi-typescript reads a field with a default as one always there: with `"default": null` on every
    optional Deal and Client field, a TypeScript deal had to list all of them, and the README's own deal did not
    compile. FastAPI leaves such defaults out of the schemas it renders; the request bodies must too."""
    schemas = document["components"]["schemas"]
    for name, schema in schemas.items():
        for field, declared in schema.get("properties", {}).items():
            assert not ("default" in declared and declared["default"] is None), (name, field)
    assert "client_id" not in schemas["Deal"].get("required", []) and "industry" in schemas["Client"]["properties"]


def _sent_fields_are_required(document: dict[str, Any], schema: dict[str, Any], answer: Any, where: str) -> int:
    """Walks an answer beside its schema: each object's keys must be its schema's required list. Returns how
    many objects were compared."""
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if isinstance(answer, list):
        return sum(_sent_fields_are_required(document, schema.get("items", {}), item, f"{where}[{i}]")
                   for i, item in enumerate(answer))
    if isinstance(answer, dict):
        if "anyOf" in schema:
            [schema] = [s for s in schema["anyOf"] if "$ref" in s or s.get("type") == "object"]
            return _sent_fields_are_required(document, schema, answer, where)
        if "properties" not in schema:  # a free-form object (a model's metrics)
            return 0
        assert set(schema.get("required", [])) == set(answer), (where, set(answer) ^ set(schema.get("required", [])))
        return 1 + sum(_sent_fields_are_required(document, schema["properties"].get(key, {}), value, f"{where}.{key}")
                       for key, value in answer.items())
    return 0


def test_every_field_the_service_always_sends_is_required(document: dict[str, Any],
                                                          service_client: TestClient) -> None:
    """A field every answer carries is declared required, so a generated client types it as always there:
    ignored_fields, a gap list's client_status and unknown_products, the model's caution were optional, and
    openapi-python-client typed them `... | Unset` (a client generation audit). Not Health: its model_version is
    in /health/ready's answers, not /health/live's."""
    deals = {"deals": [make_deal(), make_deal(deal_id="D-2", client_id=None, misspelt_field="x")]}
    answers = {
        ("/v1/score", "post"): service_client.post("/v1/score", json=deals),
        ("/v1/rank", "post"): service_client.post("/v1/rank?by=grade", json=deals),
        ("/v1/gaps", "post"): service_client.post("/v1/gaps", json={"clients": [
            {"client_id": "C00010"}, {"client_id": "NEW-1", "products": ["not_a_product"]}]}),
        ("/v1/model", "get"): service_client.get("/v1/model"),
        ("/v1/score", "post", 422): service_client.post("/v1/score", json={"deals": [make_deal(amount=-5)]}),
    }
    compared = 0
    for (path, method, *status), response in answers.items():
        code = str(status[0]) if status else "200"
        assert str(response.status_code) == code, (path, response.text)
        declared = document["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"]
        compared += _sent_fields_are_required(document, declared, response.json(), path)
    assert compared >= 20


def test_every_set_of_values_is_a_named_schema(document: dict[str, Any]) -> None:
    """An enum written inline became a type per field in generated clients: openapi-python-client 0.29.1 made
    ScoreOutGrade and RankedScoreOutGrade, ScoreOutValueSourceType0, and three history sources (a client generation
    audit). Each set of values is a component of its own, referred to."""
    inline: list[str] = []

    def visit(node: Any, where: str, top: bool) -> None:
        if isinstance(node, dict):
            if "enum" in node and not top:
                inline.append(where)
            for key, value in node.items():
                visit(value, f"{where}.{key}", False)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                visit(value, f"{where}[{i}]", False)

    for name, schema in document["components"]["schemas"].items():
        visit(schema, name, True)
    visit(document["paths"], "paths", False)
    assert inline == []
    schemas = document["components"]["schemas"]
    grade = {"$ref": "#/components/schemas/Grade"}
    assert schemas["ScoreOut"]["properties"]["grade"] == schemas["RankedScoreOut"]["properties"]["grade"] == grade
    assert schemas["Grade"]["enum"] == ["A", "B", "C", "D"]


def test_every_operation_declares_the_503_a_forced_quit_answers(document: dict[str, Any]) -> None:
    """service.middleware answers a request a forced quit cuts off 503 `stopping` (57a880a) on any route: the
    document had no 503 on /health/live or /v1/admin/reload, and said nothing of it on the others."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            declared = operation["responses"].get("503")
            assert declared is not None, f"{method} {path}"
            assert "code `stopping`, with a Retry-After header" in declared["description"], f"{method} {path}"
            content = declared["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}, f"{method} {path}"
    live = document["paths"]["/health/live"]["get"]["responses"]["503"]["content"]["application/json"]
    assert live["example"]["error"]["code"] == "stopping"


@pytest.mark.parametrize("limit", [0, 8])
def test_a_503_the_route_does_not_answer_itself_reads_as_a_sentence_of_its_own(limit: int) -> None:
    """Where a route has no 503 of its own, the middleware's is the first thing said: it read "Or the service stopped
    before answering" on /health/live and /v1/admin/reload (which max_concurrent_requests never refuses)."""
    document = create_app(Settings.model_construct(max_concurrent_requests=limit)).openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            said = operation["responses"]["503"]["description"]
            assert not said.startswith("Or ") and said[:1].isupper(), f"{method} {path}: {said}"
    for path, method in (("/health/live", "get"), ("/v1/admin/reload", "post")):
        said = document["paths"][path][method]["responses"]["503"]["description"]
        assert said.startswith("The service stopped before answering (a forced quit): code `stopping`"), said
