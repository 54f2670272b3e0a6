"""GET /metrics: what this worker serves, how it answers and how its feedback store is doing, in Prometheus'
text format.

Each worker process answers with its own figures: with several workers behind one port, successive scrapes
reach different workers (a counter seems to reset, the version to flip during a reload), so scrape each
worker on its own (one worker per container) to read them as series. Counters end in _total, everything
else is a gauge; the model version is a label of dealscore_model_info, the usual way to expose a string.
Like /health, the endpoint is open: it shows no deal data. Every name carries the `dealscore_` prefix, so
the service's series stay apart from other jobs' on a shared Prometheus.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Iterable, Mapping

MEDIA_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PREFIX = "dealscore_"
# Seconds. A single deal is answered in about 1 ms here and a batch of 1,000 in about 0.1 s (bench/), so the
# buckets are finer than Prometheus' default ones at the low end.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "unmatched"  # any path no route serves: one label, so random paths add no series
# The method label takes these as sent, any other as "other": the method is the client's word, and uvicorn's
# h11 parser passes any token through (a soak audit sent M00000 to M00499: 500 new series, one per method, kept
# for the life of the worker; httptools, the default, knows some 35 WebDAV and other methods, each a series per
# route it was sent to).
COUNTED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})
OTHER_METHOD = "other"

_HELP = {
    "dealscore_model_loaded": "1 when a model is loaded and warmed (the worker is ready)",
    "dealscore_draining": "1 while the worker drains before its stop (DEALSCORE_DRAIN_SECONDS): /health/ready "
                          "answers 503, every other route still serves",
    "dealscore_model_info": "the model version this worker serves, as a label",
    "dealscore_model_history_end_timestamp_seconds": "the last day of the served model's deal history (Unix time, "
                                                     "00:00 UTC): client statuses and win rates are as of then",
    "dealscore_model_refused": "1 while the registry's live version is refused by this worker (it serves an older "
                               "one); the refused version is a label",
    "dealscore_http_requests_total": "answered requests by route template, method (a nonstandard one as other) and "
                                     "status",
    "dealscore_http_request_duration_seconds": "time from the request's arrival to its answer, by route template",
    "dealscore_scored_deals_total": "deals scored (by /v1/score and /v1/rank), by letter class",
    "dealscore_inputs_not_sent_total": "scored deals that lacked an input (nearly) every training deal had, by "
                                       "input: averaged out of the model (a score's not_sent)",
    "dealscore_inputs_unseen_total": "scored deals whose text input held a level the model never saw, by input (a "
                                     "score's unseen): a level renamed or misspelt in the CRM, or a new one",
    "dealscore_feedback_outcomes_known": "outcomes in the client-history overlay",
    "dealscore_feedback_database_schema_ready": "1 when the feedback database is at the code's schema",
    "dealscore_score_log_pending": "scored deals not yet in the database (queued plus spooled)",
    "dealscore_score_log_queued": "scored deals waiting in memory for the writer",
    "dealscore_score_log_spooled": "scored deals kept on disk while the database is away",
    "dealscore_score_log_written_total": "scored deals written to the database",
    "dealscore_score_log_spooled_total": "scored deals that went to the spool",
    "dealscore_score_log_overflow_total": "scored deals sent to the spool because the queue was full",
    "dealscore_score_log_dropped_total": "scored deals lost (the spool could not take them either)",
    "dealscore_score_log_database_up": "1 while the score log reaches its database",
}


class ServiceMetrics:
    """This worker's answers and scores, counted as they happen.

    Requests are counted by the middleware on the event loop, scored deals by a data-plane observer in the
    scoring threads: a lock keeps the counts whole. Each observation is a few dictionary updates (about a
    microsecond), nothing beside a request's own work.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str, int]] = Counter()
        self._buckets: dict[str, list[int]] = {}  # per route: count per bucket (not cumulative), then +Inf
        self._seconds: dict[str, float] = {}
        self._grades: Counter[str] = Counter()
        # Per deal input counter (dealscore_inputs_<series>_total): the inputs a deal did not send, or sent with a
        # level the model never saw. The model's input names, so a bounded set of labels.
        self._inputs: dict[str, Counter[str]] = {"not_sent": Counter(), "unseen": Counter()}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        slot = bisect.bisect_left(LATENCY_BUCKETS, seconds)  # le is inclusive: a value on a bound counts in it
        method = method if method in COUNTED_METHODS else OTHER_METHOD
        with self._lock:
            self._requests[(route, method, status)] += 1
            buckets = self._buckets.get(route)
            if buckets is None:
                buckets = self._buckets[route] = [0] * (len(LATENCY_BUCKETS) + 1)
            buckets[slot] += 1
            self._seconds[route] = self._seconds.get(route, 0.0) + seconds

    def observe_grades(self, grades: Iterable[str]) -> None:
        counted = Counter(grades)
        with self._lock:
            self._grades.update(counted)

    def observe_inputs(self, series: str, per_deal: Iterable[Iterable[str]]) -> None:
        """Per scored deal, the inputs it lacked (series "not_sent", ScoreBatch.not_sent) or sent with a level the
        model never saw ("unseen"). An integration that stops sending a field, or a CRM that renames a product,
        shows as one of these climbing."""
        counted = Counter(name for inputs in per_deal for name in inputs)
        if counted:
            with self._lock:
                self._inputs[series].update(counted)

    def lines(self) -> list[str]:
        with self._lock:
            requests, grades = dict(self._requests), dict(self._grades)
            inputs = {series: dict(counts) for series, counts in self._inputs.items()}
            buckets = {route: list(counts) for route, counts in self._buckets.items()}
            seconds = dict(self._seconds)
        out = _head("dealscore_http_requests_total", "counter")
        out += [f'dealscore_http_requests_total{{route="{_label(route)}",method="{_label(method)}",'
                f'status="{status}"}} {count}' for (route, method, status), count in sorted(requests.items())]
        name = "dealscore_http_request_duration_seconds"
        out += _head(name, "histogram")
        for route, counts in sorted(buckets.items()):
            label, running = _label(route), 0
            for bound, count in zip((*LATENCY_BUCKETS, None), counts, strict=True):
                running += count
                le = "+Inf" if bound is None else repr(bound)
                out.append(f'{name}_bucket{{route="{label}",le="{le}"}} {running}')
            out += [f'{name}_sum{{route="{label}"}} {_number(seconds[route])}',
                    f'{name}_count{{route="{label}"}} {running}']
        out += _head("dealscore_scored_deals_total", "counter")
        out += [f'dealscore_scored_deals_total{{grade="{_label(grade)}"}} {count}'
                for grade, count in sorted(grades.items())]
        for series, by_input in inputs.items():
            name = f"dealscore_inputs_{series}_total"
            out += _head(name, "counter")
            out += [f'{name}{{input="{_label(input_name)}"}} {count}' for input_name, count in sorted(by_input.items())]
        return out


