"""Recovery strategies: one small class per way of ending a failed run.

A strategy is called with the ``Failure`` and returns a ``Decision``. Strategies
that need a second step take another strategy, as ``RetryWithBackoff`` escalates
once attempts run out. Strategies perform their own side effects (a credential
refresh, a file, a manual task, an e-mail). Publishing a retry is left to
``worker.recovery.scheduling``, so that the decision is recorded first.
"""

from __future__ import annotations

import logging
import random
from abc import ABC, abstractmethod
from typing import ClassVar

from django.conf import settings
from django.utils import timezone

from freesport.exceptions import OneCAuthenticationError
from freesport.integration import manual_tasks
from freesport.integration.choices import StrategyName
from freesport.integration.models import IntegrationLog, ManualTask
from worker.recovery import escalation
from worker.recovery.breaker import CircuitOpenError, breaker_for
from worker.recovery.decisions import Decision, Failure, Outcome
from worker.recovery.retry_policy import Backoff, RetryPolicy

logger = logging.getLogger("worker.recovery")


class Strategy(ABC):
    """A way of ending a failed run of an integration task."""

    name: ClassVar[StrategyName]

    @abstractmethod
    def __call__(self, failure: Failure) -> Decision: ...


class EscalateToAdmins(Strategy):
    """Open a manual task and mail the administrators, once per error group.

    Use it for unexpected failures and for those that retries did not fix. The
    manual task keeps the work, and the e-mail makes someone look at it.
    """

    name = StrategyName.ESCALATE

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    def __call__(self, failure: Failure) -> Decision:
        task = open_manual_task(failure)
        notified = escalation.notify_admins(failure, task.pk)
        result = f"manual task {task.pk}; administrators "
        result += "notified" if notified else "already notified about this group"
        if self.reason:
            result = f"{self.reason}; {result}"
        return Decision(
            strategy=self.name,
            outcome=Outcome.ESCALATED,
            status=IntegrationLog.Status.MANUAL_REQUIRED,
            result=result,
            manual_task_id=task.pk,
            admins_notified=notified,
        )


class RetryWithBackoff(Strategy):
    """Run the task again after an exponential, capped, fully jittered countdown.

    Use it for failures that go away by themselves: 1C unreachable, slow or
    overloaded, a database or broker restart. ``Retry-After`` is the shortest
    countdown. After ``max_attempts`` runs, ``exhausted`` ends the failure.
    """

    name = StrategyName.RETRY

    def __init__(
        self, policy: RetryPolicy | None = None, exhausted: Strategy | None = None
    ) -> None:
        self.policy = policy
        self.exhausted = exhausted

    def __call__(self, failure: Failure) -> Decision:
        policy = self.policy or RetryPolicy.from_settings()
        if policy.is_exhausted(failure.attempt):
            exhausted = self.exhausted or EscalateToAdmins(
                f"gave up after {failure.attempt} attempts"
            )
            return exhausted(failure)
        backoff = policy.backoff(failure.attempt, failure.retry_after_s)
        return Decision.retry(self.name, backoff)


class RetryUntilRecovered(Strategy):
    """Retry with capped backoff and never give up.

    For failures of the recovery itself, such as the database being down while a
    strategy records its decision: escalating would need that database too, and
    ending the run would lose the operation.
    """

    name = StrategyName.RETRY

    def __call__(self, failure: Failure) -> Decision:
        policy = RetryPolicy.from_settings()
        attempt = min(failure.attempt, policy.max_attempts)
        return Decision.retry(self.name, policy.backoff(attempt, failure.retry_after_s))


class RefreshCredentials(Strategy):
    """Re-authenticate once, then run the task again at once.

    An authentication failure after a refresh in the same task, or a refresh
    that 1C rejects, escalates: the credentials themselves are wrong.
    """

    name = StrategyName.REFRESH_CREDENTIALS

    def __call__(self, failure: Failure) -> Decision:
        if self.name in failure.earlier_strategies():
            return EscalateToAdmins("rejected again after a credential refresh")(
                failure
            )
        try:
            failure.task.refresh_credentials()
        except OneCAuthenticationError:
            return EscalateToAdmins("the credential refresh was rejected")(failure)
        except NotImplementedError:
            return EscalateToAdmins("the task cannot refresh credentials")(failure)
        return Decision.retry(self.name, Backoff(countdown_s=0.0, ceiling_s=0.0))


