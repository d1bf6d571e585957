"""Input of a recovery strategy (``Failure``) and its result (``Decision``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from django.db import models

from freesport.integration.choices import ErrorKind, StrategyName
from freesport.integration.models import IntegrationLog
from worker.recovery.fingerprint import Fingerprint
from worker.recovery.retry_policy import Backoff

if TYPE_CHECKING:
    from celery.app.task import Context


class Outcome(enum.StrEnum):
    """End of a failed run, for the task's own bookkeeping (an outbox state)."""

    RETRY = "retry"
    FILE_WRITTEN = "file_written"
    SKIPPED = "skipped"
    MANUAL = "manual"
    ESCALATED = "escalated"


TERMINAL_FAILURES = frozenset({Outcome.SKIPPED, Outcome.MANUAL, Outcome.ESCALATED})


@dataclass(frozen=True)
class Target:
    """The record a task works on: the row, its reference and its personal values.

    ``personal_values`` are removed from every message the dispatcher stores or
    logs, and ``content_object`` lets an operator edit the row from a manual task.
    """

    object_ref: str = ""
    content_object: models.Model | None = None
    personal_values: tuple[Any, ...] = ()


class RecoverableTask(Protocol):
    """The parts of ``IntegrationTask`` that strategies use."""

    name: str

    @property
    def operation(self) -> str: ...

    @property
    def request(self) -> Context: ...

    def refresh_credentials(self) -> None: ...

    def write_fallback_document(self, failure: Failure) -> Path: ...


@dataclass(frozen=True)
class Failure:
    """One failed run of an integration task, as the strategies see it."""

    task: RecoverableTask
    error: BaseException
    kind: ErrorKind
    # Number of the run that failed: 1 for the first run, 2 for the first retry.
    attempt: int
    fingerprint: Fingerprint
    # str(error) with personal data removed.
    message: str
    target: Target
    # None when the database could not store it.
    incident: IntegrationLog | None

    @property
    def retry_after_s(self) -> float | None:
        value = getattr(self.error, "retry_after", None)
        return float(value) if value is not None else None

    def earlier_strategies(self) -> list[str]:
        """Return the strategies already applied to earlier runs of this task."""
        if self.incident is None:
            return []
        return [entry.get("strategy", "") for entry in self.incident.history]


@dataclass(frozen=True)
class Decision:
    """Next step after a failed run, as one strategy decided it."""

    strategy: StrategyName
    outcome: Outcome
    status: IntegrationLog.Status
    result: str
    # Set when the task runs again.
    backoff: Backoff | None = None
    manual_task_id: int | None = None
    admins_notified: bool = False
    notes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def retry(cls, strategy: StrategyName, backoff: Backoff, **notes: Any) -> Decision:
        return cls(
            strategy=strategy,
            outcome=Outcome.RETRY,
            status=IntegrationLog.Status.ERROR,
            result=f"retry in {backoff.countdown_s:.2f} s",
            backoff=backoff,
            notes=notes,
        )
