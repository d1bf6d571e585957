"""Mapping of failed calls to the 1C HTTP service onto the ``OneC*`` exceptions.

Transport failures (no HTTP response) and HTTP statuses each go through small
named checks, so the rule for every exception kind can be read in one place:

- connect timeout, read timeout: ``OneCTimeoutError``
- DNS failure, connection refused or reset, cut-off response: ``OneCConnectionError``
- 401, 403: ``OneCAuthenticationError``
- 429, 5xx: ``OneCConnectionError`` with ``retry_after`` from ``Retry-After``
- other 4xx: ``OneCBusinessError`` with 1C's error code in ``details``
- 1xx, 3xx, or a 2xx body that is not the expected JSON: ``OneCDataFormatError``

``details`` contains scalars only (method, endpoint path, HTTP status, reason, 1C's
error code and message), never a request body.
"""

from __future__ import annotations

import email.utils
import json
import re
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple

import requests
from urllib3.exceptions import NameResolutionError, ReadTimeoutError

from freesport.exceptions import (
    OneCAuthenticationError,
    OneCBusinessError,
    OneCConnectionError,
    OneCDataFormatError,
    OneCIntegrationError,
    OneCTimeoutError,
)

# Maximum wait, in seconds, taken from a Retry-After header. A later date or a
# larger number of seconds is cut to this.
MAX_RETRY_AFTER_S = 3600.0
# Maximum length of 1C's error message kept in exception details.
MAX_ONEC_MESSAGE_CHARS = 300

# RFC 9110 section 10.2.3: Retry-After is either delay-seconds (digits only) or
# an HTTP-date.
_DELAY_SECONDS = re.compile(r"^\s*[0-9]+\s*$")


class Endpoint(NamedTuple):
    """HTTP method and path, relative to the service's base URL, of one call."""

    method: str
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def details(self, **extra: Any) -> dict[str, Any]:
        """Build exception details: method, endpoint path and the given scalars."""
        return {"method": self.method, "endpoint": self.path, **extra}


# Checks on exceptions raised by requests, before any HTTP response arrived.


def iter_causes(err: BaseException) -> Iterator[BaseException]:
    """Yield ``err`` and every exception it wraps, depth first.

    requests keeps the urllib3 error in ``args``, urllib3's ``MaxRetryError``
    keeps the failure in ``reason``, and urllib3 raises its own errors from the
    socket error (``__cause__``).
    """
    seen: set[int] = set()
    pending = [err]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, getattr(current, "reason", None), *current.args]
        pending.extend(item for item in linked if isinstance(item, BaseException))


def is_caused_by(
    err: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]
) -> bool:
    return any(isinstance(cause, kinds) for cause in iter_causes(err))


def is_connect_timeout(err: requests.RequestException) -> bool:
    return isinstance(err, requests.ConnectTimeout)


def is_read_timeout(err: requests.RequestException) -> bool:
    """Return whether 1C did not send the response, or the rest of its body, in time.

    requests raises ``ReadTimeout`` while it waits for the status line, but a
    ``ConnectionError`` around urllib3's ``ReadTimeoutError`` when the body stalls.
    """
    return isinstance(err, requests.ReadTimeout) or is_caused_by(err, ReadTimeoutError)


def is_dns_failure(err: requests.RequestException) -> bool:
    return is_caused_by(err, (NameResolutionError, socket.gaierror))


def is_connection_refused(err: requests.RequestException) -> bool:
    return is_caused_by(err, ConnectionRefusedError)


def is_connection_reset(err: requests.RequestException) -> bool:
    """Return whether 1C closed the connection before the response started.

    ``http.client.RemoteDisconnected`` (closed without a status line) is a
    ``ConnectionResetError`` too.
    """
    return is_caused_by(
        err, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
    )


def is_incomplete_response(err: requests.RequestException) -> bool:
    """Return whether the connection closed in the middle of the response body."""
    return isinstance(err, requests.exceptions.ChunkedEncodingError)


class TransportFailure(NamedTuple):
    """One kind of failure without an HTTP response and the exception it becomes."""

    check: Callable[[requests.RequestException], bool]
    reason: str
    error_class: type[OneCIntegrationError]
    description: str


# Checked in order: requests' ConnectTimeout is also a ConnectionError, and a
# connection reset can also show up as a cut-off body.
TRANSPORT_FAILURES = (
    TransportFailure(
        is_connect_timeout,
        "connect_timeout",
        OneCTimeoutError,
        "the connection to 1C timed out",
    ),
    TransportFailure(
        is_read_timeout,
        "read_timeout",
        OneCTimeoutError,
        "1C did not answer within the read timeout",
    ),
    TransportFailure(
        is_dns_failure,
        "dns_failure",
        OneCConnectionError,
        "the 1C host name could not be resolved",
    ),
    TransportFailure(
        is_connection_refused,
        "connection_refused",
        OneCConnectionError,
        "1C refused the connection",
    ),
    TransportFailure(
        is_incomplete_response,
        "incomplete_response",
        OneCConnectionError,
        "the connection closed before the whole response arrived",
    ),
    TransportFailure(
        is_connection_reset,
        "connection_reset",
        OneCConnectionError,
        "1C reset the connection",
    ),
)


