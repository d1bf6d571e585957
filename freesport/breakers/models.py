from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class BreakerTransition(models.Model):
    """One change of a circuit breaker's state, written by the process that made it.

    The values of the choices are those of ``worker.recovery.circuit_states``.
    """

    class State(models.TextChoices):
        CLOSED = "closed", _("closed")
        OPEN = "open", _("open")
        HALF_OPEN = "half_open", _("half-open")

    class Reason(models.TextChoices):
        FAILURE_THRESHOLD = "failure_threshold", _("consecutive failures")
        FAILURE_RATE = "failure_rate", _("failure rate")
        RECOVERY_TIMEOUT = "recovery_timeout", _("recovery timeout passed")
        TRIAL_FAILED = "trial_failed", _("trial call failed")
        SUCCESS_THRESHOLD = "success_threshold", _("trial calls succeeded")
        FORCED_OPEN = "forced_open", _("forced open")
        FORCED_CLOSED = "forced_closed", _("forced closed")
        RESET = "reset", _("reset")

    class Scope(models.TextChoices):
        SHARED = "shared", _("all processes")
        PROCESS = "process", _("one process, Redis unavailable")

    breaker = models.CharField(_("breaker"), max_length=100)
    old_state = models.CharField(_("old state"), max_length=20, choices=State.choices)
    new_state = models.CharField(_("new state"), max_length=20, choices=State.choices)
    reason = models.CharField(_("reason"), max_length=30, choices=Reason.choices)
    failure_count = models.PositiveIntegerField(_("failures"), default=0)
    # Qualified class name, such as "freesport.exceptions.OneCConnectionError".
    exception_type = models.CharField(_("exception type"), max_length=255, blank=True)
    # Only messages of the 1C client, which name the method, path and status.
    exception_message = models.TextField(_("exception message"), blank=True)
    scope = models.CharField(
        _("scope"), max_length=20, choices=Scope.choices, default=Scope.SHARED
    )
    # "admin:<user name>" or "command" for forced changes, empty otherwise.
    actor = models.CharField(_("forced by"), max_length=200, blank=True)
    # "<host>:<pid>" of the process that made the transition.
    process = models.CharField(_("process"), max_length=255, blank=True)
    # Redis TIME of the change, or the process's clock for the PROCESS scope.
    changed_at = models.DateTimeField(_("changed at"))
    created_at = models.DateTimeField(_("recorded at"), auto_now_add=True)

    class Meta:
        verbose_name = _("circuit breaker transition")
        verbose_name_plural = _("circuit breaker transitions")
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["breaker", "-changed_at"])]
        permissions = [
            (
                "force_breaker",
                _("Can force circuit breakers open or closed and reset them"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.breaker}: {self.old_state} -> {self.new_state} ({self.reason})"
