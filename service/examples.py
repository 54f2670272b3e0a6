"""Example bodies for the OpenAPI document: one for every request and every response."""

from __future__ import annotations

from typing import Any

import numpy as np

from model.grade_text import grade_texts
from model.grades import GradeCutoffs
from model.reason_text import reason_text

REQUEST_ID = "5f0c6a1e2b7d4c1f9a8e3d2c1b0a9f8e"
VERSION = "20250101T120000-1a2b3c4d"

DEAL = {
    "deal_id": "D-1042",
    "client_id": "C-77",
    "created_at": "2025-03-14",
    "amount": 18000,
    "product": "credit_line",
    "effort_hours": 12,
    "source": "referral",
    "client": {"client_id": "C-77", "industry": "agriculture", "size": "medium", "region": "south",
               "since": "2022-06-01", "products": ["settlement_account", "deposit"],
               "won_deals": 3, "won_amount": 9400, "first_won_at": "2022-07-15", "last_won_at": "2025-01-20"},
}
PROSPECT_DEAL = {"deal_id": "D-1043", "created_at": "2025-03-14", "product": "acquiring", "amount": 2000}

SCORE_REQUEST = {"deals": [DEAL, PROSPECT_DEAL]}


def _reason(feature: str, value: str | float, effect: float) -> dict[str, Any]:
    return {"feature": feature, "value": value, "effect": effect, "text": reason_text(feature, value, effect > 0)}


REASONS = [_reason("client_status", "regular", 0.412), _reason("source", "referral", 0.305),
           _reason("amount", 18000.0, -0.121)]
GAPS = [{"product": "business_insurance", "adoption": 0.86, "p_accept": 0.41, "potential_income": 1435.0,
         "reason": "held by 86% of the best agriculture/medium clients"}]

CUTOFFS = GradeCutoffs(a_min=3467.0, b_min=977.5, d_floor_per_hour=119.2)  # as MODEL_INFO's grade_cutoffs


def _grade_reason(grade: str, expected_value: float, value_per_hour: float | None) -> str:
    per_hour = np.nan if value_per_hour is None else value_per_hour
    return grade_texts([grade], np.array([expected_value]), np.array([per_hour]), CUTOFFS)[0]


SCORE = {
    "deal_id": "D-1042", "p_win": 0.63, "value": 18000.0, "expected_value": 11340.0, "grade": "A",
    "grade_reason": _grade_reason("A", 11340.0, 945.0),
    "reasons": REASONS, "gaps": GAPS, "value_source": "amount", "value_per_hour": 945.0,
    "history_source": "request", "not_sent": [], "unseen": [], "model_version": VERSION,
}
PROSPECT_SCORE = {
    "deal_id": "D-1043", "p_win": 0.22, "value": 2000.0, "expected_value": 440.0, "grade": "C",
    "grade_reason": _grade_reason("C", 440.0, None),
    "reasons": [_reason("client_status", "prospect", -0.52)], "gaps": [],
    "value_source": "amount", "value_per_hour": None, "history_source": "none", "not_sent": ["source"], "unseen": [],
    "model_version": VERSION,
}
SCORE_RESPONSE = {"model_version": VERSION, "request_id": REQUEST_ID, "scores": [SCORE, PROSPECT_SCORE],
                  "ignored_fields": []}
RANK_RESPONSE = {"model_version": VERSION, "request_id": REQUEST_ID, "by": "expected_value",
                 "scores": [{"rank": 1, **SCORE}, {"rank": 2, **PROSPECT_SCORE}], "ignored_fields": []}

GAPS_REQUEST = {"clients": [DEAL["client"], {"client_id": "C-90", "industry": "retail", "size": "small"}]}
GAPS_RESPONSE = {"model_version": VERSION, "request_id": REQUEST_ID, "clients": [
    {"client_id": "C-77", "segment": "industry=agriculture|size=medium", "gaps": GAPS, "potential_income": 5200.0,
     "unknown_products": [], "client_status": "regular", "history_source": "request"},
    {"client_id": "C-90", "segment": "industry=retail|size=small", "gaps": [], "potential_income": 0.0,
     "unknown_products": [], "client_status": "prospect", "history_source": "none"},
]}

