from django.contrib import admin

from freesport.exchange.models import (
    ExchangeFile,
    ExchangeSession,
    ExchangeStep,
    ImportProblem,
)


class ExchangeFileInline(admin.TabularInline):
    model = ExchangeFile
    extra = 0
    can_delete = False
    fields = (
        "order",
        "name",
        "kind",
        "size",
        "status",
        "only_changes",
        "items",
        "counts",
        "error",
    )
    readonly_fields = fields


class ExchangeStepInline(admin.TabularInline):
    model = ExchangeStep
    extra = 0
    can_delete = False
    fields = ("created_at", "mode", "filename", "bytes", "answer", "duration_ms")
    readonly_fields = fields


@admin.register(ExchangeSession)
class ExchangeSessionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "package",
        "status",
        "full_package",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "full_package")
    search_fields = ("package",)
    readonly_fields = (
        "package", "source", "user", "status", "full_package", "deactivate_missing",
        "counts", "deactivated", "upload_dir", "bytes_received", "protocol_version",
        "unpacked", "completed_at",
        "bytes_total", "bytes_done", "error", "task_ids", "created_at", "started_at",
        "finished_at",
    )  # fmt: skip
    exclude = ("sessid",)
    inlines = [ExchangeFileInline, ExchangeStepInline]


@admin.register(ImportProblem)
class ImportProblemAdmin(admin.ModelAdmin):
    list_display = (
        "session",
        "code",
        "action",
        "file",
        "line",
        "external_id",
        "message",
    )
    list_filter = ("code", "action")
    search_fields = ("external_id", "file", "message")
    readonly_fields = (
        "session", "file", "line", "element", "external_id", "code", "action",
        "message",
        "created_at",
    )  # fmt: skip
