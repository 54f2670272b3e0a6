"""Request and response schemas, derived from the data contract in model/contract.py.

Request models are built with pydantic.create_model from the contract's tables, so a column added to the
contract appears in the API (and its OpenAPI) without anyone restating it here. Response models exist
for the OpenAPI document; the routes serialise their answers directly (see service.routes).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    create_model,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from model.contract import (
    CLIENT_HISTORY,
    CLIENTS,
    DATE_SLACK,
    DEALS,
    MAX_TEXT_LENGTH,
    NO_NUL_PATTERN,
    STATUS_VALUES,
    Column,
    Kind,
    Table,
)
from model.records import parse_date, text_value
from service.holder import SourceKind

__all__ = [
    "ClientGapsOut", "ClientStatus", "DealStatus", "ErrorResponse", "GapOut", "GapsResponse", "Grade", "Health",
    "HistorySource", "ModelInfo", "ModelSourceOut", "RankBy", "RankResponse", "ReasonOut", "RefusedOut",
    "ReloadResponse", "RequestModels", "ScoreOut", "ScoreResponse", "TopDisagreements", "TopGaps", "ValueSource",
    "request_models",
]

MAX_ID = 10**18 - 1  # an integer id beyond this is a bug upstream, and str() of a huge int is slow or fails
MAX_DATE_CHARS = 40
MAX_PRODUCTS = 500  # products one client may list as held
MAX_FIELD_NAME = 64

# Each set of values is a schema of its own, named, in the OpenAPI document: inline, a generated client made a
# type per field (openapi-python-client: ScoreOutGrade beside RankedScoreOutGrade, ScoreOutValueSourceType0, three
# history sources), so a grade from /v1/rank was not the type of one from /v1/score (a client generation audit).
Grade = TypeAliasType("Grade", Literal["A", "B", "C", "D"])
HistorySource = TypeAliasType("HistorySource", Literal["request", "outcomes", "model", "none"])
ValueSource = TypeAliasType("ValueSource", Literal["amount", "model"])
ClientStatus = TypeAliasType("ClientStatus", Literal["prospect", "new", "regular", "lost"])
# The contract's statuses, read at run time (mypy takes only literal values in Literal[...]).
DealStatus = TypeAliasType("DealStatus", Literal[STATUS_VALUES])  # type: ignore[valid-type]
ReloadStatus = TypeAliasType("ReloadStatus", Literal["loaded", "unchanged", "refused"])
HealthStatus = TypeAliasType("HealthStatus", Literal["live", "ready"])
ModelSourceKind = TypeAliasType("ModelSourceKind", SourceKind)


# The first accepted date of each column is the contract's (`Column.earliest`); the last is the server's UTC
# "today" plus DATE_SLACK, as offline validation has them (model.contract).


def _date_parser(earliest: date) -> Callable[[str, ValidationInfo], date]:
    def parse(value: str, info: ValidationInfo) -> date:
        try:
            parsed = parse_date(value)
        except ValueError:
            raise PydanticCustomError("date_format", "a date like 2024-03-31 (ISO 8601)") from None
        today = (info.context or {}).get("today")
        if parsed < earliest or (today is not None and parsed > today + DATE_SLACK):
            # Says the real bound: the server's UTC today plus the day a client ahead of UTC may be on.
            latest = (f"today in the sender's time zone (at most {(today + DATE_SLACK).isoformat()})"
                      if today is not None else "today")
            raise PydanticCustomError("date_range", "a date from {earliest} to {latest}",
                                      {"earliest": earliest.isoformat(), "latest": latest})
        return parsed

    return parse


def date_as_text(value: object) -> object:
    """A date sent as anything but text (20240331, a JSON number) is refused as a date, not as "text"."""
    if value is not None and not isinstance(value, str):
        raise PydanticCustomError("date_format", "a date like 2024-03-31 (ISO 8601), as text")
    return value


def _date_text(earliest: date) -> Any:
    return Annotated[
        StrictStr,
        BeforeValidator(date_as_text),
        Field(max_length=MAX_DATE_CHARS),
        AfterValidator(_date_parser(earliest)),
        WithJsonSchema({"type": "string", "format": "date", "maxLength": MAX_DATE_CHARS,
                        "description": "ISO 8601 date (2024-03-31) or date-time (its own calendar date is "
                                       f"used), from {earliest.isoformat()} to today; a date year first with "
                                       "another mark or without leading zeros (2024/03/31, 2024-3-31) is read as "
                                       "files read it"}),
    ]


ID_INTEGER_EXPECTED = "text, or an integer of at most 18 digits"


def _id_integer(value: int) -> int:
    if not -MAX_ID <= value <= MAX_ID:
        raise PydanticCustomError("id_integer", ID_INTEGER_EXPECTED)
    return value


def _not_an_integer(value: object) -> object:
    # An integer sent is the integer member's to judge: the float member refused a 19-digit one too, "not with a
    # decimal point", and the answer joined both (a docs audit).
    if isinstance(value, int) and not isinstance(value, bool):
        raise PydanticCustomError("id_integer", ID_INTEGER_EXPECTED)
    return value


# From 2**53 a float cannot hold every integer: 123456789012345678.0 arrives parsed as ...680, and .5 is lost.
FLOAT_ID_EXACT_BELOW = 2**53


def _whole_id(value: float) -> int:
    # An integer id sent as 2007.0 (a float64 column of a CRM's or pandas' export): JSON Schema counts it an
    # integer, and the columns read it as "2007", as they read 2007. Refused with 2007.5, and from 2**53, where
    # the number parsed may not be the one sent (answered, logged and matched as another id).
    if abs(value) >= FLOAT_ID_EXACT_BELOW:
        raise PydanticCustomError("id_integer", "an id of 16 digits or more as an integer or text, not with a "
                                                "decimal point (a float cannot hold it exactly)")
    if not value.is_integer():
        raise PydanticCustomError("id_integer", "text, or a whole number (an integer id)")
    return int(value)


# An integer id as JSON may send it: 2007 or 2007.0.
IdInteger = Annotated[StrictInt, AfterValidator(_id_integer)] | Annotated[
    float, Field(strict=True, allow_inf_nan=False), BeforeValidator(_not_an_integer), AfterValidator(_whole_id)]

def _digits(value: object) -> object:
    # pydantic reads query text loosely as an integer ("1_0" as 10, "5.0" as 5); a count in a URL is digits.
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise PydanticCustomError("query_count", "a whole number written in digits (like 5)")
    return value


# Counts given in a query string (`?top=5`): gap items per client, and /v1/quality's disagreements listed.
TopGaps = Annotated[int, Field(ge=1, le=50), BeforeValidator(_digits)]
TopDisagreements = Annotated[int, Field(ge=0, le=100), BeforeValidator(_digits)]

# Text of a request: at most MAX_TEXT_LENGTH characters, no NUL (the pattern runs in pydantic's core).
PlainText = Annotated[StrictStr, Field(max_length=MAX_TEXT_LENGTH, pattern=NO_NUL_PATTERN)]
TEXT_SCHEMA: dict[str, Any] = {"type": "string", "maxLength": MAX_TEXT_LENGTH, "pattern": NO_NUL_PATTERN}

# The bound is declared: a 19-digit CRM id sent as a number was refused though the schema said any integer.
ID_INTEGER_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": -MAX_ID, "maximum": MAX_ID,
                                     "description": "at most 18 digits; send a longer id as text"}

Text = Annotated[
    PlainText | IdInteger,
    WithJsonSchema({"anyOf": [TEXT_SCHEMA, ID_INTEGER_SCHEMA]}),
]


def _not_blank(value: str) -> str:
    # Blank text is a missing value to the columns (model.records.text_value), so a required id must not be blank.
    if text_value(value) is None:
        raise PydanticCustomError("blank_id", "a non-empty id")
    return value


def _not_blank_product(value: str) -> str:
    if text_value(value) is None:
        raise PydanticCustomError("blank_product", "a product name (not blank)")
    return value


# A required id (a deal's deal_id, a client's client_id): Text that is not blank.
RequiredId = Annotated[
    Annotated[PlainText, AfterValidator(_not_blank)] | IdInteger,
    WithJsonSchema({"anyOf": [{**TEXT_SCHEMA, "minLength": 1}, ID_INTEGER_SCHEMA]}),
]


def _plain_integer(value: int) -> int:
    # A longer integer is taken by the float member below (1e30), or refused there when beyond a float's range
    # (10**400), so the columns never see an integer float() cannot convert.
    if not -MAX_ID <= value <= MAX_ID:
        raise PydanticCustomError("finite_number", "a finite number")
    return value


# A text band or a number (a client's size: "small" or 250). Which one the model sees is decided with the
# whole batch by model.records.deal_columns: a number where the model's features treat the column as numeric
# (text that reads as a number counts, 250.0 and 250 are the same), text otherwise ("250", never "250.0").
TextOrNumber = Annotated[
    PlainText
    | Annotated[StrictInt, AfterValidator(_plain_integer)]
    | Annotated[float, Field(strict=True, allow_inf_nan=False)],
    WithJsonSchema({"anyOf": [TEXT_SCHEMA, {"type": "integer"}, {"type": "number"}]}),
]
# An extra field of a deal may be a feature: text, a number or a flag, nothing nested.
ExtraValue = PlainText | StrictBool | Annotated[float, Field(strict=True, allow_inf_nan=False)] | None


def _annotation(column: Column) -> Any:
    if column.kind is Kind.NUMBER:
        return Annotated[float, Field(strict=True, allow_inf_nan=False, ge=column.minimum, le=column.maximum)]
    if column.kind is Kind.TEXT_OR_NUMBER:
        return TextOrNumber
    if column.kind is Kind.DATE:
        return _date_text(column.earliest)
    if column.kind is Kind.STATUS:
        return DealStatus
    return Text


def _fields(table: Table, *, required: tuple[str, ...]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for column in table.columns:
        annotation = _annotation(column)
        if column.name in required:
            if column.kind is Kind.ID:
                annotation = RequiredId
            fields[column.name] = (annotation, Field(description=column.description))
        else:
            fields[column.name] = (annotation | None, Field(default=None, description=column.description))
    return fields


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class _OpenDeal(BaseModel):
    # Unknown fields are kept: they may be extra features the model was trained with.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True)
    __pydantic_extra__: dict[str, ExtraValue] = Field(init=False)


Client: type[BaseModel] = create_model(
    "Client",
    __base__=_Strict,
    __doc__="A client: the clients table's columns, the products it holds, and optionally its history as of "
            "the deal's created_at. When sent it replaces the wins the model knows as of training, as a whole: "
            "won_deals is required with any of it, and with wins also won_amount, first_won_at and last_won_at.",
    **_fields(CLIENTS, required=CLIENTS.required_names(for_training=False)),
    products=(list[Annotated[PlainText, AfterValidator(_not_blank_product)]] | None,
              Field(default=None, max_length=MAX_PRODUCTS,
                    description="products the client already holds; omitted: those known at training")),
    **_fields(CLIENT_HISTORY, required=()),
)

Deal: type[BaseModel] = create_model(
    "Deal",
    __base__=_OpenDeal,
    __doc__="A deal: the deals table's columns (status not needed), its client, and any extra features. "
            "Without created_at the deal is scored as of today.",
    **_fields(DEALS, required=DEALS.required_names(for_training=False)),
    client=(cast(Any, Client | None), Field(default=None, description="the deal's client, with history if known")),
)

# Every field name of the request schemas: any other name in an error location is a deal's extra field.
FIELD_NAMES: frozenset[str] = frozenset({*Deal.model_fields, *Client.model_fields, "deals", "clients"})


class RequestModels:
    """The request bodies for one batch limit (the limit is part of the schema: maxItems)."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self.score = create_model(
            "ScoreRequest", __base__=_Strict,
            __doc__="Deals to score, 1 to max_batch of them, each deal_id once (a batch that repeats one is refused, "
                    "422).",
            deals=(list[Deal], Field(min_length=1, max_length=max_batch)),  # type: ignore[valid-type]
        )
        self.gaps = create_model(
            "GapsRequest", __base__=_Strict,
            __doc__="Clients whose gap lists are wanted, 1 to max_batch of them, each client_id once (a batch that "
                    "repeats one is refused, 422).",
            clients=(list[Client], Field(min_length=1, max_length=max_batch)),  # type: ignore[valid-type]
        )


