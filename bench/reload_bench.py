"""Hot reload under load: the live version changes while clients score without pause.

    .venv/bin/python -m bench.reload_bench [--clients 4] [--seconds 1.5] [--interval 0.5]

The real service runs in its own process (uvicorn, one worker, the server's factory) over a model registry
with v1 live and v2 stored. Client threads send single-deal POST /v1/score back to back on keep-alive
connections while the registry changes twice:
  admin reload   `models publish v2`, then POST /v1/admin/reload: the swap is complete when it answers
  polling        `models rollback` to v1, noticed by the service's own poll of the manifest; the swap is
                 known complete when the first answer from v1 arrives
Per phase: requests, failed requests (non-200, connection errors, or an answer naming two versions),
answers per version, answers from the old version among requests sent after the swap was known complete
(must be 0), requests in flight across that moment, and the time from the registry change to it.
The load driver (`ScoreLoad`, `measure`) is also what tests/test_service_reload.py runs against its server.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from bench.tables import format_table
from model.registry import Registry

# One known-client deal: the single-deal path is where a swap meets the most requests per second.
DEAL = {"deal_id": "D-1", "client_id": "C00010", "created_at": "2025-12-20", "amount": 2400.0,
        "product": "payroll", "effort_hours": 6.0, "source": "referral"}
SCORE_BODY = orjson.dumps({"deals": [DEAL]})
ADMIN_TOKEN = "reload-bench-token"


@dataclass(frozen=True)
class Answer:
    started: float  # time.monotonic() when the request was sent
    finished: float  # ... and when its answer was read
    ok: bool  # 200, and every score names the version the answer names
    version: str | None


class ScoreLoad:
    """Client threads sending POST /v1/score back to back on keep-alive connections, keeping every answer."""

    def __init__(self, port: int, clients: int = 4, body: bytes = SCORE_BODY) -> None:
        self.port, self.body = port, body
        self._stop = threading.Event()
        self._answers: list[list[Answer]] = [[] for _ in range(clients)]
        self._threads = [threading.Thread(target=self._run, args=(out,), daemon=True) for out in self._answers]

    def __enter__(self) -> ScoreLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def answers(self) -> list[Answer]:
        return sorted((a for per_client in self._answers for a in per_client), key=lambda a: a.started)

    def _run(self, out: list[Answer]) -> None:
        connection: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                connection = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                connection.request("POST", "/v1/score", body=self.body, headers={"content-type": "application/json"})
                response = connection.getresponse()
                ok, version = _read_score(response.status, response.read())
            except (OSError, http.client.HTTPException):  # a dropped connection is a failed request
                ok, version = False, None
                if connection is not None:
                    connection.close()
                connection = None
            out.append(Answer(started, time.monotonic(), ok, version))
        if connection is not None:
            connection.close()


def _read_score(status: int, payload: bytes) -> tuple[bool, str | None]:
    if status != 200:
        return False, None
    body = orjson.loads(payload)
    version = body.get("model_version")
    # A request must be scored by one model from start to end: every score names the answer's version.
    return all(score.get("model_version") == version for score in body.get("scores", [])), version


@dataclass(frozen=True)
class Figures:
    phase: str
    old: str
    new: str
    requests: int
    errors: int
    versions: dict[str, int]  # answers per model version
    stale_after_swap: int  # answers from the old version among requests sent after the swap was complete
    in_flight_at_swap: int  # requests sent before the swap was known complete and answered after
    swap_ms: float  # from the registry change to the moment the swap was known complete (nan: never)

    def problems(self) -> list[str]:
        """What breaks the promise of hot reload: failures, a third version, the old model after the swap."""
        out = [f"{self.errors} failed requests"] if self.errors else []
        if set(self.versions) - {self.old, self.new}:
            out.append(f"answers from other versions: {self.versions}")
        if self.new not in self.versions:
            out.append(f"no answer from {self.new}: the swap never happened")
        if self.stale_after_swap:
            out.append(f"{self.stale_after_swap} answers from {self.old} after the swap was complete")
        return out


def figures(phase: str, answers: list[Answer], old: str, new: str, changed_at: float,
            swapped_at: float | None) -> Figures:
    """`swapped_at` None: the first answer from `new` (a request answered by it was taken after the swap)."""
    if swapped_at is None:
        swapped_at = min((a.finished for a in answers if a.version == new), default=float("inf"))
    return Figures(
        phase=phase, old=old, new=new, requests=len(answers), errors=sum(not a.ok for a in answers),
        versions=dict(sorted(Counter(a.version for a in answers if a.version is not None).items())),
        stale_after_swap=sum(a.version not in (None, new) for a in answers if a.started > swapped_at),
        in_flight_at_swap=sum(a.started <= swapped_at < a.finished for a in answers),
        swap_ms=(swapped_at - changed_at) * 1000.0 if swapped_at != float("inf") else float("nan"))


def measure(phase: str, port: int, old: str, new: str, change: Callable[[], float | None], *, clients: int = 4,
            before: float = 0.5, after: float = 0.5) -> Figures:
    """Score under load for `before` seconds, run `change` (it returns when the swap was known complete, or
    None to take the first answer from `new`), go on for `after` seconds, and sum the answers up."""
    with ScoreLoad(port, clients) as load:
        time.sleep(before)
        changed_at = time.monotonic()
        swapped_at = change()
        time.sleep(after)
    return figures(phase, load.answers(), old, new, changed_at, swapped_at)


def admin_reload(port: int, token: str | None = None) -> tuple[int, dict[str, Any]]:
    """POST /v1/admin/reload; the status and the JSON answer."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/v1/admin/reload", headers=headers)
        response = connection.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        connection.close()


