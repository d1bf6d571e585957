"""Tests of the 1C HTTP service client against the emulator's real HTTP server.

Every test starts ``onec_emulator.service.EmulatorService`` on 127.0.0.1 (or runs
``python -m onec_emulator.service`` in a subprocess) and lets the client talk to
it over TCP. Faults are the emulator's real refused connections, resets,
timeouts and responses. The DNS test runs the client in a network namespace without
interfaces (``unshare -n``), so the lookup fails without any packet leaving.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from freesport.exceptions import (
    OneCAuthenticationError,
    OneCBusinessError,
    OneCConnectionError,
    OneCDataFormatError,
    OneCIntegrationError,
    OneCTimeoutError,
)
from onec_emulator.service import EmulatorService, Fault
from worker.onec import (
    MAX_RETRY_AFTER_S,
    Credentials,
    OneCClient,
    StaticCredentials,
    parse_retry_after,
)

PROJECT_DIR = Path(__file__).resolve().parent.parent
USER = "freesport"
PASSWORD = "first-secret-0d9f3a"
ROTATED_PASSWORD = "rotated-secret-5be21c"
PROCESS_START_TIMEOUT_S = 20.0

CONTACT = {
    "name": "Ирина Петрова",
    "email": "i.petrova@sport-sibir.example",
    "phone": "+7 383 200-00-00",
}
CUSTOMER: dict[str, Any] = {
    "shop_customer_id": "1842",
    "company_name": "ООО «Спорт-Сибирь»",
    "inn": "5407123456",
    "kpp": "540701001",
    "legal_address": "630099, Новосибирск, ул. Ленина, 12",
    "contact": CONTACT,
}
ORDER = {
    "shop_order_id": "B2B-2024-000731",
    "customer_id": "0d6c1a52-8e43-4c3e-9a51-2f1b7c9e0a11",
    "created_at": "2024-05-14T10:32:00+03:00",
    "currency": "RUB",
    "items": [{"sku": "BALL-5-PRO", "quantity": 12, "price": "2490.00"}],
    "total": "29880.00",
}
# Values that must never reach a log line or exception details.
PERSONAL_VALUES = (
    CUSTOMER["inn"],
    CUSTOMER["legal_address"],
    CONTACT["name"],
    CONTACT["email"],
    CONTACT["phone"],
)


@pytest.fixture
def emulator() -> Iterator[EmulatorService]:
    with EmulatorService(user=USER, password=PASSWORD) as service:
        yield service


@pytest.fixture
def token_emulator() -> Iterator[EmulatorService]:
    with EmulatorService(user=USER, password=PASSWORD, token_auth=True) as service:
        yield service


def make_client(
    service: EmulatorService,
    *,
    credentials: Callable[[], Credentials] | None = None,
    token: bool = False,
    **options: Any,
) -> OneCClient:
    options.setdefault("connect_timeout_s", 1.0)
    options.setdefault("read_timeout_s", 2.0)
    return OneCClient(
        service.url,
        credentials or StaticCredentials(USER, PASSWORD),
        token_url="/token" if token else None,
        **options,
    )


@pytest.fixture
def client(emulator: EmulatorService) -> Iterator[OneCClient]:
    with make_client(emulator) as onec_client:
        yield onec_client


def export_error(
    service: EmulatorService, fault: Fault, **client_options: Any
) -> OneCIntegrationError:
    """Queue ``fault`` for the next customer export and return the raised error."""
    service.faults.add("customers", fault)
    with make_client(service, **client_options) as onec_client:
        with pytest.raises(OneCIntegrationError) as caught:
            onec_client.export_customer(CUSTOMER, "customer-1842-v1")
    return caught.value


class RotatingPassword:
    """Credential provider whose password a test changes, like a rotated secret."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.calls = 0

    def __call__(self) -> Credentials:
        self.calls += 1
        return Credentials(USER, self.password)


