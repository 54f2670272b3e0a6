"""Bad input never gets a 500: every failure is the one envelope, with the status and the fields named."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from service_fixtures import (  # noqa: F401 (fixtures, registered by name)
    TODAY,
    TestClient,
    error_envelope,
    fixture_service_client,
    fixture_service_crm,
    fixture_service_dataset,
    fixture_service_model,
    fixture_service_training,
    make_client,
    make_deal,
)

from model.contract import MAX_TEXT_LENGTH
from model.scorer import ScoringModel
from service import Settings, create_app


def _fields(error: dict[str, Any]) -> list[str]:
    return [d["field"] for d in error["details"]]


def _post(client: TestClient, deals: Any, path: str = "/v1/score") -> Any:
    return client.post(path, json={"deals": deals})


def test_every_bad_field_is_listed_in_one_answer(service_client: TestClient) -> None:
    deals = [
        make_deal(deal_id="a", amount=-5, created_at="31/03/2024", effort_hours="six"),
        make_deal(deal_id="b", product="x" * 1_000_000, client={"client_id": True, "industy": "typo"}),
        make_deal(deal_id="a"),
        {"amount": 10},
    ]
    error = error_envelope(_post(service_client, deals), 422, "invalid_input")
    by_field = {d["field"]: d for d in error["details"]}
    assert set(by_field) == {
        "deals[0].amount", "deals[0].created_at", "deals[0].effort_hours", "deals[1].product",
        "deals[1].client.client_id", "deals[1].client.industy", "deals[2].deal_id", "deals[3].deal_id",
    }
    assert by_field["deals[0].amount"] == {"field": "deals[0].amount", "expected": "a number >= 0", "got": "-5"}
    assert by_field["deals[0].created_at"]["got"] == "'31/03/2024'"
    assert "ISO 8601" in by_field["deals[0].created_at"]["expected"]
    assert by_field["deals[1].product"]["expected"] == "text of at most 200 characters"
    assert "1000000 characters" in by_field["deals[1].product"]["got"]
    assert len(by_field["deals[1].product"]["got"]) < 100  # never the whole value back
    assert "also at deals[0]" in by_field["deals[2].deal_id"]["got"]
    assert by_field["deals[3].deal_id"]["got"] == "nothing"


def test_an_id_sent_as_an_integral_float_repeats_its_text_in_the_same_answer(service_client: TestClient) -> None:
    """7.0 is the deal id "7" to the schema, but the batch's own checks on a body that failed its schema skipped it:
    the bad amount was answered, then, once fixed, a second 422 for the repeated deal (a review)."""
    error = error_envelope(_post(service_client, [make_deal(deal_id=7.0, amount=-5), make_deal(deal_id="7"),
                                                  make_deal(deal_id=7.5), make_deal(deal_id="7.5")]),
                           422, "invalid_input")
    assert [(d["field"], d["got"]) for d in error["details"]] == [
        ("deals[0].amount", "-5"), ("deals[2].deal_id", "7.5"), ("deals[1].deal_id", "'7', also at deals[0]")]


DEAL_DATES = "a date from 1970-01-01 to today in the sender's time zone (at most 2026-01-16)"

@pytest.mark.parametrize(("deal", "field", "expected"), [
    (make_deal(amount=-1), "deals[0].amount", "a number >= 0"),
    # Summed into a client's won money once reported won: two near the float limit made it infinite.
    (make_deal(amount=1.7e308), "deals[0].amount", "a number <= 1000000000000000"),
    (make_deal(client={"client_id": "C00010", "won_deals": 2, "won_amount": 2e15, "first_won_at": "2024-01-01",
                       "last_won_at": "2025-01-01"}), "deals[0].client.won_amount", "a number <= 1000000000000000"),
    (make_deal(effort_hours=-0.5), "deals[0].effort_hours", "a number >= 0"),
    (make_deal(amount="12"), "deals[0].amount", "a number"),
    (make_deal(amount=True), "deals[0].amount", "a number"),
    (make_deal(created_at="2024-02-30"), "deals[0].created_at", "a date like 2024-03-31 (ISO 8601)"),
    # A date as a JSON number was answered "text", which names no date (a review).
    (make_deal(created_at=20240331), "deals[0].created_at", "a date like 2024-03-31 (ISO 8601), as text"),
    (make_deal(created_at="1965-01-01"), "deals[0].created_at", DEAL_DATES),
    (make_deal(created_at="2031-01-01"), "deals[0].created_at", DEAL_DATES),
    (make_deal(closed_at="2025-01-01"), "deals[0].closed_at", "a date on or after created_at"),
    (make_deal(status="maybe"), "deals[0].status", "one of 'won', 'lost' or 'open'"),
    (make_deal(deal_id=None), "deals[0].deal_id", "a value (required)"),
    (make_deal(deal_id=10**30), "deals[0].deal_id", "text, or an integer of at most 18 digits"),
    # Blank text is a missing value to the columns: a blank deal_id was scored and answered as null (fuzzing).
    (make_deal(deal_id=""), "deals[0].deal_id", "a non-empty id"),
    (make_deal(deal_id=" \t"), "deals[0].deal_id", "a non-empty id"),
    (make_deal(client={"client_id": " "}), "deals[0].client.client_id", "a non-empty id"),
    (make_deal(client_id="C1", client={"client_id": "C2"}), "deals[0].client.client_id", "the deal's client_id 'C1'"),
    (make_deal(client={"industry": "retail"}), "deals[0].client.client_id", "a value (required)"),
    (make_deal(client={"client_id": "C00010", "won_deals": -2}), "deals[0].client.won_deals", "a number >= 0"),
    (make_deal(client={"client_id": "C00010", "won_deals": 2, "won_amount": 90, "first_won_at": "2024-01-01",
                       "last_won_at": "soon"}), "deals[0].client.last_won_at",
     "a date like 2024-03-31 (ISO 8601)"),
    (make_deal(client={"client_id": "C00010", "products": "payroll"}), "deals[0].client.products", "a list"),
    (make_deal(client="C00010"), "deals[0].client", "an object"),
    (make_deal(client={"client_id": "C00010", "products": [f"p{i}" for i in range(501)]}), "deals[0].client.products",
     "at most 500 items"),
    (make_deal(source={"nested": 1}), "deals[0].source", "text of at most 200 characters, a finite number"),
    (make_deal(source=[1, 2]), "deals[0].source", "text of at most 200 characters, a finite number"),
    (make_deal(source="s" * 201), "deals[0].source", "text of at most 200 characters, a finite number"),
    (make_deal(won_deals=3), "deals[0].won_deals", "no field of this name on a deal"),
    (make_deal(created_day=20000), "deals[0].created_day", "no field of this name on a deal"),
    (make_deal(**{"f" * 65: 1}), "deals[0]." + "f" * 64 + "...", "a field name of at most 64 characters"),
    # A name of exactly 64 characters is a name: quoted whole where its value is bad.
    (make_deal(**{"g" * 64: {"nested": 1}}), "deals[0]." + "g" * 64, "text of at most 200 characters, a finite number"),
    # NUL: PostgreSQL cannot store it; one in a deal id stalled the whole score log (found by a walkthrough).
    (make_deal(deal_id="D\x00"), "deals[0].deal_id", "text without NUL characters"),
    (make_deal(product="pay\x00roll"), "deals[0].product", "text without NUL characters"),
    (make_deal(client={"client_id": "C00010", "industry": "it\x00"}), "deals[0].client.industry",
     "text without NUL characters"),
    (make_deal(source="web\x00"), "deals[0].source", "text of at most 200 characters, a finite number, true, "
     "false or null (text without NUL characters"),
    (make_deal(**{"a\x00b": 1}), "deals[0].a\\u0000b", "a field name without NUL characters"),
    (make_deal(client={"client_id": "C00010", "products": [" "]}), "deals[0].client.products[0]",
     "a product name (not blank)"),
    # Sent history is the client's as of the deal's creation (2025-12-20), and agrees with itself.
    (make_deal(client={"client_id": "C00010", "won_deals": 2, "won_amount": 90, "first_won_at": "2025-01-01",
                       "last_won_at": "2025-12-21"}), "deals[0].client.last_won_at",
     "a date on or before the deal's created_at (2025-12-20)"),
    (make_deal(created_at=None, client={"client_id": "C00010", "won_deals": 2, "won_amount": 90,
                                        "first_won_at": "2026-01-10", "last_won_at": "2026-01-16"}),
     "deals[0].client.last_won_at", "a date on or before the deal's created_at (2026-01-15, today: none was sent)"),
    (make_deal(client={"client_id": "C00010", "won_deals": 2.5, "won_amount": 90, "first_won_at": "2024-01-01",
                       "last_won_at": "2025-01-01"}), "deals[0].client.won_deals",
     "a whole number of won deals"),
    (make_deal(client={"client_id": "C00010", "won_deals": 2, "won_amount": 90, "first_won_at": "2025-06-01",
                       "last_won_at": "2025-01-01"}), "deals[0].client.first_won_at",
     "a date on or before last_won_at (2025-01-01)"),
    (make_deal(client={"client_id": "C00010", "won_deals": 0, "won_amount": 500}), "deals[0].client.won_deals",
     "at least 1"),
    (make_deal(client={"client_id": "C00010", "won_deals": 1, "won_amount": 90, "first_won_at": "2024-01-01",
                       "last_won_at": "2025-01-01"}), "deals[0].client.last_won_at", "the day of first_won_at"),
])
def test_each_kind_of_bad_value_names_its_field(service_client: TestClient, deal: dict[str, Any], field: str,
                                                expected: str) -> None:
    error = error_envelope(_post(service_client, [deal]), 422, "invalid_input")
    assert _fields(error) == [field]
    assert error["details"][0]["expected"].startswith(expected)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinite_numbers_are_refused(service_client: TestClient, literal: str) -> None:
    for field in ("amount", "source"):
        body = json.dumps({"deals": [make_deal(**{field: 0})]}).replace(f'"{field}": 0', f'"{field}": {literal}')
        response = service_client.post("/v1/score", content=body, headers={"content-type": "application/json"})
        error = error_envelope(response, 422, "invalid_input")
        assert _fields(error) == [f"deals[0].{field}"]
        assert "finite" in error["details"][0]["expected"]


def test_too_many_extra_fields_are_refused(service_client: TestClient) -> None:
    deal = make_deal(**{f"extra_{i}": i for i in range(49)})  # and source, campaign_code: 51
    error = error_envelope(_post(service_client, [deal]), 422, "invalid_input")
    assert error["details"][0] == {"field": "deals[0]", "expected": "at most 50 extra fields",
                                   "got": "51 extra fields"}


def test_a_text_value_in_a_numeric_feature_is_refused(service_training: Any) -> None:
    # A model trained with a numeric extra column must get numbers in it.
    model: ScoringModel = service_training.model
    numeric = "amount"
    assert numeric in model.spec.numeric
    app = create_app(Settings(), model=model, clock=lambda: TODAY)
    with make_client(app) as client:
        error = error_envelope(_post(client, [make_deal(amount="lots")]), 422, "invalid_input")
    assert _fields(error) == ["deals[0].amount"]


@pytest.mark.parametrize(("body", "field"), [
    ({"deals": []}, "deals"),
    ({}, "deals"),
    ({"deals": {"deal_id": "a"}}, "deals"),
    ([], "body"),
    ({"deals": [make_deal()], "extra": 1}, "extra"),
])
def test_a_body_of_the_wrong_shape_is_422(service_client: TestClient, body: Any, field: str) -> None:
    error = error_envelope(service_client.post("/v1/score", json=body), 422, "invalid_input")
    assert _fields(error) == [field]


def test_an_empty_batch_says_what_is_expected(service_client: TestClient) -> None:
    error = error_envelope(_post(service_client, []), 422, "invalid_input")
    assert error["details"] == [{"field": "deals", "expected": "1 to 50 deals", "got": "an empty list"}]


@pytest.mark.parametrize("path", ["/v1/score", "/v1/rank", "/v1/gaps"])
def test_too_many_items_is_413_with_the_limit(service_client: TestClient, path: str) -> None:
    items = "clients" if path == "/v1/gaps" else "deals"
    entries = ([{"client_id": f"c{i}"} for i in range(51)] if items == "clients"
               else [make_deal(deal_id=str(i)) for i in range(51)])
    error = error_envelope(service_client.post(path, json={items: entries}), 413, "payload_too_large")
    assert "at most 50" in error["message"]
    assert error["details"][0]["field"] == items


def test_a_body_over_the_byte_limit_is_413_before_parsing(service_model: ScoringModel) -> None:
    app = create_app(Settings(max_body_bytes=2048), model=service_model, clock=lambda: TODAY)
    with make_client(app) as client:
        big = {"deals": [make_deal(deal_id=str(i)) for i in range(40)]}
        error = error_envelope(client.post("/v1/score", json=big), 413, "payload_too_large")
        assert "2,048 bytes" in error["message"]

        def chunks() -> Any:  # no content-length: counted while streaming
            for _ in range(10):
                yield b" " * 1024

        streamed = client.post("/v1/score", content=chunks(), headers={"content-type": "application/json"})
        error_envelope(streamed, 413, "payload_too_large")


@pytest.mark.parametrize("body", [b"{", b'{"deals": [}', b"\xff\xfe", b"", b"deals=1"])
def test_malformed_json_is_400(service_client: TestClient, body: bytes) -> None:
    response = service_client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    error = error_envelope(response, 400, "malformed_json")
    assert _fields(error) == ["body"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_not_sent_as_json_is_415(service_client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = service_client.post("/v1/score", content=json.dumps({"deals": [make_deal()]}), headers=headers)
    error = error_envelope(response, 415, "unsupported_media_type")
    assert _fields(error) == ["content-type"]


@pytest.mark.parametrize("charset", ["utf-8", "UTF8", "us-ascii"])
def test_json_with_a_charset_is_fine(service_client: TestClient, charset: str) -> None:
    response = service_client.post("/v1/score", content=json.dumps({"deals": [make_deal()]}),
                                   headers={"content-type": f"application/json; charset={charset}"})
    assert response.status_code == 200


@pytest.mark.parametrize(("client", "fields"), [
    ({"won_amount": 500}, ["deals[0].client.won_deals"]),
    ({"won_deals": 2, "last_won_at": "2025-11-01"},
     ["deals[0].client.first_won_at", "deals[0].client.won_amount"]),
])
def test_sent_history_must_be_whole(service_client: TestClient, client: dict[str, Any], fields: list[str]) -> None:
    """Sent history replaces the model's history of the client as a whole: part of it would be mixed with
    the model's (0 wins sent, and the model's "last win 6 days ago" kept)."""
    error = error_envelope(_post(service_client, [make_deal(client={"client_id": "C00010", **client})]), 422,
                           "invalid_input")
    assert sorted(_fields(error)) == fields


@pytest.mark.parametrize(("headers", "field"), [
    ({"content-type": "application/json", "content-encoding": "gzip"}, "content-encoding"),
    ({"content-type": "application/json; charset=latin-1"}, "content-type"),
])
def test_a_compressed_or_non_utf8_body_is_415_not_malformed_json(service_client: TestClient,
                                                                 headers: dict[str, str], field: str) -> None:
    import gzip

    body = json.dumps({"deals": [make_deal(deal_id="Zoë")]}).encode("latin-1")
    if "content-encoding" in headers:
        body = gzip.compress(body)
    error = error_envelope(service_client.post("/v1/score", content=body, headers=headers), 415,
                           "unsupported_media_type")
    assert _fields(error) == [field]


@pytest.mark.parametrize("path", ["/v1/score/", "/v1/model/", "/health/ready/"])
def test_a_trailing_slash_is_404_in_the_envelope_not_a_redirect(service_client: TestClient, path: str) -> None:
    response = service_client.request("POST" if "score" in path else "GET", path, json={"deals": [make_deal()]},
                                      follow_redirects=False)
    error_envelope(response, 404, "not_found")


def test_an_unknown_rank_order_is_422_naming_the_query_parameter(service_client: TestClient) -> None:
    response = service_client.post("/v1/rank", params={"by": "luck"}, json={"deals": [make_deal()]})
    error = error_envelope(response, 422, "invalid_input")
    assert _fields(error) == ["query.by"]
    assert "expected_value" in error["details"][0]["expected"]


DIGITS = "a whole number written in digits (like 5)"


# pydantic alone read "1_0" as 10 and "5.0" as 5.
@pytest.mark.parametrize(("top", "expected"), [
    ("abc", DIGITS), ("2.5", DIGITS), ("1_0", DIGITS), ("5.0", DIGITS), ("+5", DIGITS), (" 5", DIGITS), ("٥", DIGITS),
    ("0", "a number >= 1"), ("51", "a number <= 50")])
def test_a_bad_gap_count_is_422_in_our_words(service_client: TestClient, top: str, expected: str) -> None:
    response = service_client.post("/v1/gaps", params={"top": top}, json={"clients": [{"client_id": "a"}]})
    error = error_envelope(response, 422, "invalid_input")
    assert error["details"] == [{"field": "query.top", "expected": expected, "got": f"'{top}'"}]


def test_unknown_routes_and_methods_use_the_envelope(service_client: TestClient) -> None:
    # Each names what was wrong, as every error's details do (they were empty: the new-user audit).
    assert error_envelope(service_client.get("/v1/nothing"), 404, "not_found")["details"] == [
        {"field": "path", "expected": "a path the API serves (GET /openapi.json lists them)", "got": "'/v1/nothing'"}]
    assert error_envelope(service_client.get("/v1/score"), 405, "method_not_allowed")["details"] == [
        {"field": "method", "expected": "one of POST", "got": "GET"}]


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/v1/score", {"POST"}), ("TRACE", "/health/live", {"GET", "HEAD"}),
    ("DELETE", "/v1/model", {"GET", "HEAD"}),
])
def test_a_405_names_the_allowed_methods(service_client: TestClient, method: str, path: str,
                                         allowed: set[str]) -> None:
    # RFC 9110 (15.5.6): a 405 must carry Allow; the envelope used to drop Starlette's header (fuzzing).
    response = service_client.request(method, path)
    error = error_envelope(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    assert error["details"] == [{"field": "method", "expected": f"one of {response.headers['allow']}", "got": method}]


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/v1/model"])
def test_head_answers_as_get_without_a_body(service_client: TestClient, path: str) -> None:
    got, head = service_client.get(path), service_client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b"" and head.headers["content-length"] == got.headers["content-length"]
    assert head.headers["content-type"] == got.headers["content-type"] and head.headers["x-request-id"]
    refused = service_client.head("/v1/score")  # a POST route: 405 as for GET, without the body
    assert refused.status_code == 405 and refused.headers["allow"] == "POST" and refused.content == b""


def test_history_up_to_the_creation_day_is_taken(service_client: TestClient) -> None:
    deal = make_deal(client={"client_id": "C00010", "won_deals": 2, "won_amount": 900.0,
                             "first_won_at": "2024-03-01", "last_won_at": "2025-12-20"})
    response = _post(service_client, [deal])
    assert response.status_code == 200, response.text
    assert response.json()["scores"][0]["history_source"] == "request"


def test_a_blank_client_id_in_gaps_is_refused(service_client: TestClient) -> None:
    response = service_client.post("/v1/gaps", json={"clients": [{"client_id": ""}]})
    error = error_envelope(response, 422, "invalid_input")
    assert error["details"] == [{"field": "clients[0].client_id", "expected": "a non-empty id", "got": "''"}]


# Found by tests/test_service_fuzz.py: extreme finite numbers overflowed inside the scorer (a feature near the float
# maximum rounded to 4 places for the reasons; an expected value divided by a subnormal effort_hours), a 500 under
# the suite's "error" warning filter.
@pytest.mark.parametrize("deal", [
    {"deal_id": "x", "client": {"client_id": "X", "won_deals": 1.7976931348623157e308, "won_amount": 1.0,
                                "first_won_at": "2024-01-01", "last_won_at": "2025-01-01"}},
    make_deal(amount=None, effort_hours=2.225073858507e-311),
], ids=["huge-feature", "subnormal-effort-hours"])
def test_extreme_finite_numbers_score_without_overflow(service_client: TestClient, deal: dict[str, Any]) -> None:
    response = service_client.post("/v1/rank", params={"by": "value_per_hour"}, json={"deals": [deal]})
    assert response.status_code == 200, response.text
    score = response.json()["scores"][0]
    assert 0 <= score["p_win"] <= 1
    # No hours: none; hours so small that the division overflows: the largest float (ranked first, as infinity).
    assert score["value_per_hour"] == (None if "effort_hours" not in deal else 1.7976931348623157e308)
    if "client" in deal:  # the huge count sent: shown as sent when it is a reason, not as infinity
        won_deals = [r["value"] for r in score["reasons"] if r["feature"] == "client_won_deals"]
        assert won_deals in ([], [1.7976931348623157e308])


@pytest.mark.parametrize(("client", "fields"), [
    ({"won_deals": 0, "last_won_at": "2025-01-01"}, ["clients[0].won_deals"]),
    ({"won_amount": 50}, ["clients[0].won_deals"]),
    ({"won_deals": 2, "won_amount": 9.0, "first_won_at": "2025-03-01", "last_won_at": "2025-01-01"},
     ["clients[0].first_won_at"]),
])
def test_a_clients_history_in_gaps_is_checked_as_in_a_deal(service_client: TestClient, client: dict[str, Any],
                                                           fields: list[str]) -> None:
    """The same client object was refused inside a deal and accepted by /v1/gaps (where it is not used)."""
    response = service_client.post("/v1/gaps", json={"clients": [{"client_id": "a", **client}]})
    assert _fields(error_envelope(response, 422, "invalid_input")) == fields


def test_a_clients_win_in_gaps_must_be_dated_by_today_in_the_senders_time_zone(service_client: TestClient) -> None:
    """A win dated tomorrow (UTC) was refused for a client sent alone, though its `since` and every deal date
    accept the day of slack a sender ahead of UTC needs."""
    client = {"client_id": "a", "won_deals": 1, "won_amount": 9.0, "first_won_at": "2026-01-16",
              "last_won_at": "2026-01-16"}
    assert service_client.post("/v1/gaps", json={"clients": [client]}).status_code == 200
    later = {**client, "first_won_at": "2026-01-17", "last_won_at": "2026-01-17"}  # beyond the schema's slack
    error = error_envelope(service_client.post("/v1/gaps", json={"clients": [later]}), 422, "invalid_input")
    assert set(_fields(error)) == {"clients[0].first_won_at", "clients[0].last_won_at"}


def test_duplicate_clients_in_gaps_are_refused(service_client: TestClient) -> None:
    response = service_client.post("/v1/gaps", json={"clients": [{"client_id": "a"}, {"client_id": "a"}]})
    assert _fields(error_envelope(response, 422, "invalid_input")) == ["clients[1].client_id"]


def test_an_internal_error_is_500_without_input_or_traceback(service_model: ScoringModel,
                                                              caplog: pytest.LogCaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(Settings(), model=service_model, clock=lambda: TODAY)

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret-deal-value in a traceback")

    monkeypatch.setattr(service_model, "score", explode)  # a failure inside the model pass
    with make_client(app) as client, caplog.at_level(logging.ERROR, logger="dealscore.service"):
        response = client.post("/v1/score", json={"deals": [make_deal(deal_id="secret-deal-value")]},
                               headers={"X-Request-ID": "boom-1"})
    error = error_envelope(response, 500, "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert error["details"] == []
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == "boom-1"]
    assert logged and logged[0].exc_info is not None and logged[0].levelname == "ERROR"


def test_a_flood_of_bad_fields_is_answered_with_the_first_hundred(service_client: TestClient) -> None:
    """A 4 MB body of 420,000 bad extra fields was answered with every one of them listed: 73 MB, 10 s of
    CPU and 2 GB the worker kept. Past a few thousand failures the first items are checked one by one
    instead, and the answer lists the first hundred problems and says there are more."""
    from service.dataplane import CONVERTED_ERRORS_AT_MOST
    from service.errors import MAX_LISTED_PROBLEMS

    deals = [{"deal_id": f"D{i}", **{f"f{k}": [] for k in range(40)}} for i in range(50)]  # max_batch 50 here
    assert 3 * 40 * 50 > CONVERTED_ERRORS_AT_MOST  # three failures per field: text, number, flag
    response = _post(service_client, deals)
    error = error_envelope(response)
    assert error["message"] == "many problems in the request: the first 100 found are listed"
    assert len(error["details"]) == MAX_LISTED_PROBLEMS
    assert _fields(error)[:41] == [f"deals[0].f{k}" for k in range(40)] + ["deals[1].f0"]
    assert error["details"][0]["got"] == "a list of 0 items"
    assert len(response.content) < 30_000
    # Too many extra fields per deal: the batch check names each deal, before any of its fields.
    wide = [{"deal_id": f"D{i}", **{f"f{k}": [] for k in range(60)}} for i in range(50)]
    error = error_envelope(_post(service_client, wide))
    assert error["details"][0] == {"field": "deals[0]", "expected": "at most 50 extra fields", "got": "60 extra fields"}
    assert _fields(error)[:2] == ["deals[0]", "deals[1]"] and len(error["details"]) == MAX_LISTED_PROBLEMS
    # What only Python's json reads (NaN) and writes (an integer past 64 bits) in a flood: a 422 too.
    odd = [{**deals[0], "amount": float("nan"), "big": 123456789012345678901234567890}, *deals[1:]]
    body = json.dumps({"deals": odd}).encode()
    error = error_envelope(service_client.post("/v1/score", content=body, headers={"content-type": "application/json"}))
    assert "deals[0].amount" in _fields(error)
    # A flood of the request's own unknown fields, its deals fine: the fields are named.
    flood = {"deals": [make_deal()], **{f"x{k}": 1 for k in range(6000)}}
    error = error_envelope(_post_body(service_client, flood))
    assert _fields(error)[:2] == ["x0", "x1"] and len(error["details"]) == MAX_LISTED_PROBLEMS


def _post_body(client: TestClient, body: dict[str, Any]) -> Any:
    return client.post("/v1/score", content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def test_a_few_more_problems_than_are_listed_are_all_counted(service_client: TestClient) -> None:
    deals = [make_deal(deal_id=f"D{i}", amount=-1.0, effort_hours=-1.0) for i in range(30)] + [
        make_deal(deal_id=f"E{i}", amount="ten") for i in range(20)]
    error = error_envelope(_post(service_client, deals))
    assert error["message"] == "80 problems in the request"
    assert len(error["details"]) == 80
    more = [make_deal(deal_id=f"D{i}", amount=-1.0, effort_hours=-1.0, campaign_code=[1]) for i in range(50)]
    error = error_envelope(_post(service_client, more))
    assert error["message"] == "150 problems in the request (the first 100 listed)"
    assert _fields(error)[:3] == ["deals[0].amount", "deals[0].effort_hours", "deals[0].campaign_code"]
    # A field both the schema and a batch check find bad, past the listed hundred, is counted once.
    history = [make_deal(deal_id=f"H{i}", amount=-1.0, effort_hours=-1.0,
                         client={"client_id": "C00010", "won_deals": []}) for i in range(50)]
    error = error_envelope(_post(service_client, history))
    assert error["message"] == "150 problems in the request (the first 100 listed)"


@pytest.mark.parametrize("path", ["/v1/score", "/v1/gaps"])
def test_a_lone_surrogate_in_a_field_is_explained(service_client: TestClient, path: str) -> None:
    """Refused by the JSON parser itself as "unexpected end of hex escape", which told the sender nothing."""
    items = "deals" if path == "/v1/score" else "clients"
    body = '{"' + items + '": [{"deal_id": "\\ud800X", "client_id": "\\ud800", "created_at": "\\ud800"}]}'
    response = service_client.post(path, content=body, headers={"content-type": "application/json"})
    error = error_envelope(response, 400, "malformed_json")
    assert "must come in a high-low pair" in error["details"][0]["got"]


def test_a_body_that_starts_with_a_byte_order_mark_is_read(service_client: TestClient) -> None:
    """Some Windows tools write a UTF-8 BOM; RFC 8259 lets a parser ignore it. It was a 400 "expected value at
    line 1 column 1", which named nothing the caller could see."""
    body = json.dumps({"deals": [make_deal()]}).encode()
    plain = service_client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    marked = service_client.post("/v1/score", content=b"\xef\xbb\xbf" + body,
                                 headers={"content-type": "application/json"})
    assert marked.status_code == 200, marked.text
    assert marked.json()["scores"] == plain.json()["scores"]


