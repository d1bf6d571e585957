"""Creating exchange sessions from packages on disk and enqueuing their import."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from celery import chain
from celery.utils import uuid
from django.conf import settings
from django.db import transaction

from freesport.exchange.models import ExchangeFile, ExchangeSession
from worker.commerceml.package import ZipLimits, collect, extract_zip


def zip_limits() -> ZipLimits:
    return ZipLimits(
        max_entries=settings.EXCHANGE_ZIP_MAX_ENTRIES,
        max_bytes=settings.EXCHANGE_ZIP_MAX_BYTES,
        max_ratio=settings.EXCHANGE_ZIP_MAX_RATIO,
    )


def create_session(
    paths: Sequence[Path], *, deactivate_missing: bool = True
) -> ExchangeSession:
    """Register a package (directories, files or zips) as a queued session.

    Zips are unpacked into the session's own folder under ``EXCHANGE_ROOT``;
    directories and loose files are read where they are.
    """
    session = ExchangeSession.objects.create(
        package=", ".join(str(p) for p in paths)[:500],
        deactivate_missing=deactivate_missing,
    )
    sources: list[Path] = []
    for path in paths:
        if path.suffix.lower() == ".zip" and path.is_file():
            target = Path(settings.EXCHANGE_ROOT) / f"session-{session.pk}" / path.stem
            sources.append(extract_zip(path, target, zip_limits()))
        else:
            sources.append(path.resolve())
    files = collect(sources)
    ExchangeFile.objects.bulk_create(
        [
            ExchangeFile(
                session=session,
                name=file.name,
                path=str(file.path),
                kind=file.kind,
                order=index,
                size=file.path.stat().st_size,
            )
            for index, file in enumerate(files)
        ]
    )
    session.bytes_total = sum(f.path.stat().st_size for f in files)
    session.save(update_fields=["bytes_total"])
    return session


def enqueue_import(session: ExchangeSession, *, queue: str | None = None) -> list[str]:
    """Queue one task per pending file, in order, then the task that settles them.

    The task ids are added to the session before anything is published, so an
    operator can find every task of the session in Flower.
    """
    from worker.tasks.imports import finish_import, import_file

    pending = session.files.filter(status=ExchangeFile.Status.PENDING).order_by("order")
    file_ids = list(pending.values_list("pk", flat=True))
    signatures = [
        import_file.si(session.pk, file_id).set(task_id=uuid()) for file_id in file_ids
    ]
    signatures.append(finish_import.si(session.pk).set(task_id=uuid()))
    task_ids = [s.options["task_id"] for s in signatures]
    session.task_ids = [*session.task_ids, *task_ids]
    session.save(update_fields=["task_ids"])
    if queue:
        for signature in signatures:
            signature.set(queue=queue)
    workflow = chain(*signatures)
    transaction.on_commit(workflow.apply_async)
    return task_ids
