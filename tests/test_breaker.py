"""Rules of the Redis-shared circuit breaker, in one process on the test Redis.

A "process" here is a ``BreakerBoard``: its own Redis client, subscriber
thread and copies of the breakers, as a worker process has. Tests that need
separate operating-system processes are in test_breaker_processes.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from freesport.exceptions import (
    BusinessLogicError,
    OneCBusinessError,
    OneCConnectionError,
    OneCTimeoutError,
    ValidationError,
)
from onec_emulator.service import EmulatorService, Fault
from tests.test_breaker_helpers import (
    ALWAYS,
    PASSWORD,
    USER,
    RecordingListener,
    unique_name,
    wait_for,
)
from worker.onec import OneCClient, StaticCredentials
from worker.recovery.breaker import CircuitBreaker, CircuitOpenError, breaker_for
from worker.recovery.circuit import RedisCircuitBreaker
from worker.recovery.circuit_board import BreakerBoard, close_default_board
from worker.recovery.circuit_config import (
    BoardConfig,
    BreakerConfig,
    FailMode,
    config_from_settings,
)
from worker.recovery.circuit_memory import MemoryCircuit
from worker.recovery.circuit_script import SCRIPT_SHA, BreakerKeys
from worker.recovery.circuit_states import Reason, Scope, State, Verdict

FAST = {"recovery_timeout_s": 0.3, "trial_lease_s": 5.0, "slow_call_s": None}


class Board:
    """Builds boards on the test Redis and closes them after the test."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.boards: list[BreakerBoard] = []

    def __call__(self, **config: Any) -> tuple[BreakerBoard, RecordingListener]:
        listener = RecordingListener()
        board = BreakerBoard(
            BoardConfig(self.redis_url, refresh_interval_s=1.0),
            breaker_config=BreakerConfig(**config),
            listeners=[listener],
        )
        self.boards.append(board)
        return board, listener

    def close(self) -> None:
        for board in self.boards:
            board.close()


@pytest.fixture
def make_board(redis_server: str) -> Iterator[Board]:
    boards = Board(redis_server)
    yield boards
    boards.close()


@pytest.fixture
def redis_client(redis_server: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server)
    yield client
    client.close()


def failing(error: BaseException) -> Callable[[], None]:
    def call() -> None:
        raise error

    return call


def succeed() -> str:
    return "ok"


def fail_times(breaker: RedisCircuitBreaker, count: int) -> None:
    for _ in range(count):
        with pytest.raises(OneCConnectionError):
            breaker.call(failing(OneCConnectionError("GET /ping answered 503")))


def in_thread(func: Callable[[], Any]) -> Any:
    """Run ``func`` in a new thread, which has no call in progress, and return its result."""
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(func()))
    thread.start()
    thread.join()
    return results[0]


def wait_until_open_ends(breaker: RedisCircuitBreaker) -> None:
    time.sleep((breaker.retry_after() or 0.0) + 0.05)


# --- Opening ------------------------------------------------------------------


def test_consecutive_failures_open(make_board: Board) -> None:
    board, listener = make_board(failure_threshold=5, **FAST)
    breaker = board.breaker(unique_name("threshold"))

    fail_times(breaker, 4)
    assert breaker.state is State.CLOSED
    fail_times(breaker, 1)

    assert breaker.state is State.OPEN
    [opening] = listener.transitions
    assert opening.old_state is State.CLOSED
    assert opening.new_state is State.OPEN
    assert opening.reason is Reason.FAILURE_THRESHOLD
    assert opening.failures == 5
    assert opening.scope is Scope.SHARED
    assert opening.exception_type == "freesport.exceptions.OneCConnectionError"
    assert opening.exception_message == "GET /ping answered 503"


def test_success_clears_failure_count(make_board: Board) -> None:
    board, listener = make_board(failure_threshold=3, **FAST)
    breaker = board.breaker(unique_name("clear"))

    fail_times(breaker, 2)
    assert breaker.call(succeed) == "ok"
    fail_times(breaker, 2)

    assert breaker.state is State.CLOSED
    assert breaker.status().failures == 2
    assert listener.transitions == []


