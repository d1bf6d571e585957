"""Reading and forcing breaker states for the admin, the command and /metrics.

These callers only read and force states, so they share one board that
starts no subscriber thread (``control_board``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

from freesport.breakers.models import BreakerTransition
from worker.recovery.circuit import RedisCircuitBreaker
from worker.recovery.circuit_board import BreakerBoard, default_listeners
from worker.recovery.circuit_config import (
    board_config_from_settings,
    config_from_settings,
)
from worker.recovery.circuit_states import BreakerView, State, datetime_from_ms

_control_board: BreakerBoard | None = None
_control_lock = threading.Lock()


def control_board() -> BreakerBoard:
    """Return the board of this process for reading and forcing states."""
    global _control_board
    with _control_lock:
        if _control_board is None:
            _control_board = BreakerBoard(
                board_config_from_settings(),
                breaker_config=config_from_settings,
                listeners=default_listeners(),
                subscribe=False,
            )
        return _control_board


def close_control_board() -> None:
    """Write pending transitions and close the board. A command calls it at exit."""
    global _control_board
    with _control_lock:
        board, _control_board = _control_board, None
    if board is not None:
        board.close()


@dataclass(frozen=True)
class BreakerStatus:
    """A breaker's shared state as Redis returned it, or the error that prevented it."""

    name: str
    view: BreakerView | None
    error: str = ""


def known_breaker_names(board: BreakerBoard) -> list[str]:
    """Return breakers named in ONEC_BREAKER_NAMES, stored in Redis or in the log.

    Raises redis-py's errors when Redis is unreachable.
    """
    names = set(getattr(settings, "ONEC_BREAKER_NAMES", ()))
    names.update(board.names_in_redis())
    names.update(BreakerTransition.objects.values_list("breaker", flat=True).distinct())
    return sorted(names)


def breaker_statuses(names: list[str] | None = None) -> list[BreakerStatus]:
    """Load the shared state of ``names`` (default: every known breaker)."""
    board = control_board()
    if names is None:
        try:
            names = known_breaker_names(board)
        except redis.RedisError as error:
            return [BreakerStatus(name="", view=None, error=describe(error))]
    statuses = []
    for name in names:
        try:
            statuses.append(BreakerStatus(name, board.breaker(name).status()))
        except redis.RedisError as error:
            statuses.append(BreakerStatus(name, None, describe(error)))
    return statuses


def view_as_dict(name: str, view: BreakerView) -> dict[str, Any]:
    """Describe a breaker's shared state as JSON-ready values; times in ISO format."""
    retry_at = None
    if view.state is State.OPEN and view.retry_at_ms:
        retry_at = datetime_from_ms(view.retry_at_ms).isoformat()
    return {
        "name": name,
        "state": view.state.value,
        "forced": view.forced.value if view.forced else None,
        "failures": view.failures,
        "trials": view.trials,
        "half_open_successes": view.half_open_successes,
        "retry_at": retry_at,
        "changed_at": datetime_from_ms(view.changed_at_ms).isoformat(),
    }


def breaker_report() -> list[dict[str, Any]]:
    """Describe every known breaker, or the Redis error that prevented it.

    For reports such as ``onec_status``: it closes the control board, so the
    transitions that reading may make are written before the command exits.
    """
    try:
        statuses = breaker_statuses()
    finally:
        close_control_board()
    return [
        view_as_dict(status.name, status.view)
        if status.view is not None
        else {"name": status.name, "error": status.error}
        for status in statuses
    ]


ACTIONS: dict[str, Callable[[RedisCircuitBreaker, str], BreakerView]] = {
    "open": RedisCircuitBreaker.force_open,
    "close": RedisCircuitBreaker.force_close,
    "reset": RedisCircuitBreaker.reset,
}


def apply_action(name: str, action: str, actor: str) -> BreakerView:
    """Force breaker ``name`` open or closed, or reset it. Raises redis-py's errors."""
    try:
        method = ACTIONS[action]
    except KeyError:
        raise ValueError(
            f"unknown breaker action {action!r}; expected one of {', '.join(ACTIONS)}"
        ) from None
    return method(control_board().breaker(name), actor)


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
