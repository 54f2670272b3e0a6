"""The outermost layer of every request: its id, its log line, the bound on requests in progress (503), and the
last line of defence (500).

A pure ASGI middleware (Starlette's BaseHTTPMiddleware costs a task and a copy per request). It takes
the caller's X-Request-ID when it is a sane token, makes one otherwise, puts it in `scope["state"]`
for the routes and in the response header, and logs one JSON line when the answer is sent: route,
status, duration and the model version the request used; never the payload. The same answer is counted
in the worker's /metrics (service.metrics).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
import uuid
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.errors import DealscoreError, Problem
from service.errors import Unauthorized, error_body, internal_error_body, overload_refusal, stop_refusal
from service.logs import LOGGER_NAME
from service.metrics import UNMATCHED_ROUTE, ServiceMetrics

__all__ = ["RequestContextMiddleware", "REQUEST_ID_HEADER"]

REQUEST_ID_HEADER = "x-request-id"
DOCS_ASSETS = "/docs-assets"  # where /docs and /redoc load their scripts and styles from
# The documentation's routes are Starlette's, which leave no route in the scope: counted by their own path, not
# as "unmatched" (what a path no route serves is counted as).
DOCUMENTATION_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
CLIENT_CLOSED = 499  # the status logged and counted for a request whose caller hung up mid-body
CUT_OFF = 500  # logged and counted for a request the server's stop cut off after its answer began
_SANE_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
log = logging.getLogger(LOGGER_NAME)


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics | None = None,
                 api_tokens: tuple[bytes, ...] = (), route_paths: frozenset[str] = frozenset(),
                 admin_token_set: bool = False, max_in_flight: int = 0) -> None:
        self.app = app
        self.metrics = metrics
        # The app's route paths (none has a parameter): a request refused here, before routing, is counted under
        # its route when it asked for one, not as "unmatched" (what a scanner's random paths are counted as).
        self.route_paths = route_paths
        # DEALSCORE_API_TOKEN (and the admin token beside it): when set, every path but OPEN_PATHS (and the admin
        # routes, while an admin token of their own is set) needs one as a bearer token. Checked here, once for
        # every router, rather than as a dependency of each route: FastAPI's dependency solving costs more than
        # the rest of what the service adds to a single-deal score.
        self.api_tokens = api_tokens
        # The admin routes check their own token when there is one; without it they need the API token like the
        # rest (an operator who set only the API token took the admin route for closed: a new-user review).
        self.exempt_prefixes = (DOCS_ASSETS + "/", *(("/v1/admin/",) if admin_token_set else ()))
        # DEALSCORE_MAX_CONCURRENT_REQUESTS (0: none). Counted here, on the worker's one event loop, so no lock; here
        # rather than by uvicorn's limit_concurrency, whose 503 is plain text, and which refuses the probes too and
        # counts idle keep-alive connections.
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        status = 500
        response_started = False
        head = scope["method"] == "HEAD"
        if head:
            # HEAD is GET without the body (RFC 9110, 9.3.2), which load balancers and uptime checks use. The
            # routes see a GET in a copy of the scope; the server's own scope still says HEAD.
            scope = {**scope, "method": "GET"}

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), header]
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}  # the headers, content-length included, stay the GET's
            await send(message)

        def done(answered: int, message: str, level: int = logging.INFO, failure: bool = False) -> None:
            """The request's log line and its count in /metrics, with the method as the client sent it."""
            fields = _fields(scope, state, request_id, answered, started)
            if head:
                fields["method"] = "HEAD"
            log.log(level, message, extra=fields, exc_info=failure or None)
            self._count(scope, str(fields["method"]), answered, fields["duration_ms"])

        async def refuse(error: DealscoreError, message: str = "request", level: int = logging.INFO) -> None:
            """Answered here, before routing (or after it, cut off): counted under the route it asked for, when it
            names one."""
            body = error_body(error, request_id)
            extra = getattr(error, "headers", {})
            await send_with_id({"type": "http.response.start", "status": error.status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                *((name.lower().encode(), value.encode()) for name, value in extra.items())]})
            await send_with_id({"type": "http.response.body", "body": body})
            path = _path_within_app(scope)
            if path in self.route_paths:
                state["route"] = path
            done(error.status, message, level)

        if self.api_tokens and _needs_api_token(scope, self.exempt_prefixes) and not _bearer_matches(
                scope, self.api_tokens):
            await refuse(_unauthorized(scope))
            return
        limited = self.max_in_flight > 0 and not _path_within_app(scope).startswith(ALWAYS_ANSWERED)
        if limited and self.in_flight >= self.max_in_flight:
            await refuse(overload_refusal(self.max_in_flight))
            return
        self.in_flight += limited
        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            # The server cut the request off: a forced quit (a second Ctrl-C, or SIGINT during a graceful stop)
            # cancels every request still running, and uvicorn answered each with a plain-text 500 (no envelope, no
            # request id, no log line of ours), read by CRMs as a failure of the request rather than a retry. Not
            # re-raised once answered: the task ends here either way, and uvicorn would log an error with a traceback
            # for each request an operator's forced quit cut off.
            if response_started:
                done(CUT_OFF, "request cut off by the server's stop after its answer began", logging.WARNING)
                raise  # uvicorn closes the connection: the caller sees a truncated answer, not a whole one
            await refuse(stop_refusal(), "request cut off by the server's stop", logging.WARNING)
            return
        except ClientDisconnect:
            # The caller hung up before its body was read: nobody to answer, and not the service's failure (it
            # was logged and counted as a 500, which set off error alerts). 499 as nginx logs it.
            done(CLIENT_CLOSED, "client disconnected")
            return
        except Exception:
            # Logged with its traceback here; the client gets the envelope and the id, nothing else.
            done(500, "unhandled error", logging.ERROR, failure=True)
            if not response_started:
                body = internal_error_body(request_id)
                await send({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), header]})
                await send({"type": "http.response.body", "body": body})
            return
        finally:
            self.in_flight -= limited
        done(status, "request")

    def _count(self, scope: Scope, method: str, status: int, duration_ms: float) -> None:
        if self.metrics is None:
            return
        # The route's template, not the path: a path no route serves (a scanner's, say) would make a series
        # of its own for every value.
        route = (getattr(scope.get("route"), "path", None) or scope["state"].get("route")
                 or _documentation_route(str(scope.get("path", ""))))
        self.metrics.observe_request(route, method, status, duration_ms / 1000.0)