def test_success_elsewhere_clears_failure_count(make_board: Board) -> None:
    # given: two processes, and the first counted two failures
    first, _ = make_board(failure_threshold=3, **FAST)
    second, _ = make_board(failure_threshold=3, **FAST)
    name = unique_name("clear-elsewhere")
    one, other = first.breaker(name), second.breaker(name)
    wait_for(lambda: first.synced and second.synced, 5.0, "both subscribers")
    fail_times(one, 2)

    # when: the second learns of the failures and then succeeds
    wait_for(lambda: other.view and other.view.failures > 0, 1.0, "the failure count")
    other.call(succeed)

    # then: the count is cleared for both
    assert one.status().failures == 0
    fail_times(one, 2)
    assert one.state is State.CLOSED


@pytest.mark.parametrize(
    "error",
    [
        OneCBusinessError("POST /customers answered 422"),
        ValidationError("invalid INN"),
        BusinessLogicError("order total is negative"),
    ],
)
def test_excluded_errors_never_count(make_board: Board, error: Exception) -> None:
    board, _ = make_board(failure_threshold=2, **FAST)
    breaker = board.breaker(unique_name("excluded"))

    for _ in range(5):
        with pytest.raises(type(error)):
            breaker.call(failing(error))

    assert breaker.state is State.CLOSED
    assert breaker.status().failures == 0


def test_excluded_errors_are_configurable(make_board: Board) -> None:
    board, _ = make_board(failure_threshold=2, excluded=(OneCTimeoutError,), **FAST)
    breaker = board.breaker(unique_name("excluded-custom"))

    for _ in range(3):
        with pytest.raises(OneCTimeoutError):
            breaker.call(failing(OneCTimeoutError("GET /ping timed out")))
    assert breaker.state is State.CLOSED
    with pytest.raises(OneCBusinessError):
        breaker.call(failing(OneCBusinessError("POST /customers answered 422")))
    with pytest.raises(OneCBusinessError):
        breaker.call(failing(OneCBusinessError("POST /customers answered 422")))

    assert breaker.state is State.OPEN


def test_slow_success_counts_as_failure(make_board: Board) -> None:
    board, listener = make_board(
        failure_threshold=2, recovery_timeout_s=5.0, slow_call_s=0.05
    )
    breaker = board.breaker(unique_name("slow"))

    def slow() -> str:
        time.sleep(0.08)
        return "late"

    assert breaker.call(slow) == "late"
    assert breaker.status().failures == 1
    assert breaker.call(slow) == "late"

    assert breaker.state is State.OPEN
    [opening] = listener.transitions
    assert opening.exception_type == ""
    assert "slow-call threshold of 0.05 s" in opening.exception_message


def test_failure_rate_opens(make_board: Board) -> None:
    # given: only the rate rule, because the consecutive rule is out of reach
    board, listener = make_board(
        failure_threshold=100,
        failure_rate=0.5,
        window_s=30.0,
        minimum_calls=10,
        **FAST,
    )
    breaker = board.breaker(unique_name("rate"))

    # when: every other call fails
    for _ in range(4):
        breaker.call(succeed)
        fail_times(breaker, 1)
    assert breaker.state is State.CLOSED  # 8 calls: below the minimum
    breaker.call(succeed)
    fail_times(breaker, 1)

    # then: the tenth call reaches the minimum at a 50% failure rate
    assert breaker.state is State.OPEN
    [opening] = listener.transitions
    assert opening.reason is Reason.FAILURE_RATE


def test_failure_rate_counts_batched_successes(make_board: Board) -> None:
    board, _ = make_board(
        failure_threshold=100, failure_rate=0.5, window_s=30.0, minimum_calls=10, **FAST
    )
    breaker = board.breaker(unique_name("rate-batched"))

    for _ in range(30):
        breaker.call(succeed)
    fail_times(breaker, 10)

    # 10 failures in 40 calls: 25%, below the rate.
    assert breaker.state is State.CLOSED


# --- Open -------------------------------------------------------------------


