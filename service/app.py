"""The application factory: `create_app(settings, *, model=None)`; nothing is built at import time.

Tests build their own app with their own settings and model; the server builds one per worker from
the environment (`create_app_from_env`). A model given in memory is warmed and served at once; otherwise
the model named by the settings is loaded in the background after start-up, so /health/live answers
at once and /health/ready says 503 until the model is loaded and warm. With a registry, the service then
follows its live version (service.reload): polled every `reload_interval_seconds`, and on POST /v1/admin/reload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from model.contract import utc_today
from model.errors import DealscoreError, NotFound, Problem
from model.scorer import ScoringModel
from service.dataplane import DataPlane
from service.errors import MethodNotAllowed, error_body, overload_refusal, pydantic_violation, shown, stop_refusal
from service.feedback import Feedback, FeedbackConfig, feedback_router
from service.holder import ModelHolder
from service.logs import LOGGER_NAME, configure_logging
from service.metrics import ServiceMetrics
from service.middleware import ALWAYS_ANSWERED, DOCS_ASSETS, RequestContextMiddleware, api_token_refusal
from service.reload import Reloader
from service.routes import JSON, router
from service.schemas import FIELD_NAMES, ID_INTEGER_SCHEMA, request_models
from service.score_queue import ScoreQueue
from service.settings import Settings

__all__ = ["create_app", "create_app_from_env"]

API_VERSION = "1"
log = logging.getLogger(LOGGER_NAME)


def create_app(settings: Settings, *, model: ScoringModel | None = None, metadata: dict[str, Any] | None = None,
               clock: Callable[[], date] = utc_today, feedback: Feedback | None = None) -> FastAPI:
    """The service. `model`: serve this in-memory model (warmed here); else load the one the settings name.
    `feedback`: the score log / outcomes / judgements store (started and stopped with the app); None: no
    feedback routes and no score log (tests); `create_app_from_env` builds one from the settings."""
    holder = ModelHolder()
    if model is not None:
        holder.install(model, metadata)
    reloader = Reloader(settings.registry_dir, holder) if settings.registry_dir is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _warn_of_open_routes(settings)
        if app.state.scoring_stopped:  # started again after a shutdown (tests, an embedding server)
            _start_scoring_threads(app, plane, settings)
        loading = None
        if holder.peek() is None and (reloader is not None or settings.model_dir is not None):
            loading = asyncio.create_task(_load_in_background(holder, reloader, settings))
        app.state.loading = loading
        watching = None
        # Not polling is safe with one worker only (the settings refuse more): the admin route reloads this
        # process alone.
        if reloader is not None and settings.reload_interval_seconds > 0:
            watching = asyncio.create_task(reloader.follow(settings.reload_interval_seconds))
        if feedback is not None:
            await asyncio.to_thread(feedback.start)  # migrations; never fails for a database that is down
        yield
        for task in (loading, watching):
            if task is not None and not task.done():
                task.cancel()
        if feedback is not None:
            await asyncio.to_thread(feedback.stop)  # the queued score log goes to the database or the spool
        app.state.executor.shutdown(wait=False, cancel_futures=True)
        app.state.scoring_stopped = True

    # FastAPIOffline: FastAPI whose /docs and /redoc pages load Swagger UI and ReDoc from files the package ships,
    # not from a CDN; with FastAPI's own, /docs was a blank page wherever the browser has no internet access.
    app = FastAPIOffline(
        title="dealscore", version=API_VERSION, lifespan=lifespan, static_url=DOCS_ASSETS,
        # No 307 from /v1/score/ to /v1/score: the redirect carried no error envelope, and its Location was
        # built as http:// from the Host header (wrong behind a TLS proxy). A trailing slash is a 404.
        redirect_slashes=False,
        description="Deal scoring: calibrated win probability, expected value, letter grade, reasons and "
                    "cross-sell gaps. Every non-2xx answer is the one error envelope (ErrorResponse). Every "
                    "answer carries a request_id, also in the X-Request-ID header: the caller's X-Request-ID "
                    "when it is 1 to 128 of A-Z a-z 0-9 . _ : -, else a new one. Ids and texts are trimmed of "
                    "surrounding whitespace, in answers too.",
    )
    app.state.settings = settings
    app.state.models = holder
    app.state.reloader = reloader
    app.state.dataplane = plane = DataPlane(settings, clock)
    app.state.feedback = feedback
    app.state.service_metrics = service_metrics = ServiceMetrics()
    plane.observers.append(lambda scored: service_metrics.observe_grades(scored.batch.grade))
    plane.observers.append(lambda scored: service_metrics.observe_inputs("not_sent", scored.batch.not_sent))
    plane.observers.append(lambda scored: service_metrics.observe_inputs("unseen", scored.batch.unseen))
    if feedback is not None:
        plane.column_transforms.append(feedback.transform_columns)  # outcomes in the client history
        plane.fact_transforms.append(feedback.transform_facts)  # products won since training are held
        plane.observers.append(feedback.observe)  # the score log
    _start_scoring_threads(app, plane, settings)  # here too, for callers that never run the lifespan
    app.include_router(router)
    if feedback is not None:

        def live_version() -> str | None:
            snapshot = holder.peek()
            return snapshot.version if snapshot is not None else None

        def reads_client_history() -> bool:
            snapshot = holder.peek()
            return snapshot is None or bool(snapshot.model.spec.has_client_history)

        app.include_router(feedback_router(feedback, live_version, reads_client_history=reads_client_history))
    _install_error_handlers(app)
    tokens = tuple(t.get_secret_value().encode() for t in (settings.api_token, settings.admin_token)
                   if t is not None) if settings.api_token is not None else ()
    app.add_middleware(RequestContextMiddleware, metrics=service_metrics, api_tokens=tokens,
                       route_paths=frozenset(route.path for route in _api_routes(app.routes)),
                       admin_token_set=settings.admin_token is not None,
                       max_in_flight=settings.max_concurrent_requests)
    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]
    return app


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _warn_of_open_routes(settings: Settings) -> None:
    """Said once at start, where the service listens beyond this machine without a token (the image listens on
    0.0.0.0): a security review found nothing told the operator that anyone reaching the port may post outcomes."""
    if settings.host in LOOPBACK_HOSTS:
        return
    unset = [name for name, token in (("DEALSCORE_API_TOKEN", settings.api_token),
                                      ("DEALSCORE_ADMIN_TOKEN", settings.admin_token)) if token is None]
    if unset:
        log.warning("listening on %s with %s not set: anyone who reaches the port may use the routes they guard "
                    "(docs/settings.md)", settings.host, " and ".join(unset))


def create_app_from_env() -> FastAPI:
    """The server's factory (uvicorn --factory): settings from DEALSCORE_* variables, JSON logs."""
    settings = Settings()
    configure_logging(settings.log_level)
    if settings.workers > 1:  # a worker of service.main's supervisor: it stops when its parent goes
        from service.supervisor import end_with_parent

        end_with_parent()
    return create_app(settings, feedback=Feedback(FeedbackConfig.from_settings(settings)))


