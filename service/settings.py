"""The service's settings: environment variables with the DEALSCORE_ prefix, each documented below.

docs/settings.md is generated from this class (`python -m service.settings_doc docs/settings.md`), and a
test fails when the two differ, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.artifact import MIN_KEY_LENGTH
from model.errors import DealscoreError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Settings(BaseSettings):
    """Every knob of the HTTP service; the defaults are safe for a single machine."""

    model_config = SettingsConfigDict(env_prefix="DEALSCORE_", use_attribute_docstrings=True, extra="forbid",
                                      frozen=True)

    model_dir: Path | None = None
    """Directory of one model artifact (the output of `dealscore train`). Ignored when `registry_dir` is set."""

    registry_dir: Path | None = None
    """Model registry directory (see `dealscore models`); the service serves the version its manifest names
    as live. Takes precedence over `model_dir`. With neither set the app (run by uvicorn) starts but stays not
    ready (503); `dealscore serve` then trains and serves the demo model, and the image sets `model_dir` to
    the demo model it was built with."""

    reload_interval_seconds: float = Field(default=5.0, ge=0, le=3600)
    """How often the service checks whether the registry's live version changed (one stat of its manifest);
    a new live version is loaded, verified and warmed, then swapped in (see docs/operations.md). 0: only at
    start and on `POST /v1/admin/reload`, which reloads only the worker process that answers it (the others
    follow within one interval), so with `registry_dir`, 0 is refused with more than one worker. Without
    `registry_dir` there is nothing to follow, and any interval is accepted."""

    admin_token: SecretStr | None = None
    """When set, admin routes (`POST /v1/admin/reload`) need the header `Authorization: Bearer <token>`
    (401 otherwise). Unset: they take the API token when `api_token` is set, else they are open to anyone who
    reaches the port; set it unless only operators can."""

    api_token: SecretStr | None = None
    """When set, every route but the probes, `/metrics` and the docs (scoring, gaps, the model, outcomes,
    judgements, quality) needs the header `Authorization: Bearer <token>` with this token (or the admin token);
    401 otherwise. The admin routes take the admin token, or this one while the admin token is unset. Unset:
    anyone who reaches the port may score, read clients' gap lists and record outcomes, which enter clients'
    histories and the next retrain; set it unless only trusted systems can. When set, `/health/ready` says that
    a load failed but not why (the log and `/v1/model` do)."""

    artifact_key: SecretStr | None = Field(default=None, min_length=MIN_KEY_LENGTH)
    """When set (at least 32 characters, e.g. the output of `openssl rand -hex 32`), only model artifacts signed
    with this key are loaded, checked before anything in them is unpickled (a pickle runs code when loaded); an
    unsigned or otherwise signed version is refused (not ready, or the serving model stays). Every dealscore
    command reads the same variable: with it set, `train`, `retrain` and `serve`'s demo model sign what they
    write, and `dealscore models sign` / `dealscore sign` sign versions written before (docs/operations.md).
    Unset: an artifact is as trusted as whoever may write its folder."""

    max_batch: int = Field(default=1000, ge=1, le=100_000)
    """Most deals (in /v1/score and /v1/rank) or clients (in /v1/gaps) in one request; more is answered
    413 with this limit in the message."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    """Largest request body in bytes; a larger one is refused with 413 before it is parsed."""

    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Time a request's whole body may take to arrive once its headers have; a slower one is answered 408. A
    stalled body otherwise held its connection and the bytes sent so far (up to `max_body_bytes`) for good:
    a security review kept 2,000 such connections open, and 150 of them held 570 MB."""

    max_concurrent_requests: int = Field(default=0, ge=0, le=100_000)
    """Most requests one worker works on at once, from their headers to their answer (bodies arriving, waiting
    for a scoring thread, scoring); one more is answered at once with 503 `overloaded` in the error envelope and
    `Retry-After: 1`, before its body is read. The probes, `/metrics` and the admin routes are always answered.
    Bounds the bodies a worker holds (at most this many times `max_body_bytes`) and how long a request may
    queue. 0 (the default): no limit. Off by default because a request counts while its body arrives: as many
    connections that send their headers and stall their bodies hold every place for up to
    `body_timeout_seconds`, and every other caller is answered 503 meanwhile (a review, 64 stalled connections);
    without the limit they hold memory only. Set it behind a proxy that buffers request bodies (nginx does by
    default), or with `api_token` set, where only token holders can stall. (uvicorn's own `--limit-concurrency`
    is not used: it answers plain text outside the envelope, refuses the probes too, and counts idle keep-alive
    connections as requests.)"""

    max_extra_fields: int = Field(default=50, ge=0, le=1000)
    """Most unknown (extra-feature) fields one deal may carry; each is text of at most the contract's
    length, a finite number, true/false or null."""

    reasons: int = Field(default=5, ge=0, le=50)
    """Reasons returned with each score (the features pushing its probability most, strongest first)."""

    top_gaps: int = Field(default=3, ge=0, le=50)
    """Gap items returned with each score (the deal client's top cross-sell products)."""

    log_level: LogLevel = "INFO"
    """Level of the JSON-lines log on stderr: DEBUG, INFO, WARNING or ERROR. One INFO line per request."""

    host: str = "127.0.0.1"
    """Interface to listen on; the container image sets 0.0.0.0."""

    port: int = Field(default=8000, ge=1, le=65535)
    """TCP port to listen on."""

    scoring_threads: int = Field(default=1, ge=1, le=32)
    """Threads per worker that parse, score and encode requests off the event loop. Scoring holds the GIL
    most of the time: one thread serialises it without contention (measured ~25% more requests/s at 8
    concurrent connections than two on a 2-core machine); scale with `workers` instead. Score and rank
    requests that arrive while every thread is busy wait, and a thread that comes free scores all the
    waiting ones in one model pass (each still parsed, checked and answered on its own)."""

    workers: int = Field(default=1, ge=1, le=64)
    """Worker processes. Each loads its own copy of the model and predicts with one native thread, so one
    worker per CPU core is the rule; more only adds memory and contention. Each follows the registry on its
    own: `POST /v1/admin/reload` reloads the worker that answers it, the others within one
    `reload_interval_seconds` (which must then be above 0 when they follow a registry)."""

    drain_seconds: float = Field(default=0.0, ge=0, le=600)
    """After a SIGTERM, go on serving for this long while `/health/ready` answers 503 `stopping`, so that a load
    balancer polling it takes the instance out before it stops listening; then stop gracefully. 0: stop at once.
    Set it above the balancer's check interval times its unhealthy threshold, and keep it plus the longest request
    under the orchestrator's grace period (`docker stop -t`, Kubernetes' terminationGracePeriodSeconds). A Ctrl-C
    or a second SIGTERM (to the parent, with several workers) ends the drain early. A process whose
    `/health/ready` has never answered 200 (no balancer polls it, or its model is still loading) stops at once."""

    database_url: str | None = None
    """SQLAlchemy URL of the feedback database (score log, outcomes, managers' judgements), e.g.
    `postgresql+psycopg://user:password@host/dealscore`. Default: a SQLite file `feedback.db` under
    DEALSCORE_HOME (`./.dealscore`). See docs/feedback.md."""

    spool_dir: Path | None = None
    """Where score-log entries wait while the database is down (keep it on a persistent volume). Default:
    `spool` under DEALSCORE_HOME."""

    score_log_enabled: bool = True
    """Log every score given (deal, model version, p_win, expected value, grade, request id, time) for live
    quality and retraining. Judgements need it: they must name deals the service has scored."""

    score_log_queue_size: int = Field(default=10_000, ge=1, le=1_000_000)
    """Requests waiting in memory for the score-log writer; beyond it a request writes its entries to the
    spool itself (slower, never lost). DEALSCORE_SCORE_LOG_QUEUE_DEALS bounds the deals they hold."""

    score_log_queue_deals: int = Field(default=100_000, ge=1, le=10_000_000)
    """Deals the waiting requests may hold in memory (about 0.7 KB each); a request that would take the queue
    beyond it writes its entries to the spool itself, as beyond DEALSCORE_SCORE_LOG_QUEUE_SIZE (a request finding
    the queue empty always waits there). While the database stalls without failing (a table lock, a connection
    that hangs), the queue only grows: a security review held 176 MB in 250 requests of 1,000 deals, and the
    request bound alone let 10,000 such requests wait (about 7 GB)."""

    score_log_batch_rows: int = Field(default=1_000, ge=1, le=100_000)
    """Score-log entries per database write."""

    score_log_flush_seconds: float = Field(default=0.25, gt=0, le=60)
    """Longest wait of the score-log writer to gather a batch: at most this much of the log is in memory
    only (lost if the process is killed hard)."""

    database_retry_seconds: float = Field(default=2.0, gt=0, le=3600)
    """First wait before a failed feedback database is tried again (doubles on each failure, up to 60 s or
    this wait when set longer; back to this once it answers). The log warns once when the database goes
    down and says when it is back."""

    database_migrate_on_start: bool = True
    """Bring the feedback database's schema up to date at start; false: only check it (run
    `dealscore db upgrade` yourself)."""

    outcomes_refresh_seconds: float = Field(default=30.0, ge=0, le=86_400)
    """How often a service process reads outcomes other processes recorded into its client history (0: never)."""

    outcomes_complete: bool = False
    """True when the CRM reports every deal's outcome, won and lost, through `POST /v1/outcomes`: a client
    without one since the model's training has then closed nothing since, and every client's history reaches
    the latest outcome reported. A model that reads the age of the client history (docs/domain.md) then reads
    them as current. False (the default): each client's history reaches its own latest outcome reported, and a
    client without one reads the model's history, as old as it is. On a generated CRM with every outcome
    reported, a model trained a year before scoring that year's deals: mean p_win 0.014 above the realised rate
    with false, clients read lost 0.073 above (the model allows for wins they did not have), AUC 0.827; with
    true, 0.021 below (the model's own bias with current histories), clients read lost 0.000, AUC 0.830, as with
    every history sent. Set it only when the CRM reports them all: with one outcome in a hundred reported,
    every client's history would read current."""

    @field_validator("model_dir", "registry_dir", "database_url", "spool_dir", "admin_token", "api_token",
                     "artifact_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # DEALSCORE_MODEL_DIR= (empty) in a container means "not set", not the working directory.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("admin_token", "api_token", mode="before")
    @classmethod
    def _token_as_written(cls, value: object) -> object:
        # An env file's trailing space or CR ("DEALSCORE_ADMIN_TOKEN=s3cret \r") is not part of the token: no header
        # can carry it, so the admin route had refused its own token for good (a security review).
        return value.strip() if isinstance(value, str) else value

    @field_validator("workers")
    @classmethod
    def _workers_can_follow(cls, workers: int, info: ValidationInfo) -> int:
        # Each worker is a process with its own model; POST /v1/admin/reload reaches only the one that answers
        # it. Without polling the others never look at the registry again: after a rollback about half the
        # requests would be scored by the old version, indefinitely. (info.data holds the fields declared above
        # this one, registry_dir and reload_interval_seconds among them; absent if they were refused themselves.)
        never_polled = info.data.get("reload_interval_seconds") == 0
        if workers > 1 and never_polled and info.data.get("registry_dir") is not None:
            default = cls.model_fields["reload_interval_seconds"].default
            raise PydanticCustomError(
                "workers_need_reload_interval",
                "1 worker, or DEALSCORE_RELOAD_INTERVAL_SECONDS above 0 (e.g. the default {default}), when serving "
                "a registry: POST /v1/admin/reload reloads only the worker that answers it, and with the interval "
                "0 the other workers would keep the old version forever",
                {"default": default})
        return workers

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_url_readable(cls, value: str | None) -> str | None:
        # A URL SQLAlchemy cannot read, or one whose driver is not installed, failed in every worker at its start
        # with a traceback (with two workers, respawned forever): refused here, by name, before anything starts.
        if value is None:
            return None
        from service.feedback.config import DATABASE_URL_EXPECTED, database_url_refusal

        reason = database_url_refusal(value)
        if reason is not None:
            raise PydanticCustomError("database_url", DATABASE_URL_EXPECTED + " ({reason})", {"reason": reason})
        return value

    @field_validator("spool_dir")
    @classmethod
    def _spool_dir_writable(cls, value: Path | None) -> Path | None:
        # The spool is where entries wait while the database is down; one that cannot be written lost them then
        # ("neither the database nor the spool took them"), though the service had started and answered 200.
        if value is None:
            return None
        existing = value
        try:
            while not existing.exists():  # a folder to create: its nearest existing one must take it
                existing = existing.parent
            what = "a file" if not existing.is_dir() else None if os.access(existing, os.W_OK | os.X_OK) else \
                "not writable"
        except OSError:  # a folder on the way this process may not enter
            what = "on a path this process may not enter"
        if what is not None:
            raise PydanticCustomError("spool_dir", "a folder this process may create and write in, but {at} is {what}",
                                      {"at": str(existing), "what": what})
        return value

    @field_validator("model_dir", "registry_dir", "spool_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Shown by /v1/model and the logs: a relative path ("reg") told an operator nothing of where it was. Made
        # absolute against the directory the service starts in, as it was read; links are kept (a registry reached
        # through a link that is later switched follows the link).
        return value.absolute() if value is not None else None

    @field_validator("registry_dir")
    @classmethod
    def _registry_is_no_file(cls, value: Path | None) -> Path | None:
        # A folder that does not exist yet is served (a volume mounted later, a first publish); a file never can be.
        if value is not None and value.exists() and not value.is_dir():
            raise PydanticCustomError("registry_dir", "a folder (a model registry), but it is a file", {})
        return value



# pydantic's bound checks say "Input should be greater than 0"; "expected a number greater than 0" reads better.
_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_SECRET_SETTINGS = {"admin_token", "api_token", "artifact_key"}


def settings_from(overrides: Mapping[str, Any] | None = None, option_names: Mapping[str, str] | None = None
                  ) -> Settings:
    """Settings from the DEALSCORE_* variables and `overrides`; a value they refuse raises DealscoreError with
    one line per problem, naming the command-line option it came from (`option_names`: setting -> option)
    or its variable. Both ways of starting the service (`dealscore serve`, `python -m service.main` in the
    image) report a bad setting so, never as a pydantic dump."""
    overrides = dict(overrides or {})
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        names = option_names or {}
        raise DealscoreError("; ".join(_setting_problem(error, overrides, names) for error in exc.errors())) from None


def _setting_problem(error: Any, overrides: Mapping[str, Any], option_names: Mapping[str, str]) -> str:
    name = str(error["loc"][0]) if error["loc"] else "settings"
    source = option_names[name] if name in overrides and name in option_names else f"DEALSCORE_{name.upper()}"
    expected = str(error["msg"]).removeprefix("Input should be ")
    if error["type"] in _BOUND_ERRORS:
        expected = f"a number {expected}"
    if name in _SECRET_SETTINGS:  # never echoed: a key one character short is nearly the real one
        if error["type"] in ("too_short", "string_too_short"):
            expected = f"a secret of at least {MIN_KEY_LENGTH} characters (e.g. the output of `openssl rand -hex 32`)"
        shown = error["input"]
        return f"{source}: expected {expected}, got one of {len(shown) if isinstance(shown, str) else '?'}"
    from service.feedback.config import shown_url

    got = shown_url(error["input"]) if name == "database_url" else repr(error["input"])
    return f"{source}: expected {expected}, got {got}"
