"""The drain before a stop (DEALSCORE_DRAIN_SECONDS): after a SIGTERM the process goes on serving for that long while
GET /health/ready answers 503 `stopping`, so that a load balancer polling it takes the instance out of rotation
before the listener closes; then the graceful stop begins (service.supervisor.ServiceServer).

Without it, readiness answered 200 until the listener closed, about 40 ms after the signal (a stop audit): a
balancer that had not yet noticed sent requests that were refused, and the only remedy was outside the service (a
pre-stop hook, or a sleep before the signal), which plain Docker and many balancers do not offer.

One drain per process (a server runs one per process), read from any thread.
"""

from __future__ import annotations

import time

__all__ = ["begin", "end", "seconds_left"]

_until: float | None = None


def begin(seconds: float) -> None:
    """Start draining: the stop is due `seconds` from now."""
    global _until
    _until = time.monotonic() + seconds


def end() -> None:
    """Not draining (again): the drain is over, or was never begun (tests start several servers in one process)."""
    global _until
    _until = None


def seconds_left() -> float | None:
    """Seconds until the drain's stop is due (0 once it is), or None when not draining."""
    until = _until
    return None if until is None else max(until - time.monotonic(), 0.0)
