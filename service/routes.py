"""HTTP routes: read the body within limits, hand it to the data plane in a worker thread, send bytes back.

Handlers are `async` only for reading the body and awaiting the scoring thread: parsing, scoring and
encoding are CPU work and run off the event loop (`offload`; score and rank requests through the
score queue, which scores requests that wait for a thread together).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from model.errors import Problem
from model.metrics import probability_caution
from model.registry import RefusedVersion
from service import draining, examples
from service.bodies import read_json_body
from service.dataplane import DataPlane, ScoreCall
from service.errors import NoRegistry, Unauthorized, drain_refusal
from service.holder import LoadedModel, ModelHolder
from service.metrics import MEDIA_TYPE as METRICS_MEDIA_TYPE
from service.metrics import prometheus_text
from service.reload import Reloader
from service.schemas import (
    ErrorResponse,
    GapsResponse,
    Health,
    ModelInfo,
    RankBy,
    RankResponse,
    ReloadResponse,
    ScoreResponse,
    TopGaps,
)
from service.score_queue import ScoreQueue
from service.settings import Settings

__all__ = ["router"]

JSON = "application/json"
T = TypeVar("T")
router = APIRouter()


def _error_responses(*statuses: int, own: dict[int, tuple[str, dict[str, Any]]] | None = None
                     ) -> dict[int | str, dict[str, Any]]:
    """The error envelope per status, with the shared examples or the route's `own` ones."""
    said = {**examples.ERRORS, **(own or {})}
    return {status: {"model": ErrorResponse, "description": said[status][0],
                     "content": {JSON: {"example": said[status][1]}}} for status in statuses}


def _ok(example: dict[str, Any], description: str = "Successful Response") -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {JSON: {"example": example}}}}


def _body(schema: str, example: dict[str, Any], description: str) -> dict[str, Any]:
    # The body is parsed by the data plane (pydantic straight from bytes), so it is declared by hand here.
    return {"requestBody": {"required": True, "description": description, "content": {JSON: {
        "schema": {"$ref": f"#/components/schemas/{schema}"}, "example": example}}}}


BODY_ERRORS = (400, 408, 413, 415, 422, 500, 503)


# ---------------------------------------------------------------------------------------------------
# Dependencies: `async` because they do no blocking work; FastAPI runs plain `def` ones in the thread
# pool, a thread hop each.


def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.models
    return holder


def get_reloader(request: Request) -> Reloader | None:
    """The registry follower; None when the service serves a model directory or an in-memory model."""
    reloader: Reloader | None = request.app.state.reloader
    return reloader


async def get_snapshot(request: Request) -> LoadedModel:
    snapshot = get_holder(request).current()
    request.state.model_version = snapshot.version
    return snapshot


async def request_id(request: Request) -> str:
    return str(request.state.request_id)


Snapshot = Annotated[LoadedModel, Depends(get_snapshot)]
RequestId = Annotated[str, Depends(request_id)]
# Declares the bearer scheme in the OpenAPI (and /docs' Authorize button); require_admin does the checking.
admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken",
                          description="DEALSCORE_ADMIN_TOKEN; needed only when the service sets one")


async def offload(request: Request, work: Callable[..., T], *args: Any) -> T:
    """Run CPU-bound `work` on the app's scoring threads, off the event loop.

    A small dedicated pool (settings.scoring_threads), not anyio's default one of 40: scoring holds the
    GIL most of the time, so more threads only contend for it; and cheaper per call than anyio's hop.
    """
    executor: ThreadPoolExecutor = request.app.state.executor
    return await asyncio.get_running_loop().run_in_executor(executor, partial(work, *args))


def _json(content: bytes, status: int = 200) -> Response:
    return Response(content=content, status_code=status, media_type=JSON)


# ---------------------------------------------------------------------------------------------------
# Scoring


@router.post(
    "/v1/score", tags=["scoring"], response_model=ScoreResponse, operation_id="score_deals",
    summary="Score deals: win probability, value, expected value, grade, reasons and gaps",
    responses={**_ok(examples.SCORE_RESPONSE), **_error_responses(*BODY_ERRORS)},
    openapi_extra=_body("ScoreRequest", examples.SCORE_REQUEST, "1 to max_batch deals (default 1,000)"),
)
async def score(request: Request) -> Response:
    """Scores come back in input order. A deal's client may carry its history (won_deals, won_amount,
    first_won_at, last_won_at); without it the model's history as of training is used for a known
    client_id, and an unknown client is a prospect. `history_source` says which."""
    # The hot path resolves its needs inline rather than through Depends: FastAPI's dependency solving
    # costs more per request than everything else the service adds to a single-deal score.
    snapshot, body = await _prepare(request)
    queue: ScoreQueue = request.app.state.score_queue
    return _json(await queue.answer(ScoreCall(body, snapshot, request.state.request_id)))


