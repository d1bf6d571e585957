"""System checks of the recovery settings (``manage.py check`` runs them)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from freesport.integration.choices import ErrorKind, StrategyName


@register()
def check_recovery_settings(**kwargs: Any) -> list[Error]:
    errors = _check_time_limits()
    errors += _check_backoff()
    errors += _check_overrides(getattr(settings, "RECOVERY_STRATEGY_OVERRIDES", {}))
    return errors


def _check_time_limits() -> list[Error]:
    visibility = float(settings.CELERY_BROKER_VISIBILITY_TIMEOUT_S)
    countdown = float(settings.RECOVERY_MAX_COUNTDOWN_S)
    soft = float(settings.INTEGRATION_TASK_SOFT_TIME_LIMIT_S)
    hard = float(settings.INTEGRATION_TASK_TIME_LIMIT_S)
    errors = []
    # The broker delivers an unacknowledged message again after the visibility
    # timeout. A delayed retry is held unacknowledged for its countdown and then
    # runs until it finishes, because integration tasks acknowledge late.
    if countdown + hard >= visibility:
        errors.append(
            Error(
                f"RECOVERY_MAX_COUNTDOWN_S ({countdown:g}) plus "
                f"INTEGRATION_TASK_TIME_LIMIT_S ({hard:g}) must be below "
                f"CELERY_BROKER_VISIBILITY_TIMEOUT_S ({visibility:g}), or the broker "
                "delivers delayed retries a second time",
                id="integration.E001",
            )
        )
    if not 0 < soft < hard:
        errors.append(
            Error(
                f"INTEGRATION_TASK_SOFT_TIME_LIMIT_S ({soft:g}) must be positive and "
                f"below INTEGRATION_TASK_TIME_LIMIT_S ({hard:g})",
                id="integration.E002",
            )
        )
    return errors


def _check_backoff() -> list[Error]:
    base = float(settings.RECOVERY_RETRY_BASE_S)
    cap = float(settings.RECOVERY_RETRY_CAP_S)
    attempts = int(settings.RECOVERY_MAX_ATTEMPTS)
    errors = []
    if not 0 < base <= cap:
        errors.append(
            Error(
                f"RECOVERY_RETRY_BASE_S ({base:g}) must be positive and at most "
                f"RECOVERY_RETRY_CAP_S ({cap:g})",
                id="integration.E003",
            )
        )
    if attempts < 1:
        errors.append(
            Error(
                f"RECOVERY_MAX_ATTEMPTS must be at least 1, got {attempts}",
                id="integration.E004",
            )
        )
    return errors


def _check_overrides(overrides: Any) -> list[Error]:
    if not isinstance(overrides, dict):
        return [
            Error(
                "RECOVERY_STRATEGY_OVERRIDES must be a dict of "
                '{"<task or operation>": {"<error kind>": "<strategy>"}}',
                id="integration.E005",
            )
        ]
    errors = []
    for operation, table in overrides.items():
        if not isinstance(table, dict):
            errors.append(
                Error(
                    f"RECOVERY_STRATEGY_OVERRIDES[{operation!r}] must be a dict of "
                    "error kind to strategy",
                    id="integration.E005",
                )
            )
            continue
        for kind, strategy in table.items():
            if kind not in ErrorKind.values:
                errors.append(
                    Error(
                        f"RECOVERY_STRATEGY_OVERRIDES[{operation!r}] names the unknown "
                        f"error kind {kind!r}; valid kinds: "
                        + ", ".join(ErrorKind.values),
                        id="integration.E006",
                    )
                )
            if strategy not in StrategyName.values:
                errors.append(
                    Error(
                        f"RECOVERY_STRATEGY_OVERRIDES[{operation!r}][{kind!r}] names "
                        f"the unknown strategy {strategy!r}; valid strategies: "
                        + ", ".join(StrategyName.values),
                        id="integration.E007",
                    )
                )
    return errors