class RecordingGuard:
    """Guard that records each call and can block them, as an open circuit would."""

    def __init__(self) -> None:
        self.calls = 0
        self.errors: list[BaseException] = []
        self.blocked = False

    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.blocked:
            raise OneCConnectionError("circuit open", retry_after=30.0)
        try:
            return func(*args, **kwargs)
        except OneCIntegrationError as err:
            self.errors.append(err)
            raise


# Successful calls and idempotency.


def test_ping_returns_body(client: OneCClient) -> None:
    assert client.ping()["status"] == "ok"


def test_export_customer_returns_onec_id(
    emulator: EmulatorService, client: OneCClient
) -> None:
    result = client.export_customer(CUSTOMER, "customer-1842-v1")

    assert result["status"] == "created"
    ledger = emulator.ledger()
    assert len(ledger) == 1
    assert ledger[0]["id"] == result["id"]
    assert ledger[0]["payload"] == CUSTOMER
    assert emulator.requests("customers")[0]["idempotency_key"] == "customer-1842-v1"


def test_same_key_twice_one_ledger_row(
    emulator: EmulatorService, client: OneCClient
) -> None:
    first = client.export_customer(CUSTOMER, "customer-1842-v1")
    second = client.export_customer(CUSTOMER, "customer-1842-v1")

    assert second == {"id": first["id"], "status": "exists"}
    assert len(emulator.ledger()) == 1
    assert len(emulator.requests("customers")) == 2


def test_retry_with_same_key_keeps_one_row(
    emulator: EmulatorService, client: OneCClient
) -> None:
    # A caller retries a failed export with the same key, so an export that 1C
    # had already accepted before the failure is not created twice.
    client.export_customer(CUSTOMER, "customer-1842-v1")
    emulator.faults.add("customers", Fault.status(503))
    with pytest.raises(OneCConnectionError):
        client.export_customer(CUSTOMER, "customer-1842-v1")

    retried = client.export_customer(CUSTOMER, "customer-1842-v1")

    assert retried["status"] == "exists"
    assert len(emulator.ledger()) == 1


def test_export_order_returns_onec_id(
    emulator: EmulatorService, client: OneCClient
) -> None:
    result = client.export_order(ORDER, "order-B2B-2024-000731-v1")

    assert result["status"] == "created"
    assert emulator.ledger()[0]["endpoint"] == "orders"


def test_key_reused_with_other_body(client: OneCClient) -> None:
    client.export_customer(CUSTOMER, "customer-1842-v1")
    changed = {**CUSTOMER, "company_name": "ООО «Спорт-Урал»"}

    with pytest.raises(OneCBusinessError) as caught:
        client.export_customer(changed, "customer-1842-v1")

    assert caught.value.details["onec_code"] == "IDEMPOTENCY_KEY_REUSED"
    assert caught.value.details["http_status"] == 422


def test_invalid_inn_rejected_by_1c(client: OneCClient) -> None:
    with pytest.raises(OneCBusinessError) as caught:
        client.export_customer({**CUSTOMER, "inn": "12345"}, "customer-1842-v2")

    assert caught.value.details["onec_code"] == "INN_INVALID"


@pytest.mark.parametrize("key", ["", "ключ-1", "has space", "x" * 256])
def test_invalid_idempotency_key_not_sent(
    emulator: EmulatorService, client: OneCClient, key: str
) -> None:
    with pytest.raises(ValueError, match="Idempotency-Key"):
        client.export_customer(CUSTOMER, key)

    assert emulator.requests() == []


def test_latency_fault_delays_answer(
    emulator: EmulatorService, client: OneCClient
) -> None:
    emulator.faults.add("ping", Fault.latency(300))

    started = time.monotonic()
    client.ping()

    assert time.monotonic() - started >= 0.3


# Failures without an HTTP response.