async def _load_in_background(holder: ModelHolder, reloader: Reloader | None, settings: Settings) -> None:
    """Load the model the settings name; on failure the service stays up, not ready, and says why.

    A registry's live version goes through the same check as every later reload (a refusal is logged
    there and kept as the reason the service is not ready)."""
    source = settings.registry_dir or settings.model_dir
    try:
        if reloader is not None:
            await reloader.check_in_thread()
        elif settings.model_dir is not None:
            await asyncio.to_thread(holder.load, settings.model_dir)
    except DealscoreError as exc:
        log.error("model not loaded", extra={"source": str(source), "reason": exc.message})
    except Exception:  # the service stays up and not ready; the log has the traceback
        log.exception("model not loaded", extra={"source": str(source)})


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def _envelope(error: DealscoreError, request: Request, headers: Mapping[str, str] | None = None) -> Response:
    # A few errors carry HTTP headers of their own (a 401's WWW-Authenticate); model/ errors know no HTTP.
    # `headers`: those of the HTTP exception the error translates (a 405's Allow).
    return Response(content=error_body(error, _request_id(request)), status_code=error.status,
                    media_type="application/json", headers=headers or getattr(error, "headers", None))


def _start_scoring_threads(app: FastAPI, plane: DataPlane, settings: Settings) -> None:
    """The scoring threads (started lazily by the executor on first use) and the queue in front of them."""
    app.state.executor = ThreadPoolExecutor(max_workers=settings.scoring_threads, thread_name_prefix="dealscore-score")
    app.state.score_queue = ScoreQueue(plane, app.state.executor, settings.scoring_threads)
    app.state.scoring_stopped = False


