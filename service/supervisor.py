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

Every worker (and the one process of `DEALSCORE_WORKERS=1`) runs ServiceServer: uvicorn's server, which on a forced
quit (a second Ctrl-C, or SIGINT during the graceful stop) left the requests still running to be cancelled once its
serve() had returned, each answered with a plain-text 500, or, when the stop had begun with a SIGTERM that uvicorn
then raised again, not answered at all: the process died first. It cancels them itself before it returns, and the
service's middleware answers each with the error envelope (503 `stopping`, Retry-After). It then makes the writes
the skipped lifespan shutdown would have made (service/last_writes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import Generator
from types import FrameType

import uvicorn
from uvicorn.supervisors import Multiprocess, multiprocess

from service import draining
from service.last_writes import write_now
from service.logs import LOGGER_NAME

__all__ = ["ServiceServer", "WorkerSupervisor", "end_with_parent"]

logger = logging.getLogger(LOGGER_NAME)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# How long the requests a forced quit cuts off have to send their 503 (one write each; the rest is not waited for).
CUT_OFF_ANSWER_SECONDS = 1.0
# What the parent of several workers sends a worker to stop at once, gracefully, drain or not: the parent stopped by a
# Ctrl-C, signalled again during the drain, or retiring one worker while the others serve (a SIGHUP's restart).
STOP_NOW_SIGNAL = signal.SIGUSR2


class ServiceServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_seconds: float | None = None, supervised: bool = False) -> None:
        super().__init__(config)
        if drain_seconds is None:  # a worker of several: its settings come from the environment, as its app's
            from service.settings import Settings

            drain_seconds = Settings().drain_seconds
        self.drain_seconds = drain_seconds
        self.supervised = supervised  # a worker of WorkerSupervisor's
        spawner = multiprocessing.parent_process() if supervised else None
        self._parent_pid = spawner.pid if spawner is not None else None  # the parent that relays a second signal
        self._drain_told = False
        draining.reset()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """A first SIGTERM with DEALSCORE_DRAIN_SECONDS set begins the drain (service/draining.py) instead of the
        stop; anything else (a Ctrl-C, a second SIGTERM) stops as uvicorn does, a drain under way included."""
        # (Not before readiness has answered 200: no balancer sends to it yet, and the stop should not wait. The
        # server starts, and answers 503 `not_ready`, while the model is still loading.)
        if sig == signal.SIGTERM and self.drain_seconds > 0 and self.started and draining.has_answered_ready() \
                and not self.should_exit:
            if draining.seconds_left() is None:
                draining.begin(self.drain_seconds)
                return
            if self.supervised and os.getppid() == self._parent_pid:
                # A worker of several gets a SIGTERM twice when the whole group is signalled (systemd's default
                # KillMode, kill -- -PGID): its own, then its parent's, which had ended the drain within 0.3 s.
                # Its parent, signalled again, ends it with STOP_NOW_SIGNAL. An orphan has no parent to do so: a
                # parent killed during the drain sends each worker a SIGTERM (end_with_parent), which ends it.
                return
        super().handle_exit(sig, frame)

    def stop_now(self, sig: int, frame: FrameType | None) -> None:
        """STOP_NOW_SIGNAL (from the parent of several workers): stop gracefully, without a drain or ending it; as
        a SIGTERM, raised again at the end."""
        if not self.should_exit:
            super().handle_exit(signal.SIGTERM, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if not self.supervised or threading.current_thread() is not threading.main_thread():
            with super().capture_signals():
                yield
            return
        previous = signal.signal(STOP_NOW_SIGNAL, self.stop_now)
        try:
            with super().capture_signals():
                yield
        finally:
            signal.signal(STOP_NOW_SIGNAL, previous)

    async def on_tick(self, counter: int) -> bool:
        left = draining.seconds_left()
        if left is not None and not self._drain_told:  # told here, not in the signal handler (a logging lock)
            self._drain_told = True
            logger.info("SIGTERM: draining for %g s (DEALSCORE_DRAIN_SECONDS), /health/ready answers 503 meanwhile; "
                        "Ctrl-C or another SIGTERM stops at once", self.drain_seconds)
        if left == 0.0 and not self.should_exit:
            logger.info("drained for %g s (DEALSCORE_DRAIN_SECONDS): stopping", self.drain_seconds)
            super().handle_exit(signal.SIGTERM, None)  # the signal that began the drain, raised again at the end
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self.force_exit:
            await cut_off(self.server_state.tasks)
            # The lifespan shutdown was skipped: the score log still in memory is written here, not left to atexit,
            # which a SIGTERM raised again would skip (service/last_writes.py).
            await asyncio.to_thread(write_now)


async def cut_off(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel the requests still running and give them CUT_OFF_ANSWER_SECONDS to answer (a cancelled request is
    answered 503 by service.middleware): before the server's serve() returns and uvicorn raises the stop's signals
    again, which ends the process at once when one was a SIGTERM."""
    running = [task for task in tasks if not task.done()]
    for task in running:
        task.cancel()
    if running:
        await asyncio.wait(running, timeout=CUT_OFF_ANSWER_SECONDS)


_SERVER_MADE = threading.Lock()  # a module's, not the process object's: that is pickled into the worker


class WorkerProcess(multiprocess.Process):
    """uvicorn's worker process, serving with ServiceServer."""

    @property
    def server(self) -> uvicorn.Server:
        # Under a lock: uvicorn's ping thread asks for it too, from the worker's first moment when the parent pinged it
        # while it started (a SIGHUP's restart does). Both made one; the ping thread's, never run, could be the one
        # kept, its `started` False for good, and the restart was aborted ("not ready in time") a run in a few.
        with _SERVER_MADE:
            if self._server is None:
                self._server = ServiceServer(config=self.config, supervised=True)
            return self._server

    def terminate(self, sig: int = STOP_NOW_SIGNAL) -> None:
        """Ask the worker to stop with `sig`: by default at once, without a drain (uvicorn retires one worker so,
        on a SIGHUP's restart or a SIGTTOU, while the others serve on: its drain answered /health/ready 503 on the
        shared port, one poll in two or three, and held the parent's loop for the whole drain)."""
        if os.name == "nt" or self.process.exitcode is not None or self.process.pid is None:
            super().terminate()
            return
        os.kill(self.process.pid, sig)
        logging.getLogger("uvicorn.error").info(f"Terminated child process [{self.process.pid}]")
        self.parent_conn.close()
        self.child_conn.close()


class WorkerSupervisor(Multiprocess):
    drain = True  # the stop began with a SIGTERM: each worker drains (DEALSCORE_DRAIN_SECONDS) first

    def run(self) -> None:
        # Multiprocess makes its workers (at start, on restarts, on SIGTTIN) from its module's Process, with no other
        # hook: this parent process makes ours.
        multiprocess.Process = WorkerProcess  # type: ignore[misc]
        super().run()

    def handle_int(self) -> None:
        self.drain = False  # a Ctrl-C to the parent alone stops the workers at once (it had begun their drain)
        super().handle_int()

    def handle_term(self) -> None:
        # The parent reads its signals every 0.5 s, all at once: a SIGTERM read with the one that began the stop is
        # the second SIGTERM that join_all relays when it comes later, and ends the drain too.
        if self.should_exit.is_set():
            self.drain = False
        super().handle_term()

    def terminate_all(self) -> None:
        """Close the parent's copy of the listening socket, then ask every worker to shut down gracefully: with a
        SIGTERM (a drain first, when set), or at once after a Ctrl-C."""
        for sock in self.sockets:
            sock.close()
        for process in self.processes:
            if isinstance(process, WorkerProcess):
                process.terminate(signal.SIGTERM if self.drain else STOP_NOW_SIGNAL)
            else:
                process.terminate()

    def join_all(self) -> None:
        """Wait for the workers to stop. A SIGTERM or a Ctrl-C to the parent meanwhile ends their drain: it was
        queued and never read, the workers draining on."""
        for process in self.processes:
            while process.process.is_alive():
                process.process.join(0.2)
                if any(sig in (signal.SIGINT, signal.SIGTERM) for sig in self.signal_queue):
                    self.signal_queue.clear()
                    for other in self.processes:
                        if other.process.exitcode is None and other.pid is not None:
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(other.pid, STOP_NOW_SIGNAL)
        super().join_all()


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
