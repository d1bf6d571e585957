"""Which strategy ends which kind of error, with per-operation overrides.

``DEFAULT_STRATEGIES`` contains the defaults. ``RECOVERY_STRATEGY_OVERRIDES`` maps
a task's short name ("export_customer"), its full name or its operation
("export_customers") to ``{error kind: strategy}``; the most specific key wins:
full task name, then short name, then operation.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings

from freesport.integration.choices import ErrorKind, StrategyName
from worker.recovery.strategies import STRATEGIES, Strategy

DEFAULT_STRATEGIES: Mapping[str, StrategyName] = {
    ErrorKind.CONNECTION: StrategyName.RETRY,
    ErrorKind.TIMEOUT: StrategyName.RETRY,
    ErrorKind.DATABASE_UNAVAILABLE: StrategyName.RETRY,
    ErrorKind.BROKER_UNAVAILABLE: StrategyName.RETRY,
    ErrorKind.AUTHENTICATION: StrategyName.REFRESH_CREDENTIALS,
    # 1C sent a response the site cannot read, and a retry gets the same one.
    ErrorKind.DATA_FORMAT: StrategyName.LOG_AND_SKIP,
    # The record that the task was sent for is gone.
    ErrorKind.NOT_FOUND: StrategyName.LOG_AND_SKIP,
    ErrorKind.BUSINESS: StrategyName.MANUAL_TASK,
    ErrorKind.VALIDATION: StrategyName.MANUAL_TASK,
    ErrorKind.UNKNOWN: StrategyName.ESCALATE,
}


def override_keys(task_name: str, operation: str) -> tuple[str, ...]:
    short_name = task_name.rsplit(".", 1)[-1]
    return (task_name, short_name, operation)


def strategy_name_for(task_name: str, operation: str, kind: str) -> str:
    """Return the name of the strategy for ``kind`` in this task or operation."""
    overrides: Mapping[str, Mapping[str, str]] = getattr(
        settings, "RECOVERY_STRATEGY_OVERRIDES", {}
    )
    for key in override_keys(task_name, operation):
        chosen = overrides.get(key, {}).get(kind)
        if chosen:
            return chosen
    return DEFAULT_STRATEGIES.get(kind, StrategyName.ESCALATE)


def strategy_for(task_name: str, operation: str, kind: str) -> Strategy:
    name = strategy_name_for(task_name, operation, kind)
    try:
        strategy_class = STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown recovery strategy {name!r} for {task_name} and error kind "
            f"{kind!r}; valid strategies: {', '.join(STRATEGIES)}"
        ) from None
    return strategy_class()
