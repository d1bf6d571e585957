"""Deactivating goods and offers that a full package no longer contains.

A full package lists every active item, so what it omits left the assortment. Two
guards keep a bad export from emptying the shop: deactivation runs only after every
file of the package imported, and it is held back when it would hide more than
``EXCHANGE_DEACTIVATE_MAX_SHARE`` of the active rows. An operator record then
explains what was held and how to apply it anyway.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from freesport.catalog.models import Offer, Product
from freesport.exchange.models import ExchangeFile, ExchangeSession, ImportProblem

logger = logging.getLogger("worker.imports")


class DeactivationRefused(Exception):
    """The session cannot deactivate anything: it failed, or is still importing."""


def deactivate_missing(
    session: ExchangeSession, *, force: bool = False
) -> dict[str, int]:
    """Deactivate rows a full, finished session did not contain; return counts.

    Keys are ``products`` and ``offers`` for rows deactivated, and
    ``products_held`` or ``offers_held`` for rows held back by the share rule
    (``force`` skips that rule). The content hash of a deactivated row is cleared,
    so the next package that contains it rewrites and reactivates it.
    """
    if session.status == ExchangeSession.Status.FAILED:
        raise DeactivationRefused(
            f"exchange session {session.pk} failed; nothing is deactivated"
        )
    if not session.is_finished:
        raise DeactivationRefused(f"exchange session {session.pk} is still importing")
    files = session.files.filter(status=ExchangeFile.Status.IMPORTED)
    targets: list[tuple[str, type[Product] | type[Offer]]] = []
    if files.filter(full_goods=True).exists():
        targets.append(("products", Product))
    if files.filter(full_offers=True).exists():
        targets.append(("offers", Offer))
    result: dict[str, int] = {}
    for entity, model in targets:
        with transaction.atomic():
            active = model.objects.filter(is_active=True)
            # Rows last seen before this session; a row a later session contained
            # is not missing, whenever this deactivation runs.
            missing = active.filter(
                Q(last_seen_session__lt=session.pk) | Q(last_seen_session__isnull=True)
            )
            total, omitted = active.count(), missing.count()
            share = omitted / total if total else 0.0
            limit = settings.EXCHANGE_DEACTIVATE_MAX_SHARE
            if share > limit and not force:
                result[f"{entity}_held"] = omitted
                _record_held(session, entity, omitted, total, limit)
                continue
            result[entity] = missing.update(is_active=False, content_hash="")
    session.deactivated = result
    session.save(update_fields=["deactivated"])
    logger.info("Exchange session %d deactivation: %s", session.pk, result)
    return result


def _record_held(
    session: ExchangeSession, entity: str, omitted: int, total: int, limit: float
) -> None:
    logger.warning(
        "Exchange session %d: held back deactivation of %d of %d active %s",
        session.pk, omitted, total, entity,
    )  # fmt: skip
    ImportProblem.objects.update_or_create(
        session=session,
        code="deactivation_held",
        element=entity,
        defaults={
            "file": "",
            "action": ImportProblem.Action.HELD,
            "message": (
                f"The full package omits {omitted} of {total} active {entity} "
                f"({omitted / total:.0%}), more than the {limit:.0%} allowed by "
                "EXCHANGE_DEACTIVATE_MAX_SHARE, so none were deactivated. If 1C really "
                "removed them, run `manage.py onec_deactivate "
                f"{session.pk} --force`; otherwise check the export settings in 1C."
            ),
        },
    )