@lru_cache(maxsize=8)
def request_models(max_batch: int) -> RequestModels:
    return RequestModels(max_batch)


# --------------------------------------------------------------------------------------------------
# Responses (documentation of what the routes write).


class _Answer(BaseModel):
    # Every field is in every answer, those with a default too: declared required, so a generated client types
    # it as always there (openapi-python-client had typed ignored_fields and ClientGapsOut's client_status as
    # `... | Unset`, TypeScript as optional). Health is no _Answer: /health/live sends no model_version.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class RankBy(StrEnum):
    expected_value = "expected_value"
    value_per_hour = "value_per_hour"
    grade = "grade"  # the letter class first (A, B, C, then D), expected value within it: as a manager reads them


class ReasonOut(_Answer):
    feature: str
    value: str | float | None = Field(
        description="the input's value for this deal (a level or a number; a client's or a level's win rate is "
                    "smoothed towards the overall one, 20 deals' weight by default); null when it has none: a "
                    "field not sent that still pushes (the amount, or an amount of 0, valued by the model; a text "
                    "field missing often in training; a number's stand-in is not shown), no win yet for "
                    "client_days_since_last_win and _first_win, no closed deal yet for client_win_rate (the "
                    "team's rate stands in), or no created_at for month (today's pushes: the deal is scored as of "
                    "today). A field averaged out (not_sent) pushes nothing "
                    "and is no reason. client_status's push includes that of the client history's age (how old "
                    "the history read is: 0 when the deal sends it), which allows for wins since that the model's "
                    "history cannot show")
    effect: float = Field(description="push on the calibrated log-odds of winning; > 0 raises p_win")
    text: str = Field(description="the reason in a manager's words, e.g. \"client's last win 6 days ago: raises the "
                                  "chance\" (the feature's value in words, then which way it moves p_win); "
                                  "client_status's says how old the client history read is (\"client status is lost "
                                  "as of 200 days ago\"), as its push allows for wins since")