def test_open_breaker_rejects_without_calling(make_board: Board) -> None:
    board, _ = make_board(failure_threshold=1, recovery_timeout_s=30.0)
    name = unique_name("reject")
    breaker = board.breaker(name)
    fail_times(breaker, 1)
    calls: list[int] = []

    with pytest.raises(CircuitOpenError) as raised:
        breaker.call(lambda: calls.append(1))

    error = raised.value
    assert calls == []
    assert isinstance(error, OneCConnectionError)
    assert error.code == "CIRCUIT_OPEN"
    assert error.details["breaker"] == name
    assert error.details["state"] == "open"
    assert error.details["retry_at"].endswith("+00:00")
    assert error.retry_after is not None
    assert 29.0 < error.retry_after <= 30.0
    retry_at = breaker.retry_at()
    assert retry_at is not None
    assert 29.0 < retry_at.timestamp() - time.time() <= 30.0


def test_own_rejection_is_not_a_failure(make_board: Board) -> None:
    board, listener = make_board(failure_threshold=2, recovery_timeout_s=0.3)
    breaker = board.breaker(unique_name("own-rejection"))
    fail_times(breaker, 2)

    # The dispatcher reports the rejection it raised as a connection failure.
    for _ in range(5):
        breaker.record_failure(breaker.open_error())
    wait_until_open_ends(breaker)

    assert in_thread(breaker.allow) is True
    assert [t.new_state for t in listener.transitions] == [State.OPEN, State.HALF_OPEN]


def test_open_rejection_makes_no_round_trip(
    make_board: Board, redis_client: redis.Redis
) -> None:
    board, _ = make_board(failure_threshold=1, recovery_timeout_s=30.0)
    breaker = board.breaker(unique_name("open-local"))
    wait_for(lambda: board.synced, 5.0, "the subscriber")
    fail_times(breaker, 1)
    before = script_calls(redis_client)

    for _ in range(200):
        assert breaker.allow() is False

    assert script_calls(redis_client) == before


# --- Half-open --------------------------------------------------------------


def test_half_open_allows_k_trials(make_board: Board) -> None:
    board, listener = make_board(
        failure_threshold=1, half_open_max_calls=2, success_threshold=3, **FAST
    )
    breaker = board.breaker(unique_name("trials"))
    fail_times(breaker, 1)
    wait_until_open_ends(breaker)

    allowed = [in_thread(breaker.allow) for _ in range(4)]

    assert allowed == [True, True, False, False]
    assert breaker.state is State.HALF_OPEN
    assert breaker.status().trials == 2
    with pytest.raises(CircuitOpenError) as raised:
        breaker.call(succeed)
    assert raised.value.details["state"] == "half_open"
    assert raised.value.retry_after is not None
    assert 4.0 < raised.value.retry_after <= 5.0  # until the first lease expires
    assert [t.reason for t in listener.transitions] == [
        Reason.FAILURE_THRESHOLD,
        Reason.RECOVERY_TIMEOUT,
    ]


def test_trial_successes_close(make_board: Board) -> None:
    board, listener = make_board(failure_threshold=1, success_threshold=3, **FAST)
    breaker = board.breaker(unique_name("close"))
    fail_times(breaker, 1)
    wait_until_open_ends(breaker)

    for expected in (State.HALF_OPEN, State.HALF_OPEN, State.CLOSED):
        assert breaker.call(succeed) == "ok"
        assert breaker.state is expected

    assert [(t.old_state, t.new_state) for t in listener.transitions] == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]
    assert listener.transitions[-1].reason is Reason.SUCCESS_THRESHOLD


def test_trial_failure_reopens(make_board: Board) -> None:
    board, listener = make_board(failure_threshold=1, success_threshold=3, **FAST)
    breaker = board.breaker(unique_name("reopen"))
    fail_times(breaker, 1)
    wait_until_open_ends(breaker)
    breaker.call(succeed)

    fail_times(breaker, 1)

    assert breaker.state is State.OPEN
    reopening = listener.transitions[-1]
    assert (reopening.old_state, reopening.new_state) == (State.HALF_OPEN, State.OPEN)
    assert reopening.reason is Reason.TRIAL_FAILED
    retry_after = breaker.retry_after()
    assert retry_after is not None
    assert 0.2 < retry_after <= 0.3


