"""Integration log rows: one per failed task, updated by every decision.

Celery keeps the task id across retries, so the row of a task id gathers the
failures of the first run and of every retry, with one history entry per
decision. Everything stored is scrubbed with the target's personal values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from freesport.exceptions import FreesportError
from freesport.integration.choices import ErrorKind
from freesport.integration.models import IntegrationLog
from freesport.integration.scrubbing import scrub
from worker.recovery.arguments import is_record_id
from worker.recovery.decisions import Decision, Target
from worker.recovery.fingerprint import Fingerprint


def qualified_name(error: BaseException) -> str:
    error_class = type(error)
    return f"{error_class.__module__}.{error_class.__qualname__}"


def error_details(error: BaseException) -> dict[str, Any]:
    """Return the error's code, details and Retry-After, and nothing else of it."""
    details: dict[str, Any] = {}
    if isinstance(error, FreesportError):
        details["code"] = error.code
        details.update(error.details)
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        details["retry_after_s"] = retry_after
    return details


def record_failure(
    *,
    task_name: str,
    task_id: str,
    task_args: Sequence[Any],
    operation: str,
    kind: ErrorKind,
    error: BaseException,
    message: str,
    fingerprint: Fingerprint,
    target: Target,
) -> IntegrationLog:
    """Create or update the row of ``task_id`` with this failure."""
    incident = None
    if task_id:
        incident = (
            IntegrationLog.objects.filter(task_id=task_id).order_by("-pk").first()
        )
    if incident is None:
        incident = IntegrationLog(task_id=task_id, task_name=task_name)
    known = target.personal_values
    incident.operation = operation
    incident.error_type = kind
    incident.exception_type = qualified_name(error)
    incident.message = message
    incident.details = scrub(error_details(error), known)
    # Record ids stay readable. Anything else, such as a payload sent by
    # mistake, is scrubbed like the details.
    args = list(task_args)
    ids_only = all(is_record_id(arg) for arg in args)
    incident.task_args = args if ids_only else scrub(args, known)
    incident.object_ref = target.object_ref
    incident.fingerprint = fingerprint.digest
    incident.fingerprint_parts = list(fingerprint.parts)
    incident.status = IntegrationLog.Status.ERROR
    incident.resolved_at = None
    incident.save()
    return incident


def record_decision(
    incident: IntegrationLog, decision: Decision, *, attempt: int, kind: ErrorKind
) -> None:
    now = timezone.now()
    entry: dict[str, Any] = {
        "attempt": attempt,
        "error_type": kind,
        "exception_type": incident.exception_type,
        "strategy": decision.strategy,
        "result": decision.result,
        "at": now.isoformat(),
    }
    if decision.backoff is not None:
        entry["countdown_s"] = round(decision.backoff.countdown_s, 3)
        entry["ceiling_s"] = round(decision.backoff.ceiling_s, 3)
        entry["retry_after_s"] = decision.backoff.retry_after_s
        incident.retry_count += 1
    incident.history = [*incident.history, entry]
    incident.strategy = decision.strategy
    incident.status = decision.status
    incident.result = decision.result
    if decision.admins_notified:
        incident.admins_notified_at = now
    if decision.status == IntegrationLog.Status.RECOVERED:
        incident.resolved_at = now
    incident.save()


def note_result(incident: IntegrationLog, result: str) -> None:
    """Replace the result of the last decision, such as a retry kept in the database."""
    incident.result = result
    if incident.history:
        incident.history[-1]["result"] = result
    incident.save(update_fields=["result", "history", "updated_at"])


def mark_recovered(task_id: str, attempt: int) -> int:
    """Mark the row of a task that succeeded after failing, and return rows changed."""
    if not task_id:
        return 0
    now = timezone.now()
    return IntegrationLog.objects.filter(
        task_id=task_id, status=IntegrationLog.Status.ERROR
    ).update(
        status=IntegrationLog.Status.RECOVERED,
        resolved_at=now,
        updated_at=now,
        result=f"succeeded on attempt {attempt}",
    )
