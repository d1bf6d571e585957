"""Start-up of the services a process needs before it talks to Redis."""

from __future__ import annotations

import django
from django.conf import settings


def ensure_services() -> None:
    """Set Django up and start the embedded Redis server if this project runs one."""
    django.setup()
    embedded = getattr(settings, "EMBEDDED_REDIS", None)
    if embedded is not None:
        embedded.ensure_running()