@pytest.mark.parametrize(("body", "message", "hint"), [
    (b'{"deals": [{"deal_id": "\\ud800X"}]}', "the request body is not valid JSON", "high-low pair"),
    (b'{"deals": ' + b"[" * 300 + b"]" * 300 + b"}", "the request body is JSON beyond what the service reads",
     "nested deeper than the parser reads"),
    (b'{"deals": [{"deal_id": "a", "amount": ' + b"1" * 5000 + b"}]}",
     "the request body is JSON beyond what the service reads", "more digits than a 64-bit float holds"),
])
def test_the_parsers_own_limits_are_explained(service_client: TestClient, body: bytes, message: str,
                                              hint: str) -> None:
    """Deep nesting and a 5,000-digit number are valid JSON, but were answered "not valid JSON"; a lone
    surrogate escape was "unexpected end of hex escape"."""
    error = error_envelope(service_client.post("/v1/score", content=body,
                                               headers={"content-type": "application/json"}), 400, "malformed_json")
    assert error["message"] == message and hint in error["details"][0]["got"]


def test_the_extra_field_limits_are_inclusive(service_client: TestClient) -> None:
    # 48 here, and make_deal's source and campaign_code: exactly 50, one of them named with exactly 64 characters.
    deal = make_deal(**{f"extra_{i}": i for i in range(47)}, **{"f" * 64: 1})
    response = _post(service_client, [deal])
    assert response.status_code == 200, response.text
    assert "f" * 64 in response.json()["ignored_fields"]


