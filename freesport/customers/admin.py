from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from freesport.customers.models import B2BCustomer, CustomerExport


class CustomerExportInline(admin.TabularInline):
    model = CustomerExport
    extra = 0
    can_delete = False
    fields = (
        "created_at",
        "state",
        "attempts",
        "idempotency_key",
        "last_error_type",
        "document_path",
        "finished_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(B2BCustomer)
class B2BCustomerAdmin(admin.ModelAdmin):
    list_display = ("id", "company_name", "inn", "kpp", "onec_id", "created_at")
    search_fields = ("company_name", "inn", "email")
    readonly_fields = ("uuid", "onec_id", "created_at", "updated_at")
    inlines = [CustomerExportInline]


@admin.register(CustomerExport)
class CustomerExportAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "customer",
        "state",
        "attempts",
        "last_error_type",
        "created_at",
        "finished_at",
    )
    list_filter = ("state", "last_error_type")
    readonly_fields = (
        "customer", "state", "attempts", "idempotency_key", "payload_sha256",
        "last_error_type", "document_path", "created_at", "updated_at", "finished_at",
    )  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
