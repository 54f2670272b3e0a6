"""Fixtures and factories of the service tests: one small model trained once per session, apps over it.

A test module imports the fixtures it uses (`from service_fixtures import fixture_service_client  # noqa: F401`);
each is registered under its name without the `fixture_` prefix, so test parameters do not shadow the import.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import uvicorn

from model.artifact import save_artifact
from model.dataset import Dataset, dataset_from_frames
from model.scorer import ScoringModel
from service import Settings, create_app
from training.fit import TrainConfig, TrainingResult, train
from training.synthetic_crm import SyntheticCRM, generate

with warnings.catch_warnings():
    # starlette asks for httpx2 instead of httpx; the test client works the same with either.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

__all__ = [
    "TODAY", "TestClient", "deal_payloads", "error_envelope", "fixture_service_artifact", "fixture_service_client",
    "fixture_service_crm", "fixture_service_dataset", "fixture_service_model",
    "fixture_service_profiled_model", "fixture_service_training", "make_client", "make_deal",
]

# The synthetic CRM ends on 2025-12-31; the service's clock is fixed a little later so date checks are stable.
TODAY = date(2026, 1, 15)
N_DEALS = 3_000


@pytest.fixture(scope="session", name="service_crm")
def fixture_service_crm() -> SyntheticCRM:
    return generate(seed=5, n_deals=N_DEALS)


@pytest.fixture(scope="session", name="service_dataset")
def fixture_service_dataset(service_crm: SyntheticCRM) -> Dataset:
    return dataset_from_frames(service_crm.deals, service_crm.clients, service_crm.holdings, for_training=True,
                               today=TODAY)


@pytest.fixture(scope="session", name="service_training")
def fixture_service_training(service_dataset: Dataset) -> TrainingResult:
    # One native thread: on these 2-core machines LightGBM with two threads trains ~20x slower.
    return train(service_dataset, TrainConfig(threads=1))


@pytest.fixture(scope="session", name="service_model")
def fixture_service_model(service_training: TrainingResult) -> ScoringModel:
    return service_training.model


@pytest.fixture(scope="session", name="service_profiled_model")
def fixture_service_profiled_model(service_training: TrainingResult, service_dataset: Dataset) -> ScoringModel:
    """The session's model with ideal client profiles, so gap lists have content."""
    if service_training.model.profiles is not None:
        return service_training.model
    from training.profiles_fit import fit_profiles

    profiles = fit_profiles(service_dataset.deals, service_dataset.clients, service_dataset.holdings)
    return dataclasses.replace(service_training.model, profiles=profiles)


@pytest.fixture(scope="session", name="service_artifact")
def fixture_service_artifact(service_training: TrainingResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_artifact(service_training.model, tmp_path_factory.mktemp("service") / "model",
                         service_training.metadata)


def make_client(app: Any) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="session", name="service_client")
def fixture_service_client(service_training: TrainingResult) -> Iterator[TestClient]:
    app = create_app(Settings(max_batch=50), model=service_training.model, metadata=service_training.metadata,
                     clock=lambda: TODAY)
    with make_client(app) as client:
        yield client


def make_deal(**overrides: Any) -> dict[str, Any]:
    """One valid open deal of a known client; keyword arguments replace or add fields (None drops one)."""
    deal: dict[str, Any] = {
        "deal_id": "D-1", "client_id": "C00010", "created_at": "2025-12-20", "amount": 2400.0,
        "product": "payroll", "effort_hours": 6.0, "source": "referral", "campaign_code": "CMP-101",
    }
    deal.update(overrides)
    return {k: v for k, v in deal.items() if v is not None}


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    if isinstance(value, np.floating):
        return float(value)
    return value


def deal_payloads(deals: pd.DataFrame, clients: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """Deals of a frame as the JSON a CRM would send: missing values left out, each with its client nested."""
    by_id: dict[str, dict[str, Any]] = {}
    if clients is not None:
        for record in clients.to_dict("records"):
            client = {str(k): _plain(v) for k, v in record.items() if _plain(v) is not None}
            by_id[str(client["client_id"])] = client
    out = []
    for record in deals.to_dict("records"):
        deal = {str(k): _plain(v) for k, v in record.items() if _plain(v) is not None}
        client_id = deal.get("client_id")
        if client_id is not None and str(client_id) in by_id:
            deal["client"] = by_id[str(client_id)]
        out.append(deal)
    return out


def error_envelope(response: Any, status: int = 422, code: str = "invalid_input") -> dict[str, Any]:
    """The answer's `error`, after checking it is the one error envelope with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    for detail in body["error"]["details"]:
        assert set(detail) == {"field", "expected", "got"}
    error: dict[str, Any] = body["error"]
    return error


@contextmanager
def uvicorn_server(app: Any, wait_s: float = 30.0, **options: Any) -> Iterator[int]:
    """`app` served by uvicorn on 127.0.0.1 in a thread; yields the port (port 0: the OS picks a free one).
    `options`: more of uvicorn's Config (the HTTP protocol the server runs, say)."""
    server = uvicorn.Server(uvicorn.Config(app, **{"host": "127.0.0.1", "port": 0, "log_level": "warning",
                                                   "lifespan": "on", **options}))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + wait_s
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "uvicorn did not start"
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=wait_s)