def reloaded_at(port: int, token: str | None = None) -> float:
    """Force a reload and return when it answered "loaded" (the swap is complete by then)."""
    status, answer = admin_reload(port, token)
    if status != 200 or answer["status"] != "loaded":
        raise RuntimeError(f"the reload did not load a new version: {status} {answer}")
    return time.monotonic()


def table(results: list[Figures], clients: int, interval: float) -> str:
    rows = [[f.phase, f"{f.old} -> {f.new}", f.requests, f.errors,
             ", ".join(f"{version} {count:,}" for version, count in f.versions.items()),
             f.stale_after_swap, f.in_flight_at_swap, round(f.swap_ms, 1)] for f in results]
    return format_table(
        f"Hot reload under load ({clients} client threads, single-deal /v1/score, "
        f"{f'poll interval {interval:g} s' if interval > 0 else 'polling off'})",
        ["phase", "change", "requests", "errors", "answers per version", "old after swap", "in flight",
         "change -> swap ms"], rows,
        notes=["old after swap: answers from the old version among requests sent after the swap was known "
               "complete (must be 0)",
               "in flight: requests sent before that moment and answered after it (each finished on its model)",
               "change -> swap: admin reload = publish + POST /v1/admin/reload (load, verify, warm, swap); "
               "polling = rollback until the first answer from the new version (includes the poll wait)"])


# ---------------------------------------------------------------------------------------------------
# The run: a small model, a registry with two versions of it, the service in its own process.


def build_registry(root: Path) -> Registry:
    """A registry with v1 live and v2 stored: the same small model (3,000 synthetic deals) under two names."""
    from model.dataset import dataset_from_frames
    from training.fit import TrainConfig, train
    from training.synthetic_crm import generate

    crm = generate(seed=5, n_deals=3_000)
    result = train(dataset_from_frames(crm.deals, crm.clients, crm.holdings, for_training=True),
                   TrainConfig(threads=1))
    registry = Registry(root)
    registry.add(dataclasses.replace(result.model, version="v1"), result.metadata, action="publish",
                 reason="reload bench")
    registry.add(dataclasses.replace(result.model, version="v2"), result.metadata, reason="reload bench")
    return registry


def run(work: Path, clients: int, seconds: float, interval: float) -> list[Figures]:
    from bench.serving_bench import running

    registry = build_registry(work / "registry")
    settings: Mapping[str, str] = {"DEALSCORE_REGISTRY_DIR": str(registry.root),
                                   "DEALSCORE_RELOAD_INTERVAL_SECONDS": str(interval),
                                   "DEALSCORE_ADMIN_TOKEN": ADMIN_TOKEN, "DEALSCORE_LOG_LEVEL": "WARNING"}

    def publish_and_reload() -> float:
        registry.publish("v2", "reload bench")
        return reloaded_at(port, ADMIN_TOKEN)

    def roll_back() -> None:
        registry.rollback("reload bench")

    with running("service", None, work, settings) as (port, _pid):
        half = seconds / 2
        return [measure("admin reload", port, "v1", "v2", publish_and_reload, clients=clients, before=half,
                        after=half),
                measure("polling", port, "v2", "v1", roll_back, clients=clients, before=half,
                        after=half + interval)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reload_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="client threads scoring back to back")
    parser.add_argument("--seconds", type=float, default=1.5, help="load per phase, half before the change")
    parser.add_argument("--interval", type=float, default=0.5, help="the service's poll interval (seconds)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dealscore-reload-bench-") as tmp:
        results = run(Path(tmp), args.clients, args.seconds, args.interval)
    print(table(results, args.clients, args.interval))
    problems = [f"{f.phase}: {problem}" for f in results for problem in f.problems()]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