def test_excluded_error_releases_trial(make_board: Board) -> None:
    board, _ = make_board(failure_threshold=1, half_open_max_calls=1, **FAST)
    breaker = board.breaker(unique_name("release"))
    fail_times(breaker, 1)
    wait_until_open_ends(breaker)

    with pytest.raises(OneCBusinessError):
        breaker.call(failing(OneCBusinessError("POST /customers answered 422")))

    assert breaker.status().trials == 0
    assert breaker.state is State.HALF_OPEN
    assert in_thread(breaker.allow) is True


def test_expired_lease_frees_trial_slot(make_board: Board) -> None:
    board, _ = make_board(
        failure_threshold=1,
        half_open_max_calls=1,
        recovery_timeout_s=0.2,
        trial_lease_s=0.5,
        slow_call_s=None,
    )
    breaker = board.breaker(unique_name("expiry"))
    fail_times(breaker, 1)
    wait_until_open_ends(breaker)
    assert in_thread(breaker.allow) is True  # a thread that never reports

    assert in_thread(breaker.allow) is False
    time.sleep(0.55)

    assert in_thread(breaker.allow) is True


def test_unreported_trial_released_on_next_call(make_board: Board) -> None:
    board, _ = make_board(failure_threshold=1, half_open_max_calls=1, **FAST)
    breaker = board.breaker(unique_name("abandoned"))
    fail_times(breaker, 1)
    wait_until_open_ends(breaker)

    assert breaker.allow() is True
    assert breaker.allow() is True  # the same thread: its first trial is given back

    assert breaker.status().trials == 1


def test_success_of_expired_trial_is_stale(make_board: Board) -> None:
    board, _ = make_board(
        failure_threshold=1,
        success_threshold=1,
        recovery_timeout_s=0.2,
        trial_lease_s=0.3,
        slow_call_s=None,
    )
    breaker = board.breaker(unique_name("stale"))
    fail_times(breaker, 1)
    wait_until_open_ends(breaker)
    assert breaker.allow() is True

    time.sleep(0.35)
    breaker.record_success()

    assert breaker.status().state is State.HALF_OPEN


# --- Sharing between processes ---------------------------------------------


def test_change_reaches_other_process_quickly(make_board: Board) -> None:
    first, _ = make_board(**FAST)
    second, listener = make_board(**FAST)
    name = unique_name("propagation")
    first.breaker(name)
    other = second.breaker(name)
    wait_for(lambda: first.synced and second.synced, 5.0, "both subscribers")

    started = time.monotonic()
    first.breaker(name).force_open()
    wait_for(lambda: other.state is State.OPEN, 0.1, "the change in the other process")

    assert time.monotonic() - started < 0.1
    assert other.allow() is False
    assert listener.transitions == []  # the other process did not make it


