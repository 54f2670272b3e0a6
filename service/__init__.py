"""The HTTP service: FastAPI app factory, routes, schemas derived from the data contract, one error envelope."""

from service.app import create_app, create_app_from_env
from service.settings import Settings

__all__ = ["Settings", "create_app", "create_app_from_env"]
