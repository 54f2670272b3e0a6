"""Writes a process owes before it ends (the score log it holds in memory: scores already answered), run however it
ends short of SIGKILL.

A graceful stop makes them in the app's lifespan shutdown. uvicorn's forced quit (a second Ctrl-C, or one during the
graceful stop) skips that shutdown; Python runs them at exit (atexit), but only when the process ends by returning:
when the stop began with a SIGTERM, uvicorn raises it again once it has served, and the default SIGTERM ends the
process on the spot, atexit not run (a stop audit: 20 scores answered, 0 in the score log). So the server runs them
itself before it raises the signals again (service.supervisor.ServiceServer).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable

__all__ = ["owe", "paid", "write_now"]

log = logging.getLogger("dealscore.service")
_owed: list[Callable[[], None]] = []
_lock = threading.Lock()


def owe(write: Callable[[], None]) -> None:
    """Run `write` before the process ends, unless `paid(write)` is called first."""
    with _lock:
        _owed.append(write)
    atexit.register(write)


def paid(write: Callable[[], None]) -> None:
    """`write` was made (or is no longer owed): the process need not run it at its end."""
    with _lock:
        if write in _owed:
            _owed.remove(write)
    atexit.unregister(write)


def write_now() -> None:
    """Make every write still owed, the latest owed first (as atexit would); each is then paid."""
    with _lock:
        owed = list(reversed(_owed))
    for write in owed:
        paid(write)
        try:
            write()
        except Exception:  # as atexit: one failed write does not keep the others from being made
            log.exception("a write owed at exit failed")
