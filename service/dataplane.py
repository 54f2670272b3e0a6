"""What each endpoint does with a request body, without HTTP: parse and check it, score, encode the answer.

Runs in a worker thread (it is CPU-bound); one model snapshot per request, one vectorised model pass
per batch. The answer is encoded straight to JSON bytes with orjson: no per-request pandas, no
intermediate pydantic response objects.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, cast, get_args

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from model.contract import DATE_SLACK, utc_today
from model.errors import ContractViolation, PayloadTooLarge, Problem
from model.records import (
    RESERVED_NAMES,
    date_or_none,
    deal_columns,
    history_problems,
    parse_date,
    text_value,
    unused_extra_fields,
)
from model.scorer import ScoreBatch
from service.errors import MAX_LISTED_PROBLEMS, MalformedJSON, pydantic_problems, request_violation, shown
from service.holder import LoadedModel
from service.schemas import FIELD_NAMES, MAX_FIELD_NAME, Deal, RankBy, id_as_sent, request_models
from service.settings import Settings

__all__ = ["Columns", "DataPlane", "ScoreCall", "ScoredRequest"]

Columns = dict[str, np.ndarray[Any, Any]]
Encoded = orjson.Fragment  # JSON already encoded, embedded as is by orjson.dumps
NO_ITEMS = orjson.Fragment(b"[]")
# Above this many pydantic failures a request's problems are sampled (DataPlane._sampled_violation), not all
# converted: a few MB of bad fields made 1.26 million, whose conversion alone took 6 s and 2 GB.
CONVERTED_ERRORS_AT_MOST = 5_000


class DataPlane:
    def __init__(self, settings: Settings, clock: Callable[[], date] = utc_today) -> None:
        self.settings = settings
        self.clock = clock
        self.models = request_models(settings.max_batch)
        # Extension points for features that live elsewhere: transforms of the columns before scoring
        # (e.g. client history from outcomes reported after training), and observers of each scored
        # batch (e.g. the score log). Both run in the worker thread; observers must be quick and not raise.
        self.column_transforms: list[Callable[[LoadedModel, Columns], Columns]] = []
        # ... and of each client's facts before its gap list (e.g. products won since training, now held).
        self.fact_transforms: list[Callable[[LoadedModel, Any], Any]] = []
        self.observers: list[Callable[[ScoredRequest], None]] = []

    # ---------------------------------------------------------------------------------------------
    # Endpoints

    def score(self, body: bytes, snapshot: LoadedModel, request_id: str, rank_by: RankBy | None = None) -> bytes:
        """One /v1/score (or, with `rank_by`, /v1/rank) answer."""
        answer = self.score_together([ScoreCall(body, snapshot, request_id, rank_by)])[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def score_together(self, calls: Sequence[ScoreCall],
                       answered: Callable[[int, bytes | Exception], None] | None = None) -> list[bytes | Exception]:
        """Answers to several score requests (or the error each raises), their deals scored in shared passes.

        Each request is parsed, checked and answered on its own, exactly as alone; only the model's work is
        shared: one feature build, one engine call and one gap-list pass for all the deals of a pass, which
        costs little more than the same work for one deal. Consecutive requests of one model snapshot share
        a pass, up to `max_batch` deals; if a shared pass fails, each of its requests is scored alone, so an
        error stays with the request that caused it. Requests are read pass by pass and `answered(i, answer)`
        is called as soon as request i's answer is ready: a small request is not held back by large ones
        after it, and at most one pass of parsed requests is in memory.
        """
        answers: list[bytes | Exception | None] = [None] * len(calls)

        def give(i: int, answer: bytes | Exception) -> None:
            answers[i] = answer
            if answered is not None:
                answered(i, answer)

        group: list[tuple[int, _ReadRequest]] = []
        deals = 0
        for i, call in enumerate(calls):
            try:
                columns, clients, client_of_deal = self._read_deals(call.body, call.snapshot)
                for transform in self.column_transforms:
                    columns = transform(call.snapshot, columns)
            except Exception as exc:  # the request's own error, raised in its handler
                give(i, exc)
                continue
            n = len(columns["deal_id"])
            if group and (group[0][1].call.snapshot is not call.snapshot or deals + n > self.settings.max_batch):
                self._score_group(group, give)
                group, deals = [], 0
            group.append((i, _ReadRequest(call, columns, clients, client_of_deal)))
            deals += n
        if group:
            self._score_group(group, give)
        return [a if a is not None else RuntimeError("request not answered") for a in answers]

    def _score_group(self, group: list[tuple[int, _ReadRequest]],
                     give: Callable[[int, bytes | Exception], None]) -> None:
        requests = [request for _, request in group]
        scored: list[tuple[ScoreBatch, list[Encoded]]] | None
        try:
            scored = self._model_pass(requests)
        except Exception as exc:
            if len(group) == 1:
                give(group[0][0], exc)
                return
            scored = None
        for k, (i, request) in enumerate(group):
            try:
                batch, gaps = scored[k] if scored is not None else self._model_pass([request])[0]
                give(i, self._answer(request, batch, gaps))
            except Exception as exc:
                give(i, exc)

    def _model_pass(self, requests: Sequence[_ReadRequest]) -> list[tuple[ScoreBatch, list[Encoded]]]:
        """Score the deals of `requests` (one snapshot) in one pass; each request's scores and gap lists."""
        snapshot = requests[0].call.snapshot
        columns = requests[0].columns if len(requests) == 1 else _concatenated([r.columns for r in requests])
        batch = snapshot.model.score(columns, n_reasons=self.settings.reasons)
        clients = [client for r in requests for client in r.clients]
        found = self._client_gaps(snapshot, clients)
        out: list[tuple[ScoreBatch, list[Encoded]]] = []
        deals = clients_seen = 0
        for r in requests:
            n = len(r.columns["deal_id"])
            # A request's deals see its own clients' gap lists (two requests may send one client differently).
            gaps = _deal_gaps(found, clients_seen, r.client_of_deal, r.columns.get("product"),
                              self.settings.top_gaps, getattr(snapshot.model, "profiles", None))
            out.append((batch.rows(deals, deals + n) if len(requests) > 1 else batch, gaps))
            deals += n
            clients_seen += len(r.clients)
        return out

    def _answer(self, request: _ReadRequest, batch: ScoreBatch, gaps: list[Encoded]) -> bytes:
        call, columns = request.call, request.columns
        snapshot, request_id, rank_by = call.snapshot, call.request_id, call.rank_by
        scores = _score_items(columns["deal_id"], batch, gaps, snapshot.version)
        for observer in self.observers:
            observer(ScoredRequest(request_id, snapshot, columns, batch))
        spec = snapshot.model.spec
        ignored = unused_extra_fields(columns, {*spec.numeric, *spec.categorical})
        if rank_by is None:
            return orjson.dumps({"model_version": snapshot.version, "request_id": request_id, "scores": scores,
                                 "ignored_fields": ignored})
        ranked = [{"rank": rank, **scores[i]} for rank, i in enumerate(_ranking(batch, rank_by).tolist(), start=1)]
        return orjson.dumps({"model_version": snapshot.version, "request_id": request_id, "by": rank_by.value,
                             "scores": ranked, "ignored_fields": ignored})

    def gaps(self, body: bytes, snapshot: LoadedModel, request_id: str, top: int = 5) -> bytes:
        today = self.clock()
        request: Any = self._parse(self.models.gaps, body, "clients", today)
        clients: list[Any] = request.clients
        facts = [self._transformed(snapshot, _facts(text_value(c.client_id), c)) for c in clients]
        profiles = getattr(snapshot.model, "profiles", None)
        results: list[dict[str, Any]]
        if profiles is None:
            results = [{"client_id": f.client_id, "segment": None, "gaps": [], "potential_income": None,
                        "unknown_products": []} for f in facts]
        else:
            # Named, as they count as nothing held: a CRM spelling "Business Insurance" where the model knows
            # business_insurance is told so, not just offered the product it holds.
            results = [{**_client_gaps_item(g), "unknown_products": profiles.unknown_products(f.products or ())}
                       for g, f in zip(profiles.gaps_for(facts, top_k=top), facts, strict=True)]
        # Beside each list, where the client stands: cross-sell is for settled clients (DOMAIN.md), and which
        # those are is the manager's call, made on the list's own figures.
        statuses, sources = self._client_standing(snapshot, clients, today)
        for result, status, source in zip(results, statuses, sources, strict=True):
            result["client_status"], result["history_source"] = status, source
        return orjson.dumps({"model_version": snapshot.version, "request_id": request_id, "clients": results})

    def _client_standing(self, snapshot: LoadedModel, clients: Sequence[Any],
                         today: date) -> tuple[list[str | None], list[str]]:
        """Each client's status at the end of today and the history it was read from: the history sent with it,
        else the model's plus outcomes reported since training, read as by a deal of it created tomorrow (a
        deal's history holds what closed before its day; a client's today holds today's wins too), its days since
        the last win counted to today (to tomorrow, a win exactly the lost window ago read lost a day early)."""
        # No deal id: a deal's own outcome never counts in its history, and "3" would be some CRM's real deal.
        columns = deal_columns([{"client": c} for c in clients], kinds=snapshot.kinds, today=today + timedelta(days=1))
        for transform in self.column_transforms:
            columns = transform(snapshot, columns)
        return snapshot.model.client_standing(columns, end_of_day_before=True)

    def _read_deals(self, body: bytes, snapshot: LoadedModel) -> tuple[Columns, list[Any], list[int]]:
        """The request's scorer columns, the facts of the clients whose gap lists are wanted, and which of
        them each deal's is (-1: none).

        Nothing else of the parsed request outlives this call: its objects (thousands for a batch) are
        freed before scoring, not held, and walked by the garbage collector, until the answer is encoded.
        """
        today = self.clock()
        request: Any = self._parse(self.models.score, body, "deals", today)
        columns = deal_columns(request.deals, kinds=snapshot.kinds, today=today)
        clients, client_of_deal = self._gap_clients(snapshot, request.deals, columns["client_id"])
        return columns, clients, client_of_deal

    # ---------------------------------------------------------------------------------------------
    # Parsing: the schema first, then the checks that need the whole batch or the settings. When the
    # schema fails, the batch checks still run on the raw JSON, so one answer lists every problem.

    def _parse(self, schema: type[BaseModel], body: bytes, items: str, today: date) -> BaseModel:
        try:
            request = schema.model_validate_json(body, context={"today": today})
        except ValidationError as exc:
            if exc.error_count() > CONVERTED_ERRORS_AT_MOST:
                raise self._sampled_violation(schema, body, items, today) from None
            errors = exc.errors(include_url=False)
            malformed = MalformedJSON.among(errors)
            if malformed is not None:
                raise malformed from None
            too_long = next((e for e in errors if e["type"] == "too_long" and tuple(e["loc"]) == (items,)), None)
            if too_long is not None:
                raise self._too_many(items, (too_long.get("ctx") or {}).get("actual_length", "more")) from None
            problems, paths = pydantic_problems(errors, FIELD_NAMES, limit=MAX_LISTED_PROBLEMS)
            problems = [Problem(items, f"1 to {self.settings.max_batch} {items}", "an empty list")
                        if p.field == items and p.got == "a list of 0 items" else p for p in problems]
            total = len(paths)
            raw = _loads(body)
            listed = raw.get(items) if isinstance(raw, dict) else None
            if isinstance(listed, list):
                more = [p for p in self._batch_problems(listed, items, today) if p.field not in paths]
                problems, total = problems + more, total + len(more)
            raise request_violation(problems, total) from None
        problems = self._batch_problems(getattr(request, items), items, today)
        if problems:
            raise request_violation(problems)
        return request

    def _sampled_violation(self, schema: type[BaseModel], body: bytes, items: str,
                           today: date) -> ContractViolation | PayloadTooLarge:
        """The 422 for a request with more failures than are worth describing: the first items are checked one
        by one, each cut to its first fields, until MAX_LISTED_PROBLEMS problems are found, then the request's
        own fields; pydantic's full error list (a dict per failure, hundreds of thousands from a few MB of bad
        fields) is never built."""
        raw = _loads(body)
        listed = raw.get(items) if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or not isinstance(listed, list):  # nothing of the request's shape to sample
            return request_violation([Problem(items, f"1 to {self.settings.max_batch} {items}",
                                              shown(listed) if listed is not None else "nothing")])
        if len(listed) > self.settings.max_batch:
            return self._too_many(items, len(listed))
        item_model = _item_model(schema, items)
        keep = len(item_model.model_fields) + self.settings.max_extra_fields + 1
        problems = self._batch_problems(listed, items, today)[:MAX_LISTED_PROBLEMS]
        known = {p.field for p in problems}
        context = {"today": today}

        def add(model: type[BaseModel], value: Any, prefix: str) -> None:
            try:
                # Python's json writes what _loads read (NaN, integers past 64 bits) back as the body had it.
                model.model_validate_json(json.dumps(value), context=context)
            except ValidationError as exc:
                found, _ = pydantic_problems(exc.errors(include_url=False)[:10 * MAX_LISTED_PROBLEMS], FIELD_NAMES,
                                             prefix=prefix, limit=MAX_LISTED_PROBLEMS)
                problems.extend(p for p in found if p.field not in known)

        for i, item in enumerate(listed):
            if len(problems) >= MAX_LISTED_PROBLEMS:
                break
            add(item_model, dict(itertools.islice(item.items(), keep)) if isinstance(item, dict) else item,
                f"{items}[{i}]")
        if len(problems) < MAX_LISTED_PROBLEMS:  # the request's own fields (unknown ones, say), its items aside
            own = dict(itertools.islice(((k, v) for k, v in raw.items() if k != items), MAX_LISTED_PROBLEMS))
            add(schema, {**own, items: listed[:1]}, "")
        listed_problems = problems[:MAX_LISTED_PROBLEMS]
        return ContractViolation(f"many problems in the request: the first {len(listed_problems)} found are listed",
                                 listed_problems)

    def _too_many(self, items: str, sent: object) -> PayloadTooLarge:
        limit = self.settings.max_batch
        return PayloadTooLarge(f"too many {items} in one request: at most {limit:,} are accepted, got {sent}; "
                               "split the batch", [Problem(items, f"at most {limit} items", f"{sent} items")])

    def _batch_problems(self, entries: Sequence[Any], items: str, today: date) -> list[Problem]:
        """Duplicate ids, extra fields beyond the limits, closed before created, two different client ids.

        `entries` are validated models or, when the schema already failed, the raw JSON objects.
        """
        problems: list[Problem] = []
        key = "deal_id" if items == "deals" else "client_id"
        _check_unique([_text_or_none(_get(e, key)) for e in entries], items, key, problems)
        if items != "deals":
            # A client sent to /v1/gaps is checked as in a deal (a CRM reuses one client object), as of today.
            for i, entry in enumerate(entries):
                problems += _history_problems(entry, None, today, f"clients[{i}]")
            return problems
        limit = self.settings.max_extra_fields
        for i, entry in enumerate(entries):
            where = f"deals[{i}]"
            extra = _extra_fields(entry)
            if len(extra) > limit:
                problems.append(Problem(where, f"at most {limit} extra fields", f"{len(extra)} extra fields"))
            for name, value in extra.items():
                if "\x00" in name:  # PostgreSQL cannot store it in the score log's deal document
                    problems.append(Problem(f"{where}.{_printable(name[:MAX_FIELD_NAME])}",
                                            "a field name without NUL characters (\\u0000)", "a NUL character"))
                elif len(name) > MAX_FIELD_NAME:
                    problems.append(Problem(f"{where}.{name[:MAX_FIELD_NAME]}...",
                                            f"a field name of at most {MAX_FIELD_NAME} characters",
                                            f"{len(name)} characters"))
                elif name in RESERVED_NAMES:
                    problems.append(Problem(f"{where}.{name}", "no field of this name on a deal (it is computed, "
                                            "or belongs on the deal's client)", shown(value)))
            closed = _get(entry, "closed_at")
            if closed is not None:
                created, closed = date_or_none(_get(entry, "created_at")), date_or_none(closed)
                if created is not None and closed is not None and closed < created:
                    problems.append(Problem(f"{where}.closed_at", "a date on or after created_at",
                                            f"'{closed.isoformat()}'"))
            client = _get(entry, "client")
            if client is not None:
                own = _text_or_none(_get(entry, "client_id"))
                theirs = _text_or_none(_get(client, "client_id"))
                if own is not None and theirs is not None and own != theirs:
                    problems.append(Problem(f"{where}.client.client_id", f"the deal's client_id {shown(own)}",
                                            shown(theirs)))
                problems += _history_problems(client, entry, today, f"{where}.client")
        return problems

    # ---------------------------------------------------------------------------------------------
    # Gaps

    def _gap_clients(self, snapshot: LoadedModel, deals: Sequence[Any],
                     client_ids: np.ndarray[Any, Any]) -> tuple[list[Any], list[int]]:
        """The distinct facts of the deals' clients, and each deal's among them (-1: no client); nothing when
        no gap lists are given. Deals of one client share a gap list only when they say the same of it: two
        deals may send one client_id with different attributes or products, and each deal's gaps are those
        it would get alone."""
        n = len(client_ids)
        if getattr(snapshot.model, "profiles", None) is None or self.settings.top_gaps <= 0:
            return [], [-1] * n
        wanted: dict[Any, int] = {}
        client_of_deal: list[int] = []
        for deal, client_id in zip(deals, client_ids, strict=True):
            if client_id is None:
                client_of_deal.append(-1)
                continue
            facts = self._transformed(snapshot, _facts(client_id, deal.client, deal))
            client_of_deal.append(wanted.setdefault(facts, len(wanted)))
        return list(wanted), client_of_deal

    def _transformed(self, snapshot: LoadedModel, facts: Any) -> Any:
        for transform in self.fact_transforms:
            facts = transform(snapshot, facts)
        return facts

    def _client_gaps(self, snapshot: LoadedModel, clients: list[Any]) -> list[list[Any]]:
        """Each client's gap items, in the order of `clients`, one more than a deal shows: a deal leaves out
        its own product (`_deal_gaps`)."""
        if not clients:
            return []
        return [g.gaps for g in snapshot.model.profiles.gaps_for(clients, top_k=self.settings.top_gaps + 1)]


