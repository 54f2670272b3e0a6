"""The HTTP API's happy paths: every endpoint, input order, ranking, versions and request ids, readiness."""

from __future__ import annotations

import dataclasses
import gc
import itertools
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from service_fixtures import (  # noqa: F401 (fixtures, registered by name)
    TODAY,
    TestClient,
    deal_payloads,
    fixture_service_artifact,
    fixture_service_client,
    fixture_service_crm,
    fixture_service_dataset,
    fixture_service_model,
    fixture_service_training,
    make_client,
    make_deal,
)

from model.artifact import load_artifact
from model.reason_text import reason_text
from model.scorer import ScoringModel
from service import Settings, create_app, draining
from service.holder import ModelHolder
from service.schemas import ScoreOut
from training.synthetic_crm import SyntheticCRM

SCORE_FIELDS = set(ScoreOut.model_fields)
GAP_FIELDS = {"product", "adoption", "p_accept", "potential_income", "reason"}


def _score(client: TestClient, deals: list[dict[str, Any]], path: str = "/v1/score", **kwargs: Any) -> Any:
    response = client.post(path, json={"deals": deals}, **kwargs)
    assert response.status_code == 200, response.text
    return response


def test_score_answers_every_field_of_the_contract_in_input_order(service_client: TestClient,
                                                                  service_model: ScoringModel) -> None:
    ids = ["z-last", "a-first", "m-middle", "17"]
    deals = [make_deal(deal_id=i, amount=1000.0 * (n + 1)) for n, i in enumerate(ids)]
    body = _score(service_client, deals).json()
    assert body["model_version"] == service_model.version
    assert [s["deal_id"] for s in body["scores"]] == ids
    for score in body["scores"]:
        assert set(score) == SCORE_FIELDS
        assert 0.0 <= score["p_win"] <= 1.0
        assert score["expected_value"] == pytest.approx(score["p_win"] * score["value"])
        assert score["grade"] in {"A", "B", "C", "D"}
        assert score["model_version"] == service_model.version
        assert score["value_source"] == "amount"
        assert score["value_per_hour"] == pytest.approx(score["expected_value"] / 6.0)
        assert len(score["reasons"]) == 5
        effects = [abs(r["effect"]) for r in score["reasons"]]
        assert effects == sorted(effects, reverse=True)
        # Each reason in a manager's words as well (model.reason_text), the way it pushes.
        assert [r["text"] for r in score["reasons"]] == [
            reason_text(r["feature"], r["value"], r["effect"] > 0) for r in score["reasons"]]
        assert all(set(g) == GAP_FIELDS for g in score["gaps"])


def test_history_source_says_which_history_was_used(service_client: TestClient,
                                                     service_model: ScoringModel) -> None:
    known = next(iter(service_model.spec.client_keys))
    deals = [
        make_deal(deal_id="known", client_id=known),
        make_deal(deal_id="sent", client_id=known, client={"client_id": known, "won_deals": 3, "won_amount": 5000,
                                                           "first_won_at": "2024-02-01", "last_won_at": "2025-11-01"}),
        make_deal(deal_id="prospect", client_id="never-seen"),
        make_deal(deal_id="no-client", client_id=None),
    ]
    scores = _score(service_client, deals).json()["scores"]
    assert [s["history_source"] for s in scores] == ["model", "request", "none", "none"]


def test_a_score_names_the_inputs_it_averaged_out(service_client: TestClient, service_model: ScoringModel) -> None:
    """Inputs every training deal had and a deal lacks are averaged out of the model (model/unsent_paths.py); the
    answer names them, so that an integration that forgets one can see it (the reasons cannot: they push 0)."""
    spec = service_model.spec
    assert "source" in spec.always_sent and "effort_hours" in (spec.numeric_fill or {})
    deals = [make_deal(deal_id="whole"), make_deal(deal_id="no-source", source=None),
             make_deal(deal_id="no-hours-no-campaign", effort_hours=None, campaign_code=None),
             make_deal(deal_id="stranger", client_id=None, client={"client_id": "never-seen", "industry": "retail"}),
             make_deal(deal_id="no-amount", amount=None)]
    scores = {s["deal_id"]: s for s in _score(service_client, deals).json()["scores"]}
    assert scores["whole"]["not_sent"] == [] and scores["no-amount"]["not_sent"] == []  # the value model values it
    assert scores["no-source"]["not_sent"] == ["source"]
    assert scores["no-hours-no-campaign"]["not_sent"] == ["campaign_code", "effort_hours"]
    # A client the model does not know, sent without its size and region (its since, unknown for a prospect, keeps
    # the training median's stand-in: model.features.KEPT_STAND_INS).
    assert scores["stranger"]["not_sent"] == ["size", "region"]
    assert scores["no-source"]["p_win"] != scores["whole"]["p_win"]


