"""Client of the HTTP service that 1C publishes for FREESPORT.

::

    from worker.onec import OneCClient

    with OneCClient.from_settings() as client:
        result = client.export_customer(payload, idempotency_key=f"customer-{pk}-v1")
        onec_id = result["id"]

Every failure is one of the ``OneC*`` exceptions of ``freesport.exceptions``;
docs/onec-http-service.md describes the contract and the mapping.
"""

from worker.onec.client import CallGuard, OneCClient
from worker.onec.credentials import (
    CredentialProvider,
    Credentials,
    SettingsCredentials,
    StaticCredentials,
)
from worker.onec.errors import MAX_RETRY_AFTER_S, parse_retry_after
from worker.onec.responses import ExportResult

__all__ = [
    "MAX_RETRY_AFTER_S",
    "CallGuard",
    "CredentialProvider",
    "Credentials",
    "ExportResult",
    "OneCClient",
    "SettingsCredentials",
    "StaticCredentials",
    "parse_retry_after",
]
