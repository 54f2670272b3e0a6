"""The floor: the service's own app as the server builds it (same parsing, checks, columns, logs, score log
and response encoding) with the model pass replaced by canned scores and no gap lists. The gap between it
and the service is what scoring costs.

    DEALSCORE_MODEL_DIR=/path/to/artifact uvicorn bench.floor_server:create_floor_app --factory
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import FastAPI

from model.artifact import load_artifact
from model.scorer import ScoreBatch
from service.app import create_app
from service.feedback import Feedback, FeedbackConfig
from service.logs import configure_logging
from service.settings import Settings


class CannedScores:
    """`ScoringModel.score` without the model: one real answer, repeated for every deal of a batch."""

    def __init__(self, model: Any) -> None:
        self.model = model
        one = {"deal_id": np.array(["canned"], dtype=object), "created_day": np.array([float(model.history.last_day)])}
        self.canned = model.score(one, n_reasons=5)

    def __call__(self, columns: Mapping[str, npt.NDArray[Any]], n_reasons: int = 5) -> ScoreBatch:
        n = len(columns["deal_id"])
        c = self.canned
        return ScoreBatch(
            p_win=np.repeat(c.p_win, n), value=np.repeat(c.value, n), value_source=c.value_source * n,
            expected_value=np.repeat(c.expected_value, n), value_per_hour=np.repeat(c.value_per_hour, n),
            grade=c.grade * n, grade_reason=c.grade_reason * n, reasons=c.reasons * n,
            history_source=c.history_source * n,
            not_sent=[[]] * n,  # as the bench's deals, which send every input (the canned one sends none)
            unseen=[[]] * n,
        )


def create_floor_app() -> FastAPI:
    settings = Settings()
    configure_logging(settings.log_level)
    assert settings.model_dir is not None, "set DEALSCORE_MODEL_DIR"
    model, metadata = load_artifact(settings.model_dir)
    model.profiles = None  # no gap lists either: the floor does no model work at all
    feedback = Feedback(FeedbackConfig.from_settings(settings))
    app = create_app(settings, model=model, metadata=metadata, feedback=feedback)
    model.score = CannedScores(model)  # type: ignore[method-assign]
    return app
