"""Names shared by the integration log, the manual tasks and the recovery dispatcher.

The values are stored in the database and used as keys of the
``RECOVERY_STRATEGY_OVERRIDES`` setting, so they never change once released.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Operation(models.TextChoices):
    IMPORT_PRODUCTS = "import_products", _("import of products")
    IMPORT_CUSTOMERS = "import_customers", _("import of customers")
    IMPORT_STOCK = "import_stock", _("import of stock")
    EXPORT_ORDERS = "export_orders", _("export of orders")
    EXPORT_CUSTOMERS = "export_customers", _("export of customers")
    WEBHOOK = "webhook", _("webhook")
    OTHER = "other", _("other")


class ErrorKind(models.TextChoices):
    """Kind of a failure, which decides the recovery strategy."""

    CONNECTION = "connection", _("connection")
    TIMEOUT = "timeout", _("timeout")
    AUTHENTICATION = "authentication", _("authentication")
    DATA_FORMAT = "data_format", _("data format")
    BUSINESS = "business", _("business rule")
    VALIDATION = "validation", _("validation")
    NOT_FOUND = "not_found", _("record not found")
    DATABASE_UNAVAILABLE = "database_unavailable", _("database unavailable")
    BROKER_UNAVAILABLE = "broker_unavailable", _("broker unavailable")
    UNKNOWN = "unknown", _("unknown")


class StrategyName(models.TextChoices):
    RETRY = "retry", _("retry with backoff")
    REFRESH_CREDENTIALS = "refresh_credentials", _("refresh credentials and retry")
    FILE_FALLBACK = "file_fallback", _("fall back to file exchange")
    CIRCUIT_BREAKER = "circuit_breaker", _("circuit breaker")
    LOG_AND_SKIP = "log_and_skip", _("log and skip")
    MANUAL_TASK = "manual_task", _("create a manual task")
    ESCALATE = "escalate", _("escalate to administrators")
