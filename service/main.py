"""Running the service: `serve(settings)` (used by `dealscore serve`) or `python -m service.main`."""

from __future__ import annotations

import os
import sys
from typing import Any

from pydantic import SecretStr

from service.logs import configure_logging
from service.settings import Settings

__all__ = ["serve"]

APP = "service.app:create_app_from_env"  # each worker builds its app from the environment


# How long uvicorn's parent waits for a worker it starts on SIGHUP's restart to be up, and for a worker to answer its
# liveness ping. uvicorn's 5 s was too short for ours (imports, the app, the feedback database's migrations check):
# with the two cores busy a new worker took 4.7 s to start, the restart was aborted ("not ready in time; keeping
# worker") and the old workers served on.
WORKER_START_SECONDS = 30


def serve(settings: Settings) -> None:
    """Run uvicorn with `settings.workers` processes, each building its app from the environment."""
    # One native thread per worker: on a 2-core machine two OpenMP threads per predict made scoring
    # ~4x slower, and workers must not fight each other for cores. Set before any worker imports LightGBM.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Workers are separate processes that read their settings from the environment: hand them ours.
    for name, value in settings.model_dump(exclude_none=True).items():
        # str() of a SecretStr is asterisks: the workers need the secret itself.
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        os.environ[f"DEALSCORE_{name.upper()}"] = str(plain)
    configure_logging(settings.log_level)
    from service.http_protocol import BoundedHeadProtocol

    # BoundedHeadProtocol: uvicorn's httptools protocol, which read a request's head with no bound on its size or time.
    options: dict[str, Any] = {"factory": True, "host": settings.host, "port": settings.port,
                               "workers": settings.workers, "log_level": settings.log_level.lower(),
                               "access_log": False, "log_config": None, "server_header": False,
                               "http": BoundedHeadProtocol, "timeout_worker_healthcheck": WORKER_START_SECONDS}
    run_uvicorn(options)


def run_uvicorn(options: dict[str, Any]) -> None:
    """uvicorn.run's own paths, with uvicorn's server answering the requests a forced quit cuts off, and for several
    workers a parent that stops listening before it stops them (service/supervisor.py): uvicorn's kept accepting
    connections into the backlog, and reset them, meanwhile."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from service.supervisor import ServiceServer, WorkerSupervisor

    config = uvicorn.Config(APP, **options)
    if config.workers == 1:
        server = ServiceServer(config)
        try:
            server.run()
        except KeyboardInterrupt:  # as uvicorn.run: a Ctrl-C that reaches the process is a stop, not a failure
            pass
        if not server.started:
            sys.exit(STARTUP_FAILURE)  # as uvicorn.run: the app did not start (its lifespan failed)
        return
    try:
        WorkerSupervisor(config, sockets=[config.bind_socket()]).run()
    except KeyboardInterrupt:
        pass


def check_listening_address(host: str, port: int) -> None:
    """Refuse, in one line, an address the server could not listen on. uvicorn found a busy port only after
    the app had started (the feedback database migrated, the model loading), logged it among JSON lines and
    exited 3 with no line of ours. (Another process can still take the port in between: uvicorn then fails.)
    """
    import errno
    import socket

    from model.errors import DealscoreError

    if not host:  # uvicorn listens on every interface; nothing to resolve first
        return
    where = f"port {port} on {host}"
    try:
        # Every address the name resolves to, as asyncio binds them all (IPv6 ones IPv6-only, as it does).
        for family, kind, protocol, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            with socket.socket(family, kind, protocol) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
    except socket.gaierror as exc:
        raise DealscoreError(f"host (--host or DEALSCORE_HOST): expected an address to listen on, got {host!r} "
                             f"({exc.strerror})") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise DealscoreError(f"{where}: expected a free port, got one another process listens on (another "
                                 "dealscore serve? choose --port or DEALSCORE_PORT)") from None
        raise DealscoreError(f"{where}: expected an address this process may listen on, got "
                             f"{exc.strerror or type(exc).__name__}") from None


def main() -> int:
    """`python -m service.main` (the container's command): a bad setting is one line on stderr and exit 2."""
    from model.errors import DealscoreError
    from service.settings import settings_from

    try:
        settings = settings_from()
        check_listening_address(settings.host, settings.port)
    except DealscoreError as exc:
        print(f"dealscore service: {exc.message}", file=sys.stderr)  # noqa: T201 (before logging is set up)
        return 2
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