def test_refused_connection_is_connection_error(
    emulator: EmulatorService, client: OneCClient
) -> None:
    client.ping()  # leaves a pooled keep-alive connection behind
    emulator.refuse_connections()

    with pytest.raises(OneCConnectionError) as caught:
        client.ping()

    assert caught.value.details["reason"] == "connection_refused"
    assert caught.value.details["endpoint"] == "/ping"
    assert isinstance(caught.value.__cause__, requests.ConnectionError)
    emulator.resume_connections()
    assert client.ping()["status"] == "ok"


def test_refusal_ends_after_seconds(
    emulator: EmulatorService, client: OneCClient
) -> None:
    emulator.refuse_connections(seconds=0.3)
    with pytest.raises(OneCConnectionError):
        client.ping()

    time.sleep(0.6)

    assert emulator.mode == "serving"
    assert client.ping()["status"] == "ok"


def test_connection_reset_is_connection_error(emulator: EmulatorService) -> None:
    error = export_error(emulator, Fault.reset())

    assert isinstance(error, OneCConnectionError)
    assert error.details["reason"] == "connection_reset"
    assert emulator.requests("customers")[0]["fault"] == "reset"
    assert emulator.requests("customers")[0]["status"] is None


def test_read_timeout_is_timeout_error(emulator: EmulatorService) -> None:
    started = time.monotonic()
    error = export_error(emulator, Fault.hang(5.0), read_timeout_s=0.3)
    elapsed = time.monotonic() - started

    assert isinstance(error, OneCTimeoutError)
    assert error.details["reason"] == "read_timeout"
    assert elapsed < 2.0


def test_connect_timeout_is_timeout_error(
    emulator: EmulatorService, client: OneCClient
) -> None:
    client.ping()
    emulator.stall_connections()

    started = time.monotonic()
    with pytest.raises(OneCTimeoutError) as caught:
        with make_client(emulator, connect_timeout_s=0.3) as stalled_client:
            stalled_client.ping()
    elapsed = time.monotonic() - started

    assert caught.value.details["reason"] == "connect_timeout"
    assert elapsed < 1.5
    emulator.resume_connections()
    assert client.ping()["status"] == "ok"


DNS_CHECK = """
import json
from freesport.exceptions import OneCIntegrationError
from worker.onec import OneCClient, StaticCredentials

client = OneCClient(
    "http://onec-dns-check.invalid/base/hs/freesport/v1",
    StaticCredentials("freesport", "unused"),
    connect_timeout_s=2.0,
    read_timeout_s=2.0,
)
try:
    client.ping()
except OneCIntegrationError as err:
    print(json.dumps({"error": type(err).__name__, "details": err.details}))
"""


def test_dns_failure_is_connection_error() -> None:
    # In a network namespace without interfaces the resolver cannot send its
    # query, so the name lookup fails for real and nothing leaves the machine.
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare(1) is not installed; cannot isolate the DNS lookup")
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -n is not permitted here: {probe.stderr.decode()}")

    completed = subprocess.run(
        [unshare, "-n", sys.executable, "-c", DNS_CHECK],
        cwd=PROJECT_DIR,
        env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["error"] == "OneCConnectionError"
    assert result["details"]["reason"] == "dns_failure"


# HTTP statuses.


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (401, OneCAuthenticationError),
        (403, OneCAuthenticationError),
        (500, OneCConnectionError),
        (502, OneCConnectionError),
        (503, OneCConnectionError),
        (404, OneCBusinessError),
        (409, OneCBusinessError),
    ],
)
def test_status_maps_to_error_kind(
    emulator: EmulatorService, status: int, error_class: type[Exception]
) -> None:
    error = export_error(emulator, Fault.status(status))

    assert type(error) is error_class
    assert error.details["http_status"] == status
    assert error.details["endpoint"] == "/customers"
    assert isinstance(error.__cause__, requests.HTTPError)


def test_429_sets_retry_after_seconds(emulator: EmulatorService) -> None:
    error = export_error(emulator, Fault.rate_limit(7))

    assert isinstance(error, OneCConnectionError)
    assert error.retry_after == 7.0
    assert error.details["http_status"] == 429


