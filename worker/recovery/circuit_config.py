"""Settings of the Redis-shared circuit breakers: thresholds, timeouts, fail mode.

``BreakerConfig`` contains the settings of one breaker. ``config_from_settings``
builds it from the ``ONEC_BREAKER_*`` Django settings, and
``ONEC_BREAKER_OVERRIDES`` changes single fields for named breakers. Every
setting has a default here, so the breakers run with no setting at all.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from freesport.exceptions import BusinessLogicError, OneCBusinessError, ValidationError

# Breaker names become part of Redis keys, so they are restricted to characters
# that need no quoting: operation names such as "export_customers" or endpoint
# names such as "onec.customers.post".
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,99}$")

# Failures of the request, never of 1C: the call reached 1C, which responded.
DEFAULT_EXCLUDED: tuple[type[BaseException], ...] = (
    OneCBusinessError,
    ValidationError,
    BusinessLogicError,
)


class FailMode(enum.StrEnum):
    """Behaviour of calls while the breaker cannot reach Redis."""

    # Calls go ahead, guarded by an in-process breaker with the same rules.
    OPEN = "open"
    # Calls are rejected until Redis responds again.
    CLOSED = "closed"


@dataclass(frozen=True)
class BreakerConfig:
    """Thresholds and timeouts of one breaker; every process must use the same."""

    # Consecutive failures that open a closed breaker.
    failure_threshold: int = 5
    # Seconds an opened breaker rejects calls before trial calls may start.
    recovery_timeout_s: float = 60.0
    # Successful trial calls that close a half-open breaker.
    success_threshold: int = 3
    # Trial calls in flight at once across all processes while half-open.
    half_open_max_calls: int = 1
    # Seconds a trial call keeps its slot. The slot of a process that dies is
    # free again after this long, so it must exceed the longest call: the 1C
    # client's defaults are a 3.05 s connect and a 30 s read timeout.
    trial_lease_s: float = 40.0
    # A call slower than this counts as a failure even when it succeeds, and
    # None turns the check off. The default is a starting value, a third of the
    # client's default read timeout, not a measured one.
    slow_call_s: float | None = 10.0
    # Failure share (0-1) over the sliding window that opens the breaker once
    # the window contains minimum_calls calls. None turns the check off.
    failure_rate: float | None = None
    window_s: float = 60.0
    minimum_calls: int = 20
    # Exceptions that never count as failures. Their trial slot is released.
    excluded: tuple[type[BaseException], ...] = DEFAULT_EXCLUDED
    fail_mode: FailMode = FailMode.OPEN

    def __post_init__(self) -> None:
        for field in ("failure_threshold", "success_threshold", "half_open_max_calls"):
            check_positive_int(field, getattr(self, field))
        check_positive_int("minimum_calls", self.minimum_calls)
        for field in ("recovery_timeout_s", "trial_lease_s", "window_s"):
            check_positive_seconds(field, getattr(self, field))
        if self.slow_call_s is not None:
            check_positive_seconds("slow_call_s", self.slow_call_s)
        if self.failure_rate is not None and not 0 < self.failure_rate <= 1:
            raise ValueError(
                f"failure_rate must be above 0 and at most 1, got {self.failure_rate!r}"
            )
        if not all(
            isinstance(kind, type) and issubclass(kind, BaseException)
            for kind in self.excluded
        ):
            raise ValueError(
                f"excluded must be a tuple of exception classes, got {self.excluded!r}"
            )
        try:
            fail_mode = FailMode(self.fail_mode)
        except ValueError:
            raise ValueError(
                f"fail_mode must be one of {', '.join(FailMode)}, "
                f"got {self.fail_mode!r}"
            ) from None
        object.__setattr__(self, "fail_mode", fail_mode)

    def replace(self, **changes: Any) -> BreakerConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class BoardConfig:
    """Settings shared by every breaker of one process and Redis server."""

    redis_url: str
    # Timeout of each Redis command and connect. The breaker does not retry a
    # command, so a failure is never counted twice.
    redis_timeout_s: float = 1.0
    # How often each process reloads every breaker's state from Redis, in case
    # it missed a published change, and flushes the successes it counted for
    # the failure-rate window.
    refresh_interval_s: float = 5.0
    # While Redis is unreachable, how often a breaker tries it again.
    redis_retry_interval_s: float = 1.0
    # While Redis is unreachable, each breaker logs at most one line this often.
    outage_log_interval_s: float = 60.0
    key_prefix: str = "freesport:breaker"

    def __post_init__(self) -> None:
        if not self.redis_url:
            raise ValueError("redis_url must name the Redis server of the breakers")
        for field in (
            "redis_timeout_s",
            "refresh_interval_s",
            "redis_retry_interval_s",
            "outage_log_interval_s",
        ):
            check_positive_seconds(field, getattr(self, field))

    @property
    def channel(self) -> str:
        """Pub/sub channel on which every state change is published."""
        return f"{self.key_prefix}:events"

    @property
    def safe_redis_url(self) -> str:
        """The Redis URL without its password, for logs and messages."""
        parts = urlsplit(self.redis_url)
        if parts.password is None:
            return self.redis_url
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"invalid circuit breaker name {name!r}: use 1-100 characters of a-z, "
            "0-9, '_', '.', ':' and '-', starting with a letter or digit"
        )
    return name


def check_positive_int(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field} must be a positive integer, got {value!r}")


def check_positive_seconds(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{field} must be a positive number of seconds, got {value!r}")


# --- Django settings --------------------------------------------------------------

# Setting name -> BreakerConfig field.
SETTING_FIELDS = {
    "ONEC_BREAKER_FAILURE_THRESHOLD": "failure_threshold",
    "ONEC_BREAKER_RECOVERY_TIMEOUT_S": "recovery_timeout_s",
    "ONEC_BREAKER_SUCCESS_THRESHOLD": "success_threshold",
    "ONEC_BREAKER_HALF_OPEN_MAX_CALLS": "half_open_max_calls",
    "ONEC_BREAKER_TRIAL_LEASE_S": "trial_lease_s",
    "ONEC_BREAKER_SLOW_CALL_S": "slow_call_s",
    "ONEC_BREAKER_FAILURE_RATE": "failure_rate",
    "ONEC_BREAKER_WINDOW_S": "window_s",
    "ONEC_BREAKER_MINIMUM_CALLS": "minimum_calls",
    "ONEC_BREAKER_FAIL_MODE": "fail_mode",
}


def default_config() -> BreakerConfig:
    """Build the configuration that every breaker starts from."""
    changes: dict[str, Any] = {}
    for setting, field in SETTING_FIELDS.items():
        if hasattr(settings, setting):
            changes[field] = getattr(settings, setting)
    excluded = getattr(settings, "ONEC_BREAKER_EXCLUDED", None)
    if excluded is not None:
        changes["excluded"] = tuple(import_string(path) for path in excluded)
    return build_config(BreakerConfig(), changes, "ONEC_BREAKER_* settings")


def config_overrides() -> dict[str, Mapping[str, Any]]:
    """Return ``ONEC_BREAKER_OVERRIDES``: breaker name -> {field: value}."""
    overrides = getattr(settings, "ONEC_BREAKER_OVERRIDES", {}) or {}
    if not isinstance(overrides, Mapping):
        raise ImproperlyConfigured(
            "ONEC_BREAKER_OVERRIDES must map breaker names to {field: value} "
            f"objects, got {type(overrides).__name__}"
        )
    return {check_name(name): changes for name, changes in overrides.items()}


def config_from_settings(name: str) -> BreakerConfig:
    """Build the configuration of breaker ``name`` from the Django settings."""
    base = default_config()
    changes = config_overrides().get(name)
    if not changes:
        return base
    return build_config(base, changes, f"ONEC_BREAKER_OVERRIDES[{name!r}]")


def build_config(
    base: BreakerConfig, changes: Mapping[str, Any], source: str
) -> BreakerConfig:
    known = {field.name for field in dataclasses.fields(BreakerConfig)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ImproperlyConfigured(
            f"{source}: unknown circuit breaker field(s) {', '.join(unknown)}; "
            f"expected some of {', '.join(sorted(known))}"
        )
    values = dict(changes)
    # A zero rate or slow-call threshold from an environment variable means off.
    for field in ("failure_rate", "slow_call_s"):
        if field in values and not values[field]:
            values[field] = None
    try:
        return base.replace(**values)
    except (TypeError, ValueError) as error:
        raise ImproperlyConfigured(f"{source}: {error}") from error


def board_config_from_settings() -> BoardConfig:
    """Build the per-process Redis settings of the breakers."""
    redis_url = getattr(settings, "ONEC_BREAKER_REDIS_URL", "") or settings.REDIS_URL
    try:
        return BoardConfig(
            redis_url=redis_url,
            redis_timeout_s=getattr(settings, "ONEC_BREAKER_REDIS_TIMEOUT_S", 1.0),
            refresh_interval_s=getattr(settings, "ONEC_BREAKER_REFRESH_S", 5.0),
        )
    except ValueError as error:
        raise ImproperlyConfigured(f"ONEC_BREAKER_* settings: {error}") from error
