"""Redis outages of one circuit breaker: retry schedule, fallback and logging.

While a breaker cannot reach Redis, ``Outage`` contains the in-process breaker
that decides calls under fail-open. ``OutageTracker`` decides when to try Redis
again and logs the outage: one line when it starts, at most one per log
interval while it lasts, and one when Redis responds again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from worker.recovery.circuit_config import BoardConfig, BreakerConfig, FailMode
from worker.recovery.circuit_memory import MemoryCircuit

logger = logging.getLogger("worker.recovery.circuit")


class Outage:
    """Outage of Redis for one breaker: its start, the next attempt, the fallback."""

    def __init__(
        self,
        config: BreakerConfig,
        board: BoardConfig,
        monotonic: Callable[[], float],
    ) -> None:
        now = monotonic()
        self.since = now
        self.next_attempt = now + board.redis_retry_interval_s
        self.next_log = now + board.outage_log_interval_s
        self.memory = MemoryCircuit(config, monotonic)
        # Calls decided without Redis. Approximate, because threads add to it
        # without a lock.
        self.calls = 0


class OutageTracker:
    """The current Redis outage of one breaker, if any."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        board: BoardConfig,
        monotonic: Callable[[], float],
    ) -> None:
        self.name = name
        self.config = config
        self.board = board
        self.monotonic = monotonic
        self.current: Outage | None = None
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget the outage and create the lock again, as a forked child must."""
        self._lock = threading.Lock()
        self.current = None

    def attempt_due(self) -> bool:
        """Return whether to use Redis now. During an outage, once per interval."""
        outage = self.current
        if outage is None:
            return True
        now = self.monotonic()
        with self._lock:
            if now < outage.next_attempt:
                return False
            outage.next_attempt = now + self.board.redis_retry_interval_s
            return True

    def begin(self, error: redis.RedisError) -> None:
        """Record a failed Redis call: start an outage or log that it goes on."""
        with self._lock:
            outage = self.current
            if outage is None:
                self.current = Outage(self.config, self.board, self.monotonic)
        if outage is None:
            logger.warning(
                "Circuit breaker %s cannot reach Redis at %s (%s: %s); %s",
                self.name,
                self.board.safe_redis_url,
                type(error).__name__,
                error,
                self.consequence(),
            )
            return
        now = self.monotonic()
        if now >= outage.next_log:
            outage.next_log = now + self.board.outage_log_interval_s
            logger.warning(
                "Circuit breaker %s still cannot reach Redis after %.0f s (%s: %s); "
                "%d calls decided without it so far; %s",
                self.name,
                now - outage.since,
                type(error).__name__,
                error,
                outage.calls,
                self.consequence(),
            )

    def end(self) -> None:
        """Record a successful Redis call, which ends an outage."""
        if self.current is None:
            return
        with self._lock:
            outage, self.current = self.current, None
        if outage is not None:
            logger.warning(
                "Circuit breaker %s reaches Redis again after %.1f s; %d calls were "
                "decided without it. The shared state applies again",
                self.name,
                self.monotonic() - outage.since,
                outage.calls,
            )

    def consequence(self) -> str:
        if self.config.fail_mode is FailMode.CLOSED:
            return "calls are rejected until it responds (fail-closed)"
        return "calls go ahead under an in-process breaker (fail-open)"
