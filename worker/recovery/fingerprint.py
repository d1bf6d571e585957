"""Error groups: a readable list of parts and its SHA-256 digest.

Two failures are in one group when they share the operation, the error kind, the
exception class and the message with every number, id and personal value
removed. Groups decide how often administrators are mailed and which manual
tasks an admin action resolves together.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# Applied in order: UUIDs before hex ids before plain numbers, so that a UUID
# becomes one placeholder rather than several.
NORMALIZERS = (
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
            r"[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{16,}\b"), "<hex>"),
    (re.compile(r"\d+(?:[.,]\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)
MAX_MESSAGE_PART_CHARS = 300


def normalize_message(message: str) -> str:
    """Strip numbers, ids and extra whitespace from an already scrubbed message."""
    for pattern, replacement in NORMALIZERS:
        message = pattern.sub(replacement, message)
    return message.strip()[:MAX_MESSAGE_PART_CHARS]


@dataclass(frozen=True)
class Fingerprint:
    parts: tuple[str, ...]

    @property
    def digest(self) -> str:
        joined = "\x1f".join(self.parts)
        return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def fingerprint_for(
    operation: str, kind: str, error: BaseException, scrubbed_message: str
) -> Fingerprint:
    error_class = type(error)
    return Fingerprint(
        (
            operation,
            kind,
            f"{error_class.__module__}.{error_class.__qualname__}",
            normalize_message(scrubbed_message),
        )
    )
