"""Benchmark of the catalogue import, from the XML reader to a real Celery worker.

One run generates a sample CommerceML package with ``--goods`` goods and measures,
on the same machine:

- the reader alone over every file of the package (parse rate);
- Django ``bulk_create`` upserts of the goods files' product rows (bulk upsert rate);
- the sequential limit: goods / (reader time of the goods files + bulk upsert time);
- copying the package's pictures one file at a time, work the limit leaves out;
- the whole package through ``create_session`` and ``enqueue_import`` on a real
  worker process (solo pool), with the worker's peak RSS and, from its log, the
  time it spent on the goods files;
- the same import pipeline in-process over the goods files only, a cross-check
  of that goods time;
- a per-row ``update_or_create`` baseline on the first ``--baseline-items`` rows.

Every database measurement starts on a fresh database. Without ``DATABASE_URL`` it
is SQLite under a temporary ``FREESPORT_VAR_DIR``. With a PostgreSQL
``DATABASE_URL`` the benchmark creates its own database next to the named one and
drops it at the end. The named database itself is only used to connect.

Run from the project folder::

    .venv/bin/python benchmarks/import_bench.py --goods 10000 [--json]

docs/benchmarks.md defines each number and records results.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import psutil

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:
    # When this file runs as a script, sys.path starts with benchmarks/ only.
    sys.path.insert(0, str(PROJECT_DIR))

logger = logging.getLogger("benchmarks.import_bench")

QUEUE = "bench"
# Rows per transaction in the bulk upsert. It matches the default of the
# pipeline's CATALOG_IMPORT_BATCH_SIZE.
DEFAULT_BATCH_SIZE = 2000
# NOTE: an RSS peak shorter than this sampling interval can go unseen.
RSS_INTERVAL_S = 0.05
POLL_INTERVAL_S = 0.05
WORKER_START_TIMEOUT_S = 60.0
WORKER_STOP_TIMEOUT_S = 30.0
DEFAULT_IMPORT_TIMEOUT_S = 3600.0
# Placeholder for Product.last_seen_session in the rows of the bulk and per-row
# phases, which run without an exchange session.
BENCH_SESSION_ID = 1
GOODS_KINDS = frozenset({"goods"})
# Folder of the package's pictures, as the sample generator and 1C name it.
PICTURES_DIR = "import_files"
MEGABYTE = 1024 * 1024
POSTGRES_SCHEMES = frozenset({"postgres", "postgresql", "pgsql", "postgis"})
# The line catalog.import_file logs at INFO after each file. NOTE: the time in it
# is rounded to 10 ms and leaves out saving the file's status. If the message
# changes, no line matches and the report falls back to the in-process timing.
IMPORTED_LINE = re.compile(
    r"Imported (?P<name>.+?) \((?P<kind>[a-z]+)\): (?P<items>\d+) items "
    r"in (?P<seconds>[0-9.]+) s"
)
# Columns that write_products sets on an upsert, plus the bookkeeping columns.
PRODUCT_UPDATE_FIELDS = [
    "name",
    "sku",
    "barcode",
    "description",
    "group",
    "group_external_id",
    "unit_code",
    "properties",
    "is_deleted",
    "is_active",
    "content_hash",
    "last_seen_session",
    "updated_at",
]


class BenchmarkError(Exception):
    """A failed benchmark step. The message names the step and what to check."""


@dataclass
class Measurement:
    items: int
    seconds: float


@dataclass
class FileTiming:
    name: str
    kind: str
    items: int
    seconds: float


@dataclass
class EndToEnd:
    seconds: float
    status: str
    counts: dict[str, Any]
    # Session started_at to finished_at, as the worker recorded them.
    session_seconds: float | None
    rss_before_bytes: int
    peak_rss_bytes: int
    rss_samples: int
    database_rows: dict[str, int]
    # Per-file lines of the worker log, empty when the worker did not log them.
    worker_files: list[FileTiming] = field(default_factory=list)


# --- Environment and database ---------------------------------------------------


class BenchDatabase:
    """The database the benchmark writes to, recreated empty before each phase.

    SQLite: the settings' file under the temporary var folder. PostgreSQL: a
    database created by the benchmark on the server that ``DATABASE_URL`` names.
    """

    def __init__(self, database_url: str, pg_name: str | None) -> None:
        self.url = database_url
        self.pg_name: str | None = None
        self.pg_connect: dict[str, Any] = {}
        self.created = False
        if not database_url:
            return
        import dj_database_url

        scheme = urlsplit(database_url).scheme
        if scheme not in POSTGRES_SCHEMES:
            raise BenchmarkError(
                f"DATABASE_URL scheme {scheme!r} is not supported. Use a PostgreSQL "
                "URL, or unset DATABASE_URL to benchmark SQLite in a temporary folder."
            )
        config = dj_database_url.parse(database_url)
        self.pg_connect = {
            "dbname": config["NAME"],
            "user": config.get("USER") or None,
            "password": config.get("PASSWORD") or None,
            "host": config.get("HOST") or None,
            "port": config.get("PORT") or None,
        }
        self.pg_name = pg_name or f"{config['NAME']}_bench"
        if self.pg_name == config["NAME"]:
            raise BenchmarkError(
                f"--pg-database {self.pg_name!r} is the database that DATABASE_URL "
                "names. The benchmark drops its database, so choose another name."
            )

    @property
    def is_postgres(self) -> bool:
        return self.pg_name is not None

    def bench_url(self) -> str:
        """Return DATABASE_URL with the benchmark database in place of the named one."""
        parts = urlsplit(self.url)
        return parts._replace(path=f"/{self.pg_name}").geturl()

    def create(self) -> None:
        """Create the PostgreSQL benchmark database, or raise if it already exists."""
        if not self.is_postgres:
            return
        with self._server() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.pg_name]
            )
            if cursor.fetchone():
                raise BenchmarkError(
                    f"Database {self.pg_name!r} already exists. Drop it, or pass "
                    "another name with --pg-database."
                )
            cursor.execute(self._statement("CREATE DATABASE {}"))
        self.created = True

    def recreate(self, var_dir: Path) -> None:
        """Empty the database and the media folder, then apply the migrations."""
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connections

        connections.close_all()
        if self.is_postgres:
            with self._server() as cursor:
                cursor.execute(self._statement("DROP DATABASE IF EXISTS {}"))
                cursor.execute(self._statement("CREATE DATABASE {}"))
        else:
            path = Path(settings.DATABASES["default"]["NAME"]).resolve()
            if var_dir.resolve() not in path.parents:
                raise BenchmarkError(
                    f"SQLite file {path} is outside the benchmark folder {var_dir}, "
                    "so the benchmark does not delete it. Check FREESPORT_VAR_DIR."
                )
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        # Pictures copied by an earlier phase would let write_products skip the copy.
        media = Path(settings.MEDIA_ROOT).resolve()
        if var_dir.resolve() in media.parents:
            shutil.rmtree(media, ignore_errors=True)
        call_command("migrate", verbosity=0, interactive=False)

    def drop(self) -> None:
        if not (self.is_postgres and self.created):
            return
        from django.db import connections

        connections.close_all()
        with self._server() as cursor:
            cursor.execute(self._statement("DROP DATABASE IF EXISTS {}"))
        self.created = False

    def _statement(self, template: str) -> Any:
        from psycopg import sql

        assert self.pg_name is not None
        return sql.SQL(template).format(sql.Identifier(self.pg_name))

    @contextmanager
    def _server(self) -> Iterator[Any]:
        import psycopg

        with psycopg.connect(**self.pg_connect, autocommit=True) as connection:
            with connection.cursor() as cursor:
                yield cursor


def prepare_environment(var_dir: Path, database: BenchDatabase) -> None:
    """Point Django settings at the temporary folder. Must run before django.setup()."""
    os.environ["FREESPORT_VAR_DIR"] = str(var_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    # Both default to folders under FREESPORT_VAR_DIR, which the benchmark empties.
    os.environ.pop("MEDIA_ROOT", None)
    os.environ.pop("EXCHANGE_ROOT", None)
    # Run as production does, because with DEBUG on Django stores every query.
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    if database.is_postgres:
        os.environ["DATABASE_URL"] = database.bench_url()
    else:
        os.environ.pop("DATABASE_URL", None)


def describe_machine() -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "ram_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def describe_revision() -> str:
    """Return the project's git commit, marked when the working tree has changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} with uncommitted changes" if changes else commit


