"""The reader, number parsing and package recognition, without the worker."""

from __future__ import annotations

import zipfile
from decimal import Decimal
from pathlib import Path

import pytest

from tests.helpers import (
    catalog,
    classifier,
    group,
    offer,
    offers_package,
    product,
    write_xml,
)
from worker.commerceml.numbers import NumberFormatError, parse_decimal
from worker.commerceml.package import (
    PackageError,
    ZipLimits,
    collect,
    extract_zip,
    kind_from_name,
)
from worker.commerceml.reader import (
    CatalogReader,
    CommerceMLError,
    GroupRecord,
    OfferRecord,
    ProductRecord,
    Section,
    UnsafeXMLError,
)

LIMITS = ZipLimits(max_entries=100, max_bytes=10 * 1024 * 1024, max_ratio=200)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 234,50", Decimal("1234.50")),
        ("1234,5", Decimal("1234.5")),
        ("1234.50", Decimal("1234.50")),
        ("1\u00a0234,50", Decimal("1234.50")),
        ("21,6", Decimal("21.6")),
        ("-3", Decimal("-3")),
        ("", None),
        ("   ", None),
        (None, None),
        ("-999 999 999,9", None),  # the 1C sentinel for "no value"
    ],
)
def test_parse_decimal(text: str | None, expected: Decimal | None) -> None:
    assert parse_decimal(text) == expected


@pytest.mark.parametrize("text", ["12р", "1,2,3", "NaN", "Infinity", "abc"])
def test_parse_decimal_rejects(text: str) -> None:
    with pytest.raises(NumberFormatError, match="not a"):
        parse_decimal(text)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("import.xml", "import"),
        ("IMPORT.XML", "import"),
        ("import0_1.xml", "import"),
        ("offers0_1.xml", "offers"),
        ("goods_1_2_0f8fad5b-d9cb-469f-a165-70867728950e.xml", "goods"),
        (
            "propertiesGoods_1_1_10f30faa-0a70-44df-bf00-799144e59493.xml",
            "propertiesgoods",
        ),
        (
            "propertiesOffers_1_2_36a5519f-20da-44d9-bbe6-e1dbb43e727a.xml",
            "propertiesoffers",
        ),
        ("priceLists.xml", "pricelists"),
        ("rests_3_1.xml", "rests"),
        ("storages.xml", "storages"),
        ("units.xml", "units"),
        ("groups.xml", "groups"),
        ("contragents.xml", "contragents"),
        ("export.xml", None),
        ("data.xml", None),
    ],
)
def test_kind_from_name(name: str, kind: str | None) -> None:
    assert kind_from_name(name) == kind


def test_collect_orders_by_dependency_and_content(tmp_path: Path) -> None:
    write_xml(tmp_path / "rests.xml", offers_package(""))
    write_xml(tmp_path / "goods_1_2.xml", catalog(""))
    write_xml(tmp_path / "goods_1_1.xml", catalog(""))
    write_xml(tmp_path / "export.xml", offers_package(""))
    write_xml(tmp_path / "groups.xml", classifier())
    (tmp_path / "import_files").mkdir()
    write_xml(tmp_path / "import_files" / "stray.xml", catalog(""))

    files = collect([tmp_path])

    assert [(f.name, f.kind) for f in files] == [
        ("groups.xml", "groups"),
        ("goods_1_1.xml", "goods"),
        ("goods_1_2.xml", "goods"),
        ("export.xml", "offers"),
        ("rests.xml", "rests"),
    ]


def test_reader_yields_nested_groups_with_parents(tmp_path: Path) -> None:
    tree = group("root", "Спорт", group("child", "Мячи", group("leaf", "Футбол")))
    path = write_xml(tmp_path / "groups.xml", classifier(tree))

    groups = [r for r in CatalogReader(path) if isinstance(r, GroupRecord)]

    parents = {g.external_id: g.parent_external_id for g in groups}
    assert parents == {"root": "", "child": "root", "leaf": "child"}


