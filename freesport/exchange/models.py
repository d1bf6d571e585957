"""Exchange sessions: one package from 1C, its files, counts and problems."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

ENTITY_COUNTERS = ("created", "updated", "unchanged", "skipped")


def add_counts(
    counts: dict[str, dict[str, int]], entity: str, delta: dict[str, int]
) -> None:
    """Add ``delta`` to the created/updated/unchanged/skipped row of ``entity``."""
    row = counts.setdefault(entity, dict.fromkeys(ENTITY_COUNTERS, 0))
    for key, value in delta.items():
        row[key] = row.get(key, 0) + value


class ExchangeSession(models.Model):
    class Status(models.TextChoices):
        RECEIVING = "receiving", _("receiving files")
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        PARTIAL = "partial", _("partially succeeded")
        FAILED = "failed", _("failed")

    FINISHED = (Status.SUCCEEDED, Status.PARTIAL, Status.FAILED)

    class Source(models.TextChoices):
        COMMAND = "command", _("onec_import command")
        HTTP = "http", _("1C HTTP exchange")

    package = models.CharField(_("package"), max_length=500)
    source = models.CharField(
        _("source"), max_length=20, choices=Source.choices, default=Source.COMMAND
    )
    # HTTP exchange: the token 1C sends back as a cookie or the sessid parameter.
    sessid = models.CharField(
        max_length=64, unique=True, null=True, blank=True, editable=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Folder the HTTP exchange's uploads go to, private to this session.
    upload_dir = models.CharField(_("upload folder"), max_length=1000, blank=True)
    bytes_received = models.BigIntegerField(_("bytes received"), default=0)
    protocol_version = models.CharField(
        _("CommerceML version"), max_length=10, blank=True
    )
    # Zips already unpacked, so that a second import call never unpacks one again.
    unpacked = models.JSONField(default=list, blank=True)
    completed_at = models.DateTimeField(_("1C sent complete"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.QUEUED
    )
    # True once any catalogue or offers file declares СодержитТолькоИзменения="false".
    full_package = models.BooleanField(_("full package"), default=False)
    deactivate_missing = models.BooleanField(
        _("deactivate goods missing from a full package"), default=True
    )
    # {"products": {"created": 3, "updated": 0, "unchanged": 1, "skipped": 0}, ...}
    counts = models.JSONField(_("counts"), default=dict, blank=True)
    deactivated = models.JSONField(_("deactivated"), default=dict, blank=True)
    bytes_total = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    error = models.TextField(_("error"), blank=True)
    task_ids = models.JSONField(_("Celery task ids"), default=list, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("exchange session")
        verbose_name_plural = _("exchange sessions")
        ordering = ["-created_at"]
        permissions = [("exchange_with_1c", _("Can exchange data with 1C over HTTP"))]

    def __str__(self) -> str:
        return f"#{self.pk} {self.package} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def collect_counts(self) -> dict[str, dict[str, int]]:
        """Sum the counts of the session's files."""
        total: dict[str, dict[str, int]] = {}
        for counts in self.files.values_list("counts", flat=True):
            for entity, row in counts.items():
                add_counts(total, entity, row)
        return total

    def total(self, counter: str) -> int:
        return sum(row.get(counter, 0) for row in self.counts.values())

    def summary(self) -> dict[str, Any]:
        return {
            "session": self.pk,
            "package": self.package,
            "status": self.status,
            "full_package": self.full_package,
            "counts": self.counts,
            "deactivated": self.deactivated,
            "problems": self.problems.count(),
            "error": self.error,
            "files": [
                {"name": f.name, "kind": f.kind, "status": f.status, "error": f.error}
                for f in self.files.all()
            ],
            "duration_s": self.duration_s,
            "task_ids": self.task_ids,
        }


class ExchangeFile(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        IMPORTED = "imported", _("imported")
        FAILED = "failed", _("failed")
        SKIPPED = "skipped", _("not a catalogue file")

    session = models.ForeignKey(
        ExchangeSession, on_delete=models.CASCADE, related_name="files"
    )
    name = models.CharField(_("name"), max_length=500)
    path = models.CharField(_("path"), max_length=1000)
    kind = models.CharField(_("kind"), max_length=30)
    order = models.PositiveIntegerField(default=0)
    size = models.BigIntegerField(default=0)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.PENDING
    )
    only_changes = models.BooleanField(_("changes only"), null=True)
    counts = models.JSONField(_("counts"), default=dict, blank=True)
    # Section names found in the file, and whether it lists all goods or offers
    # (СодержитТолькоИзменения="false" or absent on a section that has items).
    sections = models.JSONField(default=list, blank=True)
    full_goods = models.BooleanField(default=False)
    full_offers = models.BooleanField(default=False)
    items = models.PositiveIntegerField(_("items read"), default=0)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        verbose_name = _("exchange file")
        verbose_name_plural = _("exchange files")
        ordering = ["session", "order"]

    def __str__(self) -> str:
        return self.name


class ExchangeStep(models.Model):
    """One request of an HTTP exchange and the answer the site gave."""

    session = models.ForeignKey(
        ExchangeSession, on_delete=models.CASCADE, related_name="steps"
    )
    mode = models.CharField(_("mode"), max_length=20)
    filename = models.CharField(_("file"), max_length=500, blank=True)
    bytes = models.BigIntegerField(_("bytes received"), default=0)
    answer = models.CharField(_("answer"), max_length=500)
    duration_ms = models.PositiveIntegerField(_("duration, ms"), default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("exchange step")
        verbose_name_plural = _("exchange steps")
        ordering = ["session", "id"]

    def __str__(self) -> str:
        return f"{self.mode} {self.filename} -> {self.answer}"


class ImportProblem(models.Model):
    """An item skipped or clamped during an import, for an operator to look at."""

    class Action(models.TextChoices):
        SKIPPED = "skipped", _("skipped")
        CLAMPED = "clamped", _("clamped")
        FILE_FAILED = "file_failed", _("file failed")
        HELD = "held", _("held back")

    session = models.ForeignKey(
        ExchangeSession, on_delete=models.CASCADE, related_name="problems"
    )
    file = models.CharField(_("file"), max_length=500)
    line = models.PositiveIntegerField(_("line"), null=True, blank=True)
    element = models.CharField(_("element path"), max_length=500)
    external_id = models.CharField(_("1C id"), max_length=200, blank=True)
    code = models.CharField(_("code"), max_length=50)
    action = models.CharField(_("action"), max_length=20, choices=Action.choices)
    message = models.TextField(_("message"))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("import problem")
        verbose_name_plural = _("import problems")
        ordering = ["session", "id"]
        indexes = [models.Index(fields=["session", "code"])]

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
