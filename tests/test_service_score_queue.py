"""Requests scored together answer exactly as alone; errors stay with their request; waiting requests share a pass."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import httpx
import orjson
import pytest
from service_fixtures import (  # noqa: F401
    TODAY,
    deal_payloads,
    fixture_service_crm,
    fixture_service_dataset,
    fixture_service_profiled_model,
    fixture_service_training,
    make_deal,
)

from model.errors import ContractViolation
from model.scorer import ScoringModel
from service import Settings, create_app
from service.dataplane import DataPlane, ScoreCall
from service.holder import LoadedModel
from service.schemas import RankBy
from service.score_queue import ScoreQueue
from training.synthetic_crm import SyntheticCRM


def _body(deals: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"deals": deals})


def _same(a: Any, b: Any, where: str = "") -> None:
    """Equal JSON, numbers to 1e-9 relative (a batch may sum a deal's reasons in another order)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def requests(service_crm: SyntheticCRM) -> list[tuple[bytes, RankBy | None]]:
    deals = deal_payloads(service_crm.deals.tail(40).drop(columns=["status", "closed_at"]), service_crm.clients)
    bare = [{k: v for k, v in d.items() if k != "client"} for d in deals[1:6]]  # no client objects at all
    with_history = [{**d, "client": {**d.get("client", {}), "client_id": d["client_id"], "won_deals": 3,
                                     "won_amount": 12_000.0, "first_won_at": "2023-04-01",
                                     "last_won_at": "2025-10-01"}, "note": "call back"}
                     for d in deals[6:8]]
    # The first request's client again, sent with another industry: each request sees the client it sent.
    moved = {**deals[0], "deal_id": "again", "client": {**deals[0]["client"], "industry": "logistics"}}
    duplicate = [make_deal(deal_id="dup"), make_deal(deal_id="dup")]
    return [
        (_body(deals[:1]), None),
        (_body(bare), None),
        (_body(with_history), None),
        (_body(duplicate), None),  # refused: 422 of its own
        (_body(deals[8:20]), RankBy.value_per_hour),
        (b'{"deals": [', None),  # malformed JSON
        (_body([moved, *deals[20:22]]), None),
        (_body([make_deal(deal_id="prospect", client_id="never-seen")]), RankBy.expected_value),
    ]


def _calls(snapshot: LoadedModel, requests: list[tuple[bytes, RankBy | None]]) -> list[ScoreCall]:
    return [ScoreCall(body, snapshot, f"r{i}", by) for i, (body, by) in enumerate(requests)]


def test_requests_scored_together_answer_as_each_alone(service_profiled_model: ScoringModel,
                                                       requests: list[tuple[bytes, RankBy | None]]) -> None:
    plane = DataPlane(Settings(), clock=lambda: TODAY)
    snapshot = LoadedModel.build(service_profiled_model)
    calls = _calls(snapshot, requests)
    together = plane.score_together(calls)
    alone = [plane.score_together([call])[0] for call in calls]
    for i, (a, b) in enumerate(zip(together, alone, strict=True)):
        if isinstance(b, Exception):
            assert type(a) is type(b) and str(a) == str(b), i
            continue
        assert isinstance(a, bytes), (i, a)
        _same(orjson.loads(a), orjson.loads(b), f"request {i}")
    assert isinstance(together[3], ContractViolation)
    gaps = {s["deal_id"]: s["gaps"] for s in orjson.loads(together[6])["scores"]}  # type: ignore[arg-type]
    first = orjson.loads(together[0])["scores"][0]  # type: ignore[arg-type]
    assert first["gaps"] and gaps["again"] != first["gaps"]  # another segment, another gap list


def test_a_pass_that_fails_fails_only_the_request_that_broke_it(service_profiled_model: ScoringModel,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    original = service_profiled_model.score

    def breaks_on_boom(columns: Any, n_reasons: int = 5) -> Any:
        if "boom" in list(columns["deal_id"]):
            raise RuntimeError("the model cannot score this deal")
        return original(columns, n_reasons)

    monkeypatch.setattr(service_profiled_model, "score", breaks_on_boom)
    plane = DataPlane(Settings(), clock=lambda: TODAY)
    snapshot = LoadedModel.build(service_profiled_model)
    bodies = [_body([make_deal(deal_id="a")]), _body([make_deal(deal_id="boom")]), _body([make_deal(deal_id="b")])]
    answers = plane.score_together([ScoreCall(b, snapshot, f"r{i}") for i, b in enumerate(bodies)])
    assert isinstance(answers[1], RuntimeError)
    assert [orjson.loads(answers[i])["scores"][0]["deal_id"] for i in (0, 2)] == ["a", "b"]  # type: ignore[arg-type]


def test_requests_that_wait_for_the_scoring_thread_share_one_pass(service_profiled_model: ScoringModel,
                                                                   requests: list[tuple[bytes, RankBy | None]]) -> None:
    app = create_app(Settings(), model=service_profiled_model, clock=lambda: TODAY)
    queue: ScoreQueue = app.state.score_queue
    seen: list[tuple[str, list[str]]] = []
    app.state.dataplane.observers.append(lambda s: seen.append((s.request_id, list(s.columns["deal_id"]))))
    good = [r for i, r in enumerate(requests) if i not in (3, 5)]  # the refused ones are tested above

    async def run() -> list[httpx.Response]:
        gate = threading.Event()
        app.state.executor.submit(gate.wait)  # the only scoring thread is busy until the gate opens
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dealscore") as client:
            sent = [asyncio.create_task(client.post(
                "/v1/score" if by is None else f"/v1/rank?by={by.value}", content=body,
                headers={"content-type": "application/json", "x-request-id": f"q{i}"}))
                for i, (body, by) in enumerate(good)]
            deadline = time.monotonic() + 10
            while len(queue._waiting) < len(good) - 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # the first request went to the executor, the others wait
            gate.set()
            return list(await asyncio.gather(*sent))

    answers = asyncio.run(run())
    assert [r.status_code for r in answers] == [200] * len(good)
    # The first request had a thread to itself; all the others waited and were scored in one pass.
    assert (queue.passes, queue.requests) == (2, len(good))
    plane = DataPlane(Settings(), clock=lambda: TODAY)
    snapshot = LoadedModel.build(service_profiled_model)
    for i, ((body, by), response) in enumerate(zip(good, answers, strict=True)):
        assert response.headers["x-request-id"] == f"q{i}"
        alone = orjson.loads(plane.score(body, snapshot, f"q{i}", by))
        _same(response.json(), alone, f"request {i}")
        # The score log (an observer) sees each request with its own deals, in its input order.
        assert dict(seen)[f"q{i}"] == [d["deal_id"] for d in orjson.loads(body)["deals"]]


def test_a_small_request_is_answered_before_the_large_ones_queued_after_it(service_profiled_model: ScoringModel,
                                                                          service_crm: SyntheticCRM) -> None:
    plane = DataPlane(Settings(max_batch=50), clock=lambda: TODAY)
    snapshot = LoadedModel.build(service_profiled_model)
    events: list[tuple[str, int]] = []
    model_pass = plane._model_pass

    def recorded_pass(requests: Any) -> Any:
        events.append(("pass", sum(len(r.columns["deal_id"]) for r in requests)))
        return model_pass(requests)

    plane._model_pass = recorded_pass  # type: ignore[method-assign]
    deals = deal_payloads(service_crm.deals.tail(100).drop(columns=["status", "closed_at"]), service_crm.clients)
    bodies = [_body(deals[:1]), _body(deals[:50]), _body(deals[50:100])]
    plane.score_together([ScoreCall(b, snapshot, f"r{i}") for i, b in enumerate(bodies)],
                         answered=lambda i, answer: events.append(("answer", i)))
    # 1 + 50 deals exceed max_batch: the small request's pass runs and is answered before the large ones.
    assert events == [("pass", 1), ("answer", 0), ("pass", 50), ("answer", 1), ("pass", 50), ("answer", 2)]


class _RecordingPlane:
    def __init__(self, seconds: float = 0.0) -> None:
        self.passes: list[list[str]] = []
        self.seconds = seconds

    def score_together(self, calls: list[ScoreCall], answered: Any = None) -> list[bytes | Exception]:
        self.passes.append([c.request_id for c in calls])
        time.sleep(self.seconds)
        for i, c in enumerate(calls):
            answered(i, c.request_id.encode())
        return [c.request_id.encode() for c in calls]


def test_a_request_whose_client_hung_up_is_not_scored() -> None:
    from concurrent.futures import ThreadPoolExecutor

    plane = _RecordingPlane()
    executor = ThreadPoolExecutor(1)
    queue = ScoreQueue(plane, executor, threads=1)  # type: ignore[arg-type]
    snapshot: Any = None

    async def run() -> list[Any]:
        gate = threading.Event()
        executor.submit(gate.wait)
        tasks = [asyncio.create_task(queue.answer(ScoreCall(b"", snapshot, name))) for name in ("a", "b", "c")]
        await asyncio.sleep(0.05)
        tasks[1].cancel()  # "b" waits in the queue when its client goes away
        await asyncio.sleep(0.01)
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    a, b, c = asyncio.run(run())
    executor.shutdown()
    assert (a, c) == (b"a", b"c") and isinstance(b, asyncio.CancelledError)
    assert plane.passes == [["a"], ["c"]]


def test_an_app_started_a_second_time_scores_again(service_profiled_model: ScoringModel) -> None:
    # Its first shutdown stopped the scoring threads; a second start (tests, an embedding server) gets new ones.
    from service_fixtures import make_client

    app = create_app(Settings(), model=service_profiled_model, clock=lambda: TODAY)
    for _ in range(2):
        with make_client(app) as client:
            assert client.post("/v1/score", json={"deals": [make_deal()]}).status_code == 200
            assert client.post("/v1/gaps", json={"clients": [{"client_id": "C00010"}]}).status_code == 200


def test_requests_from_two_event_loops_both_get_their_answers() -> None:
    # One app served from two loops (threads running their own loop): each answer is set on its own loop.
    from concurrent.futures import ThreadPoolExecutor

    plane = _RecordingPlane(seconds=0.2)
    executor = ThreadPoolExecutor(1)
    queue = ScoreQueue(plane, executor, threads=1)  # type: ignore[arg-type]
    got: dict[str, Any] = {}

    def client(name: str) -> None:
        async def ask() -> bytes:
            return await asyncio.wait_for(queue.answer(ScoreCall(b"", None, name)), timeout=10)  # type: ignore[arg-type]
        got[name] = asyncio.run(ask())

    threads = [threading.Thread(target=client, args=(name,)) for name in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    executor.shutdown()
    assert got == {"A": b"A", "B": b"B"}