def test_429_retry_after_http_date(emulator: EmulatorService) -> None:
    retry_at = datetime.now(UTC) + timedelta(seconds=30)
    error = export_error(
        emulator, Fault.rate_limit(email.utils.format_datetime(retry_at, usegmt=True))
    )

    assert error.retry_after is not None
    assert 25.0 <= error.retry_after <= 30.0


def test_503_retry_after_is_capped(emulator: EmulatorService) -> None:
    error = export_error(emulator, Fault.status(503, retry_after=86400))

    assert error.retry_after == MAX_RETRY_AFTER_S


def test_503_without_retry_after(emulator: EmulatorService) -> None:
    error = export_error(emulator, Fault.status(503))

    assert error.retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("7200", MAX_RETRY_AFTER_S),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # a past date means now
        ("-5", None),
        ("1.5", None),  # RFC 9110 allows whole seconds only
        ("soon", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)

    assert parse_retry_after(value, now=now) == expected


def test_business_rejection_keeps_onec_code(emulator: EmulatorService) -> None:
    error = export_error(
        emulator,
        Fault.reject("COUNTERPARTY_BLOCKED", "The counterparty is blocked in 1C."),
    )

    assert isinstance(error, OneCBusinessError)
    assert error.details["onec_code"] == "COUNTERPARTY_BLOCKED"
    assert error.details["onec_message"] == "The counterparty is blocked in 1C."
    assert error.details["http_status"] == 422
    assert "COUNTERPARTY_BLOCKED" in error.message


def test_malformed_json_is_data_format_error(emulator: EmulatorService) -> None:
    error = export_error(emulator, Fault.malformed_json())

    assert isinstance(error, OneCDataFormatError)
    assert error.details["reason"] == "invalid_json"
    assert isinstance(error.__cause__, ValueError)


@pytest.mark.parametrize(
    "body",
    [
        "[]",
        '{"status": "created"}',
        '{"id": "", "status": "created"}',
        '{"id": "0d6c1a52", "status": "deleted"}',
        '{"id": 42, "status": "created"}',
    ],
)
def test_unexpected_shape_is_data_format_error(
    emulator: EmulatorService, body: str
) -> None:
    error = export_error(emulator, Fault.raw_body(body))

    assert isinstance(error, OneCDataFormatError)
    assert error.details["reason"] == "unexpected_shape"


def test_redirect_is_data_format_error(emulator: EmulatorService) -> None:
    error = export_error(emulator, Fault.raw_body("", http_status=302))

    assert isinstance(error, OneCDataFormatError)
    assert error.details["reason"] == "unexpected_status"


def test_body_with_byte_order_mark_accepted(
    emulator: EmulatorService, client: OneCClient
) -> None:
    emulator.faults.add(
        "customers", Fault.raw_body('\ufeff{"id": "0d6c1a52", "status": "created"}')
    )

    result = client.export_customer(CUSTOMER, "customer-1842-v1")

    assert result == {"id": "0d6c1a52", "status": "created"}


def test_error_details_hold_scalars_only(emulator: EmulatorService) -> None:
    faults = [
        Fault.status(503, retry_after=5),
        Fault.reject("INN_BLOCKED", "Blocked."),
        Fault.reset(),
        Fault.malformed_json(),
    ]
    for fault in faults:
        error = export_error(emulator, fault)

        for value in error.details.values():
            assert isinstance(value, str | int | float), (fault, error.details)
        for personal_value in PERSONAL_VALUES:
            assert personal_value not in str(error.details)
            assert personal_value not in error.message


# Credentials.


def test_wrong_password_is_auth_error(emulator: EmulatorService) -> None:
    wrong = StaticCredentials(USER, "not-the-password")

    with make_client(emulator, credentials=wrong) as wrong_client:
        with pytest.raises(OneCAuthenticationError) as caught:
            wrong_client.ping()

    assert caught.value.details["http_status"] == 401
    assert caught.value.details["onec_code"] == "UNAUTHORIZED"


