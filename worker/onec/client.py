"""Client of the HTTP service that 1C publishes for FREESPORT.

1C serves it under the infobase publication, for example
``https://<1c-server>/<infobase>/hs/freesport/v1``; docs/onec-http-service.md
describes the JSON contract. Every HTTP call goes through ``OneCClient._call``,
which applies the optional guard (a circuit breaker, for one) and turns every
failure into a ``OneC*`` exception from ``freesport.exceptions``.

The client does not retry. Callers retry ``OneCConnectionError`` and
``OneCTimeoutError`` (after ``retry_after`` when it is set) with the same
Idempotency-Key, and call ``refresh_credentials()`` after an
``OneCAuthenticationError``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from requests.auth import AuthBase, HTTPBasicAuth

from freesport.exceptions import OneCIntegrationError
from worker.onec.credentials import CredentialProvider, Credentials, SettingsCredentials
from worker.onec.errors import Endpoint, error_for_exception, raise_for_status
from worker.onec.responses import (
    AccessToken,
    ExportResult,
    parse_access_token,
    parse_export_result,
    parse_ping,
)

logger = logging.getLogger("worker.onec")

T = TypeVar("T")

# Just over 3 s, as the requests documentation advises for connect timeouts:
# 3 s is the initial TCP retransmission timeout of RFC 2988.
DEFAULT_CONNECT_TIMEOUT_S = 3.05
DEFAULT_READ_TIMEOUT_S = 30.0
# A token is renewed this long before its expires_in runs out, so that it does
# not expire while a request is on its way.
TOKEN_RENEWAL_MARGIN_S = 30.0
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY_LENGTH = 255
USER_AGENT = "freesport-integration (1C HTTP service client)"


class CallGuard(Protocol):
    """Wrapper around each HTTP call, such as a circuit breaker.

    ``call`` runs ``func(*args, **kwargs)`` and returns its result, or raises
    without running it (an open circuit). Failures reach it as ``OneC*``
    exceptions, already mapped.
    """

    def call(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


class BearerAuth(AuthBase):
    """Authorization header with a bearer token (RFC 6750)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


def basic_auth(credentials: Credentials) -> HTTPBasicAuth:
    """Build HTTP Basic auth with UTF-8 user name and password (RFC 7617).

    requests encodes ``str`` credentials as Latin-1, which fails on Cyrillic
    user names, so they are passed as UTF-8 bytes.
    """
    return HTTPBasicAuth(
        credentials.user.encode("utf-8"), credentials.password.encode("utf-8")
    )


