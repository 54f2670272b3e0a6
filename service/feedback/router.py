"""HTTP routes of the feedback loop: /v1/outcomes, /v1/judgements, /v1/quality (thin: parse, delegate, answer).

Handlers are plain `def` (FastAPI runs them in its thread pool): each does database work. Invalid
bodies become ContractViolation with every bad field listed (this router's own field names, so the
service's shared handler words them right), and a database that is down becomes a 503.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime
from typing import Annotated, Any

import pydantic_core
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from model.errors import NotFound, PayloadTooLarge, Problem
from model.records import parse_date
from service.bodies import read_json_body
from service.errors import MAX_LISTED_PROBLEMS, MalformedJSON, pydantic_problems, request_violation
from service.feedback.judgements import Judgement
from service.feedback.outcomes import Outcome, batch_problems
from service.feedback.schemas import (
    EXAMPLE_REQUEST_ID,
    FEEDBACK_FIELD_NAMES,
    JUDGEMENT_EXAMPLE,
    JUDGEMENT_RESPONSE_EXAMPLE,
    OUTCOMES_EXAMPLE,
    OUTCOMES_RESPONSE_EXAMPLE,
    QUALITY_EXAMPLE,
    VERSIONS_EXAMPLE,
    DateText,
    JudgementIn,
    JudgementResponse,
    OutcomeResultOut,
    OutcomesRequest,
    OutcomesResponse,
    QualityResponse,
    VersionOut,
    VersionsResponse,
)
from service.feedback.store import Feedback
from service.schemas import TopDisagreements, id_as_sent

__all__ = ["feedback_router"]

LIVE = "live"
OUTCOMES_PATH = "/v1/outcomes"


class _FeedbackRoute(APIRoute):
    """Body and query errors of these routes as ContractViolation, located without FastAPI's 'body.' prefix."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        takes_body = self.body_field is not None

        async def checked(request: Request) -> Response:
            if takes_body:
                # As the scoring routes: 415 before the body is read, 413 before more than the limit is. FastAPI's
                # handler then parses the body kept here (Starlette's Request keeps it as _body).
                request._body = body = await read_json_body(request)
                if body.strip():
                    # Syntax errors worded as the scoring routes word them (with line and column, and the nesting
                    # limit named): FastAPI's own parse said "Expecting property name" with no position, and
                    # "could not be decoded" of JSON nested too deep (an API review).
                    try:
                        pydantic_core.from_json(body)
                    except ValueError as exc:
                        raise MalformedJSON.because(str(exc)) from None
            try:
                return await handler(request)
            except HTTPException as exc:
                # FastAPI's one 400 here: a body it could not decode at all (not UTF-8 text).
                if exc.status_code == 400:
                    raise MalformedJSON.because("the body could not be decoded as JSON text") from None
                raise
            except RequestValidationError as exc:
                malformed = MalformedJSON.among(exc.errors())
                if malformed is not None:  # not JSON: 400, as the scoring routes answer it
                    raise malformed from None
                if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in exc.errors()):
                    raise MalformedJSON.because("an empty body") from None
                errors = [{**e, "loc": tuple(e.get("loc", ()))[1:] if tuple(e.get("loc", ()))[:1] == ("body",)
                           else tuple(e.get("loc", ()))} for e in exc.errors()]
                too_long = next((e for e in errors if e.get("type") == "too_long" and len(e["loc"]) == 1), None)
                if too_long is not None:  # a batch over its limit: 413, as the scoring routes answer it
                    limit, sent = (too_long.get("ctx") or {}).get("max_length"), (too_long.get("ctx") or {}).get(
                        "actual_length", "more")
                    items = str(too_long["loc"][0])
                    raise PayloadTooLarge(f"too many {items} in one request: at most {limit:,} are accepted, got "
                                          f"{sent}; split the batch",
                                          [Problem(items, f"at most {limit} items", f"{sent} items")]) from None
                problems, paths = pydantic_problems(errors, FEEDBACK_FIELD_NAMES, limit=MAX_LISTED_PROBLEMS)
                if self.path == OUTCOMES_PATH:  # and the batch's own checks, so one 422 lists every problem
                    more = [p for p in _raw_outcome_problems(request._body) if p.field not in paths]
                    problems, paths = problems + more, paths | {p.field for p in more}
                raise request_violation(problems, len(paths)) from None

        return checked


