"""States, transitions and listener hooks of the circuit breakers.

The Lua script in ``circuit_script.lua`` makes every shared transition and the
in-process fallback (``circuit_memory``) makes the ones while Redis is down.
Both report them as ``Transition`` values to ``BreakerListener`` hooks.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

logger = logging.getLogger("worker.recovery.circuit")


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @classmethod
    def parse(cls, value: str) -> State:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(
                f"unknown circuit state {value!r}; expected one of " + ", ".join(cls)
            ) from None


class Reason(enum.StrEnum):
    """Cause of a state change, stored in the transition log."""

    FAILURE_THRESHOLD = "failure_threshold"
    FAILURE_RATE = "failure_rate"
    RECOVERY_TIMEOUT = "recovery_timeout"
    TRIAL_FAILED = "trial_failed"
    SUCCESS_THRESHOLD = "success_threshold"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"
    RESET = "reset"


class Scope(enum.StrEnum):
    """Place of a transition: shared through Redis, or in one process."""

    # In Redis, so every process learns of it.
    SHARED = "shared"
    # In the in-process breaker of one process, while Redis was unreachable.
    PROCESS = "process"


class Verdict(enum.StrEnum):
    """Decision of the Lua script on one request."""

    ALLOWED = "allowed"
    TRIAL = "trial"
    REJECTED = "rejected"
    COUNTED = "counted"
    # A success or failure that no longer applies: a trial whose lease expired,
    # or a call that was let through before the breaker opened.
    STALE = "stale"
    # Outcomes while an operator keeps the breaker open or closed.
    IGNORED = "ignored"
    RELEASED = "released"
    NONE = ""


@dataclass(frozen=True)
class BreakerView:
    """A process's copy of a breaker's shared state, as Redis last reported it.

    Times ending in ``_ms`` are Redis ``TIME`` in milliseconds since the epoch.
    ``received_at`` is this process's ``time.monotonic()`` when the copy
    arrived, so the current Redis time can be estimated without asking Redis.
    ``generation`` changes when the breaker's keys are created again (a Redis
    restart), and ``seq`` grows with every published change within one
    generation, so an older copy never replaces a newer one.
    """

    state: State
    failures: int
    retry_at_ms: int
    changed_at_ms: int
    forced: State | None
    seq: int
    generation: str
    redis_now_ms: int
    received_at: float
    half_open_successes: int = 0
    trials: int = 0
    # Deadline of the trial lease that expires first, 0 when none is held.
    next_lease_expiry_ms: int = 0

    def is_newer_than(self, other: BreakerView | None) -> bool:
        """Return whether this copy may replace ``other``."""
        if other is None or self.generation != other.generation:
            return True
        return self.seq >= other.seq

    def estimated_redis_ms(self, monotonic_now: float) -> float:
        """Estimate Redis time now from this copy and the local monotonic clock.

        The copy spent a moment in transit, so the estimate tends to run behind
        Redis: a breaker relying on it rejects a little longer rather than
        starting trials early. Redis still decides when trials start.
        """
        return self.redis_now_ms + (monotonic_now - self.received_at) * 1000

    @property
    def lets_calls_through(self) -> bool:
        """Return whether every call may pass without asking Redis."""
        if self.forced is not None:
            return self.forced is State.CLOSED
        return self.state is State.CLOSED

    @property
    def resets_on_success(self) -> bool:
        """Return whether a success must be sent to clear the failure count."""
        return self.forced is None and self.state is State.CLOSED and self.failures > 0


@dataclass(frozen=True)
class Transition:
    """One change of a breaker's state, reported once by the process that made it."""

    breaker: str
    old_state: State
    new_state: State
    reason: Reason
    # Consecutive failures when the change was made (the count that opened it).
    failures: int
    # Redis TIME of the change for shared transitions, this process's clock for
    # transitions of the in-process breaker.
    changed_at: datetime
    scope: Scope = Scope.SHARED
    exception_type: str = ""
    exception_message: str = ""
    # Who forced the change: "admin:<user name>", "command", or "" for the breaker.
    actor: str = ""

    @property
    def summary(self) -> str:
        return (
            f"circuit breaker {self.breaker} {self.old_state} -> {self.new_state} "
            f"({self.reason}, {self.scope}, failures={self.failures})"
        )


def datetime_from_ms(milliseconds: float) -> datetime:
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)


class BreakerListener:
    """Hooks for a breaker's state changes; override the ones you need.

    Hooks run in the thread that saw the change, which may be a caller's
    thread or the subscriber thread, so they must return quickly. An exception
    in a hook is logged and never reaches the call the breaker guards.
    """

    def transition(self, transition: Transition) -> None:
        """Handle a transition that this process made (once per transition)."""

    def view_changed(
        self, name: str, old: BreakerView | None, new: BreakerView
    ) -> None:
        """Handle a change of this process's copy of a breaker's state."""

    def close(self) -> None:
        """Finish pending work; the board calls this when it closes."""


class LoggingListener(BreakerListener):
    """Logs every transition this process made, one line each."""

    def __init__(self, log: logging.Logger = logger) -> None:
        self.log = log

    def transition(self, transition: Transition) -> None:
        level = (
            logging.INFO if transition.new_state is State.CLOSED else logging.WARNING
        )
        if transition.exception_type:
            self.log.log(
                level,
                "%s, last error %s",
                transition.summary,
                transition.exception_type,
            )
        else:
            self.log.log(level, "%s", transition.summary)
