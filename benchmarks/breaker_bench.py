"""Benchmark of the Redis-shared circuit breaker against pybreaker and a Redis PING.

One run starts its own embedded Redis server in a temporary folder and measures,
on the same machine and server:

- ``closed_calls_per_s``: calls of a function that returns at once through
  ``RedisCircuitBreaker.call`` on a closed breaker, in one thread;
- ``pybreaker_redis_calls_per_s``: the same through ``pybreaker.CircuitBreaker``
  with ``CircuitRedisStorage`` on the same server;
- ``pybreaker_memory_calls_per_s``: the same through pybreaker with its default
  in-memory storage;
- ``redis_ping_per_s``: redis-py PING round trips, with the client settings the
  breaker uses;
- ``propagation_median_ms`` and ``propagation_p99_ms``: the time from the start
  of a state change (force open, then reset, alternately) in this process
  until every listener process has applied it, over ``--changes`` changes.
  Listener processes are separate Python processes started with
  multiprocessing's spawn method, and both ends read ``time.monotonic()``,
  which is one system-wide clock on Linux.

Each rate is the median of ``--repeat`` runs of ``--seconds`` each. The p99 is
the nearest-rank percentile. Run from the project folder::

    .venv/bin/python benchmarks/breaker_bench.py [--json]

docs/benchmarks.md records results.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:
    # When this file runs as a script, sys.path starts with benchmarks/ only.
    sys.path.insert(0, str(PROJECT_DIR))

import pybreaker  # noqa: E402
import redis  # noqa: E402

from config.embedded_redis import EmbeddedRedis  # noqa: E402
from worker.recovery.circuit_board import BreakerBoard, make_client  # noqa: E402
from worker.recovery.circuit_config import BoardConfig  # noqa: E402
from worker.recovery.circuit_states import BreakerListener, BreakerView  # noqa: E402

logger = logging.getLogger("benchmarks.breaker_bench")

BREAKER_NAME = "bench"
# Calls between two reads of the clock in the rate loops, so reading the clock
# costs little next to the calls.
CALLS_PER_CHECK = 1000
LISTENER_START_TIMEOUT_S = 60.0
# A change not seen by every listener within this time fails the benchmark.
CHANGE_TIMEOUT_S = 5.0


class BenchmarkError(Exception):
    """A failed benchmark step. The message names the step and what to check."""


def return_at_once() -> None:
    return None


def calls_per_second(call: Callable[[], object], seconds: float) -> float:
    """Call ``call`` for about ``seconds`` seconds; return the calls per second."""
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(CALLS_PER_CHECK):
            call()
        calls += CALLS_PER_CHECK
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - started)


def median_rate(call: Callable[[], object], seconds: float, repeat: int) -> float:
    return statistics.median(calls_per_second(call, seconds) for _ in range(repeat))


def percentile(values: Sequence[float], share: float) -> float:
    """Return the nearest-rank percentile: the smallest value >= share of them."""
    ordered = sorted(values)
    rank = max(math.ceil(share * len(ordered)), 1)
    return ordered[rank - 1]


# --- Call rates -------------------------------------------------------------------


def measure_rates(
    server: EmbeddedRedis, seconds: float, repeat: int
) -> dict[str, float]:
    config = BoardConfig(server.url)
    board = BreakerBoard(config)
    try:
        breaker = board.breaker(BREAKER_NAME)
        wait_until(lambda: board.synced, 10.0, "the subscriber to connect")

        def closed_call() -> None:
            breaker.call(return_at_once)

        logger.info("Closed path of RedisCircuitBreaker")
        closed = median_rate(closed_call, seconds, repeat)
    finally:
        board.close()

    client = make_client(config)
    try:
        logger.info("pybreaker with CircuitRedisStorage")
        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, client, namespace="bench-pybreaker"
        )
        with_redis = pybreaker.CircuitBreaker(
            fail_max=5, reset_timeout=60, state_storage=storage
        )
        pybreaker_redis = median_rate(
            lambda: with_redis.call(return_at_once), seconds, repeat
        )
        logger.info("redis-py PING")
        ping = median_rate(client.ping, seconds, repeat)
    finally:
        client.close()

    logger.info("pybreaker in memory")
    in_memory = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    pybreaker_memory = median_rate(
        lambda: in_memory.call(return_at_once), seconds, repeat
    )
    return {
        "closed_calls_per_s": round(closed),
        "pybreaker_redis_calls_per_s": round(pybreaker_redis),
        "pybreaker_memory_calls_per_s": round(pybreaker_memory),
        "redis_ping_per_s": round(ping),
        "closed_vs_pybreaker_redis": round(closed / pybreaker_redis, 1),
    }


# --- Propagation --------------------------------------------------------------------


class SeenChanges(BreakerListener):
    """Sends the seq and the monotonic time of every applied change to the parent."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.lock = threading.Lock()

    def view_changed(
        self, name: str, old: BreakerView | None, new: BreakerView
    ) -> None:
        seen = time.monotonic()
        with self.lock:
            self.connection.send((new.generation, new.seq, seen))


def listener_main(redis_url: str, connection: Any, ready: Any, stop: Any) -> None:
    """Run one listener process: apply published changes until ``stop`` is set."""
    board = BreakerBoard(BoardConfig(redis_url), listeners=[SeenChanges(connection)])
    try:
        board.breaker(BREAKER_NAME)
        wait_until(lambda: board.synced, 10.0, "the listener's subscriber to connect")
        ready.set()
        stop.wait()
    finally:
        board.close()
        connection.close()