def _raw_outcome_problems(body: bytes) -> list[Problem]:
    """batch_problems of a body that failed its schema, read from its JSON: a deal_id sent twice is said with the
    outcome's bad status, not only once that is fixed (the checks ran after the schema had passed).

    Read by pydantic's parser, as the schema read it (orjson refuses NaN and 1e999, which the schema reads to refuse
    an amount, and the batch's problems went unsaid), and each id and date by the schema's own types (7.0 is the id
    "7" to the schema, as to the store that then refused the pair)."""
    try:
        raw = pydantic_core.from_json(body)
    except ValueError:  # not JSON at all: answered 400 before the schema ran
        return []
    listed = raw.get("outcomes") if isinstance(raw, dict) else None
    if not isinstance(listed, list):
        return []
    return batch_problems([(id_as_sent(o.get("deal_id")), _raw_day(o.get("closed_at"))) if isinstance(o, dict)
                           else (None, None) for o in listed], datetime.now(UTC).date())


# The annotated type validates to its AfterValidator's result (the day), not to what it annotates.
_DAY: TypeAdapter[Any] = TypeAdapter(DateText)


def _raw_day(value: object) -> date | None:
    """A closed_at's day as the schema reads it, None for anything it refuses."""
    try:
        day = _DAY.validate_python(value)
    except ValidationError:
        return None
    return day if isinstance(day, date) else None


def _request_id(request: Request) -> str:
    found = getattr(request.state, "request_id", None)
    return str(found) if found else uuid.uuid4().hex


