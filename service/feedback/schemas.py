"""Request and response bodies of /v1/outcomes, /v1/judgements and /v1/quality, with examples."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, WithJsonSchema
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from model.contract import EARLIEST_DEAL_DATE, MAX_MONEY, MAX_TEXT_LENGTH, NO_NUL_PATTERN
from model.records import parse_date, text_value
from service.schemas import RequiredId, date_as_text

MAX_OUTCOMES = 10_000
MAX_NOTE = 2_000

# Named schemas in the OpenAPI document, as service.schemas' (a generated client's one type per set of values).
OutcomeStatus = TypeAliasType("OutcomeStatus", Literal["won", "lost"])
FeedbackResult = TypeAliasType("FeedbackResult", Literal["created", "updated", "unchanged"])
ComparedBy = TypeAliasType("ComparedBy", Literal["expected_value", "p_win"])


def _date(value: str) -> date:
    try:
        parsed = parse_date(value)
    except ValueError:
        raise PydanticCustomError("date_format", "a date like 2024-03-31 (ISO 8601)") from None
    if parsed < EARLIEST_DEAL_DATE:  # as a deal's closed_at: the history counts days from 1970-01-01
        raise PydanticCustomError("date_range", "a date from {earliest} on",
                                  {"earliest": EARLIEST_DEAL_DATE.isoformat()})
    return parsed


def _id_text(value: str | int) -> str:
    return str(text_value(value))  # never None: RequiredId refuses blank text


# Ids exactly as the scoring API takes them (text that is not blank, or an integer), stored as their text.
Id = Annotated[RequiredId, AfterValidator(_id_text)]
DateText = Annotated[StrictStr, BeforeValidator(date_as_text), Field(max_length=40), AfterValidator(_date),
                     WithJsonSchema({"type": "string", "format": "date", "maxLength": 40})]


def _status_text(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class OutcomeIn(_Strict):
    """A deal's realised result. Sending it again changes nothing; a different result updates it."""

    deal_id: Id = Field(description="the deal, as sent to /v1/score")
    # Case and surrounding spaces aside, as a mapping file's status values are compared ("Won" from a CRM).
    status: Annotated[OutcomeStatus, BeforeValidator(_status_text)] = Field(
        description="won or lost (any case)")
    amount: Annotated[float, Field(strict=True, ge=0, le=MAX_MONEY)] | None = Field(
        default=None, description="money realised if won (omitted: the deal's amount as last scored); lost deals "
                                  "may carry 0 or omit it")
    closed_at: DateText | None = Field(default=None, description="when it was won or lost; default: the day "
                                       "stored for the deal when it has an outcome already, else today (UTC)")
    client_id: Id | None = Field(default=None, description="the deal's client; default: as last sent to /v1/score")


EXAMPLE_REQUEST_ID = "5f0c6a1e2b7d4c1f9a8e3d2c1b0a9f8e"
OUTCOMES_EXAMPLE: dict[str, Any] = {"outcomes": [
    {"deal_id": "D1", "status": "won", "amount": 12500, "closed_at": "2025-12-19"},
    {"deal_id": "D2", "status": "lost", "closed_at": "2025-12-20"}]}
OUTCOMES_RESPONSE_EXAMPLE: dict[str, Any] = {
    "request_id": EXAMPLE_REQUEST_ID, "received": 2, "created": 1, "updated": 1, "unchanged": 0,
    "results": [{"deal_id": "D1", "result": "created", "revision": 1, "client_history": True},
                {"deal_id": "D2", "result": "updated", "revision": 2, "client_history": True}]}
JUDGEMENT_EXAMPLE: dict[str, Any] = {"manager": "Elena Sokolova", "above_deal_id": "D-1043", "below_deal_id": "D-1042",
                                     "note": "the client signed a letter of intent yesterday"}
JUDGEMENT_RESPONSE_EXAMPLE: dict[str, Any] = {"request_id": EXAMPLE_REQUEST_ID, "judgement_id": 17,
                                              "result": "created", "revision": 1}
QUALITY_EXAMPLE: dict[str, Any] = {
    "request_id": EXAMPLE_REQUEST_ID, "version": "20251201T020000-1a2b3c4d",
    "outcomes": {"outcomes_total": 412, "deals": 398, "auc": 0.781, "brier": 0.171,
                 "calibration_error": 0.024, "auc_low_95": 0.735, "auc_high_95": 0.827,
                 "calibration_error_by_chance": 0.051, "log_loss": 0.512, "mean_p_win": 0.41, "win_rate": 0.43,
                 "grades": [{"grade": "A", "deals": 81, "share_of_deals": 0.2, "win_rate": 0.62,
                             "share_of_realised_value": 0.79}],
                 "calibration": [{"bin_low": 0.3, "bin_high": 0.4, "mean_p": 0.35, "win_rate": 0.37, "deals": 64}]},
    "judgements": {"judgements_total": 57, "pairs": 52, "agreed": 41.5, "agreement": 0.798,
                   "not_scored_by_version": 5,
                   "managers": [{"manager": "Elena Sokolova", "pairs": 20, "agreed": 17.0, "agreement": 0.85}],
                   "disagreements": [{"manager": "Elena Sokolova", "above_deal_id": "D7", "below_deal_id": "D3",
                                      "note": "letter of intent signed", "compared_by": "expected_value",
                                      "margin": 5400.0, "judged_at": "2025-12-03T10:15:00+00:00",
                                      "above": {"p_win": 0.21, "expected_value": 2100.0, "grade": "B",
                                                "scored_at": "2025-12-02T09:00:00+00:00"},
                                      "below": {"p_win": 0.5, "expected_value": 7500.0, "grade": "A",
                                                "scored_at": "2025-12-02T09:00:00+00:00"}}]}}
