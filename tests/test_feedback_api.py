"""The feedback routes over HTTP: bodies, answers, the error envelope, and 503 when the database is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_feedback_helpers import TestClient, batch, deal, down_url, feedback_app, running

from service.feedback import Feedback


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[tuple[TestClient, Feedback]]:
    with running(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "spool") as feedback:
        with TestClient(feedback_app(feedback, live_version=lambda: "v1")) as client:
            yield client, feedback


def test_outcomes_round_trip_and_idempotency(api: tuple[TestClient, Feedback]) -> None:
    client, feedback = api
    body = {"outcomes": [{"deal_id": "D1", "status": "won", "amount": 1200, "closed_at": "2025-03-01",
                          "client_id": 42}, {"deal_id": 7, "status": "lost"}]}
    first = client.post("/v1/outcomes", json=body)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert (answer["received"], answer["created"], answer["updated"], answer["unchanged"]) == (2, 2, 0, 0)
    assert [(r["deal_id"], r["client_history"]) for r in answer["results"]] == [("D1", True), ("7", False)]
    again = client.post("/v1/outcomes", json=body).json()
    assert (again["created"], again["unchanged"]) == (0, 2)
    body["outcomes"][0]["amount"] = 1300
    changed = client.post("/v1/outcomes", json=body).json()
    assert changed["results"][0] == {"deal_id": "D1", "result": "updated", "revision": 2, "client_history": True}
    assert feedback.book.wins_of("42")[0].amount == 1300.0


def test_invalid_bodies_list_every_problem_in_the_envelope(api: tuple[TestClient, Feedback]) -> None:
    client, _ = api
    answer = client.post("/v1/outcomes", json={"outcomes": [
        {"deal_id": "D1", "status": "open", "amount": -1}, {"status": "won", "closed_at": "31/03/2025", "x": 1}]})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_input"
    fields = {d["field"]: d["expected"] for d in error["details"]}
    assert fields["outcomes[0].status"] == "one of 'won' or 'lost'"
    assert fields["outcomes[0].amount"] == "a number >= 0"
    assert fields["outcomes[1].deal_id"] == "a value (required)"
    assert fields["outcomes[1].closed_at"] == "a date like 2024-03-31 (ISO 8601)"
    as_number = client.post("/v1/outcomes", json={"outcomes": [{"deal_id": "D1", "status": "won",
                                                                "closed_at": 20250331}]}).json()["error"]
    assert as_number["details"] == [{"field": "outcomes[0].closed_at", "got": "20250331",
                                     "expected": "a date like 2024-03-31 (ISO 8601), as text"}]
    assert fields["outcomes[1].x"] == "no such field (see the schema)"
    early = client.post("/v1/outcomes", json={"outcomes": [{"deal_id": "D1", "status": "won",
                                                            "closed_at": "1969-12-31"}]}).json()["error"]
    # As a deal's closed_at (the scoring API refuses it there too).
    assert early["details"][0]["field"] == "outcomes[0].closed_at"
    assert early["details"][0]["expected"] == "a date from 1970-01-01 on"
    empty = client.post("/v1/outcomes", json={"outcomes": []}).json()["error"]["details"]
    assert empty[0] == {"field": "outcomes", "expected": "at least 1 item", "got": "a list of 0 items"}


def test_a_bad_field_and_a_repeated_deal_are_listed_in_one_answer(api: tuple[TestClient, Feedback]) -> None:
    """The batch's checks (a deal sent twice, a closed_at in the future) ran only once the schema had passed: a CRM
    fixing the one bad status it was told of got a second 422 for the repeated deal. As /v1/score, one answer."""
    client, _ = api
    answer = client.post("/v1/outcomes", json={"outcomes": [
        {"deal_id": "D1", "status": "open"}, {"deal_id": "D2", "status": "won", "closed_at": "2999-01-01"},
        {"deal_id": " D1 ", "status": "lost"}, {"deal_id": 7, "status": "won"}, {"deal_id": "7", "status": "x"}]})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert [(d["field"], d["got"]) for d in error["details"]] == [
        ("outcomes[0].status", "'open'"), ("outcomes[4].status", "'x'"),
        ("outcomes[1].closed_at", "'2999-01-01'"), ("outcomes[2].deal_id", "'D1', also at outcomes[0]"),
        ("outcomes[4].deal_id", "'7', also at outcomes[3]")]
    assert error["message"] == "5 problems in the request"


@pytest.mark.parametrize("sent", [
    # The schema reads 7.0 as the id "7" (an integer id from a float64 export), so the store refused the pair.
    b'{"outcomes":[{"deal_id":7.0,"status":"x"},{"deal_id":"7","status":"won"}]}',
    # NaN and a number beyond a float's range: JSON pydantic reads (and the schema refuses), orjson does not.
    b'{"outcomes":[{"deal_id":"D1","status":"won","amount":NaN},{"deal_id":"D1","status":"won"}]}',
    b'{"outcomes":[{"deal_id":"D1","status":"won"},{"deal_id":"D1","status":"won","amount":1e999}]}',
    b'{"outcomes":[{"deal_id":"D1","status":"won"},{"deal_id":"D1","status":"won","client_id":100000000000000000000}]}',
])
def test_a_repeated_deal_is_listed_with_the_schema_problems_however_its_body_is_written(
        api: tuple[TestClient, Feedback], sent: bytes) -> None:
    """The raw body's checks read the deal ids and the JSON as the schema does: a CRM fixing the one field it was
    told of got a second 422 for the repeated deal."""
    client, _ = api
    answer = client.post("/v1/outcomes", content=sent, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert [d["field"] for d in answer.json()["error"]["details"]][-1] == "outcomes[1].deal_id", answer.text


def test_an_id_or_a_date_the_schema_refuses_is_no_repeat_nor_a_future_date(api: tuple[TestClient, Feedback]) -> None:
    """An id the schema refuses (beyond 18 digits as a number) is not said to repeat another."""
    client, _ = api
    answer = client.post("/v1/outcomes", json={"outcomes": [
        {"deal_id": 10**19, "status": "won"}, {"deal_id": "10000000000000000000", "status": "won"},
        {"deal_id": "D3", "status": "won", "closed_at": "2999-01-01" + " " * 40}]})
    assert answer.status_code == 422
    assert [d["field"] for d in answer.json()["error"]["details"]] == ["outcomes[0].deal_id", "outcomes[2].closed_at"]


def test_a_lone_surrogate_is_explained_as_the_scoring_routes_explain_it(api: tuple[TestClient, Feedback]) -> None:
    """Once a 500 (the 422 quoted it and a lone surrogate is not UTF-8), then a 422; the scoring routes answer it as
    the JSON defect it is, and so do these now."""
    client, _ = api
    for path, body in [
            ("/v1/outcomes", '{"outcomes": [{"deal_id": "X\\ud800", "status": "won"}]}'),
            ("/v1/judgements", '{"manager": "m", "above_deal_id": "D1", "below_deal_id": "D2", "note": "\\ud800"}')]:
        answer = client.post(path, content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 400, answer.text
        (detail,) = answer.json()["error"]["details"]
        assert detail["field"] == "body" and "must come in a high-low pair" in detail["got"]


@pytest.mark.parametrize(("body", "says"), [
    (b'{"outcomes": [{"deal_id": "a",}]}', "trailing comma at line 1 column 31"),
    (b'{"outcomes": ' + b"[" * 1000 + b"]" * 1000 + b"}", "nested deeper than the parser reads"),
])
def test_json_defects_are_located_as_the_scoring_routes_locate_them(api: tuple[TestClient, Feedback], body: bytes,
                                                                    says: str) -> None:
    """FastAPI's parse said "Expecting property name enclosed in double quotes" with no position, and called JSON
    nested too deep "could not be decoded" (an API review)."""
    client, _ = api
    answer = client.post("/v1/outcomes", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "malformed_json"
    assert says in answer.json()["error"]["details"][0]["got"]


def test_outcome_problems_past_a_hundred_are_counted_not_listed(api: tuple[TestClient, Feedback]) -> None:
    client, _ = api
    answer = client.post("/v1/outcomes", json={"outcomes": [{"deal_id": f"D{i}", "status": "open"}
                                                            for i in range(150)]})
    error = answer.json()["error"]
    assert answer.status_code == 422 and error["message"] == "150 problems in the request (the first 100 listed)"
    assert [d["field"] for d in error["details"]] == [f"outcomes[{i}].status" for i in range(100)]


@pytest.mark.parametrize("path", ["/v1/outcomes", "/v1/judgements"])
def test_a_body_over_the_limit_is_413_before_it_is_parsed(tmp_path: Path, path: str) -> None:
    """max_body_bytes held for the scoring routes only: 4.6 MB of outcomes, or 300 MB of whitespace, was read
    and parsed whole."""
    from service.settings import Settings

    with running(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "spool") as feedback:
        app = feedback_app(feedback, settings=Settings(max_body_bytes=2048))
        with TestClient(app) as client:
            big = {"outcomes": [{"deal_id": f"D{i}", "status": "won"} for i in range(200)]}
            answer = client.post(path, json=big)
            assert answer.status_code == 413, answer.text
            error = answer.json()["error"]
            assert error["code"] == "payload_too_large" and error["details"][0]["field"] == "body"
            small = client.post("/v1/outcomes", json={"outcomes": [{"deal_id": "D1", "status": "won"}]})
            assert small.status_code == 200, small.text
        assert len(feedback.book) == 1


@pytest.mark.parametrize("body", [b"\xff\xfe{", b'{"outcomes": [}', b"{"])
@pytest.mark.parametrize("path", ["/v1/outcomes", "/v1/judgements"])
def test_a_body_that_is_not_json_is_400_malformed_json(api: tuple[TestClient, Feedback], path: str,
                                                       body: bytes) -> None:
    # As the scoring routes answer it. Bytes that are not UTF-8 were FastAPI's undeclared 400 "http_error",
    # and broken JSON a 422 located at a character offset (fuzzing).
    client, _ = api
    answer = client.post(path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "malformed_json"
    assert [(d["field"], d["expected"]) for d in error["details"]] == [("body", "a JSON object")]


@pytest.mark.parametrize("path", ["/v1/outcomes", "/v1/judgements"])
def test_feedback_bodies_are_refused_as_the_scoring_routes_refuse_them(api: tuple[TestClient, Feedback],
                                                                        path: str) -> None:
    """A body not declared as JSON is 415 naming content-type, and an empty one 400 malformed_json: the answers
    /v1/score gives (tests/test_service_errors.py); they were 422 here."""
    client, _ = api
    wrong_type = client.post(path, content=b"{}", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415, wrong_type.text
    assert wrong_type.json()["error"]["details"] == [
        {"field": "content-type", "expected": "application/json", "got": "'text/plain'"}]
    empty = client.post(path, content=b"", headers={"content-type": "application/json"})
    assert empty.status_code == 400, empty.text
    assert empty.json()["error"]["code"] == "malformed_json"


def test_judgements_are_validated_and_recorded(api: tuple[TestClient, Feedback]) -> None:
    client, feedback = api
    refused = client.post("/v1/judgements", json={"manager": "Elena", "above_deal_id": "D1", "below_deal_id": "D1"})
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == [
        {"field": "below_deal_id", "expected": "a deal other than above_deal_id", "got": "'D1', the same deal"}]
    unscored = client.post("/v1/judgements", json={"manager": "Elena", "above_deal_id": "D1", "below_deal_id": "D2"})
    assert [d["field"] for d in unscored.json()["error"]["details"]] == ["above_deal_id", "below_deal_id"]
    feedback.record_scores("r1", "v1", [deal("D1"), deal("D2")], batch([0.2, 0.7], [20.0, 70.0], ["C", "A"]))
    created = client.post("/v1/judgements", json={"manager": "Elena", "above_deal_id": "D1", "below_deal_id": "D2",
                                                  "note": "the client called back"})
    assert created.status_code == 200 and created.json()["result"] == "created"
    missing = client.post("/v1/judgements", json={"above_deal_id": "D1", "below_deal_id": "D2"}).json()
    assert missing["error"]["details"][0]["field"] == "manager"


def test_quality_for_the_live_version_and_by_name(api: tuple[TestClient, Feedback]) -> None:
    client, feedback = api
    feedback.record_scores("r1", "v1", [deal("D1"), deal("D2")], batch([0.9, 0.2], [90.0, 20.0], ["A", "C"]))
    feedback.flush_score_log()
    client.post("/v1/outcomes", json={"outcomes": [{"deal_id": "D1", "status": "won"},
                                                   {"deal_id": "D2", "status": "lost"}]})
    client.post("/v1/judgements", json={"manager": "Ivan", "above_deal_id": "D2", "below_deal_id": "D1"})
    live = client.get("/v1/quality").json()
    assert live["version"] == "v1"
    assert (live["outcomes"]["deals"], live["outcomes"]["auc"]) == (2, 1.0)
    assert (live["judgements"]["pairs"], live["judgements"]["agreement"]) == (1, 0.0)
    assert live["judgements"]["disagreements"][0]["margin"] == 70.0
    assert client.get("/v1/quality", params={"version": "v1", "top": 0}).json()["judgements"]["disagreements"] == []
    unknown = client.get("/v1/quality", params={"version": "v0"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert unknown.json()["error"]["details"] == [{"field": "query.version", "expected": "'live' or a model "
                                                   "version the score log has (latest: v1)", "got": "'v0'"}]
    assert client.get("/v1/quality", params={"version": " LIVE"}).json()["version"] == "v1"
    bad_top = client.get("/v1/quality", params={"top": 1000}).json()["error"]["details"]
    assert bad_top[0]["field"] == "query.top"
    versions = client.get("/v1/quality/versions").json()
    assert versions["live"] == "v1" and [v["version"] for v in versions["versions"]] == ["v1"]


def test_feedback_answers_503_while_the_database_is_down(tmp_path: Path) -> None:
    with running(down_url(), tmp_path / "spool") as feedback, TestClient(feedback_app(feedback)) as client:
        answer = client.post("/v1/outcomes", json={"outcomes": [{"deal_id": "D1", "status": "won"}]})
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "feedback_unavailable"
        assert answer.json()["error"]["details"] == [{"field": "feedback database", "expected": "reachable and at "
                                                      "the service's schema", "got": "not reachable now"}]
        assert "127.0.0.1" not in answer.text  # the database's address stays in the log


def test_the_routes_are_in_the_openapi_document(api: tuple[TestClient, Feedback]) -> None:
    client, _ = api
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/outcomes", "/v1/judgements", "/v1/quality", "/v1/quality/versions"} <= set(paths)
    assert "examples" in str(paths["/v1/outcomes"]["post"]["requestBody"]) or "OutcomesRequest" in str(paths)


def test_judgement_notes_are_trimmed_and_outcome_amounts_bounded(api: tuple[TestClient, Feedback]) -> None:
    """A note sent as "  n  " and again as "n" made two revisions of one view; two won outcomes of 1.7e308
    summed to an infinite won amount, shown later as an unknown client history."""
    client, feedback = api
    feedback.record_scores("r", "v1", [deal("T1"), deal("T2")], batch([0.5, 0.4], [5.0, 4.0], ["B", "C"]))
    feedback.flush_score_log()
    body = {"manager": "m", "above_deal_id": "T1", "below_deal_id": "T2", "note": "  n  "}
    assert client.post("/v1/judgements", json=body).json()["result"] == "created"
    again = client.post("/v1/judgements", json={**body, "note": "n"}).json()
    assert (again["result"], again["revision"]) == ("unchanged", 1)
    huge = client.post("/v1/outcomes", json={"outcomes": [{"deal_id": "T1", "status": "won", "amount": 1.7e308}]})
    assert huge.status_code == 422
    assert huge.json()["error"]["details"][0]["field"] == "outcomes[0].amount"
    assert huge.json()["error"]["details"][0]["expected"] == "a number <= 1000000000000000"


def test_more_outcomes_than_the_limit_is_a_413_as_on_the_scoring_routes(api: tuple[TestClient, Feedback]) -> None:
    from service.feedback.schemas import MAX_OUTCOMES

    client, _ = api
    answer = client.post("/v1/outcomes", json={"outcomes": [{"deal_id": f"D{i}", "status": "won"}
                                                            for i in range(MAX_OUTCOMES + 1)]})
    assert answer.status_code == 413
    assert answer.json()["error"]["details"] == [
        {"field": "outcomes", "expected": f"at most {MAX_OUTCOMES} items", "got": f"{MAX_OUTCOMES + 1} items"}]



def test_an_outcome_status_is_read_in_any_case(api: tuple[TestClient, Feedback]) -> None:
    """A CRM sending "Won" was refused, while a mapping file's status values ignore case."""
    client, feedback = api
    answer = client.post("/v1/outcomes", json={"outcomes": [{"deal_id": "W1", "status": " Won "},
                                                            {"deal_id": "W2", "status": "LOST"}]})
    assert answer.status_code == 200, answer.text
    assert [r["status"] for r in feedback.outcomes.revisions("W1") + feedback.outcomes.revisions("W2")] == [
        "won", "lost"]


