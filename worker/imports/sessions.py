"""Creating exchange sessions from packages on disk and enqueuing their import."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from celery import chain
from celery.utils import uuid
from django.conf import settings
from django.db import transaction

from freesport.exchange.models import ExchangeFile, ExchangeSession
from worker.commerceml.package import PackageError, ZipLimits, collect, extract_zip


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
            sources.append(_unpack(path, session))
        else:
            sources.append(path.resolve())
    files = collect(sources)
    if not any(file.is_catalog or file.kind == "unknown" for file in files):
        raise PackageError(
            f"no CommerceML XML files found in {', '.join(str(p) for p in paths)}; "
            "pass the folder or zip 1C exported (import.xml, offers.xml, goods_*.xml …)"
        )
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


def _unpack(archive: Path, session: ExchangeSession) -> Path:
    """Unpack a zip into a new folder of its own, removed again if unpacking fails.

    The folder name is random: a session whose transaction rolled back may hand
    its id to the next one, and that one must not find the old files.
    """
    root = Path(settings.EXCHANGE_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"session-{session.pk}-", dir=root))
    try:
        return extract_zip(archive, folder / archive.stem, zip_limits())
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


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