class GapOut(_Answer):
    product: str
    adoption: float = Field(description="share of the segment's best clients that hold it")
    p_accept: float = Field(description="estimated chance this client takes it: of taking it up within the model's "
                                        "take-up horizon where past take-up calibrated it (the reason says 'N% chance "
                                        "to take it within' the horizon, 12 months by default; GET /v1/model's "
                                        "gap_take_up_days gives it), else the share of clients like this one that "
                                        "hold it (the reason says 'held by N% of clients like this one')")
    potential_income: float = Field(description="expected money from offering it")
    reason: str


class ScoreOut(_Answer):
    deal_id: str
    p_win: float = Field(ge=0, le=1, description="calibrated win probability")
    value: float | None = Field(description="expected amount if won; null when unknown")
    expected_value: float | None = Field(description="p_win x value")
    grade: Grade
    grade_reason: str = Field(
        description="why the deal has its letter, in a manager's words: its expected value against the cut-offs fixed "
                    "at training (GET /v1/model's grade_cutoffs), or for D its value per hour against the floor and "
                    "the letter its value alone would give, e.g. 'D: 42 of expected value per hour of work, at or "
                    "below the floor of 127 an hour; by value alone B'. The reasons explain p_win, not the letter")
    reasons: list[ReasonOut]
    gaps: list[GapOut] = Field(description="the deal client's top cross-sell gaps, rank 1 first, without the "
                                           "deal's own product (it is being sold already)")
    value_source: ValueSource | None = Field(
        description="'amount' (sent, above 0), 'model' (predicted from similar won deals; also for an amount of 0, "
                    "taken as no quote yet) or null (unknown)")
    value_per_hour: float | None = Field(description="expected_value / effort_hours; null without effort_hours "
                                                     "above 0")
    history_source: HistorySource = Field(
        description="client history used: sent with the deal, the model's plus outcomes reported since training "
                    "(POST /v1/outcomes), the model's as of training, or none (no client_id, or one the "
                    "model does not know: a prospect; or a model trained without client history)")
    not_sent: list[str] = Field(
        description="inputs (nearly) every deal the model was trained on had that this deal did not send: text fields "
                    "missing in under 1% of them, numbers every one had (the amount only when no value model "
                    "values it). The model read them as typical, averaging them out of its trees (scoring the deal "
                    "as the training deals like it in everything else; a small-data linear model takes the "
                    "training median). Values the model fills in for a client it knows are not listed, nor the "
                    "client's since (a prospect has none; the training median stands in). Empty when it sent "
                    "them all; send them for a sharper score")
    unseen: list[str] = Field(
        description="text inputs whose value the model never saw in training (up to case, spaces, '_' and '-': "
                    "'GTX Pro' is GTXPro): a product, source or other level renamed or misspelt in the CRM, or a new "
                    "one. It has no history of its own and is scored as the rare levels are, its value and grade with "
                    "it; check the spelling, or expect the next model to know it. A level the model fills in for a "
                    "client it knows is not listed. Empty when every level sent is known")
    model_version: str