def _install_error_handlers(app: FastAPI) -> None:
    async def on_dealscore_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DealscoreError)
        return _envelope(exc, request)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        method, path = request.method, request.url.path[:100]
        # Starlette's own headers are kept: a 405 must name the allowed methods in Allow (RFC 9110, 15.5.6),
        # HEAD too wherever GET is (the request middleware serves HEAD as GET without the body).
        headers = dict(exc.headers or {})
        allowed = [m.strip() for m in headers.get("allow", headers.get("Allow", "")).split(",") if m.strip()]
        if "GET" in allowed and "HEAD" not in allowed:
            allowed.append("HEAD")
            headers.pop("Allow", None)
            headers["allow"] = ", ".join(allowed)
        error: DealscoreError
        if exc.status_code == 404:
            error = NotFound(f"no route {method} {path}", [
                Problem("path", "a path the API serves (GET /openapi.json lists them)", shown(path))])
        elif exc.status_code == 405:
            error = MethodNotAllowed(f"{method} is not allowed on {path}", [
                Problem("method", f"one of {', '.join(allowed)}" if allowed else "another method", method[:20])])
        else:
            error = DealscoreError(str(exc.detail)[:200])
            error.status = exc.status_code
            error.code = "http_error"
        return _envelope(error, request, headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        # FastAPI's locations start with where the value came from: ('query', 'by') -> 'query.by'.
        return _envelope(pydantic_violation(list(exc.errors()), FIELD_NAMES), request)

    app.add_exception_handler(DealscoreError, on_dealscore_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)


def _restore_examples(document: dict[str, Any], app: FastAPI) -> None:
    """Put the examples back as the routes declare them: get_openapi drops every null value of the document,
    examples included (fastapi/fastapi#5559), so an example's `"value_per_hour": null` vanished and the
    example no longer matched its own schema, where the field is required."""
    for route in _api_routes(app.routes):
        path = document.get("paths", {}).get(route.path_format, {})
        for method in route.methods or ():
            operation = path.get(method.lower())
            if operation is None:
                continue
            for status, declared in (route.responses or {}).items():
                example = declared.get("content", {}).get(JSON, {}).get("example")
                target = operation.get("responses", {}).get(str(status), {}).get("content", {}).get(JSON)
                if example is not None and target is not None:
                    target["example"] = example
            body = (route.openapi_extra or {}).get("requestBody", {}).get("content", {}).get(JSON, {})
            target = operation.get("requestBody", {}).get("content", {}).get(JSON)
            if "example" in body and target is not None:
                target["example"] = body["example"]


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """The API routes, also inside included routers (FastAPI 0.165 keeps them as they were included; the
    routers here are included without a prefix, so each route's path is its path in the document)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(included.routes)


def _declare_api_token(document: dict[str, Any], required: bool, admin_token_set: bool = True) -> None:
    """The /v1 routes take DEALSCORE_API_TOKEN, the admin ones only while no admin token is set (checked by
    RequestContextMiddleware, not by a route dependency, so FastAPI cannot see it): its bearer scheme and 401
    declared on each, optional while unset."""
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["ApiToken"] = {"type": "http", "scheme": "bearer",
                           "description": "DEALSCORE_API_TOKEN (or the admin token); needed only when the service "
                                          "sets one"}
    document["components"]["securitySchemes"] = dict(sorted(schemes.items()))
    example = orjson.loads(error_body(api_token_refusal(sent=False), "5f0c6a1e2b7d4c1f9a8e3d2c1b0a9f8e"))
    unauthorized = {
        "description": "A /v1 route without `Authorization: Bearer <DEALSCORE_API_TOKEN>` (when the token is set).",
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/ErrorResponse"}, "example": example}}}
    for path, operations in document.get("paths", {}).items():
        if not path.startswith("/v1/") or (path.startswith("/v1/admin/") and (admin_token_set or not required)):
            continue
        for operation in operations.values():
            operation["security"] = [{"ApiToken": []}] if required else [{"ApiToken": []}, {}]
            responses = operation.setdefault("responses", {})
            responses["401"] = unauthorized
            operation["responses"] = dict(sorted(responses.items()))


def _declare_overload(document: dict[str, Any], limit: int) -> None:
    """The 503 RequestContextMiddleware answers beyond max_concurrent_requests (FastAPI cannot see it), on every
    route it may refuse."""
    if limit == 0:
        return
    note = ("Or this worker is working on DEALSCORE_MAX_CONCURRENT_REQUESTS requests already: code `overloaded`, "
            "with a Retry-After header.")
    _declare_503(document, note, overload_refusal(limit), skipped=ALWAYS_ANSWERED)


def _declare_stopping(document: dict[str, Any]) -> None:
    """The 503 RequestContextMiddleware answers for a request a forced quit cuts off (service.supervisor), on
    every route: any request may be running when an operator stops the service twice (/health/live and
    /v1/admin/reload had declared no 503)."""
    note = ("Or the service stopped before answering (a forced quit): code `stopping`, with a Retry-After header; "
            "the request may or may not have taken effect.")
    _declare_503(document, note, stop_refusal())


def _declare_503(document: dict[str, Any], note: str, error: DealscoreError, skipped: tuple[str, ...] = ()) -> None:
    """A 503 the middleware answers (FastAPI cannot see it): said beside a route's own 503, declared with `error`'s
    envelope as its example where the route has none."""
    example = orjson.loads(error_body(error, "5f0c6a1e2b7d4c1f9a8e3d2c1b0a9f8e"))
    for path, operations in document.get("paths", {}).items():
        if skipped and path.startswith(skipped):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "503" in responses:
                responses["503"]["description"] += " " + note
            else:
                # Nothing said before it: /health/live's 503 read "Or the service stopped ...", an "or" of nothing.
                alone = note.removeprefix("Or ")
                responses["503"] = {"description": alone[:1].upper() + alone[1:], "content": {JSON: {
                    "schema": {"$ref": "#/components/schemas/ErrorResponse"}, "example": example}}}
                operation["responses"] = dict(sorted(responses.items()))


def _exact_id_bounds(node: Any) -> None:
    """Integer ids' bounds as the service checks them. FastAPI's document model keeps `maximum` as a float, so
    the feedback routes' ids read 1e+18, one past the bound: a schema-valid 10**18 was refused (an API review)."""
    if isinstance(node, dict):
        if node.get("type") == "integer" and node.get("description") == ID_INTEGER_SCHEMA["description"]:
            node.update(minimum=ID_INTEGER_SCHEMA["minimum"], maximum=ID_INTEGER_SCHEMA["maximum"])
        for value in node.values():
            _exact_id_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _exact_id_bounds(value)


def _without_null_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without its properties' `"default": null`, as FastAPI renders the rest of the document. An
    optional field's default read as a value always there: openapi-typescript (by default) typed every optional
    Deal and Client field as required, so a deal of a deal_id alone did not compile (a client generation audit)."""
    for field in schema.get("properties", {}).values():
        if "default" in field and field["default"] is None:
            del field["default"]
    return schema


def _openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """FastAPI's document plus the request bodies the data plane parses itself."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    _exact_id_bounds(document)
    components = document.setdefault("components", {}).setdefault("schemas", {})
    models = request_models(settings.max_batch)
    for schema in (models.score, models.gaps):
        body = schema.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in body.pop("$defs", {}).items():
            components.setdefault(name, _without_null_defaults(definition))
        components[schema.__name__] = _without_null_defaults(body)
    # FastAPI's own 422 schemas are never sent: every error is an ErrorResponse.
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    document["components"]["schemas"] = dict(sorted(components.items()))
    _restore_examples(document, app)
    if settings.admin_token is None:
        # Without DEALSCORE_ADMIN_TOKEN the admin routes are open: the token is optional ({} = no security).
        for operation in (op for path in document.get("paths", {}).values() for op in path.values()):
            if operation.get("security") == [{"AdminToken": []}]:
                operation["security"] = [{"AdminToken": []}, {}]
    _declare_api_token(document, required=settings.api_token is not None,
                       admin_token_set=settings.admin_token is not None)
    _declare_overload(document, settings.max_concurrent_requests)
    _declare_stopping(document)
    app.openapi_schema = document
    return document