@dataclass(frozen=True)
class ScoreCall:
    """A score (or rank) request waiting for its answer: its body, the model snapshot it is scored with."""

    body: bytes
    snapshot: LoadedModel
    request_id: str
    rank_by: RankBy | None = None


@dataclass(frozen=True)
class _ReadRequest:
    """A score request parsed and checked: the scorer's columns, the clients whose gap lists it carries."""

    call: ScoreCall
    columns: Columns
    clients: list[Any]  # distinct client facts whose gap lists the deals need
    client_of_deal: list[int]  # per deal, its client's position in `clients` (-1: none)


def _concatenated(parts: Sequence[Columns]) -> Columns:
    """Several requests' columns as one set: a column some requests lack is missing in their rows (NaN for
    numbers, None for text, False for flags), which the scorer reads as it reads an absent column."""
    sizes = [len(part["deal_id"]) for part in parts]
    out: Columns = {}
    for name in dict.fromkeys(name for part in parts for name in part):
        dtype = next(part[name].dtype for part in parts if name in part)
        out[name] = np.concatenate([part[name] if name in part else _missing(dtype, n)
                                    for part, n in zip(parts, sizes, strict=True)])
    return out


def _missing(dtype: np.dtype[Any], n: int) -> np.ndarray[Any, Any]:
    if dtype == np.bool_:
        return np.zeros(n, dtype=np.bool_)
    if dtype.kind == "f":
        return np.full(n, np.nan)
    return np.full(n, None, dtype=object)


