"""The interface of a circuit breaker in front of 1C, and the no-op default.

Integration tasks ask ``allow()`` before they run, report every run with
``record_success()`` or ``record_failure()``, and retry no earlier than
``retry_at()`` while the circuit is open. ``NoOpBreaker`` always allows and
records nothing; set ``RECOVERY_CIRCUIT_BREAKER`` to the dotted path of a factory
``(operation: str) -> CircuitBreaker`` to use a real one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from freesport.exceptions import OneCConnectionError


@runtime_checkable
class CircuitBreaker(Protocol):
    """Interface that the recovery dispatcher needs from a circuit breaker."""

    def allow(self) -> bool:
        """Return whether a call may go through now."""
        ...

    def record_success(self) -> None: ...

    def record_failure(self, error: BaseException) -> None: ...

    def retry_at(self) -> datetime | None:
        """Return when an open circuit lets calls through again, or None if closed."""
        ...


class NoOpBreaker:
    """Breaker that is always closed and keeps no state."""

    def allow(self) -> bool:
        return True

    def record_success(self) -> None:
        pass

    def record_failure(self, error: BaseException) -> None:
        pass

    def retry_at(self) -> datetime | None:
        return None


class CircuitOpenError(OneCConnectionError):
    """The breaker of an operation is open, so the call was not made."""

    code = "CIRCUIT_OPEN"


def breaker_for(operation: str) -> CircuitBreaker:
    """Return the breaker of ``operation`` built by ``RECOVERY_CIRCUIT_BREAKER``."""
    path = getattr(settings, "RECOVERY_CIRCUIT_BREAKER", "")
    if not path:
        return NoOpBreaker()
    factory = import_string(path)
    breaker = factory(operation)
    if not isinstance(breaker, CircuitBreaker):
        raise TypeError(
            f"RECOVERY_CIRCUIT_BREAKER {path!r} returned {type(breaker).__name__}, "
            "which lacks allow, record_success, record_failure or retry_at"
        )
    return breaker


def open_circuit_error(operation: str, breaker: CircuitBreaker) -> CircuitOpenError:
    """Build the error raised in place of a call that an open breaker blocked."""
    retry_at = breaker.retry_at()
    wait_s = None
    if retry_at is not None:
        wait_s = max((retry_at - timezone.now()).total_seconds(), 0.0)
    return CircuitOpenError(
        f"the circuit breaker of {operation} is open; the call was not made",
        details={"operation": operation},
        retry_after=wait_s,
    )
