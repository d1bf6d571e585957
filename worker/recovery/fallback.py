"""File-exchange fallback: documents written to the exchange outbox and recorded.

1C collects the outbox through its own exchange (the site-exchange protocol's
``mode=query``); each document is recorded as an ``OutboxDocument`` until 1C
has taken it. A document written again for the same object (a replay) replaces
the file and its uncollected record.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from django.conf import settings

from freesport.integration.models import OutboxDocument
from worker.commerceml.writer import write_atomically


def outbox_dir() -> Path:
    return Path(settings.EXCHANGE_OUTBOX_DIR)


def write_outbox_document(
    *, operation: str, object_ref: str, file_name: str, data: bytes
) -> OutboxDocument:
    """Write ``data`` atomically into the outbox and record it; return the record."""
    path = write_atomically(outbox_dir(), file_name, data)
    document, _ = OutboxDocument.objects.update_or_create(
        path=str(path),
        collected_at=None,
        defaults={
            "operation": operation,
            "object_ref": object_ref,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        },
    )
    return document