def test_a_deal_without_amount_gets_a_predicted_value(service_client: TestClient) -> None:
    score = _score(service_client, [make_deal(amount=None)]).json()["scores"][0]
    assert score["value_source"] == "model"
    assert score["value"] > 0


def test_a_deal_without_created_at_is_scored_as_of_today(service_client: TestClient) -> None:
    today = make_deal(created_at=TODAY.isoformat())
    undated = make_deal(created_at=None)
    assert _score(service_client, [undated]).json()["scores"][0]["p_win"] == pytest.approx(
        _score(service_client, [today]).json()["scores"][0]["p_win"])


def test_extra_fields_are_features(service_client: TestClient) -> None:
    referral, outbound = make_deal(source="referral"), make_deal(source="outbound")
    scores = [_score(service_client, [d]).json()["scores"][0]["p_win"] for d in (referral, outbound)]
    assert scores[0] != scores[1]


def test_fields_the_model_does_not_read_are_named_in_the_answer(service_client: TestClient) -> None:
    """A misspelt "amout" was dropped without a word (the value fell back to the model's estimate), while an
    unknown field of a client is refused: the answer now names what scoring did not read."""
    plain = _score(service_client, [make_deal(deal_id="a"), make_deal(deal_id="b")]).json()
    assert plain["ignored_fields"] == []
    undated = _score(service_client, [make_deal(deal_id="u", created_at=None)]).json()  # scored as of today
    assert undated["ignored_fields"] == []
    typo = make_deal(deal_id="c", amount=None, amout=5000.0, colour="red")
    answer = _score(service_client, [make_deal(deal_id="a"), typo]).json()
    assert answer["ignored_fields"] == ["amout", "colour"]
    assert answer["scores"][1]["value_source"] == "model"
    ranked = service_client.post("/v1/rank", json={"deals": [typo]}).json()
    assert ranked["ignored_fields"] == ["amout", "colour"]
    # Contract fields the model happens not to use (status, manager) are not listed: a CRM sends them routinely.
    assert _score(service_client, [make_deal(deal_id="d", manager="Ann", status="open")]).json()["ignored_fields"] == []


def test_rank_sorts_best_first_and_keeps_input_order_on_ties(service_client: TestClient) -> None:
    deals = [make_deal(deal_id="small", amount=100.0), make_deal(deal_id="big", amount=90_000.0),
             make_deal(deal_id="twin-1", amount=5000.0), make_deal(deal_id="twin-2", amount=5000.0),
             make_deal(deal_id="mid", amount=2000.0)]
    body = _score(service_client, deals, "/v1/rank").json()
    assert body["by"] == "expected_value"
    scores = body["scores"]
    assert [s["rank"] for s in scores] == [1, 2, 3, 4, 5]
    values = [s["expected_value"] for s in scores]
    assert values == sorted(values, reverse=True)
    order = [s["deal_id"] for s in scores]
    assert order.index("twin-1") + 1 == order.index("twin-2")
    # The same body sent with the twins swapped keeps the new input order for them.
    swapped = [deals[0], deals[1], deals[3], deals[2], deals[4]]
    order = [s["deal_id"] for s in _score(service_client, swapped, "/v1/rank").json()["scores"]]
    assert order.index("twin-2") + 1 == order.index("twin-1")


def test_rank_by_value_per_hour_puts_deals_without_hours_last(service_client: TestClient) -> None:
    deals = [make_deal(deal_id="no-hours-small", effort_hours=None, amount=100.0),
             make_deal(deal_id="no-hours", effort_hours=None, amount=90_000.0),
             make_deal(deal_id="slow", effort_hours=100.0), make_deal(deal_id="fast", effort_hours=1.0)]
    scores = _score(service_client, deals, "/v1/rank", params={"by": "value_per_hour"}).json()["scores"]
    # Those without hours by expected value (they came back in the order sent).
    assert [s["deal_id"] for s in scores] == ["fast", "slow", "no-hours", "no-hours-small"]
    assert scores[-1]["value_per_hour"] is None