def test_reader_product_and_offer_fields(tmp_path: Path) -> None:
    extra = (
        '<Штрихкод>4600000000001</Штрихкод><БазоваяЕдиница Код="796 ">шт</БазоваяЕдиница>'
        "<Описание>Текст</Описание><Картинка>import_files/ab/x.jpg</Картинка>"
        "<ЗначенияСвойств><ЗначенияСвойства><Ид>brand</Ид><Значение>v1</Значение>"
        "</ЗначенияСвойства></ЗначенияСвойств>"
    )
    goods = product("P", "Мяч", group_id="G", sku="A-1", extra=extra)
    inner = (
        "<Цены><Цена><ИдТипаЦены>t</ИдТипаЦены><ЦенаЗаЕдиницу>10,5</ЦенаЗаЕдиницу>"
        "<Валюта>руб</Валюта></Цена></Цены><Количество>4</Количество>"
        '<Склад ИдСклада="w1" КоличествоНаСкладе="3"/>'
        "<Остатки><Остаток><Склад><Ид>w2</Ид><Количество>1</Количество></Склад></Остаток>"
        "</Остатки>"
    )
    path = write_xml(
        tmp_path / "import.xml",
        catalog(goods) + offers_package(offer("P#1", name="S", inner=inner)),
    )
    reader = CatalogReader(path)

    items = list(reader)

    sections = [i.name for i in items if isinstance(i, Section)]
    assert sections == ["Каталог", "ПакетПредложений"]
    item = next(i for i in items if isinstance(i, ProductRecord))
    assert (item.external_id, item.name, item.sku, item.barcode) == (
        "P",
        "Мяч",
        "A-1",
        "4600000000001",
    )
    assert item.unit_code == "796"
    assert item.group_ids == ["G"]
    assert item.pictures == ["import_files/ab/x.jpg"]
    assert item.properties == {"brand": "v1"}
    sold = next(i for i in items if isinstance(i, OfferRecord))
    assert sold.has_details
    assert [(p.price_type_id, p.value, p.currency) for p in sold.prices] == [
        ("t", "10,5", "руб")
    ]
    assert sold.quantity == "4"
    assert sold.stock == [("w1", "3"), ("w2", "1")]
    assert reader.info.version == "3.1"
    assert reader.info.namespace == "urn:1C.ru:commerceml_3"
    assert reader.info.catalog_only_changes is False


def test_reader_ignores_goods_inside_documents(tmp_path: Path) -> None:
    body = (
        "<Документ><Ид>order</Ид><Товары><Товар><Ид>P</Ид><Наименование>x</Наименование>"
        "</Товар></Товары></Документ>"
    )
    path = write_xml(tmp_path / "orders.xml", body)

    reader = CatalogReader(path)

    assert list(reader) == []
    assert not reader.info.has_goods


def test_reader_reports_truncated_file_line(tmp_path: Path) -> None:
    path = write_xml(tmp_path / "import.xml", catalog(product("A") + product("B")))
    path.write_bytes(path.read_bytes()[:-60])

    with pytest.raises(CommerceMLError) as caught:
        list(CatalogReader(path))

    assert caught.value.line
    assert str(path) in str(caught.value)


def test_reader_rejects_doctype(tmp_path: Path) -> None:
    path = tmp_path / "import.xml"
    path.write_text(
        '<?xml version="1.0"?>\n\n<!DOCTYPE a [<!ENTITY e SYSTEM "http://127.0.0.1:9/x">]>\n'
        "<КоммерческаяИнформация>&e;</КоммерческаяИнформация>",
        encoding="utf-8",
    )

    with pytest.raises(UnsafeXMLError) as caught:
        list(CatalogReader(path))

    assert caught.value.line == 3


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in entries.items():
            bundle.writestr(name, data)
    return path


@pytest.mark.parametrize(
    "name",
    [
        "../evil.xml",
        "/etc/evil.xml",
        "a\\..\\evil.xml",
        "C:/evil.xml",
        "a/../../evil.xml",
    ],
)
def test_zip_slip_rejected(tmp_path: Path, name: str) -> None:
    archive = _zip(tmp_path / "p.zip", {name: b"<x/>"})

    with pytest.raises(PackageError, match="zip entry"):
        extract_zip(archive, tmp_path / "out", LIMITS)

    assert not (tmp_path / "evil.xml").exists()


def test_zip_bomb_rejected_by_ratio(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "p.zip", {"import.xml": b"0" * 5_000_000})

    with pytest.raises(PackageError, match="compresses"):
        extract_zip(archive, tmp_path / "out", LIMITS)


def test_zip_limits_on_entries_and_size(tmp_path: Path) -> None:
    many = _zip(tmp_path / "many.zip", {f"f{n}.xml": b"x" for n in range(101)})
    with pytest.raises(PackageError, match="entries"):
        extract_zip(many, tmp_path / "out1", LIMITS)
    small = ZipLimits(max_entries=10, max_bytes=10, max_ratio=1000)
    big = _zip(tmp_path / "big.zip", {"import.xml": b"x" * 11})
    with pytest.raises(PackageError, match="unpacks to"):
        extract_zip(big, tmp_path / "out2", small)


def test_zip_with_pictures_unpacks(tmp_path: Path) -> None:
    xml = write_xml(tmp_path / "src" / "import.xml", catalog(product("A"))).read_bytes()
    archive = _zip(
        tmp_path / "p.zip", {"import.xml": xml, "import_files/ab/a.jpg": b"\xff\xd8"}
    )

    folder = extract_zip(archive, tmp_path / "out", LIMITS)

    assert (folder / "import_files" / "ab" / "a.jpg").read_bytes() == b"\xff\xd8"
    assert [f.kind for f in collect([folder])] == ["import"]