def test_quality_with_no_live_model_and_an_empty_log_says_what_it_lacks(tmp_path: Path) -> None:
    """The 404 named nothing in its details (an API review): every error says what was expected and what came."""
    with running(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "spool") as feedback:
        with TestClient(feedback_app(feedback, live_version=lambda: None)) as client:
            answer = client.get("/v1/quality")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert answer.json()["error"]["details"] == [{
        "field": "query.version", "expected": "a model version the score log has ('live': the live model's)",
        "got": "'live', and no model is live and no score is logged"}]


def test_quality_reports_are_made_one_at_a_time(api: tuple[TestClient, Feedback],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A security review: a dozen reports at once, each reading the whole score log in a thread of its own, held
    the GIL against scoring (single-deal p50 6 ms -> 140-280 ms). They now wait their turn."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    client, feedback = api
    feedback.record_scores("r1", "v1", [{"deal_id": "D1"}], batch([0.5], [100.0], ["B"]))
    feedback.flush_score_log()
    running, most = [0], [0]
    lock = threading.Lock()
    real = feedback.quality

    def slow(version: str, top: int = 10) -> dict[str, object]:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        try:
            return real(version, top=top)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(feedback, "quality", slow)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: client.get("/v1/quality").status_code, range(6)))
    assert answers == [200] * 6 and most[0] == 1