def test_deals_without_a_value_rank_by_p_win(service_model: ScoringModel) -> None:
    """A model trained without amounts values no deal (and grades every one C): ranked by expected value, grade or
    value per hour, such deals came back in the order sent, a p_win of 0.68 after one of 0.65."""
    app = create_app(Settings(), model=dataclasses.replace(service_model, value_model=None), clock=lambda: TODAY)
    deals = [make_deal(deal_id=f"d{i}", amount=None, client_id=client_id, source=source)
             for i, (client_id, source) in enumerate(itertools.product(["C00010", "C00020", "new"],
                                                                       ["referral", "cold_call"]))]
    with make_client(app) as client:
        p_win = {s["deal_id"]: s["p_win"] for s in _score(client, deals).json()["scores"]}
        deals.sort(key=lambda d: p_win[d["deal_id"]])  # sent worst first
        assert len(set(p_win.values())) == len(deals)
        for by in ("expected_value", "grade", "value_per_hour"):
            scores = _score(client, deals, "/v1/rank", params={"by": by}).json()["scores"]
            assert scores[0]["expected_value"] is None
            assert [s["p_win"] for s in scores] == sorted(p_win.values(), reverse=True), by


def test_rank_by_grade_puts_deals_not_worth_an_hour_last_however_large(service_client: TestClient) -> None:
    """A manager reads the letter class first, then the value (DOMAIN.md): by expected value a huge D deal
    (a year of work) ranked above A deals; by grade it comes after every A, B and C deal."""
    deals = [make_deal(deal_id="huge-D", amount=5_000_000.0, effort_hours=1e6),
             make_deal(deal_id="small", amount=100.0, effort_hours=None),
             make_deal(deal_id="big", amount=90_000.0, effort_hours=10.0),
             make_deal(deal_id="mid", amount=5_000.0, effort_hours=10.0),
             make_deal(deal_id="mid-2", amount=5_000.0, effort_hours=10.0)]
    by_value = _score(service_client, deals, "/v1/rank").json()["scores"]
    assert by_value[0]["deal_id"] == "huge-D" and by_value[0]["grade"] == "D"
    body = _score(service_client, deals, "/v1/rank", params={"by": "grade"}).json()
    assert body["by"] == "grade"
    scores = body["scores"]
    assert [s["rank"] for s in scores] == [1, 2, 3, 4, 5]
    grades = [s["grade"] for s in scores]
    assert grades == sorted(grades) and grades[-1] == "D" and scores[-1]["deal_id"] == "huge-D"
    for a, b in zip(scores, scores[1:], strict=False):  # within a class, by expected value; ties in input order
        if a["grade"] == b["grade"]:
            assert a["expected_value"] >= b["expected_value"]
    order = [s["deal_id"] for s in scores]
    assert order.index("mid") + 1 == order.index("mid-2")


def test_gaps_answers_each_client_in_input_order(service_client: TestClient, service_model: ScoringModel) -> None:
    clients = [{"client_id": "x-2", "industry": "retail", "products": ["payroll"]}, {"client_id": "x-1"}]
    response = service_client.post("/v1/gaps", json={"clients": clients})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == service_model.version
    assert [c["client_id"] for c in body["clients"]] == ["x-2", "x-1"]
    sent, unknown = body["clients"]
    assert sent["segment"].startswith("industry=retail") and sent["gaps"]
    assert "payroll" not in {g["product"] for g in sent["gaps"]}  # never offer what the client holds
    assert unknown["segment"] == "all" and unknown["gaps"]  # nothing known: the whole book's profile
    assert all(set(g) == GAP_FIELDS and g["potential_income"] >= 0 for c in body["clients"] for g in c["gaps"])


def test_model_describes_the_live_model(service_client: TestClient, service_model: ScoringModel) -> None:
    body = service_client.get("/v1/model").json()
    assert body["model_version"] == service_model.version
    assert body["features"] == service_model.spec.names
    assert body["metrics"]["model"]["auc"] > 0.5
    assert set(body["grade_cutoffs"]) >= {"a_min_expected_value", "b_min_expected_value"}
    assert body["data"]["deals"] > 0 and body["trained_at"]