@dataclass(frozen=True)
class ScoredRequest:
    """What an observer of scoring sees: the request, the model snapshot, its input columns and scores."""

    request_id: str
    snapshot: LoadedModel
    columns: Mapping[str, np.ndarray[Any, Any]]
    batch: ScoreBatch


DEAL_FIELDS: frozenset[str] = frozenset(Deal.model_fields)


def _item_model(schema: type[BaseModel], items: str) -> type[BaseModel]:
    """The model of one item of a request's list (`deals: list[Deal]` -> Deal)."""
    annotation = schema.model_fields[items].annotation
    (item,) = get_args(annotation)
    return cast(type[BaseModel], item)


def _loads(body: bytes) -> Any:
    """The body as plain JSON values for the batch checks; None if only pydantic's parser reads it."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:  # NaN and Infinity literals: pydantic reads them (to refuse them)
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            return None


def _get(entry: Any, name: str) -> Any:
    """A field of a validated model or of a raw JSON object (anything else has none)."""
    if isinstance(entry, BaseModel):  # first: the usual case, and a cheaper test than Mapping's
        return getattr(entry, name, None)
    return entry.get(name) if isinstance(entry, Mapping) else None


def _extra_fields(entry: Any) -> Mapping[str, Any]:
    if isinstance(entry, BaseModel):
        return entry.__pydantic_extra__ or {}
    if isinstance(entry, Mapping):
        return {k: v for k, v in entry.items() if k not in DEAL_FIELDS}
    return {}


def _history_problems(client: Any, deal: Any, today: date, where: str) -> list[Problem]:
    """Client history sent with a deal: whole, as of the deal's creation, agreeing with itself
    (model.records.history_problems, the rule `dealscore score` applies to a deals file too)."""
    sent_won, amount = _get(client, "won_deals"), _get(client, "won_amount")
    sent_first, sent_last = _get(client, "first_won_at"), _get(client, "last_won_at")
    if sent_won is None and amount is None and sent_first is None and sent_last is None:
        return []  # no history sent (the usual case, and the cheap one in a batch of thousands)
    dated = _get(deal, "created_at") if deal is not None else None
    created = date_or_none(dated) if dated is not None else today
    if deal is None:  # a client sent alone (/v1/gaps), as of now: in the sender's time zone, as any date here
        created = today + DATE_SLACK
    return [Problem(f"{where}.{name}", expected, got) for name, expected, got
            in history_problems(sent_won, amount, sent_first, sent_last, created, dated is not None, shown,
                                "the deal's created_at" if deal is not None else "today")]


def _printable(name: str) -> str:
    return name.replace("\x00", "\\u0000")


def _text_or_none(value: object) -> str | None:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return text_value(value)
    if isinstance(value, float):  # raw JSON: 7.0 is the id "7" to the schema, and so one deal with "7" (a review)
        return id_as_sent(value)
    return None


def _check_unique(ids: Sequence[str | None], items: str, name: str, problems: list[Problem]) -> None:
    seen: dict[str, int] = {}
    for i, value in enumerate(ids):
        if value is None:
            continue
        first = seen.setdefault(value, i)
        if first != i:
            problems.append(Problem(f"{items}[{i}].{name}", f"a {name} not used by another item of the batch",
                                    f"{shown(value)}, also at {items}[{first}]"))


def _facts(client_id: str | None, client: Any, deal: Any = None) -> Any:
    from model.profiles import ClientFacts

    def attribute(name: str) -> str | None:
        value = getattr(client, name, None) if client is not None else None
        if value is None and deal is not None:
            value = (deal.__pydantic_extra__ or {}).get(name)
        return text_value(value)

    since = getattr(client, "since", None) if client is not None else None
    products = getattr(client, "products", None) if client is not None else None
    return ClientFacts(
        client_id=client_id or "", industry=attribute("industry"), size=attribute("size"),
        region=attribute("region"),
        since_day=None if since is None else float((parse_date(since) - date(1970, 1, 1)).days),
        # Trimmed as every text of a request: " leasing " is the product leasing, already held, never a gap.
        products=None if products is None else tuple(
            name for name in (text_value(p) for p in products) if name is not None),
    )


def _gap_item(gap: Any) -> dict[str, Any]:
    return {"product": gap.product, "adoption": gap.adoption, "p_accept": gap.p_accept,
            "potential_income": gap.potential_income, "reason": gap.reason}


def _client_gaps_item(result: Any) -> dict[str, Any]:
    return {"client_id": result.client_id, "segment": result.segment,
            "gaps": [_gap_item(g) for g in result.gaps], "potential_income": result.potential_income}


def _ranking(batch: ScoreBatch, rank_by: RankBy) -> np.ndarray[Any, Any]:
    """The deals' order, best first: by the key asked for (unknown values last), then by expected value, then
    by p_win; what is still equal keeps its input order. Without the later keys, deals with no value (a model
    trained without amounts) or no hours came back in the order sent, a p_win of 0.68 after one of 0.65."""
    def descending(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return -np.where(np.isnan(values), -np.inf, values)

    keys = [descending(batch.expected_value), descending(batch.p_win)]  # the first decides first
    if rank_by is RankBy.value_per_hour:
        keys.insert(0, descending(batch.value_per_hour))
    elif rank_by is RankBy.grade:  # the letter class first (A, B, C, then D), as a manager reads them
        keys.insert(0, np.searchsorted(np.array(["A", "B", "C", "D"]), np.asarray(batch.grade)))
    return np.lexsort(keys[::-1])  # lexsort's last key decides first; it is stable


def _floats(values: np.ndarray[Any, Any]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


def _deal_gaps(found: Sequence[list[Any]], offset: int, client_of_deal: Sequence[int],
               products: np.ndarray[Any, Any] | None, top: int, profiles: Any = None) -> list[Encoded]:
    """Each deal's gap list: its client's, without the product the deal itself offers (a manager is already
    selling it; listing it as a cross-sell trigger of the same deal reads as a mistake), at most `top` items.
    The deal's product is matched as the profiles match a client's products: "Credit_Line" is credit_line.
    Encoded once per (client, product)."""
    encoded: dict[tuple[int, Any], Encoded] = {}
    out: list[Encoded] = []
    for i, k in enumerate(client_of_deal):
        if k < 0:
            out.append(NO_ITEMS)
            continue
        product = products[i] if products is not None else None
        key = (offset + k, product)
        if key not in encoded:
            position = profiles.product_position(product) if profiles is not None and isinstance(product, str) else None
            offered = profiles.products[position] if position is not None else product
            items = [g for g in found[offset + k] if g.product != offered][:top]
            encoded[key] = _encoded([_gap_item(g) for g in items])
        out.append(encoded[key])
    return out


def _encoded(items: list[dict[str, Any]]) -> Encoded:
    """A list of JSON objects as the bytes the answer embeds (the same bytes as the list in place): its dicts
    are freed at once instead of living, and being walked by the garbage collector, until the batch is encoded."""
    return orjson.Fragment(orjson.dumps(items))


def _reasons(reasons: Sequence[Any]) -> Encoded:
    return _encoded([r.answer() for r in reasons])


def _score_items(deal_ids: Iterable[Any], batch: ScoreBatch, gaps: list[Encoded],
                 version: str) -> list[dict[str, Any]]:
    p_win = batch.p_win.tolist()
    value, expected, per_hour = _floats(batch.value), _floats(batch.expected_value), _floats(batch.value_per_hour)
    return [
        {
            "deal_id": deal_id, "p_win": p_win[i], "value": value[i], "expected_value": expected[i],
            "grade": batch.grade[i], "grade_reason": batch.grade_reason[i], "reasons": _reasons(batch.reasons[i]),
            "gaps": gaps[i], "value_source": batch.value_source[i], "value_per_hour": per_hour[i],
            "history_source": batch.history_source[i], "not_sent": batch.not_sent[i],
            "unseen": batch.unseen[i], "model_version": version,
        }
        for i, deal_id in enumerate(deal_ids)
    ]