def normalize_base_url(url: str) -> str:
    """Check an http(s) base URL without credentials, query or fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"invalid 1C HTTP service URL {url!r}: expected http(s)://host/path"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "the 1C HTTP service URL contains credentials. Pass them through the "
            "credential provider (ONEC_HTTP_USER, ONEC_HTTP_PASSWORD) instead"
        )
    if parts.query or parts.fragment:
        raise ValueError(
            f"the 1C HTTP service URL {url!r} has a query or fragment. "
            "Pass the base URL only"
        )
    return url.rstrip("/")


def check_idempotency_key(key: str) -> str:
    """Check that a key is 1-255 visible ASCII characters, as the contract requires."""
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ValueError(
            f"the Idempotency-Key must have 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} "
            f"characters, got {len(key)}"
        )
    if not all("!" <= char <= "~" for char in key):
        raise ValueError(
            "the Idempotency-Key must contain only visible ASCII characters, "
            "such as a UUID"
        )
    return key


def positive_setting(name: str, default: float) -> float:
    value = getattr(settings, name, default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if seconds <= 0:
        raise ImproperlyConfigured(
            f"{name} must be a positive number of seconds, got {value!r}"
        )
    return seconds


class OneCClient:
    """Client of the 1C HTTP service: one requests.Session, HTTP Basic or bearer auth.

    With ``token_url`` the client gets a bearer token there (HTTP Basic auth,
    ``grant_type=client_credentials``) and sends it with every other request.
    Without it, every request carries HTTP Basic auth. ``token_url`` is either
    absolute or a path under ``base_url``. ``read_timeout_s`` bounds each wait
    for data from 1C, not the whole response.

    A client is not thread-safe, because requests does not promise that a
    Session is: create one per worker process or thread.
    """

    def __init__(
        self,
        base_url: str,
        credentials: CredentialProvider,
        *,
        token_url: str | None = None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        guard: CallGuard | None = None,
        trust_env: bool = False,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.token_url = self._resolve_url(token_url) if token_url else None
        if connect_timeout_s <= 0 or read_timeout_s <= 0:
            raise ValueError("connect and read timeouts must be positive seconds")
        self.timeout = (connect_timeout_s, read_timeout_s)
        self._credential_provider = credentials
        self._credentials: Credentials | None = None
        self._token: AccessToken | None = None
        self._guard = guard
        self._session = requests.Session()
        # Off by default, so that proxies from HTTP(S)_PROXY and credentials from
        # ~/.netrc are not applied to the calls to 1C.
        self._session.trust_env = trust_env
        self._session.headers.update(
            {"Accept": "application/json", "User-Agent": USER_AGENT}
        )

    @classmethod
    def from_settings(cls, *, guard: CallGuard | None = None) -> OneCClient:
        """Build a client from the ONEC_HTTP_* Django settings.

        Raises ``ImproperlyConfigured`` when ONEC_HTTP_URL is empty (no 1C HTTP
        service is configured) or another setting is invalid. Where 1C is
        optional, check ``is_configured()`` first. The credentials are read from
        the settings again on ``refresh_credentials()``.
        """
        base_url = getattr(settings, "ONEC_HTTP_URL", "")
        if not base_url:
            raise ImproperlyConfigured(
                "ONEC_HTTP_URL is empty, so no 1C HTTP service is configured. Set it "
                "to the service's base URL, such as "
                "https://<1c-server>/<infobase>/hs/freesport/v1"
            )
        try:
            normalize_base_url(base_url)
        except ValueError as err:
            raise ImproperlyConfigured(f"ONEC_HTTP_URL is invalid: {err}") from err
        credentials = SettingsCredentials()
        credentials()  # raises ImproperlyConfigured for an empty ONEC_HTTP_USER
        connect_timeout_s = positive_setting(
            "ONEC_HTTP_CONNECT_TIMEOUT_S", DEFAULT_CONNECT_TIMEOUT_S
        )
        read_timeout_s = positive_setting(
            "ONEC_HTTP_READ_TIMEOUT_S", DEFAULT_READ_TIMEOUT_S
        )
        token_url = getattr(settings, "ONEC_HTTP_TOKEN_URL", "") or None
        try:
            return cls(
                base_url,
                credentials,
                token_url=token_url,
                connect_timeout_s=connect_timeout_s,
                read_timeout_s=read_timeout_s,
                guard=guard,
            )
        except ValueError as err:
            # The URL and the timeouts passed above, so the token URL failed.
            raise ImproperlyConfigured(
                f"ONEC_HTTP_TOKEN_URL is invalid: {err}"
            ) from err

    @staticmethod
    def is_configured() -> bool:
        """Return whether ONEC_HTTP_URL names a 1C HTTP service."""
        return bool(getattr(settings, "ONEC_HTTP_URL", ""))

    def __repr__(self) -> str:
        auth = "bearer" if self.token_url else "basic"
        return f"OneCClient({self.base_url!r}, auth={auth!r})"

    # Operations of the contract.

    def ping(self) -> dict[str, Any]:
        """Check that 1C responds and accepts the credentials; return the body."""
        return self._call("GET", "/ping", parse=parse_ping)

    def export_customer(
        self, payload: Mapping[str, Any], idempotency_key: str
    ) -> ExportResult:
        """Send a B2B customer to 1C and return 1C's reference for it.

        Sending the same ``idempotency_key`` again returns the first reference
        with the status "exists".
        """
        return self._call(
            "POST",
            "/customers",
            json_body=dict(payload),
            idempotency_key=check_idempotency_key(idempotency_key),
            parse=parse_export_result,
        )

    def export_order(
        self, payload: Mapping[str, Any], idempotency_key: str
    ) -> ExportResult:
        """Send an order to 1C and return 1C's reference for it (planned endpoint)."""
        return self._call(
            "POST",
            "/orders",
            json_body=dict(payload),
            idempotency_key=check_idempotency_key(idempotency_key),
            parse=parse_export_result,
        )

    # Credentials.

    def refresh_credentials(self) -> None:
        """Read the credentials again and, with token auth, get a new token.

        Call it after an ``OneCAuthenticationError``: a rotated password or a
        revoked token is replaced before the next call.
        """
        self._credentials = self._credential_provider()
        self._token = None
        if self.token_url is not None:
            self._token = self._fetch_token()
        logger.info("Refreshed the 1C credentials for user %r", self._credentials.user)

    def _current_credentials(self) -> Credentials:
        if self._credentials is None:
            self._credentials = self._credential_provider()
        return self._credentials

    def _request_auth(self) -> AuthBase:
        if self.token_url is None:
            return basic_auth(self._current_credentials())
        if self._token is None or self._token.is_expired(TOKEN_RENEWAL_MARGIN_S):
            self._token = self._fetch_token()
        return BearerAuth(self._token.value)

    def _fetch_token(self) -> AccessToken:
        assert self.token_url is not None
        return self._call(
            "POST",
            urlsplit(self.token_url).path,
            url=self.token_url,
            form={"grant_type": "client_credentials"},
            auth=basic_auth(self._current_credentials()),
            parse=parse_access_token,
        )

    # HTTP.

    def _call(
        self,
        method: str,
        path: str,
        *,
        parse: Callable[[requests.Response, Endpoint], T],
        url: str | None = None,
        json_body: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        auth: AuthBase | None = None,
    ) -> T:
        """Send one request through the guard and parse its 2xx response.

        ``path`` is relative to the base URL and names the call in logs and
        errors. ``url`` replaces base URL plus path, and ``auth`` the client's
        own auth; the token request uses both.
        """
        if auth is None:
            auth = self._request_auth()
        headers = {IDEMPOTENCY_KEY_HEADER: idempotency_key} if idempotency_key else {}
        send = functools.partial(
            self._send,
            Endpoint(method, path),
            url or self.base_url + path,
            parse,
            auth=auth,
            headers=headers,
            json=json_body,
            data=form,
        )
        if self._guard is None:
            return send()
        return self._guard.call(send)

    def _send(
        self,
        endpoint: Endpoint,
        url: str,
        parse: Callable[[requests.Response, Endpoint], T],
        **request_options: Any,
    ) -> T:
        started = time.monotonic()
        try:
            response = self._session.request(
                endpoint.method,
                url,
                timeout=self.timeout,
                allow_redirects=False,
                **request_options,
            )
        except requests.RequestException as err:
            error = error_for_exception(err, endpoint)
            self._log_call(endpoint, "-", started, error)
            raise error from err

        try:
            raise_for_status(response, endpoint)
            result = parse(response, endpoint)
        except OneCIntegrationError as error:
            self._log_call(endpoint, response.status_code, started, error)
            raise
        self._log_call(endpoint, response.status_code, started)
        return result

    def _log_call(
        self,
        endpoint: Endpoint,
        status: int | str,
        started: float,
        error: OneCIntegrationError | None = None,
    ) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.debug("1C %s -> %s in %.0f ms", endpoint, status, elapsed_ms)
        if error is not None:
            logger.warning(
                "1C call %s failed with %s (%s): %s",
                endpoint,
                type(error).__name__,
                error.details.get("reason") or error.details.get("onec_code") or status,
                error.message,
            )

    def _resolve_url(self, url_or_path: str) -> str:
        """Return an absolute URL as it is, or a path appended to the base URL."""
        if "://" in url_or_path:
            return normalize_base_url(url_or_path)
        return self.base_url + "/" + url_or_path.lstrip("/")

    # Lifetime.

    def close(self) -> None:
        """Close the session's pooled connections."""
        self._session.close()

    def __enter__(self) -> OneCClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
