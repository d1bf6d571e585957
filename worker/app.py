"""Celery entry point: ``celery -A worker.app worker|beat|flower``.

The app itself is configured in ``config.celery``. Loading it through this module
sets Django up and starts the embedded Redis server when ``REDIS_URL`` is unset.
"""

from config.celery import app
from config.runtime import ensure_services

ensure_services()

__all__ = ["app"]