def test_a_sent_history_with_wins_needs_their_money_and_dates(service_client: TestClient) -> None:
    one_win = make_deal(client={"client_id": "C00010", "won_deals": 1})
    error = error_envelope(_post(service_client, [one_win]), 422, "invalid_input")
    assert _fields(error) == [f"deals[0].client.{name}" for name in ("won_amount", "first_won_at", "last_won_at")]
    # No wins and no money is a whole history: a client that has never won.
    none_won = make_deal(client={"client_id": "C00010", "won_deals": 0, "won_amount": 0})
    response = _post(service_client, [none_won])
    assert response.status_code == 200, response.text
    assert response.json()["scores"][0]["history_source"] == "request"


def test_a_whole_number_is_quoted_as_sent(service_client: TestClient) -> None:
    """The checks after the schema quoted a sent 0 as "0.0" and 5 as "5.0" (an API review)."""
    deals = [make_deal(deal_id="a", client={"client_id": "C00010", "won_deals": 0, "won_amount": 500}),
             make_deal(deal_id="b", won_deals=5)]
    error = error_envelope(_post(service_client, deals), 422, "invalid_input")
    got = {d["field"]: d["got"] for d in error["details"]}
    assert got == {"deals[0].client.won_deals": "0", "deals[1].won_deals": "5"}


