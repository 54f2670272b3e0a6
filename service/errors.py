"""The one error envelope of the API, and the translation of every failure into it.

Every non-2xx answer is `{"error": {"code", "message", "details": [{"field", "expected", "got"}]},
"request_id"}`. Errors the service raises on purpose are `model.errors.DealscoreError`s (status and
code on the class); the few that only exist over HTTP are added here:

DealscoreError (model.errors; 400 "bad_request")
├── MalformedJSON (400, "malformed_json"): the body is not JSON
├── UnsupportedMediaType (415, "unsupported_media_type"): the body is not sent as application/json
├── MethodNotAllowed (405, "method_not_allowed")
├── Unauthorized (401, "unauthorized"): an admin route without the admin token, a /v1 one without the API token
├── RequestTimeout (408, "request_timeout"): the body did not arrive within body_timeout_seconds
├── NoRegistry (409, "no_registry"): a reload asked of a service that serves a model directory
├── Overloaded (503, "overloaded"): the worker already works on max_concurrent_requests requests
├── ContractViolation (422, "invalid_input"), NotFound (404), PayloadTooLarge (413), NotReady (503)
└── ... (see model.errors)
InternalError (500, "internal_error"): anything else; logged with the request id, never echoing input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import orjson

from model.contract import MAX_TEXT_LENGTH, NO_NUL_PATTERN, number_text
from model.errors import ContractViolation, DealscoreError, Problem, counted
from service.schemas import MAX_FIELD_NAME

__all__ = [
    "MAX_LISTED_PROBLEMS", "MalformedJSON", "MethodNotAllowed", "NoRegistry", "Overloaded", "RequestTimeout",
    "Unauthorized", "UnsupportedMediaType", "envelope", "error_body", "overload_refusal", "problems_from_pydantic",
    "pydantic_problems", "pydantic_violation", "request_violation", "shown",
]

GOT_CHARS = 40  # a quoted input value is cut here: enough to recognise it, never a data dump
# An answer lists at most this many problems; its message counts them all. A 4 MB body of bad fields listed
# every one of 420,000: a 73 MB answer, 10 s of CPU and 2 GB the worker kept.
MAX_LISTED_PROBLEMS = 100
INTERNAL_MESSAGE = "internal error; the request id identifies it in the service log"


class MalformedJSON(DealscoreError):
    status = 400
    code = "malformed_json"

    @classmethod
    def because(cls, reason: str) -> MalformedJSON:
        # The parser words its own limits as syntax errors: say what they mean for the sender.
        found = next(((hint, valid) for key, (hint, valid) in _PARSER_HINTS.items() if key in reason), None)
        if found is None:
            return cls("the request body is not valid JSON", [Problem("body", "a JSON object", reason[:200])])
        hint, valid = found
        message = "the request body is JSON beyond what the service reads" if valid else \
            "the request body is not valid JSON"
        return cls(message, [Problem("body", "a JSON object", f"{reason[:200]} ({hint})")])

    @classmethod
    def among(cls, errors: Iterable[Mapping[str, Any]]) -> MalformedJSON | None:
        """The 400 for pydantic's errors when the body did not parse as JSON at all (its json_invalid)."""
        invalid = next((e for e in errors if e.get("type") == "json_invalid"), None)
        return None if invalid is None else cls.because(str((invalid.get("ctx") or {}).get("error", "not JSON")))


# A parser message, what it means, and whether the body was valid JSON all the same.
_PARSER_HINTS = {
    "recursion limit exceeded": ("nested deeper than the parser reads, about 200 levels; a request is a few "
                                 "levels deep", True),
    "number out of range": ("a number with more digits than a 64-bit float holds", True),
    "hex escape": ("a \\uD800-\\uDFFF escape must come in a high-low pair: alone it is half a character",
                   False),
}


class UnsupportedMediaType(DealscoreError):
    status = 415
    code = "unsupported_media_type"


def require_json_media(content_type: str, content_encoding: str = "") -> None:
    """Refuse (415) a body that is not declared as JSON (application/json or any application/*+json), in
    UTF-8, uncompressed: the body is read as exactly that, so a gzip or Latin-1 body would otherwise be
    refused as malformed JSON, which misleads whoever reads the error."""
    media, _, parameters = content_type.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType("send the body as application/json", [
            Problem("content-type", "application/json", shown(content_type) if content_type else "nothing")])
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8", "us-ascii", "ascii"):  # ASCII ⊂ UTF-8
            raise UnsupportedMediaType("send the body as UTF-8 JSON", [
                Problem("content-type", "charset utf-8 (or none)", shown(content_type))])
    encoding = content_encoding.strip().lower()
    if encoding and encoding != "identity":
        raise UnsupportedMediaType("send the body uncompressed", [
            Problem("content-encoding", "identity (or none)", shown(content_encoding))])


class MethodNotAllowed(DealscoreError):
    status = 405
    code = "method_not_allowed"