def measure_propagation(
    server: EmbeddedRedis, changes: int, processes: int
) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    readies = [context.Event() for _ in range(processes)]
    pipes = [context.Pipe(duplex=False) for _ in range(processes)]
    listeners = [
        context.Process(
            target=listener_main,
            args=(server.url, sender, ready, stop),
            name=f"breaker-listener-{number}",
        )
        for number, ((_, sender), ready) in enumerate(zip(pipes, readies, strict=True))
    ]
    board = BreakerBoard(BoardConfig(server.url), subscribe=False)
    try:
        for process in listeners:
            process.start()
        for process, ready in zip(listeners, readies, strict=True):
            if not ready.wait(LISTENER_START_TIMEOUT_S):
                raise BenchmarkError(
                    f"{process.name} did not subscribe within "
                    f"{LISTENER_START_TIMEOUT_S:.0f} s (exit code {process.exitcode})"
                )
        breaker = board.breaker(BREAKER_NAME)
        breaker.reset()
        receivers = [receiver for receiver, _ in pipes]
        for receiver in receivers:
            drain(receiver)
        logger.info("Propagation of %d changes to %d processes", changes, processes)
        latencies = []
        for number in range(changes):
            started = time.monotonic()
            view = breaker.force_open() if number % 2 == 0 else breaker.reset()
            seen = [wait_for_seq(r, view.generation, view.seq) for r in receivers]
            latencies.append((max(seen) - started) * 1000)
    finally:
        stop.set()
        for process in listeners:
            process.join(10)
            if process.is_alive():
                process.kill()
        board.close()
    return {
        "propagation_median_ms": round(statistics.median(latencies), 3),
        "propagation_p99_ms": round(percentile(latencies, 0.99), 3),
        "propagation_max_ms": round(max(latencies), 3),
        "changes": changes,
        "listener_processes": processes,
    }


def drain(receiver: Any) -> None:
    while receiver.poll(0.2):
        receiver.recv()


def wait_for_seq(receiver: Any, generation: str, seq: int) -> float:
    """Return when a listener applied change ``seq``, by its monotonic clock."""
    deadline = time.monotonic() + CHANGE_TIMEOUT_S
    while time.monotonic() < deadline:
        if receiver.poll(max(deadline - time.monotonic(), 0.0)):
            seen_generation, seen_seq, seen_at = receiver.recv()
            if seen_generation == generation and seen_seq >= seq:
                return float(seen_at)
    raise BenchmarkError(
        f"a listener did not apply change {seq} within {CHANGE_TIMEOUT_S:.0f} s"
    )


# --- Report -------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise BenchmarkError(
                f"timed out after {timeout_s:.0f} s waiting for {what}"
            )
        time.sleep(0.01)


def describe_machine(server: EmbeddedRedis) -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    client = redis.Redis.from_url(server.url)
    try:
        redis_version = client.info("server").get("redis_version", "unknown")
    finally:
        client.close()
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis_server": redis_version,
        "redis_py": metadata.version("redis"),
        "pybreaker": metadata.version("pybreaker"),
        "redis_connection": "unix socket",
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def format_table(report: dict[str, Any]) -> str:
    machine = report["machine"]
    rates = [
        ("closed path, RedisCircuitBreaker", report["closed_calls_per_s"]),
        ("pybreaker, CircuitRedisStorage", report["pybreaker_redis_calls_per_s"]),
        ("pybreaker, in memory", report["pybreaker_memory_calls_per_s"]),
        ("redis-py PING", report["redis_ping_per_s"]),
    ]
    lines = [
        f"Machine: {machine['cpu_model']}, {machine['usable_cores']} usable cores, "
        f"Python {machine['python']}, Redis {machine['redis_server']} "
        f"({machine['redis_connection']})",
        f"Command: {report['command']}",
        "",
    ]
    for label, rate in rates:
        lines.append(f"{label:<36}{rate:>12,} calls/s")
    lines += [
        f"{'closed path / pybreaker with Redis':<36}"
        f"{report['closed_vs_pybreaker_redis']:>12}x",
        "",
        f"State change seen by all {report['listener_processes']} listener processes, "
        f"{report['changes']} changes: median {report['propagation_median_ms']} ms, "
        f"p99 {report['propagation_p99_ms']} ms, max {report['propagation_max_ms']} ms",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Benchmark the closed path of the Redis-shared circuit breaker against "
            "pybreaker and a Redis PING, and how fast a state change reaches other "
            "processes."
        )
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="duration of each rate measurement, in seconds (default: 2)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rate measurements per variant; the median is reported (default: 3)",
    )
    parser.add_argument(
        "--changes",
        type=int,
        default=200,
        help="state changes timed for the propagation (default: 200)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="listener processes that must see each change (default: 2)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as one JSON object"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repeat < 1 or args.changes < 1 or args.processes < 1:
        parser.error(
            "--seconds must be positive; --repeat, --changes and --processes at least 1"
        )
    return args


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    server = EmbeddedRedis(folder / "redis")
    server.ensure_running()
    try:
        report: dict[str, Any] = {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": shlex.join([Path(sys.executable).name, *sys.argv]),
            "machine": describe_machine(server),
            "seconds": args.seconds,
            "repeat": args.repeat,
        }
        report.update(measure_rates(server, args.seconds, args.repeat))
        report.update(measure_propagation(server, args.changes, args.processes))
        return report
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    folder = Path(tempfile.mkdtemp(prefix="freesport-breaker-bench-"))
    try:
        report = run(args, folder)
    except BenchmarkError as error:
        logger.error("Benchmark failed: %s", error)
        return 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
