"""Customer export to 1C through real workers, Redis and the emulated 1C service.

Every failure kind is produced by the emulator's fault schedule (or by the
worker's own data and files) and handled by a real ``celery worker`` process.
Tests check what the worker leaves behind: the outbox row, the integration log
row with its decision history, manual tasks, e-mails in the file-based
backend's folder and the emulator's ledger. Countdowns are asserted from the
recorded history with tiny backoff settings, not by sleeping.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone
from lxml import etree

from config.celery import app
from freesport.customers import services
from freesport.customers.models import B2BCustomer, CustomerExport
from freesport.customers.services import register_b2b_customer
from freesport.integration import manual_tasks
from freesport.integration.models import (
    IntegrationLog,
    ManualTask,
    ManualTaskAudit,
    OutboxDocument,
    PendingRetry,
)
from freesport.integration.scrubbing import FILTERED
from onec_emulator.service import EmulatorService, Fault
from tests.conftest import WorkerProcess
from tests.test_recovery_support import (
    ADMIN_ADDRESS,
    EXPORT_TASK,
    MAX_ATTEMPTS,
    MAX_COUNTDOWN_S,
    PLANTED,
    READ_TIMEOUT_S,
    RETRY_BASE_S,
    RETRY_CAP_S,
    Harness,
    body_of,
    clear_escalation_limits,
    mails_about,
    planted_values_in,
    read_mails,
    rows_as_text,
    start_worker,
    wait_export,
    wait_for,
    wait_incident,
    worker_env,
)
from worker.recovery import scheduling
from worker.tasks.exports import export_customer

# Longer than the workers' read timeout, so the client gives up first.
HANG_S = READ_TIMEOUT_S * 3
# Read timeout of workers that must still be waiting for 1C while a test acts.
PATIENT_READ_TIMEOUT_S = 10.0
# How long 1C takes to answer a held call, well below the patient read timeout.
HOLD_MS = 2000
UNKNOWN_ERRORS = 20


# Harnesses: one emulator for the module, one worker per environment.


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorService]:
    with EmulatorService(token_auth=True) as service:
        yield service


def run_id() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def harness(
    django_db_setup: None,
    django_db_blocker: Any,
    redis_server: str,
    worker_logs: Path,
    emulator: EmulatorService,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Harness]:
    """A worker that exports to the emulator, with token auth."""
    queue = f"exports-{run_id()}"
    folder = tmp_path_factory.mktemp("exports")
    env = worker_env(queue=queue, folder=folder, emulator=emulator)
    worker = start_worker(queue, worker_logs / f"{queue}.log", env)
    try:
        yield Harness(worker, queue, folder, emulator)
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def file_harness(
    django_db_setup: None,
    django_db_blocker: Any,
    redis_server: str,
    worker_logs: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Harness]:
    """A worker with no 1C HTTP service configured: exports go to files."""
    queue = f"file-exports-{run_id()}"
    folder = tmp_path_factory.mktemp("file-exports")
    env = worker_env(queue=queue, folder=folder, emulator=None)
    worker = start_worker(queue, worker_logs / f"{queue}.log", env)
    try:
        yield Harness(worker, queue, folder, None)
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def fallback_harness(
    django_db_setup: None,
    django_db_blocker: Any,
    redis_server: str,
    worker_logs: Path,
    emulator: EmulatorService,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Harness]:
    """A worker whose override sends connection errors to the file fallback."""
    queue = f"fallback-exports-{run_id()}"
    folder = tmp_path_factory.mktemp("fallback-exports")
    overrides = '{"export_customer": {"connection": "file_fallback"}}'
    env = worker_env(
        queue=queue,
        folder=folder,
        emulator=emulator,
        RECOVERY_STRATEGY_OVERRIDES=overrides,
    )
    worker = start_worker(queue, worker_logs / f"{queue}.log", env, concurrency=1)
    try:
        yield Harness(worker, queue, folder, emulator)
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def patient_harness(
    django_db_setup: None,
    django_db_blocker: Any,
    redis_server: str,
    worker_logs: Path,
    emulator: EmulatorService,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Harness]:
    """A worker that waits long for 1C, so a test can act during a slow call."""
    queue = f"patient-exports-{run_id()}"
    folder = tmp_path_factory.mktemp("patient-exports")
    env = worker_env(
        queue=queue,
        folder=folder,
        emulator=emulator,
        ONEC_HTTP_READ_TIMEOUT_S=str(PATIENT_READ_TIMEOUT_S),
    )
    worker = start_worker(queue, worker_logs / f"{queue}.log", env)
    try:
        yield Harness(worker, queue, folder, emulator)
    finally:
        worker.stop()


@pytest.fixture
def exports(
    harness: Harness, transactional_db: None, settings: Any
) -> Iterator[Harness]:
    """The emulator-backed harness, with a clean emulator and mail limits."""
    harness.apply_settings(settings)
    assert harness.emulator is not None
    harness.emulator.reset()
    clear_escalation_limits()
    yield harness
    harness.emulator.faults.clear()


@pytest.fixture
def file_exports(
    file_harness: Harness, transactional_db: None, settings: Any
) -> Harness:
    file_harness.apply_settings(settings)
    clear_escalation_limits()
    return file_harness


def register(**overrides: str) -> CustomerExport:
    customer = register_b2b_customer(**{**PLANTED, **overrides})
    return CustomerExport.objects.get(customer=customer)


def customer_requests(emulator: EmulatorService, key: str) -> list[dict[str, Any]]:
    return [
        request
        for request in emulator.requests("customers")
        if request["idempotency_key"] == key
    ]


def ledger_rows(emulator: EmulatorService, key: str) -> list[dict[str, Any]]:
    return [row for row in emulator.ledger() if row["idempotency_key"] == key]


def assert_backoff_history(
    history: list[dict[str, Any]], kind: str, retries: int
) -> None:
    """Check the recorded countdowns of ``retries`` retries of one error kind.

    Full jitter draws each countdown anywhere below its ceiling, so the
    countdowns themselves need not grow. Their ceilings must double up to the
    cap, and every countdown must lie between 0 and its ceiling.
    """
    assert [entry["error_type"] for entry in history] == [kind] * retries
    assert [entry["strategy"] for entry in history] == ["retry"] * retries
    ceilings = [entry["ceiling_s"] for entry in history]
    expected = [
        min(RETRY_CAP_S, RETRY_BASE_S * 2**attempt) for attempt in range(retries)
    ]
    assert ceilings == pytest.approx(expected)
    for entry in history:
        assert 0.0 <= entry["countdown_s"] <= entry["ceiling_s"] <= RETRY_CAP_S
    assert [entry["attempt"] for entry in history] == list(range(1, retries + 1))


# Success and the retry strategy.


def test_export_stores_onec_id(exports: Harness) -> None:
    emulator = exports.emulator
    assert emulator is not None
    export = wait_export(register(), CustomerExport.State.EXPORTED)
    key = str(export.idempotency_key)
    rows = ledger_rows(emulator, key)
    assert len(rows) == 1
    customer = B2BCustomer.objects.get(pk=export.customer_id)
    assert customer.onec_id == rows[0]["id"]
    assert rows[0]["payload"] == services.export_payload(customer)
    assert export.attempts == 1
    assert export.finished_at is not None
    assert not IntegrationLog.objects.exists()


def test_connection_errors_retried_up_to_cap(exports: Harness) -> None:
    emulator = exports.emulator
    assert emulator is not None
    emulator.faults.add("customers", Fault.status(503), times=MAX_ATTEMPTS - 1)
    export = wait_export(register(), CustomerExport.State.EXPORTED)
    incident = wait_incident(export, IntegrationLog.Status.RECOVERED)
    assert incident.error_type == "connection"
    assert incident.strategy == "retry"
    assert incident.retry_count == MAX_ATTEMPTS - 1
    assert incident.result == f"succeeded on attempt {MAX_ATTEMPTS}"
    assert incident.resolved_at is not None
    # Three retries reach the cap: ceilings 0.2, 0.4, then 0.5 instead of 0.8.
    assert_backoff_history(incident.history, "connection", MAX_ATTEMPTS - 1)
    assert incident.task_args == [export.pk]
    assert incident.details["http_status"] == 503
    key = str(export.idempotency_key)
    assert len(customer_requests(emulator, key)) == MAX_ATTEMPTS
    assert len(ledger_rows(emulator, key)) == 1


def test_timeouts_twice_then_success(exports: Harness) -> None:
    emulator = exports.emulator
    assert emulator is not None
    emulator.faults.add("customers", Fault.hang(HANG_S), times=2)
    export = wait_export(register(), CustomerExport.State.EXPORTED)
    incident = wait_incident(export, IntegrationLog.Status.RECOVERED)
    assert incident.error_type == "timeout"
    assert incident.retry_count == 2
    assert incident.result == "succeeded on attempt 3"
    assert_backoff_history(incident.history, "timeout", 2)
    ceilings = [entry["ceiling_s"] for entry in incident.history]
    assert ceilings[0] < ceilings[1]
    assert len(customer_requests(emulator, str(export.idempotency_key))) == 3
    assert export.attempts == 3


def test_retry_after_is_countdown_floor(exports: Harness) -> None:
    emulator = exports.emulator
    assert emulator is not None
    emulator.faults.add("customers", Fault.rate_limit(1), times=2)
    export = wait_export(register(), CustomerExport.State.EXPORTED)
    incident = wait_incident(export, IntegrationLog.Status.RECOVERED)
    assert incident.retry_count == 2
    for entry in incident.history:
        assert entry["retry_after_s"] == 1.0
        # The backoff ceiling (0.2, 0.4) is below Retry-After, which wins.
        assert entry["ceiling_s"] < entry["retry_after_s"]
        assert entry["countdown_s"] == 1.0
        assert entry["countdown_s"] < MAX_COUNTDOWN_S


def test_long_retry_after_waits_in_database(exports: Harness) -> None:
    emulator = exports.emulator
    assert emulator is not None
    retry_after_s = int(MAX_COUNTDOWN_S) + 1
    emulator.faults.add("customers", Fault.rate_limit(retry_after_s), times=1)
    export = register()
    pending = wait_for(
        lambda: PendingRetry.objects.filter(args=[export.pk]).first(),
        "the long retry to be stored",
    )
    assert pending.reason == PendingRetry.Reason.LONG_DELAY
    assert pending.task_name == EXPORT_TASK
    assert pending.queue == exports.queue
    assert pending.retries == 1
    delay_s = (pending.due_at - pending.created_at).total_seconds()
    assert delay_s == pytest.approx(retry_after_s, abs=0.5)
    # The row is noted on the integration log right after it is stored.
    incident = wait_for(
        lambda: IntegrationLog.objects.filter(
            task_id=pending.task_id, result__startswith="retry kept in the database"
        ).first(),
        "the integration log to note the kept retry",
    )
    assert incident.status == IntegrationLog.Status.ERROR
    # No worker keeps the delayed run in memory.
    scheduled = app.control.inspect([exports.worker.name], timeout=1).scheduled()
    assert scheduled == {exports.worker.name: []}
    assert scheduling.send_due_retries() == 0

    wait_for(lambda: timezone.now() >= pending.due_at, "the retry to fall due")
    assert scheduling.send_due_retries() == 1
    export = wait_export(export, CustomerExport.State.EXPORTED)
    incident = wait_incident(export, IntegrationLog.Status.RECOVERED)
    assert incident.task_id == pending.task_id
    pending.refresh_from_db()
    assert pending.state == PendingRetry.State.SENT


def test_retries_exhausted_escalate(exports: Harness) -> None:
    emulator = exports.emulator
    assert emulator is not None
    emulator.faults.add("customers", Fault.reset(), times=MAX_ATTEMPTS)
    export = wait_export(register(), CustomerExport.State.MANUAL)
    incident = wait_incident(export, IntegrationLog.Status.MANUAL_REQUIRED)
    assert incident.strategy == "escalate"
    assert incident.error_type == "connection"
    assert incident.result.startswith(f"gave up after {MAX_ATTEMPTS} attempts")
    assert incident.retry_count == MAX_ATTEMPTS - 1
    assert incident.admins_notified_at is not None
    task = ManualTask.objects.get(integration_log=incident)
    assert task.state == ManualTask.State.OPEN
    assert task.task_args == [export.pk]
    assert len(mails_about(exports.mail, incident.fingerprint)) == 1


# Credentials.


def token_requests(emulator: EmulatorService) -> int:
    return len(emulator.requests("token"))


def test_unauthorized_refreshes_once(exports: Harness) -> None:
    emulator = exports.emulator
    assert emulator is not None
    emulator.faults.add("customers", Fault.status(401), times=1)
    export = wait_export(register(), CustomerExport.State.EXPORTED)
    incident = wait_incident(export, IntegrationLog.Status.RECOVERED)
    assert incident.error_type == "authentication"
    assert incident.strategy == "refresh_credentials"
    strategies = [entry["strategy"] for entry in incident.history]
    assert strategies == ["refresh_credentials"]
    assert incident.history[0]["countdown_s"] == 0.0
    # A client per run: a token for each of the two runs and one for the refresh.
    assert token_requests(emulator) == 3
    assert len(customer_requests(emulator, str(export.idempotency_key))) == 2
    assert mails_about(exports.mail, incident.fingerprint) == []


def test_unauthorized_twice_escalates_once(exports: Harness) -> None:
    emulator = exports.emulator
    assert emulator is not None
    emulator.faults.add("customers", Fault.status(401), times=2)
    export = wait_export(register(), CustomerExport.State.MANUAL)
    incident = wait_incident(export, IntegrationLog.Status.MANUAL_REQUIRED)
    assert incident.strategy == "escalate"
    assert incident.result.startswith("rejected again after a credential refresh")
    strategies = [entry["strategy"] for entry in incident.history]
    assert strategies == ["refresh_credentials", "escalate"]
    mails = mails_about(exports.mail, incident.fingerprint)
    assert len(mails) == 1
    assert mails[0]["To"] == ADMIN_ADDRESS
    body = body_of(mails[0])
    assert incident.fingerprint in body
    assert planted_values_in(body) == []
    task = ManualTask.objects.get(integration_log=incident)
    assert task.error_type == "authentication"


# Data format and business rejections.


def test_malformed_json_logged_and_skipped(exports: Harness) -> None:
    emulator = exports.emulator
    assert emulator is not None
    emulator.faults.add("customers", Fault.malformed_json(), times=1)
    export = wait_export(register(), CustomerExport.State.SKIPPED)
    incident = wait_incident(export, IntegrationLog.Status.ERROR)
    assert incident.error_type == "data_format"
    assert incident.strategy == "log_and_skip"
    assert incident.result == "skipped"
    assert incident.retry_count == 0
    assert export.last_error_type == "data_format"
    assert not ManualTask.objects.exists()
    assert len(customer_requests(emulator, str(export.idempotency_key))) == 1


def rejection() -> Fault:
    """A 422 whose message quotes the customer's ИНН and name, as 1C's may."""
    return Fault.reject(
        "COUNTERPARTY_EXISTS",
        f"Контрагент {PLANTED['company_name']} с ИНН {PLANTED['inn']} уже есть "
        f"(контакт {PLANTED['contact_person']}, {PLANTED['email']})",
    )


def test_business_rejection_replayed_once(exports: Harness) -> None:
    emulator = exports.emulator
    assert emulator is not None
    emulator.faults.add("customers", rejection(), times=1)
    export = wait_export(register(), CustomerExport.State.MANUAL)
    incident = wait_incident(export, IntegrationLog.Status.MANUAL_REQUIRED)
    assert incident.error_type == "business"
    assert incident.strategy == "manual_task"
    assert incident.details["onec_code"] == "COUNTERPARTY_EXISTS"
    assert FILTERED in incident.details["onec_message"]
    assert export.last_error_code == "COUNTERPARTY_EXISTS"
    task = ManualTask.objects.get(integration_log=incident)
    assert task.state == ManualTask.State.OPEN
    assert task.object_ref == f"customers.b2bcustomer:{export.customer_id}"
    assert task.queue == exports.queue

    barrier = threading.Barrier(2)
    results: list[bool] = []

    def replay() -> None:
        try:
            barrier.wait()
            results.append(manual_tasks.replay(task))
        finally:
            connection.close()

    threads = [threading.Thread(target=replay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]

    wait_export(export, CustomerExport.State.EXPORTED)
    task = wait_for(
        lambda: ManualTask.objects.filter(
            pk=task.pk, state=ManualTask.State.RESOLVED
        ).first(),
        "the manual task to be resolved",
    )
    actions = list(task.audit.values_list("action", flat=True))
    assert actions.count(ManualTaskAudit.Action.REPLAY_STARTED) == 1
    assert actions.count(ManualTaskAudit.Action.REPLAY_REJECTED) == 1
    assert actions.count(ManualTaskAudit.Action.REPLAY_SUCCEEDED) == 1
    assert task.replay_count == 1
    key = str(export.idempotency_key)
    assert len(customer_requests(emulator, key)) == 2
    assert len(ledger_rows(emulator, key)) == 1
    incident.refresh_from_db()
    assert incident.status == IntegrationLog.Status.RECOVERED


def test_edit_and_retry_sends_new_key(exports: Harness) -> None:
    emulator = exports.emulator
    assert emulator is not None
    emulator.faults.add("customers", rejection(), times=1)
    export = wait_export(register(), CustomerExport.State.MANUAL)
    first_key = str(export.idempotency_key)
    task = ManualTask.objects.get(
        object_ref=f"customers.b2bcustomer:{export.customer_id}"
    )
    operator = User.objects.create_user("operator")
    new_name = "ООО «Тайга-Спорт Планта Север»"
    assert manual_tasks.edit_and_retry(task, {"company_name": new_name}, user=operator)

    export = wait_export(export, CustomerExport.State.EXPORTED)
    assert str(export.idempotency_key) != first_key
    rows = ledger_rows(emulator, str(export.idempotency_key))
    assert len(rows) == 1
    assert rows[0]["payload"]["company_name"] == new_name
    edit = task.audit.get(action=ManualTaskAudit.Action.EDITED)
    # The audit names the edited field; its values are personal data, filtered.
    assert edit.changes == {"company_name": "[Filtered]"}
    assert edit.user == operator
    assert edit.created_at is not None


def test_invalid_customer_waits_for_edit(exports: Harness) -> None:
    emulator = exports.emulator
    assert emulator is not None
    # Saved past the registration checks, as rows imported from elsewhere are.
    customer = B2BCustomer.objects.create(**{**PLANTED, "inn": "7707083894"})
    export = CustomerExport.objects.create(customer=customer)
    assert services.send_export(export.pk)
    export = wait_export(export, CustomerExport.State.MANUAL)
    incident = wait_incident(export, IntegrationLog.Status.MANUAL_REQUIRED)
    assert incident.error_type == "validation"
    assert incident.strategy == "manual_task"
    assert emulator.requests("customers") == []
    task = ManualTask.objects.get(integration_log=incident)
    assert manual_tasks.edit_and_retry(task, {"inn": PLANTED["inn"]})
    export = wait_export(export, CustomerExport.State.EXPORTED)
    assert len(ledger_rows(emulator, str(export.idempotency_key))) == 1


def test_missing_outbox_row_skipped(exports: Harness) -> None:
    missing_id = 10**9
    assert services.send_export(missing_id)
    incident = wait_for(
        lambda: IntegrationLog.objects.filter(task_args=[missing_id]).first(),
        "the missing row to be logged",
    )
    assert incident.error_type == "not_found"
    assert incident.strategy == "log_and_skip"
    assert incident.object_ref == ""


def terminate_other_database_connections() -> int:
    """Terminate every other server connection to the test database.

    Workers close their connections after each task (CONN_MAX_AGE is 0), so the
    connections cut here belong to tasks that are running.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return len(cursor.fetchall())


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs PostgreSQL: SQLite has no server connections to cut",
)
def test_database_outage_after_1c_accepted(
    patient_harness: Harness, transactional_db: None, settings: Any
) -> None:
    patient_harness.apply_settings(settings)
    exports = patient_harness
    emulator = exports.emulator
    assert emulator is not None
    emulator.reset()
    # given: a call that 1C accepts slowly
    emulator.faults.add("customers", Fault.latency(HOLD_MS), times=1)
    export = register()
    wait_for(lambda: not emulator.faults.pending(), "the call to reach 1C")

    # when: the worker's database connection is cut while it waits
    assert terminate_other_database_connections() >= 1

    # then: the write after the call fails, the run is retried, and the retry
    # finds the customer in 1C under the same key
    export = wait_export(export, CustomerExport.State.EXPORTED)
    key = str(export.idempotency_key)
    wait_for(lambda: len(customer_requests(emulator, key)) == 2, "the retried call")
    assert [request["status"] for request in customer_requests(emulator, key)] == [
        201,
        200,
    ]
    assert len(ledger_rows(emulator, key)) == 1
    decision = "error_kind=database_unavailable"
    wait_for(
        lambda: decision in exports.worker.log_path.read_text(errors="replace"),
        "the worker to log the database outage",
    )
    log = exports.worker.log_path.read_text(errors="replace")
    line = next(line for line in log.splitlines() if decision in line)
    assert "strategy=retry" in line


