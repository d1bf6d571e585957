"""Streaming reader for CommerceML 2.03 to 3.1 catalogue files.

The reader walks a file once with ``lxml.etree.iterparse`` and yields one record per
item (group, property, price type, warehouse, unit, product, offer). Each item
element is cleared as soon as it is read, so memory stays flat whatever the file
size. Elements are matched by local name, so every namespace 1C has used works:
none, ``urn:1C.ru:commerceml2``, ``urn:1C.ru:commerceml_2``,
``urn:1C.ru:commerceml_210`` and ``urn:1C.ru:commerceml_3``.

Values are returned as the text 1C wrote. Converting numbers and checking lengths
is the importer's job, so that it can record each problem with its context.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lxml import etree

# Local names of the elements that start an item the reader yields.
ITEM_TAGS = (
    "Группа",
    "Свойство",
    "ТипЦены",
    "Склад",
    "ЕдиницаИзмерения",
    "Товар",
    "Предложение",
)
# Sections whose start is reported, so the importer can flush and read headers.
SECTION_TAGS = ("Классификатор", "Каталог", "ПакетПредложений", "Товары", "Предложения")
# Elements whose own children include item tags that are not items of a section:
# a ``Товар`` inside an order document, a ``Склад`` inside an offer's stock.
CONTAINER_TAGS = ("Документ", "Контрагент")

DELETED_STATUS = "Удален"
PROLOG_SCAN_BYTES = 64 * 1024
_DOCTYPE = re.compile(rb"<!DOCTYPE|<!ENTITY", re.IGNORECASE)
_POSITION = re.compile(r"(,\s*line \d+)+(,\s*column \d+)?\s*$")


class CommerceMLError(Exception):
    """A file that cannot be read as CommerceML; names the file and the line."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}, line {line}" if line else self.path
        super().__init__(f"{where}: {reason}")


class UnsafeXMLError(CommerceMLError):
    """A file with a DOCTYPE or entity declarations, which exchange files never need."""


@dataclass(slots=True)
class GroupRecord:
    external_id: str
    name: str
    parent_external_id: str
    deleted: bool
    line: int


@dataclass(slots=True)
class PropertyRecord:
    external_id: str
    name: str
    value_type: str
    values: list[tuple[str, str]]
    for_offers: bool
    deleted: bool
    line: int


@dataclass(slots=True)
class PriceTypeRecord:
    external_id: str
    name: str
    currency: str
    deleted: bool
    line: int


@dataclass(slots=True)
class WarehouseRecord:
    external_id: str
    name: str
    deleted: bool
    line: int


@dataclass(slots=True)
class UnitRecord:
    external_id: str
    name: str
    full_name: str
    deleted: bool
    line: int


@dataclass(slots=True)
class ProductRecord:
    external_id: str
    name: str
    sku: str
    barcode: str
    description: str
    group_ids: list[str]
    unit_code: str
    pictures: list[str]
    properties: dict[str, str]
    deleted: bool
    line: int


@dataclass(slots=True)
class PriceRecord:
    price_type_id: str
    value: str
    currency: str


@dataclass(slots=True)
class OfferRecord:
    external_id: str
    # False for offers in prices or rests files, which carry no name or
    # characteristics: the importer must not blank those fields.
    has_details: bool
    name: str
    sku: str
    characteristics: list[tuple[str, str]]
    prices: list[PriceRecord]
    # (warehouse 1C id, quantity as written)
    stock: list[tuple[str, str]]
    quantity: str | None
    deleted: bool
    line: int


Record = (
    GroupRecord
    | PropertyRecord
    | PriceTypeRecord
    | WarehouseRecord
    | UnitRecord
    | ProductRecord
    | OfferRecord
)


@dataclass(slots=True)
class Section:
    """The start of a ``Классификатор``, ``Каталог`` or ``ПакетПредложений``."""

    name: str
    only_changes: bool | None
    line: int


@dataclass
class FileInfo:
    """Header facts of a file, filled in while the reader passes them."""

    version: str = ""
    namespace: str = ""
    sections: list[str] = field(default_factory=list)
    # СодержитТолькоИзменения of the catalogue and the offers package, if given.
    catalog_only_changes: bool | None = None
    offers_only_changes: bool | None = None
    has_goods: bool = False
    has_offers: bool = False


