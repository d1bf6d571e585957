"""Helpers of the circuit breaker tests: worker processes, listeners, test data.

No test lives here. Worker processes, started with multiprocessing's spawn
method, import this module to run ``worker_main``, so it imports nothing at the
top that needs Django to be set up.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from onec_emulator.service_faults import MAX_TIMES
from worker.recovery.circuit_states import BreakerListener, BreakerView, Transition

USER = "freesport"
PASSWORD = "breaker-test-secret-41c7"
# Faults the emulator applies "until told otherwise": its maximum queue length.
ALWAYS = MAX_TIMES
PROCESS_START_TIMEOUT_S = 60.0
WAIT_STEP_S = 0.02


def unique_name(prefix: str) -> str:
    """Return a breaker name no other test uses, since tests share one Redis."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def customer_payload(job: str) -> dict[str, Any]:
    """A customer the emulator accepts; the same job always gives the same body."""
    return {
        "shop_customer_id": job,
        "company_name": "ООО «Тест»",
        "inn": "7707083893",
        "kpp": "770701001",
        "legal_address": "Москва, ул. Тестовая, 1",
        "contact": {
            "name": "Тест Тестов",
            "email": "test@example.com",
            "phone": "+7 495 000-00-00",
        },
    }


def wait_for(condition: Callable[[], Any], timeout_s: float, message: str) -> Any:
    """Poll ``condition`` until it returns a true value. Fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(WAIT_STEP_S)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {message}")


class RecordingListener(BreakerListener):
    """Keeps the transitions and view changes a board reports, in order."""

    def __init__(self) -> None:
        self.transitions: list[Transition] = []
        self.views: list[tuple[str, BreakerView]] = []

    def transition(self, transition: Transition) -> None:
        self.transitions.append(transition)

    def view_changed(
        self, name: str, old: BreakerView | None, new: BreakerView
    ) -> None:
        self.views.append((name, new))


class StateLog(BreakerListener):
    """Keeps every state this process saw, with the Redis time it began."""

    def __init__(self) -> None:
        self.states: list[tuple[str, int]] = []

    def view_changed(
        self, name: str, old: BreakerView | None, new: BreakerView
    ) -> None:
        if old is not None and old.state is not new.state:
            self.states.append((new.state.value, new.changed_at_ms))


# --- Worker processes ----------------------------------------------------------


@dataclass
class WorkerSpec:
    """What one worker process does: its threads call 1C through one breaker."""

    breaker: str
    redis_url: str
    service_url: str
    threads: int = 8
    # "ping": call GET /ping in a loop; "drain": export the customers whose
    # ids wait in the Redis list queue_key until done_key contains jobs_total.
    mode: str = "ping"
    config: dict[str, Any] = field(default_factory=dict)
    clock_offset_s: float = 0.0
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 5.0
    # Pause of a thread after a rejected call, so rejected threads do not spin.
    pause_after_rejection_s: float = 0.01
    queue_key: str = ""
    done_key: str = ""
    jobs_total: int = 0


@dataclass
class ThreadResult:
    succeeded: int = 0
    failed: int = 0
    rejected: int = 0
    # One rejection's details, retry_after and retry_at() minus the clock.
    rejection: dict[str, Any] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)


def worker_main(
    spec: WorkerSpec,
    ready: Any,
    go: Any,
    stop: Any,
    result_path: str,
) -> None:
    """Run one worker process: set up Django on the test database, then call 1C."""
    os.environ["FREESPORT_TEST_WORKER"] = "1"
    import django

    django.setup()

    from freesport.breakers.recorder import TransitionRecorder
    from worker.recovery.circuit_board import BreakerBoard
    from worker.recovery.circuit_config import BoardConfig, BreakerConfig

    offset = spec.clock_offset_s
    state_log = StateLog()
    board = BreakerBoard(
        BoardConfig(spec.redis_url, refresh_interval_s=1.0),
        breaker_config=BreakerConfig(**spec.config),
        listeners=[TransitionRecorder(), state_log],
        clock=lambda: time.time() + offset,
    )
    result: dict[str, Any] = {"pid": os.getpid()}
    try:
        breaker = board.breaker(spec.breaker)
        wait_for(lambda: board.synced, 10.0, "the subscriber to connect")
        ready.set()
        go.wait(PROCESS_START_TIMEOUT_S)
        results = [ThreadResult() for _ in range(spec.threads)]
        threads = [
            threading.Thread(target=run_thread, args=(spec, breaker, stop, r))
            for r in results
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result["threads"] = [asdict(r) for r in results]
        result["states"] = state_log.states
        result["final_state"] = breaker.state.value
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        board.close()
        Path(result_path).write_text(json.dumps(result), "utf-8")


def run_thread(spec: WorkerSpec, breaker: Any, stop: Any, result: ThreadResult) -> None:
    import redis

    from freesport.exceptions import OneCIntegrationError
    from worker.onec import OneCClient, StaticCredentials
    from worker.recovery.breaker import CircuitOpenError

    queue = redis.Redis.from_url(spec.redis_url) if spec.mode == "drain" else None
    client = OneCClient(
        spec.service_url,
        StaticCredentials(USER, PASSWORD),
        connect_timeout_s=spec.connect_timeout_s,
        read_timeout_s=spec.read_timeout_s,
        guard=breaker,
    )
    with client:
        while not stop.is_set():
            try:
                if queue is None:
                    client.ping()
                elif not export_next_job(spec, queue, client, stop):
                    return
                result.succeeded += 1
            except CircuitOpenError as error:
                result.rejected += 1
                if not result.rejection:
                    result.rejection = describe_rejection(breaker, error)
                wait = error.retry_after or 0.0
                time.sleep(min(max(wait, spec.pause_after_rejection_s), 0.2))
            except OneCIntegrationError:
                result.failed += 1
            except Exception:
                result.unexpected.append(traceback.format_exc())
                time.sleep(0.05)


def export_next_job(spec: WorkerSpec, queue: Any, client: Any, stop: Any) -> bool:
    """Export the next queued customer. Return False once every job is done.

    A job whose export raises goes back to the end of the queue.
    """
    while not stop.is_set() and queue.llen(spec.done_key) < spec.jobs_total:
        raw = queue.lpop(spec.queue_key)
        if raw is None:
            # Other threads hold the remaining jobs; one may come back.
            time.sleep(0.01)
            continue
        job = raw.decode()
        try:
            client.export_customer(customer_payload(job), job)
        except BaseException:
            queue.rpush(spec.queue_key, job)
            raise
        queue.rpush(spec.done_key, job)
        return True
    return False


def describe_rejection(breaker: Any, error: Any) -> dict[str, Any]:
    """Record what a rejected call learned, and retry_at() in this process's clock."""
    retry_at = breaker.retry_at()
    return {
        "details": error.details,
        "retry_after": error.retry_after,
        "retry_at_minus_clock": (
            retry_at.timestamp() - breaker.clock() if retry_at is not None else None
        ),
    }