def prometheus_text(model_version: str | None, feedback: Mapping[str, float],
                    service: ServiceMetrics | None = None, refused: bool = False,
                    refused_version: str | None = None, history_end_day: int | None = None,
                    draining: bool = False) -> str:
    """The exposition text: the model, the answers and scores counted so far, then the feedback store's figures
    (named by `Feedback.metrics()` without the prefix, which is added here). `history_end_day`: the model's last
    history day, in days since 1970-01-01; `draining`: the worker drains before its stop (service/draining.py)."""
    lines: list[str] = []

    def add(name: str, value: float, labels: str = "") -> None:
        lines.extend((*_head(name, "counter" if name.endswith("_total") else "gauge"),
                      f"{name}{labels} {_number(value)}"))

    add("dealscore_model_loaded", 1.0 if model_version is not None else 0.0)
    if model_version is not None:
        add("dealscore_model_info", 1.0, f'{{version="{_label(model_version)}"}}')
    if history_end_day is not None:
        # An ageing model says so only through its scores (a year on, known clients read "lost": the scale audit
        # measured mean p_win 0.234 against a realised 0.484); alert on time() minus this.
        add("dealscore_model_history_end_timestamp_seconds", float(history_end_day) * 86_400)
    # A refused version is the registry's live one that this worker would not load (or an unreadable manifest,
    # whose version is unknown: label ""): alert on it.
    add("dealscore_model_refused", 1.0 if refused else 0.0,
        f'{{version="{_label(refused_version or "")}"}}' if refused else "")
    add("dealscore_draining", 1.0 if draining else 0.0)
    if service is not None:
        lines += service.lines()
    for name, value in feedback.items():
        add(name if name.startswith(PREFIX) else PREFIX + name, value)
    return "\n".join(lines) + "\n"


def _head(name: str, kind: str) -> list[str]:
    return [f"# HELP {name} {_HELP.get(name, name)}", f"# TYPE {name} {kind}"]


def _number(value: float) -> str:
    # Exact: "%g" kept 6 digits, so a counter of 1,234,567 read 1.23457e+06 and stood still for thousands.
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
