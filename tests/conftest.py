"""Fixtures that run the suite against real servers.

A Redis server (the embedded one from ``config.settings_test``, or ``REDIS_URL``),
a real database (SQLite, or PostgreSQL through ``DATABASE_URL``) and Celery worker
processes started with ``celery -A worker.app worker`` on the test database.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.servers.basehttp import WSGIRequestHandler

from config.celery import app

# Django's test HTTP server writes headers and body in two sends; with Nagle's
# algorithm on, each small response then waits about 40 ms for a delayed ACK.
WSGIRequestHandler.disable_nagle_algorithm = True

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Real exchange files written by 1C and other shops' exporters; read in place.
SAMPLES_ENV = "FREESPORT_SAMPLES"
DEFAULT_SAMPLES = PROJECT_DIR.parent / "shared" / "samples"
WORKER_START_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """Folder of the real exchange samples, from $FREESPORT_SAMPLES."""
    folder = Path(os.environ.get(SAMPLES_ENV, DEFAULT_SAMPLES))
    if not folder.is_dir():
        pytest.fail(
            f"exchange samples not found at {folder}; set {SAMPLES_ENV} to the folder "
            "that holds the real 1C exchange files"
        )
    return folder


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """Start the test Redis server unless REDIS_URL names one; empty it first."""
    embedded = getattr(settings, "EMBEDDED_REDIS", None)
    if embedded is not None:
        embedded.ensure_running()
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    client.close()
    yield settings.REDIS_URL
    if embedded is not None:
        embedded.stop()


@pytest.fixture(scope="session", autouse=True)
def remove_run_folder() -> Iterator[None]:
    """Delete this run's folder under var/test once every fixture has finished."""
    yield
    folder = Path(settings.VAR_DIR)
    if folder.name.startswith("run-"):
        shutil.rmtree(folder, ignore_errors=True)


class WorkerProcess:
    """A ``celery worker`` subprocess consuming one queue of the test broker."""

    def __init__(
        self,
        queue: str,
        log_path: Path,
        *,
        pool: str = "prefork",
        concurrency: int = 2,
        memory_limit_bytes: int | None = None,
    ) -> None:
        self.queue = queue
        self.log_path = log_path
        self.name = f"{queue}-{os.getpid()}@test"
        env = dict(os.environ)
        env["DJANGO_SETTINGS_MODULE"] = "config.settings_test"
        env["FREESPORT_TEST_WORKER"] = "1"
        env["PYTHONPATH"] = str(PROJECT_DIR)
        command = [
            sys.executable, "-m", "celery", "-A", "worker.app", "worker",
            "-Q", queue, "-n", self.name, "--pool", pool, "-c", str(concurrency),
            "-l", "info", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        limit = memory_limit_bytes

        def cap_memory() -> None:
            if limit:
                resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            command,
            cwd=PROJECT_DIR,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=cap_memory if limit else None,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = WORKER_START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"worker {self.name} exited with {self.process.returncode}; "
                    f"see {self.log_path}"
                )
            if app.control.ping(destination=[self.name], timeout=0.5):
                return
        raise RuntimeError(f"worker {self.name} did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="session")
def worker_logs() -> Path:
    folder = Path(settings.VAR_DIR) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup: None,
    django_db_blocker: object,
    redis_server: str,
    worker_logs: Path,
) -> Iterator[WorkerProcess]:
    """A real worker on the default queue, using the test database."""
    worker = WorkerProcess("celery", worker_logs / "worker.log")
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def worker(
    celery_worker_process: WorkerProcess, transactional_db: None
) -> WorkerProcess:
    """The running worker, with a database whose commits the worker can see."""
    return celery_worker_process
