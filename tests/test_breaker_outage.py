"""The circuit breaker while its Redis server is stopped and started again.

Each test runs its own embedded Redis server in the test's folder, so stopping
it disturbs no other test. Threads keep calling the 1C emulator through the
breaker during the whole run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.embedded_redis import EmbeddedRedis
from freesport.breakers.recorder import TransitionRecorder
from onec_emulator.service import EmulatorService, Fault
from tests.test_breaker_helpers import (
    ALWAYS,
    PASSWORD,
    USER,
    Callers,
    RecordingListener,
    unique_name,
    wait_for,
)
from worker.recovery.circuit_board import BreakerBoard
from worker.recovery.circuit_config import BoardConfig, BreakerConfig, FailMode
from worker.recovery.circuit_states import BreakerListener, Reason, Scope, State

LOGGER = "worker.recovery.circuit"
LOG_INTERVAL_S = 1.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis")
    server.ensure_running()
    yield server
    server.stop()


@pytest.fixture
def emulator() -> Iterator[EmulatorService]:
    with EmulatorService(user=USER, password=PASSWORD) as service:
        yield service


def make_board(
    server: EmbeddedRedis, fail_mode: FailMode, *listeners: BreakerListener
) -> BreakerBoard:
    return BreakerBoard(
        BoardConfig(
            server.url,
            refresh_interval_s=0.5,
            redis_retry_interval_s=0.2,
            outage_log_interval_s=LOG_INTERVAL_S,
        ),
        breaker_config=BreakerConfig(
            failure_threshold=3,
            recovery_timeout_s=0.5,
            slow_call_s=None,
            fail_mode=fail_mode,
        ),
        listeners=[TransitionRecorder(), *listeners],
    )


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and text in record.getMessage()
    ]


def test_fail_open_survives_redis_restart(
    transactional_db: None,
    own_redis: EmbeddedRedis,
    emulator: EmulatorService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    listener = RecordingListener()
    board = make_board(own_redis, FailMode.OPEN, listener)
    name = unique_name("fail-open")
    breaker = board.breaker(name)
    wait_for(lambda: board.synced, 5.0, "the subscriber")
    try:
        with Callers(emulator.url, breaker) as callers:
            time.sleep(0.3)

            # when: Redis stops in the middle of the run
            outage_started = time.monotonic()
            own_redis.stop()
            wait_for(lambda: not breaker.redis_reachable, 5.0, "the breaker to notice")
            succeeded = callers.count("succeeded")
            time.sleep(0.5)

            # then: calls go ahead, and an in-process breaker guards them
            assert callers.count("succeeded") > succeeded
            emulator.faults.add("ping", Fault.status(503), times=ALWAYS)
            wait_for(lambda: breaker.state is State.OPEN, 5.0, "the in-process breaker")
            wait_for(lambda: callers.count("rejected") > 0, 5.0, "a rejected call")
            assert callers.rejections[0]["reason"] == "process_breaker_open"
            assert callers.rejections[0]["retry_at"] is not None
            emulator.faults.clear()
            time.sleep(1.0)

            # when: Redis is back
            own_redis.ensure_running()
            outage_s = time.monotonic() - outage_started
            wait_for(
                lambda: breaker.redis_reachable and board.synced,
                10.0,
                "the breaker to use Redis again",
            )

            # then: the shared state applies, and changes arrive by pub/sub again
            assert breaker.view is not None
            assert breaker.view.state is State.CLOSED
            control = BreakerBoard(BoardConfig(own_redis.url), subscribe=False)
            control.breaker(name).force_open()
            wait_for(lambda: breaker.state is State.OPEN, 1.0, "the forced state")
            control.breaker(name).reset()
            control.close()
            wait_for(lambda: breaker.state is State.CLOSED, 1.0, "the reset")
            succeeded = callers.count("succeeded")
            time.sleep(0.3)
            assert callers.count("succeeded") > succeeded
    finally:
        board.close()

    assert callers.unexpected == []
    first = messages(caplog, f"Circuit breaker {name} cannot reach Redis at")
    assert len(first) == 1
    assert "calls go ahead under an in-process breaker (fail-open)" in first[0]
    repeated = messages(caplog, f"Circuit breaker {name} still cannot reach Redis")
    assert len(repeated) <= outage_s / LOG_INTERVAL_S + 1
    subscriber = messages(caplog, "Circuit breaker subscriber cannot reach Redis")
    assert 1 <= len(subscriber) <= outage_s / LOG_INTERVAL_S + 1
    assert len(messages(caplog, "reaches Redis again")) == 1
    local = [t for t in listener.transitions if t.scope is Scope.PROCESS]
    assert (local[0].old_state, local[0].new_state) == (State.CLOSED, State.OPEN)
    assert local[0].reason is Reason.FAILURE_THRESHOLD
    assert local[0].exception_type == "freesport.exceptions.OneCConnectionError"

    from freesport.breakers.models import BreakerTransition

    rows = BreakerTransition.objects.filter(breaker=name, scope="process")
    assert rows.count() == len(local)


def test_fail_closed_rejects_while_redis_down(
    transactional_db: None,
    own_redis: EmbeddedRedis,
    emulator: EmulatorService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    board = make_board(own_redis, FailMode.CLOSED)
    name = unique_name("fail-closed")
    breaker = board.breaker(name)
    wait_for(lambda: board.synced, 5.0, "the subscriber")
    try:
        with Callers(emulator.url, breaker) as callers:
            time.sleep(0.3)

            # when: Redis stops in the middle of the run
            own_redis.stop()
            wait_for(lambda: not breaker.redis_reachable, 5.0, "the breaker to notice")
            time.sleep(0.2)  # calls let through before it noticed end
            succeeded = callers.count("succeeded")
            rejected = callers.count("rejected")
            time.sleep(1.0)

            # then: every call is rejected
            assert callers.count("succeeded") == succeeded
            assert callers.count("rejected") > rejected
            assert breaker.state is State.OPEN
            error = breaker.open_error()
            assert error.details["reason"] == "redis_unavailable"
            assert error.retry_after is not None
            assert 0 <= error.retry_after <= 0.2

            # when: Redis is back, calls go through again
            own_redis.ensure_running()
            wait_for(lambda: breaker.redis_reachable, 10.0, "Redis to answer again")
            succeeded = callers.count("succeeded")
            wait_for(
                lambda: callers.count("succeeded") > succeeded, 5.0, "a successful call"
            )
    finally:
        board.close()

    assert callers.unexpected == []
    assert callers.rejections[-1]["reason"] == "redis_unavailable"
    first = messages(caplog, f"Circuit breaker {name} cannot reach Redis at")
    assert len(first) == 1
    assert "calls are rejected until it responds (fail-closed)" in first[0]
    assert len(messages(caplog, "reaches Redis again")) == 1