# The file exchange.


def parse_document(path: Path) -> Any:
    return etree.parse(str(path)).getroot()


def test_without_http_service_writes_document(file_exports: Harness) -> None:
    export = wait_export(register(), CustomerExport.State.WRITTEN_TO_FILE)
    customer = B2BCustomer.objects.get(pk=export.customer_id)
    path = Path(export.document_path)
    assert path.parent == file_exports.outbox
    assert path.name == f"contragents_{customer.uuid}.xml"
    root = parse_document(path)
    namespace = {"c": "urn:1C.ru:commerceml_3"}
    counterparty = root.find("c:Контрагенты/c:Контрагент", namespace)
    assert counterparty.findtext("c:Ид", namespaces=namespace) == str(customer.uuid)
    assert counterparty.findtext("c:ИНН", namespaces=namespace) == PLANTED["inn"]
    assert counterparty.findtext("c:КПП", namespaces=namespace) == PLANTED["kpp"]
    document = OutboxDocument.objects.get(path=str(path))
    assert document.operation == "export_customers"
    assert document.size == path.stat().st_size
    assert document.collected_at is None
    assert [p.name for p in file_exports.outbox.iterdir()] == [path.name]
    assert not IntegrationLog.objects.exists()


def test_same_unknown_error_mailed_once(file_exports: Harness) -> None:
    outbox = file_exports.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    for leftover in outbox.iterdir():
        leftover.unlink()
    outbox.rmdir()
    # The outbox path is a file: every write fails the same unexpected way.
    outbox.write_text("not a folder")
    try:
        started = timezone.now()
        exports_ = [register() for _ in range(UNKNOWN_ERRORS)]
        for export in exports_:
            wait_export(export, CustomerExport.State.MANUAL)
        incidents = list(IntegrationLog.objects.all())
        assert (timezone.now() - started).total_seconds() < 60
    finally:
        outbox.unlink()
    assert len(incidents) == UNKNOWN_ERRORS
    assert {row.error_type for row in incidents} == {"unknown"}
    assert {row.strategy for row in incidents} == {"escalate"}
    assert {row.exception_type for row in incidents} == {"builtins.FileExistsError"}
    fingerprints = {row.fingerprint for row in incidents}
    assert len(fingerprints) == 1
    notified = [row for row in incidents if row.admins_notified_at is not None]
    assert len(notified) == 1
    assert len(mails_about(file_exports.mail, fingerprints.pop())) == 1
    # One admin action closes the whole group.
    group = manual_tasks.open_in_groups([incidents[0].fingerprint])
    assert group.count() == UNKNOWN_ERRORS
    assert manual_tasks.close(group, ManualTask.State.RESOLVED) == UNKNOWN_ERRORS