MODEL_INFO = {
    "model_version": VERSION, "request_id": REQUEST_ID, "trained_at": "2025-01-01T12:00:00+00:00",
    "engine": "gradient_boosting",
    "data": {"deals": 20000, "closed_deals": 19400, "won": 8100, "lost": 11300, "first_deal": "2021-01-02",
             "last_deal": "2024-12-31"},
    "metrics": {"model": {"auc": 0.81, "brier": 0.17, "ece": 0.02, "top_decile_lift": 2.1}},
    "grade_cutoffs": {"a_min_expected_value": CUTOFFS.a_min, "b_min_expected_value": CUTOFFS.b_min,
                      "shares": list(CUTOFFS.shares), "d_floor_value_per_hour": CUTOFFS.d_floor_per_hour},
    "caution": None,
    "features": ["amount", "effort_hours", "product", "client_status"],
    "has_profiles": True, "gap_take_up_days": 365, "small_data": False,
    "libraries": {"dealscore": "0.1.0", "joblib": "1.6.0", "lightgbm": "4.7.0", "numpy": "2.4.6",
                  "pandas": "3.1.1", "python": "3.11.7", "scikit-learn": "1.9.1"},
    "loaded_at": "2025-01-02T08:00:05+00:00",
    "source": {"kind": "registry", "path": f"/srv/dealscore/registry/versions/{VERSION}"},
    "refused": None,
}
REFUSED = {"version": "20250201T120000-5e6f7a8b",
           "reason": "model artifact at /srv/dealscore/registry/versions/20250201T120000-5e6f7a8b: file "
                     "model.joblib does not match its checksum (changed or corrupted after training); refusing "
                     "to load it",
           "at": "2025-02-01T12:05:00+00:00"}
RELOAD_RESPONSE = {"status": "refused", "live_version": REFUSED["version"], "serving_version": VERSION,
                   "refused": REFUSED, "request_id": REQUEST_ID}
LIVE = {"status": "live", "request_id": REQUEST_ID}
READY = {"status": "ready", "request_id": REQUEST_ID, "model_version": VERSION}


def error(code: str, message: str, details: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}, "request_id": REQUEST_ID}


ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("The body is not JSON.", error("malformed_json", "the request body is not valid JSON", [
        {"field": "body", "expected": "a JSON object", "got": "EOF while parsing an object at line 1 column 18"}])),
    401: ("An admin route without `Authorization: Bearer <DEALSCORE_ADMIN_TOKEN>` (when the token is set).",
          error("unauthorized", "admin routes need the header `Authorization: Bearer <token>` with the service's "
                "admin token (DEALSCORE_ADMIN_TOKEN)", [
                    {"field": "Authorization", "expected": "Bearer and the service's admin token",
                     "got": "no bearer token"}])),
    404: ("No such resource.", error("not_found", "no route GET /v1/nothing", [
        {"field": "path", "expected": "a path the API serves (GET /openapi.json lists them)",
         "got": "'/v1/nothing'"}])),
    405: ("The resource does not take this method.", error("method_not_allowed", "GET is not allowed on /v1/score", [
        {"field": "method", "expected": "one of POST", "got": "GET"}])),
    409: ("The service serves a model directory, not a registry: there is nothing to reload.", error(
        "no_registry", "this service serves the model directory /models/demo: there is nothing to reload; restart "
                       "it to change the model, or serve a registry (DEALSCORE_REGISTRY_DIR)", [
            {"field": "DEALSCORE_REGISTRY_DIR", "expected": "a registry to reload from", "got": "a model directory"}])),
    408: ("The body did not arrive in time (DEALSCORE_BODY_TIMEOUT_SECONDS).", error(
        "request_timeout", "request body not received within 30 s (DEALSCORE_BODY_TIMEOUT_SECONDS); send it faster, "
        "in smaller batches, or ask for a longer limit",
        [{"field": "body", "expected": "the whole body within 30 s", "got": "65,536 bytes by then"}])),
    413: ("The body or the batch is too large.", error(
        "payload_too_large", "too many deals in one request: at most 1,000 are accepted, got 1500; split the batch",
        [{"field": "deals", "expected": "at most 1000 items", "got": "1500 items"}])),
    415: ("The body is not sent as JSON.", error(
        "unsupported_media_type", "send the body as application/json",
        [{"field": "content-type", "expected": "application/json", "got": "'text/plain'"}])),
    422: ("Invalid input: every bad field is listed.", error("invalid_input", "2 problems in the request", [
        {"field": "deals[0].amount", "expected": "a number >= 0", "got": "-5"},
        {"field": "deals[1].created_at", "expected": "a date like 2024-03-31 (ISO 8601)", "got": "'31/03/2024'"}])),
    500: ("Unexpected failure; the request id finds it in the service log.", error(
        "internal_error", "internal error; the request id identifies it in the service log")),
    503: ("No model is loaded and warmed yet.", error("not_ready", "no model is loaded yet", [
        {"field": "model", "expected": "a loaded, warmed model",
         "got": "none yet (loading, or no model directory or registry is set)"}])),
}

# /v1/gaps takes clients, not deals: its own 413 and 422 (the shared ones above speak of deals).
GAPS_ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    413: (ERRORS[413][0], error(
        "payload_too_large", "too many clients in one request: at most 1,000 are accepted, got 1500; split the batch",
        [{"field": "clients", "expected": "at most 1000 items", "got": "1500 items"}])),
    422: (ERRORS[422][0], error("invalid_input", "2 problems in the request", [
        {"field": "clients[0].since", "expected": "a date like 2024-03-31 (ISO 8601)", "got": "'31/03/2024'"},
        {"field": "clients[1].client_id", "expected": "a value (required)", "got": "nothing"}])),
}
