"""Property-based fuzzing of the whole HTTP API against the committed openapi.json (schemathesis).

Issue 5: bad input never gets a 500, and every answer (2xx or not) is the one the document declares. For each
operation of openapi.json schemathesis sends, in-process over ASGI (no network): the document's examples, its
coverage cases (each boundary, each missing or wrongly typed field, methods the path does not take, wrong
content types), then `max-examples` requests generated both valid (positive) and invalid (negative) for the
schema; each answer goes through the checks below. The committed document is the one fuzzed: test_service_openapi
keeps it equal to what the app serves, so a route, status or field the app adds without declaring fails here.

Deterministic (Hypothesis derandomized: the same requests on every run) and bounded (about 10 s here). To search
further on your machine, change the seed or the count (random generation, then):

    DEALSCORE_FUZZ_SEED=7 DEALSCORE_FUZZ_EXAMPLES=500 .venv/bin/pytest -q tests/test_service_fuzz.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from service_fixtures import (  # noqa: F401 (fixtures, registered by name)
    TODAY,
    fixture_service_crm,
    fixture_service_dataset,
    fixture_service_profiled_model,
    fixture_service_training,
)
from test_feedback_helpers import make_config

from model.scorer import ScoringModel
from service import Settings, create_app
from service.feedback import Feedback
from training.fit import TrainingResult

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "fuzz-admin-token"
SEED = os.environ.get("DEALSCORE_FUZZ_SEED")
EXAMPLES = int(os.environ.get("DEALSCORE_FUZZ_EXAMPLES", "50"))

CONFIG = schemathesis.Config.from_dict({
    "seed": int(SEED) if SEED else 5,
    # Every phase schemathesis runs under pytest: the document's examples, coverage cases, generated requests.
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True}},
    "generation": {
        "mode": "all",  # valid and invalid requests
        "max-examples": EXAMPLES,  # generated requests per operation (the fuzzing phase)
        "deterministic": SEED is None,
    },
    "checks": {
        "not_a_server_error": {"enabled": True},  # no 5xx, whatever is sent
        "status_code_conformance": {"enabled": True},  # only statuses the operation declares
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},  # bodies, errors included (the ErrorResponse envelope)
        "response_headers_conformance": {"enabled": True},
        # Invalid input must be refused with a 4xx. 413 is how the service refuses more items than maxItems
        # (payload_too_large, declared), 401 a missing or wrong admin token; schemathesis' default list has neither.
        "negative_data_rejection": {"expected-statuses": [400, 401, 404, 405, 413, 415, 422]},
        "missing_required_header": {"enabled": True},  # the admin route without its bearer token: 401
        "ignored_auth": {"enabled": True},  # the admin token is set below: a route that ignores it fails
        "unsupported_method": {"enabled": True},  # 405 in the envelope, with Allow
        # Left out: valid-per-schema is not always acceptable, and the document cannot say why. Dates must lie
        # between the contract's first date and today, deal_ids be unique in a batch, closed_at follow
        # created_at, extra fields avoid reserved names, a judgement name deals the service has scored: all
        # answered 422 with the field named, by design (tests/test_service_errors.py covers each).
        "positive_data_acceptance": {"enabled": False},
        # Stateful checks need resources created and fetched by id: this API has none.
        "use_after_free": {"enabled": False},
        "ensure_resource_availability": {"enabled": False},
    },
    "auth": {"openapi": {"AdminToken": {"bearer": ADMIN_TOKEN}}},
})
schema = schemathesis.openapi.from_path(ROOT / "openapi.json", config=CONFIG)


@pytest.fixture(name="fuzz_app")
def fixture_fuzz_app(service_profiled_model: ScoringModel, service_training: TrainingResult,
                     tmp_path: Path) -> Iterator[Any]:
    """The whole service as the document describes it (default settings, feedback routes on SQLite), with gap
    lists and an admin token; a fresh one per operation, as schemathesis ends an app's lifespan after each test."""
    feedback = Feedback(make_config(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "spool"))
    yield create_app(Settings(admin_token=ADMIN_TOKEN), model=service_profiled_model,
                     metadata=service_training.metadata, clock=lambda: TODAY, feedback=feedback)


@schema.parametrize()
# One app per operation on purpose: Hypothesis' examples of that operation share it (and its database).
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api(case: Any, fuzz_app: Any) -> None:
    case.call_and_validate(app=fuzz_app)