@router.post(
    "/v1/rank", tags=["scoring"], response_model=RankResponse, operation_id="rank_deals",
    summary="Score deals and sort them, best first, each with its rank",
    responses={**_ok(examples.RANK_RESPONSE), **_error_responses(*BODY_ERRORS)},
    openapi_extra=_body("ScoreRequest", examples.SCORE_REQUEST, "1 to max_batch deals (default 1,000)"),
)
async def rank(request: Request,
               by: Annotated[RankBy, Query(description="what to sort by; deals without it come last")]
               = RankBy.expected_value) -> Response:
    """Sorted by expected value (default) or expected value per manager hour, largest first; deals
    without the value sort last; equal values (and deals without it) by expected value, then p_win; still
    equal, in input order. `by=grade` sorts as a manager reads a worklist: the letter class first (A, B, C,
    then D, the deals not worth a manager's hour, however large), expected value within a class."""
    snapshot, body = await _prepare(request)
    queue: ScoreQueue = request.app.state.score_queue
    return _json(await queue.answer(ScoreCall(body, snapshot, request.state.request_id, by)))


@router.post(
    "/v1/gaps", tags=["clients"], response_model=GapsResponse, operation_id="client_gaps",
    summary="Cross-sell gap lists: what each client lacks against its segment's ideal profile",
    responses={**_ok(examples.GAPS_RESPONSE), **_error_responses(*BODY_ERRORS, own=examples.GAPS_ERRORS)},
    openapi_extra=_body("GapsRequest", examples.GAPS_REQUEST, "1 to max_batch clients (default 1,000)"),
)
async def gaps(request: Request,
               top: Annotated[TopGaps, Query(description="gap items per client")] = 5) -> Response:
    """Each client's gap list, rank 1 = offer first, in input order. Without `products` the client's
    holdings known at training are used. Empty lists when the model has no ideal profiles."""
    snapshot, body = await _prepare(request)
    plane: DataPlane = request.app.state.dataplane
    return _json(await offload(request, plane.gaps, body, snapshot, request.state.request_id, top))


async def _prepare(request: Request) -> tuple[LoadedModel, bytes]:
    """The model snapshot this request works on (503 before one is ready), then its body within limits."""
    snapshot = await get_snapshot(request)
    return snapshot, await read_json_body(request)


# ---------------------------------------------------------------------------------------------------
# Model and health


@router.get("/v1/model", tags=["model"], response_model=ModelInfo, operation_id="get_model", summary="The live model",
            responses={**_ok(examples.MODEL_INFO), **_error_responses(500, 503)})
async def model_info(request: Request, snapshot: Snapshot, rid: RequestId) -> Response:
    """Version, training date, data summary, metrics, grade cut-offs and features of the model serving now;
    where it came from, and the registry's live version when the service refused to load it."""
    meta = snapshot.metadata
    reloader = get_reloader(request)
    info = {
        "model_version": snapshot.version, "request_id": rid, "trained_at": meta.get("trained_at"),
        "engine": meta.get("engine"), "data": meta.get("data", {}), "metrics": meta.get("metrics", {}),
        "grade_cutoffs": meta.get("grade_cutoffs", {}),
        # Artifacts older than the field: said from their metrics, as training says it now.
        "caution": meta["caution"] if "caution" in meta else probability_caution(meta.get("metrics") or {}),
        "features": list(meta.get("features") or snapshot.model.spec.names),
        "has_profiles": getattr(snapshot.model, "profiles", None) is not None,
        "gap_take_up_days": _take_up_days(snapshot.model),
        "small_data": meta.get("small_data"), "libraries": meta.get("libraries", {}),
        "loaded_at": snapshot.loaded_at.isoformat(timespec="seconds"),
        "source": {"kind": snapshot.kind, "path": snapshot.source},
        "refused": _refused(reloader.refused if reloader is not None else None),
    }
    return _json(_dumps(info))


def _take_up_days(model: Any) -> int | None:
    take_up = getattr(getattr(model, "profiles", None), "take_up", None)
    return None if take_up is None else int(take_up.days)


@router.get("/health/live", tags=["health"], response_model=Health, operation_id="health_live",
            summary="The process is up",
            responses={**_ok(examples.LIVE), **_error_responses(500)})
async def live(rid: RequestId) -> Response:
    return _json(_dumps({"status": "live", "request_id": rid}))


@router.get("/health/ready", tags=["health"], response_model=Health, operation_id="health_ready",
            summary="A model is loaded and warmed (503 until then, and while draining before a stop)",
            responses={**_ok(examples.READY), **_error_responses(500, 503)})
