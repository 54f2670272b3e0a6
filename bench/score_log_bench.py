"""Score-log benchmark: scoring latency with the feedback store off and on, in-process through the app.

    .venv/bin/python -m bench.score_log_bench [--requests 1500] [--rounds 3] [--model DIR] [--json FILE]

The same app (service.create_app over one model) is measured with four data planes, round after round
(the median over rounds is reported, so drift on a shared machine hits all alike):
  off          the service as it is, no feedback store
  sqlite       the outcome overlay before scoring and the score log after it, into a SQLite file
  postgresql   the same into the local PostgreSQL (skipped when unreachable)
  down         the same with the database down: every entry goes to the disk spool
Each measures single-deal POST /v1/score p50/p99 and a 100-deal batch p50/p99 through an in-process
ASGI client, with 500 recorded outcomes in the overlay. The log's cost on the request path is one
queue put; what the table shows beyond that is the writer thread's share of the CPU, whose own CPU time
per single-deal request (user + system, from /proc, Linux only) is the last column.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa

from bench.tables import format_table

POSTGRES_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
TODAY = date(2026, 1, 15)
BATCH = 100


def _model(model_dir: str | None) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    from model.artifact import load_artifact
    from model.dataset import dataset_from_frames
    from training.fit import TrainConfig, train
    from training.synthetic_crm import generate

    crm = generate(seed=7, n_deals=6_000)
    if model_dir:
        model, metadata = load_artifact(model_dir)
    else:
        result = train(dataset_from_frames(crm.deals, crm.clients, crm.holdings, for_training=True, today=TODAY),
                       TrainConfig(threads=1))
        model, metadata = result.model, result.metadata
    clients = {r["client_id"]: r for r in crm.clients.to_dict("records")}
    deals = []
    for record in crm.deals.tail(2_000).to_dict("records"):
        deal = {"deal_id": record["deal_id"], "client_id": record["client_id"],
                "created_at": record["created_at"].date().isoformat(), "amount": float(record["amount"]),
                "product": record["product"], "effort_hours": float(record["effort_hours"]),
                "source": record["source"]}
        client = clients.get(record["client_id"])
        if client is not None:
            deal["client"] = {"client_id": client["client_id"], "industry": client["industry"],
                              "size": client["size"], "region": client["region"]}
        deals.append(deal)
    return model, metadata, deals


def _test_client(app: Any) -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
        from starlette.testclient import TestClient
    return TestClient(app)


def _app(model: Any, metadata: dict[str, Any], feedback: Any | None) -> Any:
    """The service's app; with a feedback store, wired as docs/feedback.md proposes (or its stand-in)."""
    from service import Settings, create_app

    settings = Settings(max_batch=1_000)
    if feedback is None:
        return create_app(settings, model=model, metadata=metadata, clock=lambda: TODAY)
    if "feedback" in inspect.signature(create_app).parameters:
        factory: Any = create_app  # the parameter is the proposal of docs/feedback.md
        return factory(settings, model=model, metadata=metadata, clock=lambda: TODAY, feedback=feedback)
    # Until create_app takes a store: the overlay as a column transform (or inside the model, for a data
    # plane without transforms), the log as a scoring observer.
    plane_has_transforms = hasattr(create_app(settings).state.dataplane, "column_transforms")
    served = model if plane_has_transforms else _with_overlay(model, feedback)
    app = create_app(settings, model=served, metadata=metadata, clock=lambda: TODAY)
    if plane_has_transforms:
        app.state.dataplane.column_transforms.append(feedback.transform_columns)
    app.state.dataplane.observers.append(feedback.observe)
    return app


def _with_overlay(model: Any, feedback: Any) -> Any:
    """The model, scoring with the outcome overlay merged into its input columns."""
    from dataclasses import dataclass, fields

    from model.scorer import ScoreBatch, ScoringModel

    @dataclass
    class OverlaidModel(ScoringModel):
        def score(self, columns: Any, n_reasons: int = 5) -> ScoreBatch:
            return super().score(feedback.with_history(self, columns), n_reasons)

    return OverlaidModel(**{f.name: getattr(model, f.name) for f in fields(model)})


