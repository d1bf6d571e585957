"""The recovery pieces that need no worker: backoff, classifier, table, scrubbing.

Also the CommerceML writer, the B2B customer checks, manual task replays on the
database, pending retries sent to the test broker and the escalation limit on the
test Redis server. Tests that run tasks on a worker are in
test_customer_export.py and test_recovery_outage.py.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.core.checks import Error
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerOperationalError
from lxml import etree

from freesport.customers.models import B2BCustomer, CustomerExport
from freesport.customers.validators import is_valid_inn
from freesport.exceptions import (
    OneCAuthenticationError,
    OneCBusinessError,
    OneCConnectionError,
    OneCDataFormatError,
    OneCTimeoutError,
    ValidationError,
)
from freesport.integration import manual_tasks
from freesport.integration.checks import check_recovery_settings
from freesport.integration.choices import ErrorKind, StrategyName
from freesport.integration.models import (
    IntegrationLog,
    ManualTask,
    ManualTaskAudit,
    PendingRetry,
)
from freesport.integration.scrubbing import FILTERED, scrub, scrub_text
from worker.commerceml.package import kind_from_content, kind_from_name
from worker.commerceml.writer import (
    NAMESPACES,
    Counterparty,
    counterparties_document,
    write_atomically,
)
from worker.recovery import escalation, scheduling
from worker.recovery.arguments import InvalidTaskArguments, check_id_arguments
from worker.recovery.breaker import CircuitOpenError, NoOpBreaker, breaker_for
from worker.recovery.classifier import classify
from worker.recovery.fingerprint import fingerprint_for, normalize_message
from worker.recovery.retry_policy import (
    RetryPolicy,
    backoff_ceiling,
    full_jitter_countdown,
)
from worker.recovery.strategies import (
    EscalateToAdmins,
    FileFallback,
    RefreshCredentials,
    RetryWithBackoff,
)
from worker.recovery.table import strategy_for, strategy_name_for

EXPORT_TASK = "worker.tasks.exports.export_customer"
# A valid legal entity ИНН (check digit 3) and a valid entrepreneur's ИНН.
COMPANY_INN = "7707083893"
PERSON_INN = "500100732259"


class HighestDraw:
    """Random source that always draws the top of the range."""

    def uniform(self, a: float, b: float) -> float:
        return b


# Backoff.


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (50, 10.0), (10_000, 10.0)],
)
def test_backoff_ceiling_doubles_to_cap(attempt: int, expected: float) -> None:
    assert backoff_ceiling(attempt, base_s=2.0, cap_s=10.0) == expected


def test_backoff_ceiling_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        backoff_ceiling(0, base_s=1.0, cap_s=10.0)


def test_full_jitter_draws_from_whole_window() -> None:
    for attempt in range(1, 8):
        seeded = random.Random(attempt)
        expected = random.Random(attempt).uniform(
            0.0, min(30.0, 2.0 * 2 ** (attempt - 1))
        )
        countdown = full_jitter_countdown(attempt, 2.0, 30.0, rng=seeded)
        assert countdown == expected
        assert 0.0 <= countdown <= backoff_ceiling(attempt, 2.0, 30.0)


def test_full_jitter_top_draw_is_ceiling() -> None:
    assert full_jitter_countdown(3, 1.0, 100.0, rng=HighestDraw()) == 4.0
    assert full_jitter_countdown(30, 1.0, 100.0, rng=HighestDraw()) == 100.0


def test_full_jitter_retry_after_is_floor() -> None:
    rng = random.Random(7)
    assert full_jitter_countdown(1, 1.0, 5.0, retry_after_s=12.0, rng=rng) == 12.0
    # A Retry-After below the draw changes nothing.
    assert (
        full_jitter_countdown(5, 1.0, 5.0, retry_after_s=0.0, rng=HighestDraw()) == 5.0
    )


def test_retry_policy_exhausted_at_max_attempts() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=10.0, max_attempts=3, max_countdown_s=60.0)
    assert not policy.is_exhausted(1)
    assert not policy.is_exhausted(2)
    assert policy.is_exhausted(3)


def test_retry_policy_backoff_records_sources() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=10.0, max_attempts=3, max_countdown_s=60.0)
    backoff = policy.backoff(2, retry_after_s=3.5, rng=HighestDraw())
    assert backoff.ceiling_s == 2.0
    assert backoff.countdown_s == 3.5
    assert backoff.retry_after_s == 3.5


# Classifier and strategy table.


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (OneCConnectionError("refused"), ErrorKind.CONNECTION),
        (OneCTimeoutError("read timeout"), ErrorKind.TIMEOUT),
        (SoftTimeLimitExceeded(), ErrorKind.TIMEOUT),
        (OneCAuthenticationError("401"), ErrorKind.AUTHENTICATION),
        (OneCDataFormatError("bad json"), ErrorKind.DATA_FORMAT),
        (OneCBusinessError("422"), ErrorKind.BUSINESS),
        (CircuitOpenError("open"), ErrorKind.CONNECTION),
        (ValidationError("bad"), ErrorKind.VALIDATION),
        (DjangoValidationError("bad"), ErrorKind.VALIDATION),
        (B2BCustomer.DoesNotExist(), ErrorKind.NOT_FOUND),
        (
            OperationalError("server closed the connection"),
            ErrorKind.DATABASE_UNAVAILABLE,
        ),
        (BrokerOperationalError("Error 111 connecting"), ErrorKind.BROKER_UNAVAILABLE),
        (redis.ConnectionError("refused"), ErrorKind.BROKER_UNAVAILABLE),
        (KeyError("x"), ErrorKind.UNKNOWN),
        (FileExistsError(17, "File exists"), ErrorKind.UNKNOWN),
    ],
)
def test_classify(error: BaseException, kind: ErrorKind) -> None:
    assert classify(error) == kind


@pytest.mark.parametrize(
    ("kind", "strategy"),
    [
        (ErrorKind.CONNECTION, StrategyName.RETRY),
        (ErrorKind.TIMEOUT, StrategyName.RETRY),
        (ErrorKind.DATABASE_UNAVAILABLE, StrategyName.RETRY),
        (ErrorKind.BROKER_UNAVAILABLE, StrategyName.RETRY),
        (ErrorKind.AUTHENTICATION, StrategyName.REFRESH_CREDENTIALS),
        (ErrorKind.DATA_FORMAT, StrategyName.LOG_AND_SKIP),
        (ErrorKind.NOT_FOUND, StrategyName.LOG_AND_SKIP),
        (ErrorKind.BUSINESS, StrategyName.MANUAL_TASK),
        (ErrorKind.VALIDATION, StrategyName.MANUAL_TASK),
        (ErrorKind.UNKNOWN, StrategyName.ESCALATE),
    ],
)
def test_strategy_table_defaults(
    kind: ErrorKind, strategy: StrategyName, settings: Any
) -> None:
    settings.RECOVERY_STRATEGY_OVERRIDES = {}
    assert strategy_name_for(EXPORT_TASK, "export_customers", kind) == strategy


def test_every_error_kind_has_a_strategy(settings: Any) -> None:
    settings.RECOVERY_STRATEGY_OVERRIDES = {}
    for kind in ErrorKind:
        assert strategy_for(EXPORT_TASK, "export_customers", kind) is not None


def test_overrides_most_specific_key_wins(settings: Any) -> None:
    settings.RECOVERY_STRATEGY_OVERRIDES = {
        "export_customers": {"connection": "escalate", "timeout": "log_and_skip"},
        "export_customer": {"connection": "file_fallback"},
    }
    assert (
        strategy_name_for(EXPORT_TASK, "export_customers", "connection")
        == "file_fallback"
    )
    assert (
        strategy_name_for(EXPORT_TASK, "export_customers", "timeout") == "log_and_skip"
    )
    assert (
        strategy_name_for(EXPORT_TASK, "export_customers", "business") == "manual_task"
    )
    assert isinstance(
        strategy_for(EXPORT_TASK, "export_customers", "connection"), FileFallback
    )
    # Another task of the operation gets the operation's override only.
    other = "worker.tasks.exports.export_order"
    assert strategy_name_for(other, "export_customers", "connection") == "escalate"


def test_override_unknown_strategy_raises(settings: Any) -> None:
    settings.RECOVERY_STRATEGY_OVERRIDES = {"export_customer": {"connection": "pray"}}
    with pytest.raises(ValueError, match="unknown recovery strategy 'pray'"):
        strategy_for(EXPORT_TASK, "export_customers", "connection")


def test_strategy_classes_are_named() -> None:
    assert RetryWithBackoff.name == StrategyName.RETRY
    assert RefreshCredentials.name == StrategyName.REFRESH_CREDENTIALS
    assert EscalateToAdmins.name == StrategyName.ESCALATE


def test_breaker_default_is_noop(settings: Any) -> None:
    settings.RECOVERY_CIRCUIT_BREAKER = ""
    breaker = breaker_for("export_customers")
    assert isinstance(breaker, NoOpBreaker)
    assert breaker.allow()
    assert breaker.retry_at() is None


def test_breaker_factory_must_return_a_breaker(settings: Any) -> None:
    settings.RECOVERY_CIRCUIT_BREAKER = "builtins.str"
    with pytest.raises(TypeError, match="lacks allow"):
        breaker_for("export_customers")


# Settings checks.


def check_ids(errors: list[Error]) -> list[str]:
    return sorted(error.id or "" for error in errors)


def test_checks_pass_with_defaults() -> None:
    assert check_recovery_settings() == []


def test_checks_reject_countdown_past_visibility(settings: Any) -> None:
    settings.RECOVERY_MAX_COUNTDOWN_S = settings.CELERY_BROKER_VISIBILITY_TIMEOUT_S
    assert check_ids(check_recovery_settings()) == ["integration.E001"]


def test_checks_reject_soft_limit_above_hard(settings: Any) -> None:
    settings.INTEGRATION_TASK_SOFT_TIME_LIMIT_S = 400
    settings.INTEGRATION_TASK_TIME_LIMIT_S = 300
    assert check_ids(check_recovery_settings()) == ["integration.E002"]


def test_checks_reject_invalid_overrides(settings: Any) -> None:
    settings.RECOVERY_STRATEGY_OVERRIDES = {
        "export_customer": {"conection": "retry", "timeout": "pray"}
    }
    assert check_ids(check_recovery_settings()) == [
        "integration.E006",
        "integration.E007",
    ]


# Error groups.


def test_normalize_strips_numbers_and_ids() -> None:
    message = (
        "1C returned HTTP 503 for POST /customers, request "
        "3f2b8c9e-1d4a-4b6f-9c2e-7a1b2c3d4e5f took 1.25 s, trace 0123456789abcdef0123"
    )
    assert normalize_message(message) == (
        "<n>C returned HTTP <n> for POST /customers, request <uuid> took <n> s, "
        "trace <hex>"
    )


def test_fingerprint_ignores_ids() -> None:
    first = fingerprint_for(
        "export_customers", "unknown", KeyError(), "row 12 of export 7 failed"
    )
    second = fingerprint_for(
        "export_customers", "unknown", KeyError(), "row 99 of export 8 failed"
    )
    other_kind = fingerprint_for(
        "export_customers", "timeout", KeyError(), "row 12 of export 7 failed"
    )
    assert first.digest == second.digest
    assert first.digest != other_kind.digest
    assert first.parts == (
        "export_customers",
        "unknown",
        "builtins.KeyError",
        "row <n> of export <n> failed",
    )


def test_fingerprint_digest_is_sha256_of_parts() -> None:
    fingerprint = fingerprint_for("webhook", "unknown", ValueError(), "bad")
    joined = "\x1f".join(fingerprint.parts).encode()
    assert fingerprint.digest == hashlib.sha256(joined).hexdigest()
    assert len(fingerprint.digest) == 64


# Scrubbing.


@pytest.mark.parametrize(
    "key",
    [
        "name", "company_name", "contact_person", "first_name", "phone", "Phone",
        "email", "inn", "ИНН", "kpp", "КПП", "bik", "БИК", "bank_account",
        "legal_address", "Адрес", "password", "access_token", "Authorization",
        "api_key", "НомерСчета",
    ],
)  # fmt: skip
def test_scrub_filters_denylisted_keys(key: str) -> None:
    assert scrub({key: "anything", "http_status": 422}) == {
        key: FILTERED,
        "http_status": 422,
    }


@pytest.mark.parametrize(
    "text",
    [
        "e-mail ivan.petrov+b2b@example.co.uk",
        "phone +7 (916) 555-12-34",
        "phone 8 916 555 12 34",
        "phone 89165551234",
        "phone +44 20 7946 0958",
        f"ИНН {COMPANY_INN}",
        f"ИНН {PERSON_INN}",
        "КПП 770701001",
        "КПП 7707AB001",
        "account 40702810900000012345",
    ],
)
def test_scrub_text_filters_patterns(text: str) -> None:
    scrubbed = scrub_text(text)
    assert FILTERED in scrubbed
    assert not any(char.isdigit() for char in scrubbed.split(FILTERED)[-1])
    assert "@" not in scrubbed


def test_scrub_text_keeps_times_and_statuses() -> None:
    text = "HTTP 422 at 2026-12-04 19:11:38 after 3 attempts"
    assert scrub_text(text) == text


def test_scrub_known_values_any_case() -> None:
    known = ["Евдокимова Аглая", "ООО «Тайга-Спорт»", "ab", None]
    text = "Контрагент ооо «тайга-спорт» (евдокимова аглая) уже есть, ab"
    assert scrub_text(text, known) == f"Контрагент {FILTERED} ({FILTERED}) уже есть, ab"


def test_scrub_walks_nested_values() -> None:
    value = {
        "details": {
            "onec_message": f"ИНН {COMPANY_INN} занят",
            "items": [{"phone": "1"}, "mail me at a@b.ru"],
            "big_number": 7707083893,
            "flag": True,
        }
    }
    assert scrub(value) == {
        "details": {
            "onec_message": f"ИНН {FILTERED} занят",
            "items": [{"phone": FILTERED}, f"mail me at {FILTERED}"],
            "big_number": FILTERED,
            "flag": True,
        }
    }


def test_scrub_is_idempotent() -> None:
    once = scrub_text(f"ИНН {COMPANY_INN}, a@b.ru")
    assert scrub_text(once) == once


# Task arguments.


@pytest.mark.parametrize(
    "args", [(1,), (1, 2), (str(uuid.uuid4()),), (uuid.uuid4(),), ()]
)
def test_id_arguments_accepted(args: tuple[Any, ...]) -> None:
    check_id_arguments(EXPORT_TASK, args, {})


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (({"inn": COMPANY_INN},), {}),
        (("Евдокимова Аглая",), {}),
        ((COMPANY_INN,), {}),
        ((True,), {}),
        ((), {"payload": [1, 2]}),
    ],
)
def test_id_arguments_rejected_without_value(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidTaskArguments) as raised:
        check_id_arguments(EXPORT_TASK, args, kwargs)
    assert COMPANY_INN not in str(raised.value)
    assert "Евдокимова" not in str(raised.value)


def test_export_task_rejects_payload_when_sent() -> None:
    from worker.tasks.exports import export_customer

    with pytest.raises(InvalidTaskArguments):
        export_customer.apply_async(({"inn": COMPANY_INN},))


# CommerceML writer.


def counterparty(**overrides: str) -> Counterparty:
    fields = {
        "id": "0f6a6c52-2d57-4d4f-9a52-2b7a7d0c1e11",
        "name": "Тайга-Спорт",
        "official_name": "ООО «Тайга-Спорт»",
        "inn": COMPANY_INN,
        "kpp": "770701001",
        "legal_address": "125009, Москва, ул. Тверская, д. 7",
        "contact_person": "Евдокимова Аглая Тихоновна",
        "phone": "+7 (916) 555-12-34",
        "email": "aglaya@taiga-sport.example",
    }
    return Counterparty(**{**fields, **overrides})


def text_of(root: Any, path: str, namespace: str) -> str | None:
    return root.findtext(path, namespaces={"c": namespace})


@pytest.mark.parametrize("version", ["3.1", "2.10"])
def test_document_fields(version: str) -> None:
    data = counterparties_document([counterparty()], version=version)
    root = etree.fromstring(data)
    namespace = NAMESPACES[version]
    assert root.tag == f"{{{namespace}}}КоммерческаяИнформация"
    assert root.get("ВерсияСхемы") == version
    base = "c:Контрагенты/c:Контрагент/"
    expected = {
        "c:Ид": "0f6a6c52-2d57-4d4f-9a52-2b7a7d0c1e11",
        "c:Наименование": "Тайга-Спорт",
        "c:ОфициальноеНаименование": "ООО «Тайга-Спорт»",
        "c:ИНН": COMPANY_INN,
        "c:КПП": "770701001",
        "c:ЮридическийАдрес/c:Представление": "125009, Москва, ул. Тверская, д. 7",
        "c:Представители/c:Представитель/c:Наименование": "Евдокимова Аглая Тихоновна",
        "c:Роль": "Покупатель",
    }
    for path, value in expected.items():
        assert text_of(root, base + path, namespace) == value, path
    contacts = {
        text_of(contact, "c:Тип", namespace): text_of(contact, "c:Значение", namespace)
        for contact in root.findall(
            base + "c:Контакты/c:Контакт", namespaces={"c": namespace}
        )
    }
    assert contacts == {
        "ТелефонРабочий": "+7 (916) 555-12-34",
        "Почта": "aglaya@taiga-sport.example",
    }


def test_document_escapes_markup() -> None:
    data = counterparties_document([counterparty(name='Спорт & <Ко> "А"')])
    root = etree.fromstring(data)
    namespace = NAMESPACES["3.1"]
    name = text_of(root, "c:Контрагенты/c:Контрагент/c:Наименование", namespace)
    assert name == 'Спорт & <Ко> "А"'


def test_document_omits_entrepreneur_kpp() -> None:
    data = counterparties_document([counterparty(inn=PERSON_INN, kpp="")])
    assert "КПП".encode() not in data


def test_document_rejects_unknown_version() -> None:
    with pytest.raises(ValueError, match=r"unsupported CommerceML version '2\.04'"):
        counterparties_document([counterparty()], version="2.04")


def test_write_atomically_replaces_without_leftovers(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    first = write_atomically(outbox, "contragents_1.xml", b"<a/>")
    second = write_atomically(outbox, "contragents_1.xml", b"<b/>")
    assert first == second == outbox / "contragents_1.xml"
    assert second.read_bytes() == b"<b/>"
    assert sorted(path.name for path in outbox.iterdir()) == ["contragents_1.xml"]
    assert second.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "name", ["../escape.xml", "sub/file.xml", ".hidden.xml", "file.txt", "a\\b.xml"]
)
def test_write_atomically_rejects_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid outbox file name"):
        write_atomically(tmp_path, name, b"<a/>")
    assert list(tmp_path.iterdir()) == []


def test_write_atomically_folder_is_file(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("not a folder")
    with pytest.raises(FileExistsError):
        write_atomically(blocker, "contragents_1.xml", b"<a/>")
    assert blocker.read_text() == "not a folder"


def test_written_document_recognised(tmp_path: Path) -> None:
    path = write_atomically(
        tmp_path, "contragents_x.xml", counterparties_document([counterparty()])
    )
    assert kind_from_name(path.name) == "contragents"
    assert kind_from_content(path) == "contragents"


# Customer checks.


@pytest.mark.parametrize(
    ("inn", "valid"),
    [
        (COMPANY_INN, True),
        ("7707083894", False),
        (PERSON_INN, True),
        ("500100732258", False),
        ("770708389", False),
        ("77070838930", False),
        ("77O7083893", False),
        ("٧٧٠٧٠٨٣٨٩٣", False),
    ],
)
def test_inn_check_digits(inn: str, valid: bool) -> None:
    assert is_valid_inn(inn) is valid


def customer_fields(**overrides: str) -> dict[str, str]:
    fields = {
        "company_name": "ООО «Тайга-Спорт»",
        "inn": COMPANY_INN,
        "kpp": "770701001",
        "legal_address": "125009, Москва, ул. Тверская, д. 7",
        "contact_person": "Евдокимова Аглая Тихоновна",
        "phone": "+7 (916) 555-12-34",
        "email": "aglaya@taiga-sport.example",
    }
    return {**fields, **overrides}


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        ({"inn": "7707083894"}, "inn", "invalid_inn"),
        ({"kpp": "77070100"}, "kpp", "invalid_kpp"),
        ({"kpp": ""}, "kpp", "kpp_required"),
        ({"inn": PERSON_INN}, "kpp", "kpp_not_allowed"),
        ({"email": "not-an-address"}, "email", "invalid"),
    ],
)
@pytest.mark.django_db
def test_customer_clean_rejects(
    overrides: dict[str, str], field: str, code: str
) -> None:
    customer = B2BCustomer(**customer_fields(**overrides))
    with pytest.raises(DjangoValidationError) as raised:
        customer.full_clean()
    codes = [error.code for error in raised.value.error_dict[field]]
    assert code in codes


@pytest.mark.django_db
def test_register_saves_customer_and_outbox(
    django_capture_on_commit_callbacks: Any,
) -> None:
    from freesport.customers.services import register_b2b_customer

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        customer = register_b2b_customer(**customer_fields())
    export = CustomerExport.objects.get(customer=customer)
    assert export.state == CustomerExport.State.PENDING
    assert export.attempts == 0
    assert len(callbacks) == 1
    assert str(customer) == f"B2B customer #{customer.pk}"


@pytest.mark.django_db
def test_register_invalid_customer_saves_nothing() -> None:
    from freesport.customers.services import register_b2b_customer

    with pytest.raises(DjangoValidationError):
        register_b2b_customer(**customer_fields(inn="7707083894"))
    assert not B2BCustomer.objects.exists()
    assert not CustomerExport.objects.exists()


# Manual tasks on the database.


def make_manual_task(**overrides: Any) -> ManualTask:
    customer = B2BCustomer.objects.create(**customer_fields())
    export = CustomerExport.objects.create(customer=customer)
    task, created = manual_tasks.open_for_failure(
        replayed_task_id="",
        content_object=customer,
        defaults={
            "operation": "export_customers",
            "task_name": EXPORT_TASK,
            "task_args": [export.pk],
            "queue": f"recovery-unit-{uuid.uuid4().hex[:8]}",
            "error": "1C returned HTTP 422: rejected",
            "error_type": ErrorKind.BUSINESS,
            "fingerprint": "f" * 64,
            **overrides,
        },
    )
    assert created
    return task


@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_claim_once(redis_server: str) -> None:
    task = make_manual_task()
    barrier = threading.Barrier(2)
    results: list[bool] = []

    def replay() -> None:
        try:
            barrier.wait()
            results.append(manual_tasks.replay(task))
        finally:
            connection.close()

    # The claim commits before the message is sent, so the broker is needed:
    # nobody consumes this queue, and the message is deleted below.
    client = redis.Redis.from_url(redis_server)
    try:
        threads = [threading.Thread(target=replay) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        task.refresh_from_db()
        assert sorted(results) == [False, True]
        assert task.state == ManualTask.State.IN_PROGRESS
        assert task.replay_count == 1
        actions = list(task.audit.values_list("action", flat=True))
        assert actions.count(ManualTaskAudit.Action.REPLAY_STARTED) == 1
        assert actions.count(ManualTaskAudit.Action.REPLAY_REJECTED) == 1
        assert client.llen(task.queue) == 1
    finally:
        client.delete(task.queue)
        client.close()


@pytest.mark.django_db
def test_close_resolves_only_open_tasks() -> None:
    open_task = make_manual_task()
    done_task = make_manual_task(fingerprint="e" * 64)
    ManualTask.objects.filter(pk=done_task.pk).update(state=ManualTask.State.DISCARDED)
    changed = manual_tasks.close(ManualTask.objects.all(), ManualTask.State.RESOLVED)
    assert changed == 1
    open_task.refresh_from_db()
    assert open_task.state == ManualTask.State.RESOLVED
    assert open_task.resolved_at is not None
    with pytest.raises(ValueError, match="invalid closing state"):
        manual_tasks.close([open_task], ManualTask.State.OPEN)


@pytest.mark.django_db
def test_open_in_groups_selects_open_tasks_of_groups() -> None:
    first = make_manual_task(fingerprint="a" * 64)
    make_manual_task(fingerprint="b" * 64)
    assert list(manual_tasks.open_in_groups(["a" * 64])) == [first]


@pytest.mark.django_db
def test_edit_and_retry_rejects_other_fields() -> None:
    task = make_manual_task()
    with pytest.raises(manual_tasks.ManualTaskError, match="onec_id cannot be edited"):
        manual_tasks.edit_and_retry(task, {"onec_id": "x"})


@pytest.mark.django_db
def test_admin_edit_and_retry_audits_changes(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    task = make_manual_task()
    url = f"/admin/integration/manualtask/{task.pk}/edit-and-retry/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b'name="inn"' in page.content
    form = customer_fields(company_name="ООО «Тайга-Спорт Север»")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(url, form)
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.state == ManualTask.State.IN_PROGRESS
    assert len(callbacks) == 1
    edit = task.audit.get(action=ManualTaskAudit.Action.EDITED)
    # The field is named; its personal values are filtered.
    assert edit.changes == {"company_name": "[Filtered]"}
    assert edit.user is not None
    assert edit.user.username == "admin"


@pytest.mark.django_db
def test_admin_pages_render(admin_client: Client) -> None:
    make_manual_task()
    for path in (
        "/admin/integration/integrationlog/",
        "/admin/integration/manualtask/",
        "/admin/integration/pendingretry/",
        "/admin/integration/outboxdocument/",
        "/admin/customers/b2bcustomer/",
        "/admin/customers/customerexport/",
    ):
        response = admin_client.get(path)
        assert response.status_code == 200, path


@pytest.mark.django_db
def test_admin_group_actions(admin_client: Client) -> None:
    first = make_manual_task(fingerprint="a" * 64)
    second = make_manual_task(fingerprint="a" * 64)
    other = make_manual_task(fingerprint="b" * 64)
    response = admin_client.post(
        "/admin/integration/manualtask/",
        {"action": "resolve_error_groups", "_selected_action": [first.pk]},
    )
    assert response.status_code == 302
    states = dict(ManualTask.objects.values_list("pk", "state"))
    assert states[first.pk] == ManualTask.State.RESOLVED
    assert states[second.pk] == ManualTask.State.RESOLVED
    assert states[other.pk] == ManualTask.State.OPEN


@pytest.mark.django_db
def test_integration_log_save_scrubs() -> None:
    row = IntegrationLog.objects.create(
        operation="export_customers",
        error_type=ErrorKind.BUSINESS,
        message=f"ИНН {COMPANY_INN} of aglaya@taiga-sport.example",
        details={"inn": COMPANY_INN, "onec_message": "+7 (916) 555-12-34"},
        strategy=StrategyName.MANUAL_TASK,
        fingerprint="c" * 64,
    )
    row.refresh_from_db()
    assert COMPANY_INN not in row.message
    assert "aglaya" not in row.message
    assert row.details == {"inn": FILTERED, "onec_message": FILTERED}


# Pending retries and the escalation limit, on the test Redis server.


@pytest.fixture
def broker_queue(redis_server: str) -> Iterator[tuple[str, redis.Redis]]:
    queue = f"recovery-unit-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_server)
    yield queue, client
    client.delete(queue)
    client.close()


@pytest.mark.django_db
def test_send_due_retries_sends_due_rows_only(
    broker_queue: tuple[str, redis.Redis],
) -> None:
    queue, client = broker_queue
    now = timezone.now()
    due = PendingRetry.objects.create(
        task_name=EXPORT_TASK,
        task_id=str(uuid.uuid4()),
        args=[41],
        queue=queue,
        retries=3,
        due_at=now - timedelta(seconds=1),
        reason=PendingRetry.Reason.BROKER_UNAVAILABLE,
    )
    later = PendingRetry.objects.create(
        task_name=EXPORT_TASK,
        task_id=str(uuid.uuid4()),
        args=[42],
        queue=queue,
        due_at=now + timedelta(hours=1),
        reason=PendingRetry.Reason.LONG_DELAY,
    )
    assert scheduling.send_due_retries() == 1
    due.refresh_from_db()
    later.refresh_from_db()
    assert due.state == PendingRetry.State.SENT
    assert due.publish_attempts == 1
    assert later.state == PendingRetry.State.PENDING
    raw = client.lpop(queue)
    assert raw is not None
    message = json.loads(raw)
    headers = message["headers"]
    assert headers["id"] == due.task_id
    assert headers["retries"] == 3
    assert headers["task"] == EXPORT_TASK
    assert scheduling.send_due_retries() == 0


@pytest.mark.django_db
def test_send_due_retries_retakes_stale_rows(
    broker_queue: tuple[str, redis.Redis],
) -> None:
    queue, client = broker_queue
    stale = PendingRetry.objects.create(
        task_name=EXPORT_TASK,
        task_id=str(uuid.uuid4()),
        args=[43],
        queue=queue,
        due_at=timezone.now() - timedelta(hours=1),
        state=PendingRetry.State.SENDING,
        claimed_at=timezone.now() - scheduling.STALE_SENDING_AFTER * 2,
        reason=PendingRetry.Reason.BROKER_UNAVAILABLE,
    )
    assert scheduling.send_due_retries() == 1
    stale.refresh_from_db()
    assert stale.state == PendingRetry.State.SENT
    assert client.llen(queue) == 1


def test_escalation_limit_once_per_group(redis_server: str, settings: Any) -> None:
    settings.RECOVERY_ESCALATION_INTERVAL_S = 60
    group = uuid.uuid4().hex
    try:
        assert escalation.acquire(group)
        assert not escalation.acquire(group)
        assert escalation.acquire(uuid.uuid4().hex)
        escalation.release(group)
        assert escalation.acquire(group)
        ttl = escalation.redis_client(settings.REDIS_URL).ttl(
            escalation.KEY_PREFIX + group
        )
        assert 0 < ttl <= 60
    finally:
        escalation.release(group)


@pytest.mark.django_db
def test_escalation_limit_falls_back_to_log(settings: Any, tmp_path: Path) -> None:
    settings.REDIS_URL = f"unix://{tmp_path / 'no-redis.sock'}"
    group = "d" * 64
    assert escalation.acquire(group)
    IntegrationLog.objects.create(
        operation="export_customers",
        error_type=ErrorKind.UNKNOWN,
        strategy=StrategyName.ESCALATE,
        fingerprint=group,
        admins_notified_at=timezone.now(),
    )
    assert not escalation.acquire(group)


@pytest.mark.django_db
def test_unsent_exports_sent_by_beat_job(
    broker_queue: tuple[str, redis.Redis], settings: Any
) -> None:
    from worker.tasks.exports import send_unsent_customer_exports

    queue, client = broker_queue
    settings.INTEGRATION_TASK_QUEUE = queue
    settings.CUSTOMER_EXPORT_UNSENT_AFTER_S = 60
    customer = B2BCustomer.objects.create(**customer_fields())
    stale = CustomerExport.objects.create(customer=customer)
    CustomerExport.objects.create(customer=customer)  # inside the grace period
    started = CustomerExport.objects.create(customer=customer, attempts=1)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    CustomerExport.objects.filter(pk__in=[stale.pk, started.pk]).update(
        created_at=an_hour_ago
    )
    assert send_unsent_customer_exports() == 1
    raw = client.lpop(queue)
    assert raw is not None
    message = json.loads(raw)
    assert message["headers"]["task"] == EXPORT_TASK
    assert message["headers"]["argsrepr"] == f"({stale.pk},)"
    # The fresh row is inside the grace period, the started one already ran.
    assert client.llen(queue) == 0