class FileFallback(Strategy):
    """Write the operation's CommerceML document to the exchange outbox.

    Use it where 1C's own exchange can take the data instead of the HTTP
    service; the task must implement ``write_fallback_document``.
    """

    name = StrategyName.FILE_FALLBACK

    def __call__(self, failure: Failure) -> Decision:
        try:
            path = failure.task.write_fallback_document(failure)
        except NotImplementedError:
            return EscalateToAdmins("the task has no file fallback")(failure)
        return Decision(
            strategy=self.name,
            outcome=Outcome.FILE_WRITTEN,
            status=IntegrationLog.Status.RECOVERED,
            result=f"written to the exchange outbox as {path.name}",
        )


class CircuitBreakerFallback(Strategy):
    """Wait until the operation's circuit breaker lets calls through, then retry.

    While the breaker is closed it behaves as ``then`` (retry with backoff).
    """

    name = StrategyName.CIRCUIT_BREAKER

    def __init__(self, then: Strategy | None = None) -> None:
        self.then = then or RetryWithBackoff()

    def __call__(self, failure: Failure) -> Decision:
        # retry_at() only reads the state; allow() would take a half-open trial.
        retry_at = breaker_for(failure.task.operation).retry_at()
        if isinstance(failure.error, CircuitOpenError) and retry_at is None:
            # Forced open by an operator: check again later, without using up
            # the retries that real failures need.
            wait_s = float(settings.RECOVERY_RETRY_CAP_S)
        elif retry_at is None or retry_at <= timezone.now():
            return self.then(failure)
        else:
            wait_s = max((retry_at - timezone.now()).total_seconds(), 0.0)
        # Jitter above the trial time, so queued tasks do not all wake at once.
        countdown = wait_s + random.uniform(0, min(max(wait_s, 1.0), 30.0))
        backoff = Backoff(
            countdown_s=countdown, ceiling_s=countdown, retry_after_s=wait_s
        )
        return Decision.retry(self.name, backoff)


class LogAndSkip(Strategy):
    """Record the failure and drop the run.

    Use it where running again cannot succeed and no operator needs to act, such
    as a response from 1C that the site cannot read.
    """

    name = StrategyName.LOG_AND_SKIP

    def __call__(self, failure: Failure) -> Decision:
        return Decision(
            strategy=self.name,
            outcome=Outcome.SKIPPED,
            status=IntegrationLog.Status.ERROR,
            result="skipped",
        )


class CreateManualTask(Strategy):
    """Open a manual task that an operator fixes and replays.

    Use it for data that 1C or the site's checks rejected: a person has to
    correct it before a retry can succeed.
    """

    name = StrategyName.MANUAL_TASK

    def __call__(self, failure: Failure) -> Decision:
        task = open_manual_task(failure)
        return Decision(
            strategy=self.name,
            outcome=Outcome.MANUAL,
            status=IntegrationLog.Status.MANUAL_REQUIRED,
            result=f"manual task {task.pk}",
            manual_task_id=task.pk,
        )


def open_manual_task(failure: Failure) -> ManualTask:
    """Create the failure's manual task, or reopen the one this run replayed."""
    request = failure.task.request
    delivery = request.delivery_info or {}
    task, _ = manual_tasks.open_for_failure(
        replayed_task_id=request.id or "",
        content_object=failure.target.content_object,
        defaults={
            "operation": failure.task.operation,
            "object_ref": failure.target.object_ref,
            "task_name": failure.task.name,
            "task_args": list(request.args or []),
            "queue": delivery.get("routing_key") or "",
            "error": failure.message,
            "error_type": failure.kind,
            "fingerprint": failure.fingerprint.digest,
            "integration_log": failure.incident,
        },
    )
    return task


STRATEGIES: dict[str, type[Strategy]] = {
    strategy.name: strategy
    for strategy in (
        RetryWithBackoff,
        RefreshCredentials,
        FileFallback,
        CircuitBreakerFallback,
        LogAndSkip,
        CreateManualTask,
        EscalateToAdmins,
    )
}
