"""The breakers of one process: Redis client, subscriber thread and listeners.

``default_board()`` is built from the Django settings on first use and gives
every thread of the process the same breaker per name. A process forked from
one that used breakers (a Celery prefork child) starts its own subscriber
thread on its first call, because threads do not survive ``fork``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker.recovery.circuit import RedisCircuitBreaker
from worker.recovery.circuit_config import (
    BoardConfig,
    BreakerConfig,
    board_config_from_settings,
    check_name,
    config_from_settings,
)
from worker.recovery.circuit_script import BreakerKeys, parse_message
from worker.recovery.circuit_states import (
    BreakerListener,
    BreakerView,
    LoggingListener,
    Transition,
)
from worker.recovery.circuit_sync import BreakerSync

logger = logging.getLogger("worker.recovery.circuit")

ConfigSource = BreakerConfig | Callable[[str], BreakerConfig]


def make_client(config: BoardConfig) -> redis.Redis:
    """Build a Redis client that fails fast and never repeats a command.

    redis-py retries failed commands three times by default, which would both
    delay calls while Redis is down and could count one failure twice.
    """
    return redis.Redis.from_url(
        config.redis_url,
        socket_timeout=config.redis_timeout_s,
        socket_connect_timeout=config.redis_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


class BreakerBoard:
    """Circuit breakers of one process that share a Redis server.

    ``breaker_config`` is one configuration for every breaker or a function
    from breaker name to configuration. Without ``subscribe`` the board starts
    no thread, and its breakers ask Redis on every call: enough for the admin,
    the management command and the metrics view, which only read and force
    states.
    """

    def __init__(
        self,
        config: BoardConfig,
        *,
        breaker_config: ConfigSource | None = None,
        listeners: Iterable[BreakerListener] = (),
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        subscribe: bool = True,
    ) -> None:
        self.config = config
        self.client = make_client(config)
        self._breaker_config = breaker_config or BreakerConfig()
        self.listeners = list(listeners)
        self.clock = clock
        self.monotonic = monotonic
        self.subscribe = subscribe
        self._breakers: dict[str, RedisCircuitBreaker] = {}
        self._lock = threading.Lock()
        self._sync: BreakerSync | None = None
        self._closed = False
        self._make_sync()
        _boards.add(self)

    def _make_sync(self) -> None:
        if not self.subscribe:
            return
        self._sync = BreakerSync(
            self.client,
            self.config,
            on_message=self._on_message,
            on_refresh=self.refresh_all,
            monotonic=self.monotonic,
        )

    @property
    def synced(self) -> bool:
        """Return whether published changes reach this process now."""
        sync = self._sync
        return sync is not None and sync.connected

    def ensure_sync(self) -> None:
        """Start the subscriber thread unless it runs or the board is closed."""
        sync = self._sync
        if sync is not None and not self._closed and not sync.is_running():
            sync.start()

    def config_for(self, name: str) -> BreakerConfig:
        source = self._breaker_config
        return source if isinstance(source, BreakerConfig) else source(name)

    def breaker(self, name: str) -> RedisCircuitBreaker:
        """Return the breaker ``name``, creating it and loading its state once."""
        breaker = self._breakers.get(name)
        if breaker is not None:
            return breaker
        check_name(name)
        with self._lock:
            breaker = self._breakers.get(name)
            created = breaker is None
            if breaker is None:
                breaker = RedisCircuitBreaker(
                    name,
                    self.config_for(name),
                    self,
                    clock=self.clock,
                    monotonic=self.monotonic,
                )
                self._breakers[name] = breaker
        if created:
            breaker.refresh(force=True)
            self.ensure_sync()
        return breaker

    def breakers(self) -> list[RedisCircuitBreaker]:
        return list(self._breakers.values())

    def names_in_redis(self) -> list[str]:
        """Return the names of every breaker that has state in Redis."""
        prefix = BreakerKeys.for_breaker(self.config.key_prefix, "").state
        start = prefix.removesuffix("}")
        names = set()
        for key in self.client.scan_iter(match=f"{start}*}}", count=500):
            text = key.decode("utf-8") if isinstance(key, bytes) else str(key)
            name = text[len(start) : -1]
            if name and "}" not in name:
                names.add(name)
        return sorted(names)

    def refresh_all(self) -> None:
        for breaker in self.breakers():
            breaker.refresh(force=True)

    # --- Listener hooks ----------------------------------------------------------

    def notify_transition(self, transition: Transition) -> None:
        for listener in self.listeners:
            try:
                listener.transition(transition)
            except Exception:
                logger.exception(
                    "Circuit breaker listener %r failed on %s",
                    listener,
                    transition.summary,
                )

    def notify_view_changed(
        self, name: str, old: BreakerView | None, new: BreakerView
    ) -> None:
        for listener in self.listeners:
            try:
                listener.view_changed(name, old, new)
            except Exception:
                logger.exception(
                    "Circuit breaker listener %r failed on a change of %s",
                    listener,
                    name,
                )

    def _on_message(self, data: bytes, received_at: float) -> None:
        parsed = parse_message(data, received_at)
        if parsed is None:
            logger.warning("Circuit breaker subscriber ignored a malformed message")
            return
        name, view = parsed
        breaker = self._breakers.get(name)
        if breaker is not None:
            breaker.apply_published(view)

    # --- Lifetime ---------------------------------------------------------------

    def close(self) -> None:
        """Stop the subscriber thread, finish the listeners, close connections."""
        self._closed = True
        if self._sync is not None:
            self._sync.stop()
        for listener in self.listeners:
            try:
                listener.close()
            except Exception:
                logger.exception(
                    "Circuit breaker listener %r failed to close", listener
                )
        self.client.close()

    def _after_fork_in_child(self) -> None:
        # Locks may have been held by threads that do not exist in the child,
        # and the subscriber thread is gone, so both are created again.
        self._lock = threading.Lock()
        self._make_sync()
        for breaker in self._breakers.values():
            breaker._reset_process_state()


# Every board of the process, so that a forked child can reset them.
_boards: weakref.WeakSet[BreakerBoard] = weakref.WeakSet()
_default_board: BreakerBoard | None = None
_default_lock = threading.Lock()


def default_listeners() -> list[BreakerListener]:
    """Log every transition and write it to the transition log table."""
    from freesport.breakers.recorder import TransitionRecorder

    return [LoggingListener(), TransitionRecorder()]


def default_board() -> BreakerBoard:
    """Return the process's board built from the Django settings."""
    global _default_board
    board = _default_board
    if board is None:
        with _default_lock:
            if _default_board is None:
                _default_board = BreakerBoard(
                    board_config_from_settings(),
                    breaker_config=config_from_settings,
                    listeners=default_listeners(),
                )
            board = _default_board
    return board


def close_default_board() -> None:
    """Close the default board; the next ``default_board()`` builds a new one."""
    global _default_board
    with _default_lock:
        board, _default_board = _default_board, None
    if board is not None:
        board.close()


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for board in list(_boards):
        board._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
