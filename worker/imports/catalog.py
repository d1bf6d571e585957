"""Importing an exchange package into the catalogue, file by file.

``import_file`` streams one file through the reader and writes its items in
batches, one transaction per batch. Items are buffered per kind and flushed in
dependency order (classifier, goods, offers), so a product never waits for a group
written later in the same file. ``finish_import`` settles the session and, for a
full package that imported without a failed file, deactivates what it omitted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, reset_queries, transaction
from django.db.models import F
from django.utils import timezone

from freesport.exchange.models import (
    ExchangeFile,
    ExchangeSession,
    ImportProblem,
    add_counts,
)
from worker.commerceml.reader import (
    CatalogReader,
    CommerceMLError,
    GroupRecord,
    OfferRecord,
    PriceTypeRecord,
    ProductRecord,
    PropertyRecord,
    Section,
    UnitRecord,
    WarehouseRecord,
)
from worker.imports import deactivation, problems
from worker.imports.batches import WRITERS, BatchContext, BatchResult

logger = logging.getLogger("worker.imports")

# Flush order: a kind may refer only to kinds with a lower phase.
PHASE: dict[type, int] = {
    GroupRecord: 0,
    PropertyRecord: 1,
    PriceTypeRecord: 1,
    WarehouseRecord: 1,
    UnitRecord: 1,
    ProductRecord: 2,
    OfferRecord: 3,
}
# Problems stored per session; past this they are only counted, so a file where
# every item is broken cannot fill the database.
MAX_PROBLEMS_PER_SESSION = 100_000


def package_root(file: ExchangeFile) -> Path:
    """Return the folder the file's relative name starts from."""
    path = Path(file.path)
    depth = len(Path(file.name).parts)
    return path.parents[depth - 1]


class FileImport:
    """One file of a session, read once and written in batches."""

    def __init__(self, session: ExchangeSession, file: ExchangeFile) -> None:
        self.session = session
        self.file = file
        self.batch_size = settings.CATALOG_IMPORT_BATCH_SIZE
        self.context = BatchContext(session.pk, package_root(file))
        self.buffers: dict[type, list[Any]] = {}
        self.reader = CatalogReader(file.path)
        self.items = 0
        self.bytes_reported = 0
        self.problem_budget = MAX_PROBLEMS_PER_SESSION - session.problems.count()

    def run(self) -> None:
        for item in self.reader:
            if isinstance(item, Section):
                self.flush_all()
                continue
            self.items += 1
            kind = type(item)
            phase = PHASE[kind]
            for other in list(self.buffers):
                if PHASE[other] < phase and self.buffers[other]:
                    self.flush(other)
            buffer = self.buffers.setdefault(kind, [])
            buffer.append(item)
            if len(buffer) >= self.batch_size:
                self.flush(kind)
        self.flush_all()

    def flush_all(self) -> None:
        for kind in sorted(self.buffers, key=PHASE.__getitem__):
            if self.buffers[kind]:
                self.flush(kind)

    def flush(self, kind: type) -> None:
        records = self.buffers[kind]
        self.buffers[kind] = []
        writer = WRITERS[kind]
        try:
            with transaction.atomic():
                result = writer(records, self.context)
                self._save(result)
        except (IntegrityError, DatabaseError) as error:
            if len(records) == 1 or not _is_row_error(error):
                raise
            logger.warning(
                "Batch of %d %s from %s failed (%s); retrying item by item",
                len(records), kind.__name__, self.file.name, type(error).__name__,
            )  # fmt: skip
            self._flush_one_by_one(records)
        # With DEBUG on, Django keeps every query's SQL; bulk statements are large.
        reset_queries()
        self._report_progress()

    def _flush_one_by_one(self, records: Sequence[Any]) -> None:
        writer = WRITERS[type(records[0])]
        for record in records:
            try:
                with transaction.atomic():
                    result = writer([record], self.context)
                    self._save(result)
            except (IntegrityError, DatabaseError) as error:
                if not _is_row_error(error):
                    raise
                rejected = BatchResult()
                rejected.problems.append(
                    problems.Problem(
                        "database_rejected",
                        type(record).__name__,
                        getattr(record, "external_id", ""),
                        getattr(record, "line", None),
                        f"the database rejected the item ({type(error).__name__}); "
                        "skipped",
                    )
                )
                with transaction.atomic():
                    self._save(rejected)

    def _save(self, result: BatchResult) -> None:
        # Counts live on the file row: files of one session may run in parallel.
        for entity, delta in result.counts.items():
            add_counts(self.file.counts, entity, delta)
        kept = result.problems[: max(self.problem_budget, 0)]
        if len(kept) < len(result.problems):
            lost = len(result.problems) - len(kept)
            add_counts(self.file.counts, "problems_not_stored", {"skipped": lost})
        if kept:
            problems.save(self.session.pk, self.file.name, kept)
            self.problem_budget -= len(kept)
        ExchangeFile.objects.filter(pk=self.file.pk).update(counts=self.file.counts)

    def _report_progress(self) -> None:
        done = self.reader.bytes_read
        delta = done - self.bytes_reported
        if delta > 0:
            _add_bytes(self.session.pk, delta)
            self.bytes_reported = done