def feedback_router(feedback: Feedback | Callable[[], Feedback], live_version: Callable[[], str | None] = lambda: None,
                    error_responses: dict[int | str, dict[str, Any]] | None = None,
                    reads_client_history: Callable[[], bool] = lambda: True) -> APIRouter:
    """The routes, bound to a Feedback store (or a function returning it, for stores built at start-up).

    `live_version` names the model serving now (the default of /v1/quality); `error_responses` replace
    this router's OpenAPI error declarations (ErrorResponse per status, with feedback examples) by status;
    `reads_client_history` says whether the model serving now reads clients' histories (one trained without
    client ids does not: an outcome then enters none, whatever its client).
    """
    router = APIRouter(route_class=_FeedbackRoute, tags=["feedback"])
    # A quality report reads the whole score log (2.2 s of CPU at 268,000 rows): a dozen at once, each in a thread
    # of its own, held the GIL against scoring (a security review: single-deal p50 6 ms -> 140-280 ms). One at a
    # time, the others wait their turn. The list of versions reads the whole log as well (2.6 s at 200,000 rows;
    # a dozen at once: p50 3.8 -> 36 ms, a later review): it takes the same turn.
    one_report_at_a_time = threading.Lock()
    store: Callable[[], Feedback] = feedback if callable(feedback) else (lambda: feedback)
    errors = _error_declarations()

    def declared(example: dict[str, Any], *statuses: int, own: dict[int | str, dict[str, Any]] | None = None
                 ) -> dict[int | str, dict[str, Any]]:
        ok: dict[int | str, dict[str, Any]] = {200: {"description": "Successful Response",
                                                     "content": {JSON: {"example": example}}}}
        said = {**errors, **(own or {}), **(error_responses or {})}  # the caller's replacements last
        return {**ok, **{s: said[s] for s in statuses if s in said}}

    @router.post(OUTCOMES_PATH, response_model=OutcomesResponse, operation_id="record_outcomes",
                 summary="Record realised outcomes of scored deals",
                 responses=declared(OUTCOMES_RESPONSE_EXAMPLE, 400, 408, 413, 415, 422, 500, 503,
                                    own=_outcome_errors()),
                 openapi_extra=_body_example(OUTCOMES_EXAMPLE))
    def post_outcomes(body: OutcomesRequest, request: Request) -> OutcomesResponse:
        """Idempotent by deal_id: the same outcome again changes nothing; a changed one is updated (revision + 1)
        and its previous version kept. A win also enters its client's history for later scores: at once in the
        worker that took it, in a service's other workers (and other instances on the database) within
        DEALSCORE_OUTCOMES_REFRESH_SECONDS (30 s by default)."""
        rid = _request_id(request)
        items = [Outcome(deal_id=str(o.deal_id), status=o.status, amount=o.amount,
                         closed_at=parse_date(o.closed_at) if o.closed_at is not None else None,
                         client_id=str(o.client_id) if o.client_id is not None else None) for o in body.outcomes]
        results = store().record_outcomes(items, rid)
        counts = {kind: sum(r.result == kind for r in results) for kind in ("created", "updated", "unchanged")}
        history = reads_client_history()
        return OutcomesResponse(
            request_id=rid, received=len(results), **counts,
            results=[OutcomeResultOut(deal_id=r.deal_id, result=r.result, revision=r.revision,
                                      client_history=history and r.client_id is not None) for r in results])

    @router.post("/v1/judgements", response_model=JudgementResponse, operation_id="record_judgement",
                 summary="Record a manager's judgement that one deal should rank above another",
                 responses=declared(JUDGEMENT_RESPONSE_EXAMPLE, 400, 408, 413, 415, 422, 500, 503),
                 openapi_extra=_body_example(JUDGEMENT_EXAMPLE))
    def post_judgement(body: JudgementIn, request: Request) -> JudgementResponse:
        """Both deals must have been scored, and differ. One standing view per manager and pair: sending it
        again changes nothing, reversing it updates it."""
        recorded = store().record_judgement(Judgement(manager=body.manager, above_deal_id=str(body.above_deal_id),
                                                      below_deal_id=str(body.below_deal_id), note=body.note))
        return JudgementResponse(request_id=_request_id(request), judgement_id=recorded.judgement_id,
                                 result=recorded.result, revision=recorded.revision)

    @router.get("/v1/quality", response_model=QualityResponse, operation_id="get_quality",
                summary="Live quality of a model version against outcomes and managers' judgements",
                responses=declared(QUALITY_EXAMPLE, 404, 422, 500, 503, own=_quality_errors()))
    def get_quality(
        request: Request,
        version: Annotated[str, Query(max_length=100, description="a model version, or 'live' for the one serving"
                                      )] = LIVE,
        top: Annotated[TopDisagreements, Query(description="strongest disagreements listed")] = 10,
    ) -> QualityResponse:
        """On deals with outcomes: AUC, Brier score, calibration error and win rate per grade of what the version
        said before each deal closed. On judgements: the share of pairs ordered as the managers did, per
        manager and overall, and the strongest disagreements."""
        feedback = store()
        wanted = _resolve(feedback, version, live_version)
        with one_report_at_a_time:
            if not _is_live(version):
                known = [v["version"] for v in feedback.versions()]
                if wanted not in known:
                    raise NotFound(f"the score log has no scores of model version '{wanted[:100]}'; "
                                   "GET /v1/quality/versions lists the versions it has",
                                   [Problem("query.version", "'live' or a model version the score log has (latest: "
                                            f"{', '.join(known[:3]) or 'none'})", f"'{wanted[:100]}'")])
            report = feedback.quality(wanted, top=top)
        return QualityResponse.model_validate({"request_id": _request_id(request), **report})

    @router.get("/v1/quality/versions", response_model=VersionsResponse, operation_id="list_quality_versions",
                summary="Model versions the score log has scores of, the most recently scoring first",
                responses=declared(VERSIONS_EXAMPLE, 500, 503))
    def get_versions(request: Request) -> VersionsResponse:
        feedback = store()
        with one_report_at_a_time:
            versions = feedback.versions()
        return VersionsResponse(request_id=_request_id(request), live=live_version(),
                                versions=[VersionOut.model_validate(v) for v in versions])

    return router


JSON = "application/json"


def _body_example(example: dict[str, Any]) -> dict[str, Any]:
    # Merged by FastAPI into the generated requestBody (schema from the route's body parameter).
    return {"requestBody": {"content": {JSON: {"example": example}}}}


