"""The feedback loop through the whole service: scores are logged, outcomes change later scores,
judgements and quality refer to what /v1/score said, and all of it survives a restart."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from test_feedback_helpers import (  # noqa: F401 (fixtures)
    TestClient,
    database_url_fixture,
    down_url,
    feedback_training_fixture,
    running,
    wired_app,
)

from training.fit import TrainingResult


def _day(day: float) -> str:
    return str(np.datetime64(int(day), "D"))


def _deal(model: Any, deal_id: str, client_id: str, days_after_training: int) -> dict[str, Any]:
    return {"deal_id": deal_id, "client_id": client_id, "amount": 5000.0, "product": "payroll",
            "created_at": _day(model.history.last_day + days_after_training), "source": "referral",
            "client": {"client_id": client_id, "industry": "retail", "size": "small", "region": "north"}}


def test_scores_outcomes_judgements_and_quality_through_the_service(
        feedback_training: TrainingResult, database_url: str, tmp_path: Path) -> None:
    model, metadata = feedback_training.model, feedback_training.metadata
    client_id = next(iter(model.spec.client_keys))
    spool = tmp_path / "spool"
    with running(database_url, spool) as feedback, TestClient(wired_app(model, feedback, metadata)) as api:
        first = api.post("/v1/score", json={"deals": [_deal(model, "N1", client_id, 5),
                                                      _deal(model, "N2", client_id, 6)]})
        assert first.status_code == 200, first.text
        request_id = first.json()["request_id"]
        # Tomorrow's deal (the latest date the service takes): the outcomes below close today, before it.
        tomorrow = int((np.datetime64(date.today(), "D") - np.datetime64(int(model.history.last_day), "D"))
                       .astype(int)) + 1
        later = _deal(model, "N3", client_id, tomorrow)
        before_score = api.post("/v1/score", json={"deals": [later]}).json()["scores"][0]
        before = before_score["p_win"]
        assert before_score["history_source"] == "model"
        assert feedback.flush_score_log()
        with feedback.database.engine.connect() as connection:
            logged = connection.execute(sa.text("SELECT request_id, deal_id, model_version FROM score_log "
                                                "ORDER BY id")).all()
        assert [tuple(row) for row in logged[:2]] == [(request_id, "N1", model.version),
                                                      (request_id, "N2", model.version)]

        # Two wins of the client after training: a later deal of the same client is scored with them.
        outcomes = api.post("/v1/outcomes", json={"outcomes": [
            {"deal_id": "N1", "status": "won", "amount": 90000, "closed_at": date.today().isoformat()},
            {"deal_id": "N2", "status": "won", "amount": 90000}]})  # closed_at: today by default
        assert outcomes.status_code == 200, outcomes.text
        assert all(r["client_history"] for r in outcomes.json()["results"])
        after_score = api.post("/v1/score", json={"deals": [{**later, "deal_id": "N3b"}]}).json()["scores"][0]
        after = after_score["p_win"]
        assert after != before and after_score["history_source"] == "outcomes"

        judged = api.post("/v1/judgements", json={"manager": "Elena", "above_deal_id": "N2", "below_deal_id": "N3"})
        assert judged.status_code == 200, judged.text
        refused = api.post("/v1/judgements", json={"manager": "Elena", "above_deal_id": "N2", "below_deal_id": "X"})
        assert refused.status_code == 422 and refused.json()["request_id"]
        assert refused.json()["error"]["details"][0]["field"] == "below_deal_id"
        quality = api.get("/v1/quality").json()
        assert quality["version"] == model.version
        assert (quality["outcomes"]["deals"], quality["judgements"]["pairs"]) == (2, 1)

    # A restart: the log, the outcomes (and so the client history) and the judgements are all still there.
    with running(database_url, spool) as feedback, TestClient(wired_app(model, feedback, metadata)) as api:
        again = api.post("/v1/score", json={"deals": [{**later, "deal_id": "N3c"}]}).json()["scores"][0]["p_win"]
        assert again == after
        assert api.get("/v1/quality").json()["judgements"] == quality["judgements"]


def test_metrics_show_the_model_and_the_score_log_in_prometheus_text(
        feedback_training: TrainingResult, tmp_path: Path) -> None:
    """Operators could not see the score log's backlog while its database was away: nothing served it."""
    model, metadata = feedback_training.model, feedback_training.metadata
    client_id = next(iter(model.spec.client_keys))
    with running(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "spool") as feedback, \
            TestClient(wired_app(model, feedback, metadata)) as api:
        assert api.post("/v1/score", json={"deals": [_deal(model, "M1", client_id, 5)]}).status_code == 200
        assert feedback.flush_score_log()
        answer = api.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = dict(line.rsplit(" ", 1) for line in answer.text.splitlines() if not line.startswith("#"))
    assert samples["dealscore_model_loaded"] == "1"
    assert samples[f'dealscore_model_info{{version="{model.version}"}}'] == "1"
    # How old the model's history is, for an alert: its last day, at midnight UTC.
    history_end = datetime.fromtimestamp(int(samples["dealscore_model_history_end_timestamp_seconds"]), UTC)
    assert history_end.date().isoformat() == _day(model.history.last_day) and history_end.hour == 0
    assert samples["dealscore_score_log_written_total"] == "1" and samples["dealscore_score_log_pending"] == "0"
    assert samples["dealscore_score_log_database_up"] == "1"
    assert "# TYPE dealscore_score_log_written_total counter" in answer.text
    assert "# TYPE dealscore_score_log_pending gauge" in answer.text
    # The database away: the backlog shows.
    with running(down_url(), tmp_path / "spool-down") as feedback, \
            TestClient(wired_app(model, feedback, metadata)) as api:
        assert api.post("/v1/score", json={"deals": [_deal(model, "M2", client_id, 5)]}).status_code == 200
        feedback.flush_score_log()
        down = dict(line.rsplit(" ", 1) for line in api.get("/metrics").text.splitlines() if not line.startswith("#"))
    assert down["dealscore_score_log_database_up"] == "0" and int(down["dealscore_score_log_pending"]) >= 1