def _is_row_error(error: Exception) -> bool:
    """Tell a row the database rejects from a database that is unavailable."""
    from django.db import DataError, OperationalError

    if isinstance(error, IntegrityError | DataError):
        return True
    return not isinstance(error, OperationalError)


def import_file(session_id: int, file_id: int) -> str:
    """Import one file of a session; return the file's final status.

    A file that cannot be read (invalid XML, a DOCTYPE, a truncated file) is marked
    failed with the reason and line, and the session goes on with the next file:
    items read before the error are kept, and the failure stops ``finish_import``
    from deactivating anything.
    """
    session = ExchangeSession.objects.get(pk=session_id)
    file = ExchangeFile.objects.get(pk=file_id, session=session)
    if file.status != ExchangeFile.Status.PENDING:
        return file.status  # redelivered after it finished; nothing to do
    if session.status == ExchangeSession.Status.QUEUED:
        session.status = ExchangeSession.Status.RUNNING
        session.started_at = timezone.now()
        session.save(update_fields=["status", "started_at"])
    if not file.kind or file.kind not in _catalog_kinds():
        file.status = ExchangeFile.Status.SKIPPED
        file.save(update_fields=["status"])
        _add_bytes(session.pk, file.size)
        return file.status
    started = time.monotonic()
    job = FileImport(session, file)
    try:
        job.run()
    except CommerceMLError as error:
        job.flush_all()
        _fail_file(session, file, error, job)
    except Exception as error:
        _fail_file(session, file, error, job)
        _fail_session(session_id, f"{file.name}: {type(error).__name__}: {error}")
        raise
    else:
        file.status = ExchangeFile.Status.IMPORTED
    info = job.reader.info
    file.items = job.items
    file.sections = info.sections
    file.only_changes = _only_changes(
        info.catalog_only_changes, info.offers_only_changes
    )
    file.full_goods = info.has_goods and info.catalog_only_changes is not True
    file.full_offers = info.has_offers and info.offers_only_changes is not True
    file.save()
    _add_bytes(session.pk, max(file.size - job.bytes_reported, 0))
    logger.info(
        "Imported %s (%s): %d items in %.2f s, status %s",
        file.name, file.kind, job.items, time.monotonic() - started, file.status,
    )  # fmt: skip
    return file.status


def _catalog_kinds() -> frozenset[str]:
    from worker.commerceml.package import CATALOG_KINDS

    return CATALOG_KINDS | {"unknown"}


def _only_changes(catalog: bool | None, offers: bool | None) -> bool | None:
    flags = [flag for flag in (catalog, offers) if flag is not None]
    return all(flags) if flags else None


def _add_bytes(session_id: int, amount: int) -> None:
    if amount:
        ExchangeSession.objects.filter(pk=session_id).update(
            bytes_done=F("bytes_done") + amount
        )


def _fail_file(
    session: ExchangeSession, file: ExchangeFile, error: Exception, job: FileImport
) -> None:
    line = getattr(error, "line", None)
    reason = getattr(error, "reason", None) or f"{type(error).__name__}: {error}"
    file.status = ExchangeFile.Status.FAILED
    file.error = str(error)[:2000]
    logger.error("Import of %s failed: %s", file.name, file.error)
    ImportProblem.objects.create(
        session=session,
        file=file.name,
        line=line,
        element="",
        code="file_failed",
        action=ImportProblem.Action.FILE_FAILED,
        message=(
            f"{reason.rstrip('.')}. Items read before the error were imported; "
            "nothing is "
            "deactivated for this package. Fix or re-send the file."
        )[:2000],
    )
    file.items = job.items


def _fail_session(session_id: int, error: str) -> None:
    ExchangeSession.objects.filter(pk=session_id).update(
        status=ExchangeSession.Status.FAILED,
        error=error[:4000],
        finished_at=timezone.now(),
    )


def finish_import(session_id: int) -> str:
    """Settle the session's status once no file is pending.

    An HTTP exchange may add files after a first batch was queued; each batch ends
    with this task, and only the one that finds nothing pending settles the
    session. A command-line session also deactivates what a full package omitted.
    """
    session = ExchangeSession.objects.get(pk=session_id)
    files = list(session.files.all())
    if any(f.status == ExchangeFile.Status.PENDING for f in files):
        return session.status
    failed = [f for f in files if f.status == ExchangeFile.Status.FAILED]
    if failed:
        status = ExchangeSession.Status.FAILED
        session.error = "not imported: " + ", ".join(f.name for f in failed)
    elif session.problems.exclude(action=ImportProblem.Action.HELD).exists():
        status = ExchangeSession.Status.PARTIAL
    else:
        status = ExchangeSession.Status.SUCCEEDED
    session.counts = session.collect_counts()
    session.full_package = any(f.full_goods or f.full_offers for f in files)
    session.status = status
    session.finished_at = timezone.now()
    # Only the fields settled here: the exchange endpoint may set others (such as
    # completed_at) on the same row meanwhile.
    session.save(
        update_fields=["counts", "full_package", "status", "finished_at", "error"]
    )
    if status != ExchangeSession.Status.FAILED and session.deactivate_missing:
        deactivation.deactivate_missing(session)
    logger.info("Exchange session %d finished: %s", session.pk, status)
    return status
