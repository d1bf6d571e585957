"""State of the 1C HTTP service emulator: ledger, request log and credentials.

Handler threads share these objects, so each one guards its data with a lock
and hands out copies.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from onec_emulator.service_faults import FaultSchedule

ENDPOINTS = ("ping", "customers", "orders", "token")


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class IdempotencyKeyReused(Exception):
    """An Idempotency-Key came back with a different request body."""


class Ledger:
    """Operations 1C accepted, one row per endpoint and Idempotency-Key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._by_key: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}

    def accept(
        self, endpoint: str, idempotency_key: str, payload: Any
    ) -> tuple[dict[str, Any], bool]:
        """Record an operation once per key; return its row and whether it is new.

        Raises ``IdempotencyKeyReused`` when the key was used for another body.
        """
        fingerprint = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        with self._lock:
            known = self._by_key.get((endpoint, idempotency_key))
            if known is not None:
                row, known_fingerprint = known
                if known_fingerprint != fingerprint:
                    raise IdempotencyKeyReused(idempotency_key)
                return copy.deepcopy(row), False
            row = {
                "seq": len(self._rows) + 1,
                "endpoint": endpoint,
                "idempotency_key": idempotency_key,
                # 1C references are UUIDs.
                "id": str(uuid.uuid4()),
                "accepted_at": utc_now_iso(),
                "payload": copy.deepcopy(payload),
            }
            self._rows.append(row)
            self._by_key[(endpoint, idempotency_key)] = (row, fingerprint)
            return copy.deepcopy(row), True

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._rows)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._by_key.clear()


class RequestLog:
    """Every request that reached a contract endpoint, with the outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []

    def add(
        self,
        *,
        method: str,
        path: str,
        endpoint: str,
        idempotency_key: str | None,
    ) -> dict[str, Any]:
        """Record a request as it arrives; return the record for ``update``.

        ``status`` stays None until a response is sent, and ``fault`` names the
        fault applied to the request, if any.
        """
        record: dict[str, Any] = {
            "time": utc_now_iso(),
            "method": method,
            "path": path,
            "endpoint": endpoint,
            "status": None,
            "idempotency_key": idempotency_key,
            "fault": None,
        }
        with self._lock:
            self._records.append(record)
        return record

    def update(self, record: dict[str, Any], **fields: Any) -> None:
        """Set fields of a record that ``add`` returned."""
        with self._lock:
            record.update(fields)

    def records(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(record)
                for record in self._records
                if endpoint is None or record["endpoint"] == endpoint
            ]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


@dataclass(frozen=True)
class IssuedToken:
    expires_at: float  # monotonic clock


class CredentialStore:
    """The one user the emulator accepts, its password and the tokens issued."""

    def __init__(self, user: str, password: str, token_ttl_s: int) -> None:
        self._lock = threading.Lock()
        self.user = user
        self._password = password
        self.token_ttl_s = token_ttl_s
        self._tokens: dict[str, IssuedToken] = {}
        self.tokens_issued = 0

    @property
    def password(self) -> str:
        with self._lock:
            return self._password

    def check_basic(self, header: str | None) -> bool:
        """Check an ``Authorization: Basic`` header with UTF-8 credentials."""
        if header is None or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[len("Basic ") :], validate=True)
            user, _, password = decoded.decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        with self._lock:
            expected_password = self._password
        user_matches = hmac.compare_digest(user.encode(), self.user.encode())
        password_matches = hmac.compare_digest(
            password.encode(), expected_password.encode()
        )
        return user_matches and password_matches

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = IssuedToken(time.monotonic() + self.token_ttl_s)
            self.tokens_issued += 1
        return token

    def check_bearer(self, header: str | None) -> bool:
        if header is None or not header.startswith("Bearer "):
            return False
        token = header[len("Bearer ") :].strip()
        with self._lock:
            issued = self._tokens.get(token)
        return issued is not None and issued.expires_at > time.monotonic()

    def expire(self, new_password: str | None = None) -> None:
        """Revoke every issued token and, if given, accept only ``new_password``."""
        with self._lock:
            self._tokens.clear()
            if new_password is not None:
                self._password = new_password


@dataclass
class EmulatorState:
    """Everything the request handlers share: settings, ledger, log and faults."""

    base_path: str
    token_auth: bool
    credentials: CredentialStore
    faults: FaultSchedule = field(default_factory=lambda: FaultSchedule(ENDPOINTS))
    ledger: Ledger = field(default_factory=Ledger)
    requests: RequestLog = field(default_factory=RequestLog)
    # Set while the service stops, so held requests return at once.
    stopping: threading.Event = field(default_factory=threading.Event)

    def endpoint_for(self, path: str) -> str | None:
        """Return the contract endpoint of a URL path, or None if it has none.

        The token endpoint exists only with token auth.
        """
        prefix = self.base_path + "/"
        if not path.startswith(prefix):
            return None
        endpoint = path[len(prefix) :]
        if endpoint not in ENDPOINTS or (endpoint == "token" and not self.token_auth):
            return None
        return endpoint
