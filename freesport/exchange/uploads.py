"""Files 1C uploads during an HTTP exchange, each session in a folder of its own."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from django.conf import settings

from freesport.exchange.models import ExchangeSession
from worker.commerceml.package import PackageError, ZipLimits, extract_zip

_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_NAME_LENGTH = 500


class UploadError(Exception):
    """An upload the site rejects; the message is sent back to 1C."""


def safe_name(filename: str | None) -> PurePosixPath:
    """Return ``filename`` as a relative path, or raise UploadError.

    1C sends names such as ``import.xml`` or ``import_files/ab/<id>.jpg``. A name
    that could leave the session's folder is rejected: ``..`` parts, absolute
    paths, drive letters, backslashes and NUL bytes.
    """
    if not filename:
        raise UploadError("the filename parameter is missing")
    if len(filename) > MAX_NAME_LENGTH:
        raise UploadError(f"filename is longer than {MAX_NAME_LENGTH} characters")
    if "\x00" in filename:
        raise UploadError(f"filename {filename!r} contains a NUL byte")
    if "\\" in filename:
        raise UploadError(f"filename {filename!r} contains a backslash; use / in paths")
    path = PurePosixPath(filename)
    if path.is_absolute() or _DRIVE.match(filename) or ".." in path.parts:
        raise UploadError(f"filename {filename!r} points outside the exchange folder")
    if not path.parts or path.name in ("", ".") or filename.endswith("/"):
        raise UploadError(f"filename {filename!r} names a folder, not a file")
    return path


def session_folder(session: ExchangeSession) -> Path:
    return Path(session.upload_dir)


def new_session_folder(sessid: str) -> Path:
    # A fresh folder per session: a file re-sent in a new session starts empty.
    folder = Path(settings.EXCHANGE_ROOT) / "http" / sessid
    folder.mkdir(parents=True, exist_ok=False)
    folder.chmod(0o700)
    return folder


def append(
    session: ExchangeSession, name: PurePosixPath, chunks: Iterator[bytes]
) -> int:
    """Append a request body to the named file; return the bytes written.

    1C splits a file larger than ``file_limit`` into several POSTs with the same
    name, so each POST extends the file. Limits per file and per session are
    checked as the bytes arrive; a file that passes its limit is removed.
    """
    target = session_folder(session).joinpath(*name.parts)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and target.stat().st_nlink > 1:
            # Imported already and hard-linked into MEDIA_ROOT: a re-sent file
            # starts afresh instead of extending the published picture.
            target.unlink()
        size = target.stat().st_size if target.exists() else 0
        return _write_chunks(session, name, target, size, chunks)
    except OSError as error:
        raise UploadError(
            f"{name} cannot be stored ({error.strerror}); check the file name"
        ) from error


def _write_chunks(
    session: ExchangeSession,
    name: PurePosixPath,
    target: Path,
    size: int,
    chunks: Iterator[bytes],
) -> int:
    written = 0
    file_limit = settings.EXCHANGE_MAX_FILE_BYTES
    session_limit = settings.EXCHANGE_MAX_SESSION_BYTES
    with open(target, "ab") as sink:
        for chunk in chunks:
            written += len(chunk)
            if size + written > file_limit:
                sink.close()
                target.unlink(missing_ok=True)
                raise UploadError(
                    f"{name} is larger than the {file_limit} bytes allowed per file "
                    "(EXCHANGE_MAX_FILE_BYTES); the file was removed"
                )
            if session.bytes_received + written > session_limit:
                raise UploadError(
                    f"the exchange passed the {session_limit} bytes allowed per "
                    "session (EXCHANGE_MAX_SESSION_BYTES)"
                )
            sink.write(chunk)
    return written


def exists(session: ExchangeSession, name: PurePosixPath) -> bool:
    return session_folder(session).joinpath(*name.parts).is_file()


def unpack_new_zips(session: ExchangeSession) -> list[str]:
    """Unpack zips uploaded since the last import call, each exactly once."""
    folder = session_folder(session)
    unpacked = []
    limits = ZipLimits(
        max_entries=settings.EXCHANGE_ZIP_MAX_ENTRIES,
        max_bytes=settings.EXCHANGE_ZIP_MAX_BYTES,
        max_ratio=settings.EXCHANGE_ZIP_MAX_RATIO,
    )
    for archive in sorted(folder.rglob("*")):
        relative = archive.relative_to(folder).as_posix()
        if archive.suffix.lower() != ".zip" or relative in session.unpacked:
            continue
        try:
            extract_zip(archive, archive.parent, limits)
        except PackageError as error:
            # The message names the archive by its path in the upload, not on disk.
            raise UploadError(str(error).replace(f"{folder}/", "")) from error
        unpacked.append(relative)
    return unpacked