class RankedScoreOut(ScoreOut):
    rank: int = Field(ge=1, description="1 = work this deal first")


def _ignored_fields() -> Any:
    return Field(default_factory=list, description="the deals' fields that are neither contract fields nor inputs "
                                                   "of this model, so scoring did not read them (a misspelt field "
                                                   "shows here), sorted")


class ScoreResponse(_Answer):
    model_version: str
    request_id: str
    scores: list[ScoreOut] = Field(description="in input order")
    ignored_fields: list[str] = _ignored_fields()


class RankResponse(_Answer):
    model_version: str
    request_id: str
    by: RankBy
    scores: list[RankedScoreOut] = Field(description="best first (unknown values last); equal values by "
                                                     "expected value, then p_win; still equal, in input order")
    ignored_fields: list[str] = _ignored_fields()


class ClientGapsOut(_Answer):
    client_id: str
    segment: str | None = Field(description="the segment whose ideal profile was used (null: no profiles)")
    gaps: list[GapOut]
    potential_income: float | None = Field(
        default=None, description="ideal client's income in the segment minus this client's, when known")
    unknown_products: list[str] = Field(
        default_factory=list, description="products sent with the client that the model does not know (matched "
                                          "up to case and surrounding spaces): not counted as held, so the gap "
                                          "list may offer a product the client holds under that name")
    client_status: ClientStatus | None = Field(
        default=None, description="where the client stands today, its wins up to today included: prospect (no "
                                  "won deal), new (one), regular (two or more), lost (no win within the model's "
                                  "lost window); cross-sell suits settled clients with stable income. null when "
                                  "the model was trained without client ids")
    history_source: HistorySource = Field(
        default="none", description="the client history the status was read from, as in a score's history_source")


