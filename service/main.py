"""Running the service: `serve(settings)` (used by `dealscore serve`) or `python -m service.main`."""

from __future__ import annotations

import os
import sys

from pydantic import SecretStr

from service.logs import configure_logging
from service.settings import Settings

__all__ = ["serve"]


def serve(settings: Settings) -> None:
    """Run uvicorn with `settings.workers` processes, each building its app from the environment."""
    import uvicorn

    # One native thread per worker: on a 2-core machine two OpenMP threads per predict made scoring
    # ~4x slower, and workers must not fight each other for cores. Set before any worker imports LightGBM.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Workers are separate processes that read their settings from the environment: hand them ours.
    for name, value in settings.model_dump(exclude_none=True).items():
        # str() of a SecretStr is asterisks: the workers need the secret itself.
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        os.environ[f"DEALSCORE_{name.upper()}"] = str(plain)
    configure_logging(settings.log_level)
    uvicorn.run("service.app:create_app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level=settings.log_level.lower(), access_log=False,
                log_config=None, server_header=False)


def main() -> int:
    """`python -m service.main` (the container's command): a bad setting is one line on stderr and exit 2."""
    from model.errors import DealscoreError
    from service.settings import settings_from

    try:
        settings = settings_from()
    except DealscoreError as exc:
        print(f"dealscore service: {exc.message}", file=sys.stderr)  # noqa: T201 (before logging is set up)
        return 2
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