def describe_database() -> tuple[str, str]:
    """Return the database vendor and server version of the default connection."""
    from django.db import connection

    connection.ensure_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return connection.vendor, str(cursor.fetchone()[0])
    return connection.vendor, sqlite3.sqlite_version


# --- Reader and bulk upsert -----------------------------------------------------


def measure_parse(files: Sequence[Any]) -> list[FileTiming]:
    """Time the project's reader over each file. Items exclude Section markers."""
    from worker.commerceml.reader import CatalogReader, Section

    results = []
    for file in files:
        items = 0
        started = time.perf_counter()
        for item in CatalogReader(file.path):
            if not isinstance(item, Section):
                items += 1
        seconds = time.perf_counter() - started
        results.append(FileTiming(file.name, file.kind, items, seconds))
    return results


def product_rows(path: Path) -> list[dict[str, Any]]:
    """Read the product records of one file as Product field dicts.

    The values and lengths follow write_products, but the group foreign key stays
    empty because the phases that use these rows import no groups.
    """
    from freesport.catalog.models import EXTERNAL_ID_LENGTH, NAME_LENGTH, SKU_LENGTH
    from freesport.catalog.upsert import content_hash
    from worker.commerceml.reader import CatalogReader, ProductRecord

    rows = []
    for record in CatalogReader(path):
        if not isinstance(record, ProductRecord):
            continue
        group = record.group_ids[0] if record.group_ids else ""
        fields = {
            "name": record.name[:NAME_LENGTH],
            "sku": record.sku[:SKU_LENGTH],
            "barcode": record.barcode[:50],
            "description": record.description,
            "group_external_id": group[:EXTERNAL_ID_LENGTH],
            "unit_code": record.unit_code[:20],
            "properties": record.properties,
            "is_deleted": record.deleted,
            "is_active": not record.deleted,
        }
        rows.append(
            {
                "external_id": record.external_id,
                **fields,
                "content_hash": content_hash(fields),
                "last_seen_session": BENCH_SESSION_ID,
            }
        )
    return rows


