"""Registration of B2B customers and what their export to 1C sends."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from freesport.customers.models import B2BCustomer, CustomerExport

logger = logging.getLogger("freesport.customers")


def register_b2b_customer(
    *,
    company_name: str,
    inn: str,
    kpp: str = "",
    legal_address: str,
    contact_person: str,
    phone: str,
    email: str,
) -> B2BCustomer:
    """Validate and save a B2B customer together with its export outbox row.

    The export task is sent once the transaction commits. Raises Django's
    ``ValidationError`` for invalid fields, and then nothing is saved.
    """
    customer = B2BCustomer(
        company_name=company_name.strip(),
        inn=inn.strip(),
        kpp=kpp.strip(),
        legal_address=legal_address.strip(),
        contact_person=contact_person.strip(),
        phone=phone.strip(),
        email=email.strip(),
    )
    customer.full_clean()
    with transaction.atomic():
        customer.save()
        export = CustomerExport.objects.create(customer=customer)
        transaction.on_commit(lambda: send_export(export.pk))
    logger.info("Registered B2B customer %d, export %d queued", customer.pk, export.pk)
    return customer


def send_export(export_id: int) -> bool:
    """Send the export task for an outbox row, or return False if the broker is down.

    A row whose task could not be sent stays pending with no attempts, and the
    ``send_unsent_customer_exports`` beat job sends it later.
    """
    from worker.tasks.exports import export_customer

    try:
        export_customer.apply_async(
            (export_id,), queue=settings.INTEGRATION_TASK_QUEUE or None
        )
    except OperationalError as error:
        logger.warning(
            "Could not send the task of customer export %d (%s), so the beat job "
            "will send it",
            export_id,
            type(error).__name__,
        )
        return False
    return True


def unsent_exports(grace: timedelta) -> list[int]:
    """Return ids of pending exports that never ran and are older than ``grace``."""
    cutoff = timezone.now() - grace
    return list(
        CustomerExport.objects.filter(
            state=CustomerExport.State.PENDING, attempts=0, created_at__lt=cutoff
        ).values_list("pk", flat=True)
    )


def export_payload(customer: B2BCustomer) -> dict[str, Any]:
    """Build the body of POST /customers of the 1C HTTP service."""
    payload: dict[str, Any] = {
        "shop_customer_id": str(customer.uuid),
        "company_name": customer.company_name,
        "inn": customer.inn,
        "legal_address": customer.legal_address,
        "contact": {
            "name": customer.contact_person,
            "email": customer.email,
            "phone": customer.phone,
        },
    }
    if customer.kpp:
        payload["kpp"] = customer.kpp
    return payload


def payload_digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
