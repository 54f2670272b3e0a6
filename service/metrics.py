"""GET /metrics: what this worker serves and how its feedback store is doing, in Prometheus' text format.

Each worker process answers with its own figures: with several workers behind one port, successive scrapes
reach different workers (a counter seems to reset, the version to flip during a reload), so scrape each
worker on its own (one worker per container) to read them as series. Counters end in _total, everything
else is a gauge; the model version is a label of dealscore_model_info, the usual way to expose a string.
Like /health, the endpoint is open: it shows no deal data.
"""

from __future__ import annotations

from collections.abc import Mapping

MEDIA_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HELP = {
    "dealscore_model_loaded": "1 when a model is loaded and warmed (the worker is ready)",
    "dealscore_model_info": "the model version this worker serves, as a label",
    "feedback_outcomes_known": "outcomes in the client-history overlay",
    "feedback_database_schema_ready": "1 when the feedback database is at the code's schema",
    "score_log_pending": "scored deals not yet in the database (queued plus spooled)",
    "score_log_queued": "scored deals waiting in memory for the writer",
    "score_log_spooled": "scored deals kept on disk while the database is away",
    "score_log_written_total": "scored deals written to the database",
    "score_log_spooled_total": "scored deals that went to the spool",
    "score_log_overflow_total": "scored deals sent to the spool because the queue was full",
    "score_log_dropped_total": "scored deals lost (the spool could not take them either)",
    "score_log_database_up": "1 while the score log reaches its database",
}


def prometheus_text(model_version: str | None, feedback: Mapping[str, float]) -> str:
    lines: list[str] = []

    def add(name: str, value: float, labels: str = "") -> None:
        kind = "counter" if name.endswith("_total") else "gauge"
        lines.extend((f"# HELP {name} {_HELP.get(name, name)}", f"# TYPE {name} {kind}",
                      f"{name}{labels} {_number(value)}"))

    add("dealscore_model_loaded", 1.0 if model_version is not None else 0.0)
    if model_version is not None:
        add("dealscore_model_info", 1.0, f'{{version="{_label(model_version)}"}}')
    for name, value in feedback.items():
        add(name, value)
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    # Exact: "%g" kept 6 digits, so a counter of 1,234,567 read 1.23457e+06 and stood still for thousands.
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