def error_for_exception(
    err: requests.RequestException, endpoint: Endpoint
) -> OneCIntegrationError:
    """Build the exception for a call that failed before 1C sent a response.

    A failure that no check recognises (a TLS error, a proxy error) becomes an
    ``OneCConnectionError`` with the reason ``request_failed``.
    """
    for failure in TRANSPORT_FAILURES:
        if failure.check(err):
            return failure.error_class(
                f"{endpoint} failed: {failure.description}.",
                details=endpoint.details(reason=failure.reason),
            )
    return OneCConnectionError(
        f"{endpoint} failed: {type(err).__name__} before 1C responded.",
        details=endpoint.details(reason="request_failed"),
    )


# Checks on HTTP statuses.


def is_success_status(status: int) -> bool:
    return 200 <= status <= 299


def is_auth_status(status: int) -> bool:
    return status in (401, 403)


def is_retryable_status(status: int) -> bool:
    """Return whether the status means 1C is overloaded or failing (429, 5xx)."""
    return status == 429 or 500 <= status <= 599


def is_business_status(status: int) -> bool:
    """Return whether 1C rejected the request: any 4xx except 401, 403 and 429."""
    return 400 <= status <= 499 and not is_auth_status(status) and status != 429


def parse_retry_after(
    value: str | None,
    *,
    now: datetime | None = None,
    maximum: float = MAX_RETRY_AFTER_S,
) -> float | None:
    """Return the seconds to wait from a Retry-After value, between 0 and ``maximum``.

    The value is either a number of seconds or an HTTP-date, which is compared
    with ``now`` (default: the current UTC time). An invalid value returns None.
    """
    if value is None:
        return None
    if _DELAY_SECONDS.match(value):
        seconds = float(int(value))
    else:
        try:
            retry_at = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if retry_at.tzinfo is None:
            # An HTTP-date is always in GMT, but "-0000" parses as a naive time.
            retry_at = retry_at.replace(tzinfo=UTC)
        seconds = (retry_at - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), maximum)


def decode_json(response: requests.Response) -> Any:
    """Decode a response body as UTF-8 JSON, ignoring a leading byte order mark.

    RFC 8259 section 8.1 lets a parser ignore a byte order mark, and a 1C
    service that writes one would otherwise fail every call. Raises
    ``UnicodeDecodeError`` or ``ValueError``.
    """
    return json.loads(response.content.decode("utf-8-sig"))


def onec_error_fields(response: requests.Response) -> dict[str, str]:
    """Return 1C's error code and message from a JSON error body, if it has them.

    The contract's error body is ``{"code": "...", "message": "..."}``. The
    message is cut to ``MAX_ONEC_MESSAGE_CHARS``.
    """
    try:
        body = decode_json(response)
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    fields: dict[str, str] = {}
    code = body.get("code")
    if isinstance(code, str) and code:
        fields["onec_code"] = code
    message = body.get("message")
    if isinstance(message, str) and message:
        fields["onec_message"] = message[:MAX_ONEC_MESSAGE_CHARS]
    return fields


def error_for_status(
    response: requests.Response, endpoint: Endpoint
) -> OneCIntegrationError:
    """Build the exception for a response whose status is not 2xx."""
    status = response.status_code
    onec_fields = onec_error_fields(response)
    details = endpoint.details(http_status=status, **onec_fields)
    described = f"1C returned HTTP {status} for {endpoint}"
    if "onec_code" in onec_fields:
        described += f" with error code {onec_fields['onec_code']}"

    if is_auth_status(status):
        return OneCAuthenticationError(
            f"{described}: 1C rejected the site's credentials. Check "
            "ONEC_HTTP_USER and ONEC_HTTP_PASSWORD, or refresh the credentials.",
            details=details,
        )
    if is_retryable_status(status):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return OneCConnectionError(
            f"{described}: 1C is overloaded or failing, so retry later.",
            details=details,
            retry_after=retry_after,
        )
    if is_business_status(status):
        return OneCBusinessError(
            f"{described}: 1C rejected the request.", details=details
        )
    return OneCDataFormatError(
        f"{described}, which the contract does not allow.",
        details={**details, "reason": "unexpected_status"},
    )


def raise_for_status(response: requests.Response, endpoint: Endpoint) -> None:
    """Raise the mapped ``OneC*`` exception unless the response status is 2xx."""
    if is_success_status(response.status_code):
        return
    try:
        response.raise_for_status()
    except requests.HTTPError as err:
        raise error_for_status(response, endpoint) from err
    # raise_for_status() passes 1xx and 3xx, which the contract never uses.
    raise error_for_status(response, endpoint)