class GapsResponse(_Answer):
    model_version: str
    request_id: str
    clients: list[ClientGapsOut] = Field(description="in input order")


class RefusedOut(_Answer):
    version: str | None = Field(description="the live version the service refused to load; null when the "
                                            "registry's manifest itself could not be read")
    reason: str = Field(description="why: checksum mismatch, library versions, failed test prediction, ...")
    at: str = Field(description="when it was refused (UTC, ISO 8601)")


class ModelSourceOut(_Answer):
    kind: ModelSourceKind = Field(description="'registry' (the registry's live version, followed by hot reload), "
                                         "'model_dir' (one artifact directory) or 'memory' (handed over in-process)")
    path: str | None = Field(description="the artifact directory the model was loaded from")


class ModelInfo(_Answer):
    model_config = ConfigDict(extra="allow")
    model_version: str
    request_id: str
    trained_at: str | None
    engine: str | None
    data: dict[str, Any] = Field(description="row counts, date range and fingerprint of the training data")
    metrics: dict[str, Any] = Field(description="holdout metrics of the model and its baselines")
    grade_cutoffs: dict[str, Any]
    caution: str | None = Field(default=None, description="why p_win should not be read as a chance (the model's "
                                                          "holdout probabilities were worse than the plain win "
                                                          "rate's, it ranked no better than chance or well behind a "
                                                          "plain logistic regression, or the published model ranks "
                                                          "its own latest deals backwards); null when there is no "
                                                          "such caution")
    features: list[str]
    has_profiles: bool = Field(description="whether gap lists can be computed")
    gap_take_up_days: int | None = Field(default=None, description=(
        "the horizon, in days, over which a gap's p_accept is a chance of taking the product up (learnt from dated "
        "holdings); null: p_accept is the share of clients like the client that hold it, or there are no profiles"))
    small_data: bool | None = Field(description="trained in small-data mode (a regularised linear model); null "
                                                "when the artifact does not say")
    libraries: dict[str, str] = Field(description="versions of the libraries the model was trained with")
    loaded_at: str = Field(description="when this service loaded the model (UTC, ISO 8601)")
    source: ModelSourceOut
    refused: RefusedOut | None = Field(description="the registry's live version when the service refused it "
                                                   "(this model keeps serving); null otherwise")


