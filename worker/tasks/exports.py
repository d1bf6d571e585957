"""Celery tasks that export shop records to 1C, and the functions they call.

``export_customer(export_id)`` takes the id of a ``CustomerExport`` outbox row,
sends the customer to 1C's HTTP service with the row's Idempotency-Key, stores
1C's id and marks the row exported. Failures go through the recovery
dispatcher (``worker.recovery``). With no 1C HTTP service configured
(``ONEC_HTTP_URL`` empty), the customer is written to the exchange outbox as a
CommerceML ``Контрагенты`` document instead.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from freesport.customers import services
from freesport.customers.models import B2BCustomer, CustomerExport
from freesport.exceptions import FreesportError
from freesport.integration.choices import ErrorKind, Operation
from freesport.integration.manual_tasks import object_reference
from worker.commerceml.writer import Counterparty, counterparties_document
from worker.onec import OneCClient
from worker.recovery.decisions import Decision, Failure, Outcome, Target
from worker.recovery.fallback import write_outbox_document
from worker.recovery.task import IntegrationTask

logger = logging.getLogger("worker.tasks")

# 1C's error code for an Idempotency-Key sent again with another body.
KEY_REUSED_CODE = "IDEMPOTENCY_KEY_REUSED"
OUTBOX_STATES = {
    Outcome.SKIPPED: CustomerExport.State.SKIPPED,
    Outcome.MANUAL: CustomerExport.State.MANUAL,
    Outcome.ESCALATED: CustomerExport.State.MANUAL,
}


def load_export(export_id: int) -> CustomerExport:
    return CustomerExport.objects.select_related("customer").get(pk=export_id)


def idempotency_key_for(export: CustomerExport, payload: dict[str, Any]) -> str:
    """Return the key to send ``payload`` with, after a new one if it must change.

    1C accepts a key again only with the same body. When an operator edited the
    customer after 1C rejected it (or after the site's checks did), no record
    exists under the old key, so the edited body gets a new key. After any other
    failure 1C may keep the old body under the key, so the key stays and 1C
    rejects a changed body with IDEMPOTENCY_KEY_REUSED, which opens a manual task.
    """
    digest = services.payload_digest(payload)
    rejected = export.last_error_type == ErrorKind.VALIDATION or (
        export.last_error_type == ErrorKind.BUSINESS
        and export.last_error_code != KEY_REUSED_CODE
    )
    fields = ["payload_sha256", "updated_at"]
    if export.payload_sha256 and export.payload_sha256 != digest and rejected:
        export.idempotency_key = uuid.uuid4()
        fields.append("idempotency_key")
        logger.info(
            "Customer export %d: new Idempotency-Key for the edited customer",
            export.pk,
        )
    if export.payload_sha256 != digest or "idempotency_key" in fields:
        export.payload_sha256 = digest
        export.save(update_fields=fields)
    return str(export.idempotency_key)


def write_customer_document(export: CustomerExport) -> Path:
    """Write the customer as a ``Контрагенты`` document to the exchange outbox."""
    customer = export.customer
    counterparty = Counterparty(
        id=str(customer.uuid),
        name=customer.company_name,
        official_name=customer.company_name,
        inn=customer.inn,
        kpp=customer.kpp,
        legal_address=customer.legal_address,
        contact_person=customer.contact_person,
        phone=customer.phone,
        email=customer.email,
    )
    data = counterparties_document(
        [counterparty], version=settings.EXCHANGE_OUTBOX_COMMERCEML_VERSION
    )
    document = write_outbox_document(
        operation=Operation.EXPORT_CUSTOMERS,
        object_ref=object_reference(customer),
        file_name=f"contragents_{customer.uuid}.xml",
        data=data,
    )
    CustomerExport.objects.filter(pk=export.pk).update(
        state=CustomerExport.State.WRITTEN_TO_FILE,
        document_path=document.path,
        finished_at=timezone.now(),
        updated_at=timezone.now(),
    )
    logger.info(
        "Customer export %d written to the exchange outbox as %s",
        export.pk,
        Path(document.path).name,
    )
    return Path(document.path)


def run_customer_export(export_id: int) -> str:
    """Export one outbox row's customer to 1C and return the row's final state.

    A row that is already done returns at once, so a message delivered twice
    exports once. Raises the client's ``OneC*`` errors and Django's
    ``ValidationError`` for a customer that fails the site's own checks.
    """
    export = load_export(export_id)
    if export.is_done:
        return export.state
    CustomerExport.objects.filter(pk=export.pk).update(
        attempts=F("attempts") + 1, updated_at=timezone.now()
    )
    if not OneCClient.is_configured():
        write_customer_document(export)
        return CustomerExport.State.WRITTEN_TO_FILE

    customer = export.customer
    customer.full_clean()
    payload = services.export_payload(customer)
    key = idempotency_key_for(export, payload)
    with OneCClient.from_settings() as client:
        result = client.export_customer(payload, idempotency_key=key)
    now = timezone.now()
    with transaction.atomic():
        B2BCustomer.objects.filter(pk=customer.pk).update(
            onec_id=result["id"], updated_at=now
        )
        CustomerExport.objects.filter(pk=export.pk).update(
            state=CustomerExport.State.EXPORTED,
            last_error_type="",
            last_error_code="",
            finished_at=now,
            updated_at=now,
        )
    logger.info(
        "Customer export %d: 1C %s customer %d as %s",
        export.pk, result["status"], customer.pk, result["id"],
    )  # fmt: skip
    return CustomerExport.State.EXPORTED


def error_code(error: BaseException) -> str:
    if not isinstance(error, FreesportError):
        return ""
    return str(error.details.get("onec_code") or error.code)


class CustomerExportTask(IntegrationTask):
    """Recovery hooks of ``export_customer``: the customer, a refresh, a file."""

    operation = Operation.EXPORT_CUSTOMERS

    def describe_target(self, export_id: int) -> Target:
        customer = load_export(export_id).customer
        return Target(
            object_ref=object_reference(customer),
            content_object=customer,
            personal_values=tuple(customer.personal_values()),
        )

    def export_id(self) -> int:
        """Return the outbox row id the current run was called with."""
        (export_id,) = self.request.args or ()
        return int(export_id)

    def refresh_credentials(self) -> None:
        with OneCClient.from_settings() as client:
            client.refresh_credentials()

    def write_fallback_document(self, failure: Failure) -> Path:
        return write_customer_document(load_export(self.export_id()))

    def on_recovery(self, failure: Failure, decision: Decision) -> None:
        export_id = self.export_id()
        changes: dict[str, Any] = {
            "last_error_type": failure.kind,
            "last_error_code": error_code(failure.error)[:100],
            "updated_at": timezone.now(),
        }
        state = OUTBOX_STATES.get(decision.outcome)
        if state is not None:
            changes["state"] = state
        CustomerExport.objects.filter(pk=export_id).exclude(
            state__in=CustomerExport.DONE
        ).update(**changes)


@shared_task(
    bind=True, base=CustomerExportTask, name="worker.tasks.exports.export_customer"
)
def export_customer(self: CustomerExportTask, export_id: int) -> str:
    return run_customer_export(export_id)


@shared_task(name="worker.tasks.exports.send_unsent_customer_exports")
def send_unsent_customer_exports() -> int:
    """Send the tasks of exports whose sending failed when they were registered."""
    grace = timedelta(seconds=settings.CUSTOMER_EXPORT_UNSENT_AFTER_S)
    sent = 0
    for export_id in services.unsent_exports(grace):
        sent += services.send_export(export_id)
    if sent:
        logger.warning("Sent %d customer exports that were never sent", sent)
    return sent