def test_override_connection_to_file(
    fallback_harness: Harness, transactional_db: None, settings: Any
) -> None:
    fallback_harness.apply_settings(settings)
    emulator = fallback_harness.emulator
    assert emulator is not None
    emulator.reset()
    emulator.faults.add("customers", Fault.status(503), times=1)
    try:
        export = wait_export(register(), CustomerExport.State.WRITTEN_TO_FILE)
    finally:
        emulator.faults.clear()
    incident = wait_incident(export, IntegrationLog.Status.RECOVERED)
    assert incident.error_type == "connection"
    assert incident.strategy == "file_fallback"
    assert incident.result.startswith("written to the exchange outbox as contragents_")
    assert Path(export.document_path).is_file()
    assert Path(export.document_path).parent == fallback_harness.outbox


# Delivery guarantees of the worker.


def test_delayed_tasks_per_worker_bounded(exports: Harness) -> None:
    export = wait_export(register(), CustomerExport.State.EXPORTED)
    # Runs of an exported row return at once, so they only occupy ETA slots.
    results = [
        export_customer.apply_async((export.pk,), queue=exports.queue, countdown=3)
        for _ in range(6)
    ]
    inspector = app.control.inspect([exports.worker.name], timeout=1)

    def held() -> int | None:
        scheduled = inspector.scheduled() or {}
        count = len(scheduled.get(exports.worker.name, []))
        return count or None

    count = wait_for(held, "the worker to hold delayed tasks", timeout=10)
    assert 1 <= count <= 3
    for result in results:
        assert result.get(timeout=30) == CustomerExport.State.EXPORTED