class CountingReader:
    """A binary file wrapper that counts the bytes lxml has read so far."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size)
        self.bytes_read += len(chunk)
        return chunk


_local_names: dict[str, str] = {}


def local_name(tag: Any) -> str:
    """Return an element tag without its namespace, cached because tags repeat."""
    try:
        return _local_names[tag]
    except KeyError:
        name = tag.rpartition("}")[2] if isinstance(tag, str) else ""
        _local_names[tag] = name
        return name


def _text(element: Any) -> str:
    text = element.text
    return text.strip() if text else ""


def _flag(text: str | None) -> bool | None:
    if text is None:
        return None
    return text.strip().lower() in ("true", "1", "да")


def _is_deleted(element: Any, status: str, mark: str) -> bool:
    return (
        element.get("Статус") == DELETED_STATUS
        or status == DELETED_STATUS
        or mark.lower() == "true"
    )


def check_prolog(path: Path, head: bytes) -> None:
    """Raise UnsafeXMLError if the file declares a DOCTYPE or entities."""
    match = _DOCTYPE.search(head)
    if match:
        line = head.count(b"\n", 0, match.start()) + 1
        raise UnsafeXMLError(
            path,
            line,
            "DOCTYPE or ENTITY declaration found; CommerceML files never need one, "
            "and the file is rejected to prevent entity expansion. Re-export it "
            "from 1C without a DTD.",
        )


class CatalogReader:
    """Iterate over the items of one CommerceML file.

    Iterating yields ``Section`` markers and item records in document order;
    ``info`` describes the header once iteration has passed it, and ``bytes_read``
    is how far into the file the parser is.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.info = FileInfo()
        self._counter: CountingReader | None = None

    @property
    def bytes_read(self) -> int:
        return self._counter.bytes_read if self._counter else 0

    def __iter__(self) -> Iterator[Section | Record]:
        with open(self.path, "rb") as raw:
            check_prolog(self.path, raw.read(PROLOG_SCAN_BYTES))
            raw.seek(0)
            self._counter = CountingReader(raw)
            yield from self._iterate(self._counter)

    def _iterate(self, source: CountingReader) -> Iterator[Section | Record]:
        tags = [f"{{*}}{name}" for name in (*ITEM_TAGS, *SECTION_TAGS, *CONTAINER_TAGS)]
        tags.append("{*}КоммерческаяИнформация")
        context = etree.iterparse(
            source,
            events=("start", "end"),
            tag=tags,
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
        # Depth inside elements whose item-named children are not items: a Товар in
        # a document, a Склад in an offer, a Группа listed inside a product.
        nested = 0
        try:
            for event, element in context:
                name = local_name(element.tag)
                if event == "start":
                    if name in ("Товар", "Предложение") or name in CONTAINER_TAGS:
                        nested += 1
                        if nested > 1 or name in CONTAINER_TAGS:
                            continue
                    if name == "КоммерческаяИнформация":
                        self._read_root(element)
                    elif name in SECTION_TAGS and nested == 0:
                        section = self._section(name, element)
                        if section is not None:
                            yield section
                    continue
                # end event
                if name in ("Товар", "Предложение") or name in CONTAINER_TAGS:
                    nested -= 1
                    if name in CONTAINER_TAGS and nested == 0:
                        _release(element)
                    if nested > 0 or name in CONTAINER_TAGS:
                        continue
                elif nested > 0 or name not in ITEM_TAGS:
                    continue
                record = self._record(name, element)
                if record is not None:
                    yield record
                _release(element)
        except etree.XMLSyntaxError as error:
            line = error.lineno if error.lineno else None
            # libxml2 ends its message with the position, which the error names too.
            reason = _POSITION.sub("", error.msg or "").strip()
            raise CommerceMLError(self.path, line, f"invalid XML: {reason}") from error
        root = context.root
        if root is None or local_name(root.tag) != "КоммерческаяИнформация":
            found = local_name(root.tag) if root is not None else "(none)"
            raise CommerceMLError(
                self.path,
                root.sourceline if root is not None else None,
                f"the root element is <{found}>, not КоммерческаяИнформация, so this "
                "is not a CommerceML file; check what was exported under this name",
            )

    def _read_root(self, element: Any) -> None:
        self.info.version = element.get("ВерсияСхемы", "")
        tag = element.tag
        self.info.namespace = tag[1 : tag.index("}")] if tag.startswith("{") else ""
        if element.getroottree().docinfo.doctype:
            raise UnsafeXMLError(
                self.path, element.sourceline, "DOCTYPE declaration found"
            )

    def _section(self, name: str, element: Any) -> Section | None:
        only_changes = _flag(element.get("СодержитТолькоИзменения"))
        if name == "Товары":
            self.info.has_goods = True
            return None
        if name == "Предложения":
            self.info.has_offers = True
            return None
        if name == "Каталог":
            self.info.catalog_only_changes = only_changes
        elif name == "ПакетПредложений":
            self.info.offers_only_changes = only_changes
        self.info.sections.append(name)
        return Section(name, only_changes, element.sourceline or 0)

    def _record(self, name: str, element: Any) -> Record | None:
        parent = element.getparent()
        parent_name = local_name(parent.tag) if parent is not None else ""
        if name == "Товар":
            return self._product(element)
        if name == "Предложение":
            return self._offer(element)
        if name == "Группа":
            if parent_name != "Группы":
                return None
            return self._group(element, parent)
        if name == "Свойство":
            return self._property(element)
        if name == "ТипЦены":
            return self._price_type(element)
        if name == "Склад":
            return self._warehouse(element) if parent_name == "Склады" else None
        if name == "ЕдиницаИзмерения":
            return self._unit(element)
        return None

    def _group(self, element: Any, container: Any) -> GroupRecord:
        fields = _child_texts(element)
        owner = container.getparent()
        parent_id = ""
        if owner is not None and local_name(owner.tag) == "Группа":
            for child in owner:
                if local_name(child.tag) == "Ид":
                    parent_id = _text(child)
                    break
        return GroupRecord(
            external_id=fields.get("Ид", ""),
            name=fields.get("Наименование", ""),
            parent_external_id=parent_id,
            deleted=_is_deleted(
                element, fields.get("Статус", ""), fields.get("ПометкаУдаления", "")
            ),
            line=element.sourceline or 0,
        )

    def _property(self, element: Any) -> PropertyRecord:
        external_id = name = value_type = status = mark = ""
        values: list[tuple[str, str]] = []
        for child in element:
            tag = local_name(child.tag)
            if tag == "Ид":
                external_id = _text(child)
            elif tag == "Наименование":
                name = _text(child)
            elif tag == "ТипЗначений":
                value_type = _text(child)
            elif tag == "ВариантыЗначений":
                values.extend(_dictionary_values(child))
            elif tag == "Статус":
                status = _text(child)
            elif tag == "ПометкаУдаления":
                mark = _text(child)
        section = _enclosing_section(element)
        return PropertyRecord(
            external_id=external_id,
            name=name,
            value_type=value_type,
            values=values,
            for_offers=section == "ПакетПредложений" or _is_offer_properties(element),
            deleted=_is_deleted(element, status, mark),
            line=element.sourceline or 0,
        )

    def _price_type(self, element: Any) -> PriceTypeRecord:
        fields = _child_texts(element)
        return PriceTypeRecord(
            external_id=fields.get("Ид", ""),
            name=fields.get("Наименование", ""),
            currency=fields.get("Валюта", ""),
            deleted=_is_deleted(
                element, fields.get("Статус", ""), fields.get("ПометкаУдаления", "")
            ),
            line=element.sourceline or 0,
        )

    def _warehouse(self, element: Any) -> WarehouseRecord:
        fields = _child_texts(element)
        return WarehouseRecord(
            external_id=fields.get("Ид", ""),
            name=fields.get("Наименование", ""),
            deleted=_is_deleted(
                element, fields.get("Статус", ""), fields.get("ПометкаУдаления", "")
            ),
            line=element.sourceline or 0,
        )

    def _unit(self, element: Any) -> UnitRecord:
        fields = _child_texts(element)
        code = fields.get("Код", "") or fields.get("Ид", "")
        return UnitRecord(
            external_id=fields.get("Ид", "") or code,
            name=fields.get("НаименованиеКраткое", ""),
            full_name=fields.get("НаименованиеПолное", ""),
            deleted=_is_deleted(
                element, fields.get("Статус", ""), fields.get("ПометкаУдаления", "")
            ),
            line=element.sourceline or 0,
        )

    def _product(self, element: Any) -> ProductRecord:
        external_id = name = sku = barcode = description = unit = status = mark = ""
        groups: list[str] = []
        pictures: list[str] = []
        properties: dict[str, str] = {}
        for child in element:
            tag = local_name(child.tag)
            if tag == "Ид":
                external_id = _text(child)
            elif tag == "Наименование":
                name = _text(child)
            elif tag == "Артикул":
                sku = _text(child)
            elif tag == "Штрихкод":
                barcode = _text(child)
            elif tag == "Описание":
                description = _text(child)
            elif tag == "БазоваяЕдиница":
                unit = (child.get("Код") or _text(child)).strip()
            elif tag == "Группы":
                groups.extend(_text(g) for g in child if local_name(g.tag) == "Ид")
            elif tag == "Картинка":
                picture = _text(child)
                if picture:
                    pictures.append(picture)
            elif tag == "ЗначенияСвойств":
                properties.update(_property_values(child))
            elif tag == "Статус":
                status = _text(child)
            elif tag == "ПометкаУдаления":
                mark = _text(child)
        return ProductRecord(
            external_id=external_id,
            name=name,
            sku=sku,
            barcode=barcode,
            description=description,
            group_ids=[g for g in groups if g],
            unit_code=unit,
            pictures=pictures,
            properties=properties,
            deleted=_is_deleted(element, status, mark),
            line=element.sourceline or 0,
        )

    def _offer(self, element: Any) -> OfferRecord:
        external_id = name = sku = status = mark = ""
        has_details = False
        quantity: str | None = None
        characteristics: list[tuple[str, str]] = []
        prices: list[PriceRecord] = []
        stock: list[tuple[str, str]] = []
        for child in element:
            tag = local_name(child.tag)
            if tag == "Ид":
                external_id = _text(child)
            elif tag == "Наименование":
                name = _text(child)
                has_details = True
            elif tag == "Артикул":
                sku = _text(child)
            elif tag == "ХарактеристикиТовара":
                characteristics.extend(_characteristics(child))
                has_details = True
            elif tag == "Цены":
                prices.extend(_prices(child))
            elif tag == "Количество":
                quantity = _text(child)
            elif tag == "Склад":
                # CommerceML 2.0x: <Склад ИдСклада="…" КоличествоНаСкладе="…"/>
                stock.append(
                    (child.get("ИдСклада", ""), child.get("КоличествоНаСкладе", ""))
                )
            elif tag == "Остатки":
                quantity = _rests(child, stock, quantity)
            elif tag == "Статус":
                status = _text(child)
            elif tag == "ПометкаУдаления":
                mark = _text(child)
        return OfferRecord(
            external_id=external_id,
            has_details=has_details,
            name=name,
            sku=sku,
            characteristics=characteristics,
            prices=prices,
            stock=stock,
            quantity=quantity,
            deleted=_is_deleted(element, status, mark),
            line=element.sourceline or 0,
        )


def _release(element: Any) -> None:
    """Free a processed item and the siblings before it, keeping memory flat."""
    element.clear(keep_tail=True)
    parent = element.getparent()
    if parent is None:
        return
    while element.getprevious() is not None:
        del parent[0]


def _child_texts(element: Any) -> dict[str, str]:
    return {local_name(child.tag): _text(child) for child in element}


def _enclosing_section(element: Any) -> str:
    ancestor = element.getparent()
    while ancestor is not None:
        name = local_name(ancestor.tag)
        if name in ("Классификатор", "Каталог", "ПакетПредложений"):
            return name
        ancestor = ancestor.getparent()
    return ""


def _is_offer_properties(element: Any) -> bool:
    # 1C's segmented export puts offer properties in a file whose root contains a
    # ПакетПредложений next to the Классификатор.
    root = element.getroottree().getroot()
    return any(local_name(child.tag) == "ПакетПредложений" for child in root)


def _dictionary_values(container: Any) -> Iterator[tuple[str, str]]:
    for entry in container:
        value_id = value = ""
        for child in entry:
            tag = local_name(child.tag)
            if tag == "ИдЗначения":
                value_id = _text(child)
            elif tag == "Значение":
                value = _text(child)
        if value_id:
            yield value_id, value


def _property_values(container: Any) -> Iterator[tuple[str, str]]:
    for entry in container:
        property_id = ""
        values: list[str] = []
        for child in entry:
            tag = local_name(child.tag)
            if tag == "Ид":
                property_id = _text(child)
            elif tag == "Значение":
                values.append(_text(child))
        if property_id:
            yield property_id, "; ".join(v for v in values if v)


def _characteristics(container: Any) -> Iterator[tuple[str, str]]:
    for entry in container:
        name = value = ""
        for child in entry:
            tag = local_name(child.tag)
            if tag == "Наименование":
                name = _text(child)
            elif tag == "Значение":
                value = _text(child)
        if name:
            yield name, value


def _prices(container: Any) -> Iterator[PriceRecord]:
    for entry in container:
        if local_name(entry.tag) != "Цена":
            continue
        price_type = value = currency = ""
        for child in entry:
            tag = local_name(child.tag)
            if tag == "ИдТипаЦены":
                price_type = _text(child)
            elif tag == "ЦенаЗаЕдиницу":
                value = _text(child)
            elif tag == "Валюта":
                currency = _text(child)
        yield PriceRecord(price_type, value, currency)


def _rests(
    container: Any, stock: list[tuple[str, str]], quantity: str | None
) -> str | None:
    """Collect ``Остатки/Остаток`` rows; return the warehouse-less total if given."""
    for rest in container:
        for child in rest:
            tag = local_name(child.tag)
            if tag == "Склад":
                warehouse = count = ""
                for part in child:
                    part_tag = local_name(part.tag)
                    if part_tag == "Ид":
                        warehouse = _text(part)
                    elif part_tag == "Количество":
                        count = _text(part)
                stock.append((warehouse, count))
            elif tag == "Количество":
                quantity = _text(child)
    return quantity
