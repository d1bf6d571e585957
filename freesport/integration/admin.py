from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms.models import modelform_factory
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from freesport.integration import manual_tasks
from freesport.integration.models import (
    IntegrationLog,
    ManualTask,
    ManualTaskAudit,
    OutboxDocument,
    PendingRetry,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Admin of rows that only the worker writes."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(IntegrationLog)
class IntegrationLogAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "operation",
        "error_type",
        "status",
        "strategy",
        "retry_count",
        "object_ref",
        "result",
    )
    list_filter = ("status", "operation", "error_type", "strategy")
    search_fields = ("fingerprint", "task_id", "object_ref", "exception_type")
    date_hierarchy = "created_at"


class ManualTaskAuditInline(admin.TabularInline):
    model = ManualTaskAudit
    extra = 0
    can_delete = False
    fields = ("created_at", "action", "user", "changes", "note")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ManualTask)
class ManualTaskAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "created_at",
        "operation",
        "error_type",
        "state",
        "object_ref",
        "replay_count",
        "fingerprint_short",
        "edit_link",
    )
    list_filter = ("state", "operation", "error_type")
    search_fields = ("fingerprint", "object_ref", "task_name")
    readonly_fields = (
        "operation", "content_type", "object_id", "object_ref", "task_name",
        "task_args", "queue", "error", "error_type", "fingerprint", "state",
        "integration_log", "replay_count", "replay_task_id", "created_at",
        "updated_at", "resolved_at", "resolved_by",
    )  # fmt: skip
    inlines = [ManualTaskAuditInline]
    actions = [
        "replay_selected",
        "resolve_selected",
        "discard_selected",
        "replay_error_groups",
        "resolve_error_groups",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=_("error group"))
    def fingerprint_short(self, task: ManualTask) -> str:
        return task.fingerprint[:12]

    @admin.display(description=_("fix"))
    def edit_link(self, task: ManualTask) -> str:
        if task.state != ManualTask.State.OPEN or task.content_type is None:
            return ""
        url = reverse("admin:integration_manualtask_edit_and_retry", args=[task.pk])
        return format_html('<a href="{}">{}</a>', url, _("edit and retry"))

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<int:pk>/edit-and-retry/",
                self.admin_site.admin_view(self.edit_and_retry_view),
                name="integration_manualtask_edit_and_retry",
            )
        ]
        return own + super().get_urls()

    def _replay(self, request: HttpRequest, tasks: QuerySet[ManualTask]) -> None:
        sent = sum(manual_tasks.replay(task, user=request.user) for task in tasks)
        skipped = len(tasks) - sent
        self.message_user(
            request,
            ngettext(
                "%(sent)d replay sent, %(skipped)d skipped (not open).",
                "%(sent)d replays sent, %(skipped)d skipped (not open).",
                sent,
            )
            % {"sent": sent, "skipped": skipped},
            messages.SUCCESS if sent else messages.WARNING,
        )

    @admin.action(description=_("Replay selected tasks"), permissions=["change"])
    def replay_selected(
        self, request: HttpRequest, queryset: QuerySet[ManualTask]
    ) -> None:
        self._replay(request, queryset)

    @admin.action(
        description=_("Replay every open task of the selected error groups"),
        permissions=["change"],
    )
    def replay_error_groups(
        self, request: HttpRequest, queryset: QuerySet[ManualTask]
    ) -> None:
        groups = queryset.values_list("fingerprint", flat=True)
        self._replay(request, manual_tasks.open_in_groups(groups))

    def _close(
        self, request: HttpRequest, tasks: QuerySet[ManualTask], state: str
    ) -> None:
        changed = manual_tasks.close(tasks, state, user=request.user)
        self.message_user(
            request,
            ngettext("%(count)d task closed.", "%(count)d tasks closed.", changed)
            % {"count": changed},
        )

    @admin.action(description=_("Mark selected tasks resolved"), permissions=["change"])
    def resolve_selected(
        self, request: HttpRequest, queryset: QuerySet[ManualTask]
    ) -> None:
        self._close(request, queryset, ManualTask.State.RESOLVED)

    @admin.action(description=_("Discard selected tasks"), permissions=["change"])
    def discard_selected(
        self, request: HttpRequest, queryset: QuerySet[ManualTask]
    ) -> None:
        self._close(request, queryset, ManualTask.State.DISCARDED)

    @admin.action(
        description=_("Mark every open task of the selected error groups resolved"),
        permissions=["change"],
    )
    def resolve_error_groups(
        self, request: HttpRequest, queryset: QuerySet[ManualTask]
    ) -> None:
        groups = queryset.values_list("fingerprint", flat=True)
        self._close(
            request, manual_tasks.open_in_groups(groups), ManualTask.State.RESOLVED
        )

    def edit_and_retry_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        task = get_object_or_404(ManualTask, pk=pk)
        changelist = reverse("admin:integration_manualtask_change", args=[task.pk])
        target = task.content_object
        # Editing shows and changes the customer's data: both models need the
        # change permission, not only staff status.
        if not self.has_change_permission(request, task) or (
            target is not None
            and not request.user.has_perm(
                f"{target._meta.app_label}.change_{target._meta.model_name}"
            )
        ):
            raise PermissionDenied
        fields = manual_tasks.editable_fields(target) if target is not None else ()
        if task.state != ManualTask.State.OPEN or not fields or target is None:
            self.message_user(
                request,
                _("Only an open task whose object still exists can be edited."),
                messages.ERROR,
            )
            return HttpResponseRedirect(changelist)
        form_class = modelform_factory(type(target), fields=fields)
        form: forms.ModelForm[Any] = form_class(request.POST or None, instance=target)
        if request.method == "POST" and form.is_valid():
            changes = {name: form.cleaned_data[name] for name in form.changed_data}
            try:
                sent = manual_tasks.edit_and_retry(task, changes, user=request.user)
            except manual_tasks.ManualTaskError as error:
                self.message_user(request, str(error), messages.ERROR)
            else:
                if sent:
                    self.message_user(request, _("Saved; the replay was sent."))
                else:
                    self.message_user(request, _("Saved; a replay is already running."))
            return HttpResponseRedirect(changelist)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Edit and retry"),
            "task": task,
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(
            request, "admin/integration/manualtask/edit_and_retry.html", context
        )


@admin.register(PendingRetry)
class PendingRetryAdmin(ReadOnlyAdmin):
    list_display = (
        "due_at",
        "task_name",
        "task_id",
        "state",
        "reason",
        "retries",
        "publish_attempts",
        "sent_at",
    )
    list_filter = ("state", "reason")
    search_fields = ("task_id", "task_name")


@admin.register(OutboxDocument)
class OutboxDocumentAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "operation", "object_ref", "path", "collected_at")
    list_filter = ("operation",)
    search_fields = ("path", "object_ref")