class ReloadResponse(_Answer):
    status: ReloadStatus = Field(
        description="'loaded': the live version was loaded, verified, warmed and swapped in; 'unchanged': it "
                    "already serves (or nothing is live); 'refused': it failed a check, the old model serves")
    live_version: str | None = Field(description="the version the registry names as live")
    serving_version: str | None = Field(description="the version answering requests now")
    refused: RefusedOut | None
    request_id: str


class Health(BaseModel):
    status: HealthStatus
    request_id: str
    model_version: str | None = None


class ErrorDetail(_Answer):
    field: str = Field(description="JSON path of the bad value, e.g. deals[3].amount")
    expected: str
    got: str


class ErrorBody(_Answer):
    code: str = Field(description="stable machine-readable code, e.g. invalid_input, payload_too_large")
    message: str
    details: list[ErrorDetail]


class ErrorResponse(_Answer):
    error: ErrorBody
    request_id: str


def contract_field_names() -> dict[str, tuple[str, ...]]:
    """What the request schemas must carry, straight from the contract (checked by a test)."""
    return {
        "Deal": (*DEALS.names, "client"),
        "Client": (*CLIENTS.names, "products", *CLIENT_HISTORY.names),
    }


_REQUIRED_ID: TypeAdapter[Any] = TypeAdapter(RequiredId)


def id_as_sent(value: object) -> str | None:
    """A raw JSON id's text as a required id's schema reads it (7.0 is "7", text is trimmed), None where the schema
    refuses it: for the checks that run on a body whose schema failed, so they read ids as it does."""
    try:
        return text_value(_REQUIRED_ID.validate_python(value))
    except ValidationError:
        return None
