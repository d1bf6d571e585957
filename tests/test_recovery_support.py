"""Workers, the 1C emulator and mail reading for the recovery tests (no tests here).

Worker processes read their settings from the environment, so each harness
starts its own ``celery worker`` on its own queue with the environment it needs.
That is tiny backoff values, the emulator's URL, a file-based e-mail backend
whose folder the tests read, and an exchange outbox of its own.
"""

from __future__ import annotations

import email
import email.header
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings

from freesport.customers.models import CustomerExport
from freesport.integration.models import IntegrationLog
from onec_emulator.service import EmulatorService
from tests.conftest import WorkerProcess

T = TypeVar("T")

EXPORT_TASK = "worker.tasks.exports.export_customer"
# Personal data of the customer every test registers. None of it may appear in
# logs, integration log rows, manual tasks, e-mails or task arguments.
PLANTED = {
    "company_name": "ООО «Тайга-Спорт Планта»",
    "inn": "7707083893",
    "kpp": "770701001",
    "legal_address": "125009, Москва, ул. Плантационная, д. 17",
    "contact_person": "Евдокимова Аглая Тихоновна",
    "phone": "+7 (916) 555-12-34",
    "email": "aglaya.evdokimova@taiga-planta.example",
}
# Values searched for in captured text: each field as written, and the phone's
# digits, which a formatter could print without the separators.
PLANTED_NEEDLES = (*PLANTED.values(), "9165551234", "Евдокимова", "Аглая")
# Backoff and limits passed to the test workers, in the settings' units.
RETRY_BASE_S = 0.2
RETRY_CAP_S = 0.5
MAX_ATTEMPTS = 4
MAX_COUNTDOWN_S = 3.0
ETA_TASK_LIMIT = 3
READ_TIMEOUT_S = 0.5
ADMIN_ADDRESS = "ops@freesport.example"
WAIT_TIMEOUT_S = 60.0


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_worker(
    queue: str, log_path: Path, env: Mapping[str, str], *, concurrency: int = 2
) -> WorkerProcess:
    """Start a worker with ``env`` on ``queue`` and wait until it answers a ping.

    ``WorkerProcess`` names a worker after its queue argument. Two workers on
    one queue therefore get a comma-separated list with a second queue of
    their own, such as "exports,exports-a".
    """
    with environment(env):
        worker = WorkerProcess(queue, log_path, concurrency=concurrency)
    try:
        worker.wait_ready()
    except BaseException:
        worker.stop()
        raise
    return worker


def worker_env(
    *,
    queue: str,
    folder: Path,
    emulator: EmulatorService | None,
    **extra: str,
) -> dict[str, str]:
    """Return the environment of a test worker; ``emulator=None``: no 1C service."""
    env = {
        "INTEGRATION_TASK_QUEUE": queue,
        "RECOVERY_RETRY_BASE_S": str(RETRY_BASE_S),
        "RECOVERY_RETRY_CAP_S": str(RETRY_CAP_S),
        "RECOVERY_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "RECOVERY_MAX_COUNTDOWN_S": str(MAX_COUNTDOWN_S),
        "RECOVERY_STRATEGY_OVERRIDES": "{}",
        "CELERY_WORKER_ETA_TASK_LIMIT": str(ETA_TASK_LIMIT),
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(folder / "mail"),
        "DJANGO_ADMINS": f"Operations <{ADMIN_ADDRESS}>",
        "EXCHANGE_OUTBOX_DIR": str(folder / "outbox"),
        "ONEC_HTTP_URL": "",
        "ONEC_HTTP_USER": "",
        "ONEC_HTTP_PASSWORD": "",
        "ONEC_HTTP_TOKEN_URL": "",
        "ONEC_HTTP_CONNECT_TIMEOUT_S": "1",
        "ONEC_HTTP_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
    }
    if emulator is not None:
        env["ONEC_HTTP_URL"] = emulator.url
        env["ONEC_HTTP_USER"] = emulator.user
        env["ONEC_HTTP_PASSWORD"] = emulator.password
        if emulator.state.token_auth:
            env["ONEC_HTTP_TOKEN_URL"] = emulator.token_url
    env.update(extra)
    return env


@dataclass
class Harness:
    """A worker on its own queue, with its outbox and mail folders."""

    worker: WorkerProcess
    queue: str
    folder: Path
    emulator: EmulatorService | None

    @property
    def outbox(self) -> Path:
        return self.folder / "outbox"

    @property
    def mail(self) -> Path:
        return self.folder / "mail"

    def apply_settings(self, test_settings: Any) -> None:
        """Point the test process's settings at this harness's queue and folders."""
        test_settings.INTEGRATION_TASK_QUEUE = self.queue
        test_settings.EXCHANGE_OUTBOX_DIR = self.outbox
        test_settings.RECOVERY_MAX_COUNTDOWN_S = MAX_COUNTDOWN_S


def wait_for(
    check: Callable[[], T | None], what: str, timeout: float = WAIT_TIMEOUT_S
) -> T:
    """Poll ``check`` until it returns a true value; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_export(export: CustomerExport, *states: str) -> CustomerExport:
    """Wait until the outbox row reaches one of ``states``; return it fresh."""

    def reached() -> CustomerExport | None:
        export.refresh_from_db()
        return export if export.state in states else None

    return wait_for(reached, f"export {export.pk} to become {' or '.join(states)}")


def wait_incident(
    export: CustomerExport, *statuses: str, task_id: str | None = None
) -> IntegrationLog:
    """Wait until the export's integration log row has one of ``statuses``."""
    object_ref = f"customers.b2bcustomer:{export.customer_id}"

    def settled() -> IntegrationLog | None:
        rows = IntegrationLog.objects.filter(object_ref=object_ref)
        if task_id is not None:
            rows = rows.filter(task_id=task_id)
        row = rows.order_by("-pk").first()
        return row if row is not None and row.status in statuses else None

    return wait_for(settled, f"integration log of export {export.pk} in {statuses}")


def read_mails(folder: Path) -> list[Message]:
    """Parse every e-mail the file-based backend wrote into ``folder``."""
    messages: list[Message] = []
    if not folder.is_dir():
        return messages
    # The backend ends each message with a line of 79 dashes.
    separator = b"\n" + b"-" * 79 + b"\n"
    for path in sorted(folder.iterdir()):
        for chunk in path.read_bytes().split(separator):
            if chunk.strip():
                messages.append(email.message_from_bytes(chunk.strip()))
    return messages


def subject_of(message: Message) -> str:
    return str(email.header.make_header(email.header.decode_header(message["Subject"])))


def body_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(message.get_content_charset() or "utf-8")


def mails_about(folder: Path, fingerprint: str) -> list[Message]:
    """Return the e-mails whose subject names the error group ``fingerprint``."""
    return [m for m in read_mails(folder) if fingerprint[:12] in subject_of(m)]


def clear_escalation_limits() -> None:
    """Forget which error groups were mailed, so each test starts unmailed."""
    from worker.recovery import escalation

    client = escalation.redis_client(settings.REDIS_URL)
    keys = list(client.scan_iter(match=escalation.KEY_PREFIX + "*"))
    if keys:
        client.delete(*keys)


def rows_as_text(*querysets: Any) -> str:
    """Dump rows as JSON text, to search them for planted values."""
    rows = [list(queryset.values()) for queryset in querysets]
    return json.dumps(rows, default=str, ensure_ascii=False)


def planted_values_in(text: str) -> list[str]:
    """Return the planted values that ``text`` contains (case-insensitive)."""
    lowered = text.lower()
    return [value for value in PLANTED_NEEDLES if value.lower() in lowered]
