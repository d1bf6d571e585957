"""The shared circuit breaker across real worker processes.

Each test starts worker processes (multiprocessing, spawn) on the test database
and the test Redis server. Their threads call the 1C emulator, a real HTTP
server on 127.0.0.1 whose faults the test switches on and off, through
``OneCClient`` with the breaker as its guard. Transitions are read back from
the transition log that the processes wrote.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from onec_emulator.service import EmulatorService, Fault
from tests.test_breaker_helpers import (
    ALWAYS,
    PASSWORD,
    USER,
    WorkerPool,
    WorkerSpec,
    totals,
    unexpected_errors,
    unique_name,
    wait_for,
)
from worker.recovery.circuit_board import BreakerBoard
from worker.recovery.circuit_config import BoardConfig
from worker.recovery.circuit_script import BreakerKeys

pytestmark = pytest.mark.slow

PROCESSES = 4
THREADS = 8
# Connect timeout of the workers' 1C clients.
CONNECT_TIMEOUT_S = 2.0
# Recovery timeout of the tests that switch 1C's faults while the breaker is
# open; longer than settle().
SLOW_RECOVERY_S = 3.0


@pytest.fixture
def emulator() -> Iterator[EmulatorService]:
    with EmulatorService(user=USER, password=PASSWORD) as service:
        yield service


def transitions(name: str) -> list[Any]:
    from freesport.breakers.models import BreakerTransition

    return list(
        BreakerTransition.objects.filter(breaker=name).order_by("changed_at", "id")
    )


def pairs(name: str) -> list[tuple[str, str]]:
    return [(row.old_state, row.new_state) for row in transitions(name)]


def wait_for_transition(name: str, new_state: str, timeout_s: float = 20.0) -> Any:
    """Wait until the log contains a transition of ``name`` into ``new_state``."""

    def found() -> Any:
        rows = [row for row in transitions(name) if row.new_state == new_state]
        return rows[-1] if rows else None

    return wait_for(found, timeout_s, f"a transition of {name} to {new_state}")


def settle() -> None:
    """Wait until calls let through before the breaker opened have ended.

    Such a call can reach 1C late: when the emulator's accept queue is full,
    Linux drops the SYN and the client sends it again after 1 s. Waiting
    longer than the connect timeout lets every such call land or time out
    before the test changes 1C's faults.
    """
    time.sleep(CONNECT_TIMEOUT_S + 0.5)


def arrival(record: dict[str, Any]) -> float:
    """Return when the emulator received a request, in seconds since the epoch."""
    return datetime.fromisoformat(record["time"]).timestamp()


def specs(
    name: str, redis_url: str, service: EmulatorService, count: int, **options: Any
) -> list[WorkerSpec]:
    return [
        WorkerSpec(
            breaker=name, redis_url=redis_url, service_url=service.url, **options
        )
        for _ in range(count)
    ]


def test_concurrent_failures_open_once(
    transactional_db: None, redis_server: str, emulator: EmulatorService, tmp_path: Path
) -> None:
    # given: 1C responds 503 to every call
    name = unique_name("open-once")
    threshold = 5
    emulator.faults.add("ping", Fault.status(503), times=ALWAYS)
    config = {"failure_threshold": threshold, "recovery_timeout_s": 60.0}
    pool = WorkerPool(
        specs(name, redis_server, emulator, PROCESSES, threads=THREADS, config=config),
        tmp_path,
    )

    # when: 4 processes with 8 threads each call it at once
    with pool.running():
        wait_for_transition(name, "open")
        time.sleep(1.0)
        results = pool.finish()
    calls_at_server = len(emulator.requests("ping"))

    # then
    assert unexpected_errors(results) == []
    assert pairs(name) == [("closed", "open")]
    opening = transitions(name)[0]
    assert opening.reason == "failure_threshold"
    assert opening.failure_count == threshold
    assert opening.exception_type == "freesport.exceptions.OneCConnectionError"
    # Each thread may have had one call in flight when the breaker opened; its
    # failure's reply, or the published change, stops it before the next.
    assert threshold <= calls_at_server <= threshold + PROCESSES * THREADS
    assert totals(results, "failed") == calls_at_server
    assert totals(results, "rejected") > 0
    for result in results:
        assert result["final_state"] == "open"
        rejection = next(t["rejection"] for t in result["threads"] if t["rejection"])
        assert rejection["details"]["breaker"] == name
        assert rejection["details"]["retry_at"] is not None
        assert 0 < rejection["retry_after"] <= 60.0


def test_half_open_lets_k_trials_through(
    transactional_db: None, redis_server: str, emulator: EmulatorService, tmp_path: Path
) -> None:
    # given: an open breaker whose recovery timeout is short, with 2 trial slots
    name = unique_name("half-open")
    trials = 2
    trial_latency_s = 1.5
    config = {
        "failure_threshold": 3,
        "recovery_timeout_s": SLOW_RECOVERY_S,
        "half_open_max_calls": trials,
        "success_threshold": 3,
        "trial_lease_s": 10.0,
        "slow_call_s": None,
    }
    emulator.faults.add("ping", Fault.status(503), times=ALWAYS)
    pool = WorkerPool(
        specs(name, redis_server, emulator, PROCESSES, threads=4, config=config),
        tmp_path,
    )
    with pool.running():
        wait_for_transition(name, "open")
        settle()

        # when: 1C recovers but responds slowly, while 16 threads keep calling
        emulator.faults.clear()
        emulator.faults.add("ping", Fault.latency(trial_latency_s * 1000), times=ALWAYS)
        emulator.clear_requests()
        half_open = wait_for_transition(name, "half_open")
        first_round_end = half_open.changed_at.timestamp() + trial_latency_s - 0.1
        time.sleep(max(first_round_end - time.time(), 0.0))
        first_round = [
            r for r in emulator.requests("ping") if arrival(r) < first_round_end
        ]
        closed = wait_for_transition(name, "closed", timeout_s=30.0)
        results = pool.finish()

    # then: while the first trials were in flight, only K calls reached 1C
    assert unexpected_errors(results) == []
    print(
        "HALF",
        half_open.changed_at.timestamp(),
        [
            (arrival(r) - half_open.changed_at.timestamp(), r["fault"], r["status"])
            for r in first_round
        ],
        [
            (r.old_state, r.new_state, r.changed_at.timestamp(), r.process)
            for r in transitions(name)
        ],
    )
    assert len(first_round) == trials
    assert pairs(name) == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert closed.reason == "success_threshold"
    for result in results:
        assert result["final_state"] == "closed"


def test_killed_trial_holder_loses_lease(
    transactional_db: None, redis_server: str, emulator: EmulatorService, tmp_path: Path
) -> None:
    # given: an open breaker with one trial slot and a 2 s lease
    name = unique_name("lease")
    lease_s = 2.0
    config = {
        "failure_threshold": 3,
        "recovery_timeout_s": SLOW_RECOVERY_S,
        "half_open_max_calls": 1,
        "success_threshold": 2,
        "trial_lease_s": lease_s,
        "slow_call_s": None,
    }
    emulator.faults.add("ping", Fault.status(503), times=ALWAYS)
    pool = WorkerPool(
        specs(
            name,
            redis_server,
            emulator,
            3,
            threads=2,
            config=config,
            read_timeout_s=30.0,
        ),
        tmp_path,
    )
    client = redis.Redis.from_url(redis_server)
    trials_key = BreakerKeys.for_breaker("freesport:breaker", name).trials
    with pool.running():
        wait_for_transition(name, "open")
        settle()
        # The first trial call hangs at 1C, and later calls get a response at once.
        emulator.faults.clear()
        emulator.faults.add("ping", Fault.hang(20), times=1)
        emulator.clear_requests()
        wait_for_transition(name, "half_open")
        holder = wait_for(
            lambda: client.zrange(trials_key, 0, -1), 10.0, "a trial lease"
        )
        wait_for(lambda: emulator.requests("ping"), 10.0, "the trial call")

        # when: the process holding the lease is killed
        token = holder[0].decode()
        holder_pid = int(token.split(":")[-2])
        assert holder_pid in pool.pids
        os.kill(holder_pid, signal.SIGKILL)

        # then: another process probes once the lease has expired
        wait_for(lambda: len(emulator.requests("ping")) >= 2, lease_s + 10, "a probe")
        closed = wait_for_transition(name, "closed", timeout_s=30.0)
        results = pool.finish()
    requests = emulator.requests("ping")
    client.close()

    assert unexpected_errors(results) == []
    assert len(results) == 2  # the killed process wrote none
    assert requests[0]["fault"] == "hang"
    # No other call reached 1C while the killed process's lease was valid.
    assert arrival(requests[1]) - arrival(requests[0]) >= lease_s - 0.1
    assert pairs(name) == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert not closed.process.endswith(f":{holder_pid}")


def test_recovered_server_drains_queue(
    transactional_db: None, redis_server: str, emulator: EmulatorService, tmp_path: Path
) -> None:
    # given: 200 customer exports queued in Redis while 1C answers 503
    name = unique_name("drain")
    jobs = [f"job-{name}-{number}" for number in range(200)]
    queue_key, done_key = f"test:{name}:queue", f"test:{name}:done"
    client = redis.Redis.from_url(redis_server)
    client.rpush(queue_key, *jobs)
    emulator.faults.add("customers", Fault.status(503), times=ALWAYS)
    config = {
        "failure_threshold": 5,
        "recovery_timeout_s": 1.0,
        "success_threshold": 3,
        "slow_call_s": None,
    }
    pool = WorkerPool(
        specs(
            name,
            redis_server,
            emulator,
            PROCESSES,
            threads=4,
            mode="drain",
            config=config,
            queue_key=queue_key,
            done_key=done_key,
            jobs_total=len(jobs),
        ),
        tmp_path,
    )
    with pool.running():
        wait_for_transition(name, "open")

        # when: 1C recovers
        emulator.faults.clear()
        wait_for(
            lambda: client.llen(done_key) >= len(jobs), 60.0, "every job to be exported"
        )
        results = pool.finish()
    done = {item.decode() for item in client.lrange(done_key, 0, -1)}
    client.delete(queue_key, done_key)
    client.close()

    # then: the breaker closed once and every job reached 1C exactly once
    assert unexpected_errors(results) == []
    assert pairs(name) == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert done == set(jobs)
    ledger_keys = [row["idempotency_key"] for row in emulator.ledger()]
    assert sorted(ledger_keys) == sorted(jobs)


def test_skewed_clocks_see_same_transitions(
    transactional_db: None, redis_server: str, emulator: EmulatorService, tmp_path: Path
) -> None:
    # given: two processes, the second with a clock 10 minutes ahead
    name = unique_name("clock")
    recovery_s = 2.0
    config = {
        "failure_threshold": 3,
        "recovery_timeout_s": recovery_s,
        "success_threshold": 3,
        "slow_call_s": None,
    }
    emulator.faults.add("ping", Fault.status(503), times=ALWAYS)
    worker_specs = specs(name, redis_server, emulator, 2, threads=2, config=config)
    worker_specs[1].clock_offset_s = 600.0
    pool = WorkerPool(worker_specs, tmp_path)

    # when: the breaker opens, 1C recovers slowly and the breaker closes
    with pool.running():
        wait_for_transition(name, "open")
        emulator.faults.clear()
        emulator.faults.add("ping", Fault.latency(300), times=ALWAYS)
        wait_for_transition(name, "closed", timeout_s=30.0)
        time.sleep(0.5)
        results = pool.finish()

    # then: both saw the same states begin at the same Redis times
    assert unexpected_errors(results) == []
    rows = transitions(name)
    logged = [(row.new_state, round(row.changed_at.timestamp() * 1000)) for row in rows]
    assert [state for state, _ in logged] == ["open", "half_open", "closed"]
    normal, skewed = results
    assert [tuple(item) for item in normal["states"]] == logged
    assert [tuple(item) for item in skewed["states"]] == logged
    opened_ms, half_open_ms = logged[0][1], logged[1][1]
    assert recovery_s * 1000 <= half_open_ms - opened_ms < (recovery_s + 1) * 1000
    # Both named the same resume time; each expressed it in its own clock.
    rejections = [
        next(t["rejection"] for t in result["threads"] if t["rejection"])
        for result in results
    ]
    assert rejections[0]["details"]["retry_at"] == rejections[1]["details"]["retry_at"]
    for rejection in rejections:
        assert 0 <= rejection["retry_at_minus_clock"] <= recovery_s + 0.1


def forked_child_main(board: Any, name: str, connection: Any) -> None:
    """Use the parent's breaker object after fork, as a Celery prefork child does."""
    breaker = board.breaker(name)
    allowed = breaker.allow()
    breaker.record_success()
    try:
        wait_for(lambda: board.synced, 5.0, "the child's subscriber")
        connection.send(("synced", allowed))
        wait_for(lambda: breaker.state.value == "open", 5.0, "the forced state")
        connection.send(("open", breaker.retry_after()))
    except AssertionError as error:
        connection.send(("failed", str(error)))


def test_forked_child_subscribes_again(redis_server: str) -> None:
    # given: a parent process whose board already runs its subscriber thread
    board = BreakerBoard(BoardConfig(redis_server))
    name = unique_name("fork")
    breaker = board.breaker(name)
    wait_for(lambda: board.synced, 5.0, "the parent's subscriber")
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=forked_child_main, args=(board, name, sender))

    # when: a forked child uses the same breaker object
    try:
        child.start()
        assert receiver.poll(10.0)
        synced = receiver.recv()
        breaker.force_open()
        assert receiver.poll(10.0)
        opened = receiver.recv()
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
        breaker.reset()
        board.close()

    # then: it started its own subscriber thread and learned of the change
    assert synced == ("synced", True)
    assert opened == ("open", None)
    assert child.exitcode == 0