VERSIONS_EXAMPLE: dict[str, Any] = {
    "request_id": EXAMPLE_REQUEST_ID, "live": "20251201T020000-1a2b3c4d",
    "versions": [{"version": "20251201T020000-1a2b3c4d", "scores": 18230, "deals": 9120,
                  "first_scored_at": "2025-12-01T08:00:03+00:00", "last_scored_at": "2025-12-19T17:42:10+00:00"}]}


class OutcomesRequest(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [OUTCOMES_EXAMPLE]})

    outcomes: list[OutcomeIn] = Field(min_length=1, max_length=MAX_OUTCOMES)


class OutcomeResultOut(BaseModel):
    deal_id: str
    result: FeedbackResult
    revision: int = Field(description="1 for the first word on the deal, +1 for each change")
    client_history: bool = Field(description="whether the outcome enters a client's history for later scores: the "
                                             "deal's client is known and the model serving reads client history")


class OutcomesResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [OUTCOMES_RESPONSE_EXAMPLE]})

    request_id: str
    received: int
    created: int
    updated: int
    unchanged: int
    results: list[OutcomeResultOut]


class JudgementIn(_Strict):
    """A manager's view: `above_deal_id` deserves a higher place in the work queue than `below_deal_id`."""

    model_config = ConfigDict(json_schema_extra={"examples": [JUDGEMENT_EXAMPLE]})

    manager: Annotated[StrictStr, Field(min_length=1, max_length=MAX_TEXT_LENGTH, pattern=NO_NUL_PATTERN)]
    above_deal_id: Id
    below_deal_id: Id
    note: Annotated[StrictStr, Field(max_length=MAX_NOTE, pattern=NO_NUL_PATTERN)] | None = None


class JudgementResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [JUDGEMENT_RESPONSE_EXAMPLE]})

    request_id: str
    judgement_id: int
    result: FeedbackResult = Field(
        description="updated: this manager had judged the pair before (the latest view counts)")
    revision: int


class GradeQuality(BaseModel):
    grade: str
    deals: int
    share_of_deals: float
    win_rate: float
    share_of_realised_value: float


class CalibrationBin(BaseModel):
    bin_low: float
    bin_high: float
    mean_p: float
    win_rate: float
    deals: int


class OutcomeQuality(BaseModel):
    outcomes_total: int = Field(description="outcomes recorded, whichever version scored them")
    deals: int = Field(description="deals with an outcome this version scored on or before their close date, "
                                   "before the outcome was reported")
    auc: float | None = Field(description="ranking quality of p_win, 0.5 = chance (null with one class only)")
    brier: float | None = Field(description="mean squared error of p_win, lower is better")
    calibration_error: float | None = Field(description="expected calibration error over 10 bins of p_win")
    auc_low_95: float | None = Field(description="lower end of the AUC's 95% interval on these deals (DeLong; "
                                                 "it takes deals as independent)")
    auc_high_95: float | None = Field(description="upper end of the AUC's 95% interval on these deals")
    calibration_error_by_chance: float | None = Field(
        description="the calibration error a perfectly calibrated model would show on these deals by chance "
                    "alone (mean of 200 draws of outcomes from the scores themselves): on a few hundred "
                    "outcomes it is several hundredths, and a calibration_error near it is no finding")
    log_loss: float | None
    mean_p_win: float | None
    win_rate: float | None
    grades: list[GradeQuality]
    calibration: list[CalibrationBin]


class SaidOut(BaseModel):
    p_win: float
    expected_value: float | None
    grade: str
    scored_at: str


class Disagreement(BaseModel):
    manager: str
    above_deal_id: str
    below_deal_id: str
    note: str | None
    compared_by: ComparedBy
    margin: float = Field(description="how far the model ranks the manager's 'above' deal below the other")
    judged_at: str
    above: SaidOut
    below: SaidOut


class ManagerAgreement(BaseModel):
    manager: str
    pairs: int
    agreed: float
    agreement: float


class JudgementQuality(BaseModel):
    judgements_total: int
    pairs: int = Field(description="judgements whose two deals this version scored")
    agreed: float = Field(description="pairs the version ordered as the manager did (ties count half)")
    agreement: float | None
    not_scored_by_version: int
    managers: list[ManagerAgreement]
    disagreements: list[Disagreement]


class QualityResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [QUALITY_EXAMPLE]})

    request_id: str
    version: str
    outcomes: OutcomeQuality
    judgements: JudgementQuality


class VersionOut(BaseModel):
    version: str
    scores: int
    deals: int
    first_scored_at: str
    last_scored_at: str


class VersionsResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [VERSIONS_EXAMPLE]})

    request_id: str
    live: str | None
    versions: list[VersionOut]


FEEDBACK_FIELD_NAMES: frozenset[str] = frozenset(
    {"body", "query", "outcomes", "version", "top", *OutcomeIn.model_fields, *JudgementIn.model_fields})


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
