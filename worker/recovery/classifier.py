"""Mapping of exceptions to error kinds.

``RULES`` is read top to bottom and the first matching row wins, so a subclass
row must come before its base class row (``OneCTimeoutError`` before
``OneCIntegrationError``). Exceptions from libraries are matched by their own
classes: Django's database errors, kombu's and redis-py's connection errors.
"""

from __future__ import annotations

from typing import NamedTuple

import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError

from freesport.exceptions import (
    BusinessLogicError,
    OneCAuthenticationError,
    OneCBusinessError,
    OneCConnectionError,
    OneCDataFormatError,
    OneCIntegrationError,
    OneCTimeoutError,
    ValidationError,
)
from freesport.integration.choices import ErrorKind
from worker.recovery.breaker import CircuitOpenError


class Rule(NamedTuple):
    exceptions: tuple[type[BaseException], ...]
    kind: ErrorKind


RULES: tuple[Rule, ...] = (
    Rule((OneCTimeoutError, SoftTimeLimitExceeded), ErrorKind.TIMEOUT),
    Rule((OneCConnectionError, CircuitOpenError), ErrorKind.CONNECTION),
    Rule((OneCAuthenticationError,), ErrorKind.AUTHENTICATION),
    Rule((OneCDataFormatError,), ErrorKind.DATA_FORMAT),
    Rule((OneCBusinessError, BusinessLogicError), ErrorKind.BUSINESS),
    # Any other failure talking to 1C is taken as 1C being unavailable.
    Rule((OneCIntegrationError,), ErrorKind.CONNECTION),
    Rule((ValidationError, DjangoValidationError), ErrorKind.VALIDATION),
    Rule((ObjectDoesNotExist,), ErrorKind.NOT_FOUND),
    # Django wraps a lost or refused database connection in OperationalError
    # or InterfaceError. IntegrityError and DataError are row errors, left to
    # UNKNOWN because retrying does not fix them.
    Rule((OperationalError, InterfaceError), ErrorKind.DATABASE_UNAVAILABLE),
    Rule(
        (BrokerOperationalError, redis.ConnectionError, redis.TimeoutError),
        ErrorKind.BROKER_UNAVAILABLE,
    ),
)


def classify(error: BaseException) -> ErrorKind:
    """Return the error kind of ``error``, or UNKNOWN when no rule matches."""
    for rule in RULES:
        if isinstance(error, rule.exceptions):
            return rule.kind
    return ErrorKind.UNKNOWN


# Errors of a database that is down or unreachable, as opposed to a bad row.
DATABASE_OUTAGES = (OperationalError, InterfaceError)