# What stays open with an API token set: the probes, the metrics and the docs. The admin routes check their own
# token when one is set (service.routes.require_admin).
OPEN_PATHS = frozenset({"/health/live", "/health/ready", "/metrics", *DOCUMENTATION_PATHS})
# What max_concurrent_requests never refuses (path prefixes): the probes (an orchestrator that found a busy worker
# not alive would restart it, and its queue with it), the metrics that show the overload, and the admin routes an
# operator may need during one (a rollback).
ALWAYS_ANSWERED = ("/health/live", "/health/ready", "/metrics", "/v1/admin/")


def _needs_api_token(scope: Scope, exempt_prefixes: tuple[str, ...]) -> bool:
    """Every path but the open ones: asked of the path within the app, as Starlette routes it (uvicorn's
    --root-path, or a mount, puts a prefix in front of it: the review of the first version, which asked whether
    the path began with /v1/, reached every route without a token behind one). Denied by default: a path this
    does not know is no way round it."""
    path = _path_within_app(scope)
    return not (path in OPEN_PATHS or path.startswith(exempt_prefixes))


def _path_within_app(scope: Scope) -> str:
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    return path[len(root):] if root and path.startswith(root) else path


def _bearer_matches(scope: Scope, tokens: tuple[bytes, ...]) -> bool:
    given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
    scheme, _, token = given.partition(b" ")
    # Every token compared, each in constant time: which one matched, and any prefix of either, stay unsaid.
    matched = [hmac.compare_digest(token.strip(), expected) for expected in tokens]
    return scheme.lower() == b"bearer" and any(matched)


def _unauthorized(scope: Scope) -> Unauthorized:
    return api_token_refusal(sent=any(name == b"authorization" for name, _ in scope["headers"]))


def api_token_refusal(sent: bool) -> Unauthorized:
    """The 401 of a path that needs the API token (also the OpenAPI document's example of it)."""
    # What came is described, never quoted: a wrong token may be another secret of the caller's.
    return Unauthorized("the /v1 routes need the header `Authorization: Bearer <token>` with the service's API "
                        "token (DEALSCORE_API_TOKEN)",
                        [Problem("Authorization", "Bearer and the service's API token",
                                 "another token" if sent else "no bearer token")])


def _documentation_route(path: str) -> str:
    if path in DOCUMENTATION_PATHS:
        return path
    return DOCS_ASSETS if path.startswith(DOCS_ASSETS + "/") else UNMATCHED_ROUTE


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _SANE_ID.match(value):
                return str(value.decode())
            break
    return new_request_id()


def _fields(scope: Scope, state: dict[str, Any], request_id: str, status: int, started: float) -> dict[str, Any]:
    route = scope.get("route")
    path = getattr(route, "path", None) or str(scope.get("path", ""))[:100]
    return {"request_id": request_id, "method": scope.get("method"), "route": path, "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000.0, 3),
            "model_version": state.get("model_version")}
