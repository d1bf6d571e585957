"""Sending retries to the broker, or keeping them in the database until due.

A retry normally goes to the broker with ``Task.retry(countdown=...)``, and the
worker that receives it keeps it in memory until the countdown ends. Two kinds
of retry go to the ``PendingRetry`` table instead, and the
``send_due_retries`` beat job sends them when they are due:

- a countdown longer than ``RECOVERY_MAX_COUNTDOWN_S``, so that no worker holds
  a far-off task in memory, and no held task outlives the broker's visibility
  timeout (after which Redis would deliver it a second time);
- a retry the broker rejected because Redis is down: the attempt is kept in the
  database, never lost.

The task id and Celery's retry counter are kept, so the sent message continues
the same task and its integration log row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from celery import Task
from celery.exceptions import Ignore, Reject, Retry
from django.conf import settings
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerOperationalError

from freesport.integration.models import PendingRetry
from worker.recovery.classifier import DATABASE_OUTAGES
from worker.recovery.retry_policy import Backoff

logger = logging.getLogger("worker.recovery")

BROKER_ERRORS = (BrokerOperationalError, redis.ConnectionError, redis.TimeoutError)
# A row left in "sending" this long by a process that died is sent again.
STALE_SENDING_AFTER = timedelta(minutes=10)


class RetryScheduled(Exception):
    """Reason Celery logs for a retry: kinds and ids only, never the error text."""


@dataclass(frozen=True)
class Scheduled:
    """Outcome of scheduling a retry: the exception the task raises, and the row."""

    signal: Retry | Ignore
    pending: PendingRetry | None = None


def is_broker_error(error: object) -> bool:
    return isinstance(error, BROKER_ERRORS)


def schedule_retry(task: Task[Any, Any], backoff: Backoff, reason: str) -> Scheduled:
    """Send the task's retry to the broker, or store it as a ``PendingRetry``."""
    max_countdown = float(settings.RECOVERY_MAX_COUNTDOWN_S)
    if backoff.countdown_s > max_countdown:
        try:
            pending = store(task, backoff.countdown_s, PendingRetry.Reason.LONG_DELAY)
        except DATABASE_OUTAGES:
            logger.exception(
                "Task %s[%s]: the %.0f s retry could not be stored, so it is sent "
                "with the %.0f s maximum countdown instead",
                task.name, task.request.id, backoff.countdown_s, max_countdown,
            )  # fmt: skip
            backoff = Backoff(max_countdown, backoff.ceiling_s, backoff.retry_after_s)
        else:
            return Scheduled(Ignore(), pending)
    try:
        retry = task.retry(
            countdown=backoff.countdown_s, exc=RetryScheduled(reason), throw=False
        )
    except Reject as rejected:
        if not is_broker_error(getattr(rejected, "reason", None)):
            raise
        return Scheduled(Ignore(), store_after_broker_failure(task, backoff, rejected))
    return Scheduled(retry)


def store_after_broker_failure(
    task: Task[Any, Any], backoff: Backoff, rejected: Reject
) -> PendingRetry:
    try:
        pending = store(
            task,
            backoff.countdown_s,
            PendingRetry.Reason.BROKER_UNAVAILABLE,
            error=getattr(rejected, "reason", None),
        )
    except DATABASE_OUTAGES:
        # Neither the broker nor the database takes the retry. The message stays
        # unacknowledged in Redis, which delivers it again after the visibility
        # timeout if Redis kept its data.
        logger.exception(
            "Task %s[%s]: the broker and the database both rejected the retry",
            task.name,
            task.request.id,
        )
        raise Reject(getattr(rejected, "reason", None), requeue=True) from None
    return pending


def store(
    task: Task[Any, Any],
    countdown_s: float,
    reason: PendingRetry.Reason,
    error: object = None,
) -> PendingRetry:
    request = task.request
    delivery = request.delivery_info or {}
    return PendingRetry.objects.create(
        task_name=task.name,
        task_id=request.id or "",
        args=list(request.args or []),
        kwargs=dict(request.kwargs or {}),
        queue=delivery.get("routing_key") or "",
        retries=request.retries + 1,
        due_at=timezone.now() + timedelta(seconds=countdown_s),
        reason=reason,
        last_error=type(error).__name__ if error is not None else "",
    )


def send_due_retries(limit: int = 100) -> int:
    """Send up to ``limit`` due pending retries to the broker and return how many.

    Each row is claimed with a conditional UPDATE, so two beat runs never send
    one row twice. The run stops at the first broker error and leaves the rest
    pending for the next run.
    """
    from config.celery import app

    now = timezone.now()
    PendingRetry.objects.filter(
        state=PendingRetry.State.SENDING, claimed_at__lt=now - STALE_SENDING_AFTER
    ).update(state=PendingRetry.State.PENDING)
    due = list(
        PendingRetry.objects.filter(state=PendingRetry.State.PENDING, due_at__lte=now)
        .order_by("due_at")
        .values_list("pk", flat=True)[:limit]
    )
    sent = 0
    for pk in due:
        claimed = PendingRetry.objects.filter(
            pk=pk, state=PendingRetry.State.PENDING
        ).update(
            state=PendingRetry.State.SENDING,
            claimed_at=timezone.now(),
            publish_attempts=F("publish_attempts") + 1,
        )
        if not claimed:
            continue
        row = PendingRetry.objects.get(pk=pk)
        try:
            app.send_task(
                row.task_name,
                args=row.args,
                kwargs=row.kwargs,
                task_id=row.task_id or None,
                queue=row.queue or None,
                retries=row.retries,
            )
        except BROKER_ERRORS as error:
            PendingRetry.objects.filter(pk=pk).update(
                state=PendingRetry.State.PENDING,
                # The type only: a broker error can quote the broker URL.
                last_error=type(error).__name__,
            )
            logger.warning(
                "Pending retry %d of %s[%s] not sent (%s). %d due retries wait for "
                "the next run",
                pk, row.task_name, row.task_id, type(error).__name__, len(due) - sent,
            )  # fmt: skip
            break
        PendingRetry.objects.filter(pk=pk).update(
            state=PendingRetry.State.SENT, sent_at=timezone.now()
        )
        sent += 1
        logger.info(
            "Sent pending retry %d of %s[%s] (%s)",
            pk, row.task_name, row.task_id, row.reason,
        )  # fmt: skip
    return sent