class Unauthorized(DealscoreError):
    status = 401
    code = "unauthorized"
    # HTTP requires a 401 to name the scheme it wants (RFC 9110, 11.6.1); sent with the envelope.
    headers: ClassVar[Mapping[str, str]] = MappingProxyType({"WWW-Authenticate": "Bearer"})


class RequestTimeout(DealscoreError):
    status = 408
    code = "request_timeout"


class NoRegistry(DealscoreError):
    status = 409
    code = "no_registry"


class Overloaded(DealscoreError):
    status = 503
    code = "overloaded"
    # When to ask again (RFC 9110, 10.2.3): the header's smallest step; a single deal scores in about 1 ms.
    headers: ClassVar[Mapping[str, str]] = MappingProxyType({"Retry-After": "1"})


class Stopping(DealscoreError):
    status = 503
    code = "stopping"
    # A client retries on another instance at once; this one answers again once restarted, which takes seconds
    # (`dealscore serve` with the demo model: ready 2.7 s after its start, a stop audit).
    headers: ClassVar[Mapping[str, str]] = MappingProxyType({"Retry-After": "5"})


def stop_refusal() -> Stopping:
    """The 503 of a request the server cut off as it stopped (service.middleware)."""
    return Stopping("the service stopped before this request was answered (a forced quit, or the graceful stop's "
                    "time ran out); it may or may not have taken effect: retry it after Retry-After seconds, here or "
                    "on another instance", [Problem("service", "running until the request is answered", "stopped")])


def drain_refusal(seconds_left: float) -> Stopping:
    """/health/ready's 503 while the service drains before its stop (DEALSCORE_DRAIN_SECONDS, service/draining.py)."""
    return Stopping(f"the service is stopping: it still answers requests for about {math.ceil(seconds_left):,} s, "
                    "then stops; send new ones to another instance",
                    [Problem("service", "ready", f"draining, stopping in {math.ceil(seconds_left):,} s")])


def overload_refusal(limit: int) -> Overloaded:
    """The 503 of a request beyond DEALSCORE_MAX_CONCURRENT_REQUESTS (also the OpenAPI document's example)."""
    return Overloaded(f"this worker is working on {counted(limit, 'request')} already, its limit "
                      "(DEALSCORE_MAX_CONCURRENT_REQUESTS): try again after Retry-After seconds",
                      [Problem("requests in progress", f"fewer than {limit:,} in this worker",
                               f"{limit:,} and this one")])