def test_a_history_count_too_large_for_a_float_is_a_422_not_a_500(service_client: TestClient) -> None:
    # 10**309 is valid JSON, an integer float() cannot hold; the batch checks of client history read it too.
    huge = "1" + "0" * 309
    client = '{"client_id": "C1", "won_deals": ' + huge + "}"
    body = '{"deals": [{"deal_id": "x", "client_id": "C1", "client": ' + client + "}]}"
    response = service_client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    error = error_envelope(response, 422, "invalid_input")
    assert "deals[0].client.won_deals" in _fields(error)
    gaps = service_client.post("/v1/gaps", content='{"clients": [' + client + "]}",
                               headers={"content-type": "application/json"})
    assert "clients[0].won_deals" in _fields(error_envelope(gaps, 422, "invalid_input"))


def test_a_value_is_quoted_as_json_wrote_it(service_client: TestClient) -> None:
    """What came is said in the caller's terms: JSON's true, not Python's True."""
    error = error_envelope(_post(service_client, [make_deal(amount=True)]), 422, "invalid_input")
    assert error["details"] == [{"field": "deals[0].amount", "expected": "a number", "got": "true"}]


def test_an_integer_id_sent_with_a_decimal_point_is_the_same_id(service_client: TestClient) -> None:
    # A CRM's float64 column sends 2007.0; JSON Schema counts it an integer, and it is the deal 2007.
    as_float = service_client.post("/v1/score", json={"deals": [make_deal(deal_id=2007.0, client_id=10.0)]})
    as_int = service_client.post("/v1/score", json={"deals": [make_deal(deal_id=2007, client_id=10)]})
    assert as_float.status_code == 200, as_float.text
    assert as_float.json()["scores"][0]["deal_id"] == "2007"
    assert as_float.json()["scores"][0]["p_win"] == as_int.json()["scores"][0]["p_win"]
    error = error_envelope(_post(service_client, [make_deal(deal_id=2007.5)]), 422, "invalid_input")
    assert error["details"] == [{"field": "deals[0].deal_id", "expected": "text, or a whole number (an integer id)",
                                 "got": "2007.5"}]
    # From 2**53 the number parsed may not be the one sent: ...678.0 was answered and logged as ...680.
    for sent in ("123456789012345678.0", "9007199254740992.0", "-9007199254740993.0"):
        body = '{"deals": [{"deal_id": ' + sent + "}]}"
        response = service_client.post("/v1/score", content=body, headers={"content-type": "application/json"})
        assert error_envelope(response, 422, "invalid_input")["details"][0]["expected"].startswith(
            "an id of 16 digits or more as an integer or text"), sent
    edge = service_client.post("/v1/score", json={"deals": [make_deal(deal_id=9007199254740991.0)]})
    assert edge.json()["scores"][0]["deal_id"] == "9007199254740991"
    # 18 digits are the most an integer id may have, 19 too many.
    eighteen = service_client.post("/v1/score", json={"deals": [make_deal(deal_id=999_999_999_999_999_999)]})
    assert eighteen.status_code == 200 and eighteen.json()["scores"][0]["deal_id"] == "999999999999999999"
    # A 19-digit integer is the integer rule's alone: the float's "not with a decimal point" had been joined to it.
    body = '{"deals": [{"deal_id": 1234567890123456789}]}'
    response = service_client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    assert error_envelope(response, 422, "invalid_input")["details"] == [
        {"field": "deals[0].deal_id", "expected": "text, or an integer of at most 18 digits",
         "got": "1234567890123456789"}]



