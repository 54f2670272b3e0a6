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

from uvicorn.supervisors import Multiprocess

__all__ = ["WorkerSupervisor"]


class WorkerSupervisor(Multiprocess):
    def terminate_all(self) -> None:
        """Close the parent's copy of the listening socket, then ask every worker to shut down gracefully."""
        for sock in self.sockets:
            sock.close()
        super().terminate_all()