def test_a_clients_status_does_not_depend_on_where_it_is_in_the_request(
        feedback_training: TrainingResult, database_url: str, tmp_path: Path) -> None:
    """The review: /v1/gaps read each client's status as a deal "0", "1"... of it, and a deal's own outcome never
    counts in its history, so a client whose won deal was "3" lost that win when sent fourth."""
    model, metadata = feedback_training.model, feedback_training.metadata
    with running(database_url, tmp_path / "spool") as feedback, TestClient(wired_app(model, feedback, metadata)) as api:
        won = api.post("/v1/outcomes", json={"outcomes": [{"deal_id": "0", "status": "won", "amount": 500,
                                                            "client_id": "NEW-C"}]})
        assert won.status_code == 200, won.text
        for clients in (["NEW-C", "x", "y"], ["x", "y", "NEW-C"]):
            answer = api.post("/v1/gaps", json={"clients": [{"client_id": c} for c in clients]}).json()
            standing = {c["client_id"]: (c["client_status"], c["history_source"]) for c in answer["clients"]}
            assert standing["NEW-C"] == ("new", "outcomes"), clients


def test_metrics_print_counters_exactly() -> None:
    from service.metrics import prometheus_text

    text = prometheus_text("v1", {"score_log_written_total": 1_234_567.0, "score_log_pending": 0.0,
                                  "feedback_outcomes_known": 12_345_678.0})
    assert "dealscore_score_log_written_total 1234567\n" in text
    assert "dealscore_feedback_outcomes_known 12345678\n" in text
    assert 'dealscore_model_info{version="v1"} 1\n' in text


def test_a_product_won_since_training_is_no_longer_offered_as_a_gap(
        feedback_training: TrainingResult, database_url: str, tmp_path: Path) -> None:
    model, metadata = feedback_training.model, feedback_training.metadata
    spool = tmp_path / "spool"
    with running(database_url, spool) as feedback, TestClient(wired_app(model, feedback, metadata)) as api:
        client_id = next(c for c in model.profiles.known_products
                         if api.post("/v1/gaps", json={"clients": [{"client_id": c}]}).json()["clients"][0]["gaps"])

        def gaps() -> list[str]:
            answer = api.post("/v1/gaps", json={"clients": [{"client_id": client_id}]}).json()
            return [g["product"] for g in answer["clients"][0]["gaps"]]

        offered = gaps()[0]
        other = next(p for p in model.profiles.products if p != offered)
        sold = {**_deal(model, "W1", client_id, 5), "product": offered}
        # First scored as another product (and logged), then re-scored as the one sold just before the report.
        assert api.post("/v1/score", json={"deals": [{**sold, "product": other}]}).status_code == 200
        assert feedback.flush_score_log()
        assert api.post("/v1/score", json={"deals": [sold]}).status_code == 200
        next_deal = {**_deal(model, "W2", client_id, 6), "product": other}
        assert offered in [g["product"] for g in api.post("/v1/score", json={"deals": [next_deal]})
                           .json()["scores"][0]["gaps"]]
        standing_before = api.post("/v1/gaps", json={"clients": [{"client_id": client_id}]}).json()["clients"][0]
        assert standing_before["history_source"] == "model"
        # The CRM reports the sale: the client holds the product now.
        reported = {"deal_id": "W1", "status": "won", "amount": 4000}
        assert api.post("/v1/outcomes", json={"outcomes": [reported]}).status_code == 200
        assert offered not in gaps()
        # And it has one more win, closed today (the default), which its status today counts.
        standing = api.post("/v1/gaps", json={"clients": [{"client_id": client_id}]}).json()["clients"][0]
        assert (standing["client_status"], standing["history_source"]) == (
            "new" if standing_before["client_status"] == "prospect" else "regular", "outcomes")
        assert offered not in [g["product"] for g in api.post("/v1/score", json={"deals": [{**next_deal,
                               "deal_id": "W3"}]}).json()["scores"][0]["gaps"]]
        # Products the CRM sends are its word: they are not added to.
        held = [model.profiles.products[j] for j in model.profiles.known_products[client_id]]
        sent = api.post("/v1/gaps", json={"clients": [{"client_id": client_id, "products": held}]}).json()
        assert offered in [g["product"] for g in sent["clients"][0]["gaps"]]
    # After a restart the book is read back from the database, the product with it.
    with running(database_url, spool) as feedback, TestClient(wired_app(model, feedback, metadata)) as api:
        assert offered not in gaps()