def active_task(workers: list[WorkerProcess]) -> tuple[WorkerProcess, dict[str, Any]]:
    """Return the worker running an export task and the task's description."""
    names = [worker.name for worker in workers]

    def find() -> tuple[WorkerProcess, dict[str, Any]] | None:
        active = app.control.inspect(names, timeout=0.5).active() or {}
        for worker in workers:
            for task in active.get(worker.name, []):
                if task["name"] == EXPORT_TASK:
                    return worker, dict(task)
        return None

    return wait_for(find, "an export to start on a worker")


def test_killed_process_export_runs_elsewhere(
    emulator: EmulatorService,
    transactional_db: None,
    settings: Any,
    worker_logs: Path,
    tmp_path: Path,
) -> None:
    queue = f"kill-{run_id()}"
    env = worker_env(
        queue=queue,
        folder=tmp_path,
        emulator=emulator,
        ONEC_HTTP_READ_TIMEOUT_S=str(PATIENT_READ_TIMEOUT_S),
    )
    workers = [
        start_worker(
            f"{queue},{queue}-{label}", worker_logs / f"{queue}-{label}.log", env
        )
        for label in ("a", "b")
    ]
    try:
        settings.INTEGRATION_TASK_QUEUE = queue
        emulator.reset()
        # 1C takes its time, so the export is in the middle of its call.
        emulator.faults.add("customers", Fault.latency(HOLD_MS), times=1)
        export = register()
        running, task = active_task(workers)
        wait_for(lambda: not emulator.faults.pending(), "the call to reach 1C")
        # The message carries the outbox row id only.
        assert task["args"] == [export.pk]
        assert task["kwargs"] == {}
        replies = app.control.cancel_consumer(
            queue, destination=[running.name], reply=True, timeout=2
        )
        assert replies
        os.kill(task["worker_pid"], signal.SIGKILL)

        export = wait_export(export, CustomerExport.State.EXPORTED)
        other = next(worker for worker in workers if worker is not running)
        success = f"[{task['id']}] succeeded"
        # The worker logs the success just after the task's last database write.
        wait_for(
            lambda: success in other.log_path.read_text(errors="replace"),
            "the other worker to log the success",
        )
        key = str(export.idempotency_key)
        # The first call completes in 1C after its caller died.
        wait_for(
            lambda: len(customer_requests(emulator, key)) == 2,
            "both calls to be answered",
        )
        assert len(ledger_rows(emulator, key)) == 1
        customer = B2BCustomer.objects.get(pk=export.customer_id)
        assert customer.onec_id == ledger_rows(emulator, key)[0]["id"]
    finally:
        emulator.faults.clear()
        for worker in workers:
            worker.stop()