class WorkerPool:
    """Worker processes started with multiprocessing's spawn method."""

    def __init__(self, specs: list[WorkerSpec], folder: Path) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.go = self.context.Event()
        self.stop = self.context.Event()
        self.folder = folder
        self.readies = [self.context.Event() for _ in specs]
        self.result_paths = [folder / f"worker-{i}.json" for i in range(len(specs))]
        self.processes = [
            self.context.Process(
                target=worker_main,
                args=(spec, ready, self.go, self.stop, str(path)),
                name=f"breaker-worker-{i}",
            )
            for i, (spec, ready, path) in enumerate(
                zip(specs, self.readies, self.result_paths, strict=True)
            )
        ]

    def start(self) -> None:
        """Start every process, wait until each is subscribed, then let them run."""
        for process in self.processes:
            process.start()
        for process, ready in zip(self.processes, self.readies, strict=True):
            if not ready.wait(PROCESS_START_TIMEOUT_S):
                raise AssertionError(
                    f"{process.name} did not get ready within "
                    f"{PROCESS_START_TIMEOUT_S} s (exit code {process.exitcode})"
                )
        self.go.set()

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes if process.pid is not None]

    def finish(self, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Tell the processes to stop. Return the results of those that exited."""
        self.stop.set()
        for process in self.processes:
            process.join(timeout_s)
        results = []
        for process, path in zip(self.processes, self.result_paths, strict=True):
            if path.exists():
                results.append(json.loads(path.read_text("utf-8")))
            elif process.exitcode is not None and process.exitcode >= 0:
                raise AssertionError(
                    f"{process.name} exited with {process.exitcode} without results"
                )
        return results

    def kill_all(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()
                process.join(5)

    @contextlib.contextmanager
    def running(self) -> Iterator[WorkerPool]:
        try:
            self.start()
            yield self
        finally:
            self.stop.set()
            for process in self.processes:
                process.join(30)
            self.kill_all()


def totals(results: list[dict[str, Any]], key: str) -> int:
    return sum(thread[key] for result in results for thread in result["threads"])


def unexpected_errors(results: list[dict[str, Any]]) -> list[str]:
    errors = [result["error"] for result in results if "error" in result]
    for result in results:
        for thread in result.get("threads", []):
            errors.extend(thread["unexpected"])
    return errors


# --- Callers in the test process -------------------------------------------------


class Callers:
    """Threads that call GET /ping through a breaker until stopped, counting outcomes."""

    def __init__(self, service_url: str, breaker: Any, threads: int = 4) -> None:
        self.service_url = service_url
        self.breaker = breaker
        self.lock = threading.Lock()
        self.counts = {"succeeded": 0, "failed": 0, "rejected": 0}
        self.rejections: list[dict[str, Any]] = []
        self.unexpected: list[str] = []
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, name=f"caller-{i}")
            for i in range(threads)
        ]

    def __enter__(self) -> Callers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(10)

    def count(self, outcome: str) -> int:
        with self.lock:
            return self.counts[outcome]

    def _run(self) -> None:
        from freesport.exceptions import OneCIntegrationError
        from worker.onec import OneCClient, StaticCredentials
        from worker.recovery.breaker import CircuitOpenError

        client = OneCClient(
            self.service_url,
            StaticCredentials(USER, PASSWORD),
            connect_timeout_s=2.0,
            read_timeout_s=5.0,
            guard=self.breaker,
        )
        with client:
            while not self.stopping.is_set():
                outcome = "succeeded"
                try:
                    client.ping()
                except CircuitOpenError as error:
                    outcome = "rejected"
                    with self.lock:
                        self.rejections.append(dict(error.details))
                    time.sleep(0.01)
                except OneCIntegrationError:
                    outcome = "failed"
                except Exception:
                    with self.lock:
                        self.unexpected.append(traceback.format_exc())
                    time.sleep(0.05)
                    continue
                with self.lock:
                    self.counts[outcome] += 1
