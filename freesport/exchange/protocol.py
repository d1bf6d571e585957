"""The site side of the 1C site-exchange protocol for ``type=catalog``.

1C is the client. It authenticates with ``checkauth``, requests the limits with
``init`` and uploads files with ``file``, where a large file arrives as several
POSTs with the same name. Then it calls ``import`` for each file until the
response is ``success`` or ``failure``, and may send ``complete`` and
``deactivate``. Every response is plain text whose first line is ``success``,
``progress`` or ``failure``. The lines after it go to 1C's exchange log.

The handlers here work on an ``ExchangeSession`` and return an ``Answer``; the
view only authenticates, finds the session and turns exceptions into
``failure``.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from freesport.exchange import uploads
from freesport.exchange.models import ExchangeFile, ExchangeSession
from worker.commerceml.package import collect
from worker.imports.deactivation import DeactivationRefused, deactivate_missing
from worker.imports.sessions import enqueue_import

SUCCESS = "success"
PROGRESS = "progress"
FAILURE = "failure"
SUPPORTED_VERSION = "3.1"
_VERSION = re.compile(r"^\d{1,2}(\.\d{1,3}){0,2}$")


@dataclass
class Answer:
    status: str
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join([self.status, *self.lines]) + "\n"

    @property
    def summary(self) -> str:
        return " ".join([self.status, *self.lines])[:500]


def failure(reason: str) -> Answer:
    return Answer(FAILURE, [reason.replace("\n", " ")[:1000]])


def start_session(user: User, client: str) -> ExchangeSession:
    """Open an exchange session for an authenticated 1C user."""
    sessid = secrets.token_hex(24)
    # The folder name is not the token, so paths shown to operators reveal none.
    folder = uploads.new_session_folder(secrets.token_hex(8))
    return ExchangeSession.objects.create(
        package=f"1C exchange from {client}"[:500],
        source=ExchangeSession.Source.HTTP,
        status=ExchangeSession.Status.RECEIVING,
        sessid=sessid,
        user=user,
        upload_dir=str(folder),
        deactivate_missing=False,
    )


def checkauth(session: ExchangeSession) -> Answer:
    cookie = settings.EXCHANGE_COOKIE_NAME
    return Answer(
        SUCCESS,
        [
            cookie,
            session.sessid or "",
            f"sessid={session.sessid}",
            f"timestamp={int(time.time())}",
        ],
    )


def init(session: ExchangeSession, version: str | None) -> Answer:
    lines = [
        f"zip={'yes' if settings.EXCHANGE_ZIP else 'no'}",
        f"file_limit={settings.EXCHANGE_FILE_LIMIT}",
        f"sessid={session.sessid}",
    ]
    if version:
        # The lower of 1C's version and ours; a malformed one gets ours.
        offered = version if _VERSION.match(version) else SUPPORTED_VERSION
        session.protocol_version = min(offered, SUPPORTED_VERSION, key=_version_key)
        session.save(update_fields=["protocol_version"])
        lines.append(f"version={session.protocol_version}")
    return Answer(SUCCESS, lines)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def upload(
    session: ExchangeSession, filename: str | None, body: Iterator[bytes]
) -> Answer:
    name = uploads.safe_name(filename)
    if ExchangeFile.objects.filter(session=session, name=name.as_posix()).exists():
        return failure(
            f"{name} was already queued for import in this session; start a new "
            "exchange (mode=checkauth) to send it again"
        )
    written = uploads.append(session, name, body)
    ExchangeSession.objects.filter(pk=session.pk).update(
        bytes_received=session.bytes_received + written
    )
    session.bytes_received += written
    return Answer(SUCCESS, [f"{name}: {written} bytes received"])


def import_file(session: ExchangeSession, filename: str | None) -> Answer:
    """Queue the package on the first call, then report the named file's state."""
    name = uploads.safe_name(filename)
    with transaction.atomic():
        locked = ExchangeSession.objects.select_for_update().get(pk=session.pk)
        queued = _queue_new_files(locked)
    row = ExchangeFile.objects.filter(session=session, name=name.as_posix()).first()
    if row is None:
        if not uploads.exists(session, name):
            return failure(f"file not found: {name} was not uploaded in this exchange")
        if name.suffix.lower() == ".zip":
            return _session_answer(session)
        if name.suffix.lower() != ".xml" or "import_files" in name.parts:
            return failure(
                f"{name} is not an XML file of the package; nothing to import"
            )
        return Answer(PROGRESS, [f"{name} waits for the files queued before it"])
    return _file_answer(row, queued)