# Personal data.


def test_personal_data_stays_in_row(
    exports: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = exports.emulator
    assert emulator is not None
    emulator.faults.add("customers", rejection(), times=1)
    export = wait_export(register(), CustomerExport.State.MANUAL)
    task = ManualTask.objects.get(
        object_ref=f"customers.b2bcustomer:{export.customer_id}"
    )
    # The replay times out once, then succeeds.
    emulator.faults.add("customers", Fault.hang(HANG_S), times=1)
    assert manual_tasks.replay(task)
    wait_export(export, CustomerExport.State.EXPORTED)

    assert IntegrationLog.objects.filter(task_args=[export.pk]).count() == 2
    for row in IntegrationLog.objects.all():
        assert all(isinstance(arg, int) for arg in row.task_args)
    stored = rows_as_text(
        IntegrationLog.objects.all(),
        ManualTask.objects.all(),
        ManualTaskAudit.objects.values("action", "note"),
        PendingRetry.objects.all(),
    )
    assert planted_values_in(stored) == []
    worker_log = exports.worker.log_path.read_text(errors="replace")
    assert "Recovery decision" in worker_log
    # Every worker log of this module so far, of every harness and kill test.
    log_prefixes = (
        "exports-",
        "file-exports-",
        "fallback-exports-",
        "patient-exports-",
        "kill-",
    )
    logs = [
        path
        for path in exports.worker.log_path.parent.iterdir()
        if path.name.startswith(log_prefixes)
    ]
    assert exports.worker.log_path in logs
    for path in logs:
        assert planted_values_in(path.read_text(errors="replace")) == [], path.name
    assert planted_values_in(caplog.text) == []
    for message in read_mails(exports.mail):
        assert planted_values_in(body_of(message)) == []
