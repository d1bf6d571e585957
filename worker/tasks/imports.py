"""Celery tasks of the catalogue import. Each takes ids and calls a plain function."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from freesport.exchange.models import ExchangeSession
from worker.imports import catalog

logger = logging.getLogger("worker.tasks")

# A running session with no finish after this long lost its worker for good.
STALE_AFTER = timedelta(hours=6)


@shared_task(name="worker.tasks.imports.import_file", acks_late=True)
def import_file(session_id: int, file_id: int) -> str:
    return catalog.import_file(session_id, file_id)


@shared_task(name="worker.tasks.imports.finish_import", acks_late=True)
def finish_import(session_id: int) -> str:
    return catalog.finish_import(session_id)


@shared_task(name="worker.tasks.imports.fail_stale_sessions")
def fail_stale_sessions() -> int:
    """Mark sessions stuck in running or queued as failed, so operators see them."""
    cutoff = timezone.now() - STALE_AFTER
    stale = ExchangeSession.objects.filter(
        status__in=[ExchangeSession.Status.RUNNING, ExchangeSession.Status.QUEUED],
        created_at__lt=cutoff,
    )
    count = stale.update(
        status=ExchangeSession.Status.FAILED,
        error="no progress for 6 hours; the worker running it stopped",
        finished_at=timezone.now(),
    )
    if count:
        logger.warning("Marked %d stale exchange sessions as failed", count)
    return count