def measure_bulk_upsert(goods_files: Sequence[Path], batch_size: int) -> Measurement:
    """Time bulk_create upserts of the goods files' product rows.

    Reading the rows is not timed. Each batch of ``batch_size`` rows runs in its
    own transaction, as the pipeline's batches do. Creating the model instances
    is timed, because bulk_create needs them.
    """
    from django.db import transaction

    from freesport.catalog.models import Product

    rows_written = 0
    seconds = 0.0
    for path in goods_files:
        rows = product_rows(path)
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            started = time.perf_counter()
            with transaction.atomic():
                Product.objects.bulk_create(
                    [Product(**row) for row in batch],
                    batch_size=batch_size,
                    update_conflicts=True,
                    unique_fields=["external_id"],
                    update_fields=PRODUCT_UPDATE_FIELDS,
                )
            seconds += time.perf_counter() - started
            rows_written += len(batch)
    stored = Product.objects.count()
    if stored != rows_written:
        raise BenchmarkError(
            f"Bulk upsert wrote {rows_written} rows but the table has {stored}. "
            "Check the package for repeated product ids."
        )
    return Measurement(rows_written, seconds)


def measure_picture_copy(package: Path, target: Path) -> Measurement:
    """Time copying every picture of the package into an empty folder.

    write_products copies each new product's pictures into MEDIA_ROOT the same
    way, one shutil.copyfile per file. The sequential limit leaves this work out.
    """
    source_root = package / PICTURES_DIR
    sources = sorted(p for p in source_root.rglob("*") if p.is_file())
    started = time.perf_counter()
    for source in sources:
        destination = target / source.relative_to(source_root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    seconds = time.perf_counter() - started
    shutil.rmtree(target, ignore_errors=True)
    return Measurement(len(sources), seconds)


def measure_per_row(goods_files: Sequence[Path], limit: int) -> Measurement:
    """Time Product.objects.update_or_create, one call per row, on ``limit`` rows."""
    from freesport.catalog.models import Product

    pairs: list[tuple[str, dict[str, Any]]] = []
    for path in goods_files:
        for row in product_rows(path)[: limit - len(pairs)]:
            defaults = dict(row)
            pairs.append((defaults.pop("external_id"), defaults))
        if len(pairs) >= limit:
            break
    started = time.perf_counter()
    for external_id, defaults in pairs:
        Product.objects.update_or_create(external_id=external_id, defaults=defaults)
    return Measurement(len(pairs), time.perf_counter() - started)


# --- Worker process and end to end ----------------------------------------------


def process_rss(process: psutil.Process) -> int:
    """Return the RSS in bytes of a process and all its children."""
    total = int(process.memory_info().rss)
    for child in process.children(recursive=True):
        try:
            total += int(child.memory_info().rss)
        except psutil.NoSuchProcess:
            continue
    return total


class RssSampler(threading.Thread):
    """Background thread that records the peak RSS of a process tree."""

    def __init__(self, pid: int, interval_s: float = RSS_INTERVAL_S) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.samples = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                rss = process_rss(self.process)
            except psutil.NoSuchProcess:
                return
            self.peak_bytes = max(self.peak_bytes, rss)
            self.samples += 1
            self._done.wait(self.interval_s)

    def finish(self) -> int:
        """Stop sampling and return the peak RSS in bytes."""
        self._done.set()
        self.join()
        return self.peak_bytes


class CeleryWorker:
    """A ``celery worker`` subprocess with the solo pool on the benchmark queue."""

    def __init__(self, log_path: Path) -> None:
        self.name = f"{QUEUE}-{os.getpid()}@{socket.gethostname()}"
        self.log_path = log_path
        env = dict(os.environ)
        env["PYTHONPATH"] = str(PROJECT_DIR)
        command = [
            sys.executable, "-m", "celery", "-A", "worker.app", "worker",
            "-Q", QUEUE, "-n", self.name, "--pool", "solo", "-l", "warning",
        ]  # fmt: skip
        self._log: IO[bytes] = open(log_path, "ab")
        self.process = subprocess.Popen(
            command,
            cwd=PROJECT_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchmarkError(
                f"Worker {self.name} exited with code {self.process.returncode}. "
                f"Last lines of {self.log_path}:\n{self.log_tail()}"
            )

    def wait_ready(self, timeout_s: float = WORKER_START_TIMEOUT_S) -> None:
        from config.celery import app

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if app.control.ping(destination=[self.name], timeout=0.5):
                return
        raise BenchmarkError(
            f"Worker {self.name} did not respond to ping within {timeout_s:.0f} s. "
            f"Last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Send SIGTERM (warm shutdown) to the worker's process group.

        SIGKILL follows if the worker still runs after WORKER_STOP_TIMEOUT_S.
        """
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=WORKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "Worker %s did not stop within %.0f s, sending SIGKILL",
                    self.name,
                    WORKER_STOP_TIMEOUT_S,
                )
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            return f"(log not readable: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def imported_files(self) -> list[FileTiming]:
        """Return the per-file import times that the worker logged."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return [
            FileTiming(
                match["name"],
                match["kind"],
                int(match["items"]),
                float(match["seconds"]),
            )
            for match in IMPORTED_LINE.finditer(text)
        ]


def count_catalog_rows() -> dict[str, int]:
    from freesport.catalog.models import Offer, Price, Product, Stock

    return {
        "goods": Product.objects.count(),
        "offers": Offer.objects.count(),
        "prices": Price.objects.count(),
        "stock_rows": Stock.objects.count(),
    }


def wait_finished(session: Any, worker: CeleryWorker, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        session.refresh_from_db()
        if session.is_finished:
            return
        worker.check_alive()
        if time.monotonic() > deadline:
            raise BenchmarkError(
                f"Import timed out: session {session.pk} is still {session.status} "
                f"after {timeout_s:.0f} s. Raise --timeout or see {worker.log_path}."
            )
        time.sleep(POLL_INTERVAL_S)


def measure_end_to_end(package: Path, log_path: Path, timeout_s: float) -> EndToEnd:
    """Import the package on a real worker, timed from enqueue to a finished session."""
    from freesport.exchange.models import ExchangeSession
    from worker.imports.sessions import create_session, enqueue_import

    worker = CeleryWorker(log_path)
    try:
        worker.wait_ready()
        rss_before = process_rss(psutil.Process(worker.pid))
        session = create_session([package])
        sampler = RssSampler(worker.pid)
        sampler.start()
        started = time.perf_counter()
        enqueue_import(session, queue=QUEUE)
        try:
            wait_finished(session, worker, timeout_s)
            seconds = time.perf_counter() - started
        finally:
            peak = sampler.finish()
    finally:
        worker.stop()
    if session.status == ExchangeSession.Status.FAILED:
        raise BenchmarkError(
            f"Session {session.pk} failed: {session.error}. See {log_path}."
        )
    return EndToEnd(
        seconds=seconds,
        status=session.status,
        counts=session.counts,
        session_seconds=session.duration_s,
        rss_before_bytes=rss_before,
        peak_rss_bytes=peak,
        rss_samples=sampler.samples,
        database_rows=count_catalog_rows(),
        worker_files=worker.imported_files(),
    )


def measure_goods_pipeline(package: Path, profile_path: Path | None) -> Measurement:
    """Run catalog.import_file in this process and time the goods files only.

    The classifier files before the goods (groups, properties, units) are imported
    first and not timed, so products find their groups as they do on the worker.
    Files after the last goods file are not imported.
    """
    from freesport.catalog.models import Product
    from worker.imports import catalog
    from worker.imports.sessions import create_session

    session = create_session([package], deactivate_missing=False)
    files = list(session.files.order_by("order"))
    goods_positions = [i for i, f in enumerate(files) if f.kind in GOODS_KINDS]
    if not goods_positions:
        raise BenchmarkError(f"The package in {package} has no goods files.")
    profiler = cProfile.Profile() if profile_path else None
    seconds = 0.0
    for file in files[: goods_positions[-1] + 1]:
        if file.kind not in GOODS_KINDS:
            catalog.import_file(session.pk, file.pk)
            continue
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        status = catalog.import_file(session.pk, file.pk)
        if profiler:
            profiler.disable()
        seconds += time.perf_counter() - started
        if status != "imported":
            raise BenchmarkError(
                f"In-process import of {file.name} finished with status {status!r}, "
                "expected 'imported'. See the log lines above."
            )
    if profiler and profile_path:
        profiler.dump_stats(str(profile_path))
    return Measurement(Product.objects.count(), seconds)


# --- Report ---------------------------------------------------------------------


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator > 0 else None


def per_second(items: int, seconds: float) -> float:
    return round(items / seconds, 1) if seconds > 0 else 0.0


def megabytes(value: int) -> float:
    return round(value / MEGABYTE, 1)


def goods_seconds(files: Sequence[FileTiming]) -> float:
    return sum(f.seconds for f in files if f.kind in GOODS_KINDS)


def sum_by_kind(files: Sequence[FileTiming]) -> dict[str, dict[str, float]]:
    """Return the number of files, items and seconds per file kind."""
    kinds: dict[str, dict[str, float]] = {}
    for file in files:
        entry = kinds.setdefault(file.kind, {"files": 0, "items": 0, "seconds": 0.0})
        entry["files"] += 1
        entry["items"] += file.items
        entry["seconds"] = round(entry["seconds"] + file.seconds, 3)
    return kinds


def build_report(
    args: argparse.Namespace,
    summary: Any,
    package_bytes: int,
    parse: list[FileTiming],
    bulk: Measurement,
    pictures: Measurement,
    end_to_end: EndToEnd,
    pipeline: Measurement,
    per_row: Measurement,
    database: tuple[str, str],
) -> dict[str, Any]:
    from django.conf import settings

    pipeline_batch_size = settings.CATALOG_IMPORT_BATCH_SIZE
    parse_items = sum(f.items for f in parse)
    parse_seconds = sum(f.seconds for f in parse)
    goods_parse_items = sum(f.items for f in parse if f.kind in GOODS_KINDS)
    goods_parse_seconds = goods_seconds(parse)
    limit = per_second(goods_parse_items, goods_parse_seconds + bulk.seconds)
    limit_with_pictures = per_second(
        goods_parse_items, goods_parse_seconds + bulk.seconds + pictures.seconds
    )

    items = summary.goods + summary.offers + summary.prices + summary.stock_rows
    e2e_rate = per_second(items, end_to_end.seconds)
    worker_goods = goods_seconds(end_to_end.worker_files)
    if worker_goods > 0:
        goods_e2e_seconds, goods_source = worker_goods, "worker log"
    else:
        goods_e2e_seconds, goods_source = pipeline.seconds, "in-process pipeline"
    goods_e2e_rate = per_second(summary.goods, goods_e2e_seconds)
    per_row_rate = per_second(per_row.items, per_row.seconds)
    expected_rows = {
        "goods": summary.goods,
        "offers": summary.offers,
        "prices": summary.prices,
        "stock_rows": summary.stock_rows,
    }
    return {
        "goods": summary.goods,
        "offers": summary.offers,
        "prices": summary.prices,
        "stock_rows": summary.stock_rows,
        "goods_per_file": args.goods_per_file,
        "package_files": len(summary.files),
        "package_mb": megabytes(package_bytes),
        "database": database[0],
        "database_version": database[1],
        "machine": describe_machine(),
        "revision": describe_revision(),
        # 1-minute load averages, because other processes skew the numbers.
        "load_average_start": args.load_average_start,
        "load_average_end": round(os.getloadavg()[0], 2),
        "parse_items": parse_items,
        "parse_seconds": round(parse_seconds, 3),
        "parse_items_per_s": per_second(parse_items, parse_seconds),
        "goods_parse_seconds": round(goods_parse_seconds, 3),
        "bulk_upsert_rows": bulk.items,
        "bulk_upsert_seconds": round(bulk.seconds, 3),
        "bulk_upsert_rows_per_s": per_second(bulk.items, bulk.seconds),
        "batch_size": args.batch_size,
        "pipeline_batch_size": pipeline_batch_size,
        "limit_items": goods_parse_items,
        "limit_items_per_s": limit,
        "pictures": pictures.items,
        "picture_copy_seconds": round(pictures.seconds, 3),
        "limit_with_pictures_items_per_s": limit_with_pictures,
        "end_to_end_items": items,
        "end_to_end_seconds": round(end_to_end.seconds, 3),
        "end_to_end_items_per_s": e2e_rate,
        "end_to_end_goods_per_s": per_second(summary.goods, end_to_end.seconds),
        "session_status": end_to_end.status,
        "session_seconds": end_to_end.session_seconds,
        "session_counts": end_to_end.counts,
        "database_rows": end_to_end.database_rows,
        "rows_match_package": end_to_end.database_rows == expected_rows,
        "worker_seconds_by_kind": sum_by_kind(end_to_end.worker_files),
        "worker_goods_seconds": round(worker_goods, 3) if worker_goods else None,
        "in_process_goods_seconds": round(pipeline.seconds, 3),
        "in_process_goods_per_s": per_second(pipeline.items, pipeline.seconds),
        "goods_end_to_end_source": goods_source,
        "goods_end_to_end_seconds": round(goods_e2e_seconds, 3),
        "goods_end_to_end_goods_per_s": goods_e2e_rate,
        "per_row_items": per_row.items,
        "per_row_seconds": round(per_row.seconds, 3),
        "per_row_items_per_s": per_row_rate,
        "worker_rss_before_mb": megabytes(end_to_end.rss_before_bytes),
        "peak_rss_mb": megabytes(end_to_end.peak_rss_bytes),
        "rss_samples": end_to_end.rss_samples,
        "headline": "goods_end_to_end_vs_limit and goods_end_to_end_vs_per_row",
        "goods_end_to_end_vs_limit": ratio(goods_e2e_rate, limit),
        "goods_end_to_end_vs_per_row": ratio(goods_e2e_rate, per_row_rate),
        "goods_end_to_end_vs_limit_with_pictures": ratio(
            goods_e2e_rate, limit_with_pictures
        ),
        "end_to_end_vs_limit": ratio(e2e_rate, limit),
        "end_to_end_vs_per_row": ratio(e2e_rate, per_row_rate),
        "note": (
            "end_to_end_items counts goods, offers, prices and stock rows, while "
            "the limit and the per-row baseline count goods only, so "
            "end_to_end_vs_limit and end_to_end_vs_per_row mix units. The goods_* "
            "ratios compare goods with goods."
        ),
        "profiled": bool(args.profile),
    }


def format_table(report: dict[str, Any]) -> str:
    machine = report["machine"]

    def row(label: str, items: int | str, seconds: float | str, rate: Any) -> str:
        count = f"{items:,}" if isinstance(items, int) else items
        time_text = f"{seconds:.2f}" if isinstance(seconds, float) else seconds
        rate_text = f"{rate:,.0f}" if isinstance(rate, float | int) else str(rate)
        return f"{label:<44}{count:>12}{time_text:>10}{rate_text:>12}"

    def ratio_line(label: str, key: str) -> str:
        value = report[key]
        text = "n/a" if value is None else f"{value:.2f}x"
        return f"  {label:<42}{text}"

    kinds = report["worker_seconds_by_kind"]
    lines = [
        f"machine   {machine['cpu_model']}, {machine['cores']} cores, "
        f"{machine['ram_gb']} GB RAM, Python {machine['python']}",
        f"database  {report['database']} {report['database_version']}",
        f"revision  {report['revision']}; load average {report['load_average_start']}"
        f" at start, {report['load_average_end']} at end",
        f"package   {report['goods']:,} goods, {report['offers']:,} offers, "
        f"{report['prices']:,} prices, {report['stock_rows']:,} stock rows, "
        f"{report['package_files']} files, {report['package_mb']} MB",
        "",
        f"{'measurement':<44}{'items':>12}{'seconds':>10}{'items/s':>12}",
        row(
            "parse, reader over all files",
            report["parse_items"],
            report["parse_seconds"],
            report["parse_items_per_s"],
        ),
        row(
            "bulk upsert, product rows",
            report["bulk_upsert_rows"],
            report["bulk_upsert_seconds"],
            report["bulk_upsert_rows_per_s"],
        ),
        row(
            "sequential limit, goods (parse + upsert)",
            report["limit_items"],
            report["goods_parse_seconds"] + report["bulk_upsert_seconds"],
            report["limit_items_per_s"],
        ),
        row(
            "picture copy, files",
            report["pictures"],
            report["picture_copy_seconds"],
            per_second(report["pictures"], report["picture_copy_seconds"]),
        ),
        row(
            "limit plus picture copy, goods",
            report["limit_items"],
            report["goods_parse_seconds"]
            + report["bulk_upsert_seconds"]
            + report["picture_copy_seconds"],
            report["limit_with_pictures_items_per_s"],
        ),
        row(
            "per-row update_or_create, goods",
            report["per_row_items"],
            report["per_row_seconds"],
            report["per_row_items_per_s"],
        ),
        row(
            "end to end, all kinds (worker)",
            report["end_to_end_items"],
            report["end_to_end_seconds"],
            report["end_to_end_items_per_s"],
        ),
        row(
            "end to end, goods / whole package time",
            report["goods"],
            report["end_to_end_seconds"],
            report["end_to_end_goods_per_s"],
        ),
        row(
            f"goods files only ({report['goods_end_to_end_source']})",
            report["goods"],
            report["goods_end_to_end_seconds"],
            report["goods_end_to_end_goods_per_s"],
        ),
        row(
            "goods files only (in-process pipeline)",
            report["goods"],
            report["in_process_goods_seconds"],
            report["in_process_goods_per_s"],
        ),
        "",
        "worker time by file kind: "
        + ", ".join(
            f"{kind} {entry['seconds']:.2f} s" for kind, entry in kinds.items()
        ),
        f"worker RSS: {report['worker_rss_before_mb']} MB before the run, "
        f"{report['peak_rss_mb']} MB peak ({report['rss_samples']} samples)",
        f"session {report['session_status']}; catalogue rows match the package: "
        f"{report['rows_match_package']}",
        "",
        "headline, goods against goods:",
        ratio_line("goods end to end vs sequential limit", "goods_end_to_end_vs_limit"),
        ratio_line(
            "goods end to end vs per-row baseline", "goods_end_to_end_vs_per_row"
        ),
        ratio_line(
            "goods end to end vs limit plus pictures",
            "goods_end_to_end_vs_limit_with_pictures",
        ),
        "all kinds against the goods-only limit and baseline (mixed units):",
        ratio_line("end to end vs sequential limit", "end_to_end_vs_limit"),
        ratio_line("end to end vs per-row baseline", "end_to_end_vs_per_row"),
    ]
    if report["profiled"]:
        lines.append("the in-process goods time ran under cProfile and is inflated")
    return "\n".join(lines)


# --- Command line ---------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Benchmark the catalogue import on a generated CommerceML package: "
            "reader, bulk upsert, a real Celery worker and a per-row baseline."
        )
    )
    parser.add_argument(
        "--goods", type=int, required=True, help="number of goods in the package"
    )
    parser.add_argument(
        "--goods-per-file",
        type=int,
        default=5000,
        help="goods per goods segment file (default: 5000)",
    )
    parser.add_argument(
        "--baseline-items",
        type=int,
        default=5000,
        help="product rows written by the per-row baseline (default: 5000)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"rows per transaction in the bulk upsert (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the package generator"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_IMPORT_TIMEOUT_S,
        help=(
            "maximum seconds to wait for the worker to finish the import "
            f"(default: {DEFAULT_IMPORT_TIMEOUT_S:.0f})"
        ),
    )
    parser.add_argument(
        "--pg-database",
        help=(
            "name of the PostgreSQL database the benchmark creates and drops "
            "(default: the DATABASE_URL database name plus _bench)"
        ),
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="write cProfile stats of the in-process goods import to this file",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary folder and the PostgreSQL benchmark database",
    )
    args = parser.parse_args(argv)

    for name in ("goods", "goods_per_file", "baseline_items", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    return args


def run(
    args: argparse.Namespace, root: Path, database: BenchDatabase
) -> dict[str, Any]:
    """Run every phase in order and return the report."""
    import django
    from django.conf import settings

    var_dir = root / "var"
    package = root / "package"
    prepare_environment(var_dir, database)
    database.create()
    django.setup()
    logger.setLevel(logging.INFO)
    embedded = getattr(settings, "EMBEDDED_REDIS", None)
    started_redis = embedded.ensure_running() if embedded is not None else False
    try:
        return run_phases(args, var_dir, package, database)
    finally:
        if embedded is not None and started_redis:
            embedded.stop()


def run_phases(
    args: argparse.Namespace, var_dir: Path, package: Path, database: BenchDatabase
) -> dict[str, Any]:
    from worker.commerceml.package import collect
    from worker.commerceml.sample import write_sample_package

    logger.info("Writing a package of %d goods to %s", args.goods, package)
    summary = write_sample_package(
        package, args.goods, seed=args.seed, goods_per_file=args.goods_per_file
    )
    files = collect([package])
    goods_files = [f.path for f in files if f.kind in GOODS_KINDS]
    package_bytes = sum(f.path.stat().st_size for f in files)

    logger.info("Parsing %d files with the reader", len(files))
    parse = measure_parse(files)

    logger.info("Copying %d pictures", summary.pictures)
    pictures = measure_picture_copy(package, var_dir / "picture-copy")

    logger.info("Bulk upsert of %d product rows", summary.goods)
    database.recreate(var_dir)
    bulk = measure_bulk_upsert(goods_files, args.batch_size)

    logger.info("End to end on a Celery worker")
    database.recreate(var_dir)
    database_info = describe_database()
    end_to_end = measure_end_to_end(package, var_dir / "worker.log", args.timeout)

    logger.info("Goods files through the pipeline in this process")
    database.recreate(var_dir)
    pipeline = measure_goods_pipeline(package, args.profile)

    baseline_items = min(args.baseline_items, summary.goods)
    logger.info("Per-row update_or_create of %d rows", baseline_items)
    database.recreate(var_dir)
    per_row = measure_per_row(goods_files, baseline_items)

    return build_report(
        args,
        summary,
        package_bytes,
        parse,
        bulk,
        pictures,
        end_to_end,
        pipeline,
        per_row,
        database_info,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_average_start = round(os.getloadavg()[0], 2)
    try:
        database = BenchDatabase(os.environ.get("DATABASE_URL", ""), args.pg_database)
    except BenchmarkError as error:
        print(f"Benchmark failed: {error}", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="freesport-bench-"))
    try:
        report = run(args, root, database)
    except BenchmarkError as error:
        logger.error("Benchmark failed: %s", error)
        return 1
    finally:
        if args.keep and database.created:
            logger.warning("Kept %s and database %s", root, database.pg_name)
        elif args.keep:
            logger.warning("Kept %s", root)
        else:
            database.drop()
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