def _with_text(field: str, text: str) -> dict[str, Any]:
    """make_deal with `text` in one text field: a deal's own, an extra one, or one of its client's."""
    if field == "client.industry":
        return make_deal(client={"client_id": "C00010", "industry": text})
    if field == "client.products[0]":
        return make_deal(client={"client_id": "C00010", "products": [text]})
    return make_deal(**{field: text})


@pytest.mark.parametrize(("field", "expected"), [
    ("deal_id", "text of at most 200 characters"),
    ("product", "text of at most 200 characters"),
    ("source", "text of at most 200 characters, a finite number"),  # an extra field
    ("client.industry", "text of at most 200 characters"),
    ("client.products[0]", "text of at most 200 characters"),
])
def test_text_of_exactly_the_longest_length_is_taken_and_one_character_more_is_not(
        service_client: TestClient, field: str, expected: str) -> None:
    longest = _post(service_client, [_with_text(field, "x" * MAX_TEXT_LENGTH)])
    assert longest.status_code == 200, longest.text
    error = error_envelope(_post(service_client, [_with_text(field, "x" * (MAX_TEXT_LENGTH + 1))]), 422,
                           "invalid_input")
    assert _fields(error) == [f"deals[0].{field}"]
    assert error["details"][0]["expected"].startswith(expected)


