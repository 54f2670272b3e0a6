"""Shared pieces of the feedback tests: a database per test on SQLite and on the local PostgreSQL, a
store factory, fake score batches, and a TCP proxy that takes PostgreSQL "down" and back for real."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from model.errors import ContractViolation, DealscoreError
from service.errors import error_body, problems_from_pydantic
from service.feedback import Feedback, FeedbackConfig, feedback_router
from service.settings import Settings

with warnings.catch_warnings():
    # starlette asks for httpx2 instead of httpx; the test client works the same with either.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

__all__ = ["TestClient"]

POSTGRES_URL = os.environ.get("DEALSCORE_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
_postgres_state: dict[str, str | None] = {}


def postgres_unreachable() -> str | None:
    """Why the local PostgreSQL cannot be used (None when it can); asked once per session."""
    if "reason" not in _postgres_state:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            _postgres_state["reason"] = None
        except Exception as error:  # any failure means the same: skip, saying why
            _postgres_state["reason"] = f"PostgreSQL at {POSTGRES_URL} is unreachable: {str(error).splitlines()[0]}"
        finally:
            engine.dispose()
    return _postgres_state["reason"]


def with_search_path(url: str, schema: str) -> str:
    return str(sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
               .render_as_string(hide_password=False))


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema for one test (dropped afterwards); yields a URL whose search_path is that schema."""
    reason = postgres_unreachable()
    if reason is not None:
        pytest.skip(reason)
    schema = f"dealscore_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield with_search_path(POSTGRES_URL, schema)
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"], name="database_url")
def database_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own for each test: a SQLite file, or a fresh schema on the local PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'feedback.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture(name="postgres_url")
def postgres_url_fixture() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def down_url() -> str:
    """A database URL nobody answers at: PostgreSQL on a closed local port (refused at once)."""
    return f"postgresql+psycopg://root@127.0.0.1:{closed_port()}/test"


def make_config(url: str, spool_dir: Path, **overrides: Any) -> FeedbackConfig:
    options: dict[str, Any] = {"database_url": url, "spool_dir": spool_dir, "flush_seconds": 0.02,
                               "retry_seconds": 0.05, "outcomes_refresh_seconds": 0.0, "connect_timeout_seconds": 2}
    options.update(overrides)
    return FeedbackConfig(**options)


@contextlib.contextmanager
def running(url: str, spool_dir: Path, **overrides: Any) -> Iterator[Feedback]:
    feedback = Feedback(make_config(url, spool_dir, **overrides))
    feedback.start()
    try:
        yield feedback
    finally:
        feedback.stop()


@dataclass
class FakeBatch:
    """The part of model.scorer.ScoreBatch the log reads."""

    p_win: np.ndarray[Any, Any]
    expected_value: np.ndarray[Any, Any]
    grade: list[str]
    value: np.ndarray[Any, Any] = field(default_factory=lambda: np.array([]))

    def __post_init__(self) -> None:
        if self.value.size == 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                self.value = self.expected_value / self.p_win


def batch(p_win: list[float], expected_value: list[float], grade: list[str]) -> FakeBatch:
    return FakeBatch(np.asarray(p_win, dtype=float), np.asarray(expected_value, dtype=float), grade)


def deal(deal_id: str, **fields: Any) -> dict[str, Any]:
    return {"deal_id": deal_id, **fields}


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.02)


def count(url_or_engine: str | sa.Engine, table: str) -> int:
    engine = sa.create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def feedback_app(feedback: Feedback, live_version: Callable[[], str | None] = lambda: None,
                 settings: Settings | None = None) -> FastAPI:
    """The feedback routes with the service's error envelope, for tests that do not need the whole service."""
    app = FastAPI()
    app.state.settings = settings or Settings()  # the body limit the routes apply
    app.include_router(feedback_router(feedback, live_version))

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DealscoreError)
        return Response(error_body(exc, "test"), status_code=exc.status, media_type="application/json")

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = problems_from_pydantic(list(exc.errors()), frozenset())
        return await on_error(request, ContractViolation("invalid", problems))

    app.add_exception_handler(DealscoreError, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    return app


class PortProxy:
    """Forwards a local port to PostgreSQL; `stop()` closes the port and cuts every connection (the
    database "goes down" for whoever connects through it), `start()` opens it again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = closed_port()
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._connections += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


def test_the_helpers_build_urls_that_keep_the_schema() -> None:
    url = with_search_path("postgresql+psycopg://root@127.0.0.1:5432/test", "s1")
    assert sa.make_url(url).query["options"] == "-csearch_path=s1"


def wired_app(model: Any, feedback: Feedback, metadata: dict[str, Any] | None = None, **settings: Any) -> Any:
    """The whole service with the feedback store wired in: by create_app when it takes a store, else the
    way docs/feedback.md describes (overlay around the model, log as a scoring observer, the routes)."""
    import inspect
    from dataclasses import dataclass, fields

    from model.scorer import ScoreBatch, ScoringModel
    from service import Settings, create_app

    config = Settings(**settings)
    if "feedback" in inspect.signature(create_app).parameters:
        factory: Any = create_app  # the parameter is the proposal of docs/feedback.md
        return factory(config, model=model, metadata=metadata, feedback=feedback)

    @dataclass
    class OverlaidModel(ScoringModel):
        def score(self, columns: Any, n_reasons: int = 5) -> ScoreBatch:
            return super().score(feedback.with_history(self, columns), n_reasons)

    plane_has_transforms = hasattr(create_app(config).state.dataplane, "column_transforms")
    served = model if plane_has_transforms else OverlaidModel(**{f.name: getattr(model, f.name) for f in fields(model)})
    app = create_app(config, model=served, metadata=metadata)
    if plane_has_transforms:
        app.state.dataplane.column_transforms.append(feedback.transform_columns)
    app.state.dataplane.observers.append(feedback.observe)
    app.include_router(feedback_router(feedback, live_version=lambda: app.state.models.peek().version))
    return app


@pytest.fixture(scope="session", name="feedback_training")
def feedback_training_fixture() -> Any:
    """A small model trained once (one native thread: quick even on a busy two-core machine)."""
    return _feedback_training()


@functools.cache
def _feedback_training() -> Any:
    # Cached here, not only by the fixture: each module importing the fixture registers its own copy.
    from model.dataset import dataset_from_frames
    from training.fit import TrainConfig, train
    from training.synthetic_crm import generate

    crm = generate(seed=11, n_deals=2_000)
    return train(dataset_from_frames(crm.deals, crm.clients, crm.holdings, for_training=True), TrainConfig(threads=1))
