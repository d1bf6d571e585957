"""Exceptions with stable codes, shared by the shop, the exchange and the worker.

Every error the project raises on purpose carries a code that never changes, an
HTTP status, a message and details. ``to_dict()`` is the one JSON error format
the shop gets back. Default messages are Russian for shop users and operators
(through Django i18n, ``locale/ru``); codes, logs and exception text in code stay
English, so tests and alerts match on codes, never on wording.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.utils.translation import gettext_lazy as _


class FreesportError(Exception):
    """Base of the project's errors: message, stable code, HTTP status, details."""

    code: ClassVar[str] = "ERROR"
    status: ClassVar[int] = 500
    default_message: ClassVar[Any] = _("An internal error occurred.")

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        self.message = str(message if message is not None else self.default_message)
        self.details = dict(details or {})
        if code is not None:
            self.code = code  # type: ignore[misc]
        if status is not None:
            self.status = status  # type: ignore[misc]
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": True,
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "status": self.status,
        }


class ValidationError(FreesportError):
    code = "VALIDATION_ERROR"
    status = 400
    default_message = _("The data is invalid.")


class BusinessLogicError(FreesportError):
    code = "BUSINESS_LOGIC_ERROR"
    status = 422
    default_message = _("The operation breaks a business rule.")


class InsufficientStockError(BusinessLogicError):
    code = "INSUFFICIENT_STOCK"
    status = 409
    default_message = _("Not enough stock for the order.")


class PaymentError(FreesportError):
    code = "PAYMENT_FAILED"
    status = 402
    default_message = _("The payment failed.")


class IntegrationError(FreesportError):
    code = "INTEGRATION_ERROR"
    status = 503
    default_message = _("An external system is unavailable. Try again later.")


class OneCIntegrationError(IntegrationError):
    """A failure talking to 1C. Each subclass is one kind of failure."""

    code = "ONEC_INTEGRATION_ERROR"
    default_message = _("The exchange with 1C failed. Try again later.")

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, details=details, **kwargs)
        # Seconds 1C asked to wait (a Retry-After header), or when an open
        # circuit breaker lets calls through again.
        self.retry_after = retry_after


class OneCConnectionError(OneCIntegrationError):
    """1C could not be reached or returned 429/5xx, so the call may be retried."""

    code = "ONEC_CONNECTION_ERROR"
    default_message = _("1C is unavailable. The exchange will be retried.")


class OneCAuthenticationError(OneCIntegrationError):
    code = "ONEC_AUTH_ERROR"
    default_message = _("1C rejected the site's credentials.")


class OneCDataFormatError(OneCIntegrationError):
    code = "ONEC_DATA_FORMAT_ERROR"
    default_message = _("1C sent data the site cannot read.")


class OneCBusinessError(OneCIntegrationError):
    """1C refused the operation by a rule of its own (a 4xx other than 401/403/429)."""

    code = "ONEC_BUSINESS_ERROR"
    default_message = _("1C refused the operation.")


class OneCTimeoutError(OneCIntegrationError):
    code = "ONEC_TIMEOUT_ERROR"
    default_message = _("1C did not respond in time. The exchange will be retried.")
