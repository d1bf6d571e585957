"""B2B customers registered in the shop and their export to 1C.

``CustomerExport`` is the outbox row: it is created in the same transaction as
the customer, so a registration that commits is always exported, and it carries
the Idempotency-Key that lets 1C recognise a repeated export.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from freesport.customers.validators import validate_inn, validate_kpp

LEGAL_ENTITY_INN_LENGTH = 10


class B2BCustomer(models.Model):
    """A company (or an individual entrepreneur) buying wholesale."""

    # Fields an operator may correct before retrying a failed export.
    MANUAL_TASK_EDITABLE_FIELDS: ClassVar[tuple[str, ...]] = (
        "company_name",
        "inn",
        "kpp",
        "legal_address",
        "contact_person",
        "phone",
        "email",
    )

    # The customer's Ид in CommerceML documents and its id in 1C's payloads.
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    company_name = models.CharField(_("company name"), max_length=255)
    inn = models.CharField(_("ИНН"), max_length=12, validators=[validate_inn])
    kpp = models.CharField(
        _("КПП"), max_length=9, blank=True, validators=[validate_kpp]
    )
    legal_address = models.CharField(_("legal address"), max_length=500)
    contact_person = models.CharField(_("contact person"), max_length=255)
    phone = models.CharField(_("phone"), max_length=32)
    email = models.EmailField(_("e-mail"))
    # 1C's reference, stored once 1C accepted the customer.
    onec_id = models.CharField(_("1C id"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("registered"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("B2B customer")
        verbose_name_plural = _("B2B customers")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        # Admin lists and logs show the id only: the name is personal data.
        return f"B2B customer #{self.pk}"

    def clean(self) -> None:
        super().clean()
        if len(self.inn) == LEGAL_ENTITY_INN_LENGTH and not self.kpp:
            raise ValidationError(
                {
                    "kpp": ValidationError(
                        _("A company with a 10-digit ИНН needs a КПП."),
                        code="kpp_required",
                    )
                }
            )
        if len(self.inn) != LEGAL_ENTITY_INN_LENGTH and self.kpp:
            raise ValidationError(
                {
                    "kpp": ValidationError(
                        _("An entrepreneur with a 12-digit ИНН has no КПП."),
                        code="kpp_not_allowed",
                    )
                }
            )

    def personal_values(self) -> list[Any]:
        """Return the values that logs and error records must never contain."""
        return [
            self.company_name,
            self.inn,
            self.kpp,
            self.legal_address,
            self.contact_person,
            self.phone,
            self.email,
        ]


class CustomerExport(models.Model):
    """Outbox row: one export of a customer to 1C, its state and attempts."""

    class State(models.TextChoices):
        PENDING = "pending", _("pending")
        EXPORTED = "exported", _("exported to 1C")
        WRITTEN_TO_FILE = "written_to_file", _("written to the exchange outbox")
        MANUAL = "manual", _("waiting for an operator")
        SKIPPED = "skipped", _("skipped")

    DONE = (State.EXPORTED, State.WRITTEN_TO_FILE)

    customer = models.ForeignKey(
        B2BCustomer, on_delete=models.CASCADE, related_name="exports"
    )
    state = models.CharField(
        _("state"), max_length=20, choices=State.choices, default=State.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    idempotency_key = models.UUIDField(
        _("Idempotency-Key"), default=uuid.uuid4, unique=True
    )
    # SHA-256 of the payload last sent with idempotency_key, because 1C accepts
    # a key again only with the same body.
    payload_sha256 = models.CharField(max_length=64, blank=True)
    last_error_type = models.CharField(_("last error type"), max_length=30, blank=True)
    # Error code of the last failure: the project's own, or 1C's from its body.
    last_error_code = models.CharField(_("last error code"), max_length=100, blank=True)
    document_path = models.CharField(_("outbox document"), max_length=1000, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("customer export")
        verbose_name_plural = _("customer exports")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "created_at"])]

    def __str__(self) -> str:
        return f"export #{self.pk} of customer {self.customer_id} ({self.state})"

    @property
    def is_done(self) -> bool:
        return self.state in self.DONE