def _queue_new_files(session: ExchangeSession) -> int:
    """Register uploaded XML files not yet queued and queue them; return how many.

    New files are queued only when nothing of the session is pending, so files
    sent after a first import call still go in dependency order after it.
    """
    if session.files.filter(status=ExchangeFile.Status.PENDING).exists():
        return 0
    folder = uploads.session_folder(session)
    unpacked = uploads.unpack_new_zips(session)
    if unpacked:
        session.unpacked = [*session.unpacked, *unpacked]
        session.save(update_fields=["unpacked"])
    known = set(session.files.values_list("name", flat=True))
    found = [f for f in collect([folder]) if f.name not in known]
    if not found:
        return 0
    start = session.files.count()
    ExchangeFile.objects.bulk_create(
        [
            ExchangeFile(
                session=session,
                name=file.name,
                path=str(file.path),
                kind=file.kind,
                order=start + index,
                size=file.path.stat().st_size,
            )
            for index, file in enumerate(found)
        ]
    )
    session.status = ExchangeSession.Status.QUEUED
    session.finished_at = None
    session.bytes_total += sum(f.path.stat().st_size for f in found)
    session.save(update_fields=["status", "finished_at", "bytes_total"])
    enqueue_import(session, queue=settings.EXCHANGE_IMPORT_QUEUE)
    return len(found)


def _file_answer(row: ExchangeFile, queued: int) -> Answer:
    session = row.session
    if (
        row.status == ExchangeFile.Status.PENDING
        and session.status == session.Status.FAILED
    ):
        return failure(session.error or "the import failed")
    if row.status == ExchangeFile.Status.PENDING:
        share = session.bytes_done / session.bytes_total if session.bytes_total else 0.0
        note = f"{queued} files queued; " if queued else ""
        return Answer(
            PROGRESS, [f"{note}importing {row.name}: package {share:.0%} done"]
        )
    if row.status == ExchangeFile.Status.FAILED:
        # Errors name files by their path on disk, but 1C uses the upload name.
        error = row.error.replace(f"{session.upload_dir}/", "")
        return failure(f"{row.name}: {error}")
    skipped = sum(entity.get("skipped", 0) for entity in row.counts.values())
    detail = f"{row.name}: {row.items} items"
    if skipped:
        detail += f", {skipped} skipped (see the exchange session in the admin)"
    return Answer(SUCCESS, [detail])


def _session_answer(session: ExchangeSession) -> Answer:
    session.refresh_from_db()
    if not session.is_finished:
        return Answer(PROGRESS, [f"package {session.status}"])
    if session.status == ExchangeSession.Status.FAILED:
        return failure(session.error or "the import failed")
    return Answer(SUCCESS, [f"package {session.status}"])


def complete(session: ExchangeSession) -> Answer:
    session.completed_at = timezone.now()
    session.save(update_fields=["completed_at"])
    return Answer(SUCCESS, [f"exchange session {session.pk} {session.status}"])


def deactivate(session: ExchangeSession) -> Answer:
    session.refresh_from_db()
    if session.status in (
        ExchangeSession.Status.QUEUED,
        ExchangeSession.Status.RUNNING,
    ):
        return Answer(PROGRESS, ["the import is still running"])
    if session.status == ExchangeSession.Status.RECEIVING:
        return failure("nothing was imported in this exchange; nothing to deactivate")
    try:
        result = deactivate_missing(session)
    except DeactivationRefused as error:
        return failure(str(error))
    if not result:
        return Answer(SUCCESS, ["the package held only changes; nothing deactivated"])
    lines = [f"{key}={value}" for key, value in sorted(result.items())]
    if any(key.endswith("_held") for key in result):
        lines.append(
            "deactivation held back: too many active goods missing; see the admin"
        )
    return Answer(SUCCESS, lines)
