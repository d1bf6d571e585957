"""Parsers of the 2xx bodies of the 1C HTTP service contract.

Each parser takes the decoded JSON and raises ``OneCDataFormatError`` when it is
not the shape that docs/onec-http-service.md describes. Error messages name the
missing or invalid field but never repeat a value from the body.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, TypedDict

import requests

from freesport.exceptions import OneCDataFormatError
from worker.onec.errors import Endpoint, decode_json

EXPORT_STATUSES = frozenset({"created", "exists"})


class ExportResult(TypedDict):
    """1C's response to an export: its reference for the record and the outcome."""

    id: str
    status: str  # "created", or "exists" when the Idempotency-Key was seen before


@dataclass(frozen=True)
class AccessToken:
    """Bearer token from the token endpoint, expiring at monotonic ``expires_at``."""

    value: str = field(repr=False)
    expires_at: float | None

    def is_expired(self, margin_s: float) -> bool:
        """Return whether the token expires within ``margin_s`` seconds from now."""
        if self.expires_at is None:
            return False
        return time.monotonic() + margin_s >= self.expires_at


def shape_error(endpoint: Endpoint, status: int, problem: str) -> OneCDataFormatError:
    return OneCDataFormatError(
        f"1C returned HTTP {status} for {endpoint}, but {problem}.",
        details=endpoint.details(http_status=status, reason="unexpected_shape"),
    )


def json_object(response: requests.Response, endpoint: Endpoint) -> dict[str, Any]:
    """Decode a 2xx body that must be a JSON object."""
    try:
        body = decode_json(response)
    except ValueError as err:  # UnicodeDecodeError is a ValueError too
        raise OneCDataFormatError(
            f"1C returned HTTP {response.status_code} for {endpoint}, but the body "
            "is not valid UTF-8 JSON.",
            details=endpoint.details(
                http_status=response.status_code, reason="invalid_json"
            ),
        ) from err
    if not isinstance(body, dict):
        raise shape_error(
            endpoint, response.status_code, "the body is not a JSON object"
        )
    return body


def parse_ping(response: requests.Response, endpoint: Endpoint) -> dict[str, Any]:
    body = json_object(response, endpoint)
    if not isinstance(body.get("status"), str):
        raise shape_error(endpoint, response.status_code, 'it has no string "status"')
    return body


def parse_export_result(
    response: requests.Response, endpoint: Endpoint
) -> ExportResult:
    body = json_object(response, endpoint)
    record_id = body.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise shape_error(endpoint, response.status_code, 'it has no string "id"')
    status = body.get("status")
    if status not in EXPORT_STATUSES:
        raise shape_error(
            endpoint,
            response.status_code,
            '"status" is not one of ' + ", ".join(sorted(EXPORT_STATUSES)),
        )
    return ExportResult(id=record_id, status=status)


def parse_access_token(response: requests.Response, endpoint: Endpoint) -> AccessToken:
    """Parse a token response with the fields of RFC 6749 section 5.1."""
    body = json_object(response, endpoint)
    value = body.get("access_token")
    if not isinstance(value, str) or not value:
        raise shape_error(endpoint, response.status_code, 'it has no "access_token"')
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise shape_error(endpoint, response.status_code, '"token_type" is not Bearer')
    expires_in = body.get("expires_in")
    if expires_in is None:
        return AccessToken(value, expires_at=None)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        raise shape_error(
            endpoint, response.status_code, '"expires_in" is not a number'
        )
    return AccessToken(value, expires_at=time.monotonic() + float(expires_in))
