"""Admin page of the circuit breakers: current states, forcing them, the log.

The change list of ``BreakerTransition`` shows every known breaker's state from
Redis above the transition log, with buttons to force a breaker open or closed
or to reset it. The buttons need the ``breakers.force_breaker`` permission.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from freesport.breakers import services
from freesport.breakers.models import BreakerTransition
from worker.recovery.circuit_config import check_name
from worker.recovery.circuit_states import BreakerView, State, datetime_from_ms

logger = logging.getLogger("freesport.breakers")

ACTION_MESSAGES = {
    "open": _("Circuit breaker %(name)s is forced open."),
    "close": _("Circuit breaker %(name)s is forced closed."),
    "reset": _("Circuit breaker %(name)s is reset and closed."),
}


def state_row(status: services.BreakerStatus) -> dict[str, Any]:
    """Describe one breaker for the template."""
    view: BreakerView | None = status.view
    row: dict[str, Any] = {"name": status.name, "error": status.error}
    if view is None:
        return row
    row.update(
        state=BreakerTransition.State(view.state.value).label,
        state_value=view.state.value,
        forced=(
            BreakerTransition.State(view.forced.value).label if view.forced else ""
        ),
        failures=view.failures,
        trials=view.trials,
        changed_at=datetime_from_ms(view.changed_at_ms),
        retry_at=(
            datetime_from_ms(view.retry_at_ms)
            if view.state is State.OPEN and view.retry_at_ms
            else None
        ),
    )
    return row


@admin.register(BreakerTransition)
class BreakerTransitionAdmin(admin.ModelAdmin):
    list_display = (
        "changed_at",
        "breaker",
        "old_state",
        "new_state",
        "reason",
        "failure_count",
        "exception_type",
        "scope",
        "actor",
        "process",
    )
    list_filter = ("breaker", "new_state", "reason", "scope")
    search_fields = ("breaker", "exception_type", "actor")
    date_hierarchy = "changed_at"
    readonly_fields = (
        "breaker",
        "old_state",
        "new_state",
        "reason",
        "failure_count",
        "exception_type",
        "exception_message",
        "scope",
        "actor",
        "process",
        "changed_at",
        "created_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "force/",
                self.admin_site.admin_view(require_POST(self.force_view)),
                name="breakers_breakertransition_force",
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        statuses = services.breaker_statuses()
        context = {
            "breaker_rows": [state_row(status) for status in statuses if status.name],
            "breaker_errors": [status.error for status in statuses if not status.name],
            "can_force_breakers": request.user.has_perm("breakers.force_breaker"),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    def force_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("breakers.force_breaker"):
            raise PermissionDenied
        name = request.POST.get("name", "")
        action = request.POST.get("action", "")
        back = HttpResponseRedirect(
            reverse("admin:breakers_breakertransition_changelist")
        )
        if action not in ACTION_MESSAGES:
            messages.error(request, _("Unknown circuit breaker action."))
            return back
        try:
            check_name(name)
        except ValueError:
            messages.error(request, _("Invalid circuit breaker name."))
            return back
        try:
            services.apply_action(name, action, actor=f"admin:{request.user}")
        except redis.RedisError as error:
            logger.error(
                "Admin action %s on circuit breaker %s failed: %s",
                action,
                name,
                services.describe(error),
            )
            messages.error(
                request,
                _("Redis is unavailable, so the circuit breaker was not changed: %s")
                % services.describe(error),
            )
            return back
        messages.success(request, ACTION_MESSAGES[action] % {"name": name})
        return back