def test_every_response_carries_a_request_id_and_echoes_the_callers(service_client: TestClient) -> None:
    responses = [
        service_client.post("/v1/score", json={"deals": [make_deal()]}, headers={"X-Request-ID": "crm-42.a:b"}),
        service_client.get("/v1/model", headers={"X-Request-ID": "crm-43"}),
        service_client.get("/health/live", headers={"X-Request-ID": "crm-44"}),
        service_client.post("/v1/score", json={"deals": []}, headers={"X-Request-ID": "crm-45"}),
    ]
    for response, sent in zip(responses, ["crm-42.a:b", "crm-43", "crm-44", "crm-45"], strict=True):
        assert response.headers["x-request-id"] == sent
        assert response.json()["request_id"] == sent
    generated = service_client.get("/health/live")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    assert generated.json()["request_id"] == generated.headers["x-request-id"]
    # A header that is not a sane token is replaced, never echoed (log and header injection).
    odd = service_client.get("/health/live", headers={"X-Request-ID": "x" * 500})
    assert odd.headers["x-request-id"] != "x" * 500


def test_readiness_is_503_until_a_model_is_loaded_and_warm(service_artifact: Path) -> None:
    app = create_app(Settings())
    with make_client(app) as client:
        assert client.get("/health/live").status_code == 200
        not_ready = client.get("/health/ready")
        assert not_ready.status_code == 503
        assert not_ready.json()["error"]["code"] == "not_ready"
        # Every error names what was expected and what came, this one too (an API review found it empty).
        assert not_ready.json()["error"]["details"] == [{
            "field": "model", "expected": "a loaded, warmed model",
            "got": "none yet (loading, or no model directory or registry is set)"}]
        assert client.post("/v1/score", json={"deals": [make_deal()]}).status_code == 503
        holder: ModelHolder = app.state.models
        loaded = holder.load(service_artifact)
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["model_version"] == loaded.version


def test_the_model_named_by_the_settings_is_loaded_at_start(service_artifact: Path) -> None:
    app = create_app(Settings(model_dir=service_artifact))
    with make_client(app) as client:
        _wait(app)
        assert client.get("/health/ready").status_code == 200


def test_a_broken_artifact_leaves_the_service_up_and_not_ready(tmp_path: Path) -> None:
    app = create_app(Settings(model_dir=tmp_path / "missing"))
    with make_client(app) as client:
        _wait(app)
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert "metadata.json" in response.json()["error"]["message"]
        assert response.json()["error"]["details"] == [{
            "field": "model", "expected": "a loaded, warmed model", "got": "no model (the message says why)"}]


def test_with_an_api_token_the_open_readiness_probe_does_not_quote_a_failed_load(tmp_path: Path) -> None:
    # The probe stays open with a token; it quoted the failure word for word, the artifact's path included.
    missing = tmp_path / "models-volume" / "missing"
    app = create_app(Settings(model_dir=missing, api_token="api-s3cret"))
    with make_client(app) as client:
        _wait(app)
        probe = client.get("/health/ready")
        assert probe.status_code == 503 and probe.json()["error"]["code"] == "not_ready"
        assert "models-volume" not in probe.text and "metadata.json" not in probe.text
        assert "the last load failed" in probe.json()["error"]["message"]
        assert probe.json()["error"]["details"] == [{
            "field": "model", "expected": "a loaded, warmed model", "got": "no model (the last load failed)"}]
        # The API token's holder is still told why.
        told = client.get("/v1/model", headers={"Authorization": "Bearer api-s3cret"})
        assert told.status_code == 503 and "models-volume" in told.text and "metadata.json" in told.text


def _wait(app: Any) -> None:
    import time

    deadline = time.monotonic() + 20
    while not app.state.loading.done() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_swap_does_not_change_the_model_a_request_started_with(service_model: ScoringModel) -> None:
    holder = ModelHolder()
    holder.install(service_model)
    snapshot = holder.current()
    other = holder.install(service_model)
    assert holder.current() is other and snapshot is not other
    assert snapshot.model is service_model  # the old snapshot is intact