@contextmanager
def _store(kind: str, workdir: Path, deals: list[dict[str, Any]]) -> Iterator[Any]:
    if kind == "off":
        yield None
        return
    from service.feedback import Feedback, FeedbackConfig
    from service.feedback.outcomes import Outcome

    schema = None
    if kind == "sqlite":
        url = f"sqlite:///{workdir / f'feedback-{uuid.uuid4().hex[:6]}.db'}"
    elif kind == "postgresql":
        schema = f"dealscore_bench_{uuid.uuid4().hex[:8]}"
        _admin(f'CREATE SCHEMA "{schema}"')
        url = str(sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
                  .render_as_string(hide_password=False))
    else:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        url = f"postgresql+psycopg://root@127.0.0.1:{port}/test"
    feedback = Feedback(FeedbackConfig(database_url=url, spool_dir=workdir / f"spool-{kind}-{uuid.uuid4().hex[:6]}",
                                       retry_seconds=3600.0, outcomes_refresh_seconds=0.0))
    feedback.start()
    try:
        if kind != "down":
            outcomes = [Outcome(f"past-{i}", "won", 1000.0 + i, date(2025, 12, 1), client_id=str(d["client_id"]))
                        for i, d in enumerate(deals[:500])]
            feedback.record_outcomes(outcomes)
        yield feedback
    finally:
        feedback.stop()
        if schema is not None:
            _admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _admin(statement: str) -> None:
    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def postgres_reachable() -> bool:
    from service.feedback.db import reachable

    engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
    try:
        return reachable(engine)
    finally:
        engine.dispose()


def _latencies(post: Callable[[bytes], None], bodies: list[bytes]) -> list[float]:
    out = []
    for body in bodies:
        started = time.perf_counter()
        post(body)
        out.append((time.perf_counter() - started) * 1000.0)
    return out


WRITER_THREAD = "dealscore-score-log"


def _writer_cpu_seconds() -> float | None:
    """CPU time (user + system) the score log's writer thread has used, from /proc; None where unreadable."""
    import os
    import threading

    for thread in threading.enumerate():
        if thread.name == WRITER_THREAD and thread.native_id is not None:
            try:
                fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run(model_dir: str | None, requests: int, rounds: int) -> dict[str, dict[str, float]]:
    model, metadata, deals = _model(model_dir)
    kinds = ["off", "sqlite", *(["postgresql"] if postgres_reachable() else []), "down"]
    singles = [orjson.dumps({"deals": [deals[i % len(deals)]]}) for i in range(requests)]
    batches = [orjson.dumps({"deals": [deals[(i * BATCH + j) % len(deals)] for j in range(BATCH)]})
               for i in range(max(requests // 10, 20))]
    samples: dict[str, dict[str, list[float]]] = {k: {"p50": [], "p99": [], "b50": [], "b99": [], "pending": [],
                                                                     "writer_us": []}
                                                  for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(rounds):
            shift = round_number % len(kinds)  # each round starts with another variant: drift hits all alike
            for kind in kinds[shift:] + kinds[:shift]:
                with _store(kind, Path(tmp), deals) as store, _test_client(_app(model, metadata, store)) as client:
                    def post(body: bytes) -> None:
                        response = client.post("/v1/score", content=body, headers={"content-type": "application/json"})
                        assert response.status_code == 200, response.text

                    _latencies(post, singles[:100])  # warm-up
                    if store is not None:
                        store.flush_score_log(30.0)
                    cpu_before = _writer_cpu_seconds()
                    single = _latencies(post, singles)
                    if store is not None:
                        store.flush_score_log(30.0)
                        cpu_after = _writer_cpu_seconds()
                        if cpu_before is not None and cpu_after is not None:
                            samples[kind]["writer_us"].append((cpu_after - cpu_before) / len(singles) * 1e6)
                    batch = _latencies(post, batches)
                    samples[kind]["p50"].append(_percentile(single, 50))
                    samples[kind]["p99"].append(_percentile(single, 99))
                    samples[kind]["b50"].append(_percentile(batch, 50))
                    samples[kind]["b99"].append(_percentile(batch, 99))
                    if store is not None:
                        store.flush_score_log(30.0)
                        samples[kind]["pending"].append(float(store.score_log_pending()))
    return {kind: {name: statistics.median(values) if values else 0.0 for name, values in s.items()}
            for kind, s in samples.items()}


def table(results: dict[str, dict[str, float]], requests: int, rounds: int) -> str:
    off = results["off"]
    rows = []
    for kind, r in results.items():
        rows.append([kind, r["p50"], r["p99"], f"{r['p50'] / off['p50']:.2f}x", r["b50"], r["b99"],
                     f"{r['b50'] / off['b50']:.2f}x", int(r["pending"]),
                     f"{r['writer_us']:.0f}" if kind != "off" and r["writer_us"] else "-"])
    return format_table(
        f"score log: POST /v1/score latency in ms, in-process ASGI client (median of {rounds} rounds)",
        ["log", "1 deal p50", "1 deal p99", "p50 vs off", f"{BATCH} deals p50", f"{BATCH} deals p99",
         "p50 vs off", "left in spool", "writer CPU us / 1-deal request"], rows,
        [f"{requests:,} single-deal and {max(requests // 10, 20):,} batch requests per round; 500 outcomes in "
         "the history overlay; 'down': the database at a closed port, entries spooled to disk (fsync per batch)."])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default=None, help="an artifact directory; default: train one on synthetic data")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args, _ = parser.parse_known_args()
    started = time.perf_counter()
    results = run(args.model, args.requests, args.rounds)
    print(table(results, args.requests, args.rounds))
    print(f"\n({time.perf_counter() - started:.1f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
