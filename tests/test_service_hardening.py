"""What a security review asked of the service. DEALSCORE_API_TOKEN: with it set, the /v1 routes (but the admin
ones, which take the admin token when one is set) need it as a bearer token; health, metrics and the docs stay
open (without any, whoever reached the port could post outcomes that moved a client's deal from grade B to A and
entered the next retrain). A body that stalls is answered 408 (DEALSCORE_BODY_TIMEOUT_SECONDS)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_fixtures import (  # noqa: F401 (fixtures, registered by name)
    TODAY,
    TestClient,
    fixture_service_crm,
    fixture_service_dataset,
    fixture_service_training,
    make_client,
    make_deal,
)
from test_feedback_helpers import make_config

from service import Settings, create_app
from service.feedback import Feedback
from training.fit import TrainingResult


@pytest.fixture(name="guarded")
def guarded_fixture(service_training: TrainingResult, tmp_path: Path) -> Iterator[TestClient]:
    feedback = Feedback(make_config(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "spool"))
    app = create_app(Settings(api_token="api-s3cret", admin_token="admin-s3cret"), model=service_training.model,
                     metadata=service_training.metadata, clock=lambda: TODAY, feedback=feedback)
    with make_client(app) as client:
        yield client


CALLS = [("post", "/v1/score", {"deals": [make_deal()]}), ("post", "/v1/rank", {"deals": [make_deal()]}),
         ("post", "/v1/gaps", {"clients": [{"client_id": "C00010"}]}), ("get", "/v1/model", None),
         ("post", "/v1/outcomes", {"outcomes": [{"deal_id": "D-1", "status": "won"}]}),
         ("get", "/v1/quality", None)]


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
def test_every_data_route_needs_the_api_token_when_one_is_set(guarded: TestClient, method: str, path: str,
                                                              body: object) -> None:
    for headers, got in (({}, "no bearer token"), ({"Authorization": "Bearer wrong"}, "another token"),
                         ({"Authorization": "Basic YXBpLXMzY3JldA=="}, "another token")):
        refused = guarded.request(method, path, json=body, headers={**headers, "X-Request-ID": "r-1"})
        assert refused.status_code == 401, (path, headers, refused.text)
        assert refused.headers["www-authenticate"] == "Bearer" and refused.headers["x-request-id"] == "r-1"
        answer = refused.json()
        assert answer["error"]["code"] == "unauthorized" and answer["request_id"] == "r-1"
        assert answer["error"]["details"] == [
            {"field": "Authorization", "expected": "Bearer and the service's API token", "got": got}]
        assert "s3cret" not in refused.text and "wrong" not in refused.text
    for token in ("api-s3cret", "admin-s3cret"):  # the admin token opens them too
        allowed = guarded.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code != 401, (path, allowed.text)


def test_a_refused_request_is_counted_under_the_route_it_asked_for(guarded: TestClient) -> None:
    # Refused before routing: it was counted as "unmatched", with the scanners' random paths.
    guarded.post("/v1/score", json={"deals": [make_deal()]})
    guarded.get("/no/such/path")
    metrics = guarded.get("/metrics").text
    assert 'dealscore_http_requests_total{route="/v1/score",method="POST",status="401"} 1' in metrics
    assert 'dealscore_http_requests_total{route="unmatched",method="GET",status="401"} 1' in metrics


def test_health_metrics_and_docs_stay_open_and_admin_routes_keep_their_own_token(guarded: TestClient) -> None:
    for path in ("/health/live", "/health/ready", "/metrics", "/docs", "/openapi.json"):
        assert guarded.get(path).status_code == 200, path
    assert guarded.post("/v1/admin/reload", headers={"Authorization": "Bearer api-s3cret"}).status_code == 401


def test_unset_the_routes_stay_open_and_the_document_says_the_token_is_optional(
        service_training: TrainingResult) -> None:
    app = create_app(Settings(), model=service_training.model, metadata=service_training.metadata,
                     clock=lambda: TODAY)
    with make_client(app) as client:
        assert client.post("/v1/score", json={"deals": [make_deal()]}).status_code == 200
        document = client.get("/openapi.json").json()
    assert document["paths"]["/v1/score"]["post"]["security"] == [{"ApiToken": []}, {}]
    assert document["paths"]["/v1/score"]["post"]["responses"]["401"]["content"]["application/json"]["example"][
        "error"]["code"] == "unauthorized"
    assert "security" not in document["paths"]["/health/ready"]["get"]
    guarded = create_app(Settings(api_token="t")).openapi()
    assert guarded["paths"]["/v1/gaps"]["post"]["security"] == [{"ApiToken": []}]
    assert guarded["paths"]["/v1/admin/reload"]["post"]["security"] == [{"ApiToken": []}]  # no admin token of its own
    both = create_app(Settings(api_token="t", admin_token="a")).openapi()
    assert both["paths"]["/v1/admin/reload"]["post"]["security"] != [{"ApiToken": []}]


def test_without_an_admin_token_the_admin_routes_need_the_api_token(service_training: TrainingResult) -> None:
    # They were open: an operator who set only DEALSCORE_API_TOKEN took every route but the probes for closed.
    app = create_app(Settings(api_token="api-s3cret"), model=service_training.model,
                     metadata=service_training.metadata, clock=lambda: TODAY)
    with make_client(app) as client:
        assert client.post("/v1/admin/reload").status_code == 401
        allowed = client.post("/v1/admin/reload", headers={"Authorization": "Bearer api-s3cret"})
        assert allowed.status_code == 409, allowed.text  # past the token: no registry to reload from


def test_tokens_set_with_surrounding_whitespace_open_their_routes(service_training: TrainingResult) -> None:
    # An env file's trailing space or CR: the API routes took the token stripped, the admin route never took it.
    app = create_app(Settings(api_token=" api-s3cret\r\n", admin_token="admin-s3cret \r"),
                     model=service_training.model, metadata=service_training.metadata, clock=lambda: TODAY)
    with make_client(app) as client:
        admin = client.post("/v1/admin/reload", headers={"Authorization": "Bearer admin-s3cret"})
        assert admin.status_code == 409, admin.text  # past the token: no registry to reload from
        scored = client.post("/v1/score", json={"deals": [make_deal()]}, headers={"Authorization": "Bearer api-s3cret"})
        assert scored.status_code == 200, scored.text


def test_listening_beyond_this_machine_without_tokens_is_said_at_start(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="dealscore"):
        with make_client(create_app(Settings(host="0.0.0.0", admin_token="a"))):
            pass
        with make_client(create_app(Settings())):  # 127.0.0.1: nothing to say
            pass
    said = [r.getMessage() for r in caplog.records if "listening on" in r.getMessage()]
    assert said == ["listening on 0.0.0.0 with DEALSCORE_API_TOKEN not set: anyone who reaches the port may use "
                    "the routes they guard (docs/settings.md)"]


def test_a_body_that_stalls_is_answered_408_in_the_envelope(service_training: TrainingResult) -> None:
    """A security review: a body sent a byte at a time held its connection and bytes for good (2,000 connections;
    150 of them held 570 MB). The whole body now has body_timeout_seconds to arrive."""
    import asyncio

    import orjson

    app = create_app(Settings(body_timeout_seconds=0.2), model=service_training.model,
                     metadata=service_training.metadata, clock=lambda: TODAY)
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        if not sent:
            sent.append({})
            return {"type": "http.request", "body": b'{"deals": [', "more_body": True}
        await asyncio.sleep(3600)  # the rest never comes
        return {"type": "http.disconnect"}

    answers: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        answers.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/score", "raw_path": b"/v1/score", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
             "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 1)}

    async def call() -> None:
        await asyncio.wait_for(app(scope, receive, send), timeout=5)

    with make_client(app):  # the lifespan: the model installed and warmed
        asyncio.run(call())
    start = next(m for m in answers if m["type"] == "http.response.start")
    assert start["status"] == 408
    body = orjson.loads(b"".join(m.get("body", b"") for m in answers if m["type"] == "http.response.body"))
    assert body["error"]["code"] == "request_timeout"
    assert body["error"]["details"] == [{"field": "body", "expected": "the whole body within 0.2 s",
                                         "got": "11 bytes by then"}]


def test_a_huge_field_name_is_cut_in_the_422(service_training: TrainingResult) -> None:
    """A security review: a 4 MB field name (a JSON object as its value, so the schema fails on it) came back
    whole in the answer."""
    app = create_app(Settings(), model=service_training.model, metadata=service_training.metadata,
                     clock=lambda: TODAY)
    name = "y" * 100_000
    with make_client(app) as client:
        answer = client.post("/v1/score", json={"deals": [{**make_deal(), name: {"a": 1}}]})
    assert answer.status_code == 422, answer.text
    assert len(answer.content) < 5_000 and f"deals[0].{'y' * 64}..." in answer.text


def test_the_token_holds_behind_a_root_path_and_for_paths_it_does_not_know(service_training: TrainingResult) -> None:
    """The review of the first version: behind uvicorn's --root-path the path starts with the prefix, and a check
    of its start reached every route without a token. The path within the app is checked, and unknown paths are
    guarded too."""
    app = create_app(Settings(api_token="api-s3cret"), model=service_training.model,
                     metadata=service_training.metadata, clock=lambda: TODAY)
    with TestClient(app, root_path="/api", raise_server_exceptions=False) as client:
        assert client.post("/api/v1/score", json={"deals": [make_deal()]}).status_code == 401
        assert client.post("/api/v1/score", json={"deals": [make_deal()]},
                           headers={"Authorization": "Bearer api-s3cret"}).status_code == 200
        assert client.get("/api/health/ready").status_code == 200
        assert client.get("/api/nothing/here").status_code == 401


def test_requests_beyond_the_limit_are_answered_503_in_the_envelope(service_training: TrainingResult) -> None:
    """Nothing bounded the requests a worker works on at once: a flood queued without end, each holding its body (up
    to max_body_bytes). uvicorn's own limit_concurrency answers plain text ("Service Unavailable"), outside the
    envelope and the log, and refuses the probes too. Beyond max_concurrent_requests a request is now answered 503
    `overloaded` in the envelope, at once; the probes and metrics still answer, and each answer frees its slot."""
    import asyncio

    import orjson

    body = orjson.dumps({"deals": [make_deal()]})
    Answer = tuple[int, dict[bytes, bytes], bytes]

    async def call(app: Any, method: str, path: str, request_id: str,
                   held: tuple[asyncio.Event, list[str], asyncio.Event] | None = None) -> Answer:
        """One request straight to the ASGI app; `held`: its body waits for the first event (the second is set once
        every held request is waiting)."""
        messages: list[dict[str, Any]] = []
        sent = False

        async def receive() -> dict[str, object]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            if held is not None:
                release, waiting, all_waiting = held
                waiting.append(request_id)
                if len(waiting) == 2:
                    all_waiting.set()
                await release.wait()
            sent = True
            return {"type": "http.request", "body": body if method == "POST" else b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode())],
                 "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 1)}
        await app(scope, receive, send)
        start = next(m for m in messages if m["type"] == "http.response.start")
        content = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        return start["status"], dict(start["headers"]), content

    async def flood(app: Any) -> tuple[list[Answer], Answer, list[Answer], Answer]:
        """Two requests in progress (their bodies not there yet), a third beside them, the probes, then one more once
        the two are answered."""
        release, all_waiting, waiting = asyncio.Event(), asyncio.Event(), []
        held = [asyncio.create_task(call(app, "POST", "/v1/score", f"held-{i}", (release, waiting, all_waiting)))
                for i in range(2)]
        await asyncio.wait_for(all_waiting.wait(), 10)
        third = await call(app, "POST", "/v1/score", "third")
        probes = [await call(app, "GET", path, "probe") for path in ("/health/live", "/health/ready", "/metrics")]
        release.set()
        answered = list(await asyncio.gather(*held))
        return answered, third, probes, await call(app, "POST", "/v1/score", "after")

    limited = create_app(Settings(max_concurrent_requests=2), model=service_training.model,
                         metadata=service_training.metadata, clock=lambda: TODAY)
    with make_client(limited):  # the lifespan: the model installed and warmed
        answered, third, probes, after = asyncio.run(asyncio.wait_for(flood(limited), 30))
    status, headers, content = third
    assert status == 503 and headers[b"content-type"] == b"application/json" and headers[b"retry-after"] == b"1"
    assert headers[b"x-request-id"] == b"third"
    assert orjson.loads(content) == {"error": {
        "code": "overloaded", "message": "this worker is working on 2 requests already, its limit "
                                         "(DEALSCORE_MAX_CONCURRENT_REQUESTS): try again after Retry-After seconds",
        "details": [{"field": "requests in progress", "expected": "fewer than 2 in this worker",
                     "got": "2 and this one"}]}, "request_id": "third"}
    assert [status for status, _, _ in probes] == [200, 200, 200]
    assert 'dealscore_http_requests_total{route="/v1/score",method="POST",status="503"} 1' in probes[2][2].decode()
    assert [status for status, _, _ in answered] == [200, 200] and after[0] == 200  # each answer freed its slot

    unlimited = create_app(Settings(max_concurrent_requests=0), model=service_training.model,
                           metadata=service_training.metadata, clock=lambda: TODAY)
    with make_client(unlimited):
        assert asyncio.run(asyncio.wait_for(flood(unlimited), 30))[1][0] == 200  # 0: no limit