def test_transition_reported_by_one_process(make_board: Board) -> None:
    boards = [make_board(failure_threshold=3, **FAST) for _ in range(3)]
    name = unique_name("one-report")
    breakers = [board.breaker(name) for board, _ in boards]

    def fail_often(breaker: RedisCircuitBreaker) -> None:
        for _ in range(5):
            try:
                breaker.call(failing(OneCConnectionError("GET /ping answered 503")))
            except OneCConnectionError:
                pass

    threads = [threading.Thread(target=fail_often, args=(b,)) for b in breakers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    reports = [t for _, listener in boards for t in listener.transitions]
    assert [(t.old_state, t.new_state) for t in reports] == [(State.CLOSED, State.OPEN)]


def test_closed_successes_make_no_round_trip(
    make_board: Board, redis_client: redis.Redis
) -> None:
    board, _ = make_board(**FAST)
    breaker = board.breaker(unique_name("no-round-trip"))
    wait_for(lambda: board.synced, 5.0, "the subscriber")
    before = script_calls(redis_client)

    for _ in range(1000):
        breaker.call(succeed)

    assert script_calls(redis_client) == before


def test_script_reloaded_after_flush(
    make_board: Board, redis_client: redis.Redis
) -> None:
    board, _ = make_board(failure_threshold=2, **FAST)
    breaker = board.breaker(unique_name("noscript"))
    redis_client.script_flush()
    assert redis_client.script_exists(SCRIPT_SHA) == [False]

    fail_times(breaker, 2)

    assert breaker.state is State.OPEN
    assert redis_client.script_exists(SCRIPT_SHA) == [True]


# --- Operator actions -------------------------------------------------------


def test_force_open_holds_until_reset(make_board: Board) -> None:
    board, listener = make_board(failure_threshold=1, **FAST)
    breaker = board.breaker(unique_name("force-open"))

    view = breaker.force_open(actor="admin:alice")
    time.sleep(0.4)  # longer than the recovery timeout

    assert view.forced is State.OPEN
    assert in_thread(breaker.allow) is False
    assert breaker.status().state is State.OPEN
    error = breaker.open_error()
    assert error.details["reason"] == "forced_open"
    assert error.retry_after is None
    breaker.reset(actor="command")
    assert breaker.call(succeed) == "ok"
    assert [(t.reason, t.actor) for t in listener.transitions] == [
        (Reason.FORCED_OPEN, "admin:alice"),
        (Reason.RESET, "command"),
    ]


def test_force_close_ignores_failures(make_board: Board) -> None:
    board, listener = make_board(failure_threshold=1, **FAST)
    breaker = board.breaker(unique_name("force-close"))
    fail_times(breaker, 1)

    breaker.force_close()
    fail_times(breaker, 3)

    assert breaker.state is State.CLOSED
    view = breaker.status()
    assert view.forced is State.CLOSED
    assert view.failures == 0
    breaker.reset()
    fail_times(breaker, 1)
    assert breaker.state is State.OPEN
    assert [t.reason for t in listener.transitions] == [
        Reason.FAILURE_THRESHOLD,
        Reason.FORCED_CLOSED,
        Reason.RESET,
        Reason.FAILURE_THRESHOLD,
    ]


# --- Interfaces -------------------------------------------------------------


def test_breaker_satisfies_dispatcher_protocol(
    settings: Any, redis_server: str
) -> None:
    settings.RECOVERY_CIRCUIT_BREAKER = "worker.recovery.circuit.breaker_for_operation"
    try:
        breaker = breaker_for("export_customers")

        assert isinstance(breaker, RedisCircuitBreaker)
        assert isinstance(breaker, CircuitBreaker)
        assert breaker is breaker_for("export_customers")
        assert breaker.allow() is True
        breaker.record_success()
        assert breaker.retry_at() is None
    finally:
        close_default_board()


def test_guards_onec_client(make_board: Board) -> None:
    board, _ = make_board(failure_threshold=3, recovery_timeout_s=30.0)
    breaker = board.breaker(unique_name("client"))
    with EmulatorService(user=USER, password=PASSWORD) as service:
        service.faults.add("ping", Fault.status(503), times=ALWAYS)
        client = OneCClient(
            service.url,
            StaticCredentials(USER, PASSWORD),
            connect_timeout_s=1.0,
            read_timeout_s=2.0,
            guard=breaker,
        )
        with client:
            for _ in range(3):
                with pytest.raises(OneCConnectionError) as failed:
                    client.ping()
                assert not isinstance(failed.value, CircuitOpenError)
            for _ in range(3):
                with pytest.raises(CircuitOpenError):
                    client.ping()
        calls_at_server = len(service.requests("ping"))

    assert calls_at_server == 3


# --- Configuration and the in-process breaker ------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("failure_threshold", 0, "failure_threshold must be a positive integer"),
        ("recovery_timeout_s", -1, "recovery_timeout_s must be a positive number"),
        ("failure_rate", 1.5, "failure_rate must be above 0 and at most 1"),
        ("fail_mode", "sideways", "fail_mode must be one of open, closed"),
        ("excluded", ("not an exception",), "excluded must be a tuple"),
    ],
)
def test_config_rejects_invalid_values(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerConfig(**{field: value})


def test_config_from_settings(settings: Any) -> None:
    settings.ONEC_BREAKER_FAILURE_THRESHOLD = 7
    settings.ONEC_BREAKER_FAIL_MODE = "closed"
    settings.ONEC_BREAKER_FAILURE_RATE = 0
    settings.ONEC_BREAKER_OVERRIDES = {"export_orders": {"recovery_timeout_s": 5}}

    default = config_from_settings("export_customers")
    orders = config_from_settings("export_orders")

    assert default.failure_threshold == 7
    assert default.fail_mode is FailMode.CLOSED
    assert default.failure_rate is None
    assert default.recovery_timeout_s == 60.0
    assert orders.recovery_timeout_s == 5
    assert orders.failure_threshold == 7
    settings.ONEC_BREAKER_OVERRIDES = {"export_orders": {"threshold": 5}}
    with pytest.raises(ImproperlyConfigured, match="unknown circuit breaker field"):
        config_from_settings("export_orders")


def test_invalid_breaker_name_rejected(make_board: Board) -> None:
    board, _ = make_board()

    with pytest.raises(ValueError, match="invalid circuit breaker name"):
        board.breaker("Export Orders}")


def test_breaker_keys_share_a_cluster_slot() -> None:
    keys = BreakerKeys.for_breaker("freesport:breaker", "export_orders")

    assert keys.state == "freesport:breaker:{export_orders}"
    assert keys.trials == "freesport:breaker:{export_orders}:trials"
    assert keys.window == "freesport:breaker:{export_orders}:window"


class ManualClock:
    """A monotonic clock that the test moves forward."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_circuit_follows_same_rules() -> None:
    clock = ManualClock()
    circuit = MemoryCircuit(
        BreakerConfig(
            failure_threshold=2,
            recovery_timeout_s=10,
            half_open_max_calls=1,
            success_threshold=2,
        ),
        clock,
    )

    assert circuit.record_failure(None) == []
    [opening] = circuit.record_failure(None)
    assert (opening.new_state, opening.reason) == (State.OPEN, Reason.FAILURE_THRESHOLD)
    assert circuit.allow()[0] is Verdict.REJECTED
    assert circuit.retry_after() == 10.0

    clock.now += 10
    verdict, trial, [half_open] = circuit.allow()
    assert verdict is Verdict.TRIAL
    assert half_open.new_state is State.HALF_OPEN
    assert circuit.allow()[0] is Verdict.REJECTED

    [reopening] = circuit.record_failure(trial)
    assert reopening.reason is Reason.TRIAL_FAILED
    clock.now += 10
    _, first_trial, _ = circuit.allow()
    assert circuit.record_success(first_trial) == []
    _, second_trial, _ = circuit.allow()
    [closing] = circuit.record_success(second_trial)
    assert (closing.new_state, closing.reason) == (
        State.CLOSED,
        Reason.SUCCESS_THRESHOLD,
    )


def test_memory_circuit_ignores_trial_of_earlier_half_open() -> None:
    clock = ManualClock()
    circuit = MemoryCircuit(
        BreakerConfig(failure_threshold=1, recovery_timeout_s=1, half_open_max_calls=2),
        clock,
    )
    circuit.record_failure(None)
    clock.now += 1
    _, old_trial, _ = circuit.allow()
    _, failing_trial, _ = circuit.allow()
    circuit.record_failure(failing_trial)
    clock.now += 1
    circuit.allow()

    assert circuit.record_success(old_trial) == []
    assert circuit.allow()[0] is Verdict.TRIAL
    assert circuit.allow()[0] is Verdict.REJECTED


def test_model_choices_match_states() -> None:
    from freesport.breakers.models import BreakerTransition

    assert set(BreakerTransition.State.values) == {s.value for s in State}
    assert set(BreakerTransition.Reason.values) == {r.value for r in Reason}
    assert set(BreakerTransition.Scope.values) == {s.value for s in Scope}


def script_calls(client: redis.Redis) -> int:
    """Return how many EVALSHA and EVAL commands the server has run."""
    stats = client.info("commandstats")
    return sum(
        int(stats.get(command, {}).get("calls", 0))
        for command in ("cmdstat_evalsha", "cmdstat_eval")
    )
