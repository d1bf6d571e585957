"""Bulk upserts of catalogue rows keyed by their 1C id.

Each function writes one batch and returns how many rows it created, updated and
left unchanged. Rows whose imported fields hash to the stored ``content_hash`` are
not rewritten; only their ``last_seen_session`` moves. New and changed rows go in
one ``INSERT … ON CONFLICT DO UPDATE`` (Django's ``bulk_create`` with
``update_conflicts``), which keeps the local primary key of an existing row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from django.db import models
from django.db.models import OuterRef, Subquery

from freesport.catalog.models import ExternalModel, Group, Offer, Price, Stock

# Rows per IN (...) lookup; stays under SQLite's bound-parameter limit.
LOOKUP_CHUNK = 900


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # 1C ids of the rows this call inserted or rewrote.
    written: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
        }


def content_hash(fields: dict[str, Any]) -> str:
    """Return a stable digest of a row's imported fields."""
    payload = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def chunked(values: Sequence[Any], size: int = LOOKUP_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def existing_hashes(model: type[ExternalModel], keys: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in chunked(keys):
        found.update(
            model._default_manager.filter(external_id__in=part).values_list(
                "external_id", "content_hash"
            )
        )
    return found


def id_map(model: type[models.Model], keys: Iterable[str]) -> dict[str, int]:
    """Return ``{external_id: pk}`` for the given 1C ids that exist."""
    unique = list(dict.fromkeys(keys))
    found: dict[str, int] = {}
    for part in chunked(unique):
        found.update(
            model._default_manager.filter(external_id__in=part).values_list(
                "external_id", "pk"
            )
        )
    return found


def upsert_external(
    model: type[ExternalModel],
    rows: dict[str, dict[str, Any]],
    session_id: int,
    hash_extra: dict[str, Any] | None = None,
) -> Counts:
    """Insert or update ``rows`` (``{external_id: fields}``) of an ExternalModel.

    ``hash_extra`` adds data kept outside the row (a product's picture list) to the
    digest, so a change there also counts as an update.
    """
    counts = Counts()
    if not rows:
        return counts
    keys = list(rows)
    stored = existing_hashes(model, keys)
    to_write: list[ExternalModel] = []
    unchanged: list[str] = []
    for key, fields in rows.items():
        digest = content_hash(
            {**fields, "+": hash_extra.get(key)} if hash_extra else fields
        )
        previous = stored.get(key)
        if previous == digest:
            unchanged.append(key)
            continue
        if previous is None:
            counts.created += 1
        else:
            counts.updated += 1
        counts.written.append(key)
        to_write.append(
            model(
                external_id=key,
                content_hash=digest,
                last_seen_session=session_id,
                **fields,
            )
        )
    counts.unchanged = len(unchanged)
    if to_write:
        update_fields = [
            *next(iter(rows.values())),
            "content_hash",
            "last_seen_session",
        ]
        update_fields.append("updated_at")
        model._default_manager.bulk_create(
            to_write,
            update_conflicts=True,
            unique_fields=["external_id"],
            update_fields=update_fields,
        )
    touch_seen(model, unchanged, session_id)
    return counts


def touch_seen(
    model: type[ExternalModel], keys: Sequence[str], session_id: int
) -> None:
    """Record that the rows were present in this session's package."""
    for part in chunked(keys):
        model._default_manager.filter(external_id__in=part).update(
            last_seen_session=session_id
        )


def resolve_group_parents() -> None:
    """Point each group at its parent by 1C id once both rows exist."""
    parent_pk = Group.objects.filter(external_id=OuterRef("parent_external_id")).values(
        "pk"
    )
    Group.objects.exclude(parent_external_id="").update(parent=Subquery(parent_pk[:1]))
    Group.objects.filter(parent_external_id="", parent__isnull=False).update(
        parent=None
    )


def upsert_prices(rows: dict[tuple[int, int], tuple[Decimal, str]]) -> Counts:
    """Write prices keyed by ``(offer pk, price type pk)``."""
    return _upsert_offer_rows(Price, "price_type", ("value", "currency"), rows)


def upsert_stock(rows: dict[tuple[int, int], Decimal]) -> Counts:
    """Write stock keyed by ``(offer pk, warehouse pk)``."""
    values = {key: (quantity,) for key, quantity in rows.items()}
    return _upsert_offer_rows(Stock, "warehouse", ("quantity",), values)


OfferRow = TypeVar("OfferRow", Price, Stock)


def _upsert_offer_rows(
    model: type[OfferRow],
    other: str,
    fields: tuple[str, ...],
    rows: dict[tuple[int, int], tuple[Any, ...]],
) -> Counts:
    """Write rows unique on ``(offer, other)``, skipping those stored unchanged."""
    counts = Counts()
    if not rows:
        return counts
    offer_ids = list({offer for offer, _ in rows})
    stored: dict[tuple[int, int], tuple[Any, ...]] = {}
    for part in chunked(offer_ids):
        for offer, key, *values in model._default_manager.filter(
            offer_id__in=part
        ).values_list("offer_id", f"{other}_id", *fields):
            stored[(offer, key)] = tuple(values)
    to_write: list[OfferRow] = []
    for (offer, key), values in rows.items():
        previous = stored.get((offer, key))
        if previous == values:
            counts.unchanged += 1
            continue
        if previous is None:
            counts.created += 1
        else:
            counts.updated += 1
        to_write.append(
            model(
                offer_id=offer,
                **{f"{other}_id": key},
                **dict(zip(fields, values, strict=True)),
            )
        )
    if to_write:
        model._default_manager.bulk_create(
            to_write,
            update_conflicts=True,
            unique_fields=["offer", other],
            update_fields=[*fields, "updated_at"],
        )
    return counts


def update_offer_quantities(rows: dict[int, Decimal | None]) -> None:
    """Set ``Offer.quantity`` (the warehouse-less total) where it changed."""
    if not rows:
        return
    changed = []
    for part in chunked(list(rows)):
        for pk, quantity in Offer.objects.filter(pk__in=part).values_list(
            "pk", "quantity"
        ):
            if quantity != rows[pk]:
                changed.append(Offer(pk=pk, quantity=rows[pk]))
    if changed:
        Offer.objects.bulk_update(changed, ["quantity"], batch_size=LOOKUP_CHUNK)
