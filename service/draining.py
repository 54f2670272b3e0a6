"""The drain before a stop (DEALSCORE_DRAIN_SECONDS): after a SIGTERM the process goes on serving for that long while
GET /health/ready answers 503 `stopping`, so that a load balancer polling it takes the instance out of rotation
before the listener closes; then the graceful stop begins (service.supervisor.ServiceServer).

Without it, readiness answered 200 until the listener closed, about 40 ms after the signal (a stop audit): a
balancer that had not yet noticed sent requests that were refused, and the only remedy was outside the service (a
pre-stop hook, or a sleep before the signal), which plain Docker and many balancers do not offer.

One drain per process (a server runs one per process), read from any thread. Only once readiness has answered 200:
before that no balancer sends to the process (the model still loading after the server has started, say), and a
SIGTERM stops it at once.
"""

from __future__ import annotations

import time

__all__ = ["answered_ready", "begin", "end", "has_answered_ready", "reset", "seconds_left"]

_until: float | None = None
_ready_answered = False


def begin(seconds: float) -> None:
    """Start draining: the stop is due `seconds` from now."""
    global _until
    _until = time.monotonic() + seconds


def end() -> None:
    """Not draining (again): the drain is over, or was never begun (tests start several servers in one process)."""
    global _until
    _until = None


def answered_ready() -> None:
    """GET /health/ready answered 200: a balancer may now send requests here, and a SIGTERM drains first."""
    global _ready_answered
    _ready_answered = True


def has_answered_ready() -> bool:
    return _ready_answered


def reset() -> None:
    """A new server in this process (tests start several): not draining, readiness not yet answered."""
    global _ready_answered
    end()
    _ready_answered = False


def seconds_left() -> float | None:
    """Seconds until the drain's stop is due (0 once it is), or None when not draining."""
    until = _until
    return None if until is None else max(until - time.monotonic(), 0.0)
