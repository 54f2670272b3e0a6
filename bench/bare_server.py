"""The bare reference: the same model behind the least FastAPI can do. No validation, no envelope, no
request id, no logging, no thread hop; columns built by hand with numpy and the answer encoded by hand.
It shows what serving this model costs at a minimum; the service is measured against it.

    DEALSCORE_MODEL_DIR=/path/to/artifact uvicorn bench.bare_server:create_bare_app --factory
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from fastapi import FastAPI, Request, Response

from model.artifact import load_artifact
from model.scorer import ScoringModel

CLIENT_FIELDS = ("industry", "size", "region")


def columns_of(model: ScoringModel, deals: list[dict[str, Any]]) -> dict[str, npt.NDArray[Any]]:
    spec = model.spec
    clients = [d.get("client") or {} for d in deals]
    columns: dict[str, npt.NDArray[Any]] = {
        "deal_id": np.array([d["deal_id"] for d in deals], dtype=object),
        "client_id": np.array([d.get("client_id") for d in deals], dtype=object),
        "created_day": np.array([d["created_at"] for d in deals], dtype="datetime64[D]").astype(np.float64),
        "client_since_day": np.array([c.get("since") or "NaT" for c in clients],
                                     dtype="datetime64[D]").astype(np.float64),
    }
    columns["client_since_day"][columns["client_since_day"] < -1e15] = np.nan  # NaT
    for name in spec.numeric:
        columns[name] = np.array([d.get(name, np.nan) for d in deals], dtype=np.float64)
    for name in spec.categorical:
        source = clients if name in CLIENT_FIELDS else deals
        columns[name] = np.array([s.get(name) for s in source], dtype=object)
    return columns


def create_bare_app() -> FastAPI:
    model, _ = load_artifact(os.environ["DEALSCORE_MODEL_DIR"])
    version = model.version
    app = FastAPI()

    @app.post("/v1/score")
    async def score(request: Request) -> Response:
        deals = orjson.loads(await request.body())["deals"]
        batch = model.score(columns_of(model, deals), n_reasons=5)
        gaps: list[Any] = [[] for _ in deals]
        if model.profiles is not None:
            from model.profiles import ClientFacts

            # One more than shown: a deal's list leaves out the product it offers, as the service's does.
            found = model.profiles.gaps_for([ClientFacts(client_id=str(d["client_id"])) for d in deals], top_k=4)
            gaps = [[{"product": g.product, "adoption": g.adoption, "p_accept": g.p_accept,
                      "potential_income": g.potential_income, "reason": g.reason}
                     for g in f.gaps if g.product != d.get("product")][:3] for f, d in zip(found, deals, strict=True)]
        value, expected, per_hour = batch.value.tolist(), batch.expected_value.tolist(), batch.value_per_hour.tolist()
        p_win = batch.p_win.tolist()
        scores = [{"deal_id": d["deal_id"], "p_win": p_win[i], "value": value[i], "expected_value": expected[i],
                   "grade": batch.grade[i], "grade_reason": batch.grade_reason[i],
                   "reasons": [r.answer() for r in batch.reasons[i]],
                   "gaps": gaps[i], "value_source": batch.value_source[i], "value_per_hour": per_hour[i],
                   "history_source": batch.history_source[i], "not_sent": batch.not_sent[i],
                   "unseen": batch.unseen[i], "model_version": version}
                  for i, d in enumerate(deals)]
        return Response(orjson.dumps({"model_version": version, "scores": scores}), media_type="application/json")

    return app