def test_cyrillic_user_name_accepted() -> None:
    with EmulatorService(user="Обмен", password="пароль-1") as service:
        credentials = StaticCredentials("Обмен", "пароль-1")
        with make_client(service, credentials=credentials) as cyrillic_client:
            assert cyrillic_client.ping()["status"] == "ok"


def test_basic_password_rotation_refresh(emulator: EmulatorService) -> None:
    provider = RotatingPassword(PASSWORD)
    with make_client(emulator, credentials=provider) as rotating_client:
        rotating_client.ping()
        emulator.expire_credentials(new_password=ROTATED_PASSWORD)
        with pytest.raises(OneCAuthenticationError):
            rotating_client.ping()

        provider.password = ROTATED_PASSWORD
        rotating_client.refresh_credentials()

        assert rotating_client.ping()["status"] == "ok"
    assert provider.calls == 2


def test_token_auth_reuses_token(token_emulator: EmulatorService) -> None:
    with make_client(token_emulator, token=True) as token_client:
        token_client.ping()
        token_client.export_customer(CUSTOMER, "customer-1842-v1")

    assert token_emulator.state.credentials.tokens_issued == 1
    assert [record["endpoint"] for record in token_emulator.requests()] == [
        "token",
        "ping",
        "customers",
    ]


def test_token_revoked_until_refresh(token_emulator: EmulatorService) -> None:
    with make_client(token_emulator, token=True) as token_client:
        token_client.ping()
        token_emulator.expire_credentials()

        with pytest.raises(OneCAuthenticationError) as caught:
            token_client.ping()
        assert caught.value.details["http_status"] == 401

        token_client.refresh_credentials()

        assert token_client.ping()["status"] == "ok"
    assert token_emulator.state.credentials.tokens_issued == 2


def test_token_renewed_before_expiry() -> None:
    # A token that lives 10 s is inside the client's 30 s renewal margin, so
    # every call gets a fresh one.
    with EmulatorService(password=PASSWORD, token_auth=True, token_ttl_s=10) as service:
        credentials = StaticCredentials(service.user, PASSWORD)
        with make_client(service, credentials=credentials, token=True) as token_client:
            token_client.ping()
            token_client.ping()

        assert service.state.credentials.tokens_issued == 2


def test_token_endpoint_wrong_password(token_emulator: EmulatorService) -> None:
    wrong = StaticCredentials(USER, "not-the-password")

    with make_client(token_emulator, credentials=wrong, token=True) as token_client:
        with pytest.raises(OneCAuthenticationError) as caught:
            token_client.ping()

    assert caught.value.details["endpoint"].endswith("/token")
    assert token_emulator.requests("ping") == []


def test_token_endpoint_fault_maps_too(token_emulator: EmulatorService) -> None:
    token_emulator.faults.add("token", Fault.status(503, retry_after=3))

    with make_client(token_emulator, token=True) as token_client:
        with pytest.raises(OneCConnectionError) as caught:
            token_client.ping()

    assert caught.value.retry_after == 3.0


# Construction from settings.


def test_from_settings_reads_settings(emulator: EmulatorService, settings: Any) -> None:
    settings.ONEC_HTTP_URL = emulator.url
    settings.ONEC_HTTP_USER = USER
    settings.ONEC_HTTP_PASSWORD = PASSWORD
    settings.ONEC_HTTP_CONNECT_TIMEOUT_S = 1.5
    settings.ONEC_HTTP_READ_TIMEOUT_S = 4

    with OneCClient.from_settings() as settings_client:
        assert settings_client.timeout == (1.5, 4.0)
        assert settings_client.ping()["status"] == "ok"

        emulator.expire_credentials(new_password=ROTATED_PASSWORD)
        settings.ONEC_HTTP_PASSWORD = ROTATED_PASSWORD
        settings_client.refresh_credentials()

        assert settings_client.ping()["status"] == "ok"


