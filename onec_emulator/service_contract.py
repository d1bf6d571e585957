"""The contract endpoints of the 1C HTTP service emulator, without HTTP mechanics.

Each endpoint is a function from the request to a ``Reply``; the request handler
sends it. docs/onec-http-service.md describes the contract these functions
follow. Error bodies are ``{"code": "...", "message": "..."}`` and never repeat
a value from the request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from onec_emulator.service_state import EmulatorState, IdempotencyKeyReused

MAX_IDEMPOTENCY_KEY_LENGTH = 255
# A legal entity's ИНН has 10 digits, an individual entrepreneur's 12.
INN_PATTERN = re.compile(r"^(?:[0-9]{10}|[0-9]{12})$")
# КПП: tax office code (4 digits), reason code (2 digits or capital Latin
# letters), then a 3-digit sequence number.
KPP_PATTERN = re.compile(r"^[0-9]{4}[0-9A-Z]{2}[0-9]{3}$")
DECIMAL_PATTERN = re.compile(r"^-?[0-9]+(?:\.[0-9]{1,2})?$")
CUSTOMER_TEXT_FIELDS = ("shop_customer_id", "company_name", "inn", "legal_address")
CONTACT_TEXT_FIELDS = ("name", "email", "phone")
ORDER_TEXT_FIELDS = ("shop_order_id", "customer_id", "created_at", "currency")


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


class ContractError(Exception):
    """A request the contract rejects, with the status and error code to send."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def reply(self) -> Reply:
        return Reply(
            self.status, {"code": self.code, "message": self.message}, self.headers
        )


@dataclass(frozen=True)
class ContractRequest:
    method: str
    body: bytes
    content_type: str
    idempotency_key: str | None


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ContractError(
            400, "INVALID_JSON", "The request body is not valid UTF-8 JSON."
        ) from err
    if not isinstance(payload, dict):
        raise ContractError(
            400, "INVALID_JSON", "The request body is not a JSON object."
        )
    return payload


def require_idempotency_key(value: str | None) -> str:
    if not value:
        raise ContractError(
            400,
            "IDEMPOTENCY_KEY_MISSING",
            "Send an Idempotency-Key header with every POST.",
        )
    visible_ascii = all("!" <= char <= "~" for char in value)
    if len(value) > MAX_IDEMPOTENCY_KEY_LENGTH or not visible_ascii:
        raise ContractError(
            400,
            "IDEMPOTENCY_KEY_INVALID",
            f"The Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} visible "
            "ASCII characters.",
        )
    return value


def require_text(payload: Mapping[str, Any], name: str, prefix: str = "") -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ContractError(
            422, "VALIDATION_ERROR", f"Field {prefix}{name} is missing or empty."
        )
    return value


def validate_customer(payload: dict[str, Any]) -> None:
    for name in CUSTOMER_TEXT_FIELDS:
        require_text(payload, name)
    inn = payload["inn"]
    if not INN_PATTERN.match(inn):
        raise ContractError(422, "INN_INVALID", "Field inn must have 10 or 12 digits.")
    kpp = payload.get("kpp")
    if len(inn) == 10 and not (isinstance(kpp, str) and KPP_PATTERN.match(kpp)):
        raise ContractError(
            422,
            "KPP_INVALID",
            "Field kpp must have 9 characters for a legal entity (10-digit inn).",
        )
    contact = payload.get("contact")
    if contact is None:
        return
    if not isinstance(contact, dict):
        raise ContractError(422, "VALIDATION_ERROR", "Field contact must be an object.")
    for name in CONTACT_TEXT_FIELDS:
        if name in contact and not isinstance(contact[name], str):
            raise ContractError(
                422, "VALIDATION_ERROR", f"Field contact.{name} must be a string."
            )


def validate_order(payload: dict[str, Any]) -> None:
    for name in ORDER_TEXT_FIELDS:
        require_text(payload, name)
    items = payload.get("items")
    if not isinstance(items, list) or not items:
        raise ContractError(
            422, "VALIDATION_ERROR", "Field items must be a non-empty list."
        )
    for index, item in enumerate(items):
        prefix = f"items[{index}]."
        if not isinstance(item, dict):
            raise ContractError(
                422, "VALIDATION_ERROR", f"Field items[{index}] must be an object."
            )
        require_text(item, "sku", prefix)
        quantity = item.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise ContractError(
                422,
                "VALIDATION_ERROR",
                f"Field {prefix}quantity must be a positive integer.",
            )
        if not DECIMAL_PATTERN.match(require_text(item, "price", prefix)):
            raise ContractError(
                422,
                "VALIDATION_ERROR",
                f"Field {prefix}price must be a decimal string.",
            )
    if not DECIMAL_PATTERN.match(require_text(payload, "total")):
        raise ContractError(
            422, "VALIDATION_ERROR", "Field total must be a decimal string."
        )


def ping(state: EmulatorState, request: ContractRequest) -> Reply:
    return Reply(200, {"status": "ok", "service": "freesport", "version": "1"})


def export(
    endpoint: str, validate: Callable[[dict[str, Any]], None]
) -> Callable[[EmulatorState, ContractRequest], Reply]:
    """Build the handler of an export endpoint that records into the ledger."""

    def handle(state: EmulatorState, request: ContractRequest) -> Reply:
        key = require_idempotency_key(request.idempotency_key)
        payload = parse_json_object(request.body)
        validate(payload)
        try:
            row, created = state.ledger.accept(endpoint, key, payload)
        except IdempotencyKeyReused as err:
            raise ContractError(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "This Idempotency-Key was already used with a different body.",
            ) from err
        if created:
            return Reply(201, {"id": row["id"], "status": "created"})
        return Reply(200, {"id": row["id"], "status": "exists"})

    return handle


def token(state: EmulatorState, request: ContractRequest) -> Reply:
    """Issue a bearer token; the caller already checked HTTP Basic auth."""
    form = parse_qs(request.body.decode("utf-8", errors="replace"))
    if form.get("grant_type") != ["client_credentials"]:
        raise ContractError(
            400,
            "UNSUPPORTED_GRANT_TYPE",
            "Send grant_type=client_credentials as a form field.",
        )
    access_token = state.credentials.issue_token()
    body = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": state.credentials.token_ttl_s,
    }
    return Reply(200, body, {"Cache-Control": "no-store"})


class Route(NamedTuple):
    method: str
    handle: Callable[[EmulatorState, ContractRequest], Reply]


CONTRACT_ROUTES: dict[str, Route] = {
    "ping": Route("GET", ping),
    "customers": Route("POST", export("customers", validate_customer)),
    "orders": Route("POST", export("orders", validate_order)),
    "token": Route("POST", token),
}
