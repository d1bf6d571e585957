"""Records of integration failures and what was done about them.

``IntegrationLog`` has one row per failed task run chain (a Celery task id and
its retries), ``ManualTask`` the work an operator has to finish,
``ManualTaskAudit`` what operators did to it, ``PendingRetry`` the retries the
broker could not hold, and ``OutboxDocument`` the CommerceML files written for
1C's own exchange to collect. Messages and details are scrubbed of personal data
on every save.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils.translation import gettext_lazy as _

from freesport.integration.choices import ErrorKind, Operation, StrategyName
from freesport.integration.scrubbing import scrub, scrub_text

MAX_RESULT_CHARS = 500
MAX_MESSAGE_CHARS = 4000


class IntegrationLog(models.Model):
    """One failed integration task, its retries and the strategy that ended it."""

    class Status(models.TextChoices):
        ERROR = "error", _("error")
        RECOVERED = "recovered", _("recovered")
        MANUAL_REQUIRED = "manual_required", _("manual action required")

    operation = models.CharField(
        _("operation"), max_length=30, choices=Operation.choices
    )
    error_type = models.CharField(
        _("error type"), max_length=30, choices=ErrorKind.choices
    )
    # Qualified class name, such as "freesport.exceptions.OneCTimeoutError".
    exception_type = models.CharField(_("exception"), max_length=200, blank=True)
    message = models.TextField(_("message"), blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.ERROR
    )
    retry_count = models.PositiveIntegerField(_("retries"), default=0)
    strategy = models.CharField(
        _("strategy"), max_length=30, choices=StrategyName.choices
    )
    result = models.CharField(_("result"), max_length=MAX_RESULT_CHARS, blank=True)
    # One entry per decision: attempt, error type, strategy, countdown and its
    # backoff ceiling, Retry-After, time.
    history = models.JSONField(_("decisions"), default=list, blank=True)
    task_name = models.CharField(_("task"), max_length=200, blank=True)
    task_id = models.CharField(_("task id"), max_length=255, blank=True, db_index=True)
    # The task's arguments as the worker received them: record ids only.
    task_args = models.JSONField(_("task arguments"), default=list, blank=True)
    object_ref = models.CharField(_("object"), max_length=200, blank=True)
    fingerprint = models.CharField(_("error group"), max_length=64)
    fingerprint_parts = models.JSONField(default=list, blank=True)
    admins_notified_at = models.DateTimeField(
        _("administrators notified"), null=True, blank=True
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)

    class Meta:
        verbose_name = _("integration log entry")
        verbose_name_plural = _("integration log")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["operation", "-created_at"]),
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["-created_at"]),
            models.Index(fields=["fingerprint", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.operation} {self.error_type} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.message = scrub_text(self.message)[:MAX_MESSAGE_CHARS]
        self.details = scrub(self.details)
        self.result = self.result[:MAX_RESULT_CHARS]
        super().save(*args, **kwargs)


class ManualTask(models.Model):
    """Work an operator has to finish: fix the data, then replay the task once."""

    class State(models.TextChoices):
        OPEN = "open", _("open")
        IN_PROGRESS = "in_progress", _("in progress")
        RESOLVED = "resolved", _("resolved")
        DISCARDED = "discarded", _("discarded")

    operation = models.CharField(
        _("operation"), max_length=30, choices=Operation.choices
    )
    content_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.SET_NULL
    )
    object_id = models.CharField(max_length=64, blank=True)
    content_object = GenericForeignKey("content_type", "object_id")
    # Readable reference, kept when the object is deleted: "customers.b2bcustomer:12".
    object_ref = models.CharField(_("object"), max_length=200, blank=True)
    task_name = models.CharField(_("task"), max_length=200)
    task_args = models.JSONField(_("task arguments"), default=list, blank=True)
    # Queue the failed run came from, which the replay is sent to. Empty means
    # Celery's default queue.
    queue = models.CharField(_("queue"), max_length=200, blank=True)
    error = models.TextField(_("error"), blank=True)
    error_type = models.CharField(
        _("error type"), max_length=30, choices=ErrorKind.choices
    )
    fingerprint = models.CharField(_("error group"), max_length=64, db_index=True)
    state = models.CharField(
        _("state"), max_length=20, choices=State.choices, default=State.OPEN
    )
    integration_log = models.ForeignKey(
        IntegrationLog,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="manual_tasks",
        verbose_name=_("integration log entry"),
    )
    replay_count = models.PositiveIntegerField(_("replays"), default=0)
    # Celery task id of the replay in progress or of the last one.
    replay_task_id = models.CharField(max_length=255, blank=True, db_index=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("resolved by"),
    )

    class Meta:
        verbose_name = _("manual task")
        verbose_name_plural = _("manual tasks")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "-created_at"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.operation} {self.object_ref} ({self.state})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.error = scrub_text(self.error)[:MAX_MESSAGE_CHARS]
        super().save(*args, **kwargs)


class ManualTaskAudit(models.Model):
    """One operator action on a manual task, with the fields an edit changed."""

    class Action(models.TextChoices):
        CREATED = "created", _("created")
        REOPENED = "reopened", _("failed again")
        REPLAY_STARTED = "replay_started", _("replay started")
        REPLAY_REJECTED = "replay_rejected", _("replay rejected: not open")
        REPLAY_SUCCEEDED = "replay_succeeded", _("replay succeeded")
        EDITED = "edited", _("edited")
        RESOLVED = "resolved", _("resolved")
        DISCARDED = "discarded", _("discarded")

    manual_task = models.ForeignKey(
        ManualTask, on_delete=models.CASCADE, related_name="audit"
    )
    action = models.CharField(_("action"), max_length=20, choices=Action.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("user"),
    )
    # {"field": {"before": ..., "after": ...}} for the fields an edit changed.
    changes = models.JSONField(_("changes"), default=dict, blank=True)
    note = models.CharField(_("note"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("time"), auto_now_add=True)

    class Meta:
        verbose_name = _("manual task audit entry")
        verbose_name_plural = _("manual task audit")
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return (
            f"{self.manual_task_id} {self.action} at {self.created_at:%Y-%m-%d %H:%M}"
        )


class PendingRetry(models.Model):
    """A retry kept in the database until a beat job sends it to the broker.

    Retries land here when the broker rejected the publish (Redis down) and when
    their delay is longer than ``RECOVERY_MAX_COUNTDOWN_S``, so that no worker
    keeps a far-off ETA task in memory.
    """

    class State(models.TextChoices):
        PENDING = "pending", _("pending")
        SENDING = "sending", _("sending")
        SENT = "sent", _("sent")

    class Reason(models.TextChoices):
        BROKER_UNAVAILABLE = "broker_unavailable", _("broker unavailable")
        LONG_DELAY = "long_delay", _("delay longer than the countdown cap")

    task_name = models.CharField(_("task"), max_length=200)
    task_id = models.CharField(_("task id"), max_length=255, db_index=True)
    args = models.JSONField(_("arguments"), default=list, blank=True)
    kwargs = models.JSONField(_("keyword arguments"), default=dict, blank=True)
    queue = models.CharField(_("queue"), max_length=200, blank=True)
    # Celery's retry counter of the message that will be sent.
    retries = models.PositiveIntegerField(_("retries"), default=0)
    due_at = models.DateTimeField(_("due"))
    state = models.CharField(
        _("state"), max_length=20, choices=State.choices, default=State.PENDING
    )
    reason = models.CharField(_("reason"), max_length=30, choices=Reason.choices)
    publish_attempts = models.PositiveIntegerField(_("send attempts"), default=0)
    # When a beat job took the row for sending. A row left in "sending" by a
    # process that died is taken again after a while.
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)

    class Meta:
        verbose_name = _("pending retry")
        verbose_name_plural = _("pending retries")
        ordering = ["due_at"]
        indexes = [models.Index(fields=["state", "due_at"])]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}] due {self.due_at:%Y-%m-%d %H:%M:%S}"


class OutboxDocument(models.Model):
    """A CommerceML document written to the exchange outbox for 1C to collect."""

    operation = models.CharField(
        _("operation"), max_length=30, choices=Operation.choices
    )
    object_ref = models.CharField(_("object"), max_length=200, blank=True)
    path = models.CharField(_("path"), max_length=1000)
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    size = models.BigIntegerField(_("size, bytes"), default=0)
    created_at = models.DateTimeField(_("written"), auto_now_add=True)
    # Set when 1C's exchange has taken the document.
    collected_at = models.DateTimeField(_("collected"), null=True, blank=True)

    class Meta:
        verbose_name = _("outbox document")
        verbose_name_plural = _("outbox documents")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["collected_at", "created_at"])]

    def __str__(self) -> str:
        return self.path
