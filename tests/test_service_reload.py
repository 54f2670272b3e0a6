"""Hot reload: the service follows the registry's live version (polling and POST /v1/admin/reload), refuses
a damaged version while the old one serves, and swaps under load without a failed or mixed answer."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from registry_helpers import add, fresh_copy, tamper, two_versions
from service_fixtures import (  # noqa: F401 (fixtures, registered by name)
    TODAY,
    TestClient,
    fixture_service_artifact,
    fixture_service_crm,
    fixture_service_dataset,
    fixture_service_training,
    make_client,
    make_deal,
    uvicorn_server,
)

from bench.reload_bench import figures, measure, reloaded_at, table
from model.artifact import METADATA_CHECKSUM, MODEL_FILE, metadata_checksum
from model.registry import Registry
from service import Settings, create_app
from training.fit import TrainingResult

log = logging.getLogger(__name__)
WAIT_S = 30.0  # generous: a loaded shared machine; a passing test waits far less


@pytest.fixture(scope="module")
def base_registry(tmp_path_factory: pytest.TempPathFactory, service_training: TrainingResult) -> Path:
    return two_versions(tmp_path_factory.mktemp("reload") / "registry", service_training)


@pytest.fixture()
def registry(tmp_path: Path, base_registry: Path) -> Registry:
    """A fresh copy of a registry with v1 live and v2 stored (the session's model under two names)."""
    return fresh_copy(base_registry, tmp_path)


@contextmanager
def following(registry: Registry, interval: float = 0.0, **settings: Any) -> Iterator[TestClient]:
    """A client of an app serving `registry` (polled every `interval` s; 0: only on reload), once it loaded."""
    app = create_app(Settings(registry_dir=registry.root, reload_interval_seconds=interval, **settings),
                     clock=lambda: TODAY)
    with make_client(app) as client:
        wait_until(lambda: app.state.loading.done())
        yield client


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def serving_version(client: TestClient) -> str:
    response = client.post("/v1/score", json={"deals": [make_deal()]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scores"][0]["model_version"] == body["model_version"]
    return str(body["model_version"])


def test_polling_picks_up_a_publish_and_a_rollback(registry: Registry) -> None:
    with following(registry, interval=0.05) as client:
        info = client.get("/v1/model").json()
        assert info["model_version"] == "v1" and info["refused"] is None
        assert info["source"] == {"kind": "registry", "path": str(registry.path_of("v1"))}
        registry.publish("v2", "monthly")
        wait_until(lambda: client.get("/v1/model").json()["model_version"] == "v2")
        assert serving_version(client) == "v2"
        registry.rollback("v2 misbehaves")
        wait_until(lambda: serving_version(client) == "v1")
        assert client.get("/v1/model").json()["source"]["path"] == str(registry.path_of("v1"))


def test_admin_reload_swaps_at_once_and_names_both_versions(registry: Registry) -> None:
    with following(registry) as client:
        assert client.post("/v1/admin/reload").json()["status"] == "unchanged"
        registry.publish("v2", "monthly")
        assert serving_version(client) == "v1"  # no polling: nothing changes until asked
        answer = client.post("/v1/admin/reload")
        assert answer.status_code == 200
        assert {k: v for k, v in answer.json().items() if k != "request_id"} == {
            "status": "loaded", "live_version": "v2", "serving_version": "v2", "refused": None}
        assert serving_version(client) == "v2"
        registry.rollback("back")
        assert client.post("/v1/admin/reload").json()["status"] == "loaded"
        assert serving_version(client) == "v1"


def test_admin_reload_that_waited_for_the_polls_load_says_loaded(registry: Registry) -> None:
    """An ops walkthrough: `models publish`, then POST /v1/admin/reload while the worker's own poll was loading the
    version. The route waited for that load and answered "unchanged" (582 ms), though the worker had just swapped
    versions: a runbook checking for "loaded" after a publish took it for a reload that did nothing."""
    from model.registry import warm_up

    with following(registry) as client:
        reloader = client.app.state.reloader  # type: ignore[attr-defined]
        warming, release = threading.Event(), threading.Event()

        def slow_warm(model: Any) -> None:
            warming.set()
            release.wait(WAIT_S)
            warm_up(model)

        reloader.watcher.warm = slow_warm
        registry.publish("v2", "monthly")
        poll = threading.Thread(target=reloader.check)  # the worker's poll, as `follow` runs it
        poll.start()
        assert warming.wait(WAIT_S)
        threading.Timer(0.3, release.set).start()  # the admin call arrives while the poll warms v2
        answer = client.post("/v1/admin/reload").json()
        poll.join(WAIT_S)
        assert (answer["status"], answer["live_version"], answer["serving_version"]) == ("loaded", "v2", "v2")
        assert client.post("/v1/admin/reload").json()["status"] == "unchanged"  # nothing new the second time


def test_a_request_in_flight_finishes_on_the_model_it_started_with(registry: Registry) -> None:
    entered, release = threading.Event(), threading.Event()

    def hold(snapshot: Any, columns: dict[str, Any]) -> dict[str, Any]:
        entered.set()  # the request has its snapshot and is being scored: keep it there across the swap
        assert release.wait(WAIT_S)
        return columns

    with following(registry) as client:
        client.app.state.dataplane.column_transforms.append(hold)  # type: ignore[attr-defined]
        answers: list[str] = []
        request = threading.Thread(target=lambda: answers.append(serving_version(client)))
        request.start()
        assert entered.wait(WAIT_S)
        registry.publish("v2", "monthly")
        assert client.post("/v1/admin/reload").json()["status"] == "loaded"
        assert client.get("/v1/model").json()["model_version"] == "v2"
        release.set()
        request.join(WAIT_S)
        assert answers == ["v1"]


def test_each_load_and_refusal_is_logged(registry: Registry, service_training: TrainingResult,
                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dealscore.service"), following(registry) as client:
        registry.publish("v2", "monthly")
        client.post("/v1/admin/reload")
        add(registry, service_training, "v3", action="publish", reason="monthly")
        tamper(registry.path_of("v3") / MODEL_FILE)
        client.post("/v1/admin/reload")
    events = [(r.getMessage(), r.__dict__.get("model_version") or r.__dict__.get("refused_version"),
               r.__dict__.get("previous_version") or r.__dict__.get("serving_version"))
              for r in caplog.records if r.getMessage() in ("model loaded", "model refused")]
    assert events == [("model loaded", "v1", None), ("model loaded", "v2", "v1"), ("model refused", "v3", "v2")]
    refused = next(r for r in caplog.records if r.getMessage() == "model refused")
    assert "does not match its checksum" in refused.__dict__["reason"]


@pytest.mark.parametrize("damage", ["model bytes", "library version"])
def test_a_damaged_version_is_refused_and_the_old_one_keeps_serving(registry: Registry, damage: str,
                                                                    service_training: TrainingResult) -> None:
    with following(registry) as client:
        add(registry, service_training, "v3", action="publish", reason="monthly")
        folder = registry.path_of("v3")
        if damage == "model bytes":
            tamper(folder / MODEL_FILE)
            expected = f"file {MODEL_FILE} does not match its checksum"
        else:
            meta = json.loads((folder / "metadata.json").read_text())
            meta["libraries"]["lightgbm"] = "1.0.0"
            meta[METADATA_CHECKSUM] = metadata_checksum(meta)  # re-sealed: only the library version is wrong
            (folder / "metadata.json").write_text(json.dumps(meta))
            expected = "written with lightgbm 1.0.0"
        answer = client.post("/v1/admin/reload").json()
        assert (answer["status"], answer["live_version"], answer["serving_version"]) == ("refused", "v3", "v1")
        assert answer["refused"]["version"] == "v3" and expected in answer["refused"]["reason"]
        assert answer["refused"]["at"]
        info = client.get("/v1/model").json()
        assert info["model_version"] == "v1" and info["refused"] == answer["refused"]
        assert serving_version(client) == "v1"
        assert client.get("/health/ready").status_code == 200
        # Ops alert on it: the worker's metrics say a live version is refused, and which.
        assert 'dealscore_model_refused{version="v3"} 1\n' in client.get("/metrics").text

        registry.rollback("v3 is damaged")  # back to the version serving: nothing to load, nothing refused
        again = client.post("/v1/admin/reload").json()
        assert (again["status"], again["live_version"], again["refused"]) == ("unchanged", "v1", None)
        assert client.get("/v1/model").json()["refused"] is None
        assert "dealscore_model_refused 0\n" in client.get("/metrics").text


def test_a_refused_first_version_leaves_the_service_not_ready_saying_why(registry: Registry) -> None:
    tamper(registry.path_of("v1") / MODEL_FILE)
    with following(registry) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and "does not match its checksum" in ready.json()["error"]["message"]
        assert client.post("/v1/admin/reload").json()["status"] == "refused"
        registry.publish("v2", "replace the damaged v1")
        assert client.post("/v1/admin/reload").json()["status"] == "loaded"
        assert client.get("/health/ready").json()["model_version"] == "v2"


def test_an_empty_registry_is_not_ready_until_a_version_is_published(tmp_path: Path,
                                                                     service_training: TrainingResult) -> None:
    registry = Registry(tmp_path / "registry")
    with following(registry, interval=0.05) as client:
        # A path that is not there (a typo, a volume not mounted) is named as such, not as "not yet".
        missing = client.get("/health/ready").json()["error"]["message"]
        assert "does not exist (no such directory)" in missing and "volume mount" in missing
        registry.root.mkdir()
        client.post("/v1/admin/reload")
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and "has no live version yet" in ready.json()["error"]["message"]
        # Nothing failed: the detail says there is no model and leaves the why to the message.
        assert ready.json()["error"]["details"][0]["got"] == "no model (the message says why)"
        add(registry, service_training, "v1", action="publish", reason="first model")
        wait_until(lambda: client.get("/health/ready").status_code == 200)


def test_admin_routes_need_the_token_when_one_is_set(registry: Registry) -> None:
    with following(registry, admin_token="s3cret") as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0"},
                        {"Authorization": "Bearer"}):
            refused = client.post("/v1/admin/reload", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["www-authenticate"] == "Bearer"
            assert refused.json()["error"]["code"] == "unauthorized" and "s3cret" not in refused.text
            got = "no bearer token" if headers.get("Authorization", "").split() in ([], ["Basic", "czNjcmV0"],
                                                                                    ["Bearer"]) else "another token"
            assert refused.json()["error"]["details"] == [
                {"field": "Authorization", "expected": "Bearer and the service's admin token", "got": got}]
            assert "wrong" not in refused.text  # what came is described, never quoted
        allowed = client.post("/v1/admin/reload", headers={"Authorization": "Bearer s3cret"})
        assert allowed.status_code == 200 and allowed.json()["status"] == "unchanged"
        assert client.get("/v1/model").status_code == 200  # only admin routes are guarded


def test_a_service_over_a_model_directory_has_nothing_to_reload(service_artifact: Path) -> None:
    app = create_app(Settings(model_dir=service_artifact), clock=lambda: TODAY)
    with make_client(app) as client:
        wait_until(lambda: app.state.loading.done())
        answer = client.post("/v1/admin/reload")
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "no_registry"
        assert str(service_artifact) in answer.json()["error"]["message"]
        assert answer.json()["error"]["details"] == [
            {"field": "DEALSCORE_REGISTRY_DIR", "expected": "a registry to reload from", "got": "a model directory"}]
        info = client.get("/v1/model").json()
        assert info["source"] == {"kind": "model_dir", "path": str(service_artifact)} and info["refused"] is None


# -- under load: a real server, clients scoring without pause while v2 is published and reloaded ---------


def test_a_reload_under_load_fails_no_request_and_mixes_no_versions(registry: Registry) -> None:
    app = create_app(Settings(registry_dir=registry.root, reload_interval_seconds=0), clock=lambda: TODAY)
    with uvicorn_server(app) as port:
        wait_until(lambda: app.state.loading.done() and app.state.models.peek() is not None)

        def publish_and_reload() -> float:
            registry.publish("v2", "monthly")
            return reloaded_at(port)

        result = measure("admin reload", port, "v1", "v2", publish_and_reload, clients=4, before=0.5, after=0.5)
    shown = table([result], clients=4, interval=0)
    log.info("reload under load\n%s", shown)  # pytest --log-cli-level=INFO shows it; so does any failure
    assert result.problems() == [], shown
    assert result.versions.get("v1", 0) > 0 and result.versions.get("v2", 0) > 0, shown
    assert result.requests > 20, shown


def test_the_figures_catch_an_old_answer_after_the_swap() -> None:
    from bench.reload_bench import Answer

    answers = [Answer(0.0, 0.1, True, "v1"), Answer(0.2, 0.3, True, "v2"), Answer(0.4, 0.5, True, "v1"),
               Answer(0.6, 0.7, False, None)]
    result = figures("check", answers, "v1", "v2", changed_at=0.15, swapped_at=None)
    assert (result.stale_after_swap, result.errors, result.versions) == (1, 1, {"v1": 2, "v2": 1})
    assert result.in_flight_at_swap == 0 and round(result.swap_ms) == 150
    assert result.problems() == ["1 failed requests", "1 answers from v1 after the swap was complete"]


def test_an_unreadable_manifest_is_refused_and_shows_in_metrics(registry: Registry) -> None:
    """The refused version of an unreadable manifest is unknown: /metrics said 0 (not refused) while
    /v1/model said refused."""
    with following(registry) as client:
        registry.manifest_path.write_text("{garbage")
        answer = client.post("/v1/admin/reload").json()
        assert answer["status"] == "refused" and answer["refused"]["version"] is None
        assert answer["serving_version"] == "v1"
        assert 'dealscore_model_refused{version=""} 1\n' in client.get("/metrics").text