def envelope(code: str, message: str, details: Iterable[Mapping[str, str]], request_id: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": list(details)}, "request_id": request_id}


def error_body(error: DealscoreError, request_id: str) -> bytes:
    details = [{"field": p.field if not p.table else f"{p.table}.{p.field}", "expected": p.expected,
                "got": p.as_detail()["got"]} for p in error.problems]
    content = envelope(error.code, error.message, details, request_id)
    try:
        return orjson.dumps(content)
    except TypeError:  # a lone surrogate ("\ud800" in the JSON) quoted from the input is not UTF-8: escape it
        return orjson.dumps(_escaped(content))


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def pydantic_violation(errors: Sequence[Mapping[str, Any]], field_names: frozenset[str]) -> ContractViolation:
    """The 422 for pydantic's errors of a request: every bad field counted, the first MAX_LISTED_PROBLEMS listed."""
    problems, paths = pydantic_problems(errors, field_names, limit=MAX_LISTED_PROBLEMS)
    return request_violation(problems, len(paths))


def request_violation(problems: Sequence[Problem], total: int | None = None) -> ContractViolation:
    """The 422 for a request's problems: all of them counted (`total`, when more than are given), at most
    MAX_LISTED_PROBLEMS listed."""
    total = max(total or 0, len(problems))
    listed = list(problems[:MAX_LISTED_PROBLEMS])
    message = f"{counted(total, 'problem')} in the request"
    if total > len(listed):
        message += f" (the first {len(listed)} listed)"
    return ContractViolation(message, listed)


def internal_error_body(request_id: str) -> bytes:
    return orjson.dumps(envelope("internal_error", INTERNAL_MESSAGE, [], request_id))


def shown(value: object) -> str:
    """An input value as quoted in an error: type-aware and cut short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        # (a sent 0 quoted "0", not "0.0": model.contract.number_text; a 400-digit integer as Python writes it)
        text = number_text(value) if isinstance(value, float) else repr(value)
        return text if len(text) <= GOT_CHARS else text[:GOT_CHARS] + "..."
    if isinstance(value, str):
        quoted = value if len(value) <= GOT_CHARS else value[:GOT_CHARS] + "..."
        suffix = f" ({len(value)} characters)" if len(value) > MAX_TEXT_LENGTH else ""
        return f"'{quoted}'{suffix}"
    if isinstance(value, Mapping):
        return f"an object with {counted(len(value), 'field')}"
    if isinstance(value, list | tuple):
        return f"a list of {counted(len(value), 'item')}"
    return f"a value of type {type(value).__name__}"




def json_path(location: Sequence[int | str], prefix: str = "") -> str:
    """('deals', 0, 'amount') -> 'deals[0].amount'."""
    path = prefix
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            # A client's own field name is cut as the batch checks cut it (a security review had a 4 MB one echoed
            # whole in the 422).
            name = str(part) if len(str(part)) <= MAX_FIELD_NAME else f"{str(part)[:MAX_FIELD_NAME]}..."
            path += f".{name}" if path else name
    return path or "body"


# Union members appear in pydantic's locations as tags ('str', 'constrained-str', 'function-after[...]');
# a field is one thing to the client, so they are folded into one detail per field.
def _is_tag(part: object, field_names: frozenset[str]) -> bool:
    if not isinstance(part, str) or part in field_names:
        return False
    return part in ("str", "int", "float", "bool", "none", "list", "dict") or part.startswith(
        ("constrained-", "function-", "lax-", "strict-", "literal[", "json-or-python", "nullable["))


_EXPECTED = {
    "missing": "a value (required)",
    "string_type": "text",
    "string_unicode": "text of whole characters (a \\uD800-\\uDFFF escape alone is half of one)",
    "int_type": "an integer",
    "int_parsing": "an integer",  # a query parameter's text that is not one (?top=abc)
    "int_from_float": "an integer",
    "bool_parsing": "true or false",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "list_type": "a list",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "dict_type": "an object",
    "extra_forbidden": "no such field (see the schema)",
    "literal_error": "one of {expected}",
    "enum": "one of {expected}",
    "string_too_long": "text of at most {max_length:character}",
    "string_too_short": "text of at least {min_length:character}",
    "too_long": "at most {max_length:item}",
    "too_short": "at least {min_length:item}",
    "greater_than_equal": "a number >= {ge}",
    "greater_than": "a number > {gt}",
    "less_than_equal": "a number <= {le}",
    "less_than": "a number < {lt}",
}


def _expected(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    context = error.get("ctx") or {}
    if kind == "string_pattern_mismatch" and context.get("pattern") == NO_NUL_PATTERN:
        return "text without NUL characters (\\u0000)"
    template = _EXPECTED.get(kind)
    if template is None:
        # Custom errors (dates) carry their own wording in the message.
        return str(error.get("msg", "a valid value"))
    try:
        return template.format(**{k: _Count(_number_text(v)) for k, v in context.items()})
    except (KeyError, IndexError, ValueError):
        return template


class _Count:
    """A template value: `{n:item}` reads "1 item" or "3 items" (counted), `{n}` the value as it is."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __format__(self, noun: str) -> str:
        if not noun:
            return format(self.value)
        return counted(self.value, noun) if isinstance(self.value, int) else f"{self.value} {noun}s"


def _number_text(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


EXTRA_EXPECTED = (f"text of at most {MAX_TEXT_LENGTH} characters, a finite number, true, false or null (text "
                  "without NUL characters, \\u0000)")


def problems_from_pydantic(errors: Sequence[Mapping[str, Any]], field_names: frozenset[str],
                           prefix: str = "") -> list[Problem]:
    """One Problem per bad field: its JSON path, what was expected (union members joined), what came.

    `field_names` are the schemas' own fields; any other name in a location is an extra field of a deal.
    """
    return pydantic_problems(errors, field_names, prefix)[0]


def pydantic_problems(errors: Sequence[Mapping[str, Any]], field_names: frozenset[str], prefix: str = "",
                      limit: int | None = None) -> tuple[list[Problem], set[str]]:
    """problems_from_pydantic's first `limit` problems, and the paths of every bad field (the ones past the limit
    are named, not described), so that other checks can tell a new problem from one already counted."""
    grouped: dict[tuple[Any, ...], tuple[list[str], object]] = {}
    beyond: set[tuple[Any, ...]] = set()
    for error in errors:
        # A union's failed members are one field: their locations differ only by the member's tag.
        key = tuple(p for p in error.get("loc", ()) if not _is_tag(p, field_names))
        if key not in grouped and limit is not None and len(grouped) >= limit:
            beyond.add(key)
            continue
        location = list(key)
        # Extra fields exist on deals only: ('deals', i, name).
        is_extra = (len(location) == 3 and location[0] == "deals" and location[2] not in field_names
                    and error.get("type") != "extra_forbidden")
        expected = EXTRA_EXPECTED if is_extra else _expected(error)
        if error.get("type") == "missing":
            got: object = _Missing
        else:
            got = error.get("input")
        seen, _ = grouped.setdefault(key, ([], got))
        if expected not in seen:
            seen.append(expected)
    problems = []
    for key, (expectations, got) in grouped.items():
        # A length or range message is more telling than "text" when the value was of the right type.
        specific = [e for e in expectations if e not in ("text", "an integer", "a number", "true or false",
                                                         "a finite number")]
        wanted = specific if specific and len(specific) < len(expectations) else expectations
        problems.append(Problem(json_path(list(key), prefix), " or ".join(wanted),
                                "nothing" if got is _Missing else shown(got)))
    return problems, {p.field for p in problems} | {json_path(list(key), prefix) for key in beyond}


class _MissingType:
    pass


_Missing = _MissingType()