def test_a_request_the_server_cancels_is_answered_503_in_the_envelope_and_counted() -> None:
    """A forced quit cancels the requests still running (service.supervisor.cut_off): uvicorn answered each with a
    plain-text 500, no envelope, no request id, and the service logged and counted nothing of it."""
    import asyncio

    from service.metrics import ServiceMetrics
    from service.middleware import RequestContextMiddleware

    async def never_answers(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(3600)

    async def answers_half(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(3600)

    async def cut_off(app: Any) -> tuple[list[dict[str, Any]], BaseException | None]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "method": "POST", "path": "/v1/score", "root_path": "",
                 "headers": [(b"x-request-id", b"cut-1")]}
        request = asyncio.create_task(app(scope, receive, send))
        await asyncio.sleep(0.01)
        request.cancel()
        try:
            await request
        except BaseException as raised:  # noqa: BLE001 (what the server would see)
            return sent, raised
        return sent, None

    metrics = ServiceMetrics()
    sent, raised = asyncio.run(cut_off(RequestContextMiddleware(never_answers, metrics)))
    assert raised is None  # answered, and uvicorn has nothing left to answer
    start, body = sent
    headers = dict(start["headers"])
    assert (start["status"], headers[b"retry-after"], headers[b"x-request-id"]) == (503, b"5", b"cut-1")
    assert headers[b"content-type"] == b"application/json"
    error = json.loads(body["body"])
    assert (error["error"]["code"], error["request_id"]) == ("stopping", "cut-1")
    assert any('status="503"' in line for line in metrics.lines())

    sent, raised = asyncio.run(cut_off(RequestContextMiddleware(answers_half)))
    assert isinstance(raised, asyncio.CancelledError)  # an answer begun cannot be replaced: uvicorn ends the connection
    assert [m["status"] for m in sent] == [200]


@pytest.mark.parametrize(("amount", "got"), [(1e300, "1e+300"), (2e15, "2000000000000000")])
def test_an_amount_out_of_range_is_quoted_as_python_writes_it(service_client: TestClient, amount: float,
                                                             got: str) -> None:
    """model.contract.number_text: a whole number below 1e16 reads as its digits, a larger one as Python writes it
    (1e300 written out is 301 digits, cut short in the error: no reader could tell it from any other)."""
    response = service_client.post("/v1/score", json={"deals": [make_deal(amount=amount)]})
    error = error_envelope(response, 422, "invalid_input")
    assert [(d["field"], d["got"]) for d in error["details"]] == [("deals[0].amount", got)]
