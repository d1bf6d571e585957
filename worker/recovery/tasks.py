"""Beat job of the recovery dispatcher: sending the retries kept in the database."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from worker.recovery import scheduling


@shared_task(name="worker.recovery.tasks.send_due_retries")
def send_due_retries() -> int:
    return scheduling.send_due_retries(limit=settings.RECOVERY_SEND_BATCH_SIZE)