def test_the_version_list_is_read_one_at_a_time_with_the_reports(api: tuple[TestClient, Feedback],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A security review: the list of versions reads the whole score log too (2.6 s at 200,000 rows), for
    GET /v1/quality/versions and for every GET /v1/quality naming a version; a dozen callers of either at once
    took single-deal p50 from 3.8 ms to 36-41 ms and p99 from 15 to 188 ms (max 0.8 s). It waits its turn with
    the reports."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    client, feedback = api
    feedback.record_scores("r1", "v1", [{"deal_id": "D1"}], batch([0.5], [100.0], ["B"]))
    feedback.flush_score_log()
    running, most = [0], [0]
    lock = threading.Lock()

    def one_at_a_time(real: Any) -> Any:
        def slow(*args: Any, **kwargs: Any) -> Any:
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05)
            try:
                return real(*args, **kwargs)
            finally:
                with lock:
                    running[0] -= 1
        return slow

    monkeypatch.setattr(feedback, "quality", one_at_a_time(feedback.quality))
    monkeypatch.setattr(feedback, "versions", one_at_a_time(feedback.versions))
    paths = ["/v1/quality/versions", "/v1/quality?version=v1", "/v1/quality?version=v0"] * 3
    with ThreadPoolExecutor(len(paths)) as pool:
        answers = list(pool.map(lambda path: client.get(path).status_code, paths))
    assert answers == [200, 200, 404] * 3 and most[0] == 1
