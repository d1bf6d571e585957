"""Writing one batch of reader records into the catalogue.

Each ``write_*`` function maps a list of records to rows, checks every value, and
writes the rows with bulk upserts. It returns the counts per entity and the
problems found. It changes nothing outside the database (pictures aside, which
are copied idempotently), so the caller can run it in a transaction and retry
record by record if the batch fails.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings

from freesport.catalog import upsert
from freesport.catalog.models import (
    EXTERNAL_ID_LENGTH,
    NAME_LENGTH,
    SKU_LENGTH,
    VALUE_LENGTH,
    Group,
    Offer,
    Picture,
    PriceType,
    Product,
    Property,
    PropertyValue,
    Unit,
    Warehouse,
)
from worker.commerceml.numbers import NumberFormatError, parse_decimal
from worker.commerceml.reader import (
    GroupRecord,
    OfferRecord,
    PriceTypeRecord,
    ProductRecord,
    PropertyRecord,
    UnitRecord,
    WarehouseRecord,
)
from worker.imports.problems import Problem, clamped, skipped

# Largest values the price and quantity columns hold (max_digits minus decimals).
MAX_PRICE = Decimal("999999999999.99")
MAX_QUANTITY = Decimal("999999999999.999")


@dataclass
class BatchResult:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def add(self, entity: str, counts: upsert.Counts, skipped_count: int = 0) -> None:
        row = self.counts.setdefault(
            entity, {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0}
        )
        for key, value in counts.as_dict().items():
            row[key] += value
        row["skipped"] += skipped_count

    def skip(self, entity: str, problem: Problem) -> None:
        self.problems.append(problem)
        self.add(entity, upsert.Counts(), 1)


@dataclass
class BatchContext:
    session_id: int
    # Folder the package's relative paths (``import_files/…``) start from.
    package_root: Path


def _fit(
    value: str,
    length: int,
    result: BatchResult,
    element: str,
    external_id: str,
    line: int,
    what: str,
) -> str:
    """Return ``value`` cut to ``length`` characters, recording a problem if cut."""
    if len(value) <= length:
        return value
    result.problems.append(
        clamped(
            element,
            external_id,
            line,
            "value_too_long",
            f"{what} has {len(value)} characters, more than the {length} the column "
            f"holds; stored the first {length}. Shorten it in 1C.",
        )
    )
    return value[:length]


def _valid_id(
    external_id: str, entity: str, element: str, line: int, result: BatchResult
) -> bool:
    if not external_id:
        result.skip(
            entity,
            skipped(element, "", line, "missing_id", f"{element} without Ид; skipped"),
        )
        return False
    if len(external_id) > EXTERNAL_ID_LENGTH:
        result.skip(
            entity,
            skipped(
                element,
                external_id[:EXTERNAL_ID_LENGTH],
                line,
                "id_too_long",
                f"Ид has {len(external_id)} characters, more than "
                f"{EXTERNAL_ID_LENGTH}; skipped",
            ),
        )
        return False
    return True


def write_groups(records: Sequence[GroupRecord], ctx: BatchContext) -> BatchResult:
    result = BatchResult()
    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        key = record.external_id
        if not _valid_id(key, "groups", "group", record.line, result):
            continue
        rows[key] = {
            "name": _fit(
                record.name,
                NAME_LENGTH,
                result,
                "group",
                key,
                record.line,
                "Наименование",
            ),
            "parent_external_id": record.parent_external_id[:EXTERNAL_ID_LENGTH],
            "is_deleted": record.deleted,
        }
    result.add("groups", upsert.upsert_external(Group, rows, ctx.session_id))
    upsert.resolve_group_parents()
    return result


def write_properties(
    records: Sequence[PropertyRecord], ctx: BatchContext
) -> BatchResult:
    result = BatchResult()
    rows: dict[str, dict[str, Any]] = {}
    values: dict[str, list[tuple[str, str, int]]] = {}
    for record in records:
        key = record.external_id
        if not _valid_id(key, "properties", "property", record.line, result):
            continue
        rows[key] = {
            "name": _fit(
                record.name,
                NAME_LENGTH,
                result,
                "property",
                key,
                record.line,
                "Наименование",
            ),
            "value_type": record.value_type[:50],
            "is_deleted": record.deleted,
        }
        values[key] = [(vid, value, record.line) for vid, value in record.values]
    result.add("properties", upsert.upsert_external(Property, rows, ctx.session_id))
    # One property may describe goods and offers and be listed in both kinds of
    # file. The flag only ever turns on, so the two files do not overwrite it.
    offer_keys = [
        r.external_id for r in records if r.for_offers and r.external_id in rows
    ]
    for part in upsert.chunked(offer_keys):
        Property.objects.filter(external_id__in=part, for_offers=False).update(
            for_offers=True
        )
    _write_property_values(values, result)
    return result


def _write_property_values(
    values: dict[str, list[tuple[str, str, int]]], result: BatchResult
) -> None:
    property_pks = upsert.id_map(Property, values)
    stored: dict[tuple[int, str], str] = {}
    for part in upsert.chunked(list(property_pks.values())):
        for prop, vid, value in PropertyValue.objects.filter(
            property_id__in=part
        ).values_list("property_id", "external_id", "value"):
            stored[(prop, vid)] = value
    counts = upsert.Counts()
    to_write: dict[tuple[int, str], PropertyValue] = {}
    for prop_key, entries in values.items():
        prop = property_pks[prop_key]
        for vid, value, line in entries:
            if len(vid) > EXTERNAL_ID_LENGTH:
                result.skip(
                    "property_values",
                    skipped(
                        "property_value",
                        vid[:EXTERNAL_ID_LENGTH],
                        line,
                        "id_too_long",
                        "ИдЗначения is too long; skipped",
                    ),
                )
                continue
            value = _fit(
                value, VALUE_LENGTH, result, "property_value", vid, line, "Значение"
            )
            previous = stored.get((prop, vid))
            if previous == value:
                counts.unchanged += 1
                continue
            if (prop, vid) in to_write:
                to_write[(prop, vid)].value = value
                continue
            if previous is None:
                counts.created += 1
            else:
                counts.updated += 1
            to_write[(prop, vid)] = PropertyValue(
                property_id=prop, external_id=vid, value=value
            )
    if to_write:
        PropertyValue.objects.bulk_create(
            list(to_write.values()),
            update_conflicts=True,
            unique_fields=["property", "external_id"],
            update_fields=["value"],
        )
    result.add("property_values", counts)


def _simple_writer(
    model: type[upsert.ExternalModel],
    entity: str,
    element: str,
    fields: Callable[[Any, BatchResult], dict[str, Any]],
) -> Callable[[Sequence[Any], BatchContext], BatchResult]:
    def write(records: Sequence[Any], ctx: BatchContext) -> BatchResult:
        result = BatchResult()
        rows: dict[str, dict[str, Any]] = {}
        for record in records:
            if _valid_id(record.external_id, entity, element, record.line, result):
                rows[record.external_id] = fields(record, result)
        result.add(entity, upsert.upsert_external(model, rows, ctx.session_id))
        return result

    return write


write_price_types = _simple_writer(
    PriceType,
    "price_types",
    "price_type",
    lambda r, res: {
        "name": _fit(
            r.name,
            NAME_LENGTH,
            res,
            "price_type",
            r.external_id,
            r.line,
            "Наименование",
        ),
        "currency": _fit(
            r.currency, 10, res, "price_type", r.external_id, r.line, "Валюта"
        ),
        "is_deleted": r.deleted,
    },
)
write_warehouses = _simple_writer(
    Warehouse,
    "warehouses",
    "warehouse",
    lambda r, res: {
        "name": _fit(
            r.name, NAME_LENGTH, res, "warehouse", r.external_id, r.line, "Наименование"
        ),
        "is_deleted": r.deleted,
    },
)
write_units = _simple_writer(
    Unit,
    "units",
    "unit",
    lambda r, res: {
        "name": _fit(
            r.name, 50, res, "unit", r.external_id, r.line, "НаименованиеКраткое"
        ),
        "full_name": _fit(
            r.full_name,
            NAME_LENGTH,
            res,
            "unit",
            r.external_id,
            r.line,
            "НаименованиеПолное",
        ),
        "is_deleted": r.deleted,
    },
)


def write_products(records: Sequence[ProductRecord], ctx: BatchContext) -> BatchResult:
    result = BatchResult()
    group_pks = upsert.id_map(Group, (g for r in records for g in r.group_ids[:1]))
    rows: dict[str, dict[str, Any]] = {}
    pictures: dict[str, list[tuple[str, Path]]] = {}
    for record in records:
        key = record.external_id
        if not _valid_id(key, "products", "product", record.line, result):
            continue
        group_key = record.group_ids[0] if record.group_ids else ""
        line = record.line
        rows[key] = {
            "name": _fit(
                record.name, NAME_LENGTH, result, "product", key, line, "Наименование"
            ),
            "sku": _fit(
                record.sku, SKU_LENGTH, result, "product", key, line, "Артикул"
            ),
            "barcode": _fit(
                record.barcode, 50, result, "product", key, line, "Штрихкод"
            ),
            "description": record.description,
            "group_id": group_pks.get(group_key),
            "group_external_id": group_key[:EXTERNAL_ID_LENGTH],
            "unit_code": _fit(
                record.unit_code, 20, result, "product", key, line, "БазоваяЕдиница"
            ),
            "properties": record.properties,
            "is_deleted": record.deleted,
            "is_active": not record.deleted,
        }
        pictures[key] = _check_pictures(record, ctx.package_root, result)
    picture_paths = {
        key: [path for path, _ in entries] for key, entries in pictures.items()
    }
    counts = upsert.upsert_external(
        Product, rows, ctx.session_id, hash_extra=picture_paths
    )
    result.add("products", counts)
    if counts.written:
        result.add(
            "pictures", _write_pictures({k: pictures[k] for k in counts.written})
        )
    return result


def _check_pictures(
    record: ProductRecord, root: Path, result: BatchResult
) -> list[tuple[str, Path]]:
    """Return the product's usable pictures as ``(path in package, file)``.

    The path is returned with forward slashes, as 1C's Windows-style
    ``import_files\\ab\\x.jpg`` means the same file.
    """
    usable = []
    for path in record.pictures:
        relative = PurePosixPath(path.replace("\\", "/"))
        reason = _picture_problem(relative, root)
        if reason:
            result.problems.append(
                skipped(
                    "picture",
                    record.external_id,
                    record.line,
                    "picture_invalid",
                    f"picture {path[:300]!r} {reason}; the product is imported "
                    "without it",
                )
            )
            result.add("pictures", upsert.Counts(), 1)
            continue
        usable.append((relative.as_posix(), root / relative))
    return usable


def _picture_problem(relative: PurePosixPath, root: Path) -> str | None:
    """Return why a picture path cannot be used, or None if it can."""
    allowed = tuple(settings.CATALOG_PICTURE_EXTENSIONS)
    if relative.is_absolute() or ".." in relative.parts:
        return "points outside the package folder"
    if len(relative.as_posix()) > NAME_LENGTH:
        return f"is longer than the {NAME_LENGTH} characters a picture path may have"
    if relative.suffix.lower() not in allowed:
        suffix = relative.suffix or "(none)"
        return f"has an unsupported format {suffix}; supported: {', '.join(allowed)}"
    try:
        if not (root / relative).is_file():
            return "is missing from the package"
    except OSError as error:  # a name the file system rejects, such as too long
        return f"cannot be opened ({error.strerror})"
    return None


def _write_pictures(pictures: dict[str, list[tuple[str, Path]]]) -> upsert.Counts:
    counts = upsert.Counts()
    product_pks = upsert.id_map(Product, pictures)
    pks = list(product_pks.values())
    for part in upsert.chunked(pks):
        Picture.objects.filter(product_id__in=part).delete()
    media = Path(settings.MEDIA_ROOT)
    rows = []
    for key, entries in pictures.items():
        for position, (path, source) in enumerate(entries):
            stored_name = "catalog/" + path.removeprefix("import_files/")
            _store_picture(source, media / stored_name)
            rows.append(
                Picture(
                    product_id=product_pks[key],
                    path=path,
                    position=position,
                    image=stored_name,
                )
            )
    Picture.objects.bulk_create(rows, ignore_conflicts=True)
    counts.created = len(rows)
    return counts


def _store_picture(source: Path, target: Path) -> None:
    """Put a picture under MEDIA_ROOT unless the same bytes are there already.

    A file uploaded through the exchange is hard-linked, which copies no data;
    the upload code never writes into a linked file, so the media file keeps its
    content. A file from anywhere else (an operator's folder) is copied, so
    that editing either copy later cannot change the other.
    """
    if target.exists():
        if os.path.samefile(source, target) or filecmp.cmp(
            source, target, shallow=False
        ):
            return
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp")
    staging.unlink(missing_ok=True)
    if _inside(source, Path(settings.EXCHANGE_ROOT)):
        try:
            os.link(source, staging)
        except OSError:
            shutil.copyfile(source, staging)  # another file system, or no links
    else:
        shutil.copyfile(source, staging)
    os.replace(staging, target)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _decimal(
    text: str | None,
    element: str,
    key: str,
    line: int,
    result: BatchResult,
    entity: str,
    what: str,
) -> tuple[bool, Decimal | None]:
    """Parse a number; return (ok, value). A failed parse is recorded as skipped."""
    try:
        return True, parse_decimal(text)
    except NumberFormatError:
        result.skip(
            entity,
            skipped(
                element,
                key,
                line,
                "invalid_number",
                f"{what} {text!r} is not a number; the value is skipped",
            ),
        )
        return False, None


def _product_key(offer_id: str, product_pks: dict[str, int]) -> str:
    """Return the 1C id of the offer's product.

    CommerceML 3 writes ``product#characteristic``; CommerceML 2.04 exports may
    list each characteristic as a product of its own with that whole id.
    """
    return offer_id if offer_id in product_pks else offer_id.partition("#")[0]


def write_offers(records: Sequence[OfferRecord], ctx: BatchContext) -> BatchResult:
    result = BatchResult()
    valid = [
        r
        for r in records
        if _valid_id(r.external_id, "offers", "offer", r.line, result)
    ]
    candidates = {r.external_id for r in valid if "#" in r.external_id}
    candidates.update(r.external_id.partition("#")[0] for r in valid)
    product_pks = upsert.id_map(Product, candidates)
    known: list[OfferRecord] = []
    for record in valid:
        product_key = _product_key(record.external_id, product_pks)
        if product_key not in product_pks:
            result.skip(
                "offers",
                skipped(
                    "offer",
                    record.external_id,
                    record.line,
                    "unknown_product",
                    f"product {product_key} is not in the catalogue; the offer, its "
                    "prices and stock are skipped. Send the goods file with it.",
                ),
            )
            continue
        known.append(record)
    offer_pks = _write_offer_rows(known, product_pks, ctx, result)
    _write_offer_prices(known, offer_pks, result)
    _write_offer_stock(known, offer_pks, result)
    return result


def _write_offer_rows(
    records: list[OfferRecord],
    product_pks: dict[str, int],
    ctx: BatchContext,
    result: BatchResult,
) -> dict[str, int]:
    detailed: dict[str, dict[str, Any]] = {}
    bare: dict[str, dict[str, Any]] = {}
    for record in records:
        key = record.external_id
        product = product_pks[_product_key(key, product_pks)]
        if record.has_details:
            characteristics = [
                [
                    name,
                    _fit(
                        value,
                        VALUE_LENGTH,
                        result,
                        "characteristic",
                        key,
                        record.line,
                        f"characteristic {name!r}",
                    ),
                ]
                for name, value in record.characteristics
            ]
            detailed[key] = {
                "product_id": product,
                "name": _fit(
                    record.name,
                    NAME_LENGTH,
                    result,
                    "offer",
                    key,
                    record.line,
                    "Наименование",
                ),
                "sku": _fit(
                    record.sku, SKU_LENGTH, result, "offer", key, record.line, "Артикул"
                ),
                "characteristics": characteristics,
                "is_deleted": record.deleted,
                "is_active": not record.deleted,
            }
        elif key not in detailed:
            bare[key] = {"product_id": product}
    result.add("offers", upsert.upsert_external(Offer, detailed, ctx.session_id))
    # Offers named only in prices or rests: create the missing ones (a bare product
    # id is the product's default offer) and leave existing ones as they are.
    # They are not counted as unchanged: the file carries no offer fields for them.
    existing = upsert.id_map(Offer, bare)
    missing = {k: v for k, v in bare.items() if k not in existing}
    counts = upsert.upsert_external(Offer, missing, ctx.session_id)
    upsert.touch_seen(Offer, list(existing), ctx.session_id)
    for part in upsert.chunked(list(existing)):
        # Deactivated only because a full package omitted them: back on sale.
        Offer.objects.filter(
            external_id__in=part, is_active=False, is_deleted=False
        ).update(is_active=True)
    result.add("offers", counts)
    return upsert.id_map(Offer, (r.external_id for r in records))


def _write_offer_prices(
    records: list[OfferRecord], offer_pks: dict[str, int], result: BatchResult
) -> None:
    if not any(r.prices for r in records):
        return
    type_pks = dict(PriceType.objects.values_list("external_id", "pk"))
    rows: dict[tuple[int, int], tuple[Decimal, str]] = {}
    for record in records:
        key = record.external_id
        for price in record.prices:
            if not price.price_type_id:
                result.skip(
                    "prices",
                    skipped(
                        "price",
                        key,
                        record.line,
                        "missing_price_type",
                        "Цена without ИдТипаЦены; skipped",
                    ),
                )
                continue
            type_pk = type_pks.get(price.price_type_id)
            if type_pk is None:
                result.skip(
                    "prices",
                    skipped(
                        "price",
                        key,
                        record.line,
                        "unknown_price_type",
                        f"price type {price.price_type_id} is not in the catalogue; "
                        "skipped. Send priceLists.xml or ТипыЦен with the package.",
                    ),
                )
                continue
            ok, value = _decimal(
                price.value,
                "price",
                key,
                record.line,
                result,
                "prices",
                "ЦенаЗаЕдиницу",
            )
            if not ok:
                continue
            if value is None:
                continue  # empty or the 1C "no value" sentinel: no price
            if value < 0 or value > MAX_PRICE:
                result.skip(
                    "prices",
                    skipped(
                        "price",
                        key,
                        record.line,
                        "price_out_of_range",
                        f"price {price.value!r} is negative or too large; skipped",
                    ),
                )
                continue
            rows[(offer_pks[key], type_pk)] = (
                value.quantize(Decimal("0.01")),
                price.currency[:10],
            )
    result.add("prices", upsert.upsert_prices(rows))


def _write_offer_stock(
    records: list[OfferRecord], offer_pks: dict[str, int], result: BatchResult
) -> None:
    warehouse_pks: dict[str, int] | None = None
    rows: dict[tuple[int, int], Decimal] = {}
    totals: dict[int, Decimal | None] = {}
    for record in records:
        key = record.external_id
        if record.quantity is not None:
            ok, total = _quantity(record.quantity, "quantity", key, record.line, result)
            if ok:
                totals[offer_pks[key]] = total
        for warehouse, text in record.stock:
            if warehouse_pks is None:
                warehouse_pks = dict(Warehouse.objects.values_list("external_id", "pk"))
            warehouse_pk = warehouse_pks.get(warehouse)
            if warehouse_pk is None:
                result.skip(
                    "stock",
                    skipped(
                        "stock",
                        key,
                        record.line,
                        "unknown_warehouse",
                        f"warehouse {warehouse or '(empty Ид)'} is not in the "
                        "catalogue; "
                        "skipped. Send storages.xml or Склады with the package.",
                    ),
                )
                continue
            ok, quantity = _quantity(text, "stock", key, record.line, result)
            if not ok or quantity is None:
                continue
            rows[(offer_pks[key], warehouse_pk)] = quantity
    result.add("stock", upsert.upsert_stock(rows))
    upsert.update_offer_quantities(totals)


def _quantity(
    text: str, element: str, key: str, line: int, result: BatchResult
) -> tuple[bool, Decimal | None]:
    """Parse a quantity; return (ok, value), value None when absent.

    A negative quantity is clamped to zero and recorded; an unparsable or
    oversized one is skipped and recorded.
    """
    ok, value = _decimal(text, element, key, line, result, "stock", "Количество")
    if not ok or value is None:
        return ok, None
    if value < 0:
        result.problems.append(
            clamped(
                element,
                key,
                line,
                "negative_stock",
                f"quantity {text!r} is negative; stored as 0",
            )
        )
        return True, Decimal(0)
    if value > MAX_QUANTITY:
        result.skip(
            "stock",
            skipped(
                element,
                key,
                line,
                "quantity_out_of_range",
                f"quantity {text!r} is too large; skipped",
            ),
        )
        return False, None
    return True, value.quantize(Decimal("0.001"))


WRITERS: dict[type, Callable[[Sequence[Any], BatchContext], BatchResult]] = {
    GroupRecord: write_groups,
    PropertyRecord: write_properties,
    PriceTypeRecord: write_price_types,
    WarehouseRecord: write_warehouses,
    UnitRecord: write_units,
    ProductRecord: write_products,
    OfferRecord: write_offers,
}
