"""The recovery dispatcher: from a failed run to a recorded, logged decision.

For every exception an integration task raises, ``dispatch``:

1. classifies it into an error kind and computes its error group;
2. records the failure in the task's integration log row;
3. calls the strategy that the table names for the kind, which decides;
4. records the decision, lets the task update its own state, schedules the
   retry if there is one, and writes one log line;
5. returns the Celery exception the task raises: ``Retry``, or ``Ignore`` for a
   run that ended (its outcome is in the integration log, not in Celery).

The database can be down too. Then nothing is recorded, every kind is retried
(a retry needs only the broker), and the log line still records what happened.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from celery.exceptions import Ignore, Retry

from freesport.integration import manual_tasks
from freesport.integration.choices import ErrorKind
from freesport.integration.models import IntegrationLog
from freesport.integration.scrubbing import scrub_text
from worker.recovery import incidents, scheduling, table
from worker.recovery.breaker import CircuitOpenError, breaker_for
from worker.recovery.classifier import DATABASE_OUTAGES, classify
from worker.recovery.decisions import Decision, Failure, Outcome, Target
from worker.recovery.fingerprint import Fingerprint, fingerprint_for
from worker.recovery.strategies import (
    CircuitBreakerFallback,
    RetryUntilRecovered,
    Strategy,
)

if TYPE_CHECKING:
    from worker.recovery.task import IntegrationTask

logger = logging.getLogger("worker.recovery")

# Failures that tell a circuit breaker 1C is unavailable.
BREAKER_KINDS = frozenset({ErrorKind.CONNECTION, ErrorKind.TIMEOUT})
# Failures that prove 1C answered: for the breaker they are successful calls.
ANSWERED_KINDS = frozenset(
    {ErrorKind.BUSINESS, ErrorKind.DATA_FORMAT, ErrorKind.AUTHENTICATION}
)
LOG_LEVELS = {
    Outcome.RETRY: logging.WARNING,
    Outcome.FILE_WRITTEN: logging.WARNING,
    Outcome.SKIPPED: logging.WARNING,
    Outcome.MANUAL: logging.ERROR,
    Outcome.ESCALATED: logging.ERROR,
}


def dispatch(task: IntegrationTask, error: Exception) -> Retry | Ignore:
    """Recover from ``error`` raised by a run of ``task``, and return what to raise."""
    request = task.request
    attempt = request.retries + 1
    kind = classify(error)
    target = task.safe_target(*(request.args or ()), **(request.kwargs or {}))
    message = scrub_text(str(error), target.personal_values)
    fingerprint = fingerprint_for(task.operation, kind, error, message)
    breaker = breaker_for(task.operation)
    if kind in BREAKER_KINDS:
        breaker.record_failure(error)
    elif kind in ANSWERED_KINDS:
        # 1C answered, so it is up: this also frees a half-open trial slot.
        breaker.record_success()

    incident = _record_failure(task, kind, error, message, fingerprint, target)
    failure = Failure(
        task=task,
        error=error,
        kind=kind,
        attempt=attempt,
        fingerprint=fingerprint,
        message=message,
        target=target,
        incident=incident,
    )
    decision = _decide(failure)
    if incident is not None:
        _guarded(
            incidents.record_decision, incident, decision, attempt=attempt, kind=kind
        )
    _guarded(task.on_recovery, failure, decision)

    if decision.backoff is not None:
        reason = f"{kind} error ({type(error).__name__}) on attempt {attempt}"
        scheduled = scheduling.schedule_retry(task, decision.backoff, reason)
        if scheduled.pending is not None:
            pending = scheduled.pending
            result = (
                f"retry kept in the database until {pending.due_at.isoformat()} "
                f"({pending.reason})"
            )
            if incident is not None:
                _guarded(incidents.note_result, incident, result)
            decision = dataclasses.replace(decision, result=result)
        log_decision(task, decision, kind, error, attempt, fingerprint.digest)
        return scheduled.signal

    log_decision(task, decision, kind, error, attempt, fingerprint.digest)
    if decision.outcome in (Outcome.SKIPPED, Outcome.FILE_WRITTEN):
        _guarded(
            manual_tasks.settle_replay,
            request.id or "",
            succeeded=decision.outcome == Outcome.FILE_WRITTEN,
            note=decision.result,
        )
    return Ignore()


def _record_failure(
    task: IntegrationTask,
    kind: ErrorKind,
    error: Exception,
    message: str,
    fingerprint: Fingerprint,
    target: Target,
) -> IntegrationLog | None:
    request = task.request
    try:
        return incidents.record_failure(
            task_name=task.name,
            task_id=request.id or "",
            task_args=list(request.args or []),
            operation=task.operation,
            kind=kind,
            error=error,
            message=message,
            fingerprint=fingerprint,
            target=target,
        )
    except DATABASE_OUTAGES as db_error:
        logger.error(
            "Failure of task %s[%s] not recorded: the database is unavailable (%s)",
            task.name,
            request.id,
            type(db_error).__name__,
        )
        return None


def _decide(failure: Failure) -> Decision:
    """Run the kind's strategy, or retry instead when the database is down."""
    strategy: Strategy = table.strategy_for(
        failure.task.name, failure.task.operation, failure.kind
    )
    if isinstance(failure.error, CircuitOpenError):
        # The call was not made: wait for the breaker's trials, not a backoff.
        strategy = CircuitBreakerFallback()
    if failure.incident is None:
        # The database is down, and escalation or a manual task would write to it.
        strategy = RetryUntilRecovered()
    try:
        return strategy(failure)
    except DATABASE_OUTAGES as db_error:
        logger.error(
            "Strategy %s for task %s[%s] failed because the database is unavailable "
            "(%s), so the task is retried instead",
            strategy.name,
            failure.task.name,
            failure.task.request.id,
            type(db_error).__name__,
        )
    except Exception:
        # A strategy that fails (the outbox disk full, the token endpoint down
        # during a refresh) must not end the run: the operation would be lost.
        logger.exception(
            "Strategy %s for task %s[%s] failed, so the task is retried instead",
            strategy.name,
            failure.task.name,
            failure.task.request.id,
        )
    return RetryUntilRecovered()(failure)