def test_each_request_is_logged_as_one_json_line_without_the_payload(service_client: TestClient,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    from service.logs import JsonFormatter

    with caplog.at_level(logging.INFO, logger="dealscore.service"):
        service_client.post("/v1/score", json={"deals": [make_deal(deal_id="secret-deal")]},
                            headers={"X-Request-ID": "log-1"})
    records = [r for r in caplog.records if getattr(r, "request_id", None) == "log-1"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["route"] == "/v1/score" and line["status"] == 200 and line["method"] == "POST"
    assert line["model_version"] and line["duration_ms"] > 0 and line["level"] == "INFO" and line["time"]
    assert "secret-deal" not in json.dumps(line)


def test_docs_are_served(service_client: TestClient) -> None:
    assert service_client.get("/docs").status_code == 200
    assert service_client.get("/openapi.json").json()["info"]["title"] == "dealscore"


def test_transforms_and_observers_see_each_scored_batch(service_model: ScoringModel) -> None:
    from service.dataplane import ScoredRequest

    app = create_app(Settings(), model=service_model, clock=lambda: TODAY)
    seen: list[ScoredRequest] = []
    app.state.dataplane.observers.append(seen.append)

    def double_amount(snapshot: Any, columns: dict[str, Any]) -> dict[str, Any]:
        return {**columns, "amount": columns["amount"] * 2}

    app.state.dataplane.column_transforms.append(double_amount)
    with make_client(app) as client:
        body = _score(client, [make_deal(amount=100.0), make_deal(deal_id="D-2", amount=50.0)],
                      headers={"X-Request-ID": "obs-1"}).json()
    assert [s["value"] for s in body["scores"]] == [200.0, 100.0]
    assert len(seen) == 1 and seen[0].request_id == "obs-1" and len(seen[0].batch.p_win) == 2
    assert seen[0].snapshot.version == service_model.version


def test_the_registrys_live_version_is_served(service_artifact: Path, tmp_path: Path) -> None:
    from model.registry import Registry

    registry = Registry(tmp_path / "registry")
    empty = create_app(Settings(registry_dir=registry.root))
    with make_client(empty) as client:
        _wait(empty)
        assert client.get("/health/ready").status_code == 503  # no registry yet: up, not ready
    version = registry.add_artifact(service_artifact, action="publish", reason="test")
    app = create_app(Settings(registry_dir=registry.root, model_dir=tmp_path / "ignored"))
    with make_client(app) as client:
        _wait(app)
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["model_version"] == version


def test_a_live_model_is_kept_out_of_the_garbage_collectors_walks(service_model: ScoringModel) -> None:
    """After a swap the model's objects are frozen (gc.freeze): a full collection, set off by a batch's
    allocations, then walks only the requests' objects, not the model's hundreds of thousands."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        holder = ModelHolder()
        holder.install(service_model)
        assert gc.get_freeze_count() > 0
        live = holder.current()
        assert all(o is not live for o in gc.get_objects())  # the collector's generations no longer hold it
    finally:
        gc.unfreeze()


def _samples(text: str) -> dict[str, float]:
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in text.splitlines()
                                                     if line and not line.startswith("#"))}


def test_while_draining_readiness_is_503_and_metrics_say_so(service_client: TestClient) -> None:
    """The drain before a stop (DEALSCORE_DRAIN_SECONDS; its signals are tested on real servers in
    tests/test_service_stop.py): readiness 503 `stopping`, every other route served, /metrics' gauge at 1."""
    assert "\ndealscore_draining 0\n" in service_client.get("/metrics").text
    draining.begin(30)
    try:
        ready = service_client.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "stopping"
        assert ready.json()["error"]["details"][0]["got"] in {f"draining, stopping in {n} s" for n in range(1, 31)}
        assert service_client.post("/v1/score", json={"deals": [make_deal()]}).status_code == 200
        assert "\ndealscore_draining 1\n" in service_client.get("/metrics").text
    finally:
        draining.end()
    assert service_client.get("/health/ready").status_code == 200


def test_metrics_count_answers_by_route_template_and_scored_deals_by_grade(service_training: Any) -> None:
    """Ops could see the model and the score log in /metrics but not how the service answered: no request
    counts, no latency, nothing of what it scored."""
    app = create_app(Settings(max_batch=50), model=service_training.model, metadata=service_training.metadata,
                     clock=lambda: TODAY)
    with make_client(app) as client:
        scored = [_score(client, [make_deal(deal_id=f"D-{i}", amount=500.0 * (i + 1))]).json()["scores"][0]
                  for i in range(3)]
        ranked = _score(client, [make_deal(deal_id="R-1", source=None),
                                 make_deal(deal_id="R-2", amount=90.0, source=None, effort_hours=None)],
                        path="/v1/rank").json()["scores"]
        assert client.post("/v1/score", json={"deals": []}).status_code == 422
        assert client.get("/no/such/path/123").status_code == 404
        assert client.head("/health/live").status_code == 200
        # The documentation is served, by routes that leave no template in the scope: not "unmatched".
        assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200
        assert client.get("/docs-assets/swagger-ui.css").status_code == 200
        samples = _samples(client.get("/metrics").text)
    requests = {key: value for key, value in samples.items() if key.startswith("dealscore_http_requests_total")}
    assert requests == {
        'dealscore_http_requests_total{route="/v1/score",method="POST",status="200"}': 3,
        'dealscore_http_requests_total{route="/v1/score",method="POST",status="422"}': 1,
        'dealscore_http_requests_total{route="/v1/rank",method="POST",status="200"}': 1,
        'dealscore_http_requests_total{route="unmatched",method="GET",status="404"}': 1,
        'dealscore_http_requests_total{route="/health/live",method="HEAD",status="200"}': 1,
        'dealscore_http_requests_total{route="/openapi.json",method="GET",status="200"}': 1,
        'dealscore_http_requests_total{route="/docs",method="GET",status="200"}': 1,
        'dealscore_http_requests_total{route="/docs-assets",method="GET",status="200"}': 1,
    }  # the /metrics request itself is counted once it is answered, after this text was made
    histogram = "dealscore_http_request_duration_seconds"
    assert samples[f'{histogram}_count{{route="/v1/score"}}'] == 4
    assert samples[f'{histogram}_bucket{{route="/v1/score",le="+Inf"}}'] == 4
    buckets = [value for key, value in samples.items() if key.startswith(f'{histogram}_bucket{{route="/v1/score"')]
    assert buckets == sorted(buckets)  # cumulative
    assert 0 < samples[f'{histogram}_sum{{route="/v1/score"}}'] < 60
    grades: dict[str, float] = {}
    for item in scored + ranked:
        grades[item["grade"]] = grades.get(item["grade"], 0) + 1
    assert {key: value for key, value in samples.items() if key.startswith("dealscore_scored_deals_total")} == {
        f'dealscore_scored_deals_total{{grade="{grade}"}}': count for grade, count in grades.items()}
    # The inputs averaged out, per input: an integration that stops sending a field shows there.
    assert {key: value for key, value in samples.items() if key.startswith("dealscore_inputs_not_sent_total")} == {
        'dealscore_inputs_not_sent_total{input="source"}': 2,
        'dealscore_inputs_not_sent_total{input="effort_hours"}': 1}


def test_a_level_the_model_never_saw_is_named_per_deal_and_counted(service_training: Any) -> None:
    """A product misspelt or renamed in the CRM is scored as a new one (no history of it, the rare levels' code),
    value and grade with it: an operations review saw "MG Specail" move a deal from C to A with nothing in the
    answer. A level spelt otherwise only in case or spaces is the level seen."""
    app = create_app(Settings(), model=service_training.model, metadata=service_training.metadata,
                     clock=lambda: TODAY)
    campaign = min(service_training.model.spec.level_keys["campaign_code"])  # make_deal's CMP-101 is none of them
    with make_client(app) as client:
        scores = _score(client, [make_deal(deal_id="seen", campaign_code=campaign),
                                 make_deal(deal_id="spelt", product=" Payroll", campaign_code=campaign),
                                 make_deal(deal_id="typo", product="payrol", source="carrier pigeon",
                                           campaign_code=campaign),
                                 make_deal(deal_id="none", product=None, campaign_code=campaign)]).json()["scores"]
        assert [s["unseen"] for s in scores] == [[], [], ["product", "source"], []]
        assert scores[0]["p_win"] == scores[1]["p_win"] and scores[0]["p_win"] != scores[2]["p_win"]
        metrics = client.get("/metrics").text
        samples = _samples(metrics)
    assert "# HELP dealscore_inputs_unseen_total scored deals whose text input held a level the model never saw" in (
        metrics)
    assert {key: value for key, value in samples.items() if key.startswith("dealscore_inputs_unseen_total")} == {
        'dealscore_inputs_unseen_total{input="product"}': 1, 'dealscore_inputs_unseen_total{input="source"}': 1}


def test_a_latency_on_a_bucket_bound_counts_in_that_bucket() -> None:
    from service.metrics import LATENCY_BUCKETS, ServiceMetrics

    metrics = ServiceMetrics()
    metrics.observe_request("/v1/score", "POST", 200, LATENCY_BUCKETS[0])
    metrics.observe_request("/v1/score", "POST", 200, 1e6)
    samples = _samples("\n".join(metrics.lines()))
    bucket = 'dealscore_http_request_duration_seconds_bucket{{route="/v1/score",le="{}"}}'.format
    assert samples[bucket(repr(LATENCY_BUCKETS[0]))] == 1
    assert samples[bucket(repr(LATENCY_BUCKETS[-1]))] == 1
    assert samples[bucket("+Inf")] == 2


def test_methods_a_client_invents_share_one_series() -> None:
    """The method label is the client's word: with uvicorn's h11 parser any token gets through, and a soak audit's
    500 invented methods (M00000...) made 500 series, kept for the life of the worker."""
    from service.metrics import ServiceMetrics

    metrics = ServiceMetrics()
    for i in range(500):
        metrics.observe_request("unmatched", f"M{i:05d}", 405, 0.001)
    metrics.observe_request("unmatched", "PROPFIND", 404, 0.001)
    metrics.observe_request("/v1/score", "POST", 200, 0.001)
    samples = _samples("\n".join(metrics.lines()))
    assert {key: value for key, value in samples.items() if key.startswith("dealscore_http_requests_total")} == {
        'dealscore_http_requests_total{route="unmatched",method="other",status="405"}': 500,
        'dealscore_http_requests_total{route="unmatched",method="other",status="404"}': 1,
        'dealscore_http_requests_total{route="/v1/score",method="POST",status="200"}': 1}


def test_a_caller_that_hangs_up_mid_body_is_not_a_server_error(service_training: Any,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """A client that closed its connection before sending the whole body was logged as an ERROR with a
    traceback and counted as a 500, which set off error alerts for a failure that was not the service's."""
    import asyncio

    app = create_app(Settings(), model=service_training.model, metadata=service_training.metadata,
                     clock=lambda: TODAY)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/score", "raw_path": b"/v1/score", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    messages = iter([{"type": "http.request", "body": b'{"deals": [', "more_body": True},
                     {"type": "http.disconnect"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with make_client(app) as client, caplog.at_level(logging.INFO, logger="dealscore.service"):
        asyncio.run(app(scope, receive, send))
        metrics = client.get("/metrics").text
    assert sent == []  # nobody to answer
    (record,) = [r for r in caplog.records if getattr(r, "route", None) == "/v1/score"]
    assert record.levelname == "INFO" and record.getMessage() == "client disconnected"
    assert record.status == 499 and record.exc_info is None
    assert 'dealscore_http_requests_total{route="/v1/score",method="POST",status="499"} 1' in metrics
    assert 'status="500"' not in metrics


def test_each_score_says_why_it_has_its_letter_by_the_models_cut_offs(service_crm: SyntheticCRM,
                                                                      service_artifact: Path) -> None:
    """grade_reason (a manager-view audit: D deals whose reasons all raised the chance said nothing of why they
    were D): each letter with the cut-off GET /v1/model gives, and for D the value per hour against the floor."""
    from model.reason_text import money_text

    model, metadata = load_artifact(service_artifact)
    app = create_app(Settings(), model=model, metadata=metadata, clock=lambda: TODAY)
    with make_client(app) as client:
        scores = client.post("/v1/score", json={"deals": deal_payloads(service_crm.deals.tail(400),
                                                                      service_crm.clients)}).json()["scores"]
        cutoffs = client.get("/v1/model").json()["grade_cutoffs"]
    floor, a_min, b_min = (cutoffs["d_floor_value_per_hour"], cutoffs["a_min_expected_value"],
                           cutoffs["b_min_expected_value"])
    by_grade: dict[str, list[dict[str, Any]]] = {}
    for score in scores:
        by_grade.setdefault(score["grade"], []).append(score)
    assert set(by_grade) == {"A", "B", "C", "D"}, {g: len(s) for g, s in by_grade.items()}
    for score in by_grade["D"]:
        assert score["value_per_hour"] <= floor
        assert score["grade_reason"].startswith(
            f"D: {money_text(score['value_per_hour'])} of expected value per hour of work, at or below the floor "
            f"of {money_text(floor)} an hour; by value alone "), score
    for grade, cut in (("A", f"at or above A's {money_text(a_min)}"), ("B", f"below A's {money_text(a_min)}"),
                       ("C", f"below B's {money_text(b_min)}")):
        for score in by_grade[grade]:
            assert score["grade_reason"].startswith(f"{grade}: expected value {money_text(score['expected_value'])}, ")
            assert cut in score["grade_reason"], score
