"""The parent process of `DEALSCORE_WORKERS` > 1: uvicorn's supervisor, which stops listening before it stops the
workers.

uvicorn's parent binds the listening socket, hands it to each worker and keeps its own copy open until it exits,
after the last worker has finished its shutdown. A worker stops accepting when its shutdown begins, so in between
the kernel still completed every new connection into the socket's backlog, where no process would accept it, and
reset it when the parent exited: a caller's request was sent and then reset, not refused, and a proxy cannot tell
that from a request that was scored and lost its answer. (A stop audit: SIGTERM to the parent of 2 workers under
8 connections of load reset all 8 requests sent in that window; one worker, which closes its own socket, refused
them.) Closing the parent's copy first leaves the socket to the workers: once the last one stops accepting it is
gone, and a new connection is refused at once, as with one worker.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys

from uvicorn.supervisors import Multiprocess

__all__ = ["WorkerSupervisor", "end_with_parent"]

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class WorkerSupervisor(Multiprocess):
    def terminate_all(self) -> None:
        """Close the parent's copy of the listening socket, then ask every worker to shut down gracefully."""
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def end_with_parent() -> None:
    """In a worker: be sent SIGTERM, and so shut down gracefully (its answers finished, its score log written),
    when the parent dies. A parent killed with SIGKILL had left its workers serving the old code and model and
    holding the port, so that the next `dealscore serve` was refused (a stop audit). Linux only (prctl's
    PR_SET_PDEATHSIG); elsewhere, or where the call fails, nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    # The process that started this one (uvicorn spawns its workers with multiprocessing): os.getppid() read
    # here was already init's (or a subreaper's) when the parent died during the seconds a worker spends
    # importing before its app is built, and the worker then served on, orphaned.
    spawner = multiprocessing.parent_process()
    parent = spawner.pid if spawner is not None and spawner.pid is not None else os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took hold: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)