async def ready(request: Request, rid: RequestId) -> Response:
    """200 once a model is live. 503 `not_ready` before that; 503 `stopping` during the drain after a SIGTERM
    (DEALSCORE_DRAIN_SECONDS), while the service still answers every other route, so that a load balancer takes
    it out of rotation before it stops listening."""
    # NotReady until a model is live; why a load failed only where every route is open anyway (/health/ready
    # stays open with an API token, for the probes).
    settings: Settings = request.app.state.settings
    snapshot = get_holder(request).current(say_why=settings.api_token is None)
    request.state.model_version = snapshot.version
    if (left := draining.seconds_left()) is not None:  # still serving, but about to stop: out of rotation
        raise drain_refusal(left)
    draining.answered_ready()
    return _json(_dumps({"status": "ready", "request_id": rid, "model_version": snapshot.version}))


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """This worker's model, answers, scores and feedback figures for Prometheus (service/metrics.py); an ops
    endpoint, left out of the API document."""
    snapshot = get_holder(request).peek()
    feedback = getattr(request.app.state, "feedback", None)
    figures = feedback.metrics() if feedback is not None else {}
    reloader = get_reloader(request)
    refused = reloader.refused if reloader is not None else None
    return Response(prometheus_text(snapshot.version if snapshot is not None else None, figures,
                                    request.app.state.service_metrics, refused is not None,
                                    refused.version if refused is not None else None,
                                    int(snapshot.model.history.last_day) if snapshot is not None else None,
                                    draining.seconds_left() is not None),
                    media_type=METRICS_MEDIA_TYPE)


# ---------------------------------------------------------------------------------------------------
# Admin


async def require_admin(request: Request,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)]) -> None:
    """With DEALSCORE_ADMIN_TOKEN set, the caller must send it as a bearer token; unset, admin routes are open."""
    settings: Settings = request.app.state.settings
    if settings.admin_token is None:
        return
    expected = settings.admin_token.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials is not None else b""
    if not hmac.compare_digest(given, expected):  # constant time: the comparison leaks no prefix of the token
        # What came is described, never quoted: a wrong token may be another secret of the caller's.
        got = "another token" if credentials is not None else "no bearer token"
        raise Unauthorized("admin routes need the header `Authorization: Bearer <token>` with the service's "
                           "admin token (DEALSCORE_ADMIN_TOKEN)",
                           [Problem("Authorization", "Bearer and the service's admin token", got)])


@router.post("/v1/admin/reload", tags=["admin"], response_model=ReloadResponse, operation_id="reload_model",
             summary="Load the registry's live version now, if it is not the one serving",
             dependencies=[Depends(require_admin)],
             responses={**_ok(examples.RELOAD_RESPONSE), **_error_responses(401, 409, 500)})
async def reload(request: Request, rid: RequestId) -> Response:
    """Reads the registry's manifest now (the service also polls it every DEALSCORE_RELOAD_INTERVAL_SECONDS).
    A new live version is loaded, its checksums and library versions verified, and it is warmed with a test
    prediction before it is swapped in; requests in flight finish on the model they started with. A version
    that fails is refused: the old model keeps serving, and `refused` (here and in GET /v1/model) says why. A
    refused version is tried again once the manifest or its files change, or a minute after the last try."""
    reloader = get_reloader(request)
    if reloader is None:
        source = get_holder(request).peek()
        what = f"the model directory {source.source}" if source is not None and source.source else "no registry"
        raise NoRegistry(f"this service serves {what}: there is nothing to reload; restart it to change the "
                         "model, or serve a registry (DEALSCORE_REGISTRY_DIR)",
                         [Problem("DEALSCORE_REGISTRY_DIR", "a registry to reload from",
                                  "a model directory" if source is not None and source.source else "none set")])
    before = get_holder(request).peek()
    result = await reloader.check_in_thread(force=True)
    serving = get_holder(request).peek()
    status = result.status
    if status == "unchanged" and serving is not None and (before is None or before.version != serving.version):
        # The worker's own poll was loading the live version when this call came, and this call waited for it: the
        # version this call asked for was swapped in during it ("unchanged" read as a reload that did nothing).
        status = "loaded"
    return _json(_dumps({"status": status, "live_version": result.live_version,
                         "serving_version": serving.version if serving is not None else None,
                         "refused": _refused(reloader.refused), "request_id": rid}))


def _refused(refused: RefusedVersion | None) -> dict[str, Any] | None:
    return dataclasses.asdict(refused) if refused is not None else None


def _dumps(content: dict[str, Any]) -> bytes:
    return orjson.dumps(content, default=str)
