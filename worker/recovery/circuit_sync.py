"""Subscriber thread that keeps a process's copies of the breakers current.

The Lua script publishes every state change. One thread per process and Redis
server listens on that channel and hands each message to the board, so a
change made anywhere reaches every process within a pub/sub round trip. Every
``refresh_interval_s`` the thread also reloads every breaker, in case a
message was lost while the connection was down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from worker.recovery.circuit_config import BoardConfig

logger = logging.getLogger("worker.recovery.circuit")

# Maximum wait for a message before the thread checks whether it should stop,
# so stop() returns within this time.
STOP_POLL_S = 0.25


class BreakerSync:
    """Pub/sub subscriber and periodic refresh of one process's breakers."""

    def __init__(
        self,
        client: redis.Redis,
        config: BoardConfig,
        *,
        on_message: Callable[[bytes, float], None],
        on_refresh: Callable[[], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.config = config
        self.on_message = on_message
        self.on_refresh = on_refresh
        self.monotonic = monotonic
        # True while subscribed. Published changes arrive only then, so breakers
        # trust their local copy only while it is set.
        self.connected = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_log = 0.0
        self._failures_since_log = 0

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name="circuit-breaker-sync", daemon=True
        )
        self._thread.start()

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.connected = False

    def _run(self) -> None:
        while not self._stopping.is_set():
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(self.config.channel)
                self._listen(pubsub)
            except (redis.RedisError, OSError) as error:
                self._lost(error)
                self._stopping.wait(self.config.redis_retry_interval_s)
            except Exception:
                # A bug in a handler must not end the thread, or the process
                # would stop learning about changes for good.
                self.connected = False
                logger.exception("Circuit breaker subscriber failed; restarting it")
                self._stopping.wait(self.config.redis_retry_interval_s)
            finally:
                self.connected = False
                self._close(pubsub)

    def _listen(self, pubsub: redis.client.PubSub) -> None:
        next_refresh = self.monotonic() + self.config.refresh_interval_s
        while not self._stopping.is_set():
            timeout = min(max(next_refresh - self.monotonic(), 0.0), STOP_POLL_S)
            message = pubsub.get_message(timeout=timeout)
            if message is not None:
                self._handle(message)
            if self.monotonic() >= next_refresh:
                self.on_refresh()
                next_refresh = self.monotonic() + self.config.refresh_interval_s

    def _handle(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        if kind == "message":
            data = message.get("data")
            if isinstance(data, bytes | str):
                self.on_message(
                    data.encode() if isinstance(data, str) else data, self.monotonic()
                )
        elif kind == "subscribe":
            # Changes published before the subscription was active are missed,
            # so every breaker is reloaded once it is, before its copy is trusted.
            self.on_refresh()
            self.connected = True
            if self._failures_since_log:
                logger.warning(
                    "Circuit breaker subscriber reconnected to Redis at %s",
                    self.config.safe_redis_url,
                )
                self._failures_since_log = 0

    def _lost(self, error: BaseException) -> None:
        """Log a lost or failed subscription, at most once per log interval."""
        self.connected = False
        self._failures_since_log += 1
        now = self.monotonic()
        if now < self._next_log:
            return
        self._next_log = now + self.config.outage_log_interval_s
        logger.warning(
            "Circuit breaker subscriber cannot reach Redis at %s (%s: %s); "
            "failed attempts so far: %d; retrying every %.1f s",
            self.config.safe_redis_url,
            type(error).__name__,
            error,
            self._failures_since_log,
            self.config.redis_retry_interval_s,
        )

    @staticmethod
    def _close(pubsub: redis.client.PubSub) -> None:
        try:
            pubsub.close()
        except (redis.RedisError, OSError):
            pass  # the connection is already gone