def test_from_settings_token_url(
    token_emulator: EmulatorService, settings: Any
) -> None:
    settings.ONEC_HTTP_URL = token_emulator.url
    settings.ONEC_HTTP_USER = USER
    settings.ONEC_HTTP_PASSWORD = PASSWORD
    settings.ONEC_HTTP_TOKEN_URL = token_emulator.token_url

    with OneCClient.from_settings() as settings_client:
        assert settings_client.ping()["status"] == "ok"

    assert token_emulator.state.credentials.tokens_issued == 1


def test_from_settings_without_url(settings: Any) -> None:
    settings.ONEC_HTTP_URL = ""

    assert OneCClient.is_configured() is False
    with pytest.raises(ImproperlyConfigured, match="ONEC_HTTP_URL is empty"):
        OneCClient.from_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ONEC_HTTP_USER", ""),
        ("ONEC_HTTP_CONNECT_TIMEOUT_S", 0),
        ("ONEC_HTTP_READ_TIMEOUT_S", "soon"),
        ("ONEC_HTTP_URL", "ftp://127.0.0.1/base"),
    ],
)
def test_from_settings_rejects_invalid(settings: Any, name: str, value: Any) -> None:
    settings.ONEC_HTTP_URL = "http://127.0.0.1:9/base/hs/freesport/v1"
    settings.ONEC_HTTP_USER = USER
    setattr(settings, name, value)

    with pytest.raises(ImproperlyConfigured, match=name):
        OneCClient.from_settings()


def test_url_with_credentials_rejected() -> None:
    with pytest.raises(ValueError, match="contains credentials"):
        OneCClient(
            "http://freesport:secret@127.0.0.1:9/base/hs/freesport/v1",
            StaticCredentials(USER, PASSWORD),
        )


# The guard hook.


def test_guard_wraps_every_call(token_emulator: EmulatorService) -> None:
    guard = RecordingGuard()
    token_emulator.faults.add("ping", Fault.status(502))

    with make_client(token_emulator, token=True, guard=guard) as guarded_client:
        with pytest.raises(OneCConnectionError):
            guarded_client.ping()
        guarded_client.ping()

    # The token request, the failed ping and the second ping.
    assert guard.calls == 3
    assert len(guard.errors) == 1
    assert isinstance(guard.errors[0], OneCConnectionError)


def test_blocking_guard_sends_nothing(emulator: EmulatorService) -> None:
    guard = RecordingGuard()
    guard.blocked = True

    with make_client(emulator, guard=guard) as guarded_client:
        with pytest.raises(OneCConnectionError, match="circuit open"):
            guarded_client.export_customer(CUSTOMER, "customer-1842-v1")

    assert emulator.requests() == []


# Logging.


def test_debug_line_per_call(
    client: OneCClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="worker.onec")

    client.ping()

    debug_lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug_lines) == 1
    assert debug_lines[0].startswith("1C GET /ping -> 200 in ")
    assert debug_lines[0].endswith(" ms")


def test_mapped_failure_logs_warning(
    emulator: EmulatorService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="worker.onec")

    export_error(emulator, Fault.status(503))

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "OneCConnectionError" in warnings[0].getMessage()
    assert "POST /customers" in warnings[0].getMessage()


