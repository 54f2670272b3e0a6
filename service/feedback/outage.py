"""A database outage as a background loop sees it: up or down, the last error, and how long to wait.

The score log's writer and the feedback store's catch-up both retry a database that went away. Each
failure doubles the wait before the next try, up to MAX_BACKOFF_SECONDS (or the first wait when that is
set longer), so a database down for hours is tried ever less often rather than every few seconds; and only
the change from up to down is news worth a warning (the retries are not).
"""

from __future__ import annotations

MAX_BACKOFF_SECONDS = 60.0


class Outage:
    def __init__(self, first_wait: float) -> None:
        self.first_wait = first_wait
        self.up = False
        self.last_error: str | None = None
        self.wait = first_wait  # before the next try, as the last failure set it
        self.next_wait = first_wait  # what the next failure will set
        # A first wait set above the usual cap is the cap: doubling then never shortens the wait.
        self.cap = max(MAX_BACKOFF_SECONDS, first_wait)

    def recovered(self) -> bool:
        """The database answered. True when it had failed before (time to say it is back)."""
        was_down = self.last_error is not None
        self.up, self.last_error, self.next_wait = True, None, self.first_wait
        return was_down

    def failed(self, reason: str) -> bool:
        """The database failed: sets `wait` and doubles the next one. True when this is news (it was up, or
        this is the first try): warn then, not on every retry."""
        news = self.up or self.last_error is None
        self.wait = self.next_wait
        self.next_wait = min(self.next_wait * 2, self.cap)
        self.up, self.last_error = False, reason
        return news
