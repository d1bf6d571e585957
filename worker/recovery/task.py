"""``IntegrationTask``: the Celery base class of every task that talks to 1C.

- Every exception of a run goes through the recovery dispatcher, which decides
  to retry, fall back, skip, open a manual task or escalate.
- Arguments are record ids (integers or UUIDs), checked when the task is sent
  and when it runs: payloads and personal data never enter a Celery message,
  so they never reach the broker, Flower or Celery's own error messages.
- ``acks_late`` with ``reject_on_worker_lost``: a run whose worker process dies
  is delivered again, so tasks must be idempotent (exports send an
  Idempotency-Key).
- Soft and hard time limits come from ``INTEGRATION_TASK_SOFT_TIME_LIMIT_S`` and
  ``INTEGRATION_TASK_TIME_LIMIT_S``; a system check keeps them, plus the
  longest countdown, below the broker's visibility timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from celery import Task
from celery.exceptions import Ignore, Reject, Retry
from django.conf import settings
from django.db import DatabaseError

from freesport.integration import manual_tasks
from freesport.integration.choices import Operation
from worker.recovery import dispatcher, incidents
from worker.recovery.arguments import check_id_arguments
from worker.recovery.breaker import breaker_for, open_circuit_error
from worker.recovery.decisions import Decision, Failure, Target

logger = logging.getLogger("worker.recovery")

CELERY_SIGNALS = (Retry, Ignore, Reject)


class IntegrationTask(Task):
    """Base class of integration tasks, whose subclasses set ``operation`` and hooks."""

    operation: ClassVar[str] = Operation.OTHER
    acks_late = True
    reject_on_worker_lost = True
    # The recovery policy counts attempts (RECOVERY_MAX_ATTEMPTS), not Celery.
    max_retries = None
    soft_time_limit = settings.INTEGRATION_TASK_SOFT_TIME_LIMIT_S
    time_limit = settings.INTEGRATION_TASK_TIME_LIMIT_S

    # Sending.

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *positional: Any,
        **options: Any,
    ) -> Any:
        check_id_arguments(self.name, args or (), kwargs or {})
        return super().apply_async(
            tuple(args) if args is not None else None,
            dict(kwargs) if kwargs is not None else None,
            *positional,
            **options,
        )

    # Running.

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The worker pushed the request before this call; Celery's own __call__
        # would push an empty one, so the run is called directly.
        try:
            check_id_arguments(self.name, args, kwargs)
            breaker = breaker_for(self.operation)
            if not breaker.allow():
                raise open_circuit_error(self.operation, breaker)
            result = self.run(*args, **kwargs)
        except CELERY_SIGNALS:
            raise
        except Exception as error:
            failed = error
        else:
            self.after_success()
            return result
        # Outside the except block, so neither the retry nor a failure of the
        # dispatcher carries the original exception (and its message) along.
        signal = self.dispatch_failure(failed)
        raise signal from None

    def dispatch_failure(self, error: Exception) -> Retry | Ignore:
        try:
            return dispatcher.dispatch(self, error)
        except CELERY_SIGNALS:
            raise
        except Exception:
            logger.exception(
                "Recovery of task %s[%s] failed, so the task fails with the "
                "dispatcher's error",
                self.name,
                self.request.id,
            )
            raise

    def after_success(self) -> None:
        """Report the success to the breaker, the integration log and manual tasks."""
        task_id = self.request.id or ""
        attempt = self.request.retries + 1
        breaker_for(self.operation).record_success()
        try:
            incidents.mark_recovered(task_id, attempt)
            manual_tasks.settle_replay(task_id, succeeded=True)
        except DatabaseError as error:
            logger.error(
                "Task %s[%s] succeeded, but its integration log could not be "
                "updated (%s)",
                self.name,
                task_id,
                type(error).__name__,
            )

    # Hooks for subclasses.

    def describe_target(self, *args: Any, **kwargs: Any) -> Target:
        """Return the record the run works on. Override it to load the row by id."""
        return Target()

    def safe_target(self, *args: Any, **kwargs: Any) -> Target:
        """Return ``describe_target``, or an empty target when that fails."""
        try:
            return self.describe_target(*args, **kwargs)
        except Exception as error:
            logger.warning(
                "Task %s[%s]: its record could not be loaded for the integration "
                "log (%s)",
                self.name,
                self.request.id,
                type(error).__name__,
            )
            return Target()

    def refresh_credentials(self) -> None:
        """Re-authenticate with the external system, where a subclass can."""
        raise NotImplementedError(f"{self.name} cannot refresh credentials")

    def write_fallback_document(self, failure: Failure) -> Path:
        """Write the run's document for file exchange and return its path."""
        raise NotImplementedError(f"{self.name} has no file fallback")

    def on_recovery(self, failure: Failure, decision: Decision) -> None:
        """Update the task's own records after a decision, such as an outbox state."""