def _declared(description: str, code: str, message: str, details: list[dict[str, str]] | None = None
              ) -> dict[str, Any]:
    """One status's error envelope in the OpenAPI document, with its example."""
    from service.schemas import ErrorResponse

    example = {"error": {"code": code, "message": message, "details": details or []},
               "request_id": EXAMPLE_REQUEST_ID}
    return {"model": ErrorResponse, "description": description, "content": {JSON: {"example": example}}}


def _outcome_errors() -> dict[int | str, dict[str, Any]]:
    """/v1/outcomes' own 413 and 422 (the shared 422 was a judgement's refusal, on every feedback route)."""
    return {
        413: _declared("The body is larger than max_body_bytes, or holds more than 10,000 outcomes.",
                       "payload_too_large",
                       "too many outcomes in one request: at most 10,000 are accepted, got 12000; split the batch",
                       [{"field": "outcomes", "expected": "at most 10000 items", "got": "12000 items"}]),
        422: _declared("Invalid input: every bad field is listed.", "invalid_input", "2 problems in the request",
                       [{"field": "outcomes[1].status", "expected": "one of 'won' or 'lost'", "got": "'open'"},
                        {"field": "outcomes[1].deal_id",
                         "expected": "a deal_id not used by another outcome of the batch",
                         "got": "'D1', also at outcomes[0]"}]),
    }


def _quality_errors() -> dict[int | str, dict[str, Any]]:
    """/v1/quality's own 422: it takes no body, only its query."""
    return {422: _declared("Invalid query: every bad parameter is listed.", "invalid_input",
                           "1 problem in the request",
                           [{"field": "query.top", "expected": "a number <= 100", "got": "'101'"}])}


def _error_declarations() -> dict[int | str, dict[str, Any]]:
    """The error envelope per status in the OpenAPI document, shared by this router's routes (the 422: a
    judgement's refusal)."""
    return {
        400: _declared("The body is not JSON.", "malformed_json", "the request body is not valid JSON",
                       [{"field": "body", "expected": "a JSON object", "got": "EOF while parsing an object"}]),
        408: _declared("The body did not arrive in time (DEALSCORE_BODY_TIMEOUT_SECONDS).", "request_timeout",
                       "request body not received within 30 s (DEALSCORE_BODY_TIMEOUT_SECONDS); send it faster, in "
                       "smaller batches, or ask for a longer limit",
                       [{"field": "body", "expected": "the whole body within 30 s", "got": "65,536 bytes by then"}]),
        413: _declared("The body is larger than max_body_bytes.",
                       "payload_too_large",
                       "request body too large: at most 4,194,304 bytes are accepted; split the batch",
                       [{"field": "body", "expected": "at most 4194304 bytes", "got": "4,620,112 bytes"}]),
        415: _declared("The body is not declared as JSON (Content-Type).", "unsupported_media_type",
                       "send the body as application/json",
                       [{"field": "content-type", "expected": "application/json", "got": "'text/plain'"}]),
        404: _declared("The score log has no scores of that model version (or none at all).", "not_found",
                       "the score log has no scores of model version 'v0'; GET /v1/quality/versions lists the "
                       "versions it has"),
        422: _declared("Invalid input: every bad field is listed.", "invalid_input", "judgement refused: 1 problem",
                       [{"field": "below_deal_id", "expected": "the id of a deal the service has scored",
                         "got": "'D9' (never scored)"}]),
        500: _declared("Unexpected failure; the request id finds it in the service log.", "internal_error",
                       "internal error; the request id identifies it in the service log"),
        503: _declared("The feedback database is unavailable; scoring is not affected.", "feedback_unavailable",
                       "the feedback database is unavailable; scoring is not affected, retry later",
                       [{"field": "feedback database", "expected": "reachable and at the service's schema",
                         "got": "not reachable now"}]),
    }


def _is_live(version: str) -> bool:
    return version.strip().casefold() == LIVE  # "LIVE" or " live" as a person types it


def _resolve(feedback: Feedback, version: str, live_version: Callable[[], str | None]) -> str:
    if not _is_live(version):
        return version
    live = live_version() or feedback.latest_version()
    if live is None:
        raise NotFound("no model is live and the score log is empty: no version to report on",
                       [Problem("query.version", "a model version the score log has ('live': the live model's)",
                                "'live', and no model is live and no score is logged")])
    return live