def _guarded(function: Any, *args: Any, **kwargs: Any) -> None:
    """Call a bookkeeping step, which a database outage must not stop."""
    try:
        function(*args, **kwargs)
    except DATABASE_OUTAGES as db_error:
        logger.error(
            "Recovery step %s skipped: the database is unavailable (%s)",
            getattr(function, "__qualname__", function),
            type(db_error).__name__,
        )


def log_decision(
    task: IntegrationTask,
    decision: Decision,
    kind: ErrorKind,
    error: BaseException,
    attempt: int,
    fingerprint: str,
) -> None:
    """Write the decision's one log line: ids, kinds and numbers, never data."""
    delay = decision.backoff.countdown_s if decision.backoff is not None else None
    fields = {
        "task_id": task.request.id,
        "task_name": task.name,
        "operation": task.operation,
        "error_kind": str(kind),
        "error_class": type(error).__name__,
        "strategy": str(decision.strategy),
        "outcome": str(decision.outcome),
        "attempt": attempt,
        "delay_s": round(delay, 3) if delay is not None else None,
        "fingerprint": fingerprint[:12],
    }
    logger.log(
        LOG_LEVELS[decision.outcome],
        "Recovery decision task_id=%s task=%s operation=%s error_kind=%s "
        "error_class=%s strategy=%s attempt=%d delay_s=%s error_group=%s: %s",
        fields["task_id"], fields["task_name"], fields["operation"],
        fields["error_kind"], fields["error_class"], fields["strategy"], attempt,
        fields["delay_s"], fields["fingerprint"], decision.result,
        extra={"recovery": fields},
    )  # fmt: skip