def test_logs_hold_no_secrets(
    token_emulator: EmulatorService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    faults = [
        Fault.status(401),
        Fault.reject("INN_BLOCKED", "Blocked."),
        Fault.reset(),
        Fault.malformed_json(),
    ]
    with make_client(token_emulator, token=True) as token_client:
        token_client.export_customer(CUSTOMER, "customer-1842-v1")
        for fault in faults:
            token_emulator.faults.add("customers", fault)
            with pytest.raises(OneCIntegrationError):
                token_client.export_customer(CUSTOMER, "customer-1842-v2")
        token_emulator.expire_credentials(new_password=ROTATED_PASSWORD)
        with pytest.raises(OneCAuthenticationError):
            token_client.refresh_credentials()
        issued_token = token_client._token

    basic_value = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert caplog.records, "expected DEBUG and WARNING records"
    assert PASSWORD not in caplog.text
    assert basic_value not in caplog.text
    assert issued_token is None or issued_token.value not in caplog.text
    for personal_value in PERSONAL_VALUES:
        assert personal_value not in caplog.text


# The admin endpoints, driven from another process.


class EmulatorProcess:
    """``python -m onec_emulator.service`` in a subprocess, with its URLs."""

    def __init__(self, *arguments: str) -> None:
        self.stderr = ""
        self.session = requests.Session()
        self.session.trust_env = False
        self.process = subprocess.Popen(
            [sys.executable, "-m", "onec_emulator.service", "--port", "0", *arguments],
            cwd=PROJECT_DIR,
            env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select(
            [self.process.stdout], [], [], PROCESS_START_TIMEOUT_S
        )
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError(
                "the emulator process printed no URLs within "
                f"{PROCESS_START_TIMEOUT_S:.0f} s; stderr: {self.stderr}"
            )
        announcement = json.loads(line)
        self.url: str = announcement["url"]
        self.admin_url: str = announcement["admin_url"]

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self.session.request(
            method, self.admin_url + path, json=body, timeout=5
        )
        response.raise_for_status()
        return response.json()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        _, self.stderr = self.process.communicate(timeout=20)
        self.session.close()
        return self.process.returncode


@pytest.fixture
def emulator_process() -> Iterator[EmulatorProcess]:
    process = EmulatorProcess("--password", PASSWORD)
    try:
        yield process
    finally:
        process.stop()


def wait_until_serving(onec_client: OneCClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            onec_client.ping()
            return
        except OneCConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_admin_endpoints_from_other_process(
    emulator_process: EmulatorProcess,
) -> None:
    emulator_process.admin(
        "POST",
        "/_faults",
        {"endpoint": "customers", "fault": {"kind": "status", "http_status": 503}},
    )
    assert len(emulator_process.admin("GET", "/_faults")["faults"]) == 1

    with OneCClient(
        emulator_process.url,
        StaticCredentials(USER, PASSWORD),
        connect_timeout_s=1.0,
        read_timeout_s=2.0,
    ) as remote_client:
        with pytest.raises(OneCConnectionError):
            remote_client.export_customer(CUSTOMER, "customer-1842-v1")
        created = remote_client.export_customer(CUSTOMER, "customer-1842-v1")

        ledger = emulator_process.admin("GET", "/_ledger")["ledger"]
        assert [row["id"] for row in ledger] == [created["id"]]
        statuses = [
            record["status"]
            for record in emulator_process.admin("GET", "/_requests")["requests"]
        ]
        assert statuses == [503, 201]

        emulator_process.admin("POST", "/_refuse", {"seconds": 1.0})
        time.sleep(0.2)
        with pytest.raises(OneCConnectionError) as caught:
            remote_client.ping()
        assert caught.value.details["reason"] == "connection_refused"
        wait_until_serving(remote_client, timeout_s=5.0)

    assert emulator_process.admin("POST", "/_reset")["cleared"] is True
    assert emulator_process.admin("GET", "/_ledger")["ledger"] == []
    assert emulator_process.stop() == 0
    assert PASSWORD not in emulator_process.stderr


def test_admin_rejects_unknown_fault(emulator_process: EmulatorProcess) -> None:
    response = emulator_process.session.post(
        emulator_process.admin_url + "/_faults",
        json={"endpoint": "customers", "fault": {"kind": "explode"}},
        timeout=5,
    )

    assert response.status_code == 400
    assert "unknown fault kind 'explode'" in response.json()["message"]
